/*
 * node_req - a ring member for the viprd process tests that drives node_request(): it runs a node (the same
 * node_new/node_start as viprd, one shard, its own data_dir and certificate), waits until it has joined, then
 * issues each command of its argument list through the API and prints the decoded answer, one line each:
 *
 *   node_req CONF CMD [CMD ...]
 *     store:RID            a ViPR entry (claimant = this vnode, vservice 1) signed by this node, to RID
 *     badstore:RID         the same entry with its signature broken (the owner must refuse it)
 *     replica:RID          the entry as replica_number 1 (only RID's predecessors may send that)
 *     fetch:RID[@DEST]     Fetch RID's ViPR entries, addressed to Resource-ID DEST (default RID): each entry
 *                          is verified again here (nk_fetch_verify) and counted
 *     fetchuntil:RID[@DEST]  fetch until an entry is there (every 200 ms, at most 15 s): a range arriving
 *     countn:RID,N[@DEST]  fetch RID - i for i in [0, N) until every one has an entry (at most 20 s),
 *                          each addressed to Resource-ID DEST (default: itself): prints `req=countn found=K of=N`
 *     storen:RID,N         store the entry at RID - i for i in [0, N), all N requests at once (as fast as
 *                          node_request takes them): prints `req=storen stored=K of=N` (StoreAns counted)
 *     stat:RID  find:RID   Stat / Find of the ViPR kind at RID
 *     probe:NODE  ping:NODE  appattach:NODE   to a Node-ID
 *     appconnect:NODE      AppAttach for application 5061, which this node serves (node_app_set) at a TCP
 *                          listener of its own: on an AppAttachAns, node_app_connect() to its candidate and
 *                          the listener accepts (`connected=yes`)
 *     after:NODE           prints node_after(NODE) (the Resource-ID routed to NODE's successor)
 *     fetchcert:NODE       fetch NODE's CERTIFICATE_BY_NODE entries (at the hash of NODE, indices 0..3) until
 *                          one is there (every 200 ms, at most 15 s), each verified (NODE-MATCH)
 *     cfgupd:NODE,FILE     ConfigUpdate (type config) to NODE carrying the configuration document in FILE
 *     chain:RID,N          N Stores at once (RID - i, i < N), and from each one's callback (the shard thread,
 *                          inside the commit that answers it) one more Store, to RID - N - i: for a node that
 *                          serves them itself, the nested Stores are served during a commit, and beyond
 *                          max_pending (256) the N first ones make a Store commit the batch from inside its
 *                          own handling.  Then each of the 2N Resource-IDs is fetched and its entry verified.
 *                          Prints `req=chain answered=K of=2N ok=K slowest_ms=T fetched=K of=2N`; every Store
 *                          must be answered with a StoreAns well before the retransmission (1/8 of the
 *                          reliability timer) and every entry must be where it was sent (issue 16)
 *
 * Output: `req=fetch err=success code=0x8 responder=HEX attempts=1 rtt_ms=3 entries=1 rejected=0 ...`.
 * Exit status: 0 if every command was answered (an Error answer counts), 1 otherwise, 2 for a setup error.
 * Every wait is bounded (the reliability timer plus 2 s per command, 30 s to join).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>

#include "common/clock.h"
#include "common/conf.h"
#include "common/errcode.h"
#include "common/log.h"
#include "common/net.h"
#include "control/node/kinds.h"
#include "control/node/node.h"
#include "storage/vipr_kind.h"

#define JOIN_WAIT_MS 30000u
#define APP_ID 5061u /* the application this node serves for appconnect */

typedef struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	bool app_connect; /* appconnect: connect to the answer's candidate */
	int app_fd;
	char line[1024];
	const char *what;
	vp_id_t resource;
	uint32_t vipr_kind;
} waiter_t;

static const char *hex(const vp_id_t *id, char *buf)
{
	return vp_id_to_hex(id, buf);
}

static int on_entry(void *arg, uint32_t kind, const rl_stored_data_t *sd, const dp_cert_ident_t *signer)
{
	size_t *n = arg;
	(void)kind;
	(void)sd;
	(void)signer;
	(*n)++;
	return 0;
}

