/*
 * VAP server over loopback: authentication, error answers (400/401/403/420/429/503),
 * framing limits, publish completion and pacing, disconnects, many agents, Notify.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <cmocka.h>

#include "bench/support/vap_harness.h"
#include "common/errcode.h"
#include "common/log.h"

/* ---- a raw, hand-driven session -------------------------------------------- */

typedef struct raw {
	int fd;
	char realm[VAP_MAX_REALM + 1];
	char nonce[VAP_MAX_NONCE + 1];
	uint8_t key[VAP_KEY_LEN];
	char user[32];
	uint8_t buf[70000];
} raw_t;

/* A fresh in-memory store (the test fails if it cannot be made). */
static vap_memstore_t *memstore(void)
{
	vap_memstore_t *ms = NULL;
	assert_int_equal(vap_memstore_new(&ms), 0);
	return ms;
}

static void begin(raw_t *r, vap_enc_t *e, uint8_t *out, size_t cap, uint16_t method, uint8_t tid0)
{
	uint8_t tid[VAP_TID_LEN] = { tid0, 0xAB };
	vap_enc_begin(e, out, cap, vap_type(method, VAP_CLASS_REQUEST), tid);
	vap_enc_str(e, VAP_ATTR_USERNAME, r->user);
	vap_enc_str(e, VAP_ATTR_REALM, r->realm);
	vap_enc_str(e, VAP_ATTR_NONCE, r->nonce);
}

/* Send and read the answer into r->buf; returns the parsed answer's error code (0 = success). */
static int exchange(raw_t *r, const uint8_t *msg, size_t len, vap_msg_t *ans)
{
	long n;
	vap_attr_t a;
	int code;
	char reason[128];
	assert_int_equal(raw_send(r->fd, msg, len), 0);
	n = raw_recv_msg(r->fd, r->buf, sizeof(r->buf));
	assert_true(n > 0);
	assert_int_equal(vap_msg_parse(r->buf, (size_t)n, ans), 0);
	assert_memory_equal(ans->tid, msg + 8, VAP_TID_LEN);
	if (ans->cls == VAP_CLASS_SUCCESS)
		return 0;
	assert_int_equal(ans->cls, VAP_CLASS_ERROR);
	assert_int_equal(vap_msg_find(ans, VAP_ATTR_ERROR_CODE, &a), 0);
	assert_int_equal(vap_attr_error(&a, &code, reason, sizeof(reason)), 0);
	return code;
}

static int finish_send(raw_t *r, vap_enc_t *e, bool sign, vap_msg_t *ans)
{
	long n = vap_enc_finish(e, sign ? r->key : NULL, VAP_KEY_LEN, false);
	assert_true(n > 0);
	return exchange(r, e->wr.start, (size_t)n, ans);
}

static void raw_open(raw_t *r, const harness_t *h, unsigned agent)
{
	uint8_t out[512];
	vap_enc_t e;
	vap_msg_t ans;
	vap_attr_t a;
	char pw[48];
	memset(r, 0, sizeof(*r));
	snprintf(r->user, sizeof(r->user), "agent%u", agent);
	snprintf(pw, sizeof(pw), "pw-%s", r->user);
	r->fd = raw_connect(vap_server_port(h->srv));
	assert_true(r->fd >= 0);
	/* Challenge. */
	vap_enc_begin(&e, out, sizeof(out), vap_type(VAP_REGISTER, VAP_CLASS_REQUEST), (const uint8_t *)"challenge-01");
	vap_enc_str(&e, VAP_ATTR_USERNAME, r->user);
	assert_int_equal(finish_send(r, &e, false, &ans), 401);
	assert_int_equal(ans.mi_off, 0);
	assert_int_equal(vap_msg_find(&ans, VAP_ATTR_REALM, &a), 0);
	assert_int_equal(vap_attr_str(&a, r->realm, sizeof(r->realm)), 0);
	assert_int_equal(vap_msg_find(&ans, VAP_ATTR_NONCE, &a), 0);
	assert_int_equal(vap_attr_str(&a, r->nonce, sizeof(r->nonce)), 0);
	assert_int_equal(vap_key_derive(r->user, r->realm, pw, r->key), 0);
	begin(r, &e, out, sizeof(out), VAP_REGISTER, 1);
	assert_int_equal(finish_send(r, &e, true, &ans), 0);
	assert_int_equal(vap_msg_check_integrity(&ans, r->key, VAP_KEY_LEN), 0);
}

static void raw_keepalive_ok(raw_t *r, uint8_t tid0)
{
	uint8_t out[512];
	vap_enc_t e;
	vap_msg_t ans;
	begin(r, &e, out, sizeof(out), VAP_KEEPALIVE, tid0);
	assert_int_equal(finish_send(r, &e, true, &ans), 0);
	assert_int_equal(vap_msg_check_integrity(&ans, r->key, VAP_KEY_LEN), 0);
}

/* ---- tests -------------------------------------------------------------------- */

static void register_keepalive_unregister(void **state)
{
	harness_t h;
	vap_client_conf_t cc;
	vap_client_t *c;
	vap_server_stats_t st;
	(void)state;
	assert_int_equal(harness_start(&h, NULL, 1, false), 0);
	client_conf(&cc, &h, 0);
	cc.fingerprint = true;
	assert_int_equal(vap_client_connect(&cc, &c), 0);
	assert_int_equal(vap_client_keepalive(c), 0);
	assert_int_equal(vap_client_unregister(c), 0);
	vap_client_close(c);
	harness_stop(&h);
	(void)st;
}

static void wrong_password_is_401(void **state)
{
	harness_t h;
	vap_client_conf_t cc;
	vap_client_t *c = NULL;
	(void)state;
	assert_int_equal(harness_start(&h, NULL, 1, false), 0);
	client_conf(&cc, &h, 0);
	cc.password = "not-the-password";
	assert_int_equal(vap_client_connect(&cc, &c), VP_EAUTH);
	assert_null(c);
	cc.username = "nobody";
	assert_int_equal(vap_client_connect(&cc, &c), VP_EAUTH);
	harness_stop(&h);
}

