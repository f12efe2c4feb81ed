#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "common/errcode.h"
#include "common/id.h"

static vp_id_t H(const char *hex)
{
	vp_id_t id;
	assert_int_equal(vp_id_from_hex(hex, &id), 0);
	return id;
}

static void hex_round_trip_and_errors(void **state)
{
	char out[VP_ID_HEX_LEN + 1];
	vp_id_t id = H("00112233445566778899AABBCCDDEEFF");
	(void)state;
	assert_string_equal(vp_id_to_hex(&id, out), "00112233445566778899aabbccddeeff");
	assert_int_equal(vp_id_from_hex("0011", &id), VP_EHEX);
	assert_int_equal(vp_id_from_hex("g0112233445566778899aabbccddeeff", &id), VP_EHEX);
	assert_int_equal(vp_id_from_hex("00112233445566778899aabbccddeeff0", &id), VP_EHEX);
	assert_int_equal(vp_id_from_hex(NULL, &id), VP_EHEX);
}

static void resource_id_is_sha1_prefix(void **state)
{
	vp_id_t id = vp_id_from_name("abc", 3);
	char out[VP_ID_HEX_LEN + 1];
	(void)state;
	/* FIPS 180 test vector: SHA-1("abc") = a9993e364706816aba3e25717850c26c9cd0d89d */
	assert_string_equal(vp_id_to_hex(&id, out), "a9993e364706816aba3e25717850c26c");
}

static void add_pow2_wraps(void **state)
{
	vp_id_t max = H("ffffffffffffffffffffffffffffffff");
	vp_id_t zero = H("00000000000000000000000000000000");
	vp_id_t r;
	(void)state;
	r = vp_id_add_pow2(&max, 0);
	assert_true(vp_id_eq(&r, &zero));
	r = vp_id_add_pow2(&zero, 127);
	assert_true(vp_id_eq(&r, &(vp_id_t){ { 0x80 } }));
	r = vp_id_add_pow2(&r, 127);
	assert_true(vp_id_eq(&r, &zero));
	r = vp_id_add_pow2(&zero, 64);
	assert_true(vp_id_eq(&r, &(vp_id_t){ { 0, 0, 0, 0, 0, 0, 0, 1 } }));
}

static void intervals_with_wraparound(void **state)
{
	vp_id_t a = H("f0000000000000000000000000000000");
	vp_id_t b = H("10000000000000000000000000000000");
	vp_id_t in = H("00000000000000000000000000000001");
	vp_id_t out = H("80000000000000000000000000000000");
	(void)state;
	assert_true(vp_id_in_oc(&in, &a, &b));
	assert_false(vp_id_in_oc(&out, &a, &b));
	assert_true(vp_id_in_oc(&b, &a, &b));   /* closed at b */
	assert_false(vp_id_in_oc(&a, &a, &b));  /* open at a */
	assert_false(vp_id_in_oo(&b, &a, &b));
	assert_true(vp_id_in_co(&a, &a, &b));
	assert_false(vp_id_in_co(&b, &a, &b));
	/* a == b: the whole ring for (a, a], all but a for (a, a). */
	assert_true(vp_id_in_oc(&out, &a, &a));
	assert_true(vp_id_in_oc(&a, &a, &a));
	assert_true(vp_id_in_oo(&out, &a, &a));
	assert_false(vp_id_in_oo(&a, &a, &a));
}

static void distance_is_clockwise(void **state)
{
	vp_id_t a = H("ffffffffffffffffffffffffffffffff");
	vp_id_t b = H("00000000000000000000000000000001");
	(void)state;
	assert_true(vp_id_dist(&a, &b) == 2);
	assert_true(vp_id_dist(&b, &a) == (vp_u128_t)0 - 2);
	assert_true(vp_id_cmp(&a, &b) > 0);
}

static void fraction_ppb(void **state)
{
	vp_id_t zero = H("00000000000000000000000000000000");
	vp_id_t half = H("80000000000000000000000000000000");
	vp_id_t tenth = H("1999999999999999999999999999999a"); /* ceil(2^128/10) */
	vp_id_t one = H("00000000000000000000000000000001");
	(void)state;
	assert_int_equal(vp_id_fraction_ppb(&zero, &half), 500000000u);
	assert_int_equal(vp_id_fraction_ppb(&half, &zero), 500000000u);
	assert_int_equal(vp_id_fraction_ppb(&zero, &tenth), 100000000u);
	assert_int_equal(vp_id_fraction_ppb(&zero, &zero), 1000000000u);
	assert_int_equal(vp_id_fraction_ppb(&zero, &one), 0u);
	assert_int_equal(vp_id_fraction_ppb(&one, &zero), 999999999u);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(hex_round_trip_and_errors),
		cmocka_unit_test(resource_id_is_sha1_prefix),
		cmocka_unit_test(add_pow2_wraps),
		cmocka_unit_test(intervals_with_wraparound),
		cmocka_unit_test(distance_is_clockwise),
		cmocka_unit_test(fraction_ppb),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
