/*
 * control/tools/vipr_enroll.c - `vipr-enroll`: the overlay's enrollment CA and configuration server
 * (RFC 6940 §11), and the node-side client commands that use them.
 *
 *   vipr-enroll [--dir DIR] [--config FILE] [--set section.key=value]... COMMAND [ARGS]
 *     init                      CA, configuration signer, HTTPS server key, first signed document
 *     passwd USER               a credentials-file line for USER (password read from stdin)
 *     issue --csr FILE --user U [--nodeids N] [--out FILE]     offline issue
 *     revoke NODE-ID            put NODE-ID on the document's bad-node list (sequence + 1, re-signed)
 *     serve                     HTTPS: GET /.well-known/reload-config, POST /enroll
 *     fetch --url URL (--anchor ROOT.pem | --anchor-fp HEX) [--cacert PEM] [--current FILE] [--out FILE]
 *     enroll --url URL --cacert PEM --overlay NAME (--user U --password-file F [--nodeids N] |
 *            --renew --cert OLD.pem --old-key OLD.key) --key KEY.out --out CERT.out
 *     check-peer --doc FILE --anchor ROOT.pem CERT.pem
 *
 * The HTTPS server is libmicrohttpd (TLS through GnuTLS): a maintained, small, embeddable server with a
 * form-data post processor, so no HTTP or form parser is written here. Exit status: 0 ok, 1 refused, 2 usage
 * or local error. docs/protocol.md §9, README "Enrollment".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <gnutls/gnutls.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "common/conf.h"
#include "common/errcode.h"
#include "common/hex.h"
#include "common/log.h"
#include "control/node/ca.h"
#include "control/node/enroll.h"
#include "control/node/overlay_doc.h"

#define ENROLL_PATH "/enroll"
#define MAX_FIELD 16384      /* one form field (a CSR is ~0.5-1.5 KiB base64) */
#define MAX_BODY 65536       /* a whole POST body */
#define PBKDF2_ITER 20000u   /* ~10 ms per check here: slows offline guessing, cheap per request */
#define RATE_SLOTS 1024      /* client addresses tracked by the rate limiter */

/* ---- configuration schema ---- */

typedef struct enroll_conf {
	char overlay[CA_OVERLAY_MAX + 1];
	unsigned ca_key_type;
	uint32_t ca_lifetime_s;
	uint32_t cert_lifetime_s;
	uint32_t max_node_ids;
	unsigned node_key_type;
	char listen[128];
	char server_name[CA_OVERLAY_MAX + 1];
	char url[512];
	char credentials[1024];
	uint32_t rate_per_min;
	uint32_t rate_burst;
	uint32_t max_message_size, initial_ttl, chord_update_s, chord_ping_s;
	bool chord_reactive;
	char bootstrap[1024];
	uint32_t vipr_kind_id, vipr_max_count, vipr_max_size, vipr_quota, vipr_min_lifetime_s,
	         vipr_max_lifetime_s;
} enroll_conf_t;

static const char *const node_key_names[] = { "any", "ecdsa-p256", "rsa-2048", NULL };

static const vp_conf_opt_t opts[] = {
	{ .section = "overlay", .key = "name", .type = VP_CONF_STR, .doc = "overlay instance-name (a DNS name); "
	  "required by init", VP_CONF_AT(enroll_conf_t, overlay), .flags = VP_CONF_F_OVERLAY },
	{ .section = "ca", .key = "key_type", .type = VP_CONF_ENUM, .def = "ecdsa-p256",
	  .choices = ca_key_type_names, .doc = "key of the CA, the configuration signer and the HTTPS server "
	  "(init)", VP_CONF_AT(enroll_conf_t, ca_key_type) },
	{ .section = "ca", .key = "lifetime", .type = VP_CONF_DUR_S, .min = 86400000ull,
	  .max = 36500ull * 86400000ull, .def = "3650d", .doc = "validity of the CA certificate (init)",
	  VP_CONF_AT(enroll_conf_t, ca_lifetime_s) },
	{ .section = "enroll", .key = "cert_lifetime", .type = VP_CONF_DUR_S, .min = 60000ull,
	  .max = 825ull * 86400000ull, .def = "30d", .doc = "validity of issued node certificates; renew before "
	  "it ends to keep the Node-IDs", VP_CONF_AT(enroll_conf_t, cert_lifetime_s) },
	{ .section = "enroll", .key = "max_node_ids", .type = VP_CONF_U32, .min = 1, .max = CA_MAX_NODE_IDS,
	  .def = "8", .unit = "Node-IDs", .doc = "most Node-IDs one certificate may carry (a request for more is "
	  "refused)", VP_CONF_AT(enroll_conf_t, max_node_ids) },
	{ .section = "enroll", .key = "node_key_type", .type = VP_CONF_ENUM, .def = "any", .choices = node_key_names,
	  .doc = "keys accepted in requests: any (P-256 or RSA 2048-4096), ecdsa-p256, rsa-2048",
	  VP_CONF_AT(enroll_conf_t, node_key_type) },
	{ .section = "enroll", .key = "listen", .type = VP_CONF_STR, .def = "127.0.0.1:8443",
	  .doc = "address:port of the HTTPS server (port 0: any, printed at start)",
	  VP_CONF_AT(enroll_conf_t, listen) },
	{ .section = "enroll", .key = "server_name", .type = VP_CONF_STR, .def = "localhost",
	  .doc = "DNS name in the HTTPS server's certificate (init)", VP_CONF_AT(enroll_conf_t, server_name) },
	{ .section = "enroll", .key = "url", .type = VP_CONF_STR, .doc = "enrollment-server URL written in the "
	  "document (init; default https://<server_name>:8443/enroll)", VP_CONF_AT(enroll_conf_t, url),
	  .flags = VP_CONF_F_OVERLAY },
	{ .section = "enroll", .key = "credentials", .type = VP_CONF_STR, .def = "credentials",
	  .doc = "credentials file (lines from `vipr-enroll passwd`), relative to --dir",
	  VP_CONF_AT(enroll_conf_t, credentials) },
	{ .section = "enroll", .key = "rate", .type = VP_CONF_U32, .min = 1, .max = 1000000, .def = "60",
	  .unit = "requests/min", .doc = "enrollment requests per client address per minute",
	  VP_CONF_AT(enroll_conf_t, rate_per_min) },
	{ .section = "enroll", .key = "burst", .type = VP_CONF_U32, .min = 1, .max = 100000, .def = "10",
	  .unit = "requests", .doc = "requests a client address may make at once before the rate applies",
	  VP_CONF_AT(enroll_conf_t, rate_burst) },
	{ .section = "overlay", .key = "max_message_size", .type = VP_CONF_U32, .min = 1024, .max = 65536,
	  .def = "65536", .unit = "bytes", .doc = "max-message-size", VP_CONF_AT(enroll_conf_t, max_message_size),
	  .flags = VP_CONF_F_OVERLAY },
	{ .section = "overlay", .key = "initial_ttl", .type = VP_CONF_U32, .min = 1, .max = 255, .def = "100",
	  .unit = "hops", .doc = "initial-ttl", VP_CONF_AT(enroll_conf_t, initial_ttl), .flags = VP_CONF_F_OVERLAY },
	{ .section = "overlay", .key = "chord_update_interval", .type = VP_CONF_DUR_S, .min = 1000,
	  .max = 86400000ull, .def = "600s", .doc = "chord-update-interval", VP_CONF_AT(enroll_conf_t, chord_update_s),
	  .flags = VP_CONF_F_OVERLAY },
	{ .section = "overlay", .key = "chord_ping_interval", .type = VP_CONF_DUR_S, .min = 1000,
	  .max = 86400000ull, .def = "3600s", .doc = "chord-ping-interval", VP_CONF_AT(enroll_conf_t, chord_ping_s),
	  .flags = VP_CONF_F_OVERLAY },
	{ .section = "overlay", .key = "chord_reactive", .type = VP_CONF_BOOL, .def = "true",
	  .doc = "chord-reactive", VP_CONF_AT(enroll_conf_t, chord_reactive), .flags = VP_CONF_F_OVERLAY },
	{ .section = "overlay", .key = "bootstrap", .type = VP_CONF_STR, .doc = "bootstrap peers, "
	  "\"addr:port, addr:port\"", VP_CONF_AT(enroll_conf_t, bootstrap), .flags = VP_CONF_F_OVERLAY },
	{ .section = "vipr", .key = "kind_id", .type = VP_CONF_U32, .min = 1, .max = UINT32_MAX,
	  .def = "0xF0000100", .doc = "Kind-ID of VIPR-REGISTRATION", VP_CONF_AT(enroll_conf_t, vipr_kind_id),
	  .flags = VP_CONF_F_OVERLAY },
	{ .section = "vipr", .key = "max_count", .type = VP_CONF_U32, .min = 1, .max = 65536, .def = "64",
	  .unit = "entries", .doc = "claimants per number", VP_CONF_AT(enroll_conf_t, vipr_max_count),
	  .flags = VP_CONF_F_OVERLAY },
	{ .section = "vipr", .key = "max_size", .type = VP_CONF_U32, .min = 23, .max = 65536, .def = "278",
	  .unit = "bytes", .doc = "largest ViPR value", VP_CONF_AT(enroll_conf_t, vipr_max_size),
	  .flags = VP_CONF_F_OVERLAY },
	{ .section = "vipr", .key = "quota", .type = VP_CONF_U32, .max = UINT32_MAX, .def = "10000",
	  .unit = "entries", .doc = "proportional quota Q per Node-ID (0 = none)",
	  VP_CONF_AT(enroll_conf_t, vipr_quota), .flags = VP_CONF_F_OVERLAY },
	{ .section = "vipr", .key = "min_lifetime", .type = VP_CONF_DUR_S, .min = 1000, .max = 86400000ull,
	  .def = "60s", .doc = "shortest registration lifetime", VP_CONF_AT(enroll_conf_t, vipr_min_lifetime_s),
	  .flags = VP_CONF_F_OVERLAY },
	{ .section = "vipr", .key = "max_lifetime", .type = VP_CONF_DUR_S, .min = 60000, .max = 30ull * 86400000ull,
	  .def = "48h", .doc = "longest registration lifetime", VP_CONF_AT(enroll_conf_t, vipr_max_lifetime_s),
	  .flags = VP_CONF_F_OVERLAY },
};

