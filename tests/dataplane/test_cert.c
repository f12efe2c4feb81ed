/*
 * dataplane/cert: the trust store, the certificate cache, and the
 * destination's checks (message signer = originator, tampering, replay,
 * StoredData claimant and staleness, forged Join/Leave).  Each refusal case
 * is built by an attacker that would succeed if the check were missing: the
 * same bytes pass rl_msg_verify_embedded(), the check this module replaces.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "common/clock.h"
#include "dataplane/cert.h"
#include "dataplane/reload.h"
#include "pki_testkit.h"

#define OVERLAY "vipr.example"

static pk_ca_t ca, other_ca;
static pk_node_t node_a, node_b, node_rsa; /* a: ids 0xA1, 0xA2; b: 0xB1; rsa: 0xC1 */
static uint64_t clock_now;
static vp_clock_t manual = { vp_clock_manual_now, &clock_now };

static const pk_opts_t good = { OVERLAY, -60, 3600, 0, 0, 0 };

static int setup(void **state)
{
	vp_id_t a[2] = { pk_id(0xA1), pk_id(0xA2) }, b = pk_id(0xB1), c = pk_id(0xC1);
	pk_opts_t rsa = good;
	(void)state;
	rsa.rsa = 1;
	if (pk_ca_new(&ca, "overlay root") || pk_ca_new(&other_ca, "another root"))
		return -1;
	if (pk_node_new(&node_a, &ca, a, 2, &good) || pk_node_new(&node_b, &ca, &b, 1, &good) ||
	    pk_node_new(&node_rsa, &ca, &c, 1, &rsa))
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	pk_node_free(&node_a);
	pk_node_free(&node_b);
	pk_node_free(&node_rsa);
	pk_ca_free(&ca);
	pk_ca_free(&other_ca);
	return 0;
}

static dp_cert_store_t *store_new(void)
{
	dp_cert_store_cfg_t cfg = { OVERLAY, 64, &manual };
	dp_cert_store_t *s = NULL;
	clock_now = vp_time_wall_ms();
	assert_int_equal(dp_cert_store_new(&cfg, &s), 0);
	assert_int_equal(dp_cert_store_add_root(s, ca.cert), 0);
	return s;
}

/* Verify a fresh certificate; returns the reason. */
static dp_cert_reason_t verify_node(dp_cert_store_t *s, const pk_node_t *nd)
{
	const dp_cert_ident_t *id;
	dp_cert_reason_t why = DP_CERT_OK;
	int e = dp_cert_verify_der(s, nd->der, nd->der_len, &id, &why);
	assert_true((e == 0) == (why == DP_CERT_OK));
	assert_true((e == 0) == (id != NULL));
	return why;
}

static void good_certificate_gives_its_node_ids(void **state)
{
	dp_cert_store_t *s = store_new();
	const dp_cert_ident_t *id;
	dp_cert_reason_t why;
	vp_id_t a1 = pk_id(0xA1), a2 = pk_id(0xA2), b1 = pk_id(0xB1);
	(void)state;

	assert_int_equal(dp_cert_verify_x509(s, node_a.cert, NULL, &id, &why), 0);
	assert_int_equal(id->n_node_ids, 2);
	assert_true(dp_cert_ident_has(id, &a1));
	assert_true(dp_cert_ident_has(id, &a2));
	assert_false(dp_cert_ident_has(id, &b1));
	assert_memory_equal(id->hash, node_a.hash, DP_CERT_HASH_LEN);
	assert_non_null(id->pub);
	assert_true(id->not_after_ms > clock_now + 3500 * 1000ull && id->not_after_ms < clock_now + 3700 * 1000ull);
	/* the same certificate by DER: one cache entry */
	assert_ptr_equal(dp_cert_lookup(s, node_a.hash), id);
	assert_int_equal(verify_node(s, &node_rsa), DP_CERT_OK);
	dp_cert_store_free(s);
}

