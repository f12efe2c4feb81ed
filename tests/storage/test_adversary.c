/* Storage against an adversary (issue 11 items 1-3): a claimant crowding the
 * owner out of a number, tombstones used to escape the quota, re-replication of
 * held entries, and per-entry access control in stores that carry several
 * claimants' data.  Each test plays the attacker through the public API and
 * asserts what the owner still gets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/errcode.h"
#include "common/log.h"
#include "helpers.h"

#define VK ST_VIPR_KIND_ID_DEFAULT

typedef struct fx {
	char *dir;
	uint64_t now, mono;
	vp_clock_t clk, rate_clk;
	st_config_t cfg;
	st_db_t *db;
	st_shard_t *sh;
} fx_t;

static void fx_open(fx_t *f)
{
	assert_int_equal(st_db_open(&f->cfg, &f->db), 0);
	f->sh = st_db_shard(f->db, 0);
	assert_non_null(f->sh);
}

static void fx_reopen(fx_t *f)
{
	st_db_close(f->db);
	fx_open(f);
}

static int setup(void **state)
{
	fx_t *f = calloc(1, sizeof(*f));
	f->dir = make_tmpdir();
	assert_non_null(f->dir);
	f->now = T0_MS;
	f->clk = (vp_clock_t){ vp_clock_manual_now, &f->now };
	f->mono = 5000;
	f->rate_clk = (vp_clock_t){ vp_clock_manual_now, &f->mono };
	st_config_default(&f->cfg);
	f->cfg.path = f->dir;
	f->cfg.clock = &f->clk;
	f->cfg.rate_clock = &f->rate_clk;
	f->cfg.rate[ST_RATE_STORE].rate = 0;
	f->cfg.rate[ST_RATE_FETCH].rate = 0;
	f->cfg.block_cache_bytes = 8u << 20;
	f->cfg.write_buffer_bytes = 4u << 20;
	fx_open(f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx_t *f = *state;
	st_db_close(f->db);
	rm_rf(f->dir);
	free(f->dir);
	free(f);
	return 0;
}

static size_t fetch_all(fx_t *f, const vp_id_t *rid, got_t *g)
{
	st_visitor_t v = got_visitor(g);
	st_specifier_t s = { .kind = VK };
	assert_int_equal(st_fetch(f->sh, rid, &s, 1, NULL, &v, NULL), 0);
	return g->n;
}

static bool got_key(const got_t *g, const vp_id_t *claimant, uint32_t vservice)
{
	uint8_t key[ST_VIPR_KEY_LEN];
	st_vipr_key_t k = { *claimant, vservice };
	st_vipr_key_encode(&k, key);
	for (size_t i = 0; i < g->n; i++)
		if (g->e[i].key_len == ST_VIPR_KEY_LEN && !memcmp(g->e[i].key, key, ST_VIPR_KEY_LEN))
			return true;
	return false;
}

/* ---- 1. crowding ------------------------------------------------------------------- */

/*
 * One certificate carrying 16 Node-IDs stores, one entry at a time, 4 VServices
 * under each of them: 64 entries, the kind's max-count.  Without a
 * per-certificate limit all are accepted and the owner's own registration then
 * fails with Data_Too_Large.
 */