/* ---- small helpers ---- */

static const char *g_dir = ".";

static void path_in(char *out, size_t cap, const char *name)
{
	if (name[0] == '/')
		snprintf(out, cap, "%s", name);
	else
		snprintf(out, cap, "%s/%s", g_dir, name);
}

static int read_file(const char *path, char **out, size_t *len, size_t max)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t n = 0, cap = 0;
	if (!f)
		return VP_EIO;
	for (;;) {
		if (n + 4096 + 1 > cap) {
			char *p;
			cap = cap ? cap * 2 : 8192;
			if (cap > max + 4097) {
				free(buf);
				fclose(f);
				return VP_ETOOBIG;
			}
			p = realloc(buf, cap);
			if (!p) {
				free(buf);
				fclose(f);
				return VP_ENOMEM;
			}
			buf = p;
		}
		size_t r = fread(buf + n, 1, 4096, f);
		n += r;
		if (r < 4096)
			break;
	}
	fclose(f);
	if (n > max) {
		free(buf);
		return VP_ETOOBIG;
	}
	buf[n] = 0;
	*out = buf;
	*len = n;
	return 0;
}

static int write_file(const char *path, const char *data, size_t len, mode_t mode)
{
	char tmp[4096];
	int fd;
	snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return VP_EIO;
	if (write(fd, data, len) != (ssize_t)len || fsync(fd) != 0) {
		close(fd);
		unlink(tmp);
		return VP_EIO;
	}
	close(fd);
	return rename(tmp, path) == 0 ? 0 : VP_EIO;
}

static int die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int die(int code, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "vipr-enroll: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return code;
}

static void id_hex(const vp_id_t *id, char out[VP_ID_HEX_LEN + 1])
{
	vp_hex_encode(id->b, VP_ID_LEN, out, VP_ID_HEX_LEN + 1);
}

/* The overlay name of DIR/config.xml (its first configuration). */
static int dir_overlay(char *out, size_t cap)
{
	char path[4096], why[OD_WHY_MAX], *xml = NULL;
	size_t len = 0;
	od_doc_t *doc = NULL;
	int rc;
	path_in(path, sizeof(path), "config.xml");
	if ((rc = read_file(path, &xml, &len, OD_MAX_DOC)))
		return die(2, "cannot read %s: %s", path, vp_strerror(rc));
	rc = od_parse(xml, len, NULL, &doc, why);
	free(xml);
	if (rc)
		return die(2, "%s: %s", path, why);
	rc = strlen(doc->instance_name) < cap ? 0 : die(2, "%s: instance-name too long", path);
	if (!rc)
		memcpy(out, doc->instance_name, strlen(doc->instance_name) + 1);
	od_doc_free(doc);
	return rc;
}

static int load_ca(ca_t **ca)
{
	char overlay[CA_OVERLAY_MAX + 1], cp[4096], kp[4096];
	int rc = dir_overlay(overlay, sizeof(overlay));
	if (rc)
		return rc;
	path_in(cp, sizeof(cp), "ca.pem");
	path_in(kp, sizeof(kp), "ca.key");
	rc = ca_load(overlay, cp, kp, ca);
	return rc ? die(2, "cannot load the CA from %s: %s", g_dir, vp_strerror(rc)) : 0;
}

/* ---- init ---- */

