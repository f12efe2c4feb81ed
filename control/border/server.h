/*
 * control/border/server.h - the border element's network side: one epoll thread.
 *
 * Outside: SIP over TLS (1.2 or 1.3) with mutual authentication: a peer must
 * present a certificate chaining to the configured CA, and its domain (first
 * DNS subjectAltName, else the subject CN) is the calling domain tickets are
 * checked against; with a cert_issuer, a peer may instead present a ViPR client
 * certificate that issuer signed, which admits INVITEs to its number without
 * a ticket (docs/protocol.md §6.1, §7.1).  Plain SIP gets nothing: no UDP socket, no plain TCP socket
 * unless a diagnostic listener is configured, which answers every request with
 * 403 and closes.  Inside: one TCP connection to the call agent, reconnected
 * every second while down.  Egress: call agents connect to the agent
 * listener (TCP); an INVITE from them leaves over a new TLS connection to the
 * Request-URI's host, verified against the CA (and the name, for a name).
 *
 * Messages are framed by Content-Length (RFC 3261 §18.3; mandatory on streams)
 * and bounded by max_message; a connection that does not finish its TLS
 * handshake, or a message it started, within its deadline is closed (slow
 * senders), and one connection is served at most a few messages per loop turn
 * so a flooding peer cannot starve the others.  The ticket key file is
 * re-read when it changes (rotation needs no restart).  Counters go to a
 * control/metrics registry (writer thread 0).
 */
#ifndef VP_CONTROL_BORDER_SERVER_H
#define VP_CONTROL_BORDER_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "control/border/border.h"
#include "control/metrics/metrics.h"

#define VB_PATH_MAX 256
#define VB_ADDR_MAX 128

/*! \brief Everything the server needs; vipr-border fills it from its configuration schema. */
typedef struct vb_server_conf {
	char listen[VB_ADDR_MAX];        /*!< TLS listener "host:port" ("[::1]:5061" for IPv6); port 0 = ephemeral */
	char plain_listen[VB_ADDR_MAX];  /*!< diagnostic plain-TCP listener answering 403, "" = none */
	char call_agent[VB_ADDR_MAX];    /*!< the call agent, "host:port" (TCP) */
	char agent_listen[VB_ADDR_MAX];  /*!< TCP listener for call agents calling out (egress), "" = no egress */
	char cert[VB_PATH_MAX], key[VB_PATH_MAX], ca[VB_PATH_MAX]; /*!< PEM files */
	char ticket_keys[VB_PATH_MAX];   /*!< key file shared with the ViPR server (docs/protocol.md §7) */
	char cert_issuer[VB_PATH_MAX];   /*!< the ViPR server's issuing CA certificate (PEM, §6.1); "" = tickets only */
	uint32_t max_conns;              /*!< outside connections at once */
	uint32_t max_conns_per_peer;     /*!< connections of one calling domain at once (one carrier cannot take them all) */
	uint32_t max_message;            /*!< bytes of one SIP message, headers and body */
	uint32_t handshake_timeout_ms;   /*!< TLS handshake deadline */
	uint32_t message_timeout_ms;     /*!< a started message must be complete within this */
	uint32_t idle_timeout_ms;        /*!< an outside connection with no traffic is closed after this */
	uint32_t burst;                  /*!< messages served per connection per loop turn */
	vb_proxy_conf_t proxy;           /*!< outside_uri / inside_uri may be "" = derived from the addresses */
} vb_server_conf_t;

typedef struct vb_server vb_server_t;

/*!
 * \brief Load certificates and keys, bind the listeners, register the metrics
 * in \p reg (may be NULL), start connecting to the call agent.  VP_ECONFIG
 * (bad file or address, logged), VP_EIO (bind), VP_ENOMEM.
 */
int vb_server_new(const vb_server_conf_t *conf, vm_registry_t *reg, vb_server_t **out);

/*! \brief Run the loop on this thread until vb_server_stop(). 0, or VP_EIO if epoll fails. */
int vb_server_run(vb_server_t *srv);

/*! \brief Ask the loop to return; async-signal-safe, any thread. */
void vb_server_stop(vb_server_t *srv);

/*! \brief Re-read the ticket key file at the next loop turn (SIGHUP); async-signal-safe. */
void vb_server_reload(vb_server_t *srv);

/*! \brief The TLS listener's port (useful with port 0). */
uint16_t vb_server_port(const vb_server_t *srv);

/*! \brief Is the call agent connected?  Safe from any thread (the /health callback). */
bool vb_server_inside_up(const vb_server_t *srv);

void vb_server_free(vb_server_t *srv);

#endif
