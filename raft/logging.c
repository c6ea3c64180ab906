/*
 * logging.c - the node's clock and its log lines: one line per event, with
 * the time, the node, its term and role, then what happened and why.
 */
#include "raft/node.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

const char *raft_role_name(enum raft_role role)
{
    switch (role) {
    case RAFT_FOLLOWER: return "follower";
    case RAFT_PRE_CANDIDATE: return "pre-candidate";
    case RAFT_CANDIDATE: return "candidate";
    case RAFT_LEADER: return "leader";
    }
    return "?";
}

/* The default clock. On Linux CLOCK_BOOTTIME: monotonic like
 * CLOCK_MONOTONIC, but it also counts the time the machine was suspended,
 * which CLOCK_MONOTONIC skips. Read leases need that (thesis §6.4.1): a
 * leader waking from a suspend must not believe its lease still runs. */
uint64_t raft_now_ms(void)
{
    struct timespec ts;
#ifdef CLOCK_BOOTTIME
    clock_gettime(CLOCK_BOOTTIME, &ts);
#else
    clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static struct timespec process_start;
static pthread_once_t process_start_once = PTHREAD_ONCE_INIT;

static void note_process_start(void)
{
    clock_gettime(CLOCK_MONOTONIC, &process_start);
}

double raft_uptime(void)
{
    pthread_once(&process_start_once, note_process_start);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)(ts.tv_sec - process_start.tv_sec) +
           (double)(ts.tv_nsec - process_start.tv_nsec) / 1e9;
}

void raft_print_log_line(uint32_t node, const char *line)
{
    /* One colour per node, so interleaved logs of a cluster read apart. */
    static const char *colours[] = {"\033[36m", "\033[33m", "\033[35m",
                                     "\033[32m", "\033[34m", "\033[31m"};
    if (isatty(STDERR_FILENO))
        fprintf(stderr, "%s%s\033[0m\n", colours[node % 6], line);
    else
        fprintf(stderr, "%s\n", line);
}

/* Formats "  1.204  n2  T3  candidate  what happened" and hands it on. */
void node_log(struct raft_node *n, enum raft_log_level level,
              const char *fmt, ...)
{
    if (level > n->cfg.log_level)
        return;
    char msg[512], line[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(line, sizeof(line), "%7.3f  n%u  T%-3llu %-13s %s%s",
             raft_uptime(), n->cfg.id,
             (unsigned long long)n->current_term, raft_role_name(n->role),
             level == RAFT_LOG_ERROR ? "ERROR: " :
             level == RAFT_LOG_WARN ? "warning: " : "", msg);
    if (n->cfg.log_line)
        n->cfg.log_line(n->cfg.log_ctx, n->cfg.id, level, line);
    else
        raft_print_log_line(n->cfg.id, line);
}
