/*
 * tests/control/flow/test_dht_reload.c - the ViPR server's overlay over RELOAD
 * (control/node/dht_reload.h) against a stand-in overlay of 6 peers that keeps
 * the StoredData exactly as sent (and may be rogue): real certificates, real
 * signatures, real vote.
 *
 * The stand-in routes like Chord (a destination goes to its successor among
 * the peers), keeps a Store at the responsible peer and its 2 successors, and
 * answers a Fetch from the peer the destination reaches, carrying every
 * signer's certificate.  It verifies nothing itself, so only the fetcher's
 * checks stand between a forged or altered entry and the server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <pthread.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/errcode.h"
#include "control/node/dht_reload.h"
#include "control/vap/vap_msg.h"
#include "storage/vipr_kind.h"
#include "pki_testkit.h"

#define OVERLAY "vipr.example"
#define NPEERS 6
#define PEER_MAX 512
#define VK ST_VIPR_KIND_ID_DEFAULT

typedef struct fent {
	vp_id_t res;
	uint8_t key[ST_VIPR_KEY_LEN];
	uint8_t sd[1024];
	size_t sd_len;
} fent_t;

enum { HONEST = 0, ROGUE_DROP, ROGUE_ALTER };

typedef struct fpeer {
	vp_id_t id;
	fent_t e[PEER_MAX];
	size_t n;
	int mode;
} fpeer_t;

typedef struct fake {
	pthread_mutex_t mu;
	fpeer_t p[NPEERS];
	vp_id_t order[4096]; /* Resource-IDs of the stores, in the order they were sent */
	size_t n_order;
	rl_cert_t certs[4];
	size_t n_certs;
	int inflight, max_inflight;
	int timeouts_left;   /* the next this many Stores get no answer (VP_ETIMEOUT, as the overlay's timer) */
	int not_found_left;  /* the next this many Stores are answered Error_Not_Found (a peer on the way would
	                      * have bounced them: ring views that disagree for a moment) */
	size_t store_reqs;   /* Stores received, retries included */
	/* each storing peer's rate policing (docs/protocol.md §3.4): pol_burst Stores at once, pol_rate per
	 * second after; beyond, Error_Forbidden "rate-limited".  pol_rate 0: no policing. */
	double pol_rate, pol_burst, pol_tokens[NPEERS];
	int pol_only;         /* police only this peer (+1: 0 = every peer) */
	size_t last_other;    /* index in order[] of the last Store kept by a peer other than pol_only - 1 */
	uint64_t pol_ns[NPEERS];
	size_t pol_refused;
	/* An overloaded overlay (slow_us > 0): Stores are kept at once but answered by one server thread, in
	 * order, slow_us of work each; a Store that waited longer than late_ms is answered VP_ETIMEOUT (the
	 * requester's timer fired) and its work is wasted all the same, as on a real overloaded peer. */
	unsigned slow_us, late_ms;
	struct slowq {
		dhr_answer_fn done;
		void *arg;
		int at;
		uint64_t queued_ns;
	} q[1024];
	size_t q_head, q_n;
	size_t late;
	bool q_stop;
	pthread_cond_t q_cv;
	/* The lookup's guess of the holders (dhr_transport_t.guess): none (copies one after the other), right (the
	 * responsible peer and its successor), or wrong (the two peers after them). */
	int guess;
	vp_id_t fetch_dest[32]; /* where each Fetch was addressed, in order */
	size_t n_fetch;
} fake_t;

enum { GUESS_NONE = 0, GUESS_RIGHT, GUESS_WRONG };

static pk_ca_t ca;
static pk_node_t nd_a, nd_a2, nd_t;
static vp_id_t id_a, id_a2, id_thief;
static dp_cert_store_t *cs;
static fake_t fk;

/* ---- the stand-in overlay ------------------------------------------------------------ */

static int responsible(const vp_id_t *dest)
{
	int best = -1;
	for (int i = 0; i < NPEERS; i++) /* peers are sorted: the first at or after dest */
		if (memcmp(fk.p[i].id.b, dest->b, VP_ID_LEN) >= 0) {
			best = i;
			break;
		}
	return best < 0 ? 0 : best;
}

static void peer_put(fpeer_t *p, const vp_id_t *res, const rl_stored_data_t *sd)
{
	fent_t *e = NULL;
	vp_wr_t wr;
	for (size_t i = 0; i < p->n; i++)
		if (vp_id_eq(&p->e[i].res, res) && !memcmp(p->e[i].key, sd->key.p, ST_VIPR_KEY_LEN))
			e = &p->e[i];
	if (!e) {
		assert_true(p->n < PEER_MAX);
		e = &p->e[p->n++];
	}
	e->res = *res;
	memcpy(e->key, sd->key.p, ST_VIPR_KEY_LEN);
	vp_wr_init(&wr, e->sd, sizeof(e->sd));
	assert_int_equal(rl_stored_data_encode(&wr, sd), 0);
	e->sd_len = vp_wr_len(&wr);
}

static void answer_fetch(int at, const vp_id_t *res, dhr_answer_fn done, void *arg)
{
	fpeer_t *p = &fk.p[at];
	rl_stored_data_t items[64];
	uint8_t alt[64][ST_VIPR_VALUE_MAX_LEN];
	uint8_t body[65536];
	size_t n = 0;
	rl_fetch_kind_resp_t kr;
	rl_body_t b;
	rl_message_t m;
	vp_wr_t wr;
	for (size_t i = 0; i < p->n && n < 64; i++) {
		vp_rd_t rd;
		if (!vp_id_eq(&p->e[i].res, res) || p->mode == ROGUE_DROP)
			continue;
		vp_rd_init(&rd, p->e[i].sd, p->e[i].sd_len);
		assert_int_equal(rl_stored_data_decode(&rd, RL_MODEL_DICTIONARY, &items[n]), 0);
		if (p->mode == ROGUE_ALTER && items[n].exists) {
			/* Point the claim at another contact: the signature no longer matches. */
			memcpy(alt[n], items[n].value.p, items[n].value.len);
			alt[n][1] ^= 0xFF;
			items[n].value.p = alt[n];
		}
		n++;
	}
	memset(&kr, 0, sizeof(kr));
	kr.kind = VK;
	kr.values.items = items;
	kr.values.n_items = (uint32_t)n;
	memset(&b, 0, sizeof(b));
	b.code = RL_FETCH_ANS;
	b.u.fetch_ans.responses.items = &kr;
	b.u.fetch_ans.responses.n_items = 1;
	vp_wr_init(&wr, body, sizeof(body));
	assert_int_equal(rl_body_encode(&wr, &b), 0);
	memset(&m, 0, sizeof(m));
	m.contents.code = RL_FETCH_ANS;
	m.contents.body = (rl_bytes_t){ body, (uint32_t)vp_wr_len(&wr) };
	m.sec.certs.items = fk.certs;
	m.sec.certs.n_items = (uint32_t)fk.n_certs;
	done(arg, 0, &m, &p->id);
}

