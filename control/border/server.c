/*
 * control/border/server.c - epoll loop, TLS, framing and deadlines around the border engine (proxy.c).
 */
#include "control/border/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "common/clock.h"
#include "common/errcode.h"
#include "common/log.h"

#define MOD "border"
#define MAX_EVENTS 64
#define ACCEPT_BURST 32          /* connections accepted per wake-up: a connect flood cannot monopolise the loop */
#define READ_CHUNK 16384
#define WBUF_MAX (4u << 20)      /* a peer that does not read 4 MiB of our output is closed */
#define RECONNECT_MS 1000
#define TICK_MS 100

/* K_TLS: a peer that connected to us; K_TLS_OUT: a peer we called out to; K_PLAIN: the diagnostic listener's;
 * K_INSIDE: our connection to the call agent; K_AGENT: a call agent that connected to us to call out. */
typedef enum { K_FREE = 0, K_TLS, K_TLS_OUT, K_PLAIN, K_INSIDE, K_AGENT } kind_t;

typedef struct conn {
	kind_t kind;
	int fd;
	SSL *ssl;
	uint32_t gen;
	bool handshaken, connecting, close_after_flush, ready, want_write;
	char domain[PVP_DOMAIN_MAX + 1];
	bool has_cc;             /* the peer's certificate is a ViPR client certificate from our issuer */
	pvp_cc_identity_t cc;
	char peer[64];
	char *rbuf;
	size_t rlen, rcap;
	char *wbuf;
	size_t wlen, woff, wcap;
	uint64_t deadline_ms;    /* handshake, or the message in progress */
	uint64_t idle_ms;
} conn_t;

/* Metric ids. */
enum { C_ADMITTED, C_FORWARDED, C_CONNS, C_TLS_FAILED, C_CLOSED_TIMEOUT, C_CLOSED_TOO_BIG, C_CLOSED_MALFORMED,
       C_PLAIN_REFUSED, C_KEY_RELOADS, C_PEER_LIMIT, C_NCOUNTERS };

struct vb_server {
	vb_server_conf_t conf;
	vb_proxy_t *px;
	pvp_ticket_keys_t keys;
	struct timespec keys_mtime;
	SSL_CTX *ctx, *cctx;     /* server side; client side (egress) */
	X509 *issuer;            /* the ViPR issuing CA (§6.1), or NULL */
	int ep, lfd, pfd, afd, evfd;
	uint16_t port;
	conn_t *conns;           /* [0] is the inside connection */
	uint32_t nconns;
	struct sockaddr_storage ca_addr;
	socklen_t ca_len;
	uint64_t next_connect_ms, next_tick_ms;
	_Atomic bool stop, reload, inside_up;
	vm_registry_t *reg;
	unsigned ctr[C_NCOUNTERS];
	unsigned refused[VB_R_COUNT];
	unsigned ticket_refused[PVP_TR_NO_ROUTES + 1];
	unsigned hist_admit;
	bool metrics;
};

static void count(vb_server_t *s, unsigned id)
{
	if (s->metrics)
		vm_inc(s->reg, 0, id, 1);
}

/* "host:port" or "[v6]:port" -> sockaddr; numeric hosts or names (resolved once, at start-up). */
static int parse_addr(const char *text, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[VB_ADDR_MAX];
	const char *colon;
	if (text[0] == '[') {
		const char *rb = strchr(text, ']');
		if (!rb || rb[1] != ':' || (size_t)(rb - text - 1) >= sizeof(host))
			return VP_ECONFIG;
		memcpy(host, text + 1, (size_t)(rb - text - 1));
		host[rb - text - 1] = '\0';
		colon = rb + 1;
	} else {
		colon = strrchr(text, ':');
		if (!colon || (size_t)(colon - text) >= sizeof(host))
			return VP_ECONFIG;
		memcpy(host, text, (size_t)(colon - text));
		host[colon - text] = '\0';
	}
	char *end;
	unsigned long port = strtoul(colon + 1, &end, 10);
	if (!colon[1] || *end || port > 65535)
		return VP_ECONFIG;
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *ai = NULL;
	char ports[8];
	snprintf(ports, sizeof(ports), "%lu", port);
	if (getaddrinfo(host, ports, &hints, &ai) != 0 || !ai)
		return VP_ECONFIG;
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	*len = ai->ai_addrlen;
	freeaddrinfo(ai);
	return 0;
}

static int listen_on(const char *text, uint16_t *port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	if (parse_addr(text, &ss, &len) != 0) {
		vp_log_error(MOD, "bad_address", "addr=%s", text);
		return VP_ECONFIG;
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
	if (fd < 0)
		return VP_EIO;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 1024) != 0) {
		vp_log_error(MOD, "bind_failed", "addr=%s errno=%d", text, errno);
		close(fd);
		return VP_EIO;
	}
	if (port) {
		struct sockaddr_storage b;
		socklen_t bl = sizeof(b);
		getsockname(fd, (struct sockaddr *)&b, &bl);
		*port = ntohs(b.ss_family == AF_INET ? ((struct sockaddr_in *)&b)->sin_port
		                                     : ((struct sockaddr_in6 *)&b)->sin6_port);
	}
	return fd;
}

