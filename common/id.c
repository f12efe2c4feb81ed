#include "common/id.h"

#include <openssl/sha.h>

#include "common/errcode.h"
#include "common/hex.h"

vp_id_t vp_id_add_pow2(const vp_id_t *id, unsigned i)
{
	return vp_id_from_u128(vp_id_to_u128(id) + ((vp_u128_t)1 << (i & 127)));
}

bool vp_id_in_oc(const vp_id_t *x, const vp_id_t *a, const vp_id_t *b)
{
	vp_u128_t span = vp_id_dist(a, b);
	vp_u128_t off = vp_id_dist(a, x);
	if (span == 0)
		return true;
	return off != 0 && off <= span;
}

bool vp_id_in_oo(const vp_id_t *x, const vp_id_t *a, const vp_id_t *b)
{
	vp_u128_t span = vp_id_dist(a, b);
	vp_u128_t off = vp_id_dist(a, x);
	if (span == 0)
		return off != 0;
	return off != 0 && off < span;
}

bool vp_id_in_co(const vp_id_t *x, const vp_id_t *a, const vp_id_t *b)
{
	vp_u128_t span = vp_id_dist(a, b);
	vp_u128_t off = vp_id_dist(a, x);
	if (span == 0)
		return true;
	return off < span;
}

uint32_t vp_id_fraction_ppb(const vp_id_t *pred, const vp_id_t *self)
{
	vp_u128_t d = vp_id_dist(pred, self);
	/* floor(d * 1e9 / 2^128), exactly, without a 158-bit product. */
	vp_u128_t hi = d >> 64, lo = d & UINT64_MAX;
	vp_u128_t q;
	if (d == 0)
		return 1000000000u;
	q = (hi * 1000000000u + ((lo * 1000000000u) >> 64)) >> 64;
	return (uint32_t)q;
}

char *vp_id_to_hex(const vp_id_t *id, char out[VP_ID_HEX_LEN + 1])
{
	vp_hex_encode(id->b, VP_ID_LEN, out, VP_ID_HEX_LEN + 1);
	return out;
}

int vp_id_from_hex(const char *hex, vp_id_t *id)
{
	size_t n;
	if (!hex || strlen(hex) != VP_ID_HEX_LEN)
		return VP_EHEX;
	return vp_hex_decode(hex, VP_ID_HEX_LEN, id->b, VP_ID_LEN, &n);
}

vp_id_t vp_id_from_name(const void *name, size_t len)
{
	uint8_t md[SHA_DIGEST_LENGTH];
	vp_id_t id;
	SHA1(name, len, md);
	memcpy(id.b, md, VP_ID_LEN);
	return id;
}
