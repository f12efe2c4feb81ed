/* Tickets: format, MAC, verification order, key ring, base64url. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <openssl/hmac.h>

#include "common/errcode.h"
#include "common/log.h"
#include "pvp/ticket.h"

#define NOW 1795256243u

static void keys7(pvp_ticket_keys_t *k)
{
	memset(k, 0, sizeof(*k));
	k->cur.epoch = 7;
	k->cur.len = 16;
	memset(k->cur.key, 0x42, 16);
}

static size_t issue(const pvp_ticket_keys_t *k, uint8_t *buf, uint8_t flags)
{
	pvp_ticket_t t;
	size_t n;
	memset(&t, 0, sizeof(t));
	t.flags = flags;
	t.issued = NOW;
	t.expires = NOW + 86400;
	t.last_call = NOW - 3600;
	t.entropy_cbits = 1684;
	t.validations = 1;
	strcpy(t.number, "+14085551234");
	strcpy(t.domain, "carrier-b.example");
	assert_int_equal(pvp_ticket_issue(k, &t, buf, PVP_TICKET_MAX, &n), 0);
	return n;
}

static const pvp_ticket_expect_t good = { .number = "+14085551234", .domain = "carrier-b.example",
	                                  .need_routes = true };

static void layout_and_mac_are_as_documented(void **state)
{
	pvp_ticket_keys_t k;
	uint8_t buf[PVP_TICKET_MAX], mac[32];
	unsigned int ml;
	size_t n;
	static const uint8_t head[] = { 1, 7, 1, 0, 0x6b, 0x01, 0x6f, 0xb3, 0x6b, 0x02, 0xc1, 0x33,
	                                0x6b, 0x01, 0x61, 0xa3, 0x06, 0x94, 0x00, 0x01, 12 };
	(void)state;
	keys7(&k);
	n = issue(&k, buf, PVP_TICKET_F_ROUTES);
	assert_int_equal(n, 20 + 1 + 12 + 1 + 17 + 32);
	assert_memory_equal(buf, head, sizeof(head));
	assert_memory_equal(buf + 21, "+14085551234", 12);
	assert_int_equal(buf[33], 17);
	assert_memory_equal(buf + 34, "carrier-b.example", 17);
	/* The MAC is HMAC-SHA-256 over everything before it, computed independently here. */
	HMAC(EVP_sha256(), k.cur.key, 16, buf, n - 32, mac, &ml);
	assert_memory_equal(buf + n - 32, mac, 32);
}

static void valid_ticket_verifies(void **state)
{
	pvp_ticket_keys_t k;
	uint8_t buf[PVP_TICKET_MAX];
	pvp_ticket_t t;
	pvp_ticket_expect_t ex = good;
	size_t n;
	(void)state;
	keys7(&k);
	n = issue(&k, buf, PVP_TICKET_F_ROUTES);
	assert_int_equal(pvp_ticket_verify(&k, buf, n, NOW + 10, &good, &t), PVP_TR_OK);
	assert_string_equal(t.number, "+14085551234");
	assert_int_equal(t.entropy_cbits, 1684);
	/* The domain compares case-insensitively and ignores a trailing dot. */
	ex.domain = "Carrier-B.Example.";
	assert_int_equal(pvp_ticket_verify(&k, buf, n, NOW, &ex, NULL), PVP_TR_OK);
}

static void replay_for_another_number_or_domain_refused(void **state)
{
	pvp_ticket_keys_t k;
	uint8_t buf[PVP_TICKET_MAX];
	pvp_ticket_expect_t ex = good;
	size_t n;
	(void)state;
	keys7(&k);
	n = issue(&k, buf, PVP_TICKET_F_ROUTES);
	ex.number = "+14085551235";
	assert_int_equal(pvp_ticket_verify(&k, buf, n, NOW, &ex, NULL), PVP_TR_WRONG_NUMBER);
	ex = good;
	ex.domain = "evil.example";
	assert_int_equal(pvp_ticket_verify(&k, buf, n, NOW, &ex, NULL), PVP_TR_WRONG_DOMAIN);
	ex.domain = "b.example"; /* a suffix is not the domain */
	assert_int_equal(pvp_ticket_verify(&k, buf, n, NOW, &ex, NULL), PVP_TR_WRONG_DOMAIN);
}

