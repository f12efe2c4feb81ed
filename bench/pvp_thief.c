/*
 * pvp-thief - a guessing thief against PVP's originating-side rule
 * (docs/protocol.md §5.9, issue 10 item 1).
 *
 *   pvp-thief [--trials N] [--owners N] [--real CALLS] [--seed S]
 *
 * A thief claims a number it never received calls for and, as TLS-SRP
 * server, answers each handshake of the validator with a verifier for a
 * guessed call: the username tells it the hour, the start second (p_s) and
 * the duration phase (p_d), so each handshake is one guess of (start minute,
 * 4-s duration bin, caller-ID).  It sets its own threshold to 1 bit, so every
 * lucky handshake comes back with routes; only the validator's own rule
 * stands between it and a hijacked route.
 *
 * Call model (the validator's outbound calls): 25 % start at :00 or :30
 * (answer 20 s early to 40 s late), the rest uniform in the hour; durations
 * 15 % 1-10 s (ring-outs, voicemail), 25 % 10-60 s, 60 % 10 s + exponential
 * (mean 170 s); caller-ID absent 15 %, the carrier's main number 60 %, one of
 * 100 numbers of its block 20 %, other 5 %.  The thief guesses the likeliest
 * values: starts at :00 and :30, durations of 5 s and 9 s, the main number,
 * two by two (4 handshakes per method, the validator's maximum), and
 * advertises {a, b} or {b} only.
 *
 * 1. Modelled trials (no handshakes): per call, the probability that the
 *    thief wins a handshake and the validator accepts its routes, at
 *    thresholds 8, 16, 24 bits, with the rule and without (baseline: the
 *    claimant decides).  Computed from the estimator (pvp_entropy_cbits) and
 *    the ledger's credit (pvp_ledger_credit_of).
 * 2. The real owner: calls (same model; 90 % of clocks within 25 s, 5 % need
 *    the -1 shift, 5 % the +1 shift; 10 % of calls lose the caller-ID on the
 *    way) until its credit reaches each threshold.
 * 3. --real CALLS: real handshakes (our TLS-SRP client and ledger against our
 *    server playing the thief, on loopback, manual clocks), default threshold.
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "common/errcode.h"
#include "common/log.h"
#include "common/rand.h"
#include "pvp/pvp.h"

#define MAIN_CALLER "+33123456789"
#define HOUR0 499000u /* an hour index (2026) */

static const unsigned thresholds[] = { 800, 1600, 2400 };
#define NTH (sizeof(thresholds) / sizeof(thresholds[0]))

typedef struct call {
	pvp_vcr_t rec;       /* the validator's record */
	bool term_has_caller; /* the claimant's side got the caller-ID (owner model) */
	int owner_hs;        /* handshakes the owner needs per method (1, 3 or 4) */
} call_t;

static double unif(uint64_t *st)
{
	return vp_rand_unit(vp_splitmix64_next(st));
}

static void draw_call(uint64_t *st, uint32_t hour, const char *called, call_t *c)
{
	double u = unif(st), off, d;
	char caller[VP_E164_BUFLEN] = "";
	uint64_t start_ms;
	if (u < 0.25)
		off = (unif(st) < 0.5 ? 0 : 1800) - 20 + 60 * unif(st);
	else
		off = 3600 * unif(st);
	if (off < 0)
		off += 3600;
	start_ms = (uint64_t)hour * 3600000 + (uint64_t)(off * 1000);
	u = unif(st);
	if (u < 0.15)
		d = 1 + 9 * unif(st);
	else if (u < 0.40)
		d = 10 + 50 * unif(st);
	else
		d = 10 - 170 * log(1 - unif(st));
	u = unif(st);
	if (u < 0.15)
		caller[0] = '\0';
	else if (u < 0.75)
		snprintf(caller, sizeof(caller), MAIN_CALLER);
	else if (u < 0.95)
		snprintf(caller, sizeof(caller), "+331234567%02d", (int)(100 * unif(st)) % 100);
	else
		snprintf(caller, sizeof(caller), "+3398765%04d", (int)(10000 * unif(st)) % 10000);
	if (pvp_vcr_make(&c->rec, PVP_DIR_ORIG, called, caller, start_ms, start_ms + (uint64_t)(d * 1000), NULL))
		abort();
	c->term_has_caller = unif(st) >= 0.10;
	u = unif(st);
	c->owner_hs = u < 0.90 ? 1 : u < 0.95 ? 3 : 4;
}

