/*
 * control/callagent/callagent.h - the call agent's side of ViPR: learned routes, and SIP calls over them
 * (docs/protocol.md §11).
 *
 * A call agent learns routes from its ViPR server (VAP notifications: a number, SIP URIs, a ticket or a
 * client certificate, an expiry).  For each call to a number it asks the route table for a plan: fork
 * to every usable route of the number over SIP, or go over the PSTN (no usable route, or the route is in
 * the last part of its life and this call is the one that renews it: a PSTN call is what makes the
 * ViPR server validate the number again).  The call engine sends one INVITE per route (same Call-ID,
 * From tag and CSeq, its own Via branch: RFC 3261 §8.2.2.2 lets a UAS reached twice answer the
 * duplicate 482), reads the responses with libosip2, ACKs and CANCELs, and ends with an outcome:
 * answered, a final answer from the callee (busy, declined), or "fall back to the PSTN".  Each route's
 * result goes back to the table: "route down now" skips the route for a while, "forget" removes it.
 *
 * Time is always passed in (seconds or milliseconds), so tests inject their clock.  The engine writes
 * through an injected send hook and is fed responses, as the border's engine is: no sockets here.
 * Not thread-safe: one table and its calls per thread.
 */
#ifndef VP_CONTROL_CALLAGENT_H
#define VP_CONTROL_CALLAGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/e164.h"
#include "pvp/ticket.h"

#define VCA_TICKET_HEADER "X-ViPR-Ticket"  /* docs/protocol.md §7 */
#define VCA_URI_MAX 256
#define VCA_PATH_MAX 256
#define VCA_MAX_FORKS 8              /* routes per number: VAP carries at most this many URIs too */
#define VCA_RENEW_PERMILLE_DEFAULT 100u /* the last tenth of a route's life (docs/protocol.md §11.3) */
#define VCA_RENEW_RETRY_S_DEFAULT 21600u /* another renewal call 6 h later if no new route came */
#define VCA_DOWN_S_DEFAULT 300u      /* "route down now": not tried for 5 minutes */

/*! \brief One learned route: a number reachable at a SIP URI with a ticket or a client certificate. */
typedef struct vca_route {
	char number[VP_E164_BUFLEN];        /*!< canonical E.164 */
	char uri[VCA_URI_MAX];              /*!< sip: or sips: URI from the ValResponse */
	char ticket[PVP_TICKET_B64_MAX];    /*!< base64url ticket for X-ViPR-Ticket; "" with a certificate */
	char cert[VCA_PATH_MAX];            /*!< client certificate (PEM, key beside it) instead of a ticket; "" = none */
	uint64_t learned_s, expires_s;      /*!< when we learned it, when it lapses (ticket or certificate) */
	uint64_t down_until_s;              /*!< "route down now": skipped until then */
} vca_route_t;

/*! \brief Route table tunables (0 = default). */
typedef struct vca_conf {
	uint32_t renew_permille;  /*!< the renewal window: the last renew_permille/1000 of a route's life */
	uint32_t renew_retry_s;   /*!< a renewal call that brought no new route is repeated after this */
	uint32_t down_s;          /*!< how long a route that is down now is skipped */
	uint32_t buckets;         /*!< hash buckets (power of two); 0 = 4096 */
} vca_conf_t;

typedef struct vca_table vca_table_t;

/*! \brief A new empty table.  VP_EINVAL (permille > 1000, buckets not a power of two), VP_ENOMEM. */
int vca_table_new(const vca_conf_t *conf, vca_table_t **out);

void vca_table_free(vca_table_t *t);

/*!
 * \brief Learn (or refresh) a route: same number and URI replaces the old one (its down state is kept
 * unless the new one is later, i.e. a re-validation).  VP_EINVAL (number not canonical, empty URI,
 * neither or both of ticket and cert, expires <= learned), VP_ESPACE (VCA_MAX_FORKS routes already), VP_ENOMEM.
 */
int vca_learn(vca_table_t *t, const vca_route_t *r);

/*! \brief Remove one route; VP_ENOTFOUND if it is not there. */
int vca_forget(vca_table_t *t, const char *number, const char *uri);

/*! \brief Routes held for \p number (expired ones included until they are used or forgotten). */
size_t vca_count(const vca_table_t *t, const char *number);

/*! \brief When the last renewal call for \p number was planned (0 = never), to keep it across restarts. */
uint64_t vca_renewal_sent(const vca_table_t *t, const char *number);

/*! \brief Restore vca_renewal_sent() after a restart; VP_ENOTFOUND when no route of \p number is held. */
int vca_set_renewal_sent(vca_table_t *t, const char *number, uint64_t s);

/*! \brief Call \p fn for every route held (a snapshot for saving). */
void vca_each(const vca_table_t *t, void (*fn)(void *arg, const vca_route_t *r), void *arg);

/*! \brief What to do with one call. */
typedef struct vca_plan {
	bool pstn;                   /*!< place this call over the PSTN */
	bool renewal;                /*!< ...because it renews the number's routes (they are in their last part) */
	size_t n;                    /*!< routes to fork to when !pstn (1..VCA_MAX_FORKS) */
	vca_route_t routes[VCA_MAX_FORKS]; /*!< copies: the table may change while the call runs */
} vca_plan_t;

