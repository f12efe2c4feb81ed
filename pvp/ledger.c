/*
 * pvp/ledger.c - the originating side's guess ledger, in the call-record store.
 */
#include "pvp/ledger.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/errcode.h"
#include "common/log.h"

#define ENTRY_VERSION 1
#define ENTRY_LEN (1 + 4 * 4 + 8 + 8 + 4 + 4)
#define KEY_MAX 320

struct pvp_ledger {
	pvp_ledger_conf_t conf;
	pthread_mutex_t lock; /* read-modify-write of one entry */
};

int pvp_ledger_new(const pvp_ledger_conf_t *conf, pvp_ledger_t **out)
{
	pvp_ledger_t *l;
	*out = NULL;
	if (!conf || !conf->store)
		return VP_EINVAL;
	if (!(l = calloc(1, sizeof(*l))))
		return VP_ENOMEM;
	l->conf = *conf;
	if (!l->conf.budget)
		l->conf.budget = PVP_LEDGER_BUDGET_DEFAULT;
	if (!l->conf.budget_window_s)
		l->conf.budget_window_s = PVP_LEDGER_BUDGET_WINDOW_DEFAULT;
	if (!l->conf.accum_window_s)
		l->conf.accum_window_s = PVP_LEDGER_ACCUM_WINDOW_DEFAULT;
	pthread_mutex_init(&l->lock, NULL);
	*out = l;
	return 0;
}

void pvp_ledger_free(pvp_ledger_t *l)
{
	if (!l)
		return;
	pthread_mutex_destroy(&l->lock);
	free(l);
}

/* 'G' number 0x00 claimant: the number is canonical E.164 (no NUL), so the split is unambiguous. */
static int make_key(const char *number, const char *claimant, uint8_t key[KEY_MAX], size_t *klen)
{
	size_t nl = strlen(number), cl = strlen(claimant);
	if (!nl || !cl || 2 + nl + cl > KEY_MAX)
		return VP_EINVAL;
	key[0] = PVP_VCR_AUX_PREFIX;
	memcpy(key + 1, number, nl);
	key[1 + nl] = 0;
	memcpy(key + 2 + nl, claimant, cl);
	*klen = 2 + nl + cl;
	return 0;
}

static void encode(const pvp_ledger_entry_t *e, uint8_t out[ENTRY_LEN])
{
	vp_wr_t wr;
	vp_wr_init(&wr, out, ENTRY_LEN);
	vp_wr_u8(&wr, ENTRY_VERSION);
	vp_wr_u32(&wr, e->handshakes);
	vp_wr_u32(&wr, e->calls);
	vp_wr_u32(&wr, e->acc_cbits);
	vp_wr_u32(&wr, e->last_call_s);
	vp_wr_u64(&wr, e->updated_s);
	vp_wr_u64(&wr, e->fail_window);
	vp_wr_u32(&wr, e->fails_cur);
	vp_wr_u32(&wr, e->fails_prev);
}

static int decode(const uint8_t *in, size_t len, pvp_ledger_entry_t *e)
{
	vp_rd_t rd;
	uint8_t ver = 0;
	vp_rd_init(&rd, in, len);
	vp_rd_u8(&rd, &ver);
	vp_rd_u32(&rd, &e->handshakes);
	vp_rd_u32(&rd, &e->calls);
	vp_rd_u32(&rd, &e->acc_cbits);
	vp_rd_u32(&rd, &e->last_call_s);
	vp_rd_u64(&rd, &e->updated_s);
	vp_rd_u64(&rd, &e->fail_window);
	vp_rd_u32(&rd, &e->fails_cur);
	vp_rd_u32(&rd, &e->fails_prev);
	if (rd.err || vp_rd_left(&rd) || ver != ENTRY_VERSION)
		return VP_EMALFORMED;
	return 0;
}

