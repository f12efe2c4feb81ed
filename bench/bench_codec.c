/*
 * bench/bench_codec.c - the RELOAD forward path on one core.
 *
 * The message is a realistic forwarded Store: a ViPR registration
 * (dictionary StoredData signed with ECDSA P-256), the sender's certificate,
 * two via entries and a resource destination.  Figures, each against a
 * memcpy of the same bytes measured in the same run:
 *
 *   codec_forward_full   decode header + contents + security block + Store body
 *                        (every StoredData checked against its kind's model),
 *                        append a via entry, re-encode the whole message
 *   codec_forward_copy   decode the forwarding header only, then the zero-copy
 *                        forward (via appended, TTL decremented, rest copied)
 *   codec_forward_inplace the same edits in place in the receive buffer
 *                        (headroom), plus the copy that refreshes the buffer
 *
 *   codec_dest_full_verified  codec_forward_full plus what the destination
 *                        verifies (dataplane/cert.h): the message signature and
 *                        its signer's certificate (cached by hash after the
 *                        first message, as the daemon does), and the StoredData
 *                        signature with its signer = the dictionary key's
 *                        Node-ID; baseline: bare EVP_DigestVerify of the same two
 *                        ECDSA P-256 signatures (the arithmetic alone)
 *
 * Rates are per second of this thread's CPU time (CLOCK_THREAD_CPUTIME_ID): the
 * machine is shared, and waiting for a core is not the codec's cost.
 *
 *   bench_codec [SECONDS_PER_FIGURE]   (CPU seconds, default 1)
 *   bench_codec --help
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "common/clock.h"
#include "dataplane/cert.h"
#include "dataplane/reload.h"

static const vp_id_t ORIGIN = { { 0x0c, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 1 } };
static const vp_id_t HOP1 = { { 0x1a, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 2 } };
static const vp_id_t ME = { { 0x2b, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 3 } };

static _Noreturn void die(const char *what)
{
	fprintf(stderr, "bench_codec: %s\n", what);
	exit(1);
}

#define OVERLAY "vipr.example"

/* The overlay's root (CA) and the origin's certificate it issued (key and cert kept for the verifier). */
static EVP_PKEY *g_ca_key;
static EVP_PKEY *g_key; /* the origin's key */
static X509 *g_ca;

static void add_ext(X509 *x, X509 *issuer, int nid, const char *val)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ex;
	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	ex = X509V3_EXT_conf_nid(NULL, &ctx, nid, val);
	if (!ex || !X509_add_ext(x, ex, -1))
		die("x509 extension");
	X509_EXTENSION_free(ex);
}

static void make_ca(void)
{
	g_ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	g_ca = X509_new();
	if (!g_ca_key || !g_ca)
		die("ca");
	X509_set_version(g_ca, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(g_ca), 1);
	X509_gmtime_adj(X509_getm_notBefore(g_ca), -60);
	X509_gmtime_adj(X509_getm_notAfter(g_ca), 86400);
	X509_set_pubkey(g_ca, g_ca_key);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(g_ca), "CN", MBSTRING_ASC,
	                           (const unsigned char *)"bench overlay root", -1, -1, 0);
	X509_set_issuer_name(g_ca, X509_get_subject_name(g_ca));
	add_ext(g_ca, g_ca, NID_basic_constraints, "critical,CA:TRUE");
	add_ext(g_ca, g_ca, NID_key_usage, "critical,keyCertSign,cRLSign");
	if (!X509_sign(g_ca, g_ca_key, EVP_sha256()))
		die("ca sign");
}

/* The origin's certificate, issued by the root, carrying reload://ORIGIN@OVERLAY/. */
static size_t make_cert(EVP_PKEY *key, uint8_t *out, size_t cap);

