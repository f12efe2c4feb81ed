/*
 * dataplane/link.c - TLS-over-TCP overlay links with RELOAD framing; see link.h.
 */
#include "dataplane/link.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "common/clock.h"
#include "common/errcode.h"
#include "common/hex.h"
#include "common/log.h"
#include "common/net.h"

/* Decrypted bytes read per dp_link_io() call before yielding to other links (fairness). */
#define READ_BUDGET (256u * 1024u)
/* One frame: the largest DATA frame. */
#define RX_CAP (RL_FRAME_DATA_HDR_LEN + RL_MAX_MESSAGE_SIZE)
/* Bytes handed to one SSL_write (one TLS record). */
#define WRITE_CHUNK 16384u

/* ---- configuration ------------------------------------------------------- */

static const char *const tls_words[] = { "1.2", "1.3", NULL };

const vp_conf_opt_t dp_link_conf_opts[] = {
	{ .section = "link", .key = "ca_file", .type = VP_CONF_STR, .def = "",
	  .doc = "PEM file with the overlay root certificate(s): peers must chain to one of them",
	  VP_CONF_AT(dp_link_conf_t, ca_file) },
	{ .section = "link", .key = "cert_file", .type = VP_CONF_STR, .def = "",
	  .doc = "PEM file with this node's enrolled certificate (then any intermediates)",
	  VP_CONF_AT(dp_link_conf_t, cert_file) },
	{ .section = "link", .key = "key_file", .type = VP_CONF_STR, .def = "",
	  .doc = "PEM file with this node's private key", VP_CONF_AT(dp_link_conf_t, key_file) },
	{ .section = "link", .key = "keylog_file", .type = VP_CONF_STR, .def = "",
	  .doc = "append TLS secrets here (NSS key log) so Wireshark can decrypt the links; empty = off",
	  VP_CONF_AT(dp_link_conf_t, keylog_file) },
	{ .section = "link", .key = "advertise", .type = VP_CONF_STR, .def = "",
	  .doc = "address:port put in Attach/AppAttach candidates (behind NAT or in a DMZ); empty = the listen address",
	  VP_CONF_AT(dp_link_conf_t, advertise) },
	{ .section = "link", .key = "connect_timeout", .type = VP_CONF_DUR_MS, .min = 100, .max = 120000,
	  .def = "5s", .doc = "TCP connect deadline", VP_CONF_AT(dp_link_conf_t, connect_timeout_ms) },
	{ .section = "link", .key = "handshake_timeout", .type = VP_CONF_DUR_MS, .min = 100, .max = 120000,
	  .def = "5s", .doc = "TLS handshake deadline; a peer that stalls longer is dropped",
	  VP_CONF_AT(dp_link_conf_t, handshake_timeout_ms) },
	{ .section = "link", .key = "keepalive", .type = VP_CONF_DUR_S, .min = 1000, .max = 7200000,
	  .def = "30s", .doc = "TCP keepalive idle time; a dead, silent or non-reading peer is dropped after about twice this",
	  VP_CONF_AT(dp_link_conf_t, keepalive_s) },
	{ .section = "link", .key = "max_tx_buffer", .type = VP_CONF_U32, .min = 2 * RX_CAP,
	  .max = 64u << 20, .def = "262144", .unit = "bytes",
	  .doc = "outgoing frames buffered per link; beyond it senders get back-pressure",
	  VP_CONF_AT(dp_link_conf_t, max_tx_buffer) },
	{ .section = "link", .key = "max_handshakes", .type = VP_CONF_U32, .min = 1, .max = 65536,
	  .def = "256", .unit = "connections",
	  .doc = "inbound TLS handshakes pending at once; the oldest is dropped to admit a new one",
	  VP_CONF_AT(dp_link_conf_t, max_handshakes) },
	{ .section = "link", .key = "tls_min_version", .type = VP_CONF_ENUM, .def = "1.2", .choices = tls_words,
	  .doc = "oldest TLS version accepted (1.3 is always preferred)", VP_CONF_AT(dp_link_conf_t, tls_min) },
};
const size_t dp_link_conf_nopts = VP_CONF_NOPTS(dp_link_conf_opts);

void dp_link_conf_default(dp_link_conf_t *c)
{
	vp_conf_err_t e;
	memset(c, 0, sizeof(*c));
	(void)vp_conf_schema_defaults(dp_link_conf_opts, dp_link_conf_nopts, c, &e);
}

/* ---- context ------------------------------------------------------------- */

struct dp_link_ctx {
	dp_link_conf_t conf;
	dp_cert_store_t *certs;
	SSL_CTX *ssl;
	FILE *keylog;
};

struct dp_link {
	dp_link_ctx_t *ctx;
	int fd;
	SSL *ssl;
	bool client;
	bool announced; /* on_up called (link set) */
	bool rx_held;   /* frames left unread because the consumer had no room: read again at the next run */
	dp_link_state_t state;
	uint64_t deadline;
	uint64_t started; /* for the handshake limit: oldest first */
	char addr[64];
	const char *reason;
	char detail[160];
	vp_id_t expect;
	bool have_expect;
	vp_id_t peer_ids[DP_CERT_MAX_NODE_IDS];
	uint32_t n_peer_ids;
	dp_cert_reason_t cert_why; /* set by the verify callback */
	bool cert_failed;
	bool peer_mismatch;
	/* receive */
	uint8_t *rx;
	size_t rx_len;
	uint64_t rx_hist; /* bit 0: the last DATA sequence, bit k: sequence - k */
	uint32_t rx_last;
	uint64_t data_rx, acks_rx;
	/* transmit: bytes [tx_off, tx_len) of tx are queued */
	uint8_t *tx;
	size_t tx_off, tx_len, tx_cap;
	uint32_t tx_seq;
	bool want_write;
};

