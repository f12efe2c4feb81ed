/*
 * control/viprctl.c - viprctl's entry point: a table of subcommands.
 */
#include <stdio.h>
#include <string.h>

#include "control/tools/viprctl.h"

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
	fprintf(f, "usage: viprctl <command> [args]\n\ncommands:\n");
	for (size_t i = 0; i < N_SUBCOMMANDS; i++)
		fprintf(f, "  %-28s %s\n", subcommands[i].usage, subcommands[i].summary);
	fprintf(f, "\n  %-28s %s\n", "--help", "this text");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	for (size_t i = 0; i < N_SUBCOMMANDS; i++)
		if (!strcmp(argv[1], subcommands[i].name))
			return subcommands[i].run(argc - 1, argv + 1);
	fprintf(stderr, "viprctl: unknown command '%s' (try viprctl --help)\n", argv[1]);
	return 2;
}
