/* libFuzzer target: ValExchange request/response decoders and the SRP username parser. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pvp/method.h"
#include "pvp/valx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static pvp_valreq_t q, q2;
	static pvp_valresp_t r, r2;
	static uint8_t buf[PVP_VALX_MAX];
	size_t n;
	char user[PVP_USER_MAX * 2];
	pvp_user_t u, u2;

	/* Whatever decodes must re-encode to the same bytes and decode to the same struct. */
	if (pvp_valreq_decode(data, size, &q) == 0) {
		if (pvp_valreq_encode(&q, buf, sizeof(buf), &n) || n != size || memcmp(buf, data, n))
			abort();
		if (pvp_valreq_decode(buf, n, &q2) || memcmp(&q, &q2, sizeof(q)))
			abort();
	}
	if (pvp_valresp_decode(data, size, &r) == 0) {
		if (pvp_valresp_encode(&r, buf, sizeof(buf), &n) || n != size || memcmp(buf, data, n))
			abort();
		if (pvp_valresp_decode(buf, n, &r2) || memcmp(&r, &r2, sizeof(r)))
			abort();
	}
	if (size < sizeof(user)) {
		memcpy(user, data, size);
		user[size] = '\0';
		if (pvp_user_parse(user, &u) == 0) {
			char again[PVP_USER_MAX];
			/* One spelling per username: format(parse(s)) == s. */
			if (pvp_user_format(&u, again) || strcmp(again, user) || pvp_user_parse(again, &u2) ||
			    memcmp(&u, &u2, sizeof(u)))
				abort();
		}
	}
	return 0;
}
