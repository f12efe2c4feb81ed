/*
 * control/tools/vap_serve.c - vipr-vap-server: the VAP server on its own,
 * storing what the call agents publish into the node's own stores: numbers
 * into the RocksDB kind store (storage/, through control/vap/vap_ststore.h, one
 * WriteBatch per loop iteration, answered once in the WAL) and call records
 * into the PVP call-record store (pvp/vcr.h), both under --db DIR.
 *
 *   vipr-vap-server --db DIR [--listen ADDR:PORT] [--realm R] [--agent USER:PASSWORD]... [--agents-file F]
 *                   [--agents N --agent-prefix P --password TEMPLATE] [--node-id HEX] [--quota N]
 *                   [--store-rate N] [--store-inflight N]
 *                   [--tls-cert FILE --tls-key FILE] [--routes]
 *
 * With --routes, lines "NUMBER VSERVICE URI [TICKET-HEX] [EXPIRES]" read from
 * stdin are sent as Notify to every agent subscribed to VSERVICE, standing in
 * for validations.  SIGINT/SIGTERM stop the server and print its counters.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/rand.h>

#include <openssl/ssl.h>

#include "common/errcode.h"
#include "common/hex.h"
#include "common/log.h"
#include "common/net.h"
#include "common/id.h"
#include "control/vap/vap_ststore.h"
#include "control/vap/vap_server.h"
#include "pvp/vcr.h"
#include "storage/store.h"
#include "storage/vipr_kind.h"

static vap_server_t *g_srv;     /* main() wiring only: the signal handler needs it */

static void on_signal(int sig)
{
	(void)sig;
	if (g_srv)
		vap_server_stop(g_srv);
}

/* The VAP hooks: numbers into the kind store, call records into the PVP store, VServices logged (no PVP
 * server runs here to hand their URIs out). */
typedef struct serve {
	vap_ststore_t *sts;
	pvp_vcr_store_t *vcrs;
} serve_t;

static int hook_store(void *ctx, const vap_store_req_t *req)
{
	return vap_ststore_store(((serve_t *)ctx)->sts, req);
}

static int hook_upload_vcr(void *ctx, const char *agent, const vap_vcr_t *v)
{
	pvp_vcr_store_t *vs = ((serve_t *)ctx)->vcrs;
	pvp_vcr_t r;
	int rc = pvp_vcr_make(&r, v->direction == VAP_DIR_ORIGINATING ? PVP_DIR_ORIG : PVP_DIR_TERM, v->called,
	                      v->caller, v->start_ms, v->stop_ms, NULL);
	if (!rc)
		rc = pvp_vcr_store_add(vs, &r);
	if (rc)
		vp_log_warn("vap", "vcr_rejected", "agent=%s called=%s err=%s", agent, v->called, vp_errname(rc));
	return rc;
}

static int hook_vservice(void *ctx, const char *agent, const vap_vservice_t *vs)
{
	(void)ctx;
	vp_log_info("vap", "vservice_published", "agent=%s vservice=%u uris=%zu black=%zu white=%zu", agent,
	            vs->id, vs->n_uris, vs->n_black, vs->n_white);
	return 0;
}

static void do_notify(vap_server_t *srv, void *arg)
{
	vap_route_t *r = arg;
	int n = vap_server_notify(srv, r);
	vp_log_info("vap", "route_notified", "number=%s vservice=%u subscribers=%d", r->number,
	            r->vservice_id, n);
	free(r);
}

static void *route_reader(void *arg)
{
	vap_server_t *srv = arg;
	char line[1024];
	while (fgets(line, sizeof(line), stdin)) {
		char num[64] = "", uri[VAP_MAX_URI] = "", hex[2 * VAP_MAX_TICKET + 1] = "";
		unsigned vs = 0, exp = 86400;
		vap_route_t *r;
		int n = sscanf(line, "%63s %u %255s %1024s %u", num, &vs, uri, hex, &exp);
		if (n < 3 || !vp_e164_is_canonical(num)) {
			fprintf(stderr, "routes: want NUMBER VSERVICE URI [TICKET-HEX] [EXPIRES]\n");
			continue;
		}
		r = calloc(1, sizeof(*r));
		if (!r)
			break;
		snprintf(r->number, sizeof(r->number), "%s", num);
		r->vservice_id = vs;
		r->expires = exp;
		r->n_uris = 1;
		snprintf(r->uris[0], sizeof(r->uris[0]), "%s", uri);
		if (n >= 4 && vp_hex_decode(hex, strlen(hex), r->ticket, sizeof(r->ticket), &r->ticket_len)) {
			fprintf(stderr, "routes: bad ticket hex\n");
			free(r);
			continue;
		}
		if (vap_server_post(srv, do_notify, r))
			free(r);
	}
	return NULL;
}