static size_t build_store(uint8_t *msg, size_t cap)
{
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	static uint8_t der[2048], hash[RL_MAX_HASH_LEN], sdsig[RL_MAX_SIG_LEN], sig[RL_MAX_SIG_LEN];
	static const uint8_t number[] = "+14085555432";
	uint8_t value[23];
	vp_id_t rid = vp_id_from_name(number, sizeof(number) - 1);
	rl_signer_identity_t signer;
	rl_cert_t cert;
	rl_stored_data_t sd = { 0 };
	rl_store_kind_data_t kd = { 0 };
	rl_dest_t via[2] = { rl_dest_node(&ORIGIN), rl_dest_node(&HOP1) };
	rl_dest_t dest = rl_dest_resource(rid.b, 16);
	rl_message_t m;
	rl_body_t b;
	vp_wr_t wr;
	size_t dlen;

	if (!key)
		die("keygen");
	dlen = make_cert(key, der, sizeof(der));
	if (rl_signer_cert_hash(der, dlen, hash, &signer))
		die("cert hash");
	cert.type = RL_CERT_X509;
	cert.der = (rl_bytes_t){ der, (uint32_t)dlen };
	value[0] = 1;
	memcpy(value + 1, ORIGIN.b, 16);
	memset(value + 17, 0, 4);
	value[21] = 3;
	value[22] = 0;
	sd.storage_time = 1700000000000ull;
	sd.lifetime = 86400;
	sd.model = RL_MODEL_DICTIONARY;
	sd.key = (rl_bytes_t){ ORIGIN.b, 16 };
	sd.exists = true;
	sd.value = (rl_bytes_t){ value, sizeof(value) };
	if (rl_stored_data_sign(key, rid.b, 16, RL_KIND_VIPR_REGISTRATION, &sd, &signer, sdsig, sizeof(sdsig)))
		die("sign stored data");
	kd.kind = RL_KIND_VIPR_REGISTRATION;
	kd.values.items = &sd;
	kd.values.n_items = 1;
	memset(&b, 0, sizeof(b));
	b.code = RL_STORE_REQ;
	b.u.store_req.resource = (rl_bytes_t){ rid.b, 16 };
	b.u.store_req.kind_data.items = &kd;
	b.u.store_req.kind_data.n_items = 1;
	memset(&m, 0, sizeof(m));
	m.hdr.overlay = rl_overlay_id(OVERLAY, sizeof(OVERLAY) - 1);
	m.hdr.config_seq = 1;
	m.hdr.version = RL_VERSION;
	m.hdr.ttl = 98;
	m.hdr.fragment = RL_FRAG_UNFRAGMENTED;
	m.hdr.txid = 0x0102030405060708ull;
	m.hdr.via.items = via;
	m.hdr.via.n_items = 2;
	m.hdr.dest.items = &dest;
	m.hdr.dest.n_items = 1;
	m.contents.code = RL_STORE_REQ;
	m.contents.body_st = &b;
	m.sec.certs.items = &cert;
	m.sec.certs.n_items = 1;
	vp_wr_init(&wr, msg, cap);
	if (rl_msg_encode_signed(&wr, &m, key, &signer, sig, sizeof(sig)))
		die("encode");
	g_key = key; /* the bare-verify baseline checks the same signatures with it */
	return vp_wr_len(&wr);
}

static size_t make_cert(EVP_PKEY *key, uint8_t *out, size_t cap)
{
	X509 *x = X509_new();
	unsigned char *p = out;
	int len;

	if (!x)
		die("x509");
	char san[128], hex[VP_ID_HEX_LEN + 1];
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 2);
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, key);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
	                           (const unsigned char *)"bench", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(g_ca));
	snprintf(san, sizeof(san), "URI:reload://%s@" OVERLAY "/", vp_id_to_hex(&ORIGIN, hex));
	add_ext(x, g_ca, NID_subject_alt_name, san);
	add_ext(x, g_ca, NID_basic_constraints, "critical,CA:FALSE");
	add_ext(x, g_ca, NID_key_usage, "critical,digitalSignature");
	if (!X509_sign(x, g_ca_key, EVP_sha256()))
		die("x509 sign");
	len = i2d_X509(x, NULL);
	if (len <= 0 || (size_t)len > cap)
		die("x509 size");
	i2d_X509(x, &p);
	X509_free(x);
	return (size_t)len;
}

