/*
 * control/node/kinds: the vnode storage service, in process, with real
 * certificates (tests/dataplane/pki_testkit) and a real RocksDB store in a
 * temporary directory.  The ring: vnode V = 0x40.., predecessors 0x30, 0x20,
 * 0x10, successors 0x50, 0x60, 0x70; claimants A (0xA1) and B (0xB1); a
 * stranger X (0x90) that is no neighbour of V.  Every adversary here wins if
 * the check it attacks is removed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <ftw.h>
#include <unistd.h>

#include "common/clock.h"
#include "control/node/kinds.h"
#include "storage/vipr_kind.h"
#include "pki_testkit.h"

#define OVERLAY "vipr.example"
#define VK ST_VIPR_KIND_ID_DEFAULT

static pk_ca_t ca;
static pk_node_t nd_a, nd_b, nd_p1, nd_s1, nd_x, nd_v;
static vp_id_t id_a, id_b, id_p1, id_s1, id_x, id_v;

/* Per test. */
static uint64_t wall_now, rate_now;
static vp_clock_t wall = { vp_clock_manual_now, &wall_now };
static vp_clock_t ratec = { vp_clock_manual_now, &rate_now };
static char *dir;
static st_db_t *db;
static dp_cert_store_t *cs;
static nk_t *nk;
static chord_table_t table;

/* ---- fixtures ------------------------------------------------------------ */

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb; (void)flag; (void)ftw;
	return remove(p);
}

static int group_setup(void **state)
{
	pk_opts_t o = { OVERLAY, -3600, 7200, 0, 0, 0 };
	(void)state;
	id_a = pk_id(0xA1);
	id_b = pk_id(0xB1);
	id_p1 = pk_id(0x30);
	id_s1 = pk_id(0x50);
	id_x = pk_id(0x90);
	id_v = pk_id(0x40);
	if (pk_ca_new(&ca, "root") || pk_node_new(&nd_a, &ca, &id_a, 1, &o) || pk_node_new(&nd_b, &ca, &id_b, 1, &o) ||
	    pk_node_new(&nd_p1, &ca, &id_p1, 1, &o) || pk_node_new(&nd_s1, &ca, &id_s1, 1, &o) ||
	    pk_node_new(&nd_x, &ca, &id_x, 1, &o) || pk_node_new(&nd_v, &ca, &id_v, 1, &o))
		return -1;
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	pk_node_free(&nd_a);
	pk_node_free(&nd_b);
	pk_node_free(&nd_p1);
	pk_node_free(&nd_s1);
	pk_node_free(&nd_x);
	pk_node_free(&nd_v);
	pk_ca_free(&ca);
	return 0;
}

static int setup(void **state)
{
	char tmpl[] = "/tmp/vp-nk-XXXXXX";
	st_config_t cfg;
	st_kind_t certk = nk_kind_cert_by_node();
	dp_cert_store_cfg_t ccfg = { OVERLAY, 64, &wall };
	nk_conf_t nc;
	vp_id_t peers[6] = { pk_id(0x10), pk_id(0x20), pk_id(0x30), pk_id(0x50), pk_id(0x60), pk_id(0x70) };
	chord_table_params_t tp = chord_table_params_default();
	(void)state;
	wall_now = vp_time_wall_ms();
	rate_now = 1000000;
	if (!mkdtemp(tmpl))
		return -1;
	dir = strdup(tmpl);
	st_config_default(&cfg);
	cfg.path = dir;
	cfg.kinds = &certk;
	cfg.n_kinds = 1;
	cfg.clock = &wall;
	cfg.rate_clock = &ratec; /* frozen: the buckets never refill during a test */
	if (st_db_open(&cfg, &db) || dp_cert_store_new(&ccfg, &cs) || dp_cert_store_add_root(cs, ca.cert))
		return -1;
	nk_conf_default(&nc);
	nc.clock = &wall;
	nc.key = nd_v.key;
	nc.cert_der = nd_v.der;
	nc.cert_len = nd_v.der_len;
	if (nk_new(&nc, st_db_shard(db, 0), cs, &nk))
		return -1;
	if (chord_table_build(&table, &tp, &id_v, peers, 6))
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	nk_free(nk);
	dp_cert_store_free(cs);
	st_db_close(db);
	nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	free(dir);
	return 0;
}

/* A Resource-ID whose first byte is \p first (places it on the ring), the rest from \p n. */
static vp_id_t rid_at(uint8_t first, uint32_t n)
{
	vp_id_t r;
	memset(r.b, 0x5A, sizeof(r.b));
	r.b[0] = first;
	r.b[12] = (uint8_t)(n >> 24);
	r.b[13] = (uint8_t)(n >> 16);
	r.b[14] = (uint8_t)(n >> 8);
	r.b[15] = (uint8_t)n;
	return r;
}

/* One signed ViPR StoredData; its buffers live in the struct. */
typedef struct ent {
	uint8_t key[ST_VIPR_KEY_LEN];
	uint8_t val[ST_VIPR_VALUE_MAX_LEN];
	uint8_t sig[RL_MAX_SIG_LEN];
	rl_stored_data_t sd;
} ent_t;

/* Entry under claimant \p claim (key and contact), vservice \p vs, signed by \p signer. */
static void ent_make(ent_t *e, const vp_id_t *rid, const vp_id_t *claim, uint32_t vs, const pk_node_t *signer,
                     uint64_t storage_time)
{
	st_vipr_key_t key = { *claim, vs };
	st_vipr_value_t v = { *claim, vs, ST_VIPR_PVP_WITH_CALLER_ID, NULL, 0 };
	size_t vlen;
	st_vipr_key_encode(&key, e->key);
	assert_int_equal(st_vipr_value_encode(&v, e->val, sizeof(e->val), &vlen), 0);
	memset(&e->sd, 0, sizeof(e->sd));
	e->sd.storage_time = storage_time;
	e->sd.lifetime = 86400;
	e->sd.model = RL_MODEL_DICTIONARY;
	e->sd.key = (rl_bytes_t){ e->key, ST_VIPR_KEY_LEN };
	e->sd.exists = true;
	e->sd.value = (rl_bytes_t){ e->val, (uint32_t)vlen };
	assert_int_equal(rl_stored_data_sign(signer->key, rid->b, VP_ID_LEN, VK, &e->sd, &signer->signer, e->sig,
	                                     sizeof(e->sig)),
	                 0);
}

