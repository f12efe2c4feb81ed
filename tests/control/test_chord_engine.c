/*
 * The Chord-RELOAD engine's state machine, driven by hand over an in-test
 * message queue (every message encoded and decoded by the real codec): join
 * and leave transitions, storage actions, forwarding with the via list,
 * symmetric answers, TTL, RouteQuery, Probe, timers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <urcu-qsbr.h>

#include "common/errcode.h"
#include "control/chord/chord.h"
#include "dataplane/reload.h"

enum { MAXN = 6, QCAP = 4096, ACAP = 64 };

typedef struct qmsg {
	int from, to;
	size_t len;
	uint8_t buf[2048];
} qmsg_t;

typedef struct net {
	chord_node_t *n[MAXN];
	vp_id_t id[MAXN];
	bool up[MAXN];
	int count;
	qmsg_t *q;
	size_t qhead, qtail;
	chord_store_action_t act[ACAP];
	int act_from[ACAP];
	int nact;
	int delivered_to;
	uint32_t delivered_hops;
	uint16_t delivered_code;
	bool answer_in_deliver;
	uint64_t now;
	rl_ice_candidate_t cand;
	int nreach;   /* io_reach calls of the node watched (reach_from) */
	int reach_from;
	int reach_to; /* the last one's peer */
} net_t;

static int idx_of(net_t *t, const vp_id_t *id)
{
	for (int i = 0; i < t->count; i++)
		if (vp_id_eq(&t->id[i], id))
			return i;
	return -1;
}

static int xmit(net_t *t, chord_node_t *cn, const vp_id_t *next, const rl_message_t *m, const vp_id_t *prev,
                bool pop)
{
	qmsg_t *q;
	vp_wr_t wr;
	assert_true(t->qtail - t->qhead < QCAP);
	q = &t->q[t->qtail % QCAP];
	q->from = idx_of(t, chord_node_id(cn));
	q->to = idx_of(t, next);
	vp_wr_init(&wr, q->buf, sizeof(q->buf));
	assert_int_equal(prev ? chord_fwd_encode(&wr, m, prev, pop) : rl_msg_encode(&wr, m), 0);
	q->len = vp_wr_len(&wr);
	t->qtail++;
	return 0;
}

static int io_send(void *ctx, chord_node_t *cn, const vp_id_t *next, const rl_message_t *m)
{
	return xmit(ctx, cn, next, m, NULL, false);
}

static int io_forward(void *ctx, chord_node_t *cn, const vp_id_t *next, const vp_id_t *prev, bool pop,
                      const rl_message_t *m)
{
	return xmit(ctx, cn, next, m, prev, pop);
}

static void io_attach_info(void *ctx, chord_node_t *cn, rl_attach_t *out)
{
	net_t *t = ctx;
	(void)cn;
	memset(out, 0, sizeof(*out));
	memset(&t->cand, 0, sizeof(t->cand));
	t->cand.addr.type = RL_ADDR_IPV4;
	t->cand.addr.addr[0] = 127;
	t->cand.addr.addr[3] = 1;
	t->cand.addr.port = 6084;
	t->cand.overlay_link = RL_LINK_TLS_TCP_FH_NO_ICE;
	t->cand.foundation = (rl_bytes_t){ (const uint8_t *)"1", 1 };
	t->cand.cand_type = RL_CAND_HOST;
	out->ufrag = (rl_bytes_t){ (const uint8_t *)"uf", 2 };
	out->password = (rl_bytes_t){ (const uint8_t *)"pw", 2 };
	out->candidates.items = &t->cand;
	out->candidates.n_items = 1;
}

static void io_connect(void *ctx, chord_node_t *cn, const vp_id_t *peer, const rl_attach_t *theirs)
{
	net_t *t = ctx;
	int p = idx_of(t, peer);
	(void)theirs;
	/* Links come up at once in this harness. */
	if (p >= 0 && t->up[p])
		chord_node_link_up(cn, peer, t->now);
	else
		chord_node_link_down(cn, peer, t->now);
}

/* Ring checks: every node's address is known here; the link is up at once if the peer is. */
static int io_reach(void *ctx, chord_node_t *cn, const vp_id_t *peer)
{
	net_t *t = ctx;
	int p = idx_of(t, peer);
	if (idx_of(t, chord_node_id(cn)) == t->reach_from) {
		t->nreach++;
		t->reach_to = p;
	}
	if (p < 0)
		return VP_ENOTFOUND;
	if (t->up[p])
		chord_node_link_up(cn, peer, t->now);
	else
		chord_node_link_down(cn, peer, t->now);
	return 0;
}

static void io_deliver(void *ctx, chord_node_t *cn, const chord_delivery_t *d)
{
	net_t *t = ctx;
	t->delivered_to = idx_of(t, chord_node_id(cn));
	t->delivered_hops = d->hops;
	t->delivered_code = d->msg->contents.code;
	if (t->answer_in_deliver && !d->is_answer) {
		rl_body_t b;
		memset(&b, 0, sizeof(b));
		b.code = RL_FETCH_ANS;
		assert_int_equal(chord_node_answer(cn, d, &b), 0);
	}
}

static void io_store(void *ctx, chord_node_t *cn, const chord_store_action_t *a)
{
	net_t *t = ctx;
	if (t->nact < ACAP) {
		t->act_from[t->nact] = idx_of(t, chord_node_id(cn));
		t->act[t->nact++] = *a;
	}
}

