/*
 * pvp/srp.c - TLS-SRP server and client (OpenSSL) and the ValExchange run.
 *
 * OpenSSL 3.0 deprecates its SRP API but ships it; it is the only TLS-SRP we
 * have (BoringSSL has none).  This is the one file that uses it, so the
 * compatibility level is raised here only.
 */
#define OPENSSL_API_COMPAT 0x10100000L

#include "pvp/pvp.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/srp.h>
#include <openssl/ssl.h>

#include "common/errcode.h"
#include "common/log.h"
#include "common/net.h"

/* TLS_SRP_SHA_WITH_AES_256_CBC_SHA (0xC020), then _128_ (0xC01D); no certificate suites. */
#define PVP_CIPHERS "SRP-AES-256-CBC-SHA:SRP-AES-128-CBC-SHA:@SECLEVEL=0"
#define SALT_LEN 16
#define DEFAULT_LIFETIME_S (30u * 86400)
#define DEFAULT_TIMEOUT_MS 10000
#define DEFAULT_HANDSHAKE_TIMEOUT_MS 3000
#define CANDIDATES_MAX 16

static const char *const outcome_str[] = {
	[PVP_OUT_ROUTES] = "routes",
	[PVP_OUT_PENDING] = "pending",
	[PVP_OUT_REFUSED] = "refused",
	[PVP_OUT_HANDSHAKE_FAILED] = "handshake-failed",
	[PVP_OUT_RATE_LIMITED] = "rate-limited",
	[PVP_OUT_IO] = "io-error",
};

const char *pvp_outcome_str(pvp_outcome_t o)
{
	if ((unsigned)o < sizeof(outcome_str) / sizeof(outcome_str[0]))
		return outcome_str[o];
	return "unknown";
}

/* ---- shared helpers ---------------------------------------------------- */


static const SRP_gN *group_for_bits(unsigned bits)
{
	char id[16];
	snprintf(id, sizeof(id), "%u", bits);
	return SRP_get_default_gN(id);
}

static SSL_CTX *make_ctx(const SSL_METHOD *meth)
{
	SSL_CTX *ctx = SSL_CTX_new(meth);
	if (!ctx)
		return NULL;
	/*
	 * TLS 1.2 only (no SRP in 1.3), SRP suites only, and no resumption: a
	 * resumed session would skip the SRP proof entirely.
	 */
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
	    !SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION) ||
	    !SSL_CTX_set_cipher_list(ctx, PVP_CIPHERS)) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	return ctx;
}

/*
 * Every connection runs on a non-blocking socket against one deadline for
 * the whole exchange (handshake, request, response), so a peer that trickles
 * bytes cannot hold a worker longer than the configured time.
 */
typedef struct io_ctx {
	SSL *ssl;
	int fd;
	uint64_t deadline_ns;
} io_ctx_t;

/*
 * After an SSL call returned \p ret <= 0: wait for the socket if OpenSSL wants
 * it (0 = retry), or return the VP_E* code of a real failure.
 */
static int io_wait(io_ctx_t *io, int ret)
{
	int e = SSL_get_error(io->ssl, ret);
	struct pollfd p = { .fd = io->fd };
	uint64_t now;
	int r;

	if (e == SSL_ERROR_WANT_READ)
		p.events = POLLIN;
	else if (e == SSL_ERROR_WANT_WRITE)
		p.events = POLLOUT;
	else if (e == SSL_ERROR_ZERO_RETURN)
		return VP_ECLOSED;
	else if (e == SSL_ERROR_SYSCALL)
		return ret == 0 || errno == 0 || errno == ECONNRESET || errno == EPIPE ? VP_ECLOSED : VP_EIO;
	else
		return VP_ETLS;
	now = vp_time_mono_ns();
	if (now >= io->deadline_ns)
		return VP_ETIMEOUT;
	r = poll(&p, 1, (int)((io->deadline_ns - now + 999999) / 1000000));
	if (r == 0)
		return VP_ETIMEOUT;
	if (r < 0 && errno != EINTR)
		return VP_EIO;
	return 0;
}

static int io_handshake(io_ctx_t *io, bool server)
{
	for (;;) {
		int r = server ? SSL_accept(io->ssl) : SSL_connect(io->ssl), w;
		if (r == 1)
			return 0;
		if ((w = io_wait(io, r)))
			return w;
	}
}

static int read_full(io_ctx_t *io, uint8_t *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		int r = SSL_read(io->ssl, buf + got, (int)(n - got)), w;
		if (r > 0) {
			got += (size_t)r;
			continue;
		}
		if ((w = io_wait(io, r)))
			return w;
	}
	return 0;
}

static int read_frame(io_ctx_t *io, uint8_t *buf, size_t cap, size_t *len)
{
	uint8_t hdr[2];
	size_t n;
	int rc = read_full(io, hdr, 2);
	if (rc)
		return rc;
	n = (size_t)hdr[0] << 8 | hdr[1];
	if (n > cap || n > PVP_VALX_MAX)
		return VP_ETOOBIG;
	*len = n;
	return read_full(io, buf, n);
}

static int write_frame(io_ctx_t *io, uint8_t *frame, size_t body_len)
{
	frame[0] = (uint8_t)(body_len >> 8);
	frame[1] = (uint8_t)body_len;
	for (;;) {
		int r = SSL_write(io->ssl, frame, (int)(body_len + 2)), w;
		if (r == (int)(body_len + 2))
			return 0;
		if (r > 0)
			return VP_EIO; /* partial writes are off (no SSL_MODE_ENABLE_PARTIAL_WRITE) */
		if ((w = io_wait(io, r)))
			return w;
	}
}

