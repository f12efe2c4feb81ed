/*
 * tests/dataplane/test_shard.c - the shard loop (dataplane/shard.h) over a scripted backend:
 * answers leave only after the iteration's commit, a failed commit sends nothing, a full transmit arena
 * commits and flushes early, the command ring takes bursts up to its size, and an iteration that ran a
 * command commits without waiting for I/O.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <urcu-qsbr.h>

#include "common/errcode.h"
#include "dataplane/shard.h"

/* ---- a scripted backend: `pending` messages arrive in the first receive burst ---- */

static struct {
	int pending;        /* messages the next receive returns */
	uint32_t msg_len;
	int seq;            /* order of commit and send calls */
	int commit_seq[64], send_seq[64], after_seq[64];
	int ncommit, nsend_calls, nafter;
	int first_event_seq;  /* the first message handled (ev_answer) */
	unsigned sent;
	int commit_result;
	bool cmd_ran;       /* a work command ran: the next receive records its wait */
	int wait_after_cmd; /* that receive's timeout (-2: none seen yet) */
	int cmd_seq, recv_after_cmd_seq;
} fk;

struct dp_io {
	dp_io_ev_t ev[64];
	uint8_t slot[64][64];
	dp_io_counters_t c;
};

static int fk_open(const dp_io_conf_t *conf, dp_io_t **out)
{
	(void)conf;
	*out = calloc(1, sizeof(**out));
	return *out ? 0 : VP_ENOMEM;
}

static int fk_recv(dp_io_t *io, dp_io_ev_t **ev, int timeout_ms)
{
	int n = fk.pending < 64 ? fk.pending : 64;
	fk.pending -= n;
	if (fk.cmd_ran) {
		fk.cmd_ran = false;
		fk.wait_after_cmd = timeout_ms;
		fk.recv_after_cmd_seq = ++fk.seq;
	}
	for (int i = 0; i < n; i++)
		io->ev[i] = (dp_io_ev_t){ .type = DP_IO_MSG, .link = (dp_link_t *)io,
		                          .pkt = { .buf = io->slot[i], .cap = 64, .off = 0, .len = 8 } };
	if (!n)
		usleep((useconds_t)(timeout_ms > 5 ? 5 : timeout_ms) * 1000);
	*ev = io->ev;
	return n;
}

static unsigned fk_send(dp_io_t *io, const dp_io_out_t *out, unsigned n)
{
	(void)io;
	(void)out;
	if (fk.nsend_calls < 64)
		fk.send_seq[fk.nsend_calls++] = ++fk.seq;
	fk.sent += n;
	return n;
}

static void fk_close(dp_io_t *io)
{
	free(io);
}

static const dp_io_api_t fake = { .name = "fake", .open = fk_open, .recv = fk_recv, .send = fk_send,
                                  .close = fk_close };

/* ---- the owner: answer every message, commit, exit on command ---- */

static void ev_answer(void *arg, dp_shard_t *s, dp_io_ev_t *ev, uint64_t now)
{
	static uint8_t answer[4096];
	(void)arg;
	(void)now;
	if (!fk.first_event_seq)
		fk.first_event_seq = ++fk.seq;
	assert_int_equal(dp_shard_send(s, ev->link, answer, fk.msg_len), 0);
}

static int commit(void *arg, dp_shard_t *s)
{
	(void)arg;
	(void)s;
	if (fk.ncommit < 64)
		fk.commit_seq[fk.ncommit++] = ++fk.seq;
	return fk.commit_result;
}

static void command(void *arg, dp_shard_t *s, const dp_shard_cmd_t *c, uint64_t now)
{
	(void)arg;
	(void)now;
	if (c->op == 1)
		dp_shard_exit(s);
	if (c->op == 2) { /* work that waits for the commit and queues no send (a Store served locally) */
		fk.cmd_seq = ++fk.seq;
		fk.cmd_ran = true;
	}
}

static void after(void *arg, dp_shard_t *s, uint64_t now)
{
	(void)arg;
	(void)s;
	(void)now;
	if (fk.nafter < 64)
		fk.after_seq[fk.nafter++] = ++fk.seq;
}

static dp_shard_t *run_shard(uint32_t tx_bytes, uint32_t tx_msgs)
{
	dp_shard_t *s;
	dp_shard_conf_t c = { .index = 0, .cpu = -1, .api = &fake,
	                      .io = { .links = NULL, .listen_fd = -1, .burst = 64, .max_message = 1024 },
	                      .tx_bytes = tx_bytes, .tx_msgs = tx_msgs, .cmd_ring = 8, .max_wait_ms = 5 };
	dp_shard_ops_t ops = { .event = ev_answer, .commit = commit, .command = command, .after = after };
	dp_shard_cmd_t stop = { .op = 1 };
	assert_int_equal(dp_shard_new(&c, &ops, &s), 0);
	assert_int_equal(dp_shard_start(s), 0);
	/* Let the shard take its burst (bounded wait), then stop it. */
	for (int i = 0; i < 200 && (fk.pending || fk.ncommit == 0); i++)
		usleep(5000);
	usleep(20000);
	assert_int_equal(dp_shard_cmd_push(s, &stop, 1), 1);
	assert_int_equal(dp_shard_join(s), 0);
	return s;
}

static void reset(int pending, uint32_t len, int commit_result)
{
	memset(&fk, 0, sizeof(fk));
	fk.pending = pending;
	fk.msg_len = len;
	fk.commit_result = commit_result;
}

