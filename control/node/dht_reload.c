/*
 * control/node/dht_reload.c - vsrv_dht_t over RELOAD (see the header).
 */
#include "control/node/dht_reload.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/e164.h"
#include "common/errcode.h"
#include "common/log.h"
#include "control/node/kinds.h"
#include "control/server/lookup.h"
#include "control/vap/vap_msg.h"
#include "storage/store.h"
#include "storage/vipr_kind.h"

#define LOGMOD "dhr"
#define DHR_FETCH_MAX 64u           /* entries kept per copy (= ST_VIPR_MAX_COUNT) */
#define DHR_ALARM_EVERY 1000u       /* over-quota refusals per repeated alarm line */
#define DHR_STORE_BUF 2048u         /* a StoreReq body of one entry: < 1 KiB plus the signature */

/* ---- the numbers claimed (quota) ----------------------------------------------------- */

/* Open-addressing set of Resource-IDs claimed through this server, with their signer. */
typedef struct claim {
	vp_id_t res;
	uint8_t state;  /* 0 empty, 1 used, 2 deleted */
	uint8_t signer;
	uint32_t stored_s; /* when its last Store was acknowledged (seconds of dhr_t.t0_ns; 0: not yet) */
} claim_t;

typedef struct claims {
	claim_t *t;
	size_t cap, used, tomb; /* cap: power of two */
} claims_t;

static uint64_t res_hash(const vp_id_t *r)
{
	uint64_t h;
	memcpy(&h, r->b, sizeof(h)); /* a SHA-1 prefix: already uniform */
	return h;
}

static claim_t *claims_find(claims_t *c, const vp_id_t *r, claim_t **free_slot)
{
	*free_slot = NULL;
	if (!c->cap)
		return NULL;
	for (size_t i = res_hash(r) & (c->cap - 1), n = 0; n < c->cap; i = (i + 1) & (c->cap - 1), n++) {
		claim_t *e = &c->t[i];
		if (e->state == 0) {
			if (!*free_slot)
				*free_slot = e;
			return NULL;
		}
		if (e->state == 2) {
			if (!*free_slot)
				*free_slot = e;
			continue;
		}
		if (vp_id_eq(&e->res, r))
			return e;
	}
	return NULL;
}

static int claims_grow(claims_t *c)
{
	size_t ncap = c->cap ? c->cap * 2 : 1024;
	claim_t *old = c->t, *slot;
	size_t ocap = c->cap;
	if ((c->used + 1) * 2 < c->cap && (c->used + c->tomb + 1) * 4 < c->cap * 3)
		return 0;
	if ((c->used + 1) * 2 < c->cap)
		ncap = c->cap; /* only tombstones: rehash in place size */
	if (!(c->t = calloc(ncap, sizeof(*c->t)))) {
		c->t = old;
		return VP_ENOMEM;
	}
	c->cap = ncap;
	c->tomb = 0;
	for (size_t i = 0; i < ocap; i++)
		if (old[i].state == 1) {
			claims_find(c, &old[i].res, &slot);
			*slot = old[i];
		}
	free(old);
	return 0;
}

/* ---- operations ------------------------------------------------------------------------ */

typedef struct dentry {
	uint8_t key[ST_VIPR_KEY_LEN];
	size_t key_len;
	uint8_t value[ST_VIPR_VALUE_MAX_LEN];
	size_t value_len;
	bool exists;
} dentry_t;

typedef struct op {
	struct dhr *d;
	bool fetch;
	char number[VP_E164_BUFLEN];
	vp_id_t res;
	/* store */
	uint8_t vop;
	unsigned signer;
	unsigned attempts;     /* Stores sent for this op (rate-limited ones not counted) */
	unsigned rate_limited; /* rate-limited answers in a row */
	uint64_t sent_ns;      /* when its last Store went out (a congestion signal counts once per window) */
	struct op *held_next;  /* in its stripe's list of Stores held after a rate-limited answer */
	vsrv_reg_t reg;
	vsrv_done_fn done;
	void *arg;
	/* fetch */
	vsrv_fetch_fn fdone;
	int stage;             /* one after the other: the copy being asked */
	struct fcopy {
		struct op *o;
		int k;             /* which copy */
		vp_id_t dest;      /* where it was asked: the Resource-ID, or a (guessed) holder + 1 */
		char why[96];      /* its entries that failed verification: how many, from whom, why */
	} fc[VSRV_COPIES];
	vp_id_t responder[VSRV_COPIES];
	bool answered[VSRV_COPIES];
	size_t n[VSRV_COPIES];
	unsigned rejected[VSRV_COPIES]; /* entries of each copy that failed verification */
	dentry_t ent[VSRV_COPIES][DHR_FETCH_MAX];
	bool parallel;         /* the copies were asked at once (their answers not yet settled) */
	atomic_uint pending;   /* copies asked at once: answers still due (+1 while they are being sent) */
} op_t;

struct dhr {
	dhr_conf_t conf;
	dhr_transport_t t;
	st_kind_t kind;
	pthread_t th;
	bool th_started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
	/* the pacer's sweep: two binary heaps in sweep order (sweep_cmp; this round: > cursor; next: <= cursor) */
	op_t **heap[2];
	size_t heap_n[2], heap_cap[2];
	int cur;                 /* which heap is this round */
	vp_id_t cursor;
	uint32_t inflight, fetching;
	double rate;             /* the pacer's current rate: up to conf.store_rate, halved by congestion (below) */
	double window;           /* Stores it keeps unanswered: up to conf.store_inflight, halved by a timeout */
	uint64_t cut_ns;         /* when rate or window was last cut */
	double tokens;
	uint64_t tok_ns;
	uint64_t last_storage_time;
	/* rate-limit holds, per stripe (the Resource-ID's first byte): see hold_stripe */
	uint64_t hold_until[256];
	uint8_t hold_exp[256];
	op_t *held[256];
	size_t held_n;
	uint64_t release_ns;     /* the earliest hold_until of a stripe with held Stores (0: none) */
	uint64_t t0_ns;          /* the adapter's start (claim_t.stored_s counts from it) */
	uint64_t behind_ns;      /* last sweep_behind line */
	claims_t claims;
	uint64_t per_signer[DHR_MAX_SIGNERS];
	dhr_stats_t st;
	pthread_mutex_t cert_mu; /* conf.certs is not thread-safe */
};

