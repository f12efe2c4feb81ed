/*
 * control/vipr_server.c - one carrier's ViPR server composed in-process (see header).
 */
#include "control/server/vipr_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "common/errcode.h"
#include "common/log.h"

#define VSRV_MAX_WORKERS 16
#define VSRV_MAX_VSERVICES 64
#define MAP_BUCKETS 1024u
#define LOGMOD "vsrv"
#define UPLOAD_KEEP_MS (48ull * 3600 * 1000)  /* originating records' retention (pvp/vcr.h default) */
#define MAINT_EVERY_MS 60000ull               /* purge of records, uploads and expired tickets */

/* ---- configuration -------------------------------------------------------------- */

const char vsrv_default_conf[] =
	"# viprd server defaults (control/vipr_server.c)\n"
	"[server]\n"
	"name = viprd\n"
	"domain = carrier.example\n"
	"# node_id = <32 hex digits>      (default: SHA-1(domain), first 16 bytes)\n"
	"[vap]\n"
	"bind = 127.0.0.1\n"
	"port = 5349\n"
	"realm = vipr\n"
	"# agents = name:password, name:password\n"
	"[pvp]\n"
	"bind = 127.0.0.1\n"
	"port = 0\n"
	"workers = 2\n"
	"group_bits = 2048\n"
	"ticket_lifetime = 30d\n"
	"io_timeout = 10s\n"
	"min_entropy_cbits = 1600\n"
	"list_mode = black\n"
	"peer_fail_limit = 30\n"
	"number_fail_limit = 10\n"
	"orig_min_entropy_cbits = 1600\n"
	"guess_budget = 64\n"
	"vcr_dir = ./vcr\n"
	"# ticket_keys = /etc/viprd/ticket.keys   (default: a random key per start)\n"
	"[scheduler]\n"
	"delay_min = 5m\n"
	"delay_max = 2h\n"
	"backoff = 60s\n"
	"max_attempts = 4\n"
	"attach_timeout = 5s\n"
	"fetch_timeout = 10s\n"
	"seed = 0\n";

static int conf_strcpy(const vp_conf_t *vc, const char *sec, const char *key, char *dst, size_t cap,
                       vp_conf_err_t *e)
{
	const char *v = vp_conf_get(vc, sec, key);
	if (!v)
		return 0;
	if (strlen(v) >= cap) {
		e->line = 0;
		snprintf(e->msg, sizeof(e->msg), "[%s] %s: value too long (at most %zu bytes)", sec, key, cap - 1);
		return VP_ECONFIG;
	}
	memcpy(dst, v, strlen(v) + 1);
	return 0;
}

static int conf_u32(const vp_conf_t *vc, const char *sec, const char *key, uint64_t min, uint64_t max,
                    uint32_t *v, vp_conf_err_t *e)
{
	uint64_t x;
	int rc = vp_conf_u64(vc, sec, key, *v, min, max, &x, e);
	if (!rc)
		*v = (uint32_t)x;
	return rc;
}

static int conf_dur_s(const vp_conf_t *vc, const char *sec, const char *key, uint64_t min_s, uint64_t max_s,
                      uint32_t *v, vp_conf_err_t *e)
{
	uint64_t ms;
	int rc = vp_conf_duration_ms(vc, sec, key, (uint64_t)*v * 1000, min_s * 1000, max_s * 1000, &ms, e);
	if (!rc)
		*v = (uint32_t)(ms / 1000);
	return rc;
}

static int conf_dur_ms(const vp_conf_t *vc, const char *sec, const char *key, uint64_t min_ms, uint64_t max_ms,
                       unsigned *v, vp_conf_err_t *e)
{
	uint64_t ms;
	int rc = vp_conf_duration_ms(vc, sec, key, *v, min_ms, max_ms, &ms, e);
	if (!rc)
		*v = (unsigned)ms;
	return rc;
}