static void answer_store(int at, dhr_answer_fn done, void *arg)
{
	uint8_t body[64];
	rl_body_t b;
	rl_message_t m;
	vp_wr_t wr;
	memset(&b, 0, sizeof(b));
	b.code = RL_STORE_ANS;
	vp_wr_init(&wr, body, sizeof(body));
	assert_int_equal(rl_body_encode(&wr, &b), 0);
	memset(&m, 0, sizeof(m));
	m.contents.code = RL_STORE_ANS;
	m.contents.body = (rl_bytes_t){ body, (uint32_t)vp_wr_len(&wr) };
	done(arg, 0, &m, &fk.p[at].id);
}

/* An Error answer from peer \p at: \p code with error_info \p info. */
static void answer_error(int at, uint16_t code, const char *info, dhr_answer_fn done, void *arg)
{
	uint8_t body[64];
	rl_body_t b;
	rl_message_t m;
	vp_wr_t wr;
	memset(&b, 0, sizeof(b));
	b.code = RL_ERROR;
	b.u.error.code = code;
	b.u.error.info = (rl_bytes_t){ (const uint8_t *)info, (uint32_t)strlen(info) };
	vp_wr_init(&wr, body, sizeof(body));
	assert_int_equal(rl_body_encode(&wr, &b), 0);
	memset(&m, 0, sizeof(m));
	m.contents.code = RL_ERROR;
	m.contents.body = (rl_bytes_t){ body, (uint32_t)vp_wr_len(&wr) };
	done(arg, 0, &m, &fk.p[at].id);
}

/* Peer \p at's policing bucket (under fk.mu): true if this Store is over the limit. */
static bool policed(int at)
{
	uint64_t now = vp_time_mono_ns();
	if (fk.pol_rate <= 0 || (fk.pol_only && at != fk.pol_only - 1))
		return false;
	if (!fk.pol_ns[at])
		fk.pol_tokens[at] = fk.pol_burst;
	else
		fk.pol_tokens[at] += (double)(now - fk.pol_ns[at]) * fk.pol_rate / 1e9;
	if (fk.pol_tokens[at] > fk.pol_burst)
		fk.pol_tokens[at] = fk.pol_burst;
	fk.pol_ns[at] = now;
	if (fk.pol_tokens[at] < 1.0) {
		fk.pol_refused++;
		return true;
	}
	fk.pol_tokens[at] -= 1.0;
	return false;
}

static int fake_request(void *ctx, unsigned shard, const vp_id_t *dest, const rl_body_t *body, dhr_answer_fn done,
                        void *arg)
{
	int at;
	(void)ctx;
	(void)shard;
	pthread_mutex_lock(&fk.mu);
	at = responsible(dest);
	if (body->code == RL_STORE_REQ && (fk.store_reqs++, fk.timeouts_left > 0)) {
		fk.timeouts_left--;
		pthread_mutex_unlock(&fk.mu);
		done(arg, VP_ETIMEOUT, NULL, NULL);
		return 0;
	}
	if (body->code == RL_STORE_REQ && fk.not_found_left > 0) {
		fk.not_found_left--;
		pthread_mutex_unlock(&fk.mu);
		answer_error(at, RL_ERR_NOT_FOUND, "", done, arg);
		return 0;
	}
	if (body->code == RL_STORE_REQ && policed(at)) {
		pthread_mutex_unlock(&fk.mu);
		answer_error(at, RL_ERR_FORBIDDEN, "rate-limited", done, arg);
		return 0;
	}
	if (body->code == RL_STORE_REQ) {
		const rl_store_req_t *s = &body->u.store_req;
		vp_id_t res;
		assert_int_equal(s->kind_data.n_items, 1);
		assert_int_equal(s->kind_data.items[0].kind, VK);
		assert_int_equal(s->kind_data.items[0].values.n_items, 1);
		memcpy(res.b, s->resource.p, VP_ID_LEN);
		assert_true(vp_id_eq(&res, dest));
		for (int r = 0; r < 3; r++) /* the responsible peer and its 2 replicas */
			peer_put(&fk.p[(at + r) % NPEERS], &res, &s->kind_data.items[0].values.items[0]);
		if (fk.n_order < 4096) {
			if (at != fk.pol_only - 1)
				fk.last_other = fk.n_order;
			fk.order[fk.n_order++] = res;
		}
		if (fk.slow_us) {
			assert_true(fk.q_n < sizeof(fk.q) / sizeof(fk.q[0]));
			fk.q[(fk.q_head + fk.q_n++) % (sizeof(fk.q) / sizeof(fk.q[0]))] =
				(struct slowq){ done, arg, at, vp_time_mono_ns() };
			pthread_cond_signal(&fk.q_cv);
			pthread_mutex_unlock(&fk.mu);
			return 0;
		}
		if (++fk.inflight > fk.max_inflight)
			fk.max_inflight = fk.inflight;
		fk.inflight--;
		pthread_mutex_unlock(&fk.mu);
		answer_store(at, done, arg);
		return 0;
	}
	if (body->code == RL_FETCH_REQ) {
		vp_id_t res;
		if (fk.n_fetch < sizeof(fk.fetch_dest) / sizeof(fk.fetch_dest[0]))
			fk.fetch_dest[fk.n_fetch++] = *dest;
		memcpy(res.b, body->u.fetch_req.resource.p, VP_ID_LEN);
		pthread_mutex_unlock(&fk.mu);
		answer_fetch(at, &res, done, arg);
		return 0;
	}
	pthread_mutex_unlock(&fk.mu);
	return VP_EINVAL;
}

/* The overloaded overlay's server thread (fk.slow_us): one queued Store at a time, in order. */
static void *slow_server(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&fk.mu);
	while (!fk.q_stop) {
		if (!fk.q_n) {
			pthread_cond_wait(&fk.q_cv, &fk.mu);
			continue;
		}
		struct slowq e = fk.q[fk.q_head];
		fk.q_head = (fk.q_head + 1) % (sizeof(fk.q) / sizeof(fk.q[0]));
		fk.q_n--;
		pthread_mutex_unlock(&fk.mu);
		usleep(fk.slow_us);
		bool late = vp_time_mono_ns() - e.queued_ns > (uint64_t)fk.late_ms * 1000000u;
		if (late) {
			pthread_mutex_lock(&fk.mu);
			fk.late++;
			pthread_mutex_unlock(&fk.mu);
			e.done(e.arg, VP_ETIMEOUT, NULL, NULL);
		} else {
			answer_store(e.at, e.done, e.arg);
		}
		pthread_mutex_lock(&fk.mu);
	}
	pthread_mutex_unlock(&fk.mu);
	return NULL;
}

