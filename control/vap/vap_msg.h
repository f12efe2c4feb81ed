/*
 * control/vap_msg.h - the VAP message codec (ViPR Access Protocol, STUN syntax).
 *
 * VAP is the protocol between a call agent (PBX, SBC, softswitch) and its ViPR
 * server.  It reuses RFC 5389 STUN syntax exactly - 20-byte header with the
 * magic cookie, TLV attributes padded to 4 bytes, MESSAGE-INTEGRITY (HMAC-SHA1),
 * FINGERPRINT (CRC-32 ^ 0x5354554E), ERROR-CODE, UNKNOWN-ATTRIBUTES - with its own
 * methods and attributes (docs/protocol.md §8).  This file is the codec only:
 * no sockets, no allocation.  The decoder never trusts a length; the encoder
 * writes into a caller buffer through the bounds-checked writer.
 *
 * Decoding is zero-copy: a vap_msg_t points into the input buffer and attributes
 * are walked with vap_attr_next(), so a message with thousands of NUMBER
 * attributes needs no attribute array.
 */
#ifndef VP_CONTROL_VAP_MSG_H
#define VP_CONTROL_VAP_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/e164.h"

#define VAP_HDR_LEN 20
#define VAP_MAGIC_COOKIE 0x2112A442u
#define VAP_TID_LEN 12
#define VAP_MI_LEN 20                         /* HMAC-SHA1 */
#define VAP_FP_XOR 0x5354554Eu                /* RFC 5389 §15.5 */
#define VAP_MAX_MSG (VAP_HDR_LEN + 0xFFFCu)   /* the 16-bit length, a multiple of 4 */
#define VAP_KEY_LEN 16                        /* long-term key = MD5(user:realm:password) */
#define VAP_MAX_USERNAME 128                  /* bytes; RFC 5389 §15.3 limit is 513 */
#define VAP_MAX_REALM 128
#define VAP_MAX_NONCE 64
#define VAP_MAX_URI 256
#define VAP_MAX_TICKET 512
#define VAP_MAX_CERT 2048                     /* CLIENT-CERT: an RSA-4096 key signed by an RSA-4096 issuer is ~1.4 kB */

/* ---- message classes and methods (docs/protocol.md §8.2) ----------------
 * Methods sit in 0x0C1-0x0C7: RFC 8489 §18.1 limits STUN methods to
 * 0x000-0x0FF so the first byte stays 0-3 (RFC 7983 demultiplexing), and
 * Wireshark's dissector rejects anything above. */

enum vap_class {
	VAP_CLASS_REQUEST = 0x000,
	VAP_CLASS_INDICATION = 0x010,
	VAP_CLASS_SUCCESS = 0x100,
	VAP_CLASS_ERROR = 0x110,
};

enum vap_method {
	VAP_REGISTER = 0x0C1,
	VAP_PUBLISH = 0x0C2,
	VAP_UPLOAD_VCR = 0x0C3,
	VAP_SUBSCRIBE = 0x0C4,
	VAP_NOTIFY = 0x0C5,
	VAP_UNREGISTER = 0x0C6,
	VAP_KEEPALIVE = 0x0C7,
};

/* ---- attribute types (docs/protocol.md §8.3) ---------------------------- */

enum vap_attr_type {
	/* RFC 5389 attributes VAP reuses */
	VAP_ATTR_USERNAME = 0x0006,
	VAP_ATTR_MESSAGE_INTEGRITY = 0x0008,
	VAP_ATTR_ERROR_CODE = 0x0009,
	VAP_ATTR_UNKNOWN_ATTRIBUTES = 0x000A,
	VAP_ATTR_REALM = 0x0014,
	VAP_ATTR_NONCE = 0x0015,
	VAP_ATTR_SOFTWARE = 0x8022,
	VAP_ATTR_FINGERPRINT = 0x8028,
	/* VAP comprehension-required */
	VAP_ATTR_NUMBER = 0x4001,
	VAP_ATTR_NUMBER_RANGE = 0x4002,
	VAP_ATTR_PUBLISH_ACTION = 0x4003,
	VAP_ATTR_VSERVICE_ID = 0x4004,
	VAP_ATTR_CALL_RECORD = 0x4005,
	VAP_ATTR_SIP_URI = 0x4006,
	VAP_ATTR_TICKET = 0x4007,
	VAP_ATTR_EXPIRES = 0x4008,
	VAP_ATTR_BLACKLIST = 0x4009,
	VAP_ATTR_WHITELIST = 0x400A,
	/* VAP comprehension-optional */
	VAP_ATTR_RETRY_AFTER = 0xC001,
	VAP_ATTR_NUMBER_COUNT = 0xC002,
	VAP_ATTR_CLIENT_CERT = 0xC003,  /* Notify: DER client certificate for the route (§6.1); optional so old agents skip it */
};

