/*
 * libFuzzer target: message bodies.  The first two bytes pick the message
 * code; the rest is the body.  Whatever decodes (deep or framing-only) must
 * re-encode to the same bytes and, wrapped in a message, print as JSON.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/reload.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "check failed: %s (line %d)\n", #c, __LINE__); abort(); } } while (0)

static FILE *devnull;

/* Model resolver that knows more kinds than the built-in one, to reach every model. */
static int any_model(void *ctx, uint32_t kind)
{
	(void)ctx;
	return (int)(kind % 4); /* 0 = unknown */
}

static void round_trip(uint16_t code, const uint8_t *p, size_t n, rl_model_fn fn)
{
	static uint8_t out[RL_MAX_MESSAGE_SIZE + 64];
	rl_body_t b;
	vp_wr_t wr;

	if (rl_body_decode(code, p, n, fn, NULL, &b))
		return;
	vp_wr_init(&wr, out, sizeof(out));
	CHECK(rl_body_encode(&wr, &b) == 0);
	CHECK(vp_wr_len(&wr) == n);
	CHECK(memcmp(out, p, n) == 0);
	/* a framing-only decode accepts whatever a deep one did */
	CHECK(rl_body_decode(code, p, n, NULL, NULL, &b) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t msg[RL_MAX_MESSAGE_SIZE + 64];
	uint16_t code;
	rl_message_t m;
	rl_body_t b;
	vp_wr_t wr;

	if (size < 2 || size > RL_MAX_MESSAGE_SIZE - 256)
		return 0;
	if (!devnull)
		devnull = fopen("/dev/null", "w");
	code = (uint16_t)(data[0] << 8 | data[1]);
	data += 2;
	size -= 2;
	round_trip(code, data, size, rl_model_builtin);
	round_trip(code, data, size, any_model);
	round_trip(code, data, size, NULL);
	if (rl_body_decode(code, data, size, any_model, NULL, &b) == 0) {
		memset(&m, 0, sizeof(m));
		m.hdr.version = RL_VERSION;
		m.hdr.fragment = RL_FRAG_UNFRAGMENTED;
		m.contents.code = code;
		m.contents.body.p = data;
		m.contents.body.len = (uint32_t)size;
		m.sec.sig.identity.type = RL_SIGNER_NONE;
		vp_wr_init(&wr, msg, sizeof(msg));
		CHECK(rl_msg_encode(&wr, &m) == 0);
		CHECK(rl_json_message(devnull, msg, vp_wr_len(&wr), any_model, NULL) == 0);
	}
	return 0;
}
