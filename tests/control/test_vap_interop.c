/*
 * Interop: a real VAP session against the server (every method, every error
 * shape, a Notify) is recorded byte for byte, written as a pcap, and dissected
 * by Wireshark's STUN dissector (tshark).  It must find every message, with no
 * malformed packet and no expert warning or error.
 *
 * Usage: test_vap_interop [SCRATCH_DIR]   (skips with 77 if tshark is missing)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "bench/support/vap_harness.h"
#include "common/errcode.h"
#include "common/log.h"

#define MAX_RECS 64

typedef struct rec {
	bool from_server;
	size_t len;
	uint8_t data[2048];
} rec_t;

typedef struct session {
	int fd;
	char user[32], realm[VAP_MAX_REALM + 1], nonce[VAP_MAX_NONCE + 1];
	uint8_t key[VAP_KEY_LEN];
	rec_t recs[MAX_RECS];
	size_t n;
	uint8_t tid0;
} session_t;

static const char *g_dir = ".";

static void record(session_t *s, bool srv, const uint8_t *p, size_t n)
{
	assert_true(s->n < MAX_RECS && n <= sizeof(s->recs[0].data));
	s->recs[s->n].from_server = srv;
	s->recs[s->n].len = n;
	memcpy(s->recs[s->n].data, p, n);
	s->n++;
}

static void ssend(session_t *s, const uint8_t *p, size_t n)
{
	assert_int_equal(raw_send(s->fd, p, n), 0);
	record(s, false, p, n);
}

static size_t srecv(session_t *s, uint8_t *buf, size_t cap, vap_msg_t *m)
{
	long n = raw_recv_msg(s->fd, buf, cap);
	assert_true(n > 0);
	record(s, true, buf, (size_t)n);
	assert_int_equal(vap_msg_parse(buf, (size_t)n, m), 0);
	return (size_t)n;
}

static void begin(session_t *s, vap_enc_t *e, uint8_t *out, size_t cap, uint16_t method)
{
	uint8_t tid[VAP_TID_LEN] = { 0x11, 0x22, 0x33, ++s->tid0 };
	vap_enc_begin(e, out, cap, vap_type(method, VAP_CLASS_REQUEST), tid);
	vap_enc_str(e, VAP_ATTR_USERNAME, s->user);
	vap_enc_str(e, VAP_ATTR_REALM, s->realm);
	vap_enc_str(e, VAP_ATTR_NONCE, s->nonce);
	vap_enc_str(e, VAP_ATTR_SOFTWARE, "vipr-agent interop test");
}

/* Send a signed request (with FINGERPRINT if fp) and return the answer's class. */
static uint16_t roundtrip(session_t *s, vap_enc_t *e, bool fp)
{
	uint8_t in[2048];
	vap_msg_t m;
	long n = vap_enc_finish(e, s->key, VAP_KEY_LEN, fp);
	assert_true(n > 0);
	ssend(s, e->wr.start, (size_t)n);
	srecv(s, in, sizeof(in), &m);
	return m.cls;
}

/* ---- pcap ------------------------------------------------------------------------ */

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)(v >> 16)); put16(p + 2, (uint16_t)v); }

