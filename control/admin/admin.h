/*
 * control/admin/admin.h - the admin protocol shared by viprd and viprctl (docs/protocol.md §10).
 *
 * A local Unix stream socket; each message is a 4-byte big-endian length and that many bytes of one JSON
 * object (jansson writes and reads it).  A request is {"v":1,"cmd":NAME[,"args":{...}]}; the answer is
 * {"v":1,"ok":true,"data":{...}} or {"v":1,"ok":false,"error":{"code":N,"name":"VP_E...","message":"..."}}.
 *
 * The command catalogue (adm_commands[]) belongs to the protocol, not to the daemon: it says, per command,
 * whether it only reads the node or changes it, and which argument it takes, so the tool and the server
 * cannot disagree.  The daemon registers one handler per command it serves (adm_handlers_t); a listed
 * command without a handler is answered VP_EUNSUPPORTED.
 *
 * The server (as Knot's control socket and unbound's remote) runs one thread with a poll loop over the
 * listening socket and every connection, all non-blocking: a request must arrive whole within
 * request_timeout_ms of its first byte and be at most ADM_MAX_REQUEST bytes; each connection carries one
 * request at a time (the next is not read before the answer to the previous one is queued); several
 * connections are served at once, so a slow client stalls nobody but itself.  A handler may answer at once
 * or later from any thread (adm_req_reply), so commands that cross the overlay (fetch, probe) never hold
 * the loop.
 *
 * Access: the socket is created with mode 0600 (opts.mode) by binding under a temporary name, setting the
 * mode, then renaming, so it is never reachable with wider rights.  Mutating commands are further refused
 * (VP_EPERM) on a server opened read-only (a socket an operator may share with monitoring) and to any peer
 * whose uid (SO_PEERCRED) is neither root nor the daemon's effective uid.
 */
#ifndef VP_CONTROL_ADMIN_H
#define VP_CONTROL_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/conf.h"

#define ADM_PROTO_VERSION 1
/* A request names a command and at most one short argument (an E.164 number, a Node-ID): 64 KiB is two
 * orders of magnitude above any valid request and small enough that a connection slot's buffer is cheap. */
#define ADM_MAX_REQUEST (64u * 1024u)
/* An answer may list a whole routing table or every shard's counters; 16 MiB bounds what a client buffers. */
#define ADM_MAX_ANSWER (16u * 1024u * 1024u)
#define ADM_CMD_NAME_MAX 32 /* longest command name on the wire, NUL excluded */

/*! \brief What a command may touch. */
typedef enum adm_access {
	ADM_READ = 0,  /*!< reads the node's state only */
	ADM_WRITE = 1, /*!< changes the node or the overlay (stores, leaves) */
} adm_access_t;

/*! \brief The commands of protocol version 1 (indexes into adm_commands[] and adm_handlers_t). */
typedef enum adm_cmd_id {
	ADM_CMD_STATUS = 0,
	ADM_CMD_RING,
	ADM_CMD_STORE,
	ADM_CMD_FETCH,
	ADM_CMD_PROBE,
	ADM_CMD_LEAVE,
	ADM_CMD_STATS,
	ADM_CMD_ALARMS,
	ADM_CMD_VALIDATION,
	ADM_CMD__COUNT
} adm_cmd_id_t;

/*! \brief One row of the catalogue. */
typedef struct adm_cmd_info {
	const char *name;     /*!< wire and command-line name */
	adm_access_t access;
	const char *arg;      /*!< the one required argument's name in "args" (NULL: takes none) */
	const char *arg_help; /*!< its command-line placeholder ("NUMBER") */
	const char *summary;  /*!< one line for usage texts */
} adm_cmd_info_t;

/*! \brief The catalogue, indexed by adm_cmd_id_t. */
extern const adm_cmd_info_t adm_commands[ADM_CMD__COUNT];

/*! \brief The id of command \p name; VP_ENOTFOUND when the protocol has no such command. */
int adm_cmd_lookup(const char *name, adm_cmd_id_t *id);

/* ---- wire codec (used by both sides; exposed for tests and fuzzing) ------------------------------------- */

