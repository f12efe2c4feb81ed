/*
 * control/admin/admin_server.c - the admin socket's server: one thread, one poll loop, non-blocking
 * connections, each a small state machine (read a request, wait for its handler, write the answer).
 *
 * Answers travel through one completion list (mutex + wake pipe) whether the handler answered inline or
 * later from another thread, so there is one path to test.  A request names its connection by a 64-bit id
 * that is never reused: an answer for a connection that has gone is dropped, never written to a
 * descriptor that now belongs to someone else.  The server's memory lives until the last outstanding
 * request is answered (a reference count), so a late answer after adm_server_free() is harmless.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/errcode.h"
#include "common/log.h"
#include "control/admin/admin.h"

#define ADM_DEF_MAX_CONNS 16
#define ADM_DEF_REQUEST_TIMEOUT_MS 5000
#define ADM_DEF_IDLE_TIMEOUT_MS 60000
/* The loop wakes at least this often even with no deadline near, so a stop is never missed for long. */
#define ADM_POLL_CAP_MS 1000

typedef enum conn_state {
	CONN_READ,  /* reading a request (header, then body) */
	CONN_BUSY,  /* its handler holds the request */
	CONN_WRITE, /* writing the answer */
} conn_state_t;

typedef struct adm_conn {
	int fd;                  /* -1: free slot */
	uint64_t id;
	uid_t uid;               /* the peer's, from SO_PEERCRED */
	conn_state_t st;
	uint8_t hdr[4];
	size_t hdr_got;
	uint8_t *body;
	size_t body_len, body_got;
	uint8_t *out;
	size_t out_len, out_off;
	bool close_after_write;
	uint64_t deadline_ns;    /* request, write or idle deadline, by state */
} adm_conn_t;

typedef struct adm_done {
	struct adm_done *next;
	uint64_t conn_id;
	uint8_t *frame;
	size_t len;
} adm_done_t;

struct adm_server {
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int lfd;
	int wake[2];             /* [0] read by the loop, [1] written by answerers and stop */
	adm_handlers_t handlers;
	void *ctx;
	adm_server_opts_t opts;
	uid_t euid;
	adm_conn_t *conns;
	uint64_t next_id;
	pthread_t thread;
	bool thread_started;
	atomic_bool stop;

	pthread_mutex_t mu;      /* guards done, closed and refs */
	adm_done_t *done_head, **done_tail;
	bool closed;             /* adm_server_free() ran: answers are dropped */
	unsigned refs;           /* 1 for the owner + 1 per request held by a handler */
};

struct adm_req {
	adm_server_t *srv;
	uint64_t conn_id;
	adm_cmd_id_t cmd;
	char *arg;
};

static uint64_t now_ns(void)
{
	return vp_time_mono_ns();
}

static uint64_t ms_ns(unsigned ms)
{
	return (uint64_t)ms * 1000000u;
}

static void srv_destroy(adm_server_t *srv)
{
	for (adm_done_t *d = srv->done_head, *n; d; d = n) {
		n = d->next;
		free(d->frame);
		free(d);
	}
	if (srv->wake[0] >= 0)
		close(srv->wake[0]);
	if (srv->wake[1] >= 0)
		close(srv->wake[1]);
	pthread_mutex_destroy(&srv->mu);
	free(srv->conns);
	free(srv);
}

/* Drop one reference (the caller holds srv->mu); true when the server must now be destroyed. */
static bool srv_unref_locked(adm_server_t *srv)
{
	return --srv->refs == 0;
}

static void wake_loop(adm_server_t *srv)
{
	uint8_t b = 1;
	/* A full pipe already guarantees a wake-up: ignore EAGAIN. */
	if (write(srv->wake[1], &b, 1) < 0) {
		/* nothing to do */
	}
}

/* ---- answers ----------------------------------------------------------------------------------------- */

static void req_free(adm_req_t *req)
{
	free(req->arg);
	free(req);
}

/* Queue \p frame (owned) for \p req's connection, free \p req, drop its server reference. */
static void req_complete(adm_req_t *req, uint8_t *frame, size_t len)
{
	adm_server_t *srv = req->srv;
	adm_done_t *d = frame ? malloc(sizeof(*d)) : NULL;
	pthread_mutex_lock(&srv->mu);
	if (d && !srv->closed) {
		*d = (adm_done_t){ .conn_id = req->conn_id, .frame = frame, .len = len };
		*srv->done_tail = d;
		srv->done_tail = &d->next;
		wake_loop(srv);
	} else {
		free(d);
		free(frame);
	}
	bool last = srv_unref_locked(srv);
	pthread_mutex_unlock(&srv->mu);
	req_free(req);
	if (last)
		srv_destroy(srv);
}

