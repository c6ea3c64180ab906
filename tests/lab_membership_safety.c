/*
 * lab_membership_safety.c - lab part "membership", the scenarios where a
 * change could break safety or liveness if a rule of the Raft thesis
 * (ch. 4) were left out:
 *
 *   - a removed server that was partitioned (with pre-vote, and without it,
 *     restarted on its old data) comes back and must not disturb the
 *     cluster (§4.2.3): no term rises on the majority;
 *   - learners cut off with one voter: they neither elect it nor keep it
 *     leading (§4.2.1: they do not count toward a majority);
 *   - two changes from different terms that share one committed parent
 *     (the flaw in single-server changes Ongaro described on raft-dev in
 *     2015, "bug in single-server membership changes"), scripted step by
 *     step: a new leader must commit an entry of its own term before it
 *     changes the configuration, so the two can never both commit.
 *
 * Every test also runs the harness's standing checks (tests/support/
 * cluster.h), Election Safety by the stored votes among them.
 *
 * Run one test: RAFT_TEST=test_two_changes_from_different_terms_never_both_commit
 *               build/tests/lab_membership_safety
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "tests/support/clerk.h"

#define PART "membership"

static uint64_t ids(unsigned from, unsigned to)
{
    uint64_t set = 0;
    for (unsigned i = from; i < to; i++)
        set |= 1ull << i;
    return set;
}

/* The first node of `among` that leads a term above `above`, waited for
 * up to 10 s. */
static unsigned await_leader_among(struct cluster *c, uint64_t among, uint64_t above,
                                   struct raft_status *st)
{
    uint64_t until = lab_now_ms() + cluster_ms(c, 10000);
    while (lab_now_ms() < until) {
        for (unsigned i = 0; i < cluster_n(c); i++)
            if ((among >> i & 1) && cluster_status(c, i, st) && st->role == RAFT_LEADER &&
                st->term > above)
                return i;
        lab_sleep_ms(1);
    }
    char who[64];
    lab_describe_ids(among, who, sizeof(who));
    cluster_fatal(c, "none of %s led a term above T%llu within 10 s", who,
                  (unsigned long long)above);
}

/* ---- a removed server comes back ---- */

/* Five nodes; a follower is cut off, removed while it cannot hear of it,
 * and healed 3 s later. It never learned that it was removed, so it times
 * out and campaigns in the configuration it knows. With pre-vote (thesis
 * §9.6) its term stays while it is alone; without it, its term climbs, and
 * it is restarted on its old data too. Either way the members must not let
 * it in: a member that hears from a leader ignores RequestVote (§4.2.3),
 * and a removed id never counts. The majority's term stays, and so does
 * its leader. */
static void removed_server_comes_back(void **state, bool pre_vote)
{
    struct cluster_opts opts = {.n = 5, .no_pre_vote = !pre_vote};
    struct cluster *c = cluster_new(state, PART, pre_vote
                                    ? "a removed server partitioned 3 s, then healed"
                                    : "a removed server partitioned 3 s without pre-vote, "
                                      "restarted on old data, then healed", &opts);
    unsigned leader = cluster_check_one_leader(c);
    cluster_one_int(c, 1, 5, true);
    unsigned gone = (leader + 1 + cluster_rand(c, 4)) % 5;
    cluster_disconnect(c, gone);
    uint64_t t0 = lab_now_ms();
    cluster_remove_ok(c, gone);
    uint64_t rest = ids(0, 5) & ~(1ull << gone);
    cluster_await_config(c, rest, 0);
    if (!pre_vote) {
        cluster_crash(c, gone);
        cluster_start1(c, gone); /* on what it stored: it counts itself in */
    }
    leader = cluster_check_one_leader(c);
    uint64_t term = cluster_check_terms(c);
    struct raft_status st;
    if (!cluster_status(c, gone, &st))
        cluster_fatal(c, "n%u is down", gone);
    uint64_t gone_term = st.term;
    while (lab_now_ms() < t0 + cluster_ms(c, 3000)) /* 3 s cut off in all */
        cluster_sleep(c, 20);
    if (!cluster_status(c, gone, &st))
        cluster_fatal(c, "n%u is down", gone);
    printf("  removed n%u alone: T%llu -> T%llu, %s (the majority is at T%llu)\n", gone,
           (unsigned long long)gone_term, (unsigned long long)st.term,
           raft_role_name(st.role), (unsigned long long)term);
    /* Without pre-vote nothing holds its term back: if it did not climb,
     * the server never campaigned and the test would show nothing. */
    if (!pre_vote && st.term <= term)
        cluster_fatal(c, "the removed n%u, alone without pre-vote, did not campaign (T%llu)",
                      gone, (unsigned long long)st.term);
    cluster_connect(c, gone);
    cluster_sleep(c, 2 * LAB_ET);
    for (unsigned i = 0; i < 5; i++)
        if (i != gone && cluster_status(c, i, &st) && st.term != term)
            cluster_fatal(c, "n%u moved from T%llu to T%llu when the removed n%u came back", i,
                          (unsigned long long)term, (unsigned long long)st.term, gone);
    if (cluster_check_one_leader(c) != leader)
        cluster_fatal(c, "n%u no longer leads after the removed n%u came back", leader, gone);
    cluster_one_int(c, 2, 4, true);
    cluster_end(c);
}

