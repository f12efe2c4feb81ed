#include "control/node/node.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "common/clock.h"
#include "common/errcode.h"
#include "common/log.h"
#include "common/net.h"
#include "control/node/kinds.h"
#include "control/node/overlay_doc.h"
#include "dataplane/shard.h"

/*
 * Tunables.
 * LEAVE_LINGER_MS: after Leave, how long a vnode keeps serving so its Leave and handoff Stores are written
 * out and acknowledged at the link level before the links close.
 * BOOT_RETRY_MS: a node that could not reach a bootstrap peer tries the next one this much later.
 * EXPECT_MS: how long an Attach's expected peer waits for the link the peer opens to us.
 */
#define LEAVE_LINGER_MS 500u
#define BOOT_RETRY_MS 2000u
#define EXPECT_MS 30000u
#define MAX_EXPECT 256u
/*
 * ADDR_BOOK: Node-ID -> listen address of the peers this vnode linked to (the bootstrap peer's configured
 * address, every Attach's candidate), so a ring check can reach a peer that has left the table
 * (chord_io_t.reach: after a partition the links across it are gone, and nothing else knows where the far
 * side listens).  64 entries cover a vnode's table (3 + 3 + 32) and the MERGE_CAP peers the engine
 * remembers; the oldest entry makes room.
 */
#define ADDR_BOOK 64u
#define TX_ARENA (1u << 20)
#define TX_MSGS 512u
#define CMD_RING 1024u /* node_request commands: a burst of lookups must fit */
#define MAX_APPS 8u
#define MAX_WAIT_MS 50u
/*
 * The storage service.  EXPIRE_BUDGET: records the expiry sweep visits per loop iteration (small, so one
 * iteration's latency does not grow with the store).  MAX_XCERTS: entry certificates one message carries
 * besides the vnode's own (a Fetch answer, a handoff Store); a receiver without one of the others in its
 * cache refuses only that entry.
 */
#define EXPIRE_BUDGET 128u
/*
 * The sweep runs after the iteration's sends (dp_shard_ops_t.after) and at most every EXPIRE_INTERVAL_MS, so
 * its rate follows time, not load, and no message waits for it.  It opens a RocksDB iterator and decodes
 * EXPIRE_BUDGET records: run in every loop iteration's commit (32 records) it took 17 % of a node's CPU in a
 * 16-node fetch profile and sat between every message's arrival and its forward, and a relaying shard with
 * 200,000 records spent a third of its CPU there (bench/RESULTS.md, relay); every 10 ms (64 records) it was
 * still 4 % under load.  128 records every 50 ms sweep 2,560 records a second (a million in under 7 minutes;
 * an expired entry is never served meanwhile, only its quota freed later), an idle shard the same.
 */
#define EXPIRE_INTERVAL_MS 50u
#define MAX_XCERTS 64u
/*
 * Handoff and replication Stores (one per Resource-ID) are paced at flood_rate / ACTION_PACE_DIV a second with
 * a burst of flood_burst / ACTION_PACE_DIV: a peer configured like us admits them within its own flood limit
 * with half of it left for everything else, and a link's transmit buffer is not overrun by a large range.
 * An action that runs out of tokens resumes after the last Resource-ID it sent (ACTION_RETRY_MS later).
 */
/*
 * The vnode's own certificate (CERTIFICATE_BY_NODE at Resource-ID = hash of its Node-ID, RFC 6940 §7.3.1) is
 * stored at join with CERT_LIFETIME_S and again every CERT_REPUBLISH_MS: half the lifetime, so one failed
 * publication still leaves a valid copy until the next one (the kind allows 60 s .. 48 h).
 */
#define CERT_LIFETIME_S 86400u
#define CERT_REPUBLISH_MS (CERT_LIFETIME_S * 1000ull / 2)
#define ACTION_PACE_DIV 2u
#define ACTION_RETRY_MS 20u

/*
 * The answer cache (docs/protocol.md §4.9): each answer a vnode sends is kept (as sent, signed) in a per-shard
 * byte ring of ANS_CACHE_BYTES with ANS_CACHE_SLOTS entries, for the reliability timer, so a retransmitted
 * request that already had its answer gets the same answer again instead of being dropped as a replay.
 * Why these sizes: the first retransmission comes at 1/8 of the timer (about 1.9 s by default); 4 MiB holds
 * that long of answers at ~2,000 a second of ~1 KB, and 4096 slots that many answers; the oldest go first.
 */
#define ANS_CACHE_BYTES (4u << 20)
#define ANS_CACHE_SLOTS 4096u

enum { CMD_LEAVE = 1, CMD_BAD_NODES = 2, CMD_REQUEST = 3, CMD_CALL = 4 };

/*
 * End-to-end retransmission of a request (docs/protocol.md §4.9): the first retransmission after
 * reliability_timer / RETX_DIV, each next one after twice the previous interval, so with RETX_DIV 8 a request
 * is sent at 0, 1/8, 3/8 and 7/8 of the timer and fails at the timer.
 */
#define RETX_DIV 8u
/* Commits one store_commit runs back to back while callbacks of the previous one issued Stores this vnode
 * serves (a chain of them: each answer issues the next); the rest waits for the shard loop's next iteration. */
#define COMMIT_ROUNDS 4u

/* A request of node_request(): allocated by the caller's thread, owned by the shard from the command on. */
typedef struct node_req {
	node_done_fn done;
	void *arg;
	vp_id_t dest;
	bool resource;
	uint16_t code;
	uint32_t body_len;
	uint8_t body[];
} node_req_t;

typedef struct req_ent {
	node_req_t *r;
	uint64_t txid;
	uint64_t first_ms, next_ms, deadline_ms, interval_ms;
	uint64_t first_us;  /* monotonic µs of the first transmission (node_answer_t.rtt_us) */
	uint32_t attempts;
	bool local; /* served by this vnode: its answer to itself completes it (a Store: after the commit) */
	bool guessed;  /* this transmission went straight to the peer guessed responsible (req_transmit) */
	bool no_guess; /* that peer had no way on (Error_Not_Found): route by the table only */
} req_ent_t;

/* A topology action of the engine, run (paced) after the commit; sent counts its entries so far. */
typedef struct act_ent {
	chord_store_action_t a;
	uint64_t sent;
} act_ent_t;

/*
 * A Store queued in the open batch: answered after the commit, its request kept (at off in the shard's pending
 * arena, reset at each commit, so the message path allocates only while the arena grows) to answer along its path.
 */
typedef struct pend_ent {
	size_t off, len; /* len 0: no copy (not answered; the requester retransmits) */
	vp_id_t prev;
} pend_ent_t;

/* A batch's pending Stores: entries and the arena holding their requests' bytes (swapped as one value). */
typedef struct pend_buf {
	pend_ent_t *ent;
	uint32_t cap;
	uint8_t *arena;
	size_t arena_cap;
} pend_buf_t;

typedef struct ans_ent {
	uint64_t txid;
	uint64_t route;   /* the answer's destination list (hash): the path back to its requester */
	uint64_t apos;    /* absolute position of its bytes in the ring */
	uint64_t until;   /* kept until then (the reliability timer) */
	uint32_t len;     /* 0: free */
} ans_ent_t;

typedef struct node_app {
	uint16_t application;
	rl_ice_candidate_t cand;
} node_app_t;

typedef struct plink_ent {
	uint64_t serial;
	vp_id_t peer;       /* the link peer's vnode (the Node-ID we attached to, or its first) */
	dp_link_t *link;
	double tokens;
	uint64_t refill_ms;
	uint64_t dropped, last_log_s;
} plink_ent_t;

typedef struct expect_ent {
	vp_id_t peer;
	uint64_t until;
} expect_ent_t;

typedef struct addr_ent {
	vp_id_t id;
	struct sockaddr_storage sa;
	socklen_t len;
} addr_ent_t;

/* A shard's identity: its own certificate, so a link names exactly one vnode (see node.h). */
typedef struct node_ident {
	EVP_PKEY *key;
	X509 *cert;
	uint8_t *der;
	int der_len;
	uint8_t hash[RL_MAX_HASH_LEN];
	rl_signer_identity_t signer;
	rl_cert_t rlcert;
	vp_id_t ids[DP_CERT_MAX_NODE_IDS];
	uint32_t nids;
} node_ident_t;

typedef struct node_shard {
	node_t *node;
	node_ident_t id;
	unsigned idx;
	dp_shard_t *sh;
	dp_cert_store_t *certs;
	dp_replay_t *replay;
	dp_link_ctx_t *lctx;
	dp_link_conf_t lconf;       /* per shard: its own advertised port */
	chord_node_t *vn;
	vp_id_t self;
	struct sockaddr_storage listen_sa;
	socklen_t listen_len;
	rl_ice_candidate_t cand;
	char addr_text[128];

	plink_ent_t *links;
	size_t nlinks, cap_links;
	expect_ent_t expect[MAX_EXPECT];
	uint32_t nexpect;
	addr_ent_t addrs[ADDR_BOOK]; /* see ADDR_BOOK */
	uint32_t naddrs, addr_next;
	struct sockaddr_storage boot_sa; /* the bootstrap address last dialled */
	socklen_t boot_len;

	dp_io_ev_t *cur;            /* the event being handled: relays edit its bytes in place */
	const dp_cert_ident_t *cur_signer;
	vp_id_t cur_prev;

	/* joining */
	bool is_bootstrap;
	uint32_t boot_next;         /* next bootstrap entry to try */
	uint64_t boot_retry_at;
	bool boot_link_pending;
	chord_state_t logged_state;

	/* leaving */
	bool leaving, closing;
	uint64_t leave_at, leave_deadline;
	uint64_t leave_grace;        /* node_leave's timeout: the longest a leaving vnode waits without handoff progress */

	/* requests this vnode originated for node_request (NODE_MAX_REQUESTS slots) */
	req_ent_t *reqs;
	uint32_t nreqs;

	/* the node's own storage service (node_conf.storage) */
	nk_t *nk;
	st_shard_t *st;
	pend_buf_t pb;               /* the pending Stores (entries and their requests' bytes) */
	uint32_t npend;
	size_t parena_len;
	pend_buf_t cpb;              /* the batch being committed (moved aside: nested Stores queue into pb) */
	uint32_t ncpend;
	unsigned loc_depth;          /* requests served to itself being handled (nested: one served from a callback) */
	unsigned ans_depth;          /* answers to them being called back */
	act_ent_t *acts;             /* topology actions, run after the commit (nk_action needs no batch open) */
	uint32_t nacts, cap_acts;
	const chord_table_t *ranged; /* the table nk_set_range last saw */
	bool in_commit;
	uint64_t expire_due;     /* the next expiry sweep (sh_after) */
	bool in_action;              /* nk_action is sending: paced */
	double act_tokens;
	uint64_t act_refill_ms;
	vp_id_t act_last;            /* the last Resource-ID an action sent */
	bool act_sent;
	const uint8_t *cur_raw;      /* the request being delivered, as received (kept for a queued Store) */
	size_t cur_raw_len;
	const rl_cert_t *xcerts;     /* entry certificates for the next message signed */
	size_t n_xcerts;
	rl_cert_t certv[1 + MAX_XCERTS];

	uint64_t refused_sig, refused_decode, refused_flood, refused_replay, refused_topology, relayed;
	char cfg_why[OD_WHY_MAX];    /* a refused ConfigUpdate's reason, carried in its Error answer */
	ans_ent_t *ans;              /* the answer cache: ANS_CACHE_SLOTS entries, FIFO */
	uint8_t *ans_ring;           /* ANS_CACHE_BYTES */
	uint64_t ans_wpos;           /* absolute write position in ans_ring */
	uint32_t ans_next;           /* the slot the next answer takes */
	uint64_t answers_resent;
	uint64_t cert_due;           /* next publication of the vnode's certificate (0: at join) */
	uint8_t encbuf[RL_MAX_MESSAGE_SIZE];
	uint8_t locbuf[RL_MAX_MESSAGE_SIZE]; /* a request the vnode serves itself */
	uint8_t ansbuf[RL_MAX_MESSAGE_SIZE]; /* the answer to it */
	uint8_t sigbuf[RL_MAX_SIG_LEN];
} node_shard_t;

struct node {
	node_conf_t conf;
	node_conf_t given; /* as configured (conf gets the resolved file paths) */
	node_kinds_ops_t kinds;
	bool have_kinds;
	chord_cfg_t ccfg;
	struct sockaddr_storage boot[16];
	socklen_t boot_len[16];
	uint32_t nboot;
	node_shard_t *shards;
	unsigned nshards;
	int lock_fd;
	_Atomic int stopped; /* shards that left their loop */
	_Atomic bool running; /* node_request accepted: between node_start and node_leave */
	pthread_mutex_t push_mu; /* the command rings are single-producer: every push (cmd_push, node_request,
	                          * node_leave) holds it, from any thread, a shard's included */
	bool started;
	node_app_t apps[MAX_APPS];
	uint32_t napps;
	st_db_t *db; /* the storage service's RocksDB (one column family per shard) */
	/* The overlay document in force (NULL without [overlay] config_file): kept for the node's life so a later
	 * document (SIGHUP, ConfigUpdate) must come from a current configuration signer with a higher sequence. */
	od_trust_t *trust;
	pthread_mutex_t trust_mu;
};

static uint64_t mono_ms(void)
{
	return vp_time_mono_ns() / 1000000u;
}

/* The shard whose thread this is (NULL on other threads): node_request from a completion skips the ring. */
static _Thread_local struct node_shard *tl_shard;

/* ---- configuration ------------------------------------------------------- */

static const char *const level_words[] = { "error", "warn", "info", "debug", NULL };

