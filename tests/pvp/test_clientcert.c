/*
 * Client certificates instead of tickets (docs/protocol.md §6.1): the issued
 * certificate's profile, the refusals of requests for another number or
 * domain or without proof of possession, and an adversary that cannot get a
 * certificate without validating.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/ec.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

#include "harness.h"
#include "common/errcode.h"
#include "pvp/clientcert.h"

#define A_NUM "+14085551234"
#define B_NUM "+33123456789"
#define OTHER_NUM "+14085550000"
#define CALL_MS (183 * 1000ull)

static h_orig_side_t side;

static int side_setup(void **state)
{
	(void)state;
	h_orig_side_open(&side, NULL, NULL);
	return 0;
}

static int side_teardown(void **state)
{
	(void)state;
	h_orig_side_close(&side, false);
	return 0;
}

static EVP_PKEY *ec_key(void)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	assert_non_null(k);
	return k;
}

/* A self-signed CA named \p cn (or, with ca = false, a self-signed end entity). */
static X509 *self_signed(EVP_PKEY *k, const char *cn, bool ca)
{
	X509 *x = X509_new();
	X509_NAME *n = X509_NAME_new();
	X509V3_CTX ctx;
	X509_EXTENSION *e;
	assert_non_null(x);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_NAME_add_entry_by_NID(n, NID_commonName, MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_subject_name(x, n);
	X509_set_issuer_name(x, n);
	X509_NAME_free(n);
	X509_gmtime_adj(X509_getm_notBefore(x), -86400L * 365 * 5);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 365 * 20);
	X509_set_pubkey(x, k);
	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	e = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
	X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
	if (ca) {
		e = X509V3_EXT_conf_nid(NULL, &ctx, NID_key_usage, "critical,keyCertSign");
		X509_add_ext(x, e, -1);
		X509_EXTENSION_free(e);
	}
	assert_true(X509_sign(x, k, EVP_sha256()) > 0);
	return x;
}

/* Write \p x and \p k as PEM files under \p dir and load them as an issuer. */
static int load_issuer(const char *dir, X509 *x, EVP_PKEY *k, uint32_t lifetime_s, pvp_cc_issuer_t **out)
{
	char cp[512], kp[512];
	FILE *f;
	snprintf(cp, sizeof(cp), "%s/issuer.crt", dir);
	snprintf(kp, sizeof(kp), "%s/issuer.key", dir);
	assert_non_null(f = fopen(cp, "w"));
	PEM_write_X509(f, x);
	fclose(f);
	assert_non_null(f = fopen(kp, "w"));
	PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	int rc = pvp_cc_issuer_load(cp, kp, lifetime_s, out);
	unlink(cp);
	unlink(kp);
	return rc;
}

typedef struct fixture {
	char dir[256];
	EVP_PKEY *ca_key;
	X509 *ca;
	pvp_cc_issuer_t *iss;
} fixture_t;

static void fixture_open(fixture_t *f, uint32_t lifetime_s)
{
	memset(f, 0, sizeof(*f));
	h_tmpdir(f->dir, sizeof(f->dir));
	f->ca_key = ec_key();
	f->ca = self_signed(f->ca_key, "ViPR issuer carrier-a.example", true);
	assert_int_equal(load_issuer(f->dir, f->ca, f->ca_key, lifetime_s, &f->iss), 0);
}

static void fixture_close(fixture_t *f)
{
	pvp_cc_issuer_free(f->iss);
	X509_free(f->ca);
	EVP_PKEY_free(f->ca_key);
	h_rmdir(f->dir);
}

/* A DER CSR with subject CN \p cn and, if \p san, that subjectAltName list, signed by \p k. */
static size_t csr_with(EVP_PKEY *k, const char *cn, const char *san, uint8_t *out)
{
	X509_REQ *req = X509_REQ_new();
	X509_NAME *n = X509_NAME_new();
	unsigned char *o = out;
	X509_NAME_add_entry_by_NID(n, NID_commonName, MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_REQ_set_subject_name(req, n);
	X509_NAME_free(n);
	X509_REQ_set_pubkey(req, k);
	if (san) {
		STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
		sk_X509_EXTENSION_push(exts, X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san));
		X509_REQ_add_extensions(req, exts);
		sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	}
	assert_true(X509_REQ_sign(req, k, EVP_sha256()) > 0);
	int len = i2d_X509_REQ(req, NULL);
	assert_true(len > 0 && len <= PVP_CC_DER_MAX);
	i2d_X509_REQ(req, &o);
	X509_REQ_free(req);
	return (size_t)len;
}

