/* Policy: black/white lists with thresholds, failed-handshake rate limits. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "common/errcode.h"
#include "pvp/policy.h"

static void blacklist_refuses_listed_domain_and_subdomains(void **state)
{
	pvp_policy_t *p;
	uint32_t t;
	(void)state;
	assert_int_equal(pvp_policy_new(NULL, &p), 0);
	assert_int_equal(pvp_policy_threshold(p, "anyone.example", &t), 0);
	assert_int_equal(t, 1600);
	assert_int_equal(pvp_policy_list(p, "Spam.Example", PVP_THRESHOLD_NEVER), 0);
	assert_int_equal(pvp_policy_threshold(p, "spam.example", &t), VP_EREFUSED);
	assert_int_equal(pvp_policy_threshold(p, "sip.SPAM.example", &t), VP_EREFUSED);
	assert_int_equal(pvp_policy_threshold(p, "notspam.example", &t), 0);
	/* A more specific entry wins. */
	assert_int_equal(pvp_policy_list(p, "ok.spam.example", 3200), 0);
	assert_int_equal(pvp_policy_threshold(p, "ok.spam.example", &t), 0);
	assert_int_equal(t, 3200);
	assert_int_equal(pvp_policy_threshold(p, "bad domain", &t), VP_EINVAL);
	pvp_policy_free(p);
}

static void whitelist_refuses_everyone_else(void **state)
{
	pvp_policy_conf_t c = { .mode = PVP_LIST_WHITE, .min_entropy_cbits = 2000 };
	pvp_policy_t *p;
	uint32_t t;
	(void)state;
	assert_int_equal(pvp_policy_new(&c, &p), 0);
	assert_int_equal(pvp_policy_threshold(p, "a.example", &t), VP_EREFUSED);
	assert_int_equal(pvp_policy_list(p, "partner.example", 800), 0);
	assert_int_equal(pvp_policy_threshold(p, "partner.example", &t), 0);
	assert_int_equal(t, 800);
	/* Re-listing replaces. */
	assert_int_equal(pvp_policy_list(p, "partner.example", PVP_THRESHOLD_NEVER), 0);
	assert_int_equal(pvp_policy_threshold(p, "partner.example", &t), VP_EREFUSED);
	pvp_policy_free(p);
}

static void rate_limit_counts_failures_per_key_and_window(void **state)
{
	pvp_policy_conf_t c = { .peer_fail_limit = 3, .number_fail_limit = 2, .window_s = 60 };
	pvp_policy_t *p;
	(void)state;
	assert_int_equal(pvp_policy_new(&c, &p), 0);
	for (int i = 0; i < 3; i++) {
		assert_true(pvp_policy_rate_ok(p, PVP_RATE_PEER, "10.0.0.1", 1000));
		pvp_policy_rate_fail(p, PVP_RATE_PEER, "10.0.0.1", 1000);
	}
	assert_false(pvp_policy_rate_ok(p, PVP_RATE_PEER, "10.0.0.1", 1000));
	assert_true(pvp_policy_rate_ok(p, PVP_RATE_PEER, "10.0.0.2", 1000));
	/* Kinds are separate namespaces. */
	assert_true(pvp_policy_rate_ok(p, PVP_RATE_NUMBER, "10.0.0.1", 1000));
	pvp_policy_rate_fail(p, PVP_RATE_NUMBER, "+14085551234", 1000);
	pvp_policy_rate_fail(p, PVP_RATE_NUMBER, "+14085551234", 1000);
	assert_false(pvp_policy_rate_ok(p, PVP_RATE_NUMBER, "+14085551234", 1000));
	/* Next window (1020 = 17 * 60). */
	assert_true(pvp_policy_rate_ok(p, PVP_RATE_PEER, "10.0.0.1", 1020));
	assert_true(pvp_policy_rate_ok(p, PVP_RATE_NUMBER, "+14085551234", 1020));
	pvp_policy_free(p);
}

