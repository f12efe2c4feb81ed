/*
 * control/vap_server.h - the VAP server: call agents connect here.
 *
 * One control thread runs an epoll loop over a listening socket and every
 * call-agent connection (TCP, or TLS when an SSL_CTX is configured).  Messages
 * are framed from the STUN length; every request is authenticated with the
 * agent's long-term key (MESSAGE-INTEGRITY), rate-limited per agent, and
 * dispatched to the rest of the node through injected callbacks (vap_hooks_t),
 * so this module depends on nothing but common/ and OpenSSL:
 *
 *   Publish (numbers)  -> hooks.store() once per number, asynchronously; the
 *                         server paces stores (rate and in-flight limits) and
 *                         answers the Publish only when every store completed
 *                         (vap_server_store_done), so an agent can pace itself
 *                         and nothing acknowledged is ever lost;
 *   Publish (VService) -> hooks.publish_vservice(), synchronous;
 *   UploadVCR          -> hooks.upload_vcr() per record, synchronous, or
 *                         hooks.upload_vcr_start() per record, answered when
 *                         every record completed (vap_server_vcr_done);
 *   Subscribe          -> remembered per connection; vap_server_notify() sends
 *                         a Notify indication to every subscriber of a VService.
 *
 * Back-pressure: a connection with too many unanswered Publishes, or too much
 * unsent output, is not read until that drains (TCP flow control then slows
 * the agent); a Publish that would overfill the global store queue gets 503.
 *
 * Threading: everything runs on the thread calling vap_server_run*(), except
 * vap_server_post(), vap_server_stop() and vap_server_get_stats(), which any thread may call.
 * The wire format is docs/protocol.md §8.
 */
#ifndef VP_CONTROL_VAP_SERVER_H
#define VP_CONTROL_VAP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "control/vap/vap_msg.h"

#define VAP_MAX_URIS 8        /* SIP-URI attributes per VService or Notify */
#define VAP_MAX_LIST 64       /* BLACKLIST / WHITELIST entries per VService */
#define VAP_MAX_SUBS 16       /* VServices one connection may subscribe to */

typedef struct vap_server vap_server_t;
typedef struct vap_sub vap_sub_t; /* one subscribed connection, valid during hooks.subscribed only */

/*! One DHT store (or withdrawal) the server asks the node to perform. */
typedef struct vap_store_req {
	const char *agent;      /*!< the publishing agent's username */
	uint32_t vservice_id;
	uint8_t op;             /*!< VAP_OP_ADD or VAP_OP_WITHDRAW */
	const char *number;     /*!< canonical E.164; valid during the call only */
	void *token;            /*!< hand back to vap_server_store_done() */
} vap_store_req_t;

/*! A VService publication: the agent's SIP URIs and validation black/white lists. */
typedef struct vap_vservice {
	uint32_t id;
	uint8_t op;                         /*!< VAP_OP_ADD (replace) or VAP_OP_WITHDRAW */
	size_t n_uris, n_black, n_white;
	const char *uris[VAP_MAX_URIS];     /*!< strings valid during the callback only */
	const char *black[VAP_MAX_LIST];
	const char *white[VAP_MAX_LIST];
} vap_vservice_t;

/*! A validated route, pushed to subscribers in a Notify. */
typedef struct vap_route {
	char number[VP_E164_BUFLEN];
	uint32_t vservice_id;
	uint32_t expires;                   /*!< seconds the route and ticket stay valid */
	size_t n_uris;
	char uris[VAP_MAX_URIS][VAP_MAX_URI];
	size_t ticket_len;
	uint8_t ticket[VAP_MAX_TICKET];
	size_t cert_len;                    /*!< 0 = no client certificate with this route */
	uint8_t cert[VAP_MAX_CERT];         /*!< DER client certificate for the route (CLIENT-CERT, §6.1) */
} vap_route_t;

/*! What the server calls into the rest of the node. All are required except vservice_access. */
typedef struct vap_hooks {
	void *ctx;
	/*!
	 * Start one store.  Return 0 and later call vap_server_store_done(token,
	 * status) on the server thread (possibly from inside this call), or return a
	 * negative VP_E* code for an immediate failure (then do not call store_done).
	 */
	int (*store)(void *ctx, const vap_store_req_t *req);
	/*! Keep one call record; 0 or a VP_E* code (the agent gets 500).  Unused if upload_vcr_start is set. */
	int (*upload_vcr)(void *ctx, const char *agent, const vap_vcr_t *vcr);
	/*!
	 * Optional asynchronous form of upload_vcr (set one of the two): start
	 * keeping one call record, return 0 and later call vap_server_vcr_done(token,
	 * status) on the server thread (possibly from inside this call) once the
	 * record is kept, or return a negative VP_E* code for an immediate failure
	 * (then do not call vcr_done).  Every record of a request is started; the
	 * request is answered when all have completed (NUMBER-COUNT = how many were
	 * kept), and counts as unanswered for max_pending until then.
	 */
	int (*upload_vcr_start)(void *ctx, const char *agent, const vap_vcr_t *vcr, void *token);
	/*! Apply a VService publication; 0, VP_EPERM (the agent gets 403), or another VP_E* code (500). */
	int (*publish_vservice)(void *ctx, const char *agent, const vap_vservice_t *vs);
	/*!
	 * Optional tenant check, before a Publish of numbers under \p vservice_id or a
	 * Subscribe to it: 0 if \p agent may act on that VService, VP_EPERM if not
	 * (403, nothing done).  NULL: every agent may act on every VService.
	 */
	int (*vservice_access)(void *ctx, const char *agent, uint32_t vservice_id);
	/*!
	 * Optional: \p agent has just subscribed to \p vservice_id on \p sub (its
	 * answer already queued; not called for a repeated Subscribe).  The node may
	 * replay the routes it holds for that VService with vap_server_notify_sub(),
	 * so a Notify sent while the agent was away is not lost.  Server thread.
	 */
	void (*subscribed)(void *ctx, const char *agent, uint32_t vservice_id, vap_sub_t *sub);
} vap_hooks_t;

