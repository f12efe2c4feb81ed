/* Chord routing table: ring edge cases, next-hop choice, fingers, replica sets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cmocka.h>

#include "common/errcode.h"
#include "common/id.h"
#include "dataplane/chord_table.h"

/* An id whose top byte is \p top and the rest zero (easy to reason about). */
static vp_id_t T(uint8_t top)
{
	vp_id_t id = { { 0 } };
	id.b[0] = top;
	return id;
}

static chord_table_t *build(vp_id_t self, const vp_id_t *peers, size_t n)
{
	chord_table_params_t p = chord_table_params_default();
	chord_table_t *t = malloc(sizeof(*t));
	assert_non_null(t);
	assert_int_equal(chord_table_build(t, &p, &self, peers, n), 0);
	return t;
}

static void assert_id(const vp_id_t *a, vp_id_t b)
{
	assert_memory_equal(a->b, b.b, VP_ID_LEN);
}

static void lone_node_owns_everything(void **state)
{
	vp_id_t self = T(0x40), next;
	chord_table_t *t = build(self, NULL, 0);
	vp_id_t r[2];
	(void)state;
	assert_true(chord_table_responsible(t, &(vp_id_t){ { 0xff } }));
	assert_int_equal(chord_table_fraction_ppb(t), 1000000000u);
	assert_int_equal(chord_table_next_hop(t, &(vp_id_t){ { 0x01 } }, &next), CHORD_HOP_LOCAL);
	assert_id(&next, self);
	assert_int_equal(chord_table_replicas(t, r, 2), 0);
	assert_int_equal(t->nroute, 0);
	free(t);
}

static void neighbours_wrap_around_zero(void **state)
{
	/* self 0x10; peers on both sides of zero. */
	vp_id_t peers[] = { T(0xf0), T(0x50), T(0x20), T(0xe0), T(0x08), T(0x90), T(0xd0) };
	chord_table_t *t = build(T(0x10), peers, 7);
	(void)state;
	assert_int_equal(t->nsucc, 3);
	assert_int_equal(t->npred, 3);
	assert_id(&t->succ[0], T(0x20));
	assert_id(&t->succ[1], T(0x50));
	assert_id(&t->succ[2], T(0x90));
	assert_id(&t->pred[0], T(0x08));
	assert_id(&t->pred[1], T(0xf0));
	assert_id(&t->pred[2], T(0xe0));
	/* (0x08, 0x10] is ours: 0x09.., 0x10 yes; 0x08 itself and 0x11 not. */
	assert_true(chord_table_responsible(t, &(vp_id_t){ { 0x09 } }));
	assert_true(chord_table_responsible(t, &(vp_id_t){ { 0x10 } }));
	assert_false(chord_table_responsible(t, &(vp_id_t){ { 0x08 } }));
	assert_false(chord_table_responsible(t, &(vp_id_t){ { 0x10, 1 } }));
	/* 8/256 of the ring = 31,250,000 ppb. */
	assert_int_equal(chord_table_fraction_ppb(t), 31250000u);
	free(t);
}

static void predecessor_across_zero_gives_wrapped_range(void **state)
{
	vp_id_t peers[] = { T(0xf0), T(0x80) };
	chord_table_t *t = build(T(0x10), peers, 2);
	(void)state;
	assert_id(&t->pred[0], T(0xf0));
	assert_true(chord_table_responsible(t, &(vp_id_t){ { 0xff, 0xff } }));
	assert_true(chord_table_responsible(t, &(vp_id_t){ { 0x00 } }));
	assert_true(chord_table_responsible(t, &(vp_id_t){ { 0x05 } }));
	assert_false(chord_table_responsible(t, &(vp_id_t){ { 0xf0 } }));
	assert_false(chord_table_responsible(t, &(vp_id_t){ { 0x80 } }));
	/* 0x20/0x100 = 1/8 */
	assert_int_equal(chord_table_fraction_ppb(t), 125000000u);
	free(t);
}