static int link_ex_idx = -1;

static void keylog_cb(const SSL *ssl, const char *line)
{
	dp_link_ctx_t *c = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
	if (c && c->keylog) {
		fprintf(c->keylog, "%s\n", line);
		fflush(c->keylog);
	}
}

static void hex_short(const vp_id_t *id, char out[VP_ID_HEX_LEN + 1])
{
	vp_id_to_hex(id, out);
}

/* Replaces OpenSSL's chain verification: the overlay store decides, and remembers why. */
static int verify_cb(X509_STORE_CTX *xs, void *arg)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
	dp_link_t *l = ssl ? SSL_get_ex_data(ssl, link_ex_idx) : NULL;
	dp_link_ctx_t *c = arg;
	const dp_cert_ident_t *id;
	dp_cert_reason_t why;
	X509 *leaf = X509_STORE_CTX_get0_cert(xs);

	if (!l || !leaf) {
		X509_STORE_CTX_set_error(xs, X509_V_ERR_UNSPECIFIED);
		return 0;
	}
	if (dp_cert_verify_x509(c->certs, leaf, X509_STORE_CTX_get0_untrusted(xs), &id, &why)) {
		l->cert_failed = true;
		l->cert_why = why;
		X509_STORE_CTX_set_error(xs, why == DP_CERT_EXPIRED         ? X509_V_ERR_CERT_HAS_EXPIRED
		                             : why == DP_CERT_NOT_YET_VALID ? X509_V_ERR_CERT_NOT_YET_VALID
		                             : why == DP_CERT_REVOKED       ? X509_V_ERR_CERT_REVOKED
		                                                            : X509_V_ERR_CERT_REJECTED);
		return 0;
	}
	if (l->have_expect && !dp_cert_ident_has(id, &l->expect)) {
		l->peer_mismatch = true;
		X509_STORE_CTX_set_error(xs, X509_V_ERR_CERT_REJECTED);
		return 0;
	}
	memcpy(l->peer_ids, id->node_ids, id->n_node_ids * sizeof(vp_id_t));
	l->n_peer_ids = id->n_node_ids;
	return 1;
}

static int load_ident(const dp_link_conf_t *conf, SSL_CTX *ssl)
{
	if (!conf->cert_file[0] || !conf->key_file[0]) {
		vp_log_error("link", "config", "reason=\"no certificate or key configured ([link] cert_file, key_file)\"");
		return VP_ECONFIG;
	}
	if (SSL_CTX_use_certificate_chain_file(ssl, conf->cert_file) != 1) {
		vp_log_error("link", "config", "file=%s reason=\"cannot read the certificate\"", conf->cert_file);
		return VP_ECONFIG;
	}
	if (SSL_CTX_use_PrivateKey_file(ssl, conf->key_file, SSL_FILETYPE_PEM) != 1) {
		vp_log_error("link", "config", "file=%s reason=\"cannot read the private key\"", conf->key_file);
		return VP_ECONFIG;
	}
	return 0;
}

