/* libFuzzer target: the vnode storage service (nk_handle, nk_commit) on arbitrary Store, Fetch, Stat and
 * Find bodies from a verified signer, and the fetcher's nk_fetch_verify on arbitrary FetchAns bodies.
 * The first input byte picks the method; the rest is the message body. */
#include <ftw.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control/node/kinds.h"
#include "pki_testkit.h"

#define OVERLAY "vipr.example"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[] = "/tmp/vp-fuzz-nk-XXXXXX";
static st_db_t *db;
static dp_cert_store_t *cs;
static nk_t *nk;
static chord_table_t table;
static pk_ca_t ca;
static pk_node_t node;
static const dp_cert_ident_t *signer;
static vp_id_t self, sender;

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb; (void)flag; (void)ftw;
	return remove(p);
}

static void cleanup(void)
{
	nk_free(nk);
	st_db_close(db);
	nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	st_config_t cfg;
	st_kind_t certk = nk_kind_cert_by_node();
	dp_cert_store_cfg_t ccfg = { OVERLAY, 64, NULL };
	pk_opts_t o = { OVERLAY, -60, 86400, 0, 0, 0 };
	nk_conf_t nc;
	dp_cert_reason_t why;
	vp_id_t peers[4] = { pk_id(0x10), pk_id(0x20), pk_id(0x30), pk_id(0x50) };
	chord_table_params_t tp = chord_table_params_default();
	(void)argc;
	(void)argv;
	self = pk_id(0x40);
	sender = pk_id(0x30);
	if (!mkdtemp(dir))
		abort();
	st_config_default(&cfg);
	cfg.path = dir;
	cfg.kinds = &certk;
	cfg.n_kinds = 1;
	cfg.block_cache_bytes = 8u << 20;
	cfg.write_buffer_bytes = 4u << 20;
	nk_conf_default(&nc);
	if (st_db_open(&cfg, &db) || dp_cert_store_new(&ccfg, &cs) || pk_ca_new(&ca, "root") ||
	    dp_cert_store_add_root(cs, ca.cert) || pk_node_new(&node, &ca, &sender, 1, &o) ||
	    dp_cert_verify_der(cs, node.der, node.der_len, &signer, &why) ||
	    nk_new(&nc, st_db_shard(db, 0), cs, &nk) || chord_table_build(&table, &tp, &self, peers, 4))
		abort();
	atexit(cleanup);
	return 0;
}

static int send_nothing(void *arg, const nk_send_t *s)
{
	(void)arg;
	(void)s;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint16_t codes[] = { RL_STORE_REQ, RL_FETCH_REQ, RL_STAT_REQ, RL_FIND_REQ, RL_FETCH_ANS };
	rl_message_t m;
	nk_request_t r;
	nk_answer_t a;
	if (size < 1 || size > RL_MAX_MESSAGE_SIZE)
		return 0;
	memset(&m, 0, sizeof(m));
	m.contents.code = codes[data[0] % 5];
	m.contents.body = (rl_bytes_t){ data + 1, (uint32_t)(size - 1) };
	m.sec.certs.items = &node.rlcert;
	m.sec.certs.n_items = 1;
	if (m.contents.code == RL_FETCH_ANS) {
		st_kind_t kinds[2] = { st_kind_vipr(0), nk_kind_cert_by_node() };
		nk_fetch_result_t res;
		nk_fetch_verify(cs, kinds, 2, &self, &m, NULL, NULL, &res);
		return 0;
	}
	memset(&r, 0, sizeof(r));
	r.msg = &m;
	r.vnode = &self;
	r.table = &table;
	r.signer = signer;
	r.sender = &sender;
	if (nk_handle(nk, &r, &a) == 1)
		nk_commit(nk, NULL, send_nothing, NULL);
	return 0;
}