static void duplicates_and_self_are_ignored(void **state)
{
	vp_id_t peers[] = { T(0x20), T(0x10), T(0x20), T(0x30), T(0x10) };
	chord_table_t *t = build(T(0x10), peers, 5);
	(void)state;
	assert_int_equal(t->nroute, 2);
	assert_int_equal(t->nsucc, 2);
	assert_id(&t->succ[0], T(0x20));
	assert_id(&t->succ[1], T(0x30));
	assert_true(t->whole_ring);
	assert_true(chord_table_contains(t, &(vp_id_t){ { 0x30 } }));
	assert_false(chord_table_contains(t, &(vp_id_t){ { 0x10 } }));
	assert_false(chord_table_contains(t, &(vp_id_t){ { 0x40 } }));
	free(t);
}

static void next_hop_direct_neighbours(void **state)
{
	vp_id_t peers[] = { T(0xf0), T(0x50), T(0x20), T(0xe0), T(0x08), T(0x90), T(0xd0) };
	chord_table_t *t = build(T(0x10), peers, 7);
	vp_id_t next;
	(void)state;
	/* In (self, succ0]: the successor is responsible. */
	assert_int_equal(chord_table_next_hop(t, &(vp_id_t){ { 0x1f } }, &next), CHORD_HOP_DIRECT);
	assert_id(&next, T(0x20));
	assert_int_equal(chord_table_next_hop(t, &(vp_id_t){ { 0x20 } }, &next), CHORD_HOP_DIRECT);
	assert_id(&next, T(0x20));
	/* In (succ1, succ2]. */
	assert_int_equal(chord_table_next_hop(t, &(vp_id_t){ { 0x51 } }, &next), CHORD_HOP_DIRECT);
	assert_id(&next, T(0x90));
	/* In (pred1, pred0] = (0xf0, 0x08], across zero. */
	assert_int_equal(chord_table_next_hop(t, &(vp_id_t){ { 0x00, 7 } }, &next), CHORD_HOP_DIRECT);
	assert_id(&next, T(0x08));
	/* Local. */
	assert_int_equal(chord_table_next_hop(t, &(vp_id_t){ { 0x0f } }, &next), CHORD_HOP_LOCAL);
	assert_id(&next, T(0x10));
	free(t);
}

static void next_hop_closest_preceding_finger(void **state)
{
	/* 3 successors, 3 predecessors; fingers: slot 127 (0x90) -> 0x90,
	 * slot 126 (0x50) -> 0x58, slot 125 (0x30) -> 0x30. */
	vp_id_t peers[] = { T(0x11), T(0x12), T(0x13), T(0x30), T(0x58), T(0x90),
	                    T(0x0d), T(0x0e), T(0x0f) };
	chord_table_t *t = build(T(0x10), peers, 9);
	vp_id_t next;
	(void)state;
	assert_id(&t->finger[127 - 96], T(0x90));
	assert_id(&t->finger[126 - 96], T(0x58));
	assert_id(&t->finger[125 - 96], T(0x30));
	/* 0x60 lies after finger 0x58, before 0x90: forward to 0x58. */
	assert_int_equal(chord_table_next_hop(t, &(vp_id_t){ { 0x60 } }, &next), CHORD_HOP_FORWARD);
	assert_id(&next, T(0x58));
	/* Exactly a finger's id: send straight to it. */
	assert_int_equal(chord_table_next_hop(t, &(vp_id_t){ { 0x90 } }, &next), CHORD_HOP_DIRECT);
	assert_id(&next, T(0x90));
	/* 0x20: after succ2 (0x13), before finger 0x30 -> 0x13. */
	assert_int_equal(chord_table_next_hop(t, &(vp_id_t){ { 0x20 } }, &next), CHORD_HOP_FORWARD);
	assert_id(&next, T(0x13));
	/* 0xc0: after the last finger, before the predecessors -> 0x90. */
	assert_int_equal(chord_table_next_hop(t, &(vp_id_t){ { 0xc0 } }, &next), CHORD_HOP_FORWARD);
	assert_id(&next, T(0x90));
	free(t);
}

static void checksum_detects_a_changed_entry(void **state)
{
	vp_id_t peers[] = { T(0x20), T(0x30) };
	chord_table_t *t = build(T(0x10), peers, 2);
	(void)state;
	assert_int_equal(t->checksum, chord_table_checksum(t));
	t->succ[1].b[15] ^= 1;
	assert_int_not_equal(t->checksum, chord_table_checksum(t));
	free(t);
}

