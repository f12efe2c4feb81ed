/*
 * control/node/node.h - the overlay node: shards, their vnodes, links and
 * the storage service under the overlay (ARCHITECTURE.md §3).
 *
 * A node runs `shards` shard threads (dataplane/shard.h).  Shard i owns one
 * vnode: the first Node-ID of its own certificate (data_dir/node.pem for shard
 * 0, node-<i>.pem for shard i), its own Chord engine (control/chord), its own
 * link set on its own port (listen port + i) and its own certificate store and
 * replay window, so shards share nothing on the message path.  One
 * certificate per shard because a link is bound to its peer's certificate:
 * with several vnodes behind one certificate a direct message would not say
 * which of them sent it (RFC 6940's cert_hash_node_id signer identity would,
 * and the verifier does not read it yet); every peer takes a link to name the
 * first Node-ID of its certificate.  The control thread (the caller of node_run) reaches them only
 * through their command rings.
 *
 * What a shard does with a message (docs/protocol.md §1.6, §4):
 *   - every link is TLS with a certificate of the overlay (dataplane/link.h);
 *   - a message the vnode relays is edited in place (TTL, via list, first
 *     destination: rl_fwd_*) and goes on with the originator's signature;
 *     the relay decodes no body and verifies nothing (RFC 6940 §6.3.2);
 *   - a message for the vnode is verified first (dp_cert_msg_verify: signer
 *     certificate, signature, signer = originator), checked against replays
 *     (dp_replay_check) and, for Join/Leave/Update, against the signer's
 *     Node-IDs (dp_cert_topology_check), and only then handed to the engine;
 *   - every message the vnode originates is signed (rl_msg_encode_signed)
 *     and carries the node's certificate;
 *   - a link sending more than `flood_rate` messages per second (after a
 *     burst of `flood_burst`) has the excess dropped and logged; a link
 *     whose peer is one of the vnode's predecessors or successors has the
 *     larger `neighbour_flood_rate` / `neighbour_flood_burst` (replicas).
 * Every refusal is one warn line: `mod=node event=msg_refused shard=0
 * peer=127.0.0.1:40522 reason=bad_signature`.
 *
 * Store, Fetch, Stat and Find for the vnode go to the storage service: a
 * node_kinds_ops_t given to node_new, else (with [node] storage, the
 * default) the node's own: one RocksDB under data_dir/store with a column
 * family per shard, served by kinds.c (nk_*) on the shard's thread.  Each
 * entry's signature is verified before it is stored; a Store is answered
 * only after its batch reached the WAL (the shard loop's commit); each
 * original Store is copied to the vnode's 2 successors (replica 1 and 2);
 * the engine's topology actions (handoff on join and leave, re-replication
 * after a failure, drop) run after each commit; the quota fraction follows
 * the vnode's (pred[2], self] range (docs/protocol.md §3.1, §4.9).  Without
 * a storage service the node answers them Error_Forbidden ("no storage
 * service at this node").
 */
#ifndef VP_CONTROL_NODE_NODE_H
#define VP_CONTROL_NODE_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/conf.h"
#include "common/id.h"
#include "control/chord/chord.h"
#include "dataplane/cert.h"
#include "dataplane/link.h"
#include "dataplane/reload.h"

#define NODE_MAX_SHARDS 32u /* = DP_CERT_MAX_NODE_IDS: one Node-ID per shard */

/*! The node's configuration: [node], [overlay] and [link] (link must stay the first member). */
typedef struct node_conf {
	dp_link_conf_t link;        /*!< [link]: the dp_link_conf_opts rows; cert/key default to data_dir */
	/* [node]: this node's own keys */
	char data_dir[256];         /*!< certificate, key and (with the storage service) the data */
	char listen[128];           /*!< shard 0's address:port; shard i listens on port + i */
	uint32_t shards;            /*!< shard threads (one vnode each); 0 = one per online CPU */
	bool pin;                   /*!< pin shard i to CPU i */
	unsigned log_level;         /*!< error, warn, info, debug */
	uint32_t io_burst;          /*!< events per receive burst */
	uint32_t flood_rate;        /*!< messages per second one link may send */
	uint32_t flood_burst;       /*!< messages one link may send at once */
	uint32_t nb_flood_rate;     /*!< flood_rate of a link to a ring neighbour (predecessor or successor) */
	uint32_t nb_flood_burst;    /*!< flood_burst of a link to a ring neighbour */
	/* [overlay]: which overlay, and where its configuration document comes from */
	char overlay[128];          /*!< instance name */
	char config_file[256];      /*!< the signed configuration document (trusted through [link] ca_file) */
	/* overlay-wide (VP_CONF_F_OVERLAY): filled from the document, never from the file or a flag */
	uint32_t max_message_size;
	uint32_t initial_ttl;
	uint64_t update_interval_ms;
	uint64_t ping_interval_ms;
	uint64_t reliability_ms;    /*!< overlay-reliability-timer: the end-to-end request timeout */
	bool reactive;
	char bootstrap[512];        /*!< "addr:port, addr:port" */
	/* the storage service */
	bool storage;               /*!< [node] storage: serve Store/Fetch/Stat/Find from data_dir/store (RocksDB) */
	uint32_t vipr_kind_id;      /*!< overlay-wide, from the document's ViPR kind (0: ST_VIPR_KIND_ID_DEFAULT) */
	uint32_t vipr_quota;        /*!< overlay-wide, from the document's ViPR kind (0: the store's default) */
} node_conf_t;

