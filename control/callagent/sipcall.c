/*
 * control/callagent/sipcall.c - one call forked to every route of a number (docs/protocol.md §11.1).
 * libosip2 builds and parses every message; nothing here reads SIP text by hand.
 */
#include "control/callagent/callagent.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>
#include <osipparser2/osip_message.h>
#include <osipparser2/osip_parser.h>
#include <osipparser2/osip_port.h>

#include "common/errcode.h"
#include "common/log.h"

#define MOD "callagent"
#define ID_HEX 16                /* random bytes behind Call-ID, tag and branch: 128 bits */
#define TAG_MAX 128

typedef struct fork {
	char branch[8 + 2 * ID_HEX + 1]; /* "z9hG4bK" + hex: RFC 3261 magic cookie */
	bool done, cancelled;
	int status;
	vca_class_t cls;
} fork_t;

struct vca_call {
	char *from_uri, *contact_uri, *via_host, *transport, *sdp;
	char call_id[2 * ID_HEX + 1], from_tag[2 * ID_HEX + 1];
	vca_plan_t plan;
	vca_hooks_t hooks;
	fork_t forks[VCA_MAX_FORKS];
	vca_outcome_t outcome;
	size_t answered;
	int final_status;
	char *answer;            /* the 2xx that answered (for the BYE), or NULL */
	bool hung_up;
};

/* libosip2's own diagnostics become debug lines: a peer sending garbage must not fill the log. */
static void osip_trace_sink(const char *file, int line, osip_trace_level_t level, const char *fmt, va_list ap)
	__attribute__((format(printf, 4, 0)));
static void osip_trace_sink(const char *file, int line, osip_trace_level_t level, const char *fmt, va_list ap)
{
	(void)file;
	(void)line;
	(void)level;
	if (!vp_log_enabled(VP_LOG_DEBUG))
		return;
	char msg[256];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	for (char *p = msg; *p; p++)
		if (*p == '"' || *p == '\n' || *p == '\r')
			*p = ' ';
	vp_log_debug(MOD, "osip", "msg=\"%s\"", msg);
}