static int load_keys(vb_server_t *s, bool initial)
{
	struct stat st;
	if (stat(s->conf.ticket_keys, &st) != 0) {
		vp_log_error(MOD, "ticket_keys_unreadable", "path=%s errno=%d", s->conf.ticket_keys, errno);
		return VP_ECONFIG;
	}
	if (!initial && st.st_mtim.tv_sec == s->keys_mtime.tv_sec && st.st_mtim.tv_nsec == s->keys_mtime.tv_nsec)
		return 0;
	pvp_ticket_keys_t k;
	int rc = pvp_ticket_keys_load(s->conf.ticket_keys, &k);
	if (rc != 0) {
		/* Keep serving with the keys we have: a half-written file must not stop admissions. */
		vp_log_error(MOD, "ticket_keys_rejected", "path=%s err=\"%s\"", s->conf.ticket_keys, vp_strerror(rc));
		return VP_ECONFIG;
	}
	s->keys = k;
	s->keys_mtime = st.st_mtim;
	if (!initial)
		count(s, s->ctr[C_KEY_RELOADS]);
	vp_log_info(MOD, "ticket_keys_loaded", "path=%s epoch=%u previous=%u", s->conf.ticket_keys, k.cur.epoch,
	            k.has_prev ? k.prev.epoch : 0);
	return 0;
}

static uint64_t conn_id(const vb_server_t *s, uint32_t i)
{
	return ((uint64_t)s->conns[i].gen << 32) | i;
}

static conn_t *conn_by_id(vb_server_t *s, uint64_t id, uint32_t *idx)
{
	id &= ~VB_CONN_INSIDE_BIT;
	uint32_t i = (uint32_t)id;
	if (i >= s->nconns || s->conns[i].kind == K_FREE || s->conns[i].gen != (uint32_t)(id >> 32))
		return NULL;
	if (idx)
		*idx = i;
	return &s->conns[i];
}

static void set_events(vb_server_t *s, uint32_t i)
{
	conn_t *c = &s->conns[i];
	struct epoll_event ev = {.events = EPOLLIN | (c->want_write || c->connecting ? EPOLLOUT : 0), .data.u32 = i};
	epoll_ctl(s->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_close(vb_server_t *s, uint32_t i, const char *why)
{
	conn_t *c = &s->conns[i];
	if (c->kind == K_FREE)
		return;
	if (c->kind == K_INSIDE) {
		atomic_store(&s->inside_up, false);
		s->next_connect_ms = vp_time_mono_ns() / 1000000 + RECONNECT_MS;
		vp_log_warn(MOD, "call_agent_down", "why=%s", why);
	} else {
		vb_proxy_conn_closed(s->px, conn_id(s, i));
		vp_log_debug(MOD, "conn_closed", "peer=%s domain=%s why=%s", c->peer, c->domain[0] ? c->domain : "-", why);
	}
	epoll_ctl(s->ep, EPOLL_CTL_DEL, c->fd, NULL);
	if (c->ssl)
		SSL_free(c->ssl);
	close(c->fd);
	free(c->rbuf);
	free(c->wbuf);
	uint32_t gen = c->gen + 1;
	memset(c, 0, sizeof(*c));
	c->gen = gen;
	c->fd = -1;
}

/* Write what we can; false when the connection failed (and was closed). */
static bool conn_flush(vb_server_t *s, uint32_t i)
{
	conn_t *c = &s->conns[i];
	if (c->connecting || (c->ssl && !c->handshaken))
		return true; /* queued until the connection (and its TLS handshake) is up */
	while (c->woff < c->wlen) {
		size_t n = c->wlen - c->woff;
		ssize_t w;
		if (c->ssl) {
			size_t done = 0;
			ERR_clear_error();
			if (SSL_write_ex(c->ssl, c->wbuf + c->woff, n, &done) <= 0) {
				int e = SSL_get_error(c->ssl, 0);
				if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
					break;
				conn_close(s, i, "write_failed");
				return false;
			}
			w = (ssize_t)done;
		} else {
			w = send(c->fd, c->wbuf + c->woff, n, MSG_NOSIGNAL);
			if (w < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK)
					break;
				conn_close(s, i, "write_failed");
				return false;
			}
		}
		c->woff += (size_t)w;
	}
	if (c->woff == c->wlen) {
		c->woff = c->wlen = 0;
		if (c->close_after_flush) {
			conn_close(s, i, "refused");
			return false;
		}
	}
	bool ww = c->wlen > 0;
	if (ww != c->want_write) {
		c->want_write = ww;
		set_events(s, i);
	}
	return true;
}

static bool conn_queue(vb_server_t *s, uint32_t i, const char *buf, size_t len)
{
	conn_t *c = &s->conns[i];
	if (c->wlen + len > WBUF_MAX) {
		conn_close(s, i, "output_overflow");
		return false;
	}
	if (c->wlen + len > c->wcap) {
		size_t ncap = c->wcap ? c->wcap : 4096;
		while (ncap < c->wlen + len)
			ncap *= 2;
		char *nb = realloc(c->wbuf, ncap);
		if (!nb)
			return false;
		c->wbuf = nb;
		c->wcap = ncap;
	}
	memcpy(c->wbuf + c->wlen, buf, len);
	c->wlen += len;
	return conn_flush(s, i);
}

static bool hook_send(void *ctx, uint64_t conn, const char *buf, size_t len)
{
	vb_server_t *s = ctx;
	uint32_t i = 0;
	if (conn == VB_CONN_INSIDE) {
		if (!atomic_load(&s->inside_up))
			return false;
	} else if (!conn_by_id(s, conn, &i) || s->conns[i].kind == K_INSIDE ||
	           ((conn & VB_CONN_INSIDE_BIT) != 0) != (s->conns[i].kind == K_AGENT)) {
		return false;
	}
	return conn_queue(s, i, buf, len);
}

static int slot_alloc(vb_server_t *s);

/* Egress: a TLS client connection to host:port, verified against our CA and, for a name, against the name. */
static int hook_connect(void *ctx, const char *host, uint16_t port, uint64_t *out)
{
	vb_server_t *s = ctx;
	char text[VB_ADDR_MAX + 16];
	snprintf(text, sizeof(text), strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
	struct sockaddr_storage ss;
	socklen_t sl;
	if (parse_addr(text, &ss, &sl) != 0) {
		vp_log_info(MOD, "egress_unresolved", "dest=%s", text);
		return VP_ENOTFOUND;
	}
	int i = slot_alloc(s);
	if (i < 0)
		return VP_EBUSY;
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
	if (fd < 0)
		return VP_EIO;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&ss, sl) != 0 && errno != EINPROGRESS) {
		close(fd);
		return VP_EIO;
	}
	conn_t *c = &s->conns[i];
	c->kind = K_TLS_OUT;
	c->fd = fd;
	c->connecting = true;
	snprintf(c->peer, sizeof(c->peer), "%.63s", text);
	uint64_t now_ms = vp_time_mono_ns() / 1000000;
	c->deadline_ms = now_ms + s->conf.handshake_timeout_ms;
	c->idle_ms = now_ms + s->conf.idle_timeout_ms;
	c->ssl = SSL_new(s->cctx);
	struct in6_addr a6;
	bool is_addr = inet_pton(AF_INET, host, &a6) == 1 || inet_pton(AF_INET6, host, &a6) == 1;
	if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1 ||
	    (!is_addr && (SSL_set1_host(c->ssl, host) != 1 || SSL_set_tlsext_host_name(c->ssl, host) != 1))) {
		conn_close(s, (uint32_t)i, "no_memory");
		return VP_ENOMEM;
	}
	SSL_set_connect_state(c->ssl);
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)i};
	epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev);
	count(s, s->ctr[C_CONNS]);
	vp_log_info(MOD, "egress_connect", "dest=%s verify_name=%s", text, is_addr ? "-" : host);
	*out = conn_id(s, (uint32_t)i);
	return 0;
}