static void one_certificate_cannot_crowd_the_owner_out(void **state)
{
	fx_t *f = *state;
	vp_id_t rid = number_rid(1), owner = node_id(0x0A), cert[16];
	vreg_t r;
	got_t g;
	unsigned accepted = 0, quota_refused = 0;
	for (int i = 0; i < 16; i++) {
		cert[i] = node_id((uint8_t)(0x40 + i));
		cert[i].b[15] = (uint8_t)i;
	}
	for (int i = 0; i < 16; i++) {
		for (uint32_t vs = 1; vs <= 4; vs++) {
			int rc;
			vreg_make(&r, &rid, &cert[i], &cert[i], vs, f->now, 3600, 3);
			r.req.signers = cert;
			r.req.n_signers = 16;
			rc = st_store(f->sh, &r.req, NULL, NULL);
			if (rc == 0)
				accepted++;
			else if (rc == VP_EQUOTA)
				quota_refused++;
			else
				fail_msg("unexpected %s", vp_errname(rc));
		}
	}
	assert_int_equal(accepted, ST_VIPR_MAX_PER_CERT);
	assert_int_equal(quota_refused, 64 - ST_VIPR_MAX_PER_CERT);
	/* The owner's registration goes in whatever the attacker holds. */
	vreg_make(&r, &rid, &owner, &owner, 1, f->now, 3600, 3);
	assert_int_equal(st_store(f->sh, &r.req, NULL, NULL), 0);
	assert_int_equal(fetch_all(f, &rid, &g), ST_VIPR_MAX_PER_CERT + 1);
	assert_true(got_key(&g, &owner, 1));
	/* A refresh of a held entry, and a deletion, still pass at the limit. */
	vreg_make(&r, &rid, &cert[0], &cert[0], 1, f->now + 1, 3600, 3);
	r.req.signers = cert;
	r.req.n_signers = 16;
	assert_int_equal(st_store(f->sh, &r.req, NULL, NULL), 0);
	r.e.storage_time = f->now + 2;
	r.e.exists = false;
	assert_int_equal(st_store(f->sh, &r.req, NULL, NULL), 0);
	/* The tombstone still occupies the certificate's place: a fifth key is refused. */
	vreg_make(&r, &rid, &cert[5], &cert[5], 9, f->now + 3, 3600, 3);
	r.req.signers = cert;
	r.req.n_signers = 16;
	assert_int_equal(st_store(f->sh, &r.req, NULL, NULL), VP_EQUOTA);
	assert_int_equal(st_shard_verify(f->sh), 0);
}

/* One request carrying more than the limit for one certificate is refused whole. */
static void one_request_over_the_certificate_limit_is_refused(void **state)
{
	fx_t *f = *state;
	vp_id_t rid = number_rid(2), a = node_id(0xA1);
	vreg_t r[ST_VIPR_MAX_PER_CERT + 1];
	st_entry_t e[ST_VIPR_MAX_PER_CERT + 1];
	st_kind_data_t kd = { .kind = VK, .values = e, .n_values = ST_VIPR_MAX_PER_CERT + 1 };
	st_store_req_t req = { .resource = rid, .kinds = &kd, .n_kinds = 1, .signers = &a, .n_signers = 1 };
	got_t g;
	for (uint32_t i = 0; i <= ST_VIPR_MAX_PER_CERT; i++) {
		vreg_make(&r[i], &rid, &a, &a, i + 1, f->now, 3600, 3);
		e[i] = r[i].e;
	}
	assert_int_equal(st_store(f->sh, &req, NULL, NULL), VP_EQUOTA);
	assert_int_equal(fetch_all(f, &rid, &g), 0);
	kd.n_values = ST_VIPR_MAX_PER_CERT;
	assert_int_equal(st_store(f->sh, &req, NULL, NULL), 0);
	assert_int_equal(fetch_all(f, &rid, &g), ST_VIPR_MAX_PER_CERT);
}

/* ---- 2. tombstones --------------------------------------------------------------------- */

/*
 * One Node-ID stores 500 tombstones at 500 numbers (each kept for its
 * lifetime) against a limit of 36.  Tombstones are held data: they count, so
 * the limit holds, also after a restart rebuilds the counters.
 */
