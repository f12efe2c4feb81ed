/*
 * tests/control/border/test_border_proxy.c - the border engine on whole SIP messages, no sockets:
 * what it forwards, rewrites, answers and refuses, with attackers that win if a check is missing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/errcode.h"
#include "control/border/border.h"
#include "pvp/ticket.h"

#define NOW_S 1800000000ull
#define CONN_B 0x100000001ull /* carrier-b's connection */
#define CONN_A 0x100000002ull
#define MAX_SENT 16

typedef struct sent {
	uint64_t conn;
	char text[8192];
} sent_t;

typedef struct fixture {
	pvp_ticket_keys_t keys;
	vb_proxy_t *px;
	sent_t sent[MAX_SENT];
	int nsent;
	bool inside_up;
	char ticket[PVP_TICKET_B64_MAX];
	int nconnect;
	char connect_host[64];
	uint16_t connect_port;
} fixture_t;

#define CONN_OUT 0x100000009ull /* the connection the engine asks for when calling out */
#define CONN_AGENT (VB_CONN_INSIDE_BIT | 0x100000005ull)

static int cap_connect(void *ctx, const char *host, uint16_t port, uint64_t *conn)
{
	fixture_t *f = ctx;
	f->nconnect++;
	snprintf(f->connect_host, sizeof(f->connect_host), "%s", host);
	f->connect_port = port;
	*conn = CONN_OUT;
	return 0;
}

static bool cap_send(void *ctx, uint64_t conn, const char *buf, size_t len)
{
	fixture_t *f = ctx;
	assert_true(f->nsent < MAX_SENT);
	assert_true(len < sizeof(f->sent[0].text));
	f->sent[f->nsent].conn = conn;
	memcpy(f->sent[f->nsent].text, buf, len);
	f->sent[f->nsent].text[len] = '\0';
	f->nsent++;
	return true;
}

static bool cap_up(void *ctx)
{
	return ((fixture_t *)ctx)->inside_up;
}

static void make_ticket(fixture_t *f, const char *number, const char *domain, uint8_t flags, char *out)
{
	pvp_ticket_t t = {0};
	t.flags = flags;
	t.issued = (uint32_t)NOW_S - 10;
	t.expires = (uint32_t)NOW_S + 3600;
	snprintf(t.number, sizeof(t.number), "%s", number);
	snprintf(t.domain, sizeof(t.domain), "%s", domain);
	uint8_t bin[PVP_TICKET_MAX];
	size_t n;
	assert_int_equal(pvp_ticket_issue(&f->keys, &t, bin, sizeof(bin), &n), 0);
	assert_int_equal(pvp_b64url_encode(bin, n, out, PVP_TICKET_B64_MAX), 0);
}

static int setup_with(void **state, int refuse_status)
{
	fixture_t *f = calloc(1, sizeof(*f));
	f->keys.cur.epoch = 3;
	f->keys.cur.len = 32;
	memset(f->keys.cur.key, 0x5a, 32);
	f->inside_up = true;
	vb_proxy_conf_t c;
	vb_proxy_conf_defaults(&c);
	c.refuse_status = refuse_status;
	snprintf(c.outside_uri, sizeof(c.outside_uri), "sip:border.example:5061;transport=tls");
	snprintf(c.inside_uri, sizeof(c.inside_uri), "sip:10.0.0.2:5070;transport=tcp");
	vb_hooks_t h = {.send = cap_send, .inside_up = cap_up, .ctx = f, .connect = cap_connect};
	assert_int_equal(vb_proxy_new(&c, &f->keys, &h, &f->px), 0);
	make_ticket(f, "+14085551234", "carrier-b.example", PVP_TICKET_F_ROUTES, f->ticket);
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_with(state, 403);
}

static int setup_drop(void **state)
{
	return setup_with(state, 0);
}

static int teardown(void **state)
{
	fixture_t *f = *state;
	vb_proxy_free(f->px);
	free(f);
	return 0;
}

static const char SRTP_SDP[] = "v=0\r\no=a 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
                               "m=audio 4000 RTP/SAVP 0\r\n"
                               "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n";
static const char PLAIN_SDP[] = "v=0\r\no=a 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
                                "m=audio 4000 RTP/AVP 0\r\n";

/* An INVITE from the outside; \p ticket_hdr is a whole header line or "". */
static int invite(fixture_t *f, uint64_t conn, const char *domain, const char *callid, const char *ticket_hdr,
                  const char *sdp, vb_verdict_t *v)
{
	char msg[8192];
	int n = snprintf(msg, sizeof(msg),
	                 "INVITE sip:+1-408-555-1234@border.example SIP/2.0\r\n"
	                 "Via: SIP/2.0/TLS 198.51.100.7:5061;branch=z9hG4bK-c1\r\n"
	                 "From: <sip:alice@carrier-b.example>;tag=caller1\r\n"
	                 "To: <sip:+14085551234@border.example>\r\n"
	                 "Call-ID: %s\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
	                 "Contact: <sip:alice@198.51.100.7:5061;transport=tls>\r\n%s"
	                 "%sContent-Length: %zu\r\n\r\n%s",
	                 callid, ticket_hdr, sdp[0] ? "Content-Type: application/sdp\r\n" : "", strlen(sdp), sdp);
	return vb_proxy_input(f->px, conn, domain, msg, (size_t)n, NOW_S * 1000, v);
}

