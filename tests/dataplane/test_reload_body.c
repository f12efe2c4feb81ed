/* RELOAD message bodies, StoredData, specifiers and metadata: known answers, round trips, malformed input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "dataplane/reload.h"
#include "rl_testkit.h"

#define N16 "000102030405060708090a0b0c0d0e0f"
#define K16 "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"
#define VIPR "f0000100"

/* Signature shared by the StoredData vectors: sha256/ecdsa, cert_hash(4 bytes), 4-byte value. */
#define SIG17 "04 03 01 0006 04 04 a1b2c3d4 0004 deadbeef"

/* A dictionary StoredData for the ViPR kind: key = a Node-ID, value = 5 bytes, 24 h lifetime. */
#define SD_DICT "00000039 0000018bcfe56800 00015180 0010" K16 "01 00000005 0102030405" SIG17

static uint8_t buf[2048];
static size_t buflen;

/* Decode hex as a body of `code` (built-in models), check it re-encodes to the same bytes. */
static int body_of(uint16_t code, const char *hex, rl_body_t *b)
{
	uint8_t out[2048];
	vp_wr_t wr;
	int e;

	buflen = tk_hex(hex, buf, sizeof(buf));
	e = rl_body_decode(code, buf, buflen, rl_model_builtin, NULL, b);
	if (e)
		return e;
	vp_wr_init(&wr, out, sizeof(out));
	assert_int_equal(rl_body_encode(&wr, b), 0);
	assert_int_equal(vp_wr_len(&wr), buflen);
	assert_memory_equal(out, buf, buflen);
	return 0;
}

static int body_err(uint16_t code, const char *hex)
{
	rl_body_t b;
	buflen = tk_hex(hex, buf, sizeof(buf));
	return rl_body_decode(code, buf, buflen, rl_model_builtin, NULL, &b);
}

/* Every strict prefix of a valid body must be rejected. */
static void assert_prefixes_fail(uint16_t code, const char *hex)
{
	rl_body_t b;
	size_t n = tk_hex(hex, buf, sizeof(buf));
	for (size_t i = 0; i < n; i++)
		assert_true(rl_body_decode(code, buf, i, rl_model_builtin, NULL, &b) < 0);
}

/* ---- Probe ------------------------------------------------------------- */

static void probe(void **state)
{
	rl_body_t b;
	rl_iter_t it;
	uint8_t t;
	rl_probe_info_t pi;
	(void)state;

	assert_int_equal(body_of(RL_PROBE_REQ, "02 01 03", &b), 0);
	assert_int_equal(b.u.probe_req.requested.raw_count, 2);
	RL_ITER_INIT(&it, &b.u.probe_req.requested);
	assert_int_equal(rl_u8_next(&it, &t), 1);
	assert_int_equal(t, RL_PROBE_RESPONSIBLE_SET);
	assert_int_equal(rl_u8_next(&it, &t), 1);
	assert_int_equal(t, RL_PROBE_UPTIME);
	assert_int_equal(rl_u8_next(&it, &t), 0);
	assert_int_equal(body_err(RL_PROBE_REQ, "02 01 00"), VP_EBADTYPE);
	assert_int_equal(body_err(RL_PROBE_REQ, "03 01 03"), VP_ETRUNC);
	assert_int_equal(body_err(RL_PROBE_REQ, "02 01 03 00"), VP_ETRAILING);

	assert_int_equal(body_of(RL_PROBE_ANS, "000c 01 04 05f5e100 03 04 00000e10", &b), 0);
	RL_ITER_INIT(&it, &b.u.probe_ans.info);
	assert_int_equal(rl_probe_info_next(&it, &pi), 1);
	assert_int_equal(pi.type, RL_PROBE_RESPONSIBLE_SET);
	assert_int_equal(pi.value, 100000000);
	assert_int_equal(rl_probe_info_next(&it, &pi), 1);
	assert_int_equal(pi.value, 3600);
	assert_int_equal(rl_probe_info_next(&it, &pi), 0);
	assert_int_equal(body_err(RL_PROBE_ANS, "0005 01 03 05f5e1"), VP_EBADLEN);
	assert_int_equal(body_err(RL_PROBE_ANS, "0006 04 04 05f5e100"), VP_EBADTYPE);
	assert_int_equal(body_err(RL_PROBE_ANS, "0007 01 04 05f5e100"), VP_ETRUNC);
	assert_prefixes_fail(RL_PROBE_ANS, "000c 01 04 05f5e100 03 04 00000e10");
}

/* ---- Attach / AppAttach ------------------------------------------------ */

#define CAND_HOST "01 06 7f000001 17c4  04  01 31  7e0000ff  01  0000"
#define CAND_SRFLX "02 12 20010db8000000000000000000000001 17c4  01  02 3232  64000000  02" \
                   "  01 06 c0000201 1f90  0008 0002 6161 0002 6262"
#define ATTACH "05 7566726167  02 7077  07 70617373697665  0041 " CAND_HOST CAND_SRFLX " 01"