static int conf_apply(vsrv_conf_t *c, const vp_conf_t *vc, vp_conf_err_t *e)
{
	static const char *const sections[] = { "server", "vap", "pvp", "scheduler", NULL };
	static const char *const k_server[] = { "name", "domain", "node_id", NULL };
	static const char *const k_vap[] = { "bind", "port", "realm", "agents", NULL };
	static const char *const k_pvp[] = { "bind", "port", "workers", "group_bits", "ticket_lifetime",
		                             "io_timeout", "min_entropy_cbits", "list_mode", "vcr_dir",
		                             "peer_fail_limit", "number_fail_limit",
		                             "orig_min_entropy_cbits", "guess_budget",
		                             "ticket_keys", NULL };
	static const char *const k_sched[] = { "delay_min", "delay_max", "backoff", "max_attempts",
		                               "attach_timeout", "fetch_timeout", "seed", NULL };
	uint32_t port, u;
	const char *v;
	int rc;

	if ((rc = vp_conf_check_keys(vc, NULL, sections, e)) || (rc = vp_conf_check_keys(vc, "server", k_server, e)) ||
	    (rc = vp_conf_check_keys(vc, "vap", k_vap, e)) || (rc = vp_conf_check_keys(vc, "pvp", k_pvp, e)) ||
	    (rc = vp_conf_check_keys(vc, "scheduler", k_sched, e)))
		return rc;
	if ((rc = conf_strcpy(vc, "server", "name", c->name, sizeof(c->name), e)))
		return rc;
	if ((v = vp_conf_get(vc, "server", "domain"))) {
		if (pvp_domain_normalize(v, c->domain)) {
			e->line = 0;
			snprintf(e->msg, sizeof(e->msg), "[server] domain: '%s' is not a DNS name", v);
			return VP_ECONFIG;
		}
		c->node_id = vp_id_from_name(c->domain, strlen(c->domain));
	}
	if ((v = vp_conf_get(vc, "server", "node_id")) && vp_id_from_hex(v, &c->node_id)) {
		e->line = 0;
		snprintf(e->msg, sizeof(e->msg), "[server] node_id: expected %d hex digits", VP_ID_HEX_LEN);
		return VP_ECONFIG;
	}
	port = c->vap_port;
	if ((rc = conf_strcpy(vc, "vap", "bind", c->vap_bind, sizeof(c->vap_bind), e)) ||
	    (rc = conf_u32(vc, "vap", "port", 0, 65535, &port, e)) ||
	    (rc = conf_strcpy(vc, "vap", "realm", c->realm, sizeof(c->realm), e)) ||
	    (rc = conf_strcpy(vc, "vap", "agents", c->agents, sizeof(c->agents), e)))
		return rc;
	c->vap_port = (uint16_t)port;
	port = c->pvp_port;
	if ((rc = conf_strcpy(vc, "pvp", "bind", c->pvp_bind, sizeof(c->pvp_bind), e)) ||
	    (rc = conf_u32(vc, "pvp", "port", 0, 65535, &port, e)))
		return rc;
	c->pvp_port = (uint16_t)port;
	u = c->pvp_workers;
	if ((rc = conf_u32(vc, "pvp", "workers", 1, VSRV_MAX_WORKERS, &u, e)))
		return rc;
	c->pvp_workers = u;
	u = c->group_bits;
	if ((rc = conf_u32(vc, "pvp", "group_bits", PVP_GROUP_MIN, 8192, &u, e)))
		return rc;
	c->group_bits = u;
	if ((rc = conf_dur_s(vc, "pvp", "ticket_lifetime", 60, 365 * 86400, &c->ticket_lifetime_s, e)) ||
	    (rc = conf_dur_ms(vc, "pvp", "io_timeout", 100, 600000, &c->io_timeout_ms, e)) ||
	    (rc = conf_u32(vc, "pvp", "min_entropy_cbits", 1, 65535, &c->min_entropy_cbits, e)) ||
	    (rc = conf_u32(vc, "pvp", "peer_fail_limit", 1, 1000000, &c->peer_fail_limit, e)) ||
	    (rc = conf_u32(vc, "pvp", "number_fail_limit", 1, 1000000, &c->number_fail_limit, e)) ||
	    (rc = conf_u32(vc, "pvp", "orig_min_entropy_cbits", 1, 65535, &c->orig_min_entropy_cbits, e)) ||
	    (rc = conf_u32(vc, "pvp", "guess_budget", 1, 1000000, &c->guess_budget, e)) ||
	    (rc = conf_strcpy(vc, "pvp", "vcr_dir", c->vcr_dir, sizeof(c->vcr_dir), e)) ||
	    (rc = conf_strcpy(vc, "pvp", "ticket_keys", c->ticket_keys, sizeof(c->ticket_keys), e)))
		return rc;
	if ((v = vp_conf_get(vc, "pvp", "list_mode"))) {
		if (strcmp(v, "black") && strcmp(v, "white")) {
			e->line = 0;
			snprintf(e->msg, sizeof(e->msg), "[pvp] list_mode: 'black' or 'white', not '%s'", v);
			return VP_ECONFIG;
		}
		c->whitelist_mode = !strcmp(v, "white");
	}
	if ((rc = conf_dur_s(vc, "scheduler", "delay_min", 0, 7 * 86400, &c->delay_min_s, e)) ||
	    (rc = conf_dur_s(vc, "scheduler", "delay_max", 0, 7 * 86400, &c->delay_max_s, e)) ||
	    (rc = conf_dur_s(vc, "scheduler", "backoff", 1, 86400, &c->backoff_s, e)) ||
	    (rc = conf_u32(vc, "scheduler", "max_attempts", 1, 100, &c->max_attempts, e)) ||
	    (rc = conf_dur_ms(vc, "scheduler", "attach_timeout", 10, 600000, &c->attach_timeout_ms, e)) ||
	    (rc = conf_dur_ms(vc, "scheduler", "fetch_timeout", 10, 600000, &c->fetch_timeout_ms, e)) ||
	    (rc = vp_conf_u64(vc, "scheduler", "seed", c->rng_seed, 0, UINT64_MAX, &c->rng_seed, e)))
		return rc;
	if (c->delay_max_s < c->delay_min_s) {
		e->line = 0;
		snprintf(e->msg, sizeof(e->msg), "[scheduler] delay_max is below delay_min");
		return VP_ECONFIG;
	}
	return 0;
}

int vsrv_conf_parse(vsrv_conf_t *c, const char *text, size_t len, vp_conf_err_t *e)
{
	int rc = 0;
	vp_conf_t *vc = vp_conf_parse(text, len, &rc, e);
	if (!vc)
		return rc ? rc : VP_ECONFIG;
	rc = conf_apply(c, vc, e);
	vp_conf_free(vc);
	return rc;
}

int vsrv_conf_load(vsrv_conf_t *c, const char *path, vp_conf_err_t *e)
{
	int rc = 0;
	vp_conf_t *vc = vp_conf_load(path, &rc, e);
	if (!vc)
		return rc ? rc : VP_ECONFIG;
	rc = conf_apply(c, vc, e);
	vp_conf_free(vc);
	return rc;
}

void vsrv_conf_default(vsrv_conf_t *c)
{
	vp_conf_err_t e;
	memset(c, 0, sizeof(*c));
	/* The defaults are the embedded text itself, so documentation and code agree. */
	if (vsrv_conf_parse(c, vsrv_default_conf, strlen(vsrv_default_conf), &e))
		vp_log_error(LOGMOD, "default_conf", "line=%d msg=\"%s\"", e.line, e.msg);
}

/* ---- small string-keyed map (under the server mutex) ----------------------------- */

typedef struct ment {
	struct ment *next;
	uint32_t u;
	uint64_t until_ms;      /* uploads: forget after; tickets: expiry */
	size_t blob_len;
	uint8_t *blob;
	char key[];
} ment_t;

typedef struct smap {
	ment_t *b[MAP_BUCKETS];
} smap_t;

static uint32_t hash_str(const char *s)
{
	uint32_t h = 2166136261u;
	while (*s)
		h = (h ^ (uint8_t)*s++) * 16777619u;
	return h;
}

static ment_t *smap_get(smap_t *m, const char *key)
{
	for (ment_t *e = m->b[hash_str(key) % MAP_BUCKETS]; e; e = e->next)
		if (!strcmp(e->key, key))
			return e;
	return NULL;
}

static ment_t *smap_put(smap_t *m, const char *key)
{
	ment_t *e = smap_get(m, key);
	size_t kl = strlen(key);
	uint32_t h;
	if (e)
		return e;
	if (!(e = calloc(1, sizeof(*e) + kl + 1)))
		return NULL;
	memcpy(e->key, key, kl + 1);
	h = hash_str(key) % MAP_BUCKETS;
	e->next = m->b[h];
	m->b[h] = e;
	return e;
}