/* Probe num_resources: the harness's storage reports 1000 + the node's index. */
static uint32_t io_num_resources(void *ctx, chord_node_t *cn)
{
	net_t *t = ctx;
	return 1000u + (uint32_t)idx_of(t, chord_node_id(cn));
}

static vp_id_t T(uint8_t top)
{
	vp_id_t id = { { 0 } };
	id.b[0] = top;
	return id;
}

static net_t *net_new(const uint8_t *tops, int count)
{
	net_t *t = calloc(1, sizeof(*t));
	chord_io_t io = { .send = io_send, .forward = io_forward, .attach_info = io_attach_info, .connect = io_connect,
	                  .reach = io_reach, .deliver = io_deliver, .store = io_store, .num_resources = io_num_resources };
	chord_cfg_t cfg = chord_cfg_default();
	assert_non_null(t);
	t->q = calloc(QCAP, sizeof(qmsg_t));
	assert_non_null(t->q);
	io.ctx = t;
	t->count = count;
	t->now = 1000;
	t->delivered_to = -1;
	for (int i = 0; i < count; i++) {
		t->id[i] = T(tops[i]);
		t->up[i] = true;
		assert_int_equal(chord_node_new(&cfg, &t->id[i], &io, t->now, &t->n[i]), 0);
		assert_non_null(t->n[i]);
	}
	return t;
}

static void net_free(net_t *t)
{
	for (int i = 0; i < t->count; i++)
		chord_node_free(t->n[i]);
	free(t->q);
	free(t);
}

/* Deliver queued messages (decoding each) until none is left; then run timers. */
static void run(net_t *t)
{
	for (int round = 0; round < 50; round++) {
		int guard = 0;
		while (t->qhead != t->qtail) {
			qmsg_t *q = &t->q[t->qhead++ % QCAP];
			rl_message_t m;
			assert_true(++guard < 100000);
			if (q->to < 0 || !t->up[q->to])
				continue;
			assert_int_equal(rl_msg_decode(q->buf, q->len, &m), 0);
			chord_node_recv(t->n[q->to], &t->id[q->from], &m, t->now);
		}
		t->now += 150; /* past the reactive-Update delay */
		for (int i = 0; i < t->count; i++)
			if (t->up[i])
				chord_node_tick(t->n[i], t->now);
		if (t->qhead == t->qtail)
			return;
	}
	fail_msg("the network did not settle");
}

static void join_all(net_t *t)
{
	assert_int_equal(chord_node_bootstrap(t->n[0], t->now), 0);
	for (int i = 1; i < t->count; i++) {
		assert_int_equal(chord_node_join(t->n[i], &t->id[0], t->now), 0);
		assert_int_equal(chord_node_state(t->n[i]), CHORD_JOINING);
		run(t);
		assert_int_equal(chord_node_state(t->n[i]), CHORD_JOINED);
	}
}

static void assert_id(const vp_id_t *a, vp_id_t b)
{
	assert_memory_equal(a->b, b.b, VP_ID_LEN);
}

static void bootstrap_node_is_alone_and_responsible(void **state)
{
	uint8_t tops[] = { 0x40 };
	net_t *t = net_new(tops, 1);
	(void)state;
	assert_int_equal(chord_node_state(t->n[0]), CHORD_INIT);
	assert_int_equal(chord_node_bootstrap(t->n[0], t->now), 0);
	assert_int_equal(chord_node_state(t->n[0]), CHORD_JOINED);
	assert_int_equal(chord_node_bootstrap(t->n[0], t->now), VP_ESTATE);
	assert_true(chord_table_responsible(chord_node_table(t->n[0]), &(vp_id_t){ { 0x99 } }));
	/* Periodic Update and finger Ping are due within one interval (RFC defaults). */
	assert_true(chord_node_next_wakeup(t->n[0]) <= t->now + 3600 * 1000);
	assert_true(chord_node_next_wakeup(t->n[0]) >= t->now + 300 * 1000);
	net_free(t);
}

static void second_node_joins_and_gets_the_data(void **state)
{
	uint8_t tops[] = { 0x80, 0x40 };
	net_t *t = net_new(tops, 2);
	bool handoff = false;
	(void)state;
	join_all(t);
	for (int i = 0; i < 2; i++) {
		const chord_table_t *tab = chord_node_table(t->n[i]);
		assert_int_equal(tab->nsucc, 1);
		assert_id(&tab->succ[0], t->id[1 - i]);
		assert_id(&tab->pred[0], t->id[1 - i]);
	}
	/* The admitting peer (0x80) handed (0x80, 0x40] to the joiner. */
	for (int k = 0; k < t->nact; k++)
		if (t->act_from[k] == 0 && t->act[k].op == CHORD_STORE_HANDOFF &&
		    vp_id_eq(&t->act[k].to, &t->id[1]) && vp_id_eq(&t->act[k].hi, &t->id[1]))
			handoff = true;
	assert_true(handoff);
	net_free(t);
}