static const vp_conf_opt_t node_rows[] = {
	{ .section = "node", .key = "data_dir", .type = VP_CONF_STR, .def = "/var/lib/viprd",
	  .doc = "this node's directory: node.pem and node.key (shard 0's Node-ID; node-i.pem for shard i), its data; kept across restarts",
	  VP_CONF_AT(node_conf_t, data_dir) },
	{ .section = "node", .key = "listen", .type = VP_CONF_STR, .def = "0.0.0.0:6084",
	  .doc = "address:port of shard 0's overlay links; shard i listens on port + i (port 0: any free ports)",
	  VP_CONF_AT(node_conf_t, listen) },
	{ .section = "node", .key = "shards", .type = VP_CONF_U32, .min = 0, .max = NODE_MAX_SHARDS, .def = "0",
	  .unit = "threads", .doc = "shard threads, one vnode each: shard i uses data_dir/node-i.pem and node-i.key (shard 0 node.pem); 0 = one per CPU",
	  VP_CONF_AT(node_conf_t, shards) },
	{ .section = "node", .key = "pin", .type = VP_CONF_BOOL, .def = "no",
	  .doc = "pin shard i to CPU i (a host that runs nothing else)", VP_CONF_AT(node_conf_t, pin) },
	{ .section = "node", .key = "log_level", .type = VP_CONF_ENUM, .def = "info", .choices = level_words,
	  .doc = "lowest level logged (SIGHUP applies a new value)", VP_CONF_AT(node_conf_t, log_level),
	  .flags = VP_CONF_F_RELOAD },
	{ .section = "node", .key = "io_burst", .type = VP_CONF_U32, .min = 8, .max = 4096, .def = "64",
	  .unit = "messages", .doc = "link events taken per loop iteration (each slot holds one max-size message)",
	  VP_CONF_AT(node_conf_t, io_burst) },
	{ .section = "node", .key = "flood_rate", .type = VP_CONF_U32, .min = 1, .max = 10000000, .def = "2000",
	  .unit = "messages/s", .doc = "messages one link may send per second; the excess is dropped and logged",
	  VP_CONF_AT(node_conf_t, flood_rate) },
	{ .section = "node", .key = "flood_burst", .type = VP_CONF_U32, .min = 1, .max = 10000000, .def = "4000",
	  .unit = "messages", .doc = "messages one link may send at once before flood_rate applies",
	  VP_CONF_AT(node_conf_t, flood_burst) },
	{ .section = "node", .key = "neighbour_flood_rate", .type = VP_CONF_U32, .min = 1, .max = 10000000, .def = "20000",
	  .unit = "messages/s", .doc = "flood_rate of a link whose peer is one of the vnode's predecessors or successors: it carries the last hop of every request for the vnode's range and the replicas of every Store its predecessors take",
	  VP_CONF_AT(node_conf_t, nb_flood_rate) },
	{ .section = "node", .key = "neighbour_flood_burst", .type = VP_CONF_U32, .min = 1, .max = 10000000, .def = "40000",
	  .unit = "messages", .doc = "flood_burst of a ring neighbour's link",
	  VP_CONF_AT(node_conf_t, nb_flood_burst) },
	{ .section = "node", .key = "storage", .type = VP_CONF_BOOL, .def = "yes",
	  .doc = "serve Store, Fetch, Stat and Find (RocksDB under data_dir/store, kept across restarts); no: answer them Error_Forbidden",
	  VP_CONF_AT(node_conf_t, storage) },
	{ .section = "overlay", .key = "name", .type = VP_CONF_STR, .def = "",
	  .doc = "overlay instance name (required): the Node-IDs of certificates and the document must be of it",
	  VP_CONF_AT(node_conf_t, overlay) },
	{ .section = "overlay", .key = "config_file", .type = VP_CONF_STR, .def = "",
	  .doc = "the overlay's signed configuration document (required), trusted only if signed under [link] ca_file",
	  VP_CONF_AT(node_conf_t, config_file) },
	{ .section = "overlay", .key = "max_message_size", .type = VP_CONF_U32, .min = 1024, .max = 65536,
	  .def = "65536", .unit = "bytes", .doc = "max-message-size", VP_CONF_AT(node_conf_t, max_message_size),
	  .flags = VP_CONF_F_OVERLAY },
	{ .section = "overlay", .key = "initial_ttl", .type = VP_CONF_U32, .min = 1, .max = 255, .def = "100",
	  .unit = "hops", .doc = "initial-ttl", VP_CONF_AT(node_conf_t, initial_ttl), .flags = VP_CONF_F_OVERLAY },
	{ .section = "overlay", .key = "chord_update_interval", .type = VP_CONF_DUR_MS, .min = 1000,
	  .max = 86400000, .def = "600s", .doc = "chord-update-interval", VP_CONF_AT(node_conf_t, update_interval_ms),
	  .flags = VP_CONF_F_OVERLAY },
	{ .section = "overlay", .key = "chord_ping_interval", .type = VP_CONF_DUR_MS, .min = 1000, .max = 86400000,
	  .def = "3600s", .doc = "chord-ping-interval", VP_CONF_AT(node_conf_t, ping_interval_ms),
	  .flags = VP_CONF_F_OVERLAY },
	{ .section = "overlay", .key = "reliability_timer", .type = VP_CONF_DUR_MS, .min = 100, .max = 600000,
	  .def = "15s", .doc = "overlay-reliability-timer: a request without an answer after this has failed",
	  VP_CONF_AT(node_conf_t, reliability_ms), .flags = VP_CONF_F_OVERLAY },
	{ .section = "overlay", .key = "chord_reactive", .type = VP_CONF_BOOL, .def = "true",
	  .doc = "chord-reactive", VP_CONF_AT(node_conf_t, reactive), .flags = VP_CONF_F_OVERLAY },
	{ .section = "overlay", .key = "bootstrap", .type = VP_CONF_STR, .def = "",
	  .doc = "bootstrap peers \"addr:port, addr:port\"; a node listening on the only one starts the overlay",
	  VP_CONF_AT(node_conf_t, bootstrap), .flags = VP_CONF_F_OVERLAY },
	{ .section = "overlay", .key = "vipr_kind_id", .type = VP_CONF_U32, .def = "0",
	  .doc = "the ViPR kind's Kind-ID (0: 0xF0000100)", VP_CONF_AT(node_conf_t, vipr_kind_id),
	  .flags = VP_CONF_F_OVERLAY },
	{ .section = "overlay", .key = "vipr_quota", .type = VP_CONF_U32, .def = "0", .unit = "entries",
	  .doc = "the ViPR kind's quota Q (0: 10000)", VP_CONF_AT(node_conf_t, vipr_quota), .flags = VP_CONF_F_OVERLAY },
};

int node_conf_schema(vp_conf_opt_t *out, size_t cap, size_t *n)
{
	size_t k = 0, nn = VP_CONF_NOPTS(node_rows);
	if (cap < nn + dp_link_conf_nopts)
		return VP_ESPACE;
	for (size_t i = 0; i < nn; i++)
		out[k++] = node_rows[i];
	for (size_t i = 0; i < dp_link_conf_nopts; i++) {
		out[k] = dp_link_conf_opts[i];
		out[k].off += offsetof(node_conf_t, link);
		k++;
	}
	*n = k;
	return 0;
}

static int read_file(const char *path, char **buf, size_t *len)
{
	FILE *f = fopen(path, "rb");
	long sz;
	*buf = NULL;
	if (!f)
		return VP_EIO;
	if (fseek(f, 0, SEEK_END) || (sz = ftell(f)) < 0 || sz > (4l << 20) || fseek(f, 0, SEEK_SET)) {
		fclose(f);
		return VP_EIO;
	}
	*buf = malloc((size_t)sz + 1);
	if (!*buf || fread(*buf, 1, (size_t)sz, f) != (size_t)sz) {
		fclose(f);
		free(*buf);
		*buf = NULL;
		return VP_EIO;
	}
	(*buf)[sz] = 0;
	*len = (size_t)sz;
	fclose(f);
	return 0;
}

static int conf_from_doc(node_conf_t *c, const od_doc_t *d, char *why);

/* Where the node keeps the newest document it accepted (ConfigUpdate, SIGHUP): data_dir/overlay-config.xml. */
static void saved_doc_path(const node_conf_t *c, char *out, size_t cap)
{
	snprintf(out, cap, "%s/overlay-config.xml", c->data_dir);
}

/*
 * The trust state of a starting node: [overlay] config_file accepted under [link] ca_file, then the document
 * the node saved when it last accepted a newer one (ConfigUpdate or SIGHUP: doc_offer), if that one is newer
 * still.  Without the saved one a restart fell back to the file's older document and, with it, to an older
 * bad-node list: a peer revoked by ConfigUpdate was served again until the update was pushed again.
 * \p log: say which document is in force.  VP_ECONFIG with the reason in \p why (256 bytes).
 */
static int trust_load(const node_conf_t *c, bool log, od_trust_t **out, char *why)
{
	X509 *root = NULL;
	FILE *f;
	od_trust_t *t = NULL;
	char *xml = NULL, w[OD_WHY_MAX], path[sizeof(c->data_dir) + 32];
	size_t len = 0;
	int err = VP_ECONFIG;

	*out = NULL;
	f = fopen(c->link.ca_file, "r");
	if (!f || !(root = PEM_read_X509(f, NULL, NULL, NULL)))
		snprintf(why, 256, "[link] ca_file %.200s: no certificate", c->link.ca_file);
	else if (read_file(c->config_file, &xml, &len))
		snprintf(why, 256, "[overlay] config_file %.160s: %.60s", c->config_file, strerror(errno));
	else if (od_trust_new(c->overlay, root, NULL, &t))
		snprintf(why, 256, "overlay %.120s: bad anchor", c->overlay);
	else if (od_trust_accept(t, xml, len, 0, w))
		snprintf(why, 256, "[overlay] config_file %.70s refused: %.150s", c->config_file, w);
	else
		err = 0;
	free(xml);
	xml = NULL;
	if (!err && c->data_dir[0]) {
		uint64_t file_seq = od_trust_current(t)->sequence;
		int e;
		saved_doc_path(c, path, sizeof(path));
		if (!read_file(path, &xml, &len)) {
			e = od_trust_accept(t, xml, len, 0, w);
			if (!e && log)
				vp_log_info("node", "config_restored", "sequence=%llu file_sequence=%llu path=%s",
				            (unsigned long long)od_trust_current(t)->sequence, (unsigned long long)file_seq, path);
			else if (e && e != VP_EDATA_TOO_OLD && log)
				vp_log_warn("node", "config_saved_refused", "path=%s reason=\"%s\" (the config_file's sequence %llu "
				            "stays in force)", path, w, (unsigned long long)file_seq);
		}
	}
	if (f)
		fclose(f);
	X509_free(root);
	free(xml);
	if (err)
		od_trust_free(t);
	else
		*out = t;
	return err;
}

/* Keep \p xml, just accepted, as the saved document (under trust_mu): written whole, then renamed. */
static void doc_save(node_t *n, const char *xml, size_t len, uint64_t seq)
{
	char path[sizeof(n->conf.data_dir) + 32], tmp[sizeof(path) + 8];
	FILE *f;
	bool ok;
	if (!n->conf.data_dir[0])
		return;
	saved_doc_path(&n->conf, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if (!(f = fopen(tmp, "wb"))) {
		vp_log_warn("node", "config_save_failed", "path=%s err=\"%s\" (a restart falls back to the config_file)", tmp,
		            strerror(errno));
		return;
	}
	ok = fwrite(xml, 1, len, f) == len && fflush(f) == 0 && fsync(fileno(f)) == 0;
	ok = fclose(f) == 0 && ok;
	if (!ok || rename(tmp, path)) {
		vp_log_warn("node", "config_save_failed", "path=%s err=\"%s\" (a restart falls back to the config_file)",
		            path, strerror(errno));
		unlink(tmp);
		return;
	}
	vp_log_info("node", "config_saved", "sequence=%llu path=%s", (unsigned long long)seq, path);
}

int node_conf_overlay(node_conf_t *c, char *why)
{
	od_trust_t *t;
	int err;
	if (!c->overlay[0] || !c->config_file[0] || !c->link.ca_file[0]) {
		snprintf(why, 256, "[overlay] name, [overlay] config_file and [link] ca_file are required");
		return VP_ECONFIG;
	}
	if ((err = trust_load(c, false, &t, why)))
		return err;
	err = conf_from_doc(c, od_trust_current(t), why);
	od_trust_free(t);
	return err;
}

/* The overlay-wide values of \p c from document \p d. */
static int conf_from_doc(node_conf_t *c, const od_doc_t *d, char *why)
{
	if (d->max_message_size)
		c->max_message_size = d->max_message_size < 1024 ? 1024 : d->max_message_size;
	if (c->max_message_size > RL_MAX_MESSAGE_SIZE)
		c->max_message_size = RL_MAX_MESSAGE_SIZE;
	if (d->initial_ttl)
		c->initial_ttl = d->initial_ttl > 255 ? 255 : d->initial_ttl;
	if (d->chord_update_interval)
		c->update_interval_ms = (uint64_t)d->chord_update_interval * 1000u;
	if (d->chord_ping_interval)
		c->ping_interval_ms = (uint64_t)d->chord_ping_interval * 1000u;
	if (d->overlay_reliability_timer)
		c->reliability_ms = d->overlay_reliability_timer;
	c->reactive = d->chord_reactive;
	{
		const od_kind_t *vk = od_vipr_kind(d);
		if (vk && vk->id)
			c->vipr_kind_id = vk->id;
		if (vk && vk->vipr_quota)
			c->vipr_quota = vk->vipr_quota;
	}
	c->bootstrap[0] = 0;
	for (size_t i = 0; i < d->n_bootstrap; i++) {
		char one[OD_TEXT_MAX + 16];
		bool v6 = strchr(d->bootstrap[i].address, ':') != NULL;
		snprintf(one, sizeof(one), "%s%s%s%s:%u", i ? ", " : "", v6 ? "[" : "", d->bootstrap[i].address,
		         v6 ? "]" : "", d->bootstrap[i].port);
		if (strlen(c->bootstrap) + strlen(one) + 1 > sizeof(c->bootstrap)) {
			snprintf(why, 256, "too many bootstrap peers in the document");
			return VP_ECONFIG;
		}
		strcat(c->bootstrap, one);
	}
	return 0;
}

/* ---- identity ------------------------------------------------------------ */

static int load_identity(node_t *n, unsigned shard, node_ident_t *id, dp_link_conf_t *lc)
{
	char cpath[512], kpath[512];
	FILE *f;
	const char *cp = shard ? "" : n->conf.link.cert_file, *kp = shard ? "" : n->conf.link.key_file;
	int k;

	if (!cp[0]) {
		if (shard)
			snprintf(cpath, sizeof(cpath), "%s/node-%u.pem", n->conf.data_dir, shard);
		else
			snprintf(cpath, sizeof(cpath), "%s/node.pem", n->conf.data_dir);
		cp = cpath;
	}
	if (!kp[0]) {
		if (shard)
			snprintf(kpath, sizeof(kpath), "%s/node-%u.key", n->conf.data_dir, shard);
		else
			snprintf(kpath, sizeof(kpath), "%s/node.key", n->conf.data_dir);
		kp = kpath;
	}
	f = fopen(cp, "r");
	if (!f || !(id->cert = PEM_read_X509(f, NULL, NULL, NULL))) {
		vp_log_error("node", "config", "reason=\"shard %u: no certificate in %s\"", shard, cp);
		if (f)
			fclose(f);
		return VP_ECONFIG;
	}
	fclose(f);
	f = fopen(kp, "r");
	if (!f || !(id->key = PEM_read_PrivateKey(f, NULL, NULL, NULL))) {
		vp_log_error("node", "config", "reason=\"shard %u: no private key in %s\"", shard, kp);
		if (f)
			fclose(f);
		return VP_ECONFIG;
	}
	fclose(f);
	if (X509_check_private_key(id->cert, id->key) != 1) {
		vp_log_error("node", "config", "reason=\"%s is not the key of %s\"", kp, cp);
		return VP_ECONFIG;
	}
	id->der = NULL;
	id->der_len = i2d_X509(id->cert, &id->der);
	if (id->der_len <= 0)
		return VP_ECRYPTO;
	if (rl_signer_cert_hash(id->der, (size_t)id->der_len, id->hash, &id->signer))
		return VP_ECRYPTO;
	id->rlcert.type = RL_CERT_X509;
	id->rlcert.der = (rl_bytes_t){ id->der, (uint32_t)id->der_len };
	k = dp_cert_node_ids(id->cert, n->conf.overlay, id->ids, DP_CERT_MAX_NODE_IDS);
	if (k <= 0) {
		vp_log_error("node", "config", "reason=\"%s carries no Node-ID of overlay %s\"", cp, n->conf.overlay);
		return VP_ECONFIG;
	}
	id->nids = (uint32_t)k;
	/* The paths the link layer reads. */
	if (strlen(cp) >= sizeof(lc->cert_file) || strlen(kp) >= sizeof(lc->key_file)) {
		vp_log_error("node", "config", "reason=\"data_dir path too long\"");
		return VP_ECONFIG;
	}
	memmove(lc->cert_file, cp, strlen(cp) + 1);
	memmove(lc->key_file, kp, strlen(kp) + 1);
	return 0;
}

/* ---- helpers ------------------------------------------------------------ */

static plink_ent_t *link_by_serial(node_shard_t *s, uint64_t serial)
{
	for (size_t i = 0; i < s->nlinks; i++)
		if (s->links[i].serial == serial)
			return &s->links[i];
	return NULL;
}

static bool expected(node_shard_t *s, const vp_id_t *id, uint64_t now, bool take)
{
	for (uint32_t i = 0; i < s->nexpect; i++) {
		if (s->expect[i].until < now) {
			s->expect[i--] = s->expect[--s->nexpect];
			continue;
		}
		if (vp_id_eq(&s->expect[i].peer, id)) {
			if (take)
				s->expect[i] = s->expect[--s->nexpect];
			return true;
		}
	}
	return false;
}

static void warn_refused(node_shard_t *s, const char *peer, const char *reason, uint16_t code)
{
	vp_log_warn("node", "msg_refused", "shard=%u peer=%s reason=%s code=0x%x", s->idx, peer ? peer : "-", reason,
	            code);
}

static int sa_from_cand(const rl_ice_candidate_t *c, struct sockaddr_storage *ss, socklen_t *sl)
{
	memset(ss, 0, sizeof(*ss));
	if (c->addr.type == RL_ADDR_IPV4) {
		struct sockaddr_in *a = (struct sockaddr_in *)ss;
		a->sin_family = AF_INET;
		memcpy(&a->sin_addr, c->addr.addr, 4);
		a->sin_port = htons(c->addr.port);
		*sl = sizeof(*a);
		return 0;
	}
	if (c->addr.type == RL_ADDR_IPV6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
		a->sin6_family = AF_INET6;
		memcpy(&a->sin6_addr, c->addr.addr, 16);
		a->sin6_port = htons(c->addr.port);
		*sl = sizeof(*a);
		return 0;
	}
	return VP_EINVAL;
}

static bool sa_equal(const struct sockaddr_storage *a, const struct sockaddr_storage *b);

/* Remember where \p id listens (see ADDR_BOOK). */
static void addr_put(node_shard_t *s, const vp_id_t *id, const struct sockaddr_storage *sa, socklen_t len)
{
	addr_ent_t *e = NULL;
	for (uint32_t i = 0; i < s->naddrs && !e; i++)
		if (vp_id_eq(&s->addrs[i].id, id))
			e = &s->addrs[i];
	if (!e) {
		e = &s->addrs[s->naddrs < ADDR_BOOK ? s->naddrs++ : s->addr_next];
		s->addr_next = (s->addr_next + 1) % ADDR_BOOK;
	}
	*e = (addr_ent_t){ .id = *id, .sa = *sa, .len = len };
}

static const addr_ent_t *addr_get(const node_shard_t *s, const vp_id_t *id)
{
	for (uint32_t i = 0; i < s->naddrs; i++)
		if (vp_id_eq(&s->addrs[i].id, id))
			return &s->addrs[i];
	return NULL;
}

static bool sa_equal(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
		return x->sin6_port == y->sin6_port && !memcmp(&x->sin6_addr, &y->sin6_addr, 16);
	}
	return false;
}