/* Load (zeroed if absent), then bring the windows up to now. Caller holds the lock. */
static int load(pvp_ledger_t *l, const uint8_t *key, size_t klen, uint64_t now_s, pvp_ledger_entry_t *e)
{
	uint8_t buf[ENTRY_LEN + 8];
	size_t n = 0;
	uint64_t w = now_s / l->conf.budget_window_s;
	int rc = pvp_vcr_store_aux_get(l->conf.store, key, klen, buf, sizeof(buf), &n);

	memset(e, 0, sizeof(*e));
	if (rc == VP_ENOTFOUND) {
		e->fail_window = w;
		return 0;
	}
	if (rc)
		return rc;
	if (decode(buf, n, e)) {
		/* A damaged entry must not hand out a fresh budget: count it as exhausted. */
		vp_log_error("pvp", "ledger_entry_damaged", "len=%zu", n);
		memset(e, 0, sizeof(*e));
		e->fail_window = w;
		e->fails_cur = l->conf.budget;
		return 0;
	}
	if (e->updated_s + l->conf.accum_window_s < now_s) { /* the chain lapsed, as the server's would */
		e->handshakes = e->calls = e->acc_cbits = e->last_call_s = 0;
	}
	if (w == e->fail_window + 1) {
		e->fails_prev = e->fails_cur;
		e->fails_cur = 0;
	} else if (w > e->fail_window + 1) {
		e->fails_prev = e->fails_cur = 0;
	} /* a clock that went back keeps the counts where they are: over-counting is the safe side */
	if (w > e->fail_window)
		e->fail_window = w;
	return 0;
}

static int save(pvp_ledger_t *l, const uint8_t *key, size_t klen, pvp_ledger_entry_t *e, uint64_t now_s)
{
	uint8_t buf[ENTRY_LEN];
	e->updated_s = now_s;
	encode(e, buf);
	return pvp_vcr_store_aux_put(l->conf.store, key, klen, buf, sizeof(buf));
}

int pvp_ledger_take(pvp_ledger_t *l, const char *number, const char *claimant, uint64_t now_s)
{
	uint8_t key[KEY_MAX];
	size_t klen;
	pvp_ledger_entry_t e;
	int rc = make_key(number, claimant, key, &klen);
	if (rc)
		return rc;
	pthread_mutex_lock(&l->lock);
	if ((rc = load(l, key, klen, now_s, &e)))
		goto out;
	if ((uint64_t)e.fails_cur + e.fails_prev >= l->conf.budget) {
		rc = VP_ERATELIMIT;
		goto out;
	}
	if (e.handshakes < UINT32_MAX)
		e.handshakes++;
	e.fails_cur++;
	rc = save(l, key, klen, &e, now_s);
out:
	pthread_mutex_unlock(&l->lock);
	return rc;
}

int pvp_ledger_settle(pvp_ledger_t *l, const char *number, const char *claimant, uint64_t now_s,
                      pvp_ledger_result_t res)
{
	uint8_t key[KEY_MAX];
	size_t klen;
	pvp_ledger_entry_t e;
	int rc = make_key(number, claimant, key, &klen);
	if (rc || res == PVP_LEDGER_FAILED)
		return rc;
	pthread_mutex_lock(&l->lock);
	if ((rc = load(l, key, klen, now_s, &e)))
		goto out;
	/* Taken in an earlier window (a handshake across the edge): the count stays, the safe side. */
	if (e.fail_window == now_s / l->conf.budget_window_s && e.fails_cur > 0)
		e.fails_cur--;
	if (res == PVP_LEDGER_NO_GUESS && e.handshakes > 0)
		e.handshakes--;
	rc = save(l, key, klen, &e, now_s);
out:
	pthread_mutex_unlock(&l->lock);
	return rc;
}

