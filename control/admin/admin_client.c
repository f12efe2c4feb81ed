/*
 * control/admin/admin_client.c - the admin protocol's client side (viprctl, tests, vipr-overlay):
 * one connection, one request at a time, every wait bounded by the caller's timeout.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/errcode.h"
#include "common/net.h"
#include "control/admin/admin.h"

struct adm_client {
	int fd;
};

int adm_client_connect(const char *path, adm_client_t **out)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	*out = NULL;
	size_t len = path ? strlen(path) : 0;
	if (len == 0 || len >= sizeof(sun.sun_path))
		return VP_ERANGE;
	memcpy(sun.sun_path, path, len + 1);
	adm_client_t *cl = malloc(sizeof(*cl));
	if (!cl)
		return VP_ENOMEM;
	cl->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (cl->fd < 0) {
		free(cl);
		return VP_EIO;
	}
	if (connect(cl->fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		int e = errno;
		close(cl->fd);
		free(cl);
		errno = e;
		switch (e) {
		case ENOENT:
		case ENOTDIR:
			return VP_ENOTFOUND;
		case EACCES:
		case EPERM:
			return VP_EPERM;
		case ECONNREFUSED:
			return VP_ECLOSED;
		case EAGAIN:
			return VP_EBUSY; /* the daemon's accept queue is full */
		default:
			return VP_EIO;
		}
	}
	*out = cl;
	return 0;
}

/* Move \p len bytes in direction \p wr before \p dl.  VP_ETIMEOUT, VP_ECLOSED. */
static int xfer(int fd, uint8_t *buf, size_t len, bool wr, const vp_deadline_t *dl)
{
	size_t off = 0;
	while (off < len) {
		ssize_t n = wr ? send(fd, buf + off, len - off, MSG_NOSIGNAL) : read(fd, buf + off, len - off);
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n == 0)
			return VP_ECLOSED;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return VP_ECLOSED;
		int left = vp_deadline_remaining_ms(dl);
		if (left == 0)
			return VP_ETIMEOUT;
		struct pollfd p = { .fd = fd, .events = wr ? POLLOUT : POLLIN };
		if (poll(&p, 1, left) < 0 && errno != EINTR)
			return VP_EIO;
	}
	return 0;
}

int adm_client_call(adm_client_t *cl, adm_cmd_id_t cmd, const char *arg, unsigned timeout_ms, adm_answer_t *ans)
{
	uint8_t *req = NULL, *body = NULL;
	size_t req_len = 0;
	memset(ans, 0, sizeof(*ans));
	int rc = adm_request_encode(cmd, arg, &req, &req_len);
	if (rc < 0)
		return rc;
	vp_deadline_t dl = vp_deadline_in_ms(timeout_ms);
	rc = xfer(cl->fd, req, req_len, true, &dl);
	/* A daemon that refuses (busy, oversize) may answer and close before reading us: read its answer. */
	if (rc < 0 && rc != VP_ECLOSED)
		goto finish;
	uint8_t hdr[4];
	if ((rc = xfer(cl->fd, hdr, 4, false, &dl)) < 0)
		goto finish;
	uint32_t len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
	rc = VP_ETOOBIG;
	if (len > ADM_MAX_ANSWER)
		goto finish;
	rc = VP_EMALFORMED;
	if (len == 0)
		goto finish;
	rc = VP_ENOMEM;
	if (!(body = malloc(len)))
		goto finish;
	if ((rc = xfer(cl->fd, body, len, false, &dl)) < 0)
		goto finish;
	rc = adm_answer_parse(body, len, ans);
finish:
	free(req);
	free(body);
	return rc;
}

void adm_client_free(adm_client_t *cl)
{
	if (!cl)
		return;
	close(cl->fd);
	free(cl);
}
