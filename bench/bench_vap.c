/*
 * bench/bench_vap.c - VAP server throughput.
 *
 *   bench_vap [UPLOADS [NUMBERS [TERM_RECORDS]]]
 *
 * 1. UploadVCR requests per second per server core over loopback, integrity
 *    checked and answers signed, against a plain epoll request/response echo
 *    server that frames the same bytes and answers with the same answer size
 *    (the baseline: what the socket path alone costs).  Both servers run on one
 *    thread; the figure divides requests by that thread's CPU time, so the
 *    client sharing the machine does not distort it.  Same client for both:
 *    CONNS connections, WINDOW requests in flight each, pre-signed requests.
 * 2. Time to publish NUMBERS (default 1,000,000) individual numbers with
 *    vipr-agent's client library through the server into the in-memory store
 *    (vap_memstore: stands in for the DHT until storage/ is wired), completed
 *    asynchronously as a DHT store would be; baseline: the same inserts
 *    straight into the store.
 * 3. The same NUMBERS published through the server into the node's real local
 *    store (storage/, RocksDB): each number becomes a VIPR-REGISTRATION
 *    dictionary entry (key Node-ID || VService-id, value contact Node-ID,
 *    VService, pvp_methods) under Resource-ID SHA-1(number)[0..15], stored by
 *    st_store() from the server's store hook.  The server thread runs
 *    vap_server_run_once() itself: every store of one loop iteration goes into
 *    one st_batch_begin()/st_batch_commit(), and the stores are completed
 *    (vap_server_store_done, which may answer the Publish) only after the
 *    commit returned, i.e. once the batch is in the WAL.  The store is the
 *    node's own, signed by itself: the ViPR kind's quota Q is set to the
 *    numbers the node provisions (L = 2Q + 16 at fraction 1) and the storage
 *    engine's per-signer store rate policing is off (the VAP server polices
 *    agents and paces stores itself).  Afterwards every number is fetched back
 *    and its value checked (the bench exits 1 otherwise).  Baseline: the same
 *    numbers stored directly with st_store() into a fresh store, in batches of
 *    the server's store_inflight.
 *
 * 4. UploadVCR into the real hook: vipr_server with its call-record store,
 *    originating and terminating records separately.  A terminating record
 *    costs one PBKDF2 selector (two near the hour), derived on vipr_server's
 *    vcr_workers threads; its baseline is cores x one selector's rate on one
 *    core, measured in the same run (the bound the privacy function sets).
 *
 *   bench_vap 0 NUMBERS  skips the UploadVCR parts (the test suite's smoke run).
 *   bench_vap --help     usage.
 */
#include <errno.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "bench/support/vap_harness.h"
#include "common/errcode.h"
#include "common/log.h"
#include "common/net.h"
#include "bench/support/vsrv_memdht.h"
#include "control/server/vipr_server.h"
#include "control/vap/vap_ststore.h"
#include "pvp/method.h"
#include "storage/store.h"
#include "storage/vipr_kind.h"

#define CONNS 4
#define WINDOW 32

static double now_s(void)
{
	return (double)vp_time_mono_ns() / 1e9;
}

static double thread_cpu_s(pthread_t th)
{
	clockid_t cid;
	struct timespec ts;
	if (pthread_getcpuclockid(th, &cid) || clock_gettime(cid, &ts))
		return 0;
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the baseline: an epoll echo that frames like VAP and answers ANSWER_LEN bytes ---- */

typedef struct echo {
	int lfd, epfd;
	uint16_t port;
	size_t answer_len;
	volatile int stop;
	pthread_t th;
	struct econn *conns;    /* open connections, freed when the loop ends */
} echo_t;

typedef struct econn {
	struct econn *prev, *next;
	int fd;
	uint8_t buf[65536];
	size_t len;
} econn_t;

static void *echo_run(void *arg)
{
	echo_t *e = arg;
	struct epoll_event evs[64];
	uint8_t out[65536];
	size_t olen;
	memset(out, 0, sizeof(out));
	while (!e->stop) {
		int n = epoll_wait(e->epfd, evs, 64, 100);
		for (int i = 0; i < n; i++) {
			econn_t *c = evs[i].data.ptr;
			ssize_t r;
			size_t off = 0;
			if (!c) {
				int fd = accept(e->lfd, NULL, NULL);
				struct epoll_event ev = { .events = EPOLLIN };
				if (fd < 0)
					continue;
				c = calloc(1, sizeof(*c));
				if (!c) {
					close(fd);
					continue;
				}
				c->fd = fd;
				c->next = e->conns;
				if (c->next)
					c->next->prev = c;
				e->conns = c;
				ev.data.ptr = c;
				epoll_ctl(e->epfd, EPOLL_CTL_ADD, fd, &ev);
				continue;
			}
			r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
			if (r <= 0) {
				close(c->fd);
				if (c->prev)
					c->prev->next = c->next;
				else
					e->conns = c->next;
				if (c->next)
					c->next->prev = c->prev;
				free(c);
				continue;
			}
			c->len += (size_t)r;
			/* Answers to one read go out in one write, as the VAP server does. */
			olen = 0;
			for (;;) {
				long fl = vap_frame_len(c->buf + off, c->len - off);
				if (fl <= 0 || (size_t)fl > c->len - off || olen + e->answer_len > sizeof(out))
					break;
				/* Answer: the request's header (tid) and the answer's length. */
				memcpy(out + olen, c->buf + off, VAP_HDR_LEN);
				out[olen + 2] = (uint8_t)((e->answer_len - VAP_HDR_LEN) >> 8);
				out[olen + 3] = (uint8_t)(e->answer_len - VAP_HDR_LEN);
				olen += e->answer_len;
				off += (size_t)fl;
			}
			if (olen && raw_send(c->fd, out, olen))
				continue;
			memmove(c->buf, c->buf + off, c->len - off);
			c->len -= off;
		}
	}
	while (e->conns) {
		econn_t *c = e->conns;
		e->conns = c->next;
		close(c->fd);
		free(c);
	}
	return NULL;
}

static int echo_start(echo_t *e, size_t answer_len)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	memset(e, 0, sizeof(*e));
	e->answer_len = answer_len;
	if (vp_net_listen_tcp("127.0.0.1", 0, 1024, 0, &e->lfd, &e->port))
		return -1;
	e->epfd = epoll_create1(0);
	epoll_ctl(e->epfd, EPOLL_CTL_ADD, e->lfd, &ev);
	return pthread_create(&e->th, NULL, echo_run, e);
}

