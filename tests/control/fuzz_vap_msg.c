/* libFuzzer target: the VAP decoder and every attribute reader must never crash. */
#include <stddef.h>
#include <stdint.h>

#include "control/vap/vap_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t key[VAP_KEY_LEN] = { 1, 2, 3 };
	vap_msg_t m;
	vap_attr_iter_t it;
	vap_attr_t a;
	uint16_t unk[8];
	long fl = vap_frame_len(data, size);
	(void)fl;
	if (vap_msg_parse(data, size, &m))
		return 0;
	(void)vap_msg_unknown_required(&m, unk, 8);
	(void)vap_msg_check_integrity(&m, key, sizeof(key));
	vap_attr_iter_init(&it, &m);
	while (vap_attr_next(&it, &a)) {
		char s[VAP_MAX_URI];
		char num[VP_E164_BUFLEN];
		uint32_t u32;
		uint64_t u64;
		int code;
		uint8_t svc, op;
		vap_vcr_t vcr;
		vap_range_t r;
		(void)vap_attr_str(&a, s, sizeof(s));
		(void)vap_attr_number(&a, num);
		(void)vap_attr_u32(&a, &u32);
		(void)vap_attr_u64(&a, &u64);
		(void)vap_attr_error(&a, &code, s, sizeof(s));
		(void)vap_attr_action(&a, &svc, &op);
		(void)vap_attr_vcr(&a, &vcr);
		if (vap_attr_range(&a, &r) == 0 && vap_range_count(&r) > 0)
			(void)vap_range_number(&r, vap_range_count(&r) - 1, num);
	}
	return 0;
}