typedef struct bench_ctx {
	const uint8_t *in;
	size_t len;
	uint8_t *out;
	size_t cap;
	uint8_t *pkt;      /* receive buffer with headroom */
	size_t pkt_cap;
	uint64_t sink;
	dp_cert_store_t *certs;  /* the destination's trust store and certificate cache */
	uint8_t tbs[2][RL_MAX_MESSAGE_SIZE]; /* the bare-verify baseline's signed inputs */
	size_t tbs_len[2];
	uint8_t sigs[2][RL_MAX_SIG_LEN];
	size_t sig_len[2];
} bench_ctx_t;

static int op_memcpy(bench_ctx_t *c)
{
	memcpy(c->out, c->in, c->len);
	c->sink += c->out[c->len - 1];
	return 0;
}

static int op_full(bench_ctx_t *c)
{
	rl_message_t m;
	rl_body_t b;
	rl_dest_t via = rl_dest_node(&ME);
	vp_wr_t wr;

	if (rl_msg_decode(c->in, c->len, &m))
		return -1;
	if (rl_body_decode(m.contents.code, m.contents.body.p, m.contents.body.len, rl_model_builtin, NULL, &b))
		return -1;
	if (m.hdr.ttl == 0)
		return -1;
	m.hdr.ttl--;
	m.hdr.via.items = &via;
	m.hdr.via.n_items = 1;
	vp_wr_init(&wr, c->out, c->cap);
	if (rl_msg_encode(&wr, &m))
		return -1;
	c->sink += vp_wr_len(&wr);
	return 0;
}

/*
 * What the Store's destination does before the storage engine: decode the
 * message, verify its signature and signer (certificate by cert_hash from the
 * cache, chained to the root the first time; signer = originator = first via),
 * decode the body and verify every StoredData's signature and that its signer
 * carries the dictionary key's Node-ID; then, like codec_forward_full, append a
 * via entry and re-encode (so the two figures differ by the verification only).
 */
static int op_full_verified(bench_ctx_t *c)
{
	rl_message_t m;
	rl_body_t b;
	rl_dest_t via = rl_dest_node(&ME);
	const dp_cert_ident_t *signer;
	dp_cert_reason_t why;
	rl_iter_t it, jt;
	rl_store_kind_data_t kd;
	rl_stored_data_t sd;
	vp_wr_t wr;
	int rc;

	if (rl_msg_decode(c->in, c->len, &m))
		return -1;
	if (dp_cert_msg_verify(c->certs, &m, &HOP1, &signer, &why))
		return -1;
	if (rl_body_decode(m.contents.code, m.contents.body.p, m.contents.body.len, rl_model_builtin, NULL, &b))
		return -1;
	RL_ITER_INIT(&it, &b.u.store_req.kind_data);
	while ((rc = rl_store_kind_data_next(&it, &kd)) > 0) {
		RL_ITER_INIT(&jt, &kd.values);
		while ((rc = rl_stored_data_next(&jt, RL_MODEL_DICTIONARY, &sd)) > 0) {
			vp_id_t claimant;
			if (sd.key.len != sizeof(claimant.b))
				return -1;
			memcpy(claimant.b, sd.key.p, sizeof(claimant.b));
			if (dp_cert_stored_data_verify(c->certs, b.u.store_req.resource.p, b.u.store_req.resource.len,
			                               kd.kind, &sd, &m.sec.certs, &claimant, 0, &signer, &why))
				return -1;
		}
		if (rc < 0)
			return -1;
	}
	if (rc < 0 || m.hdr.ttl == 0)
		return -1;
	m.hdr.ttl--;
	m.hdr.via.items = &via;
	m.hdr.via.n_items = 1;
	vp_wr_init(&wr, c->out, c->cap);
	if (rl_msg_encode(&wr, &m))
		return -1;
	c->sink += vp_wr_len(&wr);
	return 0;
}