static void expiry_and_future_issue_refused(void **state)
{
	pvp_ticket_keys_t k;
	uint8_t buf[PVP_TICKET_MAX];
	pvp_ticket_expect_t ex = good;
	size_t n;
	(void)state;
	keys7(&k);
	n = issue(&k, buf, PVP_TICKET_F_ROUTES);
	assert_int_equal(pvp_ticket_verify(&k, buf, n, NOW + 86400 + PVP_TICKET_SKEW_S, &good, NULL), PVP_TR_OK);
	assert_int_equal(pvp_ticket_verify(&k, buf, n, NOW + 86400 + PVP_TICKET_SKEW_S + 1, &good, NULL),
	                 PVP_TR_EXPIRED);
	assert_int_equal(pvp_ticket_verify(&k, buf, n, NOW - PVP_TICKET_SKEW_S - 1, &good, NULL),
	                 PVP_TR_NOT_YET_VALID);
	ex.ignore_expiry = true;
	assert_int_equal(pvp_ticket_verify(&k, buf, n, NOW + 10 * 86400, &ex, NULL), PVP_TR_OK);
}

static void every_flipped_bit_refused(void **state)
{
	pvp_ticket_keys_t k;
	uint8_t buf[PVP_TICKET_MAX];
	size_t n;
	(void)state;
	keys7(&k);
	n = issue(&k, buf, PVP_TICKET_F_ROUTES);
	for (size_t i = 0; i < n; i++) {
		for (int b = 0; b < 8; b++) {
			pvp_ticket_reason_t r;
			buf[i] ^= (uint8_t)(1u << b);
			r = pvp_ticket_verify(&k, buf, n, NOW, &good, NULL);
			assert_int_not_equal(r, PVP_TR_OK);
			/* Nothing before the MAC check may pass a forged field through. */
			assert_true(r <= PVP_TR_BAD_MAC);
			buf[i] ^= (uint8_t)(1u << b);
		}
	}
	assert_int_equal(pvp_ticket_verify(&k, buf, n, NOW, &good, NULL), PVP_TR_OK);
	assert_int_equal(pvp_ticket_verify(&k, buf, n - 1, NOW, &good, NULL), PVP_TR_MALFORMED);
}

static void key_rotation_grace_then_retired(void **state)
{
	pvp_ticket_keys_t k;
	uint8_t buf[PVP_TICKET_MAX], newkey[32], buf2[PVP_TICKET_MAX];
	pvp_ticket_t t;
	size_t n, n2;
	(void)state;
	keys7(&k);
	n = issue(&k, buf, PVP_TICKET_F_ROUTES);
	memset(newkey, 0x99, sizeof(newkey));
	assert_int_equal(pvp_ticket_keys_rotate(&k, newkey, sizeof(newkey), NOW + 1000), 0);
	assert_int_equal(k.cur.epoch, 8);
	assert_int_equal(k.prev.epoch, 7);
	/* In grace: the old ticket still verifies; new tickets use epoch 8. */
	assert_int_equal(pvp_ticket_verify(&k, buf, n, NOW + 1000, &good, NULL), PVP_TR_OK);
	n2 = issue(&k, buf2, PVP_TICKET_F_ROUTES);
	assert_int_equal(pvp_ticket_verify(&k, buf2, n2, NOW, &good, &t), PVP_TR_OK);
	assert_int_equal(t.epoch, 8);
	/* After the grace time the old key is retired. */
	assert_int_equal(pvp_ticket_verify(&k, buf, n, NOW + 1001, &good, NULL), PVP_TR_RETIRED_KEY);
	/* A second rotation forgets epoch 7 entirely. */
	assert_int_equal(pvp_ticket_keys_rotate(&k, newkey, sizeof(newkey), NOW + 5000), 0);
	assert_int_equal(pvp_ticket_verify(&k, buf, n, NOW, &good, NULL), PVP_TR_UNKNOWN_EPOCH);
	/* Epoch 255 wraps to 1. */
	k.cur.epoch = 255;
	assert_int_equal(pvp_ticket_keys_rotate(&k, newkey, sizeof(newkey), NOW), 0);
	assert_int_equal(k.cur.epoch, 1);
	assert_int_equal(pvp_ticket_keys_rotate(&k, newkey, 15, NOW), VP_EINVAL);
}

