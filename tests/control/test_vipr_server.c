/*
 * vipr_server wiring on loopback with the in-process DHT: configuration,
 * Publish reaching the DHT, VService URIs, UploadVCR -> scheduler -> PVP
 * validation -> Notify to a subscribed agent, the thief failing, tickets
 * verifying under the owner's keys.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/clock.h"
#include "common/errcode.h"
#include "common/log.h"
#include "control/vap/vap_client.h"
#include "control/server/vipr_server.h"
#include "control/server/vsrv_memdht.h"

typedef struct carrier {
	char dir[64];
	vsrv_t *srv;
} carrier_t;

/* Events seen, for assertions (written on server threads). */
typedef struct seen {
	pthread_mutex_t mu;
	int validations_ok, validations_auth_failed, routes_from_thief, routes_from_owner;
	char owner_hex[VP_ID_HEX_LEN + 1], thief_hex[VP_ID_HEX_LEN + 1];
} seen_t;

static void on_event(void *arg, const char *server, const vsrv_event_t *ev)
{
	seen_t *s = arg;
	(void)server;
	pthread_mutex_lock(&s->mu);
	if (ev->kind == VSRV_EV_VALIDATION) {
		if (ev->status == 0)
			s->validations_ok++;
		else if (ev->status == VP_EAUTH)
			s->validations_auth_failed++;
	} else if (ev->kind == VSRV_EV_ROUTE) {
		if (!strcmp(ev->claimant, s->thief_hex))
			s->routes_from_thief++;
		else if (!strcmp(ev->claimant, s->owner_hex))
			s->routes_from_owner++;
	}
	pthread_mutex_unlock(&s->mu);
}

static void carrier_up(carrier_t *c, vsrv_memdht_t *dht, const char *name, const char *domain, const char *agents,
                       seen_t *seen)
{
	vsrv_conf_t conf;
	vsrv_dht_t iface;
	char text[512];
	vp_conf_err_t e;
	snprintf(c->dir, sizeof(c->dir), "/tmp/test-vsrv-XXXXXX");
	assert_non_null(mkdtemp(c->dir));
	vsrv_conf_default(&conf);
	snprintf(text, sizeof(text),
	         "[server]\nname = %s\ndomain = %s\n[vap]\nport = 0\nagents = %s\n"
	         "[pvp]\nvcr_dir = %s\nmin_entropy_cbits = 100\nworkers = 2\n"
	         "[scheduler]\ndelay_min = 0\ndelay_max = 1\nfetch_timeout = 5s\nattach_timeout = 2s\n",
	         name, domain, agents, c->dir);
	assert_int_equal(vsrv_conf_parse(&conf, text, strlen(text), &e), 0);
	vsrv_memdht_iface(dht, &iface);
	assert_int_equal(vsrv_new(&conf, &iface, NULL, on_event, seen, &c->srv), 0);
	assert_int_equal(vsrv_memdht_add_node(dht, vsrv_node_id(c->srv), "127.0.0.1", vsrv_pvp_port(c->srv)), 0);
	assert_int_equal(vsrv_start(c->srv), 0);
}

static void carrier_down(carrier_t *c)
{
	char cmd[128];
	vsrv_free(c->srv);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", c->dir);
	assert_int_equal(system(cmd), 0);
}

static vap_client_t *agent(carrier_t *c, const char *user, const char *pw)
{
	vap_client_conf_t cc = { .host = "127.0.0.1", .port = vsrv_vap_port(c->srv), .username = user,
		                 .password = pw, .timeout_ms = 10000 };
	vap_client_t *cl = NULL;
	assert_int_equal(vap_client_connect(&cc, &cl), 0);
	return cl;
}

/* ---- configuration ------------------------------------------------------------- */

