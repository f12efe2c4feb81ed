/*
 * control/tools/viprctl_admin.c - viprctl's admin commands: one request over the daemon's admin socket
 * (control/admin, docs/protocol.md §10), the answer printed for a person, or as JSON with --json.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
	} else if (json_object_size(ans.data) == 0) {
		printf("ok\n");
	} else {
		print_object(stdout, ans.data, 0);
	}
	adm_answer_clear(&ans);
	return fflush(stdout) == 0 ? VIPRCTL_EXIT_OK : VIPRCTL_EXIT_PROTOCOL;
}
