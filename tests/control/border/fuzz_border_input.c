/*
 * tests/control/border/fuzz_border_input.c - libFuzzer on what a peer or the call agent can send the border:
 * stream framing, the engine on whole messages from both sides (with a live dialog table, so in-dialog
 * and response paths run too), and the SDP classifier.  The first byte picks the side.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "control/border/border.h"
#include "pvp/ticket.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool sink(void *ctx, uint64_t conn, const char *buf, size_t len)
{
	(void)ctx;
	(void)conn;
	(void)buf;
	(void)len;
	return true;
}

static bool up(void *ctx)
{
	(void)ctx;
	return true;
}

static int dial(void *ctx, const char *host, uint16_t port, uint64_t *conn)
{
	(void)ctx;
	(void)host;
	*conn = 0x100000040ull + (port & 3); /* one of the outside ids the first byte can name */
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static vb_proxy_t *px;
	static pvp_ticket_keys_t keys;
	static uint64_t now = 1800000000000ull;
	if (!px) {
		keys.cur.epoch = 1;
		keys.cur.len = 32;
		vb_proxy_conf_t c;
		vb_proxy_conf_defaults(&c);
		c.max_dialogs = 64;
		strcpy(c.outside_uri, "sip:border.example:5061;transport=tls");
		strcpy(c.inside_uri, "sip:10.0.0.2:5070;transport=tcp");
		vb_hooks_t h = {.send = sink, .inside_up = up, .connect = dial};
		if (vb_proxy_new(&c, &keys, &h, &px) != 0)
			return 0;
	}
	if (size < 1)
		return 0;
	/* bit 0: inside (bit 1: an agent connection that may call out); else an outside peer, some of them the
	 * connections dial() hands out */
	uint64_t conn = data[0] & 1 ? (data[0] & 2 ? VB_CONN_INSIDE_BIT | 7 : VB_CONN_INSIDE)
	                            : (data[0] & 2 ? 0x100000040ull : 0x100000001ull) + (data[0] >> 6);
	const char *msg = (const char *)data + 1;
	size_t len = size - 1;
	size_t total;
	if (vb_sip_frame(msg, len, 65536, &total) == 1 && total > len)
		__builtin_trap(); /* framing may never claim more than it was given */
	vb_verdict_t v;
	vb_proxy_input(px, conn, "carrier-b.example", msg, len, now, &v);
	vb_sdp_classify(msg, len);
	now += 1000;
	vb_proxy_tick(px, now);
	return 0;
}
