/*
 * tests/control/admin/test_admin.c - the admin protocol (control/admin): codec, framing limits, malformed
 * and oversize requests, one request at a time per connection, slow clients and deferred answers that do
 * not block others, unknown and unserved commands, read-only vs mutating, socket mode and peer uid.
 * Every server listens on a Unix socket in a fresh temporary directory; every wait is bounded.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/clock.h"
#include "common/errcode.h"
#include "common/net.h"
#include "control/admin/admin.h"

#define WAIT_MS 5000 /* bound of every wait for an answer */

/* ---- a daemon stand-in: handlers that count, remember and defer ---- */

typedef struct fake {
	pthread_mutex_t mu;
	int status_calls, store_calls, leave_calls, fetch_calls;
	char last_number[64];
	adm_req_t *held; /* a fetch whose answer the test gives later */
} fake_t;

static int h_status(adm_req_t *req, void *ctx)
{
	fake_t *f = ctx;
	pthread_mutex_lock(&f->mu);
	int n = ++f->status_calls;
	pthread_mutex_unlock(&f->mu);
	adm_req_reply(req, json_pack("{s:s, s:i}", "state", "joined", "calls", n));
	return 0;
}

static int h_store(adm_req_t *req, void *ctx)
{
	fake_t *f = ctx;
	pthread_mutex_lock(&f->mu);
	f->store_calls++;
	snprintf(f->last_number, sizeof(f->last_number), "%s", adm_req_arg(req));
	pthread_mutex_unlock(&f->mu);
	adm_req_reply(req, json_pack("{s:s}", "stored", adm_req_arg(req)));
	return 0;
}

static int h_leave(adm_req_t *req, void *ctx)
{
	fake_t *f = ctx;
	pthread_mutex_lock(&f->mu);
	f->leave_calls++;
	pthread_mutex_unlock(&f->mu);
	adm_req_reply(req, NULL);
	return 0;
}

static int h_fetch(adm_req_t *req, void *ctx)
{
	fake_t *f = ctx;
	pthread_mutex_lock(&f->mu);
	f->fetch_calls++;
	f->held = req;
	pthread_mutex_unlock(&f->mu);
	return 0;
}

static int h_probe(adm_req_t *req, void *ctx)
{
	(void)req;
	(void)ctx;
	return VP_ENOROUTE;
}

/* stats: an 8 MiB answer, far more than a socket buffer holds, for the slow-reader test */
static int h_stats_big(adm_req_t *req, void *ctx)
{
	(void)ctx;
	size_t len = 8u << 20;
	char *blob = malloc(len + 1);
	if (!blob)
		return VP_ENOMEM;
	memset(blob, 'x', len);
	blob[len] = '\0';
	adm_req_reply(req, json_pack("{s:s}", "blob", blob));
	free(blob);
	return 0;
}

static adm_req_t *wait_held(fake_t *f)
{
	vp_deadline_t dl = vp_deadline_in_ms(WAIT_MS);
	for (;;) {
		pthread_mutex_lock(&f->mu);
		adm_req_t *r = f->held;
		f->held = NULL;
		pthread_mutex_unlock(&f->mu);
		if (r || vp_deadline_expired(&dl))
			return r;
		vp_sleep_ms(5);
	}
}

typedef struct env {
	char dir[64];
	char path[128];
	fake_t fake;
	adm_server_t *srv;
} env_t;

static const adm_handlers_t handlers = { .fn = {
	[ADM_CMD_STATUS] = h_status, [ADM_CMD_STORE] = h_store, [ADM_CMD_LEAVE] = h_leave,
	[ADM_CMD_FETCH] = h_fetch, [ADM_CMD_PROBE] = h_probe, [ADM_CMD_STATS] = h_stats_big,
	/* ALARMS and VALIDATION deliberately unserved */
} };

static env_t *env_new(const adm_server_opts_t *opts)
{
	env_t *e = calloc(1, sizeof(*e));
	assert_non_null(e);
	snprintf(e->dir, sizeof(e->dir), "/tmp/adm-test-XXXXXX");
	assert_non_null(mkdtemp(e->dir));
	snprintf(e->path, sizeof(e->path), "%s/admin.sock", e->dir);
	pthread_mutex_init(&e->fake.mu, NULL);
	assert_int_equal(adm_server_new(e->path, &handlers, &e->fake, opts, &e->srv), 0);
	return e;
}

static void env_free(env_t *e)
{
	adm_server_free(e->srv);
	/* a fetch the test left unanswered: answering after the server is gone must be harmless */
	if (e->fake.held)
		adm_req_reply(e->fake.held, NULL);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", e->dir);
	assert_int_equal(system(cmd), 0);
	pthread_mutex_destroy(&e->fake.mu);
	free(e);
}

