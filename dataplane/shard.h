/*
 * dataplane/shard.h - the shard loop: one thread, its I/O backend instance
 * (dataplane/io.h) and the work of the vnodes it owns.
 *
 * Each iteration: report a QSBR quiescent state (routing tables are read
 * lock-free, control/chord publishes them with liburcu), take the commands
 * other threads pushed on the shard's ring, receive one burst of link events
 * and hand each to ops->event, run ops->tick (timers), then ops->commit (the
 * storage writes of the iteration grouped in one batch) and only then send the
 * messages queued with dp_shard_send(): an answer never leaves before its write
 * is in the WAL.  While it waits for I/O the thread is RCU-offline, so a
 * synchronize_rcu() elsewhere never waits for an idle shard.
 *
 * The shard's state (its links, vnodes, storage shard, transaction table and
 * counters) is touched by its thread only.  Other threads reach it through the
 * command ring: a single-producer single-consumer lock-free ring per shard
 * (the control thread is the producer), burst push and pop returning counts.
 * A command is picked up within max_wait_ms (the loop never sleeps longer), and
 * an iteration that ran commands commits without waiting for I/O, so what a
 * command wrote (a Store a node serves itself) is answered at once.
 *
 * A receive burst's events and their message slots stay valid until the
 * iteration's commit has returned (the next receive reuses them), so an owner
 * may defer an answer to its commit and still point into the request.
 *
 * Nothing on the message path locks or allocates: the transmit queue is a
 * fixed arena (tx_bytes, tx_msgs); when it is full the iteration's commit runs
 * and the queue is flushed early, so a burst of answers costs one extra commit,
 * never a lost answer.
 */
#ifndef VP_DATAPLANE_SHARD_H
#define VP_DATAPLANE_SHARD_H

#include <stdbool.h>
#include <stdint.h>

#include "dataplane/io.h"

typedef struct dp_shard dp_shard_t;

/*! A command for a shard; what op and the fields mean is the owner's business. */
typedef struct dp_shard_cmd {
	uint32_t op;
	uint64_t arg;
	void *ptr;
} dp_shard_cmd_t;

/*! The shard's owner (the node).  Every callback runs on the shard thread. */
typedef struct dp_shard_ops {
	void *arg;
	/*! First thing on the thread (RCU-registered); a non-zero return stops the shard. */
	int (*start)(void *arg, dp_shard_t *s, uint64_t now_ms);
	/*! One event of a receive burst (valid during the call only). */
	void (*event)(void *arg, dp_shard_t *s, dp_io_ev_t *ev, uint64_t now_ms);
	/*! One command from the ring. */
	void (*command)(void *arg, dp_shard_t *s, const dp_shard_cmd_t *c, uint64_t now_ms);
	/*! Timers due; returns when it next has work (monotonic ms, UINT64_MAX if none). */
	uint64_t (*tick)(void *arg, dp_shard_t *s, uint64_t now_ms);
	/*! The iteration's storage writes, durable on return (may be NULL): 0, or the queued sends are dropped. */
	int (*commit)(void *arg, dp_shard_t *s);
	/*!
	 * Housekeeping after the iteration's sends went out (may be NULL): work no message waits for (the expiry
	 * sweep) runs here, so it never sits between a message's arrival and its forward or answer.
	 */
	void (*after)(void *arg, dp_shard_t *s, uint64_t now_ms);
	/*! Last thing on the thread, before the backend closes (may be NULL). */
	void (*stop)(void *arg, dp_shard_t *s);
} dp_shard_ops_t;

typedef struct dp_shard_conf {
	unsigned index;          /*!< shard number (logs) */
	int cpu;                 /*!< pin the thread to this CPU; -1 = not pinned */
	const dp_io_api_t *api;  /*!< the backend, e.g. &dp_io_kernel */
	dp_io_conf_t io;         /*!< opened on the shard thread; listen_fd belongs to the shard from dp_shard_new on */
	uint32_t tx_bytes;       /*!< transmit arena (>= io.max_message) */
	uint32_t tx_msgs;        /*!< transmit queue entries */
	uint32_t cmd_ring;       /*!< command ring entries (a power of two) */
	uint32_t max_wait_ms;    /*!< longest wait for I/O: the command pick-up latency */
} dp_shard_conf_t;

typedef struct dp_shard_counters {
	uint64_t iterations, events, commands, commits, commit_failures, tx_queued, tx_refused, tx_dropped;
} dp_shard_counters_t;

/*! \brief A shard (not running yet).  VP_EINVAL for a bad conf, VP_ENOMEM.  Free with dp_shard_free(). */
int dp_shard_new(const dp_shard_conf_t *conf, const dp_shard_ops_t *ops, dp_shard_t **out);

/*! \brief Start the thread.  VP_EIO if it cannot be created. */
int dp_shard_start(dp_shard_t *s);

/*!
 * \brief Push \p n commands (one producer thread per shard); returns how many fit.  The consumer sees them
 * in order, at once: the push writes the shard's eventfd, which ends its wait for I/O (within max_wait_ms
 * if the eventfd could not be created).
 */
unsigned dp_shard_cmd_push(dp_shard_t *s, const dp_shard_cmd_t *c, unsigned n);

/*! \brief On the shard thread: leave the loop after this iteration (ops->stop runs, the backend closes). */
void dp_shard_exit(dp_shard_t *s);

/*! \brief Wait for the thread; returns the start callback's error, or 0. */
int dp_shard_join(dp_shard_t *s);

/*! \brief Free a shard whose thread has been joined (or never started). */
void dp_shard_free(dp_shard_t *s);

/*!
 * \brief On the shard thread: queue \p msg for \p l; it is sent after this iteration's commit.  0, or
 * VP_ETOOBIG for a message larger than the arena.
 */
int dp_shard_send(dp_shard_t *s, dp_link_t *l, const uint8_t *msg, size_t len);

/*! \brief The backend and its instance (NULL before the thread opened it). */
const dp_io_api_t *dp_shard_api(const dp_shard_t *s);
dp_io_t *dp_shard_io(dp_shard_t *s);

unsigned dp_shard_index(const dp_shard_t *s);

/*! \brief Counters, written by the shard thread only (read them from it, or after join). */
const dp_shard_counters_t *dp_shard_counters(const dp_shard_t *s);

#endif
