/*
 * control/vipr_server.h - one carrier's ViPR server, composed in-process.
 *
 * This is the part of viprd above the overlay: the VAP server its call agents
 * talk to, the PVP server other carriers validate against, the call-record
 * store, the ticket keys, the VServices (SIP URIs, black/white lists) and the
 * validation scheduler, wired together:
 *
 *   VAP Publish (numbers)  -> dht.store() of a VIPR-REGISTRATION per number
 *                             (asynchronous; the Publish is answered when every
 *                             store completed)
 *   VAP Publish (VService) -> SIP URIs handed out by our PVP server, black/white
 *                             lists folded into its policy
 *   VAP UploadVCR          -> the call-record store; originating records also go
 *                             to the validation scheduler
 *   scheduler lookup       -> dht.fetch() of the number's claimants
 *   scheduler validate     -> dht.app_attach() to each claimant, then PVP
 *   learned route          -> vap_server_notify() to the agents subscribed to
 *                             the VService of the agent that uploaded the record
 *
 * The overlay is reached only through vsrv_dht_t, a small set of callbacks
 * shaped like RELOAD operations (Store, Fetch with completion callbacks,
 * AppAttach), so the daemon can plug in real RELOAD links where tests and the
 * demo use an in-process table (bench/support/vsrv_memdht.h) or the overlay
 * simulator (bench/support/sim_dht.h).
 *
 * Threads (started by vsrv_start, joined by vsrv_stop): one VAP thread (the VAP
 * server's epoll loop; every VAP hook runs there), `pvp_workers` PVP threads
 * sharing the listening socket, and one validation thread owning the
 * scheduler and the PVP client (lookups and handshakes block only it), and
 * `vcr_workers` threads deriving terminating records' selectors (vcr_ingest.h)
 * so the VAP thread never runs a PBKDF2.
 * DHT completions may arrive on any thread: they are forwarded to the thread
 * that needs them.
 */
#ifndef VP_CONTROL_VIPR_SERVER_H
#define VP_CONTROL_VIPR_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/clock.h"
#include "common/conf.h"
#include "common/id.h"
#include "control/vap/vap_server.h"
#include "pvp/pvp.h"
#include "pvp/scheduler.h"

#define VSRV_REGS_MAX PVP_CLAIMANTS_MAX  /* claimants a fetch returns at most */
#define VSRV_NAME_MAX 32
#define VSRV_ADDR_MAX 64
#define VSRV_PATH_MAX 512

/*!
 * One VIPR-REGISTRATION dictionary entry (docs/protocol.md §2): key = the
 * claimant's Node-ID and VService id, value = contact Node-ID, VService id and
 * the PVP methods it serves (PVP_MBIT bits).
 */
typedef struct vsrv_reg {
	vp_id_t node;
	uint32_t vservice_id;
	vp_id_t contact;
	uint8_t methods;
} vsrv_reg_t;

/*! Completion of a store: 0 or a VP_E* code.  Called exactly once, on any thread. */
typedef void (*vsrv_done_fn)(void *arg, int status);

/*!
 * Completion of a fetch: status 0 with the registrations found (n may be 0:
 * nobody claims the number), or a VP_E* code (lookup failed; regs NULL).
 * \p incident is NULL, or a one-line description of an inconsistency the
 * overlay saw while answering (e.g. replicas that disagreed and were outvoted,
 * seed 001 §B.4): the server logs it and reports VSRV_EV_INCIDENT.
 * Called exactly once, on any thread; pointers are valid during the call only.
 */
typedef void (*vsrv_fetch_fn)(void *arg, int status, const vsrv_reg_t *regs, size_t n, const char *incident);

/*! The overlay as the server sees it. */
typedef struct vsrv_dht {
	void *ctx;
	/*!
	 * Store (VAP_OP_ADD) or remove (VAP_OP_WITHDRAW) \p reg under the resource
	 * of \p number (canonical E.164).  Return 0 and call done() later (or from
	 * inside), or a negative VP_E* code for an immediate failure (no done()).
	 */
	int (*store)(void *ctx, const char *number, uint8_t op, const vsrv_reg_t *reg,
	             vsrv_done_fn done, void *arg);
	/*! Fetch every registration of \p number; same contract as store(). */
	int (*fetch)(void *ctx, const char *number, vsrv_fetch_fn done, void *arg);
	/*!
	 * AppAttach to \p contact for PVP: a connected stream socket in *fd (the
	 * caller closes it), within \p timeout_ms.  Blocking; called on the
	 * validation thread only.  VP_ENOROUTE if the node cannot be reached.
	 */
	int (*app_attach)(void *ctx, const vp_id_t *contact, unsigned timeout_ms, int *fd);
} vsrv_dht_t;

