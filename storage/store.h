/*
 * storage/store.h - the kind store: RELOAD Store/Fetch/Stat/Find semantics
 * (RFC 6940 §6.4) on RocksDB, ViPR access control, proportional quota, per-signer
 * rate policing, range scans for join handoff and replication, expiry.
 *
 * Layout.  One RocksDB instance per node (st_db_t) and one column family per
 * shard ("s0", "s1", ...) holding one record per (Resource-ID, Kind-ID) under
 * the key resource_id(16) ‖ kind(4) (big-endian), so a Resource-ID range is
 * one contiguous scan.  The record (storage/record.h)
 * holds the generation counter and every entry of the kind at that resource
 * (single: one; array: by index; dictionary: by key), each with its
 * storage_time, lifetime, absolute expiry, exists flag, replica_number,
 * owner Node-ID, value and signature.  Keeping a resource's entries in one
 * record makes a Fetch one point read and a Store one read plus one write,
 * and makes every store to a resource atomic (see docs/protocol.md §2 and the
 * note to ARCHITECTURE §4, whose key included the model key).
 *
 * Expiry.  Expired entries are never returned.  They are physically removed by
 * st_expire(), an incremental sweep that walks the shard in key order from a
 * cursor (call it every loop iteration with a small budget), and by any store
 * that rewrites their record.  A compaction filter was not used because it
 * cannot update the quota counters or the generation in the same atomic step;
 * the sweep does, so the counters always equal the entries present.  (A
 * separate expiry-index column family was tried first: it doubled the
 * memtable inserts per store and halved the load rate.)
 *
 * Durability.  Stores go into the shard's open batch (st_batch_begin /
 * st_batch_commit: one batch per event-loop iteration), which commit turns into
 * one RocksDB WriteBatch, each key once and in key order.  st_batch_commit()
 * returns only after RocksDB has appended the batch to the WAL with write(2);
 * with cfg.sync_wal it also fsyncs.  The default (written, not fsynced)
 * survives any process crash (SIGKILL, abort) but not a power loss of the
 * host: a ViPR entry lives on three peers and is refreshed by its owner, so
 * losing the last few milliseconds of one peer on power loss costs nothing
 * durable, while an fsync per batch would cap a shard at the disk's flush
 * rate.  Answers must be sent only after st_batch_commit() returned 0; if it
 * fails every store of that batch failed (VP_EDB) and the counters are rolled back.
 *
 * Threads.  st_db_t is shared (read-only after st_db_open; RocksDB is
 * thread-safe).  Each st_shard_t belongs to exactly one thread; its calls take
 * no locks.  There is no global state.
 */
#ifndef VP_STORAGE_STORE_H
#define VP_STORAGE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/clock.h"
#include "common/id.h"
#include "common/reload_codes.h"
#include "storage/rate.h"

/* ---- kinds ------------------------------------------------------------ */

typedef enum st_model {
	ST_MODEL_SINGLE = VP_RELOAD_MODEL_SINGLE, /* RFC 6940 data-model code points */
	ST_MODEL_ARRAY = VP_RELOAD_MODEL_ARRAY,
	ST_MODEL_DICTIONARY = VP_RELOAD_MODEL_DICTIONARY,
} st_model_t;

typedef enum st_acl {
	ST_ACL_VIPR = 1,            /* dictionary key Node-ID and value contact ∈ signer's Node-IDs */
	ST_ACL_NODE_MATCH = 2,      /* Resource-ID = H(one of the signer's Node-IDs) */
	ST_ACL_USER_MATCH = 3,      /* Resource-ID = H(signer's user name) */
	ST_ACL_USER_NODE_MATCH = 4, /* USER-MATCH and dictionary key = a signer Node-ID */
} st_acl_t;

#define ST_KIND_NAME_MAX 32
#define ST_MAX_KINDS 64
#define ST_ARRAY_APPEND 0xFFFFFFFFu /* array index meaning "append" */

