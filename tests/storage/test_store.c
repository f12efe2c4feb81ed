/* Store semantics: RFC 6940 rules, ViPR access control, quota, policing, expiry,
 * restart, batches and range operations, each asserted on stored values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/sha.h>
#include <rocksdb/c.h>

#include "common/errcode.h"
#include "common/log.h"
#include "helpers.h"
#include "storage/quota.h"

#define KIND_SINGLE 0xF0000201u /* NODE-MATCH single */
#define KIND_ARRAY  0xF0000202u /* NODE-MATCH array, max-count 4 */
#define KIND_DICT2  0xF0000203u /* USER-NODE-MATCH dictionary, max-count 2 */
#define VK ST_VIPR_KIND_ID_DEFAULT

typedef struct fx {
	char *dir;
	uint64_t now, mono;
	vp_clock_t clk, rate_clk;
	st_config_t cfg;
	st_kind_t kinds[3];
	st_db_t *db;
	st_shard_t *sh;
} fx_t;

static void fx_config(fx_t *f)
{
	st_config_default(&f->cfg);
	f->cfg.path = f->dir;
	f->cfg.n_shards = 1;
	f->cfg.clock = &f->clk;
	f->cfg.rate_clock = &f->rate_clk;
	f->cfg.rate[ST_RATE_STORE].rate = 0;
	f->cfg.rate[ST_RATE_FETCH].rate = 0;
	f->cfg.block_cache_bytes = 8u << 20;
	f->cfg.write_buffer_bytes = 4u << 20;
	f->kinds[0] = (st_kind_t){ .id = KIND_SINGLE, .name = "T-SINGLE", .model = ST_MODEL_SINGLE,
		.acl = ST_ACL_NODE_MATCH, .max_count = 1, .max_size = 100, .min_lifetime = 1,
		.max_lifetime = 3600 };
	f->kinds[1] = (st_kind_t){ .id = KIND_ARRAY, .name = "T-ARRAY", .model = ST_MODEL_ARRAY,
		.acl = ST_ACL_NODE_MATCH, .max_count = 4, .max_size = 100, .min_lifetime = 1,
		.max_lifetime = 3600 };
	f->kinds[2] = (st_kind_t){ .id = KIND_DICT2, .name = "T-DICT", .model = ST_MODEL_DICTIONARY,
		.acl = ST_ACL_USER_NODE_MATCH, .max_count = 2, .max_size = 100, .min_lifetime = 1,
		.max_lifetime = 3600 };
	f->cfg.kinds = f->kinds;
	f->cfg.n_kinds = 3;
}

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
	fx_config(f);
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

static int store_vipr(fx_t *f, unsigned long number, uint8_t claimant, uint64_t t, uint32_t life)
{
	vreg_t r;
	vp_id_t rid = number_rid(number), c = node_id(claimant);
	vreg_make(&r, &rid, &c, &c, 1, t, life, ST_VIPR_PVP_WITH_CALLER_ID);
	return st_store(f->sh, &r.req, NULL, NULL);
}

static int store_vipr_at(fx_t *f, const vp_id_t *rid, uint8_t claimant, uint64_t t)
{
	vreg_t r;
	vp_id_t c = node_id(claimant);
	vreg_make(&r, rid, &c, &c, 1, t, 3600, 1);
	return st_store(f->sh, &r.req, NULL, NULL);
}

static size_t fetch_all(fx_t *f, const vp_id_t *rid, uint32_t kind, got_t *g)
{
	st_visitor_t v = got_visitor(g);
	st_specifier_t s = { .kind = kind };
	assert_int_equal(st_fetch(f->sh, rid, &s, 1, NULL, &v, NULL), 0);
	return g->n;
}

/* ---- ViPR registrations ----------------------------------------------------- */

static void vipr_store_then_fetch_returns_exact_bytes(void **state)
{
	fx_t *f = *state;
	vreg_t r;
	got_t g;
	uint64_t gen = 0;
	vp_id_t rid = number_rid(1), a = node_id(0xA1);
	st_vipr_value_t dv;
	vreg_make(&r, &rid, &a, &a, 7, f->now, 86400, 3);
	assert_int_equal(st_store(f->sh, &r.req, &gen, NULL), 0);
	assert_true(gen == 1);
	assert_int_equal(fetch_all(f, &rid, VK, &g), 1);
	assert_true(g.gen == 1);
	assert_int_equal(g.e[0].key_len, ST_VIPR_KEY_LEN);
	assert_memory_equal(g.e[0].key, r.key, ST_VIPR_KEY_LEN);
	assert_int_equal(g.e[0].val_len, r.e.value_len);
	assert_memory_equal(g.e[0].val, r.val, r.e.value_len);
	assert_int_equal(g.e[0].sig_len, 64);
	assert_memory_equal(g.e[0].sig, r.sig, 64);
	assert_true(g.e[0].storage_time == f->now);
	assert_int_equal(g.e[0].lifetime, 86400);
	assert_true(g.e[0].exists);
	assert_int_equal(st_vipr_value_decode(g.e[0].val, g.e[0].val_len, &dv), 0);
	assert_true(vp_id_eq(&dv.contact, &a));
	assert_int_equal(dv.vservice_id, 7);
	assert_int_equal(dv.pvp_methods, 3);
	assert_int_equal(st_quota_used(f->sh, &a, VK), 1);
}

static void two_claimants_of_one_number_give_two_entries(void **state)
{
	fx_t *f = *state;
	vp_id_t rid = number_rid(2), a = node_id(0xA1), b = node_id(0xB2);
	got_t g;
	assert_int_equal(store_vipr(f, 2, 0xA1, f->now, 3600), 0);
	assert_int_equal(store_vipr(f, 2, 0xB2, f->now, 3600), 0);
	assert_int_equal(fetch_all(f, &rid, VK, &g), 2);
	assert_true(g.gen == 2);
	/* Dictionary order: claimant 0xA1.. before 0xB2.. */
	assert_memory_equal(g.e[0].key, a.b, 16);
	assert_memory_equal(g.e[1].key, b.b, 16);
	assert_int_equal(st_quota_used(f->sh, &a, VK), 1);
	assert_int_equal(st_quota_used(f->sh, &b, VK), 1);
}

static void vipr_key_of_another_node_is_forbidden(void **state)
{
	fx_t *f = *state;
	vreg_t r;
	got_t g;
	vp_id_t rid = number_rid(3), a = node_id(0xA1), b = node_id(0xB2);
	assert_int_equal(store_vipr(f, 3, 0xA1, f->now, 3600), 0);
	/* B signs a newer entry under A's key: refused, A's entry untouched. */
	vreg_make(&r, &rid, &a, &b, 1, f->now + 5000, 3600, 1);
	r.signer = b;
	assert_int_equal(st_store(f->sh, &r.req, NULL, NULL), VP_EFORBIDDEN);
	/* B may not delete A's entry either. */
	r.e.exists = false;
	assert_int_equal(st_store(f->sh, &r.req, NULL, NULL), VP_EFORBIDDEN);
	assert_int_equal(fetch_all(f, &rid, VK, &g), 1);
	assert_true(g.e[0].exists);
	assert_true(g.e[0].storage_time == f->now);
	assert_int_equal(st_quota_used(f->sh, &b, VK), 0);
}

static void vipr_contact_must_be_a_signer_node(void **state)
{
	fx_t *f = *state;
	vreg_t r;
	vp_id_t rid = number_rid(4), a = node_id(0xA1), x = node_id(0x77), two[2];
	vreg_make(&r, &rid, &a, &x, 1, f->now, 3600, 1);
	assert_int_equal(st_store(f->sh, &r.req, NULL, NULL), VP_EFORBIDDEN);
	/* A certificate carrying both Node-IDs may point at its other vnode. */
	two[0] = a;
	two[1] = x;
	r.req.signers = two;
	r.req.n_signers = 2;
	assert_int_equal(st_store(f->sh, &r.req, NULL, NULL), 0);
}

