/*
 * control/vipr_server.c - one carrier's ViPR server composed in-process (see header).
 */
#include "control/server/vipr_server.h"
#include "control/server/vcr_ingest.h"

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

#include "common/buf.h"
#include "common/errcode.h"
#include "common/log.h"
#include "common/net.h"

#define VSRV_MAX_WORKERS 16
#define VSRV_MAX_VSERVICES 64
#define MAP_BUCKETS 1024u
#define LOGMOD "vsrv"
#define UPLOAD_KEEP_MS (48ull * 3600 * 1000)  /* originating records' retention (pvp/vcr.h default) */
#define MAINT_EVERY_MS 60000ull               /* purge of records, uploads and expired tickets */
/* A terminating record may start this far in the future (clock offsets between carriers;
 * the call-record store's start tolerance, pvp/vcr.h).  Later ones would sort first among
 * the candidates of their selector and push the real record out (docs/protocol.md §5.2). */
#define TERM_FUTURE_TOLERANCE_MS 90000ull

/* ---- configuration -------------------------------------------------------------- */

static const char *const list_modes[] = { "black", "white", NULL };

/* Every option of the server, once: parsing, ranges, defaults, --help-config and the README come from here. */
static const vp_conf_opt_t vsrv_opts[] = {
	{ .section = "server", .key = "name", .type = VP_CONF_STR, .def = "viprd",
	  .doc = "short label of this server in logs", VP_CONF_AT(vsrv_conf_t, name) },
	{ .section = "server", .key = "domain", .type = VP_CONF_STR, .def = "carrier.example",
	  .doc = "our domain: sent in ValExchange, bound into tickets (normalised to lower case)",
	  VP_CONF_AT(vsrv_conf_t, domain) },
	{ .section = "server", .key = "node_id", .type = VP_CONF_ID,
	  .doc = "our Node-ID; unset: SHA-1(domain), first 16 bytes", VP_CONF_AT(vsrv_conf_t, node_id) },
	{ .section = "vap", .key = "bind", .type = VP_CONF_STR, .def = "127.0.0.1",
	  .doc = "numeric address the call agents' VAP server listens on", VP_CONF_AT(vsrv_conf_t, vap_bind) },
	{ .section = "vap", .key = "port", .type = VP_CONF_U32, .min = 0, .max = 65535, .def = "5349",
	  .doc = "VAP port (VAP has no assigned port; 0 = any free port)", VP_CONF_AT(vsrv_conf_t, vap_port) },
	{ .section = "vap", .key = "realm", .type = VP_CONF_STR, .def = "vipr",
	  .doc = "realm of the agents' long-term credentials", VP_CONF_AT(vsrv_conf_t, realm) },
	{ .section = "vap", .key = "agents", .type = VP_CONF_STR, .flags = VP_CONF_F_SECRET,
	  .doc = "agents provisioned at start: name:password, name:password", VP_CONF_AT(vsrv_conf_t, agents) },
	{ .section = "vap", .key = "tenants", .type = VP_CONF_STR,
	  .doc = "agent:tenant, agent:tenant; an agent not listed is its own tenant (VServices belong to tenants)",
	  VP_CONF_AT(vsrv_conf_t, tenants) },
	{ .section = "vap", .key = "allow_plain_tcp", .type = VP_CONF_BOOL, .def = "no",
	  .doc = "VAP without TLS on a non-loopback address (exposes agent passwords to offline guessing)",
	  VP_CONF_AT(vsrv_conf_t, vap_allow_plain_tcp) },
	{ .section = "pvp", .key = "bind", .type = VP_CONF_STR, .def = "127.0.0.1",
	  .doc = "numeric address our PVP server listens on", VP_CONF_AT(vsrv_conf_t, pvp_bind) },
	{ .section = "pvp", .key = "port", .type = VP_CONF_U32, .min = 0, .max = 65535, .def = "0",
	  .doc = "PVP port (0 = any free port)", VP_CONF_AT(vsrv_conf_t, pvp_port) },
	{ .section = "pvp", .key = "workers", .type = VP_CONF_U32, .min = 1, .max = VSRV_MAX_WORKERS, .def = "2",
	  .unit = "threads", .doc = "PVP server threads (each handshake costs ~1.3 ms of modexp)",
	  VP_CONF_AT(vsrv_conf_t, pvp_workers) },
	{ .section = "pvp", .key = "vcr_workers", .type = VP_CONF_U32, .min = 0, .max = 64, .def = "0",
	  .unit = "threads", .doc = "threads deriving terminating call records' selectors (PBKDF2, ~1.5 ms each); 0 = one per core",
	  VP_CONF_AT(vsrv_conf_t, vcr_workers) },
	{ .section = "pvp", .key = "group_bits", .type = VP_CONF_U32, .min = PVP_GROUP_MIN, .max = 8192,
	  .def = "2048", .unit = "bits", .doc = "SRP group; smaller groups are refused",
	  VP_CONF_AT(vsrv_conf_t, group_bits) },
	{ .section = "pvp", .key = "ticket_lifetime", .type = VP_CONF_DUR_S, .min = 60000,
	  .max = 365ull * 86400 * 1000, .def = "30d", .doc = "validity of the tickets we issue",
	  VP_CONF_AT(vsrv_conf_t, ticket_lifetime_s) },
	{ .section = "pvp", .key = "io_timeout", .type = VP_CONF_DUR_MS, .min = 100, .max = 600000, .def = "10s",
	  .doc = "whole-connection deadline of one PVP exchange", VP_CONF_AT(vsrv_conf_t, io_timeout_ms) },
	{ .section = "pvp", .key = "min_entropy_cbits", .type = VP_CONF_U32, .min = 1, .max = 65535,
	  .def = "1600", .unit = "centibits", .doc = "equivalent entropy required before routes are given or accepted",
	  VP_CONF_AT(vsrv_conf_t, min_entropy_cbits) },
	{ .section = "pvp", .key = "list_mode", .type = VP_CONF_ENUM, .def = "black", .choices = list_modes,
	  .doc = "black: refuse listed domains; white: refuse unlisted ones", VP_CONF_AT(vsrv_conf_t, list_mode) },
	{ .section = "pvp", .key = "peer_fail_limit", .type = VP_CONF_U32, .min = 1, .max = 1000000, .def = "30",
	  .unit = "per hour", .doc = "failed handshakes allowed per peer", VP_CONF_AT(vsrv_conf_t, peer_fail_limit) },
	{ .section = "pvp", .key = "number_fail_limit", .type = VP_CONF_U32, .min = 1, .max = 1000000, .def = "10",
	  .unit = "per hour", .doc = "failed handshakes allowed per number (each is an online guess)",
	  VP_CONF_AT(vsrv_conf_t, number_fail_limit) },
	{ .section = "pvp", .key = "orig_min_entropy_cbits", .type = VP_CONF_U32, .min = 1, .max = 65535, .def = "1600",
	  .unit = "centibits",
	  .doc = "our own threshold, on our own call record, before routes a claimant grants are accepted (protocol §5.9)",
	  VP_CONF_AT(vsrv_conf_t, orig_min_entropy_cbits) },
	{ .section = "pvp", .key = "guess_budget", .type = VP_CONF_U32, .min = 1, .max = 1000000, .def = "64",
	  .unit = "per day", .doc = "failed handshakes we offer one claimant for one number (kept across restarts)",
	  VP_CONF_AT(vsrv_conf_t, guess_budget) },
	{ .section = "pvp", .key = "vcr_dir", .type = VP_CONF_STR, .def = "./vcr",
	  .doc = "call-record store (RocksDB directory)", VP_CONF_AT(vsrv_conf_t, vcr_dir) },
	{ .section = "pvp", .key = "ticket_keys", .type = VP_CONF_STR,
	  .doc = "ticket key file (vipr-ticket genkey); unset: a random key per start",
	  VP_CONF_AT(vsrv_conf_t, ticket_keys) },
	{ .section = "scheduler", .key = "delay_min", .type = VP_CONF_DUR_S, .min = 0, .max = 7ull * 86400 * 1000,
	  .def = "5m", .doc = "shortest delay between a call and its validation", VP_CONF_AT(vsrv_conf_t, delay_min_s) },
	{ .section = "scheduler", .key = "delay_max", .type = VP_CONF_DUR_S, .min = 0, .max = 7ull * 86400 * 1000,
	  .def = "2h", .doc = "longest delay (at least delay_min)", VP_CONF_AT(vsrv_conf_t, delay_max_s) },
	{ .section = "scheduler", .key = "backoff", .type = VP_CONF_DUR_S, .min = 1000, .max = 86400000,
	  .def = "60s", .doc = "wait before retrying a validation that failed in transit",
	  VP_CONF_AT(vsrv_conf_t, backoff_s) },
	{ .section = "scheduler", .key = "max_attempts", .type = VP_CONF_U32, .min = 1, .max = 100, .def = "4",
	  .doc = "attempts per validation", VP_CONF_AT(vsrv_conf_t, max_attempts) },
	{ .section = "scheduler", .key = "attach_timeout", .type = VP_CONF_DUR_MS, .min = 10, .max = 600000,
	  .def = "5s", .doc = "AppAttach to a claimant", VP_CONF_AT(vsrv_conf_t, attach_timeout_ms) },
	{ .section = "scheduler", .key = "fetch_timeout", .type = VP_CONF_DUR_MS, .min = 10, .max = 600000,
	  .def = "10s", .doc = "the 3-copy lookup of a number", VP_CONF_AT(vsrv_conf_t, fetch_timeout_ms) },
	{ .section = "scheduler", .key = "seed", .type = VP_CONF_U64, .def = "0",
	  .doc = "validation delays' random seed; 0 = from the OS", VP_CONF_AT(vsrv_conf_t, rng_seed) },
	{ .section = "scheduler", .key = "max_jobs", .type = VP_CONF_U32, .min = 1, .max = 100000000,
	  .def = "1000000", .unit = "records", .doc = "originating records waiting for validation; an upload beyond is refused",
	  VP_CONF_AT(vsrv_conf_t, max_jobs) },
};

