/*
 * control/daemon/viprd_ops.c - viprd's admin socket, /metrics and /health (viprd_ops.h).
 */
#include "control/daemon/viprd_ops.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>

#include "common/clock.h"
#include "common/e164.h"
#include "common/errcode.h"
#include "common/log.h"
#include "common/net.h"
#include "control/daemon/viprd_vipr.h"
#include "control/metrics/metrics.h"
#include "control/node/kinds.h"
#include "control/server/lookup.h"
#include "storage/store.h"
#include "storage/vipr_kind.h"

/*
 * SAMPLE_STALE_MS: a health sample older than this means the shards stopped answering their command ring
 * (the control thread asks every second; a shard picks a command up within its 50 ms max wait).
 * SCRAPE_WAIT_MS: how long a scrape waits for the shards' counters before it serves the previous ones.
 */
#define SAMPLE_STALE_MS 5000u
#define SCRAPE_WAIT_MS 1000u
/*
 * STORE_LIFETIME_S: a registration stored by hand lives a day, the refresh period the overview draft
 * recommends (the kind allows up to 2 days).  FETCH_MAX_ENTRIES: entries kept per copy, the kind's max-count.
 */
#define STORE_LIFETIME_S 86400u
#define FETCH_MAX_ENTRIES ST_VIPR_MAX_COUNT
#define FAMILIES 16u

static const vp_conf_opt_t metrics_rows[] = {
	{ .section = "metrics", .key = "listen", .type = VP_CONF_STR, .def = "",
	  .doc = "address:port serving Prometheus /metrics and /health over HTTP (port 0: any free port, shown by "
	         "viprctl status); empty: not served",
	  VP_CONF_AT(viprd_ops_conf_t, metrics_listen) },
	{ .section = "metrics", .key = "isolated_after", .type = VP_CONF_DUR_MS, .min = 100, .max = 86400000,
	  .def = "30s", .doc = "/health answers 503 once the node has had no overlay link for this long",
	  VP_CONF_AT(viprd_ops_conf_t, isolated_after_ms) },
};

int viprd_ops_conf_schema(size_t base, vp_conf_opt_t *out, size_t cap, size_t *n)
{
	size_t k = 0, m = VP_CONF_NOPTS(metrics_rows);
	int err = adm_conf_schema(base + offsetof(viprd_ops_conf_t, admin), out, cap, &k);
	if (err)
		return err;
	/* viprd's own default: the socket lives in the node's data_dir, so that every node of a host (each has
	 * its own data_dir) gets its own socket without a line of configuration, and none depends on /run. */
	for (size_t i = 0; i < k; i++)
		if (!strcmp(out[i].section, "admin") && !strcmp(out[i].key, "socket")) {
			out[i].def = "";
			out[i].doc = "admin socket (mode 0600): every viprctl command, including store and leave; empty: "
			             "data_dir/admin.sock (viprctl -s PATH)";
		}
	if (cap - k < m)
		return VP_ESPACE;
	for (size_t i = 0; i < m; i++) {
		out[k] = metrics_rows[i];
		out[k].off += base;
		k++;
	}
	*n = k;
	return 0;
}

/* Message families (chord_stats_family) as metric labels and JSON keys. */
static const char *const family_name[FAMILIES] = {
	"other", "probe", "attach", "other_3", "store", "fetch", "other_6", "find",
	"join", "leave", "update", "route_query", "ping", "stat", "other_14", "error",
};

enum {
	DROP_TTL, DROP_NO_ROUTE, DROP_FLOOD, DROP_SIGNATURE, DROP_MALFORMED, DROP_REPLAY, DROP_TOPOLOGY,
	DROP_LINK_FULL, DROP_RX_OVERFLOW, DROP__COUNT
};
static const char *const drop_name[DROP__COUNT] = {
	"ttl", "no_route", "flood", "bad_signature", "malformed", "replay", "topology", "link_full", "rx_overflow",
};

/* The node's counters summed over its shards. */
typedef struct sums {
	uint64_t rx_msgs, rx_bytes, tx_msgs, tx_bytes, links_opened, links_closed;
	uint64_t sent[FAMILIES], relayed, forwarded, drops[DROP__COUNT], peer_failures, table_versions, rerouted;
	uint64_t ring_checks, ring_check_misses;
	uint64_t links, joined;
	uint64_t records, stores_ok, refused_quota, refused_rate, refused_acl, refused_other, fetches_served;
	uint64_t neighbour_stores, bad_signatures, replica_refused, quota_used, quota_limit;
} sums_t;

static void sum_status(const node_status_t *st, sums_t *s)
{
	memset(s, 0, sizeof(*s));
	for (unsigned i = 0; i < st->nshards; i++) {
		const node_shard_status_t *h = &st->shard[i];
		if (!h->valid)
			continue;
		s->rx_msgs += h->io.rx_msgs;
		s->rx_bytes += h->io.rx_bytes;
		s->tx_msgs += h->io.tx_msgs;
		s->tx_bytes += h->io.tx_bytes;
		s->links_opened += h->io.links_up;
		s->links_closed += h->io.links_down;
		for (unsigned f = 0; f < FAMILIES; f++)
			s->sent[f] += h->chord.sent[f];
		s->relayed += h->relayed;
		s->forwarded += h->chord.forwarded;
		s->drops[DROP_TTL] += h->chord.ttl_drops;
		s->drops[DROP_NO_ROUTE] += h->chord.no_route;
		s->drops[DROP_FLOOD] += h->refused_flood;
		s->drops[DROP_SIGNATURE] += h->refused_sig;
		s->drops[DROP_MALFORMED] += h->refused_decode;
		s->drops[DROP_REPLAY] += h->refused_replay;
		s->drops[DROP_TOPOLOGY] += h->refused_topology;
		s->drops[DROP_LINK_FULL] += h->io.tx_refused;
		s->drops[DROP_RX_OVERFLOW] += h->io.rx_overflow;
		s->peer_failures += h->chord.peer_failures;
		s->table_versions += h->chord.table_versions;
		s->rerouted += h->chord.rerouted;
		s->ring_checks += h->chord.ring_checks;
		s->ring_check_misses += h->chord.ring_check_misses;
		s->links += h->nlinks;
		s->joined += h->state == CHORD_JOINED;
		s->records += h->records;
		s->stores_ok += h->kinds.stores; /* originals only (st's count has the replicas too) */
		s->refused_quota += h->store.refused_quota;
		s->refused_rate += h->store.refused_rate;
		s->refused_acl += h->store.refused_acl;
		{ /* refused_rate also counts reads: what it leaves of the store refusals is "other" */
			uint64_t named = h->store.refused_quota + h->store.refused_acl + h->store.refused_rate;
			s->refused_other += h->store.stores_refused > named ? h->store.stores_refused - named : 0;
		}
		s->fetches_served += h->store.fetches;
		s->neighbour_stores += h->kinds.neighbour_stores;
		s->bad_signatures += h->kinds.bad_signatures;
		s->replica_refused += h->kinds.replica_refused;
		s->quota_used += h->quota_used;
		s->quota_limit += h->quota_limit;
	}
}