/* Best-effort close_notify, bounded by the same deadline. */
static void io_shutdown(io_ctx_t *io)
{
	for (int i = 0; i < 4; i++) {
		int r = SSL_shutdown(io->ssl);
		if (r != 0 && r != -1)
			return;
		if (r == 0)
			return; /* our close_notify is out; do not wait for the peer's */
		if (io_wait(io, r))
			return;
	}
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	return fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? VP_EIO : 0;
}

static int exporter(SSL *ssl, uint8_t out[PVP_BINDING_LEN])
{
	static const char label[] = PVP_EXPORTER_LABEL;
	/*
	 * A TLS 1.2 exporter binds to this session only with the extended master
	 * secret (RFC 7627 §5.4): without it a relaying claimant could make two
	 * sessions share a master secret (triple handshake) and splice the
	 * ValExchange.  OpenSSL and GnuTLS negotiate it by default; refuse a peer
	 * that does not.
	 */
	if (SSL_get_extms_support(ssl) != 1) {
		vp_log_warn("pvp", "no_extended_master_secret", "action=refuse");
		return VP_ETLS;
	}
	return SSL_export_keying_material(ssl, out, PVP_BINDING_LEN, label, sizeof(label) - 1, NULL,
	                                  0, 0) == 1 ? 0 : VP_ETLS;
}

static void log_ssl_errors(const char *event)
{
	unsigned long e;
	char buf[256];
	while ((e = ERR_get_error()) != 0) {
		ERR_error_string_n(e, buf, sizeof(buf));
		vp_log_debug("pvp", event, "openssl=\"%s\"", buf);
	}
}

/* ---- server ------------------------------------------------------------ */

struct pvp_server {
	pvp_server_conf_t conf;
	SSL_CTX *ctx;
	const SRP_gN *gn;
	uint8_t seed[32];
	pvp_vcr_t decoy;        /* stands in for a missing record, so a miss costs what a hit does */
	pvp_user_t decoy_user;  /* stands in for a malformed username */
};

/* Per-connection state, reachable from the SRP callback through SSL app data. */
typedef struct srv_conn {
	pvp_server_t *srv;
	bool matched;         /* the username selected a real record */
	uint64_t taken_s;     /* when the number's count was taken (for the refund) */
	pvp_user_t user;
	pvp_vcr_t rec;
	int cb_err;
} srv_conn_t;

static int hmac_seed(const pvp_server_t *srv, const char *tag, const char *user, uint8_t out[32])
{
	HMAC_CTX *h = HMAC_CTX_new();
	unsigned int len = 0;
	int ok = h && HMAC_Init_ex(h, srv->seed, sizeof(srv->seed), EVP_sha256(), NULL) &&
	         HMAC_Update(h, (const unsigned char *)tag, strlen(tag) + 1) &&
	         HMAC_Update(h, (const unsigned char *)user, strlen(user)) &&
	         HMAC_Final(h, out, &len) && len == 32;
	HMAC_CTX_free(h);
	return ok ? 0 : VP_ECRYPTO;
}

/*
 * Pick the candidate record for username \p u; false if none serves it.  A
 * miss does the same store scan and rate-limit lookup as a hit (on the decoy
 * number), so the two cost alike.
 */
static bool select_record(srv_conn_t *c, const pvp_user_t *u, uint64_t now_s)
{
	pvp_server_t *srv = c->srv;
	pvp_vcr_t cand[CANDIDATES_MAX];
	size_t n = 0, k = 0;
	unsigned maxc = srv->conf.max_candidates ? srv->conf.max_candidates : 4;
	bool found = false, rate_ok;

	if (u->idx >= maxc || u->idx >= CANDIDATES_MAX)
		return false; /* depends on the configuration only, not on any record */
	if (pvp_vcr_store_find(srv->conf.store, u->bucket, u->sel, cand, CANDIDATES_MAX, &n))
		n = 0;
	for (size_t i = 0; i < n; i++) {
		if (!pvp_method_applies(&cand[i], u->method))
			continue;
		if (k++ == u->idx) {
			c->rec = cand[i];
			found = true;
			break;
		}
	}
	/* A hit counts the guess now (given back if the handshake succeeds); a miss only looks. */
	rate_ok = found ? pvp_policy_rate_take(srv->conf.policy, PVP_RATE_NUMBER, c->rec.called, now_s)
	                : pvp_policy_rate_ok(srv->conf.policy, PVP_RATE_NUMBER, srv->decoy.called, now_s);
	if (found && !rate_ok) {
		vp_log_warn("pvp", "number_rate_limited", "number=%s", c->rec.called);
		return false;
	}
	return found;
}

/* Lower-case hex of HMAC(seed, "fake", user), \p n characters (n < 64): a password nobody knows. */
static int fake_password(const pvp_server_t *srv, const char *user, size_t n, char pass[PVP_PASS_MAX])
{
	static const char hx[] = "0123456789abcdef";
	uint8_t h[32];
	if (hmac_seed(srv, "fake", user, h))
		return VP_ECRYPTO;
	if (n == 0 || n >= 64)
		n = 40;
	for (size_t i = 0; i < n; i++)
		pass[i] = hx[h[i / 2] >> (i % 2 ? 0 : 4) & 15];
	pass[n] = '\0';
	OPENSSL_cleanse(h, sizeof(h));
	return 0;
}

/*
 * The SRP username callback.  An unknown, rate-limited or malformed username
 * gets a simulated user: a salt derived like a real one and a verifier for a
 * password nobody knows, so the handshake fails only at Finished, exactly like
 * a wrong password.  Both paths run the same steps (store scan, rate-limit
 * lookup, password derivation, SRP_create_verifier_BN) so they also cost the
 * same: their time must not tell whether a call to a number took place.
 */