static int parse_bootstrap(const char *list, od_bootstrap_t *out, size_t cap, size_t *n)
{
	char buf[1024], *save = NULL;
	*n = 0;
	snprintf(buf, sizeof(buf), "%s", list);
	for (char *tok = strtok_r(buf, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
		char *colon = strrchr(tok, ':');
		long port;
		char *end;
		if (!colon || *n == cap)
			return VP_ECONFIG;
		*colon = 0;
		port = strtol(colon + 1, &end, 10);
		if (*end || port < 1 || port > 65535 || !tok[0] || strlen(tok) >= sizeof(out->address))
			return VP_ECONFIG;
		if (tok[0] == '[' && tok[strlen(tok) - 1] == ']') {
			tok[strlen(tok) - 1] = 0;
			tok++;
		}
		snprintf(out[*n].address, sizeof(out[*n].address), "%s", tok);
		out[*n].port = (uint16_t)port;
		(*n)++;
	}
	return 0;
}

static int cmd_init(const enroll_conf_t *c)
{
	char path[4096], kp[4096], hex[VP_ID_HEX_LEN + 1], url[600], *xml = NULL, *signed_xml = NULL;
	size_t len = 0, slen = 0, n_boot = 0;
	uint8_t fp[32];
	char fph[65];
	od_bootstrap_t boot[OD_MAX_BOOTSTRAP];
	EVP_PKEY *skey = NULL, *hkey = NULL;
	X509 *scert = NULL, *hcert = NULL, *root;
	vp_id_t signer_id;
	ca_t *ca = NULL;
	char user[CA_USER_MAX + 32];
	int rc, ret = 2;

	if (!c->overlay[0])
		return die(2, "init: set the overlay name ([overlay] name, e.g. --set overlay.name=vipr.example.net)");
	if (parse_bootstrap(c->bootstrap, boot, OD_MAX_BOOTSTRAP, &n_boot))
		return die(2, "init: [overlay] bootstrap: expected \"addr:port, addr:port\"");
	path_in(path, sizeof(path), "ca.key");
	if (access(path, F_OK) == 0)
		return die(2, "init: %s exists: refusing to replace an overlay's CA", path);
	if (mkdir(g_dir, 0700) != 0 && errno != EEXIST)
		return die(2, "init: cannot create %s: %s", g_dir, strerror(errno));
	if ((rc = ca_create(c->overlay, (ca_key_type_t)c->ca_key_type, c->ca_lifetime_s, &ca))) {
		die(2, "init: cannot create the CA: %s", vp_strerror(rc));
		goto finish;
	}
	root = ca_cert(ca);
	/* the configuration signer: a node-profile certificate with one random Node-ID */
	snprintf(user, sizeof(user), "config-signer@%s", c->overlay);
	if ((rc = ca_key_generate((ca_key_type_t)c->ca_key_type, &skey)) || (rc = ca_random_node_ids(&signer_id, 1))) {
		die(2, "init: key generation failed: %s", vp_strerror(rc));
		goto finish;
	}
	{
		ca_issue_params_t p = { .user = user, .ids = &signer_id, .n_ids = 1, .lifetime_s = c->ca_lifetime_s };
		if ((rc = ca_issue_key(ca, skey, &p, &scert))) {
			die(2, "init: cannot issue the signer certificate: %s", vp_strerror(rc));
			goto finish;
		}
	}
	if ((rc = ca_key_generate((ca_key_type_t)c->ca_key_type, &hkey)) ||
	    (rc = ca_issue_server(ca, hkey, c->server_name, c->ca_lifetime_s, &hcert))) {
		die(2, "init: cannot make the HTTPS server certificate: %s", vp_strerror(rc));
		goto finish;
	}
	path_in(path, sizeof(path), "ca.pem");
	path_in(kp, sizeof(kp), "ca.key");
	if ((rc = ca_write_cert(path, root)) || (rc = ca_write_key(kp, ca_key(ca))))
		goto io;
	path_in(path, sizeof(path), "signer.pem");
	path_in(kp, sizeof(kp), "signer.key");
	if ((rc = ca_write_cert(path, scert)) || (rc = ca_write_key(kp, skey)))
		goto io;
	path_in(path, sizeof(path), "server.pem");
	path_in(kp, sizeof(kp), "server.key");
	if ((rc = ca_write_cert(path, hcert)) || (rc = ca_write_key(kp, hkey)))
		goto io;
	if (c->url[0])
		snprintf(url, sizeof(url), "%s", c->url);
	else
		snprintf(url, sizeof(url), "https://%s:8443" ENROLL_PATH, c->server_name);
	{
		od_build_params_t b = {
			.instance = c->overlay, .sequence = 1, .roots = &root, .n_roots = 1, .enrollment_server = url,
			.config_signers = &signer_id, .n_config_signers = 1, .bootstrap = boot, .n_bootstrap = n_boot,
			.max_message_size = c->max_message_size, .initial_ttl = c->initial_ttl,
			.chord_update_interval = c->chord_update_s, .chord_ping_interval = c->chord_ping_s,
			.chord_reactive = c->chord_reactive, .vipr_kind_id = c->vipr_kind_id,
			.vipr_max_count = c->vipr_max_count, .vipr_max_size = c->vipr_max_size,
			.vipr_quota = c->vipr_quota, .vipr_min_lifetime = c->vipr_min_lifetime_s,
			.vipr_max_lifetime = c->vipr_max_lifetime_s,
		};
		if ((rc = od_build(&b, &xml, &len)) || (rc = od_sign(xml, len, NULL, skey, scert, &signed_xml, &slen))) {
			die(2, "init: cannot build the configuration document: %s", vp_strerror(rc));
			goto finish;
		}
	}
	path_in(path, sizeof(path), "config.xml");
	if ((rc = write_file(path, signed_xml, slen, 0644)))
		goto io;
	ca_cert_fingerprint(root, fp);
	vp_hex_encode(fp, 32, fph, sizeof(fph));
	id_hex(&signer_id, hex);
	printf("init overlay=%s dir=%s ca_fingerprint=%s config_signer=%s sequence=1\n", c->overlay, g_dir, fph,
	       hex);
	ret = 0;
	goto finish;
io:
	die(2, "init: cannot write into %s: %s", g_dir, vp_strerror(rc));
finish:
	free(xml);
	free(signed_xml);
	EVP_PKEY_free(skey);
	EVP_PKEY_free(hkey);
	X509_free(scert);
	X509_free(hcert);
	ca_free(ca);
	return ret;
}

/* ---- credentials ---- */

/* A line: user:pbkdf2-sha256:ITER:SALT_HEX:HASH_HEX */
typedef struct cred {
	char user[CA_USER_MAX + 1];
	uint32_t iter;
	uint8_t salt[16], hash[32];
} cred_t;

typedef struct creds {
	cred_t *v;
	size_t n;
} creds_t;

static int pbkdf2(const char *pw, const uint8_t salt[16], uint32_t iter, uint8_t out[32])
{
	return PKCS5_PBKDF2_HMAC(pw, (int)strlen(pw), salt, 16, (int)iter, EVP_sha256(), 32, out) == 1
	       ? 0 : VP_ECRYPTO;
}

static int creds_load(const char *path, creds_t *cs)
{
	FILE *f = fopen(path, "r");
	char line[1024];
	int lineno = 0;
	memset(cs, 0, sizeof(*cs));
	if (!f)
		return die(2, "cannot read credentials file %s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		char *save = NULL, *user, *scheme, *iter, *salt, *hash, *end;
		size_t got = 0;
		cred_t c;
		cred_t *nv;
		lineno++;
		line[strcspn(line, "\r\n")] = 0;
		if (!line[0] || line[0] == '#')
			continue;
		user = strtok_r(line, ":", &save);
		scheme = strtok_r(NULL, ":", &save);
		iter = strtok_r(NULL, ":", &save);
		salt = strtok_r(NULL, ":", &save);
		hash = strtok_r(NULL, ":", &save);
		memset(&c, 0, sizeof(c));
		if (!user || !hash || strtok_r(NULL, ":", &save) || strcmp(scheme, "pbkdf2-sha256") ||
		    !ca_user_valid(user))
			goto bad;
		snprintf(c.user, sizeof(c.user), "%s", user);
		c.iter = (uint32_t)strtoul(iter, &end, 10);
		if (*end || c.iter < 1000 || c.iter > 10000000)
			goto bad;
		if (vp_hex_decode(salt, strlen(salt), c.salt, 16, &got) || got != 16 ||
		    vp_hex_decode(hash, strlen(hash), c.hash, 32, &got) || got != 32)
			goto bad;
		nv = realloc(cs->v, (cs->n + 1) * sizeof(*nv));
		if (!nv)
			goto bad;
		cs->v = nv;
		cs->v[cs->n++] = c;
		continue;
bad:
		fclose(f);
		free(cs->v);
		return die(2, "%s line %d: expected user@domain:pbkdf2-sha256:ITER:SALT:HASH (vipr-enroll passwd)",
		           path, lineno);
	}
	fclose(f);
	return 0;
}

/* Constant work whether or not the user exists, so timing does not tell which names are enrolled. */
static bool creds_check(const creds_t *cs, const char *user, const char *pw)
{
	static const uint8_t dummy_salt[16];
	const cred_t *hit = NULL;
	uint8_t h[32];
	for (size_t i = 0; i < cs->n; i++)
		if (!strcmp(cs->v[i].user, user))
			hit = &cs->v[i];
	if (pbkdf2(pw, hit ? hit->salt : dummy_salt, hit ? hit->iter : PBKDF2_ITER, h))
		return false;
	return hit && CRYPTO_memcmp(h, hit->hash, 32) == 0;
}

static int cmd_passwd(int argc, char **argv)
{
	char pw[1024], salt_hex[33], hash_hex[65];
	uint8_t salt[16], hash[32];
	if (argc != 1 || !ca_user_valid(argv[0]))
		return die(2, "usage: vipr-enroll passwd USER@DOMAIN  (password on stdin)");
	if (!fgets(pw, sizeof(pw), stdin))
		return die(2, "passwd: no password on stdin");
	pw[strcspn(pw, "\r\n")] = 0;
	if (strlen(pw) < 8)
		return die(2, "passwd: password shorter than 8 characters");
	if (RAND_bytes(salt, sizeof(salt)) != 1 || pbkdf2(pw, salt, PBKDF2_ITER, hash))
		return die(2, "passwd: crypto failure");
	vp_hex_encode(salt, 16, salt_hex, sizeof(salt_hex));
	vp_hex_encode(hash, 32, hash_hex, sizeof(hash_hex));
	printf("%s:pbkdf2-sha256:%u:%s:%s\n", argv[0], PBKDF2_ITER, salt_hex, hash_hex);
	OPENSSL_cleanse(pw, sizeof(pw));
	return 0;
}

/* ---- issue (offline) ---- */

static unsigned allowed_keys(const enroll_conf_t *c)
{
	return c->node_key_type == 0 ? CA_KEYS_ANY : 1u << (c->node_key_type - 1);
}

static void print_ids(FILE *f, const vp_id_t *ids, size_t n)
{
	char hex[VP_ID_HEX_LEN + 1];
	for (size_t i = 0; i < n; i++) {
		id_hex(&ids[i], hex);
		fprintf(f, "%s%s", i ? "," : "", hex);
	}
}

static int cmd_issue(const enroll_conf_t *c, int argc, char **argv)
{
	const char *csr_path = NULL, *user = NULL, *out = NULL;
	unsigned nodeids = 1;
	char *data = NULL;
	size_t len = 0;
	vp_id_t ids[CA_MAX_NODE_IDS];
	X509_REQ *req = NULL;
	X509 *x = NULL;
	ca_t *ca = NULL;
	int rc, ret = 2;
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--csr") && i + 1 < argc)
			csr_path = argv[++i];
		else if (!strcmp(argv[i], "--user") && i + 1 < argc)
			user = argv[++i];
		else if (!strcmp(argv[i], "--nodeids") && i + 1 < argc)
			nodeids = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--out") && i + 1 < argc)
			out = argv[++i];
		else
			return die(2, "usage: vipr-enroll issue --csr FILE --user USER@DOMAIN [--nodeids N] [--out FILE]");
	}
	if (!csr_path || !user)
		return die(2, "usage: vipr-enroll issue --csr FILE --user USER@DOMAIN [--nodeids N] [--out FILE]");
	if (!ca_user_valid(user))
		return die(2, "issue: user must look like name@domain");
	if (nodeids < 1 || nodeids > c->max_node_ids)
		return die(1, "issue: refused: nodeids must be 1..%u", c->max_node_ids);
	if ((rc = load_ca(&ca)))
		return rc;
	if ((rc = read_file(csr_path, &data, &len, 65536))) {
		die(2, "issue: cannot read %s: %s", csr_path, vp_strerror(rc));
		goto finish;
	}
	if ((rc = ca_csr_parse((const uint8_t *)data, len, &req))) {
		ret = die(1, "issue: refused: malformed PKCS#10 request");
		goto finish;
	}
	if ((rc = ca_csr_check(req, allowed_keys(c)))) {
		ret = die(1, "issue: refused: %s", rc == VP_EAUTH ? "the request's signature does not verify"
		                                                   : "key type not accepted");
		goto finish;
	}
	if ((rc = ca_random_node_ids(ids, nodeids)))
		goto finish;
	{
		ca_issue_params_t p = { .user = user, .ids = ids, .n_ids = nodeids, .lifetime_s = c->cert_lifetime_s };
		if ((rc = ca_issue(ca, req, &p, &x))) {
			die(2, "issue: %s", vp_strerror(rc));
			goto finish;
		}
	}
	if (out) {
		if ((rc = ca_write_cert(out, x))) {
			die(2, "issue: cannot write %s", out);
			goto finish;
		}
	} else {
		PEM_write_X509(stdout, x);
	}
	fprintf(out ? stdout : stderr, "issued user=%s node_ids=", user);
	print_ids(out ? stdout : stderr, ids, nodeids);
	fprintf(out ? stdout : stderr, "\n");
	ret = 0;
finish:
	free(data);
	X509_REQ_free(req);
	X509_free(x);
	ca_free(ca);
	return ret;
}

