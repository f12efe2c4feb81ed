/* Several shard threads write their own column families at once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>

#include "common/errcode.h"
#include "common/log.h"
#include "helpers.h"

#define N_SHARDS 4
#define PER_SHARD 3000
#define BATCH 50

typedef struct worker {
	st_shard_t *sh;
	unsigned idx;
	int rc;
	size_t fetched;
} worker_t;

static void *run(void *arg)
{
	worker_t *w = arg;
	vp_id_t me = node_id((uint8_t)(0x10 + w->idx));
	for (unsigned i = 0; i < PER_SHARD && !w->rc; i++) {
		vreg_t r;
		vp_id_t rid = number_rid(w->idx * 1000000ul + i);
		if (i % BATCH == 0 && (w->rc = st_batch_begin(w->sh)))
			break;
		vreg_make(&r, &rid, &me, &me, w->idx, T0_MS, 3600, 1);
		w->rc = st_store(w->sh, &r.req, NULL, NULL);
		if (!w->rc && (i % BATCH == BATCH - 1 || i == PER_SHARD - 1))
			w->rc = st_batch_commit(w->sh);
	}
	for (unsigned i = 0; i < PER_SHARD && !w->rc; i++) {
		got_t g;
		st_visitor_t v = got_visitor(&g);
		st_specifier_t s = { .kind = ST_VIPR_KIND_ID_DEFAULT };
		vp_id_t rid = number_rid(w->idx * 1000000ul + i);
		w->rc = st_fetch(w->sh, &rid, &s, 1, NULL, &v, NULL);
		if (!w->rc && g.n == 1 && memcmp(g.e[0].key, me.b, 16) == 0)
			w->fetched++;
	}
	return NULL;
}

static void shards_write_their_column_families_concurrently(void **state)
{
	char *dir = make_tmpdir();
	uint64_t now = T0_MS;
	vp_clock_t clk = { vp_clock_manual_now, &now };
	st_config_t cfg;
	st_db_t *db;
	pthread_t th[N_SHARDS];
	worker_t w[N_SHARDS];
	(void)state;
	st_config_default(&cfg);
	cfg.path = dir;
	cfg.n_shards = N_SHARDS;
	cfg.clock = &clk;
	cfg.vipr_quota = 0;
	cfg.rate[ST_RATE_STORE].rate = 0;
	cfg.block_cache_bytes = 8u << 20;
	cfg.write_buffer_bytes = 1u << 20;
	assert_int_equal(st_db_open(&cfg, &db), 0);
	for (unsigned i = 0; i < N_SHARDS; i++) {
		w[i] = (worker_t){ st_db_shard(db, i), i, 0, 0 };
		assert_int_equal(pthread_create(&th[i], NULL, run, &w[i]), 0);
	}
	for (unsigned i = 0; i < N_SHARDS; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	for (unsigned i = 0; i < N_SHARDS; i++) {
		assert_int_equal(w[i].rc, 0);
		assert_int_equal(w[i].fetched, PER_SHARD);
		for (unsigned j = 0; j < N_SHARDS; j++) {
			vp_id_t who = node_id((uint8_t)(0x10 + j));
			assert_int_equal(st_quota_used(st_db_shard(db, i), &who, ST_VIPR_KIND_ID_DEFAULT),
			                 i == j ? PER_SHARD : 0);
		}
		assert_int_equal(st_shard_verify(st_db_shard(db, i)), 0);
	}
	/* And the column families really are separate after a restart. */
	st_db_close(db);
	assert_int_equal(st_db_open(&cfg, &db), 0);
	for (unsigned i = 0; i < N_SHARDS; i++) {
		vp_id_t who = node_id((uint8_t)(0x10 + i));
		assert_int_equal(st_quota_used(st_db_shard(db, i), &who, ST_VIPR_KIND_ID_DEFAULT), PER_SHARD);
	}
	st_db_close(db);
	rm_rf(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(shards_write_their_column_families_concurrently),
	};
	vp_log_setup(VP_LOG_WARN, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