void dhr_conf_default(dhr_conf_t *c)
{
	memset(c, 0, sizeof(*c));
	c->quota = ST_VIPR_QUOTA;
	c->store_rate = 2000;
	c->store_inflight = 64;
	c->lifetime_s = 86400;
	c->kind_id = ST_VIPR_KIND_ID_DEFAULT;
}

/*
 * The sweep's order: 256 interleaved sweeps of the ring, one per 1/256 of it ("stripe", the Resource-ID's
 * first byte).  Stores go out by the Resource-ID rotated left by one byte, so each stripe is swept in
 * Resource-ID order (a responsible peer receives its share of a stripe as an ascending run) while
 * consecutive Stores land in random stripes, i.e. at different responsible peers.  A plain Resource-ID
 * order sent every Store of a moment to one peer, and that peer polices each signer (docs/protocol.md
 * §3.4: 50/s after a burst of 2,000): once the bursts were spent a 1,000,000-number publish on 16 nodes ran
 * at one peer's refill (8 signers x 50/s) and stopped after ~190,000 numbers on rate-limited answers.
 * Spread over the stripes, a peer sees about rate/peers (at most rate/256 once the overlay has more peers
 * than stripes).
 */
static int sweep_cmp(const vp_id_t *a, const vp_id_t *b)
{
	int c = memcmp(a->b + 1, b->b + 1, VP_ID_LEN - 1);
	return c ? c : (int)a->b[0] - (int)b->b[0];
}

static int heap_push(dhr_t *d, int h, op_t *o)
{
	size_t i;
	if (d->heap_n[h] == d->heap_cap[h]) {
		size_t nc = d->heap_cap[h] ? d->heap_cap[h] * 2 : 256;
		op_t **p = realloc(d->heap[h], nc * sizeof(*p));
		if (!p)
			return VP_ENOMEM;
		d->heap[h] = p;
		d->heap_cap[h] = nc;
	}
	i = d->heap_n[h]++;
	while (i > 0) {
		size_t up = (i - 1) / 2;
		if (sweep_cmp(&d->heap[h][up]->res, &o->res) <= 0)
			break;
		d->heap[h][i] = d->heap[h][up];
		i = up;
	}
	d->heap[h][i] = o;
	return 0;
}

static op_t *heap_pop(dhr_t *d, int h)
{
	op_t **a = d->heap[h], *top, *last;
	size_t n, i = 0;
	if (!d->heap_n[h])
		return NULL;
	top = a[0];
	n = --d->heap_n[h];
	if (!n)
		return top;
	last = a[n];
	for (;;) {
		size_t l = 2 * i + 1, m = i;
		const op_t *best = last;
		if (l < n && sweep_cmp(&a[l]->res, &best->res) < 0) {
			m = l;
			best = a[l];
		}
		if (l + 1 < n && sweep_cmp(&a[l + 1]->res, &best->res) < 0)
			m = l + 1;
		if (m == i)
			break;
		a[i] = a[m];
		i = m;
	}
	a[i] = last;
	return top;
}

/*
 * Rate-limit holds.  A storing peer that answers "rate-limited" (docs/protocol.md §3.4) has spent this
 * signer's burst: its stripe (1/256 of the ring, the Resource-ID's first byte, where that peer's range
 * lies) is held for 1 s, 2 s, 4 s ... up to 32 s while it keeps refusing (a success in the stripe starts
 * again at 1 s), and its Stores wait in the stripe's list meanwhile; the rest of the sweep goes on at the
 * pacer's rate.  Before (one rate for every peer), one peer's answer halved the whole publish once per
 * window, and a refresh sent right after a publish on 17 vnodes ran at 669/s instead of 2,000/s.
 */
#define DHR_HOLD_NS 1000000000ull
#define DHR_HOLD_MAX_EXP 5

/* Hold \p o (under mu) in its stripe: a new hold if the stripe was not held, else until the current one ends. */
static void hold_stripe(dhr_t *d, op_t *o, uint64_t now)
{
	unsigned st = o->res.b[0];
	if (d->hold_until[st] <= now) {
		d->hold_until[st] = now + (DHR_HOLD_NS << d->hold_exp[st]);
		if (d->hold_exp[st] < DHR_HOLD_MAX_EXP)
			d->hold_exp[st]++;
		d->st.holds++;
	}
	o->held_next = d->held[st];
	d->held[st] = o;
	d->held_n++;
	if (!d->release_ns || d->hold_until[st] < d->release_ns)
		d->release_ns = d->hold_until[st];
}

/* Put the Stores of every stripe whose hold ended back into the sweep (under mu). */
static void release_holds(dhr_t *d, uint64_t now)
{
	if (!d->held_n || now < d->release_ns)
		return;
	d->release_ns = 0;
	for (unsigned st = 0; st < 256; st++) {
		if (!d->held[st])
			continue;
		if (d->hold_until[st] > now) {
			if (!d->release_ns || d->hold_until[st] < d->release_ns)
				d->release_ns = d->hold_until[st];
			continue;
		}
		while (d->held[st]) {
			op_t *o = d->held[st];
			if (heap_push(d, sweep_cmp(&o->res, &d->cursor) > 0 ? d->cur : !d->cur, o)) {
				d->release_ns = now + 1000000u; /* no memory now: again in a millisecond */
				break;
			}
			d->held[st] = o->held_next;
			d->held_n--;
		}
	}
}

/* The next store of the sweep (under mu): the first in sweep order after the cursor, else a new round; a
 * Store whose stripe is held joins that stripe's list instead.  NULL when none is ready. */
