/*
 * trace.c - writes a node's trace (the format: raft/trace.h).
 *
 * The hooks run with the node's lock held, on the path of every message,
 * so a line costs as little as it can: it is formatted once, on the stack,
 * by the small appenders below (no printf: three nested snprintf calls took
 * about 1 us a line, most of it in vfprintf), then copied into the
 * writer's buffer. The buffer goes to the file when it is full, when a
 * line finds it TRACE_FLUSH_MS old, and when the node stops; a line is
 * never split between two writes, so a killed process leaves whole lines.
 *
 * A restart numbers its messages from a boot of its own (trace.h): the
 * writer reads the boot of the last line of the file that carries one,
 * and the start line of the new boot goes to the file at once, before the
 * node can send anything, so that even a boot killed before its first
 * flush is counted by the next.
 */
#include "raft/trace.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TRACE_BUFFER_BYTES (64 * 1024)
#define TRACE_LINE_MAX 640
#define TRACE_SCAN_CHUNK (64 * 1024)

struct trace_writer {
    pthread_mutex_t mu; /* guards everything below */
    int fd;
    uint64_t boot;       /* this node's boot in the file: 1 for a new file */
    uint64_t flushed_us; /* when the buffer last went to the file */
    size_t len;          /* bytes in buf */
    char buf[TRACE_BUFFER_BYTES];
};

/* ---- the file ---- */

static uint64_t trace_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Writes all of buf[0..len) and empties it. A trace is an aid, not state:
 * if the disk refuses, the lines are dropped rather than retried forever. */
