/*
 * control/vap_msg.c - VAP codec: RFC 5389 framing, attributes, integrity, fingerprint.
 */
#include "control/vap/vap_msg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/crypto.h>

#include "common/errcode.h"

/* ---- names ---------------------------------------------------------------- */

bool vap_attr_known(uint16_t type)
{
	switch (type) {
	case VAP_ATTR_USERNAME: case VAP_ATTR_MESSAGE_INTEGRITY: case VAP_ATTR_ERROR_CODE:
	case VAP_ATTR_UNKNOWN_ATTRIBUTES: case VAP_ATTR_REALM: case VAP_ATTR_NONCE:
	case VAP_ATTR_SOFTWARE: case VAP_ATTR_FINGERPRINT:
	case VAP_ATTR_NUMBER: case VAP_ATTR_NUMBER_RANGE: case VAP_ATTR_PUBLISH_ACTION:
	case VAP_ATTR_VSERVICE_ID: case VAP_ATTR_CALL_RECORD: case VAP_ATTR_SIP_URI:
	case VAP_ATTR_TICKET: case VAP_ATTR_EXPIRES: case VAP_ATTR_BLACKLIST:
	case VAP_ATTR_WHITELIST: case VAP_ATTR_RETRY_AFTER: case VAP_ATTR_NUMBER_COUNT:
	case VAP_ATTR_CLIENT_CERT:
		return true;
	default:
		return false;
	}
}

const char *vap_method_name(uint16_t method)
{
	switch (method) {
	case VAP_REGISTER: return "Register";
	case VAP_PUBLISH: return "Publish";
	case VAP_UPLOAD_VCR: return "UploadVCR";
	case VAP_SUBSCRIBE: return "Subscribe";
	case VAP_NOTIFY: return "Notify";
	case VAP_UNREGISTER: return "Unregister";
	case VAP_KEEPALIVE: return "Keepalive";
	default: return "unknown";
	}
}

const char *vap_error_reason(int code)
{
	switch (code) {
	case VAP_ERR_BAD_REQUEST: return "Bad Request";
	case VAP_ERR_UNAUTHORIZED: return "Unauthorized";
	case VAP_ERR_FORBIDDEN: return "Forbidden";
	case VAP_ERR_UNKNOWN_ATTRIBUTE: return "Unknown Attribute";
	case VAP_ERR_RATE_LIMITED: return "Rate Limited";
	case VAP_ERR_STALE_NONCE: return "Stale Nonce";
	case VAP_ERR_SERVER_ERROR: return "Server Error";
	case VAP_ERR_SERVER_BUSY: return "Server Busy";
	default: return "Error";
	}
}

/* ---- CRC-32 (IEEE, reflected, poly 0xEDB88320) ----------------------------- */

