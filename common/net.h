/*
 * common/net.h - sockets and deadlines shared by every module: one way to parse
 * "host:port" / "[v6]:port", listen on TCP, connect over TCP with a bounded
 * wait, and compute monotonic deadlines (timed condition waits included).
 *
 * Addresses we listen on are numeric (an operator names an interface address,
 * never a DNS name that could change under a running server); addresses we
 * connect to may be names unless the caller asks for VP_NET_NUMERIC (a peer's
 * address learned from the overlay must not trigger a DNS lookup).
 * Every socket is created close-on-exec.  No function here keeps state.
 */
#ifndef VP_COMMON_NET_H
#define VP_COMMON_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#define VP_NET_HOST_MAX 256 /* host part of "host:port", NUL included (a DNS name is at most 253) */

/*! \brief A socket address that fits IPv4 and IPv6. */
typedef struct vp_net_addr {
	struct sockaddr_storage ss;
	socklen_t len;
} vp_net_addr_t;

/*!
 * \brief Split "host:port", "[v6]:port" or "[v6]" (port 0) / "host" when \p need_port is false.
 * The host goes, without brackets, into \p host (capacity \p cap); the port into *port.
 * VP_EINVAL for an empty host, an unbalanced bracket, a bare IPv6 address without brackets ("::1:80" is
 * ambiguous), a port that is not a decimal number in 0..65535, or a missing port when \p need_port;
 * VP_ESPACE when the host does not fit.  Nothing is resolved.
 */
int vp_net_split_hostport(const char *s, bool need_port, char *host, size_t cap, uint16_t *port);

/*! \brief A decimal port 0..65535 (digits only, nothing else); VP_EINVAL otherwise. */
int vp_net_parse_port(const char *s, uint16_t *port);

/*! \brief A numeric IPv4 or IPv6 address and a port into \p out; VP_EINVAL when \p host is not numeric. */
int vp_net_addr_numeric(const char *host, uint16_t port, vp_net_addr_t *out);

/*! \brief The port of \p a (host order). */
uint16_t vp_net_addr_port(const vp_net_addr_t *a);

/*! \brief Print \p a as "1.2.3.4:80" or "[::1]:80" into \p out (capacity \p cap; VP_ESPACE if short). */
int vp_net_addr_format(const vp_net_addr_t *a, char *out, size_t cap);

/*! \brief Options of vp_net_listen_tcp() and vp_net_connect_tcp(). */
enum {
	VP_NET_NONBLOCK = 1u << 0,  /* the returned socket stays non-blocking (event loops) */
	VP_NET_NUMERIC = 1u << 1,   /* connect: refuse names, numeric addresses only (no DNS) */
	VP_NET_NODELAY = 1u << 2,   /* TCP_NODELAY (request/answer protocols) */
	VP_NET_REUSEPORT = 1u << 3, /* listen: SO_REUSEPORT (one socket per shard on one port) */
};

/*!
 * \brief A listening TCP socket on numeric \p bind_addr and \p port (0 = any free port), SO_REUSEADDR set,
 * with \p backlog. *fd gets the socket (caller closes), *bound_port (if not NULL) the port actually bound.
 * VP_EINVAL when \p bind_addr is not a numeric address, VP_EIO when the socket, bind or listen fails
 * (errno left as the system set it).
 */
int vp_net_listen_tcp(const char *bind_addr, uint16_t port, int backlog, unsigned flags, int *fd,
                      uint16_t *bound_port);

/*!
 * \brief Connect over TCP to \p host (a name, or numeric with VP_NET_NUMERIC) and \p port, waiting at most
 * \p timeout_ms in all (0 = 5 s) across every address the name resolves to.  *fd gets the connected socket
 * (blocking unless VP_NET_NONBLOCK; caller closes). VP_EINVAL for a name that does not resolve (or any name
 * with VP_NET_NUMERIC), VP_ETIMEOUT when the time ran out, VP_EIO when every address refused.
 */
int vp_net_connect_tcp(const char *host, uint16_t port, unsigned timeout_ms, unsigned flags, int *fd);

/*! \brief "host:port" or "[v6]:port": vp_net_split_hostport() then vp_net_connect_tcp(). */
int vp_net_connect_hostport(const char *hostport, unsigned timeout_ms, unsigned flags, int *fd);

/*! \brief SO_RCVTIMEO and SO_SNDTIMEO of \p fd to \p ms (bounds blocking reads and writes). VP_EIO on failure. */
int vp_net_set_timeouts(int fd, unsigned ms);

/* ---- deadlines ------------------------------------------------------------------------------------------ */

/*! \brief A point in monotonic time (never jumps with the wall clock). */
typedef struct vp_deadline {
	uint64_t at_ns;
} vp_deadline_t;

/*! \brief The deadline \p ms milliseconds from now. */
vp_deadline_t vp_deadline_in_ms(uint64_t ms);

/*! \brief Milliseconds left before \p d, rounded up (0 once it passed); at most INT32_MAX so poll() takes it. */
int vp_deadline_remaining_ms(const vp_deadline_t *d);

/*! \brief Has \p d passed? */
bool vp_deadline_expired(const vp_deadline_t *d);

/*!
 * \brief The absolute CLOCK_REALTIME time for pthread_cond_timedwait() on a default condition variable:
 * now + min(time left before \p d, \p slice_ms) (\p slice_ms 0 = no cap).  Waiting in slices lets a waiter
 * notice a stop flag; computing from the monotonic deadline keeps a wall-clock jump from stretching the wait
 * beyond one slice.
 */
struct timespec vp_deadline_abstime(const vp_deadline_t *d, uint64_t slice_ms);

/*! \brief \p ts + \p ms, normalised (tv_nsec in [0, 1e9)). */
struct timespec vp_timespec_add_ms(struct timespec ts, uint64_t ms);

/*! \brief -1, 0 or 1 as \p a is before, equal to or after \p b (both normalised). */
int vp_timespec_cmp(const struct timespec *a, const struct timespec *b);

/*! \brief \p ms as a relative timespec (nanosleep). */
struct timespec vp_timespec_from_ms(uint64_t ms);

/*! \brief Sleep \p ms milliseconds, resuming after signals until the time has passed. */
void vp_sleep_ms(uint64_t ms);

#endif
