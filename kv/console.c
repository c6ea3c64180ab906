/*
 * console.c - commands on standard input that act on a running
 * `raft cluster` (see console.h for the list).
 *
 * One thread reads lines and runs each command to its end before it reads
 * the next, so a pipe can write a command and read its reply line. put and
 * get go through a client session over TCP, exactly as `raft client` does:
 * the console has no back door into a node's state machine, so what it
 * reads is what any client would read. crash, restart and isolate act on
 * the kv_server objects of this process.
 */
#include "kv/console.h"

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kv/client.h"
#include "kv/console_internal.h"

/* One line on the reply stream, flushed at once: a pipe reads it now. */
void console_reply(struct kv_console *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(c->cfg.out, fmt, ap);
    va_end(ap);
    fputc('\n', c->cfg.out);
    fflush(c->cfg.out);
}

/* ---- words ---- */

char *console_next_word(char **s)
{
    char *p = *s;
    while (*p && isspace((unsigned char)*p))
        p++;
    if (!*p)
        return NULL;
    char *w = p;
    while (*p && !isspace((unsigned char)*p))
        p++;
    if (*p)
        *p++ = '\0';
    *s = p;
    return w;
}

char *console_rest_of_line(char *s)
{
    while (*s && isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return n ? s : NULL;
}

/* "from 0 to 2" while the nodes are 0 .. k, else "one of 0, 1, 3". */
static void describe_ids(const struct kv_console *c, char *buf, size_t cap)
{
    uint32_t top = 0, count = 0;
    for (uint32_t i = 0; i <= RAFT_MAX_ID; i++)
        if (c->known[i]) {
            top = i;
            count++;
        }
    if (count == top + 1) {
        snprintf(buf, cap, "from 0 to %u", top);
        return;
    }
    size_t used = (size_t)snprintf(buf, cap, "one of");
    for (uint32_t i = 0; i <= RAFT_MAX_ID && used < cap; i++)
        if (c->known[i])
            used += (size_t)snprintf(buf + used, cap - used, "%s %u", used > 6 ? "," : "", i);
}

int console_node_arg(struct kv_console *c, const char *cmd, char *args, uint32_t *id)
{
    char *w = console_next_word(&args);
    char *extra = console_next_word(&args);
    char *end = NULL;
    long v = w ? strtol(w, &end, 10) : -1;
    if (!w || extra || *end || v < 0 || v > RAFT_MAX_ID || !c->known[v]) {
        char ids[256];
        describe_ids(c, ids, sizeof(ids));
        console_reply(c, "error: %s takes one node number, %s; got %s.", cmd, ids,
                      !w ? "none" : extra ? "more than one argument" : w);
        return -EINVAL;
    }
    *id = (uint32_t)v;
    return 0;
}

/* ---- the commands ---- */

static void cmd_help(struct kv_console *c, char *args)
{
    (void)args;
    char ids[256];
    describe_ids(c, ids, sizeof(ids));
    console_reply(c, "commands: status | put K V | get K | crash N | restart N | isolate N | "
                  "heal | transfer N | member list | member add N | member remove N | quit "
                  "(nodes are numbered %s)", ids + (strncmp(ids, "from ", 5) ? 0 : 5));
}

static void cmd_status(struct kv_console *c, char *args)
{
    (void)args;
    for (uint32_t i = 0; i <= RAFT_MAX_ID; i++) {
        if (!c->known[i])
            continue;
        struct kv_server *s = c->cfg.servers[i];
        if (!s) {
            console_reply(c, "n%u role=down (crashed: restart %u brings it back)", i, i);
            continue;
        }
        struct raft_status st;
        kv_server_status(s, &st);
        char leader[16] = "none";
        if (st.leader != RAFT_NO_NODE)
            snprintf(leader, sizeof(leader), "n%d", st.leader);
        console_reply(c, "n%u role=%s term=%llu leader=%s commit=%llu applied=%llu last_index=%llu%s",
              i, raft_role_name(st.role), (unsigned long long)st.term, leader,
              (unsigned long long)st.commit, (unsigned long long)st.applied,
              (unsigned long long)st.last_index, kv_server_isolated(s) ? " isolated" : "");
    }
}

static bool key_fits(struct kv_console *c, const char *cmd, const char *key)
{
    if (strlen(key) <= CLIENT_MAX_KEY)
        return true;
    console_reply(c, "error: %s takes a key of at most %d bytes; got %zu.", cmd, CLIENT_MAX_KEY,
          strlen(key));
    return false;
}

static void cmd_put(struct kv_console *c, char *args)
{
    char *key = console_next_word(&args);
    char *value = key ? console_rest_of_line(args) : NULL;
    if (!value) {
        console_reply(c, "error: put takes a key and a value, as in: put greeting hello.");
        return;
    }
    if (!key_fits(c, "put", key))
        return;
    if (strlen(value) > CLIENT_MAX_VALUE) {
        console_reply(c, "error: put takes a value of at most %d bytes; got %zu.", CLIENT_MAX_VALUE,
              strlen(value));
        return;
    }
    int rc = kv_client_put(c->client, key, (uint32_t)strlen(key), value,
                           (uint32_t)strlen(value));
    if (rc == 0)
        console_reply(c, "ok: %s = %s", key, value);
    else if (rc == -EINVAL)
        console_reply(c, "error: the cluster refused the put as malformed.");
    else
        console_reply(c, "error: no leader acknowledged the put within %.1f s; it may or may not "
                 "have taken effect.", c->cfg.client_timeout_ms / 1000.0);
}

static void cmd_get(struct kv_console *c, char *args)
{
    char *key = console_next_word(&args);
    if (!key || console_next_word(&args)) {
        console_reply(c, "error: get takes one key, as in: get greeting.");
        return;
    }
    if (!key_fits(c, "get", key))
        return;
    uint8_t *value = NULL;
    uint32_t len = 0;
    int rc = kv_client_get(c->client, key, (uint32_t)strlen(key), &value, &len);
    if (rc == 0)
        console_reply(c, "%.*s", (int)len, (const char *)value);
    else if (rc == -ENOENT)
        console_reply(c, "error: the key %s does not exist.", key);
    else if (rc == -EINVAL)
        console_reply(c, "error: the cluster refused the get as malformed.");
    else
        console_reply(c, "error: no leader answered within %.1f s.", c->cfg.client_timeout_ms / 1000.0);
    free(value);
}

static void cmd_crash(struct kv_console *c, char *args)
{
    uint32_t id;
    if (console_node_arg(c, "crash", args, &id))
        return;
    if (!c->cfg.servers[id]) {
        console_reply(c, "error: n%u is already down; restart %u brings it back.", id, id);
        return;
    }
    kv_server_crash(c->cfg.servers[id]);
    c->cfg.servers[id] = NULL;
    console_reply(c, "ok: n%u crashed", id);
}

static void cmd_restart(struct kv_console *c, char *args)
{
    uint32_t id;
    if (console_node_arg(c, "restart", args, &id))
        return;
    if (c->cfg.servers[id]) {
        console_reply(c, "error: n%u is running; crash %u first.", id, id);
        return;
    }
    int rc = kv_server_start(&c->cfg.servers[id], &c->configs[id]);
    if (rc) {
        c->cfg.servers[id] = NULL;
        console_reply(c, "error: n%u could not restart (%s); its log says why.", id, strerror(-rc));
        return;
    }
    if (c->isolated[id])
        kv_server_isolate(c->cfg.servers[id], true);
    console_reply(c, "ok: n%u restarted from %s%s", id, c->configs[id].data_dir,
          c->isolated[id] ? ", still isolated" : "");
}

static void cmd_isolate(struct kv_console *c, char *args)
{
    uint32_t id;
    if (console_node_arg(c, "isolate", args, &id))
        return;
    c->isolated[id] = true;
    if (c->cfg.servers[id])
        kv_server_isolate(c->cfg.servers[id], true);
    console_reply(c, "ok: n%u isolated from its peers (clients still reach it)", id);
}

static void cmd_heal(struct kv_console *c, char *args)
{
    (void)args;
    char healed[(RAFT_MAX_ID + 1) * 4 + 1] = "";
    for (uint32_t i = 0; i <= RAFT_MAX_ID; i++) {
        if (!c->isolated[i])
            continue;
        c->isolated[i] = false;
        if (c->cfg.servers[i])
            kv_server_isolate(c->cfg.servers[i], false);
        size_t used = strlen(healed);
        snprintf(healed + used, sizeof(healed) - used, " n%u", i);
    }
    if (healed[0])
        console_reply(c, "ok: healed%s", healed);
    else
        console_reply(c, "ok: no node was isolated");
}

static void cmd_quit(struct kv_console *c, char *args)
{
    (void)args;
    console_reply(c, "ok: stopping");
    c->done = true;
}

static const struct {
    const char *name;
    bool takes_args;
    void (*run)(struct kv_console *c, char *args);
} commands[] = {
    {"help", false, cmd_help},       {"status", false, cmd_status},
    {"put", true, cmd_put},          {"get", true, cmd_get},
    {"crash", true, cmd_crash},      {"restart", true, cmd_restart},
    {"isolate", true, cmd_isolate},  {"heal", false, cmd_heal},
    {"transfer", true, console_cmd_transfer}, {"member", true, console_cmd_member},
    {"quit", false, cmd_quit},
};

static void run_line(struct kv_console *c, char *line)
{
    char *cmd = console_next_word(&line);
    if (!cmd)
        return; /* a blank line */
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(cmd, commands[i].name) != 0)
            continue;
        if (!commands[i].takes_args && console_rest_of_line(line)) {
            console_reply(c, "error: %s takes no arguments.", cmd);
            return;
        }
        commands[i].run(c, line);
        return;
    }
    console_reply(c, "error: unknown command %s; the commands are help, status, put K V, "
                  "get K, crash N, restart N, isolate N, heal, transfer N, member list, "
                  "member add N, member remove N and quit.", cmd);
}