int dp_link_ctx_new(const dp_link_conf_t *conf, dp_cert_store_t *certs, const dp_link_ident_t *ident,
                    dp_link_ctx_t **out)
{
	dp_link_ctx_t *c;
	int e = VP_ECONFIG;

	*out = NULL;
	if (!conf || !certs)
		return VP_EINVAL;
	if (link_ex_idx < 0) {
		/* The same index every time: racing first calls would only waste an index. */
		link_ex_idx = SSL_get_ex_new_index(0, (void *)"dp_link", NULL, NULL, NULL);
		if (link_ex_idx < 0)
			return VP_ECRYPTO;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return VP_ENOMEM;
	c->conf = *conf;
	c->certs = certs;
	c->ssl = SSL_CTX_new(TLS_method());
	if (!c->ssl) {
		e = VP_ENOMEM;
		goto fail;
	}
	SSL_CTX_set_app_data(c->ssl, c);
	SSL_CTX_set_min_proto_version(c->ssl, conf->tls_min == DP_LINK_TLS13 ? TLS1_3_VERSION : TLS1_2_VERSION);
	SSL_CTX_set_max_proto_version(c->ssl, TLS1_3_VERSION);
	/* No resumption: a resumed session would skip the certificate check that binds the link. */
	SSL_CTX_set_session_cache_mode(c->ssl, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(c->ssl, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_num_tickets(c->ssl, 0);
	SSL_CTX_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* Read-ahead: one read call takes every record that arrived (a relay's input is many small records), not
	 * two calls (header, body) per record; dp_link_has_pending() then asks SSL_has_pending(), which also sees
	 * records read but not yet decrypted, so no buffered record waits for poll(). */
	SSL_CTX_set_read_ahead(c->ssl, 1);
	SSL_CTX_set_verify(c->ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_cert_verify_callback(c->ssl, verify_cb, c);
	if (ident) {
		if (SSL_CTX_use_certificate(c->ssl, ident->cert) != 1 ||
		    SSL_CTX_use_PrivateKey(c->ssl, ident->key) != 1)
			goto fail;
		for (int i = 0; ident->chain && i < sk_X509_num(ident->chain); i++)
			if (SSL_CTX_add1_chain_cert(c->ssl, sk_X509_value(ident->chain, i)) != 1)
				goto fail;
	} else if ((e = load_ident(conf, c->ssl))) {
		goto fail;
	}
	if (SSL_CTX_check_private_key(c->ssl) != 1) {
		vp_log_error("link", "config", "reason=\"the private key does not match the certificate\"");
		e = VP_ECONFIG;
		goto fail;
	}
	if (conf->keylog_file[0]) {
		int fd = open(conf->keylog_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (fd < 0 || !(c->keylog = fdopen(fd, "a"))) {
			if (fd >= 0)
				close(fd);
			vp_log_error("link", "config", "file=%s reason=\"cannot open the key log\"", conf->keylog_file);
			e = VP_ECONFIG;
			goto fail;
		}
		SSL_CTX_set_keylog_callback(c->ssl, keylog_cb);
		vp_log_warn("link", "keylog_on", "file=%s note=\"TLS secrets are written to this file\"",
		            conf->keylog_file);
	}
	*out = c;
	return 0;
fail:
	dp_link_ctx_free(c);
	return e;
}

void dp_link_ctx_free(dp_link_ctx_t *c)
{
	if (!c)
		return;
	SSL_CTX_free(c->ssl);
	if (c->keylog)
		fclose(c->keylog);
	free(c);
}

/* ---- addresses ----------------------------------------------------------- */

int dp_link_addr_parse(const char *text, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[VP_NET_HOST_MAX];
	uint16_t port;
	vp_net_addr_t a;

	memset(ss, 0, sizeof(*ss));
	if (vp_net_split_hostport(text, true, host, sizeof(host), &port) || vp_net_addr_numeric(host, port, &a))
		return VP_EINVAL;
	*ss = a.ss;
	*len = a.len;
	return 0;
}

static void addr_text(const struct sockaddr *sa, char *out, size_t cap)
{
	char h[INET6_ADDRSTRLEN] = "?";
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &a->sin_addr, h, sizeof(h));
		snprintf(out, cap, "%s:%u", h, ntohs(a->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &a->sin6_addr, h, sizeof(h));
		snprintf(out, cap, "[%s]:%u", h, ntohs(a->sin6_port));
	} else {
		snprintf(out, cap, "?");
	}
}

static int ip_port_from_sa(const struct sockaddr *sa, rl_ip_port_t *ip)
{
	memset(ip, 0, sizeof(*ip));
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
		ip->type = RL_ADDR_IPV4;
		memcpy(ip->addr, &a->sin_addr, 4);
		ip->port = ntohs(a->sin_port);
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
		ip->type = RL_ADDR_IPV6;
		memcpy(ip->addr, &a->sin6_addr, 16);
		ip->port = ntohs(a->sin6_port);
		return 0;
	}
	return VP_EINVAL;
}

int dp_link_candidate(const dp_link_conf_t *conf, const struct sockaddr *listen, rl_ice_candidate_t *out)
{
	static const uint8_t foundation[] = "tls";
	struct sockaddr_storage ss;
	socklen_t sl;
	int e;

	memset(out, 0, sizeof(*out));
	if (conf && conf->advertise[0]) {
		if ((e = dp_link_addr_parse(conf->advertise, &ss, &sl)))
			return e;
		listen = (const struct sockaddr *)&ss;
	}
	if (!listen || (e = ip_port_from_sa(listen, &out->addr)))
		return VP_EINVAL;
	out->overlay_link = RL_LINK_TLS_TCP_FH_NO_ICE;
	out->foundation = (rl_bytes_t){ foundation, 3 };
	/* RFC 8445 §5.1.2.1 host priority with one component: (126 << 24) | (65535 << 8) | 255. */
	out->priority = (126u << 24) | (65535u << 8) | 255u;
	out->cand_type = RL_CAND_HOST;
	return 0;
}

int dp_link_listen(const char *addr, int backlog, int *fd, uint16_t *port)
{
	char host[VP_NET_HOST_MAX];
	uint16_t want;

	*fd = -1;
	if (vp_net_split_hostport(addr, true, host, sizeof(host), &want))
		return VP_EINVAL;
	return vp_net_listen_tcp(host, want, backlog, VP_NET_NONBLOCK, fd, port);
}

/* ---- links ------------------------------------------------------------------ */

static void set_sockopts(int fd, const dp_link_conf_t *conf)
{
	int one = 1, idle = (int)conf->keepalive_s, intvl = idle / 3 > 0 ? idle / 3 : 1, cnt = 3;
	unsigned ut = conf->keepalive_s * 2000u;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	/* Unacknowledged data also ends the link after the same bound (keepalive alone waits forever then). */
	setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ut, sizeof(ut));
}

static dp_link_t *link_alloc(dp_link_ctx_t *c, int fd, bool client, uint64_t now)
{
	dp_link_t *l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->ctx = c;
	l->fd = fd;
	l->client = client;
	l->started = now;
	l->rx = malloc(RX_CAP);
	l->ssl = SSL_new(c->ssl);
	if (!l->rx || !l->ssl || SSL_set_fd(l->ssl, fd) != 1) {
		SSL_free(l->ssl);
		free(l->rx);
		free(l);
		return NULL;
	}
	SSL_set_ex_data(l->ssl, link_ex_idx, l);
	if (client)
		SSL_set_connect_state(l->ssl);
	else
		SSL_set_accept_state(l->ssl);
	return l;
}

static const char *role(const dp_link_t *l)
{
	return l->client ? "client" : "server";
}

/* Close now, with `reason`; refusals are logged at warn, ordinary ends at info. */
static void link_end(dp_link_t *l, const char *reason, bool refusal, const char *detail)
{
	if (l->state == DP_LINK_CLOSED)
		return;
	l->reason = reason;
	snprintf(l->detail, sizeof(l->detail), "%s", detail ? detail : "");
	if (refusal)
		vp_log_warn("link", "link_refused", "role=%s peer=%s reason=%s detail=\"%s\"", role(l), l->addr, reason,
		            l->detail);
	else
		vp_log_info("link", "link_down", "role=%s peer=%s reason=%s%s%s%s", role(l), l->addr, reason,
		            *l->detail ? " detail=\"" : "", l->detail, *l->detail ? "\"" : "");
	if (l->ssl && l->state == DP_LINK_UP && !refusal)
		SSL_shutdown(l->ssl); /* close_notify, best effort: the socket is non-blocking */
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
	l->state = DP_LINK_CLOSED;
}

int dp_link_connect(dp_link_ctx_t *c, const struct sockaddr *sa, socklen_t salen, const vp_id_t *expect,
                    uint64_t now_ms, dp_link_t **out)
{
	dp_link_t *l;
	int fd;

	*out = NULL;
	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return VP_EIO;
	set_sockopts(fd, &c->conf);
	l = link_alloc(c, fd, true, now_ms);
	if (!l) {
		close(fd);
		return VP_ENOMEM;
	}
	addr_text(sa, l->addr, sizeof(l->addr));
	if (expect) {
		l->expect = *expect;
		l->have_expect = true;
	}
	l->state = DP_LINK_CONNECTING;
	l->deadline = now_ms + c->conf.connect_timeout_ms;
	if (connect(fd, sa, salen) == 0) {
		l->state = DP_LINK_HANDSHAKE;
		l->deadline = now_ms + c->conf.handshake_timeout_ms;
	} else if (errno != EINPROGRESS) {
		char d[64];
		snprintf(d, sizeof(d), "%s", strerror(errno));
		link_end(l, "connect_failed", false, d);
	}
	*out = l;
	return 0;
}

int dp_link_connect_attach(dp_link_ctx_t *c, const rl_ice_list_t *cands, const vp_id_t *expect,
                           uint64_t now_ms, dp_link_t **out)
{
	rl_iter_t it;
	rl_ice_candidate_t cand;
	int r;

	*out = NULL;
	RL_ITER_INIT(&it, cands);
	while ((r = rl_ice_candidate_next(&it, &cand)) == 1) {
		struct sockaddr_storage ss;
		socklen_t sl;
		if (cand.overlay_link != RL_LINK_TLS_TCP_FH_NO_ICE)
			continue;
		memset(&ss, 0, sizeof(ss));
		if (cand.addr.type == RL_ADDR_IPV4) {
			struct sockaddr_in *a = (struct sockaddr_in *)&ss;
			a->sin_family = AF_INET;
			memcpy(&a->sin_addr, cand.addr.addr, 4);
			a->sin_port = htons(cand.addr.port);
			sl = sizeof(*a);
		} else if (cand.addr.type == RL_ADDR_IPV6) {
			struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
			a->sin6_family = AF_INET6;
			memcpy(&a->sin6_addr, cand.addr.addr, 16);
			a->sin6_port = htons(cand.addr.port);
			sl = sizeof(*a);
		} else {
			continue;
		}
		return dp_link_connect(c, (struct sockaddr *)&ss, sl, expect, now_ms, out);
	}
	return r < 0 ? r : VP_ENOTFOUND;
}

int dp_link_accept(dp_link_ctx_t *c, int fd, uint64_t now_ms, dp_link_t **out)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	dp_link_t *l;
	int fl;

	*out = NULL;
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		close(fd);
		return VP_EIO;
	}
	set_sockopts(fd, &c->conf);
	l = link_alloc(c, fd, false, now_ms);
	if (!l) {
		close(fd);
		return VP_ENOMEM;
	}
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
		addr_text((struct sockaddr *)&ss, l->addr, sizeof(l->addr));
	else
		snprintf(l->addr, sizeof(l->addr), "?");
	l->state = DP_LINK_HANDSHAKE;
	l->deadline = now_ms + c->conf.handshake_timeout_ms;
	*out = l;
	return 0;
}

/* The OpenSSL error queue's first reason, for a log detail. */
static void ssl_detail(char *out, size_t cap)
{
	unsigned long e = ERR_peek_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;
	snprintf(out, cap, "%s", r ? r : "connection closed during the handshake");
	ERR_clear_error();
}

static void handshake_failed(dp_link_t *l)
{
	char d[160];
	unsigned long e = ERR_peek_error();

	if (l->cert_failed) {
		ERR_clear_error();
		link_end(l, dp_cert_reason_name(l->cert_why), true, "peer certificate refused");
		return;
	}
	if (l->peer_mismatch) {
		char hex[VP_ID_HEX_LEN + 1];
		ERR_clear_error();
		hex_short(&l->expect, hex);
		snprintf(d, sizeof(d), "certificate lacks the Node-ID attached to (%s)", hex);
		link_end(l, "peer_mismatch", true, d);
		return;
	}
	ssl_detail(d, sizeof(d));
	if (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)
		link_end(l, "cert_missing", true, d);
	else if (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) >= SSL_AD_REASON_OFFSET)
		link_end(l, "tls_alert", true, d); /* the peer sent an alert: it refused us */
	else
		link_end(l, "tls_handshake", true, d);
}

