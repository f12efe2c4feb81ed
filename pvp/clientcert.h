/*
 * pvp/clientcert.h - client certificates instead of tickets (seed 001 §B.8; docs/protocol.md §6.1).
 *
 * After a ValExchange that granted routes, the PVP client may send a PKCS#10
 * request for its domain over the same TLS-SRP connection; the PVP server
 * answers with a short-lived X.509 certificate for that number and domain,
 * signed by the ViPR server's issuing key.  Border elements hold only the
 * issuer's certificate: a SIP TLS client that presents a certificate issued
 * by it directly is admitted for the number and domain it names, without a
 * ticket header.
 *
 * This file holds the certificate profile (issue, check), the two message
 * bodies of the exchange, and the helpers both PVP sides call between their
 * frames.  Pure computation over caller buffers plus OpenSSL objects; safe
 * from any thread (an issuer is read-only after loading).
 */
#ifndef VP_PVP_CLIENTCERT_H
#define VP_PVP_CLIENTCERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "common/e164.h"
#include "pvp/ticket.h"

#define PVP_CC_VERSION 1
#define PVP_CC_DER_MAX 4096          /* a CSR or certificate: RSA-4096 fits in about 1.5 kB */
#define PVP_CC_SKEW_S 60             /* notBefore is backdated by this: clocks of issuer and border differ */
#define PVP_CC_LIFETIME_DEFAULT_S 86400u /* "short-lived": a day, never past the route's expiry */

enum { PVP_CC_REQ = 3, PVP_CC_RESP = 4 }; /* message types after ValExchange's 1 and 2 */

/*! \brief Why a certificate request was refused (the CertResponse reason byte). */
typedef enum pvp_cc_refusal {
	PVP_CCR_NONE = 0,
	PVP_CCR_MALFORMED = 1,   /*!< the body or the DER does not parse, or another version */
	PVP_CCR_DOMAIN = 2,      /*!< the request's subject CN, or a DNS name it asks for, is not the ValExchange's domain */
	PVP_CCR_KEY = 3,         /*!< the self-signature fails, or the key type/size is not accepted */
	PVP_CCR_INTERNAL = 4,    /*!< the issuer failed */
	PVP_CCR_NUMBER = 5,      /*!< the request names (subjectAltName tel:) another number than the validated one */
} pvp_cc_refusal_t;

/*! \brief Short token for a refusal ("domain"); never NULL. */
const char *pvp_cc_refusal_str(unsigned r);

/*! \brief The issuing key and its certificate (the only part given to border elements). */
typedef struct pvp_cc_issuer {
	X509 *cert;
	EVP_PKEY *key;
	uint32_t lifetime_s;         /*!< certificate lifetime cap; the route's expiry caps it too */
} pvp_cc_issuer_t;

/*!
 * \brief Load the issuer's PEM certificate and key; \p lifetime_s 0 = PVP_CC_LIFETIME_DEFAULT_S.
 * VP_EIO (unreadable), VP_ECONFIG (not a CA certificate, or the key is not its key), VP_ENOMEM.
 */
int pvp_cc_issuer_load(const char *cert_path, const char *key_path, uint32_t lifetime_s, pvp_cc_issuer_t **out);

void pvp_cc_issuer_free(pvp_cc_issuer_t *iss);

/*!
 * \brief Issue a certificate for \p number (canonical E.164) and \p domain (normalised) to the key of
 * the DER PKCS#10 request \p csr, valid from now - PVP_CC_SKEW_S to min(now + lifetime, \p not_after_s).
 * Returns 0 with DER in \p out, or a refusal in *\p why with VP_EREFUSED (VP_ESPACE for \p cap).
 */
int pvp_cc_issue(const pvp_cc_issuer_t *iss, const uint8_t *csr, size_t csr_len, const char *number,
                 const char *domain, uint64_t now_s, uint64_t not_after_s, uint8_t *out, size_t cap,
                 size_t *outlen, pvp_cc_refusal_t *why);

/*! \brief A DER PKCS#10 request for \p domain signed by \p key (subject CN and one DNS subjectAltName). */
int pvp_cc_csr_make(EVP_PKEY *key, const char *domain, uint8_t *out, size_t cap, size_t *outlen);

/*! \brief CertRequest body: version, type, uint16 length, CSR. */
int pvp_cc_req_encode(const uint8_t *csr, size_t csr_len, uint8_t *out, size_t cap, size_t *outlen);

/*! \brief Decode a CertRequest body; *\p csr points into \p in.  VP_EMALFORMED/VP_ETRUNC/VP_ETRAILING/VP_EUNSUPPORTED. */
int pvp_cc_req_decode(const uint8_t *in, size_t len, const uint8_t **csr, size_t *csr_len);

/*! \brief CertResponse body: version, type, status (0 issued, 1 refused), reason, uint16 length, certificate. */
int pvp_cc_resp_encode(uint8_t status, uint8_t reason, const uint8_t *cert, size_t cert_len, uint8_t *out,
                       size_t cap, size_t *outlen);

/*! \brief Decode a CertResponse body; *\p cert points into \p in (errors as pvp_cc_req_decode()). */
int pvp_cc_resp_decode(const uint8_t *in, size_t len, uint8_t *status, uint8_t *reason, const uint8_t **cert,
                       size_t *cert_len);

/*!
 * \brief The server's step: decode the CertRequest \p in, issue (or refuse) for the validated
 * \p number and \p domain, and encode the CertResponse into \p out.  Returns 0 when \p out holds a
 * response (issued or refused: *\p why says), VP_ESPACE if \p cap is too small.
 */
int pvp_cc_answer(const pvp_cc_issuer_t *iss, const uint8_t *in, size_t len, const char *number,
                  const char *domain, uint64_t now_s, uint64_t not_after_s, uint8_t *out, size_t cap,
                  size_t *outlen, pvp_cc_refusal_t *why);

/*!
 * \brief The client's check of a CertResponse: issued, parses, names \p number and \p domain and
 * carries \p key's public key.  DER copied to \p cert.  VP_EREFUSED (refused by the server: *\p why),
 * VP_EMALFORMED (anything else wrong), VP_ESPACE.
 */
int pvp_cc_accept(const uint8_t *in, size_t len, EVP_PKEY *key, const char *number, const char *domain,
                  uint8_t *cert, size_t cap, size_t *cert_len, pvp_cc_refusal_t *why);

/*! \brief What a ViPR client certificate grants, as a border element reads it. */
typedef struct pvp_cc_identity {
	char number[VP_E164_BUFLEN];     /*!< the one tel: URI subjectAltName, canonical E.164 */
	char domain[PVP_DOMAIN_MAX + 1]; /*!< the one DNS subjectAltName, normalised */
	uint64_t not_before_s, not_after_s;
} pvp_cc_identity_t;

/*!
 * \brief Read the grant of \p leaf if \p issuer signed it directly (signature checked here too) and it
 * follows the profile (end entity, clientAuth, one tel: URI, one DNS name).  Times are not checked
 * (the caller compares them with its clock).  VP_EAUTH (not issued by \p issuer), VP_EMALFORMED.
 */
int pvp_cc_identity(X509 *leaf, X509 *issuer, pvp_cc_identity_t *id);

#endif
