/*
 * system_chaos.c - `raft node` processes over real TCP, through one
 * fault-injecting proxy per directed link, under a concurrent client load
 * whose history must be linearizable and must keep every acknowledged put.
 *
 * Scenarios:
 *   a  the leader cut off from both followers: check-quorum (thesis §6.2)
 *      makes it step down within about one election timeout, the majority
 *      elects a new leader that serves, and the old one acknowledges nothing
 *   b  a follower cut off, then healed: pre-vote (thesis §9.6) keeps its
 *      term, and the leader and term are unchanged after the heal
 *   c  five nodes split 2 | 3 (symmetric partitions): the majority side
 *      serves, the minority side's leader steps down
 *   d  a bridge: five nodes, two halves that cannot see each other and one
 *      node that sees both: a stable leader, writes continue (a round in
 *      which a node warned that its disk stalled it is not counted, so
 *      long as at most half the rounds are)
 *   e  SIGKILL and restart of the leader, then of a random node
 *   f  every link delayed 50-200 ms, connections reset at random
 *   g  the leader paused (SIGSTOP) for three election timeouts, then
 *      resumed: it follows the new leader and answers nothing stale
 *   h  the leader's requests to one follower cut, the follower's own
 *      requests still delivered: leader and term unchanged
 *   i  a rolling restart (SIGTERM, start again) of every node under load
 *
 * Tests named *_timing_sensitive assert a bound on time or that nothing
 * changes for a while: a machine loaded enough to stall a node for an
 * election timeout can fail them, and nothing else should.
 *
 * Each scenario runs CHAOS_ROUNDS rounds (default 2; `make check` sets 20).
 * Timing bounds are generous: the machine may be loaded and the nodes may
 * run under a sanitizer (timeouts are multiplied by CHAOS_TIME_SCALE, 3 by
 * default when $RAFT_BIN is a tsan build). Logs and data of a failed run
 * stay in /tmp/raft-chaos-*; CHAOS_KEEP=1 keeps them always; CHAOS_SEED=N
 * repeats the random choices (partitions, victims, the proxies' delays);
 * CHAOS_ONLY='*bridge*' runs the matching scenarios alone.
 *
 * Runs the binary named by $RAFT_BIN (make test sets it).
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <cmocka.h>

#include "raft/raft.h"
#include "tests/chaos/scenario.h"
#include "tests/support/clock.h"

/* Election timeouts of the nodes, ms; short, so that the suite is quick,
 * but several heartbeats long, so that a loaded machine does not flap.
 * Scaled by chaos_time_scale() (3 under ThreadSanitizer). */
#define ET_MIN 200
#define ET_MAX 400
#define HEARTBEAT 50
/* Three nodes with a leader, four recording clients, and ten writes
 * acknowledged: where most scenarios begin. */
static void start_three_under_load(struct scenario *t)
{
    scenario_start_cluster(t, 3, ET_MIN, ET_MAX, HEARTBEAT);
    scenario_leader(t, chaos_cluster_all(t->c), 0, NULL);
    scenario_start_clients(t, 4, 2000);
    scenario_progress(t, 10, "before any fault");
}

/* ---- a: the leader isolated ---- */