static void uri_forms_and_other_overlays(void **state)
{
	dp_cert_store_t *s = store_new();
	pk_node_t slashless, foreign;
	pk_opts_t o = good;
	vp_id_t id = pk_id(0x33), got[4];
	(void)state;

	o.no_slash = 1;
	assert_int_equal(pk_node_new(&slashless, &ca, &id, 1, &o), 0);
	assert_int_equal(verify_node(s, &slashless), DP_CERT_OK);
	o.no_slash = 0;
	o.overlay = "other.example"; /* right CA, wrong overlay: no Node-ID here */
	assert_int_equal(pk_node_new(&foreign, &ca, &id, 1, &o), 0);
	assert_int_equal(dp_cert_node_ids(foreign.cert, "other.example", got, 4), 1);
	assert_int_equal(dp_cert_node_ids(foreign.cert, OVERLAY, got, 4), 0);
	assert_int_equal(verify_node(s, &foreign), DP_CERT_NO_NODE_ID);
	/* case-insensitive host */
	assert_int_equal(dp_cert_node_ids(slashless.cert, "VIPR.Example", got, 4), 1);
	assert_memory_equal(got[0].b, id.b, 16);
	assert_int_equal(dp_cert_node_ids(node_a.cert, OVERLAY, got, 1), VP_ESPACE);
	pk_node_free(&slashless);
	pk_node_free(&foreign);
	dp_cert_store_free(s);
}

static void certificate_from_another_ca_is_untrusted(void **state)
{
	dp_cert_store_t *s = store_new();
	pk_node_t rogue;
	vp_id_t id = pk_id(0xA1); /* claims a's Node-ID */
	(void)state;
	assert_int_equal(pk_node_new(&rogue, &other_ca, &id, 1, &good), 0);
	assert_int_equal(verify_node(s, &rogue), DP_CERT_UNTRUSTED);
	assert_null(dp_cert_lookup(s, rogue.hash));
	pk_node_free(&rogue);
	dp_cert_store_free(s);
}

static void expired_and_not_yet_valid_are_refused(void **state)
{
	dp_cert_store_t *s = store_new();
	pk_node_t old, young;
	pk_opts_t o = good;
	vp_id_t id = pk_id(0x44);
	(void)state;
	o.not_before_s = -7200;
	o.not_after_s = -3600;
	assert_int_equal(pk_node_new(&old, &ca, &id, 1, &o), 0);
	o.not_before_s = 3600;
	o.not_after_s = 7200;
	assert_int_equal(pk_node_new(&young, &ca, &id, 1, &o), 0);
	assert_int_equal(verify_node(s, &old), DP_CERT_EXPIRED);
	assert_int_equal(verify_node(s, &young), DP_CERT_NOT_YET_VALID);
	/* the store's clock decides: an hour and a half later `young` is valid */
	clock_now += 5400 * 1000ull;
	assert_int_equal(verify_node(s, &young), DP_CERT_OK);
	pk_node_free(&old);
	pk_node_free(&young);
	dp_cert_store_free(s);
}

static void cached_certificate_expires_with_its_not_after(void **state)
{
	dp_cert_store_t *s = store_new();
	(void)state;
	assert_int_equal(verify_node(s, &node_b), DP_CERT_OK);
	assert_non_null(dp_cert_lookup(s, node_b.hash));
	clock_now += 3700 * 1000ull; /* past notAfter (+3600 s) */
	assert_null(dp_cert_lookup(s, node_b.hash));
	assert_int_equal(verify_node(s, &node_b), DP_CERT_EXPIRED);
	dp_cert_store_free(s);
}

static void bad_node_list_revokes_even_cached(void **state)
{
	dp_cert_store_t *s = store_new();
	vp_id_t bad[2] = { pk_id(0x01), pk_id(0xA2) }; /* a's second Node-ID */
	(void)state;
	assert_int_equal(verify_node(s, &node_a), DP_CERT_OK);
	assert_int_equal(dp_cert_store_set_bad_nodes(s, bad, 2), 0);
	assert_null(dp_cert_lookup(s, node_a.hash));
	assert_int_equal(verify_node(s, &node_a), DP_CERT_REVOKED);
	assert_int_equal(verify_node(s, &node_b), DP_CERT_OK);
	assert_int_equal(dp_cert_store_set_bad_nodes(s, NULL, 0), 0);
	assert_int_equal(verify_node(s, &node_a), DP_CERT_OK);
	dp_cert_store_free(s);
}

