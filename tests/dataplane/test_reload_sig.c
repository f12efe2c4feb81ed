/* Signature inputs, signing and verification (ECDSA P-256 and RSA), and the link framing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "dataplane/reload.h"
#include "rl_testkit.h"

static const vp_id_t NODE = { { 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
                                0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff } };

static tk_ident_t ec_id, rsa_id;

static int setup(void **state)
{
	(void)state;
	if (tk_ident_new(&ec_id, 0) || tk_ident_new(&rsa_id, 1))
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tk_ident_free(&ec_id);
	tk_ident_free(&rsa_id);
	return 0;
}

static void message_signature_input_layout(void **state)
{
	static const uint8_t contents[] = { 0x00, 0x17, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0 };
	static const uint8_t hash[3] = { 0xaa, 0xbb, 0xcc };
	rl_signer_identity_t id = { RL_SIGNER_CERT_HASH, RL_HASH_SHA256, { hash, 3 } };
	uint8_t out[64], want[64];
	vp_wr_t wr;
	size_t n;
	(void)state;

	/* overlay ‖ transaction_id ‖ MessageContents ‖ SignerIdentity */
	n = tk_hex("12345678 0102030405060708 0017 00000002 0000 00000000 01 0005 04 03 aabbcc", want, sizeof(want));
	vp_wr_init(&wr, out, sizeof(out));
	assert_int_equal(rl_sig_input_msg(&wr, 0x12345678, 0x0102030405060708ull, contents,
	                                  sizeof(contents), &id), 0);
	assert_int_equal(vp_wr_len(&wr), n);
	assert_memory_equal(out, want, n);
}

static void stored_data_signature_input_layout(void **state)
{
	static const uint8_t rid[4] = { 0xa1, 0xa2, 0xa3, 0xa4 };
	static const uint8_t key[2] = { 0x6b, 0x31 };
	rl_stored_data_t sd = { 0 };
	rl_signer_identity_t id = { RL_SIGNER_NONE, 0, { NULL, 0 } };
	uint8_t out[64], want[64];
	vp_wr_t wr;
	size_t n;
	(void)state;

	sd.storage_time = 0x0000018bcfe56800ull;
	sd.lifetime = 86400; /* not part of the input */
	sd.model = RL_MODEL_DICTIONARY;
	sd.key = (rl_bytes_t){ key, 2 };
	sd.exists = true;
	sd.value = (rl_bytes_t){ (const uint8_t *)"xyz", 3 };
	/* resource_id (raw) ‖ kind ‖ storage_time ‖ DictionaryEntry ‖ SignerIdentity */
	n = tk_hex("a1a2a3a4 f0000100 0000018bcfe56800 0002 6b31 01 00000003 78797a 03 0000", want, sizeof(want));
	vp_wr_init(&wr, out, sizeof(out));
	assert_int_equal(rl_sig_input_stored_data(&wr, rid, 4, RL_KIND_VIPR_REGISTRATION, &sd, &id), 0);
	assert_int_equal(vp_wr_len(&wr), n);
	assert_memory_equal(out, want, n);
}

static void cert_hash_identity(void **state)
{
	uint8_t md[SHA256_DIGEST_LENGTH];
	(void)state;
	SHA256(ec_id.der, ec_id.der_len, md);
	assert_int_equal(ec_id.signer.type, RL_SIGNER_CERT_HASH);
	assert_int_equal(ec_id.signer.hash_alg, RL_HASH_SHA256);
	assert_int_equal(ec_id.signer.hash.len, 32);
	assert_memory_equal(ec_id.signer.hash.p, md, 32);
}

