/*
 * cluster_ops.c - the lab harness's test-facing operations (see cluster.h):
 * observing nodes and calling into them, the lab's helpers
 * (check_one_leader, one, wait, ...) and the counters. The life cycle and
 * the faults are in cluster.c.
 */
#include "tests/support/cluster_internal.h"

#include <errno.h>
#include <string.h>

/* ---- observation ---- */

bool cluster_status(struct cluster *c, unsigned i, struct raft_status *st)
{
    struct slot *s = &c->slots[i];
    pthread_rwlock_rdlock(&s->lock);
    bool up = s->node != NULL;
    if (up)
        raft_get_status(s->node, st);
    pthread_rwlock_unlock(&s->lock);
    if (up && st->role == RAFT_LEADER)
        checks_record_leader(c, i, st->term);
    return up;
}

bool cluster_get_state(struct cluster *c, unsigned i, uint64_t *term, bool *is_leader)
{
    struct raft_status st;
    if (!cluster_status(c, i, &st))
        return false;
    *term = st.term;
    *is_leader = st.role == RAFT_LEADER;
    return true;
}

int cluster_deliver(struct cluster *c, unsigned i, const struct raft_msg *req,
                    struct raft_msg *reply)
{
    struct slot *s = &c->slots[i];
    pthread_rwlock_rdlock(&s->lock);
    int rc = s->node ? raft_receive(s->node, req, reply) : -ESHUTDOWN;
    pthread_rwlock_unlock(&s->lock);
    return rc;
}

struct kv *cluster_kv(struct cluster *c, unsigned i)
{
    struct slot *s = &c->slots[i];
    pthread_rwlock_rdlock(&s->lock);
    struct kv *kv = s->kv;
    pthread_rwlock_unlock(&s->lock);
    if (!kv)
        cluster_fatal(c, "cluster_kv(n%u) without opts.kv", i);
    return kv;
}

/* A crash takes the slot's write lock only after raft_begin_stop, which
 * makes these calls return: holding the read lock while they block is safe. */
int cluster_read_barrier(struct cluster *c, unsigned i, unsigned timeout_ms,
                         int32_t *leader_hint)
{
    struct slot *s = &c->slots[i];
    *leader_hint = RAFT_NO_NODE;
    pthread_rwlock_rdlock(&s->lock);
    int rc = s->node ? raft_read_barrier(s->node, timeout_ms, leader_hint) : -ESHUTDOWN;
    pthread_rwlock_unlock(&s->lock);
    return rc;
}

int cluster_wait_applied(struct cluster *c, unsigned i, uint64_t index, uint64_t term,
                         unsigned timeout_ms)
{
    struct slot *s = &c->slots[i];
    pthread_rwlock_rdlock(&s->lock);
    int rc = s->node ? raft_wait_applied(s->node, index, term, timeout_ms) : -ESHUTDOWN;
    pthread_rwlock_unlock(&s->lock);
    return rc;
}

int cluster_transfer(struct cluster *c, unsigned i, int32_t target, unsigned timeout_ms,
                     int32_t *leader_hint, char *why, size_t why_cap)
{
    struct slot *s = &c->slots[i];
    pthread_rwlock_rdlock(&s->lock);
    int rc = s->node ? raft_transfer(s->node, target, timeout_ms, leader_hint, why, why_cap)
                     : -ESHUTDOWN;
    pthread_rwlock_unlock(&s->lock);
    return rc;
}