static void ca_certificate_as_node_is_refused(void **state)
{
	dp_cert_store_t *s = store_new();
	pk_node_t sub;
	pk_opts_t o = good;
	vp_id_t id = pk_id(0x55);
	(void)state;
	o.ca_true = 1;
	assert_int_equal(pk_node_new(&sub, &ca, &id, 1, &o), 0);
	assert_int_equal(verify_node(s, &sub), DP_CERT_PROFILE);
	pk_node_free(&sub);
	dp_cert_store_free(s);
}

static void cache_is_bounded(void **state)
{
	dp_cert_store_cfg_t cfg = { OVERLAY, 2, &manual };
	dp_cert_store_t *s = NULL;
	(void)state;
	clock_now = vp_time_wall_ms();
	assert_int_equal(dp_cert_store_new(&cfg, &s), 0);
	assert_int_equal(dp_cert_store_add_root(s, ca.cert), 0);
	assert_int_equal(verify_node(s, &node_a), DP_CERT_OK);
	assert_int_equal(verify_node(s, &node_b), DP_CERT_OK);
	assert_int_equal(verify_node(s, &node_rsa), DP_CERT_OK); /* replaces the oldest, a */
	assert_null(dp_cert_lookup(s, node_a.hash));
	assert_non_null(dp_cert_lookup(s, node_b.hash));
	assert_non_null(dp_cert_lookup(s, node_rsa.hash));
	dp_cert_store_free(s);
}

/* ---- messages ---------------------------------------------------------- */

typedef struct built {
	uint8_t buf[8192];
	size_t len;
	rl_message_t m;
} built_t;

/* A request to node 0xEE signed by `signer`, with the given via list, carrying `carry` (may be NULL). */
static void build_msg(built_t *out, const pk_node_t *signer, const pk_node_t *carry, const vp_id_t *via,
                      size_t nvia, const rl_body_t *body, uint64_t txid)
{
	static uint8_t sig[RL_MAX_SIG_LEN];
	vp_id_t dst = pk_id(0xEE);
	rl_dest_t d = rl_dest_node(&dst), v[4];
	rl_message_t m;
	vp_wr_t wr;

	memset(&m, 0, sizeof(m));
	m.hdr.overlay = rl_overlay_id(OVERLAY, strlen(OVERLAY));
	m.hdr.version = RL_VERSION;
	m.hdr.ttl = RL_DEFAULT_TTL;
	m.hdr.fragment = RL_FRAG_UNFRAGMENTED;
	m.hdr.txid = txid;
	m.hdr.dest.items = &d;
	m.hdr.dest.n_items = 1;
	for (size_t i = 0; i < nvia; i++)
		v[i] = rl_dest_node(&via[i]);
	m.hdr.via.items = v;
	m.hdr.via.n_items = (uint32_t)nvia;
	m.contents.code = body->code;
	m.contents.body_st = body;
	if (carry) {
		m.sec.certs.items = &carry->rlcert;
		m.sec.certs.n_items = 1;
	}
	vp_wr_init(&wr, out->buf, sizeof(out->buf));
	assert_int_equal(rl_msg_encode_signed(&wr, &m, signer->key, &signer->signer, sig, sizeof(sig)), 0);
	out->len = vp_wr_len(&wr);
	assert_int_equal(rl_msg_decode(out->buf, out->len, &out->m), 0);
}

static rl_body_t ping_body(void)
{
	rl_body_t b;
	memset(&b, 0, sizeof(b));
	b.code = RL_PING_REQ;
	b.u.ping_req.padding = (rl_bytes_t){ (const uint8_t *)"pad", 3 };
	return b;
}