/* ---- revoke ---- */

static int cmd_revoke(int argc, char **argv)
{
	char path[4096], sp[4096], kp[4096], why[OD_WHY_MAX], *xml = NULL, *out = NULL;
	size_t len = 0, olen = 0, got = 0;
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	od_doc_t *doc = NULL;
	vp_id_t id;
	int rc, ret = 2;
	if (argc != 1 || strlen(argv[0]) != VP_ID_HEX_LEN || vp_hex_decode(argv[0], VP_ID_HEX_LEN, id.b, VP_ID_LEN, &got))
		return die(2, "usage: vipr-enroll revoke NODE-ID (32 hex digits)");
	path_in(path, sizeof(path), "config.xml");
	path_in(sp, sizeof(sp), "signer.pem");
	path_in(kp, sizeof(kp), "signer.key");
	if ((rc = read_file(path, &xml, &len, OD_MAX_DOC)) || (rc = ca_read_cert(sp, &cert)) ||
	    (rc = ca_read_key(kp, &key))) {
		die(2, "revoke: cannot read %s: %s", g_dir, vp_strerror(rc));
		goto finish;
	}
	{
		od_edit_t e = { .add_bad_nodes = &id, .n_add_bad_nodes = 1 };
		if ((rc = od_edit_and_sign(xml, len, NULL, &e, key, cert, &out, &olen))) {
			die(2, "revoke: %s", vp_strerror(rc));
			goto finish;
		}
	}
	if ((rc = od_parse(out, olen, NULL, &doc, why))) {
		die(2, "revoke: the new document does not parse: %s", why);
		goto finish;
	}
	if ((rc = write_file(path, out, olen, 0644))) {
		die(2, "revoke: cannot write %s", path);
		goto finish;
	}
	printf("revoked node=%s sequence=%llu bad_nodes=%zu\n", argv[0], (unsigned long long)doc->sequence,
	       doc->n_bad_nodes);
	vp_log_info("enroll", "revoked", "node=%s sequence=%llu", argv[0], (unsigned long long)doc->sequence);
	ret = 0;
finish:
	free(xml);
	free(out);
	od_doc_free(doc);
	EVP_PKEY_free(key);
	X509_free(cert);
	return ret;
}

/* ---- serve ---- */

typedef struct rate_slot {
	struct sockaddr_storage addr;
	socklen_t alen;
	double tokens;
	uint64_t last_ms;
} rate_slot_t;

typedef struct server {
	const enroll_conf_t *conf;
	ca_t *ca;
	creds_t creds;
	rate_slot_t *slots;
	size_t n_slots;
	uint64_t served, issued, refused;
} server_t;

typedef struct request {
	struct MHD_PostProcessor *pp;
	char *field[4]; /* username, password, nodeids, csr */
	size_t flen[4];
	size_t body;
	bool too_big;
	bool limited;
} request_t;

static const char *const field_names[] = { "username", "password", "nodeids", "csr" };

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void addr_text(const struct sockaddr *sa, char *out, size_t cap)
{
	if (!sa || getnameinfo(sa, sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in),
	                       out, (socklen_t)cap, NULL, 0, NI_NUMERICHOST))
		snprintf(out, cap, "?");
}

