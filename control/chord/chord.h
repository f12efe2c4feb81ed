/*
 * control/chord.h - the Chord-RELOAD topology engine of one virtual node.
 *
 * A transport-agnostic state machine (RFC 6940 §10, docs/protocol.md §4).  It
 * consumes decoded RELOAD messages, link up/down events and timer ticks, and
 * emits RELOAD messages as codec structures (rl_message_t with a body_st) plus
 * storage handoff/replication actions, all through chord_io_t.  It never opens
 * a socket, starts a thread or reads a clock: every entry point takes `now_ms`
 * (monotonic milliseconds), so the same code runs in the daemon and in the
 * deterministic simulator (bench/sim.c).
 *
 * What it does: Join (Attach to its own id through a bootstrap peer -> the
 * admitting peer answers and sends an Update -> Attach to the admitting peer's
 * neighbours -> Join -> the admitting peer hands off data), Leave (from_succ to
 * predecessors, from_pred to successors), Update (peer_ready, neighbors, full)
 * sent periodically and reactively, finger maintenance (Attach to self+2^i,
 * Ping of live fingers), failure detection (link down, request timeout) and
 * repair, replication of its range to its 2 successors (replica_number 1 and 2)
 * and re-replication whenever the replica set or the range changes,
 * RouteQuery, Probe(responsible_set, uptime, num_resources), forwarding with
 * symmetric response routing via the via list, and a periodic ring check that
 * merges parallel rings: the node remembers a few peers outside its table (the
 * bootstrap peer it joined through and the latest peers it saw fail), has the
 * transport open a link to one of them (io->reach) each interval, and sends an
 * Attach to self+1 through it, which is answered from that peer's ring.
 *
 * The routing table is published through chord_rt_t (liburcu QSBR): any
 * registered thread may call chord_node_rt() and read it lock-free.  All other
 * entry points belong to the single control thread that owns the node.
 */
#ifndef VP_CONTROL_CHORD_H
#define VP_CONTROL_CHORD_H

#include <stdbool.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/id.h"
#include "dataplane/chord_table.h"
#include "dataplane/reload.h"

typedef struct chord_node chord_node_t;

/* Timers and sizes.  chord_cfg_default() gives the RFC 6940 / DP defaults. */
typedef struct chord_cfg {
	chord_table_params_t table;
	uint32_t overlay;             /*!< forwarding header overlay field (rl_overlay_id) */
	uint16_t config_seq;          /*!< configuration_sequence put on every message */
	uint8_t initial_ttl;          /*!< RL_DEFAULT_TTL */
	bool reactive;                /*!< chord-reactive: Update neighbours on every change (true) */
	uint64_t reactive_delay_ms;   /*!< coalesce the reactive Updates of a burst of changes: 100 ms */
	uint64_t update_interval_ms;  /*!< chord-update-interval: 600 s */
	uint64_t ping_interval_ms;    /*!< chord-ping-interval: finger Ping and refresh, 3600 s */
	uint64_t request_timeout_ms;  /*!< a request without answer after this is failed: 15 s */
	uint32_t join_attempts;       /*!< Attach-to-self attempts before join gives up: 10 */
	/*! Ring check through a remembered peer (merges parallel rings, needs io->reach): 3600 s; 0 = never */
	uint64_t ring_check_interval_ms;
	/*!
	 * How long the replica range (pred[2], self] must stay unchanged before data outside it is dropped
	 * (CHORD_STORE_DROP): 2 x update_interval by default (0 = that).  A range seen shrinking because of a
	 * stale view comes back once the view is repaired, and the owner, whose view never changed, sends
	 * nothing again: dropping at once lost the third copy (docs/protocol.md §4, "Dropping data").
	 */
	uint64_t drop_grace_ms;
} chord_cfg_t;

/* Data the storage layer must move because the topology changed. */
typedef enum chord_store_op {
	/*! Send every item in (lo, hi] to `to` as replica_number 0 (it is now responsible). */
	CHORD_STORE_HANDOFF = 1,
	/*! Copy every item in (lo, hi] (our range) to `to` with `replica_number` (1 or 2). */
	CHORD_STORE_REPLICATE = 2,
	/*!
	 * Keep (lo, hi] = (pred[2], self], the ranges this vnode owns or replicates, and drop every other item
	 * not written within the last `grace_ms` (a peer that sent it recently believes us a replica, and our own
	 * view may be the stale one).  Emitted once the range has been stable for drop_grace_ms; `to` is self.
	 */
	CHORD_STORE_DROP = 3,
} chord_store_op_t;

typedef struct chord_store_action {
	chord_store_op_t op;
	vp_id_t to;
	vp_id_t lo, hi;
	uint8_t replica_number;
	uint64_t grace_ms; /*!< CHORD_STORE_DROP: keep items written within this long */
} chord_store_action_t;

