/*
 * control/node/ca.c - the enrollment CA (docs/protocol.md §9.1).
 */
#include "control/node/ca.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "common/errcode.h"
#include "common/hex.h"

const char *const ca_key_type_names[] = { "ecdsa-p256", "rsa-2048", NULL };

struct ca {
	EVP_PKEY *key;
	X509 *cert;
	char overlay[CA_OVERLAY_MAX + 1];
};

static bool overlay_valid(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > CA_OVERLAY_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!isalnum(c) && c != '-' && c != '.')
			return false;
	}
	return s[0] != '.' && s[0] != '-';
}

bool ca_user_valid(const char *user)
{
	const char *at;
	size_t n = user ? strlen(user) : 0;
	if (n < 3 || n > CA_USER_MAX)
		return false;
	at = strchr(user, '@');
	if (!at || at == user || strchr(at + 1, '@') || !overlay_valid(at + 1))
		return false;
	for (const char *p = user; p < at; p++) {
		unsigned char c = (unsigned char)*p;
		if (!isalnum(c) && c != '.' && c != '_' && c != '+' && c != '-')
			return false;
	}
	return true;
}

int ca_key_generate(ca_key_type_t t, EVP_PKEY **out)
{
	EVP_PKEY *k = NULL;
	if (t == CA_KEY_EC_P256)
		k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	else if (t == CA_KEY_RSA_2048)
		k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	else
		return VP_EINVAL;
	if (!k)
		return VP_ECRYPTO;
	*out = k;
	return 0;
}

int ca_key_type_of(EVP_PKEY *key, ca_key_type_t *out)
{
	char group[64];
	size_t glen = 0;
	switch (EVP_PKEY_get_base_id(key)) {
	case EVP_PKEY_EC:
		if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
		                                   &glen) != 1)
			return VP_EUNSUPPORTED;
		if (strcmp(group, "prime256v1") != 0 && strcmp(group, "P-256") != 0)
			return VP_EUNSUPPORTED;
		*out = CA_KEY_EC_P256;
		return 0;
	case EVP_PKEY_RSA: {
		int bits = EVP_PKEY_get_bits(key);
		if (bits < 2048 || bits > 4096)
			return VP_EUNSUPPORTED;
		*out = CA_KEY_RSA_2048;
		return 0;
	}
	default:
		return VP_EUNSUPPORTED;
	}
}

/* ---- certificate building ---- */

static int set_random_serial(X509 *x)
{
	uint8_t b[16];
	BIGNUM *bn = NULL;
	int rc = VP_ECRYPTO;
	if (RAND_bytes(b, sizeof(b)) != 1)
		return VP_ECRYPTO;
	b[0] &= 0x7f; /* positive */
	b[0] |= 0x40; /* and always 16 bytes long */
	bn = BN_bin2bn(b, sizeof(b), NULL);
	if (bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
		rc = 0;
	BN_free(bn);
	return rc;
}

static int add_ext(X509 *issuer, X509 *x, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	int ok;
	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (!ext)
		return VP_ECRYPTO;
	ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : VP_ECRYPTO;
}

static int gn_push(GENERAL_NAMES *gens, int type, const char *text)
{
	GENERAL_NAME *gn = GENERAL_NAME_new();
	ASN1_IA5STRING *s = ASN1_IA5STRING_new();
	if (!gn || !s || !ASN1_STRING_set(s, text, (int)strlen(text))) {
		GENERAL_NAME_free(gn);
		ASN1_IA5STRING_free(s);
		return VP_ENOMEM;
	}
	GENERAL_NAME_set0_value(gn, type, s);
	if (!sk_GENERAL_NAME_push(gens, gn)) {
		GENERAL_NAME_free(gn);
		return VP_ENOMEM;
	}
	return 0;
}

static int gn_push_ip(GENERAL_NAMES *gens, const uint8_t *ip, int len)
{
	GENERAL_NAME *gn = GENERAL_NAME_new();
	ASN1_OCTET_STRING *s = ASN1_OCTET_STRING_new();
	if (!gn || !s || !ASN1_OCTET_STRING_set(s, ip, len)) {
		GENERAL_NAME_free(gn);
		ASN1_OCTET_STRING_free(s);
		return VP_ENOMEM;
	}
	GENERAL_NAME_set0_value(gn, GEN_IPADD, s);
	if (!sk_GENERAL_NAME_push(gens, gn)) {
		GENERAL_NAME_free(gn);
		return VP_ENOMEM;
	}
	return 0;
}

/* Build the SAN extension from GENERAL_NAMES, never from a text spec: a user name can then never inject
 * another name ("a@b,URI:reload://...") into the certificate. */
static int add_san(X509 *x, GENERAL_NAMES *gens)
{
	return X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) == 1 ? 0 : VP_ECRYPTO;
}

