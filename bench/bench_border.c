/*
 * bench/bench_border.c - INVITEs per second per core through vipr-border and the p99 it adds.
 *
 *   bench_border --border PATH --certs DIR [--kamailio PATH] [--seconds S] [--conns C] [--window W]
 *
 * DIR holds ca.pem, border.pem/.key and client.pem/.key (carrier-b.example), as made by
 * bench/border/run.sh.  In one run it measures, against the same call agent (a UAS thread in this
 * process answering every INVITE 200 with an SRTP answer, parsed with libosip2):
 *   1. vipr-border, ticket and SDP checks on (each INVITE carries a valid ticket and an SRTP offer);
 *   2. vipr-border with `[admission] checks = false` (the same proxy, no checks): baseline;
 *   3. Kamailio (Debian's, tls module) forwarding the same INVITEs statelessly over TLS, with
 *      record_route() and force_rport(), one TCP worker: baseline;
 *   4. the UAS alone over TCP, for the latency a proxy adds.
 * Throughput: C TLS connections x W INVITEs outstanding (closed loop) for S seconds; per core =
 * completed / CPU seconds of the proxy's processes (utime + stime from /proc, every process of its
 * group).  Latency: one connection, one INVITE per millisecond (open loop) for S seconds, p50/p99
 * from INVITE sent to 200 received.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <osipparser2/osip_message.h>
#include <osipparser2/osip_parser.h>
#include <osipparser2/osip_port.h>

#include "common/clock.h"
#include "common/errcode.h"
#include "control/border/border.h"
#include "pvp/ticket.h"

#define MAXMSG 16384
#define MAX_CONNS 64
#define MAX_SAMPLES (1u << 22)
#define NUMBER "+14085551234"

static const char SDP[] = "v=0\r\no=b 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                          "m=audio 4000 RTP/SAVP 0\r\n"
                          "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n";

/* ---- the call agent: answers every INVITE 200 (and ignores the rest) ----------------------------------------- */

typedef struct uas {
	int lfd;
	uint16_t port;
	_Atomic bool stop;
} uas_t;

typedef struct sbuf {
	char *p;
	size_t len;
} sbuf_t;