/*! What happened, for the operator's view (demo, metrics, tests). */
typedef enum vsrv_event_kind {
	VSRV_EV_STORED = 0,     /*!< a number's registration store completed (status) */
	VSRV_EV_VCR,            /*!< a call record was accepted (vcr) */
	VSRV_EV_VALIDATION,     /*!< we validated a number against one claimant (status, val) */
	VSRV_EV_ROUTE,          /*!< a route (or pending ticket) was learned (route) */
	VSRV_EV_NOTIFY,         /*!< a learned route was pushed to n_notified subscribers */
	VSRV_EV_PVP_SERVED,     /*!< our PVP server handled a connection (served) */
	VSRV_EV_INCIDENT,       /*!< the overlay reported an inconsistency (text) */
} vsrv_event_kind_t;

typedef struct vsrv_event {
	vsrv_event_kind_t kind;
	const char *number;                 /*!< the number concerned, or NULL */
	const char *claimant;               /*!< claimant Node-ID hex (VALIDATION, ROUTE) */
	int status;                         /*!< 0 or VP_E* (STORED, VALIDATION) */
	const pvp_validation_t *val;        /*!< VALIDATION when status is 0 */
	const pvp_route_t *route;           /*!< ROUTE */
	const pvp_vcr_t *vcr;               /*!< VCR */
	const pvp_server_result_t *served;  /*!< PVP_SERVED */
	int n_notified;                     /*!< NOTIFY */
	const char *text;                   /*!< INCIDENT */
} vsrv_event_t;

typedef void (*vsrv_event_fn)(void *arg, const char *server, const vsrv_event_t *ev);

enum { VSRV_LIST_BLACK = 0, VSRV_LIST_WHITE = 1 }; /* [pvp] list_mode */

/*! Settings (the schema's defaults, then a configuration file; see vsrv_conf_schema and vsrv_conf_parse). */
typedef struct vsrv_conf {
	char name[VSRV_NAME_MAX];          /*!< [server] name: short label for logs ("A") */
	char domain[PVP_DOMAIN_MAX + 1];   /*!< [server] domain: ours in ValExchange and tickets */
	vp_id_t node_id;                   /*!< [server] node_id (hex); default SHA-1(domain)[0..15] */
	char vap_bind[VSRV_ADDR_MAX];      /*!< [vap] bind */
	uint32_t vap_port;                 /*!< [vap] port; 0 = ephemeral */
	char realm[VAP_MAX_REALM];         /*!< [vap] realm */
	char pvp_bind[VSRV_ADDR_MAX];      /*!< [pvp] bind */
	uint32_t pvp_port;                 /*!< [pvp] port; 0 = ephemeral */
	uint32_t pvp_workers;              /*!< [pvp] workers: PVP threads, 1..16 */
	uint32_t vcr_workers;              /*!< [pvp] vcr_workers: selector threads for terminating records; 0 = one per core */
	uint32_t group_bits;               /*!< [pvp] group_bits: 2048..8192 */
	uint32_t ticket_lifetime_s;        /*!< [pvp] ticket_lifetime */
	uint64_t io_timeout_ms;            /*!< [pvp] io_timeout: per PVP connection */
	uint32_t min_entropy_cbits;        /*!< [pvp] min_entropy_cbits: default threshold */
	unsigned list_mode;                /*!< [pvp] list_mode: VSRV_LIST_BLACK or VSRV_LIST_WHITE (refuse unlisted domains) */
	uint32_t peer_fail_limit;          /*!< [pvp] peer_fail_limit: failed handshakes per peer per hour */
	uint32_t number_fail_limit;        /*!< [pvp] number_fail_limit: failed handshakes per number per hour */
	uint32_t orig_min_entropy_cbits;   /*!< [pvp] orig_min_entropy_cbits: our own threshold for accepting routes */
	uint32_t guess_budget;             /*!< [pvp] guess_budget: failed handshakes per (number, claimant) per day */
	char vcr_dir[VSRV_PATH_MAX];       /*!< [pvp] vcr_dir: call-record store (RocksDB directory) */
	char ticket_keys[VSRV_PATH_MAX];   /*!< [pvp] ticket_keys: key file; "" = a random key */
	uint32_t delay_min_s, delay_max_s; /*!< [scheduler] delay_min, delay_max */
	uint32_t backoff_s;                /*!< [scheduler] backoff */
	uint32_t max_attempts;             /*!< [scheduler] max_attempts */
	uint64_t attach_timeout_ms;        /*!< [scheduler] attach_timeout */
	uint64_t fetch_timeout_ms;         /*!< [scheduler] fetch_timeout */
	uint64_t rng_seed;                 /*!< [scheduler] seed; 0 = from the OS */
	uint32_t max_jobs;                 /*!< [scheduler] max_jobs: originating records waiting; more are refused */
	char agents[1024];                 /*!< [vap] agents: "name:password, ..." provisioned at start */
	char tenants[1024];                /*!< [vap] tenants: "agent:tenant, ..."; an agent not listed is its own tenant */
	bool vap_allow_plain_tcp;          /*!< [vap] allow_plain_tcp: VAP without TLS on a non-loopback bind */
	char cert_issuer[VSRV_PATH_MAX];   /*!< [pvp] cert_issuer: issuing CA certificate (PEM); "" = issue no client certificates */
	char cert_issuer_key[VSRV_PATH_MAX]; /*!< [pvp] cert_issuer_key: its private key (PEM) */
	uint32_t cert_lifetime_s;          /*!< [pvp] cert_lifetime: client certificates' lifetime cap */
	char client_cert_key[VSRV_PATH_MAX]; /*!< [pvp] client_cert_key: ask for client certificates for this key (PEM); "" = none */
} vsrv_conf_t;