static dp_cert_reason_t msg_check(dp_cert_store_t *s, built_t *b, const vp_id_t *link_peer)
{
	const dp_cert_ident_t *signer;
	dp_cert_reason_t why = DP_CERT_OK;
	int e = dp_cert_msg_verify(s, &b->m, link_peer, &signer, &why);
	assert_true((e == 0) == (why == DP_CERT_OK));
	return why;
}

static void message_from_originator_verifies(void **state)
{
	dp_cert_store_t *s = store_new();
	rl_body_t p = ping_body();
	vp_id_t a1 = pk_id(0xA1), a2 = pk_id(0xA2), relay = pk_id(0x77), c1 = pk_id(0xC1);
	built_t b;
	(void)state;
	/* direct: the link's peer is the originator */
	build_msg(&b, &node_a, &node_a, NULL, 0, &p, 1);
	assert_int_equal(msg_check(s, &b, &a1), DP_CERT_OK);
	assert_int_equal(msg_check(s, &b, &a2), DP_CERT_OK);
	/* relayed: the first via entry is the originator, the link peer a relay */
	build_msg(&b, &node_a, &node_a, &a2, 1, &p, 2);
	assert_int_equal(msg_check(s, &b, &relay), DP_CERT_OK);
	/* RSA-2048 with SHA-256 */
	build_msg(&b, &node_rsa, &node_rsa, NULL, 0, &p, 3);
	assert_int_equal(msg_check(s, &b, &c1), DP_CERT_OK);
	/* a cached signer needs no certificate in the message */
	build_msg(&b, &node_a, NULL, NULL, 0, &p, 4);
	assert_int_equal(msg_check(s, &b, &a1), DP_CERT_OK);
	dp_cert_store_free(s);
}

static void signer_other_than_originator_is_refused(void **state)
{
	dp_cert_store_t *s = store_new();
	rl_body_t p = ping_body();
	vp_id_t a1 = pk_id(0xA1), b1 = pk_id(0xB1);
	built_t b;
	(void)state;
	/* b signs a message that claims (via[0]) to come from a */
	build_msg(&b, &node_b, &node_b, &a1, 1, &p, 10);
	assert_int_equal(rl_msg_verify_embedded(&b.m), 0); /* what the old check accepted */
	assert_int_equal(msg_check(s, &b, &b1), DP_CERT_NOT_ORIGINATOR);
	/* direct from a's link, signed by b */
	build_msg(&b, &node_b, &node_b, NULL, 0, &p, 11);
	assert_int_equal(msg_check(s, &b, &a1), DP_CERT_NOT_ORIGINATOR);
	dp_cert_store_free(s);
}

static void foreign_ca_signer_and_missing_cert_are_refused(void **state)
{
	dp_cert_store_t *s = store_new();
	rl_body_t p = ping_body();
	vp_id_t a1 = pk_id(0xA1);
	pk_node_t rogue;
	built_t b;
	(void)state;
	assert_int_equal(pk_node_new(&rogue, &other_ca, &a1, 1, &good), 0);
	build_msg(&b, &rogue, &rogue, NULL, 0, &p, 20);
	assert_int_equal(rl_msg_verify_embedded(&b.m), 0); /* the old check accepted it */
	assert_int_equal(msg_check(s, &b, &a1), DP_CERT_UNTRUSTED);
	build_msg(&b, &node_b, NULL, NULL, 0, &p, 21); /* b never seen, no certificate */
	assert_int_equal(msg_check(s, &b, &a1), DP_CERT_NO_CERT);
	pk_node_free(&rogue);
	dp_cert_store_free(s);
}