static X509 *cert_skeleton(EVP_PKEY *pub, const X509_NAME *issuer, const char *cn, time_t now,
                           uint32_t lifetime_s)
{
	X509 *x = X509_new();
	X509_NAME *subj = X509_NAME_new();
	time_t t = now ? now : time(NULL);
	if (!x || !subj)
		goto fail;
	if (!X509_set_version(x, X509_VERSION_3) || set_random_serial(x) != 0)
		goto fail;
	if (!X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0))
		goto fail;
	if (!X509_set_subject_name(x, subj) || !X509_set_issuer_name(x, issuer ? issuer : subj))
		goto fail;
	if (!X509_time_adj_ex(X509_getm_notBefore(x), 0, -CA_CLOCK_SKEW_S, &t) ||
	    !X509_time_adj_ex(X509_getm_notAfter(x), (int)(lifetime_s / 86400), (long)(lifetime_s % 86400), &t))
		goto fail;
	if (!X509_set_pubkey(x, pub))
		goto fail;
	X509_NAME_free(subj);
	return x;
fail:
	X509_NAME_free(subj);
	X509_free(x);
	return NULL;
}

int ca_create(const char *overlay, ca_key_type_t t, uint32_t lifetime_s, ca_t **out)
{
	char cn[CA_OVERLAY_MAX + 32];
	ca_t *ca;
	int rc;
	if (!overlay_valid(overlay) || lifetime_s == 0)
		return VP_EINVAL;
	ca = calloc(1, sizeof(*ca));
	if (!ca)
		return VP_ENOMEM;
	snprintf(ca->overlay, sizeof(ca->overlay), "%s", overlay);
	rc = ca_key_generate(t, &ca->key);
	if (rc)
		goto finish;
	snprintf(cn, sizeof(cn), "%s enrollment CA", overlay);
	rc = VP_ECRYPTO;
	ca->cert = cert_skeleton(ca->key, NULL, cn, 0, lifetime_s);
	if (!ca->cert)
		goto finish;
	if ((rc = add_ext(ca->cert, ca->cert, NID_basic_constraints, "critical,CA:TRUE,pathlen:0")) ||
	    (rc = add_ext(ca->cert, ca->cert, NID_key_usage, "critical,keyCertSign,cRLSign")) ||
	    (rc = add_ext(ca->cert, ca->cert, NID_subject_key_identifier, "hash")))
		goto finish;
	rc = X509_sign(ca->cert, ca->key, EVP_sha256()) > 0 ? 0 : VP_ECRYPTO;
finish:
	if (rc) {
		ca_free(ca);
		return rc;
	}
	*out = ca;
	return 0;
}

int ca_load(const char *overlay, const char *cert_path, const char *key_path, ca_t **out)
{
	ca_t *ca;
	int rc;
	if (!overlay_valid(overlay))
		return VP_EINVAL;
	ca = calloc(1, sizeof(*ca));
	if (!ca)
		return VP_ENOMEM;
	snprintf(ca->overlay, sizeof(ca->overlay), "%s", overlay);
	if ((rc = ca_read_cert(cert_path, &ca->cert)) || (rc = ca_read_key(key_path, &ca->key)))
		goto finish;
	rc = X509_check_private_key(ca->cert, ca->key) == 1 ? 0 : VP_ECRYPTO;
finish:
	if (rc) {
		ca_free(ca);
		return rc;
	}
	*out = ca;
	return 0;
}

void ca_free(ca_t *ca)
{
	if (!ca)
		return;
	EVP_PKEY_free(ca->key);
	X509_free(ca->cert);
	free(ca);
}

X509 *ca_cert(const ca_t *ca) { return ca->cert; }
EVP_PKEY *ca_key(const ca_t *ca) { return ca->key; }
const char *ca_overlay(const ca_t *ca) { return ca->overlay; }

/* ---- requests ---- */