static pvp_cc_refusal_t issue_refusal(const fixture_t *f, const uint8_t *csr, size_t len, const char *number,
                                      const char *domain)
{
	uint8_t der[PVP_CC_DER_MAX];
	size_t dl = 0;
	pvp_cc_refusal_t why = PVP_CCR_NONE;
	int rc = pvp_cc_issue(f->iss, csr, len, number, domain, 1795256243, 1795256243 + 86400, der, sizeof(der), &dl,
	                      &why);
	if (rc == 0)
		assert_int_equal(why, PVP_CCR_NONE);
	else
		assert_int_equal(rc, VP_EREFUSED);
	return why;
}

static pvp_client_t *client(const char *domain, EVP_PKEY *key)
{
	pvp_client_conf_t cc;
	pvp_client_t *cli;
	memset(&cc, 0, sizeof(cc));
	cc.domain = domain;
	cc.io_timeout_ms = 5000;
	cc.ledger = side.ledger;
	cc.cert_key = key;
	assert_int_equal(pvp_client_new(&cc, &cli), 0);
	return cli;
}

static X509 *parse(const uint8_t *der, size_t len)
{
	const unsigned char *p = der;
	X509 *x = d2i_X509(NULL, &p, (long)len);
	assert_non_null(x);
	assert_ptr_equal(p, der + len);
	return x;
}

static void issuer_load_checks_key_pair_and_ca(void **state)
{
	fixture_t f;
	pvp_cc_issuer_t *iss = (pvp_cc_issuer_t *)1;
	EVP_PKEY *other = ec_key();
	X509 *leaf;
	(void)state;
	fixture_open(&f, 0);
	assert_int_equal(f.iss->lifetime_s, PVP_CC_LIFETIME_DEFAULT_S);
	/* the certificate of one key with another key */
	assert_int_equal(load_issuer(f.dir, f.ca, other, 0, &iss), VP_ECONFIG);
	assert_null(iss);
	/* not a CA: a border would never accept what it signs, so refuse it at start-up */
	leaf = self_signed(other, "not-a-ca.example", false);
	assert_int_equal(load_issuer(f.dir, leaf, other, 0, &iss), VP_ECONFIG);
	assert_int_equal(pvp_cc_issuer_load("/nonexistent/issuer.crt", "/nonexistent/issuer.key", 0, &iss), VP_EIO);
	X509_free(leaf);
	EVP_PKEY_free(other);
	fixture_close(&f);
}

/* The owner validates and receives a certificate: its number, its domain, its key, short-lived, from the issuer. */
static void validated_client_gets_cert_for_number_and_domain(void **state)
{
	fixture_t f;
	h_claimant_t c;
	EVP_PKEY *key = ec_key();
	pvp_client_t *cli = client("Carrier-B.example", key);
	pvp_validation_t v;
	pvp_vcr_t r = h_orig(A_NUM, B_NUM, T0_MS + 400, T0_MS + CALL_MS + 900);
	pvp_cc_identity_t id;
	(void)state;

	fixture_open(&f, 600); /* ten minutes: shorter than the route, so the issuer's cap decides */
	h_claimant_start_issuer(&c, NULL, f.iss);
	h_claimant_add(&c, A_NUM, B_NUM, T0_MS + 2000, T0_MS + CALL_MS + 2300);
	assert_int_equal(pvp_client_validate(cli, c.port, &r, PVP_METHODS_ALL, pvp_tcp_connect, &c.target, NULL, 0, &v), 0);
	assert_int_equal(v.resp.status, PVP_ST_ROUTES);
	assert_true(v.cert_len > 0);
	X509 *x = parse(v.cert, v.cert_len);
	assert_int_equal(pvp_cc_identity(x, f.ca, &id), 0);
	assert_string_equal(id.number, A_NUM);
	assert_string_equal(id.domain, "carrier-b.example");
	uint64_t now_s = c.clock_ms / 1000;
	assert_int_equal(id.not_before_s, now_s - PVP_CC_SKEW_S);
	assert_int_equal(id.not_after_s, now_s + 600);
	assert_true(id.not_after_s <= v.resp.expires);
	/* the certified key is the client's, and only the issuer's key signed it */
	assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(x), key), 1);
	assert_int_equal(X509_verify(x, X509_get0_pubkey(f.ca)), 1);
	/* the profile: end entity, client authentication only */
	assert_int_equal(X509_check_ca(x), 0);
	assert_true(X509_get_extended_key_usage(x) & XKU_SSL_CLIENT);
	assert_false(X509_get_extended_key_usage(x) & XKU_SSL_SERVER);
	assert_true(X509_get_key_usage(x) & KU_DIGITAL_SIGNATURE);
	assert_false(X509_get_key_usage(x) & KU_KEY_CERT_SIGN);
	X509_free(x);
	h_claimant_stop(&c);
	pvp_client_free(cli);
	EVP_PKEY_free(key);
	fixture_close(&f);
}

