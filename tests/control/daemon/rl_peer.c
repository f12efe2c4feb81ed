/*
 * rl_peer - a RELOAD peer for the viprd process tests: opens one TLS link to a running node with a
 * certificate of the overlay, sends signed requests and prints what came back, verified with the same
 * checks a node applies (dp_cert_msg_verify).  It also plays the attacker (bad signatures, floods,
 * oversize frames).  Every wait is bounded.
 *
 *   rl_peer CA CERT KEY OVERLAY ADDR:PORT ping NODE-ID
 *   rl_peer ... probe NODE-ID            Probe: responsible_set, num_resources, uptime
 *   rl_peer ... route_query RESOURCE-ID  RouteQuery towards a resource id
 *   rl_peer ... store RESOURCE-ID        an empty Store towards a resource id (answered where it belongs)
 *   rl_peer ... vstore RESOURCE-ID       a Store of one ViPR entry (claimant: this peer) signed by this peer
 *   rl_peer ... replica RESOURCE-ID      the same entry as replica_number 1: only a ring neighbour may send it
 *   rl_peer ... fetch RESOURCE-ID        Fetch the ViPR entries; each is verified here (nk_fetch_verify)
 *   rl_peer ... vstoren N RESOURCE-ID    vstore at RESOURCE-ID - i for i in [0, N), one at a time, 100 a second
 *                                        (under the test's flood limit); prints `stored=K of=N`
 *   rl_peer ... badsig NODE-ID           a Ping whose signature does not verify (expects no answer)
 *   rl_peer ... forged_leave NODE-ID     a Leave for NODE-ID signed by this peer (not its Node-ID)
 *   rl_peer ... flood N NODE-ID          N Pings as fast as the link takes them; prints the answers counted
 *   rl_peer ... junk                     a DATA frame that is not a RELOAD message
 *   rl_peer ... retx NODE-ID             a Ping whose answer is lost (the link closes as soon as the request
 *                                        is out, unread), then the same request (same bytes, same transaction
 *                                        id) again on a new link: the answer to that retransmission is printed
 *
 * Output: one line `answer code=0x.. responder=HEX verified=yes ...`, `no_answer`, or `closed reason=..`.
 * Exit status: 0 when the expected outcome happened, 1 otherwise, 2 for a usage or setup error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/rand.h>

#include "common/clock.h"
#include "common/errcode.h"
#include "common/hex.h"
#include "common/log.h"
#include "dataplane/cert.h"
#include "dataplane/link.h"
#include "dataplane/reload.h"
#include "control/node/kinds.h"
#include "storage/vipr_kind.h"

#define WAIT_MS 5000

typedef struct peer {
	dp_cert_store_t *certs;
	dp_link_ctx_t *ctx;
	dp_link_t *link;
	EVP_PKEY *key;
	uint8_t *der;
	int der_len;
	uint8_t hash[RL_MAX_HASH_LEN];
	rl_signer_identity_t signer;
	rl_cert_t rlcert;
	uint32_t overlay;
	vp_id_t self;
	uint64_t want_txid;
	int answers;
	uint8_t last[RL_MAX_MESSAGE_SIZE];
	size_t last_len;
	bool got;
	vp_id_t resource; /* of a fetch */
	uint8_t sent[RL_MAX_MESSAGE_SIZE]; /* the last request, as sent */
	size_t sent_len;
} peer_t;

static uint64_t now_ms(void)
{
	return vp_time_mono_ns() / 1000000u;
}

static void on_msg(void *arg, dp_link_t *l, const uint8_t *msg, size_t len)
{
	peer_t *p = arg;
	rl_message_t m;
	(void)l;
	if (rl_msg_decode(msg, len, &m))
		return;
	p->answers++;
	if (m.hdr.txid == p->want_txid && len <= sizeof(p->last)) {
		memcpy(p->last, msg, len);
		p->last_len = len;
		p->got = true;
	}
}

