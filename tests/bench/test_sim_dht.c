/*
 * The vipr_server DHT on the Chord overlay simulator (bench/support/sim_dht): the
 * entries it stores (storage/vipr_kind.h bytes), and stores/fetches/withdrawals
 * through a real simulated overlay, with the product's majority vote
 * (control/server/lookup.h, tested on its own in tests/control/test_lookup.c).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "bench/support/sim_dht.h"
#include "common/errcode.h"
#include "common/log.h"
#include "control/vap/vap_msg.h"
#include "storage/vipr_kind.h"

/* The simulator stores storage/vipr_kind.h's bytes: they decode with storage's functions. */
static void test_entry_is_a_real_registration(void **state)
{
	vsrv_reg_t r;
	sim_entry_t e;
	st_vipr_key_t k;
	st_vipr_value_t v;
	(void)state;
	memset(&r, 0, sizeof(r));
	memset(r.node.b, 0xab, VP_ID_LEN);
	memset(r.contact.b, 0xcd, VP_ID_LEN);
	r.vservice_id = 0x01020304;
	r.methods = 3;
	assert_int_equal(sim_dht_entry_encode(&r, false, &e), 0);
	assert_true(e.exists);
	assert_int_equal(st_vipr_key_decode(e.key, SIM_KEY_LEN, &k), 0);
	assert_true(vp_id_eq(&k.node, &r.node));
	assert_int_equal(k.vservice_id, 0x01020304);
	assert_int_equal(e.value_len, ST_VIPR_VALUE_MIN_LEN);
	assert_int_equal(st_vipr_value_decode(e.value, e.value_len, &v), 0);
	assert_true(vp_id_eq(&v.contact, &r.contact));
	assert_int_equal(v.vservice_id, 0x01020304);
	assert_int_equal(v.pvp_methods, 3);
	/* A withdrawal is a deletion of the same key: no value. */
	assert_int_equal(sim_dht_entry_encode(&r, true, &e), 0);
	assert_false(e.exists);
	assert_int_equal(e.value_len, 0);
	assert_int_equal(st_vipr_key_decode(e.key, SIM_KEY_LEN, &k), 0);
	assert_true(vp_id_eq(&k.node, &r.node));
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
		cmocka_unit_test(test_entry_is_a_real_registration),
		cmocka_unit_test(test_overlay_store_fetch_withdraw),
		cmocka_unit_test(test_overlay_rogue_responsible_outvoted),
	};
	vp_log_setup(VP_LOG_ERROR, stderr);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
