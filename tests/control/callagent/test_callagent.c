/*
 * The call agent's routes and calls (docs/protocol.md §11): forking to every route of a number with one
 * answered, the merged-request duplicate, the PSTN fallback on each "route down" and "forget" response,
 * and a route renewed before it expires without a gap (clock injected).  Messages go through an injected
 * send hook; the test plays the callee side with libosip2.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <osipparser2/osip_message.h>
#include <osipparser2/osip_parser.h>
#include <osipparser2/osip_port.h>

#include "common/errcode.h"
#include "control/callagent/callagent.h"

#define NUM "+14085551234"
#define T0 1795256243ull
#define DAY 86400ull
#define LIFE (30 * DAY) /* the default ticket lifetime */

/* ---- the wire: every message the engine sends, per fork ----------------------------------------------- */

#define MAXMSG 32
typedef struct wire {
	size_t n;
	size_t fork[MAXMSG];
	char *msg[MAXMSG];
	bool fail[VCA_MAX_FORKS]; /* this fork's transport refuses */
} wire_t;

static bool w_send(void *ctx, size_t fork, const char *msg, size_t len)
{
	wire_t *w = ctx;
	if (w->fail[fork])
		return false;
	assert_true(w->n < MAXMSG);
	w->fork[w->n] = fork;
	w->msg[w->n] = strndup(msg, len);
	w->n++;
	return true;
}

static void w_free(wire_t *w)
{
	for (size_t i = 0; i < w->n; i++)
		free(w->msg[i]);
	memset(w, 0, sizeof(*w));
}

static osip_message_t *parse(const char *text)
{
	osip_message_t *m = NULL;
	assert_int_equal(osip_message_init(&m), 0);
	assert_int_equal(osip_message_parse(m, text, strlen(text)), 0);
	return m;
}

/* The index of the \p k-th message (0-based) of \p method sent to \p fork, or -1. */
static int w_find(const wire_t *w, size_t fork, const char *method, int k)
{
	for (size_t i = 0; i < w->n; i++) {
		if (w->fork[i] != fork)
			continue;
		osip_message_t *m = parse(w->msg[i]);
		bool hit = MSG_IS_REQUEST(m) && strcmp(m->sip_method, method) == 0;
		osip_message_free(m);
		if (hit && k-- == 0)
			return (int)i;
	}
	return -1;
}

static const char *branch_of(osip_message_t *m)
{
	osip_via_t *v = osip_list_get(&m->vias, 0);
	osip_generic_param_t *p = NULL;
	assert_non_null(v);
	assert_int_equal(osip_via_param_get_byname(v, "branch", &p), 0);
	return p->gvalue;
}

static const char *from_tag(osip_message_t *m)
{
	osip_generic_param_t *p = NULL;
	assert_int_equal(osip_from_param_get_byname(m->from, "tag", &p), 0);
	return p->gvalue;
}

/* The callee's answer \p status to the INVITE sent on \p fork, as libosip2 writes it. */
static char *answer(const wire_t *w, size_t fork, int status)
{
	int idx = w_find(w, fork, "INVITE", 0);
	assert_true(idx >= 0);
	osip_message_t *q = parse(w->msg[idx]), *r = NULL;
	char *out = NULL;
	size_t len;
	assert_int_equal(osip_message_init(&r), 0);
	osip_message_set_version(r, osip_strdup("SIP/2.0"));
	osip_message_set_status_code(r, status);
	osip_message_set_reason_phrase(r, osip_strdup("Test"));
	for (int i = 0; i < osip_list_size(&q->vias); i++) {
		osip_via_t *v = NULL;
		osip_via_clone(osip_list_get(&q->vias, i), &v);
		osip_list_add(&r->vias, v, -1);
	}
	osip_from_clone(q->from, &r->from);
	osip_to_clone(q->to, &r->to);
	if (status > 100)
		osip_to_set_tag(r->to, osip_strdup(fork ? "callee-1" : "callee-0"));
	osip_call_id_clone(q->call_id, &r->call_id);
	osip_cseq_clone(q->cseq, &r->cseq);
	if (status >= 200 && status < 300) {
		osip_message_set_contact(r, fork ? "<sip:uas1@192.0.2.1:5061;transport=tls>" : "<sip:uas0@192.0.2.1:5061>");
		osip_message_set_record_route(r, "<sip:border-b.example:5061;transport=tls;lr>");
	}
	osip_message_set_content_length(r, "0");
	osip_message_force_update(r);
	assert_int_equal(osip_message_to_str(r, &out, &len), 0);
	osip_message_free(q);
	osip_message_free(r);
	char *copy = strdup(out);
	osip_free(out);
	return copy;
}

