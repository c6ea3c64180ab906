/*
 * failing_disk.h - a storage_io (raft/storage/io.h) that passes every call
 * on to the POSIX one until it is told to fail: from then on every
 * matching call fails (a full disk stays full), and the first failing
 * write first writes half of its bytes, as a write that runs out of space
 * does. For the suites that check what a node does when its disk fails.
 */
#ifndef TESTS_SUPPORT_FAILING_DISK_H
#define TESTS_SUPPORT_FAILING_DISK_H

#include <pthread.h>
#include <stdbool.h>

#include "raft/storage/io.h"

#define FAILING_DISK_MAX_FDS 1024

enum failing_disk_op { FAIL_NONE, FAIL_PWRITE, FAIL_FDATASYNC };

struct failing_disk {
    pthread_mutex_t mu; /* guards everything below */
    const struct storage_io *real;
    char *path_of[FAILING_DISK_MAX_FDS]; /* the path each open descriptor was opened with */
    /* The fault: calls of `op` on files whose name contains `match` fail
     * with `err` once `pass` more of them have gone through. */
    enum failing_disk_op op;
    int err;
    char match[32];
    unsigned pass;
    bool cut_short;      /* a write has been cut short */
    bool failing;        /* the fault has struck: a call failed */
    unsigned injected;   /* calls failed (or cut short) */
    unsigned writes_after, syncs_after; /* matching calls made after it struck */
};

/* Sets up d over the POSIX calls, and *io as the table that goes through d. */
void failing_disk_init(struct failing_disk *d, struct storage_io *io);
void failing_disk_free(struct failing_disk *d);

/* From now on, after `pass` more calls of `op` on files whose name
 * contains `match`, those calls fail with err (a negative errno). */
void failing_disk_arm(struct failing_disk *d, enum failing_disk_op op, int err,
                      const char *match, unsigned pass);

/* Whether the fault has struck: a call failed. */
bool failing_disk_struck(struct failing_disk *d);
/* The same, waiting up to timeout_ms for it to strike. */
bool failing_disk_wait_struck(struct failing_disk *d, unsigned timeout_ms);

#endif
