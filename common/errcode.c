#include "common/errcode.h"

#include <string.h>

const char *vp_strerror(int code)
{
	switch (code) {
	case VP_OK:
		return "success";
#define VP_ERROR_TEXT(name, value, text) case name: return text;
	VP_ERRORS(VP_ERROR_TEXT)
#undef VP_ERROR_TEXT
	default:
		break;
	}
	if (code < 0 && code > -1000)
		return strerror(-code);
	return "unknown error";
}

const char *vp_errname(int code)
{
	switch (code) {
	case VP_OK:
		return "VP_OK";
#define VP_ERROR_NAME(name, value, text) case name: return #name;
	VP_ERRORS(VP_ERROR_NAME)
#undef VP_ERROR_NAME
	default:
		return code < 0 && code > -1000 ? "errno" : "unknown";
	}
}
