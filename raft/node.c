/*
 * node.c - a node's life: start, stop, the lock, logging, role changes, and
 * the entry points that other threads call (receive, propose, status).
 */
#include "raft/node.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

void raft_config_defaults(struct raft_config *cfg, uint32_t id, uint32_t n_nodes)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->id = id;
    cfg->n_nodes = n_nodes;
    cfg->election_timeout_min_ms = 150;
    cfg->election_timeout_max_ms = 300;
    cfg->heartbeat_ms = 50;
    cfg->snapshot_every = 10000;
    cfg->seed = (uint64_t)time(NULL) * 1000003u + (uint64_t)getpid() * 31u + id;
    cfg->pre_vote = true;
    cfg->check_quorum = true;
    cfg->lease_reads = true;
    cfg->max_batch_bytes = 1u << 20;
    cfg->pipeline_depth = RAFT_DEFAULT_PIPELINE;
    cfg->snapshot_chunk_bytes = 512u << 10;
    cfg->log_level = RAFT_LOG_INFO;
}

void raft_persisted_free(struct raft_persisted *p)
{
    for (size_t i = 0; i < p->n_entries; i++)
        free(p->entries[i].data);
    free(p->entries);
    free(p->snapshot);
    memset(p, 0, sizeof(*p));
}

/* ---- time and logging ---- */

uint64_t raft_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The clock of read leases: on Linux it also counts the time the machine
 * was suspended, which CLOCK_MONOTONIC skips, so that a leader waking from
 * a suspend does not believe its lease still runs. */
uint64_t node_lease_clock_ms(void)
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

/* ---- the lock ---- */

#ifdef RAFT_CHECK_INVARIANTS
/* LogCabin-style invariant checker, run at every unlock in checked builds. */
static void check_invariants_locked(struct raft_node *n)
{
    const struct raft_log *l = &n->log;
    uint64_t last = log_last_index(l);
    int bad = 0;
    if (n->commit_index > last && n->to_restore == NULL)
        bad = 1;
    if (n->last_applied > n->commit_index)
        bad = 2;
    if (n->role == RAFT_LEADER && n->voted_for != (int32_t)n->cfg.id)
        bad = 3;
    if (log_last_term(l) > n->current_term)
        bad = 4;
    /* Terms never decrease along the log; checking the tail keeps it cheap. */
    for (uint64_t i = last; i > l->base_index + 1 && i + 16 > last; i--)
        if (log_term_at(l, i - 1) > log_term_at(l, i))
            bad = 5;
    if (bad) {
        fprintf(stderr, "raft invariant %d violated on n%u: term %llu commit "
                "%llu applied %llu last %llu\n", bad, n->cfg.id,
                (unsigned long long)n->current_term,
                (unsigned long long)n->commit_index,
                (unsigned long long)n->last_applied, (unsigned long long)last);
        abort();
    }
}
#endif

void node_unlock(struct raft_node *n)
{
#ifdef RAFT_CHECK_INVARIANTS
    check_invariants_locked(n);
#endif
    pthread_mutex_unlock(&n->mu);
}

/* Waits on cond until woken or until deadline_ms (0: no deadline).
 * Returns ETIMEDOUT once the deadline has passed. */
int node_wait_until_locked(struct raft_node *n, pthread_cond_t *cond,
                           uint64_t deadline_ms)
{
    if (deadline_ms == 0)
        return pthread_cond_wait(cond, &n->mu);
    if (raft_now_ms() >= deadline_ms)
        return ETIMEDOUT;
    struct timespec ts = {.tv_sec = (time_t)(deadline_ms / 1000),
                          .tv_nsec = (long)(deadline_ms % 1000) * 1000000};
    return pthread_cond_timedwait(cond, &n->mu, &ts);
}

void node_wake_all_locked(struct raft_node *n)
{
    pthread_cond_broadcast(&n->timer_cond);
    pthread_cond_broadcast(&n->peers_cond);
    pthread_cond_broadcast(&n->applier_cond);
    pthread_cond_broadcast(&n->syncer_cond);
    pthread_cond_broadcast(&n->changed_cond);
    node_wake_clients_locked(n, true);
}

