/*
 * dataplane/reload.h - the RELOAD (RFC 6940) wire codec: forwarding header,
 * MessageContents, SecurityBlock, every message body viprd speaks, StoredData
 * for the three data models, link framing, signatures and the in-place
 * forward-path edits.
 *
 * Zero copy.  Decoders never allocate and never copy payload: every opaque
 * field is an rl_bytes_t pointing into the input buffer, valid as long as that
 * buffer is.  Variable-length lists are rl_*_list_t: on decode, `raw` points at
 * the list's bytes (already validated, element by element) and `raw_count`
 * says how many elements they hold; walk them with an rl_iter_t and the
 * matching rl_*_next() function.  There is no element-count limit.
 *
 * Encoding.  Every decoded struct encodes back to the exact input bytes
 * (encode(decode(x)) == x).  A list encodes as its `raw` bytes followed by its
 * `items[0..n_items)`, so a builder fills `items` and leaves `raw` empty, and a
 * forwarder can append to a decoded list (e.g. one more via entry) without
 * re-encoding what was received.  Length prefixes and the header's length
 * fields are always computed, never taken from the struct.
 *
 * Limits.  A message is at most RL_MAX_MESSAGE_SIZE bytes (also the largest
 * DATA frame accepted); lists have no element-count limit of their own (each
 * is bounded by its length field); signature values must fit RL_MAX_SIG_LEN
 * where the caller provides the buffer.  Nothing on the decode path allocates.
 *
 * Strictness.  Any malformed input returns a negative VP_E* code: wrong token
 * (VP_EBADTOKEN), a length that overruns (VP_ETRUNC) or underruns / disagrees
 * (VP_EBADLEN), an unknown or invalid type code (VP_EBADTYPE), a bad destination
 * (VP_ERELOAD_DEST), bytes left over (VP_ETRAILING), a boolean that is not 0/1
 * or a fragment field without its top bit (VP_EMALFORMED), a version other
 * than 10 (VP_EUNSUPPORTED), a message above the size limit (VP_ETOOBIG), a
 * fragment where a whole message is needed (VP_ERELOAD_FRAG).  No decoder
 * reads outside its input.  Node-IDs are 16 bytes (node-id-length 128 bits,
 * fixed).
 *
 * StoredData and StoredDataSpecifier layouts depend on the kind's data model,
 * which is not on the wire.  Body decoders always check their framing; pass an
 * rl_model_fn to check the model-specific part too (rl_model_builtin knows the
 * RFC 6940 kinds and RL_KIND_VIPR_REGISTRATION).
 */
#ifndef VP_DATAPLANE_RELOAD_H
#define VP_DATAPLANE_RELOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <openssl/types.h>

#include "common/buf.h"
#include "common/errcode.h"
#include "common/id.h"
#include "common/reload_codes.h"

/* ---- constants --------------------------------------------------------- */

#define RL_TOKEN 0xD2454C4Fu          /* "RELO" with the top bit set */
#define RL_VERSION 10u                /* RELOAD 1.0 */
#define RL_DEFAULT_TTL 100u           /* config initial-ttl default */
#define RL_HDR_FIXED_LEN 38u          /* preamble before the via list */
#define RL_NODE_ID_LEN VP_ID_LEN      /* node-id-length: 16 bytes, fixed */
#define RL_DEFAULT_PORT 6084u

/* fragment field: bit 31 always set, bit 30 = last fragment, 24-bit offset */
#define RL_FRAG_FLAG 0x80000000u
#define RL_FRAG_LAST 0x40000000u
#define RL_FRAG_RESERVED 0x3F000000u
#define RL_FRAG_OFFSET_MASK 0x00FFFFFFu
#define RL_FRAG_UNFRAGMENTED 0xC0000000u

/*
 * Largest message viprd accepts or sends (header + contents + security block).
 * The link framing carries 24-bit lengths; ViPR messages are small (a Store of
 * one registration is ~1.5 KiB with a certificate), so 64 KiB bounds memory per
 * in-flight message while leaving room for a full Update and a certificate chain.
 */
#define RL_MAX_MESSAGE_SIZE 65536u

/* The ViPR registration kind (PROTOCOL-FACTS §5.2): private-use Kind-ID, DICTIONARY model. */
#define RL_KIND_VIPR_REGISTRATION VP_VIPR_KIND_ID

/* Built-in kinds (RFC 6940). */
#define RL_KIND_SIP_REGISTRATION 1u
#define RL_KIND_TURN_SERVICE 2u
#define RL_KIND_CERTIFICATE_BY_NODE 3u
#define RL_KIND_CERTIFICATE_BY_USER 16u

/* Message codes: a request is odd, its answer is request + 1. */
typedef enum rl_msg_code {
	RL_PROBE_REQ = 0x01, RL_PROBE_ANS = 0x02,
	RL_ATTACH_REQ = 0x03, RL_ATTACH_ANS = 0x04,
	RL_STORE_REQ = 0x07, RL_STORE_ANS = 0x08,
	RL_FETCH_REQ = 0x09, RL_FETCH_ANS = 0x0A,
	RL_FIND_REQ = 0x0D, RL_FIND_ANS = 0x0E,
	RL_JOIN_REQ = 0x0F, RL_JOIN_ANS = 0x10,
	RL_LEAVE_REQ = 0x11, RL_LEAVE_ANS = 0x12,
	RL_UPDATE_REQ = 0x13, RL_UPDATE_ANS = 0x14,
	RL_ROUTE_QUERY_REQ = 0x15, RL_ROUTE_QUERY_ANS = 0x16,
	RL_PING_REQ = 0x17, RL_PING_ANS = 0x18,
	RL_STAT_REQ = 0x19, RL_STAT_ANS = 0x1A,
	RL_APP_ATTACH_REQ = 0x1D, RL_APP_ATTACH_ANS = 0x1E,
	RL_CONFIG_UPDATE_REQ = 0x21, RL_CONFIG_UPDATE_ANS = 0x22,
	RL_ERROR = 0xFFFF,
} rl_msg_code_t;

