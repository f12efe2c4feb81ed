/* VAP over TLS: the server's TLS path (handshake, pipelining, SSL_pending) and certificate checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "bench/support/vap_harness.h"
#include "common/errcode.h"
#include "common/log.h"

typedef struct pki {
	EVP_PKEY *key;
	X509 *cert;
} pki_t;

/* A self-signed P-256 certificate for DNS:<cn> and IP:127.0.0.1. */
static void make_cert(pki_t *p, const char *cn)
{
	X509_NAME *name;
	X509_EXTENSION *ext;
	X509V3_CTX v3;
	char san[128];
	p->key = EVP_EC_gen("P-256");
	assert_non_null(p->key);
	p->cert = X509_new();
	assert_non_null(p->cert);
	X509_set_version(p->cert, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(p->cert), 1);
	X509_gmtime_adj(X509_getm_notBefore(p->cert), -60);
	X509_gmtime_adj(X509_getm_notAfter(p->cert), 3600);
	X509_set_pubkey(p->cert, p->key);
	name = X509_get_subject_name(p->cert);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(p->cert, name);
	X509V3_set_ctx(&v3, p->cert, p->cert, NULL, NULL, 0);
	snprintf(san, sizeof(san), "DNS:%s,IP:127.0.0.1", cn);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
	assert_non_null(ext);
	X509_add_ext(p->cert, ext, -1);
	X509_EXTENSION_free(ext);
	assert_true(X509_sign(p->cert, p->key, EVP_sha256()) > 0);
}

static void free_cert(pki_t *p)
{
	X509_free(p->cert);
	EVP_PKEY_free(p->key);
}

static SSL_CTX *server_ctx(const pki_t *p)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	assert_non_null(ctx);
	assert_int_equal(SSL_CTX_use_certificate(ctx, p->cert), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey(ctx, p->key), 1);
	return ctx;
}

static SSL_CTX *client_ctx(const pki_t *trust)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(ctx);
	assert_int_equal(X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), trust->cert), 1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	return ctx;
}

static void session_over_tls(void **state)
{
	pki_t srv_pki;
	SSL_CTX *sctx, *cctx;
	vap_server_conf_t conf;
	harness_t h;
	vap_client_conf_t cc;
	vap_client_t *c;
	vap_range_t rg;
	uint64_t stored = 0;
	(void)state;
	make_cert(&srv_pki, "localhost");
	sctx = server_ctx(&srv_pki);
	cctx = client_ctx(&srv_pki);
	vap_server_conf_default(&conf);
	conf.tls = sctx;
	assert_int_equal(harness_start(&h, &conf, 1, true), 0);
	client_conf(&cc, &h, 0);
	cc.tls = cctx;
	cc.tls_name = "localhost";
	assert_int_equal(vap_client_connect(&cc, &c), 0);
	assert_int_equal(vap_range_parse("+1408555[0000-4999]", NULL, &rg), 0);
	assert_int_equal(vap_client_publish(c, 2, VAP_OP_ADD, NULL, 0, &rg, 1, &stored), 0);
	assert_int_equal(stored, 5000);
	assert_int_equal(vap_memstore_count(h.ms), 5000);
	/* 300 pipelined uploads: many records per TLS read exercise SSL_pending. */
	for (int i = 0; i < 300; i++) {
		vap_vcr_t v = { .called = "+14085551212", .start_ms = 1, .stop_ms = 2,
		                .direction = VAP_DIR_ORIGINATING };
		uint8_t tid[VAP_TID_LEN];
		assert_int_equal(vap_client_send_upload(c, &v, 1, tid), 0);
	}
	for (int i = 0; i < 300; i++) {
		uint8_t tid[VAP_TID_LEN];
		assert_int_equal(vap_client_recv_answer(c, tid, 5000), 0);
	}
	assert_int_equal(vap_memstore_vcrs(h.ms, NULL), 300);
	assert_int_equal(vap_client_unregister(c), 0);
	vap_client_close(c);
	harness_stop(&h);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	free_cert(&srv_pki);
}

static void untrusted_or_misnamed_certificate_refused(void **state)
{
	pki_t srv_pki, other;
	SSL_CTX *sctx, *cctx_other, *cctx_ok;
	vap_server_conf_t conf;
	harness_t h;
	vap_client_conf_t cc;
	vap_client_t *c = NULL;
	vap_server_stats_t st;
	(void)state;
	make_cert(&srv_pki, "localhost");
	make_cert(&other, "localhost");
	sctx = server_ctx(&srv_pki);
	cctx_other = client_ctx(&other);
	cctx_ok = client_ctx(&srv_pki);
	vap_server_conf_default(&conf);
	conf.tls = sctx;
	assert_int_equal(harness_start(&h, &conf, 1, false), 0);
	client_conf(&cc, &h, 0);
	cc.tls = cctx_other;
	cc.tls_name = "localhost";
	assert_int_equal(vap_client_connect(&cc, &c), VP_ETLS);
	cc.tls = cctx_ok;
	cc.tls_name = "vipr.example";     /* trusted, but not the name we asked for */
	assert_int_equal(vap_client_connect(&cc, &c), VP_ETLS);
	/* Plain TCP to a TLS server: nothing sensible comes back; the server survives. */
	cc.tls = NULL;
	cc.timeout_ms = 500;
	assert_true(vap_client_connect(&cc, &c) != 0);
	cc.tls = cctx_ok;
	cc.tls_name = "localhost";
	cc.timeout_ms = 5000;
	assert_int_equal(vap_client_connect(&cc, &c), 0);
	assert_int_equal(vap_client_keepalive(c), 0);
	vap_client_close(c);
	/* No name given: the address literal is checked against the IP SAN. */
	cc.tls_name = NULL;
	assert_int_equal(vap_client_connect(&cc, &c), 0);
	vap_client_close(c);
	usleep(20000);
	harness_stats(&h, &st);
	assert_true(st.conns_total >= 5);
	harness_stop(&h);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx_other);
	SSL_CTX_free(cctx_ok);
	free_cert(&srv_pki);
	free_cert(&other);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(session_over_tls),
		cmocka_unit_test(untrusted_or_misnamed_certificate_refused),
	};
	vp_log_setup(VP_LOG_ERROR, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
