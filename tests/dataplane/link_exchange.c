/*
 * tests/dataplane/link_exchange.c - three nodes A, B, C on 127.0.0.1 over real
 * TLS links (A-B, B-C) with a key log: A sends a request of every RELOAD
 * method the Chord engine and the ViPR service send, relayed by B (which
 * appends the via entry of its link to A and verifies nothing) to C, which
 * verifies each one as the destination (signer = originator) and answers
 * along the reversed via list.  Prints a JSON manifest of every message that
 * crossed a link (port, transaction id, code) for link_tshark.py, which
 * decodes the live capture with tshark through the key log.
 *
 *   link_exchange PORT_B PORT_C KEYLOG MANIFEST
 *
 * Exit status 0 only if every request was verified at C and every answer at A.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "dataplane/cert.h"
#include "dataplane/link.h"
#include "link_testkit.h"
#include "pki_testkit.h"

typedef struct world {
	lt_node_t a, b, c;
	dp_link_t *ab, *ba, *bc, *cb; /* X's link to Y */
	pk_node_t ida, idb, idc;
	FILE *mf;
	int n_mf;
	int verified_c, verified_a, failures;
} world_t;

static world_t W;

static void die(const char *what)
{
	fprintf(stderr, "link_exchange: %s\n", what);
	exit(2);
}

static void manifest(uint16_t port, const uint8_t *msg, size_t len)
{
	rl_message_t m;
	if (rl_msg_decode(msg, len, &m))
		die("undecodable message on a link");
	fprintf(W.mf, "%s\n  {\"port\": %u, \"txid\": \"%016llx\", \"code\": %u}", W.n_mf++ ? "," : "", port,
	        (unsigned long long)m.hdr.txid, m.contents.code);
}

/* Send on `l` (to the node listening on `port`, or from it) and record it. */
static void send_on(dp_link_t *l, uint16_t port, const uint8_t *msg, size_t len)
{
	manifest(port, msg, len);
	if (dp_link_send(l, msg, len))
		die("send");
}

/* B relays without verifying: via += the Node-ID of the link it came from, dest popped if it is B. */
static void b_on_msg(lt_node_t *n, dp_link_t *l, const uint8_t *msg, size_t len)
{
	uint8_t out[RL_MAX_MESSAGE_SIZE];
	rl_fwd_header_t h;
	rl_iter_t it;
	rl_dest_t first, via;
	const vp_id_t *ids;
	uint32_t nid;
	vp_wr_t wr;
	bool pop = false;
	vp_id_t idb = pk_id(0xB1);
	(void)n;

	if (rl_fwd_header_decode(msg, len, &h))
		die("relay: header");
	RL_ITER_INIT(&it, &h.dest);
	if (rl_dest_next(&it, &first) == 1 && first.type == RL_DEST_NODE && memcmp(first.id.p, idb.b, 16) == 0)
		pop = true;
	ids = dp_link_peer_ids(l, &nid);
	via = rl_dest_node(&ids[0]);
	vp_wr_init(&wr, out, sizeof(out));
	if (rl_fwd_copy(&wr, msg, len, &h, &via, pop))
		die("relay: copy");
	if (l == W.ba)
		send_on(W.bc, W.c.port, out, vp_wr_len(&wr));
	else
		send_on(W.ba, W.b.port, out, vp_wr_len(&wr));
}

/* Destination checks: signature, signer = originator, topology rule. */
static bool dest_verify(lt_node_t *n, dp_link_t *l, const uint8_t *msg, size_t len, rl_message_t *m)
{
	const dp_cert_ident_t *signer;
	dp_cert_reason_t why = DP_CERT_OK;
	const vp_id_t *ids;
	uint32_t nid;
	vp_id_t orig;

	ids = dp_link_peer_ids(l, &nid);
	if (rl_msg_decode(msg, len, m) || dp_cert_msg_verify(n->certs, m, &ids[0], &signer, &why) ||
	    dp_cert_originator(m, &ids[0], &orig) || dp_cert_topology_check(m, &orig, signer, &why)) {
		fprintf(stderr, "link_exchange: %s refused code %u: %s\n", n->name, m->contents.code,
		        dp_cert_reason_name(why));
		W.failures++;
		return false;
	}
	return true;
}