static void integrity_failure_is_401_and_connection_usable(void **state)
{
	harness_t h;
	raw_t *r = malloc(sizeof(*r));
	uint8_t out[512];
	vap_enc_t e;
	vap_msg_t ans;
	long n;
	(void)state;
	assert_int_equal(harness_start(&h, NULL, 1, false), 0);
	raw_open(r, &h, 0);
	begin(r, &e, out, sizeof(out), VAP_KEEPALIVE, 2);
	n = vap_enc_finish(&e, r->key, VAP_KEY_LEN, false);
	out[n - 1] ^= 0x01;                          /* corrupt the HMAC */
	assert_int_equal(exchange(r, out, (size_t)n, &ans), 401);
	assert_int_equal(ans.mi_off, 0);             /* cannot be signed: the key is in doubt */
	/* Signed with another agent's key. */
	begin(r, &e, out, sizeof(out), VAP_KEEPALIVE, 3);
	n = vap_enc_finish(&e, (const uint8_t *)"0123456789abcdef", 16, false);
	assert_int_equal(exchange(r, out, (size_t)n, &ans), 401);
	raw_keepalive_ok(r, 4);
	close(r->fd);
	free(r);
	harness_stop(&h);
}

static void repeated_auth_failures_close_the_connection(void **state)
{
	harness_t h;
	raw_t *r = malloc(sizeof(*r));
	uint8_t out[512];
	vap_enc_t e;
	vap_msg_t ans;
	(void)state;
	assert_int_equal(harness_start(&h, NULL, 1, false), 0);
	raw_open(r, &h, 0);
	memset(r->key, 0x55, sizeof(r->key));      /* a wrong password */
	for (int i = 0; i < 5; i++) {
		begin(r, &e, out, sizeof(out), VAP_KEEPALIVE, (uint8_t)(2 + i));
		assert_int_equal(finish_send(r, &e, true, &ans), 401);
	}
	/* The fifth 401 was the last answer: the server closed the connection. */
	assert_int_equal(raw_recv_msg(r->fd, r->buf, sizeof(r->buf)), 0);
	close(r->fd);
	free(r);
	harness_stop(&h);
}

static void stale_nonce_is_438(void **state)
{
	harness_t h;
	raw_t *r = malloc(sizeof(*r));
	uint8_t out[512];
	vap_enc_t e;
	vap_msg_t ans;
	vap_attr_t a;
	char nonce[VAP_MAX_NONCE + 1];
	(void)state;
	assert_int_equal(harness_start(&h, NULL, 1, false), 0);
	raw_open(r, &h, 0);
	strcpy(nonce, r->nonce);
	strcpy(r->nonce, "0000");
	begin(r, &e, out, sizeof(out), VAP_KEEPALIVE, 2);
	assert_int_equal(finish_send(r, &e, true, &ans), 438);
	assert_int_equal(vap_msg_check_integrity(&ans, r->key, VAP_KEY_LEN), 0);
	assert_int_equal(vap_msg_find(&ans, VAP_ATTR_NONCE, &a), 0);
	assert_int_equal(vap_attr_str(&a, r->nonce, sizeof(r->nonce)), 0);
	assert_string_equal(r->nonce, nonce);
	raw_keepalive_ok(r, 3);
	close(r->fd);
	free(r);
	harness_stop(&h);
}

static void unknown_required_attribute_is_420(void **state)
{
	harness_t h;
	raw_t *r = malloc(sizeof(*r));
	uint8_t out[512];
	vap_enc_t e;
	vap_msg_t ans;
	vap_attr_t a;
	(void)state;
	assert_int_equal(harness_start(&h, NULL, 1, false), 0);
	raw_open(r, &h, 0);
	begin(r, &e, out, sizeof(out), VAP_PUBLISH, 2);
	vap_enc_action(&e, VAP_SERVICE_NUMBERS, VAP_OP_ADD);
	vap_enc_u32(&e, VAP_ATTR_VSERVICE_ID, 1);
	vap_enc_str(&e, VAP_ATTR_NUMBER, "+14085551212");
	vap_enc_u32(&e, 0x4FEE, 7);
	vap_enc_u32(&e, 0xCFEE, 7);                  /* optional: not reported */
	assert_int_equal(finish_send(r, &e, true, &ans), 420);
	assert_int_equal(vap_msg_check_integrity(&ans, r->key, VAP_KEY_LEN), 0);
	assert_int_equal(vap_msg_find(&ans, VAP_ATTR_UNKNOWN_ATTRIBUTES, &a), 0);
	assert_int_equal(a.len, 2);
	assert_int_equal(a.value[0] << 8 | a.value[1], 0x4FEE);
	assert_int_equal(vap_memstore_count(h.ms), 0);
	/* The same request with only the optional unknown is served. */
	begin(r, &e, out, sizeof(out), VAP_PUBLISH, 3);
	vap_enc_action(&e, VAP_SERVICE_NUMBERS, VAP_OP_ADD);
	vap_enc_u32(&e, VAP_ATTR_VSERVICE_ID, 1);
	vap_enc_str(&e, VAP_ATTR_NUMBER, "+14085551212");
	vap_enc_u32(&e, 0xCFEE, 7);
	assert_int_equal(finish_send(r, &e, true, &ans), 0);
	assert_true(vap_memstore_has(h.ms, "+14085551212", 1));
	close(r->fd);
	free(r);
	harness_stop(&h);
}

static void truncated_attribute_is_400_and_connection_usable(void **state)
{
	harness_t h;
	raw_t *r = malloc(sizeof(*r));
	uint8_t out[512];
	vap_enc_t e;
	vap_msg_t ans;
	long n;
	(void)state;
	assert_int_equal(harness_start(&h, NULL, 1, false), 0);
	raw_open(r, &h, 0);
	begin(r, &e, out, sizeof(out), VAP_KEEPALIVE, 2);
	n = vap_enc_finish(&e, r->key, VAP_KEY_LEN, false);
	/* USERNAME claims 200 bytes: the frame is sound, its content is not. */
	out[22] = 0;
	out[23] = 200;
	assert_int_equal(exchange(r, out, (size_t)n, &ans), 400);
	raw_keepalive_ok(r, 3);
	close(r->fd);
	free(r);
	harness_stop(&h);
}