/* A request message: body encoded into buf, certificates carried. */
typedef struct req {
	uint8_t buf[RL_MAX_MESSAGE_SIZE];
	rl_message_t m;
	rl_cert_t certs[4];
	nk_request_t r;
} req_t;

static req_t *req_new(const rl_body_t *b, const pk_node_t *sender, const pk_node_t *const *carry, size_t n_carry,
                      const vp_id_t *sender_id)
{
	req_t *q = calloc(1, sizeof(*q));
	const dp_cert_ident_t *id;
	dp_cert_reason_t why;
	vp_wr_t wr;
	assert_non_null(q);
	vp_wr_init(&wr, q->buf, sizeof(q->buf));
	assert_int_equal(rl_body_encode(&wr, b), 0);
	q->m.contents.code = b->code;
	q->m.contents.body = (rl_bytes_t){ q->buf, (uint32_t)vp_wr_len(&wr) };
	for (size_t i = 0; i < n_carry; i++)
		q->certs[i] = carry[i]->rlcert;
	q->m.sec.certs.items = q->certs;
	q->m.sec.certs.n_items = (uint32_t)n_carry;
	assert_int_equal(dp_cert_verify_der(cs, sender->der, sender->der_len, &id, &why), 0);
	q->r.msg = &q->m;
	q->r.vnode = &id_v;
	q->r.table = &table;
	q->r.signer = id;
	q->r.sender = sender_id;
	q->r.tag = 7;
	return q;
}

/* A StoreReq body over ents[0..n) of the ViPR kind. */
static rl_body_t store_body(const vp_id_t *rid, uint8_t replica, const ent_t *ents, size_t n, rl_store_kind_data_t *kd,
                            rl_stored_data_t *sds)
{
	rl_body_t b;
	for (size_t i = 0; i < n; i++)
		sds[i] = ents[i].sd;
	memset(kd, 0, sizeof(*kd));
	kd->kind = VK;
	kd->values.items = sds;
	kd->values.n_items = (uint32_t)n;
	memset(&b, 0, sizeof(b));
	b.code = RL_STORE_REQ;
	b.u.store_req.resource = (rl_bytes_t){ rid->b, VP_ID_LEN };
	b.u.store_req.replica_number = replica;
	b.u.store_req.kind_data.items = kd;
	b.u.store_req.kind_data.n_items = 1;
	return b;
}

/* What nk_commit answered and what it (or nk_action) sent. */
typedef struct sink {
	unsigned answers;
	uint16_t code, error_code;
	uint8_t body[4096];
	size_t body_len;
	unsigned sent;
	vp_id_t peer[4];
	uint8_t replica[4];
	uint32_t sent_entries;
	size_t sent_certs;
} sink_t;

static void on_done(void *arg, const nk_answer_t *a)
{
	sink_t *s = arg;
	s->answers++;
	s->code = a->code;
	s->error_code = a->error_code;
	s->body_len = a->body.len < sizeof(s->body) ? a->body.len : sizeof(s->body);
	memcpy(s->body, a->body.p, s->body_len);
}

static int on_send(void *arg, const nk_send_t *x)
{
	sink_t *s = arg;
	rl_iter_t it;
	rl_store_kind_data_t kd;
	if (s->sent < 4) {
		s->peer[s->sent] = x->peer ? *x->peer : (vp_id_t){ { 0 } };
		s->replica[s->sent] = x->body->u.store_req.replica_number;
	}
	RL_ITER_INIT(&it, &x->body->u.store_req.kind_data);
	while (rl_store_kind_data_next(&it, &kd) == 1)
		s->sent_entries += (uint32_t)RL_LIST_COUNT(&kd.values);
	s->sent_certs += x->n_certs;
	s->sent++;
	return 0;
}

/* Handle a Store and commit; returns the sink. */
static void store_commit(req_t *q, sink_t *s)
{
	nk_answer_t a;
	int rc = nk_handle(nk, &q->r, &a);
	if (rc == 0) {
		on_done(s, &a);
		return;
	}
	assert_int_equal(rc, 1);
	assert_int_equal(nk_commit(nk, on_done, on_send, s), 0);
}

static uint32_t fetch_max_response; /* max_response_length of the next fetch_all (0 = none) */

/* Fetch every ViPR entry at rid (as \p asker); the answer is copied into out. */
static int fetch_all(const vp_id_t *rid, const pk_node_t *asker, const vp_id_t *asker_id, nk_answer_t *a)
{
	rl_body_t b;
	rl_specifier_t sp;
	req_t *q;
	int rc;
	memset(&sp, 0, sizeof(sp));
	sp.kind = VK;
	sp.model = RL_MODEL_DICTIONARY;
	memset(&b, 0, sizeof(b));
	b.code = RL_FETCH_REQ;
	b.u.fetch_req.resource = (rl_bytes_t){ rid->b, VP_ID_LEN };
	b.u.fetch_req.specifiers.items = &sp;
	b.u.fetch_req.specifiers.n_items = 1;
	q = req_new(&b, asker, NULL, 0, asker_id);
	q->m.hdr.max_response_length = fetch_max_response;
	rc = nk_handle(nk, &q->r, a);
	free(q);
	return rc;
}