static void attach(void **state)
{
	rl_body_t b;
	rl_iter_t it, xit;
	rl_ice_candidate_t c;
	rl_ice_ext_t x;
	(void)state;

	assert_int_equal(body_of(RL_ATTACH_REQ, ATTACH, &b), 0);
	assert_int_equal(b.u.attach.ufrag.len, 5);
	assert_memory_equal(b.u.attach.ufrag.p, "ufrag", 5);
	assert_memory_equal(b.u.attach.password.p, "pw", 2);
	assert_memory_equal(b.u.attach.role.p, "passive", 7);
	assert_true(b.u.attach.send_update);
	assert_int_equal(b.u.attach.candidates.raw_count, 2);
	RL_ITER_INIT(&it, &b.u.attach.candidates);
	assert_int_equal(rl_ice_candidate_next(&it, &c), 1);
	assert_int_equal(c.addr.type, RL_ADDR_IPV4);
	assert_memory_equal(c.addr.addr, "\x7f\x00\x00\x01", 4);
	assert_int_equal(c.addr.port, 6084);
	assert_int_equal(c.overlay_link, RL_LINK_TLS_TCP_FH_NO_ICE);
	assert_memory_equal(c.foundation.p, "1", 1);
	assert_int_equal(c.priority, 0x7e0000ff);
	assert_int_equal(c.cand_type, RL_CAND_HOST);
	assert_int_equal(c.exts.raw_count, 0);
	assert_int_equal(rl_ice_candidate_next(&it, &c), 1);
	assert_int_equal(c.addr.type, RL_ADDR_IPV6);
	assert_int_equal(c.addr.addr[15], 1);
	assert_int_equal(c.cand_type, RL_CAND_SRFLX);
	assert_int_equal(c.rel_addr.type, RL_ADDR_IPV4);
	assert_int_equal(c.rel_addr.port, 8080);
	RL_ITER_INIT(&xit, &c.exts);
	assert_int_equal(rl_ice_ext_next(&xit, &x), 1);
	assert_memory_equal(x.name.p, "aa", 2);
	assert_memory_equal(x.value.p, "bb", 2);
	assert_int_equal(rl_ice_ext_next(&xit, &x), 0);
	assert_int_equal(rl_ice_candidate_next(&it, &c), 0);
	/* the answer has the same layout */
	assert_int_equal(body_of(RL_ATTACH_ANS, ATTACH, &b), 0);
}

static void attach_malformed(void **state)
{
	(void)state;
	/* candidate type 5 */
	assert_int_equal(body_err(RL_ATTACH_REQ, "00 00 00 0012 01 06 7f000001 17c4 04 01 31 7e0000ff 05 0000 00"),
	                 VP_EBADTYPE);
	/* address type 3 */
	assert_int_equal(body_err(RL_ATTACH_REQ, "00 00 00 0012 03 06 7f000001 17c4 04 01 31 7e0000ff 01 0000 00"),
	                 VP_EBADTYPE);
	/* IPv4 with length 7 */
	assert_int_equal(body_err(RL_ATTACH_REQ, "00 00 00 0013 01 07 7f000001 17c4 00 04 01 31 7e0000ff 01 0000 00"),
	                 VP_EBADLEN);
	/* send_update = 2 */
	assert_int_equal(body_err(RL_ATTACH_REQ, "00 00 00 0000 02"), VP_EMALFORMED);
	/* send_update missing */
	assert_int_equal(body_err(RL_ATTACH_REQ, "00 00 00 0000"), VP_ETRUNC);
	/* candidate list one byte longer than its candidate */
	assert_int_equal(body_err(RL_ATTACH_REQ, "00 00 00 0013 01 06 7f000001 17c4 04 01 31 7e0000ff 01 0000 00 01"),
	                 VP_ETRUNC);
	/* srflx without its related address: the extensions length is read as an address of type 0 */
	assert_int_equal(body_err(RL_ATTACH_REQ, "00 00 00 0012 01 06 7f000001 17c4 04 01 31 7e0000ff 02 0000 00"),
	                 VP_EBADTYPE);
	assert_prefixes_fail(RL_ATTACH_REQ, ATTACH);
}

static void app_attach(void **state)
{
	static const char APP[] = "02 7566 02 7077 f101 06 616374697665 0012 " CAND_HOST;
	rl_body_t b;
	(void)state;
	assert_int_equal(body_of(RL_APP_ATTACH_REQ, APP, &b), 0);
	assert_int_equal(b.u.app_attach.application, 0xf101);
	assert_memory_equal(b.u.app_attach.role.p, "active", 6);
	assert_int_equal(b.u.app_attach.candidates.raw_count, 1);
	assert_int_equal(body_of(RL_APP_ATTACH_ANS, APP, &b), 0);
	assert_prefixes_fail(RL_APP_ATTACH_REQ, APP);
	assert_int_equal(body_err(RL_APP_ATTACH_REQ, "02 7566 02 7077 f101 06 616374697665 0000 00"), VP_ETRAILING);
}

/* ---- Store ------------------------------------------------------------- */

#define STORE "10" N16 "00 0000004d " VIPR "0000000000000000 0000003d " SD_DICT

