/*
 * bench_storage - load N ViPR registrations into one store, then fetch random
 * ones; in the same run, RocksDB's db_bench fillrandom + readrandom with the
 * same key and value sizes as the baseline.
 *
 *   bench_storage [--n N] [--reads R] [--batch B] [--cache-mb M] [--dir D] [--sig rsa2048|p256]
 *                 [--db-bench PATH] [--db-bench-defaults] [--no-baseline] [--unique] [--no-prefetch]
 *
 * db_bench is configured like our store (same block cache, 10-bit full bloom
 * filters, 4 KiB blocks with a data-block hash index, --batch_size = our batch,
 * memtable size/count and whole-key memtable bloom, the same L0 triggers, base
 * level, readahead, bytes_per_sync, LZ4 from level 2 down, WAL on, no fsync), so
 * the ratio measures our engine's extra work; --db-bench-defaults restores the
 * old baseline (one Put per write, 8 MiB cache, no bloom filter).  Not matched:
 * our bottommost-level LZ4 (db_bench has no flag; its levels >= 2 are LZ4 anyway).
 *
 * --unique uses db_bench's filluniquerandom (every key written once, like our N
 * distinct numbers) instead of fillrandom (random keys with repetition: only
 * ~63 % distinct, so less data to compact) as the fill baseline.
 *
 * One line per figure: `name value unit (baseline value unit, ratio x)`.
 * Ratios are "ours over baseline" for rates and "baseline over ours" for
 * latencies, bytes and memory, so above 1.0 always means better than db_bench.
 */
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/errcode.h"
#include "common/id.h"
#include "common/log.h"
#include "common/rand.h"
#include "storage/record.h"
#include "storage/store.h"
#include "storage/vipr_kind.h"

/* A RELOAD Signature: SignatureAndHashAlgorithm (2), SignerIdentity (type 1,
 * length 2, hash alg 1, SHA-256 cert hash 32), signature<2+S>: S = 256 with an
 * RSA-2048 signer (296 bytes in all), S <= 72 with ECDSA P-256 (DER; 112). */
#define SIG_LEN_RSA2048 296
#define SIG_LEN_P256 112
#define SIG_LEN SIG_LEN_RSA2048 /* the largest: buffer size */
#define CLAIMANTS 64 /* carriers publishing numbers */
/* db_bench values compress to this fraction.  Ours: 296 random signature bytes of
 * 401 do not compress and the ~105 bytes of headers, ids and value shrink to ~45,
 * so ~0.85; db_bench's default (0.5) would flatter its disk figure. */
#define DB_BENCH_COMPRESSION "0.85"

typedef struct opts {
	uint64_t n, reads;
	unsigned batch;
	size_t cache_mb;
	const char *dir;
	const char *db_bench;
	int baseline;
	const char *fill; /* db_bench fill benchmark */
	int prefetch;     /* st_batch_prefetch() each batch before its stores */
	size_t sig_len;   /* SIG_LEN_RSA2048 or SIG_LEN_P256 */
	const char *sig_name;
	int db_defaults;  /* db_bench at its defaults (the old, unfair baseline) */
} opts_t;

typedef struct result {
	double load_rate, fetch_rate, p50_us, p99_us, bytes_per_entry, rss_mib;
	double cpu_s; /* user + system CPU of the load and fetch phases, all threads */
	double cpu_load_s, cpu_load_main_s; /* CPU of the load phase: all threads; the storing thread */
	double logical_bytes; /* key + entry + signature of one entry */
	uint64_t found;
} result_t;

static uint64_t xs(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static uint64_t splitmix(uint64_t x)
{
	return vp_splitmix64_next(&x);
}

/*
 * Resource-ID of the i-th number.  Real ids are SHA-1 of "+1NPANXXXXXX", which
 * the publishing peer computes, not the store; splitmix64 (a bijection, so all
 * distinct) gives equally uniform ids without timing a hash in the store's loop.
 */
static vp_id_t number_rid(uint64_t i)
{
	vp_id_t id;
	uint64_t a = splitmix(i), b = splitmix(i ^ 0x5bd1e995ull << 32);
	memcpy(id.b, &a, 8);
	memcpy(id.b + 8, &b, 8);
	return id;
}

static vp_id_t claimants[CLAIMANTS];

/* The parts of one StoreReq of the load (the request itself goes in a separate array). */
typedef struct bench_req {
	vp_id_t node;
	uint8_t key[ST_VIPR_KEY_LEN], val[ST_VIPR_VALUE_MAX_LEN], sig[SIG_LEN];
	st_entry_t e;
	st_kind_data_t kd;
} bench_req_t;

static vp_id_t claimant(uint64_t i)
{
	return claimants[i % CLAIMANTS];
}

static uint64_t dir_bytes_total;
static int du_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)p; (void)ftw;
	if (flag == FTW_F)
		dir_bytes_total += (uint64_t)sb->st_size;
	return 0;
}