/* ---- raw socket helpers (the client library refuses to send what these send) ---- */

static int raw_connect(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	return fd;
}

static void raw_send(int fd, const void *buf, size_t len)
{
	assert_int_equal(send(fd, buf, len, MSG_NOSIGNAL), (ssize_t)len);
}

static void raw_send_frame(int fd, const char *body, size_t len)
{
	uint8_t hdr[4] = { (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len };
	raw_send(fd, hdr, 4);
	if (len)
		raw_send(fd, body, len);
}

/* Read exactly \p len bytes within WAIT_MS: 0, VP_ECLOSED (EOF or reset) or VP_ETIMEOUT. */
static int raw_read(int fd, uint8_t *buf, size_t len)
{
	vp_deadline_t dl = vp_deadline_in_ms(WAIT_MS);
	size_t off = 0;
	while (off < len) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int left = vp_deadline_remaining_ms(&dl);
		if (left == 0 || poll(&p, 1, left) == 0)
			return VP_ETIMEOUT;
		ssize_t n = read(fd, buf + off, len - off);
		if (n <= 0)
			return VP_ECLOSED;
		off += (size_t)n;
	}
	return 0;
}

static int raw_answer(int fd, adm_answer_t *ans)
{
	uint8_t hdr[4];
	int rc = raw_read(fd, hdr, 4);
	if (rc < 0)
		return rc;
	uint32_t len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
	assert_true(len > 0 && len <= ADM_MAX_ANSWER);
	uint8_t *body = malloc(len);
	assert_non_null(body);
	rc = raw_read(fd, body, len);
	if (rc == 0)
		rc = adm_answer_parse(body, len, ans);
	free(body);
	return rc;
}

static void expect_eof(int fd)
{
	uint8_t b;
	assert_int_equal(raw_read(fd, &b, 1), VP_ECLOSED);
}

static int call(const char *path, adm_cmd_id_t cmd, const char *arg, adm_answer_t *ans)
{
	adm_client_t *cl;
	int rc = adm_client_connect(path, &cl);
	if (rc < 0)
		return rc;
	rc = adm_client_call(cl, cmd, arg, WAIT_MS, ans);
	adm_client_free(cl);
	return rc;
}

/* ---- codec ---- */

static void test_request_codec_roundtrip(void **state)
{
	(void)state;
	uint8_t *f;
	size_t len;
	adm_request_t r;
	assert_int_equal(adm_request_encode(ADM_CMD_STORE, "+15551234567", &f, &len), 0);
	uint32_t blen = (uint32_t)f[0] << 24 | (uint32_t)f[1] << 16 | (uint32_t)f[2] << 8 | f[3];
	assert_int_equal(blen + 4, len);
	assert_memory_equal(f + 4, "{\"v\":1,\"cmd\":\"store\",\"args\":{\"number\":\"+15551234567\"}}", blen);
	assert_int_equal(adm_request_parse(f + 4, blen, &r, NULL), 0);
	assert_int_equal(r.cmd, ADM_CMD_STORE);
	assert_string_equal(r.arg, "+15551234567");
	adm_request_clear(&r);
	free(f);
	/* the argument's presence must agree with the catalogue */
	assert_int_equal(adm_request_encode(ADM_CMD_STORE, NULL, &f, &len), VP_EINVAL);
	assert_int_equal(adm_request_encode(ADM_CMD_STATUS, "x", &f, &len), VP_EINVAL);
	assert_int_equal(adm_request_encode(ADM_CMD_PROBE, "", &f, &len), VP_EINVAL);
}

