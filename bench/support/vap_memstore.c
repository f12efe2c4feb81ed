/*
 * bench/support/vap_memstore.c - in-memory VAP hooks (see vap_memstore.h).
 */
#include "bench/support/vap_memstore.h"

#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "common/errcode.h"

typedef struct entry {
	char number[VP_E164_BUFLEN];   /* "" = empty slot */
	uint32_t vsid;
	bool tomb;
} entry_t;

typedef struct pend {
	void *token;
	uint8_t op;
	uint32_t vsid;
	char number[VP_E164_BUFLEN];
} pend_t;

struct vap_memstore {
	pthread_mutex_t lock;
	entry_t *tab;
	size_t cap, used, live;
	size_t vcrs, vservices;
	vap_vcr_t last_vcr;
	vap_server_t *srv;          /* completes the stores */
	bool async, hold, posted;
	pend_t *pend;
	size_t npend, pcap;
	unsigned outstanding, max_outstanding;
	char fail[VP_E164_BUFLEN];
};

static uint64_t hash(const char *s, uint32_t vsid)
{
	uint64_t h = 1469598103934665603ull ^ vsid;
	while (*s)
		h = (h ^ (uint8_t)*s++) * 1099511628211ull;
	return h;
}

static entry_t *find_slot(entry_t *tab, size_t cap, const char *num, uint32_t vsid, bool for_insert)
{
	size_t i = (size_t)hash(num, vsid) & (cap - 1);
	entry_t *tomb = NULL;
	for (;;) {
		entry_t *e = &tab[i];
		if (!e->number[0] && !e->tomb)
			return for_insert && tomb ? tomb : e;
		if (e->tomb) {
			if (!tomb)
				tomb = e;
		} else if (e->vsid == vsid && !strcmp(e->number, num)) {
			return e;
		}
		i = (i + 1) & (cap - 1);
	}
}

static int grow(vap_memstore_t *ms)
{
	size_t ncap = ms->cap ? ms->cap * 2 : 1024;
	entry_t *nt = calloc(ncap, sizeof(*nt));
	if (!nt)
		return VP_ENOMEM;
	for (size_t i = 0; i < ms->cap; i++) {
		entry_t *e = &ms->tab[i];
		if (e->number[0] && !e->tomb)
			*find_slot(nt, ncap, e->number, e->vsid, true) = *e;
	}
	free(ms->tab);
	ms->tab = nt;
	ms->cap = ncap;
	ms->used = ms->live;
	return 0;
}

/* Apply one store under the lock. */
static int apply(vap_memstore_t *ms, const char *num, uint32_t vsid, uint8_t op)
{
	entry_t *e;
	if (ms->fail[0] && !strcmp(ms->fail, num))
		return VP_EDB;
	if ((ms->used + 1) * 4 > ms->cap * 3 && grow(ms))
		return VP_ENOMEM;
	if (op == VAP_OP_WITHDRAW) {
		if (!ms->cap)
			return 0;
		e = find_slot(ms->tab, ms->cap, num, vsid, false);
		if (e->number[0] && !e->tomb) {
			e->tomb = true;
			ms->live--;
		}
		return 0;
	}
	e = find_slot(ms->tab, ms->cap, num, vsid, true);
	if (e->number[0] && !e->tomb)
		return 0;
	if (!e->tomb)
		ms->used++;
	strcpy(e->number, num);
	e->vsid = vsid;
	e->tomb = false;
	ms->live++;
	return 0;
}

static void complete_all(vap_server_t *srv, void *arg)
{
	vap_memstore_t *ms = arg;
	pend_t *p;
	size_t n;
	int *rcs;
	pthread_mutex_lock(&ms->lock);
	ms->posted = false;
	if (ms->hold) {
		pthread_mutex_unlock(&ms->lock);
		return;
	}
	p = ms->pend;
	n = ms->npend;
	ms->pend = NULL;
	ms->npend = ms->pcap = 0;
	rcs = calloc(n ? n : 1, sizeof(*rcs));
	for (size_t i = 0; i < n; i++) {
		int rc = apply(ms, p[i].number, p[i].vsid, p[i].op);
		if (rcs)
			rcs[i] = rc;
	}
	ms->outstanding -= (unsigned)n;
	pthread_mutex_unlock(&ms->lock);
	/* Complete outside the lock: completion may start new stores. */
	for (size_t i = 0; i < n; i++)
		vap_server_store_done(srv, p[i].token, rcs ? rcs[i] : VP_ENOMEM);
	free(rcs);
	free(p);
}

static int h_store(void *ctx, const vap_store_req_t *req)
{
	vap_memstore_t *ms = ctx;
	int rc = 0;
	pthread_mutex_lock(&ms->lock);
	if (!ms->srv)
		rc = VP_ESTATE;     /* not attached */
	else if (!ms->async)
		rc = apply(ms, req->number, req->vservice_id, req->op);
	if (!ms->srv || !ms->async) {
		pthread_mutex_unlock(&ms->lock);
		if (rc)
			return rc;
		/* Synchronous completion, from inside the hook (allowed by the contract). */
		vap_server_store_done(ms->srv, req->token, 0);
		return 0;
	}
	if (ms->npend == ms->pcap) {
		size_t nc = ms->pcap ? ms->pcap * 2 : 256;
		pend_t *np = realloc(ms->pend, nc * sizeof(*np));
		if (!np) {
			pthread_mutex_unlock(&ms->lock);
			return VP_ENOMEM;
		}
		ms->pend = np;
		ms->pcap = nc;
	}
	ms->pend[ms->npend].token = req->token;
	ms->pend[ms->npend].op = req->op;
	ms->pend[ms->npend].vsid = req->vservice_id;
	strcpy(ms->pend[ms->npend].number, req->number);
	ms->npend++;
	if (++ms->outstanding > ms->max_outstanding)
		ms->max_outstanding = ms->outstanding;
	if (!ms->posted && !ms->hold) {
		ms->posted = true;
		vap_server_post(ms->srv, complete_all, ms);
	}
	pthread_mutex_unlock(&ms->lock);
	return 0;
}

