#include "storage/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <rocksdb/c.h>

#include "common/buf.h"
#include "common/errcode.h"
#include "common/log.h"
#include "storage/keyfilter.h"
#include "storage/quota.h"
#include "storage/record.h"
#include "storage/vipr_kind.h"

#define KEY_LEN (VP_ID_LEN + 4)   /* resource_id ‖ kind */
#define RANGE_DELETE_CHUNK 1024   /* records per WriteBatch in range deletes and sweeps */
#define PEND_INITIAL_CAP 1024     /* overlay slots; a batch of ~500 stores fits without growing */
#define DEFAULT_CACHE (256u << 20)
#define DEFAULT_WRITE_BUFFER (64u << 20)

typedef struct undo {
	vp_id_t owner;
	uint32_t kind;
	int32_t delta;
} undo_t;

/* A pending quota change: applied only once the whole request validated. */
typedef struct delta {
	vp_id_t owner;
	int32_t delta;
} delta_t;

/*
 * The open batch: the latest encoded record (or a deletion) per key written in
 * it, so later stores in the same batch read their own writes.  Nothing goes
 * into the RocksDB WriteBatch until commit, which writes each key once, in key
 * order: sorted inserts let the memtable skiplist reuse its search path from
 * one key to the next (about a third fewer comparisons than random order), and
 * a failed multi-kind store is rolled back by restoring slots alone.  Slots are
 * valid only if their epoch is the batch's, which makes clearing O(1).  Records
 * live in an arena reset per batch.
 */
typedef struct pend_slot {
	uint8_t key[KEY_LEN];
	uint8_t deleted;
	uint32_t epoch;
	size_t off, len;
} pend_slot_t;

/* Previous state of an overlay key, to roll a failed multi-kind store back. */
typedef struct pend_undo {
	uint8_t key[KEY_LEN];
	pend_slot_t prev; /* prev.epoch != current: the key was not in the overlay */
} pend_undo_t;

/* Slot states (field `deleted`).  Only PEND_PUT and PEND_DEL are written at commit. */
#define PEND_PUT 0       /* the batch writes this record */
#define PEND_DEL 1       /* the batch deletes the key */
#define PEND_UNCHANGED 2 /* rolled back: the database is right */
#define PEND_READ 3      /* prefetched: the database holds this record; nothing to write */
#define PEND_ABSENT 4    /* prefetched: the database holds no record; nothing to write */

struct st_shard {
	st_db_t *db;
	unsigned idx;
	rocksdb_column_family_handle_t *cf;
	uint32_t fraction_ppb;
	st_quota_table_t quota;
	st_rate_table_t rate;
	st_keyfilter_t kf;  /* every key in cf was added (storage/keyfilter.h); n_layers 0: off */
	rocksdb_writebatch_t *wb;
	bool in_batch;
	pend_slot_t *pend;
	size_t pend_cap, pend_n;
	uint32_t epoch;
	uint64_t pend_seed;
	uint8_t *arena;
	size_t arena_len, arena_cap;
	pend_undo_t *pundo;
	size_t n_pundo, cap_pundo;
	uint32_t *order;    /* commit: live slot indexes, sorted by key */
	size_t cap_order;
	/* st_batch_prefetch() scratch: sorted keys and the MultiGet arguments. */
	uint8_t (*pf_keys)[KEY_LEN];
	const char **pf_ptrs;
	size_t *pf_sizes;
	rocksdb_pinnableslice_t **pf_vals;
	char **pf_errs;
	size_t pf_cap;
	bool pundo_on;      /* recording overlay changes (inside a multi-kind store) */
	uint8_t cursor[KEY_LEN]; /* where the next st_expire() call resumes */
	bool cursor_set;
	st_stats_t stats;
	undo_t *undo;
	size_t n_undo, cap_undo;
	/* Scratch, reused across calls so the store path does not allocate in steady state. */
	st_rec_t old, work;
	delta_t *deltas;
	size_t n_deltas, cap_deltas;
	uint8_t *buf;
	size_t buf_cap;
};

struct st_db {
	rocksdb_t *rdb;
	rocksdb_options_t *opts;
	rocksdb_block_based_table_options_t *bbto;
	rocksdb_filterpolicy_t *bloom; /* owned by bbto once set */
	rocksdb_cache_t *cache;
	rocksdb_readoptions_t *ropts;
	rocksdb_readoptions_t *scan_ropts; /* whole-range walks: read ahead, keep the cache for Gets */
	rocksdb_writeoptions_t *wopts;
	rocksdb_column_family_handle_t **cfh;
	size_t n_cfh;
	st_config_t cfg;
	st_kind_t kinds[ST_MAX_KINDS];
	size_t n_kinds;
	st_shard_t *shards;
	unsigned n_shards;
};

/* ---- kinds and configuration ------------------------------------------ */

st_kind_t st_kind_vipr(uint32_t id)
{
	st_kind_t k;
	memset(&k, 0, sizeof(k));
	k.id = id ? id : ST_VIPR_KIND_ID_DEFAULT;
	snprintf(k.name, sizeof(k.name), "%s", ST_VIPR_KIND_NAME);
	k.model = ST_MODEL_DICTIONARY;
	k.acl = ST_ACL_VIPR;
	k.max_count = ST_VIPR_MAX_COUNT;
	k.max_size = ST_VIPR_MAX_SIZE;
	k.min_lifetime = ST_VIPR_MIN_LIFETIME;
	k.max_lifetime = ST_VIPR_MAX_LIFETIME;
	k.quota = ST_VIPR_QUOTA;
	k.max_per_cert = ST_VIPR_MAX_PER_CERT;
	return k;
}

void st_config_default(st_config_t *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->n_shards = 1;
	cfg->vipr_kind_id = ST_VIPR_KIND_ID_DEFAULT;
	cfg->vipr_quota = ST_VIPR_QUOTA;
	cfg->vipr_max_per_cert = ST_VIPR_MAX_PER_CERT;
	cfg->quota_slack = ST_QUOTA_SLACK_DEFAULT;
	cfg->quota_const = ST_QUOTA_CONST_DEFAULT;
	/* A carrier refreshes ~10M numbers a day spread over the whole ring, i.e. well under
	 * 1 store/s per signer at any one peer; 50/s with a burst of 2000 leaves room for a
	 * bulk first publication while bounding a flooder to a known rate. */
	cfg->rate[ST_RATE_STORE] = (st_rate_limit_t){ 50, 2000 };
	/* Fetches follow PSTN calls (validation of recently called numbers). */
	cfg->rate[ST_RATE_FETCH] = (st_rate_limit_t){ 100, 1000 };
	cfg->block_cache_bytes = DEFAULT_CACHE;
	cfg->write_buffer_bytes = DEFAULT_WRITE_BUFFER;
	cfg->bloom_bits = 10;
}

const st_kind_t *st_db_kind(const st_db_t *db, uint32_t id)
{
	for (size_t i = 0; i < db->n_kinds; i++)
		if (db->kinds[i].id == id)
			return &db->kinds[i];
	return NULL;
}

static int add_kind(st_db_t *db, const st_kind_t *k)
{
	if (!k->id || st_db_kind(db, k->id) || db->n_kinds >= ST_MAX_KINDS)
		return VP_ECONFIG;
	if (k->model < ST_MODEL_SINGLE || k->model > ST_MODEL_DICTIONARY)
		return VP_ECONFIG;
	if (k->acl < ST_ACL_VIPR || k->acl > ST_ACL_USER_NODE_MATCH)
		return VP_ECONFIG;
	if ((k->acl == ST_ACL_VIPR || k->acl == ST_ACL_USER_NODE_MATCH) &&
	    k->model != ST_MODEL_DICTIONARY)
		return VP_ECONFIG;
	if (!k->max_count || !k->max_size || !k->max_lifetime || k->min_lifetime > k->max_lifetime)
		return VP_ECONFIG;
	if (k->model == ST_MODEL_SINGLE && k->max_count != 1)
		return VP_ECONFIG;
	db->kinds[db->n_kinds++] = *k;
	return 0;
}

/* ---- small helpers ------------------------------------------------------ */

static uint64_t now_ms(const st_shard_t *sh)
{
	return vp_clock_now_ms(sh->db->cfg.clock);
}

/* Monotonic ms for the rate buckets (the configured rate_clock in tests). */
static uint64_t rate_now_ms(const st_shard_t *sh)
{
	const vp_clock_t *c = sh->db->cfg.rate_clock;
	return c ? c->now_ms(c->ctx) : vp_time_mono_ns() / 1000000u;
}

static void make_key(uint8_t key[KEY_LEN], const vp_id_t *rid, uint32_t kind)
{
	memcpy(key, rid->b, VP_ID_LEN);
	key[16] = (uint8_t)(kind >> 24);
	key[17] = (uint8_t)(kind >> 16);
	key[18] = (uint8_t)(kind >> 8);
	key[19] = (uint8_t)kind;
}

static uint32_t key_kind(const uint8_t *key)
{
	return (uint32_t)key[16] << 24 | (uint32_t)key[17] << 16 | (uint32_t)key[18] << 8 | key[19];
}

static int db_error(const char *op, char *err)
{
	vp_log_error("storage", "db_error", "op=%s err=\"%s\"", op, err ? err : "?");
	free(err);
	return VP_EDB;
}

static int ensure_buf(st_shard_t *sh, size_t n)
{
	uint8_t *nb;
	size_t cap = sh->buf_cap ? sh->buf_cap : 4096;
	if (n <= sh->buf_cap)
		return 0;
	while (cap < n)
		cap *= 2;
	nb = realloc(sh->buf, cap);
	if (!nb)
		return VP_ENOMEM;
	sh->buf = nb;
	sh->buf_cap = cap;
	return 0;
}

/* ---- the batch overlay ---------------------------------------------------- */

