/*
 * control/node/kinds.c - the vnode storage service (kinds.h).
 *
 * Memory: every buffer is allocated in nk_new() or grown on demand and kept,
 * so the message path allocates nothing in steady state.  Answers point into
 * the nk_t's answer arena (valid until the next call); Store answers waiting
 * for the commit, and the bodies to replicate, live in the pending arena.
 */
#include "control/node/kinds.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>

#include "common/buf.h"
#include "common/log.h"

/* Bounds of one request: a 64 KiB message holds at most ~800 StoredData of the smallest size. */
#define NK_MAX_ENTRIES 1024u
#define NK_MAX_KINDS 16u
#define NK_MAX_SIGNERS 64u
#define NK_MAX_CERTS 64u
#define NK_MAX_SPEC_ITEMS 1024u
/* Room kept for the forwarding header (via list) and the signature besides an answer's body and certificates. */
#define NK_ANSWER_MARGIN 4096u
#define NK_ARENA (2u * RL_MAX_MESSAGE_SIZE)
#define NK_WHOLE_RING 1000000000u

typedef struct nk_signer_slot {
	uint8_t hash[DP_CERT_HASH_LEN];
	vp_id_t ids[DP_CERT_MAX_NODE_IDS];
	st_signer_t sg;
} nk_signer_slot_t;

/* A Store waiting for the commit. */
typedef struct nk_pending {
	uint64_t tag;
	size_t ans_off, ans_len; /* encoded StoreAns (or ErrorResponse) in the pending arena */
	uint16_t code;           /* RL_STORE_ANS or RL_ERROR */
	uint16_t error_code;
	const char *error_info;
	size_t body_off, body_len; /* the StoreReq body to replicate (len 0 = none) */
	vp_id_t succ[CHORD_REPLICAS];
	uint8_t n_succ;
} nk_pending_t;

/* A batch's pending answers: entries and the bytes they point into (swapped as one value). */
typedef struct nk_pbuf {
	nk_pending_t *ent;
	uint8_t *buf;   /* pending answers and bodies to replicate */
	size_t cap;
} nk_pbuf_t;

typedef struct nk_range {
	vp_id_t lo, hi;
	bool whole;
} nk_range_t;

struct nk {
	nk_conf_t conf;
	st_shard_t *sh;
	dp_cert_store_t *certs;
	nk_stats_t stats;
	/* request scratch */
	st_entry_t *entries;
	st_kind_data_t kinds[NK_MAX_KINDS];
	nk_signer_slot_t *signers;
	size_t n_signers;
	rl_stored_data_t *sds;
	rl_fetch_kind_resp_t fresp[NK_MAX_KINDS];
	rl_stat_kind_resp_t sresp[NK_MAX_KINDS];
	rl_stored_meta_t *metas;
	rl_find_result_t find[NK_MAX_KINDS];
	st_specifier_t specs[NK_MAX_KINDS];
	st_array_range_t *ranges;
	st_dict_key_t *keys;
	rl_cert_t certs_out[NK_MAX_CERTS];
	uint8_t certs_hash[NK_MAX_CERTS][DP_CERT_HASH_LEN]; /* the cert_hash of each, to carry each once */
	size_t n_certs_out;
	vp_id_t replicas[CHORD_REPLICAS];
	rl_node_list_t nodes[NK_MAX_KINDS];
	rl_store_kind_resp_t kresp[NK_MAX_KINDS];
	/* byte arenas */
	uint8_t *arena;      /* copies of entry bytes, certificates */
	size_t arena_len;
	uint8_t *ans;        /* the encoded answer body */
	nk_pbuf_t pb;        /* this batch's pending answers */
	size_t pend_len;
	size_t n_pend;
	bool batch_open;
	/* the batch nk_commit is answering, moved aside so that a Store served from inside its hooks (a callback
	 * issued it to this vnode) queues into the next batch instead of this one's list */
	nk_pbuf_t cpb;
	bool committing;
	nk_range_t ranges_known[NK_MAX_VNODES];
	size_t n_ranges_known;
	/* fetch/stat walk state */
	size_t n_sds, n_resp;
	char info[16]; /* error_info naming an unknown Kind-ID */
};

void nk_conf_default(nk_conf_t *conf)
{
	memset(conf, 0, sizeof(*conf));
	conf->max_pending = NK_PENDING_DEFAULT;
}

st_kind_t nk_kind_cert_by_node(void)
{
	st_kind_t k;
	memset(&k, 0, sizeof(k));
	k.id = RL_KIND_CERTIFICATE_BY_NODE;
	snprintf(k.name, sizeof(k.name), "CERTIFICATE_BY_NODE");
	k.model = ST_MODEL_ARRAY;
	k.acl = ST_ACL_NODE_MATCH;
	k.max_count = 4;
	k.max_size = 8192;
	k.min_lifetime = 60;
	k.max_lifetime = 172800;
	return k;
}

int nk_new(const nk_conf_t *conf, st_shard_t *shard, dp_cert_store_t *certs, nk_t **out)
{
	nk_t *k;
	if (!out)
		return VP_EINVAL;
	*out = NULL;
	if (!conf || !shard || !certs || !conf->max_pending)
		return VP_EINVAL;
	if (!(k = calloc(1, sizeof(*k))))
		return VP_ENOMEM;
	k->conf = *conf;
	k->sh = shard;
	k->certs = certs;
	k->entries = calloc(NK_MAX_ENTRIES, sizeof(*k->entries));
	k->signers = calloc(NK_MAX_SIGNERS, sizeof(*k->signers));
	k->sds = calloc(NK_MAX_ENTRIES, sizeof(*k->sds));
	k->metas = calloc(NK_MAX_ENTRIES, sizeof(*k->metas));
	k->ranges = calloc(NK_MAX_SPEC_ITEMS, sizeof(*k->ranges));
	k->keys = calloc(NK_MAX_SPEC_ITEMS, sizeof(*k->keys));
	k->arena = malloc(NK_ARENA);
	k->ans = malloc(RL_MAX_MESSAGE_SIZE);
	k->pb.ent = calloc(conf->max_pending, sizeof(*k->pb.ent));
	k->pb.cap = RL_MAX_MESSAGE_SIZE;
	k->pb.buf = malloc(k->pb.cap);
	k->cpb.ent = calloc(conf->max_pending, sizeof(*k->cpb.ent));
	k->cpb.cap = RL_MAX_MESSAGE_SIZE;
	k->cpb.buf = malloc(k->cpb.cap);
	if (!k->entries || !k->signers || !k->sds || !k->metas || !k->ranges || !k->keys || !k->arena ||
	    !k->ans || !k->pb.ent || !k->pb.buf || !k->cpb.ent || !k->cpb.buf) {
		nk_free(k);
		return VP_ENOMEM;
	}
	*out = k;
	return 0;
}