static void oversized_message_is_400_and_skipped(void **state)
{
	harness_t h;
	raw_t *r = malloc(sizeof(*r));
	uint8_t *big = calloc(1, 40020);
	vap_msg_t ans;
	vap_server_conf_t conf;
	(void)state;
	vap_server_conf_default(&conf);
	conf.max_msg = 4096;
	assert_int_equal(harness_start(&h, &conf, 1, false), 0);
	raw_open(r, &h, 0);
	/* A well-framed 40000-byte body of zero-type attributes. */
	big[0] = (uint8_t)(vap_type(VAP_KEEPALIVE, VAP_CLASS_REQUEST) >> 8);
	big[1] = (uint8_t)vap_type(VAP_KEEPALIVE, VAP_CLASS_REQUEST);
	big[2] = 40000 >> 8;
	big[3] = 40000 & 0xFF;
	big[4] = 0x21; big[5] = 0x12; big[6] = 0xA4; big[7] = 0x42;
	memcpy(big + 8, "oversized-01", 12);
	assert_int_equal(exchange(r, big, 40020, &ans), 400);
	assert_int_equal(ans.method, VAP_KEEPALIVE);
	raw_keepalive_ok(r, 3);
	close(r->fd);
	free(big);
	free(r);
	harness_stop(&h);
}

static void message_cut_by_eof_closes_cleanly(void **state)
{
	harness_t h;
	raw_t *r = malloc(sizeof(*r));
	uint8_t out[512];
	vap_enc_t e;
	vap_server_stats_t st;
	long n;
	(void)state;
	assert_int_equal(harness_start(&h, NULL, 1, false), 0);
	raw_open(r, &h, 0);
	begin(r, &e, out, sizeof(out), VAP_KEEPALIVE, 2);
	n = vap_enc_finish(&e, r->key, VAP_KEY_LEN, false);
	/* Half a message, then the agent stops sending. */
	assert_int_equal(raw_send(r->fd, out, (size_t)n / 2), 0);
	shutdown(r->fd, SHUT_WR);
	assert_int_equal(raw_recv_msg(r->fd, r->buf, sizeof(r->buf)), 0);  /* closed, nothing sent */
	close(r->fd);
	for (int i = 0; i < 100; i++) {
		harness_stats(&h, &st);
		if (st.conns_open == 0)
			break;
		usleep(5000);
	}
	assert_int_equal(st.conns_open, 0);
	/* The server carries on. */
	raw_open(r, &h, 0);
	raw_keepalive_ok(r, 3);
	close(r->fd);
	free(r);
	harness_stop(&h);
}

