/*
 * common/rand.h - the small, fast, non-cryptographic mixers and generators the
 * project uses for hash-table slots, simulated randomness and jitter.
 *
 * None of these is fit for secrets: keys, salts, nonces and transaction ids come
 * from OpenSSL's RAND_bytes.  Each function is a published, well-tested design
 * so results (the simulator's seeded runs, say) are reproducible everywhere.
 */
#ifndef VP_COMMON_RAND_H
#define VP_COMMON_RAND_H

#include <stdint.h>

/*! \brief MurmurHash3's 64-bit finaliser: a bijective avalanche mix (hash-table slots). */
static inline uint64_t vp_fmix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

/*! \brief SplitMix64's output function (Stafford's mix 13), also a bijective mix. */
static inline uint64_t vp_splitmix64_mix(uint64_t x)
{
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/*! \brief SplitMix64 generator: advance *state by the golden gamma and mix it (seeding other generators). */
static inline uint64_t vp_splitmix64_next(uint64_t *state)
{
	*state += 0x9e3779b97f4a7c15ull;
	return vp_splitmix64_mix(*state);
}

/*! \brief xorshift64* generator; *state must never be 0. */
static inline uint64_t vp_xorshift64s_next(uint64_t *state)
{
	*state ^= *state >> 12;
	*state ^= *state << 25;
	*state ^= *state >> 27;
	return *state * 0x2545f4914f6cdd1dull;
}

/*! \brief A uniform double in [0, 1) from the top 53 bits of \p r. */
static inline double vp_rand_unit(uint64_t r)
{
	return (double)(r >> 11) * (1.0 / 9007199254740992.0);
}

#endif