static void ring_of_five_has_true_neighbours_and_replicas(void **state)
{
	uint8_t tops[] = { 0x10, 0x90, 0x50, 0xd0, 0x30 };
	uint8_t order[] = { 0x10, 0x30, 0x50, 0x90, 0xd0 };
	net_t *t = net_new(tops, 5);
	(void)state;
	join_all(t);
	for (int i = 0; i < 5; i++) {
		const chord_table_t *tab = chord_node_table(t->n[i]);
		int pos = 0;
		while (order[pos] != tops[i])
			pos++;
		assert_int_equal(tab->nsucc, 3);
		assert_int_equal(tab->npred, 3);
		assert_id(&tab->succ[0], T(order[(pos + 1) % 5]));
		assert_id(&tab->succ[1], T(order[(pos + 2) % 5]));
		assert_id(&tab->pred[0], T(order[(pos + 4) % 5]));
	}
	/* 0x50 replicates (0x30, 0x50] to 0x90 (1) and 0xd0 (2) at some point. */
	{
		bool r1 = false, r2 = false;
		for (int k = 0; k < t->nact; k++) {
			if (t->act_from[k] != 2 || t->act[k].op != CHORD_STORE_REPLICATE)
				continue;
			r1 |= t->act[k].replica_number == 1 && vp_id_eq(&t->act[k].to, &(vp_id_t){ { 0x90 } });
			r2 |= t->act[k].replica_number == 2 && vp_id_eq(&t->act[k].to, &(vp_id_t){ { 0xd0 } });
		}
		assert_true(r1 && r2);
	}
	net_free(t);
}

static void leave_tells_both_sides_and_hands_off(void **state)
{
	uint8_t tops[] = { 0x10, 0x50, 0x90, 0xd0 };
	net_t *t = net_new(tops, 4);
	int from_succ = 0, from_pred = 0;
	bool handoff = false;
	(void)state;
	join_all(t);
	t->nact = 0;
	t->qhead = t->qtail = 0;
	assert_int_equal(chord_node_leave(t->n[1], t->now), 0);
	assert_int_equal(chord_node_state(t->n[1]), CHORD_LEFT);
	/* Inspect the Leave requests on the queue. */
	for (size_t k = t->qhead; k < t->qtail; k++) {
		rl_message_t m;
		rl_body_t b;
		rl_chord_leave_t cl;
		qmsg_t *q = &t->q[k % QCAP];
		assert_int_equal(rl_msg_decode(q->buf, q->len, &m), 0);
		if (m.contents.code != RL_LEAVE_REQ)
			continue;
		assert_int_equal(rl_body_decode(m.contents.code, m.contents.body.p, m.contents.body.len, NULL,
		                                NULL, &b), 0);
		assert_id(&b.u.leave_req.leaving_peer, T(0x50));
		assert_int_equal(rl_chord_leave_decode(b.u.leave_req.overlay_data.p,
		                                       b.u.leave_req.overlay_data.len, &cl), 0);
		if (cl.type == RL_LEAVE_FROM_SUCC)
			from_succ++;
		else if (cl.type == RL_LEAVE_FROM_PRED)
			from_pred++;
	}
	assert_int_equal(from_succ, 3); /* to each predecessor */
	assert_int_equal(from_pred, 3); /* to each successor */
	for (int k = 0; k < t->nact; k++)
		if (t->act_from[k] == 1 && t->act[k].op == CHORD_STORE_HANDOFF &&
		    vp_id_eq(&t->act[k].to, &(vp_id_t){ { 0x90 } }))
			handoff = true;
	assert_true(handoff);
	t->up[1] = false;
	run(t);
	assert_id(&chord_node_table(t->n[0])->succ[0], T(0x90));
	assert_id(&chord_node_table(t->n[2])->pred[0], T(0x10));
	assert_false(chord_table_contains(chord_node_table(t->n[3]), &(vp_id_t){ { 0x50 } }));
	net_free(t);
}

/* The txid of the first message node \p tops[1] sends when it joins through tops[0]. */
static uint64_t first_join_txid(void)
{
	uint8_t tops[] = { 0x80, 0x40 };
	net_t *t = net_new(tops, 2);
	rl_message_t m;
	uint64_t txid;
	assert_int_equal(chord_node_bootstrap(t->n[0], t->now), 0);
	t->qhead = t->qtail = 0;
	assert_int_equal(chord_node_join(t->n[1], &t->id[0], t->now), 0);
	assert_true(t->qtail > t->qhead);
	assert_int_equal(t->q[t->qhead % QCAP].from, 1);
	assert_int_equal(rl_msg_decode(t->q[t->qhead % QCAP].buf, t->q[t->qhead % QCAP].len, &m), 0);
	txid = m.hdr.txid;
	net_free(t);
	return txid;
}

/*
 * Transaction ids come from the CSPRNG: the same node (same public Node-ID,
 * same history) started twice sends different ids.  Derived from the Node-ID
 * and a counter they were equal, so anybody could predict them and forge answers.
 */
static void transaction_ids_are_unpredictable(void **state)
{
	uint64_t a = first_join_txid(), b = first_join_txid(), c = first_join_txid();
	(void)state;
	assert_true(a != b && b != c && a != c);
}

/*
 * A Leave whose ChordLeaveData does not decode is refused with Invalid_Message
 * and the peer stays in the table: before, the answer was sent and the peer
 * dropped before the body was looked at.
 */
