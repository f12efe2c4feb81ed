/* PVP method derivation: selector, username, rounding, passwords, entropy. */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "common/errcode.h"
#include "pvp/method.h"

#define T0 1795256243ull /* 2026-11-21 10:17:23 UTC */

static pvp_vcr_t rec(pvp_dir_t dir, const char *caller, uint64_t start_s, uint64_t dur_s)
{
	pvp_vcr_t r;
	assert_int_equal(pvp_vcr_make(&r, dir, "+14085551234", caller, start_s * 1000, (start_s + dur_s) * 1000, NULL), 0);
	return r;
}

static pvp_vcr_t rec_ms(pvp_dir_t dir, uint64_t start_ms, uint64_t dur_ms)
{
	pvp_vcr_t r;
	assert_int_equal(pvp_vcr_make(&r, dir, "+14085551234", "+33123456789", start_ms, start_ms + dur_ms, NULL), 0);
	return r;
}

static void selector_matches_independent_pbkdf2(void **state)
{
	/* python3: hashlib.pbkdf2_hmac('sha256', b'+14085551234', b'vipr-pvp-sel-v1' + struct.pack('>I', 498682), 4096, 16) */
	static const uint8_t want[16] = { 0xea, 0x5a, 0x20, 0xf1, 0x96, 0x66, 0x97, 0x5f,
	                                  0xd0, 0xff, 0x92, 0x72, 0x1a, 0xf3, 0x34, 0xfb };
	uint8_t sel[16], other[16];
	(void)state;
	assert_int_equal(pvp_selector("+14085551234", 498682, sel), 0);
	assert_memory_equal(sel, want, 16);
	assert_int_equal(pvp_selector("+14085551234", 498683, other), 0);
	assert_memory_not_equal(sel, other, 16);
	assert_int_equal(pvp_selector("14085551234", 498682, other), VP_EINVAL);
}