/* Number of ViPR entries a Fetch of rid returns. */
static uint32_t count_entries(const vp_id_t *rid)
{
	nk_answer_t a;
	rl_body_t b;
	rl_iter_t it;
	rl_fetch_kind_resp_t kr;
	uint32_t n = 0;
	assert_int_equal(fetch_all(rid, &nd_a, &id_a, &a), 0);
	assert_int_equal(a.code, RL_FETCH_ANS);
	assert_int_equal(rl_body_decode(RL_FETCH_ANS, a.body.p, a.body.len, rl_model_builtin, NULL, &b), 0);
	RL_ITER_INIT(&it, &b.u.fetch_ans.responses);
	while (rl_fetch_kind_resp_next(&it, &kr) == 1)
		n += (uint32_t)RL_LIST_COUNT(&kr.values);
	return n;
}

/* ---- tests --------------------------------------------------------------- */

static void store_fetch_stat_find_answer_with_the_right_codes(void **state)
{
	vp_id_t rid = rid_at(0x38, 1);
	ent_t e;
	rl_store_kind_data_t kd;
	rl_stored_data_t sds[1];
	rl_body_t b, ab;
	const pk_node_t *carry[1] = { &nd_a };
	sink_t s = { 0 };
	nk_answer_t a;
	rl_iter_t it;
	rl_store_kind_resp_t kr;
	vp_id_t rep;
	req_t *q;
	(void)state;

	ent_make(&e, &rid, &id_a, 1, &nd_a, wall_now);
	b = store_body(&rid, 0, &e, 1, &kd, sds);
	q = req_new(&b, &nd_a, carry, 1, &id_a);
	store_commit(q, &s);
	free(q);
	assert_int_equal(s.answers, 1);
	assert_int_equal(s.code, RL_STORE_ANS);
	assert_int_equal(rl_body_decode(RL_STORE_ANS, s.body, s.body_len, NULL, NULL, &ab), 0);
	RL_ITER_INIT(&it, &ab.u.store_ans.responses);
	assert_int_equal(rl_store_kind_resp_next(&it, &kr), 1);
	assert_int_equal(kr.kind, VK);
	assert_int_equal(kr.generation, 1);
	assert_int_equal(RL_LIST_COUNT(&kr.replicas), 2);
	{
		rl_iter_t ri;
		RL_ITER_INIT(&ri, &kr.replicas);
		assert_int_equal(rl_node_next(&ri, &rep), 1);
		assert_true(vp_id_eq(&rep, &id_s1));
	}
	/* The original store went on to both successors as replica 1 and 2, with A's certificate. */
	assert_int_equal(s.sent, 2);
	assert_true(vp_id_eq(&s.peer[0], &id_s1));
	assert_int_equal(s.replica[0], 1);
	assert_int_equal(s.replica[1], 2);
	assert_int_equal(s.sent_certs, 2);

	/* Fetch: the entry, with its signer's certificate; a fetcher with an empty cache verifies it. */
	{
		dp_cert_store_cfg_t ccfg = { OVERLAY, 64, &wall };
		dp_cert_store_t *fresh;
		nk_fetch_result_t res;
		rl_message_t m;
		st_kind_t vk = st_kind_vipr(0);
		assert_int_equal(fetch_all(&rid, &nd_b, &id_b, &a), 0);
		assert_int_equal(a.code, RL_FETCH_ANS);
		assert_int_equal(a.n_certs, 1);
		memset(&m, 0, sizeof(m));
		m.contents.code = a.code;
		m.contents.body = a.body;
		m.sec.certs.items = a.certs;
		m.sec.certs.n_items = (uint32_t)a.n_certs;
		assert_int_equal(dp_cert_store_new(&ccfg, &fresh), 0);
		assert_int_equal(dp_cert_store_add_root(fresh, ca.cert), 0);
		assert_int_equal(nk_fetch_verify(fresh, &vk, 1, &rid, &m, NULL, NULL, &res), 0);
		assert_int_equal(res.accepted, 1);
		assert_int_equal(res.rejected, 0);
		dp_cert_store_free(fresh);
	}
	/* Stat: the value's length and hash. */
	{
		rl_specifier_t sp = { .kind = VK, .model = RL_MODEL_DICTIONARY };
		rl_stat_kind_resp_t sr;
		rl_stored_meta_t mt;
		rl_iter_t mi;
		memset(&b, 0, sizeof(b));
		b.code = RL_STAT_REQ;
		b.u.fetch_req.resource = (rl_bytes_t){ rid.b, VP_ID_LEN };
		b.u.fetch_req.specifiers.items = &sp;
		b.u.fetch_req.specifiers.n_items = 1;
		q = req_new(&b, &nd_b, NULL, 0, &id_b);
		assert_int_equal(nk_handle(nk, &q->r, &a), 0);
		free(q);
		assert_int_equal(a.code, RL_STAT_ANS);
		assert_int_equal(rl_body_decode(RL_STAT_ANS, a.body.p, a.body.len, rl_model_builtin, NULL, &ab), 0);
		RL_ITER_INIT(&it, &ab.u.stat_ans.responses);
		assert_int_equal(rl_stat_kind_resp_next(&it, &sr), 1);
		RL_ITER_INIT(&mi, &sr.values);
		assert_int_equal(rl_stored_meta_next(&mi, RL_MODEL_DICTIONARY, &mt), 1);
		assert_int_equal(mt.value_length, e.sd.value.len);
		assert_int_equal(mt.hash.len, 32);
	}
	/* Find from below: the resource; for the certificate kind: none. */
	{
		uint32_t kinds[2] = { VK, RL_KIND_CERTIFICATE_BY_NODE };
		rl_find_result_t fr;
		vp_id_t from = rid_at(0x31, 0);
		memset(&b, 0, sizeof(b));
		b.code = RL_FIND_REQ;
		b.u.find_req.resource = (rl_bytes_t){ from.b, VP_ID_LEN };
		b.u.find_req.kinds.items = kinds;
		b.u.find_req.kinds.n_items = 2;
		q = req_new(&b, &nd_b, NULL, 0, &id_b);
		assert_int_equal(nk_handle(nk, &q->r, &a), 0);
		free(q);
		assert_int_equal(a.code, RL_FIND_ANS);
		assert_int_equal(rl_body_decode(RL_FIND_ANS, a.body.p, a.body.len, NULL, NULL, &ab), 0);
		RL_ITER_INIT(&it, &ab.u.find_ans.results);
		assert_int_equal(rl_find_result_next(&it, &fr), 1);
		assert_int_equal(fr.closest.len, VP_ID_LEN);
		assert_memory_equal(fr.closest.p, rid.b, VP_ID_LEN);
		assert_int_equal(rl_find_result_next(&it, &fr), 1);
		assert_int_equal(fr.closest.len, 0);
	}
	/* An unknown kind: Unknown_Kind (12). */
	{
		rl_specifier_t sp = { .kind = 0xF00000AA, .model = RL_MODEL_SINGLE };
		memset(&b, 0, sizeof(b));
		b.code = RL_FETCH_REQ;
		b.u.fetch_req.resource = (rl_bytes_t){ rid.b, VP_ID_LEN };
		b.u.fetch_req.specifiers.items = &sp;
		b.u.fetch_req.specifiers.n_items = 1;
		q = req_new(&b, &nd_b, NULL, 0, &id_b);
		assert_int_equal(nk_handle(nk, &q->r, &a), 0);
		free(q);
		assert_int_equal(a.code, RL_ERROR);
		assert_int_equal(a.error_code, RL_ERR_UNKNOWN_KIND);
		assert_string_equal(a.error_info, "4026532010"); /* 0xF00000AA */
	}
	/* The same StoredData with an older storage_time: Data_Too_Old (9). */
	{
		ent_t old;
		sink_t s2 = { 0 };
		ent_make(&old, &rid, &id_a, 1, &nd_a, wall_now - 1000);
		b = store_body(&rid, 0, &old, 1, &kd, sds);
		q = req_new(&b, &nd_a, carry, 1, &id_a);
		store_commit(q, &s2);
		free(q);
		assert_int_equal(s2.code, RL_ERROR);
		assert_int_equal(s2.error_code, RL_ERR_DATA_TOO_OLD);
	}
}

