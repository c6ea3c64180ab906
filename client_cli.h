/*
 * client_cli.h - `raft client`: its options and command words (parsed
 * here), run by client_cmd.c and member_cmd.c.
 */
#ifndef CLIENT_CLI_H
#define CLIENT_CLI_H

/* raft client --cluster HOST:PORT,... [options] COMMAND ...; returns the
 * process's exit code. */
int cli_cmd_client(int argc, char **argv);

#endif