static char *ticket_hdr(fixture_t *f, const char *name)
{
	static char h[PVP_TICKET_B64_MAX + 64];
	snprintf(h, sizeof(h), "%s: %s\r\n", name, f->ticket);
	return h;
}

/* The inside answer to the INVITE the engine forwarded as sent[idx]. */
static int answer(fixture_t *f, int idx, int status, const char *sdp, vb_verdict_t *v)
{
	const char *fw = f->sent[idx].text;
	const char *via = strstr(fw, "Via: SIP/2.0/TCP 10.0.0.2:5070;branch=");
	assert_non_null(via);
	char ourvia[200];
	sscanf(via, "Via: %199[^\r]", ourvia);
	char msg[8192];
	int n = snprintf(msg, sizeof(msg),
	                 "SIP/2.0 %d X\r\nVia: %s\r\nVia: SIP/2.0/TLS 198.51.100.7:5061;branch=z9hG4bK-c1\r\n"
	                 "From: <sip:alice@carrier-b.example>;tag=caller1\r\n"
	                 "To: <sip:+14085551234@border.example>;tag=callee1\r\n"
	                 "Call-ID: call-1\r\nCSeq: 1 INVITE\r\nContact: <sip:agent@10.0.0.9:5060>\r\n"
	                 "%sContent-Length: %zu\r\n\r\n%s",
	                 status, ourvia, sdp[0] ? "Content-Type: application/sdp\r\n" : "", strlen(sdp), sdp);
	return vb_proxy_input(f->px, VB_CONN_INSIDE, NULL, msg, (size_t)n, NOW_S * 1000, v);
}

static int in_dialog(fixture_t *f, uint64_t conn, const char *domain, const char *method, int cseq, const char *sdp,
                     vb_verdict_t *v)
{
	char msg[8192];
	int n = snprintf(msg, sizeof(msg),
	                 "%s sip:agent@10.0.0.9:5060 SIP/2.0\r\n"
	                 "Via: SIP/2.0/TLS 198.51.100.7:5061;branch=z9hG4bK-d%d\r\n"
	                 "Route: <sip:border.example:5061;transport=tls;lr>\r\n"
	                 "Route: <sip:10.0.0.2:5070;transport=tcp;lr>\r\n"
	                 "From: <sip:alice@carrier-b.example>;tag=caller1\r\n"
	                 "To: <sip:+14085551234@border.example>;tag=callee1\r\n"
	                 "Call-ID: call-1\r\nCSeq: %d %s\r\nMax-Forwards: 70\r\n"
	                 "%sContent-Length: %zu\r\n\r\n%s",
	                 method, cseq, cseq, method, sdp[0] ? "Content-Type: application/sdp\r\n" : "", strlen(sdp), sdp);
	return vb_proxy_input(f->px, conn, domain, msg, (size_t)n, NOW_S * 1000, v);
}

static void admitted_invite_is_rewritten_for_the_inside(void **state)
{
	fixture_t *f = *state;
	vb_verdict_t v;
	assert_int_equal(invite(f, CONN_B, "carrier-b.example", "call-1", ticket_hdr(f, "X-ViPR-Ticket"), SRTP_SDP, &v), 0);
	assert_int_equal(v.reason, VB_R_OK);
	assert_true(v.admitted && v.forwarded);
	assert_int_equal(f->nsent, 1);
	assert_int_equal(f->sent[0].conn, VB_CONN_INSIDE);
	const char *t = f->sent[0].text;
	assert_null(strcasestr(t, "ViPR-Ticket"));
	/* our Via on top, then the caller's; both Record-Routes, the inside one first (the callee's next hop) */
	const char *ours = strstr(t, "Via: SIP/2.0/TCP 10.0.0.2:5070;branch=z9hG4bKvb");
	const char *theirs = strstr(t, "Via: SIP/2.0/TLS 198.51.100.7:5061;branch=z9hG4bK-c1");
	assert_non_null(ours);
	assert_non_null(theirs);
	assert_true(ours < theirs);
	const char *rr_in = strstr(t, "<sip:10.0.0.2:5070;transport=tcp;lr>");
	const char *rr_out = strstr(t, "<sip:border.example:5061;transport=tls;lr>");
	assert_non_null(rr_in);
	assert_non_null(rr_out);
	assert_true(rr_in < rr_out);
	assert_non_null(strcasestr(t, "Max-Forwards: 69"));
	assert_int_equal(vb_proxy_dialogs(f->px), 1);
}

