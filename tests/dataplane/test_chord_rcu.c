/*
 * RCU publication of routing tables: reader threads look up next hops while a
 * writer churns the table; no reader may ever see a torn or freed snapshot.
 *
 * Each snapshot carries a checksum over its whole value and its own invariants
 * (sorted neighbours and routes), checked on every read.  glibc's M_PERTURB
 * fills freed memory with a pattern, so a snapshot freed before its grace period
 * ended would fail the checksum too (ASan catches it directly in the clang build).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <malloc.h>
#include <pthread.h>
#include <cmocka.h>

#include "common/id.h"
#include "dataplane/chord_table.h"

enum { READERS = 2, WRITES = 3000, PEERS = 40 };

typedef struct shared {
	chord_rt_t rt;
	int stop;
	uint64_t reads[READERS];
	uint64_t versions_seen[READERS];
	uint64_t bad[READERS];
} shared_t;

typedef struct reader_arg {
	shared_t *sh;
	int idx;
} reader_arg_t;

static bool table_consistent(const chord_table_t *t)
{
	if (t->checksum != chord_table_checksum(t))
		return false;
	if (t->nroute > CHORD_MAX_ROUTE || t->nsucc > CHORD_MAX_NEIGH || t->npred > CHORD_MAX_NEIGH)
		return false;
	for (uint32_t i = 1; i < t->nroute; i++)
		if (vp_id_dist(&t->self, &t->route[i - 1]) >= vp_id_dist(&t->self, &t->route[i]))
			return false;
	for (uint32_t i = 1; i < t->nsucc; i++)
		if (vp_id_dist(&t->self, &t->succ[i - 1]) >= vp_id_dist(&t->self, &t->succ[i]))
			return false;
	return true;
}

static void *reader(void *p)
{
	reader_arg_t *a = p;
	shared_t *sh = a->sh;
	uint64_t last = UINT64_MAX;
	vp_id_t dest = { { 0 } };

	rcu_register_thread();
	while (!__atomic_load_n(&sh->stop, __ATOMIC_ACQUIRE)) {
		const chord_table_t *t = chord_rt_read(&sh->rt);
		if (t) {
			vp_id_t next;
			if (!table_consistent(t))
				sh->bad[a->idx]++;
			dest.b[0]++;
			dest.b[7] ^= (uint8_t)sh->reads[a->idx];
			if (chord_table_next_hop(t, &dest, &next) < 0)
				sh->bad[a->idx]++;
			else if (!vp_id_eq(&next, &t->self) && !chord_table_contains(t, &next))
				sh->bad[a->idx]++;
			if (t->version != last) {
				sh->versions_seen[a->idx]++;
				last = t->version;
			}
			sh->reads[a->idx]++;
		}
		rcu_quiescent_state();
	}
	rcu_unregister_thread();
	return NULL;
}

static void readers_never_see_a_torn_table(void **state)
{
	shared_t sh;
	pthread_t th[READERS];
	reader_arg_t args[READERS];
	chord_table_params_t p = chord_table_params_default();
	vp_id_t self = { { 0x42 } }, peers[PEERS];
	uint64_t x = 12345;
	(void)state;

	mallopt(M_PERTURB, 0xa5);
	memset(&sh, 0, sizeof(sh));
	chord_rt_init(&sh.rt, NULL);
	rcu_register_thread();
	for (int i = 0; i < READERS; i++) {
		args[i] = (reader_arg_t){ &sh, i };
		assert_int_equal(pthread_create(&th[i], NULL, reader, &args[i]), 0);
	}
	for (uint64_t v = 1; v <= WRITES; v++) {
		chord_table_t *t = malloc(sizeof(*t));
		assert_non_null(t);
		for (int i = 0; i < PEERS; i++) {
			for (int j = 0; j < VP_ID_LEN; j++) {
				x ^= x << 13;
				x ^= x >> 7;
				x ^= x << 17;
				peers[i].b[j] = (uint8_t)x;
			}
		}
		assert_int_equal(chord_table_build(t, &p, &self, peers, PEERS - (v % 7)), 0);
		t->version = v;
		t->checksum = chord_table_checksum(t);
		chord_rt_publish(&sh.rt, t);
		rcu_quiescent_state();
	}
	__atomic_store_n(&sh.stop, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < READERS; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	chord_rt_destroy(&sh.rt);
	rcu_thread_offline();
	rcu_barrier();
	rcu_thread_online();
	rcu_unregister_thread();
	mallopt(M_PERTURB, 0);

	for (int i = 0; i < READERS; i++) {
		assert_int_equal(sh.bad[i], 0);
		assert_true(sh.reads[i] > 0);
	}
	/* The readers really ran concurrently with the writer. */
	assert_true(sh.versions_seen[0] + sh.versions_seen[1] > 2);
}

static void destroy_frees_and_clears(void **state)
{
	chord_rt_t rt;
	chord_table_params_t p = chord_table_params_default();
	vp_id_t self = { { 1 } };
	chord_table_t *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
	(void)state;
	assert_int_equal(chord_table_build(a, &p, &self, NULL, 0), 0);
	assert_int_equal(chord_table_build(b, &p, &self, NULL, 0), 0);
	rcu_register_thread();
	chord_rt_init(&rt, a);
	assert_ptr_equal(chord_rt_read(&rt), a);
	chord_rt_publish(&rt, b);
	assert_ptr_equal(chord_rt_read(&rt), b);
	chord_rt_destroy(&rt);
	assert_null(chord_rt_read(&rt));
	rcu_thread_offline();
	rcu_barrier();
	rcu_thread_online();
	rcu_unregister_thread();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(readers_never_see_a_torn_table),
		cmocka_unit_test(destroy_frees_and_clears),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