static void do_handshake(dp_link_t *l)
{
	int r;

	ERR_clear_error();
	r = SSL_do_handshake(l->ssl);
	if (r == 1) {
		char hex[VP_ID_HEX_LEN + 1];
		if (l->n_peer_ids == 0) { /* cannot happen with VERIFY_FAIL_IF_NO_PEER_CERT; never admit unbound */
			link_end(l, "cert_missing", true, "no verified Node-ID");
			return;
		}
		l->state = DP_LINK_UP;
		l->deadline = UINT64_MAX;
		hex_short(&l->peer_ids[0], hex);
		vp_log_info("link", "link_up", "role=%s peer=%s node_id=%s node_ids=%u tls=%s", role(l), l->addr, hex,
		            l->n_peer_ids, SSL_get_version(l->ssl));
		return;
	}
	switch (SSL_get_error(l->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		l->want_write = false;
		return;
	case SSL_ERROR_WANT_WRITE:
		l->want_write = true;
		return;
	default:
		handshake_failed(l);
	}
}

static void finish_connect(dp_link_t *l, uint64_t now)
{
	int err = 0;
	socklen_t el = sizeof(err);
	struct pollfd p = { l->fd, POLLOUT, 0 };

	if (poll(&p, 1, 0) <= 0)
		return;
	if (getsockopt(l->fd, SOL_SOCKET, SO_ERROR, &err, &el) || err) {
		link_end(l, "connect_failed", false, strerror(err ? err : errno));
		return;
	}
	l->state = DP_LINK_HANDSHAKE;
	l->deadline = now + l->ctx->conf.handshake_timeout_ms;
}

static void queue_ack(dp_link_t *l, uint32_t seq)
{
	vp_wr_t wr;
	uint32_t received = (uint32_t)(l->rx_hist >> 1);

	/* ACKs are informational on TLS: under back-pressure they are the first thing dropped. */
	if (l->tx_len + RL_FRAME_ACK_LEN > l->tx_cap || l->tx_len - l->tx_off + RL_FRAME_ACK_LEN >
	    l->ctx->conf.max_tx_buffer)
		return;
	vp_wr_init(&wr, l->tx + l->tx_len, RL_FRAME_ACK_LEN);
	if (rl_frame_encode_ack(&wr, seq, received) == 0)
		l->tx_len += vp_wr_len(&wr);
}

/*
 * Has the consumer room for one more message?  A link set's consumer (the I/O backend) takes a bounded burst
 * per run: a DATA frame it could not take stays in rx (not parsed, not acknowledged) for the next run, so
 * a burst larger than the consumer's is delayed, never dropped.
 */
typedef bool (*link_room_fn)(void *arg);

/* Parse complete frames from rx; false if the link was closed. */
static bool parse_frames(dp_link_t *l, dp_link_msg_fn fn, link_room_fn room, void *arg)
{
	size_t off = 0;

	while (l->state == DP_LINK_UP && l->rx_len - off > 0) {
		size_t flen;
		rl_frame_t f;
		int e = rl_frame_peek(l->rx + off, l->rx_len - off, &flen);
		if (e == VP_EAGAIN)
			break;
		if (e == VP_ETOOBIG) {
			char d[64];
			uint32_t n = l->rx_len - off >= 8 ? (uint32_t)l->rx[off + 5] << 16 | l->rx[off + 6] << 8 |
			                                        l->rx[off + 7]
			                                  : 0;
			snprintf(d, sizeof(d), "length=%u max=%u", n, RL_MAX_MESSAGE_SIZE);
			link_end(l, "frame_too_big", true, d);
			return false;
		}
		if (e) {
			char d[64];
			snprintf(d, sizeof(d), "frame_type=%u", l->rx[off]);
			link_end(l, "frame_bad_type", true, d);
			return false;
		}
		if (l->rx_len - off < flen)
			break;
		if (rl_frame_decode(l->rx + off, flen, &f)) {
			link_end(l, "frame_bad_type", true, "undecodable frame");
			return false;
		}
		if (f.type == RL_FRAME_DATA && room && !room(arg)) {
			l->rx_held = true;
			break;
		}
		off += flen;
		if (f.type == RL_FRAME_DATA) {
			l->rx_hist = (f.sequence == l->rx_last + 1) ? (l->rx_hist << 1) | 1u : 1u;
			l->rx_last = f.sequence;
			l->data_rx++;
			queue_ack(l, f.sequence);
			if (fn)
				fn(arg, l, f.message.p, f.message.len);
		} else {
			l->acks_rx++;
		}
	}
	if (off) {
		memmove(l->rx, l->rx + off, l->rx_len - off);
		l->rx_len -= off;
	}
	return l->state == DP_LINK_UP;
}

static void do_read(dp_link_t *l, dp_link_msg_fn fn, link_room_fn room, void *arg)
{
	size_t budget = READ_BUDGET;

	if (l->rx_held) {
		/* Frames held at the last run first; read on only once they are all taken. */
		l->rx_held = false;
		if (!parse_frames(l, fn, room, arg) || l->rx_held)
			return;
	}
	while (l->state == DP_LINK_UP && budget) {
		int n, want = (int)(RX_CAP - l->rx_len);
		if (room && !room(arg)) {
			l->rx_held = true; /* more may wait in the TLS buffer, where poll() does not see it */
			return;
		}
		ERR_clear_error();
		n = SSL_read(l->ssl, l->rx + l->rx_len, want);
		if (n > 0) {
			l->rx_len += (size_t)n;
			budget = (size_t)n >= budget ? 0 : budget - (size_t)n;
			if (!parse_frames(l, fn, room, arg) || l->rx_held)
				return;
			continue;
		}
		switch (SSL_get_error(l->ssl, n)) {
		case SSL_ERROR_WANT_READ:
			return;
		case SSL_ERROR_WANT_WRITE:
			l->want_write = true;
			return;
		case SSL_ERROR_ZERO_RETURN:
			link_end(l, "peer_closed", false, NULL);
			return;
		case SSL_ERROR_SYSCALL:
			if (ERR_peek_error() == 0) {
				link_end(l, "peer_reset", false, errno ? strerror(errno) : "EOF without close_notify");
				return;
			}
			/* fall through */
		default: {
			char d[160];
			ssl_detail(d, sizeof(d));
			link_end(l, "tls_error", true, d);
			return;
		}
		}
	}
}

static void do_write(dp_link_t *l)
{
	while (l->state == DP_LINK_UP && l->tx_off < l->tx_len) {
		size_t chunk = l->tx_len - l->tx_off;
		int n;
		if (chunk > WRITE_CHUNK)
			chunk = WRITE_CHUNK;
		ERR_clear_error();
		n = SSL_write(l->ssl, l->tx + l->tx_off, (int)chunk);
		if (n > 0) {
			l->tx_off += (size_t)n;
			continue;
		}
		switch (SSL_get_error(l->ssl, n)) {
		case SSL_ERROR_WANT_WRITE:
			l->want_write = true;
			return;
		case SSL_ERROR_WANT_READ:
			return;
		default: {
			char d[160];
			ssl_detail(d, sizeof(d));
			link_end(l, "peer_reset", false, d);
			return;
		}
		}
	}
	l->want_write = false;
	if (l->tx_off == l->tx_len)
		l->tx_off = l->tx_len = 0;
}

static void do_drain(dp_link_t *l, uint64_t now);

static int link_io(dp_link_t *l, uint64_t now_ms, dp_link_msg_fn fn, link_room_fn room, void *arg)
{
	if (l->state == DP_LINK_CONNECTING) {
		finish_connect(l, now_ms);
		if (l->state == DP_LINK_CONNECTING && now_ms >= l->deadline)
			link_end(l, "connect_timeout", true, NULL);
	}
	if (l->state == DP_LINK_HANDSHAKE) {
		do_handshake(l);
		if (l->state == DP_LINK_HANDSHAKE && now_ms >= l->deadline) {
			char d[64];
			snprintf(d, sizeof(d), "after %llu ms", (unsigned long long)(now_ms - l->started));
			link_end(l, "handshake_timeout", true, d);
		}
	}
	if (l->state == DP_LINK_UP) {
		do_read(l, fn, room, arg);
		do_write(l);
	}
	if (l->state == DP_LINK_CLOSING)
		do_drain(l, now_ms);
	return l->state == DP_LINK_CLOSED ? VP_ECLOSED : 0;
}

int dp_link_io(dp_link_t *l, uint64_t now_ms, dp_link_msg_fn fn, void *arg)
{
	return link_io(l, now_ms, fn, NULL, arg);
}

int dp_link_send(dp_link_t *l, const uint8_t *msg, size_t len)
{
	int err = dp_link_queue(l, msg, len);
	if (!err)
		do_write(l);
	return err;
}

void dp_link_flush(dp_link_t *l)
{
	do_write(l);
}

int dp_link_queue(dp_link_t *l, const uint8_t *msg, size_t len)
{
	size_t need = RL_FRAME_DATA_HDR_LEN + len;
	vp_wr_t wr;

	if (l->state != DP_LINK_UP)
		return VP_ESTATE;
	if (len > RL_MAX_MESSAGE_SIZE)
		return VP_ETOOBIG;
	if (l->tx_len - l->tx_off + need > l->ctx->conf.max_tx_buffer)
		return VP_EAGAIN;
	if (l->tx_len + need > l->tx_cap) {
		/* Compact first; grow only up to the bound. */
		if (l->tx_off) {
			memmove(l->tx, l->tx + l->tx_off, l->tx_len - l->tx_off);
			l->tx_len -= l->tx_off;
			l->tx_off = 0;
		}
		if (l->tx_len + need > l->tx_cap) {
			size_t cap = l->tx_cap ? l->tx_cap : 4096;
			uint8_t *p;
			while (cap < l->tx_len + need + RL_FRAME_ACK_LEN)
				cap *= 2;
			if (cap > (size_t)l->ctx->conf.max_tx_buffer + RL_FRAME_ACK_LEN * 64u)
				cap = (size_t)l->ctx->conf.max_tx_buffer + RL_FRAME_ACK_LEN * 64u;
			p = realloc(l->tx, cap);
			if (!p)
				return VP_ENOMEM;
			l->tx = p;
			l->tx_cap = cap;
		}
	}
	vp_wr_init(&wr, l->tx + l->tx_len, l->tx_cap - l->tx_len);
	if (rl_frame_encode_data(&wr, ++l->tx_seq, msg, len))
		return wr.err;
	l->tx_len += vp_wr_len(&wr);
	return 0;
}

void dp_link_close(dp_link_t *l)
{
	if (l->state == DP_LINK_CLOSING || l->state == DP_LINK_CLOSED)
		return;
	if (l->state != DP_LINK_UP) {
		link_end(l, "local_close", false, NULL);
		return;
	}
	do_write(l);
	ERR_clear_error();
	SSL_shutdown(l->ssl);
	shutdown(l->fd, SHUT_WR);
	l->state = DP_LINK_CLOSING;
	l->deadline = vp_time_mono_ns() / 1000000u + l->ctx->conf.handshake_timeout_ms;
}

/* Closing: read and drop until the peer's close_notify or EOF (or the deadline). */
static void do_drain(dp_link_t *l, uint64_t now)
{
	uint8_t junk[4096];
	for (int k = 0; k < 64; k++) {
		int n;
		ERR_clear_error();
		n = SSL_read(l->ssl, junk, sizeof(junk));
		if (n > 0)
			continue;
		if (SSL_get_error(l->ssl, n) == SSL_ERROR_WANT_READ && now < l->deadline)
			return;
		break;
	}
	ERR_clear_error();
	l->state = DP_LINK_UP; /* let link_end log and close; close_notify was already sent */
	SSL_set_quiet_shutdown(l->ssl, 1);
	link_end(l, "local_close", false, NULL);
}

void dp_link_free(dp_link_t *l)
{
	if (!l)
		return;
	if (l->state == DP_LINK_UP)
		do_write(l);
	link_end(l, "local_close", false, NULL); /* no-op when already closed */
	SSL_free(l->ssl);
	free(l->rx);
	free(l->tx);
	free(l);
}

dp_link_state_t dp_link_state(const dp_link_t *l)
{
	return l->state;
}

int dp_link_fd(const dp_link_t *l)
{
	return l->fd;
}

short dp_link_events(const dp_link_t *l)
{
	switch (l->state) {
	case DP_LINK_CONNECTING:
		return POLLOUT;
	case DP_LINK_HANDSHAKE:
	case DP_LINK_UP:
		return (short)(POLLIN | (l->want_write || l->tx_off < l->tx_len ? POLLOUT : 0));
	case DP_LINK_CLOSING:
		return POLLIN;
	default:
		return 0;
	}
}

uint64_t dp_link_deadline(const dp_link_t *l)
{
	return l->state == DP_LINK_CONNECTING || l->state == DP_LINK_HANDSHAKE || l->state == DP_LINK_CLOSING
	               ? l->deadline
	               : UINT64_MAX;
}

bool dp_link_has_pending(const dp_link_t *l)
{
	return l->state == DP_LINK_UP && (l->rx_held || SSL_has_pending(l->ssl));
}

const vp_id_t *dp_link_peer_ids(const dp_link_t *l, uint32_t *n)
{
	*n = l->state == DP_LINK_UP || l->state == DP_LINK_CLOSED ? l->n_peer_ids : 0;
	return l->peer_ids;
}

size_t dp_link_tx_pending(const dp_link_t *l)
{
	return l->tx_len - l->tx_off;
}

const char *dp_link_close_reason(const dp_link_t *l)
{
	return l->state == DP_LINK_CLOSED ? l->reason : NULL;
}

const char *dp_link_tls_version(const dp_link_t *l)
{
	return l->ssl ? SSL_get_version(l->ssl) : "";
}

const char *dp_link_peer_addr(const dp_link_t *l)
{
	return l->addr;
}

bool dp_link_is_client(const dp_link_t *l)
{
	return l->client;
}

void dp_link_counts(const dp_link_t *l, uint64_t *data_rx, uint64_t *acks_rx)
{
	*data_rx = l->data_rx;
	*acks_rx = l->acks_rx;
}

/* ---- the set ---------------------------------------------------------------- */

struct dp_link_set {
	dp_link_ctx_t *ctx;
	int listen_fd;
	dp_link_set_cb_t cb;
	dp_link_t **links;
	size_t n, cap;
	struct pollfd *pfd;
	size_t pfd_cap;
	int wake_fd; /* 0 = none */
	size_t rot;  /* the link served first at a run: rotates, so a full burst does not always favour the same links */
};

void dp_link_set_wake(dp_link_set_t *s, int fd)
{
	s->wake_fd = fd > 0 ? fd : 0;
}

int dp_link_set_new(dp_link_ctx_t *c, int listen_fd, const dp_link_set_cb_t *cb, dp_link_set_t **out)
{
	dp_link_set_t *s = calloc(1, sizeof(*s));
	*out = NULL;
	if (!s)
		return VP_ENOMEM;
	s->ctx = c;
	s->listen_fd = listen_fd;
	if (cb)
		s->cb = *cb;
	*out = s;
	return 0;
}

void dp_link_set_free(dp_link_set_t *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++)
		dp_link_free(s->links[i]);
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	free(s->links);
	free(s->pfd);
	free(s);
}

