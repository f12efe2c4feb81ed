/*
 * control/daemon/viprd_vipr.c - the ViPR service inside viprd (see the header).
 */
#include "control/daemon/viprd_vipr.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/clock.h"
#include "common/e164.h"
#include "common/errcode.h"
#include "common/log.h"
#include "control/node/dht_reload.h"
#include "control/server/vipr_server.h"
#include "storage/vipr_kind.h"

#define LOGMOD "vipr"
#define STOP_WAIT_MS 3000u /* requests in flight at stop: their answers or the overlay's timeout */
/*
 * TR_TEXT: one trace event's detail (a lookup's incident is cut there; the full text is in the log).
 * ALARM_WINDOW_MS: the counted alarms (refused credentials, incidents from one peer, over quota) look at the
 * current and the previous hour.  PEERS_TRACKED: peers named by incidents that are counted at once (the
 * least recently named gives its slot to a new one).  KEYS_CHECK_MS: the ticket key file is read again at
 * most this often.
 */
#define TR_TEXT 192u
#define ALARM_WINDOW_MS 3600000ull
#define PEERS_TRACKED 64u
#define KEYS_CHECK_MS 5000u

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
	  "as 256 interleaved Resource-ID sweeps: each responsible peer gets its share in ascending runs, "
	  "consecutive Stores go to different peers)",
	  VP_CONF_AT(viprd_vipr_conf_t, store_rate) },
	{ .section = "vipr", .key = "store_inflight", .type = VP_CONF_U32, .min = 1, .max = 4096, .def = "64",
	  .unit = "stores", .doc = "Stores sent and not yet answered", VP_CONF_AT(viprd_vipr_conf_t, store_inflight) },
	{ .section = "vipr", .key = "lifetime", .type = VP_CONF_DUR_S, .min = ST_VIPR_MIN_LIFETIME * 1000ull,
	  .max = ST_VIPR_MAX_LIFETIME * 1000ull, .def = "24h",
	  .doc = "lifetime of a stored registration; the call agent refreshes before it ends (overview §6.1)",
	  VP_CONF_AT(viprd_vipr_conf_t, lifetime_s) },
	{ .section = "vipr", .key = "alarm_pending", .type = VP_CONF_U32, .min = 0, .max = 100000000, .def = "100000",
	  .unit = "records", .doc = "alarm validations_pending while more originating records than this wait for "
	  "validation (the scheduler's queue; [scheduler] max_jobs refuses uploads beyond its own bound)",
	  VP_CONF_AT(viprd_vipr_conf_t, alarm_pending) },
	{ .section = "vipr", .key = "alarm_cert", .type = VP_CONF_DUR_S, .min = 0, .max = 3650ull * 86400000ull,
	  .def = "14d", .doc = "alarm cert_expiring while a vnode's certificate or the ViPR client-certificate issuer "
	  "([pvp] cert_issuer) ends within this", VP_CONF_AT(viprd_vipr_conf_t, alarm_cert_s) },
	{ .section = "vipr", .key = "alarm_refused", .type = VP_CONF_U32, .min = 1, .max = 100000000, .def = "100",
	  .unit = "handshakes/h", .doc = "alarm refused_credentials when the PVP server failed this many handshakes "
	  "(wrong secret, rate-limited), or the VAP listener refused this many agent logins, in the current or previous "
	  "hour: someone guesses",
	  VP_CONF_AT(viprd_vipr_conf_t, alarm_refused) },
	{ .section = "vipr", .key = "alarm_peer_incidents", .type = VP_CONF_U32, .min = 1, .max = 1000000, .def = "5",
	  .unit = "incidents/h", .doc = "alarm peer_incidents when lookups blamed one peer (entries that failed "
	  "verification, or the one copy outvoted by the two others) this many times in the current or previous hour",
	  VP_CONF_AT(viprd_vipr_conf_t, alarm_peer_incidents) },
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

/* One event of a number's trace. */
typedef struct tr_ev {
	uint64_t at_ms;
	const char *what;                   /* static: "call_record", "lookup", "handshake", ... */
	int status;                         /* 0 or VP_E* */
	char claimant[VP_ID_HEX_LEN + 1];   /* "" when none */
	char text[TR_TEXT];
} tr_ev_t;