static void smap_del(smap_t *m, const char *key)
{
	for (ment_t **pp = &m->b[hash_str(key) % MAP_BUCKETS]; *pp; pp = &(*pp)->next) {
		if (!strcmp((*pp)->key, key)) {
			ment_t *e = *pp;
			*pp = e->next;
			free(e->blob);
			free(e);
			return;
		}
	}
}

/* Drop every entry whose until_ms has passed; returns how many. */
static size_t smap_expire(smap_t *m, uint64_t now_ms)
{
	size_t n = 0;
	for (size_t i = 0; i < MAP_BUCKETS; i++) {
		for (ment_t **pp = &m->b[i]; *pp;) {
			ment_t *e = *pp;
			if (e->until_ms && e->until_ms < now_ms) {
				*pp = e->next;
				free(e->blob);
				free(e);
				n++;
			} else {
				pp = &e->next;
			}
		}
	}
	return n;
}

static void smap_clear(smap_t *m)
{
	for (size_t i = 0; i < MAP_BUCKETS; i++) {
		ment_t *e = m->b[i];
		while (e) {
			ment_t *n = e->next;
			free(e->blob);
			free(e);
			e = n;
		}
		m->b[i] = NULL;
	}
}

/* ---- the server ------------------------------------------------------------------ */

typedef struct vservice {
	uint32_t id;
	bool used;
	size_t n_uris;
	char uris[VAP_MAX_URIS][VAP_MAX_URI];
} vservice_t;

typedef struct vqueue {
	pvp_vcr_t *v;
	size_t n, cap;
} vqueue_t;

struct vsrv {
	vsrv_conf_t conf;
	vsrv_dht_t dht;
	const vp_clock_t *clock;
	vsrv_event_fn ev;
	void *ev_arg;

	vap_server_t *vap;
	pvp_vcr_store_t *store;
	pvp_policy_t *policy;
	pvp_ticket_keys_t keys;
	pvp_server_t *pvp;
	pvp_client_t *cli;
	pvp_ledger_t *ledger;           /* the originating side's guess ledger, in the call-record store */
	pvp_sched_t *sched;
	int pvp_lfd;
	pvp_gate_t *gate;               /* new PVP connections wait here for their first bytes */
	uint16_t pvp_port;

	pthread_t vap_th, val_th, pvp_th[VSRV_MAX_WORKERS];
	unsigned n_pvp_th;
	bool vap_started, val_started;
	int stop;                       /* atomic */

	pthread_mutex_t mu;             /* everything below */
	pthread_cond_t cv;
	vqueue_t queue;                 /* originating records for the validation thread */
	smap_t published;               /* our numbers -> VService id */
	smap_t uploads;                 /* called number of an originating record -> uploader's VService id */
	smap_t agent_vs;                /* agent -> VService id it last published */
	smap_t tickets;                 /* number|claimant -> last ticket */
	vservice_t vs[VSRV_MAX_VSERVICES];
	vsrv_stats_t st;
};

static void emit(vsrv_t *s, const vsrv_event_t *ev)
{
	if (s->ev)
		s->ev(s->ev_arg, s->conf.name, ev);
}

static void stat_add(vsrv_t *s, uint64_t *field, uint64_t n)
{
	pthread_mutex_lock(&s->mu);
	*field += n;
	pthread_mutex_unlock(&s->mu);
}

static bool stopping(vsrv_t *s)
{
	return __atomic_load_n(&s->stop, __ATOMIC_ACQUIRE) != 0;
}

/* ---- VAP hooks (VAP thread) ------------------------------------------------------ */

typedef struct store_op {
	vsrv_t *s;
	void *token;
	uint32_t vservice_id;
	uint8_t op;
	int status;
	char number[VP_E164_BUFLEN];
} store_op_t;

static void store_finish(vap_server_t *vap, void *arg)
{
	store_op_t *o = arg;
	vsrv_t *s = o->s;
	vsrv_event_t ev = { .kind = VSRV_EV_STORED, .number = o->number, .status = o->status };
	pthread_mutex_lock(&s->mu);
	if (o->status) {
		s->st.stores_failed++;
	} else {
		s->st.stores_ok++;
		if (o->op == VAP_OP_WITHDRAW) {
			smap_del(&s->published, o->number);
		} else {
			ment_t *e = smap_put(&s->published, o->number);
			if (e)
				e->u = o->vservice_id;
		}
	}
	pthread_mutex_unlock(&s->mu);
	if (o->status)
		vp_log_warn(LOGMOD, "store_failed", "srv=%s number=%s err=\"%s\"", s->conf.name, o->number,
		            vp_strerror(o->status));
	emit(s, &ev);
	vap_server_store_done(vap, o->token, o->status);
	free(o);
}

/* DHT completion, any thread: hand it to the VAP thread. */
static void store_done(void *arg, int status)
{
	store_op_t *o = arg;
	o->status = status;
	if (vap_server_post(o->s->vap, store_finish, o)) {
		vp_log_error(LOGMOD, "store_done_lost", "srv=%s number=%s", o->s->conf.name, o->number);
		free(o);
	}
}

static void remember_agent_vs(vsrv_t *s, const char *agent, uint32_t vs)
{
	ment_t *e;
	pthread_mutex_lock(&s->mu);
	if ((e = smap_put(&s->agent_vs, agent)))
		e->u = vs;
	pthread_mutex_unlock(&s->mu);
}

static int hook_store(void *ctx, const vap_store_req_t *req)
{
	vsrv_t *s = ctx;
	vsrv_reg_t reg;
	store_op_t *o = calloc(1, sizeof(*o));
	int rc;
	if (!o)
		return VP_ENOMEM;
	o->s = s;
	o->token = req->token;
	o->vservice_id = req->vservice_id;
	o->op = req->op;
	snprintf(o->number, sizeof(o->number), "%s", req->number);
	memset(&reg, 0, sizeof(reg));
	reg.node = s->conf.node_id;
	reg.vservice_id = req->vservice_id;
	reg.contact = s->conf.node_id;
	reg.methods = (uint8_t)PVP_METHODS_ALL;
	remember_agent_vs(s, req->agent, req->vservice_id);
	rc = s->dht.store(s->dht.ctx, o->number, req->op, &reg, store_done, o);
	if (rc) {
		free(o);
		stat_add(s, &s->st.stores_failed, 1);
	}
	return rc;
}