/* The thief's 4 guesses for a method, given the public phases: (start, duration) pairs. */
static bool thief_wins_at(const pvp_vcr_t *r, pvp_method_t m, unsigned *k_out)
{
	static const int starts[2] = { 0, 1800 };
	static const int durs[2] = { 5000, 9000 };
	int64_t s = (int64_t)(r->start_ms / 1000), d = (int64_t)(r->stop_ms - r->start_ms);
	uint32_t ps = (uint32_t)(s % PVP_G_START), pd = (uint32_t)(d % PVP_G_DUR_MS);
	int64_t hour_s = s / 3600 * 3600;
	int64_t qs = pvp_round_q(s, ps, PVP_G_START), qd = pvp_round_q(d, pd, PVP_G_DUR_MS);
	unsigned k = 0;
	if (m == PVP_METHOD_A && strcmp(r->caller, MAIN_CALLER) != 0)
		return false;
	for (int a = 0; a < 2; a++)
		for (int b = 0; b < 2; b++) {
			k++;
			if (pvp_round_q(hour_s + starts[a], ps, PVP_G_START) == qs &&
			    pvp_round_q(durs[b], pd, PVP_G_DUR_MS) == qd) {
				*k_out = k;
				return true;
			}
		}
	return false;
}

/*
 * One validation against the thief advertising \p methods (a fresh chain):
 * true if the thief wins a handshake; *hs the handshakes offered, *e the
 * entropy of the method that won.
 */
static bool validate_model(const pvp_vcr_t *r, unsigned methods, unsigned *hs, uint32_t *e)
{
	static const pvp_method_t order[2] = { PVP_METHOD_A, PVP_METHOD_B };
	*hs = 0;
	for (int i = 0; i < 2; i++) {
		unsigned k;
		if (!(methods & PVP_MBIT(order[i])) || !pvp_method_applies(r, order[i]))
			continue;
		if (thief_wins_at(r, order[i], &k)) {
			*hs += k;
			*e = pvp_entropy_cbits(r, order[i], NULL);
			return true;
		}
		*hs += 4;
	}
	return false;
}

static void model(uint64_t trials, uint64_t seed)
{
	static const unsigned sets[2] = { PVP_METHODS_ALL, PVP_MBIT(PVP_METHOD_B) };
	static const char *const set_name[2] = { "ab", "b" };
	uint64_t st = seed, wins[2] = { 0 }, acc[2][NTH] = { { 0 } };
	for (uint64_t t = 0; t < trials; t++) {
		call_t c;
		draw_call(&st, HOUR0 + (uint32_t)(t % 10000), "+14085551234", &c);
		for (int s = 0; s < 2; s++) {
			unsigned hs;
			uint32_t e;
			if (!validate_model(&c.rec, sets[s], &hs, &e))
				continue;
			wins[s]++;
			for (size_t i = 0; i < NTH; i++)
				acc[s][i] += pvp_ledger_credit_of(e, hs, 1) >= thresholds[i];
		}
	}
	for (int s = 0; s < 2; s++) {
		double base = (double)wins[s] / (double)trials;
		for (size_t i = 0; i < NTH; i++) {
			double p = (double)acc[s][i] / (double)trials, bound = acc[s][i] ? p : 3.0 / (double)trials;
			printf("pvp_thief_false_accept_%s_T%u %.2e per_call%s (baseline without the rule %.2e per_call, "
			       "ratio %s%.0f x) [%llu of %llu trials]\n",
			       set_name[s], thresholds[i] / 100, p, acc[s][i] ? "" : " (<3/N at 95%)", base,
			       acc[s][i] ? "" : ">=", base / bound, (unsigned long long)acc[s][i],
			       (unsigned long long)trials);
		}
	}
}

static int cmp_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

static void owners(int n, uint64_t seed)
{
	enum { MAX_CALLS = 100 };
	int *need = malloc(sizeof(int) * (size_t)n);
	uint64_t st = seed ^ 0x5eedull;
	if (!need)
		return;
	for (size_t i = 0; i < NTH; i++) {
		double sum = 0;
		int never = 0;
		for (int o = 0; o < n; o++) {
			uint32_t acc = 0, hs = 0, calls = 0;
			need[o] = MAX_CALLS + 1;
			for (int k = 1; k <= MAX_CALLS; k++) {
				call_t c;
				pvp_method_t m;
				draw_call(&st, HOUR0 + (uint32_t)k * 24, "+14085551234", &c);
				if (!pvp_method_applies(&c.rec, PVP_METHOD_B))
					continue; /* under 1 s: not validated */
				m = c.rec.caller[0] && c.term_has_caller ? PVP_METHOD_A : PVP_METHOD_B;
				if (c.rec.caller[0] && !c.term_has_caller)
					hs += 4; /* method a fails every try first */
				hs += (uint32_t)c.owner_hs;
				acc += pvp_entropy_cbits(&c.rec, m, NULL);
				calls++;
				if (pvp_ledger_credit_of(acc, hs, calls) >= thresholds[i]) {
					need[o] = k;
					break;
				}
			}
			if (need[o] > MAX_CALLS)
				never++;
			else
				sum += need[o];
		}
		qsort(need, (size_t)n, sizeof(int), cmp_int);
		printf("pvp_owner_calls_to_routes_T%u %.2f calls mean (median %d, p95 %d, p99 %d; %.3f%% not within %d "
		       "calls) [%d owners]\n",
		       thresholds[i] / 100, n > never ? sum / (n - never) : 0.0, need[n / 2], need[n * 95 / 100],
		       need[n * 99 / 100], 100.0 * never / n, MAX_CALLS, n);
	}
	free(need);
}