/* ---- the ops context -------------------------------------------------------------------------------------- */

typedef struct mids {
	unsigned rx, rx_bytes, tx, tx_bytes, sent[FAMILIES], relayed, forwarded, dropped[DROP__COUNT];
	unsigned links, links_opened, links_closed, peer_failures, rerouted, ring_checks, ring_check_misses;
	unsigned vnodes, joined, healthy, uptime;
	unsigned records, stores[5], fetches_served, neighbour_stores, bad_signatures, replica_refused, quota_used,
	    quota_limit, latency[3], alarm[VIPRD_ALARM__COUNT + 1];
} mids_t;

/* Requests this node originates through the admin socket, timed by node_request (rtt_ms). */
enum { LAT_STORE, LAT_FETCH, LAT_PROBE };
static const char *const lat_name[3] = { "store", "fetch", "probe" };
/* Upper bounds in ms: loopback answers take 1-50 ms, the overlay-reliability-timer (15 s) ends the range. */
static const uint64_t lat_bounds_ms[] = { 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 15000 };
static const char *const store_result[5] = { "ok", "quota", "rate", "forbidden", "other" };

struct viprd_ops {
	node_t *node;
	viprd_ops_conf_t conf;
	char sock[ADM_SOCKET_PATH_MAX];
	char metrics_addr[128];
	adm_server_t *adm, *mon;
	vm_registry_t *reg;
	vm_http_t *http;
	mids_t m;
	uint64_t start_ms;
	atomic_bool leave;
	atomic_bool sampling;

	/* shard 0's identity: a Store by hand is a registration of this vnode, signed with its key */
	EVP_PKEY *key;
	uint8_t *der;
	uint8_t hash[RL_MAX_HASH_LEN];
	rl_signer_identity_t signer;
	uint32_t vipr_kind;
	uint64_t request_wait_ms;

	pthread_mutex_t mu;   /* guards the sample below (written by a shard thread, read by admin/HTTP) */
	node_status_t *sample;
	uint64_t sample_ms;   /* when it arrived (0: none yet) */
	uint64_t last_link_ms;
	viprd_vipr_t *vipr;   /* the ViPR service (NULL: a plain node), under mu */
};

static uint64_t now_ms(void)
{
	return vp_time_mono_ns() / 1000000u;
}

static node_status_t *status_copy(const node_status_t *st)
{
	size_t sz = sizeof(*st) + st->nshards * sizeof(st->shard[0]);
	node_status_t *c = malloc(sz);
	if (c)
		memcpy(c, st, sz);
	return c;
}

/* ---- health ----------------------------------------------------------------------------------------------- */

/*
 * Healthy unless isolated (see viprd_ops.h).  Also the `alarms` answer: every condition found is appended
 * to \p list (when not NULL) as {"alarm": NAME, "shard": i, "detail": ...}.
 */
static bool health_eval(viprd_ops_t *o, char *why, size_t cap, json_t *list)
{
	bool ok = true;
	uint64_t now = now_ms();
	char one[160];

	why[0] = 0;
	pthread_mutex_lock(&o->mu);
#define ALARM(shard, name, ...)                                                                            \
	do {                                                                                                   \
		snprintf(one, sizeof(one), __VA_ARGS__);                                                           \
		if (ok)                                                                                            \
			snprintf(why, cap, "%s: %s", name, one);                                                       \
		ok = false;                                                                                        \
		if (list)                                                                                          \
			json_array_append_new(list, json_pack("{s:s, s:i, s:s}", "alarm", name, "shard", (int)(shard), \
			                                      "detail", one));                                        \
	} while (0)
	if (!o->sample || now - o->sample_ms > SAMPLE_STALE_MS) {
		ALARM(-1, "no_status", "the shards have not reported for %llu ms",
		      (unsigned long long)(o->sample ? now - o->sample_ms : now - o->start_ms));
	} else {
		uint64_t links = 0;
		for (unsigned i = 0; i < o->sample->nshards; i++) {
			const node_shard_status_t *h = &o->sample->shard[i];
			if (!h->valid) {
				ALARM(i, "no_status", "shard %u did not answer", i);
				continue;
			}
			links += h->nlinks;
			if (h->state != CHORD_JOINED) {
				ALARM(i, "not_joined", "vnode of shard %u is %s", i,
				      h->leaving ? "leaving" : h->state == CHORD_LEFT ? "out of the overlay" : "joining");
				continue;
			}
			/* Live: a neighbour of the table the vnode holds a link to. */
			if (!h->live_pred || !h->live_succ)
				ALARM(i, "isolated", "shard %u has no linked %s", i,
				      !h->live_pred && !h->live_succ ? "predecessor or successor"
				      : !h->live_pred                ? "predecessor"
				                                     : "successor");
		}
		if (!links && now - o->last_link_ms >= o->conf.isolated_after_ms)
			ALARM(-1, "no_links", "no overlay link for %llu ms", (unsigned long long)(now - o->last_link_ms));
	}
#undef ALARM
	pthread_mutex_unlock(&o->mu);
	return ok;
}

static bool health_cb(void *ctx, char *why, size_t cap)
{
	return health_eval(ctx, why, cap, NULL);
}

static void sample_cb(void *ctx, const node_status_t *st)
{
	viprd_ops_t *o = ctx;
	node_status_t *c = status_copy(st);
	uint64_t links = 0;
	for (unsigned i = 0; i < st->nshards; i++)
		links += st->shard[i].valid ? st->shard[i].nlinks : 0;
	pthread_mutex_lock(&o->mu);
	if (c) {
		free(o->sample);
		o->sample = c;
		o->sample_ms = now_ms();
		if (links)
			o->last_link_ms = o->sample_ms;
	}
	pthread_mutex_unlock(&o->mu);
	atomic_store(&o->sampling, false);
}

void viprd_ops_tick(viprd_ops_t *o)
{
	if (!o)
		return;
	pthread_mutex_lock(&o->mu);
	if (o->vipr)
		viprd_vipr_alarms(o->vipr, NULL, NULL); /* the raised and cleared log lines, within a second */
	pthread_mutex_unlock(&o->mu);
	if (atomic_exchange(&o->sampling, true))
		return; /* the previous sample is still on its way (or a shard stopped: the sample goes stale) */
	if (node_status_async(o->node, sample_cb, o))
		atomic_store(&o->sampling, false);
}

bool viprd_ops_leave_requested(const viprd_ops_t *o)
{
	return o && atomic_load(&((viprd_ops_t *)o)->leave);
}

/* ---- JSON for the admin commands -------------------------------------------------------------------------- */

static json_t *jid(const vp_id_t *id)
{
	char hex[VP_ID_HEX_LEN + 1];
	return json_string(vp_id_to_hex(id, hex));
}

static const char *state_name(chord_state_t s, bool leaving)
{
	if (leaving)
		return "leaving";
	switch (s) {
	case CHORD_INIT: return "starting";
	case CHORD_JOINING: return "joining";
	case CHORD_JOINED: return "joined";
	case CHORD_LEFT: return "left";
	}
	return "unknown";
}