static int hook_upload_vcr(void *ctx, const char *agent, const vap_vcr_t *v)
{
	vsrv_t *s = ctx;
	pvp_dir_t dir = v->direction == VAP_DIR_ORIGINATING ? PVP_DIR_ORIG : PVP_DIR_TERM;
	vsrv_event_t ev = { .kind = VSRV_EV_VCR };
	pvp_vcr_t r;
	int rc = pvp_vcr_make(&r, dir, v->called, v->caller, v->start_ms, v->stop_ms, NULL);
	if (!rc)
		rc = pvp_vcr_store_add(s->store, &r);
	if (rc) {
		stat_add(s, &s->st.vcr_rejected, 1);
		vp_log_warn(LOGMOD, "vcr_rejected", "srv=%s agent=%s called=%s err=\"%s\"", s->conf.name, agent,
		            v->called, vp_strerror(rc));
		return rc;
	}
	pthread_mutex_lock(&s->mu);
	if (dir == PVP_DIR_ORIG) {
		ment_t *a = smap_get(&s->agent_vs, agent), *u = smap_put(&s->uploads, r.called);
		if (u)
			u->u = a ? a->u : 1;
		if (u) /* kept as long as the record could still be validated */
			u->until_ms = r.stop_ms + UPLOAD_KEEP_MS;
		if (s->queue.n == s->queue.cap) {
			size_t cap = s->queue.cap ? 2 * s->queue.cap : 64;
			pvp_vcr_t *nv = realloc(s->queue.v, cap * sizeof(*nv));
			if (!nv) {
				pthread_mutex_unlock(&s->mu);
				return VP_ENOMEM;
			}
			s->queue.v = nv;
			s->queue.cap = cap;
		}
		s->queue.v[s->queue.n++] = r;
		s->st.vcr_orig++;
		pthread_cond_signal(&s->cv);
	} else {
		s->st.vcr_term++;
	}
	pthread_mutex_unlock(&s->mu);
	vp_log_info(LOGMOD, "vcr", "srv=%s agent=%s dir=%s called=%s caller=%s start_ms=%llu", s->conf.name, agent,
	            dir == PVP_DIR_ORIG ? "orig" : "term", r.called, r.caller[0] ? r.caller : "-",
	            (unsigned long long)r.start_ms);
	ev.vcr = &r;
	ev.number = r.called;
	emit(s, &ev);
	return 0;
}

static int hook_vservice(void *ctx, const char *agent, const vap_vservice_t *vs)
{
	vsrv_t *s = ctx;
	vservice_t *slot = NULL;
	int rc = 0;
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < VSRV_MAX_VSERVICES; i++) {
		if (s->vs[i].used && s->vs[i].id == vs->id) {
			slot = &s->vs[i];
			break;
		}
		if (!s->vs[i].used && !slot)
			slot = &s->vs[i];
	}
	if (vs->op == VAP_OP_WITHDRAW) {
		if (slot && slot->used && slot->id == vs->id)
			slot->used = false;
	} else if (!slot) {
		rc = VP_ESPACE;
	} else {
		memset(slot, 0, sizeof(*slot));
		slot->used = true;
		slot->id = vs->id;
		for (size_t i = 0; i < vs->n_uris && i < VAP_MAX_URIS; i++)
			snprintf(slot->uris[slot->n_uris++], VAP_MAX_URI, "%s", vs->uris[i]);
	}
	pthread_mutex_unlock(&s->mu);
	if (rc)
		return rc;
	/* Seed 001 §B.7: black entries are "never", white entries get the default threshold. */
	for (size_t i = 0; i < vs->n_black && !rc && vs->op == VAP_OP_ADD; i++)
		rc = pvp_policy_list(s->policy, vs->black[i], PVP_THRESHOLD_NEVER);
	for (size_t i = 0; i < vs->n_white && !rc && vs->op == VAP_OP_ADD; i++)
		rc = pvp_policy_list(s->policy, vs->white[i], s->conf.min_entropy_cbits);
	if (!rc)
		remember_agent_vs(s, agent, vs->id);
	vp_log_info(LOGMOD, "vservice", "srv=%s agent=%s id=%u op=%u uris=%zu black=%zu white=%zu rc=%d", s->conf.name,
	            agent, vs->id, vs->op, vs->n_uris, vs->n_black, vs->n_white, rc);
	return rc;
}

/* ---- PVP server side ------------------------------------------------------------- */