void nk_free(nk_t *k)
{
	if (!k)
		return;
	if (k->batch_open)
		st_batch_abort(k->sh);
	free(k->entries);
	free(k->signers);
	free(k->sds);
	free(k->metas);
	free(k->ranges);
	free(k->keys);
	free(k->arena);
	free(k->ans);
	free(k->pb.ent);
	free(k->pb.buf);
	free(k->cpb.ent);
	free(k->cpb.buf);
	free(k);
}

void nk_stats(const nk_t *k, nk_stats_t *out)
{
	*out = k->stats;
}

static uint64_t now_ms(const nk_t *k)
{
	return vp_clock_now_ms(k->conf.clock);
}

/* ---- roles and ranges ---------------------------------------------------- */

static bool is_pred(const chord_table_t *t, const vp_id_t *id, uint32_t max)
{
	for (uint32_t i = 0; i < t->npred && i < max; i++)
		if (vp_id_eq(&t->pred[i], id))
			return true;
	return false;
}

/* (pred[2], self], or the whole ring while fewer than 3 predecessors are known. */
static bool holds(const chord_table_t *t, const vp_id_t *rid)
{
	if (t->npred <= CHORD_REPLICAS)
		return true;
	return vp_id_in_oc(rid, &t->pred[CHORD_REPLICAS], &t->self);
}

unsigned nk_sender_role(const chord_table_t *t, const vp_id_t *sender, const vp_id_t *resource)
{
	unsigned role = 0;
	if (!t || !sender || !resource || vp_id_eq(sender, &t->self))
		return 0;
	if (holds(t, resource)) {
		bool nb = is_pred(t, sender, t->npred);
		for (uint32_t i = 0; i < t->nsucc && !nb; i++)
			nb = vp_id_eq(&t->succ[i], sender);
		if (nb)
			role |= NK_ROLE_NEIGHBOUR;
	}
	/* The sender must be the predecessor responsible for the resource: pred[i] for (pred[i+1], pred[i]]. */
	for (uint32_t i = 0; i < CHORD_REPLICAS && i < t->npred; i++) {
		if (!vp_id_eq(&t->pred[i], sender))
			continue;
		if (i + 1 >= t->npred) {
			/* Small ring: the predecessor's predecessor is unknown or self; it owns what we do not. */
			if (!vp_id_in_oc(resource, &t->pred[0], &t->self))
				role |= NK_ROLE_REPLICA;
		} else if (vp_id_in_oc(resource, &t->pred[i + 1], &t->pred[i])) {
			role |= NK_ROLE_REPLICA;
		}
	}
	return role;
}

static uint32_t table_fraction(const chord_table_t *t)
{
	if (t->npred <= CHORD_REPLICAS)
		return NK_WHOLE_RING;
	return vp_id_fraction_ppb(&t->pred[CHORD_REPLICAS], &t->self);
}

uint32_t nk_set_range(nk_t *k, const chord_table_t *const *tables, size_t n)
{
	uint64_t sum = 0;
	k->n_ranges_known = 0;
	for (size_t i = 0; i < n; i++) {
		const chord_table_t *t = tables[i];
		if (!t)
			continue;
		sum += table_fraction(t);
		if (k->n_ranges_known < NK_MAX_VNODES) {
			nk_range_t *r = &k->ranges_known[k->n_ranges_known++];
			r->whole = t->npred <= CHORD_REPLICAS;
			r->hi = t->self;
			if (!r->whole)
				r->lo = t->pred[CHORD_REPLICAS];
		}
	}
	if (sum > NK_WHOLE_RING || n == 0)
		sum = NK_WHOLE_RING;
	st_shard_set_fraction(k->sh, (uint32_t)sum);
	return (uint32_t)sum;
}

/* ---- answers ------------------------------------------------------------- */

static void answer_error(nk_t *k, const nk_request_t *req, nk_answer_t *ans, uint16_t code, const char *info)
{
	rl_body_t b;
	vp_wr_t wr;
	memset(ans, 0, sizeof(*ans));
	memset(&b, 0, sizeof(b));
	b.code = RL_ERROR;
	b.u.error.code = code;
	b.u.error.info.p = (const uint8_t *)info;
	b.u.error.info.len = info ? (uint32_t)strlen(info) : 0;
	vp_wr_init(&wr, k->ans, RL_MAX_MESSAGE_SIZE);
	rl_body_encode(&wr, &b);
	ans->tag = req ? req->tag : 0;
	ans->code = RL_ERROR;
	ans->body.p = k->ans;
	ans->body.len = (uint32_t)vp_wr_len(&wr);
	ans->error_code = code;
	ans->error_info = info ? info : "";
}

static void answer_st_error(nk_t *k, const nk_request_t *req, nk_answer_t *ans, int err)
{
	answer_error(k, req, ans, st_reload_error(err), st_reload_error_info(err));
}

/*
 * Encode answer body \p b.  The whole answer message (header, body, the certificates carried, the
 * signature) must fit RL_MAX_MESSAGE_SIZE and the request's max_response_length (if set): else
 * Response_Too_Large (RFC 6940 §6.3.2).
 */
static int encode_answer(nk_t *k, const nk_request_t *req, nk_answer_t *ans, const rl_body_t *b)
{
	size_t limit = RL_MAX_MESSAGE_SIZE, certs = 0;
	uint32_t mrl = req->msg->hdr.max_response_length;
	vp_wr_t wr;
	int rc;
	if (mrl && mrl < limit)
		limit = mrl;
	for (size_t i = 0; i < k->n_certs_out; i++)
		certs += k->certs_out[i].der.len + 3u;
	if (limit < NK_ANSWER_MARGIN + certs + 16) {
		answer_error(k, req, ans, RL_ERR_RESPONSE_TOO_LARGE, "response-too-large");
		return 0;
	}
	vp_wr_init(&wr, k->ans, limit - NK_ANSWER_MARGIN - certs);
	if ((rc = rl_body_encode(&wr, b)) || wr.err) {
		answer_error(k, req, ans, RL_ERR_RESPONSE_TOO_LARGE, "response-too-large");
		return 0;
	}
	memset(ans, 0, sizeof(*ans));
	ans->tag = req->tag;
	ans->code = b->code;
	ans->body.p = k->ans;
	ans->body.len = (uint32_t)vp_wr_len(&wr);
	ans->certs = k->certs_out;
	ans->n_certs = k->n_certs_out;
	return 0;
}

/* Copy n bytes into the arena; NULL when it is full. */
static const uint8_t *arena_copy(nk_t *k, const void *p, size_t n)
{
	uint8_t *d;
	if (n > NK_ARENA - k->arena_len)
		return NULL;
	d = k->arena + k->arena_len;
	if (n)
		memcpy(d, p, n);
	k->arena_len += n;
	return d;
}

