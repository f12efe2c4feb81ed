/*
 * tests/control/admin/adm_testd.c - a test server built from control/admin with fixed answers, so
 * viprctl can be tested end to end before viprd serves the protocol.  Test-only: it answers what the
 * test expects, never what a node knows.
 *
 *   adm_testd SOCKET [--read-only] [--mode OCTAL]
 *
 * Prints "ready" once the socket exists, serves until its standard input closes (the test holds the
 * other end, so the server ends with the test even when the test is killed), then exits 0.
 * fetch of +10000000000 is never answered (the client's timeout is tested with it); probe answers
 * VP_ENOROUTE; validation answers a fixed trace of one number (events given out of their claimants' order, as
 * the daemon's ring buffer may); alarms are not served.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/errcode.h"
#include "control/admin/admin.h"

typedef struct testd {
	adm_req_t *held;
} testd_t;

static int h_status(adm_req_t *req, void *ctx)
{
	(void)ctx;
	adm_req_reply(req, json_pack("{s:s, s:[s], s:i, s:[{s:s, s:s}], s:{s:i, s:i}, s:i}", "state", "joined",
	                             "node_ids", "0123456789abcdef0123456789abcdef", "shards", 1, "links", "peer",
	                             "fedcba9876543210fedcba9876543210", "state", "up", "quota", "used", 3, "limit",
	                             30, "uptime_s", 42));
	return 0;
}

static int h_store(adm_req_t *req, void *ctx)
{
	(void)ctx;
	adm_req_reply(req, json_pack("{s:s, s:i}", "number", adm_req_arg(req), "replicas", 3));
	return 0;
}

static int h_fetch(adm_req_t *req, void *ctx)
{
	testd_t *t = ctx;
	if (!strcmp(adm_req_arg(req), "+10000000000")) {
		if (t->held)
			return VP_EBUSY;
		t->held = req;
		return 0;
	}
	adm_req_reply(req, json_pack("{s:s, s:b, s:[]}", "number", adm_req_arg(req), "found", 0, "entries"));
	return 0;
}

static int h_probe(adm_req_t *req, void *ctx)
{
	(void)req;
	(void)ctx;
	return VP_ENOROUTE;
}

static int h_leave(adm_req_t *req, void *ctx)
{
	(void)ctx;
	adm_req_reply(req, NULL);
	return 0;
}

static int h_ring(adm_req_t *req, void *ctx)
{
	(void)ctx;
	adm_req_reply(req, json_pack("{s:[s,s], s:[]}", "successors", "11", "22", "predecessors"));
	return 0;
}

static int h_validation(adm_req_t *req, void *ctx)
{
	(void)ctx;
	if (strcmp(adm_req_arg(req), "+15551234567")) {
		adm_req_reply(req, json_pack("{s:s, s:b}", "number", adm_req_arg(req), "known", 0));
		return 0;
	}
	adm_req_reply(req, json_pack("{s:s, s:b, s:I, s:i, s:i, s:i, s:i, s:{s:{s:i, s:i, s:s}, s:{s:i, s:i, s:s}},"
	                             " s:[{s:s, s:s}], s:s, s:[{s:I, s:s, s:s, s:s}, {s:I, s:s, s:s, s:s},"
	                             " {s:I, s:s, s:s, s:s, s:s}, {s:I, s:s, s:s, s:s, s:s}]}",
	                             "number", "+15551234567", "known", 1, "first_seen_ms", (json_int_t)1796688000000,
	                             "events_total", 4, "call_records", 1, "lookups", 1, "lookups_with_incident", 0,
	                             "claimants", "aa11", "tried", 1, "failed", 0, "last", "outcome=routes",
	                             "bb22", "tried", 1, "failed", 1, "last", "outcome=failed reason=srp_mismatch",
	                             "routes", "claimant", "aa11", "detail", "sip:+15551234567@a.example",
	                             "route", "learned",
	                             "events", "at_ms", (json_int_t)1796688000000, "event", "call_record", "status", "ok",
	                             "detail", "originating",
	                             "at_ms", (json_int_t)1796688002250, "event", "lookup", "status", "ok",
	                             "detail", "3/3 answered and agreed",
	                             "at_ms", (json_int_t)1796688002500, "event", "handshake", "status", "VP_EPERM",
	                             "detail", "outcome=failed reason=srp_mismatch", "claimant", "bb22",
	                             "at_ms", (json_int_t)1796688002750, "event", "handshake", "status", "ok",
	                             "detail", "outcome=routes", "claimant", "aa11"));
	return 0;
}

int main(int argc, char **argv)
{
	adm_server_opts_t o = { 0 };
	testd_t t = { 0 };
	if (argc < 2) {
		fprintf(stderr, "usage: adm_testd SOCKET [--read-only] [--mode OCTAL]\n");
		return 2;
	}
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--read-only"))
			o.read_only = true;
		else if (!strcmp(argv[i], "--mode") && i + 1 < argc)
			o.mode = (unsigned)strtoul(argv[++i], NULL, 8);
		else
			return 2;
	}
	adm_handlers_t h = { .fn = {
		[ADM_CMD_STATUS] = h_status, [ADM_CMD_STORE] = h_store, [ADM_CMD_FETCH] = h_fetch,
		[ADM_CMD_PROBE] = h_probe, [ADM_CMD_LEAVE] = h_leave, [ADM_CMD_RING] = h_ring,
		[ADM_CMD_VALIDATION] = h_validation,
	} };
	adm_server_t *srv;
	int rc = adm_server_new(argv[1], &h, &t, &o, &srv);
	if (rc < 0) {
		fprintf(stderr, "adm_testd: %s\n", vp_strerror(rc));
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	char buf[64];
	while (read(0, buf, sizeof(buf)) > 0) {
	}
	adm_server_free(srv);
	if (t.held)
		adm_req_reply(t.held, NULL);
	return 0;
}
