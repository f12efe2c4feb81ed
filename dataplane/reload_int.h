/*
 * dataplane/reload_int.h - helpers shared by the codec's .c files (not public).
 */
#ifndef VP_DATAPLANE_RELOAD_INT_H
#define VP_DATAPLANE_RELOAD_INT_H

#include "dataplane/reload.h"

/* Decode one element from rd into out; arg is element-specific. */
typedef int (*rl_elem_dec_fn)(vp_rd_t *rd, const void *arg, void *out);

/* The raw view of a decoded list. */
typedef struct rl_raw_list {
	const uint8_t *raw;
	uint32_t len;
	uint32_t count;
} rl_raw_list_t;

/*
 * Read a vector with a lenbytes prefix and check that it is an exact sequence
 * of elements (fn decodes one into scratch).  Errors are recorded in rd.
 */
int rl_list_decode(vp_rd_t *rd, unsigned lenbytes, rl_elem_dec_fn fn, const void *arg,
                   void *scratch, rl_raw_list_t *out);

/* Advance an iterator with fn (raw part) or copy the next item. */
int rl_iter_next(rl_iter_t *it, rl_elem_dec_fn fn, const void *arg, void *out);

#define RL_SET_LIST(list, r) \
	do { \
		(list).raw = (r).raw; \
		(list).raw_len = (r).len; \
		(list).raw_count = (r).count; \
		(list).items = NULL; \
		(list).n_items = 0; \
	} while (0)

/* Encode a list: its raw bytes, then each item with encfn(wr, item). */
#define RL_LIST_ENCODE(wr, lenbytes, list, encfn) \
	do { \
		size_t mark_ = vp_wr_vec_begin((wr), (lenbytes)); \
		vp_wr_bytes((wr), (list)->raw, (list)->raw_len); \
		for (uint32_t i_ = 0; (list)->items && i_ < (list)->n_items && !(wr)->err; i_++) \
			encfn((wr), &(list)->items[i_]); \
		vp_wr_vec_end((wr), mark_, (lenbytes)); \
	} while (0)

/* Read an RFC 6940 Boolean: VP_EMALFORMED unless 0 or 1. */
static inline int rl_rd_bool(vp_rd_t *rd, bool *b)
{
	uint8_t v;
	if (vp_rd_u8(rd, &v))
		return rd->err;
	if (v > 1) {
		*b = false;
		return vp_rd_fail(rd, VP_EMALFORMED);
	}
	*b = v != 0;
	return 0;
}

/* opaque<..> with an lenbytes prefix into an rl_bytes_t. */
static inline int rl_rd_opaque(vp_rd_t *rd, unsigned lenbytes, rl_bytes_t *b)
{
	size_t n;
	vp_rd_vec_bytes(rd, lenbytes, &b->p, &n);
	b->len = (uint32_t)n;
	return rd->err;
}

static inline int rl_wr_opaque(vp_wr_t *wr, unsigned lenbytes, const rl_bytes_t *b)
{
	return vp_wr_vec_bytes(wr, lenbytes, b->p, b->len);
}

static inline int rl_rd_node_id(vp_rd_t *rd, vp_id_t *id)
{
	return vp_rd_copy(rd, id->b, RL_NODE_ID_LEN);
}

/* Fail rd with err (keeping an earlier error) and return the sticky error. */
static inline int rl_fail(vp_rd_t *rd, int err)
{
	return vp_rd_fail(rd, err);
}

/* Propagate a sub-reader's error, or VP_ETRAILING if it was not consumed. */
static inline int rl_sub_done(vp_rd_t *rd, vp_rd_t *sub)
{
	int e = vp_rd_done(sub);
	if (e)
		return vp_rd_fail(rd, e);
	return rd->err;
}

#endif