/*! \brief A request code is odd (the Error code 0xFFFF is not a request). */
static inline bool rl_code_is_request(uint16_t code)
{
	return (code & 1) && code != RL_ERROR;
}

/*! \brief The answer code of request \p code. */
static inline uint16_t rl_code_answer(uint16_t code)
{
	return (uint16_t)(code + 1);
}

/* ErrorResponse error codes. */
typedef enum rl_error_code {
	RL_ERR_FORBIDDEN = VP_RELOAD_ERR_FORBIDDEN,
	RL_ERR_NOT_FOUND = VP_RELOAD_ERR_NOT_FOUND,
	RL_ERR_REQUEST_TIMEOUT = VP_RELOAD_ERR_REQUEST_TIMEOUT,
	RL_ERR_GENERATION_COUNTER_TOO_LOW = VP_RELOAD_ERR_GENERATION_COUNTER_TOO_LOW,
	RL_ERR_INCOMPATIBLE_WITH_OVERLAY = VP_RELOAD_ERR_INCOMPATIBLE_WITH_OVERLAY,
	RL_ERR_UNSUPPORTED_FORWARDING_OPTION = VP_RELOAD_ERR_UNSUPPORTED_FORWARDING_OPTION,
	RL_ERR_DATA_TOO_LARGE = VP_RELOAD_ERR_DATA_TOO_LARGE,
	RL_ERR_DATA_TOO_OLD = VP_RELOAD_ERR_DATA_TOO_OLD,
	RL_ERR_TTL_EXCEEDED = VP_RELOAD_ERR_TTL_EXCEEDED,
	RL_ERR_MESSAGE_TOO_LARGE = VP_RELOAD_ERR_MESSAGE_TOO_LARGE,
	RL_ERR_UNKNOWN_KIND = VP_RELOAD_ERR_UNKNOWN_KIND,
	RL_ERR_UNKNOWN_EXTENSION = VP_RELOAD_ERR_UNKNOWN_EXTENSION,
	RL_ERR_RESPONSE_TOO_LARGE = VP_RELOAD_ERR_RESPONSE_TOO_LARGE,
	RL_ERR_CONFIG_TOO_OLD = VP_RELOAD_ERR_CONFIG_TOO_OLD,
	RL_ERR_CONFIG_TOO_NEW = VP_RELOAD_ERR_CONFIG_TOO_NEW,
	RL_ERR_IN_PROGRESS = VP_RELOAD_ERR_IN_PROGRESS,
	RL_ERR_EXP_A = VP_RELOAD_ERR_EXP_A,
	RL_ERR_EXP_B = VP_RELOAD_ERR_EXP_B,
	RL_ERR_INVALID_MESSAGE = VP_RELOAD_ERR_INVALID_MESSAGE,
} rl_error_code_t;

typedef enum rl_dest_type {
	RL_DEST_NODE = 1,        /* NodeId, 16 bytes */
	RL_DEST_RESOURCE = 2,    /* ResourceId opaque<0..255> */
	RL_DEST_OPAQUE = 3,      /* opaque_id_type: opaque<0..255> */
	RL_DEST_COMPRESSED = 256 /* 2-byte compressed id, first byte >= 0x80, no type/length */
} rl_dest_type_t;

/* ForwardingOption flags. */
#define RL_FWDOPT_FORWARD_CRITICAL 0x01u
#define RL_FWDOPT_DESTINATION_CRITICAL 0x02u
#define RL_FWDOPT_RESPONSE_COPY 0x04u

typedef enum rl_hash_alg {
	RL_HASH_NONE = 0, RL_HASH_MD5 = 1, RL_HASH_SHA1 = 2, RL_HASH_SHA224 = 3,
	RL_HASH_SHA256 = 4, RL_HASH_SHA384 = 5, RL_HASH_SHA512 = 6,
} rl_hash_alg_t;

typedef enum rl_sig_alg {
	RL_SIG_ANONYMOUS = 0, RL_SIG_RSA = 1, RL_SIG_DSA = 2, RL_SIG_ECDSA = 3,
} rl_sig_alg_t;

typedef enum rl_signer_type {
	RL_SIGNER_CERT_HASH = 1,
	RL_SIGNER_CERT_HASH_NODE_ID = 2,
	RL_SIGNER_NONE = 3,
} rl_signer_type_t;

#define RL_CERT_X509 0u
#define RL_MAX_HASH_LEN 64u  /* SHA-512 */
#define RL_MAX_SIG_LEN 1024u /* RSA-8192 */

typedef enum rl_data_model {
	RL_MODEL_UNKNOWN = 0, /* model-specific bytes left raw */
	RL_MODEL_SINGLE = VP_RELOAD_MODEL_SINGLE,
	RL_MODEL_ARRAY = VP_RELOAD_MODEL_ARRAY,
	RL_MODEL_DICTIONARY = VP_RELOAD_MODEL_DICTIONARY,
} rl_data_model_t;