int ca_csr_parse(const uint8_t *data, size_t len, X509_REQ **out)
{
	X509_REQ *req = NULL;
	static const char pem[] = "-----BEGIN";
	if (!data || len == 0 || len > 64 * 1024)
		return VP_EMALFORMED;
	if (len >= sizeof(pem) - 1 && memcmp(data, pem, sizeof(pem) - 1) == 0) {
		BIO *b = BIO_new_mem_buf(data, (int)len);
		if (!b)
			return VP_ENOMEM;
		req = PEM_read_bio_X509_REQ(b, NULL, NULL, NULL);
		BIO_free(b);
	} else {
		const unsigned char *p = data;
		req = d2i_X509_REQ(NULL, &p, (long)len);
		if (req && p != data + len) {
			X509_REQ_free(req);
			req = NULL;
		}
	}
	ERR_clear_error();
	if (!req)
		return VP_EMALFORMED;
	*out = req;
	return 0;
}

int ca_csr_check(X509_REQ *req, unsigned allowed)
{
	EVP_PKEY *pub = X509_REQ_get0_pubkey(req);
	ca_key_type_t t;
	int rc;
	if (!pub)
		return VP_EMALFORMED;
	rc = ca_key_type_of(pub, &t);
	if (rc)
		return rc;
	if (!(allowed & (1u << t)))
		return VP_EUNSUPPORTED;
	rc = X509_REQ_verify(req, pub) == 1 ? 0 : VP_EAUTH;
	ERR_clear_error();
	return rc;
}

int ca_random_node_ids(vp_id_t *ids, size_t n)
{
	if (n == 0)
		return 0;
	return RAND_bytes((unsigned char *)ids, (int)(n * sizeof(*ids))) == 1 ? 0 : VP_ECRYPTO;
}

int ca_issue_key(const ca_t *ca, EVP_PKEY *pub, const ca_issue_params_t *p, X509 **out)
{
	char hex[VP_ID_HEX_LEN + 1], uri[VP_ID_HEX_LEN + CA_OVERLAY_MAX + 16];
	GENERAL_NAMES *gens = NULL;
	X509 *x = NULL;
	int rc;
	if (!ca_user_valid(p->user) || p->n_ids == 0 || p->n_ids > CA_MAX_NODE_IDS || p->lifetime_s == 0)
		return VP_EINVAL;
	vp_hex_encode(p->ids[0].b, VP_ID_LEN, hex, sizeof(hex));
	rc = VP_ECRYPTO;
	x = cert_skeleton(pub, X509_get_subject_name(ca->cert), hex, p->now, p->lifetime_s);
	if (!x)
		goto finish;
	if ((rc = add_ext(ca->cert, x, NID_basic_constraints, "critical,CA:FALSE")) ||
	    (rc = add_ext(ca->cert, x, NID_key_usage, "critical,digitalSignature")) ||
	    (rc = add_ext(ca->cert, x, NID_ext_key_usage, "serverAuth,clientAuth")) ||
	    (rc = add_ext(ca->cert, x, NID_subject_key_identifier, "hash")) ||
	    (rc = add_ext(ca->cert, x, NID_authority_key_identifier, "keyid:always")))
		goto finish;
	rc = VP_ENOMEM;
	gens = sk_GENERAL_NAME_new_null();
	if (!gens)
		goto finish;
	for (size_t i = 0; i < p->n_ids; i++) {
		vp_hex_encode(p->ids[i].b, VP_ID_LEN, hex, sizeof(hex));
		snprintf(uri, sizeof(uri), "reload://%s@%s/", hex, ca->overlay);
		if ((rc = gn_push(gens, GEN_URI, uri)))
			goto finish;
	}
	if ((rc = gn_push(gens, GEN_EMAIL, p->user)) || (rc = add_san(x, gens)))
		goto finish;
	rc = X509_sign(x, ca->key, EVP_sha256()) > 0 ? 0 : VP_ECRYPTO;
finish:
	GENERAL_NAMES_free(gens);
	if (rc) {
		X509_free(x);
		return rc;
	}
	*out = x;
	return 0;
}

int ca_issue(const ca_t *ca, X509_REQ *req, const ca_issue_params_t *p, X509 **out)
{
	EVP_PKEY *pub = X509_REQ_get0_pubkey(req);
	if (!pub)
		return VP_EMALFORMED;
	return ca_issue_key(ca, pub, p, out);
}

