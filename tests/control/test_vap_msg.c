/* VAP codec: RFC 5769 known answers, VAP encodings, parse errors, ranges, records. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "control/vap/vap_msg.h"
#include "common/errcode.h"
#include "common/hex.h"

/* RFC 5769 §2.1 sample request (short-term credential, FINGERPRINT). */
static const uint8_t rfc5769_req[] = {
	0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34,
	0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e,
	0x20, 0x74, 0x65, 0x73, 0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24,
	0x00, 0x04, 0x6e, 0x00, 0x01, 0xff, 0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1,
	0x51, 0x26, 0x3b, 0x36, 0x00, 0x06, 0x00, 0x09, 0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68,
	0x36, 0x76, 0x59, 0x20, 0x20, 0x20, 0x00, 0x08, 0x00, 0x14, 0x9a, 0xea, 0xa7, 0x0c,
	0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e, 0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49, 0xc1, 0xb5,
	0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5, 0x7a, 0x3b, 0xcf,
};

/* RFC 5769 §2.2 sample IPv4 response. */
static const uint8_t rfc5769_resp4[] = {
	0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34,
	0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74,
	0x20, 0x76, 0x65, 0x63, 0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01,
	0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43, 0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99,
	0xfd, 0x9e, 0x90, 0xc3, 0x8c, 0x74, 0x89, 0xf9, 0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b,
	0xe7, 0xd7, 0x80, 0x28, 0x00, 0x04, 0xc0, 0x7d, 0x4c, 0x96,
};

/* RFC 5769 §2.4 sample request with long-term authentication (NUL padding). */
static const uint8_t rfc5769_ltc[] = {
	0x00, 0x01, 0x00, 0x60, 0x21, 0x12, 0xa4, 0x42, 0x78, 0xad, 0x34, 0x33, 0xc6, 0xad,
	0x72, 0xc0, 0x29, 0xda, 0x41, 0x2e, 0x00, 0x06, 0x00, 0x12, 0xe3, 0x83, 0x9e, 0xe3,
	0x83, 0x88, 0xe3, 0x83, 0xaa, 0xe3, 0x83, 0x83, 0xe3, 0x82, 0xaf, 0xe3, 0x82, 0xb9,
	0x00, 0x00, 0x00, 0x15, 0x00, 0x1c, 0x66, 0x2f, 0x2f, 0x34, 0x39, 0x39, 0x6b, 0x39,
	0x35, 0x34, 0x64, 0x36, 0x4f, 0x4c, 0x33, 0x34, 0x6f, 0x4c, 0x39, 0x46, 0x53, 0x54,
	0x76, 0x79, 0x36, 0x34, 0x73, 0x41, 0x00, 0x14, 0x00, 0x0b, 0x65, 0x78, 0x61, 0x6d,
	0x70, 0x6c, 0x65, 0x2e, 0x6f, 0x72, 0x67, 0x00, 0x00, 0x08, 0x00, 0x14, 0xf6, 0x70,
	0x24, 0x65, 0x6d, 0xd6, 0x4a, 0x3e, 0x02, 0xb8, 0xe0, 0x71, 0x2e, 0x85, 0xc9, 0xa2,
	0x8c, 0xa8, 0x96, 0x66,
};

static const char rfc5769_pw[] = "VOkJxbRl1RmTxUk/WvJxBt";

static void rfc5769_request_integrity_and_fingerprint(void **state)
{
	vap_msg_t m;
	vap_attr_t a;
	char user[64];
	uint8_t bad[sizeof(rfc5769_req)];
	(void)state;
	assert_int_equal(vap_msg_parse(rfc5769_req, sizeof(rfc5769_req), &m), 0);
	assert_int_equal(m.method, 0x001);
	assert_int_equal(m.cls, VAP_CLASS_REQUEST);
	assert_int_equal(m.mi_off, 76);
	assert_int_equal(m.fp_off, 100);
	assert_int_equal(vap_msg_find(&m, VAP_ATTR_USERNAME, &a), 0);
	assert_int_equal(vap_attr_str(&a, user, sizeof(user)), 0);
	assert_string_equal(user, "evtj:h6vY");
	assert_int_equal(vap_msg_check_integrity(&m, (const uint8_t *)rfc5769_pw, strlen(rfc5769_pw)), 0);
	assert_int_equal(vap_msg_check_integrity(&m, (const uint8_t *)"wrong", 5), VP_EVAP_INTEGRITY);
	/* One flipped bit in a covered attribute: the fingerprint catches it first. */
	memcpy(bad, rfc5769_req, sizeof(bad));
	bad[30] ^= 1;
	assert_int_equal(vap_msg_parse(bad, sizeof(bad), &m), VP_EVAP_FINGERPRINT);
}