#define RL_ARRAY_APPEND 0xFFFFFFFFu /* ArrayEntry index meaning "append" */

typedef enum rl_probe_type {
	RL_PROBE_RESPONSIBLE_SET = 1, RL_PROBE_NUM_RESOURCES = 2, RL_PROBE_UPTIME = 3,
} rl_probe_type_t;

typedef enum rl_cand_type {
	RL_CAND_HOST = 1, RL_CAND_SRFLX = 2, RL_CAND_PRFLX = 3, RL_CAND_RELAY = 4,
} rl_cand_type_t;

typedef enum rl_link_type {
	RL_LINK_DTLS_UDP_SR = 1, RL_LINK_DTLS_UDP_SR_NO_ICE = 3, RL_LINK_TLS_TCP_FH_NO_ICE = 4,
} rl_link_type_t;

#define RL_ADDR_IPV4 1u
#define RL_ADDR_IPV6 2u

typedef enum rl_chord_update_type {
	RL_UPDATE_PEER_READY = 1, RL_UPDATE_NEIGHBORS = 2, RL_UPDATE_FULL = 3,
} rl_chord_update_type_t;

typedef enum rl_chord_leave_type {
	RL_LEAVE_FROM_SUCC = 1, RL_LEAVE_FROM_PRED = 2,
} rl_chord_leave_type_t;

typedef enum rl_config_update_type {
	RL_CONFIG_UPDATE_CONFIG = 1, RL_CONFIG_UPDATE_KIND = 2,
} rl_config_update_type_t;

/* Link framing. */
#define RL_FRAME_DATA 128u
#define RL_FRAME_ACK 129u
#define RL_FRAME_DATA_HDR_LEN 8u /* type, sequence, 24-bit length */
#define RL_FRAME_ACK_LEN 9u

/* ---- generic pieces ---------------------------------------------------- */

/* An opaque field: points into the decoded buffer (or the builder's memory). */
typedef struct rl_bytes {
	const uint8_t *p;
	uint32_t len;
} rl_bytes_t;

/*
 * A list of elements of type T (see the file comment): `raw` holds `raw_count`
 * wire-encoded elements, followed on encode by `items[0..n_items)`.
 */
#define RL_LIST_TYPE(name, T) \
	typedef struct name { \
		const uint8_t *raw; \
		uint32_t raw_len; \
		uint32_t raw_count; \
		const T *items; \
		uint32_t n_items; \
	} name

/* Walks a list: raw elements first, then items. */
typedef struct rl_iter {
	vp_rd_t rd;
	const uint8_t *items;
	uint32_t n_items;
	uint32_t idx;
	size_t elem_size;
} rl_iter_t;

/*! \brief Start an iteration over \p list (any rl_*_list_t). */
#define RL_ITER_INIT(it, list) \
	rl_iter_init((it), (list)->raw, (list)->raw_len, (list)->items, (list)->n_items, \
	             sizeof(*(list)->items))

/*! \brief Iterator over raw bytes then \p n_items items of \p elem_size bytes. */
void rl_iter_init(rl_iter_t *it, const uint8_t *raw, size_t raw_len, const void *items,
                  uint32_t n_items, size_t elem_size);

/* Total number of elements a list encodes. */
#define RL_LIST_COUNT(list) ((size_t)(list)->raw_count + (list)->n_items)

RL_LIST_TYPE(rl_u8_list_t, uint8_t);
RL_LIST_TYPE(rl_u32_list_t, uint32_t);
RL_LIST_TYPE(rl_node_list_t, vp_id_t);

/*
 * The next-element functions below all return 1 and fill *out when there is
 * an element, 0 at the end, or a negative VP_E* code if the raw bytes are
 * malformed (impossible for lists that came from a successful decode).
 */
int rl_u8_next(rl_iter_t *it, uint8_t *out);
int rl_u32_next(rl_iter_t *it, uint32_t *out);
int rl_node_next(rl_iter_t *it, vp_id_t *out);

/* ---- forwarding header ------------------------------------------------- */

typedef struct rl_dest {
	rl_dest_type_t type;
	rl_bytes_t id; /* node: 16 bytes; resource/opaque: the id without its length byte; compressed: 2 bytes */
} rl_dest_t;
RL_LIST_TYPE(rl_dest_list_t, rl_dest_t);

typedef struct rl_fwd_option {
	uint8_t type; /* 0 is invalid */
	uint8_t flags;
	rl_bytes_t data;
} rl_fwd_option_t;
RL_LIST_TYPE(rl_fwd_option_list_t, rl_fwd_option_t);

typedef struct rl_fwd_header {
	uint32_t overlay;
	uint16_t config_seq;
	uint8_t version;
	uint8_t ttl;
	uint32_t fragment;
	uint32_t length;     /* decode: the wire value; encode: computed */
	uint64_t txid;
	uint32_t max_response_length;
	rl_dest_list_t via;
	rl_dest_list_t dest;
	rl_fwd_option_list_t options;
	uint32_t hdr_len;    /* decode: bytes of the whole forwarding header */
} rl_fwd_header_t;

/*! \brief A node destination pointing at \p id (which must outlive the struct). */
static inline rl_dest_t rl_dest_node(const vp_id_t *id)
{
	rl_dest_t d = { RL_DEST_NODE, { id->b, RL_NODE_ID_LEN } };
	return d;
}

