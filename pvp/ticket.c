/*
 * pvp/ticket.c - ticket encoding, MAC and verification.
 */
#include "pvp/ticket.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "common/buf.h"
#include "common/errcode.h"
#include "common/hex.h"
#include "common/log.h"

static const char *const reason_str[] = {
	[PVP_TR_OK] = "ok",
	[PVP_TR_MALFORMED] = "malformed",
	[PVP_TR_VERSION] = "version",
	[PVP_TR_UNKNOWN_EPOCH] = "unknown-epoch",
	[PVP_TR_RETIRED_KEY] = "retired-key",
	[PVP_TR_BAD_MAC] = "bad-mac",
	[PVP_TR_NOT_YET_VALID] = "not-yet-valid",
	[PVP_TR_EXPIRED] = "expired",
	[PVP_TR_WRONG_NUMBER] = "wrong-number",
	[PVP_TR_WRONG_DOMAIN] = "wrong-domain",
	[PVP_TR_NO_ROUTES] = "no-routes",
};

const char *pvp_ticket_reason_str(pvp_ticket_reason_t r)
{
	if ((unsigned)r < sizeof(reason_str) / sizeof(reason_str[0]) && reason_str[r])
		return reason_str[r];
	return "unknown";
}

int pvp_domain_normalize(const char *in, char out[PVP_DOMAIN_MAX + 1])
{
	size_t n, label = 0;
	if (!in)
		return VP_EINVAL;
	n = strnlen(in, PVP_DOMAIN_MAX + 1);
	if (n == 0 || n > PVP_DOMAIN_MAX)
		return VP_EINVAL;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c == '.') {
			if (label == 0)
				return VP_EINVAL;
			label = 0;
		} else if (isalnum(c) || c == '-') {
			if (++label > 63)
				return VP_EINVAL;
		} else {
			return VP_EINVAL;
		}
		out[i] = (char)tolower(c);
	}
	/* A trailing dot (absolute name) is dropped so both spellings compare equal. */
	if (label == 0) {
		if (n == 1)
			return VP_EINVAL;
		n--;
	}
	out[n] = '\0';
	return 0;
}

/* ---- base64url ------------------------------------------------------- */

static const char b64_alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int pvp_b64url_encode(const uint8_t *src, size_t n, char *out, size_t cap)
{
	size_t o = 0, need = (n / 3) * 4 + (n % 3 ? n % 3 + 1 : 0) + 1;
	if (cap < need)
		return VP_ESPACE;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)src[i] << 16;
		size_t rem = n - i;
		if (rem > 1)
			v |= (uint32_t)src[i + 1] << 8;
		if (rem > 2)
			v |= src[i + 2];
		out[o++] = b64_alpha[v >> 18 & 63];
		out[o++] = b64_alpha[v >> 12 & 63];
		if (rem > 1)
			out[o++] = b64_alpha[v >> 6 & 63];
		if (rem > 2)
			out[o++] = b64_alpha[v & 63];
	}
	out[o] = '\0';
	return 0;
}

static int b64_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

int pvp_b64url_decode(const char *src, size_t n, uint8_t *out, size_t cap, size_t *outlen)
{
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t o = 0;
	size_t pad = 0;
	*outlen = 0;
	while (n > 0 && src[n - 1] == '=') {
		n--;
		pad++;
	}
	/* Padding only completes the last quantum, or two texts would decode to one ticket. */
	if (n % 4 == 1 || (pad && (n % 4 == 0 || (n + pad) % 4 != 0)))
		return VP_EMALFORMED;
	for (size_t i = 0; i < n; i++) {
		int v = b64_val((unsigned char)src[i]);
		if (v < 0)
			return VP_EMALFORMED;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= cap)
				return VP_ESPACE;
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	/* Leftover bits must be zero, or two texts would decode to one ticket. */
	if (bits && (acc & ((1u << bits) - 1)))
		return VP_EMALFORMED;
	*outlen = o;
	return 0;
}

/* ---- key ring -------------------------------------------------------- */

