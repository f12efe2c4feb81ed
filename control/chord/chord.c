#include "control/chord/chord.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "common/errcode.h"
#include "common/log.h"
#include "common/rand.h"

/*
 * Bounds.  A vnode keeps links to its table entries only (<= CHORD_MAX_ROUTE),
 * so these caps are never reached in a healthy overlay; they keep a flood of
 * Updates or Attaches from growing memory without limit.
 */
#define TXN_CAP 256        /* outstanding topology requests (a join needs ~70) */
#define PLINK_CAP 128      /* links being opened */
#define DEAD_CAP 64        /* recently failed peers, ignored when gossiped */
#define MAX_VIA 128        /* longer via lists are dropped (TTL is 100 by default) */
#define MAX_LIST 64        /* ids taken from one Update or Leave list */
#define JOIN_BACKOFF_MS 1000 /* first retry after an error answer to a join step, doubling up to 64 s */
/*
 * Ring merging (ring_check).  MERGE_CAP peers are remembered outside the table: the bootstrap peer joined
 * through and the latest peers seen failing.  After a partition the peers a node saw fail are exactly the
 * ones on the other side, and a handful is enough (any one of them that answers merges the rings); 16 ids
 * cost 16 * 33 bytes.  MERGE_MISSES: probes that could not reach a remembered peer before it is forgotten
 * (a crashed peer), i.e. at least MERGE_MISSES ring-check intervals; the bootstrap peer is never forgotten
 * this way.
 */
#define MERGE_CAP 16
#define MERGE_MISSES 8

typedef enum txn_kind {
	TX_ATTACH_JOIN = 1, /* Attach to our own id while joining */
	TX_ATTACH,          /* Attach to a (gossiped) node id */
	TX_ATTACH_FINGER,   /* Attach to a finger target (a resource id) */
	TX_JOIN,
	TX_UPDATE,
	TX_PING,
	TX_LEAVE,
} txn_kind_t;

typedef struct txn {
	uint64_t txid;
	uint64_t deadline;
	vp_id_t peer;   /* the direct peer, or the Attach target */
	vp_id_t hop;    /* the link it went out on: its answer must come back on it */
	uint8_t kind;
	uint8_t direct; /* sent straight to `peer`: a timeout means it failed */
} txn_t;

/* PL_PROBE: a link opened by io->reach for a ring check; when it is up the check's Attach goes through it. */
enum { PL_READY = 1, PL_SEND_UPDATE = 2, PL_AP = 4, PL_PROBE = 8 };

typedef struct plink {
	vp_id_t peer;
	uint64_t deadline;
	uint8_t flags;
} plink_t;

/* A peer remembered for ring checks (see MERGE_CAP). */
typedef struct mpeer {
	vp_id_t id;
	uint64_t added;  /* when it was remembered: the oldest unpinned entry makes room */
	uint64_t probed; /* last probe through it (0: never): the least recently probed goes next */
	uint8_t misses;  /* probes in a row that did not reach it */
	uint8_t pinned;  /* the bootstrap peer: not forgotten for misses nor evicted */
} mpeer_t;

typedef struct dead {
	vp_id_t peer;
	uint64_t until;
} dead_t;

struct chord_node {
	chord_cfg_t cfg;
	chord_io_t io;
	vp_id_t self;
	chord_state_t state;
	uint64_t now;
	uint64_t start_ms;

	chord_rt_t rt;
	chord_table_t *tab; /* == rt.cur; only this thread writes it */
	uint64_t version;

	vp_id_t *peers;     /* live, ready peers: the table is built from these */
	uint32_t npeers, cap_peers;

	txn_t *txn;         /* grown on demand up to TXN_CAP (most nodes need a few) */
	uint32_t ntxn, cap_txn;
	plink_t *plink;     /* grown on demand up to PLINK_CAP */
	uint32_t nplink, cap_plink;
	dead_t dead[DEAD_CAP];
	uint32_t ndead_next;

	/* joining */
	vp_id_t via_peer;   /* bootstrap, then the admitting peer */
	vp_id_t ap;
	bool have_ap, ap_link_up, ap_update, join_sent;
	bool early_update;  /* an Update arrived before the AttachAns naming its sender */
	vp_id_t early_from;
	uint32_t join_tries;
	uint64_t join_deadline;

	/* ring merge: the bootstrap peer we joined through and peers seen failing, probed by ring checks */
	mpeer_t mem[MERGE_CAP];
	uint32_t nmem;
	uint64_t next_ring_check;

	/* replication state: what the replicas were last given */
	bool rep_valid;
	vp_id_t rep_pred;
	bool rep_has_pred;
	vp_id_t rep_succ[CHORD_REPLICAS];
	uint32_t rep_n;
	vp_id_t rep_preds[CHORD_REPLICAS + 1];
	uint32_t rep_npred;

	uint64_t next_update, next_ping;
	uint64_t reactive_due; /* 0 = no reactive Update pending */
	uint64_t drop_due;     /* 0 = no CHORD_STORE_DROP pending */
	uint64_t rerep_due;    /* 0 = no repeated CHORD_STORE_REPLICATE pending */
	/* Stale-view replies, rate-limited per peer: two peers whose views cannot
	 * agree yet (a third node is unknown to one of them) must not ping-pong. */
	struct { vp_id_t peer; uint64_t at; } stale_reply[8];
	uint32_t stale_next;
	chord_stats_t stats;
};

/* ---- helpers ------------------------------------------------------------ */


static uint64_t id_hash(const vp_id_t *id)
{
	uint64_t a = 0, b = 0;
	for (int i = 0; i < 8; i++) {
		a = a << 8 | id->b[i];
		b = b << 8 | id->b[8 + i];
	}
	return vp_splitmix64_mix(a ^ vp_splitmix64_mix(b));
}

/*
 * A transaction id: 64 bits from the CSPRNG (RFC 6940 §6.3.2: "randomly
 * generated").  An off-path peer that could predict it could forge the answer
 * to an Attach or Join; a hash of our public Node-ID and a counter was
 * predictable by anyone who saw one id.  VP_ECRYPTO if the generator fails.
 */
static int new_txid(chord_node_t *n, uint64_t *out)
{
	(void)n;
	if (RAND_bytes((unsigned char *)out, sizeof(*out)) != 1)
		return VP_ECRYPTO;
	return 0;
}

static bool is_answer_code(uint16_t code)
{
	return code == RL_ERROR || (code & 1) == 0;
}

unsigned chord_stats_family(uint16_t code)
{
	if (code == RL_ERROR)
		return 15;
	return ((unsigned)(code + 1) / 2) & 15;
}

chord_cfg_t chord_cfg_default(void)
{
	return (chord_cfg_t){
		.table = chord_table_params_default(),
		.overlay = 0,
		.config_seq = 1,
		.initial_ttl = RL_DEFAULT_TTL,
		.reactive = true,
		.update_interval_ms = 600 * 1000,
		.ping_interval_ms = 3600 * 1000,
		.reactive_delay_ms = 100,
		.request_timeout_ms = 15 * 1000,
		.join_attempts = 10,
		.ring_check_interval_ms = 3600 * 1000,
		.drop_grace_ms = 0,
	};
}

/* The effective grace before out-of-range data is dropped (see chord_cfg_t). */
static uint64_t drop_grace(const chord_cfg_t *c)
{
	return c->drop_grace_ms ? c->drop_grace_ms : 2 * c->update_interval_ms;
}

int chord_cfg_check(const chord_cfg_t *cfg)
{
	if (!cfg || chord_table_params_check(&cfg->table))
		return VP_ECONFIG;
	if (cfg->initial_ttl == 0 || cfg->update_interval_ms == 0 || cfg->ping_interval_ms == 0 ||
	    cfg->request_timeout_ms == 0 || cfg->join_attempts == 0)
		return VP_ECONFIG;
	return 0;
}

static int peer_index(const chord_node_t *n, const vp_id_t *id)
{
	for (uint32_t i = 0; i < n->npeers; i++)
		if (vp_id_eq(&n->peers[i], id))
			return (int)i;
	return -1;
}

static bool is_dead(chord_node_t *n, const vp_id_t *id)
{
	for (uint32_t i = 0; i < DEAD_CAP; i++)
		if (n->dead[i].until > n->now && vp_id_eq(&n->dead[i].peer, id))
			return true;
	return false;
}

static void mark_dead(chord_node_t *n, const vp_id_t *id, uint64_t for_ms)
{
	n->dead[n->ndead_next].peer = *id;
	n->dead[n->ndead_next].until = n->now + for_ms;
	n->ndead_next = (n->ndead_next + 1) % DEAD_CAP;
}

static void clear_dead(chord_node_t *n, const vp_id_t *id)
{
	for (uint32_t i = 0; i < DEAD_CAP; i++)
		if (vp_id_eq(&n->dead[i].peer, id))
			n->dead[i].until = 0;
}

static txn_t *txn_find(chord_node_t *n, uint64_t txid)
{
	for (uint32_t i = 0; i < n->ntxn; i++)
		if (n->txn[i].txid == txid)
			return &n->txn[i];
	return NULL;
}

static bool txn_pending_attach(chord_node_t *n, const vp_id_t *target)
{
	for (uint32_t i = 0; i < n->ntxn; i++)
		if ((n->txn[i].kind == TX_ATTACH || n->txn[i].kind == TX_ATTACH_JOIN ||
		     n->txn[i].kind == TX_ATTACH_FINGER) &&
		    vp_id_eq(&n->txn[i].peer, target))
			return true;
	return false;
}

static bool txn_pending_direct(chord_node_t *n, const vp_id_t *peer, txn_kind_t kind)
{
	for (uint32_t i = 0; i < n->ntxn; i++)
		if (n->txn[i].kind == kind && n->txn[i].direct && vp_id_eq(&n->txn[i].peer, peer))
			return true;
	return false;
}