static const uint32_t crc_table[256] = {
	0x00000000u, 0x77073096u, 0xee0e612cu, 0x990951bau, 0x076dc419u, 0x706af48fu,
	0xe963a535u, 0x9e6495a3u, 0x0edb8832u, 0x79dcb8a4u, 0xe0d5e91eu, 0x97d2d988u,
	0x09b64c2bu, 0x7eb17cbdu, 0xe7b82d07u, 0x90bf1d91u, 0x1db71064u, 0x6ab020f2u,
	0xf3b97148u, 0x84be41deu, 0x1adad47du, 0x6ddde4ebu, 0xf4d4b551u, 0x83d385c7u,
	0x136c9856u, 0x646ba8c0u, 0xfd62f97au, 0x8a65c9ecu, 0x14015c4fu, 0x63066cd9u,
	0xfa0f3d63u, 0x8d080df5u, 0x3b6e20c8u, 0x4c69105eu, 0xd56041e4u, 0xa2677172u,
	0x3c03e4d1u, 0x4b04d447u, 0xd20d85fdu, 0xa50ab56bu, 0x35b5a8fau, 0x42b2986cu,
	0xdbbbc9d6u, 0xacbcf940u, 0x32d86ce3u, 0x45df5c75u, 0xdcd60dcfu, 0xabd13d59u,
	0x26d930acu, 0x51de003au, 0xc8d75180u, 0xbfd06116u, 0x21b4f4b5u, 0x56b3c423u,
	0xcfba9599u, 0xb8bda50fu, 0x2802b89eu, 0x5f058808u, 0xc60cd9b2u, 0xb10be924u,
	0x2f6f7c87u, 0x58684c11u, 0xc1611dabu, 0xb6662d3du, 0x76dc4190u, 0x01db7106u,
	0x98d220bcu, 0xefd5102au, 0x71b18589u, 0x06b6b51fu, 0x9fbfe4a5u, 0xe8b8d433u,
	0x7807c9a2u, 0x0f00f934u, 0x9609a88eu, 0xe10e9818u, 0x7f6a0dbbu, 0x086d3d2du,
	0x91646c97u, 0xe6635c01u, 0x6b6b51f4u, 0x1c6c6162u, 0x856530d8u, 0xf262004eu,
	0x6c0695edu, 0x1b01a57bu, 0x8208f4c1u, 0xf50fc457u, 0x65b0d9c6u, 0x12b7e950u,
	0x8bbeb8eau, 0xfcb9887cu, 0x62dd1ddfu, 0x15da2d49u, 0x8cd37cf3u, 0xfbd44c65u,
	0x4db26158u, 0x3ab551ceu, 0xa3bc0074u, 0xd4bb30e2u, 0x4adfa541u, 0x3dd895d7u,
	0xa4d1c46du, 0xd3d6f4fbu, 0x4369e96au, 0x346ed9fcu, 0xad678846u, 0xda60b8d0u,
	0x44042d73u, 0x33031de5u, 0xaa0a4c5fu, 0xdd0d7cc9u, 0x5005713cu, 0x270241aau,
	0xbe0b1010u, 0xc90c2086u, 0x5768b525u, 0x206f85b3u, 0xb966d409u, 0xce61e49fu,
	0x5edef90eu, 0x29d9c998u, 0xb0d09822u, 0xc7d7a8b4u, 0x59b33d17u, 0x2eb40d81u,
	0xb7bd5c3bu, 0xc0ba6cadu, 0xedb88320u, 0x9abfb3b6u, 0x03b6e20cu, 0x74b1d29au,
	0xead54739u, 0x9dd277afu, 0x04db2615u, 0x73dc1683u, 0xe3630b12u, 0x94643b84u,
	0x0d6d6a3eu, 0x7a6a5aa8u, 0xe40ecf0bu, 0x9309ff9du, 0x0a00ae27u, 0x7d079eb1u,
	0xf00f9344u, 0x8708a3d2u, 0x1e01f268u, 0x6906c2feu, 0xf762575du, 0x806567cbu,
	0x196c3671u, 0x6e6b06e7u, 0xfed41b76u, 0x89d32be0u, 0x10da7a5au, 0x67dd4accu,
	0xf9b9df6fu, 0x8ebeeff9u, 0x17b7be43u, 0x60b08ed5u, 0xd6d6a3e8u, 0xa1d1937eu,
	0x38d8c2c4u, 0x4fdff252u, 0xd1bb67f1u, 0xa6bc5767u, 0x3fb506ddu, 0x48b2364bu,
	0xd80d2bdau, 0xaf0a1b4cu, 0x36034af6u, 0x41047a60u, 0xdf60efc3u, 0xa867df55u,
	0x316e8eefu, 0x4669be79u, 0xcb61b38cu, 0xbc66831au, 0x256fd2a0u, 0x5268e236u,
	0xcc0c7795u, 0xbb0b4703u, 0x220216b9u, 0x5505262fu, 0xc5ba3bbeu, 0xb2bd0b28u,
	0x2bb45a92u, 0x5cb36a04u, 0xc2d7ffa7u, 0xb5d0cf31u, 0x2cd99e8bu, 0x5bdeae1du,
	0x9b64c2b0u, 0xec63f226u, 0x756aa39cu, 0x026d930au, 0x9c0906a9u, 0xeb0e363fu,
	0x72076785u, 0x05005713u, 0x95bf4a82u, 0xe2b87a14u, 0x7bb12baeu, 0x0cb61b38u,
	0x92d28e9bu, 0xe5d5be0du, 0x7cdcefb7u, 0x0bdbdf21u, 0x86d3d2d4u, 0xf1d4e242u,
	0x68ddb3f8u, 0x1fda836eu, 0x81be16cdu, 0xf6b9265bu, 0x6fb077e1u, 0x18b74777u,
	0x88085ae6u, 0xff0f6a70u, 0x66063bcau, 0x11010b5cu, 0x8f659effu, 0xf862ae69u,
	0x616bffd3u, 0x166ccf45u, 0xa00ae278u, 0xd70dd2eeu, 0x4e048354u, 0x3903b3c2u,
	0xa7672661u, 0xd06016f7u, 0x4969474du, 0x3e6e77dbu, 0xaed16a4au, 0xd9d65adcu,
	0x40df0b66u, 0x37d83bf0u, 0xa9bcae53u, 0xdebb9ec5u, 0x47b2cf7fu, 0x30b5ffe9u,
	0xbdbdf21cu, 0xcabac28au, 0x53b39330u, 0x24b4a3a6u, 0xbad03605u, 0xcdd70693u,
	0x54de5729u, 0x23d967bfu, 0xb3667a2eu, 0xc4614ab8u, 0x5d681b02u, 0x2a6f2b94u,
	0xb40bbe37u, 0xc30c8ea1u, 0x5a05df1bu, 0x2d02ef8du
};