/*! \brief A resource destination over \p len bytes at \p rid. */
static inline rl_dest_t rl_dest_resource(const uint8_t *rid, uint32_t len)
{
	rl_dest_t d = { RL_DEST_RESOURCE, { rid, len } };
	return d;
}

int rl_dest_next(rl_iter_t *it, rl_dest_t *out);
int rl_fwd_option_next(rl_iter_t *it, rl_fwd_option_t *out);

/*!
 * \brief The entries of \p l in reverse order into out[0..*n): an answer's
 * destination list is its request's via list reversed (RFC 6940 §6.2.2).
 * The ids still point into the request.  VP_ESPACE if more than \p cap,
 * VP_EINVAL if raw_count does not match the raw bytes (a hand-built list).
 */
int rl_dest_list_reversed(const rl_dest_list_t *l, rl_dest_t *out, size_t cap, size_t *n);

/*! \brief Decode one Destination (either form). VP_ERELOAD_DEST on a bad type or length. */
int rl_dest_decode(vp_rd_t *rd, rl_dest_t *out);
/*! \brief Encode one Destination in the form its type says. */
int rl_dest_encode(vp_wr_t *wr, const rl_dest_t *d);
/*! \brief Bytes \p d takes on the wire. */
size_t rl_dest_wire_len(const rl_dest_t *d);

/*!
 * \brief Decode the forwarding header at the start of [p, p+len).  Checks the
 * token, that `length` is at least the header and at most \p len, and every
 * list; does not look past the header (works for fragments, for forwarding).
 */
int rl_fwd_header_decode(const uint8_t *p, size_t len, rl_fwd_header_t *h);

/*! \brief Encode \p h with its length field set to \p total_len (the whole message). */
int rl_fwd_header_encode(vp_wr_t *wr, const rl_fwd_header_t *h, uint32_t total_len);

/*! \brief Bytes \p h takes on the wire. */
size_t rl_fwd_header_wire_len(const rl_fwd_header_t *h);

/*!
 * \brief Forwarding-option policy (RFC 6940 §6.3.2.3): VP_ERELOAD_OPTION if an
 * option this node does not understand (all of them: RFC 6940 defines none) is
 * FORWARD_CRITICAL, or DESTINATION_CRITICAL when \p at_destination.
 */
int rl_fwd_options_check(const rl_fwd_header_t *h, bool at_destination);

/* ---- MessageContents --------------------------------------------------- */

typedef struct rl_ext {
	uint16_t type;
	bool critical;
	rl_bytes_t contents;
} rl_ext_t;
RL_LIST_TYPE(rl_ext_list_t, rl_ext_t);

struct rl_body;

typedef struct rl_contents {
	uint16_t code;
	rl_bytes_t body;              /* the raw message_body */
	const struct rl_body *body_st; /* encode only: if set, the body is encoded from it instead */
	rl_ext_list_t exts;
	rl_bytes_t raw;               /* decode: the whole MessageContents (signature input) */
} rl_contents_t;

int rl_ext_next(rl_iter_t *it, rl_ext_t *out);
int rl_contents_decode(vp_rd_t *rd, rl_contents_t *c);
int rl_contents_encode(vp_wr_t *wr, const rl_contents_t *c);
/*! \brief VP_ERELOAD_EXT if any extension is critical (viprd understands none). */
int rl_contents_check_exts(const rl_contents_t *c);

/* ---- SecurityBlock ----------------------------------------------------- */

typedef struct rl_cert {
	uint8_t type; /* RL_CERT_X509 */
	rl_bytes_t der;
} rl_cert_t;
RL_LIST_TYPE(rl_cert_list_t, rl_cert_t);

typedef struct rl_signer_identity {
	uint8_t type;     /* rl_signer_type_t */
	uint8_t hash_alg; /* cert_hash / cert_hash_node_id */
	rl_bytes_t hash;  /* certificate hash; empty for none */
} rl_signer_identity_t;

typedef struct rl_signature {
	uint8_t hash_alg; /* rl_hash_alg_t */
	uint8_t sig_alg;  /* rl_sig_alg_t */
	rl_signer_identity_t identity;
	rl_bytes_t value;
} rl_signature_t;

typedef struct rl_security_block {
	rl_cert_list_t certs;
	rl_signature_t sig;
} rl_security_block_t;

int rl_cert_next(rl_iter_t *it, rl_cert_t *out);
int rl_signer_identity_decode(vp_rd_t *rd, rl_signer_identity_t *id);
int rl_signer_identity_encode(vp_wr_t *wr, const rl_signer_identity_t *id);
int rl_signature_decode(vp_rd_t *rd, rl_signature_t *s);
int rl_signature_encode(vp_wr_t *wr, const rl_signature_t *s);
int rl_security_block_decode(vp_rd_t *rd, rl_security_block_t *sb);
int rl_security_block_encode(vp_wr_t *wr, const rl_security_block_t *sb);

/* ---- whole message ----------------------------------------------------- */

typedef struct rl_message {
	rl_fwd_header_t hdr;
	rl_contents_t contents;
	rl_security_block_t sec;
} rl_message_t;

/*!
 * \brief Decode a complete, unfragmented message occupying exactly [p, p+len):
 * header, contents (body kept raw; see rl_body_decode) and security block.
 * VP_ERELOAD_FRAG for a fragment, VP_ETOOBIG above RL_MAX_MESSAGE_SIZE,
 * VP_EBADLEN if `length` is not len.
 */
int rl_msg_decode(const uint8_t *p, size_t len, rl_message_t *m);

