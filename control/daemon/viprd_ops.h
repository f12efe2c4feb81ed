/*
 * control/daemon/viprd_ops.h - what an operator sees of a running viprd: the admin socket (control/admin,
 * docs/protocol.md §10), Prometheus /metrics and /health (control/metrics).
 *
 * Every figure comes from the shards through their command rings (node_status_async): each shard copies the
 * counters it owns on its own thread and the copies are added up here, so the message path takes no lock and
 * shares no cache line with a scrape.  The control thread samples the node once per tick (viprd_ops_tick) for
 * /health, which answers 503 when the node is isolated: a vnode not joined, a joined vnode with no predecessor
 * or no successor it holds a link to, no link at all for [metrics] isolated_after, or shards that stopped
 * answering.
 */
#ifndef VP_CONTROL_DAEMON_VIPRD_OPS_H
#define VP_CONTROL_DAEMON_VIPRD_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/conf.h"
#include "control/admin/admin.h"
#include "control/node/node.h"

/*! [admin] and [metrics]. */
typedef struct viprd_ops_conf {
	adm_conf_t admin;
	char metrics_listen[128];   /*!< address:port of /metrics and /health; "" = not served */
	uint64_t isolated_after_ms; /*!< no link for this long: unhealthy */
} viprd_ops_conf_t;

/*! \brief The [admin] and [metrics] rows, offsets moved by \p base (where viprd_ops_conf_t sits). VP_ESPACE. */
int viprd_ops_conf_schema(size_t base, vp_conf_opt_t *out, size_t cap, size_t *n);

typedef struct viprd_ops viprd_ops_t;

/*!
 * \brief Serve the admin socket ([admin] socket, or data_dir/admin.sock when empty) and, when configured,
 * /metrics and /health for the running \p node (configured with \p nc).  `store` signs its registration with
 * shard 0's key (read again from \p nc's paths); `store`, `fetch` and `probe` go through node_request().  VP_EEXIST (another daemon answers on the socket), VP_EIO,
 * VP_ECONFIG (a bad [metrics] listen), VP_ENOMEM; the reason is logged.
 */
int viprd_ops_start(const viprd_ops_conf_t *c, const node_conf_t *nc, node_t *node, viprd_ops_t **out);

typedef struct viprd_vipr viprd_vipr_t;

/*!
 * \brief Serve \p v's `validation NUMBER` trace and add its alarms to `alarms` and /metrics (viprd_alarm);
 * NULL detaches it (before viprd_vipr_free).  Without a service, `validation` answers ENOTSUP.
 */
void viprd_ops_set_vipr(viprd_ops_t *o, viprd_vipr_t *v);

/*! \brief From the control thread about once a second: sample the node for /health and alarms. */
void viprd_ops_tick(viprd_ops_t *o);

/*! \brief An operator asked, through the admin socket, for the node to leave the overlay. */
bool viprd_ops_leave_requested(const viprd_ops_t *o);

/*! \brief Stop serving (the admin socket is removed); call before node_leave(). */
void viprd_ops_stop(viprd_ops_t *o);

/*! \brief Free; call after node_leave() (no shard may still answer a status request). NULL is a no-op. */
void viprd_ops_free(viprd_ops_t *o);

#endif