/* B signs an entry under A's key and sends it in a Store signed by A: the entry's own signer decides. */
static void entry_signed_by_another_node_than_its_key_is_refused(void **state)
{
	vp_id_t rid = rid_at(0x38, 2);
	ent_t e;
	rl_store_kind_data_t kd;
	rl_stored_data_t sds[1];
	rl_body_t b;
	const pk_node_t *carry[2] = { &nd_a, &nd_b };
	sink_t s = { 0 };
	req_t *q;
	(void)state;
	ent_make(&e, &rid, &id_a, 1, &nd_b, wall_now);
	b = store_body(&rid, 0, &e, 1, &kd, sds);
	q = req_new(&b, &nd_a, carry, 2, &id_a);
	store_commit(q, &s);
	free(q);
	assert_int_equal(s.code, RL_ERROR);
	assert_int_equal(s.error_code, RL_ERR_FORBIDDEN);
	assert_int_equal(count_entries(&rid), 0);
}

/* A replica from pred[0] carrying 2 good entries, one forged (value altered after signing) and one
 * signed by B under A's key: the 2 good ones are stored, the other two refused one by one. */
static void forged_entries_in_a_replica_are_refused_one_by_one(void **state)
{
	vp_id_t rid = rid_at(0x28, 1); /* in (pred[1], pred[0]]: V holds it as replica 1 */
	ent_t e[4];
	rl_store_kind_data_t kd;
	rl_stored_data_t sds[4];
	rl_body_t b;
	const pk_node_t *carry[3] = { &nd_p1, &nd_a, &nd_b };
	sink_t s = { 0 };
	nk_stats_t st;
	req_t *q;
	(void)state;
	ent_make(&e[0], &rid, &id_a, 1, &nd_a, wall_now);
	ent_make(&e[1], &rid, &id_a, 2, &nd_a, wall_now);
	e[1].val[1] ^= 0x01; /* the contact changes after signing */
	ent_make(&e[2], &rid, &id_a, 3, &nd_b, wall_now);
	ent_make(&e[3], &rid, &id_b, 1, &nd_b, wall_now);
	b = store_body(&rid, 1, e, 4, &kd, sds);
	q = req_new(&b, &nd_p1, carry, 3, &id_p1);
	store_commit(q, &s);
	free(q);
	assert_int_equal(s.code, RL_STORE_ANS);
	assert_int_equal(count_entries(&rid), 2);
	nk_stats(nk, &st);
	assert_int_equal(st.bad_signatures, 1);
	assert_int_equal(st.entries_refused, 2);
	assert_int_equal(st.neighbour_stores, 1);
	/* A replica is not replicated further. */
	assert_int_equal(s.sent, 0);
	/* A replica holding only forged entries is answered with an error. */
	memset(&s, 0, sizeof(s));
	b = store_body(&rid, 1, &e[1], 2, &kd, sds);
	q = req_new(&b, &nd_p1, carry, 3, &id_p1);
	store_commit(q, &s);
	free(q);
	assert_int_equal(s.code, RL_ERROR);
	assert_int_equal(s.error_code, RL_ERR_FORBIDDEN);
	assert_int_equal(count_entries(&rid), 2);
}