/*!
 * \brief The schema rows of viprd ([node], [overlay], [link]) into out[0..cap); *n gets the count.
 * VP_ESPACE if cap is too small.
 */
int node_conf_schema(vp_conf_opt_t *out, size_t cap, size_t *n);

/*!
 * \brief Fill the overlay-wide values of \p c from the configuration document ([overlay] config_file,
 * accepted only if signed under [link] ca_file for [overlay] overlay).  VP_ECONFIG with the reason in \p why
 * (256 bytes).
 */
int node_conf_overlay(node_conf_t *c, char *why);

/* ---- the storage service seam ---------------------------------------------- */

/*! A Store/Fetch/Stat/Find for a vnode, verified (signature, replay) before it gets here. */
typedef struct node_kinds_req {
	const rl_message_t *msg;         /*!< decoded header and contents (body raw) */
	const vp_id_t *vnode;            /*!< the vnode that is the destination */
	const dp_cert_ident_t *signer;   /*!< the message's verified signer */
	const vp_id_t *link_peer;        /*!< the link the message arrived on (its peer's vnode) */
	bool from_neighbour;             /*!< the originator is among the vnode's predecessors or successors */
} node_kinds_req_t;

/*! Send \p body as a request straight to the neighbour \p to (replication, handoff). */
typedef int (*node_kinds_send_fn)(void *arg, const vp_id_t *to, const vp_id_t *resource, const rl_body_t *body);

typedef struct node_kinds_ops {
	void *arg;
	/*!
	 * Answer \p req (shard \p shard): fill \p ans (its pointers valid until the next call on this shard).
	 * A write is durable only after commit(); the answer is sent after it.  0 or a VP_E* code (answered
	 * with the matching RELOAD error).
	 */
	int (*handle)(void *arg, unsigned shard, const node_kinds_req_t *req, rl_body_t *ans);
	/*! Move data after a topology change (chord_store_action_t), sending with \p send. */
	int (*action)(void *arg, unsigned shard, const chord_store_action_t *a, node_kinds_send_fn send,
	              void *send_arg);
	/*! Commit the writes of this loop iteration (one batch); 0 or the answers are not sent. */
	int (*commit)(void *arg, unsigned shard);
} node_kinds_ops_t;

/* ---- the node ------------------------------------------------------------- */

typedef struct node node_t;

/*!
 * \brief Load each shard's certificate and key (shard 0: data_dir/node.pem, node.key unless [link]
 * cert_file/key_file; shard i: data_dir/node-<i>.pem, node-<i>.key), the overlay root, and prepare the shards
 * (listening sockets bound).  \p kinds may be NULL.  VP_ECONFIG (logged with the reason) for a missing or
 * unreadable certificate, two shards with the same Node-ID, a busy port, a data_dir in use.
 */
int node_new(const node_conf_t *conf, const node_kinds_ops_t *kinds, node_t **out);

/*! \brief Start the shard threads: each bootstraps or joins.  VP_EIO if a thread cannot start. */
int node_start(node_t *n);

/*!
 * \brief Graceful stop: every vnode sends Leave, hands its data off, closes its links and its shard exits.
 * \p timeout_ms bounds the time without progress: each handoff Store sent moves the deadline to now +
 * \p timeout_ms, so a range of any size is handed off whole (at the paced rate) while a vnode whose peers
 * take nothing exits \p timeout_ms after its last send.  Returns once every shard thread is joined.
 */
int node_leave(node_t *n, uint64_t timeout_ms);

/*! \brief A shard has stopped on its own (an I/O error): the daemon should exit. */
bool node_failed(const node_t *n);