int dp_link_set_add(dp_link_set_t *s, dp_link_t *l)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		dp_link_t **p = realloc(s->links, cap * sizeof(*p));
		if (!p)
			return VP_ENOMEM;
		s->links = p;
		s->cap = cap;
	}
	s->links[s->n++] = l;
	return 0;
}

size_t dp_link_set_count(const dp_link_set_t *s)
{
	return s->n;
}

dp_link_t *dp_link_set_find(dp_link_set_t *s, const vp_id_t *id)
{
	for (size_t i = 0; i < s->n; i++) {
		dp_link_t *l = s->links[i];
		if (l->state != DP_LINK_UP)
			continue;
		for (uint32_t j = 0; j < l->n_peer_ids; j++)
			if (vp_id_eq(&l->peer_ids[j], id))
				return l;
	}
	return NULL;
}

static void set_msg(void *arg, dp_link_t *l, const uint8_t *msg, size_t len)
{
	dp_link_set_t *s = arg;
	if (s->cb.on_msg)
		s->cb.on_msg(s->cb.arg, l, msg, len);
}

static bool set_room(void *arg)
{
	dp_link_set_t *s = arg;
	return !s->cb.room || s->cb.room(s->cb.arg);
}

static void accept_some(dp_link_set_t *s, uint64_t now)
{
	for (int k = 0; k < 64; k++) {
		int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		size_t pending = 0, oldest = SIZE_MAX;
		dp_link_t *l;
		if (fd < 0)
			return;
		for (size_t i = 0; i < s->n; i++) {
			dp_link_t *p = s->links[i];
			if (p->client || p->state != DP_LINK_HANDSHAKE)
				continue;
			pending++;
			if (oldest == SIZE_MAX || p->started < s->links[oldest]->started)
				oldest = i;
		}
		/* Full: the oldest pending handshake makes room, so stalled peers can
		 * delay newcomers by at most a handshake, never lock them out. */
		if (pending >= s->ctx->conf.max_handshakes && oldest != SIZE_MAX) {
			char d[64];
			snprintf(d, sizeof(d), "pending=%zu max=%u", pending, s->ctx->conf.max_handshakes);
			link_end(s->links[oldest], "handshake_limit", true, d);
		}
		if (dp_link_accept(s->ctx, fd, now, &l) == 0 && dp_link_set_add(s, l) != 0)
			dp_link_free(l);
	}
}