static void tampered_message_is_refused(void **state)
{
	dp_cert_store_t *s = store_new();
	rl_body_t p = ping_body();
	vp_id_t a1 = pk_id(0xA1);
	built_t b;
	uint8_t *pad;
	(void)state;
	build_msg(&b, &node_a, &node_a, NULL, 0, &p, 30);
	/* change the padding (a signed field) after signing */
	pad = memmem(b.buf, b.len, "pad", 3);
	assert_non_null(pad);
	pad[0] = 'P';
	assert_int_equal(rl_msg_decode(b.buf, b.len, &b.m), 0);
	assert_int_equal(msg_check(s, &b, &a1), DP_CERT_BAD_SIGNATURE);
	/* and the transaction id (signed too) */
	build_msg(&b, &node_a, &node_a, NULL, 0, &p, 31);
	b.m.hdr.txid ^= 1;
	assert_int_equal(msg_check(s, &b, &a1), DP_CERT_BAD_SIGNATURE);
	dp_cert_store_free(s);
}

static void replayed_message_is_refused(void **state)
{
	dp_replay_t *r;
	uint64_t t = 1000;
	uint8_t h2[DP_CERT_HASH_LEN];
	(void)state;
	memcpy(h2, node_a.hash, sizeof(h2));
	h2[31] ^= 1;
	assert_int_equal(dp_replay_new(15000, 4, &r), 0);
	assert_int_equal(dp_replay_check(r, node_a.hash, 42, t), 0);
	assert_int_equal(dp_replay_check(r, node_a.hash, 42, t + 14999), VP_EEXIST);
	assert_int_equal(dp_replay_check(r, node_a.hash, 43, t + 1), 0); /* another txid */
	assert_int_equal(dp_replay_check(r, h2, 42, t + 2), 0);          /* another signer */
	/* once out of the window the pair is fresh again */
	assert_int_equal(dp_replay_check(r, node_a.hash, 42, t + 15000), 0);
	/* bounded: a flood replaces the oldest pairs and says so */
	for (uint64_t i = 0; i < 8; i++)
		assert_int_equal(dp_replay_check(r, node_b.hash, 100 + i, t + 15001), 0);
	assert_true(dp_replay_evicted(r) >= 4);
	assert_int_equal(dp_replay_check(r, node_b.hash, 107, t + 15002), VP_EEXIST);
	dp_replay_free(r);
}

static void forged_join_and_leave_are_refused(void **state)
{
	dp_cert_store_t *s = store_new();
	vp_id_t a1 = pk_id(0xA1), b1 = pk_id(0xB1), victim = pk_id(0x99);
	const dp_cert_ident_t *signer;
	dp_cert_reason_t why;
	rl_body_t j, l;
	uint8_t ld[64];
	vp_wr_t wr;
	rl_chord_leave_t cl;
	vp_id_t orig;
	built_t b;
	(void)state;

	memset(&j, 0, sizeof(j));
	j.code = RL_JOIN_REQ;
	j.u.join_req.joining_peer = a1;
	build_msg(&b, &node_a, &node_a, NULL, 0, &j, 40);
	assert_int_equal(dp_cert_msg_verify(s, &b.m, &a1, &signer, &why), 0);
	assert_int_equal(dp_cert_originator(&b.m, &a1, &orig), 0);
	assert_int_equal(dp_cert_topology_check(&b.m, &orig, signer, &why), 0);
	/* a signs a Join for an id it does not hold */
	j.u.join_req.joining_peer = victim;
	build_msg(&b, &node_a, &node_a, NULL, 0, &j, 41);
	assert_int_equal(dp_cert_msg_verify(s, &b.m, &a1, &signer, &why), 0);
	assert_int_equal(dp_cert_topology_check(&b.m, &a1, signer, &why), VP_EAUTH);
	assert_int_equal(why, DP_CERT_NOT_ORIGINATOR);

	memset(&l, 0, sizeof(l));
	memset(&cl, 0, sizeof(cl));
	cl.type = RL_LEAVE_FROM_PRED;
	vp_wr_init(&wr, ld, sizeof(ld));
	assert_int_equal(rl_chord_leave_encode(&wr, &cl), 0);
	l.code = RL_LEAVE_REQ;
	l.u.leave_req.overlay_data = (rl_bytes_t){ ld, (uint32_t)vp_wr_len(&wr) };
	/* b announces that a (alive) leaves */
	l.u.leave_req.leaving_peer = a1;
	build_msg(&b, &node_b, &node_b, NULL, 0, &l, 42);
	assert_int_equal(dp_cert_msg_verify(s, &b.m, &b1, &signer, &why), 0);
	assert_int_equal(dp_cert_topology_check(&b.m, &b1, signer, &why), VP_EAUTH);
	assert_int_equal(why, DP_CERT_NOT_ORIGINATOR);
	l.u.leave_req.leaving_peer = b1;
	build_msg(&b, &node_b, &node_b, NULL, 0, &l, 43);
	assert_int_equal(dp_cert_msg_verify(s, &b.m, &b1, &signer, &why), 0);
	assert_int_equal(dp_cert_topology_check(&b.m, &b1, signer, &why), 0);
	dp_cert_store_free(s);
}

