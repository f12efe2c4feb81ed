/*
 * control/border/proxy.c - admission, dialog tracking and proxying on parsed SIP (libosip2).
 *
 * Stateless in transactions, stateful in dialogs: a request we forward gets
 * our Via whose branch carries the id of the connection it came from (and a
 * hash of its own top branch, so a CANCEL or a non-2xx ACK gets the same
 * branch as its INVITE), so a response finds its way back without a
 * transaction table; what we remember is one record per admitted dialog.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <osipparser2/osip_message.h>
#include <osipparser2/osip_parser.h>
#include <osipparser2/osip_port.h>

#include "common/errcode.h"
#include "common/log.h"
#include "control/border/border.h"

#define BRANCH_MAGIC "z9hG4bKvb"   /* RFC 3261 magic cookie + our mark */
#define TAG_MAX 128                /* longer tags are refused as malformed: we copy them */
#define ENDING_MS 32000            /* RFC 3261 Timer J/H (64*T1): late ACKs and retransmissions still pass */
#define MAX_FORWARDS_DEFAULT "70"
#define OWN_TAG "vb-"               /* To tags of the responses we generate */
#define SELF_CONN UINT64_MAX       /* branch owner of the ACK/BYE we send ourselves: responses are absorbed */

typedef enum { D_EARLY, D_CONFIRMED, D_ENDING } dstate_t;

typedef struct dialog {
	struct dialog *next;
	char *call_id;
	char caller_tag[TAG_MAX + 1];
	char callee_tag[TAG_MAX + 1];
	char domain[PVP_DOMAIN_MAX + 1];
	uint64_t conn;           /* outside connection (0 when it closed) */
	uint64_t in_conn;        /* inside connection: VB_CONN_INSIDE, or the call agent's connection that called out */
	bool egress;             /* the call agent called out: it is the caller, the outside peer the callee */
	dstate_t state;
	uint32_t invite_cseq;    /* the INVITE (initial or re-) waiting for its final response */
	bool invite_offerless;   /* ...which carried no offer: the 2xx offer must then be SRTP */
	uint32_t refused_cseq;   /* a re-INVITE we answered ourselves: its ACK ends here */
	uint64_t expires_ms;
} dialog_t;

struct vb_proxy {
	vb_proxy_conf_t conf;
	const pvp_ticket_keys_t *keys;
	vb_hooks_t hooks;
	char out_host[VB_URI_MAX], in_host[VB_URI_MAX];
	int out_port, in_port;
	const char *out_transport, *in_transport;
	dialog_t **buckets;
	size_t nbuckets;         /* power of two */
	unsigned ndialogs;
	uint64_t serial;         /* makes our own tags and branches unique */
	size_t sweep;            /* next bucket vb_proxy_tick() looks at */
	const pvp_cc_identity_t *cc; /* the current message's ViPR client certificate (vb_proxy_input_cc), or NULL */
};

static const char *const reason_str[VB_R_COUNT] = {
	[VB_R_OK] = "ok",
	[VB_R_MALFORMED] = "malformed",
	[VB_R_NO_TICKET] = "no-ticket",
	[VB_R_TICKET] = "ticket",
	[VB_R_NO_SRTP] = "no-srtp",
	[VB_R_DOWNGRADE] = "downgrade",
	[VB_R_NO_DIALOG] = "no-dialog",
	[VB_R_METHOD] = "method",
	[VB_R_LOOP] = "loop",
	[VB_R_UNAVAILABLE] = "unavailable",
	[VB_R_BAD_RESPONSE] = "bad-response",
	[VB_R_CERT_NUMBER] = "cert-wrong-number",
	[VB_R_CERT_DOMAIN] = "cert-wrong-domain",
	[VB_R_CERT_EXPIRED] = "cert-expired",
};

const char *vb_reason_str(vb_reason_t r)
{
	return (unsigned)r < VB_R_COUNT ? reason_str[r] : "unknown";
}

/* "ticket-" + pvp_ticket_reason_str(r): one token space for logs and metric labels (a unit test keeps them equal). */
static const char *const ticket_str[] = {
	[PVP_TR_OK] = "ticket-ok",
	[PVP_TR_MALFORMED] = "ticket-malformed",
	[PVP_TR_VERSION] = "ticket-version",
	[PVP_TR_UNKNOWN_EPOCH] = "ticket-unknown-epoch",
	[PVP_TR_RETIRED_KEY] = "ticket-retired-key",
	[PVP_TR_BAD_MAC] = "ticket-bad-mac",
	[PVP_TR_NOT_YET_VALID] = "ticket-not-yet-valid",
	[PVP_TR_EXPIRED] = "ticket-expired",
	[PVP_TR_WRONG_NUMBER] = "ticket-wrong-number",
	[PVP_TR_WRONG_DOMAIN] = "ticket-wrong-domain",
	[PVP_TR_NO_ROUTES] = "ticket-no-routes",
};

const char *vb_verdict_str(const vb_verdict_t *v)
{
	if (v->reason == VB_R_TICKET)
		return (unsigned)v->ticket < sizeof(ticket_str) / sizeof(ticket_str[0]) ? ticket_str[v->ticket] : "ticket";
	return vb_reason_str(v->reason);
}

void vb_proxy_conf_defaults(vb_proxy_conf_t *c)
{
	memset(c, 0, sizeof(*c));
	c->checks = true;
	c->require_routes = true;
	c->refuse_status = 403;
	c->no_srtp_status = 488;
	c->max_dialogs = 10000;
	c->early_timeout_s = 180;
	c->idle_timeout_s = 4 * 3600;
}

