/*
 * tests/dataplane/interop_gen.c - writes RELOAD messages built and signed by
 * the codec into a pcap (one DATA frame per TCP segment on 127.0.0.1), and a
 * JSON manifest of what Wireshark's dissector must find in each frame.
 * tshark_interop.py runs tshark over the pcap and checks the manifest.
 *
 *   interop_gen OUT.pcap MANIFEST.json PORT [RAWDIR]
 *
 * RAWDIR (optional) receives each bare message as a file, for fuzz seeds.
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/reload.h"
#include "rl_testkit.h"

#define CLIENT_PORT 40000

typedef struct gen {
	FILE *pcap;
	FILE *mf;
	uint16_t port;
	const char *rawdir;
	unsigned frame;    /* pcap frame number of the last packet (1-based) */
	uint32_t seq[2];   /* TCP sequence per direction */
	uint32_t fseq[2];  /* RELOAD framing sequence per direction */
	bool first_check;
	uint32_t overlay;
	tk_ident_t ec, rsa;
} gen_t;

static const vp_id_t CLIENT = { { 0x0c, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
                                  0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0x01 } };
static const vp_id_t SERVER = { { 0x5e, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
                                  0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0x02 } };
static const vp_id_t HOP = { { 0x7a, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
                               0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0x03 } };

static void die(const char *what)
{
	fprintf(stderr, "interop_gen: %s\n", what);
	exit(1);
}

static uint16_t csum(const uint8_t *p, size_t n, uint32_t sum)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		sum += (uint32_t)p[i] << 8 | p[i + 1];
	if (n & 1)
		sum += (uint32_t)p[n - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

static void le32(FILE *f, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };
	fwrite(b, 1, 4, f);
}

/* One Ethernet/IPv4/TCP packet carrying `payload`; dir 0 = client -> server. */
static void write_segment(gen_t *g, int dir, const uint8_t *payload, size_t n)
{
	static uint8_t pkt[14 + 20 + 20 + RL_FRAME_DATA_HDR_LEN + RL_MAX_MESSAGE_SIZE];
	uint8_t *ip = pkt + 14, *tcp = ip + 20, pseudo[12];
	size_t tcplen = 20 + n, total = 14 + 20 + tcplen;
	uint16_t sport = dir ? g->port : CLIENT_PORT, dport = dir ? CLIENT_PORT : g->port;
	uint32_t sum = 0;

	if (n > RL_FRAME_DATA_HDR_LEN + RL_MAX_MESSAGE_SIZE)
		die("segment too large");
	memset(pkt, 0, 54);
	pkt[12] = 0x08; /* IPv4 */
	ip[0] = 0x45;
	put16(ip + 2, (uint16_t)(20 + tcplen));
	put16(ip + 4, (uint16_t)g->frame);
	put16(ip + 6, 0x4000);
	ip[8] = 64;
	ip[9] = 6;
	ip[12] = 127, ip[15] = 1;
	ip[16] = 127, ip[19] = 1;
	put16(ip + 10, csum(ip, 20, 0));
	put16(tcp, sport);
	put16(tcp + 2, dport);
	put32(tcp + 4, g->seq[dir]);
	put32(tcp + 8, g->seq[!dir]);
	tcp[12] = 5 << 4;
	tcp[13] = 0x18; /* PSH ACK */
	put16(tcp + 14, 65535);
	memcpy(tcp + 20, payload, n);
	memcpy(pseudo, ip + 12, 8);
	pseudo[8] = 0;
	pseudo[9] = 6;
	put16(pseudo + 10, (uint16_t)tcplen);
	for (int i = 0; i < 12; i += 2)
		sum += (uint32_t)pseudo[i] << 8 | pseudo[i + 1];
	put16(tcp + 16, csum(tcp, tcplen, sum));
	g->seq[dir] += (uint32_t)n;
	g->frame++;
	le32(g->pcap, 1700000000u + g->frame);
	le32(g->pcap, 0);
	le32(g->pcap, (uint32_t)total);
	le32(g->pcap, (uint32_t)total);
	fwrite(pkt, 1, total, g->pcap);
}

/* ---- manifest ---------------------------------------------------------- */

static void mf_begin(gen_t *g, const char *name)
{
	fprintf(g->mf, "%s\n  {\"frame\": %u, \"message\": \"%s\", \"checks\": [", g->frame > 1 ? "," : "",
	        g->frame, name);
	g->first_check = true;
}

