/*
 * The vipr_server DHT on the Chord overlay simulator (bench/sim_dht): the
 * registration value, the majority vote over 3 copies (seed 001 §B.4), and
 * stores/fetches/withdrawals through a real simulated overlay.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "bench/sim/sim_dht.h"
#include "common/errcode.h"
#include "common/log.h"
#include "control/vap/vap_msg.h"

static sim_entry_t entry(uint8_t owner_byte, uint32_t vservice, uint8_t methods, bool withdrawn)
{
	sim_entry_t e;
	vsrv_reg_t r;
	memset(&e, 0, sizeof(e));
	memset(&r, 0, sizeof(r));
	memset(e.owner.b, owner_byte, VP_ID_LEN);
	r.node = e.owner;
	r.contact = e.owner;
	r.vservice_id = vservice;
	r.methods = methods;
	sim_dht_value_encode(&r, withdrawn, e.value);
	e.storage_time = 1000;
	return e;
}

static void test_value_round_trip(void **state)
{
	sim_entry_t e = entry(0xab, 0x01020304, 3, false);
	vsrv_reg_t r;
	bool w = true;
	(void)state;
	assert_int_equal(e.value[0], 1);
	assert_int_equal(sim_dht_value_decode(e.value, &e.owner, &r, &w), 0);
	assert_false(w);
	assert_int_equal(r.vservice_id, 0x01020304);
	assert_int_equal(r.methods, 3);
	assert_true(vp_id_eq(&r.node, &e.owner));
	assert_true(vp_id_eq(&r.contact, &e.owner));
	e = entry(0xab, 7, 3, true);
	assert_int_equal(sim_dht_value_decode(e.value, &e.owner, &r, &w), 0);
	assert_true(w);
	e.value[0] = 9;
	assert_int_equal(sim_dht_value_decode(e.value, &e.owner, &r, &w), VP_EMALFORMED);
}

static size_t vote(sim_entry_t c0[], size_t n0, sim_entry_t c1[], size_t n1, sim_entry_t c2[], size_t n2,
                   bool a0, bool a1, bool a2, vsrv_reg_t *out, char *incident)
{
	const sim_entry_t *copies[3] = { c0, c1, c2 };
	size_t n[3] = { n0, n1, n2 };
	bool answered[3] = { a0, a1, a2 };
	return sim_dht_vote(copies, n, answered, out, 8, incident, 200);
}

static void test_vote_all_equal(void **state)
{
	sim_entry_t a[2] = { entry(1, 1, 3, false), entry(2, 1, 3, false) };
	vsrv_reg_t out[8];
	char inc[200];
	(void)state;
	assert_int_equal(vote(a, 2, a, 2, a, 2, true, true, true, out, inc), 2);
	assert_string_equal(inc, "");
	assert_int_equal(out[0].node.b[0], 1);
	assert_int_equal(out[1].node.b[0], 2);
}

/* A rogue replica adds a claim: one vote, dropped, incident logged. */
static void test_vote_rogue_copy_outvoted(void **state)
{
	sim_entry_t good[1] = { entry(1, 1, 3, false) };
	sim_entry_t rogue[2] = { entry(1, 1, 3, false), entry(0x66, 1, 3, false) };
	vsrv_reg_t out[8];
	char inc[200];
	(void)state;
	assert_int_equal(vote(good, 1, rogue, 2, good, 1, true, true, true, out, inc), 1);
	assert_int_equal(out[0].node.b[0], 1);
	assert_non_null(strstr(inc, "disagree"));
	/* A rogue responsible node hiding the owner's claim does not hide it either. */
	assert_int_equal(vote(rogue + 1, 1, good, 1, good, 1, true, true, true, out, inc), 1);
	assert_int_equal(out[0].node.b[0], 1);
	assert_non_null(strstr(inc, "disagree"));
}

