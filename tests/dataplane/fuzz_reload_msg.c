/*
 * libFuzzer target: whole RELOAD messages.  Whatever decodes must re-encode to
 * the same bytes (header, contents, security block and body), survive the
 * in-place forward-path edits, agree with the copying forward path, and be
 * printable as JSON.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/reload.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "check failed: %s (line %d)\n", #c, __LINE__); abort(); } } while (0)

static FILE *devnull;

static void check_body(const rl_message_t *m)
{
	static uint8_t out[RL_MAX_MESSAGE_SIZE + 64];
	rl_body_t b;
	vp_wr_t wr;

	/* framing-only and deep decoding agree on the bytes they accept */
	if (rl_body_decode(m->contents.code, m->contents.body.p, m->contents.body.len, rl_model_builtin,
	                   NULL, &b) == 0) {
		vp_wr_init(&wr, out, sizeof(out));
		CHECK(rl_body_encode(&wr, &b) == 0);
		CHECK(vp_wr_len(&wr) == m->contents.body.len);
		CHECK(memcmp(out, m->contents.body.p, m->contents.body.len) == 0);
		CHECK(rl_body_decode(m->contents.code, m->contents.body.p, m->contents.body.len, NULL, NULL,
		                     &b) == 0);
	}
	if (rl_body_decode(m->contents.code, m->contents.body.p, m->contents.body.len, NULL, NULL, &b) == 0) {
		vp_wr_init(&wr, out, sizeof(out));
		CHECK(rl_body_encode(&wr, &b) == 0);
		CHECK(vp_wr_len(&wr) == m->contents.body.len);
		CHECK(memcmp(out, m->contents.body.p, m->contents.body.len) == 0);
	}
}

static void check_forward(const uint8_t *data, size_t size, const rl_message_t *m)
{
	static uint8_t pktbuf[RL_MAX_MESSAGE_SIZE + 256], copy[RL_MAX_MESSAGE_SIZE + 256];
	static const vp_id_t me = { { 0xf0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 } };
	rl_dest_t via = rl_dest_node(&me);
	rl_pkt_t pkt = { pktbuf, sizeof(pktbuf), 64, size };
	rl_message_t fm;
	vp_wr_t wr;
	int e, ec;

	memcpy(pktbuf + 64, data, size);
	vp_wr_init(&wr, copy, sizeof(copy));
	ec = rl_fwd_copy(&wr, data, size, &m->hdr, &via, m->hdr.dest.raw_count > 0);
	e = rl_fwd_ttl_decrement(&pkt);
	if (e) {
		CHECK(e == VP_ERELOAD_TTL && m->hdr.ttl == 0 && ec == VP_ERELOAD_TTL);
		return;
	}
	e = rl_fwd_append_via(&pkt, &via);
	if (e) {
		CHECK(e == VP_ETOOBIG);
		CHECK(ec == VP_ETOOBIG || ec == VP_ERANGE);
		return;
	}
	if (m->hdr.dest.raw_count > 0)
		CHECK(rl_fwd_pop_dest(&pkt) == 0);
	else
		CHECK(rl_fwd_pop_dest(&pkt) == VP_ERELOAD_DEST);
	CHECK(rl_msg_decode(pktbuf + pkt.off, pkt.len, &fm) == 0);
	CHECK(fm.hdr.ttl == m->hdr.ttl - 1);
	CHECK(fm.hdr.via.raw_count == m->hdr.via.raw_count + 1);
	CHECK(ec == 0);
	CHECK(vp_wr_len(&wr) == pkt.len);
	CHECK(memcmp(copy, pktbuf + pkt.off, pkt.len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t out[RL_MAX_MESSAGE_SIZE + 64];
	rl_message_t m;
	rl_body_t b;
	vp_wr_t wr;
	int e, ej;

	if (!devnull)
		devnull = fopen("/dev/null", "w");
	e = rl_msg_decode(data, size, &m);
	if (e == 0) {
		vp_wr_init(&wr, out, sizeof(out));
		CHECK(rl_msg_encode(&wr, &m) == 0);
		CHECK(vp_wr_len(&wr) == size);
		CHECK(memcmp(out, data, size) == 0);
		check_body(&m);
		check_forward(data, size, &m);
		rl_fwd_options_check(&m.hdr, true);
		rl_contents_check_exts(&m.contents);
	}
	ej = rl_json_message(devnull, data, size, rl_model_builtin, NULL);
	if (e == 0) /* a bare message: JSON fails only where the deep body decode does */
		CHECK(ej == rl_body_decode(m.contents.code, m.contents.body.p, m.contents.body.len,
		                           rl_model_builtin, NULL, &b));
	return 0;
}
