#include "storage/rate.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/errcode.h"
#include "common/rand.h"

#define RATE_INITIAL_CAP 64


static size_t slot_hash(const st_rate_table_t *t, const vp_id_t *id)
{
	uint64_t a, b;
	memcpy(&a, id->b, 8);
	memcpy(&b, id->b + 8, 8);
	return (size_t)vp_fmix64(vp_fmix64(a ^ t->seed) ^ b);
}

int st_rate_init(st_rate_table_t *t, const st_rate_limit_t limit[ST_RATE_NOPS], unsigned share)
{
	memset(t, 0, sizeof(*t));
	if (share > 4096)
		return VP_EINVAL;
	if (!share)
		share = 1;
	/* rate tokens/s over share tables = rate units per ms in units of 1/(1000 × share). */
	t->cost = 1000u * (uint64_t)share;
	for (int i = 0; i < ST_RATE_NOPS; i++) {
		t->limit[i] = limit[i];
		if (t->limit[i].rate && !t->limit[i].burst)
			t->limit[i].burst = 1;
		t->depth[i] = (uint64_t)t->limit[i].burst * 1000u;
		if (t->depth[i] < t->cost)
			t->depth[i] = t->cost;
	}
	if (getrandom(&t->seed, sizeof(t->seed), 0) != (ssize_t)sizeof(t->seed))
		t->seed = (uint64_t)(uintptr_t)t * 0x9e3779b97f4a7c15ull;
	t->slots = calloc(RATE_INITIAL_CAP, sizeof(*t->slots));
	if (!t->slots)
		return VP_ENOMEM;
	t->cap = RATE_INITIAL_CAP;
	return 0;
}

void st_rate_free(st_rate_table_t *t)
{
	free(t->slots);
	t->slots = NULL;
	t->cap = t->n = 0;
}

static void refill(const st_rate_table_t *t, st_rate_slot_t *s, int op, uint64_t now_ms)
{
	uint64_t cap = t->depth[op], rate = t->limit[op].rate;
	if (now_ms > s->last_ms[op]) {
		/* A gap of ceil(cap / rate) ms refills the bucket; below that the product
		 * gap × rate < cap + rate cannot overflow. */
		uint64_t gap = now_ms - s->last_ms[op];
		if (gap >= (cap + rate - 1) / rate) {
			s->mtokens[op] = cap;
		} else {
			uint64_t add = gap * rate;
			s->mtokens[op] = add >= cap - s->mtokens[op] ? cap : s->mtokens[op] + add;
		}
	}
	/* A clock stepping backwards must not mint tokens later. */
	s->last_ms[op] = now_ms;
}

static int slot_is_idle(const st_rate_table_t *t, st_rate_slot_t *s, uint64_t now_ms)
{
	for (int op = 0; op < ST_RATE_NOPS; op++) {
		if (!t->limit[op].rate)
			continue;
		refill(t, s, op, now_ms);
		if (s->mtokens[op] < t->depth[op])
			return 0;
	}
	return 1;
}

static st_rate_slot_t *probe(st_rate_slot_t *slots, size_t cap, const st_rate_table_t *t,
                             const vp_id_t *id)
{
	size_t mask = cap - 1, i = slot_hash(t, id) & mask;
	while (slots[i].used && !vp_id_eq(&slots[i].signer, id))
		i = (i + 1) & mask;
	return &slots[i];
}

/* Rebuild into a table of \p cap slots, dropping idle buckets. */
static int rehash(st_rate_table_t *t, size_t cap, uint64_t now_ms)
{
	st_rate_slot_t *ns = calloc(cap, sizeof(*ns));
	size_t n = 0;
	if (!ns)
		return VP_ENOMEM;
	for (size_t i = 0; i < t->cap; i++) {
		st_rate_slot_t *s = &t->slots[i];
		if (!s->used || slot_is_idle(t, s, now_ms))
			continue;
		*probe(ns, cap, t, &s->signer) = *s;
		n++;
	}
	free(t->slots);
	t->slots = ns;
	t->cap = cap;
	t->n = n;
	return 0;
}

int st_rate_take(st_rate_table_t *t, const vp_id_t *signer, st_rate_op_t op, uint64_t now_ms)
{
	st_rate_slot_t *s;
	if ((unsigned)op >= ST_RATE_NOPS)
		return VP_EINVAL;
	if (!t->limit[op].rate)
		return 0;
	s = probe(t->slots, t->cap, t, signer);
	if (!s->used) {
		if ((t->n + 1) * 2 > t->cap) {
			/* Purge idle buckets first; double only if that freed too little. */
			if (rehash(t, t->cap, now_ms))
				return VP_ENOMEM;
			if ((t->n + 1) * 4 > t->cap && rehash(t, t->cap * 2, now_ms))
				return VP_ENOMEM;
			s = probe(t->slots, t->cap, t, signer);
		}
		memset(s, 0, sizeof(*s));
		s->signer = *signer;
		s->used = 1;
		for (int i = 0; i < ST_RATE_NOPS; i++) {
			s->mtokens[i] = t->depth[i];
			s->last_ms[i] = now_ms;
		}
		t->n++;
	}
	refill(t, s, op, now_ms);
	if (s->mtokens[op] < t->cost)
		return VP_ERATELIMIT;
	s->mtokens[op] -= t->cost;
	return 0;
}
