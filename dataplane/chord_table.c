#include "dataplane/chord_table.h"

#include <stdlib.h>
#include <string.h>

#include "common/errcode.h"

chord_table_params_t chord_table_params_default(void)
{
	return (chord_table_params_t){ .num_pred = 3, .num_succ = 3, .num_fingers = 32 };
}

int chord_table_params_check(const chord_table_params_t *p)
{
	if (!p || p->num_pred < 1 || p->num_pred > CHORD_MAX_NEIGH ||
	    p->num_succ < CHORD_REPLICAS || p->num_succ > CHORD_MAX_NEIGH ||
	    p->num_fingers < 16 || p->num_fingers > CHORD_MAX_FINGERS)
		return VP_ECONFIG;
	return 0;
}

typedef struct peer_at {
	vp_u128_t dist; /* clockwise distance from self, never 0 */
	vp_id_t id;
} peer_at_t;

static int cmp_peer_at(const void *a, const void *b)
{
	const peer_at_t *x = a, *y = b;
	return x->dist < y->dist ? -1 : x->dist > y->dist;
}

/* First index in sorted[0..n) with dist >= d (n if none). */
static size_t lower_bound(const peer_at_t *sorted, size_t n, vp_u128_t d)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (sorted[mid].dist < d)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* FNV-1a-style mix of 64-bit words (the table's fields are 8-byte aligned
 * arrays of 16-byte ids): cheap enough to run on every publish. */
static uint64_t cks_mix(uint64_t h, const void *p, size_t len)
{
	const uint8_t *b = p;
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		uint64_t w;
		memcpy(&w, b + i, 8);
		h = (h ^ w) * 0x100000001b3ull;
	}
	for (; i < len; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h;
}

uint32_t chord_table_checksum(const chord_table_t *t)
{
	/* Every field but rcu and checksum; of the arrays, the entries in use
	 * (build zeroes the rest, which no reader looks at). */
	uint64_t h = 0xcbf29ce484222325ull;
	uint32_t nf = t->finger_lo < CHORD_MAX_FINGERS ? CHORD_MAX_FINGERS - t->finger_lo : 0;
	uint32_t np = t->npred < CHORD_MAX_NEIGH ? t->npred : CHORD_MAX_NEIGH;
	uint32_t ns = t->nsucc < CHORD_MAX_NEIGH ? t->nsucc : CHORD_MAX_NEIGH;
	uint32_t nr = t->nroute < CHORD_MAX_ROUTE ? t->nroute : CHORD_MAX_ROUTE;
	h = cks_mix(h, &t->self, (size_t)((const uint8_t *)&t->pred - (const uint8_t *)&t->self));
	h = cks_mix(h, t->pred, np * sizeof(vp_id_t));
	h = cks_mix(h, t->succ, ns * sizeof(vp_id_t));
	h = cks_mix(h, t->finger, nf * sizeof(vp_id_t));
	h = cks_mix(h, t->finger_ok, nf);
	h = cks_mix(h, t->route, nr * sizeof(vp_id_t));
	return (uint32_t)h ^ (uint32_t)(h >> 32);
}

int chord_table_build(chord_table_t *out, const chord_table_params_t *p,
                      const vp_id_t *self, const vp_id_t *peers, size_t n)
{
	peer_at_t *sorted = NULL;
	size_t m = 0;
	uint8_t used_stack[256];
	uint8_t *used = used_stack;
	int err = chord_table_params_check(p);

	if (err)
		return err;
	if (n && !peers)
		return VP_EINVAL;
	memset(out, 0, sizeof(*out));
	out->self = *self;
	out->finger_lo = CHORD_MAX_FINGERS - p->num_fingers;
	if (n) {
		sorted = malloc(n * sizeof(*sorted));
		if (!sorted)
			return VP_ENOMEM;
		for (size_t i = 0; i < n; i++) {
			vp_u128_t d = vp_id_dist(self, &peers[i]);
			if (d == 0)
				continue;
			sorted[m].dist = d;
			sorted[m].id = peers[i];
			m++;
		}
		qsort(sorted, m, sizeof(*sorted), cmp_peer_at);
		/* Drop duplicates. */
		size_t k = 0;
		for (size_t i = 0; i < m; i++)
			if (k == 0 || sorted[k - 1].dist != sorted[i].dist)
				sorted[k++] = sorted[i];
		m = k;
	}
	if (m > sizeof(used_stack)) {
		used = calloc(m, 1);
		if (!used) {
			free(sorted);
			return VP_ENOMEM;
		}
	} else {
		memset(used, 0, sizeof(used_stack));
	}

	for (size_t i = 0; i < m && i < p->num_succ; i++) {
		out->succ[out->nsucc++] = sorted[i].id;
		used[i] = 1;
	}
	out->whole_ring = m < p->num_pred;
	for (size_t i = 0; i < m && i < p->num_pred; i++) {
		out->pred[out->npred++] = sorted[m - 1 - i].id;
		used[m - 1 - i] = 1;
	}
	for (uint32_t s = out->finger_lo; s < CHORD_MAX_FINGERS; s++) {
		size_t j = lower_bound(sorted, m, (vp_u128_t)1 << s);
		if (j == m)
			continue; /* self is the first vnode at or after the target */
		out->finger[s - out->finger_lo] = sorted[j].id;
		out->finger_ok[s - out->finger_lo] = 1;
		out->nfinger++;
		if (!used[j])
			used[j] = 2;
	}
	for (size_t i = 0; i < m; i++) {
		if (used[i])
			out->route[out->nroute++] = sorted[i].id;
	}
	/* Distinct finger ids: count route entries that some finger slot names. */
	for (uint32_t r = 0; r < out->nroute; r++) {
		for (uint32_t f = 0; f < p->num_fingers; f++) {
			if (out->finger_ok[f] && vp_id_eq(&out->finger[f], &out->route[r])) {
				out->nfinger_distinct++;
				break;
			}
		}
	}
	out->checksum = chord_table_checksum(out);
	if (used != used_stack)
		free(used);
	free(sorted);
	return 0;
}