static json_t *id_list(const vp_id_t *ids, uint32_t n)
{
	json_t *a = json_array();
	for (uint32_t i = 0; i < n; i++)
		json_array_append_new(a, jid(&ids[i]));
	return a;
}

static json_t *status_json(viprd_ops_t *o, const node_status_t *st)
{
	json_t *d = json_object(), *ids = json_array(), *shards = json_array(), *preds = json_array(),
	       *succs = json_array();
	const char *state = "joined";
	uint64_t links = 0, fingers = 0;

	for (unsigned i = 0; i < st->nshards; i++) {
		const node_shard_status_t *h = &st->shard[i];
		const chord_table_t *t = &h->table;
		const char *s = h->valid ? state_name(h->state, h->leaving) : "not_answering";
		if (strcmp(s, "joined"))
			state = s; /* the node is joined when every vnode is */
		json_array_append_new(ids, jid(&h->self));
		json_array_append_new(preds, t->npred ? jid(&t->pred[0]) : json_null());
		json_array_append_new(succs, t->nsucc ? jid(&t->succ[0]) : json_null());
		links += h->nlinks;
		fingers += t->nfinger_distinct;
		json_array_append_new(shards,
		                      json_pack("{s:i, s:o, s:s, s:s, s:I, s:o, s:o, s:I, s:I, s:I}", "shard", (int)i,
		                                "node_id", jid(&h->self), "state", s, "listen", h->listen, "links",
		                                (json_int_t)h->nlinks, "predecessors", id_list(t->pred, t->npred),
		                                "successors", id_list(t->succ, t->nsucc), "fingers_in_use",
		                                (json_int_t)t->nfinger_distinct, "live_predecessors",
		                                (json_int_t)h->live_pred, "live_successors", (json_int_t)h->live_succ));
	}
	json_object_set_new(d, "state", json_string(state));
	json_object_set_new(d, "listen", json_string(st->nshards ? st->shard[0].listen : ""));
	json_object_set_new(d, "pid", json_integer((json_int_t)getpid()));
	json_object_set_new(d, "node_ids", ids);
	json_object_set_new(d, "shards", shards);
	json_object_set_new(d, "links", json_integer((json_int_t)links));
	json_object_set_new(d, "predecessors", preds);
	json_object_set_new(d, "successors", succs);
	json_object_set_new(d, "fingers_in_use", json_integer((json_int_t)fingers));
	{
		sums_t s;
		sum_status(st, &s);
		json_object_set_new(d, "storage", json_pack("{s:I, s:I, s:I, s:I}", "records", (json_int_t)s.records,
		                                            "stores_served", (json_int_t)s.stores_ok, "quota_used",
		                                            (json_int_t)s.quota_used, "quota_limit",
		                                            (json_int_t)s.quota_limit));
	}
	json_object_set_new(d, "uptime_s", json_integer((json_int_t)((now_ms() - o->start_ms) / 1000u)));
	json_object_set_new(d, "metrics", json_string(o->metrics_addr));
	return d;
}

static json_t *ring_json(const node_status_t *st)
{
	json_t *d = json_object(), *vn = json_array();
	for (unsigned i = 0; i < st->nshards; i++) {
		const node_shard_status_t *h = &st->shard[i];
		const chord_table_t *t = &h->table;
		json_t *f = json_array();
		for (uint32_t k = 0; k < CHORD_MAX_FINGERS - t->finger_lo && k < CHORD_MAX_FINGERS; k++)
			if (t->finger_ok[k])
				json_array_append_new(f, json_pack("{s:i, s:o}", "bit", (int)(t->finger_lo + k), "node_id",
				                                   jid(&t->finger[k])));
		json_array_append_new(vn, json_pack("{s:i, s:o, s:o, s:o, s:o}", "shard", (int)i, "node_id",
		                                    jid(&h->self), "predecessors", id_list(t->pred, t->npred),
		                                    "successors", id_list(t->succ, t->nsucc), "fingers", f));
	}
	json_object_set_new(d, "vnodes", vn);
	return d;
}

static json_t *stats_json(const node_status_t *st)
{
	sums_t s;
	json_t *sent = json_object(), *drops = json_object(), *d;
	sum_status(st, &s);
	for (unsigned f = 0; f < FAMILIES; f++)
		if (s.sent[f])
			json_object_set_new(sent, family_name[f], json_integer((json_int_t)s.sent[f]));
	for (unsigned r = 0; r < DROP__COUNT; r++)
		json_object_set_new(drops, drop_name[r], json_integer((json_int_t)s.drops[r]));
	d = json_pack("{s:i, s:I, s:I, s:I, s:I, s:o, s:I, s:I, s:o, s:I, s:I, s:I, s:I, s:I}", "shards",
	                 (int)st->nshards, "messages_received", (json_int_t)s.rx_msgs, "bytes_received",
	                 (json_int_t)s.rx_bytes, "messages_sent", (json_int_t)s.tx_msgs, "bytes_sent",
	                 (json_int_t)s.tx_bytes, "originated_by_method", sent, "relayed", (json_int_t)s.relayed,
	                 "forwarded", (json_int_t)s.forwarded, "dropped", drops, "links", (json_int_t)s.links,
	                 "links_opened", (json_int_t)s.links_opened, "links_closed", (json_int_t)s.links_closed,
	                 "peer_failures", (json_int_t)s.peer_failures, "rerouted", (json_int_t)s.rerouted);
	json_object_set_new(d, "storage",
	                    json_pack("{s:I, s:I, s:{s:I, s:I, s:I, s:I}, s:I, s:I, s:I, s:I}", "records",
	                              (json_int_t)s.records, "stores_served", (json_int_t)s.stores_ok, "stores_refused",
	                              "quota", (json_int_t)s.refused_quota, "rate", (json_int_t)s.refused_rate,
	                              "forbidden", (json_int_t)s.refused_acl, "other", (json_int_t)s.refused_other,
	                              "fetches_served", (json_int_t)s.fetches_served, "neighbour_stores",
	                              (json_int_t)s.neighbour_stores, "bad_signatures", (json_int_t)s.bad_signatures,
	                              "replica_refused", (json_int_t)s.replica_refused));
	return d;
}

/* ---- admin handlers --------------------------------------------------------------------------------------- */

typedef struct pending {
	viprd_ops_t *o;
	adm_req_t *req;
} pending_t;

/* On the last shard's thread: build the answer and send it. */
static void answer_cb(void *ctx, const node_status_t *st)
{
	pending_t *p = ctx;
	json_t *d = NULL;
	switch (adm_req_cmd(p->req)) {
	case ADM_CMD_STATUS: d = status_json(p->o, st); break;
	case ADM_CMD_RING: d = ring_json(st); break;
	case ADM_CMD_STATS:
		if ((d = stats_json(st)) && p->o->vipr)
			json_object_set_new(d, "vipr", viprd_vipr_stats_json(p->o->vipr));
		break;
	default: break;
	}
	if (d)
		adm_req_reply(p->req, d);
	else
		adm_req_fail(p->req, VP_ENOMEM, NULL);
	free(p);
}