static void *uas_main(void *arg)
{
	uas_t *u = arg;
	int ep = epoll_create1(0);
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = u->lfd};
	epoll_ctl(ep, EPOLL_CTL_ADD, u->lfd, &ev);
	static sbuf_t bufs[65536];
	while (!atomic_load(&u->stop)) {
		struct epoll_event evs[64];
		int n = epoll_wait(ep, evs, 64, 100);
		for (int k = 0; k < n; k++) {
			int fd = evs[k].data.fd;
			if (fd == u->lfd) {
				int c = accept4(u->lfd, NULL, NULL, SOCK_NONBLOCK);
				if (c >= 0 && c < 65536) {
					int one = 1;
					setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
					bufs[c].p = malloc(4 * MAXMSG);
					bufs[c].len = 0;
					struct epoll_event e2 = {.events = EPOLLIN, .data.fd = c};
					epoll_ctl(ep, EPOLL_CTL_ADD, c, &e2);
				} else if (c >= 0) {
					close(c);
				}
				continue;
			}
			sbuf_t *b = &bufs[fd];
			ssize_t r = read(fd, b->p + b->len, 4 * MAXMSG - b->len);
			if (r <= 0) {
				epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
				close(fd);
				free(b->p);
				b->p = NULL;
				continue;
			}
			b->len += (size_t)r;
			char out[65536];
			size_t olen = 0;
			for (;;) {
				size_t total;
				size_t skip = 0;
				while (skip < b->len && (b->p[skip] == '\r' || b->p[skip] == '\n'))
					skip++;
				if (skip) {
					memmove(b->p, b->p + skip, b->len - skip);
					b->len -= skip;
				}
				if (vb_sip_frame(b->p, b->len, MAXMSG, &total) != 1)
					break;
				osip_message_t *m = NULL;
				osip_message_init(&m);
				if (osip_message_parse(m, b->p, total) == 0 && MSG_IS_INVITE(m)) {
					osip_message_t *r2 = NULL;
					osip_message_init(&r2);
					osip_message_set_version(r2, osip_strdup("SIP/2.0"));
					osip_message_set_status_code(r2, 200);
					osip_message_set_reason_phrase(r2, osip_strdup("OK"));
					for (int i = 0; i < osip_list_size(&m->vias); i++) {
						osip_via_t *v = NULL;
						osip_via_clone(osip_list_get(&m->vias, i), &v);
						osip_list_add(&r2->vias, v, -1);
					}
					for (int i = 0; i < osip_list_size(&m->record_routes); i++) {
						osip_record_route_t *rr = NULL;
						osip_record_route_clone(osip_list_get(&m->record_routes, i), &rr);
						osip_list_add(&r2->record_routes, rr, -1);
					}
					osip_from_clone(m->from, &r2->from);
					osip_to_clone(m->to, &r2->to);
					osip_to_set_tag(r2->to, osip_strdup("uas1"));
					osip_call_id_clone(m->call_id, &r2->call_id);
					osip_cseq_clone(m->cseq, &r2->cseq);
					osip_message_set_contact(r2, "<sip:agent@127.0.0.1>");
					osip_message_set_content_type(r2, "application/sdp");
					osip_message_set_body(r2, SDP, strlen(SDP));
					char *txt;
					size_t tl;
					if (osip_message_to_str(r2, &txt, &tl) == 0) {
						if (olen + tl < sizeof(out)) {
							memcpy(out + olen, txt, tl);
							olen += tl;
						}
						osip_free(txt);
					}
					osip_message_free(r2);
				}
				osip_message_free(m);
				memmove(b->p, b->p + total, b->len - total);
				b->len -= total;
			}
			for (size_t off = 0; off < olen;) {
				ssize_t w = write(fd, out + off, olen - off);
				if (w <= 0) {
					if (w < 0 && errno == EAGAIN)
						continue; /* loopback drains quickly; the client reads concurrently */
					break;
				}
				off += (size_t)w;
			}
		}
	}
	close(ep);
	return NULL;
}

/* ---- the calling carrier: TLS connections sending ticketed INVITEs ------------------------------------------- */

typedef struct cconn {
	int fd;
	SSL *ssl;
	char rbuf[8 * MAXMSG];
	size_t rlen;
	uint64_t seq;
	int outstanding;
} cconn_t;

typedef struct load {
	const char *certs;
	char ticket[PVP_TICKET_B64_MAX];
	uint16_t port;
	bool tls;
	SSL_CTX *ctx;
	cconn_t conns[MAX_CONNS];
	int nconns;
	uint64_t *sent_ns;        /* per (conn, seq) slot */
	uint64_t *lat;            /* samples, ns */
	size_t nlat;
	uint64_t done;
	unsigned run;             /* in every Call-ID: each run's calls are new dialogs */
} load_t;

static int cconn_open(load_t *L, cconn_t *c)
{
	memset(c, 0, sizeof(*c));
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(L->port)};
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		return -1;
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (L->tls) {
		c->ssl = SSL_new(L->ctx);
		SSL_set_fd(c->ssl, c->fd);
		if (SSL_connect(c->ssl) != 1)
			return -1;
	}
	fcntl(c->fd, F_SETFL, O_NONBLOCK);
	return 0;
}

static void cconn_close(cconn_t *c)
{
	if (c->ssl)
		SSL_free(c->ssl);
	if (c->fd > 0)
		close(c->fd);
	c->ssl = NULL;
	c->fd = -1;
}

#define SLOTS 4096 /* per connection: seq % SLOTS holds the send time */