static void test_removed_server_partitioned_then_healed(void **state)
{
    removed_server_comes_back(state, true);
}

static void test_removed_server_without_pre_vote_restarted_then_healed(void **state)
{
    removed_server_comes_back(state, false);
}

/* ---- learners count for nothing ---- */

/* Node i and the two learners on one side, the other two voters on the
 * other, for 2 election timeouts: nobody on i's side may lead, and the
 * other side elects a leader of its own. Then healed. */
static void cut_with_learners(struct cluster *c, unsigned i, uint64_t learners)
{
    unsigned group[RAFT_MAX_NODES] = {0};
    for (unsigned k = 0; k < cluster_n(c); k++)
        group[k] = k == i || (learners >> k & 1) ? 0 : 1;
    cluster_partition(c, group);
    cluster_sleep(c, 2 * LAB_ET);
    struct raft_status st;
    for (unsigned k = 0; k < cluster_n(c); k++)
        if (group[k] == 0 && cluster_status(c, k, &st) && st.role == RAFT_LEADER)
            cluster_fatal(c, "n%u leads T%llu with only learners beside it", k,
                          (unsigned long long)st.term);
    unsigned other = await_leader_among(c, ids(0, 3) & ~(1ull << i), 0, &st);
    printf("  n%u with the learners: no leader there; n%u leads T%llu on the other side\n", i,
           other, (unsigned long long)st.term);
    for (unsigned k = 0; k < cluster_n(c); k++)
        group[k] = 0;
    cluster_partition(c, group);
}

/* §4.2.1: learners receive the log, but neither vote nor count toward a
 * majority. Three voters and two learners: a follower cut off with the two
 * learners cannot win an election with their votes (three of five members
 * are not two of three voters), and the leader cut off with them cannot go
 * on leading on their acknowledgements (check-quorum counts voters). The
 * vote ledger checks every leader's votes against its voters too. */
static void test_learners_neither_elect_nor_keep_a_leader(void **state)
{
    struct cluster_opts opts = {.n = 3};
    struct cluster *c = cluster_new(state, PART, "learners neither elect nor keep a leader",
                                    &opts);
    cluster_check_one_leader(c);
    cluster_one_int(c, 1, 3, true);
    uint64_t learners = 0;
    for (int k = 0; k < 2; k++) {
        unsigned id = cluster_start_joining(c);
        cluster_add_ok(c, id, false);
        learners |= 1ull << id;
    }
    cluster_await_config(c, ids(0, 3), learners);
    cluster_one_int(c, 2, 5, true);
    int leader = lab_current_leader(c, NULL);
    cut_with_learners(c, (unsigned)(leader + 1) % 3, learners);
    cluster_one_int(c, 3, 5, true);
    leader = lab_current_leader(c, NULL);
    cut_with_learners(c, (unsigned)leader, learners);
    cluster_one_int(c, 4, 5, true);
    cluster_end(c);
}

