/*
 * control/vap_client.c - blocking VAP client (see vap_client.h).
 */
#include "control/vap/vap_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "common/clock.h"
#include "common/errcode.h"
#include "common/log.h"
#include "common/net.h"

#define NOTIFY_QUEUE 64         /* routes held between two wait_notify calls; more are dropped and counted */
#define RBUF 16384              /* answers and Notifies are at most a few KiB */
#define REQ_OVERHEAD 512        /* USERNAME, REALM, NONCE, MESSAGE-INTEGRITY, FINGERPRINT, action, vservice */
#define MAX_WINDOW 64
#define PUBLISH_NUMBERS_MAX 65536  /* numbers per Publish: one answer never waits on millions of stores,
                                      and no Publish can exceed the server's store queue */

struct vap_client {
	vap_client_conf_t conf;
	char username[VAP_MAX_USERNAME + 1];
	char password[256];
	char realm[VAP_MAX_REALM + 1];
	char nonce[VAP_MAX_NONCE + 1];
	int fd;
	SSL *ssl;
	bool closed;
	vap_mac_t *mac;
	uint8_t rbuf[RBUF];
	size_t rlen, roff;
	uint8_t *wbuf;              /* conf.max_msg bytes */
	vap_route_t *nq;            /* NOTIFY_QUEUE routes, allocated on the first Notify */
	size_t nq_head, nq_len;
	uint64_t dropped;
	uint32_t last_count;        /* NUMBER-COUNT of the last answer */
	vap_client_error_t err;
};

/* ---- transport ------------------------------------------------------------------ */

static int wait_fd(vap_client_t *c, short ev, const vp_deadline_t *dl)
{
	struct pollfd p = { .fd = c->fd, .events = ev };
	for (;;) {
		/* Once the deadline passed, poll() still reports readiness once (0 ms). */
		int r = poll(&p, 1, vp_deadline_remaining_ms(dl));
		if (r > 0)
			return 0;
		if (r == 0)
			return VP_ETIMEOUT;
		if (errno != EINTR)
			return VP_EIO;
	}
}

static int send_all(vap_client_t *c, const uint8_t *p, size_t n)
{
	vp_deadline_t deadline = vp_deadline_in_ms((uint64_t)c->conf.timeout_ms);
	while (n) {
		long w;
		if (c->ssl) {
			int r = SSL_write(c->ssl, p, (int)n);
			if (r <= 0) {
				int e = SSL_get_error(c->ssl, r);
				if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
					int rc = wait_fd(c, e == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN, &deadline);
					if (rc)
						return rc;
					continue;
				}
				ERR_clear_error();
				c->closed = true;
				return VP_ECLOSED;
			}
			w = r;
		} else {
			ssize_t r = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (r < 0) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN || errno == EWOULDBLOCK) {
					int rc = wait_fd(c, POLLOUT, &deadline);
					if (rc)
						return rc;
					continue;
				}
				c->closed = true;
				return VP_ECLOSED;
			}
			w = r;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Read more bytes into rbuf before \p deadline. */
static int fill(vap_client_t *c, const vp_deadline_t *deadline)
{
	if (c->roff && c->roff == c->rlen)
		c->roff = c->rlen = 0;
	if (c->rlen == sizeof(c->rbuf)) {
		memmove(c->rbuf, c->rbuf + c->roff, c->rlen - c->roff);
		c->rlen -= c->roff;
		c->roff = 0;
	}
	for (;;) {
		if (c->closed)
			return VP_ECLOSED;
		if (c->ssl) {
			int r = SSL_read(c->ssl, c->rbuf + c->rlen, (int)(sizeof(c->rbuf) - c->rlen));
			if (r > 0) {
				c->rlen += (size_t)r;
				return 0;
			}
			int e = SSL_get_error(c->ssl, r);
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
				int rc = wait_fd(c, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline);
				if (rc)
					return rc;
				continue;
			}
			ERR_clear_error();
			c->closed = true;
			return VP_ECLOSED;
		} else {
			ssize_t r = recv(c->fd, c->rbuf + c->rlen, sizeof(c->rbuf) - c->rlen, MSG_DONTWAIT);
			if (r > 0) {
				c->rlen += (size_t)r;
				return 0;
			}
			if (r == 0) {
				c->closed = true;
				return VP_ECLOSED;
			}
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				int rc = wait_fd(c, POLLIN, deadline);
				if (rc)
					return rc;
				continue;
			}
			c->closed = true;
			return VP_ECLOSED;
		}
	}
}