static void answers_leave_after_the_commit(void **state)
{
	dp_shard_t *s;
	(void)state;
	reset(10, 100, 0);
	s = run_shard(1u << 16, 64);
	assert_int_equal(fk.sent, 10);
	assert_true(fk.nsend_calls >= 1);
	assert_true(fk.ncommit >= 1);
	/* The first send came after the first commit, in one burst of 10. */
	assert_true(fk.send_seq[0] > fk.commit_seq[0]);
	assert_int_equal(dp_shard_counters(s)->tx_queued, 10);
	dp_shard_free(s);
}

/* Housekeeping (the node's expiry sweep) runs after the iteration's answers were sent, never between a
 * message's arrival and its answer: with it before the send, every hop of every message would wait for it. */
static void housekeeping_runs_after_the_sends(void **state)
{
	dp_shard_t *s;
	bool after_send = false;
	(void)state;
	reset(10, 100, 0);
	s = run_shard(1u << 16, 64);
	assert_int_equal(fk.sent, 10);
	assert_true(fk.nafter >= 1 && fk.first_event_seq > 0);
	for (int i = 0; i < fk.nafter && i < 64; i++) {
		/* nothing between the burst's first message and its answers' send */
		assert_false(fk.after_seq[i] > fk.first_event_seq && fk.after_seq[i] < fk.send_seq[0]);
		after_send |= fk.after_seq[i] > fk.send_seq[0];
	}
	assert_true(after_send);
	dp_shard_free(s);
}

static void failed_commit_sends_nothing(void **state)
{
	dp_shard_t *s;
	(void)state;
	reset(10, 100, VP_EDB);
	s = run_shard(1u << 16, 64);
	assert_int_equal(fk.sent, 0);
	assert_int_equal(fk.nsend_calls, 0);
	assert_true(dp_shard_counters(s)->commit_failures >= 1);
	assert_int_equal(dp_shard_counters(s)->tx_dropped, 10);
	dp_shard_free(s);
}

static void full_arena_commits_and_flushes_early(void **state)
{
	dp_shard_t *s;
	(void)state;
	/* 10 answers of 1000 bytes through a 4096-byte arena: flushed 4 at a time, each after a commit. */
	reset(10, 1000, 0);
	s = run_shard(4096, 64);
	assert_int_equal(fk.sent, 10);
	assert_true(fk.nsend_calls >= 3);
	for (int i = 0; i < fk.nsend_calls && i < fk.ncommit; i++)
		assert_true(fk.send_seq[i] > fk.commit_seq[i]);
	dp_shard_free(s);
}

/*
 * A command that wrote something but queued no send: the receive after it must not wait (the shard would
 * otherwise sleep up to max_wait_ms, here 10 s, before the commit answers it).  The fake receive sleeps at
 * most 5 ms, so the recorded timeout, not the clock, is what is checked.
 */
static void command_work_commits_without_waiting(void **state)
{
	dp_shard_t *s;
	dp_shard_conf_t conf = { .index = 0, .cpu = -1, .api = &fake,
	                         .io = { .links = NULL, .listen_fd = -1, .burst = 64, .max_message = 1024 },
	                         .tx_bytes = 4096, .tx_msgs = 8, .cmd_ring = 8, .max_wait_ms = 10000 };
	dp_shard_ops_t ops = { .event = ev_answer, .commit = commit, .command = command };
	dp_shard_cmd_t work = { .op = 2 }, stop = { .op = 1 };
	int commit_after = 0;
	(void)state;
	reset(0, 100, 0);
	fk.wait_after_cmd = -2;
	assert_int_equal(dp_shard_new(&conf, &ops, &s), 0);
	assert_int_equal(dp_shard_start(s), 0);
	usleep(20000); /* the shard is idle in its receive */
	assert_int_equal(dp_shard_cmd_push(s, &work, 1), 1);
	for (int i = 0; i < 200 && fk.wait_after_cmd == -2; i++)
		usleep(5000);
	usleep(20000);
	assert_int_equal(dp_shard_cmd_push(s, &stop, 1), 1);
	assert_int_equal(dp_shard_join(s), 0);
	assert_int_equal(fk.wait_after_cmd, 0);
	/* and the commit followed that receive */
	for (int i = 0; i < fk.ncommit && i < 64; i++)
		if (fk.commit_seq[i] > fk.recv_after_cmd_seq)
			commit_after = 1;
	assert_true(fk.recv_after_cmd_seq > fk.cmd_seq);
	assert_true(commit_after);
	dp_shard_free(s);
}

static void command_ring_takes_bursts_up_to_its_size(void **state)
{
	dp_shard_t *s;
	dp_shard_cmd_t c[12];
	dp_shard_conf_t conf = { .index = 0, .cpu = -1, .api = &fake,
	                         .io = { .links = NULL, .listen_fd = -1, .burst = 64, .max_message = 1024 },
	                         .tx_bytes = 4096, .tx_msgs = 8, .cmd_ring = 8, .max_wait_ms = 5 };
	dp_shard_ops_t ops = { .event = ev_answer };
	(void)state;
	memset(c, 0, sizeof(c));
	assert_int_equal(dp_shard_new(&conf, &ops, &s), 0);
	assert_int_equal(dp_shard_cmd_push(s, c, 12), 8); /* not started: nobody consumes */
	assert_int_equal(dp_shard_cmd_push(s, c, 1), 0);
	dp_shard_free(s);
	conf.cmd_ring = 6; /* not a power of two */
	assert_int_equal(dp_shard_new(&conf, &ops, &s), VP_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(answers_leave_after_the_commit),
		cmocka_unit_test(housekeeping_runs_after_the_sends),
		cmocka_unit_test(failed_commit_sends_nothing),
		cmocka_unit_test(full_arena_commits_and_flushes_early),
		cmocka_unit_test(command_ring_takes_bursts_up_to_its_size),
		cmocka_unit_test(command_work_commits_without_waiting),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
