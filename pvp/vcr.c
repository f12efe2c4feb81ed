/*
 * pvp/vcr.c - call records and their RocksDB store.
 */
#include "pvp/vcr.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <rocksdb/c.h>

#include "common/buf.h"
#include "common/errcode.h"
#include "common/log.h"
#include "pvp/method.h"

#define DEFAULT_RETENTION_MS (48ull * 3600 * 1000) /* seed 001 §B.3.1 */
#define DEFAULT_TOLERANCE_S 90                     /* (max_shift + 1/2) * G_s, §5.3 */
#define REC_KEY_LEN (1 + 1 + 8 + 8)
#define IDX_KEY_LEN (1 + 4 + PVP_SEL_LEN + 8 + 8)
_Static_assert(PVP_SEL_LEN == sizeof(((pvp_vcr_prep_t *)0)->sel[0]), "selector length");

#define FIND_SCAN_MAX 4096 /* records scanned per find: bounds the work one username can cause */

struct pvp_vcr_store {
	rocksdb_t *db;
	rocksdb_options_t *opts;
	rocksdb_writeoptions_t *wopts;
	rocksdb_readoptions_t *ropts;
	pthread_mutex_t lock; /* next_id */
	uint64_t next_id;
	uint64_t term_retention_ms;
	uint64_t orig_retention_ms;
	uint32_t tolerance_s;
	const vp_clock_t *clock;
};

static const char next_id_key[] = "Mnext_id";

int pvp_vcr_make(pvp_vcr_t *r, pvp_dir_t dir, const char *called, const char *caller,
                 uint64_t start_ms, uint64_t stop_ms, const vp_e164_conf_t *conf)
{
	int rc;
	memset(r, 0, sizeof(*r));
	if (dir != PVP_DIR_ORIG && dir != PVP_DIR_TERM)
		return VP_EINVAL;
	rc = vp_e164_normalize(called, conf, r->called);
	if (rc)
		return rc;
	if (caller && caller[0]) {
		rc = vp_e164_normalize(caller, conf, r->caller);
		if (rc)
			return rc;
	}
	if (stop_ms <= start_ms)
		return VP_ERANGE;
	r->start_ms = start_ms;
	r->stop_ms = stop_ms;
	r->dir = (uint8_t)dir;
	return 0;
}

int pvp_vcr_encode(const pvp_vcr_t *r, uint8_t *out, size_t cap, size_t *len)
{
	vp_wr_t wr;
	vp_wr_init(&wr, out, cap);
	vp_wr_u8(&wr, 1); /* layout version */
	vp_wr_u8(&wr, r->dir);
	vp_wr_u64(&wr, r->start_ms);
	vp_wr_u64(&wr, r->stop_ms);
	vp_wr_u64(&wr, r->id);
	vp_wr_vec_bytes(&wr, 1, r->called, strnlen(r->called, sizeof(r->called)));
	vp_wr_vec_bytes(&wr, 1, r->caller, strnlen(r->caller, sizeof(r->caller)));
	*len = vp_wr_len(&wr);
	return wr.err;
}

int pvp_vcr_decode(const uint8_t *in, size_t len, pvp_vcr_t *r)
{
	vp_rd_t rd;
	uint8_t ver;
	const uint8_t *called, *caller;
	size_t cl, kl;
	memset(r, 0, sizeof(*r));
	vp_rd_init(&rd, in, len);
	vp_rd_u8(&rd, &ver);
	vp_rd_u8(&rd, &r->dir);
	vp_rd_u64(&rd, &r->start_ms);
	vp_rd_u64(&rd, &r->stop_ms);
	vp_rd_u64(&rd, &r->id);
	vp_rd_vec_bytes(&rd, 1, &called, &cl);
	vp_rd_vec_bytes(&rd, 1, &caller, &kl);
	if (vp_rd_done(&rd))
		return rd.err;
	if (ver != 1 || r->dir > PVP_DIR_TERM || cl == 0 || cl >= sizeof(r->called) ||
	    kl >= sizeof(r->caller))
		return VP_EMALFORMED;
	memcpy(r->called, called, cl);
	memcpy(r->caller, caller, kl);
	if (!vp_e164_is_canonical(r->called) || (kl && !vp_e164_is_canonical(r->caller)))
		return VP_EMALFORMED;
	return 0;
}

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

static uint64_t get_be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void rec_key(uint8_t k[REC_KEY_LEN], uint8_t dir, uint64_t start_ms, uint64_t id)
{
	k[0] = 'R';
	k[1] = dir;
	put_be64(k + 2, start_ms);
	put_be64(k + 10, id);
}