static int feed(vca_call_t *c, const wire_t *w, size_t fork, int status)
{
	char *a = answer(w, fork, status);
	int rc = vca_call_input(c, fork, a, strlen(a));
	free(a);
	return rc;
}

/* ---- routes ---------------------------------------------------------------------------------------------- */

static vca_route_t route(const char *uri, const char *ticket, uint64_t learned, uint64_t expires)
{
	vca_route_t r;
	memset(&r, 0, sizeof(r));
	snprintf(r.number, sizeof(r.number), "%s", NUM);
	snprintf(r.uri, sizeof(r.uri), "%s", uri);
	if (ticket)
		snprintf(r.ticket, sizeof(r.ticket), "%s", ticket);
	else
		snprintf(r.cert, sizeof(r.cert), "/etc/vipr/cc-%s.pem", NUM);
	r.learned_s = learned;
	r.expires_s = expires;
	return r;
}

static const vca_call_conf_t cconf = {
	.from_uri = "sip:+33123456789@carrier-b.example",
	.contact_uri = "sip:agent@10.0.0.5:5060;transport=tcp",
	.via_host = "10.0.0.5:5060",
	.transport = "TCP",
	.sdp = "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n"
	       "m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n",
};

static vca_hooks_t hooks(wire_t *w)
{
	vca_hooks_t h = { .send = w_send, .ctx = w };
	return h;
}

static vca_table_t *table(void)
{
	vca_table_t *t;
	assert_int_equal(vca_table_new(NULL, &t), 0);
	return t;
}

static void learn_checks_its_input(void **state)
{
	vca_table_t *t = table();
	vca_route_t r = route("sips:" NUM "@pbx-a.example", "dGlja2V0", T0, T0 + LIFE);
	(void)state;
	assert_int_equal(vca_learn(t, &r), 0);
	vca_route_t bad = r;
	snprintf(bad.number, sizeof(bad.number), "4085551234"); /* not canonical */
	assert_int_equal(vca_learn(t, &bad), VP_EINVAL);
	bad = r;
	snprintf(bad.cert, sizeof(bad.cert), "/x.pem"); /* ticket and certificate */
	assert_int_equal(vca_learn(t, &bad), VP_EINVAL);
	bad = r;
	bad.expires_s = bad.learned_s;
	assert_int_equal(vca_learn(t, &bad), VP_EINVAL);
	/* the same URI again replaces; up to VCA_MAX_FORKS distinct ones */
	assert_int_equal(vca_learn(t, &r), 0);
	assert_int_equal(vca_count(t, NUM), 1);
	for (int i = 1; i < VCA_MAX_FORKS; i++) {
		vca_route_t x = r;
		snprintf(x.uri, sizeof(x.uri), "sips:" NUM "@pbx-%d.example", i);
		assert_int_equal(vca_learn(t, &x), 0);
	}
	vca_route_t x = r;
	snprintf(x.uri, sizeof(x.uri), "sips:" NUM "@one-too-many.example");
	assert_int_equal(vca_learn(t, &x), VP_ESPACE);
	assert_int_equal(vca_forget(t, NUM, "sips:" NUM "@pbx-3.example"), 0);
	assert_int_equal(vca_forget(t, NUM, "sips:" NUM "@pbx-3.example"), VP_ENOTFOUND);
	assert_int_equal(vca_count(t, NUM), VCA_MAX_FORKS - 1);
	vca_table_free(t);
}