static void rfc5769_response_verifies(void **state)
{
	vap_msg_t m;
	(void)state;
	assert_int_equal(vap_msg_parse(rfc5769_resp4, sizeof(rfc5769_resp4), &m), 0);
	assert_int_equal(m.cls, VAP_CLASS_SUCCESS);
	assert_int_equal(vap_msg_check_integrity(&m, (const uint8_t *)rfc5769_pw, strlen(rfc5769_pw)), 0);
	assert_int_equal(vap_crc32(0, rfc5769_resp4, m.fp_off) ^ VAP_FP_XOR, 0xc07d4c96u);
}

/* The long-term vector is NUL-padded, so our encoder must reproduce it byte for byte. */
static void rfc5769_long_term_encoded_byte_for_byte(void **state)
{
	static const char user[] = "\xe3\x83\x9e\xe3\x83\x88\xe3\x83\xaa\xe3\x83\x83\xe3\x82\xaf\xe3\x82\xb9";
	uint8_t key[VAP_KEY_LEN], out[256];
	vap_enc_t e;
	vap_msg_t m;
	long n;
	(void)state;
	assert_int_equal(vap_key_derive(user, "example.org", "TheMatrIX", key), 0);
	assert_int_equal(vap_enc_begin(&e, out, sizeof(out), 0x0001, rfc5769_ltc + 8), 0);
	vap_enc_str(&e, VAP_ATTR_USERNAME, user);
	vap_enc_str(&e, VAP_ATTR_NONCE, "f//499k954d6OL34oL9FSTvy64sA");
	vap_enc_str(&e, VAP_ATTR_REALM, "example.org");
	n = vap_enc_finish(&e, key, sizeof(key), false);
	assert_int_equal(n, sizeof(rfc5769_ltc));
	assert_memory_equal(out, rfc5769_ltc, sizeof(rfc5769_ltc));
	assert_int_equal(vap_msg_parse(rfc5769_ltc, sizeof(rfc5769_ltc), &m), 0);
	assert_int_equal(vap_msg_check_integrity(&m, key, sizeof(key)), 0);
}

static void message_types_interleave_class_bits(void **state)
{
	(void)state;
	assert_int_equal(vap_type(0x001, VAP_CLASS_REQUEST), 0x0001);
	assert_int_equal(vap_type(0x001, VAP_CLASS_ERROR), 0x0111);
	assert_int_equal(vap_type(VAP_REGISTER, VAP_CLASS_REQUEST), 0x0281);
	assert_int_equal(vap_type(VAP_REGISTER, VAP_CLASS_SUCCESS), 0x0381);
	assert_int_equal(vap_type(VAP_PUBLISH, VAP_CLASS_ERROR), 0x0392);
	assert_int_equal(vap_type(VAP_NOTIFY, VAP_CLASS_INDICATION), 0x0295);
	/* Every VAP type starts with a byte of 0..3 (RFC 7983 demultiplexing). */
	for (uint16_t mth = VAP_REGISTER; mth <= VAP_KEEPALIVE; mth++)
		assert_true(vap_type(mth, VAP_CLASS_ERROR) >> 8 <= 3);
	for (uint16_t mth = 0; mth < 0x1000; mth++) {
		uint16_t t = vap_type(mth, VAP_CLASS_ERROR);
		assert_int_equal(vap_type_method(t), mth);
		assert_int_equal(vap_type_class(t), VAP_CLASS_ERROR);
		assert_int_equal(t & 0xC000, 0);
	}
}

/*
 * A VAP UploadVCR with integrity and fingerprint, checked against bytes computed
 * independently (Python hashlib/hmac/zlib, see the comment in docs/protocol.md §8.8).
 */