static void username_round_trip_and_strict_parse(void **state)
{
	pvp_user_t u = { .method = PVP_METHOD_A, .bucket = 498682, .ps = 23, .pd = 3999, .idx = 1 }, v;
	char s[PVP_USER_MAX];
	(void)state;
	memset(u.sel, 0xab, sizeof(u.sel));
	assert_int_equal(pvp_user_format(&u, s), 0);
	assert_string_equal(s, "v1.a.498682.23.3999.1.abababababababababababababababab");
	assert_int_equal(pvp_user_parse(s, &v), 0);
	assert_int_equal(v.method, PVP_METHOD_A);
	assert_int_equal(v.bucket, 498682);
	assert_int_equal(v.ps, 23);
	assert_int_equal(v.pd, 3999);
	assert_int_equal(v.idx, 1);
	assert_memory_equal(v.sel, u.sel, 16);
	/* No ':' (GnuTLS tpasswd separator) anywhere. */
	assert_null(strchr(s, ':'));
	static const char *bad[] = {
		"v2.a.498682.23.3.1.abababababababababababababababab",
		"v1.c.498682.23.3.1.abababababababababababababababab",
		"v1.a.498682.60.3.1.abababababababababababababababab",   /* phase >= G_s */
		"v1.a.498682.23.4000.1.abababababababababababababababab", /* phase >= G_d (ms) */
		"v1.a.498682.23.03.1.abababababababababababababababab",  /* leading zero in p_d */
		"v1.a.498682.23.-3.1.abababababababababababababababab",  /* sign */
		"v1.a.0498682.23.3.1.abababababababababababababababab",  /* leading zero */
		"v1.a.498682.23.3.1.ABABABABABABABABABABABABABABABAB",   /* upper case */
		"v1.a.498682.23.3.1.ababababababababababababababab",     /* short selector */
		"v1.a.498682.23.3.1.abababababababababababababababab00", /* long */
		"v1.a.498682.23.3.abababababababababababababababab",
		"v1.a.99999999999.23.3.1.abababababababababababababababab",
		"",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(pvp_user_parse(bad[i], &v), VP_EMALFORMED);
	/* The formatter refuses out-of-range phases too. */
	u.pd = 4000;
	assert_int_equal(pvp_user_format(&u, s), VP_EINVAL);
	u.pd = 0;
	u.ps = 60;
	assert_int_equal(pvp_user_format(&u, s), VP_EINVAL);
}

/* Does a server whose record lasts d_ms + delta_ms (and starts 12.345 s later) agree? */
static bool dur_agrees(uint64_t d_ms, int64_t delta_ms)
{
	char user[PVP_USER_MAX], cpass[PVP_PASS_MAX], spass[PVP_PASS_MAX];
	pvp_user_t u;
	uint64_t s0 = T0 * 1000 + 417;
	pvp_vcr_t o = rec_ms(PVP_DIR_ORIG, s0, d_ms);
	pvp_vcr_t t = rec_ms(PVP_DIR_TERM, s0 + 12345, (uint64_t)((int64_t)d_ms + delta_ms));
	assert_int_equal(pvp_client_creds(&o, PVP_METHOD_B, 0, 0, user, cpass), 0);
	assert_int_equal(pvp_user_parse(user, &u), 0);
	assert_int_equal(u.pd, d_ms % 4000); /* the phase is in ms */
	assert_int_equal(pvp_server_password(&t, &u, spass), 0);
	return strcmp(cpass, spass) == 0;
}

static void duration_tolerance_is_two_seconds_in_ms(void **state)
{
	char user[PVP_USER_MAX], cpass[PVP_PASS_MAX], spass[PVP_PASS_MAX];
	pvp_user_t u;
	(void)state;
	/* docs/protocol.md §5.5, second test vector: answered 10:17:23.417, 90.247 s; server 91.500 s. */
	pvp_vcr_t o = rec_ms(PVP_DIR_ORIG, T0 * 1000 + 417, 90247);
	pvp_vcr_t t = rec_ms(PVP_DIR_TERM, T0 * 1000 + 417, 91500);
	assert_int_equal(pvp_client_creds(&o, PVP_METHOD_A, 0, 0, user, cpass), 0);
	assert_string_equal(user, "v1.a.498682.23.2247.0.ea5a20f19666975fd0ff92721af334fb");
	assert_string_equal(cpass, "v1.a.+14085551234.+33123456789.29920937.22");
	assert_int_equal(pvp_user_parse(user, &u), 0);
	assert_int_equal(pvp_server_password(&t, &u, spass), 0);
	assert_string_equal(spass, cpass);
	/* 90.247 s vs 91.5 s (1.253 s apart), either side the client. */
	assert_true(dur_agrees(90247, 1253));
	assert_true(dur_agrees(91500, -1253));
	/* Every phase (250 ms steps over the 4 s bucket, plus odd ones): ±1.9 s in, ±2.1 s out. */
	static const uint64_t odd[] = { 90247, 91500, 183001, 61999, 123457, 10003 };
	for (uint64_t i = 0; i < 16 + sizeof(odd) / sizeof(odd[0]); i++) {
		uint64_t d = i < 16 ? 180000 + i * 250 : odd[i - 16];
		assert_true(dur_agrees(d, 1900));
		assert_true(dur_agrees(d, -1900));
		assert_false(dur_agrees(d, 2100));
		assert_false(dur_agrees(d, -2100));
		/* The exact edges of [-G_d/2, G_d/2): -2.000 s in, +2.000 s out. */
		assert_true(dur_agrees(d, -2000));
		assert_true(dur_agrees(d, 1999));
		assert_false(dur_agrees(d, 2000));
		assert_false(dur_agrees(d, -2001));
	}
}

static void rounding_tolerance_is_half_granularity(void **state)
{
	(void)state;
	for (int64_t t = 1000; t < 1000 + 60; t++) {
		uint32_t p = (uint32_t)(t % 60);
		int64_t q = pvp_round_q(t, p, 60);
		assert_true(pvp_round_q(t + 29, p, 60) == q);
		assert_true(pvp_round_q(t - 30, p, 60) == q);
		assert_true(pvp_round_q(t + 30, p, 60) == q + 1);
		assert_true(pvp_round_q(t - 31, p, 60) == q - 1);
	}
	assert_true(pvp_round_q(-1, 0, 4) == 0);
	assert_true(pvp_round_q(-3, 0, 4) == -1);
}

static void client_and_server_agree_within_tolerance(void **state)
{
	char user[PVP_USER_MAX], cpass[PVP_PASS_MAX], spass[PVP_PASS_MAX];
	pvp_user_t u;
	pvp_vcr_t o = rec(PVP_DIR_ORIG, "+33123456789", T0, 183);
	(void)state;
	assert_int_equal(pvp_client_creds(&o, PVP_METHOD_A, 0, 0, user, cpass), 0);
	assert_int_equal(pvp_user_parse(user, &u), 0);
	assert_string_equal(cpass, "v1.a.+14085551234.+33123456789.29920937.45");
	assert_string_equal(user, "v1.a.498682.23.3000.0.ea5a20f19666975fd0ff92721af334fb");
	for (int off = -30; off <= 29; off += 7) {
		for (int jit = -2; jit <= 1; jit++) {
			pvp_vcr_t t = rec(PVP_DIR_TERM, "+33123456789", T0 + (uint64_t)(int64_t)off,
			                  (uint64_t)(183 + jit));
			assert_int_equal(pvp_server_password(&t, &u, spass), 0);
			assert_string_equal(spass, cpass);
		}
	}
	/* Outside: start 31 s early, or duration 3 s longer, or another caller. */
	pvp_vcr_t t1 = rec(PVP_DIR_TERM, "+33123456789", T0 - 31, 183);
	pvp_vcr_t t2 = rec(PVP_DIR_TERM, "+33123456789", T0, 186);
	pvp_vcr_t t3 = rec(PVP_DIR_TERM, "+33123456780", T0, 183);
	assert_int_equal(pvp_server_password(&t1, &u, spass), 0);
	assert_string_not_equal(spass, cpass);
	assert_int_equal(pvp_server_password(&t2, &u, spass), 0);
	assert_string_not_equal(spass, cpass);
	assert_int_equal(pvp_server_password(&t3, &u, spass), 0);
	assert_string_not_equal(spass, cpass);
	/* A shift of -1 matches a server that is a minute early. */
	pvp_vcr_t t4 = rec(PVP_DIR_TERM, "+33123456789", T0 - 60, 183);
	assert_int_equal(pvp_client_creds(&o, PVP_METHOD_A, 0, -1, user, cpass), 0);
	assert_int_equal(pvp_server_password(&t4, &u, spass), 0);
	assert_string_equal(spass, cpass);
}

static void method_a_needs_caller_id(void **state)
{
	char user[PVP_USER_MAX], pass[PVP_PASS_MAX];
	pvp_vcr_t o = rec(PVP_DIR_ORIG, NULL, T0, 60);
	(void)state;
	assert_false(pvp_method_applies(&o, PVP_METHOD_A));
	assert_true(pvp_method_applies(&o, PVP_METHOD_B));
	assert_int_equal(pvp_client_creds(&o, PVP_METHOD_A, 0, 0, user, pass), VP_EINVAL);
	assert_int_equal(pvp_client_creds(&o, PVP_METHOD_B, 0, 0, user, pass), 0);
	assert_string_equal(pass, "v1.b.+14085551234.29920937.15");
	assert_int_equal(strncmp(user, "v1.b.498682.23.0.0.", 19), 0);
}

static void entropy_estimates(void **state)
{
	pvp_vcr_t a = rec(PVP_DIR_TERM, "+33123456789", T0, 180);
	pvp_vcr_t top = rec(PVP_DIR_TERM, "+33123456789", (T0 / 3600 + 1) * 3600 + 20, 180);
	pvp_vcr_t half = rec(PVP_DIR_TERM, "+33123456789", (T0 / 1800) * 1800 + 1790, 180);
	pvp_vcr_t shortc = rec(PVP_DIR_TERM, "+33123456789", T0, 8);
	pvp_entropy_conf_t c = { .caller_bits = 10 };
	(void)state;
	/* 5.907 (start) + log2(45) + 180/(180 ln 2) = 5.49 + 1.44 (duration) + 4 (caller) = 16.84 */
	assert_in_range(pvp_entropy_cbits(&a, PVP_METHOD_A, NULL), 1682, 1686);
	assert_in_range(pvp_entropy_cbits(&a, PVP_METHOD_B, NULL), 1282, 1286);
	assert_in_range(pvp_entropy_cbits(&top, PVP_METHOD_A, NULL), 1191, 1195);
	assert_in_range(pvp_entropy_cbits(&half, PVP_METHOD_B, NULL), 791, 795);
	assert_in_range(pvp_entropy_cbits(&shortc, PVP_METHOD_B, NULL), 590, 591);
	assert_in_range(pvp_entropy_cbits(&a, PVP_METHOD_A, &c), 2282, 2286);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(selector_matches_independent_pbkdf2),
		cmocka_unit_test(username_round_trip_and_strict_parse),
		cmocka_unit_test(rounding_tolerance_is_half_granularity),
		cmocka_unit_test(client_and_server_agree_within_tolerance),
		cmocka_unit_test(duration_tolerance_is_two_seconds_in_ms),
		cmocka_unit_test(method_a_needs_caller_id),
		cmocka_unit_test(entropy_estimates),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
