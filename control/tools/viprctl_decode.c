/*
 * control/viprctl_decode.c - `viprctl decode`: read one RELOAD message (link
 * framed or bare, binary or hex text) and print it as JSON, or a one-line
 * reason and a non-zero exit status if it is malformed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/errcode.h"
#include "common/hex.h"
#include "control/tools/viprctl.h"
#include "dataplane/reload.h"

/* Largest input read: a full DATA frame, as hex with generous whitespace. */
#define DECODE_MAX_INPUT (4u * (RL_FRAME_DATA_HDR_LEN + RL_MAX_MESSAGE_SIZE))

static int read_all(FILE *f, uint8_t *buf, size_t cap, size_t *len)
{
	size_t n = 0, r;
	*len = 0;
	while ((r = fread(buf + n, 1, cap - n, f)) > 0) {
		n += r;
		if (n == cap) {
			if (fgetc(f) != EOF)
				return VP_ETOOBIG;
			break;
		}
	}
	*len = n;
	return ferror(f) ? VP_EIO : 0;
}

static void decode_usage(FILE *f)
{
	fprintf(f, "usage: viprctl decode [--hex] FILE|-\n"
	           "  Prints one RELOAD message (a DATA/ACK frame or a bare message) as JSON.\n"
	           "  --hex  the input is hex text (whitespace allowed) instead of binary\n"
	           "  Exit status: 0 decoded, 1 malformed or unreadable input, 2 usage.\n");
}

int viprctl_decode(int argc, char **argv)
{
	const char *path = NULL;
	int hex = 0, ret = 1, e;
	uint8_t *in = NULL, *bin = NULL;
	size_t inlen = 0, binlen = 0;
	FILE *f = NULL;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--hex")) {
			hex = 1;
		} else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			decode_usage(stdout);
			return 0;
		} else if (!path && (argv[i][0] != '-' || !strcmp(argv[i], "-"))) {
			path = argv[i];
		} else {
			decode_usage(stderr);
			return 2;
		}
	}
	if (!path) {
		decode_usage(stderr);
		return 2;
	}
	f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
	if (!f) {
		fprintf(stderr, "viprctl decode: %s: %s\n", path, strerror(errno));
		return 1;
	}
	in = malloc(DECODE_MAX_INPUT);
	if (!in) {
		fprintf(stderr, "viprctl decode: %s\n", vp_strerror(VP_ENOMEM));
		goto out;
	}
	if ((e = read_all(f, in, DECODE_MAX_INPUT, &inlen))) {
		fprintf(stderr, "viprctl decode: %s: %s (%s)\n", path, vp_strerror(e), vp_errname(e));
		goto out;
	}
	bin = in;
	binlen = inlen;
	if (hex) {
		bin = malloc(inlen / 2 + 1);
		if (!bin) {
			fprintf(stderr, "viprctl decode: %s\n", vp_strerror(VP_ENOMEM));
			goto out;
		}
		if ((e = vp_hex_decode((const char *)in, inlen, bin, inlen / 2 + 1, &binlen))) {
			fprintf(stderr, "viprctl decode: %s (%s)\n", vp_strerror(e), vp_errname(e));
			goto out;
		}
	}
	if (binlen == 0) {
		fprintf(stderr, "viprctl decode: empty input\n");
		goto out;
	}
	e = rl_json_message(stdout, bin, binlen, rl_model_builtin, NULL);
	if (e) {
		fprintf(stderr, "viprctl decode: malformed RELOAD message: %s (%s)\n", vp_strerror(e),
		        vp_errname(e));
		goto out;
	}
	ret = 0;
out:
	if (bin != in)
		free(bin);
	free(in);
	if (f && f != stdin)
		fclose(f);
	return ret;
}
