/*
 * pvp-bench - full PVP validations per second per core (TLS-SRP handshake +
 * ValExchange + ticket) for our server, against three references measured in
 * the same run with the same 2048-bit (or -g) group:
 *
 *   1. the bare SRP arithmetic of one server-side handshake (verifier g^x, B,
 *      u, S): the lower bound on any TLS-SRP server's CPU, so the headline;
 *   2. a minimal OpenSSL TLS-SRP server loop doing only the handshake (same
 *      cipher suites and options as ours, verifier derived per handshake as
 *      ours is, blocking socket, nothing else): the fair baseline;
 *   3. gnutls-serv --echo fed by one gnutls-cli process per handshake: a
 *      demonstration server, kept as a second line for continuity.
 *
 *   pvp-bench [-n VALIDATIONS] [-g GROUP_BITS] [-r ROUNDS] [--no-gnutls]
 *
 * "Per core" = validations divided by the CPU time the server itself used:
 * for ours and the OpenSSL loop, the server thread's CPU clock from accept()
 * returning to close() (the same code path times both); for gnutls-serv,
 * utime+stime of its process.  The client's work and the shared machine's
 * load do not enter them the way they enter wall time.  Ours, the OpenSSL
 * loop and the arithmetic run in ROUNDS interleaved slices so that drift in
 * the machine's load hits all three alike.
 * gnutls-serv binds the wildcard address, so the program re-executes itself in
 * a private network namespace (unshare -rn) when it can.
 *
 * The SRP arithmetic and the OpenSSL loop use OpenSSL's deprecated SRP API:
 * like pvp/srp.c, this one file raises the API compatibility level.
 */
#define OPENSSL_API_COMPAT 0x10100000L

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
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
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/srp.h>
#include <openssl/ssl.h>

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

/* What one side of the comparison did, summed over the interleaved rounds. */
typedef struct tally {
	int done;     /* handshakes or validations that succeeded */
	double cpu_s; /* server thread CPU time spent on them */
	double wall_s;
} tally_t;

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

/* \p n validations against our server; adds to \p tally. 0, or -1 if any validation failed. */
static int bench_ours(int n, unsigned bits, uint64_t start_s, tally_t *tally)
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
	tally->wall_s += mono_s() - w0;
	close(t.lfd);
	pvp_server_free(t.srv);
	if (t.ok == n && t.cpu_s > 0) {
		tally->done += n;
		tally->cpu_s += t.cpu_s;
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
	         "timeout 30 script -qc \"srptool --passwd tpasswd --passwd-conf tpasswd.conf -u '%s' -i %d\" /dev/null >/dev/null",
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
		         "timeout 10 gnutls-cli --srpusername='%s' --srppasswd='%s' --priority='NORMAL:-VERS-TLS1.3:+SRP' "
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

/* ---- minimal OpenSSL TLS-SRP server: the handshake and nothing else ---------- */

/*
 * The same suites, version and options as pvp/srp.c's context (TLS 1.2 only,
 * SRP-AES-256/128-CBC-SHA, no tickets, no session cache), so both servers run
 * the same handshake; what ours does on top (salt and password derivation,
 * the record store lookup, rate limits, ValExchange, ticket) is our cost.
 */
#define BASE_CIPHERS "SRP-AES-256-CBC-SHA:SRP-AES-128-CBC-SHA:@SECLEVEL=0"

typedef struct base_srv {
	SSL_CTX *ctx;
	const SRP_gN *gn;
	const char *pass; /* the one password this server knows */
	BIGNUM *salt;
	int lfd, count, ok;
	double cpu_s;
} base_srv_t;

static SSL_CTX *base_ctx(const SSL_METHOD *meth)
{
	SSL_CTX *ctx = SSL_CTX_new(meth);
	if (!ctx)
		return NULL;
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) || !SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION) ||
	    !SSL_CTX_set_cipher_list(ctx, BASE_CIPHERS)) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	return ctx;
}