static size_t pend_hash(const st_shard_t *sh, const uint8_t key[KEY_LEN])
{
	uint64_t a, b;
	uint32_t c;
	memcpy(&a, key, 8);
	memcpy(&b, key + 8, 8);
	memcpy(&c, key + 16, 4);
	a ^= sh->pend_seed;
	a *= 0x9e3779b97f4a7c15ull;
	a ^= b + (a >> 29);
	a *= 0xbf58476d1ce4e5b9ull;
	a ^= c + (a >> 32);
	return (size_t)a;
}

/* The slot for key: the live one, or the empty one where it would go. */
static pend_slot_t *pend_find(st_shard_t *sh, const uint8_t key[KEY_LEN])
{
	size_t mask = sh->pend_cap - 1, i = pend_hash(sh, key) & mask;
	for (;;) {
		pend_slot_t *p = &sh->pend[i];
		if (p->epoch != sh->epoch || memcmp(p->key, key, KEY_LEN) == 0)
			return p;
		i = (i + 1) & mask;
	}
}

static int pend_grow(st_shard_t *sh)
{
	pend_slot_t *old = sh->pend, *ns;
	size_t old_cap = sh->pend_cap;
	ns = calloc(old_cap * 2, sizeof(*ns));
	if (!ns)
		return VP_ENOMEM;
	sh->pend = ns;
	sh->pend_cap = old_cap * 2;
	for (size_t i = 0; i < old_cap; i++)
		if (old[i].epoch == sh->epoch)
			*pend_find(sh, old[i].key) = old[i];
	free(old);
	return 0;
}

static void pend_reset(st_shard_t *sh)
{
	if (++sh->epoch == 0) { /* wrapped: slots of epoch 0 would look live */
		memset(sh->pend, 0, sh->pend_cap * sizeof(*sh->pend));
		sh->epoch = 1;
	}
	sh->pend_n = 0;
	sh->arena_len = 0;
	sh->n_pundo = 0;
}

/*
 * Make room for one more overlay record of len bytes, so that the following
 * pend_set() cannot fail: callers reserve before they touch the WriteBatch,
 * keeping batch, overlay and counters in step even when memory runs out.
 */
static int pend_reserve(st_shard_t *sh, size_t len)
{
	if ((sh->pend_n + 1) * 2 > sh->pend_cap && pend_grow(sh))
		return VP_ENOMEM;
	if (len > sh->arena_cap - sh->arena_len) {
		size_t cap = sh->arena_cap ? sh->arena_cap : 65536;
		uint8_t *na;
		while (cap - sh->arena_len < len)
			cap *= 2;
		na = realloc(sh->arena, cap);
		if (!na)
			return VP_ENOMEM;
		sh->arena = na;
		sh->arena_cap = cap;
	}
	if (sh->pundo_on && sh->n_pundo == sh->cap_pundo) {
		size_t cap = sh->cap_pundo ? sh->cap_pundo * 2 : 16;
		pend_undo_t *nu = realloc(sh->pundo, cap * sizeof(*nu));
		if (!nu)
			return VP_ENOMEM;
		sh->pundo = nu;
		sh->cap_pundo = cap;
	}
	return 0;
}

/* Record that key now holds data[0..len) (or is deleted); pend_reserve(len) came first. */
static void pend_set(st_shard_t *sh, const uint8_t key[KEY_LEN], const uint8_t *data, size_t len,
                     uint8_t state)
{
	pend_slot_t *p = pend_find(sh, key);
	if (sh->pundo_on) {
		memcpy(sh->pundo[sh->n_pundo].key, key, KEY_LEN);
		sh->pundo[sh->n_pundo++].prev = *p;
	}
	if (p->epoch != sh->epoch)
		sh->pend_n++;
	memcpy(p->key, key, KEY_LEN);
	p->epoch = sh->epoch;
	p->deleted = state;
	p->off = sh->arena_len;
	p->len = len;
	if (len)
		memcpy(sh->arena + sh->arena_len, data, len);
	sh->arena_len += len;
}

/* Undo overlay changes back to undo mark \p mark (newest first). */
static void pend_undo_to(st_shard_t *sh, size_t mark)
{
	while (sh->n_pundo > mark) {
		pend_undo_t *u = &sh->pundo[--sh->n_pundo];
		pend_slot_t *p = pend_find(sh, u->key);
		if (u->prev.epoch == sh->epoch) {
			*p = u->prev;
		} else {
			/* The key was not in the batch.  Emptying the slot would break linear
			 * probing for keys after it, so mark it "as in the database". */
			p->deleted = PEND_UNCHANGED;
		}
	}
}

/* ---- loading a record ---------------------------------------------------- */

typedef struct blob {
	const uint8_t *data;
	size_t len;
	rocksdb_pinnableslice_t *pinned; /* from a database read; NULL for the overlay */
} blob_t;

static void blob_release(blob_t *b)
{
	if (b->pinned)
		rocksdb_pinnableslice_destroy(b->pinned);
	memset(b, 0, sizeof(*b));
}

/* Out of memory for a new layer: stop trusting the filter (every key "maybe"). */
static void kf_off(st_shard_t *sh)
{
	vp_log_warn("storage", "key_filter_off", "shard=%u reason=ENOMEM", sh->idx);
	st_kf_free(&sh->kf);
}

/*
 * True when the key filter proves the shard never held key, so there is nothing
 * to read.  On a store path (storing) the key is added in the same pass: it is
 * about to be written, and a store refused later only leaves an extra "maybe"
 * (a read, never an answer).  Fetches never add: unknown numbers asked for must
 * not fill the filter.
 */
static bool kf_absent(st_shard_t *sh, const uint8_t key[KEY_LEN], bool storing)
{
	bool maybe;
	if (!sh->kf.n_layers)
		return false;
	if (!storing)
		return !st_kf_maybe(&sh->kf, key, KEY_LEN);
	if (st_kf_check_add(&sh->kf, key, KEY_LEN, &maybe))
		kf_off(sh);
	return !maybe;
}

/* Read the record under key (seeing the open batch, if any).  1 found, 0 absent, <0 error. */
static int load(st_shard_t *sh, const uint8_t key[KEY_LEN], blob_t *b, bool storing)
{
	char *err = NULL;
	memset(b, 0, sizeof(*b));
	if (sh->in_batch) {
		const pend_slot_t *p = pend_find(sh, key);
		if (p->epoch == sh->epoch && p->deleted != PEND_UNCHANGED) {
			if (p->deleted == PEND_DEL || p->deleted == PEND_ABSENT)
				return 0;
			b->data = sh->arena + p->off;
			b->len = p->len;
			return 1;
		}
	}
	if (kf_absent(sh, key, storing)) {
		sh->stats.reads_skipped++;
		return 0;
	}
	rocksdb_set_perf_level(rocksdb_disable);
	b->pinned = rocksdb_get_pinned_cf(sh->db->rdb, sh->db->ropts, sh->cf, (const char *)key,
	                                  KEY_LEN, &err);
	if (err)
		return db_error("get", err);
	if (!b->pinned)
		return 0;
	b->data = (const uint8_t *)rocksdb_pinnableslice_value(b->pinned, &b->len);
	return 1;
}

static int decode_loaded(const uint8_t key[KEY_LEN], const blob_t *b, st_rec_t *rec)
{
	int rc = st_rec_decode(b->data, b->len, rec);
	if (rc) {
		char hex[VP_ID_HEX_LEN + 1];
		vp_id_t rid;
		memcpy(rid.b, key, VP_ID_LEN);
		vp_log_error("storage", "corrupt_record", "resource=%s kind=%u err=%s",
		             vp_id_to_hex(&rid, hex), key_kind(key), vp_errname(rc));
		return rc == VP_ENOMEM ? rc : VP_EDB;
	}
	return 0;
}

/* ---- quota bookkeeping ---------------------------------------------------- */

static int undo_push(st_shard_t *sh, const vp_id_t *owner, uint32_t kind, int32_t delta)
{
	if (sh->n_undo == sh->cap_undo) {
		size_t cap = sh->cap_undo ? sh->cap_undo * 2 : 256;
		undo_t *nu = realloc(sh->undo, cap * sizeof(*nu));
		if (!nu)
			return VP_ENOMEM;
		sh->undo = nu;
		sh->cap_undo = cap;
	}
	sh->undo[sh->n_undo++] = (undo_t){ *owner, kind, delta };
	return 0;
}

static void undo_to(st_shard_t *sh, size_t mark)
{
	while (sh->n_undo > mark) {
		undo_t *u = &sh->undo[--sh->n_undo];
		st_quota_add(&sh->quota, &u->owner, u->kind, -u->delta);
	}
}

/* Apply a quota change now, remembering how to undo it if the batch fails. */
static int charge(st_shard_t *sh, const vp_id_t *owner, uint32_t kind, int32_t delta)
{
	int rc;
	if (!delta)
		return 0;
	rc = undo_push(sh, owner, kind, delta);
	if (rc)
		return rc;
	rc = st_quota_add(&sh->quota, owner, kind, delta);
	if (rc) {
		sh->n_undo--;
		if (rc == VP_ERANGE)
			vp_log_error("storage", "quota_underflow", "kind=%u delta=%d", kind, delta);
	}
	return rc;
}

static int delta_add(st_shard_t *sh, const vp_id_t *owner, int32_t d)
{
	for (size_t i = 0; i < sh->n_deltas; i++) {
		if (vp_id_eq(&sh->deltas[i].owner, owner)) {
			sh->deltas[i].delta += d;
			return 0;
		}
	}
	if (sh->n_deltas == sh->cap_deltas) {
		size_t cap = sh->cap_deltas ? sh->cap_deltas * 2 : 16;
		delta_t *nd = realloc(sh->deltas, cap * sizeof(*nd));
		if (!nd)
			return VP_ENOMEM;
		sh->deltas = nd;
		sh->cap_deltas = cap;
	}
	sh->deltas[sh->n_deltas++] = (delta_t){ *owner, d };
	return 0;
}