/* Next whole message (valid until the next read). */
static int read_msg(vap_client_t *c, const vp_deadline_t *deadline, vap_msg_t *m)
{
	for (;;) {
		long fl = vap_frame_len(c->rbuf + c->roff, c->rlen - c->roff);
		if (fl < 0 || fl > RBUF) {
			c->closed = true;
			return fl < 0 ? VP_EMALFORMED : VP_ETOOBIG;
		}
		if (fl > 0 && (size_t)fl <= c->rlen - c->roff) {
			const uint8_t *p = c->rbuf + c->roff;
			c->roff += (size_t)fl;
			return vap_msg_parse(p, (size_t)fl, m);
		}
		int rc = fill(c, deadline);
		if (rc)
			return rc;
	}
}

/* ---- incoming ---------------------------------------------------------------- */

static int decode_route(const vap_msg_t *m, vap_route_t *r)
{
	vap_attr_iter_t it;
	vap_attr_t a;
	bool have_num = false;
	memset(r, 0, sizeof(*r));
	vap_attr_iter_init(&it, m);
	while (vap_attr_next(&it, &a)) {
		switch (a.type) {
		case VAP_ATTR_NUMBER:
			if (vap_attr_number(&a, r->number))
				return VP_EMALFORMED;
			have_num = true;
			break;
		case VAP_ATTR_VSERVICE_ID:
			if (vap_attr_u32(&a, &r->vservice_id))
				return VP_EMALFORMED;
			break;
		case VAP_ATTR_EXPIRES:
			if (vap_attr_u32(&a, &r->expires))
				return VP_EMALFORMED;
			break;
		case VAP_ATTR_SIP_URI:
			if (r->n_uris < VAP_MAX_URIS &&
			    vap_attr_str(&a, r->uris[r->n_uris], VAP_MAX_URI) == 0)
				r->n_uris++;
			break;
		case VAP_ATTR_TICKET:
			if (a.len > VAP_MAX_TICKET)
				return VP_ETOOBIG;
			memcpy(r->ticket, a.value, a.len);
			r->ticket_len = a.len;
			break;
		case VAP_ATTR_CLIENT_CERT:
			if (a.len > VAP_MAX_CERT)
				return VP_ETOOBIG;
			memcpy(r->cert, a.value, a.len);
			r->cert_len = a.len;
			break;
		default:
			break;
		}
	}
	return have_num ? 0 : VP_EMALFORMED;
}

static void queue_notify(vap_client_t *c, const vap_msg_t *m)
{
	vap_route_t *r;
	if (vap_msg_check_integrity_mac(m, c->mac)) {
		vp_log_warn("vap-client", "notify_rejected", "reason=integrity");
		return;
	}
	if (!c->nq && !(c->nq = calloc(NOTIFY_QUEUE, sizeof(*c->nq)))) {
		c->dropped++;
		return;
	}
	if (c->nq_len == NOTIFY_QUEUE) {
		c->dropped++;
		return;
	}
	r = &c->nq[(c->nq_head + c->nq_len) % NOTIFY_QUEUE];
	if (decode_route(m, r) == 0)
		c->nq_len++;
}

static int error_to_rc(int code)
{
	switch (code) {
	case VAP_ERR_UNAUTHORIZED: return VP_EAUTH;
	case VAP_ERR_RATE_LIMITED: return VP_ERATELIMIT;
	case VAP_ERR_SERVER_BUSY: return VP_EBUSY;
	case VAP_ERR_UNKNOWN_ATTRIBUTE: return VP_EVAP_UNKNOWN_ATTR;
	default: return VP_EVAP_REJECTED;
	}
}

