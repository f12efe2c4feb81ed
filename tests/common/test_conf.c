#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/conf.h"
#include "common/errcode.h"

static vp_conf_t *parse(const char *text, int *err, vp_conf_err_t *e)
{
	return vp_conf_parse(text, strlen(text), err, e);
}

static void sections_values_comments_quotes(void **state)
{
	const char *text =
		"# top comment\n"
		"log_level = debug\n"
		"[overlay]\n"
		"  name = vipr.example.net   # trailing comment\n"
		"bootstrap=127.0.0.1:6084, 127.0.0.1:6085\n"
		"\n"
		"[pvp]\r\n"
		"greeting = \"a # kept\"  # comment\n"
		"empty =\n";
	vp_conf_err_t e;
	int err = 1;
	vp_conf_t *c = parse(text, &err, &e);
	(void)state;
	assert_non_null(c);
	assert_int_equal(err, 0);
	assert_string_equal(vp_conf_get(c, "", "log_level"), "debug");
	assert_string_equal(vp_conf_get(c, NULL, "log_level"), "debug");
	assert_string_equal(vp_conf_get(c, "overlay", "name"), "vipr.example.net");
	assert_string_equal(vp_conf_get(c, "overlay", "bootstrap"), "127.0.0.1:6084, 127.0.0.1:6085");
	assert_string_equal(vp_conf_get(c, "pvp", "greeting"), "a # kept");
	assert_string_equal(vp_conf_get(c, "pvp", "empty"), "");
	assert_null(vp_conf_get(c, "pvp", "name"));
	assert_string_equal(vp_conf_str(c, "pvp", "missing", "dflt"), "dflt");
	vp_conf_free(c);
}

static void syntax_errors_name_the_line(void **state)
{
	static const struct { const char *text; int line; const char *needle; } cases[] = {
		{ "[a]\nk = 1\nk = 2\n", 3, "set twice (first on line 2)" },
		{ "[a\n", 1, "without ']'" },
		{ "a = 1\nnot a pair\n", 2, "expected 'key = value'" },
		{ "[a]\nk = \"open\n", 2, "unterminated" },
		{ "[a b]\n", 1, "invalid section name" },
		{ "[a]\nbad key = 1\n", 2, "invalid key name" },
		{ "[a] x\n", 1, "text after the section header" },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		vp_conf_err_t e;
		int err = 0;
		vp_conf_t *c = parse(cases[i].text, &err, &e);
		assert_null(c);
		assert_int_equal(err, VP_ECONFIG);
		assert_int_equal(e.line, cases[i].line);
		if (!strstr(e.msg, cases[i].needle))
			fail_msg("case %zu: '%s' lacks '%s'", i, e.msg, cases[i].needle);
	}
}

