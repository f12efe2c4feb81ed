/*
 * control/server/vcr_ingest.h - terminating call records off the VAP thread.
 *
 * A terminating record is indexed under one or two PVP selectors, each a
 * PBKDF2 run (~1.5 ms of CPU): done on the VAP thread it would cap ingestion
 * at ~600 records/s and stall every other agent meanwhile.  The ingest pool
 * derives selectors on worker threads (one per core by default) and writes the
 * records in groups (one RocksDB write for every record derived while the
 * previous write ran: group commit), strictly in submission order, so record
 * ids follow upload order.  A record is reported done only after its write
 * returned (it is in the WAL): the caller acknowledges nothing earlier.
 *
 * Threading: vsrv_ingest_submit and vsrv_ingest_drain may be called from any
 * one thread (the VAP thread); the wake callback runs on a worker thread.
 */
#ifndef VP_CONTROL_SERVER_VCR_INGEST_H
#define VP_CONTROL_SERVER_VCR_INGEST_H

#include <stddef.h>

#include "pvp/vcr.h"

typedef struct vsrv_ingest vsrv_ingest_t;

/*! One finished record, in submission order. */
typedef struct vsrv_ingest_done {
	pvp_vcr_t rec;      /*!< with its id when status is 0 */
	void *cookie;       /*!< as given to vsrv_ingest_submit */
	int status;         /*!< 0: written; else why not (VP_EEXPIRED, VP_EDB, VP_ESTATE when stopped first) */
} vsrv_ingest_done_t;

/*!
 * \brief Called (on a worker thread) when finished records wait to be
 * drained and none did before; the caller then runs vsrv_ingest_drain on its
 * own thread.  Must not call back into the pool.
 */
typedef void (*vsrv_ingest_wake_fn)(void *arg);

/*!
 * \brief Start \p workers threads (0: one per online core) over \p st (kept by
 * the caller, open until vsrv_ingest_free).  VP_EINVAL, VP_ENOMEM.
 */
int vsrv_ingest_new(pvp_vcr_store_t *st, unsigned workers, vsrv_ingest_wake_fn wake, void *wake_arg,
                    vsrv_ingest_t **out);

/*! \brief Worker threads running. */
unsigned vsrv_ingest_workers(const vsrv_ingest_t *in);

/*! \brief Queue a copy of \p r (its selectors are derived on a worker). VP_ENOMEM, VP_ESTATE after stop. */
int vsrv_ingest_submit(vsrv_ingest_t *in, const pvp_vcr_t *r, void *cookie);

/*!
 * \brief Move up to \p max finished records into \p out, in submission order;
 * returns how many.  Records finish (and are drained) only in that order.
 */
size_t vsrv_ingest_drain(vsrv_ingest_t *in, vsrv_ingest_done_t *out, size_t max);

/*!
 * \brief Stop the workers: the records being derived or written finish; every
 * record not yet written is then finished with VP_ESTATE (not stored).
 * Drain afterwards to collect them.  Idempotent.
 */
void vsrv_ingest_stop(vsrv_ingest_t *in);

/*! \brief Stop (if needed) and free, dropping undrained records (NULL is fine). */
void vsrv_ingest_free(vsrv_ingest_t *in);

#endif