/* ---- chord_io_t --------------------------------------------------------- */

static int capture_answer(node_shard_t *s, const rl_message_t *m);

/* The SecurityBlock's certificates of a message this vnode signs: its own, then any entry certificates. */
static void sign_certs(node_shard_t *s, rl_message_t *sm)
{
	size_t k = 1;
	s->certv[0] = s->id.rlcert;
	for (size_t i = 0; i < s->n_xcerts && k < 1 + MAX_XCERTS; i++)
		if (s->xcerts[i].der.len != s->id.rlcert.der.len ||
		    memcmp(s->xcerts[i].der.p, s->id.rlcert.der.p, s->id.rlcert.der.len))
			s->certv[k++] = s->xcerts[i];
	sm->sec.certs.raw = NULL;
	sm->sec.certs.raw_len = sm->sec.certs.raw_count = 0;
	sm->sec.certs.items = s->certv;
	sm->sec.certs.n_items = (uint32_t)k;
}

/* Sign and queue a message this vnode originates. */
/* FNV-1a over the Node-IDs of a destination list: which path an answer takes back. */
static uint64_t route_hash_add(uint64_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}
#define ROUTE_HASH_INIT 0xcbf29ce484222325ull

static uint64_t answer_route(const rl_message_t *m)
{
	uint64_t h = ROUTE_HASH_INIT;
	rl_iter_t it;
	rl_dest_t d;
	RL_ITER_INIT(&it, &m->hdr.dest);
	while (rl_dest_next(&it, &d) == 1)
		h = route_hash_add(h, d.id.p, d.id.len);
	return h;
}

/* The destination list answer_to (chord.c) gives the answer to request \p m from \p prev: prev, then the
 * via list reversed. */
static uint64_t request_route(const rl_message_t *m, const vp_id_t *prev)
{
	rl_dest_t v[128]; /* chord.c MAX_VIA: longer via lists are dropped before an answer */
	uint32_t nv = 0;
	rl_iter_t it;
	uint64_t h = route_hash_add(ROUTE_HASH_INIT, prev->b, VP_ID_LEN);
	RL_ITER_INIT(&it, &m->hdr.via);
	while (nv < 128 && rl_dest_next(&it, &v[nv]) == 1)
		nv++;
	while (nv--)
		h = route_hash_add(h, v[nv].id.p, v[nv].id.len);
	return h;
}

/* Keep an answer as sent (the oldest entry and bytes make room). */
static void ans_cache_put(node_shard_t *s, const rl_message_t *m, const uint8_t *bytes, size_t len, uint64_t now)
{
	ans_ent_t *e;
	uint64_t off;
	if (!s->ans || len > ANS_CACHE_BYTES / 8)
		return;
	off = s->ans_wpos % ANS_CACHE_BYTES;
	if (off + len > ANS_CACHE_BYTES)
		s->ans_wpos += ANS_CACHE_BYTES - off; /* never split: start again at the ring's beginning */
	e = &s->ans[s->ans_next];
	s->ans_next = (s->ans_next + 1) % ANS_CACHE_SLOTS;
	*e = (ans_ent_t){ .txid = m->hdr.txid, .route = answer_route(m), .apos = s->ans_wpos,
	                  .until = now + s->node->conf.reliability_ms, .len = (uint32_t)len };
	memcpy(s->ans_ring + s->ans_wpos % ANS_CACHE_BYTES, bytes, len);
	s->ans_wpos += len;
}

/*
 * A request refused as a replay: if this vnode answered it (same transaction id, same path back, within the
 * reliability timer) the answer goes out again on \p l, as it was sent; true then.  RFC 6940 §6.2.1: a
 * retransmission must get the answer its first copy got, not a second execution nor silence.
 */
static bool ans_cache_resend(node_shard_t *s, const rl_message_t *m, const vp_id_t *prev, dp_link_t *l, uint64_t now)
{
	uint64_t route;
	if (!s->ans)
		return false;
	route = request_route(m, prev);
	for (uint32_t i = 0; i < ANS_CACHE_SLOTS; i++) {
		const ans_ent_t *e = &s->ans[i];
		if (!e->len || e->txid != m->hdr.txid || e->route != route || now > e->until ||
		    s->ans_wpos > e->apos + ANS_CACHE_BYTES)
			continue; /* another answer, expired, or its bytes overwritten */
		if (dp_shard_send(s->sh, l, s->ans_ring + e->apos % ANS_CACHE_BYTES, e->len))
			return false;
		s->answers_resent++;
		return true;
	}
	return false;
}

static int io_send(void *ctx, chord_node_t *cn, const vp_id_t *next, const rl_message_t *m)
{
	node_shard_t *s = ctx;
	node_t *n = s->node;
	dp_io_t *io = dp_shard_io(s->sh);
	dp_link_t *l = dp_shard_api(s->sh)->find(io, next);
	rl_message_t sm = *m;
	vp_wr_t wr;
	int err;
	(void)cn;

	if (vp_id_eq(next, &s->self))
		return capture_answer(s, m);
	if (!l)
		return VP_ENOROUTE;
	sign_certs(s, &sm);
	vp_wr_init(&wr, s->encbuf, n->conf.max_message_size);
	err = rl_msg_encode_signed(&wr, &sm, s->id.key, &s->id.signer, s->sigbuf, sizeof(s->sigbuf));
	if (err)
		return err;
	err = dp_shard_send(s->sh, l, s->encbuf, vp_wr_len(&wr));
	if (!err && (m->contents.code == RL_ERROR || !(m->contents.code & 1)))
		ans_cache_put(s, m, s->encbuf, vp_wr_len(&wr), mono_ms()); /* an answer (even code, or Error) */
	return err;
}

/* Relay: edit the received bytes in place (rl_fwd_*); the body and signature go on untouched. */
static int io_forward(void *ctx, chord_node_t *cn, const vp_id_t *next, const vp_id_t *prev, bool pop,
                      const rl_message_t *m)
{
	node_shard_t *s = ctx;
	dp_io_t *io = dp_shard_io(s->sh);
	dp_link_t *l = dp_shard_api(s->sh)->find(io, next);
	rl_dest_t via = rl_dest_node(prev);
	rl_pkt_t *p;
	int err;
	(void)cn;

	if (!l)
		return VP_ENOROUTE;
	s->relayed++;
	if (s->cur && s->cur->type == DP_IO_MSG && m->contents.raw.p >= s->cur->pkt.buf &&
	    m->contents.raw.p < s->cur->pkt.buf + s->cur->pkt.cap) {
		p = &s->cur->pkt;
		s->cur = NULL; /* the decoded view is stale from here on */
		if ((err = rl_fwd_ttl_decrement(p)) || (pop && (err = rl_fwd_pop_dest(p))) ||
		    (err = rl_fwd_append_via(p, &via)))
			return err;
		if (p->len > s->node->conf.max_message_size)
			return VP_ETOOBIG;
		return dp_shard_send(s->sh, l, p->buf + p->off, p->len);
	} else {
		vp_wr_t wr;
		vp_wr_init(&wr, s->encbuf, s->node->conf.max_message_size);
		if ((err = chord_fwd_encode(&wr, m, prev, pop)))
			return err;
		return dp_shard_send(s->sh, l, s->encbuf, vp_wr_len(&wr));
	}
}

static void io_attach_info(void *ctx, chord_node_t *cn, rl_attach_t *out)
{
	node_shard_t *s = ctx;
	(void)cn;
	memset(out, 0, sizeof(*out));
	out->ufrag = (rl_bytes_t){ (const uint8_t *)"-", 1 };
	out->password = (rl_bytes_t){ (const uint8_t *)"-", 1 };
	out->role = (rl_bytes_t){ (const uint8_t *)"passive", 7 };
	out->candidates.items = &s->cand;
	out->candidates.n_items = 1;
}

/*
 * Both ends of an Attach open the link (RFC 6940 §6.5.1.3 with no ICE): to keep one link per pair, only the
 * end with the lower Node-ID connects; the other waits (EXPECT_MS) for the link to come in.
 */
static void io_connect(void *ctx, chord_node_t *cn, const vp_id_t *peer, const rl_attach_t *theirs)
{
	node_shard_t *s = ctx;
	const dp_io_api_t *api = dp_shard_api(s->sh);
	dp_io_t *io = dp_shard_io(s->sh);
	uint64_t now = mono_ms();
	rl_iter_t it;
	rl_ice_candidate_t c;
	int r;

	/* Where it listens, for a later ring check (io_reach): its first usable candidate. */
	RL_ITER_INIT(&it, &theirs->candidates);
	while ((r = rl_ice_candidate_next(&it, &c)) == 1) {
		struct sockaddr_storage ss;
		socklen_t sl;
		if (c.overlay_link == RL_LINK_TLS_TCP_FH_NO_ICE && !sa_from_cand(&c, &ss, &sl)) {
			addr_put(s, peer, &ss, sl);
			break;
		}
	}
	if (api->find(io, peer)) {
		chord_node_link_up(cn, peer, now);
		return;
	}
	if (!expected(s, peer, now, false)) {
		if (s->nexpect == MAX_EXPECT) {
			chord_node_link_down(cn, peer, now);
			return;
		}
		s->expect[s->nexpect++] = (expect_ent_t){ *peer, now + EXPECT_MS };
	}
	if (memcmp(s->self.b, peer->b, VP_ID_LEN) > 0)
		return; /* the peer connects */
	RL_ITER_INIT(&it, &theirs->candidates);
	while ((r = rl_ice_candidate_next(&it, &c)) == 1) {
		struct sockaddr_storage ss;
		socklen_t sl;
		if (c.overlay_link != RL_LINK_TLS_TCP_FH_NO_ICE || sa_from_cand(&c, &ss, &sl))
			continue;
		if (api->connect(io, (struct sockaddr *)&ss, sl, peer) == 0)
			return;
	}
	expected(s, peer, now, true);
	chord_node_link_down(cn, peer, now);
}

/*
 * A ring check's link to \p peer, a node no longer (or never) in the table: dialled at the address it was
 * last seen listening on (ADDR_BOOK), the TLS handshake requiring its Node-ID.  Unlike io_connect, we dial
 * whatever the Node-IDs' order: the peer is not attaching to us.
 */
static int io_reach(void *ctx, chord_node_t *cn, const vp_id_t *peer)
{
	node_shard_t *s = ctx;
	const dp_io_api_t *api = dp_shard_api(s->sh);
	dp_io_t *io = dp_shard_io(s->sh);
	uint64_t now = mono_ms();
	const addr_ent_t *a;
	char hex[VP_ID_HEX_LEN + 1];

	if (api->find(io, peer)) {
		chord_node_link_up(cn, peer, now);
		return 0;
	}
	a = addr_get(s, peer);
	if (!a) {
		vp_log_debug("node", "ring_check", "shard=%u peer=%s result=no_address", s->idx, vp_id_to_hex(peer, hex));
		return VP_ENOTFOUND;
	}
	if (!expected(s, peer, now, false)) {
		if (s->nexpect == MAX_EXPECT)
			return VP_EBUSY;
		s->expect[s->nexpect++] = (expect_ent_t){ *peer, now + EXPECT_MS };
	}
	if (api->connect(io, (const struct sockaddr *)&a->sa, a->len, peer)) {
		expected(s, peer, now, true);
		return VP_EIO;
	}
	vp_log_debug("node", "ring_check", "shard=%u peer=%s result=dialling", s->idx, vp_id_to_hex(peer, hex));
	return 0;
}

/* ---- requests of node_request ------------------------------------------------ */

static void req_complete(node_shard_t *s, node_req_t *r, node_answer_t *a)
{
	a->certs = s->certs;
	a->shard = s->idx;
	r->done(r->arg, a);
	free(r);
}

static void req_fail(node_shard_t *s, node_req_t *r, int err, uint32_t attempts)
{
	node_answer_t a = { .err = err, .attempts = attempts };
	req_complete(s, r, &a);
}

/* Complete \p r with the answer message \p m (decoded) from \p responder. */
static void req_answered(node_shard_t *s, node_req_t *r, const rl_message_t *m, const vp_id_t *responder,
                         const dp_cert_ident_t *signer, uint32_t attempts, uint64_t first_ms, uint64_t first_us)
{
	rl_body_t b;
	node_answer_t a = { .code = m->contents.code, .msg = m, .responder = *responder, .signer = signer,
	                    .attempts = attempts, .rtt_ms = mono_ms() - first_ms,
	                    .rtt_us = vp_time_mono_ns() / 1000u - first_us,
	                    .hops = vp_id_eq(responder, &s->self) ? 0 : (uint32_t)RL_LIST_COUNT(&m->hdr.via) + 1 };
	a.err = rl_body_decode(m->contents.code, m->contents.body.p, m->contents.body.len, NULL, NULL, &b);
	if (!a.err) {
		a.body = &b;
		if (m->contents.code == RL_ERROR)
			a.error_code = b.u.error.code;
	}
	req_complete(s, r, &a);
}

static void req_msg(node_shard_t *s, const node_req_t *r, uint64_t txid, rl_dest_t *d, rl_message_t *m)
{
	memset(m, 0, sizeof(*m));
	m->hdr.overlay = s->node->ccfg.overlay;
	m->hdr.config_seq = s->node->ccfg.config_seq;
	m->hdr.version = RL_VERSION;
	m->hdr.ttl = s->node->ccfg.initial_ttl;
	m->hdr.fragment = RL_FRAG_UNFRAGMENTED;
	m->hdr.txid = txid;
	*d = r->resource ? rl_dest_resource(r->dest.b, VP_ID_LEN) : rl_dest_node(&r->dest);
	m->hdr.dest.items = d;
	m->hdr.dest.n_items = 1;
	m->contents.code = r->code;
	m->contents.body = (rl_bytes_t){ r->body, r->body_len };
	m->sec.sig.hash_alg = RL_HASH_NONE;
	m->sec.sig.sig_alg = RL_SIG_ANONYMOUS;
	m->sec.sig.identity.type = RL_SIGNER_NONE;
}

/* Next hop of a request: 0 (*next set, *hop the table's CHORD_HOP_*), 1 (this vnode serves it) or
 * VP_ENOTFOUND / a routing error. */
static int req_route(node_shard_t *s, const node_req_t *r, vp_id_t *next, int *hop)
{
	int h;
	*hop = CHORD_HOP_DIRECT;
	if (!r->resource && vp_id_eq(&r->dest, &s->self))
		return 1;
	if (!r->resource && dp_shard_api(s->sh)->find(dp_shard_io(s->sh), &r->dest)) {
		*next = r->dest;
		return 0;
	}
	h = chord_table_next_hop(chord_node_table(s->vn), &r->dest, next);
	if (h < 0)
		return h;
	*hop = h;
	if (h == CHORD_HOP_LOCAL)
		return r->resource ? 1 : VP_ENOTFOUND; /* a Node-ID nobody has, in our view */
	return 0;
}

static req_ent_t *req_find(node_shard_t *s, uint64_t txid)
{
	for (uint32_t i = 0; i < s->nreqs; i++)
		if (s->reqs[i].txid == txid)
			return &s->reqs[i];
	return NULL;
}

