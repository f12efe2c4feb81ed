/*
 * control/daemon/viprd_vipr.c - the ViPR service inside viprd (see the header).
 */
#include "control/daemon/viprd_vipr.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/errcode.h"
#include "common/log.h"
#include "control/node/dht_reload.h"
#include "control/server/vipr_server.h"
#include "storage/vipr_kind.h"

#define LOGMOD "vipr"
#define STOP_WAIT_MS 3000u /* requests in flight at stop: their answers or the overlay's timeout */

static const vp_conf_opt_t vipr_rows[] = {
	{ .section = "vipr", .key = "enabled", .type = VP_CONF_BOOL, .def = "no",
	  .doc = "run the ViPR server on this node (a carrier's node); most nodes only route and store",
	  VP_CONF_AT(viprd_vipr_conf_t, enabled) },
	{ .section = "vipr", .key = "server_config", .type = VP_CONF_STR, .def = "",
	  .doc = "the ViPR server's configuration file ([server], [vap], [pvp], [scheduler]: see vap-serve --help-config); "
	         "required when enabled; its [server] node_id is replaced by shard 0's Node-ID",
	  VP_CONF_AT(viprd_vipr_conf_t, server_config) },
	{ .section = "vipr", .key = "quota", .type = VP_CONF_U32, .min = 1, .max = 100000000, .def = "10000",
	  .unit = "numbers", .doc = "numbers one Node-ID may claim (Q, overview §7.1); the server claims up to shards x quota "
	  "and logs event=alarm alarm=over_quota beyond: add Node-IDs ([node] shards) for a larger block",
	  VP_CONF_AT(viprd_vipr_conf_t, quota) },
	{ .section = "vipr", .key = "store_rate", .type = VP_CONF_U32, .min = 1, .max = 1000000, .def = "2000",
	  .unit = "stores/s", .doc = "Stores of registrations sent per second (a publish or refresh of a large block is paced, "
	  "in Resource-ID order, so each responsible peer gets its share in runs)",
	  VP_CONF_AT(viprd_vipr_conf_t, store_rate) },
	{ .section = "vipr", .key = "store_inflight", .type = VP_CONF_U32, .min = 1, .max = 4096, .def = "64",
	  .unit = "stores", .doc = "Stores sent and not yet answered", VP_CONF_AT(viprd_vipr_conf_t, store_inflight) },
	{ .section = "vipr", .key = "lifetime", .type = VP_CONF_DUR_S, .min = ST_VIPR_MIN_LIFETIME * 1000ull,
	  .max = ST_VIPR_MAX_LIFETIME * 1000ull, .def = "24h",
	  .doc = "lifetime of a stored registration; the call agent refreshes before it ends (overview §6.1)",
	  VP_CONF_AT(viprd_vipr_conf_t, lifetime_s) },
};

int viprd_vipr_schema(vp_conf_opt_t *out, size_t cap, size_t base, size_t *n)
{
	size_t k = VP_CONF_NOPTS(vipr_rows);
	if (k > cap)
		return VP_ESPACE;
	for (size_t i = 0; i < k; i++) {
		out[i] = vipr_rows[i];
		out[i].off += base;
	}
	*n = k;
	return 0;
}

/* ---- the transport: node_request ------------------------------------------------------ */

typedef struct attach_wait {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	int err;
	unsigned timeout_ms;
	int fd;
} attach_wait_t;

struct viprd_vipr {
	node_t *node;
	pthread_mutex_t req_mu; /* node_request's ring has one producer: our threads take turns */
	dhr_t *dhr;
	vsrv_t *srv;
	dp_cert_store_t *certs;
	EVP_PKEY *keys[NODE_MAX_SHARDS];
	uint8_t *ders[NODE_MAX_SHARDS];
	unsigned n;
	bool started;
};

/* True on a shard thread inside a node_done_fn: node_request then starts at once, without the ring. */
static _Thread_local bool in_done;

typedef struct req_ctx {
	dhr_answer_fn done;
	void *arg;
} req_ctx_t;

static void on_answer(void *arg, const node_answer_t *a)
{
	req_ctx_t *r = arg;
	in_done = true;
	if (a->err)
		r->done(r->arg, a->err, NULL, NULL);
	else
		r->done(r->arg, 0, a->msg, &a->responder);
	in_done = false;
	free(r);
}

