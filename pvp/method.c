/*
 * pvp/method.c - credential derivation for PVP methods "a" and "b".
 */
#include "pvp/method.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "common/errcode.h"
#include "common/hex.h"

static const char sel_label[] = "vipr-pvp-sel-v1";

char pvp_method_letter(pvp_method_t m)
{
	return m == PVP_METHOD_A ? 'a' : 'b';
}

int pvp_method_priority(pvp_method_t m)
{
	return m == PVP_METHOD_A ? 100 : 0;
}

int pvp_selector(const char *called, uint32_t bucket, uint8_t sel[PVP_SEL_LEN])
{
	uint8_t salt[sizeof(sel_label) - 1 + 4];
	memcpy(salt, sel_label, sizeof(sel_label) - 1);
	salt[sizeof(sel_label) - 1] = (uint8_t)(bucket >> 24);
	salt[sizeof(sel_label)] = (uint8_t)(bucket >> 16);
	salt[sizeof(sel_label) + 1] = (uint8_t)(bucket >> 8);
	salt[sizeof(sel_label) + 2] = (uint8_t)bucket;
	if (!vp_e164_is_canonical(called))
		return VP_EINVAL;
	if (!PKCS5_PBKDF2_HMAC(called, (int)strlen(called), salt, (int)sizeof(salt), PVP_SEL_ITER,
	                       EVP_sha256(), PVP_SEL_LEN, sel))
		return VP_ECRYPTO;
	return 0;
}

int pvp_user_format(const pvp_user_t *u, char out[PVP_USER_MAX])
{
	char hex[PVP_SEL_LEN * 2 + 1];
	int n;
	if (u->ps >= PVP_G_START || u->pd >= PVP_G_DUR_MS)
		return VP_EINVAL;
	vp_hex_encode(u->sel, PVP_SEL_LEN, hex, sizeof(hex));
	n = snprintf(out, PVP_USER_MAX, "v1.%c.%" PRIu32 ".%" PRIu32 ".%" PRIu32 ".%" PRIu32 ".%s",
	             pvp_method_letter(u->method), u->bucket, u->ps, u->pd, u->idx, hex);
	return n > 0 && n < PVP_USER_MAX ? 0 : VP_ESPACE;
}

/* Strict decimal: digits only, no leading zero unless "0", at most 10 digits. */
static int parse_u32(const char **p, char term, uint32_t *v)
{
	const char *s = *p;
	uint64_t acc = 0;
	size_t n = 0;
	while (s[n] >= '0' && s[n] <= '9') {
		acc = acc * 10 + (uint64_t)(s[n] - '0');
		if (++n > 10)
			return VP_EMALFORMED;
	}
	if (n == 0 || (n > 1 && s[0] == '0') || acc > UINT32_MAX || s[n] != term)
		return VP_EMALFORMED;
	*v = (uint32_t)acc;
	*p = s + n + 1;
	return 0;
}

int pvp_user_parse(const char *s, pvp_user_t *u)
{
	size_t hexlen, n;
	memset(u, 0, sizeof(*u));
	if (strncmp(s, "v1.", 3) != 0)
		return VP_EMALFORMED;
	s += 3;
	if (s[0] == 'a')
		u->method = PVP_METHOD_A;
	else if (s[0] == 'b')
		u->method = PVP_METHOD_B;
	else
		return VP_EMALFORMED;
	if (s[1] != '.')
		return VP_EMALFORMED;
	s += 2;
	if (parse_u32(&s, '.', &u->bucket) || parse_u32(&s, '.', &u->ps) ||
	    parse_u32(&s, '.', &u->pd) || parse_u32(&s, '.', &u->idx))
		return VP_EMALFORMED;
	if (u->ps >= PVP_G_START || u->pd >= PVP_G_DUR_MS)
		return VP_EMALFORMED;
	hexlen = strnlen(s, PVP_SEL_LEN * 2 + 1);
	if (hexlen != PVP_SEL_LEN * 2)
		return VP_EMALFORMED;
	for (size_t i = 0; i < hexlen; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return VP_EMALFORMED; /* lower case only: one spelling per selector */
	if (vp_hex_decode(s, hexlen, u->sel, sizeof(u->sel), &n) || n != PVP_SEL_LEN)
		return VP_EMALFORMED;
	return 0;
}

static int64_t floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;
	if ((a % b != 0) && ((a < 0) != (b < 0)))
		q--;
	return q;
}

int64_t pvp_round_q(int64_t t, uint32_t p, uint32_t g)
{
	return floor_div(t - (int64_t)p + (int64_t)(g / 2), (int64_t)g);
}