static void answer_goes_back_to_the_caller_without_our_via(void **state)
{
	fixture_t *f = *state;
	vb_verdict_t v;
	invite(f, CONN_B, "carrier-b.example", "call-1", ticket_hdr(f, "X-Cisco-ViPR-Ticket"), SRTP_SDP, &v);
	assert_true(v.admitted);
	assert_int_equal(answer(f, 0, 200, SRTP_SDP, &v), 0);
	assert_true(v.forwarded);
	assert_int_equal(f->nsent, 2);
	assert_int_equal(f->sent[1].conn, CONN_B);
	assert_null(strstr(f->sent[1].text, "z9hG4bKvb"));
	assert_non_null(strstr(f->sent[1].text, "SIP/2.0 200"));
	/* and the dialog now carries the caller's BYE */
	assert_int_equal(in_dialog(f, CONN_B, "carrier-b.example", "BYE", 2, "", &v), 0);
	assert_true(v.forwarded);
	assert_int_equal(f->sent[2].conn, VB_CONN_INSIDE);
	assert_null(strstr(f->sent[2].text, "Route:")); /* our own Route entries are consumed */
}

static void refusals_per_ticket_check(void **state)
{
	fixture_t *f = *state;
	vb_verdict_t v;
	invite(f, CONN_B, "carrier-b.example", "c-none", "", SRTP_SDP, &v);
	assert_int_equal(v.reason, VB_R_NO_TICKET);
	assert_int_equal(v.status, 403);
	invite(f, CONN_A, "carrier-a.example", "c-dom", ticket_hdr(f, "X-ViPR-Ticket"), SRTP_SDP, &v);
	assert_int_equal(v.reason, VB_R_TICKET);
	assert_int_equal(v.ticket, PVP_TR_WRONG_DOMAIN);
	make_ticket(f, "+14085551234", "carrier-b.example", 0, f->ticket); /* pending: no routes flag */
	invite(f, CONN_B, "carrier-b.example", "c-pend", ticket_hdr(f, "X-ViPR-Ticket"), SRTP_SDP, &v);
	assert_int_equal(v.ticket, PVP_TR_NO_ROUTES);
	make_ticket(f, "+14085559999", "carrier-b.example", PVP_TICKET_F_ROUTES, f->ticket);
	invite(f, CONN_B, "carrier-b.example", "c-num", ticket_hdr(f, "X-ViPR-Ticket"), SRTP_SDP, &v);
	assert_int_equal(v.ticket, PVP_TR_WRONG_NUMBER);
	/* nothing reached the inside; every refusal answered 403 on the caller's connection */
	for (int i = 0; i < f->nsent; i++) {
		assert_int_equal(f->sent[i].conn, i == 1 ? CONN_A : CONN_B);
		assert_non_null(strstr(f->sent[i].text, "SIP/2.0 403"));
	}
	assert_int_equal(f->nsent, 4);
	assert_int_equal(vb_proxy_dialogs(f->px), 0);
}

/* A ticketless INVITE with a ViPR client certificate's grant (§6.1, §7.1): validity to the second, number, From host. */
static int cert_invite(fixture_t *f, const pvp_cc_identity_t *cc, const char *callid, uint64_t now_s, vb_verdict_t *v)
{
	char msg[8192];
	int n = snprintf(msg, sizeof(msg),
	                 "INVITE sip:+1-408-555-1234@border.example SIP/2.0\r\n"
	                 "Via: SIP/2.0/TLS 198.51.100.7:5061;branch=z9hG4bK-%s\r\n"
	                 "From: <sip:alice@carrier-b.example>;tag=caller1\r\n"
	                 "To: <sip:+14085551234@border.example>\r\n"
	                 "Call-ID: %s\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
	                 "Contact: <sip:alice@198.51.100.7:5061;transport=tls>\r\n"
	                 "Content-Type: application/sdp\r\nContent-Length: %zu\r\n\r\n%s",
	                 callid, callid, strlen(SRTP_SDP), SRTP_SDP);
	return vb_proxy_input_cc(f->px, CONN_B, "carrier-b.example", cc, msg, (size_t)n, now_s * 1000, v);
}