static int t_request(void *ctx, unsigned shard, const vp_id_t *dest, const rl_body_t *body, dhr_answer_fn done,
                     void *arg)
{
	viprd_vipr_t *v = ctx;
	req_ctx_t *r = malloc(sizeof(*r));
	int rc;
	if (!r)
		return VP_ENOMEM;
	r->done = done;
	r->arg = arg;
	if (in_done) {
		rc = node_request(v->node, shard, dest, true, body, on_answer, r);
	} else {
		pthread_mutex_lock(&v->req_mu);
		rc = node_request(v->node, shard, dest, true, body, on_answer, r);
		pthread_mutex_unlock(&v->req_mu);
	}
	if (rc)
		free(r);
	return rc;
}

static void on_attach(void *arg, const node_answer_t *a)
{
	attach_wait_t *w = arg;
	int err = a->err, fd = -1;
	if (!err && a->code != RL_APP_ATTACH_ANS)
		err = VP_EREFUSED;
	if (!err)
		err = node_app_connect(&a->body->u.app_attach, w->timeout_ms, &fd);
	pthread_mutex_lock(&w->mu);
	w->err = err;
	w->fd = fd;
	w->done = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

/* AppAttach (RFC 6940 §6.5.2) to the claimant's vnode for PVP, then TCP to the candidate it answered. */
static int t_app_attach(void *ctx, const vp_id_t *contact, unsigned timeout_ms, int *fd)
{
	viprd_vipr_t *v = ctx;
	attach_wait_t w;
	rl_body_t b;
	struct timespec ts;
	int rc;
	memset(&w, 0, sizeof(w));
	pthread_mutex_init(&w.mu, NULL);
	pthread_cond_init(&w.cv, NULL);
	w.timeout_ms = timeout_ms;
	memset(&b, 0, sizeof(b));
	b.code = RL_APP_ATTACH_REQ;
	b.u.app_attach.application = VIPRD_APP_PVP;
	b.u.app_attach.role = (rl_bytes_t){ (const uint8_t *)"active", 6 };
	pthread_mutex_lock(&v->req_mu);
	rc = node_request(v->node, 0, contact, false, &b, on_attach, &w);
	pthread_mutex_unlock(&v->req_mu);
	if (rc)
		goto finish;
	/* The overlay's own timeout ends the request; the answer always comes, so wait for it. */
	pthread_mutex_lock(&w.mu);
	while (!w.done) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&w.cv, &w.mu, &ts);
	}
	pthread_mutex_unlock(&w.mu);
	rc = w.err;
	if (!rc)
		*fd = w.fd;
	else if (rc != VP_EIO)
		rc = VP_ENOROUTE;
finish:
	pthread_cond_destroy(&w.cv);
	pthread_mutex_destroy(&w.mu);
	return rc;
}

/* ---- composition ------------------------------------------------------------------------ */

/* Shard i's certificate (DER) and key, as node_new found them. */
static int load_identity(const node_conf_t *nc, unsigned i, EVP_PKEY **key, uint8_t **der, size_t *der_len)
{
	char cpath[512], kpath[512];
	X509 *x = NULL;
	FILE *f;
	int len;
	if (!i && nc->link.cert_file[0])
		snprintf(cpath, sizeof(cpath), "%s", nc->link.cert_file);
	else if (i)
		snprintf(cpath, sizeof(cpath), "%s/node-%u.pem", nc->data_dir, i);
	else
		snprintf(cpath, sizeof(cpath), "%s/node.pem", nc->data_dir);
	if (!i && nc->link.key_file[0])
		snprintf(kpath, sizeof(kpath), "%s", nc->link.key_file);
	else if (i)
		snprintf(kpath, sizeof(kpath), "%s/node-%u.key", nc->data_dir, i);
	else
		snprintf(kpath, sizeof(kpath), "%s/node.key", nc->data_dir);
	if ((f = fopen(cpath, "r"))) {
		x = PEM_read_X509(f, NULL, NULL, NULL);
		fclose(f);
	}
	if ((f = fopen(kpath, "r"))) {
		*key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
		fclose(f);
	}
	*der = NULL;
	if (x && *key && (len = i2d_X509(x, der)) > 0)
		*der_len = (size_t)len;
	X509_free(x);
	if (!*der || !*key) {
		vp_log_error(LOGMOD, "config_refused", "reason=\"cannot read %s or %s\"", cpath, kpath);
		return VP_ECONFIG;
	}
	return 0;
}

static void on_event(void *arg, const char *server, const vsrv_event_t *ev)
{
	(void)arg;
	/* The server logs its own events; the daemon adds the ones an operator greps for. */
	if (ev->kind == VSRV_EV_ROUTE && ev->route)
		vp_log_info(LOGMOD, "route_learned", "srv=%s number=%s claimant=%s", server, ev->number ? ev->number : "-",
		            ev->claimant ? ev->claimant : "-");
}