static void vipr_malformed_key_or_value_is_refused(void **state)
{
	fx_t *f = *state;
	vreg_t r;
	vp_id_t rid = number_rid(5), a = node_id(0xA1);
	vreg_make(&r, &rid, &a, &a, 1, f->now, 3600, 1);
	r.e.key_len = 16;
	assert_int_equal(st_store(f->sh, &r.req, NULL, NULL), VP_EMALFORMED);
	r.e.key_len = ST_VIPR_KEY_LEN;
	r.val[0] = 9; /* unknown value version */
	assert_int_equal(st_store(f->sh, &r.req, NULL, NULL), VP_EMALFORMED);
	r.val[0] = 1;
	r.e.value_len -= 1; /* truncated */
	assert_int_equal(st_store(f->sh, &r.req, NULL, NULL), VP_EMALFORMED);
}

static void tombstone_by_owner_deletes_and_is_charged_while_held(void **state)
{
	fx_t *f = *state;
	vreg_t r;
	got_t g;
	uint64_t gen;
	vp_id_t rid = number_rid(6), a = node_id(0xA1);
	assert_int_equal(store_vipr(f, 6, 0xA1, f->now, 3600), 0);
	vreg_make(&r, &rid, &a, &a, 1, f->now + 1, 3600, 1);
	r.e.exists = false;
	assert_int_equal(st_store(f->sh, &r.req, &gen, NULL), 0);
	assert_true(gen == 2);
	assert_int_equal(fetch_all(f, &rid, VK, &g), 1);
	assert_false(g.e[0].exists);
	assert_int_equal(g.e[0].val_len, 0);
	/* The tombstone is held data: it keeps its place in the quota (docs/protocol.md §3.1). */
	assert_int_equal(st_quota_used(f->sh, &a, VK), 1);
	/* A newer store revives the entry. */
	assert_int_equal(store_vipr(f, 6, 0xA1, f->now + 2, 3600), 0);
	assert_int_equal(st_quota_used(f->sh, &a, VK), 1);
	assert_int_equal(st_shard_verify(f->sh), 0);
}

/* ---- RFC 6940 store rules --------------------------------------------------- */

static void older_or_equal_storage_time_is_data_too_old(void **state)
{
	fx_t *f = *state;
	vp_id_t rid = number_rid(7);
	got_t g;
	assert_int_equal(store_vipr(f, 7, 0xA1, f->now, 3600), 0);
	/* The same StoredData again is a no-op (a re-replication); other bytes are too old. */
	assert_int_equal(store_vipr(f, 7, 0xA1, f->now, 3600), 0);
	{
		vreg_t r;
		vp_id_t a = node_id(0xA1);
		vreg_make(&r, &rid, &a, &a, 1, f->now, 3600, ST_VIPR_PVP_WITHOUT_CALLER_ID);
		assert_int_equal(st_store(f->sh, &r.req, NULL, NULL), VP_EDATA_TOO_OLD);
	}
	assert_int_equal(store_vipr(f, 7, 0xA1, f->now - 1, 3600), VP_EDATA_TOO_OLD);
	assert_int_equal(store_vipr(f, 7, 0xA1, f->now + 1, 1800), 0);
	assert_int_equal(fetch_all(f, &rid, VK, &g), 1);
	assert_true(g.e[0].storage_time == f->now + 1);
	assert_int_equal(g.e[0].lifetime, 1800);
	assert_true(g.gen == 2);
	assert_int_equal(st_quota_used(f->sh, &(vp_id_t){ 0 }, VK), 0);
	{
		vp_id_t a = node_id(0xA1);
		assert_int_equal(st_quota_used(f->sh, &a, VK), 1); /* replaced, not added */
	}
}

static void conditional_store_checks_generation(void **state)
{
	fx_t *f = *state;
	vreg_t r;
	uint64_t gen = 0;
	vp_id_t rid = number_rid(8), a = node_id(0xA1);
	vreg_make(&r, &rid, &a, &a, 1, f->now, 3600, 1);
	r.kd.generation = 5; /* nothing stored yet: current is 0 */
	assert_int_equal(st_store(f->sh, &r.req, &gen, NULL), VP_EGEN_TOO_LOW);
	r.kd.generation = 0;
	assert_int_equal(st_store(f->sh, &r.req, &gen, NULL), 0);
	assert_true(gen == 1);
	r.e.storage_time++;
	r.kd.generation = 2;
	assert_int_equal(st_store(f->sh, &r.req, &gen, NULL), VP_EGEN_TOO_LOW);
	r.kd.generation = 1;
	assert_int_equal(st_store(f->sh, &r.req, &gen, NULL), 0);
	assert_true(gen == 2);
}

static void max_size_and_max_count_give_data_too_large(void **state)
{
	fx_t *f = *state;
	vp_id_t n = node_id(0x11), rid = vp_id_from_name(n.b, 16);
	uint8_t big[101] = { 0 };
	st_entry_t e[5];
	st_kind_data_t kd = { .kind = KIND_ARRAY, .values = e, .n_values = 1 };
	st_store_req_t req = { .resource = rid, .kinds = &kd, .n_kinds = 1, .signers = &n, .n_signers = 1 };
	memset(e, 0, sizeof(e));
	for (int i = 0; i < 5; i++) {
		e[i].index = (uint32_t)i;
		e[i].storage_time = f->now;
		e[i].lifetime = 60;
		e[i].exists = true;
		e[i].value = big;
		e[i].value_len = 10;
	}
	e[0].value_len = 101;
	assert_int_equal(st_store(f->sh, &req, NULL, NULL), VP_EDATA_TOO_LARGE);
	e[0].value_len = 100;
	kd.n_values = 5; /* max-count 4 */
	assert_int_equal(st_store(f->sh, &req, NULL, NULL), VP_EDATA_TOO_LARGE);
	kd.n_values = 4;
	assert_int_equal(st_store(f->sh, &req, NULL, NULL), 0);
	kd.values = &e[4];
	kd.n_values = 1;
	assert_int_equal(st_store(f->sh, &req, NULL, NULL), VP_EDATA_TOO_LARGE);
}

static void unknown_kind_is_reported_with_its_id(void **state)
{
	fx_t *f = *state;
	vreg_t r;
	uint32_t bad = 0;
	got_t g;
	st_visitor_t v = got_visitor(&g);
	st_specifier_t s = { .kind = 0xF0009999u };
	vp_id_t rid = number_rid(9), a = node_id(0xA1), out;
	vreg_make(&r, &rid, &a, &a, 1, f->now, 3600, 1);
	r.kd.kind = 0xF0009999u;
	assert_int_equal(st_store(f->sh, &r.req, NULL, &bad), VP_EUNKNOWN_KIND);
	assert_true(bad == 0xF0009999u);
	bad = 0;
	assert_int_equal(st_fetch(f->sh, &rid, &s, 1, NULL, &v, &bad), VP_EUNKNOWN_KIND);
	assert_true(bad == 0xF0009999u);
	assert_int_equal(st_find(f->sh, &rid, 0xF0009999u, NULL, &out), VP_EUNKNOWN_KIND);
	assert_null(st_db_kind(f->db, 0xF0009999u));
	assert_non_null(st_db_kind(f->db, VK));
}

static void lifetime_below_minimum_is_invalid_and_above_maximum_clamped(void **state)
{
	fx_t *f = *state;
	got_t g;
	vp_id_t rid = number_rid(10);
	assert_int_equal(store_vipr(f, 10, 0xA1, f->now, ST_VIPR_MIN_LIFETIME - 1), VP_EINVAL);
	assert_int_equal(store_vipr(f, 10, 0xA1, f->now, 0), VP_EINVAL);
	assert_int_equal(store_vipr(f, 10, 0xA1, f->now, 999999), 0);
	assert_int_equal(fetch_all(f, &rid, VK, &g), 1);
	assert_int_equal(g.e[0].lifetime, ST_VIPR_MAX_LIFETIME);
}

static void duplicate_key_in_one_request_is_invalid(void **state)
{
	fx_t *f = *state;
	vreg_t r;
	st_entry_t two[2];
	vp_id_t rid = number_rid(11), a = node_id(0xA1);
	vreg_make(&r, &rid, &a, &a, 1, f->now, 3600, 1);
	two[0] = r.e;
	two[1] = r.e;
	two[1].storage_time++;
	r.kd.values = two;
	r.kd.n_values = 2;
	assert_int_equal(st_store(f->sh, &r.req, NULL, NULL), VP_EINVAL);
}