static void client_certificate_admission(void **state)
{
	fixture_t *f = *state;
	vb_verdict_t v;
	pvp_cc_identity_t cc = { .number = "+14085551234", .domain = "carrier-b.example",
	                         .not_before_s = NOW_S - 60, .not_after_s = NOW_S + 600 };
	assert_int_equal(cert_invite(f, &cc, "cc-ok", NOW_S, &v), 0);
	assert_true(v.admitted);
	assert_int_equal(cert_invite(f, &cc, "cc-last", NOW_S + 600, &v), 0); /* the last second */
	assert_true(v.admitted);
	assert_int_equal(cert_invite(f, &cc, "cc-late", NOW_S + 601, &v), 0);
	assert_int_equal(v.reason, VB_R_CERT_EXPIRED);
	assert_int_equal(cert_invite(f, &cc, "cc-early", NOW_S - 61, &v), 0);
	assert_int_equal(v.reason, VB_R_CERT_EXPIRED);
	pvp_cc_identity_t other = cc;
	snprintf(other.number, sizeof(other.number), "+14085559999");
	assert_int_equal(cert_invite(f, &other, "cc-num", NOW_S, &v), 0);
	assert_int_equal(v.reason, VB_R_CERT_NUMBER);
	snprintf(other.number, sizeof(other.number), "+14085551234");
	snprintf(other.domain, sizeof(other.domain), "carrier-a.example");
	assert_int_equal(cert_invite(f, &other, "cc-dom", NOW_S, &v), 0);
	assert_int_equal(v.reason, VB_R_CERT_DOMAIN);
	snprintf(other.domain, sizeof(other.domain), "b.example"); /* carrier-b.example is not under b.example */
	assert_int_equal(cert_invite(f, &other, "cc-suffix", NOW_S, &v), 0);
	assert_int_equal(v.reason, VB_R_CERT_DOMAIN);
	/* without a certificate the same INVITE is no-ticket; the tokens are the metric labels */
	assert_int_equal(cert_invite(f, NULL, "cc-none", NOW_S, &v), 0);
	assert_int_equal(v.reason, VB_R_NO_TICKET);
	assert_string_equal(vb_reason_str(VB_R_CERT_EXPIRED), "cert-expired");
	assert_string_equal(vb_reason_str(VB_R_CERT_NUMBER), "cert-wrong-number");
	assert_string_equal(vb_reason_str(VB_R_CERT_DOMAIN), "cert-wrong-domain");
	assert_int_equal(vb_proxy_dialogs(f->px), 2);
}

static void verdict_tokens_match_ticket_reasons(void **state)
{
	(void)state;
	for (int r = PVP_TR_OK; r <= PVP_TR_NO_ROUTES; r++) {
		vb_verdict_t v = {.reason = VB_R_TICKET, .ticket = (pvp_ticket_reason_t)r};
		char want[64];
		snprintf(want, sizeof(want), "ticket-%s", pvp_ticket_reason_str((pvp_ticket_reason_t)r));
		assert_string_equal(vb_verdict_str(&v), want);
	}
}

static void plain_offer_gets_488(void **state)
{
	fixture_t *f = *state;
	vb_verdict_t v;
	invite(f, CONN_B, "carrier-b.example", "call-1", ticket_hdr(f, "X-ViPR-Ticket"), PLAIN_SDP, &v);
	assert_int_equal(v.reason, VB_R_NO_SRTP);
	assert_int_equal(v.status, 488);
	assert_int_equal(f->nsent, 1);
	assert_int_equal(f->sent[0].conn, CONN_B);
}

/* An offerless INVITE whose 2xx offers plain RTP: the caller gets 488, the call agent ACK + BYE. */
static void offerless_invite_plain_answer_is_killed(void **state)
{
	fixture_t *f = *state;
	vb_verdict_t v;
	invite(f, CONN_B, "carrier-b.example", "call-1", ticket_hdr(f, "X-ViPR-Ticket"), "", &v);
	assert_true(v.admitted);
	answer(f, 0, 200, PLAIN_SDP, &v);
	assert_int_equal(v.reason, VB_R_NO_SRTP);
	assert_int_equal(f->nsent, 4);
	assert_int_equal(f->sent[1].conn, VB_CONN_INSIDE);
	assert_true(strncmp(f->sent[1].text, "ACK sip:agent@10.0.0.9:5060 SIP/2.0", 35) == 0);
	assert_int_equal(f->sent[2].conn, VB_CONN_INSIDE);
	assert_true(strncmp(f->sent[2].text, "BYE sip:agent@10.0.0.9:5060 SIP/2.0", 35) == 0);
	assert_int_equal(f->sent[3].conn, CONN_B);
	assert_non_null(strstr(f->sent[3].text, "SIP/2.0 488"));
	assert_null(strstr(f->sent[3].text, "RTP/AVP")); /* the plain offer never leaves */
	/* an SRTP answer would have gone through: */
	f->nsent = 0;
	invite(f, CONN_B, "carrier-b.example", "call-1b", ticket_hdr(f, "X-ViPR-Ticket"), "", &v);
	assert_true(v.admitted);
}

static void downgrading_reinvite_is_refused_and_its_ack_absorbed(void **state)
{
	fixture_t *f = *state;
	vb_verdict_t v;
	invite(f, CONN_B, "carrier-b.example", "call-1", ticket_hdr(f, "X-ViPR-Ticket"), SRTP_SDP, &v);
	answer(f, 0, 200, SRTP_SDP, &v);
	int before = f->nsent;
	in_dialog(f, CONN_B, "carrier-b.example", "INVITE", 2, PLAIN_SDP, &v);
	assert_int_equal(v.reason, VB_R_DOWNGRADE);
	assert_int_equal(v.status, 488);
	assert_int_equal(f->nsent, before + 1);
	assert_int_equal(f->sent[before].conn, CONN_B);
	in_dialog(f, CONN_B, "carrier-b.example", "ACK", 2, "", &v);
	assert_false(v.forwarded);
	assert_int_equal(f->nsent, before + 1);
	/* an SRTP re-INVITE passes */
	in_dialog(f, CONN_B, "carrier-b.example", "INVITE", 3, SRTP_SDP, &v);
	assert_true(v.forwarded);
}