/*!
 * \brief Plan a call to \p number at \p now_s.  Usable routes are those not expired and not down.  None:
 * PSTN.  When the longest-lived usable route is in its renewal window and no renewal call was sent in the
 * last renew_retry_s, this call is the renewal: PSTN, and the time is remembered (so the next calls go over
 * SIP again).  Otherwise SIP to every usable route.  Expired routes are dropped on the way.
 */
void vca_plan(vca_table_t *t, const char *number, uint64_t now_s, vca_plan_t *p);

/*! \brief What one fork's final response means (docs/protocol.md §11.2). */
typedef enum vca_class {
	VCA_C_ANSWERED = 0,   /*!< 2xx */
	VCA_C_CALLEE,         /*!< the callee's own answer (486, 600, 603, 480, 487): final, no PSTN fallback */
	VCA_C_DUPLICATE,      /*!< 482: the same UAS reached by another fork (merged request); ignore this fork */
	VCA_C_DOWN,           /*!< route down now (5xx but 501/505, 408, no answer, transport failure, 3xx, other 4xx) */
	VCA_C_FORGET,         /*!< forget the route (403 ticket/cert refused, 404, 410, 484, 501, 505, 604) */
	VCA_C_MEDIA,          /*!< 488/606 (the offer was not acceptable): PSTN for this call, route kept */
} vca_class_t;

/*! \brief Class of final status \p status (200..699); 0 means the fork failed in transport or timed out. */
vca_class_t vca_classify(int status);

/*! \brief Token for a class ("route-down", "forget", ...). */
const char *vca_class_str(vca_class_t c);

/*! \brief Apply a fork's class to its route: DOWN marks it down for down_s, FORGET removes it; others nothing. */
void vca_report(vca_table_t *t, const char *number, const char *uri, vca_class_t c, uint64_t now_s);

/* ---- the SIP call ---------------------------------------------------------------------------------------- */

/*! \brief Where a call sends: one transport per fork, chosen by the caller (TCP, TLS with the fork's cert...). */
typedef struct vca_hooks {
	/* Send \p len bytes to fork \p fork; false if it cannot (the fork then failed in transport). */
	bool (*send)(void *ctx, size_t fork, const char *msg, size_t len);
	void *ctx;
} vca_hooks_t;

/*! \brief The calling side's identity and offer. */
typedef struct vca_call_conf {
	const char *from_uri;     /*!< "sip:+14085550100@carrier-b.example": its host is the calling domain */
	const char *contact_uri;  /*!< our Contact */
	const char *via_host;     /*!< host[:port] of our Via */
	const char *transport;    /*!< Via transport: "TCP" or "TLS" */
	const char *sdp;          /*!< the offer (SRTP: the border refuses anything else), NULL = offerless */
	const char *call_id;      /*!< NULL = random */
} vca_call_conf_t;

typedef enum vca_outcome {
	VCA_O_PENDING = 0,   /*!< forks still waiting */
	VCA_O_ANSWERED,      /*!< a fork answered 2xx (ACKed; the others CANCELled) */
	VCA_O_CALLEE,        /*!< the callee answered finally without 2xx (busy, declined): no fallback */
	VCA_O_PSTN,          /*!< every fork failed for its route: place the call over the PSTN */
} vca_outcome_t;

const char *vca_outcome_str(vca_outcome_t o);

typedef struct vca_call vca_call_t;

/*!
 * \brief Start a call to \p plan's number: one INVITE per route (ticket header for ticket routes, none for
 * certificate routes, whose transport presents the certificate).  VP_EINVAL (plan is PSTN or empty, bad
 * URI), VP_ENOMEM.  A fork whose send fails is a transport failure at once.
 */
int vca_call_start(const vca_call_conf_t *conf, const vca_plan_t *plan, const vca_hooks_t *hooks, vca_call_t **out);

/*!
 * \brief A SIP response that arrived on fork \p fork (libosip2 parses it; its top Via branch must be that
 * fork's).  Provisional responses are noted; a final one classifies the fork, ACKs it (2xx: a new ACK to
 * the Contact; others: hop-by-hop), and a 2xx or a 6xx CANCELs the forks still pending.  VP_EMALFORMED (not a
 * response to this call's INVITE or CANCEL: ignored), 0 otherwise.
 */
int vca_call_input(vca_call_t *c, size_t fork, const char *msg, size_t len);

/*! \brief Fork \p fork failed in transport or its timer ran out without a final response (class DOWN). */
void vca_call_fork_failed(vca_call_t *c, size_t fork);

/*! \brief The call's outcome so far; once not PENDING it does not change. */
vca_outcome_t vca_call_outcome(const vca_call_t *c, size_t *answered_fork, int *status);

/*! \brief Fork \p fork's state: its final status (0 none yet or transport) and class, once it has one. */
bool vca_call_fork_result(const vca_call_t *c, size_t fork, int *status, vca_class_t *cls);

/*! \brief Report every finished fork's class to \p t (vca_report) at \p now_s. */
void vca_call_report(const vca_call_t *c, vca_table_t *t, uint64_t now_s);

/*! \brief Hang up an answered call: BYE in the answering fork's dialog.  VP_ESTATE if not answered or already hung up. */
int vca_call_hangup(vca_call_t *c);

/*! \brief The call's Call-ID (for logs). */
const char *vca_call_id(const vca_call_t *c);

void vca_call_free(vca_call_t *c);

#endif
