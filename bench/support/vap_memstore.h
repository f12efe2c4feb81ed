/*
 * bench/support/vap_memstore.h - test and benchmark scaffolding: an in-memory
 * implementation of the VAP server hooks.
 *
 * Not product code: a carrier's numbers go to the real store (vipr_server over
 * the DHT, or control/vap/vap_ststore.h into storage/).  This keeps published
 * numbers, call records and VServices in memory so the VAP server's own
 * behaviour (pacing, back-pressure, held or failing completions) can be tested
 * and benchmarked without a database in the way.  Stores can
 * complete synchronously, or asynchronously on a later loop iteration (through
 * vap_server_post) as a DHT store would; tests can hold completions back.
 *
 * The hooks run on the server thread; the query functions take a lock and may
 * be called from any thread.
 */
#ifndef VP_BENCH_SUPPORT_VAP_MEMSTORE_H
#define VP_BENCH_SUPPORT_VAP_MEMSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "control/vap/vap_server.h"

typedef struct vap_memstore vap_memstore_t;

/*! \brief New empty store in *\p out (free with vap_memstore_free()); 0 or VP_ENOMEM (then *\p out is NULL). */
int vap_memstore_new(vap_memstore_t **out);
void vap_memstore_free(vap_memstore_t *ms);

/*! \brief Fill \p hooks with this store's callbacks. */
void vap_memstore_hooks(vap_memstore_t *ms, vap_hooks_t *hooks);

/*!
 * \brief Attach to the server whose stores this completes (before traffic).
 * \p async: complete on a later loop iteration (through vap_server_post), as a
 * DHT store would; otherwise synchronously inside the hook.
 */
void vap_memstore_attach(vap_memstore_t *ms, vap_server_t *srv, bool async);

/*! \brief Hold asynchronous completions until released (any thread). */
void vap_memstore_hold(vap_memstore_t *ms, bool hold);

/*! \brief Make every store of \p number fail with VP_EDB (NULL: none). */
void vap_memstore_fail_number(vap_memstore_t *ms, const char *number);

/*! \brief Apply one store directly, as the hook would (no server involved). */
int vap_memstore_insert(vap_memstore_t *ms, const char *number, uint32_t vservice_id, uint8_t op);

/*! \brief Forget every number, record and VService (not pending completions). */
void vap_memstore_clear(vap_memstore_t *ms);

/*! \brief Numbers currently stored (all agents and VServices). */
size_t vap_memstore_count(vap_memstore_t *ms);

/*! \brief Is \p number stored for \p vservice_id? */
bool vap_memstore_has(vap_memstore_t *ms, const char *number, uint32_t vservice_id);

/*! \brief Call records received; the last one into \p last if not NULL. */
size_t vap_memstore_vcrs(vap_memstore_t *ms, vap_vcr_t *last);

/*! \brief VService publications received. */
size_t vap_memstore_vservices(vap_memstore_t *ms);

/*! \brief Largest number of stores outstanding at once (started, not completed). */
unsigned vap_memstore_max_outstanding(vap_memstore_t *ms);

/*! \brief Stores started but not yet completed. */
unsigned vap_memstore_outstanding(vap_memstore_t *ms);

#endif
