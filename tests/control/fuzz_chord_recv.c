/*
 * libFuzzer target: the Chord engine's input path.  Each input is
 *
 *   byte 0   control: bits 0-1 the sender (0 = a vnode nobody knows, 1-3 a
 *            member), bit 2 hand the message to chord_node_resend() as if the
 *            link to the sender had died with it, instead of chord_node_recv()
 *   rest     a RELOAD message, decoded by rl_msg_decode()
 *
 * A fresh 4-vnode ring (ids 0x00.., 0x40.., 0x80.., 0xc0..) is built per input
 * by the real join protocol; vnode 0x00.. receives the message.  Everything it
 * sends, and what that sets off, is delivered through the real codec to the
 * others (bounded), and timers run twice.  Invariants checked besides ASan/
 * UBSan: every message the engine emits encodes and decodes again, and a
 * vnode's routing table stays consistent (checksum, counts within bounds).
 *
 * Seeds (tests/control/corpus/chord_recv/) are the messages vnode 0x00..
 * received while the ring formed plus Fetch/Probe/RouteQuery requests; build
 * this file with -DFUZZ_CHORD_SEEDGEN and run it with a directory to write
 * them again.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <urcu-qsbr.h>

#include "control/chord/chord.h"
#include "dataplane/reload.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { NN = 4, QCAP = 512, MAX_DELIVER = 4000 };

typedef struct fmsg {
	int from, to;
	size_t len;
	uint8_t buf[RL_MAX_MESSAGE_SIZE];
} fmsg_t;

typedef struct fnet {
	chord_node_t *n[NN];
	vp_id_t id[NN];
	fmsg_t *q;
	size_t qhead, qtail;
	uint64_t now;
	rl_ice_candidate_t cand;
	/* seed generation: messages delivered to vnode 0 */
	const char *dump_dir;
	unsigned dumped;
} fnet_t;

static int idx_of(const fnet_t *t, const vp_id_t *id)
{
	for (int i = 0; i < NN; i++)
		if (vp_id_eq(&t->id[i], id))
			return i;
	return -1;
}

static int f_xmit(fnet_t *t, chord_node_t *cn, const vp_id_t *next, const rl_message_t *m, const vp_id_t *prev,
                  bool pop)
{
	vp_wr_t wr;
	fmsg_t *q;
	rl_message_t back;
	if (t->qtail - t->qhead >= QCAP)
		return -1; /* a full queue is a lost message: the engine copes */
	q = &t->q[t->qtail % QCAP];
	vp_wr_init(&wr, q->buf, sizeof(q->buf));
	if (prev ? chord_fwd_encode(&wr, m, prev, pop) : rl_msg_encode(&wr, m))
		return wr.err ? wr.err : -1;
	q->len = vp_wr_len(&wr);
	/* What the engine emits must decode again. */
	if (rl_msg_decode(q->buf, q->len, &back))
		abort();
	q->from = idx_of(t, chord_node_id(cn));
	q->to = idx_of(t, next);
	t->qtail++;
	return 0;
}

static int f_send(void *ctx, chord_node_t *cn, const vp_id_t *next, const rl_message_t *m)
{
	return f_xmit(ctx, cn, next, m, NULL, false);
}

static int f_forward(void *ctx, chord_node_t *cn, const vp_id_t *next, const vp_id_t *prev, bool pop,
                     const rl_message_t *m)
{
	return f_xmit(ctx, cn, next, m, prev, pop);
}

static void f_attach_info(void *ctx, chord_node_t *cn, rl_attach_t *out)
{
	fnet_t *t = ctx;
	(void)cn;
	memset(out, 0, sizeof(*out));
	memset(&t->cand, 0, sizeof(t->cand));
	t->cand.addr.type = RL_ADDR_IPV4;
	t->cand.addr.addr[0] = 127;
	t->cand.addr.addr[3] = 1;
	t->cand.addr.port = RL_DEFAULT_PORT;
	t->cand.overlay_link = RL_LINK_TLS_TCP_FH_NO_ICE;
	t->cand.foundation = (rl_bytes_t){ (const uint8_t *)"1", 1 };
	t->cand.cand_type = RL_CAND_HOST;
	out->ufrag = (rl_bytes_t){ (const uint8_t *)"uf", 2 };
	out->password = (rl_bytes_t){ (const uint8_t *)"pw", 2 };
	out->candidates.items = &t->cand;
	out->candidates.n_items = 1;
}

