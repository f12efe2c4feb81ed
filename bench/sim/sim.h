/*
 * bench/sim.h - deterministic discrete-event simulator of a Chord-RELOAD overlay.
 *
 * N virtual nodes in one process, each a real chord_node_t (control/chord.h),
 * over a simulated network: per-message latency (minimum plus a log-normal
 * part), per-transmission loss repaired by link-layer retransmission (a link
 * that loses every try is reported down), partitions, crashes.  Every message
 * is encoded with the real RELOAD codec (dataplane/reload.h) on send and decoded
 * on delivery.  A small in-memory store per node serves Store/Fetch of ViPR
 * registrations (kind RL_KIND_VIPR_REGISTRATION: storage/vipr_kind.h's
 * dictionary keys and values), follows the engine's handoff/replication actions and
 * replicates each original Store to the 2 successors.
 *
 * Everything is driven by one seeded PRNG: the same seed and calls give the
 * same run, bit for bit.  Single-threaded; the calling thread must be
 * registered with liburcu QSBR (the engine publishes tables with it).
 *
 * Debugging: with the log level at debug, SIM_TRACE_OP=<op index> logs every
 * hop of that lookup's messages (and where they were dropped).
 */
#ifndef VP_BENCH_SIM_H
#define VP_BENCH_SIM_H

#include <stdbool.h>
#include <stdint.h>

#include "common/id.h"
#include "control/chord/chord.h"
#include "storage/vipr_kind.h"

typedef struct sim sim_t;

typedef struct sim_cfg {
	uint64_t seed;
	uint32_t max_nodes;        /*!< node slots (joins over the run, not just live ones) */
	double lat_min_ms;         /*!< one-way latency floor */
	double lat_median_ms;      /*!< median of the log-normal part added to it */
	double lat_sigma;          /*!< its sigma (0.5: p99 about 3.2 x median) */
	double loss;               /*!< per-transmission loss probability */
	uint32_t rto_ms;           /*!< link-layer retransmission timeout after a loss */
	uint32_t max_tx;           /*!< transmissions before the link is declared down */
	uint32_t link_detect_ms;   /*!< time for a sender to notice a dead peer (acks missing) */
	uint32_t lookup_timeout_ms;/*!< per attempt */
	uint32_t lookup_attempts;  /*!< end-to-end attempts of a Fetch before it counts as failed */
	chord_cfg_t chord;         /*!< engine timers and sizes */
	bool join_first;           /*!< join through node 0 while it lives (one configured bootstrap peer), else a random member */
} sim_cfg_t;

typedef struct sim_counters {
	uint64_t msgs;             /*!< transmissions delivered or lost (each hop counts) */
	uint64_t maint_msgs;       /*!< of which topology maintenance (Attach, Join, Leave, Update, Ping, RouteQuery, Probe) */
	uint64_t store_msgs;       /*!< of which Store (originals, replication, handoff) */
	uint64_t bytes;
	uint64_t dropped;          /*!< to dead or partitioned nodes, or lost on every try */
	uint64_t codec_errors;     /*!< encode or decode failures: must stay 0 */
	uint64_t lookups, lookup_ok, lookup_wrong, lookup_failed;
	uint64_t hops_sum, hops_n;
	uint64_t hop_hist[65];
} sim_counters_t;

typedef struct sim_survival {
	uint32_t total;            /*!< registrations stored */
	uint32_t ok;               /*!< fetched from the overlay with the stored value */
	uint32_t lost_no_holder;   /*!< not fetchable and no live node holds a copy: all replicas died */
	uint32_t lost_with_holder; /*!< not fetchable although a live node owns or replicates a copy (silent loss) */
	uint32_t owner_dead;       /*!< of the failures, registrations whose owner is dead too */
} sim_survival_t;

/*! \brief Defaults: 100 nodes, 20 ms + log-normal(15 ms) latency, no loss, RFC timers. */
sim_cfg_t sim_cfg_default(void);

/*!
 * \brief A new simulator in *\p out (free with sim_free()).
 * 0, VP_ECONFIG (a value out of range) or VP_ENOMEM; *\p out is NULL on error.
 */
int sim_new(const sim_cfg_t *cfg, sim_t **out);
void sim_free(sim_t *s);

/*!
 * \brief Add a node with a random Node-ID: the first one bootstraps the overlay,
 * the others join through a random live member.  Returns its index or a
 * negative VP_E* code (VP_ESPACE when out of slots).
 */
int sim_spawn(sim_t *s);

/*! \brief Crash node \p idx: it stops answering, nobody is told. */
void sim_kill(sim_t *s, uint32_t idx);

/*! \brief Graceful Leave of node \p idx, then it stops. */
int sim_leave(sim_t *s, uint32_t idx);

/*! \brief Put node \p idx in partition \p group (0 = everyone's default). */
void sim_set_group(sim_t *s, uint32_t idx, uint8_t group);

/*! \brief Run events up to simulated time \p t_ms. */
void sim_run_until(sim_t *s, uint64_t t_ms);

/*! \brief Current simulated time in ms. */
uint64_t sim_now(const sim_t *s);

uint32_t sim_nodes(const sim_t *s);        /*!< slots used */
uint32_t sim_live(const sim_t *s);         /*!< alive (joined or joining) */
uint32_t sim_live_joined(sim_t *s);        /*!< alive and joined */
bool sim_alive(const sim_t *s, uint32_t idx);
bool sim_joined(const sim_t *s, uint32_t idx);
/*! \brief A random alive, joined node (UINT32_MAX if none). */
uint32_t sim_random_live(sim_t *s);