static op_t *next_store(dhr_t *d, uint64_t now)
{
	for (;;) {
		op_t *o;
		if (!d->heap_n[d->cur]) {
			if (!d->heap_n[!d->cur])
				return NULL;
			d->cur = !d->cur;
		}
		o = heap_pop(d, d->cur);
		d->cursor = o->res;
		if (d->hold_until[o->res.b[0]] <= now)
			return o;
		hold_stripe(d, o, now);
	}
}

unsigned dhr_signer_of(dhr_t *d, const char *number)
{
	vp_id_t r = vp_id_from_name(number, strlen(number));
	claim_t *e, *slot;
	unsigned s = (unsigned)(res_hash(&r) % d->conf.n_signers);
	pthread_mutex_lock(&d->mu);
	if (d->claims.t && (e = claims_find(&d->claims, &r, &slot)))
		s = e->signer;
	pthread_mutex_unlock(&d->mu);
	return s;
}

/* A Store that got no answer is tried again, DHR_STORE_ATTEMPTS in all (see store_retry). */
#define DHR_STORE_ATTEMPTS 3
/*
 * Congestion control (additive increase, multiplicative decrease, as TCP's).  A Store with no answer (the
 * overlay's reliability timer) means a peer or a link on the way is overloaded: the pacer halves its rate
 * (down to DHR_MIN_RATE) and its window of unanswered Stores (down to 1), and sends it again.  (A
 * "rate-limited" answer is one peer's: it holds that Store's stripe, hold_stripe above, not the pacer.)  A
 * cut happens once per window: only for a Store sent after the previous cut (the answers to a window sent
 * at the old pace all arrive together and are one signal, not 64: halving for each took the rate from
 * 1,000/s to 16/s within a millisecond).  Each success adds DHR_RATE_STEP to the rate and 1/window to the
 * window, up to [vipr] store_rate and store_inflight.  Without the window cut an overloaded overlay
 * collapsed: 64 Stores in flight, most of them timed out, their retries queued behind the stale ones, and
 * a 1,000,000-number publish on 16 nodes stopped after ~300,000 (bench/RESULTS.md, flow).  A Store is given
 * up after DHR_RATE_ATTEMPTS rate-limited answers in a row, or DHR_STORE_ATTEMPTS sends without answer.
 */
#define DHR_MIN_RATE 5.0
#define DHR_RATE_STEP 1.0
#define DHR_RATE_ATTEMPTS 50

/* ---- store --------------------------------------------------------------------------------- */

/*
 * A refresh acknowledged (under mu): a registration refreshed later than its lifetime after its previous
 * Store had expired in the overlay in between (lookups found nothing for a while): counted, and a warning
 * line every DHR_ALARM_EVERY.  The projection in the pacer (sweep_behind) warns before it happens.
 */
static void refreshed(dhr_t *d, const op_t *o)
{
	claim_t *e, *slot;
	uint32_t now_s = (uint32_t)((vp_time_mono_ns() - d->t0_ns) / 1000000000u) + 1;
	if (o->vop == VAP_OP_WITHDRAW || !d->claims.t || !(e = claims_find(&d->claims, &o->res, &slot)))
		return;
	if (e->stored_s && now_s - e->stored_s > d->conf.lifetime_s && d->st.refresh_late++ % DHR_ALARM_EVERY == 0)
		vp_log_warn(LOGMOD, "refresh_late", "number=%s late_s=%u lifetime_s=%u refreshes_late=%llu "
		            "hint=\"the refresh sweep is slower than the lifetime: raise [vipr] store_rate or lifetime, or "
		            "refresh more often\"", o->number, now_s - e->stored_s - d->conf.lifetime_s, d->conf.lifetime_s,
		            (unsigned long long)d->st.refresh_late);
	e->stored_s = now_s;
}

static void store_finish(op_t *o, int status)
{
	dhr_t *d = o->d;
	pthread_mutex_lock(&d->mu);
	d->inflight--;
	if (status) {
		d->st.stores_failed++;
	} else {
		d->st.stores_ok++;
		d->hold_exp[o->res.b[0]] = 0;
		refreshed(d, o);
		if (d->rate < d->conf.store_rate)
			d->rate = d->rate + DHR_RATE_STEP < d->conf.store_rate ? d->rate + DHR_RATE_STEP : d->conf.store_rate;
		if (d->window < d->conf.store_inflight) {
			d->window += 1.0 / d->window;
			if (d->window > d->conf.store_inflight)
				d->window = d->conf.store_inflight;
		}
	}
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mu);
	o->done(o->arg, status);
	free(o);
}

/*
 * A Store that got no answer (the overlay's end-to-end timeout, a full request table) goes back into the
 * sweep, at most DHR_STORE_ATTEMPTS times in all: a storing peer that was busy or a ring that was still
 * moving should not fail a publish.  A refusal is final.
 */

/* A timeout of \p o (under mu): cut the rate and the window, unless \p o went out before the last cut (see
 * above).  True if it cut. */
static bool congestion(dhr_t *d, const op_t *o)
{
	if (o->sent_ns <= d->cut_ns)
		return false;
	d->cut_ns = vp_time_mono_ns();
	d->st.backoffs++;
	d->rate = d->rate / 2 > DHR_MIN_RATE ? d->rate / 2 : DHR_MIN_RATE;
	if (d->tokens > 0)
		d->tokens = 0; /* the halved rate starts now, not after the tokens already earned */
	d->window = d->window / 2 > 1.0 ? d->window / 2 : 1.0;
	return true;
}

