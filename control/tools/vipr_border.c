/*
 * vipr-border - the ViPR border element: SIP over mutual TLS in front of a call
 * agent, admitting only ticketed SRTP calls (docs/protocol.md §7.1).
 *
 *   vipr-border -c FILE [-o section.key=value]...   run
 *   vipr-border --help-config | --markdown-config   the options, from the schema below
 *
 * SIGTERM/SIGINT stop it; SIGHUP re-reads the ticket key file (it is also
 * re-read whenever it changes on disk).
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/conf.h"
#include "common/errcode.h"
#include "common/log.h"
#include "control/border/server.h"
#include "control/metrics/metrics.h"

typedef struct bconf {
	char listen[VB_ADDR_MAX], plain_listen[VB_ADDR_MAX], call_agent[VB_ADDR_MAX], metrics[VB_ADDR_MAX];
	char agent_listen[VB_ADDR_MAX];
	char cert[VB_PATH_MAX], key[VB_PATH_MAX], ca[VB_PATH_MAX], ticket_keys[VB_PATH_MAX], cert_issuer[VB_PATH_MAX];
	char outside_uri[VB_URI_MAX], inside_uri[VB_URI_MAX];
	char country_code[4];
	uint32_t max_conns, max_conns_per_peer, max_message, burst, max_dialogs;
	uint64_t handshake_timeout_ms, message_timeout_ms, idle_timeout_ms;
	uint32_t early_timeout_s, dialog_idle_s;
	unsigned refuse, no_srtp, log_level;
	bool checks, require_routes;
} bconf_t;

static const char *const refuse_words[] = {"403", "drop", NULL};
static const int refuse_status[] = {403, 0};
static const char *const no_srtp_words[] = {"488", "403", "drop", NULL};
static const int no_srtp_status[] = {488, 403, 0};
static const char *const level_words[] = {"error", "warn", "info", "debug", NULL};

static const vp_conf_opt_t opts[] = {
	{.section = "border", .key = "listen", .type = VP_CONF_STR, .def = "127.0.0.1:5061",
	 .doc = "SIP over TLS listener (host:port, [v6]:port); peers must present a certificate from `ca`",
	 VP_CONF_AT(bconf_t, listen)},
	{.section = "border", .key = "plain_listen", .type = VP_CONF_STR, .def = "",
	 .doc = "diagnostic plain-TCP listener answering every request 403 and closing; empty = no plain socket at all",
	 VP_CONF_AT(bconf_t, plain_listen)},
	{.section = "border", .key = "cert", .type = VP_CONF_STR, .doc = "our certificate chain (PEM)",
	 VP_CONF_AT(bconf_t, cert)},
	{.section = "border", .key = "key", .type = VP_CONF_STR, .doc = "our private key (PEM)", VP_CONF_AT(bconf_t, key)},
	{.section = "border", .key = "ca", .type = VP_CONF_STR,
	 .doc = "CA certificates peers' certificates must chain to (PEM); the peer's DNS name is the calling domain",
	 VP_CONF_AT(bconf_t, ca)},
	{.section = "border", .key = "max_conns", .type = VP_CONF_U32, .min = 1, .max = 1000000, .def = "4096",
	 .unit = "connections", .doc = "outside connections at once; more are closed on accept",
	 VP_CONF_AT(bconf_t, max_conns)},
	{.section = "border", .key = "max_conns_per_peer", .type = VP_CONF_U32, .min = 0, .max = 1000000, .def = "256",
	 .unit = "connections", .doc = "connections of one calling domain at once (0 = no limit): one carrier cannot take them all",
	 VP_CONF_AT(bconf_t, max_conns_per_peer)},
	{.section = "border", .key = "max_message", .type = VP_CONF_U32, .min = 1024, .max = 1 << 20, .def = "16384",
	 .unit = "bytes", .doc = "largest SIP message (headers and body); a larger one closes the connection",
	 VP_CONF_AT(bconf_t, max_message)},
	{.section = "border", .key = "handshake_timeout", .type = VP_CONF_DUR_MS, .min = 100, .max = 60000, .def = "5s",
	 .doc = "a TLS handshake not finished by then is dropped", VP_CONF_AT(bconf_t, handshake_timeout_ms)},
	{.section = "border", .key = "message_timeout", .type = VP_CONF_DUR_MS, .min = 100, .max = 60000, .def = "5s",
	 .doc = "a SIP message started must be complete by then (slow senders are dropped)",
	 VP_CONF_AT(bconf_t, message_timeout_ms)},
	{.section = "border", .key = "idle_timeout", .type = VP_CONF_DUR_MS, .min = 1000, .max = 86400000ull,
	 .def = "1h", .doc = "an outside connection without traffic is closed", VP_CONF_AT(bconf_t, idle_timeout_ms)},
	{.section = "border", .key = "burst", .type = VP_CONF_U32, .min = 1, .max = 1024, .def = "16",
	 .unit = "messages", .doc = "messages served per connection per loop turn (fairness between peers)",
	 VP_CONF_AT(bconf_t, burst)},
	{.section = "call_agent", .key = "address", .type = VP_CONF_STR,
	 .doc = "the call agent admitted calls go to (host:port, TCP)", VP_CONF_AT(bconf_t, call_agent)},
	{.section = "call_agent", .key = "listen", .type = VP_CONF_STR, .def = "",
	 .doc = "TCP listener for call agents calling out (egress: over TLS to the Request-URI host, SRTP only); "
	        "empty = no calls out", VP_CONF_AT(bconf_t, agent_listen)},
	{.section = "tickets", .key = "key_file", .type = VP_CONF_STR,
	 .doc = "ticket key file shared with the ViPR server (docs/protocol.md §7); re-read when it changes",
	 VP_CONF_AT(bconf_t, ticket_keys)},
	{.section = "tickets", .key = "cert_issuer", .type = VP_CONF_STR, .def = "",
	 .doc = "the ViPR server's issuing CA certificate (PEM): its client certificates admit calls to their number "
	        "without a ticket (docs/protocol.md §6.1); empty = tickets only",
	 VP_CONF_AT(bconf_t, cert_issuer)},
	{.section = "tickets", .key = "require_routes", .type = VP_CONF_BOOL, .def = "true",
	 .doc = "refuse pending tickets (§7 step 7); false only for tests of accumulation",
	 VP_CONF_AT(bconf_t, require_routes)},
	{.section = "tickets", .key = "country_code", .type = VP_CONF_STR, .def = "",
	 .doc = "country code for national Request-URI numbers; empty = international numbers only",
	 VP_CONF_AT(bconf_t, country_code)},
	{.section = "admission", .key = "checks", .type = VP_CONF_BOOL, .def = "true",
	 .doc = "ticket and SRTP checks; false turns vipr-border into a plain proxy (benchmark baseline only)",
	 VP_CONF_AT(bconf_t, checks)},
	{.section = "admission", .key = "refuse", .type = VP_CONF_ENUM, .def = "403", .choices = refuse_words,
	 .doc = "answer to a refused request: 403, or drop it silently", VP_CONF_AT(bconf_t, refuse)},
	{.section = "admission", .key = "no_srtp", .type = VP_CONF_ENUM, .def = "488", .choices = no_srtp_words,
	 .doc = "answer to an offer without SRTP (and to a downgrading re-INVITE)", VP_CONF_AT(bconf_t, no_srtp)},
	{.section = "sip", .key = "outside_uri", .type = VP_CONF_STR, .def = "",
	 .doc = "our Record-Route URI towards peers; empty = sip:<listen>;transport=tls",
	 VP_CONF_AT(bconf_t, outside_uri)},
	{.section = "sip", .key = "inside_uri", .type = VP_CONF_STR, .def = "",
	 .doc = "our Record-Route URI towards the call agent; empty = sip:<listen>;transport=tcp",
	 VP_CONF_AT(bconf_t, inside_uri)},
	{.section = "sip", .key = "max_dialogs", .type = VP_CONF_U32, .min = 1, .max = 10000000, .def = "100000",
	 .unit = "dialogs", .doc = "calls tracked at once; new INVITEs get 503 beyond", VP_CONF_AT(bconf_t, max_dialogs)},
	{.section = "sip", .key = "early_timeout", .type = VP_CONF_DUR_S, .min = 1000, .max = 3600000, .def = "180s",
	 .doc = "an INVITE without a final response is forgotten after this", VP_CONF_AT(bconf_t, early_timeout_s)},
	{.section = "sip", .key = "dialog_idle", .type = VP_CONF_DUR_S, .min = 60000, .max = 7 * 86400000ull, .def = "4h",
	 .doc = "a call without in-dialog requests is forgotten after this", VP_CONF_AT(bconf_t, dialog_idle_s)},
	{.section = "metrics", .key = "listen", .type = VP_CONF_STR, .def = "",
	 .doc = "HTTP address for /metrics and /health (host:port, numeric); empty = off", VP_CONF_AT(bconf_t, metrics)},
	{.section = "log", .key = "level", .type = VP_CONF_ENUM, .def = "info", .choices = level_words,
	 .doc = "log threshold (refusals are logged at info)", VP_CONF_AT(bconf_t, log_level)},
};

static vb_server_t *g_srv; /* for the signal handlers only */

