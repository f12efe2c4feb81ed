/*
 * dataplane/cert.h - verified identities: the overlay trust store, the
 * certificate cache, and the verification roles of RFC 6940 §7.
 *
 * A certificate counts only if it chains to one of the overlay's root
 * certificates, is valid now (notBefore <= now <= notAfter, every certificate
 * of the chain), is an end-entity certificate (not a CA), carries at least one
 * Node-ID of *this* overlay as a subjectAltName URI `reload://<32 hex>@<overlay>/`
 * (the trailing '/' optional; URIs of other overlays are ignored) and none of
 * its Node-IDs is on the bad-node list.  Everything the link layer and the
 * message and data verifiers know about a peer comes from such a certificate:
 * a signer's Node-IDs are never read from anywhere else.
 *
 * Verified certificates are cached by SHA-256 of their DER (the cert_hash a
 * SignerIdentity names) until they expire, so a peer's certificate is checked
 * against the roots once, at the TLS handshake or at its first message, and a
 * message signature then costs one hash lookup plus the signature check.  The
 * cache is bounded (oldest entry replaced first); the bad-node list is checked
 * at every lookup, so a Node-ID added to it stops counting at once.
 *
 * Threads: a dp_cert_store_t is used by one thread at a time (each shard owns
 * one; stores made from the same root files trust the same roots).  Nothing in
 * it takes a lock.
 */
#ifndef VP_DATAPLANE_CERT_H
#define VP_DATAPLANE_CERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/types.h>
#include <openssl/x509.h>

#include "common/clock.h"
#include "common/id.h"
#include "dataplane/reload.h"

/*! Most Node-IDs one certificate may carry (a ViPR server runs several vnodes). */
#define DP_CERT_MAX_NODE_IDS 32u
/*! Default cache size: every peer of a large shard plus the signers of its stored data. */
#define DP_CERT_CACHE_DEFAULT 4096u
/*
 * Slots of the memo of verified StoredData signatures (direct-mapped, 64 bytes each: 64 KiB per store).  A
 * 3-copy fetch verifies the same entry 3 times, and a reader fetches the numbers of its recent calls again;
 * 1024 covers the entries of hundreds of recent lookups, and a miss costs only the verification it saves.
 */
#define DP_CERT_SIG_MEMO 1024u
#define DP_CERT_HASH_LEN 32u /* SHA-256 */

/*! Why a certificate (or a message, or a stored value) was refused; one word each for the logs. */
typedef enum dp_cert_reason {
	DP_CERT_OK = 0,
	DP_CERT_MALFORMED,     /*!< "cert_malformed": the DER does not parse */
	DP_CERT_UNTRUSTED,     /*!< "cert_untrusted": does not chain to an overlay root (another CA, self-signed) */
	DP_CERT_EXPIRED,       /*!< "cert_expired": notAfter is past (leaf or chain) */
	DP_CERT_NOT_YET_VALID, /*!< "cert_not_yet_valid": notBefore is in the future (leaf or chain) */
	DP_CERT_REVOKED,       /*!< "cert_revoked": one of its Node-IDs is on the bad-node list */
	DP_CERT_NO_NODE_ID,    /*!< "cert_no_node_id": no reload:// URI of this overlay */
	DP_CERT_PROFILE,       /*!< "cert_profile": a CA certificate, or another profile violation */
	DP_CERT_NO_CERT,       /*!< "signer_cert_missing": the signer's certificate was not supplied */
	DP_CERT_BAD_SIGNATURE, /*!< "bad_signature": tampered, or signed by another key */
	DP_CERT_SIG_ALG,       /*!< "signature_algorithm": not sha256 with ecdsa or rsa, or identity type unusable */
	DP_CERT_NOT_ORIGINATOR,/*!< "signer_not_originator": the signer's Node-IDs do not include the originator */
	DP_CERT_REPLAYED,      /*!< "replayed": (signer, transaction id) already processed within the window */
	DP_CERT_TOO_OLD,       /*!< "stored_data_too_old": storage_time older than the kind's maximum lifetime */
	DP_CERT_NOT_CLAIMANT,  /*!< "signer_not_claimant": the signer's Node-IDs do not include the claimed one */
	DP_CERT_REASON_COUNT
} dp_cert_reason_t;

