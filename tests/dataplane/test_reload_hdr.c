/* RELOAD forwarding header, destinations, options, whole messages and the forward path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "dataplane/reload.h"
#include "rl_testkit.h"

/*
 * A PingReq from the RFC 6940 layout: overlay 0x12345678, config seq 1,
 * version 10, TTL 100, unfragmented, length 77, txid 0102..08, no response
 * limit; no via; one node destination; body = empty padding; no extensions;
 * no certificates; signature sha256/ecdsa by identity "none", empty value.
 */
static const char PING_HEX[] =
	"d2454c4f 12345678 0001 0a 64 c0000000 0000004d 0102030405060708 00000000"
	"0000 0012 0000"
	"01 10 00112233445566778899aabbccddeeff"
	"0017 00000002 0000 00000000"
	"0000 04 03 03 0000 0000";

/* Header only (length = header length): every destination form and one option. */
static const char HDR_FORMS_HEX[] =
	"d2454c4f 12345678 0001 0a 64 c0000000 0000004e 0102030405060708 00000000"
	"0020 0002 0006"
	"01 10 00112233445566778899aabbccddeeff" /* node */
	"02 05 04 a1a2a3a4"                      /* resource, 4-byte id */
	"8123"                                   /* compressed */
	"03 03 02 beef"                          /* opaque_id_type */
	"8001"                                   /* dest: compressed */
	"7f 01 0002 aabb";                       /* option 127, forward-critical */

static uint8_t buf[1024];

static size_t ping(uint8_t *out)
{
	return tk_hex(PING_HEX, out, 512);
}

static void ping_known_answer_decodes(void **state)
{
	rl_message_t m;
	rl_iter_t it;
	rl_dest_t d;
	size_t n = ping(buf);
	(void)state;

	assert_int_equal(n, 77);
	assert_int_equal(rl_msg_decode(buf, n, &m), 0);
	assert_int_equal(m.hdr.overlay, 0x12345678);
	assert_int_equal(m.hdr.config_seq, 1);
	assert_int_equal(m.hdr.version, 10);
	assert_int_equal(m.hdr.ttl, 100);
	assert_int_equal(m.hdr.fragment, RL_FRAG_UNFRAGMENTED);
	assert_int_equal(m.hdr.length, 77);
	assert_true(m.hdr.txid == 0x0102030405060708ull);
	assert_int_equal(m.hdr.max_response_length, 0);
	assert_int_equal(m.hdr.hdr_len, 56);
	assert_int_equal(m.hdr.via.raw_count, 0);
	assert_int_equal(m.hdr.dest.raw_count, 1);
	assert_int_equal(m.hdr.options.raw_count, 0);
	RL_ITER_INIT(&it, &m.hdr.dest);
	assert_int_equal(rl_dest_next(&it, &d), 1);
	assert_int_equal(d.type, RL_DEST_NODE);
	assert_int_equal(d.id.len, 16);
	assert_memory_equal(d.id.p, buf + 40, 16);
	assert_int_equal(rl_dest_next(&it, &d), 0);
	assert_int_equal(m.contents.code, RL_PING_REQ);
	assert_int_equal(m.contents.body.len, 2);
	assert_int_equal(m.contents.exts.raw_count, 0);
	assert_ptr_equal(m.contents.raw.p, buf + 56);
	assert_int_equal(m.contents.raw.len, 12);
	assert_int_equal(m.sec.certs.raw_count, 0);
	assert_int_equal(m.sec.sig.hash_alg, RL_HASH_SHA256);
	assert_int_equal(m.sec.sig.sig_alg, RL_SIG_ECDSA);
	assert_int_equal(m.sec.sig.identity.type, RL_SIGNER_NONE);
	assert_int_equal(m.sec.sig.value.len, 0);
}

static void ping_round_trips(void **state)
{
	rl_message_t m;
	uint8_t out[512];
	vp_wr_t wr;
	size_t n = ping(buf);
	(void)state;

	assert_int_equal(rl_msg_decode(buf, n, &m), 0);
	vp_wr_init(&wr, out, sizeof(out));
	assert_int_equal(rl_msg_encode(&wr, &m), 0);
	assert_int_equal(vp_wr_len(&wr), n);
	assert_memory_equal(out, buf, n);
}