/* ---- error codes carried in ERROR-CODE (docs/protocol.md §8.5) ----------- */

enum vap_error_code {
	VAP_ERR_BAD_REQUEST = 400,
	VAP_ERR_UNAUTHORIZED = 401,
	VAP_ERR_FORBIDDEN = 403,
	VAP_ERR_UNKNOWN_ATTRIBUTE = 420,
	VAP_ERR_RATE_LIMITED = 429,
	VAP_ERR_STALE_NONCE = 438,
	VAP_ERR_SERVER_ERROR = 500,
	VAP_ERR_SERVER_BUSY = 503,
};

/* PUBLISH-ACTION service and operation */
enum { VAP_SERVICE_VSERVICE = 1, VAP_SERVICE_NUMBERS = 2 };
enum { VAP_OP_ADD = 1, VAP_OP_WITHDRAW = 2 };
/* CALL-RECORD direction */
enum { VAP_DIR_ORIGINATING = 1, VAP_DIR_TERMINATING = 2 };

/*! \brief Message type from method and class (RFC 5389 §6 bit interleaving). */
static inline uint16_t vap_type(uint16_t method, uint16_t cls)
{
	return (uint16_t)((method & 0x000F) | ((method & 0x0070) << 1) |
	                  ((method & 0x0F80) << 2) | cls);
}

/*! \brief Method of a message type. */
static inline uint16_t vap_type_method(uint16_t type)
{
	return (uint16_t)((type & 0x000F) | ((type & 0x00E0) >> 1) | ((type & 0x3E00) >> 2));
}

/*! \brief Class of a message type (one of enum vap_class). */
static inline uint16_t vap_type_class(uint16_t type)
{
	return (uint16_t)(type & 0x0110);
}

/*! \brief Is \p type comprehension-required (RFC 5389 §15: 0x0000-0x7FFF)? */
static inline bool vap_attr_required(uint16_t type)
{
	return type < 0x8000;
}

/*! \brief Is \p type an attribute this implementation understands? */
bool vap_attr_known(uint16_t type);

/*! \brief Name of a method ("Publish"), or "unknown". */
const char *vap_method_name(uint16_t method);

/*! \brief Default reason phrase for an ERROR-CODE value. */
const char *vap_error_reason(int code);

/* ---- call record -------------------------------------------------------- */

/*! A ViPR Call Record, as an agent uploads it after a PSTN call. */
typedef struct vap_vcr {
	char called[VP_E164_BUFLEN];  /*!< canonical E.164 of the called party */
	char caller[VP_E164_BUFLEN];  /*!< canonical E.164 caller-ID, "" when none */
	uint64_t start_ms;            /*!< call start (answer), UTC ms */
	uint64_t stop_ms;             /*!< call end, UTC ms; >= start_ms */
	uint8_t direction;            /*!< VAP_DIR_ORIGINATING or VAP_DIR_TERMINATING */
} vap_vcr_t;

/*! A number range: prefix followed by every `width`-digit suffix first..last. */
typedef struct vap_range {
	char prefix[VP_E164_BUFLEN];  /*!< "+" and digits */
	uint32_t first, last;         /*!< inclusive, last >= first */
	uint8_t width;                /*!< suffix digits, 1..9; prefix digits + width <= 15 */
} vap_range_t;

/*! \brief Count of numbers in \p r. */
static inline uint64_t vap_range_count(const vap_range_t *r)
{
	return (uint64_t)r->last - r->first + 1;
}

/*! \brief The \p i-th number (0-based) of \p r into \p out. VP_ERANGE past the end. */
int vap_range_number(const vap_range_t *r, uint64_t i, char out[VP_E164_BUFLEN]);