/* ---- models -------------------------------------------------------------------- */

static void single_model_node_match(void **state)
{
	fx_t *f = *state;
	vp_id_t n = node_id(0x22), other = node_id(0x23), rid = vp_id_from_name(n.b, 16);
	st_entry_t e = { .storage_time = f->now, .lifetime = 60, .exists = true,
	                 .value = (const uint8_t *)"turn", .value_len = 4 };
	st_kind_data_t kd = { .kind = KIND_SINGLE, .values = &e, .n_values = 1 };
	st_store_req_t req = { .resource = rid, .kinds = &kd, .n_kinds = 1, .signers = &other, .n_signers = 1 };
	got_t g;
	assert_int_equal(st_store(f->sh, &req, NULL, NULL), VP_EFORBIDDEN);
	req.signers = &n;
	assert_int_equal(st_store(f->sh, &req, NULL, NULL), 0);
	e.storage_time++;
	e.value = (const uint8_t *)"turn2";
	e.value_len = 5;
	assert_int_equal(st_store(f->sh, &req, NULL, NULL), 0);
	assert_int_equal(fetch_all(f, &rid, KIND_SINGLE, &g), 1);
	assert_int_equal(g.e[0].val_len, 5);
	assert_memory_equal(g.e[0].val, "turn2", 5);
	assert_true(g.gen == 2);
}

static void array_append_and_range_fetch(void **state)
{
	fx_t *f = *state;
	vp_id_t n = node_id(0x33), rid = vp_id_from_name(n.b, 16);
	st_entry_t e[3];
	st_kind_data_t kd = { .kind = KIND_ARRAY, .values = e, .n_values = 3 };
	st_store_req_t req = { .resource = rid, .kinds = &kd, .n_kinds = 1, .signers = &n, .n_signers = 1 };
	st_array_range_t rg = { 1, 2 };
	st_specifier_t s = { .kind = KIND_ARRAY, .ranges = &rg, .n_ranges = 1 };
	got_t g;
	st_visitor_t v;
	memset(e, 0, sizeof(e));
	for (int i = 0; i < 3; i++) {
		e[i] = (st_entry_t){ .index = ST_ARRAY_APPEND, .storage_time = f->now, .lifetime = 60,
		                     .exists = true, .value = (const uint8_t *)"abc" + i, .value_len = 1 };
	}
	assert_int_equal(st_store(f->sh, &req, NULL, NULL), 0);
	v = got_visitor(&g);
	assert_int_equal(st_fetch(f->sh, &rid, &s, 1, NULL, &v, NULL), 0);
	assert_int_equal(g.n, 2);
	assert_int_equal(g.e[0].index, 1);
	assert_int_equal(g.e[0].val[0], 'b');
	assert_int_equal(g.e[1].index, 2);
	assert_int_equal(g.e[1].val[0], 'c');
	/* One more append lands at index 3. */
	kd.n_values = 1;
	e[0].value = (const uint8_t *)"d";
	assert_int_equal(st_store(f->sh, &req, NULL, NULL), 0);
	assert_int_equal(fetch_all(f, &rid, KIND_ARRAY, &g), 4);
	assert_int_equal(g.e[3].index, 3);
	assert_int_equal(g.e[3].val[0], 'd');
	/* A range specifier on a dictionary kind is invalid. */
	s.kind = VK;
	v = got_visitor(&g);
	assert_int_equal(st_fetch(f->sh, &rid, &s, 1, NULL, &v, NULL), VP_EINVAL);
}

static void dictionary_fetch_of_selected_keys(void **state)
{
	fx_t *f = *state;
	vp_id_t rid = number_rid(12), b = node_id(0xB2);
	uint8_t kb[ST_VIPR_KEY_LEN], kz[ST_VIPR_KEY_LEN];
	st_vipr_key_t k = { b, 1 }, z = { node_id(0xEE), 1 };
	st_dict_key_t keys[2];
	st_specifier_t s = { .kind = VK, .keys = keys, .n_keys = 2 };
	got_t g;
	st_visitor_t v;
	for (uint8_t c = 0xA1; c <= 0xA4; c++)
		assert_int_equal(store_vipr(f, 12, c, f->now, 3600), 0);
	assert_int_equal(store_vipr(f, 12, 0xB2, f->now, 3600), 0);
	st_vipr_key_encode(&k, kb);
	st_vipr_key_encode(&z, kz);
	keys[0] = (st_dict_key_t){ kb, sizeof(kb) };
	keys[1] = (st_dict_key_t){ kz, sizeof(kz) }; /* absent: not reported */
	v = got_visitor(&g);
	assert_int_equal(st_fetch(f->sh, &rid, &s, 1, NULL, &v, NULL), 0);
	assert_int_equal(g.n, 1);
	assert_memory_equal(g.e[0].key, kb, sizeof(kb));
	assert_int_equal(fetch_all(f, &rid, VK, &g), 5);
}

static void fetch_with_current_generation_returns_no_values(void **state)
{
	fx_t *f = *state;
	vp_id_t rid = number_rid(13);
	st_specifier_t s = { .kind = VK, .generation = 1 };
	got_t g;
	st_visitor_t v = got_visitor(&g);
	assert_int_equal(store_vipr(f, 13, 0xA1, f->now, 3600), 0);
	assert_int_equal(st_fetch(f->sh, &rid, &s, 1, NULL, &v, NULL), 0);
	assert_int_equal(g.n_kinds, 1);
	assert_true(g.gen == 1);
	assert_int_equal(g.n, 0);
}

typedef struct metas {
	size_t n;
	st_meta_t m[4];
	uint8_t keys[4][ST_VIPR_KEY_LEN];
} metas_t;

static int meta_cb(void *arg, uint32_t kind, const st_meta_t *m)
{
	metas_t *ms = arg;
	(void)kind;
	if (ms->n >= 4)
		return -1;
	ms->m[ms->n] = *m;
	if (m->key_len && m->key_len <= ST_VIPR_KEY_LEN)
		memcpy(ms->keys[ms->n], m->key, m->key_len);
	ms->n++;
	return 0;
}

static void stat_reports_length_and_sha256(void **state)
{
	fx_t *f = *state;
	vreg_t r;
	vp_id_t rid = number_rid(14), a = node_id(0xA1);
	metas_t ms = { 0 };
	st_stat_visitor_t v = { NULL, meta_cb, &ms };
	st_specifier_t s = { .kind = VK };
	uint8_t want[32];
	vreg_make(&r, &rid, &a, &a, 1, f->now, 3600, 1);
	assert_int_equal(st_store(f->sh, &r.req, NULL, NULL), 0);
	assert_int_equal(st_stat(f->sh, &rid, &s, 1, NULL, &v, NULL), 0);
	assert_int_equal(ms.n, 1);
	SHA256(r.val, r.e.value_len, want);
	assert_int_equal(ms.m[0].hash_alg, ST_HASH_ALG_SHA256);
	assert_memory_equal(ms.m[0].hash, want, 32);
	assert_int_equal(ms.m[0].value_len, r.e.value_len);
	assert_true(ms.m[0].exists);
	assert_memory_equal(ms.keys[0], r.key, ST_VIPR_KEY_LEN);
}