static void test_isolated_leader_steps_down_and_majority_serves_timing_sensitive(void **state)
{
    struct scenario *t = *state;
    scenario_start_cluster(t, 3, ET_MIN, ET_MAX, HEARTBEAT);
    uint64_t term;
    int leader = scenario_leader(t, chaos_cluster_all(t->c), 0, &term);
    scenario_start_clients(t, 4, 2000);
    scenario_progress(t, 10, "before any fault");
    unsigned rounds = chaos_rounds(2);
    for (unsigned round = 1; round <= rounds; round++) {
        uint64_t t0 = test_now_ms();
        chaos_cluster_isolate(t->c, (unsigned)leader);
        /* Thesis §6.2: without a majority answering for an election
         * timeout, the leader steps down. The check runs once per
         * (maximum) election timeout, so allow a few. */
        uint64_t stepped = 0;
        struct client_reply r;
        while (test_now_ms() - t0 < 6 * t->et_max + 2000 * t->scale) {
            if (chaos_cluster_status(t->c, (unsigned)leader, 300, &r) == 0 &&
                r.role != RAFT_LEADER) {
                stepped = test_now_ms() - t0;
                break;
            }
            test_sleep_ms(10);
        }
        scenario_expect(t, stepped > 0, "round %u: isolated leader n%d still leads after %u ms",
                        round, leader, 6 * t->et_max + 2000 * t->scale);
        uint64_t new_term;
        uint32_t others = chaos_cluster_all(t->c) & ~(1u << leader);
        int next = scenario_leader(t, others, term + 1, &new_term);
        uint64_t elected = test_now_ms() - t0;
        scenario_progress(t, 1, "after the leader was isolated");
        uint64_t first_ack = test_now_ms() - t0;
        scenario_progress(t, 10, "after the leader was isolated");
        uint64_t serving = test_now_ms() - t0;
        /* Pre-vote: cut off, the old leader cannot win pre-votes, so its
         * term stays where it was. */
        scenario_expect(t, chaos_cluster_status(t->c, (unsigned)leader, 1000, &r) == 0,
                        "round %u: the isolated old leader n%d does not answer status", round,
                        leader);
        scenario_expect(t, r.term == term,
                        "round %u: the isolated old leader n%d moved from term %llu to %llu", round,
                        leader, (unsigned long long)term, (unsigned long long)r.term);
        printf("    round %u: n%d isolated -> stepped down after %llu ms (election timeout "
               "%u-%u); n%d elected in T%llu after %llu ms; first write acknowledged after %llu "
               "ms, 10 after %llu ms\n",
               round, leader, (unsigned long long)stepped, t->et_min, t->et_max, next,
               (unsigned long long)new_term, (unsigned long long)elected,
               (unsigned long long)first_ack, (unsigned long long)serving);
        chaos_cluster_heal(t->c);
        scenario_expect(t, scenario_follows(t, (unsigned)leader, next, new_term, 10000 * t->scale),
                        "round %u: after the heal, n%d does not follow n%d in T%llu", round, leader,
                        next, (unsigned long long)new_term);
        leader = next;
        term = new_term;
    }
    scenario_finish(t);
}

/* ---- b: a follower isolated and healed ---- */

