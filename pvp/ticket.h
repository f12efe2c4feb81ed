/*
 * pvp/ticket.h - anti-spam tickets: issue, decode and verify (docs/protocol.md §7).
 *
 * A ticket is the terminating domain's grant to one calling domain to call one
 * number over SIP: a small binary structure closed by HMAC-SHA-256 under a key
 * selected by an epoch byte.  The PVP server issues tickets after a successful
 * validation; border elements (and `vipr-ticket verify`) check them.  The key
 * ring holds the current key and at most one previous key accepted until its
 * grace time, so keys can be rotated without cutting live tickets short.
 *
 * Everything here is pure computation over caller-supplied buffers: no
 * allocation, no global state, safe to call from any thread.
 */
#ifndef VP_PVP_TICKET_H
#define VP_PVP_TICKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/e164.h"

#define PVP_TICKET_VERSION 1
#define PVP_TICKET_MAC_LEN 32       /* HMAC-SHA-256, untruncated */
#define PVP_TICKET_KEY_MIN 16       /* 128 bits: the floor the product used */
#define PVP_TICKET_KEY_MAX 64       /* one SHA-256 block: longer keys are hashed by HMAC anyway */
#define PVP_DOMAIN_MAX 253          /* RFC 1035 presentation length */
#define PVP_TICKET_FIXED_LEN 20     /* version..validations */
#define PVP_TICKET_MAX (PVP_TICKET_FIXED_LEN + 1 + VP_E164_BUFLEN + 1 + PVP_DOMAIN_MAX + PVP_TICKET_MAC_LEN)
#define PVP_TICKET_B64_MAX (((PVP_TICKET_MAX + 2) / 3) * 4 + 1)
#define PVP_TICKET_SKEW_S 60        /* clock skew tolerated between issuer and verifier */

#define PVP_TICKET_F_ROUTES 0x01    /* the accumulated entropy reached the issuer's threshold */

/*! \brief One ticket key. */
typedef struct pvp_ticket_key {
	uint8_t epoch;                  /*!< 1..255 */
	uint8_t len;                    /*!< PVP_TICKET_KEY_MIN..PVP_TICKET_KEY_MAX */
	uint8_t key[PVP_TICKET_KEY_MAX];
	uint64_t grace_until_s;         /*!< previous key only: accepted while now <= this */
} pvp_ticket_key_t;

/*! \brief The key ring: current key (issues and verifies), optional previous key (verifies in grace). */
typedef struct pvp_ticket_keys {
	pvp_ticket_key_t cur;
	pvp_ticket_key_t prev;
	bool has_prev;
} pvp_ticket_keys_t;

/*! \brief Decoded ticket fields. */
typedef struct pvp_ticket {
	uint8_t version;
	uint8_t epoch;
	uint8_t flags;
	uint32_t issued;                /*!< UTC seconds */
	uint32_t expires;               /*!< UTC seconds */
	uint32_t last_call;             /*!< start (UTC s) of the last call counted */
	uint16_t entropy_cbits;         /*!< accumulated entropy, 1/100 bit */
	uint16_t validations;           /*!< calls counted */
	char number[VP_E164_BUFLEN];
	char domain[PVP_DOMAIN_MAX + 1];
} pvp_ticket_t;

/*! \brief Why a ticket was refused, in verification order (docs/protocol.md §7). */
typedef enum pvp_ticket_reason {
	PVP_TR_OK = 0,
	PVP_TR_MALFORMED,
	PVP_TR_VERSION,
	PVP_TR_UNKNOWN_EPOCH,
	PVP_TR_RETIRED_KEY,
	PVP_TR_BAD_MAC,
	PVP_TR_NOT_YET_VALID,
	PVP_TR_EXPIRED,
	PVP_TR_WRONG_NUMBER,
	PVP_TR_WRONG_DOMAIN,
	PVP_TR_NO_ROUTES,
} pvp_ticket_reason_t;

