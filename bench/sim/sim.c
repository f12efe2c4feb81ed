#include "bench/sim/sim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/errcode.h"
#include "common/log.h"
#include "common/rand.h"
#include "dataplane/reload.h"
#include "storage/vipr_kind.h"

/* A node serves as bootstrap peer once it has been a member this long. */
#define BOOTSTRAP_AGE_MS (60 * 1000)

/* ---- PRNG (xoshiro256**, seeded with splitmix64) ------------------------- */

typedef struct rng {
	uint64_t s[4];
} rng_t;

static uint64_t splitmix(uint64_t *x)
{
	return vp_splitmix64_next(x);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(rng_t *r)
{
	uint64_t res = rotl(r->s[1] * 5, 7) * 9, t = r->s[1] << 17;
	r->s[2] ^= r->s[0];
	r->s[3] ^= r->s[1];
	r->s[1] ^= r->s[2];
	r->s[0] ^= r->s[3];
	r->s[2] ^= t;
	r->s[3] = rotl(r->s[3], 45);
	return res;
}

static double rng_unit(rng_t *r)
{
	return vp_rand_unit(rng_next(r));
}

static double rng_normal(rng_t *r)
{
	double u = rng_unit(r), v = rng_unit(r);
	if (u < 1e-300)
		u = 1e-300;
	return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

/* ---- events --------------------------------------------------------------- */

typedef enum ev_type {
	EV_DELIVER = 1, /* a = from, b = to, p/len = encoded message */
	EV_LINK_UP,     /* a = node, b = peer */
	EV_LINK_DOWN,   /* a = node, b = peer */
	EV_TICK,        /* a = node */
	EV_OP_TIMEOUT,  /* a = op, b = attempt */
} ev_type_t;

typedef struct ev {
	uint64_t t;
	uint64_t seq;
	uint8_t type;
	uint32_t a, b;
	uint32_t len;
	uint8_t *p;
} ev_t;

/* ---- store and operations ------------------------------------------------- */

/* One dictionary entry of the VIPR-REGISTRATION kind under resource res. */
typedef struct item {
	vp_id_t res;
	sim_entry_t e;
	uint64_t written_at; /* local: when this node last received it (kept by a CHORD_STORE_DROP) */
} item_t;

typedef struct snode {
	chord_node_t *cn;
	vp_id_t id;
	bool alive, joined;
	uint8_t group;
	uint64_t tick_at;
	item_t *items;
	uint32_t nitems, cap_items;
	uint64_t joined_at;
} snode_t;

typedef enum op_type { OP_LOOKUP = 1, OP_STORE, OP_FETCH_REG, OP_STORE_EXT, OP_FETCH_EXT } op_type_t;

typedef struct op {
	uint8_t type;
	uint8_t attempt;
	bool done, ok;
	uint32_t origin;
	uint32_t reg;
	vp_id_t key;
	uint64_t txid;
	uint64_t old_txid[8]; /* earlier attempts: a late answer still counts */
	int64_t responder;
	uint32_t hops;
	bool owner_ok;
} op_t;

typedef struct reg {
	vp_id_t res;
	uint32_t owner;
	sim_entry_t e;  /* the registration as its owner stores it (storage_time set per store) */
} reg_t;

/* An operation started by an embedding application (sim_store_entry, sim_fetch_entries). */
typedef struct ext {
	vp_id_t res;
	item_t item;           /* the entry to store */
	sim_store_cb scb;
	sim_fetch_cb fcb;
	void *arg;
	bool called;           /* the callback ran */
} ext_t;

struct sim {
	sim_cfg_t cfg;
	rng_t rng;
	uint64_t now, seq, events;
	ev_t *heap;
	size_t nheap, cap_heap;

	snode_t *nodes;
	uint32_t nnodes;
	/* id -> slot, open addressing on the id's first 8 bytes */
	uint32_t *map;
	uint32_t map_mask;

	/* sorted ids of live joined nodes, rebuilt lazily */
	vp_id_t *ring;
	uint32_t *ring_idx;
	uint32_t nring;

	op_t *ops;
	uint32_t nops, cap_ops, pending;
	/* txid -> op index + 1 (0 = empty), linear probing with backward-shift deletion */
	uint64_t *tx_keys;
	uint32_t *tx_vals;
	uint32_t tx_mask;

	reg_t *regs;
	ext_t *ext;            /* operations of sim_store_entry / sim_fetch_entries */
	uint32_t next, cap_ext;
	uint32_t nregs, cap_regs;
	uint64_t reg_seq;

	uint8_t encbuf[RL_MAX_MESSAGE_SIZE];
	rl_ice_candidate_t cand;
	char ufrag[16];

	sim_counters_t c;
	uint64_t msgs_total; /* across counter resets */
	int64_t trace_op;    /* SIM_TRACE_OP: log every hop of this op's messages */
};

static uint64_t id_key(const vp_id_t *id)
{
	uint64_t k = 0;
	for (int i = 0; i < 8; i++)
		k = k << 8 | id->b[i];
	return k;
}

/* ---- heap ------------------------------------------------------------------ */

static bool ev_less(const ev_t *x, const ev_t *y)
{
	return x->t < y->t || (x->t == y->t && x->seq < y->seq);
}

static void push(sim_t *s, uint64_t t, uint8_t type, uint32_t a, uint32_t b, uint8_t *p, uint32_t len)
{
	size_t i;
	if (s->nheap == s->cap_heap) {
		size_t cap = s->cap_heap ? 2 * s->cap_heap : 4096;
		ev_t *h = realloc(s->heap, cap * sizeof(*h));
		if (!h) {
			free(p);
			return;
		}
		s->heap = h;
		s->cap_heap = cap;
	}
	i = s->nheap++;
	s->heap[i] = (ev_t){ .t = t, .seq = s->seq++, .type = type, .a = a, .b = b, .p = p, .len = len };
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (!ev_less(&s->heap[i], &s->heap[parent]))
			break;
		ev_t tmp = s->heap[i];
		s->heap[i] = s->heap[parent];
		s->heap[parent] = tmp;
		i = parent;
	}
}

static ev_t pop(sim_t *s)
{
	ev_t top = s->heap[0];
	size_t i = 0;
	s->heap[0] = s->heap[--s->nheap];
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < s->nheap && ev_less(&s->heap[l], &s->heap[m]))
			m = l;
		if (r < s->nheap && ev_less(&s->heap[r], &s->heap[m]))
			m = r;
		if (m == i)
			break;
		ev_t tmp = s->heap[i];
		s->heap[i] = s->heap[m];
		s->heap[m] = tmp;
		i = m;
	}
	return top;
}

/* ---- maps ------------------------------------------------------------------- */

static int64_t slot_of(const sim_t *s, const vp_id_t *id)
{
	uint32_t h = (uint32_t)(id_key(id) * 0x9e3779b97f4a7c15ull >> 32) & s->map_mask;
	for (;;) {
		uint32_t v = s->map[h];
		if (v == 0)
			return -1;
		if (vp_id_eq(&s->nodes[v - 1].id, id))
			return v - 1;
		h = (h + 1) & s->map_mask;
	}
}

static void map_put(sim_t *s, const vp_id_t *id, uint32_t idx)
{
	uint32_t h = (uint32_t)(id_key(id) * 0x9e3779b97f4a7c15ull >> 32) & s->map_mask;
	while (s->map[h])
		h = (h + 1) & s->map_mask;
	s->map[h] = idx + 1;
}

static uint32_t tx_hash(const sim_t *s, uint64_t k)
{
	return (uint32_t)((k * 0x9e3779b97f4a7c15ull) >> 32) & s->tx_mask;
}

static int64_t tx_get(const sim_t *s, uint64_t k)
{
	for (uint32_t h = tx_hash(s, k);; h = (h + 1) & s->tx_mask) {
		if (!s->tx_vals[h])
			return -1;
		if (s->tx_keys[h] == k)
			return s->tx_vals[h] - 1;
	}
}

static int tx_grow(sim_t *s);

static void tx_put(sim_t *s, uint64_t k, uint32_t v)
{
	uint32_t h;
	if (s->pending * 2 >= s->tx_mask && tx_grow(s))
		return;
	for (h = tx_hash(s, k); s->tx_vals[h]; h = (h + 1) & s->tx_mask)
		;
	s->tx_keys[h] = k;
	s->tx_vals[h] = v + 1;
}