/* replica_number 1 from a stranger, and from a successor, is refused; from pred[0] it is stored. */
static void replica_from_a_non_neighbour_is_refused(void **state)
{
	vp_id_t rid = rid_at(0x28, 2);
	ent_t e;
	rl_store_kind_data_t kd;
	rl_stored_data_t sds[1];
	rl_body_t b;
	const pk_node_t *carry[3] = { &nd_x, &nd_a, &nd_s1 };
	sink_t s = { 0 };
	req_t *q;
	(void)state;
	ent_make(&e, &rid, &id_a, 1, &nd_a, wall_now);
	b = store_body(&rid, 1, &e, 1, &kd, sds);
	q = req_new(&b, &nd_x, carry, 2, &id_x);
	store_commit(q, &s);
	free(q);
	assert_int_equal(s.code, RL_ERROR);
	assert_int_equal(s.error_code, RL_ERR_FORBIDDEN);
	assert_int_equal(count_entries(&rid), 0);

	memset(&s, 0, sizeof(s));
	q = req_new(&b, &nd_s1, carry + 1, 2, &id_s1);
	store_commit(q, &s);
	free(q);
	assert_int_equal(s.error_code, RL_ERR_FORBIDDEN);
	assert_int_equal(count_entries(&rid), 0);

	/* A stranger sender claiming to be pred[0]: its certificate does not carry that Node-ID. */
	memset(&s, 0, sizeof(s));
	q = req_new(&b, &nd_x, carry, 2, &id_p1);
	store_commit(q, &s);
	free(q);
	assert_int_equal(s.error_code, RL_ERR_FORBIDDEN);

	memset(&s, 0, sizeof(s));
	{
		const pk_node_t *c2[2] = { &nd_p1, &nd_a };
		q = req_new(&b, &nd_p1, c2, 2, &id_p1);
	}
	store_commit(q, &s);
	free(q);
	assert_int_equal(s.code, RL_STORE_ANS);
	assert_int_equal(count_entries(&rid), 1);
}

/* A done hook that serves one more Store (as a node_request issued from a callback and served by this vnode
 * does), once, when the answer tagged \p after arrives; records each answer's tag. */
typedef struct nest {
	sink_t sink;
	req_t *inner;
	uint64_t after;
	int inner_rc;
	bool inner_done;
	uint64_t tags[NK_PENDING_DEFAULT + 4];
	unsigned n_tags;
} nest_t;

static void on_done_nest(void *arg, const nk_answer_t *a)
{
	nest_t *n = arg;
	nk_answer_t ia;
	on_done(&n->sink, a);
	if (n->n_tags < sizeof(n->tags) / sizeof(n->tags[0]))
		n->tags[n->n_tags++] = a->tag;
	if (a->tag == n->after && n->inner && !n->inner_done) {
		n->inner_done = true;
		n->inner_rc = nk_handle(nk, &n->inner->r, &ia);
	}
}

/* A Store served from inside nk_commit's answer hook, while a full batch (max_pending) is being answered,
 * goes into the next batch: this commit answers only its own max_pending Stores, the nested one is answered
 * by the next commit, after its own write.  It was refused VP_EBUSY (the committing list still counted), or,
 * below max_pending, joined the list being answered: answered before its write. */
static void store_from_a_commit_hook_is_answered_by_the_next_commit(void **state)
{
	const pk_node_t *carry[1] = { &nd_a };
	nest_t n;
	vp_id_t rid_in = rid_at(0x3B, 9999);
	ent_t e;
	rl_store_kind_data_t kd;
	rl_stored_data_t sds[1];
	rl_body_t b;
	nk_answer_t a;
	(void)state;

	memset(&n, 0, sizeof(n));
	for (uint32_t i = 0; i < NK_PENDING_DEFAULT; i++) {
		vp_id_t rid = rid_at(0x3B, i);
		req_t *q;
		ent_make(&e, &rid, &id_a, 1, &nd_a, wall_now);
		b = store_body(&rid, 0, &e, 1, &kd, sds);
		q = req_new(&b, &nd_a, carry, 1, &id_a);
		q->r.tag = i;
		assert_int_equal(nk_handle(nk, &q->r, &a), 1);
		free(q);
	}
	ent_make(&e, &rid_in, &id_a, 1, &nd_a, wall_now);
	b = store_body(&rid_in, 0, &e, 1, &kd, sds);
	n.inner = req_new(&b, &nd_a, carry, 1, &id_a);
	n.inner->r.tag = 0; /* the first of the next batch's list */
	n.after = 3;
	n.inner_rc = -1000;
	assert_int_equal(nk_commit(nk, on_done_nest, on_send, &n), 0);
	assert_true(n.inner_done);
	assert_int_equal(n.inner_rc, 1); /* queued, not VP_EBUSY */
	assert_int_equal(n.sink.answers, NK_PENDING_DEFAULT); /* this commit: its own Stores only */
	for (unsigned i = 0; i < n.n_tags; i++)
		assert_int_equal(n.tags[i], i);
	assert_true(nk_batch_pending(nk)); /* the nested Store's batch waits for its commit */
	/* the nested Store is answered by the next commit, and is there */
	n.n_tags = 0;
	assert_int_equal(nk_commit(nk, on_done_nest, on_send, &n), 0);
	assert_int_equal(n.sink.answers, NK_PENDING_DEFAULT + 1);
	assert_int_equal(n.n_tags, 1);
	assert_int_equal(n.tags[0], 0);
	assert_int_equal(n.sink.code, RL_STORE_ANS);
	assert_false(nk_batch_pending(nk));
	assert_int_equal(count_entries(&rid_in), 1);
	{
		vp_id_t last = rid_at(0x3B, NK_PENDING_DEFAULT - 1);
		assert_int_equal(count_entries(&last), 1);
	}
	free(n.inner);
}

