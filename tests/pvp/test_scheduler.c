/* Validation scheduler: random delay, every claimant, back-off, routes and pending tickets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "harness.h"
#include "common/errcode.h"
#include "common/log.h"
#include "pvp/scheduler.h"

#define NUM "+14085551234"
#define CALLER "+33123456789"
#define CALL_MS (183 * 1000ull)

typedef struct world {
	uint64_t now;
	vp_clock_t clock;
	pvp_claimant_t claimants[4];
	size_t nclaimants;
	int lookup_failures;         /* fail this many lookups first */
	int lookups;
	int validations;
	pvp_client_t *cli;
	h_orig_side_t side;          /* the validator's guess ledger */
	/* learned */
	int nroutes, npending;
	char route_uris[4][PVP_URI_MAX];
	char route_claimant[4][PVP_CLAIMANT_ID_MAX];
	uint8_t ticket[PVP_TICKET_MAX];
	size_t ticket_len;
} world_t;

static int lookup(void *arg, const char *number, pvp_claimant_t *out, size_t max, size_t *n)
{
	world_t *w = arg;
	assert_string_equal(number, NUM);
	w->lookups++;
	if (w->lookup_failures > 0) {
		w->lookup_failures--;
		return VP_ETIMEOUT;
	}
	*n = w->nclaimants < max ? w->nclaimants : max;
	memcpy(out, w->claimants, *n * sizeof(*out));
	return 0;
}

static int validate(void *arg, const pvp_claimant_t *c, const pvp_vcr_t *r, const uint8_t *prev,
                    size_t prev_len, pvp_validation_t *out)
{
	world_t *w = arg;
	w->validations++;
	return pvp_sched_tcp_validate(w->cli, c, r, prev, prev_len, out);
}

static size_t prev_ticket(void *arg, const char *number, const char *claimant, uint8_t *buf, size_t cap)
{
	world_t *w = arg;
	(void)number;
	(void)claimant;
	if (!w->ticket_len || w->ticket_len > cap)
		return 0;
	memcpy(buf, w->ticket, w->ticket_len);
	return w->ticket_len;
}

static void route(void *arg, const pvp_route_t *rt)
{
	world_t *w = arg;
	assert_string_equal(rt->number, NUM);
	if (rt->resp->status == PVP_ST_ROUTES) {
		assert_true(w->nroutes < 4);
		snprintf(w->route_uris[w->nroutes], PVP_URI_MAX, "%s", rt->resp->uris[0]);
		snprintf(w->route_claimant[w->nroutes], PVP_CLAIMANT_ID_MAX, "%s", rt->claimant->id);
		w->nroutes++;
	} else {
		w->npending++;
	}
	memcpy(w->ticket, rt->resp->ticket, rt->resp->ticket_len);
	w->ticket_len = rt->resp->ticket_len;
}

static pvp_sched_t *make(world_t *w, uint32_t min_s, uint32_t max_s)
{
	pvp_sched_conf_t c;
	pvp_client_conf_t cc = { .domain = "carrier-b.example", .io_timeout_ms = 3000 };
	pvp_sched_t *s;
	w->clock.now_ms = vp_clock_manual_now;
	w->clock.ctx = &w->now;
	h_orig_side_open(&w->side, NULL, NULL);
	cc.ledger = w->side.ledger;
	assert_int_equal(pvp_client_new(&cc, &w->cli), 0);
	memset(&c, 0, sizeof(c));
	c.delay_min_s = min_s;
	c.delay_max_s = max_s;
	c.rng_seed = 42;
	c.lookup = lookup;
	c.lookup_arg = w;
	c.validate = validate;
	c.validate_arg = w;
	c.prev_ticket = prev_ticket;
	c.prev_ticket_arg = w;
	c.route = route;
	c.route_arg = w;
	c.clock = &w->clock;
	assert_int_equal(pvp_sched_new(&c, &s), 0);
	return s;
}

static void add_claimant(world_t *w, const char *id, const h_claimant_t *c, unsigned methods)
{
	pvp_claimant_t *cl = &w->claimants[w->nclaimants++];
	snprintf(cl->id, sizeof(cl->id), "%s", id);
	if (c)
		snprintf(cl->addr, sizeof(cl->addr), "127.0.0.1:%s", c->port);
	else
		snprintf(cl->addr, sizeof(cl->addr), "127.0.0.1:1"); /* nothing listens there */
	cl->methods = methods;
}

