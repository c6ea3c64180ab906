/*
 * unit_storage_lock.c - one owner per data directory: a second open fails
 * with -EBUSY and a sentence naming the directory and the holder's pid,
 * within one process (flock locks belong to open file descriptions) and
 * across processes; a holder killed by SIGKILL never blocks a restart.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "tests/support/storage_fixture.h"

/* The sentence the second opener's log received names the directory and
 * the pid of the holder. */
static void assert_names_holder(const struct sfx *f, const char *log, long pid)
{
    char want[64];
    snprintf(want, sizeof(want), "in use by process %ld", pid);
    assert_non_null(strstr(log, want));
    assert_non_null(strstr(log, f->dir));
}

static void test_second_open_in_one_process_is_refused(void **state)
{
    struct sfx *f = *state;
    struct sfx second = *f;
    second.log[0] = '\0';
    struct file_storage *fs;
    assert_int_equal(file_storage_open(&fs, f->dir, sfx_capture_log, &second), -EBUSY);
    assert_null(fs);
    assert_names_holder(f, second.log, (long)getpid());

    /* Closing the owner frees the directory. */
    sfx_close(f);
    assert_int_equal(file_storage_open(&fs, f->dir, sfx_capture_log, &second), 0);
    file_storage_close(fs);
}

/* Opens the directory in a child that then waits to be killed. */
static pid_t hold_in_child(const struct sfx *f)
{
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct file_storage *fs;
        char ok = file_storage_open(&fs, f->dir, NULL, NULL) == 0 ? 'y' : 'n';
        if (write(ready[1], &ok, 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    close(ready[1]);
    char ok = 0;
    assert_int_equal(read(ready[0], &ok, 1), 1);
    close(ready[0]);
    assert_int_equal(ok, 'y');
    return pid;
}

static void test_killed_holder_never_blocks_a_restart(void **state)
{
    struct sfx *f = *state;
    sfx_close(f); /* the child is to be the owner */
    pid_t child = hold_in_child(f);
    f->log[0] = '\0';
    struct file_storage *fs;
    assert_int_equal(file_storage_open(&fs, f->dir, sfx_capture_log, f), -EBUSY);
    assert_names_holder(f, f->log, (long)child);

    assert_int_equal(kill(child, SIGKILL), 0);
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFSIGNALED(status));
    sfx_open(f); /* the stale pid in the lock file does not matter */
    struct raft_persisted p;
    assert_int_equal(f->st.load(f->st.ctx, &p), 0);
    raft_persisted_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        IN_FRESH_DIR(test_second_open_in_one_process_is_refused),
        IN_FRESH_DIR(test_killed_holder_never_blocks_a_restart),
    };
    return cmocka_run_group_tests_name("unit_storage_lock", tests, NULL, NULL);
}