static void garbage_header_is_400_then_closed(void **state)
{
	harness_t h;
	int fd;
	uint8_t junk[20], buf[512];
	vap_msg_t m;
	vap_attr_t a;
	int code;
	char reason[64];
	long n;
	(void)state;
	assert_int_equal(harness_start(&h, NULL, 1, false), 0);
	fd = raw_connect(vap_server_port(h.srv));
	assert_true(fd >= 0);
	memcpy(junk, "GET / HTTP/1.1\r\nHost", 20);
	assert_int_equal(raw_send(fd, junk, sizeof(junk)), 0);
	n = raw_recv_msg(fd, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(vap_msg_parse(buf, (size_t)n, &m), 0);
	assert_int_equal(m.cls, VAP_CLASS_ERROR);
	assert_int_equal(vap_msg_find(&m, VAP_ATTR_ERROR_CODE, &a), 0);
	assert_int_equal(vap_attr_error(&a, &code, reason, sizeof(reason)), 0);
	assert_int_equal(code, 400);
	assert_int_equal(raw_recv_msg(fd, buf, sizeof(buf)), 0);   /* orderly close */
	close(fd);
	harness_stop(&h);
}

static void request_before_register_is_403(void **state)
{
	harness_t h;
	raw_t *r = malloc(sizeof(*r));
	uint8_t out[512];
	vap_enc_t e;
	vap_msg_t ans;
	vap_attr_t a;
	char pw[48];
	(void)state;
	assert_int_equal(harness_start(&h, NULL, 2, false), 0);
	raw_open(r, &h, 0);
	/* Agent 1's valid credentials on agent 0's connection. */
	strcpy(r->user, "agent1");
	snprintf(pw, sizeof(pw), "pw-agent1");
	assert_int_equal(vap_key_derive(r->user, r->realm, pw, r->key), 0);
	begin(r, &e, out, sizeof(out), VAP_KEEPALIVE, 2);
	assert_int_equal(finish_send(r, &e, true, &ans), 403);
	close(r->fd);
	/* A fresh connection that skips Register. */
	r->fd = raw_connect(vap_server_port(h.srv));
	vap_enc_begin(&e, out, sizeof(out), vap_type(VAP_KEEPALIVE, VAP_CLASS_REQUEST), (const uint8_t *)"challenge-02");
	vap_enc_str(&e, VAP_ATTR_USERNAME, r->user);
	assert_int_equal(finish_send(r, &e, false, &ans), 401);
	assert_int_equal(vap_msg_find(&ans, VAP_ATTR_NONCE, &a), 0);
	vap_attr_str(&a, r->nonce, sizeof(r->nonce));
	begin(r, &e, out, sizeof(out), VAP_UPLOAD_VCR, 3);
	assert_int_equal(finish_send(r, &e, true, &ans), 403);
	close(r->fd);
	free(r);
	harness_stop(&h);
}

static void publish_numbers_and_ranges_stored(void **state)
{
	harness_t h;
	vap_client_conf_t cc;
	vap_client_t *c;
	vap_range_t rg[2];
	const char *nums[] = { "+14085551212", "+442079460000", "+33145678901" };
	uint64_t stored = 0;
	(void)state;
	assert_int_equal(harness_start(&h, NULL, 1, true), 0);
	client_conf(&cc, &h, 0);
	assert_int_equal(vap_client_connect(&cc, &c), 0);
	assert_int_equal(vap_range_parse("+1408555[0000-0999]", NULL, &rg[0]), 0);
	assert_int_equal(vap_range_parse("+1650555[00-49]", NULL, &rg[1]), 0);
	assert_int_equal(vap_client_publish(c, 7, VAP_OP_ADD, nums, 3, rg, 2, &stored), 0);
	assert_int_equal(stored, 3 + 1000 + 50);
	/* Acknowledged means stored: no waiting here. */
	assert_int_equal(vap_memstore_count(h.ms), 3 + 1000 + 50);
	assert_true(vap_memstore_has(h.ms, "+14085550999", 7));
	assert_true(vap_memstore_has(h.ms, "+165055549", 7));
	assert_true(vap_memstore_has(h.ms, "+442079460000", 7));
	assert_false(vap_memstore_has(h.ms, "+14085551000", 7));
	assert_false(vap_memstore_has(h.ms, "+14085550999", 8));
	/* Withdraw a range. */
	assert_int_equal(vap_client_publish(c, 7, VAP_OP_WITHDRAW, NULL, 0, &rg[1], 1, &stored), 0);
	assert_int_equal(stored, 50);
	assert_false(vap_memstore_has(h.ms, "+165055549", 7));
	vap_client_close(c);
	harness_stop(&h);
}

static void many_numbers_split_over_pipelined_messages(void **state)
{
	harness_t h;
	vap_client_conf_t cc;
	vap_client_t *c;
	enum { N = 5000 };
	char (*buf)[VP_E164_BUFLEN] = malloc(N * sizeof(*buf));
	const char **nums = malloc(N * sizeof(*nums));
	uint64_t stored = 0;
	(void)state;
	for (int i = 0; i < N; i++) {
		snprintf(buf[i], VP_E164_BUFLEN, "+4930%07d", i);
		nums[i] = buf[i];
	}
	assert_int_equal(harness_start(&h, NULL, 1, true), 0);
	client_conf(&cc, &h, 0);
	cc.max_msg = 2048;          /* forces ~60 messages, window 4 */
	assert_int_equal(vap_client_connect(&cc, &c), 0);
	assert_int_equal(vap_client_publish(c, 3, VAP_OP_ADD, nums, N, NULL, 0, &stored), 0);
	assert_int_equal(stored, N);
	assert_int_equal(vap_memstore_count(h.ms), N);
	assert_true(vap_memstore_has(h.ms, "+49300004999", 3));
	vap_client_close(c);
	harness_stop(&h);
	free(buf);
	free(nums);
}

static void big_range_cut_into_bounded_publishes(void **state)
{
	harness_t h;
	vap_client_conf_t cc;
	vap_client_t *c;
	vap_range_t rg;
	vap_server_stats_t st;
	uint64_t stored = 0;
	(void)state;
	assert_int_equal(harness_start(&h, NULL, 1, true), 0);
	client_conf(&cc, &h, 0);
	assert_int_equal(vap_client_connect(&cc, &c), 0);
	assert_int_equal(vap_range_parse("+1408[000000-199999]", NULL, &rg), 0);
	assert_int_equal(vap_client_publish(c, 1, VAP_OP_ADD, NULL, 0, &rg, 1, &stored), 0);
	assert_int_equal(stored, 200000);
	assert_int_equal(vap_memstore_count(h.ms), 200000);
	assert_true(vap_memstore_has(h.ms, "+1408199999", 1));
	assert_true(vap_memstore_has(h.ms, "+1408065536", 1));
	harness_stats(&h, &st);
	assert_int_equal(st.requests, 2 + 4);      /* challenge, Register, 4 Publishes of <= 65536 */
	vap_client_close(c);
	harness_stop(&h);
}

static void store_failure_is_500_with_count(void **state)
{
	harness_t h;
	vap_client_conf_t cc;
	vap_client_t *c;
	vap_range_t rg;
	uint64_t stored = 0;
	(void)state;
	assert_int_equal(harness_start(&h, NULL, 1, true), 0);
	vap_memstore_fail_number(h.ms, "+14085550005");
	client_conf(&cc, &h, 0);
	assert_int_equal(vap_client_connect(&cc, &c), 0);
	assert_int_equal(vap_range_parse("+1408555000[0-9]", NULL, &rg), 0);
	assert_int_equal(vap_client_publish(c, 1, VAP_OP_ADD, NULL, 0, &rg, 1, &stored), VP_EVAP_REJECTED);
	assert_int_equal(vap_client_last_error(c)->code, 500);
	assert_int_equal(stored, 9);
	assert_int_equal(vap_memstore_count(h.ms), 9);
	vap_client_close(c);
	harness_stop(&h);
}

static void stores_paced_within_inflight_limit(void **state)
{
	harness_t h;
	vap_client_conf_t cc;
	vap_client_t *c;
	vap_server_conf_t conf;
	vap_range_t rg;
	uint64_t stored = 0;
	(void)state;
	vap_server_conf_default(&conf);
	conf.store_inflight = 5;
	conf.store_rate = 20000;    /* paced, yet quick enough for a unit test */
	assert_int_equal(harness_start(&h, &conf, 1, true), 0);
	client_conf(&cc, &h, 0);
	assert_int_equal(vap_client_connect(&cc, &c), 0);
	assert_int_equal(vap_range_parse("+1408555[000-999]", NULL, &rg), 0);
	assert_int_equal(vap_client_publish(c, 1, VAP_OP_ADD, NULL, 0, &rg, 1, &stored), 0);
	assert_int_equal(stored, 1000);
	assert_true(vap_memstore_max_outstanding(h.ms) <= 5);
	assert_true(vap_memstore_max_outstanding(h.ms) >= 1);
	vap_client_close(c);
	harness_stop(&h);
}

/* A store hook that timestamps every store before handing it to the memstore. */
typedef struct timed {
	vap_hooks_t inner;
	uint64_t t[400];
	unsigned n;
} timed_t;

static int timed_store(void *ctx, const vap_store_req_t *req)
{
	timed_t *t = ctx;
	if (t->n < 400)
		t->t[t->n++] = vp_time_mono_ns();
	return t->inner.store(t->inner.ctx, req);
}

static void *run_server(void *arg)
{
	vap_server_run(arg);
	return NULL;
}

static void store_rate_limit_paces_stores(void **state)
{
	enum { N = 300 };
	const double rate = 1000, burst = rate / 10;
	vap_server_conf_t conf;
	vap_hooks_t hooks;
	vap_server_t *srv;
	vap_memstore_t *ms = memstore();
	timed_t *t = calloc(1, sizeof(*t));
	vap_client_conf_t cc;
	vap_client_t *c;
	vap_range_t rg;
	pthread_t th;
	uint64_t stored = 0;
	(void)state;
	vap_server_conf_default(&conf);
	conf.store_rate = rate;
	vap_memstore_hooks(ms, &t->inner);
	hooks = t->inner;
	hooks.ctx = t;
	hooks.store = timed_store;
	assert_int_equal(vap_server_create(&conf, &hooks, &srv), 0);
	vap_memstore_attach(ms, srv, true);
	assert_int_equal(vap_server_add_agent(srv, "agent0", "pw-agent0"), 0);
	assert_int_equal(pthread_create(&th, NULL, run_server, srv), 0);
	memset(&cc, 0, sizeof(cc));
	cc.host = "127.0.0.1";
	cc.port = vap_server_port(srv);
	cc.username = "agent0";
	cc.password = "pw-agent0";
	assert_int_equal(vap_client_connect(&cc, &c), 0);
	assert_int_equal(vap_range_parse("+1408555[000-299]", NULL, &rg), 0);
	assert_int_equal(vap_client_publish(c, 1, VAP_OP_ADD, NULL, 0, &rg, 1, &stored), 0);
	assert_int_equal(stored, N);
	assert_int_equal(t->n, N);
	/* Store i cannot start before (i - burst) / rate seconds after the first
	 * (a slow machine only makes them later, so this cannot fail spuriously). */
	for (unsigned i = 0; i < N; i++) {
		double dt = (double)(t->t[i] - t->t[0]) / 1e9;
		double floor_s = ((double)i - burst - 1) / rate;
		if (dt < floor_s - 0.002)
			fail_msg("store %u started after %.4f s, pacing allows %.4f s", i, dt, floor_s);
	}
	vap_client_close(c);
	vap_server_stop(srv);
	pthread_join(th, NULL);
	vap_server_destroy(srv);
	vap_memstore_free(ms);
	free(t);
}

static void full_store_queue_is_503(void **state)
{
	harness_t h;
	vap_client_conf_t cc;
	vap_client_t *c;
	vap_server_conf_t conf;
	vap_range_t rg;
	uint64_t stored = 0;
	(void)state;
	vap_server_conf_default(&conf);
	conf.store_queue_max = 100;
	assert_int_equal(harness_start(&h, &conf, 1, true), 0);
	client_conf(&cc, &h, 0);
	assert_int_equal(vap_client_connect(&cc, &c), 0);
	assert_int_equal(vap_range_parse("+1408555[000-999]", NULL, &rg), 0);
	assert_int_equal(vap_client_publish(c, 1, VAP_OP_ADD, NULL, 0, &rg, 1, &stored), VP_EBUSY);
	assert_int_equal(vap_client_last_error(c)->code, 503);
	assert_true(vap_client_last_error(c)->retry_after_ms > 0);
	assert_int_equal(vap_memstore_count(h.ms), 0);
	vap_client_close(c);
	harness_stop(&h);
}

static void rate_limit_is_429_with_retry_after(void **state)
{
	harness_t h;
	vap_client_conf_t cc;
	vap_client_t *c;
	vap_server_conf_t conf;
	int rc = 0;
	(void)state;
	vap_server_conf_default(&conf);
	conf.req_rate = 1;
	conf.req_burst = 3;        /* Register + 2 */
	assert_int_equal(harness_start(&h, &conf, 1, false), 0);
	client_conf(&cc, &h, 0);
	assert_int_equal(vap_client_connect(&cc, &c), 0);
	for (int i = 0; i < 5 && rc == 0; i++)
		rc = vap_client_keepalive(c);
	assert_int_equal(rc, VP_ERATELIMIT);
	assert_int_equal(vap_client_last_error(c)->code, 429);
	assert_true(vap_client_last_error(c)->retry_after_ms > 0);
	assert_true(vap_client_last_error(c)->retry_after_ms <= 1001);
	vap_client_close(c);
	harness_stop(&h);
}

static void upload_validated_whole(void **state)
{
	harness_t h;
	vap_client_conf_t cc;
	vap_client_t *c;
	vap_vcr_t v[2], last;
	(void)state;
	assert_int_equal(harness_start(&h, NULL, 1, false), 0);
	client_conf(&cc, &h, 0);
	assert_int_equal(vap_client_connect(&cc, &c), 0);
	memset(v, 0, sizeof(v));
	strcpy(v[0].called, "+14085551212");
	strcpy(v[0].caller, "+442079460000");
	v[0].start_ms = 1700000000000ull;
	v[0].stop_ms = 1700000060000ull;
	v[0].direction = VAP_DIR_ORIGINATING;
	v[1] = v[0];
	v[1].caller[0] = '\0';
	v[1].direction = VAP_DIR_TERMINATING;
	assert_int_equal(vap_client_upload(c, v, 2), 0);
	assert_int_equal(vap_memstore_vcrs(h.ms, &last), 2);
	assert_string_equal(last.called, "+14085551212");
	assert_string_equal(last.caller, "");
	assert_int_equal(last.direction, VAP_DIR_TERMINATING);
	/* Stop before start: the whole request is refused, nothing stored. */
	v[1].stop_ms = v[1].start_ms - 1;
	assert_int_equal(vap_client_upload(c, v, 2), VP_EVAP_REJECTED);
	assert_int_equal(vap_client_last_error(c)->code, 400);
	assert_int_equal(vap_memstore_vcrs(h.ms, NULL), 2);
	vap_client_close(c);
	harness_stop(&h);
}

static void vservice_published(void **state)
{
	harness_t h;
	vap_client_conf_t cc;
	vap_client_t *c;
	vap_vservice_t vs;
	(void)state;
	assert_int_equal(harness_start(&h, NULL, 1, false), 0);
	client_conf(&cc, &h, 0);
	assert_int_equal(vap_client_connect(&cc, &c), 0);
	memset(&vs, 0, sizeof(vs));
	vs.id = 7;
	vs.op = VAP_OP_ADD;
	vs.n_uris = 2;
	vs.uris[0] = "sips:trunk1@a.example";
	vs.uris[1] = "sips:trunk2@a.example";
	vs.n_black = 1;
	vs.black[0] = "spam.example";
	assert_int_equal(vap_client_publish_vservice(c, &vs), 0);
	assert_int_equal(vap_memstore_vservices(h.ms), 1);
	vs.n_uris = 0;               /* an add without URIs is refused */
	assert_int_equal(vap_client_publish_vservice(c, &vs), VP_EVAP_REJECTED);
	assert_int_equal(vap_client_last_error(c)->code, 400);
	vap_client_close(c);
	harness_stop(&h);
}

static void disconnect_mid_publish_loses_nothing_acknowledged(void **state)
{
	harness_t h;
	vap_client_conf_t cc;
	vap_client_t *c;
	vap_range_t a, b;
	uint64_t stored = 0;
	vap_server_stats_t st;
	raw_t *r = malloc(sizeof(*r));
	uint8_t *out = malloc(8192);
	vap_enc_t e;
	long n;
	(void)state;
	assert_int_equal(harness_start(&h, NULL, 1, true), 0);
	client_conf(&cc, &h, 0);
	assert_int_equal(vap_client_connect(&cc, &c), 0);
	assert_int_equal(vap_range_parse("+1408555[0000-1999]", NULL, &a), 0);
	assert_int_equal(vap_client_publish(c, 1, VAP_OP_ADD, NULL, 0, &a, 1, &stored), 0);
	assert_int_equal(stored, 2000);
	vap_client_close(c);
	/* Batch B: stores are held so the agent leaves while they are in flight. */
	vap_memstore_hold(h.ms, true);
	raw_open(r, &h, 0);
	assert_int_equal(vap_range_parse("+1650555[0000-9999]", NULL, &b), 0);
	begin(r, &e, out, 8192, VAP_PUBLISH, 9);
	vap_enc_action(&e, VAP_SERVICE_NUMBERS, VAP_OP_ADD);
	vap_enc_u32(&e, VAP_ATTR_VSERVICE_ID, 1);
	vap_enc_range(&e, &b);
	n = vap_enc_finish(&e, r->key, VAP_KEY_LEN, false);
	assert_int_equal(raw_send(r->fd, out, (size_t)n), 0);
	for (int i = 0; i < 200 && vap_memstore_outstanding(h.ms) == 0; i++)
		usleep(5000);
	assert_true(vap_memstore_outstanding(h.ms) > 0);
	close(r->fd);
	usleep(50000);
	vap_memstore_hold(h.ms, false);
	for (int i = 0; i < 400 && vap_memstore_outstanding(h.ms) > 0; i++)
		usleep(5000);
	assert_int_equal(vap_memstore_outstanding(h.ms), 0);
	/* Everything acknowledged is there; B was cancelled after what was in flight. */
	for (unsigned i = 0; i < 2000; i += 97) {
		char num[VP_E164_BUFLEN];
		vap_range_number(&a, i, num);
		assert_true(vap_memstore_has(h.ms, num, 1));
	}
	assert_true(vap_memstore_count(h.ms) >= 2000);
	assert_true(vap_memstore_count(h.ms) < 2000 + 10000);
	/* The server stays healthy: a new agent session works. */
	assert_int_equal(vap_client_connect(&cc, &c), 0);
	assert_int_equal(vap_client_keepalive(c), 0);
	vap_client_close(c);
	usleep(20000);
	harness_stats(&h, &st);
	assert_true(st.stores_started < 2000 + 10000);
	free(out);
	free(r);
	harness_stop(&h);
}

static unsigned g_many = 1000;   /* lowered in main() if descriptors are short */

static void many_agents_at_once(void **state)
{
	const int N = (int)g_many;
	harness_t h;
	vap_client_t **c = calloc(N, sizeof(*c));
	vap_client_conf_t cc;
	vap_server_stats_t st;
	(void)state;
	assert_int_equal(harness_start(&h, NULL, N, true), 0);
	for (int i = 0; i < N; i++) {
		client_conf(&cc, &h, (unsigned)i);
		assert_int_equal(vap_client_connect(&cc, &c[i]), 0);
	}
	harness_stats(&h, &st);
	assert_int_equal(st.conns_open, N);
	/* Every agent pipelines an upload, then all answers are collected. */
	for (int i = 0; i < N; i++) {
		vap_vcr_t v = { .called = "+14085551212", .start_ms = 1000, .stop_ms = 2000,
		                .direction = VAP_DIR_TERMINATING };
		uint8_t tid[VAP_TID_LEN];
		assert_int_equal(vap_client_send_upload(c[i], &v, 1, tid), 0);
	}
	for (int i = 0; i < N; i++) {
		uint8_t tid[VAP_TID_LEN];
		assert_int_equal(vap_client_recv_answer(c[i], tid, 5000), 0);
	}
	assert_int_equal(vap_memstore_vcrs(h.ms, NULL), N);
	for (int i = 0; i < N; i++) {
		char num[VP_E164_BUFLEN];
		const char *p = num;
		snprintf(num, sizeof(num), "+3314%07d", i);
		assert_int_equal(vap_client_publish(c[i], 1, VAP_OP_ADD, &p, 1, NULL, 0, NULL), 0);
	}
	assert_int_equal(vap_memstore_count(h.ms), N);
	for (int i = 0; i < N; i++)
		vap_client_close(c[i]);
	free(c);
	harness_stop(&h);
}

typedef struct notify_arg {
	vap_route_t route;
	int sent;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
} notify_arg_t;

static void do_notify(vap_server_t *srv, void *p)
{
	notify_arg_t *a = p;
	int n = vap_server_notify(srv, &a->route);
	pthread_mutex_lock(&a->lock);
	a->sent = n;
	a->done = true;
	pthread_cond_signal(&a->cond);
	pthread_mutex_unlock(&a->lock);
}

static void notify_reaches_every_subscriber(void **state)
{
	enum { N = 5 };
	harness_t h;
	vap_client_t *c[N];
	vap_client_conf_t cc;
	notify_arg_t na;
	vap_route_t got;
	(void)state;
	assert_int_equal(harness_start(&h, NULL, N, false), 0);
	for (int i = 0; i < N; i++) {
		client_conf(&cc, &h, (unsigned)i);
		assert_int_equal(vap_client_connect(&cc, &c[i]), 0);
		/* Agents 0..3 follow VService 7, agent 4 follows 8. */
		assert_int_equal(vap_client_subscribe(c[i], i < 4 ? 7 : 8, 3600), 0);
	}
	assert_int_equal(vap_client_subscribe(c[3], 7, 0), 0);    /* 3 unsubscribes */
	memset(&na, 0, sizeof(na));
	pthread_mutex_init(&na.lock, NULL);
	pthread_cond_init(&na.cond, NULL);
	strcpy(na.route.number, "+14085551212");
	na.route.vservice_id = 7;
	na.route.expires = 86400;
	na.route.n_uris = 2;
	strcpy(na.route.uris[0], "sips:+14085551212@b.example");
	strcpy(na.route.uris[1], "sips:+14085551212@b2.example");
	na.route.ticket_len = 37;
	for (int i = 0; i < 37; i++)
		na.route.ticket[i] = (uint8_t)(i * 7);
	assert_int_equal(vap_server_post(h.srv, do_notify, &na), 0);
	pthread_mutex_lock(&na.lock);
	while (!na.done)
		pthread_cond_wait(&na.cond, &na.lock);
	pthread_mutex_unlock(&na.lock);
	assert_int_equal(na.sent, 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(vap_client_wait_notify(c[i], &got, 2000), 0);
		assert_string_equal(got.number, "+14085551212");
		assert_int_equal(got.vservice_id, 7);
		assert_int_equal(got.expires, 86400);
		assert_int_equal(got.n_uris, 2);
		assert_string_equal(got.uris[1], "sips:+14085551212@b2.example");
		assert_int_equal(got.ticket_len, 37);
		assert_memory_equal(got.ticket, na.route.ticket, 37);
	}
	assert_int_equal(vap_client_wait_notify(c[3], &got, 100), VP_ETIMEOUT);
	assert_int_equal(vap_client_wait_notify(c[4], &got, 100), VP_ETIMEOUT);
	for (int i = 0; i < N; i++)
		vap_client_close(c[i]);
	pthread_mutex_destroy(&na.lock);
	pthread_cond_destroy(&na.cond);
	harness_stop(&h);
}

static void slow_store_stops_reading_the_agent(void **state)
{
	enum { PUBS = 10 };
	harness_t h;
	vap_server_conf_t conf;
	vap_server_stats_t st;
	raw_t *r = malloc(sizeof(*r));
	uint8_t out[512];
	long n;
	(void)state;
	vap_server_conf_default(&conf);
	conf.max_pending = 2;
	assert_int_equal(harness_start(&h, &conf, 1, true), 0);
	vap_memstore_hold(h.ms, true);
	raw_open(r, &h, 0);
	/* Ten pipelined Publishes of 10 numbers each while stores do not complete. */
	for (int i = 0; i < PUBS; i++) {
		vap_enc_t e;
		vap_range_t rg;
		char range[32];
		snprintf(range, sizeof(range), "+1408555%02d[00-09]", i);
		assert_int_equal(vap_range_parse(range, NULL, &rg), 0);
		begin(r, &e, out, sizeof(out), VAP_PUBLISH, (uint8_t)(10 + i));
		vap_enc_action(&e, VAP_SERVICE_NUMBERS, VAP_OP_ADD);
		vap_enc_u32(&e, VAP_ATTR_VSERVICE_ID, 1);
		vap_enc_range(&e, &rg);
		n = vap_enc_finish(&e, r->key, VAP_KEY_LEN, false);
		assert_int_equal(raw_send(r->fd, out, (size_t)n), 0);
	}
	/* Only max_pending Publishes are read; the rest wait in the socket. */
	for (int i = 0; i < 200; i++) {
		harness_stats(&h, &st);
		if (st.stores_queued >= 2 * 10)
			break;
		usleep(10000);
	}
	usleep(100000);
	harness_stats(&h, &st);
	assert_int_equal(st.stores_queued, 2 * 10);
	vap_memstore_hold(h.ms, false);
	for (int i = 0; i < PUBS; i++) {
		vap_msg_t m;
		n = raw_recv_msg(r->fd, r->buf, sizeof(r->buf));
		assert_true(n > 0);
		assert_int_equal(vap_msg_parse(r->buf, (size_t)n, &m), 0);
		assert_int_equal(m.cls, VAP_CLASS_SUCCESS);
	}
	assert_int_equal(vap_memstore_count(h.ms), PUBS * 10);
	close(r->fd);
	free(r);
	harness_stop(&h);
}

static void idle_connection_closed(void **state)
{
	harness_t h;
	vap_server_conf_t conf;
	vap_client_conf_t cc;
	vap_client_t *c;
	vap_route_t rt;
	(void)state;
	vap_server_conf_default(&conf);
	conf.idle_timeout_ms = 200;
	assert_int_equal(harness_start(&h, &conf, 1, false), 0);
	client_conf(&cc, &h, 0);
	assert_int_equal(vap_client_connect(&cc, &c), 0);
	/* Silent for longer than the timeout (the sweep runs every second). */
	assert_int_equal(vap_client_wait_notify(c, &rt, 3000), VP_ECLOSED);
	vap_client_close(c);
	harness_stop(&h);
}

static void *release_stores_later(void *arg)
{
	usleep(2500000);
	vap_memstore_hold(arg, false);
	return NULL;
}

/*
 * An agent waiting for the answer to a Publish is not idle: the stores take 2.5 s (held), the idle
 * timeout is 200 ms, and the Publish is still answered on the same connection with every number stored.
 */
static void publish_waiting_for_stores_is_not_idle(void **state)
{
	harness_t h;
	vap_server_conf_t conf;
	vap_client_conf_t cc;
	vap_client_t *c;
	vap_range_t a;
	uint64_t stored = 0;
	pthread_t th;
	(void)state;
	vap_server_conf_default(&conf);
	conf.idle_timeout_ms = 200;
	assert_int_equal(harness_start(&h, &conf, 1, true), 0);
	vap_memstore_hold(h.ms, true);
	client_conf(&cc, &h, 0);
	assert_int_equal(vap_client_connect(&cc, &c), 0);
	assert_int_equal(pthread_create(&th, NULL, release_stores_later, h.ms), 0);
	assert_int_equal(vap_range_parse("+1408555[0000-0099]", NULL, &a), 0);
	assert_int_equal(vap_client_publish(c, 1, VAP_OP_ADD, NULL, 0, &a, 1, &stored), 0);
	assert_int_equal(stored, 100);
	pthread_join(th, NULL);
	/* Answered and silent again: now it is idle and closed. */
	vap_route_t rt;
	assert_int_equal(vap_client_wait_notify(c, &rt, 3000), VP_ECLOSED);
	vap_client_close(c);
	harness_stop(&h);
}

static void connections_beyond_limit_refused(void **state)
{
	harness_t h;
	vap_server_conf_t conf;
	vap_client_conf_t cc;
	vap_client_t *c[3] = { 0 };
	vap_server_stats_t st;
	(void)state;
	vap_server_conf_default(&conf);
	conf.max_conns = 2;
	assert_int_equal(harness_start(&h, &conf, 3, false), 0);
	for (unsigned i = 0; i < 2; i++) {
		client_conf(&cc, &h, i);
		assert_int_equal(vap_client_connect(&cc, &c[i]), 0);
	}
	client_conf(&cc, &h, 2);
	assert_int_equal(vap_client_connect(&cc, &c[2]), VP_ECLOSED);
	harness_stats(&h, &st);
	assert_int_equal(st.conns_refused, 1);
	assert_int_equal(st.conns_open, 2);
	/* A slot frees up when an agent leaves. */
	vap_client_close(c[0]);
	usleep(50000);
	assert_int_equal(vap_client_connect(&cc, &c[2]), 0);
	vap_client_close(c[1]);
	vap_client_close(c[2]);
	harness_stop(&h);
}

/*
 * Without TLS the server listens only on loopback unless told otherwise: a
 * MESSAGE-INTEGRITY captured off the wire lets anyone test password guesses
 * offline.  The refusal comes before any socket is opened.
 */
static void plain_tcp_is_refused_off_loopback(void **state)
{
	static const char *const refused[] = { "0.0.0.0", "192.0.2.1", "::", "2001:db8::1", "::ffff:192.0.2.1" };
	static const char *const allowed[] = { "127.0.0.1", "127.1.2.3", "::1" };
	vap_server_conf_t conf;
	vap_hooks_t hooks;
	vap_server_t *srv = NULL;
	vap_memstore_t *ms = memstore();
	(void)state;
	vap_memstore_hooks(ms, &hooks);
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		vap_server_conf_default(&conf);
		conf.port = 0;
		conf.bind_addr = refused[i];
		assert_int_equal(vap_server_create(&conf, &hooks, &srv), VP_ECONFIG);
		assert_null(srv);
	}
	for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
		vap_server_conf_default(&conf);
		conf.port = 0;
		conf.bind_addr = allowed[i];
		assert_int_equal(vap_server_create(&conf, &hooks, &srv), 0);
		vap_server_destroy(srv);
		srv = NULL;
	}
	vap_memstore_free(ms);
}

