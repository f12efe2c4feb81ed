/*
 * bench/support/bench_ident.h - an overlay identity for the benchmarks: a P-256 key and a certificate for one
 * random Node-ID, issued by control/node/ca.h exactly as vipr-enroll issues them, with the forms the codec
 * and the links want (DER, its hash and signer identity, rl_cert_t).  Header only: each bench program that
 * needs it is one translation unit.
 */
#ifndef VP_BENCH_SUPPORT_BENCH_IDENT_H
#define VP_BENCH_SUPPORT_BENCH_IDENT_H

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "common/id.h"
#include "control/node/ca.h"
#include "dataplane/reload.h"

typedef struct bench_ident {
	EVP_PKEY *key;
	X509 *cert;
	uint8_t *der;
	size_t der_len;
	uint8_t hash[RL_MAX_HASH_LEN];
	rl_signer_identity_t signer;
	rl_cert_t rlcert;
	vp_id_t id;
} bench_ident_t;

/* A new identity issued by \p ca for \p user (one day); 0, or -1 on any failure. */
static inline int bench_ident_issue(const ca_t *ca, const char *user, bench_ident_t *o)
{
	ca_issue_params_t p = { .user = user, .ids = &o->id, .n_ids = 1, .lifetime_s = 86400 };
	if (ca_random_node_ids(&o->id, 1) || ca_key_generate(CA_KEY_EC_P256, &o->key) ||
	    ca_issue_key(ca, o->key, &p, &o->cert) || ca_cert_der(o->cert, &o->der, &o->der_len) ||
	    rl_signer_cert_hash(o->der, o->der_len, o->hash, &o->signer))
		return -1;
	o->rlcert = (rl_cert_t){ RL_CERT_X509, { o->der, (uint32_t)o->der_len } };
	return 0;
}

#endif
