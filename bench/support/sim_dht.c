/*
 * bench/support/sim_dht.c - vsrv_dht_t on the Chord overlay simulator (see header).
 */
#include "bench/support/sim_dht.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <urcu-qsbr.h>

#include "bench/sim/sim.h"
#include "common/clock.h"
#include "common/errcode.h"
#include "common/log.h"
#include "common/net.h"
#include "control/vap/vap_msg.h"
#include "control/server/lookup.h"
#include "bench/support/vsrv_memdht.h"
#include "storage/vipr_kind.h"

#define LOGMOD "simdht"
#define FORM_LIMIT_MS (600u * 1000)     /* simulated time allowed to form the overlay */
#define BUSY_STEP_MS 20                 /* simulated time per step while operations are in flight */

typedef enum req_kind { REQ_STORE = 1, REQ_FETCH, REQ_FORGET } req_kind_t;

/* One request from a server, owned by the overlay thread once queued. */
typedef struct req {
	struct req *next;
	req_kind_t kind;
	unsigned carrier;
	char number[VP_E164_BUFLEN];
	vp_id_t res;
	sim_entry_t entry;                  /* store */
	vsrv_done_fn done;
	vsrv_fetch_fn fdone;
	void *arg;
	/* fetch state: up to 3 copies, chained by the overlay thread */
	int stage;                          /* copy being fetched (0..2) */
	bool in_flight, finished, ok;       /* the current simulator operation */
	int forget_rc;                      /* REQ_FORGET: the node's index or VP_E* */
	uint32_t responder;
	uint32_t copy_ok[SIM_DHT_COPIES];
	uint32_t copy_node[SIM_DHT_COPIES];
	size_t copy_n[SIM_DHT_COPIES];
	sim_entry_t copies[SIM_DHT_COPIES][SIM_FETCH_MAX];
	size_t cur_n;
	sim_entry_t cur[SIM_FETCH_MAX];
} req_t;

typedef struct handle {
	sim_dht_t *d;
	unsigned k;
} handle_t;

struct sim_dht {
	sim_dht_conf_t conf;
	pthread_t th;
	bool th_started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop;
	bool formed_done;
	int formed_rc;
	sim_dht_formed_t formed;
	req_t *queue, *queue_tail;          /* from servers, under mu */
	handle_t handles[SIM_DHT_MAX_CARRIERS];
	uint32_t carrier_idx[SIM_DHT_MAX_CARRIERS];
	vp_id_t carrier_id[SIM_DHT_MAX_CARRIERS];
	char host[SIM_DHT_MAX_CARRIERS][64];
	uint16_t port[SIM_DHT_MAX_CARRIERS];
	sim_dht_stats_t st;
	uint64_t last_storage_time;         /* overlay thread */
};

/* ---- entries: storage/vipr_kind.h's key and value ---------------------------------- */

int sim_dht_entry_encode(const vsrv_reg_t *reg, bool withdrawn, sim_entry_t *e)
{
	st_vipr_key_t k = { reg->node, reg->vservice_id };
	st_vipr_value_t v = { reg->contact, reg->vservice_id, reg->methods, NULL, 0 };
	size_t len = 0;
	int rc;
	memset(e, 0, sizeof(*e));
	st_vipr_key_encode(&k, e->key);
	e->exists = !withdrawn;
	if (withdrawn)
		return 0; /* a deletion: no value */
	if ((rc = st_vipr_value_encode(&v, e->value, sizeof(e->value), &len)))
		return rc;
	e->value_len = (uint8_t)len;
	return 0;
}

/* ---- simulator callbacks (overlay thread, inside sim_run_until) ------------------- */

static void on_store(void *arg, bool ok)
{
	req_t *r = arg;
	r->in_flight = false;
	r->finished = true;
	r->ok = ok;
}

static void on_fetch(void *arg, bool ok, uint32_t responder, uint32_t hops, const sim_entry_t *e, size_t n)
{
	req_t *r = arg;
	(void)hops;
	r->in_flight = false;
	r->finished = true;
	r->ok = ok;
	r->responder = responder;
	r->cur_n = 0;
	for (size_t i = 0; ok && i < n && i < SIM_FETCH_MAX; i++)
		r->cur[r->cur_n++] = e[i];
}

/* ---- the overlay thread ------------------------------------------------------------ */