static uint64_t dir_bytes(const char *dir)
{
	dir_bytes_total = 0;
	nftw(dir, du_cb, 16, FTW_PHYS);
	return dir_bytes_total;
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb; (void)flag; (void)ftw;
	return remove(p);
}

static void rm_rf(const char *dir)
{
	nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static double cpu_seconds(const struct rusage *ru)
{
	return (double)ru->ru_utime.tv_sec + ru->ru_utime.tv_usec / 1e6 +
	       (double)ru->ru_stime.tv_sec + ru->ru_stime.tv_usec / 1e6;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

typedef struct fetch_ctx {
	uint64_t entries;
} fetch_ctx_t;

static int on_entry(void *arg, const vp_id_t *rid, uint32_t kind, const st_entry_t *e)
{
	fetch_ctx_t *c = arg;
	(void)rid; (void)kind; (void)e;
	c->entries++;
	return 0;
}

static int run_ours(const opts_t *o, const char *dir, result_t *r, size_t *value_size)
{
	st_config_t cfg;
	st_db_t *db;
	st_shard_t *sh;
	uint8_t sig[SIG_LEN];
	bench_req_t *bb = NULL;
	st_store_req_t *reqs = NULL;
	size_t vlen = 0;
	uint64_t t0, t1, seed = 0x9E3779B97F4A7C15ull, now = vp_time_wall_ms();
	uint32_t *lat;
	fetch_ctx_t fc = { 0 };
	st_visitor_t vis = { NULL, on_entry, &fc };
	st_specifier_t spec = { .kind = ST_VIPR_KIND_ID_DEFAULT };
	struct rusage ru, ru0, ru_l0, ru_t0;
	int rc;

	getrusage(RUSAGE_SELF, &ru0);
	st_config_default(&cfg);
	cfg.path = dir;
	/* Keep the quota and policing code on the path, with limits this load cannot hit. */
	cfg.vipr_quota = o->n > UINT32_MAX / 4 ? UINT32_MAX / 4 : (uint32_t)o->n;
	cfg.rate[ST_RATE_STORE] = (st_rate_limit_t){ 1000000000u, 1000000000u };
	cfg.rate[ST_RATE_FETCH] = (st_rate_limit_t){ 1000000000u, 1000000000u };
	cfg.block_cache_bytes = o->cache_mb << 20;
	if ((rc = st_db_open(&cfg, &db)))
		return rc;
	sh = st_db_shard(db, 0);
	for (size_t i = 0; i < sizeof(sig); i++)
		sig[i] = (uint8_t)xs(&seed);
	for (unsigned i = 0; i < CLAIMANTS; i++) {
		uint8_t name[2] = { 0xC0, (uint8_t)i };
		claimants[i] = vp_id_from_name(name, sizeof(name));
	}

	/* One batch's requests are built first, so that st_batch_prefetch() can read all
	 * their records in one MultiGet before they are stored (as the server does with
	 * the StoreReqs of one event-loop iteration). */
	bb = calloc(o->batch, sizeof(*bb));
	reqs = calloc(o->batch, sizeof(*reqs));
	if (!bb || !reqs) {
		rc = VP_ENOMEM;
		goto out;
	}
	getrusage(RUSAGE_SELF, &ru_l0);
	getrusage(RUSAGE_THREAD, &ru_t0);
	t0 = vp_time_mono_ns();
	for (uint64_t base = 0; base < o->n; base += o->batch) {
		size_t nb = o->n - base < o->batch ? (size_t)(o->n - base) : o->batch;
		for (size_t j = 0; j < nb; j++) {
			uint64_t i = base + j;
			bench_req_t *q = &bb[j];
			st_vipr_key_t k;
			st_vipr_value_t v;
			q->node = claimant(i);
			k = (st_vipr_key_t){ q->node, 1 };
			v = (st_vipr_value_t){ q->node, 1,
			                       ST_VIPR_PVP_WITH_CALLER_ID | ST_VIPR_PVP_WITHOUT_CALLER_ID,
			                       NULL, 0 };
			st_vipr_key_encode(&k, q->key);
			st_vipr_value_encode(&v, q->val, sizeof(q->val), &vlen);
			/* Signatures are random bytes: they do not compress. */
			for (size_t m = 0; m + 8 <= o->sig_len; m += 8) {
				uint64_t x = xs(&seed);
				memcpy(q->sig + m, &x, 8);
			}
			q->e = (st_entry_t){ .key = q->key, .key_len = sizeof(q->key),
			                     .storage_time = now + i, .lifetime = 86400, .exists = true,
			                     .value = q->val, .value_len = (uint32_t)vlen, .sig = q->sig,
			                     .sig_len = (uint32_t)o->sig_len };
			q->kd = (st_kind_data_t){ .kind = ST_VIPR_KIND_ID_DEFAULT, .values = &q->e,
			                          .n_values = 1 };
			reqs[j] = (st_store_req_t){ .resource = number_rid(i), .kinds = &q->kd,
			                           .n_kinds = 1, .signers = &q->node, .n_signers = 1 };
		}
		if ((rc = st_batch_begin(sh)))
			goto out;
		if (o->prefetch && (rc = st_batch_prefetch(sh, reqs, nb)))
			goto out;
		for (size_t j = 0; j < nb; j++)
			if ((rc = st_store(sh, &reqs[j], NULL, NULL)))
				goto out;
		if ((rc = st_batch_commit(sh)))
			goto out;
	}
	t1 = vp_time_mono_ns();
	r->load_rate = (double)o->n / ((double)(t1 - t0) / 1e9);
	getrusage(RUSAGE_SELF, &ru);
	r->cpu_load_s = cpu_seconds(&ru) - cpu_seconds(&ru_l0);
	getrusage(RUSAGE_THREAD, &ru);
	r->cpu_load_main_s = cpu_seconds(&ru) - cpu_seconds(&ru_t0);
	/* What one (resource, kind) record costs: header, entry, key, value, signature. */
	*value_size = ST_REC_HDR_LEN + ST_REC_ENTRY_FIXED + ST_VIPR_KEY_LEN + vlen + o->sig_len;
	/* The logical bytes of one entry: its key (Resource-ID 16 + Kind-ID 4), the entry
	 * (dictionary key, value, storage_time 8, lifetime 4) and its signature. */
	r->logical_bytes = 16 + 4 + ST_VIPR_KEY_LEN + vlen + 8 + 4 + o->sig_len;

	lat = malloc(o->reads * sizeof(*lat));
	if (!lat) {
		rc = VP_ENOMEM;
		goto out;
	}
	seed = 12345;
	t0 = vp_time_mono_ns();
	for (uint64_t i = 0; i < o->reads; i++) {
		vp_id_t rid = number_rid(xs(&seed) % o->n), node = claimant(0);
		uint64_t a = vp_time_mono_ns(), b;
		if ((rc = st_fetch(sh, &rid, &spec, 1, &node, &vis, NULL)))
			break;
		b = vp_time_mono_ns();
		lat[i] = (uint32_t)(b - a > UINT32_MAX ? UINT32_MAX : b - a);
	}
	t1 = vp_time_mono_ns();
	if (!rc) {
		r->fetch_rate = (double)o->reads / ((double)(t1 - t0) / 1e9);
		qsort(lat, o->reads, sizeof(*lat), cmp_u32);
		r->p50_us = lat[o->reads / 2] / 1e3;
		r->p99_us = lat[o->reads * 99 / 100] / 1e3;
		r->found = fc.entries;
	}
	free(lat);
out:
	free(bb);
	free(reqs);
	st_db_close(db);
	getrusage(RUSAGE_SELF, &ru);
	r->cpu_s = cpu_seconds(&ru) - cpu_seconds(&ru0);
	if (!rc) {
		uint64_t t2 = vp_time_mono_ns();
		/* Reopen: the quota counters are rebuilt by a full scan. */
		if ((rc = st_db_open(&cfg, &db)) == 0) {
			printf("storage_reopen_rebuild %.2f s (no baseline)\n",
			       (double)(vp_time_mono_ns() - t2) / 1e9);
			st_db_close(db);
		}
		r->bytes_per_entry = (double)dir_bytes(dir) / (double)o->n;
		getrusage(RUSAGE_SELF, &ru);
		r->rss_mib = (double)ru.ru_maxrss / 1024.0;
	}
	return rc;
}

/* The line "readrandom   :       4.123 micros/op 242535 ops/sec; ..." -> ops/sec. */
static const char *bench_line(const char *out, const char *bench)
{
	size_t n = strlen(bench);
	for (const char *p = out; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		const char *q = p + n;
		if (strncmp(p, bench, n) != 0)
			continue;
		while (*q == ' ')
			q++;
		if (*q == ':')
			return p;
	}
	return NULL;
}

static double parse_ops(const char *out, const char *bench)
{
	const char *p = bench_line(out, bench), *q;
	if (!p || !(q = strstr(p, "micros/op")))
		return 0;
	return strtod(q + strlen("micros/op"), NULL);
}

/* The first "Percentiles: P50: x P75: y P99: z" after the benchmark's line. */
static void parse_pct(const char *out, const char *bench, double *p50, double *p99)
{
	const char *p = bench_line(out, bench), *q;
	*p50 = *p99 = 0;
	if (!p || !(q = strstr(p, "Percentiles:")))
		return;
	if ((p = strstr(q, "P50:")))
		*p50 = strtod(p + 4, NULL);
	if ((p = strstr(q, "P99:")))
		*p99 = strtod(p + 4, NULL);
}

static int run_db_bench(const opts_t *o, const char *dir, size_t value_size, result_t *r)
{
	char num[32], reads[32], vs[32], dbarg[700], outpath[700], benches[64], cache[48], batch[32];
	char *argv[48];
	int argc = 0;
	char *out = NULL;
	FILE *f;
	long len;
	pid_t pid;
	int st;
	struct rusage ru;
	snprintf(num, sizeof(num), "--num=%llu", (unsigned long long)o->n);
	snprintf(reads, sizeof(reads), "--reads=%llu", (unsigned long long)o->reads);
	snprintf(vs, sizeof(vs), "--value_size=%zu", value_size);
	snprintf(dbarg, sizeof(dbarg), "--db=%s", dir);
	snprintf(outpath, sizeof(outpath), "%s.out", dir);
	snprintf(benches, sizeof(benches), "--benchmarks=%s,readrandom", o->fill);
	snprintf(cache, sizeof(cache), "--cache_size=%zu", o->cache_mb << 20);
	snprintf(batch, sizeof(batch), "--batch_size=%u", o->batch);
	argv[argc++] = (char *)o->db_bench;
	argv[argc++] = benches;
	argv[argc++] = num;
	argv[argc++] = reads;
	argv[argc++] = "--key_size=20";
	argv[argc++] = vs;
	argv[argc++] = "--compression_ratio=" DB_BENCH_COMPRESSION;
	argv[argc++] = "--histogram=1";
	argv[argc++] = "--threads=1";
	argv[argc++] = dbarg;
	if (!o->db_defaults) {
		/* Configured like storage/store.c's st_db_open, so the ratio measures our
		 * engine's extra work (read-before-write, RFC 6940 rules, quota), not tuning. */
		static const char *const fair[] = {
			"--bloom_bits=10", "--block_size=4096", "--format_version=5",
			"--use_data_block_hash_index=true", "--data_block_hash_table_util_ratio=0.75",
			"--write_buffer_size=67108864", "--max_write_buffer_number=3",
			"--max_background_jobs=2", "--level_compaction_dynamic_level_bytes=true",
			"--level0_file_num_compaction_trigger=8", "--level0_slowdown_writes_trigger=24",
			"--level0_stop_writes_trigger=40", "--max_bytes_for_level_base=536870912",
			"--compaction_readahead_size=2097152", "--bytes_per_sync=1048576",
			"--compression_type=lz4", "--min_level_to_compress=2",
			"--memtable_bloom_size_ratio=0.05", "--memtable_whole_key_filtering=true",
			"--sync=false", "--disable_wal=false",
		};
		argv[argc++] = cache;
		argv[argc++] = batch;
		for (size_t i = 0; i < sizeof(fair) / sizeof(fair[0]); i++)
			argv[argc++] = (char *)fair[i];
	}
	argv[argc] = NULL;
	printf("# baseline:");
	for (int i = 0; i < argc; i++)
		printf(" %s", argv[i]);
	printf("\n");
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return VP_EIO;
	if (pid == 0) {
		int fd;
		if (!freopen(outpath, "w", stdout))
			_exit(127);
		fd = fileno(stdout);
		dup2(fd, 2);
		execvp(o->db_bench, argv);
		_exit(127);
	}
	if (wait4(pid, &st, 0, &ru) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "bench_storage: db_bench failed (see %s)\n", outpath);
		return VP_EIO;
	}
	f = fopen(outpath, "r");
	if (!f)
		return VP_EIO;
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	fseek(f, 0, SEEK_SET);
	out = calloc(1, (size_t)len + 1);
	if (!out || fread(out, 1, (size_t)len, f) != (size_t)len) {
		fclose(f);
		free(out);
		return VP_EIO;
	}
	fclose(f);
	{
		r->load_rate = parse_ops(out, o->fill);
		r->fetch_rate = parse_ops(out, "readrandom");
		parse_pct(out, "readrandom", &r->p50_us, &r->p99_us);
	}
	free(out);
	remove(outpath);
	r->bytes_per_entry = (double)dir_bytes(dir) / (double)o->n;
	r->rss_mib = (double)ru.ru_maxrss / 1024.0;
	r->cpu_s = cpu_seconds(&ru);
	return 0;
}

static void line(const char *name, double v, const char *unit, const char *bname, double b,
                 int higher_better, int have_b)
{
	if (!have_b || b <= 0 || v <= 0) {
		printf("%s %.2f %s (no baseline)\n", name, v, unit);
		return;
	}
	printf("%s %.2f %s (db_bench %s %.2f %s, ratio %.2fx)\n", name, v, unit, bname, b, unit,
	       higher_better ? v / b : b / v);
}

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: bench_storage [--n N] [--reads R] [--batch B] [--cache-mb M] [--dir D] [--sig rsa2048|p256]\n"
	        "                     [--db-bench PATH] [--db-bench-defaults] [--no-baseline] [--unique] [--no-prefetch]\n"
	        "  --n N               registrations to load (default 200000)\n"
	        "  --reads R           random fetches afterwards (default min(N, 1000000))\n"
	        "  --batch B           stores per st_batch_commit, and db_bench --batch_size (default 256)\n"
	        "  --cache-mb M        block cache, ours and db_bench's (default 256)\n"
	        "  --sig S             signature size: rsa2048 (296 B, default) or p256 (112 B)\n"
	        "  --db-bench-defaults db_bench at its defaults (one Put per write, 8 MiB cache, no bloom\n"
	        "                      filter): the old, unfair baseline; by default db_bench gets our settings\n"
	        "  --unique            db_bench filluniquerandom instead of fillrandom\n"
	        "  --no-prefetch       no st_batch_prefetch before each batch's stores\n"
	        "Prints one line per figure: name value unit (baseline value unit, ratio x); ratios above 1 are better for us.\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "n", required_argument, 0, 'n' },       { "reads", required_argument, 0, 'r' },
		{ "batch", required_argument, 0, 'b' },   { "cache-mb", required_argument, 0, 'c' },
		{ "dir", required_argument, 0, 'd' },     { "db-bench", required_argument, 0, 'x' },
		{ "no-baseline", no_argument, 0, 'N' },   { "unique", no_argument, 0, 'u' },
		{ "no-prefetch", no_argument, 0, 'P' },   { "sig", required_argument, 0, 's' },
		{ "db-bench-defaults", no_argument, 0, 'D' }, { "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	opts_t o = { 200000, 0, 256, 256, NULL, "db_bench", 1, "fillrandom", 1, SIG_LEN_RSA2048, "rsa2048", 0 };
	char tmpl[] = "/tmp/vp-bench-st-XXXXXX", ours[600], base[600];
	result_t a, b;
	size_t value_size = 0;
	int c, rc;
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'n': o.n = strtoull(optarg, NULL, 10); break;
		case 'r': o.reads = strtoull(optarg, NULL, 10); break;
		case 'b': o.batch = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'c': o.cache_mb = strtoull(optarg, NULL, 10); break;
		case 'd': o.dir = optarg; break;
		case 'x': o.db_bench = optarg; break;
		case 'N': o.baseline = 0; break;
		case 'u': o.fill = "filluniquerandom"; break;
		case 'P': o.prefetch = 0; break;
		case 's':
			if (!strcmp(optarg, "rsa2048")) {
				o.sig_len = SIG_LEN_RSA2048;
			} else if (!strcmp(optarg, "p256")) {
				o.sig_len = SIG_LEN_P256;
			} else {
				usage(stderr);
				return 2;
			}
			o.sig_name = optarg;
			break;
		case 'D': o.db_defaults = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!o.n || !o.batch) {
		usage(stderr);
		return 2;
	}
	if (!o.reads)
		o.reads = o.n < 1000000 ? o.n : 1000000;
	vp_log_setup(VP_LOG_WARN, NULL);
	if (!o.dir) {
		if (!mkdtemp(tmpl)) {
			perror("mkdtemp");
			return 1;
		}
		o.dir = tmpl;
	}
	snprintf(ours, sizeof(ours), "%s/viprd", o.dir);
	snprintf(base, sizeof(base), "%s/db_bench", o.dir);
	printf("# bench_storage n=%llu reads=%llu batch=%u prefetch=%d cache_mb=%zu sig=%s (%zu B) db_bench=%s dir=%s\n",
	       (unsigned long long)o.n, (unsigned long long)o.reads, o.batch, o.prefetch, o.cache_mb,
	       o.sig_name, o.sig_len, o.db_defaults ? "defaults" : "configured like ours", o.dir);
	fflush(stdout);
	rc = run_ours(&o, ours, &a, &value_size);
	if (rc) {
		fprintf(stderr, "bench_storage: %s\n", vp_strerror(rc));
		rm_rf(o.dir);
		return 1;
	}
	if (a.found != o.reads)
		fprintf(stderr, "bench_storage: %llu of %llu fetches found an entry\n",
		        (unsigned long long)a.found, (unsigned long long)o.reads);
	rm_rf(ours);
	if (o.baseline && run_db_bench(&o, base, value_size, &b)) {
		fprintf(stderr, "bench_storage: baseline failed; printing ours only\n");
		o.baseline = 0;
	}
	rm_rf(o.dir);
	line("storage_load_rate", a.load_rate, "stores/s", o.fill, b.load_rate, 1, o.baseline);
	line("storage_fetch_rate", a.fetch_rate, "fetches/s", "readrandom", b.fetch_rate, 1, o.baseline);
	line("storage_fetch_p50", a.p50_us, "us", "readrandom_p50", b.p50_us, 0, o.baseline);
	line("storage_fetch_p99", a.p99_us, "us", "readrandom_p99", b.p99_us, 0, o.baseline);
	line("storage_disk_per_entry", a.bytes_per_entry, "B", o.fill, b.bytes_per_entry, 0,
	     o.baseline);
	/* Space amplification: disk bytes per entry against the entry's logical bytes
	 * (db_bench's: its key + value against its disk bytes per key written). */
	printf("storage_space_amp_%s %.2f x (logical %.0f B/entry, disk %.1f B/entry; no baseline)\n", o.sig_name,
	       a.bytes_per_entry / a.logical_bytes, a.logical_bytes, a.bytes_per_entry);
	if (o.baseline && b.bytes_per_entry > 0)
		printf("storage_space_amp_vs_db_bench %.2f x (db_bench %s %.2f x of key+value %zu B, ratio %.2fx)\n",
		       a.bytes_per_entry / a.logical_bytes, o.fill, b.bytes_per_entry / (double)(20 + value_size),
		       20 + value_size, (b.bytes_per_entry / (double)(20 + value_size)) / (a.bytes_per_entry / a.logical_bytes));
	line("storage_peak_rss", a.rss_mib, "MiB", "fill+read", b.rss_mib, 0, o.baseline);
	/* CPU time is the steadier comparison on a shared machine: it does not count waiting. */
	line("storage_cpu_fill_read", a.cpu_s, "s", "fill+read", b.cpu_s, 0, o.baseline);
	/* The load phase alone (db_bench reports no per-phase CPU): all threads, and the
	 * storing thread (read-before-write, memtable inserts, WAL) without compaction. */
	line("storage_cpu_load", a.cpu_load_s, "s", "", 0, 0, 0);
	line("storage_cpu_load_thread", a.cpu_load_main_s, "s", "", 0, 0, 0);
	return 0;
}