/* The verifier is derived for every handshake, as ours derives it from the call record (none is stored). */
static int base_user_cb(SSL *s, int *ad, void *arg)
{
	base_srv_t *b = arg;
	const char *user = SSL_get_srp_username(s);
	BIGNUM *salt = b->salt, *v = NULL;
	int ok;

	*ad = SSL_AD_INTERNAL_ERROR;
	if (!user || !SRP_create_verifier_BN(user, b->pass, &salt, &v, b->gn->N, b->gn->g))
		return SSL3_AL_FATAL;
	ok = SSL_set_srp_server_param(s, b->gn->N, b->gn->g, salt, v, NULL);
	BN_clear_free(v);
	return ok ? SSL_ERROR_NONE : SSL3_AL_FATAL;
}

static void *base_serve(void *arg)
{
	base_srv_t *b = arg;
	for (int i = 0; i < b->count; i++) {
		int fd = accept(b->lfd, NULL, NULL);
		double c0;
		SSL *ssl;
		if (fd < 0)
			break;
		/* Timed like ours: from accept() returning to the connection's state freed, close() excluded. */
		c0 = thread_cpu_s();
		ssl = SSL_new(b->ctx);
		if (ssl && SSL_set_fd(ssl, fd) && SSL_accept(ssl) == 1) {
			b->ok++;
			SSL_shutdown(ssl);
		}
		SSL_free(ssl);
		ERR_clear_error();
		b->cpu_s += thread_cpu_s() - c0;
		close(fd);
	}
	return NULL;
}

/* \p n handshakes of an OpenSSL SRP client against the minimal server; adds to \p tally. 0 or -1. */
static int bench_openssl(int n, unsigned bits, const char *user, const char *pass, tally_t *tally)
{
	char id[16];
	uint8_t saltb[16];
	base_srv_t b;
	SSL_CTX *cctx = NULL;
	pthread_t th;
	uint16_t port;
	double w0;
	int rc = -1, ok = 0;

	memset(&b, 0, sizeof(b));
	b.lfd = -1;
	snprintf(id, sizeof(id), "%u", bits);
	b.gn = SRP_get_default_gN(id);
	b.pass = pass;
	b.count = n;
	/* A 16-byte salt with its top bit set, like ours (pvp/srp.c): the same SHA-1 input length. */
	if (!b.gn || RAND_bytes(saltb, sizeof(saltb)) != 1)
		return -1;
	saltb[0] |= 0x80;
	b.salt = BN_bin2bn(saltb, sizeof(saltb), NULL);
	b.ctx = base_ctx(TLS_server_method());
	cctx = base_ctx(TLS_client_method());
	if (!b.salt || !b.ctx || !cctx || !SSL_CTX_set_srp_username(cctx, (char *)user) ||
	    !SSL_CTX_set_srp_password(cctx, (char *)pass))
		goto out;
	SSL_CTX_set_srp_username_callback(b.ctx, base_user_cb);
	SSL_CTX_set_srp_cb_arg(b.ctx, &b);
	if (vp_net_listen_tcp("127.0.0.1", 0, 64, 0, &b.lfd, &port))
		goto out;
	if (pthread_create(&th, NULL, base_serve, &b))
		goto out;
	w0 = mono_s();
	for (int i = 0; i < n; i++) {
		SSL *ssl = NULL;
		int fd;
		char c;
		if (vp_net_connect_tcp("127.0.0.1", port, 10000, VP_NET_NUMERIC, &fd))
			break;
		ssl = SSL_new(cctx);
		if (ssl && SSL_set_fd(ssl, fd) && SSL_connect(ssl) == 1) {
			ok++;
			/* Wait for the server's close_notify, so it never writes to a closed socket. */
			(void)SSL_read(ssl, &c, 1);
		}
		SSL_free(ssl);
		ERR_clear_error();
		close(fd);
	}
	/* A connection the client could not make leaves the server in accept(): shut it out. */
	shutdown(b.lfd, SHUT_RDWR);
	pthread_join(th, NULL);
	tally->wall_s += mono_s() - w0;
	if (ok == n && b.ok == n && b.cpu_s > 0) {
		tally->done += n;
		tally->cpu_s += b.cpu_s;
		rc = 0;
	} else {
		fprintf(stderr, "pvp-bench: openssl baseline: %d/%d client, %d/%d server handshakes\n", ok, n, b.ok, n);
	}
out:
	if (b.lfd >= 0)
		close(b.lfd);
	SSL_CTX_free(cctx);
	SSL_CTX_free(b.ctx);
	BN_free(b.salt);
	return rc;
}

