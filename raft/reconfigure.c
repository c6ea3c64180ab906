/*
 * reconfigure.c - membership changes, one server at a time (thesis ch. 4).
 *
 * The rules, with where the thesis gives them:
 *   - A configuration is a log entry. A server uses the latest one in its
 *     log, committed or not, from the moment it is appended (§4.1); if
 *     that entry is truncated away, the one before it is in use again.
 *     A snapshot carries the configuration as of its last entry (§7).
 *   - One change at a time: a leader appends a configuration only once
 *     the previous one is committed (§4.1). Adding or removing a single
 *     server at a time is what makes every majority of the old
 *     configuration overlap every majority of the new one (§4.2).
 *   - A new leader first commits an entry of its own term (its no-op)
 *     before it changes the configuration. Without that, two leaders of
 *     different terms could each append a change on top of the same
 *     committed configuration, and both could commit with majorities that
 *     do not overlap (the single-server bug found in 2015; the fix is in
 *     the thesis errata).
 *   - A new server joins as a learner, which receives the log but neither
 *     votes nor counts, and becomes a voter only once it has caught up:
 *     rounds of replication, until a round takes less than an election
 *     timeout (§4.2.1). A server that makes no progress for an election
 *     timeout is not promoted.
 *   - A leader removed from the configuration keeps leading, without
 *     counting itself, until the change commits, and then steps down
 *     (§4.2.2). A removed server is sent the entry that removes it, so
 *     that it stops campaigning; and since ids are never reused, nothing
 *     from a removed id is ever accepted again (its vote requests would
 *     otherwise disrupt the cluster, §4.2.3).
 */
#include "raft/node.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Catch-up (§4.2.1): at most this many rounds before giving up. */
#define CATCH_UP_ROUNDS 10
/* Membership changes are rare: their waits look again at this pace instead
 * of adding wake-ups to the paths every put takes. */
#define CHANGE_POLL_MS 5


/* ---- following the log's configuration entries ---- */

/* The latest configuration at or before index, and the entry it is in (0:
 * the base one). */
static uint64_t read_config_at(const struct raft_node *n, uint64_t index,
                               struct raft_membership *out)
{
    uint64_t at = log_last_config_at(&n->log, index);
    if (at) {
        const struct raft_entry *e = log_get(&n->log, at);
        if (raft_membership_decode(out, e->data, e->len) == 0)
            return at;
    }
    *out = n->base_members;
    return 0;
}

void reconfigure_as_of_locked(const struct raft_node *n, uint64_t index,
                              struct raft_membership *out)
{
    read_config_at(n, index, out);
}

static bool same_membership(const struct raft_membership *a, const struct raft_membership *b)
{
    if (a->n != b->n || a->removed != b->removed)
        return false;
    for (uint32_t i = 0; i < a->n; i++) {
        const struct raft_member *x = &a->members[i];
        const struct raft_member *y = raft_membership_find(b, x->id);
        if (!y || x->voter != y->voter || strcmp(x->addr, y->addr) != 0)
            return false;
    }
    return true;
}

static void rebuild_targets_locked(struct raft_node *n)
{
    n->n_targets = 0;
    const struct raft_membership *sets[] = {&n->members, &n->previous};
    for (int s = 0; s < 2; s++)
        for (uint32_t i = 0; i < sets[s]->n; i++) {
            uint32_t id = sets[s]->members[i].id;
            bool listed = id == n->cfg.id;
            for (uint32_t k = 0; k < n->n_targets && !listed; k++)
                listed = n->targets[k] == id;
            if (!listed)
                n->targets[n->n_targets++] = id;
        }
}

/* A leader starts replicating to a server it did not serve before as to a
 * new follower (Figure 2: nextIndex just after its log, matchIndex 0). */
