/*
 * pvp-timing - can a PVP client tell an unknown selector (no such call) from a
 * known selector with a wrong password?  The server answers an unknown user
 * with a simulated verifier (pvp/srp.c); this measures both cases through a
 * real loopback TLS-SRP handshake, interleaved so drift hits both alike.
 *
 *   pvp-timing [-n HANDSHAKES_PER_CASE] [-g GROUP_BITS]
 *
 * For each case it prints the client-observed handshake time (connect to the
 * failure alert: what an attacker sees) and the server thread's CPU time per
 * connection, as median and mean, then the difference of the medians against
 * the wrong-password case as the baseline.  A control case repeats the
 * baseline: the spread between it and the baseline is the run's noise floor.
 * Ratios are baseline/case, like every time ratio in bench/ (RESULTS.md);
 * here neither direction is better: the aim is 1.000 within the control's
 * spread (a case cheaper than the baseline shows above 1, a dearer one below).
 *
 * Like pvp/srp.c this file uses OpenSSL's deprecated SRP client API.
 */
#define OPENSSL_API_COMPAT 0x10100000L

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
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "common/clock.h"
#include "common/errcode.h"
#include "common/log.h"
#include "common/net.h"
#include "pvp/pvp.h"

#define NUM "+14085551234"
#define OTHER "+14085559999"
#define CALLER "+33123456789"
#define T0_MS 1700000000000ull
#define CALL_MS 183000ull

/* The control repeats the baseline case: its ratio shows the noise floor of the run. */
enum { C_WRONG_PASS = 0, C_UNKNOWN_SEL, C_CONTROL, C_GARBAGE_USER, C_N };
static const char *const case_name[C_N] = { "wrong_password", "unknown_selector", "control_wrong_password",
                                             "malformed_username" };

typedef struct srv_thread {
	pvp_server_t *srv;
	int lfd;
	int count;
	double *cpu_s; /* per connection, in accept order */
} srv_thread_t;

static double thread_cpu_s(void)
{
	return (double)vp_time_thread_cpu_ns() / 1e9;
}

static void *serve(void *arg)
{
	srv_thread_t *t = arg;
	for (int i = 0; i < t->count; i++) {
		pvp_server_result_t res;
		int fd = accept(t->lfd, NULL, NULL);
		double c0;
		if (fd < 0)
			break;
		c0 = thread_cpu_s();
		pvp_server_handle(t->srv, fd, "timing", &res);
		t->cpu_s[i] = thread_cpu_s() - c0;
		close(fd);
	}
	return NULL;
}

static int routes(void *arg, const char *number, char uris[][PVP_URI_MAX], size_t max, size_t *n)
{
	(void)arg;
	if (max < 1)
		return VP_ESPACE;
	snprintf(uris[0], PVP_URI_MAX, "sip:%s@pbx.example", number);
	*n = 1;
	return 0;
}

static char *pass_cb(SSL *s, void *arg)
{
	(void)s;
	return OPENSSL_strdup(arg);
}