static void txn_remove(chord_node_t *n, txn_t *t)
{
	*t = n->txn[--n->ntxn];
}

static int txn_add(chord_node_t *n, uint64_t txid, txn_kind_t kind, const vp_id_t *peer, const vp_id_t *hop,
                   bool direct)
{
	if (n->ntxn == TXN_CAP)
		return VP_EBUSY;
	if (n->ntxn == n->cap_txn) {
		uint32_t cap = n->cap_txn ? 2 * n->cap_txn : 8;
		txn_t *p = realloc(n->txn, (cap > TXN_CAP ? TXN_CAP : cap) * sizeof(*p));
		if (!p)
			return VP_ENOMEM;
		n->txn = p;
		n->cap_txn = cap > TXN_CAP ? TXN_CAP : cap;
	}
	n->txn[n->ntxn++] = (txn_t){ .txid = txid, .deadline = n->now + n->cfg.request_timeout_ms,
	                             .peer = *peer, .hop = *hop, .kind = (uint8_t)kind, .direct = direct };
	return 0;
}

static plink_t *plink_find(chord_node_t *n, const vp_id_t *peer)
{
	for (uint32_t i = 0; i < n->nplink; i++)
		if (vp_id_eq(&n->plink[i].peer, peer))
			return &n->plink[i];
	return NULL;
}

static void plink_add(chord_node_t *n, const vp_id_t *peer, uint8_t flags)
{
	plink_t *p = plink_find(n, peer);
	if (p) {
		p->flags |= flags;
		return;
	}
	if (n->nplink == PLINK_CAP)
		return; /* dropped: the peer will be learned again later */
	if (n->nplink == n->cap_plink) {
		uint32_t cap = n->cap_plink ? 2 * n->cap_plink : 4;
		plink_t *q = realloc(n->plink, (cap > PLINK_CAP ? PLINK_CAP : cap) * sizeof(*q));
		if (!q)
			return; /* as above */
		n->plink = q;
		n->cap_plink = cap > PLINK_CAP ? PLINK_CAP : cap;
	}
	n->plink[n->nplink++] = (plink_t){ .peer = *peer, .flags = flags,
	                                   .deadline = n->now + n->cfg.request_timeout_ms };
}

/* ---- remembered peers (ring merging) ------------------------------------ */

static int mem_find(const chord_node_t *n, const vp_id_t *id)
{
	for (uint32_t i = 0; i < n->nmem; i++)
		if (vp_id_eq(&n->mem[i].id, id))
			return (int)i;
	return -1;
}

static void mem_forget(chord_node_t *n, uint32_t i)
{
	n->mem[i] = n->mem[--n->nmem];
}

/* Remember `id` for ring checks; a full set drops its oldest unpinned entry. */
static void mem_remember(chord_node_t *n, const vp_id_t *id, bool pinned)
{
	int i = mem_find(n, id);
	uint32_t slot = n->nmem;
	if (vp_id_eq(id, &n->self))
		return;
	if (i >= 0) {
		n->mem[i].pinned |= pinned;
		return;
	}
	if (n->nmem == MERGE_CAP) {
		slot = MERGE_CAP;
		for (uint32_t k = 0; k < MERGE_CAP; k++)
			if (!n->mem[k].pinned && (slot == MERGE_CAP || n->mem[k].added < n->mem[slot].added))
				slot = k;
		if (slot == MERGE_CAP)
			return; /* all pinned (cannot happen with one bootstrap peer) */
	} else {
		n->nmem++;
	}
	n->mem[slot] = (mpeer_t){ .id = *id, .added = n->now, .pinned = pinned };
}

/* A probe did not reach `id` (connect failed or timed out). */
static void mem_missed(chord_node_t *n, const vp_id_t *id)
{
	int i = mem_find(n, id);
	n->stats.ring_check_misses++;
	if (i < 0)
		return;
	if (++n->mem[i].misses >= MERGE_MISSES && !n->mem[i].pinned)
		mem_forget(n, (uint32_t)i);
}

/* ---- sending ------------------------------------------------------------ */

static void msg_init(chord_node_t *n, rl_message_t *m, uint64_t txid, const rl_body_t *body)
{
	memset(m, 0, sizeof(*m));
	m->hdr.overlay = n->cfg.overlay;
	m->hdr.config_seq = n->cfg.config_seq;
	m->hdr.version = RL_VERSION;
	m->hdr.ttl = n->cfg.initial_ttl;
	m->hdr.fragment = RL_FRAG_UNFRAGMENTED;
	m->hdr.txid = txid;
	m->contents.code = body->code;
	m->contents.body_st = body;
	/* Signing is the link layer's job (rl_msg_encode_signed); here: identity none. */
	m->sec.sig.hash_alg = RL_HASH_NONE;
	m->sec.sig.sig_alg = RL_SIG_ANONYMOUS;
	m->sec.sig.identity.type = RL_SIGNER_NONE;
}

static bool is_topology_code(uint16_t code)
{
	switch (code == RL_ERROR ? 0 : (code + 1) & 0xFFFE) {
	case RL_ATTACH_ANS: case RL_JOIN_ANS: case RL_LEAVE_ANS: case RL_UPDATE_ANS:
	case RL_PING_ANS: case RL_ROUTE_QUERY_ANS: case RL_PROBE_ANS:
		return true;
	default:
		return false;
	}
}

/* Send a message this vnode originates (request or answer). */
static int io_send(chord_node_t *n, const vp_id_t *next, const rl_message_t *m)
{
	n->stats.sent[chord_stats_family(m->contents.code)]++;
	if (is_topology_code(m->contents.code))
		n->stats.maint_sent++;
	return n->io.send(n->io.ctx, n, next, m);
}

/* Originate a request to `dest` (node or resource), sent to `next`. */
static int send_request_to(chord_node_t *n, const vp_id_t *next, const vp_id_t *dest, bool resource,
                           const rl_body_t *body, uint64_t txid)
{
	rl_message_t m;
	rl_dest_t d = resource ? rl_dest_resource(dest->b, VP_ID_LEN) : rl_dest_node(dest);
	msg_init(n, &m, txid, body);
	m.hdr.dest.items = &d;
	m.hdr.dest.n_items = 1;
	return io_send(n, next, &m);
}

/* Next hop for `dest`, honouring the joining state.  1 = local, 0 = *next set. */
static int route(chord_node_t *n, const vp_id_t *dest, vp_id_t *next)
{
	int h;
	if (n->state == CHORD_JOINING) {
		*next = n->have_ap && n->ap_link_up ? n->ap : n->via_peer;
		return 0;
	}
	h = chord_table_next_hop(n->tab, dest, next);
	if (h < 0)
		return h;
	return h == CHORD_HOP_LOCAL ? 1 : 0;
}

static int send_direct(chord_node_t *n, const vp_id_t *peer, const rl_body_t *body, txn_kind_t kind)
{
	uint64_t txid;
	int err = new_txid(n, &txid);
	if (!err)
		err = send_request_to(n, peer, peer, false, body, txid);
	if (!err)
		err = txn_add(n, txid, kind, peer, peer, true);
	return err;
}

/* Build the answer's destination list: the previous hop, then the via list reversed. */
static int answer_to(chord_node_t *n, const rl_message_t *req, const vp_id_t *prev, const rl_body_t *body)
{
	rl_dest_t dl[MAX_VIA + 1];
	rl_dest_t v;
	rl_iter_t it;
	uint32_t nv = 0;
	rl_message_t m;
	int r;

	RL_ITER_INIT(&it, &req->hdr.via);
	while ((r = rl_dest_next(&it, &v)) == 1) {
		if (nv == MAX_VIA)
			return VP_ETOOBIG;
		dl[1 + nv++] = v;
	}
	if (r < 0)
		return r;
	for (uint32_t i = 0; i < nv / 2; i++) {
		rl_dest_t tmp = dl[1 + i];
		dl[1 + i] = dl[nv - i];
		dl[nv - i] = tmp;
	}
	dl[0] = rl_dest_node(prev);
	msg_init(n, &m, req->hdr.txid, body);
	m.hdr.dest.items = dl;
	m.hdr.dest.n_items = nv + 1;
	return io_send(n, prev, &m);
}

/* The request's originator: the first via entry, or the previous hop. */
static int originator(const rl_message_t *m, const vp_id_t *prev, vp_id_t *out)
{
	rl_iter_t it;
	rl_dest_t d;
	int r;
	RL_ITER_INIT(&it, &m->hdr.via);
	r = rl_dest_next(&it, &d);
	if (r < 0)
		return r;
	if (r == 0) {
		*out = *prev;
		return 0;
	}
	if (d.type != RL_DEST_NODE || d.id.len != VP_ID_LEN)
		return VP_ERELOAD_DEST;
	memcpy(out->b, d.id.p, VP_ID_LEN);
	return 0;
}

static int answer_error(chord_node_t *n, const rl_message_t *req, const vp_id_t *prev, uint16_t code)
{
	rl_body_t b;
	memset(&b, 0, sizeof(b));
	b.code = RL_ERROR;
	b.u.error.code = code;
	return answer_to(n, req, prev, &b);
}

/* ---- table maintenance -------------------------------------------------- */

static void fill_node_list(rl_node_list_t *l, const vp_id_t *ids, uint32_t k)
{
	memset(l, 0, sizeof(*l));
	l->items = ids;
	l->n_items = k;
}