/* ---- StoredData -------------------------------------------------------- */

typedef struct sd_built {
	uint8_t key[20];
	uint8_t value[23];
	uint8_t sig[RL_MAX_SIG_LEN];
	rl_stored_data_t sd;
} sd_built_t;

static const uint8_t RID[16] = { 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
                                 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f };

/* A ViPR dictionary entry for `claimant`, signed by `signer`. */
static void build_sd(sd_built_t *o, const pk_node_t *signer, const vp_id_t *claimant, uint64_t storage_time)
{
	memset(o, 0, sizeof(*o));
	memcpy(o->key, claimant->b, 16);
	o->key[19] = 1;
	o->value[0] = 1;
	memcpy(o->value + 1, claimant->b, 16);
	o->value[20] = 1;
	o->value[21] = 3;
	o->sd.storage_time = storage_time;
	o->sd.lifetime = 86400;
	o->sd.model = RL_MODEL_DICTIONARY;
	o->sd.key = (rl_bytes_t){ o->key, 20 };
	o->sd.exists = true;
	o->sd.value = (rl_bytes_t){ o->value, sizeof(o->value) };
	assert_int_equal(rl_stored_data_sign(signer->key, RID, 16, RL_KIND_VIPR_REGISTRATION, &o->sd,
	                                     &signer->signer, o->sig, sizeof(o->sig)), 0);
}

static dp_cert_reason_t sd_check(dp_cert_store_t *s, const sd_built_t *o, const pk_node_t *carried,
                                 uint32_t max_lifetime)
{
	rl_cert_list_t certs = { 0 };
	const dp_cert_ident_t *signer;
	dp_cert_reason_t why = DP_CERT_OK;
	vp_id_t claimant;
	int e;
	memcpy(claimant.b, o->sd.key.p, 16);
	if (carried) {
		certs.items = &carried->rlcert;
		certs.n_items = 1;
	}
	e = dp_cert_stored_data_verify(s, RID, 16, RL_KIND_VIPR_REGISTRATION, &o->sd, &certs, &claimant,
	                               max_lifetime, &signer, &why);
	assert_true((e == 0) == (why == DP_CERT_OK));
	return why;
}

static void stored_value_signed_by_its_claimant_verifies(void **state)
{
	dp_cert_store_t *s = store_new();
	vp_id_t a2 = pk_id(0xA2);
	sd_built_t o;
	(void)state;
	build_sd(&o, &node_a, &a2, clock_now);
	assert_int_equal(sd_check(s, &o, &node_a, 0), DP_CERT_OK);
	assert_int_equal(sd_check(s, &o, NULL, 172800), DP_CERT_OK); /* cached now */
	dp_cert_store_free(s);
}

static void stored_value_signed_by_another_node_is_refused(void **state)
{
	dp_cert_store_t *s = store_new();
	vp_id_t a1 = pk_id(0xA1);
	sd_built_t o;
	(void)state;
	/* b claims a's key: a valid signature, by the wrong node */
	build_sd(&o, &node_b, &a1, clock_now);
	assert_int_equal(sd_check(s, &o, &node_b, 0), DP_CERT_NOT_CLAIMANT);
	dp_cert_store_free(s);
}