int dp_link_set_run(dp_link_set_t *s, int timeout_ms)
{
	uint64_t now = vp_time_mono_ns() / 1000000u, next = UINT64_MAX;
	size_t np = 0, base;
	int served = 0, r;

	if (s->pfd_cap < s->n + 2) {
		size_t cap = (s->n + 2) * 2;
		struct pollfd *p = realloc(s->pfd, cap * sizeof(*p));
		if (!p)
			return VP_ENOMEM;
		s->pfd = p;
		s->pfd_cap = cap;
	}
	if (s->listen_fd >= 0)
		s->pfd[np++] = (struct pollfd){ s->listen_fd, POLLIN, 0 };
	if (s->wake_fd > 0)
		s->pfd[np++] = (struct pollfd){ s->wake_fd, POLLIN, 0 };
	base = np;
	for (size_t i = 0; i < s->n; i++) {
		dp_link_t *l = s->links[i];
		uint64_t d = dp_link_deadline(l);
		s->pfd[np++] = (struct pollfd){ l->fd, dp_link_events(l), 0 };
		if (d < next)
			next = d;
		if (dp_link_has_pending(l) || l->state == DP_LINK_CLOSED)
			next = now;
	}
	if (next != UINT64_MAX) {
		uint64_t wait = next > now ? next - now : 0;
		if (timeout_ms < 0 || wait < (uint64_t)timeout_ms)
			timeout_ms = (int)wait;
	}
	r = poll(s->pfd, np, timeout_ms);
	if (r < 0 && errno != EINTR)
		return VP_EIO;
	if (s->wake_fd > 0 && r > 0 && (s->pfd[base - 1].revents & POLLIN)) {
		uint64_t v;
		if (read(s->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			return VP_EIO;
	}
	now = vp_time_mono_ns() / 1000000u;
	/* Links first (the listener may append to the array). */
	s->rot = s->n ? (s->rot + 1) % s->n : 0;
	for (size_t k = 0, n0 = s->n; k < n0; k++) {
		size_t i = (k + s->rot) % n0;
		dp_link_t *l = s->links[i];
		short rev = i + base < np ? s->pfd[i + base].revents : 0;
		if (rev || dp_link_has_pending(l) || now >= dp_link_deadline(l) || l->state == DP_LINK_CLOSED) {
			served++;
			if (l->state != DP_LINK_CLOSED)
				link_io(l, now, set_msg, set_room, s);
		}
		if (l->state == DP_LINK_UP && !l->announced) {
			l->announced = true;
			if (s->cb.on_up)
				s->cb.on_up(s->cb.arg, l);
			link_io(l, now, set_msg, set_room, s); /* frames that came with the handshake's last flight */
		}
	}
	for (size_t i = 0; i < s->n;) {
		dp_link_t *l = s->links[i];
		if (l->state != DP_LINK_CLOSED) {
			i++;
			continue;
		}
		if (s->cb.on_down)
			s->cb.on_down(s->cb.arg, l, l->reason);
		dp_link_free(l);
		s->links[i] = s->links[--s->n];
	}
	if (s->listen_fd >= 0 && (s->pfd[0].revents & POLLIN)) {
		accept_some(s, now);
		served++;
	}
	return served;
}
