/* Model-based test: thousands of random ViPR stores, deletes, fetches, clock
 * jumps, sweeps, batches (committed or aborted) and restarts, each checked
 * against a small reference model of RFC 6940 dictionary semantics, expiry,
 * generation counters and the proportional quota. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/errcode.h"
#include "common/log.h"
#include "helpers.h"

#define R 24          /* numbers */
#define C 4           /* claimants (0xC0..0xC3) */
#define OPS 4000
#define QUOTA 10      /* Q; with S = 1, C = 2 at fraction 1: L = 12 */
#define LIMIT 12
#define VK ST_VIPR_KIND_ID_DEFAULT

typedef struct m_entry {
	bool present, exists;
	uint64_t st, expires;
	uint32_t lifetime;
	uint8_t tag;  /* pvp_methods byte: identifies the value */
} m_entry_t;

typedef struct model {
	m_entry_t e[R][C];
	uint64_t gen[R];
} model_t;

typedef struct ctx {
	char *dir;
	uint64_t now;
	vp_clock_t clk;
	st_config_t cfg;
	st_db_t *db;
	st_shard_t *sh;
	model_t m;
	uint64_t rng;
} ctx_t;

static uint64_t rnd(ctx_t *c, uint64_t n)
{
	c->rng ^= c->rng << 13;
	c->rng ^= c->rng >> 7;
	c->rng ^= c->rng << 17;
	return c->rng % n;
}

static uint32_t m_used(const model_t *m, int cl)
{
	uint32_t n = 0;
	for (int r = 0; r < R; r++)
		n += m->e[r][cl].present; /* tombstones are held data and count (docs/protocol.md §3.1) */
	return n;
}

static bool m_record(const model_t *m, int r)
{
	for (int cl = 0; cl < C; cl++)
		if (m->e[r][cl].present)
			return true;
	return false;
}

/* What st_store must answer, and the model after it. */
static int m_store(ctx_t *c, int r, int cl, bool exists, uint64_t st, uint32_t life, uint8_t tag)
{
	model_t *m = &c->m;
	m_entry_t *e = &m->e[r][cl];
	int32_t delta = 1;
	if (e->present && e->expires > c->now && st == e->st && exists == e->exists &&
	    (!exists || tag == e->tag)) {
		/* The held StoredData again: a no-op, except that expired entries go. */
		bool dropped = false;
		for (int k = 0; k < C; k++) {
			if (m->e[r][k].present && m->e[r][k].expires <= c->now) {
				m->e[r][k].present = false;
				dropped = true;
			}
		}
		if (dropped)
			m->gen[r]++;
		return 0;
	}
	if (e->present && e->expires > c->now && st <= e->st)
		return VP_EDATA_TOO_OLD;
	if (e->present)
		delta--;            /* replaced, or dropped as expired */
	if (delta > 0 && m_used(m, cl) + (uint32_t)delta > LIMIT)
		return VP_EQUOTA;
	for (int k = 0; k < C; k++)
		if (m->e[r][k].present && m->e[r][k].expires <= c->now)
			m->e[r][k].present = false;
	*e = (m_entry_t){ true, exists, st, c->now + (uint64_t)life * 1000, life, exists ? tag : 0 };
	m->gen[r]++;
	return 0;
}

static uint64_t m_sweep(ctx_t *c)
{
	uint64_t n = 0;
	for (int r = 0; r < R; r++) {
		bool changed = false;
		for (int cl = 0; cl < C; cl++) {
			m_entry_t *e = &c->m.e[r][cl];
			if (e->present && e->expires <= c->now) {
				e->present = false;
				changed = true;
				n++;
			}
		}
		if (changed)
			c->m.gen[r] = m_record(&c->m, r) ? c->m.gen[r] + 1 : 0;
	}
	return n;
}

static int do_store(ctx_t *c, int r, int cl, bool exists, uint64_t st, uint32_t life, uint8_t tag)
{
	vreg_t reg;
	vp_id_t rid = number_rid((unsigned long)r), who = node_id((uint8_t)(0xC0 + cl));
	vreg_make(&reg, &rid, &who, &who, 1, st, life, tag);
	reg.e.exists = exists;
	return st_store(c->sh, &reg.req, NULL, NULL);
}

/* Prefetch the records of resources rs[0..n) into the open batch (must not change any answer). */
static void do_prefetch(ctx_t *c, const int *rs, int n)
{
	vreg_t reg[8];
	st_store_req_t reqs[8];
	vp_id_t who = node_id(0xC0);
	for (int i = 0; i < n && i < 8; i++) {
		vp_id_t rid = number_rid((unsigned long)rs[i]);
		vreg_make(&reg[i], &rid, &who, &who, 1, 1, 120, 1);
		reqs[i] = reg[i].req;
		reqs[i].kinds = &reg[i].kd;
		reqs[i].signers = &reg[i].signer;
	}
	assert_int_equal(st_batch_prefetch(c->sh, reqs, (size_t)(n < 8 ? n : 8)), 0);
}

static void check_fetch(ctx_t *c, int r)
{
	got_t g;
	st_visitor_t v = got_visitor(&g);
	st_specifier_t s = { .kind = VK };
	vp_id_t rid = number_rid((unsigned long)r);
	size_t k = 0;
	assert_int_equal(st_fetch(c->sh, &rid, &s, 1, NULL, &v, NULL), 0);
	assert_true(g.gen == c->m.gen[r]);
	for (int cl = 0; cl < C; cl++) {
		const m_entry_t *e = &c->m.e[r][cl];
		if (!e->present || e->expires <= c->now)
			continue;
		assert_true(k < g.n);
		assert_int_equal(g.e[k].key[0], 0xC0 + cl);
		assert_int_equal(g.e[k].exists, e->exists);
		assert_true(g.e[k].storage_time == e->st);
		assert_int_equal(g.e[k].lifetime, e->lifetime);
		if (e->exists)
			assert_int_equal(g.e[k].val[21], e->tag); /* pvp_methods byte of the value */
		k++;
	}
	assert_int_equal(k, g.n);
}

