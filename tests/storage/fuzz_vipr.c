/* libFuzzer: the ViPR key and value decoders never crash, and what they accept
 * re-encodes to the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "storage/vipr_kind.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	st_vipr_value_t v;
	st_vipr_key_t k;
	uint8_t out[ST_VIPR_VALUE_MAX_LEN];
	size_t len;
	if (st_vipr_value_decode(data, size, &v) == 0) {
		if (st_vipr_value_encode(&v, out, sizeof(out), &len) || len != size ||
		    memcmp(out, data, size) != 0)
			abort();
	}
	if (st_vipr_key_decode(data, size, &k) == 0) {
		st_vipr_key_encode(&k, out);
		if (size != ST_VIPR_KEY_LEN || memcmp(out, data, size) != 0)
			abort();
	}
	return 0;
}