static void idx_key(uint8_t k[IDX_KEY_LEN], uint32_t bucket, const uint8_t sel[PVP_SEL_LEN],
                    uint64_t start_ms, uint64_t id)
{
	k[0] = 'S';
	put_be32(k + 1, bucket);
	memcpy(k + 5, sel, PVP_SEL_LEN);
	put_be64(k + 5 + PVP_SEL_LEN, start_ms);
	put_be64(k + 13 + PVP_SEL_LEN, id);
}

static int db_err(char *err, const char *event)
{
	if (!err)
		return 0;
	vp_log_error("pvp", event, "rocksdb=\"%s\"", err);
	rocksdb_free(err);
	return VP_EDB;
}

int pvp_vcr_store_open(const pvp_vcr_store_conf_t *conf, pvp_vcr_store_t **out)
{
	pvp_vcr_store_t *st;
	char *err = NULL, *val;
	size_t vlen;
	int rc;

	*out = NULL;
	if (!conf || !conf->path)
		return VP_EINVAL;
	st = calloc(1, sizeof(*st));
	if (!st)
		return VP_ENOMEM;
	st->term_retention_ms = conf->term_retention_ms ? conf->term_retention_ms : DEFAULT_RETENTION_MS;
	st->orig_retention_ms = conf->orig_retention_ms ? conf->orig_retention_ms : DEFAULT_RETENTION_MS;
	st->tolerance_s = conf->start_tolerance_s ? conf->start_tolerance_s : DEFAULT_TOLERANCE_S;
	st->clock = conf->clock;
	pthread_mutex_init(&st->lock, NULL);
	st->opts = rocksdb_options_create();
	rocksdb_options_set_create_if_missing(st->opts, 1);
	/* Small records, small database: keep the memtable modest. */
	rocksdb_options_set_write_buffer_size(st->opts, 8u << 20);
	st->wopts = rocksdb_writeoptions_create();
	st->ropts = rocksdb_readoptions_create();
	st->db = rocksdb_open(st->opts, conf->path, &err);
	if ((rc = db_err(err, "vcr_store_open")))
		goto fail;
	val = rocksdb_get(st->db, st->ropts, next_id_key, sizeof(next_id_key) - 1, &vlen, &err);
	if ((rc = db_err(err, "vcr_store_open")))
		goto fail;
	st->next_id = 1;
	if (val) {
		if (vlen == 8)
			st->next_id = get_be64((const uint8_t *)val);
		rocksdb_free(val);
	}
	*out = st;
	return 0;
fail:
	pvp_vcr_store_close(st);
	return rc;
}

void pvp_vcr_store_close(pvp_vcr_store_t *st)
{
	if (!st)
		return;
	if (st->db)
		rocksdb_close(st->db);
	rocksdb_readoptions_destroy(st->ropts);
	rocksdb_writeoptions_destroy(st->wopts);
	rocksdb_options_destroy(st->opts);
	pthread_mutex_destroy(&st->lock);
	free(st);
}

static uint64_t now_ms(const pvp_vcr_store_t *st)
{
	return vp_clock_now_ms(st->clock);
}

static uint64_t retention(const pvp_vcr_store_t *st, uint8_t dir)
{
	return dir == PVP_DIR_TERM ? st->term_retention_ms : st->orig_retention_ms;
}

static bool is_live(const pvp_vcr_store_t *st, const pvp_vcr_t *r, uint64_t now)
{
	return r->start_ms + retention(st, r->dir) > now;
}

/* Buckets touched by [start - T, start + T] (at most two for T < 1800 s). */
static unsigned record_buckets(const pvp_vcr_store_t *st, const pvp_vcr_t *r, uint32_t b[2])
{
	uint64_t s = r->start_ms / 1000;
	uint64_t lo = s > st->tolerance_s ? s - st->tolerance_s : 0, hi = s + st->tolerance_s;
	b[0] = (uint32_t)(lo / PVP_BUCKET_S);
	b[1] = (uint32_t)(hi / PVP_BUCKET_S);
	return b[0] == b[1] ? 1 : 2;
}

int pvp_vcr_prepare(const pvp_vcr_store_t *st, const pvp_vcr_t *rin, pvp_vcr_prep_t *p)
{
	pvp_vcr_t rec = *rin; /* rin may be &p->rec */
	const pvp_vcr_t *r = &p->rec;
	memset(p, 0, sizeof(*p));
	p->rec = rec;
	if (r->dir > PVP_DIR_TERM || !vp_e164_is_canonical(r->called) || r->stop_ms <= r->start_ms ||
	    (r->caller[0] && !vp_e164_is_canonical(r->caller)))
		return p->rc = VP_EINVAL;
	if (!is_live(st, r, now_ms(st)))
		return p->rc = VP_EEXPIRED;
	if (r->dir == PVP_DIR_TERM) {
		p->nb = record_buckets(st, r, p->buckets);
		for (unsigned i = 0; i < p->nb; i++)
			if ((p->rc = pvp_selector(r->called, p->buckets[i], p->sel[i])))
				return p->rc;
	}
	return 0;
}

