/*
 * control/tools/vipr_agent_call.c - `vipr-agent call`: place one call over the routes learned for a number
 * (docs/protocol.md §11), with the control/callagent engine.
 *
 *   vipr-agent call --routes FILE [--via HOST:PORT] [--from URI] [--timeout S] [--hold MS] [--now T] NUMBER
 *
 * FILE holds one route per line, as `vipr-agent subscribe` prints them (key=value; unknown keys ignored):
 *   route number=+14085551234 expires=1797000000 learned=1794400000 ticket64=<base64url> uri=sip:... [uri=...]
 * (`until=T`, when present, is the absolute expiry and wins over `expires=`, which subscribe prints relative)
 * or `cert=PATH` instead of ticket64 for a client-certificate route, plus the state this command keeps:
 * down_until=T (route down now) and renewal_sent=T.  The file is rewritten after the call (forgotten routes
 * gone, down ones marked).  Each fork goes over its own TCP connection: to --via (the border element's
 * agent listener, which carries it out over TLS), or without --via straight to the URI's host and port
 * (transport=tcp only: a test UAS).  A client-certificate route's fork always goes straight to its URI over TLS
 * (transport=tls), presenting the route's certificate and key (PATH: certificate then key, PEM) and checking the
 * far end's certificate against --ca (name: --tls-name, default the URI's host): docs/protocol.md §11.1.
 *
 * Exit status: 0 answered, 1 the callee answered without 2xx (busy, declined), 2 usage or bad input,
 * 3 place the call over the PSTN (no usable route, the renewal call, or every route failed).
 */
#include "control/tools/vipr_agent_call.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <osipparser2/osip_message.h>
#include <osipparser2/osip_parser.h>
#include <osipparser2/osip_port.h>

#include "common/clock.h"
#include "common/errcode.h"
#include "common/log.h"
#include "common/net.h"
#include "control/border/border.h"
#include "control/callagent/callagent.h"

#define MAX_MSG 16384            /* as the border's max_message */
#define GRACE_MS 2000            /* after the outcome: time for 487s to our CANCELs and the 200 to our BYE */
#define MAX_LINE 4096

enum { EXIT_ANSWERED = 0, EXIT_CALLEE = 1, EXIT_USAGE = 2, EXIT_PSTN = 3 };

typedef struct conn {
	int fd;
	SSL *ssl;                /* a client-certificate fork's TLS, or NULL (plain TCP) */
	char buf[MAX_MSG + 1];
	size_t len;
} conn_t;

static void call_usage(FILE *f)
{
	fputs("usage: vipr-agent call --routes FILE [--via HOST:PORT] [--from URI] [--timeout S] [--hold MS]\n"
	      "                       [--now UTC_SECONDS] [--ca FILE] [--tls-name NAME] NUMBER\n"
	      "  --ca FILE        CA that signs the far border's certificate (required for cert= routes)\n"
	      "exit: 0 answered, 1 callee's final answer, 2 usage, 3 place it over the PSTN\n",
	      f);
}

static int parse_u64(const char *s, uint64_t *v)
{
	char *end;
	errno = 0;
	unsigned long long x = strtoull(s, &end, 10);
	if (errno || !*s || *end || s[0] == '-')
		return VP_EINVAL;
	*v = x;
	return 0;
}