int vap_client_recv_answer(vap_client_t *c, uint8_t tid[VAP_TID_LEN], int timeout_ms)
{
	vp_deadline_t deadline = vp_deadline_in_ms((uint64_t)(timeout_ms < 0 ? c->conf.timeout_ms : timeout_ms));
	for (;;) {
		vap_msg_t m;
		vap_attr_t a;
		int rc = read_msg(c, &deadline, &m);
		if (rc)
			return rc;
		if (m.cls == VAP_CLASS_INDICATION) {
			if (m.method == VAP_NOTIFY)
				queue_notify(c, &m);
			continue;
		}
		if (m.cls == VAP_CLASS_REQUEST)
			continue;
		memcpy(tid, m.tid, VAP_TID_LEN);
		c->last_count = 0;
		if (vap_msg_find(&m, VAP_ATTR_NUMBER_COUNT, &a) == 0)
			vap_attr_u32(&a, &c->last_count);
		if (m.mi_off) {
			if (vap_msg_check_integrity_mac(&m, c->mac))
				return VP_EVAP_INTEGRITY;
		} else if (m.cls == VAP_CLASS_SUCCESS) {
			/* A success answer must be authenticated. */
			return VP_EVAP_INTEGRITY;
		}
		if (m.cls == VAP_CLASS_SUCCESS) {
			c->err.code = 0;
			return 0;
		}
		memset(&c->err, 0, sizeof(c->err));
		if (vap_msg_find(&m, VAP_ATTR_ERROR_CODE, &a) ||
		    vap_attr_error(&a, &c->err.code, c->err.reason, sizeof(c->err.reason)))
			return VP_EMALFORMED;
		if (vap_msg_find(&m, VAP_ATTR_RETRY_AFTER, &a) == 0)
			vap_attr_u32(&a, &c->err.retry_after_ms);
		if (vap_msg_find(&m, VAP_ATTR_UNKNOWN_ATTRIBUTES, &a) == 0) {
			for (size_t i = 0; i + 1 < a.len && c->err.n_unknown < 16; i += 2)
				c->err.unknown[c->err.n_unknown++] = (uint16_t)(a.value[i] << 8 | a.value[i + 1]);
		}
		if (c->err.code == VAP_ERR_UNAUTHORIZED || c->err.code == VAP_ERR_STALE_NONCE) {
			vap_attr_t r2;
			if (vap_msg_find(&m, VAP_ATTR_NONCE, &a) == 0 &&
			    vap_msg_find(&m, VAP_ATTR_REALM, &r2) == 0) {
				vap_attr_str(&a, c->nonce, sizeof(c->nonce));
				vap_attr_str(&r2, c->realm, sizeof(c->realm));
			}
		}
		return error_to_rc(c->err.code);
	}
}

/* ---- requests ---------------------------------------------------------------- */

static int new_tid(uint8_t tid[VAP_TID_LEN])
{
	return RAND_bytes(tid, VAP_TID_LEN) == 1 ? 0 : VP_ECRYPTO;
}

static int begin_req(vap_client_t *c, vap_enc_t *e, uint16_t method, uint8_t tid[VAP_TID_LEN])
{
	int rc = new_tid(tid);
	if (rc)
		return rc;
	vap_enc_begin(e, c->wbuf, c->conf.max_msg, vap_type(method, VAP_CLASS_REQUEST), tid);
	vap_enc_str(e, VAP_ATTR_USERNAME, c->username);
	vap_enc_str(e, VAP_ATTR_REALM, c->realm);
	return vap_enc_str(e, VAP_ATTR_NONCE, c->nonce);
}

static int end_req(vap_client_t *c, vap_enc_t *e)
{
	long n = vap_enc_finish_mac(e, c->mac, c->conf.fingerprint);
	if (n < 0)
		return (int)n;
	return send_all(c, c->wbuf, (size_t)n);
}

/* Did recv_answer() read an answer (with a transaction id), successful or not? */
static bool is_answer(int rc)
{
	return rc == 0 || rc == VP_EAUTH || rc == VP_ERATELIMIT || rc == VP_EBUSY ||
	       rc == VP_EVAP_REJECTED || rc == VP_EVAP_UNKNOWN_ATTR;
}

