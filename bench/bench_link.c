/*
 * bench/bench_link.c - overlay links and signatures on one core, each figure
 * against a baseline measured in the same run:
 *
 *   link_setup       dp_link connect + accept on 127.0.0.1 (TCP, TLS 1.3
 *                    mutual authentication, the overlay certificate checks and
 *                    Node-ID binding, close); the client certificate is a new
 *                    one each time (two identities alternate over a one-entry
 *                    cache), so every setup verifies a chain.  Baseline: a bare
 *                    OpenSSL loop with the same certificates, OpenSSL's own
 *                    chain verification, same socket handling.
 *   msg_sign_verify  a Ping signed (rl_msg_encode_signed) then decoded and
 *                    verified as a destination does (dp_cert_msg_verify: cached
 *                    signer, signer = originator).  Baseline: EVP_DigestSign +
 *                    EVP_DigestVerify (ECDSA P-256, SHA-256) of the same bytes.
 *   link_relay       a 700-byte framed message sent A -> B, relayed by B back
 *                    to A (header decode, via appended, copied, re-framed) over
 *                    TLS links.  Baseline: the same bytes over bare TLS, echoed
 *                    by B (SSL_read -> SSL_write), no framing.
 *
 *   bench_link [SECONDS_PER_FIGURE]   (default 2)
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "bench/support/bench_ident.h"
#include "common/clock.h"
#include "common/log.h"
#include "dataplane/cert.h"
#include "dataplane/link.h"
#include "dataplane/reload.h"

#define OVERLAY "vipr.example"

static _Noreturn void die(const char *what)
{
	fprintf(stderr, "bench_link: %s\n", what);
	exit(1);
}

static double now_s(void)
{
	return (double)vp_time_mono_ns() / 1e9;
}

/* ---- a throw-away overlay PKI: control/node/ca.h issues as vipr-enroll does (docs/protocol.md §9.1) ---- */

typedef bench_ident_t ident_t;

static void make_ident(const ca_t *ca, ident_t *o)
{
	if (bench_ident_issue(ca, "bench@link.example", o))
		die("certificate");
}

static ca_t *g_ca; /* the overlay CA (control/node/ca.h, as vipr-enroll issues) */
static ident_t srv, cli[2];

static void print_fig(const char *name, double v, double base, const char *unit)
{
	printf("%s %.0f %s (baseline %.0f %s, ratio %.3fx)\n", name, v, unit, base, unit, v / base);
	fflush(stdout);
}

/* ---- link setups ----------------------------------------------------------- */

static dp_cert_store_t *store(uint32_t cache)
{
	dp_cert_store_cfg_t c = { OVERLAY, cache, NULL };
	dp_cert_store_t *s;
	if (dp_cert_store_new(&c, &s) || dp_cert_store_add_root(s, ca_cert(g_ca)))
		die("store");
	return s;
}

