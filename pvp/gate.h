/*
 * pvp/gate.h - the PVP accept gate: which connections reach a worker
 * (docs/protocol.md §5.8).
 *
 * A PVP worker spends up to its connection deadline on one connection, and a
 * server has few workers (TLS-SRP is modexp-bound): if workers took
 * connections straight from accept(), a handful of connections that never
 * send a byte would hold every worker and stop all PVP service.  The gate
 * accepts for the workers and holds each new connection in an epoll set
 * until its first bytes (the ClientHello) arrive; only then is it handed to
 * a worker.  Limits, per peer (an address; an IPv6 address counts as its
 * /64): at most max_per_peer connections held or served at once (more are
 * closed on accept), at most max_busy_per_peer of them in workers at once
 * (so one peer can never occupy every worker), and a connection that sends
 * nothing within first_byte_ms is closed.  Workers then bound each
 * handshake with pvp_server_conf_t.handshake_timeout_ms.
 *
 * Thread-safe: every worker calls pvp_gate_next() and pvp_gate_done(); the
 * gate's state is under one mutex, never held while waiting.
 */
#ifndef VP_PVP_GATE_H
#define VP_PVP_GATE_H

#include <stddef.h>
#include <stdint.h>

#define PVP_PEER_MAX 64 /* peer name buffer (address text) */

typedef struct pvp_gate_conf {
	int lfd;                     /*!< listening socket (made non-blocking here; not owned) */
	unsigned max_pending;        /*!< connections held or in workers; 0 = 1024 */
	unsigned max_per_peer;       /*!< ... per peer; 0 = 8 */
	unsigned max_busy_per_peer;  /*!< connections of one peer in workers at once; 0 = 1 */
	unsigned first_byte_ms;      /*!< time to send the first bytes; 0 = 2000 */
} pvp_gate_conf_t;

typedef struct pvp_gate pvp_gate_t;

/*! \brief Gate statistics since creation. */
typedef struct pvp_gate_stats {
	uint64_t accepted;       /*!< connections taken in */
	uint64_t refused_peer;   /*!< closed on accept: the peer holds max_per_peer */
	uint64_t refused_full;   /*!< closed on accept: max_pending held */
	uint64_t idle_closed;    /*!< closed: no first bytes within first_byte_ms */
	uint64_t handed;         /*!< handed to a worker */
} pvp_gate_stats_t;

/*! \brief Create a gate on \p conf->lfd.  VP_EINVAL, VP_EIO (epoll), VP_ENOMEM. */
int pvp_gate_new(const pvp_gate_conf_t *conf, pvp_gate_t **out);

/*! \brief Close every connection still held, free the gate (not the listening socket). */
void pvp_gate_free(pvp_gate_t *g);

/*!
 * \brief Wait up to \p wait_ms for a connection with bytes to read whose peer
 * may use another worker.  On 0: *fd is the connection (non-blocking; the
 * caller serves it and then calls pvp_gate_done(), which closes it), \p peer
 * its address text, *slot its handle.  VP_ETIMEOUT if none came.
 */
int pvp_gate_next(pvp_gate_t *g, unsigned wait_ms, int *fd, char peer[PVP_PEER_MAX], unsigned *slot);

/*! \brief The worker is done with connection \p slot: close it, free its peer's place. */
void pvp_gate_done(pvp_gate_t *g, unsigned slot);

/*! \brief Copy the statistics. */
void pvp_gate_stats(pvp_gate_t *g, pvp_gate_stats_t *out);

/*!
 * \brief The key a peer address is limited under: an IPv6 address as its
 * /64 ("2001:db8::/64"), an IPv4-mapped one as its IPv4 address, anything
 * else as itself.  Shared with the rate limits (pvp/policy.h).
 */
void pvp_peer_key(const char *addr, char out[PVP_PEER_MAX]);

#endif