uint64_t st_quota_limit_of(const st_shard_t *sh, uint32_t kind)
{
	const st_kind_t *k = st_db_kind(sh->db, kind);
	if (!k)
		return UINT64_MAX;
	return st_quota_limit(k->quota, sh->fraction_ppb, sh->db->cfg.quota_slack,
	                      sh->db->cfg.quota_const);
}

uint32_t st_quota_used(const st_shard_t *sh, const vp_id_t *owner, uint32_t kind)
{
	return st_quota_get(&sh->quota, owner, kind);
}

/* ---- batches -------------------------------------------------------------- */

int st_batch_begin(st_shard_t *sh)
{
	if (sh->in_batch)
		return VP_ESTATE;
	pend_reset(sh);
	sh->n_undo = 0;
	sh->in_batch = true;
	return 0;
}

void st_batch_abort(st_shard_t *sh)
{
	if (!sh->in_batch)
		return;
	undo_to(sh, 0);
	pend_reset(sh);
	sh->in_batch = false;
}

/* qsort_r comparator: slot indexes by key. */
static int order_cmp(const void *a, const void *b, void *arg)
{
	const pend_slot_t *p = arg;
	return memcmp(p[*(const uint32_t *)a].key, p[*(const uint32_t *)b].key, KEY_LEN);
}

int st_batch_commit(st_shard_t *sh)
{
	char *err = NULL;
	size_t n = 0;
	if (!sh->in_batch)
		return VP_ESTATE;
	if (sh->pend_n > sh->cap_order) {
		uint32_t *no = realloc(sh->order, sh->pend_cap * sizeof(*no));
		if (!no) {
			st_batch_abort(sh);
			return VP_ENOMEM;
		}
		sh->order = no;
		sh->cap_order = sh->pend_cap;
	}
	/* An empty batch (a loop iteration that stored nothing: a relay's) skips the scan of every slot. */
	for (size_t i = 0; sh->pend_n && i < sh->pend_cap; i++)
		if (sh->pend[i].epoch == sh->epoch &&
		    (sh->pend[i].deleted == PEND_PUT || sh->pend[i].deleted == PEND_DEL))
			sh->order[n++] = (uint32_t)i;
	if (n > 1)
		qsort_r(sh->order, n, sizeof(*sh->order), order_cmp, sh->pend);
	rocksdb_writebatch_clear(sh->wb);
	for (size_t i = 0; i < n; i++) {
		const pend_slot_t *p = &sh->pend[sh->order[i]];
		if (p->deleted == PEND_DEL) {
			rocksdb_writebatch_delete_cf(sh->wb, sh->cf, (const char *)p->key, KEY_LEN);
			continue;
		}
		/* The key filter's invariant: a key is added before the database can hold it.
		 * This is the shard's only Put; a write failing after it leaves an extra
		 * "maybe", which costs a read, never an answer.  The store's read added the
		 * key already (kf_absent), so this finds it in the newest layer; it is what
		 * keeps the invariant whatever path filled the batch. */
		if (sh->kf.n_layers && st_kf_add(&sh->kf, p->key, KEY_LEN))
			kf_off(sh);
		rocksdb_writebatch_put_cf(sh->wb, sh->cf, (const char *)p->key, KEY_LEN,
		                          (const char *)sh->arena + p->off, p->len);
	}
	if (n) {
		rocksdb_set_perf_level(rocksdb_disable);
		rocksdb_write(sh->db->rdb, sh->db->wopts, sh->wb, &err);
		sh->stats.commits++;
	}
	rocksdb_writebatch_clear(sh->wb);
	if (err) {
		int rc = db_error("write", err);
		sh->stats.commit_failures++;
		st_batch_abort(sh);
		return rc;
	}
	pend_reset(sh);
	sh->n_undo = 0;
	sh->in_batch = false;
	return 0;
}

/* Write rec (or delete it if empty) under key into the open batch. */
static int put_record(st_shard_t *sh, const uint8_t key[KEY_LEN], const st_rec_t *rec)
{
	size_t len;
	int rc;
	if (rec->n == 0) {
		if ((rc = pend_reserve(sh, 0)))
			return rc;
		pend_set(sh, key, NULL, 0, PEND_DEL);
		return 0;
	}
	rc = ensure_buf(sh, st_rec_size(rec));
	if (rc)
		return rc;
	rc = st_rec_encode(rec, sh->buf, sh->buf_cap, &len);
	if (rc || (rc = pend_reserve(sh, len)))
		return rc;
	pend_set(sh, key, sh->buf, len, PEND_PUT);
	return 0;
}

/* ---- prefetch ----------------------------------------------------------------- */

static int key_cmp(const void *a, const void *b)
{
	return memcmp(a, b, KEY_LEN);
}

static int pf_reserve(st_shard_t *sh, size_t n)
{
	size_t cap = sh->pf_cap ? sh->pf_cap : 256;
	void *p;
	if (n <= sh->pf_cap)
		return 0;
	while (cap < n)
		cap *= 2;
#define PF_GROW(field)                                              \
	do {                                                         \
		p = realloc(sh->field, cap * sizeof(*sh->field));   \
		if (!p)                                              \
			return VP_ENOMEM;                            \
		sh->field = p;                                       \
	} while (0)
	PF_GROW(pf_keys);
	PF_GROW(pf_ptrs);
	PF_GROW(pf_sizes);
	PF_GROW(pf_vals);
	PF_GROW(pf_errs);
#undef PF_GROW
	sh->pf_cap = cap;
	return 0;
}

int st_batch_prefetch(st_shard_t *sh, const st_store_req_t *reqs, size_t n_reqs)
{
	size_t n = 0, m = 0;
	int rc = 0;

	if (!sh->in_batch)
		return VP_ESTATE;
	if (n_reqs && !reqs)
		return VP_EINVAL;
	for (size_t i = 0; i < n_reqs; i++)
		n += reqs[i].kinds ? reqs[i].n_kinds : 0;
	if (!n)
		return 0;
	if ((rc = pf_reserve(sh, n)))
		return rc;
	/* The keys of known kinds, with the key filter's cache lines requested for each. */
	for (size_t i = 0; i < n_reqs; i++) {
		for (size_t j = 0; reqs[i].kinds && j < reqs[i].n_kinds; j++) {
			if (!st_db_kind(sh->db, reqs[i].kinds[j].kind))
				continue;
			make_key(sh->pf_keys[m], &reqs[i].resource, reqs[i].kinds[j].kind);
			st_kf_prefetch(&sh->kf, sh->pf_keys[m], KEY_LEN);
			m++;
		}
	}
	/* Those the overlay cannot answer yet, sorted, each once (compacted in place). */
	n = m;
	m = 0;
	for (size_t i = 0; i < n; i++) {
		const pend_slot_t *p;
		if (m != i)
			memcpy(sh->pf_keys[m], sh->pf_keys[i], KEY_LEN);
		p = pend_find(sh, sh->pf_keys[m]);
		if (p->epoch == sh->epoch && p->deleted != PEND_UNCHANGED)
			continue;
		/* Never held by this shard: answered here, without a read, as an "absent"
		 * slot (st_store() then skips the filter too).  Without room for the slot,
		 * st_store()'s load() reads it (the key is now "maybe"). */
		if (kf_absent(sh, sh->pf_keys[m], true)) {
			sh->stats.reads_skipped++;
			if (pend_reserve(sh, 0) == 0)
				pend_set(sh, sh->pf_keys[m], NULL, 0, PEND_ABSENT);
			continue;
		}
		m++;
	}
	if (m > 1)
		qsort(sh->pf_keys, m, KEY_LEN, key_cmp);
	n = 0;
	for (size_t i = 0; i < m; i++) {
		if (n && memcmp(sh->pf_keys[n - 1], sh->pf_keys[i], KEY_LEN) == 0)
			continue;
		if (n != i)
			memcpy(sh->pf_keys[n], sh->pf_keys[i], KEY_LEN);
		n++;
	}
	if (!n)
		return 0;
	for (size_t i = 0; i < n; i++) {
		sh->pf_ptrs[i] = (const char *)sh->pf_keys[i];
		sh->pf_sizes[i] = KEY_LEN;
		sh->pf_vals[i] = NULL;
		sh->pf_errs[i] = NULL;
	}
	rocksdb_set_perf_level(rocksdb_disable);
	rocksdb_batched_multi_get_cf(sh->db->rdb, sh->db->ropts, sh->cf, n, sh->pf_ptrs,
	                             sh->pf_sizes, sh->pf_vals, sh->pf_errs, true);
	for (size_t i = 0; i < n; i++) {
		const uint8_t *data = NULL;
		size_t len = 0;
		if (sh->pf_errs[i]) {
			/* Leave the key to st_store()'s own read, which reports the error. */
			if (!rc)
				vp_log_warn("storage", "prefetch_error", "err=\"%s\"", sh->pf_errs[i]);
			rc = VP_EDB;
			free(sh->pf_errs[i]);
			continue;
		}
		if (sh->pf_vals[i])
			data = (const uint8_t *)rocksdb_pinnableslice_value(sh->pf_vals[i], &len);
		/* A key left out stays correct: st_store() then reads it itself. */
		if (pend_reserve(sh, len) == 0)
			pend_set(sh, sh->pf_keys[i], data, len, data ? PEND_READ : PEND_ABSENT);
		else
			rc = VP_ENOMEM;
		if (sh->pf_vals[i])
			rocksdb_pinnableslice_destroy(sh->pf_vals[i]);
	}
	return rc;
}

/* ---- store ------------------------------------------------------------------ */

static bool signer_has(const st_signer_t *sg, const uint8_t *node)
{
	for (size_t i = 0; i < sg->n_node_ids; i++)
		if (memcmp(sg->node_ids[i].b, node, VP_ID_LEN) == 0)
			return true;
	return false;
}