static void store_dictionary(void **state)
{
	rl_body_t b;
	rl_iter_t kit, sit;
	rl_store_kind_data_t kd;
	rl_stored_data_t sd;
	(void)state;

	assert_int_equal(body_of(RL_STORE_REQ, STORE, &b), 0);
	assert_int_equal(b.u.store_req.resource.len, 16);
	assert_int_equal(b.u.store_req.replica_number, 0);
	assert_int_equal(b.u.store_req.kind_data.raw_count, 1);
	RL_ITER_INIT(&kit, &b.u.store_req.kind_data);
	assert_int_equal(rl_store_kind_data_next(&kit, &kd), 1);
	assert_int_equal(kd.kind, RL_KIND_VIPR_REGISTRATION);
	assert_true(kd.generation == 0);
	assert_int_equal(kd.values.raw_count, 1);
	RL_ITER_INIT(&sit, &kd.values);
	assert_int_equal(rl_stored_data_next(&sit, RL_MODEL_DICTIONARY, &sd), 1);
	assert_true(sd.storage_time == 0x18bcfe56800ull);
	assert_int_equal(sd.lifetime, 86400);
	assert_int_equal(sd.key.len, 16);
	assert_int_equal(sd.key.p[0], 0xf0);
	assert_true(sd.exists);
	assert_int_equal(sd.value.len, 5);
	assert_memory_equal(sd.value.p, "\x01\x02\x03\x04\x05", 5);
	assert_int_equal(sd.raw_value.len, 18 + 1 + 9);
	assert_int_equal(sd.sig.identity.type, RL_SIGNER_CERT_HASH);
	assert_int_equal(sd.sig.value.len, 4);
	assert_int_equal(rl_stored_data_next(&sit, RL_MODEL_DICTIONARY, &sd), 0);
	assert_int_equal(rl_store_kind_data_next(&kit, &kd), 0);
	assert_prefixes_fail(RL_STORE_REQ, STORE);
}

static void store_built_from_items_matches(void **state)
{
	static const uint8_t node[16] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 };
	static const uint8_t key[16] = { 0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7,
	                                 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff };
	static const uint8_t hash[4] = { 0xa1, 0xb2, 0xc3, 0xd4 };
	static const uint8_t sig[4] = { 0xde, 0xad, 0xbe, 0xef };
	rl_stored_data_t sd = { 0 };
	rl_store_kind_data_t kd = { 0 };
	rl_body_t b = { 0 };
	uint8_t out[512];
	vp_wr_t wr;
	(void)state;

	sd.storage_time = 0x18bcfe56800ull;
	sd.lifetime = 86400;
	sd.model = RL_MODEL_DICTIONARY;
	sd.key = (rl_bytes_t){ key, 16 };
	sd.exists = true;
	sd.value = (rl_bytes_t){ (const uint8_t *)"\x01\x02\x03\x04\x05", 5 };
	sd.sig.hash_alg = RL_HASH_SHA256;
	sd.sig.sig_alg = RL_SIG_ECDSA;
	sd.sig.identity = (rl_signer_identity_t){ RL_SIGNER_CERT_HASH, RL_HASH_SHA256, { hash, 4 } };
	sd.sig.value = (rl_bytes_t){ sig, 4 };
	kd.kind = RL_KIND_VIPR_REGISTRATION;
	kd.values.items = &sd;
	kd.values.n_items = 1;
	b.code = RL_STORE_REQ;
	b.u.store_req.resource = (rl_bytes_t){ node, 16 };
	b.u.store_req.kind_data.items = &kd;
	b.u.store_req.kind_data.n_items = 1;
	vp_wr_init(&wr, out, sizeof(out));
	assert_int_equal(rl_body_encode(&wr, &b), 0);
	buflen = tk_hex(STORE, buf, sizeof(buf));
	assert_int_equal(vp_wr_len(&wr), buflen);
	assert_memory_equal(out, buf, buflen);
}

static void stored_data_malformed(void **state)
{
	rl_body_t b;
	(void)state;
	/* StoredData length one too large (runs past the values vector) */
	assert_int_equal(body_err(RL_STORE_REQ, "10" N16 "00 0000004d " VIPR "0000000000000000 0000003d "
	                          "0000003a 0000018bcfe56800 00015180 0010" K16 "01 00000005 0102030405" SIG17),
	                 VP_ETRUNC);
	/* StoredData length one too small: the signature value overruns it */
	assert_int_equal(body_err(RL_STORE_REQ, "10" N16 "00 0000004d " VIPR "0000000000000000 0000003d "
	                          "00000038 0000018bcfe56800 00015180 0010" K16 "01 00000005 0102030405" SIG17),
	                 VP_ETRUNC);
	/* one spare byte inside the StoredData, every enclosing length agreeing */
	assert_int_equal(body_err(RL_STORE_REQ, "10" N16 "00 0000004e " VIPR "0000000000000000 0000003e "
	                          "0000003a 0000018bcfe56800 00015180 0010" K16 "01 00000005 0102030405" SIG17 "00"),
	                 VP_ETRAILING);
	/* exists = 2 */
	assert_int_equal(body_err(RL_STORE_REQ, "10" N16 "00 0000004d " VIPR "0000000000000000 0000003d "
	                          "00000039 0000018bcfe56800 00015180 0010" K16 "02 00000005 0102030405" SIG17),
	                 VP_EMALFORMED);
	/* ... which framing-only decoding (no model resolver) cannot see */
	buflen = tk_hex("10" N16 "00 0000004d " VIPR "0000000000000000 0000003d "
	                "00000039 0000018bcfe56800 00015180 0010" K16 "02 00000005 0102030405" SIG17,
	                buf, sizeof(buf));
	assert_int_equal(rl_body_decode(RL_STORE_REQ, buf, buflen, NULL, NULL, &b), 0);
	/* value vector overruns the StoredData */
	assert_int_equal(body_err(RL_STORE_REQ, "10" N16 "00 0000004d " VIPR "0000000000000000 0000003d "
	                          "00000039 0000018bcfe56800 00015180 0010" K16 "01 00000006 0102030405" SIG17),
	                 VP_ETRUNC);
	/* a kind_data vector that ends inside a StoredData */
	assert_int_equal(body_err(RL_STORE_REQ, "10" N16 "00 0000004c " VIPR "0000000000000000 0000003d " SD_DICT),
	                 VP_ETRUNC);
	/* resource id length overruns everything */
	assert_int_equal(body_err(RL_STORE_REQ, "ff" N16), VP_ETRUNC);
}