uint32_t vap_crc32(uint32_t crc, const uint8_t *p, size_t len)
{
	crc = ~crc;
	for (size_t i = 0; i < len; i++)
		crc = crc_table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
	return ~crc;
}

/* ---- HMAC-SHA1 --------------------------------------------------------------- */

/*
 * HMAC-SHA1 (RFC 2104) over a reused digest context.  OpenSSL 3's EVP_MAC
 * re-init duplicates a provider context (malloc + free) on every message;
 * re-initialising one EVP_MD_CTX with the same fetched digest reuses its
 * state, so computing MESSAGE-INTEGRITY allocates nothing.
 */
struct vap_mac {
	EVP_MD *md;
	EVP_MD_CTX *ctx;
	uint8_t ipad[64], opad[64];
};

int vap_mac_new(const uint8_t *key, size_t keylen, vap_mac_t **out)
{
	vap_mac_t *m = calloc(1, sizeof(*m));
	uint8_t k[64] = { 0 };
	*out = NULL;
	if (!m)
		return VP_ENOMEM;
	m->md = EVP_MD_fetch(NULL, "SHA1", NULL);
	m->ctx = EVP_MD_CTX_new();
	if (!m->md || !m->ctx)
		goto fail;
	if (keylen > sizeof(k)) {
		unsigned int outl = 0;
		if (!EVP_DigestInit_ex(m->ctx, m->md, NULL) || !EVP_DigestUpdate(m->ctx, key, keylen) ||
		    !EVP_DigestFinal_ex(m->ctx, k, &outl))
			goto fail;
	} else if (keylen) {
		memcpy(k, key, keylen);
	}
	/* Bind the context to SHA-1 once; each message re-initialises it in place. */
	if (!EVP_DigestInit_ex2(m->ctx, m->md, NULL))
		goto fail;
	for (size_t i = 0; i < sizeof(k); i++) {
		m->ipad[i] = k[i] ^ 0x36;
		m->opad[i] = k[i] ^ 0x5c;
	}
	OPENSSL_cleanse(k, sizeof(k));
	*out = m;
	return 0;
fail:
	OPENSSL_cleanse(k, sizeof(k));
	vap_mac_free(m);
	return VP_ECRYPTO;
}

void vap_mac_free(vap_mac_t *m)
{
	if (!m)
		return;
	EVP_MD_CTX_free(m->ctx);
	EVP_MD_free(m->md);
	OPENSSL_cleanse(m, sizeof(*m));
	free(m);
}

int vap_mac_compute(vap_mac_t *m, const uint8_t *const *parts, const size_t *lens, size_t n,
                    uint8_t out[VAP_MI_LEN])
{
	uint8_t inner[VAP_MI_LEN];
	unsigned int outl = 0;
	if (!EVP_DigestInit_ex2(m->ctx, NULL, NULL) || !EVP_DigestUpdate(m->ctx, m->ipad, sizeof(m->ipad)))
		return VP_ECRYPTO;
	for (size_t i = 0; i < n; i++)
		if (lens[i] && !EVP_DigestUpdate(m->ctx, parts[i], lens[i]))
			return VP_ECRYPTO;
	if (!EVP_DigestFinal_ex(m->ctx, inner, &outl) || outl != VAP_MI_LEN ||
	    !EVP_DigestInit_ex2(m->ctx, NULL, NULL) ||
	    !EVP_DigestUpdate(m->ctx, m->opad, sizeof(m->opad)) ||
	    !EVP_DigestUpdate(m->ctx, inner, sizeof(inner)) ||
	    !EVP_DigestFinal_ex(m->ctx, out, &outl) || outl != VAP_MI_LEN)
		return VP_ECRYPTO;
	return 0;
}