static void test_isolated_follower_rejoins_without_disruption_timing_sensitive(void **state)
{
    struct scenario *t = *state;
    scenario_start_cluster(t, 3, ET_MIN, ET_MAX, HEARTBEAT);
    scenario_start_clients(t, 4, 2000);
    unsigned rounds = chaos_rounds(2);
    for (unsigned round = 1; round <= rounds; round++) {
        uint64_t term;
        int leader = scenario_leader(t, chaos_cluster_all(t->c), 0, &term);
        scenario_progress(t, 5, "before the follower was cut off");
        unsigned f = ((unsigned)leader + 1 + (unsigned)(scenario_rand(t) % 2)) % 3;
        struct client_reply r;
        scenario_expect(t, chaos_cluster_status(t->c, f, 1000, &r) == 0,
                        "round %u: follower n%u does not answer status", round, f);
        uint64_t f_term = r.term;
        chaos_cluster_isolate(t->c, f);
        /* Long enough for its election timer to fire several times. */
        test_sleep_ms(5 * t->et_max);
        scenario_expect(t, chaos_cluster_status(t->c, f, 1000, &r) == 0,
                        "round %u: cut-off follower n%u does not answer status", round, f);
        /* Thesis §9.6: a node that cannot win a pre-vote never raises its
         * term, however long it is cut off. */
        scenario_expect(t, r.term == f_term,
                        "round %u: cut-off follower n%u went from term %llu to %llu (pre-vote "
                        "should keep it)",
                        round, f, (unsigned long long)f_term, (unsigned long long)r.term);
        const char *role = raft_role_name((enum raft_role)r.role);
        scenario_progress(t, 5, "with one follower cut off");
        /* The two others may have held an election of their own meanwhile
         * (on a loaded machine); what matters is that the follower's return
         * changes nothing. */
        leader = scenario_leader(t, chaos_cluster_all(t->c) & ~(1u << f), 0, &term);
        chaos_cluster_heal(t->c);
        uint64_t t0 = test_now_ms();
        scenario_expect(t, scenario_follows(t, f, leader, term, 10000 * t->scale),
                        "round %u: healed follower n%u does not follow n%d in T%llu", round, f,
                        leader, (unsigned long long)term);
        uint64_t back = test_now_ms() - t0;
        test_sleep_ms(2 * t->et_max);
        bool same = chaos_cluster_status(t->c, (unsigned)leader, 1000, &r) == 0 &&
                    r.role == RAFT_LEADER && r.term == term;
        scenario_expect(t, same,
                        "round %u: after n%u came back the leader n%d is %s in T%llu (was leader "
                        "in T%llu)",
                        round, f, leader, raft_role_name((enum raft_role)r.role),
                        (unsigned long long)r.term, (unsigned long long)term);
        printf("    round %u: n%u cut off for %u ms (it was %s, still T%llu); after the heal "
               "it follows n%d again within %llu ms; leader and term unchanged (T%llu)\n",
               round, f, 5 * t->et_max, role, (unsigned long long)f_term, leader,
               (unsigned long long)back, (unsigned long long)term);
    }
    scenario_finish(t);
}

/* ---- c: symmetric splits of five nodes ---- */

/* A random set of `k` of the n nodes. */
static uint32_t random_set(struct scenario *t, unsigned n, unsigned k)
{
    uint32_t set = 0;
    while ((unsigned)__builtin_popcount(set) < k)
        set |= 1u << (scenario_rand(t) % n);
    return set;
}

static void test_symmetric_splits_of_five(void **state)
{
    struct scenario *t = *state;
    scenario_start_cluster(t, 5, ET_MIN, ET_MAX, HEARTBEAT);
    scenario_leader(t, chaos_cluster_all(t->c), 0, NULL);
    scenario_start_clients(t, 5, 2000);
    scenario_progress(t, 10, "before any fault");
    unsigned rounds = chaos_rounds(2);
    for (unsigned round = 1; round <= rounds; round++) {
        uint64_t term;
        int before = scenario_leader(t, chaos_cluster_all(t->c), 0, &term);
        uint32_t minority = random_set(t, 5, 2);
        uint32_t majority = chaos_cluster_all(t->c) & ~minority;
        uint64_t t0 = test_now_ms();
        chaos_cluster_partition(t->c, minority);
        int leader = scenario_leader(t, majority, 0, NULL);
        uint64_t elected = test_now_ms() - t0;
        scenario_progress(t, 10, "with the majority side on its own");
        /* Check-quorum: whoever leads on the minority side steps down. */
        test_sleep_ms(3 * t->et_max);
        for (unsigned i = 0; i < 5; i++) {
            struct client_reply r;
            if (!((minority >> i) & 1) || chaos_cluster_status(t->c, i, 300, &r) != 0)
                continue;
            scenario_expect(
                t, r.role != RAFT_LEADER,
                "round %u: n%u, on the minority side 0x%x, still claims to lead in T%llu", round, i,
                minority, (unsigned long long)r.term);
        }
        printf("    round %u: minority 0x%x cut off (leader was n%d) -> n%d leads the majority "
               "after %llu ms; minority side has no leader\n",
               round, minority, before, leader, (unsigned long long)elected);
        chaos_cluster_heal(t->c);
        scenario_progress(t, 5, "after the heal");
    }
    scenario_finish(t);
}