static int h_from_shards(adm_req_t *req, void *ctx)
{
	pending_t *p = malloc(sizeof(*p));
	int err;
	if (!p)
		return VP_ENOMEM;
	p->o = ctx;
	p->req = req;
	err = node_status_async(p->o->node, answer_cb, p);
	if (err) {
		free(p);
		return err;
	}
	return 0;
}

static int h_alarms(adm_req_t *req, void *ctx)
{
	viprd_ops_t *o = ctx;
	char why[200];
	json_t *list = json_array();
	health_eval(o, why, sizeof(why), list);
	pthread_mutex_lock(&o->mu);
	if (o->vipr)
		viprd_vipr_alarms(o->vipr, list, NULL);
	pthread_mutex_unlock(&o->mu);
	adm_req_reply(req, json_pack("{s:o}", "alarms", list));
	return 0;
}

/* `validation NUMBER`: the ViPR service's trace of that number (viprd_vipr.h). */
static int h_validation(adm_req_t *req, void *ctx)
{
	viprd_ops_t *o = ctx;
	const char *num = adm_req_arg(req);
	json_t *d = NULL;
	if (!num || !vp_e164_is_canonical(num)) {
		adm_req_fail(req, VP_EINVAL, "NUMBER must be E.164: + and 7 to 15 digits, the first not 0");
		return 0;
	}
	pthread_mutex_lock(&o->mu);
	if (o->vipr)
		d = viprd_vipr_validation_json(o->vipr, num);
	pthread_mutex_unlock(&o->mu);
	if (!d) {
		if (o->vipr)
			return VP_ENOMEM;
		adm_req_fail(req, VP_EUNSUPPORTED, "this node runs no ViPR service ([vipr] enabled = no)");
		return 0;
	}
	adm_req_reply(req, d);
	return 0;
}

void viprd_ops_set_vipr(viprd_ops_t *o, viprd_vipr_t *v)
{
	if (!o)
		return;
	pthread_mutex_lock(&o->mu);
	o->vipr = v;
	pthread_mutex_unlock(&o->mu);
}

static int h_leave(adm_req_t *req, void *ctx)
{
	viprd_ops_t *o = ctx;
	vp_log_info("viprd", "leave_requested", "via=admin");
	atomic_store(&o->leave, true);
	adm_req_reply(req, json_pack("{s:s}", "state", "leaving"));
	return 0;
}

/* ---- store, fetch, probe through the overlay (node_request) ----------------------------------------------- */

static json_t *jerr_answer(const node_answer_t *a)
{
	if (a->err)
		return json_pack("{s:s}", "error", vp_strerror(a->err));
	if (a->code == RL_ERROR && a->body)
		return json_pack("{s:i, s:s%}", "error_code", (int)a->error_code, "info",
		                 (const char *)a->body->u.error.info.p, (size_t)a->body->u.error.info.len);
	return NULL;
}

typedef struct op_req op_req_t;

typedef struct op_req {
	viprd_ops_t *o;
	adm_req_t *req;
	char number[VP_E164_BUFLEN];
	vp_id_t rid;
	unsigned pending;         /* fetch, copies asked at once: answers still due (+1 while they are being sent) */
	bool parallel;            /* the copies were asked at once, replicas named by the vnode's guess */
	unsigned missed;          /* copies asked of a wrong guess: dropped, asked again of the answer's successor */
	struct op_copy {
		op_req_t *r;
		unsigned k;           /* which copy */
		vp_id_t dest;         /* the Resource-ID it was asked at: r->rid, or node_after(the previous copy's holder) */
		bool answered;
		vp_id_t responder;
		uint32_t rejected;
		uint64_t rtt_ms, rtt_us;
		uint32_t hops;
		char error[64];
		size_t n;
		vsrv_entry_t e[FETCH_MAX_ENTRIES];
		uint8_t key[FETCH_MAX_ENTRIES][ST_VIPR_KEY_LEN];
		uint8_t val[FETCH_MAX_ENTRIES][ST_VIPR_VALUE_MAX_LEN];
	} c[VSRV_COPIES];
} op_req_t;

static int number_arg(adm_req_t *req, op_req_t *r)
{
	const char *num = adm_req_arg(req);
	if (!num || !vp_e164_is_canonical(num)) {
		adm_req_fail(req, VP_EINVAL, "NUMBER must be E.164: + and 7 to 15 digits, the first not 0");
		return VP_EINVAL;
	}
	snprintf(r->number, sizeof(r->number), "%s", num);
	r->rid = vp_id_from_name(r->number, strlen(r->number));
	return 0;
}

/* On shard 0's thread, writer slot 1 of the registry (slot 0 is the scrape's). */
static void observe(viprd_ops_t *o, unsigned which, const node_answer_t *a)
{
	if (o->reg && !a->err)
		vm_observe(o->reg, 1, o->m.latency[which], a->rtt_ms);
}

static void store_done(void *arg, const node_answer_t *a)
{
	op_req_t *r = arg;
	observe(r->o, LAT_STORE, a);
	json_t *e = jerr_answer(a);
	char h[VP_ID_HEX_LEN + 1];
	if (e || a->code != RL_STORE_ANS) {
		vp_log_warn("viprd", "admin_store_failed", "number=%s err=%s code=0x%x", r->number, vp_strerror(a->err),
		            a->code);
		adm_req_fail(r->req, a->err ? a->err : VP_EREFUSED,
		             a->err ? "no answer from the overlay" : "the responsible node refused the store");
		json_decref(e);
	} else
		adm_req_reply(r->req, json_pack("{s:s, s:s, s:s, s:I, s:I, s:I}", "number", r->number, "resource_id",
		                                vp_id_to_hex(&r->rid, (char[VP_ID_HEX_LEN + 1]){ 0 }), "responder",
		                                vp_id_to_hex(&a->responder, h), "attempts", (json_int_t)a->attempts,
		                                "rtt_ms", (json_int_t)a->rtt_ms, "hops", (json_int_t)a->hops));
	free(r);
}