/* Add the certificate whose hash \p id names (from the cache) to certs_out, once. */
static void add_cert(nk_t *k, const rl_signer_identity_t *id)
{
	const dp_cert_ident_t *ci;
	const uint8_t *der;
	unsigned char *p;
	int len;
	if (id->hash.len != DP_CERT_HASH_LEN)
		return;
	for (size_t i = 0; i < k->n_certs_out; i++)
		if (!memcmp(k->certs_hash[i], id->hash.p, DP_CERT_HASH_LEN))
			return;
	if (k->n_certs_out >= NK_MAX_CERTS || !(ci = dp_cert_lookup(k->certs, id->hash.p)))
		return;
	len = i2d_X509(ci->x509, NULL);
	if (len <= 0 || (size_t)len > NK_ARENA - k->arena_len)
		return;
	der = k->arena + k->arena_len;
	p = k->arena + k->arena_len;
	if (i2d_X509(ci->x509, &p) != len)
		return;
	k->arena_len += (size_t)len;
	k->certs_out[k->n_certs_out].type = RL_CERT_X509;
	k->certs_out[k->n_certs_out].der.p = der;
	k->certs_out[k->n_certs_out].der.len = (uint32_t)len;
	memcpy(k->certs_hash[k->n_certs_out], id->hash.p, DP_CERT_HASH_LEN);
	k->n_certs_out++;
}

static int model_fn(void *ctx, uint32_t kind)
{
	const st_kind_t *kd = st_shard_kind(((nk_t *)ctx)->sh, kind);
	return kd ? (int)kd->model : VP_EUNKNOWN_KIND;
}

static int rid_of(const rl_bytes_t *b, vp_id_t *rid)
{
	if (b->len != VP_ID_LEN)
		return VP_EMALFORMED;
	memcpy(rid->b, b->p, VP_ID_LEN);
	return 0;
}

/* ---- Store --------------------------------------------------------------- */

/* The signer slot for certificate \p id (Node-IDs copied: cache entries may be replaced). */
static const st_signer_t *signer_slot(nk_t *k, const dp_cert_ident_t *id)
{
	nk_signer_slot_t *s;
	for (size_t i = 0; i < k->n_signers; i++)
		if (!memcmp(k->signers[i].hash, id->hash, DP_CERT_HASH_LEN))
			return &k->signers[i].sg;
	if (k->n_signers >= NK_MAX_SIGNERS)
		return NULL;
	s = &k->signers[k->n_signers++];
	memcpy(s->hash, id->hash, DP_CERT_HASH_LEN);
	memcpy(s->ids, id->node_ids, id->n_node_ids * sizeof(vp_id_t));
	s->sg = (st_signer_t){ s->ids, id->n_node_ids, NULL, 0 };
	return &s->sg;
}

static int pend_put(nk_t *k, const void *p, size_t n, size_t *off)
{
	if (n > k->pb.cap - k->pend_len) {
		size_t cap = k->pb.cap;
		uint8_t *nb;
		while (n > cap - k->pend_len)
			cap *= 2;
		if (!(nb = realloc(k->pb.buf, cap)))
			return VP_ENOMEM;
		k->pb.buf = nb;
		k->pb.cap = cap;
	}
	*off = k->pend_len;
	memcpy(k->pb.buf + k->pend_len, p, n);
	k->pend_len += n;
	return 0;
}

/* Store the verified entries one request at a time (neighbour stores): bad ones are refused alone. */
static int store_one_by_one(nk_t *k, const st_store_req_t *base, size_t n_kinds, uint64_t *gens,
                            uint32_t *stored, int *first_err)
{
	for (size_t i = 0; i < n_kinds; i++) {
		const st_kind_data_t *kd = &base->kinds[i];
		for (size_t j = 0; j < kd->n_values; j++) {
			st_kind_data_t one = { kd->kind, 0, &kd->values[j], 1 };
			st_store_req_t r = *base;
			uint64_t g;
			int rc;
			r.kinds = &one;
			r.n_kinds = 1;
			rc = st_store(k->sh, &r, &g, NULL);
			if (rc) {
				k->stats.entries_refused++;
				if (!*first_err)
					*first_err = rc;
				vp_log_warn("node", "neighbour_entry_refused", "kind=%u error=%s", (unsigned)kd->kind,
				            vp_strerror(rc));
				continue;
			}
			gens[i] = g;
			(*stored)++;
		}
	}
	return 0;
}