static void start_serving_locked(struct raft_node *n, struct peer *p, uint64_t now)
{
    p->next_index = log_last_index(&n->log) + 1;
    p->match_index = 0;
    p->heartbeat_due_ms = now;
    p->retry_at_ms = 0;
    p->last_ack_ms = now;
    p->lease_sent_ms = 0;
    p->snapshot_offset = 0;
    p->replicating = false;
    p->failures = 0;
    p->silent_logged = p->behind_logged = false;
}

static void log_change_locked(struct raft_node *n, const struct raft_membership *old)
{
    char before[160], after[160], where[64] = "the bootstrap configuration";
    if (n->log.base_index > 0 && n->snapshot && n->snapshot->has_members)
        snprintf(where, sizeof(where), "from the snapshot");
    membership_describe(old, before, sizeof(before));
    membership_describe(&n->members, after, sizeof(after));
    if (n->members_index)
        snprintf(where, sizeof(where), "entry %llu, %s", (unsigned long long)n->members_index,
                 n->members_index <= n->commit_index ? "committed" : "in use before it commits");
    node_log(n, RAFT_LOG_INFO, "configuration: %s -> %s (%s, §4.1)", before, after, where);
    if (raft_membership_find(&n->members, n->cfg.id)) {
        n->removed_logged = false;
    } else if (!n->removed_logged && (old->n > 0 || n->members.removed >> n->cfg.id & 1)) {
        n->removed_logged = true;
        node_log(n, RAFT_LOG_INFO, "this node is no longer a member: it will not campaign "
                 "and can be stopped (§4.2.2)");
    }
}

/* The configuration in use changed: tell the transport, serve new members,
 * and wake the threads whose work depends on who is a member. */
static void take_effect_locked(struct raft_node *n, const struct raft_membership *old,
                               const uint32_t *old_targets, uint32_t n_old)
{
    log_change_locked(n, old);
    if (n->transport.set_members)
        n->transport.set_members(n->transport.ctx, &n->members);
    uint64_t now = node_now(n);
    for (uint32_t k = 0; k < n->n_targets; k++) {
        struct peer *p = &n->peers[n->targets[k]];
        bool served = false;
        for (uint32_t j = 0; j < n_old && !served; j++)
            served = old_targets[j] == p->id;
        if (!served && n->role == RAFT_LEADER)
            start_serving_locked(n, p, now);
        node_start_lanes_locked(n, p);
    }
    node_wake_peers_locked(n);
    pthread_cond_signal(&n->timer_cond);
    pthread_cond_broadcast(&n->changed_cond);
}

static void reread_locked(struct raft_node *n)
{
    struct raft_membership old = n->members;
    uint32_t old_targets[2 * RAFT_MAX_NODES], n_old = n->n_targets;
    memcpy(old_targets, n->targets, sizeof(old_targets));
    n->members_index = read_config_at(n, log_last_index(&n->log), &n->members);
    if (n->members_index)
        read_config_at(n, n->members_index - 1, &n->previous);
    else
        n->previous = n->members;
    n->members_seen = n->log.configs_changed;
    rebuild_targets_locked(n);
    if (!same_membership(&old, &n->members))
        take_effect_locked(n, &old, old_targets, n_old);
}

void reconfigure_sync_locked(struct raft_node *n)
{
    NODE_ASSERT_LOCKED(n);
    if (n->log.configs_changed != n->members_seen)
        reread_locked(n);
}

void reconfigure_set_base_locked(struct raft_node *n, const struct raft_membership *base)
{
    NODE_ASSERT_LOCKED(n);
    n->base_members = *base;
    reread_locked(n);
}

void reconfigure_start_locked(struct raft_node *n)
{
    NODE_ASSERT_LOCKED(n);
    struct raft_membership none;
    memset(&none, 0, sizeof(none));
    n->members = none;
    reread_locked(n);
    if (n->members.n == 0 && n->transport.set_members)
        n->transport.set_members(n->transport.ctx, &n->members);
    if (n->members.n == 0)
        node_log(n, RAFT_LOG_INFO, "in no configuration yet: waiting for a leader to add "
                 "this node (it will not campaign)");
}

/* ---- changing the configuration, on the leader ---- */