static bool is_inside(uint64_t conn)
{
	return conn == VB_CONN_INSIDE || (conn & VB_CONN_INSIDE_BIT);
}

static uint64_t fnv1a(uint64_t h, const char *s)
{
	for (; s && *s; s++) {
		h ^= (uint8_t)*s;
		h *= 0x100000001b3ull;
	}
	return h;
}

/* host, port and transport of a configured "sip:host:port;transport=x" URI. */
static int parse_own_uri(const char *text, char *host, int *port, const char **transport)
{
	osip_uri_t *u = NULL;
	int rc = VP_EINVAL;
	if (osip_uri_init(&u) != 0)
		return VP_ENOMEM;
	if (osip_uri_parse(u, text) != 0 || !u->host || strlen(u->host) >= VB_URI_MAX)
		goto finish;
	snprintf(host, VB_URI_MAX, "%s", u->host);
	*port = u->port ? atoi(u->port) : 5060;
	if (*port <= 0 || *port > 65535)
		goto finish;
	osip_uri_param_t *p = NULL;
	*transport = "TCP";
	if (osip_uri_param_get_byname(&u->url_params, "transport", &p) == 0 && p && p->gvalue &&
	    strcasecmp(p->gvalue, "tls") == 0)
		*transport = "TLS";
	rc = 0;
finish:
	osip_uri_free(u);
	return rc;
}

/* libosip2's own diagnostics ("Could not parse start line") become our debug lines: a peer sending garbage
 * must not be able to fill the log (its refusal is already logged once, at info). */
static void osip_trace_sink(const char *file, int line, osip_trace_level_t level, const char *fmt, va_list ap)
	__attribute__((format(printf, 4, 0)));
static void osip_trace_sink(const char *file, int line, osip_trace_level_t level, const char *fmt, va_list ap)
{
	(void)file;
	(void)line;
	if (!vp_log_enabled(VP_LOG_DEBUG))
		return;
	char msg[256];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	for (char *p = msg; *p; p++)
		if (*p == '"' || *p == '\n' || *p == '\r')
			*p = ' ';
	vp_log_debug("border", "osip", "level=%d msg=\"%s\"", (int)level, msg);
}

int vb_proxy_new(const vb_proxy_conf_t *conf, const pvp_ticket_keys_t *keys, const vb_hooks_t *hooks,
                 vb_proxy_t **out)
{
	if (!conf || !keys || !hooks || !hooks->send || !out || conf->max_dialogs == 0)
		return VP_EINVAL;
	if (conf->refuse_status != 0 && (conf->refuse_status < 400 || conf->refuse_status > 699))
		return VP_EINVAL;
	if (conf->no_srtp_status != 0 && (conf->no_srtp_status < 400 || conf->no_srtp_status > 699))
		return VP_EINVAL;
	parser_init(); /* libosip2's header tables; idempotent */
	osip_trace_initialize_func(END_TRACE_LEVEL, osip_trace_sink);
	vb_proxy_t *px = calloc(1, sizeof(*px));
	if (!px)
		return VP_ENOMEM;
	px->conf = *conf;
	px->keys = keys;
	px->hooks = *hooks;
	int rc = parse_own_uri(conf->outside_uri, px->out_host, &px->out_port, &px->out_transport);
	if (rc == 0)
		rc = parse_own_uri(conf->inside_uri, px->in_host, &px->in_port, &px->in_transport);
	if (rc != 0) {
		free(px);
		return rc;
	}
	px->nbuckets = 64; /* chains of up to 4 when the table is full: the sweep stays cheap */
	while (px->nbuckets * 4 < conf->max_dialogs && px->nbuckets < (1u << 22))
		px->nbuckets <<= 1;
	px->buckets = calloc(px->nbuckets, sizeof(*px->buckets));
	if (!px->buckets) {
		free(px);
		return VP_ENOMEM;
	}
	*out = px;
	return 0;
}

static void dialog_free(dialog_t *d)
{
	free(d->call_id);
	free(d);
}

void vb_proxy_free(vb_proxy_t *px)
{
	if (!px)
		return;
	for (size_t b = 0; b < px->nbuckets; b++)
		for (dialog_t *d = px->buckets[b], *n; d; d = n) {
			n = d->next;
			dialog_free(d);
		}
	free(px->buckets);
	free(px);
}

unsigned vb_proxy_dialogs(const vb_proxy_t *px)
{
	return px->ndialogs;
}

static dialog_t **dialog_slot(vb_proxy_t *px, const char *call_id)
{
	dialog_t **pp = &px->buckets[fnv1a(0xcbf29ce484222325ull, call_id) & (px->nbuckets - 1)];
	while (*pp && strcmp((*pp)->call_id, call_id) != 0)
		pp = &(*pp)->next;
	return pp;
}

static dialog_t *dialog_find(vb_proxy_t *px, const char *call_id)
{
	return *dialog_slot(px, call_id);
}

void vb_proxy_conn_closed(vb_proxy_t *px, uint64_t conn)
{
	for (size_t b = 0; b < px->nbuckets; b++)
		for (dialog_t *d = px->buckets[b]; d; d = d->next)
			if (d->conn == conn)
				d->conn = 0;
}

unsigned vb_proxy_tick(vb_proxy_t *px, uint64_t now_ms)
{
	/* A cursor sweep: a tenth of the buckets per call, so no call stalls the loop however big the table. */
	size_t slice = px->nbuckets / 10 + 1;
	unsigned n = 0;
	for (size_t k = 0; k < slice; k++) {
		size_t b = px->sweep++ & (px->nbuckets - 1);
		dialog_t **pp = &px->buckets[b];
		while (*pp) {
			dialog_t *d = *pp;
			if (d->expires_ms <= now_ms) {
				*pp = d->next;
				dialog_free(d);
				px->ndialogs--;
				n++;
			} else {
				pp = &d->next;
			}
		}
	}
	return n;
}