/* ---- two changes from different terms ---- */

struct change_call {
    struct cluster *c;
    unsigned on, id;
    int rc;
    char why[256];
};

static void *promote_main(void *arg)
{
    struct change_call *a = arg;
    int32_t hint;
    a->rc = cluster_add_member(a->c, a->on, a->id, true, cluster_ms(a->c, 3000), &hint,
                               a->why, sizeof(a->why));
    return NULL;
}

#define MSG_BIT(t) (1u << (t))

/* Step 3: the removal of x, asked of whichever of a, b leads now. It must
 * not commit: the leader has not committed an entry of its own term (x
 * takes no entries, L1 is away), and without that entry the change could
 * share its parent with L1's. Returns the last answer. */
static int try_removal(struct cluster *c, uint64_t ab, unsigned x, uint64_t above,
                       char *why, size_t cap)
{
    uint64_t until = lab_now_ms() + cluster_ms(c, 1500);
    int rc = -EPERM;
    while (rc == -EPERM && lab_now_ms() < until) {
        struct raft_status st;
        unsigned l2 = await_leader_among(c, ab, above, &st);
        int32_t hint;
        rc = cluster_remove_member(c, l2, x, cluster_ms(c, 1500), &hint, why, cap);
        printf("  step 3: n%u leads T%llu and is asked to remove n%u: %d%s%s\n", l2,
               (unsigned long long)st.term, x, rc, why[0] ? ", " : "", why);
    }
    return rc;
}

/* Four voters n0..n3 and a learner L (n4), all holding the same log. L1
 * leads term T1; a, b, x are the other three voters.
 *
 *  1. L1 and L alone; a, b, x together, where x may vote but cannot
 *     campaign, and receives no entries from a or b.
 *  2. L1 promotes L: the configuration C1 (five voters) reaches only L and
 *     cannot commit.
 *  3. a or b wins a term T2 > T1 with x's vote (three of the four voters)
 *     and is asked to remove x: C2 = the voters L1, a, b. C2 needs two of
 *     three, a and b, and would commit at once if the leader did not first
 *     commit an entry of T2, which needs x or L1.
 *  4. L1, L and x together: three of C1's five voters. x holds nothing of
 *     T2, so L1 (or L) is at least as up to date and wins; its entry of T3
 *     commits C1.
 *  5. Everybody together.
 *
 * Had C2 committed in step 3, C1 would commit in step 4 on top of the same
 * parent, and the two halves would have applied different entries at one
 * index. Never both: C1 commits, C2 never does. */