int pvp_vcr_store_add_prepared(pvp_vcr_store_t *st, pvp_vcr_prep_t *p, size_t n)
{
	uint8_t key[REC_KEY_LEN], ikey[IDX_KEY_LEN], val[PVP_VCR_ENC_MAX], idb[8];
	size_t vlen, todo = 0;
	rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
	char *err = NULL;
	int rc = 0;

	/* Ids are assigned and written under the lock, so the stored next_id never
	 * goes backwards when several threads add at once. */
	pthread_mutex_lock(&st->lock);
	for (size_t i = 0; i < n; i++) {
		pvp_vcr_t *r = &p[i].rec;
		if (p[i].rc)
			continue;
		r->id = st->next_id + todo;
		if ((p[i].rc = pvp_vcr_encode(r, val, sizeof(val), &vlen)))
			continue;
		todo++;
		rec_key(key, r->dir, r->start_ms, r->id);
		rocksdb_writebatch_put(wb, (const char *)key, sizeof(key), (const char *)val, vlen);
		for (unsigned b = 0; b < p[i].nb; b++) {
			idx_key(ikey, p[i].buckets[b], p[i].sel[b], r->start_ms, r->id);
			rocksdb_writebatch_put(wb, (const char *)ikey, sizeof(ikey), (const char *)val, vlen);
		}
	}
	if (todo) {
		put_be64(idb, st->next_id + todo);
		rocksdb_writebatch_put(wb, next_id_key, sizeof(next_id_key) - 1, (const char *)idb, 8);
		rocksdb_write(st->db, st->wopts, wb, &err);
		if (!(rc = db_err(err, "vcr_store_add"))) {
			st->next_id += todo;
		} else {
			for (size_t i = 0; i < n; i++)
				if (!p[i].rc)
					p[i].rc = rc;
		}
	}
	pthread_mutex_unlock(&st->lock);
	rocksdb_writebatch_destroy(wb);
	return rc;
}

int pvp_vcr_store_add(pvp_vcr_store_t *st, pvp_vcr_t *r)
{
	pvp_vcr_prep_t p;
	int rc;
	/* The slow hashes run before taking the lock. */
	if ((rc = pvp_vcr_prepare(st, r, &p)))
		return rc;
	if ((rc = pvp_vcr_store_add_prepared(st, &p, 1)))
		return rc;
	if (p.rc)
		return p.rc;
	r->id = p.rec.id;
	return 0;
}

static int cmp_recent_first(const void *pa, const void *pb)
{
	const pvp_vcr_t *a = pa, *b = pb;
	if (a->start_ms != b->start_ms)
		return a->start_ms > b->start_ms ? -1 : 1;
	if (a->stop_ms != b->stop_ms)
		return a->stop_ms > b->stop_ms ? -1 : 1;
	if (a->id != b->id)
		return a->id > b->id ? -1 : 1;
	return 0;
}

int pvp_vcr_store_find(pvp_vcr_store_t *st, uint32_t bucket, const uint8_t sel[16],
                       pvp_vcr_t *out, size_t max, size_t *n)
{
	uint8_t prefix[1 + 4 + PVP_SEL_LEN];
	rocksdb_iterator_t *it;
	uint64_t now = now_ms(st);
	size_t got = 0, scanned = 0;
	char *err = NULL;
	int rc = 0;

	*n = 0;
	prefix[0] = 'S';
	put_be32(prefix + 1, bucket);
	memcpy(prefix + 5, sel, PVP_SEL_LEN);
	it = rocksdb_create_iterator(st->db, st->ropts);
	/*
	 * Keys sort by start time within the prefix: walk backwards from the end
	 * so the most recent records come first and `max` keeps the right ones.
	 */
	{
		uint8_t upper[IDX_KEY_LEN]; /* the largest key with this prefix */
		memcpy(upper, prefix, sizeof(prefix));
		memset(upper + sizeof(prefix), 0xff, IDX_KEY_LEN - sizeof(prefix));
		rocksdb_iter_seek_for_prev(it, (const char *)upper, sizeof(upper));
	}
	for (; rocksdb_iter_valid(it) && got < max && scanned < FIND_SCAN_MAX; rocksdb_iter_prev(it)) {
		size_t klen, vlen;
		const char *k = rocksdb_iter_key(it, &klen);
		const char *v;
		pvp_vcr_t r;
		if (klen != IDX_KEY_LEN || memcmp(k, prefix, sizeof(prefix)) != 0)
			break;
		scanned++;
		v = rocksdb_iter_value(it, &vlen);
		if (pvp_vcr_decode((const uint8_t *)v, vlen, &r)) {
			vp_log_warn("pvp", "vcr_corrupt", "where=index");
			continue;
		}
		if (!is_live(st, &r, now))
			continue;
		out[got++] = r;
	}
	rocksdb_iter_get_error(it, &err);
	rc = db_err(err, "vcr_store_find");
	rocksdb_iter_destroy(it);
	if (rc)
		return rc;
	qsort(out, got, sizeof(out[0]), cmp_recent_first);
	*n = got;
	return 0;
}

