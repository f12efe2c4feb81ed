/*
 * control/border/border.h - the ViPR border element's SIP logic (docs/protocol.md §7.1).
 *
 * A border element sits between the outside (other carriers, SIP over mutually
 * authenticated TLS) and the carrier's call agent (the inside).  It admits an
 * out-of-dialog INVITE only with a valid ticket for the called number and the
 * calling domain (the one in the peer's TLS certificate), or over TLS with a
 * ViPR client certificate for that number and domain, and an SRTP offer,
 * proxies admitted calls to the call agent (Via, Record-Route, ticket header
 * removed), relays responses, passes in-dialog requests only on dialogs it
 * admitted, and refuses everything else with the configured response.  Calls
 * from the inside (egress) leave only over TLS to the Request-URI's host and
 * only with SRTP.
 *
 * This module is the logic only: it takes whole SIP messages (libosip2 parses
 * them) tagged with the connection they came from, and hands what it sends to
 * an injected send hook, so unit tests drive it without sockets and the server
 * (control/border/server.h) owns TLS, framing and timers.  Not thread-safe: one
 * engine per thread.
 */
#ifndef VP_CONTROL_BORDER_H
#define VP_CONTROL_BORDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/e164.h"
#include "pvp/clientcert.h"
#include "pvp/ticket.h"

#define VB_CONN_INSIDE 0u          /* the call agent's connection, whatever socket carries it */
#define VB_CONN_INSIDE_BIT (1ull << 63) /* set in the ids of other inside connections (call agents calling out) */
#define VB_TICKET_HEADER "X-ViPR-Ticket"
#define VB_TICKET_HEADER_ALT "X-Cisco-ViPR-Ticket" /* the overview draft's spelling, accepted too */
#define VB_URI_MAX 256

/*! \brief Why a message was refused (the metric label and the log's reason=). */
typedef enum vb_reason {
	VB_R_OK = 0,
	VB_R_MALFORMED,     /* not SIP, or a mandatory header missing */
	VB_R_NO_TICKET,     /* out-of-dialog INVITE without a ticket header */
	VB_R_TICKET,        /* the ticket failed a §7 check: see vb_verdict_t.ticket */
	VB_R_NO_SRTP,       /* the offer (or the answer to an offerless INVITE) is not SRTP */
	VB_R_DOWNGRADE,     /* a re-INVITE offering media without SRTP */
	VB_R_NO_DIALOG,     /* an in-dialog request or CANCEL for no dialog we admitted */
	VB_R_METHOD,        /* an out-of-dialog request other than INVITE or OPTIONS */
	VB_R_LOOP,          /* Max-Forwards exhausted */
	VB_R_UNAVAILABLE,   /* the call agent is not connected, or the dialog table is full */
	VB_R_BAD_RESPONSE,  /* a response not for us (top Via not ours, or from the wrong peer) */
	VB_R_CERT_NUMBER,   /* no ticket; the ViPR client certificate names another number than the Request-URI's */
	VB_R_CERT_DOMAIN,   /* no ticket; the From host is not the ViPR client certificate's domain */
	VB_R_CERT_EXPIRED,  /* no ticket; the ViPR client certificate is expired (or not yet valid) now */
	VB_R_COUNT
} vb_reason_t;

/*! \brief The outcome of one message. */
typedef struct vb_verdict {
	vb_reason_t reason;
	pvp_ticket_reason_t ticket; /* when reason == VB_R_TICKET */
	int status;                 /* the response sent for a refusal (0: dropped silently) */
	bool forwarded;             /* the message (or a rewrite of it) was sent on */
	bool admitted;              /* an out-of-dialog INVITE was admitted (a new dialog) */
} vb_verdict_t;

/*! \brief Short token for \p v ("no-ticket", "ticket-bad-mac", "no-srtp", ...); never NULL. */
const char *vb_verdict_str(const vb_verdict_t *v);

/*! \brief Token for a reason other than VB_R_TICKET (whose token is the ticket reason's). */
const char *vb_reason_str(vb_reason_t r);

/*! \brief Where the engine sends bytes: \p conn is VB_CONN_INSIDE or an outside connection id. */
typedef struct vb_hooks {
	/* Queue \p len bytes on \p conn; return false if that connection is gone (the message is then lost). */
	bool (*send)(void *ctx, uint64_t conn, const char *buf, size_t len);
	/* Is the call agent connected?  Admission answers 503 when it is not. */
	bool (*inside_up)(void *ctx);
	/*
	 * Egress: open a TLS connection to \p host (a name, checked against the peer's certificate, or an
	 * address) port \p port and return its id at once (writes queue until the handshake is done).
	 * 0 or a negative VP_E* code.  NULL: this border carries no calls out (inside INVITEs get 403).
	 */
	int (*connect)(void *ctx, const char *host, uint16_t port, uint64_t *conn);
	void *ctx;
} vb_hooks_t;