/* Token bucket per client address (port ignored); the oldest slot is reused when the table is full. */
static bool rate_allow(server_t *s, const struct sockaddr *sa)
{
	uint8_t key[16];
	size_t klen;
	uint64_t t = now_ms();
	rate_slot_t *slot = NULL, *oldest = NULL;
	if (!sa)
		return false;
	if (sa->sa_family == AF_INET6) {
		memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
		klen = 16;
	} else {
		memcpy(key, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		klen = 4;
	}
	for (size_t i = 0; i < s->n_slots; i++) {
		rate_slot_t *r = &s->slots[i];
		if (r->alen == klen && !memcmp(&r->addr, key, klen)) {
			slot = r;
			break;
		}
		if (!oldest || r->last_ms < oldest->last_ms)
			oldest = r;
	}
	if (!slot) {
		slot = s->n_slots < RATE_SLOTS ? &s->slots[s->n_slots++] : oldest;
		memset(slot, 0, sizeof(*slot));
		memcpy(&slot->addr, key, klen);
		slot->alen = (socklen_t)klen;
		slot->tokens = s->conf->rate_burst;
		slot->last_ms = t;
	}
	slot->tokens += (double)(t - slot->last_ms) * s->conf->rate_per_min / 60000.0;
	if (slot->tokens > s->conf->rate_burst)
		slot->tokens = s->conf->rate_burst;
	slot->last_ms = t;
	if (slot->tokens < 1.0)
		return false;
	slot->tokens -= 1.0;
	return true;
}

static enum MHD_Result post_field(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
                                  const char *content_type, const char *transfer_encoding, const char *data,
                                  uint64_t off, size_t size)
{
	request_t *r = cls;
	(void)kind;
	(void)filename;
	(void)content_type;
	(void)transfer_encoding;
	for (int i = 0; i < 4; i++) {
		char *p;
		if (strcmp(key, field_names[i]))
			continue;
		if (off != r->flen[i] || r->flen[i] + size > MAX_FIELD) {
			r->too_big = true;
			return MHD_NO;
		}
		p = realloc(r->field[i], r->flen[i] + size + 1);
		if (!p)
			return MHD_NO;
		memcpy(p + r->flen[i], data, size);
		r->flen[i] += size;
		p[r->flen[i]] = 0;
		r->field[i] = p;
	}
	return MHD_YES;
}

static enum MHD_Result respond(struct MHD_Connection *conn, unsigned status, const char *ctype, const void *data,
                               size_t len)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_MUST_COPY);
	enum MHD_Result r;
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	if (status == MHD_HTTP_TOO_MANY_REQUESTS)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "60");
	r = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return r;
}

static enum MHD_Result refuse(server_t *s, struct MHD_Connection *conn, unsigned status, const char *peer,
                              const char *reason)
{
	char body[512];
	int n = snprintf(body, sizeof(body), "%s\n", reason);
	s->refused++;
	vp_log_warn("enroll", "refused", "peer=%s status=%u reason=\"%s\"", peer, status, reason);
	return respond(conn, status, "text/plain; charset=utf-8", body, (size_t)n);
}

/* The TLS client certificate, if the client sent one (renewal). */
static X509 *client_cert(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
	const gnutls_datum_t *peers;
	unsigned n = 0;
	const unsigned char *p;
	X509 *x;
	if (!ci || !ci->tls_session)
		return NULL;
	peers = gnutls_certificate_get_peers((gnutls_session_t)ci->tls_session, &n);
	if (!peers || n == 0)
		return NULL;
	p = peers[0].data;
	x = d2i_X509(NULL, &p, (long)peers[0].size);
	ERR_clear_error();
	return x;
}

/* The csr field: PEM, or base64 of DER (whitespace allowed), as §11.3 clients differ. */
static int csr_from_field(const char *f, size_t len, X509_REQ **req)
{
	uint8_t *der;
	int n = 0, fin = 0, rc;
	EVP_ENCODE_CTX *ctx;
	if (!f || !len)
		return VP_EMALFORMED;
	if (len > 10 && !strncmp(f, "-----BEGIN", 10))
		return ca_csr_parse((const uint8_t *)f, len, req);
	der = malloc(len);
	ctx = EVP_ENCODE_CTX_new();
	if (!der || !ctx) {
		free(der);
		EVP_ENCODE_CTX_free(ctx);
		return VP_ENOMEM;
	}
	EVP_DecodeInit(ctx);
	if (EVP_DecodeUpdate(ctx, der, &n, (const unsigned char *)f, (int)len) < 0 ||
	    EVP_DecodeFinal(ctx, der + n, &fin) != 1)
		rc = VP_EMALFORMED;
	else
		rc = ca_csr_parse(der, (size_t)(n + fin), req);
	free(der);
	EVP_ENCODE_CTX_free(ctx);
	return rc;
}

static int current_doc(od_doc_t **doc)
{
	char path[4096], why[OD_WHY_MAX], *xml = NULL;
	size_t len = 0;
	int rc;
	path_in(path, sizeof(path), "config.xml");
	if ((rc = read_file(path, &xml, &len, OD_MAX_DOC)))
		return rc;
	rc = od_parse(xml, len, NULL, doc, why);
	free(xml);
	return rc;
}

static enum MHD_Result handle_enroll(server_t *s, struct MHD_Connection *conn, request_t *r, const char *peer)
{
	char reason[OD_WHY_MAX + 64], user[CA_USER_MAX + 1], why[OD_WHY_MAX];
	vp_id_t ids[CA_MAX_NODE_IDS];
	size_t n_ids = 0;
	X509 *old = client_cert(conn), *x = NULL;
	X509_REQ *req = NULL;
	od_doc_t *doc = NULL;
	uint8_t *der = NULL;
	size_t der_len = 0;
	enum MHD_Result ret;
	int rc;
	bool renewal = old != NULL;