typedef struct st_kind {
	uint32_t id;
	char name[ST_KIND_NAME_MAX];
	st_model_t model;
	st_acl_t acl;
	uint32_t max_count;    /*!< entries per resource (Data_Too_Large above) */
	uint32_t max_size;     /*!< bytes per value (Data_Too_Large above) */
	uint32_t min_lifetime; /*!< s; shorter lifetimes are refused (VP_EINVAL) */
	uint32_t max_lifetime; /*!< s; longer lifetimes are clamped to this */
	uint32_t quota;        /*!< Q: entries per storing Node-ID over the ring; 0 = none */
	uint32_t max_per_cert; /*!< entries per resource whose owner is a Node-ID of one certificate; 0 = no limit */
} st_kind_t;

/*! \brief The built-in VIPR-REGISTRATION kind with Kind-ID \p id (0 = ST_VIPR_KIND_ID_DEFAULT). */
st_kind_t st_kind_vipr(uint32_t id);

/* ---- configuration ---------------------------------------------------- */

typedef struct st_config {
	const char *path;           /*!< database directory (created if missing) */
	unsigned n_shards;          /*!< column families s0..s(n-1); existing extra ones stay usable */
	uint32_t vipr_kind_id;      /*!< 0 = ST_VIPR_KIND_ID_DEFAULT */
	uint32_t vipr_quota;        /*!< Q of the ViPR kind (default 10,000; 0 = no quota) */
	uint32_t vipr_max_per_cert; /*!< entries per number from one certificate (default and 0: ST_VIPR_MAX_PER_CERT) */
	const st_kind_t *kinds;     /*!< extra kinds (copied) */
	size_t n_kinds;
	double quota_slack;         /*!< S (default 2.0) */
	uint32_t quota_const;       /*!< C (default 16) */
	st_rate_limit_t rate[ST_RATE_NOPS]; /*!< per signer and node (each of the n shards polices 1/n: storage/rate.h); rate 0 = off */
	bool rate_per_shard;        /*!< each shard is a storing peer of its own (viprd: one vnode, one Node-ID, one ring
	                                 range per shard) and polices the whole rate and burst (default false: per node) */
	bool sync_wal;              /*!< fsync the WAL on every commit (default false: see above) */
	size_t block_cache_bytes;   /*!< shared LRU block cache (default 256 MiB) */
	size_t write_buffer_bytes;  /*!< memtable size per column family (default 64 MiB) */
	int bloom_bits;             /*!< bloom filter bits per key (default 10; 0 = none) */
	const vp_clock_t *clock;    /*!< wall clock for storage times and expiry (NULL = system); must outlive the db */
	const vp_clock_t *rate_clock; /*!< monotonic ms for the rate buckets (NULL = the system monotonic clock; tests inject one) */
} st_config_t;

/*! \brief Fill \p cfg with the defaults (path NULL, 1 shard). */
void st_config_default(st_config_t *cfg);

typedef struct st_db st_db_t;
typedef struct st_shard st_shard_t;

/*!
 * \brief Open (creating if needed) the database at cfg->path and rebuild the
 * derived state (quota counters) of every shard.  VP_ECONFIG for a bad
 * configuration (duplicate or zero Kind-ID, bad model), VP_EDB if RocksDB fails.
 */
int st_db_open(const st_config_t *cfg, st_db_t **out);

/*! \brief Close the database; pending (uncommitted) batches are discarded. NULL is a no-op. */
void st_db_close(st_db_t *db);

/*! \brief Number of shards (>= cfg->n_shards). */
unsigned st_db_shards(const st_db_t *db);

/*! \brief Shard \p i (NULL if out of range).  Use it from one thread only. */
st_shard_t *st_db_shard(st_db_t *db, unsigned i);

/*! \brief The kind with Kind-ID \p id, or NULL (Unknown_Kind). */
const st_kind_t *st_db_kind(const st_db_t *db, uint32_t id);