/* One client handshake with user/pass; returns the wall time in seconds (the handshake must fail). */
static double handshake(SSL_CTX *ctx, unsigned short port, const char *user, char *pass, int *completed)
{
	SSL *ssl;
	uint64_t t0;
	int fd, r;

	if (vp_net_connect_tcp("127.0.0.1", port, 5000, VP_NET_NUMERIC, &fd)) {
		fprintf(stderr, "pvp-timing: cannot connect to port %u\n", port);
		exit(1);
	}
	SSL_CTX_set_srp_username(ctx, (char *)user);
	SSL_CTX_set_srp_cb_arg(ctx, pass);
	ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	t0 = vp_time_mono_ns();
	r = SSL_connect(ssl);
	*completed = r == 1;
	t0 = vp_time_mono_ns() - t0;
	SSL_free(ssl);
	ERR_clear_error();
	close(fd);
	return t0 / 1e9;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_d);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void stats(const double *v, int n, double *mean, double *sem)
{
	double s = 0, ss = 0;
	for (int i = 0; i < n; i++)
		s += v[i];
	*mean = s / n;
	for (int i = 0; i < n; i++)
		ss += (v[i] - *mean) * (v[i] - *mean);
	*sem = n > 1 ? sqrt(ss / (n - 1) / n) : 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: pvp-timing [-n HANDSHAKES_PER_CASE] [-g GROUP_BITS]\n"
	           "\n"
	           "Can a PVP client tell an unknown selector from a known one with a wrong password?\n"
	           "Runs real loopback TLS-SRP handshakes against our server for each case (wrong\n"
	           "password, unknown selector, a control repeating the first, malformed username),\n"
	           "interleaved, and prints the client-observed time and the server thread's CPU time\n"
	           "per handshake (median, mean), each against the wrong-password case.\n"
	           "Ratios are baseline/case (the bench/ convention for times); the aim is 1.000\n"
	           "within the spread of the control case.\n"
	           "\n"
	           "  -n, --handshakes N  handshakes per case, 2..100000 (default 100)\n"
	           "  -g, --group BITS    RFC 5054 group bits (default 2048)\n"
	           "  -h, --help          this text\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "handshakes", required_argument, NULL, 'n' },
		{ "group", required_argument, NULL, 'g' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int n = 100, opt;
	unsigned bits = 2048;
	char dir[] = "/tmp/pvp-timing-XXXXXX", user[C_N][PVP_USER_MAX], pass[C_N][PVP_PASS_MAX];
	uint64_t clock_ms = T0_MS + 3600 * 1000;
	vp_clock_t clk = { vp_clock_manual_now, &clock_ms };
	pvp_vcr_store_conf_t sc = { 0 };
	pvp_policy_conf_t pc = { .peer_fail_limit = 1u << 30, .number_fail_limit = 1u << 30 };
	pvp_server_conf_t conf = { 0 };
	pvp_ticket_keys_t keys = { 0 };
	pvp_vcr_store_t *store;
	pvp_policy_t *policy;
	pvp_vcr_t rec, orig, other;
	srv_thread_t st = { 0 };
	uint16_t lport = 0;
	pthread_t th;
	SSL_CTX *ctx;
	double *wall[C_N], *cpu[C_N], base_wall = 0, base_cpu = 0;
	int nc[C_N] = { 0 }, completed, total;

	while ((opt = getopt_long(argc, argv, "n:g:h", opts, NULL)) != -1) {
		if (opt == 'n')
			n = atoi(optarg);
		else if (opt == 'g')
			bits = (unsigned)atoi(optarg);
		else if (opt == 'h') {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc || n < 2 || n > 100000) {
		usage(stderr);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	vp_log_setup(VP_LOG_ERROR, stderr);
	total = n * C_N + 1; /* one warm-up */

	if (!mkdtemp(dir))
		return 1;
	sc.path = dir;
	sc.clock = &clk;
	if (pvp_vcr_store_open(&sc, &store) || pvp_policy_new(&pc, &policy))
		return 1;
	if (pvp_vcr_make(&rec, PVP_DIR_TERM, NUM, CALLER, T0_MS, T0_MS + CALL_MS, NULL) ||
	    pvp_vcr_store_add(store, &rec) ||
	    pvp_vcr_make(&orig, PVP_DIR_ORIG, NUM, CALLER, T0_MS, T0_MS + CALL_MS, NULL) ||
	    pvp_vcr_make(&other, PVP_DIR_ORIG, OTHER, CALLER, T0_MS, T0_MS + CALL_MS, NULL))
		return 1;
	if (pvp_client_creds(&orig, PVP_METHOD_A, 0, 0, user[C_WRONG_PASS], pass[C_WRONG_PASS]) ||
	    pvp_client_creds(&other, PVP_METHOD_A, 0, 0, user[C_UNKNOWN_SEL], pass[C_UNKNOWN_SEL]))
		return 1;
	/* Same length and alphabet as the real password, one character off. */
	pass[C_WRONG_PASS][0] = pass[C_WRONG_PASS][0] == 'A' ? 'B' : 'A';
	memcpy(user[C_CONTROL], user[C_WRONG_PASS], PVP_USER_MAX);
	memcpy(pass[C_CONTROL], pass[C_WRONG_PASS], PVP_PASS_MAX);
	snprintf(user[C_GARBAGE_USER], PVP_USER_MAX, "%s", "not-a-pvp-username");
	snprintf(pass[C_GARBAGE_USER], PVP_PASS_MAX, "%s", pass[C_UNKNOWN_SEL]);

	keys.cur.epoch = 1;
	keys.cur.len = 32;
	memset(keys.cur.key, 0x5a, 32);
	conf.store = store;
	conf.keys = &keys;
	conf.policy = policy;
	conf.routes = routes;
	conf.group_bits = bits;
	conf.clock = &clk;
	if (pvp_server_new(&conf, &st.srv))
		return 1;
	if (vp_net_listen_tcp("127.0.0.1", 0, 16, 0, &st.lfd, &lport))
		return 1;
	st.count = total;
	st.cpu_s = calloc((size_t)total, sizeof(double));
	for (int c = 0; c < C_N; c++) {
		wall[c] = calloc((size_t)n, sizeof(double));
		cpu[c] = calloc((size_t)n, sizeof(double));
	}
	if (pthread_create(&th, NULL, serve, &st))
		return 1;

	ctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_cipher_list(ctx, "SRP-AES-256-CBC-SHA:SRP-AES-128-CBC-SHA:@SECLEVEL=0");
	SSL_CTX_set_srp_strength(ctx, (int)bits);
	SSL_CTX_set_srp_client_pwd_callback(ctx, pass_cb);

	handshake(ctx, lport, user[0], pass[0], &completed); /* warm-up */
	for (int i = 0; i < n * C_N; i++) {
		int c = i % C_N;
		wall[c][nc[c]++] = handshake(ctx, lport, user[c], pass[c], &completed);
		if (completed) {
			fprintf(stderr, "pvp-timing: case %s completed a handshake\n", case_name[c]);
			return 1;
		}
	}
	pthread_join(th, NULL);
	for (int i = 0; i < n * C_N; i++)
		cpu[i % C_N][i / C_N] = st.cpu_s[i + 1];

	for (int c = 0; c < C_N; c++) {
		double mw, sw, mc, sc2, medw, medc;
		stats(wall[c], n, &mw, &sw);
		stats(cpu[c], n, &mc, &sc2);
		medw = median(wall[c], n);
		medc = median(cpu[c], n);
		if (c == C_WRONG_PASS) {
			base_wall = medw;
			base_cpu = medc;
		}
		printf("pvp_timing_%s_client_median %.1f us (baseline wrong_password %.1f us, ratio %.3f x)\n",
		       case_name[c], medw * 1e6, base_wall * 1e6, base_wall / medw);
		printf("pvp_timing_%s_client_mean %.1f us (+- %.1f us sem)\n", case_name[c], mw * 1e6, sw * 1e6);
		printf("pvp_timing_%s_server_cpu_median %.1f us (baseline wrong_password %.1f us, ratio %.3f x)\n",
		       case_name[c], medc * 1e6, base_cpu * 1e6, base_cpu / medc);
		printf("pvp_timing_%s_server_cpu_mean %.1f us (+- %.1f us sem)\n", case_name[c], mc * 1e6,
		       sc2 * 1e6);
	}

	SSL_CTX_free(ctx);
	close(st.lfd);
	pvp_server_free(st.srv);
	pvp_policy_free(policy);
	pvp_vcr_store_close(store);
	{
		char cmd[64];
		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "pvp-timing: could not remove %s\n", dir);
	}
	for (int c = 0; c < C_N; c++) {
		free(wall[c]);
		free(cpu[c]);
	}
	free(st.cpu_s);
	return 0;
}