/* Two routes: both get the INVITE (one request, two branches); the second answers; the first is CANCELled. */
static void fork_to_two_routes_one_answered(void **state)
{
	vca_table_t *t = table();
	vca_route_t a = route("sip:" NUM "@border-a.example:5061;transport=tls", "dGlja2V0LWE", T0, T0 + LIFE);
	vca_route_t b = route("sip:" NUM "@border-b.example:5061;transport=tls", "dGlja2V0LWI", T0, T0 + LIFE);
	vca_plan_t p;
	vca_call_t *c;
	wire_t w = { 0 };
	vca_hooks_t h = hooks(&w);
	size_t af;
	int st;
	(void)state;
	assert_int_equal(vca_learn(t, &a), 0);
	assert_int_equal(vca_learn(t, &b), 0);
	vca_plan(t, NUM, T0 + DAY, &p);
	assert_false(p.pstn);
	assert_int_equal(p.n, 2);
	assert_int_equal(vca_call_start(&cconf, &p, &h, &c), 0);
	assert_int_equal(w.n, 2);
	osip_message_t *i0 = parse(w.msg[w_find(&w, 0, "INVITE", 0)]), *i1 = parse(w.msg[w_find(&w, 1, "INVITE", 0)]);
	/* one request forked: Call-ID, From tag and CSeq equal (a UAS reached twice can merge them), branches differ */
	assert_string_equal(i0->call_id->number, i1->call_id->number);
	assert_string_equal(from_tag(i0), from_tag(i1));
	assert_string_equal(i0->cseq->number, i1->cseq->number);
	assert_string_not_equal(branch_of(i0), branch_of(i1));
	assert_memory_equal(branch_of(i0), "z9hG4bK", 7);
	/* each fork carries its own route's ticket and goes to its own URI */
	osip_header_t *h0 = NULL, *h1 = NULL;
	assert_true(osip_message_header_get_byname(i0, VCA_TICKET_HEADER, 0, &h0) >= 0);
	assert_true(osip_message_header_get_byname(i1, VCA_TICKET_HEADER, 0, &h1) >= 0);
	assert_string_equal(h0->hvalue, "dGlja2V0LWE");
	assert_string_equal(h1->hvalue, "dGlja2V0LWI");
	assert_string_equal(i0->req_uri->host, "border-a.example");
	assert_string_equal(i1->req_uri->host, "border-b.example");
	osip_body_t *body = NULL;
	assert_true(osip_message_get_body(i0, 0, &body) >= 0 && body && strstr(body->body, "a=crypto:"));
	char *b0 = osip_strdup(branch_of(i0));
	osip_message_free(i0);
	osip_message_free(i1);

	assert_int_equal(feed(c, &w, 1, 180), 0);
	assert_int_equal(vca_call_outcome(c, NULL, NULL), VCA_O_PENDING);
	assert_int_equal(feed(c, &w, 1, 200), 0);
	assert_int_equal(vca_call_outcome(c, &af, &st), VCA_O_ANSWERED);
	assert_int_equal(af, 1);
	assert_int_equal(st, 200);
	/* the 2xx is ACKed to its Contact through its Record-Route; the other fork is CANCELled on its branch */
	int ai = w_find(&w, 1, "ACK", 0), ci = w_find(&w, 0, "CANCEL", 0);
	assert_true(ai >= 0 && ci >= 0);
	osip_message_t *ack = parse(w.msg[ai]), *can = parse(w.msg[ci]);
	assert_string_equal(ack->req_uri->username, "uas1");
	osip_route_t *rt = osip_list_get(&ack->routes, 0);
	assert_non_null(rt);
	assert_string_equal(rt->url->host, "border-b.example");
	assert_string_equal(branch_of(can), b0);
	assert_string_equal(can->cseq->method, "CANCEL");
	osip_message_free(ack);
	osip_message_free(can);
	osip_free(b0);
	/* the cancelled fork ends 487: the call stays answered, and no route is marked */
	assert_int_equal(feed(c, &w, 0, 487), 0);
	assert_int_equal(vca_call_outcome(c, &af, NULL), VCA_O_ANSWERED);
	assert_int_equal(af, 1);
	/* hanging up: BYE in the answering fork's dialog (Contact, route set, callee's tag), CSeq 2 */
	assert_int_equal(vca_call_hangup(c), 0);
	assert_int_equal(vca_call_hangup(c), VP_ESTATE);
	int bi = w_find(&w, 1, "BYE", 0);
	assert_true(bi >= 0);
	assert_int_equal(w_find(&w, 0, "BYE", 0), -1);
	osip_message_t *bye = parse(w.msg[bi]);
	assert_string_equal(bye->req_uri->username, "uas1");
	assert_string_equal(bye->cseq->number, "2");
	assert_non_null(osip_list_get(&bye->routes, 0));
	osip_generic_param_t *tp = NULL;
	assert_int_equal(osip_to_get_tag(bye->to, &tp), 0);
	assert_string_equal(tp->gvalue, "callee-1");
	osip_message_free(bye);
	vca_call_report(c, t, T0 + DAY);
	vca_plan(t, NUM, T0 + DAY + 1, &p);
	assert_int_equal(p.n, 2);
	vca_call_free(c);
	w_free(&w);
	vca_table_free(t);
}