/* ---- message helpers ------------------------------------------------------------------------------------- */

static const char *tag_of(osip_from_t *h)
{
	osip_generic_param_t *p = NULL;
	if (!h || osip_generic_param_get_byname(&h->gen_params, "tag", &p) != 0 || !p)
		return NULL;
	return p->gvalue;
}

static const char *top_branch(osip_message_t *m)
{
	osip_via_t *via = osip_list_get(&m->vias, 0);
	osip_generic_param_t *p = NULL;
	if (!via || osip_via_param_get_byname(via, "branch", &p) != 0 || !p)
		return NULL;
	return p->gvalue;
}

static bool send_msg(vb_proxy_t *px, uint64_t conn, osip_message_t *m)
{
	char *buf = NULL;
	size_t len = 0;
	osip_message_force_update(m);
	if (osip_message_to_str(m, &buf, &len) != 0)
		return false;
	bool ok = px->hooks.send(px->hooks.ctx, conn, buf, len);
	osip_free(buf);
	return ok;
}

/* Answer \p req with \p status (never for ACK), copying Via, From, To (+ a tag), Call-ID and CSeq. */
static void respond(vb_proxy_t *px, uint64_t conn, osip_message_t *req, int status, const char *phrase)
{
	if (status == 0 || MSG_IS_ACK(req))
		return;
	osip_message_t *r = NULL;
	if (osip_message_init(&r) != 0)
		return;
	osip_message_set_version(r, osip_strdup("SIP/2.0"));
	osip_message_set_status_code(r, status);
	osip_message_set_reason_phrase(r, osip_strdup(phrase));
	for (int i = 0; i < osip_list_size(&req->vias); i++) {
		osip_via_t *v = NULL;
		if (osip_via_clone(osip_list_get(&req->vias, i), &v) == 0)
			osip_list_add(&r->vias, v, -1);
	}
	osip_from_clone(req->from, &r->from);
	osip_to_clone(req->to, &r->to);
	osip_call_id_clone(req->call_id, &r->call_id);
	osip_cseq_clone(req->cseq, &r->cseq);
	if (r->to && !tag_of(r->to)) {
		char tag[32];
		snprintf(tag, sizeof(tag), OWN_TAG "%" PRIx64, ++px->serial);
		osip_to_set_tag(r->to, osip_strdup(tag));
	}
	osip_message_set_content_length(r, "0");
	send_msg(px, conn, r);
	osip_message_free(r);
}

static const char *phrase_of(int status)
{
	switch (status) {
	case 200: return "OK";
	case 403: return "Forbidden";
	case 481: return "Call/Transaction Does Not Exist";
	case 483: return "Too Many Hops";
	case 488: return "Not Acceptable Here";
	case 503: return "Service Unavailable";
	default: return status < 500 ? "Request Refused" : "Server Error";
	}
}

static int refuse(vb_proxy_t *px, uint64_t conn, osip_message_t *req, vb_verdict_t *v, vb_reason_t r,
                  int status)
{
	v->reason = r;
	v->status = MSG_IS_ACK(req) ? 0 : status;
	respond(px, conn, req, v->status, phrase_of(status));
	return 0;
}

/* Remove every header named \p name (case-insensitive); returns how many there were. */
static int remove_headers(osip_message_t *m, const char *name)
{
	int n = 0;
	for (int i = 0; i < osip_list_size(&m->headers);) {
		osip_header_t *h = osip_list_get(&m->headers, i);
		if (h->hname && strcasecmp(h->hname, name) == 0) {
			osip_list_remove(&m->headers, i);
			osip_header_free(h);
			n++;
		} else {
			i++;
		}
	}
	return n;
}

static osip_header_t *find_header(osip_message_t *m, const char *name, int *count)
{
	osip_header_t *found = NULL;
	*count = 0;
	for (int i = 0; i < osip_list_size(&m->headers); i++) {
		osip_header_t *h = osip_list_get(&m->headers, i);
		if (h->hname && strcasecmp(h->hname, name) == 0) {
			if (!found)
				found = h;
			(*count)++;
		}
	}
	return found;
}

/* Max-Forwards: false when exhausted; otherwise decremented (or set to 70 when absent). */
static bool max_forwards(osip_message_t *m)
{
	int n;
	osip_header_t *h = find_header(m, "max-forwards", &n);
	if (!h) {
		osip_message_set_header(m, "Max-Forwards", MAX_FORWARDS_DEFAULT);
		return true;
	}
	char *end;
	long mf = strtol(h->hvalue ? h->hvalue : "", &end, 10);
	if (!h->hvalue || end == h->hvalue || *end || mf <= 0)
		return false;
	char buf[16];
	snprintf(buf, sizeof(buf), "%ld", mf - 1 > 255 ? 255 : mf - 1);
	osip_free(h->hvalue);
	h->hvalue = osip_strdup(buf);
	return true;
}

/* Drop the Route entries that name us (a Record-Route we inserted, now the peer's route set). */
static void strip_own_routes(vb_proxy_t *px, osip_message_t *m)
{
	for (int i = 0; i < osip_list_size(&m->routes);) {
		osip_route_t *r = osip_list_get(&m->routes, i);
		osip_uri_t *u = r ? r->url : NULL;
		int port = u && u->port ? atoi(u->port) : 5060;
		bool ours = u && u->host &&
		            ((strcasecmp(u->host, px->out_host) == 0 && port == px->out_port) ||
		             (strcasecmp(u->host, px->in_host) == 0 && port == px->in_port));
		if (!ours)
			break; /* only the leading entries can be ours */
		osip_list_remove(&m->routes, i);
		osip_route_free(r);
	}
}