static bool hook_inside_up(void *ctx)
{
	return atomic_load(&((vb_server_t *)ctx)->inside_up);
}

/*
 * RFC 3261 §18.3 stream framing: headers up to the blank line, then exactly Content-Length bytes
 * (mandatory on streams).  Only the length is read here; the message itself is parsed by libosip2,
 * and proxy.c refuses a message whose parsed Content-Length disagrees.  Returns 1 and *total for a
 * whole message, 0 for "need more", VP_ETOOBIG or VP_EMALFORMED.
 */
int vb_sip_frame(const char *b, size_t len, size_t max, size_t *total)
{
	size_t scan = len < max ? len : max;
	const char *end = memmem(b, scan, "\r\n\r\n", 4);
	if (!end)
		return len >= max ? VP_ETOOBIG : 0;
	size_t hlen = (size_t)(end - b) + 4;
	long cl = -1;
	for (const char *line = b; line < end;) {
		const char *eol = memmem(line, (size_t)(end - line) + 2, "\r\n", 2);
		const char *colon = memchr(line, ':', (size_t)(eol - line));
		if (colon) {
			size_t nlen = (size_t)(colon - line);
			while (nlen > 0 && (line[nlen - 1] == ' ' || line[nlen - 1] == '\t'))
				nlen--;
			if ((nlen == 14 && strncasecmp(line, "Content-Length", 14) == 0) ||
			    (nlen == 1 && (line[0] == 'l' || line[0] == 'L'))) {
				const char *v = colon + 1;
				while (v < eol && (*v == ' ' || *v == '\t'))
					v++;
				/* Digits only, read within the line: the buffer is not NUL-terminated (strtol would run on). */
				const char *e = v;
				long n = 0;
				while (e < eol && *e >= '0' && *e <= '9' && n <= (long)max)
					n = n * 10 + (*e++ - '0');
				if (e == v || cl >= 0)
					return VP_EMALFORMED; /* none, or two lengths (request smuggling): refuse */
				if (n > (long)max)
					return VP_ETOOBIG;
				while (e < eol && (*e == ' ' || *e == '\t'))
					e++;
				if (e != eol)
					return VP_EMALFORMED;
				cl = n;
			}
		}
		line = eol + 2;
	}
	if (cl < 0)
		return VP_EMALFORMED;
	if ((size_t)cl > max || hlen + (size_t)cl > max)
		return VP_ETOOBIG;
	if (len < hlen + (size_t)cl)
		return 0;
	*total = hlen + (size_t)cl;
	return 1;
}

static void account(vb_server_t *s, const vb_verdict_t *v, const conn_t *c, uint64_t t0_ns)
{
	if (v->admitted) {
		count(s, s->ctr[C_ADMITTED]);
		if (s->metrics)
			vm_observe(s->reg, 0, s->hist_admit, (vp_time_mono_ns() - t0_ns) / 1000);
	}
	if (v->forwarded)
		count(s, s->ctr[C_FORWARDED]);
	if (v->reason == VB_R_OK)
		return;
	if (v->reason == VB_R_TICKET && (unsigned)v->ticket <= PVP_TR_NO_ROUTES)
		count(s, s->ticket_refused[v->ticket]);
	else
		count(s, s->refused[v->reason]);
	vp_log_info(MOD, "refused", "reason=%s status=%d peer=%s domain=%s", vb_verdict_str(v), v->status, c->peer,
	            c->domain[0] ? c->domain : "-");
}