/* Access control for one value against its own signer; *owner = the Node-ID the quota charges. */
static int check_acl(const st_kind_t *k, const vp_id_t *resource, const st_signer_t *sg,
                     const st_entry_t *v, vp_id_t *owner)
{
	vp_id_t h;
	st_vipr_key_t vk;
	st_vipr_value_t vv;
	int rc;
	*owner = sg->node_ids[0];
	switch (k->acl) {
	case ST_ACL_VIPR:
		rc = st_vipr_key_decode(v->key, v->key_len, &vk);
		if (rc)
			return VP_EMALFORMED;
		if (!signer_has(sg, vk.node.b))
			return VP_EFORBIDDEN;
		if (v->exists) {
			rc = st_vipr_value_decode(v->value, v->value_len, &vv);
			if (rc)
				return VP_EMALFORMED;
			/* Overview draft §7.1.1: the Node-ID in both key and value must be the signer's. */
			if (!signer_has(sg, vv.contact.b))
				return VP_EFORBIDDEN;
		}
		*owner = vk.node;
		return 0;
	case ST_ACL_NODE_MATCH:
		for (size_t i = 0; i < sg->n_node_ids; i++) {
			h = vp_id_from_name(sg->node_ids[i].b, VP_ID_LEN);
			if (vp_id_eq(&h, resource)) {
				*owner = sg->node_ids[i];
				return 0;
			}
		}
		return VP_EFORBIDDEN;
	case ST_ACL_USER_MATCH:
	case ST_ACL_USER_NODE_MATCH:
		if (!sg->user || !sg->user_len)
			return VP_EFORBIDDEN;
		h = vp_id_from_name(sg->user, sg->user_len);
		if (!vp_id_eq(&h, resource))
			return VP_EFORBIDDEN;
		if (k->acl == ST_ACL_USER_MATCH)
			return 0;
		if (v->key_len != VP_ID_LEN || !signer_has(sg, v->key))
			return VP_EFORBIDDEN;
		memcpy(owner->b, v->key, VP_ID_LEN);
		return 0;
	}
	return VP_EFORBIDDEN;
}

/* The signer a value is checked against: its own, or the request's. */
static const st_signer_t *value_signer(const st_entry_t *v, const st_signer_t *req_signer)
{
	return v->signer ? v->signer : req_signer;
}

/* Entries of \p w held at \p now (tombstones included) whose owner is a Node-ID of \p sg. */
static uint32_t cert_count(const st_rec_t *w, const st_signer_t *sg, uint64_t now)
{
	uint32_t n = 0;
	for (size_t i = 0; i < w->n; i++)
		if (w->e[i].expires_ms > now && signer_has(sg, w->e[i].owner.b))
			n++;
	return n;
}

/*
 * The certificate limit: after the store, no signer of it may own more than
 * k->max_per_cert entries at the resource, unless it already did before (a
 * lowered limit: refreshes and deletions still pass, only additions are refused).
 */
static int check_cert_limit(const st_kind_t *k, const st_kind_data_t *kd, const st_signer_t *rs,
                            const st_rec_t *old, const st_rec_t *w, uint64_t now)
{
	if (!k->max_per_cert)
		return 0;
	for (size_t i = 0; i < kd->n_values; i++) {
		const st_signer_t *sg = value_signer(&kd->values[i], rs);
		uint32_t after;
		bool seen = false;
		for (size_t j = 0; j < i && !seen; j++)
			seen = value_signer(&kd->values[j], rs) == sg;
		if (seen)
			continue;
		after = cert_count(w, sg, now);
		if (after > k->max_per_cert && after > cert_count(old, sg, now))
			return VP_EQUOTA;
	}
	return 0;
}

/* Same StoredData as held (a re-replication or a resent store): a no-op, not Data_Too_Old. */
static bool same_data(const st_entry_t *held, const st_entry_t *e)
{
	return held->storage_time == e->storage_time && held->exists == e->exists &&
	       held->value_len == e->value_len &&
	       (!e->value_len || memcmp(held->value, e->value, e->value_len) == 0);
}