static void test_conf_defaults_and_errors(void **state)
{
	vsrv_conf_t c;
	vp_conf_err_t e;
	vp_id_t want;
	const char bad[] = "[pvp]\nvcr_retension = 48h\n";
	const char order[] = "[scheduler]\ndelay_min = 10m\ndelay_max = 5m\n";
	const char ok[] = "[server]\ndomain = Carrier-A.Example\n[pvp]\nlist_mode = white\nworkers = 3\n";
	(void)state;
	vsrv_conf_default(&c);
	assert_string_equal(c.domain, "carrier.example");
	assert_int_equal(c.vap_port, 5349);
	assert_int_equal(c.pvp_workers, 2);
	assert_int_equal(c.delay_min_s, 300);
	assert_int_equal(c.delay_max_s, 7200);
	assert_int_equal(c.ticket_lifetime_s, 30 * 86400);
	want = vp_id_from_name("carrier.example", strlen("carrier.example"));
	assert_true(vp_id_eq(&c.node_id, &want));
	assert_int_equal(vsrv_conf_parse(&c, bad, strlen(bad), &e), VP_ECONFIG);
	assert_non_null(strstr(e.msg, "vcr_retension"));
	assert_int_equal(vsrv_conf_parse(&c, order, strlen(order), &e), VP_ECONFIG);
	vsrv_conf_default(&c);
	assert_int_equal(vsrv_conf_parse(&c, ok, strlen(ok), &e), 0);
	assert_string_equal(c.domain, "carrier-a.example");
	want = vp_id_from_name("carrier-a.example", strlen("carrier-a.example"));
	assert_true(vp_id_eq(&c.node_id, &want));
	assert_true(c.whitelist_mode);
	assert_int_equal(c.pvp_workers, 3);
}