static int add_via(vb_proxy_t *px, osip_message_t *m, bool to_inside, uint64_t from_conn)
{
	char text[VB_URI_MAX + 96];
	const char *in_branch = top_branch(m);
	uint64_t h = fnv1a(fnv1a(0xcbf29ce484222325ull, in_branch ? in_branch : "-"), m->call_id ? m->call_id->number : "");
	if (!in_branch) /* RFC 2543 peers: make ours unique instead */
		h ^= ++px->serial;
	snprintf(text, sizeof(text), "SIP/2.0/%s %s:%d;branch=" BRANCH_MAGIC "%016" PRIx64 ".%016" PRIx64,
	         to_inside ? px->in_transport : px->out_transport, to_inside ? px->in_host : px->out_host,
	         to_inside ? px->in_port : px->out_port, from_conn, h);
	osip_via_t *via = NULL;
	if (osip_via_init(&via) != 0)
		return VP_ENOMEM;
	if (osip_via_parse(via, text) != 0) {
		osip_via_free(via);
		return VP_EINVAL;
	}
	osip_list_add(&m->vias, via, 0);
	return 0;
}

static int add_record_route(osip_message_t *m, const char *uri)
{
	char text[VB_URI_MAX + 8];
	snprintf(text, sizeof(text), "<%s;lr>", uri);
	osip_record_route_t *rr = NULL;
	if (osip_record_route_init(&rr) != 0)
		return VP_ENOMEM;
	if (osip_record_route_parse(rr, text) != 0) {
		osip_record_route_free(rr);
		return VP_EINVAL;
	}
	osip_list_add(&m->record_routes, rr, 0);
	return 0;
}

/* The conn id in our top Via's branch, after checking the Via is ours; pops it. */
static bool pop_own_via(vb_proxy_t *px, osip_message_t *m, uint64_t *conn)
{
	osip_via_t *via = osip_list_get(&m->vias, 0);
	const char *b = top_branch(m);
	if (!via || !b || strncmp(b, BRANCH_MAGIC, strlen(BRANCH_MAGIC)) != 0)
		return false;
	const char *hex = b + strlen(BRANCH_MAGIC);
	char *end;
	if (strlen(hex) != 33 || hex[16] != '.')
		return false;
	uint64_t c = strtoull(hex, &end, 16);
	if (end != hex + 16)
		return false;
	bool host_ok = via->host && (strcasecmp(via->host, px->in_host) == 0 || strcasecmp(via->host, px->out_host) == 0);
	if (!host_ok)
		return false;
	*conn = c;
	osip_list_remove(&m->vias, 0);
	osip_via_free(via);
	return true;
}

static vb_sdp_t body_sdp(osip_message_t *m)
{
	osip_body_t *b = osip_list_get(&m->bodies, 0);
	if (!b || !b->body || b->length == 0)
		return VB_SDP_NONE;
	if (osip_list_size(&m->bodies) > 1)
		return VB_SDP_BAD;
	osip_content_type_t *ct = m->content_type;
	if (!ct || !ct->type || !ct->subtype)
		return VB_SDP_BAD; /* a body with no type: we cannot tell what it offers */
	if (strcasecmp(ct->type, "application") != 0 || strcasecmp(ct->subtype, "sdp") != 0)
		return VB_SDP_NONE; /* not an offer (RFC 3264 offers are SDP) */
	return vb_sdp_classify(b->body, b->length);
}

static uint32_t cseq_num(osip_message_t *m)
{
	return m->cseq && m->cseq->number ? (uint32_t)strtoul(m->cseq->number, NULL, 10) : 0;
}

/* ---- requests from the outside ----------------------------------------------------------------------------- */

/* The Request-URI user part as canonical E.164 ([tickets] country_code for national forms); false if none. */
static bool ruri_number(vb_proxy_t *px, osip_message_t *m, char number[VP_E164_BUFLEN])
{
	const char *user = m->req_uri ? m->req_uri->username : NULL;
	return user && vp_e164_normalize(user, &px->conf.e164, number) == 0;
}

/*
 * §7.1 step 2 for a ViPR client certificate (no ticket header): the certificate's signature and profile were
 * checked when the connection was made (pvp_cc_identity); here its grant must cover this INVITE.  The
 * calling domain is the certificate's: the From host must claim it (or a host under it), so one carrier
 * holding a certificate cannot present its calls as another carrier's.  Time is checked on every INVITE,
 * without skew (notBefore is already backdated by the issuer): a TLS connection outlives its handshake.
 */
static vb_reason_t cert_check(vb_proxy_t *px, osip_message_t *m, uint64_t now_ms)
{
	const pvp_cc_identity_t *cc = px->cc;
	char number[VP_E164_BUFLEN], host[PVP_DOMAIN_MAX + 1];
	uint64_t now_s = now_ms / 1000;
	if (now_s < cc->not_before_s || now_s > cc->not_after_s)
		return VB_R_CERT_EXPIRED;
	if (!ruri_number(px, m, number) || strcmp(number, cc->number) != 0)
		return VB_R_CERT_NUMBER;
	const char *fh = m->from && m->from->url ? m->from->url->host : NULL;
	if (!fh || pvp_domain_normalize(fh, host) != 0)
		return VB_R_CERT_DOMAIN;
	size_t hl = strlen(host), dl = strlen(cc->domain);
	if (!(hl == dl || (hl > dl && host[hl - dl - 1] == '.')) || strcmp(host + hl - dl, cc->domain) != 0)
		return VB_R_CERT_DOMAIN;
	return VB_R_OK;
}

