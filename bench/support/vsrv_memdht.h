/*
 * bench/support/vsrv_memdht.h - test and demo scaffolding: an in-process
 * "overlay" for vipr_server, one shared table of VIPR-REGISTRATION entries and
 * a directory of PVP endpoints.  Not product code: the overlay a carrier uses
 * is RELOAD (the daemon) or, for large synthetic runs, bench/support/sim_dht.h.
 *
 * Every server of the process gets a vsrv_dht_t onto the same table, so
 * several carriers can publish, look each other up and validate over PVP on
 * loopback without RELOAD.  Operations complete synchronously, inside the
 * call (the vsrv_dht_t contract allows it); app_attach opens a TCP connection
 * to the endpoint registered for the contact Node-ID.  Thread-safe.
 * The same dictionary semantics as the real kind: one entry per
 * (claimant Node-ID, VService id) under each number; a store replaces it.
 */
#ifndef VP_BENCH_SUPPORT_VSRV_MEMDHT_H
#define VP_BENCH_SUPPORT_VSRV_MEMDHT_H

#include <stddef.h>
#include <stdint.h>

#include "control/server/vipr_server.h"

typedef struct vsrv_memdht vsrv_memdht_t;

/*! \brief New empty table in *\p out (free with vsrv_memdht_free()); 0 or VP_ENOMEM (then *\p out is NULL). */
int vsrv_memdht_new(vsrv_memdht_t **out);
void vsrv_memdht_free(vsrv_memdht_t *m);

/*! \brief The vsrv_dht_t callbacks onto \p m. */
void vsrv_memdht_iface(vsrv_memdht_t *m, vsrv_dht_t *out);

/*! \brief Where AppAttach to \p node reaches its PVP server (numeric host, port). */
int vsrv_memdht_add_node(vsrv_memdht_t *m, const vp_id_t *node, const char *host, uint16_t port);

/*! \brief Registrations stored under \p number (0 if none). */
size_t vsrv_memdht_count(vsrv_memdht_t *m, const char *number);

/*! \brief Numbers with at least one registration. */
size_t vsrv_memdht_numbers(vsrv_memdht_t *m);

/*!
 * \brief AppAttach's stand-in for the in-process DHTs (this one and the simulator's): TCP to the numeric
 * \p host and \p port within \p timeout_ms, reads and writes bounded by the same time.
 */
int vsrv_memdht_connect(const char *host, uint16_t port, unsigned timeout_ms, int *fd);

#endif