int ca_issue_server(const ca_t *ca, EVP_PKEY *pub, const char *host, uint32_t lifetime_s, X509 **out)
{
	static const uint8_t v4[4] = { 127, 0, 0, 1 };
	static const uint8_t v6[16] = { [15] = 1 };
	GENERAL_NAMES *gens = NULL;
	X509 *x;
	int rc;
	if (!overlay_valid(host) || lifetime_s == 0)
		return VP_EINVAL;
	x = cert_skeleton(pub, X509_get_subject_name(ca->cert), host, 0, lifetime_s);
	if (!x)
		return VP_ECRYPTO;
	if ((rc = add_ext(ca->cert, x, NID_basic_constraints, "critical,CA:FALSE")) ||
	    (rc = add_ext(ca->cert, x, NID_key_usage, "critical,digitalSignature,keyEncipherment")) ||
	    (rc = add_ext(ca->cert, x, NID_ext_key_usage, "serverAuth")) ||
	    (rc = add_ext(ca->cert, x, NID_authority_key_identifier, "keyid:always")))
		goto finish;
	rc = VP_ENOMEM;
	gens = sk_GENERAL_NAME_new_null();
	if (!gens)
		goto finish;
	if ((rc = gn_push(gens, GEN_DNS, host)) ||
	    (strcmp(host, "localhost") != 0 && (rc = gn_push(gens, GEN_DNS, "localhost"))) ||
	    (rc = gn_push_ip(gens, v4, 4)) || (rc = gn_push_ip(gens, v6, 16)) || (rc = add_san(x, gens)))
		goto finish;
	rc = X509_sign(x, ca->key, EVP_sha256()) > 0 ? 0 : VP_ECRYPTO;
finish:
	GENERAL_NAMES_free(gens);
	if (rc) {
		X509_free(x);
		return rc;
	}
	*out = x;
	return 0;
}

/* ---- reading certificates ---- */

/* "reload://<32 hex>@<overlay>" with an optional trailing "/". */
static bool parse_node_uri(const char *s, size_t len, const char *overlay, vp_id_t *id)
{
	static const char scheme[] = "reload://";
	size_t olen = strlen(overlay), sl = sizeof(scheme) - 1, outlen = 0;
	const char *o;
	size_t rest;
	if (len < sl + VP_ID_HEX_LEN + 1 || strncasecmp(s, scheme, sl) != 0)
		return false;
	if (s[sl + VP_ID_HEX_LEN] != '@')
		return false;
	for (size_t i = 0; i < VP_ID_HEX_LEN; i++)
		if (!isxdigit((unsigned char)s[sl + i]))
			return false;
	o = s + sl + VP_ID_HEX_LEN + 1;
	rest = len - (size_t)(o - s);
	if (rest == olen + 1 && o[olen] == '/')
		rest = olen;
	if (rest != olen || strncasecmp(o, overlay, olen) != 0)
		return false;
	return vp_hex_decode(s + sl, VP_ID_HEX_LEN, id->b, VP_ID_LEN, &outlen) == 0 && outlen == VP_ID_LEN;
}

int ca_cert_node_ids(X509 *cert, const char *overlay, vp_id_t *ids, size_t cap, size_t *n)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	size_t k = 0;
	int rc = 0;
	if (!gens) {
		*n = 0;
		return VP_ENOTFOUND;
	}
	for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, i);
		vp_id_t id;
		if (gn->type != GEN_URI)
			continue;
		if (!parse_node_uri((const char *)ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier),
		                    (size_t)ASN1_STRING_length(gn->d.uniformResourceIdentifier), overlay, &id))
			continue;
		if (k == cap) {
			rc = VP_ESPACE;
			break;
		}
		ids[k++] = id;
	}
	GENERAL_NAMES_free(gens);
	*n = k;
	if (rc)
		return rc;
	return k ? 0 : VP_ENOTFOUND;
}

int ca_cert_user(X509 *cert, char *out, size_t cap)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	int rc = VP_ENOTFOUND;
	if (!gens)
		return VP_ENOTFOUND;
	for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, i);
		int len;
		if (gn->type != GEN_EMAIL)
			continue;
		len = ASN1_STRING_length(gn->d.rfc822Name);
		if (len < 0 || (size_t)len >= cap) {
			rc = VP_ESPACE;
			break;
		}
		memcpy(out, ASN1_STRING_get0_data(gn->d.rfc822Name), (size_t)len);
		out[len] = 0;
		rc = strlen(out) == (size_t)len ? 0 : VP_EMALFORMED; /* no embedded NUL */
		break;
	}
	GENERAL_NAMES_free(gens);
	return rc;
}

