/* Error strings, hex, logging and clocks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "common/errcode.h"
#include "common/hex.h"
#include "common/log.h"
#include "common/clock.h"

static void strerror_covers_every_code(void **state)
{
	(void)state;
	assert_string_equal(vp_strerror(0), "success");
	assert_string_equal(vp_strerror(VP_ETRUNC), "truncated input");
	assert_string_equal(vp_errname(VP_EDATA_TOO_OLD), "VP_EDATA_TOO_OLD");
	assert_string_equal(vp_strerror(-1999), "unknown error");
	assert_string_equal(vp_strerror(-2), "No such file or directory");
#define CHECK(name, value, text) \
	assert_int_equal(name, value); \
	assert_string_equal(vp_strerror(name), text); \
	assert_string_equal(vp_errname(name), #name);
	VP_ERRORS(CHECK)
#undef CHECK
}

static void hex_codec(void **state)
{
	uint8_t out[8];
	char txt[17];
	size_t n;
	(void)state;
	assert_int_equal(vp_hex_decode("d2 45 4c 4F\n", 12, out, sizeof(out), &n), 0);
	assert_int_equal(n, 4);
	assert_memory_equal(out, "\xd2\x45\x4c\x4f", 4);
	assert_int_equal(vp_hex_encode(out, 4, txt, sizeof(txt)), 0);
	assert_string_equal(txt, "d2454c4f");
	assert_int_equal(vp_hex_decode("d24", 3, out, sizeof(out), &n), VP_EHEX);
	assert_int_equal(vp_hex_decode("zz", 2, out, sizeof(out), &n), VP_EHEX);
	assert_int_equal(vp_hex_decode("001122334455667788", 18, out, sizeof(out), &n), VP_ESPACE);
	assert_int_equal(vp_hex_encode(out, 8, txt, 16), VP_ESPACE);
}

static void log_line_format_and_threshold(void **state)
{
	char buf[512] = { 0 };
	FILE *f = fmemopen(buf, sizeof(buf), "w");
	vp_log_level_t lvl;
	(void)state;
	assert_non_null(f);
	vp_log_setup(VP_LOG_INFO, f);
	vp_log_info("test", "hello", "k=%d s=%s", 42, "x");
	vp_log_debug("test", "hidden", "k=%d", 1);
	fflush(f);
	assert_non_null(strstr(buf, "level=info mod=test event=hello k=42 s=x\n"));
	assert_null(strstr(buf, "hidden"));
	assert_int_equal(buf[strlen(buf) - 1], '\n');
	fclose(f);
	vp_log_setup(VP_LOG_INFO, stderr);
	assert_int_equal(vp_log_level_parse("debug", &lvl), 0);
	assert_int_equal(lvl, VP_LOG_DEBUG);
	assert_int_equal(vp_log_level_parse("loud", &lvl), VP_EINVAL);
}

static void clocks(void **state)
{
	uint64_t t = 1234;
	vp_clock_t manual = { vp_clock_manual_now, &t };
	uint64_t a, b;
	(void)state;
	assert_true(vp_clock_now_ms(&manual) == 1234);
	t = 5678;
	assert_true(vp_clock_now_ms(&manual) == 5678);
	/* 2020-01-01 < now < 2100-01-01 */
	assert_true(vp_clock_now_ms(NULL) > 1577836800000ull);
	assert_true(vp_clock_now_ms(&vp_clock_system) < 4102444800000ull);
	a = vp_time_mono_ns();
	b = vp_time_mono_ns();
	assert_true(b >= a);
	/* Thread CPU time moves forward while this thread computes. */
	a = vp_time_thread_cpu_ns();
	for (volatile uint64_t spin = 0; vp_time_thread_cpu_ns() - a < 1000000u; spin++)
		;
	assert_true(vp_time_thread_cpu_ns() - a >= 1000000u);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(strerror_covers_every_code),
		cmocka_unit_test(hex_codec),
		cmocka_unit_test(log_line_format_and_threshold),
		cmocka_unit_test(clocks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