static int srp_user_cb(SSL *s, int *ad, void *arg)
{
	pvp_server_t *srv = arg;
	srv_conn_t *c = SSL_get_app_data(s);
	const char *user = SSL_get_srp_username(s);
	uint8_t saltb[32];
	char pass[PVP_PASS_MAX];
	BIGNUM *salt = NULL, *v = NULL;
	pvp_user_t u;
	bool parsed, found;
	int ret = SSL3_AL_FATAL;

	*ad = SSL_AD_INTERNAL_ERROR;
	if (!c || !user || hmac_seed(srv, "salt", user, saltb))
		return SSL3_AL_FATAL;
	/*
	 * The top bit is set so the salt is exactly SALT_LEN bytes on the wire.
	 * OpenSSL keeps salts as BIGNUMs and drops a leading zero byte when it
	 * hashes x = SHA1(salt | ...), GnuTLS hashes the bytes it was given: with
	 * a zero first byte the two compute different x (§5.1, 1 salt in 256).
	 */
	saltb[0] |= 0x80;
	salt = BN_bin2bn(saltb, SALT_LEN, NULL);
	if (!salt)
		goto out;
	c->matched = false;
	c->taken_s = vp_clock_now_ms(srv->conf.clock) / 1000;
	parsed = pvp_user_parse(user, &u) == 0;
	found = select_record(c, parsed ? &u : &srv->decoy_user, c->taken_s);
	if (parsed && found && pvp_server_password(&c->rec, &u, pass) == 0) {
		c->user = u;
		c->matched = true;
	} else {
		if (found) /* no guess at this number after all */
			pvp_policy_rate_refund(srv->conf.policy, PVP_RATE_NUMBER, c->rec.called, c->taken_s);
		/* Same derivation on the decoy record, then a password nobody knows. */
		if (pvp_server_password(&srv->decoy, &srv->decoy_user, pass) ||
		    fake_password(srv, user, strlen(pass), pass))
			goto out;
	}
	if (!SRP_create_verifier_BN(user, pass, &salt, &v, srv->gn->N, srv->gn->g))
		goto out;
	if (!SSL_set_srp_server_param(s, srv->gn->N, srv->gn->g, salt, v, NULL))
		goto out;
	ret = SSL_ERROR_NONE;
out:
	OPENSSL_cleanse(pass, sizeof(pass));
	OPENSSL_cleanse(&u, sizeof(u));
	BN_clear_free(v);
	BN_free(salt);
	if (ret != SSL_ERROR_NONE)
		c->cb_err = VP_ECRYPTO;
	return ret;
}

/* The decoy record and username (method "a", so the same derivation as most real ones). */
static int make_decoy(pvp_server_t *srv)
{
	static const uint64_t start_ms = 1700000000000ull;
	uint8_t h[32];

	if (pvp_vcr_make(&srv->decoy, PVP_DIR_TERM, "+15555550100", "+15555550101", start_ms,
	                 start_ms + 183000, NULL) ||
	    hmac_seed(srv, "decoy", "", h))
		return VP_ECONFIG;
	memset(&srv->decoy_user, 0, sizeof(srv->decoy_user));
	srv->decoy_user.method = PVP_METHOD_A;
	srv->decoy_user.bucket = (uint32_t)(start_ms / 1000 / PVP_BUCKET_S);
	memcpy(srv->decoy_user.sel, h, PVP_SEL_LEN);
	return 0;
}

int pvp_server_new(const pvp_server_conf_t *conf, pvp_server_t **out)
{
	pvp_server_t *srv;
	unsigned bits;

	*out = NULL;
	if (!conf || !conf->store || !conf->keys || !conf->policy || !conf->routes)
		return VP_ECONFIG;
	bits = conf->group_bits ? conf->group_bits : PVP_GROUP_DEFAULT;
	if (bits < PVP_GROUP_MIN || !group_for_bits(bits)) {
		vp_log_error("pvp", "server_config", "reason=bad_group bits=%u", bits);
		return VP_ECONFIG;
	}
	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return VP_ENOMEM;
	srv->conf = *conf;
	srv->gn = group_for_bits(bits);
	if (conf->seed_key)
		memcpy(srv->seed, conf->seed_key, sizeof(srv->seed));
	else if (RAND_bytes(srv->seed, sizeof(srv->seed)) != 1)
		goto fail;
	if (make_decoy(srv))
		goto fail;
	srv->ctx = make_ctx(TLS_server_method());
	if (!srv->ctx)
		goto fail;
	SSL_CTX_set_srp_username_callback(srv->ctx, srp_user_cb);
	SSL_CTX_set_srp_cb_arg(srv->ctx, srv);
	*out = srv;
	return 0;
fail:
	log_ssl_errors("server_init");
	pvp_server_free(srv);
	return VP_ETLS;
}

void pvp_server_free(pvp_server_t *srv)
{
	if (!srv)
		return;
	SSL_CTX_free(srv->ctx);
	OPENSSL_cleanse(srv->seed, sizeof(srv->seed));
	free(srv);
}

