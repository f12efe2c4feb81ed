/* The enrollment CA: the issued certificate checked with OpenSSL directly against docs/protocol.md §9.1,
 * requests that must be refused (malformed, bad signature, wrong key type), Node-IDs read back. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "common/errcode.h"
#include "common/hex.h"
#include "control/node/ca.h"
#include "control/node/enroll.h"
#include "dataplane/cert.h"

#define OVERLAY "vipr.test"

static X509_REQ *make_csr(EVP_PKEY *key)
{
	X509_REQ *req = NULL;
	assert_int_equal(enr_csr_create(key, &req), 0);
	return req;
}

static EVP_PKEY *keygen(const char *type, const char *param, size_t bits)
{
	EVP_PKEY *k = param ? EVP_PKEY_Q_keygen(NULL, NULL, type, param) : EVP_PKEY_Q_keygen(NULL, NULL, type, bits);
	assert_non_null(k);
	return k;
}

static void issued_certificate_matches_the_profile(void **state)
{
	ca_t *ca = NULL;
	EVP_PKEY *key = keygen("EC", "P-256", 0);
	X509_REQ *req = make_csr(key);
	X509 *x = NULL;
	vp_id_t ids[3], back[8];
	size_t n = 0;
	time_t now = time(NULL);
	char user[64];
	(void)state;
	assert_int_equal(ca_create(OVERLAY, CA_KEY_EC_P256, 86400 * 365, &ca), 0);
	assert_int_equal(ca_random_node_ids(ids, 3), 0);
	assert_int_equal(ca_csr_check(req, CA_KEYS_ANY), 0);
	ca_issue_params_t p = { .user = "alice@a.example", .ids = ids, .n_ids = 3, .lifetime_s = 7200, .now = now };
	assert_int_equal(ca_issue(ca, req, &p, &x), 0);

	/* OpenSSL's own view, not ours */
	assert_int_equal(X509_verify(x, X509_get0_pubkey(ca_cert(ca))), 1);
	assert_int_equal(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);
	assert_int_equal(X509_get_version(x), X509_VERSION_3);
	assert_int_equal(X509_check_ca(x), 0);
	assert_true(X509_get_extension_flags(x) & EXFLAG_BCONS);
	assert_int_equal(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE);
	assert_int_equal(X509_get_extended_key_usage(x) & (XKU_SSL_SERVER | XKU_SSL_CLIENT), XKU_SSL_SERVER | XKU_SSL_CLIENT);
	assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(x), key), 1);
	{
		int crit = -1;
		BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);
		assert_non_null(bc);
		assert_int_equal(crit, 1);
		assert_false(bc->ca);
		BASIC_CONSTRAINTS_free(bc);
		ASN1_BIT_STRING *ku = X509_get_ext_d2i(x, NID_key_usage, &crit, NULL);
		assert_int_equal(crit, 1);
		ASN1_BIT_STRING_free(ku);
	}
	{
		GENERAL_NAMES *g = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
		char want[128], hex[33];
		assert_non_null(g);
		assert_int_equal(sk_GENERAL_NAME_num(g), 4);
		for (int i = 0; i < 3; i++) {
			GENERAL_NAME *gn = sk_GENERAL_NAME_value(g, i);
			assert_int_equal(gn->type, GEN_URI);
			vp_hex_encode(ids[i].b, 16, hex, sizeof(hex));
			snprintf(want, sizeof(want), "reload://%s@%s/", hex, OVERLAY);
			assert_string_equal((const char *)ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier), want);
		}
		GENERAL_NAME *em = sk_GENERAL_NAME_value(g, 3);
		assert_int_equal(em->type, GEN_EMAIL);
		assert_string_equal((const char *)ASN1_STRING_get0_data(em->d.rfc822Name), "alice@a.example");
		GENERAL_NAMES_free(g);
	}
	{
		int days = 0, secs = 0;
		ASN1_TIME *t0 = ASN1_TIME_new();
		ASN1_TIME_set(t0, now);
		assert_int_equal(ASN1_TIME_diff(&days, &secs, t0, X509_get0_notAfter(x)), 1);
		assert_int_equal(days * 86400 + secs, 7200);
		assert_int_equal(ASN1_TIME_diff(&days, &secs, t0, X509_get0_notBefore(x)), 1);
		assert_int_equal(days * 86400 + secs, -CA_CLOCK_SKEW_S);
		ASN1_TIME_free(t0);
	}
	/* and our readers agree */
	assert_int_equal(ca_cert_node_ids(x, OVERLAY, back, 8, &n), 0);
	assert_int_equal(n, 3);
	assert_memory_equal(back, ids, sizeof(ids));
	assert_int_equal(ca_cert_user(x, user, sizeof(user)), 0);
	assert_string_equal(user, "alice@a.example");
	{
		X509 *root = ca_cert(ca);
		char why[128];
		assert_int_equal(ca_verify(x, NULL, 0, &root, 1, now, why, sizeof(why)), 0);
		/* after notAfter it no longer counts */
		assert_int_equal(ca_verify(x, NULL, 0, &root, 1, now + 7201, why, sizeof(why)), VP_EAUTH);
	}
	X509_free(x);
	X509_REQ_free(req);
	EVP_PKEY_free(key);
	ca_free(ca);
}