uint32_t pvp_ledger_credit_of(uint32_t acc_cbits, uint32_t handshakes, uint32_t calls)
{
	double g = handshakes, s = calls, pen = 0, c;
	if (s > g)
		g = s;
	if (s > 0 && g > s)
		pen = (lgamma(g + 1) - lgamma(s + 1) - lgamma(g - s + 1)) / M_LN2;
	c = (double)acc_cbits - 100.0 * pen;
	if (c <= 0)
		return 0;
	return c >= (double)UINT32_MAX ? UINT32_MAX : (uint32_t)c;
}

int pvp_ledger_credit(pvp_ledger_t *l, const char *number, const char *claimant, uint32_t call_start_s,
                      uint32_t e_cbits, uint64_t now_s, uint32_t *credit_cbits, pvp_ledger_entry_t *e_out)
{
	uint8_t key[KEY_MAX];
	size_t klen;
	pvp_ledger_entry_t e;
	int rc = make_key(number, claimant, key, &klen);
	*credit_cbits = 0;
	if (rc)
		return rc;
	pthread_mutex_lock(&l->lock);
	if ((rc = load(l, key, klen, now_s, &e)))
		goto out;
	if (e.calls == 0 || call_start_s > e.last_call_s) {
		e.calls++;
		e.acc_cbits = (uint64_t)e.acc_cbits + e_cbits > UINT32_MAX ? UINT32_MAX : e.acc_cbits + e_cbits;
		e.last_call_s = call_start_s;
	}
	if (e.handshakes < e.calls) /* a chain that lapsed between the take and now */
		e.handshakes = e.calls;
	*credit_cbits = pvp_ledger_credit_of(e.acc_cbits, e.handshakes, e.calls);
	rc = save(l, key, klen, &e, now_s);
	if (e_out)
		*e_out = e;
out:
	pthread_mutex_unlock(&l->lock);
	return rc;
}

int pvp_ledger_get(pvp_ledger_t *l, const char *number, const char *claimant, uint64_t now_s,
                   pvp_ledger_entry_t *out)
{
	uint8_t key[KEY_MAX];
	size_t klen;
	int rc = make_key(number, claimant, key, &klen);
	if (rc)
		return rc;
	pthread_mutex_lock(&l->lock);
	rc = load(l, key, klen, now_s, out);
	pthread_mutex_unlock(&l->lock);
	return rc;
}

typedef struct purge_ctx {
	pvp_ledger_t *l;
	uint64_t now_s;
	size_t removed;
	int rc;
} purge_ctx_t;

static int purge_one(void *arg, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen)
{
	purge_ctx_t *p = arg;
	pvp_ledger_entry_t e;
	memset(&e, 0, sizeof(e));
	if (decode(val, vlen, &e))
		return 0; /* a damaged entry counts as an exhausted budget (load): deleting it would refill it */
	/* Forgotten only when forgetting changes nothing: the chain has lapsed (load() would zero it)
	 * and both budget windows it counted in are over (load() would zero the failures). */
	if (e.updated_s + p->l->conf.accum_window_s >= p->now_s ||
	    p->now_s / p->l->conf.budget_window_s <= e.fail_window + 1)
		return 0;
	if ((p->rc = pvp_vcr_store_aux_del(p->l->conf.store, key, klen)))
		return 1;
	p->removed++;
	return 0;
}

int pvp_ledger_purge(pvp_ledger_t *l, uint64_t now_s, size_t *removed)
{
	/* Ledger keys are 'G' then a canonical number, which starts with '+'. */
	const uint8_t prefix[2] = { PVP_VCR_AUX_PREFIX, '+' };
	purge_ctx_t p = { .l = l, .now_s = now_s };
	int rc;
	pthread_mutex_lock(&l->lock); /* no take or settle between an entry's read and its deletion */
	rc = pvp_vcr_store_aux_scan(l->conf.store, prefix, sizeof(prefix), purge_one, &p);
	pthread_mutex_unlock(&l->lock);
	if (removed)
		*removed = p.removed;
	return rc ? rc : p.rc;
}