/* Position of \p probe in the sorted work list; *found tells whether it is there. */
static size_t find_pos(const st_rec_t *w, const st_entry_t *probe, bool *found)
{
	size_t lo = 0, hi = w->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = st_rec_keycmp(w->model, &w->e[mid], probe);
		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

static int validate_values(const st_kind_t *k, const st_kind_data_t *kd)
{
	for (size_t i = 0; i < kd->n_values; i++) {
		const st_entry_t *v = &kd->values[i];
		if (v->signer && (!v->signer->node_ids || !v->signer->n_node_ids))
			return VP_EINVAL;
		if (v->value_len > k->max_size)
			return VP_EDATA_TOO_LARGE;
		if (v->lifetime == 0 || v->lifetime < k->min_lifetime)
			return VP_EINVAL;
		if (v->value_len && !v->value)
			return VP_EINVAL;
		if (v->sig_len && !v->sig)
			return VP_EINVAL;
		if (k->model == ST_MODEL_DICTIONARY && v->key_len && !v->key)
			return VP_EINVAL;
		if (k->model == ST_MODEL_SINGLE && kd->n_values > 1)
			return VP_EINVAL;
		/* The same model key twice in one request has no defined order: refuse. */
		for (size_t j = 0; j < i; j++) {
			const st_entry_t *u = &kd->values[j];
			if (k->model == ST_MODEL_ARRAY && v->index != ST_ARRAY_APPEND && u->index == v->index)
				return VP_EINVAL;
			if (k->model == ST_MODEL_DICTIONARY && st_rec_keycmp(k->model, u, v) == 0)
				return VP_EINVAL;
		}
	}
	return 0;
}

static int store_kind(st_shard_t *sh, const st_store_req_t *req, const st_signer_t *rs,
                      const st_kind_t *k, const st_kind_data_t *kd, uint64_t now, uint64_t *gen_out)
{
	uint8_t key[KEY_LEN];
	blob_t b;
	st_rec_t *old = &sh->old, *w = &sh->work;
	uint64_t gen = 0;
	bool changed = false;
	int rc, found;

	rc = validate_values(k, kd);
	if (rc)
		return rc;
	make_key(key, &req->resource, k->id);
	found = load(sh, key, &b, true);
	if (found < 0)
		return found;
	old->n = 0;
	if (found) {
		rc = decode_loaded(key, &b, old);
		if (rc)
			goto out;
		if (old->model != k->model) {
			rc = VP_EDB;
			goto out;
		}
		gen = old->generation;
	}
	if (kd->generation != 0 && kd->generation != gen) {
		rc = VP_EGEN_TOO_LOW;
		goto out;
	}
	if (kd->n_values == 0) {
		*gen_out = gen;
		rc = 0;
		goto out;
	}

	/* Working set: the old entries minus the expired ones (whose quota is returned). */
	sh->n_deltas = 0;
	w->model = (uint8_t)k->model;
	w->n = 0;
	rc = st_rec_reserve(w, old->n + kd->n_values);
	if (rc)
		goto out;
	for (size_t i = 0; i < old->n; i++) {
		if (old->e[i].expires_ms <= now) {
			if ((rc = delta_add(sh, &old->e[i].owner, -1)))
				goto out;
			changed = true;
			continue;
		}
		w->e[w->n++] = old->e[i];
	}

	for (size_t i = 0; i < kd->n_values; i++) {
		st_entry_t e = kd->values[i];
		bool hit;
		size_t pos;
		uint32_t lifetime = e.lifetime > k->max_lifetime ? k->max_lifetime : e.lifetime;

		rc = check_acl(k, &req->resource, value_signer(&e, rs), &e, &e.owner);
		if (rc)
			goto out;
		if (k->model == ST_MODEL_SINGLE) {
			e.key = NULL;
			e.key_len = 0;
			e.index = 0;
		} else if (k->model == ST_MODEL_ARRAY) {
			e.key = NULL;
			e.key_len = 0;
			if (e.index == ST_ARRAY_APPEND) {
				if (w->n && w->e[w->n - 1].index >= ST_ARRAY_APPEND - 1) {
					rc = VP_EDATA_TOO_LARGE;
					goto out;
				}
				e.index = w->n ? w->e[w->n - 1].index + 1 : 0;
			}
		} else {
			e.index = 0;
		}
		if (!e.exists) {
			e.value = NULL;
			e.value_len = 0;
		}
		e.lifetime = lifetime;
		e.expires_ms = now + (uint64_t)lifetime * 1000u;
		e.replica_number = req->replica_number;

		pos = find_pos(w, &e, &hit);
		if (hit) {
			st_entry_t *cur = &w->e[pos];
			if (same_data(cur, &e))
				continue; /* held already: lifetime and generation stay */
			if (e.storage_time <= cur->storage_time) {
				rc = VP_EDATA_TOO_OLD;
				goto out;
			}
			/* Tombstones are held data: every entry held counts, live or not. */
			if ((rc = delta_add(sh, &cur->owner, -1)))
				goto out;
			*cur = e;
		} else {
			memmove(&w->e[pos + 1], &w->e[pos], (w->n - pos) * sizeof(*w->e));
			w->e[pos] = e;
			w->n++;
		}
		changed = true;
		if ((rc = delta_add(sh, &e.owner, +1)))
			goto out;
	}
	if (!changed) {
		*gen_out = gen;
		rc = 0;
		goto out;
	}
	if (w->n > k->max_count) {
		rc = VP_EDATA_TOO_LARGE;
		goto out;
	}
	if ((rc = check_cert_limit(k, kd, rs, old, w, now)))
		goto out;
	if (k->quota) {
		uint64_t limit = st_quota_limit(k->quota, sh->fraction_ppb, sh->db->cfg.quota_slack,
		                                sh->db->cfg.quota_const);
		for (size_t i = 0; i < sh->n_deltas; i++) {
			const delta_t *d = &sh->deltas[i];
			uint64_t used = st_quota_get(&sh->quota, &d->owner, k->id);
			if (d->delta > 0 && used + (uint64_t)d->delta > limit) {
				char hex[VP_ID_HEX_LEN + 1];
				vp_log_debug("storage", "quota_refused", "owner=%s kind=%u used=%llu limit=%llu",
				             vp_id_to_hex(&d->owner, hex), k->id,
				             (unsigned long long)used, (unsigned long long)limit);
				rc = VP_EQUOTA;
				goto out;
			}
		}
	}

	/* Counters first: st_store() undoes them if anything below fails, and put_record()
	 * fails only before it touches the batch. */
	for (size_t i = 0; i < sh->n_deltas; i++) {
		rc = charge(sh, &sh->deltas[i].owner, k->id, sh->deltas[i].delta);
		if (rc)
			goto out;
	}
	w->generation = gen + 1;
	rc = put_record(sh, key, w);
	if (rc)
		goto out;
	*gen_out = w->generation;
	rc = 0;
out:
	blob_release(&b);
	return rc;
}

static int store_req(st_shard_t *sh, const st_store_req_t *req, uint64_t *gen_out,
                     uint32_t *bad_kind);

static void count_refusal(st_shard_t *sh, int rc)
{
	if (rc == VP_EQUOTA)
		sh->stats.refused_quota++;
	else if (rc == VP_ERATELIMIT)
		sh->stats.refused_rate++;
	else if (rc == VP_EFORBIDDEN)
		sh->stats.refused_acl++;
}

int st_store(st_shard_t *sh, const st_store_req_t *req, uint64_t *gen_out, uint32_t *bad_kind)
{
	int rc = store_req(sh, req, gen_out, bad_kind);
	if (rc) {
		sh->stats.stores_refused++;
		count_refusal(sh, rc);
	} else {
		sh->stats.stores_ok++;
	}
	return rc;
}

static int store_req(st_shard_t *sh, const st_store_req_t *req, uint64_t *gen_out,
                     uint32_t *bad_kind)
{
	uint64_t now = now_ms(sh), g;
	bool own_batch = false;
	size_t undo_mark, pundo_mark;
	st_signer_t rs;
	int rc = 0;

	if (!req || !req->signers || req->n_signers == 0 || (req->n_kinds && !req->kinds))
		return VP_EINVAL;
	rs = (st_signer_t){ req->signers, req->n_signers, req->signer_user, req->signer_user_len };
	for (size_t i = 0; i < req->n_kinds; i++) {
		if (!st_db_kind(sh->db, req->kinds[i].kind)) {
			if (bad_kind)
				*bad_kind = req->kinds[i].kind;
			return VP_EUNKNOWN_KIND;
		}
		if (req->kinds[i].n_values && !req->kinds[i].values)
			return VP_EINVAL;
	}
	if (!req->unpoliced && (rc = st_rate_take(&sh->rate, &req->signers[0], ST_RATE_STORE,
	                                          rate_now_ms(sh))))
		return rc;
	if (!sh->in_batch) {
		st_batch_begin(sh);
		own_batch = true;
	}
	undo_mark = sh->n_undo;
	pundo_mark = sh->n_pundo;
	/* A single kind validates completely before it writes; only multi-kind requests need
	 * to record how to restore the batch to stay all-or-nothing. */
	sh->pundo_on = req->n_kinds > 1;
	for (size_t i = 0; i < req->n_kinds; i++) {
		const st_kind_data_t *kd = &req->kinds[i];
		rc = store_kind(sh, req, &rs, st_db_kind(sh->db, kd->kind), kd, now, &g);
		if (rc) {
			if (bad_kind)
				*bad_kind = kd->kind;
			break;
		}
		if (gen_out)
			gen_out[i] = g;
	}
	sh->pundo_on = false;
	if (rc) {
		undo_to(sh, undo_mark);
		pend_undo_to(sh, pundo_mark);
		if (own_batch)
			st_batch_abort(sh);
		return rc;
	}
	sh->n_pundo = pundo_mark;
	if (own_batch)
		rc = st_batch_commit(sh);
	return rc;
}

/* ---- fetch / stat ------------------------------------------------------------- */

typedef int (*walk_fn)(void *arg, const vp_id_t *rid, uint32_t kind, const st_entry_t *e);
typedef int (*begin_fn)(void *arg, const vp_id_t *rid, uint32_t kind, uint64_t gen);

static int check_spec(const st_kind_t *k, const st_specifier_t *s)
{
	if (s->n_ranges && (k->model != ST_MODEL_ARRAY || !s->ranges))
		return VP_EINVAL;
	if (s->n_keys && (k->model != ST_MODEL_DICTIONARY || !s->keys))
		return VP_EINVAL;
	return 0;
}

static int walk_spec(const st_rec_t *rec, const st_specifier_t *s, const vp_id_t *rid,
                     uint64_t now, walk_fn fn, void *arg)
{
	int rc;
#define LIVE(e) ((e)->expires_ms > now)
	if (rec->model == ST_MODEL_ARRAY && s->n_ranges) {
		for (size_t r = 0; r < s->n_ranges; r++) {
			st_entry_t probe = { .index = s->ranges[r].first };
			bool hit;
			size_t i = find_pos(rec, &probe, &hit);
			for (; i < rec->n && rec->e[i].index <= s->ranges[r].last; i++)
				if (LIVE(&rec->e[i]) && (rc = fn(arg, rid, s->kind, &rec->e[i])))
					return rc;
		}
		return 0;
	}
	if (rec->model == ST_MODEL_DICTIONARY && s->n_keys) {
		for (size_t j = 0; j < s->n_keys; j++) {
			st_entry_t probe = { .key = s->keys[j].key, .key_len = s->keys[j].len };
			bool hit;
			size_t i = find_pos(rec, &probe, &hit);
			if (hit && LIVE(&rec->e[i]) && (rc = fn(arg, rid, s->kind, &rec->e[i])))
				return rc;
		}
		return 0;
	}
	for (size_t i = 0; i < rec->n; i++)
		if (LIVE(&rec->e[i]) && (rc = fn(arg, rid, s->kind, &rec->e[i])))
			return rc;
	return 0;
#undef LIVE
}

static int do_fetch(st_shard_t *sh, const vp_id_t *resource, const st_specifier_t *specs,
                    size_t n_specs, const vp_id_t *signer, begin_fn begin, walk_fn fn, void *arg,
                    uint32_t *bad_kind)
{
	uint64_t now = now_ms(sh);
	int rc;
	if (!resource || (n_specs && !specs))
		return VP_EINVAL;
	for (size_t i = 0; i < n_specs; i++) {
		const st_kind_t *k = st_db_kind(sh->db, specs[i].kind);
		if (!k) {
			if (bad_kind)
				*bad_kind = specs[i].kind;
			return VP_EUNKNOWN_KIND;
		}
		if ((rc = check_spec(k, &specs[i])))
			return rc;
	}
	if (signer && (rc = st_rate_take(&sh->rate, signer, ST_RATE_FETCH, rate_now_ms(sh)))) {
		count_refusal(sh, rc);
		return rc;
	}
	sh->stats.fetches++;
	for (size_t i = 0; i < n_specs; i++) {
		uint8_t key[KEY_LEN];
		blob_t b;
		int found;
		uint64_t gen = 0;
		make_key(key, resource, specs[i].kind);
		found = load(sh, key, &b, false);
		if (found < 0)
			return found;
		sh->old.n = 0;
		if (found && (rc = decode_loaded(key, &b, &sh->old))) {
			blob_release(&b);
			return rc;
		}
		if (found)
			gen = sh->old.generation;
		rc = begin ? begin(arg, resource, specs[i].kind, gen) : 0;
		if (!rc && found && !(specs[i].generation && specs[i].generation == gen))
			rc = walk_spec(&sh->old, &specs[i], resource, now, fn, arg);
		blob_release(&b);
		if (rc)
			return rc;
	}
	return 0;
}

static int fetch_entry(void *arg, const vp_id_t *rid, uint32_t kind, const st_entry_t *e)
{
	const st_visitor_t *v = arg;
	return v->entry ? v->entry(v->arg, rid, kind, e) : 0;
}

static int fetch_begin(void *arg, const vp_id_t *rid, uint32_t kind, uint64_t gen)
{
	const st_visitor_t *v = arg;
	return v->kind_begin ? v->kind_begin(v->arg, rid, kind, gen) : 0;
}

int st_fetch(st_shard_t *sh, const vp_id_t *resource, const st_specifier_t *specs, size_t n_specs,
             const vp_id_t *signer, const st_visitor_t *v, uint32_t *bad_kind)
{
	if (!v)
		return VP_EINVAL;
	return do_fetch(sh, resource, specs, n_specs, signer, fetch_begin, fetch_entry, (void *)v,
	                bad_kind);
}

static int stat_entry(void *arg, const vp_id_t *rid, uint32_t kind, const st_entry_t *e)
{
	const st_stat_visitor_t *v = arg;
	st_meta_t m;
	unsigned int hlen = 0;
	(void)rid;
	memset(&m, 0, sizeof(m));
	m.index = e->index;
	m.key = e->key;
	m.key_len = e->key_len;
	m.storage_time = e->storage_time;
	m.lifetime = e->lifetime;
	m.exists = e->exists;
	m.value_len = e->value_len;
	m.hash_alg = ST_HASH_ALG_SHA256;
	if (!EVP_Digest(e->value ? (const void *)e->value : (const void *)"", e->value_len, m.hash,
	                &hlen, EVP_sha256(), NULL) || hlen != ST_HASH_LEN)
		return VP_ECRYPTO;
	return v->meta ? v->meta(v->arg, kind, &m) : 0;
}

static int stat_begin(void *arg, const vp_id_t *rid, uint32_t kind, uint64_t gen)
{
	const st_stat_visitor_t *v = arg;
	return v->kind_begin ? v->kind_begin(v->arg, rid, kind, gen) : 0;
}

int st_stat(st_shard_t *sh, const vp_id_t *resource, const st_specifier_t *specs, size_t n_specs,
            const vp_id_t *signer, const st_stat_visitor_t *v, uint32_t *bad_kind)
{
	if (!v)
		return VP_EINVAL;
	return do_fetch(sh, resource, specs, n_specs, signer, stat_begin, stat_entry, (void *)v,
	                bad_kind);
}

/* ---- iteration helpers ---------------------------------------------------------- */

/* The ring interval (from, to] as at most two inclusive Resource-ID segments. */
static size_t ring_segments(const vp_id_t *from, const vp_id_t *to, vp_u128_t lo[2],
                            vp_u128_t hi[2])
{
	vp_u128_t f = vp_id_to_u128(from), t = vp_id_to_u128(to), max = ~(vp_u128_t)0;
	if (f == t) {
		lo[0] = 0;
		hi[0] = max;
		return 1;
	}
	if (f < t) {
		lo[0] = f + 1;
		hi[0] = t;
		return 1;
	}
	if (f == max) {
		lo[0] = 0;
		hi[0] = t;
		return 1;
	}
	lo[0] = f + 1;
	hi[0] = max;
	lo[1] = 0;
	hi[1] = t;
	return 2;
}

/* Record visitor for scans: key is the 20-byte record key. */
typedef int (*rec_fn)(st_shard_t *sh, const uint8_t *key, const st_rec_t *rec, void *arg);

static int scan_segment(st_shard_t *sh, vp_u128_t lo, vp_u128_t hi, rec_fn fn, void *arg)
{
	rocksdb_iterator_t *it = rocksdb_create_iterator_cf(sh->db->rdb, sh->db->scan_ropts, sh->cf);
	uint8_t start[KEY_LEN];
	vp_id_t lo_id = vp_id_from_u128(lo), hi_id = vp_id_from_u128(hi);
	st_rec_t rec = { 0 };
	char *err = NULL;
	int rc = 0;
	make_key(start, &lo_id, 0);
	for (rocksdb_iter_seek(it, (const char *)start, KEY_LEN); rocksdb_iter_valid(it);
	     rocksdb_iter_next(it)) {
		size_t klen, vlen;
		const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &klen);
		const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vlen);
		blob_t b = { .data = v, .len = vlen };
		if (klen != KEY_LEN) {
			rc = VP_EDB;
			break;
		}
		if (memcmp(k, hi_id.b, VP_ID_LEN) > 0)
			break;
		if ((rc = decode_loaded(k, &b, &rec)))
			break;
		if ((rc = fn(sh, k, &rec, arg)))
			break;
	}
	if (!rc) {
		rocksdb_iter_get_error(it, &err);
		if (err)
			rc = db_error("iterate", err);
	}
	rocksdb_iter_destroy(it);
	st_rec_free(&rec);
	return rc;
}

