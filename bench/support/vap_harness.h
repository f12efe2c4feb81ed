/*
 * bench/support/vap_harness.h - scaffolding shared by the VAP server tests and
 * bench_vap: a server on a thread over vap_memstore, raw framed sockets.
 */
#ifndef VP_BENCH_SUPPORT_VAP_HARNESS_H
#define VP_BENCH_SUPPORT_VAP_HARNESS_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "control/vap/vap_client.h"
#include "bench/support/vap_memstore.h"
#include "control/vap/vap_server.h"
#include "common/clock.h"
#include "common/net.h"

typedef struct harness {
	vap_server_t *srv;
	vap_memstore_t *ms;
	pthread_t th;
	bool running;
} harness_t;

static inline void *harness_run(void *arg)
{
	harness_t *h = arg;
	vap_server_run(h->srv);
	return NULL;
}

/* Start a server with \p conf (NULL: defaults) and agents agent0..agent{n-1}, password "pw-<name>". */
static inline int harness_start(harness_t *h, const vap_server_conf_t *conf, unsigned agents, bool async)
{
	vap_server_conf_t c;
	vap_hooks_t hooks;
	char name[32], pw[48];
	int rc;
	memset(h, 0, sizeof(*h));
	if (conf)
		c = *conf;
	else
		vap_server_conf_default(&c);
	c.port = 0;
	if (vap_memstore_new(&h->ms))
		return VP_ENOMEM;
	vap_memstore_hooks(h->ms, &hooks);
	if ((rc = vap_server_create(&c, &hooks, &h->srv)))
		return rc;
	vap_memstore_attach(h->ms, h->srv, async);
	for (unsigned i = 0; i < agents; i++) {
		snprintf(name, sizeof(name), "agent%u", i);
		snprintf(pw, sizeof(pw), "pw-%s", name);
		if ((rc = vap_server_add_agent(h->srv, name, pw)))
			return rc;
	}
	if (pthread_create(&h->th, NULL, harness_run, h))
		return VP_EIO;
	h->running = true;
	return 0;
}

static inline void harness_stop(harness_t *h)
{
	if (h->running) {
		vap_server_stop(h->srv);
		pthread_join(h->th, NULL);
	}
	vap_server_destroy(h->srv);
	vap_memstore_free(h->ms);
	memset(h, 0, sizeof(*h));
}

/* The server's counters (vap_server_get_stats() may be called from any thread). */
static inline void harness_stats(harness_t *h, vap_server_stats_t *st)
{
	vap_server_get_stats(h->srv, st);
}

static inline void client_conf(vap_client_conf_t *cc, const harness_t *h, unsigned agent)
{
	static __thread char name[32], pw[48];
	snprintf(name, sizeof(name), "agent%u", agent);
	snprintf(pw, sizeof(pw), "pw-%s", name);
	memset(cc, 0, sizeof(*cc));
	cc->host = "127.0.0.1";
	cc->port = vap_server_port(h->srv);
	cc->username = name;
	cc->password = pw;
	cc->timeout_ms = 5000;
}

static inline int raw_connect(uint16_t port)
{
	int fd;
	if (vp_net_connect_tcp("127.0.0.1", port, 5000, VP_NET_NUMERIC, &fd))
		return -1;
	if (vp_net_set_timeouts(fd, 5000)) {
		close(fd);
		return -1;
	}
	return fd;
}

static inline int raw_send(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n) {
		ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
		if (w <= 0)
			return -1;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Read one framed message into buf; returns its length, 0 on orderly EOF, -1 on error/timeout. */
static inline long raw_recv_msg(int fd, uint8_t *buf, size_t cap)
{
	size_t have = 0;
	long want = 0;
	for (;;) {
		ssize_t r;
		if (have >= 20) {
			want = vap_frame_len(buf, have);
			if (want < 0 || (size_t)want > cap)
				return -1;
			if ((size_t)want <= have)
				return want;
		}
		r = recv(fd, buf + have, (have < 20 ? 20 : (size_t)want) - have, 0);
		if (r == 0)
			return have ? -1 : 0;
		if (r < 0)
			return -1;
		have += (size_t)r;
	}
}

#endif