static int handle_store(nk_t *k, const nk_request_t *req, nk_answer_t *ans)
{
	const rl_message_t *m = req->msg;
	rl_body_t b;
	rl_iter_t it, vit;
	rl_store_kind_data_t kd;
	rl_stored_data_t sd;
	st_store_req_t sreq;
	vp_id_t rid;
	uint64_t gens[NK_MAX_KINDS] = { 0 };
	uint32_t bad_kind = 0, stored = 0;
	size_t n_kinds = 0, n_entries = 0;
	unsigned role;
	bool neighbour, own = true;
	int rc, r, first_err = 0;
	nk_pending_t *p;
	rl_body_t ab;
	vp_wr_t wr;

	if (k->n_pend >= k->conf.max_pending)
		return VP_EBUSY;
	k->arena_len = 0;
	k->n_signers = 0;
	k->n_certs_out = 0;
	if (rl_body_decode(RL_STORE_REQ, m->contents.body.p, m->contents.body.len, model_fn, k, &b) ||
	    rid_of(&b.u.store_req.resource, &rid)) {
		answer_error(k, req, ans, RL_ERR_INVALID_MESSAGE, "malformed-store");
		return 0;
	}
	if (b.u.store_req.replica_number > CHORD_REPLICAS) {
		answer_error(k, req, ans, RL_ERR_INVALID_MESSAGE, "replica-number");
		return 0;
	}
	role = dp_cert_ident_has(req->signer, req->sender) ? nk_sender_role(req->table, req->sender, &rid) : 0;
	if (b.u.store_req.replica_number > 0 && !(role & NK_ROLE_REPLICA)) {
		char sh[VP_ID_HEX_LEN + 1] = "-", vh[VP_ID_HEX_LEN + 1] = "-", rh[VP_ID_HEX_LEN + 1];
		k->stats.replica_refused++;
		/* Which vnode refused which sender for what: a ring view that disagrees shows as one pair repeating
		 * (at a join it lasts until the next stabilization). */
		if (req->sender)
			vp_id_to_hex(req->sender, sh);
		if (req->vnode)
			vp_id_to_hex(req->vnode, vh);
		vp_log_warn("node", "replica_refused",
		            "replica_number=%u reason=not-a-replica-sender sender=%s vnode=%s resource=%s npred=%u",
		            (unsigned)b.u.store_req.replica_number, sh, vh, vp_id_to_hex(&rid, rh),
		            req->table ? (unsigned)req->table->npred : 0u);
		answer_error(k, req, ans, RL_ERR_FORBIDDEN, "not-a-replica-sender");
		return 0;
	}
	neighbour = b.u.store_req.replica_number > 0 || (role & NK_ROLE_NEIGHBOUR);

	/* Verify every StoredData against its own signature; Node-IDs only from its certificate. */
	RL_ITER_INIT(&it, &b.u.store_req.kind_data);
	while ((r = rl_store_kind_data_next(&it, &kd)) == 1) {
		const st_kind_t *kind = st_shard_kind(k->sh, kd.kind);
		st_kind_data_t *out;
		if (n_kinds >= NK_MAX_KINDS) {
			answer_error(k, req, ans, RL_ERR_INVALID_MESSAGE, "too-many-kinds");
			return 0;
		}
		if (!kind) {
			vp_log_info("node", "store_refused", "kind=%u error=unknown-kind", (unsigned)kd.kind);
			snprintf(k->info, sizeof(k->info), "%u", (unsigned)kd.kind);
			answer_error(k, req, ans, RL_ERR_UNKNOWN_KIND, k->info);
			return 0;
		}
		out = &k->kinds[n_kinds++];
		*out = (st_kind_data_t){ kd.kind, kd.generation, &k->entries[n_entries], 0 };
		RL_ITER_INIT(&vit, &kd.values);
		while ((r = rl_stored_data_next(&vit, (rl_data_model_t)kind->model, &sd)) == 1) {
			const dp_cert_ident_t *id = NULL;
			dp_cert_reason_t why;
			st_entry_t *e;
			uint8_t sigb[RL_MAX_SIG_LEN + 2 * RL_MAX_HASH_LEN + 16];
			vp_wr_t sw;
			if (n_entries >= NK_MAX_ENTRIES) {
				answer_error(k, req, ans, RL_ERR_DATA_TOO_LARGE, "too-many-entries");
				return 0;
			}
			if (dp_cert_stored_data_verify(k->certs, rid.b, VP_ID_LEN, kd.kind, &sd, &m->sec.certs, NULL, 0,
			                               &id, &why)) {
				k->stats.bad_signatures++;
				vp_log_warn("node", "stored_data_refused", "kind=%u reason=%s neighbour=%d",
				            (unsigned)kd.kind, dp_cert_reason_name(why), (int)neighbour);
				if (!neighbour) {
					answer_error(k, req, ans, RL_ERR_FORBIDDEN, "bad-signature");
					return 0;
				}
				k->stats.entries_refused++;
				if (!first_err)
					first_err = VP_EFORBIDDEN;
				continue;
			}
			own = own && !memcmp(id->hash, req->signer->hash, sizeof(id->hash));
			e = &k->entries[n_entries];
			memset(e, 0, sizeof(*e));
			e->index = sd.index;
			e->key = sd.key.p;
			e->key_len = (uint16_t)sd.key.len;
			e->storage_time = sd.storage_time;
			e->lifetime = sd.lifetime;
			e->exists = sd.exists;
			e->value = sd.value.p;
			e->value_len = sd.value.len;
			vp_wr_init(&sw, sigb, sizeof(sigb));
			if (rl_signature_encode(&sw, &sd.sig) || sw.err ||
			    !(e->sig = arena_copy(k, sigb, vp_wr_len(&sw))) || !(e->signer = signer_slot(k, id))) {
				answer_error(k, req, ans, RL_ERR_INVALID_MESSAGE, "too-many-signers");
				return 0;
			}
			e->sig_len = (uint32_t)vp_wr_len(&sw);
			out->n_values++;
			n_entries++;
		}
		if (r < 0)
			break;
	}
	if (r < 0) {
		answer_error(k, req, ans, RL_ERR_INVALID_MESSAGE, "malformed-store");
		return 0;
	}
	/* A neighbour storing only entries it signed itself is a client like any other (its own
	 * registrations), not a handoff: policed per signer and copied to the successors.  Without this a
	 * carrier's node that happens to be the responsible peer's neighbour would keep one copy. */
	if (neighbour && b.u.store_req.replica_number == 0 && own && !first_err && n_entries)
		neighbour = false;

	memset(&sreq, 0, sizeof(sreq));
	sreq.resource = rid;
	sreq.replica_number = b.u.store_req.replica_number;
	sreq.kinds = k->kinds;
	sreq.n_kinds = n_kinds;
	sreq.signers = req->signer->node_ids;
	sreq.n_signers = req->signer->n_node_ids;
	sreq.unpoliced = neighbour;
	if (!k->batch_open) {
		if ((rc = st_batch_begin(k->sh))) {
			answer_st_error(k, req, ans, rc);
			return 0;
		}
		k->batch_open = true;
	}
	rc = st_store(k->sh, &sreq, gens, &bad_kind);
	if (rc == 0 && n_entries == 0 && first_err) {
		rc = first_err; /* every entry of a neighbour store was refused */
	} else if (rc == 0) {
		stored = (uint32_t)n_entries;
	} else if (neighbour && rc != VP_EUNKNOWN_KIND && rc != VP_EDB) {
		/* One bad entry must not cost the good ones of a replica or handoff. */
		first_err = 0;
		store_one_by_one(k, &sreq, n_kinds, gens, &stored, &first_err);
		rc = stored || n_entries == 0 ? 0 : first_err;
	}
	if (rc) {
		if (rc == VP_EUNKNOWN_KIND)
			vp_log_info("node", "store_refused", "kind=%u error=%s", (unsigned)bad_kind, vp_strerror(rc));
		answer_st_error(k, req, ans, rc);
		return 0;
	}
	if (neighbour)
		k->stats.neighbour_stores++;
	else
		k->stats.stores++;

	/* The StoreAns, kept until the commit. */
	p = &k->pb.ent[k->n_pend];
	memset(p, 0, sizeof(*p));
	p->tag = req->tag;
	p->code = RL_STORE_ANS;
	/* Only the responsible vnode copies to its successors (a store that reached another vnode by a
	 * routing disagreement is kept, not spread). */
	if (req->table && chord_table_responsible(req->table, &rid))
		p->n_succ = (uint8_t)chord_table_replicas(req->table, p->succ, CHORD_REPLICAS);
	memset(&ab, 0, sizeof(ab));
	ab.code = RL_STORE_ANS;
	for (size_t i = 0; i < n_kinds; i++) {
		k->kresp[i].kind = k->kinds[i].kind;
		k->kresp[i].generation = gens[i];
		memset(&k->kresp[i].replicas, 0, sizeof(k->kresp[i].replicas));
		if (sreq.replica_number == 0) {
			k->kresp[i].replicas.items = p->succ;
			k->kresp[i].replicas.n_items = p->n_succ;
		}
	}
	ab.u.store_ans.responses.items = k->kresp;
	ab.u.store_ans.responses.n_items = (uint32_t)n_kinds;
	vp_wr_init(&wr, k->ans, RL_MAX_MESSAGE_SIZE);
	if ((rc = rl_body_encode(&wr, &ab)) || (rc = pend_put(k, k->ans, vp_wr_len(&wr), &p->ans_off))) {
		answer_st_error(k, req, ans, rc);
		return 0;
	}
	p->ans_len = vp_wr_len(&wr);
	if (!neighbour && p->n_succ &&
	    !pend_put(k, m->contents.body.p, m->contents.body.len, &p->body_off))
		p->body_len = m->contents.body.len;
	k->n_pend++;
	return 1;
}