static int send_update(chord_node_t *n, const vp_id_t *peer, rl_chord_update_type_t type)
{
	rl_body_t b;
	const chord_table_t *t = n->tab;
	vp_id_t fingers[CHORD_MAX_FINGERS];
	uint32_t nf = 0;

	memset(&b, 0, sizeof(b));
	b.code = RL_UPDATE_REQ;
	b.u.update.uptime = (uint32_t)((n->now - n->start_ms) / 1000);
	b.u.update.type = (uint8_t)type;
	if (type != RL_UPDATE_PEER_READY) {
		fill_node_list(&b.u.update.predecessors, t->pred, t->npred);
		fill_node_list(&b.u.update.successors, t->succ, t->nsucc);
	}
	if (type == RL_UPDATE_FULL) {
		for (uint32_t i = 0; i < CHORD_MAX_FINGERS - t->finger_lo; i++) {
			if (!t->finger_ok[i] || (nf && vp_id_eq(&fingers[nf - 1], &t->finger[i])))
				continue;
			fingers[nf++] = t->finger[i];
		}
		fill_node_list(&b.u.update.fingers, fingers, nf);
	}
	return send_direct(n, peer, &b, TX_UPDATE);
}

/* Distinct predecessors and successors. */
static uint32_t neighbours(const chord_table_t *t, vp_id_t *out)
{
	uint32_t k = 0;
	for (uint32_t i = 0; i < t->npred + t->nsucc; i++) {
		const vp_id_t *id = i < t->npred ? &t->pred[i] : &t->succ[i - t->npred];
		bool dup = false;
		for (uint32_t j = 0; j < k; j++)
			dup |= vp_id_eq(&out[j], id);
		if (!dup)
			out[k++] = *id;
	}
	return k;
}

static void update_neighbours(chord_node_t *n)
{
	vp_id_t nb[2 * CHORD_MAX_NEIGH];
	uint32_t k = neighbours(n->tab, nb);
	for (uint32_t i = 0; i < k; i++)
		send_update(n, &nb[i], RL_UPDATE_NEIGHBORS);
}

static bool same_neighbours(const chord_table_t *a, const chord_table_t *b)
{
	if (a->npred != b->npred || a->nsucc != b->nsucc)
		return false;
	return memcmp(a->pred, b->pred, a->npred * sizeof(vp_id_t)) == 0 &&
	       memcmp(a->succ, b->succ, a->nsucc * sizeof(vp_id_t)) == 0;
}

static void emit_store(chord_node_t *n, chord_store_op_t op, const vp_id_t *to, const vp_id_t *lo,
                       const vp_id_t *hi, uint8_t replica)
{
	chord_store_action_t a = { .op = op, .to = *to, .lo = *lo, .hi = *hi, .replica_number = replica };
	if (n->io.store)
		n->io.store(n->io.ctx, n, &a);
}

/*
 * A replica accepts a range only from the predecessor its own table makes responsible for it
 * (nk_sender_role), and the replicas learn of a failure or a leave each on their own: the node 2 after a
 * departed one still lists it as pred[2] when the new owner's copy arrives a few milliseconds after the
 * Leave, and refuses it (measured: 16 nodes, one graceful leave left 14 % of 1,000 numbers on 2 copies for
 * good, "replica_refused reason=not-a-replica-sender" in the replicas' logs).  So the owner sends its range
 * again once, REREPLICATE_MS later: the reactive Updates of the change (100 ms) and a link closed by a crash
 * (seen at once) are long done by then.  Once only: the repeat costs one range transfer per replica
 * (a further one when a silently cut peer is declared failed, 15 s on, would land among the Stores that
 * follow a change); a later change starts over.
 */
#define REREPLICATE_MS 1000u

/* Copy our range (pred[0], self] to every replica. */
static void replicate_all(chord_node_t *n, const vp_id_t *reps, size_t nr)
{
	const chord_table_t *t = n->tab;
	const vp_id_t *lo = t->npred ? &t->pred[0] : &t->self;
	for (size_t i = 0; i < nr; i++)
		emit_store(n, CHORD_STORE_REPLICATE, &reps[i], lo, &n->self, (uint8_t)(i + 1));
}

/* Give the replicas what they lack after a change of range or replica set. */
static void check_replication(chord_node_t *n)
{
	const chord_table_t *t = n->tab;
	vp_id_t reps[CHORD_REPLICAS];
	size_t nr = chord_table_replicas(t, reps, CHORD_REPLICAS);
	bool has_pred = t->npred > 0;
	const vp_id_t *lo = has_pred ? &t->pred[0] : &t->self;
	bool grew;

	if (n->state != CHORD_JOINED)
		return;
	/* The range grew if the old predecessor now lies inside it (it failed or left). */
	grew = !n->rep_valid || n->rep_has_pred != has_pred ||
	       (has_pred && n->rep_has_pred && !vp_id_eq(&n->rep_pred, lo) &&
	        vp_id_in_oo(&n->rep_pred, lo, &n->self));
	/* The range shrank: a new predecessor (a joiner, or one we just learned
	 * about) is responsible for (old predecessor, new predecessor] now. */
	if (n->rep_valid && has_pred && !(n->rep_has_pred && vp_id_eq(&n->rep_pred, lo)) &&
	    (!n->rep_has_pred || vp_id_in_oo(lo, &n->rep_pred, &n->self)))
		emit_store(n, CHORD_STORE_HANDOFF, lo, n->rep_has_pred ? &n->rep_pred : &n->self, lo, 0);
	for (size_t i = 0; i < nr; i++) {
		bool known = n->rep_valid && i < n->rep_n && vp_id_eq(&n->rep_succ[i], &reps[i]);
		if (grew || !known) {
			emit_store(n, CHORD_STORE_REPLICATE, &reps[i], lo, &n->self, (uint8_t)(i + 1));
			n->rerep_due = n->now + REREPLICATE_MS;
		}
	}
	/* Repair towards the owners: the replicas we hold belong to pred[0] (rank 1)
	 * and pred[1] (rank 2).  When either changes, the new owner may lack data it
	 * inherited from a peer that failed before handing it over; offer it ours
	 * (an owner ignores what it already has). */
	for (uint32_t r = 0; r < CHORD_REPLICAS && r + 1 < t->npred; r++) {
		if (n->rep_npred > r + 1 && vp_id_eq(&n->rep_preds[r], &t->pred[r]) &&
		    vp_id_eq(&n->rep_preds[r + 1], &t->pred[r + 1]))
			continue;
		emit_store(n, CHORD_STORE_HANDOFF, &t->pred[r], &t->pred[r + 1], &t->pred[r], 0);
	}
	/* The replica range (pred[2], self] changed: drop what fell outside only once it has been stable for
	 * the grace period, so a view that is briefly wrong (a dead predecessor not yet noticed) costs nothing. */
	if (t->npred > CHORD_REPLICAS &&
	    (n->rep_npred <= CHORD_REPLICAS || !vp_id_eq(&n->rep_preds[CHORD_REPLICAS], &t->pred[CHORD_REPLICAS])))
		n->drop_due = n->now + drop_grace(&n->cfg);
	n->rep_npred = t->npred < CHORD_REPLICAS + 1 ? t->npred : CHORD_REPLICAS + 1;
	memcpy(n->rep_preds, t->pred, n->rep_npred * sizeof(vp_id_t));
	n->rep_valid = true;
	n->rep_has_pred = has_pred;
	n->rep_pred = *lo;
	n->rep_n = (uint32_t)nr;
	memcpy(n->rep_succ, reps, nr * sizeof(vp_id_t));
}

/* Rebuild the table from the live peers and publish it. */
static int rebuild(chord_node_t *n)
{
	chord_table_t *t = malloc(sizeof(*t));
	bool changed;
	int err;

	if (!t)
		return VP_ENOMEM;
	err = chord_table_build(t, &n->cfg.table, &n->self, n->peers, n->npeers);
	if (err) {
		free(t);
		return err;
	}
	t->version = ++n->version;
	t->checksum = chord_table_checksum(t);
	/* Keep links to table entries only. */
	if (vp_log_enabled(VP_LOG_DEBUG) && n->npeers != t->nroute) {
		char a[VP_ID_HEX_LEN + 1];
		vp_log_debug("chord", "peers_pruned", "t=%llu node=%s dropped=%u", (unsigned long long)n->now,
		             vp_id_to_hex(&n->self, a), n->npeers - t->nroute);
	}
	if (t->nroute)
		memcpy(n->peers, t->route, t->nroute * sizeof(vp_id_t));
	n->npeers = t->nroute;
	changed = !n->tab || !same_neighbours(n->tab, t);
	/* Compare before publishing: the old snapshot may be freed right after. */
	n->tab = t;
	chord_rt_publish(&n->rt, t);
	n->stats.table_versions++;
	if (n->state == CHORD_JOINED) {
		if (changed && n->cfg.reactive && !n->reactive_due)
			n->reactive_due = n->now + n->cfg.reactive_delay_ms;
		check_replication(n);
	}
	return 0;
}

static int add_peer(chord_node_t *n, const vp_id_t *id)
{
	if (vp_id_eq(id, &n->self) || peer_index(n, id) >= 0)
		return 0;
	if (n->npeers == n->cap_peers) {
		uint32_t cap = n->cap_peers ? 2 * n->cap_peers : 16;
		vp_id_t *p = realloc(n->peers, cap * sizeof(*p));
		if (!p)
			return VP_ENOMEM;
		n->peers = p;
		n->cap_peers = cap;
	}
	n->peers[n->npeers++] = *id;
	clear_dead(n, id);
	{
		/* Linked again: it is on our ring now, no use probing through it. */
		int m = mem_find(n, id);
		if (m >= 0 && !n->mem[m].pinned)
			mem_forget(n, (uint32_t)m);
	}
	if (vp_log_enabled(VP_LOG_DEBUG)) {
		char a[VP_ID_HEX_LEN + 1], b[VP_ID_HEX_LEN + 1];
		vp_log_debug("chord", "peer_added", "t=%llu node=%s peer=%s", (unsigned long long)n->now, vp_id_to_hex(&n->self, a),
		             vp_id_to_hex(id, b));
	}
	return 1;
}

