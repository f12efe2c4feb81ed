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
#include <openssl/pem.h>
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
/* The guess ledger is scanned whole (one entry per number and claimant validated in 30 days) and
 * its entries live 30 days or more: hourly is often enough. */
#define LEDGER_PURGE_EVERY_MS 3600000ull
#define MAINT_EVERY_MS 60000ull               /* purge of records, uploads and expired tickets */
/* A terminating record may start this far in the future (clock offsets between carriers;
 * the call-record store's start tolerance, pvp/vcr.h).  Later ones would sort first among
 * the candidates of their selector and push the real record out (docs/protocol.md §5.2). */
#define TERM_FUTURE_TOLERANCE_MS 90000ull
/* Our own records in the call-record store (pvp/vcr.h 'G' keys; the guess ledger uses 'G' '+'). */
#define AUX_LEARNED 'r'   /* 'G' 'r' number|claimant|tenant -> learned route or pending ticket */
#define AUX_OWNER 'o'     /* 'G' 'o' VService id (4, big-endian) -> owning tenant */
#define AUX_AGENT_VS 'a'  /* 'G' 'a' agent -> VService id (4, big-endian) it last published numbers under */
#define AUX_VSERVICE 'v'  /* 'G' 'v' VService id (4, big-endian) -> its publication (URIs, lists) */
#define AUX_NUMBER 'n'    /* 'G' 'n' number -> VService id (4, big-endian) it is published under */
#define VS_VERSION 1
/* A publication: version, then URIs, blacklist, whitelist, each a count and 2-byte-length strings. */
#define VS_ENC_MAX (1 + 3 + (VAP_MAX_URIS + 2 * VAP_MAX_LIST) * (2 + VAP_MAX_URI))
/* Uploads-log entry flag: the record's validation is over (ids count from 1 and never reach 2^63). */
#define UPLOAD_DONE (1ull << 63)
#define LEARNED_VERSION 2   /* 2 added the client certificate (§8.6); version 1 values are still read */
#define LEARNED_ENC_MAX (1 + 8 + 4 + 1 + 2 + VAP_MAX_TICKET + 1 + VAP_MAX_URIS * (2 + VAP_MAX_URI) + 8 + 2 + VAP_MAX_CERT)
#define LEARNED_KEY_MAX (VP_E164_BUFLEN + PVP_CLAIMANT_ID_MAX + 260)
/* Routes replayed to one new subscription at most: ~300 bytes of Notify each, so at most ~20 MB queued
 * for one connection; the rest reach the agent with their next validation (docs/protocol.md §8.6). */
#define VSRV_REPLAY_MAX 65536u
#define LISTS_SLOTS 64    /* a VService's lists policy: its rate sketches are unused (the server-wide one counts) */
_Static_assert(PVP_TICKET_MAX <= VAP_MAX_TICKET, "a learned ticket fits a Notify");

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
	{ .section = "pvp", .key = "cert_issuer", .type = VP_CONF_STR,
	  .doc = "issuing CA certificate (PEM) for client certificates after validations (protocol §6.1); "
	         "unset: none are issued. Give border elements this file only",
	  VP_CONF_AT(vsrv_conf_t, cert_issuer) },
	{ .section = "pvp", .key = "cert_issuer_key", .type = VP_CONF_STR,
	  .doc = "the issuing CA's private key (PEM); required with cert_issuer", VP_CONF_AT(vsrv_conf_t, cert_issuer_key) },
	{ .section = "pvp", .key = "client_cert_key", .type = VP_CONF_STR,
	  .doc = "originating side: after each validation that granted routes, ask for a client certificate for this "
	         "private key (PEM; the calling SIP element holds it too) and hand it to the agents with the route "
	         "(protocol §6.1, §8.6); \"\" = ask for none, tickets only",
	  VP_CONF_AT(vsrv_conf_t, client_cert_key) },
	{ .section = "pvp", .key = "cert_lifetime", .type = VP_CONF_DUR_S, .min = 60000, .max = 7ull * 86400 * 1000,
	  .def = "1d", .doc = "client certificates' lifetime (never past the route's expiry): a certificate cannot be "
	                      "revoked at the border", VP_CONF_AT(vsrv_conf_t, cert_lifetime_s) },
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

/* A string map whose bucket array doubles when it holds more than 2 entries per bucket: the published
 * numbers of a carrier run to millions, and fixed chains made a 1,000,000-number publish quadratic. */
typedef struct smap {
	ment_t **b;             /* nb buckets; NULL while empty (a zeroed smap_t is a valid empty map) */
	size_t nb, n;
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
	if (!m->nb)
		return NULL;
	for (ment_t *e = m->b[hash_str(key) % m->nb]; e; e = e->next)
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
	if (!m->nb || m->n >= 2 * m->nb) {
		size_t nb = m->nb ? 2 * m->nb : MAP_BUCKETS;
		ment_t **b = calloc(nb, sizeof(*b));
		if (!b)
			return NULL;
		for (size_t i = 0; i < m->nb; i++) {
			for (ment_t *x = m->b[i], *nx; x; x = nx) {
				nx = x->next;
				h = hash_str(x->key) % nb;
				x->next = b[h];
				b[h] = x;
			}
		}
		free(m->b);
		m->b = b;
		m->nb = nb;
	}
	if (!(e = calloc(1, sizeof(*e) + kl + 1)))
		return NULL;
	memcpy(e->key, key, kl + 1);
	h = hash_str(key) % m->nb;
	e->next = m->b[h];
	m->b[h] = e;
	m->n++;
	return e;
}

static void smap_del(smap_t *m, const char *key)
{
	if (!m->nb)
		return;
	for (ment_t **pp = &m->b[hash_str(key) % m->nb]; *pp; pp = &(*pp)->next) {
		if (!strcmp((*pp)->key, key)) {
			ment_t *e = *pp;
			*pp = e->next;
			free(e->blob);
			free(e);
			m->n--;
			return;
		}
	}
}