/* Build the certificate list of a Store body's entries (from the cache). */
static void certs_of_store(nk_t *k, const rl_store_req_t *sr)
{
	rl_iter_t it, vit;
	rl_store_kind_data_t kd;
	rl_stored_data_t sd;
	k->n_certs_out = 0;
	RL_ITER_INIT(&it, &sr->kind_data);
	while (rl_store_kind_data_next(&it, &kd) == 1) {
		int model = model_fn(k, kd.kind);
		if (model < 0)
			continue;
		RL_ITER_INIT(&vit, &kd.values);
		while (rl_stored_data_next(&vit, (rl_data_model_t)model, &sd) == 1)
			add_cert(k, &sd.sig.identity);
	}
}

int nk_commit(nk_t *k, nk_done_fn done, nk_send_fn send, void *arg)
{
	int rc = 0;
	size_t n;
	if (!k->batch_open || k->committing)
		return 0; /* a commit from inside this one's hooks: the next batch waits for the next call */
	k->batch_open = false;
	rc = st_batch_commit(k->sh);
	/* This batch's answers and copies move aside: \p done and \p send may issue a Store that this vnode
	 * serves at once (nk_handle from inside them).  It opens the next batch, queues into an empty list of
	 * its own and is answered by the next commit, after its own write; before, it joined this list and
	 * was answered before its write, or refused (VP_EBUSY) and answered only by the requester's timer. */
	{
		nk_pbuf_t t = k->pb;
		k->pb = k->cpb;
		k->cpb = t;
	}
	n = k->n_pend;
	k->n_pend = 0;
	k->pend_len = 0;
	k->committing = true;
	for (size_t i = 0; i < n; i++) {
		nk_pending_t *p = &k->cpb.ent[i];
		nk_answer_t ans;
		if (rc) {
			answer_st_error(k, NULL, &ans, rc);
			ans.tag = p->tag;
		} else {
			memset(&ans, 0, sizeof(ans));
			ans.tag = p->tag;
			ans.code = p->code;
			ans.body.p = k->cpb.buf + p->ans_off;
			ans.body.len = (uint32_t)p->ans_len;
		}
		if (done)
			done(arg, &ans);
	}
	if (!rc && send) {
		for (size_t i = 0; i < n; i++) {
			nk_pending_t *p = &k->cpb.ent[i];
			rl_body_t b;
			vp_id_t rid;
			if (!p->body_len)
				continue;
			if (rl_body_decode(RL_STORE_REQ, k->cpb.buf + p->body_off, p->body_len, model_fn, k, &b) ||
			    rid_of(&b.u.store_req.resource, &rid))
				continue;
			k->arena_len = 0;
			certs_of_store(k, &b.u.store_req);
			for (uint8_t j = 0; j < p->n_succ; j++) {
				nk_send_t s = { &p->succ[j], &rid, &b, k->certs_out, k->n_certs_out };
				b.u.store_req.replica_number = (uint8_t)(j + 1);
				if (send(arg, &s) == 0)
					k->stats.sent++;
			}
		}
	}
	k->committing = false;
	return rc;
}

bool nk_batch_pending(const nk_t *k)
{
	return k && k->batch_open;
}

/* ---- Fetch, Stat, Find --------------------------------------------------- */

/* Turn the request's specifiers into st_specifier_t; 0 or an Invalid_Message reason. */
static int load_specs(nk_t *k, const rl_fetch_req_t *fr, size_t *n_specs, uint32_t *unknown)
{
	rl_iter_t it, sit;
	rl_specifier_t sp;
	size_t n = 0, nr = 0, nkeys = 0;
	int r;
	RL_ITER_INIT(&it, &fr->specifiers);
	while ((r = rl_specifier_next(&it, model_fn, k, &sp)) == 1) {
		st_specifier_t *s;
		const st_kind_t *kind = st_shard_kind(k->sh, sp.kind);
		if (n >= NK_MAX_KINDS)
			return VP_EINVAL;
		if (!kind) {
			*unknown = sp.kind;
			return VP_EUNKNOWN_KIND;
		}
		s = &k->specs[n++];
		memset(s, 0, sizeof(*s));
		s->kind = sp.kind;
		s->generation = sp.generation;
		if (kind->model == ST_MODEL_ARRAY) {
			rl_array_range_t ar;
			s->ranges = &k->ranges[nr];
			RL_ITER_INIT(&sit, &sp.indices);
			while ((r = rl_array_range_next(&sit, &ar)) == 1) {
				if (nr >= NK_MAX_SPEC_ITEMS)
					return VP_EINVAL;
				k->ranges[nr++] = (st_array_range_t){ ar.first, ar.last };
				s->n_ranges++;
			}
		} else if (kind->model == ST_MODEL_DICTIONARY) {
			rl_bytes_t key;
			s->keys = &k->keys[nkeys];
			RL_ITER_INIT(&sit, &sp.keys);
			while ((r = rl_bytes16_next(&sit, &key)) == 1) {
				if (nkeys >= NK_MAX_SPEC_ITEMS)
					return VP_EINVAL;
				k->keys[nkeys++] = (st_dict_key_t){ key.p, (uint16_t)key.len };
				s->n_keys++;
			}
		}
		if (r < 0)
			return r;
	}
	*n_specs = n;
	return r < 0 ? r : 0;
}

static int fetch_begin(void *arg, const vp_id_t *resource, uint32_t kind, uint64_t generation)
{
	nk_t *k = arg;
	rl_fetch_kind_resp_t *r;
	(void)resource;
	if (k->n_resp >= NK_MAX_KINDS)
		return VP_ESPACE;
	r = &k->fresp[k->n_resp++];
	memset(r, 0, sizeof(*r));
	r->kind = kind;
	r->generation = generation;
	r->values.items = &k->sds[k->n_sds];
	return 0;
}

