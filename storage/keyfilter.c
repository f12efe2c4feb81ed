#include "storage/keyfilter.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>

#include "common/errcode.h"
#include "common/rand.h"

#define BLOCK_WORDS 8       /* 512 bits: one cache line */
#define BITS_PER_KEY 12     /* at a layer's capacity: ~0.5-1 % false positives */
#define PROBES 6            /* bits set per key, 9 bits of the second hash each */

static void hash2(const st_keyfilter_t *f, const uint8_t *key, size_t len, uint64_t *h1,
                  uint64_t *h2)
{
	uint64_t h = f->seed ^ (uint64_t)len;
	while (len >= 8) {
		uint64_t w;
		memcpy(&w, key, 8);
		h = vp_fmix64(h ^ w);
		key += 8;
		len -= 8;
	}
	if (len) {
		uint64_t w = 0;
		memcpy(&w, key, len);
		h = vp_fmix64(h ^ w ^ 0x8000000000000000ull);
	}
	*h1 = h;
	*h2 = vp_splitmix64_mix(h ^ f->seed);
}

#define HUGE_PAGE ((size_t)2 << 20)

/*
 * Zeroed memory for a layer, in 2 MiB pages where the kernel allows: every
 * lookup touches a random line of a filter of up to tens of MiB, so with 4 KiB
 * pages nearly every one also missed the TLB.  The mapping is 2 MiB-aligned
 * (over-mapped, then trimmed) and its length a multiple of 2 MiB.
 */
static uint64_t *layer_map(size_t bytes, size_t *len_out)
{
	size_t len = (bytes + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
	uint8_t *p, *a;
	p = mmap(NULL, len + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	a = (uint8_t *)(((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
	if (a > p)
		munmap(p, (size_t)(a - p));
	if (a + len < p + len + HUGE_PAGE)
		munmap(a + len, (size_t)(p + len + HUGE_PAGE - (a + len)));
	(void)madvise(a, len, MADV_HUGEPAGE); /* a hint: 4 KiB pages work too */
	*len_out = len;
	return (uint64_t *)(void *)a;
}

static int layer_add(st_keyfilter_t *f, size_t n_blocks)
{
	st_kf_layer_t *l;
	if (f->n_layers == ST_KF_MAX_LAYERS || n_blocks > UINT32_MAX)
		return VP_ENOMEM;
	l = &f->layer[f->n_layers];
	l->blocks = layer_map(n_blocks * BLOCK_WORDS * sizeof(uint64_t), &l->map_len);
	if (!l->blocks)
		return VP_ENOMEM;
	l->n_blocks = n_blocks;
	l->cap = n_blocks * BLOCK_WORDS * 64 / BITS_PER_KEY;
	l->n = 0;
	f->n_layers++;
	return 0;
}

int st_kf_init(st_keyfilter_t *f, uint64_t expect_keys)
{
	size_t n_blocks;
	memset(f, 0, sizeof(*f));
	if (getrandom(&f->seed, sizeof(f->seed), 0) != (ssize_t)sizeof(f->seed))
		f->seed = vp_splitmix64_mix((uint64_t)(uintptr_t)f);
	if (expect_keys < ST_KF_MIN_KEYS)
		expect_keys = ST_KF_MIN_KEYS;
	if (expect_keys > ((uint64_t)1 << 36)) /* 96 GiB: the block index must fit 32 bits */
		expect_keys = (uint64_t)1 << 36;
	n_blocks = (size_t)((expect_keys * BITS_PER_KEY + BLOCK_WORDS * 64 - 1) / (BLOCK_WORDS * 64));
	return layer_add(f, n_blocks);
}

void st_kf_free(st_keyfilter_t *f)
{
	for (size_t i = 0; i < f->n_layers; i++)
		munmap(f->layer[i].blocks, f->layer[i].map_len);
	memset(f, 0, sizeof(*f));
}

/* The block of a key: the high half of h1 scaled to n_blocks (no power-of-two
 * rounding, so a layer sized for N keys takes N x 12 bits, not up to twice that). */
static uint64_t *block_of(const st_kf_layer_t *l, uint64_t h1)
{
	return l->blocks + (((h1 >> 32) * (uint64_t)l->n_blocks) >> 32) * BLOCK_WORDS;
}

static bool layer_has(const st_kf_layer_t *l, uint64_t h1, uint64_t h2)
{
	const uint64_t *b = block_of(l, h1);
	for (int i = 0; i < PROBES; i++, h2 >>= 9)
		if (!(b[(h2 >> 6) & 7] & (1ull << (h2 & 63))))
			return false;
	return true;
}

bool st_kf_maybe(const st_keyfilter_t *f, const uint8_t *key, size_t len)
{
	uint64_t h1, h2;
	if (!f->n_layers)
		return true; /* no filter: everything may be there */
	hash2(f, key, len, &h1, &h2);
	/* Newest first: recently written keys are the likeliest to be asked for again. */
	for (size_t i = f->n_layers; i-- > 0;)
		if (layer_has(&f->layer[i], h1, h2))
			return true;
	return false;
}

void st_kf_prefetch(const st_keyfilter_t *f, const uint8_t *key, size_t len)
{
	uint64_t h1, h2;
	if (!f->n_layers)
		return;
	hash2(f, key, len, &h1, &h2);
	for (size_t i = 0; i < f->n_layers; i++)
		__builtin_prefetch(block_of(&f->layer[i], h1), 1, 3);
}

int st_kf_check_add(st_keyfilter_t *f, const uint8_t *key, size_t len, bool *maybe)
{
	uint64_t h1, h2;
	st_kf_layer_t *l;
	uint64_t *b;
	int rc;
	*maybe = true;
	if (!f->n_layers)
		return VP_ENOMEM;
	hash2(f, key, len, &h1, &h2);
	for (size_t i = f->n_layers; i-- > 0;)
		if (layer_has(&f->layer[i], h1, h2))
			return 0;
	l = &f->layer[f->n_layers - 1];
	if (l->n >= l->cap) {
		if ((rc = layer_add(f, l->n_blocks * 2)))
			return rc;
		l = &f->layer[f->n_layers - 1];
	}
	b = block_of(l, h1);
	for (int i = 0; i < PROBES; i++, h2 >>= 9)
		b[(h2 >> 6) & 7] |= 1ull << (h2 & 63);
	l->n++;
	f->added++;
	*maybe = false;
	return 0;
}

int st_kf_add(st_keyfilter_t *f, const uint8_t *key, size_t len)
{
	bool maybe;
	return st_kf_check_add(f, key, len, &maybe);
}

size_t st_kf_bytes(const st_keyfilter_t *f)
{
	size_t n = 0;
	for (size_t i = 0; i < f->n_layers; i++)
		n += f->layer[i].map_len;
	return n;
}