static void ping_built_from_structs_matches_vector(void **state)
{
	static const vp_id_t node = { { 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
	                                0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff } };
	rl_message_t m;
	rl_body_t body;
	rl_dest_t dest = rl_dest_node(&node);
	uint8_t out[512];
	vp_wr_t wr;
	size_t n = ping(buf);
	(void)state;

	memset(&m, 0, sizeof(m));
	m.hdr.overlay = 0x12345678;
	m.hdr.config_seq = 1;
	m.hdr.version = RL_VERSION;
	m.hdr.ttl = RL_DEFAULT_TTL;
	m.hdr.fragment = RL_FRAG_UNFRAGMENTED;
	m.hdr.txid = 0x0102030405060708ull;
	m.hdr.dest.items = &dest;
	m.hdr.dest.n_items = 1;
	memset(&body, 0, sizeof(body));
	body.code = RL_PING_REQ;
	m.contents.code = RL_PING_REQ;
	m.contents.body_st = &body;
	m.sec.sig.hash_alg = RL_HASH_SHA256;
	m.sec.sig.sig_alg = RL_SIG_ECDSA;
	m.sec.sig.identity.type = RL_SIGNER_NONE;
	vp_wr_init(&wr, out, sizeof(out));
	assert_int_equal(rl_msg_encode(&wr, &m), 0);
	assert_int_equal(vp_wr_len(&wr), n);
	assert_memory_equal(out, buf, n);
	assert_int_equal(rl_fwd_header_wire_len(&m.hdr), 56);
}

static void every_destination_form(void **state)
{
	rl_fwd_header_t h;
	rl_iter_t it;
	rl_dest_t d;
	rl_fwd_option_t o;
	uint8_t out[256];
	vp_wr_t wr;
	size_t n = tk_hex(HDR_FORMS_HEX, buf, sizeof(buf));
	(void)state;

	assert_int_equal(n, 78);
	assert_int_equal(rl_fwd_header_decode(buf, n, &h), 0);
	assert_int_equal(h.hdr_len, 78);
	assert_int_equal(h.via.raw_count, 4);
	RL_ITER_INIT(&it, &h.via);
	assert_int_equal(rl_dest_next(&it, &d), 1);
	assert_int_equal(d.type, RL_DEST_NODE);
	assert_int_equal(rl_dest_next(&it, &d), 1);
	assert_int_equal(d.type, RL_DEST_RESOURCE);
	assert_int_equal(d.id.len, 4);
	assert_memory_equal(d.id.p, "\xa1\xa2\xa3\xa4", 4);
	assert_int_equal(rl_dest_next(&it, &d), 1);
	assert_int_equal(d.type, RL_DEST_COMPRESSED);
	assert_memory_equal(d.id.p, "\x81\x23", 2);
	assert_int_equal(rl_dest_next(&it, &d), 1);
	assert_int_equal(d.type, RL_DEST_OPAQUE);
	assert_int_equal(d.id.len, 2);
	assert_memory_equal(d.id.p, "\xbe\xef", 2);
	assert_int_equal(rl_dest_next(&it, &d), 0);
	assert_int_equal(h.dest.raw_count, 1);
	assert_int_equal(h.options.raw_count, 1);
	RL_ITER_INIT(&it, &h.options);
	assert_int_equal(rl_fwd_option_next(&it, &o), 1);
	assert_int_equal(o.type, 0x7f);
	assert_int_equal(o.flags, RL_FWDOPT_FORWARD_CRITICAL);
	assert_int_equal(o.data.len, 2);
	vp_wr_init(&wr, out, sizeof(out));
	assert_int_equal(rl_fwd_header_encode(&wr, &h, h.length), 0);
	assert_int_equal(vp_wr_len(&wr), n);
	assert_memory_equal(out, buf, n);
}

static void answer_route_is_reversed_via(void **state)
{
	rl_fwd_header_t h;
	rl_dest_t back[4];
	size_t n, len = tk_hex(HDR_FORMS_HEX, buf, sizeof(buf));
	(void)state;

	assert_int_equal(rl_fwd_header_decode(buf, len, &h), 0);
	assert_int_equal(rl_dest_list_reversed(&h.via, back, 4, &n), 0);
	assert_int_equal(n, 4);
	assert_int_equal(back[0].type, RL_DEST_OPAQUE);
	assert_int_equal(back[1].type, RL_DEST_COMPRESSED);
	assert_int_equal(back[2].type, RL_DEST_RESOURCE);
	assert_int_equal(back[3].type, RL_DEST_NODE);
	assert_ptr_equal(back[3].id.p, buf + 40);
	assert_int_equal(rl_dest_list_reversed(&h.via, back, 3, &n), VP_ESPACE);
	assert_int_equal(n, 0);
	assert_true(rl_code_is_request(RL_STORE_REQ));
	assert_false(rl_code_is_request(RL_STORE_ANS));
	assert_false(rl_code_is_request(RL_ERROR));
	assert_int_equal(rl_code_answer(RL_FETCH_REQ), RL_FETCH_ANS);
}