int vap_key_derive(const char *username, const char *realm, const char *password,
                   uint8_t key[VAP_KEY_LEN])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int outl = 0;
	int rc = VP_ECRYPTO;
	if (!username || !realm || !password) {
		EVP_MD_CTX_free(ctx);
		return VP_EINVAL;
	}
	if (!ctx)
		return VP_ENOMEM;
	/* RFC 5389 §15.4: key = MD5(username ":" realm ":" SASLprep(password)).
	 * SASLprep is the identity for the ASCII credentials VAP provisions. */
	if (EVP_DigestInit_ex(ctx, EVP_md5(), NULL) &&
	    EVP_DigestUpdate(ctx, username, strlen(username)) &&
	    EVP_DigestUpdate(ctx, ":", 1) &&
	    EVP_DigestUpdate(ctx, realm, strlen(realm)) &&
	    EVP_DigestUpdate(ctx, ":", 1) &&
	    EVP_DigestUpdate(ctx, password, strlen(password)) &&
	    EVP_DigestFinal_ex(ctx, key, &outl) && outl == VAP_KEY_LEN)
		rc = 0;
	EVP_MD_CTX_free(ctx);
	return rc;
}

/* ---- decoding ------------------------------------------------------------------ */

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

long vap_frame_len(const uint8_t *buf, size_t avail)
{
	uint16_t blen;
	if (avail < VAP_HDR_LEN)
		return 0;
	if ((buf[0] & 0xC0) || get32(buf + 4) != VAP_MAGIC_COOKIE)
		return VP_EMALFORMED;
	blen = get16(buf + 2);
	if (blen & 3)
		return VP_EMALFORMED;
	return (long)VAP_HDR_LEN + blen;
}

int vap_msg_parse(const uint8_t *buf, size_t len, vap_msg_t *msg)
{
	long flen;
	size_t off;
	memset(msg, 0, sizeof(*msg));
	if (!buf || len < VAP_HDR_LEN)
		return VP_ETRUNC;
	flen = vap_frame_len(buf, len);
	if (flen < 0)
		return (int)flen;
	if ((size_t)flen != len)
		return (size_t)flen > len ? VP_ETRUNC : VP_EBADLEN;
	msg->buf = buf;
	msg->len = len;
	msg->type = get16(buf);
	msg->method = vap_type_method(msg->type);
	msg->cls = vap_type_class(msg->type);
	msg->tid = buf + 8;
	for (off = VAP_HDR_LEN; off < len;) {
		uint16_t type, alen;
		size_t padded;
		if (len - off < 4)
			return VP_ETRUNC;
		type = get16(buf + off);
		alen = get16(buf + off + 2);
		padded = ((size_t)alen + 3) & ~(size_t)3;
		if (len - off - 4 < padded)
			return VP_ETRUNC;
		if (msg->fp_off)
			return VP_EMALFORMED; /* FINGERPRINT must be the last attribute */
		if (type == VAP_ATTR_FINGERPRINT) {
			if (alen != 4)
				return VP_EBADLEN;
			msg->fp_off = off;
		} else if (type == VAP_ATTR_MESSAGE_INTEGRITY && !msg->mi_off) {
			if (alen != VAP_MI_LEN)
				return VP_EBADLEN;
			msg->mi_off = off;
		}
		/* Anything else after MESSAGE-INTEGRITY is ignored (RFC 5389 §15.4). */
		off += 4 + padded;
	}
	msg->attrs_end = msg->mi_off ? msg->mi_off : msg->fp_off ? msg->fp_off : len;
	if (msg->fp_off) {
		uint32_t crc = vap_crc32(0, buf, msg->fp_off) ^ VAP_FP_XOR;
		if (crc != get32(buf + msg->fp_off + 4))
			return VP_EVAP_FINGERPRINT;
	}
	return 0;
}

void vap_attr_iter_init(vap_attr_iter_t *it, const vap_msg_t *msg)
{
	it->msg = msg;
	it->off = VAP_HDR_LEN;
}

bool vap_attr_next(vap_attr_iter_t *it, vap_attr_t *a)
{
	const vap_msg_t *m = it->msg;
	if (it->off + 4 > m->attrs_end)
		return false;
	a->type = get16(m->buf + it->off);
	a->len = get16(m->buf + it->off + 2);
	a->value = m->buf + it->off + 4;
	it->off += 4 + (((size_t)a->len + 3) & ~(size_t)3);
	return true;
}