/* Wait for the answer to \p tid (answers to other ids are skipped). */
static int wait_answer(vap_client_t *c, const uint8_t tid[VAP_TID_LEN])
{
	for (;;) {
		uint8_t got[VAP_TID_LEN];
		int rc = vap_client_recv_answer(c, got, -1);
		if (!is_answer(rc))
			return rc;
		if (memcmp(got, tid, VAP_TID_LEN))
			continue;
		return rc;
	}
}

typedef int (*fill_fn)(vap_client_t *c, vap_enc_t *e, const void *arg);

/* One request/answer, retrying once on a stale nonce and on 429/503 as configured. */
static int transact(vap_client_t *c, uint16_t method, fill_fn f, const void *arg)
{
	unsigned busy = 0;
	bool stale_retried = false;
	for (;;) {
		uint8_t tid[VAP_TID_LEN];
		vap_enc_t e;
		int rc = begin_req(c, &e, method, tid);
		if (!rc && f)
			rc = f(c, &e, arg);
		if (!rc)
			rc = end_req(c, &e);
		if (!rc)
			rc = wait_answer(c, tid);
		if (rc == VP_EVAP_REJECTED && c->err.code == VAP_ERR_STALE_NONCE && !stale_retried) {
			stale_retried = true;
			continue;
		}
		if ((rc == VP_ERATELIMIT || rc == VP_EBUSY) && busy < c->conf.busy_retries) {
			busy++;
			vp_sleep_ms(c->err.retry_after_ms ? c->err.retry_after_ms : 100);
			continue;
		}
		return rc;
	}
}

static int do_register(vap_client_t *c)
{
	uint8_t tid[VAP_TID_LEN];
	uint8_t key[VAP_KEY_LEN];
	vap_enc_t e;
	long n;
	int rc;
	/* 1: an unauthenticated Register draws the 401 challenge with REALM and NONCE. */
	if ((rc = new_tid(tid)))
		return rc;
	vap_enc_begin(&e, c->wbuf, c->conf.max_msg, vap_type(VAP_REGISTER, VAP_CLASS_REQUEST), tid);
	vap_enc_str(&e, VAP_ATTR_USERNAME, c->username);
	n = vap_enc_finish(&e, NULL, 0, c->conf.fingerprint);
	if (n < 0)
		return (int)n;
	if ((rc = send_all(c, c->wbuf, (size_t)n)))
		return rc;
	c->nonce[0] = '\0';
	rc = wait_answer(c, tid);
	if (rc != VP_EAUTH || !c->nonce[0])
		return rc ? rc : VP_EVAP;
	/* 2: the key depends on the realm the server named. */
	if ((rc = vap_key_derive(c->username, c->realm, c->password, key)))
		return rc;
	vap_mac_free(c->mac);
	rc = vap_mac_new(key, sizeof(key), &c->mac);
	OPENSSL_cleanse(key, sizeof(key));
	if (rc)
		return rc;
	return transact(c, VAP_REGISTER, NULL, NULL);
}

static int tls_connect(vap_client_t *c)
{
	const char *name = c->conf.tls_name ? c->conf.tls_name : c->conf.host;
	vp_deadline_t deadline = vp_deadline_in_ms((uint64_t)c->conf.timeout_ms);
	c->ssl = SSL_new(c->conf.tls);
	if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1)
		return VP_ETLS;
	{
		/* An address literal is checked against the certificate's IP SANs, a name
		 * against its DNS names (and sent as SNI). */
		uint8_t addr[16];
		if (inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1) {
			if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), name) != 1)
				return VP_ETLS;
		} else if (SSL_set_tlsext_host_name(c->ssl, name) != 1 || SSL_set1_host(c->ssl, name) != 1) {
			return VP_ETLS;
		}
	}
	for (;;) {
		int r = SSL_connect(c->ssl), e, rc;
		if (r == 1)
			return 0;
		e = SSL_get_error(c->ssl, r);
		if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
			ERR_clear_error();
			return VP_ETLS;
		}
		if ((rc = wait_fd(c, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, &deadline)))
			return rc;
	}
}