static void find_returns_next_resource_clockwise(void **state)
{
	fx_t *f = *state;
	vp_id_t rids[3], out, q;
	for (int i = 0; i < 3; i++) {
		rids[i] = number_rid(100 + (unsigned long)i);
		assert_int_equal(store_vipr(f, 100 + (unsigned long)i, 0xA1, f->now, 3600), 0);
	}
	/* Sort the three ids. */
	for (int i = 0; i < 3; i++)
		for (int j = i + 1; j < 3; j++)
			if (vp_id_cmp(&rids[j], &rids[i]) < 0) {
				vp_id_t t = rids[i];
				rids[i] = rids[j];
				rids[j] = t;
			}
	assert_int_equal(st_find(f->sh, &rids[1], VK, NULL, &out), 0);
	assert_true(vp_id_eq(&out, &rids[1]));
	q = vp_id_from_u128(vp_id_to_u128(&rids[1]) + 1);
	assert_int_equal(st_find(f->sh, &q, VK, NULL, &out), 0);
	assert_true(vp_id_eq(&out, &rids[2]));
	q = vp_id_from_u128(vp_id_to_u128(&rids[2]) + 1); /* wraps to the smallest */
	assert_int_equal(st_find(f->sh, &q, VK, NULL, &out), 0);
	assert_true(vp_id_eq(&out, &rids[0]));
	assert_int_equal(st_find(f->sh, &q, KIND_SINGLE, NULL, &out), VP_ENOTFOUND);
}

/* ---- expiry ------------------------------------------------------------------- */

static void expired_value_is_never_returned_and_is_swept(void **state)
{
	fx_t *f = *state;
	vp_id_t rid = number_rid(15), a = node_id(0xA1), out;
	got_t g;
	uint64_t n = 0;
	assert_int_equal(store_vipr(f, 15, 0xA1, f->now, 60), 0);
	assert_int_equal(store_vipr(f, 15, 0xB2, f->now, 120), 0);
	f->now += 60 * 1000; /* A's entry expires exactly now */
	assert_int_equal(fetch_all(f, &rid, VK, &g), 1);
	assert_memory_equal(g.e[0].key, node_id(0xB2).b, 16);
	/* Still counted until swept; the sweep removes it and returns the quota. */
	assert_int_equal(st_quota_used(f->sh, &a, VK), 1);
	assert_int_equal(st_expire(f->sh, 0, &n), 0);
	assert_true(n == 1);
	assert_int_equal(st_quota_used(f->sh, &a, VK), 0);
	assert_int_equal(st_shard_verify(f->sh), 0);
	f->now += 60 * 1000;
	assert_int_equal(fetch_all(f, &rid, VK, &g), 0);
	assert_int_equal(st_find(f->sh, &rid, VK, NULL, &out), VP_ENOTFOUND);
	assert_int_equal(st_expire(f->sh, 0, &n), 0);
	assert_true(n == 1);
	/* The record is physically gone: nothing left to sweep or count. */
	assert_int_equal(st_expire(f->sh, 0, &n), 0);
	assert_true(n == 0);
	assert_int_equal(st_quota_used(f->sh, &(vp_id_t){ .b = { 0xB2, 0xB2, 0xB2, 0xB2, 0xB2, 0xB2,
		0xB2, 0xB2, 0xB2, 0xB2, 0xB2, 0xB2, 0xB2, 0xB2, 0xB2, 0xB2 } }, VK), 0);
	assert_int_equal(st_shard_verify(f->sh), 0);
}

static void store_over_expired_entry_is_a_fresh_store(void **state)
{
	fx_t *f = *state;
	vp_id_t a = node_id(0xA1);
	assert_int_equal(store_vipr(f, 16, 0xA1, f->now, 60), 0);
	f->now += 61 * 1000;
	/* An older storage_time than the expired entry's is accepted: that entry is gone. */
	assert_int_equal(store_vipr(f, 16, 0xA1, T0_MS - 5, 60), 0);
	assert_int_equal(st_quota_used(f->sh, &a, VK), 1);
	assert_int_equal(st_shard_verify(f->sh), 0);
}

static void sweep_budget_bounds_the_work(void **state)
{
	fx_t *f = *state;
	uint64_t n = 0;
	for (unsigned long i = 0; i < 10; i++)
		assert_int_equal(store_vipr(f, 200 + i, 0xA1, f->now, 60), 0);
	f->now += 61 * 1000;
	assert_int_equal(st_expire(f->sh, 4, &n), 0);
	assert_true(n == 4);
	assert_int_equal(st_quota_used(f->sh, &(vp_id_t){ 0 }, VK), 0);
	assert_int_equal(st_quota_used(f->sh, &(vp_id_t){ .b = { 0xA1, 0xA1, 0xA1, 0xA1, 0xA1, 0xA1,
		0xA1, 0xA1, 0xA1, 0xA1, 0xA1, 0xA1, 0xA1, 0xA1, 0xA1, 0xA1 } }, VK), 6);
	assert_int_equal(st_expire(f->sh, 0, &n), 0);
	assert_true(n == 6);
	assert_int_equal(st_shard_verify(f->sh), 0);
}

/* ---- quota ------------------------------------------------------------------- */

static void quota_limit_formula(void **state)
{
	(void)state;
	/* ceil(10000 * 0.1 * 2) + 16 */
	assert_true(st_quota_limit(10000, 100000000u, 2.0, 16) == 2016);
	/* ceil(10000 * 1e-4 * 2) + 16 = 2 + 16 */
	assert_true(st_quota_limit(10000, 100000u, 2.0, 16) == 18);
	assert_true(st_quota_limit(10000, 1u, 2.0, 16) == 17);
	assert_true(st_quota_limit(10000, 0, 2.0, 16) == 16);
	assert_true(st_quota_limit(0, 100000000u, 2.0, 16) == UINT64_MAX);
	assert_true(st_quota_limit(10000, 2000000000u, 1.0, 0) == 10000); /* clamped to the ring */
}

static void quota_refuses_above_limit_and_counts_replace_and_delete(void **state)
{
	fx_t *f = *state;
	vp_id_t a = node_id(0xA1), rid;
	vreg_t r;
	st_db_close(f->db);
	f->cfg.vipr_quota = 100;
	fx_open(f);
	st_shard_set_fraction(f->sh, 100000000u); /* 10 %: L = ceil(100*0.1*2) + 16 = 36 */
	assert_true(st_quota_limit_of(f->sh, VK) == 36);
	for (unsigned long i = 0; i < 36; i++)
		assert_int_equal(store_vipr(f, 300 + i, 0xA1, f->now, 3600), 0);
	assert_int_equal(st_quota_used(f->sh, &a, VK), 36);
	assert_int_equal(store_vipr(f, 400, 0xA1, f->now, 3600), VP_EQUOTA);
	/* Another claimant has its own quota. */
	assert_int_equal(store_vipr(f, 400, 0xB2, f->now, 3600), 0);
	/* Refreshing an existing entry does not add. */
	assert_int_equal(store_vipr(f, 300, 0xA1, f->now + 1, 3600), 0);
	assert_int_equal(st_quota_used(f->sh, &a, VK), 36);
	/* A deletion always passes, but the tombstone keeps its slot while held... */
	rid = number_rid(301);
	vreg_make(&r, &rid, &a, &a, 1, f->now + 1, 3600, 1);
	r.e.exists = false;
	assert_int_equal(st_store(f->sh, &r.req, NULL, NULL), 0);
	assert_int_equal(st_quota_used(f->sh, &a, VK), 36);
	assert_int_equal(store_vipr(f, 400, 0xA1, f->now, 3600), VP_EQUOTA);
	/* ... until expiry, once swept, gives every slot back. */
	f->now += 3601 * 1000;
	assert_int_equal(st_expire(f->sh, 0, NULL), 0);
	assert_int_equal(st_quota_used(f->sh, &a, VK), 0);
	assert_int_equal(store_vipr(f, 401, 0xA1, f->now, 3600), 0);
	assert_int_equal(st_shard_verify(f->sh), 0);
	{
		st_stats_t st;
		st_shard_stats(f->sh, &st);
		assert_true(st.refused_quota == 2);
		/* 36 of A (one a tombstone) and, at number 400, B's. */
		assert_true(st.entries_expired == 37);
	}
}