/* A route that ends before the issuer's lifetime caps the certificate: it never outlives the route. */
static void cert_never_outlives_the_route(void **state)
{
	fixture_t f;
	uint8_t csr[PVP_CC_DER_MAX], der[PVP_CC_DER_MAX];
	size_t dl;
	pvp_cc_refusal_t why;
	pvp_cc_identity_t id;
	EVP_PKEY *key = ec_key();
	(void)state;
	fixture_open(&f, 0);
	size_t n = csr_with(key, "carrier-b.example", "DNS:carrier-b.example", csr);
	assert_int_equal(pvp_cc_issue(f.iss, csr, n, A_NUM, "carrier-b.example", 1000000, 1000300, der, sizeof(der), &dl,
	                              &why), 0);
	X509 *x = parse(der, dl);
	assert_int_equal(pvp_cc_identity(x, f.ca, &id), 0);
	assert_int_equal(id.not_after_s, 1000300);
	X509_free(x);
	/* a route already over gets nothing */
	assert_int_equal(pvp_cc_issue(f.iss, csr, n, A_NUM, "carrier-b.example", 1000000, 1000000, der, sizeof(der), &dl,
	                              &why), VP_EREFUSED);
	assert_int_equal(why, PVP_CCR_INTERNAL);
	EVP_PKEY_free(key);
	fixture_close(&f);
}

static void request_for_another_domain_refused(void **state)
{
	fixture_t f;
	uint8_t csr[PVP_CC_DER_MAX];
	EVP_PKEY *key = ec_key();
	(void)state;
	fixture_open(&f, 0);
	/* control: the validated domain (any case) is issued */
	size_t n = csr_with(key, "Carrier-B.example", NULL, csr);
	assert_int_equal(issue_refusal(&f, csr, n, A_NUM, "carrier-b.example"), PVP_CCR_NONE);
	/* subject CN of another domain */
	n = csr_with(key, "carrier-c.example", NULL, csr);
	assert_int_equal(issue_refusal(&f, csr, n, A_NUM, "carrier-b.example"), PVP_CCR_DOMAIN);
	/* the right CN, but a second DNS name asked for */
	n = csr_with(key, "carrier-b.example", "DNS:carrier-b.example,DNS:carrier-c.example", csr);
	assert_int_equal(issue_refusal(&f, csr, n, A_NUM, "carrier-b.example"), PVP_CCR_DOMAIN);
	/* a subdomain is another domain */
	n = csr_with(key, "sip.carrier-b.example", NULL, csr);
	assert_int_equal(issue_refusal(&f, csr, n, A_NUM, "carrier-b.example"), PVP_CCR_DOMAIN);
	/* an IP address name is nothing the profile grants */
	n = csr_with(key, "carrier-b.example", "IP:127.0.0.1", csr);
	assert_int_equal(issue_refusal(&f, csr, n, A_NUM, "carrier-b.example"), PVP_CCR_DOMAIN);
	EVP_PKEY_free(key);
	fixture_close(&f);
}

static void request_for_another_number_refused(void **state)
{
	fixture_t f;
	uint8_t csr[PVP_CC_DER_MAX], der[PVP_CC_DER_MAX];
	size_t dl;
	pvp_cc_refusal_t why;
	pvp_cc_identity_t id;
	EVP_PKEY *key = ec_key();
	(void)state;
	fixture_open(&f, 0);
	size_t n = csr_with(key, "carrier-b.example", "URI:tel:" OTHER_NUM, csr);
	assert_int_equal(issue_refusal(&f, csr, n, A_NUM, "carrier-b.example"), PVP_CCR_NUMBER);
	n = csr_with(key, "carrier-b.example", "URI:tel:" A_NUM ",URI:tel:" OTHER_NUM, csr);
	assert_int_equal(issue_refusal(&f, csr, n, A_NUM, "carrier-b.example"), PVP_CCR_NUMBER);
	/* asking for the validated number is fine, and the number comes from the validation either way */
	n = csr_with(key, "carrier-b.example", "URI:tel:" A_NUM, csr);
	assert_int_equal(pvp_cc_issue(f.iss, csr, n, A_NUM, "carrier-b.example", 1000000, 2000000, der, sizeof(der), &dl,
	                              &why), 0);
	X509 *x = parse(der, dl);
	assert_int_equal(pvp_cc_identity(x, f.ca, &id), 0);
	assert_string_equal(id.number, A_NUM);
	X509_free(x);
	/* the client refuses a certificate naming another number than the one it validated */
	uint8_t body[PVP_CC_DER_MAX + 8], got[PVP_CC_DER_MAX];
	size_t bl, gl;
	assert_int_equal(pvp_cc_resp_encode(0, 0, der, dl, body, sizeof(body), &bl), 0);
	assert_int_equal(pvp_cc_accept(body, bl, key, OTHER_NUM, "carrier-b.example", got, sizeof(got), &gl, &why),
	                 VP_EMALFORMED);
	assert_int_equal(pvp_cc_accept(body, bl, key, A_NUM, "carrier-c.example", got, sizeof(got), &gl, &why),
	                 VP_EMALFORMED);
	assert_int_equal(pvp_cc_accept(body, bl, key, A_NUM, "carrier-b.example", got, sizeof(got), &gl, &why), 0);
	assert_memory_equal(got, der, dl);
	EVP_PKEY_free(key);
	fixture_close(&f);
}

