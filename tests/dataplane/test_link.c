/*
 * dataplane/link: two and three nodes on loopback (127.0.0.1), real TLS, the
 * real framing codec, pumped from one thread.  Each refusal case checks its
 * one log line and that the refusing node still serves a well-behaved peer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "common/clock.h"
#include "dataplane/cert.h"
#include "dataplane/io.h"
#include "dataplane/link.h"
#include "link_testkit.h"
#include "pki_testkit.h"

static pk_ca_t ca, other_ca;
static pk_node_t id_a, id_b, id_c; /* 0xA1, 0xB1, 0xC1 */

static const pk_opts_t good = { LT_OVERLAY, -60, 3600, 0, 0, 0 };

static int setup(void **state)
{
	vp_id_t a = pk_id(0xA1), b = pk_id(0xB1), c = pk_id(0xC1);
	(void)state;
	lt_log_start();
	if (pk_ca_new(&ca, "overlay root") || pk_ca_new(&other_ca, "another root"))
		return -1;
	if (pk_node_new(&id_a, &ca, &a, 1, &good) || pk_node_new(&id_b, &ca, &b, 1, &good) ||
	    pk_node_new(&id_c, &ca, &c, 1, &good))
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	lt_log_dump();
	pk_node_free(&id_a);
	pk_node_free(&id_b);
	pk_node_free(&id_c);
	pk_ca_free(&ca);
	pk_ca_free(&other_ca);
	return 0;
}

typedef struct two {
	lt_node_t *a, *b;
	int want_ups_a, want_ups_b;
	size_t want_msgs_b, want_msgs_a;
	int want_downs_a, want_downs_b;
} two_t;

static bool ups(void *arg)
{
	two_t *t = arg;
	return t->a->ups >= t->want_ups_a && t->b->ups >= t->want_ups_b;
}

static bool msgs(void *arg)
{
	two_t *t = arg;
	return t->b->n_msgs >= t->want_msgs_b && t->a->n_msgs >= t->want_msgs_a;
}

static bool downs(void *arg)
{
	two_t *t = arg;
	return t->a->downs >= t->want_downs_a && t->b->downs >= t->want_downs_b;
}

static rl_body_t ping(const char *pad)
{
	rl_body_t b;
	memset(&b, 0, sizeof(b));
	b.code = RL_PING_REQ;
	b.u.ping_req.padding = (rl_bytes_t){ (const uint8_t *)pad, (uint32_t)strlen(pad) };
	return b;
}

/* A good peer can still link to `b` (the refusing node keeps serving). */
static void still_serves(lt_node_t *b)
{
	lt_node_t g;
	two_t t = { &g, b, 1, 0, 0, 0, 0, 0 };
	lt_node_t *all[2] = { &g, b };
	int before = b->ups;
	lt_node_init(&g, "good", &ca, &id_c, NULL, false);
	lt_connect(&g, b, NULL);
	t.want_ups_b = before + 1;
	assert_true(lt_pump(all, 2, 5000, ups, &t));
	lt_node_fini(&g);
}