static void delay_is_random_inside_the_window(void **state)
{
	world_t w;
	pvp_sched_t *s;
	uint64_t lo = UINT64_MAX, hi = 0;
	pvp_vcr_t r = h_orig(NUM, CALLER, T0_MS, T0_MS + CALL_MS);
	size_t ran;
	(void)state;
	memset(&w, 0, sizeof(w));
	w.now = T0_MS + CALL_MS;
	s = make(&w, 300, 7200);
	for (int i = 0; i < 200; i++) {
		uint64_t before = pvp_sched_next_due_ms(s);
		assert_int_equal(pvp_sched_add(s, &r), 0);
		(void)before;
	}
	/* Drain the heap in order by advancing the clock to each due time. */
	while (pvp_sched_pending(s)) {
		uint64_t due = pvp_sched_next_due_ms(s);
		assert_true(due >= r.stop_ms + 300 * 1000 && due <= r.stop_ms + 7200 * 1000);
		if (due < lo)
			lo = due;
		if (due > hi)
			hi = due;
		w.now = due - 1;
		assert_int_equal(pvp_sched_run(s, 1000, &ran), 0);
		assert_int_equal(ran, 0); /* not yet */
		w.now = due;
		assert_int_equal(pvp_sched_run(s, 1, &ran), 0);
		assert_int_equal(ran, 1);
	}
	/* 200 uniform draws over ~2 h spread over most of it. */
	assert_true(hi - lo > 5000 * 1000);
	assert_int_equal(w.lookups, 200);
	assert_int_equal(pvp_sched_next_due_ms(s), UINT64_MAX);
	r.dir = PVP_DIR_TERM;
	assert_int_equal(pvp_sched_add(s, &r), VP_EINVAL);
	pvp_sched_free(s);
	pvp_client_free(w.cli);
	h_orig_side_close(&w.side, false);
}

static void validates_every_claimant_and_keeps_both_routes(void **state)
{
	world_t w;
	h_claimant_t ent, prov, thief;
	pvp_sched_t *s;
	pvp_sched_stats_t st;
	pvp_vcr_t r = h_orig(NUM, CALLER, T0_MS, T0_MS + CALL_MS);
	(void)state;
	memset(&w, 0, sizeof(w));
	h_claimant_start(&ent, NULL, 0);
	h_claimant_start(&prov, NULL, 0);
	h_claimant_start(&thief, NULL, 0);
	snprintf(ent.host, sizeof(ent.host), "pbx.enterprise.example");
	snprintf(prov.host, sizeof(prov.host), "sbc.provider.example");
	h_claimant_add(&ent, NUM, CALLER, T0_MS + 1000, T0_MS + CALL_MS + 1000);
	h_claimant_add(&prov, NUM, CALLER, T0_MS + 300, T0_MS + CALL_MS + 200);
	add_claimant(&w, "thief", &thief, PVP_METHODS_ALL);
	add_claimant(&w, "enterprise", &ent, PVP_METHODS_ALL);
	add_claimant(&w, "provider", &prov, PVP_METHODS_ALL);
	w.now = T0_MS;
	s = make(&w, 1, 1);
	assert_int_equal(pvp_sched_add(s, &r), 0);
	w.now = r.stop_ms + 1000;
	assert_int_equal(pvp_sched_run(s, 10, NULL), 0);
	assert_int_equal(w.nroutes, 2);
	assert_string_equal(w.route_claimant[0], "enterprise");
	assert_string_equal(w.route_uris[0], "sips:" NUM "@pbx.enterprise.example");
	assert_string_equal(w.route_claimant[1], "provider");
	assert_string_equal(w.route_uris[1], "sips:" NUM "@sbc.provider.example");
	pvp_sched_stats(s, &st);
	assert_int_equal(st.routes, 2);
	assert_int_equal(st.failed, 1); /* the thief: definite, not retried */
	assert_int_equal(pvp_sched_pending(s), 0);
	pvp_sched_free(s);
	pvp_client_free(w.cli);
	h_orig_side_close(&w.side, false);
	h_claimant_stop(&ent);
	h_claimant_stop(&prov);
	h_claimant_stop(&thief);
}