/* One `route` line into routes of \p t (one per uri=); 0, or VP_EINVAL with the offending key. */
static int load_line(vca_table_t *t, char *line, uint64_t *renewal, char *renum, const char **bad)
{
	vca_route_t r;
	const char *uris[VCA_MAX_FORKS];
	size_t nu = 0;
	uint64_t down = 0, until = 0;
	char *save = NULL, *tok = strtok_r(line, " \t\r\n", &save);
	memset(&r, 0, sizeof(r));
	*renewal = 0;
	if (!tok || strcmp(tok, "route") != 0)
		return 1; /* not a route line: skipped */
	while ((tok = strtok_r(NULL, " \t\r\n", &save))) {
		char *eq = strchr(tok, '=');
		if (!eq)
			continue;
		*eq = '\0';
		const char *k = tok, *v = eq + 1;
		int rc = 0;
		*bad = k;
		if (!strcmp(k, "number"))
			rc = vp_e164_normalize(v, NULL, r.number) ? VP_EINVAL : 0;
		else if (!strcmp(k, "uri"))
			rc = nu < VCA_MAX_FORKS && strlen(v) < VCA_URI_MAX ? (uris[nu++] = v, 0) : VP_EINVAL;
		else if (!strcmp(k, "ticket64"))
			rc = strlen(v) < sizeof(r.ticket) ? (snprintf(r.ticket, sizeof(r.ticket), "%s", v), 0) : VP_EINVAL;
		else if (!strcmp(k, "cert"))
			rc = strlen(v) < sizeof(r.cert) ? (snprintf(r.cert, sizeof(r.cert), "%s", v), 0) : VP_EINVAL;
		else if (!strcmp(k, "expires"))
			rc = parse_u64(v, &r.expires_s);
		else if (!strcmp(k, "learned"))
			rc = parse_u64(v, &r.learned_s);
		else if (!strcmp(k, "until"))
			rc = parse_u64(v, &until);
		else if (!strcmp(k, "down_until"))
			rc = parse_u64(v, &down);
		else if (!strcmp(k, "renewal_sent"))
			rc = parse_u64(v, renewal);
		if (rc)
			return VP_EINVAL;
	}
	*bad = "uri";
	if (!nu)
		return VP_EINVAL;
	if (until)
		r.expires_s = until;
	if (!r.learned_s) /* a subscribe line from before learned=: assume the default 30-day life */
		r.learned_s = r.expires_s > 2592000 ? r.expires_s - 2592000 : 0;
	*bad = "route";
	for (size_t i = 0; i < nu; i++) {
		snprintf(r.uri, sizeof(r.uri), "%s", uris[i]);
		if (vca_learn(t, &r))
			return VP_EINVAL;
		if (down)
			vca_report(t, r.number, r.uri, VCA_C_DOWN, down - VCA_DOWN_S_DEFAULT);
	}
	snprintf(renum, VP_E164_BUFLEN, "%s", r.number);
	return 0;
}

static int load_routes(const char *path, vca_table_t *t)
{
	FILE *f = fopen(path, "r");
	char line[MAX_LINE], num[VP_E164_BUFLEN];
	int ln = 0;
	if (!f) {
		fprintf(stderr, "vipr-agent: %s: %s\n", path, strerror(errno));
		return VP_EIO;
	}
	while (fgets(line, sizeof(line), f)) {
		uint64_t renewal = 0;
		const char *bad = "";
		ln++;
		int rc = load_line(t, line, &renewal, num, &bad);
		if (rc < 0) {
			fprintf(stderr, "vipr-agent: %s:%d: bad route (%s)\n", path, ln, bad);
			vp_log_error("vipr-agent", "route_file", "path=%s line=%d key=%s", path, ln, bad);
			fclose(f);
			return rc;
		}
		if (rc == 0 && renewal > vca_renewal_sent(t, num))
			vca_set_renewal_sent(t, num, renewal);
	}
	fclose(f);
	return 0;
}

typedef struct saver {
	FILE *f;
	const vca_table_t *t;
} saver_t;

static void save_one(void *arg, const vca_route_t *r)
{
	saver_t *s = arg;
	fprintf(s->f, "route number=%s uri=%s learned=%" PRIu64 " expires=%" PRIu64 " %s%s", r->number, r->uri,
	        r->learned_s, r->expires_s, r->ticket[0] ? "ticket64=" : "cert=", r->ticket[0] ? r->ticket : r->cert);
	if (r->down_until_s)
		fprintf(s->f, " down_until=%" PRIu64, r->down_until_s);
	if (vca_renewal_sent(s->t, r->number))
		fprintf(s->f, " renewal_sent=%" PRIu64, vca_renewal_sent(s->t, r->number));
	fputc('\n', s->f);
}