static void rand_hex(char *out, size_t nbytes)
{
	uint8_t b[ID_HEX];
	if (nbytes > sizeof(b) || RAND_bytes(b, (int)nbytes) != 1)
		abort(); /* no randomness: no safe Call-ID, tag or branch; nothing sensible to continue with */
	for (size_t i = 0; i < nbytes; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
}

const char *vca_outcome_str(vca_outcome_t o)
{
	static const char *const s[] = { "pending", "answered", "callee", "pstn" };
	return (unsigned)o < sizeof(s) / sizeof(s[0]) ? s[o] : "unknown";
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

void vca_call_free(vca_call_t *c)
{
	if (!c)
		return;
	free(c->from_uri);
	free(c->contact_uri);
	free(c->via_host);
	free(c->transport);
	free(c->sdp);
	free(c->answer);
	free(c);
}

const char *vca_call_id(const vca_call_t *c)
{
	return c->call_id;
}

/* Serialise and send \p m to fork \p i; false if that fork's transport refused it. */
static bool send_msg(vca_call_t *c, size_t i, osip_message_t *m)
{
	char *buf = NULL;
	size_t len = 0;
	bool ok = false;
	osip_message_force_update(m);
	if (osip_message_to_str(m, &buf, &len) == 0) {
		ok = c->hooks.send(c->hooks.ctx, i, buf, len);
		osip_free(buf);
	}
	return ok;
}

/*
 * The common part of every request of fork \p i: Request-URI \p ruri (NULL = the route's), Via with
 * \p branch, From with our tag, To (with \p to_tag when known), Call-ID, CSeq 1 \p method, Max-Forwards.
 */
static osip_message_t *request(vca_call_t *c, size_t i, const char *method, const char *ruri, const char *branch,
                               const char *to_tag)
{
	osip_message_t *m = NULL;
	osip_uri_t *u = NULL;
	char via[VCA_URI_MAX + 96], from[VCA_URI_MAX + 48], to[VCA_URI_MAX + TAG_MAX + 16], cseq[32];
	if (osip_message_init(&m) != 0)
		return NULL;
	snprintf(via, sizeof(via), "SIP/2.0/%s %s;branch=%s", c->transport, c->via_host, branch);
	snprintf(from, sizeof(from), "<%s>;tag=%s", c->from_uri, c->from_tag);
	if (to_tag && to_tag[0])
		snprintf(to, sizeof(to), "<%s>;tag=%s", c->plan.routes[i].uri, to_tag);
	else
		snprintf(to, sizeof(to), "<%s>", c->plan.routes[i].uri);
	snprintf(cseq, sizeof(cseq), "1 %s", method);
	osip_message_set_method(m, osip_strdup(method));
	osip_message_set_version(m, osip_strdup("SIP/2.0"));
	if (osip_uri_init(&u) != 0 || osip_uri_parse(u, ruri ? ruri : c->plan.routes[i].uri) != 0) {
		osip_uri_free(u);
		osip_message_free(m);
		return NULL;
	}
	osip_message_set_uri(m, u);
	if (osip_message_set_via(m, via) != 0 || osip_message_set_from(m, from) != 0 || osip_message_set_to(m, to) != 0 ||
	    osip_message_set_call_id(m, c->call_id) != 0 || osip_message_set_cseq(m, cseq) != 0 ||
	    osip_message_set_max_forwards(m, "70") != 0) {
		osip_message_free(m);
		return NULL;
	}
	return m;
}

static void fork_finish(vca_call_t *c, size_t i, int status)
{
	c->forks[i].done = true;
	c->forks[i].status = status;
	c->forks[i].cls = vca_classify(status);
	vp_log_info(MOD, "fork_result", "call_id=%s number=%s uri=%s status=%d class=%s", c->call_id,
	            c->plan.routes[i].number, c->plan.routes[i].uri, status, vca_class_str(c->forks[i].cls));
}

static void cancel_pending(vca_call_t *c)
{
	for (size_t i = 0; i < c->plan.n; i++) {
		fork_t *f = &c->forks[i];
		if (f->done || f->cancelled)
			continue;
		f->cancelled = true;
		osip_message_t *m = request(c, i, "CANCEL", NULL, f->branch, NULL);
		if (m) {
			osip_message_set_content_length(m, "0");
			(void)send_msg(c, i, m);
			osip_message_free(m);
		}
	}
}

/* Once every fork is final: answered (already set), else the callee's own answer, else the PSTN. */
static void settle(vca_call_t *c)
{
	if (c->outcome != VCA_O_PENDING)
		return;
	int callee = 0;
	for (size_t i = 0; i < c->plan.n; i++) {
		if (!c->forks[i].done)
			return;
		if (c->forks[i].cls == VCA_C_CALLEE && !callee)
			callee = c->forks[i].status;
	}
	c->outcome = callee ? VCA_O_CALLEE : VCA_O_PSTN;
	c->final_status = callee;
	vp_log_info(MOD, "call_outcome", "call_id=%s number=%s outcome=%s status=%d", c->call_id,
	            c->plan.routes[0].number, vca_outcome_str(c->outcome), callee);
}

int vca_call_start(const vca_call_conf_t *conf, const vca_plan_t *plan, const vca_hooks_t *hooks, vca_call_t **out)
{
	*out = NULL;
	if (!conf || !plan || !hooks || !hooks->send || plan->pstn || plan->n == 0 || plan->n > VCA_MAX_FORKS ||
	    !conf->from_uri || !conf->contact_uri || !conf->via_host || !conf->transport)
		return VP_EINVAL;
	parser_init(); /* libosip2's header tables; idempotent */
	osip_trace_initialize_func(END_TRACE_LEVEL, osip_trace_sink);
	vca_call_t *c = calloc(1, sizeof(*c));
	if (!c)
		return VP_ENOMEM;
	c->from_uri = strdup(conf->from_uri);
	c->contact_uri = strdup(conf->contact_uri);
	c->via_host = strdup(conf->via_host);
	c->transport = strdup(conf->transport);
	c->sdp = dup_or_null(conf->sdp);
	if (!c->from_uri || !c->contact_uri || !c->via_host || !c->transport || (conf->sdp && !c->sdp)) {
		vca_call_free(c);
		return VP_ENOMEM;
	}
	if (conf->call_id && conf->call_id[0])
		snprintf(c->call_id, sizeof(c->call_id), "%s", conf->call_id);
	else
		rand_hex(c->call_id, ID_HEX);
	rand_hex(c->from_tag, ID_HEX / 2);
	c->plan = *plan;
	c->hooks = *hooks;
	/* Build every INVITE first: a bad URI refuses the whole call before anything is sent. */
	osip_message_t *inv[VCA_MAX_FORKS] = { 0 };
	int rc = 0;
	for (size_t i = 0; i < plan->n && !rc; i++) {
		memcpy(c->forks[i].branch, "z9hG4bK", 7);
		rand_hex(c->forks[i].branch + 7, ID_HEX);
		char contact[VCA_URI_MAX + 4];
		snprintf(contact, sizeof(contact), "<%s>", c->contact_uri);
		if (!(inv[i] = request(c, i, "INVITE", NULL, c->forks[i].branch, NULL)) ||
		    osip_message_set_contact(inv[i], contact) != 0)
			rc = VP_EINVAL;
		else if (plan->routes[i].ticket[0] && osip_message_set_header(inv[i], VCA_TICKET_HEADER,
		                                                              plan->routes[i].ticket) != 0)
			rc = VP_ENOMEM;
		else if (c->sdp && (osip_message_set_body(inv[i], c->sdp, strlen(c->sdp)) != 0 ||
		                    osip_message_set_content_type(inv[i], "application/sdp") != 0))
			rc = VP_ENOMEM;
		else if (!c->sdp)
			osip_message_set_content_length(inv[i], "0");
	}
	if (rc) {
		vp_log_warn(MOD, "call_refused", "number=%s err=%s", plan->routes[0].number, vp_errname(rc));
		for (size_t i = 0; i < plan->n; i++)
			osip_message_free(inv[i]);
		vca_call_free(c);
		return rc;
	}
	vp_log_info(MOD, "call_start", "call_id=%s number=%s forks=%zu", c->call_id, plan->routes[0].number, plan->n);
	for (size_t i = 0; i < plan->n; i++) {
		if (!send_msg(c, i, inv[i]))
			fork_finish(c, i, 0);
		osip_message_free(inv[i]);
	}
	settle(c);
	*out = c;
	return 0;
}

static const char *param_tag(osip_from_t *h)
{
	osip_generic_param_t *p = NULL;
	if (!h || osip_from_param_get_byname(h, "tag", &p) != 0 || !p)
		return NULL;
	return p->gvalue;
}

/*
 * A request inside the dialog a 2xx on fork \p i created (ACK with CSeq 1, BYE with CSeq 2): to its
 * Contact, through its Record-Route set reversed (RFC 3261 §12.1.2), with its To tag, on a new branch.
 */
static void in_dialog(vca_call_t *c, size_t i, osip_message_t *resp, const char *method)
{
	osip_contact_t *ct = osip_list_get(&resp->contacts, 0);
	const char *tag = param_tag(resp->to);
	char *ruri = NULL, branch[sizeof(c->forks[0].branch)];
	osip_message_t *m;
	memcpy(branch, "z9hG4bK", 7);
	rand_hex(branch + 7, ID_HEX);
	if (tag && strlen(tag) >= TAG_MAX)
		tag = NULL;
	if (ct && ct->url)
		osip_uri_to_str(ct->url, &ruri);
	m = request(c, i, method, ruri, branch, tag);
	if (ruri)
		osip_free(ruri);
	if (!m)
		return;
	if (strcmp(method, "ACK") != 0) {
		osip_cseq_free(m->cseq);
		m->cseq = NULL;
		char cseq[32];
		snprintf(cseq, sizeof(cseq), "2 %s", method);
		osip_message_set_cseq(m, cseq);
	}
	for (int k = osip_list_size(&resp->record_routes) - 1; k >= 0; k--) {
		osip_record_route_t *rr = osip_list_get(&resp->record_routes, k);
		char *s = NULL;
		if (rr && osip_record_route_to_str(rr, &s) == 0) {
			osip_message_set_route(m, s);
			osip_free(s);
		}
	}
	osip_message_set_content_length(m, "0");
	(void)send_msg(c, i, m);
	osip_message_free(m);
}

/* ACK of a final response on fork \p i: a 2xx in its dialog, anything else hop by hop on the INVITE's branch. */
static void ack(vca_call_t *c, size_t i, osip_message_t *resp, bool ok)
{
	if (ok) {
		in_dialog(c, i, resp, "ACK");
		return;
	}
	const char *tag = param_tag(resp->to);
	osip_message_t *m = request(c, i, "ACK", NULL, c->forks[i].branch, tag && strlen(tag) < TAG_MAX ? tag : NULL);
	if (!m)
		return;
	osip_message_set_content_length(m, "0");
	(void)send_msg(c, i, m);
	osip_message_free(m);
}

/* A second 2xx after the call was answered elsewhere: ACK it and hang up that leg (RFC 3261 §13.2.2.4). */
static void bye_extra(vca_call_t *c, size_t i, osip_message_t *resp)
{
	in_dialog(c, i, resp, "ACK");
	in_dialog(c, i, resp, "BYE");
}

int vca_call_hangup(vca_call_t *c)
{
	osip_message_t *m = NULL;
	if (c->outcome != VCA_O_ANSWERED || !c->answer || c->hung_up)
		return VP_ESTATE;
	if (osip_message_init(&m) != 0)
		return VP_ENOMEM;
	if (osip_message_parse(m, c->answer, strlen(c->answer)) != 0) {
		osip_message_free(m);
		return VP_EMALFORMED;
	}
	in_dialog(c, c->answered, m, "BYE");
	osip_message_free(m);
	c->hung_up = true;
	return 0;
}

int vca_call_input(vca_call_t *c, size_t i, const char *msg, size_t len)
{
	osip_message_t *m = NULL;
	int rc = VP_EMALFORMED;
	if (i >= c->plan.n || osip_message_init(&m) != 0)
		return i >= c->plan.n ? VP_EINVAL : VP_ENOMEM;
	if (osip_message_parse(m, msg, len) != 0 || !MSG_IS_RESPONSE(m) || !m->call_id || !m->call_id->number ||
	    strcmp(m->call_id->number, c->call_id) != 0 || !m->cseq || !m->cseq->method)
		goto finish;
	osip_via_t *via = osip_list_get(&m->vias, 0);
	osip_generic_param_t *br = NULL;
	if (!via || osip_via_param_get_byname(via, "branch", &br) != 0 || !br || !br->gvalue ||
	    strcmp(br->gvalue, c->forks[i].branch) != 0)
		goto finish; /* not this fork's (a 2xx ACK's branch is ours, but nothing answers an ACK) */
	rc = 0;
	if (strcmp(m->cseq->method, "INVITE") != 0)
		goto finish; /* the 200 to our CANCEL: nothing to do */
	int st = m->status_code;
	if (st < 200)
		goto finish;
	fork_t *f = &c->forks[i];
	if (f->done) {
		if (st < 300 && f->status >= 200 && f->status < 300)
			ack(c, i, m, true); /* a retransmitted 2xx: our ACK was lost */
		goto finish;
	}
	fork_finish(c, i, st);
	if (f->cls == VCA_C_ANSWERED) {
		if (c->outcome == VCA_O_ANSWERED) {
			bye_extra(c, i, m);
			goto finish;
		}
		ack(c, i, m, true);
		c->answer = strndup(msg, len);
		c->outcome = VCA_O_ANSWERED;
		c->answered = i;
		c->final_status = st;
		vp_log_info(MOD, "call_outcome", "call_id=%s number=%s outcome=answered uri=%s", c->call_id,
		            c->plan.routes[i].number, c->plan.routes[i].uri);
		cancel_pending(c);
		goto finish;
	}
	ack(c, i, m, false);
	if (st >= 600 && f->cls == VCA_C_CALLEE && c->outcome == VCA_O_PENDING) {
		/* 600/603 speak for the callee everywhere: stop the other forks (RFC 3261 §16.7 step 5 for proxies) */
		c->outcome = VCA_O_CALLEE;
		c->final_status = st;
		cancel_pending(c);
		goto finish;
	}
	settle(c);
finish:
	osip_message_free(m);
	return rc;
}

void vca_call_fork_failed(vca_call_t *c, size_t i)
{
	if (i >= c->plan.n || c->forks[i].done)
		return;
	fork_finish(c, i, 0);
	settle(c);
}

vca_outcome_t vca_call_outcome(const vca_call_t *c, size_t *answered_fork, int *status)
{
	if (answered_fork)
		*answered_fork = c->answered;
	if (status)
		*status = c->final_status;
	return c->outcome;
}

bool vca_call_fork_result(const vca_call_t *c, size_t i, int *status, vca_class_t *cls)
{
	if (i >= c->plan.n || !c->forks[i].done)
		return false;
	*status = c->forks[i].status;
	*cls = c->forks[i].cls;
	return true;
}

void vca_call_report(const vca_call_t *c, vca_table_t *t, uint64_t now_s)
{
	for (size_t i = 0; i < c->plan.n; i++)
		if (c->forks[i].done && !(c->forks[i].cancelled && c->forks[i].status == 0)) /* we hung it up: says nothing */
			vca_report(t, c->plan.routes[i].number, c->plan.routes[i].uri, c->forks[i].cls, now_s);
}