static int parse_key_line(char *line, pvp_ticket_keys_t *keys, bool *seen_cur, unsigned lineno)
{
	char *save = NULL, *kind, *epoch_s, *hex, *grace_s, *extra, *end;
	pvp_ticket_key_t k;
	unsigned long ep;
	size_t klen;
	bool prev;

	memset(&k, 0, sizeof(k));
	kind = strtok_r(line, " \t", &save);
	if (!kind || kind[0] == '#')
		return 0;
	epoch_s = strtok_r(NULL, " \t", &save);
	hex = strtok_r(NULL, " \t", &save);
	grace_s = strtok_r(NULL, " \t", &save);
	extra = strtok_r(NULL, " \t", &save);
	if (!strcmp(kind, "current"))
		prev = false;
	else if (!strcmp(kind, "previous"))
		prev = true;
	else
		goto bad;
	if (!epoch_s || !hex || extra || (prev && !grace_s) || (!prev && grace_s))
		goto bad;
	/* Digits only: strtoul/strtoull accept a sign, and "-1" would wrap to the maximum. */
	if (!isdigit((unsigned char)epoch_s[0]) || (grace_s && !isdigit((unsigned char)grace_s[0])))
		goto bad;
	errno = 0;
	ep = strtoul(epoch_s, &end, 10);
	if (errno || *end || ep < 1 || ep > 255)
		goto bad;
	if (vp_hex_decode(hex, strlen(hex), k.key, sizeof(k.key), &klen) || klen < PVP_TICKET_KEY_MIN)
		goto bad;
	k.epoch = (uint8_t)ep;
	k.len = (uint8_t)klen;
	if (prev) {
		unsigned long long g;
		errno = 0;
		g = strtoull(grace_s, &end, 10);
		if (errno || *end)
			goto bad;
		k.grace_until_s = g;
		if (keys->has_prev)
			goto bad;
		keys->prev = k;
		keys->has_prev = true;
	} else {
		if (*seen_cur)
			goto bad;
		keys->cur = k;
		*seen_cur = true;
	}
	OPENSSL_cleanse(&k, sizeof(k));
	return 0;
bad:
	OPENSSL_cleanse(&k, sizeof(k));
	vp_log_error("pvp", "ticket_keys_invalid", "line=%u", lineno);
	return VP_ECONFIG;
}

int pvp_ticket_keys_parse(const char *text, size_t len, pvp_ticket_keys_t *keys)
{
	char line[512];
	size_t i = 0;
	unsigned lineno = 0;
	bool seen_cur = false;
	int rc = 0;

	memset(keys, 0, sizeof(*keys));
	while (i < len && !rc) {
		size_t j = i, n;
		while (j < len && text[j] != '\n')
			j++;
		n = j - i;
		lineno++;
		if (n >= sizeof(line)) {
			vp_log_error("pvp", "ticket_keys_invalid", "line=%u reason=too_long", lineno);
			rc = VP_ECONFIG;
			break;
		}
		memcpy(line, text + i, n);
		line[n] = '\0';
		if (n && line[n - 1] == '\r')
			line[n - 1] = '\0';
		rc = parse_key_line(line, keys, &seen_cur, lineno);
		i = j + 1;
	}
	OPENSSL_cleanse(line, sizeof(line));
	if (!rc && !seen_cur) {
		vp_log_error("pvp", "ticket_keys_invalid", "reason=no_current_key");
		rc = VP_ECONFIG;
	}
	if (!rc && keys->has_prev && keys->prev.epoch == keys->cur.epoch) {
		vp_log_error("pvp", "ticket_keys_invalid", "reason=same_epoch");
		rc = VP_ECONFIG;
	}
	if (rc)
		OPENSSL_cleanse(keys, sizeof(*keys));
	return rc;
}

int pvp_ticket_keys_load(const char *path, pvp_ticket_keys_t *keys)
{
	char buf[4096];
	size_t n;
	int rc;
	FILE *f = fopen(path, "r");
	if (!f) {
		vp_log_error("pvp", "ticket_keys_open", "path=%s errno=%d", path, errno);
		return VP_EIO;
	}
	n = fread(buf, 1, sizeof(buf), f);
	rc = ferror(f) ? VP_EIO : !feof(f) ? VP_ETOOBIG : 0;
	fclose(f);
	if (rc) {
		vp_log_error("pvp", "ticket_keys_read", "path=%s err=%s", path, vp_errname(rc));
		OPENSSL_cleanse(buf, sizeof(buf));
		return rc;
	}
	rc = pvp_ticket_keys_parse(buf, n, keys);
	OPENSSL_cleanse(buf, sizeof(buf));
	return rc;
}

