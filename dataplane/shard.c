#include "dataplane/shard.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <urcu-qsbr.h>

#include "common/clock.h"
#include "common/errcode.h"
#include "common/log.h"

struct dp_shard {
	dp_shard_conf_t conf;
	dp_shard_ops_t ops;
	const dp_io_api_t *api;
	dp_io_t *io;
	pthread_t thread;
	bool started;
	bool exit;
	int result;

	/* command ring: single producer, single consumer */
	dp_shard_cmd_t *ring;
	uint32_t mask;
	_Atomic uint64_t head; /* consumer */
	_Atomic uint64_t tail; /* producer */
	int wake_fd;           /* eventfd: the producer wakes the shard (0 = none) */

	/* transmit queue: fixed arena, flushed after the commit */
	uint8_t *arena;
	size_t arena_used;
	dp_io_out_t *txq;
	uint32_t ntx;

	dp_shard_counters_t c;
};

static uint64_t now_ms(void)
{
	return vp_time_mono_ns() / 1000000u;
}

int dp_shard_new(const dp_shard_conf_t *conf, const dp_shard_ops_t *ops, dp_shard_t **out)
{
	dp_shard_t *s;
	*out = NULL;
	if (!conf->api || !ops || !ops->event || conf->tx_bytes < conf->io.max_message || conf->tx_msgs == 0 ||
	    conf->cmd_ring == 0 || (conf->cmd_ring & (conf->cmd_ring - 1)) || conf->max_wait_ms == 0) {
		if (conf->io.listen_fd >= 0)
			close(conf->io.listen_fd);
		return VP_EINVAL;
	}
	s = calloc(1, sizeof(*s));
	if (s) {
		s->ring = calloc(conf->cmd_ring, sizeof(*s->ring));
		s->arena = malloc(conf->tx_bytes);
		s->txq = calloc(conf->tx_msgs, sizeof(*s->txq));
	}
	if (!s || !s->ring || !s->arena || !s->txq) {
		if (conf->io.listen_fd >= 0)
			close(conf->io.listen_fd);
		dp_shard_free(s);
		return VP_ENOMEM;
	}
	s->conf = *conf;
	s->ops = *ops;
	s->api = conf->api;
	s->mask = conf->cmd_ring - 1;
	/* A pushed command ends the shard's wait for I/O at once instead of after up to max_wait_ms. */
	s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->wake_fd == 0) { /* 0 means "none" to the backend: move it (stdin was closed) */
		int fd = fcntl(0, F_DUPFD_CLOEXEC, 3);
		close(0);
		s->wake_fd = fd;
	}
	if (s->wake_fd < 0)
		s->wake_fd = 0; /* no eventfd: commands wait for max_wait_ms, as before */
	s->conf.io.wake_fd = s->wake_fd;
	*out = s;
	return 0;
}

void dp_shard_free(dp_shard_t *s)
{
	if (!s)
		return;
	if (!s->started && s->conf.io.listen_fd >= 0 && !s->io)
		close(s->conf.io.listen_fd);
	if (s->wake_fd > 0)
		close(s->wake_fd);
	free(s->ring);
	free(s->arena);
	free(s->txq);
	free(s);
}

unsigned dp_shard_cmd_push(dp_shard_t *s, const dp_shard_cmd_t *c, unsigned n)
{
	uint64_t tail = atomic_load_explicit(&s->tail, memory_order_relaxed);
	uint64_t head = atomic_load_explicit(&s->head, memory_order_acquire);
	uint64_t room = (uint64_t)s->conf.cmd_ring - (tail - head);
	unsigned k = n < room ? n : (unsigned)room;
	for (unsigned i = 0; i < k; i++)
		s->ring[(tail + i) & s->mask] = c[i];
	atomic_store_explicit(&s->tail, tail + k, memory_order_release);
	if (k && s->wake_fd > 0) {
		uint64_t one = 1;
		if (write(s->wake_fd, &one, sizeof(one)) < 0) {
			/* EAGAIN: the counter is full, the shard is awake anyway */
		}
	}
	return k;
}

/* Consumer side: up to max commands; returns the count. */
static unsigned cmd_pop(dp_shard_t *s, dp_shard_cmd_t *c, unsigned max)
{
	uint64_t head = atomic_load_explicit(&s->head, memory_order_relaxed);
	uint64_t tail = atomic_load_explicit(&s->tail, memory_order_acquire);
	unsigned k = tail - head < max ? (unsigned)(tail - head) : max;
	for (unsigned i = 0; i < k; i++)
		c[i] = s->ring[(head + i) & s->mask];
	atomic_store_explicit(&s->head, head + k, memory_order_release);
	return k;
}

