/*
 * pvp/vcr.h - ViPR Call Records and their store (docs/protocol.md §5.2, §5.4).
 *
 * A VCR is what a call agent reports about one PSTN call.  Terminating records
 * are the claimant's evidence: they are kept for a retention period (48 h by
 * default, counted from the call's start), also after a successful validation,
 * and are indexed by PVP selector so the TLS-SRP username callback finds its
 * candidates with one prefix scan.  Originating records wait for the
 * validation scheduler.
 *
 * The store is a RocksDB database of its own (C API).  Keys:
 *   'R' dir(1) start_ms(8) id(8)            -> record   (time-ordered: purge is a prefix-range scan)
 *   'S' bucket(4) selector(16) start_ms(8) id(8) -> record   (selector index, terminating only)
 *   'M' "next_id"                            -> uint64 (record id counter)
 *   'G' ...                                  -> auxiliary records: the originating
 *                                               side's guess ledger (pvp/ledger.h, 'G' '+' ...)
 *                                               and the server's own (control/server:
 *                                               learned routes 'G' 'r', VService owners 'G' 'o')
 * All integers big-endian, so lexical order is numeric order.  The store is
 * thread-safe (RocksDB is; the id counter is under a mutex).
 */
#ifndef VP_PVP_VCR_H
#define VP_PVP_VCR_H

#include <stddef.h>
#include <stdint.h>

#include "common/clock.h"
#include "common/e164.h"

typedef enum pvp_dir {
	PVP_DIR_ORIG = 0, /*!< we placed the call: validate it later */
	PVP_DIR_TERM = 1, /*!< we received the call: evidence for others' validations */
} pvp_dir_t;

/*! \brief One call record. Times are UTC milliseconds; numbers canonical E.164. */
typedef struct pvp_vcr {
	char called[VP_E164_BUFLEN];
	char caller[VP_E164_BUFLEN];  /*!< caller-ID, "" if none was delivered/sent */
	uint64_t start_ms;            /*!< answer time */
	uint64_t stop_ms;             /*!< release time */
	uint8_t dir;                  /*!< pvp_dir_t */
	uint64_t id;                  /*!< assigned by pvp_vcr_store_add() */
} pvp_vcr_t;

/*!
 * \brief Fill and check a record: numbers are normalised (conf may be NULL:
 * international forms only), caller may be NULL or "" (none), stop > start.
 */
int pvp_vcr_make(pvp_vcr_t *r, pvp_dir_t dir, const char *called, const char *caller,
                 uint64_t start_ms, uint64_t stop_ms, const vp_e164_conf_t *conf);

/*! \brief Encoded record length bound. */
#define PVP_VCR_ENC_MAX (2 + 8 * 3 + 2 * (1 + VP_E164_BUFLEN))

/*! \brief Encode \p r (value layout of the store). */
int pvp_vcr_encode(const pvp_vcr_t *r, uint8_t *out, size_t cap, size_t *len);

/*! \brief Decode a record; VP_ETRUNC/VP_ETRAILING/VP_EMALFORMED on bad bytes. */
int pvp_vcr_decode(const uint8_t *in, size_t len, pvp_vcr_t *r);

typedef struct pvp_vcr_store pvp_vcr_store_t;

typedef struct pvp_vcr_store_conf {
	const char *path;             /*!< RocksDB directory (created if missing) */
	uint64_t term_retention_ms;   /*!< 0 = 48 h (seed 001 §B.3.1) */
	uint64_t orig_retention_ms;   /*!< 0 = 48 h */
	uint32_t start_tolerance_s;   /*!< 0 = 90 s: index under every bucket [start-T, start+T] touches */
	const vp_clock_t *clock;      /*!< NULL = system clock */
} pvp_vcr_store_conf_t;

/*! \brief Open (create) a store. VP_EDB with the RocksDB message logged on failure. */
int pvp_vcr_store_open(const pvp_vcr_store_conf_t *conf, pvp_vcr_store_t **out);

/*! \brief Close and free (NULL is fine). */
void pvp_vcr_store_close(pvp_vcr_store_t *st);

/*!
 * \brief Store \p r (id assigned and written back).  A terminating record is
 * also indexed under its selectors (one or two PBKDF2 runs, ≈2 ms each).
 * Records already past retention are refused with VP_EEXPIRED.
 */
