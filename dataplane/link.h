/*
 * dataplane/link.h - overlay links: TLS over TCP with RELOAD link framing
 * (RFC 6940 §6.6; overlay link type TLS-TCP-FH-NO-ICE), mutually authenticated
 * by certificates of the overlay (dataplane/cert.h).
 *
 * A link is admitted only if the peer's certificate chains to the overlay
 * root, is valid now, carries Node-IDs of this overlay and none on the
 * bad-node list; the link is then bound to those Node-IDs (dp_link_peer_ids),
 * which is what the message layer uses as the "link peer" of a direct message
 * and as the via entry a relay appends.  TLS 1.3 by default, TLS 1.2 accepted;
 * no session resumption (every link shows its certificate).
 *
 * Everything is non-blocking.  Connect and handshake run against deadlines; a
 * link never buffers more than `max_tx_buffer` bytes of outgoing frames:
 * dp_link_send() returns VP_EAGAIN beyond that (back-pressure, the caller
 * decides what to drop), so a slow peer costs bounded memory.  TCP keepalive
 * (and TCP_USER_TIMEOUT) detect a dead peer.  Every DATA frame received is
 * acknowledged with an ACK frame; nothing is retransmitted (TCP is reliable).
 *
 * Every refusal is one log line at warn level:
 *   level=warn mod=link event=link_refused role=server peer=127.0.0.1:40522 reason=cert_expired detail="..."
 * with `reason` one of the dp_cert_reason_name() words for certificate
 * problems, or tls_handshake (not TLS, or TLS that failed: garbage before the
 * handshake), tls_alert (the peer refused us), tls_error (garbage after the
 * handshake), cert_missing, peer_mismatch (not the Node-ID we attached to),
 * handshake_timeout, connect_timeout, connect_failed, handshake_limit (evicted
 * as the oldest pending handshake), frame_too_big, frame_bad_type.
 *
 * Threads: a dp_link_ctx_t, its links and its dp_link_set_t belong to one
 * thread (a shard); the certificate store it verifies with must too.
 */
#ifndef VP_DATAPLANE_LINK_H
#define VP_DATAPLANE_LINK_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/types.h>
#include <openssl/x509.h>

#include "common/conf.h"
#include "common/id.h"
#include "dataplane/cert.h"
#include "dataplane/reload.h"

/* ---- configuration ----------------------------------------------------- */

enum { DP_LINK_TLS12 = 0, DP_LINK_TLS13 = 1 };

typedef struct dp_link_conf {
	char ca_file[256];           /*!< PEM: the overlay root certificate(s) */
	char cert_file[256];         /*!< PEM: this node's certificate (then its chain) */
	char key_file[256];          /*!< PEM: its private key */
	char keylog_file[256];       /*!< TLS key log (NSS format) for Wireshark; empty = none */
	char advertise[128];         /*!< address:port put in Attach/AppAttach candidates (NAT, DMZ); empty = the listen address */
	uint64_t connect_timeout_ms; /*!< TCP connect deadline */
	uint64_t handshake_timeout_ms; /*!< TLS handshake deadline (from accept or connect) */
	uint32_t keepalive_s;        /*!< TCP keepalive idle time; a dead peer is dropped after about 2x this */
	uint32_t max_tx_buffer;      /*!< bytes of outgoing frames buffered per link before back-pressure */
	uint32_t max_handshakes;     /*!< pending inbound handshakes per listener; the oldest is dropped beyond */
	unsigned tls_min;            /*!< DP_LINK_TLS12 or DP_LINK_TLS13 */
} dp_link_conf_t;

/*! The `[link]` options (common/conf.h schema rows storing into dp_link_conf_t). */
extern const vp_conf_opt_t dp_link_conf_opts[];
extern const size_t dp_link_conf_nopts;

/*! \brief Defaults of every [link] option into \p c. */
void dp_link_conf_default(dp_link_conf_t *c);

/* ---- context ------------------------------------------------------------ */

typedef struct dp_link_ctx dp_link_ctx_t;
typedef struct dp_link dp_link_t;

/*! This node's TLS identity when not read from files (tests, benchmarks, a node that enrolled in memory). */
typedef struct dp_link_ident {
	X509 *cert;
	EVP_PKEY *key;
	STACK_OF(X509) *chain; /*!< may be NULL */
} dp_link_ident_t;

