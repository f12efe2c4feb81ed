/*
 * pvp/pvp.h - the PVP server and client: TLS-SRP (RFC 5054, OpenSSL, TLS 1.2)
 * keyed by call records, then one ValExchange (docs/protocol.md §5, §6).
 *
 * The library never opens listening sockets or threads: the daemon accepts
 * connections (after RELOAD AppAttach) and hands each connected fd to
 * pvp_server_handle() on a worker thread; the client is given a connect
 * callback that returns a fresh connected fd per handshake attempt.  Both
 * switch the socket to non-blocking and poll against one deadline for the
 * whole connection, so a peer trickling bytes cannot hold a worker longer.
 *
 * A pvp_server_t is shared by all worker threads (its state is read-only or
 * locked); a pvp_client_t belongs to one thread at a time.
 */
#ifndef VP_PVP_PVP_H
#define VP_PVP_PVP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/clock.h"
#include "pvp/clientcert.h"
#include "pvp/gate.h"
#include "pvp/ledger.h"
#include "pvp/method.h"
#include "pvp/policy.h"
#include "pvp/ticket.h"
#include "pvp/valx.h"
#include "pvp/vcr.h"

#define PVP_GROUP_DEFAULT 2048
#define PVP_GROUP_MIN 2048      /* 1024/1536 are refused on both sides */

/*!
 * \brief Routes callback: fill up to \p max SIP URIs for \p number into \p uris;
 * *n gets the count.  Return 0, or a VP_E* code (the client is refused with
 * server-error).  Called on the worker thread.
 */
typedef int (*pvp_routes_fn)(void *arg, const char *number, char uris[][PVP_URI_MAX], size_t max,
                             size_t *n);

typedef struct pvp_server_conf {
	pvp_vcr_store_t *store;        /*!< terminating records (required) */
	const pvp_ticket_keys_t *keys; /*!< ticket key ring (required, not copied) */
	pvp_policy_t *policy;          /*!< lists, thresholds, rate limits (required) */
	pvp_routes_fn routes;          /*!< required */
	void *routes_arg;
	/*!
	 * Optional per-number domain lists: the threshold for \p domain asking for
	 * \p number (the matched record's called number), e.g. from the lists of the
	 * VService the number is published under.  0 with *threshold_cbits, or
	 * VP_EREFUSED (any non-zero code) to refuse the domain.  NULL: the lists of
	 * \p policy.  The rate limits always come from \p policy.  Worker thread.
	 */
	int (*lists)(void *arg, const char *number, const char *domain, uint32_t *threshold_cbits);
	void *lists_arg;
	unsigned group_bits;           /*!< 0 = 2048; 2048/3072/4096/6144/8192 */
	uint32_t ticket_lifetime_s;    /*!< 0 = 30 days */
	uint32_t accum_window_s;       /*!< previous tickets count if issued within this; 0 = 30 days */
	unsigned io_timeout_ms;        /*!< deadline for the whole connection (handshake + exchange); 0 = 10 s */
	unsigned handshake_timeout_ms; /*!< deadline for the TLS handshake, inside io_timeout_ms; 0 = 3 s
	                                    (a 2048-bit handshake is a few round trips and ~3 ms of CPU) */
	unsigned max_candidates;       /*!< highest candidate index served + 1; 0 = 4 */
	pvp_entropy_conf_t entropy;
	const vp_clock_t *clock;       /*!< NULL = system */
	const uint8_t *seed_key;       /*!< 32 bytes for simulated verifiers/salts; NULL = random */
	const pvp_cc_issuer_t *cert_issuer; /*!< answer CertRequests after routes (§6.1); NULL = never */
} pvp_server_conf_t;

typedef struct pvp_server pvp_server_t;

/*! \brief What pvp_server_handle() did, for logs, metrics and tests. */
typedef enum pvp_outcome {
	PVP_OUT_ROUTES = 0,        /*!< routes and ticket sent */
	PVP_OUT_PENDING,           /*!< ticket sent, entropy below threshold */
	PVP_OUT_REFUSED,           /*!< ValExchange refused (reason) */
	PVP_OUT_HANDSHAKE_FAILED,  /*!< wrong secret, unknown selector, or broken peer */
	PVP_OUT_RATE_LIMITED,      /*!< peer over its failed-handshake limit: closed before TLS */
	PVP_OUT_IO,                /*!< timeout or connection error after the handshake */
} pvp_outcome_t;

typedef struct pvp_server_result {
	pvp_outcome_t outcome;
	uint8_t reason;                     /*!< pvp_refusal_t when refused */
	char number[VP_E164_BUFLEN];        /*!< record that keyed the handshake, "" if none */
	char domain[PVP_DOMAIN_MAX + 1];    /*!< requesting domain, "" before ValExchange */
	uint32_t entropy_cbits;             /*!< accumulated entropy granted */
	pvp_method_t method;
} pvp_server_result_t;

/*! \brief Short token for \p o ("routes", "handshake-failed"…). */
const char *pvp_outcome_str(pvp_outcome_t o);

/*! \brief Create a server. VP_ECONFIG (group under 2048, missing pieces), VP_ETLS, VP_ENOMEM. */
int pvp_server_new(const pvp_server_conf_t *conf, pvp_server_t **out);

