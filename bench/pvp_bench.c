/*
 * pvp-bench - full PVP validations per second per core (TLS-SRP handshake +
 * ValExchange + ticket) for our server, beside gnutls-serv doing TLS-SRP
 * handshakes with the same 2048-bit group in the same run, and the bare SRP
 * arithmetic of one server-side handshake as the lower bound.
 *
 *   pvp-bench [-n VALIDATIONS] [-g GROUP_BITS]
 *
 * "Per core" = validations divided by the CPU time the server itself used
 * (its thread's CPU clock for ours; utime+stime of the gnutls-serv process),
 * so the client's work and the 2-core machine's sharing do not blur it.
 * gnutls-serv binds the wildcard address, so the program re-executes itself in
 * a private network namespace (unshare -rn) when it can.
 *
 * The SRP arithmetic is measured with OpenSSL's deprecated SRP primitives:
 * like pvp/srp.c, this one file raises the API compatibility level.
 */
#define OPENSSL_API_COMPAT 0x10100000L

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/rand.h>
#include <openssl/srp.h>

#include "common/clock.h"
#include "common/errcode.h"
#include "common/log.h"
#include "common/net.h"
#include "pvp/pvp.h"

#define NUM "+14085551234"
#define CALLER "+33123456789"

static double thread_cpu_s(void)
{
	return (double)vp_time_thread_cpu_ns() / 1e9;
}

static double mono_s(void)
{
	return vp_time_mono_ns() / 1e9;
}

/* ---- our server ---------------------------------------------------------- */

typedef struct srv_thread {
	pvp_server_t *srv;
	int lfd;
	int count;
	int served, ok;
	double cpu_s;
} srv_thread_t;

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
		pvp_server_handle(t->srv, fd, "bench", &res);
		t->cpu_s += thread_cpu_s() - c0;
		close(fd);
		t->served++;
		if (res.outcome == PVP_OUT_ROUTES)
			t->ok++;
	}
	return NULL;
}

static int routes(void *arg, const char *number, char uris[][PVP_URI_MAX], size_t max, size_t *n)
{
	(void)arg;
	if (!max)
		return VP_ESPACE;
	snprintf(uris[0], PVP_URI_MAX, "sips:%s@bench.example", number);
	*n = 1;
	return 0;
}

static int listen_lo(char port[8])
{
	uint16_t p;
	int fd;
	if (vp_net_listen_tcp("127.0.0.1", 0, 64, 0, &fd, &p))
		return -1;
	snprintf(port, 8, "%u", p);
	return fd;
}

static int bench_ours(int n, unsigned bits, uint64_t start_s, double *per_core, double *wall_rate)
{
	char dir[] = "/tmp/pvp-bench-XXXXXX", port[8], cmd[512];
	pvp_vcr_store_conf_t sc = { 0 };
	pvp_vcr_store_t *st = NULL;
	pvp_policy_t *pol = NULL;
	pvp_policy_conf_t pc = { .peer_fail_limit = 1000000, .number_fail_limit = 1000000 };
	pvp_ticket_keys_t keys;
	pvp_server_conf_t conf;
	pvp_client_conf_t cc = { .domain = "carrier-b.example", .max_shift = PVP_NO_SHIFT, .max_candidates = 1 };
	pvp_client_t *cli = NULL;
	pvp_ledger_t *led = NULL;
	pvp_ledger_conf_t lc = { 0 };
	pvp_vcr_t term, orig;
	srv_thread_t t;
	pthread_t th;
	pvp_tcp_target_t target;
	double w0;
	int rc = -1;

	if (!mkdtemp(dir))
		return -1;
	sc.path = dir;
	memset(&keys, 0, sizeof(keys));
	keys.cur.epoch = 1;
	keys.cur.len = 32;
	RAND_bytes(keys.cur.key, 32);
	if (pvp_vcr_store_open(&sc, &st) || pvp_policy_new(&pc, &pol) ||
	    pvp_vcr_make(&term, PVP_DIR_TERM, NUM, CALLER, (start_s + 1) * 1000, (start_s + 184) * 1000, NULL) ||
	    pvp_vcr_make(&orig, PVP_DIR_ORIG, NUM, CALLER, start_s * 1000, (start_s + 183) * 1000, NULL) ||
	    pvp_vcr_store_add(st, &term))
		goto out;
	/* The client's guess ledger shares the bench's store (two processes would each have their own). */
	lc.store = st;
	cc.ledger = NULL;
	if (pvp_ledger_new(&lc, &led))
		goto out;
	cc.ledger = led;
	if (pvp_client_new(&cc, &cli))
		goto out;
	memset(&conf, 0, sizeof(conf));
	conf.store = st;
	conf.keys = &keys;
	conf.policy = pol;
	conf.routes = routes;
	conf.group_bits = bits;
	memset(&t, 0, sizeof(t));
	t.count = n;
	if (pvp_server_new(&conf, &t.srv) || (t.lfd = listen_lo(port)) < 0)
		goto out;
	target.host = "127.0.0.1";
	target.port = port;
	target.timeout_ms = 10000;
	pthread_create(&th, NULL, serve, &t);
	w0 = mono_s();
	for (int i = 0; i < n; i++) {
		pvp_validation_t v;
		char claimant[32];
		/*
		 * The same call validated again against one claimant would lower the
		 * ledger's credit each time (one more guess, no new call): each
		 * validation here stands for another claimant, as in a busy validator.
		 */
		snprintf(claimant, sizeof(claimant), "bench-%d", i);
		if (pvp_client_validate(cli, claimant, &orig, PVP_METHODS_ALL, pvp_tcp_connect, &target, NULL, 0, &v) ||
		    v.resp.status != PVP_ST_ROUTES) {
			fprintf(stderr, "pvp-bench: validation %d failed\n", i);
			break;
		}
	}
	pthread_join(th, NULL);
	*wall_rate = t.served / (mono_s() - w0);
	close(t.lfd);
	pvp_server_free(t.srv);
	if (t.ok == n && t.cpu_s > 0) {
		*per_core = n / t.cpu_s;
		rc = 0;
	}
out:
	pvp_client_free(cli);
	pvp_ledger_free(led);
	pvp_policy_free(pol);
	pvp_vcr_store_close(st);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "pvp-bench: could not remove %s\n", dir);
	return rc;
}