bool node_some_peer_idle_locked(const struct raft_node *n)
{
    for (uint32_t i = 0; i < n->cfg.n_nodes; i++) {
        const struct peer *p = &n->peers[i];
        if (i != n->cfg.id && p->in_flight == 0 && p->next_index > log_last_index(&n->log))
            return true;
    }
    return false;
}

bool node_some_peer_sent_round_locked(const struct raft_node *n)
{
    for (uint32_t i = 0; i < n->cfg.n_nodes; i++)
        if (i != n->cfg.id && n->peers[i].sent_round >= n->read_round)
            return true;
    return false;
}

/* A peer answered a request sent at read round `round` in the current term.
 * Wakes readers only when a majority has confirmed a newer round, so that
 * one heartbeat round costs one wake-up per waiting reader. */
void node_note_read_ack_locked(struct raft_node *n, struct peer *p, uint64_t round)
{
    if (round <= p->acked_round)
        return;
    p->acked_round = round;
    uint64_t acked[RAFT_MAX_NODES];
    for (uint32_t i = 0; i < n->cfg.n_nodes; i++)
        acked[i] = i == n->cfg.id ? n->read_round : n->peers[i].acked_round;
    uint64_t confirmed = commit_quorum_index(acked, n->cfg.n_nodes);
    if (confirmed > n->confirmed_round) {
        n->confirmed_round = confirmed;
        node_wake_clients_locked(n, false);
    }
}

/* ---- persistence and role changes ---- */

void node_disk_failed_locked(struct raft_node *n, const char *what, int rc)
{
    if (!n->disk_failed)
        node_log(n, RAFT_LOG_ERROR, "%s failed on disk (%s) -> this node stops "
                 "answering and acknowledging; restart it once the disk is fixed",
                 what, strerror(-rc));
    n->disk_failed = true;
    if (n->role != RAFT_FOLLOWER) {
        n->role = RAFT_FOLLOWER;
        n->leader_id = RAFT_NO_NODE;
    }
    node_wake_all_locked(n);
}

/* Figure 2: currentTerm and votedFor reach stable storage before the node
 * answers anything that depends on them. */
int node_persist_term_vote_locked(struct raft_node *n, uint64_t term, int32_t vote)
{
    if (n->disk_failed)
        return -EIO;
    int rc = n->storage.save_term_vote(n->storage.ctx, term, vote);
    if (rc) {
        node_disk_failed_locked(n, "saving term and vote", rc);
        return rc;
    }
    n->current_term = term;
    n->voted_for = vote;
    return 0;
}

/* Figure 2, all servers: "if RPC request or response contains term T >
 * currentTerm: set currentTerm = T, convert to follower". Also used when a
 * candidate learns of the leader of its own term. */
void node_become_follower_locked(struct raft_node *n, uint64_t term,
                                 int32_t leader, const char *why)
{
    enum raft_role old = n->role;
    uint64_t old_term = n->current_term;
    if (term > n->current_term &&
        node_persist_term_vote_locked(n, term, RAFT_NO_NODE) != 0)
        return;
    n->role = RAFT_FOLLOWER;
    n->leader_id = leader;
    if (old != RAFT_FOLLOWER || term != old_term)
        node_log(n, RAFT_LOG_INFO, "%s -> %s%s", why,
                 old == RAFT_FOLLOWER ? "" : "step down, ",
                 term != old_term ? "adopt the newer term" : "follow it");
    if (old != RAFT_FOLLOWER) {
        election_reset_timer_locked(n);
        node_wake_all_locked(n);
    }
}

/* A reply or request from an older term is stale; a newer term makes this
 * node a follower first. Returns true if the message must be ignored. */
bool node_is_stale_term_locked(struct raft_node *n, uint64_t term, uint32_t from)
{
    if (term < n->current_term)
        return true;
    if (term > n->current_term) {
        char why[96];
        snprintf(why, sizeof(why), "n%u is at T%llu (mine T%llu)", from,
                 (unsigned long long)term, (unsigned long long)n->current_term);
        node_become_follower_locked(n, term, RAFT_NO_NODE, why);
    }
    return n->disk_failed;
}

/* The leader's syncer writes entries outside the lock; anything else that
 * changes the stored log waits for it to finish first. */
void node_wait_not_syncing_locked(struct raft_node *n)
{
    while (n->syncing)
        pthread_cond_wait(&n->changed_cond, &n->mu);
}

