/*
 * control/vipr_agent.c - vipr-agent: a call-agent simulator speaking VAP.
 *
 *   vipr-agent [options] register
 *   vipr-agent [options] publish [--withdraw] [--file F] [--refresh T [--sweeps N]] [NUMBER|RANGE ...]
 *   vipr-agent [options] vservice --uri URI [--uri URI] [--black DOMAIN] [--white DOMAIN]
 *   vipr-agent [options] upload FILE.csv
 *   vipr-agent [options] subscribe [--count K] [--duration S]
 *   vipr-agent [options] load --agents N --rate R [--duration S]
 *   vipr-agent call --routes FILE [--via HOST:PORT] [--from URI] NUMBER   (vipr_agent_call.c)
 *
 * Run with --help for the options.  Exit status: 0 success, 1 the server
 * refused or failed, 2 usage or input errors.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <inttypes.h>
#include <sys/epoll.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <fcntl.h>
#include <sys/stat.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "common/clock.h"
#include "common/conf.h"
#include "common/e164.h"
#include "common/errcode.h"
#include "common/log.h"
#include "common/net.h"
#include "control/tools/vipr_agent_call.h"
#include "pvp/ticket.h"
#include "control/vap/vap_client.h"

#define LOAD_WINDOW 16          /* uploads outstanding per agent in load mode */

typedef struct opts {
	char host[256];
	uint16_t port;
	const char *user, *password;
	bool tls;
	const char *ca, *tls_name;
	const char *country;
	int timeout_ms;
	uint32_t vservice;
	bool withdraw, fingerprint;
	const char *file;
	const char *uris[VAP_MAX_URIS];
	size_t n_uris;
	const char *black[VAP_MAX_LIST], *white[VAP_MAX_LIST];
	size_t n_black, n_white;
	long count;
	double duration;
	unsigned agents;
	double rate;
	unsigned window;
	unsigned retries;
	const char *cert_dir, *cert_key; /* subscribe: where a route's client certificate goes, and its key */
	uint64_t refresh_ms;             /* publish: publish the block again every refresh_ms (0: once) */
	unsigned sweeps;                 /* publish --refresh: stop after this many sweeps (0: at SIGTERM/SIGINT) */
} opts_t;

static void usage(FILE *f)
{
	fprintf(f,
	"usage: vipr-agent [options] COMMAND [args]\n"
	"\n"
	"commands:\n"
	"  register                 connect, authenticate, unregister (checks credentials)\n"
	"  publish [NUMBER|RANGE..] publish numbers and ranges such as +1408555[0000-9999]\n"
	"                           (also one per line from --file; '#' starts a comment)\n"
	"  vservice                 publish the VService: --uri (1..8), --black, --white\n"
	"  upload FILE.csv          upload call records; CSV columns:\n"
	"                           direction,called,caller,start,stop  (direction orig|term;\n"
	"                           caller may be empty; times UTC ms or YYYY-MM-DDTHH:MM:SS[.mmm]Z)\n"
	"  subscribe                print learned routes as they arrive (--count, --duration);\n"
	"                           with --cert-dir DIR --cert-key KEY.pem a route that came with a\n"
	"                           client certificate is written as DIR/<number>-<id>.pem (certificate\n"
	"                           and KEY) and printed with cert=PATH instead of ticket64=\n"
	"  load                     load generator: --agents N agents upload call records at\n"
	"                           --rate R requests/s in total for --duration S seconds\n"
	"  call --routes FILE NUMBER place a call over the routes in FILE (as subscribe prints them):\n"
	"                           fork to all, fall back to the PSTN, renew (vipr-agent call --help)\n"
	"\n"
	"options:\n"
	"  -s, --server HOST:PORT   ViPR server (default 127.0.0.1:5349)\n"
	"  -u, --user NAME          agent username (load: prefix, agents are NAME0..NAME{N-1})\n"
	"  -p, --password PW        password; '%%s' is replaced by the username (default: $VIPR_AGENT_PASSWORD)\n"
	"      --tls                use TLS; --ca FILE to verify the server, --tls-name NAME\n"
	"  -c, --country CC         default country code for national numbers (e.g. 1)\n"
	"  -V, --vservice ID        VService id (default 1)\n"
	"      --withdraw           publish: withdraw instead of add\n"
	"  -f, --file FILE          publish: numbers and ranges from FILE\n"
	"      --refresh T          publish: the call agent's refresh (overview §6.1): publish the block\n"
	"                           again every T (e.g. 12h; shorter than the server's [vipr] lifetime)\n"
	"                           until SIGTERM or SIGINT; a sweep slower than T is reported\n"
	"      --sweeps N           publish --refresh: stop after N sweeps\n"
	"      --fingerprint        add FINGERPRINT to requests\n"
	"      --window N           Publish messages in flight (default 4)\n"
	"      --retries N          retries after 429/503 (default 5)\n"
	"      --timeout MS         per answer (default 10000)\n"
	"  -v, --verbose            log debug events to stderr\n"
	"  -h, --help\n");
}