static rl_body_t answer_for(uint16_t code, uint8_t *scratch);

static void c_on_msg(lt_node_t *n, dp_link_t *l, const uint8_t *msg, size_t len)
{
	uint8_t out[8192], scratch[512];
	rl_message_t m;
	rl_dest_t back[8];
	size_t nback;
	rl_body_t ans;

	if (!dest_verify(n, l, msg, len, &m))
		return;
	W.verified_c++;
	if (!rl_code_is_request(m.contents.code))
		return;
	/* answer along the reversed via list */
	if (rl_dest_list_reversed(&m.hdr.via, back, 8, &nback))
		die("reverse");
	ans = answer_for(m.contents.code, scratch);
	{
		uint8_t sig[RL_MAX_SIG_LEN];
		rl_message_t a;
		vp_wr_t wr;
		memset(&a, 0, sizeof(a));
		a.hdr = m.hdr;
		a.hdr.ttl = RL_DEFAULT_TTL;
		a.hdr.via = (rl_dest_list_t){ 0 };
		a.hdr.dest = (rl_dest_list_t){ 0 };
		a.hdr.dest.items = back;
		a.hdr.dest.n_items = (uint32_t)nback;
		a.hdr.options = (rl_fwd_option_list_t){ 0 };
		a.contents.code = ans.code;
		a.contents.body_st = &ans;
		a.sec.certs.items = &W.idc.rlcert; /* A has never seen C's certificate */
		a.sec.certs.n_items = 1;
		vp_wr_init(&wr, out, sizeof(out));
		if (rl_msg_encode_signed(&wr, &a, W.idc.key, &W.idc.signer, sig, sizeof(sig)))
			die("sign answer");
		send_on(W.cb, W.c.port, out, vp_wr_len(&wr));
	}
}

static void a_on_msg(lt_node_t *n, dp_link_t *l, const uint8_t *msg, size_t len)
{
	rl_message_t m;
	/* the answer's originator is C: the first via entry B appended */
	if (dest_verify(n, l, msg, len, &m))
		W.verified_a++;
}

/* ---- bodies ------------------------------------------------------------- */

static const uint8_t RID[16] = { 0x3c, 0x2e, 0x1f, 0x07, 0x4d, 0x55, 0x66, 0x77,
                                 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xf0 };
static uint8_t vkey[20], vval[23], sdsig[RL_MAX_SIG_LEN];
static rl_stored_data_t sd;
static rl_store_kind_data_t skd;
static rl_ice_candidate_t cand;

