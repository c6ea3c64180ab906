/*
 * logging.c - the node's clock and its log lines: one line per event, with
 * the time, the node, its term and role, then what happened and why.
 *
 * Lines are for people reading along, so a busy node must not bury them:
 * events that come by the hundred under load (puts, stored batches,
 * commits, applies) print a few lines a second each and then one summary,
 * and states that persist (a follower that does not answer, a node that
 * keeps asking for pre-votes) are said when they begin and end, not at
 * every retry. Nothing is formatted for a level that is off.
 */
#include "raft/node.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define LOG_BURST_LINES 10   /* lines of one kind per second, then a summary */
#define LOG_WINDOW_MS 1000
#define LOG_BEHIND_ENTRIES 1000 /* a follower this far behind is worth a line */
#define LOG_PRE_VOTE_EVERY_MS 5000 /* repeated pre-votes: at most a line per 5 s */

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

void raft_log_time(bool wall_clock, char *buf, size_t cap)
{
    if (!wall_clock) {
        snprintf(buf, cap, "%7.3f", raft_uptime());
        return;
    }
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, &tm);
    snprintf(buf, cap, "%02d:%02d:%02d.%03ld", tm.tm_hour, tm.tm_min, tm.tm_sec,
             ts.tv_nsec / 1000000);
}

