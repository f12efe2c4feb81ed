/*
 * tests/control/overlay/fake_viprd.c - TEMPORARY test double for viprd, used only by the vipr-overlay
 * launcher's test until the real daemon (control/daemon, branch nodecore) is on main; delete it then and
 * point the test at viprd.  It is not a node: it reads the configuration file the launcher wrote, binds the
 * TCP address of [node] listen (which only works inside the right network namespace), serves the admin
 * protocol on [admin] socket with a fixed "joined" status, and runs until SIGTERM.
 *
 *   fake_viprd --config FILE
 *
 * FAKE_VIPRD_FAIL_LISTEN=ADDR:PORT makes the node listening there exit at once (the launcher's failure path);
 * FAKE_VIPRD_JOIN_MS=N makes status say "joining" for the first N ms (the launcher's join wait).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/conf.h"
#include "common/errcode.h"
#include "common/net.h"
#include "control/admin/admin.h"

typedef struct fake {
	const char *listen;
	const char *socket;
	uint64_t joined_at_ns;
} fake_t;

static int h_status(adm_req_t *req, void *ctx)
{
	fake_t *f = ctx;
	const char *st = vp_time_mono_ns() >= f->joined_at_ns ? "joined" : "joining";
	adm_req_reply(req, json_pack("{s:s, s:s, s:i}", "state", st, "listen", f->listen, "pid", (int)getpid()));
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 3 || strcmp(argv[1], "--config")) {
		fprintf(stderr, "usage: fake_viprd --config FILE\n");
		return 2;
	}
	vp_conf_err_t e;
	vp_conf_t *conf = NULL;
	if (vp_conf_load(argv[2], &conf, &e) < 0) {
		fprintf(stderr, "fake_viprd: %s line %d: %s\n", argv[2], e.line, e.msg);
		return 1;
	}
	fake_t f = { vp_conf_str(conf, "node", "listen", NULL), vp_conf_str(conf, "admin", "socket", NULL) };
	if (!f.listen || !f.socket) {
		fprintf(stderr, "fake_viprd: [node] listen and [admin] socket are required\n");
		return 1;
	}
	const char *fail = getenv("FAKE_VIPRD_FAIL_LISTEN");
	if (fail && !strcmp(fail, f.listen)) {
		fprintf(stderr, "fake_viprd: failing on purpose listen=%s\n", f.listen);
		return 1;
	}
	const char *join_ms = getenv("FAKE_VIPRD_JOIN_MS");
	f.joined_at_ns = vp_time_mono_ns() + (join_ms ? strtoull(join_ms, NULL, 10) * 1000000ull : 0);
	char host[VP_NET_HOST_MAX];
	uint16_t port;
	int lfd = -1;
	int rc = vp_net_split_hostport(f.listen, true, host, sizeof(host), &port);
	if (rc == 0)
		rc = vp_net_listen_tcp(host, port, 16, 0, &lfd, NULL);
	if (rc < 0) {
		fprintf(stderr, "fake_viprd: cannot listen on %s: %s\n", f.listen, vp_strerror(rc));
		return 1;
	}
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL); /* before the server thread starts, so it inherits the mask */
	adm_handlers_t h = { .fn = { [ADM_CMD_STATUS] = h_status } };
	adm_server_t *srv;
	if ((rc = adm_server_new(f.socket, &h, &f, NULL, &srv)) < 0) {
		fprintf(stderr, "fake_viprd: admin socket %s: %s\n", f.socket, vp_strerror(rc));
		return 1;
	}
	fprintf(stderr, "fake_viprd: up listen=%s admin=%s pid=%d\n", f.listen, f.socket, (int)getpid());
	int sig = 0;
	sigwait(&set, &sig);
	adm_server_free(srv);
	close(lfd);
	vp_conf_free(conf);
	fprintf(stderr, "fake_viprd: stopped signal=%d\n", sig);
	return 0;
}