static void test_request_parse_refusals(void **state)
{
	(void)state;
	static const struct {
		const char *body;
		int rc;
	} cases[] = {
		{ "{\"v\":1,\"cmd\":\"status\"}", 0 },
		{ "{\"v\":1,\"cmd\":\"status\",\"args\":{}}", 0 },
		{ "{\"v\":1,\"cmd\":\"fetch\",\"args\":{\"number\":\"+4930123456\"}}", 0 },
		{ "{\"v\":2,\"cmd\":\"status\",\"new\":true}", VP_EUNSUPPORTED },
		{ "{\"v\":\"1\",\"cmd\":\"status\"}", VP_EMALFORMED },
		{ "{\"cmd\":\"status\"}", VP_EMALFORMED },
		{ "{\"v\":1,\"cmd\":\"status\",\"extra\":1}", VP_EMALFORMED },
		{ "{\"v\":1,\"cmd\":\"status\",\"args\":{\"a\":\"b\"}}", VP_EMALFORMED },
		{ "{\"v\":1,\"cmd\":\"status\",\"args\":[]}", VP_EMALFORMED },
		{ "{\"v\":1,\"cmd\":\"store\"}", VP_EMALFORMED },
		{ "{\"v\":1,\"cmd\":\"store\",\"args\":{\"number\":\"\"}}", VP_EMALFORMED },
		{ "{\"v\":1,\"cmd\":\"store\",\"args\":{\"number\":5551234}}", VP_EMALFORMED },
		{ "{\"v\":1,\"cmd\":\"store\",\"args\":{\"number\":\"1\",\"node\":\"2\"}}", VP_EMALFORMED },
		{ "{\"v\":1,\"cmd\":\"store\",\"args\":{\"number\":\"+1\\u0000evil\"}}", VP_EMALFORMED },
		{ "{\"v\":1,\"cmd\":\"status\",\"cmd\":\"leave\"}", VP_EMALFORMED },
		{ "{\"v\":1,\"cmd\":\"status\"} {}", VP_EMALFORMED },
		{ "{\"v\":1,\"cmd\":\"\"}", VP_EMALFORMED },
		{ "{\"v\":1,\"cmd\":7}", VP_EMALFORMED },
		{ "[1,2]", VP_EMALFORMED },
		{ "{\"v\":1,", VP_EMALFORMED },
		{ "{\"v\":1,\"cmd\":\"frobnicate\"}", VP_ENOTFOUND },
		{ "{\"v\":1,\"cmd\":\"STATUS\"}", VP_ENOTFOUND },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		adm_request_t r;
		int rc = adm_request_parse((const uint8_t *)cases[i].body, strlen(cases[i].body), &r, NULL);
		if (rc != cases[i].rc)
			fail_msg("case %zu (%s): got %s, want %s", i, cases[i].body, vp_errname(rc), vp_errname(cases[i].rc));
		adm_request_clear(&r);
	}
	/* a 257-byte argument is refused, 256 accepted */
	char body[512], arg[258];
	memset(arg, '1', 257);
	arg[257] = '\0';
	adm_request_t r;
	snprintf(body, sizeof(body), "{\"v\":1,\"cmd\":\"fetch\",\"args\":{\"number\":\"%s\"}}", arg);
	assert_int_equal(adm_request_parse((uint8_t *)body, strlen(body), &r, NULL), VP_EMALFORMED);
	arg[256] = '\0';
	snprintf(body, sizeof(body), "{\"v\":1,\"cmd\":\"fetch\",\"args\":{\"number\":\"%s\"}}", arg);
	assert_int_equal(adm_request_parse((uint8_t *)body, strlen(body), &r, NULL), 0);
	adm_request_clear(&r);
}

static void test_answer_codec(void **state)
{
	(void)state;
	uint8_t *f;
	size_t len;
	adm_answer_t a;
	json_t *d = json_pack("{s:[i,i]}", "succ", 1, 2);
	assert_int_equal(adm_answer_encode(0, d, NULL, &f, &len), 0);
	assert_int_equal(adm_answer_parse(f + 4, len - 4, &a), 0);
	assert_int_equal(a.code, 0);
	assert_true(json_equal(a.data, d));
	adm_answer_clear(&a);
	free(f);
	json_decref(d);
	assert_int_equal(adm_answer_encode(VP_EQUOTA, NULL, "over quota", &f, &len), 0);
	assert_int_equal(adm_answer_parse(f + 4, len - 4, &a), 0);
	assert_int_equal(a.code, VP_EQUOTA);
	assert_string_equal(a.message, "over quota");
	free(f);
	json_t *arr = json_array();
	assert_int_equal(adm_answer_encode(0, arr, NULL, &f, &len), VP_EINVAL);
	json_decref(arr);
	/* an error that claims success is not an answer */
	const char *bad = "{\"v\":1,\"ok\":false,\"error\":{\"code\":0,\"name\":\"VP_OK\",\"message\":\"\"}}";
	assert_int_equal(adm_answer_parse((const uint8_t *)bad, strlen(bad), &a), VP_EMALFORMED);
	const char *v2 = "{\"v\":2,\"ok\":true,\"data\":{}}";
	assert_int_equal(adm_answer_parse((const uint8_t *)v2, strlen(v2), &a), VP_EUNSUPPORTED);
}

/* ---- server ---- */

static void test_status_and_store_roundtrip(void **state)
{
	(void)state;
	env_t *e = env_new(NULL);
	adm_answer_t a;
	assert_int_equal(call(e->path, ADM_CMD_STATUS, NULL, &a), 0);
	assert_int_equal(a.code, 0);
	assert_string_equal(json_string_value(json_object_get(a.data, "state")), "joined");
	adm_answer_clear(&a);
	assert_int_equal(call(e->path, ADM_CMD_STORE, "+15551234567", &a), 0);
	assert_int_equal(a.code, 0);
	assert_string_equal(json_string_value(json_object_get(a.data, "stored")), "+15551234567");
	adm_answer_clear(&a);
	assert_string_equal(e->fake.last_number, "+15551234567");
	/* a handler's error return becomes the answer */
	assert_int_equal(call(e->path, ADM_CMD_PROBE, "00112233445566778899aabbccddeeff", &a), 0);
	assert_int_equal(a.code, VP_ENOROUTE);
	env_free(e);
}