unsigned cluster_check_one_leader(struct cluster *c)
{
    for (int iters = 0; iters < 10; iters++) {
        cluster_sleep(c, 450 + cluster_rand(c, 100));
        uint64_t terms[RAFT_MAX_NODES];
        unsigned leaders = 0;
        for (unsigned i = 0; i < c->n; i++) {
            struct raft_status st;
            if (cluster_connected(c, i) && cluster_status(c, i, &st) &&
                st.role == RAFT_LEADER)
                terms[leaders++] = st.term | (uint64_t)i << 56;
        }
        uint64_t best_term = 0;
        int best = -1;
        for (unsigned a = 0; a < leaders; a++) {
            uint64_t term = terms[a] & ((1ull << 56) - 1);
            unsigned same = 0;
            for (unsigned b = 0; b < leaders; b++)
                same += (terms[b] & ((1ull << 56) - 1)) == term;
            if (same > 1)
                cluster_fatal(c, "term %llu has %u (>1) leaders", (unsigned long long)term, same);
            if (best < 0 || term > best_term) {
                best_term = term;
                best = (int)(terms[a] >> 56);
            }
        }
        if (best >= 0)
            return (unsigned)best;
    }
    cluster_fatal(c, "expected one leader, got none");
}

uint64_t cluster_check_terms(struct cluster *c)
{
    int64_t term = -1;
    for (unsigned i = 0; i < c->n; i++) {
        struct raft_status st;
        if (!cluster_connected(c, i) || !cluster_status(c, i, &st))
            continue;
        if (term == -1)
            term = (int64_t)st.term;
        else if ((uint64_t)term != st.term)
            cluster_fatal(c, "servers disagree on term: T%lld and n%u's T%llu", (long long)term,
                          i, (unsigned long long)st.term);
    }
    return term < 0 ? 0 : (uint64_t)term;
}

void cluster_check_no_leader(struct cluster *c)
{
    for (unsigned i = 0; i < c->n; i++) {
        struct raft_status st;
        if (cluster_connected(c, i) && cluster_status(c, i, &st) && st.role == RAFT_LEADER)
            cluster_fatal(c, "expected no leader among connected servers, but n%u claims to "
                          "lead T%llu", i, (unsigned long long)st.term);
    }
}

/* ---- commands ---- */

void lab_cmd_int(uint8_t out[8], uint64_t x)
{
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(x >> (8 * i));
}

unsigned cluster_n_committed(struct cluster *c, uint64_t index)
{
    cluster_check(c); /* the lab's nCommitted fails on any applyErr first */
    unsigned count = 0;
    pthread_mutex_lock(&c->ck);
    for (unsigned i = 0; i < c->n; i++)
        count += c->max_applied[i] >= index;
    pthread_mutex_unlock(&c->ck);
    return count;
}

bool cluster_committed_is(struct cluster *c, uint64_t index, const void *cmd, size_t len)
{
    pthread_mutex_lock(&c->ck);
    bool same = false;
    if (index < c->applied_cap && c->applied[index].set) {
        const struct applied_entry *a = &c->applied[index];
        same = a->type == RAFT_ENTRY_COMMAND && a->len == len &&
               (len == 0 || memcmp(a->data, cmd, len) == 0);
    }
    pthread_mutex_unlock(&c->ck);
    return same;
}

uint64_t cluster_max_applied(struct cluster *c)
{
    pthread_mutex_lock(&c->ck);
    uint64_t m = c->max_index;
    pthread_mutex_unlock(&c->ck);
    return m;
}

bool cluster_start_cmd(struct cluster *c, unsigned i, const void *cmd, size_t len,
                       uint64_t *index, uint64_t *term)
{
    struct slot *s = &c->slots[i];
    int32_t hint;
    uint64_t idx = 0, t = 0;
    pthread_rwlock_rdlock(&s->lock);
    int rc = s->node ? raft_propose(s->node, cmd, (uint32_t)len, &idx, &t, &hint) : -ESHUTDOWN;
    pthread_rwlock_unlock(&s->lock);
    if (index)
        *index = idx;
    if (term)
        *term = t;
    return rc == 0;
}

bool cluster_start_int(struct cluster *c, unsigned i, uint64_t x, uint64_t *index,
                       uint64_t *term)
{
    uint8_t cmd[8];
    lab_cmd_int(cmd, x);
    return cluster_start_cmd(c, i, cmd, sizeof(cmd), index, term);
}

