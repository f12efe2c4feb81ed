/*
 * control/node/kinds.h - what a vnode does with data: the storage service of
 * the RELOAD methods Store, Fetch, Stat and Find over a shard's kind store
 * (storage/store.h), the storage actions of the Chord engine (handoff,
 * replication, drop), and the fetcher's re-verification of an answer.
 *
 * One nk_t per shard: it owns nothing of the shard but its open batch and the
 * Store answers waiting for that batch's WAL write.  It serves every vnode of
 * the shard (each request names its vnode and routing table).  Everything here
 * runs on the shard's thread; nothing takes a lock.
 *
 * Verification (docs/protocol.md §1.4, §2.4).  The caller has verified the
 * message (dp_cert_msg_verify) and hands over its signer.  Every StoredData of
 * a Store is verified here against its own signature
 * (dp_cert_stored_data_verify; certificates from the cache or the message's
 * SecurityBlock), and storage access control gets, per entry, only the
 * Node-IDs of the certificate that verified it.  Certificates of stored
 * entries are carried in Fetch answers and in handoff/replica Stores, taken
 * from the shard's certificate cache by the hash each entry's SignerIdentity
 * names (docs/protocol.md §2.8).
 *
 * Neighbour stores.  A Store with replica_number 1 or 2 is accepted only from a
 * predecessor responsible for the resource in the receiver's own table; a
 * Store with replica_number 0 from a ring neighbour for a resource this vnode
 * holds (a join or leave handoff, or a replica offered back to its owner) is
 * a "neighbour store", unless every entry is signed by the message's own
 * signer (then it is that node's own original store, replicated and policed
 * like any other).  Neighbour stores are not charged to the per-signer
 * store rate (they carry many claimants' data; counted in nk_stats_t), their
 * entries are stored entry by entry (a bad entry is refused and logged, the
 * good ones stored), and the quota still applies.
 */
#ifndef VP_CONTROL_NODE_KINDS_H
#define VP_CONTROL_NODE_KINDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/types.h>

#include "common/clock.h"
#include "common/id.h"
#include "control/chord/chord.h"
#include "dataplane/cert.h"
#include "dataplane/chord_table.h"
#include "dataplane/reload.h"
#include "storage/store.h"

typedef struct nk nk_t;

/* ---- configuration ----------------------------------------------------- */

/* Largest number of Store requests of one shard iteration waiting for the commit. */
#define NK_PENDING_DEFAULT 256u
/* Most vnodes of one shard whose ranges nk_set_range() keeps (DROP keeps all of them). */
#define NK_MAX_VNODES 64u

typedef struct nk_conf {
	/*! Store requests answered at one nk_commit() (default NK_PENDING_DEFAULT); beyond it nk_handle()
	 *  returns VP_EBUSY and the shard loop commits first. */
	uint32_t max_pending;
	/*! The vnodes' private key and certificate (DER), used to sign the vnode's own CERTIFICATE_BY_NODE
	 *  entry (nk_store_own_cert) and to carry that certificate; may be NULL / 0 if that is not used. */
	EVP_PKEY *key;
	const uint8_t *cert_der;
	size_t cert_len;
	/*! Wall clock for storage_time and ages (NULL = system); must outlive the nk_t. */
	const vp_clock_t *clock;
} nk_conf_t;

/*! \brief Defaults (no key, system clock). */
void nk_conf_default(nk_conf_t *conf);

/*!
 * \brief The CERTIFICATE_BY_NODE kind (RFC 6940 kind 3: array, NODE-MATCH) as
 * this node stores it; add it to st_config_t.kinds so peers' certificates can be
 * stored.  Max 4 entries of 8 KiB, lifetimes 60 s .. 48 h.
 */
st_kind_t nk_kind_cert_by_node(void);

/*!
 * \brief New storage service over \p shard (which must be the shard of the
 * calling thread) verifying with \p certs (the shard's certificate store).
 * Both must outlive the nk_t.  VP_EINVAL, VP_ENOMEM.
 */
int nk_new(const nk_conf_t *conf, st_shard_t *shard, dp_cert_store_t *certs, nk_t **out);

/*! \brief Free; an open batch is aborted (its stores never answered). NULL is a no-op. */
void nk_free(nk_t *k);

/* ---- sender roles ------------------------------------------------------ */

/* What a sender may store at a resource, by the receiver's table (bit set). */
#define NK_ROLE_NEIGHBOUR 0x1u /*!< a neighbour (pred or succ) and the resource in (pred[2], self]: handoff */
#define NK_ROLE_REPLICA 0x2u   /*!< pred[i] (i < 2) and the resource in (pred[i+1], pred[i]]: replica 1..2 */