static bool stopping(sim_dht_t *d)
{
	return __atomic_load_n(&d->stop, __ATOMIC_ACQUIRE) != 0;
}

static void stat_add(sim_dht_t *d, uint64_t *f, uint64_t n)
{
	pthread_mutex_lock(&d->mu);
	*f += n;
	pthread_mutex_unlock(&d->mu);
}

static int form(sim_dht_t *d, sim_t *s)
{
	unsigned total = d->conf.plain_nodes + d->conf.carriers;
	uint64_t t0 = sim_now(s), w0 = vp_time_mono_ns();
	/* Carriers first (their vnodes are ordinary members), then the plain ones, 200 ms apart. */
	for (unsigned i = 0; i < total; i++) {
		int idx = sim_spawn(s);
		if (idx < 0)
			return idx;
		if (i < d->conf.carriers) {
			d->carrier_idx[i] = (uint32_t)idx;
			d->carrier_id[i] = *chord_node_id(sim_node(s, (uint32_t)idx));
		}
		sim_run_until(s, sim_now(s) + 200);
	}
	while (sim_now(s) - t0 < FORM_LIMIT_MS) {
		sim_run_until(s, sim_now(s) + 1000);
		if (sim_live_joined(s) == total && sim_ring_errors(s) == 0)
			break;
	}
	d->formed.nodes = sim_live_joined(s);
	d->formed.sim_ms = sim_now(s) - t0;
	d->formed.wall_s = (double)(vp_time_mono_ns() - w0) / 1e9;
	d->formed.messages = sim_msgs_total(s);
	if (d->formed.nodes != total || sim_ring_errors(s))
		return VP_ETIMEOUT;
	return 0;
}

static uint64_t next_storage_time(sim_dht_t *d)
{
	uint64_t t = vp_time_wall_ms();
	if (t <= d->last_storage_time)
		t = d->last_storage_time + 1;
	d->last_storage_time = t;
	return t;
}

static void start_fetch_stage(sim_dht_t *d, sim_t *s, req_t *r)
{
	vp_id_t route_to = r->res;
	uint32_t from = d->carrier_idx[r->carrier];
	if (r->stage > 0) {
		/* The replicas: the successors of the previous answerer. */
		vp_id_t one;
		memset(&one, 0, sizeof(one));
		one.b[VP_ID_LEN - 1] = 1;
		route_to = *chord_node_id(sim_node(s, r->copy_node[r->stage - 1]));
		route_to = vp_id_add(&route_to, &one);
	}
	r->in_flight = true;
	r->finished = false;
	if (sim_fetch_entries(s, from, &r->res, &route_to, on_fetch, r))
		on_fetch(r, false, UINT32_MAX, 0, NULL, 0);
}

/* Complete a fetch request with the vote over its copies. */
static void finish_fetch(sim_dht_t *d, req_t *r)
{
	vsrv_reg_t regs[VSRV_REGS_MAX];
	vsrv_entry_t ents[SIM_DHT_COPIES][SIM_FETCH_MAX];
	vsrv_copy_t copies[SIM_DHT_COPIES];
	vsrv_vote_t vote;
	size_t n = 0;
	int rc;
	for (int c = 0; c < SIM_DHT_COPIES; c++) {
		copies[c] = (vsrv_copy_t){ .answered = r->copy_ok[c] != 0, .entries = ents[c], .n = r->copy_n[c] };
		for (size_t i = 0; i < r->copy_n[c]; i++) {
			const sim_entry_t *e = &r->copies[c][i];
			ents[c][i] = (vsrv_entry_t){ .key = e->key, .key_len = SIM_KEY_LEN, .value = e->value,
			                             .value_len = e->value_len, .exists = e->exists };
		}
	}
	if ((rc = vsrv_lookup_vote(copies, regs, VSRV_REGS_MAX, &n, &vote))) {
		stat_add(d, &d->st.fetches_failed, 1);
		r->fdone(r->arg, rc, NULL, 0, NULL);
		return;
	}
	if (vote.incident[0]) {
		stat_add(d, &d->st.incidents, 1);
		vp_log_warn(LOGMOD, "incident", "number=%s text=\"%s\"", r->number, vote.incident);
	}
	vp_log_debug(LOGMOD, "fetched", "number=%s claimants=%zu copies=%u nodes=%u,%u,%u", r->number, n,
	             vote.answered, r->copy_node[0], r->copy_node[1], r->copy_node[2]);
	r->fdone(r->arg, 0, regs, n, vote.incident[0] ? vote.incident : NULL);
}