/*! \brief The kind with Kind-ID \p id of the shard's database, or NULL. */
const st_kind_t *st_shard_kind(const st_shard_t *sh, uint32_t id);

/*!
 * \brief Set the fraction of the ring whose data this shard holds, in ppb (the
 * responsible ranges of its vnodes plus the ranges it replicates), which
 * scales the quota limit.  Default 1,000,000,000 (a lone node).
 */
void st_shard_set_fraction(st_shard_t *sh, uint32_t ppb);

/* ---- values ----------------------------------------------------------- */

/*!
 * The verified identity that signed one StoredData (RFC 6940 §7): the Node-IDs
 * and user name of the certificate its Signature's SignerIdentity names, which
 * the caller has checked (chain to the overlay root, validity, signature over
 * the entry).  The store trusts it as given; it never parses certificates.
 * A certificate's entries at a resource are recognised by their owner Node-ID
 * being one of node_ids (the enrollment CA issues each Node-ID in one
 * certificate), so no certificate identity is stored with the entry.
 */
typedef struct st_signer {
	const vp_id_t *node_ids; /*!< the certificate's Node-IDs (>= 1) */
	size_t n_node_ids;
	const char *user;        /*!< user name in the certificate (USER-MATCH kinds), may be NULL */
	size_t user_len;
} st_signer_t;

/*! \brief One StoredData as the store sees it (all pointers are borrowed). */
typedef struct st_entry {
	uint32_t index;          /*!< array index (ST_ARRAY_APPEND to append on store) */
	const uint8_t *key;      /*!< dictionary key */
	uint16_t key_len;
	uint64_t storage_time;   /*!< ms since the epoch, set by the writer */
	uint32_t lifetime;       /*!< s, as stored */
	bool exists;             /*!< false = tombstone (delete) */
	const uint8_t *value;
	uint32_t value_len;
	const uint8_t *sig;      /*!< RELOAD Signature, opaque to the store */
	uint32_t sig_len;
	/*! Input: the verified signer of this StoredData, against which its access control
	 *  and certificate limit are checked; NULL = the request's signer (st_store_req_t). */
	const st_signer_t *signer;
	/* Filled in by the store on output; ignored on input. */
	uint64_t expires_ms;     /*!< absolute expiry at this node */
	uint8_t replica_number;  /*!< of the StoreReq that wrote it */
	vp_id_t owner;           /*!< storing Node-ID the quota charged */
} st_entry_t;

/*! \brief Seconds of lifetime left at \p now_ms (rounded up; 0 if expired): what a handoff re-Store carries. */
static inline uint32_t st_entry_remaining(const st_entry_t *e, uint64_t now_ms)
{
	return e->expires_ms <= now_ms ? 0 : (uint32_t)((e->expires_ms - now_ms + 999) / 1000);
}

/*! \brief When this node accepted the entry (ms): expires_ms less the lifetime as stored (clamped). */
static inline uint64_t st_entry_written_ms(const st_entry_t *e)
{
	uint64_t l = (uint64_t)e->lifetime * 1000u;
	return e->expires_ms > l ? e->expires_ms - l : 0;
}

/* ---- store ------------------------------------------------------------ */

typedef struct st_kind_data {
	uint32_t kind;
	uint64_t generation;       /*!< 0 = unconditional; else must equal the current counter */
	const st_entry_t *values;
	size_t n_values;
} st_kind_data_t;

typedef struct st_store_req {
	vp_id_t resource;
	uint8_t replica_number;    /*!< 0 = original store, 1.. = replica */
	const st_kind_data_t *kinds;
	size_t n_kinds;
	/* The verified signer of the request (the peer that sent it): it is rate-policed
	 * (signers[0]) and is the signer of every entry whose own st_entry_t.signer is NULL. */
	const vp_id_t *signers;    /*!< Node-IDs of the request signer's certificate (>= 1) */
	size_t n_signers;
	const char *signer_user;   /*!< user name in the certificate (USER-MATCH kinds), may be NULL */
	size_t signer_user_len;
	/*! A neighbour's handoff or replica store, checked by the caller against its routing table:
	 *  not charged to the signer's store rate bucket (its entries are many claimants'). */
	bool unpoliced;
} st_store_req_t;