/* Decide the response for a decoded, bound request on a matched record. */
static void decide(pvp_server_t *srv, const srv_conn_t *c, const pvp_valreq_t *q,
                   pvp_valresp_t *resp, pvp_server_result_t *res)
{
	uint64_t now = vp_clock_now_ms(srv->conf.clock) / 1000;
	uint32_t lifetime = srv->conf.ticket_lifetime_s ? srv->conf.ticket_lifetime_s : DEFAULT_LIFETIME_S;
	uint32_t window = srv->conf.accum_window_s ? srv->conf.accum_window_s : DEFAULT_LIFETIME_S;
	uint32_t threshold, e, acc, validations = 1, last_call = (uint32_t)(c->rec.start_ms / 1000);
	pvp_ticket_t t, prev;
	char domain[PVP_DOMAIN_MAX + 1];
	size_t n = 0;
	int rc;

	if (strcmp(q->number, c->rec.called) != 0) {
		resp->reason = PVP_RF_NUMBER;
		goto refuse;
	}
	if (pvp_domain_normalize(q->domain, domain)) {
		resp->reason = PVP_RF_MALFORMED;
		goto refuse;
	}
	snprintf(res->domain, sizeof(res->domain), "%s", domain);
	if (srv->conf.lists ? srv->conf.lists(srv->conf.lists_arg, c->rec.called, domain, &threshold)
	                    : pvp_policy_threshold(srv->conf.policy, domain, &threshold)) {
		resp->reason = PVP_RF_DOMAIN;
		goto refuse;
	}
	e = pvp_entropy_cbits(&c->rec, c->user.method, &srv->conf.entropy);
	acc = e;
	if (q->prev_ticket_len) {
		pvp_ticket_expect_t ex = { .number = c->rec.called, .domain = domain, .ignore_expiry = true };
		pvp_ticket_reason_t tr = pvp_ticket_verify(srv->conf.keys, q->prev_ticket, q->prev_ticket_len,
		                                           now, &ex, &prev);
		if (tr == PVP_TR_OK && (uint64_t)prev.issued + window >= now) {
			/* A call is counted once, however often it is validated (48 h retention). */
			if (last_call > prev.last_call) {
				acc = prev.entropy_cbits + e;
				validations = prev.validations + 1u;
			} else {
				acc = prev.entropy_cbits;
				validations = prev.validations;
				last_call = prev.last_call;
			}
		} else {
			vp_log_info("pvp", "prev_ticket_ignored", "domain=%s reason=%s", domain,
			            tr == PVP_TR_OK ? "too-old" : pvp_ticket_reason_str(tr));
		}
	}
	if (acc > 65535)
		acc = 65535;
	if (validations > 65535)
		validations = 65535;
	memset(&t, 0, sizeof(t));
	t.flags = acc >= threshold ? PVP_TICKET_F_ROUTES : 0;
	t.issued = (uint32_t)now;
	t.expires = (uint32_t)(now + lifetime);
	t.last_call = last_call;
	t.entropy_cbits = (uint16_t)acc;
	t.validations = (uint16_t)validations;
	memcpy(t.number, c->rec.called, sizeof(t.number));
	memcpy(t.domain, domain, sizeof(t.domain));
	if (t.flags & PVP_TICKET_F_ROUTES) {
		rc = srv->conf.routes(srv->conf.routes_arg, c->rec.called, resp->uris, PVP_URIS_MAX, &n);
		if (rc || n == 0 || n > PVP_URIS_MAX) {
			vp_log_error("pvp", "routes_failed", "number=%s err=%s", c->rec.called, vp_errname(rc));
			resp->reason = PVP_RF_INTERNAL;
			goto refuse;
		}
		resp->nuris = n;
	}
	rc = pvp_ticket_issue(srv->conf.keys, &t, resp->ticket, sizeof(resp->ticket), &resp->ticket_len);
	if (rc) {
		resp->reason = PVP_RF_INTERNAL;
		resp->nuris = 0;
		goto refuse;
	}
	resp->status = (t.flags & PVP_TICKET_F_ROUTES) ? PVP_ST_ROUTES : PVP_ST_PENDING;
	resp->expires = t.expires;
	resp->entropy_cbits = t.entropy_cbits;
	resp->threshold_cbits = threshold > 65535 ? 65535 : (uint16_t)threshold;
	res->outcome = resp->status == PVP_ST_ROUTES ? PVP_OUT_ROUTES : PVP_OUT_PENDING;
	res->entropy_cbits = acc;
	return;
refuse:
	resp->status = PVP_ST_REFUSED;
	resp->nuris = 0;
	resp->ticket_len = 0;
	res->outcome = PVP_OUT_REFUSED;
	res->reason = resp->reason;
}