static void link_up_bound_to_node_ids_and_exchanges_frames(void **state)
{
	lt_node_t a, b;
	lt_node_t *all[2] = { &a, &b };
	two_t t = { &a, &b, 1, 1, 0, 0, 0, 0 };
	vp_id_t ida = pk_id(0xA1), idb = pk_id(0xB1);
	uint8_t buf[4096];
	dp_link_t *la, *lb;
	const vp_id_t *ids;
	uint32_t n;
	uint64_t data_rx, acks_rx;
	rl_body_t p = ping("hello");
	size_t len;
	rl_message_t m;
	(void)state;

	lt_node_init(&a, "a", &ca, &id_a, NULL, false);
	lt_node_init(&b, "b", &ca, &id_b, NULL, true);
	la = lt_connect(&a, &b, &idb);
	assert_true(lt_pump(all, 2, 5000, ups, &t));
	assert_int_equal(dp_link_state(la), DP_LINK_UP);
	assert_string_equal(dp_link_tls_version(la), "TLSv1.3");
	ids = dp_link_peer_ids(la, &n);
	assert_int_equal(n, 1);
	assert_memory_equal(ids[0].b, idb.b, 16);
	lb = dp_link_set_find(b.set, &ida);
	assert_non_null(lb);
	assert_false(dp_link_is_client(lb));

	/* a -> b and b -> a: signed RELOAD messages, decoded as sent */
	len = pk_sign_msg(buf, sizeof(buf), &id_a, &id_a, NULL, 0, &idb, &p, 0x1111);
	assert_int_equal(dp_link_send(la, buf, len), 0);
	len = pk_sign_msg(buf, sizeof(buf), &id_a, &id_a, NULL, 0, &idb, &p, 0x2222);
	assert_int_equal(dp_link_send(la, buf, len), 0);
	p = ping("back");
	len = pk_sign_msg(buf, sizeof(buf), &id_b, &id_b, NULL, 0, &ida, &p, 0x3333);
	assert_int_equal(dp_link_send(lb, buf, len), 0);
	t.want_msgs_b = 2;
	t.want_msgs_a = 1;
	assert_true(lt_pump(all, 2, 5000, msgs, &t));
	assert_int_equal(rl_msg_decode(b.msgs[0], b.lens[0], &m), 0);
	assert_int_equal(m.hdr.txid, 0x1111);
	assert_int_equal(rl_msg_decode(b.msgs[1], b.lens[1], &m), 0);
	assert_int_equal(m.hdr.txid, 0x2222);
	assert_int_equal(rl_msg_decode(a.msgs[0], a.lens[0], &m), 0);
	assert_int_equal(m.hdr.txid, 0x3333);
	assert_ptr_equal(b.from[0], lb);
	/* every DATA frame is acknowledged */
	lt_pump(all, 2, 200, NULL, NULL);
	dp_link_counts(la, &data_rx, &acks_rx);
	assert_int_equal(data_rx, 1);
	assert_int_equal(acks_rx, 2);

	/* clean close: the other side sees close_notify */
	{
		long mark = lt_log_mark();
		const char *const nd[] = { "event=link_down", "reason=peer_closed", NULL };
		dp_link_close(la);
		t.want_downs_a = 1;
		t.want_downs_b = 1;
		assert_true(lt_pump(all, 2, 5000, downs, &t));
		assert_string_equal(b.last_down, "peer_closed");
		assert_int_equal(lt_log_count(mark, nd), 1);
	}
	lt_node_fini(&a);
	lt_node_fini(&b);
}

/* `client` connects to a node with identity id_b; the server refuses with `reason`. */
static void refused_by_server(const pk_node_t *client, const char *reason, const vp_id_t *bad)
{
	lt_node_t a, b;
	lt_node_t *all[2] = { &a, &b };
	two_t t = { &a, &b, 0, 0, 0, 0, 1, 1 };
	char want[64];
	const char *const nd[] = { "event=link_refused", "role=server", want, NULL };
	const char *const any_up[] = { "event=link_up", "role=server", NULL };
	long mark;

	snprintf(want, sizeof(want), "reason=%s ", reason);
	lt_node_init(&a, "a", &ca, client, NULL, false);
	lt_node_init(&b, "b", &ca, &id_b, NULL, true);
	if (bad)
		assert_int_equal(dp_cert_store_set_bad_nodes(b.certs, bad, 1), 0);
	mark = lt_log_mark();
	lt_connect(&a, &b, NULL);
	assert_true(lt_pump(all, 2, 5000, downs, &t));
	/* TLS 1.3: the client finishes before the server has checked its certificate; the server never admits it */
	assert_int_equal(b.ups, 0);
	assert_int_equal(lt_log_count(mark, nd), 1);
	assert_int_equal(lt_log_count(mark, any_up), 0);
	assert_string_equal(b.last_down, reason);
	still_serves(&b);
	lt_node_fini(&a);
	lt_node_fini(&b);
}

static void certificate_from_another_ca_is_refused(void **state)
{
	pk_node_t rogue;
	vp_id_t id = pk_id(0xA1);
	(void)state;
	assert_int_equal(pk_node_new(&rogue, &other_ca, &id, 1, &good), 0);
	refused_by_server(&rogue, "cert_untrusted", NULL);
	pk_node_free(&rogue);
}

static void expired_certificate_is_refused(void **state)
{
	pk_node_t old;
	pk_opts_t o = good;
	vp_id_t id = pk_id(0xA1);
	(void)state;
	o.not_before_s = -7200;
	o.not_after_s = -60;
	assert_int_equal(pk_node_new(&old, &ca, &id, 1, &o), 0);
	refused_by_server(&old, "cert_expired", NULL);
	pk_node_free(&old);
}