/*! \brief Engine configuration (the server fills it from the configuration schema). */
typedef struct vb_proxy_conf {
	bool checks;               /* false only for the benchmark baseline: no ticket or SDP checks */
	bool require_routes;       /* refuse pending tickets (§7 step 7); true in production */
	int refuse_status;         /* 403 (default) or 0 = silent drop, for every refusal but no-SRTP */
	int no_srtp_status;        /* 488 (default), 403 or 0 */
	vp_e164_conf_t e164;       /* how Request-URI user parts are normalised */
	char outside_uri[VB_URI_MAX]; /* our address as peers see it: "sip:border.example:5061;transport=tls" */
	char inside_uri[VB_URI_MAX];  /* our address as the call agent sees it: "sip:10.0.0.2:5070;transport=tcp" */
	uint32_t max_dialogs;      /* dialogs tracked at once; new calls get 503 beyond */
	uint32_t early_timeout_s;  /* an INVITE without a final response is forgotten after this */
	uint32_t idle_timeout_s;   /* a confirmed dialog without requests is forgotten after this */
} vb_proxy_conf_t;

/*! \brief Fill \p c with the defaults (checks on, 403/488, 10000 dialogs, 180 s, 4 h). */
void vb_proxy_conf_defaults(vb_proxy_conf_t *c);

typedef struct vb_proxy vb_proxy_t;

/*!
 * \brief A new engine.  \p keys is read on every ticket check and stays the
 * caller's (replace its contents between messages to rotate).  VP_EINVAL for
 * a bad URI or status, VP_ENOMEM.
 */
int vb_proxy_new(const vb_proxy_conf_t *conf, const pvp_ticket_keys_t *keys, const vb_hooks_t *hooks,
                 vb_proxy_t **out);

void vb_proxy_free(vb_proxy_t *px);

/*!
 * \brief Handle one whole SIP message of \p len bytes that arrived on \p conn
 * (VB_CONN_INSIDE, an inside id with VB_CONN_INSIDE_BIT, or an outside
 * connection whose TLS peer is \p peer_domain, normalised).  Sends whatever follows through the hooks and fills \p v.
 * Returns 0, or VP_EMALFORMED when the bytes are not one SIP message (the
 * server then closes the connection: its framing can no longer be trusted).
 */
int vb_proxy_input(vb_proxy_t *px, uint64_t conn, const char *peer_domain, const char *msg, size_t len,
                   uint64_t now_ms, vb_verdict_t *v);

/*!
 * \brief vb_proxy_input() for an outside connection whose TLS client certificate is a ViPR client certificate
 * (docs/protocol.md §6.1), read by pvp_cc_identity() against the configured issuer: an out-of-dialog INVITE
 * without a ticket header is then admitted when \p cc names its number, its From host is \p cc's domain (or a
 * subdomain) and \p now_ms is within the certificate's validity.  \p cc NULL: tickets only.
 */
int vb_proxy_input_cc(vb_proxy_t *px, uint64_t conn, const char *peer_domain, const pvp_cc_identity_t *cc,
                      const char *msg, size_t len, uint64_t now_ms, vb_verdict_t *v);

/*!
 * \brief Answer the request in \p msg with \p status without looking at it
 * further (the diagnostic plain-TCP listener's "TLS required").  Nothing is
 * sent for an ACK or a response.  VP_EMALFORMED if it does not parse.
 */
int vb_proxy_reject(vb_proxy_t *px, uint64_t conn, const char *msg, size_t len, int status);

/*! \brief Forget the dialogs of an outside connection that closed (their in-dialog requests now have nowhere to go). */
void vb_proxy_conn_closed(vb_proxy_t *px, uint64_t conn);

/*!
 * \brief Expire dialogs: each call sweeps a tenth of the table, so call it ten times per second (the server
 * does, every 100 ms); a dialog is then gone at most a second after it expires.  Returns how many were removed.
 */
unsigned vb_proxy_tick(vb_proxy_t *px, uint64_t now_ms);

/*! \brief Dialogs tracked now (early and confirmed). */
unsigned vb_proxy_dialogs(const vb_proxy_t *px);

/*!
 * \brief RFC 3261 §18.3 stream framing: the length of the first whole message in \p len bytes (headers up to
 * the blank line, then exactly Content-Length bytes, mandatory on streams).  Returns 1 and *\p total, 0 when
 * more bytes are needed, VP_ETOOBIG beyond \p max, VP_EMALFORMED for a missing, repeated or bad length.
 * Only the length header is read; the message itself is libosip2's to parse.
 */
int vb_sip_frame(const char *buf, size_t len, size_t max, size_t *total);

/*! \brief What an SDP body offers. */
typedef enum vb_sdp {
	VB_SDP_NONE = 0,  /* no SDP body: no offer */
	VB_SDP_SRTP,      /* every active stream is SRTP (SDES keys or DTLS-SRTP), or none is active */
	VB_SDP_PLAIN,     /* at least one active stream without SRTP */
	VB_SDP_BAD,       /* an SDP body libosip2 cannot parse */
} vb_sdp_t;

/*!
 * \brief Classify \p len bytes of SDP: an active stream (m= port ≠ 0) counts as
 * SRTP when its protocol is RTP/SAVP or RTP/SAVPF with an a=crypto line
 * (RFC 4568) or UDP/TLS/RTP/SAVP(F) with an a=fingerprint (RFC 5763), at
 * media or session level.
 */
vb_sdp_t vb_sdp_classify(const char *body, size_t len);

#endif