static void req_remove(node_shard_t *s, req_ent_t *e)
{
	*e = s->reqs[--s->nreqs];
}

/* Fail and drop the entry of \p txid (if still there). */
static void req_fail_txid(node_shard_t *s, uint64_t txid, int err)
{
	req_ent_t *e = req_find(s, txid);
	node_req_t *r;
	uint32_t at;
	if (!e)
		return;
	r = e->r;
	at = e->attempts;
	req_remove(s, e);
	req_fail(s, r, err, at);
}

/* Sign \p m as this vnode, then decode and verify it as a peer would: \p out points into \p buf. */
static int self_signed(node_shard_t *s, const rl_message_t *m, uint8_t *buf, rl_message_t *out,
                       const dp_cert_ident_t **signer, size_t *len)
{
	rl_message_t sm = *m;
	vp_wr_t wr;
	dp_cert_reason_t why = DP_CERT_OK;
	int err;

	sign_certs(s, &sm);
	vp_wr_init(&wr, buf, s->node->conf.max_message_size);
	err = rl_msg_encode_signed(&wr, &sm, s->id.key, &s->id.signer, s->sigbuf, sizeof(s->sigbuf));
	if (len)
		*len = vp_wr_len(&wr);
	if (!err)
		err = rl_msg_decode(buf, vp_wr_len(&wr), out);
	if (!err)
		err = dp_cert_msg_verify(s->certs, out, &s->self, signer, &why);
	return err;
}

/*
 * Serve request \p txid of this vnode to itself: the path of a request from the wire (signed, decoded,
 * verified, handed to the engine) with our own vnode as the previous hop.  The answer the vnode sends to
 * itself (io_send to self: capture_answer) completes the entry, at once or, for a Store, after the commit.
 */
static void req_local(node_shard_t *s, req_ent_t *e, uint64_t now)
{
	rl_message_t m, vm;
	rl_dest_t d;
	const dp_cert_ident_t *signer = NULL;
	uint64_t txid = e->txid;
	size_t len = 0;
	int err;
	/* The message being delivered when this one was issued from a callback (a commit answering a Store
	 * inside the delivery of another): its bytes and context stay as they were for the rest of its handling. */
	dp_io_ev_t *cur = s->cur;
	const dp_cert_ident_t *cur_signer = s->cur_signer;
	vp_id_t cur_prev = s->cur_prev;
	const uint8_t *cur_raw = s->cur_raw;
	size_t cur_raw_len = s->cur_raw_len;
	uint8_t *buf = s->loc_depth ? malloc(sizeof(s->locbuf)) : s->locbuf;

	if (!buf) {
		req_fail_txid(s, txid, VP_ENOMEM);
		return;
	}
	e->local = true;
	e->attempts++;
	req_msg(s, e->r, txid, &d, &m);
	err = self_signed(s, &m, buf, &vm, &signer, &len);
	if (err) {
		req_fail_txid(s, txid, err);
		goto finish;
	}
	s->loc_depth++;
	s->cur = NULL;
	s->cur_signer = signer;
	s->cur_prev = s->self;
	s->cur_raw = buf;
	s->cur_raw_len = len;
	err = chord_node_recv(s->vn, &s->self, &vm, now);
	s->loc_depth--;
	if (err)
		req_fail_txid(s, txid, err); /* e is gone if the answer came already */
finish:
	s->cur = cur;
	s->cur_signer = cur_signer;
	s->cur_prev = cur_prev;
	s->cur_raw = cur_raw;
	s->cur_raw_len = cur_raw_len;
	if (buf != s->locbuf)
		free(buf);
}

/* The vnode's answer to a request it served itself (io_send to self). */
static int capture_answer(node_shard_t *s, const rl_message_t *m)
{
	req_ent_t *e = req_find(s, m->hdr.txid);
	const dp_cert_ident_t *signer = NULL;
	rl_message_t am;
	node_req_t *r;
	uint8_t *buf;
	uint32_t at;
	uint64_t first, first_us;
	int err;

	if (!e || !e->local)
		return VP_ENOROUTE;
	r = e->r;
	at = e->attempts;
	first = e->first_ms;
	first_us = e->first_us;
	req_remove(s, e);
	/* The callback may issue a request served here whose answer comes back before it returns: that one
	 * gets a buffer of its own, this one's stays valid for the whole callback. */
	buf = s->ans_depth ? malloc(sizeof(s->ansbuf)) : s->ansbuf;
	if (!buf) {
		req_fail(s, r, VP_ENOMEM, at);
		return 0;
	}
	s->ans_depth++;
	err = self_signed(s, m, buf, &am, &signer, NULL);
	if (err)
		req_fail(s, r, err, at);
	else
		req_answered(s, r, &am, &s->self, signer, at, first, first_us);
	s->ans_depth--;
	if (buf != s->ansbuf)
		free(buf);
	return 0;
}

static void guess_add(const vp_id_t *from, const vp_id_t *id, vp_id_t *best, size_t *n, size_t max);

/* Up to max Node-IDs the vnode knows (itself, its table, its links' peers) at or after id, nearest first. */
static size_t guess_holders(node_shard_t *s, const vp_id_t *id, vp_id_t *out, size_t max)
{
	const chord_table_t *t = chord_node_table(s->vn);
	size_t k = 0;
	guess_add(id, &s->self, out, &k, max);
	for (uint32_t i = 0; t && i < t->nroute; i++)
		guess_add(id, &t->route[i], out, &k, max);
	for (size_t i = 0; i < s->nlinks; i++)
		guess_add(id, &s->links[i].peer, out, &k, max);
	return k;
}

/*
 * The first hop of a request for a Resource-ID that the table would send to its closest preceding entry: the
 * linked peer nearest at or after the Resource-ID, the one this vnode would guess responsible, when it is not
 * that entry.  Right, it serves the request at once (1 hop where Chord takes ~log2 N); wrong, it is a peer
 * past the responsible one, which reaches it through its predecessors (1 hop more) or routes on by Chord.
 * Only a peer that would route the request straight back to us answers Error_Not_Found (chord.c never
 * bounces a request): req_on_answer then sends it again by the table alone.  Relays never guess.
 */
static bool guess_first_hop(node_shard_t *s, const vp_id_t *dest, const vp_id_t *chord_next, vp_id_t *next)
{
	vp_id_t g;
	if (guess_holders(s, dest, &g, 1) != 1 || vp_id_eq(&g, &s->self) || vp_id_eq(&g, chord_next) ||
	    !dp_shard_api(s->sh)->find(dp_shard_io(s->sh), &g))
		return false;
	*next = g;
	return true;
}

/* (Re)transmit entry \p e: 0 sent, 1 this vnode serves it, else an error. */
static int req_transmit(node_shard_t *s, req_ent_t *e)
{
	rl_message_t m;
	rl_dest_t d;
	vp_id_t next;
	int hop;
	int r = req_route(s, e->r, &next, &hop);
	if (r != 0)
		return r;
	e->guessed = false;
	if (e->r->resource && hop == CHORD_HOP_FORWARD && e->attempts == 0 && !e->no_guess)
		e->guessed = guess_first_hop(s, &e->r->dest, &next, &next);
	req_msg(s, e->r, e->txid, &d, &m);
	e->attempts++;
	return io_send(s, s->vn, &next, &m);
}

static void req_start(node_shard_t *s, node_req_t *r, uint64_t now)
{
	req_ent_t *e;
	uint64_t txid;
	int err;

	if (s->leaving || chord_node_state(s->vn) != CHORD_JOINED) {
		req_fail(s, r, VP_ESTATE, 0);
		return;
	}
	if (s->nreqs == NODE_MAX_REQUESTS) {
		req_fail(s, r, VP_EBUSY, 0);
		return;
	}
	do {
		if (RAND_bytes((unsigned char *)&txid, sizeof(txid)) != 1) {
			req_fail(s, r, VP_ECRYPTO, 0);
			return;
		}
	} while (req_find(s, txid));
	e = &s->reqs[s->nreqs++];
	*e = (req_ent_t){ .r = r, .txid = txid, .first_ms = now, .first_us = vp_time_mono_ns() / 1000u, .deadline_ms = now + s->node->conf.reliability_ms,
	                  .interval_ms = s->node->conf.reliability_ms / RETX_DIV };
	if (e->interval_ms == 0)
		e->interval_ms = 1;
	e->next_ms = now + e->interval_ms;
	err = req_transmit(s, e);
	if (err == 1) {
		req_local(s, e, now);
	} else if (err && err != VP_ENOROUTE && err != VP_EBUSY && err != VP_ESPACE) {
		/* Not worth retrying (no such node, cannot encode); a missing link may come back. */
		req_fail_txid(s, txid, err);
	}
}

/* Timers of the requests in flight; returns the next one due. */
static uint64_t req_tick(node_shard_t *s, uint64_t now)
{
	uint64_t next = UINT64_MAX;
	for (uint32_t i = 0; i < s->nreqs;) {
		req_ent_t *e = &s->reqs[i];
		if (now >= e->deadline_ms) {
			node_req_t *r = e->r;
			uint32_t at = e->attempts;
			req_remove(s, e);
			req_fail(s, r, VP_ETIMEOUT, at);
			continue;
		}
		if (!e->local && now >= e->next_ms) {
			int err;
			e->interval_ms *= 2;
			e->next_ms = now + e->interval_ms;
			if (e->next_ms > e->deadline_ms)
				e->next_ms = e->deadline_ms;
			err = req_transmit(s, e);
			if (err == 1) {
				/* The range became ours (its owner left): serve it here; e may be gone. */
				req_local(s, e, now);
				i = 0;
				continue;
			}
			if (vp_log_enabled(VP_LOG_DEBUG))
				vp_log_debug("node", "retransmit", "shard=%u txid=%llx attempt=%u err=%s", s->idx,
				             (unsigned long long)e->txid, e->attempts, vp_strerror(err));
		}
		if ((e->local ? e->deadline_ms : e->next_ms) < next)
			next = e->local ? e->deadline_ms : e->next_ms;
		i++;
	}
	return next;
}

/* An answer for this vnode: complete the request it answers (verified: s->cur_signer is set). */
static void req_on_answer(node_shard_t *s, const chord_delivery_t *d)
{
	req_ent_t *e = req_find(s, d->msg->hdr.txid);
	vp_id_t orig;
	node_req_t *r;
	uint32_t at;
	uint64_t first, first_us;

	if (!e || !s->cur_signer || dp_cert_originator(d->msg, &s->cur_prev, &orig)) {
		vp_log_debug("node", "answer_unclaimed", "shard=%u code=0x%x", s->idx, d->msg->contents.code);
		return;
	}
	if (!e->r->resource && !vp_id_eq(&orig, &e->r->dest)) {
		/* Only the node addressed may answer a request to a Node-ID. */
		vp_log_warn("node", "msg_refused", "shard=%u peer=%s reason=answer_from_other_node code=0x%x", s->idx,
		            vp_id_to_hex(&orig, (char[VP_ID_HEX_LEN + 1]){ 0 }), d->msg->contents.code);
		return;
	}
	if (e->guessed && d->msg->contents.code == RL_ERROR) {
		rl_body_t b;
		if (!rl_body_decode(RL_ERROR, d->msg->contents.body.p, d->msg->contents.body.len, NULL, NULL, &b) &&
		    b.u.error.code == RL_ERR_NOT_FOUND) {
			/* The guessed peer had no way on but back to us: send it again, routed by the table alone. */
			int err;
			e->no_guess = true;
			vp_log_debug("node", "guess_refused", "shard=%u txid=%llx", s->idx, (unsigned long long)e->txid);
			err = req_transmit(s, e);
			if (err == 1)
				req_local(s, e, mono_ms());
			else if (err && err != VP_ENOROUTE && err != VP_EBUSY && err != VP_ESPACE)
				req_fail_txid(s, e->txid, err);
			return; /* else the retransmission timer goes on */
		}
	}
	r = e->r;
	at = e->attempts;
	first = e->first_ms;
	first_us = e->first_us;
	req_remove(s, e);
	req_answered(s, r, d->msg, &orig, s->cur_signer, at, first, first_us);
}

static void req_fail_all(node_shard_t *s)
{
	while (s->nreqs) {
		node_req_t *r = s->reqs[s->nreqs - 1].r;
		uint32_t at = s->reqs[s->nreqs - 1].attempts;
		s->nreqs--;
		req_fail(s, r, VP_ESTATE, at);
	}
}

/* AppAttach for an application node_app_set() registered: our candidate for it. */
static void app_attach_answer(node_shard_t *s, const rl_message_t *m, rl_body_t *ans)
{
	static const char info[] = "no such application at this node";
	rl_body_t b;
	node_t *n = s->node;
	if (!rl_body_decode(RL_APP_ATTACH_REQ, m->contents.body.p, m->contents.body.len, NULL, NULL, &b))
		for (uint32_t i = 0; i < n->napps; i++)
			if (n->apps[i].application == b.u.app_attach.application) {
				ans->code = RL_APP_ATTACH_ANS;
				ans->u.app_attach = (rl_app_attach_t){
					.ufrag = (rl_bytes_t){ (const uint8_t *)"-", 1 },
					.password = (rl_bytes_t){ (const uint8_t *)"-", 1 },
					.application = n->apps[i].application,
					.role = (rl_bytes_t){ (const uint8_t *)"active", 6 },
				};
				ans->u.app_attach.candidates.items = &n->apps[i].cand;
				ans->u.app_attach.candidates.n_items = 1;
				return;
			}
	ans->code = RL_ERROR;
	ans->u.error.code = RL_ERR_NOT_FOUND;
	ans->u.error.info = (rl_bytes_t){ (const uint8_t *)info, sizeof(info) - 1 };
}

/* ---- the overlay document in force (SIGHUP, ConfigUpdate) --------------------------------- */

/* The document's bad-node list to every shard: directly before node_start, through its command ring after. */
static int cmd_push(node_t *n, unsigned i, const dp_shard_cmd_t *c, bool running_only);
static void apply_bad_nodes(node_t *n, const od_doc_t *d)
{
	for (unsigned i = 0; i < n->nshards; i++) {
		vp_id_t *ids;
		dp_shard_cmd_t cmd;
		if (!n->started) {
			int err = dp_cert_store_set_bad_nodes(n->shards[i].certs, d->bad_nodes, d->n_bad_nodes);
			if (err)
				vp_log_error("node", "bad_nodes", "shard=%u err=%s", i, vp_strerror(err));
			continue;
		}
		ids = malloc((d->n_bad_nodes ? d->n_bad_nodes : 1) * sizeof(*ids));
		if (!ids) {
			vp_log_error("node", "bad_nodes", "shard=%u err=%s", i, vp_strerror(VP_ENOMEM));
			continue;
		}
		if (d->n_bad_nodes)
			memcpy(ids, d->bad_nodes, d->n_bad_nodes * sizeof(*ids));
		cmd = (dp_shard_cmd_t){ .op = CMD_BAD_NODES, .arg = d->n_bad_nodes, .ptr = ids };
		if (cmd_push(n, i, &cmd, false)) {
			vp_log_error("node", "bad_nodes", "shard=%u reason=ring_full", i);
			free(ids);
		}
	}
}

static bool overlay_values_differ(const node_conf_t *a, const node_conf_t *b)
{
	return a->initial_ttl != b->initial_ttl || a->update_interval_ms != b->update_interval_ms ||
	       a->ping_interval_ms != b->ping_interval_ms || a->reactive != b->reactive ||
	       a->max_message_size != b->max_message_size || a->reliability_ms != b->reliability_ms ||
	       a->vipr_kind_id != b->vipr_kind_id || a->vipr_quota != b->vipr_quota || strcmp(a->bootstrap, b->bootstrap);
}

/*
 * Offer a document (from \p via: "sighup" or "config_update") to the node's trust: only a current
 * configuration signer's document with a higher sequence is accepted (od_trust_accept).  Accepted: its
 * bad-node list applies at once; overlay-wide values it changes need a restart and are logged so.
 * Returns od_trust_accept's code, the reason in \p why (OD_WHY_MAX), the offered sequence in *\p seq (0 if it
 * does not parse) and the one in force before in *\p cur.
 */