static void peer_failed(chord_node_t *n, const vp_id_t *id)
{
	int i = peer_index(n, id);
	mark_dead(n, id, 2 * n->cfg.update_interval_ms); /* until the ring noticed too */
	if (n->state == CHORD_JOINING && ((n->have_ap && vp_id_eq(id, &n->ap)) ||
	                                  vp_id_eq(id, &n->via_peer))) {
		/* Lost the admitting peer: start over through any live peer. */
		n->have_ap = n->ap_link_up = n->ap_update = n->join_sent = false;
	}
	if (i < 0)
		return;
	if (vp_log_enabled(VP_LOG_DEBUG)) {
		char a[VP_ID_HEX_LEN + 1], b[VP_ID_HEX_LEN + 1];
		vp_log_debug("chord", "peer_failed", "t=%llu node=%s peer=%s", (unsigned long long)n->now, vp_id_to_hex(&n->self, a),
		             vp_id_to_hex(id, b));
	}
	n->peers[i] = n->peers[--n->npeers];
	n->stats.peer_failures++;
	/* A peer of our table lost: crashed, or on the far side of a partition; the ring checks probe through
	 * it until it answers (the rings merge) or has been missed MERGE_MISSES times. */
	if (n->state == CHORD_JOINED)
		mem_remember(n, id, false);
	rebuild(n);
}

/* Would `id` enter the table (neighbour, or a better finger)? */
static bool would_improve(const chord_node_t *n, const vp_id_t *id)
{
	const chord_table_t *t = n->tab;
	vp_u128_t d = vp_id_dist(&n->self, id);
	unsigned slot;

	if (d == 0)
		return false;
	if (t->nsucc < n->cfg.table.num_succ || d < vp_id_dist(&n->self, &t->succ[t->nsucc - 1]))
		return true;
	if (t->npred < n->cfg.table.num_pred ||
	    vp_id_dist(id, &n->self) < vp_id_dist(&t->pred[t->npred - 1], &n->self))
		return true;
	/* The highest finger slot whose target (self + 2^slot) is <= id. */
	slot = 127;
	while (slot > 0 && !((d >> slot) & 1))
		slot--;
	if (slot < t->finger_lo)
		return false;
	if (!t->finger_ok[slot - t->finger_lo])
		return true;
	{
		vp_id_t target = vp_id_add_pow2(&n->self, slot);
		return vp_id_dist(&target, id) < vp_id_dist(&target, &t->finger[slot - t->finger_lo]);
	}
}

/*
 * Attach to `target`.  With `via` (the peer that told us about a node id), the
 * destination list is [via, target]: via has a link to target, so the Attach
 * reaches it even where other nodes do not know it yet (RFC 6940 source route).
 */
static int send_attach(chord_node_t *n, const vp_id_t *target, bool resource, const vp_id_t *via,
                       txn_kind_t kind, bool send_update_flag)
{
	rl_body_t b;
	rl_message_t m;
	rl_dest_t d[2];
	vp_id_t next;
	uint64_t txid;
	int r;

	if (via && (vp_id_eq(via, &n->self) || vp_id_eq(via, target)))
		via = NULL;
	if (via) {
		next = *via;
	} else {
		r = route(n, target, &next);
		if (r < 0)
			return r;
		if (r == 1)
			return 0; /* we are responsible for the target: nothing to attach to */
	}
	memset(&b, 0, sizeof(b));
	b.code = RL_ATTACH_REQ;
	if (n->io.attach_info)
		n->io.attach_info(n->io.ctx, n, &b.u.attach);
	b.u.attach.role = (rl_bytes_t){ (const uint8_t *)"passive", 7 };
	b.u.attach.send_update = send_update_flag;
	if ((r = new_txid(n, &txid)))
		return r;
	msg_init(n, &m, txid, &b);
	if (via)
		d[0] = rl_dest_node(via);
	d[via ? 1 : 0] = resource ? rl_dest_resource(target->b, VP_ID_LEN) : rl_dest_node(target);
	m.hdr.dest.items = d;
	m.hdr.dest.n_items = via ? 2 : 1;
	r = io_send(n, &next, &m);
	if (r)
		return r;
	return txn_add(n, txid, kind, target, &next, false);
}

static void consider(chord_node_t *n, const vp_id_t *id, const vp_id_t *via)
{
	/* would_improve first: it is cheap and rejects most gossiped ids. */
	if (vp_id_eq(id, &n->self) || (n->state != CHORD_JOINING && !would_improve(n, id)) ||
	    peer_index(n, id) >= 0 || is_dead(n, id) || txn_pending_attach(n, id) || plink_find(n, id))
		return;
	{
		if (vp_log_enabled(VP_LOG_DEBUG)) {
			char a[VP_ID_HEX_LEN + 1], c[VP_ID_HEX_LEN + 1];
			vp_log_debug("chord", "attach_tx", "t=%llu node=%s to=%s", (unsigned long long)n->now,
			             vp_id_to_hex(&n->self, a), vp_id_to_hex(id, c));
		}
		send_attach(n, id, false, via, TX_ATTACH, false);
	}
}

/* Attach to each finger target past the successor list (RFC 6940 §10.7.4.x). */
static void fix_fingers(chord_node_t *n)
{
	const chord_table_t *t = n->tab;
	vp_u128_t covered = t->nsucc ? vp_id_dist(&n->self, &t->succ[t->nsucc - 1]) : 0;
	for (unsigned s = t->finger_lo; s < CHORD_MAX_FINGERS; s++) {
		vp_id_t target;
		if (((vp_u128_t)1 << s) <= covered)
			continue;
		target = vp_id_add_pow2(&n->self, s);
		if (!txn_pending_attach(n, &target))
			send_attach(n, &target, true, NULL, TX_ATTACH_FINGER, false);
	}
}

static void ping_fingers(chord_node_t *n)
{
	const chord_table_t *t = n->tab;
	vp_id_t nb[2 * CHORD_MAX_NEIGH];
	uint32_t k = neighbours(t, nb);
	rl_body_t b;

	memset(&b, 0, sizeof(b));
	b.code = RL_PING_REQ;
	for (uint32_t r = 0; r < t->nroute; r++) {
		bool nbr = false;
		for (uint32_t j = 0; j < k; j++)
			nbr |= vp_id_eq(&nb[j], &t->route[r]);
		if (!nbr)
			send_direct(n, &t->route[r], &b, TX_PING);
	}
}

static void become_joined(chord_node_t *n)
{
	char a[VP_ID_HEX_LEN + 1];
	vp_log_debug("chord", "joined", "t=%llu node=%s ap=%s", (unsigned long long)n->now,
	             vp_id_to_hex(&n->self, a), n->have_ap ? "yes" : "none");
	n->state = CHORD_JOINED;
	n->next_update = n->now + n->cfg.update_interval_ms / 2 +
	                 id_hash(&n->self) % (n->cfg.update_interval_ms / 2 + 1);
	n->next_ping = n->now + n->cfg.ping_interval_ms / 2 +
	               id_hash(&n->self) % (n->cfg.ping_interval_ms / 2 + 1);
	n->next_ring_check = n->now + n->cfg.ring_check_interval_ms / 2 +
	                     vp_splitmix64_mix(id_hash(&n->self)) % (n->cfg.ring_check_interval_ms / 2 + 1);
	rebuild(n);
	update_neighbours(n);
	fix_fingers(n);
}

static void maybe_send_join(chord_node_t *n)
{
	rl_body_t b;
	if (n->state != CHORD_JOINING || !n->have_ap || !n->ap_link_up || !n->ap_update || n->join_sent)
		return;
	memset(&b, 0, sizeof(b));
	b.code = RL_JOIN_REQ;
	b.u.join_req.joining_peer = n->self;
	if (send_direct(n, &n->ap, &b, TX_JOIN) == 0)
		n->join_sent = true;
}

static int start_join_attempt(chord_node_t *n)
{
	if (n->join_tries++ >= n->cfg.join_attempts) {
		n->state = CHORD_LEFT;
		vp_log_warn("chord", "join_failed", "attempts=%u", n->join_tries - 1);
		return VP_ETIMEOUT;
	}
	n->have_ap = n->ap_link_up = n->ap_update = n->join_sent = n->early_update = false;
	/* Watchdog: the whole exchange must finish in a few request timeouts. */
	n->join_deadline = n->now + 3 * n->cfg.request_timeout_ms;
	return send_attach(n, &n->self, false, NULL, TX_ATTACH_JOIN, true);
}

/*
 * Ring check (merging parallel rings).  Two rings that formed apart (a partition that healed, or a joiner
 * admitted by a peer that had not settled) never learn of each other by stabilisation.  Each interval the
 * vnode asks its transport to reach one remembered peer that is not in its table (the bootstrap peer it
 * joined through, or a peer it saw fail: after a partition, a node of the other side), the least recently
 * probed one first.  Once that link is up (probe_reached) it sends an Attach to the resource id self+1 with
 * the destination list [peer, self+1]: the peer routes it in *its* ring to the node responsible for self+1,
 * our true successor there.  On one ring that is succ[0] (nothing changes); on a parallel ring the answerer
 * is a closer successor from the other ring: we link to it, it sends us its neighbours (send_update), our
 * reactive Updates tell our neighbours, and the two rings zip together through ordinary stabilisation.
 * One probe per interval; a peer the transport cannot reach at all is forgotten at once.
 */