/* The vnode's thread: the caller's (the stand-in has no threads of its own for requests). */
static int fake_call(void *ctx, unsigned shard, void (*fn)(void *arg, unsigned shard), void *arg)
{
	(void)ctx;
	fn(arg, shard);
	return 0;
}

static size_t fake_guess(void *ctx, unsigned shard, const vp_id_t *id, vp_id_t *out, size_t max)
{
	int at = responsible(id) + (fk.guess == GUESS_WRONG);
	size_t n = 0;
	(void)ctx;
	(void)shard;
	for (; fk.guess != GUESS_NONE && n < max; n++)
		out[n] = fk.p[(at + (int)n) % NPEERS].id;
	return n;
}

static int fake_attach(void *ctx, const vp_id_t *contact, unsigned timeout_ms, int *fd)
{
	(void)ctx;
	(void)contact;
	(void)timeout_ms;
	(void)fd;
	return VP_ENOROUTE;
}

/* ---- waiting for completions -------------------------------------------------------------- */

typedef struct waiter {
	pthread_mutex_t mu;
	int done, failed, last;
	vsrv_reg_t regs[VSRV_REGS_MAX];
	size_t n;
	char incident[512];
} waiter_t;

static waiter_t w;

static void on_store(void *arg, int status)
{
	(void)arg;
	pthread_mutex_lock(&w.mu);
	w.done++;
	if (status) {
		w.failed++;
		w.last = status;
	}
	pthread_mutex_unlock(&w.mu);
}

static void on_fetch(void *arg, int status, const vsrv_reg_t *regs, size_t n, const char *incident)
{
	(void)arg;
	pthread_mutex_lock(&w.mu);
	w.done++;
	w.last = status;
	w.n = n;
	if (n)
		memcpy(w.regs, regs, n * sizeof(*regs));
	snprintf(w.incident, sizeof(w.incident), "%s", incident ? incident : "");
	pthread_mutex_unlock(&w.mu);
}

static void wait_done(int n)
{
	for (int i = 0; i < 1000; i++) { /* 10 s at most */
		pthread_mutex_lock(&w.mu);
		int d = w.done;
		pthread_mutex_unlock(&w.mu);
		if (d >= n)
			return;
		usleep(10000);
	}
	fail_msg("only %d of %d completions", w.done, n);
}

/* ---- fixtures ------------------------------------------------------------------------------ */

static int group_setup(void **state)
{
	pk_opts_t o = { OVERLAY, -3600, 7200, 0, 0, 0 };
	dp_cert_store_cfg_t ccfg = { OVERLAY, 64, NULL };
	(void)state;
	id_a = pk_id(0xA1);
	id_a2 = pk_id(0xA2);
	id_thief = pk_id(0x77);
	if (pk_ca_new(&ca, "root") || pk_node_new(&nd_a, &ca, &id_a, 1, &o) || pk_node_new(&nd_a2, &ca, &id_a2, 1, &o) ||
	    pk_node_new(&nd_t, &ca, &id_thief, 1, &o))
		return -1;
	if (dp_cert_store_new(&ccfg, &cs) || dp_cert_store_add_root(cs, ca.cert))
		return -1;
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	dp_cert_store_free(cs);
	pk_node_free(&nd_a);
	pk_node_free(&nd_a2);
	pk_node_free(&nd_t);
	pk_ca_free(&ca);
	return 0;
}

static uint32_t mk_lifetime; /* a test's [vipr] lifetime (0: the default); setup resets it */

static int setup(void **state)
{
	(void)state;
	memset(&fk, 0, sizeof(fk));
	pthread_mutex_init(&fk.mu, NULL);
	pthread_cond_init(&fk.q_cv, NULL);
	for (int i = 0; i < NPEERS; i++)
		fk.p[i].id = pk_id((uint8_t)(0x20 + 0x28 * i)); /* 0x20 .. 0xE8 */
	fk.guess = *state ? *(const int *)*state : GUESS_RIGHT; /* viprd's vnodes guess on a small overlay */
	mk_lifetime = 0;
	fk.certs[0] = nd_a.rlcert;
	fk.certs[1] = nd_a2.rlcert;
	fk.certs[2] = nd_t.rlcert;
	fk.n_certs = 3;
	memset(&w, 0, sizeof(w));
	pthread_mutex_init(&w.mu, NULL);
	return 0;
}

static dhr_t *mk(unsigned signers, uint32_t quota, uint32_t rate, uint32_t inflight)
{
	dhr_conf_t c;
	dhr_transport_t t = { NULL, fake_request, fake_attach, fake_call, fake_guess };
	dhr_t *d = NULL;
	dhr_conf_default(&c);
	if (mk_lifetime)
		c.lifetime_s = mk_lifetime;
	c.signers[0] = (dhr_signer_t){ 0, id_a, nd_a.key, nd_a.der, nd_a.der_len };
	c.signers[1] = (dhr_signer_t){ 1, id_a2, nd_a2.key, nd_a2.der, nd_a2.der_len };
	c.n_signers = signers;
	c.quota = quota;
	c.store_rate = rate;
	c.store_inflight = inflight;
	c.certs = cs;
	assert_int_equal(dhr_new(&c, &t, &d), 0);
	return d;
}

static vsrv_reg_t reg_of(const vp_id_t *node)
{
	vsrv_reg_t r = { *node, 7, *node, ST_VIPR_PVP_WITH_CALLER_ID | ST_VIPR_PVP_WITHOUT_CALLER_ID };
	return r;
}

static void number(char *out, unsigned i)
{
	snprintf(out, VP_E164_BUFLEN, "+1408555%04u", i);
}

static void publish(vsrv_dht_t *dht, unsigned first, unsigned n, uint8_t op)
{
	char num[VP_E164_BUFLEN];
	vsrv_reg_t r = reg_of(&id_a);
	for (unsigned i = first; i < first + n; i++) {
		number(num, i);
		assert_int_equal(dht->store(dht->ctx, num, op, &r, on_store, NULL), 0);
	}
}

static void fetch(vsrv_dht_t *dht, const char *num)
{
	int before;
	pthread_mutex_lock(&w.mu);
	before = w.done;
	pthread_mutex_unlock(&w.mu);
	assert_int_equal(dht->fetch(dht->ctx, num, on_fetch, NULL), 0);
	wait_done(before + 1);
}

