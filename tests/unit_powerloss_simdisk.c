/*
 * unit_powerloss_simdisk.c - the simulated disk that the power-cut sweeps
 * (unit_powerloss.c) run on: it must lose only what was never synced, and
 * must sometimes lose it, or the sweeps would prove little.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "tests/support/simdisk.h"

/* The simulator itself: unsynced data and unsynced names may or may not
 * survive, synced ones always do. Otherwise the sweeps would prove
 * little. */
static void test_simulated_disk_loses_only_unsynced_changes(void **state)
{
    (void)state;
    int a_gone = 0, b_kept = 0, tail_lost = 0, tail_kept = 0;
    for (uint64_t seed = 1; seed <= 64; seed++) {
        struct sim *s = sim_new(seed, 4);
        int fd = s->io.open(s, SIM_DIR "/a", O_WRONLY | O_CREAT | O_EXCL, 0644);
        assert_true(fd >= 0);
        assert_int_equal(s->io.pwrite(s, fd, "durable", 7, 0), 7);
        assert_int_equal(s->io.fdatasync(s, fd), 0);       /* point 1 */
        assert_int_equal(s->io.fsync_dir(s, SIM_DIR), 0);  /* point 2 */
        int fd2 = s->io.open(s, SIM_DIR "/b", O_WRONLY | O_CREAT | O_EXCL, 0644);
        assert_int_equal(s->io.pwrite(s, fd2, "synced, name not", 16, 0), 16);
        assert_int_equal(s->io.fdatasync(s, fd2), 0);      /* point 3 */
        assert_int_equal(s->io.pwrite(s, fd, "+maybe", 6, 7), 6);
        assert_int_equal(s->io.unlink(s, SIM_DIR "/a"), 0);
        /* Point 4: the power goes. b's name, a's unlink and a's second
         * write were never synced. */
        assert_int_equal(s->io.fsync_dir(s, SIM_DIR), -EIO);
        assert_true(s->crashed);
        assert_int_equal(s->io.pwrite(s, fd, "x", 1, 0), -EIO); /* a dead machine */
        struct sim *after = sim_reboot(s);
        int ia = sim_find(&after->cur, "a");
        if (ia < 0) {
            a_gone++;
        } else {
            const struct inode *in = &after->inodes[after->cur.e[ia].ino];
            assert_true(in->cur_len >= 7 && in->cur_len <= 13);
            assert_memory_equal(in->cur, "durable", 7);
            if (in->cur_len == 13 && memcmp(in->cur + 7, "+maybe", 6) == 0)
                tail_kept++;
            else
                tail_lost++;
        }
        int ib = sim_find(&after->cur, "b");
        if (ib >= 0) {
            const struct inode *in = &after->inodes[after->cur.e[ib].ino];
            assert_int_equal(in->cur_len, 16);
            assert_memory_equal(in->cur, "synced, name not", 16);
            b_kept++;
        }
        s->io.close(s, fd);
        s->io.close(s, fd2);
        sim_free(s);
        sim_free(after);
    }
    /* Each outcome happens for some seed. */
    assert_true(a_gone > 0 && a_gone < 64);
    assert_true(b_kept > 0 && b_kept < 64);
    assert_true(tail_kept > 0 && tail_lost > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simulated_disk_loses_only_unsynced_changes),
    };
    return cmocka_run_group_tests_name("unit_powerloss_simdisk", tests, NULL, NULL);
}
