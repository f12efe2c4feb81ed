/*
 * bench/support/sim_dht.h - the vipr_server DHT interface (vsrv_dht_t) on the Chord
 * overlay simulator (bench/sim/sim.h): real Chord engines and the real RELOAD codec
 * over a simulated network, in this process.
 *
 * One overlay thread owns the simulator.  It forms the overlay (N plain vnodes
 * plus one vnode per carrier), then serves the servers' requests:
 *
 *   store  -> a routed RELOAD Store of the VIPR-REGISTRATION from the carrier's
 *             own vnode; the responsible node replicates it to its 2 successors;
 *   fetch  -> three Fetches from the requesting carrier's vnode: routed to the
 *             number's resource (the responsible node R answers), then to R+1
 *             and to that answerer+1 (R's two successors, the replicas); every
 *             registration held by at least 2 of the 3 copies is returned
 *             (seed 001 §B.4), and an incident is reported when the copies are
 *             not all equal;
 *   app_attach -> TCP to the PVP endpoint the carrier registered (the
 *             simulator carries no real sockets; AppAttach's ICE exchange is
 *             the daemon's business).
 *
 * Time: the simulator runs in simulated time while VAP and PVP run on real
 * sockets.  Forming the overlay runs as fast as the CPU allows.  After that
 * the overlay thread drives the simulator from the wall clock, in one of two
 * paces:
 *   SIM_DHT_PACE_REAL  simulated time follows the wall clock, busy or idle: a
 *                      Store or Fetch takes its simulated latency in real time
 *                      (what a person watching the demo should see);
 *   SIM_DHT_PACE_FAST  simulated time follows the wall clock while the overlay
 *                      is idle (so Chord maintenance runs at its real pace) and
 *                      runs ahead as fast as needed while an operation is in
 *                      flight: an operation costs the CPU time of its hops, not
 *                      their latency (tests, large runs).  Simulated time then
 *                      never lags real time and may run ahead of it.
 *
 * The simulator stores real VIPR-REGISTRATION entries (storage/vipr_kind.h:
 * key = claimant Node-ID || VService id, value = version, contact Node-ID,
 * VService id, PVP methods); a withdrawal is stored as a deletion.  Fetch
 * results are voted on by the product's vsrv_lookup_vote()
 * (control/server/lookup.h).
 */
#ifndef VP_BENCH_SUPPORT_SIM_DHT_H
#define VP_BENCH_SUPPORT_SIM_DHT_H

#include <stddef.h>
#include <stdint.h>

#include "bench/sim/sim.h"
#include "control/server/lookup.h"
#include "control/server/vipr_server.h"

#define SIM_DHT_MAX_CARRIERS 8
#define SIM_DHT_COPIES VSRV_COPIES /* the responsible node and its 2 replicas */

typedef struct sim_dht sim_dht_t;

typedef enum sim_dht_pace { SIM_DHT_PACE_REAL = 0, SIM_DHT_PACE_FAST = 1 } sim_dht_pace_t;

typedef struct sim_dht_conf {
	uint64_t seed;            /*!< simulator PRNG seed */
	unsigned plain_nodes;     /*!< vnodes besides the carriers' */
	unsigned carriers;        /*!< carrier vnodes (1..SIM_DHT_MAX_CARRIERS) */
	double lat_min_ms;        /*!< one-way latency floor (0 = simulator default) */
	double lat_median_ms;     /*!< median of the log-normal part (0 = default) */
	sim_dht_pace_t pace;      /*!< how simulated time relates to real time (above) */
} sim_dht_conf_t;

/*! What forming the overlay did. */
typedef struct sim_dht_formed {
	unsigned nodes;           /*!< vnodes joined */
	uint64_t sim_ms;          /*!< simulated time it took */
	double wall_s;            /*!< real time it took */
	uint64_t messages;        /*!< RELOAD messages exchanged */
} sim_dht_formed_t;

/*! Counters (any thread). */
typedef struct sim_dht_stats {
	uint64_t stores, stores_failed, fetches, fetches_failed, incidents;
	uint64_t messages, hops_sum, hops_n, codec_errors;
	uint64_t sim_ms;
} sim_dht_stats_t;

/*!
 * \brief Create, start the overlay thread and form the overlay; returns once
 * every vnode joined and the ring is consistent (or VP_ETIMEOUT after 10
 * minutes of simulated time).
 */
int sim_dht_start(const sim_dht_conf_t *conf, sim_dht_t **out, sim_dht_formed_t *formed);

/*! \brief Stop the thread and free.  The servers using it must be stopped first. */
void sim_dht_free(sim_dht_t *d);

/*! \brief Node-ID of carrier \p k's vnode (put it in the carrier's vsrv_conf_t). */
const vp_id_t *sim_dht_carrier_id(const sim_dht_t *d, unsigned k);

/*! \brief The vsrv_dht_t of carrier \p k (requests originate at its vnode). */
void sim_dht_iface(sim_dht_t *d, unsigned k, vsrv_dht_t *out);

/*! \brief Where AppAttach to carrier \p k reaches its PVP server. */
int sim_dht_set_endpoint(sim_dht_t *d, unsigned k, const char *host, uint16_t port);

void sim_dht_get_stats(sim_dht_t *d, sim_dht_stats_t *out);

/*!
 * \brief Make the vnode responsible for \p number drop its copy of the
 * number's registrations (a rogue or damaged responsible node; the 2 replicas
 * keep theirs): the next fetch sees the copies disagree, reports an incident
 * and still returns what the majority holds.  Blocking; returns the vnode's
 * index or a VP_E* code.
 */
int sim_dht_forget(sim_dht_t *d, const char *number);

/*!
 * \brief The entry the simulator stores for \p reg: storage/vipr_kind.h's key and value
 * (a withdrawal is a deletion: exists false, no value).  VP_ESPACE if the value does not fit.
 * The copies a fetch returns are voted on by control/server/lookup.h's vsrv_lookup_vote().
 */
int sim_dht_entry_encode(const vsrv_reg_t *reg, bool withdrawn, sim_entry_t *e);

#endif