int pvp_server_handle(pvp_server_t *srv, int fd, const char *peer, pvp_server_result_t *res_out)
{
	pvp_server_result_t rtmp, *res = res_out ? res_out : &rtmp;
	uint64_t now_s = vp_clock_now_ms(srv->conf.clock) / 1000;
	srv_conn_t c;
	io_ctx_t io;
	SSL *ssl = NULL;
	uint8_t binding[PVP_BINDING_LEN], buf[2 + PVP_VALX_MAX];
	pvp_valreq_t *q = NULL;
	pvp_valresp_t *resp = NULL;
	size_t len;
	int rc = 0, r;

	memset(res, 0, sizeof(*res));
	memset(&c, 0, sizeof(c));
	c.srv = srv;
	if (!peer)
		peer = "-";
	/*
	 * Count the guess before the handshake (given back if it succeeds), so
	 * concurrent handshakes from one peer cannot get past its limit.
	 */
	if (!pvp_policy_rate_take(srv->conf.policy, PVP_RATE_PEER, peer, now_s)) {
		res->outcome = PVP_OUT_RATE_LIMITED;
		vp_log_warn("pvp", "peer_rate_limited", "peer=%s", peer);
		return 0;
	}
	io.fd = fd;
	io.deadline_ns = vp_time_mono_ns() +
	                 (uint64_t)(srv->conf.io_timeout_ms ? srv->conf.io_timeout_ms : DEFAULT_TIMEOUT_MS) * 1000000;
	ssl = SSL_new(srv->ctx);
	if (!ssl || !SSL_set_fd(ssl, fd) || set_nonblock(fd)) {
		pvp_policy_rate_refund(srv->conf.policy, PVP_RATE_PEER, peer, now_s); /* no guess made */
		rc = ssl ? VP_EIO : VP_ETLS;
		goto out;
	}
	io.ssl = ssl;
	SSL_set_app_data(ssl, &c);
	/* The handshake gets its own, shorter bound: a stalled peer frees the worker early. */
	{
		uint64_t conn_deadline = io.deadline_ns;
		uint64_t hs = vp_time_mono_ns() +
		              (uint64_t)(srv->conf.handshake_timeout_ms ? srv->conf.handshake_timeout_ms
		                                                        : DEFAULT_HANDSHAKE_TIMEOUT_MS) * 1000000;
		if (hs < io.deadline_ns)
			io.deadline_ns = hs;
		r = io_handshake(&io, true);
		io.deadline_ns = conn_deadline;
	}
	if (r) {
		res->outcome = PVP_OUT_HANDSHAKE_FAILED;
		if (c.matched)
			snprintf(res->number, sizeof(res->number), "%s", c.rec.called);
		log_ssl_errors("server_handshake");
		ERR_clear_error();
		/* Already counted by the takes at accept and in the SRP callback. */
		vp_log_info("pvp", "handshake_failed", "peer=%s matched=%d", peer, c.matched);
		rc = c.cb_err;
		goto out;
	}
	if (!c.matched) {
		/* Cannot happen: a simulated verifier has no known password. */
		res->outcome = PVP_OUT_HANDSHAKE_FAILED;
		goto out;
	}
	/* The right secret: not a failed guess. */
	pvp_policy_rate_refund(srv->conf.policy, PVP_RATE_PEER, peer, now_s);
	pvp_policy_rate_refund(srv->conf.policy, PVP_RATE_NUMBER, c.rec.called, c.taken_s);
	snprintf(res->number, sizeof(res->number), "%s", c.rec.called);
	res->method = c.user.method;
	q = calloc(1, sizeof(*q));
	resp = calloc(1, sizeof(*resp));
	if (!q || !resp) {
		rc = VP_ENOMEM;
		goto out;
	}
	if ((rc = exporter(ssl, binding)))
		goto out;
	memcpy(resp->binding, binding, sizeof(binding));
	rc = read_frame(&io, buf, PVP_VALX_MAX, &len);
	if (rc) {
		res->outcome = PVP_OUT_IO;
		rc = 0;
		goto out;
	}
	rc = pvp_valreq_decode(buf, len, q);
	if (rc) {
		resp->status = PVP_ST_REFUSED;
		resp->reason = rc == VP_EUNSUPPORTED ? PVP_RF_VERSION : PVP_RF_MALFORMED;
		res->outcome = PVP_OUT_REFUSED;
		res->reason = resp->reason;
	} else if (CRYPTO_memcmp(q->binding, binding, sizeof(binding)) != 0) {
		resp->status = PVP_ST_REFUSED;
		resp->reason = PVP_RF_BINDING;
		res->outcome = PVP_OUT_REFUSED;
		res->reason = resp->reason;
	} else {
		decide(srv, &c, q, resp, res);
	}
	rc = pvp_valresp_encode(resp, buf + 2, sizeof(buf) - 2, &len);
	if (rc)
		goto out;
	if (write_frame(&io, buf, len)) {
		res->outcome = PVP_OUT_IO;
		goto out;
	}
	/* §6.1: a client may now ask for a certificate; one that wants none closes (read fails, nothing sent). */
	if (srv->conf.cert_issuer && resp->status == PVP_ST_ROUTES && read_frame(&io, buf, PVP_VALX_MAX, &len) == 0) {
		pvp_cc_refusal_t why;
		uint8_t *o = malloc(2 + PVP_VALX_MAX);
		if (o && pvp_cc_answer(srv->conf.cert_issuer, buf, len, res->number, res->domain, now_s, resp->expires,
		                       o + 2, PVP_VALX_MAX, &len, &why) == 0)
			(void)write_frame(&io, o, len);
		free(o);
	}
	io_shutdown(&io);
	vp_log_info("pvp", "validation", "peer=%s number=%s domain=%s method=%c outcome=%s reason=%s entropy_cbits=%u",
	            peer, res->number, res->domain[0] ? res->domain : "-", pvp_method_letter(res->method),
	            pvp_outcome_str(res->outcome), pvp_refusal_str(res->reason), res->entropy_cbits);
out:
	OPENSSL_cleanse(buf, sizeof(buf));
	free(q);
	free(resp);
	SSL_free(ssl);
	ERR_clear_error();
	return rc;
}

/* ---- client ------------------------------------------------------------ */

struct pvp_client {
	pvp_client_conf_t conf;
	char domain[PVP_DOMAIN_MAX + 1];
	SSL_CTX *ctx;
	char pass[PVP_PASS_MAX];
};

static char *client_pwd_cb(SSL *s, void *arg)
{
	pvp_client_t *cli = arg;
	(void)s;
	return OPENSSL_strdup(cli->pass);
}

/* What one client handshake got to, from the handshake messages seen (msg callback). */
typedef struct cli_stage {
	bool salt_bad;   /* ServerKeyExchange salt empty or with a leading zero byte */
	bool cke_sent;   /* our ClientKeyExchange went out: the key exchange is complete */
	bool alert_rcvd; /* the server sent an alert */
} cli_stage_t;

