/*
 * bench_kinds - the vnode storage service (control/node/kinds.h) against the bare store.
 *
 *   nk_store   Stores of one signed ViPR registration each through nk_handle + nk_commit (decode,
 *              verify the StoredData's ECDSA signature, per-entry signer, store, WAL commit every
 *              128), baseline: st_store of the same entries in batches of 128, nothing verified.
 *   nk_handoff entries sent by nk_action(REPLICATE) over the whole range (range scan, StoreReq per
 *              Resource-ID with the certificates); baseline: st_range_scan visiting the same entries.
 *
 * Usage: bench_kinds [--n N] (default 20000).  Prints `name value unit (baseline value unit, ratio x)`;
 * ratios are ours/baseline for rates (below 1 = the cost of verification and encoding).
 */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "common/clock.h"
#include "control/node/ca.h"
#include "control/node/kinds.h"
#include "storage/vipr_kind.h"

#define OVERLAY "vipr.example"
#define BATCH 128

static void die(const char *what) __attribute__((noreturn));
static void die(const char *what)
{
	fprintf(stderr, "bench_kinds: %s failed\n", what);
	exit(1);
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb; (void)flag; (void)ftw;
	return remove(p);
}

typedef struct ent {
	vp_id_t rid;
	uint8_t key[ST_VIPR_KEY_LEN];
	uint8_t val[64];
	size_t vlen;
	uint8_t sig[256];
	uint8_t sigenc[384]; /* the Signature as the store keeps it */
	size_t sigenc_len;
	rl_stored_data_t sd;
	uint8_t body[1024];
	size_t body_len;
} ent_t;

static st_db_t *open_db(char *dir)
{
	st_config_t cfg;
	st_db_t *db;
	if (!mkdtemp(dir))
		die("mkdtemp");
	st_config_default(&cfg);
	cfg.path = dir;
	cfg.rate[ST_RATE_STORE].rate = 0; /* both sides unpoliced: measure the work, not the buckets */
	if (st_db_open(&cfg, &db))
		die("st_db_open");
	return db;
}

static int send_count(void *arg, const nk_send_t *s)
{
	rl_iter_t it;
	rl_store_kind_data_t kd;
	uint64_t *n = arg;
	RL_ITER_INIT(&it, &s->body->u.store_req.kind_data);
	while (rl_store_kind_data_next(&it, &kd) == 1)
		*n += RL_LIST_COUNT(&kd.values);
	return 0;
}

static int scan_entry(void *arg, const vp_id_t *r, uint32_t kind, const st_entry_t *e)
{
	(void)r; (void)kind; (void)e;
	(*(uint64_t *)arg)++;
	return 0;
}