/*! \brief Encode \p m; the header's length fields are computed. */
int rl_msg_encode(vp_wr_t *wr, const rl_message_t *m);

/*!
 * \brief Encode \p m, signing it on the way: m->sec.sig is filled (algorithm
 * from \p key, \p signer, value written into \p sigbuf) and then encoded.
 */
int rl_msg_encode_signed(vp_wr_t *wr, rl_message_t *m, EVP_PKEY *key,
                         const rl_signer_identity_t *signer, uint8_t *sigbuf, size_t sigcap);

/* ---- forward path: in-place edits of an encoded message ---------------- */

/*
 * A received message in a buffer with optional headroom before it: the message
 * is buf[off, off+len).  The edits below change only the header: they move the
 * (short) front of the message within the buffer rather than the body.
 */
typedef struct rl_pkt {
	uint8_t *buf;
	size_t cap;
	size_t off;
	size_t len;
} rl_pkt_t;

/*! \brief Decrement the TTL in place; VP_ERELOAD_TTL if it is already 0. */
int rl_fwd_ttl_decrement(rl_pkt_t *pkt);

/*!
 * \brief Append \p via to the via list in place (uses headroom if there is
 * enough, else moves the tail; VP_ESPACE if neither fits).  Updates
 * via_list_length and length.
 */
int rl_fwd_append_via(rl_pkt_t *pkt, const rl_dest_t *via);

/*!
 * \brief Remove the first destination in place (the front moves forward, the
 * freed bytes become headroom).  Decode it first if you need it.
 * VP_ERELOAD_DEST if the list is empty.
 */
int rl_fwd_pop_dest(rl_pkt_t *pkt);

/*!
 * \brief Copying forward: write \p in (already decoded into \p h) to \p wr
 * with \p via appended (if not NULL), the first destination removed if
 * \p pop_dest, and the TTL decremented.  Contents and security block are copied.
 */
int rl_fwd_copy(vp_wr_t *wr, const uint8_t *in, size_t len, const rl_fwd_header_t *h,
                const rl_dest_t *via, bool pop_dest);

/* ---- StoredData -------------------------------------------------------- */

typedef struct rl_stored_data {
	uint64_t storage_time; /* ms since 1970 */
	uint32_t lifetime;     /* s */
	rl_data_model_t model;
	uint32_t index;        /* array */
	rl_bytes_t key;        /* dictionary */
	bool exists;
	rl_bytes_t value;
	rl_bytes_t raw_value;  /* decode: the model-specific StoredDataValue bytes (RL_MODEL_UNKNOWN: the only content) */
	rl_signature_t sig;
} rl_stored_data_t;
RL_LIST_TYPE(rl_stored_data_list_t, rl_stored_data_t);

/*! \brief The data model of \p kind, or a negative code if unknown (VP_EUNKNOWN_KIND). */
typedef int (*rl_model_fn)(void *ctx, uint32_t kind);

/*! \brief rl_model_fn for the RFC 6940 built-in kinds and RL_KIND_VIPR_REGISTRATION (ctx unused). */
int rl_model_builtin(void *ctx, uint32_t kind);

/*!
 * \brief Decode one StoredData (from its uint32 length) from \p rd with the
 * given model.  RL_MODEL_UNKNOWN leaves value and signature unparsed:
 * raw_value then covers everything after lifetime.
 */
int rl_stored_data_decode(vp_rd_t *rd, rl_data_model_t model, rl_stored_data_t *sd);
int rl_stored_data_encode(vp_wr_t *wr, const rl_stored_data_t *sd);
/*! \brief Encode only the StoredDataValue (model-specific part), e.g. for signing. */
int rl_stored_data_value_encode(vp_wr_t *wr, const rl_stored_data_t *sd);
int rl_stored_data_next(rl_iter_t *it, rl_data_model_t model, rl_stored_data_t *out);

typedef struct rl_array_range {
	uint32_t first;
	uint32_t last;
} rl_array_range_t;
RL_LIST_TYPE(rl_array_range_list_t, rl_array_range_t);
RL_LIST_TYPE(rl_bytes_list_t, rl_bytes_t); /* opaque<0..2^16-1> elements (dictionary keys, KindDescriptions) */

typedef struct rl_specifier {
	uint32_t kind;
	uint64_t generation;
	rl_data_model_t model;          /* RL_MODEL_UNKNOWN: only `raw` is meaningful */
	rl_array_range_list_t indices;  /* array */
	rl_bytes_list_t keys;           /* dictionary; empty = all keys */
	rl_bytes_t raw;                 /* decode: the model-specific bytes */
} rl_specifier_t;
RL_LIST_TYPE(rl_specifier_list_t, rl_specifier_t);

int rl_array_range_next(rl_iter_t *it, rl_array_range_t *out);
int rl_bytes16_next(rl_iter_t *it, rl_bytes_t *out);
/*! \brief Decode a StoredDataSpecifier; \p fn (may be NULL) resolves its kind's model. */
int rl_specifier_decode(vp_rd_t *rd, rl_model_fn fn, void *ctx, rl_specifier_t *s);
int rl_specifier_encode(vp_wr_t *wr, const rl_specifier_t *s);
int rl_specifier_next(rl_iter_t *it, rl_model_fn fn, void *ctx, rl_specifier_t *out);