static void not_yet_valid_certificate_is_refused(void **state)
{
	pk_node_t young;
	pk_opts_t o = good;
	vp_id_t id = pk_id(0xA1);
	(void)state;
	o.not_before_s = 3600;
	o.not_after_s = 7200;
	assert_int_equal(pk_node_new(&young, &ca, &id, 1, &o), 0);
	refused_by_server(&young, "cert_not_yet_valid", NULL);
	pk_node_free(&young);
}

static void revoked_node_is_refused(void **state)
{
	vp_id_t bad = pk_id(0xA1);
	(void)state;
	refused_by_server(&id_a, "cert_revoked", &bad);
}

static void client_refuses_server_of_another_ca_and_wrong_node(void **state)
{
	lt_node_t a, b;
	lt_node_t *all[2] = { &a, &b };
	two_t t = { &a, &b, 0, 0, 0, 0, 1, 1 };
	pk_node_t rogue;
	vp_id_t id = pk_id(0xB1), other = pk_id(0x99);
	const char *const nd[] = { "event=link_refused", "role=client", "reason=cert_untrusted ", NULL };
	const char *const mm[] = { "event=link_refused", "role=client", "reason=peer_mismatch ", NULL };
	long mark;
	(void)state;

	assert_int_equal(pk_node_new(&rogue, &other_ca, &id, 1, &good), 0);
	lt_node_init(&a, "a", &ca, &id_a, NULL, false);
	lt_node_init(&b, "b", &other_ca, &rogue, NULL, true);
	mark = lt_log_mark();
	lt_connect(&a, &b, &id);
	assert_true(lt_pump(all, 2, 5000, downs, &t));
	assert_int_equal(lt_log_count(mark, nd), 1);
	lt_node_fini(&b);
	/* a genuine node, but not the one we attached to */
	lt_node_init(&b, "b", &ca, &id_b, NULL, true);
	t.want_downs_a = a.downs + 1;
	t.want_downs_b = 1;
	mark = lt_log_mark();
	lt_connect(&a, &b, &other);
	assert_true(lt_pump(all, 2, 5000, downs, &t));
	assert_int_equal(lt_log_count(mark, mm), 1);
	assert_int_equal(a.ups, 0);
	lt_node_fini(&a);
	lt_node_fini(&b);
	pk_node_free(&rogue);
}

