/*
 * control/viprctl.h - the operator's command-line tool: one function per
 * subcommand, dispatched from viprctl.c's table.  To add a subcommand, write
 * `int viprctl_<name>(int argc, char **argv)` (argv[0] is the subcommand name;
 * return the process exit status) and add a row to the table in viprctl.c.
 */
#ifndef VP_CONTROL_VIPRCTL_H
#define VP_CONTROL_VIPRCTL_H

#include <stdbool.h>

/* Exit statuses of every admin command (README "viprctl"). */
enum {
	VIPRCTL_EXIT_OK = 0,       /* the daemon answered and the answer was printed */
	VIPRCTL_EXIT_REFUSED = 1,  /* the daemon answered with an error (refused, failed, not served) */
	VIPRCTL_EXIT_USAGE = 2,    /* bad command line: unknown command or option, wrong argument count */
	VIPRCTL_EXIT_CONNECT = 3,  /* no daemon reached: socket missing, permission denied, stale socket, busy */
	VIPRCTL_EXIT_PROTOCOL = 4, /* reached but no valid answer: timeout, connection closed, malformed answer */
};

/*! \brief The admin socket used when -s is not given. */
#define VIPRCTL_DEFAULT_SOCKET "/run/viprd/admin.sock"

/*! \brief `viprctl decode [--hex] FILE|-`: one RELOAD message as JSON. */
int viprctl_decode(int argc, char **argv);

/*!
 * \brief An admin command (argv[0] is its name from adm_commands[]; then its argument and --json) sent to
 * the daemon at \p sock, waiting at most \p timeout_ms.  Returns a VIPRCTL_EXIT_* status.
 */
int viprctl_admin(const char *sock, unsigned timeout_ms, int argc, char **argv);

#endif
