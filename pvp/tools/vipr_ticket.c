/*
 * vipr-ticket - issue, verify and inspect ViPR anti-spam tickets, and manage
 * ticket keys, for border elements and operators (docs/protocol.md §7).
 *
 *   vipr-ticket genkey [--epoch N]                      new key file on stdout
 *   vipr-ticket rotate --key FILE [--grace SECONDS]     new current key, old one in grace
 *   vipr-ticket issue  --key FILE --number N --domain D [--lifetime S] [--pending] [--now T]
 *   vipr-ticket verify --key FILE --number N --domain D [--now T] [--allow-pending] TICKET
 *   vipr-ticket show   TICKET                           decode without checking the MAC
 *   vipr-ticket cert   --issuer-cert F --issuer-key F --csr F --number N --domain D [--lifetime S] [--now T]
 *                      a ViPR client certificate (PEM on stdout) as the PVP server issues it (§6.1)
 *
 * Exit status: 0 ok / valid, 1 ticket refused (one line "refused reason=…"),
 * 2 usage or key-file error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "common/clock.h"
#include "common/e164.h"
#include "common/errcode.h"
#include "common/log.h"
#include "pvp/clientcert.h"
#include "pvp/ticket.h"

#define EXIT_REFUSED 1
#define EXIT_USAGE 2
#define DEFAULT_GRACE_S (30u * 86400) /* the default ticket lifetime */

static void usage(FILE *f)
{
	fputs("usage: vipr-ticket genkey [--epoch N]\n"
	      "       vipr-ticket rotate --key FILE [--grace SECONDS]\n"
	      "       vipr-ticket issue --key FILE --number N --domain D [--lifetime S] [--pending] [--now T]\n"
	      "       vipr-ticket verify --key FILE --number N --domain D [--now T] [--allow-pending] TICKET\n"
	      "       vipr-ticket show TICKET\n"
	      "       vipr-ticket cert --issuer-cert F --issuer-key F --csr F --number N --domain D [--lifetime S] [--now T]\n",
	      f);
}

typedef struct opts {
	const char *key, *number, *domain, *issuer_cert, *issuer_key, *csr;
	unsigned long long now, lifetime, grace, epoch;
	int pending, allow_pending;
} opts_t;

static int parse_u64(const char *s, unsigned long long *v)
{
	char *end;
	errno = 0;
	*v = strtoull(s, &end, 10);
	return errno || !*s || *end || s[0] == '-' ? -1 : 0;
}

static int write_keys_atomic(const char *path, const pvp_ticket_keys_t *keys)
{
	char text[1024], tmp[4096];
	FILE *f;
	int fd, rc = pvp_ticket_keys_format(keys, text, sizeof(text));
	if (rc || (size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp)) {
		OPENSSL_cleanse(text, sizeof(text));
		return rc ? rc : VP_EINVAL;
	}
	/*
	 * A new file, created 0600 (never readable by others, whatever the umask),
	 * and never through whatever a stale or planted "<key>.tmp" points at.
	 */
	if (unlink(tmp) != 0 && errno != ENOENT)
		goto fail;
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		goto fail;
	f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		unlink(tmp);
		goto fail;
	}
	if (fputs(text, f) == EOF || fflush(f) || fsync(fileno(f))) {
		fclose(f);
		unlink(tmp);
		goto fail;
	}
	if (fclose(f) != 0 || rename(tmp, path) != 0) {
		unlink(tmp);
		goto fail;
	}
	OPENSSL_cleanse(text, sizeof(text));
	return 0;
fail:
	OPENSSL_cleanse(text, sizeof(text));
	return VP_EIO;
}