static void ring_check(chord_node_t *n)
{
	if (!n->io.reach)
		return;
	for (uint32_t tries = 0; tries < MERGE_CAP && n->nmem; tries++) {
		int best = -1;
		vp_id_t id;
		for (uint32_t i = 0; i < n->nmem; i++) {
			const mpeer_t *e = &n->mem[i];
			if (peer_index(n, &e->id) >= 0 || plink_find(n, &e->id))
				continue; /* in our table (our ring), or a link to it is being opened */
			if (best < 0 || e->probed < n->mem[best].probed)
				best = (int)i;
		}
		if (best < 0)
			return;
		id = n->mem[best].id;
		n->mem[best].probed = n->now ? n->now : 1;
		if (vp_log_enabled(VP_LOG_DEBUG)) {
			char a[VP_ID_HEX_LEN + 1], c[VP_ID_HEX_LEN + 1];
			vp_log_debug("chord", "ring_check", "t=%llu node=%s through=%s pinned=%u misses=%u",
			             (unsigned long long)n->now, vp_id_to_hex(&n->self, a), vp_id_to_hex(&id, c),
			             n->mem[best].pinned, n->mem[best].misses);
		}
		/* Registered first: the transport may report the link up from inside reach (already linked). */
		plink_add(n, &id, PL_PROBE);
		if (n->io.reach(n->io.ctx, n, &id) == 0)
			return;
		{
			/* No way to it (no address known): forget it and take the next one now. */
			plink_t *p = plink_find(n, &id);
			int m = mem_find(n, &id);
			if (p && p->flags == PL_PROBE)
				*p = n->plink[--n->nplink];
			if (m >= 0)
				mem_forget(n, (uint32_t)m);
		}
	}
}

/* The link a ring check asked for is up: Attach to self+1 through that peer (see ring_check). */
static void probe_reached(chord_node_t *n, const vp_id_t *peer)
{
	vp_id_t target = vp_id_add_pow2(&n->self, 0);
	int m = mem_find(n, peer);
	if (m >= 0) {
		n->mem[m].misses = 0;
		if (!n->mem[m].pinned)
			mem_forget(n, (uint32_t)m); /* served: it merged us or is on our ring */
	}
	/* It is alive and reachable: what it tells us about its ring must not be ignored as stale gossip. */
	clear_dead(n, peer);
	if (txn_pending_attach(n, &target))
		return;
	if (send_attach(n, &target, true, peer, TX_ATTACH_FINGER, true) == 0)
		n->stats.ring_checks++;
}

/* ---- handlers ----------------------------------------------------------- */

static int learn_list(chord_node_t *n, const rl_node_list_t *l, const vp_id_t *via)
{
	rl_iter_t it;
	vp_id_t id;
	int r, k = 0;
	RL_ITER_INIT(&it, l);
	while ((r = rl_node_next(&it, &id)) == 1 && k++ < MAX_LIST)
		consider(n, &id, via);
	return r < 0 ? r : 0;
}

/* Does `sender` (who listed these neighbours) lack neighbours of ours it should know? */
static bool sender_view_stale(chord_node_t *n, const vp_id_t *sender, const rl_chord_update_t *u)
{
	const chord_table_t *t = n->tab;
	vp_id_t ps[MAX_LIST], ss[MAX_LIST];
	uint32_t np = 0, ns = 0;
	rl_iter_t it;
	vp_id_t id;

	RL_ITER_INIT(&it, &u->predecessors);
	while (np < MAX_LIST && rl_node_next(&it, &id) == 1)
		ps[np++] = id;
	RL_ITER_INIT(&it, &u->successors);
	while (ns < MAX_LIST && rl_node_next(&it, &id) == 1)
		ss[ns++] = id;
	/* Chord stabilisation: it names us as its successor (predecessor) but our
	 * predecessor (successor) lies between us: it must learn about that node. */
	if (ns && vp_id_eq(&ss[0], &n->self) && t->npred && !vp_id_eq(&t->pred[0], &n->self) &&
	    vp_id_in_oo(&t->pred[0], sender, &n->self))
		return true;
	if (np && vp_id_eq(&ps[0], &n->self) && t->nsucc && vp_id_in_oo(&t->succ[0], &n->self, sender))
		return true;
	/* We are its successor number i: it should know our first successors too. */
	for (uint32_t i = 0; i < ns; i++) {
		if (!vp_id_eq(&ss[i], &n->self))
			continue;
		for (uint32_t j = 0; i + 1 + j < ns && j < t->nsucc; j++)
			if (!vp_id_eq(&ss[i + 1 + j], &t->succ[j]))
				return true;
		if (ns < n->cfg.table.num_succ && t->nsucc > 0 && i + 1 == ns)
			return true;
	}
	for (uint32_t i = 0; i < np; i++) {
		if (!vp_id_eq(&ps[i], &n->self))
			continue;
		for (uint32_t j = 0; i + 1 + j < np && j < t->npred; j++)
			if (!vp_id_eq(&ps[i + 1 + j], &t->pred[j]))
				return true;
		if (np < n->cfg.table.num_pred && t->npred > 0 && i + 1 == np)
			return true;
	}
	return false;
}

/* First entry of a node list (0 if empty). */
static int first_node(const rl_node_list_t *l, vp_id_t *out)
{
	rl_iter_t it;
	RL_ITER_INIT(&it, l);
	return rl_node_next(&it, out);
}

/*
 * The sender names us as its successor although our predecessor lies between
 * us (or as its predecessor although our successor does): the sender has
 * probably seen that neighbour fail.  Ping it now rather than at the next
 * periodic Update; a timeout removes it (RFC 6940 failure detection).
 */
static void check_skipped_neighbour(chord_node_t *n, const vp_id_t *sender, const rl_chord_update_t *u)
{
	const chord_table_t *t = n->tab;
	vp_id_t first;
	rl_body_t b;
	memset(&b, 0, sizeof(b));
	b.code = RL_PING_REQ;
	if (first_node(&u->successors, &first) == 1 && vp_id_eq(&first, &n->self) && t->npred &&
	    vp_id_in_oo(&t->pred[0], sender, &n->self) && !txn_pending_direct(n, &t->pred[0], TX_PING))
		send_direct(n, &t->pred[0], &b, TX_PING);
	if (first_node(&u->predecessors, &first) == 1 && vp_id_eq(&first, &n->self) && t->nsucc &&
	    vp_id_in_oo(&t->succ[0], &n->self, sender) && !txn_pending_direct(n, &t->succ[0], TX_PING))
		send_direct(n, &t->succ[0], &b, TX_PING);
}

static int on_update(chord_node_t *n, const rl_message_t *m, const vp_id_t *prev, const rl_body_t *b)
{
	vp_id_t sender;
	rl_body_t ans;
	int err = originator(m, prev, &sender);
	if (err)
		return err;
	memset(&ans, 0, sizeof(ans));
	ans.code = RL_UPDATE_ANS;
	answer_to(n, m, prev, &ans);
	if (n->state == CHORD_JOINING) {
		if (!n->have_ap) {
			/* Links race the routed AttachAns: keep it for when the answer names it. */
			n->early_update = true;
			n->early_from = sender;
		}
		if (n->have_ap && vp_id_eq(&sender, &n->ap)) {
			n->ap_update = true;
			learn_list(n, &b->u.update.predecessors, &sender);
			learn_list(n, &b->u.update.successors, &sender);
			maybe_send_join(n);
		}
		return 0;
	}
	if (n->state != CHORD_JOINED)
		return 0;
	if (vp_log_enabled(VP_LOG_DEBUG)) {
		char a[VP_ID_HEX_LEN + 1], c[VP_ID_HEX_LEN + 1];
		vp_log_debug("chord", "update_rx", "t=%llu node=%s from=%s type=%u", (unsigned long long)n->now,
		             vp_id_to_hex(&n->self, a), vp_id_to_hex(&sender, c), b->u.update.type);
	}
	/* Only a sender on a link of ours enters the table: a routed Update names a peer we may not reach (or
	 * that does not exist); it is attached to first, like any id an Update mentions. */
	if (vp_id_eq(&sender, prev)) {
		if (add_peer(n, &sender) == 1)
			rebuild(n);
	} else {
		consider(n, &sender, prev);
	}
	if (b->u.update.type != RL_UPDATE_PEER_READY)
		check_skipped_neighbour(n, &sender, &b->u.update);
	learn_list(n, &b->u.update.predecessors, &sender);
	learn_list(n, &b->u.update.successors, &sender);
	learn_list(n, &b->u.update.fingers, &sender);
	if (b->u.update.type != RL_UPDATE_PEER_READY && sender_view_stale(n, &sender, &b->u.update)) {
		uint64_t gap = 10 * n->cfg.reactive_delay_ms;
		bool recent = false;
		for (uint32_t i = 0; i < 8; i++)
			if (vp_id_eq(&n->stale_reply[i].peer, &sender) && n->stale_reply[i].at + gap > n->now &&
			    n->stale_reply[i].at != 0)
				recent = true;
		if (!recent) {
			n->stale_reply[n->stale_next].peer = sender;
			n->stale_reply[n->stale_next].at = n->now ? n->now : 1;
			n->stale_next = (n->stale_next + 1) % 8;
			send_update(n, &sender, RL_UPDATE_NEIGHBORS);
		}
	}
	return 0;
}

static int on_attach_req(chord_node_t *n, const rl_message_t *m, const vp_id_t *prev, const rl_body_t *b)
{
	vp_id_t from;
	rl_body_t ans;
	int err = originator(m, prev, &from);
	if (err)
		return err;
	if (n->state != CHORD_JOINED)
		return answer_error(n, m, prev, RL_ERR_NOT_FOUND);
	memset(&ans, 0, sizeof(ans));
	ans.code = RL_ATTACH_ANS;
	if (n->io.attach_info)
		n->io.attach_info(n->io.ctx, n, &ans.u.attach);
	ans.u.attach.role = (rl_bytes_t){ (const uint8_t *)"active", 6 };
	err = answer_to(n, m, prev, &ans);
	if (err || vp_id_eq(&from, &n->self))
		return err;
	plink_add(n, &from, b->u.attach.send_update ? PL_SEND_UPDATE : 0);
	if (n->io.connect)
		n->io.connect(n->io.ctx, n, &from, &b->u.attach);
	return 0;
}