int vap_msg_find(const vap_msg_t *msg, uint16_t type, vap_attr_t *a)
{
	vap_attr_iter_t it;
	vap_attr_iter_init(&it, msg);
	while (vap_attr_next(&it, a))
		if (a->type == type)
			return 0;
	memset(a, 0, sizeof(*a));
	return VP_ENOTFOUND;
}

size_t vap_msg_unknown_required(const vap_msg_t *msg, uint16_t *out, size_t cap)
{
	vap_attr_iter_t it;
	vap_attr_t a;
	size_t n = 0, stored = 0;
	vap_attr_iter_init(&it, msg);
	while (vap_attr_next(&it, &a)) {
		bool dup = false;
		if (!vap_attr_required(a.type) || vap_attr_known(a.type))
			continue;
		for (size_t i = 0; i < stored; i++)
			dup |= out[i] == a.type;
		if (dup)
			continue;
		if (stored < cap)
			out[stored++] = a.type;
		n++;
	}
	return n;
}

int vap_msg_check_integrity_mac(const vap_msg_t *msg, vap_mac_t *mac)
{
	uint8_t hdr[VAP_HDR_LEN], mi[VAP_MI_LEN];
	const uint8_t *parts[2];
	size_t lens[2];
	if (!msg->mi_off || !mac)
		return VP_EVAP_INTEGRITY;
	/* The length field as if MESSAGE-INTEGRITY were the last attribute. */
	memcpy(hdr, msg->buf, VAP_HDR_LEN);
	put16(hdr + 2, (uint16_t)(msg->mi_off + 4 + VAP_MI_LEN - VAP_HDR_LEN));
	parts[0] = hdr;
	lens[0] = VAP_HDR_LEN;
	parts[1] = msg->buf + VAP_HDR_LEN;
	lens[1] = msg->mi_off - VAP_HDR_LEN;
	if (vap_mac_compute(mac, parts, lens, 2, mi))
		return VP_ECRYPTO;
	if (CRYPTO_memcmp(mi, msg->buf + msg->mi_off + 4, VAP_MI_LEN))
		return VP_EVAP_INTEGRITY;
	return 0;
}

int vap_msg_check_integrity(const vap_msg_t *msg, const uint8_t *key, size_t keylen)
{
	vap_mac_t *mac;
	int rc;
	if (!msg->mi_off)
		return VP_EVAP_INTEGRITY;
	if ((rc = vap_mac_new(key, keylen, &mac)))
		return rc;
	rc = vap_msg_check_integrity_mac(msg, mac);
	vap_mac_free(mac);
	return rc;
}

/* ---- attribute values ---------------------------------------------------------- */

int vap_attr_u32(const vap_attr_t *a, uint32_t *v)
{
	if (a->len != 4) {
		*v = 0;
		return VP_EBADLEN;
	}
	*v = get32(a->value);
	return 0;
}

int vap_attr_u64(const vap_attr_t *a, uint64_t *v)
{
	if (a->len != 8) {
		*v = 0;
		return VP_EBADLEN;
	}
	*v = (uint64_t)get32(a->value) << 32 | get32(a->value + 4);
	return 0;
}

static int copy_str(const uint8_t *p, size_t n, char *out, size_t cap)
{
	if (cap == 0)
		return VP_ESPACE;
	out[0] = '\0';
	if (n >= cap)
		return VP_ETOOBIG;
	if (memchr(p, 0, n))
		return VP_EMALFORMED;
	memcpy(out, p, n);
	out[n] = '\0';
	return 0;
}

int vap_attr_str(const vap_attr_t *a, char *out, size_t cap)
{
	return copy_str(a->value, a->len, out, cap);
}

int vap_attr_number(const vap_attr_t *a, char out[VP_E164_BUFLEN])
{
	int rc = copy_str(a->value, a->len, out, VP_E164_BUFLEN);
	if (rc == VP_ETOOBIG)
		return VP_E164_LONG;
	if (rc)
		return rc;
	if (!vp_e164_is_canonical(out)) {
		out[0] = '\0';
		return VP_E164_CHAR;
	}
	return 0;
}

int vap_attr_error(const vap_attr_t *a, int *code, char *reason, size_t cap)
{
	int cls, num;
	*code = 0;
	if (cap)
		reason[0] = '\0';
	if (a->len < 4)
		return VP_EBADLEN;
	cls = a->value[2] & 0x07;
	num = a->value[3];
	if (cls < 3 || cls > 6 || num > 99)
		return VP_EMALFORMED;
	*code = cls * 100 + num;
	if (cap) {
		size_t n = a->len - 4u;
		if (n >= cap)
			n = cap - 1;
		memcpy(reason, a->value + 4, n);
		reason[n] = '\0';
	}
	return 0;
}