/*!
 * \brief Role of \p sender for \p resource in the vnode table \p t (NULL: 0).
 * NK_ROLE_REPLICA: the sender is the predecessor that the receiver's table
 * makes responsible for the resource (replica_number 1 from pred[0], 2 from
 * pred[1]; either number is accepted from either, views may differ by one
 * node).  NK_ROLE_NEIGHBOUR: the sender is a predecessor or successor and the
 * resource is one this vnode holds ((pred[2], self]).  0 otherwise (any other
 * peer: original stores only).  Lock-free: \p t is an RCU snapshot.
 */
unsigned nk_sender_role(const chord_table_t *t, const vp_id_t *sender, const vp_id_t *resource);

/* ---- requests ---------------------------------------------------------- */

/* A request whose destination is a vnode of this shard (all pointers borrowed for the call). */
typedef struct nk_request {
	const rl_message_t *msg;       /*!< decoded (rl_msg_decode); body raw; the code selects the method */
	const vp_id_t *vnode;          /*!< the destination vnode's Node-ID */
	const chord_table_t *table;    /*!< that vnode's current routing snapshot (NULL = no neighbours) */
	const dp_cert_ident_t *signer; /*!< the message's verified signer (dp_cert_msg_verify) */
	const vp_id_t *sender;         /*!< the originator (dp_cert_originator), one of signer's Node-IDs */
	uint64_t tag;                  /*!< the caller's handle; given back in the answer */
} nk_request_t;

/* The answer to send back (to encode as the MessageContents of the answer message). */
typedef struct nk_answer {
	uint64_t tag;           /*!< nk_request_t.tag */
	uint16_t code;          /*!< RL_STORE_ANS, RL_FETCH_ANS, RL_STAT_ANS, RL_FIND_ANS or RL_ERROR */
	rl_bytes_t body;        /*!< the encoded message_body (an ErrorResponse for RL_ERROR) */
	uint16_t error_code;    /*!< RL_ERROR only: the ErrorResponse code (also in body) */
	const char *error_info; /*!< RL_ERROR only: its error_info text (also in body) */
	/*! Certificates to carry in the answer's SecurityBlock (Fetch: every entry's signer). */
	const rl_cert_t *certs;
	size_t n_certs;
} nk_answer_t;

/*!
 * \brief Serve Store, Fetch, Stat or Find \p req.  0: *ans holds the answer
 * (possibly an Error) and stays valid until the next call on \p k.  1: a Store
 * queued into the shard's open batch (opened here if needed); its answer comes
 * from nk_commit().  VP_EBUSY: max_pending stores wait, call nk_commit() and
 * then this again.  VP_EBADTYPE for another method, VP_EINVAL for a bad
 * argument.  Errors of the request itself are answers (RELOAD codes of
 * docs/protocol.md §2.6; Invalid_Message for a body that does not decode;
 * Forbidden "not-a-replica-sender" for a replica from a peer without
 * NK_ROLE_REPLICA; Forbidden "bad-signature" for an original Store with an
 * entry that does not verify).
 */
int nk_handle(nk_t *k, const nk_request_t *req, nk_answer_t *ans);

/* One Store (or other request) for the transport to send; pointers valid during the call. */
typedef struct nk_send {
	const vp_id_t *peer;     /*!< the directly connected neighbour to send to; NULL = route to resource */
	const vp_id_t *resource; /*!< the StoreReq's Resource-ID */
	const rl_body_t *body;   /*!< the request body (RL_STORE_REQ) */
	const rl_cert_t *certs;  /*!< certificates for the SecurityBlock (the entries' signers) */
	size_t n_certs;
} nk_send_t;

/*! \brief Transport hook: send \p s (signed by the link layer); 0 or a negative VP_E* code. */
typedef int (*nk_send_fn)(void *arg, const nk_send_t *s);

/*! \brief Answer hook of nk_commit(): \p ans is valid during the call only. */
typedef void (*nk_done_fn)(void *arg, const nk_answer_t *ans);

/*!
 * \brief Commit the shard's open batch (st_batch_commit: the WAL write) and
 * answer every Store queued since the last commit through \p done: its
 * StoreAns, or Request_Timeout if the commit failed.  Then each original
 * Store (replica_number 0, not a neighbour store) accepted by the vnode
 * responsible for its resource is copied to that vnode's 2 successors with
 * replica_number 1 and 2 through \p send
 * (NULL = no replication).  Call once per shard loop iteration; no batch open
 * is a no-op.  Returns 0 or the commit's error (VP_EDB).  A Store that \p done
 * or \p send has served here (nk_handle from inside them) goes into the next
 * batch, answered by the next call; nk_commit from inside them is a no-op.
 */
int nk_commit(nk_t *k, nk_done_fn done, nk_send_fn send, void *arg);

/*! \brief True while a batch is open (Stores written and not yet committed). */
bool nk_batch_pending(const nk_t *k);