/* A hand-built list whose raw_count understates its raw bytes is refused, not written past out[]. */
static void reversed_list_with_wrong_count_is_refused(void **state)
{
	rl_fwd_header_t h;
	rl_dest_t back[2];
	size_t n, len = tk_hex(HDR_FORMS_HEX, buf, sizeof(buf));
	(void)state;

	assert_int_equal(rl_fwd_header_decode(buf, len, &h), 0);
	h.via.raw_count = 1; /* four destinations in raw */
	assert_int_equal(rl_dest_list_reversed(&h.via, back + 1, 1, &n), VP_EINVAL);
	assert_int_equal(n, 0);
}

static void options_policy(void **state)
{
	rl_fwd_header_t h;
	size_t n = tk_hex(HDR_FORMS_HEX, buf, sizeof(buf));
	(void)state;

	assert_int_equal(rl_fwd_header_decode(buf, n, &h), 0);
	assert_int_equal(rl_fwd_options_check(&h, false), VP_ERELOAD_OPTION);
	buf[n - 5] = RL_FWDOPT_DESTINATION_CRITICAL; /* flags byte of the option */
	assert_int_equal(rl_fwd_header_decode(buf, n, &h), 0);
	assert_int_equal(rl_fwd_options_check(&h, false), 0);
	assert_int_equal(rl_fwd_options_check(&h, true), VP_ERELOAD_OPTION);
	buf[n - 5] = RL_FWDOPT_RESPONSE_COPY;
	assert_int_equal(rl_fwd_header_decode(buf, n, &h), 0);
	assert_int_equal(rl_fwd_options_check(&h, true), 0);
}

/* Decode HDR_FORMS_HEX with byte `off` replaced by `v`. */
static int hdr_with(size_t off, uint8_t v)
{
	rl_fwd_header_t h;
	size_t n = tk_hex(HDR_FORMS_HEX, buf, sizeof(buf));
	buf[off] = v;
	return rl_fwd_header_decode(buf, n, &h);
}

static int ping_with(size_t off, uint8_t v)
{
	rl_message_t m;
	size_t n = ping(buf);
	buf[off] = v;
	return rl_msg_decode(buf, n, &m);
}

static void bad_token_version_fragment(void **state)
{
	(void)state;
	assert_int_equal(ping_with(0, 0x52), VP_EBADTOKEN); /* "RELO" without the top bit */
	assert_int_equal(ping_with(3, 0x4e), VP_EBADTOKEN);
	assert_int_equal(ping_with(10, 0x01), VP_EUNSUPPORTED); /* draft-era version */
	assert_int_equal(ping_with(12, 0x40), VP_EMALFORMED);   /* fragment bit 31 clear */
	assert_int_equal(ping_with(12, 0x80), VP_ERELOAD_FRAG); /* not the last fragment */
	assert_int_equal(ping_with(15, 0x10), VP_ERELOAD_FRAG); /* last fragment, offset 16 */
	assert_int_equal(ping_with(12, 0xc1), 0);               /* reserved bits are ignored */
}

static void fragment_header_still_decodes(void **state)
{
	rl_fwd_header_t h;
	size_t n = ping(buf);
	(void)state;
	buf[12] = 0x80;
	buf[15] = 0x20;
	assert_int_equal(rl_fwd_header_decode(buf, n, &h), 0);
	assert_int_equal(h.fragment, 0x80000020);
}