static int h_store(adm_req_t *req, void *ctx)
{
	viprd_ops_t *o = ctx;
	op_req_t *r;
	const vp_id_t *self = node_vnode_id(o->node, 0);
	uint8_t key[ST_VIPR_KEY_LEN], val[ST_VIPR_VALUE_MAX_LEN], sig[RL_MAX_SIG_LEN];
	st_vipr_key_t k;
	st_vipr_value_t v;
	rl_stored_data_t sd;
	rl_store_kind_data_t kd;
	rl_body_t b;
	size_t vlen = 0;
	int err;

	if (!self)
		return VP_ESTATE;
	if (!(r = calloc(1, sizeof(*r))))
		return VP_ENOMEM;
	r->o = o;
	r->req = req;
	if (number_arg(req, r)) {
		free(r);
		return 0; /* answered */
	}
	/* This vnode claims the number (VService 1) and is its own contact: a registration as a ViPR server
	 * makes it, signed with the vnode's key so that the storing nodes verify it like any other. */
	k = (st_vipr_key_t){ *self, 1 };
	v = (st_vipr_value_t){ *self, 1, ST_VIPR_PVP_WITH_CALLER_ID | ST_VIPR_PVP_WITHOUT_CALLER_ID, NULL, 0 };
	st_vipr_key_encode(&k, key);
	if ((err = st_vipr_value_encode(&v, val, sizeof(val), &vlen)))
		goto fail;
	memset(&sd, 0, sizeof(sd));
	sd.storage_time = vp_time_wall_ms();
	sd.lifetime = STORE_LIFETIME_S;
	sd.model = RL_MODEL_DICTIONARY;
	sd.key = (rl_bytes_t){ key, ST_VIPR_KEY_LEN };
	sd.exists = true;
	sd.value = (rl_bytes_t){ val, (uint32_t)vlen };
	if ((err = rl_stored_data_sign(o->key, r->rid.b, VP_ID_LEN, o->vipr_kind, &sd, &o->signer, sig, sizeof(sig))))
		goto fail;
	memset(&kd, 0, sizeof(kd));
	kd.kind = o->vipr_kind;
	kd.values.items = &sd;
	kd.values.n_items = 1;
	memset(&b, 0, sizeof(b));
	b.code = RL_STORE_REQ;
	b.u.store_req.resource = (rl_bytes_t){ r->rid.b, VP_ID_LEN };
	b.u.store_req.kind_data.items = &kd;
	b.u.store_req.kind_data.n_items = 1;
	if ((err = node_request(o->node, 0, &r->rid, true, &b, store_done, r)))
		goto fail;
	return 0;
fail:
	free(r);
	return err;
}

static int fetch_entry(void *arg, uint32_t kind, const rl_stored_data_t *sd, const dp_cert_ident_t *signer)
{
	struct op_copy *c = arg;
	vsrv_entry_t *e;
	(void)signer;
	(void)kind;
	if (c->n == FETCH_MAX_ENTRIES || sd->key.len != ST_VIPR_KEY_LEN || sd->value.len > ST_VIPR_VALUE_MAX_LEN)
		return 0;
	e = &c->e[c->n];
	memcpy(c->key[c->n], sd->key.p, ST_VIPR_KEY_LEN);
	if (sd->value.len)
		memcpy(c->val[c->n], sd->value.p, sd->value.len);
	*e = (vsrv_entry_t){ c->key[c->n], ST_VIPR_KEY_LEN, c->val[c->n], sd->value.len, sd->exists };
	c->n++;
	return 0;
}

static void fetch_finish(op_req_t *r)
{
	vsrv_copy_t copies[VSRV_COPIES];
	vsrv_reg_t regs[FETCH_MAX_ENTRIES];
	vsrv_vote_t vote;
	size_t n = 0;
	char h[VP_ID_HEX_LEN + 1];
	json_t *cs = json_array(), *rs = json_array();
	int err;

	for (unsigned i = 0; i < VSRV_COPIES; i++) {
		struct op_copy *c = &r->c[i];
		json_t *es = json_array();
		copies[i] = (vsrv_copy_t){ c->answered, c->e, c->n };
		/* What this copy holds, decoded (a copy may differ from the vote: that is what it is for). */
		for (size_t j = 0; j < c->n; j++) {
			st_vipr_key_t k;
			st_vipr_value_t v;
			char c2[VP_ID_HEX_LEN + 1];
			if (!c->e[j].exists || st_vipr_key_decode(c->e[j].key, c->e[j].key_len, &k) ||
			    st_vipr_value_decode(c->e[j].value, c->e[j].value_len, &v))
				continue;
			json_array_append_new(es, json_pack("{s:s, s:I, s:s, s:i}", "claimant", vp_id_to_hex(&k.node, h),
			                                    "vservice_id", (json_int_t)k.vservice_id, "contact",
			                                    vp_id_to_hex(&v.contact, c2), "pvp_methods", (int)v.pvp_methods));
		}
		json_array_append_new(cs, c->answered ? json_pack("{s:b, s:s, s:I, s:I, s:I, s:I, s:I, s:o}", "answered",
		                                                  1, "responder", vp_id_to_hex(&c->responder, h), "entries",
		                                                  (json_int_t)c->n, "rejected", (json_int_t)c->rejected,
		                                                  "rtt_ms", (json_int_t)c->rtt_ms, "rtt_us",
		                                                  (json_int_t)c->rtt_us, "hops", (json_int_t)c->hops,
		                                                  "registrations", es)
		                                      : json_pack("{s:b, s:s, s:o}", "answered", 0, "error",
		                                                  c->error[0] ? c->error : "not asked", "registrations", es));
	}
	err = vsrv_lookup_vote(copies, regs, FETCH_MAX_ENTRIES, &n, &vote);
	for (size_t i = 0; i < n; i++) {
		char c2[VP_ID_HEX_LEN + 1];
		json_array_append_new(rs, json_pack("{s:s, s:I, s:s, s:i}", "claimant", vp_id_to_hex(&regs[i].node, h),
		                                    "vservice_id", (json_int_t)regs[i].vservice_id, "contact",
		                                    vp_id_to_hex(&regs[i].contact, c2), "pvp_methods",
		                                    (int)regs[i].methods));
	}
	if (err) {
		json_decref(cs);
		json_decref(rs);
		adm_req_fail(r->req, err, "no copy of the number's resource answered");
	} else
		adm_req_reply(r->req, json_pack("{s:s, s:s, s:o, s:o, s:i, s:i, s:s, s:b, s:i}", "number", r->number,
		                                "resource_id", vp_id_to_hex(&r->rid, h), "copies", cs, "registrations", rs,
		                                "outvoted", (int)vote.outvoted, "malformed", (int)vote.malformed,
		                                "incident", vote.incident, "parallel", (int)r->parallel, "guess_missed",
		                                (int)r->missed));
	free(r);
}

static int fetch_ask(op_req_t *r, unsigned k, const vp_id_t *dest);
static void fetch_settle(op_req_t *r);

/* Copy k's answer (or failure) into r->c[k]. */
static void fetch_record(struct op_copy *c, const node_answer_t *a)
{
	op_req_t *r = c->r;
	if (a->err || a->code != RL_FETCH_ANS) {
		json_t *e = jerr_answer(a);
		snprintf(c->error, sizeof(c->error), "%s", a->err ? vp_strerror(a->err) : "error answer");
		json_decref(e);
	} else {
		st_kind_t kinds[2] = { st_kind_vipr(r->o->vipr_kind), nk_kind_cert_by_node() };
		nk_fetch_result_t res = { 0 };
		int err = nk_fetch_verify(a->certs, kinds, 2, &r->rid, a->msg, fetch_entry, c, &res);
		if (err)
			snprintf(c->error, sizeof(c->error), "answer: %s", vp_strerror(err));
		else {
			c->answered = true;
			c->responder = a->responder;
			c->rejected = res.rejected;
			c->rtt_ms = a->rtt_ms;
			c->rtt_us = a->rtt_us;
			c->hops = a->hops;
		}
	}
}