static bool leads_locked(const struct raft_node *n, uint64_t term)
{
    return n->role == RAFT_LEADER && n->current_term == term && !n->stopping &&
           !n->disk_failed;
}

static void wait_a_little_locked(struct raft_node *n, uint64_t deadline)
{
    uint64_t until = node_now(n) + CHANGE_POLL_MS;
    node_wait_until(n, &n->changed_cond, until < deadline ? until : deadline);
}

/* A change may begin: this node leads, has committed an entry of its own
 * term (waited for, up to the deadline), and no other change or transfer
 * is under way. */
static int may_change_locked(struct raft_node *n, uint64_t deadline, int32_t *leader_hint,
                             char *why, size_t cap)
{
    /* LAB(membership): an entry of this term committed first; one change at a time (§4.1, the 2015 fix) */
    while (n->role == RAFT_LEADER && n->commit_index < n->leader_first_index) {
        if (node_now(n) >= deadline) {
            node_say_why(why, cap, "This leader has not yet committed an entry of its term, which it "
                         "must before changing the configuration.");
            return -ETIMEDOUT;
        }
        wait_a_little_locked(n, deadline);
    }
    *leader_hint = n->leader_id;
    if (n->role != RAFT_LEADER || n->stopping || n->disk_failed)
        return -EPERM;
    if (n->members_index > n->commit_index) {
        node_say_why(why, cap, "A configuration change is already under way (entry %llu is not "
                     "committed yet).", (unsigned long long)n->members_index);
        return -EBUSY;
    }
    /* STUB: *leader_hint = n->leader_id; (void)deadline; (void)why; (void)cap; */
    /* STUB: if (n->role != RAFT_LEADER) return -EPERM; */
    /* END LAB */
    if (n->adding != RAFT_NO_NODE) {
        node_say_why(why, cap, "A configuration change is already under way (n%d is being "
                     "added).", n->adding);
        return -EBUSY;
    }
    if (node_transfer_in_progress_locked(n)) {
        node_say_why(why, cap, "A leadership transfer is under way.");
        return -EBUSY;
    }
    return 0;
}

/* Appends the configuration and waits until it is committed. */
static int commit_config_locked(struct raft_node *n, const struct raft_membership *next,
                                uint64_t deadline, char *why, size_t cap)
{
    uint8_t bytes[RAFT_MEMBERSHIP_MAX_BYTES];
    size_t len = raft_membership_encode(next, bytes);
    uint64_t term = n->current_term;
    if (!leads_locked(n, term)) { /* it may have stopped during a catch-up's last wait */
        node_say_why(why, cap, "This node stopped leading before the change could be appended.");
        return -ECANCELED;
    }
    if (log_append(&n->log, term, RAFT_ENTRY_CONFIG, bytes, (uint32_t)len) != 0) {
        node_say_why(why, cap, "Out of memory.");
        return -ENOMEM;
    }
    uint64_t index = log_last_index(&n->log);
    reconfigure_sync_locked(n);
    pthread_cond_signal(&n->syncer_cond);
    node_wake_peers_locked(n);
    for (;;) {
        /* Still leading the term it was appended in, the entry cannot have
         * been replaced; otherwise it is ours only if its term says so. */
        bool ours = leads_locked(n, term) || log_term_at(&n->log, index) == term;
        if (n->commit_index >= index && ours)
            return 0;
        if (!leads_locked(n, term)) {
            node_say_why(why, cap, "This node stopped leading before the change (entry %llu) "
                         "committed: it may or may not take effect.", (unsigned long long)index);
            return -ECANCELED;
        }
        if (node_now(n) >= deadline) {
            node_say_why(why, cap, "The change (entry %llu) did not commit in time: it may still "
                         "take effect.", (unsigned long long)index);
            return -ETIMEDOUT;
        }
        wait_a_little_locked(n, deadline);
    }
}

/* Progress of p: its matchIndex, and the snapshot it is being sent. */
static uint64_t progress_of(const struct peer *p)
{
    return p->match_index + p->snapshot_offset;
}