static void quota_counters_survive_restart(void **state)
{
	fx_t *f = *state;
	vp_id_t a = node_id(0xA1), b = node_id(0xB2), rid = number_rid(501);
	vreg_t r;
	got_t g;
	for (unsigned long i = 0; i < 20; i++)
		assert_int_equal(store_vipr(f, 500 + i, 0xA1, f->now, 3600), 0);
	for (unsigned long i = 0; i < 5; i++)
		assert_int_equal(store_vipr(f, 500 + i, 0xB2, f->now, 3600), 0);
	vreg_make(&r, &rid, &a, &a, 1, f->now + 1, 3600, 1);
	r.e.exists = false;
	assert_int_equal(st_store(f->sh, &r.req, NULL, NULL), 0);
	fx_reopen(f);
	assert_int_equal(st_quota_used(f->sh, &a, VK), 20); /* 19 live, 1 tombstone */
	assert_int_equal(st_quota_used(f->sh, &b, VK), 5);
	assert_int_equal(st_shard_verify(f->sh), 0);
	/* Data and generations survive as well. */
	assert_int_equal(fetch_all(f, &rid, VK, &g), 2);
	assert_true(g.gen == 3);
	assert_false(g.e[0].exists);
	assert_true(g.e[1].exists);
}

/* ---- policing ------------------------------------------------------------------ */

static void store_and_fetch_rate_limits_per_signer(void **state)
{
	fx_t *f = *state;
	vp_id_t a = node_id(0xA1), b = node_id(0xB2), rid = number_rid(600);
	got_t g;
	st_visitor_t v;
	st_specifier_t s = { .kind = VK };
	st_db_close(f->db);
	f->cfg.rate[ST_RATE_STORE] = (st_rate_limit_t){ 1, 2 };
	f->cfg.rate[ST_RATE_FETCH] = (st_rate_limit_t){ 2, 1 };
	fx_open(f);
	assert_int_equal(store_vipr(f, 600, 0xA1, f->now, 3600), 0);
	assert_int_equal(store_vipr(f, 601, 0xA1, f->now, 3600), 0);
	assert_int_equal(store_vipr(f, 602, 0xA1, f->now, 3600), VP_ERATELIMIT);
	assert_int_equal(store_vipr(f, 602, 0xB2, f->now, 3600), 0); /* B has its own bucket */
	/* A wall-clock step mints nothing: the buckets run on the monotonic clock. */
	f->now += 3600 * 1000;
	assert_int_equal(store_vipr(f, 602, 0xA1, f->now, 3600), VP_ERATELIMIT);
	f->mono += 1000;
	assert_int_equal(store_vipr(f, 602, 0xA1, f->now, 3600), 0);
	assert_int_equal(store_vipr(f, 603, 0xA1, f->now, 3600), VP_ERATELIMIT);
	v = got_visitor(&g);
	assert_int_equal(st_fetch(f->sh, &rid, &s, 1, &a, &v, NULL), 0);
	assert_int_equal(st_fetch(f->sh, &rid, &s, 1, &a, &v, NULL), VP_ERATELIMIT);
	assert_int_equal(st_fetch(f->sh, &rid, &s, 1, &b, &v, NULL), 0);
	f->mono += 500; /* 2/s: one token back */
	assert_int_equal(st_fetch(f->sh, &rid, &s, 1, &a, &v, NULL), 0);
	assert_int_equal(st_quota_used(f->sh, &a, VK), 3);
	{
		st_stats_t st;
		st_shard_stats(f->sh, &st);
		assert_true(st.stores_ok == 4 && st.stores_refused == 3);
		assert_true(st.refused_rate == 4 && st.fetches == 3);
		assert_true(st.refused_quota == 0 && st.refused_acl == 0);
		assert_true(st.commits == 4 && st.commit_failures == 0);
	}
}

static void rate_limits_are_per_node_across_shards(void **state)
{
	fx_t *f = *state;
	vp_id_t a = node_id(0xA1);
	st_shard_t *sh[2];
	vreg_t r;
	st_db_close(f->db);
	/* Node-wide 2/s with a burst of 2 over two shards: 1/s and 1 at once per shard. */
	f->cfg.n_shards = 2;
	f->cfg.rate[ST_RATE_STORE] = (st_rate_limit_t){ 2, 2 };
	fx_open(f);
	sh[0] = st_db_shard(f->db, 0);
	sh[1] = st_db_shard(f->db, 1);
	for (int i = 0; i < 2; i++) {
		vp_id_t rid = number_rid(620 + (unsigned long)i);
		vreg_make(&r, &rid, &a, &a, 1, f->now, 3600, 1);
		assert_int_equal(st_store(sh[i], &r.req, NULL, NULL), 0);
		rid = number_rid(630 + (unsigned long)i);
		vreg_make(&r, &rid, &a, &a, 1, f->now, 3600, 1);
		assert_int_equal(st_store(sh[i], &r.req, NULL, NULL), VP_ERATELIMIT);
	}
	f->mono += 999;
	assert_int_equal(st_store(sh[0], &r.req, NULL, NULL), VP_ERATELIMIT);
	f->mono += 1;
	assert_int_equal(st_store(sh[0], &r.req, NULL, NULL), 0);
}

/* rate_per_shard (viprd: a shard is a vnode, a storing peer of its own): each shard admits the whole burst
 * and rate of a signer; per node (above) the second shard would refuse after the node's burst. */
static void rate_limits_per_shard_when_each_is_a_peer(void **state)
{
	fx_t *f = *state;
	vp_id_t a = node_id(0xA1);
	vreg_t r;
	st_db_close(f->db);
	f->cfg.n_shards = 2;
	f->cfg.rate_per_shard = true;
	f->cfg.rate[ST_RATE_STORE] = (st_rate_limit_t){ 2, 2 };
	fx_open(f);
	for (unsigned i = 0; i < 2; i++) {
		st_shard_t *sh = st_db_shard(f->db, i);
		for (unsigned k = 0; k < 3; k++) {
			vp_id_t rid = number_rid(640 + 10 * i + k);
			vreg_make(&r, &rid, &a, &a, 1, f->now, 3600, 1);
			assert_int_equal(st_store(sh, &r.req, NULL, NULL), k < 2 ? 0 : VP_ERATELIMIT);
		}
	}
	f->mono += 499; /* 2/s: one token per 500 ms at each shard */
	assert_int_equal(st_store(st_db_shard(f->db, 1), &r.req, NULL, NULL), VP_ERATELIMIT);
	f->mono += 1;
	assert_int_equal(st_store(st_db_shard(f->db, 1), &r.req, NULL, NULL), 0);
}

/* ---- batches ------------------------------------------------------------------- */

static void batch_reads_its_own_writes_and_aborts_cleanly(void **state)
{
	fx_t *f = *state;
	vp_id_t a = node_id(0xA1), rid = number_rid(700);
	got_t g;
	vreg_t r;
	uint64_t gen = 0;
	assert_int_equal(st_batch_begin(f->sh), 0);
	assert_int_equal(st_batch_begin(f->sh), VP_ESTATE);
	assert_int_equal(store_vipr(f, 700, 0xA1, f->now, 3600), 0);
	/* The second store of the key sees the first (still uncommitted). */
	vreg_make(&r, &rid, &a, &a, 1, f->now, 3600, 1);
	assert_int_equal(st_store(f->sh, &r.req, &gen, NULL), VP_EDATA_TOO_OLD);
	vreg_make(&r, &rid, &a, &a, 1, f->now + 1, 3600, 1);
	assert_int_equal(st_store(f->sh, &r.req, &gen, NULL), 0);
	assert_true(gen == 2);
	assert_int_equal(st_quota_used(f->sh, &a, VK), 1);
	assert_int_equal(st_range_scan(f->sh, &a, &a, &(st_visitor_t){ 0 }), VP_ESTATE);
	st_batch_abort(f->sh);
	assert_int_equal(st_quota_used(f->sh, &a, VK), 0);
	assert_int_equal(fetch_all(f, &rid, VK, &g), 0);
	assert_int_equal(st_batch_commit(f->sh), VP_ESTATE);
	/* Now commit for real. */
	assert_int_equal(st_batch_begin(f->sh), 0);
	assert_int_equal(store_vipr(f, 700, 0xA1, f->now, 3600), 0);
	assert_int_equal(store_vipr(f, 701, 0xA1, f->now, 3600), 0);
	assert_int_equal(st_batch_commit(f->sh), 0);
	assert_int_equal(fetch_all(f, &rid, VK, &g), 1);
	assert_int_equal(st_quota_used(f->sh, &a, VK), 2);
	assert_int_equal(st_shard_verify(f->sh), 0);
}