int ca_verify(X509 *cert, X509 *const *chain, size_t n_chain, X509 *const *roots, size_t n_roots,
              time_t now, char *why, size_t whycap)
{
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	STACK_OF(X509) *untrusted = sk_X509_new_null();
	int rc = VP_ENOMEM;
	if (why && whycap)
		why[0] = 0;
	if (!store || !ctx || !untrusted)
		goto finish;
	for (size_t i = 0; i < n_roots; i++)
		if (!X509_STORE_add_cert(store, roots[i]))
			goto finish;
	for (size_t i = 0; i < n_chain; i++)
		if (!sk_X509_push(untrusted, chain[i]))
			goto finish;
	if (!X509_STORE_CTX_init(ctx, store, cert, untrusted))
		goto finish;
	X509_STORE_CTX_set_time(ctx, 0, now ? now : time(NULL));
	if (X509_verify_cert(ctx) == 1) {
		rc = 0;
	} else {
		rc = VP_EAUTH;
		if (why && whycap)
			snprintf(why, whycap, "%s",
			         X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
	}
finish:
	ERR_clear_error();
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	sk_X509_free(untrusted);
	return rc;
}

int ca_cert_fingerprint(X509 *cert, uint8_t out[32])
{
	unsigned len = 0;
	return X509_digest(cert, EVP_sha256(), out, &len) == 1 && len == 32 ? 0 : VP_ECRYPTO;
}

int ca_cert_der(X509 *cert, uint8_t **der, size_t *len)
{
	unsigned char *p = NULL;
	int n = i2d_X509(cert, &p);
	if (n <= 0)
		return VP_ECRYPTO;
	*der = p;
	*len = (size_t)n;
	return 0;
}

/* ---- files ---- */

static int write_atomic(const char *path, mode_t mode, int (*emit)(BIO *, void *), void *arg)
{
	char tmp[4096];
	BIO *b = NULL;
	FILE *f = NULL;
	int fd, rc = VP_EIO;
	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp))
		return VP_EINVAL;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return VP_EIO;
	f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		goto finish;
	}
	b = BIO_new_fp(f, BIO_NOCLOSE);
	if (!b || !emit(b, arg))
		goto finish;
	if (BIO_flush(b) != 1 || fflush(f) != 0 || fsync(fileno(f)) != 0)
		goto finish;
	rc = 0;
finish:
	BIO_free(b);
	if (f && fclose(f) != 0)
		rc = VP_EIO;
	if (rc == 0 && rename(tmp, path) != 0)
		rc = VP_EIO;
	if (rc)
		unlink(tmp);
	return rc;
}

static int emit_key(BIO *b, void *k)
{
	return PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
}

static int emit_cert(BIO *b, void *x)
{
	return PEM_write_bio_X509(b, x);
}

int ca_write_key(const char *path, EVP_PKEY *key)
{
	return write_atomic(path, 0600, emit_key, key);
}

int ca_write_cert(const char *path, X509 *cert)
{
	return write_atomic(path, 0644, emit_cert, cert);
}

/* Read one PEM object from path with reader; VP_EIO if the file cannot be opened, VP_EMALFORMED if it holds none. */
static void *read_pem(const char *path, void *(*reader)(FILE *), int *rc)
{
	FILE *f = fopen(path, "r");
	void *obj;
	if (!f) {
		*rc = VP_EIO;
		return NULL;
	}
	obj = reader(f);
	fclose(f);
	ERR_clear_error();
	*rc = obj ? 0 : VP_EMALFORMED;
	return obj;
}

static void *pem_key(FILE *f)
{
	return PEM_read_PrivateKey(f, NULL, NULL, NULL);
}

static void *pem_cert(FILE *f)
{
	return PEM_read_X509(f, NULL, NULL, NULL);
}

int ca_read_key(const char *path, EVP_PKEY **out)
{
	int rc;
	EVP_PKEY *k = read_pem(path, pem_key, &rc);
	if (k)
		*out = k;
	return rc;
}

int ca_read_cert(const char *path, X509 **out)
{
	int rc;
	X509 *x = read_pem(path, pem_cert, &rc);
	if (x)
		*out = x;
	return rc;
}
