/*
 * libFuzzer target: link frames.  A frame that decodes must have the length
 * rl_frame_peek announced, re-encode to the same bytes, and a DATA frame's
 * message must round-trip when it decodes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/reload.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "check failed: %s (line %d)\n", #c, __LINE__); abort(); } } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t out[RL_FRAME_DATA_HDR_LEN + RL_MAX_MESSAGE_SIZE + 64];
	rl_frame_t f;
	rl_message_t m;
	vp_wr_t wr;
	size_t fl = 0;
	int ep = rl_frame_peek(data, size, &fl);

	if (rl_frame_decode(data, size, &f) != 0) {
		/* a frame of exactly the announced length always decodes */
		CHECK(!(ep == 0 && fl == size));
		return 0;
	}
	CHECK(ep == 0 || ep == VP_ETOOBIG);
	if (ep == 0)
		CHECK(fl == size);
	vp_wr_init(&wr, out, sizeof(out));
	CHECK(rl_frame_encode(&wr, &f) == 0);
	CHECK(vp_wr_len(&wr) == size);
	CHECK(memcmp(out, data, size) == 0);
	if (f.type == RL_FRAME_DATA && rl_msg_decode(f.message.p, f.message.len, &m) == 0) {
		vp_wr_init(&wr, out, sizeof(out));
		vp_wr_u8(&wr, RL_FRAME_DATA);
		vp_wr_u32(&wr, f.sequence);
		{
			size_t mark = vp_wr_vec_begin(&wr, 3);
			CHECK(rl_msg_encode(&wr, &m) == 0);
			CHECK(vp_wr_vec_end(&wr, mark, 3) == 0);
		}
		CHECK(vp_wr_len(&wr) == size);
		CHECK(memcmp(out, data, size) == 0);
	}
	return 0;
}