/* ---- d: a bridge ---- */

static void test_bridge_partition_keeps_a_stable_leader_timing_sensitive(void **state)
{
    struct scenario *t = *state;
    scenario_start_cluster(t, 5, ET_MIN, ET_MAX, HEARTBEAT);
    scenario_leader(t, chaos_cluster_all(t->c), 0, NULL);
    scenario_start_clients(t, 5, 2000);
    scenario_progress(t, 10, "before any fault");
    unsigned rounds = chaos_rounds(2), stalled_rounds = 0;
    for (unsigned round = 1; round <= rounds; round++) {
        unsigned stalls = scenario_disk_stalls(t);
        /* Two halves of two nodes that cannot see each other; the fifth
         * node, the bridge, sees all. */
        unsigned bridge = (unsigned)(scenario_rand(t) % 5);
        uint32_t others = chaos_cluster_all(t->c) & ~(1u << bridge);
        uint32_t half = 0;
        while (__builtin_popcount(half) < 2)
            half |= (1u << (scenario_rand(t) % 5)) & others;
        uint32_t other_half = others & ~half;
        for (unsigned i = 0; i < 5; i++)
            for (unsigned j = 0; j < 5; j++)
                if (((half >> i) & 1) && ((other_half >> j) & 1))
                    chaos_cluster_cut_pair(t->c, i, j, true);
        uint64_t t0 = test_now_ms();
        uint64_t term;
        int leader = scenario_leader(t, chaos_cluster_all(t->c), 0, &term);
        scenario_progress(t, 10, "across the bridge partition");
        uint64_t settled = test_now_ms() - t0;
        /* Stable: the same leader in the same term a while later, with
         * writes going on all along. */
        leader = scenario_leader(t, chaos_cluster_all(t->c), 0, &term);
        test_sleep_ms(6 * t->et_max);
        uint64_t later;
        int still = scenario_leader(t, chaos_cluster_all(t->c), 0, &later);
        /* A follower whose disk write outlasts a good part of an election
         * timeout answers no one meanwhile, and check-quorum (thesis
         * §6.2) then rightly makes its leader step down: such a round
         * says nothing about the bridge, as long as most rounds do. */
        if ((still != leader || later != term) && scenario_disk_stalls(t) > stalls) {
            printf("    round %u: the leader moved from n%d T%llu to n%d T%llu while a "
                   "node's disk write kept it from answering (its log warns of it): "
                   "not counted\n", round, leader, (unsigned long long)term, still,
                   (unsigned long long)later);
            stalled_rounds++;
            chaos_cluster_heal(t->c);
            continue;
        }
        scenario_expect(
            t, still == leader && later == term,
            "round %u: bridge n%u between 0x%x and 0x%x: the leader moved from n%d T%llu to "
            "n%d T%llu with no change in the network",
            round, bridge, half, other_half, leader, (unsigned long long)term, still,
            (unsigned long long)later);
        scenario_progress(t, 5, "across the bridge partition, later");
        printf("    round %u: bridge n%u between 0x%x and 0x%x -> n%d leads in T%llu, writes "
               "flowing after %llu ms, no change of leader for %u ms\n",
               round, bridge, half, other_half, leader, (unsigned long long)term,
               (unsigned long long)settled, 6 * t->et_max);
        chaos_cluster_heal(t->c);
    }
    scenario_expect(t, stalled_rounds * 2 <= rounds,
                    "in %u of %u rounds the leader moved while a disk write stalled a node: "
                    "the disk is too slow here to tell whether a bridge keeps a leader",
                    stalled_rounds, rounds);
    scenario_finish(t);
}

/* ---- e: SIGKILL and restart ---- */