static int admit_invite(vb_proxy_t *px, uint64_t conn, const char *domain, osip_message_t *m, uint64_t now_ms,
                        vb_verdict_t *v)
{
	const char *from_tag = tag_of(m->from);
	if (!from_tag || strlen(from_tag) > TAG_MAX)
		return refuse(px, conn, m, v, VB_R_MALFORMED, px->conf.refuse_status);
	bool offer = false;
	if (px->conf.checks) {
		int n1, n2;
		osip_header_t *h1 = find_header(m, VB_TICKET_HEADER, &n1);
		osip_header_t *h2 = find_header(m, VB_TICKET_HEADER_ALT, &n2);
		if (n1 + n2 == 0) {
			vb_reason_t cr = px->cc ? cert_check(px, m, now_ms) : VB_R_NO_TICKET;
			if (cr != VB_R_OK)
				return refuse(px, conn, m, v, cr, px->conf.refuse_status);
		} else if (n1 + n2 > 1) { /* two tickets: which one would the call agent believe? */
			v->ticket = PVP_TR_MALFORMED;
			return refuse(px, conn, m, v, VB_R_TICKET, px->conf.refuse_status);
		}
		if (n1 + n2 == 1) {
			osip_header_t *h = h1 ? h1 : h2;
			char number[VP_E164_BUFLEN];
			pvp_ticket_expect_t exp = {
				.number = number,
				.domain = domain,
				.need_routes = px->conf.require_routes,
			};
			if (!ruri_number(px, m, number))
				number[0] = '\0'; /* no number can match: the ticket check reports wrong-number after the MAC */
			pvp_ticket_reason_t tr = pvp_ticket_verify_text(px->keys, h->hvalue ? h->hvalue : "",
			                                                now_ms / 1000, &exp, NULL);
			if (tr != PVP_TR_OK) {
				v->ticket = tr;
				return refuse(px, conn, m, v, VB_R_TICKET, px->conf.refuse_status);
			}
		}
		vb_sdp_t s = body_sdp(m);
		if (s == VB_SDP_PLAIN || s == VB_SDP_BAD)
			return refuse(px, conn, m, v, VB_R_NO_SRTP, px->conf.no_srtp_status);
		offer = s == VB_SDP_SRTP;
	} else {
		offer = body_sdp(m) != VB_SDP_NONE;
	}
	if (!max_forwards(m))
		return refuse(px, conn, m, v, VB_R_LOOP, 483);
	if (px->hooks.inside_up && !px->hooks.inside_up(px->hooks.ctx))
		return refuse(px, conn, m, v, VB_R_UNAVAILABLE, 503);
	const char *cid = m->call_id->number;
	dialog_t *d = dialog_find(px, cid);
	if (d) {
		/* A retransmission of the INVITE we admitted goes on (stateless); anything else reusing the Call-ID is refused. */
		if (d->state != D_EARLY || strcmp(d->caller_tag, from_tag) != 0 || strcmp(d->domain, domain) != 0)
			return refuse(px, conn, m, v, VB_R_NO_DIALOG, px->conf.refuse_status);
	} else {
		if (px->ndialogs >= px->conf.max_dialogs)
			return refuse(px, conn, m, v, VB_R_UNAVAILABLE, 503);
		d = calloc(1, sizeof(*d));
		if (!d || !(d->call_id = strdup(cid))) {
			free(d);
			return refuse(px, conn, m, v, VB_R_UNAVAILABLE, 503);
		}
		snprintf(d->caller_tag, sizeof(d->caller_tag), "%s", from_tag);
		snprintf(d->domain, sizeof(d->domain), "%s", domain);
		d->state = D_EARLY;
		d->next = NULL;
		*dialog_slot(px, cid) = d;
		px->ndialogs++;
		v->admitted = true;
	}
	d->conn = conn;
	d->in_conn = VB_CONN_INSIDE;
	d->invite_cseq = cseq_num(m);
	d->invite_offerless = !offer;
	d->expires_ms = now_ms + (uint64_t)px->conf.early_timeout_s * 1000;
	remove_headers(m, VB_TICKET_HEADER);
	remove_headers(m, VB_TICKET_HEADER_ALT);
	if (add_record_route(m, px->conf.outside_uri) != 0 || add_record_route(m, px->conf.inside_uri) != 0 ||
	    add_via(px, m, true, conn) != 0)
		return refuse(px, conn, m, v, VB_R_UNAVAILABLE, 503);
	if (!send_msg(px, VB_CONN_INSIDE, m))
		return refuse(px, conn, m, v, VB_R_UNAVAILABLE, 503);
	v->forwarded = true;
	return 0;
}

