/*
 * common/hex.h - hex encoding for ids, keys, CLIs and JSON output.
 */
#ifndef VP_COMMON_HEX_H
#define VP_COMMON_HEX_H

#include <stddef.h>
#include <stdint.h>

/*! \brief Lower-case hex of \p len bytes into \p out (needs 2*len+1). VP_ESPACE if it does not fit. */
int vp_hex_encode(const uint8_t *src, size_t len, char *out, size_t outcap);

/*!
 * \brief Decode \p hexlen hex digits (either case; ASCII whitespace between
 * byte pairs is skipped) into \p out.  *outlen gets the byte count.
 * VP_EHEX on an odd digit count or a non-hex character, VP_ESPACE if too long.
 */
int vp_hex_decode(const char *hex, size_t hexlen, uint8_t *out, size_t outcap, size_t *outlen);

#endif