/* An error frame; when even that cannot be built (out of memory) the connection is closed instead. */
static uint8_t *error_frame(int code, const char *msg, size_t *len)
{
	uint8_t *f = NULL;
	if (adm_answer_encode(code, NULL, msg, &f, len) < 0 &&
	    adm_answer_encode(code, NULL, NULL, &f, len) < 0)
		return NULL;
	return f;
}

void adm_req_reply(adm_req_t *req, json_t *data)
{
	uint8_t *f = NULL;
	size_t len = 0;
	int rc = adm_answer_encode(0, data, NULL, &f, &len);
	json_decref(data);
	if (rc < 0) {
		vp_log_warn("admin", "answer_unencodable", "cmd=%s err=%s", adm_commands[req->cmd].name, vp_errname(rc));
		f = error_frame(rc, "the daemon's answer could not be encoded", &len);
	}
	req_complete(req, f, len);
}

void adm_req_fail(adm_req_t *req, int code, const char *message)
{
	size_t len = 0;
	uint8_t *f = error_frame(code < 0 ? code : VP_EINVAL, message, &len);
	req_complete(req, f, len);
}

adm_cmd_id_t adm_req_cmd(const adm_req_t *req)
{
	return req->cmd;
}

const char *adm_req_arg(const adm_req_t *req)
{
	return req->arg;
}

/* ---- connections ------------------------------------------------------------------------------------- */

static void conn_close(adm_conn_t *c)
{
	if (c->fd >= 0)
		close(c->fd);
	free(c->body);
	free(c->out);
	*c = (adm_conn_t){ .fd = -1 };
}

static void conn_to_read(adm_server_t *srv, adm_conn_t *c)
{
	free(c->body);
	free(c->out);
	c->body = c->out = NULL;
	c->hdr_got = c->body_len = c->body_got = c->out_len = c->out_off = 0;
	c->st = CONN_READ;
	c->deadline_ns = now_ns() + ms_ns(srv->opts.idle_timeout_ms);
}

static void conn_to_write(adm_server_t *srv, adm_conn_t *c, uint8_t *frame, size_t len, bool close_after)
{
	free(c->body);
	c->body = NULL;
	c->out = frame;
	c->out_len = len;
	c->out_off = 0;
	c->close_after_write = close_after;
	c->st = CONN_WRITE;
	c->deadline_ns = now_ns() + ms_ns(srv->opts.request_timeout_ms);
}

/* Answer \p c with an error now (from the loop); no frame at all closes the connection. */
static void conn_error(adm_server_t *srv, adm_conn_t *c, int code, const char *msg, bool close_after)
{
	size_t len = 0;
	uint8_t *f = error_frame(code, msg, &len);
	if (!f) {
		conn_close(c);
		return;
	}
	conn_to_write(srv, c, f, len, close_after);
}

