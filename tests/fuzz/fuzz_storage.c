/*
 * fuzz_storage.c - libFuzzer target for crash recovery (raft/storage/).
 *
 * A data directory is input too: after a crash, a disk error or a hand
 * edit it may hold anything, and load() must either recover it or refuse
 * it with a message naming the file and offset, never crash,
 * leak or read outside a buffer. Each fuzz input is unpacked into a fresh
 * data directory, which file_storage_open() + load() then recover.
 *
 * INPUT FORMAT (a packed data directory; tests/fuzz/gen_corpus.c writes
 * valid ones for the seed corpus). Integers are big-endian. Up to
 * MAX_FILES times, while input remains:
 *
 *   u8   kind, taken modulo 6:
 *          0 meta   1 snapshot   2 a log segment   3 meta.tmp
 *          4 snapshot.tmp        5 a file with a name of its own
 *   kind 2 only: u64 first index -> the name "log-%016llx"
 *   kind 5 only: u8 n, then n name bytes (n taken modulo 33; '/' and NUL
 *                become '_'; "", "." and ".." become "_")
 *   u32  length, clamped to the bytes left
 *   the file's bytes
 *
 * A later file of the same name replaces an earlier one.
 *
 * THE DIRECTORY lives in memory: the files go into a small in-memory file
 * system behind `struct storage_io` (raft/storage/io.h), the same seam the
 * power-loss tests use, so that an execution costs microseconds rather than
 * real mkdir/write/fsync/unlink calls, and nothing is left behind. Recovery
 * does all its reads through that table, so it sees exactly these bytes.
 * With FUZZ_STORAGE_DIR=/some/dir set, each input is written instead as
 * real files in a fresh directory under /some/dir (emptied after each run)
 * and recovered through the POSIX table, as the `raft` program does: slower,
 * for replaying a corpus or a crash against the real file system.
 *
 * PROPERTIES checked beyond "no crash, no leak, no bad access":
 *   1. a failed load leaves an error message (file_storage_error is not "");
 *   2. recovery is idempotent: closing and loading the same directory again
 *      (after the first load has cut any torn tail) gives the same term,
 *      vote, snapshot and entries;
 *   3. a recovered log can be written: save_term_vote(term + 1) and
 *      append(one entry at the next index) succeed, and a third load
 *      returns the old entries plus the new one;
 *   4. the recovered snapshot read back in pieces (read_snapshot, as a
 *      leader sends it) is the one load returned, and a snapshot written
 *      piece by piece (begin, write, end) over it loads back.
 * A violation aborts with a line saying which, so libFuzzer saves the input.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "raft/storage/storage.h"

#define MAX_FILES 12
#define MEMFS_MAX_NAMES 64
#define MEMFS_MAX_FDS 32
#define MEMFS_MAX_FILE_SIZE ((size_t)64 << 20)
#define MEM_DATA_DIR "/fuzz/data"

/* ---- an in-memory file system for struct storage_io ---- */

struct mem_inode {
    uint8_t *data;
    size_t size, cap;
    int refs; /* names and open descriptors */
};

struct mem_name {
    char *path; /* NULL: free slot */
    struct mem_inode *ino;
    bool is_dir;
};

struct mem_fd {
    struct mem_inode *ino; /* NULL: free slot */
    int flags;
};

struct memfs {
    struct mem_name names[MEMFS_MAX_NAMES];
    struct mem_fd fds[MEMFS_MAX_FDS];
};

static void inode_unref(struct mem_inode *ino)
{
    if (ino && --ino->refs == 0) {
        free(ino->data);
        free(ino);
    }
}

static struct mem_name *memfs_lookup(struct memfs *fs, const char *path)
{
    for (int i = 0; i < MEMFS_MAX_NAMES; i++)
        if (fs->names[i].path && strcmp(fs->names[i].path, path) == 0)
            return &fs->names[i];
    return NULL;
}

static struct mem_name *memfs_new_name(struct memfs *fs, const char *path)
{
    for (int i = 0; i < MEMFS_MAX_NAMES; i++)
        if (!fs->names[i].path) {
            fs->names[i].path = strdup(path);
            if (!fs->names[i].path)
                return NULL;
            fs->names[i].ino = NULL;
            fs->names[i].is_dir = false;
            return &fs->names[i];
        }
    return NULL;
}

