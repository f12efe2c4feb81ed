/*
 * storage/vipr_kind.h - the VIPR-REGISTRATION kind: Kind-ID, dictionary key and
 * value layout (docs/protocol.md §2).
 *
 * One dictionary entry per claimant of a phone number:
 *   Resource-ID  = SHA-1("+<E.164 digits>")[0..15]
 *   dictionary key = NodeId claimant (16) ‖ uint32 vservice_id           (20 bytes)
 *   value          = uint8 version (1) ‖ NodeId contact_node (16) ‖ uint32 vservice_id ‖
 *                    uint8 pvp_methods ‖ opaque reserved<0..255>         (23..278 bytes)
 * The storage engine refuses a store unless the key's Node-ID and the value's
 * contact Node-ID are both Node-IDs of the (verified) signer.
 */
#ifndef VP_STORAGE_VIPR_KIND_H
#define VP_STORAGE_VIPR_KIND_H

#include <stddef.h>
#include <stdint.h>

#include "common/id.h"
#include "common/reload_codes.h"

/* Private-use Kind-ID range of RFC 6940 (IANA: 0xf0000001-0xfffffffe); configurable. */
#define ST_VIPR_KIND_ID_DEFAULT VP_VIPR_KIND_ID
#define ST_VIPR_KIND_NAME "VIPR-REGISTRATION"

#define ST_VIPR_KEY_LEN 20         /* NodeId (16) ‖ uint32 vservice_id */
#define ST_VIPR_VALUE_VERSION 1
#define ST_VIPR_VALUE_MIN_LEN 23   /* version, contact, vservice, methods, empty reserved */
#define ST_VIPR_VALUE_MAX_LEN 278  /* ... with 255 reserved bytes */

/* pvp_methods bits (docs/protocol.md §2.3, §5.5): which PVP methods the claimant serves. */
#define ST_VIPR_PVP_WITHOUT_CALLER_ID 0x01u /* method "b": no caller-ID (= PVP_MBIT(PVP_METHOD_B)) */
#define ST_VIPR_PVP_WITH_CALLER_ID    0x02u /* method "a": caller-ID known (= PVP_MBIT(PVP_METHOD_A)) */

/* Defaults of the built-in kind (docs/protocol.md §2). */
#define ST_VIPR_MAX_COUNT    64u     /* claimants per number */
/* Entries one certificate may hold under one number (docs/protocol.md §2.5): a
 * carrier needs one per VService answering for the number, and 4 keeps any one
 * certificate from taking more than 1/16 of max-count. */
#define ST_VIPR_MAX_PER_CERT 4u
#define ST_VIPR_MAX_SIZE     ST_VIPR_VALUE_MAX_LEN
#define ST_VIPR_MIN_LIFETIME 60u     /* s */
#define ST_VIPR_MAX_LIFETIME 172800u /* s: twice the recommended 24 h refresh period */
#define ST_VIPR_QUOTA        10000u  /* Q: numbers per Node-ID (overview draft §7.1.1) */

typedef struct st_vipr_key {
	vp_id_t node;         /*!< the claimant's Node-ID (must be the signer's) */
	uint32_t vservice_id; /*!< VService within that node */
} st_vipr_key_t;

typedef struct st_vipr_value {
	vp_id_t contact;          /*!< Node-ID to AppAttach to for PVP */
	uint32_t vservice_id;
	uint8_t pvp_methods;      /*!< ST_VIPR_PVP_* bits */
	const uint8_t *reserved;  /*!< zero-copy view into the decoded input (may be NULL if len 0) */
	uint8_t reserved_len;
} st_vipr_value_t;

/*! \brief Encode a dictionary key into \p out (ST_VIPR_KEY_LEN bytes). */
void st_vipr_key_encode(const st_vipr_key_t *key, uint8_t out[ST_VIPR_KEY_LEN]);

/*! \brief Decode a dictionary key; VP_EMALFORMED unless \p len is exactly ST_VIPR_KEY_LEN. */
int st_vipr_key_decode(const uint8_t *buf, size_t len, st_vipr_key_t *key);

/*!
 * \brief Encode \p v into \p out (capacity \p cap); *len gets the byte count.
 * VP_ESPACE if it does not fit.
 */
int st_vipr_value_encode(const st_vipr_value_t *v, uint8_t *out, size_t cap, size_t *len);

/*!
 * \brief Decode a value. VP_EUNSUPPORTED for a version other than 1, VP_ETRUNC /
 * VP_ETRAILING for a bad length; v->reserved points into \p buf.
 */
int st_vipr_value_decode(const uint8_t *buf, size_t len, st_vipr_value_t *v);

#endif
