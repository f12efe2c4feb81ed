/*
 * dataplane/io.h - the I/O backend seam of a shard: open, receive a burst,
 * send a burst, close (Knot DNS's udp_api_t is the model).
 *
 * A shard loop (dataplane/shard.h) talks to its overlay links only through a
 * dp_io_api_t, so another backend (DPDK queues, a later issue) plugs in
 * without touching shard or node logic.  For the kernel-socket backend the
 * unit of I/O is a TLS-over-TCP link's readiness and its framed RELOAD
 * messages (dataplane/link.h): a receive burst returns link events (up,
 * message, down) and a send burst queues whole messages on links.
 *
 * Memory: a backend allocates everything at open: a received message sits in
 * one of `burst` slots of `max_message + DP_IO_HEADROOM` bytes, so a relay can
 * append a via entry in place (rl_fwd_append_via) without copying the body.
 * The events and their slots are valid until the next receive call.  Messages
 * that arrive while every slot is taken (more than `burst` in one poll round)
 * are dropped and counted (`rx_overflow`): RELOAD retransmits end to end.
 *
 * Threads: one backend instance belongs to one shard thread.
 */
#ifndef VP_DATAPLANE_IO_H
#define VP_DATAPLANE_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/id.h"
#include "dataplane/cert.h"
#include "dataplane/link.h"
#include "dataplane/reload.h"

/*! Headroom before each received message: room for a few via entries appended in place. */
#define DP_IO_HEADROOM 256u

typedef struct dp_io dp_io_t;

/*! What a receive burst reports. */
typedef enum dp_io_ev_type {
	DP_IO_UP = 1,   /*!< a link is authenticated (peer ids valid) */
	DP_IO_MSG = 2,  /*!< a DATA frame's RELOAD message in pkt */
	DP_IO_DOWN = 3, /*!< a link closed; `link` is gone, its peer ids were copied */
} dp_io_ev_type_t;

typedef struct dp_io_ev {
	dp_io_ev_type_t type;
	dp_link_t *link;    /*!< UP/MSG: the link; NULL for a MSG whose link went down in the same burst */
	uint64_t link_serial; /*!< never reused while the backend lives: what a transaction records */
	rl_pkt_t pkt;       /*!< MSG: buf[off, off+len) with DP_IO_HEADROOM before it */
	vp_id_t peer[DP_CERT_MAX_NODE_IDS]; /*!< UP/DOWN: the link's verified Node-IDs */
	uint32_t n_peer;
	const char *reason; /*!< DOWN: why (static string) */
} dp_io_ev_t;

/*! One message to send on a link (the bytes are copied into the link's buffer). */
typedef struct dp_io_out {
	dp_link_t *link;
	const uint8_t *msg;
	size_t len;
} dp_io_out_t;

typedef struct dp_io_conf {
	dp_link_ctx_t *links; /*!< TLS context (borrowed; must outlive the backend) */
	int listen_fd;        /*!< accepted from (owned by the backend from open on, even on error); -1 = none */
	uint32_t burst;       /*!< events per receive burst (and message slots): 1..4096 */
	uint32_t max_message; /*!< largest message accepted (overlay max-message-size) */
	int wake_fd;          /*!< readable when the owner has work (the shard's command eventfd): a receive wait
	                           ends early and drains it; 0 = none (borrowed) */
} dp_io_conf_t;

typedef struct dp_io_counters {
	uint64_t rx_msgs, rx_bytes, rx_overflow;
	uint64_t tx_msgs, tx_bytes, tx_refused; /*!< refused: back-pressure (link full) or link not up */
	uint64_t links_up, links_down;
} dp_io_counters_t;

/*! A backend.  Every function returns a count or a negative VP_E* code. */
typedef struct dp_io_api {
	const char *name;
	/*! \brief Open on \p conf. VP_EINVAL for a bad conf, VP_ENOMEM. */
	int (*open)(const dp_io_conf_t *conf, dp_io_t **out);
	/*!
	 * \brief Wait up to \p timeout_ms for I/O, serve it, and return up to \p max events (at most `burst`),
	 * valid until the next call.  Returns the count (0 on a timeout).
	 */
	int (*recv)(dp_io_t *io, dp_io_ev_t **ev, int timeout_ms);
	/*! \brief Queue \p n messages; returns how many were queued (the others are counted as refused). */
	unsigned (*send)(dp_io_t *io, const dp_io_out_t *out, unsigned n);
	/*!
	 * \brief Open a link to \p sa (\p expect: the Node-ID it must carry, or NULL); it reports DP_IO_UP or
	 * DP_IO_DOWN in a later burst.  0 or VP_EIO.
	 */
	int (*connect)(dp_io_t *io, const struct sockaddr *sa, socklen_t salen, const vp_id_t *expect);
	/*! \brief The up link bound to Node-ID \p id, or NULL. */
	dp_link_t *(*find)(dp_io_t *io, const vp_id_t *id);
	/*! \brief The link's serial (as in dp_io_ev_t), 0 if unknown. */
	uint64_t (*serial)(dp_io_t *io, const dp_link_t *l);
	/*! \brief Close gracefully every link (each reports DP_IO_DOWN in later bursts). */
	void (*close_all)(dp_io_t *io);
	/*! \brief Links in any state. */
	size_t (*count)(dp_io_t *io);
	const dp_io_counters_t *(*counters)(dp_io_t *io);
	/*! \brief Free everything (links are closed without waiting). */
	void (*close)(dp_io_t *io);
} dp_io_api_t;

/*! The kernel-socket backend: poll() over TLS-over-TCP links (dataplane/link.h's dp_link_set). */
extern const dp_io_api_t dp_io_kernel;

#endif
