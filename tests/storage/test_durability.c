/* Crash safety: a child process stores batches and reports each acknowledged
 * (committed) batch through a pipe; the parent SIGKILLs it at a random moment,
 * reopens the database and checks that every acknowledged store is there and
 * that every batch present is complete (nothing half-written). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>

#include "common/errcode.h"
#include "common/log.h"
#include "helpers.h"

#define ROUNDS 5
#define CHILD_MAX_SECONDS 20  /* the child gives up on its own if never killed */
#define MAX_ACKS 200000

typedef struct ack {
	uint32_t batch;
	uint32_t size;
} ack_t;

static uint32_t batch_size(uint32_t batch)
{
	return 1 + batch % 7;
}

static unsigned long number_of(uint32_t batch, uint32_t j)
{
	return (unsigned long)batch * 8 + j;
}

static void open_cfg(st_config_t *cfg, const char *dir)
{
	st_config_default(cfg);
	cfg->path = dir;
	cfg->vipr_quota = 0;
	cfg->rate[ST_RATE_STORE].rate = 0;
	cfg->rate[ST_RATE_FETCH].rate = 0;
	cfg->block_cache_bytes = 8u << 20;
	cfg->write_buffer_bytes = 1u << 20; /* small memtables: kills also land during flushes */
}

static void child_writer(const char *dir, int fd, uint32_t first_batch)
{
	st_config_t cfg;
	st_db_t *db;
	st_shard_t *sh;
	vp_id_t a = node_id(0xA1);
	time_t t_end = time(NULL) + CHILD_MAX_SECONDS;
	open_cfg(&cfg, dir);
	if (st_db_open(&cfg, &db))
		_exit(2);
	sh = st_db_shard(db, 0);
	for (uint32_t b = first_batch; time(NULL) < t_end; b++) {
		ack_t ack = { b, batch_size(b) };
		if (st_batch_begin(sh))
			_exit(3);
		for (uint32_t j = 0; j < ack.size; j++) {
			vreg_t r;
			vp_id_t rid = number_rid(number_of(b, j));
			vreg_make(&r, &rid, &a, &a, b, vp_time_wall_ms(), 3600, (uint8_t)j);
			if (st_store(sh, &r.req, NULL, NULL))
				_exit(4);
		}
		if (st_batch_commit(sh))
			_exit(5);
		/* Acknowledge only after the commit returned: this is what a peer would be told. */
		if (write(fd, &ack, sizeof(ack)) != (ssize_t)sizeof(ack))
			_exit(6);
	}
	_exit(0);
}

typedef struct seen {
	uint32_t *batch;  /* vservice id = batch */
	size_t n, cap;
} seen_t;

