#include "storage/record.h"

#include <stdlib.h>
#include <string.h>

#include "common/buf.h"

void st_rec_free(st_rec_t *rec)
{
	free(rec->e);
	rec->e = NULL;
	rec->n = rec->cap = 0;
}

int st_rec_reserve(st_rec_t *rec, size_t n)
{
	st_entry_t *ne;
	size_t cap = rec->cap ? rec->cap : 8;
	if (n <= rec->cap)
		return 0;
	while (cap < n)
		cap *= 2;
	ne = realloc(rec->e, cap * sizeof(*ne));
	if (!ne)
		return VP_ENOMEM;
	rec->e = ne;
	rec->cap = cap;
	return 0;
}

int st_rec_keycmp(uint8_t model, const st_entry_t *a, const st_entry_t *b)
{
	size_t n;
	int c;
	if (model == ST_MODEL_ARRAY)
		return a->index < b->index ? -1 : a->index > b->index;
	if (model != ST_MODEL_DICTIONARY)
		return 0;
	n = a->key_len < b->key_len ? a->key_len : b->key_len;
	c = n ? memcmp(a->key, b->key, n) : 0; /* an empty key may be NULL */
	if (c)
		return c;
	return a->key_len < b->key_len ? -1 : a->key_len > b->key_len;
}

int st_rec_decode(const uint8_t *buf, size_t len, st_rec_t *rec)
{
	vp_rd_t rd;
	uint8_t format;
	uint32_t count;
	vp_rd_init(&rd, buf, len);
	vp_rd_u8(&rd, &format);
	vp_rd_u8(&rd, &rec->model);
	vp_rd_u64(&rd, &rec->generation);
	vp_rd_u32(&rd, &count);
	rec->n = 0;
	if (rd.err)
		return rd.err;
	if (format != ST_REC_FORMAT || rec->model < ST_MODEL_SINGLE || rec->model > ST_MODEL_DICTIONARY)
		return VP_EMALFORMED;
	/* Never trust count for an allocation: each entry needs ST_REC_ENTRY_FIXED bytes. */
	if (count > vp_rd_left(&rd) / ST_REC_ENTRY_FIXED)
		return VP_ETRUNC;
	if (st_rec_reserve(rec, count))
		return VP_ENOMEM;
	for (uint32_t i = 0; i < count; i++) {
		st_entry_t *e = &rec->e[i];
		uint8_t flags;
		size_t klen, vlen, slen;
		const uint8_t *k;
		memset(e, 0, sizeof(*e));
		vp_rd_u8(&rd, &flags);
		vp_rd_u8(&rd, &e->replica_number);
		vp_rd_u64(&rd, &e->storage_time);
		vp_rd_u32(&rd, &e->lifetime);
		vp_rd_u64(&rd, &e->expires_ms);
		vp_rd_copy(&rd, e->owner.b, VP_ID_LEN);
		vp_rd_vec_bytes(&rd, 2, &k, &klen);
		vp_rd_vec_bytes(&rd, 4, &e->value, &vlen);
		vp_rd_vec_bytes(&rd, 4, &e->sig, &slen);
		if (rd.err)
			return rd.err;
		if (flags & ~1u)
			return VP_EMALFORMED;
		e->exists = flags & 1u;
		e->value_len = (uint32_t)vlen;
		e->sig_len = (uint32_t)slen;
		switch (rec->model) {
		case ST_MODEL_SINGLE:
			if (klen != 0 || count > 1)
				return VP_EMALFORMED;
			break;
		case ST_MODEL_ARRAY:
			if (klen != 4)
				return VP_EMALFORMED;
			e->index = (uint32_t)k[0] << 24 | (uint32_t)k[1] << 16 | (uint32_t)k[2] << 8 | k[3];
			break;
		default:
			e->key = k;
			e->key_len = (uint16_t)klen;
			break;
		}
		if (i > 0 && st_rec_keycmp(rec->model, &rec->e[i - 1], e) >= 0)
			return VP_EMALFORMED;
		rec->n = i + 1;
	}
	return vp_rd_done(&rd);
}

static size_t keylen_of(uint8_t model, const st_entry_t *e)
{
	return model == ST_MODEL_ARRAY ? 4 : model == ST_MODEL_DICTIONARY ? e->key_len : 0;
}

size_t st_rec_size(const st_rec_t *rec)
{
	size_t n = ST_REC_HDR_LEN;
	for (size_t i = 0; i < rec->n; i++)
		n += ST_REC_ENTRY_FIXED + keylen_of(rec->model, &rec->e[i]) + rec->e[i].value_len +
		     rec->e[i].sig_len;
	return n;
}

int st_rec_encode(const st_rec_t *rec, uint8_t *out, size_t cap, size_t *len)
{
	vp_wr_t wr;
	vp_wr_init(&wr, out, cap);
	vp_wr_u8(&wr, ST_REC_FORMAT);
	vp_wr_u8(&wr, rec->model);
	vp_wr_u64(&wr, rec->generation);
	vp_wr_u32(&wr, (uint32_t)rec->n);
	for (size_t i = 0; i < rec->n; i++) {
		const st_entry_t *e = &rec->e[i];
		vp_wr_u8(&wr, e->exists ? 1 : 0);
		vp_wr_u8(&wr, e->replica_number);
		vp_wr_u64(&wr, e->storage_time);
		vp_wr_u32(&wr, e->lifetime);
		vp_wr_u64(&wr, e->expires_ms);
		vp_wr_bytes(&wr, e->owner.b, VP_ID_LEN);
		if (rec->model == ST_MODEL_ARRAY) {
			vp_wr_u16(&wr, 4);
			vp_wr_u32(&wr, e->index);
		} else if (rec->model == ST_MODEL_DICTIONARY) {
			vp_wr_vec_bytes(&wr, 2, e->key, e->key_len);
		} else {
			vp_wr_u16(&wr, 0);
		}
		vp_wr_vec_bytes(&wr, 4, e->value, e->value_len);
		vp_wr_vec_bytes(&wr, 4, e->sig, e->sig_len);
	}
	*len = wr.err ? 0 : vp_wr_len(&wr);
	return wr.err;
}

uint64_t st_rec_min_expiry(const st_rec_t *rec)
{
	uint64_t m = UINT64_MAX;
	for (size_t i = 0; i < rec->n; i++)
		if (rec->e[i].expires_ms < m)
			m = rec->e[i].expires_ms;
	return m;
}