static void malformed_leave_is_refused_and_changes_nothing(void **state)
{
	uint8_t tops[] = { 0x10, 0x50, 0x90, 0xd0 };
	net_t *t = net_new(tops, 4);
	static const uint8_t bad[][4] = { { 9, 0, 0 }, { RL_LEAVE_FROM_SUCC, 0, 40 }, { 0 } };
	static const size_t bad_len[] = { 3, 3, 0 };
	(void)state;
	join_all(t);
	for (size_t k = 0; k < sizeof(bad_len) / sizeof(bad_len[0]); k++) {
		uint8_t buf[512];
		rl_message_t m, e;
		rl_body_t b;
		rl_dest_t d = rl_dest_node(&t->id[0]);
		vp_wr_t wr;
		memset(&b, 0, sizeof(b));
		b.code = RL_LEAVE_REQ;
		b.u.leave_req.leaving_peer = t->id[1];
		b.u.leave_req.overlay_data = (rl_bytes_t){ bad[k], (uint32_t)bad_len[k] };
		memset(&m, 0, sizeof(m));
		m.hdr.version = RL_VERSION;
		m.hdr.ttl = 10;
		m.hdr.fragment = RL_FRAG_UNFRAGMENTED;
		m.hdr.txid = 77 + k;
		m.hdr.dest.items = &d;
		m.hdr.dest.n_items = 1;
		m.contents.code = RL_LEAVE_REQ;
		m.contents.body_st = &b;
		m.sec.sig.identity.type = RL_SIGNER_NONE;
		vp_wr_init(&wr, buf, sizeof(buf));
		assert_int_equal(rl_msg_encode(&wr, &m), 0);
		assert_int_equal(rl_msg_decode(buf, vp_wr_len(&wr), &m), 0);
		t->qhead = t->qtail = 0;
		assert_true(chord_node_recv(t->n[0], &t->id[1], &m, t->now) < 0);
		/* The answer is an error, and 0x50 is still 0x10's successor. */
		assert_int_equal(t->qtail - t->qhead, 1);
		assert_int_equal(rl_msg_decode(t->q[t->qhead % QCAP].buf, t->q[t->qhead % QCAP].len, &e), 0);
		assert_int_equal(e.contents.code, RL_ERROR);
		assert_int_equal(rl_body_decode(RL_ERROR, e.contents.body.p, e.contents.body.len, NULL, NULL, &b), 0);
		assert_int_equal(b.u.error.code, RL_ERR_INVALID_MESSAGE);
		assert_id(&chord_node_table(t->n[0])->succ[0], T(0x50));
		assert_true(chord_table_contains(chord_node_table(t->n[0]), &t->id[1]));
	}
	net_free(t);
}

static void failed_peer_is_removed_and_range_rereplicated(void **state)
{
	uint8_t tops[] = { 0x10, 0x50, 0x90, 0xd0 };
	net_t *t = net_new(tops, 4);
	bool rerep = false;
	(void)state;
	join_all(t);
	t->nact = 0;
	t->up[1] = false; /* 0x50 crashes */
	for (int i = 0; i < 4; i++)
		if (i != 1)
			chord_node_link_down(t->n[i], &t->id[1], t->now);
	run(t);
	assert_id(&chord_node_table(t->n[2])->pred[0], T(0x10));
	assert_id(&chord_node_table(t->n[0])->succ[0], T(0x90));
	assert_true(chord_node_stats(t->n[2])->peer_failures >= 1);
	/* 0x90 now owns (0x10, 0x90]: it copies that range to its replicas. */
	for (int k = 0; k < t->nact; k++)
		if (t->act_from[k] == 2 && t->act[k].op == CHORD_STORE_REPLICATE &&
		    vp_id_eq(&t->act[k].lo, &(vp_id_t){ { 0x10 } }))
			rerep = true;
	assert_true(rerep);
	net_free(t);
}

/* The new owner of a failed peer's range copies it again 1 s later: a replica that learned of the failure
 * after the first copy arrived refused it (its table still named the failed peer), and takes the repeat. */
static void range_is_replicated_again_once_the_views_settled(void **state)
{
	uint8_t tops[] = { 0x10, 0x50, 0x90, 0xd0 };
	net_t *t = net_new(tops, 4);
	int first = 0, again = 0;
	uint64_t t0;
	(void)state;
	join_all(t);
	for (int k = 0; k < 30; k++)
		run(t); /* the 1 s repeats of the joins are done */
	t->nact = 0;
	t->up[1] = false; /* 0x50 crashes; 0x90 notices first */
	chord_node_link_down(t->n[2], &t->id[1], t->now);
	t0 = t->now;
	run(t);
	for (int k = 0; k < t->nact; k++)
		if (t->act_from[k] == 2 && t->act[k].op == CHORD_STORE_REPLICATE && vp_id_eq(&t->act[k].lo, &t->id[0]))
			first++;
	assert_true(first >= 1);
	t->nact = 0;
	for (int i = 0; i < 4; i++)
		if (i != 1)
			chord_node_link_down(t->n[i], &t->id[1], t->now);
	while (t->now < t0 + 1000)
		run(t);
	run(t);
	for (int k = 0; k < t->nact; k++)
		if (t->act_from[k] == 2 && t->act[k].op == CHORD_STORE_REPLICATE && vp_id_eq(&t->act[k].lo, &t->id[0]) &&
		    vp_id_eq(&t->act[k].hi, &t->id[2]))
			again++;
	assert_true(again >= 1);
	/* Once: nothing more is copied while the ring stays as it is. */
	t->nact = 0;
	for (int k = 0; k < 20; k++)
		run(t);
	for (int k = 0; k < t->nact; k++)
		assert_false(t->act_from[k] == 2 && t->act[k].op == CHORD_STORE_REPLICATE);
	net_free(t);
}