/* Serve up to conf.burst whole messages from c's buffer; false if the connection was closed. */
static bool conn_process(vb_server_t *s, uint32_t i, uint64_t now_ms, bool *more)
{
	*more = false;
	for (uint32_t n = 0;; n++) {
		conn_t *c = &s->conns[i];
		size_t skip = 0;
		while (skip < c->rlen && (c->rbuf[skip] == '\r' || c->rbuf[skip] == '\n'))
			skip++; /* RFC 5626 keep-alive CRLFs between messages */
		if (skip) {
			if (skip >= 4 && c->kind == K_TLS)
				conn_queue(s, i, "\r\n", 2); /* pong */
			if (s->conns[i].kind == K_FREE)
				return false;
			memmove(c->rbuf, c->rbuf + skip, c->rlen - skip);
			c->rlen -= skip;
		}
		if (c->rlen == 0) {
			c->deadline_ms = 0;
			return true;
		}
		if (n >= s->conf.burst) {
			*more = true;
			return true;
		}
		size_t total = 0;
		int fr = vb_sip_frame(c->rbuf, c->rlen, s->conf.max_message, &total);
		if (fr == 0) {
			if (c->deadline_ms == 0 && c->kind != K_INSIDE && c->kind != K_AGENT)
				c->deadline_ms = now_ms + s->conf.message_timeout_ms;
			return true;
		}
		if (fr < 0) {
			count(s, s->ctr[fr == VP_ETOOBIG ? C_CLOSED_TOO_BIG : C_CLOSED_MALFORMED]);
			vp_log_info(MOD, "refused", "reason=%s peer=%s domain=%s", fr == VP_ETOOBIG ? "too-big" : "framing",
			            c->peer, c->domain[0] ? c->domain : "-");
			conn_close(s, i, fr == VP_ETOOBIG ? "too_big" : "framing");
			return false;
		}
		uint64_t id = c->kind == K_INSIDE  ? VB_CONN_INSIDE
		            : c->kind == K_AGENT ? conn_id(s, i) | VB_CONN_INSIDE_BIT
		                                 : conn_id(s, i);
		uint32_t gen = c->gen;
		uint64_t t0 = vp_time_mono_ns();
		vb_verdict_t v;
		int rc;
		if (c->kind == K_PLAIN) {
			rc = vb_proxy_reject(s->px, id, c->rbuf, total, 403);
			count(s, s->ctr[C_PLAIN_REFUSED]);
			c->close_after_flush = true;
			v = (vb_verdict_t){.reason = VB_R_OK};
		} else {
			rc = vb_proxy_input_cc(s->px, id, c->domain, c->has_cc ? &c->cc : NULL, c->rbuf, total, vp_time_wall_ms(),
			                       &v);
		}
		if (s->conns[i].kind == K_FREE || s->conns[i].gen != gen)
			return false; /* a send failure closed it */
		c = &s->conns[i];
		account(s, &v, c, t0);
		if (rc != 0) {
			count(s, s->ctr[C_CLOSED_MALFORMED]);
			conn_close(s, i, "malformed");
			return false;
		}
		memmove(c->rbuf, c->rbuf + total, c->rlen - total);
		c->rlen -= total;
		c->deadline_ms = 0;
		if (c->close_after_flush) {
			conn_flush(s, i);
			return false;
		}
	}
}

/* Domain of the verified peer certificate: first DNS subjectAltName, else the subject CN. */
static bool peer_domain(SSL *ssl, char out[PVP_DOMAIN_MAX + 1])
{
	X509 *x = SSL_get0_peer_certificate(ssl);
	if (!x || SSL_get_verify_result(ssl) != X509_V_OK)
		return false;
	char raw[PVP_DOMAIN_MAX + 1] = "";
	GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	for (int k = 0; sans && k < sk_GENERAL_NAME_num(sans) && !raw[0]; k++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, k);
		if (g->type == GEN_DNS) {
			const unsigned char *d = ASN1_STRING_get0_data(g->d.dNSName);
			int len = ASN1_STRING_length(g->d.dNSName);
			if (len > 0 && len <= PVP_DOMAIN_MAX && !memchr(d, '\0', (size_t)len)) {
				memcpy(raw, d, (size_t)len);
				raw[len] = '\0';
			}
		}
	}
	GENERAL_NAMES_free(sans);
	if (!raw[0]) {
		int n = X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, raw, sizeof(raw));
		if (n <= 0 || (size_t)n != strlen(raw))
			return false;
	}
	return pvp_domain_normalize(raw, out) == 0;
}

