/* The key filter (storage/keyfilter.h): a key added is never reported absent,
 * across layer growth; keys never added are mostly reported absent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/errcode.h"
#include "common/rand.h"
#include "storage/keyfilter.h"

#define KEY 20 /* the store's key: Resource-ID 16 + Kind-ID 4 */

static void key_of(uint64_t i, uint8_t k[KEY])
{
	/* Distinct, structured keys (counters, like a carrier's consecutive numbers). */
	uint64_t a = i, b = ~i;
	uint32_t c = 0xF0000100u;
	memcpy(k, &a, 8);
	memcpy(k + 8, &b, 8);
	memcpy(k + 16, &c, 4);
}

/* Several times the first layer's capacity, so the filter grows at least twice and
 * every older layer must still answer for its keys. */
static void added_keys_are_never_absent_across_growth(void **state)
{
	st_keyfilter_t f;
	const uint64_t n = 5u * ST_KF_MIN_KEYS;
	uint8_t k[KEY];
	(void)state;
	assert_int_equal(st_kf_init(&f, 0), 0);
	assert_int_equal(f.n_layers, 1);
	for (uint64_t i = 0; i < n; i++) {
		key_of(i, k);
		assert_int_equal(st_kf_add(&f, k, KEY), 0);
	}
	assert_true(f.n_layers >= 3);
	for (uint64_t i = 0; i < n; i++) {
		key_of(i, k);
		if (!st_kf_maybe(&f, k, KEY))
			fail_msg("added key %llu reported absent (layers=%zu)", (unsigned long long)i,
			         f.n_layers);
	}
	/* Adding again changes nothing. */
	{
		uint64_t added = f.added;
		key_of(7, k);
		assert_int_equal(st_kf_add(&f, k, KEY), 0);
		assert_int_equal(f.added, added);
	}
	st_kf_free(&f);
}

/* The filter must answer "absent" for most keys it never saw, or it saves no read:
 * at ~12 bits per key and 6 probes the design rate is ~1 %; 3 % is the bound
 * (an over-full layer or a hash that ignores bytes of the key would exceed it). */
static void unknown_keys_are_mostly_absent(void **state)
{
	st_keyfilter_t f;
	const uint64_t n = 3u * ST_KF_MIN_KEYS, probes = 1000000;
	uint64_t fp = 0;
	uint8_t k[KEY];
	(void)state;
	assert_int_equal(st_kf_init(&f, 0), 0);
	for (uint64_t i = 0; i < n; i++) {
		key_of(i, k);
		assert_int_equal(st_kf_add(&f, k, KEY), 0);
	}
	for (uint64_t i = 0; i < probes; i++) {
		key_of(n + i, k);
		fp += st_kf_maybe(&f, k, KEY);
	}
	/* Keys differing only in the last byte (the Kind-ID) must be told apart too. */
	for (uint64_t i = 0; i < probes; i++) {
		key_of(i, k);
		k[KEY - 1] ^= 0x5a;
		fp += st_kf_maybe(&f, k, KEY);
	}
	print_message("false positives: %.3f %% (%zu layers, %zu KiB)\n",
	              100.0 * (double)fp / (double)(2 * probes), f.n_layers, st_kf_bytes(&f) / 1024);
	assert_true(fp < 2 * probes * 3 / 100);
	st_kf_free(&f);
}

/* Sized from the database's estimate at open: no growth needed for that many. */
static void init_sizes_for_the_expected_keys(void **state)
{
	st_keyfilter_t f;
	uint8_t k[KEY];
	(void)state;
	assert_int_equal(st_kf_init(&f, 4u * ST_KF_MIN_KEYS), 0);
	assert_true(f.layer[0].cap >= 4u * ST_KF_MIN_KEYS);
	for (uint64_t i = 0; i < 4u * ST_KF_MIN_KEYS; i++) {
		key_of(i, k);
		assert_int_equal(st_kf_add(&f, k, KEY), 0);
	}
	assert_int_equal(f.n_layers, 1);
	/* A key the filter already reports (a false positive) is not added again. */
	assert_true(f.added <= 4u * ST_KF_MIN_KEYS && f.added > 4u * ST_KF_MIN_KEYS / 100 * 98);
	st_kf_free(&f);
}

/* A filter turned off (after an allocation failure) answers "maybe" for everything
 * and refuses additions, so the store reads every key from the database. */
static void freed_filter_says_maybe(void **state)
{
	st_keyfilter_t f;
	uint8_t k[KEY];
	(void)state;
	assert_int_equal(st_kf_init(&f, 0), 0);
	st_kf_free(&f);
	assert_int_equal(f.n_layers, 0);
	assert_int_equal(st_kf_bytes(&f), 0);
	for (uint64_t i = 0; i < 1000; i++) {
		key_of(i, k);
		assert_true(st_kf_maybe(&f, k, KEY));
	}
	assert_int_equal(st_kf_add(&f, k, KEY), VP_ENOMEM);
}

/* check_add answers as st_kf_maybe() did before it, and adds what was absent;
 * st_kf_prefetch() is only a hint (answers unchanged). */
static void check_add_answers_then_adds(void **state)
{
	st_keyfilter_t f;
	uint8_t k[KEY];
	uint64_t absent = 0;
	bool maybe;
	(void)state;
	assert_int_equal(st_kf_init(&f, 0), 0);
	for (uint64_t i = 0; i < 100000; i++) {
		bool before;
		key_of(i, k);
		st_kf_prefetch(&f, k, KEY);
		before = st_kf_maybe(&f, k, KEY);
		assert_int_equal(st_kf_check_add(&f, k, KEY, &maybe), 0);
		assert_true(maybe == before);
		absent += !maybe;
		assert_true(st_kf_maybe(&f, k, KEY));
		assert_int_equal(st_kf_check_add(&f, k, KEY, &maybe), 0);
		assert_true(maybe);
	}
	assert_int_equal(f.added, absent);
	assert_true(absent > 99000);
	st_kf_free(&f);
	assert_int_equal(st_kf_check_add(&f, k, KEY, &maybe), VP_ENOMEM);
	assert_true(maybe);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(added_keys_are_never_absent_across_growth),
		cmocka_unit_test(unknown_keys_are_mostly_absent),
		cmocka_unit_test(init_sizes_for_the_expected_keys),
		cmocka_unit_test(freed_filter_says_maybe),
		cmocka_unit_test(check_add_answers_then_adds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
