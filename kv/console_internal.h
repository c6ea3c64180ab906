/*
 * console_internal.h - the state of the console of `raft cluster`, shared
 * by kv/console.c (reading lines, the node commands) and
 * kv/console_members.c (transfer and the member commands); not for use
 * outside kv/.
 */
#ifndef KV_CONSOLE_INTERNAL_H
#define KV_CONSOLE_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kv/console.h"

#define CONSOLE_LINE_MAX 4096

struct kv_client;

struct kv_console {
    struct kv_console_config cfg;
    pthread_t thread;
    int wake[2];        /* written by kv_console_stop: the thread ends */
    struct kv_client *client;
    /* Every node this console knows, by id: those the owner started and
     * those member add started; configs[i] is how to (re)start node i. */
    bool known[RAFT_MAX_ID + 1];
    struct kv_server_config configs[RAFT_MAX_ID + 1];
    bool isolated[RAFT_MAX_ID + 1]; /* kept across a crash and restart */
    char line[CONSOLE_LINE_MAX + 1];
    size_t have;
    bool overlong; /* the current line did not fit: skip to its end */
    bool done;     /* quit was typed */
};

/* One reply line, flushed at once. */
void console_reply(struct kv_console *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The next word of *s (NUL-terminated in place), *s moved past it; NULL at
 * the end of the line. */
char *console_next_word(char **s);

/* The rest of the line without its surrounding blanks, or NULL if empty. */
char *console_rest_of_line(char *s);

/* The number of a node this console knows, the only argument left on the
 * line; else an error reply naming `cmd` and -EINVAL. */
int console_node_arg(struct kv_console *c, const char *cmd, char *args, uint32_t *id);

/* transfer N, and member list | add N | remove N (console_members.c). */
void console_cmd_transfer(struct kv_console *c, char *args);
void console_cmd_member(struct kv_console *c, char *args);

#endif