static void conn_readable(vb_server_t *s, uint32_t i, uint64_t now_ms)
{
	conn_t *c = &s->conns[i];
	if (c->ssl && !c->handshaken) {
		ERR_clear_error();
		int r = SSL_do_handshake(c->ssl);
		if (r != 1) {
			int e = SSL_get_error(c->ssl, r);
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
				bool ww = e == SSL_ERROR_WANT_WRITE;
				if (ww != c->want_write) {
					c->want_write = ww;
					set_events(s, i);
				}
				return;
			}
			count(s, s->ctr[C_TLS_FAILED]);
			vp_log_info(MOD, "tls_refused", "peer=%s err=\"%s\"", c->peer,
			            ERR_reason_error_string(ERR_peek_last_error()) ? ERR_reason_error_string(ERR_peek_last_error())
			                                                            : "closed");
			conn_close(s, i, "tls_handshake");
			return;
		}
		if (!peer_domain(c->ssl, c->domain)) {
			count(s, s->ctr[C_TLS_FAILED]);
			vp_log_info(MOD, "tls_refused", "peer=%s err=\"no usable domain in the certificate\"", c->peer);
			conn_close(s, i, "tls_domain");
			return;
		}
		/* A ViPR client certificate (§6.1): the TLS handshake checked its chain and dates; the issuer's own
		 * signature and the profile are checked here, once per connection. */
		c->has_cc = c->kind == K_TLS && s->issuer &&
		            pvp_cc_identity(SSL_get0_peer_certificate(c->ssl), s->issuer, &c->cc) == 0;
		if (c->has_cc)
			vp_log_debug(MOD, "peer_vipr_cert", "peer=%s domain=%s number=%s not_after=%" PRIu64, c->peer,
			             c->cc.domain, c->cc.number, c->cc.not_after_s);
		if (c->kind == K_TLS && s->conf.max_conns_per_peer) {
			uint32_t same = 0;
			for (uint32_t k = 1; k < s->nconns; k++)
				if (k != i && s->conns[k].kind == K_TLS && s->conns[k].handshaken &&
				    strcmp(s->conns[k].domain, c->domain) == 0)
					same++;
			if (same >= s->conf.max_conns_per_peer) {
				count(s, s->ctr[C_PEER_LIMIT]);
				vp_log_info(MOD, "refused", "reason=peer-conns peer=%s domain=%s conns=%u", c->peer, c->domain, same);
				conn_close(s, i, "peer_limit");
				return;
			}
		}
		c->handshaken = true;
		c->deadline_ms = 0;
		c->want_write = false;
		set_events(s, i);
		vp_log_debug(MOD, "peer_connected", "peer=%s domain=%s out=%d", c->peer, c->domain, c->kind == K_TLS_OUT);
		if (c->kind == K_TLS_OUT && !conn_flush(s, i))
			return; /* what the engine queued while we connected */
	}
	bool more = false;
	if (!conn_process(s, i, now_ms, &more))
		return;
	if (more) {
		c->ready = true;
		return;
	}
	/* Read until the socket is empty or the buffer holds a message's worth; then serve. */
	for (int rounds = 0; rounds < 4; rounds++) {
		c = &s->conns[i];
		if (c->rcap - c->rlen < READ_CHUNK) {
			size_t ncap = c->rcap ? c->rcap * 2 : READ_CHUNK * 2;
			if (ncap > (size_t)s->conf.max_message + 2 * READ_CHUNK)
				ncap = (size_t)s->conf.max_message + 2 * READ_CHUNK;
			if (ncap > c->rcap) {
				char *nb = realloc(c->rbuf, ncap);
				if (!nb) {
					conn_close(s, i, "no_memory");
					return;
				}
				c->rbuf = nb;
				c->rcap = ncap;
			}
		}
		size_t room = c->rcap - c->rlen, got = 0;
		if (room == 0)
			break;
		if (c->ssl) {
			ERR_clear_error();
			if (SSL_read_ex(c->ssl, c->rbuf + c->rlen, room, &got) <= 0) {
				int e = SSL_get_error(c->ssl, 0);
				if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
					break;
				conn_close(s, i, e == SSL_ERROR_ZERO_RETURN ? "peer_closed" : "read_failed");
				return;
			}
		} else {
			ssize_t r = recv(c->fd, c->rbuf + c->rlen, room, 0);
			if (r == 0) {
				conn_close(s, i, "peer_closed");
				return;
			}
			if (r < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK)
					break;
				conn_close(s, i, "read_failed");
				return;
			}
			got = (size_t)r;
		}
		c->rlen += got;
		c->idle_ms = now_ms + s->conf.idle_timeout_ms;
		if (!conn_process(s, i, now_ms, &more))
			return;
		if (more) {
			s->conns[i].ready = true;
			return;
		}
	}
	c = &s->conns[i];
	if (c->ssl && SSL_pending(c->ssl) > 0)
		c->ready = true; /* decrypted bytes epoll cannot see */
}

static int slot_alloc(vb_server_t *s)
{
	/* slot 0 is the call agent connection */
	for (uint32_t i = 1; i < s->nconns; i++)
		if (s->conns[i].kind == K_FREE)
			return (int)i;
	return -1;
}

static void accept_on(vb_server_t *s, int lfd, kind_t kind, uint64_t now_ms)
{
	for (int n = 0; n < ACCEPT_BURST; n++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		int i = slot_alloc(s);
		if (i < 0) {
			close(fd); /* at capacity: the peer retries later */
			continue;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		conn_t *c = &s->conns[i];
		c->kind = kind;
		c->fd = fd;
		char host[INET6_ADDRSTRLEN] = "?";
		uint16_t port = 0;
		if (ss.ss_family == AF_INET) {
			inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof(host));
			port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof(host));
			port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		}
		snprintf(c->peer, sizeof(c->peer), "%s:%u", host, port);
		c->deadline_ms = now_ms + s->conf.handshake_timeout_ms;
		c->idle_ms = now_ms + s->conf.idle_timeout_ms;
		if (kind == K_TLS) {
			c->ssl = SSL_new(s->ctx);
			if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
				conn_close(s, (uint32_t)i, "no_memory");
				continue;
			}
			SSL_set_accept_state(c->ssl);
		} else {
			c->handshaken = true;
		}
		struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
		epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev);
		count(s, s->ctr[C_CONNS]);
	}
}

