/*
 * lab_membership.c - lab part "membership": cluster membership changes
 * (Raft thesis ch. 4, one server at a time) over the simulated network.
 * A new server joins as a learner, receives the log and is promoted to
 * voter once it has caught up (§4.2.1); a server, the leader included, is
 * removed by a configuration without it (§4.2.2); configurations live in
 * the log and in snapshots, and survive restarts.
 *
 * Scenarios: grow 3 -> 5 and shrink 5 -> 3 under a client load (the history
 * must be linearizable); remove the leader of five (a new leader within two
 * election timeouts); an empty server catching up on 10,000 entries while a
 * voter crashes (commits go on); promoting a dead server (refused within
 * the catch-up rounds, with a reason); a change, snapshots past it and a
 * restart of every node (the committed configuration comes back); the
 * changes the leader refuses; a transfer to a new voter with the old
 * leader cut off while clients read on it (no stale read). Removed servers
 * coming back, and two changes from different terms, are in
 * lab_membership_safety.c.
 *
 * Every test also runs the harness's standing checks (tests/support/
 * cluster.h): one leader per term and, by the stored votes, a majority of
 * the voters of the leader's configuration behind it; Leader Append-Only,
 * Log Matching, Leader Completeness, State Machine Safety.
 *
 * Run one test: RAFT_TEST=test_remove_the_leader_of_five build/tests/lab_membership
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "tests/support/clerk.h"

#define PART "membership"

/* Ids from .. to-1, as a set. */
static uint64_t ids(unsigned from, unsigned to)
{
    uint64_t set = 0;
    for (unsigned i = from; i < to; i++)
        set |= 1ull << i;
    return set;
}

static struct cluster *start(void **state, const char *desc, const struct cluster_opts *opts)
{
    return cluster_new(state, PART, desc, opts);
}

static struct raft_membership_view view_of(struct cluster *c, unsigned i)
{
    struct raft_membership_view v;
    if (!cluster_membership(c, i, &v))
        cluster_fatal(c, "n%u is down: no view of its configuration", i);
    return v;
}

static bool is_voter(const struct raft_membership_view *v, unsigned id)
{
    return lab_voters(&v->config) >> id & 1;
}

#define EITHER 0 /* a refusal: -EINVAL or -EBUSY */

/* Expects a refusal (-EINVAL or -EBUSY, or exactly `want`) with a sentence. */
static void expect_refused(struct cluster *c, const char *what, int rc, int want,
                           const char *why)
{
    bool refused = want == EITHER ? rc == -EINVAL || rc == -EBUSY : rc == want;
    if (!refused || !why[0])
        cluster_fatal(c, "%s: got %d (\"%s\"), want %s with a reason", what, rc, why,
                      want == -EBUSY ? "-EBUSY" : want == -EINVAL ? "-EINVAL" : "a refusal");
    printf("  %s: refused: %s\n", what, why);
}

/* ---- a client load that goes on across changes ---- */

struct writer {
    struct cluster *c;
    struct kvlab *kl;
    struct lincheck_history *h;
    int id;
    atomic_bool stop; /* set by the test thread */
    atomic_uint acked;
    char last[32]; /* written by the writer, read after the join */
};

/* One clerk puts its own key, values 1, 2, ... each once acknowledged. */
static void *writer_main(void *arg)
{
    struct writer *w = arg;
    struct clerk k;
    clerk_init(&k, w->c, w->kl, w->h, w->id);
    k.wait_min_ms = k.wait_max_ms = 500;
    char key[16], value[32];
    snprintf(key, sizeof(key), "k%d", w->id);
    for (unsigned v = 1; !atomic_load(&w->stop); v++) {
        snprintf(value, sizeof(value), "%u", v);
        if (clerk_put(&k, key, value, 10000) != 0)
            cluster_fatal(w->c, "put %s=%s not acknowledged within 10 s", key, value);
        atomic_store(&w->acked, v);
        snprintf(w->last, sizeof(w->last), "%s", value);
        lab_sleep_ms(2); /* a steady load, not a busy loop */
    }
    return NULL;
}

