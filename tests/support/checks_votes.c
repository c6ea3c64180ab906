/*
 * checks_votes.c - Election Safety by counting votes, the way the proof
 * does (paper §5.2, thesis §4.1): a candidate wins a term with votes from a
 * majority of the voters of its configuration, and every server votes at
 * most once a term, so two leaders of one term would need two majorities
 * that do not overlap. With membership changes (thesis ch. 4) "a majority"
 * means of the configuration the candidate used: the latest one in its
 * log, committed or not (§4.1). Learners do not vote (§4.2.1), so a vote
 * from a learner, or from a server outside the configuration, counts for
 * nothing here.
 *
 * Every node's storage goes through a tap that records each vote it makes
 * durable (save_term_vote) in a ledger, before the node can send the reply
 * that carries it. When the monitor first sees a node lead a term, the
 * ledger must hold that term's votes for it from a majority of the voters
 * of the configuration it won under, its own vote among them.
 */
#include "tests/support/cluster_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "raft/membership.h"
#include "raft/node.h" /* the leader's log, read under its lock */

/* ---- the tap: storage that records votes ---- */

static void votes_record(struct cluster *c, unsigned voter, uint64_t term, int32_t candidate)
{
    pthread_mutex_lock(&c->votes_mu);
    if (term >= c->votes_cap) {
        size_t cap = c->votes_cap ? c->votes_cap : 256;
        while (cap <= term)
            cap *= 2;
        int8_t (*v)[RAFT_MAX_NODES] = realloc(c->votes, cap * sizeof(*v));
        if (!v)
            abort();
        memset(v + c->votes_cap, -1, (cap - c->votes_cap) * sizeof(*v));
        c->votes = v;
        c->votes_cap = cap;
    }
    /* memstore reports a second vote in one term; the ledger keeps the first. */
    if (c->votes[term][voter] < 0)
        c->votes[term][voter] = (int8_t)candidate;
    pthread_mutex_unlock(&c->votes_mu);
}

static int tap_load(void *ctx, struct raft_persisted *out)
{
    struct vote_tap *t = ctx;
    return t->inner.load(t->inner.ctx, out);
}

static int tap_save_term_vote(void *ctx, uint64_t term, int32_t voted_for)
{
    struct vote_tap *t = ctx;
    int rc = t->inner.save_term_vote(t->inner.ctx, term, voted_for);
    if (rc == 0 && voted_for >= 0 && voted_for <= RAFT_MAX_ID)
        votes_record(t->c, t->id, term, voted_for);
    return rc;
}

static int tap_append(void *ctx, uint64_t first_index, const struct raft_entry *entries,
                      size_t n)
{
    struct vote_tap *t = ctx;
    return t->inner.append(t->inner.ctx, first_index, entries, n);
}

static int tap_truncate(void *ctx, uint64_t from_index)
{
    struct vote_tap *t = ctx;
    return t->inner.truncate(t->inner.ctx, from_index);
}

static int tap_save_snapshot(void *ctx, uint64_t index, uint64_t term, const uint8_t *data,
                             size_t len)
{
    struct vote_tap *t = ctx;
    return t->inner.save_snapshot(t->inner.ctx, index, term, data, len);
}

struct raft_storage votes_tap(struct cluster *c, unsigned id, struct raft_storage inner)
{
    struct vote_tap *t = calloc(1, sizeof(*t));
    if (!t)
        abort();
    t->c = c;
    t->id = id;
    t->inner = inner;
    pthread_mutex_lock(&c->votes_mu);
    t->next = c->taps;
    c->taps = t;
    pthread_mutex_unlock(&c->votes_mu);
    struct raft_storage s = {.ctx = t, .load = tap_load, .save_term_vote = tap_save_term_vote,
                             .append = tap_append, .truncate = tap_truncate,
                             .save_snapshot = tap_save_snapshot};
    return s;
}

void votes_free(struct cluster *c)
{
    while (c->taps) {
        struct vote_tap *t = c->taps;
        c->taps = t->next;
        free(t);
    }
    free(c->votes);
}

