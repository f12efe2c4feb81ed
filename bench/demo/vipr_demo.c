/*
 * vipr-demo - the whole ViPR flow on one machine, the way a person wants to watch it.
 *
 * An overlay forms first: the Chord-RELOAD simulator of bench/ (real Chord
 * engines, real RELOAD codec, simulated network) with N vnodes plus one vnode
 * per carrier.  Carrier A owns +1 408 555 0100.., carrier B owns
 * +33 1 23 45 0000.., and a thief T claims half of A's block.  Each carrier
 * runs a real ViPR server (control/vipr_server: VAP server, PVP server,
 * call-record store, ticket keys, validation scheduler) in this process, whose
 * DHT is its own vnode (bench/sim_dht: Store routed and replicated to 2
 * successors, Fetch of the 3 copies with a majority vote).  Their call agents
 * are real `vipr-agent` processes speaking VAP over loopback (register,
 * VService, publish with progress, upload); the subscribed agents use the VAP
 * client library (they need the whole ticket).  A PSTN call simulator places
 * calls B -> A and A -> B and hands the call records to both sides (clock
 * offsets, jitter, calls on the hour, sometimes no caller-ID).  After a
 * shortened random delay each originating server looks the number up,
 * validates every claimant over PVP (the thief fails: it never received the
 * calls), learns the route and a ticket, and notifies its subscribed agent;
 * the called carrier's border element then checks every ticket with
 * `vipr-ticket verify`.
 *
 *   vipr-demo [--calls N] [--numbers N] [--nodes N] [--dht sim|memory] [--fast]
 *             [--delay-max S] [--seed S] [--run-dir DIR] [--agent PATH]
 *             [--ticket PATH] [--timeout S] [-v]
 *
 * Exit status 0 only if every call was validated against its owner, never
 * against the thief, every learned route reached the subscribed agent, and
 * every ticket verified (2 usage, 1 otherwise).  Logs go to the run directory.
 *
 * It lives in bench/ because its overlay is the simulator of bench/, and
 * control/ must not depend on bench/.  Until viprd exists this is the most
 * faithful composition of the parts: the daemon will put real RELOAD links
 * behind the same vsrv_dht_t and run one vipr_server per process.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/errcode.h"
#include "common/log.h"
#include "common/rand.h"
#include "control/vap/vap_client.h"
#include "control/server/vipr_server.h"
#include "bench/support/vsrv_memdht.h"
#include "bench/support/sim_dht.h"

#define MAX_CALLS 200
#define MAX_ROUTES 512

enum { CA = 0, CB = 1, CT = 2, NCAR = 3 };

typedef struct carrier {
	const char *name, *domain, *agent, *password, *watcher, *uri;
	const char *prefix;  /* publish range prefix */
	unsigned first, last, width;
	uint32_t vservice;
	vsrv_t *srv;
	char node_hex[VP_ID_HEX_LEN + 1];
	char conf_path[600], vcr_dir[600], keys_path[600];
} carrier_t;

typedef struct route_rec {
	char number[VP_E164_BUFLEN];
	char uri[VAP_MAX_URI];
	uint8_t ticket[VAP_MAX_TICKET];
	size_t ticket_len;
	int watcher;          /* carrier index whose agent got it */
} route_rec_t;

typedef struct call {
	char called[VP_E164_BUFLEN], caller[VP_E164_BUFLEN];
	uint64_t start, stop;
	long offset_ms;
	int from, to;
	bool contested;
} call_t;

typedef struct demo {
	carrier_t car[NCAR];
	vsrv_memdht_t *mem;         /* --dht memory */
	sim_dht_t *sim;             /* --dht sim (default) */
	unsigned nodes;             /* plain overlay vnodes besides the carriers */
	char run_dir[512], agent_bin[512], ticket_bin[512], agents_log[600];
	unsigned calls, numbers, delay_max, timeout_s;
	uint64_t rng;
	bool verbose;
	pthread_mutex_t out_mu;     /* stdout and the counters below */
	int owner_ok, owner_pending, owner_refused, thief_auth_failed, thief_other, thief_routes, unreachable;
	int notified, incidents;
	route_rec_t routes[MAX_ROUTES];
	int n_routes;
	call_t callv[MAX_CALLS];
	int ncalls;
	int stop_watchers;
	pthread_t watch_th[2];
	uint64_t t0_mono;
} demo_t;

static demo_t *g_demo; /* for the watchdog only */

static uint64_t rnd(demo_t *d)
{
	return vp_xorshift64s_next(&d->rng);
}

static double unif(demo_t *d)
{
	return vp_rand_unit(rnd(d));
}

static double elapsed(const demo_t *d)
{
	return (double)(vp_time_mono_ns() - d->t0_mono) / 1e9;
}