int vap_client_connect(const vap_client_conf_t *conf, vap_client_t **out)
{
	vap_client_t *c;
	int rc;
	*out = NULL;
	if (!conf || !conf->host || !conf->username || !conf->password ||
	    strlen(conf->username) > VAP_MAX_USERNAME || strlen(conf->password) >= 256)
		return VP_EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return VP_ENOMEM;
	c->conf = *conf;
	c->fd = -1;
	if (!c->conf.timeout_ms)
		c->conf.timeout_ms = 10000;
	if (!c->conf.max_msg)
		c->conf.max_msg = 16384;
	if (c->conf.max_msg > VAP_MAX_MSG)
		c->conf.max_msg = VAP_MAX_MSG;
	if (!c->conf.window)
		c->conf.window = 4;
	if (c->conf.window > MAX_WINDOW)
		c->conf.window = MAX_WINDOW;
	if (!(c->wbuf = malloc(c->conf.max_msg))) {
		free(c);
		return VP_ENOMEM;
	}
	strcpy(c->username, conf->username);
	strcpy(c->password, conf->password);
	c->conf.username = c->username;
	c->conf.password = c->password;
	if ((rc = vp_net_connect_tcp(conf->host, conf->port, (unsigned)c->conf.timeout_ms,
	                              VP_NET_NONBLOCK | VP_NET_NODELAY, &c->fd)))
		goto fail;
	if (conf->tls && (rc = tls_connect(c)))
		goto fail;
	if ((rc = do_register(c)))
		goto fail;
	*out = c;
	return 0;
fail:
	vap_client_close(c);
	return rc;
}

void vap_client_close(vap_client_t *c)
{
	if (!c)
		return;
	if (c->ssl) {
		if (!c->closed)
			SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
	}
	if (c->fd >= 0)
		close(c->fd);
	vap_mac_free(c->mac);
	OPENSSL_cleanse(c->password, sizeof(c->password));
	free(c->wbuf);
	free(c->nq);
	free(c);
}

int vap_client_unregister(vap_client_t *c)
{
	int rc = transact(c, VAP_UNREGISTER, NULL, NULL);
	c->closed = true;
	return rc;
}

const vap_client_error_t *vap_client_last_error(const vap_client_t *c)
{
	return &c->err;
}

int vap_client_fd(const vap_client_t *c)
{
	return c->fd;
}

bool vap_client_has_buffered(const vap_client_t *c)
{
	return c->rlen > c->roff || (c->ssl && SSL_pending(c->ssl) > 0);
}

uint64_t vap_client_notifies_dropped(const vap_client_t *c)
{
	return c->dropped;
}

/* ---- methods ------------------------------------------------------------------ */

int vap_client_keepalive(vap_client_t *c)
{
	return transact(c, VAP_KEEPALIVE, NULL, NULL);
}

typedef struct sub_arg {
	uint32_t id, expires;
} sub_arg_t;

static int fill_subscribe(vap_client_t *c, vap_enc_t *e, const void *arg)
{
	const sub_arg_t *s = arg;
	(void)c;
	vap_enc_u32(e, VAP_ATTR_VSERVICE_ID, s->id);
	return vap_enc_u32(e, VAP_ATTR_EXPIRES, s->expires);
}

int vap_client_subscribe(vap_client_t *c, uint32_t vservice_id, uint32_t expires)
{
	sub_arg_t s = { vservice_id, expires };
	return transact(c, VAP_SUBSCRIBE, fill_subscribe, &s);
}

static int fill_vservice(vap_client_t *c, vap_enc_t *e, const void *arg)
{
	const vap_vservice_t *vs = arg;
	(void)c;
	vap_enc_action(e, VAP_SERVICE_VSERVICE, vs->op ? vs->op : VAP_OP_ADD);
	vap_enc_u32(e, VAP_ATTR_VSERVICE_ID, vs->id);
	for (size_t i = 0; i < vs->n_uris && i < VAP_MAX_URIS; i++)
		vap_enc_str(e, VAP_ATTR_SIP_URI, vs->uris[i]);
	for (size_t i = 0; i < vs->n_black && i < VAP_MAX_LIST; i++)
		vap_enc_str(e, VAP_ATTR_BLACKLIST, vs->black[i]);
	for (size_t i = 0; i < vs->n_white && i < VAP_MAX_LIST; i++)
		vap_enc_str(e, VAP_ATTR_WHITELIST, vs->white[i]);
	return e->wr.err;
}