static bool store_retry(op_t *o, int status)
{
	dhr_t *d = o->d;
	bool again, cut = false, limited = status == VP_ERATELIMIT;
	if (status == VP_ETIMEOUT) {
		pthread_mutex_lock(&d->mu);
		cut = congestion(d, o);
		pthread_mutex_unlock(&d->mu);
	}
	if (cut)
		vp_log_info(LOGMOD, "store_backoff", "cause=timeout rate=%.0f window=%.1f number=%s", d->rate, d->window,
		            o->number);
	if (limited ? ++o->rate_limited > DHR_RATE_ATTEMPTS
	            : (status != VP_ETIMEOUT && status != VP_EBUSY && status != VP_ENOROUTE) ||
	                  o->attempts >= DHR_STORE_ATTEMPTS)
		return false;
	if (limited)
		o->attempts--; /* not a failure of the overlay: the peer asked us to slow down */
	pthread_mutex_lock(&d->mu);
	if (limited && !d->stop) {
		hold_stripe(d, o, vp_time_mono_ns());
		again = true;
	} else {
		again = !d->stop && !heap_push(d, sweep_cmp(&o->res, &d->cursor) > 0 ? d->cur : !d->cur, o);
	}
	if (again) {
		d->inflight--;
		d->st.queued++;
		d->st.store_retries++;
		if (limited)
			d->st.rate_limited++;
		pthread_cond_broadcast(&d->cv);
	}
	pthread_mutex_unlock(&d->mu);
	if (again && limited && o->rate_limited == 1)
		vp_log_info(LOGMOD, "store_rate_limited", "number=%s stripe=%02x held_ms=%llu", o->number, o->res.b[0],
		            (unsigned long long)((d->hold_until[o->res.b[0]] - vp_time_mono_ns()) / 1000000u));
	else if (again && !limited)
		vp_log_info(LOGMOD, "store_retry", "number=%s attempt=%u err=%s", o->number, o->attempts + 1,
		            vp_strerror(status));
	return again;
}

static void store_answer(void *arg, int status, const rl_message_t *ans, const vp_id_t *responder)
{
	op_t *o = arg;
	(void)responder;
	if (store_retry(o, status))
		return;
	if (!status && ans->contents.code == RL_ERROR) {
		rl_body_t b;
		unsigned code = 0;
		bool limited = false;
		if (!rl_body_decode(RL_ERROR, ans->contents.body.p, ans->contents.body.len, NULL, NULL, &b)) {
			code = b.u.error.code;
			limited = code == RL_ERR_FORBIDDEN && b.u.error.info.len == 12 &&
			          !memcmp(b.u.error.info.p, "rate-limited", 12);
		}
		if (limited && store_retry(o, VP_ERATELIMIT))
			return;
		/* Error_Not_Found to a Resource-ID is a routing answer, not a refusal: a peer on the way would have
		 * sent the Store straight back (two ring views that disagree for a moment, chord.c "bounce").  Sent
		 * again like a Store without answer; a 1,000,000-number publish failed on 2 such answers at 690,000. */
		if (code == RL_ERR_NOT_FOUND && store_retry(o, VP_ENOROUTE))
			return;
		vp_log_warn(LOGMOD, "store_refused", "number=%s reload_error=%u info=%s", o->number, code,
		            limited ? "rate-limited" : "-");
		status = limited ? VP_ERATELIMIT : code == RL_ERR_FORBIDDEN ? VP_EFORBIDDEN
		                                 : code == RL_ERR_DATA_TOO_LARGE ? VP_EQUOTA : VP_EREFUSED;
	} else if (!status && ans->contents.code != RL_STORE_ANS) {
		status = VP_EBADTYPE;
	}
	store_finish(o, status);
}

static uint64_t next_storage_time(dhr_t *d)
{
	uint64_t t = vp_time_wall_ms();
	pthread_mutex_lock(&d->mu);
	if (t <= d->last_storage_time)
		t = d->last_storage_time + 1; /* a refresh must be newer than what it replaces */
	d->last_storage_time = t;
	pthread_mutex_unlock(&d->mu);
	return t;
}

/* Build, sign and send the StoreReq of \p o (pacer thread). */
static int store_send(dhr_t *d, op_t *o)
{
	const dhr_signer_t *sg = &d->conf.signers[o->signer];
	uint8_t hash[RL_MAX_HASH_LEN], sigbuf[RL_MAX_SIG_LEN], key[ST_VIPR_KEY_LEN], val[ST_VIPR_VALUE_MAX_LEN];
	st_vipr_key_t k = { sg->node_id, o->reg.vservice_id };
	st_vipr_value_t v = { sg->node_id, o->reg.vservice_id, o->reg.methods, NULL, 0 };
	rl_signer_identity_t id;
	rl_stored_data_t sd;
	rl_store_kind_data_t kd;
	rl_body_t b;
	size_t vlen = 0;
	int rc;
	st_vipr_key_encode(&k, key);
	if (o->vop != VAP_OP_WITHDRAW && (rc = st_vipr_value_encode(&v, val, sizeof(val), &vlen)))
		return rc;
	if ((rc = rl_signer_cert_hash(sg->cert_der, sg->cert_len, hash, &id)))
		return rc;
	memset(&sd, 0, sizeof(sd));
	sd.storage_time = next_storage_time(d);
	sd.lifetime = d->conf.lifetime_s;
	sd.model = RL_MODEL_DICTIONARY;
	sd.key = (rl_bytes_t){ key, ST_VIPR_KEY_LEN };
	sd.exists = o->vop != VAP_OP_WITHDRAW;
	if (sd.exists)
		sd.value = (rl_bytes_t){ val, (uint32_t)vlen };
	if ((rc = rl_stored_data_sign(sg->key, o->res.b, VP_ID_LEN, d->conf.kind_id, &sd, &id, sigbuf,
	                              sizeof(sigbuf))))
		return rc;
	memset(&kd, 0, sizeof(kd));
	kd.kind = d->conf.kind_id;
	kd.values.items = &sd;
	kd.values.n_items = 1;
	memset(&b, 0, sizeof(b));
	b.code = RL_STORE_REQ;
	b.u.store_req.resource = (rl_bytes_t){ o->res.b, VP_ID_LEN };
	b.u.store_req.kind_data.items = &kd;
	b.u.store_req.kind_data.n_items = 1;
	return d->t.request(d->t.ctx, sg->shard, &o->res, &b, store_answer, o);
}

/*
 * The sweep's projection (pacer, under mu): the Stores queued need queued / rate seconds at the current
 * rate; beyond the lifetime, the registrations at the end of the queue expire before their refresh reaches
 * the overlay.  Kept in st.backlog_s (the behind alarm) and logged at most once a minute.
 */
