#include "harness.h"

#include "common/errcode.h"
#include "common/log.h"

#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <cmocka.h>

void h_tmpdir(char *out, size_t cap)
{
	const char *base = getenv("TMPDIR");
	snprintf(out, cap, "%s/vppvp-XXXXXX", base && base[0] ? base : "/tmp");
	assert_non_null(mkdtemp(out));
}

void h_rmdir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[512];
	if (!d)
		return;
	while ((e = readdir(d)) != NULL) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(dir);
}

void h_keys(pvp_ticket_keys_t *keys)
{
	memset(keys, 0, sizeof(*keys));
	keys->cur.epoch = 7;
	keys->cur.len = 32;
	memset(keys->cur.key, 0x11, 32);
}

int h_routes(void *arg, const char *number, char uris[][PVP_URI_MAX], size_t max, size_t *n)
{
	const char *host = arg;
	if (max < 1)
		return VP_ESPACE;
	snprintf(uris[0], PVP_URI_MAX, "sips:%s@%s", number, host);
	*n = 1;
	return 0;
}

static void *serve(void *arg)
{
	h_claimant_t *c = arg;
	/* Bounded: at most 64 connections, and the test stops us. */
	while (!__atomic_load_n(&c->stop, __ATOMIC_SEQ_CST) && __atomic_load_n(&c->slots, __ATOMIC_SEQ_CST) < 64) {
		struct pollfd pfd = { .fd = c->lfd, .events = POLLIN };
		struct sockaddr_in peer;
		socklen_t plen = sizeof(peer);
		char pbuf[64];
		int fd, rc, slot;
		unsigned gslot = 0;
		if (c->gate) {
			if (pvp_gate_next(c->gate, 50, &fd, pbuf, &gslot))
				continue;
		} else {
			if (poll(&pfd, 1, 50) <= 0)
				continue;
			/* Non-blocking accept: with several threads only one wins each connection. */
			fd = accept4(c->lfd, (struct sockaddr *)&peer, &plen, 0);
			if (fd < 0)
				continue;
			inet_ntop(AF_INET, &peer.sin_addr, pbuf, sizeof(pbuf));
		}
		slot = __atomic_fetch_add(&c->slots, 1, __ATOMIC_SEQ_CST);
		if (slot >= 64) {
			if (c->gate)
				pvp_gate_done(c->gate, gslot);
			else
				close(fd);
			break;
		}
		rc = pvp_server_handle(c->srv, fd, pbuf, &c->results[slot]);
		if (c->gate)
			pvp_gate_done(c->gate, gslot);
		else
			close(fd);
		__atomic_store_n(&c->rc_last, rc, __ATOMIC_SEQ_CST);
		__atomic_add_fetch(&c->nresults, 1, __ATOMIC_SEQ_CST);
	}
	return NULL;
}

void h_claimant_start(h_claimant_t *c, const pvp_policy_conf_t *pconf, unsigned group_bits)
{
	h_claimant_start_n(c, pconf, group_bits, 1);
}

void h_claimant_start_n(h_claimant_t *c, const pvp_policy_conf_t *pconf, unsigned group_bits, int nthreads)
{
	h_claimant_start_ex(c, pconf, group_bits, nthreads, 0);
}

static void start(h_claimant_t *c, const pvp_policy_conf_t *pconf, unsigned group_bits, int nthreads,
                  unsigned io_timeout_ms, bool gated, const pvp_cc_issuer_t *iss);

void h_claimant_start_ex(h_claimant_t *c, const pvp_policy_conf_t *pconf, unsigned group_bits, int nthreads,
                         unsigned io_timeout_ms)
{
	start(c, pconf, group_bits, nthreads, io_timeout_ms, false, NULL);
}

void h_claimant_start_gated(h_claimant_t *c, const pvp_policy_conf_t *pconf, int nthreads, unsigned io_timeout_ms,
                            bool gated)
{
	start(c, pconf, 0, nthreads, io_timeout_ms, gated, NULL);
}

void h_claimant_start_issuer(h_claimant_t *c, const pvp_policy_conf_t *pconf, const pvp_cc_issuer_t *iss)
{
	start(c, pconf, 0, 1, 0, false, iss);
}