static void trace_drain_locked(struct trace_writer *t)
{
    size_t off = 0;
    while (off < t->len) {
        ssize_t k = write(t->fd, t->buf + off, t->len - off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        off += (size_t)k;
    }
    t->len = 0;
}

static void trace_write(struct trace_writer *t, uint64_t now_us, const char *line, size_t len)
{
    pthread_mutex_lock(&t->mu);
    if (t->len + len > sizeof(t->buf))
        trace_drain_locked(t);
    memcpy(t->buf + t->len, line, len);
    t->len += len;
    /* Bounded loss if the process dies: a crashed node's last lines are
     * what a reader of its timeline most wants to see. */
    if (now_us - t->flushed_us >= TRACE_FLUSH_MS * 1000u) {
        trace_drain_locked(t);
        t->flushed_us = now_us;
    }
    pthread_mutex_unlock(&t->mu);
}

static void trace_flush(struct trace_writer *t)
{
    pthread_mutex_lock(&t->mu);
    trace_drain_locked(t);
    pthread_mutex_unlock(&t->mu);
}

/* Reads digits at p into *v; returns the first byte after them, or NULL if
 * there are none or they do not end before `end`. */
static const char *scan_u64(const char *p, const char *end, uint64_t *v)
{
    if (p >= end || *p < '0' || *p > '9')
        return NULL;
    *v = 0;
    while (p < end && *p >= '0' && *p <= '9')
        *v = *v * 10 + (uint64_t)(*p++ - '0');
    return p < end ? p : NULL;
}

/* The boot that a line's member at p names, or 0 if p holds no whole one:
 * a start line's `"boot":B` or a send's `"id":"S-N"` (boot 1) or
 * `"id":"S-B.N"`. */
static uint64_t boot_at(const char *p, const char *end, bool is_send)
{
    uint64_t a, b;
    if (!is_send)
        return (p = scan_u64(p, end, &a)) && (*p == ',' || *p == '}') ? a : 0;
    if (!(p = scan_u64(p, end, &a)) || *p != '-' || !(p = scan_u64(p + 1, end, &a)))
        return 0;
    if (*p == '"')
        return 1;
    return *p == '.' && (p = scan_u64(p + 1, end, &b)) && *p == '"' ? a : 0;
}

/* Where key first occurs in [p, end), or NULL. */
static const char *find(const char *p, const char *end, const char *key, size_t klen)
{
    for (; p + klen <= end; p++)
        if (*p == *key && memcmp(p, key, klen) == 0)
            return p;
    return NULL;
}

/* The boot named by the last line in buf[0..len) that names one; 0 if none. */
static uint64_t last_boot_in(const char *buf, size_t len)
{
    static const char send_key[] = "\"ev\":\"send\",\"msg\":{\"id\":\"";
    static const char boot_key[] = "\"boot\":";
    const char *end = buf + len;
    for (const char *p = end; p > buf;) {
        const char *line = p - 1;
        while (line > buf && line[-1] != '\n')
            line--;
        const char *s = find(line, p, send_key, sizeof(send_key) - 1);
        const char *b = s ? NULL : find(line, p, boot_key, sizeof(boot_key) - 1);
        uint64_t boot = s ? boot_at(s + sizeof(send_key) - 1, p, true)
                      : b ? boot_at(b + sizeof(boot_key) - 1, p, false) : 0;
        if (boot)
            return boot;
        p = line;
    }
    return 0;
}

/* The boot of the last line of the file that names one, reading it
 * backwards a chunk at a time (the last send is almost always in the last
 * chunk); 0 for a file that names none. Sets *torn if the file does not end
 * with a newline (a line cut short when its process died). */
static uint64_t trace_last_boot(int fd, bool *torn)
{
    struct stat st;
    *torn = false;
    if (fstat(fd, &st) != 0 || st.st_size <= 0)
        return 0;
    char *chunk = malloc(TRACE_SCAN_CHUNK + TRACE_LINE_MAX);
    if (!chunk)
        return 0;
    uint64_t boot = 0;
    off_t end = st.st_size; /* scan [start, end), then go back one chunk */
    while (end > 0 && !boot) {
        off_t start = end > TRACE_SCAN_CHUNK ? end - TRACE_SCAN_CHUNK : 0;
        /* A line across the chunk's start is read whole in the next chunk;
         * the part read here begins at the first newline. */
        off_t stop = end + TRACE_LINE_MAX < st.st_size ? end + TRACE_LINE_MAX : st.st_size;
        ssize_t got = pread(fd, chunk, (size_t)(stop - start), start);
        if (got <= 0)
            break;
        if (stop == st.st_size)
            *torn = *torn || chunk[got - 1] != '\n';
        const char *from = chunk;
        if (start > 0) {
            from = memchr(chunk, '\n', (size_t)got);
            from = from ? from + 1 : chunk + got;
        }
        boot = last_boot_in(from, (size_t)(chunk + got - from));
        end = start;
    }
    free(chunk);
    return boot;
}

int trace_open(struct trace_writer **out, const char *path)
{
    struct trace_writer *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
    if (t->fd < 0) {
        int rc = -errno;
        free(t);
        return rc;
    }
    bool torn;
    t->boot = trace_last_boot(t->fd, &torn) + 1;
    t->flushed_us = trace_wall_us();
    if (torn) /* the cut line stays alone on its line, unread by raft timeline */
        t->buf[t->len++] = '\n';
    pthread_mutex_init(&t->mu, NULL);
    *out = t;
    return 0;
}

void trace_close(struct trace_writer *t)
{
    if (!t)
        return;
    trace_flush(t);
    close(t->fd);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

uint64_t trace_first_msg_seq(const struct trace_writer *t)
{
    return t ? (t->boot - 1) << TRACE_BOOT_SHIFT : 0;
}

/* ---- one line ---- */

struct trace_line {
    char buf[TRACE_LINE_MAX];
    size_t len;
};

/* Appends k bytes; a line that would not fit is cut, and then not written. */
static inline void put_bytes(struct trace_line *l, const char *s, size_t k)
{
    if (l->len + k < sizeof(l->buf))
        memcpy(l->buf + l->len, s, k);
    l->len += k;
}

/* Inline, so that the length of a literal is known when compiling. */
static inline void put(struct trace_line *l, const char *s)
{
    put_bytes(l, s, strlen(s));
}

static void put_u64(struct trace_line *l, uint64_t v)
{
    char digits[20];
    size_t k = sizeof(digits);
    do
        digits[--k] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    put_bytes(l, digits + k, sizeof(digits) - k);
}

/* key is the member's name with its quotes, colon and any leading comma. */
static void put_num(struct trace_line *l, const char *key, uint64_t v)
{
    put(l, key);
    put_u64(l, v);
}

static void put_bool(struct trace_line *l, const char *key, bool v)
{
    put(l, key);
    put(l, v ? "true" : "false");
}

/* Milliseconds with three decimals: microseconds, as "t" is written. */
static void put_ms(struct trace_line *l, uint64_t us)
{
    put_u64(l, us / 1000);
    char frac[5] = {'.', (char)('0' + us / 100 % 10), (char)('0' + us / 10 % 10),
                    (char)('0' + us % 10), '\0'};
    put(l, frac);
}

/* A message id as trace.h spells it: "S-N" in boot 1, "S-B.N" after. */
static void put_msg_id(struct trace_line *l, uint32_t from, uint64_t id)
{
    put_u64(l, from);
    put(l, "-");
    if (id >> TRACE_BOOT_SHIFT) {
        put_u64(l, (id >> TRACE_BOOT_SHIFT) + 1);
        put(l, ".");
    }
    put_u64(l, id & ((1ull << TRACE_BOOT_SHIFT) - 1));
}

/* The members every line starts with; the caller adds its own and ends it. */
static void line_begin_locked(struct trace_line *l, const struct raft_node *n, uint64_t now,
                              const char *ev)
{
    l->len = 0;
    put(l, "{\"t\":");
    put_ms(l, now);
    put_num(l, ",\"node\":", n->cfg.id);
    put_num(l, ",\"term\":", n->current_term);
    put(l, ",\"role\":\"");
    put(l, raft_role_name(n->role));
    put(l, "\",\"ev\":\"");
    put(l, ev);
    put(l, "\"");
}

static void line_end_locked(struct trace_line *l, struct raft_node *n, uint64_t now)
{
    put(l, "}\n");
    if (l->len < sizeof(l->buf))
        trace_write(n->trace, now, l->buf, l->len);
}

static const char *trace_type_name(uint8_t type)
{
    static const char *names[] = {
        "?", "RequestVote", "RequestVoteReply", "AppendEntries", "AppendEntriesReply",
        "InstallSnapshot", "InstallSnapshotReply", "TimeoutNow", "TimeoutNowReply",
    };
    return type < sizeof(names) / sizeof(names[0]) ? names[type] : "?";
}

/* The key fields of each message type, after "to". */
static void put_msg_fields(struct trace_line *l, const struct raft_msg *m)
{
    switch (m->type) {
    case RAFT_MSG_REQUEST_VOTE:
        put_num(l, ",\"term\":", m->u.rv.term);
        put_num(l, ",\"last\":", m->u.rv.last_log_index);
        put_num(l, ",\"last_term\":", m->u.rv.last_log_term);
        put_bool(l, ",\"pre_vote\":", m->u.rv.pre_vote);
        break;
    case RAFT_MSG_REQUEST_VOTE_REPLY:
        put_num(l, ",\"term\":", m->u.rv_reply.term);
        put_bool(l, ",\"granted\":", m->u.rv_reply.vote_granted);
        put_bool(l, ",\"pre_vote\":", m->u.rv_reply.pre_vote);
        break;
    case RAFT_MSG_APPEND_ENTRIES:
        put_num(l, ",\"term\":", m->u.ae.term);
        put_num(l, ",\"prev\":", m->u.ae.prev_log_index);
        put_num(l, ",\"prev_term\":", m->u.ae.prev_log_term);
        put_num(l, ",\"commit\":", m->u.ae.leader_commit);
        put_num(l, ",\"entries\":", m->u.ae.n_entries);
        break;
    case RAFT_MSG_APPEND_ENTRIES_REPLY:
        put_num(l, ",\"term\":", m->u.ae_reply.term);
        put_bool(l, ",\"success\":", m->u.ae_reply.success);
        put_num(l, ",\"match\":", m->u.ae_reply.match_index);
        put_num(l, ",\"conflict_term\":", m->u.ae_reply.conflict_term);
        put_num(l, ",\"conflict_index\":", m->u.ae_reply.conflict_index);
        break;
    case RAFT_MSG_INSTALL_SNAPSHOT:
        put_num(l, ",\"term\":", m->u.is.term);
        put_num(l, ",\"last_index\":", m->u.is.last_index);
        put_num(l, ",\"last_term\":", m->u.is.last_term);
        put_num(l, ",\"offset\":", m->u.is.offset);
        put_num(l, ",\"len\":", m->u.is.len);
        put_bool(l, ",\"done\":", m->u.is.done);
        break;
    case RAFT_MSG_INSTALL_SNAPSHOT_REPLY:
        put_num(l, ",\"term\":", m->u.is_reply.term);
        put_num(l, ",\"next_offset\":", m->u.is_reply.next_offset);
        break;
    case RAFT_MSG_TIMEOUT_NOW:
        put_num(l, ",\"term\":", m->u.tn.term);
        break;
    default:
        put_num(l, ",\"term\":", m->u.tn_reply.term);
    }
}

static void trace_msg_locked(struct raft_node *n, const char *ev, const struct raft_msg *m,
                             uint32_t to)
{
    struct trace_line l;
    uint64_t now = trace_wall_us();
    line_begin_locked(&l, n, now, ev);
    put(&l, ",\"msg\":{\"id\":\"");
    put_msg_id(&l, m->from, m->id);
    put(&l, "\",\"type\":\"");
    put(&l, trace_type_name(m->type));
    put_num(&l, "\",\"from\":", m->from);
    put_num(&l, ",\"to\":", to);
    put_msg_fields(&l, m);
    put(&l, "}");
    line_end_locked(&l, n, now);
}

/* ---- the hooks ---- */

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
    struct trace_line l;
    uint64_t now = trace_wall_us();
    line_begin_locked(&l, n, now, "role");
    put_num(&l, ",\"commit\":", n->commit_index);
    put_num(&l, ",\"applied\":", n->last_applied);
    put_num(&l, ",\"boot\":", n->trace->boot);
    line_end_locked(&l, n, now);
    trace_flush(n->trace); /* the boot is on file before any message it numbers */
}

void trace_observe_locked(struct raft_node *n)
{
    if (!n->trace)
        return;
    struct trace_seen *s = &n->traced;
    bool role = n->role != s->role || n->current_term != s->term;
    bool commit = n->commit_index > s->commit, apply = n->last_applied > s->applied;
    if (!role && !commit && !apply)
        return;
    struct trace_line l;
    uint64_t now = trace_wall_us();
    if (role) {
        line_begin_locked(&l, n, now, "role");
        put(&l, ",\"was\":\"");
        put(&l, raft_role_name(s->role));
        put_num(&l, "\",\"was_term\":", s->term);
        line_end_locked(&l, n, now);
    }
    if (commit) {
        line_begin_locked(&l, n, now, "commit");
        put_num(&l, ",\"index\":", n->commit_index);
        put_num(&l, ",\"was\":", s->commit);
        line_end_locked(&l, n, now);
    }
    if (apply) {
        line_begin_locked(&l, n, now, "apply");
        put_num(&l, ",\"from\":", s->applied + 1);
        put_num(&l, ",\"to\":", n->last_applied);
        line_end_locked(&l, n, now);
    }
    trace_remember_locked(n);
}