/* ---- gnutls-serv baseline ------------------------------------------------ */

static double proc_cpu_s(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut = 0, stt = 0;
	FILE *f;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (!fgets(buf, sizeof(buf), f)) {
		fclose(f);
		return -1;
	}
	fclose(f);
	p = strrchr(buf, ')');
	/* fields after ")": state(3) ... utime(14) stime(15) */
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &stt) != 2)
		return -1;
	return (double)(ut + stt) / (double)sysconf(_SC_CLK_TCK);
}

static int bench_gnutls(int n, unsigned bits, const char *user, const char *pass, double *per_core)
{
	char dir[] = "/tmp/pvp-bench-gt-XXXXXX", cmd[2048], port[8];
	int idx = bits == 2048 ? 3 : bits == 3072 ? 4 : bits == 4096 ? 5 : bits == 8192 ? 7 : 0;
	pid_t pid;
	double c0, c1;
	int ok = 0, rc = -1;

	if (!idx || !mkdtemp(dir))
		return -1;
	snprintf(cmd, sizeof(cmd),
	         "cd '%s' && srptool --create-conf tpasswd.conf >/dev/null 2>&1 && "
	         "(printf '%%s\\n' '%s'; sleep 0.3; printf '%%s\\n' '%s') | "
	         "script -qc \"srptool --passwd tpasswd --passwd-conf tpasswd.conf -u '%s' -i %d\" /dev/null >/dev/null",
	         dir, pass, pass, user, idx);
	if (system(cmd) != 0)
		goto out;
	snprintf(port, sizeof(port), "%d", 20000 + (int)(getpid() % 20000));
	pid = fork();
	if (pid == 0) {
		char tp[256], tc[256];
		snprintf(tp, sizeof(tp), "%s/tpasswd", dir);
		snprintf(tc, sizeof(tc), "%s/tpasswd.conf", dir);
		if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
			_exit(127);
		execlp("gnutls-serv", "gnutls-serv", "-p", port, "--srppasswd", tp, "--srppasswdconf", tc,
		       "--priority", "NORMAL:-VERS-TLS1.3:+SRP", "--echo", (char *)NULL);
		_exit(127);
	}
	if (pid < 0)
		goto out;
	usleep(500 * 1000);
	c0 = proc_cpu_s(pid);
	for (int i = 0; i < n; i++) {
		snprintf(cmd, sizeof(cmd),
		         "gnutls-cli --srpusername='%s' --srppasswd='%s' --priority='NORMAL:-VERS-TLS1.3:+SRP' "
		         "--port=%s 127.0.0.1 </dev/null 2>&1 | grep -q 'Handshake was completed'",
		         user, pass, port);
		if (system(cmd) == 0)
			ok++;
	}
	usleep(100 * 1000);
	c1 = proc_cpu_s(pid);
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	if (ok == n && c0 >= 0 && c1 > c0) {
		*per_core = n / (c1 - c0);
		rc = 0;
	} else {
		fprintf(stderr, "pvp-bench: gnutls baseline: %d/%d handshakes, cpu %.3f s\n", ok, n, c1 - c0);
	}
out:
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "pvp-bench: could not remove %s\n", dir);
	return rc;
}

/* ---- bare SRP arithmetic: one server-side handshake ------------------------ */