static void tombstones_are_charged_to_the_quota(void **state)
{
	fx_t *f = *state;
	vp_id_t a = node_id(0xA1);
	unsigned accepted = 0;
	st_db_close(f->db);
	f->cfg.vipr_quota = 100;
	fx_open(f);
	st_shard_set_fraction(f->sh, 100000000u); /* 10 %: L = ceil(100*0.1*2) + 16 = 36 */
	assert_true(st_quota_limit_of(f->sh, VK) == 36);
	for (unsigned long i = 0; i < 500; i++) {
		vreg_t r;
		vp_id_t rid = number_rid(1000 + i);
		int rc;
		vreg_make(&r, &rid, &a, &a, 1, f->now, ST_VIPR_MAX_LIFETIME, 3);
		r.e.exists = false;
		rc = st_store(f->sh, &r.req, NULL, NULL);
		assert_true(rc == 0 || rc == VP_EQUOTA);
		accepted += rc == 0;
	}
	assert_int_equal(accepted, 36);
	assert_int_equal(st_quota_used(f->sh, &a, VK), 36);
	fx_reopen(f);
	st_shard_set_fraction(f->sh, 100000000u);
	assert_int_equal(st_quota_used(f->sh, &a, VK), 36);
	assert_int_equal(st_shard_verify(f->sh), 0);
	/* Held tombstones block live stores too; their expiry gives the room back. */
	{
		vreg_t r;
		vp_id_t rid = number_rid(9999);
		vreg_make(&r, &rid, &a, &a, 1, f->now, 3600, 3);
		assert_int_equal(st_store(f->sh, &r.req, NULL, NULL), VP_EQUOTA);
		f->now += (uint64_t)ST_VIPR_MAX_LIFETIME * 1000 + 1;
		assert_int_equal(st_expire(f->sh, 0, NULL), 0);
		assert_int_equal(st_quota_used(f->sh, &a, VK), 0);
		r.e.storage_time = f->now;
		assert_int_equal(st_store(f->sh, &r.req, NULL, NULL), 0);
	}
}

/* ---- 3. re-replication and per-entry access control ------------------------------------- */

/*
 * A replica already holds A's entry; the responsible peer re-replicates
 * {A's entry (same storage_time, same bytes), B's new entry}.  The held copy is
 * a no-op, B's entry is stored.
 */
static void rereplication_with_a_held_entry_stores_the_new_one(void **state)
{
	fx_t *f = *state;
	vp_id_t rid = number_rid(3), a = node_id(0xA1), b = node_id(0xB2), both[2] = { a, b };
	vreg_t ra, rb;
	st_entry_t e[2];
	st_kind_data_t kd = { .kind = VK, .values = e, .n_values = 2 };
	st_store_req_t req = { .resource = rid, .replica_number = 1, .kinds = &kd, .n_kinds = 1,
		               .signers = both, .n_signers = 2 };
	got_t g;
	uint64_t gen = 0;
	vreg_make(&ra, &rid, &a, &a, 1, f->now, 3600, 3);
	ra.req.replica_number = 1;
	assert_int_equal(st_store(f->sh, &ra.req, NULL, NULL), 0);
	vreg_make(&rb, &rid, &b, &b, 1, f->now + 10, 3600, 3);
	e[0] = ra.e;
	e[0].lifetime = 3000; /* the remaining lifetime a re-replication carries */
	e[1] = rb.e;
	assert_int_equal(st_store(f->sh, &req, &gen, NULL), 0);
	assert_true(gen == 2);
	assert_int_equal(fetch_all(f, &rid, &g), 2);
	assert_true(got_key(&g, &a, 1) && got_key(&g, &b, 1));
	assert_int_equal(st_quota_used(f->sh, &a, VK), 1);
	assert_int_equal(st_quota_used(f->sh, &b, VK), 1);
	/* Re-replicating exactly what is held changes nothing, not even the generation. */
	assert_int_equal(st_store(f->sh, &req, &gen, NULL), 0);
	assert_true(gen == 2);
	/* The same storage_time with other bytes is still Data_Too_Old. */
	ra.val[ra.e.value_len - 2] ^= 0x01; /* pvp_methods */
	assert_int_equal(st_store(f->sh, &ra.req, NULL, NULL), VP_EDATA_TOO_OLD);
	ra.val[ra.e.value_len - 2] ^= 0x01;
	ra.e.exists = false;
	assert_int_equal(st_store(f->sh, &ra.req, NULL, NULL), VP_EDATA_TOO_OLD);
	assert_int_equal(st_shard_verify(f->sh), 0);
}

/*
 * A replica store (sent by the responsible peer R) carries A's and B's entries,
 * each with its own verified signer.  Each entry is checked against its own
 * signature: an entry under B's key signed by A is refused (before, one signer
 * set per request forced the caller to pass {A, B} and the forgery went in),
 * and an entry without a signer of its own is checked against R's.
 */
