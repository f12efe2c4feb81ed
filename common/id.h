/*
 * common/id.h - 128-bit Node-IDs and Resource-IDs and the Chord ring arithmetic.
 *
 * An id is 16 big-endian bytes (RFC 6940 node-id-length 16; Chord-RELOAD works
 * on a 128-bit ring).  Arithmetic is modulo 2^128.  Intervals follow Chord:
 * (a, b] with a == b denotes the whole ring, so a lone node is responsible for
 * everything.
 */
#ifndef VP_COMMON_ID_H
#define VP_COMMON_ID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define VP_ID_LEN 16
#define VP_ID_HEX_LEN 32 /* characters, without the terminating NUL */

typedef struct vp_id {
	uint8_t b[VP_ID_LEN];
} vp_id_t;

typedef unsigned __int128 vp_u128_t;

static inline vp_u128_t vp_id_to_u128(const vp_id_t *id)
{
	vp_u128_t v = 0;
	for (int i = 0; i < VP_ID_LEN; i++)
		v = v << 8 | id->b[i];
	return v;
}

static inline vp_id_t vp_id_from_u128(vp_u128_t v)
{
	vp_id_t id;
	for (int i = VP_ID_LEN - 1; i >= 0; i--) {
		id.b[i] = (uint8_t)v;
		v >>= 8;
	}
	return id;
}

/*! \brief Total order on the ring's labels (not ring distance): <0, 0, >0 like memcmp. */
static inline int vp_id_cmp(const vp_id_t *a, const vp_id_t *b)
{
	return memcmp(a->b, b->b, VP_ID_LEN);
}

static inline bool vp_id_eq(const vp_id_t *a, const vp_id_t *b)
{
	return memcmp(a->b, b->b, VP_ID_LEN) == 0;
}

/*! \brief a + b mod 2^128. */
static inline vp_id_t vp_id_add(const vp_id_t *a, const vp_id_t *b)
{
	return vp_id_from_u128(vp_id_to_u128(a) + vp_id_to_u128(b));
}

/*! \brief Clockwise distance from \p from to \p to: (to - from) mod 2^128. */
static inline vp_u128_t vp_id_dist(const vp_id_t *from, const vp_id_t *to)
{
	return vp_id_to_u128(to) - vp_id_to_u128(from);
}

/*! \brief id + 2^i mod 2^128 (finger targets); i must be 0..127. */
vp_id_t vp_id_add_pow2(const vp_id_t *id, unsigned i);

/*! \brief x in (a, b] on the ring; a == b means the whole ring. */
bool vp_id_in_oc(const vp_id_t *x, const vp_id_t *a, const vp_id_t *b);

/*! \brief x in (a, b) on the ring; a == b means every id but a. */
bool vp_id_in_oo(const vp_id_t *x, const vp_id_t *a, const vp_id_t *b);

/*! \brief x in [a, b) on the ring; a == b means the whole ring. */
bool vp_id_in_co(const vp_id_t *x, const vp_id_t *a, const vp_id_t *b);

/*!
 * \brief Fraction of the ring in (pred, self], in parts per billion, rounded down
 * (the Probe responsible_set unit).  pred == self gives 1,000,000,000.
 */
uint32_t vp_id_fraction_ppb(const vp_id_t *pred, const vp_id_t *self);

/*! \brief Lower-case hex, 32 characters plus NUL into \p out (33 bytes). Returns out. */
char *vp_id_to_hex(const vp_id_t *id, char out[VP_ID_HEX_LEN + 1]);

/*! \brief Parse exactly 32 hex digits (either case). VP_EHEX on anything else. */
int vp_id_from_hex(const char *hex, vp_id_t *id);

/*! \brief Resource-ID of a name: the first 16 bytes of SHA-1(name) (RFC 6940 Chord). */
vp_id_t vp_id_from_name(const void *name, size_t len);

#endif