/* ---- the client: CONNS connections, WINDOW in flight, pre-built requests ---- */

typedef struct bconn {
	int fd;
	const uint8_t *req;
	size_t req_len;
	uint8_t buf[65536];
	size_t len;
	unsigned inflight;
} bconn_t;

/* Send \p total requests round-robin, keep \p window in flight per connection; returns answers. */
static uint64_t blast(bconn_t *cs, unsigned n, unsigned window, uint64_t total, uint64_t *errors)
{
	uint64_t sent = 0, got = 0;
	struct pollfd *pf = calloc(n, sizeof(*pf));
	*errors = 0;
	while (got < total) {
		for (unsigned i = 0; i < n; i++) {
			while (cs[i].inflight < window && sent < total) {
				if (raw_send(cs[i].fd, cs[i].req, cs[i].req_len))
					return got;
				cs[i].inflight++;
				sent++;
			}
			pf[i].fd = cs[i].fd;
			pf[i].events = POLLIN;
		}
		if (poll(pf, n, 5000) <= 0)
			break;
		for (unsigned i = 0; i < n; i++) {
			bconn_t *c = &cs[i];
			ssize_t r;
			size_t off = 0;
			if (!(pf[i].revents & POLLIN))
				continue;
			r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
			if (r <= 0) {
				free(pf);
				return got;
			}
			c->len += (size_t)r;
			for (;;) {
				long fl = vap_frame_len(c->buf + off, c->len - off);
				if (fl <= 0 || (size_t)fl > c->len - off)
					break;
				if ((c->buf[off] & 0x01) && (c->buf[off + 1] & 0x10))
					(*errors)++;     /* error class */
				off += (size_t)fl;
				c->inflight--;
				got++;
			}
			memmove(c->buf, c->buf + off, c->len - off);
			c->len -= off;
		}
	}
	free(pf);
	return got;
}

/* Register over a raw socket and build one signed UploadVCR for this connection. */
static size_t vap_session(uint16_t port, unsigned agent, int *fdp, uint8_t *req, size_t cap,
                          size_t *answer_len, const vap_vcr_t *rec)
{
	uint8_t out[1024], in[1024];
	char user[32], pw[48], realm[VAP_MAX_REALM + 1], nonce[VAP_MAX_NONCE + 1];
	uint8_t key[VAP_KEY_LEN], tid[VAP_TID_LEN] = { 1, 2, 3 };
	vap_enc_t e;
	vap_msg_t m;
	vap_attr_t a;
	long n;
	vap_vcr_t v = { .called = "+14085551212", .caller = "+16505550123", .start_ms = 1700000000000ull,
	                .stop_ms = 1700000093000ull, .direction = VAP_DIR_ORIGINATING };
	int fd = raw_connect(port);
	if (rec)
		v = *rec;
	snprintf(user, sizeof(user), "agent%u", agent);
	snprintf(pw, sizeof(pw), "pw-%s", user);
	vap_enc_begin(&e, out, sizeof(out), vap_type(VAP_REGISTER, VAP_CLASS_REQUEST), tid);
	vap_enc_str(&e, VAP_ATTR_USERNAME, user);
	n = vap_enc_finish(&e, NULL, 0, false);
	raw_send(fd, out, (size_t)n);
	n = raw_recv_msg(fd, in, sizeof(in));
	if (n <= 0 || vap_msg_parse(in, (size_t)n, &m) || vap_msg_find(&m, VAP_ATTR_REALM, &a) ||
	    vap_attr_str(&a, realm, sizeof(realm)) || vap_msg_find(&m, VAP_ATTR_NONCE, &a) ||
	    vap_attr_str(&a, nonce, sizeof(nonce)) || vap_key_derive(user, realm, pw, key))
		return 0;
	for (int k = 0; k < 2; k++) {
		tid[5] = (uint8_t)k;
		vap_enc_begin(&e, k ? req : out, k ? cap : sizeof(out),
		              vap_type(k ? VAP_UPLOAD_VCR : VAP_REGISTER, VAP_CLASS_REQUEST), tid);
		vap_enc_str(&e, VAP_ATTR_USERNAME, user);
		vap_enc_str(&e, VAP_ATTR_REALM, realm);
		vap_enc_str(&e, VAP_ATTR_NONCE, nonce);
		if (k)
			vap_enc_vcr(&e, &v);
		n = vap_enc_finish(&e, key, sizeof(key), false);
		if (k)
			break;
		raw_send(fd, out, (size_t)n);
		if (raw_recv_msg(fd, in, sizeof(in)) <= 0)
			return 0;
	}
	/* One UploadVCR to learn the answer's size. */
	raw_send(fd, req, (size_t)n);
	*answer_len = (size_t)raw_recv_msg(fd, in, sizeof(in));
	*fdp = fd;
	return (size_t)n;
}