static int format_key(char *out, size_t cap, const char *kind, const pvp_ticket_key_t *k, bool grace)
{
	char hex[PVP_TICKET_KEY_MAX * 2 + 1];
	int n;
	if (vp_hex_encode(k->key, k->len, hex, sizeof(hex)))
		return VP_EINVAL;
	if (grace)
		n = snprintf(out, cap, "%s %u %s %llu\n", kind, k->epoch, hex,
		             (unsigned long long)k->grace_until_s);
	else
		n = snprintf(out, cap, "%s %u %s\n", kind, k->epoch, hex);
	OPENSSL_cleanse(hex, sizeof(hex));
	if (n < 0 || (size_t)n >= cap)
		return VP_ESPACE;
	return n;
}

int pvp_ticket_keys_format(const pvp_ticket_keys_t *keys, char *out, size_t cap)
{
	int n = format_key(out, cap, "current", &keys->cur, false), m;
	if (n < 0)
		return n;
	if (!keys->has_prev)
		return 0;
	m = format_key(out + n, cap - (size_t)n, "previous", &keys->prev, true);
	return m < 0 ? m : 0;
}

int pvp_ticket_keys_rotate(pvp_ticket_keys_t *keys, const uint8_t *key, size_t len,
                           uint64_t grace_until_s)
{
	if (len < PVP_TICKET_KEY_MIN || len > PVP_TICKET_KEY_MAX)
		return VP_EINVAL;
	keys->prev = keys->cur;
	keys->prev.grace_until_s = grace_until_s;
	keys->has_prev = true;
	keys->cur.epoch = keys->prev.epoch == 255 ? 1 : (uint8_t)(keys->prev.epoch + 1);
	keys->cur.len = (uint8_t)len;
	memset(keys->cur.key, 0, sizeof(keys->cur.key));
	memcpy(keys->cur.key, key, len);
	keys->cur.grace_until_s = 0;
	return 0;
}

/* ---- encode / decode ------------------------------------------------- */

static int ticket_mac(const pvp_ticket_key_t *k, const uint8_t *data, size_t len,
                      uint8_t mac[PVP_TICKET_MAC_LEN])
{
	unsigned int maclen = 0;
	if (!HMAC(EVP_sha256(), k->key, k->len, data, len, mac, &maclen) ||
	    maclen != PVP_TICKET_MAC_LEN)
		return VP_ECRYPTO;
	return 0;
}

int pvp_ticket_issue(const pvp_ticket_keys_t *keys, const pvp_ticket_t *t,
                     uint8_t *out, size_t cap, size_t *outlen)
{
	vp_wr_t wr;
	size_t nlen, dlen, body;
	uint8_t *mac;
	int rc;

	*outlen = 0;
	if (!keys->cur.epoch || keys->cur.len < PVP_TICKET_KEY_MIN)
		return VP_ECONFIG;
	if (!vp_e164_is_canonical(t->number))
		return VP_EINVAL;
	nlen = strlen(t->number);
	dlen = strnlen(t->domain, sizeof(t->domain));
	if (dlen == 0 || dlen > PVP_DOMAIN_MAX)
		return VP_EINVAL;
	vp_wr_init(&wr, out, cap);
	vp_wr_u8(&wr, PVP_TICKET_VERSION);
	vp_wr_u8(&wr, keys->cur.epoch);
	vp_wr_u8(&wr, t->flags);
	vp_wr_u8(&wr, 0);
	vp_wr_u32(&wr, t->issued);
	vp_wr_u32(&wr, t->expires);
	vp_wr_u32(&wr, t->last_call);
	vp_wr_u16(&wr, t->entropy_cbits);
	vp_wr_u16(&wr, t->validations);
	vp_wr_vec_bytes(&wr, 1, t->number, nlen);
	vp_wr_vec_bytes(&wr, 1, t->domain, dlen);
	body = vp_wr_len(&wr);
	mac = vp_wr_reserve(&wr, PVP_TICKET_MAC_LEN);
	if (wr.err)
		return wr.err;
	rc = ticket_mac(&keys->cur, out, body, mac);
	if (rc)
		return rc;
	*outlen = vp_wr_len(&wr);
	return 0;
}

