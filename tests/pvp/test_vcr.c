/* VCR store: selector index, ordering, retention with an injected clock, purge, reopen. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/errcode.h"
#include "common/log.h"
#include "pvp/method.h"
#include "pvp/ledger.h"
#include "pvp/vcr.h"

#define T0 1795256243000ull /* 10:17:23 */
#define HOUR 3600000ull

typedef struct fx {
	char dir[256];
	uint64_t now;
	vp_clock_t clock;
	pvp_vcr_store_t *st;
} fx_t;

static void rmdir_r(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[512];
	while (d && (e = readdir(d))) {
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
			unlink(p);
		}
	}
	if (d)
		closedir(d);
	rmdir(dir);
}

static void open_store(fx_t *f)
{
	pvp_vcr_store_conf_t c = { .path = f->dir, .clock = &f->clock };
	assert_int_equal(pvp_vcr_store_open(&c, &f->st), 0);
}

static int setup(void **state)
{
	fx_t *f = calloc(1, sizeof(*f));
	const char *t = getenv("TMPDIR");
	snprintf(f->dir, sizeof(f->dir), "%s/vcr-XXXXXX", t && *t ? t : "/tmp");
	if (!mkdtemp(f->dir))
		return -1;
	f->now = T0 + HOUR;
	f->clock.now_ms = vp_clock_manual_now;
	f->clock.ctx = &f->now;
	open_store(f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx_t *f = *state;
	pvp_vcr_store_close(f->st);
	rmdir_r(f->dir);
	free(f);
	return 0;
}

static pvp_vcr_t add(fx_t *f, pvp_dir_t dir, const char *called, const char *caller, uint64_t start, uint64_t dur_ms)
{
	pvp_vcr_t r;
	assert_int_equal(pvp_vcr_make(&r, dir, called, caller, start, start + dur_ms, NULL), 0);
	assert_int_equal(pvp_vcr_store_add(f->st, &r), 0);
	assert_true(r.id > 0);
	return r;
}

static size_t find(fx_t *f, const char *called, uint64_t start_ms, pvp_vcr_t *out, size_t max)
{
	uint8_t sel[16];
	uint32_t b = (uint32_t)(start_ms / 1000 / PVP_BUCKET_S);
	size_t n;
	assert_int_equal(pvp_selector(called, b, sel), 0);
	assert_int_equal(pvp_vcr_store_find(f->st, b, sel, out, max, &n), 0);
	return n;
}

static void terminating_record_found_by_selector(void **state)
{
	fx_t *f = *state;
	pvp_vcr_t out[4];
	pvp_vcr_t r = add(f, PVP_DIR_TERM, "+1 408 555 1234", "0033123456789", T0, 183000);
	(void)add(f, PVP_DIR_TERM, "+14085550000", NULL, T0, 60000);
	assert_int_equal(find(f, "+14085551234", T0, out, 4), 1);
	assert_string_equal(out[0].called, "+14085551234");
	assert_string_equal(out[0].caller, "+33123456789");
	assert_true(out[0].start_ms == T0 && out[0].stop_ms == T0 + 183000);
	assert_true(out[0].id == r.id);
	/* Another hour bucket: nothing. */
	assert_int_equal(find(f, "+14085551234", T0 + HOUR, out, 4), 0);
}

static void originating_records_not_in_selector_index(void **state)
{
	fx_t *f = *state;
	pvp_vcr_t out[4];
	(void)add(f, PVP_DIR_ORIG, "+14085551234", "+33123456789", T0, 60000);
	assert_int_equal(find(f, "+14085551234", T0, out, 4), 0);
}

static void candidates_most_recent_first(void **state)
{
	fx_t *f = *state;
	pvp_vcr_t out[4];
	(void)add(f, PVP_DIR_TERM, "+14085551234", NULL, T0, 60000);
	(void)add(f, PVP_DIR_TERM, "+14085551234", NULL, T0 + 600000, 60000);
	(void)add(f, PVP_DIR_TERM, "+14085551234", NULL, T0 - 600000, 60000);
	assert_int_equal(find(f, "+14085551234", T0, out, 4), 3);
	assert_true(out[0].start_ms == T0 + 600000);
	assert_true(out[1].start_ms == T0);
	assert_true(out[2].start_ms == T0 - 600000);
	/* max keeps the most recent ones. */
	assert_int_equal(find(f, "+14085551234", T0, out, 1), 1);
	assert_true(out[0].start_ms == T0 + 600000);
}

static void record_near_bucket_edge_indexed_in_both(void **state)
{
	fx_t *f = *state;
	pvp_vcr_t out[2];
	uint64_t edge = (T0 / HOUR + 1) * HOUR; /* 11:00:00 */
	(void)add(f, PVP_DIR_TERM, "+14085551234", NULL, edge + 40000, 60000);
	/* A client whose clock said 10:59:30 finds it under the 10:00 bucket. */
	assert_int_equal(find(f, "+14085551234", edge - 30000, out, 2), 1);
	assert_int_equal(find(f, "+14085551234", edge + 40000, out, 2), 1);
	/* 10 minutes past the edge: only one bucket. */
	(void)add(f, PVP_DIR_TERM, "+14085559999", NULL, edge + 600000, 60000);
	assert_int_equal(find(f, "+14085559999", edge - 30000, out, 2), 0);
}

static void retention_48h_then_purged(void **state)
{
	fx_t *f = *state;
	pvp_vcr_t out[2];
	size_t removed = 0;
	(void)add(f, PVP_DIR_TERM, "+14085551234", NULL, T0, 60000);
	(void)add(f, PVP_DIR_ORIG, "+14085551234", NULL, T0, 60000);
	f->now = T0 + 48 * HOUR - 1;
	assert_int_equal(find(f, "+14085551234", T0, out, 2), 1);
	assert_int_equal(pvp_vcr_store_purge(f->st, &removed), 0);
	assert_int_equal(removed, 0);
	f->now = T0 + 48 * HOUR;
	/* Past retention it is never returned, even before the purge runs. */
	assert_int_equal(find(f, "+14085551234", T0, out, 2), 0);
	assert_int_equal(pvp_vcr_store_purge(f->st, &removed), 0);
	assert_int_equal(removed, 2);
	assert_int_equal(pvp_vcr_store_purge(f->st, &removed), 0);
	assert_int_equal(removed, 0);
	/* A record already past retention is refused. */
	pvp_vcr_t old;
	assert_int_equal(pvp_vcr_make(&old, PVP_DIR_TERM, "+14085551234", NULL, T0, T0 + 1000, NULL), 0);
	assert_int_equal(pvp_vcr_store_add(f->st, &old), VP_EEXPIRED);
}

static int collect(void *arg, const pvp_vcr_t *r)
{
	size_t *n = arg;
	(void)r;
	(*n)++;
	return 0;
}

static void scan_delete_and_reopen_keep_ids(void **state)
{
	fx_t *f = *state;
	size_t n = 0;
	pvp_vcr_t out[2];
	pvp_vcr_t a = add(f, PVP_DIR_ORIG, "+14085551234", NULL, T0, 60000);
	pvp_vcr_t b = add(f, PVP_DIR_TERM, "+14085551234", NULL, T0, 60000);
	assert_int_equal(pvp_vcr_store_scan(f->st, PVP_DIR_ORIG, collect, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(pvp_vcr_store_del(f->st, &a), 0);
	assert_int_equal(pvp_vcr_store_del(f->st, &a), VP_ENOTFOUND);
	n = 0;
	assert_int_equal(pvp_vcr_store_scan(f->st, PVP_DIR_ORIG, collect, &n), 0);
	assert_int_equal(n, 0);
	pvp_vcr_store_close(f->st);
	open_store(f);
	assert_int_equal(find(f, "+14085551234", T0, out, 2), 1);
	pvp_vcr_t c = add(f, PVP_DIR_TERM, "+14085551234", NULL, T0 + 1000, 60000);
	assert_true(c.id > b.id);
	assert_int_equal(pvp_vcr_store_del(f->st, &b), 0);
	assert_int_equal(find(f, "+14085551234", T0, out, 2), 1);
	assert_true(out[0].id == c.id);
}

static void record_codec_rejects_bad_bytes(void **state)
{
	pvp_vcr_t r, d;
	uint8_t buf[PVP_VCR_ENC_MAX];
	size_t n;
	(void)state;
	assert_int_equal(pvp_vcr_make(&r, PVP_DIR_TERM, "+14085551234", "+33123456789", T0, T0 + 5, NULL), 0);
	assert_int_equal(pvp_vcr_make(&d, PVP_DIR_TERM, "+14085551234", NULL, T0, T0, NULL), VP_ERANGE);
	assert_int_equal(pvp_vcr_make(&d, PVP_DIR_TERM, "abc", NULL, T0, T0 + 1, NULL), VP_E164_CHAR);
	assert_int_equal(pvp_vcr_encode(&r, buf, sizeof(buf), &n), 0);
	assert_int_equal(pvp_vcr_decode(buf, n, &d), 0);
	assert_memory_equal(&r, &d, sizeof(r));
	for (size_t i = 0; i < n; i++)
		assert_int_not_equal(pvp_vcr_decode(buf, i, &d), 0);
	buf[1] = 5; /* direction */
	assert_int_equal(pvp_vcr_decode(buf, n, &d), VP_EMALFORMED);
}

/*
 * The guess ledger forgets an entry only once forgetting changes nothing: an
 * idle entry goes after its chain lapsed and its budget windows passed, a
 * recently failed one stays (deleting it would give the claimant a fresh
 * budget), and records of the store around it are untouched.  Before
 * pvp_ledger_purge, entries stayed for ever (one per number and claimant).
 */
static void ledger_purge_forgets_only_dead_entries(void **state)
{
	fx_t *f = *state;
	pvp_ledger_conf_t lc = { .store = f->st, .budget = 4, .budget_window_s = 86400, .accum_window_s = 30u * 86400 };
	pvp_ledger_t *l = NULL;
	pvp_ledger_entry_t e;
	uint64_t t0 = 1700000000;
	size_t removed = 99;
	uint8_t v[8];
	size_t vl = 0;
	const uint8_t other[] = { PVP_VCR_AUX_PREFIX, 'o', 1 };
	assert_int_equal(pvp_ledger_new(&lc, &l), 0);
	assert_int_equal(pvp_vcr_store_aux_put(f->st, other, sizeof(other), (const uint8_t *)"x", 1), 0);
	/* old: one failed handshake at t0; young: budget spent 29 days later. */
	assert_int_equal(pvp_ledger_take(l, "+14085550101", "old", t0), 0);
	assert_int_equal(pvp_ledger_settle(l, "+14085550101", "old", t0, PVP_LEDGER_FAILED), 0);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pvp_ledger_take(l, "+14085550102", "young", t0 + 29 * 86400), 0);
		assert_int_equal(pvp_ledger_settle(l, "+14085550102", "young", t0 + 29 * 86400, PVP_LEDGER_FAILED), 0);
	}
	/* Day 30: nothing lapsed yet. */
	assert_int_equal(pvp_ledger_purge(l, t0 + 30 * 86400, &removed), 0);
	assert_int_equal(removed, 0);
	/* Day 31: old is dead and goes; young still holds a spent budget and stays. */
	assert_int_equal(pvp_ledger_purge(l, t0 + 31 * 86400, &removed), 0);
	assert_int_equal(removed, 1);
	assert_int_equal(pvp_ledger_take(l, "+14085550102", "young", t0 + 30 * 86400 - 1), VP_ERATELIMIT);
	assert_int_equal(pvp_ledger_get(l, "+14085550102", "young", t0 + 29 * 86400 + 10, &e), 0);
	assert_int_equal(e.fails_cur, 4);
	assert_int_equal(pvp_vcr_store_aux_get(f->st, other, sizeof(other), v, sizeof(v), &vl), 0);
	/* ... and once its own chain lapsed, young goes too. */
	assert_int_equal(pvp_ledger_purge(l, t0 + 61 * 86400, &removed), 0);
	assert_int_equal(removed, 1);
	assert_int_equal(pvp_ledger_purge(l, t0 + 61 * 86400, &removed), 0);
	assert_int_equal(removed, 0);
	pvp_ledger_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(terminating_record_found_by_selector, setup, teardown),
		cmocka_unit_test_setup_teardown(originating_records_not_in_selector_index, setup, teardown),
		cmocka_unit_test_setup_teardown(candidates_most_recent_first, setup, teardown),
		cmocka_unit_test_setup_teardown(record_near_bucket_edge_indexed_in_both, setup, teardown),
		cmocka_unit_test_setup_teardown(retention_48h_then_purged, setup, teardown),
		cmocka_unit_test_setup_teardown(scan_delete_and_reopen_keep_ids, setup, teardown),
		cmocka_unit_test(record_codec_rejects_bad_bytes),
		cmocka_unit_test_setup_teardown(ledger_purge_forgets_only_dead_entries, setup, teardown),
	};
	vp_log_setup(VP_LOG_WARN, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