/* Write the table back atomically (write, then rename): a crash leaves the old file or the new one. */
static int save_routes(const char *path, const vca_table_t *t)
{
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	saver_t s = { .f = fopen(tmp, "w"), .t = t };
	if (!s.f)
		return VP_EIO;
	fprintf(s.f, "# vipr-agent routes: route number= uri= learned= expires= ticket64=|cert= [down_until=] "
	             "[renewal_sent=]\n");
	vca_each(t, save_one, &s);
	if (fclose(s.f) != 0 || rename(tmp, path) != 0) {
		unlink(tmp);
		return VP_EIO;
	}
	return 0;
}

/*
 * Where fork \p r goes without --via: the URI's host and port (libosip2 reads the URI); over TCP for a
 * ticket route (a test UAS), over TLS (transport=tls, default port 5061) for a client-certificate route.
 */
static int direct_target(const vca_route_t *r, char *host, size_t cap, uint16_t *port)
{
	const char *want = r->cert[0] ? "tls" : "tcp";
	osip_uri_t *u = NULL;
	osip_uri_param_t *tp = NULL;
	int rc = VP_EINVAL;
	if (osip_uri_init(&u) != 0)
		return VP_ENOMEM;
	if (osip_uri_parse(u, r->uri) == 0 && u->host && strlen(u->host) < cap && u->scheme &&
	    !osip_strcasecmp(u->scheme, "sip") &&
	    (osip_uri_uparam_get_byname(u, "transport", &tp) == 0 && tp && tp->gvalue ?
	         !osip_strcasecmp(tp->gvalue, want) : !r->cert[0])) {
		snprintf(host, cap, "%s", u->host);
		*port = r->cert[0] ? 5061 : 5060;
		rc = u->port && vp_net_parse_port(u->port, port) ? VP_EINVAL : 0;
	}
	osip_uri_free(u);
	return rc;
}

static bool tx(void *ctx, size_t fork, const char *msg, size_t len)
{
	conn_t *c = &((conn_t *)ctx)[fork];
	while (c->fd >= 0 && len) {
		ssize_t n = c->ssl ? SSL_write(c->ssl, msg, (int)len) : send(c->fd, msg, len, MSG_NOSIGNAL);
		if (n <= 0)
			return false;
		msg += n;
		len -= (size_t)n;
	}
	return c->fd >= 0;
}

/* Read what fork \p i has; hand every whole message to the call.  false when the connection ended. */
static bool rx(conn_t *c, size_t i, vca_call_t *call)
{
	ssize_t n = c->ssl ? SSL_read(c->ssl, c->buf + c->len, (int)(MAX_MSG - c->len))
	                   : recv(c->fd, c->buf + c->len, MAX_MSG - c->len, 0);
	if (n <= 0)
		return false;
	c->len += (size_t)n;
	/* TLS may hold whole records already read from the socket: poll() would not wake for them. */
	while (c->ssl && SSL_pending(c->ssl) > 0 && c->len < MAX_MSG) {
		n = SSL_read(c->ssl, c->buf + c->len, (int)(MAX_MSG - c->len));
		if (n <= 0)
			break;
		c->len += (size_t)n;
	}
	for (;;) {
		size_t total = 0;
		int f = vb_sip_frame(c->buf, c->len, MAX_MSG, &total);
		if (f < 0)
			return false; /* framing lost: nothing more from this fork can be trusted */
		if (f == 0)
			return c->len < MAX_MSG;
		if (vca_call_input(call, i, c->buf, total) != 0)
			vp_log_debug("vipr-agent", "ignored", "fork=%zu bytes=%zu", i, total);
		memmove(c->buf, c->buf + total, c->len - total);
		c->len -= total;
	}
}