static int fetch_entry(void *arg, const vp_id_t *resource, uint32_t kind, const st_entry_t *e)
{
	nk_t *k = arg;
	rl_stored_data_t *sd;
	vp_rd_t rd;
	const uint8_t *sig, *key, *val;
	int model = model_fn(k, kind);
	(void)resource;
	if (k->n_sds >= NK_MAX_ENTRIES || model < 0)
		return VP_ESPACE;
	if (!(sig = arena_copy(k, e->sig, e->sig_len)) || !(key = arena_copy(k, e->key, e->key_len)) ||
	    !(val = arena_copy(k, e->value, e->value_len)))
		return VP_ESPACE;
	sd = &k->sds[k->n_sds];
	memset(sd, 0, sizeof(*sd));
	sd->storage_time = e->storage_time;
	sd->lifetime = st_entry_remaining(e, now_ms(k));
	sd->model = (rl_data_model_t)model;
	sd->index = e->index;
	sd->key = (rl_bytes_t){ key, e->key_len };
	sd->exists = e->exists;
	sd->value = (rl_bytes_t){ val, e->value_len };
	vp_rd_init(&rd, sig, e->sig_len);
	if (rl_signature_decode(&rd, &sd->sig) || vp_rd_done(&rd))
		return 0; /* a stored entry always has its signature; skip one that does not decode */
	add_cert(k, &sd->sig.identity);
	k->n_sds++;
	k->fresp[k->n_resp - 1].values.n_items++;
	return 0;
}

static int stat_begin(void *arg, const vp_id_t *resource, uint32_t kind, uint64_t generation)
{
	nk_t *k = arg;
	rl_stat_kind_resp_t *r;
	(void)resource;
	if (k->n_resp >= NK_MAX_KINDS)
		return VP_ESPACE;
	r = &k->sresp[k->n_resp++];
	memset(r, 0, sizeof(*r));
	r->kind = kind;
	r->generation = generation;
	r->values.items = &k->metas[k->n_sds];
	return 0;
}

static int stat_meta(void *arg, uint32_t kind, const st_meta_t *mt)
{
	nk_t *k = arg;
	rl_stored_meta_t *m;
	const uint8_t *key, *hash;
	int model = model_fn(k, kind);
	if (k->n_sds >= NK_MAX_ENTRIES || model < 0)
		return VP_ESPACE;
	if (!(key = arena_copy(k, mt->key, mt->key_len)) || !(hash = arena_copy(k, mt->hash, ST_HASH_LEN)))
		return VP_ESPACE;
	m = &k->metas[k->n_sds++];
	memset(m, 0, sizeof(*m));
	m->storage_time = mt->storage_time;
	m->lifetime = mt->lifetime;
	m->model = (rl_data_model_t)model;
	m->index = mt->index;
	m->key = (rl_bytes_t){ key, mt->key_len };
	m->exists = mt->exists;
	m->value_length = mt->value_len;
	m->hash_alg = mt->hash_alg;
	m->hash = (rl_bytes_t){ hash, ST_HASH_LEN };
	k->sresp[k->n_resp - 1].values.n_items++;
	return 0;
}

static int handle_read(nk_t *k, const nk_request_t *req, nk_answer_t *ans)
{
	const rl_message_t *m = req->msg;
	uint16_t code = m->contents.code;
	rl_body_t b, ab;
	vp_id_t rid;
	uint32_t bad_kind = 0;
	size_t n_specs = 0;
	int rc;

	k->arena_len = 0;
	k->n_certs_out = 0;
	k->n_sds = 0;
	k->n_resp = 0;
	if (rl_body_decode(code, m->contents.body.p, m->contents.body.len, model_fn, k, &b)) {
		answer_error(k, req, ans, RL_ERR_INVALID_MESSAGE, "malformed-request");
		return 0;
	}
	memset(&ab, 0, sizeof(ab));
	ab.code = rl_code_answer(code);
	k->stats.fetches++;
	if (code == RL_FIND_REQ) {
		rl_iter_t it;
		uint32_t kind;
		int r;
		size_t n = 0;
		if (rid_of(&b.u.find_req.resource, &rid)) {
			answer_error(k, req, ans, RL_ERR_INVALID_MESSAGE, "resource-id");
			return 0;
		}
		RL_ITER_INIT(&it, &b.u.find_req.kinds);
		while ((r = rl_u32_next(&it, &kind)) == 1) {
			vp_id_t closest;
			if (n >= NK_MAX_KINDS) {
				answer_error(k, req, ans, RL_ERR_INVALID_MESSAGE, "too-many-kinds");
				return 0;
			}
			rc = st_find(k->sh, &rid, kind, &req->signer->node_ids[0], &closest);
			k->find[n].kind = kind;
			k->find[n].closest = (rl_bytes_t){ NULL, 0 };
			if (rc == 0) {
				const uint8_t *c = arena_copy(k, closest.b, VP_ID_LEN);
				k->find[n].closest = (rl_bytes_t){ c, c ? VP_ID_LEN : 0 };
			} else if (rc == VP_EUNKNOWN_KIND) {
				snprintf(k->info, sizeof(k->info), "%u", (unsigned)kind);
				answer_error(k, req, ans, RL_ERR_UNKNOWN_KIND, k->info);
				return 0;
			} else if (rc != VP_ENOTFOUND) {
				answer_st_error(k, req, ans, rc);
				return 0;
			}
			n++;
		}
		ab.u.find_ans.results.items = k->find;
		ab.u.find_ans.results.n_items = (uint32_t)n;
		return encode_answer(k, req, ans, &ab);
	}
	if (rid_of(&b.u.fetch_req.resource, &rid)) {
		answer_error(k, req, ans, RL_ERR_INVALID_MESSAGE, "resource-id");
		return 0;
	}
	if ((rc = load_specs(k, &b.u.fetch_req, &n_specs, &bad_kind))) {
		if (rc == VP_EUNKNOWN_KIND) {
			snprintf(k->info, sizeof(k->info), "%u", (unsigned)bad_kind);
			answer_error(k, req, ans, RL_ERR_UNKNOWN_KIND, k->info);
		} else
			answer_error(k, req, ans, RL_ERR_INVALID_MESSAGE, "specifier");
		return 0;
	}
	if (code == RL_FETCH_REQ) {
		st_visitor_t v = { fetch_begin, fetch_entry, k };
		rc = st_fetch(k->sh, &rid, k->specs, n_specs, &req->signer->node_ids[0], &v, &bad_kind);
		ab.u.fetch_ans.responses.items = k->fresp;
		ab.u.fetch_ans.responses.n_items = (uint32_t)k->n_resp;
	} else {
		st_stat_visitor_t v = { stat_begin, stat_meta, k };
		rc = st_stat(k->sh, &rid, k->specs, n_specs, &req->signer->node_ids[0], &v, &bad_kind);
		ab.u.stat_ans.responses.items = k->sresp;
		ab.u.stat_ans.responses.n_items = (uint32_t)k->n_resp;
		k->n_certs_out = 0;
	}
	if (rc == VP_ESPACE) {
		answer_error(k, req, ans, RL_ERR_RESPONSE_TOO_LARGE, "response-too-large");
		return 0;
	}
	if (rc) {
		answer_st_error(k, req, ans, rc);
		return 0;
	}
	return encode_answer(k, req, ans, &ab);
}