static int h_vcr(void *ctx, const char *agent, const vap_vcr_t *vcr)
{
	vap_memstore_t *ms = ctx;
	(void)agent;
	pthread_mutex_lock(&ms->lock);
	ms->vcrs++;
	ms->last_vcr = *vcr;
	pthread_mutex_unlock(&ms->lock);
	return 0;
}

static int h_vservice(void *ctx, const char *agent, const vap_vservice_t *vs)
{
	vap_memstore_t *ms = ctx;
	(void)agent;
	(void)vs;
	pthread_mutex_lock(&ms->lock);
	ms->vservices++;
	pthread_mutex_unlock(&ms->lock);
	return 0;
}

int vap_memstore_new(vap_memstore_t **out)
{
	vap_memstore_t *ms = calloc(1, sizeof(*ms));
	*out = NULL;
	if (!ms)
		return VP_ENOMEM;
	pthread_mutex_init(&ms->lock, NULL);
	if (grow(ms)) {
		vap_memstore_free(ms);
		return VP_ENOMEM;
	}
	*out = ms;
	return 0;
}

void vap_memstore_free(vap_memstore_t *ms)
{
	if (!ms)
		return;
	pthread_mutex_destroy(&ms->lock);
	free(ms->tab);
	free(ms->pend);
	free(ms);
}

void vap_memstore_hooks(vap_memstore_t *ms, vap_hooks_t *hooks)
{
	hooks->ctx = ms;
	hooks->store = h_store;
	hooks->upload_vcr = h_vcr;
	hooks->upload_vcr_start = NULL; /* records are kept synchronously */
	hooks->publish_vservice = h_vservice;
	hooks->vservice_access = NULL; /* a stand-in for one tenant: every agent may use every VService */
	hooks->subscribed = NULL;      /* nothing to replay */
}

void vap_memstore_attach(vap_memstore_t *ms, vap_server_t *srv, bool async)
{
	pthread_mutex_lock(&ms->lock);
	ms->srv = srv;
	ms->async = async;
	pthread_mutex_unlock(&ms->lock);
}

void vap_memstore_hold(vap_memstore_t *ms, bool hold)
{
	pthread_mutex_lock(&ms->lock);
	ms->hold = hold;
	if (!hold && ms->npend && !ms->posted && ms->srv) {
		ms->posted = true;
		vap_server_post(ms->srv, complete_all, ms);
	}
	pthread_mutex_unlock(&ms->lock);
}

void vap_memstore_fail_number(vap_memstore_t *ms, const char *number)
{
	pthread_mutex_lock(&ms->lock);
	snprintf(ms->fail, sizeof(ms->fail), "%s", number ? number : "");
	pthread_mutex_unlock(&ms->lock);
}

size_t vap_memstore_count(vap_memstore_t *ms)
{
	size_t n;
	pthread_mutex_lock(&ms->lock);
	n = ms->live;
	pthread_mutex_unlock(&ms->lock);
	return n;
}

bool vap_memstore_has(vap_memstore_t *ms, const char *number, uint32_t vservice_id)
{
	entry_t *e;
	bool r;
	pthread_mutex_lock(&ms->lock);
	if (!ms->cap) {
		pthread_mutex_unlock(&ms->lock);
		return false;
	}
	e = find_slot(ms->tab, ms->cap, number, vservice_id, false);
	r = e->number[0] && !e->tomb;
	pthread_mutex_unlock(&ms->lock);
	return r;
}

size_t vap_memstore_vcrs(vap_memstore_t *ms, vap_vcr_t *last)
{
	size_t n;
	pthread_mutex_lock(&ms->lock);
	n = ms->vcrs;
	if (last)
		*last = ms->last_vcr;
	pthread_mutex_unlock(&ms->lock);
	return n;
}

size_t vap_memstore_vservices(vap_memstore_t *ms)
{
	size_t n;
	pthread_mutex_lock(&ms->lock);
	n = ms->vservices;
	pthread_mutex_unlock(&ms->lock);
	return n;
}

unsigned vap_memstore_max_outstanding(vap_memstore_t *ms)
{
	unsigned n;
	pthread_mutex_lock(&ms->lock);
	n = ms->max_outstanding;
	pthread_mutex_unlock(&ms->lock);
	return n;
}

unsigned vap_memstore_outstanding(vap_memstore_t *ms)
{
	unsigned n;
	pthread_mutex_lock(&ms->lock);
	n = ms->outstanding;
	pthread_mutex_unlock(&ms->lock);
	return n;
}

int vap_memstore_insert(vap_memstore_t *ms, const char *number, uint32_t vservice_id, uint8_t op)
{
	int rc;
	pthread_mutex_lock(&ms->lock);
	rc = apply(ms, number, vservice_id, op);
	pthread_mutex_unlock(&ms->lock);
	return rc;
}

void vap_memstore_clear(vap_memstore_t *ms)
{
	pthread_mutex_lock(&ms->lock);
	free(ms->tab);
	ms->tab = NULL;
	ms->cap = ms->used = ms->live = 0;
	ms->vcrs = ms->vservices = 0;
	if (grow(ms))
		ms->cap = 0;
	pthread_mutex_unlock(&ms->lock);
}