static void replica_store_checks_each_entry_against_its_own_signer(void **state)
{
	fx_t *f = *state;
	vp_id_t rid = number_rid(4), a = node_id(0xA1), b = node_id(0xB2), r = node_id(0x5E);
	st_signer_t sa = { &a, 1, NULL, 0 }, sb = { &b, 1, NULL, 0 };
	vreg_t ra, rb;
	st_entry_t e[2];
	st_kind_data_t kd = { .kind = VK, .values = e, .n_values = 2 };
	st_store_req_t req = { .resource = rid, .replica_number = 1, .kinds = &kd, .n_kinds = 1,
		               .signers = &r, .n_signers = 1 };
	got_t g;
	vreg_make(&ra, &rid, &a, &a, 1, f->now, 3600, 3);
	vreg_make(&rb, &rid, &b, &b, 1, f->now, 3600, 3);
	e[0] = ra.e;
	e[1] = rb.e;
	/* Forged: B's entry claimed to be signed by A. */
	e[0].signer = &sa;
	e[1].signer = &sa;
	assert_int_equal(st_store(f->sh, &req, NULL, NULL), VP_EFORBIDDEN);
	/* No signer of its own: checked against the sending peer R, who is neither. */
	e[1].signer = NULL;
	assert_int_equal(st_store(f->sh, &req, NULL, NULL), VP_EFORBIDDEN);
	assert_int_equal(fetch_all(f, &rid, &g), 0);
	/* Each with its own signer: both stored, each charged to its claimant. */
	e[1].signer = &sb;
	assert_int_equal(st_store(f->sh, &req, NULL, NULL), 0);
	assert_int_equal(fetch_all(f, &rid, &g), 2);
	assert_true(got_key(&g, &a, 1) && got_key(&g, &b, 1));
	assert_int_equal(g.e[0].replica, 1);
	assert_int_equal(st_quota_used(f->sh, &a, VK), 1);
	assert_int_equal(st_quota_used(f->sh, &b, VK), 1);
	/* A signer without Node-IDs is a caller error. */
	sb.n_node_ids = 0;
	assert_int_equal(st_store(f->sh, &req, NULL, NULL), VP_EINVAL);
}

/* The certificate limit applies per entry signer inside one replica store. */
static void replica_store_counts_each_certificate_separately(void **state)
{
	fx_t *f = *state;
	vp_id_t rid = number_rid(5), a = node_id(0xA1), b = node_id(0xB2), r = node_id(0x5E);
	st_signer_t sa = { &a, 1, NULL, 0 }, sb = { &b, 1, NULL, 0 };
	enum { NA = ST_VIPR_MAX_PER_CERT, N = NA + 2 };
	vreg_t rg[N];
	st_entry_t e[N];
	st_kind_data_t kd = { .kind = VK, .values = e, .n_values = N };
	st_store_req_t req = { .resource = rid, .replica_number = 1, .kinds = &kd, .n_kinds = 1,
		               .signers = &r, .n_signers = 1 };
	got_t g;
	for (uint32_t i = 0; i < N; i++) {
		bool is_a = i < NA;
		vreg_make(&rg[i], &rid, is_a ? &a : &b, is_a ? &a : &b, i + 1, f->now, 3600, 3);
		e[i] = rg[i].e;
		e[i].signer = is_a ? &sa : &sb;
	}
	/* NA of A's and 2 of B's: each certificate within its limit. */
	assert_int_equal(st_store(f->sh, &req, NULL, NULL), 0);
	assert_int_equal(fetch_all(f, &rid, &g), N);
	/* One more of A's: refused. */
	vreg_make(&rg[0], &rid, &a, &a, 99, f->now + 1, 3600, 3);
	e[0] = rg[0].e;
	e[0].signer = &sa;
	kd.values = e;
	kd.n_values = 1;
	assert_int_equal(st_store(f->sh, &req, NULL, NULL), VP_EQUOTA);
	assert_int_equal(fetch_all(f, &rid, &g), N);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(one_certificate_cannot_crowd_the_owner_out),
		T(one_request_over_the_certificate_limit_is_refused),
		T(tombstones_are_charged_to_the_quota),
		T(rereplication_with_a_held_entry_stores_the_new_one),
		T(replica_store_checks_each_entry_against_its_own_signer),
		T(replica_store_counts_each_certificate_separately),
#undef T
	};
	vp_log_setup(VP_LOG_WARN, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