static void rsa_ca_signs_with_sha256_rsa(void **state)
{
	ca_t *ca = NULL;
	EVP_PKEY *key = keygen("RSA", NULL, 2048);
	X509_REQ *req = make_csr(key);
	X509 *x = NULL;
	vp_id_t id;
	(void)state;
	assert_int_equal(ca_create(OVERLAY, CA_KEY_RSA_2048, 86400, &ca), 0);
	assert_int_equal(EVP_PKEY_get_bits(ca_key(ca)), 2048);
	assert_int_equal(ca_csr_check(req, CA_KEYS_ANY), 0);
	ca_random_node_ids(&id, 1);
	ca_issue_params_t p = { .user = "bob@b.example", .ids = &id, .n_ids = 1, .lifetime_s = 60 };
	assert_int_equal(ca_issue(ca, req, &p, &x), 0);
	assert_int_equal(X509_get_signature_nid(x), NID_sha256WithRSAEncryption);
	assert_int_equal(X509_verify(x, X509_get0_pubkey(ca_cert(ca))), 1);
	X509_free(x);
	X509_REQ_free(req);
	EVP_PKEY_free(key);
	ca_free(ca);
}

/* The attacker submits someone else's public key in a request it cannot sign: the signature is broken. */
static void csr_whose_signature_does_not_verify_is_refused(void **state)
{
	EVP_PKEY *key = keygen("EC", "P-256", 0);
	X509_REQ *req = make_csr(key), *back = NULL;
	const ASN1_BIT_STRING *sig = NULL;
	uint8_t *der = NULL;
	size_t len = 0;
	(void)state;
	X509_REQ_get0_signature(req, &sig, NULL);
	assert_non_null(sig);
	/* flip one bit of the signature value, then go through DER as a request arriving on the wire */
	((ASN1_BIT_STRING *)sig)->data[ASN1_STRING_length(sig) - 1] ^= 0x01;
	assert_int_equal(enr_csr_der(req, &der, &len), 0);
	assert_int_equal(ca_csr_parse(der, len, &back), 0);
	assert_int_equal(ca_csr_check(back, CA_KEYS_ANY), VP_EAUTH);
	X509_REQ_free(back);
	OPENSSL_free(der);
	X509_REQ_free(req);
	EVP_PKEY_free(key);
}

static void malformed_csr_is_refused(void **state)
{
	EVP_PKEY *key = keygen("EC", "P-256", 0);
	X509_REQ *req = make_csr(key), *back = NULL;
	uint8_t *der = NULL, buf[4096];
	size_t len = 0;
	(void)state;
	assert_int_equal(enr_csr_der(req, &der, &len), 0);
	assert_int_equal(ca_csr_parse(der, len, &back), 0); /* the untouched request parses */
	X509_REQ_free(back);
	back = NULL;
	assert_int_equal(ca_csr_parse(der, len - 1, &back), VP_EMALFORMED); /* truncated */
	memcpy(buf, der, len);
	buf[len] = 0;
	assert_int_equal(ca_csr_parse(buf, len + 1, &back), VP_EMALFORMED); /* trailing byte */
	assert_int_equal(ca_csr_parse((const uint8_t *)"hello", 5, &back), VP_EMALFORMED);
	assert_int_equal(ca_csr_parse((const uint8_t *)"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n", 41, &back),
	                 VP_EMALFORMED);
	assert_null(back);
	OPENSSL_free(der);
	X509_REQ_free(req);
	EVP_PKEY_free(key);
}

