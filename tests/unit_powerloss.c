/*
 * unit_powerloss.c - a power cut at every persistence point of a workload.
 *
 * The storage runs over a simulated disk (a `struct storage_io`, in the
 * style of SQLite's crash VFS and ALICE): every write, truncation and
 * directory change is kept as pending until a sync makes it durable. The
 * disk counts persistence points (fdatasync, directory fsync); at point K
 * the power goes: each pending file change is dropped, applied, or torn (a
 * prefix, or sectors of new, old and garbage bytes, per a seeded random
 * choice), and each pending directory change (create, rename, unlink)
 * survives or not. Then the node "reboots" on what reached the disk, and we
 * check the durability promises of raft.h:
 *
 *   - load succeeds (a power cut is not corruption);
 *   - every entry whose append returned 0 is there, with the same bytes;
 *     the log is the acknowledged one, or what the interrupted call could
 *     have left (a prefix of an append batch, a log cut no shorter than a
 *     truncate's target);
 *   - the term never goes back, and the vote of a term never changes: term
 *     and vote are the last saved pair or the one being saved;
 *   - the snapshot is the last saved one or the one being saved;
 *   - the log goes on: an append after the reboot is found after another.
 *
 * Every crash point of each workload is enumerated, with several seeds;
 * a failure names the workload, the point and the seed.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "raft/storage/storage.h"

#define SIM_DIR "simdisk"
#define SIM_MAX_FILES 64
#define SIM_MAX_FDS 16
#define SIM_NAME_MAX 32
#ifndef SEEDS
#define SEEDS 100 /* per crash point; build with -DSEEDS=N to search longer */
#endif

/* ---- the simulated disk ---- */

struct file_change {
    bool is_truncate;
    off_t off;     /* write offset, or the new length */
    uint8_t *data; /* a copy of what was written */
    size_t len;
};

struct inode {
    uint8_t *durable; /* what survives a power cut */
    size_t durable_len;
    uint8_t *cur; /* what reads see: durable plus the pending changes */
    size_t cur_len;
    struct file_change *pending;
    size_t n_pending;
};

struct dentry {
    char name[SIM_NAME_MAX];
    int ino;
};

enum dir_change_kind { DIR_LINK, DIR_RENAME, DIR_UNLINK };

struct dir_change {
    enum dir_change_kind kind;
    char name[SIM_NAME_MAX]; /* created, unlinked, or renamed from */
    char to[SIM_NAME_MAX];
    int ino;
};

struct dir {
    struct dentry e[SIM_MAX_FILES];
    size_t n;
};

struct sim {
    struct storage_io io;
    struct inode *inodes;
    size_t n_inodes;
    struct dir cur;     /* the directory as the program sees it */
    struct dir durable; /* as of the last directory fsync */
    struct dir_change *dir_pending;
    size_t n_dir_pending;
    int fds[SIM_MAX_FDS]; /* inode of each open descriptor, -1 when free */
    int points;           /* persistence points so far */
    int crash_at;         /* the point where the power goes; 0: never */
    bool crashed;
    uint64_t rng;
};

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

static int dir_find(const struct dir *d, const char *name)
{
    for (size_t i = 0; i < d->n; i++)
        if (strcmp(d->e[i].name, name) == 0)
            return (int)i;
    return -1;
}

static void dir_set(struct dir *d, const char *name, int ino)
{
    int i = dir_find(d, name);
    if (i < 0) {
        assert_true(d->n < SIM_MAX_FILES);
        i = (int)d->n++;
        snprintf(d->e[i].name, SIM_NAME_MAX, "%s", name);
    }
    d->e[i].ino = ino;
}