static void project(dhr_t *d, uint64_t now)
{
	uint64_t queued = d->heap_n[0] + d->heap_n[1] + d->held_n;
	d->st.backlog_s = d->rate > 0 ? (double)queued / d->rate : 0;
	if (d->st.backlog_s > d->conf.lifetime_s && (!d->behind_ns || now - d->behind_ns >= 60000000000ull)) {
		d->behind_ns = now;
		vp_log_warn(LOGMOD, "sweep_behind", "queued=%llu rate=%.0f backlog_s=%.0f lifetime_s=%u "
		            "hint=\"the queued Stores take longer than a registration lives: raise [vipr] store_rate "
		            "(and the overlay's policing), lengthen [vipr] lifetime, or publish less at once\"",
		            (unsigned long long)queued, d->rate, d->st.backlog_s, d->conf.lifetime_s);
	}
}

static void *pacer(void *arg)
{
	dhr_t *d = arg;
	pthread_mutex_lock(&d->mu);
	d->tok_ns = vp_time_mono_ns();
	while (!d->stop) {
		uint64_t now = vp_time_mono_ns();
		double cap = d->conf.store_inflight > 1 ? d->conf.store_inflight : 1;
		op_t *o;
		int rc;
		release_holds(d, now);
		project(d, now);
		d->tokens += (double)(now - d->tok_ns) * d->rate / 1e9;
		if (d->tokens > cap)
			d->tokens = cap; /* a burst of at most one window */
		d->tok_ns = now;
		if (d->inflight >= (uint32_t)d->window || d->tokens < 1.0 ||
		    !(d->heap_n[0] + d->heap_n[1])) {
			struct timespec ts;
			uint64_t wait_ns = 1000000; /* 1 ms: finer than any rate a node needs */
			if (d->tokens < 1.0 && d->rate > 0)
				wait_ns = (uint64_t)((1.0 - d->tokens) * 1e9 / d->rate) + 1;
			if (!(d->heap_n[0] + d->heap_n[1]) || d->inflight >= (uint32_t)d->window)
				wait_ns = 100000000; /* woken by a submit or a completion */
			if (d->held_n && d->release_ns > now && d->release_ns - now < wait_ns)
				wait_ns = d->release_ns - now; /* a held stripe's Stores are due */
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += (long)(wait_ns % 1000000000);
			ts.tv_sec += (time_t)(wait_ns / 1000000000) + ts.tv_nsec / 1000000000;
			ts.tv_nsec %= 1000000000;
			pthread_cond_timedwait(&d->cv, &d->mu, &ts);
			continue;
		}
		if (!(o = next_store(d, now)))
			continue; /* every queued Store waits for its stripe's hold */
		o->sent_ns = now;
		d->tokens -= 1.0;
		d->inflight++;
		d->st.stores_sent++;
		d->st.queued--;
		pthread_mutex_unlock(&d->mu);
		o->attempts++;
		rc = store_send(d, o);
		if (rc && store_retry(o, rc))
			rc = 0;
		if (rc) {
			vp_log_warn(LOGMOD, "store_send_failed", "number=%s err=%s", o->number, vp_strerror(rc));
			store_finish(o, rc);
		}
		pthread_mutex_lock(&d->mu);
	}
	pthread_mutex_unlock(&d->mu);
	return NULL;
}

/* Account the claim of \p o (under mu): VP_EQUOTA if its signer is full. */
static int claim_account(dhr_t *d, op_t *o)
{
	claim_t *e, *slot;
	int rc;
	if ((rc = claims_grow(&d->claims)))
		return rc;
	e = claims_find(&d->claims, &o->res, &slot);
	if (e)
		o->signer = e->signer; /* a refresh or withdrawal is signed by the Node-ID that claimed the number */
	if (o->vop == VAP_OP_WITHDRAW) {
		if (e) {
			e->state = 2;
			d->claims.used--;
			d->claims.tomb++;
			d->per_signer[e->signer]--;
			d->st.numbers--;
		}
		return 0;
	}
	if (e)
		return 0; /* a refresh */
	/*
	 * A new number goes to the signer its Resource-ID hashes to, or, when that one is full, to the next
	 * with room: the hash alone splits a block Binomially, so n Node-IDs of quota Q would refuse numbers
	 * well before n x Q (20,000 numbers on 2 Node-IDs of 10,000: one of them is over about half the time).
	 */
	for (unsigned i = 0; i < d->conf.n_signers && d->per_signer[o->signer] >= d->conf.quota; i++)
		o->signer = (o->signer + 1) % d->conf.n_signers;
	if (d->per_signer[o->signer] >= d->conf.quota) {
		if (d->st.over_quota++ % DHR_ALARM_EVERY == 0)
			vp_log_warn(LOGMOD, "alarm",
			            "alarm=over_quota number=%s node_ids=%u quota_per_node_id=%u numbers=%llu refused=%llu "
			            "hint=\"add Node-IDs ([node] shards) to claim more numbers\"",
			            o->number, d->conf.n_signers, d->conf.quota, (unsigned long long)d->st.numbers,
			            (unsigned long long)d->st.over_quota);
		return VP_EQUOTA;
	}
	if (slot->state == 2)
		d->claims.tomb--;
	slot->res = o->res;
	slot->state = 1;
	slot->signer = (uint8_t)o->signer;
	d->claims.used++;
	d->per_signer[o->signer]++;
	d->st.numbers++;
	return 0;
}