static rl_body_t answer_for(uint16_t code, uint8_t *scratch)
{
	static vp_id_t next;
	static rl_store_kind_resp_t skr;
	static rl_fetch_kind_resp_t fkr;
	static rl_probe_info_t pi = { RL_PROBE_UPTIME, 42 };
	rl_body_t b;
	(void)scratch;
	memset(&b, 0, sizeof(b));
	b.code = rl_code_answer(code);
	switch (code) {
	case RL_ATTACH_REQ:
		b.u.attach.ufrag = (rl_bytes_t){ (const uint8_t *)"uf", 2 };
		b.u.attach.password = (rl_bytes_t){ (const uint8_t *)"pw", 2 };
		b.u.attach.role = (rl_bytes_t){ (const uint8_t *)"active", 6 };
		b.u.attach.candidates.items = &cand;
		b.u.attach.candidates.n_items = 1;
		break;
	case RL_APP_ATTACH_REQ:
		b.u.app_attach.ufrag = (rl_bytes_t){ (const uint8_t *)"uf", 2 };
		b.u.app_attach.password = (rl_bytes_t){ (const uint8_t *)"pw", 2 };
		b.u.app_attach.application = 5061;
		b.u.app_attach.role = (rl_bytes_t){ (const uint8_t *)"active", 6 };
		b.u.app_attach.candidates.items = &cand;
		b.u.app_attach.candidates.n_items = 1;
		break;
	case RL_PING_REQ:
		b.u.ping_ans.response_id = 0x0123456789abcdefull;
		b.u.ping_ans.time = 1700000000000ull;
		break;
	case RL_ROUTE_QUERY_REQ:
		next = pk_id(0xC1);
		b.u.route_query_ans.next_peer = next;
		break;
	case RL_PROBE_REQ:
		b.u.probe_ans.info.items = &pi;
		b.u.probe_ans.info.n_items = 1;
		break;
	case RL_STORE_REQ:
		skr.kind = RL_KIND_VIPR_REGISTRATION;
		skr.generation = 1;
		b.u.store_ans.responses.items = &skr;
		b.u.store_ans.responses.n_items = 1;
		break;
	case RL_FETCH_REQ:
		fkr.kind = RL_KIND_VIPR_REGISTRATION;
		fkr.generation = 1;
		fkr.values.items = &sd;
		fkr.values.n_items = 1;
		b.u.fetch_ans.responses.items = &fkr;
		b.u.fetch_ans.responses.n_items = 1;
		break;
	case RL_FIND_REQ:
	case RL_STAT_REQ:
		break; /* empty result lists */
	case RL_LEAVE_REQ:
		/* an Error for one request: the engine sends those too */
		b.code = RL_ERROR;
		b.u.error.code = RL_ERR_FORBIDDEN;
		b.u.error.info = (rl_bytes_t){ (const uint8_t *)"test", 4 };
		break;
	default:
		break; /* Join, Update: empty answers */
	}
	return b;
}

