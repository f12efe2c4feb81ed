/*
 * control/node/dht_reload.h - the ViPR server's overlay (vsrv_dht_t,
 * control/server/vipr_server.h) over RELOAD requests originated by the node's
 * vnodes (ARCHITECTURE.md §1, docs/protocol.md §2.9).
 *
 *   store    -> one signed StoreReq of the VIPR-REGISTRATION entry
 *               (storage/vipr_kind.h) at SHA-1(number)[0..15], signed by one of
 *               the server's Node-IDs (its "signers": one per vnode, each
 *               with its own certificate), a withdrawal as a signed deletion;
 *               paced: at most `store_rate` per second and `store_inflight`
 *               unanswered, both cut in half by congestion (a timeout) and
 *               grown back by successes (a rate-limited answer holds only its
 *               1/256 of the ring for a while), sent as 256
 *               interleaved sweeps in Resource-ID order (one per 1/256 of the
 *               ring): each responsible peer receives its share in ascending
 *               runs, and consecutive Stores go to different peers, which
 *               police each signer (docs/protocol.md §3.4);
 *   fetch    -> three Fetches of the number's resource: routed to the
 *               resource (the responsible peer R answers), then routed to
 *               R + 1 and to that answerer + 1 (R's two successors, which hold
 *               the replicas) — asked at once when the vnode can guess R and
 *               its successor (dhr_transport_t.guess), the answers kept only
 *               where the guess proved right (vsrv_copies_standing), else one
 *               after the other; each answer's entries are verified again by the
 *               fetcher (nk_fetch_verify: signature, signer's certificate,
 *               claimant = signer); the copies are voted on
 *               (control/server/lookup.h) and an incident is reported when
 *               they disagree or an entry fails verification;
 *   app_attach -> the transport's AppAttach to the claimant's contact.
 *
 * Quota (overview draft §7.1): storage allows Q numbers per Node-ID, so a
 * carrier runs as many Node-IDs as its block needs.  Each number is given to
 * one signer: the one its Resource-ID hashes to, or the next with room when
 * that one holds `quota` numbers already, so n Node-IDs claim n x quota
 * numbers exactly; a refresh or withdrawal uses the signer that claimed it
 * (remembered in memory: after a restart a number is claimed again by the
 * next publish or refresh, in Resource-ID order).  A store that would put
 * more than `quota` numbers on every signer is refused here with VP_EQUOTA
 * and an alarm line (`event=alarm alarm=over_quota`), before the overlay
 * refuses it.
 *
 * The requests go through dhr_transport_t (node_request in viprd; a stand-in
 * in tests).  Answers may arrive on any thread.
 */
#ifndef VP_CONTROL_NODE_DHT_RELOAD_H
#define VP_CONTROL_NODE_DHT_RELOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/types.h>

#include "common/id.h"
#include "control/server/vipr_server.h"
#include "dataplane/cert.h"
#include "dataplane/reload.h"

#define DHR_MAX_SIGNERS 32u /* one per vnode (NODE_MAX_SHARDS) */

/*!
 * Completion of one request: status 0 with the decoded answer message \p ans
 * (header, SecurityBlock, raw body) and the Node-ID of the peer that answered
 * (its verified signer), or a VP_E* code (ans and responder NULL).  Called
 * exactly once, on any thread; pointers valid during the call only.
 */
typedef void (*dhr_answer_fn)(void *arg, int status, const rl_message_t *ans, const vp_id_t *responder);

/*! How requests leave the node. */
typedef struct dhr_transport {
	void *ctx;
	/*!
	 * Send \p body (signed by vnode \p shard) routed to \p dest as a resource
	 * destination (delivered to the peer responsible for it), with RFC 6940's
	 * end-to-end timeout and retransmission.  0 and done() later, or a VP_E*
	 * code (no done()).
	 */
	int (*request)(void *ctx, unsigned shard, const vp_id_t *dest, const rl_body_t *body, dhr_answer_fn done,
	               void *arg);
	/*! AppAttach to Node-ID \p contact for PVP: a connected stream socket in *fd (vsrv_dht_t.app_attach). */
	int (*app_attach)(void *ctx, const vp_id_t *contact, unsigned timeout_ms, int *fd);
	/*!
	 * Optional, with guess (NULL: a lookup asks its copies one after the other): run \p fn(\p arg, \p shard)
	 * on vnode \p shard's thread, where guess() answers and request() may be called (node_call's shape).
	 * 0, or a VP_E* code (fn not run).
	 */
	int (*call)(void *ctx, unsigned shard, void (*fn)(void *arg, unsigned shard), void *arg);
	/*!
	 * Within call() only: up to \p max Node-IDs at or after \p id that vnode \p shard guesses hold it (the
	 * responsible peer, then its successors: node_guess_successors), nearest first; 0 when it cannot guess.
	 */
	size_t (*guess)(void *ctx, unsigned shard, const vp_id_t *id, vp_id_t *out, size_t max);
} dhr_transport_t;