/* ---- helpers ----------------------------------------------------------------- */

static SSL_CTX *make_tls(const opts_t *o)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (o->ca) {
		if (SSL_CTX_load_verify_locations(ctx, o->ca, NULL) != 1) {
			fprintf(stderr, "vipr-agent: cannot load CA file %s\n", o->ca);
			SSL_CTX_free(ctx);
			return NULL;
		}
	} else {
		SSL_CTX_set_default_verify_paths(ctx);
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	return ctx;
}

static void conf_for(const opts_t *o, SSL_CTX *tls, const char *user, char *pwbuf, size_t pwcap,
                     vap_client_conf_t *cc)
{
	memset(cc, 0, sizeof(*cc));
	cc->host = o->host;
	cc->port = o->port;
	cc->username = user;
	if (strstr(o->password, "%s")) {
		/* The template comes from our own command line; only %s is substituted. */
		const char *p = strstr(o->password, "%s");
		snprintf(pwbuf, pwcap, "%.*s%s%s", (int)(p - o->password), o->password, user, p + 2);
	} else {
		snprintf(pwbuf, pwcap, "%s", o->password);
	}
	cc->password = pwbuf;
	cc->tls = tls;
	cc->tls_name = o->tls_name;
	cc->timeout_ms = o->timeout_ms;
	cc->window = o->window;
	cc->fingerprint = o->fingerprint;
	cc->busy_retries = o->retries;
}

static int report(const char *what, int rc, const vap_client_t *c)
{
	if (rc == 0)
		return 0;
	if (c && vap_client_last_error(c)->code)
		fprintf(stderr, "vipr-agent: %s: server answered %d %s\n", what,
		        vap_client_last_error(c)->code, vap_client_last_error(c)->reason);
	else
		fprintf(stderr, "vipr-agent: %s: %s\n", what, vp_strerror(rc));
	return 1;
}

static int connect_one(const opts_t *o, SSL_CTX *tls, vap_client_t **c)
{
	char pw[256];
	vap_client_conf_t cc;
	int rc;
	conf_for(o, tls, o->user, pw, sizeof(pw), &cc);
	rc = vap_client_connect(&cc, c);
	if (rc == VP_EAUTH) {
		fprintf(stderr, "vipr-agent: %s@%s:%u: authentication failed (401)\n", o->user, o->host, o->port);
		return 1;
	}
	return report("connect", rc, NULL);
}

/* ---- publish ------------------------------------------------------------------ */

typedef struct list {
	char (*nums)[VP_E164_BUFLEN];
	const char **ptrs;
	size_t n, cap;
	vap_range_t *ranges;
	size_t nr, rcap;
} list_t;

static int list_add(list_t *l, const char *item, const vp_e164_conf_t *ec, const char *where)
{
	vap_range_t r;
	int rc;
	if (strchr(item, '[')) {
		if ((rc = vap_range_parse(item, ec, &r))) {
			fprintf(stderr, "vipr-agent: %s: bad range '%s': %s\n", where, item, vp_strerror(rc));
			return rc;
		}
		if (l->nr == l->rcap) {
			size_t nc = l->rcap ? l->rcap * 2 : 16;
			vap_range_t *nr = realloc(l->ranges, nc * sizeof(*nr));
			if (!nr)
				return VP_ENOMEM;
			l->ranges = nr;
			l->rcap = nc;
		}
		l->ranges[l->nr++] = r;
		return 0;
	}
	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 1024;
		void *a = realloc(l->nums, nc * sizeof(*l->nums));
		if (!a)
			return VP_ENOMEM;
		l->nums = a;
		l->cap = nc;
	}
	if ((rc = vp_e164_normalize(item, ec, l->nums[l->n]))) {
		fprintf(stderr, "vipr-agent: %s: bad number '%s': %s\n", where, item, vp_strerror(rc));
		return rc;
	}
	l->n++;
	return 0;
}

static int read_list_file(list_t *l, const char *path, const vp_e164_conf_t *ec)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "r") : stdin;
	char line[512], where[300];
	unsigned lineno = 0;
	int rc = 0;
	if (!f) {
		fprintf(stderr, "vipr-agent: %s: %s\n", path, strerror(errno));
		return VP_EIO;
	}
	while (!rc && fgets(line, sizeof(line), f)) {
		char *p = line, *e;
		lineno++;
		if ((e = strchr(p, '#')))
			*e = '\0';
		while (*p == ' ' || *p == '\t')
			p++;
		e = p + strlen(p);
		while (e > p && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
			*--e = '\0';
		if (!*p)
			continue;
		snprintf(where, sizeof(where), "%s:%u", path, lineno);
		rc = list_add(l, p, ec, where);
	}
	if (f != stdin)
		fclose(f);
	return rc;
}

