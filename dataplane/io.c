#include "dataplane/io.h"

#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "common/clock.h"
#include "common/errcode.h"
#include "common/log.h"

/*
 * The kernel-socket backend.  dp_link_set serves the sockets; its callbacks
 * fill the event array of the burst in progress.  A small table maps an up
 * link to its serial (links are few: a vnode keeps links to its table
 * entries only), so a transaction can tell a link from a later one that
 * happens to reuse the same memory.
 */

typedef struct kio_link {
	dp_link_t *l;
	uint64_t serial;
} kio_link_t;

struct dp_io {
	dp_io_conf_t conf;
	dp_link_set_t *set;
	dp_io_ev_t *ev;      /* burst events */
	uint8_t *slots;      /* burst x slot_size bytes */
	size_t slot_size;
	uint32_t nev;
	kio_link_t *map;
	size_t nmap, cap_map;
	uint64_t next_serial;
	dp_io_counters_t c;
	uint64_t last_overflow_log;
};

static kio_link_t *map_find(dp_io_t *io, const dp_link_t *l)
{
	for (size_t i = 0; i < io->nmap; i++)
		if (io->map[i].l == l)
			return &io->map[i];
	return NULL;
}

static uint64_t kio_serial(dp_io_t *io, const dp_link_t *l)
{
	kio_link_t *m = map_find(io, l);
	return m ? m->serial : 0;
}

static void copy_peers(dp_io_ev_t *e, const dp_link_t *l)
{
	uint32_t n = 0;
	const vp_id_t *ids = dp_link_peer_ids(l, &n);
	if (n > DP_CERT_MAX_NODE_IDS)
		n = DP_CERT_MAX_NODE_IDS;
	if (n)
		memcpy(e->peer, ids, n * sizeof(*ids));
	e->n_peer = n;
}

/* A slot for an event, or NULL when the burst is full (counted by the caller). */
static dp_io_ev_t *ev_next(dp_io_t *io)
{
	dp_io_ev_t *e;
	if (io->nev >= io->conf.burst)
		return NULL;
	e = &io->ev[io->nev++];
	memset(e, 0, offsetof(dp_io_ev_t, peer));
	e->n_peer = 0;
	e->reason = NULL;
	return e;
}

static void overflow(dp_io_t *io, const char *what)
{
	uint64_t now = vp_time_mono_ns() / 1000000000u;
	io->c.rx_overflow++;
	if (now != io->last_overflow_log) {
		io->last_overflow_log = now;
		vp_log_warn("io", "burst_overflow", "what=%s burst=%u dropped_total=%llu", what, io->conf.burst,
		            (unsigned long long)io->c.rx_overflow);
	}
}

static void on_up(void *arg, dp_link_t *l)
{
	dp_io_t *io = arg;
	dp_io_ev_t *e;
	if (map_find(io, l))
		return; /* announced already: its first frames came with the handshake's last flight */
	if (io->nmap == io->cap_map) {
		size_t cap = io->cap_map ? io->cap_map * 2 : 16;
		kio_link_t *m = realloc(io->map, cap * sizeof(*m));
		if (!m) {
			vp_log_error("io", "link_refused", "reason=out_of_memory peer=%s", dp_link_peer_addr(l));
			dp_link_close(l);
			return;
		}
		io->map = m;
		io->cap_map = cap;
	}
	io->map[io->nmap++] = (kio_link_t){ l, ++io->next_serial };
	io->c.links_up++;
	e = ev_next(io);
	if (!e) {
		/* The node must learn of every up link: refuse it rather than lose the event. */
		overflow(io, "link_up");
		dp_link_close(l);
		return;
	}
	e->type = DP_IO_UP;
	e->link = l;
	e->link_serial = io->next_serial;
	copy_peers(e, l);
}

static void on_msg(void *arg, dp_link_t *l, const uint8_t *msg, size_t len)
{
	dp_io_t *io = arg;
	dp_io_ev_t *e;
	uint8_t *slot;
	if (!map_find(io, l)) {
		/* Frames read in the call that finished the handshake come before the set announces the link:
		 * announce it here so the burst says UP before MSG. */
		on_up(io, l);
		if (!map_find(io, l))
			return;
	}
	if (len > io->conf.max_message) {
		vp_log_warn("io", "msg_refused", "reason=too_big len=%zu max=%u peer=%s", len, io->conf.max_message,
		            dp_link_peer_addr(l));
		dp_link_close(l);
		return;
	}
	e = ev_next(io);
	if (!e) {
		overflow(io, "message");
		return;
	}
	slot = io->slots + (size_t)(e - io->ev) * io->slot_size;
	memcpy(slot + DP_IO_HEADROOM, msg, len);
	e->type = DP_IO_MSG;
	e->link = l;
	e->link_serial = kio_serial(io, l);
	e->pkt = (rl_pkt_t){ .buf = slot, .cap = io->slot_size, .off = DP_IO_HEADROOM, .len = len };
	io->c.rx_msgs++;
	io->c.rx_bytes += len;
}

/*
 * Back-pressure: a link stops handing messages once the burst is full (the rest wait in the link).  Two
 * slots stay free for a link's UP (announced with its first frames) or DOWN in the same run.
 */
#define ROOM_RESERVE 2u
static bool room(void *arg)
{
	dp_io_t *io = arg;
	return io->nev + ROOM_RESERVE < io->conf.burst;
}