#define WRITERS 3

static void writers_start(struct writer *w, pthread_t *th, struct cluster *c,
                          struct kvlab *kl, struct lincheck_history *h)
{
    for (int i = 0; i < WRITERS; i++) {
        w[i] = (struct writer){.c = c, .kl = kl, .h = h, .id = i};
        pthread_create(&th[i], NULL, writer_main, &w[i]);
    }
}

static unsigned writers_acked(struct writer *w)
{
    unsigned total = 0;
    for (int i = 0; i < WRITERS; i++)
        total += atomic_load(&w[i].acked);
    return total;
}

/* Stops the writers; every key must then read as its last acknowledged put. */
static void writers_stop_and_check(struct writer *w, pthread_t *th, struct cluster *c,
                                   struct kvlab *kl, struct lincheck_history *h)
{
    for (int i = 0; i < WRITERS; i++) {
        atomic_store(&w[i].stop, true);
        pthread_join(th[i], NULL);
    }
    cluster_check(c);
    struct clerk k;
    clerk_init(&k, c, kl, h, 10);
    for (int i = 0; i < WRITERS; i++) {
        char key[16], *got = NULL;
        snprintf(key, sizeof(key), "k%d", i);
        if (clerk_read(&k, key, 5000, &got) != 0 || strcmp(got, w[i].last) != 0)
            cluster_fatal(c, "%s reads \"%s\", but its last acknowledged put was %s", key,
                          got ? got : "(no value)", w[i].last);
        free(got);
    }
}

/* ---- growing and shrinking ---- */

/* §4.2: one server at a time, 3 -> 4 -> 5 -> 4 -> 3, while clients put.
 * Each new server catches up as a learner before it votes; the two servers
 * removed are two of the original three, chosen by the seed, so the
 * leader may be one of them. No put is lost or applied twice (the history
 * is linearizable, each key ends at its last acknowledged value). */
static void test_grow_three_to_five_and_shrink_to_three_under_load(void **state)
{
    struct cluster_opts opts = {.n = 3, .kv = true};
    struct cluster *c = start(state, "grow 3 -> 5 and shrink 5 -> 3 under load", &opts);
    struct kvlab *kl = kvlab_new(c);
    struct lincheck_history *h = lincheck_new();
    struct writer w[WRITERS];
    pthread_t th[WRITERS];
    cluster_check_one_leader(c);
    writers_start(w, th, c, kl, h);
    cluster_sleep(c, 300);
    uint64_t members = ids(0, 3);
    for (int k = 0; k < 2; k++) {
        unsigned before = writers_acked(w);
        unsigned id = cluster_start_joining(c);
        uint64_t took = cluster_add_ok(c, id, true);
        members |= 1ull << id;
        cluster_await_config(c, members, 0);
        printf("  n%u added in %llu ms, %u puts acknowledged meanwhile\n", id,
               (unsigned long long)took, writers_acked(w) - before);
        cluster_sleep(c, 200);
    }
    unsigned first = cluster_rand(c, 3), second = (first + 1 + cluster_rand(c, 2)) % 3;
    unsigned gone[2] = {first, second};
    for (int k = 0; k < 2; k++) {
        int leader = lab_current_leader(c, NULL);
        unsigned before = writers_acked(w);
        uint64_t took = cluster_remove_ok(c, gone[k]);
        members &= ~(1ull << gone[k]);
        cluster_await_config(c, members, 0);
        printf("  n%u removed%s in %llu ms, %u puts acknowledged meanwhile\n", gone[k],
               leader == (int)gone[k] ? " (it led)" : "", (unsigned long long)took,
               writers_acked(w) - before);
        cluster_sleep(c, 200);
    }
    /* The two removed servers are gone for good: the three carry on alone. */
    cluster_crash(c, first);
    cluster_crash(c, second);
    cluster_sleep(c, 500);
    writers_stop_and_check(w, th, c, kl, h);
    printf("  %u puts acknowledged in all\n", writers_acked(w));
    lab_check_linearizable(c, h);
    lincheck_free(h);
    cluster_end(c);
    kvlab_free(kl);
}

