/*
 * pvp/policy.c - domain lists and failed-handshake rate limits.
 */
#include "pvp/policy.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "common/errcode.h"
#include "pvp/gate.h"
#include "pvp/ticket.h"

#define ROWS 4 /* count-min rows: a key's estimate is the smallest of its 4 counters */

typedef struct list_entry {
	char domain[PVP_DOMAIN_MAX + 1];
	uint32_t threshold;
} list_entry_t;

/*
 * One kind's counters: a count-min sketch per window, for the current window
 * and the one before it.  A counter is the sum of the counts of every key
 * that hashes to it, so a key's estimate (its smallest counter) is never
 * below its true count: a flood raises estimates (over-counting), it can
 * never lower one (no eviction, nothing is forgotten inside two windows).
 */
typedef struct rate_table {
	uint64_t window;     /* index of cur */
	uint32_t *cur;       /* ROWS * slots */
	uint32_t *prev;
} rate_table_t;

struct pvp_policy {
	pvp_policy_conf_t conf;
	list_entry_t *list;
	size_t nlist, caplist;
	pthread_mutex_t lock;     /* the rate tables */
	pthread_rwlock_t list_lock; /* the domain list: looked up by workers, changed on reload */
	uint8_t seed[32];    /* keyed hash: an attacker cannot aim collisions at a victim's counters */
	rate_table_t tables[2]; /* [PVP_RATE_PEER], [PVP_RATE_NUMBER]: separate, so one cannot flood the other */
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
	if (slots < 64 || (slots & (slots - 1))) {
		free(p);
		return VP_EINVAL;
	}
	p->conf.table_slots = slots;
	for (int k = 0; k < 2; k++) {
		p->tables[k].cur = calloc((size_t)ROWS * slots, sizeof(uint32_t));
		p->tables[k].prev = calloc((size_t)ROWS * slots, sizeof(uint32_t));
		if (!p->tables[k].cur || !p->tables[k].prev) {
			pvp_policy_free(p);
			return VP_ENOMEM;
		}
	}
	if (RAND_bytes(p->seed, sizeof(p->seed)) != 1) {
		pvp_policy_free(p);
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
	if (p->tables[0].cur) { /* fully created: the locks exist */
		pthread_mutex_destroy(&p->lock);
		pthread_rwlock_destroy(&p->list_lock);
	}
	free(p->list);
	for (int k = 0; k < 2; k++) {
		free(p->tables[k].cur);
		free(p->tables[k].prev);
	}
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

/* Counter index of \p key in each row: SHA-256(seed | kind | key), 4 bytes per row. */
static void key_slots(const pvp_policy_t *p, pvp_rate_kind_t kind, const char *key, uint32_t idx[ROWS])
{
	char pk[PVP_PEER_MAX];
	uint8_t md[32], k = (uint8_t)kind;
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	const char *name = key;
	if (kind == PVP_RATE_PEER) {
		pvp_peer_key(key, pk); /* an IPv6 peer is its /64 */
		name = pk;
	}
	if (!c || !EVP_DigestInit_ex(c, EVP_sha256(), NULL) || !EVP_DigestUpdate(c, p->seed, sizeof(p->seed)) ||
	    !EVP_DigestUpdate(c, &k, 1) || !EVP_DigestUpdate(c, name, strlen(name)) ||
	    !EVP_DigestFinal_ex(c, md, NULL))
		memset(md, 0, sizeof(md)); /* every key on the same counters: over-counts, never forgets */
	EVP_MD_CTX_free(c);
	for (int r = 0; r < ROWS; r++)
		idx[r] = (uint32_t)r * p->conf.table_slots +
		         (((uint32_t)md[4 * r] << 24 | (uint32_t)md[4 * r + 1] << 16 | (uint32_t)md[4 * r + 2] << 8 |
		           md[4 * r + 3]) & (p->conf.table_slots - 1));
}

/* Bring table \p t to window \p w (caller holds the lock).  A clock that went back stays in cur. */
static void advance(pvp_policy_t *p, rate_table_t *t, uint64_t w)
{
	size_t bytes = (size_t)ROWS * p->conf.table_slots * sizeof(uint32_t);
	if (w <= t->window)
		return;
	if (w == t->window + 1) {
		uint32_t *x = t->prev;
		t->prev = t->cur;
		t->cur = x;
		memset(t->cur, 0, bytes);
	} else {
		memset(t->cur, 0, bytes);
		memset(t->prev, 0, bytes);
	}
	t->window = w;
}

static uint32_t estimate(const uint32_t *cnt, const uint32_t idx[ROWS])
{
	uint32_t m = UINT32_MAX;
	for (int r = 0; r < ROWS; r++)
		if (cnt[idx[r]] < m)
			m = cnt[idx[r]];
	return m;
}

static uint32_t limit_of(const pvp_policy_t *p, pvp_rate_kind_t kind)
{
	return kind == PVP_RATE_PEER ? p->conf.peer_fail_limit : p->conf.number_fail_limit;
}

/*
 * The limit holds over any interval of one window length: such an interval
 * lies inside two consecutive fixed windows, and a failure is admitted only
 * while this window's count plus the previous window's stays under the limit.
 */
static bool under_limit(const pvp_policy_t *p, const rate_table_t *t, pvp_rate_kind_t kind,
                        const uint32_t idx[ROWS])
{
	uint64_t sum = (uint64_t)estimate(t->cur, idx) + estimate(t->prev, idx);
	return sum < limit_of(p, kind);
}

static void bump(uint32_t *cnt, const uint32_t idx[ROWS])
{
	for (int r = 0; r < ROWS; r++)
		if (cnt[idx[r]] < UINT32_MAX)
			cnt[idx[r]]++;
}

static rate_table_t *table_of(pvp_policy_t *p, pvp_rate_kind_t kind)
{
	return &p->tables[kind == PVP_RATE_PEER ? 0 : 1];
}

bool pvp_policy_rate_ok(pvp_policy_t *p, pvp_rate_kind_t kind, const char *key, uint64_t now_s)
{
	rate_table_t *t = table_of(p, kind);
	uint32_t idx[ROWS];
	bool ok;
	key_slots(p, kind, key, idx);
	pthread_mutex_lock(&p->lock);
	advance(p, t, now_s / p->conf.window_s);
	ok = under_limit(p, t, kind, idx);
	pthread_mutex_unlock(&p->lock);
	return ok;
}

void pvp_policy_rate_fail(pvp_policy_t *p, pvp_rate_kind_t kind, const char *key, uint64_t now_s)
{
	rate_table_t *t = table_of(p, kind);
	uint32_t idx[ROWS];
	key_slots(p, kind, key, idx);
	pthread_mutex_lock(&p->lock);
	advance(p, t, now_s / p->conf.window_s);
	bump(t->cur, idx);
	pthread_mutex_unlock(&p->lock);
}

bool pvp_policy_rate_take(pvp_policy_t *p, pvp_rate_kind_t kind, const char *key, uint64_t now_s)
{
	rate_table_t *t = table_of(p, kind);
	uint32_t idx[ROWS];
	bool ok;
	key_slots(p, kind, key, idx);
	pthread_mutex_lock(&p->lock);
	advance(p, t, now_s / p->conf.window_s);
	ok = under_limit(p, t, kind, idx);
	if (ok)
		bump(t->cur, idx);
	pthread_mutex_unlock(&p->lock);
	return ok;
}

void pvp_policy_rate_refund(pvp_policy_t *p, pvp_rate_kind_t kind, const char *key, uint64_t now_s)
{
	rate_table_t *t = table_of(p, kind);
	uint64_t w = now_s / p->conf.window_s;
	uint32_t idx[ROWS], *cnt = NULL;
	key_slots(p, kind, key, idx);
	pthread_mutex_lock(&p->lock);
	/*
	 * Undo exactly one earlier count of this key in the window it was taken
	 * in (now cur, or prev after one rotation): every counter of the key
	 * holds at least that count, so no other key's estimate can drop.
	 */
	if (w == t->window)
		cnt = t->cur;
	else if (w + 1 == t->window)
		cnt = t->prev;
	if (cnt && estimate(cnt, idx) > 0)
		for (int r = 0; r < ROWS; r++)
			cnt[idx[r]]--;
	pthread_mutex_unlock(&p->lock);
}