static void test_malformed_answered_connection_kept(void **state)
{
	(void)state;
	env_t *e = env_new(NULL);
	int fd = raw_connect(e->path);
	adm_answer_t a;
	raw_send_frame(fd, "{not json", 9);
	assert_int_equal(raw_answer(fd, &a), 0);
	assert_int_equal(a.code, VP_EMALFORMED);
	const char *unk = "{\"v\":1,\"cmd\":\"frobnicate\"}";
	raw_send_frame(fd, unk, strlen(unk));
	assert_int_equal(raw_answer(fd, &a), 0);
	assert_int_equal(a.code, VP_ENOTFOUND);
	assert_non_null(strstr(a.message, "frobnicate"));
	const char *v9 = "{\"v\":9,\"cmd\":\"status\"}";
	raw_send_frame(fd, v9, strlen(v9));
	assert_int_equal(raw_answer(fd, &a), 0);
	assert_int_equal(a.code, VP_EUNSUPPORTED);
	/* framing is intact after each refusal: the same connection still works */
	const char *ok = "{\"v\":1,\"cmd\":\"status\"}";
	raw_send_frame(fd, ok, strlen(ok));
	assert_int_equal(raw_answer(fd, &a), 0);
	assert_int_equal(a.code, 0);
	adm_answer_clear(&a);
	assert_int_equal(e->fake.status_calls, 1);
	close(fd);
	env_free(e);
}