static void on_stop(int sig)
{
	(void)sig;
	if (g_srv)
		vb_server_stop(g_srv);
}

static void on_hup(int sig)
{
	(void)sig;
	if (g_srv)
		vb_server_reload(g_srv);
}

static bool health(void *ctx, char *why, size_t cap)
{
	if (vb_server_inside_up(ctx))
		return true;
	snprintf(why, cap, "call agent not connected");
	return false;
}

static void usage(FILE *f)
{
	fputs("usage: vipr-border -c FILE [-o section.key=value]...\n"
	      "       vipr-border --help-config | --markdown-config\n",
	      f);
}

static int set_override(bconf_t *c, const char *arg, vp_conf_err_t *e)
{
	char buf[512];
	snprintf(buf, sizeof(buf), "%s", arg);
	char *eq = strchr(buf, '='), *dot = strchr(buf, '.');
	if (!eq || !dot || dot > eq) {
		snprintf(e->msg, sizeof(e->msg), "-o wants section.key=value, got '%s'", arg);
		return VP_EINVAL;
	}
	*eq = *dot = '\0';
	return vp_conf_schema_set(opts, VP_CONF_NOPTS(opts), c, buf, dot + 1, eq + 1, false, e);
}

/* Parse "host:port" for libmicrohttpd (numeric host). */
static int split_hostport(const char *text, char *host, size_t cap, uint16_t *port)
{
	const char *colon = strrchr(text, ':');
	if (!colon || (size_t)(colon - text) >= cap)
		return VP_EINVAL;
	size_t hl = (size_t)(colon - text);
	if (text[0] == '[' && hl >= 2 && text[hl - 1] == ']') {
		memcpy(host, text + 1, hl - 2);
		host[hl - 2] = '\0';
	} else {
		memcpy(host, text, hl);
		host[hl] = '\0';
	}
	char *end;
	unsigned long p = strtoul(colon + 1, &end, 10);
	if (*end || p > 65535)
		return VP_EINVAL;
	*port = (uint16_t)p;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{"config", required_argument, NULL, 'c'},
		{"set", required_argument, NULL, 'o'},
		{"help-config", no_argument, NULL, 'H'},
		{"markdown-config", no_argument, NULL, 'M'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *path = NULL;
	const char *sets[64];
	int nsets = 0, ch;
	while ((ch = getopt_long(argc, argv, "c:o:h", lopts, NULL)) != -1) {
		switch (ch) {
		case 'c': path = optarg; break;
		case 'o':
			if (nsets == 64) {
				fputs("vipr-border: too many -o\n", stderr);
				return 2;
			}
			sets[nsets++] = optarg;
			break;
		case 'H': vp_conf_schema_help(stdout, opts, VP_CONF_NOPTS(opts)); return 0;
		case 'M': vp_conf_schema_markdown(stdout, opts, VP_CONF_NOPTS(opts)); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!path || optind != argc) {
		usage(stderr);
		return 2;
	}
	bconf_t c;
	vp_conf_err_t e = {0};
	int rc = vp_conf_schema_load(opts, VP_CONF_NOPTS(opts), path, &c, &e);
	for (int i = 0; rc == 0 && i < nsets; i++)
		rc = set_override(&c, sets[i], &e);
	if (rc != 0) {
		if (e.line)
			fprintf(stderr, "vipr-border: %s: line %d: %s\n", path, e.line, e.msg);
		else
			fprintf(stderr, "vipr-border: %s: %s\n", path, e.msg);
		return 2;
	}
	const char *missing = !c.cert[0] ? "[border] cert" : !c.key[0] ? "[border] key" : !c.ca[0] ? "[border] ca"
	                    : !c.call_agent[0] ? "[call_agent] address" : !c.ticket_keys[0] ? "[tickets] key_file" : NULL;
	if (missing) {
		fprintf(stderr, "vipr-border: %s: %s is required\n", path, missing);
		return 2;
	}
	vp_log_setup((vp_log_level_t)c.log_level, NULL);

	vb_server_conf_t sc = {0};
	snprintf(sc.listen, sizeof(sc.listen), "%s", c.listen);
	snprintf(sc.plain_listen, sizeof(sc.plain_listen), "%s", c.plain_listen);
	snprintf(sc.call_agent, sizeof(sc.call_agent), "%s", c.call_agent);
	snprintf(sc.agent_listen, sizeof(sc.agent_listen), "%s", c.agent_listen);
	snprintf(sc.cert, sizeof(sc.cert), "%s", c.cert);
	snprintf(sc.key, sizeof(sc.key), "%s", c.key);
	snprintf(sc.ca, sizeof(sc.ca), "%s", c.ca);
	snprintf(sc.ticket_keys, sizeof(sc.ticket_keys), "%s", c.ticket_keys);
	snprintf(sc.cert_issuer, sizeof(sc.cert_issuer), "%s", c.cert_issuer);
	sc.max_conns = c.max_conns;
	sc.max_conns_per_peer = c.max_conns_per_peer;
	sc.max_message = c.max_message;
	sc.handshake_timeout_ms = (uint32_t)c.handshake_timeout_ms;
	sc.message_timeout_ms = (uint32_t)c.message_timeout_ms;
	sc.idle_timeout_ms = (uint32_t)c.idle_timeout_ms;
	sc.burst = c.burst;
	vb_proxy_conf_defaults(&sc.proxy);
	sc.proxy.checks = c.checks;
	sc.proxy.require_routes = c.require_routes;
	sc.proxy.refuse_status = refuse_status[c.refuse];
	sc.proxy.no_srtp_status = no_srtp_status[c.no_srtp];
	sc.proxy.max_dialogs = c.max_dialogs;
	sc.proxy.early_timeout_s = c.early_timeout_s;
	sc.proxy.idle_timeout_s = c.dialog_idle_s;
	snprintf(sc.proxy.outside_uri, sizeof(sc.proxy.outside_uri), "%s", c.outside_uri);
	snprintf(sc.proxy.inside_uri, sizeof(sc.proxy.inside_uri), "%s", c.inside_uri);
	if (vp_e164_conf_init(&sc.proxy.e164, c.country_code[0] ? c.country_code : NULL) != 0) {
		fprintf(stderr, "vipr-border: %s: [tickets] country_code '%s' is not a country code\n", path, c.country_code);
		return 2;
	}

	vm_registry_t *reg = NULL;
	vm_http_t *http = NULL;
	vb_server_t *srv = NULL;
	int status = 1;
	if (vm_registry_new(1, 256, &reg) != 0)
		goto finish;
	if ((rc = vb_server_new(&sc, reg, &srv)) != 0) {
		fprintf(stderr, "vipr-border: cannot start: %s\n", vp_strerror(rc));
		goto finish;
	}
	if (c.metrics[0]) {
		char host[VB_ADDR_MAX];
		uint16_t port;
		if (split_hostport(c.metrics, host, sizeof(host), &port) != 0 ||
		    vm_http_start(reg, host, port, health, srv, &http) != 0) {
			fprintf(stderr, "vipr-border: [metrics] listen '%s' unusable\n", c.metrics);
			goto finish;
		}
		vp_log_info("border", "metrics", "addr=%s port=%u", host, vm_http_port(http));
	}
	g_srv = srv;
	struct sigaction sa = {0};
	sa.sa_handler = on_stop;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = on_hup;
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	status = vb_server_run(srv) == 0 ? 0 : 1;
	vp_log_info("border", "stopped", NULL);
finish:
	g_srv = NULL;
	vm_http_stop(http);
	vb_server_free(srv);
	vm_registry_free(reg);
	return status;
}