/* Proof of possession: a request whose signature is not by the key it carries, or with a weak key. */
static void request_without_proof_of_possession_refused(void **state)
{
	fixture_t f;
	uint8_t csr[PVP_CC_DER_MAX];
	EVP_PKEY *key = ec_key();
	EVP_PKEY *weak = EVP_RSA_gen(1024);
	(void)state;
	fixture_open(&f, 0);
	size_t n = csr_with(key, "carrier-b.example", NULL, csr);
	csr[n - 3] ^= 0x01; /* inside the signature value */
	assert_int_equal(issue_refusal(&f, csr, n, A_NUM, "carrier-b.example"), PVP_CCR_KEY);
	assert_non_null(weak);
	n = csr_with(weak, "carrier-b.example", NULL, csr);
	assert_int_equal(issue_refusal(&f, csr, n, A_NUM, "carrier-b.example"), PVP_CCR_KEY);
	/* garbage and a truncated request */
	n = csr_with(key, "carrier-b.example", NULL, csr);
	assert_int_equal(issue_refusal(&f, csr, n - 1, A_NUM, "carrier-b.example"), PVP_CCR_MALFORMED);
	EVP_PKEY_free(weak);
	EVP_PKEY_free(key);
	fixture_close(&f);
}

/* The exchange bodies: refusals carry a reason and no certificate, anything else is malformed. */
static void exchange_bodies_round_trip_and_refuse_garbage(void **state)
{
	uint8_t body[64], csr[8] = { 0x30, 1, 2, 3, 4, 5, 6, 7 };
	const uint8_t *p;
	size_t bl, pl;
	uint8_t st, rs;
	(void)state;
	assert_int_equal(pvp_cc_req_encode(csr, sizeof(csr), body, sizeof(body), &bl), 0);
	assert_int_equal(bl, 4 + sizeof(csr));
	assert_int_equal(body[0], PVP_CC_VERSION);
	assert_int_equal(body[1], PVP_CC_REQ);
	assert_int_equal(pvp_cc_req_decode(body, bl, &p, &pl), 0);
	assert_int_equal(pl, sizeof(csr));
	assert_int_equal(pvp_cc_req_decode(body, bl - 1, &p, &pl), VP_ETRUNC);
	body[bl] = 0;
	assert_int_equal(pvp_cc_req_decode(body, bl + 1, &p, &pl), VP_ETRAILING);
	body[0] = 2;
	assert_int_equal(pvp_cc_req_decode(body, bl, &p, &pl), VP_EUNSUPPORTED);
	assert_int_equal(pvp_cc_resp_encode(1, PVP_CCR_DOMAIN, NULL, 0, body, sizeof(body), &bl), 0);
	assert_int_equal(bl, 6);
	assert_int_equal(pvp_cc_resp_decode(body, bl, &st, &rs, &p, &pl), 0);
	assert_int_equal(st, 1);
	assert_int_equal(rs, PVP_CCR_DOMAIN);
	/* "issued" with no certificate, or "refused" with reason 0, does not decode */
	body[2] = 0;
	assert_int_equal(pvp_cc_resp_decode(body, bl, &st, &rs, &p, &pl), VP_EMALFORMED);
	body[2] = 1;
	body[3] = 0;
	assert_int_equal(pvp_cc_resp_decode(body, bl, &st, &rs, &p, &pl), VP_EMALFORMED);
}

