/*
 * pvp/gate.c - the PVP accept gate (see header).
 */
#include "pvp/gate.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/errcode.h"
#include "common/log.h"

#define LISTEN_TAG UINT64_MAX
#define SLICE_MS 50 /* longest single wait: idle connections are closed on time even without events */

typedef enum slot_state { S_FREE = 0, S_WAITING, S_READY, S_BUSY } slot_state_t;

typedef struct slot {
	slot_state_t st;
	int fd;
	uint64_t since_ms;            /* accepted (monotonic) */
	char peer[PVP_PEER_MAX];      /* address text */
	char key[PVP_PEER_MAX];       /* limit key */
} slot_t;

struct pvp_gate {
	pvp_gate_conf_t conf;
	int ep;
	pthread_mutex_t lock;
	slot_t *slots;
	pvp_gate_stats_t stats;
};

void pvp_peer_key(const char *addr, char out[PVP_PEER_MAX])
{
	struct in6_addr a;
	char buf[INET6_ADDRSTRLEN];
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	if (strchr(addr, ':') && inet_pton(AF_INET6, addr, &a) == 1) {
		if (!memcmp(a.s6_addr, mapped, sizeof(mapped))) {
			inet_ntop(AF_INET, a.s6_addr + 12, out, PVP_PEER_MAX);
			return;
		}
		memset(a.s6_addr + 8, 0, 8);
		inet_ntop(AF_INET6, &a, buf, sizeof(buf));
		snprintf(out, PVP_PEER_MAX, "%s/64", buf);
		return;
	}
	snprintf(out, PVP_PEER_MAX, "%s", addr);
}

static uint64_t mono_ms(void)
{
	return vp_time_mono_ns() / 1000000;
}

int pvp_gate_new(const pvp_gate_conf_t *conf, pvp_gate_t **out)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = LISTEN_TAG };
	pvp_gate_t *g;
	int fl;
	*out = NULL;
	if (!conf || conf->lfd < 0)
		return VP_EINVAL;
	if (!(g = calloc(1, sizeof(*g))))
		return VP_ENOMEM;
	g->conf = *conf;
	if (!g->conf.max_pending)
		g->conf.max_pending = 1024;
	if (!g->conf.max_per_peer)
		g->conf.max_per_peer = 8;
	if (!g->conf.max_busy_per_peer)
		g->conf.max_busy_per_peer = 1;
	if (!g->conf.first_byte_ms)
		g->conf.first_byte_ms = 2000;
	g->slots = calloc(g->conf.max_pending, sizeof(slot_t));
	if (!g->slots) {
		free(g);
		return VP_ENOMEM;
	}
	fl = fcntl(conf->lfd, F_GETFL);
	g->ep = epoll_create1(EPOLL_CLOEXEC);
	if (fl < 0 || fcntl(conf->lfd, F_SETFL, fl | O_NONBLOCK) < 0 || g->ep < 0 ||
	    epoll_ctl(g->ep, EPOLL_CTL_ADD, conf->lfd, &ev) < 0) {
		if (g->ep >= 0)
			close(g->ep);
		free(g->slots);
		free(g);
		return VP_EIO;
	}
	pthread_mutex_init(&g->lock, NULL);
	*out = g;
	return 0;
}

void pvp_gate_free(pvp_gate_t *g)
{
	if (!g)
		return;
	for (unsigned i = 0; i < g->conf.max_pending; i++)
		if (g->slots[i].st != S_FREE)
			close(g->slots[i].fd);
	close(g->ep);
	pthread_mutex_destroy(&g->lock);
	free(g->slots);
	free(g);
}

static void release(pvp_gate_t *g, slot_t *s)
{
	if (s->st == S_WAITING || s->st == S_READY)
		epoll_ctl(g->ep, EPOLL_CTL_DEL, s->fd, NULL);
	close(s->fd);
	memset(s, 0, sizeof(*s));
}