/*! One of the server's Node-IDs: the vnode that sends its stores and the key that signs them. */
typedef struct dhr_signer {
	unsigned shard;            /*!< the vnode's shard */
	vp_id_t node_id;           /*!< its Node-ID (in its certificate) */
	EVP_PKEY *key;             /*!< borrowed; must outlive the dhr_t */
	const uint8_t *cert_der;   /*!< borrowed */
	size_t cert_len;
} dhr_signer_t;

typedef struct dhr_conf {
	dhr_signer_t signers[DHR_MAX_SIGNERS];
	unsigned n_signers;        /*!< 1..DHR_MAX_SIGNERS */
	uint32_t quota;            /*!< numbers per Node-ID (ST_VIPR_QUOTA) */
	uint32_t store_rate;       /*!< stores sent per second */
	uint32_t store_inflight;   /*!< stores sent and not yet answered */
	uint32_t lifetime_s;       /*!< lifetime of a stored entry */
	uint32_t kind_id;          /*!< the VIPR-REGISTRATION Kind-ID */
	dp_cert_store_t *certs;    /*!< verifies fetched entries; borrowed, used under the dhr_t's lock */
} dhr_conf_t;

/*! \brief Defaults: no signer, Q = ST_VIPR_QUOTA, 2000 stores/s, 64 in flight, 24 h, the built-in kind. */
void dhr_conf_default(dhr_conf_t *c);

typedef struct dhr dhr_t;

/*! Counters (any thread). */
typedef struct dhr_stats {
	uint64_t stores_sent, stores_ok, stores_failed, over_quota;
	uint64_t store_retries;    /*!< Stores sent again after no answer (timeout, busy) or a rate-limited answer */
	uint64_t rate_limited;     /*!< rate-limited answers */
	uint64_t backoffs;         /*!< congestion cuts after a timeout (rate and window halved), once per window */
	uint64_t holds;            /*!< stripes (1/256 of the ring) held after a rate-limited answer */
	uint64_t fetches, fetch_copies_failed, entries_rejected, incidents;
	uint64_t fetches_parallel;   /*!< lookups that asked their 3 copies at once (the vnode guessed the replicas) */
	uint64_t fetch_guess_missed; /*!< of those, lookups whose guess was wrong: copies asked again, one by one */
	uint64_t numbers;          /*!< numbers currently claimed through this server */
	uint64_t queued;           /*!< stores waiting for the pacer */
	uint32_t inflight;         /*!< Stores sent and not yet answered */
	uint64_t refresh_late;     /*!< refreshes acknowledged more than a lifetime after the number's last Store */
	double backlog_s;          /*!< seconds the queued Stores need at the current rate (> lifetime: behind) */
	double rate, window;       /*!< the pacer's current rate (stores/s) and window (congestion control) */
} dhr_stats_t;

/*!
 * \brief New overlay adapter; starts its pacer thread.  \p t is copied (its
 * ctx must outlive the dhr_t).  VP_EINVAL (no signer, no certificate store,
 * zero rate), VP_ENOMEM, VP_EIO (thread).
 */
int dhr_new(const dhr_conf_t *conf, const dhr_transport_t *t, dhr_t **out);

/*! \brief The vsrv_dht_t to give vsrv_new(). */
void dhr_iface(dhr_t *d, vsrv_dht_t *out);

/*!
 * \brief Stop the pacer (no Store is sent from now on): queued stores complete
 * with VP_ECLOSED, dhr_store refuses (VP_ECLOSED); Stores in flight still end
 * through the transport (its stop calls each back).  Idempotent; NULL is fine.
 */
void dhr_stop(dhr_t *d);

/*!
 * \brief Stop the pacer (dhr_stop): queued stores complete with VP_ECLOSED; waits (up to
 * \p timeout_ms) for requests in flight, then frees.  NULL is fine.  The
 * server using it must be stopped first; the transport must still run.
 */
void dhr_free(dhr_t *d, uint64_t timeout_ms);

void dhr_get_stats(dhr_t *d, dhr_stats_t *out);

/*! \brief The signer (index into conf.signers) that claims \p number (the one its Resource-ID hashes to
 *  when it is not claimed yet). */
unsigned dhr_signer_of(dhr_t *d, const char *number);

#endif