static void inside_connect(vb_server_t *s, uint64_t now_ms)
{
	conn_t *c = &s->conns[0];
	if (c->kind != K_FREE || now_ms < s->next_connect_ms)
		return;
	s->next_connect_ms = now_ms + RECONNECT_MS;
	int fd = socket(s->ca_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
	if (fd < 0)
		return;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&s->ca_addr, s->ca_len) != 0 && errno != EINPROGRESS) {
		close(fd);
		return;
	}
	c->kind = K_INSIDE;
	c->fd = fd;
	c->connecting = true;
	c->handshaken = true;
	snprintf(c->peer, sizeof(c->peer), "%.63s", s->conf.call_agent);
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = 0};
	epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev);
}

static void on_event(vb_server_t *s, uint32_t i, uint32_t events, uint64_t now_ms)
{
	conn_t *c = &s->conns[i];
	if (c->kind == K_FREE)
		return;
	if (c->connecting) {
		int err = 0;
		socklen_t el = sizeof(err);
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
		if (err != 0 || (events & (EPOLLERR | EPOLLHUP))) {
			conn_close(s, i, "connect_failed");
			return;
		}
		if (!(events & EPOLLOUT))
			return;
		c->connecting = false;
		set_events(s, i);
		if (c->kind == K_TLS_OUT) {
			conn_readable(s, i, now_ms); /* start the TLS handshake */
			return;
		}
		atomic_store(&s->inside_up, true);
		vp_log_info(MOD, "call_agent_up", "addr=%s", s->conf.call_agent);
		return;
	}
	if ((events & EPOLLOUT) && c->handshaken) {
		if (!conn_flush(s, i))
			return;
	}
	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP) || (events & EPOLLOUT && !c->handshaken))
		conn_readable(s, i, now_ms);
}

static void timers(vb_server_t *s, uint64_t now_ms)
{
	for (uint32_t i = 1; i < s->nconns; i++) {
		conn_t *c = &s->conns[i];
		if (c->kind == K_FREE)
			continue;
		if (c->deadline_ms && now_ms >= c->deadline_ms) {
			count(s, s->ctr[C_CLOSED_TIMEOUT]);
			vp_log_info(MOD, "refused", "reason=%s peer=%s domain=%s", c->handshaken ? "slow-message" : "slow-handshake",
			            c->peer, c->domain[0] ? c->domain : "-");
			conn_close(s, i, "timeout");
		} else if (now_ms >= c->idle_ms) {
			conn_close(s, i, "idle");
		}
	}
	vb_proxy_tick(s->px, vp_time_wall_ms());
	if (atomic_exchange(&s->reload, false))
		load_keys(s, false);
	else
		load_keys(s, false); /* cheap stat(): picks up `vipr-ticket rotate` without a signal */
}

int vb_server_run(vb_server_t *s)
{
	struct epoll_event evs[MAX_EVENTS];
	while (!atomic_load(&s->stop)) {
		bool pending = false;
		for (uint32_t i = 0; i < s->nconns && !pending; i++)
			pending = s->conns[i].ready;
		int n = epoll_wait(s->ep, evs, MAX_EVENTS, pending ? 0 : TICK_MS);
		if (n < 0 && errno != EINTR)
			return VP_EIO;
		uint64_t now_ms = vp_time_mono_ns() / 1000000;
		for (int k = 0; k < n; k++) {
			uint32_t tag = evs[k].data.u32;
			if (tag == UINT32_MAX - 1)
				accept_on(s, s->lfd, K_TLS, now_ms);
			else if (tag == UINT32_MAX - 2)
				accept_on(s, s->pfd, K_PLAIN, now_ms);
			else if (tag == UINT32_MAX - 3)
				accept_on(s, s->afd, K_AGENT, now_ms);
			else if (tag == UINT32_MAX) {
				uint64_t x;
				if (read(s->evfd, &x, sizeof(x)) < 0) { /* nothing to do: the flags say why */
				}
			} else if (tag < s->nconns)
				on_event(s, tag, evs[k].events, now_ms);
		}
		/* Connections with buffered work get another burst, round-robin with the sockets above. */
		for (uint32_t i = 0; i < s->nconns; i++) {
			if (!s->conns[i].ready)
				continue;
			s->conns[i].ready = false;
			conn_readable(s, i, now_ms);
		}
		if (now_ms >= s->next_tick_ms) {
			s->next_tick_ms = now_ms + TICK_MS;
			inside_connect(s, now_ms);
			timers(s, now_ms);
		}
	}
	return 0;
}