/*!
 * \brief Store (RFC 6940 §6.4.1) into the shard's open batch, or in a batch of
 * its own committed before returning if none is open.  All kinds of \p req
 * are applied or none.  On success gen_out[i] (if not NULL; n_kinds
 * elements) is the new generation counter of kinds[i].
 * Each entry is checked against its own signer (st_entry_t.signer, else the
 * request's), so a replica or hand-off carrying several claimants' entries is
 * checked entry by entry (RFC 6940 §7).  An entry identical to the held one
 * (same key, storage_time, exists flag and value) is a no-op, so a
 * re-replication of held data passes; if nothing changes the generation stays.
 * Tombstones are held data: they count towards max-count, the certificate
 * limit (st_kind_t.max_per_cert) and the quota until they expire.
 * Errors: VP_EUNKNOWN_KIND, VP_EFORBIDDEN (access control), VP_EDATA_TOO_OLD,
 * VP_EGEN_TOO_LOW, VP_EDATA_TOO_LARGE (max-size, max-count), VP_EQUOTA (the proportional quota,
 * or a store adding entries for a certificate that holds max_per_cert at the resource),
 * VP_ERATELIMIT, VP_EINVAL (wrong model field, lifetime below the kind's minimum,
 * duplicate key in one request, an entry signer without Node-IDs), VP_EMALFORMED (a ViPR key/value that does not decode), VP_EDB.
 * *bad_kind (if not NULL) gets the Kind-ID that failed (for Unknown_Kind's error_info).
 */
int st_store(st_shard_t *sh, const st_store_req_t *req, uint64_t *gen_out, uint32_t *bad_kind);

/* ---- fetch / stat ----------------------------------------------------- */

typedef struct st_array_range {
	uint32_t first, last; /* inclusive */
} st_array_range_t;

typedef struct st_dict_key {
	const uint8_t *key;
	uint16_t len;
} st_dict_key_t;

typedef struct st_specifier {
	uint32_t kind;
	uint64_t generation;              /*!< if equal to the current counter, no values are returned */
	const st_array_range_t *ranges;   /*!< array model */
	size_t n_ranges;
	const st_dict_key_t *keys;        /*!< dictionary model; n_keys == 0 = every key */
	size_t n_keys;
} st_specifier_t;

/*!
 * \brief Visitor for Fetch/Stat/range scans.  kind_begin is called once per
 * specifier (with the current generation, 0 if nothing is stored) before its
 * entries; entry once per live, non-expired matching entry in model-key order.
 * The entry's pointers are valid only during the call.  A non-zero return
 * stops the walk and is returned by the caller.  A Fetch/Stat visitor must not
 * call back into the same shard (it walks the shard's scratch record).
 */
typedef struct st_visitor {
	int (*kind_begin)(void *arg, const vp_id_t *resource, uint32_t kind, uint64_t generation);
	int (*entry)(void *arg, const vp_id_t *resource, uint32_t kind, const st_entry_t *e);
	void *arg;
} st_visitor_t;

/*!
 * \brief Fetch (RFC 6940 §6.4.2).  Entries that do not exist are not reported
 * (the codec answers them as exists=false if it wants to); tombstones are
 * reported with exists = false.  Charges one fetch token to signer (NULL =
 * not policed, for local callers).
 * Errors: VP_EUNKNOWN_KIND (*bad_kind set), VP_ERATELIMIT, VP_EINVAL (a
 * specifier that does not fit the kind's model), VP_EDB, or the visitor's value.
 */
int st_fetch(st_shard_t *sh, const vp_id_t *resource, const st_specifier_t *specs, size_t n_specs,
             const vp_id_t *signer, const st_visitor_t *v, uint32_t *bad_kind);