/* ---- real handshakes --------------------------------------------------- */

typedef struct thief_srv {
	pvp_server_t *srv;
	int lfd;
	int stop;
	int served, authenticated, routes;
} thief_srv_t;

static void *thief_serve(void *arg)
{
	thief_srv_t *t = arg;
	while (!__atomic_load_n(&t->stop, __ATOMIC_SEQ_CST)) {
		pvp_server_result_t res;
		int fd = accept(t->lfd, NULL, NULL);
		if (fd < 0)
			continue;
		if (__atomic_load_n(&t->stop, __ATOMIC_SEQ_CST)) {
			close(fd);
			break;
		}
		if (pvp_server_handle(t->srv, fd, "validator", &res) == 0) {
			t->served++;
			t->authenticated += res.outcome == PVP_OUT_ROUTES || res.outcome == PVP_OUT_PENDING;
			t->routes += res.outcome == PVP_OUT_ROUTES;
		}
		close(fd);
	}
	return NULL;
}

static int thief_routes(void *arg, const char *number, char uris[][PVP_URI_MAX], size_t max, size_t *n)
{
	(void)arg;
	if (!max)
		return VP_ESPACE;
	snprintf(uris[0], PVP_URI_MAX, "sips:%s@thief.example", number);
	*n = 1;
	return 0;
}