static const char upload_hex[] =
	"02830060" "2112a442" "000102030405060708090a0b"      /* header */
	"00060006" "6167656e74310000"                            /* USERNAME agent1 */
	"4005002d" "0000018bcfe56800" "0000018bcfe6eea0" "010c0d00" /* CALL-RECORD */
	"2b3134303835353531323132" "2b343432303739343630303030" "000000"
	"00080014" "66380f26092f81a080747dc09676e8fbfb14f2a7"   /* MESSAGE-INTEGRITY */
	"80280004" "bd6cd3ae";                                  /* FINGERPRINT */

static void upload_vcr_known_answer(void **state)
{
	static const uint8_t tid[VAP_TID_LEN] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 };
	uint8_t key[VAP_KEY_LEN], out[256], want[256];
	size_t wantlen = 0;
	vap_vcr_t vcr = { .called = "+14085551212", .caller = "+442079460000",
	                  .start_ms = 1700000000000ull, .stop_ms = 1700000100000ull,
	                  .direction = VAP_DIR_ORIGINATING };
	vap_enc_t e;
	vap_msg_t m;
	vap_attr_t a;
	vap_vcr_t back;
	long n;
	(void)state;
	assert_int_equal(vap_key_derive("agent1", "vipr", "secret", key), 0);
	vap_enc_begin(&e, out, sizeof(out), vap_type(VAP_UPLOAD_VCR, VAP_CLASS_REQUEST), tid);
	vap_enc_str(&e, VAP_ATTR_USERNAME, "agent1");
	vap_enc_vcr(&e, &vcr);
	n = vap_enc_finish(&e, key, sizeof(key), true);
	assert_int_equal(vp_hex_decode(upload_hex, strlen(upload_hex), want, sizeof(want), &wantlen), 0);
	assert_int_equal(n, (long)wantlen);
	assert_memory_equal(out, want, wantlen);
	assert_int_equal(vap_msg_parse(out, (size_t)n, &m), 0);
	assert_int_equal(vap_msg_check_integrity(&m, key, sizeof(key)), 0);
	assert_int_equal(vap_msg_find(&m, VAP_ATTR_CALL_RECORD, &a), 0);
	assert_int_equal(vap_attr_vcr(&a, &back), 0);
	assert_string_equal(back.called, vcr.called);
	assert_string_equal(back.caller, vcr.caller);
	assert_true(back.start_ms == vcr.start_ms && back.stop_ms == vcr.stop_ms);
	assert_int_equal(back.direction, vcr.direction);
}

static size_t build(uint8_t *out, size_t cap, void (*add)(vap_enc_t *))
{
	static const uint8_t tid[VAP_TID_LEN] = { 9 };
	vap_enc_t e;
	long n;
	vap_enc_begin(&e, out, cap, vap_type(VAP_PUBLISH, VAP_CLASS_REQUEST), tid);
	add(&e);
	n = vap_enc_finish(&e, NULL, 0, false);
	assert_true(n > 0);
	return (size_t)n;
}

static void add_unknowns(vap_enc_t *e)
{
	vap_enc_str(e, VAP_ATTR_NUMBER, "+14085551212");
	vap_enc_u32(e, 0x4FFF, 1);
	vap_enc_u32(e, 0x8FFF, 2);   /* optional: ignored */
	vap_enc_u32(e, 0x7001, 3);
	vap_enc_u32(e, 0x4FFF, 4);   /* duplicate: reported once */
}

static void unknown_required_attributes_listed(void **state)
{
	uint8_t buf[256];
	uint16_t unk[4];
	vap_msg_t m;
	size_t len = build(buf, sizeof(buf), add_unknowns);
	(void)state;
	assert_int_equal(vap_msg_parse(buf, len, &m), 0);
	assert_int_equal(vap_msg_unknown_required(&m, unk, 4), 2);
	assert_int_equal(unk[0], 0x4FFF);
	assert_int_equal(unk[1], 0x7001);
}

static void add_number(vap_enc_t *e)
{
	vap_enc_str(e, VAP_ATTR_NUMBER, "+14085551212");
}

