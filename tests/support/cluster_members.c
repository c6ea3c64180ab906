/*
 * cluster_members.c - membership changes in the lab harness (see
 * cluster.h, "membership"): calling raft_add_member / raft_remove_member on
 * a node, doing a change as a client would (on whichever node leads, until
 * it is committed), and waiting until the members agree on a
 * configuration. A node joining the cluster is started by
 * cluster_start_joining (cluster.c).
 */
#include "tests/support/cluster_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "raft/membership.h"
#include "tests/support/clerk.h"

void lab_addr(unsigned id, char out[RAFT_ADDR_MAX])
{
    snprintf(out, RAFT_ADDR_MAX, "%u", id);
}

bool cluster_membership(struct cluster *c, unsigned i, struct raft_membership_view *v)
{
    struct slot *s = &c->slots[i];
    pthread_rwlock_rdlock(&s->lock);
    bool up = s->node != NULL;
    if (up)
        raft_get_membership(s->node, v);
    pthread_rwlock_unlock(&s->lock);
    return up;
}

/* A crash takes the slot's write lock only after raft_begin_stop, which
 * makes these calls return: holding the read lock while they block is safe. */
int cluster_add_member(struct cluster *c, unsigned i, unsigned id, bool voter,
                       unsigned timeout_ms, int32_t *hint, char *why, size_t why_cap)
{
    struct slot *s = &c->slots[i];
    char addr[RAFT_ADDR_MAX];
    lab_addr(id, addr);
    *hint = RAFT_NO_NODE;
    if (why && why_cap)
        why[0] = '\0';
    pthread_rwlock_rdlock(&s->lock);
    int rc = s->node ? raft_add_member(s->node, id, addr, voter, timeout_ms, hint, why, why_cap)
                     : -ESHUTDOWN;
    pthread_rwlock_unlock(&s->lock);
    return rc;
}

int cluster_remove_member(struct cluster *c, unsigned i, unsigned id, unsigned timeout_ms,
                          int32_t *hint, char *why, size_t why_cap)
{
    struct slot *s = &c->slots[i];
    *hint = RAFT_NO_NODE;
    if (why && why_cap)
        why[0] = '\0';
    pthread_rwlock_rdlock(&s->lock);
    int rc = s->node ? raft_remove_member(s->node, id, timeout_ms, hint, why, why_cap)
                     : -ESHUTDOWN;
    pthread_rwlock_unlock(&s->lock);
    return rc;
}

/* ---- id sets ---- */

uint64_t lab_voters(const struct raft_membership *m)
{
    uint64_t ids = 0;
    for (uint32_t k = 0; k < m->n; k++)
        if (m->members[k].voter)
            ids |= 1ull << m->members[k].id;
    return ids;
}

uint64_t lab_learners(const struct raft_membership *m)
{
    uint64_t ids = 0;
    for (uint32_t k = 0; k < m->n; k++)
        if (!m->members[k].voter)
            ids |= 1ull << m->members[k].id;
    return ids;
}

void lab_describe_ids(uint64_t ids, char *buf, size_t cap)
{
    size_t off = 0;
    buf[0] = '\0';
    for (unsigned i = 0; i <= RAFT_MAX_ID && off < cap; i++)
        if (ids >> i & 1)
            off += (size_t)snprintf(buf + off, cap - off, "%sn%u", off ? " " : "", i);
    if (!off)
        snprintf(buf, cap, "nobody");
}

/* ---- a change, as a client makes it ---- */

enum wanted { WANT_VOTER, WANT_LEARNER, WANT_GONE };

/* Whether the node leading now has committed a configuration in which id
 * is what the change asked for. */
static bool change_done(struct cluster *c, unsigned id, enum wanted want)
{
    int leader = lab_current_leader(c, NULL);
    struct raft_membership_view v;
    if (leader < 0 || !cluster_membership(c, (unsigned)leader, &v) || !v.committed)
        return false;
    const struct raft_member *m = raft_membership_find(&v.config, id);
    return want == WANT_GONE ? m == NULL : m && m->voter == (want == WANT_VOTER);
}

