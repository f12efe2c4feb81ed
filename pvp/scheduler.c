/*
 * pvp/scheduler.c - validation scheduler: a min-heap of jobs by due time.
 */
#include "pvp/scheduler.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "common/errcode.h"
#include "common/log.h"
#include "common/net.h"
#include "common/rand.h"

typedef struct job {
	uint64_t due_ms;
	uint32_t attempt;                          /* rounds already run */
	uint8_t ndone;
	uint64_t done[PVP_CLAIMANTS_MAX];          /* claimants finished (hash of id) */
	pvp_vcr_t rec;
} job_t;

struct pvp_sched {
	pvp_sched_conf_t conf;
	job_t *heap;
	size_t n, cap;
	uint64_t rng;
	pvp_sched_stats_t stats;
};

int pvp_sched_new(const pvp_sched_conf_t *conf, pvp_sched_t **out)
{
	pvp_sched_t *s;
	*out = NULL;
	if (!conf || !conf->lookup || !conf->validate || !conf->route)
		return VP_ECONFIG;
	s = calloc(1, sizeof(*s));
	if (!s)
		return VP_ENOMEM;
	s->conf = *conf;
	if (!s->conf.delay_min_s)
		s->conf.delay_min_s = 300;
	if (!s->conf.delay_max_s)
		s->conf.delay_max_s = 7200;
	if (!s->conf.backoff_s)
		s->conf.backoff_s = 60;
	if (!s->conf.max_attempts)
		s->conf.max_attempts = 4;
	if (!s->conf.max_jobs)
		s->conf.max_jobs = 1000000;
	if (s->conf.delay_max_s < s->conf.delay_min_s) {
		free(s);
		return VP_ECONFIG;
	}
	s->rng = conf->rng_seed;
	if (!s->rng && RAND_bytes((unsigned char *)&s->rng, sizeof(s->rng)) != 1) {
		free(s);
		return VP_ECRYPTO;
	}
	if (!s->rng)
		s->rng = 0x9e3779b97f4a7c15ull;
	*out = s;
	return 0;
}

void pvp_sched_free(pvp_sched_t *s)
{
	if (!s)
		return;
	free(s->heap);
	free(s);
}

/* xorshift64*: the delay only has to be unpredictable to claimants, not secret. */
static uint64_t rnd(pvp_sched_t *s)
{
	return vp_xorshift64s_next(&s->rng);
}

static void sift_up(pvp_sched_t *s, size_t i)
{
	job_t tmp = s->heap[i];
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (s->heap[p].due_ms <= tmp.due_ms)
			break;
		s->heap[i] = s->heap[p];
		i = p;
	}
	s->heap[i] = tmp;
}

static void sift_down(pvp_sched_t *s, size_t i)
{
	job_t tmp = s->heap[i];
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= s->n)
			break;
		if (c + 1 < s->n && s->heap[c + 1].due_ms < s->heap[c].due_ms)
			c++;
		if (s->heap[c].due_ms >= tmp.due_ms)
			break;
		s->heap[i] = s->heap[c];
		i = c;
	}
	s->heap[i] = tmp;
}

static int push(pvp_sched_t *s, const job_t *j)
{
	if (s->n >= s->conf.max_jobs)
		return VP_EBUSY;
	if (s->n == s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 64;
		job_t *nh = realloc(s->heap, nc * sizeof(*nh));
		if (!nh)
			return VP_ENOMEM;
		s->heap = nh;
		s->cap = nc;
	}
	s->heap[s->n] = *j;
	sift_up(s, s->n++);
	return 0;
}

static void pop(pvp_sched_t *s, job_t *j)
{
	*j = s->heap[0];
	s->heap[0] = s->heap[--s->n];
	if (s->n)
		sift_down(s, 0);
}

int pvp_sched_add(pvp_sched_t *s, const pvp_vcr_t *r)
{
	job_t j;
	uint64_t span = (uint64_t)(s->conf.delay_max_s - s->conf.delay_min_s) * 1000 + 1;
	int rc;
	if (r->dir != PVP_DIR_ORIG || !vp_e164_is_canonical(r->called))
		return VP_EINVAL;
	memset(&j, 0, sizeof(j));
	j.rec = *r;
	j.due_ms = r->stop_ms + (uint64_t)s->conf.delay_min_s * 1000 + rnd(s) % span;
	rc = push(s, &j);
	if (!rc)
		s->stats.scheduled++;
	return rc;
}

static uint64_t id_hash(const char *id)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
		h ^= *p;
		h *= 0x100000001b3ull;
	}
	return h;
}

static bool is_done(const job_t *j, uint64_t h)
{
	for (unsigned i = 0; i < j->ndone; i++)
		if (j->done[i] == h)
			return true;
	return false;
}