static void pending_ticket_has_no_routes(void **state)
{
	pvp_ticket_keys_t k;
	uint8_t buf[PVP_TICKET_MAX];
	pvp_ticket_expect_t ex = good;
	size_t n;
	(void)state;
	keys7(&k);
	n = issue(&k, buf, 0);
	assert_int_equal(pvp_ticket_verify(&k, buf, n, NOW, &good, NULL), PVP_TR_NO_ROUTES);
	ex.need_routes = false;
	assert_int_equal(pvp_ticket_verify(&k, buf, n, NOW, &ex, NULL), PVP_TR_OK);
}

static void key_file_parse_and_format(void **state)
{
	static const char text[] =
	    "# ticket keys\n"
	    "current 9 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n"
	    "previous 8 ffeeddccbbaa99887766554433221100 1795260000\n";
	pvp_ticket_keys_t k, k2;
	char out[512];
	(void)state;
	assert_int_equal(pvp_ticket_keys_parse(text, strlen(text), &k), 0);
	assert_int_equal(k.cur.epoch, 9);
	assert_int_equal(k.cur.len, 32);
	assert_int_equal(k.cur.key[1], 0x11);
	assert_true(k.has_prev);
	assert_int_equal(k.prev.epoch, 8);
	assert_int_equal(k.prev.len, 16);
	assert_true(k.prev.grace_until_s == 1795260000ull);
	assert_int_equal(pvp_ticket_keys_format(&k, out, sizeof(out)), 0);
	assert_int_equal(pvp_ticket_keys_parse(out, strlen(out), &k2), 0);
	assert_memory_equal(&k, &k2, sizeof(k));
	static const char *bad[] = {
		"",                                                          /* no current */
		"current 9 00112233445566778899aabbccddee\n",                /* 15-byte key */
		"current 0 00112233445566778899aabbccddeeff\n",              /* epoch 0 */
		"current 256 00112233445566778899aabbccddeeff\n",
		"current 9 00112233445566778899aabbccddeeff 5\n",            /* grace on current */
		"current 9 00112233445566778899aabbccddeeff\nprevious 8 00112233445566778899aabbccddeeff\n",
		"current 9 00112233445566778899aabbccddeeff\ncurrent 8 00112233445566778899aabbccddeeff\n",
		"current 9 00112233445566778899aabbccddeeff\nprevious 9 00112233445566778899aabbccddeeff 1\n",
		"current 9 zz112233445566778899aabbccddeeff\n",
		"future 9 00112233445566778899aabbccddeeff\n",
		/* strtoull takes "-1" as 2^64-1: a previous key that never retires */
		"current 9 00112233445566778899aabbccddeeff\nprevious 8 00112233445566778899aabbccddeeff -1\n",
		"current +9 00112233445566778899aabbccddeeff\n",
	};
	vp_log_setup(VP_LOG_ERROR + 0, NULL);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(pvp_ticket_keys_parse(bad[i], strlen(bad[i]), &k), VP_ECONFIG);
}