typedef struct rl_stored_meta {
	uint64_t storage_time;
	uint32_t lifetime;
	rl_data_model_t model;
	uint32_t index;        /* array */
	rl_bytes_t key;        /* dictionary */
	bool exists;
	uint32_t value_length;
	uint8_t hash_alg;
	rl_bytes_t hash;
	rl_bytes_t raw;        /* decode: the MetaDataValue bytes */
} rl_stored_meta_t;
RL_LIST_TYPE(rl_stored_meta_list_t, rl_stored_meta_t);

int rl_stored_meta_decode(vp_rd_t *rd, rl_data_model_t model, rl_stored_meta_t *m);
int rl_stored_meta_encode(vp_wr_t *wr, const rl_stored_meta_t *m);
int rl_stored_meta_next(rl_iter_t *it, rl_data_model_t model, rl_stored_meta_t *out);

/* ---- message bodies ---------------------------------------------------- */

typedef struct rl_probe_req {
	rl_u8_list_t requested; /* rl_probe_type_t values */
} rl_probe_req_t;

typedef struct rl_probe_info {
	uint8_t type; /* rl_probe_type_t */
	uint32_t value;
} rl_probe_info_t;
RL_LIST_TYPE(rl_probe_info_list_t, rl_probe_info_t);

typedef struct rl_probe_ans {
	rl_probe_info_list_t info;
} rl_probe_ans_t;

typedef struct rl_ip_port {
	uint8_t type;      /* RL_ADDR_IPV4 / RL_ADDR_IPV6 */
	uint8_t addr[16];  /* v4 uses the first 4 */
	uint16_t port;
} rl_ip_port_t;

typedef struct rl_ice_ext {
	rl_bytes_t name;
	rl_bytes_t value;
} rl_ice_ext_t;
RL_LIST_TYPE(rl_ice_ext_list_t, rl_ice_ext_t);

typedef struct rl_ice_candidate {
	rl_ip_port_t addr;
	uint8_t overlay_link; /* rl_link_type_t */
	rl_bytes_t foundation;
	uint32_t priority;
	uint8_t cand_type;    /* rl_cand_type_t */
	rl_ip_port_t rel_addr; /* srflx, prflx, relay only */
	rl_ice_ext_list_t exts;
} rl_ice_candidate_t;
RL_LIST_TYPE(rl_ice_list_t, rl_ice_candidate_t);

/* AttachReq and AttachAns share one layout. */
typedef struct rl_attach {
	rl_bytes_t ufrag;
	rl_bytes_t password;
	rl_bytes_t role; /* "passive" (req) / "active" (ans) */
	rl_ice_list_t candidates;
	bool send_update;
} rl_attach_t;

/* AppAttachReq and AppAttachAns share one layout. */
typedef struct rl_app_attach {
	rl_bytes_t ufrag;
	rl_bytes_t password;
	uint16_t application;
	rl_bytes_t role;
	rl_ice_list_t candidates;
} rl_app_attach_t;

typedef struct rl_store_kind_data {
	uint32_t kind;
	uint64_t generation;
	rl_stored_data_list_t values;
} rl_store_kind_data_t;
RL_LIST_TYPE(rl_store_kind_data_list_t, rl_store_kind_data_t);

typedef struct rl_store_req {
	rl_bytes_t resource;
	uint8_t replica_number;
	rl_store_kind_data_list_t kind_data;
} rl_store_req_t;

typedef struct rl_store_kind_resp {
	uint32_t kind;
	uint64_t generation;
	rl_node_list_t replicas;
} rl_store_kind_resp_t;
RL_LIST_TYPE(rl_store_kind_resp_list_t, rl_store_kind_resp_t);

typedef struct rl_store_ans {
	rl_store_kind_resp_list_t responses;
} rl_store_ans_t;

/* FetchReq and StatReq share one layout. */
typedef struct rl_fetch_req {
	rl_bytes_t resource;
	rl_specifier_list_t specifiers;
} rl_fetch_req_t;

typedef struct rl_fetch_kind_resp {
	uint32_t kind;
	uint64_t generation;
	rl_stored_data_list_t values;
} rl_fetch_kind_resp_t;
RL_LIST_TYPE(rl_fetch_kind_resp_list_t, rl_fetch_kind_resp_t);

typedef struct rl_fetch_ans {
	rl_fetch_kind_resp_list_t responses;
} rl_fetch_ans_t;

typedef struct rl_stat_kind_resp {
	uint32_t kind;
	uint64_t generation;
	rl_stored_meta_list_t values;
} rl_stat_kind_resp_t;
RL_LIST_TYPE(rl_stat_kind_resp_list_t, rl_stat_kind_resp_t);

typedef struct rl_stat_ans {
	rl_stat_kind_resp_list_t responses;
} rl_stat_ans_t;

typedef struct rl_find_req {
	rl_bytes_t resource;
	rl_u32_list_t kinds;
} rl_find_req_t;

typedef struct rl_find_result {
	uint32_t kind;
	rl_bytes_t closest; /* ResourceId; empty if none */
} rl_find_result_t;
RL_LIST_TYPE(rl_find_result_list_t, rl_find_result_t);

typedef struct rl_find_ans {
	rl_find_result_list_t results;
} rl_find_ans_t;

typedef struct rl_join_req {
	vp_id_t joining_peer;
	rl_bytes_t overlay_data;
} rl_join_req_t;

typedef struct rl_join_ans {
	rl_bytes_t overlay_data;
} rl_join_ans_t;

typedef struct rl_leave_req {
	vp_id_t leaving_peer;
	rl_bytes_t overlay_data; /* Chord: ChordLeaveData, see rl_chord_leave_decode */
} rl_leave_req_t;

