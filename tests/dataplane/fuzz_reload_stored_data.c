/*
 * libFuzzer target: StoredData, StoredDataSpecifier and StoredMetaData.  The
 * first byte picks the structure (bits 2-3) and the data model (bits 0-1, 0 =
 * unknown); whatever decodes exactly must re-encode to the same bytes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/reload.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "check failed: %s (line %d)\n", #c, __LINE__); abort(); } } while (0)

static int fixed_model(void *ctx, uint32_t kind)
{
	(void)kind;
	return *(const int *)ctx;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t out[RL_MAX_MESSAGE_SIZE * 2];
	rl_data_model_t model;
	vp_rd_t rd;
	vp_wr_t wr;
	int which, mi, e;

	if (size < 1 || size > RL_MAX_MESSAGE_SIZE)
		return 0;
	model = (rl_data_model_t)(data[0] & 3);
	mi = (int)model;
	which = (data[0] >> 2) & 3;
	data++;
	size--;
	vp_rd_init(&rd, data, size);
	vp_wr_init(&wr, out, sizeof(out));
	switch (which) {
	case 0: {
		rl_stored_data_t sd;
		if (rl_stored_data_decode(&rd, model, &sd) || vp_rd_done(&rd))
			return 0;
		CHECK(rl_stored_data_encode(&wr, &sd) == 0);
		if (model != RL_MODEL_UNKNOWN) {
			/* the signature input can always be built for a decoded value */
			static uint8_t sig[RL_MAX_MESSAGE_SIZE * 2];
			vp_wr_t sw;
			vp_wr_init(&sw, sig, sizeof(sig));
			CHECK(rl_sig_input_stored_data(&sw, data, 4, 1, &sd, &sd.sig.identity) == 0);
		}
		break;
	}
	case 1: {
		rl_specifier_t s;
		e = rl_specifier_decode(&rd, mi ? fixed_model : NULL, &mi, &s);
		if (e || vp_rd_done(&rd))
			return 0;
		CHECK(rl_specifier_encode(&wr, &s) == 0);
		break;
	}
	case 2: {
		rl_stored_meta_t m;
		if (rl_stored_meta_decode(&rd, model, &m) || vp_rd_done(&rd))
			return 0;
		CHECK(rl_stored_meta_encode(&wr, &m) == 0);
		break;
	}
	default: {
		rl_chord_leave_t l;
		if (rl_chord_leave_decode(data, size, &l))
			return 0;
		CHECK(rl_chord_leave_encode(&wr, &l) == 0);
		break;
	}
	}
	CHECK(vp_wr_len(&wr) == size);
	CHECK(memcmp(out, data, size) == 0);
	return 0;
}
