/*
 * control/daemon/viprd_vipr.h - the ViPR service inside viprd (issue 16).
 *
 * Most nodes of an overlay only route and store.  A carrier's node also runs
 * the ViPR server (control/server/vipr_server.h: VAP listener, PVP listener,
 * call-record store under its vcr_dir, ticket keys, validation scheduler) when
 * its configuration has `[vipr] enabled = true`; the server's own options stay
 * in their file (`[vipr] server_config`, the vipr_server schema).
 *
 * The server reaches the overlay through control/node/dht_reload.h over the
 * node's request API (node_request): its numbers are signed by the node's
 * vnodes, one Node-ID per shard, each claiming at most `[vipr] quota` numbers
 * (overview draft §7.1: the number of Node-IDs a server implements determines
 * its quota), so a carrier sets `[node] shards` to ceil(numbers / quota) and
 * gets an alarm line when a publish would exceed it.  Validation AppAttaches
 * to the claimant's vnode for application VIPRD_APP_PVP, which every vnode of a
 * ViPR node answers with its PVP listener (node_app_set).
 */
#ifndef VP_CONTROL_DAEMON_VIPRD_VIPR_H
#define VP_CONTROL_DAEMON_VIPRD_VIPR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/conf.h"
#include "control/node/node.h"

/* AppAttach application of PVP (docs/protocol.md §2.9): a private-use value, as SIP's 5060 is RFC 6940's. */
#define VIPRD_APP_PVP 5061u

typedef struct viprd_vipr_conf {
	bool enabled;                 /*!< [vipr] enabled */
	char server_config[256];      /*!< [vipr] server_config: the ViPR server's file ([server], [vap], [pvp], [scheduler]) */
	uint32_t quota;               /*!< [vipr] quota: numbers per Node-ID */
	uint32_t store_rate;          /*!< [vipr] store_rate: Stores sent per second */
	uint32_t store_inflight;      /*!< [vipr] store_inflight: Stores sent and not yet answered */
	uint32_t lifetime_s;          /*!< [vipr] lifetime: of a stored registration */
	uint32_t alarm_pending;       /*!< [vipr] alarm_pending: records waiting for validation beyond this: alarm */
	uint32_t alarm_cert_s;        /*!< [vipr] alarm_cert: a certificate ending within this: alarm */
	uint32_t alarm_refused;       /*!< [vipr] alarm_refused: refused PVP handshakes per hour beyond this: alarm */
	uint32_t alarm_peer_incidents;/*!< [vipr] alarm_peer_incidents: lookup incidents naming one peer per hour */
} viprd_vipr_conf_t;

/*!
 * \brief The [vipr] rows into out[0..cap), their offsets shifted by \p base (where the viprd_vipr_conf_t sits
 * in the program's configuration struct); *n gets the count.  VP_ESPACE if cap is too small.
 */
int viprd_vipr_schema(vp_conf_opt_t *out, size_t cap, size_t base, size_t *n);

typedef struct viprd_vipr viprd_vipr_t;

/*!
 * \brief Compose the service over \p node (after node_new, before node_start): load each shard's key and
 * certificate, the server's file, start the overlay adapter, create the server (its sockets bound) with
 * Node-ID = shard 0's vnode, and register its PVP listener for AppAttach.  VP_ECONFIG (logged with the
 * reason), VP_EIO, VP_EDB, VP_ENOMEM.
 */
int viprd_vipr_new(const viprd_vipr_conf_t *vc, const node_conf_t *nc, node_t *node, viprd_vipr_t **out);

/*! \brief Start the server's threads (after node_start). */
int viprd_vipr_start(viprd_vipr_t *v);

/*
 * Troubleshooting (overview §2.4): the service keeps, for the VIPRD_TRACE_NUMBERS numbers it handled
 * last, their VIPRD_TRACE_EVENTS latest events (call records, lookups with their copies and incidents,
 * each claimant's handshakes and outcome, routes learned, registrations stored).  A number not seen for the
 * longest time gives its slot to a new one; a number's oldest event gives way to its newest.  Memory is
 * fixed at start: VIPRD_TRACE_NUMBERS x VIPRD_TRACE_EVENTS x ~240 bytes, about 2 MB.
 */
#define VIPRD_TRACE_NUMBERS 256u
#define VIPRD_TRACE_EVENTS 32u

/*!
 * \brief The trace of \p number (canonical E.164) as JSON: {"number", "known", "call_records", "lookups",
 * "claimants", "routes", "events": [...]} (docs/protocol.md §10.3).  NULL on allocation failure.  Any thread.
 */
json_t *viprd_vipr_validation_json(viprd_vipr_t *v, const char *number);

/*!
 * \brief The service's counters as JSON (the `vipr` object of `viprctl stats`, docs/protocol.md §10.3):
 * {"publish": the pacer's Stores and congestion state, "lookup": the overlay lookups, "server": records,
 * validations, routes}.  NULL on allocation failure.  Any thread.
 */
json_t *viprd_vipr_stats_json(viprd_vipr_t *v);

/* The service's alarms (README "Alarms"), in the order of viprd_vipr_alarm_name. */
enum {
	VIPRD_ALARM_OVER_QUOTA = 0,
	VIPRD_ALARM_PENDING,
	VIPRD_ALARM_CERT_EXPIRING,
	VIPRD_ALARM_REFUSED_CREDENTIALS,
	VIPRD_ALARM_TICKET_KEY_CHANGED,
	VIPRD_ALARM_PEER_INCIDENTS,
	VIPRD_ALARM_PUBLISH_BEHIND,
	VIPRD_ALARM__COUNT
};
extern const char *const viprd_vipr_alarm_name[VIPRD_ALARM__COUNT];

/*!
 * \brief Evaluate the service's alarms now: each active one is appended to \p list (when not NULL) as
 * {"alarm": NAME, "shard": -1, "detail": TEXT} and logged (event=alarm, once when it starts and once when it
 * clears); active[i] is set to 1 or 0 for each.  Any thread.
 */
void viprd_vipr_alarms(viprd_vipr_t *v, json_t *list, uint8_t active[VIPRD_ALARM__COUNT]);

/*!
 * \brief Stop sending Stores (the adapter's pacer; queued ones fail with VP_ECLOSED).  Call before
 * node_leave: node_leave then calls back every request still in flight (VP_ESTATE) while the server and
 * the adapter they complete into are alive.  NULL is fine.
 */
void viprd_vipr_quiesce(viprd_vipr_t *v);

/*! \brief Free the server and the adapter: after node_leave (no node_request callback may follow).  NULL is fine. */
void viprd_vipr_free(viprd_vipr_t *v);

#endif