/* Commit the iteration's writes, then send what waited for them. */
static void commit_and_flush(dp_shard_t *s)
{
	unsigned sent;
	if (s->ops.commit) {
		s->c.commits++;
		if (s->ops.commit(s->ops.arg, s)) {
			s->c.commit_failures++;
			s->c.tx_dropped += s->ntx;
			vp_log_error("shard", "commit_failed", "shard=%u answers_dropped=%u", s->conf.index, s->ntx);
			s->ntx = 0;
			s->arena_used = 0;
			return;
		}
	}
	if (s->ntx) {
		sent = s->api->send(s->io, s->txq, s->ntx);
		s->c.tx_refused += s->ntx - sent;
	}
	s->ntx = 0;
	s->arena_used = 0;
}

int dp_shard_send(dp_shard_t *s, dp_link_t *l, const uint8_t *msg, size_t len)
{
	if (len > s->conf.tx_bytes)
		return VP_ETOOBIG;
	if (s->ntx == s->conf.tx_msgs || s->arena_used + len > s->conf.tx_bytes)
		commit_and_flush(s);
	memcpy(s->arena + s->arena_used, msg, len);
	s->txq[s->ntx++] = (dp_io_out_t){ .link = l, .msg = s->arena + s->arena_used, .len = len };
	s->arena_used += len;
	s->c.tx_queued++;
	return 0;
}

static void *shard_main(void *arg)
{
	dp_shard_t *s = arg;
	dp_shard_cmd_t cmds[16];
	uint64_t next = UINT64_MAX, t;
	int err;

	rcu_register_thread();
	if (s->conf.cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(s->conf.cpu, &set);
		if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set))
			vp_log_warn("shard", "pin_failed", "shard=%u cpu=%d", s->conf.index, s->conf.cpu);
	}
	err = s->api->open(&s->conf.io, &s->io);
	if (err) {
		vp_log_error("shard", "io_open_failed", "shard=%u backend=%s err=%s", s->conf.index, s->api->name,
		             vp_strerror(err));
		s->result = err;
		goto finish;
	}
	if (s->ops.start && (err = s->ops.start(s->ops.arg, s, now_ms())) != 0) {
		s->result = err;
		goto finish;
	}
	while (!s->exit) {
		dp_io_ev_t *ev;
		unsigned nc;
		int n, wait;
		bool ran = false;

		rcu_quiescent_state();
		s->c.iterations++;
		while ((nc = cmd_pop(s, cmds, 16)) > 0) {
			ran = true;
			s->c.commands += nc;
			for (unsigned i = 0; i < nc; i++)
				if (s->ops.command)
					s->ops.command(s->ops.arg, s, &cmds[i], now_ms());
		}
		if (s->exit)
			break;
		t = now_ms();
		wait = (int)s->conf.max_wait_ms;
		/* Timers due, or commands ran: their sends, and writes that wait for the commit without a send
		 * queued (a Store this node serves itself), go out after this non-blocking receive, not after
		 * max_wait_ms. */
		if (next <= t || s->ntx || ran)
			wait = 0;
		else if (next - t < (uint64_t)wait)
			wait = (int)(next - t);
		rcu_thread_offline();
		n = s->api->recv(s->io, &ev, wait);
		rcu_thread_online();
		if (n < 0) {
			vp_log_error("shard", "io_failed", "shard=%u err=%s", s->conf.index, vp_strerror(n));
			s->result = n;
			break;
		}
		t = now_ms();
		s->c.events += (uint64_t)n;
		for (int i = 0; i < n; i++)
			s->ops.event(s->ops.arg, s, &ev[i], t);
		next = s->ops.tick ? s->ops.tick(s->ops.arg, s, now_ms()) : UINT64_MAX;
		commit_and_flush(s);
		if (s->ops.after)
			s->ops.after(s->ops.arg, s, now_ms());
	}
finish:
	if (s->io) {
		commit_and_flush(s);
		if (s->ops.stop)
			s->ops.stop(s->ops.arg, s);
		s->api->close(s->io);
		s->io = NULL;
	}
	rcu_unregister_thread();
	return NULL;
}

int dp_shard_start(dp_shard_t *s)
{
	if (pthread_create(&s->thread, NULL, shard_main, s))
		return VP_EIO;
	s->started = true;
	return 0;
}

void dp_shard_exit(dp_shard_t *s)
{
	s->exit = true;
}

int dp_shard_join(dp_shard_t *s)
{
	if (!s->started)
		return 0;
	pthread_join(s->thread, NULL);
	s->started = false;
	s->conf.io.listen_fd = -1; /* the backend owned and closed it */
	return s->result;
}

const dp_io_api_t *dp_shard_api(const dp_shard_t *s)
{
	return s->api;
}

dp_io_t *dp_shard_io(dp_shard_t *s)
{
	return s->io;
}

unsigned dp_shard_index(const dp_shard_t *s)
{
	return s->conf.index;
}

const dp_shard_counters_t *dp_shard_counters(const dp_shard_t *s)
{
	return &s->c;
}
