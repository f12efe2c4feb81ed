/*
 * The server side of ValExchange against a hand-driven client: after a good
 * TLS-SRP handshake, requests with a foreign channel binding, another number,
 * bad bytes or another version are refused with the documented reason.
 * (A raw OpenSSL SRP client: this test file, like pvp/srp.c, raises the API level.)
 */
#define OPENSSL_API_COMPAT 0x10100000L

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/ssl.h>

#include "harness.h"
#include "common/errcode.h"
#include "common/log.h"

#define NUM "+14085551234"
#define CALLER "+33123456789"

static char g_pass[PVP_PASS_MAX];

static char *pwd_cb(SSL *s, void *arg)
{
	(void)s;
	(void)arg;
	return OPENSSL_strdup(g_pass);
}

/* A TLS 1.2 SRP client context with the credentials of an originating record for NUM. */
static SSL_CTX *client_ctx(long options)
{
	pvp_vcr_t r = h_orig(NUM, CALLER, T0_MS, T0_MS + 183000);
	static char user[PVP_USER_MAX];
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	assert_int_equal(pvp_client_creds(&r, PVP_METHOD_A, 0, 0, user, g_pass), 0);
	assert_non_null(ctx);
	SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, options);
	assert_int_equal(SSL_CTX_set_cipher_list(ctx, "SRP-AES-128-CBC-SHA:@SECLEVEL=0"), 1);
	SSL_CTX_set_srp_username(ctx, user);
	SSL_CTX_set_srp_client_pwd_callback(ctx, pwd_cb);
	SSL_CTX_set_srp_strength(ctx, 2048);
	return ctx;
}

/* Handshake with the right credentials, send \p body (a ValRequest body), return the response. */
static void exchange(h_claimant_t *c, const uint8_t *body, size_t len, bool fix_binding, pvp_valresp_t *resp)
{
	uint8_t frame[2 + PVP_VALX_MAX], in[2 + PVP_VALX_MAX];
	SSL_CTX *ctx = client_ctx(0);
	SSL *ssl;
	int fd, got = 0, n;

	assert_int_equal(pvp_tcp_connect(&c->target, &fd), 0);
	ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	assert_int_equal(SSL_connect(ssl), 1);
	memcpy(frame + 2, body, len);
	if (fix_binding) /* the right exporter value at its offset */
		assert_int_equal(SSL_export_keying_material(ssl, frame + 4, 32, PVP_EXPORTER_LABEL,
		                                            strlen(PVP_EXPORTER_LABEL), NULL, 0, 0), 1);
	frame[0] = (uint8_t)(len >> 8);
	frame[1] = (uint8_t)len;
	assert_int_equal(SSL_write(ssl, frame, (int)len + 2), (int)len + 2);
	while (got < 2 || got < 2 + (in[0] << 8 | in[1])) {
		n = SSL_read(ssl, in + got, (int)sizeof(in) - got);
		assert_true(n > 0);
		got += n;
	}
	assert_int_equal(pvp_valresp_decode(in + 2, (size_t)got - 2, resp), 0);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(fd);
}

static size_t request(const char *number, uint8_t *out)
{
	pvp_valreq_t q;
	size_t n;
	memset(&q, 0, sizeof(q));
	memset(q.binding, 0x5e, sizeof(q.binding));
	strcpy(q.number, number);
	strcpy(q.domain, "carrier-b.example");
	assert_int_equal(pvp_valreq_encode(&q, out, PVP_VALX_MAX, &n), 0);
	return n;
}

static void good_request_gets_routes(void **state)
{
	h_claimant_t c;
	uint8_t body[PVP_VALX_MAX];
	pvp_valresp_t resp;
	size_t n = request(NUM, body);
	(void)state;
	h_claimant_start(&c, NULL, 0);
	h_claimant_add(&c, NUM, CALLER, T0_MS, T0_MS + 183000);
	exchange(&c, body, n, true, &resp);
	assert_int_equal(resp.status, PVP_ST_ROUTES);
	h_claimant_stop(&c);
}