typedef struct rl_chord_leave {
	uint8_t type;        /* rl_chord_leave_type_t */
	rl_node_list_t nodes; /* successors (from_succ) or predecessors (from_pred) */
} rl_chord_leave_t;

/* Chord UpdateReq (UpdateAns is empty). */
typedef struct rl_chord_update {
	uint32_t uptime;
	uint8_t type; /* rl_chord_update_type_t */
	rl_node_list_t predecessors; /* neighbors, full */
	rl_node_list_t successors;   /* neighbors, full */
	rl_node_list_t fingers;      /* full */
} rl_chord_update_t;

typedef struct rl_route_query_req {
	bool send_update;
	rl_dest_t destination;
	rl_bytes_t overlay_data;
} rl_route_query_req_t;

/* Chord RouteQueryAns. */
typedef struct rl_route_query_ans {
	vp_id_t next_peer;
} rl_route_query_ans_t;

typedef struct rl_ping_req {
	rl_bytes_t padding;
} rl_ping_req_t;

typedef struct rl_ping_ans {
	uint64_t response_id;
	uint64_t time;
} rl_ping_ans_t;

typedef struct rl_config_update_req {
	uint8_t type;            /* rl_config_update_type_t */
	rl_bytes_t config_data;  /* config */
	rl_bytes_list_t kinds;   /* kind: KindDescription opaque<0..2^16-1> each */
} rl_config_update_req_t;

typedef struct rl_error {
	uint16_t code; /* rl_error_code_t */
	rl_bytes_t info;
} rl_error_t;

/* A decoded message body; `code` selects the member (empty answers have none). */
typedef struct rl_body {
	uint16_t code;
	union {
		rl_probe_req_t probe_req;
		rl_probe_ans_t probe_ans;
		rl_attach_t attach;         /* RL_ATTACH_REQ, RL_ATTACH_ANS */
		rl_store_req_t store_req;
		rl_store_ans_t store_ans;
		rl_fetch_req_t fetch_req;   /* RL_FETCH_REQ, RL_STAT_REQ */
		rl_fetch_ans_t fetch_ans;
		rl_stat_ans_t stat_ans;
		rl_find_req_t find_req;
		rl_find_ans_t find_ans;
		rl_join_req_t join_req;
		rl_join_ans_t join_ans;
		rl_leave_req_t leave_req;
		rl_chord_update_t update;   /* RL_UPDATE_REQ */
		rl_route_query_req_t route_query_req;
		rl_route_query_ans_t route_query_ans;
		rl_ping_req_t ping_req;
		rl_ping_ans_t ping_ans;
		rl_app_attach_t app_attach; /* RL_APP_ATTACH_REQ, RL_APP_ATTACH_ANS */
		rl_config_update_req_t config_update_req;
		rl_error_t error;
	} u;
} rl_body_t;

int rl_probe_info_next(rl_iter_t *it, rl_probe_info_t *out);
int rl_ice_candidate_next(rl_iter_t *it, rl_ice_candidate_t *out);
int rl_ice_ext_next(rl_iter_t *it, rl_ice_ext_t *out);
int rl_store_kind_data_next(rl_iter_t *it, rl_store_kind_data_t *out);
int rl_store_kind_resp_next(rl_iter_t *it, rl_store_kind_resp_t *out);
int rl_fetch_kind_resp_next(rl_iter_t *it, rl_fetch_kind_resp_t *out);
int rl_stat_kind_resp_next(rl_iter_t *it, rl_stat_kind_resp_t *out);
int rl_find_result_next(rl_iter_t *it, rl_find_result_t *out);

int rl_ip_port_decode(vp_rd_t *rd, rl_ip_port_t *a);
int rl_ip_port_encode(vp_wr_t *wr, const rl_ip_port_t *a);
int rl_ice_candidate_decode(vp_rd_t *rd, rl_ice_candidate_t *c);
int rl_ice_candidate_encode(vp_wr_t *wr, const rl_ice_candidate_t *c);

/*!
 * \brief Decode the message_body of a message with \p code from exactly
 * [p, p+len).  \p fn (may be NULL) resolves kind models so StoredData,
 * specifiers and metadata are checked in depth; kinds it does not know are
 * checked for framing only.  VP_EBADTYPE for an unknown message code.
 */
int rl_body_decode(uint16_t code, const uint8_t *p, size_t len, rl_model_fn fn, void *ctx,
                   rl_body_t *out);
/*! \brief Encode the message_body for b->code (without the 4-byte length prefix). */
int rl_body_encode(vp_wr_t *wr, const rl_body_t *b);

int rl_chord_leave_decode(const uint8_t *p, size_t len, rl_chord_leave_t *out);
int rl_chord_leave_encode(vp_wr_t *wr, const rl_chord_leave_t *l);

/*! \brief Name of a message code ("store_req", "error", ...), "unknown" otherwise. */
const char *rl_msg_code_name(uint16_t code);
/*! \brief Name of an ErrorResponse code ("Error_Forbidden", ...), "unknown" otherwise. */
const char *rl_error_code_name(uint16_t code);

/* ---- link framing ------------------------------------------------------ */

typedef struct rl_frame {
	uint8_t type;      /* RL_FRAME_DATA / RL_FRAME_ACK */
	uint32_t sequence; /* DATA: sequence; ACK: ack_sequence */
	uint32_t received; /* ACK: bitmap of the 32 previous sequences (MSB = ack_sequence-32) */
	rl_bytes_t message; /* DATA: the RELOAD message */
} rl_frame_t;