/* Accept everything queued (caller holds the lock). */
static void accept_all(pvp_gate_t *g, uint64_t now)
{
	for (;;) {
		struct sockaddr_storage sa;
		socklen_t len = sizeof(sa);
		char peer[PVP_PEER_MAX] = "?", key[PVP_PEER_MAX];
		unsigned held = 0, free_slot = g->conf.max_pending;
		struct epoll_event ev;
		int fd = accept4(g->conf.lfd, (struct sockaddr *)&sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return; /* EAGAIN, or an error the next wake-up will see again */
		if (sa.ss_family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)&sa)->sin_addr, peer, sizeof(peer));
		else if (sa.ss_family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&sa)->sin6_addr, peer, sizeof(peer));
		pvp_peer_key(peer, key);
		for (unsigned i = 0; i < g->conf.max_pending; i++) {
			if (g->slots[i].st == S_FREE) {
				if (free_slot == g->conf.max_pending)
					free_slot = i;
			} else if (!strcmp(g->slots[i].key, key)) {
				held++;
			}
		}
		g->stats.accepted++;
		if (held >= g->conf.max_per_peer || free_slot == g->conf.max_pending) {
			if (held >= g->conf.max_per_peer)
				g->stats.refused_peer++;
			else
				g->stats.refused_full++;
			vp_log_debug("pvp", "gate_refused", "peer=%s held=%u", peer, held);
			close(fd);
			continue;
		}
		slot_t *s = &g->slots[free_slot];
		s->fd = fd;
		s->since_ms = now;
		snprintf(s->peer, sizeof(s->peer), "%s", peer);
		snprintf(s->key, sizeof(s->key), "%s", key);
		ev.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT;
		ev.data.u64 = free_slot;
		if (epoll_ctl(g->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd);
			memset(s, 0, sizeof(*s));
			continue;
		}
		s->st = S_WAITING;
	}
}

/* Close the connections that sent nothing in time; pick a ready one a worker may take. */
static int pick(pvp_gate_t *g, uint64_t now)
{
	int best = -1;
	for (unsigned i = 0; i < g->conf.max_pending; i++) {
		slot_t *s = &g->slots[i];
		if (s->st == S_WAITING && now - s->since_ms >= g->conf.first_byte_ms) {
			vp_log_info("pvp", "gate_idle_closed", "peer=%s ms=%llu", s->peer,
			            (unsigned long long)(now - s->since_ms));
			g->stats.idle_closed++;
			release(g, s);
			continue;
		}
		if (s->st == S_READY && (best < 0 || s->since_ms < g->slots[best].since_ms)) {
			unsigned busy = 0;
			for (unsigned k = 0; k < g->conf.max_pending; k++)
				busy += g->slots[k].st == S_BUSY && !strcmp(g->slots[k].key, s->key);
			if (busy < g->conf.max_busy_per_peer)
				best = (int)i;
		}
	}
	return best;
}

int pvp_gate_next(pvp_gate_t *g, unsigned wait_ms, int *fd, char peer[PVP_PEER_MAX], unsigned *slot)
{
	uint64_t deadline = mono_ms() + wait_ms;
	for (;;) {
		struct epoll_event evs[16];
		uint64_t now = mono_ms();
		int n, best;
		unsigned slice = now >= deadline ? 0 : (unsigned)(deadline - now);
		if (slice > SLICE_MS)
			slice = SLICE_MS;
		n = epoll_wait(g->ep, evs, 16, (int)slice);
		pthread_mutex_lock(&g->lock);
		now = mono_ms();
		for (int i = 0; i < n; i++) {
			if (evs[i].data.u64 == LISTEN_TAG)
				accept_all(g, now);
			else if (evs[i].data.u64 < g->conf.max_pending && g->slots[evs[i].data.u64].st == S_WAITING)
				g->slots[evs[i].data.u64].st = S_READY; /* one-shot: no more events until re-armed */
		}
		best = pick(g, now);
		if (best >= 0) {
			slot_t *s = &g->slots[best];
			epoll_ctl(g->ep, EPOLL_CTL_DEL, s->fd, NULL);
			s->st = S_BUSY;
			g->stats.handed++;
			*fd = s->fd;
			*slot = (unsigned)best;
			snprintf(peer, PVP_PEER_MAX, "%s", s->peer);
			pthread_mutex_unlock(&g->lock);
			return 0;
		}
		pthread_mutex_unlock(&g->lock);
		if (mono_ms() >= deadline)
			return VP_ETIMEOUT;
	}
}

void pvp_gate_done(pvp_gate_t *g, unsigned slot)
{
	if (slot >= g->conf.max_pending)
		return;
	pthread_mutex_lock(&g->lock);
	if (g->slots[slot].st == S_BUSY)
		release(g, &g->slots[slot]);
	pthread_mutex_unlock(&g->lock);
}

void pvp_gate_stats(pvp_gate_t *g, pvp_gate_stats_t *out)
{
	pthread_mutex_lock(&g->lock);
	*out = g->stats;
	pthread_mutex_unlock(&g->lock);
}
