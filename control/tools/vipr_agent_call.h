/*
 * control/tools/vipr_agent_call.h - `vipr-agent call`: one call over learned routes (docs/protocol.md §11).
 */
#ifndef VP_CONTROL_TOOLS_VIPR_AGENT_CALL_H
#define VP_CONTROL_TOOLS_VIPR_AGENT_CALL_H

/*! \brief The `call` subcommand; \p argv[0] is "call".  Exit status as documented in the .c file. */
int vipr_agent_call_main(int argc, char **argv);

#endif