static void base64url_round_trip_and_rejects(void **state)
{
	uint8_t in[40], out[40];
	char text[64];
	size_t n;
	(void)state;
	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)(i * 37 + 250);
	for (size_t len = 0; len <= sizeof(in); len++) {
		assert_int_equal(pvp_b64url_encode(in, len, text, sizeof(text)), 0);
		assert_null(strchr(text, '='));
		assert_null(strchr(text, '+'));
		assert_int_equal(pvp_b64url_decode(text, strlen(text), out, sizeof(out), &n), 0);
		assert_int_equal(n, len);
		assert_memory_equal(in, out, len);
	}
	assert_int_equal(pvp_b64url_encode((const uint8_t *)"\xfb\xff", 2, text, sizeof(text)), 0);
	assert_string_equal(text, "-_8");
	assert_int_equal(pvp_b64url_decode("ab+c", 4, out, sizeof(out), &n), VP_EMALFORMED);
	assert_int_equal(pvp_b64url_decode("abcde", 5, out, sizeof(out), &n), VP_EMALFORMED);
	assert_int_equal(pvp_b64url_decode("-_9", 3, out, sizeof(out), &n), VP_EMALFORMED); /* non-zero pad bits */
	assert_int_equal(pvp_b64url_encode(in, 3, text, 4), VP_ESPACE);
	/* Padding, if any, only completes the last quantum: no other spelling of one ticket. */
	assert_int_equal(pvp_b64url_decode("-_8=", 4, out, sizeof(out), &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(pvp_b64url_decode("-_8==", 5, out, sizeof(out), &n), VP_EMALFORMED);
	assert_int_equal(pvp_b64url_decode("-_8=======", 10, out, sizeof(out), &n), VP_EMALFORMED);
	assert_int_equal(pvp_b64url_decode("AAAA=", 5, out, sizeof(out), &n), VP_EMALFORMED);
	assert_int_equal(pvp_b64url_decode("AAAA====", 8, out, sizeof(out), &n), VP_EMALFORMED);
}

static void text_form_verifies(void **state)
{
	pvp_ticket_keys_t k;
	uint8_t buf[PVP_TICKET_MAX];
	char text[PVP_TICKET_B64_MAX];
	size_t n;
	(void)state;
	keys7(&k);
	n = issue(&k, buf, PVP_TICKET_F_ROUTES);
	assert_int_equal(pvp_b64url_encode(buf, n, text, sizeof(text)), 0);
	assert_int_equal(pvp_ticket_verify_text(&k, text, NOW, &good, NULL), PVP_TR_OK);
	text[5] = text[5] == 'A' ? 'B' : 'A';
	assert_int_not_equal(pvp_ticket_verify_text(&k, text, NOW, &good, NULL), PVP_TR_OK);
	assert_int_equal(pvp_ticket_verify_text(&k, "!!", NOW, &good, NULL), PVP_TR_MALFORMED);
}

static void domain_normalisation(void **state)
{
	char d[PVP_DOMAIN_MAX + 1];
	(void)state;
	assert_int_equal(pvp_domain_normalize("SIP.Example.COM.", d), 0);
	assert_string_equal(d, "sip.example.com");
	assert_int_equal(pvp_domain_normalize("a..b", d), VP_EINVAL);
	assert_int_equal(pvp_domain_normalize(".", d), VP_EINVAL);
	assert_int_equal(pvp_domain_normalize("", d), VP_EINVAL);
	assert_int_equal(pvp_domain_normalize("exa mple.com", d), VP_EINVAL);
	assert_int_equal(pvp_domain_normalize("a_b.com", d), VP_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(layout_and_mac_are_as_documented),
		cmocka_unit_test(valid_ticket_verifies),
		cmocka_unit_test(replay_for_another_number_or_domain_refused),
		cmocka_unit_test(expiry_and_future_issue_refused),
		cmocka_unit_test(every_flipped_bit_refused),
		cmocka_unit_test(key_rotation_grace_then_retired),
		cmocka_unit_test(pending_ticket_has_no_routes),
		cmocka_unit_test(key_file_parse_and_format),
		cmocka_unit_test(base64url_round_trip_and_rejects),
		cmocka_unit_test(text_form_verifies),
		cmocka_unit_test(domain_normalisation),
	};
	vp_log_setup(VP_LOG_ERROR, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
