/*
 * storage/quota.h - proportional quota (docs/protocol.md §3).
 *
 * A responsible node that holds a fraction f of the ring accepts at most
 *   L = ceil(Q · f · S) + C
 * live entries of a kind from any one storing Node-ID, where Q is the kind's
 * system-wide quota per Node-ID, S the slack factor and C the slack constant.
 * The per-(Node-ID, kind) counters are derived state: an open-addressing table
 * owned by one shard (no locks), rebuilt from the database when it opens.
 */
#ifndef VP_STORAGE_QUOTA_H
#define VP_STORAGE_QUOTA_H

#include <stddef.h>
#include <stdint.h>

#include "common/id.h"

/* Defaults (docs/protocol.md §3 derives the false-refusal probability from them). */
#define ST_QUOTA_SLACK_DEFAULT 2.0 /* S: twice the expected share */
#define ST_QUOTA_CONST_DEFAULT 16u /* C: covers the Poisson tail when Q·f is small */

/*!
 * \brief The limit L for quota \p q, responsible fraction \p fraction_ppb (parts
 * per billion), slack \p slack and constant \p c.  q == 0 means "no quota"
 * and returns UINT64_MAX.
 */
uint64_t st_quota_limit(uint32_t q, uint32_t fraction_ppb, double slack, uint32_t c);

typedef struct st_quota_slot {
	vp_id_t owner;
	uint32_t kind;
	uint32_t used;   /* 0 = empty slot */
} st_quota_slot_t;

typedef struct st_quota_table {
	st_quota_slot_t *slots;
	size_t cap;      /* power of two */
	size_t n;        /* slots in use */
	uint64_t seed;   /* hash seed (random per table: owners are chosen by peers) */
} st_quota_table_t;

/*! \brief Initialise an empty table; VP_ENOMEM on failure. */
int st_quota_init(st_quota_table_t *t);

/*! \brief Free the table's memory. */
void st_quota_free(st_quota_table_t *t);

/*! \brief Drop every counter (before a rebuild). */
void st_quota_clear(st_quota_table_t *t);

/*! \brief Entries currently counted for (owner, kind). */
uint32_t st_quota_get(const st_quota_table_t *t, const vp_id_t *owner, uint32_t kind);

/*!
 * \brief Add \p delta to (owner, kind).  VP_ERANGE if the count would go below
 * zero (a bookkeeping bug; the table is left unchanged), VP_ENOMEM if it cannot grow.
 */
int st_quota_add(st_quota_table_t *t, const vp_id_t *owner, uint32_t kind, int32_t delta);

/*! \brief Number of (owner, kind) pairs with a non-zero count. */
static inline size_t st_quota_pairs(const st_quota_table_t *t)
{
	return t->n;
}

#endif
