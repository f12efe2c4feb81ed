/*
 * control/node/enroll.h - the node's side of RFC 6940 §11.2 and §11.3 over HTTPS (libcurl):
 * fetching the configuration document and enrolling (or renewing) for a certificate.
 *
 * Enrollment is an HTTPS POST of an `application/x-www-form-urlencoded` body with the fields `username`,
 * `password`, `nodeids` (how many Node-IDs) and `csr` (base64 of the DER PKCS#10 request); the answer is
 * the DER certificate (`application/pkix-cert`). Renewal presents the current certificate as the TLS
 * client certificate and sends only `csr`: the CA keeps that certificate's Node-IDs. docs/protocol.md §9.6.
 */
#ifndef VP_CONTROL_NODE_ENROLL_H
#define VP_CONTROL_NODE_ENROLL_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "common/id.h"

#define ENR_WHY_MAX 256
#define ENR_MAX_ANSWER (64 * 1024) /* a certificate answer larger than this is refused */

/*! \brief Where and how to reach the server. Only https:// URLs are followed; no redirects. */
typedef struct enr_http {
	const char *url;        /* enrollment URL, or the configuration URL (…/.well-known/reload-config) */
	const char *ca_file;    /* PEM roots for the server's certificate (the overlay CA); NULL = system */
	const char *cert_file;  /* renewal: current certificate (PEM), presented as TLS client certificate */
	const char *key_file;   /* renewal: its key (PEM) */
	uint32_t timeout_ms;    /* whole request; 0 = 10 s */
} enr_http_t;

/*! \brief One enrollment request. username/password NULL for a renewal (then nodeids is ignored). */
typedef struct enr_request {
	const char *username;
	const char *password;
	unsigned nodeids;
	X509_REQ *csr;
} enr_request_t;

/*!
 * \brief A PKCS#10 request for \p key, signed with it (SHA-256): subject CN "viprd node", no attributes:
 * the CA decides names and Node-IDs. Caller frees *out. VP_ECRYPTO if OpenSSL fails.
 */
int enr_csr_create(EVP_PKEY *key, X509_REQ **out);

/*! \brief DER of \p req (OPENSSL_free it). VP_ECRYPTO on failure. */
int enr_csr_der(X509_REQ *req, uint8_t **der, size_t *len);

/*!
 * \brief GET the configuration document (§11.2). *xml (free()) and *len on HTTP 200; VP_EIO with the
 * transport error or the HTTP status in \p why (ENR_WHY_MAX) otherwise; VP_ETOOBIG above OD_MAX_DOC.
 */
int enr_fetch_config(const enr_http_t *h, char **xml, size_t *len, char *why);

/*!
 * \brief POST the request (§11.3). On HTTP 200 the DER certificate is decoded into *cert. Otherwise
 * *status holds the HTTP status (0 if the exchange failed) and \p why the server's one-line reason:
 * VP_EAUTH for 401/403, VP_EINVAL for 400/413, VP_ERATELIMIT for 429, VP_EIO for anything else,
 * VP_EMALFORMED if a 200 answer is not a certificate.
 */
int enr_enroll(const enr_http_t *h, const enr_request_t *r, X509 **cert, long *status, char *why);

/*!
 * \brief Check what the CA returned: it certifies \p key, it carries \p expect_n Node-IDs of \p overlay
 * (and exactly \p expect_ids when not NULL: a renewal must keep them). VP_EAUTH with a reason otherwise.
 */
int enr_check_issued(X509 *cert, EVP_PKEY *key, const char *overlay, size_t expect_n,
                     const vp_id_t *expect_ids, char *why);

#endif