/* Duration in milliseconds: the secret q_d is rounded from this (§5.3). */
static int64_t duration_ms(const pvp_vcr_t *r)
{
	if (r->stop_ms <= r->start_ms)
		return 0;
	return (int64_t)(r->stop_ms - r->start_ms);
}

/*
 * Duration in whole seconds, rounded from the millisecond times: only for the
 * "d >= 1 s" applicability rule and the entropy estimate, never for q_d.
 */
static int64_t duration_s(const pvp_vcr_t *r)
{
	return (duration_ms(r) + 500) / 1000;
}

bool pvp_method_applies(const pvp_vcr_t *r, pvp_method_t m)
{
	if (duration_s(r) < PVP_MIN_DURATION_S)
		return false;
	return m == PVP_METHOD_B || (m == PVP_METHOD_A && r->caller[0] != '\0');
}

static int make_password(const pvp_vcr_t *r, pvp_method_t m, int64_t qs, int64_t qd,
                         char pass[PVP_PASS_MAX])
{
	int n;
	if (m == PVP_METHOD_A)
		n = snprintf(pass, PVP_PASS_MAX, "v1.a.%s.%s.%" PRId64 ".%" PRId64, r->called, r->caller,
		             qs, qd);
	else
		n = snprintf(pass, PVP_PASS_MAX, "v1.b.%s.%" PRId64 ".%" PRId64, r->called, qs, qd);
	return n > 0 && n < PVP_PASS_MAX ? 0 : VP_ESPACE;
}

int pvp_client_creds(const pvp_vcr_t *r, pvp_method_t m, uint32_t idx, int shift,
                     char user[PVP_USER_MAX], char pass[PVP_PASS_MAX])
{
	pvp_user_t u;
	int64_t start = (int64_t)(r->start_ms / 1000), d;
	int rc;

	if (!pvp_method_applies(r, m) || shift < -16 || shift > 16)
		return VP_EINVAL;
	d = duration_ms(r);
	memset(&u, 0, sizeof(u));
	u.method = m;
	u.bucket = (uint32_t)(start / PVP_BUCKET_S);
	u.ps = (uint32_t)(start % PVP_G_START);
	u.pd = (uint32_t)(d % PVP_G_DUR_MS);
	u.idx = idx;
	rc = pvp_selector(r->called, u.bucket, u.sel);
	if (rc)
		return rc;
	rc = pvp_user_format(&u, user);
	if (rc)
		return rc;
	return make_password(r, m, pvp_round_q(start, u.ps, PVP_G_START) + shift,
	                     pvp_round_q(d, u.pd, PVP_G_DUR_MS), pass);
}

int pvp_server_password(const pvp_vcr_t *r, const pvp_user_t *u, char pass[PVP_PASS_MAX])
{
	int64_t start = (int64_t)(r->start_ms / 1000);
	int64_t d = duration_ms(r);
	if (!pvp_method_applies(r, u->method) || u->ps >= PVP_G_START || u->pd >= PVP_G_DUR_MS)
		return VP_EINVAL;
	return make_password(r, u->method, pvp_round_q(start, u->ps, PVP_G_START),
	                     pvp_round_q(d, u->pd, PVP_G_DUR_MS), pass);
}

uint32_t pvp_entropy_cbits(const pvp_vcr_t *r, pvp_method_t m, const pvp_entropy_conf_t *c)
{
	double caller = c && c->caller_bits > 0 ? c->caller_bits : 4.0;
	double mu = c && c->mean_duration_s > 0 ? c->mean_duration_s : 180.0;
	uint64_t start = r->start_ms / 1000, half = 1800, off;
	double bits = 0, dbits = 0;
	int64_t d;

	if (!pvp_method_applies(r, m))
		return 0;
	/* Start within the public hour: clustered at :00 and :30. */
	off = start % half;
	if (off < PVP_G_START || half - off <= PVP_G_START)
		bits += 1.0;
	else
		bits += log2((double)PVP_BUCKET_S / PVP_G_START);
	/* Duration: self-information of its bin under an exponential model. */
	d = duration_s(r);
	if (d >= 10) {
		dbits = log2(mu / PVP_G_DUR) + (double)d / (mu * M_LN2);
		if (dbits > 10.0)
			dbits = 10.0;
		if (dbits < 0)
			dbits = 0;
	}
	bits += dbits;
	if (m == PVP_METHOD_A)
		bits += caller;
	if (bits * 100.0 > 65535.0)
		return 65535;
	return (uint32_t)(bits * 100.0);
}