/*! \brief A parsed request: the command and its argument (NULL when the command takes none). */
typedef struct adm_request {
	adm_cmd_id_t cmd;
	char *arg; /*!< owned; free with adm_request_clear() */
} adm_request_t;

/*!
 * \brief Parse one request body (the bytes after the length prefix).
 * VP_EMALFORMED for anything that is not exactly one JSON object with the members above (duplicate or
 * unknown members, wrong types, a missing, empty, over-long or extra argument, a NUL in a string);
 * VP_EUNSUPPORTED for a version other than ADM_PROTO_VERSION; VP_ENOTFOUND for an unknown command (the
 * name, cut to ADM_CMD_NAME_MAX, is copied to \p unknown (capacity ADM_CMD_NAME_MAX + 1) when not NULL);
 * VP_ETOOBIG when \p len exceeds ADM_MAX_REQUEST; VP_ENOMEM.
 */
int adm_request_parse(const uint8_t *body, size_t len, adm_request_t *req, char *unknown);

/*! \brief Free what adm_request_parse() allocated in \p req. */
void adm_request_clear(adm_request_t *req);

/*!
 * \brief Encode a request for \p cmd with argument \p arg (required iff the catalogue says so) as one
 * frame (length prefix included) into *out (malloc'd, caller frees), *out_len bytes.
 * VP_EINVAL when the argument's presence disagrees with the catalogue or it is empty; VP_ETOOBIG; VP_ENOMEM.
 */
int adm_request_encode(adm_cmd_id_t cmd, const char *arg, uint8_t **out, size_t *out_len);

/*!
 * \brief Encode an answer frame: success with \p data (an object; NULL means {}) when \p code is 0, else an
 * error with \p code and \p message (NULL: vp_strerror(code)).  *out is malloc'd (caller frees).
 * VP_EINVAL when \p data is not an object, VP_ETOOBIG above ADM_MAX_ANSWER, VP_ENOMEM.
 */
int adm_answer_encode(int code, const json_t *data, const char *message, uint8_t **out, size_t *out_len);

/*! \brief A decoded answer. */
typedef struct adm_answer {
	int code;          /*!< 0 on success, else the daemon's negative VP_E* code */
	json_t *data;      /*!< success: the data object (owned; adm_answer_clear() frees) */
	char message[256]; /*!< error: the daemon's message */
} adm_answer_t;

/*!
 * \brief Parse one answer body.  VP_EMALFORMED when it is not a well-formed answer (an error whose code is
 * not negative counts as malformed: a daemon cannot refuse with "success"), VP_EUNSUPPORTED for another
 * version, VP_ETOOBIG above ADM_MAX_ANSWER.
 */
int adm_answer_parse(const uint8_t *body, size_t len, adm_answer_t *ans);

/*! \brief Free \p ans's data. */
void adm_answer_clear(adm_answer_t *ans);

/* ---- server -------------------------------------------------------------------------------------------- */

typedef struct adm_server adm_server_t;
typedef struct adm_req adm_req_t;

/*!
 * \brief A command handler, called on the server's thread.  It either returns a negative VP_E* code (the
 * server answers that error and \p req is gone), or returns 0 having called, or promising to call exactly
 * once from any thread, adm_req_reply() or adm_req_fail().  It must not block: work that waits on the
 * network keeps \p req and answers when done.
 */
typedef int (*adm_handler_fn)(adm_req_t *req, void *ctx);

/*! \brief The daemon's handlers, indexed by adm_cmd_id_t (NULL: the daemon does not serve that command). */
typedef struct adm_handlers {
	adm_handler_fn fn[ADM_CMD__COUNT];
} adm_handlers_t;

/*! \brief Server limits; zero fields take the defaults in brackets. */
typedef struct adm_server_opts {
	unsigned mode;               /*!< socket file mode [0600] */
	bool read_only;              /*!< refuse every ADM_WRITE command with VP_EPERM */
	unsigned max_conns;          /*!< connections served at once [16]; one more is answered VP_EBUSY */
	unsigned request_timeout_ms; /*!< from a request's first byte to its last, and for writing an answer [5000] */
	unsigned idle_timeout_ms;    /*!< a connection with nothing in flight is closed after this [60000] */
} adm_server_opts_t;