/* Plant, at every copy, an entry claiming \p num under \p claim but signed by \p signer (storage was fooled). */
static void plant(const char *num, const vp_id_t *claim, const pk_node_t *signer)
{
	uint8_t key[ST_VIPR_KEY_LEN], val[ST_VIPR_VALUE_MAX_LEN], sig[RL_MAX_SIG_LEN];
	st_vipr_key_t k = { *claim, 9 };
	st_vipr_value_t v = { *claim, 9, ST_VIPR_PVP_WITH_CALLER_ID, NULL, 0 };
	vp_id_t res = vp_id_from_name(num, strlen(num));
	rl_stored_data_t sd;
	size_t vlen;
	int at = responsible(&res);
	st_vipr_key_encode(&k, key);
	assert_int_equal(st_vipr_value_encode(&v, val, sizeof(val), &vlen), 0);
	memset(&sd, 0, sizeof(sd));
	sd.storage_time = vp_time_wall_ms();
	sd.lifetime = 3600;
	sd.model = RL_MODEL_DICTIONARY;
	sd.key = (rl_bytes_t){ key, sizeof(key) };
	sd.exists = true;
	sd.value = (rl_bytes_t){ val, (uint32_t)vlen };
	assert_int_equal(rl_stored_data_sign(signer->key, res.b, VP_ID_LEN, VK, &sd, &signer->signer, sig, sizeof(sig)),
	                 0);
	for (int r = 0; r < 3; r++)
		peer_put(&fk.p[(at + r) % NPEERS], &res, &sd);
}

/* ---- tests --------------------------------------------------------------------------------- */

/* A published number is found by a lookup of its 3 copies, with the claimant and contact as signed. */
static void test_publish_then_lookup(void **state)
{
	dhr_t *d = mk(1, 100, 5000, 16);
	vsrv_dht_t dht;
	char num[VP_E164_BUFLEN];
	(void)state;
	dhr_iface(d, &dht);
	publish(&dht, 0, 20, VAP_OP_ADD);
	wait_done(20);
	assert_int_equal(w.failed, 0);
	number(num, 5);
	fetch(&dht, num);
	assert_int_equal(w.last, 0);
	assert_int_equal(w.n, 1);
	assert_true(vp_id_eq(&w.regs[0].node, &id_a));
	assert_true(vp_id_eq(&w.regs[0].contact, &id_a));
	assert_int_equal(w.regs[0].vservice_id, 7);
	assert_string_equal(w.incident, "");
	/* Withdraw: a signed deletion; the next lookup finds nobody. */
	publish(&dht, 5, 1, VAP_OP_WITHDRAW);
	wait_done(22);
	fetch(&dht, num);
	assert_int_equal(w.last, 0);
	assert_int_equal(w.n, 0);
	dhr_free(d, 1000);
}

/* The sweep order (control/node/dht_reload.c): the Resource-ID rotated left by one byte. */
static int sweep_order(const vp_id_t *a, const vp_id_t *b)
{
	int c = memcmp(a->b + 1, b->b + 1, VP_ID_LEN - 1);
	return c ? c : (int)a->b[0] - (int)b->b[0];
}

/*
 * A large publish goes out as 256 interleaved sweeps: every 1/256 of the ring in Resource-ID order, and
 * consecutive Stores at different peers.  A plain Resource-ID order would pass the first check and fail the
 * second (each peer's whole share in one run: ~5 peer changes in 300 Stores).
 */
static void test_stores_ordered_by_resource(void **state)
{
	dhr_t *d = mk(1, 1000, 2000, 4);
	vsrv_dht_t dht;
	size_t descents = 0, same_peer = 0;
	(void)state;
	dhr_iface(d, &dht);
	publish(&dht, 0, 300, VAP_OP_ADD);
	wait_done(300);
	assert_int_equal(w.failed, 0);
	assert_int_equal(fk.n_order, 300);
	for (size_t i = 1; i < fk.n_order; i++) {
		if (sweep_order(&fk.order[i], &fk.order[i - 1]) < 0)
			descents++;
		if (responsible(&fk.order[i]) == responsible(&fk.order[i - 1]))
			same_peer++;
	}
	/* Submission order is random (~150 descents); the sweep wraps at most twice (the first stores may
	 * leave before the rest are queued).  Within a stripe (same first byte) the order is the Resource-ID's. */
	assert_true(descents <= 2);
	/* 6 peers holding 16-22 % of the ring each: ~17 % of consecutive pairs share a peer when spread,
	 * ~98 % in plain Resource-ID order. */
	print_message("consecutive Stores at the same peer: %zu of 299\n", same_peer);
	assert_true(same_peer < 90);
	dhr_free(d, 1000);
}

/*
 * Each storing peer polices the signer (50/s after a burst of 2,000 in viprd; here 400/s after 40): 600
 * Stores at 1,000/s are within every peer's limit when spread (a peer of 22 % of the ring receives ~220/s
 * and never more than 1,000/s x 8-Store bursts), so the pacer never has to slow down.  Sent as one run per
 * peer (100-130 Stores at 1,000/s against 40 + 400/s) the first peer refuses and the pacer halves its rate
 * (plain Resource-ID order: 2 refused, rate cut twice, every later peer served at half speed).
 */
static void test_stores_spread_under_peer_policing(void **state)
{
	dhr_t *d = mk(1, 1000, 1000, 8);
	vsrv_dht_t dht;
	dhr_stats_t st;
	(void)state;
	pthread_mutex_lock(&fk.mu);
	fk.pol_rate = 400;
	fk.pol_burst = 40;
	pthread_mutex_unlock(&fk.mu);
	dhr_iface(d, &dht);
	publish(&dht, 0, 600, VAP_OP_ADD);
	wait_done(600);
	dhr_get_stats(d, &st);
	print_message("600 Stores under per-peer policing: %zu rate-limited answers, %llu rate cuts\n", fk.pol_refused,
	              (unsigned long long)st.backoffs);
	assert_int_equal(w.failed, 0);
	assert_int_equal(st.stores_ok, 600);
	assert_int_equal(fk.pol_refused, 0);
	assert_int_equal(st.backoffs, 0);
	dhr_free(d, 1000);
}

/* The pacer holds the rate: 60 stores at 200/s take about 0.3 s (burst = the in-flight window of 4). */
static void test_store_rate(void **state)
{
	dhr_t *d = mk(1, 1000, 200, 4);
	vsrv_dht_t dht;
	uint64_t t0 = vp_time_mono_ns(), el;
	(void)state;
	dhr_iface(d, &dht);
	publish(&dht, 0, 60, VAP_OP_ADD);
	wait_done(60);
	el = (vp_time_mono_ns() - t0) / 1000000;
	assert_true(el >= 250); /* (60 - 4) / 200 s = 280 ms; unpaced it is a few ms */
	dhr_free(d, 1000);
}

