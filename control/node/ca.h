/*
 * control/node/ca.h - the overlay's enrollment CA: keys, the root certificate,
 * node certificates issued from PKCS#10 requests, and reading Node-IDs back out
 * of a certificate.
 *
 * The certificate profile is docs/protocol.md §9.1: each Node-ID is a
 * subjectAltName URI `reload://<hex>@<overlay>/`, the user an rfc822Name,
 * CA:FALSE, keyUsage digitalSignature, extendedKeyUsage serverAuth+clientAuth.
 * The CA chooses the Node-IDs (ca_random_node_ids) so a requester can never
 * pick its place in the ring.  Everything here is OpenSSL 3.
 */
#ifndef VP_CONTROL_NODE_CA_H
#define VP_CONTROL_NODE_CA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "common/id.h"

#define CA_OVERLAY_MAX 253        /* a DNS name */
#define CA_USER_MAX 255           /* local@domain */
#define CA_MAX_NODE_IDS 64        /* hard ceiling of [enroll] max_node_ids */
#define CA_CLOCK_SKEW_S 300       /* notBefore is back-dated by this much */

/*! \brief Key types the CA makes (its own, the signer's) and accepts in requests. */
typedef enum ca_key_type {
	CA_KEY_EC_P256 = 0,  /* ECDSA on prime256v1: the default */
	CA_KEY_RSA_2048 = 1, /* RSA; requests may carry 2048 to 4096 bits */
} ca_key_type_t;

/*! \brief Bit mask of accepted request key types: 1u << ca_key_type_t. */
#define CA_KEYS_ANY ((1u << CA_KEY_EC_P256) | (1u << CA_KEY_RSA_2048))

/*! \brief The words of the configuration's key-type choices ("ecdsa-p256", "rsa-2048"), NULL-terminated. */
extern const char *const ca_key_type_names[];

/*! \brief A fresh key of type \p t in *out (caller frees). VP_ECRYPTO if OpenSSL fails. */
int ca_key_generate(ca_key_type_t t, EVP_PKEY **out);

/*!
 * \brief The type of \p key if it is one the profile allows: ECDSA P-256, or RSA with 2048 to 4096 bits.
 * VP_EUNSUPPORTED for anything else (other curves, Ed25519, short or huge RSA, DSA).
 */
int ca_key_type_of(EVP_PKEY *key, ca_key_type_t *out);

/*! \brief An enrollment CA: its key and self-signed certificate, bound to one overlay name. */
typedef struct ca ca_t;

/*!
 * \brief Make a new CA for \p overlay (a DNS name) with a new key of type \p t, valid \p lifetime_s seconds.
 * VP_EINVAL for a bad overlay name, VP_ECRYPTO if OpenSSL fails, VP_ENOMEM.
 */
int ca_create(const char *overlay, ca_key_type_t t, uint32_t lifetime_s, ca_t **out);

/*!
 * \brief Load a CA from PEM files (certificate, private key). VP_EIO if a file cannot be read,
 * VP_EMALFORMED if it is not PEM of the right kind, VP_ECRYPTO if key and certificate do not match.
 */
int ca_load(const char *overlay, const char *cert_path, const char *key_path, ca_t **out);

void ca_free(ca_t *ca);

/*! \brief The CA's certificate and key (owned by \p ca) and its overlay name. */
X509 *ca_cert(const ca_t *ca);
EVP_PKEY *ca_key(const ca_t *ca);
const char *ca_overlay(const ca_t *ca);

/*!
 * \brief Read a PKCS#10 request, DER (as §11.3 sends it) or PEM. VP_EMALFORMED if it does not decode or
 * has trailing bytes. The caller frees *out with X509_REQ_free.
 */
int ca_csr_parse(const uint8_t *data, size_t len, X509_REQ **out);

/*!
 * \brief Check a request: its self-signature verifies with the public key it carries (proof of
 * possession: VP_EAUTH otherwise) and the key is of a type in \p allowed (VP_EUNSUPPORTED otherwise).
 */
int ca_csr_check(X509_REQ *req, unsigned allowed);