static int send_invite(load_t *L, int ci)
{
	cconn_t *c = &L->conns[ci];
	uint64_t seq = c->seq++;
	char msg[4096];
	int n = snprintf(msg, sizeof(msg),
	                 "INVITE sip:" NUMBER "@127.0.0.1:%u SIP/2.0\r\n"
	                 "Via: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bK-%d-%" PRIu64 "\r\n"
	                 "From: <sip:bench@carrier-b.example>;tag=t%d-%" PRIu64 "\r\n"
	                 "To: <sip:" NUMBER "@127.0.0.1>\r\n"
	                 "Call-ID: b%u.%d-%" PRIu64 "\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
	                 "Contact: <sip:bench@127.0.0.1:5999;transport=tls>\r\n"
	                 "X-ViPR-Ticket: %s\r\nContent-Type: application/sdp\r\nContent-Length: %zu\r\n\r\n%s",
	                 L->port, ci, seq, ci, seq, L->run, ci, seq, L->ticket, strlen(SDP), SDP);
	L->sent_ns[(size_t)ci * SLOTS + seq % SLOTS] = vp_time_mono_ns();
	for (int off = 0; off < n;) {
		int w = c->ssl ? SSL_write(c->ssl, msg + off, n - off) : (int)write(c->fd, msg + off, (size_t)(n - off));
		if (w <= 0) {
			if (c->ssl) {
				int e = SSL_get_error(c->ssl, w);
				if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
					continue;
			} else if (errno == EAGAIN) {
				continue;
			}
			return -1;
		}
		off += w;
	}
	c->outstanding++;
	return 0;
}

