/*
 * common/net.c - address parsing, TCP listen/connect, deadlines (see net.h).
 */
#include "common/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/errcode.h"

#define DEFAULT_CONNECT_MS 5000u

int vp_net_parse_port(const char *s, uint16_t *port)
{
	unsigned long v = 0;
	if (!s || !*s)
		return VP_EINVAL;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return VP_EINVAL;
		v = v * 10 + (unsigned long)(*p - '0');
		if (v > 65535)
			return VP_EINVAL;
	}
	*port = (uint16_t)v;
	return 0;
}

int vp_net_split_hostport(const char *s, bool need_port, char *host, size_t cap, uint16_t *port)
{
	const char *h, *colon;
	size_t hl;
	if (!s || !host || !cap || !port)
		return VP_EINVAL;
	*port = 0;
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		if (!rb)
			return VP_EINVAL;
		h = s + 1;
		hl = (size_t)(rb - h);
		if (rb[1] == ':')
			colon = rb + 1;
		else if (rb[1] == '\0')
			colon = NULL;
		else
			return VP_EINVAL;
		if (memchr(h, '[', hl))
			return VP_EINVAL;
	} else {
		h = s;
		colon = strchr(s, ':');
		if (colon && strchr(colon + 1, ':'))
			return VP_EINVAL; /* a bare IPv6 address: brackets say where the port starts */
		hl = colon ? (size_t)(colon - s) : strlen(s);
		if (memchr(h, ']', hl))
			return VP_EINVAL;
	}
	if (hl == 0)
		return VP_EINVAL;
	if (colon) {
		if (vp_net_parse_port(colon + 1, port))
			return VP_EINVAL;
	} else if (need_port) {
		return VP_EINVAL;
	}
	if (hl >= cap)
		return VP_ESPACE;
	memcpy(host, h, hl);
	host[hl] = '\0';
	return 0;
}

int vp_net_addr_numeric(const char *host, uint16_t port, vp_net_addr_t *out)
{
	struct sockaddr_in *v4 = (struct sockaddr_in *)&out->ss;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&out->ss;
	memset(out, 0, sizeof(*out));
	if (!host)
		return VP_EINVAL;
	if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons(port);
		out->len = sizeof(*v4);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons(port);
		out->len = sizeof(*v6);
		return 0;
	}
	memset(out, 0, sizeof(*out));
	return VP_EINVAL;
}

uint16_t vp_net_addr_port(const vp_net_addr_t *a)
{
	if (a->ss.ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
	if (a->ss.ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
	return 0;
}

int vp_net_addr_format(const vp_net_addr_t *a, char *out, size_t cap)
{
	char h[INET6_ADDRSTRLEN];
	int n;
	if (a->ss.ss_family == AF_INET) {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)&a->ss)->sin_addr, h, sizeof(h));
		n = snprintf(out, cap, "%s:%u", h, vp_net_addr_port(a));
	} else if (a->ss.ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&a->ss)->sin6_addr, h, sizeof(h));
		n = snprintf(out, cap, "[%s]:%u", h, vp_net_addr_port(a));
	} else {
		return VP_EINVAL;
	}
	return n < 0 || (size_t)n >= cap ? VP_ESPACE : 0;
}

int vp_net_listen_tcp(const char *bind_addr, uint16_t port, int backlog, unsigned flags, int *fd_out,
                      uint16_t *bound_port)
{
	vp_net_addr_t a;
	int fd, one = 1, type = SOCK_STREAM | SOCK_CLOEXEC;
	*fd_out = -1;
	if (vp_net_addr_numeric(bind_addr, port, &a))
		return VP_EINVAL;
	if (flags & VP_NET_NONBLOCK)
		type |= SOCK_NONBLOCK;
	fd = socket(a.ss.ss_family, type, 0);
	if (fd < 0)
		return VP_EIO;
	/* A restarted server must rebind at once, not wait for TIME_WAIT to drain. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    ((flags & VP_NET_REUSEPORT) && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one))) ||
	    bind(fd, (struct sockaddr *)&a.ss, a.len) || listen(fd, backlog > 0 ? backlog : 128) ||
	    getsockname(fd, (struct sockaddr *)&a.ss, &a.len)) {
		int e = errno;
		close(fd);
		errno = e;
		return VP_EIO;
	}
	if (bound_port)
		*bound_port = vp_net_addr_port(&a);
	*fd_out = fd;
	return 0;
}

/* One non-blocking connect to \p ai, waiting until \p dl; 0, VP_ETIMEOUT or VP_EIO. */
static int connect_one(const struct addrinfo *ai, const vp_deadline_t *dl, unsigned flags, int *fd_out)
{
	struct pollfd p;
	int fd, one = 1, soerr = 0, r;
	socklen_t sl = sizeof(soerr);
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return VP_EIO;
	if (flags & VP_NET_NODELAY)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
		if (errno != EINPROGRESS) {
			close(fd);
			return VP_EIO;
		}
		p.fd = fd;
		p.events = POLLOUT;
		do
			r = poll(&p, 1, vp_deadline_remaining_ms(dl));
		while (r < 0 && errno == EINTR && !vp_deadline_expired(dl));
		if (r != 1) {
			close(fd);
			return VP_ETIMEOUT;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) || soerr) {
			close(fd);
			return VP_EIO;
		}
	}
	if (!(flags & VP_NET_NONBLOCK) && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)) {
		close(fd);
		return VP_EIO;
	}
	*fd_out = fd;
	return 0;
}