/* Attacker: carrier-a tries to end (or re-INVITE) carrier-b's call by its Call-ID and tags. */
static void other_peer_cannot_touch_a_dialog(void **state)
{
	fixture_t *f = *state;
	vb_verdict_t v;
	invite(f, CONN_B, "carrier-b.example", "call-1", ticket_hdr(f, "X-ViPR-Ticket"), SRTP_SDP, &v);
	answer(f, 0, 200, SRTP_SDP, &v);
	int before = f->nsent;
	in_dialog(f, CONN_A, "carrier-a.example", "BYE", 2, "", &v);
	assert_int_equal(v.reason, VB_R_NO_DIALOG);
	assert_int_equal(f->nsent, before + 1);
	assert_int_equal(f->sent[before].conn, CONN_A);
	/* ...nor forge a response towards the call agent for it */
	char resp[1024];
	int n = snprintf(resp, sizeof(resp),
	                 "SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS border.example:5061;branch=z9hG4bKvb0000000000000000.0000000000000001\r\n"
	                 "Via: SIP/2.0/TCP 10.0.0.9:5060;branch=z9hG4bK-agent\r\n"
	                 "From: <sip:agent@x>;tag=callee1\r\nTo: <sip:alice@carrier-b.example>;tag=caller1\r\n"
	                 "Call-ID: call-1\r\nCSeq: 7 BYE\r\nContent-Length: 0\r\n\r\n");
	vb_proxy_input(f->px, CONN_A, "carrier-a.example", resp, (size_t)n, NOW_S * 1000, &v);
	assert_int_equal(v.reason, VB_R_BAD_RESPONSE);
	assert_int_equal(f->nsent, before + 1);
	/* a stray BYE with no dialog at all */
	in_dialog(f, CONN_B, "carrier-b.example", "BYE", 2, "", &v);
	assert_true(v.forwarded); /* the real peer still can */
}

static void out_of_dialog_methods(void **state)
{
	fixture_t *f = *state;
	vb_verdict_t v;
	const char *opt = "OPTIONS sip:border.example SIP/2.0\r\nVia: SIP/2.0/TLS 198.51.100.7;branch=z9hG4bK-o\r\n"
	                  "From: <sip:b@carrier-b.example>;tag=o1\r\nTo: <sip:border.example>\r\nCall-ID: o\r\n"
	                  "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
	assert_int_equal(vb_proxy_input(f->px, CONN_B, "carrier-b.example", opt, strlen(opt), NOW_S * 1000, &v), 0);
	assert_int_equal(v.status, 200);
	assert_false(v.forwarded);
	const char *msg = "MESSAGE sip:+14085551234@border.example SIP/2.0\r\nVia: SIP/2.0/TLS 198.51.100.7;branch=z9hG4bK-m\r\n"
	                  "From: <sip:b@carrier-b.example>;tag=m1\r\nTo: <sip:+14085551234@border.example>\r\nCall-ID: m\r\n"
	                  "CSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n";
	vb_proxy_input(f->px, CONN_B, "carrier-b.example", msg, strlen(msg), NOW_S * 1000, &v);
	assert_int_equal(v.reason, VB_R_METHOD);
	assert_int_equal(v.status, 403);
	assert_int_equal(vb_proxy_input(f->px, CONN_B, "carrier-b.example", "hello\r\n\r\n", 9, NOW_S * 1000, &v),
	                 VP_EMALFORMED);
}

static void cancel_of_pending_invite_keeps_its_branch(void **state)
{
	fixture_t *f = *state;
	vb_verdict_t v;
	invite(f, CONN_B, "carrier-b.example", "call-1", ticket_hdr(f, "X-ViPR-Ticket"), SRTP_SDP, &v);
	const char *cancel = "CANCEL sip:+1-408-555-1234@border.example SIP/2.0\r\n"
	                     "Via: SIP/2.0/TLS 198.51.100.7:5061;branch=z9hG4bK-c1\r\n"
	                     "From: <sip:alice@carrier-b.example>;tag=caller1\r\nTo: <sip:+14085551234@border.example>\r\n"
	                     "Call-ID: call-1\r\nCSeq: 1 CANCEL\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
	vb_proxy_input(f->px, CONN_B, "carrier-b.example", cancel, strlen(cancel), NOW_S * 1000, &v);
	assert_true(v.forwarded);
	char b1[64], b2[64];
	sscanf(strstr(f->sent[0].text, "branch=z9hG4bKvb"), "branch=%63[^\r;]", b1);
	sscanf(strstr(f->sent[1].text, "branch=z9hG4bKvb"), "branch=%63[^\r;]", b2);
	assert_string_equal(b1, b2);
	/* a CANCEL from another peer, or for another Call-ID, is refused */
	vb_proxy_input(f->px, CONN_A, "carrier-a.example", cancel, strlen(cancel), NOW_S * 1000, &v);
	assert_int_equal(v.reason, VB_R_NO_DIALOG);
}