static void test_two_changes_from_different_terms_never_both_commit(void **state)
{
    struct cluster_opts opts = {.n = 4};
    struct cluster *c = cluster_new(state, PART, "two changes from different terms, one "
                                    "committed parent: never both commit", &opts);
    struct simnet *net = cluster_net(c);
    unsigned l1 = cluster_check_one_leader(c);
    cluster_one_int(c, 1, 4, true);
    unsigned learner = cluster_start_joining(c);
    cluster_add_ok(c, learner, false);
    cluster_await_config(c, ids(0, 4), 1ull << learner);
    cluster_one_int(c, 2, 5, true);
    l1 = (unsigned)lab_current_leader(c, NULL);
    uint64_t t1 = cluster_check_terms(c);
    unsigned a = (l1 + 1) % 4, b = (l1 + 2) % 4, x = (l1 + 3) % 4;
    uint64_t ab = 1ull << a | 1ull << b;
    printf("  L1 = n%u (T%llu), learner n%u; a = n%u, b = n%u, x = n%u\n", l1,
           (unsigned long long)t1, learner, a, b, x);

    /* 1 */
    unsigned group[RAFT_MAX_NODES] = {0};
    group[a] = group[b] = group[x] = 1;
    uint32_t entries = MSG_BIT(RAFT_MSG_APPEND_ENTRIES) | MSG_BIT(RAFT_MSG_INSTALL_SNAPSHOT) |
                       MSG_BIT(RAFT_MSG_TIMEOUT_NOW);
    simnet_block_types(net, a, x, entries);
    simnet_block_types(net, b, x, entries);
    simnet_block_types(net, x, a, MSG_BIT(RAFT_MSG_REQUEST_VOTE));
    simnet_block_types(net, x, b, MSG_BIT(RAFT_MSG_REQUEST_VOTE));
    cluster_partition(c, group);
    cluster_note(c, "step 1: n%u and n%u alone; n%u may vote for n%u or n%u but gets no "
                 "entries from them", l1, learner, x, a, b);

    /* 2 */
    struct change_call promote = {.c = c, .on = l1, .id = learner};
    pthread_t th;
    pthread_create(&th, NULL, promote_main, &promote);
    uint64_t until = lab_now_ms() + cluster_ms(c, 3000);
    struct raft_membership_view v;
    while (!cluster_membership(c, learner, &v) || !(lab_voters(&v.config) >> learner & 1)) {
        if (lab_now_ms() > until)
            cluster_fatal(c, "step 2: the promotion of n%u by n%u never reached n%u", learner,
                          l1, learner);
        lab_sleep_ms(1);
    }
    printf("  step 2: n%u holds C1, which promotes it, at index %llu (uncommitted)\n",
           learner, (unsigned long long)v.index);

    /* 3 */
    char why[256] = "";
    int removal = try_removal(c, ab, x, t1, why, sizeof(why));
    pthread_join(th, NULL);
    printf("  n%u's promotion call ended: %d%s%s\n", l1, promote.rc,
           promote.why[0] ? ", " : "", promote.why);

    /* 4 */
    for (unsigned i = 0; i < 4; i++)
        for (unsigned j = 0; j < 4; j++)
            if (i != j)
                simnet_block_types(net, i, j, 0);
    group[l1] = group[learner] = group[x] = 0;
    group[a] = group[b] = 1;
    cluster_partition(c, group);
    uint64_t top = 0;
    struct raft_status st;
    for (unsigned i = 0; i < cluster_n(c); i++)
        if (cluster_status(c, i, &st) && st.term > top)
            top = st.term;
    unsigned l3 = await_leader_among(c, 1ull << l1 | 1ull << learner | 1ull << x, top, &st);
    printf("  step 4: n%u leads T%llu with n%u, n%u and n%u together\n", l3,
           (unsigned long long)st.term, l1, learner, x);

    /* 5 */
    for (unsigned i = 0; i < cluster_n(c); i++)
        group[i] = 0;
    cluster_partition(c, group);
    cluster_await_config(c, ids(0, 5), 0);
    cluster_one_int(c, 3, 5, true);
    uint64_t promoted_at = 0, removed_at = 0;
    struct raft_membership m;
    for (uint64_t i = 1; i <= cluster_max_applied(c); i++) {
        if (!cluster_applied_config(c, i, &m))
            continue;
        if (lab_voters(&m) >> learner & 1)
            promoted_at = i;
        if (!raft_membership_find(&m, x))
            removed_at = i;
    }
    if (removal == 0 || removed_at)
        cluster_fatal(c, "the removal of n%u committed (call %d, applied at %llu) although its "
                      "leader had no committed entry of its term; the promotion %s", x,
                      removal, (unsigned long long)removed_at,
                      promoted_at ? "committed too" : "did not");
    if (!promoted_at)
        cluster_fatal(c, "the promotion of n%u never committed", learner);
    printf("  C1 committed at index %llu; the removal of n%u never did\n",
           (unsigned long long)promoted_at, x);
    cluster_end(c);
}

#define LAB_TEST(t) cmocka_unit_test_teardown(t, cluster_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        LAB_TEST(test_removed_server_partitioned_then_healed),
        LAB_TEST(test_removed_server_without_pre_vote_restarted_then_healed),
        LAB_TEST(test_learners_neither_elect_nor_keep_a_leader),
        LAB_TEST(test_two_changes_from_different_terms_never_both_commit),
    };
    const char *only = getenv("RAFT_TEST");
    if (only && *only)
        cmocka_set_test_filter(only);
    return cmocka_run_group_tests_name("lab_membership_safety", tests, NULL, NULL);
}