static int real_run(int calls, uint64_t seed)
{
	char tdir[] = "/tmp/pvp-thief-XXXXXX", vdir[] = "/tmp/pvp-thief-v-XXXXXX", port[8], cmd[128];
	uint64_t now_ms = (uint64_t)HOUR0 * 3600000, st = seed ^ 0x7eal;
	vp_clock_t clock = { .now_ms = vp_clock_manual_now, .ctx = &now_ms };
	pvp_vcr_store_conf_t tsc = { .clock = &clock }, vsc = { .clock = &clock };
	pvp_vcr_store_t *tstore = NULL, *vstore = NULL;
	pvp_policy_conf_t pc = { .min_entropy_cbits = 100, .peer_fail_limit = 1000000, .number_fail_limit = 1000000 };
	pvp_policy_t *pol = NULL;
	pvp_ticket_keys_t keys;
	pvp_server_conf_t sconf;
	pvp_ledger_conf_t lc = { 0 };
	pvp_ledger_t *led = NULL;
	pvp_client_conf_t cc = { .domain = "carrier-b.example", .io_timeout_ms = 10000, .clock = &clock };
	pvp_client_t *cli = NULL;
	pvp_tcp_target_t target = { .host = "127.0.0.1", .port = port, .timeout_ms = 10000 };
	thief_srv_t t = { .lfd = -1 };
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t alen = sizeof(a);
	pthread_t th;
	int wins = 0, withheld = 0, accepted = 0, failed = 0, budget = 0, other = 0, rc = 1;
	unsigned handshakes = 0;
	bool started = false;

	if (!mkdtemp(tdir) || !mkdtemp(vdir))
		return 1;
	tsc.path = tdir;
	vsc.path = vdir;
	/* A long retention: the run spans CALLS hours of manual clock. */
	tsc.term_retention_ms = vsc.term_retention_ms = (uint64_t)(calls + 48) * 3600000;
	memset(&keys, 0, sizeof(keys));
	keys.cur.epoch = 1;
	keys.cur.len = 32;
	RAND_bytes(keys.cur.key, 32);
	if (pvp_vcr_store_open(&tsc, &tstore) || pvp_vcr_store_open(&vsc, &vstore) || pvp_policy_new(&pc, &pol))
		goto out;
	memset(&sconf, 0, sizeof(sconf));
	sconf.store = tstore;
	sconf.keys = &keys;
	sconf.policy = pol;
	sconf.routes = thief_routes;
	sconf.clock = &clock;
	lc.store = vstore;
	if (pvp_server_new(&sconf, &t.srv) || pvp_ledger_new(&lc, &led))
		goto out;
	cc.ledger = led;
	if (pvp_client_new(&cc, &cli))
		goto out;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	t.lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (t.lfd < 0 || bind(t.lfd, (struct sockaddr *)&a, sizeof(a)) || listen(t.lfd, 64) ||
	    getsockname(t.lfd, (struct sockaddr *)&a, &alen))
		goto out;
	snprintf(port, sizeof(port), "%u", ntohs(a.sin_port));
	if (pthread_create(&th, NULL, thief_serve, &t))
		goto out;
	started = true;
	for (int i = 0; i < calls; i++) {
		char called[VP_E164_BUFLEN];
		uint32_t hour = HOUR0 + (uint32_t)i;
		pvp_validation_t v;
		call_t c;
		snprintf(called, sizeof(called), "+1408555%04d", i % 200);
		/* The thief's guesses for this hour: a call at :00 of 5 s and of 9 s from the main number. */
		for (int k = 0; k < 2; k++) {
			pvp_vcr_t g;
			uint64_t s0 = (uint64_t)hour * 3600000;
			now_ms = s0; /* stored as live records */
			if (pvp_vcr_make(&g, PVP_DIR_TERM, called, MAIN_CALLER, s0, s0 + (k ? 9000 : 5000), NULL) ||
			    pvp_vcr_store_add(tstore, &g))
				goto out;
		}
		draw_call(&st, hour, called, &c);
		now_ms = c.rec.stop_ms + 600000; /* validated 10 minutes after the call */
		int vrc = pvp_client_validate(cli, "thief", &c.rec, PVP_METHODS_ALL, pvp_tcp_connect, &target, NULL, 0,
		                              &v);
		handshakes += v.handshakes;
		if (vrc == 0) {
			wins++;
			withheld += v.withheld;
			accepted += v.resp.status == PVP_ST_ROUTES;
		} else if (vrc == VP_EAUTH) {
			failed++;
		} else if (vrc == VP_ERATELIMIT) {
			budget++;
		} else if (vrc != VP_EPERM) {
			other++;
			fprintf(stderr, "pvp-thief: call %d: %s\n", i, vp_errname(vrc));
		}
	}
	printf("pvp_thief_real_accepted_routes_T16 %d calls (baseline: thief granted routes on %d calls, of %d calls)\n",
	       accepted, t.routes, calls);
	printf("pvp_thief_real_detail calls=%d handshakes=%u thief_won_handshake=%d routes_withheld=%d "
	       "failed=%d budget_spent=%d transport=%d\n",
	       calls, handshakes, wins, withheld, failed, budget, other);
	rc = accepted == 0 && other == 0 ? 0 : 1;
out:
	if (started) {
		int fd;
		__atomic_store_n(&t.stop, 1, __ATOMIC_SEQ_CST);
		/* Wake the blocked accept() with one connection. */
		if (pvp_tcp_connect(&target, &fd) == 0)
			close(fd);
		pthread_join(th, NULL);
	}
	if (t.lfd >= 0)
		close(t.lfd);
	pvp_client_free(cli);
	pvp_ledger_free(led);
	pvp_server_free(t.srv);
	pvp_policy_free(pol);
	pvp_vcr_store_close(tstore);
	pvp_vcr_store_close(vstore);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", tdir, vdir);
	if (system(cmd) != 0)
		fprintf(stderr, "pvp-thief: could not remove %s %s\n", tdir, vdir);
	return rc;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: pvp-thief [--trials N] [--owners N] [--real CALLS] [--seed S]\n"
	           "\n"
	           "A guessing thief against PVP's originating-side rule (docs/protocol.md 5.9):\n"
	           "modelled false acceptance per call at thresholds 8, 16 and 24 bits with the\n"
	           "validator's rule and without it, the calls the real owner needs, and optionally\n"
	           "real loopback TLS-SRP handshakes of our client against our server as the thief.\n"
	           "\n"
	           "  --trials N    modelled thief calls (default 1000000; 0 skips)\n"
	           "  --owners N    modelled real owners (default 100000; 0 skips)\n"
	           "  --real CALLS  real-handshake run with CALLS calls (default 0: off)\n"
	           "  --seed S      random seed (default 20261121)\n"
	           "  -h, --help    this text\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "trials", required_argument, NULL, 't' }, { "owners", required_argument, NULL, 'o' },
		{ "real", required_argument, NULL, 'r' },   { "seed", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },         { NULL, 0, NULL, 0 },
	};
	uint64_t trials = 1000000, seed = 20261121;
	int nowners = 100000, real = 0, c;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c == 't')
			trials = strtoull(optarg, NULL, 10);
		else if (c == 'o')
			nowners = atoi(optarg);
		else if (c == 'r')
			real = atoi(optarg);
		else if (c == 's')
			seed = strtoull(optarg, NULL, 10);
		else if (c == 'h') {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	vp_log_setup(VP_LOG_ERROR, stderr);
	if (trials)
		model(trials, seed);
	if (nowners > 0)
		owners(nowners, seed);
	return real > 0 ? real_run(real, seed) : 0;
}