static double g_tcp_per_core;   /* the plain-TCP figure, baseline for TLS */

static void bench_upload(uint64_t total, unsigned nconns, unsigned window, const char *name)
{
	harness_t h;
	vap_server_conf_t conf;
	bconn_t *cs = calloc(nconns, sizeof(*cs));
	uint8_t (*req)[1024] = calloc(nconns, sizeof(*req));
	size_t answer_len = 0;
	uint64_t got, errs;
	double t0, c0, vap_wall, vap_cpu, echo_wall, echo_cpu;
	echo_t e;

	vap_server_conf_default(&conf);
	conf.req_rate = 1e9;        /* measure the server, not the policer */
	conf.req_burst = 1e9;
	if (harness_start(&h, &conf, nconns, false)) {
		fprintf(stderr, "bench_vap: server start failed\n");
		exit(1);
	}
	for (unsigned i = 0; i < nconns; i++) {
		cs[i].req_len = vap_session(vap_server_port(h.srv), i, &cs[i].fd, req[i], sizeof(req[i]), &answer_len, NULL);
		cs[i].req = req[i];
		if (!cs[i].req_len) {
			fprintf(stderr, "bench_vap: session setup failed\n");
			exit(1);
		}
	}
	t0 = now_s();
	c0 = thread_cpu_s(h.th);
	got = blast(cs, nconns, window, total, &errs);
	vap_wall = now_s() - t0;
	vap_cpu = thread_cpu_s(h.th) - c0;
	if (got != total || errs || vap_memstore_vcrs(h.ms, NULL) != total + nconns) {
		fprintf(stderr, "bench_vap: %llu of %llu answered, %llu errors, %zu stored\n",
		        (unsigned long long)got, (unsigned long long)total, (unsigned long long)errs,
		        vap_memstore_vcrs(h.ms, NULL));
		exit(1);
	}
	for (unsigned i = 0; i < nconns; i++)
		close(cs[i].fd);
	harness_stop(&h);

	if (echo_start(&e, answer_len)) {
		fprintf(stderr, "bench_vap: echo start failed\n");
		exit(1);
	}
	for (unsigned i = 0; i < nconns; i++) {
		cs[i].fd = raw_connect(e.port);
		cs[i].len = cs[i].inflight = 0;
	}
	t0 = now_s();
	c0 = thread_cpu_s(e.th);
	got = blast(cs, nconns, window, total, &errs);
	echo_wall = now_s() - t0;
	echo_cpu = thread_cpu_s(e.th) - c0;
	e.stop = 1;
	for (unsigned i = 0; i < nconns; i++)
		close(cs[i].fd);
	pthread_join(e.th, NULL);
	close(e.lfd);
	close(e.epfd);
	if (got != total) {
		fprintf(stderr, "bench_vap: echo answered %llu of %llu\n", (unsigned long long)got,
		        (unsigned long long)total);
		exit(1);
	}
	if (!name[0])
		g_tcp_per_core = (double)total / vap_cpu;
	printf("vap_upload_vcr_per_core%s %.0f req/s (baseline echo %.0f req/s, ratio %.2f x)\n", name,
	       (double)total / vap_cpu, (double)total / echo_cpu,
	       ((double)total / vap_cpu) / ((double)total / echo_cpu));
	printf("vap_upload_vcr_wall%s %.0f req/s (baseline echo %.0f req/s, ratio %.2f x)\n", name,
	       (double)total / vap_wall, (double)total / echo_wall,
	       ((double)total / vap_wall) / ((double)total / echo_wall));
	printf("# request %zu bytes, answer %zu bytes, %u connections x %u in flight, %llu requests; "
	       "server thread cpu %.2f s (echo %.2f s)\n", cs[0].req_len, answer_len, nconns, window,
	       (unsigned long long)total, vap_cpu, echo_cpu);
	free(cs);
	free(req);
}

/* A throwaway self-signed certificate for localhost. */
static void make_cert(EVP_PKEY **key, X509 **cert)
{
	X509_NAME *nm;
	*key = EVP_EC_gen("P-256");
	*cert = X509_new();
	if (!*key || !*cert)
		exit(1);
	ASN1_INTEGER_set(X509_get_serialNumber(*cert), 1);
	X509_gmtime_adj(X509_getm_notBefore(*cert), -60);
	X509_gmtime_adj(X509_getm_notAfter(*cert), 3600);
	X509_set_pubkey(*cert, *key);
	nm = X509_get_subject_name(*cert);
	X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0);
	X509_set_issuer_name(*cert, nm);
	if (X509_sign(*cert, *key, EVP_sha256()) <= 0)
		exit(1);
}