/* Send \p n one-entry Stores from \p sender for resources in V's range; returns how many succeeded. */
static uint32_t send_many(uint32_t n, const pk_node_t *sender, const vp_id_t *sender_id, uint32_t base)
{
	const pk_node_t *carry[2] = { sender, &nd_a };
	uint32_t ok = 0;
	sink_t s = { 0 };
	for (uint32_t i = 0; i < n; i++) {
		vp_id_t rid = rid_at(0x3A, base + i);
		ent_t e;
		rl_store_kind_data_t kd;
		rl_stored_data_t sds[1];
		rl_body_t b;
		nk_answer_t a;
		req_t *q;
		int rc;
		ent_make(&e, &rid, &id_a, 1, &nd_a, wall_now);
		b = store_body(&rid, 0, &e, 1, &kd, sds);
		q = req_new(&b, sender, carry, 2, sender_id);
		rc = nk_handle(nk, &q->r, &a);
		free(q);
		if (rc == 0)
			continue; /* refused at once (the answer is an Error) */
		assert_int_equal(rc, 1);
		ok++;
		if (ok % 128 == 0)
			assert_int_equal(nk_commit(nk, on_done, NULL, &s), 0);
	}
	assert_int_equal(nk_commit(nk, on_done, NULL, &s), 0);
	assert_int_equal(s.answers, ok);
	assert_int_equal(s.code, RL_STORE_ANS);
	return ok;
}

/* A join handoff of 10,000 entries from succ[0] is not throttled; the same stores from a stranger are
 * (the 2,000-store burst), which shows the size is one where policing would bite. */
static void handoff_of_10000_entries_is_not_throttled(void **state)
{
	nk_stats_t st;
	(void)state;
	assert_int_equal(send_many(10000, &nd_s1, &id_s1, 0), 10000);
	nk_stats(nk, &st);
	assert_int_equal(st.neighbour_stores, 10000);
	assert_int_equal(send_many(2500, &nd_x, &id_x, 20000), 2000);
}

/* A neighbour storing its own registration is an original store: copied to both successors and policed
 * per signer; a store of other claimants' entries from the same neighbour stays a handoff. */
static void neighbours_own_store_is_replicated(void **state)
{
	vp_id_t rid = rid_at(0x3B, 1);
	const pk_node_t *carry[2] = { &nd_s1, &nd_a };
	ent_t e;
	rl_store_kind_data_t kd;
	rl_stored_data_t sds[1];
	rl_body_t b;
	nk_stats_t st;
	sink_t s = { 0 }, h = { 0 };
	req_t *q;
	(void)state;

	ent_make(&e, &rid, &id_s1, 1, &nd_s1, wall_now);
	b = store_body(&rid, 0, &e, 1, &kd, sds);
	q = req_new(&b, &nd_s1, carry, 1, &id_s1);
	store_commit(q, &s);
	free(q);
	assert_int_equal(s.code, RL_STORE_ANS);
	assert_int_equal(s.sent, 2);
	assert_int_equal(s.replica[0], 1);
	assert_int_equal(s.replica[1], 2);
	nk_stats(nk, &st);
	assert_int_equal(st.stores, 1);
	assert_int_equal(st.neighbour_stores, 0);

	/* A's entry carried by the same neighbour: a handoff, kept and not spread. */
	rid = rid_at(0x3B, 2);
	ent_make(&e, &rid, &id_a, 1, &nd_a, wall_now);
	b = store_body(&rid, 0, &e, 1, &kd, sds);
	q = req_new(&b, &nd_s1, carry, 2, &id_s1);
	store_commit(q, &h);
	free(q);
	assert_int_equal(h.code, RL_STORE_ANS);
	assert_int_equal(h.sent, 0);
	nk_stats(nk, &st);
	assert_int_equal(st.neighbour_stores, 1);
}

