/*
 * unit_diskfail_log.c - a node whose log or term/vote file cannot be
 * written (ENOSPC) or synced (EIO) acknowledges nothing more, steps down,
 * leaves no corrupt file, and after a restart on a working disk has
 * everything it acknowledged.
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

/* ---- single node: the log's disk fills up, or its fsync fails ---- */

static void log_fault_single_node(void **state, enum failing_disk_op op, int err)
{
    struct inproc_cluster *w = inproc_cluster_new(1, 0);
    *state = w;
    struct inproc_node *t = &w->nodes[0];
    inproc_node_up(w, 0, true);
    assert_int_equal(inproc_wait_leader(w, 0, 3000), 0);
    for (uint64_t x = 1; x <= 20; x++)
        assert_int_equal(inproc_put_number(w, 0, x, 2000), 0);

    failing_disk_arm(&t->disk, op, err, "log-", 0);
    uint64_t t0 = test_now_ms();
    int rc = inproc_put_number(w, 0, 21, 1500);
    assert_true(failing_disk_struck(&t->disk));
    assert_int_not_equal(rc, 0); /* never acknowledged */
    printf("the put waiting on the failed write returned %s after %llu ms\n", strerror(-rc),
           (unsigned long long)(test_now_ms() - t0));
    inproc_expect_stepped_down(w, 0, "appending to the log failed on disk");
    inproc_print_errors(t);
    assert_int_equal(inproc_count_log(t, RAFT_LOG_ERROR, "raft", strerror(-err)), 1);
    /* The storage's own line names the file. */
    assert_true(inproc_count_log(t, RAFT_LOG_ERROR, "storage", "log-0000000000000001") >= 1);
    /* No write was retried, nor the failed fsync. */
    assert_int_equal(t->disk.writes_after, 0);
    if (op == FAIL_FDATASYNC)
        assert_true(t->disk.syncs_after <= 1); /* at most undoing the append */
    inproc_expect_numbers(w, 0, 20, 0);

    /* The files are clean: a fresh load finds no torn write, and the
     * twenty acknowledged numbers (21 only if its write had reached the
     * file whole). */
    inproc_node_down(w, 0);
    struct inproc_reloaded r;
    inproc_reload(t, &r);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.warnings, 0);
    assert_true(r.n_numbers == 20 || r.n_numbers == 21);
    for (size_t k = 0; k < r.n_numbers; k++)
        assert_int_equal(r.numbers[k], k + 1);

    /* Restarted on a working disk, it leads again with all of them. */
    inproc_node_up(w, 0, false);
    assert_int_equal(inproc_wait_leader(w, 0, 3000), 0);
    assert_int_equal(inproc_put_number(w, 0, r.n_numbers + 1, 2000), 0);
    inproc_expect_numbers(w, 0, r.n_numbers + 1, 0);
}

static void test_enospc_on_log_write(void **state)
{
    log_fault_single_node(state, FAIL_PWRITE, -ENOSPC);
}

static void test_eio_on_log_fsync(void **state)
{
    log_fault_single_node(state, FAIL_FDATASYNC, -EIO);
}
/* The callback says 0 once the entry is applied, and -EIO when the write
 * of the entry fails (the node stops leading with it unacknowledged). */
static void test_async_put_called_back_once_applied_or_failed(void **state)
{
    struct inproc_cluster *w = inproc_cluster_new(1, 0);
    *state = w;
    struct inproc_node *t = &w->nodes[0];
    inproc_node_up(w, 0, true);
    assert_int_equal(inproc_wait_leader(w, 0, 3000), 0);
    for (uint64_t x = 1; x <= 5; x++)
        assert_int_equal(inproc_put_number_async(w, 0, x, 2000), 0);
    inproc_expect_numbers(w, 0, 5, 0);
    failing_disk_arm(&t->disk, FAIL_FDATASYNC, -EIO, "log-", 0);
    assert_int_equal(inproc_put_number_async(w, 0, 6, 2000), -EIO);
    assert_true(failing_disk_struck(&t->disk));
    assert_int_equal(inproc_put_number_async(w, 0, 7, 2000), -EPERM); /* no longer leads */
    inproc_expect_numbers(w, 0, 5, 0);
}

/* ---- single node: the disk is full before the first election ---- */

static void test_enospc_on_term_and_vote(void **state)
{
    struct inproc_cluster *w = inproc_cluster_new(1, 0);
    *state = w;
    struct inproc_node *t = &w->nodes[0];
    failing_disk_arm(&t->disk, FAIL_PWRITE, -ENOSPC, "meta", 0);
    inproc_node_up(w, 0, true);
    assert_true(failing_disk_wait_struck(&t->disk, 3000));
    /* It never became leader: its term could not be stored. */
    inproc_expect_stepped_down(w, 0, "saving term and vote failed on disk");
    inproc_print_errors(t);
    assert_int_equal(inproc_status(w, 0).term, 0);
    inproc_node_down(w, 0);
    assert_false(inproc_file_exists(t, "meta.tmp"));
    struct inproc_reloaded r;
    inproc_reload(t, &r);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.warnings, 0);
    assert_int_equal(r.term, 0);
    inproc_node_up(w, 0, false);
    assert_int_equal(inproc_wait_leader(w, 0, 3000), 0);
    assert_int_equal(inproc_put_number(w, 0, 1, 2000), 0);
}

int main(void)
{
    /* A node that hangs must fail the suite, not stall it. */
    alarm(120);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_enospc_on_log_write, inproc_cluster_teardown),
        cmocka_unit_test_teardown(test_eio_on_log_fsync, inproc_cluster_teardown),
        cmocka_unit_test_teardown(test_async_put_called_back_once_applied_or_failed, inproc_cluster_teardown),
        cmocka_unit_test_teardown(test_enospc_on_term_and_vote, inproc_cluster_teardown),
    };
    return cmocka_run_group_tests_name("unit: a failing disk under the log and the term/vote file", tests, NULL, NULL);
}