#define ST_HASH_ALG_SHA256 4   /* TLS HashAlgorithm code point used in StoredMetaData */
#define ST_HASH_LEN 32

/*! \brief StoredMetaData of one entry (RFC 6940 §6.4.3). */
typedef struct st_meta {
	uint32_t index;
	const uint8_t *key;
	uint16_t key_len;
	uint64_t storage_time;
	uint32_t lifetime;
	bool exists;
	uint32_t value_len;
	uint8_t hash_alg;              /*!< ST_HASH_ALG_SHA256 */
	uint8_t hash[ST_HASH_LEN];     /*!< SHA-256 of the value bytes */
} st_meta_t;

typedef struct st_stat_visitor {
	int (*kind_begin)(void *arg, const vp_id_t *resource, uint32_t kind, uint64_t generation);
	int (*meta)(void *arg, uint32_t kind, const st_meta_t *m);
	void *arg;
} st_stat_visitor_t;

/*! \brief Stat: like st_fetch() but reports metadata and value hashes. */
int st_stat(st_shard_t *sh, const vp_id_t *resource, const st_specifier_t *specs, size_t n_specs,
            const vp_id_t *signer, const st_stat_visitor_t *v, uint32_t *bad_kind);

/*!
 * \brief Find (RFC 6940 §6.4.4) for one kind: *closest = the first Resource-ID
 * at or after \p resource (clockwise, wrapping) that holds live data of
 * \p kind in this shard.  VP_ENOTFOUND if there is none, VP_EUNKNOWN_KIND,
 * VP_ERATELIMIT, VP_EDB.
 */
int st_find(st_shard_t *sh, const vp_id_t *resource, uint32_t kind, const vp_id_t *signer,
            vp_id_t *closest);

/* ---- batches ---------------------------------------------------------- */

/*! \brief Open a batch: following stores are grouped until st_batch_commit(). VP_ESTATE if open. */
int st_batch_begin(st_shard_t *sh);

/*!
 * \brief Write the open batch to the WAL (and fsync it with sync_wal).  Only
 * then may the stores in it be acknowledged.  On failure (VP_EDB) nothing of
 * the batch is stored and the counters are rolled back.  VP_ESTATE if no batch.
 */
int st_batch_commit(st_shard_t *sh);

/*!
 * \brief Read, in one sorted RocksDB MultiGet, the records that st_store() of
 * each of \p reqs (n_reqs requests, about to be stored into the open batch)
 * will read before it writes, so that those stores find them in the batch
 * instead of each doing its own point read.  Purely an optimisation: results
 * are identical with or without it (the shard's thread is the only writer of
 * its column family, and range operations are refused inside a batch).
 * Unknown kinds, keys the batch already holds and keys the shard's key filter
 * proves it never held (storage/keyfilter.h; st_store() answers those without
 * a read) are skipped; requests are
 * not validated here.  VP_ESTATE without an open batch, VP_EINVAL; on VP_EDB
 * or VP_ENOMEM some keys were not prefetched (their stores read them
 * themselves and report any error), and the batch is still usable.
 */
int st_batch_prefetch(st_shard_t *sh, const st_store_req_t *reqs, size_t n_reqs);

/*! \brief Discard the open batch and roll its counter changes back. */
void st_batch_abort(st_shard_t *sh);

/* ---- ranges, expiry, bookkeeping --------------------------------------- */

/*!
 * \brief Visit every live entry with Resource-ID in the ring interval (from, to]
 * (from == to: the whole ring), in key order: kind_begin per (resource, kind)
 * record, then its entries (with replica_number and expires_ms filled in).
 * VP_ESTATE inside a batch.
 */
int st_range_scan(st_shard_t *sh, const vp_id_t *from, const vp_id_t *to, const st_visitor_t *v);

/*!
 * \brief Delete every record with Resource-ID in (from, to] (after a handoff or
 * when a range is no longer replicated here), keeping counters exact.
 * *n_records (if not NULL) gets the number deleted.  VP_ESTATE inside a batch.
 */