static void f_connect(void *ctx, chord_node_t *cn, const vp_id_t *peer, const rl_attach_t *theirs)
{
	fnet_t *t = ctx;
	(void)theirs;
	if (idx_of(t, peer) >= 0)
		chord_node_link_up(cn, peer, t->now);
	else
		chord_node_link_down(cn, peer, t->now);
}

static void f_deliver(void *ctx, chord_node_t *cn, const chord_delivery_t *d)
{
	rl_body_t b;
	(void)ctx;
	if (d->is_answer)
		return;
	/* The application answers: an empty FetchAns for a Fetch, else an error. */
	memset(&b, 0, sizeof(b));
	if (d->msg->contents.code == RL_FETCH_REQ) {
		b.code = RL_FETCH_ANS;
	} else {
		b.code = RL_ERROR;
		b.u.error.code = RL_ERR_FORBIDDEN;
	}
	(void)chord_node_answer(cn, d, &b);
}

static void f_store(void *ctx, chord_node_t *cn, const chord_store_action_t *a)
{
	(void)ctx;
	(void)cn;
	(void)a;
}

static uint32_t f_num_resources(void *ctx, chord_node_t *cn)
{
	(void)ctx;
	(void)cn;
	return 3;
}

static void check_table(const chord_node_t *cn)
{
	const chord_table_t *tab = chord_node_table(cn);
	if (tab->checksum != chord_table_checksum(tab) || tab->npred > CHORD_MAX_NEIGH ||
	    tab->nsucc > CHORD_MAX_NEIGH || tab->nroute > CHORD_MAX_ROUTE)
		abort();
}

static void dump(fnet_t *t, const fmsg_t *q)
{
	char path[512];
	FILE *f;
	uint8_t ctl = (uint8_t)(q->from > 0 && q->from < NN ? q->from : 0);
	snprintf(path, sizeof(path), "%s/join_%03u", t->dump_dir, t->dumped++);
	f = fopen(path, "wb");
	if (!f)
		return;
	fwrite(&ctl, 1, 1, f);
	fwrite(q->buf, 1, q->len, f);
	fclose(f);
}

/* Deliver queued messages and run timers until quiet or the budget is spent. */
static void pump(fnet_t *t)
{
	unsigned delivered = 0;
	for (int round = 0; round < 8; round++) {
		while (t->qhead != t->qtail && delivered < MAX_DELIVER) {
			fmsg_t *q = &t->q[t->qhead++ % QCAP];
			rl_message_t m;
			delivered++;
			if (q->to < 0 || q->from < 0)
				continue;
			if (rl_msg_decode(q->buf, q->len, &m))
				abort(); /* checked when sent */
			if (q->to == 0 && t->dump_dir)
				dump(t, q);
			chord_node_recv(t->n[q->to], &t->id[q->from], &m, t->now);
		}
		t->qhead = t->qtail; /* over budget: drop the rest */
		t->now += 150;
		for (int i = 0; i < NN; i++)
			chord_node_tick(t->n[i], t->now);
		if (t->qhead == t->qtail)
			return;
	}
	t->qhead = t->qtail;
}

static fnet_t *net_new(const char *dump_dir)
{
	fnet_t *t = calloc(1, sizeof(*t));
	chord_io_t io = { .send = f_send, .forward = f_forward, .attach_info = f_attach_info, .connect = f_connect,
	                  .deliver = f_deliver, .store = f_store, .num_resources = f_num_resources };
	chord_cfg_t cfg = chord_cfg_default();
	if (!t)
		abort();
	t->q = calloc(QCAP, sizeof(fmsg_t));
	if (!t->q)
		abort();
	t->dump_dir = dump_dir;
	t->now = 1000;
	io.ctx = t;
	for (int i = 0; i < NN; i++) {
		t->id[i].b[0] = (uint8_t)(0x40 * i);
		if (chord_node_new(&cfg, &t->id[i], &io, t->now, &t->n[i]))
			abort();
	}
	if (chord_node_bootstrap(t->n[0], t->now))
		abort();
	for (int i = 1; i < NN; i++) {
		if (chord_node_join(t->n[i], &t->id[0], t->now))
			abort();
		pump(t);
	}
	return t;
}

