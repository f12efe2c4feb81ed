/*
 * control/vap/vap_ststore.h - numbers published over VAP stored into the
 * node's own RocksDB kind store (storage/store.h): the VAP server's store hook
 * on a real st_ shard.
 *
 * Each published number becomes one VIPR-REGISTRATION dictionary entry
 * (storage/vipr_kind.h: key = our Node-ID || VService id, value = contact
 * Node-ID, VService id, PVP methods) under Resource-ID SHA-1(number)[0..15],
 * signed by the node itself; a withdrawal deletes it.  The server thread runs
 * the loop here: every store of one loop iteration goes into one
 * st_batch_begin()/st_batch_commit(), and the stores are completed
 * (vap_server_store_done, which may answer the Publish) only after the commit
 * returned, i.e. once the batch is in the WAL: a crash never loses an
 * acknowledged number.
 *
 * This is what a carrier runs when its VAP server stores locally
 * (vipr-vap-server --db DIR); bench_vap measures it against direct st_store.
 * Threads: vap_ststore_run() owns the shard while it runs.
 */
#ifndef VP_CONTROL_VAP_STSTORE_H
#define VP_CONTROL_VAP_STSTORE_H

#include <stdbool.h>
#include <stdint.h>

#include "common/id.h"
#include "control/vap/vap_server.h"
#include "storage/store.h"

#define VAP_STSTORE_LIFETIME_DEFAULT 86400u /* s: the recommended 24 h refresh period */

typedef struct vap_ststore vap_ststore_t;

/*! Who we are in the entries we store. */
typedef struct vap_ststore_conf {
	vp_id_t node;           /*!< our Node-ID: claimant (key), contact (value) and signer */
	uint8_t methods;        /*!< ST_VIPR_PVP_* bits: the PVP methods we serve */
	uint32_t lifetime_s;    /*!< entry lifetime; 0 = VAP_STSTORE_LIFETIME_DEFAULT */
} vap_ststore_conf_t;

/*! Counters (read after vap_ststore_run() returned, or on the server thread). */
typedef struct vap_ststore_stats {
	uint64_t batches;       /*!< st_batch_commit calls */
	uint64_t committed;     /*!< stores acknowledged after a successful commit */
	uint64_t commit_errors; /*!< failed commits (their stores were answered with the error) */
	uint64_t refused;       /*!< stores st_store refused at once (quota, rate, access control) */
} vap_ststore_stats_t;

/*!
 * \brief A store hook on shard \p sh for at most \p max_inflight stores per
 * batch (the VAP server's store_inflight).  The caller keeps \p sh (and its
 * database) open until vap_ststore_free().  VP_EINVAL, VP_ENOMEM.
 */
int vap_ststore_new(st_shard_t *sh, const vap_ststore_conf_t *conf, unsigned max_inflight, vap_ststore_t **out);

/*! \brief Free (after the server stopped). A batch still open is aborted: none of it was acknowledged. */
void vap_ststore_free(vap_ststore_t *s);

/*! \brief Set hooks->store and hooks->ctx (the caller sets upload_vcr and publish_vservice). */
void vap_ststore_hooks(vap_ststore_t *s, vap_hooks_t *hooks);

/*!
 * \brief The store hook itself, for callers whose hooks share another context: put the number into the
 * open batch (opening it); vap_ststore_run() completes it after the commit. st_store()'s errors at once.
 */
int vap_ststore_store(vap_ststore_t *s, const vap_store_req_t *req);

/*!
 * \brief Run \p srv (created with the hooks above) on this thread until vap_server_stop(): each loop
 * iteration's stores are committed as one batch, then completed. Returns 0, or vap_server_run_once()'s error.
 */
int vap_ststore_run(vap_ststore_t *s, vap_server_t *srv);

void vap_ststore_get_stats(const vap_ststore_t *s, vap_ststore_stats_t *out);

/*!
 * \brief Put (VAP_OP_ADD) or delete (VAP_OP_WITHDRAW) our registration of \p number for \p vservice_id
 * into \p sh's open batch (or straight to the store when none is open), with \p storage_time.
 * st_store()'s errors (VP_EQUOTA, VP_ERATELIMIT, VP_EDATA_TOO_OLD, ...).
 */
int vap_ststore_put(st_shard_t *sh, const vap_ststore_conf_t *conf, uint64_t storage_time, const char *number,
                    uint32_t vservice_id, uint8_t op);

#endif
