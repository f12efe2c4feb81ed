/*
 * control/vap_server.c - epoll VAP server (see vap_server.h).
 */
#include "control/vap/vap_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/rand.h>

#include "common/clock.h"
#include "common/errcode.h"
#include "common/hex.h"
#include "common/log.h"
#include "common/net.h"

#define MOD "vap"
#define AGENT_BUCKETS 1024      /* hash buckets for the agent table; agents per server are O(1000) */
#define MAX_EVENTS 256          /* epoll events per wait */
#define PACE_QUANTUM 64         /* numbers issued from one Publish before rotating to the next (fairness) */
#define READS_PER_EVENT 4       /* bounded reads per readiness event, so one busy agent cannot starve others */
#define RESP_CAP 2048           /* every response and Notify fits this (Notify: 8 URIs of 256 + ticket 512) */
#define NONCE_BYTES 12          /* 96 random bits, hex-encoded in NONCE */
#define MAX_AUTH_FAILURES 5     /* 401s on one connection before it is closed: each is an online password guess */
#define TAG_LISTEN ((void *)1)
#define TAG_WAKE ((void *)2)

typedef struct agent {
	struct agent *next;         /* hash chain */
	char username[VAP_MAX_USERNAME + 1];
	vap_mac_t *mac;
	double tokens;              /* request token bucket */
	uint64_t last_ns;
} agent_t;

typedef struct conn conn_t;
typedef struct job job_t;

struct conn {
	conn_t *prev, *next;        /* all live connections */
	conn_t *dead_next;          /* reaping list */
	int fd;
	SSL *ssl;
	bool tls_ok;                /* handshake done */
	bool dead, closing, reading, in_dead_list;
	bool want_write;            /* EPOLLOUT armed */
	bool corked;                /* answers are coalesced until the read batch is handled */
	agent_t *agent;             /* set by Register */
	char nonce[2 * NONCE_BYTES + 1];
	uint8_t *rbuf;
	size_t rlen, roff;
	size_t discard;             /* bytes of an oversized message still to drop */
	uint8_t *wbuf;
	size_t wlen, woff, wcap;
	unsigned pending;           /* Publish jobs not yet answered */
	unsigned auth_failures;
	unsigned n_subs;
	uint32_t subs[VAP_MAX_SUBS];
	uint64_t last_rx_ns;
	char peer[64];
};

/* One Publish of numbers, from decode to answer. */
struct job {
	job_t *qnext;               /* pacer queue */
	conn_t *owner;              /* kept allocated (dead or alive) until pending reaches 0 */
	agent_t *agent;
	uint8_t tid[VAP_TID_LEN];
	bool fingerprint;
	bool cancelled;             /* the connection is gone: issue nothing more */
	bool exhausted;             /* out of the pacer queue: nothing more will be issued */
	uint8_t op;
	uint32_t vservice_id;
	uint64_t total, issued, outstanding, ok, failed;
	int first_error;
	unsigned quantum;
	/* cursor over the request's NUMBER and NUMBER-RANGE attributes */
	vap_msg_t msg;
	vap_attr_iter_t it;
	bool in_range;
	vap_range_t range;
	uint64_t range_i;
	char next[VP_E164_BUFLEN];
	bool has_next;
	uint8_t buf[];              /* copy of the request */
};

/* One UploadVCR answered when its records complete (hooks.upload_vcr_start). */
typedef struct upjob {
	struct upjob *prev, *next;  /* srv->upjobs: freed at destroy if never completed */
	conn_t *owner;              /* kept allocated until pending reaches 0 */
	agent_t *agent;
	uint8_t tid[VAP_TID_LEN];
	bool fingerprint;
	bool issuing;               /* records still being started: no answer yet */
	unsigned outstanding, ok, failed;
	int first_error;
} upjob_t;

/*
 * The counters, owned by the server thread as unbound's worker owns its statistics: only that thread
 * changes them (srv->st.x++ on the message path, no lock and no cache line shared with another writer);
 * vap_server_get_stats() reads them from any thread without stopping or asking the loop.  Atomic so
 * that read is not a data race; the list must name every field of vap_server_stats_t (checked below).
 */
#define VAP_COUNTERS(X)                                                                            \
	X(conns_open) X(conns_total) X(conns_refused) X(requests) X(challenges) X(responses_ok)      \
	X(responses_err) X(err_400) X(err_401) X(err_403) X(err_420) X(err_429) X(err_438) X(err_500) \
	X(err_503) X(stores_started) X(stores_ok) X(stores_failed) X(stores_queued) X(vcrs) X(notifies)

typedef struct counters {
#define COUNTER_FIELD(name) _Atomic uint64_t name;
	VAP_COUNTERS(COUNTER_FIELD)
#undef COUNTER_FIELD
} counters_t;

_Static_assert(sizeof(counters_t) == sizeof(vap_server_stats_t), "VAP_COUNTERS lists every server counter");

typedef struct post {
	struct post *next;
	void (*fn)(vap_server_t *, void *);
	void *arg;
} post_t;

struct vap_server {
	vap_server_conf_t conf;
	char realm[VAP_MAX_REALM + 1];
	char bind[64];
	vap_hooks_t hooks;
	int epfd, lfd, wakefd;
	uint16_t port;
	volatile int stop;
	agent_t *agents[AGENT_BUCKETS];
	conn_t *conns;
	conn_t *dead;
	unsigned nconns;
	job_t *qhead, *qtail;
	upjob_t *upjobs;            /* asynchronous UploadVCRs not yet answered */
	size_t queued_numbers;      /* not yet issued, over all queued jobs */
	unsigned inflight;
	double store_tokens;
	uint64_t store_last_ns;
	uint64_t last_sweep_ns;
	pthread_mutex_t post_lock;
	post_t *posts, *posts_tail;
	counters_t st;              /* see VAP_COUNTERS */
	uint8_t resp[RESP_CAP];
	char lists[2][VAP_MAX_LIST][VAP_MAX_URI];   /* VService black/white list scratch */
};

/* ---- small helpers -------------------------------------------------------------- */

static uint32_t hash_name(const char *s)
{
	uint32_t h = 2166136261u;   /* FNV-1a */
	while (*s)
		h = (h ^ (uint8_t)*s++) * 16777619u;
	return h;
}

static agent_t *agent_find(vap_server_t *srv, const char *name)
{
	agent_t *a = srv->agents[hash_name(name) % AGENT_BUCKETS];
	for (; a; a = a->next)
		if (!strcmp(a->username, name))
			return a;
	return NULL;
}