/* The arithmetic alone: the same two ECDSA P-256 signatures checked with bare EVP_DigestVerify. */
static int op_bare_verify(bench_ctx_t *c)
{
	for (int i = 0; i < 2; i++) {
		EVP_MD_CTX *md = EVP_MD_CTX_new();
		int ok = md && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, g_key) == 1 &&
		         EVP_DigestVerify(md, c->sigs[i], c->sig_len[i], c->tbs[i], c->tbs_len[i]) == 1;
		EVP_MD_CTX_free(md);
		if (!ok)
			return -1;
	}
	c->sink++;
	return 0;
}

static int op_copy(bench_ctx_t *c)
{
	rl_fwd_header_t h;
	rl_dest_t via = rl_dest_node(&ME);
	vp_wr_t wr;

	if (rl_fwd_header_decode(c->in, c->len, &h))
		return -1;
	vp_wr_init(&wr, c->out, c->cap);
	if (rl_fwd_copy(&wr, c->in, c->len, &h, &via, false))
		return -1;
	c->sink += vp_wr_len(&wr);
	return 0;
}

static int op_inplace(bench_ctx_t *c)
{
	rl_fwd_header_t h;
	rl_dest_t via = rl_dest_node(&ME);
	rl_pkt_t pkt = { c->pkt, c->pkt_cap, 64, c->len };

	/* the copy stands for the NIC/TLS layer filling the receive buffer */
	memcpy(c->pkt + 64, c->in, c->len);
	if (rl_fwd_header_decode(c->pkt + 64, c->len, &h))
		return -1;
	if (rl_fwd_ttl_decrement(&pkt) || rl_fwd_append_via(&pkt, &via))
		return -1;
	c->sink += pkt.len;
	return 0;
}

/* This thread's CPU time: on a shared machine, waiting for a core is not counted. */
static uint64_t cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Messages per CPU second of op over about `seconds` of this thread's CPU time. */
static double measure(bench_ctx_t *c, int (*op)(bench_ctx_t *), double seconds)
{
	uint64_t n = 0, t0 = cpu_ns(), t;
	uint64_t limit = (uint64_t)(seconds * 1e9);
	int step = 1024;

	for (;;) {
		for (int i = 0; i < step; i++)
			if (op(c))
				die("operation failed");
		n += (uint64_t)step;
		t = cpu_ns() - t0;
		if (t >= limit)
			break;
		if (t < limit / 64 && step < (1 << 20))
			step *= 2; /* few clock reads for fast ops */
		else if (t > 0 && step > 16 && (double)t / (double)n * step > 0.05e9)
			step /= 2; /* slow ops: stay near the time asked */
	}
	return (double)n * 1e9 / (double)t;
}

static void report(const char *name, double v, double base)
{
	printf("%s %.0f msg/s (memcpy %.0f msg/s, ratio %.3fx)\n", name, v, base, v / base);
}