static int seen_entry(void *arg, const vp_id_t *rid, uint32_t kind, const st_entry_t *e)
{
	seen_t *s = arg;
	st_vipr_value_t v;
	(void)rid; (void)kind;
	if (st_vipr_value_decode(e->value, e->value_len, &v))
		return -1;
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 1024;
		s->batch = realloc(s->batch, s->cap * sizeof(*s->batch));
		if (!s->batch)
			return -1;
	}
	s->batch[s->n++] = v.vservice_id;
	return 0;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static void acknowledged_stores_survive_sigkill(void **state)
{
	char *dir = make_tmpdir();
	ack_t *acks = calloc(MAX_ACKS, sizeof(*acks));
	size_t total_acked = 0;
	(void)state;
	assert_non_null(dir);
	assert_non_null(acks);
	for (int round = 0; round < ROUNDS; round++) {
		int fds[2];
		pid_t pid;
		size_t n_acks = 0, got = 0;
		uint32_t first = (uint32_t)round * 1000000u, wait_ms;
		uint64_t deadline = 0;
		char buf[sizeof(ack_t) * 256];
		size_t have = 0;
		st_config_t cfg;
		st_db_t *db;
		st_shard_t *sh;
		seen_t seen = { 0 };
		vp_id_t zero = { 0 };
		st_visitor_t v = { NULL, seen_entry, &seen };

		assert_int_equal(getrandom(&wait_ms, sizeof(wait_ms), 0), (ssize_t)sizeof(wait_ms));
		wait_ms = 20 + wait_ms % 400;
		assert_int_equal(pipe(fds), 0);
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			close(fds[0]);
			child_writer(dir, fds[1], first);
		}
		close(fds[1]);
		/* Read acks; once the first arrives, kill after a random delay. */
		for (;;) {
			struct pollfd p = { fds[0], POLLIN, 0 };
			uint64_t now = vp_time_mono_ns() / 1000000u;
			int timeout = deadline ? (int)(deadline > now ? deadline - now : 0) : 30000;
			ssize_t r;
			if (deadline && now >= deadline)
				break;
			if (poll(&p, 1, timeout) <= 0)
				break;
			r = read(fds[0], buf + have, sizeof(buf) - have);
			if (r <= 0)
				break;
			have += (size_t)r;
			while (have >= sizeof(ack_t)) {
				if (n_acks < MAX_ACKS)
					memcpy(&acks[n_acks++], buf, sizeof(ack_t));
				memmove(buf, buf + sizeof(ack_t), have - sizeof(ack_t));
				have -= sizeof(ack_t);
			}
			if (!deadline && n_acks)
				deadline = now + wait_ms;
		}
		kill(pid, SIGKILL);
		{
			int st;
			assert_int_equal(waitpid(pid, &st, 0), pid);
			assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
		}
		/* Drain what the child acknowledged before it died. */
		for (;;) {
			ssize_t r = read(fds[0], buf + have, sizeof(buf) - have);
			if (r <= 0)
				break;
			have += (size_t)r;
			while (have >= sizeof(ack_t)) {
				if (n_acks < MAX_ACKS)
					memcpy(&acks[n_acks++], buf, sizeof(ack_t));
				memmove(buf, buf + sizeof(ack_t), have - sizeof(ack_t));
				have -= sizeof(ack_t);
			}
		}
		close(fds[0]);
		assert_true(n_acks > 0);
		total_acked += n_acks;

		open_cfg(&cfg, dir);
		assert_int_equal(st_db_open(&cfg, &db), 0);
		sh = st_db_shard(db, 0);
		/* Every acknowledged store is present with its own value. */
		for (size_t i = 0; i < n_acks; i++) {
			for (uint32_t j = 0; j < acks[i].size; j++) {
				vp_id_t rid = number_rid(number_of(acks[i].batch, j));
				got_t g;
				st_visitor_t gv = got_visitor(&g);
				st_specifier_t s = { .kind = ST_VIPR_KIND_ID_DEFAULT };
				st_vipr_value_t val;
				assert_int_equal(st_fetch(sh, &rid, &s, 1, NULL, &gv, NULL), 0);
				assert_int_equal(g.n, 1);
				assert_int_equal(st_vipr_value_decode(g.e[0].val, g.e[0].val_len, &val), 0);
				assert_int_equal(val.vservice_id, acks[i].batch);
				assert_int_equal(val.pvp_methods, j);
				got++;
			}
		}
		/* Every batch present (acknowledged or not) is complete. */
		assert_int_equal(st_range_scan(sh, &zero, &zero, &v), 0);
		qsort(seen.batch, seen.n, sizeof(*seen.batch), cmp_u32);
		for (size_t i = 0; i < seen.n;) {
			size_t j = i;
			while (j < seen.n && seen.batch[j] == seen.batch[i])
				j++;
			assert_int_equal(j - i, batch_size(seen.batch[i]));
			i = j;
		}
		assert_true(seen.n >= got);
		assert_int_equal(st_shard_verify(sh), 0);
		free(seen.batch);
		st_db_close(db);
	}
	assert_true(total_acked >= ROUNDS);
	rm_rf(dir);
	free(dir);
	free(acks);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(acknowledged_stores_survive_sigkill),
	};
	vp_log_setup(VP_LOG_WARN, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