static void stored_data_single_and_array(void **state)
{
	static const char SINGLE[] = "0000001a 0000000000000001 0000003c 00 00000002 abcd 00 00 03 0000 0000";
	static const char ARRAY[] = "0000001e 0000000000000001 0000003c ffffffff 01 00000001 ab 04 01 03 0000 0001 ee";
	rl_stored_data_t sd;
	vp_rd_t rd;
	uint8_t out[128];
	vp_wr_t wr;
	size_t n;
	(void)state;

	n = tk_hex(SINGLE, buf, sizeof(buf));
	vp_rd_init(&rd, buf, n);
	assert_int_equal(rl_stored_data_decode(&rd, RL_MODEL_SINGLE, &sd), 0);
	assert_int_equal(vp_rd_done(&rd), 0);
	assert_false(sd.exists);
	assert_int_equal(sd.value.len, 2);
	assert_int_equal(sd.lifetime, 60);
	assert_int_equal(sd.sig.identity.type, RL_SIGNER_NONE);
	vp_wr_init(&wr, out, sizeof(out));
	assert_int_equal(rl_stored_data_encode(&wr, &sd), 0);
	assert_memory_equal(out, buf, n);
	/* the same bytes are not a valid array entry */
	vp_rd_init(&rd, buf, n);
	assert_true(rl_stored_data_decode(&rd, RL_MODEL_ARRAY, &sd) < 0);

	n = tk_hex(ARRAY, buf, sizeof(buf));
	vp_rd_init(&rd, buf, n);
	assert_int_equal(rl_stored_data_decode(&rd, RL_MODEL_ARRAY, &sd), 0);
	assert_int_equal(vp_rd_done(&rd), 0);
	assert_int_equal(sd.index, RL_ARRAY_APPEND);
	assert_true(sd.exists);
	assert_int_equal(sd.sig.sig_alg, RL_SIG_RSA);
	vp_wr_init(&wr, out, sizeof(out));
	assert_int_equal(rl_stored_data_encode(&wr, &sd), 0);
	assert_memory_equal(out, buf, n);

	/* unknown model: framing only, round trip through raw_value */
	vp_rd_init(&rd, buf, n);
	assert_int_equal(rl_stored_data_decode(&rd, RL_MODEL_UNKNOWN, &sd), 0);
	assert_int_equal(sd.raw_value.len, 0x1e - 12);
	vp_wr_init(&wr, out, sizeof(out));
	assert_int_equal(rl_stored_data_encode(&wr, &sd), 0);
	assert_memory_equal(out, buf, n);
	/* shorter than storage_time + lifetime */
	n = tk_hex("0000000b 0000000000000001 000000", buf, sizeof(buf));
	vp_rd_init(&rd, buf, n);
	assert_int_equal(rl_stored_data_decode(&rd, RL_MODEL_UNKNOWN, &sd), VP_ETRUNC);
}

static void store_ans(void **state)
{
	rl_body_t b;
	rl_iter_t it, nit;
	rl_store_kind_resp_t r;
	vp_id_t id;
	(void)state;
	assert_int_equal(body_of(RL_STORE_ANS, "002e " VIPR "0000000000000001 0020 " N16 K16, &b), 0);
	RL_ITER_INIT(&it, &b.u.store_ans.responses);
	assert_int_equal(rl_store_kind_resp_next(&it, &r), 1);
	assert_int_equal(r.kind, RL_KIND_VIPR_REGISTRATION);
	assert_true(r.generation == 1);
	assert_int_equal(RL_LIST_COUNT(&r.replicas), 2);
	RL_ITER_INIT(&nit, &r.replicas);
	assert_int_equal(rl_node_next(&nit, &id), 1);
	assert_int_equal(id.b[15], 0x0f);
	assert_int_equal(rl_node_next(&nit, &id), 1);
	assert_int_equal(id.b[0], 0xf0);
	assert_int_equal(rl_node_next(&nit, &id), 0);
	assert_int_equal(rl_store_kind_resp_next(&it, &r), 0);
	/* 17 bytes of replicas is not a whole number of Node-IDs */
	assert_int_equal(body_err(RL_STORE_ANS, "001f " VIPR "0000000000000001 0011 " N16 "00"), VP_EBADLEN);
}

/* ---- Fetch / Stat ------------------------------------------------------ */

#define SPEC_DICT VIPR "0000000000000000 0014 0012 0010" K16
#define SPEC_ARRAY "00000003 0000000000000000 000a 0008 00000000 ffffffff"
#define SPEC_SINGLE "00000002 0000000000000007 0000"
#define FETCH "10" N16 "0048 " SPEC_DICT SPEC_ARRAY SPEC_SINGLE

