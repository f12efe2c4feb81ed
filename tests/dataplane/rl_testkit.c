#include "rl_testkit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "common/hex.h"

size_t tk_hex(const char *hex, uint8_t *buf, size_t cap)
{
	size_t n;
	if (vp_hex_decode(hex, strlen(hex), buf, cap, &n)) {
		fprintf(stderr, "tk_hex: bad vector: %s\n", hex);
		abort();
	}
	return n;
}

int tk_ident_new(tk_ident_t *id, int rsa)
{
	X509 *x = NULL;
	X509_NAME *name;
	unsigned char *p;
	int len, ret = -1;

	memset(id, 0, sizeof(*id));
	id->key = rsa ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048)
	              : EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (!id->key)
		goto out;
	x = X509_new();
	if (!x)
		goto out;
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, id->key);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"viprd-test", -1, -1, 0);
	X509_set_issuer_name(x, name);
	{
		/* The Node-ID as RFC 6940 puts it in a certificate. */
		X509V3_CTX ctx;
		X509_EXTENSION *ext;
		X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
		ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name,
		                          "URI:reload://000102030405060708090a0b0c0d0e0f@vipr.example/");
		if (!ext)
			goto out;
		X509_add_ext(x, ext, -1);
		X509_EXTENSION_free(ext);
	}
	if (!X509_sign(x, id->key, EVP_sha256()))
		goto out;
	len = i2d_X509(x, NULL);
	if (len <= 0)
		goto out;
	id->der = malloc((size_t)len);
	if (!id->der)
		goto out;
	p = id->der;
	i2d_X509(x, &p);
	id->der_len = (size_t)len;
	if (rl_signer_cert_hash(id->der, id->der_len, id->hash, &id->signer))
		goto out;
	id->cert.type = RL_CERT_X509;
	id->cert.der.p = id->der;
	id->cert.der.len = (uint32_t)id->der_len;
	ret = 0;
out:
	X509_free(x);
	if (ret)
		tk_ident_free(id);
	return ret;
}

void tk_ident_free(tk_ident_t *id)
{
	EVP_PKEY_free(id->key);
	free(id->der);
	memset(id, 0, sizeof(*id));
}
