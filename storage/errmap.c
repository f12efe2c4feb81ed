#include "common/errcode.h"
#include "common/reload_codes.h"
#include "storage/store.h"


uint16_t st_reload_error(int err)
{
	switch (err) {
	case VP_OK:
		return 0;
	case VP_EDATA_TOO_OLD:
		return VP_RELOAD_ERR_DATA_TOO_OLD;
	case VP_EGEN_TOO_LOW:
		return VP_RELOAD_ERR_GENERATION_COUNTER_TOO_LOW;
	case VP_EDATA_TOO_LARGE:
		return VP_RELOAD_ERR_DATA_TOO_LARGE;
	case VP_EUNKNOWN_KIND:
		return VP_RELOAD_ERR_UNKNOWN_KIND;
	case VP_EFORBIDDEN:
	case VP_EQUOTA:     /* overview draft §7.1.1: the responsible node refuses the store */
	case VP_ERATELIMIT: /* RFC 6940 has no "try later"; Forbidden + error_info "rate-limited" */
	case VP_EPERM:
		return VP_RELOAD_ERR_FORBIDDEN;
	case VP_ENOTFOUND:
		return VP_RELOAD_ERR_NOT_FOUND;
	case VP_EINVAL:
	case VP_EMALFORMED:
	case VP_ETRUNC:
	case VP_ETRAILING:
	case VP_EBADLEN:
	case VP_EBADTYPE:
	case VP_EUNSUPPORTED:
		return VP_RELOAD_ERR_INVALID_MESSAGE;
	default:
		/* VP_EDB, VP_ENOMEM, VP_EIO...: nothing the requester did wrong; it retries as it
		 * would after a timeout. */
		return VP_RELOAD_ERR_REQUEST_TIMEOUT;
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