/*!
 * \brief The server's configuration schema: one row per option (section, key, type, range, default, unit,
 * doc, field of vsrv_conf_t); \p n gets the count.  `--help-config` and the README's table print it.
 */
const vp_conf_opt_t *vsrv_conf_schema(size_t *n);

/*! \brief Fill \p c with the schema's defaults (Node-ID = SHA-1(default domain)). */
void vsrv_conf_default(vsrv_conf_t *c);

/*!
 * \brief Apply a configuration text over \p c: keys present replace the
 * values in \p c, unknown sections and keys are errors (with the file line).
 * Setting [server] domain without node_id derives the Node-ID from the domain.
 * VP_ECONFIG with the line and reason in \p e.
 */
int vsrv_conf_parse(vsrv_conf_t *c, const char *text, size_t len, vp_conf_err_t *e);

/*! \brief vsrv_conf_parse on a file's contents (VP_EIO if unreadable). */
int vsrv_conf_load(vsrv_conf_t *c, const char *path, vp_conf_err_t *e);

typedef struct vsrv vsrv_t;

/*!
 * \brief Create a server (sockets bound, nothing running yet).  \p dht is
 * copied; its ctx must outlive the server.  \p ev (may be NULL) receives
 * events on the server's threads.  VP_ECONFIG, VP_EIO, VP_EDB, VP_ENOMEM.
 */
int vsrv_new(const vsrv_conf_t *conf, const vsrv_dht_t *dht, const vp_clock_t *clock,
             vsrv_event_fn ev, void *ev_arg, vsrv_t **out);

/*! \brief Provision a call agent (before vsrv_start). VP_EEXIST, VP_EINVAL. */
int vsrv_add_agent(vsrv_t *s, const char *username, const char *password);

/*! \brief Start the threads. */
int vsrv_start(vsrv_t *s);

/*! \brief Stop and join the threads (idempotent).  Pending DHT operations are abandoned safely. */
void vsrv_stop(vsrv_t *s);

/*! \brief Stop (if needed) and free.  NULL is fine. */
void vsrv_free(vsrv_t *s);

uint16_t vsrv_vap_port(const vsrv_t *s);
uint16_t vsrv_pvp_port(const vsrv_t *s);
const vp_id_t *vsrv_node_id(const vsrv_t *s);
const char *vsrv_name(const vsrv_t *s);
const char *vsrv_domain(const vsrv_t *s);

/*! \brief The ticket key ring (read-only), for a border element in the same process. */
const pvp_ticket_keys_t *vsrv_ticket_keys(const vsrv_t *s);

/*!
 * \brief Housekeeping now (the validation thread also runs it every minute):
 * call records past retention are purged, remembered uploads and learned
 * tickets past their expiry are forgotten.  Any thread.
 */
void vsrv_maintenance(vsrv_t *s);

/*! \brief Counters (any thread). */
typedef struct vsrv_stats {
	uint64_t stores_ok, stores_failed;
	uint64_t vcr_orig, vcr_term, vcr_rejected, vcr_purged;
	uint64_t validations_ok, validations_failed, validations_unreachable;
	uint64_t routes, pending, notified;
	uint64_t replayed;       /*!< learned routes sent again to an agent that subscribed after them (in notified too) */
	uint64_t ledger_purged;  /*!< guess-ledger entries forgotten by maintenance */
	uint64_t incidents;      /*!< inconsistencies reported by the overlay */
	uint64_t pvp_served, pvp_authenticated, pvp_handshake_failed;
	uint64_t sched_queued;   /*!< records waiting in the scheduler */
	uint64_t sched_scheduled, sched_no_claimant, sched_dropped; /*!< scheduler totals */
} vsrv_stats_t;

void vsrv_get_stats(vsrv_t *s, vsrv_stats_t *out);

/*! \brief The VAP listener's counters (any thread): err_401 counts refused agent credentials. */
void vsrv_get_vap_stats(vsrv_t *s, vap_server_stats_t *out);

#endif