static void prefetch_reads_ahead_without_changing_answers(void **state)
{
	fx_t *f = *state;
	vp_id_t a = node_id(0xA1), rid1 = number_rid(710), rid2 = number_rid(711);
	vreg_t r[3];
	st_store_req_t reqs[3];
	st_stats_t st0, st1;
	got_t g;
	assert_int_equal(st_batch_prefetch(f->sh, reqs, 0), VP_ESTATE);
	assert_int_equal(store_vipr(f, 710, 0xA1, f->now, 3600), 0);
	st_shard_stats(f->sh, &st0);

	/* A batch that only prefetches writes nothing. */
	vreg_make(&r[0], &rid1, &a, &a, 1, f->now, 3600, 1);
	vreg_make(&r[1], &rid2, &a, &a, 1, f->now, 3600, 1);
	reqs[0] = r[0].req;
	reqs[1] = r[1].req;
	assert_int_equal(st_batch_begin(f->sh), 0);
	assert_int_equal(st_batch_prefetch(f->sh, reqs, 2), 0);
	assert_int_equal(st_batch_commit(f->sh), 0);
	st_shard_stats(f->sh, &st1);
	assert_true(st1.commits == st0.commits);
	assert_int_equal(fetch_all(f, &rid1, VK, &g), 1);
	assert_int_equal(fetch_all(f, &rid2, VK, &g), 0);

	/* Prefetched present record: the store sees it (equal storage_time is too old). */
	assert_int_equal(st_batch_begin(f->sh), 0);
	assert_int_equal(st_batch_prefetch(f->sh, reqs, 2), 0);
	assert_int_equal(st_store(f->sh, &r[0].req, NULL, NULL), VP_EDATA_TOO_OLD);
	/* Prefetched absent record: a store creates it; a later prefetch must not hide it. */
	assert_int_equal(st_store(f->sh, &r[1].req, NULL, NULL), 0);
	assert_int_equal(st_batch_prefetch(f->sh, reqs, 2), 0);
	r[1].val[r[1].e.value_len - 2] = 3; /* other bytes, same storage_time */
	assert_int_equal(st_store(f->sh, &r[1].req, NULL, NULL), VP_EDATA_TOO_OLD);
	vreg_make(&r[2], &rid1, &a, &a, 1, f->now + 5, 3600, 1);
	assert_int_equal(st_store(f->sh, &r[2].req, NULL, NULL), 0);
	assert_int_equal(st_batch_commit(f->sh), 0);
	assert_int_equal(fetch_all(f, &rid1, VK, &g), 1);
	assert_true(g.e[0].storage_time == f->now + 5);
	assert_true(g.gen == 2);
	assert_int_equal(fetch_all(f, &rid2, VK, &g), 1);
	assert_int_equal(st_quota_used(f->sh, &a, VK), 2);
	assert_int_equal(st_shard_verify(f->sh), 0);
}

/* The key filter skips the read of keys the shard never held, and never skips one it
 * holds: after a commit and after a restart (the filter is rebuilt at open), every
 * held record is read, so a replay of the same storage_time is refused as too old. */
static void key_filter_skips_new_keys_and_never_hides_a_stored_one(void **state)
{
	fx_t *f = *state;
	enum { N = 300 };
	static vreg_t r[N];
	static st_store_req_t reqs[N];
	vp_id_t a = node_id(0xA1);
	st_stats_t st;
	for (unsigned i = 0; i < N; i++) {
		vp_id_t rid = number_rid(20000 + i);
		vreg_make(&r[i], &rid, &a, &a, 1, f->now, 3600, 1);
		reqs[i] = r[i].req;
	}
	/* First publication: half prefetched, half read by st_store() itself. */
	assert_int_equal(st_batch_begin(f->sh), 0);
	assert_int_equal(st_batch_prefetch(f->sh, reqs, N / 2), 0);
	for (unsigned i = 0; i < N; i++)
		assert_int_equal(st_store(f->sh, &r[i].req, NULL, NULL), 0);
	assert_int_equal(st_batch_commit(f->sh), 0);
	st_shard_stats(f->sh, &st);
	/* Every key is new (prefetch leaves filtered keys to load(), which counts them);
	 * ~0 false positives are expected with 300 keys in a filter sized for 10^6. */
	assert_true(st.reads_skipped >= N - 5 && st.reads_skipped <= N);

	/* Same session, after the commit: every key is held and must be read.  The
	 * replays are one millisecond older (an identical entry would be accepted). */
	for (unsigned i = 0; i < N; i++)
		r[i].e.storage_time = f->now - 1;
	for (unsigned i = 0; i < N; i += 7)
		assert_int_equal(st_store(f->sh, &r[i].req, NULL, NULL), VP_EDATA_TOO_OLD);
	st_shard_stats(f->sh, &st);
	assert_true(st.reads_skipped <= N);

	/* After a restart, through both read paths. */
	fx_reopen(f);
	assert_int_equal(st_quota_used(f->sh, &a, VK), N);
	assert_int_equal(st_batch_begin(f->sh), 0);
	assert_int_equal(st_batch_prefetch(f->sh, reqs + N / 2, N / 2), 0);
	for (unsigned i = 0; i < N; i++)
		assert_int_equal(st_store(f->sh, &r[i].req, NULL, NULL), VP_EDATA_TOO_OLD);
	assert_int_equal(st_batch_commit(f->sh), 0);
	for (unsigned i = 0; i < N; i += 3)
		assert_int_equal(st_store(f->sh, &r[i].req, NULL, NULL), VP_EDATA_TOO_OLD);
	st_shard_stats(f->sh, &st);
	assert_int_equal(st.reads_skipped, 0);
	assert_int_equal(st_quota_used(f->sh, &a, VK), N);
	assert_int_equal(st_shard_verify(f->sh), 0);

	/* Fetches of numbers never stored are answered without a read, and do not add
	 * them to the filter (a second fetch is skipped again). */
	for (int round = 0; round < 2; round++) {
		for (unsigned i = 0; i < 100; i++) {
			vp_id_t rid = number_rid(40000 + i);
			got_t g;
			assert_int_equal(fetch_all(f, &rid, VK, &g), 0);
		}
		st_shard_stats(f->sh, &st);
		assert_true(st.reads_skipped >= 95u * (round + 1) && st.reads_skipped <= 100u * (round + 1));
	}
	fx_reopen(f);

	/* A new key after the restart is skipped again, and held once committed. */
	{
		vreg_t n;
		vp_id_t rid = number_rid(29999);
		vreg_make(&n, &rid, &a, &a, 1, f->now, 3600, 1);
		assert_int_equal(st_store(f->sh, &n.req, NULL, NULL), 0);
		st_shard_stats(f->sh, &st);
		assert_true(st.reads_skipped <= 1);
		fx_reopen(f);
		n.e.storage_time = f->now - 1;
		assert_int_equal(st_store(f->sh, &n.req, NULL, NULL), VP_EDATA_TOO_OLD);
		st_shard_stats(f->sh, &st);
		assert_int_equal(st.reads_skipped, 0);
	}
}

