/*
 * The PVP client's SRP group checks against a hostile server: a raw OpenSSL
 * TLS-SRP server (not ours) that knows the right password but offers a group
 * of its choosing.  A known group must authenticate (the control), an
 * unknown 2048-bit group (RFC 3526 MODP, not an SRP group) and a small one
 * must be refused as a TLS failure, not counted as a wrong guess.
 *
 * Like pvp/srp.c, this file uses OpenSSL's deprecated SRP server API.
 */
#define OPENSSL_API_COMPAT 0x10100000L

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/srp.h>
#include <openssl/ssl.h>

#include "harness.h"
#include "common/errcode.h"
#include "common/log.h"

#define A_NUM "+14085551234"
#define B_NUM "+33123456789"
#define CALL_MS (183 * 1000ull)

typedef struct evil {
	int lfd;
	char port[8];
	pthread_t th;
	const BIGNUM *N, *g;
	char user[PVP_USER_MAX], pass[PVP_PASS_MAX];
	int handshakes_ok; /* server side: handshakes that completed */
} evil_t;

static int evil_user_cb(SSL *s, int *ad, void *arg)
{
	evil_t *e = arg;
	BIGNUM *salt = BN_new(), *v = NULL;
	int ret = SSL3_AL_FATAL;
	(void)ad;
	/* The verifier for the real password, in the group the server picked. */
	if (salt && BN_set_word(salt, 0x5a5a5a5a) &&
	    SRP_create_verifier_BN(e->user, e->pass, &salt, &v, e->N, e->g) &&
	    SSL_set_srp_server_param(s, e->N, e->g, salt, v, NULL))
		ret = SSL_ERROR_NONE;
	BN_free(salt);
	BN_free(v);
	return ret;
}

/* Serves one connection (the client gives up after the first failure of this kind). */
static void *evil_serve(void *arg)
{
	evil_t *e = arg;
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	struct pollfd p = { .fd = e->lfd, .events = POLLIN };
	SSL *ssl;
	int fd;

	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_cipher_list(ctx, "SRP-AES-256-CBC-SHA:SRP-AES-128-CBC-SHA:@SECLEVEL=0");
	SSL_CTX_set_srp_username_callback(ctx, evil_user_cb);
	SSL_CTX_set_srp_cb_arg(ctx, e);
	if (poll(&p, 1, 20000) == 1 && (fd = accept(e->lfd, NULL, NULL)) >= 0) {
		struct timeval tv = { 10, 0 };
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		ssl = SSL_new(ctx);
		SSL_set_fd(ssl, fd);
		if (SSL_accept(ssl) == 1)
			e->handshakes_ok++;
		SSL_free(ssl);
		close(fd);
	}
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return NULL;
}

static void evil_start(evil_t *e, const BIGNUM *N, const BIGNUM *g, const pvp_vcr_t *r)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t alen = sizeof(a);
	signal(SIGPIPE, SIG_IGN);
	memset(e, 0, sizeof(*e));
	e->N = N;
	e->g = g;
	/* The client's first try: method "a", candidate 0, no shift. */
	assert_int_equal(pvp_client_creds(r, PVP_METHOD_A, 0, 0, e->user, e->pass), 0);
	e->lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(e->lfd >= 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(e->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(e->lfd, 4), 0);
	assert_int_equal(getsockname(e->lfd, (struct sockaddr *)&a, &alen), 0);
	snprintf(e->port, sizeof(e->port), "%u", ntohs(a.sin_port));
	assert_int_equal(pthread_create(&e->th, NULL, evil_serve, e), 0);
}

/* Validate against the evil server; returns the client's result. */
static int run(const BIGNUM *N, const BIGNUM *g, pvp_validation_t *v, int *server_ok)
{
	pvp_client_conf_t cc = { .domain = "carrier-b.example", .io_timeout_ms = 5000,
	                         .max_tries = 1, .max_shift = PVP_NO_SHIFT, .max_candidates = 1 };
	pvp_vcr_t r = h_orig(A_NUM, B_NUM, T0_MS, T0_MS + CALL_MS);
	pvp_client_t *cli;
	pvp_tcp_target_t t = { "127.0.0.1", NULL, 5000 };
	evil_t e;
	h_orig_side_t side;
	int rc;

	evil_start(&e, N, g, &r);
	t.port = e.port;
	h_orig_side_open(&side, NULL, NULL);
	cc.ledger = side.ledger;
	assert_int_equal(pvp_client_new(&cc, &cli), 0);
	rc = pvp_client_validate(cli, "evil", &r, PVP_MBIT(PVP_METHOD_A), pvp_tcp_connect, &t, NULL, 0, v);
	pthread_join(e.th, NULL);
	close(e.lfd);
	pvp_client_free(cli);
	h_orig_side_close(&side, false);
	*server_ok = e.handshakes_ok;
	return rc;
}

static void known_group_authenticates(void **state)
{
	const SRP_gN *gn = SRP_get_default_gN("2048");
	pvp_validation_t v;
	int ok, rc;
	(void)state;
	assert_non_null(gn);
	rc = run(gn->N, gn->g, &v, &ok);
	/* The evil server speaks no ValExchange, but the handshake itself completed. */
	assert_true(v.authenticated);
	assert_int_equal(ok, 1);
	assert_true(rc != 0 && rc != VP_EAUTH);
}

static void unknown_2048_bit_group_refused(void **state)
{
	BIGNUM *N = BN_get_rfc3526_prime_2048(NULL), *g = BN_new();
	pvp_validation_t v;
	int ok, rc;
	(void)state;
	assert_non_null(N);
	assert_non_null(g);
	assert_int_equal(BN_set_word(g, 2), 1);
	assert_int_equal(BN_num_bits(N), 2048);
	rc = run(N, g, &v, &ok);
	assert_int_equal(rc, VP_ETLS);
	assert_false(v.authenticated);
	assert_int_equal(ok, 0);
	BN_free(N);
	BN_free(g);
}

static void small_known_group_refused(void **state)
{
	const SRP_gN *gn = SRP_get_default_gN("1536");
	pvp_validation_t v;
	int ok, rc;
	(void)state;
	assert_non_null(gn);
	rc = run(gn->N, gn->g, &v, &ok);
	assert_int_equal(rc, VP_ETLS);
	assert_false(v.authenticated);
	assert_int_equal(ok, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(known_group_authenticates),
		cmocka_unit_test(unknown_2048_bit_group_refused),
		cmocka_unit_test(small_known_group_refused),
	};
	vp_log_setup(VP_LOG_ERROR, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
