/*
 * tests/dataplane/pki_testkit.h - a throw-away overlay PKI for the link and
 * certificate tests: a root CA and node certificates following the profile of
 * docs/protocol.md §1.4 (ECDSA P-256 or RSA-2048 keys, one subjectAltName URI
 * reload://<32 hex>@<overlay>/ per Node-ID, an rfc822Name for the user,
 * basicConstraints CA:FALSE, keyUsage digitalSignature, extendedKeyUsage
 * serverAuth + clientAuth), with validity windows chosen by the test.
 */
#ifndef VP_TESTS_PKI_TESTKIT_H
#define VP_TESTS_PKI_TESTKIT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/types.h>

#include "common/id.h"
#include "dataplane/reload.h"

typedef struct pk_ca {
	EVP_PKEY *key;
	X509 *cert;
} pk_ca_t;

typedef struct pk_node {
	EVP_PKEY *key;
	X509 *cert;
	uint8_t *der;
	size_t der_len;
	uint8_t hash[RL_MAX_HASH_LEN];
	rl_signer_identity_t signer; /* cert_hash over der */
	rl_cert_t rlcert;            /* der as a GenericCertificate */
} pk_node_t;

/* Node certificate options. */
typedef struct pk_opts {
	const char *overlay;     /* the overlay in the URIs ("vipr.example") */
	long not_before_s;       /* offset from now, e.g. -60 */
	long not_after_s;        /* offset from now, e.g. 3600 */
	int rsa;                 /* RSA-2048 instead of ECDSA P-256 */
	int ca_true;             /* a profile violation: basicConstraints CA:TRUE */
	int no_slash;            /* URIs without the trailing '/' */
} pk_opts_t;

/* A root CA (self-signed, ECDSA P-256, valid [-1 day, +10 years]). 0 on success. */
int pk_ca_new(pk_ca_t *ca, const char *cn);
void pk_ca_free(pk_ca_t *ca);

/* A node certificate for ids[0..n) signed by ca. 0 on success. */
int pk_node_new(pk_node_t *nd, const pk_ca_t *ca, const vp_id_t *ids, size_t n, const pk_opts_t *o);
void pk_node_free(pk_node_t *nd);

/* Write cert and key (PEM) to dir/name.crt and dir/name.key. 0 on success. */
int pk_node_write(const pk_node_t *nd, const char *dir, const char *name);
int pk_ca_write(const pk_ca_t *ca, const char *path);

/*
 * Build and sign a request (or answer) with `body` to node `dest`, signed by
 * `signer`, carrying `carry`'s certificate (may be NULL) and via[0..nvia).
 * Returns the message length in buf, or aborts.
 */
size_t pk_sign_msg(uint8_t *buf, size_t cap, const pk_node_t *signer, const pk_node_t *carry,
                   const vp_id_t *via, size_t nvia, const vp_id_t *dest, const rl_body_t *body,
                   uint64_t txid);

/* A Node-ID whose 16 bytes are all `b`. */
vp_id_t pk_id(uint8_t b);

#endif