/* Read 200s on connection ci; record latencies; returns answers seen (-1 on a dead connection). */
static int read_answers(load_t *L, int ci, bool record)
{
	cconn_t *c = &L->conns[ci];
	int got = 0;
	for (;;) {
		int r = c->ssl ? SSL_read(c->ssl, c->rbuf + c->rlen, (int)(sizeof(c->rbuf) - c->rlen))
		               : (int)read(c->fd, c->rbuf + c->rlen, sizeof(c->rbuf) - c->rlen);
		if (r <= 0) {
			if (c->ssl) {
				int e = SSL_get_error(c->ssl, r);
				if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
					break;
			} else if (r < 0 && errno == EAGAIN) {
				break;
			}
			return -1;
		}
		c->rlen += (size_t)r;
	}
	uint64_t now = vp_time_mono_ns();
	for (;;) {
		size_t total;
		if (vb_sip_frame(c->rbuf, c->rlen, MAXMSG, &total) != 1)
			break;
		osip_message_t *m = NULL;
		osip_message_init(&m);
		if (osip_message_parse(m, c->rbuf, total) == 0 && m->status_code >= 200 && m->call_id &&
		    m->call_id->number) {
			int cc;
			unsigned run;
			uint64_t seq;
			if (m->status_code == 200 && sscanf(m->call_id->number, "b%u.%d-%" SCNu64, &run, &cc, &seq) == 3 &&
			    cc == ci && run == L->run) {
				if (record && L->nlat < MAX_SAMPLES)
					L->lat[L->nlat++] = now - L->sent_ns[(size_t)ci * SLOTS + seq % SLOTS];
				L->done++;
			}
			c->outstanding--;
			got++;
		}
		osip_message_free(m);
		memmove(c->rbuf, c->rbuf + total, c->rlen - total);
		c->rlen -= total;
	}
	return got;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Closed loop: nconns x window outstanding for `seconds`; returns completed INVITEs (after a 0.5 s warm-up). */
static uint64_t run_closed(load_t *L, int nconns, int window, double seconds)
{
	L->nconns = nconns;
	L->run++;
	for (int i = 0; i < nconns; i++)
		if (cconn_open(L, &L->conns[i]) != 0) {
			fprintf(stderr, "bench_border: connect %d failed\n", i);
			return 0;
		}
	int ep = epoll_create1(0);
	for (int i = 0; i < nconns; i++) {
		struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
		epoll_ctl(ep, EPOLL_CTL_ADD, L->conns[i].fd, &ev);
		for (int w = 0; w < window; w++)
			send_invite(L, i);
	}
	uint64_t t0 = vp_time_mono_ns(), warm = t0 + 500000000ull, end = warm + (uint64_t)(seconds * 1e9);
	uint64_t done_at_warm = 0;
	bool warmed = false;
	while (vp_time_mono_ns() < end) {
		struct epoll_event evs[MAX_CONNS];
		int n = epoll_wait(ep, evs, MAX_CONNS, 100);
		for (int k = 0; k < n; k++) {
			int i = (int)evs[k].data.u32;
			if (read_answers(L, i, false) < 0)
				goto out;
			while (L->conns[i].outstanding < window)
				if (send_invite(L, i) != 0)
					goto out;
		}
		if (!warmed && vp_time_mono_ns() >= warm) {
			warmed = true;
			done_at_warm = L->done;
		}
	}
out:
	close(ep);
	for (int i = 0; i < nconns; i++)
		cconn_close(&L->conns[i]);
	return L->done - done_at_warm;
}

/* Open loop: one INVITE per millisecond on one connection for `seconds`; latency samples in L->lat. */
static void run_paced(load_t *L, double seconds)
{
	L->nconns = 1;
	L->nlat = 0;
	L->run++;
	if (cconn_open(L, &L->conns[0]) != 0)
		return;
	uint64_t t0 = vp_time_mono_ns(), end = t0 + (uint64_t)(seconds * 1e9), next = t0;
	while (vp_time_mono_ns() < end) {
		uint64_t now = vp_time_mono_ns();
		if (now >= next) {
			send_invite(L, 0);
			next += 1000000;
		}
		if (read_answers(L, 0, now > t0 + 200000000ull) < 0)
			break;
	}
	uint64_t drain = vp_time_mono_ns() + 1000000000ull;
	while (L->conns[0].outstanding > 0 && vp_time_mono_ns() < drain)
		if (read_answers(L, 0, true) < 0)
			break;
	cconn_close(&L->conns[0]);
	qsort(L->lat, L->nlat, sizeof(uint64_t), cmp_u64);
}

static double pct(const load_t *L, double p)
{
	if (L->nlat == 0)
		return 0;
	size_t i = (size_t)(p * (double)(L->nlat - 1));
	return (double)L->lat[i] / 1e3;
}

/* ---- processes under test ---------------------------------------------------------------------------------------- */

static double group_cpu_s(pid_t pgid)
{
	double total = 0;
	DIR *d = opendir("/proc");
	struct dirent *e;
	long hz = sysconf(_SC_CLK_TCK);
	while (d && (e = readdir(d))) {
		char path[300], buf[1024];
		snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = '\0';
		char *rp = strrchr(buf, ')');
		if (!rp)
			continue;
		/* fields after the name: state ppid pgrp ... utime(14) stime(15) */
		char state;
		int ppid, pgrp;
		unsigned long ut, st;
		if (sscanf(rp + 2, "%c %d %d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &state, &ppid, &pgrp, &ut, &st) == 5 &&
		    pgrp == pgid)
			total += (double)(ut + st) / (double)hz;
	}
	if (d)
		closedir(d);
	return total;
}

static pid_t spawn(char *const argv[], const char *log)
{
	pid_t p = fork();
	if (p == 0) {
		setpgid(0, 0);
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	if (p > 0)
		setpgid(p, p);
	return p;
}

static void stop(pid_t p)
{
	if (p <= 0)
		return;
	kill(-p, SIGTERM);
	for (int i = 0; i < 50; i++) {
		if (waitpid(p, NULL, WNOHANG) == p)
			goto reap;
		usleep(100000);
	}
	kill(-p, SIGKILL);
	waitpid(p, NULL, 0);
reap:
	kill(-p, SIGKILL); /* any child left in the group (Kamailio's workers) */
}

static bool wait_port(uint16_t port)
{
	for (int i = 0; i < 100; i++) { /* 10 s */
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
		inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
		int ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
		close(fd);
		if (ok)
			return true;
		usleep(100000);
	}
	return false;
}

static uint16_t free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET};
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	socklen_t l = sizeof(sa);
	getsockname(fd, (struct sockaddr *)&sa, &l);
	close(fd);
	return ntohs(sa.sin_port);
}

/* Copy \p in to \p out replacing each vars[i][0] by vars[i][1] (a template of ours, not a format we parse). */
static int fill_template(const char *in, const char *out, const char *vars[][2], int nv)
{
	FILE *f = fopen(in, "r");
	if (!f)
		return -1;
	char text[16384];
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	FILE *o = fopen(out, "w");
	if (!o)
		return -1;
	for (const char *p = text; *p;) {
		int hit = -1;
		for (int i = 0; i < nv && hit < 0; i++)
			if (strncmp(p, vars[i][0], strlen(vars[i][0])) == 0)
				hit = i;
		if (hit >= 0) {
			fputs(vars[hit][1], o);
			p += strlen(vars[hit][0]);
		} else {
			fputc(*p++, o);
		}
	}
	return fclose(o) == 0 ? 0 : -1;
}

typedef struct result {
	double rate_core, rate_wall, p50_us, p99_us, cpu_s;
} result_t;

static result_t measure(load_t *L, pid_t pgid, uint16_t port, bool tls, int conns, int window, double seconds)
{
	result_t r = {0};
	L->port = port;
	L->tls = tls;
	L->done = 0;
	double c0 = pgid > 0 ? group_cpu_s(pgid) : 0;
	uint64_t t0 = vp_time_mono_ns();
	uint64_t n = run_closed(L, conns, window, seconds);
	double wall = (double)(vp_time_mono_ns() - t0) / 1e9 - 0.5;
	double c1 = pgid > 0 ? group_cpu_s(pgid) : 0;
	r.cpu_s = c1 - c0;
	r.rate_wall = (double)n / wall;
	/* CPU over the whole run including warm-up: scale the count to match */
	/* the CPU window includes the 0.5 s warm-up, so count the warm-up's share of INVITEs too */
	r.rate_core = r.cpu_s > 0 ? (double)n * ((wall + 0.5) / wall) / r.cpu_s : 0;
	run_paced(L, seconds);
	r.p50_us = pct(L, 0.50);
	r.p99_us = pct(L, 0.99);
	return r;
}

int main(int argc, char **argv)
{
	const char *border = NULL, *kamailio = NULL, *certs = NULL, *kcfg_in = NULL, *ktls_in = NULL;
	double seconds = 3;
	int conns = 4, window = 8;
	static const struct option lo[] = {
		{"border", required_argument, NULL, 'b'}, {"kamailio", required_argument, NULL, 'k'},
		{"certs", required_argument, NULL, 'c'},  {"seconds", required_argument, NULL, 's'},
		{"conns", required_argument, NULL, 'n'},  {"window", required_argument, NULL, 'w'},
		{"kamailio-cfg", required_argument, NULL, 'K'}, {"kamailio-tls", required_argument, NULL, 'T'},
		{NULL, 0, NULL, 0},
	};
	int ch;
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 'b': border = optarg; break;
		case 'k': kamailio = optarg; break;
		case 'c': certs = optarg; break;
		case 's': seconds = atof(optarg); break;
		case 'n': conns = atoi(optarg); break;
		case 'w': window = atoi(optarg); break;
		case 'K': kcfg_in = optarg; break;
		case 'T': ktls_in = optarg; break;
		default: return 2;
		}
	}
	if (!border || !certs || conns < 1 || conns > MAX_CONNS || window < 1 || window > SLOTS / 2 || seconds <= 0) {
		fprintf(stderr, "usage: bench_border --border PATH --certs DIR [--kamailio PATH --kamailio-cfg IN "
		                "--kamailio-tls IN] [--seconds S] "
		                "[--conns C<=64] [--window W]\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	parser_init();
	static load_t L;
	L.certs = certs;
	L.sent_ns = calloc((size_t)MAX_CONNS * SLOTS, sizeof(uint64_t));
	L.lat = malloc(MAX_SAMPLES * sizeof(uint64_t));

	/* keys and a ticket for carrier-b.example */
	pvp_ticket_keys_t keys = {0};
	keys.cur.epoch = 1;
	keys.cur.len = 32;
	for (int i = 0; i < 32; i++)
		keys.cur.key[i] = (uint8_t)(i * 37 + 11);
	char path[512], text[1024];
	snprintf(path, sizeof(path), "%s/ticket-keys", certs);
	pvp_ticket_keys_format(&keys, text, sizeof(text));
	FILE *f = fopen(path, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0)
		return 1;
	pvp_ticket_t t = {0};
	t.flags = PVP_TICKET_F_ROUTES;
	t.issued = (uint32_t)(vp_time_wall_ms() / 1000) - 10;
	t.expires = t.issued + 86400;
	snprintf(t.number, sizeof(t.number), NUMBER);
	snprintf(t.domain, sizeof(t.domain), "carrier-b.example");
	uint8_t bin[PVP_TICKET_MAX];
	size_t blen;
	if (pvp_ticket_issue(&keys, &t, bin, sizeof(bin), &blen) != 0 ||
	    pvp_b64url_encode(bin, blen, L.ticket, sizeof(L.ticket)) != 0)
		return 1;

	L.ctx = SSL_CTX_new(TLS_client_method());
	char cp[600], kp[600], ca[600];
	snprintf(cp, sizeof(cp), "%s/client.pem", certs);
	snprintf(kp, sizeof(kp), "%s/client.key", certs);
	snprintf(ca, sizeof(ca), "%s/ca.pem", certs);
	if (SSL_CTX_use_certificate_chain_file(L.ctx, cp) != 1 || SSL_CTX_use_PrivateKey_file(L.ctx, kp, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_load_verify_locations(L.ctx, ca, NULL) != 1) {
		fprintf(stderr, "bench_border: certificates in %s unusable (run bench/border/run.sh)\n", certs);
		return 1;
	}
	SSL_CTX_set_verify(L.ctx, SSL_VERIFY_PEER, NULL);

	/* the call agent */
	static uas_t U;
	U.lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET};
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	bind(U.lfd, (struct sockaddr *)&sa, sizeof(sa));
	listen(U.lfd, 128);
	socklen_t sl = sizeof(sa);
	getsockname(U.lfd, (struct sockaddr *)&sa, &sl);
	U.port = ntohs(sa.sin_port);
	pthread_t uth;
	pthread_create(&uth, NULL, uas_main, &U);

	result_t res[4] = {0};
	bool have[4] = {false};
	for (int mode = 0; mode < 2; mode++) {
		uint16_t port = free_port();
		char conf[600], logp[600];
		snprintf(conf, sizeof(conf), "%s/border-%d.conf", certs, mode);
		snprintf(logp, sizeof(logp), "%s/border-%d.log", certs, mode);
		f = fopen(conf, "w");
		fprintf(f,
		        "[border]\nlisten = 127.0.0.1:%u\ncert = %s/border.pem\nkey = %s/border.key\nca = %s\n"
		        "[call_agent]\naddress = 127.0.0.1:%u\n[tickets]\nkey_file = %s\n[admission]\nchecks = %s\n"
		        "[sip]\nmax_dialogs = 1000000\n[log]\nlevel = warn\n",
		        port, certs, certs, ca, U.port, path, mode == 0 ? "true" : "false");
		fclose(f);
		char *av[] = {(char *)border, "-c", conf, NULL};
		pid_t p = spawn(av, logp);
		if (!wait_port(port)) {
			fprintf(stderr, "bench_border: vipr-border did not start (see %s)\n", logp);
			stop(p);
			continue;
		}
		usleep(300000); /* its connection to the call agent */
		res[mode] = measure(&L, p, port, true, conns, window, seconds);
		have[mode] = true;
		stop(p);
	}
	if (kamailio && kcfg_in && ktls_in) {
		uint16_t port = free_port(), tport = free_port();
		char cfg[600], tls[600], logp[600], rundir[600], ports[3][16];
		snprintf(cfg, sizeof(cfg), "%s/kamailio.cfg", certs);
		snprintf(tls, sizeof(tls), "%s/kamailio-tls.cfg", certs);
		snprintf(logp, sizeof(logp), "%s/kamailio.log", certs);
		snprintf(rundir, sizeof(rundir), "%s/kamailio-run", certs);
		mkdir(rundir, 0700);
		snprintf(ports[0], sizeof(ports[0]), "%u", port);
		snprintf(ports[1], sizeof(ports[1]), "%u", tport);
		snprintf(ports[2], sizeof(ports[2]), "%u", U.port);
		const char *vars[][2] = {{"@TLSPORT@", ports[0]}, {"@TCPPORT@", ports[1]}, {"@UASPORT@", ports[2]},
		                         {"@TLSCFG@", tls}, {"@CERTS@", certs}};
		if (fill_template(kcfg_in, cfg, vars, 5) != 0 || fill_template(ktls_in, tls, vars, 5) != 0) {
			fprintf(stderr, "bench_border: cannot write the Kamailio configuration\n");
		} else {
			char *av[] = {(char *)kamailio, "-DD", "-E", "-f", cfg, "-Y", rundir, "-m", "256", "-M", "32", NULL};
			pid_t p = spawn(av, logp);
			if (wait_port(port)) {
				usleep(300000);
				res[2] = measure(&L, p, port, true, conns, window, seconds);
				have[2] = res[2].rate_wall > 0;
			} else {
				fprintf(stderr, "bench_border: kamailio did not start (see %s)\n", logp);
			}
			stop(p);
		}
	}
	/* the UAS alone (TCP): what a proxy adds to the round trip */
	L.port = U.port;
	L.tls = false;
	run_paced(&L, seconds);
	res[3].p50_us = pct(&L, 0.5);
	res[3].p99_us = pct(&L, 0.99);
	have[3] = L.nlat > 0;
	atomic_store(&U.stop, true);
	pthread_join(uth, NULL);

	if (have[0]) {
		if (have[1])
			printf("border_invites_per_core %.0f INVITE/s (checks off %.0f INVITE/s, ratio %.2fx)\n", res[0].rate_core,
			       res[1].rate_core, res[1].rate_core > 0 ? res[0].rate_core / res[1].rate_core : 0);
		if (have[2])
			printf("border_invites_per_core %.0f INVITE/s (kamailio %.0f INVITE/s, ratio %.2fx)\n", res[0].rate_core,
			       res[2].rate_core, res[2].rate_core > 0 ? res[0].rate_core / res[2].rate_core : 0);
		printf("border_invites_wall %.0f INVITE/s (checks off %.0f INVITE/s, ratio %.2fx)\n", res[0].rate_wall,
		       res[1].rate_wall, res[1].rate_wall > 0 ? res[0].rate_wall / res[1].rate_wall : 0);
		if (have[2])
			printf("border_invites_wall %.0f INVITE/s (kamailio %.0f INVITE/s, ratio %.2fx)\n", res[0].rate_wall,
			       res[2].rate_wall, res[2].rate_wall > 0 ? res[0].rate_wall / res[2].rate_wall : 0);
		if (have[3])
			printf("border_added_p99 %.0f us (kamailio %.0f us, ratio %.2fx)\n", res[0].p99_us - res[3].p99_us,
			       have[2] ? res[2].p99_us - res[3].p99_us : 0,
			       have[2] && res[0].p99_us > res[3].p99_us ? (res[2].p99_us - res[3].p99_us) / (res[0].p99_us - res[3].p99_us) : 0);
		printf("border_p99 %.0f us (checks off %.0f us, ratio %.2fx)\n", res[0].p99_us, res[1].p99_us,
		       res[0].p99_us > 0 ? res[1].p99_us / res[0].p99_us : 0);
		if (have[2])
			printf("border_p99 %.0f us (kamailio %.0f us, ratio %.2fx)\n", res[0].p99_us, res[2].p99_us,
			       res[0].p99_us > 0 ? res[2].p99_us / res[0].p99_us : 0);
		printf("border_p50 %.0f us (uas alone %.0f us, ratio %.2fx)\n", res[0].p50_us, res[3].p50_us,
		       res[0].p50_us > 0 ? res[3].p50_us / res[0].p50_us : 0);
		printf("# cpu seconds: border %.2f, checks off %.2f, kamailio %.2f; conns=%d window=%d seconds=%.1f\n",
		       res[0].cpu_s, res[1].cpu_s, res[2].cpu_s, conns, window, seconds);
	}
	return have[0] ? 0 : 1;
}