/* Before a follower reads or changes its log (after any step-down the
 * message caused): entries appended as leader but not yet written are
 * settled, so that the log in memory matches the
 * log on disk (answering "match" for entries that exist only in memory
 * would break Figure 2's rule of persisting before responding).
 * - Committed ones are written now, as a follower writes what it receives:
 *   the followers can commit an entry before the leader's own copy is on
 *   its disk (thesis §10.2.1), and it may even have been applied here, so
 *   it must stay in the log (commitIndex never passes the log's end).
 * - The rest were never acknowledged to anyone (the leader counts its own
 *   copy only once durable), so they are dropped, as a crash would. */
void node_settle_log_locked(struct raft_node *n)
{
    node_wait_not_syncing_locked(n);
    uint64_t last = log_last_index(&n->log);
    if (n->role == RAFT_LEADER || n->durable_index >= last || n->disk_failed)
        return;
    uint64_t keep = n->commit_index < last ? n->commit_index : last;
    if (keep < n->durable_index)
        keep = n->durable_index; /* what is on disk stays in memory too */
    if (keep > n->durable_index) {
        uint64_t from = n->durable_index + 1;
        int rc = n->storage.append(n->storage.ctx, from, log_get(&n->log, from),
                                   (size_t)(keep - n->durable_index));
        if (rc) {
            node_disk_failed_locked(n, "appending to the log", rc);
            return;
        }
        n->durable_index = keep;
        /* A snapshot put off until applied entries were stored
         * (maybe_snapshot_locked) can be taken now. */
        if (from <= n->last_applied) {
            pthread_cond_signal(&n->applier_cond);
            pthread_cond_broadcast(&n->changed_cond);
        }
    }
    if (keep < last) {
        node_log(n, RAFT_LOG_INFO, "dropping unwritten entries %llu..%llu appended as leader",
                 (unsigned long long)keep + 1, (unsigned long long)last);
        log_truncate(&n->log, keep + 1);
    }
}

/* ---- entry points ---- */

int raft_receive(struct raft_node *n, const struct raft_msg *req,
                 struct raft_msg *reply)
{
    if (req->from >= n->cfg.n_nodes || req->from == n->cfg.id)
        return -EINVAL;
    memset(reply, 0, sizeof(*reply));
    reply->from = n->cfg.id;
    int rc;
    pthread_mutex_lock(&n->mu);
    if (n->stopping || n->disk_failed) {
        rc = -ESHUTDOWN;
    } else {
        switch (req->type) {
        case RAFT_MSG_REQUEST_VOTE:
            reply->type = RAFT_MSG_REQUEST_VOTE_REPLY;
            rc = election_recv_request_vote_locked(n, req, reply);
            break;
        case RAFT_MSG_APPEND_ENTRIES:
            reply->type = RAFT_MSG_APPEND_ENTRIES_REPLY;
            rc = replication_recv_append_entries_locked(n, req, reply);
            break;
        case RAFT_MSG_INSTALL_SNAPSHOT:
            reply->type = RAFT_MSG_INSTALL_SNAPSHOT_REPLY;
            rc = snapshot_recv_install_locked(n, req, reply);
            break;
        default:
            rc = -EINVAL;
        }
    }
    node_unlock(n);
    return rc;
}

int node_propose_locked(struct raft_node *n, const uint8_t *data, uint32_t len)
{
    if (n->role != RAFT_LEADER || n->disk_failed || n->stopping)
        return -EPERM;
    /* Leader Append-Only: the leader only ever appends to its log. The
     * syncer makes it durable; replicators send it at once. */
    bool some_idle = node_some_peer_idle_locked(n);
    int rc = log_append(&n->log, n->current_term, RAFT_ENTRY_COMMAND, data, len);
    if (rc)
        return rc;
    pthread_cond_signal(&n->syncer_cond);
    /* A replicator already woken for earlier entries, or waiting for a
     * reply, sends this one with them: one wake-up per batch, not per entry. */
    if (some_idle)
        pthread_cond_broadcast(&n->peers_cond);
    return 0;
}

int raft_propose(struct raft_node *n, const uint8_t *data, uint32_t len,
                 uint64_t *index, uint64_t *term, int32_t *leader_hint)
{
    pthread_mutex_lock(&n->mu);
    *leader_hint = n->leader_id;
    int rc = node_propose_locked(n, data, len);
    if (rc == 0) {
        *index = log_last_index(&n->log);
        *term = n->current_term;
    }
    node_unlock(n);
    return rc;
}