static void fingers_target_self_plus_pow2(void **state)
{
	/* self 0; one peer exactly at 2^127 and one at 2^126 + 1. */
	vp_id_t peers[2] = { T(0x80), T(0x40) };
	chord_table_t *t;
	(void)state;
	peers[1].b[15] = 1;
	t = build(T(0x00), peers, 2);
	assert_int_equal(t->finger_lo, 96);
	/* slot 127: target 2^127 -> the peer exactly there ("at or after"). */
	assert_true(t->finger_ok[127 - 96]);
	assert_id(&t->finger[127 - 96], T(0x80));
	/* slot 126: target 2^126 -> 2^126+1 (just after). */
	assert_true(t->finger_ok[126 - 96]);
	assert_memory_equal(t->finger[126 - 96].b, peers[1].b, VP_ID_LEN);
	/* slots below: all targets precede 2^126+1. */
	assert_true(t->finger_ok[0]);
	assert_memory_equal(t->finger[0].b, peers[1].b, VP_ID_LEN);
	assert_int_equal(t->nfinger, 32);
	assert_int_equal(t->nfinger_distinct, 2);
	free(t);
}

static void finger_past_last_peer_is_empty(void **state)
{
	/* One peer at 0x01..: targets >= 2^121 wrap to self, so those slots stay empty. */
	vp_id_t peers[1] = { T(0x01) };
	chord_table_t *t = build(T(0x00), peers, 1);
	(void)state;
	assert_true(t->finger_ok[120 - 96]);
	assert_false(t->finger_ok[121 - 96]);
	assert_false(t->finger_ok[127 - 96]);
	assert_int_equal(t->nfinger, 25);
	free(t);
}

static void replica_set_is_two_successors(void **state)
{
	vp_id_t peers[] = { T(0x20), T(0x30), T(0x40), T(0xf0), T(0xe0), T(0xd0) };
	chord_table_t *t = build(T(0x10), peers, 6);
	vp_id_t r[4];
	(void)state;
	assert_int_equal(chord_table_replicas(t, r, 4), 2);
	assert_id(&r[0], T(0x20));
	assert_id(&r[1], T(0x30));
	assert_int_equal(chord_table_replicas(t, r, 1), 1);
	/* Ranks: ours (0xf0,0x10] -> 0; (0xe0,0xf0] -> 1; (0xd0,0xe0] -> 2; else -1. */
	assert_int_equal(chord_table_replica_rank(t, &(vp_id_t){ { 0x05 } }), 0);
	assert_int_equal(chord_table_replica_rank(t, &(vp_id_t){ { 0xe5 } }), 1);
	assert_int_equal(chord_table_replica_rank(t, &(vp_id_t){ { 0xf0 } }), 1);
	assert_int_equal(chord_table_replica_rank(t, &(vp_id_t){ { 0xd5 } }), 2);
	assert_int_equal(chord_table_replica_rank(t, &(vp_id_t){ { 0xd0 } }), -1);
	assert_int_equal(chord_table_replica_rank(t, &(vp_id_t){ { 0x25 } }), -1);
	free(t);
}

static void replica_ranks_on_tiny_rings(void **state)
{
	vp_id_t two[] = { T(0x80) };
	vp_id_t three[] = { T(0x80), T(0xc0) };
	vp_id_t r[2];
	chord_table_t *t = build(T(0x10), two, 1);
	(void)state;
	/* Two vnodes: each holds the other's data as replica 1. */
	assert_int_equal(chord_table_replica_rank(t, &(vp_id_t){ { 0x50 } }), 1);
	assert_int_equal(chord_table_replica_rank(t, &(vp_id_t){ { 0x90 } }), 0);
	assert_int_equal(chord_table_replicas(t, r, 2), 1);
	free(t);
	/* Three vnodes: 0x80 owns (0x10,0x80] -> we are its 2nd successor; 0xc0's range -> replica 1. */
	t = build(T(0x10), three, 2);
	assert_int_equal(chord_table_replica_rank(t, &(vp_id_t){ { 0x50 } }), 2);
	assert_int_equal(chord_table_replica_rank(t, &(vp_id_t){ { 0xa0 } }), 1);
	assert_int_equal(chord_table_replica_rank(t, &(vp_id_t){ { 0xd0 } }), 0);
	assert_int_equal(chord_table_replicas(t, r, 2), 2);
	free(t);
}