static void on_down(void *arg, dp_link_t *l, const char *reason)
{
	dp_io_t *io = arg;
	kio_link_t *m = map_find(io, l);
	dp_io_ev_t *e;
	uint64_t serial = m ? m->serial : 0;

	/* Events of this burst must not point at a link about to be freed. */
	for (uint32_t i = 0; i < io->nev; i++)
		if (io->ev[i].link == l)
			io->ev[i].link = NULL;
	if (!m)
		return; /* never came up: the node never heard of it */
	*m = io->map[--io->nmap];
	io->c.links_down++;
	e = ev_next(io);
	if (!e) {
		/* Reuse the oldest message slot rather than lose a down event: the node's view must stay true. */
		overflow(io, "link_down");
		for (uint32_t i = 0; i < io->nev; i++)
			if (io->ev[i].type == DP_IO_MSG) {
				e = &io->ev[i];
				break;
			}
		if (!e)
			return;
	}
	e->type = DP_IO_DOWN;
	e->link = NULL;
	e->link_serial = serial;
	copy_peers(e, l);
	e->reason = reason ? reason : "closed";
}

static void kio_close(dp_io_t *io)
{
	if (!io)
		return;
	dp_link_set_free(io->set);
	free(io->ev);
	free(io->slots);
	free(io->map);
	free(io);
}

static int kio_open(const dp_io_conf_t *conf, dp_io_t **out)
{
	dp_io_t *io;
	int err;
	dp_link_set_cb_t cb;

	*out = NULL;
	if (!conf->links || conf->burst == 0 || conf->burst > 4096 || conf->max_message < 1024 ||
	    conf->max_message > RL_MAX_MESSAGE_SIZE) {
		if (conf->listen_fd >= 0)
			close(conf->listen_fd);
		return VP_EINVAL;
	}
	io = calloc(1, sizeof(*io));
	if (!io) {
		if (conf->listen_fd >= 0)
			close(conf->listen_fd);
		return VP_ENOMEM;
	}
	io->conf = *conf;
	io->slot_size = DP_IO_HEADROOM + conf->max_message;
	io->ev = calloc(conf->burst, sizeof(*io->ev));
	io->slots = malloc((size_t)conf->burst * io->slot_size);
	cb = (dp_link_set_cb_t){ .arg = io, .on_up = on_up, .on_msg = on_msg, .on_down = on_down, .room = room };
	if (!io->ev || !io->slots) {
		if (conf->listen_fd >= 0)
			close(conf->listen_fd);
		kio_close(io);
		return VP_ENOMEM;
	}
	err = dp_link_set_new(conf->links, conf->listen_fd, &cb, &io->set);
	if (err) {
		kio_close(io);
		return err;
	}
	dp_link_set_wake(io->set, conf->wake_fd);
	*out = io;
	return 0;
}

static int kio_recv(dp_io_t *io, dp_io_ev_t **ev, int timeout_ms)
{
	int r;
	io->nev = 0;
	r = dp_link_set_run(io->set, timeout_ms);
	*ev = io->ev;
	if (r < 0)
		return r;
	return (int)io->nev;
}

/*
 * Queue the whole burst first, then write each link once: a burst of relayed messages leaves in as few TLS
 * records and write calls as its bytes need, not one of each per message (which cost a relay more CPU than
 * its TLS encryption: bench/RESULTS.md, bench_relay).  FLUSH_SET links are remembered; a burst to more links
 * than that writes a link as soon as the next message goes to another one.
 */
#define FLUSH_SET 16u
static unsigned kio_send(dp_io_t *io, const dp_io_out_t *out, unsigned n)
{
	dp_link_t *touched[FLUSH_SET];
	unsigned sent = 0, nt = 0;
	for (unsigned i = 0; i < n; i++) {
		dp_link_t *l = out[i].link;
		unsigned k;
		int e = l ? dp_link_queue(l, out[i].msg, out[i].len) : VP_ESTATE;
		if (e == VP_EAGAIN) {
			/* The link's buffer is full of this burst: write it out, then queue (as a send would). */
			dp_link_flush(l);
			e = dp_link_queue(l, out[i].msg, out[i].len);
		}
		if (e) {
			io->c.tx_refused++;
			continue;
		}
		sent++;
		io->c.tx_msgs++;
		io->c.tx_bytes += out[i].len;
		for (k = 0; k < nt && touched[k] != l; k++)
			;
		if (k < nt)
			continue;
		if (nt < FLUSH_SET)
			touched[nt++] = l;
		else if (i + 1 == n || out[i + 1].link != l)
			dp_link_flush(l);
	}
	for (unsigned k = 0; k < nt; k++)
		dp_link_flush(touched[k]);
	return sent;
}

static int kio_connect(dp_io_t *io, const struct sockaddr *sa, socklen_t salen, const vp_id_t *expect)
{
	dp_link_t *l;
	int err = dp_link_connect(io->conf.links, sa, salen, expect, vp_time_mono_ns() / 1000000u, &l);
	if (err)
		return err;
	return dp_link_set_add(io->set, l);
}

static dp_link_t *kio_find(dp_io_t *io, const vp_id_t *id)
{
	return dp_link_set_find(io->set, id);
}

static void kio_close_all(dp_io_t *io)
{
	for (size_t i = 0; i < io->nmap; i++)
		dp_link_close(io->map[i].l);
}

static size_t kio_count(dp_io_t *io)
{
	return dp_link_set_count(io->set);
}

static const dp_io_counters_t *kio_counters(dp_io_t *io)
{
	return &io->c;
}

const dp_io_api_t dp_io_kernel = {
	.name = "kernel",
	.open = kio_open,
	.recv = kio_recv,
	.send = kio_send,
	.connect = kio_connect,
	.find = kio_find,
	.serial = kio_serial,
	.close_all = kio_close_all,
	.count = kio_count,
	.counters = kio_counters,
	.close = kio_close,
};
