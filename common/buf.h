/*
 * common/buf.h - bounds-checked big-endian byte reader and writer.
 *
 * Every decoder in the project reads through vp_rd_t and every encoder writes
 * through vp_wr_t; nothing else touches raw wire pointers.  Both carry a sticky
 * error: after the first failure every further call is a no-op that returns the
 * same error and yields zeroes, so a parser can read a whole structure and check
 * once, and can never read or write past its buffer.
 *
 * Reads are zero-copy: vp_rd_bytes()/vp_rd_vec() hand out pointers into the
 * input buffer, valid as long as that buffer is.
 */
#ifndef VP_COMMON_BUF_H
#define VP_COMMON_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/errcode.h"

typedef struct vp_rd {
	const uint8_t *pos;
	const uint8_t *end;
	int err;
} vp_rd_t;

typedef struct vp_wr {
	uint8_t *start;
	uint8_t *pos;
	uint8_t *end;
	int err;
} vp_wr_t;

/* ---- reader ---------------------------------------------------------- */

/*! \brief Reader over [data, data+len). */
static inline void vp_rd_init(vp_rd_t *rd, const void *data, size_t len)
{
	/* A NULL buffer (an empty vector after an error) becomes an empty one. */
	rd->pos = data ? (const uint8_t *)data : (const uint8_t *)"";
	rd->end = rd->pos + (data ? len : 0);
	rd->err = 0;
}

/*! \brief Bytes not yet read (0 after an error). */
static inline size_t vp_rd_left(const vp_rd_t *rd)
{
	return rd->err ? 0 : (size_t)(rd->end - rd->pos);
}

/*! \brief Record \p err (first error wins) and return the sticky error. */
static inline int vp_rd_fail(vp_rd_t *rd, int err)
{
	if (!rd->err)
		rd->err = err;
	return rd->err;
}

/*! \brief Check that \p n bytes can be read; sets VP_ETRUNC otherwise. */
static inline int vp_rd_need(vp_rd_t *rd, size_t n)
{
	if (rd->err)
		return rd->err;
	if ((size_t)(rd->end - rd->pos) < n)
		return vp_rd_fail(rd, VP_ETRUNC);
	return 0;
}

static inline int vp_rd_u8(vp_rd_t *rd, uint8_t *v)
{
	if (vp_rd_need(rd, 1)) {
		*v = 0;
		return rd->err;
	}
	*v = rd->pos[0];
	rd->pos += 1;
	return 0;
}

static inline int vp_rd_u16(vp_rd_t *rd, uint16_t *v)
{
	if (vp_rd_need(rd, 2)) {
		*v = 0;
		return rd->err;
	}
	*v = (uint16_t)((unsigned)rd->pos[0] << 8 | rd->pos[1]);
	rd->pos += 2;
	return 0;
}

static inline int vp_rd_u24(vp_rd_t *rd, uint32_t *v)
{
	if (vp_rd_need(rd, 3)) {
		*v = 0;
		return rd->err;
	}
	*v = (uint32_t)rd->pos[0] << 16 | (uint32_t)rd->pos[1] << 8 | rd->pos[2];
	rd->pos += 3;
	return 0;
}

static inline int vp_rd_u32(vp_rd_t *rd, uint32_t *v)
{
	if (vp_rd_need(rd, 4)) {
		*v = 0;
		return rd->err;
	}
	*v = (uint32_t)rd->pos[0] << 24 | (uint32_t)rd->pos[1] << 16 |
	     (uint32_t)rd->pos[2] << 8 | rd->pos[3];
	rd->pos += 4;
	return 0;
}

static inline int vp_rd_u64(vp_rd_t *rd, uint64_t *v)
{
	uint32_t hi, lo;
	if (vp_rd_u32(rd, &hi) || vp_rd_u32(rd, &lo)) {
		*v = 0;
		return rd->err;
	}
	*v = (uint64_t)hi << 32 | lo;
	return 0;
}