int pvp_vcr_store_add(pvp_vcr_store_t *st, pvp_vcr_t *r);

/*!
 * \brief A record checked and, if terminating, with its selectors derived
 * (pvp_vcr_prepare), ready for pvp_vcr_store_add_prepared.  Splitting the two
 * lets the PBKDF2 runs (the slow part) go to any number of threads while the
 * writes are grouped into one RocksDB write.
 */
typedef struct pvp_vcr_prep {
	pvp_vcr_t rec;                /*!< the record; id written by add_prepared */
	int rc;                       /*!< 0, or why the record is refused (then add_prepared skips it) */
	unsigned nb;                  /*!< selector buckets (0 for originating, 1 or 2) */
	uint32_t buckets[2];
	uint8_t sel[2][16];
} pvp_vcr_prep_t;

/*!
 * \brief Check \p r as pvp_vcr_store_add does and derive its selectors into
 * \p p (copies \p r, which may be &p->rec).  Thread-safe; takes no lock.  Returns p->rc: VP_EINVAL,
 * VP_EEXPIRED, or a selector error.
 */
int pvp_vcr_prepare(const pvp_vcr_store_t *st, const pvp_vcr_t *r, pvp_vcr_prep_t *p);

/*!
 * \brief Write every prepared record of \p p[0..n) whose rc is 0 in one
 * RocksDB write (WAL, as pvp_vcr_store_add): ids are assigned in array order
 * and written back to p[i].rec.id.  On a write error every such p[i].rc is set
 * to that error and it is returned; nothing is then stored.
 */
int pvp_vcr_store_add_prepared(pvp_vcr_store_t *st, pvp_vcr_prep_t *p, size_t n);

/*!
 * \brief Live terminating records indexed under (\p bucket, \p sel), most
 * recent start first (ties: later stop, then higher id).  Up to \p max into
 * \p out; *n gets how many were written (more may exist).
 */
int pvp_vcr_store_find(pvp_vcr_store_t *st, uint32_t bucket, const uint8_t sel[16],
                       pvp_vcr_t *out, size_t max, size_t *n);

/*! \brief Live records of direction \p dir, oldest first, through \p cb (non-zero return stops). */
int pvp_vcr_store_scan(pvp_vcr_store_t *st, pvp_dir_t dir,
                       int (*cb)(void *arg, const pvp_vcr_t *r), void *arg);

/*! \brief Delete one record (and its index entries). VP_ENOTFOUND if absent. */
int pvp_vcr_store_del(pvp_vcr_store_t *st, const pvp_vcr_t *r);

/*!
 * \brief Delete every record past retention and the index entries of buckets
 * that can no longer hold a live record; *removed (may be NULL) gets the
 * number of records deleted.
 */
int pvp_vcr_store_purge(pvp_vcr_store_t *st, size_t *removed);

/* First byte of every auxiliary key (pvp_vcr_store_aux_*). */
#define PVP_VCR_AUX_PREFIX 'G'

/*!
 * \brief Auxiliary records in the same database, so state that must survive a
 * restart (the guess ledger) lives with the records it is about.  \p key
 * must start with PVP_VCR_AUX_PREFIX (2..512 bytes, VP_EINVAL otherwise).
 * get: VP_ENOTFOUND if absent, VP_ESPACE if the value exceeds \p cap;
 * put/del: VP_EDB on a database error.  Writes go to the WAL before they
 * return, like the records' own.
 */
int pvp_vcr_store_aux_get(pvp_vcr_store_t *st, const void *key, size_t klen, uint8_t *val, size_t cap,
                          size_t *vlen);
int pvp_vcr_store_aux_put(pvp_vcr_store_t *st, const void *key, size_t klen, const uint8_t *val, size_t vlen);
int pvp_vcr_store_aux_del(pvp_vcr_store_t *st, const void *key, size_t klen);

/*!
 * \brief Every auxiliary record whose key starts with \p prefix (1..512 bytes,
 * first byte PVP_VCR_AUX_PREFIX, else VP_EINVAL), in key order, through \p cb
 * (non-zero return stops; key and value are valid during the call only).  The
 * iteration reads a snapshot: \p cb may put or delete records.  VP_EDB on a
 * database error.
 */
int pvp_vcr_store_aux_scan(pvp_vcr_store_t *st, const void *prefix, size_t plen,
                           int (*cb)(void *arg, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen),
                           void *arg);

#endif
