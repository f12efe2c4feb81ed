/* Shared fixtures for the storage tests: a scratch database directory, a manual
 * clock, and builders for ViPR registrations. */
#ifndef VP_TESTS_STORAGE_HELPERS_H
#define VP_TESTS_STORAGE_HELPERS_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/id.h"
#include "storage/store.h"
#include "storage/vipr_kind.h"

#define T0_MS 1790000000000ull /* 2026-09: any fixed wall time will do */

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb; (void)flag; (void)ftw;
	return remove(p);
}

static inline void rm_rf(const char *dir)
{
	nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static inline char *make_tmpdir(void)
{
	char tmpl[] = "/tmp/vp-st-XXXXXX";
	char *d = mkdtemp(tmpl);
	return d ? strdup(d) : NULL;
}

static inline vp_id_t node_id(uint8_t tag)
{
	vp_id_t id;
	memset(id.b, tag, sizeof(id.b));
	return id;
}

static inline vp_id_t number_rid(unsigned long n)
{
	char name[32];
	int len = snprintf(name, sizeof(name), "+1555%07lu", n);
	return vp_id_from_name(name, (size_t)len);
}

/* One ViPR registration: key and value buffers live in the struct. */
typedef struct vreg {
	uint8_t key[ST_VIPR_KEY_LEN];
	uint8_t val[ST_VIPR_VALUE_MAX_LEN];
	uint8_t sig[64];
	st_entry_t e;
	st_kind_data_t kd;
	st_store_req_t req;
	vp_id_t signer;
} vreg_t;

static inline void vreg_make(vreg_t *r, const vp_id_t *rid, const vp_id_t *claimant,
                             const vp_id_t *contact, uint32_t vservice, uint64_t storage_time,
                             uint32_t lifetime, uint8_t methods)
{
	st_vipr_key_t k = { *claimant, vservice };
	st_vipr_value_t v = { *contact, vservice, methods, NULL, 0 };
	size_t vlen = 0;
	memset(r, 0, sizeof(*r));
	st_vipr_key_encode(&k, r->key);
	st_vipr_value_encode(&v, r->val, sizeof(r->val), &vlen);
	for (size_t i = 0; i < sizeof(r->sig); i++)
		r->sig[i] = (uint8_t)(i ^ claimant->b[0] ^ storage_time);
	r->e.key = r->key;
	r->e.key_len = ST_VIPR_KEY_LEN;
	r->e.storage_time = storage_time;
	r->e.lifetime = lifetime;
	r->e.exists = true;
	r->e.value = r->val;
	r->e.value_len = (uint32_t)vlen;
	r->e.sig = r->sig;
	r->e.sig_len = sizeof(r->sig);
	r->kd.kind = ST_VIPR_KIND_ID_DEFAULT;
	r->kd.values = &r->e;
	r->kd.n_values = 1;
	r->signer = *claimant;
	r->req.resource = *rid;
	r->req.kinds = &r->kd;
	r->req.n_kinds = 1;
	r->req.signers = &r->signer;
	r->req.n_signers = 1;
}

/* Collects what a fetch returns (copies, so it outlives the visitor call). */
typedef struct got {
	size_t n;
	uint64_t gen;
	size_t n_kinds;
	struct {
		uint8_t key[64];
		uint16_t key_len;
		uint32_t index;
		uint8_t val[512];
		uint32_t val_len;
		uint8_t sig[64];
		uint32_t sig_len;
		uint64_t storage_time;
		uint32_t lifetime;
		bool exists;
		uint8_t replica;
		vp_id_t rid;
		uint32_t kind;
	} e[64];
} got_t;

static inline int got_begin(void *arg, const vp_id_t *rid, uint32_t kind, uint64_t gen)
{
	got_t *g = arg;
	(void)rid; (void)kind;
	g->gen = gen;
	g->n_kinds++;
	return 0;
}

static inline int got_entry(void *arg, const vp_id_t *rid, uint32_t kind, const st_entry_t *e)
{
	got_t *g = arg;
	if (g->n >= 64)
		return -1;
	g->e[g->n].key_len = e->key_len;
	if (e->key_len && e->key_len <= sizeof(g->e[0].key))
		memcpy(g->e[g->n].key, e->key, e->key_len);
	g->e[g->n].index = e->index;
	g->e[g->n].val_len = e->value_len;
	if (e->value_len && e->value_len <= sizeof(g->e[0].val))
		memcpy(g->e[g->n].val, e->value, e->value_len);
	g->e[g->n].sig_len = e->sig_len;
	if (e->sig_len && e->sig_len <= sizeof(g->e[0].sig))
		memcpy(g->e[g->n].sig, e->sig, e->sig_len);
	g->e[g->n].storage_time = e->storage_time;
	g->e[g->n].lifetime = e->lifetime;
	g->e[g->n].exists = e->exists;
	g->e[g->n].replica = e->replica_number;
	g->e[g->n].rid = *rid;
	g->e[g->n].kind = kind;
	g->n++;
	return 0;
}

static inline st_visitor_t got_visitor(got_t *g)
{
	memset(g, 0, sizeof(*g));
	return (st_visitor_t){ got_begin, got_entry, g };
}

#endif