static void test_kill_and_restart_leader_and_random_nodes(void **state)
{
    struct scenario *t = *state;
    start_three_under_load(t);
    unsigned rounds = chaos_rounds(2);
    for (unsigned round = 1; round <= rounds; round++) {
        uint64_t term;
        int leader = scenario_leader(t, chaos_cluster_all(t->c), 0, &term);
        uint64_t t0 = test_now_ms();
        chaos_cluster_kill(t->c, (unsigned)leader, SIGKILL);
        int next = scenario_leader(t, chaos_cluster_all(t->c) & ~(1u << leader), term + 1, NULL);
        uint64_t elected = test_now_ms() - t0;
        scenario_progress(t, 10, "after SIGKILL of the leader");
        uint64_t serving = test_now_ms() - t0;
        scenario_expect(t, chaos_cluster_start_node(t->c, (unsigned)leader) == 0,
                        "could not restart n%d", leader);
        unsigned victim = (unsigned)(scenario_rand(t) % 3);
        /* Let the restarted node rejoin before the next kill, so that two
         * nodes stay up. */
        scenario_leader(t, chaos_cluster_all(t->c), 0, NULL);
        chaos_cluster_kill(t->c, victim, SIGKILL);
        scenario_progress(t, 5, "after SIGKILL of a random node");
        scenario_expect(t, chaos_cluster_start_node(t->c, victim) == 0, "could not restart n%u",
                        victim);
        printf("    round %u: SIGKILL leader n%d -> n%d elected after %llu ms, serving after "
               "%llu ms; restarted; then SIGKILL n%u and restart\n",
               round, leader, next, (unsigned long long)elected, (unsigned long long)serving,
               victim);
    }
    /* Every node catches up with the leader's commit index. */
    uint64_t term;
    int leader = scenario_leader(t, chaos_cluster_all(t->c), 0, &term);
    scenario_progress(t, 5, "after the last restart");
    struct client_reply lr;
    scenario_expect(t, chaos_cluster_status(t->c, (unsigned)leader, 300, &lr) == 0,
                    "leader n%d does not answer", leader);
    for (unsigned i = 0; i < 3; i++) {
        uint64_t deadline = test_now_ms() + 10000 * t->scale;
        struct client_reply r = {0};
        while (test_now_ms() < deadline &&
               (chaos_cluster_status(t->c, i, 300, &r) != 0 || r.applied < lr.commit))
            test_sleep_ms(20);
        scenario_expect(t, r.applied >= lr.commit,
                        "n%u applied %llu, the leader had committed %llu", i,
                        (unsigned long long)r.applied, (unsigned long long)lr.commit);
    }
    scenario_finish(t);
}

/* ---- f: slow links ---- */

static void test_delayed_links_and_connection_resets(void **state)
{
    struct scenario *t = *state;
    /* One-way delays of up to 200 ms make a round trip up to 400 ms:
     * Raft needs broadcastTime << electionTimeout (§5.6), so the timeouts
     * are raised for this scenario. */
    scenario_start_cluster(t, 3, 1000, 2000, 100);
    uint64_t term0;
    scenario_leader(t, chaos_cluster_all(t->c), 0, &term0);
    scenario_start_clients(t, 4, 4000);
    scenario_progress(t, 10, "before any fault");
    chaos_cluster_set_delay(t->c, 50, 200);
    unsigned rounds = chaos_rounds(2);
    unsigned resets = 0;
    for (unsigned round = 1; round <= rounds; round++) {
        uint64_t t0 = test_now_ms();
        scenario_progress(t, 10, "with every link delayed 50-200 ms");
        uint64_t took = test_now_ms() - t0;
        unsigned n = chaos_cluster_reset_links(t->c, 50);
        resets += n;
        scenario_progress(t, 5, "after resetting connections");
        printf("    round %u: 10 writes acknowledged in %llu ms over delayed links; reset %u "
               "connections\n",
               round, (unsigned long long)took, n);
    }
    uint64_t term1;
    scenario_leader(t, chaos_cluster_all(t->c), 0, &term1);
    printf("    terms went from %llu to %llu over %u rounds (%u connections reset)\n",
           (unsigned long long)term0, (unsigned long long)term1, rounds, resets);
    scenario_finish(t);
}

