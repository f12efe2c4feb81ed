#include "storage/quota.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/errcode.h"
#include "common/rand.h"

#define QUOTA_INITIAL_CAP 64 /* small nodes hold few signers; grows by doubling */

uint64_t st_quota_limit(uint32_t q, uint32_t fraction_ppb, double slack, uint32_t c)
{
	double share;
	if (q == 0)
		return UINT64_MAX;
	if (fraction_ppb > 1000000000u)
		fraction_ppb = 1000000000u;
	if (!(slack >= 1.0))
		slack = 1.0;
	share = ceil((double)q * ((double)fraction_ppb / 1e9) * slack);
	return (uint64_t)share + c;
}


static size_t slot_hash(const st_quota_table_t *t, const vp_id_t *owner, uint32_t kind)
{
	uint64_t a, b;
	memcpy(&a, owner->b, 8);
	memcpy(&b, owner->b + 8, 8);
	return (size_t)vp_fmix64(vp_fmix64(a ^ t->seed) ^ b ^ ((uint64_t)kind << 32 | kind));
}

static int table_alloc(st_quota_table_t *t, size_t cap)
{
	t->slots = calloc(cap, sizeof(*t->slots));
	if (!t->slots)
		return VP_ENOMEM;
	t->cap = cap;
	t->n = 0;
	return 0;
}

int st_quota_init(st_quota_table_t *t)
{
	memset(t, 0, sizeof(*t));
	if (getrandom(&t->seed, sizeof(t->seed), 0) != (ssize_t)sizeof(t->seed))
		t->seed = (uint64_t)(uintptr_t)t * 0x9e3779b97f4a7c15ull;
	return table_alloc(t, QUOTA_INITIAL_CAP);
}

void st_quota_free(st_quota_table_t *t)
{
	free(t->slots);
	t->slots = NULL;
	t->cap = t->n = 0;
}

void st_quota_clear(st_quota_table_t *t)
{
	memset(t->slots, 0, t->cap * sizeof(*t->slots));
	t->n = 0;
}

static st_quota_slot_t *find(const st_quota_table_t *t, const vp_id_t *owner, uint32_t kind,
                             size_t *pos)
{
	size_t mask = t->cap - 1, i = slot_hash(t, owner, kind) & mask;
	for (;;) {
		st_quota_slot_t *s = &t->slots[i];
		if (!s->used) {
			*pos = i;
			return NULL;
		}
		if (s->kind == kind && vp_id_eq(&s->owner, owner)) {
			*pos = i;
			return s;
		}
		i = (i + 1) & mask;
	}
}

uint32_t st_quota_get(const st_quota_table_t *t, const vp_id_t *owner, uint32_t kind)
{
	size_t pos;
	const st_quota_slot_t *s = find(t, owner, kind, &pos);
	return s ? s->used : 0;
}

static int grow(st_quota_table_t *t)
{
	st_quota_table_t nt = *t;
	if (table_alloc(&nt, t->cap * 2))
		return VP_ENOMEM;
	for (size_t i = 0; i < t->cap; i++) {
		size_t pos;
		if (!t->slots[i].used)
			continue;
		find(&nt, &t->slots[i].owner, t->slots[i].kind, &pos);
		nt.slots[pos] = t->slots[i];
		nt.n++;
	}
	free(t->slots);
	*t = nt;
	return 0;
}

/* Backward-shift deletion keeps linear probing free of tombstones. */
static void erase(st_quota_table_t *t, size_t i)
{
	size_t mask = t->cap - 1, j = i;
	for (;;) {
		size_t home;
		j = (j + 1) & mask;
		if (!t->slots[j].used)
			break;
		home = slot_hash(t, &t->slots[j].owner, t->slots[j].kind) & mask;
		/* Move j back to i unless its home lies cyclically in (i, j]. */
		if (i <= j ? (home > i && home <= j) : (home > i || home <= j))
			continue;
		t->slots[i] = t->slots[j];
		i = j;
	}
	memset(&t->slots[i], 0, sizeof(t->slots[i]));
	t->n--;
}

int st_quota_add(st_quota_table_t *t, const vp_id_t *owner, uint32_t kind, int32_t delta)
{
	size_t pos;
	st_quota_slot_t *s = find(t, owner, kind, &pos);
	int64_t now = s ? s->used : 0, next = now + delta;
	if (next < 0 || next > UINT32_MAX)
		return VP_ERANGE;
	if (delta == 0)
		return 0;
	if (s) {
		if (next == 0)
			erase(t, pos);
		else
			s->used = (uint32_t)next;
		return 0;
	}
	/* Keep the load factor at or below 1/2. */
	if ((t->n + 1) * 2 > t->cap) {
		if (grow(t))
			return VP_ENOMEM;
		find(t, owner, kind, &pos);
	}
	t->slots[pos].owner = *owner;
	t->slots[pos].kind = kind;
	t->slots[pos].used = (uint32_t)next;
	t->n++;
	return 0;
}
