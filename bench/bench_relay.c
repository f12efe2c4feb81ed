/*
 * bench/bench_relay.c - relay rate of one shard: messages a viprd shard forwards per second of its own CPU.
 *
 * Ours: a real node (control/node: node_new/node_start, one shard, its storage service on RocksDB, exactly
 * what viprd runs) is the relay R.  A second node D joins it, so R's routing table (its Chord vnode) holds D.
 * A sender S (this program's main thread, a dp_link with its own overlay certificate, not a ring member)
 * sends signed RELOAD messages on one TLS link to R; each is addressed to a Resource-ID in D's range, so R
 * routes it by its table to D and only forwards it: TLS read, framing, decode, destination check, next hop,
 * the codec's header-only in-place forward (rl_fwd_ttl_decrement, rl_fwd_append_via), the transmit queue,
 * TLS write on the link to D, ACK frames both ways.  R never verifies (it is not the destination).
 *
 * The receiver must not slow R down, and R must not be the receiver: the destination list is
 * [Resource-ID in D's range, Node-ID of S]; R routes on its first entry as it would a single-entry Store,
 * and D, responsible for that entry but not the last hop, drops it without decoding the body, verifying or
 * answering (chord_node_recv: VP_ENOROUTE).  Nothing comes back.
 *
 * The figure is messages R relayed (its own counter, checked against what S sent and D received) per CPU
 * second of R's shard thread: its thread CPU clock (pthread_getcpuclockid, taken on that thread by a
 * node_request completion, which runs there).  S and D run on other threads with their own clocks, so
 * their CPU is not in the figure; S keeps at most --window messages beyond what D has received, so R's
 * transmit buffer toward D never overflows (a refused send would be a lost message, checked).
 *
 * Baselines in the same run, in interleaved slices (ours, codec, TLS, for each message kind, repeated), so
 * a change in the shared machine's load hits all alike:
 *   - the codec's header-only forward of the same bytes in memory (rl_fwd_header_decode + rl_fwd_copy into
 *     an output buffer), per CPU second of the thread running it;
 *   - the same bytes through a bare TLS relay: one thread in a blocking SSL_read -> SSL_write loop between
 *     two TLS 1.3 connections (same certificates, mutual authentication), fed one SSL_write per message
 *     like S, per CPU second of that thread: what TLS alone costs a relay.
 * Ratios are ours / baseline (above 1 better for us).
 *
 *   bench_relay [--messages N] [--slices K] [--window W] [--codec-cpu S] [--kind store|ping|both] [--records N]
 *   bench_relay --help
 */
#include <errno.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "common/clock.h"
#include "common/conf.h"
#include "common/errcode.h"
#include "common/log.h"
#include "common/net.h"
#include "bench/support/bench_ident.h"
#include "control/node/ca.h"
#include "control/node/kinds.h"
#include "control/node/node.h"
#include "dataplane/cert.h"
#include "dataplane/link.h"
#include "dataplane/reload.h"
#include "storage/store.h"
#include "storage/vipr_kind.h"

#define OVERLAY "relay.bench.example"
/* Bounds: every wait of the program ends (setup, a slice, the shutdown). */
#define JOIN_WAIT_MS 30000u
#define SLICE_WAIT_MS 60000u
#define STATUS_WAIT_MS 5000u
#define NMSG 64u /* distinct messages (txid, Resource-ID) the sender cycles through */

static char g_dir[64];

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

