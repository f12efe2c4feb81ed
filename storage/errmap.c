#include "common/errcode.h"
#include "storage/store.h"

/* RFC 6940 §6.3.3.1 error codes (PROTOCOL-FACTS §1.5). */
enum {
	RELOAD_FORBIDDEN = 2,
	RELOAD_NOT_FOUND = 3,
	RELOAD_REQUEST_TIMEOUT = 4,
	RELOAD_GEN_TOO_LOW = 5,
	RELOAD_DATA_TOO_LARGE = 8,
	RELOAD_DATA_TOO_OLD = 9,
	RELOAD_UNKNOWN_KIND = 12,
	RELOAD_INVALID_MESSAGE = 20,
};

uint16_t st_reload_error(int err)
{
	switch (err) {
	case VP_OK:
		return 0;
	case VP_EDATA_TOO_OLD:
		return RELOAD_DATA_TOO_OLD;
	case VP_EGEN_TOO_LOW:
		return RELOAD_GEN_TOO_LOW;
	case VP_EDATA_TOO_LARGE:
		return RELOAD_DATA_TOO_LARGE;
	case VP_EUNKNOWN_KIND:
		return RELOAD_UNKNOWN_KIND;
	case VP_EFORBIDDEN:
	case VP_EQUOTA:     /* overview draft §7.1.1: the responsible node refuses the store */
	case VP_ERATELIMIT: /* RFC 6940 has no "try later"; Forbidden + error_info "rate-limited" */
	case VP_EPERM:
		return RELOAD_FORBIDDEN;
	case VP_ENOTFOUND:
		return RELOAD_NOT_FOUND;
	case VP_EINVAL:
	case VP_EMALFORMED:
	case VP_ETRUNC:
	case VP_ETRAILING:
	case VP_EBADLEN:
	case VP_EBADTYPE:
	case VP_EUNSUPPORTED:
		return RELOAD_INVALID_MESSAGE;
	default:
		/* VP_EDB, VP_ENOMEM, VP_EIO...: nothing the requester did wrong; it retries as it
		 * would after a timeout. */
		return RELOAD_REQUEST_TIMEOUT;
	}
}

const char *st_reload_error_info(int err)
{
	switch (err) {
	case VP_OK:
		return "";
	case VP_EFORBIDDEN:
		return "access-control";
	case VP_EQUOTA:
		return "quota";
	case VP_ERATELIMIT:
		return "rate-limited";
	case VP_EDATA_TOO_LARGE:
		return "too-large";
	case VP_EDATA_TOO_OLD:
		return "too-old";
	case VP_EGEN_TOO_LOW:
		return "generation";
	case VP_EUNKNOWN_KIND:
		return "unknown-kind";
	default:
		return vp_errname(err);
	}
}