static uint64_t change_ok(struct cluster *c, unsigned id, enum wanted want)
{
    char what[48], why[256] = "";
    snprintf(what, sizeof(what), want == WANT_GONE ? "remove n%u" : "add n%u as a %s", id,
             want == WANT_VOTER ? "voter" : "learner");
    cluster_note(c, "%s", what);
    uint64_t t0 = lab_now_ms();
    bool interrupted = false;
    int rc = 0;
    while (lab_now_ms() - t0 < cluster_ms(c, 20000)) {
        cluster_check(c);
        int leader = lab_current_leader(c, NULL);
        if (leader < 0) {
            cluster_sleep(c, 20);
            continue;
        }
        int32_t hint;
        unsigned wait = cluster_ms(c, 5000);
        rc = want == WANT_GONE
                 ? cluster_remove_member(c, (unsigned)leader, id, wait, &hint, why, sizeof(why))
                 : cluster_add_member(c, (unsigned)leader, id, want == WANT_VOTER, wait, &hint,
                                      why, sizeof(why));
        if (rc == 0 || change_done(c, id, want)) {
            uint64_t took = lab_now_ms() - t0;
            cluster_note(c, "%s: committed after %llu ms", what, (unsigned long long)took);
            return took;
        }
        if (rc == -EPERM) {
            cluster_sleep(c, 10); /* an election is under way */
            continue;
        }
        /* A refusal is the answer, unless an earlier call was interrupted:
         * its change may be the one now under way, or done in part. */
        if ((rc == -EINVAL || rc == -EBUSY) && !interrupted)
            cluster_fatal(c, "%s: n%d refused (%s): %s", what, leader,
                          rc == -EINVAL ? "-EINVAL" : "-EBUSY", why);
        interrupted = true;
        cluster_sleep(c, 50);
    }
    cluster_fatal(c, "%s: not committed within 20 s (last answer %d: %s)", what, rc, why);
}

uint64_t cluster_add_ok(struct cluster *c, unsigned id, bool voter)
{
    return change_ok(c, id, voter ? WANT_VOTER : WANT_LEARNER);
}

uint64_t cluster_remove_ok(struct cluster *c, unsigned id)
{
    return change_ok(c, id, WANT_GONE);
}

/* ---- agreement on a configuration ---- */

static bool view_is(const struct raft_membership_view *v, uint64_t voters, uint64_t learners)
{
    return v->committed && lab_voters(&v->config) == voters &&
           lab_learners(&v->config) == learners;
}

void cluster_await_config(struct cluster *c, uint64_t voters, uint64_t learners)
{
    uint64_t members = voters | learners;
    uint64_t until = lab_now_ms() + cluster_ms(c, 10000);
    for (;;) {
        bool agreed = true;
        for (unsigned i = 0; i < cluster_n(c) && agreed; i++) {
            struct raft_membership_view v;
            if ((members >> i & 1) && cluster_membership(c, i, &v))
                agreed = view_is(&v, voters, learners);
        }
        if (agreed)
            return;
        if (lab_now_ms() > until)
            break;
        cluster_sleep(c, 10);
    }
    char want_v[96], want_l[96], views[600] = "";
    lab_describe_ids(voters, want_v, sizeof(want_v));
    lab_describe_ids(learners, want_l, sizeof(want_l));
    size_t off = 0;
    for (unsigned i = 0; i < cluster_n(c) && off < sizeof(views); i++) {
        struct raft_membership_view v;
        char cfg[160];
        if (!(members >> i & 1) || !cluster_membership(c, i, &v))
            continue;
        membership_describe(&v.config, cfg, sizeof(cfg));
        off += (size_t)snprintf(views + off, sizeof(views) - off, "; n%u: %s (%s, index %llu)",
                                i, cfg, v.committed ? "committed" : "not committed",
                                (unsigned long long)v.index);
    }
    cluster_fatal(c, "the members did not agree within 10 s on voters %s and learners %s%s",
                  want_v, want_l, views);
}

bool cluster_applied_config(struct cluster *c, uint64_t index, struct raft_membership *m)
{
    pthread_mutex_lock(&c->ck);
    bool is = index < c->applied_cap && c->applied[index].set &&
              c->applied[index].type == RAFT_ENTRY_CONFIG &&
              raft_membership_decode(m, c->applied[index].data, c->applied[index].len) == 0;
    pthread_mutex_unlock(&c->ck);
    return is;
}
