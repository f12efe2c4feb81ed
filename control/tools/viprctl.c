/*
 * control/tools/viprctl.c - viprctl's entry point: global options, then a table of local subcommands
 * (decode) and the admin protocol's catalogue (adm_commands[], control/admin), so the commands the tool
 * offers are the ones the protocol defines.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/admin/admin.h"
#include "control/tools/viprctl.h"

/* An admin answer that crosses the overlay (fetch, probe) is bounded by the daemon's own transaction
 * timeouts; 10 s leaves room for those and still ends a stuck call. */
#define VIPRCTL_DEFAULT_TIMEOUT_MS 10000
#define VIPRCTL_MAX_TIMEOUT_MS 3600000

typedef struct subcommand {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *usage;
	const char *summary;
} subcommand_t;

static const subcommand_t subcommands[] = {
	{ "decode", viprctl_decode, "decode [--hex] FILE|-",
	  "print one RELOAD message (framed or bare; binary, or hex with --hex) as JSON" },
};

#define N_SUBCOMMANDS (sizeof(subcommands) / sizeof(subcommands[0]))

static void usage(FILE *f)
{
	fprintf(f, "usage: viprctl [-s SOCKET] [-t MS] <command> [args] [--json]\n\n"
	           "options:\n"
	           "  -s, --socket SOCKET          the daemon's admin socket (default %s)\n"
	           "  -t, --timeout MS             wait at most MS milliseconds for the answer (default %d)\n"
	           "\nadmin commands (answers for a person; the protocol's JSON object with --json):\n",
	        VIPRCTL_DEFAULT_SOCKET, VIPRCTL_DEFAULT_TIMEOUT_MS);
	for (int i = 0; i < ADM_CMD__COUNT; i++) {
		char u[64];
		snprintf(u, sizeof(u), "%s%s%s", adm_commands[i].name, adm_commands[i].arg ? " " : "",
		         adm_commands[i].arg ? adm_commands[i].arg_help : "");
		fprintf(f, "  %-28s %s%s\n", u, adm_commands[i].access == ADM_WRITE ? "[changes the node] " : "",
		        adm_commands[i].summary);
	}
	fprintf(f, "\nlocal commands:\n");
	for (size_t i = 0; i < N_SUBCOMMANDS; i++)
		fprintf(f, "  %-28s %s\n", subcommands[i].usage, subcommands[i].summary);
	fprintf(f, "\n  %-28s %s\n", "--help", "this text");
	fprintf(f, "\nexit status: 0 ok, 1 the daemon refused, 2 usage, 3 daemon not reachable, "
	           "4 no valid answer (timeout, closed, malformed)\n");
}

int main(int argc, char **argv)
{
	const char *sock = VIPRCTL_DEFAULT_SOCKET;
	unsigned timeout_ms = VIPRCTL_DEFAULT_TIMEOUT_MS;
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		const char *o = argv[i];
		if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
			usage(stdout);
			return 0;
		}
		if (!strcmp(o, "-s") || !strcmp(o, "--socket") || !strcmp(o, "-t") || !strcmp(o, "--timeout")) {
			if (i + 1 >= argc) {
				fprintf(stderr, "viprctl: %s needs a value\n", o);
				return VIPRCTL_EXIT_USAGE;
			}
			const char *v = argv[++i];
			if (o[1] == 's' || !strcmp(o, "--socket")) {
				sock = v;
			} else {
				char *end;
				unsigned long ms = strtoul(v, &end, 10);
				if (!*v || *end || ms == 0 || ms > VIPRCTL_MAX_TIMEOUT_MS) {
					fprintf(stderr, "viprctl: %s: a number of milliseconds in 1..%d\n", o,
					        VIPRCTL_MAX_TIMEOUT_MS);
					return VIPRCTL_EXIT_USAGE;
				}
				timeout_ms = (unsigned)ms;
			}
			continue;
		}
		fprintf(stderr, "viprctl: unknown option '%s' (try viprctl --help)\n", o);
		return VIPRCTL_EXIT_USAGE;
	}
	if (i >= argc) {
		usage(stderr);
		return VIPRCTL_EXIT_USAGE;
	}
	if (!strcmp(argv[i], "help")) {
		usage(stdout);
		return 0;
	}
	for (size_t k = 0; k < N_SUBCOMMANDS; k++)
		if (!strcmp(argv[i], subcommands[k].name))
			return subcommands[k].run(argc - i, argv + i);
	return viprctl_admin(sock, timeout_ms, argc - i, argv + i);
}