static int dhr_store(void *ctx, const char *number, uint8_t vop, const vsrv_reg_t *reg, vsrv_done_fn done,
                     void *arg)
{
	dhr_t *d = ctx;
	op_t *o;
	int rc;
	if (!number || !reg || !done)
		return VP_EINVAL;
	if (!(o = calloc(1, sizeof(*o))))
		return VP_ENOMEM;
	o->d = d;
	snprintf(o->number, sizeof(o->number), "%s", number);
	o->res = vp_id_from_name(number, strlen(number));
	o->vop = vop;
	o->reg = *reg;
	o->signer = (unsigned)(res_hash(&o->res) % d->conf.n_signers);
	o->done = done;
	o->arg = arg;
	pthread_mutex_lock(&d->mu);
	if (d->stop)
		rc = VP_ECLOSED;
	else if (!(rc = claim_account(d, o)) &&
	         !(rc = heap_push(d, sweep_cmp(&o->res, &d->cursor) > 0 ? d->cur : !d->cur, o))) {
		d->st.queued++;
		pthread_cond_broadcast(&d->cv);
	}
	pthread_mutex_unlock(&d->mu);
	if (rc)
		free(o);
	return rc;
}

/* ---- fetch: 3 copies, verified, voted ------------------------------------------------------ */

static int fetch_stage(dhr_t *d, op_t *o);

static int keep_entry(void *arg, uint32_t kind, const rl_stored_data_t *sd, const dp_cert_ident_t *signer)
{
	struct fcopy *c = arg;
	op_t *o = c->o;
	dentry_t *e;
	(void)kind;
	(void)signer;
	if (o->n[c->k] >= DHR_FETCH_MAX || sd->key.len > ST_VIPR_KEY_LEN || sd->value.len > ST_VIPR_VALUE_MAX_LEN)
		return 0;
	e = &o->ent[c->k][o->n[c->k]++];
	memcpy(e->key, sd->key.p, sd->key.len);
	e->key_len = sd->key.len;
	e->exists = sd->exists;
	e->value_len = sd->exists ? sd->value.len : 0;
	if (e->value_len)
		memcpy(e->value, sd->value.p, e->value_len);
	return 0;
}

/* Copies a and b hold the same entries (each storing peer answers in its store's key order). */
static bool same_copy(const op_t *o, int a, int b)
{
	if (o->n[a] != o->n[b])
		return false;
	for (size_t i = 0; i < o->n[a]; i++) {
		const dentry_t *x = &o->ent[a][i], *y = &o->ent[b][i];
		if (x->key_len != y->key_len || x->exists != y->exists || x->value_len != y->value_len ||
		    memcmp(x->key, y->key, x->key_len) || memcmp(x->value, y->value, x->value_len))
			return false;
	}
	return true;
}

static void fetch_finish(op_t *o)
{
	dhr_t *d = o->d;
	vsrv_entry_t ents[VSRV_COPIES][DHR_FETCH_MAX];
	vsrv_copy_t copies[VSRV_COPIES];
	vsrv_reg_t regs[VSRV_REGS_MAX];
	vsrv_vote_t vote;
	char incident[VSRV_INCIDENT_MAX + 96 + 64 + 40];
	const char *why = "";
	unsigned rejected = 0, bad_copies = 0;
	int blame = -1;
	size_t n = 0;
	int rc;
	for (int c = 0; c < VSRV_COPIES; c++) {
		for (size_t i = 0; i < o->n[c]; i++)
			ents[c][i] = (vsrv_entry_t){ o->ent[c][i].key, o->ent[c][i].key_len,
				                     o->ent[c][i].value_len ? o->ent[c][i].value : NULL,
				                     o->ent[c][i].value_len, o->ent[c][i].exists };
		copies[c] = (vsrv_copy_t){ o->answered[c], ents[c], o->n[c] };
		if (o->rejected[c]) {
			rejected += o->rejected[c];
			bad_copies++;
			blame = c;
			why = o->fc[c].why;
		}
	}
	rc = vsrv_lookup_vote(copies, regs, VSRV_REGS_MAX, &n, &vote);
	incident[0] = '\0';
	if (vote.incident[0] || rejected) {
		char r0[VP_ID_HEX_LEN + 1] = "-", r1[VP_ID_HEX_LEN + 1] = "-", r2[VP_ID_HEX_LEN + 1] = "-";
		char bl[VP_ID_HEX_LEN + 1];
		/* Blame (first, so that no cut loses it): the one copy that held entries failing verification, else
		 * the one copy the two others agree against.  Every copy failing: the signer forged, not a peer. */
		if (bad_copies != 1)
			blame = -1;
		for (int c = 0; blame < 0 && !bad_copies && c < VSRV_COPIES; c++)
			if (o->answered[0] && o->answered[1] && o->answered[2] && same_copy(o, (c + 1) % 3, (c + 2) % 3) &&
			    !same_copy(o, c, (c + 1) % 3))
				blame = c;
		if (blame >= 0) {
			size_t k = (size_t)snprintf(incident, sizeof(incident), "blame=%s ",
			                            vp_id_to_hex(&o->responder[blame], bl));
			snprintf(incident + k, sizeof(incident) - k, "%s%s%s", vote.incident[0] ? vote.incident : "",
			         vote.incident[0] && rejected ? "; " : "", rejected ? why : "");
		}
		if (o->answered[0])
			vp_id_to_hex(&o->responder[0], r0);
		if (o->answered[1])
			vp_id_to_hex(&o->responder[1], r1);
		if (o->answered[2])
			vp_id_to_hex(&o->responder[2], r2);
		{
			size_t k = strlen(incident);
			snprintf(incident + k, sizeof(incident) - k, "%s%s%s copies=%.8s,%.8s,%.8s",
			         blame >= 0 ? "" : vote.incident[0] ? vote.incident : "",
			         blame < 0 && vote.incident[0] && rejected ? "; " : "", blame >= 0 || !rejected ? "" : why,
			         r0, r1, r2);
		}
		vp_log_warn(LOGMOD, "incident", "number=%s answered=%u outvoted=%u rejected=%u text=\"%s\"", o->number,
		            vote.answered, vote.outvoted, rejected, incident);
	}
	pthread_mutex_lock(&d->mu);
	d->fetching--;
	if (incident[0])
		d->st.incidents++;
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mu);
	o->fdone(o->arg, rc, rc ? NULL : regs, rc ? 0 : n, incident[0] ? incident : NULL);
	free(o);
}