static void drop_mode_sends_nothing(void **state)
{
	fixture_t *f = *state;
	vb_verdict_t v;
	invite(f, CONN_B, "carrier-b.example", "c-none", "", SRTP_SDP, &v);
	assert_int_equal(v.reason, VB_R_NO_TICKET);
	assert_int_equal(v.status, 0);
	assert_int_equal(f->nsent, 0);
}

static void call_agent_down_gets_503(void **state)
{
	fixture_t *f = *state;
	vb_verdict_t v;
	f->inside_up = false;
	invite(f, CONN_B, "carrier-b.example", "call-1", ticket_hdr(f, "X-ViPR-Ticket"), SRTP_SDP, &v);
	assert_int_equal(v.reason, VB_R_UNAVAILABLE);
	assert_int_equal(v.status, 503);
	assert_int_equal(vb_proxy_dialogs(f->px), 0);
}

static void early_dialog_expires(void **state)
{
	fixture_t *f = *state;
	vb_verdict_t v;
	invite(f, CONN_B, "carrier-b.example", "call-1", ticket_hdr(f, "X-ViPR-Ticket"), SRTP_SDP, &v);
	unsigned n = 0;
	for (int i = 0; i < 10; i++)
		n += vb_proxy_tick(f->px, NOW_S * 1000 + 179000);
	assert_int_equal(n, 0);
	for (int i = 0; i < 10; i++)
		n += vb_proxy_tick(f->px, NOW_S * 1000 + 180000);
	assert_int_equal(n, 1);
	assert_int_equal(vb_proxy_dialogs(f->px), 0);
}

static void exhausted_max_forwards_gets_483(void **state)
{
	fixture_t *f = *state;
	vb_verdict_t v;
	invite(f, CONN_B, "carrier-b.example", "call-1", ticket_hdr(f, "X-ViPR-Ticket"), SRTP_SDP, &v);
	answer(f, 0, 200, SRTP_SDP, &v);
	char msg[1024];
	int n = snprintf(msg, sizeof(msg),
	                 "BYE sip:agent@10.0.0.9:5060 SIP/2.0\r\nVia: SIP/2.0/TLS 198.51.100.7:5061;branch=z9hG4bK-l\r\n"
	                 "From: <sip:alice@carrier-b.example>;tag=caller1\r\nTo: <sip:x@border.example>;tag=callee1\r\n"
	                 "Call-ID: call-1\r\nCSeq: 2 BYE\r\nMax-Forwards: 0\r\nContent-Length: 0\r\n\r\n");
	int before = f->nsent;
	vb_proxy_input(f->px, CONN_B, "carrier-b.example", msg, (size_t)n, NOW_S * 1000, &v);
	assert_int_equal(v.reason, VB_R_LOOP);
	assert_int_equal(v.status, 483);
	assert_int_equal(f->nsent, before + 1);
	assert_int_equal(f->sent[before].conn, CONN_B);
}

/* Framing reads only the bytes it is given: a heap copy without a NUL (ASan builds catch an overread). */
static void frame_stays_inside_its_input(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		int rc;
		size_t total;
	} cases[] = {
		{"BYE x SIP/2.0\r\nContent-Length:  \r\n\r\n", VP_EMALFORMED, 0}, /* empty value: was strtol past the end */
		{"BYE x SIP/2.0\r\nl: 3\r\n\r\nabc", 1, 26},
		{"BYE x SIP/2.0\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", VP_EMALFORMED, 0},
		{"BYE x SIP/2.0\r\nContent-Length: 99999999999999999999\r\n\r\n", VP_ETOOBIG, 0},
		{"BYE x SIP/2.0\r\nContent-Length: 4\r\n\r\nabc", 0, 0},
		{"BYE x SIP/2.0\r\nContent-Length: -1\r\n\r\n", VP_EMALFORMED, 0},
		{"BYE x SIP/2.0\r\nContent-Length: 1x\r\n\r\nab", VP_EMALFORMED, 0},
		{"BYE x SIP/2.0\r\nVia: y\r\n\r\n", VP_EMALFORMED, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len = strlen(cases[i].text);
		char *b = malloc(len);
		memcpy(b, cases[i].text, len);
		size_t total = 0;
		assert_int_equal(vb_sip_frame(b, len, 16384, &total), cases[i].rc);
		if (cases[i].rc == 1)
			assert_int_equal(total, cases[i].total);
		free(b);
	}
}