static void say(demo_t *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(demo_t *d, const char *fmt, ...)
{
	va_list ap;
	pthread_mutex_lock(&d->out_mu);
	printf("[%5.1fs] ", elapsed(d));
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	pthread_mutex_unlock(&d->out_mu);
}

static const char *who(demo_t *d, const char *node_hex)
{
	for (int i = 0; i < NCAR; i++)
		if (!strcmp(d->car[i].node_hex, node_hex))
			return d->car[i].domain;
	return node_hex;
}

static int car_of(demo_t *d, const char *server)
{
	for (int i = 0; i < NCAR; i++)
		if (!strcmp(d->car[i].name, server))
			return i;
	return -1;
}

/* ---- events from the servers (their threads) --------------------------------------- */

static void on_event(void *arg, const char *server, const vsrv_event_t *ev)
{
	demo_t *d = arg;
	int me = car_of(d, server);
	bool thief = ev->claimant && !strcmp(ev->claimant, d->car[CT].node_hex);
	if (me < 0)
		return;
	switch (ev->kind) {
	case VSRV_EV_VALIDATION:
		pthread_mutex_lock(&d->out_mu);
		if (ev->status == 0 && thief)
			d->thief_other++;
		else if (ev->status == VP_EAUTH && thief)
			d->thief_auth_failed++;
		else if (ev->status == VP_EAUTH || ev->status == VP_EPERM)
			d->owner_refused++;
		else if (ev->status)
			d->unreachable++;
		pthread_mutex_unlock(&d->out_mu);
		if (ev->status == 0)
			say(d, "  %s validates %s against %-18s OK: %s (method %c, %u handshake%s, %.1f bits)", server,
			    ev->number, who(d, ev->claimant),
			    ev->val->resp.status == PVP_ST_ROUTES    ? "routes and ticket"
			    : ev->val->resp.status == PVP_ST_PENDING ? "ticket pending"
			                                             : pvp_refusal_str(ev->val->resp.reason),
			    pvp_method_letter(ev->val->method), ev->val->handshakes, ev->val->handshakes == 1 ? "" : "s",
			    ev->val->resp.entropy_cbits / 100.0);
		else if (ev->status == VP_EAUTH)
			say(d, "  %s validates %s against %-18s FAILED: all %u TLS-SRP handshakes failed "
			       "(it holds no record of this call)",
			    server, ev->number, who(d, ev->claimant), ev->val->handshakes);
		else
			say(d, "  %s validates %s against %-18s FAILED: %s", server, ev->number, who(d, ev->claimant),
			    vp_strerror(ev->status));
		break;
	case VSRV_EV_ROUTE:
		pthread_mutex_lock(&d->out_mu);
		if (thief)
			d->thief_routes++;
		else if (ev->route->resp->status == PVP_ST_ROUTES)
			d->owner_ok++;
		else
			d->owner_pending++;
		pthread_mutex_unlock(&d->out_mu);
		if (ev->route->resp->status == PVP_ST_ROUTES)
			say(d, "  %s learned route %s -> %s (ticket %zu bytes)", server, ev->number,
			    ev->route->resp->nuris ? ev->route->resp->uris[0] : "-", ev->route->resp->ticket_len);
		else
			say(d, "  %s: ticket pending for %s (%.1f of %.1f bits: the next call will add to it)", server,
			    ev->number, ev->route->resp->entropy_cbits / 100.0, ev->route->resp->threshold_cbits / 100.0);
		break;
	case VSRV_EV_INCIDENT:
		pthread_mutex_lock(&d->out_mu);
		d->incidents++;
		pthread_mutex_unlock(&d->out_mu);
		say(d, "  %s looks up %s: overlay INCIDENT: %s", server, ev->number ? ev->number : "-", ev->text);
		break;
	default:
		break;
	}
}

/* ---- child processes (vipr-agent, vipr-ticket) ------------------------------------------ */

static pid_t g_child = -1; /* the one child running, for the watchdog */

/*
 * Run argv with stdout+stderr appended to the agents log; wait up to timeout_s *without progress*: each time
 * \p tick reports progress (a 1,000,000-number publish takes as long as the overlay needs, but one that
 * stalls is stopped) the limit starts again, and so does the run's watchdog.  Returns exit status or -1.
 */
static int run_child(demo_t *d, char *const argv[], unsigned timeout_s, bool (*tick)(demo_t *, void *), void *arg)
{
	int fd = open(d->agents_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644), status = 0;
	uint64_t end = vp_time_mono_ns() + (uint64_t)timeout_s * 1000000000ull;
	pid_t pid;
	if (fd < 0)
		return -1;
	dprintf(fd, "$");
	for (int i = 0; argv[i]; i++)
		dprintf(fd, " %s", argv[i]);
	dprintf(fd, "\n");
	pid = fork();
	if (pid < 0) {
		close(fd);
		return -1;
	}
	if (pid == 0) {
		dup2(fd, 1);
		dup2(fd, 2);
		execv(argv[0], argv);
		_exit(127);
	}
	close(fd);
	g_child = pid;
	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			break;
		if (r < 0 && errno != EINTR) {
			status = -1;
			break;
		}
		if (vp_time_mono_ns() > end) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			say(d, "  %s: no progress within %u s, killed", argv[0], timeout_s);
			g_child = -1;
			return -1;
		}
		if (tick && tick(d, arg)) {
			end = vp_time_mono_ns() + (uint64_t)timeout_s * 1000000000ull;
			alarm(d->timeout_s); /* the watchdog too: the run is making progress */
		}
		usleep(20000);
	}
	g_child = -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int agent_cmd(demo_t *d, int c, const char *cmd, const char *a1, const char *a2, const char *a3,
                     const char *a4, bool (*tick)(demo_t *, void *), void *arg)
{
	char server[64];
	char *argv[20];
	int n = 0;
	snprintf(server, sizeof(server), "127.0.0.1:%u", vsrv_vap_port(d->car[c].srv));
	argv[n++] = d->agent_bin;
	argv[n++] = (char *)"-s";
	argv[n++] = server;
	argv[n++] = (char *)"-u";
	argv[n++] = (char *)d->car[c].agent;
	argv[n++] = (char *)"-p";
	argv[n++] = (char *)d->car[c].password;
	/* The agent waits for each answer as long as it takes (a Publish of 65,536 numbers is answered when the
	 * overlay stored them all); run_child stops it when nothing progresses. */
	argv[n++] = (char *)"--timeout";
	argv[n++] = (char *)"3600000";
	argv[n++] = (char *)cmd;
	if (a1)
		argv[n++] = (char *)a1;
	if (a2)
		argv[n++] = (char *)a2;
	if (a3)
		argv[n++] = (char *)a3;
	if (a4)
		argv[n++] = (char *)a4;
	argv[n] = NULL;
	return run_child(d, argv, 30, tick, arg);
}

typedef struct progress {
	int c;
	uint64_t total, last_shown, last_seen;
} progress_t;