void raft_get_status(struct raft_node *n, struct raft_status *st)
{
    pthread_mutex_lock(&n->mu);
    st->id = n->cfg.id;
    st->role = n->role;
    st->term = n->current_term;
    st->leader = n->leader_id;
    st->voted_for = n->voted_for;
    st->commit = n->commit_index;
    st->applied = n->last_applied;
    st->last_index = log_last_index(&n->log);
    st->snapshot_index = n->log.base_index;
    node_unlock(n);
}

/* ---- start and stop ---- */

static int init_sync(struct raft_node *n)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_t *conds[] = {&n->timer_cond, &n->peers_cond, &n->applier_cond,
                               &n->syncer_cond, &n->changed_cond};
    for (size_t i = 0; i < sizeof(conds) / sizeof(conds[0]); i++)
        pthread_cond_init(conds[i], &ca);
    pthread_condattr_destroy(&ca);
    return pthread_mutex_init(&n->mu, NULL) ? -ENOMEM : 0;
}

static void destroy_sync(struct raft_node *n)
{
    pthread_cond_destroy(&n->timer_cond);
    pthread_cond_destroy(&n->peers_cond);
    pthread_cond_destroy(&n->applier_cond);
    pthread_cond_destroy(&n->syncer_cond);
    pthread_cond_destroy(&n->changed_cond);
    pthread_mutex_destroy(&n->mu);
}

/* Rebuilds the node's state from what storage kept (a restart after a crash
 * looks exactly like this). */
static int recover(struct raft_node *n)
{
    struct raft_persisted p;
    memset(&p, 0, sizeof(p));
    int rc = n->storage.load(n->storage.ctx, &p);
    if (rc) {
        node_log(n, RAFT_LOG_ERROR, "cannot load durable state (%s)", strerror(-rc));
        return rc;
    }
    n->current_term = p.term;
    n->voted_for = p.voted_for;
    n->log.base_index = p.snapshot_index;
    n->log.base_term = p.snapshot_term;
    if (p.snapshot_index > 0) {
        rc = n->fsm.restore(n->fsm.ctx, p.snapshot_index, p.snapshot, p.snapshot_len);
        if (rc) {
            node_log(n, RAFT_LOG_ERROR, "cannot restore the snapshot at %llu",
                     (unsigned long long)p.snapshot_index);
            raft_persisted_free(&p);
            return rc;
        }
        n->snapshot = snapshot_new(p.snapshot_index, p.snapshot_term,
                                   p.snapshot, p.snapshot_len);
        p.snapshot = NULL;
        n->commit_index = n->last_applied = p.snapshot_index;
    }
    for (size_t i = 0; i < p.n_entries; i++) {
        log_append_owned(&n->log, &p.entries[i]);
        p.entries[i].data = NULL;
    }
    n->durable_index = log_last_index(&n->log);
    raft_persisted_free(&p);
    char vote[16] = "none", entries[48] = "empty";
    if (n->voted_for != RAFT_NO_NODE)
        snprintf(vote, sizeof(vote), "n%d", n->voted_for);
    if (n->log.n)
        snprintf(entries, sizeof(entries), "%llu..%llu", (unsigned long long)n->log.base_index + 1,
                 (unsigned long long)log_last_index(&n->log));
    node_log(n, RAFT_LOG_INFO, "started: recovered term %llu, vote %s, log %s, snapshot up to "
             "%llu (election timer seed %llu)", (unsigned long long)n->current_term, vote,
             entries, (unsigned long long)n->log.base_index, (unsigned long long)n->cfg.seed);
    return 0;
}

static int start_threads(struct raft_node *n)
{
    if (pthread_create(&n->timer_thread, NULL, election_timer_main, n))
        return -EAGAIN;
    if (pthread_create(&n->applier_thread, NULL, applier_main, n))
        return -EAGAIN;
    if (pthread_create(&n->syncer_thread, NULL, disk_syncer_main, n))
        return -EAGAIN;
    for (uint32_t i = 0; i < n->cfg.n_nodes; i++) {
        struct peer *p = &n->peers[i];
        if (i == n->cfg.id)
            continue;
        for (uint32_t k = 0; k < n->cfg.pipeline_depth; k++) {
            struct lane *l = &p->lanes[k];
            l->peer = p;
            if (pthread_create(&l->thread, NULL, peer_replicator_main, l))
                return -EAGAIN;
            l->started = true;
        }
    }
    return 0;
}