/* §4.2.2: the leader removes itself. It manages the cluster without
 * counting itself until the configuration commits, then steps down; the
 * other four elect a leader within two election timeouts, and the removed
 * server, still connected, disturbs nobody: the term stays put. Then a
 * follower is removed: it learns it, and stays quiet too. */
static void test_remove_the_leader_of_five(void **state)
{
    struct cluster_opts opts = {.n = 5};
    struct cluster *c = start(state, "remove the leader of five", &opts);
    unsigned old = cluster_check_one_leader(c);
    cluster_one_int(c, 1, 5, true);
    uint64_t old_term = cluster_check_terms(c);
    cluster_remove_ok(c, old);
    uint64_t t0 = lab_now_ms();
    struct raft_status st;
    /* It steps down once the change commits, not when check-quorum would
     * notice an election timeout later. */
    while (cluster_status(c, old, &st) && st.role == RAFT_LEADER && st.term == old_term) {
        if (lab_now_ms() - t0 > cluster_ms(c, 2 * LAB_HEARTBEAT_MS))
            cluster_fatal(c, "n%u still leads %u ms after the change that removes it committed",
                          old, cluster_ms(c, 2 * LAB_HEARTBEAT_MS));
        lab_sleep_ms(1);
    }
    unsigned leader = lab_await_new_leader(c, old_term, &st);
    uint64_t took = lab_now_ms() - t0;
    printf("  n%u removed itself; n%u leads T%llu %llu ms later\n", old, leader,
           (unsigned long long)st.term, (unsigned long long)took);
    if (leader == old)
        cluster_fatal(c, "n%u leads T%llu after removing itself", old,
                      (unsigned long long)st.term);
    if (took > cluster_ms(c, 2 * LAB_ELECTION_MAX_MS))
        cluster_fatal(c, "no new leader within two election timeouts (%u ms) of n%u's "
                      "removal: %llu ms", cluster_ms(c, 2 * LAB_ELECTION_MAX_MS), old,
                      (unsigned long long)took);
    uint64_t rest = ids(0, 5) & ~(1ull << old);
    cluster_await_config(c, rest, 0);
    cluster_one_int(c, 2, 4, true);
    uint64_t term = st.term;
    cluster_sleep(c, 2 * LAB_ET);
    for (unsigned i = 0; i < 5; i++)
        if (i != old && cluster_status(c, i, &st) && st.term != term)
            cluster_fatal(c, "n%u moved from T%llu to T%llu with the removed n%u connected", i,
                          (unsigned long long)term, (unsigned long long)st.term, old);
    if (cluster_status(c, old, &st) && st.role == RAFT_LEADER)
        cluster_fatal(c, "the removed n%u still leads T%llu", old, (unsigned long long)st.term);
    /* A removed follower is sent the entry that removes it (§4.2.2), so it
     * knows, and does not campaign once the leader stops writing to it. */
    unsigned f = (leader + 1) % 5 == old ? (leader + 2) % 5 : (leader + 1) % 5;
    cluster_remove_ok(c, f);
    rest &= ~(1ull << f);
    cluster_await_config(c, rest, 0);
    uint64_t until = lab_now_ms() + cluster_ms(c, 2000);
    for (struct raft_membership_view v = view_of(c, f); raft_membership_find(&v.config, f);
         v = view_of(c, f)) {
        if (lab_now_ms() > until)
            cluster_fatal(c, "the removed n%u still counts itself in 2 s later", f);
        lab_sleep_ms(1);
    }
    term = cluster_check_terms(c);
    cluster_sleep(c, 2 * LAB_ET);
    if (!cluster_status(c, f, &st) || st.role != RAFT_FOLLOWER || st.term != term)
        cluster_fatal(c, "the removed n%u, told of its removal, campaigned: %s at T%llu", f,
                      raft_role_name(st.role), (unsigned long long)st.term);
    cluster_one_int(c, 3, 3, true);
    cluster_end(c);
}

