/* The quota counter table and the token-bucket table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "common/errcode.h"
#include "storage/quota.h"
#include "storage/rate.h"

static vp_id_t id_of(unsigned i)
{
	vp_id_t id;
	memset(&id, 0, sizeof(id));
	id.b[0] = (uint8_t)(i >> 8);
	id.b[15] = (uint8_t)i;
	return id;
}

static void quota_table_matches_a_reference_count(void **state)
{
	st_quota_table_t t;
	static uint32_t ref[2000][2];
	uint64_t x = 88172645463325252ull;
	(void)state;
	memset(ref, 0, sizeof(ref));
	assert_int_equal(st_quota_init(&t), 0);
	for (int step = 0; step < 200000; step++) {
		unsigned o, k;
		int32_t d;
		x ^= x << 13; x ^= x >> 7; x ^= x << 17;
		o = (unsigned)(x % 2000);
		k = (unsigned)(x >> 20) & 1;
		d = ((x >> 30) % 3 == 0 && ref[o][k] > 0) ? -1 : 1;
		assert_int_equal(st_quota_add(&t, &(vp_id_t){ 0 }, 0, 0), 0);
		{
			vp_id_t id = id_of(o);
			assert_int_equal(st_quota_add(&t, &id, k, d), 0);
		}
		ref[o][k] = (uint32_t)((int32_t)ref[o][k] + d);
	}
	{
		size_t nz = 0;
		for (unsigned o = 0; o < 2000; o++)
			for (unsigned k = 0; k < 2; k++) {
				vp_id_t id = id_of(o);
				assert_int_equal(st_quota_get(&t, &id, k), ref[o][k]);
				nz += ref[o][k] != 0;
			}
		assert_int_equal(st_quota_pairs(&t), nz);
	}
	st_quota_free(&t);
}

static void quota_table_refuses_underflow_and_erases_zeroes(void **state)
{
	st_quota_table_t t;
	vp_id_t a = id_of(1);
	(void)state;
	assert_int_equal(st_quota_init(&t), 0);
	assert_int_equal(st_quota_add(&t, &a, 5, -1), VP_ERANGE);
	assert_int_equal(st_quota_add(&t, &a, 5, 2), 0);
	assert_int_equal(st_quota_pairs(&t), 1);
	assert_int_equal(st_quota_add(&t, &a, 5, -3), VP_ERANGE);
	assert_int_equal(st_quota_get(&t, &a, 5), 2);
	assert_int_equal(st_quota_add(&t, &a, 5, -2), 0);
	assert_int_equal(st_quota_pairs(&t), 0);
	assert_int_equal(st_quota_get(&t, &a, 5), 0);
	st_quota_free(&t);
}

static void bucket_allows_burst_then_refills_at_rate(void **state)
{
	st_rate_table_t t;
	st_rate_limit_t lim[ST_RATE_NOPS] = { { 10, 5 }, { 0, 0 } };
	vp_id_t a = id_of(1);
	uint64_t now = 1000000;
	(void)state;
	assert_int_equal(st_rate_init(&t, lim, 1), 0);
	for (int i = 0; i < 5; i++)
		assert_int_equal(st_rate_take(&t, &a, ST_RATE_STORE, now), 0);
	assert_int_equal(st_rate_take(&t, &a, ST_RATE_STORE, now), VP_ERATELIMIT);
	assert_int_equal(st_rate_take(&t, &a, ST_RATE_STORE, now + 99), VP_ERATELIMIT);
	assert_int_equal(st_rate_take(&t, &a, ST_RATE_STORE, now + 100), 0); /* 10/s */
	/* A long pause refills only up to the burst. */
	now += 3600 * 1000;
	for (int i = 0; i < 5; i++)
		assert_int_equal(st_rate_take(&t, &a, ST_RATE_STORE, now), 0);
	assert_int_equal(st_rate_take(&t, &a, ST_RATE_STORE, now), VP_ERATELIMIT);
	/* A clock stepping back mints nothing. */
	assert_int_equal(st_rate_take(&t, &a, ST_RATE_STORE, now - 5000), VP_ERATELIMIT);
	/* Fetches are unpoliced in this configuration. */
	for (int i = 0; i < 100; i++)
		assert_int_equal(st_rate_take(&t, &a, ST_RATE_FETCH, now), 0);
	assert_int_equal(st_rate_take(&t, &a, ST_RATE_NOPS, now), VP_EINVAL);
	st_rate_free(&t);
}