/*! \brief Live joined nodes whose succ[0] or pred[0] is not the true one. */
uint32_t sim_ring_errors(sim_t *s);

/*!
 * \brief Start a lookup (a Fetch of a random resource id) from a random live
 * node.  It succeeds when the answer comes from the node that truly owns the id.
 */
void sim_lookup_random(sim_t *s);

/*! \brief Store \p k new registrations, each from a random live owner. */
void sim_store_regs(sim_t *s, uint32_t k);

/*! \brief Owners that are alive store their registrations again (a refresh, new storage_time). */
void sim_refresh_regs(sim_t *s);

/*!
 * \brief Fetch every registration from a random live node, run until all
 * answered or failed, and classify the outcome.
 */
sim_survival_t sim_check_regs(sim_t *s);

/*!
 * \brief How many live nodes hold a protocol copy of each registration (one they own or replicate by their own
 * table; leftovers awaiting CHORD_STORE_DROP do not count): hist[c] counts those with c copies (4 = 4 or more).
 */
void sim_copies(sim_t *s, uint32_t hist[5]);

/*!
 * \brief Where the copies are: \p right[c] counts the registrations held by c of the 3 nodes that should hold
 * them (the responsible node and its 2 successors on the true ring of live joined nodes), \p extra[c] those
 * also held by c other live nodes (4 = 4 or more).  A registration with right[<3] is one failure closer to loss
 * than the replication model assumes.
 */
void sim_placement(sim_t *s, uint32_t right[4], uint32_t extra[5]);

/*! \brief Registrations no live node holds a copy of (called right after a failure: those are doomed). */
uint32_t sim_regs_without_copy(sim_t *s);

/*!
 * \brief The sampling spread of a mass failure on today's ring: \p trials random sets of \p kills live joined
 * nodes, each counting the registrations whose 3 in-place holders (sim_placement) all fall in the set.  Gives
 * the mean and the 5th/95th percentiles of the doomed fraction (in %).  Its own RNG from \p seed: the
 * simulation is not perturbed.
 */
int sim_doomed_spread(const sim_t *s, uint32_t kills, uint32_t trials, uint64_t seed, double *mean_pct,
                      double *p5_pct, double *p95_pct);

/*! \brief Lookups and Stores still waiting for an answer. */
uint32_t sim_pending_ops(const sim_t *s);

const sim_counters_t *sim_counters(const sim_t *s);
void sim_counters_reset(sim_t *s);

/*! \brief Messages transmitted since sim_new, across counter resets. */
uint64_t sim_msgs_total(const sim_t *s);

/*! \brief Events processed since sim_new (for the simulator's speed). */
uint64_t sim_events(const sim_t *s);

/*! \brief The engine of node \p idx. */
chord_node_t *sim_node(sim_t *s, uint32_t idx);

/*! \brief Draw from the simulator's PRNG (for drivers that must stay deterministic). */
uint64_t sim_rand(sim_t *s);

/* ---- operations for an embedding application (the demo's DHT) -------------------- */

#define SIM_KEY_LEN ST_VIPR_KEY_LEN /* dictionary key: claimant Node-ID || VService id */
#define SIM_VALUE_MAX 48            /* a VIPR-REGISTRATION value with up to 25 reserved bytes */
#define SIM_FETCH_MAX 64            /* entries handed to a fetch callback at most */

/*!
 * One dictionary entry of a VIPR-REGISTRATION resource, as the simulator
 * stores and carries it: the bytes of storage/vipr_kind.h's key and value
 * (st_vipr_key_encode / st_vipr_value_encode), so what a simulated overlay
 * holds is what a real node's store would hold.  A withdrawal is a deletion
 * (exists false, no value), kept with its storage_time like RFC 6940's, so an
 * older store cannot bring the entry back.
 */
typedef struct sim_entry {
	uint8_t key[SIM_KEY_LEN];
	uint64_t storage_time;          /*!< a newer one replaces, an older one is refused */
	bool exists;
	uint8_t value_len;
	uint8_t value[SIM_VALUE_MAX];
} sim_entry_t;

/*! Completion of sim_store_entry(): stored by the responsible node (which then replicates it). */
typedef void (*sim_store_cb)(void *arg, bool ok);

/*!
 * Completion of sim_fetch_entries(): the node that answered (UINT32_MAX if
 * none), the hops the request travelled, and that node's entries for the
 * resource (valid during the call).
 */
typedef void (*sim_fetch_cb)(void *arg, bool ok, uint32_t responder, uint32_t hops, const sim_entry_t *e,
                             size_t n);

/*!
 * \brief Store entry \p e under resource \p res, originating at node \p from:
 * a routed RELOAD Store, retried like the other operations.  The callback runs
 * once, from inside this call (the origin is responsible) or from
 * sim_run_until(); it must not call into the simulator.
 */
int sim_store_entry(sim_t *s, uint32_t from, const vp_id_t *res, const sim_entry_t *e, sim_store_cb cb, void *arg);

/*!
 * \brief Fetch the entries of resource \p res from whichever node is
 * responsible for \p route_to (pass \p res itself for the responsible node, or
 * a node's id + 1 for its successor, i.e. a replica).  Callback as above.
 */
int sim_fetch_entries(sim_t *s, uint32_t from, const vp_id_t *res, const vp_id_t *route_to, sim_fetch_cb cb,
                      void *arg);

/*!
 * \brief Make the node responsible for \p res forget its entries for it (a
 * rogue or damaged copy; its 2 replicas keep theirs), as a test of readers'
 * majority votes.  Returns that node's index, or VP_ENOTFOUND (empty ring).
 */
int sim_forget_resource(sim_t *s, const vp_id_t *res);

#endif