/* UploadVCR over TLS 1.3 with the client library; baseline: the plain-TCP figure above. */
static void bench_upload_tls(uint64_t total)
{
	harness_t h;
	vap_server_conf_t conf;
	vap_client_conf_t cc;
	vap_client_t *c[CONNS];
	unsigned inflight[CONNS] = { 0 };
	EVP_PKEY *key;
	X509 *cert;
	SSL_CTX *sctx = SSL_CTX_new(TLS_server_method()), *cctx = SSL_CTX_new(TLS_client_method());
	vap_vcr_t v = { .called = "+14085551212", .caller = "+16505550123", .start_ms = 1700000000000ull,
	                .stop_ms = 1700000093000ull, .direction = VAP_DIR_ORIGINATING };
	uint64_t sent = 0, got = 0;
	double t0, c0, cpu;
	make_cert(&key, &cert);
	if (!sctx || !cctx || SSL_CTX_use_certificate(sctx, cert) != 1 || SSL_CTX_use_PrivateKey(sctx, key) != 1 ||
	    X509_STORE_add_cert(SSL_CTX_get_cert_store(cctx), cert) != 1)
		exit(1);
	SSL_CTX_set_verify(cctx, SSL_VERIFY_PEER, NULL);
	vap_server_conf_default(&conf);
	conf.tls = sctx;
	conf.req_rate = 1e9;
	conf.req_burst = 1e9;
	if (harness_start(&h, &conf, CONNS, false))
		exit(1);
	for (unsigned i = 0; i < CONNS; i++) {
		client_conf(&cc, &h, i);
		cc.tls = cctx;
		cc.tls_name = "localhost";
		if (vap_client_connect(&cc, &c[i])) {
			fprintf(stderr, "bench_vap: TLS connect failed\n");
			exit(1);
		}
	}
	t0 = now_s();
	c0 = thread_cpu_s(h.th);
	while (got < total) {
		for (unsigned i = 0; i < CONNS; i++) {
			uint8_t tid[VAP_TID_LEN];
			while (inflight[i] < WINDOW && sent < total) {
				if (vap_client_send_upload(c[i], &v, 1, tid))
					exit(1);
				inflight[i]++;
				sent++;
			}
			while (inflight[i] > WINDOW / 2 || (sent == total && inflight[i])) {
				if (vap_client_recv_answer(c[i], tid, 5000))
					exit(1);
				inflight[i]--;
				got++;
			}
		}
	}
	cpu = thread_cpu_s(h.th) - c0;
	printf("vap_upload_vcr_per_core_tls %.0f req/s (baseline vap over plain tcp %.0f req/s, ratio %.2f x)\n",
	       (double)total / cpu, g_tcp_per_core, ((double)total / cpu) / g_tcp_per_core);
	printf("# TLS %s, %u connections x %u in flight, %llu requests in %.2f s wall; server thread cpu %.2f s\n",
	       "1.3", CONNS, WINDOW, (unsigned long long)total, now_s() - t0, cpu);
	for (unsigned i = 0; i < CONNS; i++)
		vap_client_close(c[i]);
	harness_stop(&h);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	X509_free(cert);
	EVP_PKEY_free(key);
}

static void bench_publish(size_t total)
{
	harness_t h;
	vap_client_conf_t cc;
	vap_client_t *c;
	char (*nums)[VP_E164_BUFLEN] = malloc(total * sizeof(*nums));
	const char **ptrs = malloc(total * sizeof(*ptrs));
	vap_memstore_t *ms;
	uint64_t stored = 0;
	double t0, vap_s, base_s;
	int rc;

	for (size_t i = 0; i < total; i++) {
		unsigned area = 200u + (unsigned)(i / 10000000u) % 800u;
		unsigned line = (unsigned)(i % 10000000u);
		snprintf(nums[i], VP_E164_BUFLEN, "+1%03u%07u", area, line);
		ptrs[i] = nums[i];
	}
	if (harness_start(&h, NULL, 1, true)) {
		fprintf(stderr, "bench_vap: server start failed\n");
		exit(1);
	}
	client_conf(&cc, &h, 0);
	cc.window = 8;
	cc.timeout_ms = 60000;
	if ((rc = vap_client_connect(&cc, &c))) {
		fprintf(stderr, "bench_vap: connect: %s\n", vp_strerror(rc));
		exit(1);
	}
	t0 = now_s();
	rc = vap_client_publish(c, 1, VAP_OP_ADD, ptrs, total, NULL, 0, &stored);
	vap_s = now_s() - t0;
	if (rc || stored != total || vap_memstore_count(h.ms) != total) {
		fprintf(stderr, "bench_vap: publish: %s, %llu stored, %zu in store\n", vp_strerror(rc),
		        (unsigned long long)stored, vap_memstore_count(h.ms));
		exit(1);
	}
	vap_client_close(c);
	harness_stop(&h);

	/* Baseline: the same store, inserts straight in (no protocol, no server). */
	if (vap_memstore_new(&ms)) {
		fprintf(stderr, "bench_vap: out of memory\n");
		exit(1);
	}
	t0 = now_s();
	for (size_t i = 0; i < total; i++)
		vap_memstore_insert(ms, nums[i], 1, VAP_OP_ADD);
	base_s = now_s() - t0;
	if (vap_memstore_count(ms) != total) {
		fprintf(stderr, "bench_vap: baseline stored %zu\n", vap_memstore_count(ms));
		exit(1);
	}
	vap_memstore_free(ms);
	/* A time: the ratio is baseline / ours, so above 1 is better for us like every other line. */
	printf("vap_publish_%zu_numbers %.3f s (baseline direct store inserts %.3f s, ratio %.2f x)\n",
	       total, vap_s, base_s, base_s / vap_s);
	printf("vap_publish_rate %.0f numbers/s (baseline %.0f numbers/s, ratio %.2f x)\n",
	       (double)total / vap_s, (double)total / base_s, base_s / vap_s);
	free(nums);
	free(ptrs);
}

