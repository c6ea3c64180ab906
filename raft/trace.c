/*
 * trace.c - writes a node's trace (the format: raft/trace.h). Every hook
 * formats its line on the stack and hands it to the writer, which only
 * appends it to a stdio buffer: the node's lock is held for a snprintf and
 * a memcpy, never for a write to the disk except the periodic flush.
 */
#include "raft/trace.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

struct trace_writer {
    pthread_mutex_t mu; /* guards everything below */
    FILE *f;
    uint64_t flushed_us; /* when the buffer last went to the file */
};

int trace_open(struct trace_writer **out, const char *path)
{
    struct trace_writer *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->f = fopen(path, "a");
    if (!t->f) {
        int rc = -errno;
        free(t);
        return rc;
    }
    pthread_mutex_init(&t->mu, NULL);
    *out = t;
    return 0;
}

void trace_close(struct trace_writer *t)
{
    if (!t)
        return;
    fclose(t->f);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

static uint64_t trace_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void trace_write(struct trace_writer *t, uint64_t now_us, const char *line, size_t len)
{
    pthread_mutex_lock(&t->mu);
    fwrite(line, 1, len, t->f);
    /* Bounded loss if the process dies: a crashed node's last lines are
     * what a reader of its timeline most wants to see. */
    if (now_us - t->flushed_us >= TRACE_FLUSH_MS * 1000u) {
        fflush(t->f);
        t->flushed_us = now_us;
    }
    pthread_mutex_unlock(&t->mu);
}

static const char *trace_bool(uint8_t v)
{
    return v ? "true" : "false";
}

static const char *trace_type_name(uint8_t type)
{
    static const char *names[] = {
        "?", "RequestVote", "RequestVoteReply", "AppendEntries", "AppendEntriesReply",
        "InstallSnapshot", "InstallSnapshotReply", "TimeoutNow", "TimeoutNowReply",
    };
    return type < sizeof(names) / sizeof(names[0]) ? names[type] : "?";
}

#define U(x) ((unsigned long long)(x))

/* The key fields of each message type, as JSON members after "term". */
static int trace_msg_fields(const struct raft_msg *m, char *buf, size_t cap)
{
    switch (m->type) {
    case RAFT_MSG_REQUEST_VOTE:
        return snprintf(buf, cap, "\"term\":%llu,\"last\":%llu,\"last_term\":%llu,"
                        "\"pre_vote\":%s", U(m->u.rv.term), U(m->u.rv.last_log_index),
                        U(m->u.rv.last_log_term), trace_bool(m->u.rv.pre_vote));
    case RAFT_MSG_REQUEST_VOTE_REPLY:
        return snprintf(buf, cap, "\"term\":%llu,\"granted\":%s,\"pre_vote\":%s",
                        U(m->u.rv_reply.term), trace_bool(m->u.rv_reply.vote_granted),
                        trace_bool(m->u.rv_reply.pre_vote));
    case RAFT_MSG_APPEND_ENTRIES:
        return snprintf(buf, cap, "\"term\":%llu,\"prev\":%llu,\"prev_term\":%llu,"
                        "\"commit\":%llu,\"entries\":%u", U(m->u.ae.term),
                        U(m->u.ae.prev_log_index), U(m->u.ae.prev_log_term),
                        U(m->u.ae.leader_commit), m->u.ae.n_entries);
    case RAFT_MSG_APPEND_ENTRIES_REPLY:
        return snprintf(buf, cap, "\"term\":%llu,\"success\":%s,\"match\":%llu,"
                        "\"conflict_term\":%llu,\"conflict_index\":%llu",
                        U(m->u.ae_reply.term), trace_bool(m->u.ae_reply.success),
                        U(m->u.ae_reply.match_index), U(m->u.ae_reply.conflict_term),
                        U(m->u.ae_reply.conflict_index));
    case RAFT_MSG_INSTALL_SNAPSHOT:
        return snprintf(buf, cap, "\"term\":%llu,\"last_index\":%llu,\"last_term\":%llu,"
                        "\"offset\":%llu,\"len\":%u,\"done\":%s", U(m->u.is.term),
                        U(m->u.is.last_index), U(m->u.is.last_term), U(m->u.is.offset),
                        m->u.is.len, trace_bool(m->u.is.done));
    case RAFT_MSG_INSTALL_SNAPSHOT_REPLY:
        return snprintf(buf, cap, "\"term\":%llu,\"next_offset\":%llu",
                        U(m->u.is_reply.term), U(m->u.is_reply.next_offset));
    case RAFT_MSG_TIMEOUT_NOW:
        return snprintf(buf, cap, "\"term\":%llu", U(m->u.tn.term));
    default:
        return snprintf(buf, cap, "\"term\":%llu", U(m->u.tn_reply.term));
    }
}

/* One line: the common members, then `rest` (members, no braces). */
static void trace_event_locked(struct raft_node *n, const char *ev, const char *rest)
{
    char line[640];
    uint64_t now = trace_wall_us();
    int len = snprintf(line, sizeof(line),
                       "{\"t\":%llu.%03u,\"node\":%u,\"term\":%llu,\"role\":\"%s\","
                       "\"ev\":\"%s\"%s%s}\n", U(now / 1000), (unsigned)(now % 1000),
                       n->cfg.id, U(n->current_term), raft_role_name(n->role), ev,
                       *rest ? "," : "", rest);
    if (len > 0 && (size_t)len < sizeof(line))
        trace_write(n->trace, now, line, (size_t)len);
}

static void trace_msg_locked(struct raft_node *n, const char *ev, const struct raft_msg *m,
                             uint32_t to)
{
    char fields[320], rest[480];
    trace_msg_fields(m, fields, sizeof(fields));
    snprintf(rest, sizeof(rest), "\"msg\":{\"id\":\"%u-%llu\",\"type\":\"%s\",\"from\":%u,"
             "\"to\":%u,%s}", m->from, U(m->id), trace_type_name(m->type), m->from, to,
             fields);
    trace_event_locked(n, ev, rest);
}

void trace_send_locked(struct raft_node *n, const struct raft_msg *m, uint32_t to)
{
    if (!n->trace)
        return;
    trace_observe_locked(n);
    trace_msg_locked(n, "send", m, to);
}

void trace_recv_locked(struct raft_node *n, const struct raft_msg *m)
{
    if (!n->trace)
        return;
    trace_observe_locked(n);
    trace_msg_locked(n, "recv", m, n->cfg.id);
}

static void trace_remember_locked(struct raft_node *n)
{
    n->traced.role = n->role;
    n->traced.term = n->current_term;
    n->traced.commit = n->commit_index;
    n->traced.applied = n->last_applied;
}

void trace_start_locked(struct raft_node *n)
{
    if (!n->trace)
        return;
    trace_remember_locked(n);
    char rest[96];
    snprintf(rest, sizeof(rest), "\"commit\":%llu,\"applied\":%llu", U(n->commit_index),
             U(n->last_applied));
    trace_event_locked(n, "role", rest);
}

void trace_observe_locked(struct raft_node *n)
{
    if (!n->trace)
        return;
    struct trace_seen *s = &n->traced;
    char rest[96];
    if (n->role != s->role || n->current_term != s->term) {
        snprintf(rest, sizeof(rest), "\"was\":\"%s\",\"was_term\":%llu",
                 raft_role_name(s->role), U(s->term));
        trace_event_locked(n, "role", rest);
    }
    if (n->commit_index > s->commit) {
        snprintf(rest, sizeof(rest), "\"index\":%llu,\"was\":%llu", U(n->commit_index),
                 U(s->commit));
        trace_event_locked(n, "commit", rest);
    }
    if (n->last_applied > s->applied) {
        snprintf(rest, sizeof(rest), "\"from\":%llu,\"to\":%llu", U(s->applied + 1),
                 U(n->last_applied));
        trace_event_locked(n, "apply", rest);
    }
    trace_remember_locked(n);
}
