/*
 * tests/dataplane/rl_testkit.h - helpers shared by the codec's tests, fuzz
 * targets and the tshark interop generator: hex vectors, a throw-away
 * signing identity, and builders for the sample messages.
 */
#ifndef VP_TESTS_RL_TESTKIT_H
#define VP_TESTS_RL_TESTKIT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/types.h>

#include "dataplane/reload.h"

/* Decode a hex string (whitespace allowed) into buf; returns the byte count or aborts. */
size_t tk_hex(const char *hex, uint8_t *buf, size_t cap);

/* A signing identity made on the spot: an EC P-256 (or RSA-2048) key and a self-signed X.509 certificate. */
typedef struct tk_ident {
	EVP_PKEY *key;
	uint8_t *der; /* the certificate, DER */
	size_t der_len;
	uint8_t hash[RL_MAX_HASH_LEN];
	rl_signer_identity_t signer; /* cert_hash over der */
	rl_cert_t cert;              /* der as a GenericCertificate */
} tk_ident_t;

/* 0 on success.  rsa selects RSA-2048 instead of ECDSA P-256. */
int tk_ident_new(tk_ident_t *id, int rsa);
void tk_ident_free(tk_ident_t *id);

#endif