static size_t request(uint8_t *buf, size_t cap, uint16_t code, uint64_t txid)
{
	vp_id_t a = pk_id(0xA1), c = pk_id(0xC1);
	static uint8_t leave[64];
	static rl_specifier_t spec;
	static uint32_t kinds[1] = { RL_KIND_VIPR_REGISTRATION };
	static uint8_t reqd[1] = { RL_PROBE_UPTIME };
	static rl_dest_t rq_dest;
	rl_body_t b;
	rl_chord_leave_t cl;
	vp_wr_t wr;

	memset(&b, 0, sizeof(b));
	b.code = code;
	switch (code) {
	case RL_ATTACH_REQ:
		b.u.attach.ufrag = (rl_bytes_t){ (const uint8_t *)"uf", 2 };
		b.u.attach.password = (rl_bytes_t){ (const uint8_t *)"pw", 2 };
		b.u.attach.role = (rl_bytes_t){ (const uint8_t *)"passive", 7 };
		b.u.attach.candidates.items = &cand;
		b.u.attach.candidates.n_items = 1;
		b.u.attach.send_update = true;
		break;
	case RL_APP_ATTACH_REQ:
		b.u.app_attach.ufrag = (rl_bytes_t){ (const uint8_t *)"uf", 2 };
		b.u.app_attach.password = (rl_bytes_t){ (const uint8_t *)"pw", 2 };
		b.u.app_attach.application = 5061;
		b.u.app_attach.role = (rl_bytes_t){ (const uint8_t *)"passive", 7 };
		b.u.app_attach.candidates.items = &cand;
		b.u.app_attach.candidates.n_items = 1;
		break;
	case RL_JOIN_REQ:
		b.u.join_req.joining_peer = a;
		break;
	case RL_UPDATE_REQ:
		b.u.update.uptime = 10;
		b.u.update.type = RL_UPDATE_NEIGHBORS;
		b.u.update.predecessors.items = &c;
		b.u.update.predecessors.n_items = 1;
		b.u.update.successors.items = &c;
		b.u.update.successors.n_items = 1;
		break;
	case RL_LEAVE_REQ:
		memset(&cl, 0, sizeof(cl));
		cl.type = RL_LEAVE_FROM_PRED;
		cl.nodes.items = &c;
		cl.nodes.n_items = 1;
		vp_wr_init(&wr, leave, sizeof(leave));
		rl_chord_leave_encode(&wr, &cl);
		b.u.leave_req.leaving_peer = a;
		b.u.leave_req.overlay_data = (rl_bytes_t){ leave, (uint32_t)vp_wr_len(&wr) };
		break;
	case RL_PING_REQ:
		b.u.ping_req.padding = (rl_bytes_t){ (const uint8_t *)"padding", 7 };
		break;
	case RL_PROBE_REQ:
		b.u.probe_req.requested.items = reqd;
		b.u.probe_req.requested.n_items = 1;
		break;
	case RL_ROUTE_QUERY_REQ:
		rq_dest = rl_dest_resource(RID, 16);
		b.u.route_query_req.destination = rq_dest;
		break;
	case RL_STORE_REQ:
		b.u.store_req.resource = (rl_bytes_t){ RID, 16 };
		b.u.store_req.kind_data.items = &skd;
		b.u.store_req.kind_data.n_items = 1;
		break;
	case RL_FETCH_REQ:
	case RL_STAT_REQ:
		spec.kind = RL_KIND_VIPR_REGISTRATION;
		spec.model = RL_MODEL_DICTIONARY;
		b.u.fetch_req.resource = (rl_bytes_t){ RID, 16 };
		b.u.fetch_req.specifiers.items = &spec;
		b.u.fetch_req.specifiers.n_items = 1;
		break;
	case RL_FIND_REQ:
		b.u.find_req.resource = (rl_bytes_t){ RID, 16 };
		b.u.find_req.kinds.items = kinds;
		b.u.find_req.kinds.n_items = 1;
		break;
	default:
		die("request code");
	}
	return pk_sign_msg(buf, cap, &W.ida, &W.ida, NULL, 0, &c, &b, txid);
}

static bool done(void *arg)
{
	int *want = arg;
	return W.verified_a >= *want || W.failures;
}

static bool all_down(void *arg)
{
	(void)arg;
	return W.a.downs >= 1 && W.b.downs >= 2 && W.c.downs >= 1;
}

static bool links_up(void *arg)
{
	(void)arg;
	return W.a.ups >= 1 && W.b.ups >= 2 && W.c.ups >= 1;
}