bool chord_table_responsible(const chord_table_t *t, const vp_id_t *id)
{
	if (t->npred == 0)
		return true;
	return vp_id_in_oc(id, &t->pred[0], &t->self);
}

int chord_table_next_hop(const chord_table_t *t, const vp_id_t *dest, vp_id_t *next)
{
	vp_u128_t dd;
	size_t lo, hi;

	if (chord_table_responsible(t, dest)) {
		*next = t->self;
		return CHORD_HOP_LOCAL;
	}
	if (t->nroute == 0)
		return VP_ENOROUTE;
	/* A successor whose range covers dest: (succ[i-1], succ[i]]. */
	for (uint32_t i = 0; i < t->nsucc; i++) {
		const vp_id_t *lo_id = i ? &t->succ[i - 1] : &t->self;
		if (vp_id_in_oc(dest, lo_id, &t->succ[i])) {
			*next = t->succ[i];
			return CHORD_HOP_DIRECT;
		}
	}
	/* A predecessor whose range covers dest: (pred[i+1], pred[i]]. */
	for (uint32_t i = 0; i + 1 < t->npred; i++) {
		if (vp_id_in_oc(dest, &t->pred[i + 1], &t->pred[i])) {
			*next = t->pred[i];
			return CHORD_HOP_DIRECT;
		}
	}
	/* Closest preceding entry: largest clockwise distance <= that of dest. */
	dd = vp_id_dist(&t->self, dest);
	lo = 0;
	hi = t->nroute;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (vp_id_dist(&t->self, &t->route[mid]) <= dd)
			lo = mid + 1;
		else
			hi = mid;
	}
	/* lo >= 1: succ[0] = route[0] precedes dest, or dest would be covered above. */
	*next = t->route[lo ? lo - 1 : 0];
	return vp_id_eq(next, dest) ? CHORD_HOP_DIRECT : CHORD_HOP_FORWARD;
}

uint32_t chord_table_fraction_ppb(const chord_table_t *t)
{
	if (t->npred == 0)
		return 1000000000u;
	return vp_id_fraction_ppb(&t->pred[0], &t->self);
}

size_t chord_table_replicas(const chord_table_t *t, vp_id_t *out, size_t max)
{
	size_t k = 0;
	for (uint32_t i = 0; i < t->nsucc && i < CHORD_REPLICAS && k < max; i++)
		out[k++] = t->succ[i];
	return k;
}

int chord_table_replica_rank(const chord_table_t *t, const vp_id_t *id)
{
	if (chord_table_responsible(t, id))
		return 0;
	for (uint32_t r = 1; r <= CHORD_REPLICAS && r <= t->npred; r++) {
		const vp_id_t *lo;
		if (r < t->npred)
			lo = &t->pred[r];
		else if (t->whole_ring)
			lo = &t->self; /* the farthest predecessor's range starts at self */
		else
			return -1;
		if (vp_id_in_oc(id, lo, &t->pred[r - 1]))
			return (int)r;
	}
	return -1;
}

bool chord_table_contains(const chord_table_t *t, const vp_id_t *id)
{
	vp_u128_t d = vp_id_dist(&t->self, id);
	size_t lo = 0, hi = t->nroute;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		vp_u128_t md = vp_id_dist(&t->self, &t->route[mid]);
		if (md == d)
			return true;
		if (md < d)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/* ---- RCU publication ------------------------------------------------- */

static void free_table_rcu(struct rcu_head *head)
{
	free(caa_container_of(head, chord_table_t, rcu));
}

void chord_rt_init(chord_rt_t *rt, chord_table_t *initial)
{
	rt->cur = initial;
}

void chord_rt_publish(chord_rt_t *rt, chord_table_t *t)
{
	chord_table_t *old = rcu_xchg_pointer(&rt->cur, t);
	if (old)
		call_rcu(&old->rcu, free_table_rcu);
}

void chord_rt_destroy(chord_rt_t *rt)
{
	chord_table_t *old = rcu_xchg_pointer(&rt->cur, NULL);
	if (old) {
		synchronize_rcu();
		free(old);
	}
}
