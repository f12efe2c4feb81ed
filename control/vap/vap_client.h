/*
 * control/vap_client.h - VAP client library for call agents (and vipr-agent).
 *
 * A blocking client over one TCP (or TLS) connection to a ViPR server: it
 * answers the server's authentication challenge (long-term credentials,
 * docs/protocol.md §8.4), signs every request, verifies every answer, and
 * queues Notify indications that arrive while it waits for an answer, so the
 * caller can read learned routes with vap_client_wait_notify().
 *
 * Publishes are pipelined: vap_client_publish() splits a list of numbers and
 * ranges into messages that fit the server's size limit and keeps up to
 * `window` of them outstanding; each is acknowledged only once the server has
 * stored every number in it.  For load generation, vap_client_send_upload()
 * and vap_client_recv_answer() expose the pipelining directly.
 *
 * A client is used by one thread at a time.
 */
#ifndef VP_CONTROL_VAP_CLIENT_H
#define VP_CONTROL_VAP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "control/vap/vap_msg.h"
#include "control/vap/vap_server.h"

typedef struct vap_client vap_client_t;

typedef struct vap_client_conf {
	const char *host;           /*!< numeric address or name */
	uint16_t port;
	const char *username;
	const char *password;
	SSL_CTX *tls;               /*!< non-NULL: TLS (caller keeps ownership; set verification on it) */
	const char *tls_name;       /*!< SNI and certificate name to check; NULL: host */
	int timeout_ms;             /*!< per answer; default (0) 10000 */
	size_t max_msg;             /*!< largest message to send; default (0) 16384, as the server */
	unsigned window;            /*!< Publish messages outstanding at once; default (0) 4 */
	bool fingerprint;           /*!< add FINGERPRINT to requests */
	unsigned busy_retries;      /*!< retries after 429/503, waiting RETRY-AFTER; default 0 */
} vap_client_conf_t;

/*! The last error answer the server gave. */
typedef struct vap_client_error {
	int code;                   /*!< 400..599, 0 if the last failure was not an error response */
	char reason[128];
	uint32_t retry_after_ms;
	size_t n_unknown;
	uint16_t unknown[16];       /*!< UNKNOWN-ATTRIBUTES of a 420 */
} vap_client_error_t;

/*!
 * \brief Connect, (TLS handshake,) and Register.  Errors: VP_EIO (connect),
 * VP_ETLS, VP_EAUTH (401 with valid credentials format: wrong password or
 * unknown agent), VP_ETIMEOUT, VP_EVAP_REJECTED (other error answer).
 */
int vap_client_connect(const vap_client_conf_t *conf, vap_client_t **out);

/*! \brief Close without Unregister (also frees). */
void vap_client_close(vap_client_t *c);

/*! \brief Unregister, wait for the answer, and close the connection (does not free). */
int vap_client_unregister(vap_client_t *c);

/*! \brief The last error answer (code 0 if none). */
const vap_client_error_t *vap_client_last_error(const vap_client_t *c);

/*!
 * \brief Publish (op VAP_OP_ADD / VAP_OP_WITHDRAW) \p n numbers (canonical
 * E.164) and \p nr ranges for VService \p vservice_id.  Returns 0 once every
 * message is acknowledged; *stored (may be NULL) counts the numbers the server
 * stored.  On an error answer, messages already acknowledged stay stored.
 */
int vap_client_publish(vap_client_t *c, uint32_t vservice_id, uint8_t op,
                       const char *const *numbers, size_t n,
                       const vap_range_t *ranges, size_t nr, uint64_t *stored);

/*! \brief Publish a VService (SIP URIs, black/white lists). */
int vap_client_publish_vservice(vap_client_t *c, const vap_vservice_t *vs);

/*! \brief Upload \p n call records in one request (they must fit one message). */
int vap_client_upload(vap_client_t *c, const vap_vcr_t *vcrs, size_t n);

/*! \brief Subscribe to validated routes of \p vservice_id (\p expires 0: unsubscribe). */
int vap_client_subscribe(vap_client_t *c, uint32_t vservice_id, uint32_t expires);

/*! \brief Keepalive round trip. */
int vap_client_keepalive(vap_client_t *c);

/*!
 * \brief Next learned route: a queued one, or wait up to \p timeout_ms for a
 * Notify.  VP_ETIMEOUT if none came; VP_ECLOSED if the server closed.
 */
int vap_client_wait_notify(vap_client_t *c, vap_route_t *route, int timeout_ms);

/*! \brief Notifies dropped because the client's queue was full. */
uint64_t vap_client_notifies_dropped(const vap_client_t *c);

/* ---- pipelining (load generation) -------------------------------------- */

/*! \brief Send an UploadVCR without waiting; \p tid gets its transaction id. */
int vap_client_send_upload(vap_client_t *c, const vap_vcr_t *vcrs, size_t n, uint8_t tid[VAP_TID_LEN]);

/*!
 * \brief Wait for the next answer to any request; \p tid gets its transaction id.
 * 0 for a success answer; for an error answer (see vap_client_last_error) VP_EAUTH (401),
 * VP_EVAP_UNKNOWN_ATTR (420), VP_ERATELIMIT (429), VP_EBUSY (503) or VP_EVAP_REJECTED (any
 * other); otherwise VP_ETIMEOUT, VP_ECLOSED, VP_EVAP_INTEGRITY (unsigned or badly signed answer).
 */
int vap_client_recv_answer(vap_client_t *c, uint8_t tid[VAP_TID_LEN], int timeout_ms);

/*! \brief The connection's socket (for poll() across many clients). */
int vap_client_fd(const vap_client_t *c);

/*! \brief Are decoded bytes waiting inside the client (so poll() would not report them)? */
bool vap_client_has_buffered(const vap_client_t *c);

#endif