/* A request from 0x10 for a resource owned by 0xd0, received by 0x50. */
static void make_fetch(net_t *t, uint8_t ttl, vp_id_t *res, uint8_t *buf, size_t cap, size_t *len)
{
	rl_message_t m;
	rl_body_t b;
	rl_dest_t d;
	vp_wr_t wr;
	(void)t;
	*res = T(0xc0);
	memset(&b, 0, sizeof(b));
	b.code = RL_FETCH_REQ;
	b.u.fetch_req.resource = (rl_bytes_t){ res->b, VP_ID_LEN };
	memset(&m, 0, sizeof(m));
	m.hdr.version = RL_VERSION;
	m.hdr.ttl = ttl;
	m.hdr.fragment = RL_FRAG_UNFRAGMENTED;
	m.hdr.txid = 0x1122334455667788ull;
	d = rl_dest_resource(res->b, VP_ID_LEN);
	m.hdr.dest.items = &d;
	m.hdr.dest.n_items = 1;
	m.contents.code = RL_FETCH_REQ;
	m.contents.body_st = &b;
	m.sec.sig.identity.type = RL_SIGNER_NONE;
	vp_wr_init(&wr, buf, cap);
	assert_int_equal(rl_msg_encode(&wr, &m), 0);
	*len = vp_wr_len(&wr);
}

static void forwarding_appends_via_and_answer_retraces(void **state)
{
	uint8_t tops[] = { 0x10, 0x50, 0x90, 0xd0 };
	net_t *t = net_new(tops, 4);
	uint8_t buf[512];
	size_t len;
	vp_id_t res;
	rl_message_t m;
	rl_iter_t it;
	rl_dest_t v;
	(void)state;
	join_all(t);
	t->qhead = t->qtail = 0;
	make_fetch(t, 50, &res, buf, sizeof(buf), &len);
	assert_int_equal(rl_msg_decode(buf, len, &m), 0);
	/* 0x50 is not responsible for 0xc0: it forwards to 0xd0 (its successor range). */
	assert_int_equal(chord_node_recv(t->n[1], &t->id[0], &m, t->now), 0);
	assert_int_equal(t->qtail - t->qhead, 1);
	{
		qmsg_t *q = &t->q[t->qhead % QCAP];
		rl_message_t f;
		assert_int_equal(q->to, 3);
		assert_int_equal(rl_msg_decode(q->buf, q->len, &f), 0);
		assert_int_equal(f.hdr.ttl, 49);
		assert_int_equal(RL_LIST_COUNT(&f.hdr.via), 1);
		RL_ITER_INIT(&it, &f.hdr.via);
		assert_int_equal(rl_dest_next(&it, &v), 1);
		assert_memory_equal(v.id.p, t->id[0].b, VP_ID_LEN);
	}
	/* 0xd0 serves it (the app answers); the answer goes back to 0x50 with
	 * destination list [0x50, 0x10]. */
	t->answer_in_deliver = true;
	{
		qmsg_t *q = &t->q[t->qhead++ % QCAP];
		rl_message_t f;
		assert_int_equal(rl_msg_decode(q->buf, q->len, &f), 0);
		assert_int_equal(chord_node_recv(t->n[3], &t->id[1], &f, t->now), 0);
	}
	assert_int_equal(t->delivered_to, 3);
	assert_int_equal(t->delivered_hops, 2);
	assert_int_equal(t->qtail - t->qhead, 1);
	{
		qmsg_t *q = &t->q[t->qhead % QCAP];
		rl_message_t a;
		assert_int_equal(q->to, 1);
		assert_int_equal(rl_msg_decode(q->buf, q->len, &a), 0);
		assert_int_equal(a.contents.code, RL_FETCH_ANS);
		assert_int_equal(a.hdr.txid, 0x1122334455667788ull);
		assert_int_equal(RL_LIST_COUNT(&a.hdr.dest), 2);
		RL_ITER_INIT(&it, &a.hdr.dest);
		assert_int_equal(rl_dest_next(&it, &v), 1);
		assert_memory_equal(v.id.p, t->id[1].b, VP_ID_LEN);
		assert_int_equal(rl_dest_next(&it, &v), 1);
		assert_memory_equal(v.id.p, t->id[0].b, VP_ID_LEN);
		/* 0x50 pops itself and passes it to 0x10 over the same link. */
		assert_int_equal(chord_node_recv(t->n[1], &t->id[3], &a, t->now), 0);
	}
	t->qhead++;
	assert_int_equal(t->q[t->qhead % QCAP].to, 0);
	net_free(t);
}