	if (r->too_big) {
		ret = refuse(s, conn, MHD_HTTP_CONTENT_TOO_LARGE, peer, "request body too large");
		goto finish;
	}
	if ((rc = current_doc(&doc))) {
		ret = refuse(s, conn, MHD_HTTP_SERVICE_UNAVAILABLE, peer, "no configuration document");
		goto finish;
	}
	if (renewal) {
		X509 *root = ca_cert(s->ca);
		if (ca_verify(old, NULL, 0, &root, 1, 0, why, sizeof(why))) {
			snprintf(reason, sizeof(reason), "renewal refused: current certificate not valid: %s", why);
			ret = refuse(s, conn, MHD_HTTP_FORBIDDEN, peer, reason);
			goto finish;
		}
		if (ca_cert_node_ids(old, ca_overlay(s->ca), ids, CA_MAX_NODE_IDS, &n_ids) ||
		    ca_cert_user(old, user, sizeof(user))) {
			ret = refuse(s, conn, MHD_HTTP_FORBIDDEN, peer, "renewal refused: certificate has no Node-ID or user");
			goto finish;
		}
		for (size_t i = 0; i < n_ids; i++)
			if (od_is_bad_node(doc, &ids[i])) {
				ret = refuse(s, conn, MHD_HTTP_FORBIDDEN, peer, "renewal refused: Node-ID is revoked");
				goto finish;
			}
	} else {
		unsigned long want;
		char *end;
		if (!r->field[0] || !r->field[1]) {
			ret = refuse(s, conn, MHD_HTTP_BAD_REQUEST, peer, "username and password are required");
			goto finish;
		}
		if (!creds_check(&s->creds, r->field[0], r->field[1])) {
			ret = refuse(s, conn, MHD_HTTP_FORBIDDEN, peer, "bad username or password");
			goto finish;
		}
		snprintf(user, sizeof(user), "%s", r->field[0]);
		want = r->field[2] ? strtoul(r->field[2], &end, 10) : 0;
		if (!r->field[2] || *end || want < 1 || want > s->conf->max_node_ids) {
			snprintf(reason, sizeof(reason), "nodeids must be a number from 1 to %u", s->conf->max_node_ids);
			ret = refuse(s, conn, MHD_HTTP_BAD_REQUEST, peer, reason);
			goto finish;
		}
		n_ids = want;
		if ((rc = ca_random_node_ids(ids, n_ids))) {
			ret = refuse(s, conn, MHD_HTTP_INTERNAL_SERVER_ERROR, peer, "no randomness");
			goto finish;
		}
	}
	if (csr_from_field(r->field[3], r->flen[3], &req)) {
		ret = refuse(s, conn, MHD_HTTP_BAD_REQUEST, peer, "csr: malformed PKCS#10 request");
		goto finish;
	}
	rc = ca_csr_check(req, allowed_keys(s->conf));
	if (rc) {
		ret = refuse(s, conn, MHD_HTTP_BAD_REQUEST, peer, rc == VP_EAUTH
		             ? "csr: the request's signature does not verify (no proof of possession)"
		             : "csr: key type not accepted (ECDSA P-256 or RSA 2048-4096)");
		goto finish;
	}
	{
		ca_issue_params_t p = { .user = user, .ids = ids, .n_ids = n_ids, .lifetime_s = s->conf->cert_lifetime_s };
		if ((rc = ca_issue(s->ca, req, &p, &x)) || (rc = ca_cert_der(x, &der, &der_len))) {
			ret = refuse(s, conn, MHD_HTTP_INTERNAL_SERVER_ERROR, peer, "issue failed");
			goto finish;
		}
	}
	s->issued++;
	{
		char list[CA_MAX_NODE_IDS * (VP_ID_HEX_LEN + 1) + 1] = "", hex[VP_ID_HEX_LEN + 1];
		for (size_t i = 0; i < n_ids; i++) {
			id_hex(&ids[i], hex);
			strcat(list, i ? "," : "");
			strcat(list, hex);
		}
		vp_log_info("enroll", renewal ? "renewed" : "issued", "peer=%s user=%s node_ids=%s", peer, user, list);
	}
	ret = respond(conn, MHD_HTTP_OK, "application/pkix-cert", der, der_len);
finish:
	OPENSSL_free(der);
	X509_free(old);
	X509_free(x);
	X509_REQ_free(req);
	od_doc_free(doc);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **state)
{
	server_t *s = cls;
	request_t *r = *state;
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *sa = ci ? ci->client_addr : NULL;
	char peer[64];
	(void)version;
	addr_text(sa, peer, sizeof(peer));
	if (!r) {
		r = calloc(1, sizeof(*r));
		if (!r)
			return MHD_NO;
		*state = r;
		s->served++;
		if (!strcmp(method, MHD_HTTP_METHOD_POST) && !strcmp(url, ENROLL_PATH)) {
			r->limited = !rate_allow(s, sa);
			if (!r->limited)
				r->pp = MHD_create_post_processor(conn, 8192, post_field, r);
		}
		return MHD_YES;
	}
	if (*upload_size) {
		r->body += *upload_size;
		if (r->body > MAX_BODY)
			r->too_big = true;
		else if (r->pp && MHD_post_process(r->pp, upload, *upload_size) != MHD_YES)
			r->too_big = r->too_big || true;
		*upload_size = 0;
		return MHD_YES;
	}
	if (!strcmp(url, OD_WELL_KNOWN_PATH)) {
		char path[4096], *xml = NULL;
		size_t len = 0;
		enum MHD_Result ret;
		if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
			return refuse(s, conn, MHD_HTTP_METHOD_NOT_ALLOWED, peer, "use GET");
		path_in(path, sizeof(path), "config.xml");
		if (read_file(path, &xml, &len, OD_MAX_DOC))
			return refuse(s, conn, MHD_HTTP_SERVICE_UNAVAILABLE, peer, "no configuration document");
		vp_log_debug("enroll", "config_served", "peer=%s bytes=%zu", peer, len);
		ret = respond(conn, MHD_HTTP_OK, OD_MEDIA_TYPE, xml, len);
		free(xml);
		return ret;
	}
	if (!strcmp(url, ENROLL_PATH)) {
		if (strcmp(method, MHD_HTTP_METHOD_POST))
			return refuse(s, conn, MHD_HTTP_METHOD_NOT_ALLOWED, peer, "use POST");
		if (r->limited)
			return refuse(s, conn, MHD_HTTP_TOO_MANY_REQUESTS, peer, "rate limited: too many requests from "
			              "this address, retry later");
		if (!r->pp)
			return refuse(s, conn, MHD_HTTP_BAD_REQUEST, peer, "the body must be "
			              "application/x-www-form-urlencoded or multipart/form-data");
		return handle_enroll(s, conn, r, peer);
	}
	return refuse(s, conn, MHD_HTTP_NOT_FOUND, peer, "no such resource");
}

static void on_done(void *cls, struct MHD_Connection *conn, void **state, enum MHD_RequestTerminationCode tc)
{
	request_t *r = *state;
	(void)cls;
	(void)conn;
	(void)tc;
	if (!r)
		return;
	if (r->pp)
		MHD_destroy_post_processor(r->pp);
	for (int i = 0; i < 4; i++) {
		if (r->field[i])
			OPENSSL_cleanse(r->field[i], r->flen[i]);
		free(r->field[i]);
	}
	free(r);
	*state = NULL;
}

static int parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[128], *colon;
	struct addrinfo hints = { .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV, .ai_socktype = SOCK_STREAM }, *ai;
	snprintf(host, sizeof(host), "%s", s);
	colon = strrchr(host, ':');
	if (!colon)
		return VP_ECONFIG;
	*colon = 0;
	char *h = host;
	if (h[0] == '[' && colon > h + 1 && colon[-1] == ']') {
		colon[-1] = 0;
		h++;
	}
	if (getaddrinfo(h, colon + 1, &hints, &ai))
		return VP_ECONFIG;
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	*len = ai->ai_addrlen;
	freeaddrinfo(ai);
	return 0;
}

static int cmd_serve(const enroll_conf_t *c)
{
	char path[4096], *key_pem = NULL, *cert_pem = NULL, *ca_pem = NULL;
	size_t l1, l2, l3;
	struct sockaddr_storage ss;
	socklen_t sl;
	struct MHD_Daemon *d = NULL;
	server_t s = { .conf = c };
	sigset_t set;
	int sig, rc, ret = 2;
	const union MHD_DaemonInfo *di;

	if (parse_listen(c->listen, &ss, &sl))
		return die(2, "serve: [enroll] listen %s: expected addr:port", c->listen);
	if ((rc = load_ca(&s.ca)))
		return rc;
	path_in(path, sizeof(path), c->credentials);
	if ((rc = creds_load(path, &s.creds)))
		goto finish;
	s.slots = calloc(RATE_SLOTS, sizeof(*s.slots));
	path_in(path, sizeof(path), "server.key");
	if (!s.slots || read_file(path, &key_pem, &l1, 65536))
		goto io;
	path_in(path, sizeof(path), "server.pem");
	if (read_file(path, &cert_pem, &l2, 65536))
		goto io;
	path_in(path, sizeof(path), "ca.pem");
	if (read_file(path, &ca_pem, &l3, 65536))
		goto io;
	/* Signals are taken by sigwait below; block them before libmicrohttpd starts its thread. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* One internal polling thread: requests are handled one at a time, so the CA, the credentials and the
	 * rate limiter need no lock; an issue costs well under a millisecond plus the PBKDF2 check. */
	d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_TLS | MHD_USE_ERROR_LOG |
	                     (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
	                     0, NULL, NULL, on_request, &s,
	                     MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
	                     MHD_OPTION_HTTPS_MEM_KEY, key_pem,
	                     MHD_OPTION_HTTPS_MEM_CERT, cert_pem,
	                     MHD_OPTION_HTTPS_MEM_TRUST, ca_pem,
	                     MHD_OPTION_NOTIFY_COMPLETED, on_done, &s,
	                     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
	                     MHD_OPTION_CONNECTION_LIMIT, (unsigned)128,
	                     MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)16,
	                     MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(128 * 1024),
	                     MHD_OPTION_END);
	if (!d) {
		die(2, "serve: cannot start the HTTPS server on %s", c->listen);
		goto finish;
	}
	di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	printf("listening addr=%s port=%u overlay=%s\n", c->listen, di ? di->port : 0, ca_overlay(s.ca));
	fflush(stdout);
	vp_log_info("enroll", "listening", "addr=%s port=%u users=%zu", c->listen, di ? di->port : 0, s.creds.n);
	sigwait(&set, &sig);
	MHD_stop_daemon(d);
	vp_log_info("enroll", "stopped", "signal=%d requests=%llu issued=%llu refused=%llu", sig,
	            (unsigned long long)s.served, (unsigned long long)s.issued, (unsigned long long)s.refused);
	ret = 0;
	goto finish;