static int outside_request(vb_proxy_t *px, uint64_t conn, const char *domain, osip_message_t *m, uint64_t now_ms,
                           vb_verdict_t *v)
{
	const char *to_tag = tag_of(m->to);
	const char *from_tag = tag_of(m->from);
	strip_own_routes(px, m);
	if (!to_tag && MSG_IS_OPTIONS(m)) { /* keep-alive and capability probes: answered here, never forwarded */
		respond(px, conn, m, 200, "OK");
		v->status = 200;
		return 0;
	}
	if (!to_tag && MSG_IS_INVITE(m))
		return admit_invite(px, conn, domain, m, now_ms, v);
	dialog_t *d = dialog_find(px, m->call_id->number);
	/* Ingress: the peer is the caller (From = caller tag), identified by its TLS domain (it may reconnect).
	 * Egress: the peer is the callee we connected to (From = callee tag, To = caller tag), on that connection. */
	bool mine = d && from_tag &&
	            (d->egress ? d->conn == conn && to_tag && strcmp(d->caller_tag, to_tag) == 0 &&
	                             strcmp(d->callee_tag, from_tag) == 0
	                       : strcmp(d->caller_tag, from_tag) == 0 && strcmp(d->domain, domain) == 0);
	if (!d && MSG_IS_ACK(m) && to_tag && strncmp(to_tag, OWN_TAG, strlen(OWN_TAG)) == 0)
		return 0; /* the ACK of a refusal we answered: ends here, and is not news */
	if (!to_tag) {
		/* Only a CANCEL of the INVITE we admitted may come without a To tag. */
		if (!MSG_IS_CANCEL(m))
			return refuse(px, conn, m, v, VB_R_METHOD, px->conf.refuse_status);
		if (!mine || d->egress || d->state != D_EARLY || cseq_num(m) != d->invite_cseq)
			return refuse(px, conn, m, v, VB_R_NO_DIALOG, px->conf.refuse_status);
	} else {
		if (!mine || (!d->egress && d->state == D_CONFIRMED && strcmp(d->callee_tag, to_tag) != 0))
			return refuse(px, conn, m, v, VB_R_NO_DIALOG, px->conf.refuse_status);
		if (MSG_IS_ACK(m) && d->refused_cseq && cseq_num(m) == d->refused_cseq)
			return 0; /* the ACK of our own refusal of a re-INVITE: the call agent never saw that INVITE */
		if (MSG_IS_INVITE(m)) {
			vb_sdp_t s = body_sdp(m);
			if (px->conf.checks && (s == VB_SDP_PLAIN || s == VB_SDP_BAD)) {
				d->refused_cseq = cseq_num(m);
				return refuse(px, conn, m, v, VB_R_DOWNGRADE, px->conf.no_srtp_status);
			}
			d->invite_cseq = cseq_num(m);
			d->invite_offerless = s == VB_SDP_NONE;
		}
		if (d->state == D_CONFIRMED)
			d->expires_ms = now_ms + (uint64_t)px->conf.idle_timeout_s * 1000;
	}
	d->conn = conn; /* the peer may come back on a new connection */
	if (!max_forwards(m))
		return refuse(px, conn, m, v, VB_R_LOOP, 483);
	if (px->hooks.inside_up && !px->hooks.inside_up(px->hooks.ctx))
		return refuse(px, conn, m, v, VB_R_UNAVAILABLE, 503);
	remove_headers(m, VB_TICKET_HEADER);
	remove_headers(m, VB_TICKET_HEADER_ALT);
	if (add_via(px, m, true, conn) != 0 || !send_msg(px, d->in_conn, m))
		return refuse(px, conn, m, v, VB_R_UNAVAILABLE, 503);
	v->forwarded = true;
	return 0;
}

/* ---- requests from the inside -------------------------------------------------------------------------------- */

/* A call agent calls out (overview §6.3): only over TLS (the connect hook opens a verified TLS connection to the
 * Request-URI's host) and only with SRTP (an offer now, or in the 2xx of an offerless INVITE). */
static int egress_invite(vb_proxy_t *px, uint64_t conn, osip_message_t *m, uint64_t now_ms, vb_verdict_t *v)
{
	const char *from_tag = tag_of(m->from);
	if (!from_tag || strlen(from_tag) > TAG_MAX)
		return refuse(px, conn, m, v, VB_R_MALFORMED, 403);
	if (!px->hooks.connect)
		return refuse(px, conn, m, v, VB_R_METHOD, 403); /* this border does not carry calls out */
	vb_sdp_t s = body_sdp(m);
	if (px->conf.checks && (s == VB_SDP_PLAIN || s == VB_SDP_BAD))
		return refuse(px, conn, m, v, VB_R_NO_SRTP, 488);
	osip_uri_t *u = m->req_uri;
	int port = u->port ? atoi(u->port) : 5061;
	if (!u->host || !u->host[0] || port <= 0 || port > 65535)
		return refuse(px, conn, m, v, VB_R_MALFORMED, 403);
	if (!max_forwards(m))
		return refuse(px, conn, m, v, VB_R_LOOP, 483);
	const char *cid = m->call_id->number;
	dialog_t *d = dialog_find(px, cid);
	if (d) {
		if (!d->egress || d->state != D_EARLY || strcmp(d->caller_tag, from_tag) != 0 || d->in_conn != conn)
			return refuse(px, conn, m, v, VB_R_NO_DIALOG, 403);
	} else {
		if (px->ndialogs >= px->conf.max_dialogs)
			return refuse(px, conn, m, v, VB_R_UNAVAILABLE, 503);
		uint64_t out = 0;
		char host[VB_URI_MAX];
		/* "[v6]" hosts come bracketed from the URI; the connect hook wants the address alone */
		size_t hl = strlen(u->host);
		if (hl >= sizeof(host))
			return refuse(px, conn, m, v, VB_R_MALFORMED, 403);
		if (u->host[0] == '[' && hl > 2 && u->host[hl - 1] == ']')
			snprintf(host, sizeof(host), "%.*s", (int)(hl - 2), u->host + 1);
		else
			snprintf(host, sizeof(host), "%s", u->host);
		if (px->hooks.connect(px->hooks.ctx, host, (uint16_t)port, &out) != 0)
			return refuse(px, conn, m, v, VB_R_UNAVAILABLE, 503);
		d = calloc(1, sizeof(*d));
		if (!d || !(d->call_id = strdup(cid))) {
			free(d);
			return refuse(px, conn, m, v, VB_R_UNAVAILABLE, 503);
		}
		snprintf(d->caller_tag, sizeof(d->caller_tag), "%s", from_tag);
		snprintf(d->domain, sizeof(d->domain), "%.*s", PVP_DOMAIN_MAX, host);
		d->egress = true;
		d->state = D_EARLY;
		d->conn = out;
		*dialog_slot(px, cid) = d;
		px->ndialogs++;
		v->admitted = true;
	}
	d->in_conn = conn;
	d->invite_cseq = cseq_num(m);
	d->invite_offerless = s == VB_SDP_NONE;
	d->expires_ms = now_ms + (uint64_t)px->conf.early_timeout_s * 1000;
	/* callee's route set in order: our outside URI first, then the inside one */
	if (add_record_route(m, px->conf.inside_uri) != 0 || add_record_route(m, px->conf.outside_uri) != 0 ||
	    add_via(px, m, false, conn) != 0 || !send_msg(px, d->conn, m))
		return refuse(px, conn, m, v, VB_R_UNAVAILABLE, 503);
	v->forwarded = true;
	return 0;
}