static void cleanup(void)
{
	if (g_dir[0])
		nftw(g_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static _Noreturn void die(const char *what, const char *detail)
{
	fprintf(stderr, "bench_relay: error=%s%s%s\n", what, detail ? " detail=" : "", detail ? detail : "");
	exit(1);
}

static uint64_t mono_ms(void)
{
	return vp_time_mono_ns() / 1000000u;
}

/* ---- identities: an overlay CA (control/node/ca.h, as vipr-enroll issues) ----------------------- */

typedef bench_ident_t ident_t;

static void issue(ca_t *ca, ident_t *o)
{
	if (bench_ident_issue(ca, "bench@relay.example", o))
		die("certificate", NULL);
}

static void write_node_dir(const ident_t *o, const char *name, char *dir, size_t cap)
{
	char p[256];
	snprintf(dir, cap, "%s/%s", g_dir, name);
	if (mkdir(dir, 0700))
		die("mkdir", dir);
	snprintf(p, sizeof(p), "%s/node.pem", dir);
	if (ca_write_cert(p, o->cert))
		die("write certificate", p);
	snprintf(p, sizeof(p), "%s/node.key", dir);
	if (ca_write_key(p, o->key))
		die("write key", p);
}

/*
 * --records N: N ViPR registrations (each its own Resource-ID and claimant) written into the relay's store
 * before it starts, with the node's own storage configuration, so the figure shows what the storage
 * service's per-iteration work costs a relaying shard whose store is not empty.
 */
static void preload(const char *data_dir, uint64_t n)
{
	st_config_t sc;
	st_kind_t certk = nk_kind_cert_by_node();
	st_db_t *db = NULL;
	st_shard_t *sh;
	char path[256];
	uint64_t now = (uint64_t)time(NULL) * 1000u, seed = 0x9e3779b97f4a7c15ull;
	int rc = 0;

	snprintf(path, sizeof(path), "%s/store", data_dir);
	st_config_default(&sc);
	sc.path = path;
	sc.n_shards = 1;
	sc.kinds = &certk;
	sc.n_kinds = 1;
	sc.vipr_quota = 0; /* many claimants, one entry each: no quota or rate limit while loading */
	for (int i = 0; i < ST_RATE_NOPS; i++)
		sc.rate[i] = (st_rate_limit_t){ 0, 0 };
	if (st_db_open(&sc, &db))
		die("preload open", path);
	sh = st_db_shard(db, 0);
	for (uint64_t done = 0; done < n && !rc;) {
		uint64_t nb = n - done < 1000 ? n - done : 1000;
		rc = st_batch_begin(sh);
		for (uint64_t j = 0; j < nb && !rc; j++, done++) {
			vp_id_t who, rid;
			uint8_t key[ST_VIPR_KEY_LEN], val[ST_VIPR_VALUE_MAX_LEN], sig[72];
			size_t vlen;
			for (int q = 0; q < VP_ID_LEN; q += 8) {
				seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
				memcpy(who.b + q, &seed, 8);
				seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
				memcpy(rid.b + q, &seed, 8);
			}
			memset(sig, 0x5a, sizeof(sig));
			st_vipr_key_encode(&(st_vipr_key_t){ who, 3 }, key);
			if (st_vipr_value_encode(&(st_vipr_value_t){ .contact = who, .vservice_id = 3, .pvp_methods = 1 }, val,
			                         sizeof(val), &vlen))
				die("preload value", NULL);
			st_entry_t e = { .key = key, .key_len = sizeof(key), .storage_time = now, .lifetime = 86400,
			                 .exists = true, .value = val, .value_len = (uint32_t)vlen, .sig = sig,
			                 .sig_len = sizeof(sig) };
			st_kind_data_t kd = { .kind = ST_VIPR_KIND_ID_DEFAULT, .values = &e, .n_values = 1 };
			st_store_req_t rq = { .resource = rid, .kinds = &kd, .n_kinds = 1, .signers = &who, .n_signers = 1,
			                      .unpoliced = true };
			rc = st_store(sh, &rq, NULL, NULL);
		}
		if (!rc)
			rc = st_batch_commit(sh);
	}
	if (rc)
		die("preload store", vp_strerror(rc));
	st_db_close(db);
}

/* ---- the two nodes ---------------------------------------------------------------------------------- */

static void node_conf_for(node_conf_t *c, const char *dir, const char *listen, const char *boot, bool storage)
{
	vp_conf_opt_t rows[96];
	size_t n;
	vp_conf_err_t e = { 0 };
	memset(c, 0, sizeof(*c));
	if (node_conf_schema(rows, 96, &n) || vp_conf_schema_defaults(rows, n, c, &e))
		die("node defaults", e.msg);
	snprintf(c->data_dir, sizeof(c->data_dir), "%s", dir);
	snprintf(c->listen, sizeof(c->listen), "%s", listen);
	snprintf(c->bootstrap, sizeof(c->bootstrap), "%s", boot);
	snprintf(c->overlay, sizeof(c->overlay), "%s", OVERLAY);
	snprintf(c->link.ca_file, sizeof(c->link.ca_file), "%s/ca.pem", g_dir);
	c->shards = 1;
	c->storage = storage;
	c->log_level = VP_LOG_ERROR;
	/* The per-link token bucket still runs for every message; only its limits are out of the way. */
	c->flood_rate = c->flood_burst = c->nb_flood_rate = c->nb_flood_burst = 10000000;
	/* What a configuration document gives (node_conf_overlay): the schema's defaults, the size capped. */
	if (c->max_message_size > RL_MAX_MESSAGE_SIZE)
		c->max_message_size = RL_MAX_MESSAGE_SIZE;
}

typedef struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	int err;
	clockid_t clk;
	pid_t tid;
	node_shard_status_t st;
} waiter_t;

static void waiter_init(waiter_t *w)
{
	memset(w, 0, sizeof(*w));
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
}

static void waiter_signal(waiter_t *w)
{
	pthread_mutex_lock(&w->mu);
	w->done = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

/* false on timeout */
static bool waiter_wait(waiter_t *w, unsigned ms)
{
	struct timespec ts;
	bool ok;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&w->mu);
	while (!w->done && pthread_cond_timedwait(&w->cv, &w->mu, &ts) == 0)
		;
	ok = w->done;
	w->done = false;
	pthread_mutex_unlock(&w->mu);
	return ok;
}

/* A node_request completion: it runs on the shard's thread, so it can name that thread's CPU clock. */
static void on_self_ping(void *arg, const node_answer_t *a)
{
	waiter_t *w = arg;
	w->err = a->err;
	if (!a->err && pthread_getcpuclockid(pthread_self(), &w->clk))
		w->err = VP_EIO;
	w->tid = gettid();
	waiter_signal(w);
}

static void on_status(void *ctx, const node_status_t *st)
{
	waiter_t *w = ctx;
	pthread_mutex_lock(&w->mu);
	w->st = st->shard[0];
	w->done = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static node_shard_status_t status_of(node_t *n)
{
	waiter_t w;
	waiter_init(&w);
	if (node_status_async(n, on_status, &w) || !waiter_wait(&w, STATUS_WAIT_MS) || !w.st.valid)
		die("node status", "no answer");
	return w.st;
}

/* D's DATA messages received, polled by the sender without blocking (its window). */
typedef struct dpoll {
	_Atomic uint64_t rx;
	_Atomic bool pending;
} dpoll_t;

static void on_d_status(void *ctx, const node_status_t *st)
{
	dpoll_t *p = ctx;
	if (st->shard[0].valid)
		atomic_store(&p->rx, st->shard[0].io.rx_msgs);
	atomic_store(&p->pending, false);
}

static uint64_t cpu_of(clockid_t clk)
{
	struct timespec ts;
	if (clock_gettime(clk, &ts))
		die("thread cpu clock", strerror(errno));
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- the messages ---------------------------------------------------------------------------------- */

typedef struct msgset {
	const char *name;
	uint8_t *buf[NMSG];
	size_t len[NMSG];
} msgset_t;

/* r = id - k (mod 2^128): Resource-IDs just below D's Node-ID, so in D's range (pred, D]. */
static vp_id_t id_minus(const vp_id_t *id, unsigned k)
{
	vp_id_t r = *id;
	unsigned borrow = k;
	for (int q = VP_ID_LEN - 1; q >= 0 && borrow; q--) {
		unsigned cur = r.b[q], low = borrow & 0xffu;
		borrow >>= 8;
		if (cur < low) {
			cur += 256;
			borrow++;
		}
		r.b[q] = (uint8_t)(cur - low);
	}
	return r;
}

/*
 * A ViPR registration Store signed by S (its certificate in the security block, as a node sends it), or a
 * small Ping (no certificate: a relay never reads the security block), to [Resource r, Node S].
 */
static size_t build(const ident_t *s, const vp_id_t *r, bool store, uint64_t txid, uint8_t *out, size_t cap)
{
	static uint8_t sdsig[RL_MAX_SIG_LEN], sig[RL_MAX_SIG_LEN];
	uint8_t value[23], vkey[ST_VIPR_KEY_LEN];
	rl_stored_data_t sd = { 0 };
	rl_store_kind_data_t kd = { 0 };
	rl_dest_t dest[2] = { rl_dest_resource(r->b, VP_ID_LEN), rl_dest_node(&s->id) };
	rl_message_t m;
	rl_body_t b;
	vp_wr_t wr;

	memset(&b, 0, sizeof(b));
	memset(&m, 0, sizeof(m));
	if (store) {
		value[0] = 1; /* a ViPR registration: contact = the claimant itself, vservice 3 */
		memcpy(value + 1, s->id.b, VP_ID_LEN);
		memset(value + 17, 0, 4);
		value[21] = 3;
		value[22] = 0;
		sd.storage_time = 1700000000000ull + txid;
		sd.lifetime = 86400;
		sd.model = RL_MODEL_DICTIONARY;
		st_vipr_key_encode(&(st_vipr_key_t){ s->id, 3 }, vkey); /* claimant = S, vservice 3 */
		sd.key = (rl_bytes_t){ vkey, ST_VIPR_KEY_LEN };
		sd.exists = true;
		sd.value = (rl_bytes_t){ value, sizeof(value) };
		if (rl_stored_data_sign(s->key, r->b, VP_ID_LEN, RL_KIND_VIPR_REGISTRATION, &sd, &s->signer, sdsig,
		                        sizeof(sdsig)))
			die("sign stored data", NULL);
		kd.kind = RL_KIND_VIPR_REGISTRATION;
		kd.values.items = &sd;
		kd.values.n_items = 1;
		b.code = RL_STORE_REQ;
		b.u.store_req.resource = (rl_bytes_t){ r->b, VP_ID_LEN };
		b.u.store_req.kind_data.items = &kd;
		b.u.store_req.kind_data.n_items = 1;
		m.sec.certs.items = &s->rlcert;
		m.sec.certs.n_items = 1;
	} else {
		b.code = RL_PING_REQ;
		b.u.ping_req.padding = (rl_bytes_t){ (const uint8_t *)"0123456789abcdef", 16 };
	}
	m.hdr.overlay = rl_overlay_id(OVERLAY, sizeof(OVERLAY) - 1);
	m.hdr.version = RL_VERSION;
	m.hdr.ttl = RL_DEFAULT_TTL;
	m.hdr.fragment = RL_FRAG_UNFRAGMENTED;
	m.hdr.txid = txid;
	m.hdr.dest.items = dest;
	m.hdr.dest.n_items = 2;
	m.contents.code = b.code;
	m.contents.body_st = &b;
	vp_wr_init(&wr, out, cap);
	if (rl_msg_encode_signed(&wr, &m, s->key, &s->signer, sig, sizeof(sig)))
		die("encode", NULL);
	return vp_wr_len(&wr);
}

static void build_set(msgset_t *ms, const char *name, const ident_t *s, const vp_id_t *d, bool store)
{
	ms->name = name;
	for (unsigned i = 0; i < NMSG; i++) {
		vp_id_t r = id_minus(d, i);
		ms->buf[i] = malloc(4096);
		if (!ms->buf[i])
			die("out of memory", NULL);
		ms->len[i] = build(s, &r, store, 0x5e1a000000000000ull + (store ? 0x10000u : 0u) + i, ms->buf[i], 4096);
	}
}

/* ---- ours: R relays what S sends on its link toward D ---------------------------------------------- */

typedef struct bench {
	node_t *r, *d;
	clockid_t r_clk;
	dp_link_ctx_t *sctx;
	dp_cert_store_t *scerts;
	dp_link_t *sl; /* S's link to R */
	dpoll_t dp;
	uint32_t window;
	unsigned idx;
} bench_t;

typedef struct tally {
	uint64_t msgs, cpu_ns;
} tally_t;

static void sender_io(bench_t *b, int wait_ms)
{
	struct pollfd p = { dp_link_fd(b->sl), (short)(dp_link_events(b->sl) | POLLIN), 0 };
	if (!dp_link_has_pending(b->sl))
		poll(&p, 1, wait_ms);
	if (dp_link_io(b->sl, mono_ms(), NULL, NULL))
		die("sender link closed", dp_link_close_reason(b->sl));
}

static void ours_slice(bench_t *b, const msgset_t *ms, uint64_t n, tally_t *t)
{
	node_shard_status_t r0, r1, d0;
	uint64_t sent = 0, got = 0, drx0, c0, c1, t0 = mono_ms();

	r0 = status_of(b->r);
	d0 = status_of(b->d);
	drx0 = d0.io.rx_msgs;
	atomic_store(&b->dp.rx, drx0);
	c0 = cpu_of(b->r_clk);
	while (got < n) {
		if (mono_ms() - t0 > SLICE_WAIT_MS) {
			node_shard_status_t r = status_of(b->r), d = status_of(b->d);
			char w[320];
			snprintf(w, sizeof(w),
			         "\"kind=%s sent=%llu received=%llu relayed=%llu relay_tx_refused=%llu relay_rx_overflow=%llu "
			         "relay_flood=%llu receiver_rx_overflow=%llu\"",
			         ms->name, (unsigned long long)sent, (unsigned long long)got,
			         (unsigned long long)(r.relayed - r0.relayed),
			         (unsigned long long)(r.io.tx_refused - r0.io.tx_refused),
			         (unsigned long long)(r.io.rx_overflow - r0.io.rx_overflow),
			         (unsigned long long)(r.refused_flood - r0.refused_flood),
			         (unsigned long long)(d.io.rx_overflow - d0.io.rx_overflow));
			die("slice timeout", w);
		}
		if (!atomic_load(&b->dp.pending)) {
			atomic_store(&b->dp.pending, true);
			if (node_status_async(b->d, on_d_status, &b->dp))
				atomic_store(&b->dp.pending, false);
		}
		while (sent < n && sent < got + b->window) { /* got may exceed sent: D's own maintenance messages */
			unsigned i = b->idx % NMSG;
			if (dp_link_send(b->sl, ms->buf[i], ms->len[i]))
				break; /* VP_EAGAIN: S's own buffer is full */
			sent++;
			b->idx++;
		}
		sender_io(b, 1);
		got = atomic_load(&b->dp.rx) - drx0;
	}
	c1 = cpu_of(b->r_clk);
	r1 = status_of(b->r);
	if (r1.relayed - r0.relayed < n) {
		/* D counted a message of its own (a maintenance request) as one of ours: wait for the last relay. */
		for (unsigned k = 0; k < 100 && r1.relayed - r0.relayed < n; k++) {
			usleep(20000);
			r1 = status_of(b->r);
		}
		c1 = cpu_of(b->r_clk);
	}
	if (r1.relayed - r0.relayed != n || r1.io.tx_refused != r0.io.tx_refused ||
	    r1.refused_flood != r0.refused_flood || r1.refused_decode != r0.refused_decode) {
		char d[160];
		snprintf(d, sizeof(d), "\"sent=%llu relayed=%llu tx_refused=%llu flood=%llu decode=%llu\"",
		         (unsigned long long)n, (unsigned long long)(r1.relayed - r0.relayed),
		         (unsigned long long)(r1.io.tx_refused - r0.io.tx_refused),
		         (unsigned long long)(r1.refused_flood - r0.refused_flood),
		         (unsigned long long)(r1.refused_decode - r0.refused_decode));
		die("relay lost messages", d);
	}
	t->msgs += n;
	t->cpu_ns += c1 - c0;
}

/* ---- baseline 1: the codec's header-only forward in memory ----------------------------------------- */

static uint64_t g_sink;

static void codec_slice(const msgset_t *ms, const vp_id_t *via_id, double cpu_s, tally_t *t)
{
	static uint8_t out[RL_MAX_MESSAGE_SIZE + 256];
	rl_dest_t via = rl_dest_node(via_id);
	uint64_t n = 0, c0 = vp_time_thread_cpu_ns(), c;
	do {
		for (unsigned k = 0; k < 256; k++, n++) {
			unsigned i = (unsigned)(n % NMSG);
			rl_fwd_header_t h;
			vp_wr_t wr;
			vp_wr_init(&wr, out, sizeof(out));
			if (rl_fwd_header_decode(ms->buf[i], ms->len[i], &h) ||
			    rl_fwd_copy(&wr, ms->buf[i], ms->len[i], &h, &via, false))
				die("codec forward", ms->name);
			g_sink += vp_wr_len(&wr);
		}
		c = vp_time_thread_cpu_ns() - c0;
	} while (c < (uint64_t)(cpu_s * 1e9));
	t->msgs += n;
	t->cpu_ns += c;
}

/* ---- baseline 2: a bare TLS relay (SSL_read -> SSL_write in one thread) ----------------------------- */

typedef struct tls_relay {
	SSL_CTX *ctx_s, *ctx_r, *ctx_d;
	int l1, l2;          /* listeners: the relay's, the receiver's */
	SSL *s_out;          /* sender -> relay (main thread) */
	pthread_t relay, recv;
	clockid_t relay_clk;
	_Atomic uint64_t rx_bytes; /* at the receiver */
	_Atomic int ready;
	_Atomic int failed;
} tls_relay_t;

static SSL_CTX *tls_ctx(const ident_t *id, X509 *root)
{
	SSL_CTX *c = SSL_CTX_new(TLS_method());
	if (!c || SSL_CTX_use_certificate(c, id->cert) != 1 || SSL_CTX_use_PrivateKey(c, id->key) != 1 ||
	    X509_STORE_add_cert(SSL_CTX_get_cert_store(c), root) != 1)
		die("tls baseline context", NULL);
	SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION);
	SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(c, 0);
	SSL_CTX_set_read_ahead(c, 1); /* as dataplane/link.c: one read call takes every record that arrived */
	return c;
}

static int tcp_connect(int lfd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd;
	if (getsockname(lfd, (struct sockaddr *)&ss, &sl))
		return -1;
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&ss, sl)) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Blocking accept with a bound (the listener is non-blocking). */
static int tcp_accept(int lfd)
{
	struct pollfd p = { lfd, POLLIN, 0 };
	int fd;
	if (poll(&p, 1, 10000) != 1)
		return -1;
	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	return fd;
}

static void *tls_recv_main(void *arg)
{
	tls_relay_t *t = arg;
	uint8_t buf[65536];
	int fd = tcp_accept(t->l2), n;
	SSL *s = fd >= 0 ? SSL_new(t->ctx_d) : NULL;
	if (!s || SSL_set_fd(s, fd) != 1 || SSL_accept(s) != 1) {
		atomic_store(&t->failed, 1);
		goto finish;
	}
	while ((n = SSL_read(s, buf, sizeof(buf))) > 0)
		atomic_fetch_add(&t->rx_bytes, (uint64_t)n);
finish:
	SSL_free(s);
	if (fd >= 0)
		close(fd);
	return NULL;
}

static void *tls_relay_main(void *arg)
{
	tls_relay_t *t = arg;
	static uint8_t buf[131072];
	int in_fd = tcp_accept(t->l1), out_fd = tcp_connect(t->l2), n;
	SSL *in = in_fd >= 0 ? SSL_new(t->ctx_r) : NULL, *out = out_fd >= 0 ? SSL_new(t->ctx_r) : NULL;

	if (pthread_getcpuclockid(pthread_self(), &t->relay_clk) || !in || !out || SSL_set_fd(in, in_fd) != 1 ||
	    SSL_set_fd(out, out_fd) != 1 || SSL_accept(in) != 1 || SSL_connect(out) != 1) {
		atomic_store(&t->failed, 1);
		goto finish;
	}
	atomic_store(&t->ready, 1);
	/*
	 * The whole relay: read what arrived (every record already buffered, as our link reads a burst), write it
	 * on in one SSL_write (records of up to 16 KiB, as our link writes a burst).
	 */
	while ((n = SSL_read(in, buf, (int)sizeof(buf) / 2)) > 0) {
		int m;
		while (SSL_has_pending(in) && (size_t)n < sizeof(buf) - 16384 &&
		       (m = SSL_read(in, buf + n, (int)(sizeof(buf) - (size_t)n))) > 0)
			n += m;
		if (SSL_write(out, buf, n) != n)
			break;
	}
	SSL_shutdown(out);
finish:
	SSL_free(in);
	SSL_free(out);
	if (in_fd >= 0)
		close(in_fd);
	if (out_fd >= 0)
		close(out_fd);
	return NULL;
}

static void tls_open(tls_relay_t *t, const ident_t *s, const ident_t *r, const ident_t *d, X509 *root)
{
	uint16_t port;
	int fd;
	uint64_t t0 = mono_ms();
	memset(t, 0, sizeof(*t));
	t->ctx_s = tls_ctx(s, root);
	t->ctx_r = tls_ctx(r, root);
	t->ctx_d = tls_ctx(d, root);
	if (vp_net_listen_tcp("127.0.0.1", 0, 4, 0, &t->l1, &port) || vp_net_listen_tcp("127.0.0.1", 0, 4, 0, &t->l2, &port))
		die("tls baseline listen", NULL);
	if (pthread_create(&t->recv, NULL, tls_recv_main, t) || pthread_create(&t->relay, NULL, tls_relay_main, t))
		die("tls baseline threads", NULL);
	fd = tcp_connect(t->l1);
	t->s_out = fd >= 0 ? SSL_new(t->ctx_s) : NULL;
	if (!t->s_out || SSL_set_fd(t->s_out, fd) != 1 || SSL_connect(t->s_out) != 1)
		die("tls baseline handshake", NULL);
	while (!atomic_load(&t->ready)) {
		if (atomic_load(&t->failed) || mono_ms() - t0 > 10000)
			die("tls baseline handshake", "relay");
		usleep(1000);
	}
}

static void tls_close(tls_relay_t *t)
{
	int fd = SSL_get_fd(t->s_out);
	SSL_shutdown(t->s_out);
	SSL_free(t->s_out);
	shutdown(fd, SHUT_RDWR);
	close(fd);
	pthread_join(t->relay, NULL);
	pthread_join(t->recv, NULL);
	close(t->l1);
	close(t->l2);
	SSL_CTX_free(t->ctx_s);
	SSL_CTX_free(t->ctx_r);
	SSL_CTX_free(t->ctx_d);
}

static void tls_slice(tls_relay_t *t, const msgset_t *ms, uint64_t n, uint32_t window, tally_t *tl)
{
	uint64_t bytes = 0, b0 = atomic_load(&t->rx_bytes), sent = 0, got = 0, c0, c1, t0 = mono_ms();
	uint64_t idx = 0;
	c0 = cpu_of(t->relay_clk);
	while (got < bytes || sent < n) {
		if (mono_ms() - t0 > SLICE_WAIT_MS || atomic_load(&t->failed))
			die("tls baseline slice", ms->name);
		if (sent < n && bytes - got < (uint64_t)window * ms->len[0]) {
			unsigned i = (unsigned)(idx++ % NMSG);
			if (SSL_write(t->s_out, ms->buf[i], (int)ms->len[i]) != (int)ms->len[i])
				die("tls baseline write", NULL);
			bytes += ms->len[i];
			sent++;
		} else {
			struct timespec ts = { 0, 20000 };
			nanosleep(&ts, NULL);
		}
		got = atomic_load(&t->rx_bytes) - b0;
	}
	c1 = cpu_of(t->relay_clk);
	tl->msgs += n;
	tl->cpu_ns += c1 - c0;
}

/* ---- main -------------------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: bench_relay [--messages N] [--slices K] [--window W] [--codec-cpu S] [--kind store|ping|both]\n"
	        "                   [--records N]\n"
	        "\n"
	        "Relay rate of one viprd shard (a real node, one shard, TLS links with overlay certificates) that\n"
	        "forwards signed RELOAD messages from a sender's link to the next hop its routing table gives, per\n"
	        "CPU second of the shard thread; baselines measured in interleaved slices of the same run: the\n"
	        "codec's header-only forward of the same bytes in memory, and a bare TLS SSL_read->SSL_write relay.\n"
	        "Prints `name value unit (baseline value unit, ratio x)`; ratios are ours/baseline, above 1 better.\n"
	        "\n"
	        "  --messages N   messages per slice and kind for ours and the TLS relay (default 20000)\n"
	        "  --slices K     interleaved slices (default 5); one more, unreported, warms up\n"
	        "  --window W     messages the sender keeps beyond what the receiver got (default 192)\n"
	        "  --codec-cpu S  CPU seconds of the codec baseline per slice and kind (default 0.1)\n"
	        "  --kind K       store (ViPR registration Store), ping (small Ping) or both (default)\n"
	        "  --records N    ViPR entries preloaded into the relay's store (default 0)\n"
	        "  -h, --help     this text\n");
}

static void report(const char *name, const char *what, const tally_t *ours, const char *bname, const tally_t *base)
{
	double o = (double)ours->msgs * 1e9 / (double)ours->cpu_ns, b = (double)base->msgs * 1e9 / (double)base->cpu_ns;
	printf("%s_%s %.0f msg/s/core (%s %.0f msg/s/core, ratio %.4fx)\n", name, what, o, bname, b, o / b);
}

int main(int argc, char **argv)
{
	uint64_t nmsg = 20000;
	unsigned slices = 5;
	uint32_t window = 192;
	double codec_cpu = 0.1;
	uint64_t records = 0;
	bool do_store = true, do_ping = true;
	ca_t *ca = NULL;
	ident_t R = { 0 }, D = { 0 }, S = { 0 };
	char rdir[128], ddir[128], path[192], listen[64];
	node_conf_t rc, dc;
	bench_t b = { 0 };
	waiter_t w;
	msgset_t sets[2];
	unsigned nsets = 0;
	tally_t ours[2] = { 0 }, codec[2] = { 0 }, tls[2] = { 0 };
	tls_relay_t tr;
	uint64_t t0;
	int err = 0;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return 0;
		}
		if (!v) {
			usage(stderr);
			return 2;
		}
		i++;
		if (!strcmp(a, "--messages"))
			nmsg = strtoull(v, NULL, 10);
		else if (!strcmp(a, "--slices"))
			slices = (unsigned)strtoul(v, NULL, 10);
		else if (!strcmp(a, "--window"))
			window = (uint32_t)strtoul(v, NULL, 10);
		else if (!strcmp(a, "--records"))
			records = strtoull(v, NULL, 10);
		else if (!strcmp(a, "--codec-cpu"))
			codec_cpu = atof(v);
		else if (!strcmp(a, "--kind")) {
			do_store = !strcmp(v, "store") || !strcmp(v, "both");
			do_ping = !strcmp(v, "ping") || !strcmp(v, "both");
			if (!do_store && !do_ping) {
				fprintf(stderr, "bench_relay: error=bad_argument kind=%s\n", v);
				return 2;
			}
		} else {
			fprintf(stderr, "bench_relay: error=unknown_option option=%s\n", a);
			usage(stderr);
			return 2;
		}
	}
	if (nmsg == 0 || nmsg > 100000000ull || slices == 0 || slices > 1000 || window == 0 || window > 4096 ||
	    codec_cpu <= 0 || codec_cpu > 60 || records > 100000000ull) {
		fprintf(stderr, "bench_relay: error=bad_argument messages=%llu slices=%u window=%u codec_cpu=%g\n",
		        (unsigned long long)nmsg, slices, window, codec_cpu);
		return 2;
	}
	vp_log_setup(VP_LOG_ERROR, stderr);
	snprintf(g_dir, sizeof(g_dir), "/tmp/bench_relay.XXXXXX");
	if (!mkdtemp(g_dir)) {
		g_dir[0] = 0;
		die("mkdtemp", strerror(errno));
	}
	atexit(cleanup);

	/* The overlay: a CA, R and D as nodes with their data_dirs, S as a link client. */
	if (ca_create(OVERLAY, CA_KEY_EC_P256, 86400, &ca))
		die("ca", NULL);
	issue(ca, &R);
	issue(ca, &D);
	issue(ca, &S);
	snprintf(path, sizeof(path), "%s/ca.pem", g_dir);
	if (ca_write_cert(path, ca_cert(ca)))
		die("write ca", path);
	write_node_dir(&R, "relay", rdir, sizeof(rdir));
	write_node_dir(&D, "receiver", ddir, sizeof(ddir));
	if (records)
		preload(rdir, records);

	/* R starts the overlay: its listen address is the document's only bootstrap peer. */
	for (int attempt = 0;; attempt++) {
		int lfd;
		uint16_t port;
		if (vp_net_listen_tcp("127.0.0.1", 0, 1, 0, &lfd, &port))
			die("free port", NULL);
		close(lfd);
		snprintf(listen, sizeof(listen), "127.0.0.1:%u", port);
		node_conf_for(&rc, rdir, listen, listen, true);
		if ((err = node_new(&rc, NULL, &b.r)) == 0)
			break;
		if (attempt == 4)
			die("relay node", vp_strerror(err));
	}
	node_conf_for(&dc, ddir, "127.0.0.1:0", listen, false);
	if ((err = node_new(&dc, NULL, &b.d)))
		die("receiver node", vp_strerror(err));
	if (node_start(b.r) || node_start(b.d))
		die("node start", NULL);

	/* R's shard thread clock, from a completion that runs on that thread. */
	waiter_init(&w);
	t0 = mono_ms();
	for (;;) {
		rl_body_t ping = { .code = RL_PING_REQ };
		if (node_request(b.r, 0, node_vnode_id(b.r, 0), false, &ping, on_self_ping, &w) == 0 &&
		    waiter_wait(&w, STATUS_WAIT_MS) && w.err == 0)
			break;
		if (mono_ms() - t0 > JOIN_WAIT_MS)
			die("relay not running", vp_strerror(w.err));
		usleep(100000);
	}
	b.r_clk = w.clk;

	/* Both in one ring: R's table says D is its successor and predecessor, each with a link up. */
	for (t0 = mono_ms();; usleep(100000)) {
		node_shard_status_t rs = status_of(b.r), ds = status_of(b.d);
		if (rs.state == CHORD_JOINED && ds.state == CHORD_JOINED && rs.table.nsucc >= 1 &&
		    vp_id_eq(&rs.table.succ[0], &D.id) && rs.live_succ >= 1 && ds.table.nsucc >= 1 &&
		    vp_id_eq(&ds.table.succ[0], &R.id))
			break;
		if (mono_ms() - t0 > JOIN_WAIT_MS)
			die("ring not formed", NULL);
	}

	/* S: a link to R with its own overlay certificate. */
	{
		dp_link_conf_t lc;
		dp_cert_store_cfg_t cc = { .overlay = OVERLAY };
		dp_link_ident_t si = { S.cert, S.key, NULL };
		struct sockaddr_storage sa;
		socklen_t sl;
		dp_link_conf_default(&lc);
		if (dp_cert_store_new(&cc, &b.scerts) || dp_cert_store_add_root(b.scerts, ca_cert(ca)) ||
		    dp_link_ctx_new(&lc, b.scerts, &si, &b.sctx) || dp_link_addr_parse(listen, &sa, &sl) ||
		    dp_link_connect(b.sctx, (struct sockaddr *)&sa, sl, &R.id, mono_ms(), &b.sl))
			die("sender link", NULL);
		for (t0 = mono_ms(); dp_link_state(b.sl) != DP_LINK_UP;) {
			sender_io(&b, 10);
			if (mono_ms() - t0 > 10000)
				die("sender link", "not up");
		}
	}
	b.window = window;

	if (do_store)
		build_set(&sets[nsets++], "store", &S, &D.id, true);
	if (do_ping)
		build_set(&sets[nsets++], "ping", &S, &D.id, false);
	tls_open(&tr, &S, &R, &D, ca_cert(ca));

	printf("# one viprd shard (node_new, 1 shard, RocksDB storage service) relaying from a sender's link to the "
	       "next hop of its table; %s, ECDSA P-256 overlay certificates, 127.0.0.1\n",
	       dp_link_tls_version(b.sl));
	printf("# relay shard thread: tid %d (for perf record -t); %llu records in its store\n", (int)w.tid,
	       (unsigned long long)records);
	for (unsigned k = 0; k < nsets; k++)
		printf("# %s: %zu bytes, destination [Resource-ID in the receiver's range, Node-ID], %llu per slice, "
		       "%u slices, window %u\n",
		       sets[k].name, sets[k].len[0], (unsigned long long)nmsg, slices, window);
	fflush(stdout);

	/* Slice 0 warms every path up (caches, buffers, the certificate of the link) and is not counted. */
	for (unsigned s = 0; s <= slices; s++) {
		for (unsigned k = 0; k < nsets; k++) {
			tally_t o = { 0 }, c = { 0 }, t = { 0 };
			ours_slice(&b, &sets[k], s ? nmsg : nmsg / 10 + 1, &o);
			codec_slice(&sets[k], &S.id, s ? codec_cpu : codec_cpu / 10, &c);
			tls_slice(&tr, &sets[k], s ? nmsg : nmsg / 10 + 1, window, &t);
			if (!s)
				continue;
			ours[k].msgs += o.msgs;
			ours[k].cpu_ns += o.cpu_ns;
			codec[k].msgs += c.msgs;
			codec[k].cpu_ns += c.cpu_ns;
			tls[k].msgs += t.msgs;
			tls[k].cpu_ns += t.cpu_ns;
			printf("# slice %u %s: relay %.0f, codec %.0f, tls %.0f msg/s/core\n", s, sets[k].name,
			       (double)o.msgs * 1e9 / (double)o.cpu_ns, (double)c.msgs * 1e9 / (double)c.cpu_ns,
			       (double)t.msgs * 1e9 / (double)t.cpu_ns);
			fflush(stdout);
		}
	}
	for (unsigned k = 0; k < nsets; k++) {
		char name[32];
		snprintf(name, sizeof(name), "relay_%s", sets[k].name);
		report(name, "vs_codec", &ours[k], "codec header-only forward in memory", &codec[k]);
		report(name, "vs_tls", &ours[k], "bare TLS SSL_read->SSL_write relay", &tls[k]);
		printf("# %s: %.2f us of shard CPU per message\n", name, (double)ours[k].cpu_ns / 1e3 / (double)ours[k].msgs);
	}

	tls_close(&tr);
	dp_link_close(b.sl);
	for (t0 = mono_ms(); dp_link_state(b.sl) != DP_LINK_CLOSED && mono_ms() - t0 < 2000;) {
		struct pollfd p = { dp_link_fd(b.sl), (short)(dp_link_events(b.sl) | POLLIN), 0 };
		poll(&p, 1, 10);
		dp_link_io(b.sl, mono_ms(), NULL, NULL);
	}
	dp_link_free(b.sl);
	dp_link_ctx_free(b.sctx);
	dp_cert_store_free(b.scerts);
	/* Let the last status request of the window come back before the shards stop. */
	for (t0 = mono_ms(); atomic_load(&b.dp.pending) && mono_ms() - t0 < STATUS_WAIT_MS;)
		usleep(1000);
	node_leave(b.d, 2000);
	node_leave(b.r, 2000);
	node_free(b.d);
	node_free(b.r);
	for (unsigned k = 0; k < nsets; k++)
		for (unsigned i = 0; i < NMSG; i++)
			free(sets[k].buf[i]);
	ca_free(ca);
	return g_sink == 42 ? 1 : 0; /* keep the codec's work observable */
}