static int cmd_genkey(const opts_t *o)
{
	pvp_ticket_keys_t keys;
	char text[512];
	memset(&keys, 0, sizeof(keys));
	keys.cur.epoch = (uint8_t)(o->epoch ? o->epoch : 1);
	keys.cur.len = 32;
	if (o->epoch > 255 || RAND_bytes(keys.cur.key, 32) != 1 ||
	    pvp_ticket_keys_format(&keys, text, sizeof(text))) {
		fprintf(stderr, "vipr-ticket: cannot make a key\n");
		return EXIT_USAGE;
	}
	fputs(text, stdout);
	OPENSSL_cleanse(&keys, sizeof(keys));
	OPENSSL_cleanse(text, sizeof(text));
	return 0;
}

static int cmd_rotate(const opts_t *o, const pvp_ticket_keys_t *keys_in)
{
	pvp_ticket_keys_t keys = *keys_in;
	uint8_t k[32];
	uint64_t now = o->now ? o->now : vp_time_wall_ms() / 1000;
	int rc;
	if (RAND_bytes(k, sizeof(k)) != 1)
		return EXIT_USAGE;
	rc = pvp_ticket_keys_rotate(&keys, k, sizeof(k), now + (o->grace ? o->grace : DEFAULT_GRACE_S));
	if (!rc)
		rc = write_keys_atomic(o->key, &keys);
	OPENSSL_cleanse(k, sizeof(k));
	if (rc) {
		fprintf(stderr, "vipr-ticket: rotate failed: %s\n", vp_strerror(rc));
		return EXIT_USAGE;
	}
	printf("rotated epoch=%u previous=%u grace_until=%" PRIu64 "\n", keys.cur.epoch, keys.prev.epoch,
	       keys.prev.grace_until_s);
	OPENSSL_cleanse(&keys, sizeof(keys));
	return 0;
}

static int cmd_issue(const opts_t *o, const pvp_ticket_keys_t *keys)
{
	pvp_ticket_t t;
	uint8_t bin[PVP_TICKET_MAX];
	char b64[PVP_TICKET_B64_MAX];
	size_t n;
	uint64_t now = o->now ? o->now : vp_time_wall_ms() / 1000;
	int rc;

	memset(&t, 0, sizeof(t));
	if (!o->number || !o->domain) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if ((rc = vp_e164_normalize(o->number, NULL, t.number)) || (rc = pvp_domain_normalize(o->domain, t.domain))) {
		fprintf(stderr, "vipr-ticket: %s\n", vp_strerror(rc));
		return EXIT_USAGE;
	}
	/* Ticket times are 32-bit: refuse what would wrap instead of issuing a ticket that expired long ago. */
	if (now + (o->lifetime ? o->lifetime : DEFAULT_GRACE_S) > UINT32_MAX || o->lifetime > UINT32_MAX) {
		fprintf(stderr, "vipr-ticket: --now/--lifetime: %s\n", vp_strerror(VP_ERANGE));
		return EXIT_USAGE;
	}
	t.flags = o->pending ? 0 : PVP_TICKET_F_ROUTES;
	t.issued = (uint32_t)now;
	t.expires = (uint32_t)(now + (o->lifetime ? o->lifetime : DEFAULT_GRACE_S));
	t.last_call = (uint32_t)now;
	t.validations = 1;
	if ((rc = pvp_ticket_issue(keys, &t, bin, sizeof(bin), &n)) ||
	    (rc = pvp_b64url_encode(bin, n, b64, sizeof(b64)))) {
		fprintf(stderr, "vipr-ticket: %s\n", vp_strerror(rc));
		return EXIT_USAGE;
	}
	puts(b64);
	return 0;
}