static void bucket_share_polices_its_fraction_of_the_node_rate(void **state)
{
	st_rate_table_t t[3];
	/* Node-wide 10/s, burst 6, over 3 shards: 10/3 per second and 2 at once per shard. */
	st_rate_limit_t lim[ST_RATE_NOPS] = { { 10, 6 }, { 1, 1 } };
	vp_id_t a = id_of(1);
	uint64_t now = 1000000, granted = 0;
	(void)state;
	assert_int_equal(st_rate_init(&t[0], lim, 4097), VP_EINVAL);
	for (int s = 0; s < 3; s++)
		assert_int_equal(st_rate_init(&t[s], lim, 3), 0);
	for (int s = 0; s < 3; s++) {
		assert_int_equal(st_rate_take(&t[s], &a, ST_RATE_STORE, now), 0);
		assert_int_equal(st_rate_take(&t[s], &a, ST_RATE_STORE, now), 0);
		assert_int_equal(st_rate_take(&t[s], &a, ST_RATE_STORE, now), VP_ERATELIMIT);
	}
	/* One shard earns a token in 300 ms (10/3 per second), not in 299. */
	assert_int_equal(st_rate_take(&t[0], &a, ST_RATE_STORE, now + 299), VP_ERATELIMIT);
	assert_int_equal(st_rate_take(&t[0], &a, ST_RATE_STORE, now + 300), 0);
	/* Requests spread on the shards: the node grants exactly 10/s.  Shards 1 and 2
	 * were emptied at 0 ms and earn 60.3 s × 10/3 = 201 tokens by 60,300 ms; shard 0,
	 * emptied again at 300 ms, earns 200. */
	for (uint64_t ms = 301; ms <= 60300; ms++)
		for (int s = 0; s < 3; s++)
			granted += st_rate_take(&t[s], &a, ST_RATE_STORE, now + ms) == 0;
	assert_true(granted == 602);
	/* Burst 1 over 3 shards: each shard still holds one token. */
	assert_int_equal(st_rate_take(&t[1], &a, ST_RATE_FETCH, now), 0);
	assert_int_equal(st_rate_take(&t[1], &a, ST_RATE_FETCH, now), VP_ERATELIMIT);
	assert_int_equal(st_rate_take(&t[1], &a, ST_RATE_FETCH, now + 2999), VP_ERATELIMIT);
	assert_int_equal(st_rate_take(&t[1], &a, ST_RATE_FETCH, now + 3000), 0);
	for (int s = 0; s < 3; s++)
		st_rate_free(&t[s]);
}

static void idle_buckets_are_purged_instead_of_growing(void **state)
{
	st_rate_table_t t;
	st_rate_limit_t lim[ST_RATE_NOPS] = { { 1000, 1 }, { 1000, 1 } };
	uint64_t now = 5000;
	(void)state;
	assert_int_equal(st_rate_init(&t, lim, 1), 0);
	/* 10,000 signers, each active once, 10 ms apart: all but the newest are idle. */
	for (unsigned i = 0; i < 10000; i++) {
		vp_id_t id = id_of(i);
		assert_int_equal(st_rate_take(&t, &id, ST_RATE_STORE, now), 0);
		now += 10;
	}
	assert_true(t.cap <= 128);
	/* A busy signer keeps its (empty) bucket across purges. */
	{
		vp_id_t busy = id_of(60000);
		assert_int_equal(st_rate_take(&t, &busy, ST_RATE_STORE, now), 0);
		for (unsigned i = 0; i < 200; i++) {
			vp_id_t id = id_of(i);
			st_rate_take(&t, &id, ST_RATE_FETCH, now);
		}
		assert_int_equal(st_rate_take(&t, &busy, ST_RATE_STORE, now), VP_ERATELIMIT);
	}
	st_rate_free(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(quota_table_matches_a_reference_count),
		cmocka_unit_test(quota_table_refuses_underflow_and_erases_zeroes),
		cmocka_unit_test(bucket_allows_burst_then_refills_at_rate),
		cmocka_unit_test(bucket_share_polices_its_fraction_of_the_node_rate),
		cmocka_unit_test(idle_buckets_are_purged_instead_of_growing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
