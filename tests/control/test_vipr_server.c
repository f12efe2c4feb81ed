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
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/clock.h"
#include "common/errcode.h"
#include "common/log.h"
#include "control/vap/vap_client.h"
#include "control/server/vipr_server.h"
#include "pvp/ledger.h"
#include "pvp/method.h"
#include "pvp/vcr.h"
#include "bench/support/vsrv_memdht.h"

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

/* A fresh in-memory DHT stand-in (the test fails if it cannot be made). */
static vsrv_memdht_t *memdht(void)
{
	vsrv_memdht_t *m = NULL;
	assert_int_equal(vsrv_memdht_new(&m), 0);
	return m;
}

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

/* A carrier whose call records live in c->dir (made here unless c->dir is already set: a restart). */
static void carrier_up_t(carrier_t *c, vsrv_memdht_t *dht, const char *name, const char *domain, const char *agents,
                         const char *tenants, const char *delay_min, seen_t *seen)
{
	vsrv_conf_t conf;
	vsrv_dht_t iface;
	char text[768];
	vp_conf_err_t e;
	if (!c->dir[0]) {
		snprintf(c->dir, sizeof(c->dir), "/tmp/test-vsrv-XXXXXX");
		assert_non_null(mkdtemp(c->dir));
	}
	vsrv_conf_default(&conf);
	snprintf(text, sizeof(text),
	         "[server]\nname = %s\ndomain = %s\n[vap]\nport = 0\nagents = %s\ntenants = %s\n"
	         "[pvp]\nvcr_dir = %s\nmin_entropy_cbits = 100\nworkers = 2\n"
	         "[scheduler]\ndelay_min = %s\ndelay_max = %s\nfetch_timeout = 5s\nattach_timeout = 2s\n",
	         name, domain, agents, tenants, c->dir, delay_min, strcmp(delay_min, "0") ? delay_min : "1");
	assert_int_equal(vsrv_conf_parse(&conf, text, strlen(text), &e), 0);
	vsrv_memdht_iface(dht, &iface);
	assert_int_equal(vsrv_new(&conf, &iface, NULL, on_event, seen, &c->srv), 0);
	assert_int_equal(vsrv_memdht_add_node(dht, vsrv_node_id(c->srv), "127.0.0.1", vsrv_pvp_port(c->srv)), 0);
	assert_int_equal(vsrv_start(c->srv), 0);
}

static void carrier_up(carrier_t *c, vsrv_memdht_t *dht, const char *name, const char *domain, const char *agents,
                       seen_t *seen)
{
	c->dir[0] = '\0';
	carrier_up_t(c, dht, name, domain, agents, "", "0", seen);
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
	assert_int_equal(e.line, 2);
	{
		/* Every row of the schema is consistent (types, sizes, defaults in range), and a value out of
		 * range names its line. */
		const char range[] = "# comment\n[pvp]\nworkers = 2\ngroup_bits = 1024\n";
		size_t nopts;
		const vp_conf_opt_t *opts = vsrv_conf_schema(&nopts);
		vsrv_conf_t d;
		assert_true(nopts >= 25);
		assert_int_equal(vp_conf_schema_defaults(opts, nopts, &d, &e), 0);
		assert_int_equal(vsrv_conf_parse(&c, range, strlen(range), &e), VP_ECONFIG);
		assert_int_equal(e.line, 4);
		assert_non_null(strstr(e.msg, "group_bits"));
	}
	assert_int_equal(vsrv_conf_parse(&c, order, strlen(order), &e), VP_ECONFIG);
	vsrv_conf_default(&c);
	assert_int_equal(vsrv_conf_parse(&c, ok, strlen(ok), &e), 0);
	assert_string_equal(c.domain, "carrier-a.example");
	want = vp_id_from_name("carrier-a.example", strlen("carrier-a.example"));
	assert_true(vp_id_eq(&c.node_id, &want));
	assert_int_equal(c.list_mode, VSRV_LIST_WHITE);
	assert_int_equal(c.pvp_workers, 3);
}

