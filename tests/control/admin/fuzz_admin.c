/* libFuzzer target: the admin protocol's request and answer parsers (control/admin) must never crash,
 * leak or accept a request that does not encode back to a request the parser accepts again. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "control/admin/admin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	adm_request_t r;
	char unknown[ADM_CMD_NAME_MAX + 1];
	if (adm_request_parse(data, size, &r, unknown) == 0) {
		uint8_t *f;
		size_t len;
		adm_request_t again;
		if (adm_request_encode(r.cmd, r.arg, &f, &len) != 0 || adm_request_parse(f + 4, len - 4, &again, NULL) != 0)
			abort();
		adm_request_clear(&again);
		free(f);
	}
	adm_request_clear(&r);
	adm_answer_t a;
	if (adm_answer_parse(data, size, &a) == 0)
		adm_answer_clear(&a);
	return 0;
}