/* ---- g: the leader paused ---- */

/* The leader is frozen (SIGSTOP) for three election timeouts while the
 * clients keep going, then resumed: the others elect a new leader and keep
 * serving; the old one, waking up with requests queued on its connections,
 * must learn of the new term and follow, and answer none of them as leader
 * (no stale read, no put acknowledged without a majority: the history check
 * at the end covers both). */
static void test_paused_leader_resumes_as_a_follower(void **state)
{
    struct scenario *t = *state;
    start_three_under_load(t);
    unsigned rounds = chaos_rounds(2);
    for (unsigned round = 1; round <= rounds; round++) {
        uint64_t term;
        int leader = scenario_leader(t, chaos_cluster_all(t->c), 0, &term);
        chaos_cluster_kill(t->c, (unsigned)leader, SIGSTOP);
        uint64_t t0 = test_now_ms();
        uint64_t new_term;
        int next = scenario_leader(t, chaos_cluster_all(t->c) & ~(1u << leader), term + 1,
                                   &new_term);
        scenario_progress(t, 10, "while the old leader is paused");
        uint64_t paused_for = 3 * (uint64_t)t->et_max;
        uint64_t spent = test_now_ms() - t0;
        if (spent < paused_for)
            test_sleep_ms((unsigned)(paused_for - spent));
        chaos_cluster_kill(t->c, (unsigned)leader, SIGCONT);
        uint64_t t1 = test_now_ms(), deadline = t1 + 5000 * t->scale;
        struct client_reply r = {0};
        bool follows = false;
        while (!follows && test_now_ms() < deadline) {
            follows = chaos_cluster_status(t->c, (unsigned)leader, 300, &r) == 0 &&
                      r.role == RAFT_FOLLOWER && r.term >= new_term;
            if (!follows)
                test_sleep_ms(10);
        }
        scenario_expect(t, follows, "n%d, resumed after a pause, is %s in T%llu, not a "
                        "follower in T%llu or later", leader,
                        raft_role_name((enum raft_role)r.role), (unsigned long long)r.term,
                        (unsigned long long)new_term);
        scenario_progress(t, 5, "after the old leader resumed");
        printf("    round %u: n%d (T%llu) paused for %llu ms; n%d led T%llu; resumed, n%d "
               "followed within %llu ms\n", round, leader, (unsigned long long)term,
               (unsigned long long)(t1 - t0), next, (unsigned long long)new_term, leader,
               (unsigned long long)(test_now_ms() - t1));
    }
    scenario_finish(t);
}

/* ---- h: a one-way cut ---- */

/* The leader's requests stop reaching one follower, whose own requests (and
 * the leader's answers to them) still get through. The follower hears no
 * heartbeat and asks for pre-votes, which the leader and the other follower
 * refuse (they still hear from a leader), so it never raises its term: the
 * leader and its term stay, and it keeps committing with the other
 * follower. After the heal the follower follows it again. */