/* Two routes reach the same UAS: it answers the second copy 482 (merged request); the first is the call. */
static void merged_request_duplicate_is_dropped(void **state)
{
	vca_table_t *t = table();
	vca_route_t a = route("sip:" NUM "@192.0.2.7:5061;transport=tls", "dA", T0, T0 + LIFE);
	vca_route_t b = route("sip:" NUM "@pbx.carrier-a.example:5061;transport=tls", "dB", T0, T0 + LIFE);
	vca_plan_t p;
	vca_call_t *c;
	wire_t w = { 0 };
	vca_hooks_t h = hooks(&w);
	(void)state;
	vca_learn(t, &a);
	vca_learn(t, &b);
	vca_plan(t, NUM, T0 + 10, &p);
	assert_int_equal(vca_call_start(&cconf, &p, &h, &c), 0);
	assert_int_equal(feed(c, &w, 1, 482), 0);
	assert_int_equal(vca_call_outcome(c, NULL, NULL), VCA_O_PENDING); /* not a failure: the other copy is the call */
	assert_true(w_find(&w, 1, "ACK", 0) >= 0);                        /* a non-2xx final is ACKed hop by hop */
	assert_int_equal(feed(c, &w, 0, 200), 0);
	assert_int_equal(vca_call_outcome(c, NULL, NULL), VCA_O_ANSWERED);
	vca_call_report(c, t, T0 + 20);
	vca_plan(t, NUM, T0 + 21, &p);
	assert_int_equal(p.n, 2); /* neither route was marked */
	vca_call_free(c);
	w_free(&w);
	vca_table_free(t);
}