static void on_attach_ans(chord_node_t *n, const txn_t *t, const rl_message_t *m, const vp_id_t *prev,
                          const rl_body_t *b)
{
	vp_id_t from;
	if (originator(m, prev, &from) || vp_id_eq(&from, &n->self))
		return;
	if (vp_log_enabled(VP_LOG_DEBUG)) {
		char a[VP_ID_HEX_LEN + 1], c[VP_ID_HEX_LEN + 1], d[VP_ID_HEX_LEN + 1];
		vp_log_debug("chord", "attach_ans", "t=%llu node=%s from=%s target=%s kind=%u",
		             (unsigned long long)n->now, vp_id_to_hex(&n->self, a), vp_id_to_hex(&from, c),
		             vp_id_to_hex(&t->peer, d), t->kind);
	}
	if (t->kind == TX_ATTACH_JOIN) {
		if (n->state != CHORD_JOINING)
			return;
		n->ap = from;
		n->have_ap = true;
		n->ap_update = n->early_update && vp_id_eq(&n->early_from, &from);
		plink_add(n, &from, PL_READY | PL_AP);
	} else {
		/* Another node answered for a gossiped id: it is gone, or the answerer
		 * does not know it yet.  Do not chase it again for a while. */
		if (t->kind == TX_ATTACH && !vp_id_eq(&from, &t->peer))
			mark_dead(n, &t->peer, n->cfg.request_timeout_ms);
		if (peer_index(n, &from) >= 0)
			return;
		plink_add(n, &from, PL_READY);
	}
	if (n->io.connect)
		n->io.connect(n->io.ctx, n, &from, &b->u.attach);
}

static int on_join_req(chord_node_t *n, const rl_message_t *m, const vp_id_t *prev, const rl_body_t *b)
{
	const vp_id_t *jp = &b->u.join_req.joining_peer;
	rl_body_t ans;

	if (n->state != CHORD_JOINED || vp_id_eq(jp, &n->self))
		return answer_error(n, m, prev, RL_ERR_FORBIDDEN);
	memset(&ans, 0, sizeof(ans));
	ans.code = RL_JOIN_ANS;
	answer_to(n, m, prev, &ans);
	/* JP becomes our predecessor: the rebuild hands off (old predecessor, JP]
	 * to it (check_replication). */
	if (add_peer(n, jp) == 1)
		rebuild(n);
	return 0;
}

static int on_leave_req(chord_node_t *n, const rl_message_t *m, const vp_id_t *prev, const rl_body_t *b)
{
	rl_chord_leave_t cl;
	rl_body_t ans;
	const vp_id_t *lp = &b->u.leave_req.leaving_peer;
	int err, i;

	/* Decode first: a malformed Leave is refused and changes nothing (the peer stays). */
	err = rl_chord_leave_decode(b->u.leave_req.overlay_data.p, b->u.leave_req.overlay_data.len, &cl);
	if (err) {
		answer_error(n, m, prev, RL_ERR_INVALID_MESSAGE);
		return err;
	}
	memset(&ans, 0, sizeof(ans));
	ans.code = RL_LEAVE_ANS;
	answer_to(n, m, prev, &ans);
	i = peer_index(n, lp);
	mark_dead(n, lp, 2 * n->cfg.update_interval_ms);
	{
		int k = mem_find(n, lp);
		if (k >= 0)
			mem_forget(n, (uint32_t)k); /* gone for good: nothing to probe through */
	}
	if (i >= 0) {
		n->peers[i] = n->peers[--n->npeers];
		rebuild(n);
	}
	return learn_list(n, &cl.nodes, NULL); /* the leaving peer is gone: route */
}

static int on_ping_req(chord_node_t *n, const rl_message_t *m, const vp_id_t *prev)
{
	rl_body_t ans;
	int err;
	memset(&ans, 0, sizeof(ans));
	ans.code = RL_PING_ANS;
	if ((err = new_txid(n, &ans.u.ping_ans.response_id)))
		return err;
	ans.u.ping_ans.time = n->now;
	return answer_to(n, m, prev, &ans);
}

static int on_route_query(chord_node_t *n, const rl_message_t *m, const vp_id_t *prev, const rl_body_t *b)
{
	const rl_dest_t *d = &b->u.route_query_req.destination;
	rl_body_t ans;
	vp_id_t id, next;

	if ((d->type != RL_DEST_NODE && d->type != RL_DEST_RESOURCE) || d->id.len != VP_ID_LEN)
		return answer_error(n, m, prev, RL_ERR_INVALID_MESSAGE);
	memcpy(id.b, d->id.p, VP_ID_LEN);
	if (chord_table_next_hop(n->tab, &id, &next) < 0)
		next = n->self;
	memset(&ans, 0, sizeof(ans));
	ans.code = RL_ROUTE_QUERY_ANS;
	ans.u.route_query_ans.next_peer = next;
	answer_to(n, m, prev, &ans);
	if (b->u.route_query_req.send_update) {
		vp_id_t from;
		if (!originator(m, prev, &from) && !vp_id_eq(&from, &n->self))
			send_update(n, &from, RL_UPDATE_FULL);
	}
	return 0;
}

static int on_probe(chord_node_t *n, const rl_message_t *m, const vp_id_t *prev, const rl_body_t *b)
{
	rl_probe_info_t info[8];
	uint32_t k = 0;
	rl_iter_t it;
	uint8_t type;
	rl_body_t ans;
	int r;

	RL_ITER_INIT(&it, &b->u.probe_req.requested);
	while ((r = rl_u8_next(&it, &type)) == 1 && k < 8) {
		if (type == RL_PROBE_RESPONSIBLE_SET)
			info[k++] = (rl_probe_info_t){ type, chord_table_fraction_ppb(n->tab) };
		else if (type == RL_PROBE_UPTIME)
			info[k++] = (rl_probe_info_t){ type, (uint32_t)((n->now - n->start_ms) / 1000) };
		else if (type == RL_PROBE_NUM_RESOURCES && n->io.num_resources)
			info[k++] = (rl_probe_info_t){ type, n->io.num_resources(n->io.ctx, n) };
	}
	if (r < 0)
		return answer_error(n, m, prev, RL_ERR_INVALID_MESSAGE);
	memset(&ans, 0, sizeof(ans));
	ans.code = RL_PROBE_ANS;
	ans.u.probe_ans.info.items = info;
	ans.u.probe_ans.info.n_items = k;
	return answer_to(n, m, prev, &ans);
}

static void on_answer(chord_node_t *n, txn_t *tp, const rl_message_t *m, const vp_id_t *prev)
{
	txn_t t = *tp;
	rl_body_t b;
	int err;

	txn_remove(n, tp);
	if (m->contents.code == RL_ERROR) {
		if ((t.kind == TX_ATTACH_JOIN || t.kind == TX_JOIN) && n->state == CHORD_JOINING) {
			if (vp_log_enabled(VP_LOG_DEBUG)) {
				char a[VP_ID_HEX_LEN + 1];
				rl_body_t eb;
				int ec = rl_body_decode(RL_ERROR, m->contents.body.p, m->contents.body.len, NULL, NULL, &eb)
				             ? -1 : eb.u.error.code;
				vp_log_debug("chord", "join_error", "t=%llu node=%s kind=%u code=%d",
				             (unsigned long long)n->now, vp_id_to_hex(&n->self, a), t.kind, ec);
			}
			/* Typically the ring around our id is still settling (the
			 * responsible peer is itself joining, or two peers disagree):
			 * retry with exponential backoff (the watchdog fires). */
			n->join_deadline = n->now + (JOIN_BACKOFF_MS << (n->join_tries < 7 ? n->join_tries - 1 : 6));
		}
		return;
	}
	err = rl_body_decode(m->contents.code, m->contents.body.p, m->contents.body.len, NULL, NULL, &b);
	if (err)
		return;
	switch (t.kind) {
	case TX_ATTACH_JOIN:
	case TX_ATTACH:
	case TX_ATTACH_FINGER:
		if (m->contents.code == RL_ATTACH_ANS)
			on_attach_ans(n, &t, m, prev, &b);
		break;
	case TX_JOIN:
		if (m->contents.code == RL_JOIN_ANS && n->state == CHORD_JOINING)
			become_joined(n);
		break;
	default:
		break; /* Update, Ping, Leave answers only prove the peer is alive */
	}
}

