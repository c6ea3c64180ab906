/*
 * lock.c - one owner per data directory.
 *
 * Two nodes appending to the same segments would interleave their records
 * and each would break the other's log. So the process that opens a data
 * directory holds an flock(2) on the file `lock` in it until it closes the
 * storage, and writes its pid there for the message a second opener gets.
 * The kernel drops an flock when its holder dies, SIGKILL included, so a
 * crashed node never blocks its own restart; the stale pid left in the
 * file means nothing once nobody holds the lock. flock locks belong to an
 * open file description, so a second open in the same process conflicts
 * too.
 *
 * The lock goes straight to the operating system, not through the
 * storage_io table: it guards the real directory, and a simulated disk has
 * no other process to guard against.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "raft/storage/format.h"
#include "raft/storage/internal.h"

/* The pid the holder wrote, or 0 if the file holds none (yet). */
static long holder_pid(int fd)
{
    char text[32];
    ssize_t n = pread(fd, text, sizeof(text) - 1, 0);
    if (n <= 0)
        return 0;
    text[n] = '\0';
    return strtol(text, NULL, 10);
}

static int write_pid(int fd)
{
    char text[32];
    int n = snprintf(text, sizeof(text), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, text, (size_t)n, 0) != n)
        return -errno;
    return 0;
}

int storage_lock_dir(struct file_storage *s)
{
    char path[PATH_MAX];
    storage_path(s, FMT_LOCK_NAME, path);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, STORAGE_FILE_MODE);
    if (fd < 0)
        return storage_errorf(s, -errno, "%s: cannot open the lock file (%s)", path,
                              strerror(errno));
    int rc;
    do
        rc = flock(fd, LOCK_EX | LOCK_NB);
    while (rc < 0 && errno == EINTR);
    if (rc < 0 && errno == EWOULDBLOCK) {
        long pid = holder_pid(fd);
        close(fd);
        return storage_errorf(s, -EBUSY,
                              "%s: the data directory is in use by process %ld, which "
                              "holds %s; a data directory has one node at a time",
                              s->dir, pid, path);
    }
    if (rc == 0)
        rc = write_pid(fd);
    else
        rc = -errno;
    if (rc) {
        close(fd);
        return storage_errorf(s, rc, "%s: cannot lock (%s)", path, strerror(-rc));
    }
    s->lock_fd = fd;
    return 0;
}

void storage_unlock_dir(struct file_storage *s)
{
    if (s->lock_fd >= 0)
        close(s->lock_fd); /* the last descriptor closed releases the flock */
    s->lock_fd = -1;
}