int vap_client_publish_vservice(vap_client_t *c, const vap_vservice_t *vs)
{
	return transact(c, VAP_PUBLISH, fill_vservice, vs);
}

typedef struct vcr_arg {
	const vap_vcr_t *v;
	size_t n;
} vcr_arg_t;

static int fill_upload(vap_client_t *c, vap_enc_t *e, const void *arg)
{
	const vcr_arg_t *a = arg;
	(void)c;
	for (size_t i = 0; i < a->n; i++)
		vap_enc_vcr(e, &a->v[i]);
	return e->wr.err;
}

int vap_client_upload(vap_client_t *c, const vap_vcr_t *vcrs, size_t n)
{
	vcr_arg_t a = { vcrs, n };
	if (n == 0)
		return VP_EINVAL;
	return transact(c, VAP_UPLOAD_VCR, fill_upload, &a);
}

int vap_client_send_upload(vap_client_t *c, const vap_vcr_t *vcrs, size_t n, uint8_t tid[VAP_TID_LEN])
{
	vap_enc_t e;
	vcr_arg_t a = { vcrs, n };
	int rc = begin_req(c, &e, VAP_UPLOAD_VCR, tid);
	if (!rc)
		rc = fill_upload(c, &e, &a);
	if (!rc)
		rc = end_req(c, &e);
	return rc;
}

int vap_client_wait_notify(vap_client_t *c, vap_route_t *route, int timeout_ms)
{
	vp_deadline_t deadline = vp_deadline_in_ms(timeout_ms < 0 ? 0 : (uint64_t)timeout_ms);
	while (c->nq_len == 0) {
		vap_msg_t m;
		int rc = read_msg(c, &deadline, &m);
		if (rc)
			return rc;
		if (m.cls == VAP_CLASS_INDICATION && m.method == VAP_NOTIFY)
			queue_notify(c, &m);
	}
	*route = c->nq[c->nq_head];
	c->nq_head = (c->nq_head + 1) % NOTIFY_QUEUE;
	c->nq_len--;
	return 0;
}

/* ---- pipelined publish ----------------------------------------------------------- */

typedef struct slot {
	uint8_t tid[VAP_TID_LEN];
	size_t n0, n1, r0, r1;      /* the numbers [n0,n1) and ranges [r0,r1) it carries */
	unsigned tries;
	bool used;
} slot_t;

typedef struct pub {
	uint32_t vsid;
	uint8_t op;
	const char *const *numbers;
	size_t n;
	const vap_range_t *ranges;
	size_t nr;
} pub_t;

/* Build and send one Publish with the items from s->n0/r0; fix s->n1/r1 the first time. */
static int send_publish(vap_client_t *c, const pub_t *p, slot_t *s, bool fixed)
{
	vap_enc_t e;
	size_t limit = c->conf.max_msg - REQ_OVERHEAD;
	size_t i;
	int rc = begin_req(c, &e, VAP_PUBLISH, s->tid);
	if (rc)
		return rc;
	uint64_t count = 0;
	vap_enc_action(&e, VAP_SERVICE_NUMBERS, p->op);
	vap_enc_u32(&e, VAP_ATTR_VSERVICE_ID, p->vsid);
	for (i = s->n0; fixed ? i < s->n1 : i < p->n && vp_wr_len(&e.wr) < limit; i++, count++)
		vap_enc_str(&e, VAP_ATTR_NUMBER, p->numbers[i]);
	s->n1 = i;
	for (i = s->r0; fixed ? i < s->r1 : i < p->nr && vp_wr_len(&e.wr) < limit; i++) {
		/* Ranges were cut to PUBLISH_NUMBERS_MAX; keep each message within it too. */
		if (!fixed && count && count + vap_range_count(&p->ranges[i]) > PUBLISH_NUMBERS_MAX)
			break;
		count += vap_range_count(&p->ranges[i]);
		vap_enc_range(&e, &p->ranges[i]);
	}
	s->r1 = i;
	if (e.wr.err)
		return e.wr.err;
	return end_req(c, &e);
}