/* Run the link until cond or the deadline. */
static bool pump(peer_t *p, bool (*cond)(peer_t *), uint64_t ms)
{
	uint64_t end = now_ms() + ms;
	while (now_ms() < end) {
		struct pollfd pf = { dp_link_fd(p->link), dp_link_events(p->link), 0 };
		if (dp_link_state(p->link) == DP_LINK_CLOSED)
			return false;
		if (!dp_link_has_pending(p->link))
			poll(&pf, 1, 20);
		if (dp_link_io(p->link, now_ms(), on_msg, p) == VP_ECLOSED)
			return cond && cond(p);
		if (cond && cond(p))
			return true;
	}
	return cond ? cond(p) : true;
}

static bool is_up(peer_t *p)
{
	return dp_link_state(p->link) == DP_LINK_UP;
}

static bool got_answer(peer_t *p)
{
	return p->got;
}

static bool tx_empty(peer_t *p)
{
	return dp_link_tx_pending(p->link) == 0;
}

/* Encode and send a signed request (tamper: flip a signature byte). */
static int send_req(peer_t *p, const rl_dest_t *dest, const rl_body_t *body, bool tamper, uint64_t *txid)
{
	static uint8_t buf[RL_MAX_MESSAGE_SIZE], sig[RL_MAX_SIG_LEN];
	rl_message_t m;
	vp_wr_t wr;
	int err;

	memset(&m, 0, sizeof(m));
	m.hdr.overlay = p->overlay;
	m.hdr.version = RL_VERSION;
	m.hdr.ttl = RL_DEFAULT_TTL;
	m.hdr.fragment = RL_FRAG_UNFRAGMENTED;
	if (RAND_bytes((unsigned char *)&m.hdr.txid, sizeof(m.hdr.txid)) != 1)
		return VP_ECRYPTO;
	m.hdr.dest.items = dest;
	m.hdr.dest.n_items = 1;
	m.contents.code = body->code;
	m.contents.body_st = body;
	m.sec.certs.items = &p->rlcert;
	m.sec.certs.n_items = 1;
	vp_wr_init(&wr, buf, sizeof(buf));
	err = rl_msg_encode_signed(&wr, &m, p->key, &p->signer, sig, sizeof(sig));
	if (err)
		return err;
	if (tamper)
		buf[vp_wr_len(&wr) - 5] ^= 0x55; /* inside the signature value */
	*txid = m.hdr.txid;
	p->want_txid = m.hdr.txid;
	p->got = false;
	memcpy(p->sent, buf, vp_wr_len(&wr));
	p->sent_len = vp_wr_len(&wr);
	return dp_link_send(p->link, buf, vp_wr_len(&wr));
}

static int print_answer(peer_t *pp)
{
	rl_message_t m;
	rl_body_t b;
	vp_id_t responder;
	const dp_cert_ident_t *signer = NULL;
	dp_cert_reason_t why = DP_CERT_OK;
	uint32_t n = 0;
	const vp_id_t *link_ids = dp_link_peer_ids(pp->link, &n);
	char hex[VP_ID_HEX_LEN + 1];
	int vr;

	if (rl_msg_decode(pp->last, pp->last_len, &m) || dp_cert_originator(&m, &link_ids[0], &responder))
		return 1;
	vr = dp_cert_msg_verify(pp->certs, &m, &link_ids[0], &signer, &why);
	if (vr && why == DP_CERT_NOT_ORIGINATOR && n > 1)
		for (uint32_t i = 1; i < n && vr; i++) /* a direct answer from another vnode of the same node */
			if (!(vr = dp_cert_msg_verify(pp->certs, &m, &link_ids[i], &signer, &why)))
				responder = link_ids[i];
	printf("answer code=0x%x responder=%s verified=%s hops=%u", m.contents.code, vp_id_to_hex(&responder, hex),
	       vr ? dp_cert_reason_name(why) : "yes", (unsigned)RL_LIST_COUNT(&m.hdr.via));
	if (rl_body_decode(m.contents.code, m.contents.body.p, m.contents.body.len, NULL, NULL, &b) == 0) {
		if (m.contents.code == RL_ERROR)
			printf(" error=%u info=\"%.*s\"", b.u.error.code, (int)b.u.error.info.len, b.u.error.info.p);
		else if (m.contents.code == RL_FETCH_ANS) {
			st_kind_t k = st_kind_vipr(0);
			nk_fetch_result_t res = { 0 };
			int fr = nk_fetch_verify(pp->certs, &k, 1, &pp->resource, &m, NULL, NULL, &res);
			printf(" fetch_verify=%s entries=%u rejected=%u", vp_strerror(fr), res.accepted, res.rejected);
		} else if (m.contents.code == RL_STORE_ANS)
			printf(" kinds=%u", (unsigned)RL_LIST_COUNT(&b.u.store_ans.responses));
		else if (m.contents.code == RL_ROUTE_QUERY_ANS)
			printf(" next_peer=%s", vp_id_to_hex(&b.u.route_query_ans.next_peer, hex));
		else if (m.contents.code == RL_PROBE_ANS) {
			rl_iter_t it;
			rl_probe_info_t pi;
			RL_ITER_INIT(&it, &b.u.probe_ans.info);
			while (rl_probe_info_next(&it, &pi) == 1)
				printf(" probe%u=%u", pi.type, pi.value);
		}
	}
	printf("\n");
	return vr ? 1 : 0;
}