static int ssl_setup(vb_server_t *s)
{
	s->ctx = SSL_CTX_new(TLS_server_method());
	if (!s->ctx)
		return VP_ENOMEM;
	SSL_CTX_set_min_proto_version(s->ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(s->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (SSL_CTX_use_certificate_chain_file(s->ctx, s->conf.cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(s->ctx, s->conf.key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(s->ctx) != 1) {
		vp_log_error(MOD, "tls_config", "cert=%s key=%s err=\"%s\"", s->conf.cert, s->conf.key,
		             ERR_reason_error_string(ERR_get_error()));
		return VP_ECONFIG;
	}
	if (SSL_CTX_load_verify_locations(s->ctx, s->conf.ca, NULL) != 1) {
		vp_log_error(MOD, "tls_config", "ca=%s err=\"%s\"", s->conf.ca, ERR_reason_error_string(ERR_get_error()));
		return VP_ECONFIG;
	}
	STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(s->conf.ca);
	if (s->conf.cert_issuer[0]) {
		/* Peers may present a certificate from the ViPR issuer instead of the CA (§6.1): trust it for TLS too,
		 * and name it in the CertificateRequest so a client picks its ViPR certificate. */
		FILE *f = fopen(s->conf.cert_issuer, "r");
		s->issuer = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
		if (f)
			fclose(f);
		if (!s->issuer || X509_check_ca(s->issuer) == 0 ||
		    X509_STORE_add_cert(SSL_CTX_get_cert_store(s->ctx), s->issuer) != 1) {
			vp_log_error(MOD, "tls_config", "cert_issuer=%s err=\"not a readable CA certificate\"",
			             s->conf.cert_issuer);
			sk_X509_NAME_pop_free(names, X509_NAME_free);
			return VP_ECONFIG;
		}
		if (!names)
			names = sk_X509_NAME_new_null();
		X509_NAME *in = names ? X509_NAME_dup(X509_get_subject_name(s->issuer)) : NULL;
		if (in && !sk_X509_NAME_push(names, in))
			X509_NAME_free(in);
		vp_log_info(MOD, "cert_issuer_loaded", "path=%s", s->conf.cert_issuer);
	}
	if (names)
		SSL_CTX_set_client_CA_list(s->ctx, names);
	/* Mutual authentication: no certificate from our CA, no SIP. */
	SSL_CTX_set_verify(s->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_verify_depth(s->ctx, 4);
	SSL_CTX_set_session_cache_mode(s->ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(s->ctx, 0);
	/* Egress: the same certificate as a client (the callee's border checks our domain), the same CA. */
	s->cctx = SSL_CTX_new(TLS_client_method());
	if (!s->cctx)
		return VP_ENOMEM;
	SSL_CTX_set_min_proto_version(s->cctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(s->cctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (SSL_CTX_use_certificate_chain_file(s->cctx, s->conf.cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(s->cctx, s->conf.key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_load_verify_locations(s->cctx, s->conf.ca, NULL) != 1)
		return VP_ECONFIG;
	SSL_CTX_set_verify(s->cctx, SSL_VERIFY_PEER, NULL);
	return 0;
}

static void register_metrics(vb_server_t *s)
{
	static const struct { unsigned idx; const char *name, *labels, *help; } defs[] = {
		{C_ADMITTED, "vipr_border_admitted_total", NULL, "INVITEs admitted (new dialogs)"},
		{C_FORWARDED, "vipr_border_forwarded_total", NULL, "SIP messages proxied"},
		{C_CONNS, "vipr_border_connections_total", NULL, "connections accepted"},
		{C_TLS_FAILED, "vipr_border_tls_refused_total", NULL, "TLS handshakes failed or without a usable peer domain"},
		{C_CLOSED_TIMEOUT, "vipr_border_closed_total", "cause=\"timeout\"", "connections closed by the border"},
		{C_CLOSED_TOO_BIG, "vipr_border_closed_total", "cause=\"too-big\"", NULL},
		{C_CLOSED_MALFORMED, "vipr_border_closed_total", "cause=\"malformed\"", NULL},
		{C_PLAIN_REFUSED, "vipr_border_plain_refused_total", NULL, "requests on the diagnostic plain-TCP listener"},
		{C_KEY_RELOADS, "vipr_border_ticket_key_reloads_total", NULL, "ticket key file changes picked up"},
		{C_PEER_LIMIT, "vipr_border_closed_total", "cause=\"peer-conns\"", NULL},
	};
	bool ok = true;
	for (size_t k = 0; k < sizeof(defs) / sizeof(defs[0]); k++)
		ok &= vm_counter_add(s->reg, defs[k].name, defs[k].labels,
		                     defs[k].help ? defs[k].help : "connections closed by the border", &s->ctr[defs[k].idx]) == 0;
	char lab[64];
	for (int r = VB_R_OK + 1; r < VB_R_COUNT; r++) {
		if (r == VB_R_TICKET)
			continue;
		snprintf(lab, sizeof(lab), "reason=\"%s\"", vb_reason_str((vb_reason_t)r));
		ok &= vm_counter_add(s->reg, "vipr_border_refused_total", lab, "messages refused, by reason",
		                     &s->refused[r]) == 0;
	}
	for (int r = PVP_TR_MALFORMED; r <= PVP_TR_NO_ROUTES; r++) {
		snprintf(lab, sizeof(lab), "reason=\"ticket-%s\"", pvp_ticket_reason_str((pvp_ticket_reason_t)r));
		ok &= vm_counter_add(s->reg, "vipr_border_refused_total", lab, "messages refused, by reason",
		                     &s->ticket_refused[r]) == 0;
	}
	static const uint64_t bounds[] = {50, 100, 200, 500, 1000, 2000, 5000, 10000, 50000};
	ok &= vm_histogram_add(s->reg, "vipr_border_admit_seconds", NULL,
	                       "time from a whole INVITE to its forwarding (ticket, SDP, rewrite)", bounds,
	                       sizeof(bounds) / sizeof(bounds[0]), 1e6, &s->hist_admit) == 0;
	s->metrics = ok;
	if (!ok)
		vp_log_warn(MOD, "metrics_disabled", "why=\"registry full\"");
}

int vb_server_new(const vb_server_conf_t *conf, vm_registry_t *reg, vb_server_t **out)
{
	if (!conf || !out || conf->max_conns == 0 || conf->max_message < 1024 || conf->burst == 0)
		return VP_EINVAL;
	vb_server_t *s = calloc(1, sizeof(*s));
	if (!s)
		return VP_ENOMEM;
	int rc = VP_ECONFIG;
	s->conf = *conf;
	s->ep = s->lfd = s->pfd = s->afd = s->evfd = -1;
	s->reg = reg;
	if (reg)
		register_metrics(s);
	if ((rc = load_keys(s, true)) != 0)
		goto fail;
	if ((rc = ssl_setup(s)) != 0)
		goto fail;
	if (parse_addr(conf->call_agent, &s->ca_addr, &s->ca_len) != 0) {
		vp_log_error(MOD, "bad_address", "call_agent=%s", conf->call_agent);
		rc = VP_ECONFIG;
		goto fail;
	}
	if ((s->lfd = listen_on(conf->listen, &s->port)) < 0) {
		rc = s->lfd;
		goto fail;
	}
	if (conf->plain_listen[0] && (s->pfd = listen_on(conf->plain_listen, NULL)) < 0) {
		rc = s->pfd;
		goto fail;
	}
	if (conf->agent_listen[0] && (s->afd = listen_on(conf->agent_listen, NULL)) < 0) {
		rc = s->afd;
		goto fail;
	}
	s->nconns = conf->max_conns + 1;
	s->conns = calloc(s->nconns, sizeof(*s->conns));
	s->ep = epoll_create1(EPOLL_CLOEXEC);
	s->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	rc = VP_ENOMEM;
	if (!s->conns || s->ep < 0 || s->evfd < 0)
		goto fail;
	for (uint32_t i = 0; i < s->nconns; i++)
		s->conns[i].fd = -1;
	struct epoll_event ev = {.events = EPOLLIN, .data.u32 = UINT32_MAX - 1};
	epoll_ctl(s->ep, EPOLL_CTL_ADD, s->lfd, &ev);
	ev.data.u32 = UINT32_MAX;
	epoll_ctl(s->ep, EPOLL_CTL_ADD, s->evfd, &ev);
	if (s->pfd >= 0) {
		ev.data.u32 = UINT32_MAX - 2;
		epoll_ctl(s->ep, EPOLL_CTL_ADD, s->pfd, &ev);
	}
	if (s->afd >= 0) {
		ev.data.u32 = UINT32_MAX - 3;
		epoll_ctl(s->ep, EPOLL_CTL_ADD, s->afd, &ev);
	}
	vb_proxy_conf_t pc = conf->proxy;
	/* Derived from the listener when not configured: the address a peer connected to (port 0 resolved). */
	int hl = (int)(strrchr(conf->listen, ':') - conf->listen);
	if (!pc.outside_uri[0])
		snprintf(pc.outside_uri, sizeof(pc.outside_uri), "sip:%.*s:%u;transport=tls", hl, conf->listen, s->port);
	if (!pc.inside_uri[0])
		snprintf(pc.inside_uri, sizeof(pc.inside_uri), "sip:%.*s:%u;transport=tcp", hl, conf->listen, s->port);
	vb_hooks_t hooks = {.send = hook_send, .inside_up = hook_inside_up, .ctx = s,
	                    .connect = conf->agent_listen[0] ? hook_connect : NULL};
	if ((rc = vb_proxy_new(&pc, &s->keys, &hooks, &s->px)) != 0) {
		vp_log_error(MOD, "bad_uri", "outside=%s inside=%s", pc.outside_uri, pc.inside_uri);
		goto fail;
	}
	vp_log_info(MOD, "listening", "addr=%s port=%u plain=%s call_agent=%s checks=%s", conf->listen, s->port,
	            conf->plain_listen[0] ? conf->plain_listen : "off", conf->call_agent, pc.checks ? "on" : "off");
	inside_connect(s, vp_time_mono_ns() / 1000000);
	*out = s;
	return 0;
fail:
	vb_server_free(s);
	return rc;
}

void vb_server_stop(vb_server_t *s)
{
	atomic_store(&s->stop, true);
	uint64_t one = 1;
	if (write(s->evfd, &one, sizeof(one)) < 0) { /* the flag is set; the loop wakes within TICK_MS anyway */
	}
}

void vb_server_reload(vb_server_t *s)
{
	atomic_store(&s->reload, true);
}

uint16_t vb_server_port(const vb_server_t *s)
{
	return s->port;
}

bool vb_server_inside_up(const vb_server_t *s)
{
	return atomic_load(&((vb_server_t *)s)->inside_up);
}

void vb_server_free(vb_server_t *s)
{
	if (!s)
		return;
	for (uint32_t i = 0; s->conns && i < s->nconns; i++)
		conn_close(s, i, "shutdown");
	free(s->conns);
	vb_proxy_free(s->px);
	SSL_CTX_free(s->ctx);
	SSL_CTX_free(s->cctx);
	X509_free(s->issuer);
	if (s->afd >= 0)
		close(s->afd);
	if (s->lfd >= 0)
		close(s->lfd);
	if (s->pfd >= 0)
		close(s->pfd);
	if (s->ep >= 0)
		close(s->ep);
	if (s->evfd >= 0)
		close(s->evfd);
	free(s);
}