/* ---- reading ---- */

/* Runs every complete line in the buffer, keeping the start of the next. */
static void run_lines(struct kv_console *c)
{
    char *nl;
    while (!c->done && (nl = memchr(c->line, '\n', c->have)) != NULL) {
        *nl = '\0';
        size_t used = (size_t)(nl - c->line) + 1;
        if (c->overlong)
            c->overlong = false; /* the tail of a line already refused */
        else
            run_line(c, c->line);
        c->have -= used;
        memmove(c->line, nl + 1, c->have);
    }
    if (c->have == CONSOLE_LINE_MAX) {
        if (!c->overlong)
            console_reply(c, "error: a command line has at most %d bytes.", CONSOLE_LINE_MAX);
        c->overlong = true;
        c->have = 0;
    }
}

/* Waits for input or for kv_console_stop. Returns 1 when input is ready,
 * 0 at end of input or on stop. */
static int wait_input(struct kv_console *c)
{
    struct pollfd fds[2] = {{.fd = c->cfg.in_fd, .events = POLLIN},
                            {.fd = c->wake[0], .events = POLLIN}};
    for (;;) {
        int rc = poll(fds, 2, -1);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc < 0 || fds[1].revents)
            return 0;
        if (fds[0].revents & POLLNVAL)
            return 0; /* no standard input at all */
        return 1;     /* readable, or hung up: read() tells which */
    }
}