/* A different value for the same owner counts as a different entry. */
static void test_vote_value_mismatch(void **state)
{
	sim_entry_t v1[1] = { entry(1, 1, 3, false) }, v2[1] = { entry(1, 2, 3, false) };
	vsrv_reg_t out[8];
	char inc[200];
	(void)state;
	assert_int_equal(vote(v1, 1, v2, 1, v2, 1, true, true, true, out, inc), 1);
	assert_int_equal(out[0].vservice_id, 2);
	assert_int_equal(vote(v1, 1, v2, 1, v1, 0, true, true, true, out, inc), 0);
	assert_non_null(strstr(inc, "disagree"));
}

static void test_vote_missing_copies_and_withdrawn(void **state)
{
	sim_entry_t a[1] = { entry(1, 1, 3, false) }, w[1] = { entry(1, 1, 3, true) };
	vsrv_reg_t out[8];
	char inc[200];
	(void)state;
	/* Only the responsible node answered: its copy is used, with an incident. */
	assert_int_equal(vote(a, 1, NULL, 0, NULL, 0, true, false, false, out, inc), 1);
	assert_non_null(strstr(inc, "only 1 of 3"));
	/* Two answered and agree. */
	assert_int_equal(vote(a, 1, a, 1, NULL, 0, true, true, false, out, inc), 1);
	assert_non_null(strstr(inc, "only 2 of 3"));
	/* A withdrawn claim held by the majority is not returned. */
	assert_int_equal(vote(w, 1, w, 1, a, 1, true, true, true, out, inc), 0);
}

/* ---- through the simulated overlay -------------------------------------------------- */

typedef struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	int status;
	size_t n;
	vsrv_reg_t regs[VSRV_REGS_MAX];
	char incident[200];
} waiter_t;

static void w_init(waiter_t *w)
{
	memset(w, 0, sizeof(*w));
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
}