/* Progress of a publish: true when more stores completed since the last call. */
static bool publish_tick(demo_t *d, void *arg)
{
	progress_t *p = arg;
	vsrv_stats_t st;
	bool moved;
	vsrv_get_stats(d->car[p->c].srv, &st);
	moved = st.stores_ok > p->last_seen;
	p->last_seen = st.stores_ok;
	/* Show every quarter as the server completes the DHT stores. */
	if (st.stores_ok >= p->last_shown + (p->total + 3) / 4 && st.stores_ok < p->total) {
		p->last_shown = st.stores_ok;
		say(d, "    %s: %" PRIu64 "/%" PRIu64 " numbers stored in the DHT", d->car[p->c].name, st.stores_ok,
		    p->total);
	}
	return moved;
}

/* ---- the subscribed agents (VAP client library, so the whole ticket is at hand) ---------- */

typedef struct watch_arg {
	demo_t *d;
	int c;
	vap_client_t *cl;
} watch_arg_t;

static void *watcher(void *arg)
{
	watch_arg_t *w = arg;
	demo_t *d = w->d;
	while (!__atomic_load_n(&d->stop_watchers, __ATOMIC_ACQUIRE)) {
		vap_route_t r;
		int rc = vap_client_wait_notify(w->cl, &r, 200);
		if (rc == VP_ETIMEOUT)
			continue;
		if (rc) {
			say(d, "  %s's agent %s: connection lost (%s)", d->car[w->c].name, d->car[w->c].watcher,
			    vp_strerror(rc));
			break;
		}
		pthread_mutex_lock(&d->out_mu);
		d->notified++;
		if (d->n_routes < MAX_ROUTES) {
			route_rec_t *rr = &d->routes[d->n_routes++];
			snprintf(rr->number, sizeof(rr->number), "%s", r.number);
			snprintf(rr->uri, sizeof(rr->uri), "%s", r.n_uris ? r.uris[0] : "-");
			memcpy(rr->ticket, r.ticket, r.ticket_len);
			rr->ticket_len = r.ticket_len;
			rr->watcher = w->c;
		}
		pthread_mutex_unlock(&d->out_mu);
		say(d, "  %s's agent %s received Notify: %s -> %s (expires in %u s)", d->car[w->c].name,
		    d->car[w->c].watcher, r.number, r.n_uris ? r.uris[0] : "-", r.expires);
	}
	return NULL;
}

/* ---- set-up ------------------------------------------------------------------------ */

static int write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	int rc;
	if (!f)
		return -1;
	rc = fputs(text, f) < 0 ? -1 : 0;
	return fclose(f) || rc ? -1 : 0;
}

static int carrier_start(demo_t *d, int c, uint32_t seed)
{
	carrier_t *k = &d->car[c];
	vsrv_conf_t conf;
	vsrv_dht_t iface;
	vp_conf_err_t e;
	char text[2048];
	int rc;
	snprintf(k->vcr_dir, sizeof(k->vcr_dir), "%s/%s-vcr", d->run_dir, k->name);
	snprintf(k->conf_path, sizeof(k->conf_path), "%s/%s.conf", d->run_dir, k->name);
	snprintf(text, sizeof(text),
	         "# carrier %s of the demo (written by vipr-demo; defaults: control/vipr_server.c)\n"
	         "[server]\nname = %s\ndomain = %s\n"
	         "[vap]\nbind = 127.0.0.1\nport = 0\nagents = %s:%s, %s:%s\ntenants = %s:%s\n"
	         "[pvp]\nbind = 127.0.0.1\nport = 0\nworkers = 2\nvcr_dir = %s\n%s%s%s"
	         "# generous handshake limits: the demo's thief is probed for every contested call\n"
	         "peer_fail_limit = 10000\nnumber_fail_limit = 1000\n"
	         "[scheduler]\ndelay_min = 1s\ndelay_max = %us\nbackoff = 2s\nmax_attempts = 3\n"
	         "attach_timeout = 3s\nfetch_timeout = 5s\nseed = %u\n",
	         k->name, k->name, k->domain, k->agent, k->password, k->watcher, k->password, k->watcher, k->agent,
	         k->vcr_dir,
	         k->keys_path[0] ? "ticket_keys = " : "", k->keys_path[0] ? k->keys_path : "",
	         k->keys_path[0] ? "\n" : "", d->delay_max, seed);
	if (write_file(k->conf_path, text))
		return VP_EIO;
	vsrv_conf_default(&conf);
	if ((rc = vsrv_conf_load(&conf, k->conf_path, &e))) {
		fprintf(stderr, "vipr-demo: %s line %d: %s\n", k->conf_path, e.line, e.msg);
		return rc;
	}
	if (d->sim) {
		/* The carrier's server is the overlay vnode the simulator gave it. */
		conf.node_id = *sim_dht_carrier_id(d->sim, (unsigned)c);
		sim_dht_iface(d->sim, (unsigned)c, &iface);
	} else {
		vsrv_memdht_iface(d->mem, &iface);
	}
	if ((rc = vsrv_new(&conf, &iface, NULL, on_event, d, &k->srv)))
		return rc;
	vp_id_to_hex(vsrv_node_id(k->srv), k->node_hex);
	rc = d->sim ? sim_dht_set_endpoint(d->sim, (unsigned)c, "127.0.0.1", vsrv_pvp_port(k->srv))
	            : vsrv_memdht_add_node(d->mem, vsrv_node_id(k->srv), "127.0.0.1", vsrv_pvp_port(k->srv));
	if (rc)
		return rc;
	if ((rc = vsrv_start(k->srv)))
		return rc;
	say(d, "  carrier %s  %-18s VAP 127.0.0.1:%-5u PVP 127.0.0.1:%-5u node %.8s…  config %s", k->name, k->domain,
	    vsrv_vap_port(k->srv), vsrv_pvp_port(k->srv), k->node_hex, k->conf_path);
	return 0;
}

