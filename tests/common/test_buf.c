#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/buf.h"

static void read_integers_big_endian(void **state)
{
	static const uint8_t in[] = { 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a,
	                              0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12 };
	vp_rd_t rd;
	uint8_t a;
	uint16_t b;
	uint32_t c, d;
	uint64_t e;
	(void)state;
	vp_rd_init(&rd, in, sizeof(in));
	assert_int_equal(vp_rd_u8(&rd, &a), 0);
	assert_int_equal(vp_rd_u16(&rd, &b), 0);
	assert_int_equal(vp_rd_u24(&rd, &c), 0);
	assert_int_equal(vp_rd_u32(&rd, &d), 0);
	assert_int_equal(vp_rd_u64(&rd, &e), 0);
	assert_int_equal(a, 0x01);
	assert_int_equal(b, 0x0203);
	assert_int_equal(c, 0x040506);
	assert_int_equal(d, 0x0708090a);
	assert_true(e == 0x0b0c0d0e0f101112ull);
	assert_int_equal(vp_rd_done(&rd), 0);
}

static void overrun_is_sticky_and_zeroes(void **state)
{
	static const uint8_t in[] = { 0xff, 0xee, 0xdd };
	vp_rd_t rd;
	uint32_t v = 123;
	uint8_t b = 9;
	(void)state;
	vp_rd_init(&rd, in, sizeof(in));
	assert_int_equal(vp_rd_u32(&rd, &v), VP_ETRUNC);
	assert_int_equal(v, 0);
	/* Even a read that would fit fails once the reader is in error. */
	assert_int_equal(vp_rd_u8(&rd, &b), VP_ETRUNC);
	assert_int_equal(b, 0);
	assert_int_equal(vp_rd_left(&rd), 0);
	assert_int_equal(vp_rd_done(&rd), VP_ETRUNC);
}

static void vector_overrunning_length_rejected(void **state)
{
	static const uint8_t in[] = { 0x00, 0x05, 'a', 'b', 'c' };
	vp_rd_t rd, sub;
	(void)state;
	vp_rd_init(&rd, in, sizeof(in));
	assert_int_equal(vp_rd_vec(&rd, 2, &sub), VP_ETRUNC);
	assert_int_equal(vp_rd_left(&sub), 0);
}

static void vector_and_trailing(void **state)
{
	static const uint8_t in[] = { 0x03, 'a', 'b', 'c', 0x00 };
	vp_rd_t rd, sub;
	const uint8_t *p;
	size_t n;
	(void)state;
	vp_rd_init(&rd, in, sizeof(in));
	assert_int_equal(vp_rd_vec(&rd, 1, &sub), 0);
	assert_int_equal(vp_rd_left(&sub), 3);
	assert_int_equal(vp_rd_bytes(&sub, 3, &p), 0);
	assert_ptr_equal(p, in + 1); /* zero-copy */
	assert_int_equal(vp_rd_done(&sub), 0);
	assert_int_equal(vp_rd_done(&rd), VP_ETRAILING);

	vp_rd_init(&rd, in, 4);
	assert_int_equal(vp_rd_vec_bytes(&rd, 1, &p, &n), 0);
	assert_int_equal(n, 3);
	assert_memory_equal(p, "abc", 3);
	assert_int_equal(vp_rd_done(&rd), 0);
}

static void writer_round_trip(void **state)
{
	uint8_t buf[32];
	vp_wr_t wr;
	vp_rd_t rd;
	uint64_t v64;
	uint32_t v24;
	size_t mark;
	(void)state;
	vp_wr_init(&wr, buf, sizeof(buf));
	vp_wr_u64(&wr, 0x1122334455667788ull);
	vp_wr_u24(&wr, 0xabcdef);
	mark = vp_wr_vec_begin(&wr, 2);
	vp_wr_bytes(&wr, "hello", 5);
	assert_int_equal(vp_wr_vec_end(&wr, mark, 2), 0);
	assert_int_equal(wr.err, 0);
	assert_int_equal(vp_wr_len(&wr), 8 + 3 + 2 + 5);
	assert_int_equal(buf[11], 0x00);
	assert_int_equal(buf[12], 0x05);

	vp_rd_init(&rd, buf, vp_wr_len(&wr));
	vp_rd_u64(&rd, &v64);
	vp_rd_u24(&rd, &v24);
	assert_true(v64 == 0x1122334455667788ull);
	assert_int_equal(v24, 0xabcdef);
}

static void writer_space_and_range(void **state)
{
	uint8_t buf[4], big[300] = { 0 };
	static const uint8_t src[300];
	vp_wr_t wr;
	size_t mark;
	(void)state;
	vp_wr_init(&wr, buf, sizeof(buf));
	assert_int_equal(vp_wr_u32(&wr, 1), 0);
	assert_int_equal(vp_wr_u8(&wr, 1), VP_ESPACE);
	assert_int_equal(vp_wr_u8(&wr, 1), VP_ESPACE); /* sticky */
	assert_int_equal(vp_wr_len(&wr), 4);

	vp_wr_init(&wr, big, sizeof(big));
	assert_int_equal(vp_wr_vec_bytes(&wr, 1, src, 256), VP_ERANGE);
	vp_wr_init(&wr, big, sizeof(big));
	mark = vp_wr_vec_begin(&wr, 1);
	vp_wr_bytes(&wr, src, 256);
	assert_int_equal(vp_wr_vec_end(&wr, mark, 1), VP_ERANGE);
	vp_wr_init(&wr, big, sizeof(big));
	assert_int_equal(vp_wr_u24(&wr, 0x1000000), VP_ERANGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(read_integers_big_endian),
		cmocka_unit_test(overrun_is_sticky_and_zeroes),
		cmocka_unit_test(vector_overrunning_length_rejected),
		cmocka_unit_test(vector_and_trailing),
		cmocka_unit_test(writer_round_trip),
		cmocka_unit_test(writer_space_and_range),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