/*!
 * \brief A link context: the TLS configuration for both roles, verifying
 * peers with \p certs (borrowed: must outlive the context).  \p ident (may
 * be NULL) gives the node's certificate and key; otherwise conf->cert_file
 * and key_file are read.  Opens conf->keylog_file for appending (mode 0600).
 * VP_ECONFIG (logged with the reason) for unreadable or mismatched files.
 */
int dp_link_ctx_new(const dp_link_conf_t *conf, dp_cert_store_t *certs, const dp_link_ident_t *ident,
                    dp_link_ctx_t **out);
void dp_link_ctx_free(dp_link_ctx_t *c);

/* ---- one link ------------------------------------------------------------ */

typedef enum dp_link_state {
	DP_LINK_CONNECTING = 0, /*!< TCP connect in progress */
	DP_LINK_HANDSHAKE = 1,  /*!< TLS handshake in progress */
	DP_LINK_UP = 2,         /*!< authenticated: frames flow */
	DP_LINK_CLOSING = 3,    /*!< close_notify sent; waiting (bounded) for the peer's */
	DP_LINK_CLOSED = 4,     /*!< closed; dp_link_close_reason() says why */
} dp_link_state_t;

/*!
 * \brief A DATA frame's message, valid during the call only.  The callback may
 * send on any link, and close but not free links.
 */
typedef void (*dp_link_msg_fn)(void *arg, dp_link_t *l, const uint8_t *msg, size_t len);

/*!
 * \brief Open a link to \p sa.  \p expect (may be NULL) is the Node-ID we
 * attach to: a peer whose certificate lacks it is refused (peer_mismatch).
 * The connect runs in dp_link_io().  VP_EIO if no socket can be made.
 */
int dp_link_connect(dp_link_ctx_t *c, const struct sockaddr *sa, socklen_t salen, const vp_id_t *expect,
                    uint64_t now_ms, dp_link_t **out);

/*!
 * \brief Open a link to an Attach (or AppAttach) candidate: the first
 * TLS-TCP-FH-NO-ICE candidate of \p cands.  VP_ENOTFOUND if there is none.
 */
int dp_link_connect_attach(dp_link_ctx_t *c, const rl_ice_list_t *cands, const vp_id_t *expect,
                           uint64_t now_ms, dp_link_t **out);

/*! \brief Serve an accepted TCP socket \p fd (ownership passes to the link, even on error). */
int dp_link_accept(dp_link_ctx_t *c, int fd, uint64_t now_ms, dp_link_t **out);

/*!
 * \brief Make progress: connect, handshake, read frames (\p fn gets every
 * DATA message; ACKs are consumed here) and write what is queued.  0 while
 * the link lives, VP_ECLOSED once it is closed (the reason was logged).
 */
int dp_link_io(dp_link_t *l, uint64_t now_ms, dp_link_msg_fn fn, void *arg);

/*!
 * \brief Queue \p msg (one RELOAD message) in a DATA frame and start writing
 * it.  VP_EAGAIN when the link already holds max_tx_buffer bytes (nothing
 * queued), VP_ETOOBIG above RL_MAX_MESSAGE_SIZE, VP_ESTATE unless the link is up.
 */
int dp_link_send(dp_link_t *l, const uint8_t *msg, size_t len);

/*!
 * \brief dp_link_send() without the write: the frame is queued (same errors) and goes out at the next
 * dp_link_flush() or dp_link_io().  A burst queued this way leaves in as few TLS records and write calls as
 * its bytes need (WRITE_CHUNK each) instead of one record and one system call per message.
 */
int dp_link_queue(dp_link_t *l, const uint8_t *msg, size_t len);

/*! \brief Write what is queued, as far as the socket takes it (the rest waits for POLLOUT in dp_link_io). */
void dp_link_flush(dp_link_t *l);

/*!
 * \brief Graceful close: flush what can be written now, send close_notify and
 * wait (in dp_link_io, at most the handshake timeout) for the peer's before
 * closing the socket, so no unread data turns the close into a reset.
 */
void dp_link_close(dp_link_t *l);

/*! \brief Free (closing first if needed). */
void dp_link_free(dp_link_t *l);