/*! \brief Short token for \p r ("bad-mac"); never NULL. */
const char *pvp_ticket_reason_str(pvp_ticket_reason_t r);

/*!
 * \brief Lower-case and check a DNS domain name (letters, digits, '-', '.',
 * 1..253 characters, no empty label) into \p out.  VP_EINVAL otherwise.
 */
int pvp_domain_normalize(const char *in, char out[PVP_DOMAIN_MAX + 1]);

/*! \brief base64url without padding; VP_ESPACE if \p cap is too small (needs 4*ceil(n/3)+1). */
int pvp_b64url_encode(const uint8_t *src, size_t n, char *out, size_t cap);

/*! \brief Decode base64url (padding optional, only to complete the last quantum); VP_EMALFORMED on a bad character, length or padding. */
int pvp_b64url_decode(const char *src, size_t n, uint8_t *out, size_t cap, size_t *outlen);

/*!
 * \brief Parse a key file (docs/protocol.md §7): one `current` line, at most one
 * `previous` line.  VP_ECONFIG with a reason logged on any error.
 */
int pvp_ticket_keys_parse(const char *text, size_t len, pvp_ticket_keys_t *keys);

/*! \brief Read and parse the key file at \p path. VP_EIO if unreadable. */
int pvp_ticket_keys_load(const char *path, pvp_ticket_keys_t *keys);

/*! \brief Write \p keys in key-file form into \p out (NUL-terminated). */
int pvp_ticket_keys_format(const pvp_ticket_keys_t *keys, char *out, size_t cap);

/*!
 * \brief Rotate: the current key becomes the previous one (accepted until
 * \p grace_until_s), \p key becomes current under the next epoch (255 wraps to 1).
 */
int pvp_ticket_keys_rotate(pvp_ticket_keys_t *keys, const uint8_t *key, size_t len,
                           uint64_t grace_until_s);

/*!
 * \brief Encode and MAC \p t under the current key (t->epoch and t->version are
 * ignored and set from the ring).  Number must be canonical E.164, domain
 * normalised.  Writes at most PVP_TICKET_MAX bytes.
 */
int pvp_ticket_issue(const pvp_ticket_keys_t *keys, const pvp_ticket_t *t,
                     uint8_t *out, size_t cap, size_t *outlen);

/*!
 * \brief Parse the structure only (no key, no MAC check): VP_ETRUNC,
 * VP_ETRAILING, VP_EMALFORMED or VP_EUNSUPPORTED (version).  For tools and the fuzzer.
 */
int pvp_ticket_decode(const uint8_t *buf, size_t len, pvp_ticket_t *t);

/*! \brief What pvp_ticket_verify() checks beyond structure, epoch, MAC and time. */
typedef struct pvp_ticket_expect {
	const char *number;     /*!< canonical E.164 called, or NULL to skip */
	const char *domain;     /*!< calling domain (any case), or NULL to skip */
	bool need_routes;       /*!< refuse tickets without PVP_TICKET_F_ROUTES */
	bool ignore_expiry;     /*!< accept expired tickets (entropy accumulation) */
} pvp_ticket_expect_t;

/*!
 * \brief Verify a binary ticket in the documented order; returns the first
 * failed check (PVP_TR_OK if none) and fills \p out (may be NULL) when the
 * structure parsed.  MAC compared in constant time.
 */
pvp_ticket_reason_t pvp_ticket_verify(const pvp_ticket_keys_t *keys, const uint8_t *buf, size_t len,
                                      uint64_t now_s, const pvp_ticket_expect_t *expect,
                                      pvp_ticket_t *out);

/*! \brief pvp_ticket_verify() on the base64url text form. */
pvp_ticket_reason_t pvp_ticket_verify_text(const pvp_ticket_keys_t *keys, const char *b64,
                                           uint64_t now_s, const pvp_ticket_expect_t *expect,
                                           pvp_ticket_t *out);

#endif