/*!
 * \brief Re-read what can change at run time: the log level and the document (its bad-node list applies at
 * once).  The document is offered to the trust state the node keeps from node_new on (shared with
 * ConfigUpdate): it must be signed by a configuration signer of the document in force and carry a higher
 * sequence, so a replayed older document is refused (`event=reload_refused what=config_file`).
 */
void node_reload(node_t *n, const node_conf_t *fresh);

/*! \brief The vnode Node-ID of shard \p i. */
const vp_id_t *node_vnode_id(const node_t *n, unsigned i);

unsigned node_shards(const node_t *n);

/* ---- requests of the node's users (the ViPR flow, the admin socket) ------------ */

/*!
 * The outcome of a node_request(), handed to its node_done_fn.  Every pointer is valid during the
 * callback only.  err 0: an answer arrived (or the vnode answered itself): code is its message code
 * (RL_ERROR: error_code/body carry the ErrorResponse).  Otherwise no answer: VP_ETIMEOUT (no answer within
 * the overlay-reliability-timer, retransmissions included), VP_ENOTFOUND (a Node-ID destination that does
 * not exist in the vnode's view), VP_ESTATE (the vnode is not in the ring or is leaving), VP_EBUSY (too many
 * requests in flight on the shard), VP_ENOROUTE, VP_ECRYPTO, VP_ETOOBIG (the request did not encode).
 */
typedef struct node_answer {
	int err;
	uint16_t code;                   /*!< RL_*_ANS or RL_ERROR */
	uint16_t error_code;             /*!< RL_ERROR only */
	const rl_body_t *body;           /*!< the decoded body (rl_body_decode, no kind models) */
	const rl_message_t *msg;         /*!< the whole answer: its SecurityBlock carries entry certificates */
	vp_id_t responder;               /*!< the answer's originator, a Node-ID of its verified signer */
	const dp_cert_ident_t *signer;   /*!< the answer's verified signer */
	dp_cert_store_t *certs;          /*!< the shard's certificate store (for nk_fetch_verify) */
	unsigned shard;
	uint32_t attempts;               /*!< transmissions (1 + retransmissions) */
	uint64_t rtt_ms;                 /*!< first transmission to answer */
	uint64_t rtt_us;                 /*!< the same in microseconds */
	uint32_t hops;                   /*!< links the answer crossed: its via entries + 1; 0 served locally */
} node_answer_t;

/*! Completion of a node_request(): runs exactly once, on the shard's thread (never on the caller's). */
typedef void (*node_done_fn)(void *arg, const node_answer_t *a);

/* Largest number of requests one shard keeps in flight (node_request beyond it: VP_EBUSY answer). */
#define NODE_MAX_REQUESTS 4096u

/*!
 * \brief Originate a request from the vnode of shard \p shard to \p dest (a Resource-ID if \p resource, else a
 * Node-ID): \p body (Store, Fetch, Stat, Find, Probe, AppAttach, Ping or ConfigUpdate) is encoded here, then handed to the
 * shard through its command ring (pushes from threads other than the shards' are serialized by a node lock,
 * so any thread may call it; from a node_done_fn of the same shard it starts at once, without the ring).  The shard
 * signs it, routes it and retransmits it end to end with the same transaction id (docs/protocol.md §4.9)
 * until an answer or the overlay-reliability-timer; when the vnode is itself responsible it serves the
 * request locally (storage, Probe, AppAttach) and \p done gets that answer.  0: \p done will be called;
 * VP_EINVAL (no shard \p shard, an unknown code), VP_ENOMEM, VP_ETOOBIG (the body does not encode),
 * VP_EBUSY (the ring is full), VP_ESTATE (the node is not running): \p done will not be called.
 */
int node_request(node_t *n, unsigned shard, const vp_id_t *dest, bool resource, const rl_body_t *body,
                 node_done_fn done, void *arg);

/*! A function node_call() runs on a shard's thread. */
typedef void (*node_call_fn)(void *arg, unsigned shard);
typedef struct node_call {
	node_call_fn fn;
	void *arg;
} node_call_t;

/*!
 * \brief Run \p fn(\p arg, \p shard) on shard \p shard's thread: through its command ring (serialized like
 * node_request's pushes), or at once when called on that thread.  There \p fn may call node_request (it starts
 * at once) and node_guess_successors.  0: \p fn will run; VP_EINVAL, VP_ENOMEM, VP_EBUSY (the ring is full),
 * VP_ESTATE (the node is not running): it will not.
 */
int node_call(node_t *n, unsigned shard, node_call_fn fn, void *arg);