const vp_conf_opt_t *vsrv_conf_schema(size_t *n)
{
	*n = VP_CONF_NOPTS(vsrv_opts);
	return vsrv_opts;
}

/* What the rows cannot say: the domain is a DNS name (normalised), the Node-ID follows it unless set, and
 * delay_max >= delay_min.  \p vc: the file applied (NULL for the defaults). */
static int conf_finish(vsrv_conf_t *c, const vp_conf_t *vc, vp_conf_err_t *e)
{
	char dom[PVP_DOMAIN_MAX + 1];
	if (pvp_domain_normalize(c->domain, dom)) {
		e->line = 0;
		snprintf(e->msg, sizeof(e->msg), "[server] domain: '%s' is not a DNS name", c->domain);
		return VP_ECONFIG;
	}
	memcpy(c->domain, dom, sizeof(dom));
	if (!vc || (vp_conf_get(vc, "server", "domain") && !vp_conf_get(vc, "server", "node_id")))
		c->node_id = vp_id_from_name(c->domain, strlen(c->domain));
	if (c->delay_max_s < c->delay_min_s) {
		e->line = 0;
		snprintf(e->msg, sizeof(e->msg), "[scheduler] delay_max is below delay_min");
		return VP_ECONFIG;
	}
	return 0;
}

static int conf_apply(vsrv_conf_t *c, const vp_conf_t *vc, vp_conf_err_t *e)
{
	int rc = vp_conf_schema_apply(vsrv_opts, VP_CONF_NOPTS(vsrv_opts), vc, c, e);
	return rc ? rc : conf_finish(c, vc, e);
}

int vsrv_conf_parse(vsrv_conf_t *c, const char *text, size_t len, vp_conf_err_t *e)
{
	vp_conf_t *vc;
	int rc = vp_conf_parse(text, len, &vc, e);
	if (rc)
		return rc;
	rc = conf_apply(c, vc, e);
	vp_conf_free(vc);
	return rc;
}