uint64_t cluster_one(struct cluster *c, const void *cmd, size_t len, unsigned n, bool retry)
{
    char what[64];
    checks_describe_cmd(RAFT_ENTRY_COMMAND, cmd, (uint32_t)len, what, sizeof(what));
    uint64_t t0 = lab_now_ms();
    unsigned starts = 0;
    while (lab_now_ms() - t0 < cluster_ms(c, 10000)) {
        cluster_check(c);
        /* Try every connected node until one accepts the command. */
        uint64_t index = 0;
        for (unsigned si = 0; si < c->n; si++) {
            starts = (starts + 1) % c->n;
            uint64_t idx;
            if (cluster_connected(c, starts) &&
                cluster_start_cmd(c, starts, cmd, len, &idx, NULL)) {
                index = idx;
                break;
            }
        }
        if (index == 0) {
            cluster_sleep(c, 50);
            continue;
        }
        /* Somebody claimed to be leader and accepted it: wait a while for
         * agreement on exactly this command at this index. */
        uint64_t t1 = lab_now_ms();
        while (lab_now_ms() - t1 < cluster_ms(c, 2000)) {
            unsigned nd = cluster_n_committed(c, index);
            if (nd > 0 && nd >= n && cluster_committed_is(c, index, cmd, len))
                return index;
            cluster_sleep(c, 20);
        }
        if (!retry)
            cluster_fatal(c, "one(%s) failed to reach agreement on %u nodes at index %llu",
                          what, n, (unsigned long long)index);
    }
    cluster_fatal(c, "one(%s) failed to reach agreement on %u nodes within 10 s", what, n);
}

uint64_t cluster_one_int(struct cluster *c, uint64_t x, unsigned n, bool retry)
{
    uint8_t cmd[8];
    lab_cmd_int(cmd, x);
    return cluster_one(c, cmd, sizeof(cmd), n, retry);
}

int64_t cluster_wait(struct cluster *c, uint64_t index, unsigned n, int64_t start_term)
{
    unsigned to = 10;
    for (int iters = 0; iters < 30; iters++) {
        if (cluster_n_committed(c, index) >= n)
            break;
        cluster_sleep(c, to);
        if (to < 1000)
            to *= 2;
        if (start_term > -1)
            for (unsigned i = 0; i < c->n; i++) {
                uint64_t term;
                bool leader;
                if (cluster_get_state(c, i, &term, &leader) && term > (uint64_t)start_term)
                    return LAB_WAIT_TERM_CHANGED; /* someone moved on: can't be sure */
            }
    }
    unsigned nd = cluster_n_committed(c, index);
    if (nd < n)
        cluster_fatal(c, "only %u decided for index %llu; wanted %u", nd,
                      (unsigned long long)index, n);
    int64_t value = LAB_WAIT_NOT_INT;
    pthread_mutex_lock(&c->ck);
    const struct applied_entry *a = &c->applied[index];
    if (a->set && a->type == RAFT_ENTRY_COMMAND && a->len == 8) {
        uint64_t x = 0;
        for (int i = 7; i >= 0; i--)
            x = x << 8 | a->data[i];
        value = (int64_t)(x & INT64_MAX);
    }
    pthread_mutex_unlock(&c->ck);
    return value;
}

/* ---- counters ---- */

uint64_t cluster_rpc_count(struct cluster *c, unsigned i)
{
    struct simnet_stats st;
    simnet_stats(c->net, &st);
    return st.rpcs_in[i];
}

uint64_t cluster_rpc_total(struct cluster *c)
{
    struct simnet_stats st;
    simnet_stats(c->net, &st);
    return st.rpcs;
}

uint64_t cluster_bytes_total(struct cluster *c)
{
    struct simnet_stats st;
    simnet_stats(c->net, &st);
    return st.bytes;
}

size_t cluster_log_size(struct cluster *c)
{
    size_t max = 0;
    for (unsigned i = 0; i < c->n; i++) {
        size_t s = memstore_raft_state_size(c->slots[i].store);
        if (s > max)
            max = s;
    }
    return max;
}