static void key_types_outside_the_profile_are_refused(void **state)
{
	struct { const char *type; const char *param; size_t bits; int want; unsigned allowed; } cases[] = {
		{ "EC", "P-384", 0, VP_EUNSUPPORTED, CA_KEYS_ANY },
		{ "RSA", NULL, 1024, VP_EUNSUPPORTED, CA_KEYS_ANY },
		{ "ED25519", NULL, 0, VP_EUNSUPPORTED, CA_KEYS_ANY },
		{ "RSA", NULL, 2048, VP_EUNSUPPORTED, 1u << CA_KEY_EC_P256 },   /* policy: P-256 only */
		{ "EC", "P-256", 0, VP_EUNSUPPORTED, 1u << CA_KEY_RSA_2048 },   /* policy: RSA only */
		{ "EC", "P-256", 0, 0, 1u << CA_KEY_EC_P256 },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		EVP_PKEY *k = !strcmp(cases[i].type, "ED25519") ? EVP_PKEY_Q_keygen(NULL, NULL, "ED25519")
		                                                : keygen(cases[i].type, cases[i].param, cases[i].bits);
		X509_REQ *req = X509_REQ_new();
		assert_non_null(k);
		X509_REQ_set_pubkey(req, k);
		assert_true(X509_REQ_sign(req, k, !strcmp(cases[i].type, "ED25519") ? NULL : EVP_sha256()) > 0);
		assert_int_equal(ca_csr_check(req, cases[i].allowed), cases[i].want);
		X509_REQ_free(req);
		EVP_PKEY_free(k);
	}
}

static void too_many_node_ids_and_bad_users_are_refused(void **state)
{
	ca_t *ca = NULL;
	EVP_PKEY *key = keygen("EC", "P-256", 0);
	vp_id_t ids[CA_MAX_NODE_IDS + 1];
	X509 *x = NULL;
	(void)state;
	assert_int_equal(ca_create(OVERLAY, CA_KEY_EC_P256, 86400, &ca), 0);
	ca_random_node_ids(ids, CA_MAX_NODE_IDS + 1);
	ca_issue_params_t p = { .user = "a@b.example", .ids = ids, .n_ids = CA_MAX_NODE_IDS + 1, .lifetime_s = 60 };
	assert_int_equal(ca_issue_key(ca, key, &p, &x), VP_EINVAL);
	p.n_ids = CA_MAX_NODE_IDS;
	assert_int_equal(ca_issue_key(ca, key, &p, &x), 0);
	X509_free(x);
	x = NULL;
	p.n_ids = 0;
	assert_int_equal(ca_issue_key(ca, key, &p, &x), VP_EINVAL);
	/* a user name cannot smuggle another name into the SAN */
	p.n_ids = 1;
	p.user = "a@b.example,URI:reload://00000000000000000000000000000000@vipr.test/";
	assert_int_equal(ca_issue_key(ca, key, &p, &x), VP_EINVAL);
	p.user = "no-at-sign";
	assert_int_equal(ca_issue_key(ca, key, &p, &x), VP_EINVAL);
	assert_null(x);
	EVP_PKEY_free(key);
	ca_free(ca);
}

/* Node-IDs of certificates written by other implementations: without the trailing '/', upper-case hex;
 * URIs of another overlay, another scheme or a wrong length are not ours. */