io:
	die(2, "serve: cannot read %s", path);
finish:
	free(key_pem);
	free(cert_pem);
	free(ca_pem);
	free(s.slots);
	free(s.creds.v);
	ca_free(s.ca);
	return ret;
}

/* ---- node-side: fetch, enroll, check-peer ---- */

static int load_anchor(const char *root_path, const char *fp_hex, X509 **root, uint8_t fp[32], bool *have_fp)
{
	size_t got = 0;
	*root = NULL;
	*have_fp = false;
	if (root_path) {
		int rc = ca_read_cert(root_path, root);
		if (rc)
			return die(2, "cannot read anchor %s: %s", root_path, vp_strerror(rc));
	}
	if (fp_hex) {
		if (strlen(fp_hex) != 64 || vp_hex_decode(fp_hex, 64, fp, 32, &got) || got != 32)
			return die(2, "--anchor-fp: 64 hex digits (SHA-256 of the root certificate)");
		*have_fp = true;
	}
	if (!root_path && !fp_hex)
		return die(2, "a trust anchor is required: --anchor ROOT.pem or --anchor-fp HEX");
	return 0;
}

static int cmd_fetch(int argc, char **argv)
{
	const char *url = NULL, *anchor = NULL, *fp_hex = NULL, *cacert = NULL, *current = NULL, *out = NULL,
	           *overlay = NULL;
	char why[OD_WHY_MAX], *xml = NULL, *cur = NULL;
	size_t len = 0, clen = 0;
	uint8_t fp[32];
	bool have_fp;
	X509 *root = NULL;
	od_trust_t *t = NULL;
	int rc, ret = 2;
	for (int i = 0; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--url")) url = argv[i + 1];
		else if (!strcmp(argv[i], "--anchor")) anchor = argv[i + 1];
		else if (!strcmp(argv[i], "--anchor-fp")) fp_hex = argv[i + 1];
		else if (!strcmp(argv[i], "--cacert")) cacert = argv[i + 1];
		else if (!strcmp(argv[i], "--current")) current = argv[i + 1];
		else if (!strcmp(argv[i], "--out")) out = argv[i + 1];
		else if (!strcmp(argv[i], "--overlay")) overlay = argv[i + 1];
		else return die(2, "fetch: unknown option %s", argv[i]);
	}
	if ((argc % 2) || !url || !overlay)
		return die(2, "usage: vipr-enroll fetch --url URL|FILE --overlay NAME (--anchor ROOT.pem | --anchor-fp "
		           "HEX) [--cacert PEM] [--current FILE] [--out FILE]");
	if ((rc = load_anchor(anchor, fp_hex, &root, fp, &have_fp)))
		return rc;
	if ((rc = od_trust_new(overlay, root, have_fp ? fp : NULL, &t)))
		goto finish;
	if (current) {
		if ((rc = read_file(current, &cur, &clen, OD_MAX_DOC))) {
			die(2, "cannot read %s", current);
			goto finish;
		}
		if ((rc = od_trust_accept(t, cur, clen, 0, why))) {
			ret = die(1, "refused current=%s reason=\"%s\"", current, why);
			goto finish;
		}
	}
	if (!strncmp(url, "https://", 8)) {
		enr_http_t h = { .url = url, .ca_file = cacert ? cacert : anchor };
		if ((rc = enr_fetch_config(&h, &xml, &len, why))) {
			ret = die(1, "fetch failed: %s", why);
			goto finish;
		}
	} else if ((rc = read_file(url, &xml, &len, OD_MAX_DOC))) {
		die(2, "cannot read %s", url);
		goto finish;
	}
	rc = od_trust_accept(t, xml, len, 0, why);
	if (rc) {
		printf("refused reason=\"%s\"%s\n", why, od_trust_current(t) ? " (keeping the current document)" : "");
		ret = 1;
		goto finish;
	}
	{
		const od_doc_t *d = od_trust_current(t);
		printf("accepted overlay=%s sequence=%llu roots=%zu bad_nodes=%zu bootstrap=%zu\n", d->instance_name,
		       (unsigned long long)d->sequence, d->n_roots, d->n_bad_nodes, d->n_bootstrap);
	}
	if (out && write_file(out, xml, len, 0644)) {
		die(2, "cannot write %s", out);
		goto finish;
	}
	ret = 0;
finish:
	free(xml);
	free(cur);
	X509_free(root);
	od_trust_free(t);
	return ret;
}

static int cmd_enroll(int argc, char **argv)
{
	const char *url = NULL, *cacert = NULL, *overlay = NULL, *user = NULL, *pwfile = NULL, *keyout = NULL,
	           *out = NULL, *oldcert = NULL, *oldkey = NULL;
	unsigned nodeids = 1;
	bool renew = false;
	char why[ENR_WHY_MAX], pw[1024] = "";
	vp_id_t old_ids[CA_MAX_NODE_IDS], ids[CA_MAX_NODE_IDS];
	size_t n_old = 0, n = 0;
	EVP_PKEY *key = NULL;
	X509_REQ *req = NULL;
	X509 *cert = NULL, *old = NULL;
	long status = 0;
	int rc, ret = 2;
	for (int i = 0; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(argv[i], "--renew")) { renew = true; continue; }
		if (!v)
			return die(2, "enroll: %s needs a value", argv[i]);
		if (!strcmp(argv[i], "--url")) url = v;
		else if (!strcmp(argv[i], "--cacert")) cacert = v;
		else if (!strcmp(argv[i], "--overlay")) overlay = v;
		else if (!strcmp(argv[i], "--user")) user = v;
		else if (!strcmp(argv[i], "--password-file")) pwfile = v;
		else if (!strcmp(argv[i], "--nodeids")) nodeids = (unsigned)strtoul(v, NULL, 10);
		else if (!strcmp(argv[i], "--key")) keyout = v;
		else if (!strcmp(argv[i], "--out")) out = v;
		else if (!strcmp(argv[i], "--cert")) oldcert = v;
		else if (!strcmp(argv[i], "--old-key")) oldkey = v;
		else return die(2, "enroll: unknown option %s", argv[i]);
		i++;
	}
	if (!url || !cacert || !overlay || !keyout || !out || (renew ? !oldcert || !oldkey : !user || !pwfile))
		return die(2, "usage: vipr-enroll enroll --url URL --cacert CA.pem --overlay NAME (--user U "
		           "--password-file F [--nodeids N] | --renew --cert OLD.pem --old-key OLD.key) --key KEY.out "
		           "--out CERT.out");
	if (!renew) {
		FILE *f = fopen(pwfile, "r");
		if (!f || !fgets(pw, sizeof(pw), f)) {
			if (f)
				fclose(f);
			return die(2, "enroll: cannot read the password from %s", pwfile);
		}
		fclose(f);
		pw[strcspn(pw, "\r\n")] = 0;
	} else {
		if ((rc = ca_read_cert(oldcert, &old)))
			return die(2, "enroll: cannot read %s", oldcert);
		ca_cert_node_ids(old, overlay, old_ids, CA_MAX_NODE_IDS, &n_old);
	}
	if ((rc = ca_key_generate(CA_KEY_EC_P256, &key)) || (rc = enr_csr_create(key, &req))) {
		die(2, "enroll: key or request: %s", vp_strerror(rc));
		goto finish;
	}
	{
		enr_http_t h = { .url = url, .ca_file = cacert, .cert_file = renew ? oldcert : NULL,
		                 .key_file = renew ? oldkey : NULL };
		enr_request_t r = { .username = renew ? NULL : user, .password = renew ? NULL : pw,
		                    .nodeids = nodeids, .csr = req };
		rc = enr_enroll(&h, &r, &cert, &status, why);
		OPENSSL_cleanse(pw, sizeof(pw));
		if (rc) {
			ret = die(1, "refused status=%ld reason=\"%s\"", status, why);
			goto finish;
		}
	}
	if ((rc = enr_check_issued(cert, key, overlay, renew ? n_old : nodeids, renew ? old_ids : NULL, why))) {
		ret = die(1, "refused reason=\"%s\"", why);
		goto finish;
	}
	if ((rc = ca_write_key(keyout, key)) || (rc = ca_write_cert(out, cert))) {
		die(2, "enroll: cannot write %s / %s", keyout, out);
		goto finish;
	}
	ca_cert_node_ids(cert, overlay, ids, CA_MAX_NODE_IDS, &n);
	printf("%s node_ids=", renew ? "renewed" : "enrolled");
	print_ids(stdout, ids, n);
	printf("\n");
	ret = 0;