static void entry_altered_by_storing_peer_is_refused(void **state)
{
	dp_cert_store_t *s = store_new();
	vp_id_t a1 = pk_id(0xA1), b1 = pk_id(0xB1);
	sd_built_t o;
	(void)state;
	build_sd(&o, &node_a, &a1, clock_now);
	/* the storing peer redirects the contact Node-ID to itself */
	memcpy(o.value + 1, b1.b, 16);
	assert_int_equal(sd_check(s, &o, &node_a, 172800), DP_CERT_BAD_SIGNATURE);
	/* or re-dates the entry */
	build_sd(&o, &node_a, &a1, clock_now);
	o.sd.storage_time += 1;
	assert_int_equal(sd_check(s, &o, &node_a, 172800), DP_CERT_BAD_SIGNATURE);
	/* the lifetime is not signed: a resurrected old entry is refused by its storage_time */
	build_sd(&o, &node_a, &a1, clock_now - 172801ull * 1000);
	o.sd.lifetime = 86400;
	assert_int_equal(sd_check(s, &o, &node_a, 0), DP_CERT_OK);          /* the storing peer's view */
	assert_int_equal(sd_check(s, &o, &node_a, 172800), DP_CERT_TOO_OLD); /* the fetcher's */
	dp_cert_store_free(s);
}

/* The second copy of an entry is answered by the memo of verified signatures; a copy that differs in any
 * signed byte, in its signature or in its signer's certificate is verified afresh and refused. */
static void verified_entry_is_remembered_altered_copy_is_not(void **state)
{
	dp_cert_store_t *s = store_new();
	vp_id_t a1 = pk_id(0xA1), b1 = pk_id(0xB1);
	sd_built_t o, other;
	(void)state;
	build_sd(&o, &node_a, &a1, clock_now);
	assert_int_equal(sd_check(s, &o, &node_a, 172800), DP_CERT_OK);
	assert_int_equal(dp_cert_sig_memo_hits(s), 0);
	assert_int_equal(sd_check(s, &o, &node_a, 172800), DP_CERT_OK); /* copy 2: remembered */
	assert_int_equal(dp_cert_sig_memo_hits(s), 1);
	/* the same signature over a redirected contact */
	memcpy(o.value + 1, b1.b, 16);
	assert_int_equal(sd_check(s, &o, &node_a, 172800), DP_CERT_BAD_SIGNATURE);
	memcpy(o.value + 1, a1.b, 16);
	/* a re-dated copy, an exists flag turned off */
	o.sd.storage_time += 1;
	assert_int_equal(sd_check(s, &o, &node_a, 172800), DP_CERT_BAD_SIGNATURE);
	o.sd.storage_time -= 1;
	o.sd.exists = false;
	assert_int_equal(sd_check(s, &o, &node_a, 172800), DP_CERT_BAD_SIGNATURE);
	o.sd.exists = true;
	/* another resource or kind for the same bytes */
	{
		rl_cert_list_t certs = { .items = &node_a.rlcert, .n_items = 1 };
		const dp_cert_ident_t *signer;
		dp_cert_reason_t why;
		uint8_t rid2[16];
		memcpy(rid2, RID, 16);
		rid2[15] ^= 1;
		assert_int_equal(dp_cert_stored_data_verify(s, rid2, 16, RL_KIND_VIPR_REGISTRATION, &o.sd, &certs, NULL,
		                                            0, &signer, &why), VP_EAUTH);
		assert_int_equal(why, DP_CERT_BAD_SIGNATURE);
		assert_int_equal(dp_cert_stored_data_verify(s, RID, 16, RL_KIND_VIPR_REGISTRATION + 1, &o.sd, &certs,
		                                            NULL, 0, &signer, &why), VP_EAUTH);
	}
	/* a re-dated copy chosen to land in the remembered entry's memo slot */
	{
		uint8_t d0[32], d1[32];
		uint32_t i0, i1;
		sd_built_t x = o;
		bool found = false;
		x.sd.key = (rl_bytes_t){ x.key, 20 };
		x.sd.value = (rl_bytes_t){ x.value, sizeof(x.value) };
		x.sd.sig.value.p = x.sig;
		assert_int_equal(rl_stored_data_verify_digest(RID, 16, RL_KIND_VIPR_REGISTRATION, &o.sd, d0), 0);
		memcpy(&i0, d0, 4);
		for (uint32_t k = 1; k < 200000 && !found; k++) {
			x.sd.storage_time = o.sd.storage_time - k;
			assert_int_equal(rl_stored_data_verify_digest(RID, 16, RL_KIND_VIPR_REGISTRATION, &x.sd, d1), 0);
			memcpy(&i1, d1, 4);
			found = ((i0 ^ i1) & (DP_CERT_SIG_MEMO - 1)) == 0;
		}
		assert_true(found);
		assert_int_equal(sd_check(s, &x, &node_a, 172800), DP_CERT_BAD_SIGNATURE);
	}
	/* b signs a1's entry: its own valid signature, a different signer; still not the claimant */
	build_sd(&other, &node_b, &a1, clock_now);
	assert_int_equal(sd_check(s, &other, &node_b, 172800), DP_CERT_NOT_CLAIMANT);
	assert_int_equal(dp_cert_sig_memo_hits(s), 1);
	/* the original is still remembered, and the claimant check still runs on a remembered entry */
	assert_int_equal(sd_check(s, &o, &node_a, 172800), DP_CERT_OK);
	assert_int_equal(dp_cert_sig_memo_hits(s), 2);
	{
		rl_cert_list_t certs = { .items = &node_a.rlcert, .n_items = 1 };
		const dp_cert_ident_t *signer;
		dp_cert_reason_t why;
		assert_int_equal(dp_cert_stored_data_verify(s, RID, 16, RL_KIND_VIPR_REGISTRATION, &o.sd, &certs, &b1, 0,
		                                            &signer, &why), VP_EAUTH);
		assert_int_equal(why, DP_CERT_NOT_CLAIMANT);
	}
	dp_cert_store_free(s);
}