int nk_handle(nk_t *k, const nk_request_t *req, nk_answer_t *ans)
{
	if (!k || !req || !ans || !req->msg || !req->signer || !req->sender || !req->signer->n_node_ids)
		return VP_EINVAL;
	switch (req->msg->contents.code) {
	case RL_STORE_REQ:
		return handle_store(k, req, ans);
	case RL_FETCH_REQ:
	case RL_STAT_REQ:
	case RL_FIND_REQ:
		return handle_read(k, req, ans);
	default:
		return VP_EBADTYPE;
	}
}

/* ---- topology actions ---------------------------------------------------- */

typedef struct nk_xfer {
	nk_t *k;
	nk_send_fn send;
	void *arg;
	const vp_id_t *to;
	uint8_t replica_number;
	bool have;
	vp_id_t rid;
	size_t n_kinds, n_entries;
	uint64_t sent_entries;
	uint64_t now;
	int err;
} nk_xfer_t;

static int xfer_flush(nk_xfer_t *x)
{
	nk_t *k = x->k;
	rl_body_t b;
	nk_send_t s;
	size_t off = 0;
	int rc;
	if (!x->have || !x->n_entries)
		goto reset;
	memset(&b, 0, sizeof(b));
	b.code = RL_STORE_REQ;
	b.u.store_req.resource = (rl_bytes_t){ x->rid.b, VP_ID_LEN };
	b.u.store_req.replica_number = x->replica_number;
	/* The fetch scratch (fresp, sds) holds the entries; each kind is sent unconditionally (generation 0). */
	{
		rl_store_kind_data_t skd[NK_MAX_KINDS];
		for (size_t i = 0; i < x->n_kinds; i++) {
			skd[i].kind = k->fresp[i].kind;
			skd[i].generation = 0;
			skd[i].values = k->fresp[i].values;
			off += k->fresp[i].values.n_items;
		}
		b.u.store_req.kind_data.items = skd;
		b.u.store_req.kind_data.n_items = (uint32_t)x->n_kinds;
		s = (nk_send_t){ x->to, &x->rid, &b, k->certs_out, k->n_certs_out };
		rc = x->send(x->arg, &s);
	}
	if (rc) {
		x->err = rc;
		return rc;
	}
	k->stats.sent++;
	x->sent_entries += off;
reset:
	x->have = false;
	x->n_kinds = 0;
	x->n_entries = 0;
	k->n_sds = 0;
	k->n_resp = 0;
	k->arena_len = 0;
	k->n_certs_out = 0;
	return 0;
}

static int xfer_begin(void *arg, const vp_id_t *resource, uint32_t kind, uint64_t generation)
{
	nk_xfer_t *x = arg;
	nk_t *k = x->k;
	int rc;
	(void)generation;
	/* One StoreReq per Resource-ID; also flush before the arena or the entry table could overflow. */
	if (x->have && (!vp_id_eq(&x->rid, resource) || x->n_kinds >= NK_MAX_KINDS ||
	                k->arena_len > RL_MAX_MESSAGE_SIZE / 2 || k->n_sds > NK_MAX_ENTRIES / 2))
		if ((rc = xfer_flush(x)))
			return rc;
	x->have = true;
	x->rid = *resource;
	if ((rc = fetch_begin(k, resource, kind, 0)))
		return rc;
	x->n_kinds++;
	return 0;
}

static int xfer_entry(void *arg, const vp_id_t *resource, uint32_t kind, const st_entry_t *e)
{
	nk_xfer_t *x = arg;
	size_t before = x->k->n_sds;
	int rc;
	if (st_entry_remaining(e, x->now) == 0)
		return 0;
	if (x->k->arena_len > RL_MAX_MESSAGE_SIZE / 2 || x->k->n_sds >= NK_MAX_ENTRIES / 2) {
		/* A record too big for one message: send what we have, continue this kind in a new Store. */
		if ((rc = xfer_flush(x)))
			return rc;
		x->have = true;
		x->rid = *resource;
		if ((rc = fetch_begin(x->k, resource, kind, 0)))
			return rc;
		x->n_kinds = 1;
	}
	if ((rc = fetch_entry(x->k, resource, kind, e)))
		return rc;
	x->n_entries += x->k->n_sds - before;
	return 0;
}

typedef struct nk_keep {
	const nk_t *k;
	const vp_id_t *lo, *hi;
} nk_keep_t;

static bool keep_rid(void *arg, const vp_id_t *rid)
{
	const nk_keep_t *c = arg;
	if (vp_id_in_oc(rid, c->lo, c->hi))
		return true;
	for (size_t i = 0; i < c->k->n_ranges_known; i++) {
		const nk_range_t *r = &c->k->ranges_known[i];
		if (r->whole || vp_id_in_oc(rid, &r->lo, &r->hi))
			return true;
	}
	return false;
}

int nk_action(nk_t *k, const chord_store_action_t *a, nk_send_fn send, void *arg, uint64_t *n_entries)
{
	uint64_t n = 0;
	int rc;
	if (n_entries)
		*n_entries = 0;
	if (!k || !a)
		return VP_EINVAL;
	if (k->batch_open)
		return VP_ESTATE;
	if (a->op == CHORD_STORE_DROP) {
		nk_keep_t c = { k, &a->lo, &a->hi };
		uint64_t now = now_ms(k);
		uint64_t before = now > a->grace_ms ? now - a->grace_ms : 0;
		if (vp_id_eq(&a->lo, &a->hi))
			return 0; /* the keep range is the whole ring */
		rc = st_range_drop_stale(k->sh, &a->hi, &a->lo, before, keep_rid, &c, &n);
		k->stats.dropped += n;
		if (n_entries)
			*n_entries = n;
		return rc;
	}
	if (a->op != CHORD_STORE_HANDOFF && a->op != CHORD_STORE_REPLICATE)
		return VP_EINVAL;
	if (!send)
		return VP_EINVAL;
	{
		nk_xfer_t x;
		st_visitor_t v = { xfer_begin, xfer_entry, NULL };
		memset(&x, 0, sizeof(x));
		x.k = k;
		x.send = send;
		x.arg = arg;
		x.to = &a->to;
		x.replica_number = a->op == CHORD_STORE_HANDOFF ? 0 : a->replica_number;
		x.now = now_ms(k);
		v.arg = &x;
		k->n_sds = k->n_resp = 0;
		k->arena_len = 0;
		k->n_certs_out = 0;
		rc = st_range_scan(k->sh, &a->lo, &a->hi, &v);
		if (!rc)
			rc = xfer_flush(&x);
		if (n_entries)
			*n_entries = x.sent_entries;
		if (rc == VP_EBUSY) /* the caller paces: it resumes the transfer later */
			vp_log_debug("node", "transfer_paused", "op=%d entries=%llu", (int)a->op,
			             (unsigned long long)x.sent_entries);
		else if (rc)
			vp_log_warn("node", "transfer_failed", "op=%d entries=%llu error=%s", (int)a->op,
			            (unsigned long long)x.sent_entries, vp_strerror(rc));
		else
			vp_log_info("node", "transfer_done", "op=%d replica_number=%u entries=%llu", (int)a->op,
			            (unsigned)x.replica_number, (unsigned long long)x.sent_entries);
	}
	return rc;
}