/*
 * vap_server_get_stats() from another thread while the server thread serves: every counter read only grows,
 * and once the client holds its answers the reader sees each request counted.
 */
typedef struct stats_reader {
	vap_server_t *srv;
	atomic_bool stop;
	unsigned long reads;
	bool went_down;
} stats_reader_t;

static void *stats_reader_run(void *arg)
{
	stats_reader_t *r = arg;
	vap_server_stats_t prev, st;
	uint64_t deadline = vp_time_mono_ns() + 30ull * 1000000000ull; /* bounded even if the test hangs */
	memset(&prev, 0, sizeof(prev));
	while (!atomic_load(&r->stop) && vp_time_mono_ns() < deadline && r->reads < 100000000ul) {
		vap_server_get_stats(r->srv, &st);
		if (st.requests < prev.requests || st.responses_ok < prev.responses_ok ||
		    st.conns_total < prev.conns_total)
			r->went_down = true;
		prev = st;
		r->reads++;
	}
	return NULL;
}

static void stats_read_from_another_thread_while_serving(void **state)
{
	enum { KEEPALIVES = 300 };
	harness_t h;
	vap_client_conf_t cc;
	vap_client_t *c;
	vap_server_stats_t st;
	stats_reader_t r = { 0 };
	pthread_t th;
	(void)state;
	assert_int_equal(harness_start(&h, NULL, 1, false), 0);
	r.srv = h.srv;
	assert_int_equal(pthread_create(&th, NULL, stats_reader_run, &r), 0);
	client_conf(&cc, &h, 0);
	assert_int_equal(vap_client_connect(&cc, &c), 0);
	for (int i = 0; i < KEEPALIVES; i++)
		assert_int_equal(vap_client_keepalive(c), 0);
	vap_server_get_stats(h.srv, &st);
	atomic_store(&r.stop, true);
	pthread_join(th, NULL);
	assert_false(r.went_down);
	assert_true(r.reads > 0);
	assert_int_equal(st.requests, 2 + KEEPALIVES);     /* challenge, Register, the keepalives */
	assert_int_equal(st.responses_ok, 1 + KEEPALIVES); /* the challenge is counted as a 401 */
	assert_int_equal(st.conns_total, 1);
	vap_client_close(c);
	harness_stop(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(register_keepalive_unregister),
		cmocka_unit_test(stats_read_from_another_thread_while_serving),
		cmocka_unit_test(plain_tcp_is_refused_off_loopback),
		cmocka_unit_test(wrong_password_is_401),
		cmocka_unit_test(integrity_failure_is_401_and_connection_usable),
		cmocka_unit_test(stale_nonce_is_438),
		cmocka_unit_test(repeated_auth_failures_close_the_connection),
		cmocka_unit_test(unknown_required_attribute_is_420),
		cmocka_unit_test(truncated_attribute_is_400_and_connection_usable),
		cmocka_unit_test(oversized_message_is_400_and_skipped),
		cmocka_unit_test(message_cut_by_eof_closes_cleanly),
		cmocka_unit_test(garbage_header_is_400_then_closed),
		cmocka_unit_test(request_before_register_is_403),
		cmocka_unit_test(publish_numbers_and_ranges_stored),
		cmocka_unit_test(many_numbers_split_over_pipelined_messages),
		cmocka_unit_test(big_range_cut_into_bounded_publishes),
		cmocka_unit_test(store_failure_is_500_with_count),
		cmocka_unit_test(stores_paced_within_inflight_limit),
		cmocka_unit_test(store_rate_limit_paces_stores),
		cmocka_unit_test(full_store_queue_is_503),
		cmocka_unit_test(rate_limit_is_429_with_retry_after),
		cmocka_unit_test(upload_validated_whole),
		cmocka_unit_test(vservice_published),
		cmocka_unit_test(disconnect_mid_publish_loses_nothing_acknowledged),
		cmocka_unit_test(many_agents_at_once),
		cmocka_unit_test(notify_reaches_every_subscriber),
		cmocka_unit_test(slow_store_stops_reading_the_agent),
		cmocka_unit_test(idle_connection_closed),
		cmocka_unit_test(publish_waiting_for_stores_is_not_idle),
		cmocka_unit_test(connections_beyond_limit_refused),
	};
	struct rlimit rl;
	vp_log_setup(VP_LOG_WARN, NULL);
	/* Both ends of every agent connection live in this process. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		if (rl.rlim_cur < 2 * g_many + 100 && rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max < 2 * g_many + 100 ? rl.rlim_max : 2 * g_many + 100;
			setrlimit(RLIMIT_NOFILE, &rl);
			getrlimit(RLIMIT_NOFILE, &rl);
		}
		if (rl.rlim_cur < 2 * g_many + 100)
			g_many = (unsigned)(rl.rlim_cur - 100) / 2;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