/* One publish (or withdrawal) of the whole list: connect, Publish, unregister.  0, 1 (refused), 2. */
static int publish_once(const opts_t *o, SSL_CTX *tls, const list_t *l, uint64_t total, unsigned sweep)
{
	vap_client_t *c = NULL;
	uint64_t stored = 0, t0;
	int rc, ret;
	if ((ret = connect_one(o, tls, &c)))
		return ret;
	t0 = vp_time_mono_ns();
	rc = vap_client_publish(c, o->vservice, o->withdraw ? VAP_OP_WITHDRAW : VAP_OP_ADD, l->ptrs, l->n, l->ranges,
	                        l->nr, &stored);
	{
		double s = (double)(vp_time_mono_ns() - t0) / 1e9;
		if (sweep)
			printf("sweep %u: ", sweep);
		printf("%s %" PRIu64 " of %" PRIu64 " numbers vservice=%u in %.3f s (%.0f numbers/s)\n",
		       o->withdraw ? "withdrew" : "published", stored, total, o->vservice, s,
		       s > 0 ? (double)stored / s : 0.0);
		fflush(stdout);
	}
	ret = report("publish", rc, c);
	if (!ret)
		ret = report("unregister", vap_client_unregister(c), c);
	vap_client_close(c);
	return ret;
}

static volatile sig_atomic_t refresh_stop;

static void on_refresh_stop(int sig)
{
	(void)sig;
	refresh_stop = 1;
}

/*
 * The call agent's refresh (overview §6.1): the block again every o->refresh_ms, from the start of one sweep
 * to the start of the next, until SIGTERM/SIGINT or o->sweeps.  A sweep that fails is reported and the next
 * one still runs (a server restarting must not end the refresher); one slower than the interval is reported
 * (the registrations may expire before they are refreshed).  0 when every sweep succeeded, else 1 (or 2).
 */
static int publish_refresh(const opts_t *o, SSL_CTX *tls, const list_t *l, uint64_t total)
{
	struct sigaction sa;
	unsigned sweep, failed = 0;
	int worst = 0;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_refresh_stop;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	for (sweep = 1; !refresh_stop; sweep++) {
		uint64_t t0 = vp_time_mono_ns(), el_ms, next;
		int ret = publish_once(o, tls, l, total, sweep);
		if (ret) {
			failed++;
			worst = ret > worst ? ret : worst;
			fprintf(stderr, "vipr-agent: refresh sweep %u failed; the next one starts on time\n", sweep);
		}
		el_ms = (vp_time_mono_ns() - t0) / 1000000u;
		if (el_ms > o->refresh_ms)
			fprintf(stderr,
			        "vipr-agent: refresh sweep %u took %.1f s, longer than --refresh %.1f s: registrations may "
			        "expire before they are refreshed (raise the server's [vipr] store_rate or lifetime, or publish "
			        "fewer numbers per agent)\n", sweep, (double)el_ms / 1000.0, (double)o->refresh_ms / 1000.0);
		if (o->sweeps && sweep >= o->sweeps)
			break;
		next = t0 + o->refresh_ms * 1000000u;
		while (!refresh_stop && vp_time_mono_ns() < next) {
			uint64_t left = next - vp_time_mono_ns();
			struct timespec ts = { 0, (long)(left < 200000000u ? left : 200000000u) };
			nanosleep(&ts, NULL);
		}
	}
	printf("refresh stopped after %u sweeps, %u failed\n", refresh_stop ? sweep - 1 : sweep, failed);
	return failed ? (worst ? worst : 1) : 0;
}

static int cmd_publish(const opts_t *o, SSL_CTX *tls, int argc, char **argv, const vp_e164_conf_t *ec)
{
	list_t l = { 0 };
	uint64_t total = 0;
	int rc = 0, ret = 2;
	if (o->sweeps && !o->refresh_ms) {
		fprintf(stderr, "vipr-agent: publish: --sweeps counts refresh sweeps: give --refresh too\n");
		return 2;
	}
	if (o->refresh_ms && o->withdraw) {
		fprintf(stderr, "vipr-agent: publish: --refresh refreshes registrations; it cannot go with --withdraw\n");
		return 2;
	}
	for (int i = 0; i < argc && !rc; i++)
		rc = list_add(&l, argv[i], ec, "argument");
	if (!rc && o->file)
		rc = read_list_file(&l, o->file, ec);
	if (rc)
		goto out;
	if (l.n + l.nr == 0) {
		fprintf(stderr, "vipr-agent: publish: no numbers given\n");
		goto out;
	}
	l.ptrs = malloc((l.n ? l.n : 1) * sizeof(*l.ptrs));
	if (!l.ptrs)
		goto out;
	for (size_t i = 0; i < l.n; i++)
		l.ptrs[i] = l.nums[i];
	total = l.n;
	for (size_t i = 0; i < l.nr; i++)
		total += vap_range_count(&l.ranges[i]);
	ret = o->refresh_ms ? publish_refresh(o, tls, &l, total) : publish_once(o, tls, &l, total, 0);
out:
	free(l.nums);
	free(l.ptrs);
	free(l.ranges);
	return ret;
}

