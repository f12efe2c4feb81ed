/*
 * vipr-pvp-demo - PVP end to end on loopback, the way a person wants to watch it.
 *
 * Carrier A owns +1 408 555 01xx and received a batch of simulated PSTN calls
 * from carrier B (clock offsets, jitter, calls on the hour, some without
 * caller-ID).  A thief claims the same numbers but received nothing.  B's
 * validation scheduler finds both claimants (a stand-in for the DHT lookup),
 * validates against each over TLS-SRP + ValExchange, learns routes and
 * tickets from A only, and a border element at A then checks the tickets.
 *
 *   vipr-pvp-demo [-n CALLS] [-s SEED] [-v]
 *
 * Everything runs in this process on 127.0.0.1 with a simulated clock; the
 * exit status is 0 if every call validated against the owner and never
 * against the thief.
 */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/errcode.h"
#include "common/log.h"
#include "common/rand.h"
#include "common/net.h"
#include "pvp/pvp.h"
#include "pvp/scheduler.h"

#define MAX_CALLS 200

typedef struct claimant {
	const char *name, *domain;
	char dir[64];
	pvp_vcr_store_t *store;
	pvp_policy_t *policy;
	pvp_ticket_keys_t keys;
	pvp_server_t *srv;
	int lfd, stop;
	char port[8];
	pthread_t th;
	int served, authenticated;
} claimant_t;

typedef struct demo {
	uint64_t now_ms;
	vp_clock_t clock;
	claimant_t owner, thief;
	int routes, pending, thief_routes;
	char route_num[MAX_CALLS][VP_E164_BUFLEN];
	uint8_t tickets[MAX_CALLS][PVP_TICKET_MAX];
	size_t ticket_len[MAX_CALLS];
	uint64_t rng;
} demo_t;

static uint64_t rnd(demo_t *d)
{
	return vp_xorshift64s_next(&d->rng);
}

static double unif(demo_t *d)
{
	return vp_rand_unit(rnd(d));
}

static int routes_cb(void *arg, const char *number, char uris[][PVP_URI_MAX], size_t max, size_t *n)
{
	claimant_t *c = arg;
	if (!max)
		return VP_ESPACE;
	snprintf(uris[0], PVP_URI_MAX, "sips:%s@sbc.%s", number, c->domain);
	*n = 1;
	return 0;
}

static void *serve(void *arg)
{
	claimant_t *c = arg;
	while (!__atomic_load_n(&c->stop, __ATOMIC_SEQ_CST)) {
		struct pollfd pfd = { .fd = c->lfd, .events = POLLIN };
		pvp_server_result_t res;
		int fd;
		if (poll(&pfd, 1, 50) <= 0)
			continue;
		fd = accept(c->lfd, NULL, NULL);
		if (fd < 0)
			continue;
		pvp_server_handle(c->srv, fd, "carrier-b", &res);
		close(fd);
		c->served++;
		if (res.outcome != PVP_OUT_HANDSHAKE_FAILED && res.outcome != PVP_OUT_RATE_LIMITED)
			c->authenticated++;
	}
	return NULL;
}

static int claimant_start(demo_t *d, claimant_t *c, const char *name, const char *domain, uint8_t keybyte)
{
	pvp_vcr_store_conf_t sc = { .clock = &d->clock };
	pvp_policy_conf_t pc = { .peer_fail_limit = 100000, .number_fail_limit = 100 };
	pvp_server_conf_t conf;
	uint16_t lport = 0;

	c->name = name;
	c->domain = domain;
	snprintf(c->dir, sizeof(c->dir), "/tmp/vipr-pvp-demo-XXXXXX");
	if (!mkdtemp(c->dir))
		return -1;
	sc.path = c->dir;
	c->keys.cur.epoch = 1;
	c->keys.cur.len = 32;
	memset(c->keys.cur.key, keybyte, 32);
	if (pvp_vcr_store_open(&sc, &c->store) || pvp_policy_new(&pc, &c->policy))
		return -1;
	memset(&conf, 0, sizeof(conf));
	conf.store = c->store;
	conf.keys = &c->keys;
	conf.policy = c->policy;
	conf.routes = routes_cb;
	conf.routes_arg = c;
	conf.clock = &d->clock;
	if (pvp_server_new(&conf, &c->srv))
		return -1;
	if (vp_net_listen_tcp("127.0.0.1", 0, 16, 0, &c->lfd, &lport))
		return -1;
	snprintf(c->port, sizeof(c->port), "%u", lport);
	return pthread_create(&c->th, NULL, serve, c) ? -1 : 0;
}