/* Advance a request whose simulator operation finished; true when it is complete. */
static bool progress(sim_dht_t *d, sim_t *s, req_t *r)
{
	if (r->kind == REQ_FORGET) {
		r->done(r->arg, r->forget_rc);
		return true;
	}
	if (r->kind == REQ_STORE) {
		stat_add(d, r->ok ? &d->st.stores : &d->st.stores_failed, 1);
		r->done(r->arg, r->ok ? 0 : VP_ETIMEOUT);
		return true;
	}
	r->copy_ok[r->stage] = r->ok;
	r->copy_node[r->stage] = r->responder;
	r->copy_n[r->stage] = r->cur_n;
	memcpy(r->copies[r->stage], r->cur, r->cur_n * sizeof(r->cur[0]));
	/* A replica is found from the previous answerer; without one, stop there. */
	if (r->ok && r->responder != UINT32_MAX && r->stage + 1 < SIM_DHT_COPIES) {
		r->stage++;
		start_fetch_stage(d, s, r);
		return false;
	}
	stat_add(d, &d->st.fetches, 1);
	finish_fetch(d, r);
	return true;
}

static void start(sim_dht_t *d, sim_t *s, req_t *r)
{
	if (r->kind == REQ_FORGET) {
		r->forget_rc = sim_forget_resource(s, &r->res);
		r->in_flight = false;
		r->finished = true;
	} else if (r->kind == REQ_STORE) {
		r->entry.storage_time = next_storage_time(d);
		r->in_flight = true;
		r->finished = false;
		if (sim_store_entry(s, d->carrier_idx[r->carrier], &r->res, &r->entry, on_store, r))
			on_store(r, false);
	} else {
		r->stage = 0;
		start_fetch_stage(d, s, r);
	}
}

static void *overlay_thread(void *arg)
{
	sim_dht_t *d = arg;
	sim_cfg_t cfg = sim_cfg_default();
	sim_t *s;
	req_t *active = NULL;
	uint64_t last_wall;
	int rc;

	rcu_register_thread();
	cfg.seed = d->conf.seed ? d->conf.seed : 1;
	cfg.max_nodes = d->conf.plain_nodes + d->conf.carriers;
	if (d->conf.lat_min_ms > 0)
		cfg.lat_min_ms = d->conf.lat_min_ms;
	if (d->conf.lat_median_ms > 0)
		cfg.lat_median_ms = d->conf.lat_median_ms;
	if (!(rc = sim_new(&cfg, &s)))
		rc = form(d, s);
	pthread_mutex_lock(&d->mu);
	d->formed_rc = rc;
	d->formed_done = true;
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mu);
	last_wall = vp_time_mono_ns();

	while (!rc && !stopping(d)) {
		req_t *incoming, **pp;
		uint64_t now_wall;
		pthread_mutex_lock(&d->mu);
		incoming = d->queue;
		d->queue = d->queue_tail = NULL;
		if (!incoming && (!active || d->conf.pace == SIM_DHT_PACE_REAL) && !stopping(d)) {
			vp_deadline_t wake = vp_deadline_in_ms(active ? 2 : 10);
			struct timespec dl = vp_deadline_abstime(&wake, 0);
			pthread_cond_timedwait(&d->cv, &d->mu, &dl);
			incoming = d->queue;
			d->queue = d->queue_tail = NULL;
		}
		pthread_mutex_unlock(&d->mu);
		while (incoming) {
			req_t *r = incoming;
			incoming = r->next;
			r->next = active;
			active = r;
			start(d, s, r);
		}
		/* Follow the wall clock; in the fast pace, run ahead while operations are in flight. */
		now_wall = vp_time_mono_ns();
		if (active && d->conf.pace == SIM_DHT_PACE_FAST) {
			sim_run_until(s, sim_now(s) + BUSY_STEP_MS);
			last_wall = now_wall;
		} else if (now_wall - last_wall >= 1000000) {
			uint64_t ms = (now_wall - last_wall) / 1000000;
			sim_run_until(s, sim_now(s) + ms);
			last_wall += ms * 1000000;
		}
		for (pp = &active; *pp;) {
			req_t *r = *pp;
			if (r->finished && !r->in_flight && progress(d, s, r)) {
				*pp = r->next;
				free(r);
			} else {
				pp = &r->next;
			}
		}
		{
			const sim_counters_t *c = sim_counters(s);
			pthread_mutex_lock(&d->mu);
			d->st.messages = sim_msgs_total(s);
			d->st.hops_sum = c->hops_sum;
			d->st.hops_n = c->hops_n;
			d->st.codec_errors = c->codec_errors;
			d->st.sim_ms = sim_now(s);
			pthread_mutex_unlock(&d->mu);
		}
	}
	/* Abandoned requests complete with an error, so no server waits forever. */
	while (active) {
		req_t *r = active;
		active = r->next;
		if (r->kind == REQ_FETCH)
			r->fdone(r->arg, VP_ECLOSED, NULL, 0, NULL);
		else
			r->done(r->arg, VP_ECLOSED);
		free(r);
	}
	sim_free(s);
	rcu_thread_offline();
	rcu_barrier();
	rcu_thread_online();
	rcu_unregister_thread();
	return NULL;
}