static void length_field_over_and_underrun(void **state)
{
	rl_message_t m;
	size_t n;
	(void)state;
	assert_int_equal(ping_with(19, 0x4e), VP_ETRUNC);    /* says 78, buffer 77 */
	assert_int_equal(ping_with(19, 0x4c), VP_ETRAILING); /* says 76: one byte too many */
	assert_int_equal(ping_with(19, 0x20), VP_EBADLEN);   /* shorter than its own header */
	assert_int_equal(ping_with(17, 0x01), VP_ETOOBIG);   /* 65613 > RL_MAX_MESSAGE_SIZE */
	/* one extra byte after the security block, length updated to match */
	n = ping(buf);
	buf[n] = 0;
	buf[19] = 0x4e;
	assert_int_equal(rl_msg_decode(buf, n + 1, &m), VP_ETRAILING);
	/* body length overruns the contents */
	assert_int_equal(ping_with(61, 0x30), VP_ETRUNC);
	/* body length one short: the leftover byte misparses as the extensions */
	assert_int_equal(ping_with(61, 0x01), VP_ETRUNC);
}

/* A PingReq padded to exactly `total` bytes, or an encode error. */
static int padded_ping(uint8_t *out, size_t cap, size_t total, size_t *len)
{
	static const vp_id_t node = { { 1 } };
	static uint8_t pad[RL_MAX_MESSAGE_SIZE];
	rl_message_t m;
	rl_body_t body;
	rl_dest_t dest = rl_dest_node(&node);
	vp_wr_t wr;

	memset(&m, 0, sizeof(m));
	memset(&body, 0, sizeof(body));
	m.hdr.version = RL_VERSION;
	m.hdr.ttl = 1;
	m.hdr.fragment = RL_FRAG_UNFRAGMENTED;
	m.hdr.dest.items = &dest;
	m.hdr.dest.n_items = 1;
	body.code = m.contents.code = RL_PING_REQ;
	/* 56 header + 2 code + 4 body length + 2 padding length + 4 extensions + 9 security block */
	body.u.ping_req.padding = (rl_bytes_t){ pad, (uint32_t)(total - 77) };
	m.contents.body_st = &body;
	m.sec.sig.identity.type = RL_SIGNER_NONE;
	vp_wr_init(&wr, out, cap);
	rl_msg_encode(&wr, &m);
	*len = vp_wr_len(&wr);
	return wr.err;
}

static void size_limit_is_exact(void **state)
{
	static uint8_t big[RL_MAX_MESSAGE_SIZE + 64];
	rl_message_t m;
	size_t n;
	(void)state;

	assert_int_equal(padded_ping(big, sizeof(big), RL_MAX_MESSAGE_SIZE, &n), 0);
	assert_int_equal(n, RL_MAX_MESSAGE_SIZE);
	assert_int_equal(rl_msg_decode(big, n, &m), 0);
	assert_int_equal(m.contents.body.len, RL_MAX_MESSAGE_SIZE - 77 + 2);
	assert_int_equal(padded_ping(big, sizeof(big), RL_MAX_MESSAGE_SIZE + 1, &n), VP_ETOOBIG);
	/* the same bytes with the length field claiming one more: refused before any parsing */
	assert_int_equal(padded_ping(big, sizeof(big), RL_MAX_MESSAGE_SIZE, &n), 0);
	big[n] = 0;
	assert_int_equal(rl_msg_decode(big, n + 1, &m), VP_ETOOBIG);
}

static void every_truncation_fails(void **state)
{
	rl_message_t m;
	size_t n = ping(buf);
	(void)state;
	for (size_t i = 0; i < n; i++)
		assert_true(rl_msg_decode(buf, i, &m) < 0);
	/* the same prefixes with a consistent length field are still wrong */
	for (size_t i = 56; i < n; i++) {
		ping(buf);
		buf[19] = (uint8_t)i;
		assert_true(rl_msg_decode(buf, i, &m) < 0);
	}
}

static int hdr_with2(size_t off1, uint8_t v1, size_t off2, uint8_t v2)
{
	rl_fwd_header_t h;
	size_t n = tk_hex(HDR_FORMS_HEX, buf, sizeof(buf));
	buf[off1] = v1;
	buf[off2] = v2;
	return rl_fwd_header_decode(buf, n, &h);
}

static void list_lengths_that_overrun(void **state)
{
	(void)state;
	/* total list bytes kept at 40, split differently: an entry straddles two lists */
	assert_int_equal(hdr_with2(33, 0x21, 35, 0x01), VP_ETRUNC); /* via ends inside the compressed dest */
	assert_int_equal(hdr_with2(33, 0x1f, 35, 0x03), VP_ETRUNC); /* via cuts the opaque entry */
	/* the boundary moved past a whole entry: still valid, the destination became a via */
	assert_int_equal(hdr_with2(33, 0x22, 35, 0x00), 0);
	/* lists longer than `length` */
	assert_int_equal(hdr_with(37, 0x07), VP_EBADLEN);
	assert_int_equal(hdr_with(33, 0x21), VP_EBADLEN);
	/* a list longer than the buffer, with `length` agreeing */
	assert_int_equal(hdr_with2(37, 0x07, 19, 0x4f), VP_ETRUNC);
}