/*!
 * \brief On shard \p shard's own thread only: up to \p max distinct Node-IDs this vnode knows (itself, its
 * routing table, the peers of its links) at or after \p id clockwise, nearest first.  The first is its guess
 * of the peer responsible for \p id, the next ones of that peer's successors (the replicas): a guess only,
 * the answers to requests routed by Resource-ID say who holds what.  Returns the count written (0 off that
 * thread, while the vnode is not joined, or when it knows less than about half of the ring, estimated from
 * the spacing of its neighbours: there most guesses would be wrong).
 */
size_t node_guess_successors(node_t *n, unsigned shard, const vp_id_t *id, vp_id_t *out, size_t max);

/*!
 * \brief The Resource-ID routed to the successor of \p peer: \p peer + 1 (mod 2^128).  The replica rule
 * (docs/protocol.md §4.9): a Fetch for Resource-ID R addressed to node_after(P), P the answer's responder,
 * reaches P's first successor (replica 1), which answers from its copy; again from there for replica 2.
 */
vp_id_t node_after(const vp_id_t *peer);

/*!
 * \brief Serve AppAttach for \p application at \p addr (numeric "address:port" of an application server of
 * this host, e.g. the PVP listener): every vnode answers an AppAttachReq for it with one TLS-TCP-FH-NO-ICE
 * candidate for \p addr (docs/protocol.md §4.9).  Call before node_start; up to 8 applications.
 * VP_EINVAL for a bad address, VP_ESPACE, VP_ESTATE after node_start.
 */
int node_app_set(node_t *n, uint16_t application, const char *addr);

/*!
 * \brief The requester's side of AppAttach: a TCP connection to the first candidate of \p ans (an
 * AppAttachAns) that accepts within \p timeout_ms, in *\p fd (blocking, caller closes).  VP_ENOTFOUND if no
 * candidate is usable, VP_EIO if none connects.
 */
int node_app_connect(const rl_app_attach_t *ans, unsigned timeout_ms, int *fd);

/*! \brief Free (after node_leave, or before node_start). */
void node_free(node_t *n);

/* ---- status and counters for the daemon's admin socket and metrics (viprd_ops.c) ------------------------ */

#include "control/node/kinds.h"
#include "dataplane/io.h"
#include "storage/store.h"

/*!
 * One shard's state and counters, copied on the shard's own thread (every counter stays owned by the thread
 * that increments it; nobody else reads the live fields).
 */
typedef struct node_shard_status {
	bool valid;               /*!< false: the shard did not answer (its command ring was full) */
	unsigned shard;
	vp_id_t self;
	chord_state_t state;
	bool leaving;
	char listen[128];         /*!< the address its links are accepted on */
	uint32_t nlinks;          /*!< links up */
	chord_table_t table;      /*!< predecessors, successors, fingers (a copy of the published table) */
	uint32_t live_pred, live_succ; /*!< predecessors and successors of the table with a link up */
	dp_io_counters_t io;      /*!< link traffic */
	chord_stats_t chord;      /*!< messages originated by method, relayed, dropped for TTL or route */
	uint64_t relayed;         /*!< messages relayed by the transport */
	uint64_t refused_sig, refused_decode, refused_flood, refused_replay, refused_topology;
	uint64_t taken_ms;        /*!< monotonic ms when copied */
	/* the storage service (all zero without one) */
	bool storage;             /*!< the shard serves Store/Fetch (node's own service) */
	uint64_t records;         /*!< records (resource, kind) in the shard's column family, RocksDB's estimate */
	st_stats_t store;         /*!< storage engine counters: stores, refusals by reason (quota, rate) */
	nk_stats_t kinds;         /*!< service counters: replica and handoff stores, bad signatures, fetches */
	uint32_t quota_used;      /*!< ViPR entries held here signed by this vnode's own Node-ID */
	uint64_t quota_limit;     /*!< the ViPR kind's per-signer limit at this shard (its ring fraction) */
} node_shard_status_t;

/*! Every shard's status, in shard order. */
typedef struct node_status {
	unsigned nshards;
	node_shard_status_t shard[];
} node_status_t;

/*!
 * Called once when every shard has copied its status, on the thread of the last one to do so (a shard thread,
 * or the caller's): it must not block, and \p st is valid during the call only.
 */
typedef void (*node_status_fn)(void *ctx, const node_status_t *st);

/*!
 * \brief Ask every shard for its status through its command ring (no lock on the message path); \p cb gets it.
 * VP_ESTATE when the node is not running (not started, stopped or failed: nobody would answer), VP_ENOMEM.
 * A shard that stops before it answers drops the request: \p cb is then never called, so a caller that waits
 * must bound its wait.
 */
int node_status_async(node_t *n, node_status_fn cb, void *ctx);

#endif