/* CALL-RECORD: start u64, stop u64, direction u8, called_len u8, caller_len u8,
 * reserved u8, called, caller. */
int vap_attr_vcr(const vap_attr_t *a, vap_vcr_t *vcr)
{
	vp_rd_t rd;
	uint8_t dir, cl, kl, rsv;
	const uint8_t *called, *caller;
	vap_attr_t sub;
	int rc;
	memset(vcr, 0, sizeof(*vcr));
	vp_rd_init(&rd, a->value, a->len);
	vp_rd_u64(&rd, &vcr->start_ms);
	vp_rd_u64(&rd, &vcr->stop_ms);
	vp_rd_u8(&rd, &dir);
	vp_rd_u8(&rd, &cl);
	vp_rd_u8(&rd, &kl);
	vp_rd_u8(&rd, &rsv);
	vp_rd_bytes(&rd, cl, &called);
	vp_rd_bytes(&rd, kl, &caller);
	if ((rc = vp_rd_done(&rd)))
		return rc == VP_ETRAILING ? VP_EBADLEN : rc;
	if (dir != VAP_DIR_ORIGINATING && dir != VAP_DIR_TERMINATING)
		return VP_EBADTYPE;
	if (vcr->stop_ms < vcr->start_ms)
		return VP_ERANGE;
	vcr->direction = dir;
	sub.type = VAP_ATTR_NUMBER;
	sub.len = cl;
	sub.value = called;
	if ((rc = vap_attr_number(&sub, vcr->called)))
		return rc;
	if (kl) {
		sub.len = kl;
		sub.value = caller;
		if ((rc = vap_attr_number(&sub, vcr->caller)))
			return rc;
	}
	return 0;
}

static uint32_t pow10u(unsigned w)
{
	uint32_t p = 1;
	while (w--)
		p *= 10;
	return p;
}

static int range_check(const vap_range_t *r)
{
	size_t plen = strlen(r->prefix);
	if (r->width < 1 || r->width > 9)
		return VP_ERANGE;
	if (plen < 2 || r->prefix[0] != '+' || r->prefix[1] == '0')
		return VP_E164_CC;
	for (size_t i = 1; i < plen; i++)
		if (r->prefix[i] < '0' || r->prefix[i] > '9')
			return VP_E164_CHAR;
	if (plen - 1 + r->width > VP_E164_MAX_DIGITS)
		return VP_E164_LONG;
	if (plen - 1 + r->width < VP_E164_MIN_DIGITS)
		return VP_E164_SHORT;
	if (r->first > r->last || r->last >= pow10u(r->width))
		return VP_ERANGE;
	return 0;
}

/* NUMBER-RANGE: first u32, last u32, width u8, reserved u8[3], prefix. */
int vap_attr_range(const vap_attr_t *a, vap_range_t *r)
{
	vp_rd_t rd;
	uint8_t rsv[3];
	int rc;
	memset(r, 0, sizeof(*r));
	vp_rd_init(&rd, a->value, a->len);
	vp_rd_u32(&rd, &r->first);
	vp_rd_u32(&rd, &r->last);
	vp_rd_u8(&rd, &r->width);
	vp_rd_copy(&rd, rsv, 3);
	if ((rc = vp_rd_need(&rd, 0)))
		return rc;
	if ((rc = copy_str(rd.pos, vp_rd_left(&rd), r->prefix, sizeof(r->prefix))))
		return rc == VP_ETOOBIG ? VP_E164_LONG : rc;
	return range_check(r);
}

int vap_attr_action(const vap_attr_t *a, uint8_t *service, uint8_t *op)
{
	*service = *op = 0;
	if (a->len != 4)
		return VP_EBADLEN;
	if (a->value[0] != VAP_SERVICE_VSERVICE && a->value[0] != VAP_SERVICE_NUMBERS)
		return VP_EBADTYPE;
	if (a->value[1] != VAP_OP_ADD && a->value[1] != VAP_OP_WITHDRAW)
		return VP_EBADTYPE;
	*service = a->value[0];
	*op = a->value[1];
	return 0;
}

int vap_range_number(const vap_range_t *r, uint64_t i, char out[VP_E164_BUFLEN])
{
	int n;
	if (i >= vap_range_count(r))
		return VP_ERANGE;
	n = snprintf(out, VP_E164_BUFLEN, "%s%0*lu", r->prefix, (int)r->width,
	             (unsigned long)(r->first + i));
	if (n < 0 || n >= VP_E164_BUFLEN)
		return VP_E164_LONG;
	return 0;
}