/*
 * Watch the handshake.  The only field read from a message is the SRP salt of
 * ServerKeyExchange (RFC 5054 §2.5.3: N<1..2^16-1>, g<1..2^16-1>, s<1..2^8-1>,
 * B...), which OpenSSL parses but keeps as a BIGNUM, so its leading zero bytes
 * are gone by the time anything else could look: the bytes are checked here,
 * bounds-checked against the message length.
 */
static void client_msg_cb(int write_p, int version, int content_type, const void *buf, size_t len, SSL *ssl,
                          void *arg)
{
	const uint8_t *b = buf;
	cli_stage_t *st = arg;
	size_t off, n;
	(void)version;
	(void)ssl;
	if (content_type == SSL3_RT_ALERT && !write_p) {
		st->alert_rcvd = true;
		return;
	}
	if (content_type != SSL3_RT_HANDSHAKE || len < 4)
		return;
	if (write_p && b[0] == SSL3_MT_CLIENT_KEY_EXCHANGE) {
		st->cke_sent = true;
		return;
	}
	if (write_p || b[0] != SSL3_MT_SERVER_KEY_EXCHANGE)
		return;
	off = 4;
	for (int i = 0; i < 2; i++) { /* N, g */
		if (off + 2 > len)
			goto bad;
		n = (size_t)b[off] << 8 | b[off + 1];
		off += 2 + n;
	}
	if (off + 1 > len)
		goto bad;
	n = b[off];
	if (n == 0 || off + 1 + n > len || b[off + 1] == 0)
		goto bad;
	return;
bad:
	st->salt_bad = true;
}

/*
 * SRP parameter check (client).  Setting this callback replaces OpenSSL's own
 * known-group check, so it is done here too; a salt with a leading zero byte
 * is refused before our proof is sent: OpenSSL would hash it without that
 * byte, so even the right password would fail at Finished and look like a
 * wrong one (§5.1).
 */
static int client_param_cb(SSL *s, void *arg)
{
	cli_stage_t *st = SSL_get_app_data(s);
	(void)arg;
	if (!st || st->salt_bad) {
		vp_log_warn("pvp", "server_salt_refused", "reason=leading_zero_byte");
		return 0;
	}
	return SRP_check_known_gN_param(SSL_get_srp_g(s), SSL_get_srp_N(s)) != NULL ? 1 : 0;
}

int pvp_client_new(const pvp_client_conf_t *conf, pvp_client_t **out)
{
	pvp_client_t *cli;
	unsigned bits;
	*out = NULL;
	if (!conf || !conf->domain || !conf->ledger)
		return VP_ECONFIG;
	bits = conf->min_group_bits ? conf->min_group_bits : PVP_GROUP_MIN;
	if (bits < PVP_GROUP_MIN)
		return VP_ECONFIG;
	cli = calloc(1, sizeof(*cli));
	if (!cli)
		return VP_ENOMEM;
	cli->conf = *conf;
	cli->conf.min_group_bits = bits;
	if (!cli->conf.min_entropy_cbits)
		cli->conf.min_entropy_cbits = 1600;
	if (pvp_domain_normalize(conf->domain, cli->domain)) {
		free(cli);
		return VP_ECONFIG;
	}
	cli->ctx = make_ctx(TLS_client_method());
	if (!cli->ctx || !SSL_CTX_set_srp_strength(cli->ctx, (int)bits) ||
	    !SSL_CTX_set_srp_client_pwd_callback(cli->ctx, client_pwd_cb) ||
	    !SSL_CTX_set_srp_verify_param_callback(cli->ctx, client_param_cb) ||
	    !SSL_CTX_set_srp_cb_arg(cli->ctx, cli)) {
		log_ssl_errors("client_init");
		pvp_client_free(cli);
		return VP_ETLS;
	}
	*out = cli;
	return 0;
}

void pvp_client_free(pvp_client_t *cli)
{
	if (!cli)
		return;
	SSL_CTX_free(cli->ctx);
	OPENSSL_cleanse(cli->pass, sizeof(cli->pass));
	free(cli);
}

/*
 * One handshake + ValExchange.  Returns 0 (exchange done), VP_EAUTH (the
 * server answered but the proof failed), VP_ETLS (TLS refused, e.g. a weak
 * group: retrying cannot help), or a transport error.
 */
/* §6.1: after routes, ask for a client certificate; any failure leaves the validation as it was, without one. */
static void client_cert(pvp_client_t *cli, io_ctx_t *io, const char *number, uint8_t *buf, pvp_validation_t *out)
{
	pvp_cc_refusal_t why = PVP_CCR_NONE;
	uint8_t *csr = malloc(PVP_CC_DER_MAX);
	size_t len, csr_len;
	int rc = VP_ENOMEM;
	if (csr && !(rc = pvp_cc_csr_make(cli->conf.cert_key, cli->domain, csr, PVP_CC_DER_MAX, &csr_len)) &&
	    !(rc = pvp_cc_req_encode(csr, csr_len, buf + 2, PVP_VALX_MAX, &len)) && !(rc = write_frame(io, buf, len)) &&
	    !(rc = read_frame(io, buf, PVP_VALX_MAX, &len)))
		rc = pvp_cc_accept(buf, len, cli->conf.cert_key, number, cli->domain, out->cert, sizeof(out->cert),
		                   &out->cert_len, &why);
	if (rc) {
		out->cert_len = 0;
		vp_log_warn("pvp", "client_cert_failed", "number=%s err=%s reason=%s", number, vp_errname(rc),
		            pvp_cc_refusal_str(why));
	}
	free(csr);
}