/* ---- vservice, register, subscribe ------------------------------------------- */

static int cmd_vservice(const opts_t *o, SSL_CTX *tls)
{
	vap_client_t *c = NULL;
	vap_vservice_t vs;
	int ret;
	if (!o->withdraw && o->n_uris == 0) {
		fprintf(stderr, "vipr-agent: vservice: at least one --uri is needed\n");
		return 2;
	}
	memset(&vs, 0, sizeof(vs));
	vs.id = o->vservice;
	vs.op = o->withdraw ? VAP_OP_WITHDRAW : VAP_OP_ADD;
	vs.n_uris = o->n_uris;
	memcpy(vs.uris, o->uris, sizeof(o->uris));
	vs.n_black = o->n_black;
	memcpy(vs.black, o->black, sizeof(o->black));
	vs.n_white = o->n_white;
	memcpy(vs.white, o->white, sizeof(o->white));
	if ((ret = connect_one(o, tls, &c)))
		return ret;
	ret = report("vservice", vap_client_publish_vservice(c, &vs), c);
	if (!ret) {
		printf("vservice %u %s: %zu URIs, %zu blacklisted, %zu whitelisted\n", vs.id,
		       o->withdraw ? "withdrawn" : "published", vs.n_uris, vs.n_black, vs.n_white);
		ret = report("unregister", vap_client_unregister(c), c);
	}
	vap_client_close(c);
	return ret;
}

static int cmd_register(const opts_t *o, SSL_CTX *tls)
{
	vap_client_t *c = NULL;
	int ret = connect_one(o, tls, &c);
	if (ret)
		return ret;
	ret = report("keepalive", vap_client_keepalive(c), c);
	if (!ret)
		ret = report("unregister", vap_client_unregister(c), c);
	if (!ret)
		printf("registered as %s at %s:%u\n", o->user, o->host, o->port);
	vap_client_close(c);
	return ret;
}

/*
 * The client certificate of route \p r (docs/protocol.md §6.1, §8.6) as a PEM file the call can present: the
 * certificate, then the key of --cert-key (the ViPR server's [pvp] client_cert_key), mode 0600.  Refused (0
 * returned, the route keeps its ticket) when the certificate does not parse or is not for that key.  Returns
 * the certificate's notAfter (UTC seconds) and the path in \p path.
 */
static uint64_t save_cert(const opts_t *o, const vap_route_t *r, char *path, size_t cap)
{
	const unsigned char *p = r->cert;
	X509 *x = d2i_X509(NULL, &p, (long)r->cert_len);
	EVP_PKEY *k = NULL;
	FILE *f = NULL;
	uint64_t until = 0;
	unsigned char h[SHA256_DIGEST_LENGTH];
	struct tm tm;
	int fd;
	if ((f = fopen(o->cert_key, "r"))) {
		k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
		fclose(f);
		f = NULL;
	}
	if (!x || p != r->cert + r->cert_len || !k || X509_check_private_key(x, k) != 1 ||
	    !ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm)) {
		fprintf(stderr, "vipr-agent: route %s: client certificate %s; keeping the ticket\n", r->number,
		        !x ? "unreadable" : !k ? "key unreadable (--cert-key)" : "not for --cert-key's key");
		vp_log_warn("vipr-agent", "client_cert_refused", "number=%s key=%s", r->number, o->cert_key);
		goto out;
	}
	SHA256(r->cert, r->cert_len, h);
	snprintf(path, cap, "%s/%s-%02x%02x%02x%02x.pem", o->cert_dir, r->number + 1, h[0], h[1], h[2], h[3]);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) < 0 || !(f = fdopen(fd, "w"))) {
		if (fd >= 0)
			close(fd);
		fprintf(stderr, "vipr-agent: %s: %s\n", path, strerror(errno));
		goto out;
	}
	if (PEM_write_X509(f, x) == 1 && PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) == 1 && fclose(f) == 0)
		until = (uint64_t)timegm(&tm);
	else
		unlink(path);
	f = NULL;
out:
	if (f)
		fclose(f);
	X509_free(x);
	EVP_PKEY_free(k);
	return until;
}

