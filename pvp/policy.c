/*
 * pvp/policy.c - domain lists and failed-handshake rate limits.
 */
#include "pvp/policy.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "common/errcode.h"
#include "common/rand.h"
#include "pvp/ticket.h"

#define PROBE 8 /* slots probed per key: collisions beyond this evict the stalest */

typedef struct list_entry {
	char domain[PVP_DOMAIN_MAX + 1];
	uint32_t threshold;
} list_entry_t;

typedef struct rate_slot {
	uint64_t hash;       /* 0 = empty */
	uint64_t window;     /* window index the count belongs to */
	uint32_t fails;
} rate_slot_t;

struct pvp_policy {
	pvp_policy_conf_t conf;
	list_entry_t *list;
	size_t nlist, caplist;
	pthread_mutex_t lock;     /* the rate table */
	pthread_rwlock_t list_lock; /* the domain list: looked up by workers, changed on reload */
	uint64_t seed[2];    /* keyed hash: an attacker cannot aim collisions at a victim's slot */
	rate_slot_t *slots;
};

int pvp_policy_new(const pvp_policy_conf_t *conf, pvp_policy_t **out)
{
	pvp_policy_t *p = calloc(1, sizeof(*p));
	uint32_t slots;
	*out = NULL;
	if (!p)
		return VP_ENOMEM;
	if (conf)
		p->conf = *conf;
	if (!p->conf.min_entropy_cbits)
		p->conf.min_entropy_cbits = 1600;
	if (!p->conf.peer_fail_limit)
		p->conf.peer_fail_limit = 30;
	if (!p->conf.number_fail_limit)
		p->conf.number_fail_limit = 10;
	if (!p->conf.window_s)
		p->conf.window_s = 3600;
	slots = p->conf.table_slots ? p->conf.table_slots : 4096;
	if (slots < PROBE || (slots & (slots - 1))) {
		free(p);
		return VP_EINVAL;
	}
	p->conf.table_slots = slots;
	p->slots = calloc(slots, sizeof(rate_slot_t));
	if (!p->slots) {
		free(p);
		return VP_ENOMEM;
	}
	if (RAND_bytes((unsigned char *)p->seed, sizeof(p->seed)) != 1) {
		free(p->slots);
		free(p);
		return VP_ECRYPTO;
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_rwlock_init(&p->list_lock, NULL);
	*out = p;
	return 0;
}

void pvp_policy_free(pvp_policy_t *p)
{
	if (!p)
		return;
	pthread_mutex_destroy(&p->lock);
	pthread_rwlock_destroy(&p->list_lock);
	free(p->list);
	free(p->slots);
	free(p);
}

int pvp_policy_list(pvp_policy_t *p, const char *domain, uint32_t threshold_cbits)
{
	char d[PVP_DOMAIN_MAX + 1];
	int rc = 0;
	if (pvp_domain_normalize(domain, d))
		return VP_EINVAL;
	pthread_rwlock_wrlock(&p->list_lock);
	for (size_t i = 0; i < p->nlist; i++) {
		if (!strcmp(p->list[i].domain, d)) {
			p->list[i].threshold = threshold_cbits;
			goto out;
		}
	}
	if (p->nlist == p->caplist) {
		size_t nc = p->caplist ? p->caplist * 2 : 16;
		list_entry_t *nl = realloc(p->list, nc * sizeof(*nl));
		if (!nl) {
			rc = VP_ENOMEM;
			goto out;
		}
		p->list = nl;
		p->caplist = nc;
	}
	memcpy(p->list[p->nlist].domain, d, sizeof(d));
	p->list[p->nlist].threshold = threshold_cbits;
	p->nlist++;
out:
	pthread_rwlock_unlock(&p->list_lock);
	return rc;
}

/* Does list entry e cover domain d (equal, or d ends with "." e)? */
static bool covers(const char *e, const char *d, size_t dl)
{
	size_t el = strlen(e);
	if (el > dl)
		return false;
	if (strcmp(d + dl - el, e) != 0)
		return false;
	return el == dl || d[dl - el - 1] == '.';
}

int pvp_policy_threshold(const pvp_policy_t *p, const char *domain, uint32_t *threshold_cbits)
{
	char d[PVP_DOMAIN_MAX + 1];
	size_t dl, best = 0;
	uint32_t t = p->conf.mode == PVP_LIST_WHITE ? PVP_THRESHOLD_NEVER : p->conf.min_entropy_cbits;
	if (pvp_domain_normalize(domain, d))
		return VP_EINVAL;
	dl = strlen(d);
	/* The lock is not part of the policy's logical state: const callers may take it. */
	pthread_rwlock_rdlock((pthread_rwlock_t *)&p->list_lock);
	for (size_t i = 0; i < p->nlist; i++) {
		size_t el = strlen(p->list[i].domain);
		if (el > best && covers(p->list[i].domain, d, dl)) {
			best = el;
			t = p->list[i].threshold;
		}
	}
	pthread_rwlock_unlock((pthread_rwlock_t *)&p->list_lock);
	*threshold_cbits = t;
	return t == PVP_THRESHOLD_NEVER ? VP_EREFUSED : 0;
}

/* SipHash would do; a keyed FNV-1a variant with a final mix is enough here. */
static uint64_t key_hash(const pvp_policy_t *p, pvp_rate_kind_t kind, const char *key)
{
	uint64_t h = p->seed[0] ^ ((uint64_t)kind * 0x9e3779b97f4a7c15ull);
	for (const unsigned char *s = (const unsigned char *)key; *s; s++) {
		h ^= *s;
		h *= 0x100000001b3ull;
	}
	h ^= p->seed[1];
	h = vp_fmix64(h);
	return h ? h : 1;
}

/*
 * Find the slot of h, or the one it would take: an empty slot, else a stale
 * one, else the one with the fewest failures in this window.  *found says
 * which.  Caller holds the lock.
 */
static rate_slot_t *find_slot(pvp_policy_t *p, uint64_t h, uint64_t window, bool *found)
{
	uint32_t mask = p->conf.table_slots - 1;
	rate_slot_t *victim = NULL;
	uint64_t best = UINT64_MAX;
	for (uint32_t i = 0; i < PROBE; i++) {
		rate_slot_t *s = &p->slots[(h + i) & mask];
		uint64_t score;
		if (s->hash == h) {
			*found = true;
			return s;
		}
		score = s->hash == 0 ? 0 : s->window != window ? 1 : 2 + (uint64_t)s->fails;
		if (score < best) {
			best = score;
			victim = s;
		}
	}
	*found = false;
	return victim;
}

/*
 * Failures of h in this window.  A key that is not in the table counts as
 * many failures as the slot it would take: evicting a live entry hands its
 * count on instead of dropping it, so no key's count can shrink within a
 * window, however the table is flooded (the minimum over a neighbourhood
 * never decreases).  Over-counting is the safe side of a bounded table.
 */
static uint32_t slot_fails(const rate_slot_t *s, uint64_t window)
{
	return s->hash != 0 && s->window == window ? s->fails : 0;
}

static uint32_t limit_of(const pvp_policy_t *p, pvp_rate_kind_t kind)
{
	return kind == PVP_RATE_PEER ? p->conf.peer_fail_limit : p->conf.number_fail_limit;
}

bool pvp_policy_rate_ok(pvp_policy_t *p, pvp_rate_kind_t kind, const char *key, uint64_t now_s)
{
	uint64_t h = key_hash(p, kind, key), window = now_s / p->conf.window_s;
	rate_slot_t *s;
	bool ok, found;
	pthread_mutex_lock(&p->lock);
	s = find_slot(p, h, window, &found);
	ok = slot_fails(s, window) < limit_of(p, kind);
	pthread_mutex_unlock(&p->lock);
	return ok;
}

void pvp_policy_rate_fail(pvp_policy_t *p, pvp_rate_kind_t kind, const char *key, uint64_t now_s)
{
	uint64_t h = key_hash(p, kind, key), window = now_s / p->conf.window_s;
	rate_slot_t *s;
	bool found;
	pthread_mutex_lock(&p->lock);
	s = find_slot(p, h, window, &found);
	if (!found || s->window != window) {
		s->fails = slot_fails(s, window);
		s->hash = h;
		s->window = window;
	}
	if (s->fails < UINT32_MAX)
		s->fails++;
	pthread_mutex_unlock(&p->lock);
}

bool pvp_policy_rate_take(pvp_policy_t *p, pvp_rate_kind_t kind, const char *key, uint64_t now_s)
{
	uint64_t h = key_hash(p, kind, key), window = now_s / p->conf.window_s;
	rate_slot_t *s;
	uint32_t fails;
	bool found, ok;
	pthread_mutex_lock(&p->lock);
	s = find_slot(p, h, window, &found);
	fails = slot_fails(s, window);
	ok = fails < limit_of(p, kind);
	if (ok) {
		s->hash = h;
		s->window = window;
		s->fails = fails + 1;
	}
	pthread_mutex_unlock(&p->lock);
	return ok;
}

void pvp_policy_rate_refund(pvp_policy_t *p, pvp_rate_kind_t kind, const char *key, uint64_t now_s)
{
	uint64_t h = key_hash(p, kind, key), window = now_s / p->conf.window_s;
	rate_slot_t *s;
	bool found;
	pthread_mutex_lock(&p->lock);
	s = find_slot(p, h, window, &found);
	/* Evicted or a new window since the take: nothing to give back (over-counting is the safe side). */
	if (found && s->window == window && s->fails > 0)
		s->fails--;
	pthread_mutex_unlock(&p->lock);
}