static int parse_u32_digits(const char *s, size_t n, uint32_t *v)
{
	uint64_t x = 0;
	if (n == 0 || n > 9)
		return VP_ERANGE;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return VP_EMALFORMED;
		x = x * 10 + (unsigned)(s[i] - '0');
	}
	*v = (uint32_t)x;
	return 0;
}

int vap_range_parse(const char *s, const vp_e164_conf_t *conf, vap_range_t *r)
{
	const char *lb, *dash, *rb;
	char num[VP_E164_BUFLEN];
	size_t plen, w1, w2;
	int rc;
	memset(r, 0, sizeof(*r));
	if (!s)
		return VP_EINVAL;
	lb = strchr(s, '[');
	if (!lb) {
		/* A single number: a range of one over its last digit. */
		if ((rc = vp_e164_normalize(s, conf, num)))
			return rc;
		plen = strlen(num) - 1;
		memcpy(r->prefix, num, plen);
		r->prefix[plen] = '\0';
		r->first = r->last = (uint32_t)(num[plen] - '0');
		r->width = 1;
		return range_check(r);
	}
	dash = strchr(lb, '-');
	rb = strchr(lb, ']');
	if (!dash || !rb || dash > rb || rb[1] != '\0')
		return VP_EMALFORMED;
	plen = (size_t)(lb - s);
	if (plen >= sizeof(r->prefix))
		return VP_E164_LONG;
	memcpy(r->prefix, s, plen);
	r->prefix[plen] = '\0';
	w1 = (size_t)(dash - lb - 1);
	w2 = (size_t)(rb - dash - 1);
	if (w1 != w2)
		return VP_EMALFORMED;
	if ((rc = parse_u32_digits(lb + 1, w1, &r->first)) ||
	    (rc = parse_u32_digits(dash + 1, w2, &r->last)))
		return rc;
	r->width = (uint8_t)w1;
	return range_check(r);
}

/* ---- encoding --------------------------------------------------------------- */

int vap_enc_begin(vap_enc_t *e, void *buf, size_t cap, uint16_t type, const uint8_t tid[VAP_TID_LEN])
{
	vp_wr_init(&e->wr, buf, cap);
	vp_wr_u16(&e->wr, type & 0x3FFF);
	vp_wr_u16(&e->wr, 0);
	vp_wr_u32(&e->wr, VAP_MAGIC_COOKIE);
	return vp_wr_bytes(&e->wr, tid, VAP_TID_LEN);
}

int vap_enc_attr(vap_enc_t *e, uint16_t type, const void *value, size_t len)
{
	static const uint8_t zero[3];
	if (len > 0xFFFF)
		return vp_wr_fail(&e->wr, VP_ERANGE);
	vp_wr_u16(&e->wr, type);
	vp_wr_u16(&e->wr, (uint16_t)len);
	vp_wr_bytes(&e->wr, value, len);
	return vp_wr_bytes(&e->wr, zero, (4 - (len & 3)) & 3);
}

int vap_enc_u32(vap_enc_t *e, uint16_t type, uint32_t v)
{
	uint8_t b[4];
	put32(b, v);
	return vap_enc_attr(e, type, b, 4);
}

int vap_enc_u64(vap_enc_t *e, uint16_t type, uint64_t v)
{
	uint8_t b[8];
	put32(b, (uint32_t)(v >> 32));
	put32(b + 4, (uint32_t)v);
	return vap_enc_attr(e, type, b, 8);
}

int vap_enc_str(vap_enc_t *e, uint16_t type, const char *s)
{
	return vap_enc_attr(e, type, s, strlen(s));
}

int vap_enc_error(vap_enc_t *e, int code, const char *reason)
{
	uint8_t b[4 + 128];
	size_t n;
	if (code < 300 || code > 699)
		return vp_wr_fail(&e->wr, VP_ERANGE);
	if (!reason)
		reason = vap_error_reason(code);
	n = strnlen(reason, 128);
	b[0] = b[1] = 0;
	b[2] = (uint8_t)(code / 100);
	b[3] = (uint8_t)(code % 100);
	memcpy(b + 4, reason, n);
	return vap_enc_attr(e, VAP_ATTR_ERROR_CODE, b, 4 + n);
}