static double ours_setups(double secs)
{
	dp_link_conf_t conf;
	dp_cert_store_t *ss = store(1), *cs = store(1);
	dp_link_ctx_t *sctx, *cctx[2];
	dp_link_ident_t si = { srv.cert, srv.key, NULL }, ci0 = { cli[0].cert, cli[0].key, NULL },
	                ci1 = { cli[1].cert, cli[1].key, NULL };
	struct sockaddr_storage sa;
	socklen_t sl;
	char addr[32];
	uint16_t port;
	int lfd;
	uint64_t n = 0;
	double t0, t;

	dp_link_conf_default(&conf);
	if (dp_link_ctx_new(&conf, ss, &si, &sctx) || dp_link_ctx_new(&conf, cs, &ci0, &cctx[0]) ||
	    dp_link_ctx_new(&conf, cs, &ci1, &cctx[1]) || dp_link_listen("127.0.0.1:0", 512, &lfd, &port))
		die("link ctx");
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
	dp_link_addr_parse(addr, &sa, &sl);
	t0 = now_s();
	do {
		dp_link_t *c, *s = NULL;
		uint64_t ms = vp_time_mono_ns() / 1000000u;
		int fd;
		if (dp_link_connect(cctx[n & 1], (struct sockaddr *)&sa, sl, &srv.id, ms, &c))
			die("connect");
		while (dp_link_state(c) != DP_LINK_UP || !s || dp_link_state(s) != DP_LINK_UP) {
			dp_link_io(c, ms, NULL, NULL);
			if (!s && (fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0 && dp_link_accept(sctx, fd, ms, &s))
				die("accept");
			if (s)
				dp_link_io(s, ms, NULL, NULL);
			if (dp_link_state(c) == DP_LINK_CLOSED || (s && dp_link_state(s) == DP_LINK_CLOSED))
				die("link refused");
		}
		dp_link_free(c);
		dp_link_free(s);
		n++;
		t = now_s();
	} while (t - t0 < secs);
	close(lfd);
	dp_link_ctx_free(sctx);
	dp_link_ctx_free(cctx[0]);
	dp_link_ctx_free(cctx[1]);
	dp_cert_store_free(ss);
	dp_cert_store_free(cs);
	return (double)n / (t - t0);
}

static SSL_CTX *bare_ctx(const ident_t *id)
{
	SSL_CTX *c = SSL_CTX_new(TLS_method());
	if (!c || SSL_CTX_use_certificate(c, id->cert) != 1 || SSL_CTX_use_PrivateKey(c, id->key) != 1)
		die("bare ctx");
	X509_STORE_add_cert(SSL_CTX_get_cert_store(c), ca_cert(g_ca));
	SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(c, SSL_OP_NO_TICKET);
	SSL_CTX_set_num_tickets(c, 0);
	return c;
}

static int tcp_pair(int lfd, const struct sockaddr_storage *sa, socklen_t sl, int *cfd, int *sfd)
{
	*cfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (*cfd < 0 || (connect(*cfd, (const struct sockaddr *)sa, sl) && errno != EINPROGRESS))
		return -1;
	do
		*sfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	while (*sfd < 0 && errno == EAGAIN);
	return *sfd < 0 ? -1 : 0;
}

static void bare_handshake(SSL *c, SSL *s)
{
	int dc = 0, ds = 0;
	while (!dc || !ds) {
		if (!dc) {
			int r = SSL_do_handshake(c);
			if (r == 1)
				dc = 1;
			else if (SSL_get_error(c, r) != SSL_ERROR_WANT_READ && SSL_get_error(c, r) != SSL_ERROR_WANT_WRITE)
				die("bare handshake (client)");
		}
		if (!ds) {
			int r = SSL_do_handshake(s);
			if (r == 1)
				ds = 1;
			else if (SSL_get_error(s, r) != SSL_ERROR_WANT_READ && SSL_get_error(s, r) != SSL_ERROR_WANT_WRITE)
				die("bare handshake (server)");
		}
	}
}

static double bare_setups(double secs)
{
	SSL_CTX *sc = bare_ctx(&srv), *cc[2] = { bare_ctx(&cli[0]), bare_ctx(&cli[1]) };
	struct sockaddr_storage sa;
	socklen_t sl;
	char addr[32];
	uint16_t port;
	int lfd;
	uint64_t n = 0;
	double t0, t;

	if (dp_link_listen("127.0.0.1:0", 512, &lfd, &port))
		die("listen");
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
	dp_link_addr_parse(addr, &sa, &sl);
	t0 = now_s();
	do {
		int cfd, sfd;
		SSL *c, *s;
		if (tcp_pair(lfd, &sa, sl, &cfd, &sfd))
			die("tcp pair");
		c = SSL_new(cc[n & 1]);
		s = SSL_new(sc);
		SSL_set_fd(c, cfd);
		SSL_set_fd(s, sfd);
		SSL_set_connect_state(c);
		SSL_set_accept_state(s);
		bare_handshake(c, s);
		SSL_shutdown(c);
		SSL_free(c);
		SSL_free(s);
		close(cfd);
		close(sfd);
		n++;
		t = now_s();
	} while (t - t0 < secs);
	close(lfd);
	SSL_CTX_free(sc);
	SSL_CTX_free(cc[0]);
	SSL_CTX_free(cc[1]);
	return (double)n / (t - t0);
}

/* ---- sign + verify ------------------------------------------------------------ */

static size_t ping(uint8_t *buf, size_t cap, uint64_t txid, uint8_t *sig)
{
	rl_dest_t d = rl_dest_node(&srv.id);
	rl_message_t m;
	rl_body_t b;
	vp_wr_t wr;
	memset(&m, 0, sizeof(m));
	memset(&b, 0, sizeof(b));
	b.code = RL_PING_REQ;
	b.u.ping_req.padding = (rl_bytes_t){ (const uint8_t *)"0123456789abcdef", 16 };
	m.hdr.overlay = rl_overlay_id(OVERLAY, strlen(OVERLAY));
	m.hdr.version = RL_VERSION;
	m.hdr.ttl = RL_DEFAULT_TTL;
	m.hdr.fragment = RL_FRAG_UNFRAGMENTED;
	m.hdr.txid = txid;
	m.hdr.dest.items = &d;
	m.hdr.dest.n_items = 1;
	m.contents.code = b.code;
	m.contents.body_st = &b;
	m.sec.certs.items = &cli[0].rlcert;
	m.sec.certs.n_items = 1;
	vp_wr_init(&wr, buf, cap);
	if (rl_msg_encode_signed(&wr, &m, cli[0].key, &cli[0].signer, sig, RL_MAX_SIG_LEN))
		die("sign");
	return vp_wr_len(&wr);
}

static void sign_verify(double secs)
{
	dp_cert_store_t *s = store(0);
	uint8_t buf[4096], sig[RL_MAX_SIG_LEN];
	uint64_t n = 0;
	double t0 = now_s(), t, ours, base;
	size_t len = 0;

	do {
		rl_message_t m;
		const dp_cert_ident_t *signer;
		dp_cert_reason_t why;
		uint64_t c0 = vp_time_thread_cpu_ns();
		(void)c0;
		len = ping(buf, sizeof(buf), n + 1, sig);
		if (rl_msg_decode(buf, len, &m) || dp_cert_msg_verify(s, &m, &cli[0].id, &signer, &why))
			die("verify");
		n++;
		t = now_s();
	} while (t - t0 < secs);
	ours = (double)n / (t - t0);
	/* baseline: the same number of bytes, bare EVP */
	n = 0;
	t0 = now_s();
	do {
		EVP_MD_CTX *c = EVP_MD_CTX_new();
		size_t sl = sizeof(sig);
		if (EVP_DigestSignInit(c, NULL, EVP_sha256(), NULL, cli[0].key) != 1 ||
		    EVP_DigestSign(c, sig, &sl, buf, len) != 1)
			die("bare sign");
		EVP_MD_CTX_reset(c);
		if (EVP_DigestVerifyInit(c, NULL, EVP_sha256(), NULL, cli[0].key) != 1 ||
		    EVP_DigestVerify(c, sig, sl, buf, len) != 1)
			die("bare verify");
		EVP_MD_CTX_free(c);
		n++;
		t = now_s();
	} while (t - t0 < secs);
	base = (double)n / (t - t0);
	printf("# signed Ping: %zu bytes with the signer's certificate; ECDSA P-256 / SHA-256\n", len);
	print_fig("msg_sign_verify", ours, base, "msg/s");
	dp_cert_store_free(s);
}

/* ---- relay ----------------------------------------------------------------------- */

typedef struct relay {
	dp_link_t *back; /* B's link to A */
	uint64_t got;    /* at A */
	uint8_t out[8192];
} relay_t;

static void at_b(void *arg, dp_link_t *l, const uint8_t *msg, size_t len)
{
	relay_t *r = arg;
	rl_fwd_header_t h;
	const vp_id_t *ids;
	uint32_t n;
	rl_dest_t via;
	vp_wr_t wr;
	ids = dp_link_peer_ids(l, &n);
	via = rl_dest_node(&ids[0]);
	if (rl_fwd_header_decode(msg, len, &h))
		die("relay decode");
	vp_wr_init(&wr, r->out, sizeof(r->out));
	if (rl_fwd_copy(&wr, msg, len, &h, &via, false) || dp_link_send(r->back, r->out, vp_wr_len(&wr)))
		die("relay send");
}

static void at_a(void *arg, dp_link_t *l, const uint8_t *msg, size_t len)
{
	relay_t *r = arg;
	(void)l;
	(void)msg;
	(void)len;
	r->got++;
}

#define WINDOW 32 /* messages in flight */

static double ours_relay(const uint8_t *msg, size_t len, double secs)
{
	dp_link_conf_t conf;
	dp_cert_store_t *sa_ = store(0), *sb = store(0);
	dp_link_ctx_t *ca, *cb;
	dp_link_ident_t ia = { cli[0].cert, cli[0].key, NULL }, ib = { srv.cert, srv.key, NULL };
	struct sockaddr_storage sa;
	socklen_t sl;
	char addr[32];
	uint16_t port;
	int lfd, fd = -1;
	dp_link_t *a, *b = NULL;
	relay_t r = { 0 };
	uint64_t sent = 0;
	double t0, t;

	dp_link_conf_default(&conf);
	if (dp_link_ctx_new(&conf, sa_, &ia, &ca) || dp_link_ctx_new(&conf, sb, &ib, &cb) ||
	    dp_link_listen("127.0.0.1:0", 16, &lfd, &port))
		die("relay setup");
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
	dp_link_addr_parse(addr, &sa, &sl);
	if (dp_link_connect(ca, (struct sockaddr *)&sa, sl, NULL, 0, &a))
		die("connect");
	while (dp_link_state(a) != DP_LINK_UP || !b || dp_link_state(b) != DP_LINK_UP) {
		dp_link_io(a, 0, NULL, NULL);
		if (!b && (fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0 && dp_link_accept(cb, fd, 0, &b))
			die("accept");
		if (b)
			dp_link_io(b, 0, NULL, NULL);
	}
	r.back = b;
	t0 = now_s();
	do {
		while (sent - r.got < WINDOW && dp_link_send(a, msg, len) == 0)
			sent++;
		dp_link_io(b, 0, at_b, &r);
		dp_link_io(a, 0, at_a, &r);
		t = now_s();
	} while (t - t0 < secs);
	dp_link_free(a);
	dp_link_free(b);
	close(lfd);
	dp_link_ctx_free(ca);
	dp_link_ctx_free(cb);
	dp_cert_store_free(sa_);
	dp_cert_store_free(sb);
	return (double)r.got / (t - t0);
}

static double bare_relay(const uint8_t *msg, size_t len, double secs)
{
	SSL_CTX *sc = bare_ctx(&srv), *cc = bare_ctx(&cli[0]);
	struct sockaddr_storage sa;
	socklen_t sl;
	char addr[32];
	uint16_t port;
	int lfd, cfd, sfd;
	SSL *c, *s;
	uint64_t sent = 0, got = 0;
	uint8_t buf[65536];
	size_t pend_b = 0, acc_a = 0;
	double t0, t;

	if (dp_link_listen("127.0.0.1:0", 16, &lfd, &port))
		die("listen");
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
	dp_link_addr_parse(addr, &sa, &sl);
	if (tcp_pair(lfd, &sa, sl, &cfd, &sfd))
		die("pair");
	c = SSL_new(cc);
	s = SSL_new(sc);
	SSL_set_fd(c, cfd);
	SSL_set_fd(s, sfd);
	SSL_set_connect_state(c);
	SSL_set_accept_state(s);
	bare_handshake(c, s);
	t0 = now_s();
	do {
		int n;
		while (sent - got < WINDOW && SSL_write(c, msg, (int)len) > 0)
			sent++;
		/* B: echo whatever arrives */
		while ((n = SSL_read(s, buf, sizeof(buf))) > 0) {
			if (SSL_write(s, buf, n) != n)
				die("echo");
			pend_b += (size_t)n;
		}
		while ((n = SSL_read(c, buf, sizeof(buf))) > 0) {
			acc_a += (size_t)n;
			got = acc_a / len;
		}
		t = now_s();
	} while (t - t0 < secs);
	(void)pend_b;
	SSL_free(c);
	SSL_free(s);
	close(cfd);
	close(sfd);
	close(lfd);
	SSL_CTX_free(sc);
	SSL_CTX_free(cc);
	return (double)got / (t - t0);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: bench_link [SECONDS_PER_FIGURE]   (default 2)\n"
	           "\n"
	           "Overlay links and signatures on one core, each against a bare OpenSSL baseline\n"
	           "in the same run: link_setup (TLS 1.3 mutual authentication, chain and Node-ID\n"
	           "checks), msg_sign_verify (signed Ping encode, decode, verify) and link_relay\n"
	           "(700-byte framed messages relayed over TLS links), on 127.0.0.1.\n"
	           "\n"
	           "  -h, --help   this text\n");
}

int main(int argc, char **argv)
{
	double secs;
	uint8_t msg[4096], sig[RL_MAX_SIG_LEN];
	size_t len;

	if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		usage(stdout);
		return 0;
	}
	secs = argc > 1 ? atof(argv[1]) : 2.0;
	if (argc > 2 || secs <= 0) {
		usage(stderr);
		return 2;
	}
	vp_log_setup(VP_LOG_WARN, stderr);
	if (ca_create(OVERLAY, CA_KEY_EC_P256, 86400, &g_ca))
		die("overlay CA");
	make_ident(g_ca, &srv);
	make_ident(g_ca, &cli[0]);
	make_ident(g_ca, &cli[1]);

	printf("# one core; TLS 1.3, ECDSA P-256 certificates, 127.0.0.1\n");
	print_fig("link_setup", ours_setups(secs), bare_setups(secs), "links/s");
	sign_verify(secs);
	len = ping(msg, sizeof(msg), 7, sig);
	/* pad to a ViPR Store's size: the Ping padding is opaque */
	{
		rl_dest_t d = rl_dest_node(&srv.id);
		static uint8_t pad[500];
		rl_message_t m;
		rl_body_t b;
		vp_wr_t wr;
		memset(&m, 0, sizeof(m));
		memset(&b, 0, sizeof(b));
		b.code = RL_PING_REQ;
		b.u.ping_req.padding = (rl_bytes_t){ pad, sizeof(pad) };
		m.hdr.overlay = rl_overlay_id(OVERLAY, strlen(OVERLAY));
		m.hdr.version = RL_VERSION;
		m.hdr.ttl = RL_DEFAULT_TTL;
		m.hdr.fragment = RL_FRAG_UNFRAGMENTED;
		m.hdr.txid = 9;
		m.hdr.dest.items = &d;
		m.hdr.dest.n_items = 1;
		m.contents.code = b.code;
		m.contents.body_st = &b;
		vp_wr_init(&wr, msg, sizeof(msg));
		if (rl_msg_encode_signed(&wr, &m, cli[0].key, &cli[0].signer, sig, sizeof(sig)))
			die("relay message");
		len = vp_wr_len(&wr);
	}
	printf("# relayed message: %zu bytes, %d in flight\n", len, WINDOW);
	print_fig("link_relay", ours_relay(msg, len, secs), bare_relay(msg, len, secs), "msg/s");
	return 0;
}