static int load_agents(vap_server_t *srv, const char *path)
{
	FILE *f = fopen(path, "r");
	char line[512];
	unsigned lineno = 0, n = 0;
	if (!f) {
		fprintf(stderr, "vipr-vap-server: %s: %s\n", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		char user[VAP_MAX_USERNAME + 1], pw[256], extra[2];
		char *hash = strchr(line, '#');
		int k, rc;
		lineno++;
		if (hash)
			*hash = '\0';
		k = sscanf(line, "%128s %255s %1s", user, pw, extra);
		if (k <= 0)
			continue;
		if (k != 2 || (rc = vap_server_add_agent(srv, user, pw))) {
			fprintf(stderr, "vipr-vap-server: %s:%u: %s\n", path, lineno,
			        k != 2 ? "want USER PASSWORD" : vp_strerror(rc));
			fclose(f);
			return -1;
		}
		n++;
	}
	fclose(f);
	vp_log_info("vap", "agents_loaded", "file=%s agents=%u", path, n);
	return 0;
}

static SSL_CTX *make_tls(const char *cert, const char *key)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		fprintf(stderr, "vipr-vap-server: cannot load %s / %s\n", cert, key);
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

static void usage(FILE *f)
{
	fprintf(f,
	"usage: vipr-vap-server --db DIR [options]\n"
	"  -d, --db DIR              where numbers (DIR/kinds, RocksDB kind store) and call records\n"
	"                            (DIR/vcr) are stored; created if missing\n"
	"  -l, --listen ADDR:PORT    listen address (default 127.0.0.1:5349; [V6]:PORT; port 0 = any)\n"
	"      --node-id HEX         our Node-ID: claimant, contact and signer of the numbers (default random)\n"
	"      --quota N             ViPR quota Q of our Node-ID (we may hold 2Q+16 numbers; default 10000)\n"
	"      --realm R             credential realm (default vipr)\n"
	"  -a, --agent USER:PW       provision an agent (repeatable)\n"
	"      --agents-file F       provision agents from F: 'USER PASSWORD' per line, '#' comments\n"
	"      --agents N            provision N agents PREFIX0..: --agent-prefix (default agent),\n"
	"                            --password TEMPLATE ('%%s' = username; default pw-%%s)\n"
	"      --store-rate N        DHT stores per second (0 = unlimited)\n"
	"      --store-inflight N    stores in flight at once (default 256)\n"
	"      --req-rate N          requests per second per agent (default 5000)\n"
	"      --tls-cert F --tls-key F   serve TLS\n"
	"      --allow-plain-tcp     listen without TLS on a non-loopback address (exposes the\n"
	"                            agents' passwords to offline guessing; refused otherwise)\n"
	"      --routes              read routes from stdin and Notify subscribers\n"
	"  -v, --verbose             debug logs\n");
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "realm", required_argument, NULL, 1 },
		{ "agent", required_argument, NULL, 'a' },
		{ "agents", required_argument, NULL, 2 },
		{ "agent-prefix", required_argument, NULL, 3 },
		{ "password", required_argument, NULL, 4 },
		{ "store-rate", required_argument, NULL, 5 },
		{ "store-inflight", required_argument, NULL, 6 },
		{ "db", required_argument, NULL, 'd' },
		{ "node-id", required_argument, NULL, 7 },
		{ "quota", required_argument, NULL, 13 },
		{ "tls-cert", required_argument, NULL, 8 },
		{ "tls-key", required_argument, NULL, 9 },
		{ "routes", no_argument, NULL, 10 },
		{ "req-rate", required_argument, NULL, 11 },
		{ "agents-file", required_argument, NULL, 12 },
		{ "allow-plain-tcp", no_argument, NULL, 14 },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	vap_server_conf_t conf;
	vap_hooks_t hooks = { 0 };
	vap_ststore_t *sts = NULL;
	serve_t sv;
	vap_ststore_conf_t sc;
	st_config_t stc;
	st_db_t *db = NULL;
	pvp_vcr_store_conf_t vcf;
	pvp_vcr_store_t *vcrs = NULL;
	const char *dbdir = NULL, *node_hex = NULL;
	char path[1024];
	unsigned long quota = ST_VIPR_QUOTA;
	vap_server_stats_t st;
	const char *listen_at = "127.0.0.1:5349", *prefix = "agent", *pwt = "pw-%s";
	const char *cert = NULL, *key = NULL, *agents_file = NULL;
	char **agents = NULL;
	size_t nagents = 0;
	unsigned gen = 0;
	bool routes = false;
	char host[128];
	pthread_t th;
	int ch, rc, ret = 1;

	vap_server_conf_default(&conf);
	vp_log_setup(VP_LOG_INFO, NULL);
	agents = calloc((size_t)argc, sizeof(*agents));
	if (!agents)
		return 1;
	while ((ch = getopt_long(argc, argv, "d:l:a:vh", lopts, NULL)) != -1) {
		switch (ch) {
		case 'l': listen_at = optarg; break;
		case 1: conf.realm = optarg; break;
		case 'a': agents[nagents++] = optarg; break;
		case 2: gen = (unsigned)strtoul(optarg, NULL, 10); break;
		case 3: prefix = optarg; break;
		case 4: pwt = optarg; break;
		case 5: conf.store_rate = strtod(optarg, NULL); break;
		case 6: conf.store_inflight = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'd': dbdir = optarg; break;
		case 7: node_hex = optarg; break;
		case 13: quota = strtoul(optarg, NULL, 10); break;
		case 8: cert = optarg; break;
		case 9: key = optarg; break;
		case 10: routes = true; break;
		case 11: conf.req_rate = strtod(optarg, NULL); break;
		case 12: agents_file = optarg; break;
		case 14: conf.allow_plain_tcp = true; break;
		case 'v': vp_log_setup(VP_LOG_DEBUG, NULL); break;
		case 'h': usage(stdout); free(agents); return 0;
		default: usage(stderr); free(agents); return 2;
		}
	}
	if (vp_net_split_hostport(listen_at, true, host, sizeof(host), &conf.port)) {
		fprintf(stderr, "vipr-vap-server: bad --listen '%s' (ADDR:PORT or [V6]:PORT)\n", listen_at);
		free(agents);
		return 2;
	}
	conf.bind_addr = host;
	if ((cert != NULL) != (key != NULL)) {
		fprintf(stderr, "vipr-vap-server: --tls-cert and --tls-key go together\n");
		free(agents);
		return 2;
	}
	if (!dbdir || strlen(dbdir) > sizeof(path) - 8) {
		fprintf(stderr, "vipr-vap-server: --db DIR is required\n");
		free(agents);
		return 2;
	}
	memset(&sc, 0, sizeof(sc));
	if (node_hex ? vp_id_from_hex(node_hex, &sc.node) : (RAND_bytes(sc.node.b, VP_ID_LEN) != 1 ? VP_ECRYPTO : 0)) {
		fprintf(stderr, "vipr-vap-server: bad --node-id (32 hex digits)\n");
		free(agents);
		return 2;
	}
	if (quota == 0 || quota > UINT32_MAX / 4) {
		fprintf(stderr, "vipr-vap-server: --quota must be 1..%u\n", UINT32_MAX / 4);
		free(agents);
		return 2;
	}
	sc.methods = ST_VIPR_PVP_WITH_CALLER_ID | ST_VIPR_PVP_WITHOUT_CALLER_ID;
	if (cert && !(conf.tls = make_tls(cert, key)))
		goto out;
	if (mkdir(dbdir, 0700) && errno != EEXIST) {
		fprintf(stderr, "vipr-vap-server: %s: %s\n", dbdir, strerror(errno));
		goto out;
	}
	st_config_default(&stc);
	snprintf(path, sizeof(path), "%s/kinds", dbdir);
	stc.path = path;
	stc.vipr_quota = (uint32_t)quota;
	/* Our own claims: the VAP server polices and paces the agents, not the store's per-signer bucket. */
	stc.rate[ST_RATE_STORE] = (st_rate_limit_t){ 0, 0 };
	if ((rc = st_db_open(&stc, &db))) {
		fprintf(stderr, "vipr-vap-server: %s: %s\n", path, vp_strerror(rc));
		goto out;
	}
	memset(&vcf, 0, sizeof(vcf));
	snprintf(path, sizeof(path), "%s/vcr", dbdir);
	vcf.path = path;
	if ((rc = pvp_vcr_store_open(&vcf, &vcrs))) {
		fprintf(stderr, "vipr-vap-server: %s: %s\n", path, vp_strerror(rc));
		goto out;
	}
	if ((rc = vap_ststore_new(st_db_shard(db, 0), &sc, conf.store_inflight, &sts))) {
		fprintf(stderr, "vipr-vap-server: %s\n", vp_strerror(rc));
		goto out;
	}
	sv.sts = sts;
	sv.vcrs = vcrs;
	hooks.ctx = &sv;
	hooks.store = hook_store;
	hooks.upload_vcr = hook_upload_vcr;
	hooks.publish_vservice = hook_vservice;
	if ((rc = vap_server_create(&conf, &hooks, &g_srv))) {
		fprintf(stderr, "vipr-vap-server: cannot listen on %s: %s\n", listen_at, vp_strerror(rc));
		goto out;
	}
	for (size_t i = 0; i < nagents; i++) {
		char *pw = strchr(agents[i], ':');
		if (!pw) {
			fprintf(stderr, "vipr-vap-server: --agent wants USER:PASSWORD\n");
			goto out;
		}
		*pw++ = '\0';
		if ((rc = vap_server_add_agent(g_srv, agents[i], pw))) {
			fprintf(stderr, "vipr-vap-server: agent %s: %s\n", agents[i], vp_strerror(rc));
			goto out;
		}
	}
	if (agents_file && load_agents(g_srv, agents_file))
		goto out;
	for (unsigned i = 0; i < gen; i++) {
		char name[VAP_MAX_USERNAME + 1], pw[256];
		const char *s = strstr(pwt, "%s");
		snprintf(name, sizeof(name), "%s%u", prefix, i);
		if (s)
			snprintf(pw, sizeof(pw), "%.*s%s%s", (int)(s - pwt), pwt, name, s + 2);
		else
			snprintf(pw, sizeof(pw), "%s", pwt);
		if ((rc = vap_server_add_agent(g_srv, name, pw))) {
			fprintf(stderr, "vipr-vap-server: agent %s: %s\n", name, vp_strerror(rc));
			goto out;
		}
	}
	{
		char hex[VP_ID_HEX_LEN + 1];
		printf("vipr-vap-server listening on %s port %u (%zu + %u agents, store: %s, node %s)\n", host,
		       vap_server_port(g_srv), nagents, gen, dbdir, vp_id_to_hex(&sc.node, hex));
	}
	fflush(stdout);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	if (routes && pthread_create(&th, NULL, route_reader, g_srv) == 0)
		pthread_detach(th);
	rc = vap_ststore_run(sts, g_srv);
	vap_server_get_stats(g_srv, &st);
	printf("stopped: conns=%" PRIu64 " requests=%" PRIu64 " ok=%" PRIu64 " errors=%" PRIu64
	       " (400=%" PRIu64 " 401=%" PRIu64 " 420=%" PRIu64 " 429=%" PRIu64 " 503=%" PRIu64
	       ") quota_used=%zu vcrs=%" PRIu64 " notifies=%" PRIu64 "\n",
	       st.conns_total, st.requests, st.responses_ok, st.responses_err, st.err_400, st.err_401,
	       st.err_420, st.err_429, st.err_503, (size_t)st_quota_used(st_db_shard(db, 0), &sc.node,
	       ST_VIPR_KIND_ID_DEFAULT), st.vcrs, st.notifies);
	ret = rc ? 1 : 0;
out:
	vap_server_destroy(g_srv);
	g_srv = NULL;
	vap_ststore_free(sts);
	pvp_vcr_store_close(vcrs);
	st_db_close(db);
	SSL_CTX_free(conf.tls);
	free(agents);
	return ret;
}