static int routes_cb(void *arg, const char *number, char uris[][PVP_URI_MAX], size_t max, size_t *n)
{
	vsrv_t *s = arg;
	ment_t *e;
	int rc = VP_ENOTFOUND;
	*n = 0;
	pthread_mutex_lock(&s->mu);
	if ((e = smap_get(&s->published, number))) {
		rc = 0;
		for (size_t i = 0; i < VSRV_MAX_VSERVICES; i++) {
			if (s->vs[i].used && s->vs[i].id == e->u) {
				for (size_t k = 0; k < s->vs[i].n_uris && *n < max; k++)
					snprintf(uris[(*n)++], PVP_URI_MAX, "%s", s->vs[i].uris[k]);
				break;
			}
		}
		if (*n == 0 && max > 0) { /* no VService published: the number at our domain */
			int w = snprintf(uris[0], PVP_URI_MAX, "sip:%s@%s;user=phone", number, s->conf.domain);
			if (w > 0 && w < PVP_URI_MAX)
				*n = 1;
			else
				rc = VP_ESPACE;
		}
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

/*
 * PVP workers take connections from the gate (pvp/gate.h), which holds new
 * connections until their first bytes and limits each peer, so idle or slow
 * connections cannot occupy every worker.
 */
static void *pvp_worker(void *arg)
{
	vsrv_t *s = arg;
	while (!stopping(s)) {
		char name[PVP_PEER_MAX];
		pvp_server_result_t res;
		vsrv_event_t ev = { .kind = VSRV_EV_PVP_SERVED, .served = &res };
		unsigned slot;
		int fd, rc;
		if (pvp_gate_next(s->gate, 100, &fd, name, &slot))
			continue;
		memset(&res, 0, sizeof(res));
		rc = pvp_server_handle(s->pvp, fd, name, &res);
		pvp_gate_done(s->gate, slot);
		if (rc) {
			vp_log_warn(LOGMOD, "pvp_local_error", "srv=%s err=\"%s\"", s->conf.name, vp_strerror(rc));
			continue;
		}
		pthread_mutex_lock(&s->mu);
		s->st.pvp_served++;
		if (res.outcome == PVP_OUT_HANDSHAKE_FAILED || res.outcome == PVP_OUT_RATE_LIMITED)
			s->st.pvp_handshake_failed++;
		else
			s->st.pvp_authenticated++;
		pthread_mutex_unlock(&s->mu);
		vp_log_info(LOGMOD, "pvp_served", "srv=%s peer=%s outcome=%s number=%s domain=%s", s->conf.name, name,
		            pvp_outcome_str(res.outcome), res.number[0] ? res.number : "-",
		            res.domain[0] ? res.domain : "-");
		emit(s, &ev);
	}
	return NULL;
}

/* ---- validation thread ------------------------------------------------------------- */

typedef struct fetch_wait {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int refs;
	bool done;
	int status;
	size_t n;
	vsrv_reg_t regs[VSRV_REGS_MAX];
	char incident[256];
} fetch_wait_t;

static void fetch_unref(fetch_wait_t *w)
{
	bool last;
	pthread_mutex_lock(&w->mu);
	last = --w->refs == 0;
	pthread_mutex_unlock(&w->mu);
	if (last) {
		pthread_mutex_destroy(&w->mu);
		pthread_cond_destroy(&w->cv);
		free(w);
	}
}

static void fetch_done(void *arg, int status, const vsrv_reg_t *regs, size_t n, const char *incident)
{
	fetch_wait_t *w = arg;
	pthread_mutex_lock(&w->mu);
	w->status = status;
	if (incident)
		snprintf(w->incident, sizeof(w->incident), "%s", incident);
	w->n = 0;
	for (size_t i = 0; !status && i < n && i < VSRV_REGS_MAX; i++)
		w->regs[w->n++] = regs[i];
	w->done = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	fetch_unref(w);
}

static int lookup_cb(void *arg, const char *number, pvp_claimant_t *out, size_t max, size_t *n)
{
	vsrv_t *s = arg;
	fetch_wait_t *w = calloc(1, sizeof(*w));
	char incident[sizeof(w->incident)] = "";
	struct timespec dl;
	int rc;
	*n = 0;
	if (!w)
		return VP_ENOMEM;
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	w->refs = 2;
	if ((rc = s->dht.fetch(s->dht.ctx, number, fetch_done, w))) {
		w->refs = 1;
		fetch_unref(w);
		return rc;
	}
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += s->conf.fetch_timeout_ms / 1000;
	dl.tv_nsec += (long)(s->conf.fetch_timeout_ms % 1000) * 1000000L;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&w->mu);
	while (!w->done && !stopping(s)) {
		/* Slices of 100 ms so that vsrv_stop() is not held up by a slow overlay. */
		struct timespec now, slice;
		clock_gettime(CLOCK_REALTIME, &now);
		if (now.tv_sec > dl.tv_sec || (now.tv_sec == dl.tv_sec && now.tv_nsec >= dl.tv_nsec))
			break;
		slice = now;
		slice.tv_nsec += 100000000L;
		if (slice.tv_nsec >= 1000000000L) {
			slice.tv_sec++;
			slice.tv_nsec -= 1000000000L;
		}
		if (slice.tv_sec > dl.tv_sec || (slice.tv_sec == dl.tv_sec && slice.tv_nsec > dl.tv_nsec))
			slice = dl;
		pthread_cond_timedwait(&w->cv, &w->mu, &slice);
	}
	rc = w->done ? w->status : VP_ETIMEOUT;
	if (w->done)
		memcpy(incident, w->incident, sizeof(incident));
	for (size_t i = 0; !rc && i < w->n && *n < max; i++) {
		const vsrv_reg_t *g = &w->regs[i];
		pvp_claimant_t *c = &out[*n];
		if (vp_id_eq(&g->node, &s->conf.node_id))
			continue; /* our own claim: nothing to validate */
		memset(c, 0, sizeof(*c));
		vp_id_to_hex(&g->node, c->id);
		vp_id_to_hex(&g->contact, c->addr);
		c->methods = g->methods & PVP_METHODS_ALL;
		(*n)++;
	}
	pthread_mutex_unlock(&w->mu);
	fetch_unref(w);
	if (incident[0]) {
		vsrv_event_t ev = { .kind = VSRV_EV_INCIDENT, .number = number, .text = incident };
		vp_log_warn(LOGMOD, "incident", "srv=%s number=%s text=\"%s\"", s->conf.name, number, incident);
		stat_add(s, &s->st.incidents, 1);
		emit(s, &ev);
	}
	vp_log_info(LOGMOD, "lookup", "srv=%s number=%s claimants=%zu rc=%d", s->conf.name, number, *n, rc);
	return rc;
}

typedef struct attach_ctx {
	vsrv_t *s;
	vp_id_t contact;
} attach_ctx_t;

static int attach_connect(void *arg, int *fd)
{
	attach_ctx_t *a = arg;
	return a->s->dht.app_attach(a->s->dht.ctx, &a->contact, a->s->conf.attach_timeout_ms, fd);
}

static int validate_cb(void *arg, const pvp_claimant_t *c, const pvp_vcr_t *r, const uint8_t *prev,
                       size_t prev_len, pvp_validation_t *out)
{
	vsrv_t *s = arg;
	attach_ctx_t a = { .s = s };
	vsrv_event_t ev = { .kind = VSRV_EV_VALIDATION, .number = r->called, .claimant = c->id };
	int rc = vp_id_from_hex(c->addr, &a.contact);
	if (!rc)
		rc = pvp_client_validate(s->cli, c->id, r, c->methods, attach_connect, &a, prev, prev_len, out);
	pthread_mutex_lock(&s->mu);
	if (!rc)
		s->st.validations_ok++;
	else if (rc == VP_EAUTH || rc == VP_EPERM)
		s->st.validations_failed++;
	else
		s->st.validations_unreachable++;
	pthread_mutex_unlock(&s->mu);
	if (!rc)
		vp_log_info(LOGMOD, "validation", "srv=%s number=%s claimant=%s status=%u reason=%u handshakes=%u",
		            s->conf.name, r->called, c->id, out->resp.status, out->resp.reason, out->handshakes);
	else
		vp_log_info(LOGMOD, "validation", "srv=%s number=%s claimant=%s err=\"%s\" handshakes=%u", s->conf.name,
		            r->called, c->id, vp_strerror(rc), out->handshakes);
	ev.status = rc;
	ev.val = out;
	emit(s, &ev);
	return rc;
}

static void ticket_key(char *buf, size_t cap, const char *number, const char *claimant)
{
	snprintf(buf, cap, "%s|%s", number, claimant);
}

static size_t prev_ticket_cb(void *arg, const char *number, const char *claimant, uint8_t *buf, size_t cap)
{
	vsrv_t *s = arg;
	char key[VP_E164_BUFLEN + PVP_CLAIMANT_ID_MAX + 2];
	ment_t *e;
	size_t n = 0;
	ticket_key(key, sizeof(key), number, claimant);
	pthread_mutex_lock(&s->mu);
	if ((e = smap_get(&s->tickets, key)) && e->blob_len <= cap) {
		memcpy(buf, e->blob, e->blob_len);
		n = e->blob_len;
	}
	pthread_mutex_unlock(&s->mu);
	return n;
}

typedef struct notify_op {
	vsrv_t *s;
	vap_route_t route;
} notify_op_t;

static void notify_post(vap_server_t *vap, void *arg)
{
	notify_op_t *o = arg;
	vsrv_event_t ev = { .kind = VSRV_EV_NOTIFY, .number = o->route.number };
	ev.n_notified = vap_server_notify(vap, &o->route);
	if (ev.n_notified > 0)
		stat_add(o->s, &o->s->st.notified, (uint64_t)ev.n_notified);
	vp_log_info(LOGMOD, "notify", "srv=%s number=%s vservice=%u subscribers=%d", o->s->conf.name, o->route.number,
	            o->route.vservice_id, ev.n_notified);
	emit(o->s, &ev);
	free(o);
}

static void route_cb(void *arg, const pvp_route_t *r)
{
	vsrv_t *s = arg;
	char key[VP_E164_BUFLEN + PVP_CLAIMANT_ID_MAX + 2];
	vsrv_event_t ev = { .kind = VSRV_EV_ROUTE, .number = r->number, .claimant = r->claimant->id, .route = r };
	uint64_t now_s = vp_clock_now_ms(s->clock) / 1000;
	notify_op_t *o = NULL;
	ment_t *e;
	ticket_key(key, sizeof(key), r->number, r->claimant->id);
	pthread_mutex_lock(&s->mu);
	if ((e = smap_put(&s->tickets, key))) {
		uint8_t *b = malloc(r->resp->ticket_len ? r->resp->ticket_len : 1);
		if (b) {
			memcpy(b, r->resp->ticket, r->resp->ticket_len);
			free(e->blob);
			e->blob = b;
			e->blob_len = r->resp->ticket_len;
			e->until_ms = (uint64_t)r->resp->expires * 1000 + 1;
		}
	}
	if (r->resp->status == PVP_ST_ROUTES) {
		s->st.routes++;
		if ((o = calloc(1, sizeof(*o)))) {
			ment_t *u = smap_get(&s->uploads, r->number);
			o->s = s;
			snprintf(o->route.number, sizeof(o->route.number), "%s", r->number);
			o->route.vservice_id = u ? u->u : 1;
			o->route.expires = r->resp->expires > now_s ? (uint32_t)(r->resp->expires - now_s) : 0;
			for (size_t i = 0; i < r->resp->nuris && i < VAP_MAX_URIS; i++)
				snprintf(o->route.uris[o->route.n_uris++], VAP_MAX_URI, "%s", r->resp->uris[i]);
			o->route.ticket_len = r->resp->ticket_len <= VAP_MAX_TICKET ? r->resp->ticket_len : 0;
			memcpy(o->route.ticket, r->resp->ticket, o->route.ticket_len);
		}
	} else {
		s->st.pending++;
	}
	pthread_mutex_unlock(&s->mu);
	vp_log_info(LOGMOD, "route", "srv=%s number=%s claimant=%s status=%s uri=%s entropy_cbits=%u threshold_cbits=%u",
	            s->conf.name, r->number, r->claimant->id, r->resp->status == PVP_ST_ROUTES ? "routes" : "pending",
	            r->resp->nuris ? r->resp->uris[0] : "-", r->resp->entropy_cbits, r->resp->threshold_cbits);
	emit(s, &ev);
	if (o && vap_server_post(s->vap, notify_post, o)) {
		vp_log_error(LOGMOD, "notify_lost", "srv=%s number=%s", s->conf.name, r->number);
		free(o);
	}
}

void vsrv_maintenance(vsrv_t *s)
{
	uint64_t now = vp_clock_now_ms(s->clock);
	size_t purged = 0, uploads, tickets;
	int rc = pvp_vcr_store_purge(s->store, &purged);
	pthread_mutex_lock(&s->mu);
	s->st.vcr_purged += purged;
	uploads = smap_expire(&s->uploads, now);
	tickets = smap_expire(&s->tickets, now);
	pthread_mutex_unlock(&s->mu);
	if (rc || purged || uploads || tickets)
		vp_log_info(LOGMOD, "maintenance", "srv=%s vcrs_purged=%zu uploads_forgotten=%zu tickets_expired=%zu rc=%d",
		            s->conf.name, purged, uploads, tickets, rc);
}

static void *validation_thread(void *arg)
{
	vsrv_t *s = arg;
	vqueue_t local = { 0 };
	uint64_t next_maint = vp_time_mono_ns() / 1000000 + MAINT_EVERY_MS;
	while (!stopping(s)) {
		if (vp_time_mono_ns() / 1000000 >= next_maint) {
			vsrv_maintenance(s);
			next_maint = vp_time_mono_ns() / 1000000 + MAINT_EVERY_MS;
		}
		uint64_t due, now;
		pvp_sched_stats_t ss;
		struct timespec dl;
		long wait_ms;
		pthread_mutex_lock(&s->mu);
		if (s->queue.n) {
			vqueue_t t = s->queue;
			s->queue = local;
			local = t;
		}
		pthread_mutex_unlock(&s->mu);
		for (size_t i = 0; i < local.n; i++) {
			int rc = pvp_sched_add(s->sched, &local.v[i]);
			if (rc)
				vp_log_warn(LOGMOD, "sched_add", "srv=%s called=%s err=\"%s\"", s->conf.name, local.v[i].called,
				            vp_strerror(rc));
		}
		local.n = 0;
		pvp_sched_run(s->sched, 8, NULL);
		pvp_sched_stats(s->sched, &ss);
		pthread_mutex_lock(&s->mu);
		s->st.sched_queued = pvp_sched_pending(s->sched);
		s->st.sched_scheduled = ss.scheduled;
		s->st.sched_no_claimant = ss.no_claimant;
		s->st.sched_dropped = ss.dropped;
		due = pvp_sched_next_due_ms(s->sched);
		now = vp_clock_now_ms(s->clock);
		/* Wake at the next due job, on new records, or every 100 ms (injected clocks move on their own). */
		wait_ms = due <= now ? 0 : (due - now > 100 ? 100 : (long)(due - now));
		if (wait_ms > 0 && !s->queue.n && !stopping(s)) {
			clock_gettime(CLOCK_REALTIME, &dl);
			dl.tv_nsec += wait_ms * 1000000L;
			if (dl.tv_nsec >= 1000000000L) {
				dl.tv_sec++;
				dl.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&s->cv, &s->mu, &dl);
		}
		pthread_mutex_unlock(&s->mu);
	}
	free(local.v);
	return NULL;
}

static void *vap_thread(void *arg)
{
	vsrv_t *s = arg;
	vap_server_run(s->vap);
	return NULL;
}

/* ---- lifecycle ----------------------------------------------------------------- */

static int listen_tcp(const char *bind_addr, uint16_t port, int *fd_out, uint16_t *port_out)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, one = 1;
	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, bind_addr, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		((struct sockaddr_in *)&ss)->sin_family = AF_INET;
		((struct sockaddr_in *)&ss)->sin_port = htons(port);
		len = sizeof(struct sockaddr_in);
	} else if (inet_pton(AF_INET6, bind_addr, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		((struct sockaddr_in6 *)&ss)->sin6_family = AF_INET6;
		((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);
		len = sizeof(struct sockaddr_in6);
	} else {
		return VP_ECONFIG;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return VP_EIO;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) || listen(fd, 128) || getsockname(fd, (struct sockaddr *)&ss, &len)) {
		close(fd);
		return VP_EIO;
	}
	*port_out = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
	                                          : ((struct sockaddr_in6 *)&ss)->sin6_port);
	*fd_out = fd;
	return 0;
}

