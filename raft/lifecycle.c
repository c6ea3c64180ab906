/*
 * lifecycle.c - part of the hub: a node built from what its storage kept
 * (a restart after a crash looks exactly like a first start), its threads
 * started, and everything joined and freed when it stops.
 */
#include "raft/node.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "raft/trace.h"

static int init_sync(struct raft_node *n)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_t *conds[] = {&n->timer_cond, &n->peers_cond, &n->applier_cond,
                               &n->syncer_cond, &n->changed_cond, &n->snapshotter_cond};
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
    pthread_cond_destroy(&n->snapshotter_cond);
    pthread_mutex_destroy(&n->mu);
}

static void log_recovered(struct raft_node *n)
{
    char vote[16] = "none", entries[48] = "empty";
    if (n->voted_for != RAFT_NO_NODE)
        snprintf(vote, sizeof(vote), "n%d", n->voted_for);
    if (n->log.n)
        snprintf(entries, sizeof(entries), "%llu..%llu",
                 (unsigned long long)n->log.base_index + 1,
                 (unsigned long long)log_last_index(&n->log));
    node_log(n, RAFT_LOG_INFO, "started: recovered term %llu, vote %s, log %s, snapshot up to "
             "%llu (election timer seed %llu)", (unsigned long long)n->current_term, vote,
             entries, (unsigned long long)n->log.base_index, (unsigned long long)n->cfg.seed);
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
    /* LAB(persistence): restore the term, the vote and the log (Figure 2 persistent state) */
    n->current_term = p.term;
    n->voted_for = p.voted_for;
    /* LAB(snapshots): the log base and the state machine from the snapshot (§7) */
    n->log.base_index = p.snapshot_index;
    n->log.base_term = p.snapshot_term;
    if (p.snapshot_index > 0) {
        struct snapshot_ref *s = NULL;
        rc = snapshot_of_persisted(n, &p, &s);
        if (rc == 0)
            rc = snapshot_restore(n, s);
        if (rc) {
            node_log(n, RAFT_LOG_ERROR, "cannot restore the snapshot at %llu",
                     (unsigned long long)p.snapshot_index);
            if (s)
                snapshot_release(s);
            raft_persisted_free(&p);
            return rc;
        }
        n->snapshot = s;
        snapshot_leave_in_storage_locked(n);
        n->commit_index = n->last_applied = p.snapshot_index;
    }
    /* END LAB */
    for (size_t i = 0; i < p.n_entries; i++) {
        log_append_owned(&n->log, &p.entries[i]);
        p.entries[i].data = NULL;
    }
    n->durable_index = log_last_index(&n->log);
    /* END LAB */
    /* All of it is stored: storage gives back what is needed (apply.c). */
    if (n->storage.read_entries)
        log_evict_through(&n->log, n->durable_index);
    /* §7: the snapshot holds the configuration as of its last entry (one
     * written before snapshots carried it leaves the bootstrap's). */
    if (n->snapshot && n->snapshot->has_members)
        n->base_members = n->snapshot->members;
    raft_persisted_free(&p);
    log_recovered(n);
    return 0;
}

int node_create(struct raft_node **out, const struct raft_config *cfg,
                const struct raft_transport *transport,
                const struct raft_storage *storage, const struct raft_fsm *fsm)
{
    if (!config_is_valid(cfg))
        return -EINVAL;
    struct raft_node *n = calloc(1, sizeof(*n));
    if (!n)
        return -ENOMEM;
    config_apply(&n->cfg, cfg, transport);
    n->transport = *transport;
    n->storage = *storage;
    n->fsm = *fsm;
    n->base_members = n->cfg.bootstrap;
    n->adding = RAFT_NO_NODE;
    n->voted_for = RAFT_NO_NODE;
    n->leader_id = RAFT_NO_NODE;
    n->transfer_target = RAFT_NO_NODE;
    n->role = RAFT_FOLLOWER;
    n->rng = cfg->seed * 0x9e3779b97f4a7c15ull + cfg->id + 1;
    log_init(&n->log);
    for (uint32_t i = 0; i <= RAFT_MAX_ID; i++) {
        n->peers[i].node = n;
        n->peers[i].id = i;
        for (uint32_t k = 0; k < RAFT_MAX_PIPELINE; k++)
            n->peers[i].lanes[k].peer = &n->peers[i];
    }
    int rc = init_sync(n);
    if (rc) {
        free(n);
        return rc;
    }
    rc = recover(n);
    if (rc == 0 && cfg->trace_path)
        rc = trace_open(&n->trace, cfg->trace_path);
    if (rc) {
        node_destroy(n);
        return rc;
    }
    node_lock(n);
    n->msg_seq = trace_first_msg_seq(n->trace); /* a restart reuses no id (trace.h) */
    reconfigure_start_locked(n);
    trace_start_locked(n);
    n->last_leader_contact_ms = node_now(n);
    node_reset_election_timer_locked(n);
    node_unlock(n);
    *out = n;
    return 0;
}