static void ttl_exhaustion_is_answered_with_an_error(void **state)
{
	uint8_t tops[] = { 0x10, 0x50, 0x90, 0xd0 };
	net_t *t = net_new(tops, 4);
	uint8_t buf[512];
	size_t len;
	vp_id_t res;
	rl_message_t m, e;
	rl_body_t b;
	(void)state;
	join_all(t);
	t->qhead = t->qtail = 0;
	make_fetch(t, 1, &res, buf, sizeof(buf), &len);
	assert_int_equal(rl_msg_decode(buf, len, &m), 0);
	assert_int_equal(chord_node_recv(t->n[1], &t->id[0], &m, t->now), VP_ERELOAD_TTL);
	assert_int_equal(t->qtail - t->qhead, 1);
	assert_int_equal(t->q[t->qhead % QCAP].to, 0);
	assert_int_equal(rl_msg_decode(t->q[t->qhead % QCAP].buf, t->q[t->qhead % QCAP].len, &e), 0);
	assert_int_equal(e.contents.code, RL_ERROR);
	assert_int_equal(rl_body_decode(RL_ERROR, e.contents.body.p, e.contents.body.len, NULL, NULL, &b), 0);
	assert_int_equal(b.u.error.code, RL_ERR_TTL_EXCEEDED);
	net_free(t);
}

static void probe_reports_responsible_fraction_and_resources(void **state)
{
	uint8_t tops[] = { 0x00, 0x40 };
	net_t *t = net_new(tops, 2);
	rl_message_t m, a;
	rl_body_t b;
	rl_dest_t d;
	uint8_t types[] = { RL_PROBE_RESPONSIBLE_SET, RL_PROBE_NUM_RESOURCES };
	uint8_t buf[512];
	vp_wr_t wr;
	rl_iter_t it;
	rl_probe_info_t info;
	(void)state;
	join_all(t);
	t->qhead = t->qtail = 0;
	memset(&b, 0, sizeof(b));
	b.code = RL_PROBE_REQ;
	b.u.probe_req.requested.items = types;
	b.u.probe_req.requested.n_items = 2;
	memset(&m, 0, sizeof(m));
	m.hdr.version = RL_VERSION;
	m.hdr.ttl = 10;
	m.hdr.fragment = RL_FRAG_UNFRAGMENTED;
	m.hdr.txid = 7;
	d = rl_dest_node(&t->id[1]);
	m.hdr.dest.items = &d;
	m.hdr.dest.n_items = 1;
	m.contents.code = RL_PROBE_REQ;
	m.contents.body_st = &b;
	m.sec.sig.identity.type = RL_SIGNER_NONE;
	vp_wr_init(&wr, buf, sizeof(buf));
	assert_int_equal(rl_msg_encode(&wr, &m), 0);
	assert_int_equal(rl_msg_decode(buf, vp_wr_len(&wr), &m), 0);
	assert_int_equal(chord_node_recv(t->n[1], &t->id[0], &m, t->now), 0);
	assert_int_equal(rl_msg_decode(t->q[t->qhead % QCAP].buf, t->q[t->qhead % QCAP].len, &a), 0);
	assert_int_equal(a.contents.code, RL_PROBE_ANS);
	assert_int_equal(rl_body_decode(RL_PROBE_ANS, a.contents.body.p, a.contents.body.len, NULL, NULL, &b), 0);
	RL_ITER_INIT(&it, &b.u.probe_ans.info);
	assert_int_equal(rl_probe_info_next(&it, &info), 1);
	assert_int_equal(info.type, RL_PROBE_RESPONSIBLE_SET);
	assert_int_equal(info.value, 250000000u); /* (0x00, 0x40] = 1/4 of the ring */
	/* num_resources comes from the storage layer through io->num_resources. */
	assert_int_equal(rl_probe_info_next(&it, &info), 1);
	assert_int_equal(info.type, RL_PROBE_NUM_RESOURCES);
	assert_int_equal(info.value, 1001u);
	assert_int_equal(rl_probe_info_next(&it, &info), 0);
	net_free(t);
}

/* The ring-check Attaches node `from` sent: each must be [via, resource self+1] sent to via. */
static int ring_check_attaches(net_t *t, int from, int via)
{
	vp_id_t next = t->id[from];
	int found = 0;
	next.b[15] += 1; /* T(x) + 1 */
	for (size_t i = t->qhead; i != t->qtail; i++) {
		qmsg_t *q = &t->q[i % QCAP];
		rl_message_t m;
		rl_iter_t it;
		rl_dest_t d0, d1;
		assert_int_equal(rl_msg_decode(q->buf, q->len, &m), 0);
		if (q->from != from || m.contents.code != RL_ATTACH_REQ || RL_LIST_COUNT(&m.hdr.dest) != 2)
			continue;
		RL_ITER_INIT(&it, &m.hdr.dest);
		assert_int_equal(rl_dest_next(&it, &d0), 1);
		assert_int_equal(rl_dest_next(&it, &d1), 1);
		assert_int_equal(d0.type, RL_DEST_NODE);
		assert_memory_equal(d0.id.p, t->id[via].b, VP_ID_LEN);
		assert_int_equal(d1.type, RL_DEST_RESOURCE);
		assert_memory_equal(d1.id.p, next.b, VP_ID_LEN);
		assert_int_equal(q->to, via);
		found++;
	}
	return found;
}

/*
 * The ring check probes through a peer it saw fail, not through one of its table: node 0x40's bootstrap
 * peer 0x00 is its predecessor (same ring: no probe), 0x80 is cut off and comes back unknown to it.  The
 * check opens a link to 0x80 (io->reach) and sends the Attach [0x80, 0x40..01] over it; the answer makes
 * 0x80 its successor again.
 */