/* Formats "  1.204  n2  T3  candidate  what happened" and hands it on. */
void node_log(struct raft_node *n, enum raft_log_level level,
              const char *fmt, ...)
{
    if (!node_logs(n, level))
        return;
    char msg[512], line[640], when[32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    raft_log_time(n->cfg.log_wall_clock, when, sizeof(when));
    snprintf(line, sizeof(line), "%s  n%u  T%-3llu %-13s %s%s", when, n->cfg.id,
             (unsigned long long)n->current_term, raft_role_name(n->role),
             level == RAFT_LOG_ERROR ? "ERROR: " :
             level == RAFT_LOG_WARN ? "warning: " : "", msg);
    if (n->cfg.log_line)
        n->cfg.log_line(n->cfg.log_ctx, n->cfg.id, level, line);
    else
        raft_print_log_line(n->cfg.id, line);
}

/* A follower answers nobody while it writes (Figure 2: entries are
 * stored before the reply), so a write that lasts a good part of an
 * election timeout looks to its leader like a node gone (check-quorum,
 * thesis §6.2). A leader writes its own entries beside its other work
 * (thesis §10.2.1), where a slow write only holds back commitment. Said
 * at the time, so that what follows can be traced to the disk. */
void node_warn_slow_disk_locked(struct raft_node *n, uint64_t elapsed_ms, bool answered,
                                const char *what, ...)
{
    if (elapsed_ms < n->cfg.election_timeout_min_ms / 2 || !node_logs(n, RAFT_LOG_WARN))
        return;
    char msg[160];
    va_list ap;
    va_start(ap, what);
    vsnprintf(msg, sizeof(msg), what, ap);
    va_end(ap);
    node_log(n, RAFT_LOG_WARN, "%s on disk took %llu ms (the election timeout is %u-%u ms): %s",
             msg, (unsigned long long)elapsed_ms, n->cfg.election_timeout_min_ms,
             n->cfg.election_timeout_max_ms,
             answered ? "the node went on answering, but counted the entries as stored only then"
                      : "this node answered no one meanwhile, so its leader may count it as gone");
}

/* ---- condensing events that come by the hundred ---- */

static void print_summary_locked(struct raft_node *n, enum log_kind kind,
                                 const struct log_burst *b)
{
    unsigned long long first = b->first, last = b->last, held = b->held;
    const char *why = "condensed: more than 10 lines a second";
    switch (kind) {
    case LOG_PUT:
        node_log(n, RAFT_LOG_INFO, "puts -> appended at %llu..%llu (%llu requests, %s)",
                 first, last, held, why);
        break;
    case LOG_REDIRECT:
        node_log(n, RAFT_LOG_INFO, "%llu more client requests -> not leader, redirected (%s)",
                 held, why);
        break;
    case LOG_STORED:
        node_log(n, RAFT_LOG_INFO, "stored %llu..%llu from leader n%d (%llu batches, %s)",
                 first, last, n->leader_id, held, why);
        break;
    case LOG_COMMIT:
        node_log(n, RAFT_LOG_INFO, "commit %llu -> %llu (%llu advances, %s)", first, last,
                 held, why);
        break;
    case LOG_APPLIED:
        node_log(n, RAFT_LOG_INFO, "applied %llu..%llu (%llu entries, %s)", first, last,
                 held, why);
        break;
    case LOG_KINDS:
        break;
    }
}

bool node_log_admit_locked(struct raft_node *n, enum log_kind kind, uint64_t now,
                           uint64_t first, uint64_t last)
{
    if (!node_logs(n, RAFT_LOG_INFO))
        return false;
    struct log_burst *b = &n->bursts[kind];
    if (now - b->window_ms >= LOG_WINDOW_MS) {
        if (b->held)
            print_summary_locked(n, kind, b);
        *b = (struct log_burst){.window_ms = now};
    }
    if (b->lines < LOG_BURST_LINES) {
        b->lines++;
        return true;
    }
    if (b->held++ == 0)
        b->first = first;
    b->last = last;
    return false;
}

void node_log_flush_locked(struct raft_node *n, uint64_t now)
{
    for (int k = 0; k < LOG_KINDS; k++) {
        struct log_burst *b = &n->bursts[k];
        if (b->held && now - b->window_ms >= LOG_WINDOW_MS) {
            print_summary_locked(n, (enum log_kind)k, b);
            b->held = 0;
        }
    }
}

void node_describe_entry(const struct raft_node *n, uint8_t type, const uint8_t *data,
                         uint32_t len, char *buf, size_t cap)
{
    buf[0] = '\0';
    if (type == RAFT_ENTRY_NOOP) {
        snprintf(buf, cap, "a new leader's no-op (§8)");
        return;
    }
    struct raft_membership m;
    if (type == RAFT_ENTRY_CONFIG && raft_membership_decode(&m, data, len) == 0) {
        char who[160];
        membership_describe(&m, who, sizeof(who));
        snprintf(buf, cap, "configuration %s (thesis ch. 4)", who);
        return;
    }
    if (n->fsm.describe)
        n->fsm.describe(n->fsm.ctx, data, len, buf, cap);
    if (buf[0] == '\0')
        snprintf(buf, cap, "command (%u bytes)", len);
}

/* ---- a client's command ---- */

/* "put greeting from client 7 seq 3 -> append at 12@T2", or where the
 * client is sent instead. */
void node_log_proposal_locked(struct raft_node *n, const uint8_t *data, uint32_t len,
                              bool appended)
{
    uint64_t index = log_last_index(&n->log);
    if (!node_logs(n, RAFT_LOG_INFO) ||
        !node_log_admit_locked(n, appended ? LOG_PUT : LOG_REDIRECT, node_now(n), index, index))
        return;
    char what[160];
    node_describe_entry(n, RAFT_ENTRY_COMMAND, data, len, what, sizeof(what));
    if (appended)
        node_log(n, RAFT_LOG_INFO, "%s -> append at %llu@T%llu", what,
                 (unsigned long long)index, (unsigned long long)n->current_term);
    else if (n->leader_id != RAFT_NO_NODE)
        node_log(n, RAFT_LOG_INFO, "%s -> not leader, redirect to n%d", what, n->leader_id);
    else
        node_log(n, RAFT_LOG_INFO, "%s -> not leader and no leader known: the client "
                 "retries", what);
}

/* ---- the leader's notes on its followers ---- */

void node_log_silent_peers_locked(struct raft_node *n, uint64_t now)
{
    uint64_t window = n->cfg.election_timeout_max_ms;
    for (uint32_t t = 0; t < n->n_targets; t++) {
        struct peer *p = &n->peers[n->targets[t]];
        if (p->silent_logged || now - p->last_ack_ms <= window ||
            !node_serves_peer_locked(n, p))
            continue;
        p->silent_logged = true;
        node_log(n, RAFT_LOG_INFO, "n%u stopped answering: no reply for %llu ms (more than "
                 "an election timeout) -> keep trying every %u ms", p->id,
                 (unsigned long long)(now - p->last_ack_ms), n->cfg.heartbeat_ms);
    }
}

void node_log_peer_answered_locked(struct raft_node *n, struct peer *p, uint64_t now)
{
    if (!p->silent_logged)
        return;
    p->silent_logged = false;
    node_log(n, RAFT_LOG_INFO, "n%u answers again, after %.1f s without a reply", p->id,
             (double)(now - p->last_ack_ms) / 1000.0);
}

void node_log_peer_progress_locked(struct raft_node *n, struct peer *p)
{
    uint64_t last = log_last_index(&n->log);
    uint64_t lag = last > p->match_index ? last - p->match_index : 0;
    if (!p->behind_logged && lag > LOG_BEHIND_ENTRIES) {
        p->behind_logged = true;
        node_log(n, RAFT_LOG_INFO, "n%u is %llu entries behind (it stores up to %llu, my log "
                 "ends at %llu) -> keep sending batches", p->id, (unsigned long long)lag,
                 (unsigned long long)p->match_index, (unsigned long long)last);
    } else if (p->behind_logged && lag <= LOG_BEHIND_ENTRIES / 10) {
        p->behind_logged = false;
        node_log(n, RAFT_LOG_INFO, "n%u caught up: it stores up to %llu, %llu behind my log",
                 p->id, (unsigned long long)p->match_index, (unsigned long long)lag);
    }
}

/* ---- pre-votes that nobody grants ---- */

static const char *ordinal_suffix(unsigned k)
{
    if (k % 100 >= 11 && k % 100 <= 13)
        return "th";
    switch (k % 10) {
    case 1: return "st";
    case 2: return "nd";
    case 3: return "rd";
    }
    return "th";
}

bool node_log_pre_vote_attempt_locked(struct raft_node *n, uint64_t now, char *note,
                                      size_t cap)
{
    struct pre_vote_streak *s = &n->pre_votes;
    uint64_t since = n->last_leader_contact_ms;
    if (n->has_led && n->stopped_leading_ms > since)
        since = n->stopped_leading_ms;
    if (s->since_ms != since || s->attempts == 0)
        *s = (struct pre_vote_streak){.since_ms = since};
    s->attempts++;
    note[0] = '\0';
    if (s->attempts > 1 && now - s->logged_ms < LOG_PRE_VOTE_EVERY_MS)
        return false;
    s->logged_ms = now;
    if (s->attempts == 1)
        return true;
    char answers[32] = "none answered";
    if (s->replies)
        snprintf(answers, sizeof(answers), "%u answers", s->replies);
    snprintf(note, cap, " (%u%s attempt, no leader for %.1f s, %s)", s->attempts,
             ordinal_suffix(s->attempts), (double)(now - since) / 1000.0, answers);
    return true;
}

void node_say_why(char *why, size_t cap, const char *fmt, ...)
{
    if (!why || cap == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, cap, fmt, ap);
    va_end(ap);
}