static void test_oversize_refused_unread_and_limit_exact(void **state)
{
	(void)state;
	env_t *e = env_new(NULL);
	adm_answer_t a;
	/* exactly ADM_MAX_REQUEST bytes (a valid request padded with spaces) is served */
	char *big = malloc(ADM_MAX_REQUEST);
	assert_non_null(big);
	memset(big, ' ', ADM_MAX_REQUEST);
	memcpy(big, "{\"v\":1,\"cmd\":\"status\"}", 22);
	int fd = raw_connect(e->path);
	raw_send_frame(fd, big, ADM_MAX_REQUEST);
	assert_int_equal(raw_answer(fd, &a), 0);
	assert_int_equal(a.code, 0);
	adm_answer_clear(&a);
	close(fd);
	/* one byte more: refused from the header alone, before any body is sent, then closed */
	fd = raw_connect(e->path);
	uint32_t n = ADM_MAX_REQUEST + 1;
	uint8_t hdr[4] = { (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n };
	raw_send(fd, hdr, 4);
	assert_int_equal(raw_answer(fd, &a), 0);
	assert_int_equal(a.code, VP_ETOOBIG);
	expect_eof(fd);
	close(fd);
	/* a length of zero likewise */
	fd = raw_connect(e->path);
	raw_send_frame(fd, NULL, 0);
	assert_int_equal(raw_answer(fd, &a), 0);
	assert_int_equal(a.code, VP_EMALFORMED);
	expect_eof(fd);
	close(fd);
	/* a 4 GiB claim is not allocated: the server is still there */
	fd = raw_connect(e->path);
	raw_send(fd, "\xff\xff\xff\xff", 4);
	assert_int_equal(raw_answer(fd, &a), 0);
	assert_int_equal(a.code, VP_ETOOBIG);
	close(fd);
	assert_int_equal(call(e->path, ADM_CMD_STATUS, NULL, &a), 0);
	assert_int_equal(a.code, 0);
	adm_answer_clear(&a);
	free(big);
	env_free(e);
}

static void test_slow_client_does_not_block_others(void **state)
{
	(void)state;
	adm_server_opts_t o = { .request_timeout_ms = 400 };
	env_t *e = env_new(&o);
	/* A sends half a header and stalls */
	int slow = raw_connect(e->path);
	raw_send(slow, "\0\0", 2);
	/* B is served meanwhile, many times */
	for (int i = 0; i < 20; i++) {
		adm_answer_t a;
		assert_int_equal(call(e->path, ADM_CMD_STATUS, NULL, &a), 0);
		assert_int_equal(a.code, 0);
		adm_answer_clear(&a);
	}
	/* and A is cut off once its request time is over (bounded by raw_read's 5 s) */
	uint64_t t0 = vp_time_mono_ns();
	expect_eof(slow);
	assert_true(vp_time_mono_ns() - t0 < 5000000000ull);
	close(slow);
	env_free(e);
}

static void test_deferred_answer_does_not_block_others(void **state)
{
	(void)state;
	env_t *e = env_new(NULL);
	int a_fd = raw_connect(e->path);
	const char *fetch = "{\"v\":1,\"cmd\":\"fetch\",\"args\":{\"number\":\"+15550001111\"}}";
	raw_send_frame(a_fd, fetch, strlen(fetch));
	adm_req_t *held = wait_held(&e->fake);
	assert_non_null(held);
	/* B gets its answer while A's request is still held by its handler */
	adm_answer_t a;
	assert_int_equal(call(e->path, ADM_CMD_STATUS, NULL, &a), 0);
	assert_int_equal(a.code, 0);
	adm_answer_clear(&a);
	assert_string_equal(adm_req_arg(held), "+15550001111");
	assert_int_equal(adm_req_cmd(held), ADM_CMD_FETCH);
	/* A's answer, given from this (another) thread, reaches A */
	adm_req_reply(held, json_pack("{s:b}", "found", 1));
	assert_int_equal(raw_answer(a_fd, &a), 0);
	assert_int_equal(a.code, 0);
	assert_true(json_is_true(json_object_get(a.data, "found")));
	adm_answer_clear(&a);
	close(a_fd);
	env_free(e);
}

static void test_one_request_at_a_time_per_connection(void **state)
{
	(void)state;
	env_t *e = env_new(NULL);
	int fd = raw_connect(e->path);
	/* two requests in one write: fetch (held) then status */
	const char *fetch = "{\"v\":1,\"cmd\":\"fetch\",\"args\":{\"number\":\"+15550002222\"}}";
	const char *status = "{\"v\":1,\"cmd\":\"status\"}";
	uint8_t buf[256];
	size_t fl = strlen(fetch), sl = strlen(status), off = 0;
	buf[off++] = 0, buf[off++] = 0, buf[off++] = 0, buf[off++] = (uint8_t)fl;
	memcpy(buf + off, fetch, fl), off += fl;
	buf[off++] = 0, buf[off++] = 0, buf[off++] = 0, buf[off++] = (uint8_t)sl;
	memcpy(buf + off, status, sl), off += sl;
	raw_send(fd, buf, off);
	adm_req_t *held = wait_held(&e->fake);
	assert_non_null(held);
	/* while the fetch is held, the pipelined status must not be dispatched */
	vp_sleep_ms(200);
	pthread_mutex_lock(&e->fake.mu);
	int calls = e->fake.status_calls;
	pthread_mutex_unlock(&e->fake.mu);
	assert_int_equal(calls, 0);
	adm_req_reply(held, json_pack("{s:s}", "which", "fetch"));
	adm_answer_t a;
	assert_int_equal(raw_answer(fd, &a), 0);
	assert_string_equal(json_string_value(json_object_get(a.data, "which")), "fetch");
	adm_answer_clear(&a);
	assert_int_equal(raw_answer(fd, &a), 0);
	assert_string_equal(json_string_value(json_object_get(a.data, "state")), "joined");
	adm_answer_clear(&a);
	close(fd);
	env_free(e);
}

static void test_unserved_command(void **state)
{
	(void)state;
	env_t *e = env_new(NULL);
	adm_answer_t a;
	assert_int_equal(call(e->path, ADM_CMD_ALARMS, NULL, &a), 0);
	assert_int_equal(a.code, VP_EUNSUPPORTED);
	assert_non_null(strstr(a.message, "alarms"));
	assert_int_equal(call(e->path, ADM_CMD_VALIDATION, "+15551234567", &a), 0);
	assert_int_equal(a.code, VP_EUNSUPPORTED);
	env_free(e);
}

static void test_read_only_refuses_mutating(void **state)
{
	(void)state;
	adm_server_opts_t o = { .read_only = true };
	env_t *e = env_new(&o);
	adm_answer_t a;
	assert_int_equal(call(e->path, ADM_CMD_STATUS, NULL, &a), 0);
	assert_int_equal(a.code, 0);
	adm_answer_clear(&a);
	assert_int_equal(call(e->path, ADM_CMD_STORE, "+15551234567", &a), 0);
	assert_int_equal(a.code, VP_EPERM);
	assert_int_equal(call(e->path, ADM_CMD_LEAVE, NULL, &a), 0);
	assert_int_equal(a.code, VP_EPERM);
	/* the handlers never ran */
	assert_int_equal(e->fake.store_calls, 0);
	assert_int_equal(e->fake.leave_calls, 0);
	/* every mutating command of the catalogue is refused, every reading one is not refused for access */
	for (int i = 0; i < ADM_CMD__COUNT; i++) {
		const char *arg = adm_commands[i].arg ? "+15551234567" : NULL;
		if (i == ADM_CMD_FETCH)
			continue; /* held by the fake; its access is ADM_READ, checked below */
		assert_int_equal(call(e->path, (adm_cmd_id_t)i, arg, &a), 0);
		if (adm_commands[i].access == ADM_WRITE)
			assert_int_equal(a.code, VP_EPERM);
		else
			assert_int_not_equal(a.code, VP_EPERM);
		adm_answer_clear(&a);
	}
	assert_int_equal(adm_commands[ADM_CMD_FETCH].access, ADM_READ);
	assert_int_equal(adm_commands[ADM_CMD_LEAVE].access, ADM_WRITE);
	assert_int_equal(adm_commands[ADM_CMD_STORE].access, ADM_WRITE);
	env_free(e);
}

/* Run \p fn as uid/gid 65534 (nobody) in a child; its return value is the child's exit status. */
static int as_nobody(int (*fn)(const char *path), const char *path)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (setgid(65534) < 0 || setuid(65534) < 0)
			_exit(100);
		_exit(fn(path));
	}
	int st = 0;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	return WEXITSTATUS(st);
}