static void free_node(struct raft_node *n)
{
    for (uint32_t i = 0; i < RAFT_MAX_NODES; i++)
        for (uint32_t k = 0; k < RAFT_MAX_PIPELINE; k++) {
            free(n->peers[i].lanes[k].batch);
            free(n->peers[i].lanes[k].bytes);
        }
    if (n->snapshot)
        snapshot_release(n->snapshot);
    if (n->to_restore)
        snapshot_release(n->to_restore);
    free(n->incoming);
    log_free(&n->log);
    destroy_sync(n);
    free(n);
}

int raft_start(struct raft_node **out, const struct raft_config *cfg,
               const struct raft_transport *transport,
               const struct raft_storage *storage, const struct raft_fsm *fsm)
{
    if (cfg->n_nodes == 0 || cfg->n_nodes > RAFT_MAX_NODES || cfg->id >= cfg->n_nodes ||
        cfg->election_timeout_min_ms == 0 ||
        cfg->election_timeout_max_ms < cfg->election_timeout_min_ms ||
        cfg->heartbeat_ms == 0)
        return -EINVAL;
    struct raft_node *n = calloc(1, sizeof(*n));
    if (!n)
        return -ENOMEM;
    n->cfg = *cfg;
    /* Batches and chunks must fit in one wire frame (8 MiB). */
    if (n->cfg.max_batch_bytes == 0 || n->cfg.max_batch_bytes > (4u << 20))
        n->cfg.max_batch_bytes = 1u << 20;
    if (n->cfg.snapshot_chunk_bytes == 0 || n->cfg.snapshot_chunk_bytes > (4u << 20))
        n->cfg.snapshot_chunk_bytes = 512u << 10;
    if (n->cfg.pipeline_depth == 0 || n->cfg.pipeline_depth > RAFT_MAX_PIPELINE)
        n->cfg.pipeline_depth = RAFT_DEFAULT_PIPELINE;
    if (!transport->send || !transport->await)
        n->cfg.pipeline_depth = 1;
    n->transport = *transport;
    n->storage = *storage;
    n->fsm = *fsm;
    n->majority = cfg->n_nodes / 2 + 1;
    n->voted_for = RAFT_NO_NODE;
    n->leader_id = RAFT_NO_NODE;
    n->role = RAFT_FOLLOWER;
    n->rng = cfg->seed * 0x9e3779b97f4a7c15ull + cfg->id + 1;
    log_init(&n->log);
    for (uint32_t i = 0; i < RAFT_MAX_NODES; i++) {
        n->peers[i].node = n;
        n->peers[i].id = i;
    }
    int rc = init_sync(n);
    if (rc) {
        free(n);
        return rc;
    }
    rc = recover(n);
    if (rc) {
        free_node(n);
        return rc;
    }
    n->last_leader_contact_ms = raft_now_ms();
    election_reset_timer_locked(n);
    rc = start_threads(n);
    if (rc) {
        raft_stop(n);
        return rc;
    }
    *out = n;
    return 0;
}

void raft_begin_stop(struct raft_node *n)
{
    pthread_mutex_lock(&n->mu);
    n->stopping = true;
    node_wake_all_locked(n);
    node_call_async_done_locked(n); /* the applier may have stopped already */
    node_unlock(n);
}

void raft_stop(struct raft_node *n)
{
    raft_begin_stop(n);
    pthread_t none;
    memset(&none, 0, sizeof(none));
    pthread_t threads[] = {n->timer_thread, n->applier_thread, n->syncer_thread};
    for (size_t i = 0; i < 3; i++)
        if (memcmp(&threads[i], &none, sizeof(none)) != 0)
            pthread_join(threads[i], NULL);
    for (uint32_t i = 0; i < n->cfg.n_nodes; i++)
        for (uint32_t k = 0; k < RAFT_MAX_PIPELINE; k++)
            if (n->peers[i].lanes[k].started)
                pthread_join(n->peers[i].lanes[k].thread, NULL);
    free_node(n);
}