static int publish(demo_t *d, int c, unsigned first, unsigned last, const char *why)
{
	carrier_t *k = &d->car[c];
	char range[64];
	progress_t p = { .c = c, .total = last - first + 1 };
	vsrv_stats_t before, after;
	uint64_t t0 = vp_time_mono_ns();
	int rc;
	vsrv_get_stats(k->srv, &before);
	p.total += before.stores_ok;
	p.last_shown = p.last_seen = before.stores_ok;
	snprintf(range, sizeof(range), "%s[%0*u-%0*u]", k->prefix, (int)k->width, first, (int)k->width, last);
	say(d, "  %s (%s): vipr-agent publish %s  (%u numbers%s)", k->name, k->agent, range, last - first + 1, why);
	rc = agent_cmd(d, c, "publish", range, NULL, NULL, NULL, publish_tick, &p);
	vsrv_get_stats(k->srv, &after);
	say(d, "    %s: %" PRIu64 "/%u numbers stored in the DHT in %.2f s%s", k->name, after.stores_ok - before.stores_ok,
	    last - first + 1, (double)(vp_time_mono_ns() - t0) / 1e9, rc ? "  -- vipr-agent FAILED" : "");
	return rc || after.stores_ok - before.stores_ok != last - first + 1 ? -1 : 0;
}

/* ---- the PSTN call simulator ------------------------------------------------------------ */

/* Calls placed so far (the one being made excluded) to \p number. */
static int calls_to(const demo_t *d, const char *number)
{
	int n = 0;
	for (int k = 0; k < d->ncalls - 1; k++)
		n += !strcmp(d->callv[k].called, number);
	return n;
}

static void make_calls(demo_t *d, unsigned n_ab)
{
	uint64_t now = vp_time_wall_ms();
	unsigned n = d->calls;
	for (unsigned i = 0; i < n && d->ncalls < MAX_CALLS; i++) {
		call_t *c = &d->callv[d->ncalls++];
		bool ba = i >= n_ab; /* first n_ab calls A -> B, the rest B -> A */
		carrier_t *from = &d->car[ba ? CB : CA], *to = &d->car[ba ? CA : CB];
		unsigned span = to->last - to->first + 1, idx;
		uint64_t dur = 8000 + (uint64_t)(-log(1 - unif(d)) * 90000);
		/*
		 * Calls come in pairs to one number: a single call rarely proves the
		 * threshold's 16 bits, the second one accumulates with the first ticket
		 * (docs/protocol.md §5.6).  At most two calls per number: PVP tries two
		 * candidate records per number and hour (§5.4).
		 */
		c->from = ba ? CB : CA;
		c->to = ba ? CA : CB;
		idx = UINT32_MAX;
		if (d->ncalls >= 2 && d->callv[d->ncalls - 2].to == c->to && calls_to(d, d->callv[d->ncalls - 2].called) == 1 &&
		    (ba ? i - n_ab : i) % 2 == 1)
			idx = (unsigned)(strtoul(d->callv[d->ncalls - 2].called + strlen(to->prefix), NULL, 10) - to->first);
		for (int tries = 0; idx == UINT32_MAX && tries < 100; tries++) {
			char num[VP_E164_BUFLEN];
			unsigned cand = (unsigned)(rnd(d) % span);
			snprintf(num, sizeof(num), "%s%0*u", to->prefix, (int)to->width, to->first + cand);
			if (calls_to(d, num) == 0 || tries == 99)
				idx = cand;
		}
		snprintf(c->called, sizeof(c->called), "%s%0*u", to->prefix, (int)to->width, to->first + idx);
		if (unif(d) < 0.2)
			c->caller[0] = '\0'; /* no caller-ID delivered */
		else
			snprintf(c->caller, sizeof(c->caller), "%s%0*u", from->prefix, (int)from->width,
			         from->first + (unsigned)(rnd(d) % (from->last - from->first + 1)));
		/* Calls that just ended (0.5..2.5 s ago); every 5th started exactly on the hour. */
		c->stop = now - 500 - (uint64_t)(unif(d) * 2000);
		c->start = c->stop - dur;
		if (i % 5 == 4) {
			uint64_t h = (now - dur - 2000) / 3600000 * 3600000;
			c->start = h;
			c->stop = h + dur;
		}
		/* The terminating switch's clock: up to +-20 s off, plus per-call jitter. */
		c->offset_ms = (long)((unif(d) - 0.5) * 40000);
		c->contested = ba && to->first + idx >= d->car[CT].first && to->first + idx <= d->car[CT].last;
	}
}

static int write_csvs(demo_t *d, char paths[NCAR][2][600])
{
	FILE *f[2][2];
	for (int c = 0; c < 2; c++) {
		snprintf(paths[c][0], 600, "%s/calls-%s-orig.csv", d->run_dir, d->car[c].name);
		snprintf(paths[c][1], 600, "%s/calls-%s-term.csv", d->run_dir, d->car[c].name);
		f[c][0] = fopen(paths[c][0], "w");
		f[c][1] = fopen(paths[c][1], "w");
		if (!f[c][0] || !f[c][1])
			return -1;
		fprintf(f[c][0], "# direction,called,caller,start_ms,stop_ms  (carrier %s's switch)\n", d->car[c].name);
		fprintf(f[c][1], "# direction,called,caller,start_ms,stop_ms  (carrier %s's switch)\n", d->car[c].name);
	}
	for (int i = 0; i < d->ncalls; i++) {
		call_t *c = &d->callv[i];
		/*
		 * Signalling jitter per event, +-0.75 s: the two sides' durations then differ
		 * by under 1.5 s, inside PVP's duration tolerance of +-2 s (a 4 s bucket
		 * centred on the client's millisecond duration, docs/protocol.md §5.3).
		 * Larger jitter makes some owner validations fail by design.
		 */
		long j1 = (long)((unif(d) - 0.5) * 1500), j2 = (long)((unif(d) - 0.5) * 1500);
		fprintf(f[c->from][0], "orig,%s,%s,%" PRIu64 ",%" PRIu64 "\n", c->called, c->caller, c->start, c->stop);
		fprintf(f[c->to][1], "term,%s,%s,%" PRIu64 ",%" PRIu64 "\n", c->called, c->caller,
		        (uint64_t)((long)c->start + c->offset_ms + j1), (uint64_t)((long)c->stop + c->offset_ms + j2));
	}
	for (int c = 0; c < 2; c++)
		if (fclose(f[c][0]) | fclose(f[c][1]))
			return -1;
	return 0;
}

