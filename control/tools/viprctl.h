/*
 * control/viprctl.h - the operator's command-line tool: one function per
 * subcommand, dispatched from viprctl.c's table.  To add a subcommand, write
 * `int viprctl_<name>(int argc, char **argv)` (argv[0] is the subcommand name;
 * return the process exit status) and add a row to the table in viprctl.c.
 */
#ifndef VP_CONTROL_VIPRCTL_H
#define VP_CONTROL_VIPRCTL_H

/*! \brief `viprctl decode [--hex] FILE|-`: one RELOAD message as JSON. */
int viprctl_decode(int argc, char **argv);

#endif