/* Runs on the shard thread: format the answer, wake the main thread. */
static void on_done(void *arg, const node_answer_t *a)
{
	waiter_t *w = arg;
	char h[VP_ID_HEX_LEN + 1], *p = w->line;
	size_t cap = sizeof(w->line);
	int k;

	k = snprintf(p, cap, "req=%s err=%s", w->what, vp_strerror(a->err));
	if (a->err)
		k += snprintf(p + k, cap - (size_t)k, " attempts=%u", a->attempts);
	if (!a->err) {
		k += snprintf(p + k, cap - (size_t)k, " code=0x%x responder=%s signed=%s attempts=%u rtt_ms=%llu",
		              a->code, hex(&a->responder, h), a->signer ? "yes" : "no", a->attempts,
		              (unsigned long long)a->rtt_ms);
		if (a->code == RL_ERROR && a->body)
			k += snprintf(p + k, cap - (size_t)k, " error=%u info=\"%.*s\"", a->error_code,
			              (int)a->body->u.error.info.len, (const char *)a->body->u.error.info.p);
		if (a->code == RL_FETCH_ANS) {
			st_kind_t kinds[2] = { st_kind_vipr(w->vipr_kind), nk_kind_cert_by_node() };
			nk_fetch_result_t res = { 0 };
			size_t n = 0;
			int err = nk_fetch_verify(a->certs, kinds, 2, &w->resource, a->msg, on_entry, &n, &res);
			k += snprintf(p + k, cap - (size_t)k, " verify=%s entries=%zu rejected=%u", vp_strerror(err), n,
			              res.rejected);
		}
		if (a->code == RL_STAT_ANS && a->body) {
			rl_iter_t it;
			rl_stat_kind_resp_t r;
			size_t n = 0;
			RL_ITER_INIT(&it, &a->body->u.stat_ans.responses);
			while (rl_stat_kind_resp_next(&it, &r) == 1)
				n += RL_LIST_COUNT(&r.values);
			k += snprintf(p + k, cap - (size_t)k, " metas=%zu", n);
		}
		if (a->code == RL_FIND_ANS && a->body) {
			rl_iter_t it;
			rl_find_result_t r;
			RL_ITER_INIT(&it, &a->body->u.find_ans.results);
			while (rl_find_result_next(&it, &r) == 1)
				k += snprintf(p + k, cap - (size_t)k, " closest_len=%u", r.closest.len);
		}
		if (a->code == RL_STORE_ANS && a->body)
			k += snprintf(p + k, cap - (size_t)k, " kinds=%zu", RL_LIST_COUNT(&a->body->u.store_ans.responses));
		if (a->code == RL_APP_ATTACH_ANS && a->body && w->app_connect) {
			int e = node_app_connect(&a->body->u.app_attach, 2000, &w->app_fd);
			k += snprintf(p + k, cap - (size_t)k, " application=%u connect=%s", a->body->u.app_attach.application,
			              vp_strerror(e));
		}
		if (a->code == RL_PROBE_ANS && a->body)
			k += snprintf(p + k, cap - (size_t)k, " probe_infos=%zu", RL_LIST_COUNT(&a->body->u.probe_ans.info));
	}
	(void)k;
	pthread_mutex_lock(&w->mu);
	w->done = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

/* countn: one Fetch of a round; ok once an entry there verified. */
typedef struct cnt {
	vp_id_t res;
	uint32_t kind;
	rl_specifier_t spec;
	int ok;
} cnt_t;

static pthread_mutex_t cnt_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cnt_cv = PTHREAD_COND_INITIALIZER;
static int cnt_done;

/*
 * storen's second producer: node_status_async in a loop on its own thread while the Stores are issued (as
 * viprd's health sample does every second while its ViPR service publishes).  The command ring has one
 * producer at a time: a status pushed without the lock took a request's slot and that request was never
 * called back (issue 16).  Every status and every Store must come back exactly once.
 */
typedef struct st_hammer {
	node_t *node;
	_Atomic bool stop;
	int issued;
} st_hammer_t;

static int st_done;

static void on_status(void *ctx, const node_status_t *st)
{
	(void)ctx;
	(void)st;
	pthread_mutex_lock(&cnt_mu);
	st_done++;
	pthread_cond_signal(&cnt_cv);
	pthread_mutex_unlock(&cnt_mu);
}

static void *status_hammer(void *arg)
{
	st_hammer_t *h = arg;
	for (int i = 0; i < 200000 && !atomic_load(&h->stop); i++) {
		if (node_status_async(h->node, on_status, NULL) == 0)
			h->issued++;
		if (i % 64 == 63)
			usleep(100); /* leave the shard room: the race needs both producers, not a full ring */
	}
	return NULL;
}

/* chain: a Store issued from the callback of another (nested in the commit that answers the first). */
typedef struct chain {
	node_t *node;
	EVP_PKEY *key;
	const rl_signer_identity_t *signer;
	const vp_id_t *self;
	uint32_t kind;
	long n;
	vp_id_t *res;       /* 2n Resource-IDs */
	uint64_t *t_issued; /* ms */
	uint64_t slowest_ms;
	int answered, ok, issued;
} chain_t;

typedef struct chain_arg {
	chain_t *c;
	long i;
} chain_arg_t;

static chain_arg_t *chain_args;

static int chain_issue(chain_t *c, long i);

static void on_chain(void *arg, const node_answer_t *a)
{
	chain_arg_t *ca = arg;
	chain_t *c = ca->c;
	uint64_t ms = vp_time_mono_ns() / 1000000u - c->t_issued[ca->i];
	int nested_err = 0;
	if (ca->i < c->n)
		nested_err = chain_issue(c, c->n + ca->i); /* on the shard thread, inside the commit */
	pthread_mutex_lock(&cnt_mu);
	if (ms > c->slowest_ms)
		c->slowest_ms = ms;
	c->answered++;
	if (!a->err && a->code == RL_STORE_ANS)
		c->ok++;
	else
		fprintf(stderr, "node_req: chain store %ld err=%s code=0x%x after %llu ms\n", ca->i, vp_strerror(a->err),
		        a->code, (unsigned long long)ms);
	if (nested_err)
		fprintf(stderr, "node_req: chain store %ld not issued: %s\n", c->n + ca->i, vp_strerror(nested_err));
	cnt_done++;
	pthread_cond_signal(&cnt_cv);
	pthread_mutex_unlock(&cnt_mu);
}

/* A Store of this vnode's own ViPR entry (claimant = \p self), signed for \p res: the bytes live in \p e, which
 * must outlive the request's sending; \p b is the StoreReq. */
typedef struct own_store {
	uint8_t key[ST_VIPR_KEY_LEN], val[ST_VIPR_VALUE_MAX_LEN], sig[RL_MAX_SIG_LEN];
	rl_stored_data_t sd;
	rl_store_kind_data_t kd;
} own_store_t;

static int own_store(own_store_t *e, rl_body_t *b, const vp_id_t *self, EVP_PKEY *pkey,
                     const rl_signer_identity_t *signer, const vp_id_t *res, uint32_t kind)
{
	st_vipr_key_t k = { *self, 1 };
	st_vipr_value_t v = { *self, 1, ST_VIPR_PVP_WITH_CALLER_ID, NULL, 0 };
	size_t vlen = 0;
	st_vipr_key_encode(&k, e->key);
	st_vipr_value_encode(&v, e->val, sizeof(e->val), &vlen);
	memset(&e->sd, 0, sizeof(e->sd));
	e->sd.storage_time = vp_time_wall_ms();
	e->sd.lifetime = 3600;
	e->sd.model = RL_MODEL_DICTIONARY;
	e->sd.key = (rl_bytes_t){ e->key, ST_VIPR_KEY_LEN };
	e->sd.exists = true;
	e->sd.value = (rl_bytes_t){ e->val, (uint32_t)vlen };
	if (rl_stored_data_sign(pkey, res->b, VP_ID_LEN, kind, &e->sd, signer, e->sig, sizeof(e->sig)))
		return VP_EINVAL;
	memset(&e->kd, 0, sizeof(e->kd));
	e->kd.kind = kind;
	e->kd.values.items = &e->sd;
	e->kd.values.n_items = 1;
	memset(b, 0, sizeof(*b));
	b->code = RL_STORE_REQ;
	b->u.store_req.resource = (rl_bytes_t){ res->b, VP_ID_LEN };
	b->u.store_req.kind_data.items = &e->kd;
	b->u.store_req.kind_data.n_items = 1;
	return 0;
}

/* Store the ViPR entry (claimant = this vnode) at c->res[i], signed for it. */
static int chain_issue(chain_t *c, long i)
{
	own_store_t e;
	rl_body_t b;
	int err;
	if (own_store(&e, &b, c->self, c->key, c->signer, &c->res[i], c->kind))
		return VP_EINVAL;
	chain_args[i] = (chain_arg_t){ c, i };
	c->t_issued[i] = vp_time_mono_ns() / 1000000u;
	for (int t = 0; t < 100; t++) {
		err = node_request(c->node, 0, &c->res[i], true, &b, on_chain, &chain_args[i]);
		if (err != VP_EBUSY)
			break;
		usleep(1000); /* the command ring is full (main thread only): the shard takes them */
	}
	if (!err) {
		pthread_mutex_lock(&cnt_mu);
		c->issued++;
		pthread_mutex_unlock(&cnt_mu);
	}
	return err;
}

/* RID - i (i < 2^64) */
static vp_id_t id_minus(const vp_id_t *rid, uint64_t sub)
{
	vp_id_t r = *rid;
	for (int q = VP_ID_LEN - 1; q >= 0 && sub; q--) {
		unsigned cur = r.b[q], low = (unsigned)(sub & 0xff);
		sub >>= 8;
		if (cur < low) {
			cur += 256;
			sub++;
		}
		r.b[q] = (uint8_t)(cur - low);
	}
	return r;
}

static void on_count(void *arg, const node_answer_t *a)
{
	cnt_t *c = arg;
	if (!a->err && a->code == RL_STORE_ANS) {
		c->ok = 1;
	} else if (!a->err && a->code == RL_FETCH_ANS) {
		st_kind_t k = st_kind_vipr(c->kind);
		nk_fetch_result_t res = { 0 };
		if (!nk_fetch_verify(a->certs, &k, 1, &c->res, a->msg, NULL, NULL, &res) && res.accepted > 0)
			c->ok = 1;
	}
	pthread_mutex_lock(&cnt_mu);
	cnt_done++;
	pthread_cond_signal(&cnt_cv);
	pthread_mutex_unlock(&cnt_mu);
}

/* One request, waited for (bounded); 0 answered, 1 no answer, else the node_request error. */
static int run(node_t *n, waiter_t *w, const vp_id_t *dest, bool resource, const rl_body_t *b, uint64_t wait_ms,
               bool quiet)
{
	struct timespec ts;
	int err;
	w->done = false;
	w->line[0] = 0;
	err = node_request(n, 0, dest, resource, b, on_done, w);
	if (err)
		return err;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += (time_t)(wait_ms / 1000);
	ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&w->mu);
	while (!w->done)
		if (pthread_cond_timedwait(&w->cv, &w->mu, &ts))
			break;
	pthread_mutex_unlock(&w->mu);
	if (!w->done) {
		/* The callback may still come: the waiter must stay valid, so never return before it. */
		fprintf(stderr, "node_req: no completion within %llu ms\n", (unsigned long long)wait_ms);
		_exit(1);
	}
	if (!quiet)
		printf("%s\n", w->line);
	return strstr(w->line, "err=success") ? 0 : 1;
}

