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
 *   bench_codec [SECONDS_PER_FIGURE]   (default 1)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "common/clock.h"
#include "dataplane/reload.h"

static const vp_id_t ORIGIN = { { 0x0c, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 1 } };
static const vp_id_t HOP1 = { { 0x1a, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 2 } };
static const vp_id_t ME = { { 0x2b, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 3 } };

static _Noreturn void die(const char *what)
{
	fprintf(stderr, "bench_codec: %s\n", what);
	exit(1);
}

/* A self-signed certificate is enough for the sizes; signing is not timed. */
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
	m.hdr.overlay = rl_overlay_id("vipr.example", 12);
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
	EVP_PKEY_free(key);
	return vp_wr_len(&wr);
}

static size_t make_cert(EVP_PKEY *key, uint8_t *out, size_t cap)
{
	X509 *x = X509_new();
	unsigned char *p = out;
	int len;

	if (!x)
		die("x509");
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, key);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
	                           (const unsigned char *)"bench", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	if (!X509_sign(x, key, EVP_sha256()))
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

/* Messages per second of op over about `seconds`. */
static double measure(bench_ctx_t *c, int (*op)(bench_ctx_t *), double seconds)
{
	uint64_t n = 0, t0 = vp_time_mono_ns(), t;
	uint64_t limit = (uint64_t)(seconds * 1e9);

	for (;;) {
		for (int i = 0; i < 1024; i++)
			if (op(c))
				die("operation failed");
		n += 1024;
		t = vp_time_mono_ns() - t0;
		if (t >= limit)
			break;
	}
	return (double)n * 1e9 / (double)t;
}

static void report(const char *name, double v, double base)
{
	printf("%s %.0f msg/s (memcpy %.0f msg/s, ratio %.3fx)\n", name, v, base, v / base);
}

int main(int argc, char **argv)
{
	static uint8_t in[RL_MAX_MESSAGE_SIZE], out[RL_MAX_MESSAGE_SIZE + 256], pkt[RL_MAX_MESSAGE_SIZE + 256];
	double secs = argc > 1 ? atof(argv[1]) : 1.0;
	bench_ctx_t c = { in, 0, out, sizeof(out), pkt, sizeof(pkt), 0 };
	double base, full, copy, inplace;

	if (secs <= 0 || secs > 60)
		die("usage: bench_codec [SECONDS_PER_FIGURE (0..60]]");
	c.len = build_store(in, sizeof(in));
	printf("# forwarded Store: %zu bytes (2 via entries, resource destination, ECDSA P-256 certificate)\n", c.len);
	/* warm-up */
	measure(&c, op_full, secs / 10);
	base = measure(&c, op_memcpy, secs);
	full = measure(&c, op_full, secs);
	copy = measure(&c, op_copy, secs);
	inplace = measure(&c, op_inplace, secs);
	report("codec_forward_full", full, base);
	report("codec_forward_copy", copy, base);
	report("codec_forward_inplace", inplace, base);
	return c.sink == 42 ? 1 : 0; /* keep the work observable */
}
