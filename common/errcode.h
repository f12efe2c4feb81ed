/*
 * common/errcode.h - the project's single error space.
 *
 * Every fallible function returns 0 (VP_OK) or one of the negative VP_E* codes
 * below; vp_strerror() turns a code into a one-line reason for logs and CLIs.
 * Codes live in a project range (-1000 and below) so they can never be confused
 * with a negated errno or a positive count returned by a burst API.
 *
 * The list is an X-macro so the enum and the message table cannot drift apart.
 * It is grouped by module; add a new code at the end of its module's group.
 */
#ifndef VP_COMMON_ERRCODE_H
#define VP_COMMON_ERRCODE_H

#define VP_ERRORS(X) \
	/* generic */ \
	X(VP_EINVAL,          -1000, "invalid argument") \
	X(VP_ENOMEM,          -1001, "out of memory") \
	X(VP_ESPACE,          -1002, "output buffer too small") \
	X(VP_ERANGE,          -1003, "value out of range") \
	X(VP_ENOTFOUND,       -1004, "not found") \
	X(VP_EEXIST,          -1005, "already exists") \
	X(VP_EIO,             -1006, "I/O error") \
	X(VP_ETIMEOUT,        -1007, "timed out") \
	X(VP_EAGAIN,          -1008, "resource temporarily unavailable") \
	X(VP_ECONFIG,         -1009, "invalid configuration") \
	X(VP_ECRYPTO,         -1010, "cryptographic operation failed") \
	X(VP_EUNSUPPORTED,    -1011, "unsupported feature or version") \
	X(VP_ESTATE,          -1012, "operation not valid in the current state") \
	X(VP_EBUSY,           -1013, "busy") \
	X(VP_ECLOSED,         -1014, "connection closed") \
	X(VP_EPERM,           -1015, "not permitted") \
	\
	/* decoding (byte reader, every parser) */ \
	X(VP_ETRUNC,          -1100, "truncated input") \
	X(VP_ETRAILING,       -1101, "trailing bytes after the structure") \
	X(VP_EMALFORMED,      -1102, "malformed input") \
	X(VP_EBADTOKEN,       -1103, "bad RELOAD token") \
	X(VP_EBADLEN,         -1104, "length field disagrees with the data") \
	X(VP_EBADTYPE,        -1105, "unknown or invalid type code") \
	X(VP_EHEX,            -1106, "invalid hex string") \
	X(VP_ETOOBIG,         -1107, "message exceeds the size limit") \
	\
	/* E.164 normalisation */ \
	X(VP_E164_EMPTY,      -1200, "phone number is empty") \
	X(VP_E164_CHAR,       -1201, "phone number contains a character that is not a digit or separator") \
	X(VP_E164_SHORT,      -1202, "phone number has too few digits for E.164") \
	X(VP_E164_LONG,       -1203, "phone number has more than 15 digits") \
	X(VP_E164_NOCC,       -1204, "national number but no default country code is configured") \
	X(VP_E164_CC,         -1205, "invalid country code") \
	\
	/* RELOAD codec and routing (dataplane) */ \
	X(VP_ERELOAD_TTL,     -1300, "RELOAD TTL exceeded") \
	X(VP_ERELOAD_OPTION,  -1301, "unsupported critical forwarding option") \
	X(VP_ERELOAD_EXT,     -1302, "unknown critical message extension") \
	X(VP_ERELOAD_DEST,    -1303, "invalid destination") \
	X(VP_ERELOAD_FRAG,    -1304, "fragmented RELOAD message not supported") \
	\
	/* storage (RFC 6940 store semantics, quota, policing) */ \
	X(VP_EDATA_TOO_OLD,   -1400, "stored data is older than or as old as what is held") \
	X(VP_EGEN_TOO_LOW,    -1401, "generation counter too low") \
	X(VP_EDATA_TOO_LARGE, -1402, "data too large for the kind (max-size or max-count)") \
	X(VP_EUNKNOWN_KIND,   -1403, "unknown kind") \
	X(VP_EFORBIDDEN,      -1404, "forbidden by the kind's access policy") \
	X(VP_EQUOTA,          -1405, "proportional quota exceeded") \
	X(VP_ERATELIMIT,      -1406, "rate limit exceeded") \
	X(VP_EDB,             -1407, "database error") \
	X(VP_EEXPIRED,        -1408, "data has expired") \
	\
	/* topology (Chord) */ \
	X(VP_ENOROUTE,        -1500, "no route to the destination") \
	X(VP_ENOTRESP,        -1501, "not responsible for the resource") \
	\
	/* PVP and tickets */ \
	X(VP_EAUTH,           -1600, "authentication failed") \
	X(VP_ETLS,            -1601, "TLS failure") \
	X(VP_EREFUSED,        -1602, "refused by policy") \
	X(VP_ETICKET,         -1603, "invalid ticket") \
	\
	/* VAP */ \
	X(VP_EVAP,            -1700, "VAP protocol error") \
	X(VP_EVAP_INTEGRITY,  -1701, "VAP message integrity check failed") \
	X(VP_EVAP_FINGERPRINT,-1702, "VAP fingerprint check failed") \
	X(VP_EVAP_UNKNOWN_ATTR,-1703, "VAP unknown comprehension-required attribute") \
	X(VP_EVAP_REJECTED,   -1704, "VAP request rejected by the server (error response)") \
	/* end */

enum vp_error {
	VP_OK = 0,
#define VP_ERROR_ENUM(name, code, text) name = (code),
	VP_ERRORS(VP_ERROR_ENUM)
#undef VP_ERROR_ENUM
};

/*! \brief One-line, human-readable reason for \p code (0, VP_E*, or a negated errno). Never NULL. */
const char *vp_strerror(int code);

/*! \brief The symbolic name of \p code ("VP_ETRUNC"), for logs and JSON; "VP_OK" for 0. Never NULL. */
const char *vp_errname(int code);

#endif