static void multi_kind_store_is_all_or_nothing(void **state)
{
	fx_t *f = *state;
	vp_id_t a = node_id(0xA1), rid = vp_id_from_name(a.b, 16);
	vreg_t r;
	st_entry_t se = { .storage_time = f->now, .lifetime = 60, .exists = true,
	                  .value = (const uint8_t *)"x", .value_len = 1 };
	st_kind_data_t kds[2];
	got_t g;
	uint64_t gens[2] = { 0, 0 };
	uint32_t bad = 0;
	vreg_make(&r, &rid, &a, &a, 1, f->now, 3600, 1);
	kds[0] = r.kd;
	kds[1] = (st_kind_data_t){ .kind = KIND_SINGLE, .values = &se, .n_values = 1, .generation = 9 };
	r.req.kinds = kds;
	r.req.n_kinds = 2;
	assert_int_equal(st_store(f->sh, &r.req, gens, &bad), VP_EGEN_TOO_LOW);
	assert_true(bad == KIND_SINGLE);
	assert_int_equal(fetch_all(f, &rid, VK, &g), 0);
	assert_int_equal(st_quota_used(f->sh, &a, VK), 0);
	kds[1].generation = 0;
	assert_int_equal(st_store(f->sh, &r.req, gens, &bad), 0);
	assert_true(gens[0] == 1 && gens[1] == 1);
	assert_int_equal(fetch_all(f, &rid, VK, &g), 1);
	assert_int_equal(fetch_all(f, &rid, KIND_SINGLE, &g), 1);
	/* Inside an open batch too: a failing second kind leaves the first one out. */
	assert_int_equal(st_batch_begin(f->sh), 0);
	r.e.storage_time = f->now + 1;
	kds[0] = r.kd;
	kds[1].generation = 7;
	assert_int_equal(st_store(f->sh, &r.req, gens, NULL), VP_EGEN_TOO_LOW);
	assert_int_equal(st_batch_commit(f->sh), 0);
	assert_int_equal(fetch_all(f, &rid, VK, &g), 1);
	assert_true(g.e[0].storage_time == f->now);
	assert_int_equal(st_shard_verify(f->sh), 0);
}

static void failed_multi_kind_store_keeps_earlier_batch_writes(void **state)
{
	fx_t *f = *state;
	vp_id_t a = node_id(0xA1), b = node_id(0xB2), rid = vp_id_from_name(b.b, 16);
	vreg_t ra, rb;
	st_entry_t se = { .storage_time = f->now, .lifetime = 60, .exists = true,
	                  .value = (const uint8_t *)"x", .value_len = 1 };
	st_kind_data_t kds[2];
	got_t g;
	assert_int_equal(st_batch_begin(f->sh), 0);
	vreg_make(&ra, &rid, &a, &a, 1, f->now, 3600, 3);
	assert_int_equal(st_store(f->sh, &ra.req, NULL, NULL), 0);
	/* B's two-kind store touches the same record, then fails on its second kind. */
	vreg_make(&rb, &rid, &b, &b, 1, f->now, 3600, 1);
	kds[0] = rb.kd;
	kds[1] = (st_kind_data_t){ .kind = KIND_SINGLE, .values = &se, .n_values = 1, .generation = 3 };
	rb.req.kinds = kds;
	rb.req.n_kinds = 2;
	assert_int_equal(st_store(f->sh, &rb.req, NULL, NULL), VP_EGEN_TOO_LOW);
	/* Within the batch A's pending entry is visible and B's is not. */
	assert_int_equal(store_vipr_at(f, &rid, 0xA1, f->now), VP_EDATA_TOO_OLD);
	assert_int_equal(st_batch_commit(f->sh), 0);
	assert_int_equal(fetch_all(f, &rid, VK, &g), 1);
	assert_memory_equal(g.e[0].key, a.b, 16);
	assert_true(g.gen == 1);
	assert_int_equal(st_quota_used(f->sh, &b, VK), 0);
	assert_int_equal(st_shard_verify(f->sh), 0);
}

static void user_node_match_dictionary(void **state)
{
	fx_t *f = *state;
	const char *user = "alice@example.net";
	vp_id_t n = node_id(0x44), rid = vp_id_from_name(user, strlen(user));
	st_entry_t e = { .key = n.b, .key_len = 16, .storage_time = f->now, .lifetime = 60,
	                 .exists = true, .value = (const uint8_t *)"v", .value_len = 1 };
	st_kind_data_t kd = { .kind = KIND_DICT2, .values = &e, .n_values = 1 };
	st_store_req_t req = { .resource = rid, .kinds = &kd, .n_kinds = 1, .signers = &n,
	                       .n_signers = 1, .signer_user = user, .signer_user_len = strlen(user) };
	assert_int_equal(st_store(f->sh, &req, NULL, NULL), 0);
	req.signer_user = "mallory@example.net";
	req.signer_user_len = strlen(req.signer_user);
	e.storage_time++;
	assert_int_equal(st_store(f->sh, &req, NULL, NULL), VP_EFORBIDDEN);
}

/* ---- ranges ----------------------------------------------------------------------- */

static int count_entry(void *arg, const vp_id_t *rid, uint32_t kind, const st_entry_t *e)
{
	size_t *n = arg;
	(void)rid; (void)kind; (void)e;
	(*n)++;
	return 0;
}

static void range_scan_and_delete_cover_ring_intervals(void **state)
{
	fx_t *f = *state;
	vp_id_t a = node_id(0xA1), lo, hi, from, to;
	size_t n = 0, inside = 0;
	uint64_t deleted = 0;
	st_visitor_t cnt = { NULL, count_entry, &n };
	got_t g;
	st_visitor_t gv;
	/* 40 numbers; then a wrapping interval (hi, lo] that excludes [lo, hi] partly. */
	for (unsigned long i = 0; i < 40; i++)
		assert_int_equal(store_vipr(f, 800 + i, 0xA1, f->now, 3600), 0);
	lo = vp_id_from_u128((vp_u128_t)1 << 126);      /* 0x40.. */
	hi = vp_id_from_u128((vp_u128_t)3 << 126);      /* 0xC0.. */
	for (unsigned long i = 0; i < 40; i++) {
		vp_id_t r = number_rid(800 + i);
		if (vp_id_in_oc(&r, &lo, &hi))
			inside++;
	}
	assert_true(inside > 0 && inside < 40);
	assert_int_equal(st_range_scan(f->sh, &lo, &hi, &cnt), 0);
	assert_int_equal(n, inside);
	n = 0;
	assert_int_equal(st_range_scan(f->sh, &hi, &lo, &cnt), 0); /* wraps through 0 */
	assert_int_equal(n, 40 - inside);
	n = 0;
	assert_int_equal(st_range_scan(f->sh, &lo, &lo, &cnt), 0); /* whole ring */
	assert_int_equal(n, 40);
	from = hi;
	to = lo;
	assert_int_equal(st_range_delete(f->sh, &from, &to, &deleted), 0);
	assert_true(deleted == 40 - inside);
	assert_int_equal(st_quota_used(f->sh, &a, VK), inside);
	n = 0;
	assert_int_equal(st_range_scan(f->sh, &lo, &lo, &cnt), 0);
	assert_int_equal(n, inside);
	assert_int_equal(st_shard_verify(f->sh), 0);
	/* Replica numbers are carried through to the scan. */
	{
		vreg_t r;
		vp_id_t rid = number_rid(900);
		vreg_make(&r, &rid, &a, &a, 1, f->now, 3600, 1);
		r.req.replica_number = 2;
		assert_int_equal(st_store(f->sh, &r.req, NULL, NULL), 0);
		gv = got_visitor(&g);
		from = vp_id_from_u128(vp_id_to_u128(&rid) - 1);
		assert_int_equal(st_range_scan(f->sh, &from, &rid, &gv), 0);
		assert_int_equal(g.n, 1);
		assert_int_equal(g.e[0].replica, 2);
		assert_true(vp_id_eq(&g.e[0].rid, &rid));
	}
}

/* ---- misc ------------------------------------------------------------------------- */

static void reload_error_mapping(void **state)
{
	(void)state;
	assert_int_equal(st_reload_error(0), 0);
	assert_int_equal(st_reload_error(VP_EFORBIDDEN), 2);
	assert_int_equal(st_reload_error(VP_EQUOTA), 2);
	assert_int_equal(st_reload_error(VP_ERATELIMIT), 2);
	assert_int_equal(st_reload_error(VP_ENOTFOUND), 3);
	assert_int_equal(st_reload_error(VP_EDB), 4);
	assert_int_equal(st_reload_error(VP_EGEN_TOO_LOW), 5);
	assert_int_equal(st_reload_error(VP_EDATA_TOO_LARGE), 8);
	assert_int_equal(st_reload_error(VP_EDATA_TOO_OLD), 9);
	assert_int_equal(st_reload_error(VP_EUNKNOWN_KIND), 12);
	assert_int_equal(st_reload_error(VP_EMALFORMED), 20);
	assert_string_equal(st_reload_error_info(VP_EQUOTA), "quota");
	assert_string_equal(st_reload_error_info(VP_ERATELIMIT), "rate-limited");
	assert_string_equal(st_reload_error_info(VP_EDB), "VP_EDB");
}