/* A message for the application (storage, PVP, ...), valid during the callback only. */
typedef struct chord_delivery {
	const rl_message_t *msg; /*!< decoded header and contents (body raw) */
	vp_id_t prev_hop;        /*!< the peer it arrived from */
	uint32_t hops;           /*!< overlay hops it travelled: via entries + 1 */
	bool is_answer;          /*!< an answer (or error) to a request the application sent */
} chord_delivery_t;

typedef struct chord_io {
	void *ctx;
	/*!
	 * Send \p m over the link to the directly connected \p next_hop.  The
	 * message (and what it points to) is valid during the call only.  A lost
	 * link is reported later with chord_node_link_down().
	 */
	int (*send)(void *ctx, chord_node_t *n, const vp_id_t *next_hop, const rl_message_t *m);
	/*!
	 * Relay \p m, a message the engine received from \p prev_hop (decoded by rl_msg_decode, so it still
	 * points into the bytes it arrived in), to the directly connected \p next_hop: append \p prev_hop to
	 * the via list, decrement the TTL and, if \p pop_dest, remove the first destination.  Relaying is the
	 * transport's job and edits only the forwarding header (rl_fwd_* in place, or chord_fwd_encode()): the
	 * rest, and the originator's signature, go on unchanged.  Required.
	 */
	int (*forward)(void *ctx, chord_node_t *n, const vp_id_t *next_hop, const vp_id_t *prev_hop, bool pop_dest,
	               const rl_message_t *m);
	/*! Fill our side of an Attach (ufrag, password, ICE candidates); pointers must stay valid until the next call. */
	void (*attach_info)(void *ctx, chord_node_t *n, rl_attach_t *out);
	/*! Open a link to \p peer from its Attach; report the outcome with chord_node_link_up/down(). */
	void (*connect)(void *ctx, chord_node_t *n, const vp_id_t *peer, const rl_attach_t *theirs);
	/*! A request for which this vnode is the destination, or an answer to an application request. */
	void (*deliver)(void *ctx, chord_node_t *n, const chord_delivery_t *d);
	/*! Move stored data (handoff or replication); see chord_store_op_t. */
	void (*store)(void *ctx, chord_node_t *n, const chord_store_action_t *a);
	/*!
	 * Optional (ring checks need it; NULL = no ring checks): open a link to \p peer, a node that is not in the
	 * table (the bootstrap peer joined through, or a peer seen failing), from an address the transport
	 * remembers for it.  Report the outcome with chord_node_link_up/down() (from inside the call if a link is
	 * up already); an attempt that reports nothing counts as failed after request_timeout_ms.  0 if an
	 * attempt is under way, a negative VP_E* code if the peer cannot be reached at all (no address known).
	 */
	int (*reach)(void *ctx, chord_node_t *n, const vp_id_t *peer);
	/*! Optional: resources this vnode stores (Probe num_resources); NULL = not answered. */
	uint32_t (*num_resources)(void *ctx, chord_node_t *n);
} chord_io_t;

typedef enum chord_state {
	CHORD_INIT = 0,    /*!< created, not in an overlay */
	CHORD_JOINING = 1, /*!< Attach/Update/Join exchange in progress */
	CHORD_JOINED = 2,  /*!< member of the ring */
	CHORD_LEFT = 3,    /*!< left (or gave up joining) */
} chord_state_t;

/* Per-node message counters (sent by this node, maintenance only unless named). */
typedef struct chord_stats {
	uint64_t sent[16];      /*!< by message family: see chord_stats_family() */
	uint64_t forwarded;     /*!< messages forwarded for others (any kind) */
	uint64_t maint_sent;    /*!< topology messages originated (requests and answers) */
	uint64_t peer_failures; /*!< peers removed after a link down or a timeout */
	uint64_t table_versions;/*!< tables published */
	uint64_t ttl_drops;     /*!< messages dropped for TTL exhaustion */
	uint64_t no_route;      /*!< messages dropped for lack of a route */
	uint64_t rerouted;      /*!< requests sent again around a failed link */
	uint64_t ring_checks;   /*!< ring-check Attaches sent through a remembered peer (merge probes) */
	uint64_t ring_check_misses; /*!< ring-check links to a remembered peer that did not come up */
} chord_stats_t;

/*!
 * \brief The relayed form of \p m (see chord_io_t.forward) written to \p wr with rl_fwd_copy(): the
 * forwarding header edited, contents and security block copied from the received bytes.  \p m must come
 * from rl_msg_decode() on a buffer still alive.  0 or the writer's / codec's error.
 */