static void fetch_req(void **state)
{
	rl_body_t b;
	rl_iter_t it, kit;
	rl_specifier_t s;
	rl_bytes_t k;
	rl_array_range_t r;
	(void)state;

	assert_int_equal(body_of(RL_FETCH_REQ, FETCH, &b), 0);
	assert_int_equal(b.u.fetch_req.specifiers.raw_count, 3);
	RL_ITER_INIT(&it, &b.u.fetch_req.specifiers);
	assert_int_equal(rl_specifier_next(&it, rl_model_builtin, NULL, &s), 1);
	assert_int_equal(s.kind, RL_KIND_VIPR_REGISTRATION);
	assert_int_equal(s.model, RL_MODEL_DICTIONARY);
	RL_ITER_INIT(&kit, &s.keys);
	assert_int_equal(rl_bytes16_next(&kit, &k), 1);
	assert_int_equal(k.len, 16);
	assert_int_equal(rl_bytes16_next(&kit, &k), 0);
	assert_int_equal(rl_specifier_next(&it, rl_model_builtin, NULL, &s), 1);
	assert_int_equal(s.model, RL_MODEL_ARRAY);
	RL_ITER_INIT(&kit, &s.indices);
	assert_int_equal(rl_array_range_next(&kit, &r), 1);
	assert_int_equal(r.first, 0);
	assert_int_equal(r.last, 0xffffffff);
	assert_int_equal(rl_specifier_next(&it, rl_model_builtin, NULL, &s), 1);
	assert_int_equal(s.model, RL_MODEL_SINGLE);
	assert_true(s.generation == 7);
	assert_int_equal(rl_specifier_next(&it, rl_model_builtin, NULL, &s), 0);
	/* without a resolver the selectors stay raw and still round-trip */
	RL_ITER_INIT(&it, &b.u.fetch_req.specifiers);
	assert_int_equal(rl_specifier_next(&it, NULL, NULL, &s), 1);
	assert_int_equal(s.model, RL_MODEL_UNKNOWN);
	assert_int_equal(s.raw.len, 0x14);
	/* StatReq has the same layout */
	assert_int_equal(body_of(RL_STAT_REQ, FETCH, &b), 0);
	assert_prefixes_fail(RL_FETCH_REQ, FETCH);
}

static void fetch_req_malformed(void **state)
{
	(void)state;
	/* a single-value specifier with a selector byte */
	assert_int_equal(body_err(RL_FETCH_REQ, "00 000f 00000002 0000000000000000 0001 00"), VP_ETRAILING);
	/* an array range of 7 bytes */
	assert_int_equal(body_err(RL_FETCH_REQ, "00 0017 00000003 0000000000000000 0009 0007 00000000 ffffff"),
	                 VP_EBADLEN);
	/* dictionary key list overruns the specifier */
	assert_int_equal(body_err(RL_FETCH_REQ, "00 0012 " VIPR "0000000000000000 0004 0003 0002 aa"), VP_ETRUNC);
	/* specifier length overruns the list */
	assert_int_equal(body_err(RL_FETCH_REQ, "00 000e 00000002 0000000000000000 0001"), VP_ETRUNC);
}

#define FETCH_ANS "0000004d " VIPR "0000000000000003 0000003d " SD_DICT

static void fetch_ans(void **state)
{
	rl_body_t b;
	rl_iter_t it, sit;
	rl_fetch_kind_resp_t r;
	rl_stored_data_t sd;
	(void)state;
	assert_int_equal(body_of(RL_FETCH_ANS, FETCH_ANS, &b), 0);
	RL_ITER_INIT(&it, &b.u.fetch_ans.responses);
	assert_int_equal(rl_fetch_kind_resp_next(&it, &r), 1);
	assert_true(r.generation == 3);
	RL_ITER_INIT(&sit, &r.values);
	assert_int_equal(rl_stored_data_next(&sit, RL_MODEL_DICTIONARY, &sd), 1);
	assert_int_equal(sd.value.len, 5);
	assert_int_equal(rl_fetch_kind_resp_next(&it, &r), 0);
	assert_prefixes_fail(RL_FETCH_ANS, FETCH_ANS);
}

#define META_DICT "00000029 0000018bcfe56800 00015180 0010" K16 "01 00000005 04 04 a1b2c3d4"
#define STAT_ANS "0000003d " VIPR "0000000000000003 0000002d " META_DICT

static void stat_ans(void **state)
{
	rl_body_t b;
	rl_iter_t it, mit;
	rl_stat_kind_resp_t r;
	rl_stored_meta_t m;
	(void)state;
	assert_int_equal(body_of(RL_STAT_ANS, STAT_ANS, &b), 0);
	RL_ITER_INIT(&it, &b.u.stat_ans.responses);
	assert_int_equal(rl_stat_kind_resp_next(&it, &r), 1);
	RL_ITER_INIT(&mit, &r.values);
	assert_int_equal(rl_stored_meta_next(&mit, RL_MODEL_DICTIONARY, &m), 1);
	assert_int_equal(m.key.len, 16);
	assert_true(m.exists);
	assert_int_equal(m.value_length, 5);
	assert_int_equal(m.hash_alg, RL_HASH_SHA256);
	assert_int_equal(m.hash.len, 4);
	assert_int_equal(rl_stored_meta_next(&mit, RL_MODEL_DICTIONARY, &m), 0);
	assert_prefixes_fail(RL_STAT_ANS, STAT_ANS);
	/* metadata with a spare byte */
	assert_int_equal(body_err(RL_STAT_ANS, "0000003e " VIPR "0000000000000003 0000002e "
	                          "0000002a 0000018bcfe56800 00015180 0010" K16 "01 00000005 04 04 a1b2c3d4 00"),
	                 VP_ETRAILING);
}