/* ---- catching up ---- */

struct add_call {
    struct cluster *c;
    unsigned id;
    bool voter;
    atomic_bool done;
};

static void *add_ok_main(void *arg)
{
    struct add_call *a = arg;
    cluster_add_ok(a->c, a->id, a->voter); /* ends this thread on failure */
    atomic_store(&a->done, true);
    return NULL;
}

/* §4.2.1: an empty server receives 10,000 entries as a learner before it
 * counts. Its disk is slow and batches are small, so catching up takes many
 * rounds; a voter crashes in the middle. Commits go on (the learner is no
 * part of the majority), the catch-up goes on, and the new server is then
 * promoted: three voters of four are up, which is a majority. */
static void test_learner_catches_up_on_10000_entries_while_a_voter_crashes(void **state)
{
    struct cluster_opts opts = {.n = 3, .max_batch_bytes = 1024};
    struct cluster *c = start(state, "an empty server catches up on 10,000 entries while a "
                              "voter crashes", &opts);
    unsigned leader = cluster_check_one_leader(c);
    uint64_t index = 0, term;
    for (uint64_t x = 1; x <= 10000; x++)
        if (!cluster_start_int(c, leader, x, &index, &term))
            cluster_fatal(c, "n%u refused entry %llu", leader, (unsigned long long)x);
    cluster_wait(c, index, 3, -1);
    unsigned fresh = cluster_start_joining(c);
    memstore_set_write_delay(cluster_store(c, fresh), 5);
    struct add_call a = {.c = c, .id = fresh, .voter = true};
    pthread_t th;
    pthread_create(&th, NULL, add_ok_main, &a);
    /* Wait until the learner holds part of the log, then crash a voter. */
    struct raft_status st;
    uint64_t until = lab_now_ms() + cluster_ms(c, 10000);
    while (!cluster_status(c, fresh, &st) || st.last_index < 100) {
        if (lab_now_ms() > until)
            cluster_fatal(c, "n%u received nothing within 10 s of being added", fresh);
        lab_sleep_ms(1);
    }
    if (st.last_index >= index)
        cluster_fatal(c, "n%u caught up before a voter could be crashed", fresh);
    int now_leading = lab_current_leader(c, NULL);
    unsigned victim = (unsigned)(now_leading >= 0 ? now_leading : (int)leader) + 1;
    victim %= 3; /* a voter that does not lead: the catch-up goes on */
    cluster_crash(c, victim);
    printf("  n%u crashed while n%u held %llu of %llu entries\n", victim, fresh,
           (unsigned long long)st.last_index, (unsigned long long)index);
    /* Commits go on without the learner: were it counted already, each
     * commit would wait until it held everything before. */
    unsigned while_lagging = 0;
    for (uint64_t x = 0; x < 5; x++) {
        cluster_one_int(c, 20000 + x, 2, false);
        if (cluster_status(c, fresh, &st) && st.last_index < index)
            while_lagging++;
    }
    printf("  %u of 5 commits done while n%u still lagged\n", while_lagging, fresh);
    if (while_lagging == 0)
        cluster_fatal(c, "no commit completed while n%u lagged: the commits waited for the "
                      "learner", fresh);
    pthread_join(th, NULL);
    cluster_check(c);
    if (!atomic_load(&a.done))
        cluster_fatal(c, "adding n%u did not complete", fresh);
    cluster_await_config(c, ids(0, 3) | 1ull << fresh, 0);
    uint64_t last = cluster_one_int(c, 30000, 3, true);
    if (!cluster_status(c, fresh, &st) || st.applied < last)
        cluster_fatal(c, "the new voter n%u has applied only %llu of %llu", fresh,
                      (unsigned long long)st.applied, (unsigned long long)last);
    cluster_start1(c, victim);
    cluster_connect(c, victim);
    cluster_one_int(c, 30001, 4, true);
    cluster_end(c);
}

/* Asks the leader to make the dead server `dead` a voter: refused within a
 * few election timeouts, with a reason; it is no voter afterwards, and the
 * majority is still that of the three live voters (were the dead server
 * counted, four voters would need all three live ones: one cut off, and
 * nothing would commit). */