/* ---- bare SRP arithmetic: one server-side handshake ------------------------ */

/* \p n server-side SRP computations; adds their thread CPU time to \p tally. 0 or -1. */
static int bench_arith(int n, unsigned bits, tally_t *tally)
{
	char id[16];
	const SRP_gN *gn;
	BIGNUM *salt = NULL, *v = NULL, *b = BN_new(), *a = BN_new(), *A = NULL, *B = NULL, *u = NULL, *S = NULL;
	double c0, dt;
	int done = 0;
	snprintf(id, sizeof(id), "%u", bits);
	gn = SRP_get_default_gN(id);
	if (!gn || !a || !b) {
		BN_free(a);
		BN_free(b);
		return -1;
	}
	BN_rand(a, 256, -1, 0);
	A = SRP_Calc_A(a, gn->N, gn->g);
	c0 = thread_cpu_s();
	for (int i = 0; i < n; i++) {
		/* What our server computes per handshake: the verifier from the call record, B, u, S. */
		BN_clear_free(v);
		v = NULL;
		if (!SRP_create_verifier_BN("v1.a.498682.23.3000.0.abababababababababababababababab",
		                            "v1.a.+14085551234.+33123456789.29920937.45", &salt, &v, gn->N, gn->g))
			break;
		BN_rand(b, 384, -1, 0); /* OpenSSL's b: SSL_MAX_MASTER_KEY_LENGTH bytes */
		BN_free(B);
		B = SRP_Calc_B(b, gn->N, gn->g, v);
		BN_free(u);
		u = SRP_Calc_u(A, B, gn->N);
		BN_clear_free(S);
		S = SRP_Calc_server_key(A, v, u, b, gn->N);
		if (!B || !u || !S)
			break;
		done++;
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
	if (done != n)
		return -1;
	tally->done += n;
	tally->cpu_s += dt;
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: pvp-bench [-n VALIDATIONS] [-g GROUP_BITS] [-r ROUNDS] [--no-gnutls]\n"
	        "\n"
	        "Full PVP validations per second per core of our server (TLS-SRP handshake,\n"
	        "ValExchange, ticket), per the server thread's CPU clock, against:\n"
	        "  the bare SRP server arithmetic (verifier, B, u, S): the bound, the headline ratio;\n"
	        "  a minimal OpenSSL TLS-SRP server doing only the handshake, timed the same way;\n"
	        "  gnutls-serv --echo with one gnutls-cli per handshake (its process's CPU time).\n"
	        "\n"
	        "  -n, --validations N  validations (and handshakes of each baseline), default 200\n"
	        "  -g, --group BITS     RFC 5054 group: 2048 (default), 3072, 4096, 6144, 8192\n"
	        "  -r, --rounds R       interleaved slices of ours, OpenSSL and the arithmetic, default 4\n"
	        "      --no-gnutls      skip the gnutls-serv line (needs gnutls-bin otherwise)\n"
	        "  -h, --help           this text\n"
	        "\n"
	        "Prints 'name value unit (baseline value unit, ratio x)'; ratios are ours/baseline\n"
	        "(rates: above 1 is better for us).  Re-executes itself under unshare -rn when it can.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "validations", required_argument, NULL, 'n' }, { "group", required_argument, NULL, 'g' },
		{ "rounds", required_argument, NULL, 'r' },      { "no-gnutls", no_argument, NULL, 'G' },
		{ "help", no_argument, NULL, 'h' },              { NULL, 0, NULL, 0 },
	};
	int n = 200, rounds = 4, c;
	bool with_gnutls = true;
	unsigned bits = 2048;
	double ours, base, arith, gnutls = 0, sel_ms;
	tally_t t_ours = { 0 }, t_base = { 0 }, t_arith = { 0 };
	uint64_t start_s = vp_time_wall_ms() / 1000 - 600;
	char user[PVP_USER_MAX], pass[PVP_PASS_MAX];
	double load[1] = { -1 };
	pvp_vcr_t orig;

	while ((c = getopt_long(argc, argv, "n:g:r:h", opts, NULL)) != -1) {
		if (c == 'n')
			n = atoi(optarg);
		else if (c == 'g')
			bits = (unsigned)atoi(optarg);
		else if (c == 'r')
			rounds = atoi(optarg);
		else if (c == 'G')
			with_gnutls = false;
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
	if (n < 1)
		n = 1;
	if (rounds < 1 || rounds > n)
		rounds = rounds < 1 ? 1 : n;
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
	if (getloadavg(load, 1) != 1)
		load[0] = -1;

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
	/* Interleaved slices: a change in the machine's load during the run hits all three alike. */
	for (int r = 0; r < rounds; r++) {
		int k = n / rounds + (r < n % rounds);
		if (bench_ours(k, bits, start_s, &t_ours)) {
			fprintf(stderr, "pvp-bench: our server run failed\n");
			return 1;
		}
		if (bench_openssl(k, bits, user, pass, &t_base)) {
			fprintf(stderr, "pvp-bench: openssl baseline run failed\n");
			return 1;
		}
		if (bench_arith(k, bits, &t_arith)) {
			fprintf(stderr, "pvp-bench: srp arithmetic run failed\n");
			return 1;
		}
	}
	ours = t_ours.done / t_ours.cpu_s;
	base = t_base.done / t_base.cpu_s;
	arith = t_arith.done / t_arith.cpu_s;
	printf("pvp_validations_vs_srp_bound %.0f validations/s/core (srp server arithmetic bound %.0f handshakes/s/core, ratio %.2fx)\n",
	       ours, arith, ours / arith);
	printf("pvp_validations_vs_openssl %.0f validations/s/core (minimal openssl tls-srp server, handshake only, %.0f handshakes/s/core, ratio %.2fx)\n",
	       ours, base, ours / base);
	if (!with_gnutls)
		printf("# gnutls-serv line skipped (--no-gnutls)\n");
	else if (bench_gnutls(n, bits, user, pass, &gnutls))
		printf("# gnutls-serv line skipped: gnutls-serv, gnutls-cli or srptool unavailable or failing\n");
	else
		printf("pvp_validations_vs_gnutls_serv %.0f validations/s/core (gnutls-serv --echo, one gnutls-cli per handshake, %.0f handshakes/s/core, ratio %.2fx)\n",
		       ours, gnutls, ours / gnutls);
	printf("pvp_openssl_handshake_vs_srp_bound %.0f handshakes/s/core (srp server arithmetic bound %.0f handshakes/s/core, ratio %.2fx)\n",
	       base, arith, base / arith);
	printf("pvp_validations_wall %.0f validations/s (minimal openssl server %.0f handshakes/s; client and server in one process, %ld cores)\n",
	       t_ours.done / t_ours.wall_s, t_base.done / t_base.wall_s, sysconf(_SC_NPROCESSORS_ONLN));
	printf("pvp_selector_pbkdf2 %.2f ms/selector (%d iterations of HMAC-SHA-256)\n", sel_ms, PVP_SEL_ITER);
	printf("# group %u bits, %d validations and %d handshakes per baseline in %d interleaved rounds; "
	       "per-core figures are the server thread's CPU clock (gnutls-serv: its process's utime+stime); "
	       "load average %.1f on %ld cores at start (shared machine: wall figures are noise)\n",
	       bits, n, n, rounds, load[0], sysconf(_SC_NPROCESSORS_ONLN));
	return 0;
}