/* DROP removes what lies outside the keep range and was written before the grace, nothing else. */
static void drop_keeps_recent_writes(void **state)
{
	vp_id_t old_out = rid_at(0x90, 1), new_out = rid_at(0x91, 1), old_in = rid_at(0x18, 1);
	const pk_node_t *carry[1] = { &nd_a };
	vp_id_t rids[3] = { old_out, old_in, new_out };
	chord_store_action_t act;
	uint64_t n = 0;
	(void)state;
	for (int i = 0; i < 3; i++) {
		ent_t e;
		rl_store_kind_data_t kd;
		rl_stored_data_t sds[1];
		rl_body_t b;
		sink_t s = { 0 };
		req_t *q;
		if (i == 2)
			wall_now += 10 * 60 * 1000; /* new_out is written 10 min after the others */
		ent_make(&e, &rids[i], &id_a, 1, &nd_a, wall_now);
		b = store_body(&rids[i], 0, &e, 1, &kd, sds);
		q = req_new(&b, &nd_a, carry, 1, &id_a);
		store_commit(q, &s);
		free(q);
		assert_int_equal(s.code, RL_STORE_ANS);
		assert_int_equal(s.sent, 0); /* V is not responsible for these: it keeps them, copies nothing */
	}
	wall_now += 60 * 1000;
	memset(&act, 0, sizeof(act));
	act.op = CHORD_STORE_DROP;
	act.to = id_v;
	act.lo = pk_id(0x10);
	act.hi = id_v;
	act.grace_ms = 5 * 60 * 1000;
	assert_int_equal(nk_action(nk, &act, NULL, NULL, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(count_entries(&old_out), 0);
	assert_int_equal(count_entries(&old_in), 1);
	assert_int_equal(count_entries(&new_out), 1);
	assert_int_equal(st_shard_verify(st_db_shard(db, 0)), 0);
}

/* HANDOFF and REPLICATE send every live entry of the range, signed as stored, with the certificates. */
static void handoff_and_replicate_send_the_range(void **state)
{
	const pk_node_t *carry[2] = { &nd_a, &nd_b };
	chord_store_action_t act;
	sink_t s = { 0 };
	uint64_t n = 0;
	(void)state;
	for (uint32_t i = 0; i < 5; i++) {
		vp_id_t rid = rid_at(0x38, 100 + i);
		ent_t e[2];
		rl_store_kind_data_t kd;
		rl_stored_data_t sds[2];
		rl_body_t b;
		sink_t s1 = { 0 };
		req_t *q;
		ent_make(&e[0], &rid, &id_a, 1, &nd_a, wall_now);
		ent_make(&e[1], &rid, &id_b, 1, &nd_b, wall_now);
		b = store_body(&rid, 0, e, 2, &kd, sds);
		q = req_new(&b, &nd_a, carry, 2, &id_a);
		store_commit(q, &s1);
		free(q);
		assert_int_equal(s1.code, RL_STORE_ANS);
	}
	memset(&act, 0, sizeof(act));
	act.op = CHORD_STORE_REPLICATE;
	act.to = id_s1;
	act.lo = id_p1;
	act.hi = id_v;
	act.replica_number = 2;
	assert_int_equal(nk_action(nk, &act, on_send, &s, &n), 0);
	assert_int_equal(n, 10);
	assert_int_equal(s.sent, 5);
	assert_int_equal(s.sent_entries, 10);
	assert_int_equal(s.sent_certs, 10);
	assert_int_equal(s.replica[0], 2);
	assert_true(vp_id_eq(&s.peer[0], &id_s1));
	/* Inside a batch: refused. */
	{
		vp_id_t rid = rid_at(0x38, 200);
		ent_t e;
		rl_store_kind_data_t kd;
		rl_stored_data_t sds[1];
		rl_body_t b;
		nk_answer_t a;
		req_t *q;
		ent_make(&e, &rid, &id_a, 1, &nd_a, wall_now);
		b = store_body(&rid, 0, &e, 1, &kd, sds);
		q = req_new(&b, &nd_a, carry, 1, &id_a);
		assert_int_equal(nk_handle(nk, &q->r, &a), 1);
		free(q);
		assert_int_equal(nk_action(nk, &act, on_send, &s, &n), VP_ESTATE);
		assert_int_equal(nk_commit(nk, NULL, NULL, NULL), 0);
	}
}

/* The fetcher ignores an entry a rogue storing node altered, and an old one it kept serving. */
static void fetch_verify_catches_altered_and_over_age_entries(void **state)
{
	vp_id_t rid = rid_at(0x38, 3);
	st_kind_t vk = st_kind_vipr(0);
	ent_t e[3];
	rl_fetch_kind_resp_t kr;
	rl_stored_data_t sds[3];
	rl_body_t b;
	rl_cert_t certs[1] = { nd_a.rlcert };
	rl_message_t m;
	uint8_t buf[8192];
	vp_wr_t wr;
	nk_fetch_result_t res;
	(void)state;
	ent_make(&e[0], &rid, &id_a, 1, &nd_a, wall_now);
	ent_make(&e[1], &rid, &id_a, 2, &nd_a, wall_now);
	e[1].val[5] ^= 0x40;
	/* Signed 3 days ago: older than the kind's 48 h maximum lifetime. */
	ent_make(&e[2], &rid, &id_a, 3, &nd_a, wall_now - 3ull * 86400 * 1000);
	for (int i = 0; i < 3; i++)
		sds[i] = e[i].sd;
	memset(&kr, 0, sizeof(kr));
	kr.kind = VK;
	kr.generation = 4;
	kr.values.items = sds;
	kr.values.n_items = 3;
	memset(&b, 0, sizeof(b));
	b.code = RL_FETCH_ANS;
	b.u.fetch_ans.responses.items = &kr;
	b.u.fetch_ans.responses.n_items = 1;
	vp_wr_init(&wr, buf, sizeof(buf));
	assert_int_equal(rl_body_encode(&wr, &b), 0);
	memset(&m, 0, sizeof(m));
	m.contents.code = RL_FETCH_ANS;
	m.contents.body = (rl_bytes_t){ buf, (uint32_t)vp_wr_len(&wr) };
	m.sec.certs.items = certs;
	m.sec.certs.n_items = 1;
	assert_int_equal(nk_fetch_verify(cs, &vk, 1, &rid, &m, NULL, NULL, &res), 0);
	assert_int_equal(res.accepted, 1);
	assert_int_equal(res.rejected, 2);
	assert_int_equal(res.last, DP_CERT_TOO_OLD);
	/* The same entries at another Resource-ID: the signature covers it, so none passes. */
	{
		vp_id_t other = rid_at(0x38, 4);
		assert_int_equal(nk_fetch_verify(cs, &vk, 1, &other, &m, NULL, NULL, &res), 0);
		assert_int_equal(res.accepted, 0);
	}
}

/* A FetchAns that would not fit the request's max_response_length is Response_Too_Large; one that fits is sent. */
static void fetch_answer_respects_max_response_length(void **state)
{
	vp_id_t rid = rid_at(0x38, 9);
	const pk_node_t *carry[2] = { &nd_a, &nd_b };
	ent_t e[2];
	rl_store_kind_data_t kd;
	rl_stored_data_t sds[2];
	rl_body_t b;
	sink_t s = { 0 };
	nk_answer_t a;
	req_t *q;
	(void)state;
	ent_make(&e[0], &rid, &id_a, 1, &nd_a, wall_now);
	ent_make(&e[1], &rid, &id_b, 1, &nd_b, wall_now);
	b = store_body(&rid, 0, e, 2, &kd, sds);
	q = req_new(&b, &nd_a, carry, 2, &id_a);
	store_commit(q, &s);
	free(q);
	assert_int_equal(s.code, RL_STORE_ANS);
	fetch_max_response = 5000; /* the two certificates alone take more than the 4 KiB header room leaves */
	assert_int_equal(fetch_all(&rid, &nd_a, &id_a, &a), 0);
	assert_int_equal(a.code, RL_ERROR);
	assert_int_equal(a.error_code, RL_ERR_RESPONSE_TOO_LARGE);
	fetch_max_response = 16384;
	assert_int_equal(fetch_all(&rid, &nd_a, &id_a, &a), 0);
	fetch_max_response = 0;
	assert_int_equal(a.code, RL_FETCH_ANS);
	assert_int_equal(a.n_certs, 2);
}

/* The quota limit follows the vnode's (pred[2], self] fraction. */
static void quota_fraction_is_set_from_the_table(void **state)
{
	const chord_table_t *tabs[1] = { &table };
	st_shard_t *sh = st_db_shard(db, 0);
	uint64_t before = st_quota_limit_of(sh, VK), after;
	uint32_t ppb;
	(void)state;
	ppb = nk_set_range(nk, tabs, 1);
	/* (0x1010.., 0x4040..]: 0x3030.. / 2^128 = 0.188 */
	assert_int_equal(ppb, vp_id_fraction_ppb(&table.pred[2], &id_v));
	assert_true(ppb > 187000000u && ppb < 189000000u);
	after = st_quota_limit_of(sh, VK);
	assert_true(before > 20000);
	assert_true(after < 3800 && after > 3700);
}

/* The Store the send hook saw, encoded again (a routed request carries no peer). */
typedef struct cap {
	uint8_t buf[16384];
	size_t len;
	int routed;
	size_t n_certs;
} cap_t;

static int send_capture(void *arg, const nk_send_t *x)
{
	cap_t *c = arg;
	vp_wr_t wr;
	vp_wr_init(&wr, c->buf, sizeof(c->buf));
	if (rl_body_encode(&wr, x->body))
		return VP_ESPACE;
	c->len = vp_wr_len(&wr);
	c->routed = x->peer == NULL;
	c->n_certs = x->n_certs;
	return 0;
}

/* The vnode's own certificate goes to CERTIFICATE_BY_NODE at H(Node-ID) and passes NODE-MATCH there;
 * another node's certificate under that resource does not. */
static void own_certificate_is_stored_by_node(void **state)
{
	static cap_t c;
	const pk_node_t *carry[1] = { &nd_v };
	rl_body_t b;
	sink_t s = { 0 };
	req_t *q;
	(void)state;
	memset(&c, 0, sizeof(c));
	assert_int_equal(nk_store_own_cert(nk, &id_v, 86400, send_capture, &c), 0);
	assert_true(c.routed);
	assert_int_equal(c.n_certs, 1);
	assert_int_equal(rl_body_decode(RL_STORE_REQ, c.buf, c.len, rl_model_builtin, NULL, &b), 0);
	q = req_new(&b, &nd_v, carry, 1, &id_v);
	store_commit(q, &s);
	free(q);
	assert_int_equal(s.code, RL_STORE_ANS);

	/* X re-signs the same certificate entry under V's resource: Forbidden. */
	{
		rl_iter_t it, vit;
		rl_store_kind_data_t kd;
		rl_stored_data_t sd;
		uint8_t sig[RL_MAX_SIG_LEN];
		vp_id_t rid = vp_id_from_name(id_v.b, VP_ID_LEN);
		rl_body_t b2;
		const pk_node_t *cx[1] = { &nd_x };
		RL_ITER_INIT(&it, &b.u.store_req.kind_data);
		assert_int_equal(rl_store_kind_data_next(&it, &kd), 1);
		RL_ITER_INIT(&vit, &kd.values);
		assert_int_equal(rl_stored_data_next(&vit, RL_MODEL_ARRAY, &sd), 1);
		sd.storage_time += 1000;
		assert_int_equal(rl_stored_data_sign(nd_x.key, rid.b, VP_ID_LEN, RL_KIND_CERTIFICATE_BY_NODE, &sd,
		                                     &nd_x.signer, sig, sizeof(sig)),
		                 0);
		memset(&kd.values, 0, sizeof(kd.values));
		kd.values.items = &sd;
		kd.values.n_items = 1;
		b2 = b;
		memset(&b2.u.store_req.kind_data, 0, sizeof(b2.u.store_req.kind_data));
		b2.u.store_req.kind_data.items = &kd;
		b2.u.store_req.kind_data.n_items = 1;
		memset(&s, 0, sizeof(s));
		q = req_new(&b2, &nd_x, cx, 1, &id_x);
		store_commit(q, &s);
		free(q);
		assert_int_equal(s.code, RL_ERROR);
		assert_int_equal(s.error_code, RL_ERR_FORBIDDEN);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(store_fetch_stat_find_answer_with_the_right_codes, setup, teardown),
		cmocka_unit_test_setup_teardown(entry_signed_by_another_node_than_its_key_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(forged_entries_in_a_replica_are_refused_one_by_one, setup, teardown),
		cmocka_unit_test_setup_teardown(replica_from_a_non_neighbour_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(neighbours_own_store_is_replicated, setup, teardown),
		cmocka_unit_test_setup_teardown(store_from_a_commit_hook_is_answered_by_the_next_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(handoff_of_10000_entries_is_not_throttled, setup, teardown),
		cmocka_unit_test_setup_teardown(drop_keeps_recent_writes, setup, teardown),
		cmocka_unit_test_setup_teardown(handoff_and_replicate_send_the_range, setup, teardown),
		cmocka_unit_test_setup_teardown(fetch_verify_catches_altered_and_over_age_entries, setup, teardown),
		cmocka_unit_test_setup_teardown(fetch_answer_respects_max_response_length, setup, teardown),
		cmocka_unit_test_setup_teardown(quota_fraction_is_set_from_the_table, setup, teardown),
		cmocka_unit_test_setup_teardown(own_certificate_is_stored_by_node, setup, teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