static void malformed_messages_rejected(void **state)
{
	uint8_t buf[256], b[256];
	vap_msg_t m;
	size_t len = build(buf, sizeof(buf), add_number);
	(void)state;
	assert_int_equal(vap_msg_parse(buf, len, &m), 0);
	assert_int_equal(vap_msg_parse(buf, len - 4, &m), VP_ETRUNC);
	assert_int_equal(vap_msg_parse(buf, 10, &m), VP_ETRUNC);
	memcpy(b, buf, len);
	b[4] ^= 0xFF;                           /* cookie */
	assert_int_equal(vap_msg_parse(b, len, &m), VP_EMALFORMED);
	memcpy(b, buf, len);
	b[0] |= 0x80;                           /* top bits */
	assert_int_equal(vap_msg_parse(b, len, &m), VP_EMALFORMED);
	memcpy(b, buf, len);
	b[3] += 1;                              /* length not a multiple of 4 */
	assert_int_equal(vap_msg_parse(b, len, &m), VP_EMALFORMED);
	memcpy(b, buf, len);
	b[23] = 0x40;                           /* attribute overruns the body */
	assert_int_equal(vap_msg_parse(b, len, &m), VP_ETRUNC);
	memcpy(b, buf, len);                    /* body longer than the header says */
	memset(b + len, 0, 4);
	assert_int_equal(vap_msg_parse(b, len + 4, &m), VP_EBADLEN);
	assert_int_equal(vap_frame_len(buf, 19), 0);
	assert_int_equal(vap_frame_len(buf, 20), (long)len);
}

static void fingerprint_must_be_last(void **state)
{
	uint8_t buf[256];
	vap_enc_t e;
	vap_msg_t m;
	long n;
	(void)state;
	vap_enc_begin(&e, buf, sizeof(buf), vap_type(VAP_KEEPALIVE, VAP_CLASS_REQUEST), (const uint8_t *)"abcdefghijkl");
	n = vap_enc_finish(&e, NULL, 0, true);
	assert_int_equal(n, 28);
	assert_int_equal(vap_msg_parse(buf, (size_t)n, &m), 0);
	assert_int_equal(m.fp_off, 20);
	/* Append an attribute after FINGERPRINT by hand. */
	memcpy(buf + 28, "\x40\x04\x00\x04\x00\x00\x00\x01", 8);
	buf[3] = 16;
	assert_int_equal(vap_msg_parse(buf, 36, &m), VP_EMALFORMED);
}

static void attributes_after_integrity_are_ignored(void **state)
{
	uint8_t buf[256];
	uint8_t key[4] = { 1, 2, 3, 4 };
	vap_enc_t e;
	vap_msg_t m;
	vap_attr_t a;
	long n;
	(void)state;
	vap_enc_begin(&e, buf, sizeof(buf), vap_type(VAP_KEEPALIVE, VAP_CLASS_REQUEST), (const uint8_t *)"abcdefghijkl");
	n = vap_enc_finish(&e, key, sizeof(key), false);
	assert_int_equal(n, 44);
	memcpy(buf + 44, "\x40\x04\x00\x04\x00\x00\x00\x01", 8);
	buf[3] = 32;
	assert_int_equal(vap_msg_parse(buf, 52, &m), 0);
	assert_int_equal(vap_msg_check_integrity(&m, key, sizeof(key)), 0);
	assert_int_equal(vap_msg_find(&m, VAP_ATTR_VSERVICE_ID, &a), VP_ENOTFOUND);
}

static void ranges_parse_and_expand(void **state)
{
	vap_range_t r;
	char num[VP_E164_BUFLEN];
	(void)state;
	assert_int_equal(vap_range_parse("+1408555[0000-9999]", NULL, &r), 0);
	assert_string_equal(r.prefix, "+1408555");
	assert_int_equal(vap_range_count(&r), 10000);
	assert_int_equal(vap_range_number(&r, 1234, num), 0);
	assert_string_equal(num, "+14085551234");
	assert_int_equal(vap_range_number(&r, 0, num), 0);
	assert_string_equal(num, "+14085550000");
	assert_int_equal(vap_range_number(&r, 10000, num), VP_ERANGE);
	assert_int_equal(vap_range_parse("+14085551212", NULL, &r), 0);
	assert_int_equal(vap_range_count(&r), 1);
	assert_int_equal(vap_range_number(&r, 0, num), 0);
	assert_string_equal(num, "+14085551212");
	assert_int_equal(vap_range_parse("+1408555[000-9999]", NULL, &r), VP_EMALFORMED);
	assert_int_equal(vap_range_parse("+1408555[5000-4999]", NULL, &r), VP_ERANGE);
	assert_int_equal(vap_range_parse("+140855512345[0000-9999]", NULL, &r), VP_E164_LONG);
	assert_int_equal(vap_range_parse("+1[00-99]", NULL, &r), VP_E164_SHORT);
	assert_int_equal(vap_range_parse("+1408a55[00-99]", NULL, &r), VP_E164_CHAR);
	assert_int_equal(vap_range_parse("+1408555[00-99]x", NULL, &r), VP_EMALFORMED);
}