/* One copy after the other from copy k on: ask the next one (the successor of k's responder), or finish. */
static void fetch_continue(op_req_t *r, unsigned k)
{
	struct op_copy *c = &r->c[k];
	/* The replicas are the responder's successors: without its answer there is no way to name them. */
	if (c->answered && k + 1 < VSRV_COPIES) {
		vp_id_t next = node_after(&c->responder);
		int err;
		if (!(err = fetch_ask(r, k + 1, &next)))
			return;
		snprintf(r->c[k + 1].error, sizeof(r->c[k + 1].error), "%s", vp_strerror(err));
	}
	fetch_finish(r);
}

/* On shard 0's thread: one copy answered (or failed). */
static void fetch_done(void *arg, const node_answer_t *a)
{
	struct op_copy *c = arg;
	op_req_t *r = c->r;
	observe(r->o, LAT_FETCH, a);
	fetch_record(c, a);
	if (r->pending) {
		if (--r->pending == 0)
			fetch_settle(r);
		return;
	}
	fetch_continue(r, c->k);
}

/*
 * Every copy asked at once has answered: keep copy k only if it was asked at the successor of the peer that
 * really answered copy k-1 — then the overlay routed it to that peer's successor, exactly as asking one
 * after the other would have.  From the first copy asked of a wrong guess on, drop the answers and go on
 * one copy after the other from the last good one.
 */
static void fetch_settle(op_req_t *r)
{
	bool answered[VSRV_COPIES], missed;
	vp_id_t responder[VSRV_COPIES], dest[VSRV_COPIES];
	unsigned k;
	for (unsigned i = 0; i < VSRV_COPIES; i++) {
		answered[i] = r->c[i].answered;
		responder[i] = r->c[i].responder;
		dest[i] = r->c[i].dest;
	}
	if ((k = vsrv_copies_standing(answered, responder, dest, VSRV_COPIES, &missed)) == VSRV_COPIES) {
		fetch_finish(r);
		return;
	}
	r->missed += missed;
	for (unsigned j = k; j < VSRV_COPIES; j++)
		memset(&r->c[j], 0, sizeof(r->c[j]));
	fetch_continue(r, k - 1);
}

static int fetch_ask(op_req_t *r, unsigned k, const vp_id_t *dest)
{
	struct op_copy *c = &r->c[k];
	rl_specifier_t spec;
	rl_body_t b;
	c->r = r;
	c->k = k;
	c->dest = *dest;
	nk_fetch_req(&b, &spec, &r->rid, r->o->vipr_kind);
	return node_request(r->o->node, 0, dest, true, &b, fetch_done, c);
}

/*
 * On shard 0's thread: ask the 3 copies at once when the vnode can name the replicas (its guess of the peer
 * responsible for the number's Resource-ID and of that peer's successor, from its table and links): copy 0
 * at the Resource-ID, copy 1 at node_after(guess 0), copy 2 at node_after(guess 1), each routed by the overlay
 * like any request.  fetch_settle keeps what a one-after-the-other fetch would have got.
 */
static void fetch_start(void *arg, unsigned shard)
{
	op_req_t *r = arg;
	vp_id_t g[VSRV_COPIES - 1], dest[VSRV_COPIES];
	size_t n = node_guess_successors(r->o->node, shard, &r->rid, g, VSRV_COPIES - 1);
	int err;

	if (n < VSRV_COPIES - 1) {
		if ((err = fetch_ask(r, 0, &r->rid))) {
			adm_req_fail(r->req, err, "the request did not start");
			free(r);
		}
		return;
	}
	r->parallel = true;
	dest[0] = r->rid;
	for (unsigned k = 1; k < VSRV_COPIES; k++)
		dest[k] = node_after(&g[k - 1]);
	r->pending = 1; /* ours, until every copy was asked: an answer served here comes before node_request returns */
	for (unsigned k = 0; k < VSRV_COPIES; k++) {
		r->pending++;
		if ((err = fetch_ask(r, k, &dest[k]))) {
			r->pending--;
			snprintf(r->c[k].error, sizeof(r->c[k].error), "%s", vp_strerror(err));
		}
	}
	if (--r->pending == 0)
		fetch_settle(r);
}

static int h_fetch(adm_req_t *req, void *ctx)
{
	op_req_t *r = calloc(1, sizeof(*r));
	viprd_ops_t *o = ctx;
	int err;
	if (!r)
		return VP_ENOMEM;
	r->o = o;
	r->req = req;
	if (number_arg(req, r)) {
		free(r);
		return 0;
	}
	if ((err = node_call(o->node, 0, fetch_start, r)))
		free(r);
	return err;
}

typedef struct probe_req {
	viprd_ops_t *o;
	adm_req_t *req;
} probe_req_t;

static void probe_done(void *arg, const node_answer_t *a)
{
	probe_req_t *p = arg;
	adm_req_t *req = p->req;
	char h[VP_ID_HEX_LEN + 1];
	observe(p->o, LAT_PROBE, a);
	free(p);
	if (a->err)
		adm_req_fail(req, a->err, a->err == VP_ENOTFOUND ? "no such Node-ID in this node's view of the ring"
		                                                 : "no answer from the overlay");
	else
		adm_req_reply(req, json_pack("{s:s, s:s, s:I, s:I}", "responder", vp_id_to_hex(&a->responder, h),
		                             "answer", a->code == RL_PING_ANS ? "ping" : "error", "attempts",
		                             (json_int_t)a->attempts, "rtt_ms", (json_int_t)a->rtt_ms));
}

static int h_probe(adm_req_t *req, void *ctx)
{
	viprd_ops_t *o = ctx;
	const char *arg = adm_req_arg(req);
	vp_id_t id;
	rl_body_t b;
	if (!arg || vp_id_from_hex(arg, &id)) {
		adm_req_fail(req, VP_EINVAL, "NODE must be a Node-ID: 32 hex digits");
		return 0;
	}
	probe_req_t *p = malloc(sizeof(*p));
	int err;
	if (!p)
		return VP_ENOMEM;
	*p = (probe_req_t){ o, req };
	memset(&b, 0, sizeof(b));
	b.code = RL_PING_REQ;
	if ((err = node_request(o->node, 0, &id, false, &b, probe_done, p)))
		free(p);
	return err;
}

/* ---- metrics ---------------------------------------------------------------------------------------------- */

typedef struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	atomic_int refs;
	bool done;
	node_status_t *st;
} waiter_t;

static void waiter_put(waiter_t *w)
{
	if (atomic_fetch_sub(&w->refs, 1) != 1)
		return;
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
	free(w->st);
	free(w);
}

static void waiter_cb(void *ctx, const node_status_t *st)
{
	waiter_t *w = ctx;
	node_status_t *c = status_copy(st);
	pthread_mutex_lock(&w->mu);
	w->st = c;
	w->done = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	waiter_put(w);
}