static void bad_destinations(void **state)
{
	(void)state;
	assert_int_equal(hdr_with(38, 0x00), VP_ERELOAD_DEST); /* type 0 (invalid) */
	assert_int_equal(hdr_with(38, 0x04), VP_ERELOAD_DEST); /* unknown type */
	assert_int_equal(hdr_with(39, 0x0f), VP_ERELOAD_DEST); /* node id of 15 bytes */
	assert_int_equal(hdr_with(58, 0x03), VP_ERELOAD_DEST); /* resource: inner length 3 in 5 */
	assert_int_equal(hdr_with(58, 0x05), VP_ERELOAD_DEST); /* resource: inner length overruns */
	assert_int_equal(hdr_with(57, 0x00), VP_ERELOAD_DEST); /* resource with no length byte */
}

static void bad_option(void **state)
{
	(void)state;
	assert_int_equal(hdr_with(72, 0x00), VP_EBADTYPE); /* option type 0 */
	assert_int_equal(hdr_with(75, 0x03), VP_ETRUNC);   /* option data overruns the list */
	assert_int_equal(hdr_with(75, 0x01), VP_ETRUNC);   /* leftover byte is a truncated option */
}

static void extension_and_bool_checks(void **state)
{
	static const char MSG[] =
		"d2454c4f 12345678 0001 0a 64 c0000000 00000058 0102030405060708 00000000"
		"0000 0012 0000"
		"01 10 00112233445566778899aabbccddeeff"
		"0017 00000002 0000 0000000b 1234 01 00000004 cafebabe"
		"0000 04 03 03 0000 0000";
	rl_message_t m;
	rl_iter_t it;
	rl_ext_t x;
	uint8_t out[256];
	vp_wr_t wr;
	size_t n = tk_hex(MSG, buf, sizeof(buf));
	(void)state;

	assert_int_equal(n, 88);
	assert_int_equal(rl_msg_decode(buf, n, &m), 0);
	assert_int_equal(m.contents.exts.raw_count, 1);
	RL_ITER_INIT(&it, &m.contents.exts);
	assert_int_equal(rl_ext_next(&it, &x), 1);
	assert_int_equal(x.type, 0x1234);
	assert_true(x.critical);
	assert_int_equal(x.contents.len, 4);
	assert_int_equal(rl_contents_check_exts(&m.contents), VP_ERELOAD_EXT);
	vp_wr_init(&wr, out, sizeof(out));
	assert_int_equal(rl_msg_encode(&wr, &m), 0);
	assert_memory_equal(out, buf, n);
	buf[70] = 0; /* not critical */
	assert_int_equal(rl_msg_decode(buf, n, &m), 0);
	assert_int_equal(rl_contents_check_exts(&m.contents), 0);
	buf[70] = 2; /* a Boolean must be 0 or 1 */
	assert_int_equal(rl_msg_decode(buf, n, &m), VP_EMALFORMED);
	buf[70] = 1;
	/* MessageExtensionType 0 is reserved: refused on decode and on encode. */
	buf[68] = buf[69] = 0;
	assert_int_equal(rl_msg_decode(buf, n, &m), VP_EBADTYPE);
	assert_int_equal(rl_json_message(stdout, buf, n, rl_model_builtin, NULL), VP_EBADTYPE);
	buf[69] = 0x01;
	assert_int_equal(rl_msg_decode(buf, n, &m), 0);
	x.type = 0;
	x.critical = false;
	x.contents = (rl_bytes_t){ NULL, 0 };
	m.contents.exts.raw = NULL;
	m.contents.exts.raw_len = m.contents.exts.raw_count = 0;
	m.contents.exts.items = &x;
	m.contents.exts.n_items = 1;
	vp_wr_init(&wr, out, sizeof(out));
	assert_int_equal(rl_msg_encode(&wr, &m), VP_EBADTYPE);
}