static int doc_offer(node_t *n, const char *xml, size_t len, const char *via, uint64_t *seq, uint64_t *cur,
                     char *why)
{
	int err;
	*seq = 0;
	pthread_mutex_lock(&n->trust_mu);
	*cur = od_trust_current(n->trust)->sequence;
	err = od_trust_accept(n->trust, xml, len, 0, why);
	if (!err) {
		const od_doc_t *d = od_trust_current(n->trust);
		node_conf_t c = n->conf;
		char w[256];
		*seq = d->sequence;
		apply_bad_nodes(n, d);
		doc_save(n, xml, len, d->sequence);
		vp_log_info("node", "config_updated", "via=%s sequence=%llu previous=%llu bad_nodes=%zu", via,
		            (unsigned long long)d->sequence, (unsigned long long)*cur, d->n_bad_nodes);
		if (conf_from_doc(&c, d, w) || overlay_values_differ(&c, &n->conf))
			vp_log_warn("node", "reload_needs_restart", "what=overlay_wide_values via=%s sequence=%llu", via,
			            (unsigned long long)d->sequence);
	} else {
		od_doc_t *d = NULL;
		char w[OD_WHY_MAX];
		if (!od_parse(xml, len, n->conf.overlay, &d, w))
			*seq = d->sequence;
		od_doc_free(d);
	}
	pthread_mutex_unlock(&n->trust_mu);
	return err;
}

/* The node's trust state from [overlay] config_file under [link] ca_file, or the newer document it saved
 * (trust_load; node_new); none without them. */
static int trust_open(node_t *n)
{
	char w[256];
	int err;
	if (!n->conf.config_file[0] || !n->conf.link.ca_file[0])
		return 0;
	if ((err = trust_load(&n->conf, true, &n->trust, w))) {
		vp_log_error("node", "config", "reason=\"%s\"", w);
		return err;
	}
	apply_bad_nodes(n, od_trust_current(n->trust));
	return 0;
}

/*
 * ConfigUpdate (RFC 6940 §6.5.4): a "config" update carries a whole signed configuration document, accepted
 * only as doc_offer says; the answer is an empty ConfigUpdateAns, or Error_Config_Too_Old for a sequence not
 * higher than ours, Error_Forbidden for a signer we do not trust (or an expired document),
 * Error_Incompatible_with_Overlay for a document viprd cannot run, Error_Invalid_Message for one that does not
 * parse.  A "kind" update (KindDescriptions alone) is refused Error_Forbidden: viprd takes kinds only from the
 * signed document (docs/protocol.md §4.9).
 */
static void config_update_answer(node_shard_t *s, const rl_message_t *m, rl_body_t *ans)
{
	node_t *n = s->node;
	rl_body_t b;
	uint64_t seq = 0, cur = 0;
	int err;
	const char *info = s->cfg_why;

	ans->code = RL_ERROR;
	ans->u.error.code = RL_ERR_FORBIDDEN;
	if (rl_body_decode(RL_CONFIG_UPDATE_REQ, m->contents.body.p, m->contents.body.len, NULL, NULL, &b)) {
		ans->u.error.code = RL_ERR_INVALID_MESSAGE;
		snprintf(s->cfg_why, sizeof(s->cfg_why), "ConfigUpdateReq does not decode");
	} else if (b.u.config_update_req.type != RL_CONFIG_UPDATE_CONFIG) {
		snprintf(s->cfg_why, sizeof(s->cfg_why), "kinds are taken only from the signed configuration document");
	} else if (!n->trust) {
		snprintf(s->cfg_why, sizeof(s->cfg_why), "no overlay configuration document at this node");
	} else {
		err = doc_offer(n, (const char *)b.u.config_update_req.config_data.p, b.u.config_update_req.config_data.len,
		                "config_update", &seq, &cur, s->cfg_why);
		if (!err) {
			ans->code = RL_CONFIG_UPDATE_ANS;
			return;
		}
		ans->u.error.code = err == VP_EDATA_TOO_OLD ? RL_ERR_CONFIG_TOO_OLD
		                    : err == VP_EPERM || err == VP_EAUTH || err == VP_EEXPIRED ? RL_ERR_FORBIDDEN
		                    : err == VP_EUNSUPPORTED ? RL_ERR_INCOMPATIBLE_WITH_OVERLAY
		                    : RL_ERR_INVALID_MESSAGE;
	}
	vp_log_warn("node", "config_refused", "shard=%u via=config_update sequence=%llu current=%llu error=%u reason=\"%s\"",
	            s->idx, (unsigned long long)seq, (unsigned long long)cur, ans->u.error.code, s->cfg_why);
	ans->u.error.info = (rl_bytes_t){ (const uint8_t *)info, (uint32_t)strlen(info) };
}

/* ---- the node's storage service (kinds.c over the shard's column family) ------------------- */

/* Answer request \p d with nk's answer \p a (its entry certificates in the SecurityBlock). */
static void store_answer(node_shard_t *s, chord_node_t *cn, const chord_delivery_t *d, const nk_answer_t *a)
{
	rl_body_t b;
	int err = rl_body_decode(a->code, a->body.p, a->body.len, NULL, NULL, &b);
	if (err) {
		vp_log_error("node", "store_answer", "shard=%u code=0x%x err=%s", s->idx, a->code, vp_strerror(err));
		return;
	}
	s->xcerts = a->certs;
	s->n_xcerts = a->n_certs;
	err = chord_node_answer(cn, d, &b);
	s->xcerts = NULL;
	s->n_xcerts = 0;
	if (err && vp_log_enabled(VP_LOG_DEBUG))
		vp_log_debug("node", "store_answer", "shard=%u code=0x%x err=%s", s->idx, a->code, vp_strerror(err));
}

/* nk_commit's answer hook: the Store queued as tag, now in the WAL (or failed), answered along its path. */
static void store_done(void *arg, const nk_answer_t *a)
{
	node_shard_t *s = arg;
	pend_ent_t *p;
	rl_message_t m;
	chord_delivery_t d;

	if (a->tag >= s->ncpend || !s->cpb.ent[a->tag].len)
		return;
	p = &s->cpb.ent[a->tag];
	if (rl_msg_decode(s->cpb.arena + p->off, p->len, &m))
		return;
	d = (chord_delivery_t){ .msg = &m, .prev_hop = p->prev };
	store_answer(s, s->vn, &d, a);
}

/* nk's transport: a replica or handoff Store straight to a neighbour, or a Store routed to its resource. */
static int store_send(void *arg, const nk_send_t *x)
{
	node_shard_t *s = arg;
	uint64_t txid;
	int err;

	if (s->in_action) {
		const node_conf_t *c = &s->node->conf;
		double burst = (double)c->flood_burst / ACTION_PACE_DIV;
		uint64_t now = mono_ms();
		s->act_tokens += (double)(now - s->act_refill_ms) * c->flood_rate / ACTION_PACE_DIV / 1000.0;
		if (s->act_tokens > burst)
			s->act_tokens = burst;
		s->act_refill_ms = now;
		if (s->act_tokens < 1.0)
			return VP_EBUSY; /* the action resumes after act_last */
		s->act_tokens -= 1.0;
	}
	s->xcerts = x->certs;
	s->n_xcerts = x->n_certs;
	if (x->peer)
		err = chord_node_request_direct(s->vn, x->peer, x->resource, x->body, &txid, mono_ms());
	else
		err = chord_node_request(s->vn, x->resource, true, x->body, &txid, mono_ms());
	s->xcerts = NULL;
	s->n_xcerts = 0;
	if (!err && s->in_action) {
		s->act_last = *x->resource;
		s->act_sent = true;
		if (s->leaving)
			s->leave_deadline = mono_ms() + s->leave_grace; /* the deadline follows the handoff's progress */
	}
	return err == 1 ? 0 : err; /* 1: the resource is ours, nothing to send */
}

/*
 * The shard loop's commit: write the open batch (the WAL), answer the Stores queued in it, copy them to the
 * successors, then run the topology actions that waited for a closed batch, and sweep a few expired records.
 * Nested calls (a send that flushed the transmit queue) return at once.
 */
static int store_commit(node_shard_t *s)
{
	int err = 0;
	if (s->in_commit)
		return 0;
	s->in_commit = true;
	/* A callback of this commit (a node_request's answer) may issue a Store this vnode serves: it opens the
	 * next batch, committed by the next round (bounded: a callback chain may go on, the shard loop's next
	 * iteration takes it over). */
	for (unsigned round = 0; round < COMMIT_ROUNDS && !err && nk_batch_pending(s->nk); round++) {
		pend_buf_t t = s->pb;
		s->pb = s->cpb;
		s->cpb = t;
		s->ncpend = s->npend;
		s->npend = 0;
		s->parena_len = 0;
		err = nk_commit(s->nk, store_done, store_send, s);
		s->ncpend = 0;
	}
	if (!err && !nk_batch_pending(s->nk)) {
		/* In order; once one waits for tokens, every later one waits too (a DROP never overtakes the
		 * handoff of what it would drop). */
		uint32_t kept = 0;
		for (uint32_t i = 0; i < s->nacts; i++) {
			uint64_t n = 0;
			act_ent_t *x = &s->acts[i];
			chord_store_action_t *a = &x->a;
			int e;
			if (kept) {
				s->acts[kept++] = *x;
				continue;
			}
			s->in_action = true;
			s->act_sent = false;
			e = nk_action(s->nk, a, store_send, s, &n);
			s->in_action = false;
			x->sent += n;
			if (e == VP_EBUSY) {
				/* Out of tokens: resume after the last Resource-ID sent. */
				if (s->act_sent)
					a->lo = s->act_last;
				s->acts[kept++] = *x;
				continue;
			}
			if (x->sent || e)
				vp_log_info("node", "store_action", "shard=%u op=%s to=%s replica=%u entries=%llu err=%s", s->idx,
				            a->op == CHORD_STORE_HANDOFF ? "handoff" : a->op == CHORD_STORE_REPLICATE ? "replicate" : "drop",
				            vp_id_to_hex(&a->to, (char[VP_ID_HEX_LEN + 1]){ 0 }), a->replica_number,
				            (unsigned long long)x->sent, vp_strerror(e));
		}
		if (s->leaving && s->nacts && !kept) {
			/* A leaving vnode's last handoff Stores went out now: give the links time to write them. */
			uint64_t t = mono_ms() + LEAVE_LINGER_MS / 5;
			if (s->leave_at < t)
				s->leave_at = t;
		}
		s->nacts = kept;
	}
	s->in_commit = false;
	return err;
}

/* Store, Fetch, Stat or Find for this vnode (verified: s->cur_signer). */
static void store_serve(node_shard_t *s, chord_node_t *cn, const chord_delivery_t *d)
{
	nk_request_t q;
	nk_answer_t a;
	vp_id_t orig;
	int rc;

	if (dp_cert_originator(d->msg, &s->cur_prev, &orig))
		return;
	if (s->npend == s->pb.cap) {
		uint32_t cap = s->pb.cap ? s->pb.cap * 2 : 64;
		pend_ent_t *p = realloc(s->pb.ent, cap * sizeof(*p));
		if (!p)
			return; /* the requester retransmits */
		s->pb.ent = p;
		s->pb.cap = cap;
	}
	q = (nk_request_t){ .msg = d->msg, .vnode = &s->self, .table = chord_node_table(cn), .signer = s->cur_signer,
	                    .sender = &orig, .tag = s->npend };
	rc = nk_handle(s->nk, &q, &a);
	if (rc == VP_EBUSY) {
		/* max_pending Stores wait for this iteration's commit: commit now, then this one. */
		if (store_commit(s))
			return;
		q.tag = s->npend;
		rc = nk_handle(s->nk, &q, &a);
	}
	if (rc == 1) {
		pend_ent_t *p = &s->pb.ent[s->npend];
		p->len = 0;
		p->prev = d->prev_hop;
		if (s->cur_raw && s->parena_len + s->cur_raw_len > s->pb.arena_cap) {
			size_t cap = s->pb.arena_cap ? s->pb.arena_cap : 65536;
			uint8_t *na;
			while (cap < s->parena_len + s->cur_raw_len)
				cap *= 2;
			if ((na = realloc(s->pb.arena, cap))) {
				s->pb.arena = na;
				s->pb.arena_cap = cap;
			}
		}
		if (s->cur_raw && s->parena_len + s->cur_raw_len <= s->pb.arena_cap) {
			memcpy(s->pb.arena + s->parena_len, s->cur_raw, s->cur_raw_len);
			p->off = s->parena_len;
			p->len = s->cur_raw_len;
			s->parena_len += s->cur_raw_len;
		}
		s->npend++; /* without a copy the Store is written and not answered: the requester retransmits */
		return;
	}
	if (rc < 0) {
		vp_log_warn("node", "store_refused", "shard=%u code=0x%x err=%s", s->idx, d->msg->contents.code,
		            vp_strerror(rc));
		return;
	}
	store_answer(s, cn, d, &a);
}

static int kinds_send(void *arg, const vp_id_t *to, const vp_id_t *resource, const rl_body_t *body)
{
	node_shard_t *s = arg;
	uint64_t txid;
	return chord_node_request_direct(s->vn, to, resource, body, &txid, mono_ms());
}

static void io_store(void *ctx, chord_node_t *cn, const chord_store_action_t *a)
{
	node_shard_t *s = ctx;
	(void)cn;
	if (s->nk) {
		if (s->leaving && a->op == CHORD_STORE_REPLICATE)
			return; /* see CMD_LEAVE */
		if (s->nacts == s->cap_acts) {
			uint32_t cap = s->cap_acts ? s->cap_acts * 2 : 16;
			act_ent_t *p = realloc(s->acts, cap * sizeof(*p));
			if (!p) {
				vp_log_error("node", "store_action", "shard=%u err=%s", s->idx, vp_strerror(VP_ENOMEM));
				return;
			}
			s->acts = p;
			s->cap_acts = cap;
		}
		s->acts[s->nacts++] = (act_ent_t){ .a = *a };
		return;
	}
	if (s->node->have_kinds && s->node->kinds.action)
		s->node->kinds.action(s->node->kinds.arg, s->idx, a, kinds_send, s);
}

/* The vnode's own certificate Store: answered (or failed) after retransmissions, logged. */
static void cert_published(void *arg, const node_answer_t *a)
{
	node_shard_t *s = arg;
	if (!a->err && a->code == RL_STORE_ANS)
		vp_log_info("node", "cert_published", "shard=%u responder=%s lifetime_s=%u", s->idx,
		            vp_id_to_hex(&a->responder, (char[VP_ID_HEX_LEN + 1]){ 0 }), CERT_LIFETIME_S);
	else
		vp_log_warn("node", "cert_published", "shard=%u err=%s code=0x%x error=%u", s->idx, vp_strerror(a->err),
		            a->code, a->error_code);
}

/* nk_store_own_cert's transport: a node_request (routed, retransmitted end to end, local if ours). */
static int cert_send(void *arg, const nk_send_t *x)
{
	node_shard_t *s = arg;
	return node_request(s->node, s->idx, x->resource, true, x->body, cert_published, s);
}

/*
 * Probe num_resources: the (resource, kind) records the vnode's storage shard holds, RocksDB's estimate
 * (st_shard_estimate_records: exact after a flush, approximate while overwrites sit in the memtable); 0 for
 * a node without the storage service or with an external one.
 */