static void dir_remove(struct dir *d, const char *name, int only_ino)
{
    int i = dir_find(d, name);
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
    int i = dir_find(&s->cur, name), ino;
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
    int i = a && b ? dir_find(&s->cur, a) : -1;
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
    int i = name ? dir_find(&s->cur, name) : -1;
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

static struct sim *sim_new(uint64_t seed, int crash_at)
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

static void sim_free(struct sim *s)
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

/* The machine comes back: a new disk holding only what was durable. */
static struct sim *sim_reboot(const struct sim *old)
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

/* ---- workloads ---- */

enum step_kind { TERM_VOTE, APPEND, TRUNCATE, SNAPSHOT };

struct step {
    enum step_kind kind;
    uint64_t a; /* term | first index | from index | snapshot index */
    int64_t b;  /* vote | count        | -          | snapshot term */
    uint64_t c; /* -    | term         | -          | - */
};

struct workload {
    const char *name;
    size_t segment_size;
    const struct step *steps;
    size_t n_steps;
};

/* Entry data is a function of index and term, so bytes can be checked. */
static uint32_t entry_data(uint64_t index, uint64_t term, uint8_t *buf)
{
    if (index % 6 == 0)
        return 0;
    int n = snprintf((char *)buf, 64, "set k%" PRIu64 " t%" PRIu64 ";", index, term);
    uint32_t len = (uint32_t)n + (uint32_t)(index * 7 % 23);
    for (uint32_t i = (uint32_t)n; i < len; i++)
        buf[i] = (uint8_t)(index + term * 3 + i);
    return len;
}

static uint32_t snapshot_data(uint64_t index, uint8_t *buf)
{
    return (uint32_t)snprintf((char *)buf, 64, "state machine as of %" PRIu64, index);
}

#define MAX_INDEX 64

/* What the storage has acknowledged. */
struct model {
    uint64_t term;
    int32_t vote;
    uint64_t snapshot_index;
    uint64_t snapshot_term;
    uint64_t last;
    uint64_t terms[MAX_INDEX + 1];
};

static int run_step(struct raft_storage *st, const struct step *s)
{
    static uint8_t bufs[16][128];
    struct raft_entry e[16];
    uint8_t snap[64];
    switch (s->kind) {
    case TERM_VOTE:
        return st->save_term_vote(st->ctx, s->a, (int32_t)s->b);
    case TRUNCATE:
        return st->truncate(st->ctx, s->a);
    case SNAPSHOT:
        return st->save_snapshot(st->ctx, s->a, (uint64_t)s->b, snap, snapshot_data(s->a, snap));
    case APPEND:
        assert_true(s->b >= 1 && s->b <= 16);
        for (int64_t i = 0; i < s->b; i++) {
            e[i].term = s->c;
            e[i].type = (s->a + (uint64_t)i) % 4 == 0 ? RAFT_ENTRY_NOOP : RAFT_ENTRY_COMMAND;
            e[i].len = entry_data(s->a + (uint64_t)i, s->c, bufs[i]);
            e[i].data = e[i].len ? bufs[i] : NULL;
        }
        return st->append(st->ctx, s->a, e, (size_t)s->b);
    }
    return -EINVAL;
}

/* The model after a step that returned 0. */
static void apply_step(struct model *m, const struct step *s)
{
    switch (s->kind) {
    case TERM_VOTE:
        m->term = s->a;
        m->vote = (int32_t)s->b;
        break;
    case TRUNCATE:
        if (m->last >= s->a)
            m->last = s->a - 1;
        break;
    case SNAPSHOT:
        m->snapshot_index = s->a;
        m->snapshot_term = (uint64_t)s->b;
        if (m->last < s->a)
            m->last = s->a;
        break;
    case APPEND:
        for (int64_t i = 0; i < s->b; i++)
            m->terms[s->a + (uint64_t)i] = s->c;
        m->last = s->a + (uint64_t)s->b - 1;
        break;
    }
}

/* ---- the checks ---- */

static bool check_entry(const struct raft_persisted *p, uint64_t index, uint64_t term,
                        char *why, size_t size)
{
    const struct raft_entry *e = &p->entries[index - p->snapshot_index - 1];
    uint8_t buf[128];
    uint32_t len = entry_data(index, term, buf);
    if (e->term != term || e->len != len || (len && memcmp(e->data, buf, len) != 0) ||
        e->type != (index % 4 == 0 ? RAFT_ENTRY_NOOP : RAFT_ENTRY_COMMAND)) {
        snprintf(why, size, "entry %" PRIu64 " is not the one written in term %" PRIu64
                 " (found term %" PRIu64 ", %" PRIu32 " bytes)", index, term, e->term, e->len);
        return false;
    }
    return true;
}

/* Is p a state the storage may recover after a crash during `inflight`,
 * given the acknowledged model m? */
static bool recovered_state_ok(const struct raft_persisted *p, const struct model *m,
                               const struct step *inflight, char *why, size_t size)
{
    /* Term and vote: the acknowledged pair, or the one being saved. Either
     * way the term never went back and no vote was taken back. */
    bool tv_new = inflight && inflight->kind == TERM_VOTE && p->term == inflight->a &&
                  p->voted_for == (int32_t)inflight->b;
    if (!tv_new && (p->term != m->term || p->voted_for != m->vote)) {
        snprintf(why, size, "term %" PRIu64 " vote %d, but T%" PRIu64 " vote %d was saved",
                 p->term, p->voted_for, m->term, m->vote);
        return false;
    }
    /* The snapshot: the acknowledged one, or the one being saved. */
    struct model want = *m;
    if (inflight && inflight->kind == SNAPSHOT && p->snapshot_index == inflight->a)
        apply_step(&want, inflight);
    if (p->snapshot_index != want.snapshot_index || p->snapshot_term != want.snapshot_term) {
        snprintf(why, size, "snapshot %" PRIu64 "@T%" PRIu64 ", expected %" PRIu64 "@T%" PRIu64,
                 p->snapshot_index, p->snapshot_term, want.snapshot_index, want.snapshot_term);
        return false;
    }
    uint8_t snap[64];
    uint32_t snap_len = want.snapshot_index ? snapshot_data(want.snapshot_index, snap) : 0;
    if (p->snapshot_len != snap_len || (snap_len && memcmp(p->snapshot, snap, snap_len) != 0)) {
        snprintf(why, size, "the snapshot's data differs");
        return false;
    }
    /* The log: the acknowledged entries, then what the interrupted call may
     * have left: part of its batch, or a cut no shorter than its target. */
    uint64_t last = p->snapshot_index + p->n_entries;
    uint64_t lo = want.last, hi = want.last;
    if (inflight && inflight->kind == APPEND)
        hi = inflight->a + (uint64_t)inflight->b - 1;
    if (inflight && inflight->kind == TRUNCATE && inflight->a <= want.last)
        lo = inflight->a - 1;
    if (lo < p->snapshot_index)
        lo = p->snapshot_index;
    if (last < lo || last > hi) {
        snprintf(why, size, "the log ends at %" PRIu64 ", expected %" PRIu64 "..%" PRIu64
                 " (acknowledged up to %" PRIu64 ")", last, lo, hi, want.last);
        return false;
    }
    for (uint64_t i = p->snapshot_index + 1; i <= last; i++) {
        uint64_t term = i <= want.last ? want.terms[i] : inflight->c;
        if (!check_entry(p, i, term, why, size))
            return false;
    }
    return true;
}

static void free_persisted(struct raft_persisted *p)
{
    for (size_t i = 0; i < p->n_entries; i++)
        free(p->entries[i].data);
    free(p->entries);
    free(p->snapshot);
    memset(p, 0, sizeof(*p));
}

struct log_sink {
    char text[4096];
};

static void keep_log(void *ctx, enum raft_log_level lvl, const char *msg)
{
    struct log_sink *l = ctx;
    if (lvl > RAFT_LOG_WARN)
        return;
    size_t used = strlen(l->text);
    snprintf(l->text + used, sizeof(l->text) - used, "%s\n", msg);
}

static struct file_storage *open_on(struct sim *s, const struct workload *w, struct log_sink *l)
{
    struct file_storage *fs;
    assert_int_equal(file_storage_open_with_io(&fs, SIM_DIR, keep_log, l, &s->io), 0);
    file_storage_set_segment_size(fs, w->segment_size);
    return fs;
}

/* Runs the workload on a disk that loses power at point crash_at. Returns
 * the number of persistence points it reached (the power stayed on if it
 * is below crash_at). */
/* How often the interesting outcomes happened in a sweep. */
struct sweep_stats {
    int crashes;
    int torn_tails_cut;   /* recovery cut a damaged tail */
    int inflight_visible; /* the interrupted call's effect (part of it) survived */
};

static int run_with_crash(const struct workload *w, int crash_at, uint64_t seed,
                          struct sweep_stats *stats)
{
    struct sim *disk = sim_new(seed, crash_at);
    struct log_sink log = { .text = "" };
    struct file_storage *fs = open_on(disk, w, &log);
    struct raft_storage st = file_storage_ops(fs);
    struct model m = { .vote = RAFT_NO_NODE };
    const struct step *inflight = NULL;
    struct raft_persisted p;
    int rc = st.load(st.ctx, &p);
    free_persisted(&p);
    for (size_t i = 0; rc == 0 && i < w->n_steps; i++) {
        rc = run_step(&st, &w->steps[i]);
        if (rc == 0)
            apply_step(&m, &w->steps[i]);
        else
            inflight = &w->steps[i];
    }
    file_storage_close(fs);
    int points = disk->points;
    if (!disk->crashed) {
        if (rc)
            fail_msg("%s: without a crash, a step failed: %s", w->name, strerror(-rc));
        sim_free(disk);
        return points;
    }

    /* The power came back. */
    struct sim *after = sim_reboot(disk);
    sim_free(disk);
    fs = open_on(after, w, &log);
    st = file_storage_ops(fs);
    rc = st.load(st.ctx, &p);
    if (rc)
        fail_msg("%s, crash at point %d, seed %" PRIu64 ": load failed after a power cut: %s",
                 w->name, crash_at, seed, file_storage_error(fs));
    char why[256];
    if (!recovered_state_ok(&p, &m, inflight, why, sizeof(why)))
        fail_msg("%s, crash at point %d, seed %" PRIu64 ": %s\nstorage said:\n%s", w->name,
                 crash_at, seed, why, log.text);
    stats->crashes++;
    if (strstr(log.text, "torn write"))
        stats->torn_tails_cut++;
    if (!recovered_state_ok(&p, &m, NULL, why, sizeof(why)))
        stats->inflight_visible++;

    /* The log goes on where it ends, and a second restart agrees. */
    uint64_t next = p.snapshot_index + p.n_entries + 1;
    uint64_t term = p.term > 0 ? p.term : 1;
    struct step more = { .kind = APPEND, .a = next, .b = 2, .c = term };
    assert_int_equal(run_step(&st, &more), 0);
    struct model m2 = { .term = p.term, .vote = p.voted_for, .snapshot_index = p.snapshot_index,
                        .snapshot_term = p.snapshot_term, .last = next - 1 };
    for (uint64_t i = p.snapshot_index + 1; i < next; i++)
        m2.terms[i] = p.entries[i - p.snapshot_index - 1].term;
    apply_step(&m2, &more);
    free_persisted(&p);
    file_storage_close(fs);
    fs = open_on(after, w, &log);
    st = file_storage_ops(fs);
    assert_int_equal(st.load(st.ctx, &p), 0);
    if (!recovered_state_ok(&p, &m2, NULL, why, sizeof(why)))
        fail_msg("%s, crash at point %d, seed %" PRIu64 ", after the reboot's append: %s",
                 w->name, crash_at, seed, why);
    free_persisted(&p);
    file_storage_close(fs);
    sim_free(after);
    return points;
}

static void sweep(const struct workload *w)
{
    struct sweep_stats stats = { 0, 0, 0 };
    int total = run_with_crash(w, 0, 1, &stats);
    assert_true(total > 10);
    for (int k = 1; k <= total; k++)
        for (uint64_t seed = 1; seed <= SEEDS; seed++)
            run_with_crash(w, k, seed * 1000003 + (uint64_t)k, &stats);
    print_message("%s: %d persistence points x %d seeds: %d crashes recovered, %d torn tails "
                  "cut, %d with part of the interrupted call kept\n", w->name, total, SEEDS,
                  stats.crashes, stats.torn_tails_cut, stats.inflight_visible);
    /* The sweep exercised what it is for. */
    assert_int_equal(stats.crashes, total * SEEDS);
    assert_true(stats.torn_tails_cut > 0);
    assert_true(stats.inflight_visible > 0);
}

/* Elections, a conflicting suffix replaced, compaction, an installed
 * snapshot beyond the log, over segments so small that most appends start
 * a new one. */
static const struct step mixed_steps[] = {
    { TERM_VOTE, 1, 0, 0 },
    { APPEND, 1, 3, 1 },
    { APPEND, 4, 1, 1 },
    { TERM_VOTE, 2, RAFT_NO_NODE, 0 },
    { TERM_VOTE, 2, 1, 0 },
    { TRUNCATE, 3, 0, 0 },
    { APPEND, 3, 4, 2 },      /* 3..6 */
    { SNAPSHOT, 4, 2, 0 },
    { APPEND, 7, 3, 2 },      /* 7..9 */
    { TRUNCATE, 8, 0, 0 },
    { TERM_VOTE, 3, 2, 0 },
    { APPEND, 8, 3, 3 },      /* 8..10 */
    { APPEND, 11, 5, 3 },     /* 11..15 */
    { APPEND, 16, 2, 3 },
    { APPEND, 18, 2, 3 },
    { APPEND, 20, 2, 3 },     /* 16..21, one segment per append */
    { TERM_VOTE, 4, 0, 0 },
    { TRUNCATE, 14, 0, 0 },   /* three whole segments and part of a fourth */
    { APPEND, 14, 3, 4 },     /* 14..16 */
    { SNAPSHOT, 30, 4, 0 },   /* installed: beyond the end of the log */
    { APPEND, 31, 2, 4 },
    { TERM_VOTE, 5, RAFT_NO_NODE, 0 },
    { TRUNCATE, 32, 0, 0 },
    { APPEND, 32, 2, 5 },
    { SNAPSHOT, 32, 5, 0 },   /* keeps 33 */
    { APPEND, 34, 1, 5 },
};

/* The same kinds of steps in one large segment: tears land between and
 * inside the records of multi-entry batches, after earlier batches. */
static const struct step one_segment_steps[] = {
    { TERM_VOTE, 1, RAFT_NO_NODE, 0 },
    { TERM_VOTE, 1, 0, 0 },
    { APPEND, 1, 5, 1 },
    { APPEND, 6, 6, 1 },
    { APPEND, 12, 1, 1 },
    { TERM_VOTE, 2, 2, 0 },
    { TRUNCATE, 9, 0, 0 },
    { APPEND, 9, 8, 2 },
    { SNAPSHOT, 10, 2, 0 },
    { APPEND, 17, 4, 2 },
    { TRUNCATE, 19, 0, 0 },
    { TERM_VOTE, 3, 1, 0 },
    { APPEND, 19, 7, 3 },
};

static void test_power_cut_at_every_point_small_segments(void **state)
{
    (void)state;
    const struct workload w = { "small segments", 96, mixed_steps,
                                sizeof(mixed_steps) / sizeof(mixed_steps[0]) };
    sweep(&w);
}

static void test_power_cut_at_every_point_one_segment(void **state)
{
    (void)state;
    const struct workload w = { "one segment", 1 << 20, one_segment_steps,
                                sizeof(one_segment_steps) / sizeof(one_segment_steps[0]) };
    sweep(&w);
}

/* The simulator itself: unsynced data and unsynced names may or may not
 * survive, synced ones always do. Otherwise the sweeps above would prove
 * little. */
static void test_simulated_disk_loses_only_unsynced_changes(void **state)
{
    (void)state;
    int a_gone = 0, b_kept = 0, tail_lost = 0, tail_kept = 0;
    for (uint64_t seed = 1; seed <= 64; seed++) {
        struct sim *s = sim_new(seed, 4);
        int fd = sim_open(s, SIM_DIR "/a", O_WRONLY | O_CREAT | O_EXCL, 0644);
        assert_true(fd >= 0);
        assert_int_equal(sim_pwrite(s, fd, "durable", 7, 0), 7);
        assert_int_equal(sim_fdatasync(s, fd), 0);       /* point 1 */
        assert_int_equal(sim_fsync_dir(s, SIM_DIR), 0);  /* point 2 */
        int fd2 = sim_open(s, SIM_DIR "/b", O_WRONLY | O_CREAT | O_EXCL, 0644);
        assert_int_equal(sim_pwrite(s, fd2, "synced, name not", 16, 0), 16);
        assert_int_equal(sim_fdatasync(s, fd2), 0);      /* point 3 */
        assert_int_equal(sim_pwrite(s, fd, "+maybe", 6, 7), 6);
        assert_int_equal(sim_unlink(s, SIM_DIR "/a"), 0);
        /* Point 4: the power goes. b's name, a's unlink and a's second
         * write were never synced. */
        assert_int_equal(sim_fsync_dir(s, SIM_DIR), -EIO);
        assert_true(s->crashed);
        assert_int_equal(sim_pwrite(s, fd, "x", 1, 0), -EIO); /* a dead machine */
        struct sim *after = sim_reboot(s);
        int ia = dir_find(&after->cur, "a");
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
        int ib = dir_find(&after->cur, "b");
        if (ib >= 0) {
            const struct inode *in = &after->inodes[after->cur.e[ib].ino];
            assert_int_equal(in->cur_len, 16);
            assert_memory_equal(in->cur, "synced, name not", 16);
            b_kept++;
        }
        sim_close(s, fd);
        sim_close(s, fd2);
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
        cmocka_unit_test(test_power_cut_at_every_point_small_segments),
        cmocka_unit_test(test_power_cut_at_every_point_one_segment),
    };
    return cmocka_run_group_tests_name("unit_powerloss", tests, NULL, NULL);
}