static void signer_identity_types(void **state)
{
	/* cert_hash with a 4-byte hash, then cert_hash_node_id, then an unknown type */
	static const char CH[] = "01 0006 04 04 a1b2c3d4";
	static const char CHN[] = "02 0003 02 01 ff";
	rl_signer_identity_t id;
	vp_rd_t rd;
	uint8_t out[64];
	vp_wr_t wr;
	size_t n;
	(void)state;

	n = tk_hex(CH, buf, sizeof(buf));
	vp_rd_init(&rd, buf, n);
	assert_int_equal(rl_signer_identity_decode(&rd, &id), 0);
	assert_int_equal(vp_rd_done(&rd), 0);
	assert_int_equal(id.type, RL_SIGNER_CERT_HASH);
	assert_int_equal(id.hash_alg, RL_HASH_SHA256);
	assert_int_equal(id.hash.len, 4);
	vp_wr_init(&wr, out, sizeof(out));
	assert_int_equal(rl_signer_identity_encode(&wr, &id), 0);
	assert_memory_equal(out, buf, n);

	n = tk_hex(CHN, buf, sizeof(buf));
	vp_rd_init(&rd, buf, n);
	assert_int_equal(rl_signer_identity_decode(&rd, &id), 0);
	assert_int_equal(id.type, RL_SIGNER_CERT_HASH_NODE_ID);
	assert_int_equal(id.hash.len, 1);

	buf[0] = 0x00;
	vp_rd_init(&rd, buf, n);
	assert_int_equal(rl_signer_identity_decode(&rd, &id), VP_EBADTYPE);
	buf[0] = 0x04;
	vp_rd_init(&rd, buf, n);
	assert_int_equal(rl_signer_identity_decode(&rd, &id), VP_EBADTYPE);
	/* identity length longer than the hash it holds */
	n = tk_hex("01 0007 04 04 a1b2c3d4 00", buf, sizeof(buf));
	vp_rd_init(&rd, buf, n);
	assert_int_equal(rl_signer_identity_decode(&rd, &id), VP_ETRAILING);
	/* none with a body */
	n = tk_hex("03 0001 00", buf, sizeof(buf));
	vp_rd_init(&rd, buf, n);
	assert_int_equal(rl_signer_identity_decode(&rd, &id), VP_ETRAILING);
	/* hash vector overruns the identity */
	n = tk_hex("01 0003 04 04 a1", buf, sizeof(buf));
	vp_rd_init(&rd, buf, n);
	assert_int_equal(rl_signer_identity_decode(&rd, &id), VP_ETRUNC);
}

static void certificates_in_security_block(void **state)
{
	static const char SB[] = "000b 00 0003 aabbcc 00 0002 ddee  04 01 03 0000 0002 5566";
	rl_security_block_t sb;
	rl_iter_t it;
	rl_cert_t c;
	vp_rd_t rd;
	uint8_t out[64];
	vp_wr_t wr;
	size_t n = tk_hex(SB, buf, sizeof(buf));
	(void)state;

	vp_rd_init(&rd, buf, n);
	assert_int_equal(rl_security_block_decode(&rd, &sb), 0);
	assert_int_equal(vp_rd_done(&rd), 0);
	assert_int_equal(sb.certs.raw_count, 2);
	RL_ITER_INIT(&it, &sb.certs);
	assert_int_equal(rl_cert_next(&it, &c), 1);
	assert_int_equal(c.der.len, 3);
	assert_int_equal(rl_cert_next(&it, &c), 1);
	assert_memory_equal(c.der.p, "\xdd\xee", 2);
	assert_int_equal(rl_cert_next(&it, &c), 0);
	assert_int_equal(sb.sig.sig_alg, RL_SIG_RSA);
	assert_int_equal(sb.sig.value.len, 2);
	vp_wr_init(&wr, out, sizeof(out));
	assert_int_equal(rl_security_block_encode(&wr, &sb), 0);
	assert_int_equal(vp_wr_len(&wr), n);
	assert_memory_equal(out, buf, n);
	buf[2] = 1; /* certificate type 1 is not X.509 */
	vp_rd_init(&rd, buf, n);
	assert_int_equal(rl_security_block_decode(&rd, &sb), VP_EBADTYPE);
}

/* ---- forward path ------------------------------------------------------ */

static const vp_id_t ME = { { 0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7,
                              0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff } };

/* PING with ME appended to the via list, TTL 99. */
static const char PING_VIA_HEX[] =
	"d2454c4f 12345678 0001 0a 63 c0000000 0000005f 0102030405060708 00000000"
	"0012 0012 0000"
	"01 10 f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"
	"01 10 00112233445566778899aabbccddeeff"
	"0017 00000002 0000 00000000"
	"0000 04 03 03 0000 0000";