static int nobody_connect(const char *path)
{
	adm_client_t *cl;
	int rc = adm_client_connect(path, &cl);
	adm_client_free(cl);
	return rc == 0 ? 0 : rc == VP_EPERM ? 1 : 2;
}

static int nobody_status_then_leave(const char *path)
{
	adm_answer_t a;
	if (call(path, ADM_CMD_STATUS, NULL, &a) < 0 || a.code != 0)
		return 3;
	adm_answer_clear(&a);
	if (call(path, ADM_CMD_LEAVE, NULL, &a) < 0)
		return 4;
	return a.code == VP_EPERM ? 0 : 5;
}

static void test_socket_mode_0600_keeps_other_users_out(void **state)
{
	(void)state;
	env_t *e = env_new(NULL);
	struct stat st;
	assert_int_equal(lstat(e->path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);
	if (geteuid() != 0) {
		env_free(e);
		skip(); /* switching to another uid needs root */
	}
	assert_int_equal(chmod(e->dir, 0755), 0); /* the directory lets nobody reach the socket... */
	assert_int_equal(as_nobody(nobody_connect, e->path), 1); /* ...its mode does not */
	env_free(e);
}

static void test_foreign_uid_cannot_mutate_on_wide_socket(void **state)
{
	(void)state;
	if (geteuid() != 0)
		skip();
	adm_server_opts_t o = { .mode = 0666 };
	env_t *e = env_new(&o);
	assert_int_equal(chmod(e->dir, 0755), 0);
	assert_int_equal(as_nobody(nobody_status_then_leave, e->path), 0);
	assert_int_equal(e->fake.leave_calls, 0);
	/* the daemon's own uid still may */
	adm_answer_t a;
	assert_int_equal(call(e->path, ADM_CMD_LEAVE, NULL, &a), 0);
	assert_int_equal(a.code, 0);
	adm_answer_clear(&a);
	assert_int_equal(e->fake.leave_calls, 1);
	env_free(e);
}

static void test_socket_path_rules(void **state)
{
	(void)state;
	env_t *e = env_new(NULL);
	fake_t f2 = { .mu = PTHREAD_MUTEX_INITIALIZER };
	adm_server_t *s2;
	/* a live server keeps its path */
	assert_int_equal(adm_server_new(e->path, &handlers, &f2, NULL, &s2), VP_EEXIST);
	adm_answer_t a;
	assert_int_equal(call(e->path, ADM_CMD_STATUS, NULL, &a), 0);
	assert_int_equal(a.code, 0);
	adm_answer_clear(&a);
	/* a stale socket (nobody accepts) is replaced */
	char stale[100];
	snprintf(stale, sizeof(stale), "%s/stale.sock", e->dir);
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", stale);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	close(fd);
	assert_int_equal(adm_server_new(stale, &handlers, &f2, NULL, &s2), 0);
	assert_int_equal(call(stale, ADM_CMD_STATUS, NULL, &a), 0);
	assert_int_equal(a.code, 0);
	adm_answer_clear(&a);
	adm_server_free(s2);
	struct stat st;
	assert_int_equal(lstat(stale, &st), -1); /* removed on free */
	/* a regular file is never replaced */
	char file[160];
	snprintf(file, sizeof(file), "%s/file", e->dir);
	FILE *fp = fopen(file, "w");
	assert_non_null(fp);
	fclose(fp);
	assert_int_equal(adm_server_new(file, &handlers, &f2, NULL, &s2), VP_EEXIST);
	assert_int_equal(lstat(file, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	/* a path longer than sun_path */
	char lng[200];
	memset(lng, 'a', sizeof(lng) - 1);
	lng[0] = '/';
	lng[sizeof(lng) - 1] = '\0';
	assert_int_equal(adm_server_new(lng, &handlers, &f2, NULL, &s2), VP_ERANGE);
	/* the client's view of missing and stale sockets */
	adm_client_t *cl;
	snprintf(file, sizeof(file), "%s/none.sock", e->dir);
	assert_int_equal(adm_client_connect(file, &cl), VP_ENOTFOUND);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	close(fd);
	assert_int_equal(adm_client_connect(stale, &cl), VP_ECLOSED);
	env_free(e);
}

static void test_connection_limit_answers_busy(void **state)
{
	(void)state;
	adm_server_opts_t o = { .max_conns = 2 };
	env_t *e = env_new(&o);
	int fds[2];
	const char *status = "{\"v\":1,\"cmd\":\"status\"}";
	adm_answer_t a;
	for (int i = 0; i < 2; i++) {
		fds[i] = raw_connect(e->path);
		raw_send_frame(fds[i], status, strlen(status)); /* served: the slot is taken */
		assert_int_equal(raw_answer(fds[i], &a), 0);
		adm_answer_clear(&a);
	}
	assert_int_equal(call(e->path, ADM_CMD_STATUS, NULL, &a), 0);
	assert_int_equal(a.code, VP_EBUSY);
	close(fds[0]);
	/* a freed slot serves again (the close is noticed within the loop's next turn) */
	int ok = 0;
	for (int i = 0; i < 50 && !ok; i++) {
		assert_int_equal(call(e->path, ADM_CMD_STATUS, NULL, &a), 0);
		ok = a.code == 0;
		adm_answer_clear(&a);
		if (!ok)
			vp_sleep_ms(20);
	}
	assert_true(ok);
	close(fds[1]);
	env_free(e);
}

static void test_answer_after_client_or_server_gone(void **state)
{
	(void)state;
	env_t *e = env_new(NULL);
	const char *fetch = "{\"v\":1,\"cmd\":\"fetch\",\"args\":{\"number\":\"+15550003333\"}}";
	int fd = raw_connect(e->path);
	raw_send_frame(fd, fetch, strlen(fetch));
	adm_req_t *held = wait_held(&e->fake);
	assert_non_null(held);
	close(fd);
	vp_sleep_ms(100);
	adm_req_reply(held, json_pack("{s:b}", "found", 0)); /* dropped: its client left */
	adm_answer_t a;
	assert_int_equal(call(e->path, ADM_CMD_STATUS, NULL, &a), 0);
	assert_int_equal(a.code, 0);
	adm_answer_clear(&a);
	/* and a request still held when the server is freed: env_free answers it afterwards */
	fd = raw_connect(e->path);
	raw_send_frame(fd, fetch, strlen(fetch));
	vp_deadline_t dl = vp_deadline_in_ms(WAIT_MS);
	for (;;) {
		pthread_mutex_lock(&e->fake.mu);
		bool got = e->fake.held != NULL;
		pthread_mutex_unlock(&e->fake.mu);
		if (got || vp_deadline_expired(&dl))
			break;
		vp_sleep_ms(5);
	}
	assert_non_null(e->fake.held);
	close(fd);
	env_free(e);
}

static void test_slow_reader_and_idle_connections_are_cut(void **state)
{
	(void)state;
	adm_server_opts_t o = { .request_timeout_ms = 400, .idle_timeout_ms = 600 };
	env_t *e = env_new(&o);
	/* a client asks for a big answer and never reads it */
	int slow = raw_connect(e->path);
	const char *stats = "{\"v\":1,\"cmd\":\"stats\"}";
	raw_send_frame(slow, stats, strlen(stats));
	int idle = raw_connect(e->path);
	vp_sleep_ms(100);
	/* others are served while the server's write to it is stuck */
	for (int i = 0; i < 10; i++) {
		adm_answer_t a;
		assert_int_equal(call(e->path, ADM_CMD_STATUS, NULL, &a), 0);
		assert_int_equal(a.code, 0);
		adm_answer_clear(&a);
	}
	/* after its write deadline the slow reader is cut: it reads part of the answer, then EOF */
	vp_sleep_ms(800);
	size_t got = 0;
	uint8_t buf[65536];
	for (;;) {
		struct pollfd p = { .fd = slow, .events = POLLIN };
		assert_true(poll(&p, 1, WAIT_MS) == 1);
		ssize_t n = read(slow, buf, sizeof(buf));
		if (n <= 0)
			break;
		got += (size_t)n;
		assert_true(got < (8u << 20)); /* never the whole answer */
	}
	assert_true(got > 0);
	close(slow);
	/* a connection that never sent anything is closed after the idle timeout */
	expect_eof(idle);
	close(idle);
	env_free(e);
}

/* The [admin] rows join a daemon's table at the offset of its adm_conf_t member. */
typedef struct daemon_conf {
	uint32_t before;
	adm_conf_t admin;
} daemon_conf_t;

static void test_conf_rows_and_monitor_socket(void **state)
{
	(void)state;
	vp_conf_opt_t rows[8];
	size_t n = 0;
	vp_conf_err_t ce;
	assert_int_equal(adm_conf_schema(offsetof(daemon_conf_t, admin), rows, 2, &n), VP_ESPACE);
	assert_int_equal(adm_conf_schema(offsetof(daemon_conf_t, admin), rows, 8, &n), 0);
	daemon_conf_t c;
	memset(&c, 0xa5, sizeof(c));
	c.before = 7;
	assert_int_equal(vp_conf_schema_parse(rows, n, "", 0, &c, &ce), 0);
	assert_int_equal(c.before, 7); /* rows wrote inside the member only */
	assert_string_equal(c.admin.socket, "/run/viprd/admin.sock");
	assert_string_equal(c.admin.monitor_socket, "");
	assert_int_equal(c.admin.max_conns, 16);
	assert_int_equal(c.admin.request_timeout_ms, 5000);
	assert_int_equal(c.admin.idle_timeout_ms, 60000);
	env_t *e = env_new(NULL); /* for its directory */
	char text[512];
	snprintf(text, sizeof(text), "[admin]\nsocket = %s/rw.sock\nmonitor_socket = %s/mon.sock\nmax_conns = 4\n"
	         "request_timeout = 250ms\n", e->dir, e->dir);
	assert_int_equal(vp_conf_schema_parse(rows, n, text, strlen(text), &c, &ce), 0);
	assert_int_equal(c.admin.max_conns, 4);
	assert_int_equal(c.admin.request_timeout_ms, 250);
	const char *bad = "[admin]\nmax_conns = 0\n";
	daemon_conf_t scratch;
	assert_int_equal(vp_conf_schema_parse(rows, n, bad, strlen(bad), &scratch, &ce), VP_ECONFIG);
	const char *typo = "[admin]\nsokcet = /x\n";
	assert_int_equal(vp_conf_schema_parse(rows, n, typo, strlen(typo), &scratch, &ce), VP_ECONFIG);
	/* the monitoring socket: mode 0660 and read-only */
	adm_server_opts_t o;
	adm_conf_server_opts(&c.admin, true, &o);
	adm_server_t *mon;
	assert_int_equal(adm_server_new(c.admin.monitor_socket, &handlers, &e->fake, &o, &mon), 0);
	struct stat st;
	assert_int_equal(lstat(c.admin.monitor_socket, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0660);
	adm_answer_t a;
	assert_int_equal(call(c.admin.monitor_socket, ADM_CMD_STATUS, NULL, &a), 0);
	assert_int_equal(a.code, 0);
	adm_answer_clear(&a);
	assert_int_equal(call(c.admin.monitor_socket, ADM_CMD_LEAVE, NULL, &a), 0);
	assert_int_equal(a.code, VP_EPERM);
	adm_server_free(mon);
	adm_conf_server_opts(&c.admin, false, &o);
	assert_int_equal(o.mode, 0600);
	assert_false(o.read_only);
	assert_int_equal(o.request_timeout_ms, 250);
	assert_int_equal(o.max_conns, 4);
	env_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_codec_roundtrip),
		cmocka_unit_test(test_request_parse_refusals),
		cmocka_unit_test(test_answer_codec),
		cmocka_unit_test(test_status_and_store_roundtrip),
		cmocka_unit_test(test_malformed_answered_connection_kept),
		cmocka_unit_test(test_oversize_refused_unread_and_limit_exact),
		cmocka_unit_test(test_slow_client_does_not_block_others),
		cmocka_unit_test(test_deferred_answer_does_not_block_others),
		cmocka_unit_test(test_one_request_at_a_time_per_connection),
		cmocka_unit_test(test_unserved_command),
		cmocka_unit_test(test_read_only_refuses_mutating),
		cmocka_unit_test(test_socket_mode_0600_keeps_other_users_out),
		cmocka_unit_test(test_foreign_uid_cannot_mutate_on_wide_socket),
		cmocka_unit_test(test_socket_path_rules),
		cmocka_unit_test(test_connection_limit_answers_busy),
		cmocka_unit_test(test_answer_after_client_or_server_gone),
		cmocka_unit_test(test_conf_rows_and_monitor_socket),
		cmocka_unit_test(test_slow_reader_and_idle_connections_are_cut),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