static void expect_dead_not_promoted(struct cluster *c, unsigned leader, unsigned dead,
                                     const char *what, uint64_t x)
{
    char why[256];
    int32_t hint;
    uint64_t t0 = lab_now_ms();
    int rc = cluster_add_member(c, leader, dead, true, cluster_ms(c, 10000), &hint, why,
                                sizeof(why));
    uint64_t took = lab_now_ms() - t0;
    printf("  %s (n%u): %llu ms\n", what, dead, (unsigned long long)took);
    expect_refused(c, what, rc, -EINVAL, why);
    if (took > cluster_ms(c, 4 * LAB_ELECTION_MAX_MS))
        cluster_fatal(c, "%s: the refusal took %llu ms, more than four election timeouts",
                      what, (unsigned long long)took);
    struct raft_membership_view v = view_of(c, leader);
    if (is_voter(&v, dead))
        cluster_fatal(c, "%s: n%u is a voter after the refusal", what, dead);
    cluster_disconnect(c, (leader + 1) % 3);
    cluster_one_int(c, x, 2, false);
    cluster_connect(c, (leader + 1) % 3);
}

/* A learner, added while it lives, that then dies. */
static unsigned dead_learner(struct cluster *c)
{
    unsigned id = cluster_start_joining(c);
    cluster_add_ok(c, id, false);
    cluster_one_int(c, 100 + id, 4, true); /* applied by the three voters and by it */
    cluster_crash(c, id);
    return id;
}

/* §4.2.1: "if the new server is unavailable or slow [...] the leader should
 * abort the change": a server that makes no progress for an election
 * timeout is not promoted. Three dead servers: one that died before it was
 * added; a learner that died and has since missed entries; a learner that
 * died caught up and has been silent for two election timeouts, the log
 * unchanged since (its matchIndex is the leader's last index, but nothing
 * has come from it: it makes no progress either). */
static void test_promoting_a_dead_server_is_refused(void **state)
{
    struct cluster_opts opts = {.n = 3};
    struct cluster *c = start(state, "promoting a dead server: refused, with a reason", &opts);
    unsigned leader = cluster_check_one_leader(c);
    cluster_one_int(c, 1, 3, true);
    unsigned dead = cluster_start_joining(c);
    cluster_crash(c, dead);
    expect_dead_not_promoted(c, leader, dead, "add a server that died", 10);

    dead = dead_learner(c);
    cluster_one_int(c, 11, 3, true); /* entries it will never hold */
    expect_dead_not_promoted(c, leader, dead, "promote a dead learner that lags", 12);

    dead = dead_learner(c);
    cluster_sleep(c, 2 * LAB_ELECTION_MAX_MS);
    expect_dead_not_promoted(c, leader, dead, "promote a learner silent for two election "
                             "timeouts", 13);
    cluster_end(c);
}

/* ---- configurations in snapshots ---- */

/* The snapshot carries the configuration as of its last index (§7, thesis
 * §5.1): once every entry of both changes is compacted away, a restart of
 * every node finds the configuration only there. The bootstrap says
 * n0 n1 n2, and the joined node has none: both must give way to the
 * committed configuration. The removed server, restarted too, stays out. */