/* Serve the forks' connections until \p until_ms (monotonic) or, with \p settle, until the call is decided. */
static void pump(conn_t *conns, size_t n, vca_call_t *call, uint64_t until_ms, bool settle)
{
	for (;;) {
		struct pollfd pf[VCA_MAX_FORKS];
		uint64_t now = vp_time_mono_ns() / 1000000;
		if (now >= until_ms || (settle && vca_call_outcome(call, NULL, NULL) != VCA_O_PENDING))
			return;
		size_t live = 0;
		for (size_t i = 0; i < n; i++) {
			pf[i].fd = conns[i].fd;
			pf[i].events = POLLIN;
			pf[i].revents = 0;
			live += conns[i].fd >= 0;
		}
		if (!live)
			return;
		int r = poll(pf, (nfds_t)n, (int)(until_ms - now));
		if (r < 0 && errno != EINTR)
			return;
		for (size_t i = 0; r > 0 && i < n; i++) {
			if (conns[i].fd < 0 || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			if (!rx(&conns[i], i, call)) {
				SSL_free(conns[i].ssl);
				conns[i].ssl = NULL;
				close(conns[i].fd);
				conns[i].fd = -1;
				vca_call_fork_failed(call, i); /* nothing if it already had its final response */
			}
		}
	}
}

/*
 * A client-certificate fork's TLS (§11.1): present the route's certificate and key (one PEM file), check the far
 * border against \p ca for \p name.  Blocking, bounded by IO_TIMEOUT_S on the socket.  A failure (refused
 * certificate, unknown server) leaves the fork without a connection: it fails in transport (route down now).
 */
#define IO_TIMEOUT_S 5
static SSL *tls_open(int fd, const char *pem, const char *ca, const char *name)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl = NULL;
	struct timeval tv = { .tv_sec = IO_TIMEOUT_S };
	bool ok = ctx && SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) &&
	          SSL_CTX_use_certificate_file(ctx, pem, SSL_FILETYPE_PEM) == 1 &&
	          SSL_CTX_use_PrivateKey_file(ctx, pem, SSL_FILETYPE_PEM) == 1 && SSL_CTX_check_private_key(ctx) == 1 &&
	          SSL_CTX_load_verify_locations(ctx, ca, NULL) == 1;
	if (ok) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		ok = (ssl = SSL_new(ctx)) && SSL_set_fd(ssl, fd) == 1 && SSL_set1_host(ssl, name) == 1 &&
		     SSL_connect(ssl) == 1;
	}
	if (!ok) {
		unsigned long e = ERR_peek_last_error();
		vp_log_warn("vipr-agent", "tls_failed", "cert=%s server=%s err=\"%s\"", pem, name,
		            e ? ERR_reason_error_string(e) : "setup");
		fprintf(stderr, "vipr-agent: TLS to %s with %s failed: %s\n", name, pem,
		        e ? ERR_reason_error_string(e) : "cannot load the certificate, key or CA");
		ERR_clear_error();
		SSL_free(ssl);
		ssl = NULL;
	}
	SSL_CTX_free(ctx); /* the SSL holds its own reference */
	return ssl;
}

