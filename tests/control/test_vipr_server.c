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
#include "control/vap_client.h"
#include "control/vipr_server.h"
#include "control/vsrv_memdht.h"

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
	orig[0].start_ms = now - 70000;
	orig[0].stop_ms = now - 10000;
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_conf_defaults_and_errors),
		cmocka_unit_test(test_bad_agents_list_refused),
		cmocka_unit_test(test_publish_reaches_dht),
		cmocka_unit_test(test_upload_validate_notify),
		cmocka_unit_test(test_unclaimed_number),
	};
	vp_log_setup(VP_LOG_ERROR, stderr);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