int main(int argc, char **argv)
{
	static const uint16_t codes[] = { RL_ATTACH_REQ, RL_JOIN_REQ, RL_UPDATE_REQ, RL_PING_REQ, RL_PROBE_REQ,
	                                  RL_ROUTE_QUERY_REQ, RL_STORE_REQ, RL_FETCH_REQ, RL_STAT_REQ,
	                                  RL_FIND_REQ, RL_APP_ATTACH_REQ, RL_LEAVE_REQ };
	enum { N = sizeof(codes) / sizeof(codes[0]) };
	pk_ca_t ca;
	pk_opts_t o = { LT_OVERLAY, -60, 3600, 0, 0, 0 };
	vp_id_t a = pk_id(0xA1), bid = pk_id(0xB1), c = pk_id(0xC1);
	dp_link_conf_t conf;
	lt_node_t *all[3] = { &W.a, &W.b, &W.c };
	int want = N;
	uint8_t buf[8192];

	if (argc != 5)
		die("usage: link_exchange PORT_B PORT_C KEYLOG MANIFEST");
	vp_log_setup(VP_LOG_INFO, stderr);
	if (pk_ca_new(&ca, "overlay root") || pk_node_new(&W.ida, &ca, &a, 1, &o) ||
	    pk_node_new(&W.idb, &ca, &bid, 1, &o) || pk_node_new(&W.idc, &ca, &c, 1, &o))
		die("pki");
	dp_link_conf_default(&conf);
	snprintf(conf.keylog_file, sizeof(conf.keylog_file), "%s", argv[3]);
	lt_node_init(&W.a, "A", &ca, &W.ida, &conf, false);
	lt_node_init_port(&W.b, "B", &ca, &W.idb, &conf, (uint16_t)atoi(argv[1]));
	lt_node_init_port(&W.c, "C", &ca, &W.idc, &conf, (uint16_t)atoi(argv[2]));
	W.a.on_msg = a_on_msg;
	W.b.on_msg = b_on_msg;
	W.c.on_msg = c_on_msg;
	W.mf = fopen(argv[4], "w");
	if (!W.mf)
		die("manifest");
	fprintf(W.mf, "{\"ports\": [%u, %u], \"messages\": [", W.b.port, W.c.port);

	/* A value for Store and the Fetch answer: a ViPR entry signed by its claimant. */
	memcpy(vkey, a.b, 16);
	vkey[19] = 1;
	vval[0] = 1;
	memcpy(vval + 1, a.b, 16);
	vval[20] = 1;
	vval[21] = 3;
	sd.storage_time = vp_time_wall_ms();
	sd.lifetime = 86400;
	sd.model = RL_MODEL_DICTIONARY;
	sd.key = (rl_bytes_t){ vkey, 20 };
	sd.exists = true;
	sd.value = (rl_bytes_t){ vval, sizeof(vval) };
	if (rl_stored_data_sign(W.ida.key, RID, 16, RL_KIND_VIPR_REGISTRATION, &sd, &W.ida.signer, sdsig,
	                        sizeof(sdsig)))
		die("sign stored data");
	skd.kind = RL_KIND_VIPR_REGISTRATION;
	skd.values.items = &sd;
	skd.values.n_items = 1;
	{
		struct sockaddr_storage ss;
		socklen_t sl;
		char addr[32];
		snprintf(addr, sizeof(addr), "127.0.0.1:%u", W.c.port);
		dp_link_addr_parse(addr, &ss, &sl);
		dp_link_candidate(&conf, (struct sockaddr *)&ss, &cand);
	}

	W.ab = lt_connect(&W.a, &W.b, &bid);
	W.bc = lt_connect(&W.b, &W.c, &c);
	if (!lt_pump(all, 3, 10000, links_up, NULL))
		die("links did not come up");
	W.ba = dp_link_set_find(W.b.set, &a);
	W.cb = dp_link_set_find(W.c.set, &bid);
	if (!W.ba || !W.cb)
		die("links not bound to the expected Node-IDs");
	for (size_t i = 0; i < N; i++) {
		size_t len = request(buf, sizeof(buf), codes[i], 0x5100000000000000ull + i);
		send_on(W.ab, W.b.port, buf, len);
	}
	lt_pump(all, 3, 15000, done, &want);
	/* let the last ACKs cross, then close cleanly: close_notify both ways, no reset */
	lt_pump(all, 3, 300, NULL, NULL);
	dp_link_close(W.ab);
	dp_link_close(W.bc);
	if (!lt_pump(all, 3, 5000, all_down, NULL))
		die("links did not close");
	fprintf(W.mf, "\n]}\n");
	fclose(W.mf);
	fprintf(stderr, "link_exchange: requests verified at C %d/%d, answers verified at A %d/%d, refusals %d\n",
	        W.verified_c, N, W.verified_a, N, W.failures);
	lt_node_fini(&W.a);
	lt_node_fini(&W.b);
	lt_node_fini(&W.c);
	pk_node_free(&W.ida);
	pk_node_free(&W.idb);
	pk_node_free(&W.idc);
	pk_ca_free(&ca);
	return W.verified_c == N && W.verified_a == N && W.failures == 0 ? 0 : 1;
}