/*! \brief Zero-copy read of \p n bytes: *p points into the input. */
static inline int vp_rd_bytes(vp_rd_t *rd, size_t n, const uint8_t **p)
{
	if (vp_rd_need(rd, n)) {
		*p = NULL;
		return rd->err;
	}
	*p = rd->pos;
	rd->pos += n;
	return 0;
}

/*! \brief Copy \p n bytes out of the input into \p dst. */
static inline int vp_rd_copy(vp_rd_t *rd, void *dst, size_t n)
{
	const uint8_t *p;
	if (vp_rd_bytes(rd, n, &p)) {
		memset(dst, 0, n);
		return rd->err;
	}
	memcpy(dst, p, n);
	return 0;
}

/*! \brief Read a length prefix of \p lenbytes (1..4) bytes. */
static inline int vp_rd_len(vp_rd_t *rd, unsigned lenbytes, size_t *len)
{
	uint32_t v = 0;
	uint8_t b8;
	uint16_t b16;
	switch (lenbytes) {
	case 1: vp_rd_u8(rd, &b8); v = b8; break;
	case 2: vp_rd_u16(rd, &b16); v = b16; break;
	case 3: vp_rd_u24(rd, &v); break;
	case 4: vp_rd_u32(rd, &v); break;
	default: vp_rd_fail(rd, VP_EINVAL); break;
	}
	*len = rd->err ? 0 : v;
	return rd->err;
}

/*!
 * \brief Read a TLS-style vector `opaque x<0..2^(8*lenbytes)-1>`.
 * The body is returned through p and len (zero-copy); a length that overruns is VP_ETRUNC.
 */
static inline int vp_rd_vec_bytes(vp_rd_t *rd, unsigned lenbytes,
                                  const uint8_t **p, size_t *len)
{
	if (vp_rd_len(rd, lenbytes, len) || vp_rd_bytes(rd, *len, p)) {
		*p = NULL;
		*len = 0;
	}
	return rd->err;
}

/*! \brief Like vp_rd_vec_bytes(), but returns a sub-reader over the vector's body. */
static inline int vp_rd_vec(vp_rd_t *rd, unsigned lenbytes, vp_rd_t *sub)
{
	const uint8_t *p;
	size_t len;
	vp_rd_vec_bytes(rd, lenbytes, &p, &len);
	vp_rd_init(sub, p, len);
	sub->err = rd->err;
	return rd->err;
}

/*! \brief Sub-reader over exactly the next \p n bytes (for explicit `length` fields). */
static inline int vp_rd_sub(vp_rd_t *rd, size_t n, vp_rd_t *sub)
{
	const uint8_t *p;
	vp_rd_bytes(rd, n, &p);
	vp_rd_init(sub, p, rd->err ? 0 : n);
	sub->err = rd->err;
	return rd->err;
}

/*! \brief The reader's error, or VP_ETRAILING if input remains unread. */
static inline int vp_rd_done(vp_rd_t *rd)
{
	if (!rd->err && rd->pos != rd->end)
		rd->err = VP_ETRAILING;
	return rd->err;
}

/* ---- writer ---------------------------------------------------------- */

/*! \brief Writer into [buf, buf+cap). */
static inline void vp_wr_init(vp_wr_t *wr, void *buf, size_t cap)
{
	wr->start = wr->pos = (uint8_t *)buf;
	wr->end = wr->start + cap;
	wr->err = 0;
}

/*! \brief Bytes written so far. */
static inline size_t vp_wr_len(const vp_wr_t *wr)
{
	return (size_t)(wr->pos - wr->start);
}

static inline int vp_wr_fail(vp_wr_t *wr, int err)
{
	if (!wr->err)
		wr->err = err;
	return wr->err;
}

/*! \brief Reserve \p n bytes; returns NULL (and sets VP_ESPACE) if they do not fit. */
static inline uint8_t *vp_wr_reserve(vp_wr_t *wr, size_t n)
{
	uint8_t *p;
	if (wr->err)
		return NULL;
	if ((size_t)(wr->end - wr->pos) < n) {
		vp_wr_fail(wr, VP_ESPACE);
		return NULL;
	}
	p = wr->pos;
	wr->pos += n;
	return p;
}