void pvp_server_free(pvp_server_t *srv);

/*!
 * \brief Serve one PVP connection on connected socket \p fd (not closed here;
 * it is switched to non-blocking).  \p peer identifies the peer for rate limiting
 * (Node-ID hex or address).  Returns 0 when the exchange ran to an outcome
 * (see \p res, which may be NULL), or a VP_E* code for local failures.
 */
int pvp_server_handle(pvp_server_t *srv, int fd, const char *peer, pvp_server_result_t *res);

/*! \brief Connect callback: store a fresh connected socket in *fd (the client closes it). */
typedef int (*pvp_connect_fn)(void *arg, int *fd);

typedef struct pvp_client_conf {
	const char *domain;            /*!< our domain, sent in ValExchange (required) */
	unsigned min_group_bits;       /*!< 0 = 2048; smaller server groups are refused */
	unsigned max_shift;            /*!< start-bucket shifts tried either side; 0 = 1, PVP_NO_SHIFT for none */
	unsigned max_candidates;       /*!< candidate indexes tried; 0 = 2 */
	unsigned max_tries;            /*!< handshakes per method; 0 = 4 */
	unsigned io_timeout_ms;        /*!< deadline per handshake attempt (connection); 0 = 10 s */
	const vp_clock_t *clock;
	pvp_ledger_t *ledger;          /*!< guess ledger (required, shared, not owned): §5.9 */
	uint32_t min_entropy_cbits;    /*!< our own threshold for accepting routes; 0 = 1600 (16 bits) */
	pvp_entropy_conf_t entropy;    /*!< the estimator's parameters, as the server's */
	EVP_PKEY *cert_key;            /*!< send a CertRequest for this key after routes (§6.1); NULL = never */
} pvp_client_conf_t;

#define PVP_NO_SHIFT 0xffffffffu   /* pvp_client_conf_t.max_shift: try only the exact bucket */

typedef struct pvp_client pvp_client_t;

/*! \brief Result of one validation against one claimant. */
typedef struct pvp_validation {
	pvp_valresp_t resp;           /*!< status, reason, URIs, ticket, expiry, entropy */
	pvp_method_t method;          /*!< method that authenticated */
	unsigned handshakes;          /*!< handshakes attempted (each an online guess) */
	unsigned failed_handshakes;
	bool authenticated;           /*!< a handshake completed (even if ValExchange then failed) */
	/* The originating-side rule (§5.9), filled when a ValExchange completed: */
	uint32_t call_cbits;          /*!< our estimate of our own record for the method used */
	uint32_t credit_cbits;        /*!< the chain's credit: sum(e) - log2 C(G, S), 1/100 bit */
	uint32_t threshold_cbits;     /*!< our threshold */
	bool withheld;                /*!< the claimant granted routes below our threshold: status
	                                   turned into pending, URIs dropped, ticket kept for accumulation */
	uint8_t cert[PVP_CC_DER_MAX]; /*!< client certificate (DER) when conf.cert_key and one was issued */
	size_t cert_len;              /*!< 0 = none (not asked, refused, not offered, or routes withheld) */
} pvp_validation_t;

int pvp_client_new(const pvp_client_conf_t *conf, pvp_client_t **out);

void pvp_client_free(pvp_client_t *cli);

/*!
 * \brief Validate originating record \p r against \p claimant (a stable
 * name: its Node-ID hex; the guess ledger is kept per number and claimant)
 * reached via \p connect.  \p methods is the claimant's advertised method
 * set (PVP_MBIT bits); methods are tried by priority.  \p prev_ticket (may
 * be NULL) is sent for entropy accumulation.
 *
 * Every handshake is reserved in the ledger before it starts.  Routes are
 * accepted only if the chain's credit on *our* record reaches our own
 * threshold (§5.9); otherwise a `routes` answer is turned into `pending`
 * (out->withheld, URIs dropped, the ticket kept only for accumulation).
 *
 * Returns 0 when a ValExchange completed (out->resp.status says how),
 * VP_EAUTH if every handshake failed at the proof (definite: the claimant
 * does not know the call), VP_EPERM if no advertised method applies to the
 * record, VP_ERATELIMIT if the guess budget for (number, claimant) is spent
 * (definite until the window moves), VP_ETLS for a protocol failure
 * (a group under our minimum, a non-conforming salt: definite), or a
 * transport error (VP_EIO, VP_ETIMEOUT, VP_ECLOSED: retry later), or VP_EDB.
 */
int pvp_client_validate(pvp_client_t *cli, const char *claimant, const pvp_vcr_t *r, unsigned methods,
                        pvp_connect_fn connect_fn, void *connect_arg, const uint8_t *prev_ticket,
                        size_t prev_len, pvp_validation_t *out);

/*! \brief Connect helper: TCP to "host" "port" (numeric), with the timeout in ms. */
typedef struct pvp_tcp_target {
	const char *host;
	const char *port;
	unsigned timeout_ms;
} pvp_tcp_target_t;

/*! \brief pvp_connect_fn for a pvp_tcp_target_t. */
int pvp_tcp_connect(void *target, int *fd);

#endif