static void ep_update(vap_server_t *srv, conn_t *c)
{
	struct epoll_event ev = { 0 };
	ev.data.ptr = c;
	if (c->reading)
		ev.events |= EPOLLIN;
	if (c->want_write)
		ev.events |= EPOLLOUT;
	epoll_ctl(srv->epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_kill(vap_server_t *srv, conn_t *c, const char *why)
{
	if (c->dead)
		return;
	c->dead = true;
	vp_log_debug(MOD, "conn_close", "peer=%s agent=%s reason=%s", c->peer,
	             c->agent ? c->agent->username : "-", why);
	epoll_ctl(srv->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	if (c->ssl) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	close(c->fd);
	c->fd = -1;
	/* Unlink from the live list now; free when no job refers to it. */
	if (c->prev)
		c->prev->next = c->next;
	else
		srv->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	srv->nconns--;
	srv->st.conns_open--;
	/* Cancel the numbers of its Publishes not yet issued: nobody will hear the answer. */
	for (job_t *j = srv->qhead; j; j = j->qnext)
		if (j->owner == c)
			j->cancelled = true;
	if (!c->in_dead_list) {
		c->in_dead_list = true;
		c->dead_next = srv->dead;
		srv->dead = c;
	}
}

static void conn_free(conn_t *c)
{
	free(c->rbuf);
	free(c->wbuf);
	free(c);
}

static void reap(vap_server_t *srv)
{
	conn_t **pp = &srv->dead;
	while (*pp) {
		conn_t *c = *pp;
		if (c->pending == 0) {
			*pp = c->dead_next;
			conn_free(c);
		} else {
			pp = &c->dead_next;
		}
	}
}

/* ---- output ------------------------------------------------------------------ */

static long raw_write(conn_t *c, const uint8_t *p, size_t n)
{
	if (c->ssl) {
		int r = SSL_write(c->ssl, p, (int)(n > INT32_MAX ? INT32_MAX : n));
		if (r > 0)
			return r;
		switch (SSL_get_error(c->ssl, r)) {
		case SSL_ERROR_WANT_READ:
		case SSL_ERROR_WANT_WRITE:
			return 0;
		default:
			ERR_clear_error();
			return -1;
		}
	}
	for (;;) {
		ssize_t r = send(c->fd, p, n, MSG_NOSIGNAL);
		if (r >= 0)
			return r;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		return -1;
	}
}

static void conn_check_reading(vap_server_t *srv, conn_t *c);

static void conn_flush(vap_server_t *srv, conn_t *c)
{
	while (!c->dead && c->woff < c->wlen) {
		long r = raw_write(c, c->wbuf + c->woff, c->wlen - c->woff);
		if (r < 0) {
			conn_kill(srv, c, "write_error");
			return;
		}
		if (r == 0)
			break;
		c->woff += (size_t)r;
	}
	if (c->dead)
		return;
	if (c->woff == c->wlen) {
		c->woff = c->wlen = 0;
		if (c->closing) {
			conn_kill(srv, c, "closed_by_server");
			return;
		}
	}
	bool ww = c->wlen > 0;
	if (ww != c->want_write) {
		c->want_write = ww;
		ep_update(srv, c);
	}
	conn_check_reading(srv, c);
}

static void conn_send(vap_server_t *srv, conn_t *c, const uint8_t *p, size_t n)
{
	if (c->dead)
		return;
	if (c->wlen == 0 && !c->corked && (!c->ssl || c->tls_ok)) {
		/* Fast path: straight to the socket, no copy. */
		long r = raw_write(c, p, n);
		if (r < 0) {
			conn_kill(srv, c, "write_error");
			return;
		}
		p += r;
		n -= (size_t)r;
		if (n == 0)
			return;
	}
	if (c->wlen + n > c->wcap) {
		size_t cap = c->wcap ? c->wcap : 4096;
		uint8_t *nb;
		if (c->woff) {
			memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
			c->wlen -= c->woff;
			c->woff = 0;
		}
		while (cap < c->wlen + n)
			cap *= 2;
		if (cap != c->wcap) {
			nb = realloc(c->wbuf, cap);
			if (!nb) {
				conn_kill(srv, c, "out_of_memory");
				return;
			}
			c->wbuf = nb;
			c->wcap = cap;
		}
	}
	memcpy(c->wbuf + c->wlen, p, n);
	c->wlen += n;
	if (c->corked)
		return;     /* conn_on_readable() flushes once for the whole batch */
	if (!c->want_write) {
		c->want_write = true;
		ep_update(srv, c);
	}
	conn_check_reading(srv, c);
}

/* ---- responses --------------------------------------------------------------- */

typedef struct reply {
	vap_enc_t e;
	vap_mac_t *mac;
	bool fp;
} reply_t;

static void reply_begin(vap_server_t *srv, reply_t *r, uint16_t method, uint16_t cls,
                        const uint8_t *tid, vap_mac_t *mac, bool fp)
{
	vap_enc_begin(&r->e, srv->resp, sizeof(srv->resp), vap_type(method, cls), tid);
	r->mac = mac;
	r->fp = fp;
}

static void reply_end(vap_server_t *srv, conn_t *c, reply_t *r)
{
	long n = vap_enc_finish_mac(&r->e, r->mac, r->fp);
	if (n < 0) {
		vp_log_error(MOD, "encode_failed", "err=%s", vp_errname((int)n));
		return;
	}
	conn_send(srv, c, srv->resp, (size_t)n);
}

static void count_error(vap_server_t *srv, int code)
{
	srv->st.responses_err++;
	switch (code) {
	case 400: srv->st.err_400++; break;
	case 401: srv->st.err_401++; break;
	case 403: srv->st.err_403++; break;
	case 420: srv->st.err_420++; break;
	case 429: srv->st.err_429++; break;
	case 438: srv->st.err_438++; break;
	case 500: srv->st.err_500++; break;
	case 503: srv->st.err_503++; break;
	default: break;
	}
}

/* An error response; \p mac NULL for answers that cannot be authenticated. */
static void send_error(vap_server_t *srv, conn_t *c, uint16_t method, const uint8_t *tid,
                       vap_mac_t *mac, bool fp, int code, const char *reason,
                       uint32_t retry_ms)
{
	reply_t r;
	count_error(srv, code);
	reply_begin(srv, &r, method, VAP_CLASS_ERROR, tid, mac, fp);
	vap_enc_error(&r.e, code, reason);
	if (code == VAP_ERR_UNAUTHORIZED || code == VAP_ERR_STALE_NONCE) {
		vap_enc_str(&r.e, VAP_ATTR_REALM, srv->realm);
		vap_enc_str(&r.e, VAP_ATTR_NONCE, c->nonce);
	}
	if (retry_ms)
		vap_enc_u32(&r.e, VAP_ATTR_RETRY_AFTER, retry_ms);
	reply_end(srv, c, &r);
}

/* ---- publish jobs and the store pacer ------------------------------------------ */

/* Advance the job cursor to the next number; has_next false at the end. */
static void job_advance(job_t *j)
{
	vap_attr_t a;
	j->has_next = false;
	for (;;) {
		if (j->in_range) {
			if (j->range_i < vap_range_count(&j->range)) {
				vap_range_number(&j->range, j->range_i++, j->next);
				j->has_next = true;
				return;
			}
			j->in_range = false;
		}
		if (!vap_attr_next(&j->it, &a))
			return;
		if (a.type == VAP_ATTR_NUMBER) {
			if (vap_attr_number(&a, j->next) == 0) {
				j->has_next = true;
				return;
			}
		} else if (a.type == VAP_ATTR_NUMBER_RANGE) {
			if (vap_attr_range(&a, &j->range) == 0) {
				j->in_range = true;
				j->range_i = 0;
			}
		}
	}
}

static void q_push(vap_server_t *srv, job_t *j)
{
	j->qnext = NULL;
	if (srv->qtail)
		srv->qtail->qnext = j;
	else
		srv->qhead = j;
	srv->qtail = j;
}

static job_t *q_pop(vap_server_t *srv)
{
	job_t *j = srv->qhead;
	if (j) {
		srv->qhead = j->qnext;
		if (!srv->qhead)
			srv->qtail = NULL;
		j->qnext = NULL;
	}
	return j;
}

static void conn_process(vap_server_t *srv, conn_t *c);
static void conn_on_readable(vap_server_t *srv, conn_t *c);

static void job_finish(vap_server_t *srv, job_t *j)
{
	conn_t *c = j->owner;
	if (!c->dead) {
		reply_t r;
		if (j->failed == 0) {
			srv->st.responses_ok++;
			reply_begin(srv, &r, VAP_PUBLISH, VAP_CLASS_SUCCESS, j->tid, j->agent->mac, j->fingerprint);
			vap_enc_u32(&r.e, VAP_ATTR_NUMBER_COUNT, (uint32_t)j->ok);
			reply_end(srv, c, &r);
		} else {
			/* VP_EPERM: a number held by another tenant's VService (403, nothing stored for it). */
			uint16_t code = j->first_error == VP_EPERM ? VAP_ERR_FORBIDDEN : VAP_ERR_SERVER_ERROR;
			char reason[96];
			snprintf(reason, sizeof(reason), "%llu of %llu stores failed: %s",
			         (unsigned long long)j->failed, (unsigned long long)j->total,
			         vp_strerror(j->first_error));
			count_error(srv, code);
			reply_begin(srv, &r, VAP_PUBLISH, VAP_CLASS_ERROR, j->tid, j->agent->mac, j->fingerprint);
			vap_enc_error(&r.e, code, reason);
			vap_enc_u32(&r.e, VAP_ATTR_NUMBER_COUNT, (uint32_t)j->ok);
			reply_end(srv, c, &r);
		}
	}
	c->pending--;
	free(j);
	if (!c->pending)
		c->last_rx_ns = vp_time_mono_ns(); /* idle from our last answer, not from the agent's request */
	/* A dead owner is freed by reap() once pending is 0. */
	if (!c->dead)
		conn_check_reading(srv, c);
}

static void job_maybe_finish(vap_server_t *srv, job_t *j)
{
	if (j->exhausted && j->outstanding == 0)
		job_finish(srv, j);
}

void vap_server_store_done(vap_server_t *srv, void *token, int status)
{
	job_t *j = token;
	if (!j || j->outstanding == 0)
		return;
	srv->inflight--;
	j->outstanding--;
	if (status == 0) {
		j->ok++;
		srv->st.stores_ok++;
	} else {
		j->failed++;
		srv->st.stores_failed++;
		if (!j->first_error)
			j->first_error = status;
	}
	job_maybe_finish(srv, j);
}

/* Issue queued stores within the in-flight and rate limits, round-robin over Publishes. */
static void pace(vap_server_t *srv)
{
	if (!srv->qhead)
		return;
	if (srv->conf.store_rate > 0) {
		uint64_t now = vp_time_mono_ns();
		double burst = srv->conf.store_rate / 10 > 1 ? srv->conf.store_rate / 10 : 1;
		srv->store_tokens += (double)(now - srv->store_last_ns) * 1e-9 * srv->conf.store_rate;
		if (srv->store_tokens > burst)
			srv->store_tokens = burst;
		srv->store_last_ns = now;
	}
	while (srv->qhead) {
		job_t *j = srv->qhead;
		vap_store_req_t req;
		char number[VP_E164_BUFLEN];
		int rc;
		if (j->cancelled || !j->has_next) {
			q_pop(srv);
			srv->queued_numbers -= (size_t)(j->total - j->issued);
			j->exhausted = true;
			job_maybe_finish(srv, j);
			continue;
		}
		if (srv->inflight >= srv->conf.store_inflight)
			break;
		if (srv->conf.store_rate > 0) {
			if (srv->store_tokens < 1)
				break;
			srv->store_tokens -= 1;
		}
		memcpy(number, j->next, sizeof(number));
		job_advance(j);
		j->issued++;
		j->outstanding++;
		srv->inflight++;
		srv->queued_numbers--;
		srv->st.stores_started++;
		if (!j->has_next) {
			q_pop(srv);
			j->exhausted = true;
		} else if (++j->quantum >= PACE_QUANTUM && srv->qhead != srv->qtail) {
			j->quantum = 0;
			q_pop(srv);
			q_push(srv, j);
		}
		req.agent = j->agent->username;
		req.vservice_id = j->vservice_id;
		req.op = j->op;
		req.number = number;
		req.token = j;
		rc = srv->hooks.store(srv->hooks.ctx, &req);
		if (rc < 0)
			vap_server_store_done(srv, j, rc);
		/* j may have been freed by a synchronous completion: do not touch it. */
	}
}

/* Milliseconds until the pacer can issue again (-1: it does not need a timer). */
static int pace_wait_ms(const vap_server_t *srv)
{
	if (!srv->qhead || srv->inflight >= srv->conf.store_inflight || srv->conf.store_rate <= 0)
		return -1;
	if (srv->store_tokens >= 1)
		return 0;
	return (int)((1 - srv->store_tokens) / srv->conf.store_rate * 1000) + 1;
}

/* ---- request handling -------------------------------------------------------- */

static bool agent_take_token(vap_server_t *srv, agent_t *a, uint32_t *retry_ms)
{
	uint64_t now = vp_time_mono_ns();
	a->tokens += (double)(now - a->last_ns) * 1e-9 * srv->conf.req_rate;
	if (a->tokens > srv->conf.req_burst)
		a->tokens = srv->conf.req_burst;
	a->last_ns = now;
	if (a->tokens >= 1) {
		a->tokens -= 1;
		return true;
	}
	*retry_ms = (uint32_t)((1 - a->tokens) / srv->conf.req_rate * 1000) + 1;
	return false;
}

static void send_ok(vap_server_t *srv, conn_t *c, const vap_msg_t *m, agent_t *a, bool fp,
                    int count)
{
	reply_t r;
	srv->st.responses_ok++;
	reply_begin(srv, &r, m->method, VAP_CLASS_SUCCESS, m->tid, a->mac, fp);
	if (count >= 0)
		vap_enc_u32(&r.e, VAP_ATTR_NUMBER_COUNT, (uint32_t)count);
	if (m->method == VAP_REGISTER && srv->conf.idle_timeout_ms)
		vap_enc_u32(&r.e, VAP_ATTR_EXPIRES, srv->conf.idle_timeout_ms / 1000);
	reply_end(srv, c, &r);
}

static void handle_publish_numbers(vap_server_t *srv, conn_t *c, const vap_msg_t *m, agent_t *a,
                                   bool fp, uint8_t op)
{
	vap_attr_iter_t it;
	vap_attr_t at;
	uint64_t total = 0;
	uint32_t vsid = 0;
	bool have_vsid = false;
	job_t *j;
	char reason[96];
	int rc;

	vap_attr_iter_init(&it, m);
	while (vap_attr_next(&it, &at)) {
		if (at.type == VAP_ATTR_NUMBER) {
			char num[VP_E164_BUFLEN];
			if ((rc = vap_attr_number(&at, num))) {
				snprintf(reason, sizeof(reason), "bad NUMBER: %s", vp_strerror(rc));
				goto bad;
			}
			total++;
		} else if (at.type == VAP_ATTR_NUMBER_RANGE) {
			vap_range_t rg;
			if ((rc = vap_attr_range(&at, &rg))) {
				snprintf(reason, sizeof(reason), "bad NUMBER-RANGE: %s", vp_strerror(rc));
				goto bad;
			}
			total += vap_range_count(&rg);
		} else if (at.type == VAP_ATTR_VSERVICE_ID) {
			if (vap_attr_u32(&at, &vsid)) {
				snprintf(reason, sizeof(reason), "bad VSERVICE-ID");
				goto bad;
			}
			have_vsid = true;
		}
	}
	if (!have_vsid) {
		snprintf(reason, sizeof(reason), "VSERVICE-ID missing");
		goto bad;
	}
	if (srv->hooks.vservice_access && srv->hooks.vservice_access(srv->hooks.ctx, a->username, vsid)) {
		send_error(srv, c, m->method, m->tid, a->mac, fp, VAP_ERR_FORBIDDEN, "VService of another tenant", 0);
		return;
	}
	if (total == 0) {
		snprintf(reason, sizeof(reason), "no NUMBER or NUMBER-RANGE");
		goto bad;
	}
	if (srv->queued_numbers + total > srv->conf.store_queue_max) {
		uint32_t retry = 1000;
		if (srv->conf.store_rate > 0)
			retry = (uint32_t)((double)srv->queued_numbers / srv->conf.store_rate * 1000) + 1;
		send_error(srv, c, m->method, m->tid, a->mac, fp, VAP_ERR_SERVER_BUSY,
		           "store queue full", retry);
		return;
	}
	j = malloc(sizeof(*j) + m->len);
	if (!j) {
		send_error(srv, c, m->method, m->tid, a->mac, fp, VAP_ERR_SERVER_ERROR, "out of memory", 0);
		return;
	}
	memset(j, 0, sizeof(*j));
	memcpy(j->buf, m->buf, m->len);
	if (vap_msg_parse(j->buf, m->len, &j->msg)) {
		free(j);
		send_error(srv, c, m->method, m->tid, a->mac, fp, VAP_ERR_SERVER_ERROR, "internal", 0);
		return;
	}
	memcpy(j->tid, m->tid, VAP_TID_LEN);
	j->owner = c;
	j->agent = a;
	j->fingerprint = fp;
	j->op = op;
	j->vservice_id = vsid;
	j->total = total;
	vap_attr_iter_init(&j->it, &j->msg);
	job_advance(j);
	c->pending++;
	srv->queued_numbers += total;
	srv->st.stores_queued += total;
	q_push(srv, j);
	conn_check_reading(srv, c);
	return;
bad:
	send_error(srv, c, m->method, m->tid, a->mac, fp, VAP_ERR_BAD_REQUEST, reason, 0);
}

static void handle_publish_vservice(vap_server_t *srv, conn_t *c, const vap_msg_t *m, agent_t *a,
                                    bool fp, uint8_t op)
{
	/* Strings are copied out of the message to NUL-terminate them. */
	char uris[VAP_MAX_URIS][VAP_MAX_URI];
	char (*lists)[VAP_MAX_LIST][VAP_MAX_URI] = srv->lists; /* too big for the stack */
	vap_vservice_t vs;
	vap_attr_iter_t it;
	vap_attr_t at;
	bool have_id = false;
	const char *why = NULL;
	int rc;

	memset(&vs, 0, sizeof(vs));
	vs.op = op;
	vap_attr_iter_init(&it, m);
	while (vap_attr_next(&it, &at) && !why) {
		switch (at.type) {
		case VAP_ATTR_VSERVICE_ID:
			if (vap_attr_u32(&at, &vs.id))
				why = "bad VSERVICE-ID";
			have_id = true;
			break;
		case VAP_ATTR_SIP_URI:
			if (vs.n_uris == VAP_MAX_URIS)
				why = "too many SIP-URI";
			else if (vap_attr_str(&at, uris[vs.n_uris], VAP_MAX_URI) || at.len == 0)
				why = "bad SIP-URI";
			else
				vs.uris[vs.n_uris] = uris[vs.n_uris], vs.n_uris++;
			break;
		case VAP_ATTR_BLACKLIST:
			if (vs.n_black == VAP_MAX_LIST)
				why = "too many BLACKLIST";
			else if (vap_attr_str(&at, lists[0][vs.n_black], VAP_MAX_URI) || at.len == 0)
				why = "bad BLACKLIST";
			else
				vs.black[vs.n_black] = lists[0][vs.n_black], vs.n_black++;
			break;
		case VAP_ATTR_WHITELIST:
			if (vs.n_white == VAP_MAX_LIST)
				why = "too many WHITELIST";
			else if (vap_attr_str(&at, lists[1][vs.n_white], VAP_MAX_URI) || at.len == 0)
				why = "bad WHITELIST";
			else
				vs.white[vs.n_white] = lists[1][vs.n_white], vs.n_white++;
			break;
		default:
			break;
		}
	}
	if (!why && !have_id)
		why = "VSERVICE-ID missing";
	if (!why && op == VAP_OP_ADD && vs.n_uris == 0)
		why = "SIP-URI missing";
	if (why) {
		send_error(srv, c, m->method, m->tid, a->mac, fp, VAP_ERR_BAD_REQUEST, why, 0);
		return;
	}
	rc = srv->hooks.publish_vservice(srv->hooks.ctx, a->username, &vs);
	if (rc == VP_EPERM) {
		send_error(srv, c, m->method, m->tid, a->mac, fp, VAP_ERR_FORBIDDEN, "VService of another tenant", 0);
		return;
	}
	if (rc) {
		send_error(srv, c, m->method, m->tid, a->mac, fp, VAP_ERR_SERVER_ERROR, vp_strerror(rc), 0);
		return;
	}
	send_ok(srv, c, m, a, fp, -1);
}

static void upjob_maybe_finish(vap_server_t *srv, upjob_t *j)
{
	conn_t *c = j->owner;
	if (j->issuing || j->outstanding)
		return;
	srv->st.vcrs += j->ok;
	if (!c->dead) {
		reply_t r;
		if (j->failed == 0) {
			srv->st.responses_ok++;
			reply_begin(srv, &r, VAP_UPLOAD_VCR, VAP_CLASS_SUCCESS, j->tid, j->agent->mac, j->fingerprint);
		} else {
			/* VP_EPERM: the agent's tenant may not upload such a record (403, as for a VService). */
			uint16_t code = j->first_error == VP_EPERM ? VAP_ERR_FORBIDDEN : VAP_ERR_SERVER_ERROR;
			char reason[96];
			snprintf(reason, sizeof(reason), "%u of %u call records not stored: %s", j->failed,
			         j->failed + j->ok, vp_strerror(j->first_error));
			count_error(srv, code);
			reply_begin(srv, &r, VAP_UPLOAD_VCR, VAP_CLASS_ERROR, j->tid, j->agent->mac, j->fingerprint);
			vap_enc_error(&r.e, code, reason);
		}
		vap_enc_u32(&r.e, VAP_ATTR_NUMBER_COUNT, j->ok);
		reply_end(srv, c, &r);
	}
	if (j->prev)
		j->prev->next = j->next;
	else
		srv->upjobs = j->next;
	if (j->next)
		j->next->prev = j->prev;
	c->pending--;
	free(j);
	if (!c->pending)
		c->last_rx_ns = vp_time_mono_ns(); /* idle from our last answer, not from the agent's request */
	/* A dead owner is freed by reap() once pending is 0. */
	if (!c->dead)
		conn_check_reading(srv, c);
}

void vap_server_vcr_done(vap_server_t *srv, void *token, int status)
{
	upjob_t *j = token;
	if (!j || j->outstanding == 0)
		return;
	j->outstanding--;
	if (status == 0) {
		j->ok++;
	} else {
		j->failed++;
		if (!j->first_error)
			j->first_error = status;
	}
	upjob_maybe_finish(srv, j);
}

/* Start every record of a validated UploadVCR through hooks.upload_vcr_start. */
static void upload_async(vap_server_t *srv, conn_t *c, const vap_msg_t *m, agent_t *a, bool fp)
{
	vap_attr_iter_t it;
	vap_attr_t at;
	vap_vcr_t vcr;
	upjob_t *j = calloc(1, sizeof(*j));
	if (!j) {
		send_error(srv, c, m->method, m->tid, a->mac, fp, VAP_ERR_SERVER_ERROR, vp_strerror(VP_ENOMEM), 0);
		return;
	}
	j->owner = c;
	j->agent = a;
	memcpy(j->tid, m->tid, VAP_TID_LEN);
	j->fingerprint = fp;
	j->issuing = true;
	j->next = srv->upjobs;
	if (j->next)
		j->next->prev = j;
	srv->upjobs = j;
	c->pending++;
	vap_attr_iter_init(&it, m);
	while (vap_attr_next(&it, &at)) {
		int rc;
		if (at.type != VAP_ATTR_CALL_RECORD)
			continue;
		vap_attr_vcr(&at, &vcr);
		j->outstanding++;
		if ((rc = srv->hooks.upload_vcr_start(srv->hooks.ctx, a->username, &vcr, j)) < 0)
			vap_server_vcr_done(srv, j, rc);
	}
	j->issuing = false;
	upjob_maybe_finish(srv, j);
	if (!c->dead)
		conn_check_reading(srv, c);
}

static void handle_upload(vap_server_t *srv, conn_t *c, const vap_msg_t *m, agent_t *a, bool fp)
{
	vap_attr_iter_t it;
	vap_attr_t at;
	vap_vcr_t vcr;
	char reason[96];
	int n = 0, stored = 0, rc;

	/* Validate every record first: a request is taken whole or not at all. */
	vap_attr_iter_init(&it, m);
	while (vap_attr_next(&it, &at)) {
		if (at.type != VAP_ATTR_CALL_RECORD)
			continue;
		if ((rc = vap_attr_vcr(&at, &vcr))) {
			snprintf(reason, sizeof(reason), "bad CALL-RECORD %d: %s", n + 1, vp_strerror(rc));
			send_error(srv, c, m->method, m->tid, a->mac, fp, VAP_ERR_BAD_REQUEST, reason, 0);
			return;
		}
		n++;
	}
	if (n == 0) {
		send_error(srv, c, m->method, m->tid, a->mac, fp, VAP_ERR_BAD_REQUEST, "no CALL-RECORD", 0);
		return;
	}
	if (srv->hooks.upload_vcr_start) {
		upload_async(srv, c, m, a, fp);
		return;
	}
	vap_attr_iter_init(&it, m);
	while (vap_attr_next(&it, &at)) {
		if (at.type != VAP_ATTR_CALL_RECORD)
			continue;
		vap_attr_vcr(&at, &vcr);
		if ((rc = srv->hooks.upload_vcr(srv->hooks.ctx, a->username, &vcr))) {
			/* VP_EPERM: the agent's tenant may not upload this record (403, as for a VService). */
			uint16_t code = rc == VP_EPERM ? VAP_ERR_FORBIDDEN : VAP_ERR_SERVER_ERROR;
			reply_t r;
			snprintf(reason, sizeof(reason), "call record %s: %s", rc == VP_EPERM ? "refused" : "store failed",
			         vp_strerror(rc));
			count_error(srv, code);
			reply_begin(srv, &r, m->method, VAP_CLASS_ERROR, m->tid, a->mac, fp);
			vap_enc_error(&r.e, code, reason);
			vap_enc_u32(&r.e, VAP_ATTR_NUMBER_COUNT, (uint32_t)stored);
			reply_end(srv, c, &r);
			return;
		}
		stored++;
		srv->st.vcrs++;
	}
	send_ok(srv, c, m, a, fp, stored);
}

static void handle_subscribe(vap_server_t *srv, conn_t *c, const vap_msg_t *m, agent_t *a, bool fp)
{
	vap_attr_t at;
	uint32_t id, expires = 1;
	unsigned i;
	if (vap_msg_find(m, VAP_ATTR_VSERVICE_ID, &at) || vap_attr_u32(&at, &id)) {
		send_error(srv, c, m->method, m->tid, a->mac, fp, VAP_ERR_BAD_REQUEST, "VSERVICE-ID missing", 0);
		return;
	}
	if (vap_msg_find(m, VAP_ATTR_EXPIRES, &at) == 0 && vap_attr_u32(&at, &expires)) {
		send_error(srv, c, m->method, m->tid, a->mac, fp, VAP_ERR_BAD_REQUEST, "bad EXPIRES", 0);
		return;
	}
	if (expires && srv->hooks.vservice_access && srv->hooks.vservice_access(srv->hooks.ctx, a->username, id)) {
		send_error(srv, c, m->method, m->tid, a->mac, fp, VAP_ERR_FORBIDDEN, "VService of another tenant", 0);
		return;
	}
	for (i = 0; i < c->n_subs && c->subs[i] != id; i++)
		;
	if (expires == 0) {
		/* Unsubscribe. */
		if (i < c->n_subs)
			c->subs[i] = c->subs[--c->n_subs];
	} else if (i == c->n_subs) {
		if (c->n_subs == VAP_MAX_SUBS) {
			send_error(srv, c, m->method, m->tid, a->mac, fp, VAP_ERR_FORBIDDEN,
			           "too many subscriptions", 0);
			return;
		}
		c->subs[c->n_subs++] = id;
	} else {
		i = VAP_MAX_SUBS; /* already subscribed: nothing to replay */
	}
	send_ok(srv, c, m, a, fp, -1);
	/* After the answer, so the agent sees its Subscribe succeed before the replayed Notifies. */
	if (expires && i < VAP_MAX_SUBS && srv->hooks.subscribed)
		srv->hooks.subscribed(srv->hooks.ctx, a->username, id, (vap_sub_t *)c);
}

/* A network-supplied string made safe for a key=value log line. */
static const char *log_safe(const char *in, char *out, size_t cap)
{
	size_t i;
	for (i = 0; in[i] && i + 1 < cap; i++) {
		char ch = in[i];
		bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		          ch == '.' || ch == '-' || ch == '_' || ch == '@' || ch == '+';
		out[i] = ok ? ch : '?';
	}
	out[i] = '\0';
	return out;
}

/* Authentication (docs/protocol.md §8.4); returns the agent or NULL after answering. */
static agent_t *authenticate(vap_server_t *srv, conn_t *c, const vap_msg_t *m, bool fp)
{
	vap_attr_t at;
	char user[VAP_MAX_USERNAME + 1], realm[VAP_MAX_REALM + 1], nonce[VAP_MAX_NONCE + 1];
	agent_t *a;
	if (!m->mi_off) {
		/* The challenge: tells the agent the realm and this connection's nonce. */
		reply_t r;
		srv->st.challenges++;
		reply_begin(srv, &r, m->method, VAP_CLASS_ERROR, m->tid, NULL, fp);
		vap_enc_error(&r.e, VAP_ERR_UNAUTHORIZED, NULL);
		vap_enc_str(&r.e, VAP_ATTR_REALM, srv->realm);
		vap_enc_str(&r.e, VAP_ATTR_NONCE, c->nonce);
		reply_end(srv, c, &r);
		return NULL;
	}
	if (vap_msg_find(m, VAP_ATTR_USERNAME, &at) || vap_attr_str(&at, user, sizeof(user)) ||
	    vap_msg_find(m, VAP_ATTR_REALM, &at) || vap_attr_str(&at, realm, sizeof(realm)) ||
	    vap_msg_find(m, VAP_ATTR_NONCE, &at) || vap_attr_str(&at, nonce, sizeof(nonce))) {
		send_error(srv, c, m->method, m->tid, NULL, fp, VAP_ERR_BAD_REQUEST,
		           "USERNAME, REALM and NONCE required with MESSAGE-INTEGRITY", 0);
		return NULL;
	}
	a = agent_find(srv, user);
	if (!a || strcmp(realm, srv->realm) || vap_msg_check_integrity_mac(m, a->mac)) {
		char safe[VAP_MAX_USERNAME + 1];
		vp_log_info(MOD, "auth_failed", "peer=%s user=%s", c->peer, log_safe(user, safe, sizeof(safe)));
		send_error(srv, c, m->method, m->tid, NULL, fp, VAP_ERR_UNAUTHORIZED, NULL, 0);
		if (++c->auth_failures >= MAX_AUTH_FAILURES) {
			c->closing = true;
			c->reading = false;
			conn_flush(srv, c);
		}
		return NULL;
	}
	if (strcmp(nonce, c->nonce)) {
		send_error(srv, c, m->method, m->tid, a->mac, fp, VAP_ERR_STALE_NONCE, NULL, 0);
		return NULL;
	}
	return a;
}

static void handle_msg(vap_server_t *srv, conn_t *c, const uint8_t *buf, size_t len)
{
	vap_msg_t m;
	agent_t *a;
	uint16_t unk[32];
	size_t nunk;
	uint32_t retry;
	bool fp;
	int rc;

	rc = vap_msg_parse(buf, len, &m);
	if (rc) {
		/* Framing held, so the header is sound: answer requests, drop the rest. */
		uint16_t type = (uint16_t)(buf[0] << 8 | buf[1]);
		if (vap_type_class(type) == VAP_CLASS_REQUEST) {
			char reason[64];
			snprintf(reason, sizeof(reason), "malformed: %s", vp_strerror(rc));
			send_error(srv, c, vap_type_method(type), buf + 8, NULL, false,
			           VAP_ERR_BAD_REQUEST, reason, 0);
		}
		return;
	}
	if (m.cls != VAP_CLASS_REQUEST)
		return;     /* agents send no indications; stray responses are ignored (RFC 5389 §7.3) */
	srv->st.requests++;
	fp = m.fp_off != 0;
	if (!(a = authenticate(srv, c, &m, fp)))
		return;
	if ((nunk = vap_msg_unknown_required(&m, unk, 32)) > 0) {
		reply_t r;
		count_error(srv, VAP_ERR_UNKNOWN_ATTRIBUTE);
		reply_begin(srv, &r, m.method, VAP_CLASS_ERROR, m.tid, a->mac, fp);
		vap_enc_error(&r.e, VAP_ERR_UNKNOWN_ATTRIBUTE, NULL);
		vap_enc_unknown(&r.e, unk, nunk < 32 ? nunk : 32);
		reply_end(srv, c, &r);
		return;
	}
	if (!agent_take_token(srv, a, &retry)) {
		send_error(srv, c, m.method, m.tid, a->mac, fp, VAP_ERR_RATE_LIMITED, NULL, retry);
		return;
	}
	if (m.method == VAP_REGISTER) {
		if (c->agent && c->agent != a) {
			send_error(srv, c, m.method, m.tid, a->mac, fp, VAP_ERR_FORBIDDEN,
			           "connection registered to another agent", 0);
			return;
		}
		if (!c->agent)
			vp_log_info(MOD, "registered", "peer=%s agent=%s", c->peer, a->username);
		c->agent = a;
		send_ok(srv, c, &m, a, fp, -1);
		return;
	}
	if (c->agent != a) {
		send_error(srv, c, m.method, m.tid, a->mac, fp, VAP_ERR_FORBIDDEN,
		           c->agent ? "connection registered to another agent" : "Register first", 0);
		return;
	}
	switch (m.method) {
	case VAP_KEEPALIVE:
		send_ok(srv, c, &m, a, fp, -1);
		break;
	case VAP_UNREGISTER:
		send_ok(srv, c, &m, a, fp, -1);
		vp_log_info(MOD, "unregistered", "peer=%s agent=%s", c->peer, a->username);
		c->agent = NULL;
		c->n_subs = 0;
		c->closing = true;      /* close once the answer is out */
		conn_flush(srv, c);
		break;
	case VAP_PUBLISH: {
		vap_attr_t at;
		uint8_t svc, op;
		if (vap_msg_find(&m, VAP_ATTR_PUBLISH_ACTION, &at) || vap_attr_action(&at, &svc, &op)) {
			send_error(srv, c, m.method, m.tid, a->mac, fp, VAP_ERR_BAD_REQUEST,
			           "PUBLISH-ACTION missing or invalid", 0);
			break;
		}
		if (svc == VAP_SERVICE_NUMBERS)
			handle_publish_numbers(srv, c, &m, a, fp, op);
		else
			handle_publish_vservice(srv, c, &m, a, fp, op);
		break;
	}
	case VAP_UPLOAD_VCR:
		handle_upload(srv, c, &m, a, fp);
		break;
	case VAP_SUBSCRIBE:
		handle_subscribe(srv, c, &m, a, fp);
		break;
	default:
		send_error(srv, c, m.method, m.tid, a->mac, fp, VAP_ERR_BAD_REQUEST, "unknown method", 0);
		break;
	}
}

/* ---- input --------------------------------------------------------------------- */

/* Should this connection be read?  Not while it owes too many answers or output. */
static void conn_check_reading(vap_server_t *srv, conn_t *c)
{
	bool want, was;
	if (c->dead)
		return;
	want = !c->closing && c->pending < srv->conf.max_pending &&
	       c->wlen - c->woff < srv->conf.out_high;
	was = c->reading;
	if (want == was)
		return;
	c->reading = want;
	ep_update(srv, c);
	if (want) {
		/* Resume: messages may already be buffered (or inside TLS); handle them now. */
		conn_process(srv, c);
		if (c->reading && !c->dead && c->ssl && SSL_pending(c->ssl) > 0)
			conn_on_readable(srv, c);
	}
}

/* Handle every complete message buffered, while the connection may be read. */
static void conn_process(vap_server_t *srv, conn_t *c)
{
	while (!c->dead && c->reading) {
		size_t avail = c->rlen - c->roff;
		uint8_t *p = c->rbuf + c->roff;
		long fl;
		if (c->discard) {
			size_t d = c->discard < avail ? c->discard : avail;
			c->discard -= d;
			c->roff += d;
			if (!d)
				break;
			continue;
		}
		fl = vap_frame_len(p, avail);
		if (fl == 0)
			break;
		if (fl < 0) {
			/* Not a VAP header: the stream cannot be resynchronised. Answer if it
			 * might be a request, then close cleanly. */
			srv->st.requests++;
			send_error(srv, c, 0, p + 8, NULL, false, VAP_ERR_BAD_REQUEST, "not a VAP message", 0);
			c->closing = true;
			c->reading = false;
			conn_flush(srv, c);
			return;
		}
		if ((size_t)fl > srv->conf.max_msg) {
			uint16_t type = (uint16_t)(p[0] << 8 | p[1]);
			char reason[96];
			srv->st.requests++;
			snprintf(reason, sizeof(reason), "message of %ld bytes exceeds %zu", fl, srv->conf.max_msg);
			send_error(srv, c, vap_type_method(type), p + 8, NULL, false,
			           VAP_ERR_BAD_REQUEST, reason, 0);
			c->discard = (size_t)fl;
			continue;
		}
		if (avail < (size_t)fl)
			break;
		c->roff += (size_t)fl;
		handle_msg(srv, c, p, (size_t)fl);
	}
	if (c->roff == c->rlen) {
		c->roff = c->rlen = 0;
	} else if (c->roff > 0 && c->rlen - c->roff < VAP_HDR_LEN + srv->conf.max_msg) {
		memmove(c->rbuf, c->rbuf + c->roff, c->rlen - c->roff);
		c->rlen -= c->roff;
		c->roff = 0;
	}
}

static long raw_read(vap_server_t *srv, conn_t *c, uint8_t *p, size_t n)
{
	if (c->ssl) {
		int r;
		if (!c->tls_ok) {
			r = SSL_accept(c->ssl);
			if (r == 1) {
				c->tls_ok = true;
				vp_log_debug(MOD, "tls_up", "peer=%s version=%s", c->peer, SSL_get_version(c->ssl));
				if (c->wlen)
					conn_flush(srv, c);
			} else {
				int e = SSL_get_error(c->ssl, r);
				if (e == SSL_ERROR_WANT_READ)
					return 0;
				if (e == SSL_ERROR_WANT_WRITE) {
					c->want_write = true;
					ep_update(srv, c);
					return 0;
				}
				vp_log_info(MOD, "tls_failed", "peer=%s", c->peer);
				ERR_clear_error();
				return -1;
			}
		}
		/* SSL_read returns one record at a time: gather every record available so a
		 * pipelining agent's requests are handled (and answered) as one batch. */
		{
			size_t got = 0;
			while (got < n) {
				r = SSL_read(c->ssl, p + got, (int)(n - got > INT32_MAX ? INT32_MAX : n - got));
				if (r > 0) {
					got += (size_t)r;
					continue;
				}
				switch (SSL_get_error(c->ssl, r)) {
				case SSL_ERROR_WANT_READ:
				case SSL_ERROR_WANT_WRITE:
					return (long)got;
				default:
					ERR_clear_error();
					/* Hand over what was read; the error shows again on the next read. */
					return got ? (long)got : -1;
				}
			}
			return (long)got;
		}
	}
	for (;;) {
		ssize_t r = recv(c->fd, p, n, 0);
		if (r > 0)
			return r;
		if (r == 0)
			return -1;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		return -1;
	}
}

static void conn_on_readable(vap_server_t *srv, conn_t *c)
{
	size_t cap = VAP_HDR_LEN + srv->conf.max_msg;
	/* One write for all the answers to one read: a pipelining agent costs a
	 * syscall per batch, not per request. */
	bool was_corked = c->corked;
	c->corked = true;
	for (int i = 0; i < READS_PER_EVENT && c->reading && !c->dead; i++) {
		size_t space;
		long r;
		if (c->rlen == cap) {
			/* Full of one incomplete message: only possible while discarding. */
			if (!c->discard)
				break;
			c->rlen = c->roff = 0;
		}
		space = cap - c->rlen;
		r = raw_read(srv, c, c->rbuf + c->rlen, space);
		if (r < 0) {
			/* Answers already made still go out (the agent may have only half-closed). */
			c->corked = was_corked;
			if (c->wlen)
				conn_flush(srv, c);
			conn_kill(srv, c, c->rlen > c->roff ? "eof_mid_message" : "eof");
			return;
		}
		if (r == 0)
			break;
		c->rlen += (size_t)r;
		c->last_rx_ns = vp_time_mono_ns();
		conn_process(srv, c);
		/* A short plain read drained the socket: another recv() would only say EAGAIN. */
		if (!c->ssl && (size_t)r < space)
			break;
		if (c->ssl && SSL_pending(c->ssl) > 0)
			i--;    /* decrypted bytes wait inside TLS: epoll will not tell us */
	}
	c->corked = was_corked;
	if (!c->dead && !c->corked && c->wlen)
		conn_flush(srv, c);
}

/* ---- accept, loop, lifecycle -------------------------------------------------- */

static void on_accept(vap_server_t *srv)
{
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(srv->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		conn_t *c;
		uint8_t rnd[NONCE_BYTES];
		struct epoll_event ev = { 0 };
		int one = 1;
		char host[INET6_ADDRSTRLEN] = "?";
		uint16_t port = 0;
		if (fd < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				vp_log_warn(MOD, "accept_failed", "errno=%d", errno);
			return;
		}
		if (srv->nconns >= srv->conf.max_conns) {
			srv->st.conns_refused++;
			vp_log_warn(MOD, "conn_refused", "reason=max_conns limit=%u", srv->conf.max_conns);
			close(fd);
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (!c || !(c->rbuf = malloc(VAP_HDR_LEN + srv->conf.max_msg)) ||
		    RAND_bytes(rnd, sizeof(rnd)) != 1) {
			if (c)
				free(c->rbuf);
			free(c);
			close(fd);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c->fd = fd;
		vp_hex_encode(rnd, sizeof(rnd), c->nonce, sizeof(c->nonce));
		if (ss.ss_family == AF_INET) {
			struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
			inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
			port = ntohs(s4->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
			inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
			port = ntohs(s6->sin6_port);
		}
		snprintf(c->peer, sizeof(c->peer), "%s:%u", host, port);
		if (srv->conf.tls) {
			c->ssl = SSL_new(srv->conf.tls);
			if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
				SSL_free(c->ssl);
				conn_free(c);
				close(fd);
				continue;
			}
			SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
			SSL_set_accept_state(c->ssl);
		}
		c->reading = true;
		c->last_rx_ns = vp_time_mono_ns();
		ev.events = EPOLLIN;
		ev.data.ptr = c;
		if (epoll_ctl(srv->epfd, EPOLL_CTL_ADD, fd, &ev)) {
			SSL_free(c->ssl);
			conn_free(c);
			close(fd);
			continue;
		}
		c->next = srv->conns;
		if (srv->conns)
			srv->conns->prev = c;
		srv->conns = c;
		srv->nconns++;
		srv->st.conns_open++;
		srv->st.conns_total++;
		vp_log_debug(MOD, "conn_open", "peer=%s tls=%d", c->peer, c->ssl != NULL);
	}
}

static void run_posts(vap_server_t *srv)
{
	post_t *p;
	uint64_t v;
	if (read(srv->wakefd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		vp_log_warn(MOD, "wake_read_failed", "errno=%d", errno);
	pthread_mutex_lock(&srv->post_lock);
	p = srv->posts;
	srv->posts = srv->posts_tail = NULL;
	pthread_mutex_unlock(&srv->post_lock);
	while (p) {
		post_t *n = p->next;
		p->fn(srv, p->arg);
		free(p);
		p = n;
	}
}

static void sweep_idle(vap_server_t *srv, uint64_t now)
{
	conn_t *c, *n;
	if (!srv->conf.idle_timeout_ms || now - srv->last_sweep_ns < 1000000000ull)
		return;
	srv->last_sweep_ns = now;
	for (c = srv->conns; c; c = n) {
		n = c->next;
		/* An agent waiting for our answers is not idle: a Publish of 65,536 numbers is answered only when
		 * the overlay stored them all, which can take longer than the idle timeout. */
		if (c->pending)
			continue;
		if (now - c->last_rx_ns > (uint64_t)srv->conf.idle_timeout_ms * 1000000ull)
			conn_kill(srv, c, "idle_timeout");
	}
}

int vap_server_run_once(vap_server_t *srv, int timeout_ms)
{
	struct epoll_event evs[MAX_EVENTS];
	int n, pw;

	pace(srv);
	pw = vap_server_timeout_ms(srv);
	if (pw >= 0 && (timeout_ms < 0 || pw < timeout_ms))
		timeout_ms = pw;
	n = epoll_wait(srv->epfd, evs, MAX_EVENTS, timeout_ms);
	if (n < 0) {
		if (errno == EINTR)
			return 0;
		return VP_EIO;
	}
	for (int i = 0; i < n; i++) {
		void *tag = evs[i].data.ptr;
		conn_t *c;
		if (tag == TAG_LISTEN) {
			on_accept(srv);
			continue;
		}
		if (tag == TAG_WAKE) {
			run_posts(srv);
			continue;
		}
		c = tag;
		if (c->dead)
			continue;
		if (evs[i].events & (EPOLLOUT)) {
			if (c->ssl && !c->tls_ok)
				conn_on_readable(srv, c);   /* the handshake wanted to write */
			else
				conn_flush(srv, c);
		}
		if (c->dead)
			continue;
		if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
			if (c->reading)
				conn_on_readable(srv, c);
			else if (evs[i].events & (EPOLLHUP | EPOLLERR))
				conn_kill(srv, c, "hangup");
		}
	}
	pace(srv);
	sweep_idle(srv, vp_time_mono_ns());
	reap(srv);
	return 0;
}

int vap_server_fd(const vap_server_t *srv)
{
	return srv->epfd;
}

int vap_server_timeout_ms(const vap_server_t *srv)
{
	int t = pace_wait_ms(srv);
	if (srv->conf.idle_timeout_ms && (t < 0 || t > 1000))
		t = 1000;
	return t;
}

int vap_server_run(vap_server_t *srv)
{
	while (!vap_server_stopping(srv)) {
		int rc = vap_server_run_once(srv, 1000);
		if (rc)
			return rc;
	}
	return 0;
}

bool vap_server_stopping(const vap_server_t *srv)
{
	return __atomic_load_n(&srv->stop, __ATOMIC_ACQUIRE) != 0;
}

void vap_server_stop(vap_server_t *srv)
{
	uint64_t one = 1;
	__atomic_store_n(&srv->stop, 1, __ATOMIC_RELEASE);
	if (write(srv->wakefd, &one, sizeof(one)) < 0)
		vp_log_warn(MOD, "wake_failed", "errno=%d", errno);
}

int vap_server_post(vap_server_t *srv, void (*fn)(vap_server_t *, void *), void *arg)
{
	post_t *p = malloc(sizeof(*p));
	uint64_t one = 1;
	if (!p)
		return VP_ENOMEM;
	p->next = NULL;
	p->fn = fn;
	p->arg = arg;
	pthread_mutex_lock(&srv->post_lock);
	if (srv->posts_tail)
		srv->posts_tail->next = p;
	else
		srv->posts = p;
	srv->posts_tail = p;
	pthread_mutex_unlock(&srv->post_lock);
	if (write(srv->wakefd, &one, sizeof(one)) < 0)
		return VP_EIO;
	return 0;
}

/* One Notify of \p route to \p c (subscribed, authenticated, alive). */
static int notify_conn(vap_server_t *srv, conn_t *c, const vap_route_t *route)
{
	reply_t r;
	uint8_t tid[VAP_TID_LEN];
	if (RAND_bytes(tid, sizeof(tid)) != 1)
		return VP_ECRYPTO;
	reply_begin(srv, &r, VAP_NOTIFY, VAP_CLASS_INDICATION, tid, c->agent->mac, false);
	vap_enc_str(&r.e, VAP_ATTR_USERNAME, c->agent->username);
	vap_enc_str(&r.e, VAP_ATTR_NUMBER, route->number);
	vap_enc_u32(&r.e, VAP_ATTR_VSERVICE_ID, route->vservice_id);
	for (size_t i = 0; i < route->n_uris && i < VAP_MAX_URIS; i++)
		vap_enc_str(&r.e, VAP_ATTR_SIP_URI, route->uris[i]);
	vap_enc_attr(&r.e, VAP_ATTR_TICKET, route->ticket,
	             route->ticket_len < VAP_MAX_TICKET ? route->ticket_len : VAP_MAX_TICKET);
	vap_enc_u32(&r.e, VAP_ATTR_EXPIRES, route->expires);
	if (route->cert_len && route->cert_len <= VAP_MAX_CERT)
		vap_enc_attr(&r.e, VAP_ATTR_CLIENT_CERT, route->cert, route->cert_len);
	reply_end(srv, c, &r);
	srv->st.notifies++;
	return 0;
}

int vap_server_notify(vap_server_t *srv, const vap_route_t *route)
{
	int sent = 0, rc;
	for (conn_t *c = srv->conns, *n; c; c = n) {
		bool sub = false;
		n = c->next;
		for (unsigned i = 0; i < c->n_subs; i++)
			sub |= c->subs[i] == route->vservice_id;
		if (!sub || !c->agent || c->dead)
			continue;
		if ((rc = notify_conn(srv, c, route)))
			return rc;
		sent++;
	}
	return sent;
}

int vap_server_notify_sub(vap_server_t *srv, vap_sub_t *sub, const vap_route_t *route)
{
	conn_t *c = (conn_t *)sub;
	bool subscribed = false;
	for (unsigned i = 0; c && i < c->n_subs; i++)
		subscribed |= c->subs[i] == route->vservice_id;
	if (!subscribed || !c->agent)
		return VP_EINVAL;
	if (c->dead)
		return 0;
	return notify_conn(srv, c, route);
}

void vap_server_get_stats(const vap_server_t *srv, vap_server_stats_t *st)
{
#define COUNTER_READ(name) st->name = atomic_load_explicit(&srv->st.name, memory_order_relaxed);
	VAP_COUNTERS(COUNTER_READ)
#undef COUNTER_READ
}

uint16_t vap_server_port(const vap_server_t *srv)
{
	return srv->port;
}

void vap_server_conf_default(vap_server_conf_t *conf)
{
	memset(conf, 0, sizeof(*conf));
	conf->bind_addr = "127.0.0.1";
	conf->realm = "vipr";
	conf->max_conns = 4096;
	conf->max_msg = 16384;
	conf->req_rate = 5000;
	conf->req_burst = 1000;
	conf->max_pending = 8;
	conf->out_high = 256 * 1024;
	conf->store_rate = 0;
	conf->store_inflight = 256;
	conf->store_queue_max = 4u << 20;
	conf->idle_timeout_ms = 120000;
}

int vap_server_add_agent(vap_server_t *srv, const char *username, const char *password)
{
	uint8_t key[VAP_KEY_LEN];
	agent_t *a;
	uint32_t h;
	int rc;
	if (!username || !password || !*username || strlen(username) > VAP_MAX_USERNAME)
		return VP_EINVAL;
	if (agent_find(srv, username))
		return VP_EEXIST;
	if ((rc = vap_key_derive(username, srv->realm, password, key)))
		return rc;
	a = calloc(1, sizeof(*a));
	if (!a)
		return VP_ENOMEM;
	strcpy(a->username, username);
	rc = vap_mac_new(key, sizeof(key), &a->mac);
	OPENSSL_cleanse(key, sizeof(key));
	if (rc) {
		free(a);
		return rc;
	}
	a->tokens = srv->conf.req_burst;
	a->last_ns = vp_time_mono_ns();
	h = hash_name(username) % AGENT_BUCKETS;
	a->next = srv->agents[h];
	srv->agents[h] = a;
	return 0;
}

/*
 * A loopback address (127.0.0.0/8, ::1, ::ffff:127.0.0.0/104): only processes
 * of this host see its traffic.  Anything else, including the wildcard, may
 * carry MESSAGE-INTEGRITY past an eavesdropper.
 */
static bool is_loopback(const char *addr)
{
	struct in_addr a4;
	struct in6_addr a6;
	if (inet_pton(AF_INET, addr, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, addr, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6) || (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
	return false;
}

int vap_server_create(const vap_server_conf_t *conf, const vap_hooks_t *hooks, vap_server_t **out)
{
	vap_server_t *srv;
	struct epoll_event ev = { 0 };
	int rc;
	*out = NULL;
	if (!conf || !hooks || !hooks->store || (!hooks->upload_vcr && !hooks->upload_vcr_start) || !hooks->publish_vservice)
		return VP_EINVAL;
	if (!conf->realm || strlen(conf->realm) > VAP_MAX_REALM || conf->max_msg < 64 ||
	    conf->max_msg > VAP_MAX_MSG - VAP_HDR_LEN || conf->req_rate <= 0 || conf->req_burst < 1 ||
	    conf->max_pending < 1 || conf->store_inflight < 1 || !conf->bind_addr)
		return VP_EINVAL;
	if (!conf->tls && !conf->allow_plain_tcp && !is_loopback(conf->bind_addr)) {
		vp_log_error(MOD, "plain_tcp_refused", "addr=%s msg=\"VAP without TLS only on loopback (allow_plain_tcp)\"",
		             conf->bind_addr);
		return VP_ECONFIG;
	}
	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return VP_ENOMEM;
	srv->conf = *conf;
	strcpy(srv->realm, conf->realm);
	srv->conf.realm = srv->realm;
	snprintf(srv->bind, sizeof(srv->bind), "%s", conf->bind_addr);
	srv->conf.bind_addr = srv->bind;
	srv->hooks = *hooks;
	srv->epfd = srv->lfd = srv->wakefd = -1;
	pthread_mutex_init(&srv->post_lock, NULL);
	srv->store_last_ns = vp_time_mono_ns();
	srv->store_tokens = 1;
	if ((rc = vp_net_listen_tcp(srv->conf.bind_addr, srv->conf.port, 1024, VP_NET_NONBLOCK, &srv->lfd,
	                            &srv->port)))
		goto fail;
	srv->epfd = epoll_create1(EPOLL_CLOEXEC);
	srv->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (srv->epfd < 0 || srv->wakefd < 0) {
		rc = VP_EIO;
		goto fail;
	}
	ev.events = EPOLLIN;
	ev.data.ptr = TAG_LISTEN;
	if (epoll_ctl(srv->epfd, EPOLL_CTL_ADD, srv->lfd, &ev)) {
		rc = VP_EIO;
		goto fail;
	}
	ev.data.ptr = TAG_WAKE;
	if (epoll_ctl(srv->epfd, EPOLL_CTL_ADD, srv->wakefd, &ev)) {
		rc = VP_EIO;
		goto fail;
	}
	vp_log_info(MOD, "listening", "addr=%s port=%u tls=%d realm=%s", conf->bind_addr, srv->port,
	            conf->tls != NULL, srv->realm);
	*out = srv;
	return 0;
fail:
	vap_server_destroy(srv);
	return rc;
}

void vap_server_destroy(vap_server_t *srv)
{
	job_t *j;
	post_t *p;
	if (!srv)
		return;
	while (srv->conns)
		conn_kill(srv, srv->conns, "shutdown");
	/* Jobs whose stores never completed: the node abandoned them. */
	while ((j = q_pop(srv))) {
		j->owner->pending--;
		free(j);
	}
	while (srv->upjobs) {
		upjob_t *u = srv->upjobs;
		srv->upjobs = u->next;
		u->owner->pending--;
		free(u);
	}
	for (conn_t *c = srv->dead, *n; c; c = n) {
		n = c->dead_next;
		conn_free(c);
	}
	for (unsigned i = 0; i < AGENT_BUCKETS; i++) {
		for (agent_t *a = srv->agents[i], *n; a; a = n) {
			n = a->next;
			vap_mac_free(a->mac);
			free(a);
		}
	}
	for (p = srv->posts; p;) {
		post_t *n = p->next;
		free(p);
		p = n;
	}
	if (srv->lfd >= 0)
		close(srv->lfd);
	if (srv->epfd >= 0)
		close(srv->epfd);
	if (srv->wakefd >= 0)
		close(srv->wakefd);
	pthread_mutex_destroy(&srv->post_lock);
	free(srv);
}