/* Quota per Node-ID: with Q = 5 one Node-ID claims 5 numbers; the 6th is refused (and alarmed); a refresh is
 * not a new number; two Node-IDs claim up to 10. */
static void test_quota_per_node_id(void **state)
{
	dhr_t *d = mk(1, 5, 5000, 8);
	vsrv_dht_t dht;
	vsrv_reg_t r = reg_of(&id_a);
	char num[VP_E164_BUFLEN];
	dhr_stats_t st;
	(void)state;
	dhr_iface(d, &dht);
	publish(&dht, 0, 5, VAP_OP_ADD);
	number(num, 5);
	assert_int_equal(dht.store(dht.ctx, num, VAP_OP_ADD, &r, on_store, NULL), VP_EQUOTA);
	publish(&dht, 0, 5, VAP_OP_ADD); /* refresh */
	wait_done(10);
	assert_int_equal(w.failed, 0);
	publish(&dht, 2, 1, VAP_OP_WITHDRAW);
	wait_done(11);
	assert_int_equal(dht.store(dht.ctx, num, VAP_OP_ADD, &r, on_store, NULL), 0);
	wait_done(12);
	dhr_get_stats(d, &st);
	assert_int_equal(st.numbers, 5);
	assert_int_equal(st.over_quota, 1);
	dhr_free(d, 1000);

	d = mk(2, 5, 5000, 8);
	dhr_iface(d, &dht);
	{
		int refused = 0;
		for (unsigned i = 100; i < 140; i++) {
			number(num, i);
			if (dht.store(dht.ctx, num, VAP_OP_ADD, &r, on_store, NULL) == VP_EQUOTA)
				refused++;
		}
		dhr_get_stats(d, &st);
		assert_int_equal(st.numbers, 10); /* 5 per Node-ID, not 5 in all */
		assert_int_equal(refused, 30);
	}
	wait_done(22);
	dhr_free(d, 1000);
}

/* The two Node-IDs each sign their own numbers: the claimant found is the signer the number was given to. */
static void test_signer_is_claimant(void **state)
{
	dhr_t *d = mk(2, 100, 5000, 8);
	vsrv_dht_t dht;
	char num[VP_E164_BUFLEN];
	bool seen[2] = { false, false };
	(void)state;
	dhr_iface(d, &dht);
	publish(&dht, 0, 10, VAP_OP_ADD);
	wait_done(10);
	assert_int_equal(w.failed, 0);
	for (unsigned i = 0; i < 10; i++) {
		unsigned s;
		number(num, i);
		s = dhr_signer_of(d, num);
		fetch(&dht, num);
		assert_int_equal(w.n, 1);
		assert_true(vp_id_eq(&w.regs[0].node, s ? &id_a2 : &id_a));
		seen[s] = true;
	}
	assert_true(seen[0] && seen[1]);
	dhr_free(d, 1000);
}

/*
 * n Node-IDs of quota Q claim n x Q numbers whatever their hashes: 6 numbers that hash to signer 0 and 4 to
 * signer 1 (Q = 5) are all accepted, 5 on each (hashing alone refuses the 6th of signer 0 while signer 1 has
 * room: the refusals a 20,000-number demo met on 2 Node-IDs of 10,000); the 11th is refused.  The number that
 * moved keeps its signer: its refresh does not add a second claimant and its withdrawal removes it.
 */
static void test_quota_fills_every_node_id(void **state)
{
	dhr_t *d = mk(2, 5, 5000, 8);
	vsrv_dht_t dht;
	vsrv_reg_t r = reg_of(&id_a);
	char nums[10][VP_E164_BUFLEN], num[VP_E164_BUFLEN], moved[VP_E164_BUFLEN] = "";
	unsigned want[2] = { 6, 4 }, per[2] = { 0, 0 }, k = 0;
	(void)state;
	dhr_iface(d, &dht);
	for (unsigned i = 0; k < 10 && i < 1000; i++) {
		unsigned h;
		number(num, i);
		h = dhr_signer_of(d, num); /* not claimed yet: the hashed signer */
		if (want[h]) {
			want[h]--;
			snprintf(nums[k++], sizeof(nums[0]), "%s", num);
		}
	}
	assert_int_equal(k, 10);
	for (k = 0; k < 10; k++)
		assert_int_equal(dht.store(dht.ctx, nums[k], VAP_OP_ADD, &r, on_store, NULL), 0);
	wait_done(10);
	assert_int_equal(w.failed, 0);
	number(num, 5000);
	assert_int_equal(dht.store(dht.ctx, num, VAP_OP_ADD, &r, on_store, NULL), VP_EQUOTA);
	for (k = 0; k < 10; k++) {
		unsigned s = dhr_signer_of(d, nums[k]);
		per[s]++;
		fetch(&dht, nums[k]);
		assert_int_equal(w.n, 1);
		assert_true(vp_id_eq(&w.regs[0].node, s ? &id_a2 : &id_a));
		if (s == 1 && !moved[0]) {
			/* a number whose hash says signer 0 but that signer 1 claims */
			vp_id_t res = vp_id_from_name(nums[k], strlen(nums[k]));
			uint64_t h;
			memcpy(&h, res.b, sizeof(h));
			if (h % 2 == 0)
				snprintf(moved, sizeof(moved), "%s", nums[k]);
		}
	}
	assert_int_equal(per[0], 5);
	assert_int_equal(per[1], 5);
	assert_string_not_equal(moved, "");
	for (k = 0; k < 10; k++) /* refresh */
		assert_int_equal(dht.store(dht.ctx, nums[k], VAP_OP_ADD, &r, on_store, NULL), 0);
	wait_done(30); /* 10 stores, 10 fetches, 10 refreshes */
	assert_int_equal(w.failed, 0);
	fetch(&dht, moved);
	assert_int_equal(w.n, 1);
	assert_true(vp_id_eq(&w.regs[0].node, &id_a2));
	assert_int_equal(dht.store(dht.ctx, moved, VAP_OP_WITHDRAW, &r, on_store, NULL), 0);
	wait_done(32);
	assert_int_equal(w.failed, 0);
	fetch(&dht, moved);
	assert_int_equal(w.n, 0);
	dhr_free(d, 1000);
}

