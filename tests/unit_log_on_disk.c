/*
 * unit_log_on_disk.c - a node keeps in memory only the entries it has yet
 * to store or apply: the rest stay in the log's segment files, and the
 * node reads them back when it needs them. Two readers: a leader sending
 * a follower entries it applied long ago, and a node applying, after a
 * restart, entries it loaded from its own disk.
 *
 * The rule that makes this safe: an applied entry is committed, and a
 * committed entry never changes (State Machine Safety, Raft paper §5.4.3),
 * so what storage gives back is what the log held.
 *
 * Real Raft nodes in one process over real files
 * (tests/support/inproc_cluster.h), no snapshots.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "raft/node.h"
#include "tests/support/inproc_cluster.h"

/* Bytes of entry data node i holds in memory, and the last index whose
 * data is left to storage. */
static void memory_of(struct inproc_cluster *w, unsigned i, uint64_t *resident,
                      uint64_t *evicted)
{
    struct raft_node *n = w->nodes[i].raft;
    node_lock(n);
    *resident = n->log.resident;
    *evicted = n->log.evicted_index;
    node_unlock(n);
}

static void put_range(struct inproc_cluster *w, unsigned leader, uint64_t first, uint64_t last)
{
    for (uint64_t x = first; x <= last; x++)
        assert_int_equal(inproc_put_number(w, leader, x, 5000), 0);
}

static void test_applied_entries_leave_memory_and_come_back_from_disk(void **state)
{
    struct inproc_cluster *w = inproc_cluster_new(3, 0);
    *state = w;
    for (unsigned i = 0; i < 3; i++)
        inproc_node_up(w, i, false);
    int leader = inproc_wait_leader(w, 0, 5000);
    assert_true(leader >= 0);
    unsigned follower = ((unsigned)leader + 1) % 3;

    /* The follower misses 21..60; meanwhile the leader applies them and
     * drops their data from memory. */
    put_range(w, (unsigned)leader, 1, 20);
    inproc_wait_numbers(w, follower, 20, 5000);
    inproc_node_down(w, follower);
    put_range(w, (unsigned)leader, 21, 60);
    uint64_t resident, evicted;
    memory_of(w, (unsigned)leader, &resident, &evicted);
    struct raft_status st = inproc_status(w, (unsigned)leader);
    assert_true(st.applied >= 60);
    assert_true(evicted >= 50); /* its own disk may trail a little */
    assert_true(resident <= 8 * (st.last_index - evicted)); /* 8 bytes a number */

    /* Restarted, the follower loads its 20 entries but keeps none of their
     * data: it applies them from its disk, then the leader sends 21..60
     * from its own. */
    inproc_node_up(w, follower, false);
    memory_of(w, follower, &resident, &evicted);
    assert_true(evicted >= 20);
    assert_int_equal(inproc_wait_numbers(w, follower, 60, 10000), 60);
    inproc_expect_numbers(w, follower, 60, 0);
    assert_int_equal(inproc_count_log(&w->nodes[leader], RAFT_LOG_ERROR, "", ""), 0);

    /* And the leader, restarted, applies everything from its disk again. */
    inproc_node_down(w, (unsigned)leader);
    inproc_node_up(w, (unsigned)leader, false);
    assert_int_equal(inproc_wait_numbers(w, (unsigned)leader, 60, 10000), 60);
    inproc_expect_numbers(w, (unsigned)leader, 60, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_applied_entries_leave_memory_and_come_back_from_disk,
                                  inproc_cluster_teardown),
    };
    return cmocka_run_group_tests_name("unit_log_on_disk", tests, NULL, NULL);
}
