/*
 * simdisk.c - the simulated disk of simdisk.h: pending changes, what a
 * power cut leaves of them, and the storage_io calls over it.
 */
#include "tests/support/simdisk.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

static uint64_t next_random(struct sim *s)
{
    /* splitmix64: small, fast, and the same on every platform. */
    uint64_t z = (s->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static unsigned pick(struct sim *s, unsigned n)
{
    return (unsigned)(next_random(s) % n);
}

/* Writes data at off into a growable buffer, zero-filling any hole. */
static void buf_write(uint8_t **buf, size_t *len, off_t off, const uint8_t *data, size_t n)
{
    if (n == 0)
        return;
    size_t end = (size_t)off + n;
    if (end > *len) {
        *buf = realloc(*buf, end);
        assert_non_null(*buf);
        memset(*buf + *len, 0, end - *len);
        *len = end;
    }
    memcpy(*buf + off, data, n);
}

static void buf_truncate(uint8_t **buf, size_t *len, size_t new_len)
{
    if (new_len > *len) {
        *buf = realloc(*buf, new_len);
        assert_non_null(*buf);
        memset(*buf + *len, 0, new_len - *len);
    }
    *len = new_len;
}

int sim_find(const struct dir *d, const char *name)
{
    for (size_t i = 0; i < d->n; i++)
        if (strcmp(d->e[i].name, name) == 0)
            return (int)i;
    return -1;
}

static void dir_set(struct dir *d, const char *name, int ino)
{
    int i = sim_find(d, name);
    if (i < 0) {
        assert_true(d->n < SIM_MAX_FILES);
        i = (int)d->n++;
        snprintf(d->e[i].name, SIM_NAME_MAX, "%s", name);
    }
    d->e[i].ino = ino;
}

static void dir_remove(struct dir *d, const char *name, int only_ino)
{
    int i = sim_find(d, name);
    if (i < 0 || (only_ino >= 0 && d->e[i].ino != only_ino))
        return;
    d->e[i] = d->e[--d->n];
}

static int new_inode(struct sim *s)
{
    s->inodes = realloc(s->inodes, (s->n_inodes + 1) * sizeof(*s->inodes));
    assert_non_null(s->inodes);
    memset(&s->inodes[s->n_inodes], 0, sizeof(*s->inodes));
    return (int)s->n_inodes++;
}

static void add_file_change(struct inode *in, bool is_truncate, off_t off,
                            const uint8_t *data, size_t len)
{
    in->pending = realloc(in->pending, (in->n_pending + 1) * sizeof(*in->pending));
    assert_non_null(in->pending);
    struct file_change *c = &in->pending[in->n_pending++];
    c->is_truncate = is_truncate;
    c->off = off;
    c->len = len;
    c->data = NULL;
    if (len) {
        c->data = malloc(len);
        assert_non_null(c->data);
        memcpy(c->data, data, len);
    }
}

static void clear_pending(struct inode *in)
{
    for (size_t i = 0; i < in->n_pending; i++)
        free(in->pending[i].data);
    free(in->pending);
    in->pending = NULL;
    in->n_pending = 0;
}

static void add_dir_change(struct sim *s, enum dir_change_kind kind, const char *name,
                           const char *to, int ino)
{
    s->dir_pending = realloc(s->dir_pending, (s->n_dir_pending + 1) * sizeof(*s->dir_pending));
    assert_non_null(s->dir_pending);
    struct dir_change *c = &s->dir_pending[s->n_dir_pending++];
    c->kind = kind;
    snprintf(c->name, SIM_NAME_MAX, "%s", name);
    snprintf(c->to, SIM_NAME_MAX, "%s", to ? to : "");
    c->ino = ino;
}

/* ---- what the power cut leaves ---- */

/* A write in flight lands in pieces: "sectors" of new bytes, the old bytes
 * (zeros past the old end), or garbage. */
static void tear_into_sectors(struct sim *s, struct inode *in, const struct file_change *c)
{
    static const size_t sizes[] = { 4, 16, 64 };
    size_t sector = sizes[pick(s, 3)];
    size_t end = (size_t)c->off + c->len;
    for (size_t pos = (size_t)c->off; pos < end;) {
        size_t next = (pos / sector + 1) * sector;
        size_t n = (next < end ? next : end) - pos;
        unsigned what = pick(s, 3);
        if (what == 0) {
            const uint8_t *src = c->data + (pos - (size_t)c->off);
            buf_write(&in->durable, &in->durable_len, (off_t)pos, src, n);
        } else if (what == 1) {
            uint8_t junk[64];
            for (size_t i = 0; i < n; i++)
                junk[i] = (uint8_t)next_random(s);
            buf_write(&in->durable, &in->durable_len, (off_t)pos, junk, n);
        } /* else: the old bytes stay */
        pos += n;
    }
    /* The file's size may or may not have been updated. */
    if (pick(s, 2) && in->durable_len < end)
        buf_truncate(&in->durable, &in->durable_len, end);
}

static void crash_file(struct sim *s, struct inode *in)
{
    for (size_t i = 0; i < in->n_pending; i++) {
        const struct file_change *c = &in->pending[i];
        if (c->is_truncate) {
            if (pick(s, 2))
                buf_truncate(&in->durable, &in->durable_len, (size_t)c->off);
            continue;
        }
        switch (pick(s, 4)) {
        case 0: /* dropped */
            break;
        case 1: /* written whole */
            buf_write(&in->durable, &in->durable_len, c->off, c->data, c->len);
            break;
        case 2: /* a prefix */
            buf_write(&in->durable, &in->durable_len, c->off, c->data,
                      pick(s, (unsigned)c->len + 1));
            break;
        default:
            tear_into_sectors(s, in, c);
        }
    }
    clear_pending(in);
}

static void crash_dir(struct sim *s)
{
    for (size_t i = 0; i < s->n_dir_pending; i++) {
        const struct dir_change *c = &s->dir_pending[i];
        if (pick(s, 2) == 0)
            continue; /* this one did not reach the disk */
        if (c->kind == DIR_LINK) {
            dir_set(&s->durable, c->name, c->ino);
        } else if (c->kind == DIR_RENAME) {
            dir_set(&s->durable, c->to, c->ino);
            dir_remove(&s->durable, c->name, c->ino);
        } else {
            dir_remove(&s->durable, c->name, c->ino);
        }
    }
    s->n_dir_pending = 0;
}

static void power_cut(struct sim *s)
{
    for (size_t i = 0; i < s->n_inodes; i++)
        crash_file(s, &s->inodes[i]);
    crash_dir(s);
    s->crashed = true;
}

/* A sync: a persistence point, where the power may go. Returns true if it
 * did (and the sync never completes). */
static bool persistence_point(struct sim *s)
{
    s->points++;
    if (s->crash_at != s->points)
        return false;
    power_cut(s);
    return true;
}

/* ---- the storage_io functions ---- */

static const char *name_of(const char *path)
{
    size_t n = strlen(SIM_DIR);
    if (strncmp(path, SIM_DIR, n) != 0 || path[n] != '/' || strlen(path + n + 1) >= SIM_NAME_MAX)
        return NULL;
    return path + n + 1;
}

static struct inode *inode_of_fd(struct sim *s, int fd)
{
    if (fd < 3 || fd >= 3 + SIM_MAX_FDS || s->fds[fd - 3] < 0)
        return NULL;
    return &s->inodes[s->fds[fd - 3]];
}

static int sim_open(void *ctx, const char *path, int flags, mode_t mode)
{
    (void)mode;
    struct sim *s = ctx;
    const char *name = name_of(path);
    if (s->crashed)
        return -EIO;
    if (!name)
        return -ENOENT;
    int i = sim_find(&s->cur, name), ino;
    if (i >= 0) {
        if ((flags & O_CREAT) && (flags & O_EXCL))
            return -EEXIST;
        ino = s->cur.e[i].ino;
        if (flags & O_TRUNC) {
            struct inode *in = &s->inodes[ino];
            buf_truncate(&in->cur, &in->cur_len, 0);
            add_file_change(in, true, 0, NULL, 0);
        }
    } else {
        if (!(flags & O_CREAT))
            return -ENOENT;
        ino = new_inode(s);
        dir_set(&s->cur, name, ino);
        add_dir_change(s, DIR_LINK, name, NULL, ino);
    }
    for (int fd = 0; fd < SIM_MAX_FDS; fd++)
        if (s->fds[fd] < 0) {
            s->fds[fd] = ino;
            return fd + 3;
        }
    return -EMFILE;
}

static int sim_close(void *ctx, int fd)
{
    struct sim *s = ctx;
    if (!inode_of_fd(s, fd))
        return -EBADF;
    s->fds[fd - 3] = -1;
    return 0;
}

static ssize_t sim_pread(void *ctx, int fd, void *buf, size_t len, off_t off)
{
    struct sim *s = ctx;
    struct inode *in = inode_of_fd(s, fd);
    if (s->crashed)
        return -EIO;
    if (!in)
        return -EBADF;
    if ((size_t)off >= in->cur_len)
        return 0;
    size_t n = in->cur_len - (size_t)off < len ? in->cur_len - (size_t)off : len;
    memcpy(buf, in->cur + off, n);
    return (ssize_t)n;
}

static ssize_t sim_pwrite(void *ctx, int fd, const void *buf, size_t len, off_t off)
{
    struct sim *s = ctx;
    struct inode *in = inode_of_fd(s, fd);
    if (s->crashed)
        return -EIO;
    if (!in)
        return -EBADF;
    buf_write(&in->cur, &in->cur_len, off, buf, len);
    add_file_change(in, false, off, buf, len);
    return (ssize_t)len;
}

static int sim_fdatasync(void *ctx, int fd)
{
    struct sim *s = ctx;
    struct inode *in = inode_of_fd(s, fd);
    if (s->crashed || persistence_point(s))
        return -EIO;
    if (!in)
        return -EBADF;
    buf_truncate(&in->durable, &in->durable_len, 0);
    buf_write(&in->durable, &in->durable_len, 0, in->cur, in->cur_len);
    clear_pending(in);
    return 0;
}

static int sim_ftruncate(void *ctx, int fd, off_t len)
{
    struct sim *s = ctx;
    struct inode *in = inode_of_fd(s, fd);
    if (s->crashed)
        return -EIO;
    if (!in)
        return -EBADF;
    buf_truncate(&in->cur, &in->cur_len, (size_t)len);
    add_file_change(in, true, len, NULL, 0);
    return 0;
}

static int sim_file_size(void *ctx, int fd, off_t *size)
{
    struct sim *s = ctx;
    struct inode *in = inode_of_fd(s, fd);
    if (s->crashed)
        return -EIO;
    if (!in)
        return -EBADF;
    *size = (off_t)in->cur_len;
    return 0;
}

static int sim_rename(void *ctx, const char *from, const char *to)
{
    struct sim *s = ctx;
    const char *a = name_of(from), *b = name_of(to);
    if (s->crashed)
        return -EIO;
    int i = a && b ? sim_find(&s->cur, a) : -1;
    if (i < 0)
        return -ENOENT;
    int ino = s->cur.e[i].ino;
    dir_set(&s->cur, b, ino);
    dir_remove(&s->cur, a, ino);
    add_dir_change(s, DIR_RENAME, a, b, ino);
    return 0;
}

static int sim_unlink(void *ctx, const char *path)
{
    struct sim *s = ctx;
    const char *name = name_of(path);
    if (s->crashed)
        return -EIO;
    int i = name ? sim_find(&s->cur, name) : -1;
    if (i < 0)
        return -ENOENT;
    int ino = s->cur.e[i].ino;
    dir_remove(&s->cur, name, ino);
    add_dir_change(s, DIR_UNLINK, name, NULL, ino);
    return 0;
}

static int sim_mkdir(void *ctx, const char *path, mode_t mode)
{
    (void)ctx;
    (void)mode;
    return strcmp(path, SIM_DIR) == 0 ? -EEXIST : -EACCES;
}

static int sim_fsync_dir(void *ctx, const char *path)
{
    struct sim *s = ctx;
    if (s->crashed || persistence_point(s))
        return -EIO;
    if (strcmp(path, SIM_DIR) != 0)
        return -ENOENT;
    s->durable = s->cur;
    s->n_dir_pending = 0;
    return 0;
}

static int sim_list_dir(void *ctx, const char *path, int (*each)(void *arg, const char *name),
                        void *arg)
{
    struct sim *s = ctx;
    if (s->crashed)
        return -EIO;
    if (strcmp(path, SIM_DIR) != 0)
        return -ENOENT;
    struct dir snapshot = s->cur; /* `each` may not change it, but be safe */
    for (size_t i = 0; i < snapshot.n; i++) {
        int rc = each(arg, snapshot.e[i].name);
        if (rc)
            return rc;
    }
    return 0;
}

struct sim *sim_new(uint64_t seed, int crash_at)
{
    struct sim *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    s->io = (struct storage_io){
        .ctx = s, .open = sim_open, .close = sim_close, .pread = sim_pread,
        .pwrite = sim_pwrite, .fdatasync = sim_fdatasync, .ftruncate = sim_ftruncate,
        .file_size = sim_file_size, .rename = sim_rename, .unlink = sim_unlink,
        .mkdir = sim_mkdir, .fsync_dir = sim_fsync_dir, .list_dir = sim_list_dir,
    };
    for (int i = 0; i < SIM_MAX_FDS; i++)
        s->fds[i] = -1;
    s->rng = seed;
    s->crash_at = crash_at;
    return s;
}

void sim_free(struct sim *s)
{
    for (size_t i = 0; i < s->n_inodes; i++) {
        clear_pending(&s->inodes[i]);
        free(s->inodes[i].durable);
        free(s->inodes[i].cur);
    }
    free(s->inodes);
    free(s->dir_pending);
    free(s);
}

struct sim *sim_reboot(const struct sim *old)
{
    struct sim *s = sim_new(old->rng, 0);
    for (size_t i = 0; i < old->durable.n; i++) {
        const struct inode *in = &old->inodes[old->durable.e[i].ino];
        int ino = new_inode(s);
        struct inode *copy = &s->inodes[ino];
        buf_write(&copy->durable, &copy->durable_len, 0, in->durable, in->durable_len);
        buf_write(&copy->cur, &copy->cur_len, 0, in->durable, in->durable_len);
        dir_set(&s->cur, old->durable.e[i].name, ino);
    }
    s->durable = s->cur;
    return s;
}