static int scan_range(st_shard_t *sh, const vp_id_t *from, const vp_id_t *to, rec_fn fn,
                      void *arg)
{
	vp_u128_t lo[2], hi[2];
	size_t n = ring_segments(from, to, lo, hi);
	for (size_t i = 0; i < n; i++) {
		int rc = scan_segment(sh, lo[i], hi[i], fn, arg);
		if (rc)
			return rc;
	}
	return 0;
}

typedef struct scan_ctx {
	const st_visitor_t *v;
	uint64_t now;
} scan_ctx_t;

static int scan_visit(st_shard_t *sh, const uint8_t *key, const st_rec_t *rec, void *arg)
{
	scan_ctx_t *c = arg;
	vp_id_t rid;
	uint32_t kind = key_kind(key);
	bool any = false;
	int rc;
	(void)sh;
	memcpy(rid.b, key, VP_ID_LEN);
	for (size_t i = 0; i < rec->n && !any; i++)
		any = rec->e[i].expires_ms > c->now;
	if (!any)
		return 0;
	if (c->v->kind_begin && (rc = c->v->kind_begin(c->v->arg, &rid, kind, rec->generation)))
		return rc;
	for (size_t i = 0; i < rec->n; i++) {
		if (rec->e[i].expires_ms <= c->now || !c->v->entry)
			continue;
		if ((rc = c->v->entry(c->v->arg, &rid, kind, &rec->e[i])))
			return rc;
	}
	return 0;
}

int st_range_scan(st_shard_t *sh, const vp_id_t *from, const vp_id_t *to, const st_visitor_t *v)
{
	scan_ctx_t c = { v, now_ms(sh) };
	if (sh->in_batch)
		return VP_ESTATE;
	if (!from || !to || !v)
		return VP_EINVAL;
	return scan_range(sh, from, to, scan_visit, &c);
}

/* ---- range delete, expiry ------------------------------------------------------ */

typedef struct del_ctx {
	uint64_t n;
	size_t in_batch;
} del_ctx_t;

/* Remove a whole record in the open batch, returning its entries' quota. */
static int drop_record(st_shard_t *sh, const uint8_t *key, const st_rec_t *rec)
{
	uint32_t kind = key_kind(key);
	int rc;
	for (size_t i = 0; i < rec->n; i++)
		if ((rc = charge(sh, &rec->e[i].owner, kind, -1)))
			return rc;
	if ((rc = pend_reserve(sh, 0)))
		return rc;
	pend_set(sh, key, NULL, 0, PEND_DEL);
	return 0;
}

/* Commit every RANGE_DELETE_CHUNK records so a long walk never builds a huge batch. */
static int chunk_commit(st_shard_t *sh, size_t *in_batch)
{
	int rc;
	if (++*in_batch < RANGE_DELETE_CHUNK)
		return 0;
	*in_batch = 0;
	if ((rc = st_batch_commit(sh)))
		return rc;
	return st_batch_begin(sh);
}

static int del_visit(st_shard_t *sh, const uint8_t *key, const st_rec_t *rec, void *arg)
{
	del_ctx_t *c = arg;
	int rc = drop_record(sh, key, rec);
	if (rc)
		return rc;
	c->n++;
	return chunk_commit(sh, &c->in_batch);
}

const st_kind_t *st_shard_kind(const st_shard_t *sh, uint32_t id)
{
	return st_db_kind(sh->db, id);
}

int st_range_delete(st_shard_t *sh, const vp_id_t *from, const vp_id_t *to, uint64_t *n_records)
{
	del_ctx_t c = { 0, 0 };
	int rc;
	if (sh->in_batch)
		return VP_ESTATE;
	if (!from || !to)
		return VP_EINVAL;
	st_batch_begin(sh);
	rc = scan_range(sh, from, to, del_visit, &c);
	if (rc)
		st_batch_abort(sh); /* chunks already committed stay deleted */
	else
		rc = st_batch_commit(sh);
	if (n_records)
		*n_records = c.n;
	if (!rc)
		vp_log_info("storage", "range_deleted", "shard=%u records=%llu", sh->idx,
		            (unsigned long long)c.n);
	return rc;
}

typedef struct stale_ctx {
	uint64_t before;
	bool (*keep)(void *arg, const vp_id_t *resource);
	void *arg;
	uint64_t n;
	size_t in_batch;
} stale_ctx_t;

/* Drop the entries of one record accepted before c->before, in the open batch. */
static int stale_visit(st_shard_t *sh, const uint8_t *key, const st_rec_t *rec, void *arg)
{
	stale_ctx_t *c = arg;
	st_rec_t *w = &sh->work;
	uint32_t kind = key_kind(key);
	vp_id_t rid;
	int rc;
	memcpy(rid.b, key, VP_ID_LEN);
	if (c->keep && c->keep(c->arg, &rid))
		return 0;
	w->model = rec->model;
	w->n = 0;
	if ((rc = st_rec_reserve(w, rec->n)))
		return rc;
	for (size_t i = 0; i < rec->n; i++) {
		if (st_entry_written_ms(&rec->e[i]) >= c->before) {
			w->e[w->n++] = rec->e[i];
			continue;
		}
		if ((rc = charge(sh, &rec->e[i].owner, kind, -1)))
			return rc;
		c->n++;
	}
	if (w->n == rec->n)
		return 0;
	if (w->n == 0) {
		if ((rc = pend_reserve(sh, 0)))
			return rc;
		pend_set(sh, key, NULL, 0, PEND_DEL);
	} else {
		w->generation = rec->generation + 1;
		if ((rc = put_record(sh, key, w)))
			return rc;
	}
	return chunk_commit(sh, &c->in_batch);
}

int st_range_drop_stale(st_shard_t *sh, const vp_id_t *from, const vp_id_t *to, uint64_t written_before_ms,
                        bool (*keep)(void *arg, const vp_id_t *resource), void *arg, uint64_t *n_entries)
{
	stale_ctx_t c = { written_before_ms, keep, arg, 0, 0 };
	int rc;
	if (sh->in_batch)
		return VP_ESTATE;
	if (!from || !to)
		return VP_EINVAL;
	st_batch_begin(sh);
	rc = scan_range(sh, from, to, stale_visit, &c);
	if (rc)
		st_batch_abort(sh);
	else
		rc = st_batch_commit(sh);
	if (n_entries)
		*n_entries = c.n;
	if (!rc)
		vp_log_info("storage", "range_dropped", "shard=%u entries=%llu", sh->idx, (unsigned long long)c.n);
	return rc;
}

/* Drop the expired entries of rec (stored under key) in the open batch. */
static int expire_record(st_shard_t *sh, const uint8_t *key, const st_rec_t *rec, uint64_t now,
                         uint64_t *n_entries)
{
	st_rec_t *w = &sh->work;
	uint32_t kind = key_kind(key);
	int rc;
	w->model = rec->model;
	w->n = 0;
	if ((rc = st_rec_reserve(w, rec->n)))
		return rc;
	for (size_t i = 0; i < rec->n; i++) {
		if (rec->e[i].expires_ms > now) {
			w->e[w->n++] = rec->e[i];
			continue;
		}
		if ((rc = charge(sh, &rec->e[i].owner, kind, -1)))
			return rc;
		(*n_entries)++;
	}
	if (w->n == rec->n)
		return 0;
	/* Expiry is a change of the data: the generation moves on as for any store. */
	w->generation = rec->generation + 1;
	return put_record(sh, key, w);
}