static void add_range(vap_enc_t *e)
{
	vap_range_t r;
	assert_int_equal(vap_range_parse("+3314567[000-499]", NULL, &r), 0);
	vap_enc_range(e, &r);
	vap_enc_action(e, VAP_SERVICE_NUMBERS, VAP_OP_WITHDRAW);
	vap_enc_error(e, 429, NULL);
}

static void range_action_error_round_trip(void **state)
{
	uint8_t buf[256];
	vap_msg_t m;
	vap_attr_t a;
	vap_range_t r;
	uint8_t svc, op;
	int code;
	char reason[64];
	size_t len = build(buf, sizeof(buf), add_range);
	(void)state;
	assert_int_equal(vap_msg_parse(buf, len, &m), 0);
	assert_int_equal(vap_msg_find(&m, VAP_ATTR_NUMBER_RANGE, &a), 0);
	assert_int_equal(vap_attr_range(&a, &r), 0);
	assert_string_equal(r.prefix, "+3314567");
	assert_int_equal(r.first, 0);
	assert_int_equal(r.last, 499);
	assert_int_equal(r.width, 3);
	assert_int_equal(vap_msg_find(&m, VAP_ATTR_PUBLISH_ACTION, &a), 0);
	assert_int_equal(vap_attr_action(&a, &svc, &op), 0);
	assert_int_equal(svc, VAP_SERVICE_NUMBERS);
	assert_int_equal(op, VAP_OP_WITHDRAW);
	assert_int_equal(vap_msg_find(&m, VAP_ATTR_ERROR_CODE, &a), 0);
	assert_int_equal(vap_attr_error(&a, &code, reason, sizeof(reason)), 0);
	assert_int_equal(code, 429);
	assert_string_equal(reason, "Rate Limited");
}

static void bad_values_rejected(void **state)
{
	static const uint8_t vcr_bad_dir[] = {
		0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 3, 1, 0, 0, '+' };
	static const uint8_t vcr_noncanon[] = {
		0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 1, 8, 0, 0,
		'4', '0', '8', '5', '5', '5', '1', '2' };
	static const uint8_t vcr_short[] = { 0, 0, 0, 0 };
	vap_attr_t a = { VAP_ATTR_CALL_RECORD, sizeof(vcr_bad_dir), vcr_bad_dir };
	vap_vcr_t v;
	char num[VP_E164_BUFLEN];
	(void)state;
	assert_int_equal(vap_attr_vcr(&a, &v), VP_EBADTYPE);
	a.value = vcr_noncanon;
	a.len = sizeof(vcr_noncanon);
	assert_int_equal(vap_attr_vcr(&a, &v), VP_E164_CHAR);
	a.value = vcr_short;
	a.len = sizeof(vcr_short);
	assert_int_equal(vap_attr_vcr(&a, &v), VP_ETRUNC);
	a.type = VAP_ATTR_NUMBER;
	a.value = (const uint8_t *)"+1408555121212345";
	a.len = 17;
	assert_int_equal(vap_attr_number(&a, num), VP_E164_LONG);
	a.value = (const uint8_t *)"+1408\0" "5551212";
	a.len = 12;
	assert_int_equal(vap_attr_number(&a, num), VP_EMALFORMED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(rfc5769_request_integrity_and_fingerprint),
		cmocka_unit_test(rfc5769_response_verifies),
		cmocka_unit_test(rfc5769_long_term_encoded_byte_for_byte),
		cmocka_unit_test(message_types_interleave_class_bits),
		cmocka_unit_test(upload_vcr_known_answer),
		cmocka_unit_test(unknown_required_attributes_listed),
		cmocka_unit_test(malformed_messages_rejected),
		cmocka_unit_test(fingerprint_must_be_last),
		cmocka_unit_test(attributes_after_integrity_are_ignored),
		cmocka_unit_test(ranges_parse_and_expand),
		cmocka_unit_test(range_action_error_round_trip),
		cmocka_unit_test(bad_values_rejected),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