/* One route, one final response: the outcome and what becomes of the route. */
static void one_response(int status, vca_outcome_t want, size_t routes_after, bool usable_after)
{
	vca_table_t *t = table();
	vca_route_t a = route("sip:" NUM "@border-a.example:5061;transport=tls", "dA", T0, T0 + LIFE);
	vca_plan_t p;
	vca_call_t *c;
	wire_t w = { 0 };
	vca_hooks_t h = hooks(&w);
	uint64_t now = T0 + DAY;
	vca_learn(t, &a);
	vca_plan(t, NUM, now, &p);
	assert_false(p.pstn);
	if (status == -1)
		w.fail[0] = true; /* connection refused */
	assert_int_equal(vca_call_start(&cconf, &p, &h, &c), 0);
	if (status > 0)
		assert_int_equal(feed(c, &w, 0, status), 0);
	else if (status == 0)
		vca_call_fork_failed(c, 0); /* no final response before the timer */
	if (vca_call_outcome(c, NULL, NULL) != want)
		fail_msg("status %d: outcome %s, want %s", status, vca_outcome_str(vca_call_outcome(c, NULL, NULL)),
		         vca_outcome_str(want));
	vca_call_report(c, t, now);
	if (vca_count(t, NUM) != routes_after)
		fail_msg("status %d: %zu routes after, want %zu", status, vca_count(t, NUM), routes_after);
	vca_plan(t, NUM, now + 1, &p);
	if (p.pstn == usable_after)
		fail_msg("status %d: route %s right after, want %s", status, p.pstn ? "unusable" : "usable",
		         usable_after ? "usable" : "unusable");
	if (routes_after && !usable_after) {
		/* down now, not forever: tried again after down_s */
		vca_plan(t, NUM, now + VCA_DOWN_S_DEFAULT, &p);
		if (p.pstn)
			fail_msg("status %d: route still down after %u s", status, VCA_DOWN_S_DEFAULT);
	}
	vca_call_free(c);
	w_free(&w);
	vca_table_free(t);
}

static void fallback_on_each_route_down_response(void **state)
{
	/* route down now: PSTN for this call, the route skipped for down_s, then tried again */
	static const int down[] = { -1, 0, 408, 500, 502, 503, 504, 513, 580, 302, 305, 400, 401, 407, 415, 420, 423,
	                            429, 491, 493, 599, 607 };
	(void)state;
	for (size_t i = 0; i < sizeof(down) / sizeof(down[0]); i++) {
		assert_int_equal(vca_classify(down[i] < 0 ? 0 : down[i]), VCA_C_DOWN);
		one_response(down[i], VCA_O_PSTN, 1, false);
	}
}

static void fallback_and_forget_on_each_forget_response(void **state)
{
	static const int forget[] = { 403, 404, 410, 484, 501, 505, 604 };
	(void)state;
	for (size_t i = 0; i < sizeof(forget) / sizeof(forget[0]); i++) {
		assert_int_equal(vca_classify(forget[i]), VCA_C_FORGET);
		one_response(forget[i], VCA_O_PSTN, 0, false);
	}
}

static void media_refusal_falls_back_and_keeps_the_route(void **state)
{
	(void)state;
	one_response(488, VCA_O_PSTN, 1, true);
	one_response(606, VCA_O_PSTN, 1, true);
}

static void callee_answers_are_final_without_fallback(void **state)
{
	static const int callee[] = { 480, 486, 487, 600, 603 };
	(void)state;
	for (size_t i = 0; i < sizeof(callee) / sizeof(callee[0]); i++)
		one_response(callee[i], VCA_O_CALLEE, 1, true);
	one_response(200, VCA_O_ANSWERED, 1, true);
}

/* Two routes: one down (503), the other answers: no fallback, the down one skipped next time. */
static void one_route_down_other_answers(void **state)
{
	vca_table_t *t = table();
	vca_route_t a = route("sip:" NUM "@border-a.example:5061;transport=tls", "dA", T0, T0 + LIFE);
	vca_route_t b = route("sip:" NUM "@border-b.example:5061;transport=tls", "dB", T0, T0 + LIFE);
	vca_plan_t p;
	vca_call_t *c;
	wire_t w = { 0 };
	vca_hooks_t h = hooks(&w);
	(void)state;
	vca_learn(t, &a);
	vca_learn(t, &b);
	vca_plan(t, NUM, T0 + 100, &p);
	assert_int_equal(vca_call_start(&cconf, &p, &h, &c), 0);
	assert_int_equal(feed(c, &w, 0, 503), 0);
	assert_int_equal(vca_call_outcome(c, NULL, NULL), VCA_O_PENDING);
	assert_int_equal(feed(c, &w, 1, 200), 0);
	assert_int_equal(vca_call_outcome(c, NULL, NULL), VCA_O_ANSWERED);
	vca_call_report(c, t, T0 + 100);
	vca_plan(t, NUM, T0 + 101, &p);
	assert_false(p.pstn);
	assert_int_equal(p.n, 1);
	assert_string_equal(p.routes[0].uri, b.uri);
	vca_call_free(c);
	w_free(&w);

	/* 603 on one fork speaks for the callee: the other fork is CANCELled, no fallback */
	vca_plan(t, NUM, T0 + 100 + VCA_DOWN_S_DEFAULT, &p);
	assert_int_equal(p.n, 2);
	assert_int_equal(vca_call_start(&cconf, &p, &h, &c), 0);
	assert_int_equal(feed(c, &w, 0, 603), 0);
	assert_int_equal(vca_call_outcome(c, NULL, NULL), VCA_O_CALLEE);
	assert_true(w_find(&w, 1, "CANCEL", 0) >= 0);
	vca_call_free(c);
	w_free(&w);
	vca_table_free(t);
}