static void reason_names_are_log_words(void **state)
{
	(void)state;
	for (int r = 0; r < DP_CERT_REASON_COUNT; r++) {
		const char *n = dp_cert_reason_name((dp_cert_reason_t)r);
		assert_non_null(n);
		assert_null(strchr(n, ' '));
		assert_string_not_equal(n, "unknown");
	}
	assert_string_equal(dp_cert_reason_name(DP_CERT_REASON_COUNT), "unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(good_certificate_gives_its_node_ids),
		cmocka_unit_test(uri_forms_and_other_overlays),
		cmocka_unit_test(certificate_from_another_ca_is_untrusted),
		cmocka_unit_test(expired_and_not_yet_valid_are_refused),
		cmocka_unit_test(cached_certificate_expires_with_its_not_after),
		cmocka_unit_test(bad_node_list_revokes_even_cached),
		cmocka_unit_test(ca_certificate_as_node_is_refused),
		cmocka_unit_test(cache_is_bounded),
		cmocka_unit_test(message_from_originator_verifies),
		cmocka_unit_test(signer_other_than_originator_is_refused),
		cmocka_unit_test(foreign_ca_signer_and_missing_cert_are_refused),
		cmocka_unit_test(tampered_message_is_refused),
		cmocka_unit_test(replayed_message_is_refused),
		cmocka_unit_test(forged_join_and_leave_are_refused),
		cmocka_unit_test(stored_value_signed_by_its_claimant_verifies),
		cmocka_unit_test(stored_value_signed_by_another_node_is_refused),
		cmocka_unit_test(entry_altered_by_storing_peer_is_refused),
		cmocka_unit_test(verified_entry_is_remembered_altered_copy_is_not),
		cmocka_unit_test(reason_names_are_log_words),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
