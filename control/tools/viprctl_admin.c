/*
 * control/tools/viprctl_admin.c - viprctl's admin commands: one request over the daemon's admin socket
 * (control/admin, docs/protocol.md §10), the answer printed for a person, or as JSON with --json.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/errcode.h"
#include "control/admin/admin.h"
#include "control/tools/viprctl.h"

/* Print \p v (a scalar) as a person reads it: strings bare, the rest as JSON. */
static void print_scalar(FILE *f, const json_t *v)
{
	if (json_is_string(v)) {
		fputs(json_string_value(v), f);
		return;
	}
	char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
	fputs(s ? s : "?", f);
	free(s);
}

static bool all_scalars(const json_t *arr)
{
	size_t i;
	json_t *v;
	json_array_foreach(arr, i, v)
		if (json_is_object(v) || json_is_array(v))
			return false;
	return true;
}

static void print_value(FILE *f, const json_t *v, int indent);

/* One "key: value" block per member, nested containers indented by two spaces per level. */
static void print_object(FILE *f, const json_t *obj, int indent)
{
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)obj, key, v) {
		fprintf(f, "%*s%s:", indent, "", key);
		print_value(f, v, indent);
	}
}

/* The rest of a line that starts with "key:" (a scalar or a list of scalars), or the lines under it. */
static void print_value(FILE *f, const json_t *v, int indent)
{
	size_t i;
	json_t *e;
	if (json_is_object(v)) {
		if (json_object_size(v) == 0) {
			fputs(" (none)\n", f);
			return;
		}
		fputc('\n', f);
		print_object(f, v, indent + 2);
	} else if (json_is_array(v)) {
		if (json_array_size(v) == 0) {
			fputs(" (none)\n", f);
		} else if (all_scalars(v)) {
			json_array_foreach(v, i, e) {
				fputs(i ? ", " : " ", f);
				print_scalar(f, e);
			}
			fputc('\n', f);
		} else {
			fputc('\n', f);
			json_array_foreach(v, i, e) {
				fprintf(f, "%*s- [%zu]", indent + 2, "", i);
				print_value(f, e, indent + 2);
			}
		}
	} else {
		fputc(' ', f);
		print_scalar(f, v);
		fputc('\n', f);
	}
}

static const char *str_of(const json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));
	return s ? s : "";
}

static long long int_of(const json_t *obj, const char *key)
{
	return (long long)json_integer_value(json_object_get(obj, key));
}

/* Wall-clock milliseconds as "YYYY-MM-DD HH:MM:SS.mmm UTC" (the trace's times are the daemon's wall clock). */
static void fmt_wall_ms(long long ms, char *out, size_t cap)
{
	time_t s = (time_t)(ms / 1000);
	struct tm tm;
	if (!gmtime_r(&s, &tm) || !strftime(out, cap, "%Y-%m-%d %H:%M:%S", &tm)) {
		snprintf(out, cap, "%lld ms", ms);
		return;
	}
	size_t n = strlen(out);
	snprintf(out + n, cap - n, ".%03lld", ms % 1000);
}

/*
 * `viprctl validation NUMBER` for a person: what happened to the number, in order — a summary (call records,
 * lookups and incidents, each claimant's handshakes, the routes) and then one line per event with its time
 * relative to the first, so "why did this call not validate" reads top to bottom.  --json gives the same data.
 */
static void print_validation(FILE *f, const json_t *d)
{
	char when[48];
	size_t i;
	const char *key;
	json_t *e, *v;
	fprintf(f, "number %s\n", str_of(d, "number"));
	if (!json_is_true(json_object_get(d, "known"))) {
		fputs("  nothing recorded for this number (no call record, lookup or handshake in the trace; the trace\n"
		      "  keeps the most recent numbers only)\n", f);
		return;
	}
	long long t0 = int_of(d, "first_seen_ms");
	fmt_wall_ms(t0, when, sizeof(when));
	fprintf(f, "  first seen      %s UTC (%lld events, the last %zu kept)\n", when, int_of(d, "events_total"),
	        json_array_size(json_object_get(d, "events")));
	fprintf(f, "  call records    %lld\n", int_of(d, "call_records"));
	fprintf(f, "  lookups         %lld (%lld with an incident: a copy missing, disagreeing or failing its signature)\n",
	        int_of(d, "lookups"), int_of(d, "lookups_with_incident"));
	fprintf(f, "  route           %s\n", str_of(d, "route"));
	json_t *cl = json_object_get(d, "claimants");
	if (json_object_size(cl)) {
		fputs("claimants (handshakes tried / failed, last outcome)\n", f);
		json_object_foreach(cl, key, v)
			fprintf(f, "  %s  %lld / %lld  %s\n", key, int_of(v, "tried"), int_of(v, "failed"), str_of(v, "last"));
	}
	json_t *routes = json_object_get(d, "routes");
	if (json_array_size(routes)) {
		fputs("routes learned\n", f);
		json_array_foreach(routes, i, e)
			fprintf(f, "  %s  %s\n", str_of(e, "claimant"), str_of(e, "detail"));
	}
	fputs("events (seconds after first seen)\n", f);
	json_array_foreach(json_object_get(d, "events"), i, e) {
		long long dt = int_of(e, "at_ms") - t0;
		fprintf(f, "  %+9.3f  %-12s %-10s", (double)dt / 1000.0, str_of(e, "event"), str_of(e, "status"));
		if (json_object_get(e, "claimant"))
			fprintf(f, " claimant=%s", str_of(e, "claimant"));
		fprintf(f, " %s\n", str_of(e, "detail"));
	}
}