/*! \brief The log word of \p r ("cert_expired", ...). Never NULL. */
const char *dp_cert_reason_name(dp_cert_reason_t r);

typedef struct dp_cert_store dp_cert_store_t;

/*! A verified certificate: valid while the store lives (entries are reference counted). */
typedef struct dp_cert_ident {
	uint8_t hash[DP_CERT_HASH_LEN];    /*!< SHA-256 of the DER */
	vp_id_t node_ids[DP_CERT_MAX_NODE_IDS];
	uint32_t n_node_ids;
	uint64_t not_after_ms;             /*!< earliest notAfter of the chain, UTC ms */
	EVP_PKEY *pub;                     /*!< the subject's public key (owned by the store) */
	X509 *x509;                        /*!< the certificate (owned by the store) */
} dp_cert_ident_t;

typedef struct dp_cert_store_cfg {
	const char *overlay;        /*!< overlay instance name, e.g. "vipr.example" (required) */
	uint32_t cache_entries;     /*!< 0 = DP_CERT_CACHE_DEFAULT */
	const vp_clock_t *clock;    /*!< NULL = the system clock (tests pass a manual one) */
} dp_cert_store_cfg_t;

/*!
 * \brief New store for \p cfg with no roots yet.  VP_EINVAL without an overlay
 * name (or one longer than 255 bytes), VP_ENOMEM.  Free with dp_cert_store_free().
 */
int dp_cert_store_new(const dp_cert_store_cfg_t *cfg, dp_cert_store_t **out);

void dp_cert_store_free(dp_cert_store_t *s);

/*! \brief Trust \p root (the store takes its own reference). VP_ECRYPTO if OpenSSL refuses it. */
int dp_cert_store_add_root(dp_cert_store_t *s, X509 *root);

/*!
 * \brief Trust every certificate of the PEM file \p path (the overlay's root
 * certificate(s)).  VP_EIO if it cannot be read, VP_ECONFIG if it holds none.
 */
int dp_cert_store_add_root_file(dp_cert_store_t *s, const char *path);

/*!
 * \brief Replace the bad-node list with \p ids[0..n) (copied; n may be 0).
 * Certificates carrying any of them are refused from now on, cached or not.
 */
int dp_cert_store_set_bad_nodes(dp_cert_store_t *s, const vp_id_t *ids, size_t n);

/*! \brief The store's OpenSSL trust roots (for an SSL_CTX's chain building; not to be modified). */
X509_STORE *dp_cert_store_x509(dp_cert_store_t *s);

/*!
 * \brief Verify \p leaf with the untrusted intermediates \p chain (may be
 * NULL) and cache it.  0 with *out pointing at the cached identity (valid
 * until the store is freed or the entry is replaced: copy what you keep), or
 * VP_EAUTH with *why set.  A cached certificate costs a hash and a lookup.
 */
int dp_cert_verify_x509(dp_cert_store_t *s, X509 *leaf, STACK_OF(X509) *chain,
                        const dp_cert_ident_t **out, dp_cert_reason_t *why);

/*! \brief As dp_cert_verify_x509() for a DER certificate (VP_EAUTH with DP_CERT_MALFORMED if it does not parse). */
int dp_cert_verify_der(dp_cert_store_t *s, const uint8_t *der, size_t len, const dp_cert_ident_t **out,
                       dp_cert_reason_t *why);

/*!
 * \brief The still-valid cached identity whose SHA-256 is \p hash, or NULL
 * (never cached, expired, replaced, or now on the bad-node list).
 */
const dp_cert_ident_t *dp_cert_lookup(dp_cert_store_t *s, const uint8_t hash[DP_CERT_HASH_LEN]);

/*! \brief Does \p id carry Node-ID \p node? */
bool dp_cert_ident_has(const dp_cert_ident_t *id, const vp_id_t *node);

/*!
 * \brief Parse the Node-IDs of overlay \p overlay out of \p x's subjectAltName
 * URIs into out[0..cap) (no trust check: use dp_cert_verify_* for that).
 * Returns the count, or VP_ESPACE if there are more than \p cap.
 */