static inline int vp_wr_u8(vp_wr_t *wr, uint8_t v)
{
	uint8_t *p = vp_wr_reserve(wr, 1);
	if (p)
		p[0] = v;
	return wr->err;
}

static inline int vp_wr_u16(vp_wr_t *wr, uint16_t v)
{
	uint8_t *p = vp_wr_reserve(wr, 2);
	if (p) {
		p[0] = (uint8_t)(v >> 8);
		p[1] = (uint8_t)v;
	}
	return wr->err;
}

static inline int vp_wr_u24(vp_wr_t *wr, uint32_t v)
{
	uint8_t *p;
	if (v > 0xFFFFFFu)
		return vp_wr_fail(wr, VP_ERANGE);
	p = vp_wr_reserve(wr, 3);
	if (p) {
		p[0] = (uint8_t)(v >> 16);
		p[1] = (uint8_t)(v >> 8);
		p[2] = (uint8_t)v;
	}
	return wr->err;
}

static inline int vp_wr_u32(vp_wr_t *wr, uint32_t v)
{
	uint8_t *p = vp_wr_reserve(wr, 4);
	if (p) {
		p[0] = (uint8_t)(v >> 24);
		p[1] = (uint8_t)(v >> 16);
		p[2] = (uint8_t)(v >> 8);
		p[3] = (uint8_t)v;
	}
	return wr->err;
}

static inline int vp_wr_u64(vp_wr_t *wr, uint64_t v)
{
	vp_wr_u32(wr, (uint32_t)(v >> 32));
	return vp_wr_u32(wr, (uint32_t)v);
}

static inline int vp_wr_bytes(vp_wr_t *wr, const void *src, size_t n)
{
	uint8_t *p = vp_wr_reserve(wr, n);
	if (p && n)
		memcpy(p, src, n);
	return wr->err;
}

/*! \brief Write a length prefix of \p lenbytes followed by \p n bytes; VP_ERANGE if n does not fit. */
static inline int vp_wr_vec_bytes(vp_wr_t *wr, unsigned lenbytes, const void *src, size_t n)
{
	if (lenbytes < 1 || lenbytes > 4)
		return vp_wr_fail(wr, VP_EINVAL);
	if (lenbytes < 4 && n >> (8 * lenbytes))
		return vp_wr_fail(wr, VP_ERANGE);
	if (n > UINT32_MAX)
		return vp_wr_fail(wr, VP_ERANGE);
	switch (lenbytes) {
	case 1: vp_wr_u8(wr, (uint8_t)n); break;
	case 2: vp_wr_u16(wr, (uint16_t)n); break;
	case 3: vp_wr_u24(wr, (uint32_t)n); break;
	default: vp_wr_u32(wr, (uint32_t)n); break;
	}
	return vp_wr_bytes(wr, src, n);
}

/*!
 * \brief Open a vector whose length is not known yet: reserves \p lenbytes and
 * returns the mark to pass to vp_wr_vec_end().
 */
static inline size_t vp_wr_vec_begin(vp_wr_t *wr, unsigned lenbytes)
{
	size_t mark = vp_wr_len(wr);
	vp_wr_reserve(wr, lenbytes);
	return mark;
}

/*! \brief Close the vector opened at \p mark: patch its length (VP_ERANGE if too long). */
static inline int vp_wr_vec_end(vp_wr_t *wr, size_t mark, unsigned lenbytes)
{
	size_t n;
	uint8_t *p;
	if (wr->err)
		return wr->err;
	if (lenbytes < 1 || lenbytes > 4)
		return vp_wr_fail(wr, VP_EINVAL);
	n = vp_wr_len(wr) - mark - lenbytes;
	if ((lenbytes < 4 && n >> (8 * lenbytes)) || n > UINT32_MAX)
		return vp_wr_fail(wr, VP_ERANGE);
	p = wr->start + mark;
	for (unsigned i = 0; i < lenbytes; i++)
		p[i] = (uint8_t)(n >> (8 * (lenbytes - 1 - i)));
	return 0;
}

#endif
