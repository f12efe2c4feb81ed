/*
 * pvp/clientcert.c - ViPR client certificates: profile, issue, check, exchange bodies (docs/protocol.md §6.1).
 */
#include "pvp/clientcert.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "common/buf.h"
#include "common/errcode.h"
#include "common/log.h"

#define MOD "pvp"

static const char *const refusal_str[] = {
	[PVP_CCR_NONE] = "none", [PVP_CCR_MALFORMED] = "malformed", [PVP_CCR_DOMAIN] = "domain",
	[PVP_CCR_KEY] = "key", [PVP_CCR_INTERNAL] = "internal", [PVP_CCR_NUMBER] = "number",
};

const char *pvp_cc_refusal_str(unsigned r)
{
	return r < sizeof(refusal_str) / sizeof(refusal_str[0]) ? refusal_str[r] : "unknown";
}

/* ---- issuer ------------------------------------------------------------------------------------------- */

int pvp_cc_issuer_load(const char *cert_path, const char *key_path, uint32_t lifetime_s, pvp_cc_issuer_t **out)
{
	pvp_cc_issuer_t *iss = calloc(1, sizeof(*iss));
	FILE *f = NULL;
	int rc = VP_EIO;

	*out = NULL;
	if (!iss)
		return VP_ENOMEM;
	iss->lifetime_s = lifetime_s ? lifetime_s : PVP_CC_LIFETIME_DEFAULT_S;
	if (!(f = fopen(cert_path, "r")))
		goto fail;
	iss->cert = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (!(f = fopen(key_path, "r")))
		goto fail;
	iss->key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	rc = VP_ECONFIG;
	if (!iss->cert || !iss->key || X509_check_private_key(iss->cert, iss->key) != 1 || X509_check_ca(iss->cert) == 0)
		goto fail;
	*out = iss;
	return 0;
fail:
	vp_log_error(MOD, "cc_issuer_load", "cert=%s key=%s err=%s", cert_path, key_path, vp_errname(rc));
	ERR_clear_error();
	pvp_cc_issuer_free(iss);
	return rc;
}

void pvp_cc_issuer_free(pvp_cc_issuer_t *iss)
{
	if (!iss)
		return;
	X509_free(iss->cert);
	EVP_PKEY_free(iss->key);
	free(iss);
}

/* Keys a TLS 1.2/1.3 client can sign with and that are not weak: EC from P-256 up, RSA from 2048 bits, Ed25519. */
static bool key_ok(EVP_PKEY *k)
{
	switch (EVP_PKEY_get_base_id(k)) {
	case EVP_PKEY_EC:
		return EVP_PKEY_get_bits(k) >= 256;
	case EVP_PKEY_RSA:
		return EVP_PKEY_get_bits(k) >= 2048;
	case EVP_PKEY_ED25519:
		return true;
	default:
		return false;
	}
}

static const EVP_MD *sig_md(EVP_PKEY *k)
{
	return EVP_PKEY_get_base_id(k) == EVP_PKEY_ED25519 ? NULL : EVP_sha256();
}

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
	X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
	int ok = e && X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
	return ok ? 0 : VP_ECRYPTO;
}

/* The subject CN of \p req, normalised, or "" */
static void req_domain(X509_REQ *req, char out[PVP_DOMAIN_MAX + 1])
{
	char raw[PVP_DOMAIN_MAX + 2] = "";
	int n = X509_NAME_get_text_by_NID(X509_REQ_get_subject_name(req), NID_commonName, raw, sizeof(raw));
	out[0] = '\0';
	if (n <= 0 || (size_t)n != strlen(raw) || pvp_domain_normalize(raw, out) != 0)
		out[0] = '\0';
}

/*
 * Names the request asks for beyond its CN: only DNS:<domain> and URI:tel:<number> may appear.  A request naming
 * another number or domain is refused rather than silently narrowed, so a client that asks for more than it
 * validated learns it at once (and the log says so).
 */