/* ---- the configuration a leader won under ---- */

void lab_bootstrap(struct cluster *c, struct raft_membership *m)
{
    raft_membership_of_size(m, c->n_boot, NULL);
}

/* A leader appends only entries of its own term, so the entries of earlier
 * terms in its log are the log it campaigned with: its configuration then
 * was the latest configuration entry among them (§4.1), or, if none is
 * above the snapshot, the one as of the snapshot's index. */
void election_config_locked(struct raft_node *n, uint64_t term, struct election_config *out)
{
    memset(out, 0, sizeof(*out));
    const struct raft_log *l = &n->log;
    for (uint64_t i = log_last_index(l); i > l->base_index; i--) {
        const struct raft_entry *e = log_get(l, i);
        if (e->term >= term || e->type != RAFT_ENTRY_CONFIG)
            continue;
        out->in_log = true;
        if (raft_membership_decode(&out->m, e->data, e->len) != 0)
            out->m.n = 0; /* reported as a leader outside its configuration */
        return;
    }
    out->base = l->base_index;
    out->unknown = l->base_index > 0 && l->base_term >= term;
}

/* The configuration as of `index`, from the entries applied anywhere (every
 * entry a snapshot covers was applied by the node that took it). Returns
 * false when an entry on the way down is not known. c->ck held. */
static bool config_as_of_locked(struct cluster *c, uint64_t index, struct raft_membership *m)
{
    for (uint64_t i = index; i > 0; i--) {
        if (i >= c->applied_cap || !c->applied[i].set)
            return false;
        const struct applied_entry *a = &c->applied[i];
        if (a->type == RAFT_ENTRY_CONFIG)
            return raft_membership_decode(m, a->data, a->len) == 0;
    }
    lab_bootstrap(c, m);
    return true;
}

void votes_check_leader(struct cluster *c, unsigned id, uint64_t term,
                        const struct election_config *ec)
{
    struct raft_membership m = ec->m;
    if (ec->unknown)
        return; /* its own entries are compacted: the monitor came too late to tell */
    if (!ec->in_log) {
        pthread_mutex_lock(&c->ck);
        bool known = config_as_of_locked(c, ec->base, &m);
        pthread_mutex_unlock(&c->ck);
        if (!known)
            return;
    }
    uint64_t voters = 0, granted = 0;
    for (uint32_t k = 0; k < m.n; k++)
        if (m.members[k].voter)
            voters |= 1ull << m.members[k].id;
    pthread_mutex_lock(&c->votes_mu);
    /* In a student tree before the persistence part no node stores any
     * vote: the ledger is empty, and the other checks are the ones that
     * speak until votes are stored. */
    bool none_stored = c->votes_cap == 0;
    for (unsigned v = 0; term < c->votes_cap && v < RAFT_MAX_NODES; v++)
        if ((voters >> v & 1) && c->votes[term][v] == (int8_t)id)
            granted |= 1ull << v;
    pthread_mutex_unlock(&c->votes_mu);
    unsigned n_voters = (unsigned)__builtin_popcountll(voters);
    unsigned n_granted = (unsigned)__builtin_popcountll(granted);
    if ((voters >> id & 1) && (none_stored || n_granted > n_voters / 2))
        return;
    char cfg[160], who[96];
    membership_describe(&m, cfg, sizeof(cfg));
    lab_describe_ids(granted, who, sizeof(who));
    if (!(voters >> id & 1))
        cluster_violation(c, 1u << id, "Election Safety: n%u leads T%llu but is not a voter of "
                          "the configuration it campaigned with (%s)", id,
                          (unsigned long long)term, cfg);
    else
        cluster_violation(c, 1u << id, "Election Safety: n%u leads T%llu with stored votes "
                          "from %s, %u of the %u voters of its configuration (%s): not a "
                          "majority", id, (unsigned long long)term, who, n_granted, n_voters,
                          cfg);
}