int chord_fwd_encode(vp_wr_t *wr, const rl_message_t *m, const vp_id_t *prev_hop, bool pop_dest);

/*! \brief RFC defaults (see chord_cfg_t). */
chord_cfg_t chord_cfg_default(void);

/*! \brief VP_ECONFIG if a value is out of range. */
int chord_cfg_check(const chord_cfg_t *cfg);

/*!
 * \brief Create the vnode \p self in *\p out.  \p io is copied.  Free with chord_node_free().
 * 0, VP_ECONFIG (a value out of range), VP_EINVAL (no io->send) or VP_ENOMEM; *\p out is NULL on error.
 */
int chord_node_new(const chord_cfg_t *cfg, const vp_id_t *self, const chord_io_t *io, uint64_t now_ms,
                   chord_node_t **out);

/*! \brief Free the node; its last table is freed after a grace period (synchronize_rcu). */
void chord_node_free(chord_node_t *n);

/*! \brief Start a new overlay: a lone node, responsible for the whole ring. */
int chord_node_bootstrap(chord_node_t *n, uint64_t now_ms);

/*!
 * \brief Join through \p bootstrap, a member to which a link is already up.
 * The exchange continues in later events; chord_node_state() says when done.
 */
int chord_node_join(chord_node_t *n, const vp_id_t *bootstrap, uint64_t now_ms);

/*! \brief Leave gracefully: Leave to neighbours, hand off our data to succ[0]. */
int chord_node_leave(chord_node_t *n, uint64_t now_ms);

/*! \brief A link opened by io->connect (or accepted) is up. */
void chord_node_link_up(chord_node_t *n, const vp_id_t *peer, uint64_t now_ms);

/*! \brief A link is gone (peer failed or unreachable): remove the peer and repair. */
void chord_node_link_down(chord_node_t *n, const vp_id_t *peer, uint64_t now_ms);

/*!
 * \brief A message decoded by rl_msg_decode() arrived from the directly
 * connected \p from.  Forwards it, answers it (topology methods) or hands it
 * to io->deliver.  Returns 0 or a negative VP_E* code for a message that was
 * dropped as malformed.
 */
int chord_node_recv(chord_node_t *n, const vp_id_t *from, const rl_message_t *m, uint64_t now_ms);

/*!
 * \brief The link to \p failed died with \p m (a message this node sent to it,
 * as encoded then decoded) unacknowledged: remove the peer (as
 * chord_node_link_down) and route a request again around it, unchanged (its
 * via list is already right).  Answers are not rerouted: their path is fixed
 * and the originator retries.  0 if resent, else a negative VP_E* code.
 */
int chord_node_resend(chord_node_t *n, const vp_id_t *failed, const rl_message_t *m, uint64_t now_ms);

/*! \brief Run timers due at \p now_ms (timeouts, periodic Update, finger maintenance). */
void chord_node_tick(chord_node_t *n, uint64_t now_ms);

/*! \brief When chord_node_tick() next has work (UINT64_MAX if never). */
uint64_t chord_node_next_wakeup(const chord_node_t *n);

/*!
 * \brief Originate an application request with body \p body towards \p dest
 * (a resource id if \p resource, else a node id).  Returns 0 when sent (its
 * transaction id in *txid), 1 when this vnode is itself responsible (the
 * caller serves it locally), or VP_ESTATE / VP_ENOROUTE.
 */
int chord_node_request(chord_node_t *n, const vp_id_t *dest, bool resource, const rl_body_t *body,
                       uint64_t *txid, uint64_t now_ms);

/*!
 * \brief Answer the request in \p d (from io->deliver) with \p body (or an
 * ErrorResponse body): routed back along the reversed via list.
 */
int chord_node_answer(chord_node_t *n, const chord_delivery_t *d, const rl_body_t *body);

/*!
 * \brief Send \p body as a request straight to the directly connected
 * neighbour \p peer (replication and handoff Stores). Returns 0 or VP_ENOROUTE.
 */
int chord_node_request_direct(chord_node_t *n, const vp_id_t *peer, const vp_id_t *resource,
                              const rl_body_t *body, uint64_t *txid, uint64_t now_ms);

chord_state_t chord_node_state(const chord_node_t *n);
const vp_id_t *chord_node_id(const chord_node_t *n);

/*! \brief The control thread's view of the current table (never NULL after new). */
const chord_table_t *chord_node_table(const chord_node_t *n);

/*! \brief The RCU holder, for lock-free readers on other (QSBR-registered) threads. */
chord_rt_t *chord_node_rt(chord_node_t *n);

const chord_stats_t *chord_node_stats(const chord_node_t *n);

/*! \brief Index into chord_stats_t.sent for a message code (method family). */
unsigned chord_stats_family(uint16_t code);

#endif
