/*
 * viprd - the ViPR overlay node (control/node/node.h): foreground, key=value logs to stderr (or --log-file).
 *
 *   viprd -c FILE [--set section.key=value ...] [--listen A:P] [--data-dir DIR] [--shards N]
 *         [--log-level L] [--log-file FILE]
 *   viprd -c FILE --check-config     validate the file and the overlay document, then exit
 *   viprd --help-config[=markdown]   every option
 *
 * Signals: SIGTERM/SIGINT leave the overlay (Leave, handoff) and exit 0; SIGHUP re-reads the file and the
 * document, applies what can change at run time and logs what needs a restart.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/conf.h"
#include "common/errcode.h"
#include "common/log.h"
#include "control/daemon/viprd_ops.h"
#include "control/daemon/viprd_vipr.h"
#include "control/node/node.h"

#define MAX_ROWS 112
#define LEAVE_TIMEOUT_MS 5000u /* SIGTERM: how long a leaving vnode waits without handoff progress (node_leave) */

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: viprd -c FILE [options]\n"
	        "  -c, --config FILE          configuration file (see --help-config)\n"
	        "  --check-config             validate FILE and the overlay's document, print the result, exit\n"
	        "  --help-config[=markdown]   every option (type, range, default) and exit\n"
	        "  --set SECTION.KEY=VALUE    override one of the node's own options (never an overlay-wide one)\n"
	        "  --listen ADDR:PORT         = --set node.listen=ADDR:PORT\n"
	        "  --data-dir DIR             = --set node.data_dir=DIR\n"
	        "  --shards N                 = --set node.shards=N\n"
	        "  --log-level LEVEL          = --set node.log_level=LEVEL (error, warn, info, debug)\n"
	        "  --log-file FILE            append logs to FILE instead of stderr\n");
}

/* Overlay-wide keys come from the signed document: a file that sets one is refused. */
static int check_no_overlay_keys(const vp_conf_opt_t *rows, size_t n, const char *path, char *why, size_t cap)
{
	vp_conf_err_t e = { 0 };
	vp_conf_t *c = NULL;
	if (vp_conf_load(path, &c, &e))
		return 0; /* the schema load reports it with its line */
	for (size_t i = 0; i < n; i++)
		if ((rows[i].flags & VP_CONF_F_OVERLAY) && vp_conf_get(c, rows[i].section, rows[i].key)) {
			snprintf(why, cap, "[%s] %s is overlay-wide: it comes from the configuration document",
			         rows[i].section, rows[i].key);
			vp_conf_free(c);
			return VP_ECONFIG;
		}
	vp_conf_free(c);
	return 0;
}

typedef struct override {
	char section[32], key[64], value[512];
} override_t;

/* Load FILE, apply the overrides, then the document.  0, or 1 with the message printed. */
static int load(const vp_conf_opt_t *rows, size_t nrows, const char *path, const override_t *ov, size_t nov,
                node_conf_t *c)
{
	vp_conf_err_t e = { 0 };
	char why[256];
	int err;

	memset(c, 0, sizeof(*c));
	err = vp_conf_schema_load(rows, nrows, path, c, &e);
	if (err) {
		if (e.line)
			fprintf(stderr, "%s:%d: %s\n", path, e.line, e.msg);
		else
			fprintf(stderr, "%s: %s\n", path, e.msg[0] ? e.msg : vp_strerror(err));
		return 1;
	}
	if (check_no_overlay_keys(rows, nrows, path, why, sizeof(why))) {
		fprintf(stderr, "%s: %s\n", path, why);
		return 1;
	}
	for (size_t i = 0; i < nov; i++) {
		err = vp_conf_schema_set(rows, nrows, c, ov[i].section, ov[i].key, ov[i].value, false, &e);
		if (err) {
			fprintf(stderr, "--set %s.%s: %s\n", ov[i].section, ov[i].key,
			        err == VP_EPERM      ? "overlay-wide: it comes from the configuration document"
			        : err == VP_ENOTFOUND ? "unknown option"
			                              : e.msg);
			return 1;
		}
	}
	err = node_conf_overlay(c, why);
	if (err) {
		fprintf(stderr, "%s: %s\n", path, why);
		return 1;
	}
	return 0;
}

