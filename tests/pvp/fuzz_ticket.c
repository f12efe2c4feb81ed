/* libFuzzer target: ticket decoder and verifier (binary and base64url text), key-file parser. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "pvp/ticket.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int init;
	pvp_ticket_keys_t keys, parsed;
	pvp_ticket_t t, t2;
	pvp_ticket_expect_t ex = { .number = "+14085551234", .domain = "carrier-b.example" };
	uint8_t out[PVP_TICKET_MAX];
	char text[PVP_TICKET_B64_MAX + 16];
	size_t n;

	if (!init) {
		vp_log_setup(VP_LOG_ERROR + 0, fopen("/dev/null", "w"));
		init = 1;
	}
	memset(&keys, 0, sizeof(keys));
	keys.cur.epoch = 1;
	keys.cur.len = 16;
	memset(keys.cur.key, 0x42, 16);
	keys.has_prev = 1;
	keys.prev = keys.cur;
	keys.prev.epoch = 2;
	keys.prev.grace_until_s = 2000000000;

	if (pvp_ticket_decode(data, size, &t) == 0) {
		/* Re-issuing the decoded fields gives the same body (the MAC will differ). */
		if (pvp_ticket_issue(&keys, &t, out, sizeof(out), &n) || n != size ||
		    memcmp(out + 2, data + 2, size - 2 - PVP_TICKET_MAC_LEN))
			abort();
		pvp_ticket_expect_t any = { .ignore_expiry = 1 };
		if (pvp_ticket_verify(&keys, out, n, t.issued, &any, &t2) != PVP_TR_OK ||
		    memcmp(&t2.number, &t.number, sizeof(t.number)) || t2.entropy_cbits != t.entropy_cbits)
			abort();
	}
	/* A forged input must never verify (the fuzzer does not know the key). */
	if (pvp_ticket_verify(&keys, data, size, 1795256243u, &ex, NULL) == PVP_TR_OK)
		abort();
	if (size < sizeof(text)) {
		memcpy(text, data, size);
		text[size] = '\0';
		(void)pvp_ticket_verify_text(&keys, text, 1795256243u, &ex, NULL);
	}
	(void)pvp_ticket_keys_parse((const char *)data, size, &parsed);
	return 0;
}
