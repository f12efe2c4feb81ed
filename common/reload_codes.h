/*
 * common/reload_codes.h - the RFC 6940 code points and the ViPR Kind-ID that
 * more than one module needs, defined once.
 *
 * The RELOAD codec (dataplane/reload.h: RL_*) and the storage engine
 * (storage/store.h, storage/vipr_kind.h: ST_*) both name these numbers; their
 * names are aliases of the values here, so the two can never disagree on the
 * wire (storage sits below dataplane and cannot include the codec).
 */
#ifndef VP_COMMON_RELOAD_CODES_H
#define VP_COMMON_RELOAD_CODES_H

/*
 * The VIPR-REGISTRATION kind (docs/protocol.md §2): a Kind-ID from RFC 6940's
 * private-use range (IANA: 0xf0000001-0xfffffffe), DICTIONARY model.  Every
 * peer of an overlay must agree on it; it is the default of the overlay-wide
 * configuration.
 */
#define VP_VIPR_KIND_ID 0xF0000100u /* 4026532096 */

/* Data models (RFC 6940 §7.2). */
enum {
	VP_RELOAD_MODEL_SINGLE = 1,
	VP_RELOAD_MODEL_ARRAY = 2,
	VP_RELOAD_MODEL_DICTIONARY = 3,
};

/* ErrorResponse error codes (RFC 6940 §6.3.3.1). */
enum {
	VP_RELOAD_ERR_FORBIDDEN = 2,
	VP_RELOAD_ERR_NOT_FOUND = 3,
	VP_RELOAD_ERR_REQUEST_TIMEOUT = 4,
	VP_RELOAD_ERR_GENERATION_COUNTER_TOO_LOW = 5,
	VP_RELOAD_ERR_INCOMPATIBLE_WITH_OVERLAY = 6,
	VP_RELOAD_ERR_UNSUPPORTED_FORWARDING_OPTION = 7,
	VP_RELOAD_ERR_DATA_TOO_LARGE = 8,
	VP_RELOAD_ERR_DATA_TOO_OLD = 9,
	VP_RELOAD_ERR_TTL_EXCEEDED = 10,
	VP_RELOAD_ERR_MESSAGE_TOO_LARGE = 11,
	VP_RELOAD_ERR_UNKNOWN_KIND = 12,
	VP_RELOAD_ERR_UNKNOWN_EXTENSION = 13,
	VP_RELOAD_ERR_RESPONSE_TOO_LARGE = 14,
	VP_RELOAD_ERR_CONFIG_TOO_OLD = 15,
	VP_RELOAD_ERR_CONFIG_TOO_NEW = 16,
	VP_RELOAD_ERR_IN_PROGRESS = 17,
	VP_RELOAD_ERR_EXP_A = 18,
	VP_RELOAD_ERR_EXP_B = 19,
	VP_RELOAD_ERR_INVALID_MESSAGE = 20,
};

#endif