static void claimant_stop(claimant_t *c)
{
	char cmd[128];
	__atomic_store_n(&c->stop, 1, __ATOMIC_SEQ_CST);
	pthread_join(c->th, NULL);
	close(c->lfd);
	pvp_server_free(c->srv);
	pvp_policy_free(c->policy);
	pvp_vcr_store_close(c->store);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", c->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", c->dir);
}

static int lookup(void *arg, const char *number, pvp_claimant_t *out, size_t max, size_t *n)
{
	demo_t *d = arg;
	(void)number;
	if (max < 2)
		return VP_ESPACE;
	/* What the DHT would return: two claims on every number. */
	memset(out, 0, 2 * sizeof(*out));
	snprintf(out[0].id, sizeof(out[0].id), "thief");
	snprintf(out[0].addr, sizeof(out[0].addr), "127.0.0.1:%s", d->thief.port);
	out[0].methods = PVP_METHODS_ALL;
	snprintf(out[1].id, sizeof(out[1].id), "carrier-a");
	snprintf(out[1].addr, sizeof(out[1].addr), "127.0.0.1:%s", d->owner.port);
	out[1].methods = PVP_METHODS_ALL;
	*n = 2;
	return 0;
}

/* Tickets kept per number for entropy accumulation (the call agent's cache in real life). */
static size_t prev_ticket(void *arg, const char *number, const char *claimant, uint8_t *buf, size_t cap)
{
	demo_t *d = arg;
	if (strcmp(claimant, "carrier-a"))
		return 0;
	for (int i = d->routes + d->pending - 1; i >= 0; i--) {
		if (!strcmp(d->route_num[i], number) && d->ticket_len[i] <= cap) {
			memcpy(buf, d->tickets[i], d->ticket_len[i]);
			return d->ticket_len[i];
		}
	}
	return 0;
}

static void route(void *arg, const pvp_route_t *r)
{
	demo_t *d = arg;
	int k = d->routes + d->pending;
	if (strcmp(r->claimant->id, "carrier-a"))
		d->thief_routes++;
	if (k < MAX_CALLS) {
		snprintf(d->route_num[k], sizeof(d->route_num[k]), "%s", r->number);
		memcpy(d->tickets[k], r->resp->ticket, r->resp->ticket_len);
		d->ticket_len[k] = r->resp->ticket_len;
	}
	if (r->resp->status == PVP_ST_ROUTES) {
		d->routes++;
		printf("  route learned   %s -> %s (method %c, %.1f bits, ticket %zu bytes)\n", r->number,
		       r->resp->uris[0], pvp_method_letter(r->method), r->resp->entropy_cbits / 100.0,
		       r->resp->ticket_len);
	} else {
		d->pending++;
		printf("  ticket pending  %s (method %c, %.1f of %.1f bits: needs another call)\n", r->number,
		       pvp_method_letter(r->method), r->resp->entropy_cbits / 100.0, r->resp->threshold_cbits / 100.0);
	}
}