/* op "eq": every occurrence of field equals value; "has": one occurrence does. */
static void mf_check(gen_t *g, const char *field, const char *op, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void mf_check(gen_t *g, const char *field, const char *op, const char *fmt, ...)
{
	va_list ap;
	fprintf(g->mf, "%s\n    [\"%s\", \"%s\", \"", g->first_check ? "" : ",", field, op);
	va_start(ap, fmt);
	vfprintf(g->mf, fmt, ap);
	va_end(ap);
	fputs("\"]", g->mf);
	g->first_check = false;
}

static void mf_hex(gen_t *g, const char *field, const char *op, const uint8_t *p, size_t n)
{
	char hex[2 * 64 + 1];
	if (n > 64)
		die("hex check too long");
	for (size_t i = 0; i < n; i++)
		snprintf(hex + 2 * i, 3, "%02x", p[i]);
	hex[2 * n] = 0;
	mf_check(g, field, op, "%s", hex);
}

static void mf_end(gen_t *g)
{
	fputs("\n  ]}", g->mf);
}

/* ---- messages ---------------------------------------------------------- */

/*
 * Sign, frame and write one message; record the checks every message shares.
 * dir 0 = request (client -> server), 1 = answer.
 */
static void emit(gen_t *g, int dir, rl_message_t *m, const char *name, tk_ident_t *id)
{
	static uint8_t msg[RL_MAX_MESSAGE_SIZE], frame[RL_FRAME_DATA_HDR_LEN + RL_MAX_MESSAGE_SIZE];
	uint8_t sig[RL_MAX_SIG_LEN];
	vp_wr_t wr;
	size_t n;
	rl_message_t d;
	rl_body_t b;

	m->hdr.overlay = g->overlay;
	m->hdr.config_seq = 1;
	m->hdr.version = RL_VERSION;
	if (!m->hdr.ttl)
		m->hdr.ttl = RL_DEFAULT_TTL;
	m->hdr.fragment = RL_FRAG_UNFRAGMENTED;
	m->sec.certs.items = &id->cert;
	m->sec.certs.n_items = 1;
	vp_wr_init(&wr, msg, sizeof(msg));
	if (rl_msg_encode_signed(&wr, m, id->key, &id->signer, sig, sizeof(sig)))
		die(vp_strerror(wr.err));
	n = vp_wr_len(&wr);
	/* our own decoder must accept what we send, and the signature must verify */
	if (rl_msg_decode(msg, n, &d) ||
	    rl_body_decode(d.contents.code, d.contents.body.p, d.contents.body.len, rl_model_builtin, NULL, &b) ||
	    rl_msg_verify_embedded(&d))
		die("generated message does not decode or verify");
	if (g->rawdir) {
		char path[512];
		FILE *f;
		snprintf(path, sizeof(path), "%s/%s", g->rawdir, name);
		f = fopen(path, "wb");
		if (!f || fwrite(msg, 1, n, f) != n)
			die("cannot write raw message");
		fclose(f);
	}
	vp_wr_init(&wr, frame, sizeof(frame));
	if (rl_frame_encode_data(&wr, ++g->fseq[dir], msg, n))
		die("framing");
	write_segment(g, dir, frame, vp_wr_len(&wr));

	mf_begin(g, name);
	mf_check(g, "reload_framing.type", "eq", "%u", RL_FRAME_DATA);
	mf_check(g, "reload_framing.sequence", "eq", "%u", g->fseq[dir]);
	mf_check(g, "reload_framing.message.length", "eq", "%zu", n);
	mf_check(g, "reload.forwarding.token", "eq", "0x%08x", RL_TOKEN);
	mf_check(g, "reload.forwarding.overlay", "eq", "0x%08x", g->overlay);
	mf_check(g, "reload.forwarding.configuration_sequence", "eq", "1");
	mf_check(g, "reload.forwarding.version", "eq", "0x%02x", RL_VERSION);
	mf_check(g, "reload.forwarding.ttl", "eq", "%u", m->hdr.ttl);
	mf_check(g, "reload.forwarding.fragment", "eq", "0x%08x", RL_FRAG_UNFRAGMENTED);
	mf_check(g, "reload.forwarding.trans_id", "eq", "0x%016llx", (unsigned long long)m->hdr.txid);
	mf_check(g, "reload.forwarding.max_response_length", "eq", "%u", m->hdr.max_response_length);
	mf_check(g, "reload.message.code", "eq", "%u", m->contents.code);
	mf_check(g, "reload.certificate.type", "eq", "%u", RL_CERT_X509);
	mf_check(g, "reload.hash_algorithm", "has", "%u", RL_HASH_SHA256);
	mf_check(g, "reload.signature_algorithm", "has", "%u", m->sec.sig.sig_alg);
	mf_check(g, "reload.signature.identity.type", "has", "%u", RL_SIGNER_CERT_HASH);
	mf_check(g, "reload.signeridentityvalue.hash_alg", "has", "%u", RL_HASH_SHA256);
}

static void route(rl_message_t *m, uint64_t txid, const rl_dest_t *via, uint32_t nvia,
                  const rl_dest_t *dest, uint32_t ndest)
{
	m->hdr.txid = txid;
	m->hdr.via.items = via;
	m->hdr.via.n_items = nvia;
	m->hdr.dest.items = dest;
	m->hdr.dest.n_items = ndest;
}

/* The ViPR registration value (docs/protocol.md §2): version 1, contact Node-ID, vservice 0, both PVP methods. */
static size_t vipr_value(uint8_t *out)
{
	out[0] = 1;
	memcpy(out + 1, CLIENT.b, 16);
	memset(out + 17, 0, 4);
	out[21] = 3;
	out[22] = 0; /* reserved<0..255>: empty */
	return 23;
}

int main(int argc, char **argv)
{
	static const uint8_t number[] = "+14085555432";
	gen_t g;
	vp_id_t rid;
	rl_dest_t d_server = rl_dest_node(&SERVER), d_client = rl_dest_node(&CLIENT),
	          d_hop = rl_dest_node(&HOP), d_res, back[2];
	rl_message_t m;
	rl_body_t b;
	uint8_t value[32], sdsig[RL_MAX_SIG_LEN];
	rl_stored_data_t sd;
	rl_store_kind_data_t kd;
	size_t vlen;

	if (argc < 4)
		die("usage: interop_gen OUT.pcap MANIFEST.json PORT [RAWDIR]");
	memset(&g, 0, sizeof(g));
	g.port = (uint16_t)atoi(argv[3]);
	g.rawdir = argc > 4 ? argv[4] : NULL;
	g.seq[0] = 1000;
	g.seq[1] = 5000;
	g.overlay = rl_overlay_id("vipr.example", 12);
	if (tk_ident_new(&g.ec, 0) || tk_ident_new(&g.rsa, 1))
		die("cannot make test identities");
	g.pcap = fopen(argv[1], "wb");
	g.mf = fopen(argv[2], "w");
	if (!g.pcap || !g.mf)
		die("cannot open outputs");
	le32(g.pcap, 0xa1b2c3d4);
	fputc(2, g.pcap), fputc(0, g.pcap), fputc(4, g.pcap), fputc(0, g.pcap);
	le32(g.pcap, 0);
	le32(g.pcap, 0);
	le32(g.pcap, 65535);
	le32(g.pcap, 1); /* Ethernet */
	fprintf(g.mf, "{\"port\": %u, \"frames\": [", g.port);
	g.frame = 0;

	rid = vp_id_from_name(number, sizeof(number) - 1);
	d_res = rl_dest_resource(rid.b, 16);

	/* 1-2: Ping through one hop */
	memset(&m, 0, sizeof(m));
	memset(&b, 0, sizeof(b));
	route(&m, 0x1111000000000001ull, &d_hop, 1, &d_server, 1);
	m.hdr.ttl = 99;
	b.code = m.contents.code = RL_PING_REQ;
	b.u.ping_req.padding = (rl_bytes_t){ (const uint8_t *)"\0\0\0\0\0\0\0\0", 8 };
	m.contents.body_st = &b;
	emit(&g, 0, &m, "ping_req", &g.ec);
	mf_hex(&g, "reload.destination.data.nodeid", "has", SERVER.b, 16);
	mf_hex(&g, "reload.destination.data.nodeid", "has", HOP.b, 16);
	mf_check(&g, "reload.forwarding.via_list.length", "eq", "18");
	mf_end(&g);

	memset(&m, 0, sizeof(m));
	memset(&b, 0, sizeof(b));
	back[0] = d_hop;
	back[1] = d_client;
	route(&m, 0x1111000000000001ull, NULL, 0, back, 2);
	b.code = m.contents.code = RL_PING_ANS;
	b.u.ping_ans.response_id = 0x0123456789abcdefull;
	b.u.ping_ans.time = 1700000000123ull;
	m.contents.body_st = &b;
	emit(&g, 1, &m, "ping_ans", &g.rsa);
	mf_check(&g, "reload.ping.response_id", "eq", "%llu", 0x0123456789abcdefull);
	mf_check(&g, "reload.forwarding.destination_list.length", "eq", "36");
	mf_end(&g);

	/* 3-4: Store of a ViPR registration (dictionary, key = Node-ID), signed StoredData */
	vlen = vipr_value(value);
	memset(&sd, 0, sizeof(sd));
	sd.storage_time = 1700000000000ull;
	sd.lifetime = 86400;
	sd.model = RL_MODEL_DICTIONARY;
	sd.key = (rl_bytes_t){ CLIENT.b, 16 };
	sd.exists = true;
	sd.value = (rl_bytes_t){ value, (uint32_t)vlen };
	if (rl_stored_data_sign(g.ec.key, rid.b, 16, RL_KIND_VIPR_REGISTRATION, &sd, &g.ec.signer, sdsig,
	                        sizeof(sdsig)))
		die("cannot sign StoredData");
	memset(&kd, 0, sizeof(kd));
	kd.kind = RL_KIND_VIPR_REGISTRATION;
	kd.generation = 0;
	kd.values.items = &sd;
	kd.values.n_items = 1;
	memset(&m, 0, sizeof(m));
	memset(&b, 0, sizeof(b));
	route(&m, 0x2222000000000002ull, NULL, 0, &d_res, 1);
	b.code = m.contents.code = RL_STORE_REQ;
	b.u.store_req.resource = (rl_bytes_t){ rid.b, 16 };
	b.u.store_req.replica_number = 0;
	b.u.store_req.kind_data.items = &kd;
	b.u.store_req.kind_data.n_items = 1;
	m.contents.body_st = &b;
	emit(&g, 0, &m, "store_req", &g.ec);
	mf_check(&g, "reload.forwarding.destination.type", "eq", "0x%02x", RL_DEST_RESOURCE);
	mf_check(&g, "reload.store.replica_number", "eq", "0");
	mf_check(&g, "reload.kinddata.kind", "eq", "%u", RL_KIND_VIPR_REGISTRATION);
	mf_check(&g, "reload.generation_counter", "eq", "0");
	mf_check(&g, "reload.storeddata.lifetime", "eq", "86400");
	mf_check(&g, "reload.datavalue.exists", "eq", "1");
	mf_hex(&g, "reload.opaque.data", "has", CLIENT.b, 16); /* the dictionary key */
	mf_hex(&g, "reload.opaque.data", "has", value, vlen);  /* the value */
	mf_hex(&g, "reload.opaque.data", "has", rid.b, 16);    /* the resource */
	mf_end(&g);

	memset(&m, 0, sizeof(m));
	memset(&b, 0, sizeof(b));
	{
		static rl_store_kind_resp_t kr;
		static vp_id_t reps[2];
		reps[0] = SERVER;
		reps[1] = HOP;
		kr.kind = RL_KIND_VIPR_REGISTRATION;
		kr.generation = 1;
		kr.replicas.items = reps;
		kr.replicas.n_items = 2;
		b.u.store_ans.responses.items = &kr;
		b.u.store_ans.responses.n_items = 1;
	}
	route(&m, 0x2222000000000002ull, NULL, 0, &d_client, 1);
	b.code = m.contents.code = RL_STORE_ANS;
	m.contents.body_st = &b;
	emit(&g, 1, &m, "store_ans", &g.rsa);
	mf_check(&g, "reload.generation_counter", "eq", "1");
	mf_hex(&g, "reload.nodeid", "has", SERVER.b, 16);
	mf_hex(&g, "reload.nodeid", "has", HOP.b, 16);
	mf_end(&g);

	/* 5-6: Fetch all claims on the number (dictionary, empty key list), and its answer */
	memset(&m, 0, sizeof(m));
	memset(&b, 0, sizeof(b));
	{
		static rl_specifier_t sp;
		sp.kind = RL_KIND_VIPR_REGISTRATION;
		sp.generation = 0;
		sp.model = RL_MODEL_DICTIONARY;
		b.u.fetch_req.specifiers.items = &sp;
		b.u.fetch_req.specifiers.n_items = 1;
	}
	route(&m, 0x3333000000000003ull, NULL, 0, &d_res, 1);
	b.code = m.contents.code = RL_FETCH_REQ;
	b.u.fetch_req.resource = (rl_bytes_t){ rid.b, 16 };
	m.contents.body_st = &b;
	emit(&g, 0, &m, "fetch_req", &g.ec);
	mf_check(&g, "reload.kinddata.kind", "eq", "%u", RL_KIND_VIPR_REGISTRATION);
	mf_hex(&g, "reload.opaque.data", "has", rid.b, 16);
	mf_end(&g);

	memset(&m, 0, sizeof(m));
	memset(&b, 0, sizeof(b));
	{
		static rl_fetch_kind_resp_t fr;
		fr.kind = RL_KIND_VIPR_REGISTRATION;
		fr.generation = 1;
		fr.values.items = &sd;
		fr.values.n_items = 1;
		b.u.fetch_ans.responses.items = &fr;
		b.u.fetch_ans.responses.n_items = 1;
	}
	route(&m, 0x3333000000000003ull, NULL, 0, &d_client, 1);
	b.code = m.contents.code = RL_FETCH_ANS;
	m.contents.body_st = &b;
	emit(&g, 1, &m, "fetch_ans", &g.rsa);
	mf_check(&g, "reload.kinddata.kind", "eq", "%u", RL_KIND_VIPR_REGISTRATION);
	mf_check(&g, "reload.generation_counter", "eq", "1");
	mf_check(&g, "reload.storeddata.lifetime", "eq", "86400");
	mf_check(&g, "reload.datavalue.exists", "eq", "1");
	mf_hex(&g, "reload.opaque.data", "has", CLIENT.b, 16);
	mf_hex(&g, "reload.opaque.data", "has", value, vlen);
	mf_end(&g);

	/* 7: Fetch of one claimant's entry (non-empty key list): the known dissector quirk */
	memset(&m, 0, sizeof(m));
	memset(&b, 0, sizeof(b));
	{
		static rl_specifier_t sp;
		static rl_bytes_t key;
		key = (rl_bytes_t){ CLIENT.b, 16 };
		sp.kind = RL_KIND_VIPR_REGISTRATION;
		sp.model = RL_MODEL_DICTIONARY;
		sp.keys.items = &key;
		sp.keys.n_items = 1;
		b.u.fetch_req.specifiers.items = &sp;
		b.u.fetch_req.specifiers.n_items = 1;
	}
	route(&m, 0x3333000000000004ull, NULL, 0, &d_res, 1);
	b.code = m.contents.code = RL_FETCH_REQ;
	b.u.fetch_req.resource = (rl_bytes_t){ rid.b, 16 };
	m.contents.body_st = &b;
	emit(&g, 0, &m, "fetch_req_one_key", &g.ec);
	mf_check(&g, "reload.kinddata.kind", "eq", "%u", RL_KIND_VIPR_REGISTRATION);
	mf_end(&g);

	/* 8-9: Chord Update (full) and its empty answer */
	memset(&m, 0, sizeof(m));
	memset(&b, 0, sizeof(b));
	{
		static vp_id_t pred[1], succ[2], fing[3];
		pred[0] = HOP;
		succ[0] = CLIENT;
		succ[1] = HOP;
		fing[0] = CLIENT;
		fing[1] = HOP;
		fing[2] = SERVER;
		b.u.update.uptime = 3600;
		b.u.update.type = RL_UPDATE_FULL;
		b.u.update.predecessors = (rl_node_list_t){ NULL, 0, 0, pred, 1 };
		b.u.update.successors = (rl_node_list_t){ NULL, 0, 0, succ, 2 };
		b.u.update.fingers = (rl_node_list_t){ NULL, 0, 0, fing, 3 };
	}
	route(&m, 0x4444000000000005ull, NULL, 0, &d_server, 1);
	b.code = m.contents.code = RL_UPDATE_REQ;
	m.contents.body_st = &b;
	emit(&g, 0, &m, "update_req", &g.ec);
	mf_check(&g, "reload.uptime", "eq", "3600");
	mf_check(&g, "reload.chordupdate.type", "eq", "%u", RL_UPDATE_FULL);
	mf_hex(&g, "reload.nodeid", "has", CLIENT.b, 16);
	mf_hex(&g, "reload.nodeid", "has", HOP.b, 16);
	mf_hex(&g, "reload.nodeid", "has", SERVER.b, 16);
	mf_end(&g);

	memset(&m, 0, sizeof(m));
	memset(&b, 0, sizeof(b));
	route(&m, 0x4444000000000005ull, NULL, 0, &d_client, 1);
	b.code = m.contents.code = RL_UPDATE_ANS;
	m.contents.body_st = &b;
	emit(&g, 1, &m, "update_ans", &g.rsa);
	mf_end(&g);

	/* 10-11: Join and its answer */
	memset(&m, 0, sizeof(m));
	memset(&b, 0, sizeof(b));
	route(&m, 0x5555000000000006ull, NULL, 0, &d_server, 1);
	b.code = m.contents.code = RL_JOIN_REQ;
	b.u.join_req.joining_peer = CLIENT;
	m.contents.body_st = &b;
	emit(&g, 0, &m, "join_req", &g.ec);
	mf_hex(&g, "reload.joinreq.joining_peer_id", "eq", CLIENT.b, 16);
	mf_end(&g);

	memset(&m, 0, sizeof(m));
	memset(&b, 0, sizeof(b));
	route(&m, 0x5555000000000006ull, NULL, 0, &d_client, 1);
	b.code = m.contents.code = RL_JOIN_ANS;
	m.contents.body_st = &b;
	emit(&g, 1, &m, "join_ans", &g.rsa);
	mf_end(&g);

	/* 12-13: Attach (TLS over TCP, one host candidate) and its answer */
	{
		static rl_ice_candidate_t c;
		memset(&c, 0, sizeof(c));
		c.addr.type = RL_ADDR_IPV4;
		c.addr.addr[0] = 127;
		c.addr.addr[3] = 1;
		c.addr.port = 6084;
		c.overlay_link = RL_LINK_TLS_TCP_FH_NO_ICE;
		c.foundation = (rl_bytes_t){ (const uint8_t *)"1", 1 };
		c.priority = 0x7e0000ff;
		c.cand_type = RL_CAND_HOST;

		memset(&m, 0, sizeof(m));
		memset(&b, 0, sizeof(b));
		route(&m, 0x6666000000000007ull, NULL, 0, &d_server, 1);
		b.code = m.contents.code = RL_ATTACH_REQ;
		b.u.attach.ufrag = (rl_bytes_t){ (const uint8_t *)"uf01", 4 };
		b.u.attach.password = (rl_bytes_t){ (const uint8_t *)"secretpw", 8 };
		b.u.attach.role = (rl_bytes_t){ (const uint8_t *)"passive", 7 };
		b.u.attach.candidates.items = &c;
		b.u.attach.candidates.n_items = 1;
		b.u.attach.send_update = true;
		m.contents.body_st = &b;
		emit(&g, 0, &m, "attach_req", &g.ec);
		mf_check(&g, "reload.opaque.string", "has", "uf01");
		mf_check(&g, "reload.opaque.string", "has", "secretpw");
		mf_check(&g, "reload.opaque.string", "has", "passive");
		mf_check(&g, "reload.ipv4addr", "eq", "127.0.0.1");
		mf_check(&g, "reload.port", "eq", "6084");
		mf_check(&g, "reload.overlaylink.type", "eq", "%u", RL_LINK_TLS_TCP_FH_NO_ICE);
		mf_check(&g, "reload.icecandidate.type", "eq", "%u", RL_CAND_HOST);
		mf_check(&g, "reload.sendupdate", "eq", "1");
		mf_end(&g);

		memset(&m, 0, sizeof(m));
		memset(&b, 0, sizeof(b));
		route(&m, 0x6666000000000007ull, NULL, 0, &d_client, 1);
		b.code = m.contents.code = RL_ATTACH_ANS;
		b.u.attach.ufrag = (rl_bytes_t){ (const uint8_t *)"uf02", 4 };
		b.u.attach.password = (rl_bytes_t){ (const uint8_t *)"otherpw", 7 };
		b.u.attach.role = (rl_bytes_t){ (const uint8_t *)"active", 6 };
		b.u.attach.candidates.items = &c;
		b.u.attach.candidates.n_items = 1;
		b.u.attach.send_update = false;
		m.contents.body_st = &b;
		emit(&g, 1, &m, "attach_ans", &g.rsa);
		mf_check(&g, "reload.opaque.string", "has", "active");
		mf_check(&g, "reload.sendupdate", "eq", "0");
		mf_end(&g);

		/* 14-15: AppAttach for the PVP application, and its answer */
		memset(&m, 0, sizeof(m));
		memset(&b, 0, sizeof(b));
		route(&m, 0x7777000000000008ull, NULL, 0, &d_server, 1);
		b.code = m.contents.code = RL_APP_ATTACH_REQ;
		b.u.app_attach.ufrag = (rl_bytes_t){ (const uint8_t *)"uf03", 4 };
		b.u.app_attach.password = (rl_bytes_t){ (const uint8_t *)"apppw", 5 };
		b.u.app_attach.application = 0xf101;
		b.u.app_attach.role = (rl_bytes_t){ (const uint8_t *)"passive", 7 };
		b.u.app_attach.candidates.items = &c;
		b.u.app_attach.candidates.n_items = 1;
		m.contents.body_st = &b;
		emit(&g, 0, &m, "app_attach_req", &g.ec);
		mf_check(&g, "reload.application", "eq", "%u", 0xf101);
		mf_check(&g, "reload.opaque.string", "has", "uf03");
		mf_check(&g, "reload.ipv4addr", "eq", "127.0.0.1");
		mf_end(&g);

		memset(&m, 0, sizeof(m));
		memset(&b, 0, sizeof(b));
		route(&m, 0x7777000000000008ull, NULL, 0, &d_client, 1);
		b.code = m.contents.code = RL_APP_ATTACH_ANS;
		b.u.app_attach.ufrag = (rl_bytes_t){ (const uint8_t *)"uf04", 4 };
		b.u.app_attach.password = (rl_bytes_t){ (const uint8_t *)"apppw2", 6 };
		b.u.app_attach.application = 0xf101;
		b.u.app_attach.role = (rl_bytes_t){ (const uint8_t *)"active", 6 };
		b.u.app_attach.candidates.items = &c;
		b.u.app_attach.candidates.n_items = 1;
		m.contents.body_st = &b;
		emit(&g, 1, &m, "app_attach_ans", &g.rsa);
		mf_check(&g, "reload.application", "eq", "%u", 0xf101);
		mf_check(&g, "reload.opaque.string", "has", "active");
		mf_end(&g);
	}

	/* 16: an Error answer (Forbidden, with a reason) */
	memset(&m, 0, sizeof(m));
	memset(&b, 0, sizeof(b));
	route(&m, 0x8888000000000009ull, NULL, 0, &d_client, 1);
	b.code = m.contents.code = RL_ERROR;
	b.u.error.code = RL_ERR_FORBIDDEN;
	b.u.error.info = (rl_bytes_t){ (const uint8_t *)"key is not the signer's Node-ID", 31 };
	m.contents.body_st = &b;
	emit(&g, 1, &m, "error", &g.rsa);
	mf_check(&g, "reload.error_response.code", "eq", "%u", RL_ERR_FORBIDDEN);
	mf_check(&g, "reload.opaque.string", "has", "key is not the signer's Node-ID");
	mf_end(&g);

	/* 17-: the other methods, beyond the set the issue names */
	memset(&m, 0, sizeof(m));
	memset(&b, 0, sizeof(b));
	{
		static const uint8_t want[3] = { RL_PROBE_RESPONSIBLE_SET, RL_PROBE_NUM_RESOURCES, RL_PROBE_UPTIME };
		b.u.probe_req.requested.items = want;
		b.u.probe_req.requested.n_items = 3;
	}
	route(&m, 0x9999000000000010ull, NULL, 0, &d_server, 1);
	b.code = m.contents.code = RL_PROBE_REQ;
	m.contents.body_st = &b;
	emit(&g, 0, &m, "probe_req", &g.ec);
	mf_end(&g);

	memset(&m, 0, sizeof(m));
	memset(&b, 0, sizeof(b));
	{
		static rl_probe_info_t pi[3] = { { RL_PROBE_RESPONSIBLE_SET, 125000000 },
		                                 { RL_PROBE_NUM_RESOURCES, 42 }, { RL_PROBE_UPTIME, 3600 } };
		b.u.probe_ans.info.items = pi;
		b.u.probe_ans.info.n_items = 3;
	}
	route(&m, 0x9999000000000010ull, NULL, 0, &d_client, 1);
	b.code = m.contents.code = RL_PROBE_ANS;
	m.contents.body_st = &b;
	emit(&g, 1, &m, "probe_ans", &g.rsa);
	mf_check(&g, "reload.responsible_set", "eq", "0x%08x", 125000000u);
	mf_check(&g, "reload.num_resources", "eq", "42");
	mf_check(&g, "reload.uptime", "eq", "3600");
	mf_end(&g);

	memset(&m, 0, sizeof(m));
	memset(&b, 0, sizeof(b));
	{
		static const uint32_t kinds[1] = { RL_KIND_VIPR_REGISTRATION };
		b.u.find_req.kinds.items = kinds;
		b.u.find_req.kinds.n_items = 1;
	}
	route(&m, 0x9999000000000011ull, NULL, 0, &d_res, 1);
	b.code = m.contents.code = RL_FIND_REQ;
	b.u.find_req.resource = (rl_bytes_t){ rid.b, 16 };
	m.contents.body_st = &b;
	emit(&g, 0, &m, "find_req", &g.ec);
	mf_check(&g, "reload.kindid", "eq", "%u", RL_KIND_VIPR_REGISTRATION);
	mf_end(&g);

	memset(&m, 0, sizeof(m));
	memset(&b, 0, sizeof(b));
	{
		static rl_find_result_t fr;
		fr.kind = RL_KIND_VIPR_REGISTRATION;
		fr.closest = (rl_bytes_t){ rid.b, 16 };
		b.u.find_ans.results.items = &fr;
		b.u.find_ans.results.n_items = 1;
	}
	route(&m, 0x9999000000000011ull, NULL, 0, &d_client, 1);
	b.code = m.contents.code = RL_FIND_ANS;
	m.contents.body_st = &b;
	emit(&g, 1, &m, "find_ans", &g.rsa);
	mf_check(&g, "reload.kinddata.kind", "eq", "%u", RL_KIND_VIPR_REGISTRATION);
	mf_end(&g);

	memset(&m, 0, sizeof(m));
	memset(&b, 0, sizeof(b));
	{
		static rl_specifier_t sp;
		sp.kind = RL_KIND_VIPR_REGISTRATION;
		sp.model = RL_MODEL_DICTIONARY;
		b.u.fetch_req.specifiers.items = &sp;
		b.u.fetch_req.specifiers.n_items = 1;
	}
	route(&m, 0x9999000000000012ull, NULL, 0, &d_res, 1);
	b.code = m.contents.code = RL_STAT_REQ;
	b.u.fetch_req.resource = (rl_bytes_t){ rid.b, 16 };
	m.contents.body_st = &b;
	emit(&g, 0, &m, "stat_req", &g.ec);
	mf_check(&g, "reload.kinddata.kind", "eq", "%u", RL_KIND_VIPR_REGISTRATION);
	mf_end(&g);

	memset(&m, 0, sizeof(m));
	memset(&b, 0, sizeof(b));
	{
		static rl_stat_kind_resp_t sr;
		static rl_stored_meta_t md;
		static const uint8_t h4[4] = { 0xa1, 0xb2, 0xc3, 0xd4 };
		md.storage_time = 1700000000000ull;
		md.lifetime = 86400;
		md.model = RL_MODEL_DICTIONARY;
		md.key = (rl_bytes_t){ CLIENT.b, 16 };
		md.exists = true;
		md.value_length = 23;
		md.hash_alg = RL_HASH_SHA256;
		md.hash = (rl_bytes_t){ h4, 4 };
		sr.kind = RL_KIND_VIPR_REGISTRATION;
		sr.generation = 1;
		sr.values.items = &md;
		sr.values.n_items = 1;
		b.u.stat_ans.responses.items = &sr;
		b.u.stat_ans.responses.n_items = 1;
	}
	route(&m, 0x9999000000000012ull, NULL, 0, &d_client, 1);
	b.code = m.contents.code = RL_STAT_ANS;
	m.contents.body_st = &b;
	emit(&g, 1, &m, "stat_ans", &g.rsa);
	mf_check(&g, "reload.metadata.value_length", "eq", "23");
	mf_end(&g);

	memset(&m, 0, sizeof(m));
	memset(&b, 0, sizeof(b));
	{
		static uint8_t leave[64];
		static vp_id_t succ[2];
		rl_chord_leave_t l = { RL_LEAVE_FROM_SUCC, { NULL, 0, 0, succ, 2 } };
		vp_wr_t lw;
		succ[0] = SERVER;
		succ[1] = HOP;
		vp_wr_init(&lw, leave, sizeof(leave));
		if (rl_chord_leave_encode(&lw, &l))
			die("leave data");
		b.u.leave_req.leaving_peer = CLIENT;
		b.u.leave_req.overlay_data = (rl_bytes_t){ leave, (uint32_t)vp_wr_len(&lw) };
	}
	route(&m, 0x9999000000000013ull, NULL, 0, &d_server, 1);
	b.code = m.contents.code = RL_LEAVE_REQ;
	m.contents.body_st = &b;
	emit(&g, 0, &m, "leave_req", &g.ec);
	mf_hex(&g, "reload.leavereq.leaving_peer_id", "eq", CLIENT.b, 16);
	mf_check(&g, "reload.chordleavedata.type", "eq", "%u", RL_LEAVE_FROM_SUCC);
	mf_end(&g);

	memset(&m, 0, sizeof(m));
	memset(&b, 0, sizeof(b));
	route(&m, 0x9999000000000014ull, NULL, 0, &d_server, 1);
	b.code = m.contents.code = RL_ROUTE_QUERY_REQ;
	b.u.route_query_req.send_update = false;
	b.u.route_query_req.destination = d_res;
	m.contents.body_st = &b;
	emit(&g, 0, &m, "route_query_req", &g.ec);
	mf_check(&g, "reload.sendupdate", "eq", "0");
	mf_end(&g);

	memset(&m, 0, sizeof(m));
	memset(&b, 0, sizeof(b));
	route(&m, 0x9999000000000014ull, NULL, 0, &d_client, 1);
	b.code = m.contents.code = RL_ROUTE_QUERY_ANS;
	b.u.route_query_ans.next_peer = HOP;
	m.contents.body_st = &b;
	emit(&g, 1, &m, "route_query_ans", &g.rsa);
	mf_hex(&g, "reload.chordroutequeryans.nodeid", "eq", HOP.b, 16);
	mf_end(&g);

	memset(&m, 0, sizeof(m));
	memset(&b, 0, sizeof(b));
	{
		static rl_bytes_t kinds[1];
		static const char kd_xml[] = "<kind name=\"VIPR-REGISTRATION\"><data-model>DICTIONARY</data-model></kind>";
		kinds[0] = (rl_bytes_t){ (const uint8_t *)kd_xml, sizeof(kd_xml) - 1 };
		b.u.config_update_req.type = RL_CONFIG_UPDATE_KIND;
		b.u.config_update_req.kinds.items = kinds;
		b.u.config_update_req.kinds.n_items = 1;
	}
	route(&m, 0x9999000000000015ull, NULL, 0, &d_server, 1);
	b.code = m.contents.code = RL_CONFIG_UPDATE_REQ;
	m.contents.body_st = &b;
	emit(&g, 0, &m, "config_update_req", &g.ec);
	mf_check(&g, "reload.configupdatereq.type", "eq", "%u", RL_CONFIG_UPDATE_KIND);
	mf_end(&g);

	fputs("\n]}\n", g.mf);
	if (fclose(g.mf) || fclose(g.pcap))
		die("cannot write outputs");
	tk_ident_free(&g.ec);
	tk_ident_free(&g.rsa);
	return 0;
}
