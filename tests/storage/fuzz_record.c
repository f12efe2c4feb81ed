/* libFuzzer: the on-disk record decoder never crashes, and whatever it accepts
 * re-encodes to the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "storage/record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	st_rec_t rec = { 0 };
	if (st_rec_decode(data, size, &rec) == 0) {
		size_t n = st_rec_size(&rec), len = 0;
		uint8_t *out = malloc(n ? n : 1);
		if (!out || n != size || st_rec_encode(&rec, out, n, &len) || len != size ||
		    memcmp(out, data, size) != 0)
			abort();
		free(out);
	}
	st_rec_free(&rec);
	return 0;
}