static int cmd_verify(const opts_t *o, const pvp_ticket_keys_t *keys, const char *ticket)
{
	char number[VP_E164_BUFLEN];
	pvp_ticket_t t;
	pvp_ticket_expect_t ex = { .domain = o->domain, .need_routes = !o->allow_pending };
	pvp_ticket_reason_t r;
	uint64_t now = o->now ? o->now : vp_time_wall_ms() / 1000;
	int rc;

	if (!o->number || !o->domain) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if ((rc = vp_e164_normalize(o->number, NULL, number))) {
		fprintf(stderr, "vipr-ticket: --number: %s\n", vp_strerror(rc));
		return EXIT_USAGE;
	}
	ex.number = number;
	r = pvp_ticket_verify_text(keys, ticket, now, &ex, &t);
	if (r != PVP_TR_OK) {
		printf("refused reason=%s\n", pvp_ticket_reason_str(r));
		return EXIT_REFUSED;
	}
	printf("ok number=%s domain=%s epoch=%u expires=%" PRIu32 " entropy_bits=%.2f validations=%u\n",
	       t.number, t.domain, t.epoch, t.expires, t.entropy_cbits / 100.0, t.validations);
	return 0;
}

static int cmd_show(const char *ticket)
{
	uint8_t bin[PVP_TICKET_MAX];
	size_t n;
	pvp_ticket_t t;
	size_t slen = strnlen(ticket, PVP_TICKET_B64_MAX + 1);
	int rc;
	if (slen > PVP_TICKET_B64_MAX || pvp_b64url_decode(ticket, slen, bin, sizeof(bin), &n)) {
		printf("refused reason=malformed\n");
		return EXIT_REFUSED;
	}
	rc = pvp_ticket_decode(bin, n, &t);
	if (rc) {
		printf("refused reason=%s\n", rc == VP_EUNSUPPORTED ? "version" : "malformed");
		return EXIT_REFUSED;
	}
	printf("version=%u epoch=%u flags=0x%02x issued=%" PRIu32 " expires=%" PRIu32 " last_call=%" PRIu32
	       " entropy_bits=%.2f validations=%u number=%s domain=%s (MAC not checked)\n",
	       t.version, t.epoch, t.flags, t.issued, t.expires, t.last_call, t.entropy_cbits / 100.0,
	       t.validations, t.number, t.domain);
	return 0;
}