static int inside_request(vb_proxy_t *px, uint64_t conn, osip_message_t *m, uint64_t now_ms, vb_verdict_t *v)
{
	const char *to_tag = tag_of(m->to);
	const char *from_tag = tag_of(m->from);
	strip_own_routes(px, m);
	if (!to_tag && MSG_IS_OPTIONS(m)) {
		respond(px, conn, m, 200, "OK");
		v->status = 200;
		return 0;
	}
	if (!to_tag && MSG_IS_INVITE(m))
		return egress_invite(px, conn, m, now_ms, v);
	dialog_t *d = dialog_find(px, m->call_id->number);
	/* Ingress dialogs: the call agent is the callee (From = callee tag, To = caller tag).
	 * Egress dialogs: it is the caller (From = caller tag; To = callee tag once answered). */
	bool mine;
	if (d && d->egress)
		mine = from_tag && strcmp(d->caller_tag, from_tag) == 0 &&
		       (to_tag ? d->callee_tag[0] == '\0' || strcmp(d->callee_tag, to_tag) == 0
		               : MSG_IS_CANCEL(m) && d->state == D_EARLY && cseq_num(m) == d->invite_cseq);
	else
		mine = d && to_tag && from_tag && strcmp(d->caller_tag, to_tag) == 0 &&
		       (d->callee_tag[0] == '\0' || strcmp(d->callee_tag, from_tag) == 0);
	if (!mine)
		return refuse(px, conn, m, v, VB_R_NO_DIALOG, 481);
	if (MSG_IS_ACK(m) && d->refused_cseq && cseq_num(m) == d->refused_cseq)
		return 0; /* the ACK of our own 488 */
	if (MSG_IS_INVITE(m)) {
		vb_sdp_t s = body_sdp(m);
		if (px->conf.checks && (s == VB_SDP_PLAIN || s == VB_SDP_BAD)) {
			d->refused_cseq = cseq_num(m);
			return refuse(px, conn, m, v, VB_R_DOWNGRADE, 488);
		}
		d->invite_cseq = cseq_num(m);
		d->invite_offerless = s == VB_SDP_NONE;
	}
	if (d->conn == 0)
		return refuse(px, conn, m, v, VB_R_UNAVAILABLE, 503);
	if (!max_forwards(m))
		return refuse(px, conn, m, v, VB_R_LOOP, 483);
	d->expires_ms = now_ms + (uint64_t)px->conf.idle_timeout_s * 1000;
	if (add_via(px, m, false, conn) != 0 || !send_msg(px, d->conn, m))
		return refuse(px, conn, m, v, VB_R_UNAVAILABLE, 503);
	v->forwarded = true;
	return 0;
}

/* ---- responses ------------------------------------------------------------------------------------------------- */

/* A 2xx to an offerless INVITE offered plain RTP: refuse it to the caller, ACK and BYE the call agent. */
static void kill_call(vb_proxy_t *px, osip_message_t *resp, dialog_t *d)
{
	/* The answering side gets our ACK and BYE: the call agent (ingress) or the outside peer (egress). */
	uint64_t toward = d->egress ? d->conn : d->in_conn;
	const char *tr = d->egress ? px->out_transport : px->in_transport;
	const char *host = d->egress ? px->out_host : px->in_host;
	int port = d->egress ? px->out_port : px->in_port;
	osip_contact_t *ct = osip_list_get(&resp->contacts, 0);
	char *target = NULL, *from = NULL, *to = NULL;
	if (ct && ct->url)
		osip_uri_to_str(ct->url, &target);
	osip_from_to_str(resp->from, &from);
	osip_to_to_str(resp->to, &to);
	if (target && from && to) {
		const char *methods[2] = {"ACK", "BYE"};
		for (int i = 0; i < 2; i++) {
			char buf[4096];
			int n = snprintf(buf, sizeof(buf),
			                 "%s %s SIP/2.0\r\nVia: SIP/2.0/%s %s:%d;branch=" BRANCH_MAGIC "%016" PRIx64
			                 ".%016" PRIx64 "\r\nMax-Forwards: 70\r\nFrom: %s\r\nTo: %s\r\nCall-ID: %s\r\n"
			                 "CSeq: %" PRIu32 " %s\r\nContent-Length: 0\r\n\r\n",
			                 methods[i], target, tr, host, port, (uint64_t)SELF_CONN,
			                 ++px->serial, from, to, d->call_id, d->invite_cseq + (uint32_t)i, methods[i]);
			if (n > 0 && (size_t)n < sizeof(buf))
				px->hooks.send(px->hooks.ctx, toward, buf, (size_t)n);
		}
	}
	osip_free(target);
	osip_free(from);
	osip_free(to);
	/* The caller sees a 488 instead of the 2xx: it never gets the unencrypted offer. */
	osip_message_set_status_code(resp, px->conf.no_srtp_status ? px->conf.no_srtp_status : 488);
	osip_free(resp->reason_phrase);
	resp->reason_phrase = osip_strdup(phrase_of(resp->status_code));
	while (osip_list_size(&resp->bodies) > 0) {
		osip_body_t *b = osip_list_get(&resp->bodies, 0);
		osip_list_remove(&resp->bodies, 0);
		osip_body_free(b);
	}
	osip_content_type_free(resp->content_type);
	resp->content_type = NULL;
	osip_content_length_free(resp->content_length);
	resp->content_length = NULL;
	osip_message_set_content_length(resp, "0");
}

