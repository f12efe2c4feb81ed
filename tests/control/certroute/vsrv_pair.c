/*
 * tests/control/certroute/vsrv_pair.c - test scaffolding: the ViPR servers of several carriers in one process,
 * each from its own configuration file, over the in-process DHT (bench/support/vsrv_memdht.h), so that real
 * vipr-agent, vipr-border and sipp processes can run the whole route-and-certificate flow on loopback.
 *
 *   vsrv_pair CONF...
 *
 * Prints one line per server, "server NAME vap=PORT pvp=PORT", then "ready", and runs until SIGTERM or SIGINT.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench/support/vsrv_memdht.h"
#include "common/errcode.h"
#include "common/log.h"
#include "control/server/vipr_server.h"

#define MAX_SERVERS 4

int main(int argc, char **argv)
{
	vsrv_memdht_t *dht = NULL;
	vsrv_t *srv[MAX_SERVERS] = { 0 };
	vsrv_dht_t iface;
	sigset_t set;
	int sig, n = argc - 1, ret = 1;
	if (n < 1 || n > MAX_SERVERS) {
		fprintf(stderr, "usage: vsrv_pair CONF... (1 to %d)\n", MAX_SERVERS);
		return 2;
	}
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL); /* before any thread: only sigwait below sees them */
	vp_log_setup(VP_LOG_INFO, NULL);
	if (vsrv_memdht_new(&dht))
		return 1;
	vsrv_memdht_iface(dht, &iface);
	for (int i = 0; i < n; i++) {
		vsrv_conf_t conf;
		vp_conf_err_t e;
		int rc;
		vsrv_conf_default(&conf);
		if ((rc = vsrv_conf_load(&conf, argv[i + 1], &e))) {
			fprintf(stderr, "vsrv_pair: %s:%d: %s\n", argv[i + 1], e.line, e.msg);
			goto finish;
		}
		if ((rc = vsrv_new(&conf, &iface, NULL, NULL, NULL, &srv[i])) ||
		    (rc = vsrv_memdht_add_node(dht, vsrv_node_id(srv[i]), "127.0.0.1", vsrv_pvp_port(srv[i]))) ||
		    (rc = vsrv_start(srv[i]))) {
			fprintf(stderr, "vsrv_pair: %s: %s\n", argv[i + 1], vp_strerror(rc));
			goto finish;
		}
		printf("server %s vap=%u pvp=%u\n", vsrv_name(srv[i]), vsrv_vap_port(srv[i]), vsrv_pvp_port(srv[i]));
	}
	printf("ready\n");
	fflush(stdout);
	sigwait(&set, &sig);
	ret = 0;
finish:
	for (int i = 0; i < n; i++)
		vsrv_free(srv[i]);
	vsrv_memdht_free(dht);
	return ret;
}