static bool req_names_ok(X509_REQ *req, const char *domain, const char *number, pvp_cc_refusal_t *why)
{
	STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
	GENERAL_NAMES *sans = NULL;
	bool ok = true;
	int idx = exts ? X509v3_get_ext_by_NID(exts, NID_subject_alt_name, -1) : -1;

	if (idx >= 0 && !(sans = X509V3_EXT_d2i(X509v3_get_ext(exts, idx))))
		ok = false;
	for (int k = 0; ok && sans && k < sk_GENERAL_NAME_num(sans); k++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, k);
		const ASN1_STRING *s = g->type == GEN_DNS ? g->d.dNSName : g->type == GEN_URI ? g->d.uniformResourceIdentifier
		                                                                               : NULL;
		size_t sl = s ? (size_t)ASN1_STRING_length(s) : 0;
		const char *sd = s ? (const char *)ASN1_STRING_get0_data(s) : "";
		char raw[PVP_DOMAIN_MAX + 1], norm[PVP_DOMAIN_MAX + 1];
		if (g->type == GEN_DNS) {
			ok = sl > 0 && sl <= PVP_DOMAIN_MAX && !memchr(sd, '\0', sl);
			if (ok) {
				memcpy(raw, sd, sl);
				raw[sl] = '\0';
				ok = pvp_domain_normalize(raw, norm) == 0 && strcmp(norm, domain) == 0;
			}
			if (!ok)
				*why = PVP_CCR_DOMAIN;
		} else if (g->type == GEN_URI) {
			ok = sl == 4 + strlen(number) && memcmp(sd, "tel:", 4) == 0 && memcmp(sd + 4, number, sl - 4) == 0;
			if (!ok)
				*why = PVP_CCR_NUMBER;
		} else {
			ok = false; /* an e-mail, IP or other name: nothing the profile grants */
			*why = PVP_CCR_DOMAIN;
		}
	}
	GENERAL_NAMES_free(sans);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	return ok;
}

int pvp_cc_issue(const pvp_cc_issuer_t *iss, const uint8_t *csr, size_t csr_len, const char *number,
                 const char *domain, uint64_t now_s, uint64_t not_after_s, uint8_t *out, size_t cap,
                 size_t *outlen, pvp_cc_refusal_t *why)
{
	const unsigned char *p = csr;
	X509_REQ *req = NULL;
	X509 *x = NULL;
	X509_NAME *name = NULL;
	BIGNUM *bn = NULL;
	EVP_PKEY *pub;
	char want[PVP_DOMAIN_MAX + 1], got[PVP_DOMAIN_MAX + 1], san[PVP_DOMAIN_MAX + VP_E164_BUFLEN + 16];
	uint64_t end;
	int rc = VP_EREFUSED, len;
	unsigned char *o;

	*why = PVP_CCR_MALFORMED;
	if (csr_len > PVP_CC_DER_MAX || !(req = d2i_X509_REQ(NULL, &p, (long)csr_len)) || p != csr + csr_len)
		goto finish;
	*why = PVP_CCR_KEY;
	/* Proof of possession: the request is signed by the key it certifies. */
	if (!(pub = X509_REQ_get0_pubkey(req)) || !key_ok(pub) || X509_REQ_verify(req, pub) != 1)
		goto finish;
	*why = PVP_CCR_DOMAIN;
	if (pvp_domain_normalize(domain, want) != 0)
		goto finish;
	req_domain(req, got);
	if (strcmp(got, want) != 0 || !req_names_ok(req, want, number, why))
		goto finish;
	*why = PVP_CCR_INTERNAL;
	end = now_s + iss->lifetime_s;
	if (not_after_s < end)
		end = not_after_s;
	if (end <= now_s)
		goto finish; /* the route is already over: nothing to certify (VP_EREFUSED) */
	rc = VP_ECRYPTO;
	if (!(x = X509_new()) || !X509_set_version(x, 2) || !(bn = BN_new()) ||
	    !BN_rand(bn, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) || /* 127 bits: a positive 16-byte serial */
	    !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) ||
	    !X509_set_issuer_name(x, X509_get_subject_name(iss->cert)) || !(name = X509_NAME_new()) ||
	    !X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_ASC, (const unsigned char *)want, -1, -1, 0) ||
	    !X509_set_subject_name(x, name) || !ASN1_TIME_set(X509_getm_notBefore(x), (time_t)(now_s - PVP_CC_SKEW_S)) ||
	    !ASN1_TIME_set(X509_getm_notAfter(x), (time_t)end) || !X509_set_pubkey(x, pub))
		goto finish;
	{
		X509V3_CTX ctx;
		X509V3_set_ctx(&ctx, iss->cert, x, NULL, NULL, 0);
		/* number and domain came from the validation, never from the request: only the key and the
		 * domain's consistency are taken from it.  Both names are plain (validated) characters. */
		snprintf(san, sizeof(san), "DNS:%s,URI:tel:%s", want, number);
		if (add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE") ||
		    add_ext(x, &ctx, NID_key_usage, "critical,digitalSignature") ||
		    add_ext(x, &ctx, NID_ext_key_usage, "clientAuth") ||
		    add_ext(x, &ctx, NID_subject_key_identifier, "hash") ||
		    /* keyid when the issuer has one (a CA made without a subjectKeyIdentifier still issues) */
		    (X509_get0_subject_key_id(iss->cert) && add_ext(x, &ctx, NID_authority_key_identifier, "keyid")) ||
		    add_ext(x, &ctx, NID_subject_alt_name, san))
			goto finish;
	}
	if (!X509_sign(x, iss->key, sig_md(iss->key)))
		goto finish;
	len = i2d_X509(x, NULL);
	if (len <= 0)
		goto finish;
	if ((size_t)len > cap) {
		rc = VP_ESPACE;
		goto finish;
	}
	o = out;
	i2d_X509(x, &o);
	*outlen = (size_t)len;
	*why = PVP_CCR_NONE;
	rc = 0;