/* The thief of issue 5 never saw the call: its handshake fails, so it never reaches the certificate step. */
static void thief_without_the_call_gets_no_cert(void **state)
{
	fixture_t f;
	h_claimant_t c;
	EVP_PKEY *key = ec_key();
	pvp_client_t *cli = client("thief.example", key);
	pvp_validation_t v;
	pvp_vcr_t r = h_orig(A_NUM, B_NUM, T0_MS, T0_MS + CALL_MS);
	(void)state;
	fixture_open(&f, 0);
	h_claimant_start_issuer(&c, NULL, f.iss);
	/* the claimant saw a call from another caller at another time */
	h_claimant_add(&c, A_NUM, "+33199999999", T0_MS + 600000, T0_MS + 600000 + CALL_MS);
	memset(&v, 0, sizeof(v));
	assert_int_not_equal(
	    pvp_client_validate(cli, c.port, &r, PVP_METHODS_ALL, pvp_tcp_connect, &c.target, NULL, 0, &v), 0);
	assert_false(v.authenticated);
	assert_int_equal(v.cert_len, 0);
	h_claimant_wait(&c, 1);
	for (int i = 0; i < c.nresults; i++)
		assert_int_not_equal(c.results[i].outcome, PVP_OUT_ROUTES);
	h_claimant_stop(&c);
	pvp_client_free(cli);
	EVP_PKEY_free(key);
	fixture_close(&f);
}

/* Routes not granted (entropy below the claimant's threshold): a certificate admits calls as routes do, so none. */
static void pending_validation_gets_no_cert(void **state)
{
	fixture_t f;
	h_claimant_t c;
	EVP_PKEY *key = ec_key();
	pvp_client_t *cli = client("carrier-b.example", key);
	pvp_validation_t v;
	pvp_policy_conf_t pc = { .min_entropy_cbits = 6400 }; /* 64 bits: one call never reaches it */
	pvp_vcr_t r = h_orig(A_NUM, B_NUM, T0_MS + 400, T0_MS + CALL_MS + 900);
	(void)state;
	fixture_open(&f, 0);
	h_claimant_start_issuer(&c, &pc, f.iss);
	h_claimant_add(&c, A_NUM, B_NUM, T0_MS + 2000, T0_MS + CALL_MS + 2300);
	assert_int_equal(pvp_client_validate(cli, c.port, &r, PVP_METHODS_ALL, pvp_tcp_connect, &c.target, NULL, 0, &v), 0);
	assert_true(v.authenticated);
	assert_int_equal(v.resp.status, PVP_ST_PENDING);
	assert_int_equal(v.cert_len, 0);
	h_claimant_stop(&c);
	pvp_client_free(cli);
	EVP_PKEY_free(key);
	fixture_close(&f);
}

/* A certificate from another CA that copies the issuer's name is not the issuer's (the border's check). */
static void cert_from_another_ca_with_the_same_name_not_accepted(void **state)
{
	fixture_t f, g;
	uint8_t csr[PVP_CC_DER_MAX], der[PVP_CC_DER_MAX];
	size_t dl;
	pvp_cc_refusal_t why;
	pvp_cc_identity_t id;
	EVP_PKEY *key = ec_key();
	(void)state;
	fixture_open(&f, 0);
	fixture_open(&g, 0); /* same subject name, another key */
	size_t n = csr_with(key, "carrier-b.example", NULL, csr);
	assert_int_equal(pvp_cc_issue(g.iss, csr, n, A_NUM, "carrier-b.example", 1000000, 2000000, der, sizeof(der), &dl,
	                              &why), 0);
	X509 *x = parse(der, dl);
	assert_int_equal(pvp_cc_identity(x, g.ca, &id), 0);
	assert_int_equal(pvp_cc_identity(x, f.ca, &id), VP_EAUTH);
	assert_string_equal(id.number, "");
	X509_free(x);
	EVP_PKEY_free(key);
	fixture_close(&g);
	fixture_close(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(issuer_load_checks_key_pair_and_ca),
		cmocka_unit_test_setup_teardown(validated_client_gets_cert_for_number_and_domain, side_setup, side_teardown),
		cmocka_unit_test(cert_never_outlives_the_route),
		cmocka_unit_test(request_for_another_domain_refused),
		cmocka_unit_test(request_for_another_number_refused),
		cmocka_unit_test(request_without_proof_of_possession_refused),
		cmocka_unit_test(exchange_bodies_round_trip_and_refuse_garbage),
		cmocka_unit_test_setup_teardown(thief_without_the_call_gets_no_cert, side_setup, side_teardown),
		cmocka_unit_test_setup_teardown(pending_validation_gets_no_cert, side_setup, side_teardown),
		cmocka_unit_test(cert_from_another_ca_with_the_same_name_not_accepted),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