static void foreign_channel_binding_refused(void **state)
{
	h_claimant_t c;
	uint8_t body[PVP_VALX_MAX];
	pvp_valresp_t resp;
	size_t n = request(NUM, body);
	(void)state;
	h_claimant_start(&c, NULL, 0);
	h_claimant_add(&c, NUM, CALLER, T0_MS, T0_MS + 183000);
	/* A request spliced from another TLS session carries that session's exporter. */
	exchange(&c, body, n, false, &resp);
	assert_int_equal(resp.status, PVP_ST_REFUSED);
	assert_int_equal(resp.reason, PVP_RF_BINDING);
	assert_int_equal(resp.ticket_len, 0);
	h_claimant_wait(&c, 1);
	assert_int_equal(c.results[0].outcome, PVP_OUT_REFUSED);
	h_claimant_stop(&c);
}

static void other_number_refused(void **state)
{
	h_claimant_t c;
	uint8_t body[PVP_VALX_MAX];
	pvp_valresp_t resp;
	size_t n = request("+14085550000", body);
	(void)state;
	h_claimant_start(&c, NULL, 0);
	h_claimant_add(&c, NUM, CALLER, T0_MS, T0_MS + 183000);
	/* Proved the call to NUM, asks a ticket for another number. */
	exchange(&c, body, n, true, &resp);
	assert_int_equal(resp.status, PVP_ST_REFUSED);
	assert_int_equal(resp.reason, PVP_RF_NUMBER);
	h_claimant_stop(&c);
}

/* A client that does not negotiate the extended master secret gets no ValExchange answer. */
static void client_without_extended_master_secret_refused(void **state)
{
	h_claimant_t c;
	uint8_t frame[2 + PVP_VALX_MAX], in[64];
	size_t len = request(NUM, frame + 2);
	SSL_CTX *ctx;
	SSL *ssl;
	int fd;
	(void)state;
	h_claimant_start(&c, NULL, 0);
	h_claimant_add(&c, NUM, CALLER, T0_MS, T0_MS + 183000);
	ctx = client_ctx(SSL_OP_NO_EXTENDED_MASTER_SECRET);
	assert_int_equal(pvp_tcp_connect(&c.target, &fd), 0);
	ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	assert_int_equal(SSL_connect(ssl), 1); /* the password proof itself succeeds */
	assert_int_equal(SSL_get_extms_support(ssl), 0);
	assert_int_equal(SSL_export_keying_material(ssl, frame + 4, 32, PVP_EXPORTER_LABEL,
	                                            strlen(PVP_EXPORTER_LABEL), NULL, 0, 0), 1);
	frame[0] = (uint8_t)(len >> 8);
	frame[1] = (uint8_t)len;
	SSL_write(ssl, frame, (int)len + 2); /* may fail if the server already closed */
	assert_true(SSL_read(ssl, in, (int)sizeof(in)) <= 0);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(fd);
	h_claimant_stop(&c);
}

static void malformed_and_unknown_version_refused(void **state)
{
	h_claimant_t c;
	uint8_t body[PVP_VALX_MAX];
	pvp_valresp_t resp;
	size_t n = request(NUM, body);
	(void)state;
	h_claimant_start(&c, NULL, 0);
	h_claimant_add(&c, NUM, CALLER, T0_MS, T0_MS + 183000);
	exchange(&c, body, n - 1, true, &resp);
	assert_int_equal(resp.status, PVP_ST_REFUSED);
	assert_int_equal(resp.reason, PVP_RF_MALFORMED);
	body[1] = 9;
	exchange(&c, body, n, true, &resp);
	assert_int_equal(resp.reason, PVP_RF_VERSION);
	h_claimant_stop(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(good_request_gets_routes),
		cmocka_unit_test(foreign_channel_binding_refused),
		cmocka_unit_test(other_number_refused),
		cmocka_unit_test(malformed_and_unknown_version_refused),
		cmocka_unit_test(client_without_extended_master_secret_refused),
	};
	vp_log_setup(VP_LOG_ERROR, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