/*!
 * \brief Create the socket at \p path (with mode opts->mode, see above), then start the server thread.
 * \p handlers is copied; \p ctx is passed to every handler.  A stale socket at \p path (nobody accepts on
 * it) is replaced; VP_EEXIST when a server answers there or \p path is not a socket; VP_ERANGE when \p path
 * does not fit a sockaddr_un; VP_EIO (errno set) when the socket cannot be made; VP_ENOMEM.
 */
int adm_server_new(const char *path, const adm_handlers_t *handlers, void *ctx, const adm_server_opts_t *opts,
                   adm_server_t **out);

/*!
 * \brief Stop the thread, close every connection, unlink the socket and free.  Requests still held by
 * handlers stay valid: answering them later is harmless (the answer is dropped) and frees them, so call this
 * only after every thread that may answer has been told to stop answering into \p srv — or has answered.
 * NULL is a no-op.
 */
void adm_server_free(adm_server_t *srv);

/*! \brief The request's command. */
adm_cmd_id_t adm_req_cmd(const adm_req_t *req);

/*! \brief The request's argument (non-NULL, non-empty, NUL-free iff the command takes one). */
const char *adm_req_arg(const adm_req_t *req);

/*!
 * \brief Answer \p req with \p data (an object, reference stolen; NULL means {}) and free \p req.
 * Any thread.  When the answer cannot be encoded (not an object, too big) the client gets that error instead.
 */
void adm_req_reply(adm_req_t *req, json_t *data);

/*! \brief Answer \p req with error \p code (negative VP_E*) and \p message (NULL: vp_strerror) and free it. */
void adm_req_fail(adm_req_t *req, int code, const char *message);

/* ---- configuration ([admin] rows for the daemon's schema table) ---------------------------------------- */

#define ADM_SOCKET_PATH_MAX 108 /* sizeof(sockaddr_un.sun_path), NUL included */

/*! \brief The daemon's admin settings, filled by the rows of adm_conf_schema(). */
typedef struct adm_conf {
	char socket[ADM_SOCKET_PATH_MAX];         /*!< full-rights socket, mode 0600 */
	char monitor_socket[ADM_SOCKET_PATH_MAX]; /*!< optional read-only socket, mode 0660 ("" = none) */
	uint32_t max_conns;
	uint64_t request_timeout_ms;
	uint64_t idle_timeout_ms;
} adm_conf_t;

/*!
 * \brief The [admin] schema rows into out[0..cap) (*n gets the count), each row's offset moved by \p base: the
 * offset of the adm_conf_t inside the daemon's configuration struct, so the rows join its one table.
 * VP_ESPACE when \p cap is too small.
 */
int adm_conf_schema(size_t base, vp_conf_opt_t *out, size_t cap, size_t *n);

/*! \brief The server options for the full-rights socket (\p monitor false) or the monitoring one (true). */
void adm_conf_server_opts(const adm_conf_t *c, bool monitor, adm_server_opts_t *out);

/* ---- client -------------------------------------------------------------------------------------------- */

typedef struct adm_client adm_client_t;

/*!
 * \brief Connect to the server at \p path.  VP_ENOTFOUND when nothing is at \p path, VP_EPERM when the
 * socket's mode denies us, VP_ECLOSED when it is a socket nobody serves (a stale one), VP_ERANGE when the
 * path is too long, VP_EIO otherwise (errno set).
 */
int adm_client_connect(const char *path, adm_client_t **out);

/*!
 * \brief Send one request and wait at most \p timeout_ms for its answer into \p ans (clear it after).
 * Returns 0 when an answer arrived (ans->code says whether the daemon refused), VP_ETIMEOUT, VP_ECLOSED when
 * the server closed the connection, VP_EMALFORMED / VP_EUNSUPPORTED / VP_ETOOBIG for a bad answer, or an
 * encoding error from adm_request_encode().
 */
int adm_client_call(adm_client_t *cl, adm_cmd_id_t cmd, const char *arg, unsigned timeout_ms,
                    adm_answer_t *ans);

/*! \brief Close and free. NULL is a no-op. */
void adm_client_free(adm_client_t *cl);

#endif