finish:
	BN_free(bn);
	X509_NAME_free(name);
	X509_free(x);
	X509_REQ_free(req);
	ERR_clear_error();
	return rc;
}

int pvp_cc_csr_make(EVP_PKEY *key, const char *domain, uint8_t *out, size_t cap, size_t *outlen)
{
	X509_REQ *req = X509_REQ_new();
	X509_NAME *name = X509_NAME_new();
	STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
	X509_EXTENSION *e = NULL;
	char d[PVP_DOMAIN_MAX + 1], san[PVP_DOMAIN_MAX + 8];
	int rc = VP_ECRYPTO, len;
	unsigned char *o;

	if (pvp_domain_normalize(domain, d) != 0) {
		rc = VP_EINVAL;
		goto finish;
	}
	snprintf(san, sizeof(san), "DNS:%s", d);
	if (!req || !name || !exts ||
	    !X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_ASC, (const unsigned char *)d, -1, -1, 0) ||
	    !X509_REQ_set_subject_name(req, name) || !X509_REQ_set_pubkey(req, key) ||
	    !(e = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san)) || !sk_X509_EXTENSION_push(exts, e))
		goto finish;
	e = NULL;
	if (!X509_REQ_add_extensions(req, exts) || !X509_REQ_sign(req, key, sig_md(key)))
		goto finish;
	len = i2d_X509_REQ(req, NULL);
	if (len <= 0)
		goto finish;
	if ((size_t)len > cap) {
		rc = VP_ESPACE;
		goto finish;
	}
	o = out;
	i2d_X509_REQ(req, &o);
	*outlen = (size_t)len;
	rc = 0;
finish:
	X509_EXTENSION_free(e);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	X509_NAME_free(name);
	X509_REQ_free(req);
	ERR_clear_error();
	return rc;
}

/* ---- message bodies ----------------------------------------------------------------------------------- */

int pvp_cc_req_encode(const uint8_t *csr, size_t csr_len, uint8_t *out, size_t cap, size_t *outlen)
{
	if (csr_len == 0 || csr_len > PVP_CC_DER_MAX)
		return VP_EINVAL;
	if (cap < 4 + csr_len)
		return VP_ESPACE;
	out[0] = PVP_CC_VERSION;
	out[1] = PVP_CC_REQ;
	out[2] = (uint8_t)(csr_len >> 8);
	out[3] = (uint8_t)csr_len;
	memcpy(out + 4, csr, csr_len);
	*outlen = 4 + csr_len;
	return 0;
}

static int head_decode(vp_rd_t *rd, uint8_t type)
{
	uint8_t v, t;
	int rc;
	if ((rc = vp_rd_u8(rd, &v)) || (rc = vp_rd_u8(rd, &t)))
		return rc;
	if (v != PVP_CC_VERSION)
		return VP_EUNSUPPORTED;
	return t == type ? 0 : VP_EBADTYPE;
}

static int vec_decode(vp_rd_t *rd, const uint8_t **p, size_t *n)
{
	uint16_t l;
	int rc;
	if ((rc = vp_rd_u16(rd, &l)) || (rc = vp_rd_bytes(rd, l, p)))
		return rc;
	if (l > PVP_CC_DER_MAX)
		return VP_EMALFORMED;
	*n = l;
	return vp_rd_left(rd) ? VP_ETRAILING : 0;
}