int vap_enc_unknown(vap_enc_t *e, const uint16_t *types, size_t n)
{
	uint8_t b[2 * 64];
	if (n > 64)
		n = 64;
	for (size_t i = 0; i < n; i++)
		put16(b + 2 * i, types[i]);
	return vap_enc_attr(e, VAP_ATTR_UNKNOWN_ATTRIBUTES, b, 2 * n);
}

int vap_enc_vcr(vap_enc_t *e, const vap_vcr_t *vcr)
{
	uint8_t b[20 + 2 * VP_E164_BUFLEN];
	size_t cl = strnlen(vcr->called, VP_E164_BUFLEN), kl = strnlen(vcr->caller, VP_E164_BUFLEN);
	if (cl >= VP_E164_BUFLEN || kl >= VP_E164_BUFLEN)
		return vp_wr_fail(&e->wr, VP_E164_LONG);
	put32(b, (uint32_t)(vcr->start_ms >> 32));
	put32(b + 4, (uint32_t)vcr->start_ms);
	put32(b + 8, (uint32_t)(vcr->stop_ms >> 32));
	put32(b + 12, (uint32_t)vcr->stop_ms);
	b[16] = vcr->direction;
	b[17] = (uint8_t)cl;
	b[18] = (uint8_t)kl;
	b[19] = 0;
	memcpy(b + 20, vcr->called, cl);
	memcpy(b + 20 + cl, vcr->caller, kl);
	return vap_enc_attr(e, VAP_ATTR_CALL_RECORD, b, 20 + cl + kl);
}

int vap_enc_range(vap_enc_t *e, const vap_range_t *r)
{
	uint8_t b[12 + VP_E164_BUFLEN];
	size_t pl = strnlen(r->prefix, VP_E164_BUFLEN);
	int rc = range_check(r);
	if (rc)
		return vp_wr_fail(&e->wr, rc);
	put32(b, r->first);
	put32(b + 4, r->last);
	b[8] = r->width;
	b[9] = b[10] = b[11] = 0;
	memcpy(b + 12, r->prefix, pl);
	return vap_enc_attr(e, VAP_ATTR_NUMBER_RANGE, b, 12 + pl);
}

int vap_enc_action(vap_enc_t *e, uint8_t service, uint8_t op)
{
	uint8_t b[4] = { service, op, 0, 0 };
	return vap_enc_attr(e, VAP_ATTR_PUBLISH_ACTION, b, 4);
}

long vap_enc_finish_mac(vap_enc_t *e, vap_mac_t *mac, bool fingerprint)
{
	vp_wr_t *w = &e->wr;
	size_t len;
	if (w->err)
		return w->err;
	if (vp_wr_len(w) < VAP_HDR_LEN)
		return VP_EINVAL;
	if (mac) {
		uint8_t mi[VAP_MI_LEN];
		const uint8_t *parts[1];
		size_t lens[1];
		len = vp_wr_len(w);
		if (len - VAP_HDR_LEN + 4 + VAP_MI_LEN > 0xFFFC)
			return VP_ETOOBIG;
		put16(w->start + 2, (uint16_t)(len - VAP_HDR_LEN + 4 + VAP_MI_LEN));
		parts[0] = w->start;
		lens[0] = len;
		if (vap_mac_compute(mac, parts, lens, 1, mi))
			return VP_ECRYPTO;
		if (vap_enc_attr(e, VAP_ATTR_MESSAGE_INTEGRITY, mi, VAP_MI_LEN))
			return w->err;
	}
	if (fingerprint) {
		uint32_t crc;
		len = vp_wr_len(w);
		if (len - VAP_HDR_LEN + 8 > 0xFFFC)
			return VP_ETOOBIG;
		put16(w->start + 2, (uint16_t)(len - VAP_HDR_LEN + 8));
		crc = vap_crc32(0, w->start, len) ^ VAP_FP_XOR;
		if (vap_enc_u32(e, VAP_ATTR_FINGERPRINT, crc))
			return w->err;
	}
	len = vp_wr_len(w);
	if (len - VAP_HDR_LEN > 0xFFFC)
		return VP_ETOOBIG;
	put16(w->start + 2, (uint16_t)(len - VAP_HDR_LEN));
	return (long)len;
}

long vap_enc_finish(vap_enc_t *e, const uint8_t *key, size_t keylen, bool fingerprint)
{
	vap_mac_t *mac = NULL;
	long rc;
	if (key && (rc = vap_mac_new(key, keylen, &mac)))
		return rc;
	rc = vap_enc_finish_mac(e, mac, fingerprint);
	vap_mac_free(mac);
	return rc;
}
