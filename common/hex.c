#include "common/hex.h"

#include "common/errcode.h"

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

int vp_hex_encode(const uint8_t *src, size_t len, char *out, size_t outcap)
{
	static const char digits[] = "0123456789abcdef";
	if (outcap < 2 * len + 1)
		return VP_ESPACE;
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[src[i] >> 4];
		out[2 * i + 1] = digits[src[i] & 15];
	}
	out[2 * len] = '\0';
	return 0;
}

int vp_hex_decode(const char *hex, size_t hexlen, uint8_t *out, size_t outcap, size_t *outlen)
{
	size_t n = 0, i = 0;
	*outlen = 0;
	while (i < hexlen) {
		int hi, lo;
		if (is_space(hex[i])) {
			i++;
			continue;
		}
		if (i + 1 >= hexlen)
			return VP_EHEX;
		hi = hexval(hex[i]);
		lo = hexval(hex[i + 1]);
		if (hi < 0 || lo < 0)
			return VP_EHEX;
		if (n >= outcap)
			return VP_ESPACE;
		out[n++] = (uint8_t)(hi << 4 | lo);
		i += 2;
	}
	*outlen = n;
	return 0;
}