static void net_free(fnet_t *t)
{
	for (int i = 0; i < NN; i++)
		chord_node_free(t->n[i]);
	free(t->q);
	free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool registered;
	fnet_t *t;
	rl_message_t m;
	vp_id_t from;
	int s;

	if (!registered) {
		rcu_register_thread();
		registered = true;
	}
	if (size < 1 || rl_msg_decode(data + 1, size - 1, &m))
		return 0;
	t = net_new(NULL);
	s = data[0] & 3;
	if (s == 0) {
		memset(&from, 0x11, sizeof(from)); /* nobody's peer */
	} else {
		from = t->id[s];
	}
	if (data[0] & 4)
		(void)chord_node_resend(t->n[0], &from, &m, t->now);
	else
		(void)chord_node_recv(t->n[0], &from, &m, t->now);
	check_table(t->n[0]);
	pump(t);
	/* Timeouts of whatever the message started, then the periodic timers. */
	t->now += 20 * 1000;
	for (int i = 0; i < NN; i++)
		chord_node_tick(t->n[i], t->now);
	pump(t);
	t->now += 3600 * 1000;
	for (int i = 0; i < NN; i++)
		chord_node_tick(t->n[i], t->now);
	pump(t);
	for (int i = 0; i < NN; i++)
		check_table(t->n[i]);
	net_free(t);
	/* Let the old table snapshots (call_rcu) be freed. */
	rcu_quiescent_state();
	return 0;
}

#ifdef FUZZ_CHORD_SEEDGEN
int main(int argc, char **argv)
{
	fnet_t *t;
	if (argc != 2) {
		fprintf(stderr, "usage: %s corpus-dir\n", argv[0]);
		return 2;
	}
	rcu_register_thread();
	t = net_new(argv[1]);
	/* Periodic traffic too: Updates, Pings, finger Attaches. */
	t->now += 3600 * 1000;
	for (int i = 0; i < NN; i++)
		chord_node_tick(t->n[i], t->now);
	pump(t);
	/* Application and topology requests from vnode 1 to vnode 0. */
	{
		rl_body_t b;
		rl_specifier_t spec;
		uint8_t types[] = { RL_PROBE_RESPONSIBLE_SET, RL_PROBE_NUM_RESOURCES, RL_PROBE_UPTIME };
		vp_id_t res = { { 0xf0, 1, 2, 3 } };
		uint64_t txid;
		memset(&b, 0, sizeof(b));
		memset(&spec, 0, sizeof(spec));
		spec.kind = RL_KIND_VIPR_REGISTRATION;
		spec.model = RL_MODEL_DICTIONARY;
		b.code = RL_FETCH_REQ;
		b.u.fetch_req.resource = (rl_bytes_t){ res.b, VP_ID_LEN };
		b.u.fetch_req.specifiers.items = &spec;
		b.u.fetch_req.specifiers.n_items = 1;
		chord_node_request(t->n[1], &res, true, &b, &txid, t->now);
		memset(&b, 0, sizeof(b));
		b.code = RL_PROBE_REQ;
		b.u.probe_req.requested.items = types;
		b.u.probe_req.requested.n_items = 3;
		chord_node_request(t->n[1], &t->id[0], false, &b, &txid, t->now);
		memset(&b, 0, sizeof(b));
		b.code = RL_ROUTE_QUERY_REQ;
		b.u.route_query_req.send_update = true;
		b.u.route_query_req.destination = rl_dest_resource(res.b, VP_ID_LEN);
		chord_node_request(t->n[1], &t->id[0], false, &b, &txid, t->now);
		pump(t);
	}
	net_free(t);
	rcu_thread_offline();
	rcu_barrier();
	rcu_thread_online();
	rcu_unregister_thread();
	return 0;
}
#endif