typedef struct tr_num {
	char number[VP_E164_BUFLEN];        /* "" = free slot */
	uint64_t first_ms, seen_ms, total;  /* total: events ever recorded (the ring keeps the latest) */
	unsigned head, n;
	tr_ev_t ev[VIPRD_TRACE_EVENTS];
} tr_num_t;

/* A fixed-window counter over the current and the previous hour. */
typedef struct win {
	uint64_t start_ms, cur, prev;
} win_t;

typedef struct peer_count {
	char id[VP_ID_HEX_LEN + 1];
	uint64_t seen_ms;
	win_t w;
} peer_count_t;

struct viprd_vipr {
	viprd_vipr_conf_t conf;
	node_t *node;
	dhr_t *dhr;
	vsrv_t *srv;
	dp_cert_store_t *certs;
	EVP_PKEY *keys[NODE_MAX_SHARDS];
	uint8_t *ders[NODE_MAX_SHARDS];
	unsigned n;
	bool started;
	vsrv_dht_t inner;                   /* dhr's interface: fetch is wrapped to trace lookups */
	pthread_mutex_t tr_mu;              /* the trace and the alarms' state */
	tr_num_t *tr;                       /* VIPRD_TRACE_NUMBERS slots */
	win_t refused, vap_refused, over_quota, refresh_late;
	uint64_t over_quota_seen, vap_401_seen, refresh_late_seen;
	peer_count_t peers[PEERS_TRACKED];
	time_t cert_end[NODE_MAX_SHARDS + 1]; /* vnodes' certificates, then the issuer's (0 = none) */
	char keys_path[VSRV_PATH_MAX];
	uint8_t keys_hash[32];
	bool keys_known, keys_changed;
	uint64_t keys_checked_ms;
	uint8_t active[VIPRD_ALARM__COUNT]; /* for the start and clear log lines */
};

const char *const viprd_vipr_alarm_name[VIPRD_ALARM__COUNT] = {
	"over_quota", "validations_pending", "cert_expiring", "refused_credentials", "ticket_key_changed",
	"peer_incidents", "publish_behind",
};

typedef struct req_ctx {
	dhr_answer_fn done;
	void *arg;
} req_ctx_t;

static void on_answer(void *arg, const node_answer_t *a)
{
	req_ctx_t *r = arg;
	if (a->err)
		r->done(r->arg, a->err, NULL, NULL);
	else
		r->done(r->arg, 0, a->msg, &a->responder);
	free(r);
}

/* node_request takes its own turn on the shard's ring (push_mu) or, on the shard's thread, starts at once. */
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
	if ((rc = node_request(v->node, shard, dest, true, body, on_answer, r)))
		free(r);
	return rc;
}

static int t_call(void *ctx, unsigned shard, void (*fn)(void *arg, unsigned shard), void *arg)
{
	viprd_vipr_t *v = ctx;
	return node_call(v->node, shard, fn, arg);
}

