/*
 * control/server/vcr_ingest.c - selector derivation on worker threads, group
 * commit in submission order (vcr_ingest.h).
 *
 * Every submitted record is an item on one FIFO (`head`..`tail`) until it is
 * written.  Items are taken for derivation in FIFO order, so the ones not yet
 * taken are a suffix of the list (`todo`).  After deriving, a worker marks its
 * item prepared; if no write is running it becomes the writer: it detaches the
 * longest prefix of prepared items, writes them with one RocksDB write (outside
 * the lock), moves them to the done list and looks again.  Items prepared while
 * a write runs wait for the next one: that is the batching.
 */
#include "control/server/vcr_ingest.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/errcode.h"
#include "common/log.h"

#define LOGMOD "vcr_ingest"
#define MAX_WORKERS 64    /* more than any box we target; 0 = online cores */
#define WRITE_BATCH_MAX 512 /* records per RocksDB write: bounds the writer's stack-free array */

typedef enum { IT_QUEUED, IT_WORKING, IT_PREPARED } it_state_t;

typedef struct item {
	struct item *next;
	it_state_t state;
	void *cookie;
	pvp_vcr_prep_t prep;
} item_t;

struct vsrv_ingest {
	pvp_vcr_store_t *st;
	vsrv_ingest_wake_fn wake;
	void *wake_arg;
	pthread_t th[MAX_WORKERS];
	unsigned n_th;

	pthread_mutex_t mu;       /* everything below */
	pthread_cond_t cv;        /* work queued, or stop */
	item_t *head, *tail;      /* not yet written, submission order */
	item_t *todo;             /* first item not yet taken for derivation */
	bool writing;             /* one writer at a time keeps the order */
	bool stop;
	item_t *done, *done_tail; /* finished, submission order, not yet drained */
	pvp_vcr_prep_t *wbuf;     /* the writer's batch (only the writer touches it) */
};

/* Append the chain first..last to the done list (under mu); true if it was empty. */
static bool done_append(vsrv_ingest_t *in, item_t *first, item_t *last)
{
	bool was_empty = in->done == NULL;
	last->next = NULL;
	if (in->done_tail)
		in->done_tail->next = first;
	else
		in->done = first;
	in->done_tail = last;
	return was_empty;
}

/* Write the prepared prefix until there is none (called with mu held, returns with it held). */
static void write_prefix(vsrv_ingest_t *in)
{
	while (in->head && in->head->state == IT_PREPARED) {
		item_t *first = in->head, *last = first, *it;
		size_t n = 1;
		bool wake;
		while (last->next && last->next->state == IT_PREPARED && n < WRITE_BATCH_MAX) {
			last = last->next;
			n++;
		}
		in->head = last->next;
		if (!in->head)
			in->tail = NULL;
		in->writing = true;
		pthread_mutex_unlock(&in->mu);
		n = 0;
		for (it = first;; it = it->next) {
			in->wbuf[n++] = it->prep;
			if (it == last)
				break;
		}
		pvp_vcr_store_add_prepared(in->st, in->wbuf, n);
		n = 0;
		for (it = first;; it = it->next) {
			it->prep = in->wbuf[n++];
			if (it == last)
				break;
		}
		pthread_mutex_lock(&in->mu);
		in->writing = false;
		wake = done_append(in, first, last);
		if (wake && in->wake) {
			pthread_mutex_unlock(&in->mu);
			in->wake(in->wake_arg);
			pthread_mutex_lock(&in->mu);
		}
	}
}

static void *worker(void *arg)
{
	vsrv_ingest_t *in = arg;
	pthread_mutex_lock(&in->mu);
	for (;;) {
		item_t *it;
		while (!in->stop && !in->todo)
			pthread_cond_wait(&in->cv, &in->mu);
		if (in->stop)
			break;
		it = in->todo;
		in->todo = it->next;
		it->state = IT_WORKING;
		pthread_mutex_unlock(&in->mu);
		/* The PBKDF2 runs: no lock held. A refused record still finishes in order. */
		pvp_vcr_prepare(in->st, &it->prep.rec, &it->prep);
		pthread_mutex_lock(&in->mu);
		it->state = IT_PREPARED;
		if (!in->writing)
			write_prefix(in);
	}
	pthread_mutex_unlock(&in->mu);
	return NULL;
}