typedef struct ident {
	EVP_PKEY *key;
	uint8_t *der;
	int der_len;
	uint8_t hash[RL_MAX_HASH_LEN];
	rl_signer_identity_t signer;
} ident_t;

static int load_ident(const char *dir, ident_t *id)
{
	char path[600];
	FILE *f;
	X509 *x = NULL;
	snprintf(path, sizeof(path), "%s/node.pem", dir);
	if (!(f = fopen(path, "r")) || !(x = PEM_read_X509(f, NULL, NULL, NULL)))
		return -1;
	fclose(f);
	snprintf(path, sizeof(path), "%s/node.key", dir);
	if (!(f = fopen(path, "r")) || !(id->key = PEM_read_PrivateKey(f, NULL, NULL, NULL)))
		return -1;
	fclose(f);
	id->der = NULL;
	id->der_len = i2d_X509(x, &id->der);
	X509_free(x);
	return id->der_len > 0 && !rl_signer_cert_hash(id->der, (size_t)id->der_len, id->hash, &id->signer) ? 0 : -1;
}

int main(int argc, char **argv)
{
	vp_conf_opt_t rows[96];
	size_t nrows;
	vp_conf_err_t ce = { 0 };
	node_conf_t conf;
	node_t *node = NULL;
	waiter_t w = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };
	ident_t id = { 0 };
	char why[256], h[VP_ID_HEX_LEN + 1];
	const vp_id_t *self;
	uint64_t t0, wait_ms;
	int rc = 0, app_lfd = -1;
	uint16_t app_port = 0;
	char app_addr[64];

	if (argc < 3) {
		fprintf(stderr, "usage: node_req CONF CMD...\n");
		return 2;
	}
	memset(&conf, 0, sizeof(conf));
	if (node_conf_schema(rows, 96, &nrows) || vp_conf_schema_load(rows, nrows, argv[1], &conf, &ce) ||
	    node_conf_overlay(&conf, why)) {
		fprintf(stderr, "node_req: %s: %s\n", argv[1], ce.msg[0] ? ce.msg : why);
		return 2;
	}
	conf.shards = 1;
	vp_log_setup((vp_log_level_t)conf.log_level, stderr);
	if (vp_net_listen_tcp("127.0.0.1", 0, 4, 0, &app_lfd, &app_port)) {
		fprintf(stderr, "node_req: no application listener\n");
		return 2;
	}
	snprintf(app_addr, sizeof(app_addr), "127.0.0.1:%u", app_port);
	if (load_ident(conf.data_dir, &id) || node_new(&conf, NULL, &node) || node_app_set(node, APP_ID, app_addr)) {
		fprintf(stderr, "node_req: cannot start the node\n");
		node_free(node);
		return 2;
	}
	{
		/* The API's refusals: before node_start, an unknown method, a shard that does not exist. */
		rl_body_t b = { .code = RL_PING_REQ }, j = { .code = RL_JOIN_REQ };
		vp_id_t any = *node_vnode_id(node, 0);
		int e1 = node_request(node, 0, &any, false, &b, on_done, &w);
		int e2 = node_request(node, 0, &any, false, &j, on_done, &w);
		int e3 = node_request(node, 1, &any, false, &b, on_done, &w);
		printf("api before_start=%s join_method=%s no_shard=%s\n", vp_errname(e1), vp_errname(e2), vp_errname(e3));
	}
	if (node_start(node)) {
		fprintf(stderr, "node_req: cannot start the node\n");
		node_free(node);
		return 2;
	}
	self = node_vnode_id(node, 0);
	w.vipr_kind = conf.vipr_kind_id ? conf.vipr_kind_id : ST_VIPR_KIND_ID_DEFAULT;
	wait_ms = conf.reliability_ms + 2000u;
	/* Joined once a Ping to ourselves is served (VP_ESTATE before). */
	t0 = vp_time_mono_ns() / 1000000u;
	for (;;) {
		rl_body_t b = { .code = RL_PING_REQ };
		w.what = "self";
		if (run(node, &w, self, false, &b, wait_ms, true) == 0)
			break;
		if (vp_time_mono_ns() / 1000000u - t0 > JOIN_WAIT_MS) {
			fprintf(stderr, "node_req: not joined after %u ms (%s)\n", JOIN_WAIT_MS, w.line);
			node_leave(node, 2000);
			node_free(node);
			return 2;
		}
		usleep(200000);
	}
	printf("joined node_id=%s\n", hex(self, h));
	fflush(stdout);

	for (int i = 2; i < argc; i++) {
		char verb[32], arg1[64] = "", arg2[64] = "";
		vp_id_t target, dest;
		rl_body_t b;
		own_store_t os;
		rl_specifier_t spec;
		uint32_t kind = w.vipr_kind;
		int r;

		long count = 0;
		{
			char *comma = strchr(argv[i], ',');
			if (comma)
				count = strtol(comma + 1, NULL, 10);
		}
		if (sscanf(argv[i], "%31[^:]:%63[^@,]@%63s", verb, arg1, arg2) < 2 || vp_id_from_hex(arg1, &target) ||
		    (arg2[0] && vp_id_from_hex(arg2, &dest))) {
			fprintf(stderr, "node_req: bad command %s\n", argv[i]);
			rc = 2;
			break;
		}
		if (!arg2[0])
			dest = target;
		w.what = verb;
		w.resource = target;
		memset(&b, 0, sizeof(b));
		{
			char *at = strchr(argv[i], '@');
			if (at && !strcmp(verb, "countn") && vp_id_from_hex(at + 1, &dest)) {
				fprintf(stderr, "node_req: bad command %s\n", argv[i]);
				rc = 2;
				break;
			}
			if (!at && !strcmp(verb, "countn"))
				arg2[0] = 0;
			else if (!strcmp(verb, "countn"))
				arg2[0] = '@';
		}
		if (!strcmp(verb, "store") || !strcmp(verb, "badstore") || !strcmp(verb, "replica") ||
		    !strcmp(verb, "storen")) {
			if (own_store(&os, &b, self, id.key, &id.signer, &target, kind)) {
				rc = 2;
				break;
			}
			if (!strcmp(verb, "badstore"))
				os.sig[os.sd.sig.value.len / 2] ^= 0x01;
			b.u.store_req.replica_number = !strcmp(verb, "replica") ? 1 : 0;
			if (strcmp(verb, "storen")) {
				r = run(node, &w, &dest, true, &b, wait_ms, false);
			} else {
				/* N Stores at once: each signed for its own Resource-ID, all issued before any answer. */
				long stored = 0;
				int issued = 0;
				cnt_t *c = count > 0 && count <= 100000 ? calloc((size_t)count, sizeof(*c)) : NULL;
				if (!c) {
					rc = 2;
					break;
				}
				st_hammer_t ham = { .node = node };
				pthread_t ham_th;
				bool ham_on;
				struct timespec until;
				cnt_done = 0;
				st_done = 0;
				ham_on = pthread_create(&ham_th, NULL, status_hammer, &ham) == 0;
				for (long j = 0; j < count; j++) {
					c[j].res = id_minus(&target, (uint64_t)j);
					if (own_store(&os, &b, self, id.key, &id.signer, &c[j].res, kind))
						break;
					for (int t = 0; t < 100; t++) {
						int e = node_request(node, 0, &c[j].res, true, &b, on_count, &c[j]);
						if (e == 0) {
							issued++;
							break;
						}
						if (e != VP_EBUSY)
							break;
						usleep(1000); /* the command ring is full: the shard takes them */
					}
				}
				atomic_store(&ham.stop, true);
				if (ham_on)
					pthread_join(ham_th, NULL);
				/* Bounded: every Store is called back by its timer at the latest. */
				clock_gettime(CLOCK_REALTIME, &until);
				until.tv_sec += (time_t)(wait_ms / 1000) + 5;
				pthread_mutex_lock(&cnt_mu);
				while (cnt_done < issued || st_done < ham.issued)
					if (pthread_cond_timedwait(&cnt_cv, &cnt_mu, &until))
						break;
				pthread_mutex_unlock(&cnt_mu);
				for (long j = 0; j < count; j++)
					stored += c[j].ok;
				free(c);
				pthread_mutex_lock(&cnt_mu);
				printf("req=storen stored=%ld of=%ld called_back=%d of=%d statuses=%d of=%d\n", stored, count,
				       cnt_done, issued, st_done, ham.issued);
				r = stored == count && cnt_done == issued && st_done == ham.issued && ham.issued > 0 ? 0 : 1;
				pthread_mutex_unlock(&cnt_mu);
				if (r)
					exit(1); /* a callback may still come: leave without freeing what it would touch */
			}
		} else if (!strcmp(verb, "chain")) {
			chain_t c = { .node = node, .key = id.key, .signer = &id.signer, .self = self, .kind = kind, .n = count };
			struct timespec until;
			int fetched = 0, want;
			if (count <= 0 || count > 10000 || !(c.res = calloc((size_t)count * 2, sizeof(*c.res))) ||
			    !(c.t_issued = calloc((size_t)count * 2, sizeof(*c.t_issued))) ||
			    !(chain_args = calloc((size_t)count * 2, sizeof(*chain_args)))) {
				rc = 2;
				break;
			}
			for (long j = 0; j < 2 * count; j++)
				c.res[j] = id_minus(&target, (uint64_t)j);
			cnt_done = 0;
			for (long j = 0; j < count; j++)
				if (chain_issue(&c, j))
					break;
			/* Bounded: every Store is called back by its timer at the latest. */
			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_sec += (time_t)(wait_ms / 1000) + 5;
			pthread_mutex_lock(&cnt_mu);
			while (cnt_done < 2 * count)
				if (pthread_cond_timedwait(&cnt_cv, &cnt_mu, &until))
					break;
			want = cnt_done == 2 * count;
			pthread_mutex_unlock(&cnt_mu);
			if (!want) {
				printf("req=chain answered=%d of=%ld issued=%d (a callback is missing)\n", cnt_done, 2 * count, c.issued);
				exit(1); /* a callback may still come: leave without freeing what it would touch */
			}
			/* Each entry where it was sent, its signature verified by this fetcher. */
			for (long j = 0; j < 2 * count; j++) {
				memset(&spec, 0, sizeof(spec));
				spec.kind = kind;
				spec.model = RL_MODEL_DICTIONARY;
				memset(&b, 0, sizeof(b));
				b.code = RL_FETCH_REQ;
				b.u.fetch_req.resource = (rl_bytes_t){ c.res[j].b, VP_ID_LEN };
				b.u.fetch_req.specifiers.items = &spec;
				b.u.fetch_req.specifiers.n_items = 1;
				w.resource = c.res[j];
				if (run(node, &w, &c.res[j], true, &b, wait_ms, true) == 0 && strstr(w.line, " entries=1 ") &&
				    strstr(w.line, " verify=success "))
					fetched++;
				else
					fprintf(stderr, "node_req: chain fetch %ld: %s\n", j, w.line);
			}
			printf("req=chain answered=%d of=%ld ok=%d slowest_ms=%llu fetched=%d of=%ld\n", cnt_done, 2 * count,
			       c.ok, (unsigned long long)c.slowest_ms, fetched, 2 * count);
			r = c.ok == 2 * count && fetched == 2 * count ? 0 : 1;
			free(c.res);
			free(c.t_issued);
			free(chain_args);
			chain_args = NULL;
		} else if (!strcmp(verb, "fetch") || !strcmp(verb, "stat") || !strcmp(verb, "fetchuntil")) {
			bool until = !strcmp(verb, "fetchuntil");
			memset(&spec, 0, sizeof(spec));
			spec.kind = kind;
			spec.model = RL_MODEL_DICTIONARY;
			b.code = strcmp(verb, "stat") ? RL_FETCH_REQ : RL_STAT_REQ;
			b.u.fetch_req.resource = (rl_bytes_t){ target.b, VP_ID_LEN };
			b.u.fetch_req.specifiers.items = &spec;
			b.u.fetch_req.specifiers.n_items = 1;
			for (int k = 0; k < 75; k++) {
				r = run(node, &w, &dest, true, &b, wait_ms, until);
				if (!until || (r == 0 && !strstr(w.line, " entries=0 ")))
					break;
				usleep(200000);
			}
			if (until)
				printf("%s\n", w.line);
		} else if (!strcmp(verb, "countn")) {
			/* Every RID - i must come to have an entry (a whole range arriving): rounds of parallel
			 * Fetches of those still missing, every 200 ms, for at most 20 s. */
			uint64_t t1 = vp_time_mono_ns() / 1000000u;
			long found = 0;
			cnt_t *c = count > 0 && count <= 100000 ? calloc((size_t)count, sizeof(*c)) : NULL;
			if (!c) {
				rc = 2;
				break;
			}
			for (;;) {
				int issued = 0;
				cnt_done = 0;
				for (long j = 0; j < count; j++) {
					uint64_t sub = (uint64_t)j;
					rl_specifier_t *sp = &c[j].spec;
					if (c[j].ok)
						continue;
					c[j].res = id_minus(&target, sub);
					c[j].kind = kind;
					memset(sp, 0, sizeof(*sp));
					sp->kind = kind;
					sp->model = RL_MODEL_DICTIONARY;
					memset(&b, 0, sizeof(b));
					b.code = RL_FETCH_REQ;
					b.u.fetch_req.resource = (rl_bytes_t){ c[j].res.b, VP_ID_LEN };
					b.u.fetch_req.specifiers.items = sp;
					b.u.fetch_req.specifiers.n_items = 1;
					if (node_request(node, 0, arg2[0] ? &dest : &c[j].res, true, &b, on_count, &c[j]) == 0)
						issued++;
				}
				pthread_mutex_lock(&cnt_mu);
				while (cnt_done < issued)
					pthread_cond_wait(&cnt_cv, &cnt_mu); /* each request completes (timeout at the timer) */
				pthread_mutex_unlock(&cnt_mu);
				found = 0;
				for (long j = 0; j < count; j++)
					found += c[j].ok;
				if (found == count || vp_time_mono_ns() / 1000000u - t1 > 20000u)
					break;
				usleep(200000);
			}
			free(c);
			printf("req=countn found=%ld of=%ld ms=%llu\n", found, count,
			       (unsigned long long)(vp_time_mono_ns() / 1000000u - t1));
			r = found == count ? 0 : 1;
		} else if (!strcmp(verb, "find")) {
			b.code = RL_FIND_REQ;
			b.u.find_req.resource = (rl_bytes_t){ target.b, VP_ID_LEN };
			b.u.find_req.kinds.items = &kind;
			b.u.find_req.kinds.n_items = 1;
			r = run(node, &w, &dest, true, &b, wait_ms, false);
		} else if (!strcmp(verb, "probe")) {
			static const uint8_t types[] = { RL_PROBE_RESPONSIBLE_SET, RL_PROBE_UPTIME };
			b.code = RL_PROBE_REQ;
			b.u.probe_req.requested.items = types;
			b.u.probe_req.requested.n_items = 2;
			r = run(node, &w, &target, false, &b, wait_ms, false);
		} else if (!strcmp(verb, "ping")) {
			b.code = RL_PING_REQ;
			r = run(node, &w, &target, false, &b, wait_ms, false);
		} else if (!strcmp(verb, "appattach")) {
			b.code = RL_APP_ATTACH_REQ;
			b.u.app_attach.ufrag = (rl_bytes_t){ (const uint8_t *)"-", 1 };
			b.u.app_attach.password = (rl_bytes_t){ (const uint8_t *)"-", 1 };
			b.u.app_attach.application = 5060;
			b.u.app_attach.role = (rl_bytes_t){ (const uint8_t *)"passive", 7 };
			r = run(node, &w, &target, false, &b, wait_ms, false);
		} else if (!strcmp(verb, "appconnect")) {
			b.code = RL_APP_ATTACH_REQ;
			b.u.app_attach.ufrag = (rl_bytes_t){ (const uint8_t *)"-", 1 };
			b.u.app_attach.password = (rl_bytes_t){ (const uint8_t *)"-", 1 };
			b.u.app_attach.application = APP_ID;
			b.u.app_attach.role = (rl_bytes_t){ (const uint8_t *)"passive", 7 };
			w.app_connect = true;
			w.app_fd = -1;
			r = run(node, &w, &target, false, &b, wait_ms, false);
			w.app_connect = false;
			if (w.app_fd >= 0) {
				/* The connection must reach our own listener. */
				int cfd = accept(app_lfd, NULL, NULL);
				printf("req=appconnect connected=%s\n", cfd >= 0 ? "yes" : "no");
				if (cfd >= 0)
					close(cfd);
				close(w.app_fd);
			}
		} else if (!strcmp(verb, "fetchcert")) {
			static rl_array_range_t all = { 0, 3 };
			w.resource = vp_id_from_name(target.b, VP_ID_LEN);
			memset(&spec, 0, sizeof(spec));
			spec.kind = RL_KIND_CERTIFICATE_BY_NODE;
			spec.model = RL_MODEL_ARRAY;
			spec.indices.items = &all;
			spec.indices.n_items = 1;
			b.code = RL_FETCH_REQ;
			b.u.fetch_req.resource = (rl_bytes_t){ w.resource.b, VP_ID_LEN };
			b.u.fetch_req.specifiers.items = &spec;
			b.u.fetch_req.specifiers.n_items = 1;
			for (int k = 0; k < 75; k++) {
				r = run(node, &w, &w.resource, true, &b, wait_ms, true);
				if (r == 0 && !strstr(w.line, " entries=0 "))
					break;
				usleep(200000);
			}
			printf("%s\n", w.line);
		} else if (!strcmp(verb, "cfgupd")) {
			const char *file = strchr(argv[i], ',');
			char *doc = NULL;
			long dl = -1;
			FILE *f = file ? fopen(file + 1, "rb") : NULL;
			if (f && !fseek(f, 0, SEEK_END) && (dl = ftell(f)) >= 0 && !fseek(f, 0, SEEK_SET) &&
			    (doc = malloc((size_t)dl + 1)) && fread(doc, 1, (size_t)dl, f) != (size_t)dl)
				dl = -1;
			if (f)
				fclose(f);
			if (!doc || dl < 0) {
				fprintf(stderr, "node_req: cfgupd: cannot read %s\n", file ? file + 1 : "(no file)");
				free(doc);
				rc = 2;
				break;
			}
			b.code = RL_CONFIG_UPDATE_REQ;
			b.u.config_update_req.type = RL_CONFIG_UPDATE_CONFIG;
			b.u.config_update_req.config_data = (rl_bytes_t){ (const uint8_t *)doc, (uint32_t)dl };
			r = run(node, &w, &target, false, &b, wait_ms, false);
			free(doc);
		} else if (!strcmp(verb, "after")) {
			vp_id_t x = node_after(&target);
			printf("after=%s\n", hex(&x, h));
			r = 0;
		} else {
			fprintf(stderr, "node_req: unknown command %s\n", verb);
			rc = 2;
			break;
		}
		if (r < 0)
			printf("req=%s err=%s (not started)\n", verb, vp_strerror(r));
		if (r)
			rc = 1;
		fflush(stdout);
	}
	node_leave(node, 3000);
	node_free(node);
	close(app_lfd);
	EVP_PKEY_free(id.key);
	OPENSSL_free(id.der);
	return rc;
}