static void test_configuration_survives_snapshots_and_a_restart_of_all(void **state)
{
    struct cluster_opts opts = {.n = 3, .snapshot_every = 10};
    struct cluster *c = start(state, "a change, snapshots, then a restart of every node",
                              &opts);
    cluster_check_one_leader(c);
    cluster_one_int(c, 1, 3, true);
    unsigned fresh = cluster_start_joining(c);
    cluster_add_ok(c, fresh, true);
    unsigned gone = cluster_rand(c, 3);
    cluster_remove_ok(c, gone);
    uint64_t members = (ids(0, 3) | 1ull << fresh) & ~(1ull << gone);
    cluster_await_config(c, members, 0);
    uint64_t config_index = 0;
    struct raft_membership m;
    for (uint64_t i = 1; i <= cluster_max_applied(c); i++)
        if (cluster_applied_config(c, i, &m))
            config_index = i;
    for (uint64_t x = 0; x < 40; x++)
        cluster_one_int(c, 100 + x, 3, true);
    /* Wait until every member's stored snapshot is past the last change. */
    uint64_t until = lab_now_ms() + cluster_ms(c, 5000);
    for (unsigned i = 0; i < cluster_n(c); i++) {
        struct memstore_view v;
        for (;;) {
            memstore_view(cluster_store(c, i), &v);
            uint64_t snap = v.snapshot_index;
            memstore_view_free(&v);
            if (!(members >> i & 1) || snap > config_index)
                break;
            if (lab_now_ms() > until)
                cluster_fatal(c, "n%u's snapshot is at %llu, not past the configuration at "
                              "%llu", i, (unsigned long long)snap,
                              (unsigned long long)config_index);
            cluster_sleep(c, 10);
        }
    }
    printf("  last change at index %llu; every member's snapshot is past it\n",
           (unsigned long long)config_index);
    for (unsigned i = 0; i < cluster_n(c); i++)
        cluster_crash(c, i);
    for (unsigned i = 0; i < cluster_n(c); i++) {
        cluster_start1(c, i);
        cluster_connect(c, i);
    }
    unsigned leader = cluster_check_one_leader(c);
    if (leader == gone)
        cluster_fatal(c, "the removed n%u leads after the restart", gone);
    cluster_await_config(c, members, 0);
    cluster_one_int(c, 999, 3, true);
    cluster_end(c);
}

/* ---- refusals ---- */

struct change_call {
    struct cluster *c;
    unsigned on, id;
    int rc;
    char why[256];
};

static void *add_voter_main(void *arg)
{
    struct change_call *a = arg;
    int32_t hint;
    a->rc = cluster_add_member(a->c, a->on, a->id, true, cluster_ms(a->c, 5000), &hint,
                               a->why, sizeof(a->why));
    return NULL;
}

static void *remove_main(void *arg)
{
    struct change_call *a = arg;
    int32_t hint;
    a->rc = cluster_remove_member(a->c, a->on, a->id, cluster_ms(a->c, 1000), &hint, a->why,
                                  sizeof(a->why));
    return NULL;
}

/* Waits up to 2 s until node i's configuration holds id (or, !present,
 * no longer does). */
static void await_in_config(struct cluster *c, unsigned i, unsigned id, bool present)
{
    uint64_t until = lab_now_ms() + cluster_ms(c, 2000);
    for (;;) {
        struct raft_membership_view v = view_of(c, i);
        if ((raft_membership_find(&v.config, id) != NULL) == present)
            return;
        if (lab_now_ms() > until)
            cluster_fatal(c, "n%u's configuration %s n%u 2 s after the change began", i,
                          present ? "still lacks" : "still holds", id);
        lab_sleep_ms(1);
    }
}

/* What the leader refuses, each with a sentence saying why (thesis ch. 4):
 * an id already a member; removing an id that is no member; a transfer to
 * a learner, which cannot win (§3.10); a second change while one is under
 * way (§4.1, one at a time: while the first's entry is not committed, and
 * while its server catches up); an id removed before, which must never count
 * again; removing the last voter. A refusal changes nothing: the leader and
 * the term stay, commits go on. */