int main(int argc, char **argv)
{
	demo_t *d = calloc(1, sizeof(*d));
	pvp_client_conf_t cc = { .domain = "carrier-b.example", .io_timeout_ms = 5000 };
	pvp_client_t *cli = NULL;
	char vdir[] = "/tmp/vipr-pvp-demo-validator-XXXXXX", cmd[128];
	pvp_vcr_store_conf_t vsc = { 0 };
	pvp_vcr_store_t *vstore = NULL;
	pvp_ledger_conf_t lc = { 0 };
	pvp_ledger_t *ledger = NULL;
	pvp_sched_conf_t sc;
	pvp_sched_t *sched = NULL;
	pvp_sched_stats_t st;
	int n = 12, c, verbose = 0, verified = 0, pending_refused = 0, spoof_refused = 0, rc = 1;
	uint64_t t0;

	if (!d)
		return 1;
	d->rng = 20261121;
	while ((c = getopt(argc, argv, "n:s:v")) != -1) {
		if (c == 'n')
			n = atoi(optarg);
		else if (c == 's')
			d->rng = strtoull(optarg, NULL, 10) | 1;
		else if (c == 'v')
			verbose = 1;
		else {
			fprintf(stderr, "usage: vipr-pvp-demo [-n CALLS] [-s SEED] [-v]\n");
			return 2;
		}
	}
	if (n < 1 || n > MAX_CALLS / 2)
		n = 12;
	signal(SIGPIPE, SIG_IGN);
	vp_log_setup(verbose ? VP_LOG_INFO : VP_LOG_ERROR, stderr);
	t0 = (vp_time_wall_ms() / 3600000 - 3) * 3600000; /* three hours ago, on the hour */
	d->now_ms = t0;
	d->clock.now_ms = vp_clock_manual_now;
	d->clock.ctx = &d->now_ms;

	printf("== PVP demo: %d PSTN calls from carrier B to carrier A; a thief claims A's numbers ==\n", n);
	/* The validator's guess ledger lives in its own call-record store (§5.9). */
	vsc.path = vdir;
	if (!mkdtemp(vdir) || pvp_vcr_store_open(&vsc, &vstore) || ((lc.store = vstore), pvp_ledger_new(&lc, &ledger))) {
		fprintf(stderr, "setup failed\n");
		return 1;
	}
	cc.ledger = ledger;
	if (claimant_start(d, &d->owner, "carrier-a", "carrier-a.example", 0xa1) ||
	    claimant_start(d, &d->thief, "thief", "thief.example", 0x7e) || pvp_client_new(&cc, &cli)) {
		fprintf(stderr, "setup failed\n");
		return 1;
	}
	memset(&sc, 0, sizeof(sc));
	sc.delay_min_s = 300;
	sc.delay_max_s = 3600;
	sc.lookup = lookup;
	sc.lookup_arg = d;
	sc.validate = pvp_sched_tcp_validate;
	sc.validate_arg = cli;
	sc.prev_ticket = prev_ticket;
	sc.prev_ticket_arg = d;
	sc.route = route;
	sc.route_arg = d;
	sc.clock = &d->clock;
	sc.rng_seed = d->rng;
	if (pvp_sched_new(&sc, &sched))
		return 1;

	for (int i = 0; i < n; i++) {
		char called[VP_E164_BUFLEN], caller[VP_E164_BUFLEN];
		pvp_vcr_t o, t;
		/* Every 4th call reuses a number (accumulation), every 5th is on the hour. */
		uint64_t start = t0 + (uint64_t)i * 600000 + (uint64_t)(unif(d) * 300000);
		uint64_t dur = 10000 + (uint64_t)(-log(1 - unif(d)) * 180000);
		long offset = (long)((unif(d) - 0.5) * 40000); /* A's clock: ±20 s */
		long jit1 = (long)((unif(d) - 0.5) * 1500), jit2 = (long)((unif(d) - 0.5) * 1500);
		int no_cli = unif(d) < 0.25;
		if (i % 5 == 4)
			start = (start / 3600000 + 1) * 3600000;
		snprintf(called, sizeof(called), "+140855501%02d", i % 4 == 3 ? i - 3 : i);
		snprintf(caller, sizeof(caller), "+3312345%04d", (int)(rnd(d) % 10000));
		pvp_vcr_make(&o, PVP_DIR_ORIG, called, no_cli ? NULL : caller, start, start + dur, NULL);
		pvp_vcr_make(&t, PVP_DIR_TERM, called, no_cli ? NULL : caller, (uint64_t)((long)start + offset + jit1),
		             (uint64_t)((long)(start + dur) + offset + jit2), NULL);
		pvp_vcr_store_add(d->owner.store, &t);
		pvp_sched_add(sched, &o);
		printf("  call placed     %s -> %s  %s%3lus  A's clock %+.1fs%s\n", no_cli ? "(no caller-ID)" : caller,
		       called, "", (unsigned long)(dur / 1000), offset / 1000.0,
		       start % 3600000 == 0 ? "  (on the hour)" : "");
	}
	printf("== validations (random delay 5..60 min after each call) ==\n");
	while (pvp_sched_pending(sched)) {
		d->now_ms = pvp_sched_next_due_ms(sched);
		pvp_sched_run(sched, 64, NULL);
	}
	pvp_sched_stats(sched, &st);
	/* Join the server threads first: their counters are final after that. */
	claimant_stop(&d->owner);
	claimant_stop(&d->thief);

	printf("== border element at carrier A checks the tickets ==\n");
	for (int i = 0; i < d->routes + d->pending && i < MAX_CALLS; i++) {
		pvp_ticket_expect_t ex = { .number = d->route_num[i], .domain = "carrier-b.example", .need_routes = true };
		pvp_ticket_expect_t spoof = { .number = d->route_num[i], .domain = "spammer.example" };
		pvp_ticket_reason_t r = pvp_ticket_verify(&d->owner.keys, d->tickets[i], d->ticket_len[i],
		                                          d->now_ms / 1000, &ex, NULL);
		if (r == PVP_TR_OK)
			verified++;
		else if (r == PVP_TR_NO_ROUTES)
			pending_refused++; /* a pending ticket is for accumulation, not for calling */
		if (pvp_ticket_verify(&d->owner.keys, d->tickets[i], d->ticket_len[i], d->now_ms / 1000, &spoof,
		                      NULL) == PVP_TR_WRONG_DOMAIN)
			spoof_refused++;
		if (verbose || (r != PVP_TR_OK && r != PVP_TR_NO_ROUTES))
			printf("  ticket %-14s %s\n", d->route_num[i], pvp_ticket_reason_str(r));
	}
	printf("== summary ==\n");
	printf("  calls placed %d; routes learned %d, pending tickets %d, refused %llu\n", n, d->routes,
	       d->pending, (unsigned long long)st.refused);
	printf("  thief: %d handshakes, %d authenticated, %d routes; owner: %d handshakes, %d authenticated\n",
	       d->thief.served, d->thief.authenticated, d->thief_routes, d->owner.served, d->owner.authenticated);
	printf("  border element: %d tickets accepted for carrier-b.example, %d pending tickets refused (no-routes),\n"
	       "                  %d/%d refused when presented by another domain (wrong-domain)\n",
	       verified, pending_refused, spoof_refused, d->routes + d->pending);
	rc = d->thief.authenticated == 0 && d->thief_routes == 0 && d->routes + d->pending == n &&
	     verified == d->routes && pending_refused == d->pending && spoof_refused == n ? 0 : 1;
	printf("  result: %s\n", rc == 0 ? "every call validated against the owner, never against the thief"
	                                  : "UNEXPECTED: see above");
	pvp_sched_free(sched);
	pvp_client_free(cli);
	pvp_ledger_free(ledger);
	pvp_vcr_store_close(vstore);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", vdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", vdir);
	free(d);
	return rc;
}