int main(int argc, char **argv)
{
	size_t n = 20000;
	ca_t *ca;
	EVP_PKEY *key;
	X509 *cert;
	uint8_t *der;
	size_t der_len;
	vp_id_t claimant;
	uint8_t hash[RL_MAX_HASH_LEN];
	rl_signer_identity_t sid;
	ent_t *ents;
	char dir_a[] = "/tmp/vp-bk-a-XXXXXX", dir_b[] = "/tmp/vp-bk-b-XXXXXX";
	st_db_t *dba, *dbb;
	dp_cert_store_t *cs;
	dp_cert_store_cfg_t ccfg = { OVERLAY, 0, NULL };
	const dp_cert_ident_t *signer;
	dp_cert_reason_t why;
	nk_conf_t nc;
	nk_t *nk;
	rl_cert_t rlcert;
	uint64_t t0, t1, sent = 0, scanned = 0;
	double ours, base;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--n") && i + 1 < argc)
			n = strtoul(argv[++i], NULL, 10);
		else
			die("usage: bench_kinds [--n N]");
	}
	if (ca_create(OVERLAY, CA_KEY_EC_P256, 86400, &ca) || ca_key_generate(CA_KEY_EC_P256, &key) ||
	    ca_random_node_ids(&claimant, 1))
		die("ca");
	{
		ca_issue_params_t p = { "bench@example.com", &claimant, 1, 86400, 0 };
		if (ca_issue_key(ca, key, &p, &cert) || ca_cert_der(cert, &der, &der_len))
			die("issue");
	}
	rl_signer_cert_hash(der, der_len, hash, &sid);
	rlcert = (rl_cert_t){ RL_CERT_X509, { der, (uint32_t)der_len } };
	if (!(ents = calloc(n, sizeof(*ents))))
		die("calloc");
	for (size_t i = 0; i < n; i++) {
		ent_t *e = &ents[i];
		char name[32];
		int len = snprintf(name, sizeof(name), "+1555%07zu", i);
		st_vipr_key_t k = { claimant, 1 };
		st_vipr_value_t v = { claimant, 1, ST_VIPR_PVP_WITH_CALLER_ID, NULL, 0 };
		rl_store_kind_data_t kd;
		rl_body_t b;
		vp_wr_t wr;
		e->rid = vp_id_from_name(name, (size_t)len);
		st_vipr_key_encode(&k, e->key);
		st_vipr_value_encode(&v, e->val, sizeof(e->val), &e->vlen);
		e->sd.storage_time = vp_time_wall_ms();
		e->sd.lifetime = 86400;
		e->sd.model = RL_MODEL_DICTIONARY;
		e->sd.key = (rl_bytes_t){ e->key, ST_VIPR_KEY_LEN };
		e->sd.exists = true;
		e->sd.value = (rl_bytes_t){ e->val, (uint32_t)e->vlen };
		if (rl_stored_data_sign(key, e->rid.b, VP_ID_LEN, ST_VIPR_KIND_ID_DEFAULT, &e->sd, &sid, e->sig,
		                        sizeof(e->sig)))
			die("sign");
		vp_wr_init(&wr, e->sigenc, sizeof(e->sigenc));
		if (rl_signature_encode(&wr, &e->sd.sig))
			die("signature");
		e->sigenc_len = vp_wr_len(&wr);
		memset(&kd, 0, sizeof(kd));
		kd.kind = ST_VIPR_KIND_ID_DEFAULT;
		kd.values.items = &e->sd;
		kd.values.n_items = 1;
		memset(&b, 0, sizeof(b));
		b.code = RL_STORE_REQ;
		b.u.store_req.resource = (rl_bytes_t){ e->rid.b, VP_ID_LEN };
		b.u.store_req.kind_data.items = &kd;
		b.u.store_req.kind_data.n_items = 1;
		vp_wr_init(&wr, e->body, sizeof(e->body));
		if (rl_body_encode(&wr, &b))
			die("encode");
		e->body_len = vp_wr_len(&wr);
	}

	/* ours: through the storage service */
	dba = open_db(dir_a);
	if (dp_cert_store_new(&ccfg, &cs) || dp_cert_store_add_root(cs, ca_cert(ca)) ||
	    dp_cert_verify_der(cs, der, der_len, &signer, &why))
		die("cert store");
	nk_conf_default(&nc);
	if (nk_new(&nc, st_db_shard(dba, 0), cs, &nk))
		die("nk_new");
	t0 = vp_time_mono_ns();
	for (size_t i = 0; i < n; i++) {
		rl_message_t m;
		nk_request_t r = { &m, &claimant, NULL, signer, &claimant, i };
		nk_answer_t a;
		memset(&m, 0, sizeof(m));
		m.contents.code = RL_STORE_REQ;
		m.contents.body = (rl_bytes_t){ ents[i].body, (uint32_t)ents[i].body_len };
		m.sec.certs.items = &rlcert;
		m.sec.certs.n_items = 1;
		if (nk_handle(nk, &r, &a) != 1)
			die("nk_handle");
		if ((i + 1) % BATCH == 0 && nk_commit(nk, NULL, NULL, NULL))
			die("nk_commit");
	}
	if (nk_commit(nk, NULL, NULL, NULL))
		die("nk_commit");
	t1 = vp_time_mono_ns();
	ours = (double)n / ((double)(t1 - t0) / 1e9);

	/* baseline: the bare store, same entries and batches, nothing decoded or verified */
	dbb = open_db(dir_b);
	t0 = vp_time_mono_ns();
	{
		st_shard_t *sh = st_db_shard(dbb, 0);
		for (size_t i = 0; i < n; i++) {
			ent_t *e = &ents[i];
			st_signer_t sg = { &claimant, 1, NULL, 0 };
			st_entry_t se = { 0, e->key, ST_VIPR_KEY_LEN, e->sd.storage_time, 86400, true, e->val,
			                  (uint32_t)e->vlen, e->sigenc, (uint32_t)e->sigenc_len, &sg, 0, 0, { { 0 } } };
			st_kind_data_t kd = { ST_VIPR_KIND_ID_DEFAULT, 0, &se, 1 };
			st_store_req_t rq = { e->rid, 0, &kd, 1, &claimant, 1, NULL, 0, false };
			if (i % BATCH == 0 && st_batch_begin(sh))
				die("begin");
			if (st_store(sh, &rq, NULL, NULL))
				die("st_store");
			if ((i + 1) % BATCH == 0 && st_batch_commit(sh))
				die("commit");
		}
		if (n % BATCH && st_batch_commit(sh))
			die("commit");
	}
	t1 = vp_time_mono_ns();
	base = (double)n / ((double)(t1 - t0) / 1e9);
	printf("nk_store %.0f stores/s (baseline %.0f stores/s st_store unverified, ratio %.2fx)\n", ours, base,
	       ours / base);

	/* handoff: nk_action REPLICATE over the whole ring vs a bare range scan */
	{
		chord_store_action_t act = { CHORD_STORE_REPLICATE, claimant, claimant, claimant, 1, 0 };
		st_visitor_t v = { NULL, scan_entry, &scanned };
		uint64_t sent_n = 0;
		t0 = vp_time_mono_ns();
		if (nk_action(nk, &act, send_count, &sent, &sent_n) || sent != n)
			die("nk_action");
		t1 = vp_time_mono_ns();
		ours = (double)sent / ((double)(t1 - t0) / 1e9);
		t0 = vp_time_mono_ns();
		if (st_range_scan(st_db_shard(dba, 0), &claimant, &claimant, &v) || scanned != n)
			die("st_range_scan");
		t1 = vp_time_mono_ns();
		base = (double)scanned / ((double)(t1 - t0) / 1e9);
		printf("nk_handoff %.0f entries/s (baseline %.0f entries/s st_range_scan, ratio %.2fx)\n", ours, base,
		       ours / base);
	}
	nk_free(nk);
	dp_cert_store_free(cs);
	st_db_close(dba);
	st_db_close(dbb);
	nftw(dir_a, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	nftw(dir_b, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	free(ents);
	OPENSSL_free(der);
	X509_free(cert);
	EVP_PKEY_free(key);
	ca_free(ca);
	return 0;
}