/*! \brief \p n Node-IDs from the CSPRNG (RAND_bytes). VP_ECRYPTO if it fails. */
int ca_random_node_ids(vp_id_t *ids, size_t n);

/*! \brief Is \p user a name the profile issues: `local@domain`, ASCII letters, digits and `._+-`? */
bool ca_user_valid(const char *user);

/*! \brief What a node certificate is issued for. */
typedef struct ca_issue_params {
	const char *user;        /* rfc822Name; must satisfy ca_user_valid() */
	const vp_id_t *ids;      /* Node-IDs, 1 to CA_MAX_NODE_IDS, in SAN order */
	size_t n_ids;
	uint32_t lifetime_s;     /* notAfter = now + lifetime_s */
	time_t now;              /* issue time (0 = time(NULL)) */
} ca_issue_params_t;

/*!
 * \brief Issue a node certificate for the public key of \p req (checked by the caller with ca_csr_check).
 * Subject, SANs and extensions per docs/protocol.md §9.1, signed with SHA-256. VP_EINVAL for a bad user,
 * no Node-ID or more than CA_MAX_NODE_IDS; VP_ECRYPTO if OpenSSL fails. Caller frees *out.
 */
int ca_issue(const ca_t *ca, X509_REQ *req, const ca_issue_params_t *p, X509 **out);

/*! \brief Same as ca_issue() for a bare public key (the configuration signer, the HTTPS server's key). */
int ca_issue_key(const ca_t *ca, EVP_PKEY *pub, const ca_issue_params_t *p, X509 **out);

/*!
 * \brief Issue the enrollment/configuration HTTPS server's certificate: CN and DNS SAN \p host, plus
 * IP SANs 127.0.0.1 and ::1 and DNS localhost (so tests and a local server verify by name),
 * extendedKeyUsage serverAuth. Caller frees *out.
 */
int ca_issue_server(const ca_t *ca, EVP_PKEY *pub, const char *host, uint32_t lifetime_s, X509 **out);

/*!
 * \brief The Node-IDs of \p cert for \p overlay: every SAN URI `reload://<32 hex>@<overlay>` with or without
 * a trailing `/` (hex in either case, overlay compared case-insensitively); other URIs are skipped.
 * Up to \p cap ids into \p ids, the count in *n. VP_ENOTFOUND if there is none, VP_ESPACE if more than cap.
 */
int ca_cert_node_ids(X509 *cert, const char *overlay, vp_id_t *ids, size_t cap, size_t *n);

/*! \brief The first rfc822Name SAN of \p cert into \p out. VP_ENOTFOUND if none, VP_ESPACE if too long. */
int ca_cert_user(X509 *cert, char *out, size_t cap);

/*!
 * \brief Does \p cert chain to one of \p roots (directly or through \p chain, may be NULL/0) and is it
 * valid at \p now (0 = time(NULL))? 0 if so; VP_EAUTH with OpenSSL's reason in \p why otherwise.
 */
int ca_verify(X509 *cert, X509 *const *chain, size_t n_chain, X509 *const *roots, size_t n_roots,
              time_t now, char *why, size_t whycap);

/*! \brief SHA-256 of the DER certificate (its fingerprint, the form of a provisioned anchor). */
int ca_cert_fingerprint(X509 *cert, uint8_t out[32]);

/* ---- files ---- */

/*! \brief Write \p key as PKCS#8 PEM, file mode 0600 (created atomically). VP_EIO on failure. */
int ca_write_key(const char *path, EVP_PKEY *key);

/*! \brief Write \p cert as PEM. VP_EIO on failure. */
int ca_write_cert(const char *path, X509 *cert);

/*! \brief Read a PEM private key / certificate. VP_EIO if unreadable, VP_EMALFORMED if not PEM of that kind. */
int ca_read_key(const char *path, EVP_PKEY **out);
int ca_read_cert(const char *path, X509 **out);

/*! \brief DER of \p cert (OPENSSL_malloc'd, free with OPENSSL_free). VP_ECRYPTO on failure. */
int ca_cert_der(X509 *cert, uint8_t **der, size_t *len);

#endif