static int process_local(chord_node_t *n, const vp_id_t *from, const rl_message_t *m)
{
	uint16_t code = m->contents.code;
	rl_body_t b;
	int err;

	if (is_answer_code(code)) {
		txn_t *t = txn_find(n, m->hdr.txid);
		if (t && !vp_id_eq(&t->hop, from)) {
			/* Answers retrace the request's path: one on another link is forged or misrouted. */
			if (vp_log_enabled(VP_LOG_DEBUG)) {
				char a[VP_ID_HEX_LEN + 1], c[VP_ID_HEX_LEN + 1];
				vp_log_debug("chord", "answer_wrong_link", "t=%llu node=%s from=%s code=%u",
				             (unsigned long long)n->now, vp_id_to_hex(&n->self, a), vp_id_to_hex(from, c), code);
			}
			return VP_EAUTH;
		}
		if (t) {
			on_answer(n, t, m, from);
			return 0;
		}
	}
	switch (code) {
	case RL_ATTACH_REQ:
	case RL_JOIN_REQ:
	case RL_LEAVE_REQ:
	case RL_UPDATE_REQ:
	case RL_PING_REQ:
	case RL_ROUTE_QUERY_REQ:
	case RL_PROBE_REQ:
		break;
	default: {
		chord_delivery_t d = { .msg = m, .prev_hop = *from,
		                       .hops = (uint32_t)RL_LIST_COUNT(&m->hdr.via) + 1,
		                       .is_answer = is_answer_code(code) };
		if (n->io.deliver)
			n->io.deliver(n->io.ctx, n, &d);
		return 0;
	}
	}
	err = rl_body_decode(code, m->contents.body.p, m->contents.body.len, NULL, NULL, &b);
	if (err) {
		answer_error(n, m, from, RL_ERR_INVALID_MESSAGE);
		return err;
	}
	switch (code) {
	case RL_ATTACH_REQ: return on_attach_req(n, m, from, &b);
	case RL_JOIN_REQ: return on_join_req(n, m, from, &b);
	case RL_LEAVE_REQ: return on_leave_req(n, m, from, &b);
	case RL_UPDATE_REQ: return on_update(n, m, from, &b);
	case RL_PING_REQ: return on_ping_req(n, m, from);
	case RL_ROUTE_QUERY_REQ: return on_route_query(n, m, from, &b);
	default: return on_probe(n, m, from, &b);
	}
}

/* Relay with the previous hop appended to the via list, TTL decremented, and the first destination removed
 * if it named us: the transport edits the header of the bytes it received (chord_io_t.forward). */
static int forward(chord_node_t *n, const vp_id_t *from, const rl_message_t *m, bool pop,
                   const rl_dest_t *first, const vp_id_t *next)
{
	(void)first;
	if (m->hdr.ttl <= 1) {
		n->stats.ttl_drops++;
		if (!is_answer_code(m->contents.code))
			answer_error(n, m, from, RL_ERR_TTL_EXCEEDED);
		return VP_ERELOAD_TTL;
	}
	if (RL_LIST_COUNT(&m->hdr.via) >= MAX_VIA)
		return VP_ETOOBIG;
	n->stats.forwarded++;
	return n->io.forward(n->io.ctx, n, next, from, pop, m);
}

int chord_fwd_encode(vp_wr_t *wr, const rl_message_t *m, const vp_id_t *prev_hop, bool pop_dest)
{
	rl_dest_t via = rl_dest_node(prev_hop);
	const uint8_t *wire;
	if (!m->contents.raw.p || m->hdr.hdr_len == 0 || m->hdr.length < m->hdr.hdr_len)
		return VP_EINVAL; /* not a decoded message */
	wire = m->contents.raw.p - m->hdr.hdr_len;
	return rl_fwd_copy(wr, wire, m->hdr.length, &m->hdr, &via, pop_dest);
}

int chord_node_recv(chord_node_t *n, const vp_id_t *from, const rl_message_t *m, uint64_t now_ms)
{
	rl_iter_t it;
	rl_dest_t d0;
	vp_id_t id, next;
	bool last;
	int r;

	n->now = now_ms;
	if (n->state == CHORD_INIT || n->state == CHORD_LEFT)
		return VP_ESTATE;
	if (m->hdr.dest.n_items || m->hdr.via.n_items)
		return VP_EINVAL; /* must come from rl_msg_decode */
	RL_ITER_INIT(&it, &m->hdr.dest);
	r = rl_dest_next(&it, &d0);
	if (r != 1)
		return r < 0 ? r : VP_ERELOAD_DEST;
	if (d0.type == RL_DEST_NODE && d0.id.len == VP_ID_LEN && !memcmp(d0.id.p, n->self.b, VP_ID_LEN)) {
		rl_dest_t d1;
		r = rl_dest_next(&it, &d1);
		if (r < 0)
			return r;
		if (r == 0)
			return process_local(n, from, m);
		/* Remove ourselves, continue with the next entry. */
		if ((d1.type != RL_DEST_NODE && d1.type != RL_DEST_RESOURCE) || d1.id.len != VP_ID_LEN)
			return VP_ERELOAD_DEST;
		memcpy(id.b, d1.id.p, VP_ID_LEN);
		/* Answers retrace the request's path: the next entry is the link it came by. */
		if (is_answer_code(m->contents.code) ||
		    (d1.type == RL_DEST_NODE && peer_index(n, &id) >= 0))
			return forward(n, from, m, true, &d0, &id);
		if (route(n, &id, &next) == 1)
			return VP_ENOROUTE; /* a source route through us into our own range */
		return forward(n, from, m, true, &d0, &next);
	}
	if ((d0.type != RL_DEST_NODE && d0.type != RL_DEST_RESOURCE) || d0.id.len != VP_ID_LEN) {
		n->stats.no_route++;
		if (!is_answer_code(m->contents.code))
			answer_error(n, m, from, RL_ERR_INVALID_MESSAGE);
		return VP_ERELOAD_DEST;
	}
	memcpy(id.b, d0.id.p, VP_ID_LEN);
	last = RL_LIST_COUNT(&m->hdr.dest) == 1;
	if (d0.type == RL_DEST_NODE && peer_index(n, &id) >= 0)
		return forward(n, from, m, false, NULL, &id);
	r = route(n, &id, &next);
	if (r < 0) {
		n->stats.no_route++;
		return r;
	}
	if (r == 1) {
		/* We are responsible for the id. */
		if (!last)
			return VP_ENOROUTE;
		if (d0.type == RL_DEST_RESOURCE || m->contents.code == RL_ATTACH_REQ)
			return process_local(n, from, m);
		/* A node that does not exist (left or failed). */
		if (!is_answer_code(m->contents.code))
			answer_error(n, m, from, RL_ERR_NOT_FOUND);
		return VP_ENOTFOUND;
	}
	if (vp_id_eq(&next, from) && n->state == CHORD_JOINED && !is_answer_code(m->contents.code)) {
		/* Never bounce a request straight back: it would loop until TTL. */
		if (vp_log_enabled(VP_LOG_DEBUG)) {
			char a[VP_ID_HEX_LEN + 1], b[VP_ID_HEX_LEN + 1], c[VP_ID_HEX_LEN + 1];
			vp_log_debug("chord", "bounce", "t=%llu node=%s from=%s dest=%s code=%u",
			             (unsigned long long)n->now, vp_id_to_hex(&n->self, a), vp_id_to_hex(from, b),
			             vp_id_to_hex(&id, c), m->contents.code);
		}
		n->stats.no_route++;
		answer_error(n, m, from, RL_ERR_NOT_FOUND);
		return VP_ENOROUTE;
	}
	return forward(n, from, m, false, NULL, &next);
}

/* ---- public entry points ------------------------------------------------ */

int chord_node_new(const chord_cfg_t *cfg, const vp_id_t *self, const chord_io_t *io, uint64_t now_ms,
                   chord_node_t **out)
{
	chord_node_t *n;
	int e = chord_cfg_check(cfg);
	*out = NULL;
	if (!e && (!io || !io->send || !io->forward))
		e = VP_EINVAL;
	if (e)
		return e;
	n = calloc(1, sizeof(*n));
	if (!n)
		return VP_ENOMEM;
	n->cfg = *cfg;
	n->io = *io;
	n->self = *self;
	n->now = n->start_ms = now_ms;
	chord_rt_init(&n->rt, NULL);
	if (rebuild(n)) {
		free(n);
		return VP_ENOMEM;
	}
	*out = n;
	return 0;
}

void chord_node_free(chord_node_t *n)
{
	if (!n)
		return;
	chord_rt_destroy(&n->rt);
	free(n->peers);
	free(n->txn);
	free(n->plink);
	free(n);
}

int chord_node_bootstrap(chord_node_t *n, uint64_t now_ms)
{
	n->now = now_ms;
	if (n->state != CHORD_INIT)
		return VP_ESTATE;
	become_joined(n);
	return 0;
}

int chord_node_join(chord_node_t *n, const vp_id_t *bootstrap, uint64_t now_ms)
{
	n->now = now_ms;
	if (n->state != CHORD_INIT || vp_id_eq(bootstrap, &n->self))
		return VP_ESTATE;
	n->state = CHORD_JOINING;
	n->via_peer = *bootstrap;
	mem_remember(n, bootstrap, true);
	n->join_tries = 0;
	return start_join_attempt(n);
}

int chord_node_leave(chord_node_t *n, uint64_t now_ms)
{
	const chord_table_t *t = n->tab;
	uint8_t buf[2 * (4 + MAX_LIST * VP_ID_LEN)];
	n->now = now_ms;
	if (n->state != CHORD_JOINED)
		return VP_ESTATE;
	for (int dir = 0; dir < 2; dir++) {
		/* To predecessors: from_succ with our successors; to successors: from_pred. */
		const vp_id_t *targets = dir == 0 ? t->pred : t->succ;
		uint32_t nt = dir == 0 ? t->npred : t->nsucc;
		rl_chord_leave_t cl;
		rl_body_t b;
		vp_wr_t wr;
		memset(&cl, 0, sizeof(cl));
		cl.type = dir == 0 ? RL_LEAVE_FROM_SUCC : RL_LEAVE_FROM_PRED;
		fill_node_list(&cl.nodes, dir == 0 ? t->succ : t->pred, dir == 0 ? t->nsucc : t->npred);
		vp_wr_init(&wr, buf, sizeof(buf));
		if (rl_chord_leave_encode(&wr, &cl))
			return wr.err ? wr.err : VP_EINVAL;
		memset(&b, 0, sizeof(b));
		b.code = RL_LEAVE_REQ;
		b.u.leave_req.leaving_peer = n->self;
		b.u.leave_req.overlay_data = (rl_bytes_t){ buf, (uint32_t)vp_wr_len(&wr) };
		for (uint32_t i = 0; i < nt; i++)
			send_direct(n, &targets[i], &b, TX_LEAVE);
	}
	if (t->nsucc)
		emit_store(n, CHORD_STORE_HANDOFF, &t->succ[0], t->npred ? &t->pred[0] : &n->self,
		           &n->self, 0);
	n->state = CHORD_LEFT;
	return 0;
}