/* A responsible peer that drops a number's entries is outvoted by the 2 replicas, and an incident is reported. */
static void test_rogue_drop_outvoted(void **state)
{
	dhr_t *d = mk(1, 100, 5000, 8);
	vsrv_dht_t dht;
	char num[VP_E164_BUFLEN];
	vp_id_t res;
	(void)state;
	dhr_iface(d, &dht);
	publish(&dht, 0, 1, VAP_OP_ADD);
	wait_done(1);
	number(num, 0);
	res = vp_id_from_name(num, strlen(num));
	fk.p[responsible(&res)].mode = ROGUE_DROP;
	fetch(&dht, num);
	assert_int_equal(w.last, 0);
	assert_int_equal(w.n, 1);
	assert_true(vp_id_eq(&w.regs[0].node, &id_a));
	assert_true(strlen(w.incident) > 0);
	/* The incident blames the outvoted copy's peer (viprd counts it for the peer_incidents alarm), not a replica. */
	{
		char hex[VP_ID_HEX_LEN + 1], want[VP_ID_HEX_LEN + 8];
		snprintf(want, sizeof(want), "blame=%s ", vp_id_to_hex(&fk.p[responsible(&res)].id, hex));
		assert_non_null(strstr(w.incident, want));
		assert_int_equal(strstr(w.incident, "blame=") - w.incident, 0);
		assert_null(strstr(w.incident + 1, "blame="));
	}
	dhr_free(d, 1000);
}

/* Peer \p i + 1 (the Resource-ID addressed to its successor: the replica rule). */
static vp_id_t after(int i)
{
	return vp_id_add_pow2(&fk.p[i % NPEERS].id, 0);
}

/* Publish number 0 through \p d, then look it up: its Resource-ID in *res; returns its responsible peer. */
static int publish_one_and_look_it_up(dhr_t *d, vp_id_t *res)
{
	vsrv_dht_t dht;
	char num[VP_E164_BUFLEN];
	dhr_iface(d, &dht);
	publish(&dht, 0, 1, VAP_OP_ADD);
	wait_done(1);
	number(num, 0);
	*res = vp_id_from_name(num, strlen(num));
	fetch(&dht, num);
	return responsible(res);
}

/* The vnode guesses the holders right: the 3 copies are asked at once (the Resource-ID, R + 1, R' + 1) and
 * all three answers kept. */
static void test_lookup_asks_copies_at_once(void **state)
{
	dhr_t *d = mk(1, 100, 5000, 8);
	dhr_stats_t st;
	vp_id_t res, a1, a2;
	int at;
	(void)state;
	at = publish_one_and_look_it_up(d, &res);
	assert_int_equal(w.n, 1);
	assert_string_equal(w.incident, "");
	dhr_get_stats(d, &st);
	assert_int_equal(st.fetches_parallel, 1);
	assert_int_equal(st.fetch_guess_missed, 0);
	assert_int_equal(fk.n_fetch, 3);
	a1 = after(at);
	a2 = after(at + 1);
	assert_true(vp_id_eq(&fk.fetch_dest[0], &res));
	assert_true(vp_id_eq(&fk.fetch_dest[1], &a1));
	assert_true(vp_id_eq(&fk.fetch_dest[2], &a2));
	dhr_free(d, 1000);
}

/*
 * A wrong guess (the two peers after the holders): copy 1 asked at R + 2's successor is answered by a peer
 * that is not R's successor.  Kept, the vote would see copy 2 empty (R + 3 holds nothing) and report an
 * incident against an honest overlay; the lookup drops copies 1 and 2 and asks them again one after the
 * other, at R + 1 and at R + 1's successor + 1.
 */
static void test_lookup_wrong_guess_asks_again(void **state)
{
	dhr_t *d = mk(1, 100, 5000, 8);
	dhr_stats_t st;
	vp_id_t res, a1, a2;
	int at;
	(void)state;
	at = publish_one_and_look_it_up(d, &res);
	assert_int_equal(w.n, 1);
	assert_string_equal(w.incident, "");
	dhr_get_stats(d, &st);
	assert_int_equal(st.fetches_parallel, 1);
	assert_int_equal(st.fetch_guess_missed, 1);
	assert_int_equal(fk.n_fetch, 5);
	a1 = after(at);
	a2 = after(at + 1);
	assert_true(vp_id_eq(&fk.fetch_dest[3], &a1));
	assert_true(vp_id_eq(&fk.fetch_dest[4], &a2));
	dhr_free(d, 1000);
}

/* No guess (a vnode that knows too little of the ring): one copy after the other, 3 Fetches. */
static void test_lookup_without_guess_one_by_one(void **state)
{
	dhr_t *d = mk(1, 100, 5000, 8);
	dhr_stats_t st;
	vp_id_t res;
	(void)state;
	publish_one_and_look_it_up(d, &res);
	assert_int_equal(w.n, 1);
	assert_string_equal(w.incident, "");
	dhr_get_stats(d, &st);
	assert_int_equal(st.fetches_parallel, 0);
	assert_int_equal(fk.n_fetch, 3);
	dhr_free(d, 1000);
}

/* A replica that alters an entry: the fetcher's signature check rejects it, the vote keeps the true one. */
static void test_rogue_alter_rejected(void **state)
{
	dhr_t *d = mk(1, 100, 5000, 8);
	vsrv_dht_t dht;
	char num[VP_E164_BUFLEN];
	dhr_stats_t st;
	vp_id_t res;
	(void)state;
	dhr_iface(d, &dht);
	publish(&dht, 0, 1, VAP_OP_ADD);
	wait_done(1);
	number(num, 0);
	res = vp_id_from_name(num, strlen(num));
	fk.p[(responsible(&res) + 1) % NPEERS].mode = ROGUE_ALTER;
	fetch(&dht, num);
	assert_int_equal(w.n, 1);
	assert_true(vp_id_eq(&w.regs[0].contact, &id_a));
	assert_non_null(strstr(w.incident, "failed verification"));
	{
		char hex[VP_ID_HEX_LEN + 1], want[VP_ID_HEX_LEN + 8];
		snprintf(want, sizeof(want), "blame=%s ", vp_id_to_hex(&fk.p[(responsible(&res) + 1) % NPEERS].id, hex));
		assert_non_null(strstr(w.incident, want));
	}
	dhr_get_stats(d, &st);
	assert_int_equal(st.entries_rejected, 1);
	dhr_free(d, 1000);
}

/* An entry claiming A's Node-ID but signed by the thief, held by all 3 copies (the storing peers were fooled or
 * colluding), is caught by the fetcher's claimant check: the vote never sees it. */