static int cmd_subscribe(const opts_t *o, SSL_CTX *tls)
{
	vap_client_t *c = NULL;
	uint64_t end = o->duration > 0 ? vp_time_mono_ns() + (uint64_t)(o->duration * 1e9) : 0;
	long got = 0;
	int ret = connect_one(o, tls, &c);
	if (ret)
		return ret;
	if ((ret = report("subscribe", vap_client_subscribe(c, o->vservice, 3600), c)))
		goto out;
	fprintf(stderr, "subscribed to vservice %u; waiting for routes\n", o->vservice);
	while (o->count <= 0 || got < o->count) {
		vap_route_t r;
		char ticket[2 * 32 + 1];
		int wait = 15000, rc;
		if (end) {
			uint64_t now = vp_time_mono_ns();
			if (now >= end)
				break;
			if ((end - now) / 1000000 < (uint64_t)wait)
				wait = (int)((end - now) / 1000000) + 1;
		}
		rc = vap_client_wait_notify(c, &r, wait);
		if (rc == VP_ETIMEOUT) {
			if ((ret = report("keepalive", vap_client_keepalive(c), c)))
				goto out;
			continue;
		}
		if ((ret = report("notify", rc, c)))
			goto out;
		got++;
		for (size_t i = 0; i < r.ticket_len && i < 32; i++)
			snprintf(ticket + 2 * i, 3, "%02x", r.ticket[i]);
		ticket[2 * (r.ticket_len < 32 ? r.ticket_len : 32)] = '\0';
		char t64[PVP_TICKET_B64_MAX];
		if (pvp_b64url_encode(r.ticket, r.ticket_len, t64, sizeof(t64)) != 0)
			t64[0] = '\0';
		printf("route number=%s vservice=%u expires=%u ticket=%s%s", r.number, r.vservice_id, r.expires, ticket,
		       r.ticket_len > 32 ? "..." : "");
		for (size_t i = 0; i < r.n_uris; i++)
			printf(" uri=%s", r.uris[i]);
		/* what `vipr-agent call --routes` needs: when we learned the route, when it ends (absolute), and the
		 * whole ticket -- or the client certificate, which then stands in for the ticket until it expires */
		uint64_t now = vp_time_wall_ms() / 1000, until = now + r.expires, cert_until = 0;
		char cpath[1024];
		if (r.cert_len && o->cert_dir && o->cert_key)
			cert_until = save_cert(o, &r, cpath, sizeof(cpath));
		if (cert_until)
			printf(" learned=%" PRIu64 " until=%" PRIu64 " cert=%s\n", now, cert_until < until ? cert_until : until,
			       cpath);
		else
			printf(" learned=%" PRIu64 " until=%" PRIu64 " ticket64=%s\n", now, until, t64);
		fflush(stdout);
	}
	ret = report("unregister", vap_client_unregister(c), c);
out:
	vap_client_close(c);
	return ret;
}

/* ---- upload -------------------------------------------------------------------- */

static int parse_time(const char *s, uint64_t *ms)
{
	struct tm tm;
	char *end;
	unsigned long long v;
	int frac = 0;
	memset(&tm, 0, sizeof(tm));
	if (!*s)
		return VP_EMALFORMED;
	v = strtoull(s, &end, 10);
	if (*end == '\0') {
		*ms = v;
		return 0;
	}
	end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!end)
		return VP_EMALFORMED;
	if (*end == '.') {
		int digits = 0;
		end++;
		while (*end >= '0' && *end <= '9') {
			if (digits < 3) {
				frac = frac * 10 + (*end - '0');
				digits++;
			}
			end++;
		}
		while (digits++ < 3)
			frac *= 10;
	}
	if (strcmp(end, "Z"))
		return VP_EMALFORMED;
	*ms = (uint64_t)timegm(&tm) * 1000u + (uint64_t)frac;
	return 0;
}

static char *field(char **p)
{
	char *s = *p, *c;
	if (!s)
		return NULL;
	c = strchr(s, ',');
	if (c) {
		*c = '\0';
		*p = c + 1;
	} else {
		*p = NULL;
	}
	while (*s == ' ')
		s++;
	c = s + strlen(s);
	while (c > s && (c[-1] == ' ' || c[-1] == '\r' || c[-1] == '\n'))
		*--c = '\0';
	return s;
}

