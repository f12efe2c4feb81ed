/*
 * control/server/lookup: the 3-copy majority vote over a number's
 * VIPR-REGISTRATION copies (seed 001 §B.4), on real storage/vipr_kind bytes:
 * a majority, ties, a rogue copy that forges or hides a claim, missing copies,
 * withdrawals and malformed entries.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "common/errcode.h"
#include "control/server/lookup.h"
#include "storage/vipr_kind.h"

/* Backing bytes of one entry. */
typedef struct ent {
	uint8_t key[ST_VIPR_KEY_LEN];
	uint8_t value[ST_VIPR_VALUE_MAX_LEN];
	vsrv_entry_t e;
} ent_t;

/* Claimant 0xNN.. for VService \p vs, contact 0xCC.., methods \p m; \p deleted: a withdrawal. */
static void mk(ent_t *x, uint8_t node, uint32_t vs, uint8_t m, bool deleted)
{
	st_vipr_key_t k;
	st_vipr_value_t v;
	size_t len = 0;
	memset(x, 0, sizeof(*x));
	memset(&k, 0, sizeof(k));
	memset(&v, 0, sizeof(v));
	memset(k.node.b, node, VP_ID_LEN);
	k.vservice_id = vs;
	memset(v.contact.b, (uint8_t)(node ^ 0xCC), VP_ID_LEN);
	v.vservice_id = vs;
	v.pvp_methods = m;
	st_vipr_key_encode(&k, x->key);
	assert_int_equal(st_vipr_value_encode(&v, x->value, sizeof(x->value), &len), 0);
	x->e = (vsrv_entry_t){ .key = x->key, .key_len = ST_VIPR_KEY_LEN, .value = deleted ? NULL : x->value,
	                       .value_len = deleted ? 0 : len, .exists = !deleted };
}

/* Copies as arrays of vsrv_entry_t built from ent_t lists. */
typedef struct copyset {
	vsrv_entry_t e[VSRV_COPIES][8];
	vsrv_copy_t c[VSRV_COPIES];
} copyset_t;

static void set_copy(copyset_t *s, int c, bool answered, const ent_t *const *ents, size_t n)
{
	for (size_t i = 0; i < n; i++)
		s->e[c][i] = ents[i]->e;
	s->c[c] = (vsrv_copy_t){ .answered = answered, .entries = s->e[c], .n = n };
}

static void majority_of_equal_copies_returns_every_claim(void **state)
{
	ent_t a, b;
	const ent_t *both[] = { &a, &b };
	copyset_t s;
	vsrv_reg_t out[8];
	vsrv_vote_t v;
	size_t n = 99;
	(void)state;
	mk(&a, 0x11, 7, 3, false);
	mk(&b, 0x22, 9, 1, false);
	for (int c = 0; c < VSRV_COPIES; c++)
		set_copy(&s, c, true, both, 2);
	assert_int_equal(vsrv_lookup_vote(s.c, out, 8, &n, &v), 0);
	assert_int_equal(n, 2);
	assert_string_equal(v.incident, "");
	assert_int_equal(v.answered, 3);
	/* Decoded from the real layout: key Node-ID and VService, value contact and methods. */
	assert_int_equal(out[0].node.b[0], 0x11);
	assert_int_equal(out[0].vservice_id, 7);
	assert_int_equal(out[0].contact.b[15], 0x11 ^ 0xCC);
	assert_int_equal(out[0].methods, 3);
	assert_int_equal(out[1].node.b[0], 0x22);
	assert_int_equal(out[1].vservice_id, 9);
	assert_int_equal(out[1].methods, 1);
}

