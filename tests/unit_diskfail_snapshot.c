/*
 * unit_diskfail_snapshot.c - a node whose snapshot cannot be written
 * (ENOSPC) stops, keeps no partial snapshot, and on a working disk takes
 * the snapshot it could not take before.
 *
 * Raft paper, Figure 2: persistent state is "updated on stable storage
 * before responding to RPCs". A node whose disk fails can no longer keep
 * that promise, so it stops acknowledging and steps down, saying why in
 * one line. It never retries a failed fsync: after one, the kernel may
 * already have dropped the dirty pages, and a retry that succeeds would
 * claim data durable that is not.
 *
 * Real Raft nodes in one process over real files, each behind a disk that
 * fails on command (tests/support/inproc_cluster.h).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "raft/raft.h"
#include "tests/support/failing_disk.h"
#include "tests/support/clock.h"
#include "tests/support/inproc_cluster.h"

/* ---- single node: a snapshot cannot be written ---- */

static void test_enospc_on_snapshot(void **state)
{
    struct inproc_cluster *w = inproc_cluster_new(1, 10);
    *state = w;
    struct inproc_node *t = &w->nodes[0];
    failing_disk_arm(&t->disk, FAIL_PWRITE, -ENOSPC, "snapshot", 0);
    inproc_node_up(w, 0, true);
    assert_int_equal(inproc_wait_leader(w, 0, 3000), 0);
    uint64_t acked = 0;
    for (uint64_t x = 1; x <= 30; x++) {
        if (inproc_put_number(w, 0, x, 1500) != 0)
            break;
        acked = x;
    }
    /* The snapshot is due once ten entries (the no-op and nine numbers)
     * are applied; every number up to then was acknowledged. */
    assert_true(acked >= 9 && acked < 30);
    assert_true(failing_disk_struck(&t->disk));
    /* The node says once that it stopped; which of its writes reported the
     * full disk first depends on timing (the snapshot, or an append that
     * found the storage already failed). */
    inproc_expect_stepped_down(w, 0, "failed on disk");
    inproc_print_errors(t);
    assert_true(inproc_count_log(t, RAFT_LOG_ERROR, "storage", "snapshot.tmp") >= 1);
    assert_true(inproc_count_log(t, RAFT_LOG_ERROR, "storage", strerror(ENOSPC)) >= 1);
    inproc_node_down(w, 0);
    assert_false(inproc_file_exists(t, "snapshot"));
    assert_false(inproc_file_exists(t, "snapshot.tmp"));
    struct inproc_reloaded r;
    inproc_reload(t, &r);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.warnings, 0);
    assert_int_equal(r.snapshot_index, 0);
    assert_true(r.n_numbers >= acked && r.n_numbers <= acked + 1);
    for (size_t k = 0; k < r.n_numbers; k++)
        assert_int_equal(r.numbers[k], k + 1);
    /* On a working disk it takes the snapshot it could not take before. */
    inproc_node_up(w, 0, false);
    assert_int_equal(inproc_wait_leader(w, 0, 3000), 0);
    inproc_expect_numbers(w, 0, r.n_numbers, 0);
    assert_int_equal(inproc_put_number(w, 0, r.n_numbers + 1, 2000), 0);
    uint64_t deadline = test_now_ms() + 3000;
    while (!inproc_file_exists(t, "snapshot") && test_now_ms() < deadline)
        test_sleep_ms(10);
    assert_true(inproc_file_exists(t, "snapshot"));
}

/* The snapshot fails while an entry committed during its (slow) capture
 * waits to be applied, or has just been: the applier must not spin with
 * the node's lock held (the node would hang, and could not even be
 * stopped), and nothing committed is lost. */
static void test_snapshot_fails_with_entries_waiting(void **state)
{
    struct inproc_cluster *w = inproc_cluster_new(1, 10);
    *state = w;
    struct inproc_node *t = &w->nodes[0];
    t->fsm.snapshot_delay_ms = 300;
    failing_disk_arm(&t->disk, FAIL_PWRITE, -ENOSPC, "snapshot", 0);
    inproc_node_up(w, 0, true);
    assert_int_equal(inproc_wait_leader(w, 0, 3000), 0);
    for (uint64_t x = 1; x <= 9; x++)
        assert_int_equal(inproc_put_number(w, 0, x, 2000), 0);
    /* Ten entries applied: the capture is under way. Number 10 commits
     * meanwhile, and is applied once the capture is done, while the
     * snapshotter writes; then the write fails. */
    int rc = inproc_put_number(w, 0, 10, 1500);
    uint64_t deadline = test_now_ms() + 3000;
    while (!failing_disk_struck(&t->disk) && test_now_ms() < deadline)
        test_sleep_ms(5);
    assert_true(failing_disk_struck(&t->disk));
    inproc_expect_stepped_down(w, 0, "failed on disk");
    struct raft_status st = inproc_status(w, 0);
    assert_true(st.applied >= 10 && st.applied <= 11 && st.commit <= 11);
    if (rc == 0)
        assert_int_equal(st.applied, 11); /* acknowledged once applied */
    inproc_node_down(w, 0); /* and it stops */
    struct inproc_reloaded r;
    inproc_reload(t, &r);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.warnings, 0);
    assert_true(r.n_numbers == 9 || r.n_numbers == 10);
    assert_true(r.n_numbers >= st.commit - 1); /* every committed number is there */
    if (rc == 0)
        assert_int_equal(r.n_numbers, 10);
}

int main(void)
{
    /* A node that hangs must fail the suite, not stall it. */
    alarm(120);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_enospc_on_snapshot, inproc_cluster_teardown),
        cmocka_unit_test_teardown(test_snapshot_fails_with_entries_waiting, inproc_cluster_teardown),
    };
    return cmocka_run_group_tests_name("unit: a failing disk under a snapshot", tests, NULL, NULL);
}