/* Why we could not talk to the daemon, for a person. */
static void print_connect_error(const char *sock, int rc)
{
	switch (rc) {
	case VP_ENOTFOUND:
		fprintf(stderr, "viprctl: no admin socket at %s (is viprd running? choose one with -s SOCKET)\n", sock);
		break;
	case VP_EPERM:
		fprintf(stderr, "viprctl: permission denied on %s (run as the daemon's user or root)\n", sock);
		break;
	case VP_ECLOSED:
		fprintf(stderr, "viprctl: nothing serves %s (a stale socket: viprd is not running)\n", sock);
		break;
	case VP_EBUSY:
		fprintf(stderr, "viprctl: %s is busy (too many admin connections)\n", sock);
		break;
	case VP_ERANGE:
		fprintf(stderr, "viprctl: socket path too long: %s\n", sock);
		break;
	default:
		fprintf(stderr, "viprctl: cannot connect to %s: %s (%s)\n", sock, vp_strerror(rc), strerror(errno));
		break;
	}
}

int viprctl_admin(const char *sock, unsigned timeout_ms, int argc, char **argv)
{
	adm_cmd_id_t id;
	bool json = false;
	const char *arg = NULL;
	int npos = 0;
	if (adm_cmd_lookup(argv[0], &id) < 0) {
		fprintf(stderr, "viprctl: unknown command '%s' (try viprctl --help)\n", argv[0]);
		return VIPRCTL_EXIT_USAGE;
	}
	const adm_cmd_info_t *info = &adm_commands[id];
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json")) {
			json = true;
		} else if (argv[i][0] == '-' && argv[i][1] == '-') {
			fprintf(stderr, "viprctl %s: unknown option '%s'\n", info->name, argv[i]);
			return VIPRCTL_EXIT_USAGE;
		} else {
			arg = argv[i];
			npos++;
		}
	}
	if ((info->arg ? 1 : 0) != npos || (arg && !arg[0])) {
		fprintf(stderr, "usage: viprctl [-s SOCKET] %s%s%s [--json]\n", info->name, info->arg ? " " : "",
		        info->arg ? info->arg_help : "");
		return VIPRCTL_EXIT_USAGE;
	}

	adm_client_t *cl = NULL;
	adm_answer_t ans = { 0 };
	int rc = adm_client_connect(sock, &cl);
	if (rc < 0) {
		print_connect_error(sock, rc);
		return VIPRCTL_EXIT_CONNECT;
	}
	rc = adm_client_call(cl, id, arg, timeout_ms, &ans);
	adm_client_free(cl);
	if (rc == VP_EINVAL) {
		fprintf(stderr, "viprctl %s: the argument cannot be sent (longer than 256 bytes, or not UTF-8)\n",
		        info->name);
		return VIPRCTL_EXIT_USAGE;
	}
	if (rc < 0) {
		fprintf(stderr, "viprctl %s: no valid answer from %s: %s\n", info->name, sock,
		        rc == VP_ETIMEOUT ? "timed out" : vp_strerror(rc));
		return VIPRCTL_EXIT_PROTOCOL;
	}
	if (ans.code < 0) {
		if (json) {
			json_t *e = json_pack("{s:{s:i, s:s, s:s}}", "error", "code", ans.code, "name", vp_errname(ans.code),
			                      "message", ans.message);
			if (e)
				json_dumpf(e, stdout, JSON_INDENT(2));
			fputc('\n', stdout);
			json_decref(e);
		}
		fprintf(stderr, "viprctl %s: refused by the daemon: %s: %s\n", info->name, vp_errname(ans.code),
		        ans.message);
		return VIPRCTL_EXIT_REFUSED;
	}
	if (json) {
		json_dumpf(ans.data, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
	} else if (id == ADM_CMD_VALIDATION) {
		print_validation(stdout, ans.data);
	} else if (json_object_size(ans.data) == 0) {
		printf("ok\n");
	} else {
		print_object(stdout, ans.data, 0);
	}
	adm_answer_clear(&ans);
	return fflush(stdout) == 0 ? VIPRCTL_EXIT_OK : VIPRCTL_EXIT_PROTOCOL;
}