int vap_client_publish(vap_client_t *c, uint32_t vservice_id, uint8_t op,
                       const char *const *numbers, size_t n,
                       const vap_range_t *ranges, size_t nr, uint64_t *stored)
{
	pub_t p = { vservice_id, op, numbers, n, ranges, nr };
	slot_t slots[MAX_WINDOW];
	unsigned nout = 0;
	size_t ni = 0, ri = 0, ncut = 0;
	uint64_t ok = 0;
	int first_rc = 0;
	vap_range_t *cut = NULL;
	memset(slots, 0, sizeof(slots));
	if (stored)
		*stored = 0;
	if (n + nr == 0)
		return VP_EINVAL;
	/* Cut big ranges (+1408[0000000-9999999] is 10 million numbers) into pieces. */
	for (size_t i = 0; i < nr; i++)
		ncut += (size_t)((vap_range_count(&ranges[i]) + PUBLISH_NUMBERS_MAX - 1) / PUBLISH_NUMBERS_MAX);
	if (ncut > nr) {
		size_t k = 0;
		cut = malloc(ncut * sizeof(*cut));
		if (!cut)
			return VP_ENOMEM;
		for (size_t i = 0; i < nr; i++) {
			uint64_t first = ranges[i].first;
			for (;;) {
				cut[k] = ranges[i];
				cut[k].first = (uint32_t)first;
				if ((uint64_t)ranges[i].last - first + 1 > PUBLISH_NUMBERS_MAX)
					cut[k].last = (uint32_t)(first + PUBLISH_NUMBERS_MAX - 1);
				first = (uint64_t)cut[k].last + 1;
				if (cut[k++].last == ranges[i].last)
					break;
			}
		}
		p.ranges = cut;
		p.nr = nr = ncut;
	}
	while (((ni < n || ri < nr) && !first_rc) || nout) {
		uint8_t tid[VAP_TID_LEN];
		unsigned k;
		int rc;
		if ((ni < n || ri < nr) && !first_rc && nout < c->conf.window) {
			for (k = 0; slots[k].used; k++)
				;
			slots[k] = (slot_t){ .n0 = ni, .r0 = ri, .used = true };
			if ((rc = send_publish(c, &p, &slots[k], false))) {
				first_rc = rc;
				break;
			}
			ni = slots[k].n1;
			ri = slots[k].r1;
			nout++;
			continue;
		}
		rc = vap_client_recv_answer(c, tid, -1);
		if (!is_answer(rc)) {
			first_rc = rc;
			break;
		}
		for (k = 0; k < MAX_WINDOW && !(slots[k].used && !memcmp(slots[k].tid, tid, VAP_TID_LEN)); k++)
			;
		if (k == MAX_WINDOW)
			continue;   /* an answer to something else */
		if (rc == 0) {
			ok += c->last_count;
		} else if ((rc == VP_ERATELIMIT || rc == VP_EBUSY ||
		            (rc == VP_EVAP_REJECTED && c->err.code == VAP_ERR_STALE_NONCE)) &&
		           slots[k].tries < c->conf.busy_retries + 1) {
			slots[k].tries++;
			if (rc != VP_EVAP_REJECTED)
				vp_sleep_ms(c->err.retry_after_ms ? c->err.retry_after_ms : 100);
			if ((rc = send_publish(c, &p, &slots[k], true))) {
				first_rc = rc;
				break;
			}
			continue;
		} else {
			if (c->last_count)
				ok += c->last_count;
			if (!first_rc)
				first_rc = rc;
		}
		slots[k].used = false;
		nout--;
	}
	free(cut);
	if (stored)
		*stored = ok;
	return first_rc;
}