/* A Store of one ViPR entry at \p rid (claimant: this peer), signed by this peer; buffers are static. */
static void vstore_body(peer_t *pp, const vp_id_t *rid, uint8_t replica, rl_body_t *body)
{
	static uint8_t key[ST_VIPR_KEY_LEN], val[ST_VIPR_VALUE_MAX_LEN], sig[RL_MAX_SIG_LEN];
	static rl_stored_data_t sd;
	static rl_store_kind_data_t kd;
	static vp_id_t res;
	st_vipr_key_t k = { pp->self, 1 };
	st_vipr_value_t v = { pp->self, 1, ST_VIPR_PVP_WITH_CALLER_ID, NULL, 0 };
	size_t vlen = 0;
	res = *rid;
	st_vipr_key_encode(&k, key);
	st_vipr_value_encode(&v, val, sizeof(val), &vlen);
	memset(&sd, 0, sizeof(sd));
	sd.storage_time = vp_time_wall_ms();
	sd.lifetime = 3600;
	sd.model = RL_MODEL_DICTIONARY;
	sd.key = (rl_bytes_t){ key, ST_VIPR_KEY_LEN };
	sd.exists = true;
	sd.value = (rl_bytes_t){ val, (uint32_t)vlen };
	rl_stored_data_sign(pp->key, res.b, VP_ID_LEN, ST_VIPR_KIND_ID_DEFAULT, &sd, &pp->signer, sig, sizeof(sig));
	memset(&kd, 0, sizeof(kd));
	kd.kind = ST_VIPR_KIND_ID_DEFAULT;
	kd.values.items = &sd;
	kd.values.n_items = 1;
	memset(body, 0, sizeof(*body));
	body->code = RL_STORE_REQ;
	body->u.store_req.resource = (rl_bytes_t){ res.b, VP_ID_LEN };
	body->u.store_req.replica_number = replica;
	body->u.store_req.kind_data.items = &kd;
	body->u.store_req.kind_data.n_items = 1;
}

static int id_arg(const char *s, vp_id_t *id)
{
	if (vp_id_from_hex(s, id)) {
		fprintf(stderr, "rl_peer: %s is not a Node-ID\n", s);
		return 2;
	}
	return 0;
}

static peer_t p;