static void conn_dispatch(adm_server_t *srv, adm_conn_t *c)
{
	adm_request_t r;
	char unknown[ADM_CMD_NAME_MAX + 1] = "";
	char msg[128];
	int rc = adm_request_parse(c->body, c->body_len, &r, unknown);
	if (rc == VP_ENOTFOUND) {
		snprintf(msg, sizeof(msg), "unknown command '%s'", unknown);
		conn_error(srv, c, rc, msg, false);
		return;
	}
	if (rc < 0) {
		conn_error(srv, c, rc, rc == VP_EUNSUPPORTED ? "unsupported admin protocol version" : NULL, false);
		return;
	}
	const adm_cmd_info_t *info = &adm_commands[r.cmd];
	if (info->access == ADM_WRITE && (srv->opts.read_only || (c->uid != 0 && c->uid != srv->euid))) {
		vp_log_warn("admin", "refused", "cmd=%s uid=%u read_only=%d", info->name, (unsigned)c->uid,
		            (int)srv->opts.read_only);
		snprintf(msg, sizeof(msg), "'%s' changes the node: refused on this socket for uid %u", info->name,
		         (unsigned)c->uid);
		adm_request_clear(&r);
		conn_error(srv, c, VP_EPERM, msg, false);
		return;
	}
	adm_handler_fn fn = srv->handlers.fn[r.cmd];
	if (!fn) {
		snprintf(msg, sizeof(msg), "'%s' is not served by this daemon", info->name);
		adm_request_clear(&r);
		conn_error(srv, c, VP_EUNSUPPORTED, msg, false);
		return;
	}
	adm_req_t *req = malloc(sizeof(*req));
	if (!req) {
		adm_request_clear(&r);
		conn_error(srv, c, VP_ENOMEM, NULL, false);
		return;
	}
	*req = (adm_req_t){ .srv = srv, .conn_id = c->id, .cmd = r.cmd, .arg = r.arg };
	free(c->body);
	c->body = NULL;
	c->st = CONN_BUSY;
	c->deadline_ns = 0;
	pthread_mutex_lock(&srv->mu);
	srv->refs++;
	pthread_mutex_unlock(&srv->mu);
	vp_log_debug("admin", "request", "cmd=%s conn=%llu", info->name, (unsigned long long)c->id);
	rc = fn(req, srv->ctx);
	if (rc < 0)
		adm_req_fail(req, rc, NULL);
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Read what is there of the current request; exactly up to its end, so a pipelined next request stays in
 * the socket until this one is answered. */
static void conn_on_read(adm_server_t *srv, adm_conn_t *c)
{
	for (;;) {
		uint8_t *dst;
		size_t want;
		if (c->hdr_got < 4) {
			dst = c->hdr + c->hdr_got;
			want = 4 - c->hdr_got;
		} else {
			dst = c->body + c->body_got;
			want = c->body_len - c->body_got;
		}
		ssize_t n = read(c->fd, dst, want);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			conn_close(c);
			return;
		}
		if (c->hdr_got == 0 && c->body_got == 0)
			c->deadline_ns = now_ns() + ms_ns(srv->opts.request_timeout_ms);
		if (c->hdr_got < 4) {
			c->hdr_got += (size_t)n;
			if (c->hdr_got < 4)
				continue;
			uint32_t len = get_be32(c->hdr);
			if (len == 0) {
				conn_error(srv, c, VP_EMALFORMED, "empty request", true);
				return;
			}
			if (len > ADM_MAX_REQUEST) {
				/* The body is not read: answer and close, since the stream cannot be resynchronised. */
				conn_error(srv, c, VP_ETOOBIG, "request larger than 65536 bytes", true);
				return;
			}
			c->body = malloc(len);
			if (!c->body) {
				conn_error(srv, c, VP_ENOMEM, NULL, true);
				return;
			}
			c->body_len = len;
			c->body_got = 0;
			continue;
		}
		c->body_got += (size_t)n;
		if (c->body_got == c->body_len) {
			conn_dispatch(srv, c);
			return;
		}
	}
}

static void conn_on_write(adm_server_t *srv, adm_conn_t *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			conn_close(c);
			return;
		}
		c->out_off += (size_t)n;
	}
	if (c->close_after_write)
		conn_close(c);
	else
		conn_to_read(srv, c);
}