static int cmd_upload(const opts_t *o, SSL_CTX *tls, const char *path, const vp_e164_conf_t *ec)
{
	enum { BATCH = 32 };        /* records per UploadVCR: about 1.6 KB */
	FILE *f = strcmp(path, "-") ? fopen(path, "r") : stdin;
	vap_client_t *c = NULL;
	vap_vcr_t v[BATCH];
	size_t nb = 0, total = 0;
	unsigned lineno = 0;
	char line[512];
	int ret = 2, rc;
	if (!f) {
		fprintf(stderr, "vipr-agent: %s: %s\n", path, strerror(errno));
		return 2;
	}
	if ((ret = connect_one(o, tls, &c)))
		goto out;
	ret = 0;
	while (fgets(line, sizeof(line), f)) {
		char *p = line, *dir, *called, *caller, *start, *stop;
		vap_vcr_t *r = &v[nb];
		lineno++;
		if (line[0] == '#' || line[strspn(line, " \r\n")] == '\0')
			continue;
		dir = field(&p);
		called = field(&p);
		caller = field(&p);
		start = field(&p);
		stop = field(&p);
		if (lineno == 1 && dir && !strcmp(dir, "direction"))
			continue;   /* header line */
		memset(r, 0, sizeof(*r));
		if (!stop || p) {
			fprintf(stderr, "vipr-agent: %s:%u: expected 5 columns\n", path, lineno);
			ret = 2;
			goto out;
		}
		if (!strcmp(dir, "orig") || !strcmp(dir, "originating"))
			r->direction = VAP_DIR_ORIGINATING;
		else if (!strcmp(dir, "term") || !strcmp(dir, "terminating"))
			r->direction = VAP_DIR_TERMINATING;
		if (!r->direction || vp_e164_normalize(called, ec, r->called) ||
		    (*caller && vp_e164_normalize(caller, ec, r->caller)) ||
		    parse_time(start, &r->start_ms) || parse_time(stop, &r->stop_ms) ||
		    r->stop_ms < r->start_ms) {
			fprintf(stderr, "vipr-agent: %s:%u: bad call record\n", path, lineno);
			ret = 2;
			goto out;
		}
		if (++nb == BATCH) {
			if ((ret = report("upload", vap_client_upload(c, v, nb), c)))
				goto out;
			total += nb;
			nb = 0;
		}
	}
	if (nb) {
		if ((ret = report("upload", vap_client_upload(c, v, nb), c)))
			goto out;
		total += nb;
	}
	printf("uploaded %zu call records\n", total);
	ret = report("unregister", vap_client_unregister(c), c);
out:
	if (f != stdin)
		fclose(f);
	vap_client_close(c);
	return ret;
	(void)rc;
}

/* ---- load generator ------------------------------------------------------------ */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

typedef struct lagent {
	vap_client_t *c;
	uint64_t sent_ns[LOAD_WINDOW];  /* FIFO of send times: answers come in order */
	unsigned head, n;
} lagent_t;

/* Read every answer that is ready on agent \p a; VP_E* on a broken connection. */
static int load_drain(lagent_t *a, uint64_t *lat, size_t lat_cap, size_t *nlat,
                      uint64_t *ok, uint64_t *limited, uint64_t *failed)
{
	while (a->n) {
		uint8_t tid[VAP_TID_LEN];
		int rc = vap_client_recv_answer(a->c, tid, 0);
		if (rc == VP_ETIMEOUT)
			return 0;
		if (rc != 0 && rc != VP_ERATELIMIT && rc != VP_EBUSY && rc != VP_EVAP_REJECTED &&
		    rc != VP_EVAP_UNKNOWN_ATTR)
			return rc;
		if (*nlat < lat_cap)
			lat[(*nlat)++] = vp_time_mono_ns() - a->sent_ns[a->head];
		a->head = (a->head + 1) % LOAD_WINDOW;
		a->n--;
		if (rc == 0)
			(*ok)++;
		else if (rc == VP_ERATELIMIT || rc == VP_EBUSY)
			(*limited)++;
		else
			(*failed)++;
	}
	return 0;
}