static void tx_del(sim_t *s, uint64_t k)
{
	uint32_t h = tx_hash(s, k);
	while (s->tx_vals[h] && s->tx_keys[h] != k)
		h = (h + 1) & s->tx_mask;
	if (!s->tx_vals[h])
		return;
	/* Backward-shift deletion keeps probe chains intact. */
	for (uint32_t j = (h + 1) & s->tx_mask; s->tx_vals[j]; j = (j + 1) & s->tx_mask) {
		uint32_t home = tx_hash(s, s->tx_keys[j]);
		bool movable = h <= j ? (home <= h || home > j) : (home <= h && home > j);
		if (movable) {
			s->tx_keys[h] = s->tx_keys[j];
			s->tx_vals[h] = s->tx_vals[j];
			h = j;
		}
	}
	s->tx_vals[h] = 0;
}

static int tx_grow(sim_t *s)
{
	uint32_t old_mask = s->tx_mask;
	uint64_t *ok = s->tx_keys;
	uint32_t *ov = s->tx_vals;
	uint32_t size = (old_mask + 1) * 2;
	s->tx_keys = calloc(size, sizeof(uint64_t));
	s->tx_vals = calloc(size, sizeof(uint32_t));
	if (!s->tx_keys || !s->tx_vals) {
		free(s->tx_keys);
		free(s->tx_vals);
		s->tx_keys = ok;
		s->tx_vals = ov;
		return VP_ENOMEM;
	}
	s->tx_mask = size - 1;
	for (uint32_t i = 0; i <= old_mask; i++) {
		if (ov[i]) {
			uint32_t h = tx_hash(s, ok[i]);
			while (s->tx_vals[h])
				h = (h + 1) & s->tx_mask;
			s->tx_keys[h] = ok[i];
			s->tx_vals[h] = ov[i];
		}
	}
	free(ok);
	free(ov);
	return 0;
}

/* ---- ground truth ------------------------------------------------------------ */