/*!
 * \brief Parse "+1408555[0000-9999]" (or a plain number, a range of one) into \p r.
 * The prefix goes through vp_e164_normalize() with \p conf (may be NULL); both
 * bounds must have the same digit count.  VP_EMALFORMED, VP_ERANGE or VP_E164_*.
 */
int vap_range_parse(const char *s, const vp_e164_conf_t *conf, vap_range_t *r);

/* ---- decoding ----------------------------------------------------------- */

/*! One attribute (value points into the message). */
typedef struct vap_attr {
	uint16_t type;
	uint16_t len;          /*!< unpadded value length */
	const uint8_t *value;
} vap_attr_t;

/*! A decoded message: a view into the caller's buffer. */
typedef struct vap_msg {
	const uint8_t *buf;    /*!< the whole message */
	size_t len;            /*!< VAP_HDR_LEN + body length */
	uint16_t type, method, cls;
	const uint8_t *tid;    /*!< VAP_TID_LEN bytes */
	size_t mi_off;         /*!< offset of the MESSAGE-INTEGRITY attribute header, 0 if none */
	size_t fp_off;         /*!< offset of the FINGERPRINT attribute header, 0 if none */
	size_t attrs_end;      /*!< end of the attributes covered by integrity (mi_off, or fp_off, or len) */
} vap_msg_t;

/*!
 * \brief Length of the message that starts \p buf (header + body) from its first
 * bytes, for stream framing.  0 if fewer than VAP_HDR_LEN bytes are available;
 * VP_EMALFORMED if the header is not a VAP/STUN header (top bits, cookie, length
 * not a multiple of 4) - the stream cannot be resynchronised after that.
 */
long vap_frame_len(const uint8_t *buf, size_t avail);

/*!
 * \brief Decode and structurally validate one whole message in [buf, buf+len):
 * header, cookie, exact length, every attribute inside the body, MESSAGE-INTEGRITY
 * 20 bytes, FINGERPRINT 4 bytes and last, only FINGERPRINT after MESSAGE-INTEGRITY.
 * A present FINGERPRINT is verified here (VP_EVAP_FINGERPRINT).  Integrity is
 * checked separately (vap_msg_check_integrity) since it needs the agent's key.
 * Errors: VP_ETRUNC, VP_EBADLEN, VP_EMALFORMED, VP_EVAP_FINGERPRINT.
 */
int vap_msg_parse(const uint8_t *buf, size_t len, vap_msg_t *msg);

/*! Attribute iterator over the integrity-covered part of a message. */
typedef struct vap_attr_iter {
	const vap_msg_t *msg;
	size_t off;
} vap_attr_iter_t;

/*! \brief Start iterating over \p msg's attributes (those before MESSAGE-INTEGRITY). */
void vap_attr_iter_init(vap_attr_iter_t *it, const vap_msg_t *msg);

/*! \brief Next attribute into \p a; false at the end. Safe: vap_msg_parse() validated the TLVs. */
bool vap_attr_next(vap_attr_iter_t *it, vap_attr_t *a);

/*! \brief First attribute of \p type into \p a; VP_ENOTFOUND if absent. */
int vap_msg_find(const vap_msg_t *msg, uint16_t type, vap_attr_t *a);

/*!
 * \brief Collect the comprehension-required attributes this codec does not know
 * into \p out (up to \p cap, duplicates skipped); returns how many were found
 * (may exceed \p cap, only \p cap are stored).
 */
size_t vap_msg_unknown_required(const vap_msg_t *msg, uint16_t *out, size_t cap);

/*! \brief Verify MESSAGE-INTEGRITY with \p key. VP_EVAP_INTEGRITY if absent or wrong. */
int vap_msg_check_integrity(const vap_msg_t *msg, const uint8_t *key, size_t keylen);