static int cmd_load(const opts_t *o, SSL_CTX *tls)
{
	lagent_t *ag = calloc(o->agents, sizeof(*ag));
	struct epoll_event *evs = calloc(o->agents, sizeof(*evs));
	size_t lat_cap = (size_t)(o->rate * o->duration) + 1024, nlat = 0;
	uint64_t *lat = malloc(lat_cap * sizeof(*lat));
	uint64_t sent = 0, ok = 0, limited = 0, failed = 0, t0, tend, next_report;
	unsigned rr = 0, outstanding = 0;
	int ret = 1, epfd = epoll_create1(EPOLL_CLOEXEC);
	char name[VAP_MAX_USERNAME + 1], pw[256];
	if (!ag || !evs || !lat || epfd < 0)
		goto out;
	for (unsigned i = 0; i < o->agents; i++) {
		vap_client_conf_t cc;
		struct epoll_event ev = { .events = EPOLLIN };
		int rc;
		snprintf(name, sizeof(name), "%s%u", o->user, i);
		conf_for(o, tls, name, pw, sizeof(pw), &cc);
		if ((rc = vap_client_connect(&cc, &ag[i].c))) {
			fprintf(stderr, "vipr-agent: load: agent %s: %s\n", name, vp_strerror(rc));
			goto out;
		}
		ev.data.u32 = i;
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, vap_client_fd(ag[i].c), &ev))
			goto out;
	}
	fprintf(stderr, "load: %u agents registered; %.0f uploads/s for %.1f s\n", o->agents, o->rate, o->duration);
	t0 = vp_time_mono_ns();
	tend = t0 + (uint64_t)(o->duration * 1e9);
	next_report = t0 + 1000000000ull;
	for (;;) {
		uint64_t now = vp_time_mono_ns();
		uint64_t due = now < tend ? (uint64_t)((double)(now - t0) * 1e-9 * o->rate)
		                          : (uint64_t)(o->rate * o->duration);
		int n;
		/* Send what is due, round-robin over agents with room in their window. */
		for (unsigned tries = 0; sent < due && tries < o->agents; tries++) {
			lagent_t *a = &ag[rr];
			vap_vcr_t v = { .direction = VAP_DIR_ORIGINATING };
			uint8_t tid[VAP_TID_LEN];
			rr = (rr + 1) % o->agents;
			if (a->n == LOAD_WINDOW)
				continue;
			v.stop_ms = vp_time_wall_ms();
			v.start_ms = v.stop_ms - 60000;
			snprintf(v.called, sizeof(v.called), "+1408%07" PRIu64, sent % 10000000u);
			snprintf(v.caller, sizeof(v.caller), "+1650%07u", rr);
			if (vap_client_send_upload(a->c, &v, 1, tid)) {
				failed++;
				continue;
			}
			a->sent_ns[(a->head + a->n) % LOAD_WINDOW] = vp_time_mono_ns();
			a->n++;
			outstanding++;
			sent++;
			tries = 0;
		}
		if (now >= tend && outstanding == 0)
			break;
		if (now >= tend + 10000000000ull) {
			fprintf(stderr, "load: %u answers missing after 10 s\n", outstanding);
			failed += outstanding;
			break;
		}
		n = epoll_wait(epfd, evs, (int)o->agents, 1);
		for (int k = 0; k < n; k++) {
			lagent_t *a = &ag[evs[k].data.u32];
			unsigned before = a->n;
			int rc = load_drain(a, lat, lat_cap, &nlat, &ok, &limited, &failed);
			outstanding -= before - a->n;
			if (rc) {
				fprintf(stderr, "vipr-agent: load: agent %u: %s\n", evs[k].data.u32, vp_strerror(rc));
				failed += outstanding;
				goto out_report;
			}
		}
		if (now >= next_report) {
			fprintf(stderr, "load: t=%.0fs sent=%" PRIu64 " ok=%" PRIu64 " limited=%" PRIu64 " failed=%" PRIu64 "\n",
			        (double)(now - t0) / 1e9, sent, ok, limited, failed);
			next_report += 1000000000ull;
		}
	}
out_report:
	{
		double s = (double)(vp_time_mono_ns() - t0) / 1e9;
		qsort(lat, nlat, sizeof(*lat), cmp_u64);
		printf("load agents=%u sent=%" PRIu64 " ok=%" PRIu64 " rate_limited=%" PRIu64 " failed=%" PRIu64
		       " seconds=%.2f achieved=%.0f/s p50=%.3fms p99=%.3fms\n",
		       o->agents, sent, ok, limited, failed, s, s > 0 ? (double)ok / s : 0.0,
		       nlat ? (double)lat[nlat / 2] / 1e6 : 0.0,
		       nlat ? (double)lat[nlat * 99 / 100] / 1e6 : 0.0);
		ret = failed ? 1 : 0;
	}
out:
	if (ag)
		for (unsigned i = 0; i < o->agents; i++)
			vap_client_close(ag[i].c);
	if (epfd >= 0)
		close(epfd);
	free(ag);
	free(evs);
	free(lat);
	return ret;
}

