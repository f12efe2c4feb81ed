/*
 * storage/keyfilter.h - which record keys a shard may hold (a blocked Bloom filter).
 *
 * A store must read the record it changes (RFC 6940 §6.4.1.1: storage_time,
 * generation, max-count, the claimants' counts).  Most stores of a carrier's
 * first publication, and every Fetch of an unknown number, are for keys the
 * shard has never held; RocksDB answers "absent" only after its memtable
 * bloom and one bloom probe per L0 file and level.  This filter answers the
 * same question from one cache line per layer.
 *
 * Invariant (the store keeps it, see store.c): every key present in the
 * shard's column family has been added.  Keys are added when the shard opens
 * (the quota rebuild scans every record) and before each commit writes them;
 * keys are never removed (a deleted key stays "maybe": it costs a real read).
 * So "absent" is exact and "maybe" is answered by RocksDB as before.
 *
 * The filter grows in layers (each twice the previous one's capacity, at
 * ~12 bits per key), so no rebuild is needed; a lookup probes every layer.
 * The hash is keyed by a random per-filter seed: peers choose Resource-IDs,
 * and one who made many keys collide would only raise the false-positive
 * rate, i.e. bring back the read this filter saves, never change an answer.
 * Owned by one shard (no locks).
 */
#ifndef VP_STORAGE_KEYFILTER_H
#define VP_STORAGE_KEYFILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ST_KF_MAX_LAYERS 40
#define ST_KF_MIN_KEYS (1u << 20) /* the first layer holds at least this many keys (1.5 MiB, mapped as 2) */

typedef struct st_kf_layer {
	uint64_t *blocks; /* n_blocks blocks of 8 words (512 bits, one cache line) */
	size_t n_blocks;  /* < 2^32 */
	size_t map_len;   /* bytes mapped (a multiple of 2 MiB) */
	size_t cap, n;    /* keys the layer is sized for; keys added */
} st_kf_layer_t;

typedef struct st_keyfilter {
	st_kf_layer_t layer[ST_KF_MAX_LAYERS];
	size_t n_layers;
	uint64_t seed;
	uint64_t added; /* keys added over all layers */
} st_keyfilter_t;

/*!
 * \brief Initialise an empty filter sized for \p expect_keys keys (at least
 * ST_KF_MIN_KEYS); VP_ENOMEM on failure.
 */
int st_kf_init(st_keyfilter_t *f, uint64_t expect_keys);

/*! \brief Free the filter's memory. */
void st_kf_free(st_keyfilter_t *f);

/*! \brief false: \p key (\p len bytes) was never added; true: it may have been. */
bool st_kf_maybe(const st_keyfilter_t *f, const uint8_t *key, size_t len);

/*!
 * \brief Add \p key unless st_kf_maybe() already says so (adding it again would
 * only fill the newest layer faster).  VP_ENOMEM if a new layer was needed and
 * could not be allocated: the key is then not added and the caller must stop
 * trusting the filter (st_kf_free() and answer every lookup from the database).
 */
int st_kf_add(st_keyfilter_t *f, const uint8_t *key, size_t len);

/*!
 * \brief st_kf_maybe() and st_kf_add() in one pass (one hash, one probe per
 * layer): *\p maybe gets what st_kf_maybe() answered before the call, and the
 * key is added if that was false.  The store calls it where it is about to
 * write the key anyway, so the commit's own st_kf_add() finds it in the newest
 * layer's cache line.  VP_ENOMEM as st_kf_add() (then *\p maybe is true: the
 * caller reads the database).
 */
int st_kf_check_add(st_keyfilter_t *f, const uint8_t *key, size_t len, bool *maybe);

/*!
 * \brief Start loading the cache lines a lookup of \p key will touch (one per
 * layer).  A batch hints every key first, then looks them up, so the misses of
 * a filter larger than the caches overlap instead of following one another.
 */
void st_kf_prefetch(const st_keyfilter_t *f, const uint8_t *key, size_t len);

/*! \brief Bytes of memory held. */
size_t st_kf_bytes(const st_keyfilter_t *f);

#endif