static void node_ids_are_read_with_and_without_trailing_slash(void **state)
{
	ca_t *ca = NULL;
	EVP_PKEY *key = keygen("EC", "P-256", 0);
	X509 *x = X509_new();
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	vp_id_t ids[8];
	size_t n = 0;
	(void)state;
	assert_int_equal(ca_create(OVERLAY, CA_KEY_EC_P256, 86400, &ca), 0);
	X509_set_version(x, X509_VERSION_3);
	X509_set_pubkey(x, key);
	X509_set_issuer_name(x, X509_get_subject_name(ca_cert(ca)));
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509V3_set_ctx(&ctx, ca_cert(ca), x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name,
	                          "URI:reload://0102030405060708090a0b0c0d0e0f10@vipr.test,"
	                          "URI:reload://A1A2A3A4A5A6A7A8A9AAABACADAEAFB0@VIPR.TEST/,"
	                          "URI:reload://c1c2c3c4c5c6c7c8c9cacbcccdcecfd0@other.test/,"
	                          "URI:reload://d1d2@vipr.test/,"
	                          "URI:reload://e1e2e3e4e5e6e7e8e9eaebecedeeeff0@vipr.test/x,"
	                          "URI:https://f1f2f3f4f5f6f7f8f9fafbfcfdfeff00@vipr.test/,"
	                          "email:carol@c.example");
	assert_non_null(ext);
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	assert_true(X509_sign(x, ca_key(ca), EVP_sha256()) > 0);
	assert_int_equal(ca_cert_node_ids(x, OVERLAY, ids, 8, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(ids[0].b[0], 0x01);
	assert_int_equal(ids[0].b[15], 0x10);
	assert_int_equal(ids[1].b[0], 0xa1);
	assert_int_equal(ids[1].b[15], 0xb0);
	assert_int_equal(ca_cert_node_ids(x, "other.test", ids, 8, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(ca_cert_node_ids(x, "third.test", ids, 8, &n), VP_ENOTFOUND);
	X509_free(x);
	EVP_PKEY_free(key);
	ca_free(ca);
}

/* A certificate from another CA, or one issued by ours and then altered, does not chain. */
static void certificate_from_another_ca_does_not_chain(void **state)
{
	ca_t *ca = NULL, *evil = NULL;
	EVP_PKEY *key = keygen("EC", "P-256", 0);
	X509 *x = NULL, *root;
	vp_id_t id;
	char why[128];
	(void)state;
	assert_int_equal(ca_create(OVERLAY, CA_KEY_EC_P256, 86400, &ca), 0);
	assert_int_equal(ca_create(OVERLAY, CA_KEY_EC_P256, 86400, &evil), 0); /* same name, other key */
	ca_random_node_ids(&id, 1);
	ca_issue_params_t p = { .user = "mallory@m.example", .ids = &id, .n_ids = 1, .lifetime_s = 600 };
	assert_int_equal(ca_issue_key(evil, key, &p, &x), 0);
	root = ca_cert(ca);
	assert_int_equal(ca_verify(x, NULL, 0, &root, 1, 0, why, sizeof(why)), VP_EAUTH);
	root = ca_cert(evil);
	assert_int_equal(ca_verify(x, NULL, 0, &root, 1, 0, why, sizeof(why)), 0);
	X509_free(x);
	EVP_PKEY_free(key);
	ca_free(ca);
	ca_free(evil);
}

/* The two sides of the profile agree: the link verifier (dp_cert_) accepts what the CA issues, finds the
 * same Node-IDs, and refuses it once a Node-ID is on the bad-node list. */
static void link_verifier_accepts_issued_certificates(void **state)
{
	ca_t *ca = NULL;
	EVP_PKEY *key = keygen("EC", "P-256", 0);
	X509 *x = NULL;
	vp_id_t ids[2];
	dp_cert_store_t *st = NULL;
	dp_cert_store_cfg_t cfg = { .overlay = OVERLAY };
	const dp_cert_ident_t *ident = NULL;
	dp_cert_reason_t why;
	(void)state;
	assert_int_equal(ca_create(OVERLAY, CA_KEY_EC_P256, 86400, &ca), 0);
	ca_random_node_ids(ids, 2);
	ca_issue_params_t p = { .user = "dave@d.example", .ids = ids, .n_ids = 2, .lifetime_s = 3600 };
	assert_int_equal(ca_issue_key(ca, key, &p, &x), 0);
	assert_int_equal(dp_cert_store_new(&cfg, &st), 0);
	assert_int_equal(dp_cert_store_add_root(st, ca_cert(ca)), 0);
	assert_int_equal(dp_cert_verify_x509(st, x, NULL, &ident, &why), 0);
	assert_int_equal(ident->n_node_ids, 2);
	assert_memory_equal(ident->node_ids, ids, sizeof(ids));
	assert_int_equal(dp_cert_store_set_bad_nodes(st, &ids[1], 1), 0);
	assert_int_equal(dp_cert_verify_x509(st, x, NULL, &ident, &why), VP_EAUTH);
	dp_cert_store_free(st);
	X509_free(x);
	EVP_PKEY_free(key);
	ca_free(ca);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(issued_certificate_matches_the_profile),
		cmocka_unit_test(rsa_ca_signs_with_sha256_rsa),
		cmocka_unit_test(csr_whose_signature_does_not_verify_is_refused),
		cmocka_unit_test(malformed_csr_is_refused),
		cmocka_unit_test(key_types_outside_the_profile_are_refused),
		cmocka_unit_test(too_many_node_ids_and_bad_users_are_refused),
		cmocka_unit_test(node_ids_are_read_with_and_without_trailing_slash),
		cmocka_unit_test(certificate_from_another_ca_does_not_chain),
		cmocka_unit_test(link_verifier_accepts_issued_certificates),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