static int egress_invite(fixture_t *f, const char *sdp, vb_verdict_t *v)
{
	char msg[4096];
	int n = snprintf(msg, sizeof(msg),
	                 "INVITE sip:+14085550100@192.0.2.50:5071 SIP/2.0\r\n"
	                 "Via: SIP/2.0/TCP 10.0.0.9:5060;branch=z9hG4bK-e1\r\n"
	                 "From: <sip:agent@carrier-b.example>;tag=ag1\r\nTo: <sip:+14085550100@carrier-a.example>\r\n"
	                 "Call-ID: out-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:agent@10.0.0.9:5060>\r\n"
	                 "%sContent-Length: %zu\r\n\r\n%s",
	                 sdp[0] ? "Content-Type: application/sdp\r\n" : "", strlen(sdp), sdp);
	return vb_proxy_input(f->px, CONN_AGENT, NULL, msg, (size_t)n, NOW_S * 1000, v);
}

static int egress_answer(fixture_t *f, uint64_t conn, int status, const char *sdp, vb_verdict_t *v)
{
	const char *via = strstr(f->sent[0].text, "Via: SIP/2.0/TLS border.example:5061;branch=");
	assert_non_null(via);
	char ourvia[200];
	sscanf(via, "Via: %199[^\r]", ourvia);
	char msg[4096];
	int n = snprintf(msg, sizeof(msg),
	                 "SIP/2.0 %d X\r\nVia: %s\r\nVia: SIP/2.0/TCP 10.0.0.9:5060;branch=z9hG4bK-e1\r\n"
	                 "From: <sip:agent@carrier-b.example>;tag=ag1\r\nTo: <sip:+14085550100@carrier-a.example>;tag=ca1\r\n"
	                 "Call-ID: out-1\r\nCSeq: 1 INVITE\r\nContact: <sip:pbx@192.0.2.50:5071;transport=tls>\r\n"
	                 "%sContent-Length: %zu\r\n\r\n%s",
	                 status, ourvia, sdp[0] ? "Content-Type: application/sdp\r\n" : "", strlen(sdp), sdp);
	return vb_proxy_input(f->px, conn, "carrier-a.example", msg, (size_t)n, NOW_S * 1000, v);
}

static void egress_leaves_over_the_connect_hook(void **state)
{
	fixture_t *f = *state;
	vb_verdict_t v;
	assert_int_equal(egress_invite(f, SRTP_SDP, &v), 0);
	assert_true(v.admitted && v.forwarded);
	assert_int_equal(f->nconnect, 1);
	assert_string_equal(f->connect_host, "192.0.2.50");
	assert_int_equal(f->connect_port, 5071);
	assert_int_equal(f->sent[0].conn, CONN_OUT);
	const char *t = f->sent[0].text;
	const char *rr_out = strstr(t, "<sip:border.example:5061;transport=tls;lr>");
	const char *rr_in = strstr(t, "<sip:10.0.0.2:5070;transport=tcp;lr>");
	assert_non_null(rr_out);
	assert_non_null(rr_in);
	assert_true(rr_out < rr_in); /* the callee's first hop back is our outside address */
	/* the 200 comes back to the very agent connection that called */
	egress_answer(f, CONN_OUT, 200, SRTP_SDP, &v);
	assert_true(v.forwarded);
	assert_int_equal(f->sent[1].conn, CONN_AGENT);
	/* the callee's BYE passes, on its connection only */
	const char *bye = "BYE sip:agent@10.0.0.9:5060 SIP/2.0\r\nVia: SIP/2.0/TLS 192.0.2.50:5071;branch=z9hG4bK-cb\r\n"
	                  "From: <sip:+14085550100@carrier-a.example>;tag=ca1\r\nTo: <sip:agent@carrier-b.example>;tag=ag1\r\n"
	                  "Call-ID: out-1\r\nCSeq: 9 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
	vb_proxy_input(f->px, CONN_B, "carrier-a.example", bye, strlen(bye), NOW_S * 1000, &v);
	assert_int_equal(v.reason, VB_R_NO_DIALOG); /* another connection, even with the right domain */
	vb_proxy_input(f->px, CONN_OUT, "carrier-a.example", bye, strlen(bye), NOW_S * 1000, &v);
	assert_true(v.forwarded);
	assert_int_equal(f->sent[f->nsent - 1].conn, CONN_AGENT);
}

static void egress_without_srtp_never_leaves(void **state)
{
	fixture_t *f = *state;
	vb_verdict_t v;
	egress_invite(f, PLAIN_SDP, &v);
	assert_int_equal(v.reason, VB_R_NO_SRTP);
	assert_int_equal(v.status, 488);
	assert_int_equal(f->nconnect, 0);
	assert_int_equal(f->nsent, 1);
	assert_int_equal(f->sent[0].conn, CONN_AGENT);
	/* offerless: the callee's plain offer in its 200 is refused to the agent, the callee gets ACK + BYE */
	f->nsent = 0;
	egress_invite(f, "", &v);
	assert_true(v.forwarded);
	egress_answer(f, CONN_OUT, 200, PLAIN_SDP, &v);
	assert_int_equal(v.reason, VB_R_NO_SRTP);
	assert_int_equal(f->nsent, 4);
	assert_int_equal(f->sent[1].conn, CONN_OUT);
	assert_true(strncmp(f->sent[1].text, "ACK sip:pbx@192.0.2.50:5071;transport=tls SIP/2.0", 48) == 0);
	assert_int_equal(f->sent[2].conn, CONN_OUT);
	assert_int_equal(f->sent[3].conn, CONN_AGENT);
	assert_non_null(strstr(f->sent[3].text, "SIP/2.0 488"));
}