static void flooding_other_keys_does_not_free_a_limited_key(void **state)
{
	pvp_policy_conf_t c = { .peer_fail_limit = 2, .table_slots = 64 };
	pvp_policy_t *p;
	char key[32];
	(void)state;
	assert_int_equal(pvp_policy_new(&c, &p), 0);
	pvp_policy_rate_fail(p, PVP_RATE_PEER, "attacker", 0);
	pvp_policy_rate_fail(p, PVP_RATE_PEER, "attacker", 0);
	/* Thousands of one-failure keys evict each other, not the key at its limit. */
	for (int i = 0; i < 5000; i++) {
		snprintf(key, sizeof(key), "flood-%d", i);
		pvp_policy_rate_fail(p, PVP_RATE_PEER, key, 0);
	}
	assert_false(pvp_policy_rate_ok(p, PVP_RATE_PEER, "attacker", 0));
	pvp_policy_free(p);
}

/*
 * The eviction attack: keys with *more* failures than the victim fill its
 * neighbourhood, then one new key takes the victim's slot.  The victim's count
 * must survive (a reset would hand out another round of online guesses).
 */
static void eviction_by_busier_keys_does_not_reset_a_limited_key(void **state)
{
	pvp_policy_conf_t c = { .number_fail_limit = 10, .table_slots = 8 };
	pvp_policy_t *p;
	char key[32];
	(void)state;
	assert_int_equal(pvp_policy_new(&c, &p), 0);
	for (int i = 0; i < 10; i++)
		pvp_policy_rate_fail(p, PVP_RATE_NUMBER, "+14085551234", 0);
	assert_false(pvp_policy_rate_ok(p, PVP_RATE_NUMBER, "+14085551234", 0));
	/* 8 slots, 8 probes: every key sees the whole table. */
	for (int k = 0; k < 7; k++) {
		snprintf(key, sizeof(key), "+1408555%04d", k);
		for (int i = 0; i < 11; i++)
			pvp_policy_rate_fail(p, PVP_RATE_NUMBER, key, 0);
	}
	pvp_policy_rate_fail(p, PVP_RATE_NUMBER, "+14085559999", 0);
	assert_false(pvp_policy_rate_ok(p, PVP_RATE_NUMBER, "+14085551234", 0));
	pvp_policy_rate_fail(p, PVP_RATE_NUMBER, "+14085551234", 0);
	assert_false(pvp_policy_rate_ok(p, PVP_RATE_NUMBER, "+14085551234", 0));
	pvp_policy_free(p);
}

/* Same attack below the limit: the victim's count must not start again from zero. */
static void eviction_does_not_reset_a_partial_count(void **state)
{
	pvp_policy_conf_t c = { .number_fail_limit = 10, .table_slots = 8 };
	pvp_policy_t *p;
	char key[32];
	(void)state;
	assert_int_equal(pvp_policy_new(&c, &p), 0);
	for (int i = 0; i < 5; i++)
		pvp_policy_rate_fail(p, PVP_RATE_NUMBER, "+14085551234", 0);
	for (int k = 0; k < 7; k++) {
		snprintf(key, sizeof(key), "+1408555%04d", k);
		for (int i = 0; i < 6; i++)
			pvp_policy_rate_fail(p, PVP_RATE_NUMBER, key, 0);
	}
	pvp_policy_rate_fail(p, PVP_RATE_NUMBER, "+14085559999", 0);
	/* At most 10 - 5 further failures before the victim is limited again. */
	for (int i = 0; i < 5; i++)
		pvp_policy_rate_fail(p, PVP_RATE_NUMBER, "+14085551234", 0);
	assert_false(pvp_policy_rate_ok(p, PVP_RATE_NUMBER, "+14085551234", 0));
	/* A new window still starts every key afresh. */
	assert_true(pvp_policy_rate_ok(p, PVP_RATE_NUMBER, "+14085551234", 3600));
	pvp_policy_free(p);
}

typedef struct lister {
	pvp_policy_t *p;
	int done;
} lister_t;