static void bad_configuration_is_refused(void **state)
{
	fx_t *f = *state;
	st_config_t c = f->cfg;
	st_kind_t k[2];
	st_db_t *db = NULL;
	k[0] = f->kinds[0];
	k[1] = f->kinds[0]; /* duplicate id */
	c.kinds = k;
	c.n_kinds = 2;
	assert_int_equal(st_db_open(&c, &db), VP_ECONFIG);
	assert_null(db);
	k[1].id = VK; /* clashes with the built-in ViPR kind */
	assert_int_equal(st_db_open(&c, &db), VP_ECONFIG);
	c.n_kinds = 1;
	k[0].model = ST_MODEL_ARRAY;
	k[0].acl = ST_ACL_VIPR; /* ViPR access control needs a dictionary */
	assert_int_equal(st_db_open(&c, &db), VP_ECONFIG);
	c.n_kinds = 0;
	c.path = NULL;
	assert_int_equal(st_db_open(&c, &db), VP_ECONFIG);
}

static void shards_reopen_with_more_column_families(void **state)
{
	fx_t *f = *state;
	vp_id_t a = node_id(0xA1);
	assert_int_equal(store_vipr(f, 950, 0xA1, f->now, 3600), 0);
	st_db_close(f->db);
	f->cfg.n_shards = 3;
	fx_open(f);
	assert_int_equal(st_db_shards(f->db), 3);
	assert_int_equal(st_quota_used(st_db_shard(f->db, 0), &a, VK), 1);
	assert_int_equal(st_quota_used(st_db_shard(f->db, 2), &a, VK), 0);
	st_db_close(f->db);
	f->cfg.n_shards = 1; /* the database keeps its three shards */
	f->cfg.sync_wal = true; /* and fsyncs every commit from now on */
	fx_open(f);
	assert_int_equal(st_db_shards(f->db), 3);
	assert_null(st_db_shard(f->db, 3));
	assert_int_equal(store_vipr(f, 951, 0xA1, f->now, 3600), 0);
	assert_int_equal(st_quota_used(f->sh, &a, VK), 2);
}

/* Overwrite one record with garbage behind the store's back (raw RocksDB). */
static void corrupt_record(const char *dir, const vp_id_t *rid, uint32_t kind)
{
	const char *names[2] = { "default", "s0" };
	rocksdb_options_t *o = rocksdb_options_create();
	const rocksdb_options_t *co[2] = { o, o };
	rocksdb_column_family_handle_t *h[2];
	rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
	char *err = NULL;
	uint8_t key[20];
	rocksdb_t *db;
	memcpy(key, rid->b, 16);
	key[16] = (uint8_t)(kind >> 24);
	key[17] = (uint8_t)(kind >> 16);
	key[18] = (uint8_t)(kind >> 8);
	key[19] = (uint8_t)kind;
	db = rocksdb_open_column_families(o, dir, 2, names, co, h, &err);
	assert_null(err);
	rocksdb_put_cf(db, wo, h[1], (const char *)key, sizeof(key), "\x01\x03garbage", 9, &err);
	assert_null(err);
	rocksdb_column_family_handle_destroy(h[0]);
	rocksdb_column_family_handle_destroy(h[1]);
	rocksdb_close(db);
	rocksdb_writeoptions_destroy(wo);
	rocksdb_options_destroy(o);
}

static void corrupt_record_is_a_database_error(void **state)
{
	fx_t *f = *state;
	vp_id_t rid = number_rid(990), other = number_rid(991);
	got_t g;
	st_visitor_t v;
	st_specifier_t s = { .kind = VK };
	assert_int_equal(store_vipr(f, 990, 0xA1, f->now, 3600), 0);
	assert_int_equal(store_vipr(f, 991, 0xA1, f->now, 3600), 0);
	assert_true(st_shard_estimate_records(f->sh) >= 1);
	st_db_close(f->db);
	f->db = NULL;
	corrupt_record(f->dir, &rid, VK);
	/* Opening rebuilds the counters by a full scan, which meets the corrupt record. */
	assert_int_equal(st_db_open(&f->cfg, &f->db), VP_EDB);
	assert_null(f->db);
	/* Remove it the same raw way and the store opens again with exact counters. */
	{
		const char *names[2] = { "default", "s0" };
		rocksdb_options_t *o = rocksdb_options_create();
		const rocksdb_options_t *co[2] = { o, o };
		rocksdb_column_family_handle_t *h[2];
		rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
		char *err = NULL;
		uint8_t key[20];
		rocksdb_t *db;
		memcpy(key, rid.b, 16);
		key[16] = 0xF0; key[17] = 0x00; key[18] = 0x01; key[19] = 0x00;
		db = rocksdb_open_column_families(o, f->dir, 2, names, co, h, &err);
		assert_null(err);
		rocksdb_delete_cf(db, wo, h[1], (const char *)key, sizeof(key), &err);
		assert_null(err);
		rocksdb_column_family_handle_destroy(h[0]);
		rocksdb_column_family_handle_destroy(h[1]);
		rocksdb_close(db);
		rocksdb_writeoptions_destroy(wo);
		rocksdb_options_destroy(o);
	}
	fx_open(f);
	assert_int_equal(st_quota_used(f->sh, &(vp_id_t){ .b = { 0xA1, 0xA1, 0xA1, 0xA1, 0xA1, 0xA1,
		0xA1, 0xA1, 0xA1, 0xA1, 0xA1, 0xA1, 0xA1, 0xA1, 0xA1, 0xA1 } }, VK), 1);
	assert_int_equal(fetch_all(f, &other, VK, &g), 1);
	v = got_visitor(&g);
	assert_int_equal(st_fetch(f->sh, &rid, &s, 1, NULL, &v, NULL), 0);
	assert_int_equal(g.n, 0);
	assert_int_equal(st_shard_verify(f->sh), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(vipr_store_then_fetch_returns_exact_bytes),
		T(two_claimants_of_one_number_give_two_entries),
		T(vipr_key_of_another_node_is_forbidden),
		T(vipr_contact_must_be_a_signer_node),
		T(vipr_malformed_key_or_value_is_refused),
		T(tombstone_by_owner_deletes_and_is_charged_while_held),
		T(older_or_equal_storage_time_is_data_too_old),
		T(conditional_store_checks_generation),
		T(max_size_and_max_count_give_data_too_large),
		T(unknown_kind_is_reported_with_its_id),
		T(lifetime_below_minimum_is_invalid_and_above_maximum_clamped),
		T(duplicate_key_in_one_request_is_invalid),
		T(single_model_node_match),
		T(array_append_and_range_fetch),
		T(dictionary_fetch_of_selected_keys),
		T(fetch_with_current_generation_returns_no_values),
		T(stat_reports_length_and_sha256),
		T(find_returns_next_resource_clockwise),
		T(expired_value_is_never_returned_and_is_swept),
		T(store_over_expired_entry_is_a_fresh_store),
		T(sweep_budget_bounds_the_work),
		T(quota_limit_formula),
		T(quota_refuses_above_limit_and_counts_replace_and_delete),
		T(quota_counters_survive_restart),
		T(store_and_fetch_rate_limits_per_signer),
		T(rate_limits_are_per_node_across_shards),
		T(rate_limits_per_shard_when_each_is_a_peer),
		T(batch_reads_its_own_writes_and_aborts_cleanly),
		T(prefetch_reads_ahead_without_changing_answers),
		T(key_filter_skips_new_keys_and_never_hides_a_stored_one),
		T(multi_kind_store_is_all_or_nothing),
		T(failed_multi_kind_store_keeps_earlier_batch_writes),
		T(user_node_match_dictionary),
		T(range_scan_and_delete_cover_ring_intervals),
		T(reload_error_mapping),
		T(bad_configuration_is_refused),
		T(shards_reopen_with_more_column_families),
		T(corrupt_record_is_a_database_error),
#undef T
	};
	vp_log_setup(VP_LOG_WARN, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
