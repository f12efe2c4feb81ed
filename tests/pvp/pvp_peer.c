/*
 * pvp-peer - test helper for the GnuTLS interop tests: derives PVP SRP
 * credentials from a call record, and runs our PVP server or client.
 *
 *   pvp-peer creds  CALLED CALLER START_S STOP_S [METHOD]   prints "USER PASS" (client side)
 *   pvp-peer serve  DIR PORTFILE COUNT CALLED CALLER START_S STOP_S
 *        our server on 127.0.0.1 (ephemeral port written to PORTFILE) with one
 *        terminating record; serves COUNT connections, one "outcome=..." line each
 *   pvp-peer validate PORT CALLED CALLER START_S STOP_S LEDGER_DIR [IO_TIMEOUT_MS]
 *        our client (method a, one handshake; its guess ledger in LEDGER_DIR;
 *        connection deadline IO_TIMEOUT_MS, default 1500: a GnuTLS server
 *        never answers the ValExchange, so this is also how long an
 *        authenticated run lasts); prints "result=VP_..." and "handshake=ok|failed"
 *
 * CALLER "-" means no caller-ID.  Times are UTC seconds.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/errcode.h"
#include "common/log.h"
#include "pvp/pvp.h"

static int make_rec(pvp_vcr_t *r, pvp_dir_t dir, char **av)
{
	const char *caller = strcmp(av[1], "-") ? av[1] : NULL;
	unsigned long long start = strtoull(av[2], NULL, 10), stop = strtoull(av[3], NULL, 10);
	int rc = pvp_vcr_make(r, dir, av[0], caller, start * 1000, stop * 1000, NULL);
	if (rc)
		fprintf(stderr, "pvp-peer: bad record: %s\n", vp_strerror(rc));
	return rc;
}

static int routes(void *arg, const char *number, char uris[][PVP_URI_MAX], size_t max, size_t *n)
{
	(void)arg;
	if (!max)
		return VP_ESPACE;
	snprintf(uris[0], PVP_URI_MAX, "sips:%s@interop.example", number);
	*n = 1;
	return 0;
}

static int cmd_serve(char **av)
{
	pvp_vcr_store_conf_t sc = { .path = av[0] };
	pvp_vcr_store_t *st = NULL;
	pvp_policy_t *pol = NULL;
	pvp_ticket_keys_t keys;
	pvp_server_conf_t conf;
	pvp_server_t *srv = NULL;
	pvp_vcr_t r;
	struct sockaddr_in a;
	socklen_t alen = sizeof(a);
	int count = atoi(av[2]), lfd, rc;
	FILE *pf;

	if (make_rec(&r, PVP_DIR_TERM, av + 3))
		return 2;
	if ((rc = pvp_vcr_store_open(&sc, &st)) || (rc = pvp_vcr_store_add(st, &r)) ||
	    (rc = pvp_policy_new(NULL, &pol))) {
		fprintf(stderr, "pvp-peer: %s\n", vp_strerror(rc));
		return 2;
	}
	memset(&keys, 0, sizeof(keys));
	keys.cur.epoch = 1;
	keys.cur.len = 16;
	memset(keys.cur.key, 0x5a, 16);
	memset(&conf, 0, sizeof(conf));
	conf.store = st;
	conf.keys = &keys;
	conf.policy = pol;
	conf.routes = routes;
	conf.io_timeout_ms = 5000;
	if ((rc = pvp_server_new(&conf, &srv))) {
		fprintf(stderr, "pvp-peer: %s\n", vp_strerror(rc));
		return 2;
	}
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 8) ||
	    getsockname(lfd, (struct sockaddr *)&a, &alen)) {
		perror("pvp-peer: listen");
		return 2;
	}
	pf = fopen(av[1], "w");
	if (!pf)
		return 2;
	fprintf(pf, "%u\n", ntohs(a.sin_port));
	fclose(pf);
	for (int i = 0; i < count; i++) {
		pvp_server_result_t res;
		int fd = accept(lfd, NULL, NULL);
		if (fd < 0)
			break;
		rc = pvp_server_handle(srv, fd, "interop", &res);
		close(fd);
		printf("outcome=%s number=%s rc=%s\n", pvp_outcome_str(res.outcome),
		       res.number[0] ? res.number : "-", vp_errname(rc));
		fflush(stdout);
	}
	close(lfd);
	pvp_server_free(srv);
	pvp_policy_free(pol);
	pvp_vcr_store_close(st);
	return 0;
}

static int cmd_validate(char **av)
{
	pvp_client_conf_t cc = { .domain = "client.example", .max_shift = PVP_NO_SHIFT, .max_candidates = 1,
	                         .io_timeout_ms = 1500 };
	pvp_tcp_target_t t = { .host = "127.0.0.1", .port = av[0], .timeout_ms = 5000 };
	pvp_client_t *cli = NULL;
	pvp_vcr_store_conf_t sc = { .path = av[5] };
	pvp_vcr_store_t *st = NULL;
	pvp_ledger_conf_t lc = { 0 };
	pvp_ledger_t *led = NULL;
	pvp_validation_t v;
	pvp_vcr_t r;
	int rc;
	if (av[6])
		cc.io_timeout_ms = (unsigned)strtoul(av[6], NULL, 10);
	if (make_rec(&r, PVP_DIR_ORIG, av + 1) || pvp_vcr_store_open(&sc, &st))
		return 2;
	lc.store = st;
	if (pvp_ledger_new(&lc, &led))
		return 2;
	cc.ledger = led;
	if (pvp_client_new(&cc, &cli))
		return 2;
	rc = pvp_client_validate(cli, "gnutls-serv", &r, PVP_MBIT(PVP_METHOD_A), pvp_tcp_connect, &t, NULL, 0, &v);
	pvp_client_free(cli);
	pvp_ledger_free(led);
	pvp_vcr_store_close(st);
	printf("result=%s\n", vp_errname(rc));
	/* A GnuTLS peer is not a PVP server: after a good handshake ValExchange cannot complete. */
	printf("handshake=%s\n", v.authenticated ? "ok" : "failed");
	return 0;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	vp_log_setup(VP_LOG_WARN, stderr);
	if (argc >= 6 && !strcmp(argv[1], "creds")) {
		pvp_vcr_t r;
		char user[PVP_USER_MAX], pass[PVP_PASS_MAX];
		pvp_method_t m = argc > 6 && !strcmp(argv[6], "b") ? PVP_METHOD_B : PVP_METHOD_A;
		if (make_rec(&r, PVP_DIR_ORIG, argv + 2) || pvp_client_creds(&r, m, 0, 0, user, pass))
			return 2;
		printf("%s %s\n", user, pass);
		return 0;
	}
	if (argc == 9 && !strcmp(argv[1], "serve"))
		return cmd_serve(argv + 2);
	if ((argc == 8 || argc == 9) && !strcmp(argv[1], "validate"))
		return cmd_validate(argv + 2);
	fprintf(stderr, "usage: pvp-peer creds|serve|validate ... (see source)\n");
	return 2;
}