int vsrv_ingest_new(pvp_vcr_store_t *st, unsigned workers, vsrv_ingest_wake_fn wake, void *wake_arg,
                    vsrv_ingest_t **out)
{
	vsrv_ingest_t *in;
	int rc = 0;
	if (!out)
		return VP_EINVAL;
	*out = NULL;
	if (!st || workers > MAX_WORKERS)
		return VP_EINVAL;
	if (workers == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		workers = n < 1 ? 1 : n > MAX_WORKERS ? MAX_WORKERS : (unsigned)n;
	}
	if (!(in = calloc(1, sizeof(*in))))
		return VP_ENOMEM;
	if (!(in->wbuf = calloc(WRITE_BATCH_MAX, sizeof(*in->wbuf)))) {
		free(in);
		return VP_ENOMEM;
	}
	in->st = st;
	in->wake = wake;
	in->wake_arg = wake_arg;
	pthread_mutex_init(&in->mu, NULL);
	pthread_cond_init(&in->cv, NULL);
	for (; in->n_th < workers; in->n_th++) {
		if (pthread_create(&in->th[in->n_th], NULL, worker, in)) {
			rc = VP_ENOMEM;
			break;
		}
	}
	if (rc) {
		vsrv_ingest_free(in);
		return rc;
	}
	vp_log_info(LOGMOD, "started", "workers=%u", in->n_th);
	*out = in;
	return 0;
}

unsigned vsrv_ingest_workers(const vsrv_ingest_t *in)
{
	return in->n_th;
}

int vsrv_ingest_submit(vsrv_ingest_t *in, const pvp_vcr_t *r, void *cookie)
{
	item_t *it = malloc(sizeof(*it));
	if (!it)
		return VP_ENOMEM;
	memset(it, 0, sizeof(*it));
	it->state = IT_QUEUED;
	it->cookie = cookie;
	it->prep.rec = *r;
	pthread_mutex_lock(&in->mu);
	if (in->stop) {
		pthread_mutex_unlock(&in->mu);
		free(it);
		return VP_ESTATE;
	}
	if (in->tail)
		in->tail->next = it;
	else
		in->head = it;
	in->tail = it;
	if (!in->todo)
		in->todo = it;
	pthread_cond_signal(&in->cv);
	pthread_mutex_unlock(&in->mu);
	return 0;
}

size_t vsrv_ingest_drain(vsrv_ingest_t *in, vsrv_ingest_done_t *out, size_t max)
{
	size_t n = 0;
	item_t *it, *chain;
	pthread_mutex_lock(&in->mu);
	chain = in->done;
	while (in->done && n < max) {
		it = in->done;
		in->done = it->next;
		n++;
	}
	if (!in->done)
		in->done_tail = NULL;
	pthread_mutex_unlock(&in->mu);
	for (size_t i = 0; i < n; i++) {
		it = chain;
		chain = it->next;
		out[i].rec = it->prep.rec;
		out[i].cookie = it->cookie;
		out[i].status = it->prep.rc;
		free(it);
	}
	return n;
}

void vsrv_ingest_stop(vsrv_ingest_t *in)
{
	if (!in)
		return;
	pthread_mutex_lock(&in->mu);
	in->stop = true;
	pthread_cond_broadcast(&in->cv);
	pthread_mutex_unlock(&in->mu);
	for (unsigned i = 0; i < in->n_th; i++)
		pthread_join(in->th[i], NULL);
	in->n_th = 0;
	/* Workers are gone: nothing is being derived or written.  What is left was not stored. */
	pthread_mutex_lock(&in->mu);
	if (in->head) {
		for (item_t *it = in->head; it; it = it->next)
			it->prep.rc = VP_ESTATE;
		done_append(in, in->head, in->tail);
		in->head = in->tail = in->todo = NULL;
	}
	pthread_mutex_unlock(&in->mu);
}

void vsrv_ingest_free(vsrv_ingest_t *in)
{
	if (!in)
		return;
	vsrv_ingest_stop(in);
	for (item_t *it = in->done, *n; it; it = n) {
		n = it->next;
		free(it);
	}
	pthread_cond_destroy(&in->cv);
	pthread_mutex_destroy(&in->mu);
	free(in->wbuf);
	free(in);
}