/* The destination's trust store (root = the bench CA) and the baseline's signature inputs. */
static void setup_verify(bench_ctx_t *c)
{
	dp_cert_store_cfg_t cfg = { .overlay = OVERLAY };
	rl_message_t m;
	rl_body_t b;
	rl_iter_t it, jt;
	rl_store_kind_data_t kd;
	rl_stored_data_t sd;
	vp_wr_t wr;
	if (dp_cert_store_new(&cfg, &c->certs) || dp_cert_store_add_root(c->certs, g_ca))
		die("cert store");
	if (rl_msg_decode(c->in, c->len, &m) ||
	    rl_body_decode(m.contents.code, m.contents.body.p, m.contents.body.len, rl_model_builtin, NULL, &b))
		die("decode");
	vp_wr_init(&wr, c->tbs[0], sizeof(c->tbs[0]));
	if (rl_sig_input_msg(&wr, m.hdr.overlay, m.hdr.txid, m.contents.raw.p, m.contents.raw.len, &m.sec.sig.identity))
		die("signature input");
	c->tbs_len[0] = vp_wr_len(&wr);
	memcpy(c->sigs[0], m.sec.sig.value.p, m.sec.sig.value.len);
	c->sig_len[0] = m.sec.sig.value.len;
	RL_ITER_INIT(&it, &b.u.store_req.kind_data);
	if (rl_store_kind_data_next(&it, &kd) <= 0)
		die("kind data");
	RL_ITER_INIT(&jt, &kd.values);
	if (rl_stored_data_next(&jt, RL_MODEL_DICTIONARY, &sd) <= 0)
		die("stored data");
	vp_wr_init(&wr, c->tbs[1], sizeof(c->tbs[1]));
	if (rl_sig_input_stored_data(&wr, b.u.store_req.resource.p, b.u.store_req.resource.len, kd.kind, &sd,
	                             &sd.sig.identity))
		die("stored data signature input");
	c->tbs_len[1] = vp_wr_len(&wr);
	memcpy(c->sigs[1], sd.sig.value.p, sd.sig.value.len);
	c->sig_len[1] = sd.sig.value.len;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: bench_codec [SECONDS_PER_FIGURE]   (0 < seconds <= 60, default 1)\n"
	           "Forward path of a relayed ViPR Store on one core against memcpy of the same bytes, and the\n"
	           "destination's path with signature and certificate verification against bare ECDSA verifies.\n"
	           "Prints one line per figure: name value unit (baseline value unit, ratio x); above 1 is better for us.\n");
}

int main(int argc, char **argv)
{
	static uint8_t in[RL_MAX_MESSAGE_SIZE], out[RL_MAX_MESSAGE_SIZE + 256], pkt[RL_MAX_MESSAGE_SIZE + 256];
	static bench_ctx_t c;
	double secs, base, full, copy, inplace, verified, bare;

	if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		usage(stdout);
		return 0;
	}
	secs = argc > 1 ? atof(argv[1]) : 1.0;
	if (secs <= 0 || secs > 60) {
		usage(stderr);
		return 2;
	}
	c.in = in;
	c.out = out;
	c.cap = sizeof(out);
	c.pkt = pkt;
	c.pkt_cap = sizeof(pkt);
	make_ca();
	c.len = build_store(in, sizeof(in));
	setup_verify(&c);
	printf("# forwarded Store: %zu bytes (2 via entries, resource destination, ECDSA P-256 certificate)\n", c.len);
	/* warm-up */
	measure(&c, op_full, secs / 10);
	base = measure(&c, op_memcpy, secs);
	full = measure(&c, op_full, secs);
	copy = measure(&c, op_copy, secs);
	inplace = measure(&c, op_inplace, secs);
	verified = measure(&c, op_full_verified, secs);
	bare = measure(&c, op_bare_verify, secs);
	report("codec_forward_full", full, base);
	report("codec_forward_copy", copy, base);
	report("codec_forward_inplace", inplace, base);
	printf("codec_dest_full_verified %.0f msg/s (bare EVP_DigestVerify of its 2 ECDSA P-256 signatures %.0f msg/s, "
	       "ratio %.3fx)\n", verified, bare, verified / bare);
	printf("codec_dest_full_verified_vs_unverified %.0f msg/s (codec_forward_full %.0f msg/s, ratio %.4fx)\n",
	       verified, full, verified / full);
	dp_cert_store_free(c.certs);
	EVP_PKEY_free(g_key);
	EVP_PKEY_free(g_ca_key);
	X509_free(g_ca);
	return c.sink == 42 ? 1 : 0; /* keep the work observable */
}