static uint16_t ip_csum(const uint8_t *p, size_t n)
{
	uint32_t sum = 0;
	for (size_t i = 0; i + 1 < n; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	while (sum >> 16)
		sum = (sum & 0xFFFF) + (sum >> 16);
	return (uint16_t)~sum;
}

static void write_pcap(const session_t *s, const char *path, uint16_t sport)
{
	FILE *f = fopen(path, "wb");
	uint32_t gh[6] = { 0xa1b2c3d4u, 0x00040002u, 0, 0, 65535, 1 };
	uint32_t seq[2] = { 1000, 50000 };
	assert_non_null(f);
	/* Global header: magic, version 2.4 (written as two u16 in host order), snaplen, Ethernet. */
	{
		uint16_t v[2] = { 2, 4 };
		fwrite(&gh[0], 4, 1, f);
		fwrite(v, 2, 2, f);
		fwrite(&gh[2], 4, 4, f);
	}
	for (size_t i = 0; i < s->n; i++) {
		const rec_t *r = &s->recs[i];
		uint8_t hdr[54];
		uint32_t ph[4] = { 1700000000u, (uint32_t)i * 1000, (uint32_t)(54 + r->len), (uint32_t)(54 + r->len) };
		int d = r->from_server;
		memset(hdr, 0, sizeof(hdr));
		memcpy(hdr, "\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01", 12);
		if (d) { hdr[5] = 1; hdr[11] = 2; }
		put16(hdr + 12, 0x0800);
		hdr[14] = 0x45;
		put16(hdr + 16, (uint16_t)(40 + r->len));
		hdr[22] = 64;
		hdr[23] = 6;
		put32(hdr + 26, d ? 0x7f000001u : 0x7f000002u);
		put32(hdr + 30, d ? 0x7f000002u : 0x7f000001u);
		put16(hdr + 24, ip_csum(hdr + 14, 20));
		put16(hdr + 34, d ? sport : 40000);
		put16(hdr + 36, d ? 40000 : sport);
		put32(hdr + 38, seq[d]);
		put32(hdr + 42, seq[!d]);
		hdr[46] = 0x50;
		hdr[47] = 0x18;             /* PSH ACK */
		put16(hdr + 48, 65535);
		seq[d] += (uint32_t)r->len;
		fwrite(ph, 4, 4, f);
		fwrite(hdr, 1, sizeof(hdr), f);
		fwrite(r->data, 1, r->len, f);
	}
	fclose(f);
}

static int run(const char *cmd, char *out, size_t cap)
{
	FILE *p = popen(cmd, "r");
	size_t n = 0;
	if (!p)
		return -1;
	while (n + 1 < cap && fgets(out + n, (int)(cap - n), p))
		n += strlen(out + n);
	out[n] = '\0';
	return pclose(p);
}

/* ---- the session ---------------------------------------------------------------- */

typedef struct note {
	vap_route_t route;
	volatile int done;
} note_t;

static void do_notify(vap_server_t *srv, void *p)
{
	note_t *n = p;
	vap_server_notify(srv, &n->route);
	n->done = 1;
}

static void tshark_parses_every_vap_message(void **state)
{
	harness_t h;
	session_t *s = calloc(1, sizeof(*s));
	uint8_t out[2048], in[2048];
	vap_enc_t e;
	vap_msg_t m;
	vap_attr_t a;
	vap_range_t rg;
	vap_vcr_t vcr = { .called = "+14085551212", .caller = "+16505550100", .start_ms = 1700000000000ull,
	                  .stop_ms = 1700000123000ull, .direction = VAP_DIR_ORIGINATING };
	note_t note;
	char pcap[512], cmd[1024], res[8192];
	int rc, frames = 0;
	(void)state;

	if (system("command -v tshark >/dev/null 2>&1") != 0)
		skip();
	assert_int_equal(harness_start(&h, NULL, 1, true), 0);
	strcpy(s->user, "agent0");
	s->fd = raw_connect(vap_server_port(h.srv));
	assert_true(s->fd >= 0);

	/* 1-2: Register challenge and 401 with REALM and NONCE. */
	vap_enc_begin(&e, out, sizeof(out), vap_type(VAP_REGISTER, VAP_CLASS_REQUEST), (const uint8_t *)"interop-0001");
	vap_enc_str(&e, VAP_ATTR_USERNAME, s->user);
	ssend(s, out, (size_t)vap_enc_finish(&e, NULL, 0, true));
	srecv(s, in, sizeof(in), &m);
	assert_int_equal(m.cls, VAP_CLASS_ERROR);
	vap_msg_find(&m, VAP_ATTR_REALM, &a);
	vap_attr_str(&a, s->realm, sizeof(s->realm));
	vap_msg_find(&m, VAP_ATTR_NONCE, &a);
	vap_attr_str(&a, s->nonce, sizeof(s->nonce));
	assert_int_equal(vap_key_derive(s->user, s->realm, "pw-agent0", s->key), 0);
	/* 3-4: Register. */
	begin(s, &e, out, sizeof(out), VAP_REGISTER);
	assert_int_equal(roundtrip(s, &e, true), VAP_CLASS_SUCCESS);
	/* 5-6: Publish VService. */
	begin(s, &e, out, sizeof(out), VAP_PUBLISH);
	vap_enc_action(&e, VAP_SERVICE_VSERVICE, VAP_OP_ADD);
	vap_enc_u32(&e, VAP_ATTR_VSERVICE_ID, 7);
	vap_enc_str(&e, VAP_ATTR_SIP_URI, "sips:pbx.a.example;transport=tls");
	vap_enc_str(&e, VAP_ATTR_BLACKLIST, "spam.example");
	vap_enc_str(&e, VAP_ATTR_WHITELIST, "friend.example");
	assert_int_equal(roundtrip(s, &e, true), VAP_CLASS_SUCCESS);
	/* 7-8: Publish numbers (NUMBER and NUMBER-RANGE). */
	begin(s, &e, out, sizeof(out), VAP_PUBLISH);
	vap_enc_action(&e, VAP_SERVICE_NUMBERS, VAP_OP_ADD);
	vap_enc_u32(&e, VAP_ATTR_VSERVICE_ID, 7);
	vap_enc_str(&e, VAP_ATTR_NUMBER, "+14085551212");
	vap_range_parse("+1408555[0000-0099]", NULL, &rg);
	vap_enc_range(&e, &rg);
	assert_int_equal(roundtrip(s, &e, true), VAP_CLASS_SUCCESS);
	/* 9-10: UploadVCR. */
	begin(s, &e, out, sizeof(out), VAP_UPLOAD_VCR);
	vap_enc_vcr(&e, &vcr);
	assert_int_equal(roundtrip(s, &e, true), VAP_CLASS_SUCCESS);
	/* 11-12: Subscribe, without FINGERPRINT. */
	begin(s, &e, out, sizeof(out), VAP_SUBSCRIBE);
	vap_enc_u32(&e, VAP_ATTR_VSERVICE_ID, 7);
	vap_enc_u32(&e, VAP_ATTR_EXPIRES, 3600);
	assert_int_equal(roundtrip(s, &e, false), VAP_CLASS_SUCCESS);
	/* 13: Notify. */
	memset(&note, 0, sizeof(note));
	strcpy(note.route.number, "+14085551212");
	note.route.vservice_id = 7;
	note.route.expires = 86400;
	note.route.n_uris = 1;
	strcpy(note.route.uris[0], "sips:+14085551212@b.example");
	note.route.ticket_len = 45;
	memset(note.route.ticket, 0x5A, 45);
	assert_int_equal(vap_server_post(h.srv, do_notify, &note), 0);
	srecv(s, in, sizeof(in), &m);
	assert_int_equal(m.cls, VAP_CLASS_INDICATION);
	/* 14-15: 420 with UNKNOWN-ATTRIBUTES. */
	begin(s, &e, out, sizeof(out), VAP_KEEPALIVE);
	vap_enc_u32(&e, 0x4FEE, 1);
	assert_int_equal(roundtrip(s, &e, true), VAP_CLASS_ERROR);
	/* 16-17: 400 (bad CALL-RECORD). */
	begin(s, &e, out, sizeof(out), VAP_UPLOAD_VCR);
	vcr.stop_ms = vcr.start_ms - 1;
	vap_enc_vcr(&e, &vcr);
	assert_int_equal(roundtrip(s, &e, true), VAP_CLASS_ERROR);
	/* 18-19: Keepalive; 20-21: Unregister. */
	begin(s, &e, out, sizeof(out), VAP_KEEPALIVE);
	assert_int_equal(roundtrip(s, &e, true), VAP_CLASS_SUCCESS);
	begin(s, &e, out, sizeof(out), VAP_UNREGISTER);
	assert_int_equal(roundtrip(s, &e, true), VAP_CLASS_SUCCESS);
	close(s->fd);
	harness_stop(&h);
	assert_int_equal(s->n, 21);

	snprintf(pcap, sizeof(pcap), "%s/vap_interop.pcap", g_dir);
	write_pcap(s, pcap, 3478);
	/* Every frame is STUN ... */
	snprintf(cmd, sizeof(cmd), "tshark -r '%s' -d tcp.port==3478,stun -Y stun -T fields -e frame.number 2>/dev/null", pcap);
	rc = run(cmd, res, sizeof(res));
	assert_int_equal(rc, 0);
	for (char *p = res; (p = strchr(p, '\n')); p++)
		frames++;
	assert_int_equal(frames, 21);
	/* ... with no malformed packet and no expert error ... */
	snprintf(cmd, sizeof(cmd), "tshark -r '%s' -d tcp.port==3478,stun "
	         "-Y '_ws.malformed || _ws.expert.severity >= \"Error\"' -T fields -e frame.number "
	         "-e _ws.expert.message 2>/dev/null", pcap);
	rc = run(cmd, res, sizeof(res));
	assert_int_equal(rc, 0);
	if (res[0])
		fprintf(stderr, "tshark complaints:\n%s", res);
	assert_string_equal(res, "");
	/* ... and no warning but "Unknown attribute" for VAP's own comprehension-required
	 * attributes (0x4001-0x400A; 0x4FEE is the deliberately unknown one), which a
	 * generic STUN dissector cannot know. */
	snprintf(cmd, sizeof(cmd), "tshark -r '%s' -d tcp.port==3478,stun -Y '_ws.expert' "
	         "-T fields -e _ws.expert.message 2>/dev/null | tr ',' '\\n' | "
	         "grep -v -E '^Unknown attribute 0x(400[1-9a]|4fee)$' | grep -v '^$' || true", pcap);
	rc = run(cmd, res, sizeof(res));
	assert_int_equal(rc, 0);
	if (res[0])
		fprintf(stderr, "tshark warnings:\n%s", res);
	assert_string_equal(res, "");
	/* The dissector saw our integrity, fingerprints and error codes. */
	snprintf(cmd, sizeof(cmd), "tshark -r '%s' -d tcp.port==3478,stun -Y stun -T fields "
	         "-e stun.att.error -e stun.att.crc32 -e stun.att.hmac 2>/dev/null | awk -F'\\t' "
	         "'$1!=\"\"{e++} $2!=\"\"{c++} $3!=\"\"{h++} END{print e\" \"c\" \"h}'", pcap);
	rc = run(cmd, res, sizeof(res));
	assert_int_equal(rc, 0);
	fprintf(stderr, "errors fingerprints hmacs: %s", res);
	assert_string_equal(res, "3 18 19\n");
	free(s);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(tshark_parses_every_vap_message),
	};
	if (argc > 1)
		g_dir = argv[1];
	vp_log_setup(VP_LOG_WARN, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