int pvp_cc_req_decode(const uint8_t *in, size_t len, const uint8_t **csr, size_t *csr_len)
{
	vp_rd_t rd;
	int rc;
	vp_rd_init(&rd, in, len);
	if ((rc = head_decode(&rd, PVP_CC_REQ)) || (rc = vec_decode(&rd, csr, csr_len)))
		return rc;
	return *csr_len ? 0 : VP_EMALFORMED;
}

int pvp_cc_resp_encode(uint8_t status, uint8_t reason, const uint8_t *cert, size_t cert_len, uint8_t *out,
                       size_t cap, size_t *outlen)
{
	if (cert_len > PVP_CC_DER_MAX || status > 1)
		return VP_EINVAL;
	if (cap < 6 + cert_len)
		return VP_ESPACE;
	out[0] = PVP_CC_VERSION;
	out[1] = PVP_CC_RESP;
	out[2] = status;
	out[3] = reason;
	out[4] = (uint8_t)(cert_len >> 8);
	out[5] = (uint8_t)cert_len;
	if (cert_len)
		memcpy(out + 6, cert, cert_len);
	*outlen = 6 + cert_len;
	return 0;
}

int pvp_cc_resp_decode(const uint8_t *in, size_t len, uint8_t *status, uint8_t *reason, const uint8_t **cert,
                       size_t *cert_len)
{
	vp_rd_t rd;
	int rc;
	vp_rd_init(&rd, in, len);
	if ((rc = head_decode(&rd, PVP_CC_RESP)) || (rc = vp_rd_u8(&rd, status)) || (rc = vp_rd_u8(&rd, reason)) ||
	    (rc = vec_decode(&rd, cert, cert_len)))
		return rc;
	/* issued carries a certificate, refused carries none and says why */
	if (*status > 1 || (*status == 0) != (*cert_len > 0) || (*status == 0) != (*reason == PVP_CCR_NONE))
		return VP_EMALFORMED;
	return 0;
}

int pvp_cc_answer(const pvp_cc_issuer_t *iss, const uint8_t *in, size_t len, const char *number,
                  const char *domain, uint64_t now_s, uint64_t not_after_s, uint8_t *out, size_t cap,
                  size_t *outlen, pvp_cc_refusal_t *why)
{
	uint8_t der[PVP_CC_DER_MAX];
	const uint8_t *csr;
	size_t csr_len, der_len = 0;
	int rc = pvp_cc_req_decode(in, len, &csr, &csr_len);

	if (rc)
		*why = PVP_CCR_MALFORMED;
	else if ((rc = pvp_cc_issue(iss, csr, csr_len, number, domain, now_s, not_after_s, der, sizeof(der), &der_len,
	                            why)) != 0 && *why == PVP_CCR_NONE)
		*why = PVP_CCR_INTERNAL;
	vp_log_info(MOD, "client_cert", "number=%s domain=%s outcome=%s", number, domain,
	            rc ? pvp_cc_refusal_str(*why) : "issued");
	return pvp_cc_resp_encode(rc ? 1 : 0, rc ? (uint8_t)*why : 0, der, rc ? 0 : der_len, out, cap, outlen);
}