/* ---- border element: vipr-ticket verify -------------------------------------------------- */

static int ticket_check(demo_t *d, const route_rec_t *r, const char *domain)
{
	char b64[PVP_TICKET_B64_MAX + 8];
	const carrier_t *owner = &d->car[r->watcher == CB ? CA : CB];
	char *argv[12];
	int n = 0;
	if (pvp_b64url_encode(r->ticket, r->ticket_len, b64, sizeof(b64)))
		return -1;
	argv[n++] = d->ticket_bin;
	argv[n++] = (char *)"verify";
	argv[n++] = (char *)"--key";
	argv[n++] = (char *)owner->keys_path;
	argv[n++] = (char *)"--number";
	argv[n++] = (char *)r->number;
	argv[n++] = (char *)"--domain";
	argv[n++] = (char *)domain;
	argv[n++] = b64;
	argv[n] = NULL;
	return run_child(d, argv, 10, NULL, NULL);
}

static int genkey(demo_t *d, carrier_t *k, unsigned epoch)
{
	char ep[16], *argv[5];
	int fd, rc;
	pid_t pid;
	snprintf(k->keys_path, sizeof(k->keys_path), "%s/%s-ticket.keys", d->run_dir, k->name);
	snprintf(ep, sizeof(ep), "%u", epoch);
	argv[0] = d->ticket_bin;
	argv[1] = (char *)"genkey";
	argv[2] = (char *)"--epoch";
	argv[3] = ep;
	argv[4] = NULL;
	fd = open(k->keys_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		dup2(fd, 1);
		execv(argv[0], argv);
		_exit(127);
	}
	close(fd);
	if (pid < 0 || waitpid(pid, &rc, 0) != pid)
		return -1;
	return WIFEXITED(rc) && WEXITSTATUS(rc) == 0 ? 0 : -1;
}

/* ---- main ------------------------------------------------------------------------------- */

static void watchdog(int sig)
{
	static const char msg[] = "\nvipr-demo: the run took longer than its time limit; stopping (FAILED)\n";
	(void)sig;
	if (write(2, msg, sizeof(msg) - 1) < 0) {
		/* nothing more to do */
	}
	if (g_child > 0)
		kill(g_child, SIGKILL);
	_exit(1);
}

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: vipr-demo [options]\n"
	        "  --calls N       PSTN calls to simulate, both directions (default 12, 2..%d)\n"
	        "  --nodes N       overlay vnodes besides the 3 carriers' (default 20, 0..2000)\n"
	        "  --dht sim|memory  the Chord overlay simulator (default) or a plain in-process table\n"
	        "  --fast          overlay operations run ahead of real time (no simulated latency waited)\n"
	        "  --no-rogue      no rogue vnode (by default the node responsible for one called number\n"
	        "                  drops its copy, and the 3-copy majority vote has to outvote it)\n"
	        "  --numbers N     numbers per carrier (default 200, 10..1000000)\n"
	        "  --delay-max S   validation delay after a call: 1..S seconds (default 6)\n"
	        "  --seed S        random seed (default: time)\n"
	        "  --run-dir DIR   where logs, configs and call records go (default ./run/demo-<time>)\n"
	        "  --agent PATH    vipr-agent binary (default: next to this program, ../control/vipr-agent)\n"
	        "  --ticket PATH   vipr-ticket binary (default: ../pvp/vipr-ticket)\n"
	        "  --timeout S     longest time without progress (default 100; publishing and validating reset it)\n"
	        "  --help-config[=markdown]  the ViPR servers' configuration options (A.conf, ...) and exit\n"
	        "  -v              debug logs in the run directory\n",
	        MAX_CALLS);
}