/* ---- Find -------------------------------------------------------------- */

static void find(void **state)
{
	rl_body_t b;
	rl_iter_t it;
	uint32_t k;
	rl_find_result_t f;
	(void)state;
	assert_int_equal(body_of(RL_FIND_REQ, "04 a1a2a3a4 08 00000001 " VIPR, &b), 0);
	RL_ITER_INIT(&it, &b.u.find_req.kinds);
	assert_int_equal(rl_u32_next(&it, &k), 1);
	assert_int_equal(k, 1);
	assert_int_equal(rl_u32_next(&it, &k), 1);
	assert_int_equal(k, RL_KIND_VIPR_REGISTRATION);
	assert_int_equal(rl_u32_next(&it, &k), 0);
	assert_int_equal(body_err(RL_FIND_REQ, "04 a1a2a3a4 07 00000001 f00001"), VP_EBADLEN);

	assert_int_equal(body_of(RL_FIND_ANS, "0009 " VIPR "04 a1a2a3a4", &b), 0);
	RL_ITER_INIT(&it, &b.u.find_ans.results);
	assert_int_equal(rl_find_result_next(&it, &f), 1);
	assert_int_equal(f.kind, RL_KIND_VIPR_REGISTRATION);
	assert_int_equal(f.closest.len, 4);
	assert_int_equal(body_err(RL_FIND_ANS, "0009 " VIPR "05 a1a2a3a4"), VP_ETRUNC);
}

/* ---- Join / Leave / Update / RouteQuery -------------------------------- */

static void join_leave(void **state)
{
	rl_body_t b;
	rl_chord_leave_t l;
	rl_iter_t it;
	vp_id_t id;
	uint8_t out[64];
	vp_wr_t wr;
	(void)state;
	assert_int_equal(body_of(RL_JOIN_REQ, N16 "0000", &b), 0);
	assert_int_equal(b.u.join_req.joining_peer.b[1], 1);
	assert_int_equal(b.u.join_req.overlay_data.len, 0);
	assert_int_equal(body_err(RL_JOIN_REQ, "0001020304"), VP_ETRUNC);
	assert_int_equal(body_of(RL_JOIN_ANS, "0003 616263", &b), 0);
	assert_memory_equal(b.u.join_ans.overlay_data.p, "abc", 3);

	assert_int_equal(body_of(RL_LEAVE_REQ, K16 "0013 01 0010" N16, &b), 0);
	assert_int_equal(b.u.leave_req.leaving_peer.b[0], 0xf0);
	assert_int_equal(rl_chord_leave_decode(b.u.leave_req.overlay_data.p,
	                                       b.u.leave_req.overlay_data.len, &l), 0);
	assert_int_equal(l.type, RL_LEAVE_FROM_SUCC);
	RL_ITER_INIT(&it, &l.nodes);
	assert_int_equal(rl_node_next(&it, &id), 1);
	assert_int_equal(id.b[15], 15);
	vp_wr_init(&wr, out, sizeof(out));
	assert_int_equal(rl_chord_leave_encode(&wr, &l), 0);
	assert_int_equal(vp_wr_len(&wr), 19);
	assert_memory_equal(out, b.u.leave_req.overlay_data.p, 19);
	assert_int_equal(rl_chord_leave_decode((const uint8_t *)"\x03\x00\x00", 3, &l), VP_EBADTYPE);
	assert_int_equal(rl_chord_leave_decode((const uint8_t *)"\x02\x00\x01\x00", 4, &l), VP_EBADLEN);
	assert_int_equal(rl_chord_leave_decode((const uint8_t *)"\x02\x00\x00\x00", 4, &l), VP_ETRAILING);
	assert_int_equal(body_of(RL_LEAVE_ANS, "", &b), 0);
	assert_int_equal(body_err(RL_LEAVE_ANS, "00"), VP_ETRAILING);
}

static void chord_update(void **state)
{
	rl_body_t b;
	rl_iter_t it;
	vp_id_t id;
	(void)state;
	assert_int_equal(body_of(RL_UPDATE_REQ, "00000e10 01", &b), 0);
	assert_int_equal(b.u.update.uptime, 3600);
	assert_int_equal(b.u.update.type, RL_UPDATE_PEER_READY);
	assert_int_equal(body_of(RL_UPDATE_REQ, "00000e10 02 0010" N16 "0020" K16 N16, &b), 0);
	assert_int_equal(RL_LIST_COUNT(&b.u.update.predecessors), 1);
	assert_int_equal(RL_LIST_COUNT(&b.u.update.successors), 2);
	RL_ITER_INIT(&it, &b.u.update.successors);
	assert_int_equal(rl_node_next(&it, &id), 1);
	assert_int_equal(id.b[0], 0xf0);
	assert_int_equal(body_of(RL_UPDATE_REQ, "00000e10 03 0010" N16 "0010" K16 "0020" N16 K16, &b), 0);
	assert_int_equal(RL_LIST_COUNT(&b.u.update.fingers), 2);
	assert_int_equal(body_err(RL_UPDATE_REQ, "00000e10 04"), VP_EBADTYPE);
	assert_int_equal(body_err(RL_UPDATE_REQ, "00000e10 00"), VP_EBADTYPE);
	assert_int_equal(body_err(RL_UPDATE_REQ, "00000e10 02 0011" N16 "00 0000"), VP_EBADLEN);
	assert_int_equal(body_err(RL_UPDATE_REQ, "00000e10 02 0010" N16), VP_ETRUNC);
	assert_int_equal(body_err(RL_UPDATE_REQ, "00000e10 01 0000"), VP_ETRAILING);
	assert_int_equal(body_of(RL_UPDATE_ANS, "", &b), 0);
}