static size_t t_guess(void *ctx, unsigned shard, const vp_id_t *id, vp_id_t *out, size_t max)
{
	viprd_vipr_t *v = ctx;
	return node_guess_successors(v->node, shard, id, out, max);
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
	rc = node_request(v->node, 0, contact, false, &b, on_attach, &w);
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

/* ---- troubleshooting: the per-number trace ------------------------------------------------- */

static uint64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Count one occurrence at \p now in a window of the current and the previous hour. */
static void win_add(win_t *w, uint64_t now, uint64_t k)
{
	if (now - w->start_ms >= ALARM_WINDOW_MS) {
		w->prev = now - w->start_ms >= 2 * ALARM_WINDOW_MS ? 0 : w->cur;
		w->cur = 0;
		w->start_ms = now - (now - w->start_ms) % ALARM_WINDOW_MS;
	}
	w->cur += k;
}

static uint64_t win_max(win_t *w, uint64_t now)
{
	win_add(w, now, 0);
	return w->cur > w->prev ? w->cur : w->prev;
}

/* The slot of \p number (caller holds tr_mu): found, or the least recently seen one, emptied. */
static tr_num_t *tr_slot(viprd_vipr_t *v, const char *number, bool create)
{
	tr_num_t *old = &v->tr[0];
	for (unsigned i = 0; i < VIPRD_TRACE_NUMBERS; i++) {
		tr_num_t *t = &v->tr[i];
		if (t->number[0] && !strcmp(t->number, number))
			return t;
		if (!t->number[0] ? old->number[0] != 0 || t < old : old->number[0] && t->seen_ms < old->seen_ms)
			old = t;
	}
	if (!create)
		return NULL;
	memset(old, 0, sizeof(*old));
	snprintf(old->number, sizeof(old->number), "%s", number);
	old->first_ms = wall_ms();
	return old;
}

static void tr_add(viprd_vipr_t *v, const char *number, const char *what, int status, const char *claimant,
                   const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void tr_add(viprd_vipr_t *v, const char *number, const char *what, int status, const char *claimant,
                   const char *fmt, ...)
{
	tr_num_t *t;
	tr_ev_t *e;
	va_list ap;
	if (!number || !number[0] || !v->tr)
		return;
	pthread_mutex_lock(&v->tr_mu);
	t = tr_slot(v, number, true);
	e = &t->ev[(t->head + t->n) % VIPRD_TRACE_EVENTS];
	if (t->n < VIPRD_TRACE_EVENTS)
		t->n++;
	else
		t->head = (t->head + 1) % VIPRD_TRACE_EVENTS;
	t->total++;
	e->at_ms = t->seen_ms = wall_ms();
	e->what = what;
	e->status = status;
	snprintf(e->claimant, sizeof(e->claimant), "%s", claimant ? claimant : "");
	va_start(ap, fmt);
	vsnprintf(e->text, sizeof(e->text), fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&v->tr_mu);
}

/* Incidents name the peer to blame as "blame=HEX" (dht_reload.c): count it for peer_incidents. */
static void blame_peers(viprd_vipr_t *v, const char *text)
{
	const char *p = text;
	uint64_t now = wall_ms();
	while ((p = strstr(p, "blame="))) {
		char id[VP_ID_HEX_LEN + 1];
		size_t k = 0;
		peer_count_t *slot = &v->peers[0];
		p += 6;
		while (k < VP_ID_HEX_LEN && ((p[k] >= '0' && p[k] <= '9') || (p[k] >= 'a' && p[k] <= 'f'))) {
			id[k] = p[k];
			k++;
		}
		id[k] = 0;
		if (!k)
			continue;
		pthread_mutex_lock(&v->tr_mu);
		for (unsigned i = 0; i < PEERS_TRACKED; i++) {
			if (!strcmp(v->peers[i].id, id)) {
				slot = &v->peers[i];
				break;
			}
			if (v->peers[i].seen_ms < slot->seen_ms)
				slot = &v->peers[i];
		}
		if (strcmp(slot->id, id)) {
			memset(slot, 0, sizeof(*slot));
			snprintf(slot->id, sizeof(slot->id), "%s", id);
			slot->w.start_ms = now;
		}
		slot->seen_ms = now;
		win_add(&slot->w, now, 1);
		pthread_mutex_unlock(&v->tr_mu);
	}
}

static const char *status_name(unsigned st)
{
	return st == PVP_ST_ROUTES ? "routes" : st == PVP_ST_PENDING ? "pending" : st == PVP_ST_REFUSED ? "refused" : "?";
}

static void on_event(void *arg, const char *server, const vsrv_event_t *ev)
{
	viprd_vipr_t *v = arg;
	const pvp_validation_t *val = ev->val;
	switch (ev->kind) {
	case VSRV_EV_VCR:
		if (ev->vcr)
			tr_add(v, ev->vcr->called, "call_record", 0, NULL, "dir=%s caller=%s start_ms=%llu stop_ms=%llu",
			       ev->vcr->dir == PVP_DIR_ORIG ? "originating" : "terminating",
			       ev->vcr->caller[0] ? ev->vcr->caller : "-", (unsigned long long)ev->vcr->start_ms,
			       (unsigned long long)ev->vcr->stop_ms);
		break;
	case VSRV_EV_STORED:
		tr_add(v, ev->number, "stored", ev->status, NULL, "%s",
		       ev->status ? vp_strerror(ev->status) : "registration stored by the responsible peer");
		break;
	case VSRV_EV_VALIDATION:
		if (!val)
			tr_add(v, ev->number, "handshake", ev->status, ev->claimant, "err=\"%s\"", vp_strerror(ev->status));
		else if (!ev->status)
			tr_add(v, ev->number, "handshake", 0, ev->claimant,
			       "outcome=%s reason=%s handshakes=%u failed_handshakes=%u method=%d entropy_cbits=%u "
			       "threshold_cbits=%u withheld=%s uris=%zu",
			       status_name(val->resp.status),
			       val->resp.status == PVP_ST_REFUSED ? pvp_refusal_str(val->resp.reason) : "-", val->handshakes,
			       val->failed_handshakes, (int)val->method, (unsigned)val->resp.entropy_cbits,
			       (unsigned)val->threshold_cbits, val->withheld ? "yes" : "no", val->resp.nuris);
		else
			tr_add(v, ev->number, "handshake", ev->status, ev->claimant,
			       "outcome=failed err=\"%s\" handshakes=%u failed_handshakes=%u authenticated=%s why=\"%s\"",
			       vp_strerror(ev->status), val->handshakes, val->failed_handshakes,
			       val->authenticated ? "yes" : "no",
			       ev->status == VP_EAUTH ? "no handshake completed: the claimant does not hold this call's record"
			       : ev->status == VP_EPERM ? "the claimant refused the validation"
			                                : "the claimant could not be reached or the connection broke");
		break;
	case VSRV_EV_ROUTE:
		if (ev->route) {
			const pvp_valresp_t *r = ev->route->resp;
			vp_log_info(LOGMOD, "route_learned", "srv=%s number=%s claimant=%s", server,
			            ev->number ? ev->number : "-", ev->claimant ? ev->claimant : "-");
			tr_add(v, ev->number, "route", 0, ev->claimant, "status=%s uri=%s expires=%u ticket_bytes=%zu",
			       status_name(r->status), r->nuris ? r->uris[0] : "-", (unsigned)r->expires, r->ticket_len);
		}
		break;
	case VSRV_EV_NOTIFY:
		tr_add(v, ev->number, "notify", 0, NULL, "agents_notified=%d", ev->n_notified);
		break;
	case VSRV_EV_PVP_SERVED:
		if (ev->served) {
			pvp_outcome_t o = ev->served->outcome;
			if (o == PVP_OUT_HANDSHAKE_FAILED || o == PVP_OUT_RATE_LIMITED) {
				pthread_mutex_lock(&v->tr_mu);
				win_add(&v->refused, wall_ms(), 1);
				pthread_mutex_unlock(&v->tr_mu);
			}
			tr_add(v, ev->served->number, "served", 0, NULL, "outcome=%s domain=%s entropy_cbits=%u",
			       pvp_outcome_str(o), ev->served->domain[0] ? ev->served->domain : "-",
			       (unsigned)ev->served->entropy_cbits);
		}
		break;
	case VSRV_EV_INCIDENT:
		if (ev->text)
			blame_peers(v, ev->text);
		break;
	}
}

/* The lookup as the trace sees it: dhr's fetch, its answer recorded before the server gets it. */
typedef struct fetch_wrap {
	viprd_vipr_t *v;
	vsrv_fetch_fn done;
	void *arg;
	char number[VP_E164_BUFLEN];
} fetch_wrap_t;

static void fetch_traced(void *arg, int status, const vsrv_reg_t *regs, size_t n, const char *incident)
{
	fetch_wrap_t *w = arg;
	char who[TR_TEXT], hex[VP_ID_HEX_LEN + 1];
	size_t k = 0;
	who[0] = 0;
	for (size_t i = 0; i < n && k + 12 < sizeof(who); i++)
		k += (size_t)snprintf(who + k, sizeof(who) - k, "%s%.8s", i ? "," : "", vp_id_to_hex(&regs[i].node, hex));
	if (status)
		tr_add(w->v, w->number, "lookup", status, NULL, "err=\"%s\"%s%s", vp_strerror(status),
		       incident ? " incident=" : "", incident ? incident : "");
	else
		tr_add(w->v, w->number, "lookup", 0, NULL, "registrations=%zu claimants=%s copies=%s", n, n ? who : "-",
		       incident ? incident : "3/3 answered and agreed");
	w->done(w->arg, status, regs, n, incident);
	free(w);
}

static int fetch_wrapped(void *ctx, const char *number, vsrv_fetch_fn done, void *arg)
{
	viprd_vipr_t *v = ctx;
	fetch_wrap_t *w = malloc(sizeof(*w));
	int rc;
	if (!w)
		return VP_ENOMEM;
	*w = (fetch_wrap_t){ v, done, arg, "" };
	snprintf(w->number, sizeof(w->number), "%s", number);
	rc = v->inner.fetch(v->inner.ctx, number, fetch_traced, w);
	if (rc)
		free(w);
	return rc;
}

/* The server's ctx is ours (for the fetch above): the other two pass through to dhr. */
static int store_passed(void *ctx, const char *number, uint8_t op, const vsrv_reg_t *reg, vsrv_done_fn done,
                        void *arg)
{
	viprd_vipr_t *v = ctx;
	return v->inner.store(v->inner.ctx, number, op, reg, done, arg);
}

static int attach_passed(void *ctx, const vp_id_t *contact, unsigned timeout_ms, int *fd)
{
	viprd_vipr_t *v = ctx;
	return v->inner.app_attach(v->inner.ctx, contact, timeout_ms, fd);
}

json_t *viprd_vipr_validation_json(viprd_vipr_t *v, const char *number)
{
	json_t *d = json_object(), *evs = json_array(), *cl = json_object(), *routes = json_array();
	unsigned records = 0, lookups = 0, incidents = 0;
	tr_num_t *t;
	if (!d || !evs || !cl || !routes) {
		json_decref(d);
		json_decref(evs);
		json_decref(cl);
		json_decref(routes);
		return NULL;
	}
	pthread_mutex_lock(&v->tr_mu);
	t = tr_slot(v, number, false);
	json_object_set_new(d, "number", json_string(number));
	json_object_set_new(d, "known", json_boolean(t != NULL));
	if (t) {
		json_object_set_new(d, "first_seen_ms", json_integer((json_int_t)t->first_ms));
		json_object_set_new(d, "events_total", json_integer((json_int_t)t->total));
		for (unsigned i = 0; i < t->n; i++) {
			const tr_ev_t *e = &t->ev[(t->head + i) % VIPRD_TRACE_EVENTS];
			json_t *j = json_pack("{s:I, s:s, s:s, s:s}", "at_ms", (json_int_t)e->at_ms, "event", e->what,
			                      "status", e->status ? vp_errname(e->status) : "ok", "detail", e->text);
			if (e->claimant[0])
				json_object_set_new(j, "claimant", json_string(e->claimant));
			json_array_append_new(evs, j);
			if (!strcmp(e->what, "call_record"))
				records++;
			else if (!strcmp(e->what, "lookup")) {
				lookups++;
				incidents += e->status || !strstr(e->text, "3/3 answered and agreed");
			} else if (!strcmp(e->what, "handshake")) {
				json_t *c = json_object_get(cl, e->claimant);
				if (!c) {
					c = json_pack("{s:i, s:i}", "tried", 0, "failed", 0);
					json_object_set_new(cl, e->claimant, c);
				}
				json_object_set_new(c, "tried", json_integer(json_integer_value(json_object_get(c, "tried")) + 1));
				if (e->status)
					json_object_set_new(c, "failed",
					                    json_integer(json_integer_value(json_object_get(c, "failed")) + 1));
				json_object_set_new(c, "last", json_string(e->text));
			} else if (!strcmp(e->what, "route"))
				json_array_append_new(routes, json_pack("{s:s, s:s}", "claimant", e->claimant, "detail", e->text));
		}
	}
	pthread_mutex_unlock(&v->tr_mu);
	json_object_set_new(d, "call_records", json_integer(records));
	json_object_set_new(d, "lookups", json_integer(lookups));
	json_object_set_new(d, "lookups_with_incident", json_integer(incidents));
	json_object_set_new(d, "claimants", cl);
	json_object_set_new(d, "routes", routes);
	json_object_set_new(d, "route", json_string(json_array_size(routes) ? "learned" : "none"));
	json_object_set_new(d, "events", evs);
	return d;
}

/* ---- alarms ------------------------------------------------------------------------------------ */

static time_t cert_not_after(const uint8_t *der, size_t len)
{
	const uint8_t *p = der;
	X509 *x = d2i_X509(NULL, &p, (long)len);
	struct tm tm;
	time_t t = 0;
	if (x && ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1)
		t = timegm(&tm);
	X509_free(x);
	return t;
}

static bool file_hash(const char *path, uint8_t out[32])
{
	uint8_t buf[8192];
	size_t n;
	unsigned len = 0;
	FILE *f = fopen(path, "rb");
	EVP_MD_CTX *c;
	bool ok;
	if (!f)
		return false;
	c = EVP_MD_CTX_new();
	ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1;
	while (ok && (n = fread(buf, 1, sizeof(buf), f)) > 0)
		ok = EVP_DigestUpdate(c, buf, n) == 1;
	ok = ok && !ferror(f) && EVP_DigestFinal_ex(c, out, &len) == 1 && len == 32;
	EVP_MD_CTX_free(c);
	fclose(f);
	return ok;
}

json_t *viprd_vipr_stats_json(viprd_vipr_t *v)
{
	vsrv_stats_t st;
	dhr_stats_t ds;
	vsrv_get_stats(v->srv, &st);
	dhr_get_stats(v->dhr, &ds);
	return json_pack("{s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:I, s:f, s:I},"
	                 " s:{s:I, s:I, s:I, s:I, s:I, s:I},"
	                 " s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}}",
	                 "publish", "numbers", (json_int_t)ds.numbers, "stores_sent", (json_int_t)ds.stores_sent,
	                 "stores_ok", (json_int_t)ds.stores_ok, "stores_failed", (json_int_t)ds.stores_failed,
	                 "retries", (json_int_t)ds.store_retries, "rate_limited", (json_int_t)ds.rate_limited,
	                 "backoffs", (json_int_t)ds.backoffs, "holds", (json_int_t)ds.holds, "over_quota", (json_int_t)ds.over_quota, "queued",
	                 (json_int_t)ds.queued, "inflight", (json_int_t)ds.inflight, "rate", ds.rate, "window",
	                 ds.window, "store_rate", (json_int_t)v->conf.store_rate, "backlog_s", ds.backlog_s,
	                 "refresh_late", (json_int_t)ds.refresh_late,
	                 "lookup", "fetches", (json_int_t)ds.fetches, "parallel", (json_int_t)ds.fetches_parallel,
	                 "guess_missed", (json_int_t)ds.fetch_guess_missed, "copies_failed",
	                 (json_int_t)ds.fetch_copies_failed, "entries_rejected", (json_int_t)ds.entries_rejected,
	                 "incidents", (json_int_t)ds.incidents,
	                 "server", "call_records_originating", (json_int_t)st.vcr_orig, "call_records_terminating",
	                 (json_int_t)st.vcr_term, "validations_ok", (json_int_t)st.validations_ok, "validations_failed",
	                 (json_int_t)st.validations_failed, "validations_unreachable",
	                 (json_int_t)st.validations_unreachable, "routes", (json_int_t)st.routes, "notified",
	                 (json_int_t)st.notified, "pending", (json_int_t)st.sched_queued, "pvp_served",
	                 (json_int_t)st.pvp_served, "pvp_handshake_failed", (json_int_t)st.pvp_handshake_failed);
}

void viprd_vipr_alarms(viprd_vipr_t *v, json_t *list, uint8_t active[VIPRD_ALARM__COUNT])
{
	char detail[VIPRD_ALARM__COUNT][640];
	uint8_t on[VIPRD_ALARM__COUNT] = { 0 };
	uint64_t now = wall_ms();
	time_t now_s = (time_t)(now / 1000u);
	vsrv_stats_t st;
	dhr_stats_t ds;
	vap_server_stats_t vs;
	vsrv_get_stats(v->srv, &st);
	vsrv_get_vap_stats(v->srv, &vs);
	dhr_get_stats(v->dhr, &ds);
	pthread_mutex_lock(&v->tr_mu);
	if (vs.err_401 > v->vap_401_seen) {
		win_add(&v->vap_refused, now, vs.err_401 - v->vap_401_seen);
		v->vap_401_seen = vs.err_401;
	}
	if (ds.over_quota > v->over_quota_seen) {
		win_add(&v->over_quota, now, ds.over_quota - v->over_quota_seen);
		v->over_quota_seen = ds.over_quota;
	}
	if (ds.refresh_late > v->refresh_late_seen) {
		win_add(&v->refresh_late, now, ds.refresh_late - v->refresh_late_seen);
		v->refresh_late_seen = ds.refresh_late;
	}
	if (ds.backlog_s > v->conf.lifetime_s || win_max(&v->refresh_late, now)) {
		on[VIPRD_ALARM_PUBLISH_BEHIND] = 1;
		snprintf(detail[VIPRD_ALARM_PUBLISH_BEHIND], sizeof(detail[0]),
		         "%llu Stores queued need %.0f s at %.0f/s (lifetime %u s); %llu refreshes this hour or the last "
		         "came after the registration had expired: raise [vipr] store_rate, lengthen [vipr] lifetime or "
		         "refresh more often", (unsigned long long)ds.queued, ds.backlog_s, ds.rate, v->conf.lifetime_s,
		         (unsigned long long)win_max(&v->refresh_late, now));
	}
	if (win_max(&v->over_quota, now)) {
		on[VIPRD_ALARM_OVER_QUOTA] = 1;
		snprintf(detail[VIPRD_ALARM_OVER_QUOTA], sizeof(detail[0]), "%llu numbers refused this hour or the last: beyond shards x "
		         "quota; add Node-IDs ([node] shards)", (unsigned long long)win_max(&v->over_quota, now));
	}
	if (st.sched_queued > v->conf.alarm_pending) {
		on[VIPRD_ALARM_PENDING] = 1;
		snprintf(detail[VIPRD_ALARM_PENDING], sizeof(detail[0]), "%llu originating records wait for validation (limit %u)",
		         (unsigned long long)st.sched_queued, v->conf.alarm_pending);
	}
	for (unsigned i = 0; i <= v->n && i <= NODE_MAX_SHARDS; i++) {
		time_t end = v->cert_end[i];
		if (end && end - now_s < (time_t)v->conf.alarm_cert_s) {
			on[VIPRD_ALARM_CERT_EXPIRING] = 1;
			snprintf(detail[VIPRD_ALARM_CERT_EXPIRING], sizeof(detail[0]), "%s %s %lld s from now (limit %u s)",
			         i < v->n ? "the certificate of a vnode" : "the client-certificate issuer",
			         end <= now_s ? "ended" : "ends", (long long)(end - now_s), v->conf.alarm_cert_s);
			break;
		}
	}
	if (win_max(&v->refused, now) >= v->conf.alarm_refused || win_max(&v->vap_refused, now) >= v->conf.alarm_refused) {
		on[VIPRD_ALARM_REFUSED_CREDENTIALS] = 1;
		snprintf(detail[VIPRD_ALARM_REFUSED_CREDENTIALS], sizeof(detail[0]),
		         "this hour or the last (limit %u each): %llu PVP handshakes failed or rate-limited (a claimant or "
		         "a guesser without the calls' records), %llu VAP requests with wrong agent credentials",
		         v->conf.alarm_refused, (unsigned long long)win_max(&v->refused, now),
		         (unsigned long long)win_max(&v->vap_refused, now));
	}
	if (v->keys_known && now - v->keys_checked_ms >= KEYS_CHECK_MS) {
		uint8_t h[32];
		v->keys_checked_ms = now;
		v->keys_changed = !file_hash(v->keys_path, h) || memcmp(h, v->keys_hash, 32);
	}
	if (v->keys_changed) {
		on[VIPRD_ALARM_TICKET_KEY_CHANGED] = 1;
		snprintf(detail[VIPRD_ALARM_TICKET_KEY_CHANGED], sizeof(detail[0]), "%s changed since the server loaded it: tickets are "
		         "still issued under the old keys; restart to use the border's keys", v->keys_path);
	}
	for (unsigned i = 0; i < PEERS_TRACKED; i++)
		if (v->peers[i].id[0] && win_max(&v->peers[i].w, now) >= v->conf.alarm_peer_incidents) {
			on[VIPRD_ALARM_PEER_INCIDENTS] = 1;
			snprintf(detail[VIPRD_ALARM_PEER_INCIDENTS], sizeof(detail[0]), "peer %s blamed by %llu lookups this hour or the "
			         "last (limit %u)", v->peers[i].id, (unsigned long long)win_max(&v->peers[i].w, now),
			         v->conf.alarm_peer_incidents);
			break;
		}
	for (unsigned i = 0; i < VIPRD_ALARM__COUNT; i++) {
		if (on[i] != v->active[i]) {
			if (on[i])
				vp_log_warn(LOGMOD, "alarm", "alarm=%s state=raised detail=\"%s\"", viprd_vipr_alarm_name[i],
				            detail[i]);
			else
				vp_log_info(LOGMOD, "alarm", "alarm=%s state=cleared", viprd_vipr_alarm_name[i]);
			v->active[i] = on[i];
		}
		if (active)
			active[i] = on[i];
		if (on[i] && list)
			json_array_append_new(list, json_pack("{s:s, s:i, s:s}", "alarm", viprd_vipr_alarm_name[i], "shard", -1,
			                                      "detail", detail[i]));
	}
	pthread_mutex_unlock(&v->tr_mu);
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
	v->conf = *vc;
	v->node = node;
	pthread_mutex_init(&v->tr_mu, NULL);
	if (!(v->tr = calloc(VIPRD_TRACE_NUMBERS, sizeof(*v->tr)))) {
		rc = VP_ENOMEM;
		goto fail;
	}
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
		v->cert_end[i] = cert_not_after(v->ders[i], len);
		dc.n_signers++;
	}
	dc.certs = v->certs;
	t = (dhr_transport_t){ v, t_request, t_app_attach, t_call, t_guess };
	if ((rc = dhr_new(&dc, &t, &v->dhr)))
		goto fail;
	sc.node_id = *node_vnode_id(node, 0);
	dhr_iface(v->dhr, &v->inner);
	dht = v->inner;
	dht.ctx = v;
	dht.fetch = fetch_wrapped;
	dht.store = store_passed;
	dht.app_attach = attach_passed;
	if (sc.cert_issuer[0]) {
		FILE *f = fopen(sc.cert_issuer, "r");
		X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
		uint8_t *der = NULL;
		int len = x ? i2d_X509(x, &der) : -1;
		if (len > 0)
			v->cert_end[v->n < NODE_MAX_SHARDS ? v->n : NODE_MAX_SHARDS] = cert_not_after(der, (size_t)len);
		OPENSSL_free(der);
		X509_free(x);
		if (f)
			fclose(f);
	}
	if (sc.ticket_keys[0]) {
		snprintf(v->keys_path, sizeof(v->keys_path), "%s", sc.ticket_keys);
		v->keys_known = file_hash(v->keys_path, v->keys_hash);
		v->keys_checked_ms = wall_ms();
	}
	v->refused.start_ms = v->vap_refused.start_ms = v->over_quota.start_ms = wall_ms();
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

void viprd_vipr_quiesce(viprd_vipr_t *v)
{
	if (v)
		dhr_stop(v->dhr);
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
	pthread_mutex_destroy(&v->tr_mu);
	free(v->tr);
	free(v);
}