/* A rogue copy adds a forged claim: one vote, dropped; it hides the owner's claim: still kept. */
static void rogue_copy_is_outvoted(void **state)
{
	ent_t own, forged;
	const ent_t *good[] = { &own }, *plus[] = { &own, &forged }, *hide[] = { &forged };
	copyset_t s;
	vsrv_reg_t out[8];
	vsrv_vote_t v;
	size_t n;
	(void)state;
	mk(&own, 0x11, 1, 3, false);
	mk(&forged, 0x66, 1, 3, false);
	for (int rogue = 0; rogue < VSRV_COPIES; rogue++) {
		for (int c = 0; c < VSRV_COPIES; c++)
			set_copy(&s, c, true, c == rogue ? plus : good, c == rogue ? 2 : 1);
		assert_int_equal(vsrv_lookup_vote(s.c, out, 8, &n, &v), 0);
		assert_int_equal(n, 1);
		assert_int_equal(out[0].node.b[0], 0x11);
		assert_int_equal(v.outvoted, 1);
		assert_non_null(strstr(v.incident, "disagree"));
		/* The same rogue copy drops the owner's claim instead. */
		for (int c = 0; c < VSRV_COPIES; c++)
			set_copy(&s, c, true, c == rogue ? hide : good, 1);
		assert_int_equal(vsrv_lookup_vote(s.c, out, 8, &n, &v), 0);
		assert_int_equal(n, 1);
		assert_int_equal(out[0].node.b[0], 0x11);
		assert_non_null(strstr(v.incident, "disagree"));
	}
	/* Listing its forgery three times gives it one vote, not three. */
	{
		const ent_t *spam[] = { &forged, &forged, &forged };
		set_copy(&s, 0, true, spam, 3);
		set_copy(&s, 1, true, good, 1);
		set_copy(&s, 2, true, good, 1);
		assert_int_equal(vsrv_lookup_vote(s.c, out, 8, &n, &v), 0);
		assert_int_equal(n, 1);
		assert_int_equal(out[0].node.b[0], 0x11);
	}
}

/* A changed value (same claimant, another VService or methods) is another entry. */
static void tie_keeps_neither_version(void **state)
{
	ent_t v1, v2, v3;
	const ent_t *c1[] = { &v1 }, *c2[] = { &v2 }, *c3[] = { &v3 };
	copyset_t s;
	vsrv_reg_t out[8];
	vsrv_vote_t v;
	size_t n;
	(void)state;
	mk(&v1, 0x11, 1, 3, false);
	mk(&v2, 0x11, 1, 1, false); /* same key, methods differ */
	mk(&v3, 0x11, 1, 2, false);
	/* Two copies answered and disagree: 1 vote each, no majority. */
	set_copy(&s, 0, true, c1, 1);
	set_copy(&s, 1, true, c2, 1);
	set_copy(&s, 2, false, NULL, 0);
	assert_int_equal(vsrv_lookup_vote(s.c, out, 8, &n, &v), 0);
	assert_int_equal(n, 0);
	assert_int_equal(v.outvoted, 2);
	assert_non_null(strstr(v.incident, "only 2 of 3"));
	/* Three copies, three versions. */
	set_copy(&s, 2, true, c3, 1);
	assert_int_equal(vsrv_lookup_vote(s.c, out, 8, &n, &v), 0);
	assert_int_equal(n, 0);
	assert_int_equal(v.outvoted, 3);
	assert_non_null(strstr(v.incident, "disagree"));
	/* Two against one: the two win. */
	set_copy(&s, 2, true, c2, 1);
	assert_int_equal(vsrv_lookup_vote(s.c, out, 8, &n, &v), 0);
	assert_int_equal(n, 1);
	assert_int_equal(out[0].methods, 1);
}

static void missing_copies(void **state)
{
	ent_t a;
	const ent_t *one[] = { &a };
	copyset_t s;
	vsrv_reg_t out[8];
	vsrv_vote_t v;
	size_t n = 5;
	(void)state;
	mk(&a, 0x11, 1, 3, false);
	/* All copies missing: the lookup failed, nothing returned (their entries, if any, are ignored). */
	set_copy(&s, 0, false, one, 1);
	set_copy(&s, 1, false, one, 1);
	set_copy(&s, 2, false, one, 1);
	assert_int_equal(vsrv_lookup_vote(s.c, out, 8, &n, &v), VP_ETIMEOUT);
	assert_int_equal(n, 0);
	assert_int_equal(v.answered, 0);
	assert_non_null(strstr(v.incident, "none of the 3"));
	/* Only one answered: nothing to compare with, taken as is, with an incident. */
	set_copy(&s, 1, true, one, 1);
	assert_int_equal(vsrv_lookup_vote(s.c, out, 8, &n, &v), 0);
	assert_int_equal(n, 1);
	assert_non_null(strstr(v.incident, "only 1 of 3"));
	/* Two answered and agree. */
	set_copy(&s, 2, true, one, 1);
	assert_int_equal(vsrv_lookup_vote(s.c, out, 8, &n, &v), 0);
	assert_int_equal(n, 1);
	assert_non_null(strstr(v.incident, "only 2 of 3"));
	/* Nobody claims the number, every copy agrees: success with 0 claimants, no incident. */
	for (int c = 0; c < VSRV_COPIES; c++)
		set_copy(&s, c, true, NULL, 0);
	assert_int_equal(vsrv_lookup_vote(s.c, out, 8, &n, &v), 0);
	assert_int_equal(n, 0);
	assert_string_equal(v.incident, "");
}