static uint32_t io_num_resources(void *ctx, chord_node_t *cn)
{
	node_shard_t *s = ctx;
	uint64_t n;
	(void)cn;
	if (!s->st)
		return 0;
	n = st_shard_estimate_records(s->st);
	return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

static bool is_neighbour(const chord_table_t *t, const vp_id_t *id)
{
	for (uint32_t i = 0; i < t->npred; i++)
		if (vp_id_eq(&t->pred[i], id))
			return true;
	for (uint32_t i = 0; i < t->nsucc; i++)
		if (vp_id_eq(&t->succ[i], id))
			return true;
	return false;
}

static void io_deliver(void *ctx, chord_node_t *cn, const chord_delivery_t *d)
{
	node_shard_t *s = ctx;
	node_t *n = s->node;
	uint16_t code = d->msg->contents.code;
	rl_body_t ans;

	if (d->is_answer) {
		req_on_answer(s, d);
		return;
	}
	memset(&ans, 0, sizeof(ans));
	switch (code) {
	case RL_STORE_REQ: case RL_FETCH_REQ: case RL_STAT_REQ: case RL_FIND_REQ:
		if (s->nk && s->cur_signer) {
			store_serve(s, cn, d);
			return;
		}
		if (n->have_kinds && n->kinds.handle && s->cur_signer) {
			vp_id_t orig;
			node_kinds_req_t req = { .msg = d->msg, .vnode = &s->self, .signer = s->cur_signer,
			                         .link_peer = &s->cur_prev };
			if (!dp_cert_originator(d->msg, &s->cur_prev, &orig))
				req.from_neighbour = is_neighbour(chord_node_table(cn), &orig);
			int err = n->kinds.handle(n->kinds.arg, s->idx, &req, &ans);
			if (err) {
				ans.code = RL_ERROR;
				ans.u.error.code = err == VP_EFORBIDDEN || err == VP_EPERM ? RL_ERR_FORBIDDEN
				                   : err == VP_EDATA_TOO_LARGE ? RL_ERR_DATA_TOO_LARGE
				                   : err == VP_EDATA_TOO_OLD ? RL_ERR_DATA_TOO_OLD
				                   : err == VP_EGEN_TOO_LOW ? RL_ERR_GENERATION_COUNTER_TOO_LOW
				                   : err == VP_EUNKNOWN_KIND ? RL_ERR_UNKNOWN_KIND
				                   : RL_ERR_INVALID_MESSAGE;
			}
		} else {
			static const char info[] = "no storage service at this node";
			ans.code = RL_ERROR;
			ans.u.error.code = RL_ERR_FORBIDDEN;
			ans.u.error.info = (rl_bytes_t){ (const uint8_t *)info, sizeof(info) - 1 };
		}
		break;
	case RL_APP_ATTACH_REQ:
		app_attach_answer(s, d->msg, &ans);
		break;
	case RL_CONFIG_UPDATE_REQ:
		config_update_answer(s, d->msg, &ans);
		break;
	default: {
		/* Requests viprd does not serve. */
		static const char info[] = "not served by this node";
		ans.code = RL_ERROR;
		ans.u.error.code = RL_ERR_FORBIDDEN;
		ans.u.error.info = (rl_bytes_t){ (const uint8_t *)info, sizeof(info) - 1 };
		break;
	}
	}
	chord_node_answer(cn, d, &ans);
}

/* ---- shard callbacks ------------------------------------------------------ */

static void boot_connect(node_shard_t *s, uint64_t now)
{
	node_t *n = s->node;
	const dp_io_api_t *api = dp_shard_api(s->sh);
	struct sockaddr_storage ss;
	socklen_t sl;
	s->boot_retry_at = now + BOOT_RETRY_MS;
	if (s->idx > 0) {
		/* Shards 1.. join through shard 0 of their own node when it started the overlay. */
		node_shard_t *z = &n->shards[0];
		if (!z->is_bootstrap && n->nboot) {
			ss = n->boot[s->boot_next % n->nboot];
			sl = n->boot_len[s->boot_next % n->nboot];
		} else {
			ss = z->listen_sa;
			sl = z->listen_len;
		}
	} else {
		uint32_t k = n->nboot;
		do {
			ss = n->boot[s->boot_next % n->nboot];
			sl = n->boot_len[s->boot_next % n->nboot];
			s->boot_next++;
		} while (--k && sa_equal(&ss, &s->listen_sa));
	}
	s->boot_next++;
	s->boot_sa = ss;
	s->boot_len = sl;
	s->boot_link_pending = api->connect(dp_shard_io(s->sh), (struct sockaddr *)&ss, sl, NULL) == 0;
}

static int sh_start(void *arg, dp_shard_t *sh, uint64_t now)
{
	node_shard_t *s = arg;
	s->sh = sh;
	tl_shard = s;
	if (s->node->db) {
		/* nk and its column family belong to this thread from here on. */
		nk_conf_t nc;
		int err;
		nk_conf_default(&nc);
		nc.key = s->id.key;
		nc.cert_der = s->id.der;
		nc.cert_len = (size_t)s->id.der_len;
		s->st = st_db_shard(s->node->db, s->idx);
		err = nk_new(&nc, s->st, s->certs, &s->nk);
		if (err) {
			vp_log_error("node", "storage", "shard=%u err=%s", s->idx, vp_strerror(err));
			return err;
		}
	}
	if (s->is_bootstrap) {
		int err = chord_node_bootstrap(s->vn, now);
		if (err)
			return err;
		vp_log_info("node", "overlay_started", "shard=%u node_id=%s listen=%s", s->idx,
		            vp_id_to_hex(&s->self, (char[VP_ID_HEX_LEN + 1]){ 0 }), s->addr_text);
	} else {
		boot_connect(s, now);
	}
	return 0;
}

static void on_up(node_shard_t *s, dp_io_ev_t *ev, uint64_t now)
{
	plink_ent_t *e;
	vp_id_t peer = ev->peer[0];
	bool matched = false;

	/* The link peer's vnode: the Node-ID we expect from an Attach, else its first that is not ours (a link
	 * between two shards of this node carries our own certificate). */
	for (uint32_t i = 0; i < ev->n_peer; i++)
		if (!vp_id_eq(&ev->peer[i], &s->self)) {
			peer = ev->peer[i];
			break;
		}

	if (s->nlinks == s->cap_links) {
		size_t cap = s->cap_links ? s->cap_links * 2 : 16;
		plink_ent_t *p = realloc(s->links, cap * sizeof(*p));
		if (!p) {
			dp_link_close(ev->link);
			return;
		}
		s->links = p;
		s->cap_links = cap;
	}
	for (uint32_t i = 0; i < ev->n_peer; i++)
		if (expected(s, &ev->peer[i], now, false)) {
			if (!matched)
				peer = ev->peer[i];
			matched = true;
		}
	e = &s->links[s->nlinks++];
	*e = (plink_ent_t){ .serial = ev->link_serial, .peer = peer, .link = ev->link,
	                    .tokens = s->node->conf.flood_burst, .refill_ms = now };
	vp_log_info("node", "link_up", "shard=%u peer=%s node_id=%s role=%s", s->idx, dp_link_peer_addr(ev->link),
	            vp_id_to_hex(&peer, (char[VP_ID_HEX_LEN + 1]){ 0 }),
	            dp_link_is_client(ev->link) ? "client" : "server");
	for (uint32_t i = 0; i < ev->n_peer; i++)
		if (expected(s, &ev->peer[i], now, true))
			chord_node_link_up(s->vn, &ev->peer[i], now);
	if (!matched && s->boot_link_pending && dp_link_is_client(ev->link) &&
	    chord_node_state(s->vn) == CHORD_INIT) {
		s->boot_link_pending = false;
		addr_put(s, &peer, &s->boot_sa, s->boot_len); /* the engine remembers its bootstrap peer */
		int err = chord_node_join(s->vn, &peer, now);
		vp_log_info("node", "joining", "shard=%u via=%s err=%s", s->idx, dp_link_peer_addr(ev->link),
		            vp_strerror(err));
	}
}

static void on_down(node_shard_t *s, dp_io_ev_t *ev, uint64_t now)
{
	plink_ent_t *e = link_by_serial(s, ev->link_serial);
	const dp_io_api_t *api = dp_shard_api(s->sh);
	if (!e) {
		if (s->boot_link_pending && chord_node_state(s->vn) == CHORD_INIT)
			s->boot_link_pending = false;
		return;
	}
	vp_id_t peer = e->peer;
	*e = s->links[--s->nlinks];
	vp_log_info("node", "link_down", "shard=%u node_id=%s reason=%s", s->idx,
	            vp_id_to_hex(&peer, (char[VP_ID_HEX_LEN + 1]){ 0 }), ev->reason);
	for (uint32_t i = 0; i < ev->n_peer; i++)
		if (!api->find(dp_shard_io(s->sh), &ev->peer[i]))
			chord_node_link_down(s->vn, &ev->peer[i], now);
}

/*
 * Token bucket per link: false when the message must be dropped.  A link whose peer is one of this vnode's
 * predecessors or successors now has the neighbour budget (docs/protocol.md §4.9): the replicas of every Store
 * its predecessor takes come over that one link, so flood_rate there would cap the whole ring's Store rate
 * into the predecessor's range.  Everybody else keeps flood_rate.
 */
static bool flood_ok(node_shard_t *s, plink_ent_t *e, uint64_t now)
{
	const node_conf_t *c = &s->node->conf;
	bool nb = chord_node_state(s->vn) == CHORD_JOINED && is_neighbour(chord_node_table(s->vn), &e->peer);
	uint32_t rate = nb ? c->nb_flood_rate : c->flood_rate, burst = nb ? c->nb_flood_burst : c->flood_burst;
	e->tokens += (double)(now - e->refill_ms) * rate / 1000.0;
	if (e->tokens > burst)
		e->tokens = burst;
	e->refill_ms = now;
	if (e->tokens >= 1.0) {
		e->tokens -= 1.0;
		return true;
	}
	e->dropped++;
	s->refused_flood++;
	if (now / 1000 != e->last_log_s) {
		e->last_log_s = now / 1000;
		vp_log_warn("node", "msg_refused", "shard=%u peer=%s reason=flood rate=%u neighbour=%s dropped=%llu",
		            s->idx, dp_link_peer_addr(e->link), rate, nb ? "yes" : "no", (unsigned long long)e->dropped);
	}
	return false;
}

/* Is the vnode the destination of \p m (as chord_node_recv will decide)? */
static bool for_us(node_shard_t *s, const rl_message_t *m)
{
	rl_iter_t it;
	rl_dest_t d0;
	vp_id_t id, next;
	RL_ITER_INIT(&it, &m->hdr.dest);
	if (rl_dest_next(&it, &d0) != 1 || d0.id.len != VP_ID_LEN)
		return false;
	memcpy(id.b, d0.id.p, VP_ID_LEN);
	if (RL_LIST_COUNT(&m->hdr.dest) != 1)
		return false;
	if (d0.type == RL_DEST_NODE && vp_id_eq(&id, &s->self))
		return true;
	if (d0.type == RL_DEST_NODE && dp_shard_api(s->sh)->find(dp_shard_io(s->sh), &id))
		return false;
	if (chord_node_state(s->vn) != CHORD_JOINED)
		return false;
	return chord_table_next_hop(chord_node_table(s->vn), &id, &next) == CHORD_HOP_LOCAL;
}

static void on_msg(node_shard_t *s, dp_io_ev_t *ev, uint64_t now)
{
	plink_ent_t *e = link_by_serial(s, ev->link_serial);
	const char *peer = ev->link ? dp_link_peer_addr(ev->link) : "-";
	rl_message_t m;
	int err;

	if (!e || !ev->link) {
		vp_log_debug("node", "msg_dropped", "shard=%u serial=%llu reason=link_gone", s->idx,
		             (unsigned long long)ev->link_serial);
		return; /* the link went down in this burst */
	}
	if (!flood_ok(s, e, now))
		return;
	err = rl_msg_decode(ev->pkt.buf + ev->pkt.off, ev->pkt.len, &m);
	if (err) {
		s->refused_decode++;
		warn_refused(s, peer, vp_strerror(err), 0);
		return;
	}
	if (m.hdr.overlay != s->node->ccfg.overlay) {
		s->refused_decode++;
		warn_refused(s, peer, "wrong_overlay", m.contents.code);
		return;
	}
	if (vp_log_enabled(VP_LOG_DEBUG))
		vp_log_debug("node", "msg_rx", "shard=%u peer=%s code=0x%x len=%zu txid=%llx", s->idx, peer,
		             m.contents.code, ev->pkt.len, (unsigned long long)m.hdr.txid);
	s->cur = ev;
	s->cur_signer = NULL;
	s->cur_prev = e->peer;
	if (for_us(s, &m)) {
		const dp_cert_ident_t *signer = NULL;
		dp_cert_reason_t why = DP_CERT_OK;
		vp_id_t orig;
		err = dp_cert_msg_verify(s->certs, &m, &e->peer, &signer, &why);
		if (err) {
			s->refused_sig++;
			warn_refused(s, peer, dp_cert_reason_name(why), m.contents.code);
			goto finish;
		}
		if (dp_replay_check(s->replay, signer->hash, m.hdr.txid, now)) {
			if (ans_cache_resend(s, &m, &e->peer, e->link, now)) {
				vp_log_info("node", "answer_resent", "shard=%u peer=%s code=0x%x txid=%llx", s->idx, peer,
				            m.contents.code, (unsigned long long)m.hdr.txid);
				goto finish;
			}
			s->refused_replay++;
			warn_refused(s, peer, "replayed", m.contents.code);
			goto finish;
		}
		if (dp_cert_originator(&m, &e->peer, &orig) || dp_cert_topology_check(&m, &orig, signer, &why)) {
			s->refused_topology++;
			warn_refused(s, peer, dp_cert_reason_name(why), m.contents.code);
			goto finish;
		}
		s->cur_signer = signer;
		s->cur_raw = ev->pkt.buf + ev->pkt.off;
		s->cur_raw_len = ev->pkt.len;
	}
	err = chord_node_recv(s->vn, &e->peer, &m, now);
	if (err && vp_log_enabled(VP_LOG_DEBUG))
		vp_log_debug("node", "recv", "shard=%u peer=%s code=0x%x err=%s", s->idx, peer, m.contents.code,
		             vp_strerror(err));
finish:
	s->cur = NULL;
	s->cur_signer = NULL;
	s->cur_raw = NULL;
}

static void sh_event(void *arg, dp_shard_t *sh, dp_io_ev_t *ev, uint64_t now)
{
	node_shard_t *s = arg;
	(void)sh;
	switch (ev->type) {
	case DP_IO_UP: on_up(s, ev, now); break;
	case DP_IO_DOWN: on_down(s, ev, now); break;
	case DP_IO_MSG: on_msg(s, ev, now); break;
	}
}

static bool status_command(node_shard_t *s, const dp_shard_cmd_t *c, uint64_t now); /* at the end */

static void sh_command(void *arg, dp_shard_t *sh, const dp_shard_cmd_t *c, uint64_t now)
{
	node_shard_t *s = arg;
	if (status_command(s, c, now))
		return;
	(void)sh;
	if (c->op == CMD_LEAVE && !s->leaving) {
		uint32_t k = 0;
		/* A leaving vnode hands its range off; replicating it no longer helps (its successors take over). */
		for (uint32_t i = 0; i < s->nacts; i++)
			if (s->acts[i].a.op != CHORD_STORE_REPLICATE)
				s->acts[k++] = s->acts[i];
		s->nacts = k;
		s->leaving = true;
		s->leave_grace = c->arg;
		s->leave_deadline = now + c->arg;
		s->leave_at = now + LEAVE_LINGER_MS;
		if (chord_node_state(s->vn) == CHORD_JOINED) {
			int err = chord_node_leave(s->vn, now);
			vp_log_info("node", "leaving", "shard=%u node_id=%s err=%s", s->idx,
			            vp_id_to_hex(&s->self, (char[VP_ID_HEX_LEN + 1]){ 0 }), vp_strerror(err));
		} else {
			s->leave_at = now;
		}
	} else if (c->op == CMD_BAD_NODES) {
		int err = dp_cert_store_set_bad_nodes(s->certs, c->ptr, (size_t)c->arg);
		vp_log_info("node", "bad_nodes", "shard=%u count=%llu err=%s", s->idx, (unsigned long long)c->arg,
		            vp_strerror(err));
		free(c->ptr);
	} else if (c->op == CMD_REQUEST) {
		req_start(s, c->ptr, now);
	} else if (c->op == CMD_CALL) {
		node_call_t *k = c->ptr;
		k->fn(k->arg, s->idx);
		free(k);
	}
}

static uint64_t sh_tick(void *arg, dp_shard_t *sh, uint64_t now)
{
	node_shard_t *s = arg;
	chord_state_t st;
	uint64_t next;

	chord_node_tick(s->vn, now);
	st = chord_node_state(s->vn);
	if (st != s->logged_state) {
		const chord_table_t *t = chord_node_table(s->vn);
		s->logged_state = st;
		if (st == CHORD_JOINED)
			vp_log_info("node", "joined", "shard=%u node_id=%s pred=%s succ=%s", s->idx,
			            vp_id_to_hex(&s->self, (char[VP_ID_HEX_LEN + 1]){ 0 }),
			            t->npred ? vp_id_to_hex(&t->pred[0], (char[VP_ID_HEX_LEN + 1]){ 0 }) : "-",
			            t->nsucc ? vp_id_to_hex(&t->succ[0], (char[VP_ID_HEX_LEN + 1]){ 0 }) : "-");
		else if (st == CHORD_LEFT && !s->leaving)
			vp_log_warn("node", "join_failed", "shard=%u", s->idx);
	}
	if (st == CHORD_LEFT && !s->leaving) {
		/* Gave up joining: start over with the next bootstrap peer. */
		int err = 0;
		chord_node_t *fresh;
		chord_io_t io = { .ctx = s, .send = io_send, .forward = io_forward, .attach_info = io_attach_info,
		                  .connect = io_connect, .reach = io_reach, .deliver = io_deliver, .store = io_store,
		                  .num_resources = io_num_resources };
		err = chord_node_new(&s->node->ccfg, &s->self, &io, now, &fresh);
		if (!err) {
			chord_node_free(s->vn);
			s->vn = fresh;
			s->logged_state = CHORD_INIT;
			s->boot_retry_at = now + BOOT_RETRY_MS;
		}
	}
	if (!s->leaving && chord_node_state(s->vn) == CHORD_INIT && !s->boot_link_pending && !s->is_bootstrap &&
	    now >= s->boot_retry_at)
		boot_connect(s, now);
	if (s->leaving) {
		const dp_io_api_t *api = dp_shard_api(sh);
		if (!s->closing && now >= s->leave_at && s->nacts == 0) {
			/* Closed once the handoff is out (paced actions done), at the latest at the deadline. */
			s->closing = true;
			api->close_all(dp_shard_io(sh));
		}
		if ((s->closing && api->count(dp_shard_io(sh)) == 0) || now >= s->leave_deadline) {
			dp_shard_exit(sh);
			return now;
		}
		return now + 10;
	}
	if (s->nk && chord_node_state(s->vn) == CHORD_JOINED && now >= s->cert_due) {
		int err = nk_store_own_cert(s->nk, &s->self, CERT_LIFETIME_S, cert_send, s);
		if (err)
			vp_log_warn("node", "cert_published", "shard=%u err=%s", s->idx, vp_strerror(err));
		s->cert_due = now + CERT_REPUBLISH_MS;
	}
	if (s->nk && chord_node_table(s->vn) != s->ranged) {
		/* The quota follows the ring fraction this vnode holds, its replicas included (§3.1). */
		const chord_table_t *t = chord_node_table(s->vn);
		uint32_t ppb = nk_set_range(s->nk, &t, 1);
		s->ranged = t;
		if (vp_log_enabled(VP_LOG_DEBUG))
			vp_log_debug("node", "store_range", "shard=%u fraction_ppb=%u npred=%u", s->idx, ppb, t->npred);
	}
	next = chord_node_next_wakeup(s->vn);
	if (s->nk && chord_node_state(s->vn) == CHORD_JOINED && s->cert_due < next)
		next = s->cert_due;
	if (s->nacts && now + ACTION_RETRY_MS < next)
		next = now + ACTION_RETRY_MS; /* a paced action resumes */
	{
		uint64_t rn = req_tick(s, now);
		if (rn < next)
			next = rn;
	}
	if (chord_node_state(s->vn) == CHORD_INIT && s->boot_retry_at < next)
		next = s->boot_retry_at;
	return next;
}

static int sh_commit(void *arg, dp_shard_t *sh)
{
	node_shard_t *s = arg;
	(void)sh;
	if (s->nk)
		return store_commit(s);
	if (s->node->have_kinds && s->node->kinds.commit)
		return s->node->kinds.commit(s->node->kinds.arg, s->idx);
	return 0;
}

/* After the iteration's sends: a few records of the expiry sweep, paced (EXPIRE_INTERVAL_MS). */
static void sh_after(void *arg, dp_shard_t *sh, uint64_t now)
{
	node_shard_t *s = arg;
	(void)sh;
	if (!s->st || now < s->expire_due)
		return;
	s->expire_due = now + EXPIRE_INTERVAL_MS;
	st_expire(s->st, EXPIRE_BUDGET, NULL);
}

static void sh_stop(void *arg, dp_shard_t *sh)
{
	node_shard_t *s = arg;
	const dp_io_counters_t *c = dp_shard_api(sh)->counters(dp_shard_io(sh));
	const chord_stats_t *cs = chord_node_stats(s->vn);
	req_fail_all(s);
	if (s->nk) {
		nk_stats_t ks;
		store_commit(s);
		nk_stats(s->nk, &ks);
		vp_log_info("node", "store_stopped",
		            "shard=%u stores=%llu neighbour_stores=%llu entries_refused=%llu bad_signatures=%llu "
		            "replica_refused=%llu fetches=%llu sent=%llu dropped=%llu",
		            s->idx, (unsigned long long)ks.stores, (unsigned long long)ks.neighbour_stores,
		            (unsigned long long)ks.entries_refused, (unsigned long long)ks.bad_signatures,
		            (unsigned long long)ks.replica_refused, (unsigned long long)ks.fetches,
		            (unsigned long long)ks.sent, (unsigned long long)ks.dropped);
		nk_free(s->nk);
		s->nk = NULL;
	}
	vp_log_info("node", "shard_stopped",
	            "shard=%u rx_msgs=%llu tx_msgs=%llu relayed=%llu refused_sig=%llu refused_decode=%llu "
	            "refused_flood=%llu refused_replay=%llu refused_topology=%llu answers_resent=%llu peer_failures=%llu",
	            s->idx, (unsigned long long)c->rx_msgs, (unsigned long long)c->tx_msgs,
	            (unsigned long long)s->relayed, (unsigned long long)s->refused_sig,
	            (unsigned long long)s->refused_decode, (unsigned long long)s->refused_flood,
	            (unsigned long long)s->refused_replay, (unsigned long long)s->refused_topology,
	            (unsigned long long)s->answers_resent, (unsigned long long)cs->peer_failures);
	atomic_fetch_add(&s->node->stopped, 1);
}

/* ---- the node ------------------------------------------------------------- */

static int parse_bootstrap(node_t *n)
{
	char buf[sizeof(n->conf.bootstrap)], *save = NULL, *tok;
	snprintf(buf, sizeof(buf), "%s", n->conf.bootstrap);
	for (tok = strtok_r(buf, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
		if (n->nboot == 16)
			break;
		if (dp_link_addr_parse(tok, &n->boot[n->nboot], &n->boot_len[n->nboot])) {
			vp_log_error("node", "config", "reason=\"bootstrap peer %s is not a numeric address:port\"", tok);
			return VP_ECONFIG;
		}
		n->nboot++;
	}
	return 0;
}

static int shard_prepare(node_t *n, unsigned i)
{
	node_shard_t *s = &n->shards[i];
	dp_cert_store_cfg_t ccfg = { .overlay = n->conf.overlay };
	dp_link_ident_t ident;
	char host[96], addr[128];
	uint16_t port = 0, bound = 0;
	int fd = -1, err;
	chord_io_t io = { .ctx = s, .send = io_send, .forward = io_forward, .attach_info = io_attach_info,
	                  .connect = io_connect, .reach = io_reach, .deliver = io_deliver, .store = io_store,
	                  .num_resources = io_num_resources };
	dp_shard_conf_t sc;
	dp_shard_ops_t ops = { .arg = s, .start = sh_start, .event = sh_event, .command = sh_command,
	                       .tick = sh_tick, .commit = sh_commit, .after = sh_after,
	                       .stop = sh_stop };

	s->node = n;
	s->idx = i;
	s->lconf = n->conf.link;
	s->reqs = calloc(NODE_MAX_REQUESTS, sizeof(*s->reqs));
	if (!s->reqs)
		return VP_ENOMEM;
	if ((err = load_identity(n, i, &s->id, &s->lconf)))
		return err;
	/* The vnode is the certificate's first Node-ID: what every peer takes a link to name. */
	s->self = s->id.ids[0];
	for (unsigned k = 0; k < i; k++)
		if (vp_id_eq(&n->shards[k].self, &s->self)) {
			vp_log_error("node", "config", "reason=\"shards %u and %u have the same Node-ID: each needs its own certificate\"", k, i);
			return VP_ECONFIG;
		}
	ident = (dp_link_ident_t){ .cert = s->id.cert, .key = s->id.key, .chain = NULL };
	if (vp_net_split_hostport(n->conf.listen, true, host, sizeof(host), &port)) {
		vp_log_error("node", "config", "reason=\"[node] listen %s is not address:port\"", n->conf.listen);
		return VP_ECONFIG;
	}
	snprintf(addr, sizeof(addr), strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port ? port + i : 0);
	if ((err = dp_link_listen(addr, 128, &fd, &bound))) {
		vp_log_error("node", "config", "reason=\"cannot listen on %s: %s\"", addr, vp_strerror(err));
		return VP_ECONFIG;
	}
	snprintf(addr, sizeof(addr), strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, bound);
	snprintf(s->addr_text, sizeof(s->addr_text), "%s", addr);
	dp_link_addr_parse(addr, &s->listen_sa, &s->listen_len);
	if (n->conf.link.advertise[0]) {
		char ah[96];
		uint16_t ap;
		if (vp_net_split_hostport(n->conf.link.advertise, true, ah, sizeof(ah), &ap)) {
			close(fd);
			vp_log_error("node", "config", "reason=\"[link] advertise %s is not address:port\"",
			             n->conf.link.advertise);
			return VP_ECONFIG;
		}
		snprintf(s->lconf.advertise, sizeof(s->lconf.advertise), strchr(ah, ':') ? "[%s]:%u" : "%s:%u", ah,
		         (unsigned)(ap + i));
	}
	if ((err = dp_link_candidate(&s->lconf, (struct sockaddr *)&s->listen_sa, &s->cand))) {
		close(fd);
		return err;
	}
	/* Is this shard the bootstrap peer that starts the overlay (the document names only us)? */
	if (i == 0 && n->nboot == 1) {
		struct sockaddr_storage adv;
		socklen_t al;
		s->is_bootstrap = sa_equal(&n->boot[0], &s->listen_sa) ||
		                  (s->lconf.advertise[0] && !dp_link_addr_parse(s->lconf.advertise, &adv, &al) &&
		                   sa_equal(&n->boot[0], &adv));
	}
	if ((err = dp_cert_store_new(&ccfg, &s->certs)) || (err = dp_cert_store_add_root_file(s->certs,
	                                                                                      n->conf.link.ca_file)) ||
	    (err = dp_replay_new(n->conf.reliability_ms * 2, 65536, &s->replay)) ||
	    (!(s->ans = calloc(ANS_CACHE_SLOTS, sizeof(*s->ans))) && (err = VP_ENOMEM)) ||
	    (!(s->ans_ring = malloc(ANS_CACHE_BYTES)) && (err = VP_ENOMEM)) ||
	    (err = dp_link_ctx_new(&s->lconf, s->certs, &ident, &s->lctx))) {
		close(fd);
		vp_log_error("node", "config", "reason=\"shard %u: trust store or TLS context: %s\"", i, vp_strerror(err));
		return err;
	}
	err = chord_node_new(&n->ccfg, &s->self, &io, mono_ms(), &s->vn);
	if (err) {
		close(fd);
		return err;
	}
	sc = (dp_shard_conf_t){ .index = i, .cpu = n->conf.pin ? (int)i : -1, .api = &dp_io_kernel,
	                        .io = { .links = s->lctx, .listen_fd = fd, .burst = n->conf.io_burst,
	                                .max_message = n->conf.max_message_size },
	                        .tx_bytes = TX_ARENA, .tx_msgs = TX_MSGS, .cmd_ring = CMD_RING,
	                        .max_wait_ms = MAX_WAIT_MS };
	err = dp_shard_new(&sc, &ops, &s->sh);
	if (err)
		return err;
	vp_log_info("node", "vnode", "shard=%u node_id=%s listen=%s candidate_port=%u bootstrap=%s", i,
	            vp_id_to_hex(&s->self, (char[VP_ID_HEX_LEN + 1]){ 0 }), addr, s->cand.addr.port,
	            s->is_bootstrap ? "yes" : "no");
	return 0;
}

int node_new(const node_conf_t *conf, const node_kinds_ops_t *kinds, node_t **out)
{
	node_t *n;
	int err;
	char lockpath[512];
	long cpus;

	*out = NULL;
	n = calloc(1, sizeof(*n));
	if (!n)
		return VP_ENOMEM;
	n->conf = *conf;
	n->given = *conf;
	n->lock_fd = -1;
	pthread_mutex_init(&n->push_mu, NULL);
	pthread_mutex_init(&n->trust_mu, NULL);
	if (kinds) {
		n->kinds = *kinds;
		n->have_kinds = true;
	}
	if (mkdir(n->conf.data_dir, 0700) && errno != EEXIST) {
		vp_log_error("node", "config", "reason=\"cannot create data_dir %s: %s\"", n->conf.data_dir,
		             strerror(errno));
		err = VP_ECONFIG;
		goto fail;
	}
	snprintf(lockpath, sizeof(lockpath), "%s/lock", n->conf.data_dir);
	n->lock_fd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (n->lock_fd < 0 || flock(n->lock_fd, LOCK_EX | LOCK_NB)) {
		vp_log_error("node", "config", "reason=\"data_dir %s is in use by another viprd\"", n->conf.data_dir);
		err = VP_ECONFIG;
		goto fail;
	}
	if ((err = parse_bootstrap(n)))
		goto fail;
	if (n->nboot == 0) {
		vp_log_error("node", "config", "reason=\"the configuration document names no bootstrap peer\"");
		err = VP_ECONFIG;
		goto fail;
	}
	cpus = sysconf(_SC_NPROCESSORS_ONLN);
	n->nshards = n->conf.shards ? n->conf.shards : (unsigned)(cpus > 0 ? cpus : 1);
	if (n->nshards > NODE_MAX_SHARDS)
		n->nshards = NODE_MAX_SHARDS;
	n->ccfg = chord_cfg_default();
	n->ccfg.overlay = rl_overlay_id(n->conf.overlay, strlen(n->conf.overlay));
	n->ccfg.initial_ttl = (uint8_t)n->conf.initial_ttl;
	n->ccfg.reactive = n->conf.reactive;
	n->ccfg.update_interval_ms = n->conf.update_interval_ms;
	n->ccfg.ping_interval_ms = n->conf.ping_interval_ms;
	n->ccfg.request_timeout_ms = n->conf.reliability_ms;
	/* The ring check merges parallel rings through the bootstrap peer: as often as the updates. */
	n->ccfg.ring_check_interval_ms = n->conf.update_interval_ms;
	n->shards = calloc(n->nshards, sizeof(*n->shards));
	if (!n->shards) {
		err = VP_ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < n->nshards; i++)
		if ((err = shard_prepare(n, i)))
			goto fail;
	if ((err = trust_open(n)))
		goto fail;
	if (!kinds && n->conf.storage) {
		st_config_t sc;
		st_kind_t certk = nk_kind_cert_by_node();
		char path[512];
		snprintf(path, sizeof(path), "%s/store", n->conf.data_dir);
		st_config_default(&sc);
		sc.path = path;
		sc.n_shards = n->nshards;
		/* Each shard is one vnode: a storing peer with its own Node-ID and ring range, so it polices each
		 * signer at the whole rate (docs/protocol.md §3.4); split n ways, a node of 8 vnodes held 8 ranges'
		 * share of a publish at one range's limit. */
		sc.rate_per_shard = true;
		sc.vipr_kind_id = n->conf.vipr_kind_id;
		if (n->conf.vipr_quota)
			sc.vipr_quota = n->conf.vipr_quota;
		sc.kinds = &certk;
		sc.n_kinds = 1;
		if ((err = st_db_open(&sc, &n->db))) {
			vp_log_error("node", "config", "reason=\"cannot open the store %s: %s\"", path, vp_strerror(err));
			err = VP_ECONFIG;
			goto fail;
		}
		for (unsigned i = 0; i < n->nshards; i++)
			vp_log_info("node", "store_opened", "shard=%u path=%s records=%llu", i, path,
			            (unsigned long long)st_shard_estimate_records(st_db_shard(n->db, i)));
	}
	*out = n;
	return 0;
fail:
	node_free(n);
	return err;
}

/*
 * Push one command for shard \p i from any thread (the rings have one producer at a time: push_mu).  0, or
 * VP_EBUSY (the ring is full), or with \p running_only VP_ESTATE when the node does not take requests: checked
 * and pushed under the lock, so node_leave's CMD_LEAVE comes after every accepted request and the shard sees
 * each one (and fails it at its stop if it has not answered).
 */
static int cmd_push(node_t *n, unsigned i, const dp_shard_cmd_t *c, bool running_only)
{
	int err = 0;
	pthread_mutex_lock(&n->push_mu);
	if (running_only && !atomic_load(&n->running))
		err = VP_ESTATE;
	else if (dp_shard_cmd_push(n->shards[i].sh, c, 1) != 1)
		err = VP_EBUSY;
	pthread_mutex_unlock(&n->push_mu);
	return err;
}

int node_start(node_t *n)
{
	for (unsigned i = 0; i < n->nshards; i++) {
		int err = dp_shard_start(n->shards[i].sh);
		if (err)
			return err;
	}
	n->started = true;
	atomic_store(&n->running, true);
	return 0;
}

int node_leave(node_t *n, uint64_t timeout_ms)
{
	int result = 0;
	if (!n->started)
		return 0;
	pthread_mutex_lock(&n->push_mu);
	atomic_store(&n->running, false);
	for (unsigned i = 0; i < n->nshards; i++) {
		dp_shard_cmd_t c = { .op = CMD_LEAVE, .arg = timeout_ms };
		if (dp_shard_cmd_push(n->shards[i].sh, &c, 1) != 1)
			vp_log_error("node", "leave", "shard=%u reason=ring_full", i);
	}
	pthread_mutex_unlock(&n->push_mu);
	for (unsigned i = 0; i < n->nshards; i++) {
		int err = dp_shard_join(n->shards[i].sh);
		if (err && !result)
			result = err;
	}
	n->started = false;
	return result;
}

bool node_failed(const node_t *n)
{
	return n->started && atomic_load(&((node_t *)n)->stopped) > 0;
}

void node_reload(node_t *n, const node_conf_t *fresh)
{
	char why[OD_WHY_MAX];
	node_conf_t c = *fresh;
	/* Said at the old level, so a quieter new one still shows the reload happened. */
	vp_log_info("node", "reloaded", "log_level=%s", level_words[fresh->log_level]);
	vp_log_setup((vp_log_level_t)fresh->log_level, NULL);
	n->conf.log_level = fresh->log_level;
	/* The document, offered to the trust the node keeps (doc_offer): only a current configuration signer's
	 * document with a higher sequence is taken, so a replayed older one is refused; its bad-node list applies
	 * at once, other overlay-wide values need a restart. */
	if (n->trust) {
		char *xml = NULL;
		size_t len = 0;
		uint64_t seq = 0, cur = 0;
		int err;
		if (read_file(c.config_file, &xml, &len)) {
			vp_log_warn("node", "reload_refused", "what=config_file reason=\"cannot read %s\"", c.config_file);
		} else {
			err = doc_offer(n, xml, len, "sighup", &seq, &cur, why);
			if (err == VP_EDATA_TOO_OLD && seq == cur)
				vp_log_info("node", "config_unchanged", "sequence=%llu", (unsigned long long)cur);
			else if (err)
				vp_log_warn("node", "reload_refused", "what=config_file sequence=%llu current=%llu reason=\"%s\"",
				            (unsigned long long)seq, (unsigned long long)cur, why);
		}
		free(xml);
	}
	if (strcmp(c.listen, n->given.listen) || c.shards != n->given.shards || strcmp(c.data_dir, n->given.data_dir) ||
	    c.pin != n->given.pin || c.io_burst != n->given.io_burst || c.flood_rate != n->given.flood_rate ||
	    c.flood_burst != n->given.flood_burst || c.nb_flood_rate != n->given.nb_flood_rate ||
	    c.nb_flood_burst != n->given.nb_flood_burst || memcmp(&c.link, &n->given.link, sizeof(c.link)))
		vp_log_warn("node", "reload_needs_restart", "what=node_or_link_options");
}

int node_request(node_t *n, unsigned shard, const vp_id_t *dest, bool resource, const rl_body_t *body,
                 node_done_fn done, void *arg)
{
	node_req_t *r;
	uint8_t *tmp;
	vp_wr_t wr;
	int err;

	if (!n || shard >= n->nshards || !dest || !body || !done)
		return VP_EINVAL;
	switch (body->code) {
	case RL_STORE_REQ: case RL_FETCH_REQ: case RL_STAT_REQ: case RL_FIND_REQ: case RL_PROBE_REQ:
	case RL_APP_ATTACH_REQ: case RL_PING_REQ: case RL_CONFIG_UPDATE_REQ:
		break;
	default:
		return VP_EINVAL;
	}
	if (!atomic_load(&n->running))
		return VP_ESTATE;
	tmp = malloc(n->conf.max_message_size);
	if (!tmp)
		return VP_ENOMEM;
	vp_wr_init(&wr, tmp, n->conf.max_message_size - 512u); /* room for the header and SecurityBlock */
	err = rl_body_encode(&wr, body);
	if (!err && wr.err)
		err = wr.err;
	if (err) {
		free(tmp);
		return err == VP_ESPACE ? VP_ETOOBIG : err;
	}
	r = malloc(sizeof(*r) + vp_wr_len(&wr));
	if (!r) {
		free(tmp);
		return VP_ENOMEM;
	}
	*r = (node_req_t){ .done = done, .arg = arg, .dest = *dest, .resource = resource, .code = body->code,
	                   .body_len = (uint32_t)vp_wr_len(&wr) };
	memcpy(r->body, tmp, r->body_len);
	free(tmp);
	if (tl_shard == &n->shards[shard]) {
		req_start(tl_shard, r, mono_ms());
		return 0;
	}
	if ((err = cmd_push(n, shard, &(dp_shard_cmd_t){ .op = CMD_REQUEST, .ptr = r }, true)))
		free(r);
	return err;
}

int node_call(node_t *n, unsigned shard, node_call_fn fn, void *arg)
{
	node_call_t *k;
	int err;
	if (!n || shard >= n->nshards || !fn)
		return VP_EINVAL;
	if (tl_shard == &n->shards[shard]) {
		fn(arg, shard);
		return 0;
	}
	if (!(k = malloc(sizeof(*k))))
		return VP_ENOMEM;
	*k = (node_call_t){ fn, arg };
	if ((err = cmd_push(n, shard, &(dp_shard_cmd_t){ .op = CMD_CALL, .ptr = k }, true)))
		free(k);
	return err;
}

/* Insert \p id into best[0..*n) (nearest first by clockwise distance from \p from, at most max, no duplicates). */
static void guess_add(const vp_id_t *from, const vp_id_t *id, vp_id_t *best, size_t *n, size_t max)
{
	vp_u128_t d = vp_id_dist(from, id);
	size_t i = *n;
	for (size_t j = 0; j < *n; j++)
		if (vp_id_eq(&best[j], id))
			return;
	while (i > 0 && vp_id_dist(from, &best[i - 1]) > d)
		i--;
	if (i >= max)
		return;
	if (*n < max)
		(*n)++;
	memmove(&best[i + 1], &best[i], (*n - 1 - i) * sizeof(*best));
	best[i] = *id;
}

/*
 * Does the vnode know at least half of the ring?  Its neighbours span npred + nsucc gaps around it, so the
 * ring holds about (npred + nsucc) * 2^128 / span vnodes.  A guess of the replicas is right only where the
 * vnode knows the peers around the Resource-ID: on 16 processes each node knows 13-15 of the 15 others and
 * 9 fetches in 10 guessed right; on 64 processes a third, 2 in 3 guessed wrong and each wrong guess cost a
 * Fetch answered for nothing.  (Neighbour sets that meet: the vnode knows the whole ring.)
 */
static bool knows_most_of_ring(const node_shard_t *s)
{
	const chord_table_t *t = chord_node_table(s->vn);
	uint64_t known = 1, gaps;
	vp_u128_t span;
	if (!t || t->whole_ring || !t->npred || !t->nsucc)
		return true;
	for (uint32_t i = 0; i < t->npred; i++)
		for (uint32_t j = 0; j < t->nsucc; j++)
			if (vp_id_eq(&t->pred[i], &t->succ[j]))
				return true;
	gaps = t->npred + t->nsucc;
	span = vp_id_dist(&t->pred[t->npred - 1], &t->succ[t->nsucc - 1]);
	known += t->nroute;
	for (size_t i = 0; i < s->nlinks; i++)
		if (!vp_id_eq(&s->links[i].peer, &s->self) && !chord_table_contains(t, &s->links[i].peer))
			known++;
	/* known >= (gaps * 2^128 / span) / 2, both sides scaled by 2^-16 to stay within 128 bits */
	return (span >> 16) * (vp_u128_t)known >= (vp_u128_t)gaps << 111;
}

size_t node_guess_successors(node_t *n, unsigned shard, const vp_id_t *id, vp_id_t *out, size_t max)
{
	node_shard_t *s;
	if (!n || shard >= n->nshards || !id || !out || !max || tl_shard != &n->shards[shard])
		return 0;
	s = tl_shard;
	if (s->leaving || chord_node_state(s->vn) != CHORD_JOINED || !knows_most_of_ring(s))
		return 0;
	return guess_holders(s, id, out, max);
}

vp_id_t node_after(const vp_id_t *peer)
{
	return vp_id_add_pow2(peer, 0);
}

int node_app_set(node_t *n, uint16_t application, const char *addr)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	dp_link_conf_t lc = n->conf.link;
	int err;

	if (n->started)
		return VP_ESTATE;
	if (!addr || dp_link_addr_parse(addr, &ss, &sl))
		return VP_EINVAL;
	for (uint32_t i = 0; i < n->napps; i++)
		if (n->apps[i].application == application) {
			lc.advertise[0] = 0;
			return dp_link_candidate(&lc, (struct sockaddr *)&ss, &n->apps[i].cand);
		}
	if (n->napps == MAX_APPS)
		return VP_ESPACE;
	lc.advertise[0] = 0;
	if ((err = dp_link_candidate(&lc, (struct sockaddr *)&ss, &n->apps[n->napps].cand)))
		return err;
	n->apps[n->napps++].application = application;
	return 0;
}

int node_app_connect(const rl_app_attach_t *ans, unsigned timeout_ms, int *fd)
{
	rl_iter_t it;
	rl_ice_candidate_t c;
	bool any = false;
	int r;

	*fd = -1;
	RL_ITER_INIT(&it, &ans->candidates);
	while ((r = rl_ice_candidate_next(&it, &c)) == 1) {
		char host[INET6_ADDRSTRLEN];
		if (c.overlay_link != RL_LINK_TLS_TCP_FH_NO_ICE ||
		    !inet_ntop(c.addr.type == RL_ADDR_IPV4 ? AF_INET : AF_INET6, c.addr.addr, host, sizeof(host)))
			continue;
		any = true;
		if (!vp_net_connect_tcp(host, c.addr.port, timeout_ms, VP_NET_NUMERIC, fd))
			return 0;
	}
	return any ? VP_EIO : VP_ENOTFOUND;
}

const vp_id_t *node_vnode_id(const node_t *n, unsigned i)
{
	return i < n->nshards ? &n->shards[i].self : NULL;
}

unsigned node_shards(const node_t *n)
{
	return n->nshards;
}

void node_free(node_t *n)
{
	if (!n)
		return;
	if (n->started)
		node_leave(n, 1000);
	for (unsigned i = 0; n->shards && i < n->nshards; i++) {
		node_shard_t *s = &n->shards[i];
		dp_shard_free(s->sh);
		if (s->vn)
			chord_node_free(s->vn);
		dp_link_ctx_free(s->lctx);
		dp_replay_free(s->replay);
		free(s->ans);
		free(s->ans_ring);
		dp_cert_store_free(s->certs);
		free(s->links);
		free(s->reqs);
		free(s->pb.ent);
		free(s->pb.arena);
		free(s->cpb.ent);
		free(s->cpb.arena);
		free(s->acts);
		nk_free(s->nk);
		OPENSSL_free(s->id.der);
		X509_free(s->id.cert);
		EVP_PKEY_free(s->id.key);
	}
	free(n->shards);
	st_db_close(n->db);
	if (n->lock_fd >= 0)
		close(n->lock_fd);
	pthread_mutex_destroy(&n->push_mu);
	od_trust_free(n->trust);
	pthread_mutex_destroy(&n->trust_mu);
	free(n);
}

/* ---- status for the admin socket and metrics ------------------------------------------------------------ */

/* Far from the node's own command numbers. */
#define CMD_STATUS 0x5354u

typedef struct status_req {
	_Atomic unsigned remaining; /* shards still to answer, + 1 for the caller while it pushes */
	node_status_fn cb;
	void *ctx;
	uint32_t vipr_kind; /* the ViPR Kind-ID whose quota is reported */
	node_status_t st; /* flexible: nshards entries */
} status_req_t;

static void status_done(status_req_t *r)
{
	if (atomic_fetch_sub_explicit(&r->remaining, 1, memory_order_acq_rel) != 1)
		return;
	r->cb(r->ctx, &r->st);
	free(r);
}

/* On shard s's thread: copy what it owns. */
static bool status_command(node_shard_t *s, const dp_shard_cmd_t *c, uint64_t now)
{
	status_req_t *r;
	node_shard_status_t *o;
	const dp_io_counters_t *ioc;

	if (c->op != CMD_STATUS)
		return false;
	r = c->ptr;
	o = &r->st.shard[s->idx];
	o->valid = true;
	o->shard = s->idx;
	o->self = s->self;
	o->state = chord_node_state(s->vn);
	o->leaving = s->leaving;
	snprintf(o->listen, sizeof(o->listen), "%s", s->addr_text);
	o->nlinks = (uint32_t)s->nlinks;
	memcpy(&o->table, chord_node_table(s->vn), sizeof(o->table));
	for (uint32_t i = 0; i < o->table.npred; i++)
		o->live_pred += dp_shard_api(s->sh)->find(dp_shard_io(s->sh), &o->table.pred[i]) != NULL;
	for (uint32_t i = 0; i < o->table.nsucc; i++)
		o->live_succ += dp_shard_api(s->sh)->find(dp_shard_io(s->sh), &o->table.succ[i]) != NULL;
	ioc = dp_shard_api(s->sh)->counters(dp_shard_io(s->sh));
	if (ioc)
		o->io = *ioc;
	o->chord = *chord_node_stats(s->vn);
	o->relayed = s->relayed;
	o->refused_sig = s->refused_sig;
	o->refused_decode = s->refused_decode;
	o->refused_flood = s->refused_flood;
	o->refused_replay = s->refused_replay;
	o->refused_topology = s->refused_topology;
	o->taken_ms = now;
	if (s->st && s->nk) {
		o->storage = true;
		o->records = st_shard_estimate_records(s->st);
		st_shard_stats(s->st, &o->store);
		nk_stats(s->nk, &o->kinds);
		o->quota_used = st_quota_used(s->st, &s->self, r->vipr_kind);
		o->quota_limit = st_quota_limit_of(s->st, r->vipr_kind);
	}
	status_done(r);
	return true;
}

int node_status_async(node_t *n, node_status_fn cb, void *ctx)
{
	status_req_t *r;

	if (!n || !cb)
		return VP_EINVAL;
	if (!n->started || node_failed(n))
		return VP_ESTATE;
	r = calloc(1, sizeof(*r) + n->nshards * sizeof(r->st.shard[0]));
	if (!r)
		return VP_ENOMEM;
	r->cb = cb;
	r->ctx = ctx;
	r->vipr_kind = n->conf.vipr_kind_id ? n->conf.vipr_kind_id : VP_VIPR_KIND_ID;
	r->st.nshards = n->nshards;
	atomic_init(&r->remaining, n->nshards + 1);
	for (unsigned i = 0; i < n->nshards; i++) {
		dp_shard_cmd_t c = { .op = CMD_STATUS, .arg = i, .ptr = r };
		r->st.shard[i].shard = i;
		/* Through cmd_push (push_mu): the ring has one producer at a time.  Pushed without the lock, a status
		 * racing a node_request from another thread took the same slot, and one of the two commands was lost
		 * (a request never called back: issue 16). */
		if (cmd_push(n, i, &c, false))
			status_done(r); /* ring full: this shard stays !valid */
	}
	status_done(r);
	return 0;
}