int vsrv_conf_load(vsrv_conf_t *c, const char *path, vp_conf_err_t *e)
{
	vp_conf_t *vc;
	int rc = vp_conf_load(path, &vc, e);
	if (rc)
		return rc;
	rc = conf_apply(c, vc, e);
	vp_conf_free(vc);
	return rc;
}

void vsrv_conf_default(vsrv_conf_t *c)
{
	vp_conf_err_t e;
	memset(c, 0, sizeof(*c));
	/* A failure here is a table bug, which test_conf_schema_rows catches. */
	if (vp_conf_schema_defaults(vsrv_opts, VP_CONF_NOPTS(vsrv_opts), c, &e) || conf_finish(c, NULL, &e))
		vp_log_error(LOGMOD, "default_conf", "msg=\"%s\"", e.msg);
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

static size_t smap_count(const smap_t *m)
{
	size_t n = 0;
	for (size_t i = 0; i < MAP_BUCKETS; i++)
		for (const ment_t *e = m->b[i]; e; e = e->next)
			n++;
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
	vsrv_ingest_t *ingest;          /* terminating records: selectors on workers, group-committed (vsrv_start..stop) */
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
	smap_t rec_vs;                  /* originating record id (decimal) -> uploader's VService id */
	smap_t agent_vs;                /* agent -> VService id it last published */
	smap_t tenant_of;               /* agent -> tenant (blob, NUL-terminated); absent: the agent itself */
	smap_t vs_owner;                /* VService id (decimal) -> owning tenant (blob) */
	uint64_t cur_rec_id;            /* validation thread: the record being validated (validate_cb -> route_cb) */
	smap_t tickets;                 /* number|claimant -> last ticket */
	vservice_t vs[VSRV_MAX_VSERVICES];
	vsrv_stats_t st;
	uint64_t admitted;              /* originating records queued or in the scheduler (upper bound) */
	int up_fd;                      /* <vcr_dir>/viprd-uploads (RocksDB ignores foreign files): record id -> VService, appended before the ack */
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

/* ---- tenants --------------------------------------------------------------------- */

/* The tenant of \p agent (under s->mu): its [vap] tenants entry, else the agent itself. */
static const char *tenant_locked(vsrv_t *s, const char *agent)
{
	ment_t *e = smap_get(&s->tenant_of, agent);
	return e && e->blob ? (const char *)e->blob : agent;
}

/*
 * May \p agent act on VService \p id?  The first tenant to use a VService (publish
 * it, publish numbers under it, subscribe to it) owns it; every other tenant
 * gets VP_EPERM (VAP 403).  VP_ENOMEM if the claim cannot be recorded.
 */
static int vs_access(vsrv_t *s, const char *agent, uint32_t id)
{
	char key[16];
	const char *t;
	ment_t *e;
	int rc = 0;
	snprintf(key, sizeof(key), "%u", id);
	pthread_mutex_lock(&s->mu);
	t = tenant_locked(s, agent);
	if ((e = smap_get(&s->vs_owner, key))) {
		if (strcmp((const char *)e->blob, t))
			rc = VP_EPERM;
	} else if (!(e = smap_put(&s->vs_owner, key)) || !(e->blob = (uint8_t *)strdup(t))) {
		if (e)
			smap_del(&s->vs_owner, key);
		rc = VP_ENOMEM;
	} else {
		e->blob_len = strlen(t) + 1;
	}
	pthread_mutex_unlock(&s->mu);
	if (rc == VP_EPERM)
		vp_log_warn(LOGMOD, "vservice_refused", "srv=%s agent=%s vservice=%u", s->conf.name, agent, id);
	return rc;
}

static int hook_vservice_access(void *ctx, const char *agent, uint32_t id)
{
	return vs_access(ctx, agent, id);
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

/*
 * What the agents published survives a restart (docs/protocol.md §8.6): a call
 * validated after the server came back must get the same URIs.  Auxiliary
 * records of the call-record store: 'G' 'P' number -> VService id (u32), one
 * per number whose store completed (removed on withdrawal); 'G' 'V' VService
 * id (u32) -> version 1, URI count (u8), each URI (u16 length, bytes).
 */
#define PUB_KEY_TAG 'P'
#define VS_KEY_TAG 'V'
#define VS_VERSION 1

static void pub_keep(vsrv_t *s, const char *number, uint8_t op, uint32_t vservice_id)
{
	uint8_t key[2 + VP_E164_BUFLEN], val[4] = { (uint8_t)(vservice_id >> 24), (uint8_t)(vservice_id >> 16),
		                                        (uint8_t)(vservice_id >> 8), (uint8_t)vservice_id };
	size_t nl = strnlen(number, VP_E164_BUFLEN - 1);
	int rc;
	key[0] = PVP_VCR_AUX_PREFIX;
	key[1] = PUB_KEY_TAG;
	memcpy(key + 2, number, nl);
	rc = op == VAP_OP_WITHDRAW ? pvp_vcr_store_aux_del(s->store, key, 2 + nl)
	                           : pvp_vcr_store_aux_put(s->store, key, 2 + nl, val, sizeof(val));
	if (rc)
		vp_log_error(LOGMOD, "published_not_kept", "srv=%s number=%s error=%s", s->conf.name, number,
		             vp_strerror(rc));
}

static void vs_keep(vsrv_t *s, const vservice_t *v, bool withdraw)
{
	uint8_t key[6] = { PVP_VCR_AUX_PREFIX, VS_KEY_TAG, (uint8_t)(v->id >> 24), (uint8_t)(v->id >> 16),
		           (uint8_t)(v->id >> 8), (uint8_t)v->id };
	uint8_t val[2 + VAP_MAX_URIS * (2 + VAP_MAX_URI)];
	vp_wr_t wr;
	int rc;
	vp_wr_init(&wr, val, sizeof(val));
	vp_wr_u8(&wr, VS_VERSION);
	vp_wr_u8(&wr, (uint8_t)v->n_uris);
	for (size_t i = 0; i < v->n_uris; i++)
		vp_wr_vec_bytes(&wr, 2, v->uris[i], strlen(v->uris[i]));
	rc = withdraw ? pvp_vcr_store_aux_del(s->store, key, sizeof(key))
	              : wr.err ? wr.err : pvp_vcr_store_aux_put(s->store, key, sizeof(key), val, vp_wr_len(&wr));
	if (rc)
		vp_log_error(LOGMOD, "vservice_not_kept", "srv=%s id=%u error=%s", s->conf.name, v->id, vp_strerror(rc));
}

static int pub_load_one(void *arg, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen)
{
	vsrv_t *s = arg;
	char number[VP_E164_BUFLEN];
	ment_t *e;
	if (klen < 3 || klen - 2 >= sizeof(number) || vlen != 4)
		return 0;
	memcpy(number, key + 2, klen - 2);
	number[klen - 2] = '\0';
	if (!(e = smap_put(&s->published, number)))
		return 1;
	e->u = (uint32_t)val[0] << 24 | (uint32_t)val[1] << 16 | (uint32_t)val[2] << 8 | val[3];
	return 0;
}

static int vs_load_one(void *arg, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen)
{
	vsrv_t *s = arg;
	vservice_t v;
	vp_rd_t rd;
	uint8_t ver = 0, n = 0;
	size_t i;
	if (klen != 6)
		return 0;
	memset(&v, 0, sizeof(v));
	v.used = true;
	v.id = (uint32_t)key[2] << 24 | (uint32_t)key[3] << 16 | (uint32_t)key[4] << 8 | key[5];
	vp_rd_init(&rd, val, vlen);
	vp_rd_u8(&rd, &ver);
	vp_rd_u8(&rd, &n);
	if (rd.err || ver != VS_VERSION || n > VAP_MAX_URIS)
		return 0;
	for (i = 0; i < n; i++) {
		uint16_t l = 0;
		const uint8_t *p = NULL;
		vp_rd_u16(&rd, &l);
		if (vp_rd_bytes(&rd, l, &p) || l >= VAP_MAX_URI)
			return 0;
		memcpy(v.uris[i], p, l);
	}
	v.n_uris = n;
	for (i = 0; i < VSRV_MAX_VSERVICES && s->vs[i].used; i++)
		;
	if (i < VSRV_MAX_VSERVICES)
		s->vs[i] = v;
	return 0;
}

/* Start-up: the VServices and the numbers published before the restart. */
static int restore_published(vsrv_t *s)
{
	uint8_t pp[2] = { PVP_VCR_AUX_PREFIX, PUB_KEY_TAG }, vp[2] = { PVP_VCR_AUX_PREFIX, VS_KEY_TAG };
	size_t nvs = 0;
	int rc = pvp_vcr_store_aux_scan(s->store, vp, sizeof(vp), vs_load_one, s);
	if (!rc)
		rc = pvp_vcr_store_aux_scan(s->store, pp, sizeof(pp), pub_load_one, s);
	for (size_t i = 0; i < VSRV_MAX_VSERVICES; i++)
		nvs += s->vs[i].used;
	vp_log_info(LOGMOD, "restored", "srv=%s vservices=%zu numbers=%zu rc=%d", s->conf.name, nvs,
	            smap_count(&s->published), rc);
	return rc;
}

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
		pub_keep(s, o->number, o->op, o->vservice_id);
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

/* Remember which VService an originating record belongs to (under s->mu). */
static int rec_vs_put(vsrv_t *s, uint64_t id, uint32_t vsid, uint64_t stop_ms)
{
	char key[24];
	ment_t *u;
	snprintf(key, sizeof(key), "%llu", (unsigned long long)id);
	if (!(u = smap_put(&s->rec_vs, key)))
		return VP_ENOMEM;
	u->u = vsid;
	u->until_ms = stop_ms + UPLOAD_KEEP_MS; /* as long as the record could be validated */
	return 0;
}

/*
 * Append (id, VService) to <vcr_dir>/viprd-uploads (under s->mu): 12 bytes, id and
 * VService big-endian.  Written before the record is acknowledged, so a restart
 * knows whose record it re-schedules.  The file is rewritten at start-up.
 */
static int upload_log_append(vsrv_t *s, uint64_t id, uint32_t vsid)
{
	uint8_t b[12];
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(id >> (56 - 8 * i));
	for (int i = 0; i < 4; i++)
		b[8 + i] = (uint8_t)(vsid >> (24 - 8 * i));
	if (write(s->up_fd, b, sizeof(b)) != (ssize_t)sizeof(b)) {
		vp_log_error(LOGMOD, "upload_log", "srv=%s err=\"%s\"", s->conf.name, strerror(errno));
		return VP_EIO;
	}
	return 0;
}

/* Room in the scheduler for one more originating record, or VP_EBUSY. */
static int admit(vsrv_t *s)
{
	int rc = 0;
	pthread_mutex_lock(&s->mu);
	if (s->admitted >= s->conf.max_jobs)
		rc = VP_EBUSY;
	pthread_mutex_unlock(&s->mu);
	return rc;
}

/* Queue \p r for the validation thread (under s->mu; the thread swaps the queue away). */
static int queue_push(vsrv_t *s, const pvp_vcr_t *r)
{
	if (s->queue.n == s->queue.cap) {
		size_t cap = s->queue.cap ? 2 * s->queue.cap : 64;
		pvp_vcr_t *nv = realloc(s->queue.v, cap * sizeof(*nv));
		if (!nv)
			return VP_ENOMEM;
		s->queue.v = nv;
		s->queue.cap = cap;
	}
	s->queue.v[s->queue.n++] = *r;
	s->admitted++;
	return 0;
}

static int hook_upload_vcr(void *ctx, const char *agent, const vap_vcr_t *v)
{
	vsrv_t *s = ctx;
	pvp_dir_t dir = v->direction == VAP_DIR_ORIGINATING ? PVP_DIR_ORIG : PVP_DIR_TERM;
	vsrv_event_t ev = { .kind = VSRV_EV_VCR };
	pvp_vcr_t r;
	int rc = pvp_vcr_make(&r, dir, v->called, v->caller, v->start_ms, v->stop_ms, NULL);
	if (!rc && dir == PVP_DIR_TERM && v->start_ms > vp_clock_now_ms(s->clock) + TERM_FUTURE_TOLERANCE_MS)
		rc = VP_EINVAL;
	/* An originating record the scheduler could not take is refused before it is
	 * stored and acknowledged (VAP hooks run on one thread: nothing admits in between). */
	if (!rc && dir == PVP_DIR_ORIG)
		rc = admit(s);
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
		/* The route this record yields goes to the uploader's VService only. */
		ment_t *a = smap_get(&s->agent_vs, agent);
		uint32_t vsid = a ? a->u : 1;
		if ((rc = rec_vs_put(s, r.id, vsid, r.stop_ms)) || (rc = upload_log_append(s, r.id, vsid)) ||
		    (rc = queue_push(s, &r))) {
			pthread_mutex_unlock(&s->mu);
			pvp_vcr_store_del(s->store, &r); /* not acknowledged: not kept either */
			stat_add(s, &s->st.vcr_rejected, 1);
			return rc;
		}
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

/*
 * Terminating records go to the ingest pool: their selectors (PBKDF2) are
 * derived on its workers and the record is acknowledged (vap_server_vcr_done)
 * only once drain_ingest sees it written.  Originating records cost no PBKDF2
 * and are kept synchronously, as before.
 */
static int hook_upload_vcr_start(void *ctx, const char *agent, const vap_vcr_t *v, void *token)
{
	vsrv_t *s = ctx;
	pvp_vcr_t r;
	int rc;
	if (v->direction == VAP_DIR_ORIGINATING) {
		if ((rc = hook_upload_vcr(ctx, agent, v)))
			return rc;
		vap_server_vcr_done(s->vap, token, 0);
		return 0;
	}
	rc = pvp_vcr_make(&r, PVP_DIR_TERM, v->called, v->caller, v->start_ms, v->stop_ms, NULL);
	if (!rc && v->start_ms > vp_clock_now_ms(s->clock) + TERM_FUTURE_TOLERANCE_MS)
		rc = VP_EINVAL;
	if (!rc)
		rc = vsrv_ingest_submit(s->ingest, &r, token);
	if (rc) {
		stat_add(s, &s->st.vcr_rejected, 1);
		vp_log_warn(LOGMOD, "vcr_rejected", "srv=%s agent=%s called=%s err=\"%s\"", s->conf.name, agent,
		            v->called, vp_strerror(rc));
	}
	return rc;
}

/* Acknowledge the terminating records the ingest pool has written (VAP thread). */
static void drain_ingest(vsrv_t *s)
{
	vsrv_ingest_done_t d[64];
	size_t n;
	while ((n = vsrv_ingest_drain(s->ingest, d, 64)) > 0) {
		uint64_t ok = 0;
		for (size_t i = 0; i < n; i++)
			ok += d[i].status == 0;
		/* Counted before any answer goes out, so an agent that saw its answer sees the count. */
		pthread_mutex_lock(&s->mu);
		s->st.vcr_term += ok;
		s->st.vcr_rejected += n - ok;
		pthread_mutex_unlock(&s->mu);
		for (size_t i = 0; i < n; i++) {
			vsrv_event_t ev = { .kind = VSRV_EV_VCR };
			if (d[i].status) {
				vp_log_warn(LOGMOD, "vcr_rejected", "srv=%s called=%s err=\"%s\"", s->conf.name,
				            d[i].rec.called, vp_strerror(d[i].status));
			} else {
				vp_log_debug(LOGMOD, "vcr", "srv=%s dir=term called=%s caller=%s start_ms=%llu id=%llu",
				             s->conf.name, d[i].rec.called, d[i].rec.caller[0] ? d[i].rec.caller : "-",
				             (unsigned long long)d[i].rec.start_ms, (unsigned long long)d[i].rec.id);
				ev.vcr = &d[i].rec;
				ev.number = d[i].rec.called;
				emit(s, &ev);
			}
			vap_server_vcr_done(s->vap, d[i].cookie, d[i].status);
		}
	}
}

static void drain_ingest_post(vap_server_t *vap, void *arg)
{
	(void)vap;
	drain_ingest(arg);
}

/* Ingest worker: records wait to be acknowledged; hand them to the VAP thread. */
static void ingest_wake(void *arg)
{
	vsrv_t *s = arg;
	if (vap_server_post(s->vap, drain_ingest_post, s))
		vp_log_error(LOGMOD, "ingest_wake_failed", "srv=%s", s->conf.name);
}

static int hook_vservice(void *ctx, const char *agent, const vap_vservice_t *vs)
{
	vsrv_t *s = ctx;
	vservice_t *slot = NULL;
	int rc = vs_access(s, agent, vs->id);
	if (rc)
		return rc;
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
		if (slot && slot->used && slot->id == vs->id) {
			slot->used = false;
			vs_keep(s, slot, true);
		}
	} else if (!slot) {
		rc = VP_ESPACE;
	} else {
		memset(slot, 0, sizeof(*slot));
		slot->used = true;
		slot->id = vs->id;
		for (size_t i = 0; i < vs->n_uris && i < VAP_MAX_URIS; i++)
			snprintf(slot->uris[slot->n_uris++], VAP_MAX_URI, "%s", vs->uris[i]);
		vs_keep(s, slot, false);
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
	/* One slot per claimant and per contact, taken before truncating to the claimants
	 * we validate: one party's many entries (VServices, Node-IDs of one certificate,
	 * up to the per-certificate limit) must not push the others out (docs/protocol.md §2.5). */
	for (size_t i = 0; !status && i < n && w->n < VSRV_REGS_MAX; i++) {
		bool dup = false;
		for (size_t k = 0; k < w->n && !dup; k++)
			dup = vp_id_eq(&w->regs[k].node, &regs[i].node) || vp_id_eq(&w->regs[k].contact, &regs[i].contact);
		if (!dup)
			w->regs[w->n++] = regs[i];
	}
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
	vp_deadline_t dl;
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
	dl = vp_deadline_in_ms(s->conf.fetch_timeout_ms);
	pthread_mutex_lock(&w->mu);
	while (!w->done && !stopping(s) && !vp_deadline_expired(&dl)) {
		/* Slices of 100 ms so that vsrv_stop() is not held up by a slow overlay. */
		struct timespec slice = vp_deadline_abstime(&dl, 100);
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
	return a->s->dht.app_attach(a->s->dht.ctx, &a->contact, (unsigned)a->s->conf.attach_timeout_ms, fd);
}

static int validate_cb(void *arg, const pvp_claimant_t *c, const pvp_vcr_t *r, const uint8_t *prev,
                       size_t prev_len, pvp_validation_t *out)
{
	vsrv_t *s = arg;
	attach_ctx_t a = { .s = s };
	vsrv_event_t ev = { .kind = VSRV_EV_VALIDATION, .number = r->called, .claimant = c->id };
	int rc = vp_id_from_hex(c->addr, &a.contact);
	char rk[24], lkey[PVP_CLAIMANT_ID_MAX + 16];
	ment_t *u;
	s->cur_rec_id = r->id; /* the scheduler reports this validation's route next (route_cb) */
	/*
	 * The guess ledger is kept per tenant (the uploader's VService): a route
	 * reaches only that tenant, so only its own handshakes count against its
	 * credit and budget, and another tenant's bogus records cannot spend them.
	 */
	snprintf(rk, sizeof(rk), "%llu", (unsigned long long)r->id);
	pthread_mutex_lock(&s->mu);
	u = smap_get(&s->rec_vs, rk);
	snprintf(lkey, sizeof(lkey), "%s/vs%u", c->id, u ? u->u : 0);
	pthread_mutex_unlock(&s->mu);
	if (!rc)
		rc = pvp_client_validate(s->cli, lkey, r, c->methods, attach_connect, &a, prev, prev_len, out);
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

/*
 * Learned routes, kept in the call-record store's auxiliary records so they
 * survive a restart and are replayed to an agent that subscribes later
 * (docs/protocol.md §8.6, Subscribe).  Key 'G' 'R' VService-ID(4, big endian)
 * number: the guess ledger's keys are 'G' followed by a number, which starts
 * with '+', so the two never meet.  Value: version 1, expiry (u64 seconds since
 * the epoch: the ticket's), u8 URI count, each URI with a u16 length, the
 * ticket with a u16 length.  A later route for the same (VService, number)
 * replaces the earlier one; an expired one is never replayed and is removed by
 * the maintenance pass.
 */
#define ROUTE_KEY_TAG 'R'
#define ROUTE_VERSION 1
#define ROUTE_KEY_MAX (6 + VP_E164_BUFLEN)
#define ROUTE_VAL_MAX (1 + 8 + 1 + VAP_MAX_URIS * (2 + VAP_MAX_URI) + 2 + VAP_MAX_TICKET)

static size_t route_key(uint8_t *key, uint32_t vservice_id, const char *number)
{
	size_t nl = strnlen(number, VP_E164_BUFLEN - 1);
	key[0] = PVP_VCR_AUX_PREFIX;
	key[1] = ROUTE_KEY_TAG;
	key[2] = (uint8_t)(vservice_id >> 24);
	key[3] = (uint8_t)(vservice_id >> 16);
	key[4] = (uint8_t)(vservice_id >> 8);
	key[5] = (uint8_t)vservice_id;
	memcpy(key + 6, number, nl);
	return 6 + nl;
}

static int route_save(vsrv_t *s, const vap_route_t *rt, uint64_t expires_s)
{
	uint8_t key[ROUTE_KEY_MAX], val[ROUTE_VAL_MAX];
	vp_wr_t wr;
	vp_wr_init(&wr, val, sizeof(val));
	vp_wr_u8(&wr, ROUTE_VERSION);
	vp_wr_u64(&wr, expires_s);
	vp_wr_u8(&wr, (uint8_t)rt->n_uris);
	for (size_t i = 0; i < rt->n_uris; i++)
		vp_wr_vec_bytes(&wr, 2, rt->uris[i], strlen(rt->uris[i]));
	vp_wr_vec_bytes(&wr, 2, rt->ticket, rt->ticket_len);
	if (wr.err)
		return wr.err;
	return pvp_vcr_store_aux_put(s->store, key, route_key(key, rt->vservice_id, rt->number), val,
	                             vp_wr_len(&wr));
}

/* A kept route back into \p rt (its EXPIRES still absolute in *expires_s); VP_EMALFORMED if damaged. */
static int route_load(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen, vap_route_t *rt,
                      uint64_t *expires_s)
{
	vp_rd_t rd;
	uint8_t ver = 0, n = 0;
	memset(rt, 0, sizeof(*rt));
	if (klen < 7 || klen - 6 >= sizeof(rt->number))
		return VP_EMALFORMED;
	rt->vservice_id = (uint32_t)key[2] << 24 | (uint32_t)key[3] << 16 | (uint32_t)key[4] << 8 | key[5];
	memcpy(rt->number, key + 6, klen - 6);
	vp_rd_init(&rd, val, vlen);
	vp_rd_u8(&rd, &ver);
	vp_rd_u64(&rd, expires_s);
	vp_rd_u8(&rd, &n);
	if (rd.err || ver != ROUTE_VERSION || n > VAP_MAX_URIS)
		return VP_EMALFORMED;
	for (unsigned i = 0; i < n; i++) {
		uint16_t l = 0;
		const uint8_t *p = NULL;
		vp_rd_u16(&rd, &l);
		if (vp_rd_bytes(&rd, l, &p) || l >= VAP_MAX_URI)
			return VP_EMALFORMED;
		memcpy(rt->uris[i], p, l);
		rt->uris[i][l] = '\0';
	}
	rt->n_uris = n;
	{
		uint16_t l = 0;
		const uint8_t *p = NULL;
		vp_rd_u16(&rd, &l);
		if (vp_rd_bytes(&rd, l, &p) || l > VAP_MAX_TICKET || vp_rd_left(&rd))
			return VP_EMALFORMED;
		memcpy(rt->ticket, p, l);
		rt->ticket_len = l;
	}
	return 0;
}

typedef struct replay_walk {
	vsrv_t *s;
	uint64_t now_s;
	void (*send)(void *sink, const vap_route_t *route);
	void *sink;
	unsigned sent;
} replay_walk_t;

static int replay_one(void *arg, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen)
{
	replay_walk_t *w = arg;
	vap_route_t rt;
	uint64_t exp = 0;
	if (route_load(key, klen, val, vlen, &rt, &exp)) {
		vp_log_warn(LOGMOD, "route_damaged", "srv=%s key_len=%zu val_len=%zu", w->s->conf.name, klen, vlen);
		return 0;
	}
	if (exp <= w->now_s)
		return 0; /* expired: never handed out again (maintenance removes it) */
	rt.expires = exp - w->now_s > UINT32_MAX ? UINT32_MAX : (uint32_t)(exp - w->now_s);
	w->send(w->sink, &rt);
	w->sent++;
	return 0;
}

/* VAP thread: an agent subscribed to \p id; replay the unexpired routes learned for that VService. */
static void hook_subscribed(void *ctx, const char *agent, uint32_t id, void (*send)(void *sink, const vap_route_t *r),
                            void *sink)
{
	vsrv_t *s = ctx;
	uint8_t prefix[6];
	replay_walk_t w = { .s = s, .now_s = vp_clock_now_ms(s->clock) / 1000, .send = send, .sink = sink };
	int rc;
	route_key(prefix, id, "");
	rc = pvp_vcr_store_aux_scan(s->store, prefix, sizeof(prefix), replay_one, &w);
	if (w.sent)
		stat_add(s, &s->st.replayed, w.sent);
	if (w.sent || rc)
		vp_log_info(LOGMOD, "routes_replayed", "srv=%s agent=%s vservice=%u routes=%u rc=%d", s->conf.name, agent,
		            id, w.sent, rc);
}

typedef struct route_sweep {
	vsrv_t *s;
	uint64_t now_s;
	size_t removed;
} route_sweep_t;

static int sweep_one(void *arg, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen)
{
	route_sweep_t *w = arg;
	vap_route_t rt;
	uint64_t exp = 0;
	if (route_load(key, klen, val, vlen, &rt, &exp) == 0 && exp > w->now_s)
		return 0;
	if (pvp_vcr_store_aux_del(w->s->store, key, klen) == 0)
		w->removed++;
	return 0;
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
		char rk[24];
		ment_t *u;
		snprintf(rk, sizeof(rk), "%llu", (unsigned long long)s->cur_rec_id);
		s->st.routes++;
		/* Only the VService whose agent uploaded the validated record learns the route; a route whose
		 * ticket has already expired on our clock is of no use to anyone and is neither sent nor kept. */
		if (r->resp->expires > now_s && (u = smap_get(&s->rec_vs, rk)) && (o = calloc(1, sizeof(*o)))) {
			o->s = s;
			snprintf(o->route.number, sizeof(o->route.number), "%s", r->number);
			o->route.vservice_id = u->u;
			o->route.expires = r->resp->expires - now_s > UINT32_MAX ? UINT32_MAX
			                                                         : (uint32_t)(r->resp->expires - now_s);
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
	if (o) {
		int rc = route_save(s, &o->route, r->resp->expires);
		if (rc)
			vp_log_error(LOGMOD, "route_not_kept", "srv=%s number=%s vservice=%u error=%s", s->conf.name,
			             r->number, o->route.vservice_id, vp_strerror(rc));
	}
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
	uint8_t rprefix[2] = { PVP_VCR_AUX_PREFIX, ROUTE_KEY_TAG };
	route_sweep_t rs = { .s = s, .now_s = now / 1000 };
	int rrc = pvp_vcr_store_aux_scan(s->store, rprefix, sizeof(rprefix), sweep_one, &rs);
	if (rrc)
		vp_log_error(LOGMOD, "route_sweep_failed", "srv=%s error=%s", s->conf.name, vp_strerror(rrc));
	pthread_mutex_lock(&s->mu);
	s->st.vcr_purged += purged;
	uploads = smap_expire(&s->rec_vs, now);
	tickets = smap_expire(&s->tickets, now);
	s->st.routes_expired += rs.removed;
	pthread_mutex_unlock(&s->mu);
	if (rc || purged || uploads || tickets || rs.removed)
		vp_log_info(LOGMOD, "maintenance",
		            "srv=%s vcrs_purged=%zu uploads_forgotten=%zu tickets_expired=%zu routes_expired=%zu rc=%d",
		            s->conf.name, purged, uploads, tickets, rs.removed, rc);
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
		/* Every record taken from the queue is in the scheduler now: the exact count. */
		s->admitted = s->st.sched_queued + s->queue.n;
		s->st.sched_scheduled = ss.scheduled;
		s->st.sched_no_claimant = ss.no_claimant;
		s->st.sched_dropped = ss.dropped;
		due = pvp_sched_next_due_ms(s->sched);
		now = vp_clock_now_ms(s->clock);
		/* Wake at the next due job, on new records, or every 100 ms (injected clocks move on their own). */
		wait_ms = due <= now ? 0 : (due - now > 100 ? 100 : (long)(due - now));
		if (wait_ms > 0 && !s->queue.n && !stopping(s)) {
			vp_deadline_t wake = vp_deadline_in_ms((uint64_t)wait_ms);
			dl = vp_deadline_abstime(&wake, 0);
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

/* [vap] tenants = "agent:tenant, ...": agents sharing a tenant share its VServices. */
static int provision_tenants(vsrv_t *s, const char *list)
{
	char buf[sizeof(s->conf.tenants)], *save = NULL, *tok;
	snprintf(buf, sizeof(buf), "%s", list);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *colon;
		ment_t *e;
		while (*tok == ' ' || *tok == '\t')
			tok++;
		for (char *end = tok + strlen(tok); end > tok && (end[-1] == ' ' || end[-1] == '\t');)
			*--end = '\0';
		if (!*tok)
			continue;
		if (!(colon = strchr(tok, ':')) || colon == tok || !colon[1]) {
			vp_log_error(LOGMOD, "tenants", "srv=%s msg=\"[vap] tenants: expected agent:tenant\"", s->conf.name);
			return VP_ECONFIG;
		}
		*colon = '\0';
		if (!(e = smap_put(&s->tenant_of, tok)))
			return VP_ENOMEM;
		free(e->blob);
		if (!(e->blob = (uint8_t *)strdup(colon + 1)))
			return VP_ENOMEM;
		e->blob_len = strlen(colon + 1) + 1;
	}
	return 0;
}

typedef struct resched {
	vsrv_t *s;
	smap_t logged;  /* record id -> VService, from <vcr_dir>/viprd-uploads */
	int rc;
	size_t n;
} resched_t;

static int resched_one(void *arg, const pvp_vcr_t *r)
{
	resched_t *x = arg;
	vsrv_t *s = x->s;
	char key[24];
	ment_t *e;
	snprintf(key, sizeof(key), "%llu", (unsigned long long)r->id);
	if (!(e = smap_get(&x->logged, key)))
		return 0; /* never acknowledged (the crash came between store and log) */
	if ((x->rc = admit(s)) || (x->rc = rec_vs_put(s, r->id, e->u, r->stop_ms)) ||
	    (x->rc = upload_log_append(s, r->id, e->u)) || (x->rc = queue_push(s, r)))
		return 1;
	x->n++;
	return 0;
}

/*
 * Start-up: every acknowledged originating record still in the store goes back
 * to the scheduler (at a fresh random delay from its stop time, so a record
 * whose time has passed runs at once), with the VService it was uploaded for.
 * The uploads log is then rewritten with exactly those records.
 */
static int reschedule_stored(vsrv_t *s)
{
	char path[VSRV_PATH_MAX + 16], tmp[VSRV_PATH_MAX + 24];
	resched_t x = { .s = s };
	uint8_t b[12];
	int fd, rc = 0;
	snprintf(path, sizeof(path), "%s/viprd-uploads", s->conf.vcr_dir);
	snprintf(tmp, sizeof(tmp), "%s/viprd-uploads.new", s->conf.vcr_dir);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) >= 0) {
		ssize_t n;
		while ((n = read(fd, b, sizeof(b))) == (ssize_t)sizeof(b)) {
			uint64_t id = 0;
			uint32_t vsid = 0;
			char key[24];
			ment_t *e;
			for (int i = 0; i < 8; i++)
				id = id << 8 | b[i];
			for (int i = 0; i < 4; i++)
				vsid = vsid << 8 | b[8 + i];
			snprintf(key, sizeof(key), "%llu", (unsigned long long)id);
			if (!(e = smap_put(&x.logged, key))) {
				rc = VP_ENOMEM;
				break;
			}
			e->u = vsid;
		}
		close(fd); /* a torn last entry (crash mid-write) was never acknowledged */
	} else if (errno != ENOENT) {
		rc = VP_EIO;
	}
	if (!rc && (s->up_fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600)) < 0)
		rc = VP_EIO;
	if (!rc) {
		rc = pvp_vcr_store_scan(s->store, PVP_DIR_ORIG, resched_one, &x);
		if (x.rc)
			rc = x.rc;
	}
	if (!rc && rename(tmp, path))
		rc = VP_EIO;
	smap_clear(&x.logged);
	if (!rc)
		vp_log_info(LOGMOD, "rescheduled", "srv=%s records=%zu", s->conf.name, x.n);
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
	s->up_fd = -1;
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
	pc.mode = conf->list_mode == VSRV_LIST_WHITE ? PVP_LIST_WHITE : PVP_LIST_BLACK;
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
	psc.io_timeout_ms = (unsigned)conf->io_timeout_ms;
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
	cc.io_timeout_ms = (unsigned)conf->io_timeout_ms;
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
	sc.max_jobs = s->conf.max_jobs;
	if ((rc = pvp_sched_new(&sc, &s->sched)))
		goto fail;
	if ((rc = restore_published(s)) || (rc = reschedule_stored(s)))
		goto fail;
	/* A bind address that is not numeric is a configuration error. */
	if ((rc = vp_net_listen_tcp(conf->pvp_bind, (uint16_t)conf->pvp_port, 128, VP_NET_NONBLOCK, &s->pvp_lfd, &s->pvp_port))) {
		rc = rc == VP_EINVAL ? VP_ECONFIG : rc;
		goto fail;
	}
	{
		pvp_gate_conf_t gc = { .lfd = s->pvp_lfd };
		if ((rc = pvp_gate_new(&gc, &s->gate)))
			goto fail;
	}

	vap_server_conf_default(&vc);
	vc.bind_addr = s->conf.vap_bind;
	vc.port = (uint16_t)conf->vap_port;
	vc.realm = s->conf.realm;
	vc.allow_plain_tcp = conf->vap_allow_plain_tcp;
	memset(&hooks, 0, sizeof(hooks));
	hooks.ctx = s;
	hooks.vservice_access = hook_vservice_access;
	hooks.subscribed = hook_subscribed;
	hooks.store = hook_store;
	hooks.upload_vcr_start = hook_upload_vcr_start;
	hooks.publish_vservice = hook_vservice;
	if ((rc = vap_server_create(&vc, &hooks, &s->vap)))
		goto fail;
	if ((rc = provision_agents(s, conf->agents)) || (rc = provision_tenants(s, conf->tenants)))
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
	if (vsrv_ingest_new(s->store, s->conf.vcr_workers, ingest_wake, s, &s->ingest))
		return VP_ENOMEM;
	if (pthread_create(&s->vap_th, NULL, vap_thread, s)) {
		vsrv_ingest_free(s->ingest);
		s->ingest = NULL;
		return VP_ENOMEM;
	}
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
	if (s->ingest) {
		/* Records not yet written are answered as failed (the VAP thread is gone: safe here). */
		vsrv_ingest_stop(s->ingest);
		drain_ingest(s);
		vsrv_ingest_free(s->ingest);
		s->ingest = NULL;
	}
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
	if (s->up_fd >= 0)
		close(s->up_fd);
	smap_clear(&s->published);
	smap_clear(&s->rec_vs);
	smap_clear(&s->agent_vs);
	smap_clear(&s->tenant_of);
	smap_clear(&s->vs_owner);
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