static int add_override(override_t *ov, size_t *nov, size_t cap, const char *sec, const char *kv)
{
	const char *dot, *eq;
	if (*nov == cap)
		return -1;
	if (sec) {
		snprintf(ov[*nov].section, sizeof(ov[*nov].section), "%s", sec);
		dot = NULL;
		eq = strchr(kv, '=');
		if (!eq)
			return -1;
		snprintf(ov[*nov].key, sizeof(ov[*nov].key), "%.*s", (int)(eq - kv), kv);
	} else {
		dot = strchr(kv, '.');
		eq = strchr(kv, '=');
		if (!dot || !eq || eq < dot || dot - kv >= (int)sizeof(ov[*nov].section) ||
		    eq - dot - 1 >= (int)sizeof(ov[*nov].key))
			return -1;
		snprintf(ov[*nov].section, sizeof(ov[*nov].section), "%.*s", (int)(dot - kv), kv);
		snprintf(ov[*nov].key, sizeof(ov[*nov].key), "%.*s", (int)(eq - dot - 1), dot + 1);
	}
	snprintf(ov[*nov].value, sizeof(ov[*nov].value), "%s", eq + 1);
	(*nov)++;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "config", required_argument, NULL, 'c' },     { "check-config", no_argument, NULL, 'k' },
		{ "help-config", optional_argument, NULL, 'H' }, { "set", required_argument, NULL, 's' },
		{ "listen", required_argument, NULL, 'l' },      { "data-dir", required_argument, NULL, 'd' },
		{ "shards", required_argument, NULL, 'n' },      { "log-level", required_argument, NULL, 'L' },
		{ "log-file", required_argument, NULL, 'f' },    { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	vp_conf_opt_t rows[MAX_ROWS];
	size_t nrows = 0, nov = 0;
	override_t ov[32];
	const char *path = NULL, *log_file = NULL;
	bool check = false;
	/* The node's rows write into .node (the first member), [admin] and [metrics] into .ops, [vipr] into .vipr. */
	struct { node_conf_t node; viprd_ops_conf_t ops; viprd_vipr_conf_t vipr; } vc, fresh;
	node_conf_t *const confp = &vc.node;
#define conf (*confp)
	viprd_ops_t *ops = NULL;
	viprd_vipr_t *vipr = NULL;
	size_t nops = 0, nvipr = 0;
	node_t *node = NULL;
	FILE *logf = NULL;
	sigset_t sigs;
	int o, err, rc = 1;
	char kv[600];

	if (node_conf_schema(rows, MAX_ROWS, &nrows) ||
	    viprd_ops_conf_schema(offsetof(__typeof__(vc), ops), rows + nrows, MAX_ROWS - nrows, &nops))
		return 2;
	nrows += nops;
	if (viprd_vipr_schema(rows + nrows, MAX_ROWS - nrows, offsetof(__typeof__(vc), vipr), &nvipr))
		return 2;
	nrows += nvipr;
	while ((o = getopt_long(argc, argv, "c:h", lo, NULL)) != -1) {
		switch (o) {
		case 'c': path = optarg; break;
		case 'k': check = true; break;
		case 'H':
			if (optarg && !strcmp(optarg, "markdown"))
				vp_conf_schema_markdown(stdout, rows, nrows);
			else
				vp_conf_schema_help(stdout, rows, nrows);
			return 0;
		case 's':
			if (add_override(ov, &nov, 32, NULL, optarg)) {
				fprintf(stderr, "--set %s: expected SECTION.KEY=VALUE\n", optarg);
				return 1;
			}
			break;
		case 'l': case 'd': case 'n': case 'L':
			snprintf(kv, sizeof(kv), "%s=%s",
			         o == 'l' ? "listen" : o == 'd' ? "data_dir" : o == 'n' ? "shards" : "log_level", optarg);
			if (add_override(ov, &nov, 32, "node", kv))
				return 1;
			break;
		case 'f': log_file = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 1;
		}
	}
	if (!path || optind != argc) {
		usage(stderr);
		return 1;
	}
	if (load(rows, nrows, path, ov, nov, &conf))
		return 1;
	if (check) {
		printf("config ok file=%s overlay=%s bootstrap=\"%s\" max_message_size=%u initial_ttl=%u\n", path,
		       conf.overlay, conf.bootstrap, conf.max_message_size, conf.initial_ttl);
		return 0;
	}
	if (log_file && !(logf = fopen(log_file, "a"))) {
		fprintf(stderr, "--log-file %s: %s\n", log_file, strerror(errno));
		return 1;
	}
	if (logf)
		setvbuf(logf, NULL, _IOLBF, 0);
	vp_log_setup((vp_log_level_t)conf.log_level, logf ? logf : stderr);

	/* Signals go to this (control) thread only: block them before any shard thread exists. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	err = node_new(&conf, NULL, &node);
	if (err) {
		vp_log_error("viprd", "start_failed", "err=%s", vp_strerror(err));
		goto finish;
	}
	/* The ViPR service registers its PVP listener for AppAttach before the node starts. */
	if (vc.vipr.enabled && (err = viprd_vipr_new(&vc.vipr, &conf, node, &vipr)))
		goto finish; /* logged with its reason */
	if ((err = node_start(node))) {
		vp_log_error("viprd", "start_failed", "err=%s", vp_strerror(err));
		goto finish;
	}
	if ((err = viprd_ops_start(&vc.ops, &conf, node, &ops)))
		goto finish;
	viprd_ops_set_vipr(ops, vipr);
	if (vipr && (err = viprd_vipr_start(vipr))) {
		vp_log_error("viprd", "start_failed", "err=%s", vp_strerror(err));
		goto finish;
	}
	vp_log_info("viprd", "started", "config=%s shards=%u pid=%ld", path, node_shards(node), (long)getpid());
	viprd_ops_tick(ops); /* the first health sample now, not a second from now */
	for (;;) {
		struct timespec ts = { .tv_sec = 1, .tv_nsec = 0 };
		int sig = sigtimedwait(&sigs, NULL, &ts);
		viprd_ops_tick(ops);
		if (sig == SIGTERM || sig == SIGINT || viprd_ops_leave_requested(ops)) {
			vp_log_info("viprd", "stopping", "signal=%s", sig == SIGTERM ? "TERM" : sig == SIGINT ? "INT" : "none");
			viprd_ops_stop(ops);
			viprd_ops_set_vipr(ops, NULL);
			/* No Store is sent from now on; node_leave calls back the ones in flight (each exactly once)
			 * into the live service, which is freed only after (issue 16: freed first, a late answer
			 * posted into the freed VAP server and corrupted the heap). */
			viprd_vipr_quiesce(vipr);
			err = node_leave(node, LEAVE_TIMEOUT_MS);
			viprd_vipr_free(vipr);
			vipr = NULL;
			rc = err ? 1 : 0;
			break;
		}
		if (sig == SIGHUP) {
			if (load(rows, nrows, path, ov, nov, &fresh.node))
				vp_log_warn("viprd", "reload_refused", "config=%s", path);
			else
				node_reload(node, &fresh.node);
		}
		if (node_failed(node)) {
			vp_log_error("viprd", "shard_failed", "action=exit");
			viprd_ops_stop(ops);
			viprd_ops_set_vipr(ops, NULL);
			viprd_vipr_quiesce(vipr);
			node_leave(node, 1000);
			viprd_vipr_free(vipr);
			vipr = NULL;
			break;
		}
	}
	vp_log_info("viprd", "exit", "status=%d", rc);
finish:
	viprd_ops_set_vipr(ops, NULL);
	viprd_vipr_quiesce(vipr);
	if (node)
		node_leave(node, 1000); /* no shard may answer a status request into a freed ops, nor a request into a freed vipr */
	viprd_vipr_free(vipr);
	viprd_ops_free(ops);
	node_free(node);
	if (logf)
		fclose(logf);
	return rc;
}