/*!
 * \brief Stream helper: total length of the frame starting at p, known from
 * its first bytes.  0 with *frame_len set (the frame is complete once len >=
 * *frame_len), VP_EAGAIN if the frame header itself is incomplete,
 * VP_EBADTYPE for an unknown frame type, VP_ETOOBIG for a DATA frame whose
 * message exceeds RL_MAX_MESSAGE_SIZE (the link should then be closed).
 */
int rl_frame_peek(const uint8_t *p, size_t len, size_t *frame_len);

/*! \brief Decode exactly one frame occupying [p, p+len). */
int rl_frame_decode(const uint8_t *p, size_t len, rl_frame_t *f);
int rl_frame_encode(vp_wr_t *wr, const rl_frame_t *f);
int rl_frame_encode_data(vp_wr_t *wr, uint32_t sequence, const uint8_t *msg, size_t len);
int rl_frame_encode_ack(vp_wr_t *wr, uint32_t ack_sequence, uint32_t received);

/* ---- identities, signatures ------------------------------------------- */

/*! \brief Overlay id: the last 4 bytes of SHA-1(instance name), big-endian. */
uint32_t rl_overlay_id(const char *name, size_t len);

/*!
 * \brief Fill a cert_hash SignerIdentity: SHA-256 of the DER certificate into
 * \p hash (RL_MAX_HASH_LEN bytes, which *id then points at).
 */
int rl_signer_cert_hash(const uint8_t *der, size_t der_len, uint8_t hash[RL_MAX_HASH_LEN],
                        rl_signer_identity_t *id);

/*!
 * \brief Write the message signature input: overlay ‖ transaction_id ‖
 * MessageContents ‖ SignerIdentity.
 */
int rl_sig_input_msg(vp_wr_t *wr, uint32_t overlay, uint64_t txid, const uint8_t *contents,
                     size_t contents_len, const rl_signer_identity_t *id);

/*!
 * \brief Write the StoredData signature input: resource_id ‖ kind ‖
 * storage_time ‖ StoredDataValue ‖ SignerIdentity (\p sd's model and value).
 */
int rl_sig_input_stored_data(vp_wr_t *wr, const uint8_t *rid, size_t rid_len, uint32_t kind,
                             const rl_stored_data_t *sd, const rl_signer_identity_t *id);

/*!
 * \brief Sign a message: fills \p out (SHA-256 with RSA or ECDSA from \p key,
 * identity *id, value in \p sigbuf).  VP_EUNSUPPORTED for other key types.
 */
int rl_msg_sign(EVP_PKEY *key, uint32_t overlay, uint64_t txid, const uint8_t *contents,
                size_t contents_len, const rl_signer_identity_t *id, uint8_t *sigbuf,
                size_t sigcap, rl_signature_t *out);

/*! \brief Verify a message signature with \p pub. 0 if valid, VP_EAUTH if not. */
int rl_msg_verify(EVP_PKEY *pub, uint32_t overlay, uint64_t txid, const uint8_t *contents,
                  size_t contents_len, const rl_signature_t *sig);

/*!
 * \brief Verify a decoded message against the certificate its SignerIdentity
 * names in its own SecurityBlock.  VP_ENOTFOUND if no certificate matches the
 * hash, VP_EAUTH on a bad signature, VP_EUNSUPPORTED for identity none.
 */
int rl_msg_verify_embedded(const rl_message_t *m);

/*! \brief Find the certificate in \p certs whose SHA-256 hash \p id names. VP_ENOTFOUND otherwise. */
int rl_find_signer_cert(const rl_cert_list_t *certs, const rl_signer_identity_t *id, rl_cert_t *out);

/*! \brief Sign \p sd in place (sd->sig filled, value in \p sigbuf). */
int rl_stored_data_sign(EVP_PKEY *key, const uint8_t *rid, size_t rid_len, uint32_t kind,
                        rl_stored_data_t *sd, const rl_signer_identity_t *id, uint8_t *sigbuf,
                        size_t sigcap);

/*! \brief Verify \p sd's signature with \p pub. 0 if valid, VP_EAUTH if not. */
int rl_stored_data_verify(EVP_PKEY *pub, const uint8_t *rid, size_t rid_len, uint32_t kind,
                          const rl_stored_data_t *sd);

/*!
 * \brief SHA-256 of everything rl_stored_data_verify() checks for \p sd at (\p rid, \p kind): the signed
 * bytes (SignerIdentity included), the hash and signature algorithms and the signature value, into \p out.
 * Two StoredData with the same digest verify alike under the same key (cert.c's memo of verified
 * signatures).  VP_EINVAL (unknown model), VP_ERANGE, VP_ECRYPTO.
 */
int rl_stored_data_verify_digest(const uint8_t *rid, size_t rid_len, uint32_t kind, const rl_stored_data_t *sd,
                                 uint8_t out[32]);

/* ---- diagnostics ------------------------------------------------------- */

/*!
 * \brief Print the RELOAD message at [p, p+len) — bare, or in a DATA or ACK
 * frame — as JSON on \p out: every field, ids and opaque data in hex.  The
 * whole message is decoded and checked first (\p fn resolves kind models, may
 * be NULL), so malformed input prints nothing and returns its VP_E* code.
 */
int rl_json_message(FILE *out, const uint8_t *p, size_t len, rl_model_fn fn, void *ctx);

#endif