/* PING with ME appended to the via list and its only destination popped, TTL 99. */
static const char PING_VIA_POP_HEX[] =
	"d2454c4f 12345678 0001 0a 63 c0000000 0000004d 0102030405060708 00000000"
	"0012 0000 0000"
	"01 10 f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"
	"0017 00000002 0000 00000000"
	"0000 04 03 03 0000 0000";

static void forward_in_place_with_headroom(void **state)
{
	uint8_t pktbuf[256], want[256];
	rl_pkt_t pkt = { pktbuf, sizeof(pktbuf), 64, 0 };
	rl_dest_t via = rl_dest_node(&ME);
	rl_message_t m;
	size_t wn;
	(void)state;

	pkt.len = ping(pktbuf + 64);
	assert_int_equal(rl_fwd_ttl_decrement(&pkt), 0);
	assert_int_equal(rl_fwd_append_via(&pkt, &via), 0);
	assert_int_equal(pkt.off, 64 - 18);
	wn = tk_hex(PING_VIA_HEX, want, sizeof(want));
	assert_int_equal(pkt.len, wn);
	assert_memory_equal(pktbuf + pkt.off, want, wn);
	assert_int_equal(rl_msg_decode(pktbuf + pkt.off, pkt.len, &m), 0);

	assert_int_equal(rl_fwd_pop_dest(&pkt), 0);
	assert_int_equal(pkt.off, 64);
	wn = tk_hex(PING_VIA_POP_HEX, want, sizeof(want));
	assert_int_equal(pkt.len, wn);
	assert_memory_equal(pktbuf + pkt.off, want, wn);
	assert_int_equal(rl_msg_decode(pktbuf + pkt.off, pkt.len, &m), 0);
	assert_int_equal(rl_fwd_pop_dest(&pkt), VP_ERELOAD_DEST);
}

static void forward_in_place_without_headroom(void **state)
{
	uint8_t pktbuf[256], want[256];
	rl_pkt_t pkt = { pktbuf, sizeof(pktbuf), 0, 0 };
	rl_dest_t via = rl_dest_node(&ME);
	size_t wn;
	(void)state;

	pkt.len = ping(pktbuf);
	assert_int_equal(rl_fwd_ttl_decrement(&pkt), 0);
	assert_int_equal(rl_fwd_append_via(&pkt, &via), 0);
	assert_int_equal(pkt.off, 0);
	wn = tk_hex(PING_VIA_HEX, want, sizeof(want));
	assert_int_equal(pkt.len, wn);
	assert_memory_equal(pktbuf, want, wn);
	/* no room at all */
	pkt.cap = pkt.len + 17;
	assert_int_equal(rl_fwd_append_via(&pkt, &via), VP_ESPACE);
	assert_memory_equal(pktbuf, want, wn);
}

/* A via that cannot be encoded is refused before the packet is touched (both move strategies). */
static void bad_via_leaves_packet_untouched(void **state)
{
	static const uint8_t big[255], low[2] = { 0x12, 0x34 };
	uint8_t pktbuf[1024], orig[1024];
	rl_dest_t bad[3] = {
		{ RL_DEST_RESOURCE, { big, sizeof(big) } }, /* over opaque<0..254> */
		{ RL_DEST_COMPRESSED, { low, 2 } },         /* top bit clear */
		{ RL_DEST_NODE, { big, 15 } },              /* not 16 bytes */
	};
	rl_message_t m;
	size_t n;
	(void)state;

	/* off 0: the tail moves; off 512: the front slides into the headroom. */
	for (size_t off = 0; off <= 512; off += 512) {
		for (size_t i = 0; i < 3; i++) {
			rl_pkt_t pkt = { pktbuf, sizeof(pktbuf), off, 0 };
			memset(pktbuf, 0xee, sizeof(pktbuf));
			n = ping(pktbuf + off);
			pkt.len = n;
			memcpy(orig, pktbuf, sizeof(pktbuf));
			assert_int_equal(rl_fwd_append_via(&pkt, &bad[i]), VP_ERELOAD_DEST);
			assert_int_equal(pkt.off, off);
			assert_int_equal(pkt.len, n);
			assert_memory_equal(pktbuf, orig, sizeof(pktbuf));
			assert_int_equal(rl_msg_decode(pktbuf + pkt.off, pkt.len, &m), 0);
		}
	}
}