static int start_thread(pthread_t *t, bool *started, void *(*main)(void *), void *arg)
{
    if (pthread_create(t, NULL, main, arg))
        return -EAGAIN;
    *started = true;
    return 0;
}

int node_start_threads(struct raft_node *n)
{
    if (start_thread(&n->timer_thread, &n->timer_started, election_timer_main, n) ||
        start_thread(&n->applier_thread, &n->applier_started, applier_main, n) ||
        start_thread(&n->syncer_thread, &n->syncer_started, disk_syncer_main, n) ||
        start_thread(&n->snapshotter_thread, &n->snapshotter_started, snapshotter_main, n))
        return -EAGAIN;
    /* The lanes of the members known now; members added later get theirs
     * when they join (reconfigure.c). */
    node_lock(n);
    n->threads_started = true;
    int rc = 0;
    for (uint32_t t = 0; t < n->n_targets && rc == 0; t++)
        for (uint32_t k = 0; k < n->cfg.pipeline_depth && rc == 0; k++) {
            struct lane *l = &n->peers[n->targets[t]].lanes[k];
            rc = start_thread(&l->thread, &l->started, peer_lane_main, l);
        }
    node_unlock(n);
    return rc;
}

void node_destroy(struct raft_node *n)
{
    for (uint32_t i = 0; i <= RAFT_MAX_ID; i++)
        for (uint32_t k = 0; k < RAFT_MAX_PIPELINE; k++) {
            free(n->peers[i].lanes[k].batch);
            free(n->peers[i].lanes[k].bytes);
        }
    if (n->snapshot)
        snapshot_release(n->snapshot);
    if (n->to_restore)
        snapshot_release(n->to_restore);
    if (n->job.view) /* captured, and the node stopped before writing it */
        n->fsm.snapshot_serialize(n->fsm.ctx, n->job.view, NULL, NULL);
    incoming_abort_locked(n);
    log_free(&n->log);
    trace_close(n->trace);
    destroy_sync(n);
    free(n);
}

int raft_start(struct raft_node **out, const struct raft_config *cfg,
               const struct raft_transport *transport,
               const struct raft_storage *storage, const struct raft_fsm *fsm)
{
    struct raft_node *n;
    int rc = node_create(&n, cfg, transport, storage, fsm);
    if (rc)
        return rc;
    rc = node_start_threads(n);
    if (rc) {
        raft_stop(n);
        return rc;
    }
    *out = n;
    return 0;
}

void raft_begin_stop(struct raft_node *n)
{
    node_lock(n);
    n->stopping = true;
    node_wake_all_locked(n);
    clients_call_async_done_drops_lock(n); /* the applier may have stopped already */
    node_unlock(n);
}

static void join_if_started(pthread_t t, bool started)
{
    if (started)
        pthread_join(t, NULL);
}

void raft_stop(struct raft_node *n)
{
    raft_begin_stop(n);
    join_if_started(n->timer_thread, n->timer_started);
    join_if_started(n->applier_thread, n->applier_started);
    join_if_started(n->syncer_thread, n->syncer_started);
    join_if_started(n->snapshotter_thread, n->snapshotter_started);
    for (uint32_t i = 0; i <= RAFT_MAX_ID; i++)
        for (uint32_t k = 0; k < RAFT_MAX_PIPELINE; k++)
            join_if_started(n->peers[i].lanes[k].thread, n->peers[i].lanes[k].started);
    node_destroy(n);
}