/* Parse; *body_len gets the length covered by the MAC, *mac points at it. */
static int ticket_parse(const uint8_t *buf, size_t len, pvp_ticket_t *t,
                        size_t *body_len, const uint8_t **mac)
{
	vp_rd_t rd;
	uint8_t reserved;
	const uint8_t *num, *dom;
	size_t nlen, dlen;

	memset(t, 0, sizeof(*t));
	vp_rd_init(&rd, buf, len);
	vp_rd_u8(&rd, &t->version);
	if (!rd.err && t->version != PVP_TICKET_VERSION)
		return VP_EUNSUPPORTED;
	vp_rd_u8(&rd, &t->epoch);
	vp_rd_u8(&rd, &t->flags);
	vp_rd_u8(&rd, &reserved);
	vp_rd_u32(&rd, &t->issued);
	vp_rd_u32(&rd, &t->expires);
	vp_rd_u32(&rd, &t->last_call);
	vp_rd_u16(&rd, &t->entropy_cbits);
	vp_rd_u16(&rd, &t->validations);
	vp_rd_vec_bytes(&rd, 1, &num, &nlen);
	vp_rd_vec_bytes(&rd, 1, &dom, &dlen);
	*body_len = len - vp_rd_left(&rd);
	vp_rd_bytes(&rd, PVP_TICKET_MAC_LEN, mac);
	if (vp_rd_done(&rd))
		return rd.err;
	if (reserved || !t->epoch || nlen == 0 || nlen >= sizeof(t->number) || dlen == 0 ||
	    dlen > PVP_DOMAIN_MAX)
		return VP_EMALFORMED;
	memcpy(t->number, num, nlen);
	t->number[nlen] = '\0';
	memcpy(t->domain, dom, dlen);
	t->domain[dlen] = '\0';
	/* Embedded NULs or a non-canonical number can only come from a forger. */
	if (strlen(t->number) != nlen || strlen(t->domain) != dlen || !vp_e164_is_canonical(t->number))
		return VP_EMALFORMED;
	return 0;
}

int pvp_ticket_decode(const uint8_t *buf, size_t len, pvp_ticket_t *t)
{
	size_t body;
	const uint8_t *mac;
	return ticket_parse(buf, len, t, &body, &mac);
}

pvp_ticket_reason_t pvp_ticket_verify(const pvp_ticket_keys_t *keys, const uint8_t *buf, size_t len,
                                      uint64_t now_s, const pvp_ticket_expect_t *expect,
                                      pvp_ticket_t *out)
{
	pvp_ticket_t tmp, *t = out ? out : &tmp;
	const pvp_ticket_key_t *k;
	uint8_t want[PVP_TICKET_MAC_LEN];
	const uint8_t *mac;
	size_t body;
	int rc;

	rc = ticket_parse(buf, len, t, &body, &mac);
	if (rc == VP_EUNSUPPORTED)
		return PVP_TR_VERSION;
	if (rc)
		return PVP_TR_MALFORMED;
	if (t->epoch == keys->cur.epoch && keys->cur.len)
		k = &keys->cur;
	else if (keys->has_prev && t->epoch == keys->prev.epoch)
		k = &keys->prev;
	else
		return PVP_TR_UNKNOWN_EPOCH;
	if (k == &keys->prev && now_s > keys->prev.grace_until_s)
		return PVP_TR_RETIRED_KEY;
	if (ticket_mac(k, buf, body, want))
		return PVP_TR_BAD_MAC;
	if (CRYPTO_memcmp(want, mac, PVP_TICKET_MAC_LEN) != 0)
		return PVP_TR_BAD_MAC;
	if ((uint64_t)t->issued > now_s + PVP_TICKET_SKEW_S)
		return PVP_TR_NOT_YET_VALID;
	if (!(expect && expect->ignore_expiry) && now_s > (uint64_t)t->expires + PVP_TICKET_SKEW_S)
		return PVP_TR_EXPIRED;
	if (expect && expect->number && strcmp(expect->number, t->number) != 0)
		return PVP_TR_WRONG_NUMBER;
	if (expect && expect->domain) {
		char d[PVP_DOMAIN_MAX + 1];
		if (pvp_domain_normalize(expect->domain, d) || strcmp(d, t->domain) != 0)
			return PVP_TR_WRONG_DOMAIN;
	}
	if (expect && expect->need_routes && !(t->flags & PVP_TICKET_F_ROUTES))
		return PVP_TR_NO_ROUTES;
	return PVP_TR_OK;
}

pvp_ticket_reason_t pvp_ticket_verify_text(const pvp_ticket_keys_t *keys, const char *b64,
                                           uint64_t now_s, const pvp_ticket_expect_t *expect,
                                           pvp_ticket_t *out)
{
	uint8_t bin[PVP_TICKET_MAX];
	size_t n;
	size_t slen = strnlen(b64, PVP_TICKET_B64_MAX + 1);
	if (slen > PVP_TICKET_B64_MAX || pvp_b64url_decode(b64, slen, bin, sizeof(bin), &n))
		return PVP_TR_MALFORMED;
	return pvp_ticket_verify(keys, bin, n, now_s, expect, out);
}