int st_range_delete(st_shard_t *sh, const vp_id_t *from, const vp_id_t *to, uint64_t *n_records);

/*!
 * \brief Remove the entries in the ring interval (from, to] (from == to: the
 * whole ring) that this node accepted before \p written_before_ms
 * (st_entry_written_ms) and whose Resource-ID \p keep (may be NULL) does not
 * claim, returning their quota; entries written later stay (CHORD_STORE_DROP's
 * grace).  *n_entries (if not NULL) gets the number removed.  VP_ESTATE
 * inside a batch, VP_EINVAL, VP_EDB.
 */
int st_range_drop_stale(st_shard_t *sh, const vp_id_t *from, const vp_id_t *to, uint64_t written_before_ms,
                        bool (*keep)(void *arg, const vp_id_t *resource), void *arg, uint64_t *n_entries);

/*!
 * \brief Sweep: visit up to \p max_records records from where the previous call
 * stopped (wrapping around; 0 = one full pass) and remove the entries that
 * expired at or before now, returning their quota.  *n_entries (if not NULL)
 * gets the number of entries removed.  VP_ESTATE inside a batch.
 */
int st_expire(st_shard_t *sh, uint64_t max_records, uint64_t *n_entries);

/*! \brief Entries of \p kind (tombstones included) currently charged to \p owner in this shard. */
uint32_t st_quota_used(const st_shard_t *sh, const vp_id_t *owner, uint32_t kind);

/*! \brief The quota limit L for \p kind in this shard (UINT64_MAX without quota). */
uint64_t st_quota_limit_of(const st_shard_t *sh, uint32_t kind);

/*!
 * \brief Recount the shard's counters from the database and compare them with
 * the live table: 0 if identical, VP_ESTATE if not (a bug), VP_EDB.  For tests
 * and `viprctl check`; it scans the whole shard.
 */
int st_shard_verify(st_shard_t *sh);

/*! \brief Records (resource, kind) held by the shard (RocksDB estimate). */
uint64_t st_shard_estimate_records(st_shard_t *sh);

/*! \brief Counters for metrics (monotonic since open; per shard, read from its thread). */
typedef struct st_stats {
	uint64_t stores_ok;        /*!< StoreReqs applied */
	uint64_t stores_refused;   /*!< StoreReqs refused, all reasons */
	uint64_t refused_quota;    /*!< ... of which VP_EQUOTA */
	uint64_t refused_rate;     /*!< ... of which VP_ERATELIMIT (stores and reads) */
	uint64_t refused_acl;      /*!< ... of which VP_EFORBIDDEN */
	uint64_t fetches;          /*!< Fetch and Stat calls answered */
	uint64_t entries_expired;  /*!< entries removed by the sweep */
	uint64_t commits;          /*!< batches written */
	uint64_t commit_failures;  /*!< batches that failed (VP_EDB) */
	uint64_t reads_skipped;    /*!< record reads answered "absent" by the key filter, no DB read */
} st_stats_t;

/*! \brief A copy of the shard's counters. */
void st_shard_stats(const st_shard_t *sh, st_stats_t *out);

/* ---- errors ----------------------------------------------------------- */

/*!
 * \brief The RELOAD error code (RFC 6940 §6.3.3.1) to answer for \p err:
 * Data_Too_Old 9, Generation_Counter_Too_Low 5, Data_Too_Large 8,
 * Unknown_Kind 12, Forbidden 2 for access control, quota and rate limiting
 * (told apart by st_reload_error_info), Not_Found 3, Invalid_Message 20 for
 * malformed or invalid requests, and Request_Timeout 4 for internal failures
 * (the requester retries as after a timeout).  0 for VP_OK.
 */
uint16_t st_reload_error(int err);

/*! \brief The error_info text to send with st_reload_error(err) (e.g. "quota", "rate-limited"). Never NULL. */
const char *st_reload_error_info(int err);

#endif