static void check_quota(ctx_t *c)
{
	for (int cl = 0; cl < C; cl++) {
		vp_id_t who = node_id((uint8_t)(0xC0 + cl));
		assert_int_equal(st_quota_used(c->sh, &who, VK), m_used(&c->m, cl));
	}
}

static void random_operations_match_the_model(void **state)
{
	ctx_t *c = calloc(1, sizeof(*c));
	uint64_t base = T0_MS, n_ok = 0, n_old = 0, n_quota = 0, n_swept = 0, n_reopen = 0;
	uint64_t n_prefetch = 0;
	(void)state;
	c->dir = make_tmpdir();
	c->now = T0_MS;
	c->clk = (vp_clock_t){ vp_clock_manual_now, &c->now };
	c->rng = 0x2545F4914F6CDD1Dull;
	st_config_default(&c->cfg);
	c->cfg.path = c->dir;
	c->cfg.clock = &c->clk;
	c->cfg.vipr_quota = QUOTA;
	c->cfg.quota_slack = 1.0;
	c->cfg.quota_const = 2;
	c->cfg.rate[ST_RATE_STORE].rate = 0;
	c->cfg.rate[ST_RATE_FETCH].rate = 0;
	c->cfg.block_cache_bytes = 4u << 20;
	c->cfg.write_buffer_bytes = 1u << 20;
	assert_int_equal(st_db_open(&c->cfg, &c->db), 0);
	c->sh = st_db_shard(c->db, 0);
	assert_true(st_quota_limit_of(c->sh, VK) == LIMIT);

	for (int op = 0; op < OPS; op++) {
		uint64_t pick = rnd(c, 100);
		if (pick < 55) {
			int r = (int)rnd(c, R), cl = (int)rnd(c, C);
			bool exists = rnd(c, 5) != 0;
			/* storage_time near the model's latest: sometimes older, sometimes equal */
			uint64_t st = base + rnd(c, 6);
			uint32_t life = 60 + (uint32_t)rnd(c, 240);
			if (c->m.e[r][cl].present && rnd(c, 4) == 0)
				st = c->m.e[r][cl].st - rnd(c, 2); /* a replay, or an older copy */
			uint8_t tag = (uint8_t)rnd(c, 256);
			int want = m_store(c, r, cl, exists, st, life, tag);
			assert_int_equal(do_store(c, r, cl, exists, st, life, tag), want);
			n_ok += want == 0;
			n_old += want == VP_EDATA_TOO_OLD;
			n_quota += want == VP_EQUOTA;
			base += rnd(c, 3);
		} else if (pick < 75) {
			check_fetch(c, (int)rnd(c, R));
		} else if (pick < 85) {
			c->now += rnd(c, 100) * 1000 + rnd(c, 1000);
		} else if (pick < 90) {
			uint64_t n = 0, want = m_sweep(c);
			assert_int_equal(st_expire(c->sh, 0, &n), 0);
			assert_true(n == want);
			n_swept += n;
		} else if (pick < 98) {
			/* A batch of stores, committed or aborted. */
			model_t saved = c->m;
			bool commit = rnd(c, 3) != 0;
			int k = 1 + (int)rnd(c, 8);
			assert_int_equal(st_batch_begin(c->sh), 0);
			if (rnd(c, 2)) {
				/* Read some records ahead, as the server does for a batch's StoreReqs. */
				int rs[8], np = 1 + (int)rnd(c, 8);
				for (int i = 0; i < np; i++)
					rs[i] = (int)rnd(c, R);
				do_prefetch(c, rs, np);
				n_prefetch++;
			}
			for (int i = 0; i < k; i++) {
				int r = (int)rnd(c, R), cl = (int)rnd(c, C);
				uint64_t st = base + rnd(c, 6);
				uint8_t tag = (uint8_t)rnd(c, 256);
				int want;
				if (rnd(c, 4) == 0) {
					/* Also after stores of this batch: must not hide them. */
					do_prefetch(c, &r, 1);
					n_prefetch++;
				}
				want = m_store(c, r, cl, true, st, 120, tag);
				assert_int_equal(do_store(c, r, cl, true, st, 120, tag), want);
				base += rnd(c, 3);
			}
			if (commit) {
				assert_int_equal(st_batch_commit(c->sh), 0);
			} else {
				st_batch_abort(c->sh);
				c->m = saved;
			}
		} else {
			st_db_close(c->db);
			assert_int_equal(st_db_open(&c->cfg, &c->db), 0);
			c->sh = st_db_shard(c->db, 0);
			n_reopen++;
		}
		check_quota(c);
	}
	for (int r = 0; r < R; r++)
		check_fetch(c, r);
	assert_int_equal(st_shard_verify(c->sh), 0);
	/* The mix must really have exercised every rule. */
	print_message("model: ok=%llu too_old=%llu quota=%llu swept=%llu reopen=%llu prefetch=%llu\n",
	              (unsigned long long)n_ok, (unsigned long long)n_old,
	              (unsigned long long)n_quota, (unsigned long long)n_swept,
	              (unsigned long long)n_reopen, (unsigned long long)n_prefetch);
	assert_true(n_ok > 500 && n_old > 50 && n_quota > 20 && n_swept > 50 && n_reopen > 10);
	assert_true(n_prefetch > 50);
	st_db_close(c->db);
	rm_rf(c->dir);
	free(c->dir);
	free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(random_operations_match_the_model),
	};
	vp_log_setup(VP_LOG_WARN, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