/* One round for job j; true if it must be retried. */
static bool run_job(pvp_sched_t *s, job_t *j)
{
	pvp_claimant_t cl[PVP_CLAIMANTS_MAX];
	size_t n = 0;
	bool retry = false;
	int rc;

	rc = s->conf.lookup(s->conf.lookup_arg, j->rec.called, cl, PVP_CLAIMANTS_MAX, &n);
	if (rc) {
		vp_log_info("pvp", "lookup_failed", "number=%s attempt=%u err=%s", j->rec.called,
		            j->attempt + 1, vp_errname(rc));
		return true;
	}
	if (n == 0) {
		s->stats.no_claimant++;
		vp_log_debug("pvp", "no_claimant", "number=%s", j->rec.called);
		return false;
	}
	if (n > PVP_CLAIMANTS_MAX)
		n = PVP_CLAIMANTS_MAX;
	for (size_t i = 0; i < n; i++) {
		uint64_t h = id_hash(cl[i].id);
		uint8_t prev[PVP_TICKET_MAX];
		size_t prev_len = 0;
		pvp_validation_t *v;
		if (is_done(j, h))
			continue;
		v = malloc(sizeof(*v));
		if (!v)
			return true;
		if (s->conf.prev_ticket)
			prev_len = s->conf.prev_ticket(s->conf.prev_ticket_arg, j->rec.called, cl[i].id, prev,
			                               sizeof(prev));
		if (prev_len > sizeof(prev))
			prev_len = 0;
		rc = s->conf.validate(s->conf.validate_arg, &cl[i], &j->rec, prev_len ? prev : NULL, prev_len, v);
		if (rc == 0 && v->resp.status != PVP_ST_REFUSED) {
			pvp_route_t route = { .number = j->rec.called, .claimant = &cl[i], .resp = &v->resp,
			                      .method = v->method, .cert = v->cert_len ? v->cert : NULL,
			                      .cert_len = v->cert_len };
			if (v->resp.status == PVP_ST_ROUTES)
				s->stats.routes++;
			else
				s->stats.pending++;
			s->conf.route(s->conf.route_arg, &route);
		} else if (rc == 0) {
			s->stats.refused++;
			vp_log_info("pvp", "validation_refused", "number=%s claimant=%s reason=%s", j->rec.called,
			            cl[i].id, pvp_refusal_str(v->resp.reason));
		} else if (rc == VP_EAUTH || rc == VP_EPERM || rc == VP_ETLS || rc == VP_EMALFORMED || rc == VP_ERATELIMIT) {
			s->stats.failed++;
			vp_log_info("pvp", "claimant_failed", "number=%s claimant=%s err=%s", j->rec.called,
			            cl[i].id, vp_errname(rc));
		} else {
			s->stats.unreachable++;
			vp_log_info("pvp", "claimant_unreachable", "number=%s claimant=%s err=%s", j->rec.called,
			            cl[i].id, vp_errname(rc));
			retry = true;
			free(v);
			continue;
		}
		free(v);
		if (j->ndone < PVP_CLAIMANTS_MAX)
			j->done[j->ndone++] = h;
	}
	return retry;
}

int pvp_sched_run(pvp_sched_t *s, size_t max, size_t *ran)
{
	uint64_t now = vp_clock_now_ms(s->conf.clock);
	size_t k = 0;
	int rc = 0;

	while (k < max && s->n && s->heap[0].due_ms <= now) {
		job_t j;
		pop(s, &j);
		k++;
		if (run_job(s, &j)) {
			j.attempt++;
			if (j.attempt >= s->conf.max_attempts) {
				s->stats.dropped++;
				vp_log_warn("pvp", "validation_gave_up", "number=%s attempts=%u", j.rec.called, j.attempt);
				continue;
			}
			/* Back-off: backoff_s * 2^(attempt-1), from now. */
			j.due_ms = now + ((uint64_t)s->conf.backoff_s * 1000 << (j.attempt - 1));
			if ((rc = push(s, &j)))
				break;
		}
	}
	if (ran)
		*ran = k;
	return rc;
}

uint64_t pvp_sched_next_due_ms(const pvp_sched_t *s)
{
	return s->n ? s->heap[0].due_ms : UINT64_MAX;
}

size_t pvp_sched_pending(const pvp_sched_t *s)
{
	return s->n;
}

void pvp_sched_stats(const pvp_sched_t *s, pvp_sched_stats_t *out)
{
	*out = s->stats;
}

int pvp_sched_tcp_validate(void *arg, const pvp_claimant_t *c, const pvp_vcr_t *r,
                           const uint8_t *prev_ticket, size_t prev_len, pvp_validation_t *out)
{
	char host[PVP_CLAIMANT_ID_MAX], port[8];
	pvp_tcp_target_t t;
	uint16_t p;
	if (vp_net_split_hostport(c->addr, true, host, sizeof(host), &p))
		return VP_EINVAL;
	snprintf(port, sizeof(port), "%u", (unsigned)p);
	t.host = host;
	t.port = port;
	t.timeout_ms = 5000;
	return pvp_client_validate(arg, c->id, r, c->methods, pvp_tcp_connect, &t, prev_ticket, prev_len, out);
}