static int response(vb_proxy_t *px, uint64_t conn, osip_message_t *m, uint64_t now_ms, vb_verdict_t *v)
{
	uint64_t dest;
	if (!pop_own_via(px, m, &dest) || osip_list_size(&m->vias) == 0) {
		v->reason = VB_R_BAD_RESPONSE;
		return 0;
	}
	dialog_t *d = dialog_find(px, m->call_id->number);
	const char *method = m->cseq && m->cseq->method ? m->cseq->method : "";
	int st = m->status_code;
	if (dest == SELF_CONN)
		return 0; /* the answer to our own ACK/BYE of a refused call */
	if (!is_inside(conn)) {
		/* From outside: an answer to a request of the call agent, in a dialog with this very peer. */
		if (!is_inside(dest) || !d || d->conn != conn) {
			v->reason = VB_R_BAD_RESPONSE;
			return 0;
		}
	} else if (is_inside(dest)) {
		v->reason = VB_R_BAD_RESPONSE; /* inside to inside: not through us */
		return 0;
	}
	/* The final answer to the INVITE in progress, from whichever side was called. */
	bool from_callee = d && (d->egress ? !is_inside(conn) : is_inside(conn));
	if (from_callee && strcmp(method, "INVITE") == 0 && cseq_num(m) == d->invite_cseq && st >= 200) {
		const char *to_tag = tag_of(m->to);
		if (to_tag && strlen(to_tag) <= TAG_MAX && d->state == D_EARLY)
			snprintf(d->callee_tag, sizeof(d->callee_tag), "%s", to_tag);
		if (st < 300) {
			vb_sdp_t s = body_sdp(m);
			if (px->conf.checks && d->invite_offerless && s != VB_SDP_SRTP) {
				kill_call(px, m, d);
				d->refused_cseq = d->invite_cseq; /* the caller ACKs our 488: the callee already got our ACK */
				d->state = D_ENDING;
				d->expires_ms = now_ms + ENDING_MS;
				v->reason = VB_R_NO_SRTP;
				v->status = m->status_code;
			} else if (d->state != D_ENDING) {
				d->state = D_CONFIRMED;
				d->expires_ms = now_ms + (uint64_t)px->conf.idle_timeout_s * 1000;
			}
		} else if (d->state == D_EARLY) {
			d->state = D_ENDING;
			d->expires_ms = now_ms + ENDING_MS;
		}
		d->invite_offerless = false;
	}
	if (d && strcmp(method, "BYE") == 0 && st >= 200) {
		d->state = D_ENDING;
		d->expires_ms = now_ms + ENDING_MS;
	}
	if (send_msg(px, dest, m))
		v->forwarded = true;
	return 0;
}

int vb_proxy_input_cc(vb_proxy_t *px, uint64_t conn, const char *peer_domain, const pvp_cc_identity_t *cc,
                      const char *msg, size_t len, uint64_t now_ms, vb_verdict_t *v)
{
	px->cc = is_inside(conn) ? NULL : cc;
	int rc = vb_proxy_input(px, conn, peer_domain, msg, len, now_ms, v);
	px->cc = NULL;
	return rc;
}

int vb_proxy_input(vb_proxy_t *px, uint64_t conn, const char *peer_domain, const char *msg, size_t len,
                   uint64_t now_ms, vb_verdict_t *v)
{
	memset(v, 0, sizeof(*v));
	osip_message_t *m = NULL;
	int rc = 0;
	if (osip_message_init(&m) != 0)
		return VP_ENOMEM;
	if (osip_message_parse(m, msg, len) != 0 || !m->call_id || !m->call_id->number || !m->from || !m->to ||
	    !m->cseq || !m->cseq->method || osip_list_size(&m->vias) == 0 ||
	    (MSG_IS_REQUEST(m) && (!m->sip_method || !m->req_uri))) {
		v->reason = VB_R_MALFORMED;
		rc = VP_EMALFORMED;
		goto finish;
	}
	if (MSG_IS_RESPONSE(m))
		rc = response(px, conn, m, now_ms, v);
	else if (is_inside(conn))
		rc = inside_request(px, conn, m, now_ms, v);
	else
		rc = outside_request(px, conn, peer_domain ? peer_domain : "", m, now_ms, v);
finish:
	osip_message_free(m);
	return rc;
}

int vb_proxy_reject(vb_proxy_t *px, uint64_t conn, const char *msg, size_t len, int status)
{
	osip_message_t *m = NULL;
	int rc = VP_EMALFORMED;
	if (osip_message_init(&m) != 0)
		return VP_ENOMEM;
	if (osip_message_parse(m, msg, len) == 0 && m->call_id && m->from && m->to && m->cseq &&
	    osip_list_size(&m->vias) > 0) {
		if (MSG_IS_REQUEST(m) && m->sip_method)
			respond(px, conn, m, status, phrase_of(status));
		rc = 0;
	}
	osip_message_free(m);
	return rc;
}
