/*
 * control/server/lookup.c - the 3-copy majority vote (see lookup.h).
 */
#include "control/server/lookup.h"

#include <stdio.h>
#include <string.h>

#include "common/errcode.h"
#include "storage/vipr_kind.h"

static bool entry_eq(const vsrv_entry_t *a, const vsrv_entry_t *b)
{
	if (a->key_len != b->key_len || memcmp(a->key, b->key, a->key_len) || a->exists != b->exists)
		return false;
	if (!a->exists)
		return true; /* a deletion carries no value */
	return a->value_len == b->value_len && (!a->value_len || !memcmp(a->value, b->value, a->value_len));
}

/* Does copy \p c vote for \p e (hold exactly it)?  A copy votes once per entry, however often it lists it. */
static bool copy_votes_for(const vsrv_copy_t *c, const vsrv_entry_t *e)
{
	if (!c->answered)
		return false;
	for (size_t i = 0; i < c->n; i++)
		if (entry_eq(&c->entries[i], e))
			return true;
	return false;
}

/* Decode a kept, existing entry into a registration; false when malformed. */
static bool decode(const vsrv_entry_t *e, vsrv_reg_t *out)
{
	st_vipr_key_t k;
	st_vipr_value_t v;
	if (st_vipr_key_decode(e->key, e->key_len, &k) || !e->value ||
	    st_vipr_value_decode(e->value, e->value_len, &v) || v.vservice_id != k.vservice_id)
		return false;
	memset(out, 0, sizeof(*out));
	out->node = k.node;
	out->vservice_id = k.vservice_id;
	out->contact = v.contact;
	out->methods = v.pvp_methods;
	return true;
}

int vsrv_lookup_vote(const vsrv_copy_t copies[VSRV_COPIES], vsrv_reg_t *out, size_t max, size_t *n,
                     vsrv_vote_t *vote)
{
	vsrv_vote_t local;
	vsrv_vote_t *v = vote ? vote : &local;
	bool all_equal = true;

	if (!copies || !n || (max && !out))
		return VP_EINVAL;
	*n = 0;
	memset(v, 0, sizeof(*v));
	for (int c = 0; c < VSRV_COPIES; c++)
		v->answered += copies[c].answered;
	if (!v->answered) {
		snprintf(v->incident, sizeof(v->incident), "none of the %d copies answered the fetch", VSRV_COPIES);
		return VP_ETIMEOUT;
	}
	for (int c = 0; c < VSRV_COPIES; c++) {
		const vsrv_copy_t *cp = &copies[c];
		for (size_t i = 0; cp->answered && i < cp->n; i++) {
			const vsrv_entry_t *e = &cp->entries[i];
			unsigned votes = 0;
			bool seen = false;
			vsrv_reg_t r;
			/* Count each distinct entry once: at its first occurrence over the copies. */
			for (int c0 = 0; c0 <= c && !seen; c0++)
				for (size_t i0 = 0; copies[c0].answered && i0 < (c0 == c ? i : copies[c0].n) && !seen; i0++)
					seen = entry_eq(&copies[c0].entries[i0], e);
			if (seen)
				continue;
			for (int c2 = 0; c2 < VSRV_COPIES; c2++)
				votes += copy_votes_for(&copies[c2], e);
			if (votes != v->answered)
				all_equal = false;
			if (!(votes >= 2 || (v->answered == 1 && votes == 1))) {
				v->outvoted++;
				continue;
			}
			if (!e->exists)
				continue; /* the majority says: withdrawn */
			if (!decode(e, &r)) {
				v->malformed++;
				continue;
			}
			if (*n < max)
				out[(*n)++] = r;
			else
				v->overflow++;
		}
	}
	if (v->answered < VSRV_COPIES)
		snprintf(v->incident, sizeof(v->incident), "only %u of %d copies answered the fetch%s", v->answered,
		         VSRV_COPIES, v->answered == 1 ? ": its entries were taken unchecked" : "");
	else if (!all_equal || v->malformed)
		snprintf(v->incident, sizeof(v->incident),
		         "the %d copies disagree (%zu/%zu/%zu entries): kept what at least 2 hold, %u outvoted, "
		         "%u malformed", VSRV_COPIES, copies[0].n, copies[1].n, copies[2].n, v->outvoted, v->malformed);
	return 0;
}

unsigned vsrv_copies_standing(const bool *answered, const vp_id_t *responder, const vp_id_t *dest, unsigned n,
                              bool *missed)
{
	unsigned k;
	if (missed)
		*missed = false;
	for (k = 1; k < n; k++) {
		vp_id_t want;
		if (!answered[k - 1])
			break;
		want = vp_id_add_pow2(&responder[k - 1], 0);
		if (!vp_id_eq(&want, &dest[k])) {
			if (missed)
				*missed = true;
			break;
		}
	}
	return n ? k : 0;
}