static void test_refused_changes(void **state)
{
    struct cluster_opts opts = {.n = 3};
    struct cluster *c = start(state, "what the leader refuses, and why", &opts);
    unsigned leader = cluster_check_one_leader(c);
    cluster_one_int(c, 1, 3, true);
    uint64_t term = cluster_check_terms(c);
    unsigned f = (leader + 1) % 3, g = (leader + 2) % 3;
    char why[256];
    int32_t hint;
    int rc = cluster_add_member(c, leader, f, true, 1000, &hint, why, sizeof(why));
    expect_refused(c, "add a member again", rc, EITHER, why);
    rc = cluster_remove_member(c, leader, 7, 1000, &hint, why, sizeof(why));
    expect_refused(c, "remove n7, no member", rc, EITHER, why);

    unsigned learner = cluster_start_joining(c);
    cluster_add_ok(c, learner, false);
    rc = cluster_transfer(c, leader, (int32_t)learner, 1000, &hint, why, sizeof(why));
    expect_refused(c, "transfer to a learner", rc, EITHER, why);

    /* A change under way, its entry not committed: the followers are cut
     * off, so the learner's removal cannot commit. */
    cluster_disconnect(c, f);
    cluster_disconnect(c, g);
    struct change_call stuck = {.c = c, .on = leader, .id = learner};
    pthread_t th;
    pthread_create(&th, NULL, remove_main, &stuck);
    await_in_config(c, leader, learner, false);
    rc = cluster_add_member(c, leader, 60, false, 1000, &hint, why, sizeof(why));
    pthread_join(th, NULL);
    expect_refused(c, "a change while another's entry is not committed", rc, -EBUSY, why);
    cluster_connect(c, f);
    cluster_connect(c, g);
    leader = cluster_check_one_leader(c);
    term = cluster_check_terms(c);
    f = (leader + 1) % 3;
    g = (leader + 2) % 3;
    cluster_remove_ok(c, learner); /* done now, if the leader's stepping down undid it */

    /* A change under way: a server that cannot be reached makes no
     * progress, so its catch-up lasts an election timeout before it fails. */
    unsigned cut = cluster_start_joining(c);
    cluster_disconnect(c, cut);
    struct change_call first = {.c = c, .on = leader, .id = cut};
    pthread_create(&th, NULL, add_voter_main, &first);
    await_in_config(c, leader, cut, true);
    rc = cluster_remove_member(c, leader, g, 1000, &hint, why, sizeof(why));
    pthread_join(th, NULL);
    expect_refused(c, "a second change while one is under way", rc, -EBUSY, why);
    expect_refused(c, "the unreachable server's promotion", first.rc, -EINVAL, first.why);

    cluster_remove_ok(c, f);
    rc = cluster_add_member(c, leader, f, true, 1000, &hint, why, sizeof(why));
    expect_refused(c, "add a removed id again", rc, EITHER, why);
    cluster_remove_ok(c, g);
    rc = cluster_remove_member(c, leader, leader, 1000, &hint, why, sizeof(why));
    expect_refused(c, "remove the last voter", rc, EITHER, why);

    struct raft_membership_view v = view_of(c, leader);
    if (lab_voters(&v.config) != 1ull << leader)
        cluster_fatal(c, "n%u is not the only voter after the refusals", leader);
    cluster_one_int(c, 2, 1, false);
    struct raft_status st;
    if (!cluster_status(c, leader, &st) || st.role != RAFT_LEADER || st.term != term)
        cluster_fatal(c, "n%u no longer leads T%llu after the refusals", leader,
                      (unsigned long long)term);
    cluster_end(c);
}

/* ---- a transfer to a new voter, the old leader cut off ---- */

struct reader {
    struct cluster *c;
    struct kvlab *kl;
    struct lincheck_history *h;
    unsigned on;
    atomic_bool stop;
};

/* Reads x on one node, over and over, every answer recorded. */
static void *reader_main(void *arg)
{
    struct reader *r = arg;
    struct clerk k;
    clerk_init(&k, r->c, r->kl, r->h, 20);
    while (!atomic_load(&r->stop)) {
        char *got = NULL;
        k.leader = r->on;
        clerk_get(&k, "x", &got);
        free(got);
    }
    return NULL;
}

static void *transfer_main(void *arg)
{
    struct change_call *t = arg;
    int32_t hint;
    t->rc = cluster_transfer(t->c, t->on, (int32_t)t->id, cluster_ms(t->c, 2 * LAB_ET), &hint,
                             t->why, sizeof(t->why));
    return NULL;
}