static void sdp_classes(void **state)
{
	(void)state;
	assert_int_equal(vb_sdp_classify(SRTP_SDP, strlen(SRTP_SDP)), VB_SDP_SRTP);
	assert_int_equal(vb_sdp_classify(PLAIN_SDP, strlen(PLAIN_SDP)), VB_SDP_PLAIN);
	assert_int_equal(vb_sdp_classify("", 0), VB_SDP_NONE);
	const char *nokeys = "v=0\r\no=a 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/SAVP 0\r\n";
	assert_int_equal(vb_sdp_classify(nokeys, strlen(nokeys)), VB_SDP_PLAIN);
	const char *dtls = "v=0\r\no=a 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
	                   "a=fingerprint:sha-256 AB:CD\r\nm=audio 4000 UDP/TLS/RTP/SAVPF 111\r\n";
	assert_int_equal(vb_sdp_classify(dtls, strlen(dtls)), VB_SDP_SRTP);
	const char *mixed = "v=0\r\no=a 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
	                    "m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:x\r\n"
	                    "m=video 4002 RTP/AVP 96\r\n";
	assert_int_equal(vb_sdp_classify(mixed, strlen(mixed)), VB_SDP_PLAIN);
	const char *disabled = "v=0\r\no=a 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
	                       "m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:x\r\n"
	                       "m=video 0 RTP/AVP 96\r\n";
	assert_int_equal(vb_sdp_classify(disabled, strlen(disabled)), VB_SDP_SRTP);
	assert_int_equal(vb_sdp_classify("garbage", 7), VB_SDP_BAD);
	/* bare LF line ends (libosip2 overreads on these: ASan builds check we never hand them over) */
	const char *lf = "v=0\no=a 1 1 IN IP4 192.0\nt=0 0\nm=audio 40 I*\n";
	char *heap = malloc(strlen(lf));
	memcpy(heap, lf, strlen(lf));
	assert_int_equal(vb_sdp_classify(heap, strlen(lf)), VB_SDP_PLAIN);
	free(heap);
	const char *lf_srtp = "v=0\no=a 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\n"
	                      "m=audio 4000 RTP/SAVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:x\n";
	assert_int_equal(vb_sdp_classify(lf_srtp, strlen(lf_srtp)), VB_SDP_SRTP);
	assert_int_equal(vb_sdp_classify("v=0\rm=audio 1 RTP/AVP 0\r\n", 26), VB_SDP_BAD); /* bare CR */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(admitted_invite_is_rewritten_for_the_inside, setup, teardown),
		cmocka_unit_test_setup_teardown(answer_goes_back_to_the_caller_without_our_via, setup, teardown),
		cmocka_unit_test_setup_teardown(refusals_per_ticket_check, setup, teardown),
		cmocka_unit_test_setup_teardown(client_certificate_admission, setup, teardown),
		cmocka_unit_test(verdict_tokens_match_ticket_reasons),
		cmocka_unit_test_setup_teardown(plain_offer_gets_488, setup, teardown),
		cmocka_unit_test_setup_teardown(offerless_invite_plain_answer_is_killed, setup, teardown),
		cmocka_unit_test_setup_teardown(downgrading_reinvite_is_refused_and_its_ack_absorbed, setup, teardown),
		cmocka_unit_test_setup_teardown(other_peer_cannot_touch_a_dialog, setup, teardown),
		cmocka_unit_test_setup_teardown(out_of_dialog_methods, setup, teardown),
		cmocka_unit_test_setup_teardown(cancel_of_pending_invite_keeps_its_branch, setup, teardown),
		cmocka_unit_test_setup_teardown(drop_mode_sends_nothing, setup_drop, teardown),
		cmocka_unit_test_setup_teardown(call_agent_down_gets_503, setup, teardown),
		cmocka_unit_test_setup_teardown(early_dialog_expires, setup, teardown),
		cmocka_unit_test_setup_teardown(exhausted_max_forwards_gets_483, setup, teardown),
		cmocka_unit_test(frame_stays_inside_its_input),
		cmocka_unit_test_setup_teardown(egress_leaves_over_the_connect_hook, setup, teardown),
		cmocka_unit_test_setup_teardown(egress_without_srtp_never_leaves, setup, teardown),
		cmocka_unit_test(sdp_classes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