finish:
	EVP_PKEY_free(key);
	X509_REQ_free(req);
	X509_free(cert);
	X509_free(old);
	return ret;
}

static int cmd_check_peer(int argc, char **argv)
{
	const char *docp = NULL, *anchor = NULL, *certp = NULL, *overlay = NULL;
	char why[OD_WHY_MAX], *xml = NULL;
	size_t len = 0, n = 0;
	vp_id_t ids[CA_MAX_NODE_IDS];
	X509 *root = NULL, *cert = NULL;
	od_trust_t *t = NULL;
	int rc, ret = 2;
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--doc") && i + 1 < argc) docp = argv[++i];
		else if (!strcmp(argv[i], "--anchor") && i + 1 < argc) anchor = argv[++i];
		else if (!strcmp(argv[i], "--overlay") && i + 1 < argc) overlay = argv[++i];
		else if (!certp) certp = argv[i];
		else return die(2, "check-peer: unexpected %s", argv[i]);
	}
	if (!docp || !anchor || !certp || !overlay)
		return die(2, "usage: vipr-enroll check-peer --doc FILE --anchor ROOT.pem --overlay NAME CERT.pem");
	if ((rc = ca_read_cert(anchor, &root)) || (rc = ca_read_cert(certp, &cert)) ||
	    (rc = read_file(docp, &xml, &len, OD_MAX_DOC))) {
		die(2, "check-peer: cannot read an input: %s", vp_strerror(rc));
		goto finish;
	}
	if ((rc = od_trust_new(overlay, root, NULL, &t)))
		goto finish;
	if ((rc = od_trust_accept(t, xml, len, 0, why))) {
		ret = die(1, "document refused reason=\"%s\"", why);
		goto finish;
	}
	rc = od_trust_check_peer(t, cert, 0, ids, CA_MAX_NODE_IDS, &n, why);
	if (rc) {
		printf("refused reason=\"%s\"\n", why);
		ret = 1;
		goto finish;
	}
	printf("admitted node_ids=");
	print_ids(stdout, ids, n);
	printf("\n");
	ret = 0;
finish:
	free(xml);
	X509_free(root);
	X509_free(cert);
	od_trust_free(t);
	return ret;
}

/* ---- main ---- */

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: vipr-enroll [--dir DIR] [--config FILE] [--set section.key=value]... [-v] COMMAND [ARGS]\n"
	        "       vipr-enroll --help-config | --markdown-config\n"
	        "commands (CA side, in DIR):\n"
	        "  init                 new CA, configuration signer, HTTPS key, first signed config.xml\n"
	        "  passwd USER@DOMAIN   print a credentials line (password on stdin)\n"
	        "  issue --csr FILE --user USER@DOMAIN [--nodeids N] [--out FILE]\n"
	        "  revoke NODE-ID       add NODE-ID to the bad-node list (sequence + 1, re-signed)\n"
	        "  serve                HTTPS: GET " OD_WELL_KNOWN_PATH ", POST " ENROLL_PATH "\n"
	        "commands (node side):\n"
	        "  fetch --url URL|FILE --overlay NAME (--anchor ROOT.pem|--anchor-fp HEX) [--cacert PEM]\n"
	        "        [--current FILE] [--out FILE]\n"
	        "  enroll --url URL --cacert CA.pem --overlay NAME (--user U --password-file F [--nodeids N]\n"
	        "        | --renew --cert OLD.pem --old-key OLD.key) --key KEY.out --out CERT.out\n"
	        "  check-peer --doc FILE --anchor ROOT.pem --overlay NAME CERT.pem\n"
	        "exit status: 0 ok, 1 refused (reason printed), 2 usage or local error\n");
}

int main(int argc, char **argv)
{
	enroll_conf_t conf;
	vp_conf_err_t e;
	const char *config = NULL;
	const char *sets[64];
	size_t n_sets = 0;
	bool verbose = false;
	int i, rc;

	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--dir") && i + 1 < argc)
			g_dir = argv[++i];
		else if (!strcmp(argv[i], "--config") && i + 1 < argc)
			config = argv[++i];
		else if (!strcmp(argv[i], "--set") && i + 1 < argc && n_sets < 64)
			sets[n_sets++] = argv[++i];
		else if (!strcmp(argv[i], "-v"))
			verbose = true;
		else if (!strcmp(argv[i], "--help-config")) {
			vp_conf_schema_help(stdout, opts, VP_CONF_NOPTS(opts));
			return 0;
		} else if (!strcmp(argv[i], "--markdown-config")) {
			vp_conf_schema_markdown(stdout, opts, VP_CONF_NOPTS(opts));
			return 0;
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (i >= argc) {
		usage(stderr);
		return 2;
	}
	vp_log_setup(verbose ? VP_LOG_DEBUG : VP_LOG_INFO, stderr);
	rc = config ? vp_conf_schema_load(opts, VP_CONF_NOPTS(opts), config, &conf, &e)
	            : vp_conf_schema_defaults(opts, VP_CONF_NOPTS(opts), &conf, &e);
	if (rc)
		return die(2, "%s: line %d: %s", config ? config : "defaults", e.line, e.msg);
	for (size_t k = 0; k < n_sets; k++) {
		char sec[64], *dot, *eq;
		snprintf(sec, sizeof(sec), "%s", sets[k]);
		dot = strchr(sec, '.');
		eq = strchr(sec, '=');
		if (!dot || !eq || eq < dot)
			return die(2, "--set %s: expected section.key=value", sets[k]);
		*dot = 0;
		*eq = 0;
		/* vipr-enroll writes the overlay document, so overlay-wide options are its to set. */
		if ((rc = vp_conf_schema_set(opts, VP_CONF_NOPTS(opts), &conf, sec, dot + 1, eq + 1, true, &e)))
			return die(2, "--set %s: %s", sets[k], e.msg);
	}
	const char *cmd = argv[i++];
	int cargc = argc - i;
	char **cargv = argv + i;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (!strcmp(cmd, "init"))
		rc = cmd_init(&conf);
	else if (!strcmp(cmd, "passwd"))
		rc = cmd_passwd(cargc, cargv);
	else if (!strcmp(cmd, "issue"))
		rc = cmd_issue(&conf, cargc, cargv);
	else if (!strcmp(cmd, "revoke"))
		rc = cmd_revoke(cargc, cargv);
	else if (!strcmp(cmd, "serve"))
		rc = cmd_serve(&conf);
	else if (!strcmp(cmd, "fetch"))
		rc = cmd_fetch(cargc, cargv);
	else if (!strcmp(cmd, "enroll"))
		rc = cmd_enroll(cargc, cargv);
	else if (!strcmp(cmd, "check-peer"))
		rc = cmd_check_peer(cargc, cargv);
	else {
		usage(stderr);
		rc = 2;
	}
	curl_global_cleanup();
	return rc;
}