static void ring_check_probes_through_a_peer_seen_failing(void **state)
{
	uint8_t tops[] = { 0x00, 0x40, 0x80 };
	net_t *t = net_new(tops, 3);
	uint64_t iv = chord_cfg_default().ring_check_interval_ms;
	(void)state;
	t->reach_from = 1;
	join_all(t);
	/* Past the first ring check (at most one interval away): the bootstrap peer is in the table. */
	t->qhead = t->qtail = 0;
	t->now += iv;
	chord_node_tick(t->n[1], t->now);
	assert_int_equal(t->nreach, 0);
	assert_int_equal(ring_check_attaches(t, 1, 0), 0);
	run(t); /* the periodic Updates it sent are answered */
	/* 0x80 is cut off: 0x40 loses its link and forgets it as a neighbour. */
	t->up[2] = false;
	chord_node_link_down(t->n[1], &t->id[2], t->now);
	assert_false(chord_table_contains(chord_node_table(t->n[1]), &t->id[2]));
	/* It is back; the next ring check goes through it. */
	t->up[2] = true;
	t->qhead = t->qtail = 0;
	t->now += iv;
	chord_node_tick(t->n[1], t->now);
	assert_int_equal(t->nreach, 1);
	assert_int_equal(t->reach_to, 2);
	assert_int_equal(ring_check_attaches(t, 1, 2), 1);
	assert_int_equal(chord_node_stats(t->n[1])->ring_checks, 1);
	/* Answered from 0x80's ring: 0x80 is responsible for 0x40..01 and becomes our successor. */
	run(t);
	assert_id(&chord_node_table(t->n[1])->succ[0], T(0x80));
	assert_id(&chord_node_table(t->n[1])->pred[0], T(0x00));
	net_free(t);
}

/* A remembered peer that stays unreachable is probed MERGE_MISSES (8) times, then forgotten: one probe per
 * interval, and not forever. */
static void ring_check_forgets_a_peer_it_cannot_reach(void **state)
{
	uint8_t tops[] = { 0x00, 0x40, 0x80 };
	net_t *t = net_new(tops, 3);
	uint64_t iv = chord_cfg_default().ring_check_interval_ms;
	(void)state;
	t->reach_from = 1;
	join_all(t);
	t->up[2] = false;
	chord_node_link_down(t->n[1], &t->id[2], t->now);
	t->nreach = 0;
	for (int i = 0; i < 12; i++) {
		int before = t->nreach;
		t->now += iv;
		chord_node_tick(t->n[1], t->now);
		assert_true(t->nreach - before <= 1); /* one probe per interval */
		run(t);
	}
	assert_int_equal(t->nreach, 8);
	assert_int_equal(t->reach_to, 2);
	assert_int_equal(chord_node_stats(t->n[1])->ring_check_misses, 8);
	assert_int_equal(chord_node_stats(t->n[1])->ring_checks, 0);
	net_free(t);
}

/* True if `id` is among n's predecessors, successors or fingers. */
static bool in_table(const chord_node_t *n, const vp_id_t *id)
{
	const chord_table_t *tab = chord_node_table(n);
	for (uint32_t i = 0; i < tab->npred; i++)
		if (vp_id_eq(&tab->pred[i], id))
			return true;
	for (uint32_t i = 0; i < tab->nsucc; i++)
		if (vp_id_eq(&tab->succ[i], id))
			return true;
	return false;
}

/*
 * An Update routed to us (its sender is the first via entry, not the link it came on) names a peer we have
 * no link to: it must not enter the routing table on the Update's word (we would route into a node we cannot
 * reach, or one that does not exist); it is attached to first like any gossiped id.
 */
static void routed_update_does_not_admit_its_sender(void **state)
{
	uint8_t tops[] = { 0x10, 0x90 };
	net_t *t = net_new(tops, 2);
	vp_id_t stranger = T(0x50);
	rl_dest_t via = rl_dest_node(&stranger), dest = rl_dest_node(&t->id[1]);
	rl_body_t b;
	rl_message_t m, back;
	uint8_t buf[2048];
	vp_wr_t wr;
	(void)state;
	join_all(t);
	memset(&b, 0, sizeof(b));
	b.code = RL_UPDATE_REQ;
	b.u.update.type = RL_UPDATE_NEIGHBORS;
	memset(&m, 0, sizeof(m));
	m.hdr.overlay = 0;
	m.hdr.config_seq = 1;
	m.hdr.version = RL_VERSION;
	m.hdr.ttl = RL_DEFAULT_TTL;
	m.hdr.fragment = RL_FRAG_UNFRAGMENTED;
	m.hdr.txid = 0x1234;
	m.hdr.via.items = &via;
	m.hdr.via.n_items = 1;
	m.hdr.dest.items = &dest;
	m.hdr.dest.n_items = 1;
	m.contents.code = b.code;
	m.contents.body_st = &b;
	m.sec.sig.identity.type = RL_SIGNER_NONE;
	vp_wr_init(&wr, buf, sizeof(buf));
	assert_int_equal(rl_msg_encode(&wr, &m), 0);
	assert_int_equal(rl_msg_decode(buf, vp_wr_len(&wr), &back), 0);
	chord_node_recv(t->n[1], &t->id[0], &back, t->now);
	run(t);
	assert_false(in_table(t->n[1], &stranger));
	assert_true(in_table(t->n[1], &t->id[0]));
	net_free(t);
}