static void collect(void *ctx, vm_registry_t *reg)
{
	viprd_ops_t *o = ctx;
	waiter_t *w = calloc(1, sizeof(*w));
	struct timespec dl;
	char why[200];
	bool done;
	sums_t s;

	if (!w)
		return;
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	atomic_init(&w->refs, 2);
	if (node_status_async(o->node, waiter_cb, w)) {
		atomic_store(&w->refs, 1);
		waiter_put(w);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_nsec += (long)(SCRAPE_WAIT_MS % 1000u) * 1000000l;
	dl.tv_sec += SCRAPE_WAIT_MS / 1000u + dl.tv_nsec / 1000000000l;
	dl.tv_nsec %= 1000000000l;
	pthread_mutex_lock(&w->mu);
	while (!w->done)
		if (pthread_cond_timedwait(&w->cv, &w->mu, &dl) == ETIMEDOUT)
			break;
	done = w->done;
	pthread_mutex_unlock(&w->mu);
	if (done && w->st) {
		sum_status(w->st, &s);
		vm_set(reg, 0, o->m.rx, s.rx_msgs);
		vm_set(reg, 0, o->m.rx_bytes, s.rx_bytes);
		vm_set(reg, 0, o->m.tx, s.tx_msgs);
		vm_set(reg, 0, o->m.tx_bytes, s.tx_bytes);
		for (unsigned f = 0; f < FAMILIES; f++)
			if (o->m.sent[f] != UINT32_MAX)
				vm_set(reg, 0, o->m.sent[f], s.sent[f]);
		vm_set(reg, 0, o->m.relayed, s.relayed);
		vm_set(reg, 0, o->m.forwarded, s.forwarded);
		for (unsigned r = 0; r < DROP__COUNT; r++)
			vm_set(reg, 0, o->m.dropped[r], s.drops[r]);
		vm_set(reg, 0, o->m.links, s.links);
		vm_set(reg, 0, o->m.links_opened, s.links_opened);
		vm_set(reg, 0, o->m.links_closed, s.links_closed);
		vm_set(reg, 0, o->m.peer_failures, s.peer_failures);
		vm_set(reg, 0, o->m.rerouted, s.rerouted);
		vm_set(reg, 0, o->m.ring_checks, s.ring_checks);
		vm_set(reg, 0, o->m.ring_check_misses, s.ring_check_misses);
		vm_set(reg, 0, o->m.vnodes, w->st->nshards);
		vm_set(reg, 0, o->m.joined, s.joined);
		vm_set(reg, 0, o->m.records, s.records);
		vm_set(reg, 0, o->m.stores[0], s.stores_ok);
		vm_set(reg, 0, o->m.stores[1], s.refused_quota);
		vm_set(reg, 0, o->m.stores[2], s.refused_rate);
		vm_set(reg, 0, o->m.stores[3], s.refused_acl);
		vm_set(reg, 0, o->m.stores[4], s.refused_other);
		vm_set(reg, 0, o->m.fetches_served, s.fetches_served);
		vm_set(reg, 0, o->m.neighbour_stores, s.neighbour_stores);
		vm_set(reg, 0, o->m.bad_signatures, s.bad_signatures);
		vm_set(reg, 0, o->m.replica_refused, s.replica_refused);
		vm_set(reg, 0, o->m.quota_used, s.quota_used);
		vm_set(reg, 0, o->m.quota_limit, s.quota_limit);
	}
	waiter_put(w);
	{
		uint8_t on[VIPRD_ALARM__COUNT] = { 0 };
		bool healthy = health_eval(o, why, sizeof(why), NULL);
		vm_set(reg, 0, o->m.healthy, healthy);
		pthread_mutex_lock(&o->mu);
		if (o->vipr)
			viprd_vipr_alarms(o->vipr, NULL, on);
		pthread_mutex_unlock(&o->mu);
		for (unsigned i = 0; i < VIPRD_ALARM__COUNT; i++)
			vm_set(reg, 0, o->m.alarm[i], on[i]);
		vm_set(reg, 0, o->m.alarm[VIPRD_ALARM__COUNT], !healthy);
	}
	vm_set(reg, 0, o->m.uptime, (now_ms() - o->start_ms) / 1000u);
}

static int metrics_register(viprd_ops_t *o)
{
	vm_registry_t *r = o->reg;
	char lab[64];
	int err = 0;
#define C(id, name, l, help) \
	if (!err)                \
	err = vm_counter_add(r, name, l, help, &o->m.id)
#define G(id, name, help) \
	if (!err)             \
	err = vm_gauge_add(r, name, NULL, help, &o->m.id)
	C(rx, "viprd_messages_received_total", NULL, "overlay messages received on the node's links");
	C(tx, "viprd_messages_sent_total", NULL, "overlay messages sent on the node's links");
	C(rx_bytes, "viprd_received_bytes_total", NULL, "bytes of overlay messages received");
	C(tx_bytes, "viprd_sent_bytes_total", NULL, "bytes of overlay messages sent");
	for (unsigned f = 0; f < FAMILIES; f++) {
		o->m.sent[f] = UINT32_MAX;
		if (!strncmp(family_name[f], "other_", 6))
			continue;
		snprintf(lab, sizeof(lab), "method=\"%s\"", family_name[f]);
		C(sent[f], "viprd_messages_originated_total", lab,
		  "messages the node's vnodes originated (requests and answers) by method; method=\"error\" counts error answers");
	}
	C(relayed, "viprd_messages_relayed_total", NULL, "messages relayed for others (header edited, not verified)");
	C(forwarded, "viprd_messages_forwarded_total", NULL, "messages the routing engine forwarded");
	for (unsigned d = 0; d < DROP__COUNT; d++) {
		snprintf(lab, sizeof(lab), "reason=\"%s\"", drop_name[d]);
		C(dropped[d], "viprd_messages_dropped_total", lab, "messages dropped or refused, by reason");
	}
	G(links, "viprd_links", "overlay links up");
	C(links_opened, "viprd_links_opened_total", NULL, "overlay links that came up (TLS handshake done)");
	C(links_closed, "viprd_links_closed_total", NULL, "overlay links that went down");
	C(peer_failures, "viprd_peer_failures_total", NULL, "peers removed from a routing table after a failure");
	C(rerouted, "viprd_requests_rerouted_total", NULL, "requests sent again around a failed link");
	C(ring_checks, "viprd_ring_checks_total", NULL, "ring checks (Attach to self+1) sent through a remembered peer");
	C(ring_check_misses, "viprd_ring_check_misses_total", NULL, "ring-check links to a remembered peer that failed");
	G(vnodes, "viprd_vnodes", "vnodes (one per shard)");
	G(joined, "viprd_vnodes_joined", "vnodes that are members of the ring");
	G(healthy, "viprd_healthy", "1 when /health answers 200, 0 when the node is isolated");
	G(uptime, "viprd_uptime_seconds", "seconds since the daemon started");
	G(records, "viprd_store_records", "records (resource, kind) this node stores, RocksDB's estimate");
	for (unsigned i = 0; i < 5; i++) {
		snprintf(lab, sizeof(lab), "result=\"%s\"", store_result[i]);
		C(stores[i], "viprd_stores_served_total", lab,
		  "Stores this node served as the responsible node (ok: original Stores answered with success) and Stores it refused, by reason");
	}
	C(fetches_served, "viprd_fetches_served_total", NULL, "Fetch and Stat requests this node served");
	C(neighbour_stores, "viprd_neighbour_stores_total", NULL, "replica and handoff Stores accepted");
	C(bad_signatures, "viprd_entries_bad_signature_total", NULL, "stored entries refused: signature did not verify");
	C(replica_refused, "viprd_replica_stores_refused_total", NULL, "replica Stores from a sender without the role");
	G(quota_used, "viprd_quota_used_entries", "ViPR entries stored here signed by this node's own Node-IDs");
	G(quota_limit, "viprd_quota_limit_entries", "the ViPR kind's per-signer limit here (from the ring fraction held)");
	for (unsigned i = 0; i <= VIPRD_ALARM__COUNT && !err; i++) {
		snprintf(lab, sizeof(lab), "alarm=\"%s\"", i < VIPRD_ALARM__COUNT ? viprd_vipr_alarm_name[i] : "isolated");
		err = vm_gauge_add(r, "viprd_alarm", lab,
		                   "1 while the alarm is raised (viprctl alarms; isolated: /health answers 503)", &o->m.alarm[i]);
	}
	for (unsigned i = 0; i < 3 && !err; i++) {
		snprintf(lab, sizeof(lab), "method=\"%s\"", lat_name[i]);
		err = vm_histogram_add(r, "viprd_request_duration_seconds", lab,
		                       "requests this node originated for the admin socket, first transmission to answer",
		                       lat_bounds_ms, sizeof(lat_bounds_ms) / sizeof(lat_bounds_ms[0]), 1000.0,
		                       &o->m.latency[i]);
	}
#undef C
#undef G
	return err;
}

/* ---- lifetime --------------------------------------------------------------------------------------------- */

/* Shard 0's certificate and key, as the node found them (node.c: [link] cert_file, else data_dir/node.pem). */
static int load_ident(viprd_ops_t *o, const node_conf_t *nc)
{
	char cp[600], kp[600];
	FILE *f;
	X509 *x = NULL;
	int len;

	snprintf(cp, sizeof(cp), "%s", nc->link.cert_file);
	snprintf(kp, sizeof(kp), "%s", nc->link.key_file);
	if (!cp[0])
		snprintf(cp, sizeof(cp), "%s/node.pem", nc->data_dir);
	if (!kp[0])
		snprintf(kp, sizeof(kp), "%s/node.key", nc->data_dir);
	if ((f = fopen(cp, "r"))) {
		x = PEM_read_X509(f, NULL, NULL, NULL);
		fclose(f);
	}
	if ((f = fopen(kp, "r"))) {
		o->key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
		fclose(f);
	}
	len = x ? i2d_X509(x, &o->der) : -1;
	X509_free(x);
	if (!o->key || len <= 0 || rl_signer_cert_hash(o->der, (size_t)len, o->hash, &o->signer)) {
		vp_log_error("viprd", "config", "reason=\"cannot read shard 0's certificate %s and key %s\"", cp, kp);
		return VP_ECONFIG;
	}
	return 0;
}

int viprd_ops_start(const viprd_ops_conf_t *c, const node_conf_t *nc, node_t *node, viprd_ops_t **out)
{
	const char *data_dir = nc->data_dir;
	viprd_ops_t *o = calloc(1, sizeof(*o));
	adm_handlers_t h = { 0 };
	adm_server_opts_t so;
	int err;

	*out = NULL;
	if (!o)
		return VP_ENOMEM;
	o->node = node;
	o->conf = *c;
	o->start_ms = o->last_link_ms = now_ms();
	atomic_init(&o->leave, false);
	atomic_init(&o->sampling, false);
	pthread_mutex_init(&o->mu, NULL);
	o->vipr_kind = nc->vipr_kind_id ? nc->vipr_kind_id : ST_VIPR_KIND_ID_DEFAULT;
	if ((err = load_ident(o, nc)))
		goto fail;
	if (c->admin.socket[0])
		snprintf(o->sock, sizeof(o->sock), "%s", c->admin.socket);
	else if ((size_t)snprintf(o->sock, sizeof(o->sock), "%s/admin.sock", data_dir) >= sizeof(o->sock)) {
		vp_log_error("viprd", "config", "reason=\"data_dir too long for the admin socket: set [admin] socket\"");
		err = VP_ECONFIG;
		goto fail;
	}
	h.fn[ADM_CMD_STATUS] = h_from_shards;
	h.fn[ADM_CMD_RING] = h_from_shards;
	h.fn[ADM_CMD_STATS] = h_from_shards;
	h.fn[ADM_CMD_ALARMS] = h_alarms;
	h.fn[ADM_CMD_VALIDATION] = h_validation;
	h.fn[ADM_CMD_LEAVE] = h_leave;
	h.fn[ADM_CMD_STORE] = h_store;
	h.fn[ADM_CMD_FETCH] = h_fetch;
	h.fn[ADM_CMD_PROBE] = h_probe;
	adm_conf_server_opts(&c->admin, false, &so);
	if ((err = adm_server_new(o->sock, &h, o, &so, &o->adm))) {
		vp_log_error("viprd", "admin_failed", "socket=%s err=%s", o->sock, vp_strerror(err));
		goto fail;
	}
	if (c->admin.monitor_socket[0]) {
		adm_conf_server_opts(&c->admin, true, &so);
		if ((err = adm_server_new(c->admin.monitor_socket, &h, o, &so, &o->mon))) {
			vp_log_error("viprd", "admin_failed", "socket=%s err=%s", c->admin.monitor_socket, vp_strerror(err));
			goto fail;
		}
	}
	if (c->metrics_listen[0]) {
		char host[96];
		uint16_t port = 0;
		if (vp_net_split_hostport(c->metrics_listen, true, host, sizeof(host), &port)) {
			vp_log_error("viprd", "config", "reason=\"[metrics] listen %s is not address:port\"", c->metrics_listen);
			err = VP_ECONFIG;
			goto fail;
		}
		if ((err = vm_registry_new(2, 256, &o->reg)) || (err = metrics_register(o)))
			goto fail;
		vm_registry_set_collect(o->reg, collect, o);
		if ((err = vm_http_start(o->reg, host, port, health_cb, o, &o->http)))
			goto fail;
		snprintf(o->metrics_addr, sizeof(o->metrics_addr), strchr(host, ':') ? "[%s]:%u" : "%s:%u", host,
		         vm_http_port(o->http));
	}
	vp_log_info("viprd", "admin_ready", "socket=%s monitor_socket=%s metrics=%s", o->sock,
	            c->admin.monitor_socket[0] ? c->admin.monitor_socket : "-",
	            o->metrics_addr[0] ? o->metrics_addr : "-");
	*out = o;
	return 0;
fail:
	viprd_ops_stop(o);
	viprd_ops_free(o);
	return err;
}

void viprd_ops_stop(viprd_ops_t *o)
{
	if (!o)
		return;
	vm_http_stop(o->http);
	o->http = NULL;
	adm_server_free(o->adm);
	o->adm = NULL;
	adm_server_free(o->mon);
	o->mon = NULL;
}

void viprd_ops_free(viprd_ops_t *o)
{
	if (!o)
		return;
	viprd_ops_stop(o);
	vm_registry_free(o->reg);
	free(o->sample);
	EVP_PKEY_free(o->key);
	OPENSSL_free(o->der);
	pthread_mutex_destroy(&o->mu);
	free(o);
}