/* Responses that are not this fork's, or not SIP, change nothing. */
static void foreign_responses_ignored(void **state)
{
	vca_table_t *t = table();
	vca_route_t a = route("sip:" NUM "@border-a.example:5061;transport=tls", "dA", T0, T0 + LIFE);
	vca_route_t b = route("sip:" NUM "@border-b.example:5061;transport=tls", "dB", T0, T0 + LIFE);
	vca_plan_t p;
	vca_call_t *c;
	wire_t w = { 0 };
	vca_hooks_t h = hooks(&w);
	(void)state;
	vca_learn(t, &a);
	vca_learn(t, &b);
	vca_plan(t, NUM, T0 + 100, &p);
	assert_int_equal(vca_call_start(&cconf, &p, &h, &c), 0);
	char *r = answer(&w, 0, 200);
	/* fork 0's 200 arriving on fork 1's connection: not fork 1's branch */
	assert_int_equal(vca_call_input(c, 1, r, strlen(r)), VP_EMALFORMED);
	assert_int_equal(vca_call_outcome(c, NULL, NULL), VCA_O_PENDING);
	assert_int_equal(vca_call_input(c, 0, "garbage\r\n\r\n", 11), VP_EMALFORMED);
	assert_int_equal(vca_call_outcome(c, NULL, NULL), VCA_O_PENDING);
	assert_int_equal(vca_call_input(c, 0, r, strlen(r)), 0);
	assert_int_equal(vca_call_outcome(c, NULL, NULL), VCA_O_ANSWERED);
	free(r);
	vca_call_free(c);
	w_free(&w);
	vca_table_free(t);
}

/* A certificate route: no ticket header (the transport presents the certificate). */
static void certificate_route_sends_no_ticket(void **state)
{
	vca_table_t *t = table();
	vca_route_t a = route("sip:" NUM "@border-a.example:5061;transport=tls", NULL, T0, T0 + DAY);
	vca_plan_t p;
	vca_call_t *c;
	wire_t w = { 0 };
	vca_hooks_t h = hooks(&w);
	osip_header_t *hd = NULL;
	(void)state;
	assert_int_equal(vca_learn(t, &a), 0);
	vca_plan(t, NUM, T0 + 100, &p);
	assert_int_equal(p.n, 1);
	assert_int_equal(vca_call_start(&cconf, &p, &h, &c), 0);
	osip_message_t *m = parse(w.msg[0]);
	assert_true(osip_message_header_get_byname(m, VCA_TICKET_HEADER, 0, &hd) < 0);
	osip_message_free(m);
	vca_call_free(c);
	w_free(&w);
	vca_table_free(t);
}

/*
 * Renewal (clock injected): calls go over SIP for the first 90 % of a 30-day route; in the last tenth one
 * call goes over the PSTN (the renewal), the next ones over SIP again; the re-validation's new route
 * arrives before the old one expires, and calls after the old expiry still go over SIP: no gap.  Without
 * the new route the number falls back to the PSTN at expiry (the control that shows the gap is real).
 */