/* §4.2.1: replicate to the learner in rounds; each round waits until it
 * holds what the leader's log held when the round began. It is caught up
 * when a round takes less than an election timeout. */
static int catch_up_locked(struct raft_node *n, struct peer *p, uint64_t deadline,
                           char *why, size_t cap)
{
    /* LAB(membership): rounds until one takes less than an election timeout; fail without progress (§4.2.1) */
    uint64_t term = n->current_term, timeout = n->cfg.election_timeout_max_ms;
    for (int round = 1; round <= CATCH_UP_ROUNDS; round++) {
        uint64_t target = log_last_index(&n->log), start = node_now(n);
        uint64_t progress = progress_of(p), progress_at = start;
        /* A round ends with an answer given during it: a learner that held
         * the whole log once and then died must not pass. */
        while (p->match_index < target || p->last_ack_ms < start) {
            if (!leads_locked(n, term)) {
                node_say_why(why, cap, "This node stopped leading while n%u caught up.", p->id);
                return -ECANCELED;
            }
            uint64_t now = node_now(n);
            if (progress_of(p) != progress) {
                progress = progress_of(p);
                progress_at = now;
            } else if (now - progress_at > timeout) {
                node_say_why(why, cap, "n%u could not catch up: no progress for %llu ms (it holds "
                             "%llu of %llu entries); it stays a learner.", p->id,
                             (unsigned long long)(now - progress_at),
                             (unsigned long long)p->match_index, (unsigned long long)target);
                return -EINVAL;
            }
            if (now >= deadline) {
                node_say_why(why, cap, "n%u was still catching up when the time ran out (it holds "
                             "%llu of %llu entries); it stays a learner.", p->id,
                             (unsigned long long)p->match_index, (unsigned long long)target);
                return -ETIMEDOUT;
            }
            wait_a_little_locked(n, deadline);
        }
        uint64_t took = node_now(n) - start;
        node_log(n, RAFT_LOG_INFO, "catch-up round %d: n%u reached %llu in %llu ms%s", round,
                 p->id, (unsigned long long)target, (unsigned long long)took,
                 took < timeout ? " (less than an election timeout) -> promote it (§4.2.1)"
                                : "");
        if (took < timeout)
            return 0;
    }
    node_say_why(why, cap, "n%u could not catch up in %d rounds: the log grows faster than it "
                 "receives it; it stays a learner.", p->id, CATCH_UP_ROUNDS);
    return -EINVAL;
    /* STUB: (void)n; (void)p; (void)deadline; (void)why; (void)cap; (void)progress_of; */
    /* END LAB: return 0; */
}

static int check_new_id_locked(const struct raft_node *n, uint32_t id, bool voter,
                               char *why, size_t cap)
{
    const struct raft_member *m = id <= RAFT_MAX_ID ? raft_membership_find(&n->members, id) : NULL;
    if (id > RAFT_MAX_ID) {
        node_say_why(why, cap, "Node ids run from 0 to %d.", RAFT_MAX_ID);
    } else if (n->members.removed >> id & 1) {
        node_say_why(why, cap, "n%u was removed from this cluster before, and ids are never reused: "
                     "give the server a new id.", id);
    } else if (m && (m->voter || !voter)) {
        node_say_why(why, cap, "n%u is already a %s.", id, m->voter ? "voter" : "learner");
    } else if (!m && n->members.n == RAFT_MAX_NODES) {
        node_say_why(why, cap, "The cluster has %d members, the most it can have.", RAFT_MAX_NODES);
    } else {
        return 0;
    }
    return -EINVAL;
}

static struct raft_member *find_member(struct raft_membership *m, uint32_t id)
{
    return (struct raft_member *)raft_membership_find(m, id);
}