static void lookup_failure_retried_with_backoff(void **state)
{
	world_t w;
	h_claimant_t c;
	pvp_sched_t *s;
	pvp_vcr_t r = h_orig(NUM, CALLER, T0_MS, T0_MS + CALL_MS);
	(void)state;
	memset(&w, 0, sizeof(w));
	h_claimant_start(&c, NULL, 0);
	h_claimant_add(&c, NUM, CALLER, T0_MS, T0_MS + CALL_MS);
	add_claimant(&w, "owner", &c, PVP_METHODS_ALL);
	w.lookup_failures = 2;
	s = make(&w, 1, 1);
	assert_int_equal(pvp_sched_add(s, &r), 0);
	w.now = r.stop_ms + 1000;
	assert_int_equal(pvp_sched_run(s, 10, NULL), 0);
	assert_int_equal(pvp_sched_next_due_ms(s), w.now + 60 * 1000);
	w.now += 60 * 1000;
	assert_int_equal(pvp_sched_run(s, 10, NULL), 0);
	assert_int_equal(pvp_sched_next_due_ms(s), w.now + 120 * 1000);
	w.now += 120 * 1000;
	assert_int_equal(pvp_sched_run(s, 10, NULL), 0);
	assert_int_equal(w.lookups, 3);
	assert_int_equal(w.nroutes, 1);
	assert_int_equal(pvp_sched_pending(s), 0);
	pvp_sched_free(s);
	pvp_client_free(w.cli);
	h_orig_side_close(&w.side, false);
	h_claimant_stop(&c);
}

static void unreachable_claimant_retried_then_dropped_owner_not_revalidated(void **state)
{
	world_t w;
	h_claimant_t c;
	pvp_sched_t *s;
	pvp_sched_stats_t st;
	pvp_vcr_t r = h_orig(NUM, CALLER, T0_MS, T0_MS + CALL_MS);
	(void)state;
	memset(&w, 0, sizeof(w));
	h_claimant_start(&c, NULL, 0);
	h_claimant_add(&c, NUM, CALLER, T0_MS, T0_MS + CALL_MS);
	add_claimant(&w, "owner", &c, PVP_METHODS_ALL);
	add_claimant(&w, "down", NULL, PVP_METHODS_ALL);
	s = make(&w, 1, 1);
	assert_int_equal(pvp_sched_add(s, &r), 0);
	w.now = r.stop_ms + 1000;
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pvp_sched_run(s, 10, NULL), 0);
		if (pvp_sched_pending(s))
			w.now = pvp_sched_next_due_ms(s);
	}
	assert_int_equal(pvp_sched_pending(s), 0);
	pvp_sched_stats(s, &st);
	assert_int_equal(st.routes, 1);
	assert_int_equal(st.unreachable, 4);
	assert_int_equal(st.dropped, 1);
	/* owner once + down 4 times */
	assert_int_equal(w.validations, 5);
	assert_int_equal(w.nroutes, 1);
	pvp_sched_free(s);
	pvp_client_free(w.cli);
	h_orig_side_close(&w.side, false);
	h_claimant_stop(&c);
}

static void pending_ticket_fed_back_until_routes(void **state)
{
	world_t w;
	h_claimant_t c;
	pvp_sched_t *s;
	uint64_t day = 86400 * 1000ull;
	pvp_vcr_t r1 = h_orig(NUM, NULL, T0_MS, T0_MS + CALL_MS);
	pvp_vcr_t r2 = h_orig(NUM, NULL, T0_MS + day, T0_MS + day + 95 * 1000);
	(void)state;
	memset(&w, 0, sizeof(w));
	h_claimant_start(&c, NULL, 0);
	h_claimant_add(&c, NUM, NULL, T0_MS, T0_MS + CALL_MS);
	add_claimant(&w, "owner", &c, PVP_METHODS_ALL);
	s = make(&w, 1, 1);
	assert_int_equal(pvp_sched_add(s, &r1), 0);
	w.now = r1.stop_ms + 1000;
	assert_int_equal(pvp_sched_run(s, 10, NULL), 0);
	assert_int_equal(w.npending, 1);
	assert_int_equal(w.nroutes, 0);
	c.clock_ms += day;
	h_claimant_add(&c, NUM, NULL, T0_MS + day, T0_MS + day + 95 * 1000);
	assert_int_equal(pvp_sched_add(s, &r2), 0);
	w.now = r2.stop_ms + 1000;
	assert_int_equal(pvp_sched_run(s, 10, NULL), 0);
	assert_int_equal(w.nroutes, 1);
	pvp_sched_free(s);
	pvp_client_free(w.cli);
	h_orig_side_close(&w.side, false);
	h_claimant_stop(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(delay_is_random_inside_the_window),
		cmocka_unit_test(validates_every_claimant_and_keeps_both_routes),
		cmocka_unit_test(lookup_failure_retried_with_backoff),
		cmocka_unit_test(unreachable_claimant_retried_then_dropped_owner_not_revalidated),
		cmocka_unit_test(pending_ticket_fed_back_until_routes),
	};
	vp_log_setup(VP_LOG_ERROR, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