static void renewal_before_expiry_without_gap(void **state)
{
	vca_table_t *t = table();
	vca_route_t a = route("sip:" NUM "@border-a.example:5061;transport=tls", "old", T0, T0 + LIFE);
	vca_plan_t p;
	(void)state;
	assert_int_equal(vca_learn(t, &a), 0);
	for (uint64_t d = 0; d < 27; d++) { /* days 0..26: before the window (it opens at day 27) */
		vca_plan(t, NUM, T0 + d * DAY + 3600, &p);
		assert_false(p.pstn);
	}
	uint64_t w0 = T0 + LIFE - LIFE / 10; /* day 27 */
	vca_plan(t, NUM, w0 - 1, &p);
	assert_false(p.pstn);
	vca_plan(t, NUM, w0, &p);
	assert_true(p.pstn);
	assert_true(p.renewal);
	/* one renewal call: the next calls use the route again */
	vca_plan(t, NUM, w0 + 60, &p);
	assert_false(p.pstn);
	assert_int_equal(p.n, 1);
	vca_plan(t, NUM, w0 + VCA_RENEW_RETRY_S_DEFAULT - 1, &p);
	assert_false(p.pstn);
	/* no new route within renew_retry: one more renewal call */
	vca_plan(t, NUM, w0 + VCA_RENEW_RETRY_S_DEFAULT, &p);
	assert_true(p.pstn && p.renewal);

	/* the control: a copy of the table that never gets the new route falls to the PSTN at expiry */
	vca_table_t *t2 = table();
	vca_learn(t2, &a);
	vca_plan(t2, NUM, T0 + LIFE, &p);
	assert_true(p.pstn);
	assert_false(p.renewal);
	vca_table_free(t2);

	/* the validation that the renewal call caused brings a new route (same URI, new ticket, new expiry) */
	uint64_t v = w0 + 2 * 3600;
	vca_route_t a2 = route(a.uri, "new", v, v + LIFE);
	assert_int_equal(vca_learn(t, &a2), 0);
	for (uint64_t s = v; s < T0 + LIFE + 3 * DAY; s += 3600) { /* across the old expiry, hour by hour */
		vca_plan(t, NUM, s, &p);
		if (p.pstn)
			fail_msg("PSTN at %+lld s from the old expiry: a gap", (long long)(s - (T0 + LIFE)));
		assert_string_equal(p.routes[0].ticket, "new");
	}
	/* and the new route has its own renewal window, at 90 % of its own life */
	vca_plan(t, NUM, v + LIFE - LIFE / 10, &p);
	assert_true(p.pstn && p.renewal);
	vca_table_free(t);
}

/* A route at its expiry is dropped, and the number goes over the PSTN. */
static void expired_routes_are_dropped(void **state)
{
	vca_table_t *t = table();
	vca_route_t a = route("sip:" NUM "@border-a.example:5061;transport=tls", "dA", T0, T0 + 3600);
	vca_plan_t p;
	(void)state;
	vca_learn(t, &a);
	vca_plan(t, NUM, T0 + 3600, &p);
	assert_true(p.pstn);
	assert_int_equal(vca_count(t, NUM), 0);
	vca_table_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(learn_checks_its_input),
		cmocka_unit_test(fork_to_two_routes_one_answered),
		cmocka_unit_test(merged_request_duplicate_is_dropped),
		cmocka_unit_test(fallback_on_each_route_down_response),
		cmocka_unit_test(fallback_and_forget_on_each_forget_response),
		cmocka_unit_test(media_refusal_falls_back_and_keeps_the_route),
		cmocka_unit_test(callee_answers_are_final_without_fallback),
		cmocka_unit_test(one_route_down_other_answers),
		cmocka_unit_test(foreign_responses_ignored),
		cmocka_unit_test(certificate_route_sends_no_ticket),
		cmocka_unit_test(renewal_before_expiry_without_gap),
		cmocka_unit_test(expired_routes_are_dropped),
	};
	parser_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