static void typed_lookups(void **state)
{
	const char *text = "[t]\nn = 42\nhex = 0x10\nneg = -1\nbig = 99999999999999999999999\n"
	                   "word = ten\non = yes\noff = 0\nmaybe = perhaps\n"
	                   "d1 = 48h\nd2 = 500ms\nd3 = 30\nd4 = 2 d\nd5 = 3 weeks\n";
	vp_conf_err_t e;
	int err;
	uint64_t v;
	bool b;
	vp_conf_t *c = parse(text, &err, &e);
	(void)state;
	assert_non_null(c);
	assert_int_equal(vp_conf_u64(c, "t", "n", 0, 0, 100, &v, &e), 0);
	assert_true(v == 42);
	assert_int_equal(vp_conf_u64(c, "t", "hex", 0, 0, 100, &v, &e), 0);
	assert_true(v == 16);
	assert_int_equal(vp_conf_u64(c, "t", "absent", 7, 0, 100, &v, &e), 0);
	assert_true(v == 7);
	assert_int_equal(vp_conf_u64(c, "t", "n", 0, 0, 10, &v, &e), VP_ECONFIG);
	assert_int_equal(e.line, 2);
	assert_non_null(strstr(e.msg, "outside 0..10"));
	assert_int_equal(vp_conf_u64(c, "t", "neg", 0, 0, 100, &v, &e), VP_ECONFIG);
	assert_int_equal(vp_conf_u64(c, "t", "big", 0, 0, UINT64_MAX, &v, &e), VP_ECONFIG);
	assert_int_equal(vp_conf_u64(c, "t", "word", 0, 0, 100, &v, &e), VP_ECONFIG);
	assert_int_equal(vp_conf_bool(c, "t", "on", false, &b, &e), 0);
	assert_true(b);
	assert_int_equal(vp_conf_bool(c, "t", "off", true, &b, &e), 0);
	assert_false(b);
	assert_int_equal(vp_conf_bool(c, "t", "maybe", true, &b, &e), VP_ECONFIG);
	assert_int_equal(vp_conf_duration_ms(c, "t", "d1", 0, 0, UINT64_MAX, &v, &e), 0);
	assert_true(v == 48ull * 3600 * 1000);
	assert_int_equal(vp_conf_duration_ms(c, "t", "d2", 0, 0, UINT64_MAX, &v, &e), 0);
	assert_true(v == 500);
	assert_int_equal(vp_conf_duration_ms(c, "t", "d3", 0, 0, UINT64_MAX, &v, &e), 0);
	assert_true(v == 30000);
	assert_int_equal(vp_conf_duration_ms(c, "t", "d4", 0, 0, UINT64_MAX, &v, &e), 0);
	assert_true(v == 2ull * 86400 * 1000);
	assert_int_equal(vp_conf_duration_ms(c, "t", "d5", 0, 0, UINT64_MAX, &v, &e), VP_ECONFIG);
	assert_non_null(strstr(e.msg, "not a duration"));
	assert_int_equal(vp_conf_duration_ms(c, "t", "d1", 0, 0, 1000, &v, &e), VP_ECONFIG);
	vp_conf_free(c);
}

static void unknown_keys_and_sections(void **state)
{
	const char *text = "[pvp]\nvcr_retention = 48h\nvcr_retension = 24h\n[pvq]\nx = 1\n";
	static const char *const pvp_keys[] = { "vcr_retention", NULL };
	static const char *const sections[] = { "pvp", NULL };
	vp_conf_err_t e;
	int err;
	vp_conf_t *c = parse(text, &err, &e);
	(void)state;
	assert_non_null(c);
	assert_int_equal(vp_conf_check_keys(c, "pvp", pvp_keys, &e), VP_ECONFIG);
	assert_int_equal(e.line, 3);
	assert_non_null(strstr(e.msg, "vcr_retension: unknown key"));
	assert_int_equal(vp_conf_check_keys(c, NULL, sections, &e), VP_ECONFIG);
	assert_int_equal(e.line, 5);
	assert_non_null(strstr(e.msg, "[pvq]: unknown section"));
	vp_conf_free(c);
}

static void load_from_file(void **state)
{
	char path[] = "/tmp/vp_conf_testXXXXXX";
	int fd = mkstemp(path), err = 0;
	vp_conf_err_t e;
	vp_conf_t *c;
	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "[a]\nb = c\n", 10), 10);
	close(fd);
	c = vp_conf_load(path, &err, &e);
	assert_non_null(c);
	assert_string_equal(vp_conf_get(c, "a", "b"), "c");
	vp_conf_free(c);
	unlink(path);
	assert_null(vp_conf_load(path, &err, &e));
	assert_int_equal(err, VP_EIO);
	assert_non_null(strstr(e.msg, "cannot open"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(sections_values_comments_quotes),
		cmocka_unit_test(syntax_errors_name_the_line),
		cmocka_unit_test(typed_lookups),
		cmocka_unit_test(unknown_keys_and_sections),
		cmocka_unit_test(load_from_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