static int client_try(pvp_client_t *cli, const pvp_vcr_t *r, const char *user,
                      pvp_connect_fn connect_fn, void *connect_arg, const uint8_t *prev_ticket,
                      size_t prev_len, pvp_validation_t *vout, bool *authenticated, bool *guessed)
{
	pvp_valresp_t *resp = &vout->resp;
	cli_stage_t stage = { 0 };
	pvp_valreq_t *q = NULL;
	uint8_t buf[2 + PVP_VALX_MAX], binding[PVP_BINDING_LEN];
	io_ctx_t io;
	SSL *ssl = NULL;
	size_t len;
	int fd = -1, rc, ret;

	rc = connect_fn(connect_arg, &fd);
	if (rc)
		return rc;
	io.fd = fd;
	io.deadline_ns = vp_time_mono_ns() +
	                 (uint64_t)(cli->conf.io_timeout_ms ? cli->conf.io_timeout_ms : DEFAULT_TIMEOUT_MS) * 1000000;
	/* The username is copied into the SSL at SSL_new(): set it on the context first. */
	if (!SSL_CTX_set_srp_username(cli->ctx, (char *)user) || !(ssl = SSL_new(cli->ctx)) ||
	    !SSL_set_fd(ssl, fd) || set_nonblock(fd)) {
		rc = VP_ETLS;
		goto out;
	}
	io.ssl = ssl;
	SSL_set_app_data(ssl, &stage);
	SSL_set_msg_callback(ssl, client_msg_cb);
	SSL_set_msg_callback_arg(ssl, &stage);
	ret = io_handshake(&io, false);
	if (ret) {
		unsigned long e = ERR_peek_error();
		int reason = ERR_GET_REASON(e);
		/*
		 * Outcome classes (§5.9): our own refusal of the server's parameters
		 * is a protocol failure (VP_ETLS, definite); a failure after the key
		 * exchange completed with an alert or a failed Finished/record check
		 * is the proof failing (VP_EAUTH, definite); anything else (connect,
		 * reset, timeout, an alert before the key exchange, a silent close
		 * after it) is transport (retried).
		 */
		if (stage.salt_bad || reason == SSL_R_BAD_SRP_PARAMETERS || reason == SSL_R_INSUFFICIENT_SECURITY ||
		    reason == SSL_R_NO_SHARED_CIPHER || reason == SSL_R_WRONG_VERSION_NUMBER ||
		    reason == SSL_R_CALLBACK_FAILED)
			rc = VP_ETLS;
		else if (stage.cke_sent && (stage.alert_rcvd || ret == VP_ETLS))
			rc = VP_EAUTH;
		else
			rc = ret == VP_ETIMEOUT ? VP_ETIMEOUT : VP_ECLOSED;
		if (stage.cke_sent)
			*guessed = true;
		log_ssl_errors("client_handshake");
		goto out;
	}
	*guessed = true;
	*authenticated = true;
	q = calloc(1, sizeof(*q));
	if (!q) {
		rc = VP_ENOMEM;
		goto out;
	}
	if ((rc = exporter(ssl, binding)))
		goto out;
	memcpy(q->binding, binding, sizeof(binding));
	memcpy(q->number, r->called, sizeof(q->number));
	memcpy(q->domain, cli->domain, sizeof(q->domain));
	if (prev_ticket && prev_len) {
		if (prev_len > sizeof(q->prev_ticket)) {
			rc = VP_EINVAL;
			goto out;
		}
		memcpy(q->prev_ticket, prev_ticket, prev_len);
		q->prev_ticket_len = prev_len;
	}
	if ((rc = pvp_valreq_encode(q, buf + 2, sizeof(buf) - 2, &len)) || (rc = write_frame(&io, buf, len)))
		goto out;
	if ((rc = read_frame(&io, buf, PVP_VALX_MAX, &len)))
		goto out;
	if ((rc = pvp_valresp_decode(buf, len, resp))) {
		rc = VP_EMALFORMED;
		goto out;
	}
	if (CRYPTO_memcmp(resp->binding, binding, sizeof(binding)) != 0) {
		vp_log_warn("pvp", "binding_mismatch", "number=%s", r->called);
		rc = VP_ETLS;
		goto out;
	}
	if (cli->conf.cert_key && resp->status == PVP_ST_ROUTES)
		client_cert(cli, &io, r->called, buf, vout);
	io_shutdown(&io);
	rc = 0;
out:
	free(q);
	SSL_free(ssl);
	ERR_clear_error();
	OPENSSL_cleanse(buf, sizeof(buf));
	if (fd >= 0)
		close(fd);
	return rc;
}

/*
 * The originating-side rule (§5.9), after a completed ValExchange with
 * method \p m: count our call in the ledger and accept routes only if the
 * chain's credit reaches our threshold.
 */