int st_expire(st_shard_t *sh, uint64_t max_records, uint64_t *n_entries)
{
	uint64_t now = now_ms(sh), visited = 0, removed = 0;
	rocksdb_iterator_t *it;
	uint8_t start[KEY_LEN];
	bool wrapped = false, from_first = !sh->cursor_set;
	st_rec_t rec = { 0 };
	size_t in_batch = 0;
	char *err = NULL;
	int rc = 0;
	if (sh->in_batch)
		return VP_ESTATE;
	it = rocksdb_create_iterator_cf(sh->db->rdb, sh->db->scan_ropts, sh->cf);
	memcpy(start, sh->cursor, KEY_LEN);
	if (from_first)
		rocksdb_iter_seek_to_first(it);
	else
		rocksdb_iter_seek(it, (const char *)start, KEY_LEN);
	st_batch_begin(sh);
	sh->cursor_set = false; /* a completed pass starts the next one from the beginning */
	for (;;) {
		size_t klen, vlen;
		const uint8_t *k, *v;
		if (!rocksdb_iter_valid(it)) {
			if (from_first || wrapped)
				break;
			rocksdb_iter_get_error(it, &err);
			if (err)
				break;
			wrapped = true;
			rocksdb_iter_seek_to_first(it);
			continue;
		}
		k = (const uint8_t *)rocksdb_iter_key(it, &klen);
		if (klen != KEY_LEN) {
			rc = VP_EDB;
			break;
		}
		if (wrapped && memcmp(k, start, KEY_LEN) >= 0)
			break; /* back where this pass began */
		if (max_records && visited >= max_records) {
			memcpy(sh->cursor, k, KEY_LEN);
			sh->cursor_set = true;
			break;
		}
		visited++;
		v = (const uint8_t *)rocksdb_iter_value(it, &vlen);
		{
			blob_t b = { .data = v, .len = vlen };
			if ((rc = decode_loaded(k, &b, &rec)))
				break;
		}
		if (st_rec_min_expiry(&rec) <= now) {
			if ((rc = expire_record(sh, k, &rec, now, &removed)))
				break;
			if ((rc = chunk_commit(sh, &in_batch)))
				break;
		}
		rocksdb_iter_next(it);
	}
	if (!rc && !err)
		rocksdb_iter_get_error(it, &err);
	if (!rc && err)
		rc = db_error("iterate", err);
	rocksdb_iter_destroy(it);
	st_rec_free(&rec);
	if (rc) {
		st_batch_abort(sh);
		return rc;
	}
	rc = st_batch_commit(sh);
	if (!rc)
		sh->stats.entries_expired += removed;
	if (n_entries)
		*n_entries = removed;
	if (!rc && removed)
		vp_log_debug("storage", "expired", "shard=%u entries=%llu visited=%llu", sh->idx,
		             (unsigned long long)removed, (unsigned long long)visited);
	return rc;
}

/* ---- find ------------------------------------------------------------------------ */

typedef struct find_ctx {
	uint32_t kind;
	uint64_t now;
	vp_id_t found;
	bool hit;
} find_ctx_t;

#define FIND_STOP 1 /* positive: never confused with a VP_E* code */

static int find_visit(st_shard_t *sh, const uint8_t *key, const st_rec_t *rec, void *arg)
{
	find_ctx_t *c = arg;
	(void)sh;
	if (key_kind(key) != c->kind)
		return 0;
	for (size_t i = 0; i < rec->n; i++) {
		if (rec->e[i].exists && rec->e[i].expires_ms > c->now) {
			memcpy(c->found.b, key, VP_ID_LEN);
			c->hit = true;
			return FIND_STOP;
		}
	}
	return 0;
}

int st_find(st_shard_t *sh, const vp_id_t *resource, uint32_t kind, const vp_id_t *signer,
            vp_id_t *closest)
{
	find_ctx_t c = { .kind = kind, .now = now_ms(sh) };
	vp_u128_t r;
	int rc;
	if (!resource || !closest)
		return VP_EINVAL;
	if (!st_db_kind(sh->db, kind))
		return VP_EUNKNOWN_KIND;
	if (signer && (rc = st_rate_take(&sh->rate, signer, ST_RATE_FETCH, rate_now_ms(sh))))
		return rc;
	/* [resource, max] then [0, resource): clockwise from the requested id. */
	r = vp_id_to_u128(resource);
	rc = scan_segment(sh, r, ~(vp_u128_t)0, find_visit, &c);
	if (rc == 0 && r > 0)
		rc = scan_segment(sh, 0, r - 1, find_visit, &c);
	if (rc < 0)
		return rc;
	if (!c.hit)
		return VP_ENOTFOUND;
	*closest = c.found;
	return 0;
}

/* ---- derived state ------------------------------------------------------------------ */

static int count_visit(st_shard_t *sh, const uint8_t *key, const st_rec_t *rec, void *arg)
{
	st_quota_table_t *t = arg;
	uint32_t kind = key_kind(key);
	int rc;
	(void)sh;
	for (size_t i = 0; i < rec->n; i++)
		if ((rc = st_quota_add(t, &rec->e[i].owner, kind, 1)))
			return rc;
	return 0;
}

static int recount(st_shard_t *sh, st_quota_table_t *t)
{
	vp_id_t zero;
	memset(&zero, 0, sizeof(zero));
	st_quota_clear(t);
	return scan_range(sh, &zero, &zero, count_visit, t);
}

/* Opening a shard: the quota counters and the key filter, from one scan of every record. */
static int open_visit(st_shard_t *sh, const uint8_t *key, const st_rec_t *rec, void *arg)
{
	(void)arg;
	if (sh->kf.n_layers && st_kf_add(&sh->kf, key, KEY_LEN))
		kf_off(sh);
	return count_visit(sh, key, rec, &sh->quota);
}

static int open_scan(st_shard_t *sh)
{
	vp_id_t zero;
	memset(&zero, 0, sizeof(zero));
	st_quota_clear(&sh->quota);
	return scan_range(sh, &zero, &zero, open_visit, NULL);
}

int st_shard_verify(st_shard_t *sh)
{
	st_quota_table_t fresh;
	int rc;
	if (sh->in_batch)
		return VP_ESTATE;
	if ((rc = st_quota_init(&fresh)))
		return rc;
	rc = recount(sh, &fresh);
	if (!rc && fresh.n != sh->quota.n)
		rc = VP_ESTATE;
	for (size_t i = 0; !rc && i < fresh.cap; i++) {
		const st_quota_slot_t *s = &fresh.slots[i];
		if (s->used && st_quota_get(&sh->quota, &s->owner, s->kind) != s->used)
			rc = VP_ESTATE;
	}
	st_quota_free(&fresh);
	return rc;
}

uint64_t st_shard_estimate_records(st_shard_t *sh)
{
	uint64_t v = 0;
	if (rocksdb_property_int_cf(sh->db->rdb, sh->cf, "rocksdb.estimate-num-keys", &v) != 0)
		return 0;
	return v;
}

void st_shard_stats(const st_shard_t *sh, st_stats_t *out)
{
	*out = sh->stats;
}

void st_shard_set_fraction(st_shard_t *sh, uint32_t ppb)
{
	sh->fraction_ppb = ppb > 1000000000u ? 1000000000u : ppb;
}

/* ---- open / close -------------------------------------------------------------------- */

unsigned st_db_shards(const st_db_t *db)
{
	return db->n_shards;
}

st_shard_t *st_db_shard(st_db_t *db, unsigned i)
{
	return i < db->n_shards ? &db->shards[i] : NULL;
}

static int shard_init(st_db_t *db, st_shard_t *sh, unsigned idx)
{
	int rc;
	memset(sh, 0, sizeof(*sh));
	sh->db = db;
	sh->idx = idx;
	sh->fraction_ppb = 1000000000u;
	sh->wb = rocksdb_writebatch_create();
	sh->pend = calloc(PEND_INITIAL_CAP, sizeof(*sh->pend));
	if (!sh->wb || !sh->pend)
		return VP_ENOMEM;
	sh->pend_cap = PEND_INITIAL_CAP;
	sh->epoch = 1;
	sh->pend_seed = (uint64_t)(uintptr_t)sh * 0x9e3779b97f4a7c15ull ^ idx;
	if ((rc = st_quota_init(&sh->quota)))
		return rc;
	/* The configured rates are per node (each shard polices its share), or per shard when each shard is a
	 * storing peer of its own (rate_per_shard). */
	return st_rate_init(&sh->rate, db->cfg.rate, db->cfg.rate_per_shard ? 1 : db->n_shards);
}

static void shard_free(st_shard_t *sh)
{
	if (sh->wb)
		rocksdb_writebatch_destroy(sh->wb);
	free(sh->pend);
	free(sh->arena);
	free(sh->pundo);
	free(sh->order);
	free(sh->pf_keys);
	free(sh->pf_ptrs);
	free(sh->pf_sizes);
	free(sh->pf_vals);
	free(sh->pf_errs);
	st_quota_free(&sh->quota);
	st_rate_free(&sh->rate);
	st_kf_free(&sh->kf);
	st_rec_free(&sh->old);
	st_rec_free(&sh->work);
	free(sh->undo);
	free(sh->deltas);
	free(sh->buf);
}