/* Position of the first ring entry >= id (nring if none). */
static uint32_t ring_lower(const sim_t *s, const vp_id_t *id)
{
	uint32_t lo = 0, hi = s->nring;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (vp_id_cmp(&s->ring[mid], id) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The ring of live joined nodes is kept sorted incrementally (O(N) memmove
 * per change; a full sort per change would make bootstrap quadratic-log). */
static void ring_insert(sim_t *s, uint32_t idx)
{
	uint32_t pos = ring_lower(s, &s->nodes[idx].id);
	memmove(&s->ring[pos + 1], &s->ring[pos], (s->nring - pos) * sizeof(vp_id_t));
	memmove(&s->ring_idx[pos + 1], &s->ring_idx[pos], (s->nring - pos) * sizeof(uint32_t));
	s->ring[pos] = s->nodes[idx].id;
	s->ring_idx[pos] = idx;
	s->nring++;
}

static void ring_remove(sim_t *s, uint32_t idx)
{
	uint32_t pos = ring_lower(s, &s->nodes[idx].id);
	if (pos == s->nring || s->ring_idx[pos] != idx)
		return;
	memmove(&s->ring[pos], &s->ring[pos + 1], (s->nring - pos - 1) * sizeof(vp_id_t));
	memmove(&s->ring_idx[pos], &s->ring_idx[pos + 1], (s->nring - pos - 1) * sizeof(uint32_t));
	s->nring--;
}

/* Position in the ring of the first live joined node at or after id. */
static uint32_t ring_succ_pos(const sim_t *s, const vp_id_t *id)
{
	uint32_t pos = ring_lower(s, id);
	return pos == s->nring ? 0 : pos; /* past the largest Node-ID the ring wraps to the first */
}

static int64_t true_owner(sim_t *s, const vp_id_t *id)
{
	if (!s->nring)
		return -1;
	return s->ring_idx[ring_succ_pos(s, id)];
}

/* ---- network ------------------------------------------------------------------ */

static uint64_t latency(sim_t *s)
{
	double l = s->cfg.lat_min_ms + s->cfg.lat_median_ms * exp(s->cfg.lat_sigma * rng_normal(&s->rng));
	return (uint64_t)(l < 1 ? 1 : l);
}

static bool reachable(const sim_t *s, uint32_t a, uint32_t b)
{
	return s->nodes[b].alive && s->nodes[a].group == s->nodes[b].group;
}

static void schedule_tick(sim_t *s, uint32_t idx)
{
	snode_t *n = &s->nodes[idx];
	uint64_t w;
	if (!n->alive || !n->cn)
		return;
	w = chord_node_next_wakeup(n->cn);
	if (w == UINT64_MAX)
		return;
	if (w < s->now)
		w = s->now;
	if (n->tick_at > s->now && n->tick_at <= w)
		return; /* an earlier tick is already queued */
	n->tick_at = w;
	push(s, w, EV_TICK, idx, 0, NULL, 0);
}

static bool is_maint(uint16_t code)
{
	switch (code == RL_ERROR ? 0 : (code + 1) & 0xFFFE) {
	case RL_ATTACH_ANS: case RL_JOIN_ANS: case RL_LEAVE_ANS: case RL_UPDATE_ANS:
	case RL_PING_ANS: case RL_ROUTE_QUERY_ANS: case RL_PROBE_ANS:
		return true;
	default:
		return false;
	}
}

/* Originated messages are encoded; relayed ones are copied with only their header edited (prev != NULL). */
static int sim_xmit(sim_t *s, chord_node_t *cn, const vp_id_t *next, const rl_message_t *m, const vp_id_t *prev,
                    bool pop)
{
	vp_wr_t wr;
	int64_t from = slot_of(s, chord_node_id(cn)), to = slot_of(s, next);
	uint8_t *p;
	uint64_t delay = 0;
	uint32_t tries = 1;

	if (from < 0)
		return VP_EINVAL;
	vp_wr_init(&wr, s->encbuf, sizeof(s->encbuf));
	if (prev ? chord_fwd_encode(&wr, m, prev, pop) : rl_msg_encode(&wr, m)) {
		s->c.codec_errors++;
		return wr.err ? wr.err : VP_EINVAL;
	}
	s->c.msgs++;
	s->c.bytes += vp_wr_len(&wr);
	if (is_maint(m->contents.code))
		s->c.maint_msgs++;
	if (m->contents.code == RL_STORE_REQ || m->contents.code == RL_STORE_ANS)
		s->c.store_msgs++;
	if (to < 0) {
		s->c.dropped++;
		return 0; /* nobody has that id: a stale entry; the link never comes up */
	}
	/* Link-layer reliability: each lost transmission costs an RTO. */
	while (s->cfg.loss > 0 && rng_unit(&s->rng) < s->cfg.loss) {
		if (++tries > s->cfg.max_tx) {
			s->c.dropped++;
			push(s, s->now + delay + s->cfg.rto_ms, EV_LINK_DOWN, (uint32_t)from, (uint32_t)to, NULL, 0);
			return 0;
		}
		delay += s->cfg.rto_ms;
	}
	p = malloc(vp_wr_len(&wr));
	if (!p)
		return VP_ENOMEM;
	memcpy(p, s->encbuf, vp_wr_len(&wr));
	push(s, s->now + delay + latency(s), EV_DELIVER, (uint32_t)from, (uint32_t)to, p,
	     (uint32_t)vp_wr_len(&wr));
	return 0;
}

static int io_send(void *ctx, chord_node_t *cn, const vp_id_t *next, const rl_message_t *m)
{
	return sim_xmit(ctx, cn, next, m, NULL, false);
}

static int io_forward(void *ctx, chord_node_t *cn, const vp_id_t *next, const vp_id_t *prev, bool pop,
                      const rl_message_t *m)
{
	return sim_xmit(ctx, cn, next, m, prev, pop);
}

static void io_attach_info(void *ctx, chord_node_t *cn, rl_attach_t *out)
{
	sim_t *s = ctx;
	int64_t idx = slot_of(s, chord_node_id(cn));
	uint32_t ip = 0x0a000000u | (uint32_t)(idx < 0 ? 0 : idx);
	memset(&s->cand, 0, sizeof(s->cand));
	s->cand.addr.type = RL_ADDR_IPV4;
	s->cand.addr.addr[0] = (uint8_t)(ip >> 24);
	s->cand.addr.addr[1] = (uint8_t)(ip >> 16);
	s->cand.addr.addr[2] = (uint8_t)(ip >> 8);
	s->cand.addr.addr[3] = (uint8_t)ip;
	s->cand.addr.port = RL_DEFAULT_PORT;
	s->cand.overlay_link = RL_LINK_TLS_TCP_FH_NO_ICE;
	s->cand.foundation = (rl_bytes_t){ (const uint8_t *)"1", 1 };
	s->cand.priority = 2130706431u;
	s->cand.cand_type = RL_CAND_HOST;
	snprintf(s->ufrag, sizeof(s->ufrag), "u%08x", (unsigned)(idx & 0xffffffff));
	memset(out, 0, sizeof(*out));
	out->ufrag = (rl_bytes_t){ (const uint8_t *)s->ufrag, (uint32_t)strlen(s->ufrag) };
	out->password = (rl_bytes_t){ (const uint8_t *)"simsimsimsimsimsimsimsi", 22 };
	out->candidates.items = &s->cand;
	out->candidates.n_items = 1;
}

/* Open a link from node a to node b: up after a TLS handshake, or down once the sender gives up. */
static void link_open(sim_t *s, int64_t a, int64_t b)
{
	if (a < 0)
		return;
	if (b < 0 || !reachable(s, (uint32_t)a, (uint32_t)b)) {
		push(s, s->now + s->cfg.link_detect_ms, EV_LINK_DOWN, (uint32_t)a, b < 0 ? UINT32_MAX : (uint32_t)b,
		     NULL, 0);
		return;
	}
	/* A TLS handshake: about two round trips. */
	push(s, s->now + 2 * (latency(s) + latency(s)), EV_LINK_UP, (uint32_t)a, (uint32_t)b, NULL, 0);
}

static void io_connect(void *ctx, chord_node_t *cn, const vp_id_t *peer, const rl_attach_t *theirs)
{
	sim_t *s = ctx;
	(void)theirs;
	link_open(s, slot_of(s, chord_node_id(cn)), slot_of(s, peer));
}

/* A ring check's link to a remembered peer: every simulated node's address is known (its slot). */
static int io_reach(void *ctx, chord_node_t *cn, const vp_id_t *peer)
{
	sim_t *s = ctx;
	int64_t b = slot_of(s, peer);
	if (b < 0)
		return VP_ENOTFOUND;
	link_open(s, slot_of(s, chord_node_id(cn)), b);
	return 0;
}

/* ---- the in-memory store -------------------------------------------------------- */

static item_t *item_find(snode_t *n, const vp_id_t *res, const uint8_t key[SIM_KEY_LEN])
{
	for (uint32_t i = 0; i < n->nitems; i++)
		if (vp_id_eq(&n->items[i].res, res) && !memcmp(n->items[i].e.key, key, SIM_KEY_LEN))
			return &n->items[i];
	return NULL;
}

/* Same stored bytes (storage_time aside). */
static bool entry_same(const sim_entry_t *a, const sim_entry_t *b)
{
	return !memcmp(a->key, b->key, SIM_KEY_LEN) && a->exists == b->exists && a->value_len == b->value_len &&
	       !memcmp(a->value, b->value, a->value_len);
}

/* Store unless what is held is as new; true if something changed. */
/* Store \p it as a real store would; true if it was new or newer.  An equal copy (a re-replication) only
 * refreshes the local write time. */
static bool item_put(snode_t *n, const item_t *it, uint64_t now)
{
	item_t *cur = item_find(n, &it->res, it->e.key);
	if (cur) {
		if (cur->e.storage_time == it->e.storage_time)
			cur->written_at = now;
		if (cur->e.storage_time >= it->e.storage_time)
			return false; /* Error_Data_Too_Old */
		*cur = *it;
		cur->written_at = now;
		return true;
	}
	if (n->nitems == n->cap_items) {
		uint32_t cap = n->cap_items ? 2 * n->cap_items : 8;
		item_t *p = realloc(n->items, cap * sizeof(*p));
		if (!p)
			return false;
		n->items = p;
		n->cap_items = cap;
	}
	n->items[n->nitems] = *it;
	n->items[n->nitems++].written_at = now;
	return true;
}

/* A dictionary StoredData as an entry; false when it does not fit the simulator's entries. */
static bool entry_from_sd(const rl_stored_data_t *sd, sim_entry_t *e)
{
	if (sd->key.len != SIM_KEY_LEN || sd->value.len > SIM_VALUE_MAX || (!sd->exists && sd->value.len))
		return false;
	memset(e, 0, sizeof(*e));
	memcpy(e->key, sd->key.p, SIM_KEY_LEN);
	e->storage_time = sd->storage_time;
	e->exists = sd->exists;
	e->value_len = (uint8_t)sd->value.len;
	if (sd->value.len)
		memcpy(e->value, sd->value.p, sd->value.len);
	return true;
}

static void fill_sd(rl_stored_data_t *sd, const item_t *it)
{
	memset(sd, 0, sizeof(*sd));
	sd->storage_time = it->e.storage_time;
	sd->lifetime = 86400;
	sd->model = RL_MODEL_DICTIONARY;
	sd->key = (rl_bytes_t){ it->e.key, SIM_KEY_LEN };
	sd->exists = it->e.exists;
	sd->value = (rl_bytes_t){ it->e.value, it->e.exists ? it->e.value_len : 0 };
	sd->sig.identity.type = RL_SIGNER_NONE;
}

static void store_body(rl_body_t *b, rl_store_kind_data_t *kd, rl_stored_data_t *sd, const item_t *it,
                       uint8_t replica)
{
	fill_sd(sd, it);
	memset(kd, 0, sizeof(*kd));
	kd->kind = RL_KIND_VIPR_REGISTRATION;
	kd->values.items = sd;
	kd->values.n_items = 1;
	memset(b, 0, sizeof(*b));
	b->code = RL_STORE_REQ;
	b->u.store_req.resource = (rl_bytes_t){ it->res.b, VP_ID_LEN };
	b->u.store_req.replica_number = replica;
	b->u.store_req.kind_data.items = kd;
	b->u.store_req.kind_data.n_items = 1;
}

static void send_store_direct(sim_t *s, snode_t *n, const vp_id_t *to, const item_t *it, uint8_t replica)
{
	rl_body_t b;
	rl_store_kind_data_t kd;
	rl_stored_data_t sd;
	uint64_t txid;
	store_body(&b, &kd, &sd, it, replica);
	chord_node_request_direct(n->cn, to, &it->res, &b, &txid, s->now);
}

static void io_store(void *ctx, chord_node_t *cn, const chord_store_action_t *a)
{
	sim_t *s = ctx;
	int64_t idx = slot_of(s, chord_node_id(cn));
	snode_t *n;
	if (idx < 0)
		return;
	n = &s->nodes[idx];
	if (a->op == CHORD_STORE_DROP) {
		/* Like a real store: drop what the node is neither responsible for nor a replica of any more
		 * (handed over by then), so that survival figures count the protocol's 3 copies only; but not
		 * what a peer sent within the grace period (it believes us a replica: our view may be stale). */
		uint32_t k = 0;
		for (uint32_t i = 0; i < n->nitems; i++)
			if (vp_id_in_oc(&n->items[i].res, &a->lo, &a->hi) ||
			    n->items[i].written_at + a->grace_ms > s->now)
				n->items[k++] = n->items[i];
		if (k != n->nitems && vp_log_enabled(VP_LOG_DEBUG)) {
			char l[VP_ID_HEX_LEN + 1];
			vp_log_debug("sim", "dropped", "t=%llu node=%lld items=%u keep_lo=%.8s", (unsigned long long)s->now,
			             (long long)idx, n->nitems - k, vp_id_to_hex(&a->lo, l));
		}
		n->nitems = k;
		return;
	}
	{
		uint32_t cnt = 0;
		for (uint32_t i = 0; i < n->nitems; i++) {
			if (!vp_id_in_oc(&n->items[i].res, &a->lo, &a->hi))
				continue;
			send_store_direct(s, n, &a->to, &n->items[i], a->replica_number);
			cnt++;
		}
		if (vp_log_enabled(VP_LOG_DEBUG)) {
			char l[VP_ID_HEX_LEN + 1], h[VP_ID_HEX_LEN + 1];
			vp_log_debug("sim", "store_action", "t=%llu node=%lld op=%d to=%lld lo=%.8s hi=%.8s items=%u",
			             (unsigned long long)s->now, (long long)idx, a->op, (long long)slot_of(s, &a->to),
			             vp_id_to_hex(&a->lo, l), vp_id_to_hex(&a->hi, h), cnt);
		}
	}
}

/* Probe num_resources: distinct resource ids this node stores. */
static uint32_t io_num_resources(void *ctx, chord_node_t *cn)
{
	sim_t *s = ctx;
	int64_t idx = slot_of(s, chord_node_id(cn));
	const snode_t *n;
	uint32_t k = 0;
	if (idx < 0)
		return 0;
	n = &s->nodes[idx];
	for (uint32_t i = 0; i < n->nitems; i++) {
		uint32_t j = 0;
		while (j < i && !vp_id_eq(&n->items[j].res, &n->items[i].res))
			j++;
		k += j == i;
	}
	return k;
}

static void serve_store(sim_t *s, snode_t *n, const chord_delivery_t *d, const rl_body_t *b)
{
	rl_iter_t ik, iv;
	rl_store_kind_data_t kd;
	rl_stored_data_t sd;
	rl_body_t ans;
	rl_store_kind_resp_t resp;
	const chord_table_t *t = chord_node_table(n->cn);
	vp_id_t reps[CHORD_REPLICAS];
	size_t nr = 0;
	item_t it;
	bool original = b->u.store_req.replica_number == 0;

	if (b->u.store_req.resource.len != VP_ID_LEN)
		return;
	memset(&it, 0, sizeof(it));
	memcpy(it.res.b, b->u.store_req.resource.p, VP_ID_LEN);
	RL_ITER_INIT(&ik, &b->u.store_req.kind_data);
	while (rl_store_kind_data_next(&ik, &kd) == 1) {
		if (kd.kind != RL_KIND_VIPR_REGISTRATION)
			continue;
		RL_ITER_INIT(&iv, &kd.values);
		while (rl_stored_data_next(&iv, RL_MODEL_DICTIONARY, &sd) == 1) {
			if (!entry_from_sd(&sd, &it.e))
				continue;
			/* The responsible peer copies a new original store to its replicas. */
			if (item_put(n, &it, s->now) && original && chord_table_responsible(t, &it.res)) {
				nr = chord_table_replicas(t, reps, CHORD_REPLICAS);
				for (size_t r = 0; r < nr; r++)
					send_store_direct(s, n, &reps[r], &it, (uint8_t)(r + 1));
			}
		}
	}
	memset(&ans, 0, sizeof(ans));
	memset(&resp, 0, sizeof(resp));
	resp.kind = RL_KIND_VIPR_REGISTRATION;
	resp.replicas.items = reps;
	resp.replicas.n_items = (uint32_t)nr;
	ans.code = RL_STORE_ANS;
	ans.u.store_ans.responses.items = &resp;
	ans.u.store_ans.responses.n_items = 1;
	chord_node_answer(n->cn, d, &ans);
}

static void serve_fetch(sim_t *s, snode_t *n, uint32_t idx, const chord_delivery_t *d, const rl_body_t *b)
{
	enum { MAXV = 64 };
	rl_stored_data_t sds[MAXV];
	uint32_t k = 0;
	rl_fetch_kind_resp_t resp;
	rl_body_t ans;
	vp_id_t res;
	int64_t op;

	if (b->u.fetch_req.resource.len != VP_ID_LEN)
		return;
	memcpy(res.b, b->u.fetch_req.resource.p, VP_ID_LEN);
	for (uint32_t i = 0; i < n->nitems && k < MAXV; i++)
		if (vp_id_eq(&n->items[i].res, &res))
			fill_sd(&sds[k++], &n->items[i]);
	memset(&resp, 0, sizeof(resp));
	resp.kind = RL_KIND_VIPR_REGISTRATION;
	resp.values.items = sds;
	resp.values.n_items = k;
	memset(&ans, 0, sizeof(ans));
	ans.code = RL_FETCH_ANS;
	ans.u.fetch_ans.responses.items = &resp;
	ans.u.fetch_ans.responses.n_items = 1;
	/* Omniscient bookkeeping: who answered, after how many hops. */
	op = tx_get(s, d->msg->hdr.txid);
	if (op >= 0) {
		/* Judge ownership when the request is served: the answer may arrive
		 * after the server itself has failed. */
		s->ops[op].responder = idx;
		s->ops[op].hops = d->hops;
		s->ops[op].owner_ok = true_owner(s, &res) == (int64_t)idx;
	}
	chord_node_answer(n->cn, d, &ans);
}

/* ---- operations -------------------------------------------------------------- */

static void op_finish(sim_t *s, uint32_t i, bool ok)
{
	op_t *o = &s->ops[i];
	if (o->done)
		return;
	if ((o->type == OP_STORE_EXT || o->type == OP_FETCH_EXT) && !s->ext[o->reg].called) {
		ext_t *x = &s->ext[o->reg];
		x->called = true;
		if (o->type == OP_STORE_EXT)
			x->scb(x->arg, ok);
		else
			x->fcb(x->arg, false, UINT32_MAX, 0, NULL, 0);
	}
	o->done = true;
	o->ok = ok;
	tx_del(s, o->txid);
	for (uint32_t k = 0; k < 8; k++)
		if (o->old_txid[k])
			tx_del(s, o->old_txid[k]);
	s->pending--;
	if (o->type == OP_LOOKUP) {
		if (ok) {
			s->c.lookup_ok++;
			s->c.hops_sum += o->hops;
			s->c.hops_n++;
			s->c.hop_hist[o->hops > 64 ? 64 : o->hops]++;
		} else if (o->responder >= 0) {
			s->c.lookup_wrong++;
		} else {
			s->c.lookup_failed++;
		}
	}
}

/* Hand the entries of a Fetch answer (or of the local store) to the application. */
static void ext_fetch_done(sim_t *s, uint32_t i, const rl_body_t *b, const snode_t *local)
{
	op_t *o = &s->ops[i];
	ext_t *x = &s->ext[o->reg];
	sim_entry_t e[SIM_FETCH_MAX];
	size_t n = 0;
	if (b) {
		rl_iter_t ik, iv;
		rl_fetch_kind_resp_t kr;
		rl_stored_data_t sd;
		RL_ITER_INIT(&ik, &b->u.fetch_ans.responses);
		while (rl_fetch_kind_resp_next(&ik, &kr) == 1) {
			if (kr.kind != RL_KIND_VIPR_REGISTRATION)
				continue;
			RL_ITER_INIT(&iv, &kr.values);
			while (rl_stored_data_next(&iv, RL_MODEL_DICTIONARY, &sd) == 1 && n < SIM_FETCH_MAX) {
				/* Deleted entries too: a reader's vote must see a withdrawal. */
				if (entry_from_sd(&sd, &e[n]))
					n++;
			}
		}
	} else {
		for (uint32_t k = 0; k < local->nitems && n < SIM_FETCH_MAX; k++) {
			if (!vp_id_eq(&local->items[k].res, &x->res))
				continue;
			e[n++] = local->items[k].e;
		}
	}
	x->called = true;
	x->fcb(x->arg, true, o->responder >= 0 ? (uint32_t)o->responder : UINT32_MAX, o->hops, e, n);
}

static bool reg_matches(const sim_t *s, const op_t *o, const rl_body_t *b)
{
	const reg_t *r = &s->regs[o->reg];
	sim_entry_t got;
	rl_iter_t ik, iv;
	rl_fetch_kind_resp_t kr;
	rl_stored_data_t sd;
	RL_ITER_INIT(&ik, &b->u.fetch_ans.responses);
	while (rl_fetch_kind_resp_next(&ik, &kr) == 1) {
		RL_ITER_INIT(&iv, &kr.values);
		while (rl_stored_data_next(&iv, RL_MODEL_DICTIONARY, &sd) == 1)
			if (entry_from_sd(&sd, &got) && entry_same(&got, &r->e) && got.storage_time == r->e.storage_time)
				return true;
	}
	return false;
}

static void on_answer(sim_t *s, const chord_delivery_t *d)
{
	int64_t i = tx_get(s, d->msg->hdr.txid);
	rl_body_t b;
	op_t *o;
	if (i < 0)
		return; /* replication answers, or an op that already finished */
	o = &s->ops[i];
	if (d->msg->contents.code == RL_ERROR) {
		if (vp_log_enabled(VP_LOG_DEBUG) &&
		    !rl_body_decode(RL_ERROR, d->msg->contents.body.p, d->msg->contents.body.len, NULL, NULL, &b)) {
			rl_iter_t it;
			rl_dest_t v;
			char a[VP_ID_HEX_LEN + 1] = "-";
			vp_id_t id;
			RL_ITER_INIT(&it, &d->msg->hdr.via);
			if (rl_dest_next(&it, &v) == 1 && v.id.len == VP_ID_LEN) {
				memcpy(id.b, v.id.p, VP_ID_LEN);
				snprintf(a, sizeof(a), "%lld", (long long)slot_of(s, &id));
			}
			vp_log_debug("sim", "op_error", "t=%llu op=%lld code=%u from=%s", (unsigned long long)s->now,
			             (long long)i, b.u.error.code, a);
		}
		return; /* retried at the timeout */
	}
	if (rl_body_decode(d->msg->contents.code, d->msg->contents.body.p, d->msg->contents.body.len,
	                   rl_model_builtin, NULL, &b)) {
		s->c.codec_errors++;
		return;
	}
	switch (o->type) {
	case OP_LOOKUP:
		op_finish(s, (uint32_t)i, o->responder >= 0 && o->owner_ok);
		break;
	case OP_STORE:
		op_finish(s, (uint32_t)i, d->msg->contents.code == RL_STORE_ANS);
		break;
	case OP_FETCH_REG:
		op_finish(s, (uint32_t)i, d->msg->contents.code == RL_FETCH_ANS && reg_matches(s, o, &b));
		break;
	case OP_STORE_EXT:
		op_finish(s, (uint32_t)i, d->msg->contents.code == RL_STORE_ANS);
		break;
	case OP_FETCH_EXT:
		if (d->msg->contents.code == RL_FETCH_ANS)
			ext_fetch_done(s, (uint32_t)i, &b, NULL);
		op_finish(s, (uint32_t)i, d->msg->contents.code == RL_FETCH_ANS);
		break;
	}
}

static void io_deliver(void *ctx, chord_node_t *cn, const chord_delivery_t *d)
{
	sim_t *s = ctx;
	int64_t idx = slot_of(s, chord_node_id(cn));
	rl_body_t b;
	if (idx < 0)
		return;
	if (d->is_answer) {
		on_answer(s, d);
		return;
	}
	if (d->msg->contents.code != RL_STORE_REQ && d->msg->contents.code != RL_FETCH_REQ)
		return;
	if (rl_body_decode(d->msg->contents.code, d->msg->contents.body.p, d->msg->contents.body.len,
	                   rl_model_builtin, NULL, &b)) {
		s->c.codec_errors++;
		return;
	}
	if (d->msg->contents.code == RL_STORE_REQ)
		serve_store(s, &s->nodes[idx], d, &b);
	else
		serve_fetch(s, &s->nodes[idx], (uint32_t)idx, d, &b);
}

static void op_send(sim_t *s, uint32_t i)
{
	op_t *o = &s->ops[i];
	snode_t *n = &s->nodes[o->origin];
	rl_body_t b;
	rl_store_kind_data_t kd;
	rl_stored_data_t sd;
	rl_specifier_t spec;
	item_t it;
	int r;

	if (o->txid && o->attempt <= 8)
		o->old_txid[o->attempt - 1] = o->txid; /* stays mapped until the op ends */
	else if (o->txid)
		tx_del(s, o->txid);
	o->responder = -1;
	o->hops = 0;
	o->attempt++;
	if (!n->alive || !n->joined) {
		/* The origin died or is not ready: move the op to a live node. */
		uint32_t alt = sim_random_live(s);
		if (alt == UINT32_MAX) {
			op_finish(s, i, false);
			return;
		}
		o->origin = alt;
		n = &s->nodes[alt];
	}
	memset(&b, 0, sizeof(b));
	if (o->type == OP_STORE_EXT) {
		it = s->ext[o->reg].item;
		store_body(&b, &kd, &sd, &it, 0);
	} else if (o->type == OP_STORE) {
		const reg_t *rg = &s->regs[o->reg];
		memset(&it, 0, sizeof(it));
		it.res = rg->res;
		it.e = rg->e;
		store_body(&b, &kd, &sd, &it, 0);
	} else {
		memset(&spec, 0, sizeof(spec));
		spec.kind = RL_KIND_VIPR_REGISTRATION;
		spec.model = RL_MODEL_DICTIONARY;
		b.code = RL_FETCH_REQ;
		b.u.fetch_req.resource = (rl_bytes_t){ o->key.b, VP_ID_LEN };
		if (o->type == OP_FETCH_EXT) /* routed towards o->key, asking for the entry's resource */
			b.u.fetch_req.resource = (rl_bytes_t){ s->ext[o->reg].res.b, VP_ID_LEN };
		b.u.fetch_req.specifiers.items = &spec;
		b.u.fetch_req.specifiers.n_items = 1;
	}
	r = chord_node_request(n->cn, &o->key, true, &b, &o->txid, s->now);
	if (r == 1) {
		/* The origin is responsible: served locally, zero hops. */
		bool ok;
		item_t *found;
		o->txid = 0;
		o->responder = o->origin;
		if (o->type == OP_STORE || o->type == OP_STORE_EXT) {
			/* Store locally and replicate like serve_store does. */
			const chord_table_t *t = chord_node_table(n->cn);
			vp_id_t reps[CHORD_REPLICAS];
			size_t nr = chord_table_replicas(t, reps, CHORD_REPLICAS);
			item_put(n, &it, s->now);
			for (size_t k = 0; k < nr; k++)
				send_store_direct(s, n, &reps[k], &it, (uint8_t)(k + 1));
			ok = true;
		} else if (o->type == OP_FETCH_EXT) {
			ext_fetch_done(s, i, NULL, n);
			ok = true;
		} else if (o->type == OP_FETCH_REG) {
			const reg_t *rg = &s->regs[o->reg];
			found = item_find(n, &rg->res, rg->e.key);
			ok = found && found->e.storage_time == rg->e.storage_time && entry_same(&found->e, &rg->e);
		} else {
			ok = o->origin == true_owner(s, &o->key);
		}
		/* keep the op pending so op_finish accounts it once */
		op_finish(s, i, ok);
		return;
	}
	if (r < 0) {
		o->txid = 0;
	} else {
		tx_put(s, o->txid, i);
	}
	push(s, s->now + s->cfg.lookup_timeout_ms, EV_OP_TIMEOUT, i, o->attempt, NULL, 0);
	schedule_tick(s, o->origin);
}

static int op_new(sim_t *s, op_type_t type, uint32_t origin, const vp_id_t *key, uint32_t reg)
{
	op_t *o;
	if (s->nops == s->cap_ops) {
		uint32_t cap = s->cap_ops ? 2 * s->cap_ops : 1024;
		op_t *p = realloc(s->ops, cap * sizeof(*p));
		if (!p)
			return VP_ENOMEM;
		s->ops = p;
		s->cap_ops = cap;
	}
	o = &s->ops[s->nops];
	memset(o, 0, sizeof(*o));
	o->type = (uint8_t)type;
	o->origin = origin;
	o->key = *key;
	o->reg = reg;
	o->responder = -1;
	s->pending++;
	if (type == OP_LOOKUP)
		s->c.lookups++;
	op_send(s, s->nops++);
	return 0;
}

/* ---- event loop ------------------------------------------------------------------ */

static void node_after(sim_t *s, uint32_t idx)
{
	snode_t *n = &s->nodes[idx];
	if (!n->alive || !n->cn)
		return;
	if (chord_node_state(n->cn) == CHORD_LEFT) {
		/* Gave up joining: the process closes its links, like a crash. */
		n->alive = false;
		if (n->joined)
			ring_remove(s, idx);
		return;
	}
	if (!n->joined && chord_node_state(n->cn) == CHORD_JOINED) {
		n->joined = true;
		n->joined_at = s->now;
		ring_insert(s, idx);
	}
	schedule_tick(s, idx);
}

static void handle(sim_t *s, ev_t *e)
{
	switch (e->type) {
	case EV_DELIVER: {
		rl_message_t m;
		snode_t *to = &s->nodes[e->b];
		if (!reachable(s, e->a, e->b)) {
			if (s->trace_op >= 0) {
				rl_fwd_header_t h;
				if (!rl_fwd_header_decode(e->p, e->len, &h) && tx_get(s, h.txid) == s->trace_op)
					vp_log_info("sim", "trace_drop", "t=%llu from=%u to=%u", (unsigned long long)s->now,
					            e->a, e->b);
			}
			s->c.dropped++;
			/* The sender's link layer notices the missing acks and gets the
			 * message back to route it around the dead peer. */
			if (s->nodes[e->a].alive) {
				push(s, s->now + s->cfg.link_detect_ms, EV_LINK_DOWN, e->a, e->b, e->p, e->len);
				e->p = NULL;
			}
			break;
		}
		if (rl_msg_decode(e->p, e->len, &m)) {
			s->c.codec_errors++;
			break;
		}
		if (s->trace_op >= 0 && tx_get(s, m.hdr.txid) == s->trace_op)
			vp_log_info("sim", "trace", "t=%llu from=%u to=%u code=%u via=%zu dests=%zu ttl=%u to_state=%d",
			            (unsigned long long)s->now, e->a, e->b, m.contents.code, RL_LIST_COUNT(&m.hdr.via),
			            RL_LIST_COUNT(&m.hdr.dest), m.hdr.ttl, chord_node_state(to->cn));
		chord_node_recv(to->cn, &s->nodes[e->a].id, &m, s->now);
		node_after(s, e->b);
		break;
	}
	case EV_LINK_UP:
		if (!s->nodes[e->a].alive)
			break;
		if (!reachable(s, e->a, e->b)) {
			chord_node_link_down(s->nodes[e->a].cn, &s->nodes[e->b].id, s->now);
		} else {
			chord_node_link_up(s->nodes[e->a].cn, &s->nodes[e->b].id, s->now);
		}
		node_after(s, e->a);
		break;
	case EV_LINK_DOWN:
		if (!s->nodes[e->a].alive || e->b == UINT32_MAX)
			break;
		/* Only if the peer is really unreachable now (it may have been a loss burst). */
		if (reachable(s, e->a, e->b) && s->cfg.loss == 0)
			break;
		if (e->p) {
			rl_message_t m;
			if (rl_msg_decode(e->p, e->len, &m) == 0)
				chord_node_resend(s->nodes[e->a].cn, &s->nodes[e->b].id, &m, s->now);
			else
				s->c.codec_errors++;
		} else {
			chord_node_link_down(s->nodes[e->a].cn, &s->nodes[e->b].id, s->now);
		}
		node_after(s, e->a);
		break;
	case EV_TICK:
		if (!s->nodes[e->a].alive || s->nodes[e->a].tick_at != e->t)
			break;
		s->nodes[e->a].tick_at = 0;
		chord_node_tick(s->nodes[e->a].cn, s->now);
		node_after(s, e->a);
		break;
	case EV_OP_TIMEOUT: {
		op_t *o = &s->ops[e->a];
		if (o->done || o->attempt != e->b)
			break;
		if (vp_log_enabled(VP_LOG_DEBUG) && o->type == OP_LOOKUP) {
			vp_id_t next;
			int h = -9;
			int64_t nh = -1;
			if (s->nodes[o->origin].alive) {
				h = chord_table_next_hop(chord_node_table(s->nodes[o->origin].cn), &o->key, &next);
				nh = slot_of(s, &next);
			}
			vp_log_debug("sim", "lookup_timeout", "t=%llu op=%u attempt=%u origin=%u owner=%lld hop=%d next=%lld next_alive=%d",
			             (unsigned long long)s->now, e->a, o->attempt, o->origin, (long long)true_owner(s, &o->key), h,
			             (long long)nh, nh >= 0 ? s->nodes[nh].alive : -1);
		}
		if (o->attempt >= s->cfg.lookup_attempts)
			op_finish(s, e->a, false);
		else
			op_send(s, e->a);
		break;
	}
	}
	free(e->p);
}

void sim_run_until(sim_t *s, uint64_t t_ms)
{
	while (s->nheap && s->heap[0].t <= t_ms) {
		ev_t e = pop(s);
		s->now = e.t;
		s->events++;
		handle(s, &e);
		rcu_quiescent_state();
	}
	s->now = t_ms;
}

/* ---- public ---------------------------------------------------------------------- */

sim_cfg_t sim_cfg_default(void)
{
	return (sim_cfg_t){
		.seed = 1,
		.max_nodes = 100,
		.lat_min_ms = 20,
		.lat_median_ms = 15,
		.lat_sigma = 0.5,
		.loss = 0,
		.rto_ms = 500,
		.max_tx = 4,
		.link_detect_ms = 1500,
		.lookup_timeout_ms = 3000,
		.lookup_attempts = 4,
		.chord = chord_cfg_default(),
	};
}

int sim_new(const sim_cfg_t *cfg, sim_t **out)
{
	sim_t *s;
	uint32_t msize = 1024;
	uint64_t seed = cfg->seed;
	*out = NULL;
	if (!cfg->max_nodes || chord_cfg_check(&cfg->chord) || cfg->loss < 0 || cfg->loss >= 1 ||
	    !cfg->lookup_attempts || !cfg->max_tx)
		return VP_ECONFIG;
	s = calloc(1, sizeof(*s));
	if (!s)
		return VP_ENOMEM;
	s->cfg = *cfg;
	s->trace_op = getenv("SIM_TRACE_OP") ? atoll(getenv("SIM_TRACE_OP")) : -1;
	for (int i = 0; i < 4; i++)
		s->rng.s[i] = splitmix(&seed);
	while (msize < 2 * cfg->max_nodes)
		msize *= 2;
	s->map = calloc(msize, sizeof(uint32_t));
	s->map_mask = msize - 1;
	s->nodes = calloc(cfg->max_nodes, sizeof(snode_t));
	s->ring = calloc(cfg->max_nodes, sizeof(vp_id_t));
	s->ring_idx = calloc(cfg->max_nodes, sizeof(uint32_t));
	s->tx_mask = 4095;
	s->tx_keys = calloc(s->tx_mask + 1, sizeof(uint64_t));
	s->tx_vals = calloc(s->tx_mask + 1, sizeof(uint32_t));
	if (!s->map || !s->nodes || !s->ring || !s->ring_idx || !s->tx_keys || !s->tx_vals) {
		sim_free(s);
		return VP_ENOMEM;
	}
	*out = s;
	return 0;
}

void sim_free(sim_t *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->nheap; i++)
		free(s->heap[i].p);
	free(s->heap);
	if (s->nodes) {
		for (uint32_t i = 0; i < s->nnodes; i++) {
			chord_node_free(s->nodes[i].cn);
			free(s->nodes[i].items);
		}
	}
	free(s->nodes);
	free(s->map);
	free(s->ring);
	free(s->ring_idx);
	free(s->ops);
	free(s->tx_keys);
	free(s->tx_vals);
	free(s->regs);
	free(s->ext);
	free(s);
}

/*
 * A bootstrap peer, as an operator would configure one: a member that has been
 * in the ring for a while (a node that joined a second ago may not know its
 * neighbourhood yet, and joining through it could start a parallel ring that
 * Chord stabilisation cannot merge).
 */
static uint32_t random_bootstrap(sim_t *s)
{
	if (s->cfg.join_first && s->nnodes && s->nodes[0].alive && s->nodes[0].joined)
		return 0;
	for (int tries = 0; tries < 32 && s->nring; tries++) {
		uint32_t i = s->ring_idx[rng_next(&s->rng) % s->nring];
		if (s->nodes[i].joined_at + BOOTSTRAP_AGE_MS <= s->now)
			return i;
	}
	/* Young overlay: the longest-standing member. */
	{
		uint32_t best = UINT32_MAX;
		for (uint32_t k = 0; k < s->nring; k++) {
			uint32_t i = s->ring_idx[k];
			if (best == UINT32_MAX || s->nodes[i].joined_at < s->nodes[best].joined_at)
				best = i;
		}
		return best;
	}
}

int sim_spawn(sim_t *s)
{
	chord_io_t io = { .ctx = s, .send = io_send, .forward = io_forward, .attach_info = io_attach_info, .connect = io_connect,
	                  .reach = io_reach, .deliver = io_deliver, .store = io_store, .num_resources = io_num_resources };
	snode_t *n;
	uint32_t idx, boot;
	int err;

	if (s->nnodes == s->cfg.max_nodes)
		return VP_ESPACE;
	idx = s->nnodes;
	n = &s->nodes[idx];
	memset(n, 0, sizeof(*n));
	do {
		uint64_t a = rng_next(&s->rng), b = rng_next(&s->rng);
		for (int i = 0; i < 8; i++) {
			n->id.b[i] = (uint8_t)(a >> (56 - 8 * i));
			n->id.b[8 + i] = (uint8_t)(b >> (56 - 8 * i));
		}
	} while (slot_of(s, &n->id) >= 0);
	boot = random_bootstrap(s);
	if ((err = chord_node_new(&s->cfg.chord, &n->id, &io, s->now, &n->cn)))
		return err;
	s->nnodes++;
	map_put(s, &n->id, idx);
	n->alive = true;
	if (boot == UINT32_MAX)
		err = chord_node_bootstrap(n->cn, s->now);
	else
		err = chord_node_join(n->cn, &s->nodes[boot].id, s->now);
	node_after(s, idx);
	return err ? err : (int)idx;
}

void sim_kill(sim_t *s, uint32_t idx)
{
	if (idx >= s->nnodes || !s->nodes[idx].alive)
		return;
	s->nodes[idx].alive = false;
	if (s->nodes[idx].joined)
		ring_remove(s, idx);
}

int sim_leave(sim_t *s, uint32_t idx)
{
	int err;
	if (idx >= s->nnodes || !s->nodes[idx].alive)
		return VP_EINVAL;
	err = chord_node_leave(s->nodes[idx].cn, s->now);
	s->nodes[idx].alive = false;
	if (s->nodes[idx].joined)
		ring_remove(s, idx);
	return err;
}

void sim_set_group(sim_t *s, uint32_t idx, uint8_t group)
{
	if (idx < s->nnodes)
		s->nodes[idx].group = group;
}

uint64_t sim_now(const sim_t *s)
{
	return s->now;
}

uint32_t sim_nodes(const sim_t *s)
{
	return s->nnodes;
}

uint32_t sim_live(const sim_t *s)
{
	uint32_t k = 0;
	for (uint32_t i = 0; i < s->nnodes; i++)
		k += s->nodes[i].alive;
	return k;
}

uint32_t sim_live_joined(sim_t *s)
{
	return s->nring;
}

bool sim_alive(const sim_t *s, uint32_t idx)
{
	return idx < s->nnodes && s->nodes[idx].alive;
}

bool sim_joined(const sim_t *s, uint32_t idx)
{
	return idx < s->nnodes && s->nodes[idx].alive && s->nodes[idx].joined;
}

uint32_t sim_random_live(sim_t *s)
{
	if (!s->nring)
		return UINT32_MAX;
	return s->ring_idx[rng_next(&s->rng) % s->nring];
}

uint32_t sim_ring_errors(sim_t *s)
{
	uint32_t bad = 0;
	for (uint32_t i = 0; i < s->nring; i++) {
		const chord_table_t *t = chord_node_table(s->nodes[s->ring_idx[i]].cn);
		const vp_id_t *succ = &s->ring[(i + 1) % s->nring];
		const vp_id_t *pred = &s->ring[(i + s->nring - 1) % s->nring];
		if (s->nring == 1) {
			bad += t->nsucc != 0;
			continue;
		}
		if (!t->nsucc || !t->npred || !vp_id_eq(&t->succ[0], succ) || !vp_id_eq(&t->pred[0], pred))
			bad++;
	}
	return bad;
}

void sim_lookup_random(sim_t *s)
{
	uint32_t origin = sim_random_live(s);
	vp_id_t key;
	uint64_t a = rng_next(&s->rng), b = rng_next(&s->rng);
	if (origin == UINT32_MAX)
		return;
	memcpy(key.b, &a, 8);
	memcpy(key.b + 8, &b, 8);
	op_new(s, OP_LOOKUP, origin, &key, 0);
}

static void store_reg(sim_t *s, uint32_t r)
{
	reg_t *rg = &s->regs[r];
	rg->e.storage_time = 1700000000000ull + s->now + (++s->reg_seq);
	op_new(s, OP_STORE, rg->owner, &rg->res, r);
}

void sim_store_regs(sim_t *s, uint32_t k)
{
	for (uint32_t i = 0; i < k; i++) {
		reg_t *rg;
		char name[24];
		uint32_t owner = sim_random_live(s);
		if (owner == UINT32_MAX)
			return;
		if (s->nregs == s->cap_regs) {
			uint32_t cap = s->cap_regs ? 2 * s->cap_regs : 1024;
			reg_t *p = realloc(s->regs, cap * sizeof(*p));
			if (!p)
				return;
			s->regs = p;
			s->cap_regs = cap;
		}
		rg = &s->regs[s->nregs];
		snprintf(name, sizeof(name), "+1555%07u", s->nregs);
		rg->res = vp_id_from_name(name, strlen(name));
		rg->owner = owner;
		/* A real registration (storage/vipr_kind.h): the owner claims the number for VService 1,
		 * with 16 random reserved bytes so every registration's value is distinct. */
		{
			uint8_t rnd[16];
			st_vipr_key_t key = { s->nodes[owner].id, 1 };
			st_vipr_value_t v = { s->nodes[owner].id, 1, ST_VIPR_PVP_WITH_CALLER_ID | ST_VIPR_PVP_WITHOUT_CALLER_ID,
			                      rnd, sizeof(rnd) };
			size_t len = 0;
			for (int j = 0; j < 2; j++) {
				uint64_t x = rng_next(&s->rng);
				memcpy(rnd + 8 * j, &x, 8);
			}
			memset(&rg->e, 0, sizeof(rg->e));
			st_vipr_key_encode(&key, rg->e.key);
			rg->e.exists = true;
			if (st_vipr_value_encode(&v, rg->e.value, sizeof(rg->e.value), &len))
				return; /* cannot happen: SIM_VALUE_MAX holds it */
			rg->e.value_len = (uint8_t)len;
		}
		store_reg(s, s->nregs++);
	}
}

void sim_refresh_regs(sim_t *s)
{
	for (uint32_t r = 0; r < s->nregs; r++)
		if (s->nodes[s->regs[r].owner].alive)
			store_reg(s, r);
}

/* A protocol copy: live node \p n holds the registration and, by its own table, owns or replicates it.  An
 * out-of-range leftover waiting for its CHORD_STORE_DROP is no copy: nothing would ever serve or repair it. */
static bool holds_copy(sim_t *s, uint32_t n, const reg_t *rg)
{
	const item_t *it;
	if (!s->nodes[n].alive || !s->nodes[n].joined)
		return false;
	it = item_find(&s->nodes[n], &rg->res, rg->e.key);
	return it && it->e.storage_time == rg->e.storage_time &&
	       chord_table_replica_rank(chord_node_table(s->nodes[n].cn), &rg->res) >= 0;
}

sim_survival_t sim_check_regs(sim_t *s)
{
	sim_survival_t sv = { .total = s->nregs };
	uint32_t first = s->nops;
	for (uint32_t r = 0; r < s->nregs; r++) {
		uint32_t origin = sim_random_live(s);
		if (origin == UINT32_MAX)
			break;
		op_new(s, OP_FETCH_REG, origin, &s->regs[r].res, r);
	}
	/* Bounded: every op finishes within attempts x timeout. */
	sim_run_until(s, s->now + (uint64_t)s->cfg.lookup_attempts * s->cfg.lookup_timeout_ms + 1000);
	for (uint32_t i = first; i < s->nops; i++) {
		const op_t *o = &s->ops[i];
		const reg_t *rg = &s->regs[o->reg];
		bool holder = false;
		if (o->done && o->ok) {
			sv.ok++;
			continue;
		}
		for (uint32_t n = 0; n < s->nnodes && !holder; n++)
			holder = holds_copy(s, n, rg);
		if (holder && vp_log_enabled(VP_LOG_DEBUG)) {
			int64_t own = true_owner(s, &rg->res);
			uint32_t pos = ring_succ_pos(s, &rg->res);
			char a[VP_ID_HEX_LEN + 1];
			vp_log_debug("sim", "lost_with_holder", "reg=%u res=%s owner_node=%lld responder=%lld done=%d",
			             o->reg, vp_id_to_hex(&rg->res, a), (long long)own, (long long)o->responder,
			             o->done);
			for (uint32_t k = 0; k < 5 && k < s->nring; k++) {
				uint32_t ni = s->ring_idx[(pos + k) % s->nring];
				item_t *it = item_find(&s->nodes[ni], &rg->res, rg->e.key);
				const chord_table_t *t = chord_node_table(s->nodes[ni].cn);
				vp_log_debug("sim", "holder", "ring_pos=+%u node=%u has=%d rank=%d", k, ni,
				             it && it->e.storage_time == rg->e.storage_time, chord_table_replica_rank(t, &rg->res));
			}
		}
		if (holder)
			sv.lost_with_holder++;
		else
			sv.lost_no_holder++;
		if (!s->nodes[rg->owner].alive)
			sv.owner_dead++;
	}
	return sv;
}

void sim_copies(sim_t *s, uint32_t hist[5])
{
	memset(hist, 0, 5 * sizeof(uint32_t));
	for (uint32_t r = 0; r < s->nregs; r++) {
		const reg_t *rg = &s->regs[r];
		uint32_t c = 0;
		for (uint32_t n = 0; n < s->nnodes; n++)
			c += holds_copy(s, n, rg);
		hist[c > 4 ? 4 : c]++;
	}
}

void sim_placement(sim_t *s, uint32_t right[4], uint32_t extra[5])
{
	memset(right, 0, 4 * sizeof(uint32_t));
	memset(extra, 0, 5 * sizeof(uint32_t));
	if (!s->nring)
		return;
	for (uint32_t r = 0; r < s->nregs; r++) {
		const reg_t *rg = &s->regs[r];
		uint32_t pos = ring_succ_pos(s, &rg->res), c = 0, all = 0;
		for (uint32_t k = 0; k < 3 && k < s->nring; k++) {
			item_t *it = item_find(&s->nodes[s->ring_idx[(pos + k) % s->nring]], &rg->res, rg->e.key);
			c += it && it->e.storage_time == rg->e.storage_time;
		}
		for (uint32_t k = 0; k < s->nring; k++) {
			item_t *it = item_find(&s->nodes[s->ring_idx[k]], &rg->res, rg->e.key);
			all += it && it->e.storage_time == rg->e.storage_time;
		}
		right[c]++;
		extra[all - c > 4 ? 4 : all - c]++;
	}
}

uint32_t sim_regs_without_copy(sim_t *s)
{
	uint32_t hist[5];
	sim_copies(s, hist);
	return hist[0];
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

int sim_doomed_spread(const sim_t *s, uint32_t kills, uint32_t trials, uint64_t seed, double *mean_pct,
                      double *p5_pct, double *p95_pct)
{
	uint64_t rng = seed ^ 0x6a09e667f3bcc909ull;
	uint32_t n = s->nring, *perm = NULL, *pos = NULL, *doomed = NULL;
	uint8_t *dead = NULL;
	double sum = 0;
	int rc = VP_ENOMEM;

	*mean_pct = *p5_pct = *p95_pct = 0;
	if (!n || !s->nregs || !trials || kills > n)
		return VP_EINVAL;
	perm = malloc(n * sizeof(*perm));
	pos = malloc(s->nregs * sizeof(*pos));
	doomed = malloc(trials * sizeof(*doomed));
	dead = malloc(n);
	if (!perm || !pos || !doomed || !dead)
		goto finish;
	for (uint32_t r = 0; r < s->nregs; r++)
		pos[r] = ring_succ_pos(s, &s->regs[r].res);
	for (uint32_t i = 0; i < n; i++)
		perm[i] = i;
	for (uint32_t t = 0; t < trials; t++) {
		uint32_t c = 0;
		memset(dead, 0, n);
		for (uint32_t i = 0; i < kills; i++) { /* partial Fisher-Yates: the first kills entries */
			uint32_t j = i + (uint32_t)(vp_splitmix64_next(&rng) % (n - i)), x = perm[i];
			perm[i] = perm[j];
			perm[j] = x;
			dead[perm[i]] = 1;
		}
		for (uint32_t r = 0; r < s->nregs; r++)
			c += dead[pos[r]] && dead[(pos[r] + 1) % n] && dead[(pos[r] + 2) % n];
		doomed[t] = c;
		sum += c;
	}
	qsort(doomed, trials, sizeof(*doomed), cmp_u32);
	*mean_pct = 100.0 * sum / trials / s->nregs;
	*p5_pct = 100.0 * doomed[trials / 20] / s->nregs;
	*p95_pct = 100.0 * doomed[trials - 1 - trials / 20] / s->nregs;
	rc = 0;
finish:
	free(perm);
	free(pos);
	free(doomed);
	free(dead);
	return rc;
}

uint32_t sim_pending_ops(const sim_t *s)
{
	return s->pending;
}

const sim_counters_t *sim_counters(const sim_t *s)
{
	return &s->c;
}

void sim_counters_reset(sim_t *s)
{
	s->msgs_total += s->c.msgs;
	memset(&s->c, 0, sizeof(s->c));
}

uint64_t sim_msgs_total(const sim_t *s)
{
	return s->msgs_total + s->c.msgs;
}

uint64_t sim_events(const sim_t *s)
{
	return s->events;
}

chord_node_t *sim_node(sim_t *s, uint32_t idx)
{
	return idx < s->nnodes ? s->nodes[idx].cn : NULL;
}

uint64_t sim_rand(sim_t *s)
{
	return rng_next(&s->rng);
}

/* ---- operations for an embedding application ---------------------------------- */

static int ext_new(sim_t *s, uint32_t *idx)
{
	if (s->next == s->cap_ext) {
		uint32_t cap = s->cap_ext ? 2 * s->cap_ext : 256;
		ext_t *p = realloc(s->ext, cap * sizeof(*p));
		if (!p)
			return VP_ENOMEM;
		s->ext = p;
		s->cap_ext = cap;
	}
	*idx = s->next++;
	memset(&s->ext[*idx], 0, sizeof(s->ext[0]));
	return 0;
}

int sim_store_entry(sim_t *s, uint32_t from, const vp_id_t *res, const sim_entry_t *e, sim_store_cb cb, void *arg)
{
	uint32_t x;
	int rc;
	if (from >= s->nnodes || !res || !e || !cb)
		return VP_EINVAL;
	if ((rc = ext_new(s, &x)))
		return rc;
	s->ext[x].res = *res;
	s->ext[x].item.res = *res;
	s->ext[x].item.e = *e;
	s->ext[x].scb = cb;
	s->ext[x].arg = arg;
	return op_new(s, OP_STORE_EXT, from, res, x);
}

int sim_fetch_entries(sim_t *s, uint32_t from, const vp_id_t *res, const vp_id_t *route_to, sim_fetch_cb cb,
                      void *arg)
{
	uint32_t x;
	int rc;
	if (from >= s->nnodes || !res || !route_to || !cb)
		return VP_EINVAL;
	if ((rc = ext_new(s, &x)))
		return rc;
	s->ext[x].res = *res;
	s->ext[x].fcb = cb;
	s->ext[x].arg = arg;
	return op_new(s, OP_FETCH_EXT, from, route_to, x);
}

int sim_forget_resource(sim_t *s, const vp_id_t *res)
{
	int64_t idx = res ? true_owner(s, res) : -1;
	snode_t *n;
	uint32_t k = 0;
	if (idx < 0)
		return VP_ENOTFOUND;
	n = &s->nodes[idx];
	for (uint32_t i = 0; i < n->nitems; i++)
		if (!vp_id_eq(&n->items[i].res, res))
			n->items[k++] = n->items[i];
	n->nitems = k;
	return (int)idx;
}