static void test_one_way_cut_keeps_the_leader_timing_sensitive(void **state)
{
    struct scenario *t = *state;
    start_three_under_load(t);
    unsigned rounds = chaos_rounds(2);
    for (unsigned round = 1; round <= rounds; round++) {
        uint64_t term;
        int leader = scenario_leader(t, chaos_cluster_all(t->c), 0, &term);
        unsigned f = ((unsigned)leader + 1 + (unsigned)(scenario_rand(t) % 2)) % 3;
        chaos_cluster_cut_link(t->c, (unsigned)leader, f, true);
        scenario_progress(t, 20, "while the leader cannot reach a follower");
        test_sleep_ms(2 * t->et_max);
        struct client_reply r = {0};
        scenario_expect(t, chaos_cluster_status(t->c, f, 1000, &r) == 0 &&
                               r.role == RAFT_PRE_CANDIDATE && r.term == term,
                        "n%u, cut off from its leader's heartbeats, is %s in T%llu, not a "
                        "pre-candidate in T%llu", f, raft_role_name((enum raft_role)r.role),
                        (unsigned long long)r.term, (unsigned long long)term);
        uint64_t later;
        int still = scenario_leader(t, chaos_cluster_all(t->c) & ~(1u << f), 0, &later);
        scenario_expect(t, still == leader && later == term,
                        "a one-way cut from n%d to n%u changed the leader: n%d in T%llu, was "
                        "n%d in T%llu", leader, f, still, (unsigned long long)later, leader,
                        (unsigned long long)term);
        chaos_cluster_cut_link(t->c, (unsigned)leader, f, false);
        scenario_expect(t, scenario_follows(t, f, leader, term, 5000 * t->scale),
                        "n%u does not follow n%d in T%llu again after the heal", f, leader,
                        (unsigned long long)term);
        printf("    round %u: n%d could not reach n%u for %u ms; leader and term (T%llu) "
               "unchanged; n%u follows again after the heal\n", round, leader, f,
               2 * t->et_max, (unsigned long long)term, f);
    }
    scenario_finish(t);
}

/* ---- i: a rolling restart ---- */

/* Every node in turn is stopped cleanly (SIGTERM, as an operator upgrading
 * it would) and started again on its data directory, under client load:
 * the cluster keeps serving throughout, each restarted node catches up, and
 * nothing acknowledged is lost (the history check). */
static void test_rolling_restart(void **state)
{
    struct scenario *t = *state;
    start_three_under_load(t);
    unsigned rounds = chaos_rounds(2);
    for (unsigned round = 1; round <= rounds; round++) {
        for (unsigned i = 0; i < 3; i++) {
            int status = chaos_cluster_kill(t->c, i, SIGTERM);
            scenario_expect(t, WIFEXITED(status) && WEXITSTATUS(status) == 0,
                            "n%u did not stop cleanly on SIGTERM", i);
            scenario_progress(t, 5, "while a node is down for its restart");
            scenario_expect(t, chaos_cluster_start_node(t->c, i) == 0, "could not restart n%u",
                            i);
            uint64_t term;
            int leader = scenario_leader(t, chaos_cluster_all(t->c), 0, &term);
            scenario_expect(t, scenario_follows(t, i, leader, term, 5000 * t->scale),
                            "n%u does not rejoin (leader n%d, T%llu) after its restart", i,
                            leader, (unsigned long long)term);
        }
        printf("    round %u: n0, n1, n2 stopped and restarted in turn under load\n", round);
    }
    scenario_finish(t);
}

/* Every scenario gets a fresh cluster; teardown stops it whatever happened. */
#define SCENARIO(f) cmocka_unit_test_setup_teardown(f, scenario_setup, scenario_teardown)

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (getenv("CHAOS_ONLY"))
        cmocka_set_test_filter(getenv("CHAOS_ONLY")); /* e.g. CHAOS_ONLY='*bridge*' */
    const struct CMUnitTest tests[] = {
        SCENARIO(test_isolated_leader_steps_down_and_majority_serves_timing_sensitive),
        SCENARIO(test_isolated_follower_rejoins_without_disruption_timing_sensitive),
        SCENARIO(test_symmetric_splits_of_five),
        SCENARIO(test_bridge_partition_keeps_a_stable_leader_timing_sensitive),
        SCENARIO(test_kill_and_restart_leader_and_random_nodes),
        SCENARIO(test_delayed_links_and_connection_resets),
        SCENARIO(test_paused_leader_resumes_as_a_follower),
        SCENARIO(test_one_way_cut_keeps_the_leader_timing_sensitive),
        SCENARIO(test_rolling_restart),
    };
    return cmocka_run_group_tests_name("system: chaos through fault-injecting proxies", tests, NULL,
                                       NULL);
}