int viprd_vipr_new(const viprd_vipr_conf_t *vc, const node_conf_t *nc, node_t *node, viprd_vipr_t **out)
{
	dp_cert_store_cfg_t ccfg = { nc->overlay, 0, NULL };
	dhr_transport_t t;
	dhr_conf_t dc;
	vsrv_conf_t sc;
	vsrv_dht_t dht;
	vp_conf_err_t e = { 0 };
	viprd_vipr_t *v;
	char addr[96];
	int rc;
	if (!vc->server_config[0]) {
		vp_log_error(LOGMOD, "config_refused", "reason=\"[vipr] server_config is required when [vipr] enabled\"");
		return VP_ECONFIG;
	}
	vsrv_conf_default(&sc);
	if ((rc = vsrv_conf_load(&sc, vc->server_config, &e))) {
		vp_log_error(LOGMOD, "config_refused", "file=%s line=%d reason=\"%s\"", vc->server_config, e.line,
		             e.msg[0] ? e.msg : vp_strerror(rc));
		return VP_ECONFIG;
	}
	if (!(v = calloc(1, sizeof(*v))))
		return VP_ENOMEM;
	v->node = node;
	pthread_mutex_init(&v->req_mu, NULL);
	v->n = node_shards(node);
	dhr_conf_default(&dc);
	dc.quota = vc->quota;
	dc.store_rate = vc->store_rate;
	dc.store_inflight = vc->store_inflight;
	dc.lifetime_s = vc->lifetime_s;
	if (nc->vipr_kind_id)
		dc.kind_id = nc->vipr_kind_id;
	if (nc->vipr_quota && nc->vipr_quota < dc.quota) {
		/* The storing peers enforce the document's quota: claiming more per Node-ID would only be refused. */
		vp_log_warn(LOGMOD, "quota_lowered", "configured=%u document=%u", dc.quota, nc->vipr_quota);
		dc.quota = nc->vipr_quota;
	}
	if ((rc = dp_cert_store_new(&ccfg, &v->certs)) || (rc = dp_cert_store_add_root_file(v->certs, nc->link.ca_file)))
		goto fail;
	for (unsigned i = 0; i < v->n && i < DHR_MAX_SIGNERS; i++) {
		size_t len = 0;
		if ((rc = load_identity(nc, i, &v->keys[i], &v->ders[i], &len)))
			goto fail;
		dc.signers[i] = (dhr_signer_t){ i, *node_vnode_id(node, i), v->keys[i], v->ders[i], len };
		dc.n_signers++;
	}
	dc.certs = v->certs;
	t = (dhr_transport_t){ v, t_request, t_app_attach };
	if ((rc = dhr_new(&dc, &t, &v->dhr)))
		goto fail;
	sc.node_id = *node_vnode_id(node, 0);
	dhr_iface(v->dhr, &dht);
	if ((rc = vsrv_new(&sc, &dht, NULL, on_event, v, &v->srv)))
		goto fail;
	snprintf(addr, sizeof(addr), "%s:%u", strcmp(sc.pvp_bind, "0.0.0.0") ? sc.pvp_bind : "127.0.0.1",
	         (unsigned)vsrv_pvp_port(v->srv));
	if ((rc = node_app_set(node, VIPRD_APP_PVP, addr)))
		goto fail;
	vp_log_info(LOGMOD, "composed", "srv=%s domain=%s node_ids=%u quota_per_node_id=%u capacity=%llu vap_port=%u "
	            "pvp=%s", vsrv_name(v->srv), vsrv_domain(v->srv), dc.n_signers, dc.quota,
	            (unsigned long long)dc.quota * dc.n_signers, (unsigned)vsrv_vap_port(v->srv), addr);
	*out = v;
	return 0;
fail:
	vp_log_error(LOGMOD, "start_failed", "err=%s", vp_strerror(rc));
	viprd_vipr_free(v);
	return rc;
}

int viprd_vipr_start(viprd_vipr_t *v)
{
	int rc = vsrv_start(v->srv);
	v->started = !rc;
	return rc;
}

void viprd_vipr_free(viprd_vipr_t *v)
{
	if (!v)
		return;
	vsrv_free(v->srv);
	dhr_free(v->dhr, STOP_WAIT_MS);
	dp_cert_store_free(v->certs);
	for (unsigned i = 0; i < NODE_MAX_SHARDS; i++) {
		EVP_PKEY_free(v->keys[i]);
		OPENSSL_free(v->ders[i]);
	}
	pthread_mutex_destroy(&v->req_mu);
	free(v);
}