/* ---- topology actions -------------------------------------------------- */

/*!
 * \brief Carry out storage action \p a of a vnode of this shard
 * (control/chord/chord.h).  HANDOFF / REPLICATE: one StoreReq per Resource-ID
 * in (lo, hi] with every live entry as stored (signature, storage_time,
 * remaining lifetime) and replica_number 0 / a->replica_number, sent to a->to
 * through \p send with the entries' certificates.  DROP: remove the entries
 * outside (lo, hi] and outside every vnode range known from nk_set_range()
 * that were written here more than a->grace_ms ago.  Must be called with no
 * batch open (after nk_commit): VP_ESTATE otherwise.  A send failure stops a
 * HANDOFF/REPLICATE and is returned (the engine re-emits on the next change).
 * *n_entries (may be NULL) gets the entries sent or dropped.
 */
int nk_action(nk_t *k, const chord_store_action_t *a, nk_send_fn send, void *arg, uint64_t *n_entries);

/*!
 * \brief Set the shard's quota fraction (st_shard_set_fraction) from the
 * tables of its vnodes: the sum over \p tables[0..n) of the ring fraction
 * (pred[2], self] each holds (its range and the 2 it replicates; the whole
 * ring while it knows fewer than 3 predecessors), capped at the whole ring.
 * Also remembers the ranges for DROP.  Returns the fraction in ppb.
 */
uint32_t nk_set_range(nk_t *k, const chord_table_t *const *tables, size_t n);

/*!
 * \brief Store the vnode's own certificate (conf.cert_der, signed with
 * conf.key) in CERTIFICATE_BY_NODE at Resource-ID H(\p vnode), array index 0,
 * with \p lifetime_s: one routed StoreReq through \p send.  Call at join and
 * before the lifetime ends.  VP_ESTATE without key and certificate.
 */
int nk_store_own_cert(nk_t *k, const vp_id_t *vnode, uint32_t lifetime_s, nk_send_fn send, void *arg);

/* ---- fetcher ----------------------------------------------------------- */

/*! \brief A verified entry of a Fetch answer; \p sd and \p signer are valid during the call. */
typedef int (*nk_entry_fn)(void *arg, uint32_t kind, const rl_stored_data_t *sd, const dp_cert_ident_t *signer);

typedef struct nk_fetch_result {
	uint32_t accepted;     /*!< entries passed to the callback */
	uint32_t rejected;     /*!< entries ignored (bad signature, unknown signer, wrong claimant, too old, unknown kind) */
	dp_cert_reason_t last; /*!< reason of the last rejection (DP_CERT_OK if none) */
} nk_fetch_result_t;

/*!
 * \brief The fetcher's request: \p b becomes a FetchReq for every entry of dictionary kind \p kind at
 * \p resource, its one specifier in \p spec (both must outlive the send; \p resource too).
 */
void nk_fetch_req(rl_body_t *b, rl_specifier_t *spec, const vp_id_t *resource, uint32_t kind);

/*!
 * \brief The fetcher's side: decode FetchAns message \p m (an answer to a Fetch
 * of \p resource) and verify every StoredData again with \p certs (the cache,
 * else the certificates carried in m's SecurityBlock).  For the ViPR kind the
 * claimant of the key must be a Node-ID of the entry's signer.  An entry of a
 * kind not in \p kinds[0..n_kinds), or whose signed storage_time is older than
 * its kind's max_lifetime, is ignored.  Each accepted entry goes to \p fn (may
 * be NULL); a non-zero return stops the walk and is returned.  0, or a decode
 * error for a malformed body (VP_E*), VP_EBADTYPE if m is not a FetchAns.
 */
int nk_fetch_verify(dp_cert_store_t *certs, const st_kind_t *kinds, size_t n_kinds,
                    const vp_id_t *resource, const rl_message_t *m, nk_entry_fn fn, void *arg,
                    nk_fetch_result_t *res);

/* ---- counters ---------------------------------------------------------- */

typedef struct nk_stats {
	uint64_t stores;            /*!< original Stores answered with success */
	uint64_t neighbour_stores;  /*!< handoff and replica Stores accepted */
	uint64_t entries_refused;   /*!< entries of neighbour stores refused one by one */
	uint64_t bad_signatures;    /*!< StoredData that failed verification */
	uint64_t replica_refused;   /*!< replica Stores from a sender without the role */
	uint64_t fetches;           /*!< Fetch, Stat and Find answered */
	uint64_t sent;              /*!< Stores sent by nk_commit, nk_action and nk_store_own_cert */
	uint64_t dropped;           /*!< entries dropped by DROP */
} nk_stats_t;

/*! \brief A copy of the counters (from the shard's thread). */
void nk_stats(const nk_t *k, nk_stats_t *out);

#endif
