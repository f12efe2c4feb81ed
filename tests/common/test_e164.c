#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/e164.h"
#include "common/errcode.h"

static void expect(const vp_e164_conf_t *conf, const char *in, int err, const char *want)
{
	char out[VP_E164_BUFLEN];
	int r = vp_e164_normalize(in, conf, out);
	if (r != err)
		fail_msg("'%s': got %s, want %s", in, vp_errname(r), vp_errname(err));
	if (!err)
		assert_string_equal(out, want);
}

static void international_forms(void **state)
{
	(void)state;
	expect(NULL, "+1 408 555-5432", 0, "+14085555432");
	expect(NULL, "+1 (408) 555.5432", 0, "+14085555432");
	expect(NULL, "0044 20 7946 0000", 0, "+442079460000");
	expect(NULL, "  +44/20/7946/0000  ", 0, "+442079460000");
}

static void national_with_default_country(void **state)
{
	vp_e164_conf_t us, uk;
	(void)state;
	assert_int_equal(vp_e164_conf_init(&us, "1"), 0);
	assert_int_equal(vp_e164_conf_init(&uk, "44"), 0);
	expect(&us, "(408) 555 5432", 0, "+14085555432");
	expect(&us, "1 408 555 5432", 0, "+14085555432");   /* NANP trunk prefix */
	expect(&us, "011 44 20 7946 0000", 0, "+442079460000"); /* NANP intl prefix */
	expect(&us, "0044 20 7946 0000", 0, "+442079460000");
	expect(&uk, "020 7946 0000", 0, "+442079460000");    /* trunk 0 stripped */
	expect(&uk, "0044 20 7946 0000", 0, "+442079460000");
	expect(&uk, "+1 408 555 5432", 0, "+14085555432");
}

static void errors(void **state)
{
	vp_e164_conf_t us, none;
	(void)state;
	vp_e164_conf_init(&us, "1");
	vp_e164_conf_init(&none, NULL);
	expect(&us, "", VP_E164_EMPTY, NULL);
	expect(&us, "   ", VP_E164_EMPTY, NULL);
	expect(&us, NULL, VP_E164_EMPTY, NULL);
	expect(&us, "1-800-FLOWERS", VP_E164_CHAR, NULL);
	expect(&us, "+1 408 555 54x2", VP_E164_CHAR, NULL);
	expect(&us, "1 408 +555", VP_E164_CHAR, NULL);        /* '+' after digits */
	expect(&us, "++14085555432", VP_E164_CHAR, NULL);
	expect(&us, "+1 408", VP_E164_SHORT, NULL);
	expect(&us, "+", VP_E164_SHORT, NULL);
	expect(&us, "+1234567890123456", VP_E164_LONG, NULL); /* 16 digits */
	expect(&us, "+123456789012345678901234567890123456", VP_E164_LONG, NULL);
	expect(&none, "(408) 555 5432", VP_E164_NOCC, NULL);
	expect(NULL, "4085555432", VP_E164_NOCC, NULL);
	expect(&us, "+0 408 555 5432", VP_E164_CC, NULL);
	expect(&us, "000 408 555 5432", VP_E164_CC, NULL);
	assert_int_equal(vp_e164_conf_init(&us, "0"), VP_E164_CC);
	assert_int_equal(vp_e164_conf_init(&us, "1234"), VP_E164_CC);
	assert_int_equal(vp_e164_conf_init(&us, "4a"), VP_E164_CC);
}

static void boundaries(void **state)
{
	(void)state;
	expect(NULL, "+123456789012345", 0, "+123456789012345"); /* 15 digits */
	expect(NULL, "+6834002", 0, "+6834002");                 /* 7 digits */
	expect(NULL, "+683400", VP_E164_SHORT, NULL);
}

static void canonical_check(void **state)
{
	(void)state;
	assert_true(vp_e164_is_canonical("+14085555432"));
	assert_false(vp_e164_is_canonical("14085555432"));
	assert_false(vp_e164_is_canonical("+1 4085555432"));
	assert_false(vp_e164_is_canonical("+04085555432"));
	assert_false(vp_e164_is_canonical("+1408"));
	assert_false(vp_e164_is_canonical(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(international_forms),
		cmocka_unit_test(national_with_default_country),
		cmocka_unit_test(errors),
		cmocka_unit_test(boundaries),
		cmocka_unit_test(canonical_check),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