static void memfs_drop_name(struct mem_name *n)
{
    inode_unref(n->ino);
    free(n->path);
    memset(n, 0, sizeof(*n));
}

static void memfs_clear(struct memfs *fs)
{
    for (int i = 0; i < MEMFS_MAX_FDS; i++) {
        inode_unref(fs->fds[i].ino);
        fs->fds[i].ino = NULL;
    }
    for (int i = 0; i < MEMFS_MAX_NAMES; i++)
        if (fs->names[i].path)
            memfs_drop_name(&fs->names[i]);
}

static int mem_resize(struct mem_inode *ino, size_t size)
{
    if (size > MEMFS_MAX_FILE_SIZE)
        return -EFBIG;
    if (size > ino->cap) {
        size_t cap = ino->cap ? ino->cap : 256;
        while (cap < size)
            cap *= 2;
        uint8_t *d = realloc(ino->data, cap);
        if (!d)
            return -ENOMEM;
        ino->data = d;
        ino->cap = cap;
    }
    if (size > ino->size)
        memset(ino->data + ino->size, 0, size - ino->size);
    ino->size = size;
    return 0;
}

static struct mem_inode *mem_fd(struct memfs *fs, int fd)
{
    return fd >= 0 && fd < MEMFS_MAX_FDS ? fs->fds[fd].ino : NULL;
}