/* ---- main ------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "server", required_argument, NULL, 's' },
		{ "user", required_argument, NULL, 'u' },
		{ "password", required_argument, NULL, 'p' },
		{ "tls", no_argument, NULL, 1 },
		{ "ca", required_argument, NULL, 2 },
		{ "tls-name", required_argument, NULL, 3 },
		{ "country", required_argument, NULL, 'c' },
		{ "vservice", required_argument, NULL, 'V' },
		{ "withdraw", no_argument, NULL, 4 },
		{ "file", required_argument, NULL, 'f' },
		{ "uri", required_argument, NULL, 5 },
		{ "black", required_argument, NULL, 6 },
		{ "white", required_argument, NULL, 7 },
		{ "count", required_argument, NULL, 8 },
		{ "duration", required_argument, NULL, 9 },
		{ "agents", required_argument, NULL, 10 },
		{ "rate", required_argument, NULL, 11 },
		{ "fingerprint", no_argument, NULL, 12 },
		{ "window", required_argument, NULL, 13 },
		{ "retries", required_argument, NULL, 14 },
		{ "timeout", required_argument, NULL, 15 },
		{ "cert-dir", required_argument, NULL, 16 },
		{ "cert-key", required_argument, NULL, 17 },
		{ "refresh", required_argument, NULL, 18 },
		{ "sweeps", required_argument, NULL, 19 },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	opts_t o;
	vp_e164_conf_t ec;
	SSL_CTX *tls = NULL;
	const char *cmd, *server = "127.0.0.1:5349";
	int ch, ret;

	memset(&o, 0, sizeof(o));
	o.user = "agent";
	o.password = getenv("VIPR_AGENT_PASSWORD");
	o.vservice = 1;
	o.timeout_ms = 10000;
	o.agents = 10;
	o.rate = 1000;
	o.duration = 10;
	o.window = 4;
	o.retries = 5;
	vp_log_setup(VP_LOG_WARN, NULL);
	if (argc > 1 && !strcmp(argv[1], "call")) /* no VAP server involved: its own options */
		return vipr_agent_call_main(argc - 1, argv + 1);
	while ((ch = getopt_long(argc, argv, "s:u:p:c:V:f:vh", lopts, NULL)) != -1) {
		switch (ch) {
		case 's': server = optarg; break;
		case 'u': o.user = optarg; break;
		case 'p': o.password = optarg; break;
		case 1: o.tls = true; break;
		case 2: o.ca = optarg; break;
		case 3: o.tls_name = optarg; break;
		case 'c': o.country = optarg; break;
		case 'V': o.vservice = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 4: o.withdraw = true; break;
		case 'f': o.file = optarg; break;
		case 5:
			if (o.n_uris == VAP_MAX_URIS) { fprintf(stderr, "vipr-agent: at most %d --uri\n", VAP_MAX_URIS); return 2; }
			o.uris[o.n_uris++] = optarg;
			break;
		case 6:
			if (o.n_black == VAP_MAX_LIST) { fprintf(stderr, "vipr-agent: too many --black\n"); return 2; }
			o.black[o.n_black++] = optarg;
			break;
		case 7:
			if (o.n_white == VAP_MAX_LIST) { fprintf(stderr, "vipr-agent: too many --white\n"); return 2; }
			o.white[o.n_white++] = optarg;
			break;
		case 8: o.count = strtol(optarg, NULL, 10); break;
		case 9: o.duration = strtod(optarg, NULL); break;
		case 10: o.agents = (unsigned)strtoul(optarg, NULL, 10); break;
		case 11: o.rate = strtod(optarg, NULL); break;
		case 12: o.fingerprint = true; break;
		case 13: o.window = (unsigned)strtoul(optarg, NULL, 10); break;
		case 14: o.retries = (unsigned)strtoul(optarg, NULL, 10); break;
		case 15: o.timeout_ms = (int)strtol(optarg, NULL, 10); break;
		case 16: o.cert_dir = optarg; break;
		case 17: o.cert_key = optarg; break;
		case 18:
			if (vp_duration_parse_ms(optarg, &o.refresh_ms) || !o.refresh_ms) {
				fprintf(stderr, "vipr-agent: bad --refresh '%s' (a duration: 500ms, 30s, 12h, 1d)\n", optarg);
				return 2;
			}
			break;
		case 19: {
			char *end;
			unsigned long v = strtoul(optarg, &end, 10);
			if (*end || !*optarg || !v || v > 1000000) {
				fprintf(stderr, "vipr-agent: bad --sweeps '%s' (1..1000000)\n", optarg);
				return 2;
			}
			o.sweeps = (unsigned)v;
			break;
		}
		case 'v': vp_log_setup(VP_LOG_DEBUG, NULL); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	cmd = argv[optind++];
	/* HOST:PORT, or [v6]:PORT. */
	if (vp_net_split_hostport(server, true, o.host, sizeof(o.host), &o.port) || o.port == 0) {
		fprintf(stderr, "vipr-agent: bad --server '%s' (HOST:PORT or [V6]:PORT, port 1-65535)\n", server);
		return 2;
	}
	if (!o.password) {
		fprintf(stderr, "vipr-agent: no password: use -p or VIPR_AGENT_PASSWORD\n");
		return 2;
	}
	if (o.agents == 0 || o.rate <= 0 || o.duration <= 0) {
		fprintf(stderr, "vipr-agent: --agents, --rate and --duration must be positive\n");
		return 2;
	}
	if (vp_e164_conf_init(&ec, o.country)) {
		fprintf(stderr, "vipr-agent: bad --country '%s'\n", o.country);
		return 2;
	}
	if (o.tls && !(tls = make_tls(&o)))
		return 2;
	if (!o.cert_dir != !o.cert_key) {
		fprintf(stderr, "vipr-agent: --cert-dir and --cert-key go together\n");
		return 2;
	}
	if (!strcmp(cmd, "register"))
		ret = cmd_register(&o, tls);
	else if (!strcmp(cmd, "publish"))
		ret = cmd_publish(&o, tls, argc - optind, argv + optind, &ec);
	else if (!strcmp(cmd, "vservice"))
		ret = cmd_vservice(&o, tls);
	else if (!strcmp(cmd, "upload") && optind < argc)
		ret = cmd_upload(&o, tls, argv[optind], &ec);
	else if (!strcmp(cmd, "subscribe"))
		ret = cmd_subscribe(&o, tls);
	else if (!strcmp(cmd, "load"))
		ret = cmd_load(&o, tls);
	else {
		usage(stderr);
		ret = 2;
	}
	SSL_CTX_free(tls);
	return ret;
}