static void accept_all(adm_server_t *srv)
{
	for (unsigned round = 0; round <= srv->opts.max_conns; round++) {
		int fd = accept4(srv->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		struct ucred cred;
		socklen_t cl = sizeof(cred);
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0) {
			close(fd);
			continue;
		}
		adm_conn_t *slot = NULL;
		for (unsigned i = 0; i < srv->opts.max_conns && !slot; i++)
			if (srv->conns[i].fd < 0)
				slot = &srv->conns[i];
		if (!slot) {
			/* A fresh socket's buffer takes this small frame whole; a client that cannot read it loses
			 * nothing it was promised. */
			size_t len = 0;
			uint8_t *f = error_frame(VP_EBUSY, "too many admin connections", &len);
			if (f && send(fd, f, len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
				/* nothing more to do for it */
			}
			free(f);
			close(fd);
			vp_log_warn("admin", "conn_refused", "reason=max_conns max=%u", srv->opts.max_conns);
			continue;
		}
		*slot = (adm_conn_t){ .fd = fd, .id = srv->next_id++, .uid = cred.uid };
		conn_to_read(srv, slot);
	}
}

static void drain_done(adm_server_t *srv)
{
	uint8_t junk[64];
	while (read(srv->wake[0], junk, sizeof(junk)) > 0) {
	}
	pthread_mutex_lock(&srv->mu);
	adm_done_t *list = srv->done_head;
	srv->done_head = NULL;
	srv->done_tail = &srv->done_head;
	pthread_mutex_unlock(&srv->mu);
	for (adm_done_t *d = list, *n; d; d = n) {
		n = d->next;
		adm_conn_t *c = NULL;
		for (unsigned i = 0; i < srv->opts.max_conns && !c; i++)
			if (srv->conns[i].fd >= 0 && srv->conns[i].id == d->conn_id && srv->conns[i].st == CONN_BUSY)
				c = &srv->conns[i];
		if (c) {
			conn_to_write(srv, c, d->frame, d->len, false);
			conn_on_write(srv, c);
		} else {
			free(d->frame);
		}
		free(d);
	}
}

static void *server_main(void *arg)
{
	adm_server_t *srv = arg;
	unsigned max = srv->opts.max_conns;
	struct pollfd *pfd = calloc(max + 2, sizeof(*pfd));
	adm_conn_t **who = calloc(max + 2, sizeof(*who));
	if (!pfd || !who) {
		vp_log_error("admin", "thread_failed", "err=%s", vp_errname(VP_ENOMEM));
		goto finish;
	}
	while (!atomic_load(&srv->stop)) {
		uint64_t now = now_ns();
		int timeout = ADM_POLL_CAP_MS;
		nfds_t n = 0;
		pfd[n++] = (struct pollfd){ .fd = srv->wake[0], .events = POLLIN };
		pfd[n++] = (struct pollfd){ .fd = srv->lfd, .events = POLLIN };
		for (unsigned i = 0; i < max; i++) {
			adm_conn_t *c = &srv->conns[i];
			if (c->fd < 0)
				continue;
			if (c->deadline_ns && c->deadline_ns <= now) {
				vp_log_info("admin", "conn_timeout", "conn=%llu state=%d", (unsigned long long)c->id, (int)c->st);
				conn_close(c);
				continue;
			}
			if (c->deadline_ns) {
				uint64_t left_ms = (c->deadline_ns - now + 999999u) / 1000000u;
				if (left_ms < (uint64_t)timeout)
					timeout = (int)left_ms;
			}
			/* A busy connection is not read (one request at a time); POLLHUP still tells us it left. */
			short ev = c->st == CONN_READ ? POLLIN : c->st == CONN_WRITE ? POLLOUT : 0;
			who[n] = c;
			pfd[n++] = (struct pollfd){ .fd = c->fd, .events = ev };
		}
		int r = poll(pfd, n, timeout);
		if (r < 0 && errno != EINTR) {
			vp_log_error("admin", "poll_failed", "errno=%d", errno);
			break;
		}
		if (r <= 0)
			continue;
		for (nfds_t i = 2; i < n; i++) {
			adm_conn_t *c = who[i];
			short re = pfd[i].revents;
			if (!re || c->fd != pfd[i].fd)
				continue;
			if (c->st == CONN_BUSY) {
				if (re & (POLLHUP | POLLERR))
					conn_close(c); /* its answer, when it comes, is dropped */
			} else if (c->st == CONN_READ) {
				conn_on_read(srv, c);
			} else {
				conn_on_write(srv, c);
			}
		}
		if (pfd[0].revents)
			drain_done(srv);
		if (pfd[1].revents)
			accept_all(srv);
	}
finish:
	free(pfd);
	free(who);
	return NULL;
}

/* ---- socket creation --------------------------------------------------------------------------------- */

static int fill_sun(const char *path, struct sockaddr_un *sun)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	size_t len = strlen(path);
	if (len == 0 || len >= sizeof(sun->sun_path))
		return VP_ERANGE;
	memcpy(sun->sun_path, path, len + 1);
	return 0;
}

/* Is something alive at \p path?  0: nothing or a stale socket; VP_EEXIST otherwise. */
static int check_existing(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : VP_EIO;
	if (!S_ISSOCK(st.st_mode))
		return VP_EEXIST;
	struct sockaddr_un sun;
	fill_sun(path, &sun);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return VP_EIO;
	int rc = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0 ? VP_EEXIST
	         : errno == ECONNREFUSED                                 ? 0
	                                                                 : VP_EEXIST;
	close(fd);
	return rc;
}