int pvp_vcr_store_scan(pvp_vcr_store_t *st, pvp_dir_t dir,
                       int (*cb)(void *arg, const pvp_vcr_t *r), void *arg)
{
	uint8_t start[2] = { 'R', (uint8_t)dir };
	rocksdb_iterator_t *it = rocksdb_create_iterator(st->db, st->ropts);
	uint64_t now = now_ms(st);
	char *err = NULL;
	int rc = 0;

	for (rocksdb_iter_seek(it, (const char *)start, 2); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		size_t klen, vlen;
		const char *k = rocksdb_iter_key(it, &klen);
		const char *v;
		pvp_vcr_t r;
		if (klen != REC_KEY_LEN || memcmp(k, start, 2) != 0)
			break;
		v = rocksdb_iter_value(it, &vlen);
		if (pvp_vcr_decode((const uint8_t *)v, vlen, &r) || !is_live(st, &r, now))
			continue;
		if (cb(arg, &r))
			break;
	}
	rocksdb_iter_get_error(it, &err);
	rc = db_err(err, "vcr_store_scan");
	rocksdb_iter_destroy(it);
	return rc;
}

int pvp_vcr_store_del(pvp_vcr_store_t *st, const pvp_vcr_t *r)
{
	uint8_t key[REC_KEY_LEN], ikey[IDX_KEY_LEN];
	rocksdb_writebatch_t *wb;
	char *err = NULL, *val;
	size_t vlen;
	int rc;

	rec_key(key, r->dir, r->start_ms, r->id);
	val = rocksdb_get(st->db, st->ropts, (const char *)key, sizeof(key), &vlen, &err);
	if ((rc = db_err(err, "vcr_store_del")))
		return rc;
	if (!val)
		return VP_ENOTFOUND;
	rocksdb_free(val);
	wb = rocksdb_writebatch_create();
	rocksdb_writebatch_delete(wb, (const char *)key, sizeof(key));
	if (r->dir == PVP_DIR_TERM) {
		uint32_t buckets[2];
		unsigned nb = record_buckets(st, r, buckets);
		for (unsigned i = 0; i < nb; i++) {
			uint8_t sel[PVP_SEL_LEN];
			if ((rc = pvp_selector(r->called, buckets[i], sel)))
				goto out;
			idx_key(ikey, buckets[i], sel, r->start_ms, r->id);
			rocksdb_writebatch_delete(wb, (const char *)ikey, sizeof(ikey));
		}
	}
	rocksdb_write(st->db, st->wopts, wb, &err);
	rc = db_err(err, "vcr_store_del");
out:
	rocksdb_writebatch_destroy(wb);
	return rc;
}

/* Delete keys in [lo, hi) in batches; counts the deleted keys. */
static int delete_range(pvp_vcr_store_t *st, const uint8_t *lo, size_t lolen, const uint8_t *hi,
                        size_t hilen, size_t *count)
{
	rocksdb_iterator_t *it = rocksdb_create_iterator(st->db, st->ropts);
	rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
	char *err = NULL;
	size_t n = 0;
	int rc;

	for (rocksdb_iter_seek(it, (const char *)lo, lolen); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		size_t klen;
		const char *k = rocksdb_iter_key(it, &klen);
		size_t m = klen < hilen ? klen : hilen;
		int c = memcmp(k, hi, m);
		if (c > 0 || (c == 0 && klen >= hilen))
			break;
		rocksdb_writebatch_delete(wb, k, klen);
		n++;
		if (rocksdb_writebatch_count(wb) >= 1024) {
			rocksdb_write(st->db, st->wopts, wb, &err);
			if (err)
				break;
			rocksdb_writebatch_clear(wb);
		}
	}
	if (!err)
		rocksdb_iter_get_error(it, &err);
	if (!err && rocksdb_writebatch_count(wb))
		rocksdb_write(st->db, st->wopts, wb, &err);
	rc = db_err(err, "vcr_store_purge");
	rocksdb_writebatch_destroy(wb);
	rocksdb_iter_destroy(it);
	*count = n;
	return rc;
}