typedef struct vap_server_conf {
	const char *bind_addr;      /*!< numeric IPv4/IPv6 address; default "127.0.0.1" */
	/*! Without tls, a bind address other than loopback is refused (VP_ECONFIG) unless this
	 *  is set: a captured MESSAGE-INTEGRITY lets anyone test password guesses offline
	 *  (docs/protocol.md §8.1).  Default false. */
	bool allow_plain_tcp;
	uint16_t port;              /*!< 0: an ephemeral port (see vap_server_port) */
	const char *realm;          /*!< REALM of the long-term credentials; default "vipr" */
	SSL_CTX *tls;               /*!< non-NULL: every connection is TLS (caller keeps ownership) */
	unsigned max_conns;         /*!< concurrent connections; default 4096 */
	size_t max_msg;             /*!< largest accepted message in bytes; default 16384 */
	double req_rate;            /*!< requests per second per agent; default 5000 */
	double req_burst;           /*!< bucket depth; default 1000 */
	unsigned max_pending;       /*!< unanswered Publishes (and asynchronous UploadVCRs) per connection before reads stop; default 8 */
	size_t out_high;            /*!< unsent bytes per connection before reads stop; default 256 KiB */
	double store_rate;          /*!< stores per second, all agents; 0 = unlimited; default 0 */
	unsigned store_inflight;    /*!< stores started but not completed; default 256 */
	size_t store_queue_max;     /*!< numbers waiting for a store before Publish gets 503; default 4M */
	uint32_t idle_timeout_ms;   /*!< close a silent connection; 0 = never; default 120000 */
} vap_server_conf_t;

typedef struct vap_server_stats {
	uint64_t conns_open, conns_total, conns_refused;
	uint64_t requests, challenges, responses_ok, responses_err;  /* challenges: 401 to a request without integrity */
	uint64_t err_400, err_401, err_403, err_420, err_429, err_438, err_500, err_503;
	uint64_t stores_started, stores_ok, stores_failed, stores_queued;
	uint64_t vcrs, notifies;
} vap_server_stats_t;

/*! \brief Fill \p conf with the defaults above. */
void vap_server_conf_default(vap_server_conf_t *conf);

/*!
 * \brief Bind and listen; *out on success. VP_EINVAL (bad conf/hooks), VP_ECONFIG
 * (plain TCP on a non-loopback address without allow_plain_tcp), VP_EIO (socket), VP_ENOMEM.
 */
int vap_server_create(const vap_server_conf_t *conf, const vap_hooks_t *hooks, vap_server_t **out);

/*! \brief Close every connection and free.  Pending stores must have completed or be abandoned by the node. */
void vap_server_destroy(vap_server_t *srv);

/*! \brief Provision an agent (username, password); VP_EEXIST if known, VP_EINVAL if too long. */
int vap_server_add_agent(vap_server_t *srv, const char *username, const char *password);

/*! \brief The bound port (useful with port 0). */
uint16_t vap_server_port(const vap_server_t *srv);

/*! \brief One loop iteration: wait up to \p timeout_ms for events, handle them, pace stores. */
int vap_server_run_once(vap_server_t *srv, int timeout_ms);

/*!
 * \brief For embedding in another event loop: an fd that becomes readable when
 * the server has I/O to handle (its epoll set); then call vap_server_run_once(srv, 0).
 */
int vap_server_fd(const vap_server_t *srv);

/*! \brief Milliseconds until run_once is needed even without I/O (pacing, idle sweep); -1: never. */
int vap_server_timeout_ms(const vap_server_t *srv);

/*! \brief Has vap_server_stop() been called? (for callers running their own loop around run_once) */
bool vap_server_stopping(const vap_server_t *srv);

/*! \brief Loop until vap_server_stop(). */
int vap_server_run(vap_server_t *srv);

/*! \brief Make vap_server_run() return (any thread). */
void vap_server_stop(vap_server_t *srv);

/*! \brief Run fn(srv, arg) on the server thread soon (any thread). VP_ENOMEM. */
int vap_server_post(vap_server_t *srv, void (*fn)(vap_server_t *srv, void *arg), void *arg);

/*! \brief Complete a store started by hooks.store (server thread only). */
void vap_server_store_done(vap_server_t *srv, void *token, int status);

/*! \brief Complete a record started by hooks.upload_vcr_start (server thread only). */
void vap_server_vcr_done(vap_server_t *srv, void *token, int status);

/*! \brief Send \p route to every connection subscribed to its VService; returns how many (server thread). */
int vap_server_notify(vap_server_t *srv, const vap_route_t *route);

/*!
 * \brief Send \p route to one subscriber, from inside hooks.subscribed only
 * (server thread; \p sub is not valid after the hook returns).  0 (also when
 * the connection is closing: nothing sent), VP_EINVAL if \p sub is not
 * subscribed to route->vservice_id, VP_ECRYPTO.
 */
int vap_server_notify_sub(vap_server_t *srv, vap_sub_t *sub, const vap_route_t *route);

/*!
 * \brief Counters since creation (any thread; no lock, the server thread is not disturbed).  Each counter is
 * exact as of its read; counters read while the server runs are not one instant's snapshot.
 */
void vap_server_get_stats(const vap_server_t *srv, vap_server_stats_t *st);

#endif