/* Build, sign (encode_signed), decode, verify; then tamper. */
static void sign_and_verify(tk_ident_t *id, uint8_t expect_alg)
{
	rl_message_t m, d;
	rl_body_t body;
	rl_dest_t dest = rl_dest_node(&NODE);
	uint8_t out[4096], sig[RL_MAX_SIG_LEN];
	vp_wr_t wr;
	size_t n;

	memset(&m, 0, sizeof(m));
	m.hdr.overlay = rl_overlay_id("vipr.example", 12);
	m.hdr.version = RL_VERSION;
	m.hdr.ttl = RL_DEFAULT_TTL;
	m.hdr.fragment = RL_FRAG_UNFRAGMENTED;
	m.hdr.txid = 42;
	m.hdr.dest.items = &dest;
	m.hdr.dest.n_items = 1;
	memset(&body, 0, sizeof(body));
	body.code = RL_PING_REQ;
	body.u.ping_req.padding = (rl_bytes_t){ (const uint8_t *)"pad", 3 };
	m.contents.code = RL_PING_REQ;
	m.contents.body_st = &body;
	m.sec.certs.items = &id->cert;
	m.sec.certs.n_items = 1;
	vp_wr_init(&wr, out, sizeof(out));
	assert_int_equal(rl_msg_encode_signed(&wr, &m, id->key, &id->signer, sig, sizeof(sig)), 0);
	n = vp_wr_len(&wr);
	assert_int_equal(m.sec.sig.sig_alg, expect_alg);
	assert_int_equal(m.sec.sig.hash_alg, RL_HASH_SHA256);

	assert_int_equal(rl_msg_decode(out, n, &d), 0);
	assert_int_equal(d.hdr.length, n);
	assert_int_equal(d.sec.sig.sig_alg, expect_alg);
	assert_int_equal(d.sec.sig.identity.type, RL_SIGNER_CERT_HASH);
	assert_int_equal(rl_msg_verify_embedded(&d), 0);
	assert_int_equal(rl_msg_verify(id->key, d.hdr.overlay, d.hdr.txid, d.contents.raw.p,
	                               d.contents.raw.len, &d.sec.sig), 0);
	/* a different transaction id, overlay or body breaks the signature */
	assert_int_equal(rl_msg_verify(id->key, d.hdr.overlay, 43, d.contents.raw.p,
	                               d.contents.raw.len, &d.sec.sig), VP_EAUTH);
	assert_int_equal(rl_msg_verify(id->key, d.hdr.overlay ^ 1, d.hdr.txid, d.contents.raw.p,
	                               d.contents.raw.len, &d.sec.sig), VP_EAUTH);
	out[d.hdr.hdr_len + 8] ^= 1; /* a padding byte */
	assert_int_equal(rl_msg_decode(out, n, &d), 0);
	assert_int_equal(rl_msg_verify_embedded(&d), VP_EAUTH);
}

static void sign_verify_ecdsa(void **state)
{
	(void)state;
	sign_and_verify(&ec_id, RL_SIG_ECDSA);
}

static void sign_verify_rsa(void **state)
{
	(void)state;
	sign_and_verify(&rsa_id, RL_SIG_RSA);
}

static void verify_needs_the_named_certificate(void **state)
{
	rl_message_t m, d;
	rl_body_t body = { 0 };
	uint8_t out[4096], sig[RL_MAX_SIG_LEN];
	vp_wr_t wr;
	(void)state;

	memset(&m, 0, sizeof(m));
	m.hdr.version = RL_VERSION;
	m.hdr.ttl = 1;
	m.hdr.fragment = RL_FRAG_UNFRAGMENTED;
	body.code = RL_PING_REQ;
	m.contents.code = RL_PING_REQ;
	m.contents.body_st = &body;
	/* signed by the EC identity, but only the RSA certificate is attached */
	m.sec.certs.items = &rsa_id.cert;
	m.sec.certs.n_items = 1;
	vp_wr_init(&wr, out, sizeof(out));
	assert_int_equal(rl_msg_encode_signed(&wr, &m, ec_id.key, &ec_id.signer, sig, sizeof(sig)), 0);
	assert_int_equal(rl_msg_decode(out, vp_wr_len(&wr), &d), 0);
	assert_int_equal(rl_msg_verify_embedded(&d), VP_ENOTFOUND);
	/* the right key with the wrong algorithm claim */
	assert_int_equal(rl_msg_verify(rsa_id.key, 0, 0, d.contents.raw.p, d.contents.raw.len, &d.sec.sig),
	                 VP_EAUTH);
	/* identity none cannot be verified */
	d.sec.sig.identity.type = RL_SIGNER_NONE;
	assert_int_equal(rl_msg_verify_embedded(&d), VP_EUNSUPPORTED);
	/* signature buffer too small */
	vp_wr_init(&wr, out, sizeof(out));
	assert_int_equal(rl_msg_encode_signed(&wr, &m, ec_id.key, &ec_id.signer, sig, 8), VP_ESPACE);
}

static void stored_data_sign_verify(void **state)
{
	static const uint8_t rid[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };
	rl_stored_data_t sd = { 0 }, d;
	uint8_t sig[RL_MAX_SIG_LEN], out[512];
	vp_wr_t wr;
	vp_rd_t rd;
	(void)state;

	sd.storage_time = 1700000000000ull;
	sd.lifetime = 86400;
	sd.model = RL_MODEL_DICTIONARY;
	sd.key = (rl_bytes_t){ NODE.b, 16 };
	sd.exists = true;
	sd.value = (rl_bytes_t){ (const uint8_t *)"value", 5 };
	assert_int_equal(rl_stored_data_sign(ec_id.key, rid, 16, RL_KIND_VIPR_REGISTRATION, &sd,
	                                     &ec_id.signer, sig, sizeof(sig)), 0);
	vp_wr_init(&wr, out, sizeof(out));
	assert_int_equal(rl_stored_data_encode(&wr, &sd), 0);
	vp_rd_init(&rd, out, vp_wr_len(&wr));
	assert_int_equal(rl_stored_data_decode(&rd, RL_MODEL_DICTIONARY, &d), 0);
	assert_int_equal(rl_stored_data_verify(ec_id.key, rid, 16, RL_KIND_VIPR_REGISTRATION, &d), 0);
	/* the signature covers the resource, the kind and the storage time */
	assert_int_equal(rl_stored_data_verify(ec_id.key, rid, 15, RL_KIND_VIPR_REGISTRATION, &d), VP_EAUTH);
	assert_int_equal(rl_stored_data_verify(ec_id.key, rid, 16, 1, &d), VP_EAUTH);
	d.storage_time++;
	assert_int_equal(rl_stored_data_verify(ec_id.key, rid, 16, RL_KIND_VIPR_REGISTRATION, &d), VP_EAUTH);
	d.storage_time--;
	d.exists = false;
	assert_int_equal(rl_stored_data_verify(ec_id.key, rid, 16, RL_KIND_VIPR_REGISTRATION, &d), VP_EAUTH);
	d.exists = true;
	/* array model with RSA */
	sd.model = RL_MODEL_ARRAY;
	sd.index = 7;
	assert_int_equal(rl_stored_data_sign(rsa_id.key, rid, 16, 3, &sd, &rsa_id.signer, sig, sizeof(sig)), 0);
	assert_int_equal(sd.sig.sig_alg, RL_SIG_RSA);
	assert_int_equal(rl_stored_data_verify(rsa_id.key, rid, 16, 3, &sd), 0);
	sd.index = 8;
	assert_int_equal(rl_stored_data_verify(rsa_id.key, rid, 16, 3, &sd), VP_EAUTH);
}