static void route_query(void **state)
{
	rl_body_t b;
	(void)state;
	assert_int_equal(body_of(RL_ROUTE_QUERY_REQ, "01 01 10" N16 "0000", &b), 0);
	assert_true(b.u.route_query_req.send_update);
	assert_int_equal(b.u.route_query_req.destination.type, RL_DEST_NODE);
	assert_int_equal(body_of(RL_ROUTE_QUERY_REQ, "00 02 05 04 a1a2a3a4 0001 00", &b), 0);
	assert_int_equal(b.u.route_query_req.destination.type, RL_DEST_RESOURCE);
	assert_int_equal(body_err(RL_ROUTE_QUERY_REQ, "02 01 10" N16 "0000"), VP_EMALFORMED);
	assert_int_equal(body_err(RL_ROUTE_QUERY_REQ, "01 00 10" N16 "0000"), VP_ERELOAD_DEST);
	assert_int_equal(body_of(RL_ROUTE_QUERY_ANS, K16, &b), 0);
	assert_int_equal(b.u.route_query_ans.next_peer.b[15], 0xff);
	assert_int_equal(body_err(RL_ROUTE_QUERY_ANS, "f0f1f2f3f4f5f6f7f8f9fafbfcfdfe"), VP_ETRUNC);
	assert_int_equal(body_err(RL_ROUTE_QUERY_ANS, K16 "00"), VP_ETRAILING);
}

/* ---- Ping / ConfigUpdate / Error / unknown ------------------------------ */

static void ping(void **state)
{
	rl_body_t b;
	(void)state;
	assert_int_equal(body_of(RL_PING_REQ, "0004 00000000", &b), 0);
	assert_int_equal(b.u.ping_req.padding.len, 4);
	assert_int_equal(body_of(RL_PING_ANS, "0102030405060708 0000018bcfe56800", &b), 0);
	assert_true(b.u.ping_ans.response_id == 0x0102030405060708ull);
	assert_true(b.u.ping_ans.time == 0x18bcfe56800ull);
	assert_int_equal(body_err(RL_PING_ANS, "0102030405060708 0000018bcfe568"), VP_ETRUNC);
	assert_int_equal(body_err(RL_PING_REQ, "0005 00000000"), VP_ETRUNC);
}

static void config_update(void **state)
{
	rl_body_t b;
	rl_iter_t it;
	rl_bytes_t k;
	(void)state;
	assert_int_equal(body_of(RL_CONFIG_UPDATE_REQ, "01 00000006 000003 3c613e", &b), 0);
	assert_int_equal(b.u.config_update_req.type, RL_CONFIG_UPDATE_CONFIG);
	assert_memory_equal(b.u.config_update_req.config_data.p, "<a>", 3);
	assert_int_equal(body_of(RL_CONFIG_UPDATE_REQ, "02 0000000a 000007 0005 6b696e6431", &b), 0);
	RL_ITER_INIT(&it, &b.u.config_update_req.kinds);
	assert_int_equal(rl_bytes16_next(&it, &k), 1);
	assert_memory_equal(k.p, "kind1", 5);
	assert_int_equal(rl_bytes16_next(&it, &k), 0);
	assert_int_equal(body_err(RL_CONFIG_UPDATE_REQ, "03 00000000"), VP_EBADTYPE);
	assert_int_equal(body_err(RL_CONFIG_UPDATE_REQ, "01 00000007 000003 3c613e 00"), VP_ETRAILING);
	assert_int_equal(body_err(RL_CONFIG_UPDATE_REQ, "01 00000005 000003 3c613e"), VP_ETRUNC);
	assert_int_equal(body_err(RL_CONFIG_UPDATE_REQ, "02 00000009 000006 0005 6b696e64"), VP_ETRUNC);
	assert_int_equal(body_of(RL_CONFIG_UPDATE_ANS, "", &b), 0);
}

static void error_and_unknown_code(void **state)
{
	rl_body_t b;
	(void)state;
	assert_int_equal(body_of(RL_ERROR, "0003 0009 4e6f7420666f756e64", &b), 0);
	assert_int_equal(b.u.error.code, RL_ERR_NOT_FOUND);
	assert_memory_equal(b.u.error.info.p, "Not found", 9);
	assert_int_equal(body_err(RL_ERROR, "0003 000a 4e6f7420666f756e64"), VP_ETRUNC);
	assert_int_equal(body_err(RL_ERROR, "0003"), VP_ETRUNC);
	assert_int_equal(body_err(5, ""), VP_EBADTYPE);
	assert_int_equal(body_err(0, ""), VP_EBADTYPE);
}

/*
 * Unknown_Kind (12) and Generation_Counter_Too_Low (5) give error_info a
 * structure (a Kind-ID list, the StoreAns shape): one whose inner lengths
 * overrun error_info, or leave bytes over, is refused by the decoder (and so
 * by `viprctl decode`, which prints through it) and by the encoder.  Empty
 * info stays valid, and other codes keep free text.
 */