int nk_store_own_cert(nk_t *k, const vp_id_t *vnode, uint32_t lifetime_s, nk_send_fn send, void *arg)
{
	uint8_t hash[RL_MAX_HASH_LEN], sigbuf[RL_MAX_SIG_LEN];
	rl_signer_identity_t id;
	rl_stored_data_t sd;
	rl_store_kind_data_t kd;
	rl_body_t b;
	rl_cert_t cert;
	vp_id_t rid;
	nk_send_t s;
	int rc;
	if (!k || !vnode || !send)
		return VP_EINVAL;
	if (!k->conf.key || !k->conf.cert_der || !k->conf.cert_len)
		return VP_ESTATE;
	rid = vp_id_from_name(vnode->b, VP_ID_LEN);
	if ((rc = rl_signer_cert_hash(k->conf.cert_der, k->conf.cert_len, hash, &id)))
		return rc;
	memset(&sd, 0, sizeof(sd));
	sd.storage_time = now_ms(k);
	sd.lifetime = lifetime_s;
	sd.model = RL_MODEL_ARRAY;
	sd.index = 0;
	sd.exists = true;
	sd.value = (rl_bytes_t){ k->conf.cert_der, (uint32_t)k->conf.cert_len };
	if ((rc = rl_stored_data_sign(k->conf.key, rid.b, VP_ID_LEN, RL_KIND_CERTIFICATE_BY_NODE, &sd, &id, sigbuf,
	                              sizeof(sigbuf))))
		return rc;
	memset(&kd, 0, sizeof(kd));
	kd.kind = RL_KIND_CERTIFICATE_BY_NODE;
	kd.values.items = &sd;
	kd.values.n_items = 1;
	memset(&b, 0, sizeof(b));
	b.code = RL_STORE_REQ;
	b.u.store_req.resource = (rl_bytes_t){ rid.b, VP_ID_LEN };
	b.u.store_req.kind_data.items = &kd;
	b.u.store_req.kind_data.n_items = 1;
	cert = (rl_cert_t){ RL_CERT_X509, { k->conf.cert_der, (uint32_t)k->conf.cert_len } };
	s = (nk_send_t){ NULL, &rid, &b, &cert, 1 };
	if ((rc = send(arg, &s)))
		return rc;
	k->stats.sent++;
	return 0;
}

/* ---- fetcher ------------------------------------------------------------- */

static const st_kind_t *find_kind(const st_kind_t *kinds, size_t n, uint32_t id)
{
	for (size_t i = 0; i < n; i++)
		if (kinds[i].id == id)
			return &kinds[i];
	return NULL;
}

typedef struct nk_kinds_ctx {
	const st_kind_t *kinds;
	size_t n;
} nk_kinds_ctx_t;

static int kinds_model(void *ctx, uint32_t kind)
{
	const nk_kinds_ctx_t *c = ctx;
	const st_kind_t *k = find_kind(c->kinds, c->n, kind);
	return k ? (int)k->model : VP_EUNKNOWN_KIND;
}

void nk_fetch_req(rl_body_t *b, rl_specifier_t *spec, const vp_id_t *resource, uint32_t kind)
{
	memset(spec, 0, sizeof(*spec));
	spec->kind = kind;
	spec->model = RL_MODEL_DICTIONARY;
	memset(b, 0, sizeof(*b));
	b->code = RL_FETCH_REQ;
	b->u.fetch_req.resource = (rl_bytes_t){ resource->b, VP_ID_LEN };
	b->u.fetch_req.specifiers.items = spec;
	b->u.fetch_req.specifiers.n_items = 1;
}

int nk_fetch_verify(dp_cert_store_t *certs, const st_kind_t *kinds, size_t n_kinds,
                    const vp_id_t *resource, const rl_message_t *m, nk_entry_fn fn, void *arg,
                    nk_fetch_result_t *res)
{
	nk_kinds_ctx_t kc = { kinds, n_kinds };
	rl_body_t b;
	rl_iter_t it, vit;
	rl_fetch_kind_resp_t kr;
	rl_stored_data_t sd;
	int rc, r;
	if (!certs || !resource || !m || !res)
		return VP_EINVAL;
	memset(res, 0, sizeof(*res));
	if (m->contents.code != RL_FETCH_ANS)
		return VP_EBADTYPE;
	if ((rc = rl_body_decode(RL_FETCH_ANS, m->contents.body.p, m->contents.body.len, kinds_model, &kc, &b)))
		return rc;
	RL_ITER_INIT(&it, &b.u.fetch_ans.responses);
	while ((r = rl_fetch_kind_resp_next(&it, &kr)) == 1) {
		const st_kind_t *kind = find_kind(kinds, n_kinds, kr.kind);
		if (!kind) {
			res->rejected += (uint32_t)RL_LIST_COUNT(&kr.values);
			res->last = DP_CERT_MALFORMED;
			continue;
		}
		RL_ITER_INIT(&vit, &kr.values);
		while ((r = rl_stored_data_next(&vit, (rl_data_model_t)kind->model, &sd)) == 1) {
			const dp_cert_ident_t *signer;
			dp_cert_reason_t why;
			vp_id_t claimant;
			const vp_id_t *cl = NULL;
			if (kind->acl == ST_ACL_VIPR) {
				if (sd.key.len < VP_ID_LEN) {
					res->rejected++;
					res->last = DP_CERT_NOT_CLAIMANT;
					continue;
				}
				memcpy(claimant.b, sd.key.p, VP_ID_LEN);
				cl = &claimant;
			}
			if (dp_cert_stored_data_verify(certs, resource->b, VP_ID_LEN, kr.kind, &sd, &m->sec.certs, cl,
			                               kind->max_lifetime, &signer, &why)) {
				res->rejected++;
				res->last = why;
				vp_log_warn("node", "fetched_entry_ignored", "kind=%u reason=%s", (unsigned)kr.kind,
				            dp_cert_reason_name(why));
				continue;
			}
			res->accepted++;
			if (fn && (rc = fn(arg, kr.kind, &sd, signer)))
				return rc;
		}
		if (r < 0)
			return r;
	}
	return r < 0 ? r : 0;
}