/*
 * The answer to a request must come back on the link the request went out on (RFC 6940 §6.2.2: answers
 * retrace the via list).  A peer on another link that learnt (or guessed) the transaction id must not settle
 * it: here every request n[1] sends to n[0] is "answered" from n[2]'s link and the real answers never come,
 * so n[1] must time them out and drop n[0].  Accepting the forged answers kept the dead n[0] as a neighbour.
 */
static void answer_on_another_link_is_ignored(void **state)
{
	uint8_t tops[] = { 0x10, 0x50, 0x90 };
	net_t *t = net_new(tops, 3);
	int forged = 0;
	(void)state;
	join_all(t);
	run(t);
	t->now += chord_cfg_default().update_interval_ms + 1000; /* every node's periodic Update is due */
	chord_node_tick(t->n[1], t->now);
	while (t->qhead != t->qtail) {
		qmsg_t *q = &t->q[t->qhead++ % QCAP];
		rl_message_t req, ans;
		rl_body_t b;
		rl_dest_t d;
		uint8_t buf[2048];
		vp_wr_t wr;
		if (q->from != 1 || q->to != 0)
			continue;
		assert_int_equal(rl_msg_decode(q->buf, q->len, &req), 0);
		if (req.contents.code == RL_ERROR || (req.contents.code & 1) == 0)
			continue;
		memset(&b, 0, sizeof(b));
		b.code = (uint16_t)(req.contents.code + 1);
		memset(&ans, 0, sizeof(ans));
		d = rl_dest_node(&t->id[1]);
		ans.hdr = req.hdr;
		ans.hdr.via = (rl_dest_list_t){ 0 };
		ans.hdr.dest = (rl_dest_list_t){ .items = &d, .n_items = 1 };
		ans.hdr.options = (rl_fwd_option_list_t){ 0 };
		ans.contents.code = b.code;
		ans.contents.body_st = &b;
		ans.sec.sig.identity.type = RL_SIGNER_NONE;
		vp_wr_init(&wr, buf, sizeof(buf));
		assert_int_equal(rl_msg_encode(&wr, &ans), 0);
		assert_int_equal(rl_msg_decode(buf, vp_wr_len(&wr), &ans), 0);
		chord_node_recv(t->n[1], &t->id[2], &ans, t->now); /* from n[2]'s link */
		forged++;
	}
	assert_true(forged > 0);
	t->up[0] = false; /* n[0] says nothing more */
	t->now += chord_cfg_default().request_timeout_ms + 1000;
	chord_node_tick(t->n[1], t->now);
	assert_false(in_table(t->n[1], &t->id[0]));
	net_free(t);
}

static void config_is_checked(void **state)
{
	chord_cfg_t cfg = chord_cfg_default();
	chord_io_t io = { .send = io_send, .forward = io_forward };
	vp_id_t id = T(1);
	chord_node_t *n = (chord_node_t *)1; /* must be reset to NULL on error */
	(void)state;
	assert_int_equal(cfg.update_interval_ms, 600000);
	assert_int_equal(cfg.ping_interval_ms, 3600000);
	assert_int_equal(cfg.ring_check_interval_ms, 3600000);
	assert_true(cfg.reactive);
	cfg.update_interval_ms = 0;
	assert_int_equal(chord_node_new(&cfg, &id, &io, 0, &n), VP_ECONFIG);
	assert_null(n);
	cfg = chord_cfg_default();
	io.send = NULL;
	assert_int_equal(chord_node_new(&cfg, &id, &io, 0, &n), VP_EINVAL);
	assert_null(n);
	/* Relaying is the transport's: an engine without it would have to re-encode. */
	io.send = io_send;
	io.forward = NULL;
	assert_int_equal(chord_node_new(&cfg, &id, &io, 0, &n), VP_EINVAL);
	assert_null(n);
}

static int setup(void **state)
{
	(void)state;
	rcu_register_thread();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	rcu_thread_offline();
	rcu_barrier();
	rcu_thread_online();
	rcu_unregister_thread();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(bootstrap_node_is_alone_and_responsible),
		cmocka_unit_test(second_node_joins_and_gets_the_data),
		cmocka_unit_test(ring_of_five_has_true_neighbours_and_replicas),
		cmocka_unit_test(leave_tells_both_sides_and_hands_off),
		cmocka_unit_test(transaction_ids_are_unpredictable),
		cmocka_unit_test(malformed_leave_is_refused_and_changes_nothing),
		cmocka_unit_test(failed_peer_is_removed_and_range_rereplicated),
		cmocka_unit_test(range_is_replicated_again_once_the_views_settled),
		cmocka_unit_test(forwarding_appends_via_and_answer_retraces),
		cmocka_unit_test(ttl_exhaustion_is_answered_with_an_error),
		cmocka_unit_test(probe_reports_responsible_fraction_and_resources),
		cmocka_unit_test(ring_check_probes_through_a_peer_seen_failing),
		cmocka_unit_test(ring_check_forgets_a_peer_it_cannot_reach),
		cmocka_unit_test(routed_update_does_not_admit_its_sender),
		cmocka_unit_test(answer_on_another_link_is_ignored),
		cmocka_unit_test(config_is_checked),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
