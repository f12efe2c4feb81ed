/*
 * libFuzzer target: the CertRequest/CertResponse bodies (docs/protocol.md §6.1), the issuer's reading of a
 * PKCS#10 request, and the client's and border's reading of a certificate.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "pvp/clientcert.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static EVP_PKEY *key;
static pvp_cc_issuer_t iss;

/* One EC issuer made once: the target reads inputs against it, it never needs to be secret. */
static void setup(void)
{
	X509_NAME *n;
	if (key)
		return;
	key = EVP_EC_gen("P-256");
	iss.cert = X509_new();
	iss.key = key;
	iss.lifetime_s = 3600;
	n = X509_get_subject_name(iss.cert);
	X509_NAME_add_entry_by_NID(n, NID_commonName, MBSTRING_ASC, (const unsigned char *)"fuzz issuer", -1, -1, 0);
	X509_set_issuer_name(iss.cert, n);
	X509_set_pubkey(iss.cert, key);
	X509_gmtime_adj(X509_getm_notBefore(iss.cert), 0);
	X509_gmtime_adj(X509_getm_notAfter(iss.cert), 3600);
	if (!key || !X509_sign(iss.cert, key, EVP_sha256()))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t out[2 * PVP_CC_DER_MAX], cert[PVP_CC_DER_MAX];
	const uint8_t *p;
	size_t n, m;
	uint8_t st, rs;
	pvp_cc_refusal_t why;
	pvp_cc_identity_t id;

	setup();
	/* Whatever decodes re-encodes to the same bytes. */
	if (pvp_cc_req_decode(data, size, &p, &n) == 0 &&
	    (pvp_cc_req_encode(p, n, out, sizeof(out), &m) || m != size || memcmp(out, data, m)))
		abort();
	if (pvp_cc_resp_decode(data, size, &st, &rs, &p, &n) == 0 &&
	    (pvp_cc_resp_encode(st, rs, p, n, out, sizeof(out), &m) || m != size || memcmp(out, data, m)))
		abort();
	/* The server's step on any body, the client's on any answer: an answer always, never a crash. */
	if (pvp_cc_answer(&iss, data, size, "+14085551234", "carrier-b.example", 2000000000, 2000003600, out,
	                  sizeof(out), &m, &why) != 0)
		abort();
	(void)pvp_cc_accept(data, size, key, "+14085551234", "carrier-b.example", cert, sizeof(cert), &n, &why);
	/* The border's reading of any DER certificate against the issuer. */
	p = data;
	X509 *x = d2i_X509(NULL, &p, (long)size);
	if (x) {
		(void)pvp_cc_identity(x, iss.cert, &id);
		X509_free(x);
	}
	return 0;
}