static int apply_own_threshold(pvp_client_t *cli, const char *claimant, const pvp_vcr_t *r, pvp_method_t m,
                               uint64_t now_s, pvp_validation_t *out)
{
	uint32_t e = pvp_entropy_cbits(r, m, &cli->conf.entropy), credit = 0;
	int rc;
	out->call_cbits = e;
	out->threshold_cbits = cli->conf.min_entropy_cbits;
	if (out->resp.status == PVP_ST_REFUSED)
		return 0; /* nothing granted, nothing counted */
	rc = pvp_ledger_credit(cli->conf.ledger, r->called, claimant, (uint32_t)(r->start_ms / 1000), e, now_s,
	                       &credit, NULL);
	out->credit_cbits = credit;
	if (rc)
		return rc;
	if (out->resp.status == PVP_ST_ROUTES && credit < cli->conf.min_entropy_cbits) {
		out->withheld = true;
		out->resp.status = PVP_ST_PENDING;
		out->resp.nuris = 0;
		memset(out->resp.uris, 0, sizeof(out->resp.uris));
		out->cert_len = 0; /* a certificate admits calls as routes do */
		vp_log_warn("pvp", "routes_withheld", "number=%s claimant=%s call_cbits=%u credit_cbits=%u threshold_cbits=%u",
		            r->called, claimant, e, credit, cli->conf.min_entropy_cbits);
	}
	return 0;
}

int pvp_client_validate(pvp_client_t *cli, const char *claimant, const pvp_vcr_t *r, unsigned methods,
                        pvp_connect_fn connect_fn, void *connect_arg, const uint8_t *prev_ticket,
                        size_t prev_len, pvp_validation_t *out)
{
	static const pvp_method_t by_priority[] = { PVP_METHOD_A, PVP_METHOD_B };
	unsigned max_shift = cli->conf.max_shift == PVP_NO_SHIFT ? 0 : cli->conf.max_shift ? cli->conf.max_shift : 1;
	unsigned max_cand = cli->conf.max_candidates ? cli->conf.max_candidates : 2;
	unsigned max_tries = cli->conf.max_tries ? cli->conf.max_tries : 4;
	bool any = false;
	char user[PVP_USER_MAX];

	memset(out, 0, sizeof(*out));
	if (!claimant || !claimant[0])
		return VP_EINVAL;
	for (size_t mi = 0; mi < sizeof(by_priority) / sizeof(by_priority[0]); mi++) {
		pvp_method_t m = by_priority[mi];
		unsigned tries = 0;
		if (!(methods & PVP_MBIT(m)) || !pvp_method_applies(r, m))
			continue;
		any = true;
		/*
		 * Cheapest explanations first: level L tries every (candidate i,
		 * shift s) with i + |s| = L, later candidates first (two calls to one
		 * number in an hour are commoner than a clock off by over 30 s).
		 */
		for (unsigned level = 0; level < max_cand + max_shift && tries < max_tries; level++) {
			for (unsigned k = 0; k < 2 * max_cand && tries < max_tries; k++) {
				unsigned idx = max_cand - 1 - k / 2, mag;
				uint64_t now_s = vp_clock_now_ms(cli->conf.clock) / 1000;
				bool guessed = false;
				int shift, rc, lrc;
				if (idx > level || level - idx > max_shift)
					continue;
				mag = level - idx;
				if (mag == 0 && k % 2)
					continue; /* shift 0 has one sign */
				shift = k % 2 ? (int)mag : -(int)mag;
				rc = pvp_client_creds(r, m, idx, shift, user, cli->pass);
				if (rc)
					return rc;
				/* The guess is on the books before the claimant can test it. */
				rc = pvp_ledger_take(cli->conf.ledger, r->called, claimant, now_s);
				if (rc) {
					OPENSSL_cleanse(cli->pass, sizeof(cli->pass));
					vp_log_warn("pvp", "validation_stopped", "number=%s claimant=%s err=%s handshakes=%u",
					            r->called, claimant, vp_errname(rc), out->handshakes);
					return rc;
				}
				tries++;
				out->handshakes++;
				rc = client_try(cli, r, user, connect_fn, connect_arg, prev_ticket, prev_len,
				                out, &out->authenticated, &guessed);
				OPENSSL_cleanse(cli->pass, sizeof(cli->pass));
				lrc = pvp_ledger_settle(cli->conf.ledger, r->called, claimant, now_s,
				                        out->authenticated ? PVP_LEDGER_SUCCEEDED
				                        : guessed     ? PVP_LEDGER_FAILED
				                                      : PVP_LEDGER_NO_GUESS);
				if (lrc)
					return lrc;
				if (rc == 0) {
					out->method = m;
					if ((rc = apply_own_threshold(cli, claimant, r, m, now_s, out)))
						return rc;
					vp_log_info("pvp", "validated",
					            "number=%s claimant=%s method=%c status=%u handshakes=%u credit_cbits=%u",
					            r->called, claimant, pvp_method_letter(m), out->resp.status,
					            out->handshakes, out->credit_cbits);
					return 0;
				}
				if (rc != VP_EAUTH) {
					vp_log_info("pvp", "validation_aborted", "number=%s err=%s", r->called,
					            vp_errname(rc));
					return rc;
				}
				out->failed_handshakes++;
			}
		}
	}
	if (!any)
		return VP_EPERM;
	vp_log_info("pvp", "validation_failed", "number=%s handshakes=%u", r->called, out->handshakes);
	return VP_EAUTH;
}

int pvp_tcp_connect(void *arg, int *fd_out)
{
	const pvp_tcp_target_t *t = arg;
	unsigned ms = t->timeout_ms ? t->timeout_ms : DEFAULT_TIMEOUT_MS;
	uint16_t port;
	int rc;

	*fd_out = -1;
	/* A claimant's address comes from the overlay: numeric only, never a DNS lookup. */
	if (vp_net_parse_port(t->port, &port))
		return VP_EINVAL;
	if ((rc = vp_net_connect_tcp(t->host, port, ms, VP_NET_NUMERIC, fd_out)))
		return rc;
	if (vp_net_set_timeouts(*fd_out, ms)) {
		close(*fd_out);
		*fd_out = -1;
		return VP_EIO;
	}
	return 0;
}