static void default_bin(char *out, size_t cap, const char *argv0, const char *rel)
{
	const char *slash = strrchr(argv0, '/');
	if (slash)
		snprintf(out, cap, "%.*s/%s", (int)(slash - argv0), argv0, rel);
	else
		snprintf(out, cap, "./%s", rel);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "calls", required_argument, NULL, 'n' },  { "numbers", required_argument, NULL, 'N' },
		{ "delay-max", required_argument, NULL, 'D' }, { "seed", required_argument, NULL, 's' },
		{ "run-dir", required_argument, NULL, 'r' }, { "agent", required_argument, NULL, 'a' },
		{ "ticket", required_argument, NULL, 't' }, { "timeout", required_argument, NULL, 'T' },
		{ "nodes", required_argument, NULL, 'o' },  { "dht", required_argument, NULL, 'd' },
		{ "fast", no_argument, NULL, 'F' },         { "no-rogue", no_argument, NULL, 'R' },
		{ "help", no_argument, NULL, 'h' },          { "help-config", optional_argument, NULL, 'H' },
		{ NULL, 0, NULL, 0 },
	};
	demo_t *d = calloc(1, sizeof(*d));
	char csv[NCAR][2][600], logpath[600];
	watch_arg_t wa[2] = { { 0 }, { 0 } };
	FILE *logf = NULL;
	int o, rc = 1, verified = 0, forged_refused = 0, ticket_failed = 0;
	bool use_sim = true, fast = false, rogue = true;
	int rogue_node = -1;
	char rogue_number[VP_E164_BUFLEN] = "";
	uint64_t seed;
	sim_dht_stats_t ost;
	unsigned n_ab, expect_ba = 0, expect_ab = 0, expect_contested = 0;
	vsrv_stats_t st[NCAR];

	if (!d)
		return 1;
	g_demo = d;
	d->calls = 12;
	d->numbers = 200;
	d->delay_max = 6;
	d->timeout_s = 100;
	d->nodes = 20;
	seed = (uint64_t)time(NULL) % 100000;
	pthread_mutex_init(&d->out_mu, NULL);
	default_bin(d->agent_bin, sizeof(d->agent_bin), argv[0], "../control/vipr-agent");
	default_bin(d->ticket_bin, sizeof(d->ticket_bin), argv[0], "../pvp/vipr-ticket");
	while ((o = getopt_long(argc, argv, "vh", lo, NULL)) != -1) {
		switch (o) {
		case 'n': d->calls = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'N': d->numbers = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'D': d->delay_max = (unsigned)strtoul(optarg, NULL, 10); break;
		case 's': seed = strtoull(optarg, NULL, 10); break;
		case 'r': snprintf(d->run_dir, sizeof(d->run_dir), "%s", optarg); break;
		case 'a': snprintf(d->agent_bin, sizeof(d->agent_bin), "%s", optarg); break;
		case 't': snprintf(d->ticket_bin, sizeof(d->ticket_bin), "%s", optarg); break;
		case 'T': d->timeout_s = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'v': d->verbose = true; break;
		case 'F': fast = true; break;
		case 'R': rogue = false; break;
		case 'o': d->nodes = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'd':
			if (!strcmp(optarg, "memory"))
				use_sim = false;
			else if (strcmp(optarg, "sim")) {
				usage(stderr);
				return 2;
			}
			break;
		case 'h': usage(stdout); return 0;
		case 'H': {
			size_t nopts;
			const vp_conf_opt_t *opts = vsrv_conf_schema(&nopts);
			if (optarg && strcmp(optarg, "markdown")) {
				usage(stderr);
				return 2;
			}
			if (optarg)
				vp_conf_schema_markdown(stdout, opts, nopts);
			else
				vp_conf_schema_help(stdout, opts, nopts);
			return 0;
		}
		default: usage(stderr); return 2;
		}
	}
	d->rng = seed * 2 + 1;
	if (d->calls < 2 || d->calls > MAX_CALLS || d->numbers < 10 || d->numbers > 1000000 || d->delay_max < 1 ||
	    d->delay_max > 60 || d->timeout_s < 10 || d->timeout_s > 600 || d->nodes > 2000) {
		usage(stderr);
		return 2;
	}
	if (d->calls > d->numbers) {
		fprintf(stderr, "vipr-demo: --calls must not exceed --numbers (at most two calls per number)\n");
		return 2;
	}
	if (access(d->agent_bin, X_OK) || access(d->ticket_bin, X_OK)) {
		fprintf(stderr, "vipr-demo: %s or %s not found (build first, or use --agent/--ticket)\n", d->agent_bin,
		        d->ticket_bin);
		return 2;
	}
	if (!d->run_dir[0]) {
		time_t t = time(NULL);
		struct tm tm;
		char ts[32];
		gmtime_r(&t, &tm);
		strftime(ts, sizeof(ts), "%Y%m%d-%H%M%S", &tm);
		mkdir("run", 0755);
		snprintf(d->run_dir, sizeof(d->run_dir), "run/demo-%s", ts);
	}
	if (mkdir(d->run_dir, 0755) && errno != EEXIST) {
		fprintf(stderr, "vipr-demo: cannot create %s: %s\n", d->run_dir, strerror(errno));
		return 2;
	}
	snprintf(logpath, sizeof(logpath), "%s/viprd.log", d->run_dir);
	snprintf(d->agents_log, sizeof(d->agents_log), "%s/agents.log", d->run_dir);
	if (!(logf = fopen(logpath, "w"))) {
		fprintf(stderr, "vipr-demo: cannot write %s\n", logpath);
		return 2;
	}
	setvbuf(logf, NULL, _IOLBF, 0);
	vp_log_setup(d->verbose ? VP_LOG_DEBUG : VP_LOG_INFO, logf);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGALRM, watchdog);
	alarm(d->timeout_s);
	d->t0_mono = vp_time_mono_ns();

	d->car[CA] = (carrier_t){ .name = "A", .domain = "carrier-a.example", .agent = "agent-a", .password = "pw-a",
		                  .watcher = "watcher-a", .uri = "sips:pbx@carrier-a.example", .prefix = "+1408",
		                  .first = 5550100, .width = 7, .vservice = 1 };
	d->car[CB] = (carrier_t){ .name = "B", .domain = "carrier-b.example", .agent = "agent-b", .password = "pw-b",
		                  .watcher = "watcher-b", .uri = "sip:sbc@carrier-b.example", .prefix = "+3312",
		                  .first = 3450000, .width = 7, .vservice = 1 };
	d->car[CT] = (carrier_t){ .name = "T", .domain = "thief.example", .agent = "agent-t", .password = "pw-t",
		                  .watcher = "watcher-t", .uri = "sip:gw@thief.example", .prefix = "+1408",
		                  .first = 5550100, .width = 7, .vservice = 1 };
	d->car[CA].last = d->car[CA].first + d->numbers - 1;
	d->car[CB].last = d->car[CB].first + d->numbers - 1;
	d->car[CT].last = d->car[CT].first + d->numbers / 2 - 1; /* the thief claims half of A's block */

	printf("== ViPR demo: carriers A and B and a thief T on one machine (loopback only) ==\n");
	printf("   run directory: %s   seed: %" PRIu64 " (--seed to replay the same calls)\n", d->run_dir, seed);
	if (use_sim) {
		sim_dht_conf_t oc = { .seed = d->rng, .plain_nodes = d->nodes, .carriers = NCAR,
			              .pace = fast ? SIM_DHT_PACE_FAST : SIM_DHT_PACE_REAL };
		sim_dht_formed_t f;
		int orc;
		say(d, "[overlay] Chord-RELOAD overlay simulator: %u vnodes + one per carrier, real Chord engines and",
		    d->nodes);
		say(d, "          RELOAD codec over a simulated network (20 ms + log-normal latency), in this process;");
		say(d, "          simulated time %s", fast ? "runs ahead of real time while operations are in flight (--fast)"
		                                            : "follows real time (operations take their simulated latency)");
		if ((orc = sim_dht_start(&oc, &d->sim, &f))) {
			say(d, "  the overlay did not form: %s", vp_strerror(orc));
			goto out;
		}
		say(d, "overlay formed: %u nodes (%.1f s of simulated time in %.2f s, %" PRIu64 " RELOAD messages)",
		    f.nodes, f.sim_ms / 1000.0, f.wall_s, f.messages);
	} else {
		say(d, "[overlay] DHT: in-process registration table shared by the carriers' servers (--dht memory)");
		if (vsrv_memdht_new(&d->mem))
			goto out;
		say(d, "overlay formed: %d nodes", NCAR);
	}

	say(d, "[carriers] each runs a ViPR server: VAP for its call agent, PVP for validations");
	if (genkey(d, &d->car[CA], 1) || genkey(d, &d->car[CB], 7)) {
		fprintf(stderr, "vipr-demo: vipr-ticket genkey failed\n");
		goto out;
	}
	for (int c = 0; c < NCAR; c++)
		if (carrier_start(d, c, (uint32_t)(rnd(d) % 1000000) + 1)) {
			fprintf(stderr, "vipr-demo: carrier %s did not start (see %s)\n", d->car[c].name, logpath);
			goto out;
		}

	say(d, "[agents] call agents are vipr-agent processes speaking VAP (output in %s)", d->agents_log);
	for (int c = 0; c < NCAR; c++) {
		if (agent_cmd(d, c, "register", NULL, NULL, NULL, NULL, NULL, NULL) ||
		    agent_cmd(d, c, "vservice", "--uri", d->car[c].uri, NULL, NULL, NULL, NULL)) {
			say(d, "  %s: vipr-agent register/vservice FAILED (see %s)", d->car[c].name, d->agents_log);
			goto out;
		}
		say(d, "  %s (%s): registered; VService %u published with SIP URI %s", d->car[c].name, d->car[c].agent,
		    d->car[c].vservice, d->car[c].uri);
	}
	say(d, "[publish] numbers go into the DHT as VIPR-REGISTRATION entries, one per number");
	if (publish(d, CA, d->car[CA].first, d->car[CA].last, "") || publish(d, CB, d->car[CB].first, d->car[CB].last, "") ||
	    publish(d, CT, d->car[CT].first, d->car[CT].last, ": A's numbers, without A's calls"))
		goto out;

	/* The subscribed agents: B's learns routes to A, A's learns routes to B. */
	for (int i = 0; i < 2; i++) {
		int c = i == 0 ? CB : CA;
		vap_client_conf_t cc = { .host = "127.0.0.1", .port = vsrv_vap_port(d->car[c].srv),
			                 .username = d->car[c].watcher, .password = d->car[c].password,
			                 .timeout_ms = 10000 };
		wa[i].d = d;
		wa[i].c = c;
		wa[i].cl = NULL;
		if (vap_client_connect(&cc, &wa[i].cl) || vap_client_subscribe(wa[i].cl, d->car[c].vservice, 600) ||
		    pthread_create(&d->watch_th[i], NULL, watcher, &wa[i])) {
			say(d, "  %s's agent %s could not subscribe", d->car[c].name, d->car[c].watcher);
			goto out;
		}
		say(d, "  %s's agent %s subscribed to VService %u (waits for Notify)", d->car[c].name, d->car[c].watcher,
		    d->car[c].vservice);
	}

	n_ab = d->calls / 3;
	make_calls(d, n_ab);
	say(d, "[calls] PSTN call simulator: %u calls A -> B, %u calls B -> A", n_ab, d->calls - n_ab);
	for (int i = 0; i < d->ncalls; i++) {
		call_t *c = &d->callv[i];
		char when[16];
		time_t ts = (time_t)(c->start / 1000);
		struct tm tm;
		gmtime_r(&ts, &tm);
		strftime(when, sizeof(when), "%H:%M:%S", &tm);
		say(d, "  call %2d  %s -> %s  %-16s -> %s  at %s UTC, %3" PRIu64 " s; %s's clock %+5.1f s%s%s", i + 1,
		    d->car[c->from].name, d->car[c->to].name, c->caller[0] ? c->caller : "(no caller-ID)", c->called,
		    when, (c->stop - c->start) / 1000, d->car[c->to].name, c->offset_ms / 1000.0,
		    c->start % 3600000 == 0 ? "  (on the hour)" : "", c->contested ? "  [number also claimed by T]" : "");
		if (c->to == CA) {
			expect_ba++;
			expect_contested += c->contested;
		} else {
			expect_ab++;
		}
	}
	if (write_csvs(d, csv))
		goto out;
	if (d->sim && rogue) {
		/* Seed 001 §B.4: a rogue (or damaged) responsible node must not hide a number's claims. */
		for (int i = 0; i < d->ncalls && !rogue_number[0]; i++)
			if (d->callv[i].to == CA)
				snprintf(rogue_number, sizeof(rogue_number), "%s", d->callv[i].called);
		rogue_node = sim_dht_forget(d->sim, rogue_number);
		if (rogue_node < 0) {
			say(d, "  could not make a rogue vnode: %s", vp_strerror(rogue_node));
			goto out;
		}
		say(d, "[rogue] vnode #%d, responsible for %s, drops its copy of the number's claims "
		       "(its 2 replicas keep theirs)", rogue_node, rogue_number);
	}
	say(d, "[upload] each switch hands its call records to its agent; vipr-agent uploads them over VAP");
	/* Terminating records first: the receiving side's evidence is in place when validation starts. */
	for (int c = 0; c < 2; c++)
		if (agent_cmd(d, c, "upload", csv[c][1], NULL, NULL, NULL, NULL, NULL)) {
			say(d, "  %s: upload FAILED (see %s)", d->car[c].name, d->agents_log);
			goto out;
		}
	say(d, "  terminating records uploaded (%s, %s); now the originating ones", csv[CA][1], csv[CB][1]);
	say(d, "[validation] each originating record is validated 1..%u s after its call (shortened from 5 min..2 h)",
	    d->delay_max);
	for (int c = 0; c < 2; c++)
		if (agent_cmd(d, c, "upload", csv[c][0], NULL, NULL, NULL, NULL, NULL)) {
			say(d, "  %s: upload FAILED (see %s)", d->car[c].name, d->agents_log);
			goto out;
		}

	/* Wait until every originating record has been through the scheduler and every route notified; give up
	 * only when nothing moved for the --timeout (less 10 s to report). */
	uint64_t last_sum = 0, last_move = vp_time_mono_ns();
	for (;;) {
		uint64_t queued = 0, scheduled = 0, now = vp_time_mono_ns();
		int learned, notified;
		for (int c = 0; c < NCAR; c++) {
			vsrv_get_stats(d->car[c].srv, &st[c]);
			queued += st[c].sched_queued;
			scheduled += st[c].sched_scheduled;
		}
		pthread_mutex_lock(&d->out_mu);
		learned = d->owner_ok;
		notified = d->notified;
		pthread_mutex_unlock(&d->out_mu);
		if (scheduled == (uint64_t)d->ncalls && queued == 0 && notified >= learned)
			break;
		if (scheduled + (uint64_t)learned + (uint64_t)notified != last_sum) {
			last_sum = scheduled + (uint64_t)learned + (uint64_t)notified;
			last_move = now;
			alarm(d->timeout_s);
		}
		if ((now - last_move) / 1000000000ull > d->timeout_s - 10) {
			say(d, "  nothing moved for %u s (%.0f s in all): %" PRIu64 " of %d records scheduled, %" PRIu64
			       " queued, %d of %d routes notified -- giving up", d->timeout_s - 10, elapsed(d), scheduled, d->ncalls, queued,
			    notified, learned);
			break;
		}
		usleep(50000);
	}
	usleep(200000); /* let the last Notify lines print */
	__atomic_store_n(&d->stop_watchers, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < 2; i++) {
		pthread_join(d->watch_th[i], NULL);
		d->watch_th[i] = 0;
	}

	say(d, "[border] the called carrier's border element checks each ticket (vipr-ticket verify)");
	for (int i = 0; i < d->n_routes; i++) {
		route_rec_t *r = &d->routes[i];
		const char *dom = d->car[r->watcher].domain;
		int v = ticket_check(d, r, dom), f = ticket_check(d, r, "spammer.example");
		verified += v == 0;
		ticket_failed += v != 0;
		forged_refused += f == 1;
		say(d, "  ticket for %s presented by %s: %s; presented by spammer.example: %s", r->number, dom,
		    v == 0 ? "accepted" : "REFUSED", f == 1 ? "refused (wrong-domain)" : "ACCEPTED?");
	}

	for (int c = 0; c < NCAR; c++)
		vsrv_get_stats(d->car[c].srv, &st[c]);
	printf("\n== summary ==\n");
	if (d->sim) {
		sim_dht_get_stats(d->sim, &ost);
		printf("  overlay: %u nodes (Chord-RELOAD simulator); %" PRIu64 " stores, %" PRIu64
		       " fetches (3 copies each, majority vote), %" PRIu64 " incidents, %" PRIu64 " RELOAD messages\n",
		       d->nodes + NCAR, ost.stores, ost.fetches, ost.incidents, ost.messages);
	} else {
		printf("  overlay: %d nodes (in-process DHT)\n", NCAR);
	}
	printf("  numbers published: A %u, B %u, thief %u (claiming A's)\n", d->numbers, d->numbers,
	       d->car[CT].last - d->car[CT].first + 1);
	if (rogue_node >= 0)
		printf("  rogue vnode #%d (responsible for %s): %d lookup incident%s logged, its claims still found "
		       "by majority vote\n", rogue_node, rogue_number, d->incidents, d->incidents == 1 ? "" : "s");
	printf("  calls: %u B -> A (%u to numbers the thief claims), %u A -> B\n", expect_ba, expect_contested, expect_ab);
	printf("  validations against owners: %d routes learned, %d tickets pending (entropy below threshold), %d refused\n",
	       d->owner_ok, d->owner_pending, d->owner_refused);
	printf("  thief: %d validations failed, %d succeeded; its PVP server authenticated %" PRIu64
	       " of %" PRIu64 " handshakes\n",
	       d->thief_auth_failed, d->thief_other, st[CT].pvp_authenticated, st[CT].pvp_served);
	printf("  Notify delivered to subscribed agents: %d; tickets verified by the border element: %d/%d; "
	       "forged domain refused %d/%d\n",
	       d->notified, verified, d->n_routes, forged_refused, d->n_routes);
	rc = d->owner_ok + d->owner_pending == (int)d->ncalls && d->owner_ok > 0 && d->owner_refused == 0 &&
	     d->thief_other == 0 && d->thief_routes == 0 && st[CT].pvp_authenticated == 0 &&
	     d->thief_auth_failed == (int)expect_contested && d->unreachable == 0 && d->notified == d->owner_ok &&
	     verified == d->n_routes && ticket_failed == 0 && forged_refused == d->n_routes &&
	     (rogue_node < 0 || d->incidents >= 1) ? 0 : 1;
	printf("  result: %s\n", rc == 0 ? "OK: every call validated against its owner, never against the thief; "
	                                   "every ticket verified"
	                                 : "FAILED: see above and the logs");
	printf("  logs: %s (servers), %s (agents); configs, keys and call records in %s/\n", logpath, d->agents_log,
	       d->run_dir);
out:
	__atomic_store_n(&d->stop_watchers, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < 2; i++)
		if (d->watch_th[i])
			pthread_join(d->watch_th[i], NULL);
	for (int i = 0; i < 2; i++)
		if (wa[i].d == d && wa[i].cl)
			vap_client_close(wa[i].cl);
	/* Servers stop first (no new requests), then the overlay, then the servers are freed. */
	for (int c = 0; c < NCAR; c++)
		vsrv_stop(d->car[c].srv);
	sim_dht_free(d->sim);
	for (int c = 0; c < NCAR; c++)
		vsrv_free(d->car[c].srv);
	vsrv_memdht_free(d->mem);
	alarm(0);
	if (logf) {
		vp_log_setup(VP_LOG_ERROR, stderr);
		fclose(logf);
	}
	free(d);
	return rc;
}