static int make_listener(adm_server_t *srv)
{
	struct sockaddr_un sun;
	char tmp[sizeof(sun.sun_path)];
	uint64_t nonce = 0;
	if (getrandom(&nonce, sizeof(nonce), 0) != sizeof(nonce))
		return VP_EIO;
	int w = snprintf(tmp, sizeof(tmp), "%s.%016llx", srv->path, (unsigned long long)nonce);
	if (w < 0 || (size_t)w >= sizeof(tmp) || fill_sun(tmp, &sun) < 0)
		return VP_ERANGE;
	int rc = check_existing(srv->path);
	if (rc < 0)
		return rc;
	srv->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (srv->lfd < 0)
		return VP_EIO;
	/* Bind under a random name, restrict, then rename into place: the socket is never reachable at its
	 * public path with more rights than opts.mode. */
	if (bind(srv->lfd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
		return VP_EIO;
	if (chmod(tmp, srv->opts.mode) < 0 || listen(srv->lfd, (int)srv->opts.max_conns) < 0 ||
	    rename(tmp, srv->path) < 0) {
		int e = errno;
		unlink(tmp);
		errno = e;
		return VP_EIO;
	}
	return 0;
}

int adm_server_new(const char *path, const adm_handlers_t *handlers, void *ctx, const adm_server_opts_t *opts,
                   adm_server_t **out)
{
	int rc = VP_ENOMEM;
	*out = NULL;
	if (!path || !handlers)
		return VP_EINVAL;
	struct sockaddr_un probe;
	if (fill_sun(path, &probe) < 0)
		return VP_ERANGE;
	adm_server_t *srv = calloc(1, sizeof(*srv));
	if (!srv)
		return VP_ENOMEM;
	srv->lfd = srv->wake[0] = srv->wake[1] = -1;
	pthread_mutex_init(&srv->mu, NULL);
	srv->done_tail = &srv->done_head;
	srv->refs = 1;
	snprintf(srv->path, sizeof(srv->path), "%s", path);
	srv->handlers = *handlers;
	srv->ctx = ctx;
	if (opts)
		srv->opts = *opts;
	if (!srv->opts.mode)
		srv->opts.mode = 0600;
	if (!srv->opts.max_conns)
		srv->opts.max_conns = ADM_DEF_MAX_CONNS;
	if (!srv->opts.request_timeout_ms)
		srv->opts.request_timeout_ms = ADM_DEF_REQUEST_TIMEOUT_MS;
	if (!srv->opts.idle_timeout_ms)
		srv->opts.idle_timeout_ms = ADM_DEF_IDLE_TIMEOUT_MS;
	srv->euid = geteuid();
	srv->next_id = 1;
	srv->conns = calloc(srv->opts.max_conns, sizeof(*srv->conns));
	if (!srv->conns)
		goto finish;
	for (unsigned i = 0; i < srv->opts.max_conns; i++)
		srv->conns[i].fd = -1;
	rc = VP_EIO;
	if (pipe2(srv->wake, O_NONBLOCK | O_CLOEXEC) < 0)
		goto finish;
	if ((rc = make_listener(srv)) < 0)
		goto finish;
	rc = VP_EIO;
	if (pthread_create(&srv->thread, NULL, server_main, srv) != 0) {
		unlink(srv->path);
		goto finish;
	}
	srv->thread_started = true;
	vp_log_info("admin", "listening", "path=%s mode=%04o read_only=%d", srv->path, srv->opts.mode,
	            (int)srv->opts.read_only);
	*out = srv;
	return 0;
finish:
	if (srv->lfd >= 0)
		close(srv->lfd);
	srv_destroy(srv);
	return rc;
}

void adm_server_free(adm_server_t *srv)
{
	if (!srv)
		return;
	atomic_store(&srv->stop, true);
	wake_loop(srv);
	if (srv->thread_started)
		pthread_join(srv->thread, NULL);
	for (unsigned i = 0; i < srv->opts.max_conns; i++)
		if (srv->conns[i].fd >= 0)
			conn_close(&srv->conns[i]);
	close(srv->lfd);
	unlink(srv->path);
	pthread_mutex_lock(&srv->mu);
	srv->closed = true;
	bool last = srv_unref_locked(srv);
	pthread_mutex_unlock(&srv->mu);
	if (last)
		srv_destroy(srv);
}