/* Attribute value readers: VP_EBADLEN on a wrong length. */
int vap_attr_u32(const vap_attr_t *a, uint32_t *v);
int vap_attr_u64(const vap_attr_t *a, uint64_t *v);
/*! \brief Copy a string attribute into \p out (cap bytes incl. NUL); VP_ETOOBIG, VP_EMALFORMED on NUL. */
int vap_attr_str(const vap_attr_t *a, char *out, size_t cap);
/*! \brief A canonical E.164 NUMBER/prefix string; VP_E164_CHAR etc. if not canonical. */
int vap_attr_number(const vap_attr_t *a, char out[VP_E164_BUFLEN]);
/*! \brief ERROR-CODE: code 300..699 and the reason (copied, truncated to cap). */
int vap_attr_error(const vap_attr_t *a, int *code, char *reason, size_t cap);
int vap_attr_vcr(const vap_attr_t *a, vap_vcr_t *vcr);
int vap_attr_range(const vap_attr_t *a, vap_range_t *r);
/*! \brief PUBLISH-ACTION: service (VAP_SERVICE_*) and op (VAP_OP_*). */
int vap_attr_action(const vap_attr_t *a, uint8_t *service, uint8_t *op);

/* ---- encoding ----------------------------------------------------------- */

/*! An encoder: a writer plus the message start. */
typedef struct vap_enc {
	vp_wr_t wr;
} vap_enc_t;

/*! \brief Start a message of \p type with transaction id \p tid into buf[cap]. */
int vap_enc_begin(vap_enc_t *e, void *buf, size_t cap, uint16_t type, const uint8_t tid[VAP_TID_LEN]);

/*! \brief Append one attribute (padding with zeroes to 4). VP_ERANGE if len > 0xFFFF. */
int vap_enc_attr(vap_enc_t *e, uint16_t type, const void *value, size_t len);
int vap_enc_u32(vap_enc_t *e, uint16_t type, uint32_t v);
int vap_enc_u64(vap_enc_t *e, uint16_t type, uint64_t v);
int vap_enc_str(vap_enc_t *e, uint16_t type, const char *s);
/*! \brief ERROR-CODE with \p code (300..699) and \p reason (NULL: the default phrase). */
int vap_enc_error(vap_enc_t *e, int code, const char *reason);
int vap_enc_unknown(vap_enc_t *e, const uint16_t *types, size_t n);
int vap_enc_vcr(vap_enc_t *e, const vap_vcr_t *vcr);
int vap_enc_range(vap_enc_t *e, const vap_range_t *r);
int vap_enc_action(vap_enc_t *e, uint8_t service, uint8_t op);

/*!
 * \brief Close the message: MESSAGE-INTEGRITY with \p key (NULL: none), then
 * FINGERPRINT if \p fingerprint.  Returns the total length (> 0) or a VP_E* code.
 */
long vap_enc_finish(vap_enc_t *e, const uint8_t *key, size_t keylen, bool fingerprint);

/* ---- helpers ------------------------------------------------------------- */

/*! \brief The long-term key MD5(username ":" realm ":" password) (RFC 5389 §15.4). */
int vap_key_derive(const char *username, const char *realm, const char *password,
                   uint8_t key[VAP_KEY_LEN]);

/*! \brief CRC-32 (IEEE 802.3, as zlib) of \p len bytes continuing from \p crc (start with 0). */
uint32_t vap_crc32(uint32_t crc, const uint8_t *p, size_t len);

/*!
 * A keyed HMAC-SHA1 context, made once per agent key: computing or checking
 * MESSAGE-INTEGRITY with it allocates nothing (the key schedule is reused).
 */
typedef struct vap_mac vap_mac_t;

/*!
 * \brief New context for \p key in *\p out (free with vap_mac_free()).
 * 0, VP_ENOMEM or VP_ECRYPTO (OpenSSL failed); *\p out is NULL on error.
 */
int vap_mac_new(const uint8_t *key, size_t keylen, vap_mac_t **out);
void vap_mac_free(vap_mac_t *mac);

/*! \brief HMAC-SHA1 of the concatenation of \p n (pointer, length) parts. */
int vap_mac_compute(vap_mac_t *mac, const uint8_t *const *parts, const size_t *lens, size_t n,
                    uint8_t out[VAP_MI_LEN]);

/*! \brief vap_msg_check_integrity() with a prepared context. */
int vap_msg_check_integrity_mac(const vap_msg_t *msg, vap_mac_t *mac);

/*! \brief vap_enc_finish() with a prepared context (NULL: no MESSAGE-INTEGRITY). */
long vap_enc_finish_mac(vap_enc_t *e, vap_mac_t *mac, bool fingerprint);

#endif