/* Drop every entry whose until_ms has passed; returns how many. */
static size_t smap_expire(smap_t *m, uint64_t now_ms)
{
	size_t n = 0;
	for (size_t i = 0; i < m->nb; i++) {
		for (ment_t **pp = &m->b[i]; *pp;) {
			ment_t *e = *pp;
			if (e->until_ms && e->until_ms < now_ms) {
				*pp = e->next;
				free(e->blob);
				free(e);
				m->n--;
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
	for (size_t i = 0; i < m->nb; i++) {
		ment_t *e = m->b[i];
		while (e) {
			ment_t *n = e->next;
			free(e->blob);
			free(e);
			e = n;
		}
	}
	free(m->b);
	m->b = NULL;
	m->nb = m->n = 0;
}

/* ---- the server ------------------------------------------------------------------ */

typedef struct vservice {
	uint32_t id;
	bool used;
	pvp_policy_t *lists;    /* its black/white lists (docs/protocol.md §5.1); freed on withdrawal */
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
	pvp_cc_issuer_t *issuer;        /* [pvp] cert_issuer, or NULL */
	EVP_PKEY *cert_key;             /* [pvp] client_cert_key: ask for client certificates with it, or NULL */
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
	smap_t tickets;                 /* number|claimant|tenant -> learned_t (blob), also in the store ('G' 'r') */
	vservice_t vs[VSRV_MAX_VSERVICES];
	vsrv_stats_t st;
	uint64_t admitted;              /* originating records queued or in the scheduler (upper bound) */
	uint64_t ledger_purge_ms;       /* next guess-ledger purge due (clock ms) */
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

/* ---- learned routes and tickets ---------------------------------------------------- */

/*
 * What a validation taught us, per (number, claimant, tenant): the last ticket
 * (sent again with the next validation, so entropy accumulates) and, when the
 * claimant granted routes, the route handed to the VService's agents.  Kept in
 * the call-record store before the agents are told, so a restart keeps both
 * and a subscriber that connects later still receives the route.
 */
typedef struct learned {
	bool routes;            /* routes granted (else a pending ticket only) */
	vap_route_t route;      /* number, VService, URIs, ticket, certificate; expires is recomputed when sent */
	uint64_t cert_until_ms; /* the certificate's notAfter: an expired one is not replayed */
} learned_t;

static size_t learned_encode(const learned_t *l, uint64_t until_ms, uint8_t *out, size_t cap)
{
	vp_wr_t wr;
	vp_wr_init(&wr, out, cap);
	vp_wr_u8(&wr, LEARNED_VERSION);
	vp_wr_u64(&wr, until_ms);
	vp_wr_u32(&wr, l->route.vservice_id);
	vp_wr_u8(&wr, l->routes);
	vp_wr_vec_bytes(&wr, 2, l->route.ticket, l->route.ticket_len);
	vp_wr_u8(&wr, (uint8_t)l->route.n_uris);
	for (size_t i = 0; i < l->route.n_uris; i++)
		vp_wr_vec_bytes(&wr, 2, l->route.uris[i], strlen(l->route.uris[i]));
	vp_wr_u64(&wr, l->cert_until_ms);
	vp_wr_vec_bytes(&wr, 2, l->route.cert, l->route.cert_len);
	return wr.err ? 0 : vp_wr_len(&wr);
}

/* \p number is the key's first field (the value does not repeat it). */
static int learned_decode(const uint8_t *in, size_t len, const char *number, learned_t *l, uint64_t *until_ms)
{
	vp_rd_t rd;
	uint8_t ver = 0, routes = 0, n = 0;
	const uint8_t *p;
	size_t pl;
	memset(l, 0, sizeof(*l));
	vp_rd_init(&rd, in, len);
	vp_rd_u8(&rd, &ver);
	vp_rd_u64(&rd, until_ms);
	vp_rd_u32(&rd, &l->route.vservice_id);
	vp_rd_u8(&rd, &routes);
	if (vp_rd_vec_bytes(&rd, 2, &p, &pl) || pl > VAP_MAX_TICKET || ver < 1 || ver > LEARNED_VERSION)
		return VP_EMALFORMED;
	memcpy(l->route.ticket, p, pl);
	l->route.ticket_len = pl;
	if (vp_rd_u8(&rd, &n) || n > VAP_MAX_URIS)
		return VP_EMALFORMED;
	for (uint8_t i = 0; i < n; i++) {
		if (vp_rd_vec_bytes(&rd, 2, &p, &pl) || pl >= VAP_MAX_URI)
			return VP_EMALFORMED;
		memcpy(l->route.uris[i], p, pl);
		l->route.uris[i][pl] = '\0';
	}
	if (ver >= 2) {
		vp_rd_u64(&rd, &l->cert_until_ms);
		if (vp_rd_vec_bytes(&rd, 2, &p, &pl) || pl > VAP_MAX_CERT)
			return VP_EMALFORMED;
		memcpy(l->route.cert, p, pl);
		l->route.cert_len = pl;
	}
	if (rd.err || vp_rd_left(&rd) || snprintf(l->route.number, sizeof(l->route.number), "%s", number) >=
	                                     (int)sizeof(l->route.number))
		return VP_EMALFORMED;
	l->route.n_uris = n;
	l->routes = routes != 0;
	return 0;
}

static size_t aux_key(uint8_t kind, const char *name, uint8_t *key, size_t cap)
{
	size_t n = strlen(name);
	if (n + 2 > cap)
		return 0;
	key[0] = PVP_VCR_AUX_PREFIX;
	key[1] = kind;
	memcpy(key + 2, name, n);
	return n + 2;
}

/* Drop learned entries past their expiry, in memory and in the store (under s->mu). */
static size_t learned_expire(vsrv_t *s, uint64_t now_ms)
{
	size_t n = 0;
	for (size_t i = 0; i < s->tickets.nb; i++) {
		for (ment_t **pp = &s->tickets.b[i]; *pp;) {
			ment_t *e = *pp;
			uint8_t key[VSRV_PATH_MAX];
			size_t kl;
			if (!e->until_ms || e->until_ms >= now_ms) {
				pp = &e->next;
				continue;
			}
			if ((kl = aux_key(AUX_LEARNED, e->key, key, sizeof(key))) &&
			    pvp_vcr_store_aux_del(s->store, key, kl)) {
				pp = &e->next; /* kept, so the next maintenance deletes it from the store too */
				continue;
			}
			*pp = e->next;
			free(e->blob);
			free(e);
			s->tickets.n--;
			n++;
		}
	}
	return n;
}

typedef struct load_ctx {
	vsrv_t *s;
	uint64_t now_ms;
	size_t n, dropped;
	int rc;
} load_ctx_t;

static int learned_load_one(void *arg, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen)
{
	load_ctx_t *x = arg;
	char name[VSRV_PATH_MAX], number[VP_E164_BUFLEN];
	const char *bar;
	learned_t l, *b;
	uint64_t until = 0;
	ment_t *e;
	if (klen - 2 >= sizeof(name))
		return 0;
	memcpy(name, key + 2, klen - 2);
	name[klen - 2] = '\0';
	if (!(bar = strchr(name, '|')) || (size_t)(bar - name) >= sizeof(number))
		return 0;
	memcpy(number, name, (size_t)(bar - name));
	number[bar - name] = '\0';
	if (learned_decode(val, vlen, number, &l, &until) || until < x->now_ms) {
		/* Expired or unreadable: forget it (a damaged entry only costs one accumulation step). */
		pvp_vcr_store_aux_del(x->s->store, key, klen);
		x->dropped++;
		return 0;
	}
	if (!(e = smap_put(&x->s->tickets, name)) || !(b = malloc(sizeof(*b)))) {
		x->rc = VP_ENOMEM;
		return 1;
	}
	*b = l;
	free(e->blob);
	e->blob = (uint8_t *)b;
	e->blob_len = sizeof(*b);
	e->until_ms = until;
	x->n++;
	return 0;
}

static int owner_load_one(void *arg, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen)
{
	load_ctx_t *x = arg;
	char id[16];
	ment_t *e;
	if (klen != 6 || !vlen || vlen > 256 || memchr(val, 0, vlen))
		return 0;
	snprintf(id, sizeof(id), "%u", (unsigned)key[2] << 24 | (unsigned)key[3] << 16 | (unsigned)key[4] << 8 | key[5]);
	if (!(e = smap_put(&x->s->vs_owner, id)) || !(e->blob = malloc(vlen + 1))) {
		x->rc = VP_ENOMEM;
		return 1;
	}
	memcpy(e->blob, val, vlen);
	e->blob[vlen] = 0;
	e->blob_len = vlen + 1;
	x->n++;
	return 0;
}

static int vs_apply(vsrv_t *s, const vap_vservice_t *vs, bool persist);

/* A VService publication as kept in the store (docs/protocol.md §8.6). */
static size_t vs_encode(const vap_vservice_t *vs, uint8_t *out, size_t cap)
{
	const size_t n[3] = { vs->n_uris, vs->n_black, vs->n_white };
	const char *const *v[3] = { vs->uris, vs->black, vs->white };
	vp_wr_t wr;
	vp_wr_init(&wr, out, cap);
	vp_wr_u8(&wr, VS_VERSION);
	for (int k = 0; k < 3; k++) {
		vp_wr_u8(&wr, (uint8_t)n[k]);
		for (size_t i = 0; i < n[k]; i++)
			vp_wr_vec_bytes(&wr, 2, v[k][i], strlen(v[k][i]));
	}
	return wr.err ? 0 : vp_wr_len(&wr);
}

/* Decode into \p vs (op add), its strings in \p pool (VAP_MAX_URIS + 2 VAP_MAX_LIST strings). */
static int vs_decode(const uint8_t *in, size_t len, uint32_t id, char (*pool)[VAP_MAX_URI], vap_vservice_t *vs)
{
	const size_t max[3] = { VAP_MAX_URIS, VAP_MAX_LIST, VAP_MAX_LIST };
	size_t *n[3] = { &vs->n_uris, &vs->n_black, &vs->n_white };
	const char **v[3] = { vs->uris, vs->black, vs->white };
	size_t used = 0;
	uint8_t ver = 0, cnt;
	vp_rd_t rd;
	memset(vs, 0, sizeof(*vs));
	vs->id = id;
	vs->op = VAP_OP_ADD;
	vp_rd_init(&rd, in, len);
	if (vp_rd_u8(&rd, &ver) || ver != VS_VERSION)
		return VP_EMALFORMED;
	for (int k = 0; k < 3; k++) {
		if (vp_rd_u8(&rd, &cnt) || cnt > max[k])
			return VP_EMALFORMED;
		for (uint8_t i = 0; i < cnt; i++) {
			const uint8_t *p;
			size_t pl;
			if (vp_rd_vec_bytes(&rd, 2, &p, &pl) || pl == 0 || pl >= VAP_MAX_URI || memchr(p, 0, pl))
				return VP_EMALFORMED;
			memcpy(pool[used], p, pl);
			pool[used][pl] = '\0';
			v[k][i] = pool[used++];
		}
		*n[k] = cnt;
	}
	return rd.err || vp_rd_left(&rd) || vs->n_uris == 0 ? VP_EMALFORMED : 0;
}

typedef struct vs_load_ctx {
	load_ctx_t x;
	char (*pool)[VAP_MAX_URI];
} vs_load_ctx_t;

static int vs_load_one(void *arg, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen)
{
	vs_load_ctx_t *x = arg;
	vap_vservice_t vs;
	int rc;
	if (klen != 6 || vs_decode(val, vlen, (uint32_t)key[2] << 24 | (uint32_t)key[3] << 16 |
	                                       (uint32_t)key[4] << 8 | key[5], x->pool, &vs)) {
		x->x.dropped++; /* unreadable: its agent publishes it again */
		return 0;
	}
	if ((rc = vs_apply(x->x.s, &vs, false)) == VP_ENOMEM) {
		x->x.rc = rc;
		return 1;
	}
	if (rc)
		x->x.dropped++;
	else
		x->x.n++;
	return 0;
}

static int number_load_one(void *arg, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen)
{
	load_ctx_t *x = arg;
	char number[VP_E164_BUFLEN];
	ment_t *e;
	if (klen < 3 || klen - 2 >= sizeof(number) || memchr(key + 2, 0, klen - 2) || vlen != 4)
		return 0;
	memcpy(number, key + 2, klen - 2);
	number[klen - 2] = '\0';
	if (!(e = smap_put(&x->s->published, number))) {
		x->rc = VP_ENOMEM;
		return 1;
	}
	e->u = (uint32_t)val[0] << 24 | (uint32_t)val[1] << 16 | (uint32_t)val[2] << 8 | val[3];
	x->n++;
	return 0;
}

static int agent_vs_load_one(void *arg, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen)
{
	load_ctx_t *x = arg;
	char agent[VAP_MAX_USERNAME + 1];
	ment_t *e;
	if (klen < 3 || klen - 2 >= sizeof(agent) || memchr(key + 2, 0, klen - 2) || vlen != 4)
		return 0;
	memcpy(agent, key + 2, klen - 2);
	agent[klen - 2] = '\0';
	if (!(e = smap_put(&x->s->agent_vs, agent))) {
		x->rc = VP_ENOMEM;
		return 1;
	}
	e->u = (uint32_t)val[0] << 24 | (uint32_t)val[1] << 16 | (uint32_t)val[2] << 8 | val[3];
	x->n++;
	return 0;
}

/* Start-up: VService owners, agents' VServices, unexpired learned routes and tickets from the store. */
static int state_load(vsrv_t *s)
{
	const uint8_t po[2] = { PVP_VCR_AUX_PREFIX, AUX_OWNER }, pl[2] = { PVP_VCR_AUX_PREFIX, AUX_LEARNED };
	const uint8_t pa[2] = { PVP_VCR_AUX_PREFIX, AUX_AGENT_VS }, pv[2] = { PVP_VCR_AUX_PREFIX, AUX_VSERVICE };
	const uint8_t pn[2] = { PVP_VCR_AUX_PREFIX, AUX_NUMBER };
	load_ctx_t o = { .s = s }, l = { .s = s, .now_ms = vp_clock_now_ms(s->clock) }, a = { .s = s }, n = { .s = s };
	vs_load_ctx_t v = { .x = { .s = s }, .pool = calloc(VAP_MAX_URIS + 2 * VAP_MAX_LIST, VAP_MAX_URI) };
	int rc = v.pool ? pvp_vcr_store_aux_scan(s->store, po, sizeof(po), owner_load_one, &o) : VP_ENOMEM;
	if (!rc)
		rc = o.rc;
	if (!rc)
		rc = pvp_vcr_store_aux_scan(s->store, pv, sizeof(pv), vs_load_one, &v);
	if (!rc)
		rc = v.x.rc;
	free(v.pool);
	if (!rc)
		rc = pvp_vcr_store_aux_scan(s->store, pn, sizeof(pn), number_load_one, &n);
	if (!rc)
		rc = n.rc;
	if (!rc)
		rc = pvp_vcr_store_aux_scan(s->store, pa, sizeof(pa), agent_vs_load_one, &a);
	if (!rc)
		rc = a.rc;
	if (!rc)
		rc = pvp_vcr_store_aux_scan(s->store, pl, sizeof(pl), learned_load_one, &l);
	if (!rc)
		rc = l.rc;
	vp_log_info(LOGMOD, "state_loaded",
	            "srv=%s vservice_owners=%zu vservices=%zu vservices_dropped=%zu numbers=%zu agent_vservices=%zu "
	            "learned=%zu learned_expired=%zu rc=%d",
	            s->conf.name, o.n, v.x.n, v.x.dropped, n.n, a.n, l.n, l.dropped, rc);
	return rc;
}

/* ---- tenants --------------------------------------------------------------------- */

/* The tenant of \p agent (under s->mu): its [vap] tenants entry, else the agent itself. */
static const char *tenant_locked(vsrv_t *s, const char *agent)
{
	ment_t *e = smap_get(&s->tenant_of, agent);
	return e && e->blob ? (const char *)e->blob : agent;
}

/*
 * The learned-state key of a validation of \p number against \p claimant for
 * originating record \p rec_id (under s->mu): "number|claimant|tenant", the
 * tenant owning the VService the record was uploaded for ("vs<id>" while
 * nobody owns it).  *vsid and *known (may be NULL): that VService, and
 * whether the record is still known.
 */
static void learned_key_locked(vsrv_t *s, uint64_t rec_id, const char *number, const char *claimant, char *key,
                               size_t cap, uint32_t *vsid, bool *known)
{
	char rk[24], vk[16];
	ment_t *u, *o;
	uint32_t id;
	snprintf(rk, sizeof(rk), "%llu", (unsigned long long)rec_id);
	u = smap_get(&s->rec_vs, rk);
	id = u ? u->u : 0;
	snprintf(vk, sizeof(vk), "%u", id);
	if ((o = smap_get(&s->vs_owner, vk)) && o->blob)
		snprintf(key, cap, "%s|%s|%s", number, claimant, (const char *)o->blob);
	else
		snprintf(key, cap, "%s|%s|vs%u", number, claimant, id);
	if (vsid)
		*vsid = id;
	if (known)
		*known = u != NULL;
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
		/* The claim is durable before it is used: after a restart nobody else can take the VService. */
		const uint8_t k[6] = { PVP_VCR_AUX_PREFIX, AUX_OWNER, (uint8_t)(id >> 24), (uint8_t)(id >> 16),
			               (uint8_t)(id >> 8), (uint8_t)id };
		e->blob_len = strlen(t) + 1;
		if ((rc = pvp_vcr_store_aux_put(s->store, k, sizeof(k), e->blob, e->blob_len - 1)))
			smap_del(&s->vs_owner, key);
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

/* Do VServices \p a and \p b have the same owner (under s->mu)? */
static bool same_owner_locked(vsrv_t *s, uint32_t a, uint32_t b)
{
	char ka[16], kb[16];
	ment_t *oa, *ob;
	snprintf(ka, sizeof(ka), "%u", a);
	snprintf(kb, sizeof(kb), "%u", b);
	oa = smap_get(&s->vs_owner, ka);
	ob = smap_get(&s->vs_owner, kb);
	return oa && ob && oa->blob && ob->blob && !strcmp((const char *)oa->blob, (const char *)ob->blob);
}

static void store_finish(vap_server_t *vap, void *arg)
{
	store_op_t *o = arg;
	vsrv_t *s = o->s;
	vsrv_event_t ev = { .kind = VSRV_EV_STORED, .number = o->number, .status = o->status };
	uint8_t key[2 + VP_E164_BUFLEN];
	const uint8_t val[4] = { (uint8_t)(o->vservice_id >> 24), (uint8_t)(o->vservice_id >> 16),
		                 (uint8_t)(o->vservice_id >> 8), (uint8_t)o->vservice_id };
	size_t kl = aux_key(AUX_NUMBER, o->number, key, sizeof(key));
	bool withdraw_other = false;
	ment_t *e = NULL;
	pthread_mutex_lock(&s->mu);
	/* Kept in the store before the agent is answered, so a restart still answers validations of
	 * the number under its VService (a failed write fails the store: the agent publishes again). */
	if (!o->status && !kl)
		o->status = VP_EINVAL;
	else if (!o->status && (e = smap_get(&s->published, o->number)) && e->u != o->vservice_id &&
	         o->op == VAP_OP_WITHDRAW)
		withdraw_other = true; /* withdrawn under another VService: the local entry stays */
	else if (!o->status && e && e->u != o->vservice_id && !same_owner_locked(s, e->u, o->vservice_id))
		o->status = VP_EPERM; /* another tenant's publication of the number completed first */
	else if (!o->status)
		o->status = o->op == VAP_OP_WITHDRAW ? pvp_vcr_store_aux_del(s->store, key, kl)
		                                     : pvp_vcr_store_aux_put(s->store, key, kl, val, sizeof(val));
	if (o->status) {
		s->st.stores_failed++;
	} else {
		s->st.stores_ok++;
		if (o->op == VAP_OP_WITHDRAW) {
			if (!withdraw_other)
				smap_del(&s->published, o->number);
		} else if ((e = smap_put(&s->published, o->number))) {
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

/*
 * \p agent now works under VService \p vs (its tenant's: vs_access passed).  Kept in
 * the store when it changes, so a record the agent uploads after a restart still
 * goes to that VService (a lost write only falls back to upload_vs_locked's choice).
 */
static void remember_agent_vs(vsrv_t *s, const char *agent, uint32_t vs)
{
	uint8_t key[2 + VAP_MAX_USERNAME + 1];
	const uint8_t val[4] = { (uint8_t)(vs >> 24), (uint8_t)(vs >> 16), (uint8_t)(vs >> 8), (uint8_t)vs };
	size_t kl;
	ment_t *e;
	pthread_mutex_lock(&s->mu);
	if ((e = smap_get(&s->agent_vs, agent)) && e->u == vs) {
		pthread_mutex_unlock(&s->mu);
		return;
	}
	if ((e = smap_put(&s->agent_vs, agent)))
		e->u = vs;
	if ((kl = aux_key(AUX_AGENT_VS, agent, key, sizeof(key))) && pvp_vcr_store_aux_put(s->store, key, kl, val, 4))
		vp_log_warn(LOGMOD, "agent_vservice_not_stored", "srv=%s agent=%s vservice=%u", s->conf.name, agent, vs);
	pthread_mutex_unlock(&s->mu);
}

/*
 * The VService an originating record of \p agent is validated for (under s->mu):
 * the one the agent last published numbers under, if its tenant owns it, else the
 * lowest VService its tenant owns.  VP_EPERM when the tenant owns none: the route
 * would have nobody to go to, and guessing a VService could hand it to another
 * tenant (before, such records went to VService 1, whoever owned it).
 */
static int upload_vs_locked(vsrv_t *s, const char *agent, uint32_t *vsid)
{
	const char *t = tenant_locked(s, agent);
	ment_t *a = smap_get(&s->agent_vs, agent), *o;
	bool found = false;
	char key[16];
	if (a) {
		snprintf(key, sizeof(key), "%u", a->u);
		if ((o = smap_get(&s->vs_owner, key)) && o->blob && !strcmp((const char *)o->blob, t)) {
			*vsid = a->u;
			return 0;
		}
	}
	for (size_t i = 0; i < s->vs_owner.nb; i++) {
		for (o = s->vs_owner.b[i]; o; o = o->next) {
			uint32_t id = (uint32_t)strtoul(o->key, NULL, 10);
			if (o->blob && !strcmp((const char *)o->blob, t) && (!found || id < *vsid)) {
				*vsid = id;
				found = true;
			}
		}
	}
	return found ? 0 : VP_EPERM;
}

/*
 * Is \p number held here by a VService of another tenant than \p agent's (under
 * s->mu)?  A number published on this server answers validations with the URIs
 * of the VService it is published under, so the first tenant to publish it
 * holds it until it withdraws it: another tenant could otherwise redirect the
 * routes (publish it under its own VService), unpublish it (withdraw it), or
 * upload terminating records of calls it invents for it.
 */
static bool number_foreign_locked(vsrv_t *s, const char *number, const char *agent)
{
	ment_t *e = smap_get(&s->published, number), *o;
	char key[16];
	if (!e)
		return false;
	snprintf(key, sizeof(key), "%u", e->u);
	o = smap_get(&s->vs_owner, key);
	return o && o->blob && strcmp((const char *)o->blob, tenant_locked(s, agent)) != 0;
}

static int hook_store(void *ctx, const vap_store_req_t *req)
{
	vsrv_t *s = ctx;
	vsrv_reg_t reg;
	store_op_t *o;
	bool foreign;
	int rc;
	pthread_mutex_lock(&s->mu);
	foreign = number_foreign_locked(s, req->number, req->agent);
	pthread_mutex_unlock(&s->mu);
	if (foreign) {
		vp_log_warn(LOGMOD, "number_refused", "srv=%s agent=%s number=%s vservice=%u op=%u", s->conf.name,
		            req->agent, req->number, req->vservice_id, req->op);
		stat_add(s, &s->st.stores_failed, 1);
		return VP_EPERM;
	}
	if (!(o = calloc(1, sizeof(*o))))
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

/*
 * Record \p id gave its VService a route (under s->mu): appended as (id with
 * UPLOAD_DONE set, 0), so a restart does not validate it again (a second
 * handshake on the same call and a second Notify of the same route).  A lost
 * mark only costs that repetition.
 */
static void upload_log_done(vsrv_t *s, uint64_t id)
{
	if (upload_log_append(s, id | UPLOAD_DONE, 0))
		vp_log_warn(LOGMOD, "upload_done_not_logged", "srv=%s id=%llu", s->conf.name, (unsigned long long)id);
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
	uint32_t vsid = 0;
	int rc = pvp_vcr_make(&r, dir, v->called, v->caller, v->start_ms, v->stop_ms, NULL);
	if (!rc && dir == PVP_DIR_TERM && v->start_ms > vp_clock_now_ms(s->clock) + TERM_FUTURE_TOLERANCE_MS)
		rc = VP_EINVAL;
	if (!rc && dir == PVP_DIR_ORIG) {
		pthread_mutex_lock(&s->mu);
		rc = upload_vs_locked(s, agent, &vsid);
		pthread_mutex_unlock(&s->mu);
	}
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
	if (!rc) {
		/* A call to a number another tenant holds here is not this agent's to record (403). */
		pthread_mutex_lock(&s->mu);
		if (number_foreign_locked(s, r.called, agent))
			rc = VP_EPERM;
		pthread_mutex_unlock(&s->mu);
	}
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

/*
 * The black/white lists of one VService publication, as a policy of their own
 * (seed 001 §B.7: black entries are "never", white entries get the default
 * threshold).  Its rate sketches are unused: rate limits are server-wide.
 */
static int lists_new(vsrv_t *s, const vap_vservice_t *vs, pvp_policy_t **out)
{
	pvp_policy_conf_t pc = { .mode = s->conf.list_mode == VSRV_LIST_WHITE ? PVP_LIST_WHITE : PVP_LIST_BLACK,
		                 .min_entropy_cbits = s->conf.min_entropy_cbits, .table_slots = LISTS_SLOTS };
	int rc = pvp_policy_new(&pc, out);
	for (size_t i = 0; i < vs->n_black && !rc; i++)
		rc = pvp_policy_list(*out, vs->black[i], PVP_THRESHOLD_NEVER);
	for (size_t i = 0; i < vs->n_white && !rc; i++)
		rc = pvp_policy_list(*out, vs->white[i], s->conf.min_entropy_cbits);
	if (rc) {
		pvp_policy_free(*out);
		*out = NULL;
	}
	return rc;
}

/*
 * Apply a VService publication (add: replace; withdraw: drop).  With \p persist
 * it is written to the store first (nothing changes if that fails), so a
 * restart gives the VService back with its URIs and lists.
 */
static int vs_apply(vsrv_t *s, const vap_vservice_t *vs, bool persist)
{
	vservice_t *slot = NULL;
	pvp_policy_t *lists = NULL, *old = NULL;
	const uint8_t key[6] = { PVP_VCR_AUX_PREFIX, AUX_VSERVICE, (uint8_t)(vs->id >> 24), (uint8_t)(vs->id >> 16),
		                 (uint8_t)(vs->id >> 8), (uint8_t)vs->id };
	uint8_t *enc = NULL;
	size_t elen = 0;
	int rc = 0;
	if (vs->op == VAP_OP_ADD && !(rc = lists_new(s, vs, &lists)) && persist) {
		if (!(enc = malloc(VS_ENC_MAX)))
			rc = VP_ENOMEM;
		else if (!(elen = vs_encode(vs, enc, VS_ENC_MAX)))
			rc = VP_ESPACE;
	}
	if (rc) {
		pvp_policy_free(lists);
		free(enc);
		return rc;
	}
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < VSRV_MAX_VSERVICES; i++) {
		if (s->vs[i].used && s->vs[i].id == vs->id) {
			slot = &s->vs[i];
			break;
		}
		if (!s->vs[i].used && !slot)
			slot = &s->vs[i];
	}
	if (persist && (vs->op == VAP_OP_WITHDRAW || slot))
		rc = vs->op == VAP_OP_WITHDRAW ? pvp_vcr_store_aux_del(s->store, key, sizeof(key))
		                               : pvp_vcr_store_aux_put(s->store, key, sizeof(key), enc, elen);
	if (rc) {
		old = lists;
	} else if (vs->op == VAP_OP_WITHDRAW) {
		/* The lists go with the VService (PVP workers read them under s->mu). */
		if (slot && slot->used && slot->id == vs->id) {
			old = slot->lists;
			slot->lists = NULL;
			slot->used = false;
		}
	} else if (!slot) {
		rc = VP_ESPACE;
		old = lists;
	} else {
		/* A publication is the VService's whole state: URIs and lists are replaced. */
		old = slot->lists;
		memset(slot, 0, sizeof(*slot));
		slot->used = true;
		slot->id = vs->id;
		slot->lists = lists;
		for (size_t i = 0; i < vs->n_uris && i < VAP_MAX_URIS; i++)
			snprintf(slot->uris[slot->n_uris++], VAP_MAX_URI, "%s", vs->uris[i]);
	}
	pthread_mutex_unlock(&s->mu);
	pvp_policy_free(old);
	free(enc);
	return rc;
}

static int hook_vservice(void *ctx, const char *agent, const vap_vservice_t *vs)
{
	vsrv_t *s = ctx;
	int rc = vs_access(s, agent, vs->id);
	if (!rc)
		rc = vs_apply(s, vs, true);
	if (!rc && vs->op == VAP_OP_ADD)
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
 * Domain lists for a request on \p number: those of the VService the number
 * is published under (tenant A's blacklist says nothing about tenant B's
 * numbers); a number without a published VService gets the server-wide
 * default (black mode: everybody at the default threshold; white: nobody).
 */
static int lists_cb(void *arg, const char *number, const char *domain, uint32_t *threshold_cbits)
{
	vsrv_t *s = arg;
	const pvp_policy_t *p = s->policy;
	ment_t *e;
	int rc;
	pthread_mutex_lock(&s->mu);
	if ((e = smap_get(&s->published, number)))
		for (size_t i = 0; i < VSRV_MAX_VSERVICES; i++)
			if (s->vs[i].used && s->vs[i].id == e->u && s->vs[i].lists)
				p = s->vs[i].lists;
	rc = pvp_policy_threshold(p, domain, threshold_cbits);
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
	char rk[24], lkey[PVP_CLAIMANT_ID_MAX + 16], tkey[LEARNED_KEY_MAX];
	uint8_t prev_t[VAP_MAX_TICKET];
	size_t prev_t_len = 0;
	ment_t *u, *t;
	(void)prev;
	(void)prev_len; /* the scheduler's prev_ticket hook is not used: the ticket is the tenant's (below) */
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
	/* The previous ticket is the one this tenant learned: another tenant's validations of the
	 * number neither add to nor borrow from its accumulated entropy. */
	learned_key_locked(s, r->id, r->called, c->id, tkey, sizeof(tkey), NULL, NULL);
	if ((t = smap_get(&s->tickets, tkey)) && t->blob) {
		const learned_t *l = (const learned_t *)t->blob;
		prev_t_len = l->route.ticket_len;
		memcpy(prev_t, l->route.ticket, prev_t_len);
	}
	pthread_mutex_unlock(&s->mu);
	if (!rc)
		rc = pvp_client_validate(s->cli, lkey, r, c->methods, attach_connect, &a, prev_t_len ? prev_t : NULL,
		                         prev_t_len, out);
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

/* Keep the client certificate issued with the routes (§6.1), with its notAfter; one too big for a Notify is dropped. */
static void learned_set_cert(vsrv_t *s, learned_t *l, const char *number, const uint8_t *der, size_t len)
{
	const unsigned char *p = der;
	X509 *x = len <= VAP_MAX_CERT ? d2i_X509(NULL, &p, (long)len) : NULL;
	struct tm tm;
	if (!x || p != der + len || !ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm)) {
		vp_log_warn(LOGMOD, "client_cert_dropped", "srv=%s number=%s bytes=%zu err=\"%s\"", s->conf.name, number,
		            len, len > VAP_MAX_CERT ? "larger than a Notify carries" : "unreadable");
		X509_free(x);
		return;
	}
	X509_free(x);
	memcpy(l->route.cert, der, len);
	l->route.cert_len = len;
	l->cert_until_ms = (uint64_t)timegm(&tm) * 1000;
	vp_log_info(LOGMOD, "client_cert", "srv=%s number=%s bytes=%zu until=%llu", s->conf.name, number, len,
	            (unsigned long long)(l->cert_until_ms / 1000));
}

static void route_cb(void *arg, const pvp_route_t *r)
{
	vsrv_t *s = arg;
	char key[LEARNED_KEY_MAX];
	uint8_t akey[LEARNED_KEY_MAX + 2], enc[LEARNED_ENC_MAX];
	vsrv_event_t ev = { .kind = VSRV_EV_ROUTE, .number = r->number, .claimant = r->claimant->id, .route = r };
	uint64_t now_s = vp_clock_now_ms(s->clock) / 1000, until_ms = (uint64_t)r->resp->expires * 1000 + 1;
	notify_op_t *o = NULL;
	learned_t *l = calloc(1, sizeof(*l));
	bool known = false;
	size_t elen = 0, klen = 0;
	uint32_t vsid = 0;
	ment_t *e;
	pthread_mutex_lock(&s->mu);
	learned_key_locked(s, s->cur_rec_id, r->number, r->claimant->id, key, sizeof(key), &vsid, &known);
	pthread_mutex_unlock(&s->mu);
	if (!known) {
		/* The record's VService is forgotten (past retention): nobody to keep or send this for. */
		vp_log_warn(LOGMOD, "route_unowned", "srv=%s number=%s claimant=%s", s->conf.name, r->number,
		            r->claimant->id);
		free(l);
		l = NULL;
	}
	if (l) {
		l->routes = r->resp->status == PVP_ST_ROUTES;
		snprintf(l->route.number, sizeof(l->route.number), "%s", r->number);
		l->route.vservice_id = vsid;
		for (size_t i = 0; l->routes && i < r->resp->nuris && i < VAP_MAX_URIS; i++)
			snprintf(l->route.uris[l->route.n_uris++], VAP_MAX_URI, "%s", r->resp->uris[i]);
		l->route.ticket_len = r->resp->ticket_len <= VAP_MAX_TICKET ? r->resp->ticket_len : 0;
		memcpy(l->route.ticket, r->resp->ticket, l->route.ticket_len);
		if (l->routes && r->cert_len)
			learned_set_cert(s, l, r->number, r->cert, r->cert_len);
		/* Durable before anyone is told: a restart keeps the route, the ticket and the replay. */
		elen = learned_encode(l, until_ms, enc, sizeof(enc));
		klen = aux_key(AUX_LEARNED, key, akey, sizeof(akey));
		if (!elen || !klen || pvp_vcr_store_aux_put(s->store, akey, klen, enc, elen))
			vp_log_error(LOGMOD, "learned_not_stored", "srv=%s number=%s claimant=%s", s->conf.name, r->number,
			             r->claimant->id);
	}
	pthread_mutex_lock(&s->mu);
	if (l && (e = smap_put(&s->tickets, key))) {
		free(e->blob);
		e->blob = (uint8_t *)l;
		e->blob_len = sizeof(*l);
		e->until_ms = until_ms;
	} else {
		free(l);
		l = NULL;
	}
	if (r->resp->status == PVP_ST_ROUTES) {
		s->st.routes++;
		/* Only the VService whose agent uploaded the validated record learns the route. */
		if (known)
			upload_log_done(s, s->cur_rec_id);
		if (known && l && (o = calloc(1, sizeof(*o)))) {
			o->s = s;
			o->route = l->route;
			o->route.expires = r->resp->expires > now_s ? (uint32_t)(r->resp->expires - now_s) : 0;
			if (l->cert_until_ms <= now_s * 1000)
				o->route.cert_len = 0;
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

/*
 * An agent subscribed to VService \p id (VAP thread): replay every unexpired
 * route learned for it, so a Notify sent while no agent listened is not lost.
 */
static void hook_subscribed(void *ctx, const char *agent, uint32_t id, vap_sub_t *sub)
{
	vsrv_t *s = ctx;
	uint64_t now = vp_clock_now_ms(s->clock);
	vap_route_t *v = NULL;
	size_t n, cap = 0, sent = 0, skipped = 0;
	/* One hash bucket at a time: the copy stays small and the lock is held briefly.  (A route learned
	 * meanwhile that doubles the bucket array may be replayed twice or not at all: it is also notified
	 * live to this subscription.) */
	for (size_t i = 0;; i++) {
		n = 0;
		pthread_mutex_lock(&s->mu);
		if (i >= s->tickets.nb) {
			pthread_mutex_unlock(&s->mu);
			break;
		}
		for (ment_t *e = s->tickets.b[i]; e; e = e->next) {
			const learned_t *l = (const learned_t *)e->blob;
			if (!l || !l->routes || l->route.vservice_id != id || e->until_ms < now)
				continue;
			if (sent + n >= VSRV_REPLAY_MAX) {
				skipped++;
				continue;
			}
			if (n == cap) {
				size_t nc = cap ? 2 * cap : 8;
				vap_route_t *nv = realloc(v, nc * sizeof(*nv));
				if (!nv) {
					skipped++;
					continue;
				}
				v = nv;
				cap = nc;
			}
			v[n] = l->route;
			if (l->cert_until_ms <= now)
				v[n].cert_len = 0; /* an expired certificate admits nothing: the route goes with its ticket */
			v[n++].expires = (uint32_t)((e->until_ms - now) / 1000);
		}
		pthread_mutex_unlock(&s->mu);
		for (size_t k = 0; k < n; k++)
			if (!vap_server_notify_sub(s->vap, sub, &v[k]))
				sent++;
	}
	free(v);
	if (sent) {
		stat_add(s, &s->st.notified, sent);
		stat_add(s, &s->st.replayed, sent);
	}
	if (skipped)
		vp_log_warn(LOGMOD, "replay_truncated", "srv=%s agent=%s vservice=%u routes=%zu not_replayed=%zu",
		            s->conf.name, agent, id, sent, skipped);
	else
		vp_log_info(LOGMOD, "replay", "srv=%s agent=%s vservice=%u routes=%zu", s->conf.name, agent, id, sent);
}

void vsrv_maintenance(vsrv_t *s)
{
	uint64_t now = vp_clock_now_ms(s->clock);
	size_t purged = 0, uploads, tickets, ledger = 0;
	int rc = pvp_vcr_store_purge(s->store, &purged), lrc = 0;
	bool ledger_due;
	pthread_mutex_lock(&s->mu);
	if ((ledger_due = now >= s->ledger_purge_ms))
		s->ledger_purge_ms = now + LEDGER_PURGE_EVERY_MS;
	pthread_mutex_unlock(&s->mu);
	if (ledger_due)
		lrc = pvp_ledger_purge(s->ledger, now / 1000, &ledger);
	pthread_mutex_lock(&s->mu);
	s->st.vcr_purged += purged;
	s->st.ledger_purged += ledger;
	uploads = smap_expire(&s->rec_vs, now);
	tickets = learned_expire(s, now);
	pthread_mutex_unlock(&s->mu);
	if (rc || lrc || purged || uploads || tickets || ledger)
		vp_log_info(LOGMOD, "maintenance",
		            "srv=%s vcrs_purged=%zu uploads_forgotten=%zu tickets_expired=%zu ledger_purged=%zu rc=%d ledger_rc=%d",
		            s->conf.name, purged, uploads, tickets, ledger, rc, lrc);
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
			snprintf(key, sizeof(key), "%llu", (unsigned long long)(id & ~UPLOAD_DONE));
			if (id & UPLOAD_DONE) {
				smap_del(&x.logged, key);
				continue;
			}
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
	if ((rc = pvp_vcr_store_open(&stc, &s->store)) || (rc = state_load(s)))
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
	psc.lists = lists_cb;
	psc.lists_arg = s;
	psc.group_bits = conf->group_bits;
	psc.ticket_lifetime_s = conf->ticket_lifetime_s;
	psc.io_timeout_ms = (unsigned)conf->io_timeout_ms;
	psc.clock = clock;
	if (conf->cert_issuer[0]) {
		if (!conf->cert_issuer_key[0]) {
			vp_log_error(LOGMOD, "config", "key=pvp.cert_issuer_key err=\"required with pvp.cert_issuer\"");
			rc = VP_ECONFIG;
			goto fail;
		}
		if ((rc = pvp_cc_issuer_load(conf->cert_issuer, conf->cert_issuer_key, conf->cert_lifetime_s, &s->issuer)))
			goto fail;
		psc.cert_issuer = s->issuer;
	}
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
	if (conf->client_cert_key[0]) {
		FILE *kf = fopen(conf->client_cert_key, "r");
		s->cert_key = kf ? PEM_read_PrivateKey(kf, NULL, NULL, NULL) : NULL;
		if (kf)
			fclose(kf);
		if (!s->cert_key) {
			vp_log_error(LOGMOD, "config", "key=pvp.client_cert_key path=%s err=\"not a readable PEM private key\"",
			             conf->client_cert_key);
			rc = VP_ECONFIG;
			goto fail;
		}
		cc.cert_key = s->cert_key;
	}
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
	sc.route = route_cb;
	sc.route_arg = s;
	sc.clock = clock;
	sc.max_jobs = s->conf.max_jobs;
	if ((rc = pvp_sched_new(&sc, &s->sched)))
		goto fail;
	if ((rc = reschedule_stored(s)))
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
	hooks.store = hook_store;
	hooks.upload_vcr_start = hook_upload_vcr_start;
	hooks.publish_vservice = hook_vservice;
	hooks.subscribed = hook_subscribed;
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
	pvp_cc_issuer_free(s->issuer);
	EVP_PKEY_free(s->cert_key);
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
	for (size_t i = 0; i < VSRV_MAX_VSERVICES; i++)
		pvp_policy_free(s->vs[i].lists);
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

void vsrv_get_vap_stats(vsrv_t *s, vap_server_stats_t *out)
{
	vap_server_get_stats(s->vap, out);
}