static void withdrawals_and_malformed_entries(void **state)
{
	ent_t a, w, bad, mism;
	const ent_t *ca[] = { &a }, *cw[] = { &w }, *cb[] = { &bad }, *cm[] = { &mism };
	copyset_t s;
	vsrv_reg_t out[8];
	vsrv_vote_t v;
	size_t n;
	(void)state;
	mk(&a, 0x11, 1, 3, false);
	mk(&w, 0x11, 1, 3, true);
	/* The majority holds the deletion: withdrawn, not returned; the stale copy is outvoted. */
	set_copy(&s, 0, true, cw, 1);
	set_copy(&s, 1, true, cw, 1);
	set_copy(&s, 2, true, ca, 1);
	assert_int_equal(vsrv_lookup_vote(s.c, out, 8, &n, &v), 0);
	assert_int_equal(n, 0);
	assert_int_equal(v.outvoted, 1);
	/* A value of an unknown version, held by all: kept by the vote, but not a registration. */
	mk(&bad, 0x11, 1, 3, false);
	bad.value[0] = 9;
	for (int c = 0; c < VSRV_COPIES; c++)
		set_copy(&s, c, true, cb, 1);
	assert_int_equal(vsrv_lookup_vote(s.c, out, 8, &n, &v), 0);
	assert_int_equal(n, 0);
	assert_int_equal(v.malformed, 1);
	assert_non_null(strstr(v.incident, "1 malformed"));
	/* Key says VService 1, value says 2: inconsistent, dropped. */
	mk(&mism, 0x11, 1, 3, false);
	{
		ent_t other;
		mk(&other, 0x11, 2, 3, false);
		memcpy(mism.value, other.value, sizeof(mism.value));
	}
	for (int c = 0; c < VSRV_COPIES; c++)
		set_copy(&s, c, true, cm, 1);
	assert_int_equal(vsrv_lookup_vote(s.c, out, 8, &n, &v), 0);
	assert_int_equal(n, 0);
	assert_int_equal(v.malformed, 1);
	/* A truncated key never decodes either. */
	a.e.key_len = ST_VIPR_KEY_LEN - 1;
	for (int c = 0; c < VSRV_COPIES; c++)
		set_copy(&s, c, true, ca, 1);
	assert_int_equal(vsrv_lookup_vote(s.c, out, 8, &n, &v), 0);
	assert_int_equal(n, 0);
	assert_int_equal(v.malformed, 1);
}

static void output_is_bounded(void **state)
{
	ent_t e[5];
	const ent_t *all[5];
	copyset_t s;
	vsrv_reg_t out[3];
	vsrv_vote_t v;
	size_t n;
	(void)state;
	for (int i = 0; i < 5; i++) {
		mk(&e[i], (uint8_t)(0x10 + i), 1, 3, false);
		all[i] = &e[i];
	}
	for (int c = 0; c < VSRV_COPIES; c++)
		set_copy(&s, c, true, all, 5);
	assert_int_equal(vsrv_lookup_vote(s.c, out, 3, &n, &v), 0);
	assert_int_equal(n, 3);
	assert_int_equal(v.overflow, 2);
	assert_int_equal(vsrv_lookup_vote(NULL, out, 3, &n, &v), VP_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(majority_of_equal_copies_returns_every_claim),
		cmocka_unit_test(rogue_copy_is_outvoted),
		cmocka_unit_test(tie_keeps_neither_version),
		cmocka_unit_test(missing_copies),
		cmocka_unit_test(withdrawals_and_malformed_entries),
		cmocka_unit_test(output_is_bounded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