/* The PVP server's issuing step (pvp_cc_issue) from files: for operators' checks and the border's tests. */
static int cmd_cert(const opts_t *o)
{
	pvp_cc_issuer_t *iss = NULL;
	X509_REQ *req = NULL;
	X509 *x = NULL;
	FILE *f;
	uint8_t csr[PVP_CC_DER_MAX], der[PVP_CC_DER_MAX], *cp = csr;
	const unsigned char *dp = der;
	char number[VP_E164_BUFLEN];
	size_t dl;
	pvp_cc_refusal_t why = PVP_CCR_NONE;
	uint64_t now = o->now ? o->now : vp_time_wall_ms() / 1000;
	uint32_t life = o->lifetime ? (uint32_t)o->lifetime : PVP_CC_LIFETIME_DEFAULT_S;
	int rc = EXIT_USAGE, n;

	if (!o->issuer_cert || !o->issuer_key || !o->csr || !o->number || !o->domain || o->lifetime > UINT32_MAX) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (vp_e164_normalize(o->number, NULL, number) || pvp_cc_issuer_load(o->issuer_cert, o->issuer_key, life, &iss)) {
		fprintf(stderr, "vipr-ticket: bad number or issuer\n");
		goto finish;
	}
	if (!(f = fopen(o->csr, "r"))) {
		fprintf(stderr, "vipr-ticket: %s: %s\n", o->csr, strerror(errno));
		goto finish;
	}
	req = PEM_read_X509_REQ(f, NULL, NULL, NULL);
	fclose(f);
	if (!req || (n = i2d_X509_REQ(req, NULL)) <= 0 || n > (int)sizeof(csr)) {
		fprintf(stderr, "vipr-ticket: %s: not a PEM certificate request\n", o->csr);
		goto finish;
	}
	i2d_X509_REQ(req, &cp);
	if (pvp_cc_issue(iss, csr, (size_t)n, number, o->domain, now, now + life, der, sizeof(der), &dl, &why)) {
		printf("refused reason=%s\n", pvp_cc_refusal_str(why));
		rc = EXIT_REFUSED;
		goto finish;
	}
	if (!(x = d2i_X509(NULL, &dp, (long)dl)) || !PEM_write_X509(stdout, x))
		goto finish;
	rc = 0;
finish:
	X509_free(x);
	X509_REQ_free(req);
	pvp_cc_issuer_free(iss);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "key", required_argument, NULL, 'k' },
		{ "number", required_argument, NULL, 'n' },
		{ "domain", required_argument, NULL, 'd' },
		{ "now", required_argument, NULL, 't' },
		{ "lifetime", required_argument, NULL, 'l' },
		{ "grace", required_argument, NULL, 'g' },
		{ "epoch", required_argument, NULL, 'e' },
		{ "pending", no_argument, NULL, 'p' },
		{ "allow-pending", no_argument, NULL, 'a' },
		{ "issuer-cert", required_argument, NULL, 'I' },
		{ "issuer-key", required_argument, NULL, 'K' },
		{ "csr", required_argument, NULL, 'C' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	opts_t o;
	pvp_ticket_keys_t keys;
	const char *cmd;
	int c, rc;

	memset(&o, 0, sizeof(o));
	vp_log_setup(VP_LOG_ERROR, stderr);
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	cmd = argv[1];
	if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help")) {
		usage(stdout);
		return 0;
	}
	optind = 2;
	while ((c = getopt_long(argc, argv, "k:n:d:t:l:g:e:pahI:K:C:", lopts, NULL)) != -1) {
		unsigned long long *dst = NULL;
		switch (c) {
		case 'k': o.key = optarg; break;
		case 'n': o.number = optarg; break;
		case 'd': o.domain = optarg; break;
		case 't': dst = &o.now; break;
		case 'l': dst = &o.lifetime; break;
		case 'g': dst = &o.grace; break;
		case 'e': dst = &o.epoch; break;
		case 'p': o.pending = 1; break;
		case 'a': o.allow_pending = 1; break;
		case 'I': o.issuer_cert = optarg; break;
		case 'K': o.issuer_key = optarg; break;
		case 'C': o.csr = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return EXIT_USAGE;
		}
		if (dst && parse_u64(optarg, dst)) {
			fprintf(stderr, "vipr-ticket: bad number '%s'\n", optarg);
			return EXIT_USAGE;
		}
	}
	if (!strcmp(cmd, "genkey"))
		return optind == argc ? cmd_genkey(&o) : (usage(stderr), EXIT_USAGE);
	if (!strcmp(cmd, "show")) {
		if (optind + 1 != argc) {
			usage(stderr);
			return EXIT_USAGE;
		}
		return cmd_show(argv[optind]);
	}
	if (!strcmp(cmd, "cert"))
		return optind == argc ? cmd_cert(&o) : (usage(stderr), EXIT_USAGE);
	if (strcmp(cmd, "rotate") && strcmp(cmd, "issue") && strcmp(cmd, "verify")) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!o.key) {
		fprintf(stderr, "vipr-ticket: --key FILE is required\n");
		return EXIT_USAGE;
	}
	if ((rc = pvp_ticket_keys_load(o.key, &keys))) {
		fprintf(stderr, "vipr-ticket: %s: %s\n", o.key, vp_strerror(rc));
		return EXIT_USAGE;
	}
	if (!strcmp(cmd, "rotate"))
		rc = optind == argc ? cmd_rotate(&o, &keys) : (usage(stderr), EXIT_USAGE);
	else if (!strcmp(cmd, "issue"))
		rc = optind == argc ? cmd_issue(&o, &keys) : (usage(stderr), EXIT_USAGE);
	else if (optind + 1 != argc)
		rc = (usage(stderr), EXIT_USAGE);
	else
		rc = cmd_verify(&o, &keys, argv[optind]);
	OPENSSL_cleanse(&keys, sizeof(keys));
	return rc;
}