void chord_node_link_up(chord_node_t *n, const vp_id_t *peer, uint64_t now_ms)
{
	plink_t *p;
	uint8_t flags;
	n->now = now_ms;
	p = plink_find(n, peer);
	if (vp_log_enabled(VP_LOG_DEBUG)) {
		char a[VP_ID_HEX_LEN + 1], c[VP_ID_HEX_LEN + 1];
		vp_log_debug("chord", "link_up", "t=%llu node=%s peer=%s pending=%d flags=%u",
		             (unsigned long long)n->now, vp_id_to_hex(&n->self, a), vp_id_to_hex(peer, c), p != NULL,
		             p ? p->flags : 0);
	}
	if (!p)
		return;
	flags = p->flags;
	*p = n->plink[--n->nplink];
	if (flags & PL_AP) {
		if (n->state == CHORD_JOINING && n->have_ap && vp_id_eq(peer, &n->ap)) {
			n->ap_link_up = true;
			if (add_peer(n, peer) == 1)
				rebuild(n);
			maybe_send_join(n);
		}
		return;
	}
	if ((flags & PL_READY) && (n->state == CHORD_JOINED || n->state == CHORD_JOINING) &&
	    add_peer(n, peer) == 1)
		rebuild(n);
	if ((flags & PL_SEND_UPDATE) && n->state == CHORD_JOINED)
		send_update(n, peer, RL_UPDATE_FULL);
	if ((flags & PL_PROBE) && n->state == CHORD_JOINED)
		probe_reached(n, peer);
}

void chord_node_link_down(chord_node_t *n, const vp_id_t *peer, uint64_t now_ms)
{
	plink_t *p;
	n->now = now_ms;
	p = plink_find(n, peer);
	if (p) {
		bool probe = p->flags & PL_PROBE;
		*p = n->plink[--n->nplink];
		if (probe)
			mem_missed(n, peer);
	}
	if (n->state == CHORD_INIT || n->state == CHORD_LEFT)
		return;
	peer_failed(n, peer);
	if (n->state == CHORD_JOINING && !n->have_ap && !n->join_sent) {
		/* The bootstrap or admitting peer died: try again through someone else. */
		if (n->npeers)
			n->via_peer = n->peers[0];
		if (!vp_id_eq(&n->via_peer, peer))
			start_join_attempt(n);
		else
			n->state = CHORD_LEFT;
	}
}

int chord_node_resend(chord_node_t *n, const vp_id_t *failed, const rl_message_t *m, uint64_t now_ms)
{
	rl_iter_t it;
	rl_dest_t d0;
	vp_id_t id, next;
	int r;

	chord_node_link_down(n, failed, now_ms);
	if (n->state != CHORD_JOINED || is_answer_code(m->contents.code))
		return VP_ENOROUTE; /* answers retrace a fixed path: the originator retries */
	RL_ITER_INIT(&it, &m->hdr.dest);
	r = rl_dest_next(&it, &d0);
	if (r != 1)
		return r < 0 ? r : VP_ERELOAD_DEST;
	if ((d0.type != RL_DEST_NODE && d0.type != RL_DEST_RESOURCE) || d0.id.len != VP_ID_LEN)
		return VP_ERELOAD_DEST;
	memcpy(id.b, d0.id.p, VP_ID_LEN);
	if (vp_id_eq(&id, failed))
		return VP_ENOROUTE;
	r = route(n, &id, &next);
	if (r != 0)
		return r < 0 ? r : VP_ENOROUTE; /* now ours, but the previous hop is unknown here */
	n->stats.rerouted++;
	{
		txn_t *t = txn_find(n, m->hdr.txid);
		if (t)
			t->hop = next; /* its answer now comes back on this link */
	}
	return n->io.send(n->io.ctx, n, &next, m);
}

void chord_node_tick(chord_node_t *n, uint64_t now_ms)
{
	n->now = now_ms;
	/* Timeouts.  A direct request without answer means the peer is gone. */
	for (uint32_t i = 0; i < n->ntxn;) {
		txn_t t = n->txn[i];
		if (t.deadline > now_ms) {
			i++;
			continue;
		}
		txn_remove(n, &n->txn[i]);
		if (t.kind == TX_ATTACH_JOIN || (t.kind == TX_JOIN && n->state == CHORD_JOINING)) {
			if (n->state == CHORD_JOINING)
				start_join_attempt(n);
		} else if (t.direct && n->state == CHORD_JOINED) {
			peer_failed(n, &t.peer);
		}
	}
	for (uint32_t i = 0; i < n->nplink;) {
		if (n->plink[i].deadline <= now_ms) {
			vp_id_t peer = n->plink[i].peer;
			bool probe = n->plink[i].flags & PL_PROBE;
			n->plink[i] = n->plink[--n->nplink];
			if (probe)
				mem_missed(n, &peer);
		} else {
			i++;
		}
	}
	if (n->state == CHORD_JOINING && now_ms >= n->join_deadline) {
		start_join_attempt(n);
		return;
	}
	if (n->state != CHORD_JOINED)
		return;
	if (n->reactive_due && now_ms >= n->reactive_due) {
		n->reactive_due = 0;
		update_neighbours(n);
	}
	if (n->drop_due && now_ms >= n->drop_due) {
		n->drop_due = 0;
		if (n->tab->npred > CHORD_REPLICAS && n->io.store) {
			chord_store_action_t a = { .op = CHORD_STORE_DROP, .to = n->self, .lo = n->tab->pred[CHORD_REPLICAS],
			                           .hi = n->self, .grace_ms = drop_grace(&n->cfg) };
			n->io.store(n->io.ctx, n, &a);
		}
	}
	if (n->rerep_due && now_ms >= n->rerep_due) {
		/* The views have settled: copy the range once more (see REREPLICATE_MS). */
		vp_id_t reps[CHORD_REPLICAS];
		size_t nr = chord_table_replicas(n->tab, reps, CHORD_REPLICAS);
		replicate_all(n, reps, nr);
		n->rerep_due = 0;
	}
	if (now_ms >= n->next_update) {
		update_neighbours(n);
		n->next_update = now_ms + n->cfg.update_interval_ms;
	}
	if (now_ms >= n->next_ping) {
		ping_fingers(n);
		fix_fingers(n);
		n->next_ping = now_ms + n->cfg.ping_interval_ms;
	}
	if (n->cfg.ring_check_interval_ms && now_ms >= n->next_ring_check) {
		ring_check(n);
		n->next_ring_check = now_ms + n->cfg.ring_check_interval_ms;
	}
}

uint64_t chord_node_next_wakeup(const chord_node_t *n)
{
	uint64_t w = UINT64_MAX;
	for (uint32_t i = 0; i < n->ntxn; i++)
		if (n->txn[i].deadline < w)
			w = n->txn[i].deadline;
	for (uint32_t i = 0; i < n->nplink; i++)
		if (n->plink[i].deadline < w)
			w = n->plink[i].deadline;
	if (n->state == CHORD_JOINING && n->join_deadline < w)
		w = n->join_deadline;
	if (n->state == CHORD_JOINED) {
		if (n->reactive_due && n->reactive_due < w)
			w = n->reactive_due;
		if (n->drop_due && n->drop_due < w)
			w = n->drop_due;
		if (n->rerep_due && n->rerep_due < w)
			w = n->rerep_due;
		if (n->next_update < w)
			w = n->next_update;
		if (n->next_ping < w)
			w = n->next_ping;
		if (n->cfg.ring_check_interval_ms && n->io.reach && n->next_ring_check < w)
			w = n->next_ring_check;
	}
	return w;
}

int chord_node_request(chord_node_t *n, const vp_id_t *dest, bool resource, const rl_body_t *body,
                       uint64_t *txid, uint64_t now_ms)
{
	vp_id_t next;
	int r;
	n->now = now_ms;
	if (n->state != CHORD_JOINED)
		return VP_ESTATE;
	r = route(n, dest, &next);
	if (r != 0)
		return r;
	if ((r = new_txid(n, txid)))
		return r;
	return send_request_to(n, &next, dest, resource, body, *txid);
}

int chord_node_request_direct(chord_node_t *n, const vp_id_t *peer, const vp_id_t *resource,
                              const rl_body_t *body, uint64_t *txid, uint64_t now_ms)
{
	rl_message_t m;
	rl_dest_t d;
	int err;
	(void)resource; /* carried in the body (StoreReq.resource); the peer is the destination */
	n->now = now_ms;
	if (n->state != CHORD_JOINED && n->state != CHORD_LEFT)
		return VP_ESTATE;
	d = rl_dest_node(peer);
	if ((err = new_txid(n, txid)))
		return err;
	msg_init(n, &m, *txid, body);
	m.hdr.dest.items = &d;
	m.hdr.dest.n_items = 1;
	return io_send(n, peer, &m);
}

int chord_node_answer(chord_node_t *n, const chord_delivery_t *d, const rl_body_t *body)
{
	return answer_to(n, d->msg, &d->prev_hop, body);
}

chord_state_t chord_node_state(const chord_node_t *n)
{
	return n->state;
}

const vp_id_t *chord_node_id(const chord_node_t *n)
{
	return &n->self;
}

const chord_table_t *chord_node_table(const chord_node_t *n)
{
	return n->tab;
}

chord_rt_t *chord_node_rt(chord_node_t *n)
{
	return &n->rt;
}

const chord_stats_t *chord_node_stats(const chord_node_t *n)
{
	return &n->stats;
}