static void test_forged_entry_caught(void **state)
{
	dhr_t *d = mk(1, 100, 5000, 8);
	vsrv_dht_t dht;
	char num[VP_E164_BUFLEN];
	(void)state;
	dhr_iface(d, &dht);
	number(num, 42);
	plant(num, &id_a, &nd_t);
	fetch(&dht, num);
	assert_int_equal(w.last, 0);
	assert_int_equal(w.n, 0);
	assert_non_null(strstr(w.incident, "failed verification"));
	assert_null(strstr(w.incident, "blame=")); /* every copy held it: the signer forged, no storing peer to blame */
	/* The thief's entry under its own Node-ID verifies: nothing in the DHT is trusted, PVP decides. */
	plant(num, &id_thief, &nd_t);
	fetch(&dht, num);
	assert_int_equal(w.n, 1);
	assert_true(vp_id_eq(&w.regs[0].node, &id_thief));
	dhr_free(d, 1000);
}

/* A Store the overlay did not answer (timeout) is sent again, up to 3 times in all; then it fails. */
static void test_store_retried_after_timeout(void **state)
{
	dhr_t *d = mk(1, 100, 5000, 4);
	vsrv_dht_t dht;
	dhr_stats_t st;
	char num[VP_E164_BUFLEN];
	(void)state;
	dhr_iface(d, &dht);
	pthread_mutex_lock(&fk.mu);
	fk.timeouts_left = 2; /* the first two attempts of the one number get no answer */
	pthread_mutex_unlock(&fk.mu);
	publish(&dht, 0, 1, VAP_OP_ADD);
	wait_done(1);
	assert_int_equal(w.failed, 0);
	assert_int_equal(fk.store_reqs, 3);
	number(num, 0);
	fetch(&dht, num);
	assert_int_equal(w.n, 1);
	/* Three attempts without an answer: the store fails (with the overlay's error), no fourth. */
	pthread_mutex_lock(&fk.mu);
	fk.timeouts_left = 3;
	fk.store_reqs = 0;
	pthread_mutex_unlock(&fk.mu);
	publish(&dht, 1, 1, VAP_OP_ADD);
	wait_done(3);
	assert_int_equal(w.failed, 1);
	assert_int_equal(w.last, VP_ETIMEOUT);
	assert_int_equal(fk.store_reqs, 3);
	dhr_get_stats(d, &st);
	assert_int_equal(st.store_retries, 4);
	assert_int_equal(st.stores_failed, 1);
	dhr_free(d, 1000);
}

/* A refresh acknowledged more than a lifetime after the number's last Store is counted late (its entry had
 * expired in between); one within the lifetime is not. */
static void test_refresh_later_than_lifetime_is_counted(void **state)
{
	dhr_t *d;
	vsrv_dht_t dht;
	dhr_stats_t st;
	(void)state;
	mk_lifetime = 1;
	d = mk(1, 100, 5000, 4);
	dhr_iface(d, &dht);
	publish(&dht, 0, 2, VAP_OP_ADD);
	wait_done(2);
	publish(&dht, 0, 1, VAP_OP_ADD); /* at once: within the lifetime */
	wait_done(3);
	dhr_get_stats(d, &st);
	assert_int_equal(st.refresh_late, 0);
	usleep(2100000);
	publish(&dht, 1, 1, VAP_OP_ADD); /* > 2 s after its Store, lifetime 1 s */
	wait_done(4);
	dhr_get_stats(d, &st);
	assert_int_equal(w.failed, 0);
	assert_int_equal(st.refresh_late, 1);
	dhr_free(d, 1000);
}

/* The pacer's projection: 100 Stores queued at 10/s need ~10 s, longer than a 2 s lifetime (sweep_behind);
 * a publish that fits (the rest of the queue at 5,000/s) shows no backlog beyond the lifetime. */
static void test_sweep_behind_lifetime_is_projected(void **state)
{
	dhr_t *d;
	vsrv_dht_t dht;
	dhr_stats_t st;
	(void)state;
	mk_lifetime = 2;
	d = mk(1, 1000, 10, 4);
	dhr_iface(d, &dht);
	publish(&dht, 0, 100, VAP_OP_ADD);
	usleep(300000);
	dhr_get_stats(d, &st);
	print_message("100 queued at 10/s: backlog %.1f s (lifetime 2 s)\n", st.backlog_s);
	assert_true(st.backlog_s > 2.0);
	dhr_free(d, 200); /* the rest complete with VP_ECLOSED */
	d = mk(1, 1000, 5000, 4);
	dhr_iface(d, &dht);
	publish(&dht, 200, 100, VAP_OP_ADD);
	usleep(10000);
	dhr_get_stats(d, &st);
	assert_true(st.backlog_s < 2.0);
	dhr_free(d, 1000);
}

/* Error_Not_Found for a Store (a relay whose ring view sends it back where it came from, for a moment) is a
 * routing answer: the Store is sent again, within its 3 attempts, not failed as a refusal (a 1,000,000-number
 * publish failed on 2 of them); a third Not_Found in a row fails it. */
static void test_store_retried_after_not_found(void **state)
{
	dhr_t *d = mk(1, 100, 5000, 4);
	vsrv_dht_t dht;
	(void)state;
	dhr_iface(d, &dht);
	pthread_mutex_lock(&fk.mu);
	fk.not_found_left = 2;
	pthread_mutex_unlock(&fk.mu);
	publish(&dht, 0, 1, VAP_OP_ADD);
	wait_done(1);
	assert_int_equal(w.failed, 0);
	assert_int_equal(fk.store_reqs, 3);
	pthread_mutex_lock(&fk.mu);
	fk.not_found_left = 3;
	fk.store_reqs = 0;
	pthread_mutex_unlock(&fk.mu);
	publish(&dht, 1, 1, VAP_OP_ADD);
	wait_done(2);
	assert_int_equal(w.failed, 1);
	assert_int_equal(fk.store_reqs, 3);
	dhr_free(d, 1000);
}

/*
 * Every storing peer polices our rate (20 at once, then 100/s) and answers "rate-limited" to a pacer set at
 * 5,000/s: each refused Store waits with its stripe (1 s, then 2 s ...) and is sent again, so all 200
 * numbers are stored; sent again at once, about 180 would fail after their 50 rate-limited answers.
 */
static void test_rate_limited_stores_slow_down(void **state)
{
	dhr_t *d = mk(1, 1000, 5000, 8);
	vsrv_dht_t dht;
	dhr_stats_t st;
	(void)state;
	dhr_iface(d, &dht);
	pthread_mutex_lock(&fk.mu);
	fk.pol_rate = 100;
	fk.pol_burst = 20;
	pthread_mutex_unlock(&fk.mu);
	publish(&dht, 0, 200, VAP_OP_ADD);
	wait_done(200);
	assert_int_equal(w.failed, 0);
	dhr_get_stats(d, &st);
	assert_true(st.rate_limited > 0);
	assert_true(st.holds > 0);
	assert_int_equal(st.stores_ok, 200);
	assert_true(fk.pol_refused > 0);
	dhr_free(d, 1000);
}