static void *list_many(void *arg)
{
	lister_t *l = arg;
	char d[64];
	for (int i = 0; i < 2000; i++) {
		snprintf(d, sizeof(d), "carrier-%d.example", i);
		pvp_policy_list(l->p, d, (uint32_t)i);
	}
	__atomic_store_n(&l->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

/*
 * Lists can change while worker threads look thresholds up (a configuration
 * reload): the header promises thread safety, so the list grows under the
 * lock (run under TSan/ASan to see the race this guards against).
 */
static void listing_while_looking_up(void **state)
{
	pvp_policy_t *p;
	lister_t l;
	pthread_t th;
	uint32_t t;
	int lookups = 0;
	(void)state;
	assert_int_equal(pvp_policy_new(NULL, &p), 0);
	l.p = p;
	l.done = 0;
	assert_int_equal(pthread_create(&th, NULL, list_many, &l), 0);
	while (!__atomic_load_n(&l.done, __ATOMIC_SEQ_CST) || lookups < 100) {
		assert_int_equal(pvp_policy_threshold(p, "sip.carrier-1999.example", &t), 0);
		assert_true(t == 1600 || t == 1999);
		lookups++;
	}
	pthread_join(th, NULL);
	assert_int_equal(pvp_policy_threshold(p, "sip.carrier-1999.example", &t), 0);
	assert_int_equal(t, 1999);
	pvp_policy_free(p);
}

/* take = check and count in one step; refund gives one back, never below zero. */
static void take_counts_up_front_and_refund_gives_back(void **state)
{
	pvp_policy_conf_t c = { .number_fail_limit = 2 };
	pvp_policy_t *p;
	(void)state;
	assert_int_equal(pvp_policy_new(&c, &p), 0);
	assert_true(pvp_policy_rate_take(p, PVP_RATE_NUMBER, "+14085551234", 0));
	assert_true(pvp_policy_rate_take(p, PVP_RATE_NUMBER, "+14085551234", 0));
	assert_false(pvp_policy_rate_take(p, PVP_RATE_NUMBER, "+14085551234", 0));
	assert_false(pvp_policy_rate_ok(p, PVP_RATE_NUMBER, "+14085551234", 0));
	pvp_policy_rate_refund(p, PVP_RATE_NUMBER, "+14085551234", 0);
	assert_true(pvp_policy_rate_ok(p, PVP_RATE_NUMBER, "+14085551234", 0));
	assert_true(pvp_policy_rate_take(p, PVP_RATE_NUMBER, "+14085551234", 0));
	assert_false(pvp_policy_rate_take(p, PVP_RATE_NUMBER, "+14085551234", 0));
	/* A refund in another window, or for a key never taken, changes nothing. */
	pvp_policy_rate_refund(p, PVP_RATE_NUMBER, "+14085551234", 3600);
	pvp_policy_rate_refund(p, PVP_RATE_NUMBER, "+14085550000", 0);
	assert_false(pvp_policy_rate_ok(p, PVP_RATE_NUMBER, "+14085551234", 0));
	for (int i = 0; i < 5; i++)
		pvp_policy_rate_refund(p, PVP_RATE_NUMBER, "+14085551234", 0);
	assert_true(pvp_policy_rate_take(p, PVP_RATE_NUMBER, "+14085551234", 0));
	assert_true(pvp_policy_rate_take(p, PVP_RATE_NUMBER, "+14085551234", 0));
	assert_false(pvp_policy_rate_take(p, PVP_RATE_NUMBER, "+14085551234", 0));
	pvp_policy_free(p);
}

static void bad_table_size_rejected(void **state)
{
	pvp_policy_conf_t c = { .table_slots = 100 };
	pvp_policy_t *p;
	(void)state;
	assert_int_equal(pvp_policy_new(&c, &p), VP_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(blacklist_refuses_listed_domain_and_subdomains),
		cmocka_unit_test(whitelist_refuses_everyone_else),
		cmocka_unit_test(rate_limit_counts_failures_per_key_and_window),
		cmocka_unit_test(flooding_other_keys_does_not_free_a_limited_key),
		cmocka_unit_test(eviction_by_busier_keys_does_not_reset_a_limited_key),
		cmocka_unit_test(eviction_does_not_reset_a_partial_count),
		cmocka_unit_test(listing_while_looking_up),
		cmocka_unit_test(take_counts_up_front_and_refund_gives_back),
		cmocka_unit_test(bad_table_size_rejected),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