static double bench_arith(int n, unsigned bits)
{
	char id[16];
	const SRP_gN *gn;
	BIGNUM *salt = NULL, *v = NULL, *b = BN_new(), *a = BN_new(), *A = NULL, *B = NULL, *u = NULL, *S = NULL;
	double c0, dt;
	snprintf(id, sizeof(id), "%u", bits);
	gn = SRP_get_default_gN(id);
	if (!gn || !a || !b)
		return -1;
	BN_rand(a, 256, -1, 0);
	A = SRP_Calc_A(a, gn->N, gn->g);
	c0 = thread_cpu_s();
	for (int i = 0; i < n; i++) {
		/* What our server computes per handshake: the verifier from the call record, B, u, S. */
		BN_clear_free(v);
		v = NULL;
		if (!SRP_create_verifier_BN("v1.a.498682.23.3000.0.abababababababababababababababab",
		                            "v1.a.+14085551234.+33123456789.29920937.45", &salt, &v, gn->N, gn->g))
			return -1;
		BN_rand(b, 384, -1, 0); /* OpenSSL's b: SSL_MAX_MASTER_KEY_LENGTH bytes */
		BN_free(B);
		B = SRP_Calc_B(b, gn->N, gn->g, v);
		BN_free(u);
		u = SRP_Calc_u(A, B, gn->N);
		BN_clear_free(S);
		S = SRP_Calc_server_key(A, v, u, b, gn->N);
		if (!B || !u || !S)
			return -1;
	}
	dt = thread_cpu_s() - c0;
	BN_free(salt);
	BN_clear_free(v);
	BN_clear_free(a);
	BN_clear_free(b);
	BN_free(A);
	BN_free(B);
	BN_free(u);
	BN_clear_free(S);
	return n / dt;
}

int main(int argc, char **argv)
{
	int n = 200, c;
	unsigned bits = 2048;
	double ours = 0, wall = 0, gnutls = 0, arith, sel_ms;
	uint64_t start_s = vp_time_wall_ms() / 1000 - 600;
	char user[PVP_USER_MAX], pass[PVP_PASS_MAX];
	pvp_vcr_t orig;

	while ((c = getopt(argc, argv, "n:g:")) != -1) {
		if (c == 'n')
			n = atoi(optarg);
		else if (c == 'g')
			bits = (unsigned)atoi(optarg);
		else {
			fprintf(stderr, "usage: pvp-bench [-n VALIDATIONS] [-g GROUP_BITS]\n");
			return 2;
		}
	}
	if (n < 1)
		n = 1;
	if (!getenv("VIPR_BENCH_NETNS") && system("unshare -rn true 2>/dev/null") == 0) {
		char **av = calloc((size_t)argc + 3, sizeof(char *));
		setenv("VIPR_BENCH_NETNS", "1", 1);
		av[0] = "unshare";
		av[1] = "-rn";
		for (int i = 0; i < argc; i++)
			av[i + 2] = argv[i];
		execvp("unshare", av);
		free(av);
	}
	if (getenv("VIPR_BENCH_NETNS") && system("ip link set lo up 2>/dev/null") != 0)
		fprintf(stderr, "pvp-bench: could not bring lo up\n");
	signal(SIGPIPE, SIG_IGN);
	vp_log_setup(VP_LOG_ERROR, stderr);

	/* Selector cost (one PBKDF2; the server pays it once or twice per inbound call). */
	{
		uint8_t sel[PVP_SEL_LEN];
		double c0 = thread_cpu_s();
		for (int i = 0; i < 20; i++)
			pvp_selector(NUM, 498682u + (uint32_t)i, sel);
		sel_ms = (thread_cpu_s() - c0) / 20 * 1000;
	}
	if (pvp_vcr_make(&orig, PVP_DIR_ORIG, NUM, CALLER, start_s * 1000, (start_s + 183) * 1000, NULL) ||
	    pvp_client_creds(&orig, PVP_METHOD_A, 0, 0, user, pass))
		return 1;
	if (bench_ours(n, bits, start_s, &ours, &wall)) {
		fprintf(stderr, "pvp-bench: our server run failed\n");
		return 1;
	}
	arith = bench_arith(n, bits);
	if (bench_gnutls(n, bits, user, pass, &gnutls)) {
		printf("pvp_validations_server %.0f validations/s/core (gnutls-serv unavailable)\n", ours);
	} else {
		printf("pvp_validations_server %.0f validations/s/core (gnutls-serv srp handshake %.0f handshakes/s/core, ratio %.2fx)\n",
		       ours, gnutls, ours / gnutls);
	}
	printf("pvp_srp_arith_bound %.0f handshakes/s/core (our full validation %.0f validations/s/core, ratio %.2fx)\n",
	       arith, ours, ours / arith);
	printf("pvp_validations_wall %.0f validations/s (client and server in one process, %ld cores)\n", wall,
	       sysconf(_SC_NPROCESSORS_ONLN));
	printf("pvp_selector_pbkdf2 %.2f ms/selector (%d iterations of HMAC-SHA-256)\n", sel_ms, PVP_SEL_ITER);
	printf("# group %u bits, %d validations, %d gnutls-cli handshakes\n", bits, n, n);
	return 0;
}