/* ---- framing ----------------------------------------------------------- */

static void data_and_ack_frames(void **state)
{
	uint8_t in[64], out[64];
	rl_frame_t f;
	vp_wr_t wr;
	size_t n, fl;
	(void)state;

	n = tk_hex("80 00000001 000004 d2454c4f", in, sizeof(in));
	assert_int_equal(rl_frame_peek(in, n, &fl), 0);
	assert_int_equal(fl, 12);
	assert_int_equal(rl_frame_decode(in, n, &f), 0);
	assert_int_equal(f.type, RL_FRAME_DATA);
	assert_int_equal(f.sequence, 1);
	assert_int_equal(f.message.len, 4);
	assert_ptr_equal(f.message.p, in + 8);
	vp_wr_init(&wr, out, sizeof(out));
	assert_int_equal(rl_frame_encode(&wr, &f), 0);
	assert_int_equal(vp_wr_len(&wr), n);
	assert_memory_equal(out, in, n);

	n = tk_hex("81 00000005 80000001", in, sizeof(in));
	assert_int_equal(rl_frame_peek(in, 1, &fl), 0);
	assert_int_equal(fl, 9);
	assert_int_equal(rl_frame_decode(in, n, &f), 0);
	assert_int_equal(f.type, RL_FRAME_ACK);
	assert_int_equal(f.sequence, 5);
	assert_int_equal(f.received, 0x80000001);
	vp_wr_init(&wr, out, sizeof(out));
	assert_int_equal(rl_frame_encode_ack(&wr, 5, 0x80000001), 0);
	assert_memory_equal(out, in, n);
}

static void malformed_frames(void **state)
{
	uint8_t in[64];
	rl_frame_t f;
	size_t n, fl;
	(void)state;

	n = tk_hex("82 00000001 000004 d2454c4f", in, sizeof(in));
	assert_int_equal(rl_frame_decode(in, n, &f), VP_EBADTYPE);
	assert_int_equal(rl_frame_peek(in, n, &fl), VP_EBADTYPE);
	n = tk_hex("80 00000001 000005 d2454c4f", in, sizeof(in));
	assert_int_equal(rl_frame_decode(in, n, &f), VP_ETRUNC);
	n = tk_hex("80 00000001 000003 d2454c4f", in, sizeof(in));
	assert_int_equal(rl_frame_decode(in, n, &f), VP_ETRAILING);
	n = tk_hex("81 00000005 800000", in, sizeof(in));
	assert_int_equal(rl_frame_decode(in, n, &f), VP_ETRUNC);
	n = tk_hex("81 00000005 80000001 00", in, sizeof(in));
	assert_int_equal(rl_frame_decode(in, n, &f), VP_ETRAILING);
	assert_int_equal(rl_frame_decode(in, 0, &f), VP_ETRUNC);
	/* stream peeking */
	n = tk_hex("80 00000001 0000", in, sizeof(in));
	assert_int_equal(rl_frame_peek(in, n, &fl), VP_EAGAIN);
	assert_int_equal(rl_frame_peek(in, 0, &fl), VP_EAGAIN);
	n = tk_hex("80 00000001 010001", in, sizeof(in));
	assert_int_equal(rl_frame_peek(in, n, &fl), VP_ETOOBIG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(message_signature_input_layout),
		cmocka_unit_test(stored_data_signature_input_layout),
		cmocka_unit_test(cert_hash_identity),
		cmocka_unit_test(sign_verify_ecdsa),
		cmocka_unit_test(sign_verify_rsa),
		cmocka_unit_test(verify_needs_the_named_certificate),
		cmocka_unit_test(stored_data_sign_verify),
		cmocka_unit_test(data_and_ack_frames),
		cmocka_unit_test(malformed_frames),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