/* ---- vsrv_dht_t (server threads) ------------------------------------------------- */

static int enqueue(sim_dht_t *d, req_t *r)
{
	pthread_mutex_lock(&d->mu);
	if (stopping(d)) {
		pthread_mutex_unlock(&d->mu);
		free(r);
		return VP_ECLOSED;
	}
	if (d->queue_tail)
		d->queue_tail->next = r;
	else
		d->queue = r;
	d->queue_tail = r;
	pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
	return 0;
}

static int h_store(void *ctx, const char *number, uint8_t op, const vsrv_reg_t *reg, vsrv_done_fn done, void *arg)
{
	handle_t *h = ctx;
	req_t *r;
	int rc;
	if (!number || !reg || (op != VAP_OP_ADD && op != VAP_OP_WITHDRAW) || strlen(number) >= VP_E164_BUFLEN)
		return VP_EINVAL;
	/* What the storing peer's access control allows (docs/protocol.md §2.4): only our own vnode's claims. */
	if (!vp_id_eq(&reg->node, &h->d->carrier_id[h->k]) || !vp_id_eq(&reg->contact, &reg->node))
		return VP_EFORBIDDEN;
	if (!(r = calloc(1, sizeof(*r))))
		return VP_ENOMEM;
	r->kind = REQ_STORE;
	r->carrier = h->k;
	snprintf(r->number, sizeof(r->number), "%s", number);
	r->res = vp_id_from_name(number, strlen(number));
	if ((rc = sim_dht_entry_encode(reg, op == VAP_OP_WITHDRAW, &r->entry))) {
		free(r);
		return rc;
	}
	r->done = done;
	r->arg = arg;
	return enqueue(h->d, r);
}

static int h_fetch(void *ctx, const char *number, vsrv_fetch_fn done, void *arg)
{
	handle_t *h = ctx;
	req_t *r;
	if (!number || strlen(number) >= VP_E164_BUFLEN)
		return VP_EINVAL;
	if (!(r = calloc(1, sizeof(*r))))
		return VP_ENOMEM;
	r->kind = REQ_FETCH;
	r->carrier = h->k;
	snprintf(r->number, sizeof(r->number), "%s", number);
	r->res = vp_id_from_name(number, strlen(number));
	r->fdone = done;
	r->arg = arg;
	return enqueue(h->d, r);
}

static int h_attach(void *ctx, const vp_id_t *contact, unsigned timeout_ms, int *fd)
{
	handle_t *h = ctx;
	sim_dht_t *d = h->d;
	char host[64] = "";
	uint16_t port = 0;
	pthread_mutex_lock(&d->mu);
	for (unsigned k = 0; k < d->conf.carriers; k++) {
		if (vp_id_eq(&d->carrier_id[k], contact) && d->port[k]) {
			memcpy(host, d->host[k], sizeof(host));
			port = d->port[k];
		}
	}
	pthread_mutex_unlock(&d->mu);
	if (!port)
		return VP_ENOROUTE;
	return vsrv_memdht_connect(host, port, timeout_ms, fd);
}

/* ---- public ------------------------------------------------------------------------ */