static int run(int argc, char **argv)
{
	dp_link_conf_t lc;
	dp_cert_store_cfg_t cc;
	struct sockaddr_storage ss;
	socklen_t sl;
	FILE *f;
	X509 *cert = NULL;
	const char *cmd;
	vp_id_t target;
	rl_dest_t dest;
	rl_body_t body;
	uint64_t txid;
	int err;

	if (argc < 7) {
		fprintf(stderr, "usage: rl_peer CA CERT KEY OVERLAY ADDR:PORT COMMAND [ARGS]\n");
		return 2;
	}
	vp_log_setup(VP_LOG_WARN, stderr);
	memset(&p, 0, sizeof(p));
	cc = (dp_cert_store_cfg_t){ .overlay = argv[4] };
	dp_link_conf_default(&lc);
	snprintf(lc.ca_file, sizeof(lc.ca_file), "%s", argv[1]);
	snprintf(lc.cert_file, sizeof(lc.cert_file), "%s", argv[2]);
	snprintf(lc.key_file, sizeof(lc.key_file), "%s", argv[3]);
	if (dp_cert_store_new(&cc, &p.certs) || dp_cert_store_add_root_file(p.certs, argv[1]) ||
	    dp_link_ctx_new(&lc, p.certs, NULL, &p.ctx))
		return 2;
	f = fopen(argv[2], "r");
	cert = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
	if (f)
		fclose(f);
	f = fopen(argv[3], "r");
	p.key = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
	if (f)
		fclose(f);
	if (!cert || !p.key || (p.der_len = i2d_X509(cert, &p.der)) <= 0 ||
	    rl_signer_cert_hash(p.der, (size_t)p.der_len, p.hash, &p.signer) ||
	    dp_cert_node_ids(cert, argv[4], &p.self, 1) != 1)
		return 2;
	p.rlcert = (rl_cert_t){ RL_CERT_X509, { p.der, (uint32_t)p.der_len } };
	p.overlay = rl_overlay_id(argv[4], strlen(argv[4]));
	if (dp_link_addr_parse(argv[5], &ss, &sl) ||
	    dp_link_connect(p.ctx, (struct sockaddr *)&ss, sl, NULL, now_ms(), &p.link))
		return 2;
	if (!pump(&p, is_up, WAIT_MS)) {
		printf("closed reason=%s\n", dp_link_close_reason(p.link) ? dp_link_close_reason(p.link) : "timeout");
		return 1;
	}
	cmd = argv[6];
	memset(&body, 0, sizeof(body));
	if (!strcmp(cmd, "junk")) {
		/* A well-framed DATA frame that is no RELOAD message: refused, the link and the node carry on. */
		static uint8_t junk[4096];
		memset(junk, 0xAB, sizeof(junk));
		if (dp_link_send(p.link, junk, sizeof(junk)))
			return 2;
		pump(&p, NULL, 1000);
		printf("%s reason=%s\n", dp_link_state(p.link) == DP_LINK_CLOSED ? "closed" : "open",
		       dp_link_close_reason(p.link) ? dp_link_close_reason(p.link) : "-");
		return 0;
	}
	if (argc < 8)
		return 2;
	if (!strcmp(cmd, "flood")) {
		long n = strtol(argv[7], NULL, 10);
		int sent = 0;
		uint64_t t0 = now_ms(), t1;
		if (argc < 9 || n <= 0 || (err = id_arg(argv[8], &target)))
			return 2;
		dest = rl_dest_node(&target);
		body.code = RL_PING_REQ;
		for (long i = 0; i < n; i++) {
			if (send_req(&p, &dest, &body, false, &txid) == 0)
				sent++;
			else
				pump(&p, tx_empty, 1000);
			if (dp_link_state(p.link) == DP_LINK_CLOSED)
				break;
			if ((i & 63) == 0)
				pump(&p, NULL, 0);
		}
		pump(&p, tx_empty, WAIT_MS);
		t1 = now_ms(); /* everything is written: on loopback the node has it too */
		pump(&p, NULL, 2000);
		printf("flood sent=%d answers=%d send_ms=%llu\n", sent, p.answers, (unsigned long long)(t1 - t0));
		return 0;
	}
	if (!strcmp(cmd, "vstoren")) {
		long n = strtol(argv[7], NULL, 10);
		int stored = 0;
		if (argc < 9 || n <= 0 || n > 100000 || (err = id_arg(argv[8], &target)))
			return 2;
		for (long i = 0; i < n; i++) {
			vp_id_t r = target;
			uint64_t t0 = now_ms();
			rl_message_t am;
			uint64_t sub = (uint64_t)i; /* r = target - i (mod 2^128), big-endian */
			for (int b = VP_ID_LEN - 1; b >= 0 && sub; b--) {
				unsigned cur = r.b[b], low = (unsigned)(sub & 0xff);
				sub >>= 8;
				if (cur < low) {
					cur += 256;
					sub++;
				}
				r.b[b] = (uint8_t)(cur - low);
			}
			dest = rl_dest_resource(r.b, VP_ID_LEN);
			vstore_body(&p, &r, 0, &body);
			if (send_req(&p, &dest, &body, false, &txid))
				return 2;
			if (pump(&p, got_answer, WAIT_MS) && !rl_msg_decode(p.last, p.last_len, &am) &&
			    am.contents.code == RL_STORE_ANS)
				stored++;
			while (now_ms() < t0 + 10) /* 100 a second */
				pump(&p, NULL, t0 + 10 - now_ms());
		}
		printf("stored=%d of=%ld\n", stored, n);
		return stored == n ? 0 : 1;
	}
	if ((err = id_arg(argv[7], &target)))
		return err;
	if (!strcmp(cmd, "ping") || !strcmp(cmd, "badsig")) {
		dest = rl_dest_node(&target);
		body.code = RL_PING_REQ;
	} else if (!strcmp(cmd, "probe")) {
		static const uint8_t want[] = { RL_PROBE_RESPONSIBLE_SET, RL_PROBE_NUM_RESOURCES, RL_PROBE_UPTIME };
		dest = rl_dest_node(&target);
		body.code = RL_PROBE_REQ;
		body.u.probe_req.requested.items = want;
		body.u.probe_req.requested.n_items = 3;
	} else if (!strcmp(cmd, "route_query")) {
		dest = rl_dest_resource(target.b, VP_ID_LEN);
		body.code = RL_ROUTE_QUERY_REQ;
		body.u.route_query_req.destination = dest;
	} else if (!strcmp(cmd, "store")) {
		/* A Store with no kind data: routed to the responsible vnode, answered there. */
		dest = rl_dest_resource(target.b, VP_ID_LEN);
		body.code = RL_STORE_REQ;
		body.u.store_req.resource = (rl_bytes_t){ target.b, VP_ID_LEN };
	} else if (!strcmp(cmd, "vstore") || !strcmp(cmd, "replica")) {
		dest = rl_dest_resource(target.b, VP_ID_LEN);
		vstore_body(&p, &target, !strcmp(cmd, "replica") ? 1 : 0, &body);
	} else if (!strcmp(cmd, "fetch")) {
		static rl_specifier_t spec;
		spec.kind = ST_VIPR_KIND_ID_DEFAULT;
		spec.model = RL_MODEL_DICTIONARY;
		dest = rl_dest_resource(target.b, VP_ID_LEN);
		body.code = RL_FETCH_REQ;
		body.u.fetch_req.resource = (rl_bytes_t){ target.b, VP_ID_LEN };
		body.u.fetch_req.specifiers.items = &spec;
		body.u.fetch_req.specifiers.n_items = 1;
		p.resource = target;
	} else if (!strcmp(cmd, "retx")) {
		dest = rl_dest_node(&target);
		body.code = RL_PING_REQ;
	} else if (!strcmp(cmd, "forged_leave")) {
		dest = rl_dest_node(&target);
		body.code = RL_LEAVE_REQ;
		body.u.leave_req.leaving_peer = target;
	} else {
		fprintf(stderr, "rl_peer: unknown command %s\n", cmd);
		return 2;
	}
	if (send_req(&p, &dest, &body, !strcmp(cmd, "badsig"), &txid))
		return 2;
	if (!strcmp(cmd, "retx")) {
		/* The first answer is lost: the link goes once the request is out, nothing read.  Then the same
		 * bytes on a new link, as an end-to-end retransmission. */
		pump(&p, tx_empty, WAIT_MS);
		dp_link_free(p.link);
		p.link = NULL;
		usleep(500000);
		if (dp_link_connect(p.ctx, (struct sockaddr *)&ss, sl, NULL, now_ms(), &p.link) || !pump(&p, is_up, WAIT_MS))
			return 2;
		p.got = false;
		if (dp_link_send(p.link, p.sent, p.sent_len))
			return 2;
		printf("retransmitted txid=%llx\n", (unsigned long long)txid);
	}
	if (!pump(&p, got_answer, WAIT_MS)) {
		printf("no_answer\n");
		return 1;
	}
	return print_answer(&p);
}

static bool closed(peer_t *pp)
{
	return dp_link_state(pp->link) == DP_LINK_CLOSED;
}

int main(int argc, char **argv)
{
	int rc = run(argc, argv);
	if (p.link) {
		/* close_notify, so the node logs a clean close rather than a TLS error */
		dp_link_close(p.link);
		pump(&p, closed, 1000);
	}
	return rc;
}
