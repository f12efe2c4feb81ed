#include "common/e164.h"

#include <string.h>

#include "common/errcode.h"

/* Digits collected before the length is judged; anything longer is an error anyway. */
#define SCRATCH_DIGITS 32

static int is_sep(char c)
{
	return c == ' ' || c == '\t' || c == '-' || c == '.' || c == '/' || c == '(' || c == ')';
}

static int all_digits(const char *s)
{
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return 0;
	return 1;
}

int vp_e164_conf_init(vp_e164_conf_t *conf, const char *country_code)
{
	memset(conf, 0, sizeof(*conf));
	if (!country_code || !*country_code) {
		strcpy(conf->intl_prefix, "00");
		return 0;
	}
	if (strlen(country_code) > 3 || !all_digits(country_code) || country_code[0] == '0')
		return VP_E164_CC;
	strcpy(conf->country_code, country_code);
	if (strcmp(country_code, "1") == 0) {
		strcpy(conf->intl_prefix, "011");
		strcpy(conf->trunk_prefix, "1");
	} else {
		strcpy(conf->intl_prefix, "00");
		strcpy(conf->trunk_prefix, "0");
	}
	return 0;
}

static int has_prefix(const char *s, const char *p)
{
	return *p && strncmp(s, p, strlen(p)) == 0;
}

static int finish(const char *digits, size_t n, char out[VP_E164_BUFLEN])
{
	if (n < VP_E164_MIN_DIGITS)
		return VP_E164_SHORT;
	if (n > VP_E164_MAX_DIGITS)
		return VP_E164_LONG;
	if (digits[0] == '0')
		return VP_E164_CC;
	out[0] = '+';
	memcpy(out + 1, digits, n);
	out[n + 1] = '\0';
	return 0;
}

int vp_e164_normalize(const char *in, const vp_e164_conf_t *conf, char out[VP_E164_BUFLEN])
{
	char d[SCRATCH_DIGITS + 1];
	char full[SCRATCH_DIGITS + 4];
	size_t n = 0;
	int plus = 0, seen = 0;
	const char *p;

	out[0] = '\0';
	if (!in)
		return VP_E164_EMPTY;
	for (p = in; *p; p++) {
		char c = *p;
		if (c >= '0' && c <= '9') {
			if (n == SCRATCH_DIGITS)
				return VP_E164_LONG;
			d[n++] = c;
			seen = 1;
		} else if (c == '+' && !seen && !plus) {
			plus = 1;
			seen = 1;
		} else if (!is_sep(c)) {
			return VP_E164_CHAR;
		}
	}
	d[n] = '\0';
	if (n == 0)
		return plus ? VP_E164_SHORT : VP_E164_EMPTY;
	if (plus)
		return finish(d, n, out);

	/* International dialling prefix: the configured one first (it may be longer). */
	if (conf && has_prefix(d, conf->intl_prefix))
		return finish(d + strlen(conf->intl_prefix), n - strlen(conf->intl_prefix), out);
	if (has_prefix(d, "00"))
		return finish(d + 2, n - 2, out);

	/* National number. */
	if (!conf || !conf->country_code[0])
		return VP_E164_NOCC;
	p = d;
	if (has_prefix(d, conf->trunk_prefix))
		p += strlen(conf->trunk_prefix);
	strcpy(full, conf->country_code);
	strcat(full, p);
	return finish(full, strlen(full), out);
}

int vp_e164_is_canonical(const char *s)
{
	size_t n;
	if (!s || s[0] != '+' || !all_digits(s + 1))
		return 0;
	n = strlen(s + 1);
	return n >= VP_E164_MIN_DIGITS && n <= VP_E164_MAX_DIGITS && s[1] != '0';
}