void st_db_close(st_db_t *db)
{
	if (!db)
		return;
	if (db->shards)
		for (unsigned i = 0; i < db->n_shards; i++)
			shard_free(&db->shards[i]);
	free(db->shards);
	for (size_t i = 0; i < db->n_cfh; i++)
		if (db->cfh[i])
			rocksdb_column_family_handle_destroy(db->cfh[i]);
	free(db->cfh);
	if (db->rdb)
		rocksdb_close(db->rdb);
	if (db->ropts)
		rocksdb_readoptions_destroy(db->ropts);
	if (db->scan_ropts)
		rocksdb_readoptions_destroy(db->scan_ropts);
	if (db->wopts)
		rocksdb_writeoptions_destroy(db->wopts);
	if (db->opts)
		rocksdb_options_destroy(db->opts);
	if (db->bbto)
		rocksdb_block_based_options_destroy(db->bbto);
	if (db->cache)
		rocksdb_cache_destroy(db->cache);
	free(db);
}

static int setup_options(st_db_t *db)
{
	const st_config_t *c = &db->cfg;
	db->opts = rocksdb_options_create();
	db->bbto = rocksdb_block_based_options_create();
	db->cache = rocksdb_cache_create_lru(c->block_cache_bytes ? c->block_cache_bytes : DEFAULT_CACHE);
	db->ropts = rocksdb_readoptions_create();
	db->scan_ropts = rocksdb_readoptions_create();
	db->wopts = rocksdb_writeoptions_create();
	if (!db->opts || !db->bbto || !db->cache || !db->ropts || !db->scan_ropts ||
	    !db->wopts)
		return VP_ENOMEM;
	rocksdb_block_based_options_set_block_cache(db->bbto, db->cache);
	if (c->bloom_bits > 0)
		rocksdb_block_based_options_set_filter_policy(
			db->bbto, rocksdb_filterpolicy_create_bloom_full((double)c->bloom_bits));
	rocksdb_block_based_options_set_format_version(db->bbto, 5);
	/* Point reads dominate: a hash index inside each data block saves the binary search. */
	rocksdb_block_based_options_set_data_block_index_type(db->bbto, 1);
	rocksdb_block_based_options_set_data_block_hash_ratio(db->bbto, 0.75);

	rocksdb_options_set_create_if_missing(db->opts, 1);
	rocksdb_options_set_create_missing_column_families(db->opts, 1);
	rocksdb_options_increase_parallelism(db->opts, 2);
	rocksdb_options_set_max_background_jobs(db->opts, 2);
	rocksdb_options_set_write_buffer_size(db->opts,
		c->write_buffer_bytes ? c->write_buffer_bytes : DEFAULT_WRITE_BUFFER);
	rocksdb_options_set_max_write_buffer_number(db->opts, 3);
	rocksdb_options_set_level_compaction_dynamic_level_bytes(db->opts, 1);
	/* Load (every store a new number) is bound by compaction on a small machine.  More
	 * L0 files per L0->L1 compaction and a base level to match cut the write
	 * amplification; the read-before-write pays one bloom probe per extra L0 file. */
	rocksdb_options_set_level0_file_num_compaction_trigger(db->opts, 8);
	rocksdb_options_set_level0_slowdown_writes_trigger(db->opts, 24);
	rocksdb_options_set_level0_stop_writes_trigger(db->opts, 40);
	rocksdb_options_set_max_bytes_for_level_base(db->opts, 512u << 20);
	rocksdb_options_compaction_readahead_size(db->opts, 2u << 20);
	rocksdb_options_set_bytes_per_sync(db->opts, 1u << 20);
	/* Records are mostly a signature (random bytes): compressing the short-lived upper
	 * levels costs CPU for little; only the levels below the base level (where nearly
	 * all the data ends up) are compressed, with LZ4 (cheaper than Snappy on
	 * incompressible input), and the bottommost level always.  With dynamic level
	 * bytes, entry 1 is the base level. */
	{
		static const int comp[7] = { rocksdb_no_compression, rocksdb_no_compression,
			                     rocksdb_lz4_compression, rocksdb_lz4_compression,
			                     rocksdb_lz4_compression, rocksdb_lz4_compression,
			                     rocksdb_lz4_compression };
		rocksdb_options_set_compression_per_level(db->opts, comp, 7);
		/* While the data fits the base level, that level is also the last one. */
		rocksdb_options_set_bottommost_compression(db->opts, rocksdb_lz4_compression);
	}
	rocksdb_options_set_block_based_table_factory(db->opts, db->bbto);
	rocksdb_options_set_keep_log_file_num(db->opts, 3);
	/* Most stores are of new numbers: a whole-key bloom filter in the memtable answers
	 * their read-before-write without walking the skiplist. */
	rocksdb_options_set_memtable_prefix_bloom_size_ratio(db->opts, 0.05);
	rocksdb_options_set_memtable_whole_key_filtering(db->opts, 1);

	rocksdb_readoptions_set_fill_cache(db->scan_ropts, 0);
	rocksdb_readoptions_set_readahead_size(db->scan_ropts, 2u << 20);
	rocksdb_writeoptions_set_sync(db->wopts, c->sync_wal ? 1 : 0);
	rocksdb_writeoptions_disable_WAL(db->wopts, 0);
	return 0;
}

/* Is name "s<digits>"?  Returns the shard number or -1. */
static long cf_shard(const char *name)
{
	char *end;
	long n;
	if (name[0] != 's' || name[1] < '0' || name[1] > '9')
		return -1;
	n = strtol(name + 1, &end, 10);
	if (n < 0 || n > 4095)
		return -1;
	return *end == '\0' ? n : -1;
}

int st_db_open(const st_config_t *cfg, st_db_t **out)
{
	st_db_t *db;
	st_kind_t vk;
	char **existing = NULL, **names = NULL, *err = NULL;
	const rocksdb_options_t **copts = NULL;
	size_t n_existing = 0, n_names = 0;
	unsigned n_shards = 0;
	int rc;

	*out = NULL;
	if (!cfg || !cfg->path || cfg->n_shards == 0 || cfg->n_shards > 4096)
		return VP_ECONFIG;
	db = calloc(1, sizeof(*db));
	if (!db)
		return VP_ENOMEM;
	db->cfg = *cfg;
	db->cfg.kinds = NULL;
	db->cfg.n_kinds = 0;
	if (!(db->cfg.quota_slack >= 1.0))
		db->cfg.quota_slack = ST_QUOTA_SLACK_DEFAULT;

	vk = st_kind_vipr(cfg->vipr_kind_id);
	vk.quota = cfg->vipr_quota;
	if (cfg->vipr_max_per_cert)
		vk.max_per_cert = cfg->vipr_max_per_cert;
	if ((rc = add_kind(db, &vk)))
		goto fail;
	for (size_t i = 0; i < cfg->n_kinds; i++)
		if ((rc = add_kind(db, &cfg->kinds[i])))
			goto fail;
	if ((rc = setup_options(db)))
		goto fail;

	/* Shards: the configured count, or more if the database already has more. */
	n_shards = cfg->n_shards;
	existing = rocksdb_list_column_families(db->opts, cfg->path, &n_existing, &err);
	if (err) {
		free(err); /* a new database has no column families yet */
		err = NULL;
		n_existing = 0; /* existing is still an (empty) allocation: freed below */
	}
	for (size_t i = 0; i < n_existing; i++) {
		long s = cf_shard(existing[i]);
		if (s >= 0 && (unsigned)s + 1 > n_shards)
			n_shards = (unsigned)s + 1;
	}
	n_names = 1 + (size_t)n_shards;
	names = calloc(n_names, sizeof(*names));
	copts = calloc(n_names, sizeof(*copts));
	db->cfh = calloc(n_names, sizeof(*db->cfh));
	db->shards = calloc(n_shards, sizeof(*db->shards));
	if (!names || !copts || !db->cfh || !db->shards) {
		rc = VP_ENOMEM;
		goto fail;
	}
	db->n_cfh = n_names;
	names[0] = strdup("default");
	copts[0] = db->opts;
	for (unsigned i = 0; i < n_shards; i++) {
		names[1 + i] = malloc(16);
		if (!names[1 + i]) {
			rc = VP_ENOMEM;
			goto fail;
		}
		snprintf(names[1 + i], 16, "s%u", i);
		copts[1 + i] = db->opts;
	}
	if (!names[0]) {
		rc = VP_ENOMEM;
		goto fail;
	}
	db->rdb = rocksdb_open_column_families(db->opts, cfg->path, (int)n_names,
	                                       (const char *const *)names, copts, db->cfh, &err);
	if (err) {
		rc = db_error("open", err);
		err = NULL;
		db->rdb = NULL;
		memset(db->cfh, 0, n_names * sizeof(*db->cfh));
		goto fail;
	}
	db->n_shards = n_shards;
	for (unsigned i = 0; i < n_shards; i++) {
		st_shard_t *sh = &db->shards[i];
		uint64_t t0 = vp_time_mono_ns(), est;
		if ((rc = shard_init(db, sh, i)))
			goto fail;
		sh->cf = db->cfh[1 + i];
		est = st_shard_estimate_records(sh);
		/* Without memory for the filter the shard still works: every read is done. */
		if (st_kf_init(&sh->kf, est + est / 4))
			vp_log_warn("storage", "key_filter_off", "shard=%u reason=ENOMEM", i);
		if ((rc = open_scan(sh)))
			goto fail;
		vp_log_info("storage", "shard_open",
		            "shard=%u signers=%zu key_filter_keys=%llu key_filter_kib=%zu rebuild_ms=%llu", i,
		            st_quota_pairs(&sh->quota), (unsigned long long)sh->kf.added,
		            st_kf_bytes(&sh->kf) / 1024,
		            (unsigned long long)((vp_time_mono_ns() - t0) / 1000000u));
	}
	rc = 0;
	*out = db;
	goto done;
fail:
	if (db->shards)
		db->n_shards = n_shards; /* calloc'ed: freeing a never-initialised shard is safe */
	st_db_close(db);
done:
	if (existing)
		rocksdb_list_column_families_destroy(existing, n_existing);
	if (names)
		for (size_t i = 0; i < n_names; i++)
			free(names[i]);
	free(names);
	free((void *)copts);
	return rc;
}