static int provision_agents(vsrv_t *s, const char *list)
{
	char buf[sizeof(s->conf.agents)], *save = NULL, *tok;
	int rc = 0;
	snprintf(buf, sizeof(buf), "%s", list);
	for (tok = strtok_r(buf, ",", &save); tok && !rc; tok = strtok_r(NULL, ",", &save)) {
		char *colon;
		while (*tok == ' ' || *tok == '\t')
			tok++;
		for (char *end = tok + strlen(tok); end > tok && (end[-1] == ' ' || end[-1] == '\t');)
			*--end = '\0';
		if (!*tok)
			continue;
		if (!(colon = strchr(tok, ':')) || colon == tok || !colon[1]) {
			vp_log_error(LOGMOD, "agents", "srv=%s msg=\"[vap] agents: expected name:password\"", s->conf.name);
			return VP_ECONFIG;
		}
		*colon = '\0';
		rc = vap_server_add_agent(s->vap, tok, colon + 1);
	}
	return rc;
}

int vsrv_new(const vsrv_conf_t *conf, const vsrv_dht_t *dht, const vp_clock_t *clock, vsrv_event_fn ev,
             void *ev_arg, vsrv_t **out)
{
	vsrv_t *s;
	vap_server_conf_t vc;
	vap_hooks_t hooks;
	pvp_vcr_store_conf_t stc;
	pvp_policy_conf_t pc;
	pvp_server_conf_t psc;
	pvp_client_conf_t cc;
	pvp_ledger_conf_t lc;
	pvp_sched_conf_t sc;
	int rc;

	if (!conf || !dht || !dht->store || !dht->fetch || !dht->app_attach || !out || !conf->vcr_dir[0] ||
	    !conf->domain[0] || conf->pvp_workers < 1 || conf->pvp_workers > VSRV_MAX_WORKERS)
		return VP_EINVAL;
	if (!(s = calloc(1, sizeof(*s))))
		return VP_ENOMEM;
	s->conf = *conf;
	s->dht = *dht;
	s->clock = clock;
	s->ev = ev;
	s->ev_arg = ev_arg;
	s->pvp_lfd = -1;
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);

	if (conf->ticket_keys[0]) {
		if ((rc = pvp_ticket_keys_load(conf->ticket_keys, &s->keys)))
			goto fail;
	} else {
		s->keys.cur.epoch = 1;
		s->keys.cur.len = 32;
		if (RAND_bytes(s->keys.cur.key, 32) != 1) {
			rc = VP_ECRYPTO;
			goto fail;
		}
	}
	memset(&stc, 0, sizeof(stc));
	stc.path = conf->vcr_dir;
	stc.clock = clock;
	if ((rc = pvp_vcr_store_open(&stc, &s->store)))
		goto fail;
	memset(&pc, 0, sizeof(pc));
	pc.mode = conf->whitelist_mode ? PVP_LIST_WHITE : PVP_LIST_BLACK;
	pc.min_entropy_cbits = conf->min_entropy_cbits;
	pc.peer_fail_limit = conf->peer_fail_limit;
	pc.number_fail_limit = conf->number_fail_limit;
	if ((rc = pvp_policy_new(&pc, &s->policy)))
		goto fail;
	memset(&psc, 0, sizeof(psc));
	psc.store = s->store;
	psc.keys = &s->keys;
	psc.policy = s->policy;
	psc.routes = routes_cb;
	psc.routes_arg = s;
	psc.group_bits = conf->group_bits;
	psc.ticket_lifetime_s = conf->ticket_lifetime_s;
	psc.io_timeout_ms = conf->io_timeout_ms;
	psc.clock = clock;
	if ((rc = pvp_server_new(&psc, &s->pvp)))
		goto fail;
	memset(&lc, 0, sizeof(lc));
	lc.store = s->store;
	lc.budget = conf->guess_budget;
	if ((rc = pvp_ledger_new(&lc, &s->ledger)))
		goto fail;
	memset(&cc, 0, sizeof(cc));
	cc.domain = s->conf.domain;
	cc.io_timeout_ms = conf->io_timeout_ms;
	cc.clock = clock;
	cc.ledger = s->ledger;
	cc.min_entropy_cbits = conf->orig_min_entropy_cbits;
	if ((rc = pvp_client_new(&cc, &s->cli)))
		goto fail;
	memset(&sc, 0, sizeof(sc));
	/* 0 means "default" to the scheduler: the shortest real delay we can ask for is 1 s. */
	sc.delay_min_s = conf->delay_min_s ? conf->delay_min_s : 1;
	sc.delay_max_s = conf->delay_max_s ? conf->delay_max_s : 1;
	sc.backoff_s = conf->backoff_s;
	sc.max_attempts = conf->max_attempts;
	sc.rng_seed = conf->rng_seed;
	sc.lookup = lookup_cb;
	sc.lookup_arg = s;
	sc.validate = validate_cb;
	sc.validate_arg = s;
	sc.prev_ticket = prev_ticket_cb;
	sc.prev_ticket_arg = s;
	sc.route = route_cb;
	sc.route_arg = s;
	sc.clock = clock;
	if ((rc = pvp_sched_new(&sc, &s->sched)))
		goto fail;
	if ((rc = listen_tcp(conf->pvp_bind, conf->pvp_port, &s->pvp_lfd, &s->pvp_port)))
		goto fail;
	{
		pvp_gate_conf_t gc = { .lfd = s->pvp_lfd };
		if ((rc = pvp_gate_new(&gc, &s->gate)))
			goto fail;
	}

	vap_server_conf_default(&vc);
	vc.bind_addr = s->conf.vap_bind;
	vc.port = conf->vap_port;
	vc.realm = s->conf.realm;
	hooks.ctx = s;
	hooks.store = hook_store;
	hooks.upload_vcr = hook_upload_vcr;
	hooks.publish_vservice = hook_vservice;
	if ((rc = vap_server_create(&vc, &hooks, &s->vap)))
		goto fail;
	if ((rc = provision_agents(s, conf->agents)))
		goto fail;
	vp_log_info(LOGMOD, "created", "srv=%s domain=%s vap_port=%u pvp_port=%u vcr_dir=%s", s->conf.name,
	            s->conf.domain, vap_server_port(s->vap), s->pvp_port, s->conf.vcr_dir);
	*out = s;
	return 0;