int dp_cert_node_ids(X509 *x, const char *overlay, vp_id_t *out, size_t cap);

/* ---- the destination's checks (RFC 6940 §7) --------------------------- */

/*!
 * \brief Destination verification of decoded message \p m that arrived over
 * the link to \p link_peer (a Node-ID of that link's verified certificate):
 * the signer's certificate (by cert_hash; from the cache, else from the
 * message's SecurityBlock, verified and cached) must be valid, the signature
 * must verify (SHA-256 with ECDSA or RSA), and the signer must be the
 * originator: the first via entry, or \p link_peer for a direct message.
 * 0 with *signer set, or VP_EAUTH with *why.  Relays call none of this.
 */
int dp_cert_msg_verify(dp_cert_store_t *s, const rl_message_t *m, const vp_id_t *link_peer,
                       const dp_cert_ident_t **signer, dp_cert_reason_t *why);

/*!
 * \brief Verify one StoredData \p sd of \p kind at resource \p rid: its
 * signer's certificate (cache, else \p certs, typically the carrying
 * message's SecurityBlock or the certificates kept with stored entries) must
 * be valid and the signature must verify.  When \p claimant is not NULL, it
 * must be one of the signer's Node-IDs (DP_CERT_NOT_CLAIMANT otherwise).  When
 * \p max_lifetime_s is not 0 (a fetcher), an entry whose storage_time is
 * older than now - max_lifetime_s is refused (DP_CERT_TOO_OLD): the lifetime
 * is not signed, so a storing peer could otherwise resurrect stale entries.
 * 0 with *signer set (its Node-IDs are the only ones access control may use),
 * or VP_EAUTH with *why.
 */
int dp_cert_stored_data_verify(dp_cert_store_t *s, const uint8_t *rid, size_t rid_len, uint32_t kind,
                               const rl_stored_data_t *sd, const rl_cert_list_t *certs,
                               const vp_id_t *claimant, uint32_t max_lifetime_s,
                               const dp_cert_ident_t **signer, dp_cert_reason_t *why);

/*! \brief Signature verifications dp_cert_stored_data_verify() skipped: the same entry and certificate verified before. */
uint64_t dp_cert_sig_memo_hits(const dp_cert_store_t *s);

/*!
 * \brief Topology check at the destination, after dp_cert_msg_verify(): a
 * JoinReq's joining_peer and a LeaveReq's leaving_peer must be among the
 * signer's Node-IDs and be the originator (\p originator); an UpdateReq must
 * come from its originator, whose Node-ID the signer carries.  Other messages
 * pass.  0, VP_EAUTH with *why = DP_CERT_NOT_ORIGINATOR, or a decode error.
 */
int dp_cert_topology_check(const rl_message_t *m, const vp_id_t *originator, const dp_cert_ident_t *signer,
                           dp_cert_reason_t *why);

/*! \brief The originator of \p m: its first via entry, or \p link_peer if the via list is empty. */
int dp_cert_originator(const rl_message_t *m, const vp_id_t *link_peer, vp_id_t *out);

/* ---- replay detection -------------------------------------------------- */

/*
 * The destination remembers (signer certificate hash, transaction id) for the
 * request timeout.  A message whose pair is already remembered is a replay.
 * The table is bounded: when it is full the oldest pair is forgotten before
 * its time, which is logged, so the window shrinks under a flood rather than
 * memory growing.  One per shard; no lock.
 */
typedef struct dp_replay dp_replay_t;

/*! \brief New window of \p window_ms holding at most \p cap pairs (rounded up to a power of two). */
int dp_replay_new(uint64_t window_ms, uint32_t cap, dp_replay_t **out);
void dp_replay_free(dp_replay_t *r);

/*!
 * \brief Record (signer hash, txid) seen at monotonic \p now_ms.  0 if new,
 * VP_EEXIST if the same pair was recorded less than window_ms ago (a replay).
 */
int dp_replay_check(dp_replay_t *r, const uint8_t hash[DP_CERT_HASH_LEN], uint64_t txid, uint64_t now_ms);

/*! \brief Pairs forgotten early because the table was full (a flood indicator). */
uint64_t dp_replay_evicted(const dp_replay_t *r);

#endif
