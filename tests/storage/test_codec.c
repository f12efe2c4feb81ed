/* The ViPR kind's key/value layout and the on-disk record codec. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "common/errcode.h"
#include "storage/record.h"
#include "storage/vipr_kind.h"

static void vipr_key_layout(void **state)
{
	st_vipr_key_t k, d;
	uint8_t out[ST_VIPR_KEY_LEN];
	(void)state;
	memset(k.node.b, 0xAB, 16);
	k.vservice_id = 0x01020304;
	st_vipr_key_encode(&k, out);
	assert_memory_equal(out, "\xab\xab\xab\xab\xab\xab\xab\xab\xab\xab\xab\xab\xab\xab\xab\xab"
	                         "\x01\x02\x03\x04", 20);
	assert_int_equal(st_vipr_key_decode(out, 20, &d), 0);
	assert_true(vp_id_eq(&d.node, &k.node));
	assert_int_equal(d.vservice_id, 0x01020304);
	assert_int_equal(st_vipr_key_decode(out, 19, &d), VP_EMALFORMED);
	assert_int_equal(st_vipr_key_decode(out, 16, &d), VP_EMALFORMED);
}

static void vipr_value_layout(void **state)
{
	st_vipr_value_t v = { .vservice_id = 9, .pvp_methods = ST_VIPR_PVP_WITH_CALLER_ID, /* 0x02 */
	                      .reserved = (const uint8_t *)"xy", .reserved_len = 2 };
	st_vipr_value_t d;
	uint8_t out[ST_VIPR_VALUE_MAX_LEN];
	size_t len;
	(void)state;
	memset(v.contact.b, 0x11, 16);
	assert_int_equal(st_vipr_value_encode(&v, out, sizeof(out), &len), 0);
	assert_int_equal(len, 25);
	assert_memory_equal(out, "\x01\x11\x11\x11\x11\x11\x11\x11\x11\x11\x11\x11\x11\x11\x11\x11\x11"
	                         "\x00\x00\x00\x09\x02\x02xy", 25);
	assert_int_equal(st_vipr_value_decode(out, len, &d), 0);
	assert_true(vp_id_eq(&d.contact, &v.contact));
	assert_int_equal(d.vservice_id, 9);
	assert_int_equal(d.pvp_methods, 2);
	assert_int_equal(d.reserved_len, 2);
	assert_memory_equal(d.reserved, "xy", 2);
	assert_int_equal(st_vipr_value_decode(out, len - 1, &d), VP_ETRUNC);
	out[len] = 0;
	assert_int_equal(st_vipr_value_decode(out, len + 1, &d), VP_ETRAILING);
	out[0] = 2;
	assert_int_equal(st_vipr_value_decode(out, len, &d), VP_EUNSUPPORTED);
	assert_int_equal(st_vipr_value_decode(out, 0, &d), VP_ETRUNC);
	assert_int_equal(st_vipr_value_encode(&v, out, 24, &len), VP_ESPACE);
	/* The minimum (no reserved bytes) is 23 bytes. */
	v.reserved_len = 0;
	v.reserved = NULL;
	assert_int_equal(st_vipr_value_encode(&v, out, sizeof(out), &len), 0);
	assert_int_equal(len, ST_VIPR_VALUE_MIN_LEN);
}

static void record_round_trip(void **state)
{
	st_entry_t e[2];
	st_rec_t rec = { .model = ST_MODEL_DICTIONARY, .generation = 77, .e = e, .n = 2, .cap = 2 };
	st_rec_t d = { 0 };
	uint8_t buf[512];
	size_t len;
	(void)state;
	memset(e, 0, sizeof(e));
	e[0] = (st_entry_t){ .key = (const uint8_t *)"a", .key_len = 1, .storage_time = 5,
		.lifetime = 60, .exists = true, .value = (const uint8_t *)"v1", .value_len = 2,
		.sig = (const uint8_t *)"S", .sig_len = 1, .expires_ms = 1000, .replica_number = 1 };
	e[1] = (st_entry_t){ .key = (const uint8_t *)"ab", .key_len = 2, .storage_time = 6,
		.lifetime = 61, .exists = false, .expires_ms = 900 };
	memset(e[0].owner.b, 7, 16);
	assert_int_equal(st_rec_encode(&rec, buf, sizeof(buf), &len), 0);
	assert_int_equal(len, st_rec_size(&rec));
	assert_int_equal(len, ST_REC_HDR_LEN + 2 * ST_REC_ENTRY_FIXED + 1 + 2 + 1 + 2);
	assert_int_equal(st_rec_decode(buf, len, &d), 0);
	assert_int_equal(d.n, 2);
	assert_true(d.generation == 77);
	assert_int_equal(d.e[0].key_len, 1);
	assert_memory_equal(d.e[0].value, "v1", 2);
	assert_int_equal(d.e[0].replica_number, 1);
	assert_true(d.e[0].owner.b[15] == 7);
	assert_false(d.e[1].exists);
	assert_true(st_rec_min_expiry(&d) == 900);
	/* Every truncation is an error, never a crash. */
	for (size_t cut = 0; cut < len; cut++)
		assert_int_not_equal(st_rec_decode(buf, cut, &d), 0);
	st_rec_free(&d);
}

static void record_rejects_unsorted_or_bad_keys(void **state)
{
	st_entry_t e[2];
	st_rec_t rec = { .model = ST_MODEL_DICTIONARY, .e = e, .n = 2, .cap = 2 };
	st_rec_t d = { 0 };
	uint8_t buf[512];
	size_t len;
	(void)state;
	memset(e, 0, sizeof(e));
	e[0].key = (const uint8_t *)"b";
	e[0].key_len = 1;
	e[1].key = (const uint8_t *)"a";
	e[1].key_len = 1;
	assert_int_equal(st_rec_encode(&rec, buf, sizeof(buf), &len), 0);
	assert_int_equal(st_rec_decode(buf, len, &d), VP_EMALFORMED);
	e[1].key = (const uint8_t *)"b"; /* duplicate */
	assert_int_equal(st_rec_encode(&rec, buf, sizeof(buf), &len), 0);
	assert_int_equal(st_rec_decode(buf, len, &d), VP_EMALFORMED);
	/* A single record with two entries is corrupt. */
	rec.model = ST_MODEL_SINGLE;
	assert_int_equal(st_rec_encode(&rec, buf, sizeof(buf), &len), 0);
	assert_int_equal(st_rec_decode(buf, len, &d), VP_EMALFORMED);
	/* Unknown format byte. */
	rec.n = 1;
	assert_int_equal(st_rec_encode(&rec, buf, sizeof(buf), &len), 0);
	buf[0] = 9;
	assert_int_equal(st_rec_decode(buf, len, &d), VP_EMALFORMED);
	/* A huge count cannot make the decoder allocate. */
	buf[0] = ST_REC_FORMAT;
	buf[10] = buf[11] = buf[12] = buf[13] = 0xFF;
	assert_int_equal(st_rec_decode(buf, len, &d), VP_ETRUNC);
	st_rec_free(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(vipr_key_layout),
		cmocka_unit_test(vipr_value_layout),
		cmocka_unit_test(record_round_trip),
		cmocka_unit_test(record_rejects_unsorted_or_bad_keys),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