fail:
	vp_log_error(LOGMOD, "create_failed", "srv=%s err=\"%s\"", conf->name, vp_strerror(rc));
	vsrv_free(s);
	return rc;
}

int vsrv_add_agent(vsrv_t *s, const char *username, const char *password)
{
	if (s->vap_started)
		return VP_ESTATE;
	return vap_server_add_agent(s->vap, username, password);
}

int vsrv_start(vsrv_t *s)
{
	if (s->vap_started)
		return VP_ESTATE;
	__atomic_store_n(&s->stop, 0, __ATOMIC_RELEASE);
	if (pthread_create(&s->vap_th, NULL, vap_thread, s))
		return VP_ENOMEM;
	s->vap_started = true;
	if (pthread_create(&s->val_th, NULL, validation_thread, s))
		goto fail;
	s->val_started = true;
	for (; s->n_pvp_th < s->conf.pvp_workers; s->n_pvp_th++)
		if (pthread_create(&s->pvp_th[s->n_pvp_th], NULL, pvp_worker, s))
			goto fail;
	return 0;
fail:
	vsrv_stop(s);
	return VP_ENOMEM;
}

void vsrv_stop(vsrv_t *s)
{
	if (!s)
		return;
	__atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
	pthread_mutex_lock(&s->mu);
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	for (unsigned i = 0; i < s->n_pvp_th; i++)
		pthread_join(s->pvp_th[i], NULL);
	s->n_pvp_th = 0;
	if (s->val_started)
		pthread_join(s->val_th, NULL);
	s->val_started = false;
	if (s->vap_started) {
		vap_server_stop(s->vap);
		pthread_join(s->vap_th, NULL);
		/* Completions posted after the loop ended still run their cleanup once. */
		vap_server_run_once(s->vap, 0);
	}
	s->vap_started = false;
}