dp_link_state_t dp_link_state(const dp_link_t *l);
int dp_link_fd(const dp_link_t *l);
/*! \brief poll() events the link waits for (0 when closed). */
short dp_link_events(const dp_link_t *l);
/*! \brief Monotonic ms by which dp_link_io() must run again (UINT64_MAX if none). */
uint64_t dp_link_deadline(const dp_link_t *l);
/*! \brief True when input waits inside TLS (decrypted, or read ahead): call dp_link_io() without poll(). */
bool dp_link_has_pending(const dp_link_t *l);
/*! \brief The peer's verified Node-IDs (valid while the link exists); *n = 0 until up. */
const vp_id_t *dp_link_peer_ids(const dp_link_t *l, uint32_t *n);
/*! \brief Bytes queued for writing. */
size_t dp_link_tx_pending(const dp_link_t *l);
/*! \brief Why the link closed ("peer_closed", "cert_expired", ...); NULL while open. */
const char *dp_link_close_reason(const dp_link_t *l);
/*! \brief "TLSv1.3" or "TLSv1.2" once up. */
const char *dp_link_tls_version(const dp_link_t *l);
/*! \brief The peer's address as text ("127.0.0.1:6084"). */
const char *dp_link_peer_addr(const dp_link_t *l);
/*! \brief True for links we connected (TLS client role). */
bool dp_link_is_client(const dp_link_t *l);
/*! \brief DATA frames received and ACK frames received so far. */
void dp_link_counts(const dp_link_t *l, uint64_t *data_rx, uint64_t *acks_rx);

/* ---- addresses ----------------------------------------------------------- */

/*! \brief Parse a numeric "a.b.c.d:port" or "[v6]:port" (common/net.h's parser). VP_EINVAL otherwise. */
int dp_link_addr_parse(const char *text, struct sockaddr_storage *ss, socklen_t *len);

/*!
 * \brief Our Attach/AppAttach host candidate (link type TLS-TCP-FH-NO-ICE):
 * conf->advertise when set (a node behind NAT or in a DMZ), else \p listen.
 * \p foundation must outlive the candidate.  VP_EINVAL for a bad address.
 */
int dp_link_candidate(const dp_link_conf_t *conf, const struct sockaddr *listen, rl_ice_candidate_t *out);

/*!
 * \brief A non-blocking listening TCP socket on numeric \p addr ("127.0.0.1:0" picks a port); *port gets the
 * port.  vp_net_listen_tcp() on "host:port" text: VP_EINVAL for a bad address, VP_EIO when bind/listen fails.
 */
int dp_link_listen(const char *addr, int backlog, int *fd, uint16_t *port);

/* ---- a set of links served by one thread --------------------------------- */

typedef struct dp_link_set dp_link_set_t;

typedef struct dp_link_set_cb {
	void *arg;
	void (*on_up)(void *arg, dp_link_t *l);                                  /*!< authenticated */
	void (*on_msg)(void *arg, dp_link_t *l, const uint8_t *msg, size_t len); /*!< a DATA frame */
	void (*on_down)(void *arg, dp_link_t *l, const char *reason);            /*!< then freed by the set */
	/*! May be NULL.  false: no room for another message in this run; the link keeps its next DATA frames
	 * (unparsed, unacknowledged) and the set serves it again at the next run without waiting for poll(). */
	bool (*room)(void *arg);
} dp_link_set_cb_t;

/*!
 * \brief A poll()-driven set of links of context \p c; \p listen_fd (or -1)
 * is accepted from, at most conf.max_handshakes inbound handshakes pending
 * (the oldest is dropped to make room).  The set owns listen_fd.
 */
int dp_link_set_new(dp_link_ctx_t *c, int listen_fd, const dp_link_set_cb_t *cb, dp_link_set_t **out);
void dp_link_set_free(dp_link_set_t *s);

/*! \brief Hand \p l (from dp_link_connect) to the set, which owns it from now on. */
int dp_link_set_add(dp_link_set_t *s, dp_link_t *l);

/*! \brief One iteration: wait up to \p timeout_ms (less if a deadline is due), then serve. Returns events served. */
int dp_link_set_run(dp_link_set_t *s, int timeout_ms);

/*!
 * \brief Also wait on \p fd (an eventfd; 0 = none, borrowed): dp_link_set_run() returns as soon as it is
 * readable and drains it, so another thread ends the wait by writing to it.
 */
void dp_link_set_wake(dp_link_set_t *s, int fd);

/*! \brief Links in the set (any state). */
size_t dp_link_set_count(const dp_link_set_t *s);

/*! \brief The up link bound to Node-ID \p id, or NULL. */
dp_link_t *dp_link_set_find(dp_link_set_t *s, const vp_id_t *id);

#endif