static void structured_error_info_must_fit(void **state)
{
	rl_body_t b;
	uint8_t out[256];
	vp_wr_t wr;
	(void)state;
	/* Unknown_Kind: one Kind-ID in a 1-byte-length list. */
	assert_int_equal(body_of(RL_ERROR, "000c 0005 04 f0000100", &b), 0);
	assert_int_equal(body_of(RL_ERROR, "000c 0000", &b), 0);
	assert_int_equal(body_err(RL_ERROR, "000c 0005 08 f0000100"), VP_ETRUNC);    /* list overruns */
	assert_int_equal(body_err(RL_ERROR, "000c 0005 03 f0000100"), VP_EBADLEN); /* not whole ids */
	assert_int_equal(body_err(RL_ERROR, "000c 0006 04 f0000100 00"), VP_ETRAILING);
	/* Generation_Counter_Too_Low: StoreKindResponse list (kind, generation, replicas). */
	assert_int_equal(body_of(RL_ERROR, "0005 0010 000e f0000100 0000000000000007 0000", &b), 0);
	assert_int_equal(body_err(RL_ERROR, "0005 0010 00ff f0000100 0000000000000007 0000"), VP_ETRUNC);
	assert_int_equal(body_err(RL_ERROR, "0005 0010 000e f0000100 0000000000000007 0010"), VP_ETRUNC);
	assert_int_equal(body_err(RL_ERROR, "0005 0003 4e6f20"), VP_ETRUNC); /* text where a structure belongs */
	/* Free text for other codes. */
	assert_int_equal(body_of(RL_ERROR, "0002 0003 4e6f20", &b), 0);
	/* The encoder refuses to write a malformed one. */
	b.code = RL_ERROR;
	b.u.error.code = RL_ERR_UNKNOWN_KIND;
	b.u.error.info = (rl_bytes_t){ (const uint8_t *)"\x08\xf0\x00\x01\x00", 5 };
	vp_wr_init(&wr, out, sizeof(out));
	assert_true(rl_body_encode(&wr, &b) < 0);
}

/*
 * Text fields carry arbitrary bytes: the JSON must escape every one of them
 * (quote, backslash, controls, bytes over 0x7e) so the output is plain
 * printable ASCII whatever the peer sent, and nothing can close the string.
 */
static void json_escapes_every_byte(void **state)
{
	static uint8_t msg[2048];
	uint8_t ufrag[255], pw[4] = { '"', '\\', '\n', 0xff };
	char *out = NULL, want[255 * 6 + 3], *w = want;
	size_t outlen = 0;
	rl_message_t m;
	rl_body_t b;
	vp_wr_t wr;
	FILE *f;
	(void)state;

	for (int i = 0; i < 255; i++)
		ufrag[i] = (uint8_t)(i + 1);
	memset(&b, 0, sizeof(b));
	b.code = RL_ATTACH_REQ;
	b.u.attach.ufrag.p = ufrag;
	b.u.attach.ufrag.len = sizeof(ufrag);
	b.u.attach.password.p = pw;
	b.u.attach.password.len = sizeof(pw);
	memset(&m, 0, sizeof(m));
	m.hdr.version = RL_VERSION;
	m.hdr.ttl = 1;
	m.hdr.fragment = RL_FRAG_UNFRAGMENTED;
	m.contents.code = RL_ATTACH_REQ;
	m.contents.body_st = &b;
	m.sec.sig.identity.type = RL_SIGNER_NONE;
	vp_wr_init(&wr, msg, sizeof(msg));
	assert_int_equal(rl_msg_encode(&wr, &m), 0);

	f = open_memstream(&out, &outlen);
	assert_non_null(f);
	assert_int_equal(rl_json_message(f, msg, vp_wr_len(&wr), rl_model_builtin, NULL), 0);
	fclose(f);
	for (size_t i = 0; i < outlen; i++)
		assert_true(out[i] == '\n' || (out[i] >= 0x20 && out[i] < 0x7f));
	*w++ = '"';
	for (int i = 0; i < 255; i++) {
		uint8_t c = ufrag[i];
		if (c == '"' || c == '\\')
			w += sprintf(w, "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			w += sprintf(w, "\\u%04x", c);
		else
			*w++ = (char)c;
	}
	*w++ = '"';
	*w = 0;
	assert_non_null(strstr(out, want));
	assert_non_null(strstr(out, "\"password\": \"\\\"\\\\\\u000a\\u00ff\""));
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(json_escapes_every_byte),
		cmocka_unit_test(probe),
		cmocka_unit_test(attach),
		cmocka_unit_test(attach_malformed),
		cmocka_unit_test(app_attach),
		cmocka_unit_test(store_dictionary),
		cmocka_unit_test(store_built_from_items_matches),
		cmocka_unit_test(stored_data_malformed),
		cmocka_unit_test(stored_data_single_and_array),
		cmocka_unit_test(store_ans),
		cmocka_unit_test(fetch_req),
		cmocka_unit_test(fetch_req_malformed),
		cmocka_unit_test(fetch_ans),
		cmocka_unit_test(stat_ans),
		cmocka_unit_test(find),
		cmocka_unit_test(join_leave),
		cmocka_unit_test(chord_update),
		cmocka_unit_test(route_query),
		cmocka_unit_test(ping),
		cmocka_unit_test(config_update),
		cmocka_unit_test(error_and_unknown_code),
		cmocka_unit_test(structured_error_info_must_fit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