void vsrv_free(vsrv_t *s)
{
	if (!s)
		return;
	vsrv_stop(s);
	vap_server_destroy(s->vap);
	pvp_gate_free(s->gate);
	if (s->pvp_lfd >= 0)
		close(s->pvp_lfd);
	pvp_sched_free(s->sched);
	pvp_client_free(s->cli);
	pvp_ledger_free(s->ledger);
	pvp_server_free(s->pvp);
	pvp_policy_free(s->policy);
	pvp_vcr_store_close(s->store);
	smap_clear(&s->published);
	smap_clear(&s->uploads);
	smap_clear(&s->agent_vs);
	smap_clear(&s->tickets);
	free(s->queue.v);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	OPENSSL_cleanse(&s->keys, sizeof(s->keys));
	free(s);
}

uint16_t vsrv_vap_port(const vsrv_t *s)
{
	return vap_server_port(s->vap);
}

uint16_t vsrv_pvp_port(const vsrv_t *s)
{
	return s->pvp_port;
}

const vp_id_t *vsrv_node_id(const vsrv_t *s)
{
	return &s->conf.node_id;
}

const char *vsrv_name(const vsrv_t *s)
{
	return s->conf.name;
}

const char *vsrv_domain(const vsrv_t *s)
{
	return s->conf.domain;
}

const pvp_ticket_keys_t *vsrv_ticket_keys(const vsrv_t *s)
{
	return &s->keys;
}

void vsrv_get_stats(vsrv_t *s, vsrv_stats_t *out)
{
	pthread_mutex_lock(&s->mu);
	*out = s->st;
	pthread_mutex_unlock(&s->mu);
}