int pvp_vcr_store_purge(pvp_vcr_store_t *st, size_t *removed)
{
	uint64_t now = now_ms(st);
	size_t total = 0, n;
	int rc;

	for (uint8_t dir = PVP_DIR_ORIG; dir <= PVP_DIR_TERM; dir++) {
		uint64_t ret = retention(st, dir);
		uint8_t lo[2] = { 'R', dir }, hi[10];
		if (now <= ret)
			continue;
		/* Records with start_ms + ret <= now, i.e. start_ms < now - ret + 1. */
		hi[0] = 'R';
		hi[1] = dir;
		put_be64(hi + 2, now - ret + 1);
		rc = delete_range(st, lo, sizeof(lo), hi, sizeof(hi), &n);
		if (rc)
			return rc;
		total += n;
	}
	/* Index entries: a bucket whose every record started before the cutoff is dead. */
	if (now > st->term_retention_ms) {
		uint64_t cutoff_s = (now - st->term_retention_ms) / 1000;
		uint8_t lo[1] = { 'S' }, hi[5];
		if (cutoff_s > st->tolerance_s) {
			hi[0] = 'S';
			put_be32(hi + 1, (uint32_t)((cutoff_s - st->tolerance_s) / PVP_BUCKET_S));
			rc = delete_range(st, lo, sizeof(lo), hi, sizeof(hi), &n);
			if (rc)
				return rc;
		}
	}
	if (removed)
		*removed = total;
	if (total)
		vp_log_info("pvp", "vcr_purged", "records=%zu", total);
	return 0;
}

static bool aux_key_ok(const void *key, size_t klen)
{
	return key && klen >= 2 && klen <= 512 && ((const char *)key)[0] == PVP_VCR_AUX_PREFIX;
}

int pvp_vcr_store_aux_get(pvp_vcr_store_t *st, const void *key, size_t klen, uint8_t *val, size_t cap,
                          size_t *vlen)
{
	char *err = NULL, *v;
	size_t n;
	int rc;
	if (!aux_key_ok(key, klen))
		return VP_EINVAL;
	v = rocksdb_get(st->db, st->ropts, key, klen, &n, &err);
	if ((rc = db_err(err, "vcr_store_aux_get")))
		return rc;
	if (!v)
		return VP_ENOTFOUND;
	if (n > cap) {
		rocksdb_free(v);
		return VP_ESPACE;
	}
	memcpy(val, v, n);
	*vlen = n;
	rocksdb_free(v);
	return 0;
}

int pvp_vcr_store_aux_put(pvp_vcr_store_t *st, const void *key, size_t klen, const uint8_t *val, size_t vlen)
{
	char *err = NULL;
	if (!aux_key_ok(key, klen))
		return VP_EINVAL;
	rocksdb_put(st->db, st->wopts, key, klen, (const char *)val, vlen, &err);
	return db_err(err, "vcr_store_aux_put");
}

int pvp_vcr_store_aux_del(pvp_vcr_store_t *st, const void *key, size_t klen)
{
	char *err = NULL;
	if (!aux_key_ok(key, klen))
		return VP_EINVAL;
	rocksdb_delete(st->db, st->wopts, key, klen, &err);
	return db_err(err, "vcr_store_aux_del");
}

int pvp_vcr_store_aux_scan(pvp_vcr_store_t *st, const void *prefix, size_t plen,
                           int (*cb)(void *arg, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen),
                           void *arg)
{
	rocksdb_iterator_t *it;
	char *err = NULL;
	if (!prefix || plen < 1 || plen > 512 || ((const char *)prefix)[0] != PVP_VCR_AUX_PREFIX || !cb)
		return VP_EINVAL;
	it = rocksdb_create_iterator(st->db, st->ropts);
	for (rocksdb_iter_seek(it, prefix, plen); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		size_t klen, vlen;
		const char *k = rocksdb_iter_key(it, &klen);
		const char *v;
		if (klen < plen || memcmp(k, prefix, plen) != 0)
			break;
		v = rocksdb_iter_value(it, &vlen);
		if (cb(arg, (const uint8_t *)k, klen, (const uint8_t *)v, vlen))
			break;
	}
	rocksdb_iter_get_error(it, &err);
	rocksdb_iter_destroy(it);
	return db_err(err, "vcr_store_aux_scan");
}