static void test_bad_agents_list_refused(void **state)
{
	vsrv_memdht_t *dht = memdht();
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

/* [pvp] cert_issuer: loaded at start (protocol §6.1); without its key, or not a CA, the server refuses to start. */
static void test_cert_issuer_config(void **state)
{
	vsrv_memdht_t *dht = memdht();
	vsrv_conf_t conf;
	vsrv_dht_t iface;
	vsrv_t *srv = NULL;
	char dir[64] = "/tmp/test-vsrv-XXXXXX", cmd[512];
	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(cmd, sizeof(cmd),
	         "cd '%s' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem "
	         "-days 2 -subj /CN=issuer 2>/dev/null && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
	         "-nodes -keyout ee.key -out ee.pem -days 2 -subj /CN=ee -addext basicConstraints=critical,CA:FALSE 2>/dev/null",
	         dir);
	assert_int_equal(system(cmd), 0);
	vsrv_memdht_iface(dht, &iface);
	vsrv_conf_default(&conf);
	conf.vap_port = 0;
	assert_int_equal(conf.cert_lifetime_s, 86400);
	snprintf(conf.vcr_dir, sizeof(conf.vcr_dir), "%s/vcr", dir);
	snprintf(conf.cert_issuer, sizeof(conf.cert_issuer), "%s/ca.pem", dir);
	assert_int_equal(vsrv_new(&conf, &iface, NULL, NULL, NULL, &srv), VP_ECONFIG); /* no key */
	snprintf(conf.cert_issuer_key, sizeof(conf.cert_issuer_key), "%s/ee.key", dir);
	assert_int_equal(vsrv_new(&conf, &iface, NULL, NULL, NULL, &srv), VP_ECONFIG); /* another key */
	snprintf(conf.cert_issuer, sizeof(conf.cert_issuer), "%s/ee.pem", dir);
	assert_int_equal(vsrv_new(&conf, &iface, NULL, NULL, NULL, &srv), VP_ECONFIG); /* not a CA */
	snprintf(conf.cert_issuer, sizeof(conf.cert_issuer), "%s/ca.pem", dir);
	snprintf(conf.cert_issuer_key, sizeof(conf.cert_issuer_key), "%s/ca.key", dir);
	assert_int_equal(vsrv_new(&conf, &iface, NULL, NULL, NULL, &srv), 0);
	vsrv_free(srv);
	vsrv_memdht_free(dht);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

/* ---- publish reaches the DHT ---------------------------------------------------- */

static void test_publish_reaches_dht(void **state)
{
	vsrv_memdht_t *dht = memdht();
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
 * Start (UTC ms) of a test call ending at \p stop_ms: 183 s long, or 423 s
 * when that would start near the top or half of the hour.  The validator
 * accepts routes only above its own 16-bit threshold on its own record
 * (protocol §5.9), which a one-minute call or one at :00 does not reach
 * (method "a", 183 s, not at :00/:30: 16.8 bits).
 */
/* \p c's tenant takes VService \p id (an originating record needs a VService of its tenant). */
static void own_vservice(vap_client_t *c, uint32_t id)
{
	vap_vservice_t vs = { .id = id, .op = VAP_OP_ADD, .n_uris = 1, .uris = { "sip:sbc@carrier-b.example" } };
	assert_int_equal(vap_client_publish_vservice(c, &vs), 0);
}

static uint64_t routable_call_start(uint64_t stop_ms)
{
	uint64_t start = stop_ms - 183000;
	uint64_t off = start / 1000 % 1800;
	if (off < 90 || off > 1800 - 90)
		start -= 240000;
	return start;
}

/* ---- the whole flow: owner validated, thief refused, Notify, ticket verified ------- */

static void test_upload_validate_notify(void **state)
{
	vsrv_memdht_t *dht = memdht();
	seen_t seen = { .mu = PTHREAD_MUTEX_INITIALIZER };
	carrier_t a, b, t;
	vap_client_t *ca, *cb, *ct, *sub, *cm, *msub;
	vap_vservice_t vsm = { .id = 9, .op = VAP_OP_ADD, .n_uris = 1, .uris = { "sip:mallory@carrier-b.example" } };
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
	b.dir[0] = '\0';
	carrier_up_t(&b, dht, "B", "carrier-b.example", "agent-b:pb, watcher-b:pw, mallory:pm", "watcher-b:agent-b", "0",
	             &seen);
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
	/* Mallory, another tenant of B's server, has VService 9 and listens on it. */
	cm = agent(&b, "mallory", "pm");
	msub = agent(&b, "mallory", "pm");
	assert_int_equal(vap_client_publish_vservice(cm, &vsm), 0);
	assert_int_equal(vap_client_subscribe(msub, 9, 600), 0);

	/* One call B -> A ten seconds ago; A's clock is 7 s ahead. */
	memset(orig, 0, sizeof(orig));
	memset(term, 0, sizeof(term));
	snprintf(orig[0].called, sizeof(orig[0].called), "+14085550101");
	snprintf(orig[0].caller, sizeof(orig[0].caller), "+33123450007");
	/* The call ends 3 s from now, so its validation runs after Mallory's upload below. */
	orig[0].stop_ms = now + 3000;
	orig[0].start_ms = routable_call_start(orig[0].stop_ms);
	orig[0].direction = VAP_DIR_ORIGINATING;
	term[0] = orig[0];
	term[0].start_ms += 7000;
	term[0].stop_ms += 7300;
	term[0].direction = VAP_DIR_TERMINATING;
	assert_int_equal(vap_client_upload(ca, term, 1), 0);
	assert_int_equal(vap_client_upload(cb, orig, 1), 0);
	/* Mallory uploads a record of a call she never placed to the same number: her own
	 * validation fails, and the route B's real record yields is not hers. */
	orig[1] = orig[0];
	orig[1].start_ms = now - 3600000;
	orig[1].stop_ms = now - 3590000;
	assert_int_equal(vap_client_upload(cm, &orig[1], 1), 0);

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

	/* Both claimants were tried for both records (wait for the scheduler to finish). */
	for (int i = 0; i < 300; i++) {
		vsrv_get_stats(b.srv, &sb);
		if (sb.validations_ok + sb.validations_failed >= 4)
			break;
		usleep(20000);
	}
	assert_int_equal(vap_client_wait_notify(msub, &route, 200), VP_ETIMEOUT);
	vsrv_get_stats(a.srv, &sa);
	vsrv_get_stats(b.srv, &sb);
	vsrv_get_stats(t.srv, &stt);
	assert_int_equal(sb.vcr_orig, 2);
	assert_int_equal(sa.vcr_term, 1);
	assert_int_equal(sb.validations_ok, 1);
	assert_int_equal(sb.validations_failed, 3);
	assert_int_equal(sb.routes, 1);
	assert_int_equal(sb.notified, 1);
	assert_true(sa.pvp_authenticated >= 1);
	assert_int_equal(stt.pvp_authenticated, 0);
	assert_true(stt.pvp_handshake_failed >= 1);
	pthread_mutex_lock(&seen.mu);
	assert_int_equal(seen.routes_from_owner, 1);
	assert_int_equal(seen.routes_from_thief, 0);
	assert_int_equal(seen.validations_auth_failed, 3);
	pthread_mutex_unlock(&seen.mu);

	vap_client_close(cm);
	vap_client_close(msub);
	vap_client_close(ca);
	vap_client_close(cb);
	vap_client_close(ct);
	vap_client_close(sub);
	carrier_down(&a);
	carrier_down(&b);
	carrier_down(&t);
	vsrv_memdht_free(dht);
}

/* ---- client certificates: asked for, delivered, kept (protocol §6.1, §8.6) ---------------- */

/* A carrier with extra [pvp] settings \p pvp_extra (client certificates); its call records in c->dir. */
static void carrier_up_cc(carrier_t *c, vsrv_memdht_t *dht, const char *name, const char *domain, const char *agents,
                          const char *tenants, const char *pvp_extra)
{
	vsrv_conf_t conf;
	vsrv_dht_t iface;
	char text[1536];
	vp_conf_err_t e;
	if (!c->dir[0]) {
		snprintf(c->dir, sizeof(c->dir), "/tmp/test-vsrv-XXXXXX");
		assert_non_null(mkdtemp(c->dir));
	}
	vsrv_conf_default(&conf);
	snprintf(text, sizeof(text),
	         "[server]\nname = %s\ndomain = %s\n[vap]\nport = 0\nagents = %s\ntenants = %s\n"
	         "[pvp]\nvcr_dir = %s\nmin_entropy_cbits = 100\norig_min_entropy_cbits = 100\nworkers = 2\n%s"
	         "[scheduler]\ndelay_min = 0\ndelay_max = 1\nfetch_timeout = 5s\nattach_timeout = 2s\n",
	         name, domain, agents, tenants, c->dir, pvp_extra);
	assert_int_equal(vsrv_conf_parse(&conf, text, strlen(text), &e), 0);
	vsrv_memdht_iface(dht, &iface);
	assert_int_equal(vsrv_new(&conf, &iface, NULL, NULL, NULL, &c->srv), 0);
	assert_int_equal(vsrv_memdht_add_node(dht, vsrv_node_id(c->srv), "127.0.0.1", vsrv_pvp_port(c->srv)), 0);
	assert_int_equal(vsrv_start(c->srv), 0);
}

/* The certificate of \p r is for \p key's public key, issued by \p issuer for \p number and carrier-b.example. */
static void check_route_cert(const vap_route_t *r, EVP_PKEY *key, X509 *issuer, const char *number)
{
	const unsigned char *p = r->cert;
	X509 *x;
	pvp_cc_identity_t id;
	assert_true(r->cert_len > 0);
	x = d2i_X509(NULL, &p, (long)r->cert_len);
	assert_non_null(x);
	assert_int_equal(X509_check_private_key(x, key), 1);
	assert_int_equal(pvp_cc_identity(x, issuer, &id), 0);
	assert_string_equal(id.number, number);
	assert_string_equal(id.domain, "carrier-b.example");
	X509_free(x);
}

/*
 * B asks for client certificates ([pvp] client_cert_key), A issues them ([pvp] cert_issuer): after B validates
 * A's number, B's subscribed agent receives the certificate with the route (VAP CLIENT-CERT); B restarts and a
 * new subscriber gets the same certificate in the replay (kept in the learned record).  C asks for none: its
 * agent's route comes with a ticket only, so a certificate exists only where both sides are configured.
 */
static void test_client_cert_delivered_and_kept(void **state)
{
	vsrv_memdht_t *dht = memdht();
	carrier_t a = { .dir = "" }, b = { .dir = "" }, c = { .dir = "" };
	char dir[64] = "/tmp/test-vsrv-cc-XXXXXX", cmd[768], extra_a[320], extra_b[200], path[128];
	vap_client_t *ca, *cb, *sub, *cc, *csub;
	vap_range_t range = { .prefix = "+1408555", .first = 300, .last = 301, .width = 4 };
	vap_vservice_t vs = { .id = 1, .op = VAP_OP_ADD, .n_uris = 1, .uris = { "sip:pbx@carrier-a.example;transport=tls" } };
	uint64_t now = vp_time_wall_ms(), stored = 0;
	vap_vcr_t orig, term;
	vap_route_t route, again;
	EVP_PKEY *key;
	X509 *issuer;
	FILE *f;
	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(cmd, sizeof(cmd),
	         "cd '%s' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem "
	         "-days 2 -subj /CN=vipr-issuer 2>/dev/null && openssl genpkey -algorithm EC -pkeyopt "
	         "ec_paramgen_curve:P-256 -out client.key 2>/dev/null", dir);
	assert_int_equal(system(cmd), 0);
	snprintf(path, sizeof(path), "%s/client.key", dir);
	assert_non_null(f = fopen(path, "r"));
	assert_non_null(key = PEM_read_PrivateKey(f, NULL, NULL, NULL));
	fclose(f);
	snprintf(path, sizeof(path), "%s/ca.pem", dir);
	assert_non_null(f = fopen(path, "r"));
	assert_non_null(issuer = PEM_read_X509(f, NULL, NULL, NULL));
	fclose(f);
	snprintf(extra_a, sizeof(extra_a), "cert_issuer = %s/ca.pem\ncert_issuer_key = %s/ca.key\n", dir, dir);
	snprintf(extra_b, sizeof(extra_b), "client_cert_key = %s/client.key\n", dir);
	carrier_up_cc(&a, dht, "A", "carrier-a.example", "agent-a:pa", "", extra_a);
	carrier_up_cc(&b, dht, "B", "carrier-b.example", "agent-b:pb, watcher-b:pw", "watcher-b:agent-b", extra_b);
	carrier_up_cc(&c, dht, "C", "carrier-c.example", "agent-c:pc", "", "");

	ca = agent(&a, "agent-a", "pa");
	assert_int_equal(vap_client_publish_vservice(ca, &vs), 0);
	assert_int_equal(vap_client_publish(ca, 1, VAP_OP_ADD, NULL, 0, &range, 1, &stored), 0);
	cb = agent(&b, "agent-b", "pb");
	own_vservice(cb, 5);
	sub = agent(&b, "watcher-b", "pw");
	assert_int_equal(vap_client_subscribe(sub, 5, 600), 0);
	cc = agent(&c, "agent-c", "pc");
	own_vservice(cc, 6);
	csub = agent(&c, "agent-c", "pc");
	assert_int_equal(vap_client_subscribe(csub, 6, 600), 0);

	memset(&orig, 0, sizeof(orig));
	snprintf(orig.called, sizeof(orig.called), "+14085550300");
	snprintf(orig.caller, sizeof(orig.caller), "+33123450007");
	orig.stop_ms = now - 2000;
	orig.start_ms = routable_call_start(orig.stop_ms);
	orig.direction = VAP_DIR_ORIGINATING;
	term = orig;
	term.direction = VAP_DIR_TERMINATING;
	assert_int_equal(vap_client_upload(ca, &term, 1), 0);
	assert_int_equal(vap_client_upload(cb, &orig, 1), 0);
	/* C places a call to A's other number. */
	snprintf(orig.called, sizeof(orig.called), "+14085550301");
	term = orig;
	term.direction = VAP_DIR_TERMINATING;
	assert_int_equal(vap_client_upload(ca, &term, 1), 0);
	assert_int_equal(vap_client_upload(cc, &orig, 1), 0);

	assert_int_equal(vap_client_wait_notify(sub, &route, 20000), 0);
	assert_string_equal(route.number, "+14085550300");
	assert_true(route.ticket_len > 0); /* the ticket still comes: the fallback for old agents */
	check_route_cert(&route, key, issuer, "+14085550300");
	assert_int_equal(vap_client_wait_notify(csub, &again, 20000), 0);
	assert_string_equal(again.number, "+14085550301");
	assert_true(again.ticket_len > 0);
	assert_int_equal(again.cert_len, 0);

	/* Restart B: the replay to a new subscriber carries the same certificate. */
	vap_client_close(sub);
	vap_client_close(cb);
	vsrv_free(b.srv);
	carrier_up_cc(&b, dht, "B", "carrier-b.example", "agent-b:pb, watcher-b:pw", "watcher-b:agent-b", extra_b);
	sub = agent(&b, "watcher-b", "pw");
	assert_int_equal(vap_client_subscribe(sub, 5, 600), 0);
	assert_int_equal(vap_client_wait_notify(sub, &again, 5000), 0);
	assert_string_equal(again.number, "+14085550300");
	assert_int_equal(again.cert_len, route.cert_len);
	assert_memory_equal(again.cert, route.cert, route.cert_len);

	vap_client_close(sub);
	vap_client_close(ca);
	vap_client_close(cc);
	vap_client_close(csub);
	EVP_PKEY_free(key);
	X509_free(issuer);
	carrier_down(&a);
	carrier_down(&b);
	carrier_down(&c);
	vsrv_memdht_free(dht);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

/*
 * Tenants of one server: an agent acts only on the VServices its tenant owns
 * (the first to use one), so Mallory can neither rewrite A's URIs, withdraw
 * A's numbers, nor subscribe to A's VService; agents listed in [vap] tenants
 * share their tenant's VServices.  A terminating record that starts in the
 * future beyond the tolerance is refused.
 */
static void test_tenants_are_isolated(void **state)
{
	vsrv_memdht_t *dht = memdht();
	seen_t seen = { .mu = PTHREAD_MUTEX_INITIALIZER };
	carrier_t a = { .dir = "" };
	vap_client_t *ca, *cw, *cm;
	vap_vservice_t vs = { .id = 1, .op = VAP_OP_ADD, .n_uris = 1, .uris = { "sips:pbx@carrier-a.example" } };
	vap_vservice_t evil = { .id = 1, .op = VAP_OP_ADD, .n_uris = 1, .uris = { "sip:evil@mallory.example" } };
	vap_vservice_t own = { .id = 2, .op = VAP_OP_ADD, .n_uris = 1, .uris = { "sip:m@mallory.example" } };
	const char *num[] = { "+14085550200" };
	uint64_t stored = 0, now = vp_time_wall_ms();
	vap_vcr_t t;
	(void)state;
	carrier_up_t(&a, dht, "A", "carrier-a.example", "agent-a:pa, watcher-a:pw, mallory:pm", "watcher-a:agent-a", "0",
	             &seen);
	ca = agent(&a, "agent-a", "pa");
	cw = agent(&a, "watcher-a", "pw");
	cm = agent(&a, "mallory", "pm");
	assert_int_equal(vap_client_publish_vservice(ca, &vs), 0);
	assert_int_equal(vap_client_publish(ca, 1, VAP_OP_ADD, num, 1, NULL, 0, &stored), 0);
	/* Mallory: no overwrite, no withdrawal, no numbers under it, no subscription. */
	assert_int_not_equal(vap_client_publish_vservice(cm, &evil), 0);
	evil.op = VAP_OP_WITHDRAW;
	assert_int_not_equal(vap_client_publish_vservice(cm, &evil), 0);
	assert_int_not_equal(vap_client_publish(cm, 1, VAP_OP_WITHDRAW, num, 1, NULL, 0, &stored), 0);
	assert_int_equal(vsrv_memdht_count(dht, num[0]), 1);
	assert_int_not_equal(vap_client_subscribe(cm, 1, 600), 0);
	/* Her own VService is hers; A's watcher shares A's tenant. */
	assert_int_equal(vap_client_publish_vservice(cm, &own), 0);
	assert_int_not_equal(vap_client_subscribe(ca, 2, 600), 0);
	assert_int_equal(vap_client_subscribe(cw, 1, 600), 0);
	assert_int_equal(vap_client_publish_vservice(cw, &vs), 0);
	/* Terminating records: now is fine, an hour ahead is refused. */
	memset(&t, 0, sizeof(t));
	snprintf(t.called, sizeof(t.called), "+14085550200");
	t.direction = VAP_DIR_TERMINATING;
	t.start_ms = now - 60000;
	t.stop_ms = now - 1000;
	assert_int_equal(vap_client_upload(ca, &t, 1), 0);
	t.start_ms = now + 3600000;
	t.stop_ms = now + 3660000;
	assert_int_not_equal(vap_client_upload(ca, &t, 1), 0);
	vap_client_close(ca);
	vap_client_close(cw);
	vap_client_close(cm);
	carrier_down(&a);
	vsrv_memdht_free(dht);
}

/*
 * An acknowledged originating record survives a crash: B acknowledges the
 * record (its validation an hour away), dies, and the restarted B validates it
 * at once and hands the route to the VService the record was uploaded for.
 * Before, the record waited for validation in memory only and was lost.
 * Call-record ids go on increasing across the restart.
 */
typedef struct ids {
	pthread_mutex_t mu;
	uint64_t last;
	int n;
	bool out_of_order;  /* set on a server thread, asserted on the test's */
} ids_t;

static void on_vcr(void *arg, const char *server, const vsrv_event_t *ev)
{
	ids_t *x = arg;
	(void)server;
	if (ev->kind != VSRV_EV_VCR)
		return;
	pthread_mutex_lock(&x->mu);
	if (ev->vcr->id <= x->last)
		x->out_of_order = true;
	x->last = ev->vcr->id;
	x->n++;
	pthread_mutex_unlock(&x->mu);
}

static void test_restart_validates_acknowledged_records(void **state)
{
	vsrv_memdht_t *dht = memdht();
	seen_t seen = { .mu = PTHREAD_MUTEX_INITIALIZER };
	ids_t ids = { .mu = PTHREAD_MUTEX_INITIALIZER };
	carrier_t a = { .dir = "" }, b = { .dir = "" };
	vap_client_t *ca, *cb, *sub;
	vap_range_t range = { .prefix = "+1408555", .first = 300, .last = 300, .width = 4 };
	vap_vservice_t vsb = { .id = 5, .op = VAP_OP_ADD, .n_uris = 1, .uris = { "sip:sbc@carrier-b.example" } };
	vsrv_conf_t conf;
	vsrv_dht_t iface;
	vp_conf_err_t e;
	char text[768];
	uint64_t now = vp_time_wall_ms(), stored = 0;
	vap_vcr_t orig, term;
	vap_route_t route;
	vsrv_stats_t sb;
	(void)state;
	carrier_up_t(&a, dht, "A", "carrier-a.example", "agent-a:pa", "", "0", &seen);
	ca = agent(&a, "agent-a", "pa");
	assert_int_equal(vap_client_publish(ca, 1, VAP_OP_ADD, NULL, 0, &range, 1, &stored), 0);
	memset(&orig, 0, sizeof(orig));
	snprintf(orig.called, sizeof(orig.called), "+14085550300");
	orig.stop_ms = now - 5000;
	orig.start_ms = routable_call_start(orig.stop_ms); /* enough entropy for the validator's own rule */
	orig.direction = VAP_DIR_ORIGINATING;
	term = orig;
	term.direction = VAP_DIR_TERMINATING;
	assert_int_equal(vap_client_upload(ca, &term, 1), 0);

	/* B, with validations an hour after the call; max_jobs 1. */
	for (int round = 0; round < 2; round++) {
		if (!b.dir[0]) {
			snprintf(b.dir, sizeof(b.dir), "/tmp/test-vsrv-XXXXXX");
			assert_non_null(mkdtemp(b.dir));
		}
		vsrv_conf_default(&conf);
		snprintf(text, sizeof(text),
		         "[server]\nname = B\ndomain = carrier-b.example\n[vap]\nport = 0\nagents = agent-b:pb\n"
		         "[pvp]\nvcr_dir = %s\nmin_entropy_cbits = 100\norig_min_entropy_cbits = 100\n"
		         "[scheduler]\ndelay_min = %s\ndelay_max = %s\nmax_jobs = 1\nfetch_timeout = 5s\n", b.dir,
		         round ? "0" : "1h", round ? "1" : "2h");
		assert_int_equal(vsrv_conf_parse(&conf, text, strlen(text), &e), 0);
		vsrv_memdht_iface(dht, &iface);
		assert_int_equal(vsrv_new(&conf, &iface, NULL, on_vcr, &ids, &b.srv), 0);
		assert_int_equal(vsrv_start(b.srv), 0);
		cb = agent(&b, "agent-b", "pb");
		sub = agent(&b, "agent-b", "pb");
		assert_int_equal(vap_client_publish_vservice(cb, &vsb), 0);
		if (round == 0) {
			assert_int_equal(vap_client_upload(cb, &orig, 1), 0);
			/* The scheduler is full: the next record is refused, not acknowledged and lost. */
			orig.start_ms -= 1000;
			assert_int_not_equal(vap_client_upload(cb, &orig, 1), 0);
			orig.start_ms += 1000;
			vsrv_get_stats(b.srv, &sb);
			assert_int_equal(sb.vcr_orig, 1);
			assert_int_equal(sb.vcr_rejected, 1);
			/* Crash: the process state goes, the store stays. */
			vap_client_close(cb);
			vap_client_close(sub);
			vsrv_free(b.srv);
			continue;
		}
		assert_int_equal(vap_client_subscribe(sub, 5, 600), 0);
		assert_int_equal(vap_client_wait_notify(sub, &route, 20000), 0);
		assert_string_equal(route.number, "+14085550300");
		assert_int_equal(route.vservice_id, 5);
		/* A new record after the restart gets a new id (on_vcr checks the order). */
		orig.start_ms -= 2000;
		orig.stop_ms -= 2000;
		/* The job is done once the scheduler says so (max_jobs = 1 admits the next then). */
		for (int i = 0; i < 250; i++) {
			vsrv_get_stats(b.srv, &sb);
			if (sb.sched_queued == 0 && sb.sched_scheduled == 1)
				break;
			usleep(20000);
		}
		assert_int_equal(sb.sched_queued, 0);
		assert_int_equal(sb.routes, 1);
	}
	assert_int_equal(vap_client_upload(cb, &orig, 1), 0);
	pthread_mutex_lock(&ids.mu);
	assert_int_equal(ids.n, 2);
	assert_false(ids.out_of_order);
	pthread_mutex_unlock(&ids.mu);
	vap_client_close(cb);
	vap_client_close(sub);
	vap_client_close(ca);
	carrier_down(&b);
	carrier_down(&a);
	vsrv_memdht_free(dht);
}

/*
 * A claimant crowding a number's fetch: eight entries of one party (VServices
 * 1..8 under one Node-ID) come before the owner's.  The validator keeps one
 * slot per claimant and contact before truncating to the claimants it
 * validates, so the owner is still validated and the route learned.
 */
typedef struct crowd_dht {
	vsrv_dht_t inner;
	vp_id_t thief;
} crowd_dht_t;

typedef struct crowd_fetch {
	crowd_dht_t *c;
	vsrv_fetch_fn done;
	void *arg;
} crowd_fetch_t;

static void crowd_fetch_done(void *arg, int status, const vsrv_reg_t *regs, size_t n, const char *incident)
{
	crowd_fetch_t *f = arg;
	vsrv_reg_t all[16];
	size_t k = 0;
	for (uint32_t vs = 1; vs <= 8; vs++)
		all[k++] = (vsrv_reg_t){ .node = f->c->thief, .vservice_id = vs, .contact = f->c->thief, .methods = 3 };
	for (size_t i = 0; i < n && k < 16; i++)
		all[k++] = regs[i];
	f->done(f->arg, status, status ? NULL : all, status ? 0 : k, incident);
}

static int crowd_store(void *ctx, const char *number, uint8_t op, const vsrv_reg_t *reg, vsrv_done_fn done, void *arg)
{
	crowd_dht_t *c = ctx;
	return c->inner.store(c->inner.ctx, number, op, reg, done, arg);
}

static int crowd_fetch(void *ctx, const char *number, vsrv_fetch_fn done, void *arg)
{
	crowd_dht_t *c = ctx;
	crowd_fetch_t f = { c, done, arg };
	return c->inner.fetch(c->inner.ctx, number, crowd_fetch_done, &f); /* the memdht completes inside */
}

static int crowd_attach(void *ctx, const vp_id_t *contact, unsigned timeout_ms, int *fd)
{
	crowd_dht_t *c = ctx;
	return c->inner.app_attach(c->inner.ctx, contact, timeout_ms, fd);
}

static void test_crowded_fetch_still_validates_the_owner(void **state)
{
	vsrv_memdht_t *dht = memdht();
	seen_t seen = { .mu = PTHREAD_MUTEX_INITIALIZER };
	crowd_dht_t cd;
	carrier_t a = { .dir = "" }, b = { .dir = "" };
	vap_client_t *ca, *cb;
	vap_range_t range = { .prefix = "+1408555", .first = 400, .last = 400, .width = 4 };
	vap_vservice_t vsb = { .id = 5, .op = VAP_OP_ADD, .n_uris = 1, .uris = { "sip:sbc@carrier-b.example" } };
	vsrv_conf_t conf;
	vsrv_dht_t iface;
	vp_conf_err_t e;
	char text[512];
	uint64_t now = vp_time_wall_ms(), stored = 0;
	vap_vcr_t orig, term;
	vap_route_t route;
	(void)state;
	carrier_up_t(&a, dht, "A", "carrier-a.example", "agent-a:pa", "", "0", &seen);
	ca = agent(&a, "agent-a", "pa");
	assert_int_equal(vap_client_publish(ca, 1, VAP_OP_ADD, NULL, 0, &range, 1, &stored), 0);
	memset(&orig, 0, sizeof(orig));
	snprintf(orig.called, sizeof(orig.called), "+14085550400");
	orig.stop_ms = now - 5000;
	orig.start_ms = routable_call_start(orig.stop_ms); /* enough entropy for the validator's own rule */
	orig.direction = VAP_DIR_ORIGINATING;
	term = orig;
	term.direction = VAP_DIR_TERMINATING;
	assert_int_equal(vap_client_upload(ca, &term, 1), 0);

	vsrv_memdht_iface(dht, &cd.inner);
	memset(cd.thief.b, 0x66, sizeof(cd.thief.b)); /* unreachable: no PVP endpoint */
	iface = (vsrv_dht_t){ .ctx = &cd, .store = crowd_store, .fetch = crowd_fetch, .app_attach = crowd_attach };
	snprintf(b.dir, sizeof(b.dir), "/tmp/test-vsrv-XXXXXX");
	assert_non_null(mkdtemp(b.dir));
	vsrv_conf_default(&conf);
	snprintf(text, sizeof(text),
	         "[server]\nname = B\ndomain = carrier-b.example\n[vap]\nport = 0\nagents = agent-b:pb\n"
	         "[pvp]\nvcr_dir = %s\nmin_entropy_cbits = 100\norig_min_entropy_cbits = 100\n"
	         "[scheduler]\ndelay_min = 0\ndelay_max = 1\nfetch_timeout = 5s\nattach_timeout = 1s\n", b.dir);
	assert_int_equal(vsrv_conf_parse(&conf, text, strlen(text), &e), 0);
	assert_int_equal(vsrv_new(&conf, &iface, NULL, on_event, &seen, &b.srv), 0);
	assert_int_equal(vsrv_start(b.srv), 0);
	cb = agent(&b, "agent-b", "pb");
	assert_int_equal(vap_client_publish_vservice(cb, &vsb), 0);
	assert_int_equal(vap_client_subscribe(cb, 5, 600), 0);
	assert_int_equal(vap_client_upload(cb, &orig, 1), 0);
	assert_int_equal(vap_client_wait_notify(cb, &route, 20000), 0);
	assert_string_equal(route.number, "+14085550400");
	vap_client_close(cb);
	vap_client_close(ca);
	carrier_down(&b);
	carrier_down(&a);
	vsrv_memdht_free(dht);
}

/* A number nobody claims: no validation, no route, nothing notified. */
static void test_unclaimed_number(void **state)
{
	vsrv_memdht_t *dht = memdht();
	seen_t seen = { .mu = PTHREAD_MUTEX_INITIALIZER };
	carrier_t b;
	vap_client_t *cb;
	vap_vcr_t o;
	uint64_t now = vp_time_wall_ms();
	vsrv_stats_t st;
	(void)state;
	carrier_up(&b, dht, "B", "carrier-b.example", "agent-b:pb", &seen);
	cb = agent(&b, "agent-b", "pb");
	own_vservice(cb, 1);
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
                         const char *agents, const char *tenants, unsigned fetch_timeout_ms, incident_seen_t *is)
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
	snprintf(conf.tenants, sizeof(conf.tenants), "%s", tenants);
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
	o.stop_ms = now - 3000;
	o.start_ms = routable_call_start(o.stop_ms);
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
	vsrv_memdht_t *mem = memdht();
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
	slow_carrier(&a, &sd, mem, "A", "carrier-a.example", "agent-a:pa", "", 5000, &is);
	/* watcher-b watches agent-b's VService: one tenant. */
	slow_carrier(&b, &sd, mem, "B", "carrier-b.example", "agent-b:pb, watcher-b:pw", "watcher-b:agent-b", 5000, &is);
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
	vsrv_memdht_t *mem = memdht();
	incident_seen_t is = { .mu = PTHREAD_MUTEX_INITIALIZER };
	carrier_t b;
	vap_client_t *cb;
	vsrv_stats_t st;
	(void)state;
	vsrv_memdht_iface(mem, &sd.inner);
	/* Fetches are answered (with a failure) after the 20 ms lookup deadline. */
	assert_int_equal(pthread_create(&sd.th, NULL, slow_thread, &sd), 0);
	slow_carrier(&b, &sd, mem, "B", "carrier-b.example", "agent-b:pb", "", 20, &is);
	cb = agent(&b, "agent-b", "pb");
	own_vservice(cb, 1);
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

/*
 * Housekeeping: records past retention are purged (injected clock 49 h later),
 * and a guess-ledger entry once its chain lapsed (61 days later; before, the
 * server never purged its ledger: one entry per number and claimant for ever).
 */
static void test_maintenance_purges(void **state)
{
	vsrv_memdht_t *dht = memdht();
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
	pvp_vcr_store_conf_t stc = { .path = dir, .clock = &clk };
	pvp_vcr_store_t *vst = NULL;
	pvp_ledger_conf_t lc = { .budget = 4 };
	pvp_ledger_t *led = NULL;
	(void)state;
	assert_non_null(mkdtemp(dir));
	/* A failed handshake in the ledger, written before the server opens the store. */
	assert_int_equal(pvp_vcr_store_open(&stc, &vst), 0);
	lc.store = vst;
	assert_int_equal(pvp_ledger_new(&lc, &led), 0);
	assert_int_equal(pvp_ledger_take(led, "+14085550199", "c1", now / 1000), 0);
	assert_int_equal(pvp_ledger_settle(led, "+14085550199", "c1", now / 1000, PVP_LEDGER_FAILED), 0);
	pvp_ledger_free(led);
	pvp_vcr_store_close(vst);
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
	assert_int_equal(st.ledger_purged, 0);
	__atomic_store_n(&now, now + 61ull * 86400 * 1000, __ATOMIC_SEQ_CST);
	vsrv_maintenance(srv);
	vsrv_get_stats(srv, &st);
	assert_int_equal(st.ledger_purged, 1);
	vap_client_close(cl);
	vsrv_free(srv);
	vsrv_memdht_free(dht);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

/* ---- learned state, lists and owners (issue 11) --------------------------------- */

/* One call to \p called that ended \p ago_s seconds ago: A keeps the terminating record, \p caller the originating. */
static void upload_call_ago(vap_client_t *owner, vap_client_t *caller, const char *called, uint64_t ago_s)
{
	vap_vcr_t o, t;
	memset(&o, 0, sizeof(o));
	snprintf(o.called, sizeof(o.called), "%s", called);
	snprintf(o.caller, sizeof(o.caller), "+33123450007");
	o.stop_ms = vp_time_wall_ms() - ago_s * 1000;
	o.start_ms = routable_call_start(o.stop_ms);
	o.direction = VAP_DIR_ORIGINATING;
	t = o;
	t.direction = VAP_DIR_TERMINATING;
	assert_int_equal(vap_client_upload(owner, &t, 1), 0);
	assert_int_equal(vap_client_upload(caller, &o, 1), 0);
}

/* The next Notify on \p sub: for \p number, its ticket verified under \p keys for carrier-b.example. */
static void wait_route(vap_client_t *sub, const char *number, const pvp_ticket_keys_t *keys, pvp_ticket_t *tk)
{
	vap_route_t route;
	pvp_ticket_expect_t ex = { .number = number, .domain = "carrier-b.example", .need_routes = true };
	assert_int_equal(vap_client_wait_notify(sub, &route, 20000), 0);
	assert_string_equal(route.number, number);
	assert_int_equal(route.n_uris, 1);
	assert_true(route.expires > 86400);
	assert_int_equal(pvp_ticket_verify(keys, route.ticket, route.ticket_len, vp_time_wall_ms() / 1000, &ex, tk),
	                 PVP_TR_OK);
}

/*
 * What B learned survives its restart, per tenant.  B's tenant agent-b and
 * Mallory (another tenant of B) each validate a call to the same number of A:
 * Mallory's ticket counts only her own call (before, the ticket map was keyed
 * by number and claimant, so her validation sent agent-b's ticket and came
 * back with two calls counted).  B restarts: agent-b, subscribing again,
 * receives the route learned before (replay; before, routes and tickets lived
 * in memory and the Notify sent while nobody listened was lost), and its next
 * validation sends the kept ticket, so A counts two calls (before: one).
 */
static void test_learned_state_survives_restart_per_tenant(void **state)
{
	vsrv_memdht_t *dht = memdht();
	seen_t seen = { .mu = PTHREAD_MUTEX_INITIALIZER };
	carrier_t a, b = { .dir = "" };
	vap_client_t *ca, *cb, *cm, *sub, *msub;
	vap_vservice_t vsa = { .id = 1, .op = VAP_OP_ADD, .n_uris = 1, .uris = { "sips:pbx@carrier-a.example" } };
	vap_vservice_t vsb = { .id = 5, .op = VAP_OP_ADD, .n_uris = 1, .uris = { "sip:sbc@carrier-b.example" } };
	vap_vservice_t vsm = { .id = 9, .op = VAP_OP_ADD, .n_uris = 1, .uris = { "sip:m@carrier-b.example" } };
	const char *num[] = { "+14085550400" };
	uint64_t stored = 0;
	pvp_ticket_t tk;
	vap_route_t route;
	vsrv_stats_t sb;
	(void)state;
	carrier_up(&a, dht, "A", "carrier-a.example", "agent-a:pa", &seen);
	ca = agent(&a, "agent-a", "pa");
	assert_int_equal(vap_client_publish_vservice(ca, &vsa), 0);
	assert_int_equal(vap_client_publish(ca, 1, VAP_OP_ADD, num, 1, NULL, 0, &stored), 0);
	carrier_up_t(&b, dht, "B", "carrier-b.example", "agent-b:pb, mallory:pm", "", "0", &seen);
	cb = agent(&b, "agent-b", "pb");
	cm = agent(&b, "mallory", "pm");
	sub = agent(&b, "agent-b", "pb");
	msub = agent(&b, "mallory", "pm");
	assert_int_equal(vap_client_publish_vservice(cb, &vsb), 0);
	assert_int_equal(vap_client_publish_vservice(cm, &vsm), 0);
	assert_int_equal(vap_client_subscribe(sub, 5, 600), 0);
	assert_int_equal(vap_client_subscribe(msub, 9, 600), 0);

	/* agent-b's call, then Mallory's later call to the same number: one call counted each. */
	upload_call_ago(ca, cb, num[0], 900);
	wait_route(sub, num[0], vsrv_ticket_keys(a.srv), &tk);
	assert_int_equal(tk.validations, 1);
	upload_call_ago(ca, cm, num[0], 600);
	wait_route(msub, num[0], vsrv_ticket_keys(a.srv), &tk);
	assert_int_equal(tk.validations, 1);

	/* B restarts (the store stays). */
	vap_client_close(cb);
	vap_client_close(cm);
	vap_client_close(sub);
	vap_client_close(msub);
	vsrv_free(b.srv);
	carrier_up_t(&b, dht, "B", "carrier-b.example", "agent-b:pb, mallory:pm", "", "0", &seen);
	cb = agent(&b, "agent-b", "pb");
	sub = agent(&b, "agent-b", "pb");
	/* Subscribing replays agent-b's route, and only it (Mallory's is hers). */
	assert_int_equal(vap_client_subscribe(sub, 5, 600), 0);
	wait_route(sub, num[0], vsrv_ticket_keys(a.srv), &tk);
	assert_int_equal(tk.validations, 1);
	assert_int_equal(vap_client_wait_notify(sub, &route, 200), VP_ETIMEOUT);
	vsrv_get_stats(b.srv, &sb);
	assert_int_equal(sb.replayed, 1);
	/* The kept ticket goes with agent-b's next validation: two calls counted. */
	upload_call_ago(ca, cb, num[0], 300);
	wait_route(sub, num[0], vsrv_ticket_keys(a.srv), &tk);
	assert_int_equal(tk.validations, 2);

	vap_client_close(ca);
	vap_client_close(cb);
	vap_client_close(sub);
	carrier_down(&b);
	carrier_down(&a);
	vsrv_memdht_free(dht);
}

/*
 * Black/white lists belong to the VService that published them (protocol
 * §5.1).  A's tenant agent-a blacklists carrier-b.example on VService 1;
 * agent-z's VService 2 has no lists.  B learns the route of agent-z's number
 * but not agent-a's (before, the blacklist was server-wide and refused B for
 * both).  agent-a publishes VService 1 again without the list, and the next
 * call to its number gives B the route (before, list entries were never
 * removed).
 */
static void test_vservice_lists_are_per_vservice(void **state)
{
	vsrv_memdht_t *dht = memdht();
	seen_t seen = { .mu = PTHREAD_MUTEX_INITIALIZER };
	carrier_t a = { .dir = "" }, b;
	vap_client_t *ca, *cz, *cb, *sub;
	vap_vservice_t vsa = { .id = 1, .op = VAP_OP_ADD, .n_uris = 1, .uris = { "sips:pbx@carrier-a.example" },
		               .n_black = 1, .black = { "carrier-b.example" } };
	vap_vservice_t vsz = { .id = 2, .op = VAP_OP_ADD, .n_uris = 1, .uris = { "sips:z@carrier-a.example" } };
	vap_vservice_t vsb = { .id = 5, .op = VAP_OP_ADD, .n_uris = 1, .uris = { "sip:sbc@carrier-b.example" } };
	const char *na[] = { "+14085550500", "+14085550501" }, *nz[] = { "+14085550600" };
	uint64_t stored = 0;
	pvp_ticket_t tk;
	vap_route_t route;
	vsrv_stats_t sb;
	(void)state;
	carrier_up_t(&a, dht, "A", "carrier-a.example", "agent-a:pa, agent-z:pz", "", "0", &seen);
	ca = agent(&a, "agent-a", "pa");
	cz = agent(&a, "agent-z", "pz");
	assert_int_equal(vap_client_publish_vservice(ca, &vsa), 0);
	assert_int_equal(vap_client_publish(ca, 1, VAP_OP_ADD, na, 2, NULL, 0, &stored), 0);
	assert_int_equal(vap_client_publish_vservice(cz, &vsz), 0);
	assert_int_equal(vap_client_publish(cz, 2, VAP_OP_ADD, nz, 1, NULL, 0, &stored), 0);
	carrier_up(&b, dht, "B", "carrier-b.example", "agent-b:pb", &seen);
	cb = agent(&b, "agent-b", "pb");
	sub = agent(&b, "agent-b", "pb");
	assert_int_equal(vap_client_publish_vservice(cb, &vsb), 0);
	assert_int_equal(vap_client_subscribe(sub, 5, 600), 0);

	upload_call_ago(ca, cb, na[0], 900);
	upload_call_ago(cz, cb, nz[0], 900);
	wait_route(sub, nz[0], vsrv_ticket_keys(a.srv), &tk);
	/* Both validations complete (A's refusal is an answer: validations_ok); one route. */
	for (int i = 0; i < 300; i++) {
		vsrv_get_stats(b.srv, &sb);
		if (sb.validations_ok + sb.validations_failed >= 2)
			break;
		usleep(20000);
	}
	assert_int_equal(sb.validations_ok, 2);
	assert_int_equal(sb.routes, 1);
	assert_int_equal(vap_client_wait_notify(sub, &route, 200), VP_ETIMEOUT);

	/* The lists go with the publication: republished without them, B is served (on the
	 * VService's other number: the refused handshake on na[0] is spent in B's guess ledger). */
	vsa.n_black = 0;
	assert_int_equal(vap_client_publish_vservice(ca, &vsa), 0);
	upload_call_ago(ca, cb, na[1], 600);
	wait_route(sub, na[1], vsrv_ticket_keys(a.srv), &tk);

	vap_client_close(ca);
	vap_client_close(cz);
	vap_client_close(cb);
	vap_client_close(sub);
	carrier_down(&b);
	carrier_down(&a);
	vsrv_memdht_free(dht);
}

/*
 * A VService's owner is kept in the store: after a restart Mallory, another
 * tenant, can neither take agent-a's VService 1 nor subscribe to it (before,
 * ownership lived in memory and the first tenant to touch the VService after
 * the restart became its owner).
 */
static void test_vservice_owner_survives_restart(void **state)
{
	vsrv_memdht_t *dht = memdht();
	seen_t seen = { .mu = PTHREAD_MUTEX_INITIALIZER };
	carrier_t a = { .dir = "" };
	vap_client_t *ca, *cm;
	vap_vservice_t vs = { .id = 1, .op = VAP_OP_ADD, .n_uris = 1, .uris = { "sips:pbx@carrier-a.example" } };
	vap_vservice_t evil = { .id = 1, .op = VAP_OP_ADD, .n_uris = 1, .uris = { "sip:evil@mallory.example" } };
	(void)state;
	carrier_up_t(&a, dht, "A", "carrier-a.example", "agent-a:pa, mallory:pm", "", "0", &seen);
	ca = agent(&a, "agent-a", "pa");
	assert_int_equal(vap_client_publish_vservice(ca, &vs), 0);
	vap_client_close(ca);
	vsrv_free(a.srv);
	carrier_up_t(&a, dht, "A", "carrier-a.example", "agent-a:pa, mallory:pm", "", "0", &seen);
	cm = agent(&a, "mallory", "pm");
	ca = agent(&a, "agent-a", "pa");
	assert_int_not_equal(vap_client_publish_vservice(cm, &evil), 0);
	assert_int_not_equal(vap_client_subscribe(cm, 1, 600), 0);
	assert_int_equal(vap_client_publish_vservice(ca, &vs), 0);
	assert_int_equal(vap_client_subscribe(ca, 1, 600), 0);
	vap_client_close(ca);
	vap_client_close(cm);
	carrier_down(&a);
	vsrv_memdht_free(dht);
}

/*
 * An originating record goes only to a VService of its uploader's tenant, and
 * to the one the agent last published numbers under, also after a restart.
 * agent-b owns VServices 1 and 7 and publishes its numbers under 7; Mallory
 * (another tenant) owns none.  Mallory's record is refused with 403 (before,
 * it went to VService 1, so agent-b's watcher received the route of a call
 * Mallory uploaded).  After B restarts, agent-b's record goes to VService 7
 * (before, the agent's VService lived in memory: the record went to VService
 * 1, the wrong one of its two).
 */
static void test_record_goes_to_its_tenants_vservice_across_restart(void **state)
{
	vsrv_memdht_t *dht = memdht();
	seen_t seen = { .mu = PTHREAD_MUTEX_INITIALIZER };
	carrier_t a, b = { .dir = "" };
	vap_client_t *ca, *cb, *cm, *sub1, *sub7;
	vap_vservice_t vsa = { .id = 1, .op = VAP_OP_ADD, .n_uris = 1, .uris = { "sips:pbx@carrier-a.example" } };
	vap_vservice_t vs1 = { .id = 1, .op = VAP_OP_ADD, .n_uris = 1, .uris = { "sip:sbc1@carrier-b.example" } };
	vap_vservice_t vs7 = { .id = 7, .op = VAP_OP_ADD, .n_uris = 1, .uris = { "sip:sbc7@carrier-b.example" } };
	const char *num[] = { "+14085550700" }, *own[] = { "+33123450070" };
	const char *agents = "agent-b:pb, watcher-b:pw, mallory:pm", *tenants = "watcher-b:agent-b";
	uint64_t stored = 0;
	pvp_ticket_t tk;
	vap_route_t route;
	vap_vcr_t o;
	(void)state;
	carrier_up(&a, dht, "A", "carrier-a.example", "agent-a:pa", &seen);
	ca = agent(&a, "agent-a", "pa");
	assert_int_equal(vap_client_publish_vservice(ca, &vsa), 0);
	assert_int_equal(vap_client_publish(ca, 1, VAP_OP_ADD, num, 1, NULL, 0, &stored), 0);
	carrier_up_t(&b, dht, "B", "carrier-b.example", agents, tenants, "0", &seen);
	cb = agent(&b, "agent-b", "pb");
	cm = agent(&b, "mallory", "pm");
	sub1 = agent(&b, "watcher-b", "pw");
	assert_int_equal(vap_client_publish_vservice(cb, &vs1), 0);
	assert_int_equal(vap_client_publish_vservice(cb, &vs7), 0);
	assert_int_equal(vap_client_publish(cb, 7, VAP_OP_ADD, own, 1, NULL, 0, &stored), 0);
	assert_int_equal(vap_client_subscribe(sub1, 1, 600), 0);

	/* Mallory's tenant owns no VService: her originating record is refused, nothing is validated. */
	memset(&o, 0, sizeof(o));
	snprintf(o.called, sizeof(o.called), "%s", num[0]);
	o.stop_ms = vp_time_wall_ms() - 900000;
	o.start_ms = routable_call_start(o.stop_ms);
	o.direction = VAP_DIR_ORIGINATING;
	assert_int_not_equal(vap_client_upload(cm, &o, 1), 0);
	assert_int_equal(vap_client_last_error(cm)->code, 403);
	assert_int_equal(vap_client_wait_notify(sub1, &route, 300), VP_ETIMEOUT);

	/* B restarts; agent-b's next record goes to VService 7, where it publishes its numbers. */
	vap_client_close(cb);
	vap_client_close(cm);
	vap_client_close(sub1);
	vsrv_free(b.srv);
	carrier_up_t(&b, dht, "B", "carrier-b.example", agents, tenants, "0", &seen);
	cb = agent(&b, "agent-b", "pb");
	sub1 = agent(&b, "watcher-b", "pw");
	sub7 = agent(&b, "watcher-b", "pw");
	assert_int_equal(vap_client_subscribe(sub1, 1, 600), 0);
	assert_int_equal(vap_client_subscribe(sub7, 7, 600), 0);
	upload_call_ago(ca, cb, num[0], 600);
	wait_route(sub7, num[0], vsrv_ticket_keys(a.srv), &tk);
	assert_int_equal(vap_client_wait_notify(sub1, &route, 300), VP_ETIMEOUT);

	vap_client_close(ca);
	vap_client_close(cb);
	vap_client_close(sub1);
	vap_client_close(sub7);
	carrier_down(&b);
	carrier_down(&a);
	vsrv_memdht_free(dht);
}

/*
 * A VService's publication (URIs, lists) and the numbers published under it
 * survive a restart of the terminating server.  A publishes VService 1 with
 * its URI and a blacklist naming thief.example, and a number under it, then
 * restarts; nobody publishes again.  B's validation gets the route with A's
 * URI (before, A forgot its numbers and VServices at the restart and refused
 * every validation until its agent republished), and T, blacklisted, gets no
 * route (the list came back with the VService, not only the URIs).
 */
static void test_publications_survive_restart(void **state)
{
	vsrv_memdht_t *dht = memdht();
	seen_t seen = { .mu = PTHREAD_MUTEX_INITIALIZER };
	carrier_t a = { .dir = "" }, b, t;
	vap_client_t *ca, *cb, *ct, *sub;
	vap_vservice_t vsa = { .id = 1, .op = VAP_OP_ADD, .n_uris = 1, .uris = { "sips:pbx@carrier-a.example" },
		               .n_black = 1, .black = { "thief.example" } };
	vap_vservice_t vsb = { .id = 1, .op = VAP_OP_ADD, .n_uris = 1, .uris = { "sip:sbc@carrier-b.example" } };
	vap_vservice_t vst = { .id = 1, .op = VAP_OP_ADD, .n_uris = 1, .uris = { "sip:gw@thief.example" } };
	const char *num[] = { "+14085550800" };
	uint64_t stored = 0;
	pvp_ticket_t tk;
	vap_route_t route;
	vsrv_stats_t st;
	(void)state;
	carrier_up_t(&a, dht, "A", "carrier-a.example", "agent-a:pa", "", "0", &seen);
	ca = agent(&a, "agent-a", "pa");
	assert_int_equal(vap_client_publish_vservice(ca, &vsa), 0);
	assert_int_equal(vap_client_publish(ca, 1, VAP_OP_ADD, num, 1, NULL, 0, &stored), 0);
	vap_client_close(ca);
	vsrv_free(a.srv);
	carrier_up_t(&a, dht, "A", "carrier-a.example", "agent-a:pa", "", "0", &seen);
	ca = agent(&a, "agent-a", "pa");

	carrier_up(&b, dht, "B", "carrier-b.example", "agent-b:pb", &seen);
	carrier_up(&t, dht, "T", "thief.example", "agent-t:pt", &seen);
	cb = agent(&b, "agent-b", "pb");
	sub = agent(&b, "agent-b", "pb");
	ct = agent(&t, "agent-t", "pt");
	assert_int_equal(vap_client_publish_vservice(cb, &vsb), 0);
	assert_int_equal(vap_client_publish_vservice(ct, &vst), 0);
	assert_int_equal(vap_client_subscribe(sub, 1, 600), 0);
	upload_call_ago(ca, cb, num[0], 900);
	wait_route(sub, num[0], vsrv_ticket_keys(a.srv), &tk);
	assert_int_equal(vap_client_wait_notify(sub, &route, 1), VP_ETIMEOUT);
	/* T's call to the same number (A holds its record too): validated, refused by the list. */
	upload_call_ago(ca, ct, num[0], 600);
	for (int i = 0; i < 300; i++) {
		vsrv_get_stats(t.srv, &st);
		if (st.validations_ok + st.validations_failed + st.validations_unreachable >= 1)
			break;
		usleep(20000);
	}
	assert_int_equal(st.validations_ok, 1);
	assert_int_equal(st.routes, 0);
	assert_int_equal(st.pending, 0);

	vap_client_close(ca);
	vap_client_close(cb);
	vap_client_close(ct);
	vap_client_close(sub);
	carrier_down(&t);
	carrier_down(&b);
	carrier_down(&a);
	vsrv_memdht_free(dht);
}

/*
 * A number published here is held by its tenant: Mallory, another tenant of
 * A with her own VService 2, can neither publish agent-a's number under it
 * (before: the number then answered validations with her URI, so B's route
 * led to her), nor withdraw it (before: A forgot the number and refused every
 * validation), nor upload terminating records for it (before: accepted, so
 * calls she invents could be validated).  Each gets 403.  B's validation of
 * agent-a's call still returns agent-a's URI.
 */
static void test_number_held_by_its_tenant(void **state)
{
	vsrv_memdht_t *dht = memdht();
	seen_t seen = { .mu = PTHREAD_MUTEX_INITIALIZER };
	carrier_t a = { .dir = "" }, b;
	vap_client_t *ca, *cm, *cb, *sub;
	vap_vservice_t vsa = { .id = 1, .op = VAP_OP_ADD, .n_uris = 1, .uris = { "sips:pbx@carrier-a.example" } };
	vap_vservice_t vsm = { .id = 2, .op = VAP_OP_ADD, .n_uris = 1, .uris = { "sip:evil@mallory.example" } };
	vap_vservice_t vsb = { .id = 1, .op = VAP_OP_ADD, .n_uris = 1, .uris = { "sip:sbc@carrier-b.example" } };
	const char *num[] = { "+14085550900" };
	uint64_t stored = 0, now = vp_time_wall_ms();
	vap_route_t route;
	vap_vcr_t t;
	(void)state;
	carrier_up_t(&a, dht, "A", "carrier-a.example", "agent-a:pa, mallory:pm", "", "0", &seen);
	ca = agent(&a, "agent-a", "pa");
	cm = agent(&a, "mallory", "pm");
	assert_int_equal(vap_client_publish_vservice(ca, &vsa), 0);
	assert_int_equal(vap_client_publish(ca, 1, VAP_OP_ADD, num, 1, NULL, 0, &stored), 0);
	assert_int_equal(vap_client_publish_vservice(cm, &vsm), 0);
	assert_int_not_equal(vap_client_publish(cm, 2, VAP_OP_ADD, num, 1, NULL, 0, &stored), 0);
	assert_int_equal(vap_client_last_error(cm)->code, 403);
	assert_int_not_equal(vap_client_publish(cm, 2, VAP_OP_WITHDRAW, num, 1, NULL, 0, &stored), 0);
	assert_int_equal(vap_client_last_error(cm)->code, 403);
	memset(&t, 0, sizeof(t));
	snprintf(t.called, sizeof(t.called), "%s", num[0]);
	t.direction = VAP_DIR_TERMINATING;
	t.start_ms = now - 60000;
	t.stop_ms = now - 1000;
	assert_int_not_equal(vap_client_upload(cm, &t, 1), 0);
	assert_int_equal(vap_client_last_error(cm)->code, 403);

	carrier_up(&b, dht, "B", "carrier-b.example", "agent-b:pb", &seen);
	cb = agent(&b, "agent-b", "pb");
	sub = agent(&b, "agent-b", "pb");
	assert_int_equal(vap_client_publish_vservice(cb, &vsb), 0);
	assert_int_equal(vap_client_subscribe(sub, 1, 600), 0);
	upload_call_ago(ca, cb, num[0], 900);
	assert_int_equal(vap_client_wait_notify(sub, &route, 20000), 0);
	assert_string_equal(route.number, num[0]);
	assert_int_equal(route.n_uris, 1);
	assert_string_equal(route.uris[0], "sips:pbx@carrier-a.example");

	vap_client_close(ca);
	vap_client_close(cm);
	vap_client_close(cb);
	vap_client_close(sub);
	carrier_down(&b);
	carrier_down(&a);
	vsrv_memdht_free(dht);
}

/* ---- terminating records: derived on workers, acknowledged only once written, in order ---- */

#define TERM_REQS 4
#define TERM_PER_REQ 16

/* The server in a child process, so the test can kill it (SIGKILL: no clean close) right after the acks. */
static pid_t term_server_child(const char *dir, int *port)
{
	int fds[2];
	pid_t pid;
	uint16_t p = 0;
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		vsrv_memdht_t *dht = NULL;
		vsrv_conf_t conf;
		vsrv_dht_t iface;
		vsrv_t *srv = NULL;
		vp_conf_err_t e;
		char text[512];
		close(fds[0]);
		vsrv_conf_default(&conf);
		/* Four workers on any machine, so records finish deriving out of upload order. */
		snprintf(text, sizeof(text),
		         "[server]\nname = K\ndomain = carrier-k.example\n[vap]\nport = 0\nagents = agent-k:pk\n"
		         "[pvp]\nvcr_dir = %s\nvcr_workers = 4\n", dir);
		if (vsrv_memdht_new(&dht) == 0 && (vsrv_memdht_iface(dht, &iface), 1) &&
		    vsrv_conf_parse(&conf, text, strlen(text), &e) == 0 &&
		    vsrv_new(&conf, &iface, NULL, NULL, NULL, &srv) == 0 && vsrv_start(srv) == 0)
			p = vsrv_vap_port(srv);
		if (write(fds[1], &p, sizeof(p)) != (ssize_t)sizeof(p))
			_exit(1);
		for (;;)
			pause(); /* until the test kills us */
	}
	close(fds[1]);
	if (read(fds[0], &p, sizeof(p)) != (ssize_t)sizeof(p))
		p = 0;
	close(fds[0]);
	*port = p;
	return pid;
}

/*
 * Terminating records are derived on worker threads, so they finish in any
 * order: records near the hour (start within 90 s of it) need two PBKDF2 runs,
 * the others one, and they alternate.  Still (1) every record acknowledged is
 * in the store even when the server is killed right after the last answer
 * (written to the WAL before the answer), and (2) record ids follow upload
 * order.  An ack sent on submission loses the last request's records; a
 * writer taking records as they finish gives a near-hour record a later id
 * than the record uploaded after it.
 */
static void test_term_records_acked_when_written_in_upload_order(void **state)
{
	char dir[64] = "/tmp/test-vsrv-XXXXXX", cmd[128];
	vap_client_conf_t cc = { .host = "127.0.0.1", .username = "agent-k", .password = "pk", .timeout_ms = 20000 };
	vap_client_t *cl = NULL;
	vap_vcr_t v[TERM_REQS * TERM_PER_REQ];
	uint64_t now = vp_time_wall_ms(), h0 = (now - 40ull * 3600 * 1000) / 3600000 * 3600000;
	pvp_vcr_store_conf_t stc = { .path = dir };
	pvp_vcr_store_t *st = NULL;
	pvp_vcr_t found[4];
	int port = 0, status, rc[TERM_REQS];
	size_t n;
	pid_t pid;
	(void)state;
	assert_non_null(mkdtemp(dir));
	memset(v, 0, sizeof(v));
	for (int i = 0; i < TERM_REQS * TERM_PER_REQ; i++) {
		snprintf(v[i].called, sizeof(v[i].called), "+1408556%04d", i);
		snprintf(v[i].caller, sizeof(v[i].caller), "+3312345%04d", i);
		/* Start times increase in upload order; even ones 10 s past an hour (two selectors). */
		v[i].start_ms = h0 + (uint64_t)(i / 2) * 3600000 + (i % 2 ? 1800000 : 10000);
		v[i].stop_ms = v[i].start_ms + 60000;
		v[i].direction = VAP_DIR_TERMINATING;
	}
	pid = term_server_child(dir, &port);
	if (port) {
		cc.port = (uint16_t)port;
		if (vap_client_connect(&cc, &cl) == 0)
			for (int r = 0; r < TERM_REQS; r++)
				rc[r] = vap_client_upload(cl, v + r * TERM_PER_REQ, TERM_PER_REQ);
	}
	/* Killed right after the last answer, before any assertion can leave it running. */
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	vap_client_close(cl);
	assert_true(port > 0);
	assert_non_null(cl);
	for (int r = 0; r < TERM_REQS; r++)
		assert_int_equal(rc[r], 0);

	assert_int_equal(pvp_vcr_store_open(&stc, &st), 0);
	{
		uint64_t prev_id = 0;
		for (int i = 0; i < TERM_REQS * TERM_PER_REQ; i++) {
			uint8_t sel[PVP_SEL_LEN];
			uint32_t bucket = (uint32_t)((v[i].start_ms / 1000 - 90) / PVP_BUCKET_S);
			assert_int_equal(pvp_selector(v[i].called, bucket, sel), 0);
			assert_int_equal(pvp_vcr_store_find(st, bucket, sel, found, 4, &n), 0);
			assert_int_equal(n, 1);
			assert_string_equal(found[0].called, v[i].called);
			assert_int_equal(found[0].start_ms, v[i].start_ms);
			if (found[0].id <= prev_id)
				fail_msg("record %d (start %llu) has id %llu, not after the previous record's %llu", i,
				         (unsigned long long)v[i].start_ms, (unsigned long long)found[0].id,
				         (unsigned long long)prev_id);
			prev_id = found[0].id;
			if (i % 2 == 0) { /* a near-hour record is indexed under its own hour too */
				assert_int_equal(pvp_selector(v[i].called, bucket + 1, sel), 0);
				assert_int_equal(pvp_vcr_store_find(st, bucket + 1, sel, found, 4, &n), 0);
				assert_int_equal(n, 1);
			}
		}
	}
	pvp_vcr_store_close(st);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_conf_defaults_and_errors),
		cmocka_unit_test(test_bad_agents_list_refused),
		cmocka_unit_test(test_cert_issuer_config),
		cmocka_unit_test(test_publish_reaches_dht),
		cmocka_unit_test(test_upload_validate_notify),
		cmocka_unit_test(test_tenants_are_isolated),
		cmocka_unit_test(test_restart_validates_acknowledged_records),
		cmocka_unit_test(test_crowded_fetch_still_validates_the_owner),
		cmocka_unit_test(test_unclaimed_number),
		cmocka_unit_test(test_async_dht_and_incident),
		cmocka_unit_test(test_fetch_timeout_retried),
		cmocka_unit_test(test_maintenance_purges),
		cmocka_unit_test(test_learned_state_survives_restart_per_tenant),
		cmocka_unit_test(test_vservice_lists_are_per_vservice),
		cmocka_unit_test(test_vservice_owner_survives_restart),
		cmocka_unit_test(test_record_goes_to_its_tenants_vservice_across_restart),
		cmocka_unit_test(test_publications_survive_restart),
		cmocka_unit_test(test_number_held_by_its_tenant),
		cmocka_unit_test(test_term_records_acked_when_written_in_upload_order),
		cmocka_unit_test(test_client_cert_delivered_and_kept),
	};
	vp_log_setup(getenv("T_INFO") ? VP_LOG_INFO : VP_LOG_ERROR, stderr);
	if (getenv("T_FILTER"))
		cmocka_set_test_filter(getenv("T_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