int vipr_agent_call_main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "routes", required_argument, NULL, 'r' }, { "via", required_argument, NULL, 'V' },
		{ "from", required_argument, NULL, 'f' },   { "timeout", required_argument, NULL, 't' },
		{ "hold", required_argument, NULL, 'H' },   { "now", required_argument, NULL, 'n' },
		{ "verbose", no_argument, NULL, 'v' },      { "help", no_argument, NULL, 'h' },
		{ "ca", required_argument, NULL, 'C' },     { "tls-name", required_argument, NULL, 'N' },
		{ NULL, 0, NULL, 0 },
	};
	const char *routes = NULL, *via = NULL, *from = "sip:vipr-agent@invalid", *ca = NULL, *tls_name = NULL;
	uint64_t timeout_s = 32, hold_ms = 0, now_s = 0;
	char number[VP_E164_BUFLEN];
	vca_table_t *t = NULL;
	vca_call_t *call = NULL;
	conn_t *conns = NULL;
	vca_plan_t plan;
	int ch, ret = EXIT_USAGE;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "r:V:f:t:H:n:C:N:vh", lopts, NULL)) != -1) {
		switch (ch) {
		case 'C': ca = optarg; break;
		case 'N': tls_name = optarg; break;
		case 'r': routes = optarg; break;
		case 'V': via = optarg; break;
		case 'f': from = optarg; break;
		case 't':
		case 'H':
		case 'n':
			if (parse_u64(optarg, ch == 't' ? &timeout_s : ch == 'H' ? &hold_ms : &now_s)) {
				fprintf(stderr, "vipr-agent: bad number '%s'\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'v': vp_log_setup(VP_LOG_DEBUG, NULL); break;
		case 'h': call_usage(stdout); return 0;
		default: call_usage(stderr); return EXIT_USAGE;
		}
	}
	if (!routes || optind + 1 != argc || timeout_s == 0 || timeout_s > 600) {
		call_usage(stderr);
		return EXIT_USAGE;
	}
	if (vp_e164_normalize(argv[optind], NULL, number)) {
		fprintf(stderr, "vipr-agent: '%s' is not an E.164 number\n", argv[optind]);
		return EXIT_USAGE;
	}
	if (!now_s)
		now_s = vp_time_wall_ms() / 1000;
	parser_init();
	if (vca_table_new(NULL, &t) || load_routes(routes, t))
		goto finish;

	vca_plan(t, number, now_s, &plan);
	if (plan.pstn) {
		printf("outcome=pstn number=%s reason=%s\n", number, plan.renewal ? "renewal" : "no-route");
		ret = save_routes(routes, t) ? EXIT_USAGE : EXIT_PSTN;
		goto finish;
	}
	conns = calloc(plan.n, sizeof(*conns));
	if (!conns)
		goto finish;
	for (size_t i = 0; i < plan.n; i++) {
		char host[256];
		uint16_t port;
		conns[i].fd = -1;
		if (plan.routes[i].cert[0]) {
			/* The certificate is this number's and this key's: only we can present it, so the fork goes
			 * straight to the route's border over TLS, never through --via (§11.1). */
			if (!ca || direct_target(&plan.routes[i], host, sizeof(host), &port)) {
				fprintf(stderr, "vipr-agent: %s: a cert= route needs a transport=tls URI and --ca\n",
				        plan.routes[i].uri);
				vp_log_error("vipr-agent", "bad_cert_route", "uri=%s ca=%s", plan.routes[i].uri, ca ? ca : "-");
				goto finish;
			}
			if (vp_net_connect_tcp(host, port, 5000, VP_NET_NODELAY, &conns[i].fd) == 0 &&
			    !(conns[i].ssl = tls_open(conns[i].fd, plan.routes[i].cert, ca, tls_name ? tls_name : host))) {
				close(conns[i].fd);
				conns[i].fd = -1;
			}
			continue;
		}
		if (via) {
			if (vp_net_connect_hostport(via, 5000, VP_NET_NODELAY, &conns[i].fd))
				conns[i].fd = -1; /* the fork fails in transport: route down now */
			continue;
		}
		if (direct_target(&plan.routes[i], host, sizeof(host), &port)) {
			fprintf(stderr, "vipr-agent: %s: without --via only sip: URIs over TCP are reached directly\n",
			        plan.routes[i].uri);
			goto finish;
		}
		if (vp_net_connect_tcp(host, port, 5000, VP_NET_NODELAY, &conns[i].fd))
			conns[i].fd = -1;
	}
	{
		char via_host[80] = "127.0.0.1", contact[128];
		/* Responses come back on the connection the request went out on (RFC 3261 §18.2.2): our Via and
		 * Contact only name the address that connection has on our side. */
		for (size_t i = 0; i < plan.n; i++) {
			vp_net_addr_t la;
			socklen_t ll = sizeof(la.ss);
			if (conns[i].fd >= 0 && getsockname(conns[i].fd, (struct sockaddr *)&la.ss, &ll) == 0) {
				la.len = ll;
				if (vp_net_addr_format(&la, via_host, sizeof(via_host)) != 0)
					snprintf(via_host, sizeof(via_host), "127.0.0.1");
				break;
			}
		}
		bool all_tls = plan.n > 0;
		for (size_t i = 0; i < plan.n; i++)
			all_tls &= plan.routes[i].cert[0] != '\0';
		snprintf(contact, sizeof(contact), "sip:vipr-agent@%s;transport=%s", via_host, all_tls ? "tls" : "tcp");
		vca_call_conf_t cc = {
			.from_uri = from,
			.contact_uri = contact,
			.via_host = via_host,
			.transport = all_tls ? "TLS" : "TCP",
			.sdp = "v=0\r\no=vipr-agent 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
			       "m=audio 40000 RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
			       "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n",
		};
		vca_hooks_t h = { .send = tx, .ctx = conns };
		int rc = vca_call_start(&cc, &plan, &h, &call);
		if (rc) {
			fprintf(stderr, "vipr-agent: cannot start the call: %s\n", vp_strerror(rc));
			goto finish;
		}
		uint64_t t0 = vp_time_mono_ns() / 1000000;
		pump(conns, plan.n, call, t0 + timeout_s * 1000, true);
		if (vca_call_outcome(call, NULL, NULL) == VCA_O_PENDING)
			for (size_t i = 0; i < plan.n; i++)
				vca_call_fork_failed(call, i); /* the timer ran out on forks without a final response */
		size_t af = 0;
		int st = 0;
		vca_outcome_t o = vca_call_outcome(call, &af, &st);
		if (o == VCA_O_ANSWERED) {
			struct timespec ts = { .tv_sec = (time_t)(hold_ms / 1000), .tv_nsec = (long)(hold_ms % 1000) * 1000000 };
			nanosleep(&ts, NULL);
			vca_call_hangup(call);
		}
		uint64_t t1 = vp_time_mono_ns() / 1000000;
		pump(conns, plan.n, call, t1 + GRACE_MS, false); /* 487s to our CANCELs (ACKed), the 200 to our BYE */
		for (size_t i = 0; i < plan.n; i++)
			vca_call_fork_failed(call, i); /* CANCELled forks that never answered: they say nothing */
		for (size_t i = 0; i < plan.n; i++) {
			int fs = 0;
			vca_class_t cls;
			if (vca_call_fork_result(call, i, &fs, &cls))
				printf("fork uri=%s status=%d class=%s\n", plan.routes[i].uri, fs, vca_class_str(cls));
		}
		if (o == VCA_O_ANSWERED)
			printf("outcome=answered number=%s uri=%s call_id=%s\n", number, plan.routes[af].uri, vca_call_id(call));
		else
			printf("outcome=%s number=%s status=%d call_id=%s\n", vca_outcome_str(o), number, st, vca_call_id(call));
		vca_call_report(call, t, now_s);
		if (save_routes(routes, t)) {
			fprintf(stderr, "vipr-agent: cannot rewrite %s\n", routes);
			goto finish;
		}
		ret = o == VCA_O_ANSWERED ? EXIT_ANSWERED : o == VCA_O_CALLEE ? EXIT_CALLEE : EXIT_PSTN;
	}
finish:
	for (size_t i = 0; conns && i < plan.n; i++) {
		if (conns[i].ssl)
			SSL_shutdown(conns[i].ssl);
		SSL_free(conns[i].ssl);
		if (conns[i].fd >= 0)
			close(conns[i].fd);
	}
	free(conns);
	vca_call_free(call);
	vca_table_free(t);
	return ret;
}