static int mem_open(void *ctx, const char *path, int flags, mode_t mode)
{
    (void)mode;
    struct memfs *fs = ctx;
    struct mem_name *n = memfs_lookup(fs, path);
    if (n && n->is_dir)
        return -EISDIR;
    if (n && (flags & O_CREAT) && (flags & O_EXCL))
        return -EEXIST;
    if (!n && !(flags & O_CREAT))
        return -ENOENT;
    int fd = -1;
    for (int i = 0; i < MEMFS_MAX_FDS && fd < 0; i++)
        if (!fs->fds[i].ino)
            fd = i;
    if (fd < 0)
        return -EMFILE;
    if (!n) {
        struct mem_inode *ino = calloc(1, sizeof(*ino));
        if (!ino)
            return -ENOMEM;
        n = memfs_new_name(fs, path);
        if (!n) {
            free(ino);
            return -ENOSPC;
        }
        ino->refs = 1;
        n->ino = ino;
    }
    if ((flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY)
        n->ino->size = 0;
    n->ino->refs++;
    fs->fds[fd].ino = n->ino;
    fs->fds[fd].flags = flags;
    return fd;
}

static int mem_close(void *ctx, int fd)
{
    struct memfs *fs = ctx;
    struct mem_inode *ino = mem_fd(fs, fd);
    if (!ino)
        return -EBADF;
    inode_unref(ino);
    fs->fds[fd].ino = NULL;
    return 0;
}

static ssize_t mem_pread(void *ctx, int fd, void *buf, size_t len, off_t off)
{
    struct mem_inode *ino = mem_fd(ctx, fd);
    if (!ino || off < 0)
        return ino ? -EINVAL : -EBADF;
    if ((size_t)off >= ino->size)
        return 0;
    size_t n = ino->size - (size_t)off;
    n = n < len ? n : len;
    memcpy(buf, ino->data + off, n);
    return (ssize_t)n;
}

static ssize_t mem_pwrite(void *ctx, int fd, const void *buf, size_t len, off_t off)
{
    struct memfs *fs = ctx;
    struct mem_inode *ino = mem_fd(fs, fd);
    if (!ino || off < 0)
        return ino ? -EINVAL : -EBADF;
    if ((fs->fds[fd].flags & O_ACCMODE) == O_RDONLY)
        return -EBADF;
    size_t end = (size_t)off + len;
    if (end > ino->size) {
        int rc = mem_resize(ino, end);
        if (rc)
            return rc;
    }
    if (len)
        memcpy(ino->data + off, buf, len);
    return (ssize_t)len;
}

static int mem_fdatasync(void *ctx, int fd)
{
    return mem_fd(ctx, fd) ? 0 : -EBADF;
}

static int mem_ftruncate(void *ctx, int fd, off_t len)
{
    struct mem_inode *ino = mem_fd(ctx, fd);
    if (!ino || len < 0)
        return ino ? -EINVAL : -EBADF;
    return mem_resize(ino, (size_t)len);
}

static int mem_file_size(void *ctx, int fd, off_t *size)
{
    struct mem_inode *ino = mem_fd(ctx, fd);
    if (!ino)
        return -EBADF;
    *size = (off_t)ino->size;
    return 0;
}

static int mem_rename(void *ctx, const char *from, const char *to)
{
    struct memfs *fs = ctx;
    struct mem_name *src = memfs_lookup(fs, from);
    if (!src)
        return -ENOENT;
    if (strcmp(from, to) == 0)
        return 0;
    struct mem_name *dst = memfs_lookup(fs, to);
    if (dst)
        memfs_drop_name(dst);
    char *path = strdup(to);
    if (!path)
        return -ENOMEM;
    free(src->path);
    src->path = path;
    return 0;
}

static int mem_unlink(void *ctx, const char *path)
{
    struct mem_name *n = memfs_lookup(ctx, path);
    if (!n)
        return -ENOENT;
    if (n->is_dir)
        return -EISDIR;
    memfs_drop_name(n);
    return 0;
}

static int mem_mkdir(void *ctx, const char *path, mode_t mode)
{
    (void)mode;
    struct memfs *fs = ctx;
    if (memfs_lookup(fs, path))
        return -EEXIST;
    struct mem_name *n = memfs_new_name(fs, path);
    if (!n)
        return -ENOSPC;
    n->is_dir = true;
    return 0;
}

static int mem_fsync_dir(void *ctx, const char *path)
{
    struct mem_name *n = memfs_lookup(ctx, path);
    return n && n->is_dir ? 0 : -ENOENT;
}

static int mem_list_dir(void *ctx, const char *path, int (*each)(void *arg, const char *name),
                        void *arg)
{
    struct memfs *fs = ctx;
    size_t len = strlen(path);
    for (int i = 0; i < MEMFS_MAX_NAMES; i++) {
        const char *p = fs->names[i].path;
        if (!p || strncmp(p, path, len) != 0 || p[len] != '/' || strchr(p + len + 1, '/'))
            continue;
        int rc = each(arg, p + len + 1);
        if (rc)
            return rc;
    }
    return 0;
}

static struct memfs the_fs;
static char data_dir[256] = MEM_DATA_DIR;
static const struct storage_io *io; /* mem_io, or the POSIX table */

static const struct storage_io mem_io = {
    .ctx = &the_fs,
    .open = mem_open,
    .close = mem_close,
    .pread = mem_pread,
    .pwrite = mem_pwrite,
    .fdatasync = mem_fdatasync,
    .ftruncate = mem_ftruncate,
    .file_size = mem_file_size,
    .rename = mem_rename,
    .unlink = mem_unlink,
    .mkdir = mem_mkdir,
    .fsync_dir = mem_fsync_dir,
    .list_dir = mem_list_dir,
};

/* ---- unpacking an input into the data directory ---- */

struct reader {
    const uint8_t *p;
    size_t left;
};

static bool take(struct reader *r, size_t n, const uint8_t **out)
{
    if (r->left < n)
        return false;
    *out = r->p;
    r->p += n;
    r->left -= n;
    return true;
}

static uint64_t be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

static void write_file(const char *name, const uint8_t *data, size_t len)
{
    char path[320];
    snprintf(path, sizeof(path), "%s/%s", data_dir, name);
    int fd = io->open(io->ctx, path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return; /* out of names: the directory simply has fewer files */
    if (len && io->pwrite(io->ctx, fd, data, len, 0) != (ssize_t)len)
        abort(); /* the fuzzer's own file system failed */
    io->close(io->ctx, fd);
}

/* Empties the data directory (storage never makes subdirectories). */
static int unlink_one(void *arg, const char *name)
{
    (void)arg;
    char path[320];
    snprintf(path, sizeof(path), "%s/%s", data_dir, name);
    io->unlink(io->ctx, path);
    return 0;
}

static void clear_data_dir(void)
{
    if (io == &mem_io)
        memfs_clear(&the_fs);
    else
        io->list_dir(io->ctx, data_dir, unlink_one, NULL);
}

static void remove_data_dir(void)
{
    clear_data_dir();
    rmdir(data_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    io = &mem_io;
    const char *base = getenv("FUZZ_STORAGE_DIR");
    if (base && *base) {
        snprintf(data_dir, sizeof(data_dir), "%s/fuzz-storage-XXXXXX", base);
        if (!mkdtemp(data_dir)) {
            fprintf(stderr, "fuzz_storage: cannot make a directory under %s\n", base);
            exit(1);
        }
        io = storage_io_posix();
        atexit(remove_data_dir);
        fprintf(stderr, "fuzz_storage: data directories in %s (real files)\n", data_dir);
    }
    return 0;
}

static void unpack(const uint8_t *data, size_t size)
{
    if (io == &mem_io) {
        mem_mkdir(&the_fs, "/fuzz", 0755);
        mem_mkdir(&the_fs, MEM_DATA_DIR, 0755);
    }
    struct reader r = {data, size};
    for (int i = 0; i < MAX_FILES && r.left > 0; i++) {
        const uint8_t *p;
        char name[40];
        take(&r, 1, &p);
        switch (p[0] % 6) {
        case 0: snprintf(name, sizeof(name), "meta"); break;
        case 1: snprintf(name, sizeof(name), "snapshot"); break;
        case 3: snprintf(name, sizeof(name), "meta.tmp"); break;
        case 4: snprintf(name, sizeof(name), "snapshot.tmp"); break;
        case 2:
            if (!take(&r, 8, &p))
                return;
            snprintf(name, sizeof(name), "log-%016llx", (unsigned long long)be(p, 8));
            break;
        default: {
            if (!take(&r, 1, &p))
                return;
            size_t n = p[0] % 33;
            if (!take(&r, n, &p))
                return;
            for (size_t k = 0; k < n; k++)
                name[k] = p[k] == '/' || p[k] == '\0' ? '_' : (char)p[k];
            name[n] = '\0';
            if (n == 0 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
                snprintf(name, sizeof(name), "_");
        }
        }
        if (!take(&r, 4, &p))
            return;
        size_t len = (size_t)be(p, 4);
        len = len < r.left ? len : r.left;
        take(&r, len, &p);
        write_file(name, p, len);
    }
}

/* ---- the properties ---- */

static void fail(const char *what, const struct file_storage *s)
{
    fprintf(stderr, "fuzz_storage: property violated: %s (storage says: \"%s\")\n", what,
            s ? file_storage_error(s) : "");
    abort();
}

static void quiet(void *ctx, enum raft_log_level lvl, const char *msg)
{
    (void)ctx, (void)lvl, (void)msg;
}

static void free_persisted(struct raft_persisted *p)
{
    for (size_t i = 0; i < p->n_entries; i++)
        free(p->entries[i].data);
    free(p->entries);
    free(p->snapshot);
    memset(p, 0, sizeof(*p));
}

static bool entry_equal(const struct raft_entry *a, const struct raft_entry *b)
{
    return a->term == b->term && a->type == b->type && a->len == b->len &&
           (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* Equal in term, vote, snapshot and the first a->n_entries entries. */
static bool persisted_prefix_equal(const struct raft_persisted *a, const struct raft_persisted *b)
{
    if (a->voted_for != b->voted_for || a->snapshot_index != b->snapshot_index ||
        a->snapshot_term != b->snapshot_term || a->snapshot_len != b->snapshot_len ||
        (a->snapshot_len && memcmp(a->snapshot, b->snapshot, a->snapshot_len) != 0) ||
        a->n_entries > b->n_entries)
        return false;
    for (size_t i = 0; i < a->n_entries; i++)
        if (!entry_equal(&a->entries[i], &b->entries[i]))
            return false;
    return true;
}

/* Opens the directory and loads it: 0 with *out filled, or load's error. */
static int open_and_load(struct file_storage **s, struct raft_persisted *out)
{
    memset(out, 0, sizeof(*out));
    int rc = file_storage_open_with_io(s, data_dir, quiet, NULL, io);
    if (rc) {
        *s = NULL;
        return rc;
    }
    struct raft_storage ops = file_storage_ops(*s);
    rc = ops.load(ops.ctx, out);
    if (rc && file_storage_error(*s)[0] == '\0')
        fail("load failed without saying why", *s);
    /* load checks the snapshot and leaves its bytes in the file: read
     * them, for the comparisons. */
    if (rc == 0 && out->snapshot)
        fail("load handed over the snapshot's bytes instead of leaving them in storage", *s);
    if (rc == 0 && out->snapshot_len > 0) {
        out->snapshot = malloc(out->snapshot_len);
        if (!out->snapshot || ops.read_snapshot(ops.ctx, out->snapshot_index, 0, out->snapshot,
                                                out->snapshot_len) != 0)
            fail("the snapshot load found could not be read", *s);
    }
    return rc;
}

static void check_streamed_snapshot(struct file_storage *s, uint64_t index, uint64_t term);

/* Properties 2 to 4 on a directory that loaded as `first`. */
static void check_recovered(const struct raft_persisted *first)
{
    struct file_storage *s;
    struct raft_persisted again;
    if (open_and_load(&s, &again) != 0)
        fail("a directory that loaded once did not load again", s);
    if (again.term != first->term || again.n_entries != first->n_entries ||
        !persisted_prefix_equal(first, &again))
        fail("a second load returned a different state than the first", s);
    free_persisted(&again);

    uint64_t next = first->snapshot_index + first->n_entries + 1;
    if (first->term >= UINT64_MAX / 2 || next >= UINT64_MAX / 2 ||
        first->snapshot_index >= UINT64_MAX / 2) {
        file_storage_close(s);
        return; /* indices and terms this large never occur; no room to write */
    }
    struct raft_storage ops = file_storage_ops(s);
    /* Read back in pieces, as a leader sends it, the snapshot is the one
     * load returned. */
    uint8_t piece[7];
    for (size_t off = 0; off < first->snapshot_len; off += sizeof(piece)) {
        size_t n = first->snapshot_len - off < sizeof(piece) ? first->snapshot_len - off
                                                             : sizeof(piece);
        if (ops.read_snapshot(ops.ctx, first->snapshot_index, off, piece, n) != 0 ||
            memcmp(piece, first->snapshot + off, n) != 0)
            fail("the snapshot read back in pieces differs from the one load returned", s);
    }
    if (ops.save_term_vote(ops.ctx, first->term + 1, 0) != 0)
        fail("save_term_vote after a successful load failed", s);
    uint8_t data[3] = {'n', 'e', 'w'};
    struct raft_entry e = {.term = first->term + 1, .type = RAFT_ENTRY_COMMAND, .len = 3,
                           .data = data};
    if (ops.append(ops.ctx, next, &e, 1) != 0)
        fail("append at the next index after a successful load failed", s);
    file_storage_close(s);

    struct raft_persisted third;
    if (open_and_load(&s, &third) != 0)
        fail("the directory did not load after an append", s);
    if (third.term != first->term + 1 || third.voted_for != 0 ||
        third.n_entries != first->n_entries + 1 || third.snapshot_index != first->snapshot_index ||
        !entry_equal(&third.entries[first->n_entries], &e))
        fail("the entry appended after recovery did not come back", s);
    third.voted_for = first->voted_for;
    if (!persisted_prefix_equal(first, &third))
        fail("appending after recovery changed earlier entries or the snapshot", s);
    free_persisted(&third);
    check_streamed_snapshot(s, next, e.term);
}

/* A snapshot written piece by piece over the recovered directory, up to
 * the entry appended at `index`, replaces the log and loads back. */
static void check_streamed_snapshot(struct file_storage *s, uint64_t index, uint64_t term)
{
    static const uint8_t state[] = "a state machine written in pieces";
    struct raft_storage ops = file_storage_ops(s);
    void *w;
    if (ops.begin_snapshot(ops.ctx, index, term, &w) != 0)
        fail("begin_snapshot after a successful load failed", s);
    for (size_t off = 0; off < sizeof(state); off += 5)
        ops.write_snapshot(w, state + off, sizeof(state) - off < 5 ? sizeof(state) - off : 5);
    if (ops.end_snapshot(ops.ctx, w, true) != 0)
        fail("a snapshot written piece by piece after a successful load failed", s);
    file_storage_close(s);
    struct raft_persisted back;
    if (open_and_load(&s, &back) != 0)
        fail("the directory did not load after a snapshot written piece by piece", s);
    if (back.snapshot_index != index || back.snapshot_term != term || back.n_entries != 0 ||
        back.snapshot_len != sizeof(state) || memcmp(back.snapshot, state, sizeof(state)) != 0)
        fail("the snapshot written piece by piece did not come back", s);
    free_persisted(&back);
    file_storage_close(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unpack(data, size);
    struct file_storage *s;
    struct raft_persisted p;
    int rc = open_and_load(&s, &p);
    if (s)
        file_storage_close(s);
    if (rc == 0) {
        check_recovered(&p);
        free_persisted(&p);
    }
    clear_data_dir();
    return 0;
}