int pvp_cc_accept(const uint8_t *in, size_t len, EVP_PKEY *key, const char *number, const char *domain,
                  uint8_t *cert, size_t cap, size_t *cert_len, pvp_cc_refusal_t *why)
{
	uint8_t status, reason;
	const uint8_t *der;
	const unsigned char *p;
	size_t n;
	X509 *x = NULL;
	GENERAL_NAMES *sans = NULL;
	char d[PVP_DOMAIN_MAX + 1];
	bool dns_ok = false, tel_ok = false;
	int rc = VP_EMALFORMED;

	*why = PVP_CCR_NONE;
	if (pvp_cc_resp_decode(in, len, &status, &reason, &der, &n))
		return VP_EMALFORMED;
	if (status != 0) {
		*why = (pvp_cc_refusal_t)reason;
		return VP_EREFUSED;
	}
	p = der;
	if (!(x = d2i_X509(NULL, &p, (long)n)) || p != der + n || X509_check_private_key(x, key) != 1 ||
	    pvp_domain_normalize(domain, d) != 0)
		goto finish;
	sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	for (int k = 0; sans && k < sk_GENERAL_NAME_num(sans); k++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, k);
		const ASN1_STRING *s = g->type == GEN_DNS ? g->d.dNSName : g->type == GEN_URI ? g->d.uniformResourceIdentifier
		                                                                               : NULL;
		if (!s)
			continue;
		size_t sl = (size_t)ASN1_STRING_length(s);
		const char *sd = (const char *)ASN1_STRING_get0_data(s);
		if (g->type == GEN_DNS && sl == strlen(d) && memcmp(sd, d, sl) == 0)
			dns_ok = true;
		if (g->type == GEN_URI && sl == 4 + strlen(number) && memcmp(sd, "tel:", 4) == 0 &&
		    memcmp(sd + 4, number, sl - 4) == 0)
			tel_ok = true;
	}
	if (!dns_ok || !tel_ok)
		goto finish;
	if (n > cap) {
		rc = VP_ESPACE;
		goto finish;
	}
	memcpy(cert, der, n);
	*cert_len = n;
	rc = 0;
finish:
	GENERAL_NAMES_free(sans);
	X509_free(x);
	ERR_clear_error();
	return rc;
}

/* ---- border side ---------------------------------------------------------------------------------------- */

static int asn1_time_s(const ASN1_TIME *t, uint64_t *out)
{
	struct tm tm;
	if (!t || !ASN1_TIME_to_tm(t, &tm))
		return VP_EMALFORMED;
	time_t s = timegm(&tm);
	if (s < 0)
		return VP_EMALFORMED;
	*out = (uint64_t)s;
	return 0;
}

int pvp_cc_identity(X509 *leaf, X509 *issuer, pvp_cc_identity_t *id)
{
	GENERAL_NAMES *sans = NULL;
	EVP_PKEY *ik;
	unsigned ndns = 0, ntel = 0;
	int rc = VP_EAUTH;

	memset(id, 0, sizeof(*id));
	if (!leaf || !issuer || !(ik = X509_get0_pubkey(issuer)) || X509_check_issued(issuer, leaf) != X509_V_OK ||
	    X509_verify(leaf, ik) != 1)
		goto finish;
	rc = VP_EMALFORMED;
	/* An end entity for TLS clients: not a CA, clientAuth in its extended key usage. */
	if (X509_check_ca(leaf) != 0 || !(X509_get_extension_flags(leaf) & EXFLAG_XKUSAGE) ||
	    !(X509_get_extended_key_usage(leaf) & XKU_SSL_CLIENT))
		goto finish;
	sans = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
	for (int k = 0; sans && k < sk_GENERAL_NAME_num(sans); k++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, k);
		char raw[PVP_DOMAIN_MAX + 1];
		const ASN1_STRING *s = g->type == GEN_DNS ? g->d.dNSName : g->type == GEN_URI ? g->d.uniformResourceIdentifier
		                                                                               : NULL;
		if (!s)
			continue;
		int sl = ASN1_STRING_length(s);
		const unsigned char *sd = ASN1_STRING_get0_data(s);
		if (sl <= 0 || sl > PVP_DOMAIN_MAX || memchr(sd, '\0', (size_t)sl))
			goto finish;
		memcpy(raw, sd, (size_t)sl);
		raw[sl] = '\0';
		if (g->type == GEN_DNS) {
			if (++ndns > 1 || pvp_domain_normalize(raw, id->domain) != 0)
				goto finish;
		} else if (strncmp(raw, "tel:", 4) == 0) {
			/* canonical E.164 only: "+" and digits, as issued (a national or dotted form was not) */
			if (++ntel > 1 || !vp_e164_is_canonical(raw + 4) || (size_t)sl - 4 >= sizeof(id->number))
				goto finish;
			memcpy(id->number, raw + 4, (size_t)sl - 3);
		}
	}
	if (ndns != 1 || ntel != 1 || asn1_time_s(X509_get0_notBefore(leaf), &id->not_before_s) ||
	    asn1_time_s(X509_get0_notAfter(leaf), &id->not_after_s))
		goto finish;
	rc = 0;
finish:
	GENERAL_NAMES_free(sans);
	ERR_clear_error();
	if (rc)
		memset(id, 0, sizeof(*id));
	return rc;
}