int vp_net_connect_tcp(const char *host, uint16_t port, unsigned timeout_ms, unsigned flags, int *fd_out)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	vp_deadline_t dl = vp_deadline_in_ms(timeout_ms ? timeout_ms : DEFAULT_CONNECT_MS);
	char ps[8];
	int rc = VP_EIO;
	*fd_out = -1;
	if (!host || !*host)
		return VP_EINVAL;
	if (flags & VP_NET_NUMERIC)
		hints.ai_flags |= AI_NUMERICHOST;
	snprintf(ps, sizeof(ps), "%u", (unsigned)port);
	if (getaddrinfo(host, ps, &hints, &res) || !res)
		return VP_EINVAL;
	for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		if (vp_deadline_expired(&dl)) {
			rc = VP_ETIMEOUT;
			break;
		}
		if (!(rc = connect_one(ai, &dl, flags, fd_out)))
			break;
	}
	freeaddrinfo(res);
	return rc;
}

int vp_net_connect_hostport(const char *hostport, unsigned timeout_ms, unsigned flags, int *fd)
{
	char host[VP_NET_HOST_MAX];
	uint16_t port;
	int rc;
	*fd = -1;
	if ((rc = vp_net_split_hostport(hostport, true, host, sizeof(host), &port)))
		return rc;
	return vp_net_connect_tcp(host, port, timeout_ms, flags, fd);
}

int vp_net_set_timeouts(int fd, unsigned ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (suseconds_t)(ms % 1000) * 1000 };
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)))
		return VP_EIO;
	return 0;
}

/* ---- deadlines ------------------------------------------------------------------------------------------ */

#define NS_PER_MS 1000000ull
#define NS_PER_S 1000000000ull

vp_deadline_t vp_deadline_in_ms(uint64_t ms)
{
	uint64_t now = vp_time_mono_ns();
	vp_deadline_t d;
	d.at_ns = ms > (UINT64_MAX - now) / NS_PER_MS ? UINT64_MAX : now + ms * NS_PER_MS;
	return d;
}

int vp_deadline_remaining_ms(const vp_deadline_t *d)
{
	uint64_t now = vp_time_mono_ns(), ms;
	if (now >= d->at_ns)
		return 0;
	ms = (d->at_ns - now + NS_PER_MS - 1) / NS_PER_MS;
	return ms > INT32_MAX ? INT32_MAX : (int)ms;
}

bool vp_deadline_expired(const vp_deadline_t *d)
{
	return vp_time_mono_ns() >= d->at_ns;
}

struct timespec vp_timespec_add_ms(struct timespec ts, uint64_t ms)
{
	uint64_t ns = (uint64_t)ts.tv_nsec + (ms % 1000) * NS_PER_MS;
	ts.tv_sec += (time_t)(ms / 1000 + ns / NS_PER_S);
	ts.tv_nsec = (long)(ns % NS_PER_S);
	return ts;
}

int vp_timespec_cmp(const struct timespec *a, const struct timespec *b)
{
	if (a->tv_sec != b->tv_sec)
		return a->tv_sec < b->tv_sec ? -1 : 1;
	if (a->tv_nsec != b->tv_nsec)
		return a->tv_nsec < b->tv_nsec ? -1 : 1;
	return 0;
}

struct timespec vp_timespec_from_ms(uint64_t ms)
{
	struct timespec ts = { .tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)((ms % 1000) * NS_PER_MS) };
	return ts;
}

struct timespec vp_deadline_abstime(const vp_deadline_t *d, uint64_t slice_ms)
{
	struct timespec now;
	uint64_t mono = vp_time_mono_ns(), left_ns = d->at_ns > mono ? d->at_ns - mono : 0;
	uint64_t ms = (left_ns + NS_PER_MS - 1) / NS_PER_MS;
	if (slice_ms && ms > slice_ms)
		ms = slice_ms;
	clock_gettime(CLOCK_REALTIME, &now);
	return vp_timespec_add_ms(now, ms);
}

void vp_sleep_ms(uint64_t ms)
{
	struct timespec ts = vp_timespec_from_ms(ms);
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}