/*
 * One storing peer of six polices hard (10 at once, then 50/s); the others take everything.  Its refusals
 * hold only its stripes: the pacer's rate is never cut (the old rule halved it once per window for every
 * peer, 4 times in this test) and the other peers' Stores are all acknowledged before the strict peer's
 * last one.
 */
static void test_one_policing_peer_holds_only_its_stripes(void **state)
{
	dhr_t *d = mk(1, 1000, 1000, 8);
	vsrv_dht_t dht;
	dhr_stats_t st;
	int strict = 2;
	(void)state;
	dhr_iface(d, &dht);
	pthread_mutex_lock(&fk.mu);
	fk.pol_rate = 50;
	fk.pol_burst = 10;
	fk.pol_only = strict + 1;
	pthread_mutex_unlock(&fk.mu);
	publish(&dht, 0, 300, VAP_OP_ADD);
	wait_done(300);
	dhr_get_stats(d, &st);
	print_message("one strict peer: %zu refused, %llu stripe holds, %llu rate cuts; last other store %zu of %zu\n",
	              fk.pol_refused, (unsigned long long)st.holds, (unsigned long long)st.backoffs,
	              fk.last_other, fk.n_order);
	assert_int_equal(w.failed, 0);
	assert_int_equal(st.stores_ok, 300);
	assert_true(fk.pol_refused > 0);
	assert_int_equal(st.backoffs, 0);
	/* the strict peer's stores were the last acknowledged: the others did not wait for it */
	assert_true(fk.last_other < fk.n_order);
	for (size_t i = fk.last_other + 1; i < fk.n_order; i++)
		assert_int_equal(responsible(&fk.order[i]), strict);
	dhr_free(d, 1000);
}

/*
 * An overloaded overlay: one server thread does 4 ms of work per Store (250/s), and a Store that waited
 * more than 100 ms is answered by the requester's timer (VP_ETIMEOUT) while its work is still done. A pacer
 * that keeps 64 Stores in flight queues 256 ms of work: most of each window times out, the retries add to
 * the queue and Stores fail after their 3 attempts (congestion collapse; 140-250 of 300 failed before the
 * fix). Each timeout of a Store sent since the last cut halves the window (and the rate); successes open
 * it again by one per window, so the queue stays under the timeout and all 300 are stored.
 */
static void test_overloaded_overlay_backs_off(void **state)
{
	dhr_t *d = mk(1, 1000, 5000, 64);
	vsrv_dht_t dht;
	dhr_stats_t st;
	pthread_t th;
	(void)state;
	fk.slow_us = 4000;
	fk.late_ms = 100;
	assert_int_equal(pthread_create(&th, NULL, slow_server, NULL), 0);
	dhr_iface(d, &dht);
	publish(&dht, 0, 300, VAP_OP_ADD);
	for (int i = 0; i < 3000; i++) { /* 30 s at most: 300 Stores need 1.2 s of the server's work */
		pthread_mutex_lock(&w.mu);
		int done = w.done;
		pthread_mutex_unlock(&w.mu);
		if (done >= 300)
			break;
		usleep(10000);
	}
	dhr_get_stats(d, &st);
	print_message("overloaded overlay: %d of 300 done, %d failed, %zu answered late, %llu retries\n", w.done,
	              w.failed, fk.late, (unsigned long long)st.store_retries);
	dhr_free(d, 1000);
	pthread_mutex_lock(&fk.mu);
	fk.q_stop = true;
	pthread_cond_signal(&fk.q_cv);
	pthread_mutex_unlock(&fk.mu);
	pthread_join(th, NULL);
	assert_int_equal(w.done, 300);
	assert_int_equal(w.failed, 0);
	assert_int_equal(st.stores_ok, 300);
	assert_true(fk.late > 0); /* the overload was real: the first window did time out */
}

static int guess_none = GUESS_NONE, guess_right = GUESS_RIGHT, guess_wrong = GUESS_WRONG;

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_publish_then_lookup, setup),
		cmocka_unit_test_setup(test_store_retried_after_timeout, setup),
		cmocka_unit_test_setup(test_store_retried_after_not_found, setup),
		cmocka_unit_test_setup(test_refresh_later_than_lifetime_is_counted, setup),
		cmocka_unit_test_setup(test_sweep_behind_lifetime_is_projected, setup),
		cmocka_unit_test_setup(test_rate_limited_stores_slow_down, setup),
		cmocka_unit_test_setup(test_one_policing_peer_holds_only_its_stripes, setup),
		cmocka_unit_test_setup(test_overloaded_overlay_backs_off, setup),
		cmocka_unit_test_setup(test_stores_ordered_by_resource, setup),
		cmocka_unit_test_setup(test_stores_spread_under_peer_policing, setup),
		cmocka_unit_test_setup(test_store_rate, setup),
		cmocka_unit_test_setup(test_quota_per_node_id, setup),
		cmocka_unit_test_setup(test_signer_is_claimant, setup),
		cmocka_unit_test_setup(test_quota_fills_every_node_id, setup),
		{ "lookup_asks_copies_at_once", test_lookup_asks_copies_at_once, setup, NULL, &guess_right },
		{ "lookup_wrong_guess_asks_again", test_lookup_wrong_guess_asks_again, setup, NULL, &guess_wrong },
		{ "lookup_without_guess_one_by_one", test_lookup_without_guess_one_by_one, setup, NULL, &guess_none },
		/* every rogue case with the copies asked at once, one after the other, and after a wrong guess */
		{ "rogue_drop_outvoted", test_rogue_drop_outvoted, setup, NULL, &guess_right },
		{ "rogue_drop_outvoted/one_by_one", test_rogue_drop_outvoted, setup, NULL, &guess_none },
		{ "rogue_drop_outvoted/wrong_guess", test_rogue_drop_outvoted, setup, NULL, &guess_wrong },
		{ "rogue_alter_rejected", test_rogue_alter_rejected, setup, NULL, &guess_right },
		{ "rogue_alter_rejected/one_by_one", test_rogue_alter_rejected, setup, NULL, &guess_none },
		{ "rogue_alter_rejected/wrong_guess", test_rogue_alter_rejected, setup, NULL, &guess_wrong },
		{ "forged_entry_caught", test_forged_entry_caught, setup, NULL, &guess_right },
		{ "forged_entry_caught/one_by_one", test_forged_entry_caught, setup, NULL, &guess_none },
		{ "forged_entry_caught/wrong_guess", test_forged_entry_caught, setup, NULL, &guess_wrong },
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