static void w_store_done(void *arg, int status)
{
	waiter_t *w = arg;
	pthread_mutex_lock(&w->mu);
	w->status = status;
	w->done = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static void w_fetch_done(void *arg, int status, const vsrv_reg_t *regs, size_t n, const char *incident)
{
	waiter_t *w = arg;
	pthread_mutex_lock(&w->mu);
	w->status = status;
	w->n = n;
	memcpy(w->regs, regs, n * sizeof(*regs));
	snprintf(w->incident, sizeof(w->incident), "%s", incident ? incident : "");
	w->done = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static int w_wait(waiter_t *w)
{
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 20;
	pthread_mutex_lock(&w->mu);
	while (!w->done)
		if (pthread_cond_timedwait(&w->cv, &w->mu, &dl))
			break;
	pthread_mutex_unlock(&w->mu);
	return w->done ? w->status : VP_ETIMEOUT;
}

static void test_overlay_store_fetch_withdraw(void **state)
{
	sim_dht_conf_t conf = { .seed = 7, .plain_nodes = 12, .carriers = 2 };
	sim_dht_formed_t f;
	sim_dht_t *d = NULL;
	sim_dht_stats_t st;
	vsrv_dht_t a, b;
	vsrv_reg_t reg;
	waiter_t w;
	(void)state;
	assert_int_equal(sim_dht_start(&conf, &d, &f), 0);
	assert_int_equal(f.nodes, 14);
	assert_true(f.messages > 0);
	sim_dht_iface(d, 0, &a);
	sim_dht_iface(d, 1, &b);
	memset(&reg, 0, sizeof(reg));
	reg.node = *sim_dht_carrier_id(d, 0);
	reg.contact = reg.node;
	reg.vservice_id = 42;
	reg.methods = 3;

	/* Only the carrier's own Node-ID may be claimed through its handle. */
	assert_int_equal(b.store(b.ctx, "+14085550100", VAP_OP_ADD, &reg, w_store_done, &w), VP_EFORBIDDEN);

	w_init(&w);
	assert_int_equal(a.store(a.ctx, "+14085550100", VAP_OP_ADD, &reg, w_store_done, &w), 0);
	assert_int_equal(w_wait(&w), 0);
	w_init(&w);
	assert_int_equal(b.fetch(b.ctx, "+14085550100", w_fetch_done, &w), 0);
	assert_int_equal(w_wait(&w), 0);
	assert_int_equal(w.n, 1);
	assert_true(vp_id_eq(&w.regs[0].node, &reg.node));
	assert_int_equal(w.regs[0].vservice_id, 42);
	assert_int_equal(w.regs[0].methods, 3);
	assert_string_equal(w.incident, ""); /* the 3 copies agree */

	w_init(&w);
	assert_int_equal(b.fetch(b.ctx, "+14085550101", w_fetch_done, &w), 0);
	assert_int_equal(w_wait(&w), 0);
	assert_int_equal(w.n, 0);

	w_init(&w);
	assert_int_equal(a.store(a.ctx, "+14085550100", VAP_OP_WITHDRAW, &reg, w_store_done, &w), 0);
	assert_int_equal(w_wait(&w), 0);
	w_init(&w);
	assert_int_equal(b.fetch(b.ctx, "+14085550100", w_fetch_done, &w), 0);
	assert_int_equal(w_wait(&w), 0);
	assert_int_equal(w.n, 0);

	sim_dht_get_stats(d, &st);
	assert_int_equal(st.stores, 2);
	assert_int_equal(st.fetches, 3);
	assert_int_equal(st.incidents, 0);
	assert_int_equal(st.codec_errors, 0);
	sim_dht_free(d);
}

/* A responsible node that drops its copy is outvoted by the 2 replicas; the fetch reports an incident. */
static void test_overlay_rogue_responsible_outvoted(void **state)
{
	sim_dht_conf_t conf = { .seed = 11, .plain_nodes = 10, .carriers = 2, .pace = SIM_DHT_PACE_FAST };
	sim_dht_t *d = NULL;
	sim_dht_stats_t st;
	vsrv_dht_t a, b;
	vsrv_reg_t ra, rb;
	waiter_t w;
	(void)state;
	assert_int_equal(sim_dht_start(&conf, &d, NULL), 0);
	sim_dht_iface(d, 0, &a);
	sim_dht_iface(d, 1, &b);
	memset(&ra, 0, sizeof(ra));
	ra.node = ra.contact = *sim_dht_carrier_id(d, 0);
	ra.vservice_id = 1;
	ra.methods = 3;
	rb = ra;
	rb.node = rb.contact = *sim_dht_carrier_id(d, 1);
	w_init(&w);
	assert_int_equal(a.store(a.ctx, "+33123450042", VAP_OP_ADD, &ra, w_store_done, &w), 0);
	assert_int_equal(w_wait(&w), 0);
	w_init(&w);
	assert_int_equal(b.store(b.ctx, "+33123450042", VAP_OP_ADD, &rb, w_store_done, &w), 0);
	assert_int_equal(w_wait(&w), 0);
	assert_true(sim_dht_forget(d, "+33123450042") >= 0);
	w_init(&w);
	assert_int_equal(a.fetch(a.ctx, "+33123450042", w_fetch_done, &w), 0);
	assert_int_equal(w_wait(&w), 0);
	assert_int_equal(w.n, 2);
	assert_non_null(strstr(w.incident, "disagree"));
	sim_dht_get_stats(d, &st);
	assert_int_equal(st.incidents, 1);
	sim_dht_free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_value_round_trip),
		cmocka_unit_test(test_vote_all_equal),
		cmocka_unit_test(test_vote_rogue_copy_outvoted),
		cmocka_unit_test(test_vote_value_mismatch),
		cmocka_unit_test(test_vote_missing_copies_and_withdrawn),
		cmocka_unit_test(test_overlay_store_fetch_withdraw),
		cmocka_unit_test(test_overlay_rogue_responsible_outvoted),
	};
	vp_log_setup(VP_LOG_ERROR, stderr);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