int sim_dht_start(const sim_dht_conf_t *conf, sim_dht_t **out, sim_dht_formed_t *formed)
{
	sim_dht_t *d;
	int rc;
	if (!conf || !out || conf->carriers < 1 || conf->carriers > SIM_DHT_MAX_CARRIERS ||
	    conf->plain_nodes > 100000)
		return VP_EINVAL;
	if (!(d = calloc(1, sizeof(*d))))
		return VP_ENOMEM;
	d->conf = *conf;
	pthread_mutex_init(&d->mu, NULL);
	pthread_cond_init(&d->cv, NULL);
	for (unsigned k = 0; k < SIM_DHT_MAX_CARRIERS; k++) {
		d->handles[k].d = d;
		d->handles[k].k = k;
	}
	if (pthread_create(&d->th, NULL, overlay_thread, d)) {
		sim_dht_free(d);
		return VP_ENOMEM;
	}
	d->th_started = true;
	pthread_mutex_lock(&d->mu);
	while (!d->formed_done)
		pthread_cond_wait(&d->cv, &d->mu);
	rc = d->formed_rc;
	if (formed)
		*formed = d->formed;
	pthread_mutex_unlock(&d->mu);
	if (rc) {
		sim_dht_free(d);
		return rc;
	}
	*out = d;
	return 0;
}

void sim_dht_free(sim_dht_t *d)
{
	if (!d)
		return;
	pthread_mutex_lock(&d->mu);
	__atomic_store_n(&d->stop, 1, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mu);
	if (d->th_started)
		pthread_join(d->th, NULL);
	while (d->queue) {
		req_t *r = d->queue;
		d->queue = r->next;
		if (r->kind == REQ_FETCH)
			r->fdone(r->arg, VP_ECLOSED, NULL, 0, NULL);
		else
			r->done(r->arg, VP_ECLOSED);
		free(r);
	}
	pthread_cond_destroy(&d->cv);
	pthread_mutex_destroy(&d->mu);
	free(d);
}

const vp_id_t *sim_dht_carrier_id(const sim_dht_t *d, unsigned k)
{
	return k < d->conf.carriers ? &d->carrier_id[k] : NULL;
}

void sim_dht_iface(sim_dht_t *d, unsigned k, vsrv_dht_t *out)
{
	out->ctx = &d->handles[k < SIM_DHT_MAX_CARRIERS ? k : 0];
	out->store = h_store;
	out->fetch = h_fetch;
	out->app_attach = h_attach;
}

int sim_dht_set_endpoint(sim_dht_t *d, unsigned k, const char *host, uint16_t port)
{
	if (k >= d->conf.carriers || !host || strlen(host) >= sizeof(d->host[0]) || !port)
		return VP_EINVAL;
	pthread_mutex_lock(&d->mu);
	snprintf(d->host[k], sizeof(d->host[k]), "%s", host);
	d->port[k] = port;
	pthread_mutex_unlock(&d->mu);
	return 0;
}

void sim_dht_get_stats(sim_dht_t *d, sim_dht_stats_t *out)
{
	pthread_mutex_lock(&d->mu);
	*out = d->st;
	pthread_mutex_unlock(&d->mu);
}

typedef struct forget_wait {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	int rc;
} forget_wait_t;

static void forget_done(void *arg, int status)
{
	forget_wait_t *w = arg;
	pthread_mutex_lock(&w->mu);
	w->rc = status;
	w->done = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

int sim_dht_forget(sim_dht_t *d, const char *number)
{
	forget_wait_t w = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };
	req_t *r;
	int rc;
	if (!number || strlen(number) >= VP_E164_BUFLEN)
		return VP_EINVAL;
	if (!(r = calloc(1, sizeof(*r))))
		return VP_ENOMEM;
	r->kind = REQ_FORGET;
	snprintf(r->number, sizeof(r->number), "%s", number);
	r->res = vp_id_from_name(number, strlen(number));
	r->done = forget_done;
	r->arg = &w;
	if ((rc = enqueue(d, r)))
		return rc;
	/* The overlay thread always completes a queued request (VP_ECLOSED when stopping). */
	pthread_mutex_lock(&w.mu);
	while (!w.done)
		pthread_cond_wait(&w.cv, &w.mu);
	pthread_mutex_unlock(&w.mu);
	return w.rc;
}