/* Ask the copies after copy k one after the other (each at the successor of the last answerer), or finish. */
static void fetch_continue(op_t *o, int k)
{
	dhr_t *d = o->d;
	o->stage = k;
	while (++o->stage < VSRV_COPIES) {
		if (!fetch_stage(d, o))
			return;
		o->n[o->stage] = 0;
	}
	fetch_finish(o);
}

/*
 * Every copy asked at once has answered: keep those that stand as asking one after the other would have got
 * them (vsrv_copies_standing: each at the successor of the peer that really answered the copy before), and
 * from the first that does not (a wrong guess, or the copy before failed) ask again one after the other.
 */
static void fetch_settle(op_t *o)
{
	dhr_t *d = o->d;
	vp_id_t dest[VSRV_COPIES];
	bool missed;
	unsigned k;
	for (int c = 0; c < VSRV_COPIES; c++)
		dest[c] = o->fc[c].dest;
	o->parallel = false;
	k = vsrv_copies_standing(o->answered, o->responder, dest, VSRV_COPIES, &missed);
	if (k < VSRV_COPIES) {
		pthread_mutex_lock(&d->mu);
		d->st.fetch_guess_missed += missed;
		pthread_mutex_unlock(&d->mu);
		for (unsigned c = k; c < VSRV_COPIES; c++) {
			o->answered[c] = false;
			o->n[c] = 0;
			o->rejected[c] = 0;
		}
	}
	fetch_continue(o, (int)k - 1);
}

static void fetch_answer(void *arg, int status, const rl_message_t *ans, const vp_id_t *responder)
{
	struct fcopy *c = arg;
	op_t *o = c->o;
	dhr_t *d = o->d;
	nk_fetch_result_t fr;
	int rc = status;
	if (!rc) {
		pthread_mutex_lock(&d->cert_mu);
		rc = nk_fetch_verify(d->conf.certs, &d->kind, 1, &o->res, ans, keep_entry, c, &fr);
		pthread_mutex_unlock(&d->cert_mu);
		if (!rc && fr.rejected) {
			char hex[VP_ID_HEX_LEN + 1];
			vp_id_to_hex(responder, hex);
			o->rejected[c->k] = fr.rejected;
			snprintf(c->why, sizeof(c->why), "%u entries from %.8s failed verification (%s)", fr.rejected, hex,
			         dp_cert_reason_name(fr.last));
			pthread_mutex_lock(&d->mu);
			d->st.entries_rejected += fr.rejected;
			pthread_mutex_unlock(&d->mu);
		}
	}
	if (!rc) {
		o->answered[c->k] = true;
		o->responder[c->k] = *responder;
	} else {
		o->n[c->k] = 0;
		pthread_mutex_lock(&d->mu);
		d->st.fetch_copies_failed++;
		pthread_mutex_unlock(&d->mu);
		vp_log_info(LOGMOD, "fetch_copy_failed", "number=%s copy=%d err=%s", o->number, c->k, vp_strerror(rc));
	}
	if (o->parallel) {
		if (atomic_fetch_sub_explicit(&o->pending, 1, memory_order_acq_rel) == 1)
			fetch_settle(o);
		return;
	}
	/* The replicas: the successor of the previous answerer (after a failure, of the one before). */
	fetch_continue(o, c->k);
}

/* Send the Fetch of copy k to \p dest.  0 (answer pending) or a VP_E* code. */
static int fetch_ask(dhr_t *d, op_t *o, int k, const vp_id_t *dest)
{
	rl_specifier_t spec;
	rl_body_t b;
	o->fc[k].dest = *dest;
	nk_fetch_req(&b, &spec, &o->res, d->conf.kind_id);
	return d->t.request(d->t.ctx, d->conf.signers[0].shard, dest, &b, fetch_answer, &o->fc[k]);
}

/* Send the Fetch of copy o->stage, one after the other: at the Resource-ID, or at the successor of the
 * last copy that answered (past the ones that failed).  0 (answer pending) or a VP_E* code. */
static int fetch_stage(dhr_t *d, op_t *o)
{
	vp_id_t dest = o->res;
	if (o->stage > 0) {
		int prev = o->stage - 1;
		while (prev >= 0 && !o->answered[prev])
			prev--;
		if (prev < 0)
			return VP_ENOROUTE; /* nobody answered: no successor to name */
		dest = vp_id_add_pow2(&o->responder[prev], 0);
		for (int c = prev + 1; c < o->stage; c++) /* skip the successor that failed */
			dest = vp_id_add_pow2(&dest, 0);
	}
	return fetch_ask(d, o, o->stage, &dest);
}

/*
 * On the first signer's vnode thread (dhr_transport_t.call): ask the 3 copies at once when the vnode can
 * name the replicas (its guess of the peer responsible for the Resource-ID and of that peer's successor):
 * copy 0 at the Resource-ID, copy 1 at guess 0 + 1, copy 2 at guess 1 + 1, each routed by the overlay like
 * any request; fetch_settle keeps what asking one after the other would have got.  Without a guess, one
 * after the other.
 */
static void fetch_start(void *arg, unsigned shard)
{
	op_t *o = arg;
	dhr_t *d = o->d;
	vp_id_t g[VSRV_COPIES - 1], dest[VSRV_COPIES];
	size_t n = d->t.guess(d->t.ctx, shard, &o->res, g, VSRV_COPIES - 1);
	if (n < VSRV_COPIES - 1) {
		o->stage = 0;
		if (fetch_stage(d, o))
			fetch_continue(o, 0); /* copy 0 did not leave: nothing to name the replicas by; fails the lookup */
		return;
	}
	pthread_mutex_lock(&d->mu);
	d->st.fetches_parallel++;
	pthread_mutex_unlock(&d->mu);
	dest[0] = o->res;
	for (int k = 1; k < VSRV_COPIES; k++)
		dest[k] = vp_id_add_pow2(&g[k - 1], 0); /* the replica rule: the successor of the guessed holder */
	o->parallel = true;
	atomic_store(&o->pending, 1); /* ours, until every copy was asked: an answer may come before request returns */
	for (int k = 0; k < VSRV_COPIES; k++) {
		int rc;
		atomic_fetch_add(&o->pending, 1);
		if ((rc = fetch_ask(d, o, k, &dest[k]))) {
			atomic_fetch_sub(&o->pending, 1);
			vp_log_info(LOGMOD, "fetch_copy_failed", "number=%s copy=%d err=%s", o->number, k, vp_strerror(rc));
		}
	}
	if (atomic_fetch_sub_explicit(&o->pending, 1, memory_order_acq_rel) == 1)
		fetch_settle(o);
}