/* ---- 3. publish into the node's own RocksDB store (storage/) ---- */

#define SELF_LIFETIME 86400u   /* s: the recommended 24 h refresh period */
#define SELF_VSERVICE 1u
#define SELF_METHODS (ST_VIPR_PVP_WITH_CALLER_ID | ST_VIPR_PVP_WITHOUT_CALLER_ID)

/* The server thread: vap_ststore's loop (one batch per loop iteration). */
typedef struct selfrun {
	vap_ststore_t *st;
	vap_server_t *srv;
	int rc;
	pthread_t th;
} selfrun_t;

static void *self_run(void *arg)
{
	selfrun_t *r = arg;
	r->rc = vap_ststore_run(r->st, r->srv);
	return NULL;
}

static int self_upload_vcr(void *ctx, const char *agent, const vap_vcr_t *vcr)
{
	(void)ctx; (void)agent; (void)vcr;
	return VP_EUNSUPPORTED;  /* this benchmark publishes numbers only */
}

static int self_publish_vservice(void *ctx, const char *agent, const vap_vservice_t *vs)
{
	(void)ctx; (void)agent; (void)vs;
	return VP_EUNSUPPORTED;
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb; (void)flag; (void)ftw;
	return remove(p);
}

static void rm_rf(const char *dir)
{
	nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* The scratch directory of bench_publish_rocksdb, removed at exit (also when a check fails). */
static char g_scratch[512];

static void rm_scratch(void)
{
	if (g_scratch[0])
		rm_rf(g_scratch);
	g_scratch[0] = 0;
}

/* Open a fresh store in \p dir configured for the node's own \p total numbers. */
static st_db_t *self_db_open(const char *dir, size_t total)
{
	st_config_t cfg;
	st_db_t *db;
	int rc;
	st_config_default(&cfg);
	cfg.path = dir;
	/* Our own claims: Q = the numbers we provision (L = ceil(Q * 1 * 2) + 16 >= total). */
	cfg.vipr_quota = total > UINT32_MAX / 4 ? UINT32_MAX / 4 : (uint32_t)total;
	/* No per-signer store policing of ourselves: the VAP server polices and paces the agents. */
	cfg.rate[ST_RATE_STORE] = (st_rate_limit_t){ 0, 0 };
	if ((rc = st_db_open(&cfg, &db))) {
		fprintf(stderr, "bench_vap: st_db_open %s: %s\n", dir, vp_strerror(rc));
		exit(1);
	}
	return db;
}

typedef struct check_ctx {
	const vp_id_t *node;
	uint8_t methods;
	unsigned found, bad;
} check_ctx_t;

static int check_entry(void *arg, const vp_id_t *rid, uint32_t kind, const st_entry_t *e)
{
	check_ctx_t *c = arg;
	st_vipr_key_t k;
	st_vipr_value_t v;
	(void)rid;
	c->found++;
	if (kind != ST_VIPR_KIND_ID_DEFAULT || !e->exists ||
	    st_vipr_key_decode(e->key, e->key_len, &k) || !vp_id_eq(&k.node, c->node) ||
	    k.vservice_id != SELF_VSERVICE || st_vipr_value_decode(e->value, e->value_len, &v) ||
	    !vp_id_eq(&v.contact, c->node) || v.vservice_id != SELF_VSERVICE || v.pvp_methods != c->methods ||
	    v.reserved_len != 0 || e->lifetime != SELF_LIFETIME)
		c->bad++;
	return 0;
}

/* Fetch every number back: exactly one live entry, our key and the right value.  Returns failures. */
static size_t self_verify(st_shard_t *sh, const vp_id_t *node, uint8_t methods, char (*nums)[VP_E164_BUFLEN],
                          size_t total)
{
	uint8_t key[ST_VIPR_KEY_LEN];
	st_vipr_key_t k = { *node, SELF_VSERVICE };
	st_dict_key_t dk = { key, ST_VIPR_KEY_LEN };
	st_specifier_t spec = { .kind = ST_VIPR_KIND_ID_DEFAULT, .keys = &dk, .n_keys = 1 };
	check_ctx_t c = { node, methods, 0, 0 };
	st_visitor_t vis = { NULL, check_entry, &c };
	size_t failures = 0;
	st_vipr_key_encode(&k, key);
	for (size_t i = 0; i < total; i++) {
		vp_id_t rid = vp_id_from_name(nums[i], strlen(nums[i]));
		int rc;
		c.found = c.bad = 0;
		rc = st_fetch(sh, &rid, &spec, 1, NULL, &vis, NULL);
		if (rc || c.found != 1 || c.bad) {
			if (failures++ < 5)
				fprintf(stderr, "bench_vap: fetch %s: %s, %u entries, %u bad\n", nums[i],
				        vp_strerror(rc), c.found, c.bad);
		}
	}
	return failures;
}

static void bench_publish_rocksdb(size_t total)
{
	const char *tmp = getenv("TMPDIR");
	char *dir = g_scratch, sub[600];
	selfrun_t s;
	vap_ststore_conf_t sc;
	vap_ststore_stats_t sst_vap;
	st_db_t *db;
	st_shard_t *sh;
	vap_server_conf_t conf;
	vap_hooks_t hooks = { .upload_vcr = self_upload_vcr, .publish_vservice = self_publish_vservice };
	vap_client_conf_t cc;
	vap_client_t *c;
	char (*nums)[VP_E164_BUFLEN] = malloc(total * sizeof(*nums));
	const char **ptrs = malloc(total * sizeof(*ptrs));
	uint64_t stored = 0, used;
	st_stats_t sst;
	st_db_t *bdb;
	st_shard_t *bsh;
	double t0, vap_s, base_s, verify_s;
	size_t failures;
	int rc;

	snprintf(dir, sizeof(g_scratch), "%s/bench_vap.XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
	if (!nums || !ptrs || !mkdtemp(dir)) {
		fprintf(stderr, "bench_vap: scratch dir: %s\n", strerror(errno));
		g_scratch[0] = 0;
		exit(1);
	}
	atexit(rm_scratch);
	for (size_t i = 0; i < total; i++) {
		unsigned area = 200u + (unsigned)(i / 10000000u) % 800u;
		unsigned line = (unsigned)(i % 10000000u);
		snprintf(nums[i], VP_E164_BUFLEN, "+1%03u%07u", area, line);
		ptrs[i] = nums[i];
	}

	memset(&s, 0, sizeof(s));
	memset(&sc, 0, sizeof(sc));
	for (int i = 0; i < VP_ID_LEN; i++)
		sc.node.b[i] = (uint8_t)(0xA0 + i);
	sc.methods = SELF_METHODS;
	sc.lifetime_s = SELF_LIFETIME;
	snprintf(sub, sizeof(sub), "%s/vap", dir);
	db = self_db_open(sub, total);
	sh = st_db_shard(db, 0);
	vap_server_conf_default(&conf);
	if ((rc = vap_ststore_new(sh, &sc, conf.store_inflight, &s.st))) {
		fprintf(stderr, "bench_vap: vap_ststore_new: %s\n", vp_strerror(rc));
		exit(1);
	}
	vap_ststore_hooks(s.st, &hooks);
	if ((rc = vap_server_create(&conf, &hooks, &s.srv)) ||
	    (rc = vap_server_add_agent(s.srv, "agent0", "pw-agent0"))) {
		fprintf(stderr, "bench_vap: server start failed\n");
		exit(1);
	}
	if (pthread_create(&s.th, NULL, self_run, &s))
		exit(1);
	memset(&cc, 0, sizeof(cc));
	cc.host = "127.0.0.1";
	cc.port = vap_server_port(s.srv);
	cc.username = "agent0";
	cc.password = "pw-agent0";
	cc.window = 8;
	cc.timeout_ms = 60000;
	if ((rc = vap_client_connect(&cc, &c))) {
		fprintf(stderr, "bench_vap: connect: %s\n", vp_strerror(rc));
		exit(1);
	}
	t0 = now_s();
	rc = vap_client_publish(c, SELF_VSERVICE, VAP_OP_ADD, ptrs, total, NULL, 0, &stored);
	vap_s = now_s() - t0;
	vap_client_close(c);
	vap_server_stop(s.srv);
	pthread_join(s.th, NULL);
	vap_server_destroy(s.srv);
	vap_ststore_get_stats(s.st, &sst_vap);
	vap_ststore_free(s.st);
	/* The server thread is gone: the shard is this thread's now. */
	if (rc || stored != total || sst_vap.committed != total || sst_vap.commit_errors || s.rc) {
		fprintf(stderr, "bench_vap: rocksdb publish: %s, %llu acknowledged, %llu committed, %llu commit errors\n",
		        vp_strerror(rc), (unsigned long long)stored, (unsigned long long)sst_vap.committed,
		        (unsigned long long)sst_vap.commit_errors);
		exit(1);
	}
	t0 = now_s();
	failures = self_verify(sh, &sc.node, sc.methods, nums, total);
	verify_s = now_s() - t0;
	used = st_quota_used(sh, &sc.node, ST_VIPR_KIND_ID_DEFAULT);
	st_shard_stats(sh, &sst);
	if (failures || used != total || sst.stores_ok != total) {
		fprintf(stderr, "bench_vap: rocksdb check: %zu of %zu numbers not fetchable with the right value, "
		        "quota used %llu, stores_ok %llu\n", failures, total, (unsigned long long)used,
		        (unsigned long long)sst.stores_ok);
		exit(1);
	}
	st_db_close(db);

	/* Baseline: the same numbers straight into a fresh store, batches of store_inflight. */
	snprintf(sub, sizeof(sub), "%s/direct", dir);
	bdb = self_db_open(sub, total);
	bsh = st_db_shard(bdb, 0);
	t0 = now_s();
	for (size_t i = 0; i < total; i++) {
		if (i % conf.store_inflight == 0 && (rc = st_batch_begin(bsh)))
			break;
		if ((rc = vap_ststore_put(bsh, &sc, vp_time_wall_ms(), nums[i], SELF_VSERVICE, VAP_OP_ADD)))
			break;
		if (((i + 1) % conf.store_inflight == 0 || i + 1 == total) && (rc = st_batch_commit(bsh)))
			break;
	}
	base_s = now_s() - t0;
	st_shard_stats(bsh, &sst);
	if (rc || sst.stores_ok != total) {
		fprintf(stderr, "bench_vap: direct st_store: %s, %llu stored\n", vp_strerror(rc),
		        (unsigned long long)sst.stores_ok);
		exit(1);
	}
	st_db_close(bdb);
	rm_scratch();
	printf("vap_publish_%zu_numbers_rocksdb %.3f s (baseline direct st_store of the same numbers in batches "
	       "%.3f s, ratio %.2f x)\n", total, vap_s, base_s, base_s / vap_s);
	printf("# %llu batches (%.1f stores each; direct: %u), every number fetched back and checked in %.2f s\n",
	       (unsigned long long)sst_vap.batches, (double)total / (double)sst_vap.batches, conf.store_inflight,
	       verify_s);
	free(nums);
	free(ptrs);
}

/* ---- the real hook: vipr_server with its call-record store (RocksDB) ---------------------- */

static double proc_cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double self_cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One PBKDF2 selector's rate on one core (what a terminating record costs at least), measured now. */
static double selector_rate(unsigned n)
{
	uint8_t sel[PVP_SEL_LEN];
	double c0 = self_cpu_s();
	for (unsigned i = 0; i < n; i++)
		if (pvp_selector("+14085551212", 472222 + i, sel)) {
			fprintf(stderr, "bench_vap: pvp_selector failed\n");
			exit(1);
		}
	return (double)n / (self_cpu_s() - c0);
}

/*
 * UploadVCR into vipr_server: its real hook, which writes the record into the
 * call-record store (an originating record also goes to the validation
 * scheduler and the uploads log; a terminating record has its selectors derived
 * by the vcr_workers pool and is answered once written).  NCONNS agents (the
 * server polices each at 5000 req/s with a burst of 1000: every agent sends at
 * most its burst here, so the policer never answers 429).  Server CPU = the
 * process's CPU minus this (client) thread's.
 */
#define REAL_CONNS 32

typedef struct real_fig {
	double rate_wall, cpu_per_rec_s;
} real_fig_t;

static real_fig_t bench_upload_real(pvp_dir_t dir, uint64_t total, unsigned window)
{
	char tmpl[] = "/tmp/bench-vap-real-XXXXXX", text[3072], agents[1024], tenants[1024];
	vsrv_memdht_t *dht = NULL;
	vsrv_conf_t conf;
	vsrv_dht_t iface;
	vsrv_t *srv = NULL;
	vp_conf_err_t e;
	bconn_t *cs = calloc(REAL_CONNS, sizeof(*cs));
	uint8_t (*req)[1024] = calloc(REAL_CONNS, sizeof(*req));
	size_t answer_len = 0, off = 0;
	uint64_t got, errs, now = vp_time_wall_ms();
	vsrv_stats_t st;
	double t0, p0, c0, wall, cpu;
	vap_vcr_t v = { .called = "+14085551212", .caller = "+16505550123", .start_ms = now - 3600000,
	                .stop_ms = now - 3600000 + 93000,
	                .direction = dir == PVP_DIR_ORIG ? VAP_DIR_ORIGINATING : VAP_DIR_TERMINATING };
	real_fig_t f;

	if (!mkdtemp(tmpl) || vsrv_memdht_new(&dht) || !cs || !req) {
		fprintf(stderr, "bench_vap: setup failed\n");
		exit(1);
	}
	for (unsigned i = 0; i < REAL_CONNS; i++)
		off += (size_t)snprintf(agents + off, sizeof(agents) - off, "%sagent%u:pw-agent%u", i ? "," : "", i, i);
	/* One tenant (agent0's): an originating record needs a VService of its uploader's tenant. */
	for (unsigned i = 1, toff = 0; i < REAL_CONNS; i++)
		toff += (unsigned)snprintf(tenants + toff, sizeof(tenants) - toff, "%sagent%u:agent0", i > 1 ? "," : "", i);
	snprintf(text, sizeof(text),
	         "[server]\nname = bench\ndomain = bench.example\n[vap]\nport = 0\nagents = %s\ntenants = %s\n"
	         "[pvp]\nvcr_dir = %s\n[scheduler]\nmax_jobs = 100000000\n", agents, tenants, tmpl);
	vsrv_conf_default(&conf);
	vsrv_memdht_iface(dht, &iface);
	if (vsrv_conf_parse(&conf, text, strlen(text), &e) || vsrv_new(&conf, &iface, NULL, NULL, NULL, &srv) ||
	    vsrv_start(srv)) {
		fprintf(stderr, "bench_vap: vipr_server start failed: %s\n", e.msg);
		exit(1);
	}
	{
		vap_client_conf_t cc = { .host = "127.0.0.1", .port = vsrv_vap_port(srv), .username = "agent0",
			                 .password = "pw-agent0" };
		vap_vservice_t vs = { .id = 1, .op = VAP_OP_ADD, .n_uris = 1, .uris = { "sip:sbc@bench.example" } };
		vap_client_t *vc = NULL;
		if (vap_client_connect(&cc, &vc) || vap_client_publish_vservice(vc, &vs)) {
			fprintf(stderr, "bench_vap: VService publication failed\n");
			exit(1);
		}
		vap_client_close(vc);
	}
	for (unsigned i = 0; i < REAL_CONNS; i++) {
		cs[i].req_len = vap_session(vsrv_vap_port(srv), i, &cs[i].fd, req[i], sizeof(req[i]), &answer_len, &v);
		cs[i].req = req[i];
		if (!cs[i].req_len) {
			fprintf(stderr, "bench_vap: session setup failed\n");
			exit(1);
		}
	}
	t0 = now_s();
	p0 = proc_cpu_s();
	c0 = self_cpu_s();
	got = blast(cs, REAL_CONNS, window, total, &errs);
	wall = now_s() - t0;
	cpu = (proc_cpu_s() - p0) - (self_cpu_s() - c0);
	vsrv_get_stats(srv, &st);
	if (got != total || errs || (dir == PVP_DIR_ORIG ? st.vcr_orig : st.vcr_term) != total + REAL_CONNS) {
		fprintf(stderr, "bench_vap: real %s: %llu of %llu answered, %llu errors, %llu stored\n",
		        dir == PVP_DIR_ORIG ? "orig" : "term", (unsigned long long)got, (unsigned long long)total,
		        (unsigned long long)errs,
		        (unsigned long long)(dir == PVP_DIR_ORIG ? st.vcr_orig : st.vcr_term));
		exit(1);
	}
	for (unsigned i = 0; i < REAL_CONNS; i++)
		close(cs[i].fd);
	vsrv_free(srv);
	vsrv_memdht_free(dht);
	rm_rf(tmpl);
	free(cs);
	free(req);
	f.rate_wall = (double)total / wall;
	f.cpu_per_rec_s = cpu / (double)total;
	return f;
}

static void bench_upload_real_all(uint64_t orig, uint64_t term, double memstore_per_core)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	double sel1, bound;
	real_fig_t fo, ft;
	if (orig > REAL_CONNS * 1000ull - REAL_CONNS)
		orig = REAL_CONNS * 1000ull - REAL_CONNS; /* within every agent's burst: never policed */
	if (term > REAL_CONNS * 1000ull - REAL_CONNS)
		term = REAL_CONNS * 1000ull - REAL_CONNS;
	fo = bench_upload_real(PVP_DIR_ORIG, orig, 8);
	sel1 = selector_rate(200);
	ft = bench_upload_real(PVP_DIR_TERM, term, 8);
	bound = (double)(ncpu > 0 ? ncpu : 1) * sel1;
	if (memstore_per_core > 0)
		printf("vap_upload_vcr_real_orig_per_core %.0f req/s (baseline vap_memstore hook %.0f req/s, ratio %.2f x)\n",
		       1 / fo.cpu_per_rec_s, memstore_per_core, (1 / fo.cpu_per_rec_s) / memstore_per_core);
	printf("vap_upload_vcr_real_orig_wall %.0f records/s (no baseline)\n", fo.rate_wall);
	printf("vap_upload_vcr_real_term_wall %.0f records/s (baseline %ld cores x one selector %.0f/s = %.0f records/s, "
	       "ratio %.2f x)\n", ft.rate_wall, ncpu, sel1, bound, ft.rate_wall / bound);
	printf("vap_upload_vcr_real_term_cpu %.3f ms/record (baseline one PBKDF2 selector %.3f ms, ratio %.2f x)\n",
	       ft.cpu_per_rec_s * 1e3, 1e3 / sel1, (1e3 / sel1) / (ft.cpu_per_rec_s * 1e3));
	printf("# vipr_server, %d agents x 8 in flight, 1 record per request; %llu originating, %llu terminating "
	       "records (start 1 h ago, one selector each); server cpu = process cpu - client thread cpu\n",
	       REAL_CONNS, (unsigned long long)orig, (unsigned long long)term);
}

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: bench_vap [UPLOADS [NUMBERS [TERM_RECORDS]]]\n"
	        "  UPLOADS       UploadVCR requests into the in-memory hook (default 200000; 0 skips the UploadVCR parts)\n"
	        "  NUMBERS       numbers published through VAP (default 1000000)\n"
	        "  TERM_RECORDS  records uploaded into vipr_server's real hook, originating and terminating\n"
	        "                (default 4000; at most 31968 so no agent is policed)\n"
	        "Prints one line per figure: name value unit (baseline value unit, ratio x); ratios above 1 are better for us.\n");
}

int main(int argc, char **argv)
{
	uint64_t uploads, term;
	size_t numbers;
	if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		usage(stdout);
		return 0;
	}
	for (int i = 1; i < argc; i++)
		if (argv[i][0] < '0' || argv[i][0] > '9') {
			usage(stderr);
			return 2;
		}
	uploads = argc > 1 ? strtoull(argv[1], NULL, 10) : 200000;
	numbers = argc > 2 ? (size_t)strtoull(argv[2], NULL, 10) : 1000000;
	term = argc > 3 ? strtoull(argv[3], NULL, 10) : 4000;
	vp_log_setup(VP_LOG_ERROR, NULL);
	if (uploads) {
		bench_upload(uploads, CONNS, WINDOW, "");
		bench_upload_real_all(term, term, g_tcp_per_core);
		/* Many agents, one request each in flight: no batching, a read and a write per request. */
		bench_upload(uploads / 4, 1000, 1, "_1000_agents");
		bench_upload_tls(uploads / 2);
	}
	bench_publish(numbers);
	bench_publish_rocksdb(numbers);
	return 0;
}