static void test_bad_agents_list_refused(void **state)
{
	vsrv_memdht_t *dht = vsrv_memdht_new();
	vsrv_conf_t conf;
	vsrv_dht_t iface;
	vsrv_t *srv = NULL;
	char dir[64] = "/tmp/test-vsrv-XXXXXX", cmd[128];
	(void)state;
	assert_non_null(mkdtemp(dir));
	vsrv_conf_default(&conf);
	conf.vap_port = 0;
	snprintf(conf.vcr_dir, sizeof(conf.vcr_dir), "%s", dir);
	snprintf(conf.agents, sizeof(conf.agents), "alice-without-password");
	vsrv_memdht_iface(dht, &iface);
	assert_int_equal(vsrv_new(&conf, &iface, NULL, NULL, NULL, &srv), VP_ECONFIG);
	assert_null(srv);
	vsrv_memdht_free(dht);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

/* ---- publish reaches the DHT ---------------------------------------------------- */

static void test_publish_reaches_dht(void **state)
{
	vsrv_memdht_t *dht = vsrv_memdht_new();
	seen_t seen = { .mu = PTHREAD_MUTEX_INITIALIZER };
	carrier_t a;
	vap_client_t *cl;
	vap_range_t r = { .prefix = "+1408555", .first = 100, .last = 149, .width = 4 };
	const char *one[] = { "+14085559999" };
	uint64_t stored = 0;
	vsrv_stats_t st;
	(void)state;
	carrier_up(&a, dht, "A", "carrier-a.example", "agent-a:secret-a", &seen);
	cl = agent(&a, "agent-a", "secret-a");
	assert_int_equal(vap_client_publish(cl, 7, VAP_OP_ADD, one, 1, &r, 1, &stored), 0);
	assert_int_equal(stored, 51);
	assert_int_equal(vsrv_memdht_numbers(dht), 51);
	assert_int_equal(vsrv_memdht_count(dht, "+14085550100"), 1);
	assert_int_equal(vsrv_memdht_count(dht, "+14085550149"), 1);
	assert_int_equal(vsrv_memdht_count(dht, "+14085550150"), 0);
	vsrv_get_stats(a.srv, &st);
	assert_int_equal(st.stores_ok, 51);
	/* Withdrawal removes the registration. */
	assert_int_equal(vap_client_publish(cl, 7, VAP_OP_WITHDRAW, one, 1, NULL, 0, &stored), 0);
	assert_int_equal(vsrv_memdht_count(dht, "+14085559999"), 0);
	assert_int_equal(vsrv_memdht_numbers(dht), 50);
	assert_int_equal(vap_client_unregister(cl), 0);
	vap_client_close(cl);
	carrier_down(&a);
	vsrv_memdht_free(dht);
}

/*
 * Start (UTC ms) of a test call that ended 10 s before \p now and lasted
 * 183 s, moved off the top and half of the hour: the validator accepts
 * routes only above its own 16-bit threshold on its own record (§5.9), which
 * a call of a minute or one at :00 does not reach (method "a", 183 s, not at
 * :00/:30: 16.8 bits).
 */
static uint64_t routable_call_start(uint64_t now)
{
	uint64_t start = now - 193000;
	uint64_t off = start / 1000 % 1800;
	if (off < 90 || off > 1800 - 90)
		start -= 240000;
	return start;
}

/* ---- the whole flow: owner validated, thief refused, Notify, ticket verified ------- */

static void test_upload_validate_notify(void **state)
{
	vsrv_memdht_t *dht = vsrv_memdht_new();
	seen_t seen = { .mu = PTHREAD_MUTEX_INITIALIZER };
	carrier_t a, b, t;
	vap_client_t *ca, *cb, *ct, *sub;
	vap_range_t range = { .prefix = "+1408555", .first = 100, .last = 103, .width = 4 };
	vap_vservice_t vs = { .id = 1, .op = VAP_OP_ADD, .n_uris = 1, .uris = { "sips:pbx@carrier-a.example" } };
	vap_vservice_t vsb = { .id = 5, .op = VAP_OP_ADD, .n_uris = 1, .uris = { "sip:sbc@carrier-b.example" } };
	uint64_t now = vp_time_wall_ms(), stored = 0;
	vap_vcr_t orig[2], term[2];
	vap_route_t route;
	pvp_ticket_expect_t ex = { .number = "+14085550101", .domain = "carrier-b.example", .need_routes = true };
	pvp_ticket_t tk;
	vsrv_stats_t sa, sb, stt;
	(void)state;

	carrier_up(&a, dht, "A", "carrier-a.example", "agent-a:pa", &seen);
	carrier_up(&b, dht, "B", "carrier-b.example", "agent-b:pb, watcher-b:pw", &seen);
	carrier_up(&t, dht, "T", "thief.example", "agent-t:pt", &seen);
	vp_id_to_hex(vsrv_node_id(a.srv), seen.owner_hex);
	vp_id_to_hex(vsrv_node_id(t.srv), seen.thief_hex);

	ca = agent(&a, "agent-a", "pa");
	ct = agent(&t, "agent-t", "pt");
	cb = agent(&b, "agent-b", "pb");
	sub = agent(&b, "watcher-b", "pw");
	assert_int_equal(vap_client_publish_vservice(ca, &vs), 0);
	assert_int_equal(vap_client_publish(ca, 1, VAP_OP_ADD, NULL, 0, &range, 1, &stored), 0);
	assert_int_equal(vap_client_publish(ct, 1, VAP_OP_ADD, NULL, 0, &range, 1, &stored), 0);
	assert_int_equal(vsrv_memdht_count(dht, "+14085550101"), 2);
	/* B's uploading agent works under VService 5; the watcher subscribes to it. */
	assert_int_equal(vap_client_publish_vservice(cb, &vsb), 0);
	assert_int_equal(vap_client_subscribe(sub, 5, 600), 0);

	/* One call B -> A ten seconds ago; A's clock is 7 s ahead. */
	memset(orig, 0, sizeof(orig));
	memset(term, 0, sizeof(term));
	snprintf(orig[0].called, sizeof(orig[0].called), "+14085550101");
	snprintf(orig[0].caller, sizeof(orig[0].caller), "+33123450007");
	orig[0].start_ms = routable_call_start(now);
	orig[0].stop_ms = orig[0].start_ms + 183000;
	orig[0].direction = VAP_DIR_ORIGINATING;
	term[0] = orig[0];
	term[0].start_ms += 7000;
	term[0].stop_ms += 7300;
	term[0].direction = VAP_DIR_TERMINATING;
	assert_int_equal(vap_client_upload(ca, term, 1), 0);
	assert_int_equal(vap_client_upload(cb, orig, 1), 0);

	assert_int_equal(vap_client_wait_notify(sub, &route, 20000), 0);
	assert_string_equal(route.number, "+14085550101");
	assert_int_equal(route.vservice_id, 5);
	assert_int_equal(route.n_uris, 1);
	assert_string_equal(route.uris[0], "sips:pbx@carrier-a.example");
	assert_true(route.expires > 86400);
	/* A's border element accepts the ticket for B, and only under A's keys. */
	assert_int_equal(pvp_ticket_verify(vsrv_ticket_keys(a.srv), route.ticket, route.ticket_len, now / 1000, &ex, &tk),
	                 PVP_TR_OK);
	assert_string_equal(tk.domain, "carrier-b.example");
	assert_int_equal(pvp_ticket_verify(vsrv_ticket_keys(t.srv), route.ticket, route.ticket_len, now / 1000, &ex, NULL),
	                 PVP_TR_BAD_MAC);

	/* Both claimants were tried (wait for the scheduler to finish the round). */
	for (int i = 0; i < 200; i++) {
		vsrv_get_stats(b.srv, &sb);
		if (sb.validations_ok + sb.validations_failed >= 2)
			break;
		usleep(20000);
	}
	vsrv_get_stats(a.srv, &sa);
	vsrv_get_stats(b.srv, &sb);
	vsrv_get_stats(t.srv, &stt);
	assert_int_equal(sb.vcr_orig, 1);
	assert_int_equal(sa.vcr_term, 1);
	assert_int_equal(sb.validations_ok, 1);
	assert_int_equal(sb.validations_failed, 1);
	assert_int_equal(sb.routes, 1);
	assert_int_equal(sb.notified, 1);
	assert_true(sa.pvp_authenticated >= 1);
	assert_int_equal(stt.pvp_authenticated, 0);
	assert_true(stt.pvp_handshake_failed >= 1);
	pthread_mutex_lock(&seen.mu);
	assert_int_equal(seen.routes_from_owner, 1);
	assert_int_equal(seen.routes_from_thief, 0);
	assert_int_equal(seen.validations_auth_failed, 1);
	pthread_mutex_unlock(&seen.mu);

	vap_client_close(ca);
	vap_client_close(cb);
	vap_client_close(ct);
	vap_client_close(sub);
	carrier_down(&a);
	carrier_down(&b);
	carrier_down(&t);
	vsrv_memdht_free(dht);
}

/* A number nobody claims: no validation, no route, nothing notified. */
static void test_unclaimed_number(void **state)
{
	vsrv_memdht_t *dht = vsrv_memdht_new();
	seen_t seen = { .mu = PTHREAD_MUTEX_INITIALIZER };
	carrier_t b;
	vap_client_t *cb;
	vap_vcr_t o;
	uint64_t now = vp_time_wall_ms();
	vsrv_stats_t st;
	(void)state;
	carrier_up(&b, dht, "B", "carrier-b.example", "agent-b:pb", &seen);
	cb = agent(&b, "agent-b", "pb");
	memset(&o, 0, sizeof(o));
	snprintf(o.called, sizeof(o.called), "+14155550000");
	o.start_ms = now - 60000;
	o.stop_ms = now - 5000;
	o.direction = VAP_DIR_ORIGINATING;
	assert_int_equal(vap_client_upload(cb, &o, 1), 0);
	for (int i = 0; i < 150; i++) {
		vsrv_get_stats(b.srv, &st);
		if (st.sched_no_claimant == 1 && st.sched_queued == 0)
			break;
		usleep(20000);
	}
	vsrv_get_stats(b.srv, &st);
	assert_int_equal(st.vcr_orig, 1);
	assert_int_equal(st.sched_scheduled, 1);
	assert_int_equal(st.sched_no_claimant, 1);
	assert_int_equal(st.sched_queued, 0);
	assert_int_equal(st.validations_ok + st.validations_failed + st.validations_unreachable, 0);
	assert_int_equal(st.routes, 0);
	vap_client_close(cb);
	carrier_down(&b);
	vsrv_memdht_free(dht);
}


/* ---- an asynchronous DHT: completions from another thread, with an incident -------- */

typedef struct slow_op {
	bool is_fetch;
	char number[VP_E164_BUFLEN];
	uint8_t op;
	vsrv_reg_t reg;
	vsrv_done_fn done;
	vsrv_fetch_fn fdone;
	void *arg;
} slow_op_t;

typedef struct slow_dht {
	vsrv_dht_t inner;           /* the memdht doing the work */
	pthread_mutex_t mu;
	slow_op_t ops[256];
	size_t n;
	int stop;
	pthread_t th;
	unsigned stores_from_thread, fetches_from_thread;
	bool answer_fetch;          /* false: never answer fetches (timeouts) */
} slow_dht_t;

static void inner_store_done(void *arg, int status)
{
	*(int *)arg = status;
}

typedef struct inner_fetch {
	int status;
	size_t n;
	vsrv_reg_t regs[VSRV_REGS_MAX];
} inner_fetch_t;

static void inner_fetch_done(void *arg, int status, const vsrv_reg_t *regs, size_t n, const char *incident)
{
	inner_fetch_t *f = arg;
	(void)incident;
	f->status = status;
	f->n = n;
	memcpy(f->regs, regs, n * sizeof(*regs));
}

static void *slow_thread(void *arg)
{
	slow_dht_t *d = arg;
	while (!__atomic_load_n(&d->stop, __ATOMIC_ACQUIRE)) {
		slow_op_t batch[256];
		size_t n;
		usleep(30000); /* every completion comes 0..30 ms later, on this thread */
		pthread_mutex_lock(&d->mu);
		n = d->n;
		memcpy(batch, d->ops, n * sizeof(*batch));
		d->n = 0;
		pthread_mutex_unlock(&d->mu);
		for (size_t i = 0; i < n; i++) {
			slow_op_t *o = &batch[i];
			if (!o->is_fetch) {
				int st = -1;
				assert_int_equal(d->inner.store(d->inner.ctx, o->number, o->op, &o->reg, inner_store_done, &st), 0);
				__atomic_add_fetch(&d->stores_from_thread, 1, __ATOMIC_SEQ_CST);
				o->done(o->arg, st);
			} else if (d->answer_fetch) {
				inner_fetch_t f;
				assert_int_equal(d->inner.fetch(d->inner.ctx, o->number, inner_fetch_done, &f), 0);
				__atomic_add_fetch(&d->fetches_from_thread, 1, __ATOMIC_SEQ_CST);
				o->fdone(o->arg, f.status, f.regs, f.n, "replica 2 disagreed with 2 other copies (outvoted)");
			} else {
				/* Never answered: the requester times out; drop our reference now. */
				o->fdone(o->arg, VP_ETIMEOUT, NULL, 0, NULL);
			}
		}
	}
	return NULL;
}

static int slow_store(void *ctx, const char *number, uint8_t op, const vsrv_reg_t *reg, vsrv_done_fn done, void *arg)
{
	slow_dht_t *d = ctx;
	int rc = 0;
	pthread_mutex_lock(&d->mu);
	if (d->n == 256) {
		rc = VP_EBUSY;
	} else {
		slow_op_t *o = &d->ops[d->n++];
		memset(o, 0, sizeof(*o));
		snprintf(o->number, sizeof(o->number), "%s", number);
		o->op = op;
		o->reg = *reg;
		o->done = done;
		o->arg = arg;
	}
	pthread_mutex_unlock(&d->mu);
	return rc;
}

static int slow_fetch(void *ctx, const char *number, vsrv_fetch_fn done, void *arg)
{
	slow_dht_t *d = ctx;
	int rc = 0;
	pthread_mutex_lock(&d->mu);
	if (d->n == 256) {
		rc = VP_EBUSY;
	} else {
		slow_op_t *o = &d->ops[d->n++];
		memset(o, 0, sizeof(*o));
		o->is_fetch = true;
		snprintf(o->number, sizeof(o->number), "%s", number);
		o->fdone = done;
		o->arg = arg;
	}
	pthread_mutex_unlock(&d->mu);
	return rc;
}

static int slow_attach(void *ctx, const vp_id_t *contact, unsigned timeout_ms, int *fd)
{
	slow_dht_t *d = ctx;
	return d->inner.app_attach(d->inner.ctx, contact, timeout_ms, fd);
}

typedef struct incident_seen {
	pthread_mutex_t mu;
	int incidents;
	char text[256];
} incident_seen_t;

static void on_incident(void *arg, const char *server, const vsrv_event_t *ev)
{
	incident_seen_t *is = arg;
	(void)server;
	if (ev->kind != VSRV_EV_INCIDENT)
		return;
	pthread_mutex_lock(&is->mu);
	is->incidents++;
	snprintf(is->text, sizeof(is->text), "%s", ev->text);
	pthread_mutex_unlock(&is->mu);
}

static void slow_carrier(carrier_t *c, slow_dht_t *sd, vsrv_memdht_t *mem, const char *name, const char *domain,
                         const char *agents, unsigned fetch_timeout_ms, incident_seen_t *is)
{
	vsrv_conf_t conf;
	vsrv_dht_t iface = { .ctx = sd, .store = slow_store, .fetch = slow_fetch, .app_attach = slow_attach };
	snprintf(c->dir, sizeof(c->dir), "/tmp/test-vsrv-XXXXXX");
	assert_non_null(mkdtemp(c->dir));
	vsrv_conf_default(&conf);
	snprintf(conf.name, sizeof(conf.name), "%s", name);
	snprintf(conf.domain, sizeof(conf.domain), "%s", domain);
	conf.node_id = vp_id_from_name(domain, strlen(domain));
	conf.vap_port = 0;
	conf.min_entropy_cbits = 100;
	conf.delay_min_s = 0;
	conf.delay_max_s = 1;
	conf.backoff_s = 1;
	conf.max_attempts = 2;
	conf.fetch_timeout_ms = fetch_timeout_ms;
	snprintf(conf.vcr_dir, sizeof(conf.vcr_dir), "%s", c->dir);
	snprintf(conf.agents, sizeof(conf.agents), "%s", agents);
	assert_int_equal(vsrv_new(&conf, &iface, NULL, on_incident, is, &c->srv), 0);
	assert_int_equal(vsrv_memdht_add_node(mem, vsrv_node_id(c->srv), "127.0.0.1", vsrv_pvp_port(c->srv)), 0);
	assert_int_equal(vsrv_start(c->srv), 0);
}

static void upload_one_call(vap_client_t *owner, vap_client_t *caller, const char *called)
{
	uint64_t now = vp_time_wall_ms();
	vap_vcr_t o, t;
	memset(&o, 0, sizeof(o));
	snprintf(o.called, sizeof(o.called), "%s", called);
	snprintf(o.caller, sizeof(o.caller), "+33123450001");
	o.start_ms = routable_call_start(now);
	o.stop_ms = o.start_ms + 183000;
	o.direction = VAP_DIR_ORIGINATING;
	t = o;
	t.direction = VAP_DIR_TERMINATING;
	if (owner)
		assert_int_equal(vap_client_upload(owner, &t, 1), 0);
	assert_int_equal(vap_client_upload(caller, &o, 1), 0);
}

/* Stores and fetches complete on the DHT's own thread; an incident reaches the event hook and the counters. */
static void test_async_dht_and_incident(void **state)
{
	slow_dht_t sd = { .mu = PTHREAD_MUTEX_INITIALIZER, .answer_fetch = true };
	vsrv_memdht_t *mem = vsrv_memdht_new();
	incident_seen_t is = { .mu = PTHREAD_MUTEX_INITIALIZER };
	carrier_t a, b;
	vap_client_t *ca, *cb, *sub;
	vap_range_t range = { .prefix = "+1408555", .first = 0, .last = 9, .width = 2 };
	vap_route_t route;
	uint64_t stored = 0;
	vsrv_stats_t st;
	(void)state;
	vsrv_memdht_iface(mem, &sd.inner);
	assert_int_equal(pthread_create(&sd.th, NULL, slow_thread, &sd), 0);
	slow_carrier(&a, &sd, mem, "A", "carrier-a.example", "agent-a:pa", 5000, &is);
	slow_carrier(&b, &sd, mem, "B", "carrier-b.example", "agent-b:pb, watcher-b:pw", 5000, &is);
	ca = agent(&a, "agent-a", "pa");
	cb = agent(&b, "agent-b", "pb");
	sub = agent(&b, "watcher-b", "pw");
	assert_int_equal(vap_client_publish(ca, 1, VAP_OP_ADD, NULL, 0, &range, 1, &stored), 0);
	assert_int_equal(stored, 10);
	assert_int_equal(__atomic_load_n(&sd.stores_from_thread, __ATOMIC_SEQ_CST), 10);
	assert_int_equal(vsrv_memdht_count(mem, "+140855505"), 1);
	assert_int_equal(vap_client_subscribe(sub, 1, 600), 0);
	upload_one_call(ca, cb, "+140855505");
	assert_int_equal(vap_client_wait_notify(sub, &route, 20000), 0);
	assert_string_equal(route.number, "+140855505");
	assert_true(__atomic_load_n(&sd.fetches_from_thread, __ATOMIC_SEQ_CST) >= 1);
	vsrv_get_stats(b.srv, &st);
	assert_int_equal(st.incidents, 1);
	pthread_mutex_lock(&is.mu);
	assert_int_equal(is.incidents, 1);
	assert_non_null(strstr(is.text, "outvoted"));
	pthread_mutex_unlock(&is.mu);
	vap_client_close(ca);
	vap_client_close(cb);
	vap_client_close(sub);
	carrier_down(&a);
	carrier_down(&b);
	__atomic_store_n(&sd.stop, 1, __ATOMIC_RELEASE);
	pthread_join(sd.th, NULL);
	vsrv_memdht_free(mem);
}

/* A DHT that does not answer a fetch in time: the lookup fails, is retried, then dropped; no route. */
static void test_fetch_timeout_retried(void **state)
{
	slow_dht_t sd = { .mu = PTHREAD_MUTEX_INITIALIZER, .answer_fetch = false };
	vsrv_memdht_t *mem = vsrv_memdht_new();
	incident_seen_t is = { .mu = PTHREAD_MUTEX_INITIALIZER };
	carrier_t b;
	vap_client_t *cb;
	vsrv_stats_t st;
	(void)state;
	vsrv_memdht_iface(mem, &sd.inner);
	/* Fetches are answered (with a failure) after the 20 ms lookup deadline. */
	assert_int_equal(pthread_create(&sd.th, NULL, slow_thread, &sd), 0);
	slow_carrier(&b, &sd, mem, "B", "carrier-b.example", "agent-b:pb", 20, &is);
	cb = agent(&b, "agent-b", "pb");
	upload_one_call(NULL, cb, "+14085550001");
	for (int i = 0; i < 300; i++) {
		vsrv_get_stats(b.srv, &st);
		if (st.sched_dropped == 1)
			break;
		usleep(20000);
	}
	vsrv_get_stats(b.srv, &st);
	assert_int_equal(st.sched_scheduled, 1);
	assert_int_equal(st.sched_dropped, 1);
	assert_int_equal(st.routes, 0);
	assert_int_equal(st.sched_queued, 0);
	vap_client_close(cb);
	carrier_down(&b);
	__atomic_store_n(&sd.stop, 1, __ATOMIC_RELEASE);
	pthread_join(sd.th, NULL);
	vsrv_memdht_free(mem);
}

/* Housekeeping: records past retention are purged (injected clock 49 h later). */
static void test_maintenance_purges(void **state)
{
	vsrv_memdht_t *dht = vsrv_memdht_new();
	vsrv_conf_t conf;
	vsrv_dht_t iface;
	vsrv_t *srv = NULL;
	uint64_t now = vp_time_wall_ms();
	vp_clock_t clk = { .now_ms = vp_clock_manual_now, .ctx = &now };
	char dir[64] = "/tmp/test-vsrv-XXXXXX", cmd[128];
	vap_client_t *cl;
	vap_client_conf_t cc = { .host = "127.0.0.1", .username = "agent", .password = "pw", .timeout_ms = 10000 };
	vap_vcr_t t;
	vsrv_stats_t st;
	(void)state;
	assert_non_null(mkdtemp(dir));
	vsrv_conf_default(&conf);
	conf.vap_port = 0;
	snprintf(conf.vcr_dir, sizeof(conf.vcr_dir), "%s", dir);
	snprintf(conf.agents, sizeof(conf.agents), "agent:pw");
	vsrv_memdht_iface(dht, &iface);
	assert_int_equal(vsrv_new(&conf, &iface, &clk, NULL, NULL, &srv), 0);
	assert_int_equal(vsrv_start(srv), 0);
	cc.port = vsrv_vap_port(srv);
	assert_int_equal(vap_client_connect(&cc, &cl), 0);
	memset(&t, 0, sizeof(t));
	snprintf(t.called, sizeof(t.called), "+14085550100");
	t.start_ms = now - 60000;
	t.stop_ms = now - 1000;
	t.direction = VAP_DIR_TERMINATING;
	assert_int_equal(vap_client_upload(cl, &t, 1), 0);
	vsrv_maintenance(srv);
	vsrv_get_stats(srv, &st);
	assert_int_equal(st.vcr_term, 1);
	assert_int_equal(st.vcr_purged, 0);
	__atomic_store_n(&now, now + 49ull * 3600 * 1000, __ATOMIC_SEQ_CST);
	vsrv_maintenance(srv);
	vsrv_get_stats(srv, &st);
	assert_int_equal(st.vcr_purged, 1);
	vap_client_close(cl);
	vsrv_free(srv);
	vsrv_memdht_free(dht);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_conf_defaults_and_errors),
		cmocka_unit_test(test_bad_agents_list_refused),
		cmocka_unit_test(test_publish_reaches_dht),
		cmocka_unit_test(test_upload_validate_notify),
		cmocka_unit_test(test_unclaimed_number),
		cmocka_unit_test(test_async_dht_and_incident),
		cmocka_unit_test(test_fetch_timeout_retried),
		cmocka_unit_test(test_maintenance_purges),
	};
	vp_log_setup(VP_LOG_ERROR, stderr);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