static int add_member_locked(struct raft_node *n, uint32_t id, const char *addr, bool voter,
                             uint64_t deadline, char *why, size_t cap)
{
    struct raft_membership next = n->members;
    int rc = 0;
    if (!find_member(&next, id)) {
        struct raft_member *m = &next.members[next.n++];
        memset(m, 0, sizeof(*m));
        m->id = id;
        snprintf(m->addr, sizeof(m->addr), "%s", addr ? addr : "");
        node_log(n, RAFT_LOG_INFO, "adding n%u (%s) as a learner: it receives the log but "
                 "does not vote yet (§4.2.1)", id, m->addr);
        rc = commit_config_locked(n, &next, deadline, why, cap);
        if (rc || !voter)
            return rc;
    }
    rc = catch_up_locked(n, &n->peers[id], deadline, why, cap);
    if (rc)
        return rc;
    next = n->members;
    find_member(&next, id)->voter = true;
    return commit_config_locked(n, &next, deadline, why, cap);
}

static int remove_member_locked(struct raft_node *n, uint32_t id, uint64_t deadline,
                                int32_t *leader_hint, char *why, size_t cap)
{
    int rc = may_change_locked(n, deadline, leader_hint, why, cap);
    if (rc)
        return rc;
    struct raft_membership next = n->members;
    struct raft_member *m = id <= RAFT_MAX_ID ? find_member(&next, id) : NULL;
    char members[160];
    membership_describe(&n->members, members, sizeof(members));
    if (!m) {
        if (id <= RAFT_MAX_ID && (n->members.removed >> id & 1))
            node_say_why(why, cap, "n%u was removed already.", id);
        else
            node_say_why(why, cap, "n%u is not a member (the members are %s).", id, members);
        return -EINVAL;
    }
    if (m->voter && membership_voters(&next) == 1) {
        node_say_why(why, cap, "n%u is the last voter: without it nobody could decide anything.", id);
        return -EINVAL;
    }
    node_log(n, RAFT_LOG_INFO, "removing n%u%s (§4.2.2)", id,
             id == n->cfg.id ? ", this leader: it leads without counting itself until the "
                               "change commits, then steps down" : "");
    memmove(m, m + 1, (size_t)(next.members + next.n - (m + 1)) * sizeof(*m));
    next.n--;
    next.removed |= 1ull << id;
    return commit_config_locked(n, &next, deadline, why, cap);
}

int raft_add_member(struct raft_node *n, uint32_t id, const char *addr, bool voter,
                    unsigned timeout_ms, int32_t *leader_hint, char *why, size_t why_cap)
{
    node_lock(n);
    uint64_t deadline = node_now(n) + timeout_ms;
    int rc = may_change_locked(n, deadline, leader_hint, why, why_cap);
    if (rc == 0)
        rc = check_new_id_locked(n, id, voter, why, why_cap);
    if (rc == 0) {
        /* Under way from its first entry to its promotion: the lock is let
         * go while each commits, and no other change may start meanwhile. */
        n->adding = (int32_t)id;
        rc = add_member_locked(n, id, addr, voter, deadline, why, why_cap);
        n->adding = RAFT_NO_NODE;
    }
    node_unlock(n);
    return rc;
}

int raft_remove_member(struct raft_node *n, uint32_t id, unsigned timeout_ms,
                       int32_t *leader_hint, char *why, size_t why_cap)
{
    node_lock(n);
    uint64_t deadline = node_now(n) + timeout_ms;
    int rc = remove_member_locked(n, id, deadline, leader_hint, why, why_cap);
    node_unlock(n);
    return rc;
}

void raft_get_membership(struct raft_node *n, struct raft_membership_view *out)
{
    memset(out, 0, sizeof(*out));
    node_lock(n);
    out->config = n->members;
    out->index = n->members_index;
    out->committed = n->members_index <= n->commit_index;
    if (n->role == RAFT_LEADER)
        for (uint32_t i = 0; i < n->members.n; i++) {
            uint32_t id = n->members.members[i].id;
            out->match[i] = id == n->cfg.id ? n->durable_index : n->peers[id].match_index;
        }
    node_unlock(n);
}