static void params_are_checked(void **state)
{
	chord_table_params_t p = chord_table_params_default();
	chord_table_t t;
	vp_id_t self = T(1);
	(void)state;
	assert_int_equal(chord_table_params_check(&p), 0);
	p.num_fingers = 15;
	assert_int_equal(chord_table_build(&t, &p, &self, NULL, 0), VP_ECONFIG);
	p = chord_table_params_default();
	p.num_succ = 1; /* fewer successors than replicas */
	assert_int_equal(chord_table_params_check(&p), VP_ECONFIG);
	p = chord_table_params_default();
	p.num_pred = CHORD_MAX_NEIGH + 1;
	assert_int_equal(chord_table_params_check(&p), VP_ECONFIG);
}

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static vp_id_t rnd_id(void)
{
	vp_id_t id;
	uint64_t a = rnd(), b = rnd();
	memcpy(id.b, &a, 8);
	memcpy(id.b + 8, &b, 8);
	return id;
}

static int cmp_id(const void *a, const void *b)
{
	return vp_id_cmp(a, b);
}

/* Full tables on a static ring of 1024 vnodes: greedy routing always ends at the
 * true successor of the key, in about half log2(N) hops (the Chord bound). */
static void greedy_routing_reaches_the_owner(void **state)
{
	enum { N = 1024, KEYS = 4000 };
	vp_id_t *ids = malloc(N * sizeof(*ids));
	chord_table_t **tabs = malloc(N * sizeof(*tabs));
	chord_table_params_t p = chord_table_params_default();
	double hops_total = 0;
	unsigned max_hops = 0;
	(void)state;
	for (int i = 0; i < N; i++)
		ids[i] = rnd_id();
	qsort(ids, N, sizeof(*ids), cmp_id);
	for (int i = 0; i < N; i++) {
		tabs[i] = malloc(sizeof(chord_table_t));
		assert_int_equal(chord_table_build(tabs[i], &p, &ids[i], ids, N), 0);
		assert_true(tabs[i]->nfinger_distinct >= 8);
	}
	for (int k = 0; k < KEYS; k++) {
		vp_id_t key = rnd_id(), next;
		int at = (int)(rnd() % N), owner = 0;
		unsigned hops = 0;
		/* Owner: first id >= key, wrapping. */
		while (owner < N && vp_id_cmp(&ids[owner], &key) < 0)
			owner++;
		owner %= N;
		for (;;) {
			int h = chord_table_next_hop(tabs[at], &key, &next);
			assert_true(h >= 0);
			if (h == CHORD_HOP_LOCAL)
				break;
			vp_id_t *f = bsearch(&next, ids, N, sizeof(*ids), cmp_id);
			assert_non_null(f);
			at = (int)(f - ids);
			hops++;
			assert_true(hops < 64);
		}
		assert_int_equal(at, owner);
		hops_total += hops;
		if (hops > max_hops)
			max_hops = hops;
	}
	assert_true(hops_total / KEYS <= 0.5 * log2(N) + 1);
	assert_true(max_hops <= 2 * 10 + 1);
	for (int i = 0; i < N; i++)
		free(tabs[i]);
	free(tabs);
	free(ids);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(lone_node_owns_everything),
		cmocka_unit_test(neighbours_wrap_around_zero),
		cmocka_unit_test(predecessor_across_zero_gives_wrapped_range),
		cmocka_unit_test(duplicates_and_self_are_ignored),
		cmocka_unit_test(next_hop_direct_neighbours),
		cmocka_unit_test(next_hop_closest_preceding_finger),
		cmocka_unit_test(checksum_detects_a_changed_entry),
		cmocka_unit_test(fingers_target_self_plus_pow2),
		cmocka_unit_test(finger_past_last_peer_is_empty),
		cmocka_unit_test(replica_set_is_two_successors),
		cmocka_unit_test(replica_ranks_on_tiny_rings),
		cmocka_unit_test(params_are_checked),
		cmocka_unit_test(greedy_routing_reaches_the_owner),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