static int dhr_fetch(void *ctx, const char *number, vsrv_fetch_fn done, void *arg)
{
	dhr_t *d = ctx;
	op_t *o;
	int rc;
	if (!number || !done)
		return VP_EINVAL;
	if (!(o = calloc(1, sizeof(*o))))
		return VP_ENOMEM;
	o->d = d;
	o->fetch = true;
	snprintf(o->number, sizeof(o->number), "%s", number);
	o->res = vp_id_from_name(number, strlen(number));
	o->fdone = done;
	o->arg = arg;
	for (int k = 0; k < VSRV_COPIES; k++)
		o->fc[k] = (struct fcopy){ .o = o, .k = k };
	pthread_mutex_lock(&d->mu);
	d->fetching++;
	d->st.fetches++;
	pthread_mutex_unlock(&d->mu);
	rc = d->t.call && d->t.guess ? d->t.call(d->t.ctx, d->conf.signers[0].shard, fetch_start, o) : fetch_stage(d, o);
	if (rc) {
		pthread_mutex_lock(&d->mu);
		d->fetching--;
		pthread_mutex_unlock(&d->mu);
		free(o);
	}
	return rc;
}

static int dhr_app_attach(void *ctx, const vp_id_t *contact, unsigned timeout_ms, int *fd)
{
	dhr_t *d = ctx;
	return d->t.app_attach(d->t.ctx, contact, timeout_ms, fd);
}

/* ---- life -------------------------------------------------------------------------------- */

int dhr_new(const dhr_conf_t *conf, const dhr_transport_t *t, dhr_t **out)
{
	dhr_t *d;
	if (!conf || !t || !out || !t->request || !t->app_attach || !conf->n_signers ||
	    conf->n_signers > DHR_MAX_SIGNERS || !conf->certs || !conf->store_rate || !conf->store_inflight)
		return VP_EINVAL;
	for (unsigned i = 0; i < conf->n_signers; i++)
		if (!conf->signers[i].key || !conf->signers[i].cert_der || !conf->signers[i].cert_len)
			return VP_EINVAL;
	if (!(d = calloc(1, sizeof(*d))))
		return VP_ENOMEM;
	d->conf = *conf;
	d->rate = conf->store_rate;
	d->window = conf->store_inflight;
	d->t0_ns = vp_time_mono_ns();
	d->t = *t;
	d->kind = st_kind_vipr(conf->kind_id);
	pthread_mutex_init(&d->mu, NULL);
	pthread_mutex_init(&d->cert_mu, NULL);
	pthread_cond_init(&d->cv, NULL);
	if (pthread_create(&d->th, NULL, pacer, d)) {
		dhr_free(d, 0);
		return VP_EIO;
	}
	d->th_started = true;
	vp_log_info(LOGMOD, "started", "node_ids=%u quota_per_node_id=%u capacity=%llu store_rate=%u store_inflight=%u",
	            conf->n_signers, conf->quota, (unsigned long long)conf->quota * conf->n_signers, conf->store_rate,
	            conf->store_inflight);
	*out = d;
	return 0;
}

void dhr_iface(dhr_t *d, vsrv_dht_t *out)
{
	memset(out, 0, sizeof(*out));
	out->ctx = d;
	out->store = dhr_store;
	out->fetch = dhr_fetch;
	out->app_attach = dhr_app_attach;
}

void dhr_stop(dhr_t *d)
{
	op_t *o;
	if (!d)
		return;
	pthread_mutex_lock(&d->mu);
	d->stop = true;
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mu);
	if (d->th_started)
		pthread_join(d->th, NULL);
	d->th_started = false;
	/* Queued stores were never sent: they fail now (a retry pushes none back once stop is set). */
	for (int h = 0; h < 2; h++)
		while ((o = heap_pop(d, h))) {
			o->done(o->arg, VP_ECLOSED);
			free(o);
		}
	for (unsigned st = 0; st < 256; st++)
		while ((o = d->held[st])) {
			d->held[st] = o->held_next;
			d->held_n--;
			o->done(o->arg, VP_ECLOSED);
			free(o);
		}
}

void dhr_free(dhr_t *d, uint64_t timeout_ms)
{
	uint64_t until;
	if (!d)
		return;
	dhr_stop(d);
	until = vp_time_mono_ns() + timeout_ms * 1000000ull;
	pthread_mutex_lock(&d->mu);
	while ((d->inflight || d->fetching) && vp_time_mono_ns() < until) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 10000000;
		ts.tv_sec += ts.tv_nsec / 1000000000;
		ts.tv_nsec %= 1000000000;
		pthread_cond_timedwait(&d->cv, &d->mu, &ts);
	}
	if (d->inflight || d->fetching) {
		/* Answers still owed by the transport would touch freed memory: leak rather than crash. */
		vp_log_warn(LOGMOD, "free_abandoned", "inflight=%u fetching=%u", d->inflight, d->fetching);
		pthread_mutex_unlock(&d->mu);
		return;
	}
	pthread_mutex_unlock(&d->mu);
	free(d->heap[0]);
	free(d->heap[1]);
	free(d->claims.t);
	pthread_cond_destroy(&d->cv);
	pthread_mutex_destroy(&d->mu);
	pthread_mutex_destroy(&d->cert_mu);
	free(d);
}

void dhr_get_stats(dhr_t *d, dhr_stats_t *out)
{
	pthread_mutex_lock(&d->mu);
	*out = d->st;
	out->inflight = d->inflight;
	out->rate = d->rate;
	out->window = d->window;
	pthread_mutex_unlock(&d->mu);
}