/* Replacing a leader, as an operator does: add a new server, move the
 * leadership to it (§3.10), then remove the old one. Here the old leader is
 * cut off the moment it has sent TimeoutNow, so it may never learn that it
 * was deposed, while clients keep reading there. The voters grant the
 * target at once, so the new leader takes writes while a lease of the old
 * one would still run: the old leader must stop its lease reads when it
 * sends TimeoutNow. Every read in the history must be linearizable. */
static void test_transfer_to_a_new_voter_then_the_old_leader_cut_off(void **state)
{
    struct cluster_opts opts = {.n = 3, .kv = true};
    struct cluster *c = start(state, "transfer to a new voter, the old leader cut off while "
                              "clients read there", &opts);
    struct kvlab *kl = kvlab_new(c);
    struct lincheck_history *h = lincheck_new();
    struct clerk wr;
    clerk_init(&wr, c, kl, h, 0);
    wr.wait_min_ms = wr.wait_max_ms = 300;
    unsigned old = cluster_check_one_leader(c);
    if (clerk_put(&wr, "x", "a", 10000) != 0)
        cluster_fatal(c, "put x=a not acknowledged");
    unsigned fresh = cluster_start_joining(c);
    cluster_add_ok(c, fresh, true);
    struct reader r = {.c = c, .kl = kl, .h = h, .on = old};
    pthread_t rth, tth;
    pthread_create(&rth, NULL, reader_main, &r);
    struct simnet_stats st;
    simnet_stats(cluster_net(c), &st);
    uint64_t sent = st.by_type[RAFT_MSG_TIMEOUT_NOW];
    struct change_call t = {.c = c, .on = old, .id = fresh};
    pthread_create(&tth, NULL, transfer_main, &t);
    uint64_t until = lab_now_ms() + cluster_ms(c, 2 * LAB_ET);
    do {
        simnet_stats(cluster_net(c), &st);
        if (lab_now_ms() > until)
            cluster_fatal(c, "n%u sent no TimeoutNow within 2 s of the transfer's start", old);
    } while (st.by_type[RAFT_MSG_TIMEOUT_NOW] == sent);
    cluster_disconnect(c, old);
    wr.allowed = LAB_ALL_NODES & ~(1u << old);
    wr.leader = fresh;
    char value[16];
    for (int j = 0; j < 5; j++) {
        snprintf(value, sizeof(value), "b%d", j);
        if (clerk_put(&wr, "x", value, 10000) != 0)
            cluster_fatal(c, "put x=%s without the old leader not acknowledged", value);
    }
    atomic_store(&r.stop, true);
    pthread_join(rth, NULL);
    pthread_join(tth, NULL);
    printf("  transfer n%u -> n%u, its leader cut off after TimeoutNow: %d%s%s\n", old, fresh,
           t.rc, t.why[0] ? ", " : "", t.why);
    cluster_remove_ok(c, old);
    cluster_await_config(c, (ids(0, 3) | 1ull << fresh) & ~(1ull << old), 0);
    cluster_connect(c, old);
    if (clerk_put(&wr, "x", "c", 10000) != 0)
        cluster_fatal(c, "put x=c after the old leader's removal not acknowledged");
    lab_check_linearizable(c, h);
    lincheck_free(h);
    cluster_end(c);
    kvlab_free(kl);
}

#define LAB_TEST(t) cmocka_unit_test_teardown(t, cluster_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        LAB_TEST(test_grow_three_to_five_and_shrink_to_three_under_load),
        LAB_TEST(test_remove_the_leader_of_five),
        LAB_TEST(test_learner_catches_up_on_10000_entries_while_a_voter_crashes),
        LAB_TEST(test_promoting_a_dead_server_is_refused),
        LAB_TEST(test_configuration_survives_snapshots_and_a_restart_of_all),
        LAB_TEST(test_refused_changes),
        LAB_TEST(test_transfer_to_a_new_voter_then_the_old_leader_cut_off),
    };
    const char *only = getenv("RAFT_TEST");
    if (only && *only)
        cmocka_set_test_filter(only);
    return cmocka_run_group_tests_name("lab_membership", tests, NULL, NULL);
}