static int raw_connect(uint16_t port)
{
	struct sockaddr_in sa = { 0 };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	sa.sin_family = AF_INET;
	sa.sin_port = htons(port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static bool one_down(void *arg)
{
	lt_node_t *n = arg;
	return n->downs >= 1;
}

static void garbage_before_handshake_is_refused(void **state)
{
	lt_node_t b;
	lt_node_t *all[1] = { &b };
	const char *const nd[] = { "event=link_refused", "role=server", "reason=tls_handshake ", NULL };
	static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	long mark;
	int fd;
	(void)state;

	lt_node_init(&b, "b", &ca, &id_b, NULL, true);
	mark = lt_log_mark();
	fd = raw_connect(b.port);
	assert_int_equal(write(fd, http, sizeof(http) - 1), (ssize_t)(sizeof(http) - 1));
	assert_true(lt_pump(all, 1, 5000, one_down, &b));
	assert_int_equal(lt_log_count(mark, nd), 1);
	close(fd);
	still_serves(&b);
	lt_node_fini(&b);
}

static void garbage_after_handshake_is_refused(void **state)
{
	lt_node_t a, b;
	lt_node_t *all[2] = { &a, &b };
	two_t t = { &a, &b, 1, 1, 0, 0, 0, 1 };
	const char *const nd[] = { "event=link_refused", "role=server", "reason=tls_error ", NULL };
	static const uint8_t junk[64] = { 0x17, 0x03, 0x03, 0x00, 0x3b, 0xde, 0xad };
	dp_link_t *la;
	long mark;
	(void)state;

	lt_node_init(&a, "a", &ca, &id_a, NULL, false);
	lt_node_init(&b, "b", &ca, &id_b, NULL, true);
	la = lt_connect(&a, &b, NULL);
	assert_true(lt_pump(all, 2, 5000, ups, &t));
	mark = lt_log_mark();
	/* bytes that are not a record of this TLS session, straight on the socket */
	assert_int_equal(write(dp_link_fd(la), junk, sizeof(junk)), (ssize_t)sizeof(junk));
	assert_true(lt_pump(all, 2, 5000, downs, &t));
	assert_int_equal(lt_log_count(mark, nd), 1);
	still_serves(&b);
	lt_node_fini(&a);
	lt_node_fini(&b);
}

/* A TLS client under the test's control (a node with a valid certificate that misbehaves inside TLS). */
typedef struct raw_tls {
	SSL_CTX *ctx;
	SSL *ssl;
	int fd;
} raw_tls_t;

static void raw_tls_open(raw_tls_t *r, lt_node_t *server, const pk_node_t *id)
{
	lt_node_t *all[1] = { server };
	uint64_t end = vp_time_mono_ns() / 1000000u + 5000;
	int fl;
	r->ctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(r->ctx);
	assert_int_equal(SSL_CTX_use_certificate(r->ctx, id->cert), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey(r->ctx, id->key), 1);
	r->fd = raw_connect(server->port);
	fl = fcntl(r->fd, F_GETFL);
	fcntl(r->fd, F_SETFL, fl | O_NONBLOCK);
	r->ssl = SSL_new(r->ctx);
	SSL_set_fd(r->ssl, r->fd);
	for (;;) {
		int x = SSL_connect(r->ssl);
		if (x == 1)
			break;
		x = SSL_get_error(r->ssl, x);
		assert_true(x == SSL_ERROR_WANT_READ || x == SSL_ERROR_WANT_WRITE);
		assert_true(vp_time_mono_ns() / 1000000u < end);
		lt_pump(all, 1, 5, NULL, NULL);
	}
	/* the server finishes its side */
	lt_pump(all, 1, 100, NULL, NULL);
}

static void raw_tls_close(raw_tls_t *r)
{
	SSL_free(r->ssl);
	SSL_CTX_free(r->ctx);
	close(r->fd);
}

static void framed_garbage(const uint8_t *bytes, size_t n, const char *reason)
{
	lt_node_t b;
	lt_node_t *all[1] = { &b };
	raw_tls_t r;
	char want[64];
	const char *const nd[] = { "event=link_refused", "role=server", want, NULL };
	long mark;

	snprintf(want, sizeof(want), "reason=%s ", reason);
	lt_node_init(&b, "b", &ca, &id_b, NULL, true);
	raw_tls_open(&r, &b, &id_a);
	assert_int_equal(b.ups, 1);
	mark = lt_log_mark();
	assert_int_equal(SSL_write(r.ssl, bytes, (int)n), (int)n);
	assert_true(lt_pump(all, 1, 5000, one_down, &b));
	assert_int_equal(lt_log_count(mark, nd), 1);
	assert_int_equal(b.n_msgs, 0);
	raw_tls_close(&r);
	still_serves(&b);
	lt_node_fini(&b);
}

static void oversize_frame_is_refused(void **state)
{
	/* DATA, sequence 1, length 65,537: one byte over RL_MAX_MESSAGE_SIZE, refused before it is read */
	static const uint8_t hdr[8] = { 0x80, 0, 0, 0, 1, 0x01, 0x00, 0x01 };
	(void)state;
	framed_garbage(hdr, sizeof(hdr), "frame_too_big");
}

static void unknown_frame_type_is_refused(void **state)
{
	static const uint8_t junk[16] = { 0x42, 1, 2, 3, 4, 5, 6, 7 };
	(void)state;
	framed_garbage(junk, sizeof(junk), "frame_bad_type");
}

static void largest_frame_is_accepted(void **state)
{
	lt_node_t a, b;
	lt_node_t *all[2] = { &a, &b };
	two_t t = { &a, &b, 1, 1, 1, 0, 0, 0 };
	uint8_t *big = calloc(1, RL_MAX_MESSAGE_SIZE + 1);
	dp_link_t *la;
	(void)state;
	lt_node_init(&a, "a", &ca, &id_a, NULL, false);
	lt_node_init(&b, "b", &ca, &id_b, NULL, true);
	la = lt_connect(&a, &b, NULL);
	assert_true(lt_pump(all, 2, 5000, ups, &t));
	assert_int_equal(dp_link_send(la, big, RL_MAX_MESSAGE_SIZE + 1), VP_ETOOBIG);
	assert_int_equal(dp_link_send(la, big, RL_MAX_MESSAGE_SIZE), 0);
	assert_true(lt_pump(all, 2, 5000, msgs, &t));
	assert_int_equal(b.lens[0], RL_MAX_MESSAGE_SIZE);
	free(big);
	lt_node_fini(&a);
	lt_node_fini(&b);
}

static void stalled_handshakes_do_not_stop_service(void **state)
{
	enum { STALLED = 40 };
	lt_node_t b;
	lt_node_t *all[1] = { &b };
	dp_link_conf_t conf;
	int fds[STALLED];
	const char *const lim[] = { "event=link_refused", "reason=handshake_limit ", NULL };
	const char *const tmo[] = { "event=link_refused", "reason=handshake_timeout ", NULL };
	long mark;
	uint64_t t0;
	(void)state;

	dp_link_conf_default(&conf);
	conf.max_handshakes = 16; /* fewer than the attacker's connections */
	conf.handshake_timeout_ms = 1500;
	lt_node_init(&b, "b", &ca, &id_b, &conf, true);
	mark = lt_log_mark();
	for (int i = 0; i < STALLED; i++)
		fds[i] = raw_connect(b.port); /* never a byte */
	lt_pump(all, 1, 200, NULL, NULL);
	assert_int_equal(lt_log_count(mark, lim), STALLED - 16);
	assert_int_equal((int)dp_link_set_count(b.set), 16);
	/* a real peer gets through at once, well before any stalled handshake times out */
	t0 = vp_time_mono_ns() / 1000000u;
	still_serves(&b);
	assert_true(vp_time_mono_ns() / 1000000u - t0 < 1000);
	/* the stalled ones end at their deadline: bounded time, bounded count */
	lt_pump(all, 1, 2500, NULL, NULL);
	assert_int_equal(lt_log_count(mark, tmo), 15); /* 16 held, one evicted by the good peer */
	assert_int_equal((int)dp_link_set_count(b.set), 0);
	for (int i = 0; i < STALLED; i++)
		close(fds[i]);
	lt_node_fini(&b);
}

static void slow_reader_gets_back_pressure(void **state)
{
	lt_node_t a, b;
	lt_node_t *all[2] = { &a, &b };
	two_t t = { &a, &b, 1, 1, 0, 0, 0, 0 };
	dp_link_conf_t conf;
	static uint8_t msg[1024];
	dp_link_t *la;
	size_t accepted = 0, max_pending = 0;
	int e = 0;
	(void)state;

	dp_link_conf_default(&conf);
	conf.max_tx_buffer = 2 * (RL_FRAME_DATA_HDR_LEN + RL_MAX_MESSAGE_SIZE);
	lt_node_init(&a, "a", &ca, &id_a, &conf, false);
	lt_node_init(&b, "b", &ca, &id_b, NULL, true);
	la = lt_connect(&a, &b, NULL);
	assert_true(lt_pump(all, 2, 5000, ups, &t));
	/* b stops reading; a keeps sending (bounded: 200,000 messages = 200 MB) */
	for (int i = 0; i < 200000 && e == 0; i++) {
		e = dp_link_send(la, msg, sizeof(msg));
		if (e == 0)
			accepted++;
		if (dp_link_tx_pending(la) > max_pending)
			max_pending = dp_link_tx_pending(la);
		if (i % 64 == 0)
			dp_link_set_run(a.set, 0);
	}
	assert_int_equal(e, VP_EAGAIN);
	assert_true(max_pending <= conf.max_tx_buffer);
	/* the kernel took more than the link buffers: back-pressure came from the peer, not the bound alone */
	assert_true(accepted * (sizeof(msg) + 8) > 2 * conf.max_tx_buffer);
	/* b reads again: everything accepted arrives, in order, nothing lost */
	{
		uint64_t end = vp_time_mono_ns() / 1000000u + 20000;
		while (b.bytes_rx < accepted * sizeof(msg) && vp_time_mono_ns() / 1000000u < end) {
			dp_link_set_run(b.set, 0);
			dp_link_set_run(a.set, 0);
		}
	}
	assert_int_equal(b.bytes_rx, accepted * sizeof(msg));
	assert_int_equal(dp_link_send(la, msg, sizeof(msg)), 0);
	lt_node_fini(&a);
	lt_node_fini(&b);
}

/* TLS records of application data a raw peer received (record headers seen by OpenSSL's message callback). */
static void count_records(int write_p, int version, int content_type, const void *buf, size_t len, SSL *ssl,
                          void *arg)
{
	(void)version;
	(void)ssl;
	if (!write_p && content_type == SSL3_RT_HEADER && len >= 1 && ((const uint8_t *)buf)[0] == SSL3_RT_APPLICATION_DATA)
		(*(int *)arg)++;
}

/*
 * The kernel backend writes a burst to one link in as few TLS records (and write calls) as its bytes need:
 * a relay that wrote one record and one system call per message spent more CPU on them than on encryption
 * (bench/RESULTS.md, bench_relay).  A raw TLS peer counts the records of a 32-message burst.
 */
static void kernel_backend_writes_a_burst_in_few_records(void **state)
{
	enum { N = 32, LEN = 900 };
	static uint8_t msgs[N][LEN], got[N * (LEN + 16)];
	lt_node_t b;
	dp_io_conf_t conf;
	dp_io_t *io = NULL;
	dp_io_ev_t *ev;
	dp_io_out_t out[N];
	dp_link_t *l = NULL;
	SSL_CTX *ctx;
	SSL *ssl;
	int lfd, fd, records = 0, fl;
	uint16_t port;
	size_t have = 0, want = (size_t)N * (RL_FRAME_DATA_HDR_LEN + LEN);
	uint64_t end = vp_time_mono_ns() / 1000000u + 10000;
	(void)state;

	lt_node_init(&b, "b", &ca, &id_b, NULL, false);
	assert_int_equal(dp_link_listen("127.0.0.1:0", 4, &lfd, &port), 0);
	conf = (dp_io_conf_t){ .links = b.ctx, .listen_fd = lfd, .burst = 64, .max_message = 4096 };
	assert_int_equal(dp_io_kernel.open(&conf, &io), 0);

	ctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(ctx);
	assert_int_equal(SSL_CTX_use_certificate(ctx, id_a.cert), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey(ctx, id_a.key), 1);
	fd = raw_connect(port);
	fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	while (!l) {
		int x = SSL_connect(ssl), n;
		if (x != 1) {
			x = SSL_get_error(ssl, x);
			assert_true(x == SSL_ERROR_WANT_READ || x == SSL_ERROR_WANT_WRITE);
		}
		n = dp_io_kernel.recv(io, &ev, 5);
		for (int i = 0; i < n; i++)
			if (ev[i].type == DP_IO_UP)
				l = ev[i].link;
		assert_true(vp_time_mono_ns() / 1000000u < end);
	}
	/* From here on, every record the peer reads is one the backend wrote for the burst. */
	SSL_set_msg_callback(ssl, count_records);
	SSL_set_msg_callback_arg(ssl, &records);
	for (int i = 0; i < N; i++) {
		memset(msgs[i], 'a' + i % 26, LEN);
		out[i] = (dp_io_out_t){ .link = l, .msg = msgs[i], .len = LEN };
	}
	assert_int_equal(dp_io_kernel.send(io, out, N), N);
	while (have < want) {
		int n = SSL_read(ssl, got + have, (int)(sizeof(got) - have));
		if (n > 0) {
			have += (size_t)n;
			continue;
		}
		assert_int_equal(SSL_get_error(ssl, n), SSL_ERROR_WANT_READ);
		dp_io_kernel.recv(io, &ev, 1); /* the backend writes what the socket did not take yet */
		assert_true(vp_time_mono_ns() / 1000000u < end);
	}
	assert_int_equal(have, want);
	/* every message arrived, framed, in order */
	for (int i = 0; i < N; i++)
		assert_memory_equal(got + (size_t)i * (RL_FRAME_DATA_HDR_LEN + LEN) + RL_FRAME_DATA_HDR_LEN, msgs[i], LEN);
	/* 32 x 908 bytes = 29,056: two 16 KiB records (one per message before: 32) */
	assert_true(records >= 2);
	assert_true(records <= 4);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(fd);
	dp_io_kernel.close(io);
	lt_node_fini(&b);
}

static void keepalive_and_candidates(void **state)
{
	lt_node_t a, b;
	lt_node_t *all[2] = { &a, &b };
	two_t t = { &a, &b, 1, 1, 0, 0, 0, 0 };
	dp_link_conf_t conf;
	rl_ice_candidate_t cand;
	struct sockaddr_storage ss;
	socklen_t sl;
	rl_ice_list_t list = { 0 };
	vp_id_t idb = pk_id(0xB1);
	dp_link_t *la;
	char addr[32];
	int v = 0;
	socklen_t vl = sizeof(v);
	(void)state;

	dp_link_conf_default(&conf);
	conf.keepalive_s = 17;
	lt_node_init(&a, "a", &ca, &id_a, &conf, false);
	lt_node_init(&b, "b", &ca, &id_b, NULL, true);
	/* behind NAT: the configured address, not the socket's */
	snprintf(conf.advertise, sizeof(conf.advertise), "198.51.100.7:7000");
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", b.port);
	assert_int_equal(dp_link_addr_parse(addr, &ss, &sl), 0);
	assert_int_equal(dp_link_candidate(&conf, (struct sockaddr *)&ss, &cand), 0);
	assert_int_equal(cand.addr.type, RL_ADDR_IPV4);
	assert_memory_equal(cand.addr.addr, "\xc6\x33\x64\x07", 4);
	assert_int_equal(cand.addr.port, 7000);
	assert_int_equal(cand.overlay_link, RL_LINK_TLS_TCP_FH_NO_ICE);
	/* without it: the listen address; a link opens from that Attach candidate */
	conf.advertise[0] = '\0';
	assert_int_equal(dp_link_candidate(&conf, (struct sockaddr *)&ss, &cand), 0);
	assert_int_equal(cand.addr.port, b.port);
	list.items = &cand;
	list.n_items = 1;
	assert_int_equal(dp_link_connect_attach(a.ctx, &list, &idb, vp_time_mono_ns() / 1000000u, &la), 0);
	assert_int_equal(dp_link_set_add(a.set, la), 0);
	assert_true(lt_pump(all, 2, 5000, ups, &t));
	assert_int_equal(getsockopt(dp_link_fd(la), IPPROTO_TCP, TCP_KEEPIDLE, &v, &vl), 0);
	assert_int_equal(v, 17);
	assert_int_equal(getsockopt(dp_link_fd(la), SOL_SOCKET, SO_KEEPALIVE, &v, &vl), 0);
	assert_int_equal(v, 1);
	assert_int_equal(dp_link_addr_parse("[::1]:6084", &ss, &sl), 0);
	assert_int_equal(dp_link_addr_parse("localhost:6084", &ss, &sl), VP_EINVAL);
	assert_int_equal(dp_link_addr_parse("127.0.0.1:65536", &ss, &sl), VP_EINVAL);
	lt_node_fini(&a);
	lt_node_fini(&b);
}

static void conf_table_is_consistent(void **state)
{
	dp_link_conf_t c;
	vp_conf_err_t e;
	static const char text[] = "[link]\nhandshake_timeout = 2s\nmax_handshakes = 9\ntls_min_version = 1.3\n";
	(void)state;
	assert_int_equal(vp_conf_schema_defaults(dp_link_conf_opts, dp_link_conf_nopts, &c, &e), 0);
	assert_int_equal(c.handshake_timeout_ms, 5000);
	assert_int_equal(c.tls_min, DP_LINK_TLS12);
	assert_int_equal(vp_conf_schema_parse(dp_link_conf_opts, dp_link_conf_nopts, text, sizeof(text) - 1, &c, &e), 0);
	assert_int_equal(c.handshake_timeout_ms, 2000);
	assert_int_equal(c.max_handshakes, 9);
	assert_int_equal(c.tls_min, DP_LINK_TLS13);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(conf_table_is_consistent),
		cmocka_unit_test(link_up_bound_to_node_ids_and_exchanges_frames),
		cmocka_unit_test(certificate_from_another_ca_is_refused),
		cmocka_unit_test(expired_certificate_is_refused),
		cmocka_unit_test(not_yet_valid_certificate_is_refused),
		cmocka_unit_test(revoked_node_is_refused),
		cmocka_unit_test(client_refuses_server_of_another_ca_and_wrong_node),
		cmocka_unit_test(garbage_before_handshake_is_refused),
		cmocka_unit_test(garbage_after_handshake_is_refused),
		cmocka_unit_test(oversize_frame_is_refused),
		cmocka_unit_test(unknown_frame_type_is_refused),
		cmocka_unit_test(largest_frame_is_accepted),
		cmocka_unit_test(stalled_handshakes_do_not_stop_service),
		cmocka_unit_test(slow_reader_gets_back_pressure),
		cmocka_unit_test(kernel_backend_writes_a_burst_in_few_records),
		cmocka_unit_test(keepalive_and_candidates),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