static void *console_main(void *arg)
{
    struct kv_console *c = arg;
    /* One iteration: what the input has for us, then every whole line. */
    while (!c->done && wait_input(c)) {
        ssize_t n = read(c->cfg.in_fd, c->line + c->have, CONSOLE_LINE_MAX - c->have);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0) {
            /* End of input: a last line without its newline still counts. */
            if (c->have && !c->overlong) {
                c->line[c->have] = '\0';
                run_line(c, c->line);
            }
            if (!c->done && isatty(c->cfg.in_fd))
                console_reply(c, "end of input: the cluster runs on until SIGINT (Ctrl-C) or SIGTERM");
            break;
        }
        c->have += (size_t)n;
        run_lines(c);
    }
    if (c->done)
        c->cfg.quit(c->cfg.ctx);
    return NULL;
}

int kv_console_start(struct kv_console **out, const struct kv_console_config *cfg)
{
    struct kv_console *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->cfg = *cfg;
    c->wake[0] = c->wake[1] = -1;
    if (c->cfg.client_timeout_ms == 0) /* even in slow motion */
        c->cfg.client_timeout_ms = 5000 + 4 * cfg->configs[0].raft.election_timeout_max_ms;
    char *addrs[RAFT_MAX_NODES];
    for (uint32_t i = 0; i < cfg->n && i < RAFT_MAX_NODES; i++) {
        addrs[i] = cfg->configs[0].peers[i];
        c->configs[i] = cfg->configs[i];
        c->known[i] = true;
    }
    int rc = kv_client_open(&c->client, addrs, cfg->n, c->cfg.client_timeout_ms);
    if (rc == 0 && pipe(c->wake) != 0)
        rc = -errno;
    if (rc == 0 && isatty(cfg->in_fd))
        console_reply(c, "type help for commands");
    if (rc == 0)
        rc = -pthread_create(&c->thread, NULL, console_main, c);
    if (rc) {
        kv_client_close(c->client);
        if (c->wake[0] >= 0) {
            close(c->wake[0]);
            close(c->wake[1]);
        }
        free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void kv_console_stop(struct kv_console *c)
{
    if (!c)
        return;
    /* Wakes the thread if it waits for input; if it is running a command,
     * it sees the byte once the command is done. */
    if (write(c->wake[1], "", 1) < 0)
        perror("console");
    pthread_join(c->thread, NULL);
    close(c->wake[0]);
    close(c->wake[1]);
    kv_client_close(c->client);
    free(c);
}