static void start(h_claimant_t *c, const pvp_policy_conf_t *pconf, unsigned group_bits, int nthreads,
                  unsigned io_timeout_ms, bool gated, const pvp_cc_issuer_t *iss)
{
	pvp_vcr_store_conf_t sc;
	pvp_server_conf_t conf;
	struct sockaddr_in a;
	socklen_t alen = sizeof(a);
	pthread_t *th;
	static const uint8_t seed[32] = { 1, 2, 3 };

	signal(SIGPIPE, SIG_IGN);
	memset(c, 0, sizeof(*c));
	h_tmpdir(c->dir, sizeof(c->dir));
	c->clock_ms = T0_MS + 3600 * 1000; /* an hour after the test calls */
	c->clock.now_ms = vp_clock_manual_now;
	c->clock.ctx = &c->clock_ms;
	memset(&sc, 0, sizeof(sc));
	sc.path = c->dir;
	sc.clock = &c->clock;
	assert_int_equal(pvp_vcr_store_open(&sc, &c->store), 0);
	assert_int_equal(pvp_policy_new(pconf, &c->policy), 0);
	h_keys(&c->keys);
	snprintf(c->host, sizeof(c->host), "pbx.example.net");
	memset(&conf, 0, sizeof(conf));
	conf.store = c->store;
	conf.keys = &c->keys;
	conf.policy = c->policy;
	conf.routes = h_routes;
	conf.routes_arg = c->host;
	conf.group_bits = group_bits;
	conf.clock = &c->clock;
	conf.io_timeout_ms = io_timeout_ms ? io_timeout_ms : 5000;
	conf.seed_key = seed;
	conf.cert_issuer = iss;
	assert_int_equal(pvp_server_new(&conf, &c->srv), 0);

	c->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	assert_true(c->lfd >= 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(c->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(c->lfd, 128), 0);
	assert_int_equal(getsockname(c->lfd, (struct sockaddr *)&a, &alen), 0);
	snprintf(c->port, sizeof(c->port), "%u", ntohs(a.sin_port));
	c->target.host = "127.0.0.1";
	c->target.port = c->port;
	c->target.timeout_ms = 5000;
	if (gated) {
		pvp_gate_conf_t gc = { .lfd = c->lfd };
		assert_int_equal(pvp_gate_new(&gc, &c->gate), 0);
	}
	th = calloc((size_t)nthreads, sizeof(*th));
	assert_non_null(th);
	c->nthreads = nthreads;
	for (int i = 0; i < nthreads; i++)
		assert_int_equal(pthread_create(&th[i], NULL, serve, c), 0);
	c->threads = th;
}

void h_claimant_stop(h_claimant_t *c)
{
	pthread_t *th = c->threads;
	__atomic_store_n(&c->stop, 1, __ATOMIC_SEQ_CST);
	for (int i = 0; i < c->nthreads; i++)
		pthread_join(th[i], NULL);
	free(th);
	pvp_gate_free(c->gate);
	close(c->lfd);
	pvp_server_free(c->srv);
	pvp_policy_free(c->policy);
	pvp_vcr_store_close(c->store);
	h_rmdir(c->dir);
}

void h_claimant_add(h_claimant_t *c, const char *called, const char *caller, uint64_t start_ms,
                    uint64_t stop_ms)
{
	pvp_vcr_t r;
	assert_int_equal(pvp_vcr_make(&r, PVP_DIR_TERM, called, caller, start_ms, stop_ms, NULL), 0);
	assert_int_equal(pvp_vcr_store_add(c->store, &r), 0);
}

pvp_vcr_t h_orig(const char *called, const char *caller, uint64_t start_ms, uint64_t stop_ms)
{
	pvp_vcr_t r;
	assert_int_equal(pvp_vcr_make(&r, PVP_DIR_ORIG, called, caller, start_ms, stop_ms, NULL), 0);
	return r;
}

void h_claimant_wait(h_claimant_t *c, int n)
{
	/* Up to 30 s: returns as soon as the results are in, but a starved server thread may lag. */
	for (int i = 0; i < 3000 && __atomic_load_n(&c->nresults, __ATOMIC_SEQ_CST) < n; i++) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	assert_true(__atomic_load_n(&c->nresults, __ATOMIC_SEQ_CST) >= n);
}

void h_orig_side_open(h_orig_side_t *o, const char *dir, const pvp_ledger_conf_t *lc)
{
	pvp_vcr_store_conf_t sc;
	pvp_ledger_conf_t l;
	memset(o, 0, sizeof(*o));
	if (dir && dir[0])
		snprintf(o->dir, sizeof(o->dir), "%s", dir);
	else
		h_tmpdir(o->dir, sizeof(o->dir));
	memset(&sc, 0, sizeof(sc));
	sc.path = o->dir;
	assert_int_equal(pvp_vcr_store_open(&sc, &o->store), 0);
	if (lc)
		l = *lc;
	else
		memset(&l, 0, sizeof(l));
	l.store = o->store;
	assert_int_equal(pvp_ledger_new(&l, &o->ledger), 0);
}

void h_orig_side_close(h_orig_side_t *o, bool keep)
{
	pvp_ledger_free(o->ledger);
	pvp_vcr_store_close(o->store);
	o->ledger = NULL;
	o->store = NULL;
	if (!keep)
		h_rmdir(o->dir);
}
