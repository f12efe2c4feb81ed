/*
 * storage/rate.h - per-signer token buckets policing Stores and Fetches.
 *
 * Each signer Node-ID gets one bucket per operation class.  A bucket holds up
 * to `burst` tokens and refills at `rate` tokens per second; a request takes
 * one token or is refused with VP_ERATELIMIT.
 *
 * Per node or per shard.  A node runs one table per shard.  When each shard is
 * a storing peer of its own (viprd: one vnode per shard) its table is created
 * with share = 1 and polices the whole rate.  When the shards share one peer's
 * limits, a signer's requests are spread over them by Resource-ID, so a table
 * created with share = n_shards polices rate / n_shards and burst / n_shards: across the
 * node a signer gets at most `rate` per second and `burst` at once, exactly
 * (integer arithmetic in units of 1/(1000 × share) token, no rounding), when
 * its requests spread evenly, and less if they all land on one shard.  Each
 * shard's bucket holds at least one token, so with burst < share the node-wide
 * burst is share tokens.
 *
 * Time is the caller's monotonic milliseconds (the store reads the system
 * monotonic clock, or the injectable clock of its configuration in tests), so a
 * wall-clock step neither mints nor withholds tokens.  Buckets that have refilled completely carry no
 * information and are purged when the table would otherwise grow, so memory is
 * bounded by the number of signers active within one refill period.
 * One table per shard: no locks.
 */
#ifndef VP_STORAGE_RATE_H
#define VP_STORAGE_RATE_H

#include <stddef.h>
#include <stdint.h>

#include "common/clock.h"
#include "common/id.h"

typedef enum st_rate_op {
	ST_RATE_STORE = 0,
	ST_RATE_FETCH = 1, /* Fetch, Stat and Find */
	ST_RATE_NOPS
} st_rate_op_t;

typedef struct st_rate_limit {
	uint32_t rate;  /*!< tokens per second; 0 disables policing for the class */
	uint32_t burst; /*!< bucket depth (>= 1 when rate > 0) */
} st_rate_limit_t;

typedef struct st_rate_slot {
	vp_id_t signer;
	uint64_t last_ms[ST_RATE_NOPS];
	uint64_t mtokens[ST_RATE_NOPS]; /* units of 1/(1000 × share) token */
	uint8_t used;
} st_rate_slot_t;

typedef struct st_rate_table {
	st_rate_limit_t limit[ST_RATE_NOPS];
	uint64_t depth[ST_RATE_NOPS]; /* bucket depth in units of 1/(1000 × share) token */
	uint64_t cost;              /* one token: 1000 × share units */
	st_rate_slot_t *slots;
	size_t cap, n;
	uint64_t seed;
} st_rate_table_t;

/*!
 * \brief Initialise with the node-wide limits, of which this table polices
 * 1/\p share (the number of shards; 0 is taken as 1).  VP_EINVAL if share >
 * 4096, VP_ENOMEM.
 */
int st_rate_init(st_rate_table_t *t, const st_rate_limit_t limit[ST_RATE_NOPS], unsigned share);

/*! \brief Free the table's memory. */
void st_rate_free(st_rate_table_t *t);

/*!
 * \brief Take one token of class \p op for \p signer at monotonic time \p now_ms.
 * 0 if allowed, VP_ERATELIMIT if the bucket is empty, VP_ENOMEM if a new
 * signer cannot be tracked (the request is then refused too: fail closed).
 */
int st_rate_take(st_rate_table_t *t, const vp_id_t *signer, st_rate_op_t op, uint64_t now_ms);

#endif