static void ttl_zero_is_refused(void **state)
{
	uint8_t pktbuf[128];
	rl_pkt_t pkt = { pktbuf, sizeof(pktbuf), 0, 0 };
	(void)state;
	pkt.len = ping(pktbuf);
	pktbuf[11] = 1;
	assert_int_equal(rl_fwd_ttl_decrement(&pkt), 0);
	assert_int_equal(pktbuf[11], 0);
	assert_int_equal(rl_fwd_ttl_decrement(&pkt), VP_ERELOAD_TTL);
	assert_int_equal(pktbuf[11], 0);
	pktbuf[0] = 0;
	assert_int_equal(rl_fwd_ttl_decrement(&pkt), VP_EBADTOKEN);
}

static void forward_copy_matches_in_place(void **state)
{
	uint8_t in[256], out[256], want[256];
	rl_fwd_header_t h;
	rl_dest_t via = rl_dest_node(&ME);
	vp_wr_t wr;
	size_t n = ping(in), wn;
	(void)state;

	assert_int_equal(rl_fwd_header_decode(in, n, &h), 0);
	vp_wr_init(&wr, out, sizeof(out));
	assert_int_equal(rl_fwd_copy(&wr, in, n, &h, &via, false), 0);
	wn = tk_hex(PING_VIA_HEX, want, sizeof(want));
	assert_int_equal(vp_wr_len(&wr), wn);
	assert_memory_equal(out, want, wn);

	vp_wr_init(&wr, out, sizeof(out));
	assert_int_equal(rl_fwd_copy(&wr, in, n, &h, &via, true), 0);
	wn = tk_hex(PING_VIA_POP_HEX, want, sizeof(want));
	assert_int_equal(vp_wr_len(&wr), wn);
	assert_memory_equal(out, want, wn);

	h.ttl = 0;
	vp_wr_init(&wr, out, sizeof(out));
	assert_int_equal(rl_fwd_copy(&wr, in, n, &h, &via, true), VP_ERELOAD_TTL);
}

static void overlay_id_is_sha1_tail(void **state)
{
	(void)state;
	/* python3 -c "import hashlib; print(hashlib.sha1(b'vipr.example').hexdigest()[-8:])" */
	assert_int_equal(rl_overlay_id("vipr.example", 12), 0xa881f65a);
	assert_int_equal(rl_overlay_id("example.org", 11), 0x4e38fc3f);
}

static void code_names(void **state)
{
	(void)state;
	assert_string_equal(rl_msg_code_name(RL_STORE_REQ), "store_req");
	assert_string_equal(rl_msg_code_name(RL_ERROR), "error");
	assert_string_equal(rl_msg_code_name(5), "unknown");
	assert_string_equal(rl_error_code_name(RL_ERR_TTL_EXCEEDED), "Error_TTL_Exceeded");
	assert_string_equal(rl_error_code_name(0), "unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(ping_known_answer_decodes),
		cmocka_unit_test(ping_round_trips),
		cmocka_unit_test(ping_built_from_structs_matches_vector),
		cmocka_unit_test(every_destination_form),
		cmocka_unit_test(answer_route_is_reversed_via),
		cmocka_unit_test(reversed_list_with_wrong_count_is_refused),
		cmocka_unit_test(options_policy),
		cmocka_unit_test(bad_token_version_fragment),
		cmocka_unit_test(fragment_header_still_decodes),
		cmocka_unit_test(length_field_over_and_underrun),
		cmocka_unit_test(size_limit_is_exact),
		cmocka_unit_test(every_truncation_fails),
		cmocka_unit_test(list_lengths_that_overrun),
		cmocka_unit_test(bad_destinations),
		cmocka_unit_test(bad_option),
		cmocka_unit_test(extension_and_bool_checks),
		cmocka_unit_test(signer_identity_types),
		cmocka_unit_test(certificates_in_security_block),
		cmocka_unit_test(forward_in_place_with_headroom),
		cmocka_unit_test(forward_in_place_without_headroom),
		cmocka_unit_test(bad_via_leaves_packet_untouched),
		cmocka_unit_test(ttl_zero_is_refused),
		cmocka_unit_test(forward_copy_matches_in_place),
		cmocka_unit_test(overlay_id_is_sha1_tail),
		cmocka_unit_test(code_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
