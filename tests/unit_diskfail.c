/*
 * unit_diskfail.c - a node whose disk fails (ENOSPC, EIO) stops
 * acknowledging, steps down with one clear log line, leaves no corrupt file,
 * and after a restart on a working disk has everything it acknowledged.
 *
 * Real Raft nodes over real files in a temporary directory. Every file
 * system call of a node goes through a storage_io (raft/storage/io.h) that
 * passes it on to the POSIX one until it is told to fail: from then on every
 * matching call fails (a full disk stays full), and the first failing write
 * first writes half of its bytes, as a write that runs out of space does.
 * Nodes talk by calling each other's raft_receive directly.
 *
 * Item 36 of the reliability list: "ENOSPC or EIO on write/fsync -> node
 * stops acknowledging, clear error, no retry of a failed fsync".
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "raft/raft.h"
#include "raft/storage/storage.h"
#include "raft/storage/io.h"

#define MAX_NODES 3
#define MAX_FDS 1024

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* ---- a disk that fails on command ---- */

enum fault_op { FAULT_NONE, FAULT_PWRITE, FAULT_FDATASYNC };

struct faulty_io {
    pthread_mutex_t mu;
    const struct storage_io *real;
    char *path_of[MAX_FDS]; /* the path each open descriptor was opened with */
    /* The fault: calls of `op` on files whose name contains `match` fail
     * with `err` once `pass` more of them have gone through. */
    enum fault_op op;
    int err;
    char match[32];
    unsigned pass;
    bool cut_short;      /* a write has been cut short */
    bool failing;        /* the fault has struck: a call failed */
    unsigned injected;   /* calls failed (or cut short) */
    unsigned writes_after, syncs_after; /* matching calls made after it struck */
};

static bool matches_locked(struct faulty_io *f, int fd)
{
    return fd >= 0 && fd < MAX_FDS && f->path_of[fd] &&
           strstr(strrchr(f->path_of[fd], '/'), f->match) != NULL;
}

static int fio_open(void *ctx, const char *path, int flags, mode_t mode)
{
    struct faulty_io *f = ctx;
    int fd = f->real->open(f->real->ctx, path, flags, mode);
    if (fd >= 0 && fd < MAX_FDS) {
        pthread_mutex_lock(&f->mu);
        free(f->path_of[fd]);
        f->path_of[fd] = strdup(path);
        pthread_mutex_unlock(&f->mu);
    }
    return fd;
}

static int fio_close(void *ctx, int fd)
{
    struct faulty_io *f = ctx;
    if (fd >= 0 && fd < MAX_FDS) {
        pthread_mutex_lock(&f->mu);
        free(f->path_of[fd]);
        f->path_of[fd] = NULL;
        pthread_mutex_unlock(&f->mu);
    }
    return f->real->close(f->real->ctx, fd);
}

static ssize_t fio_pread(void *ctx, int fd, void *buf, size_t len, off_t off)
{
    struct faulty_io *f = ctx;
    return f->real->pread(f->real->ctx, fd, buf, len, off);
}

/* Decides the fate of one matching call: 0 to pass it on, 1 to fail it,
 * 2 to cut it short (the first failing write). */
static int fate_locked(struct faulty_io *f, enum fault_op op, int fd, size_t len)
{
    if (f->op != op || !matches_locked(f, fd))
        return 0;
    if (f->failing) {
        if (op == FAULT_PWRITE)
            f->writes_after++;
        else
            f->syncs_after++;
        f->injected++;
        return 1;
    }
    if (f->pass > 0) {
        f->pass--;
        return 0;
    }
    f->injected++;
    if (op == FAULT_PWRITE && len >= 2 && !f->cut_short) {
        f->cut_short = true; /* the caller's next write meets the full disk */
        return 2;
    }
    f->failing = true;
    return 1;
}

static ssize_t fio_pwrite(void *ctx, int fd, const void *buf, size_t len, off_t off)
{
    struct faulty_io *f = ctx;
    pthread_mutex_lock(&f->mu);
    int fate = fate_locked(f, FAULT_PWRITE, fd, len);
    int err = f->err;
    pthread_mutex_unlock(&f->mu);
    if (fate == 1)
        return err;
    if (fate == 2) /* the disk fills up half way through */
        return f->real->pwrite(f->real->ctx, fd, buf, len / 2, off);
    return f->real->pwrite(f->real->ctx, fd, buf, len, off);
}

static int fio_fdatasync(void *ctx, int fd)
{
    struct faulty_io *f = ctx;
    pthread_mutex_lock(&f->mu);
    int fate = fate_locked(f, FAULT_FDATASYNC, fd, 0);
    int err = f->err;
    pthread_mutex_unlock(&f->mu);
    return fate ? err : f->real->fdatasync(f->real->ctx, fd);
}

static int fio_ftruncate(void *ctx, int fd, off_t len)
{
    struct faulty_io *f = ctx;
    return f->real->ftruncate(f->real->ctx, fd, len);
}

static int fio_file_size(void *ctx, int fd, off_t *size)
{
    struct faulty_io *f = ctx;
    return f->real->file_size(f->real->ctx, fd, size);
}

static int fio_rename(void *ctx, const char *from, const char *to)
{
    struct faulty_io *f = ctx;
    return f->real->rename(f->real->ctx, from, to);
}

static int fio_unlink(void *ctx, const char *path)
{
    struct faulty_io *f = ctx;
    return f->real->unlink(f->real->ctx, path);
}

static int fio_mkdir(void *ctx, const char *path, mode_t mode)
{
    struct faulty_io *f = ctx;
    return f->real->mkdir(f->real->ctx, path, mode);
}

static int fio_fsync_dir(void *ctx, const char *path)
{
    struct faulty_io *f = ctx;
    return f->real->fsync_dir(f->real->ctx, path);
}

static int fio_list_dir(void *ctx, const char *path, int (*each)(void *, const char *),
                        void *arg)
{
    struct faulty_io *f = ctx;
    return f->real->list_dir(f->real->ctx, path, each, arg);
}

static void faulty_init(struct faulty_io *f, struct storage_io *io)
{
    memset(f, 0, sizeof(*f));
    pthread_mutex_init(&f->mu, NULL);
    f->real = storage_io_posix();
    *io = (struct storage_io){
        .ctx = f, .open = fio_open, .close = fio_close, .pread = fio_pread,
        .pwrite = fio_pwrite, .fdatasync = fio_fdatasync, .ftruncate = fio_ftruncate,
        .file_size = fio_file_size, .rename = fio_rename, .unlink = fio_unlink,
        .mkdir = fio_mkdir, .fsync_dir = fio_fsync_dir, .list_dir = fio_list_dir,
    };
}

static void faulty_free(struct faulty_io *f)
{
    for (int i = 0; i < MAX_FDS; i++)
        free(f->path_of[i]);
    pthread_mutex_destroy(&f->mu);
}

/* From now on, after `pass` more matching calls, the disk fails. */
static void faulty_arm(struct faulty_io *f, enum fault_op op, int err, const char *match,
                       unsigned pass)
{
    pthread_mutex_lock(&f->mu);
    f->op = op;
    f->err = err;
    snprintf(f->match, sizeof(f->match), "%s", match);
    f->pass = pass;
    f->cut_short = f->failing = false;
    pthread_mutex_unlock(&f->mu);
}

static bool faulty_struck(struct faulty_io *f)
{
    pthread_mutex_lock(&f->mu);
    bool struck = f->failing;
    pthread_mutex_unlock(&f->mu);
    return struck;
}

/* ---- the state machine: a list of 8-byte numbers ---- */

struct numbers {
    pthread_mutex_t mu;
    unsigned snapshot_delay_ms; /* a slow state machine, to widen races */
    uint64_t applied;
    uint64_t *v;
    size_t n, cap;
};

static void numbers_push_locked(struct numbers *s, uint64_t x)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->v = realloc(s->v, s->cap * sizeof(*s->v));
        assert_non_null(s->v);
    }
    s->v[s->n++] = x;
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t x = 0;
    for (int i = 0; i < 8; i++)
        x = x << 8 | p[i];
    return x;
}

static void put_be64(uint8_t *p, uint64_t x)
{
    for (int i = 7; i >= 0; i--, x >>= 8)
        p[i] = (uint8_t)x;
}

static void numbers_apply(void *ctx, uint64_t index, const struct raft_entry *e)
{
    struct numbers *s = ctx;
    pthread_mutex_lock(&s->mu);
    if (e->type == RAFT_ENTRY_COMMAND && e->len == 8)
        numbers_push_locked(s, get_be64(e->data));
    s->applied = index;
    pthread_mutex_unlock(&s->mu);
}

static int numbers_snapshot(void *ctx, uint8_t **data, size_t *len)
{
    struct numbers *s = ctx;
    pthread_mutex_lock(&s->mu);
    unsigned delay = s->snapshot_delay_ms;
    pthread_mutex_unlock(&s->mu);
    sleep_ms(delay);
    pthread_mutex_lock(&s->mu);
    *len = 8 * (s->n + 1);
    *data = malloc(*len);
    if (*data) {
        put_be64(*data, s->n);
        for (size_t i = 0; i < s->n; i++)
            put_be64(*data + 8 * (i + 1), s->v[i]);
    }
    pthread_mutex_unlock(&s->mu);
    return *data ? 0 : -ENOMEM;
}

static int numbers_restore(void *ctx, uint64_t index, const uint8_t *data, size_t len)
{
    struct numbers *s = ctx;
    if (len < 8 || len != 8 * (get_be64(data) + 1))
        return -EINVAL;
    pthread_mutex_lock(&s->mu);
    s->n = 0;
    for (size_t i = 1; i < len / 8; i++)
        numbers_push_locked(s, get_be64(data + 8 * i));
    s->applied = index;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

/* A copy of the numbers applied so far. */
static size_t numbers_copy(struct numbers *s, uint64_t *out, size_t max)
{
    pthread_mutex_lock(&s->mu);
    size_t n = s->n < max ? s->n : max;
    memcpy(out, s->v, n * sizeof(*out));
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* ---- nodes and the world they live in ---- */

/* Every line a node and its storage log, kept to be counted. */
struct log_lines {
    pthread_mutex_t mu;
    char *text;
    size_t len, cap;
};

struct node {
    struct world *world;
    uint32_t id;
    char dir[128];
    struct faulty_io fio;
    struct storage_io io;
    struct file_storage *fs;
    struct raft_node *raft;
    struct numbers fsm;
    struct log_lines log;
    /* The gate other nodes' calls pass through, so that the node can be
     * stopped while they call it. */
    pthread_mutex_t gate_mu;
    pthread_cond_t gate_cond;
    bool up;
    unsigned inflight;
};

struct world {
    unsigned n;
    uint64_t snapshot_every;
    char root[64];
    struct node nodes[MAX_NODES];
};

static void log_add(struct log_lines *l, enum raft_log_level level, const char *who,
                    const char *line)
{
    static const char tag[] = "EWIDT";
    char buf[1200];
    int len = snprintf(buf, sizeof(buf), "%c %s %s\n", tag[level], who, line);
    if (len < 0)
        return;
    if ((size_t)len >= sizeof(buf))
        len = sizeof(buf) - 1;
    pthread_mutex_lock(&l->mu);
    if (l->len + (size_t)len + 1 > l->cap) {
        size_t cap = (l->cap + (size_t)len + 1) * 2;
        char *t = realloc(l->text, cap);
        if (t) {
            l->text = t;
            l->cap = cap;
        }
    }
    if (l->len + (size_t)len + 1 <= l->cap) {
        memcpy(l->text + l->len, buf, (size_t)len + 1);
        l->len += (size_t)len;
    }
    pthread_mutex_unlock(&l->mu);
}

static void node_log_line(void *ctx, uint32_t id, enum raft_log_level level, const char *line)
{
    (void)id;
    struct node *t = ctx;
    log_add(&t->log, level, "raft", line);
}

static void storage_log_line(void *ctx, enum raft_log_level level, const char *msg)
{
    struct node *t = ctx;
    log_add(&t->log, level, "storage", msg);
}

/* Lines of the node's log at `level` from `who` ("raft" or "storage")
 * that contain `needle` ("" for all). */
static int count_log(struct node *t, enum raft_log_level level, const char *who,
                     const char *needle)
{
    static const char tag[] = "EWIDT";
    int count = 0;
    pthread_mutex_lock(&t->log.mu);
    for (char *line = t->log.text; line && *line;) {
        char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        size_t wl = strlen(who);
        char copy[1200];
        snprintf(copy, sizeof(copy), "%.*s", (int)len, line);
        if (copy[0] == tag[level] && strncmp(copy + 2, who, wl) == 0 && copy[2 + wl] == ' ' &&
            strstr(copy, needle))
            count++;
        line = end ? end + 1 : line + len;
    }
    pthread_mutex_unlock(&t->log.mu);
    return count;
}

static void print_log(struct node *t)
{
    pthread_mutex_lock(&t->log.mu);
    fprintf(stderr, "--- n%u's log:\n%s", t->id, t->log.text ? t->log.text : "");
    pthread_mutex_unlock(&t->log.mu);
}

static int world_call(void *ctx, uint32_t peer, const struct raft_msg *req,
                      struct raft_msg *reply, unsigned timeout_ms)
{
    (void)timeout_ms;
    struct world *w = ctx;
    if (peer >= w->n)
        return -EINVAL;
    struct node *t = &w->nodes[peer];
    pthread_mutex_lock(&t->gate_mu);
    if (!t->up) {
        pthread_mutex_unlock(&t->gate_mu);
        sleep_ms(5); /* a refused connection is not instant either */
        return -ECONNREFUSED;
    }
    t->inflight++;
    struct raft_node *target = t->raft;
    pthread_mutex_unlock(&t->gate_mu);
    int rc = raft_receive(target, req, reply);
    pthread_mutex_lock(&t->gate_mu);
    t->inflight--;
    pthread_cond_broadcast(&t->gate_cond);
    pthread_mutex_unlock(&t->gate_mu);
    return rc;
}

static struct world *world_new(unsigned n, uint64_t snapshot_every)
{
    struct world *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    w->n = n;
    w->snapshot_every = snapshot_every;
    snprintf(w->root, sizeof(w->root), "/tmp/raft-diskfail-XXXXXX");
    assert_non_null(mkdtemp(w->root));
    for (unsigned i = 0; i < n; i++) {
        struct node *t = &w->nodes[i];
        t->world = w;
        t->id = i;
        snprintf(t->dir, sizeof(t->dir), "%s/node-%u", w->root, i);
        faulty_init(&t->fio, &t->io);
        pthread_mutex_init(&t->fsm.mu, NULL);
        pthread_mutex_init(&t->log.mu, NULL);
        pthread_mutex_init(&t->gate_mu, NULL);
        pthread_cond_init(&t->gate_cond, NULL);
    }
    return w;
}

/* Starts node i over its directory; faulty: through its failing disk,
 * else straight to POSIX (the disk has been fixed). */
static void node_up(struct world *w, unsigned i, bool faulty)
{
    struct node *t = &w->nodes[i];
    pthread_mutex_lock(&t->fsm.mu);
    t->fsm.n = 0;
    t->fsm.applied = 0;
    pthread_mutex_unlock(&t->fsm.mu);
    assert_int_equal(file_storage_open_with_io(&t->fs, t->dir, storage_log_line, t,
                                               faulty ? &t->io : storage_io_posix()),
                     0);
    struct raft_config cfg;
    raft_config_defaults(&cfg, i, w->n);
    cfg.snapshot_every = w->snapshot_every;
    cfg.log_level = RAFT_LOG_INFO;
    cfg.log_line = node_log_line;
    cfg.log_ctx = t;
    struct raft_transport transport = {.ctx = w, .call = world_call};
    struct raft_storage storage = file_storage_ops(t->fs);
    struct raft_fsm fsm = {.ctx = &t->fsm, .apply = numbers_apply,
                           .snapshot = numbers_snapshot, .restore = numbers_restore};
    int rc = raft_start(&t->raft, &cfg, &transport, &storage, &fsm);
    if (rc)
        print_log(t);
    assert_int_equal(rc, 0);
    pthread_mutex_lock(&t->gate_mu);
    t->up = true;
    pthread_mutex_unlock(&t->gate_mu);
}

static void node_down(struct world *w, unsigned i)
{
    struct node *t = &w->nodes[i];
    if (!t->raft)
        return;
    raft_begin_stop(t->raft); /* calls into it now fail fast */
    pthread_mutex_lock(&t->gate_mu);
    t->up = false;
    while (t->inflight > 0)
        pthread_cond_wait(&t->gate_cond, &t->gate_mu);
    pthread_mutex_unlock(&t->gate_mu);
    raft_stop(t->raft);
    t->raft = NULL;
    file_storage_close(t->fs);
    t->fs = NULL;
}

static void world_free(struct world *w)
{
    for (unsigned i = 0; i < w->n; i++)
        if (w->nodes[i].raft)
            raft_begin_stop(w->nodes[i].raft);
    for (unsigned i = 0; i < w->n; i++)
        node_down(w, i);
    for (unsigned i = 0; i < w->n; i++) {
        struct node *t = &w->nodes[i];
        faulty_free(&t->fio);
        free(t->fsm.v);
        free(t->log.text);
        pthread_mutex_destroy(&t->fsm.mu);
        pthread_mutex_destroy(&t->log.mu);
        pthread_mutex_destroy(&t->gate_mu);
        pthread_cond_destroy(&t->gate_cond);
    }
    char cmd[96];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", w->root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", w->root);
    free(w);
}

static int teardown(void **state)
{
    if (*state)
        world_free(*state);
    *state = NULL;
    return 0;
}

static struct raft_status status_of(struct world *w, unsigned i)
{
    struct raft_status st;
    raft_get_status(w->nodes[i].raft, &st);
    return st;
}

/* The one node that leads (in the highest term), or -1 after timeout_ms;
 * nodes that are down or listed in `skip` (a bit mask) are not asked. */
static int wait_leader(struct world *w, unsigned skip, unsigned timeout_ms)
{
    uint64_t deadline = now_ms() + timeout_ms;
    do {
        int leader = -1;
        uint64_t top = 0;
        for (unsigned i = 0; i < w->n; i++) {
            if (!w->nodes[i].raft || (skip & (1u << i)))
                continue;
            struct raft_status st = status_of(w, i);
            if (st.role == RAFT_LEADER && st.term >= top) {
                top = st.term;
                leader = (int)i;
            }
        }
        if (leader >= 0)
            return leader;
        sleep_ms(10);
    } while (now_ms() < deadline);
    return -1;
}

/* Proposes the number x on node i and waits for it to be applied there:
 * 0 when it was (acknowledged), else why not. */
static int put_number(struct world *w, unsigned i, uint64_t x, unsigned timeout_ms)
{
    uint8_t cmd[8];
    put_be64(cmd, x);
    uint64_t index, term;
    int32_t hint;
    int rc = raft_propose(w->nodes[i].raft, cmd, sizeof(cmd), &index, &term, &hint);
    if (rc == 0)
        rc = raft_wait_applied(w->nodes[i].raft, index, term, timeout_ms);
    return rc;
}

/* Waits until node i has applied at least n numbers; returns how many. */
static size_t wait_numbers(struct world *w, unsigned i, size_t n, unsigned timeout_ms)
{
    uint64_t deadline = now_ms() + timeout_ms;
    size_t have;
    for (;;) {
        pthread_mutex_lock(&w->nodes[i].fsm.mu);
        have = w->nodes[i].fsm.n;
        pthread_mutex_unlock(&w->nodes[i].fsm.mu);
        if (have >= n || now_ms() > deadline)
            return have;
        sleep_ms(10);
    }
}

/* Node i's state machine holds 1, 2, ..., at least `acked` of them, and
 * nothing else but perhaps up to `maybe` more in the same sequence. */
static void expect_numbers(struct world *w, unsigned i, uint64_t acked, uint64_t maybe)
{
    size_t have = wait_numbers(w, i, acked, 5000);
    uint64_t got[256];
    size_t n = numbers_copy(&w->nodes[i].fsm, got, 256);
    if (have < acked || n > acked + maybe)
        fprintf(stderr, "n%u applied %zu numbers, want %" PRIu64 " (+ up to %" PRIu64 ")\n", i,
                n, acked, maybe);
    assert_true(n >= acked && n <= acked + maybe);
    for (size_t k = 0; k < n; k++)
        assert_int_equal(got[k], k + 1);
}

/* What a fresh storage over the directory loads (with the POSIX disk): the
 * numbers in its log after its snapshot, and whether load complained. */
struct reloaded {
    int rc;
    uint64_t term;
    uint64_t snapshot_index;
    size_t n_numbers;
    uint64_t numbers[256];
    int warnings;
};

static void reload_log_line(void *ctx, enum raft_log_level level, const char *msg)
{
    struct reloaded *r = ctx;
    if (level <= RAFT_LOG_WARN) {
        r->warnings++;
        fprintf(stderr, "reload: %s\n", msg);
    }
}

static void reload(struct node *t, struct reloaded *r)
{
    memset(r, 0, sizeof(*r));
    struct file_storage *fs;
    assert_int_equal(file_storage_open(&fs, t->dir, reload_log_line, r), 0);
    struct raft_storage st = file_storage_ops(fs);
    struct raft_persisted p;
    r->rc = st.load(st.ctx, &p);
    if (r->rc == 0) {
        r->term = p.term;
        r->snapshot_index = p.snapshot_index;
        for (size_t i = 0; i < p.n_entries && r->n_numbers < 256; i++)
            if (p.entries[i].type == RAFT_ENTRY_COMMAND && p.entries[i].len == 8)
                r->numbers[r->n_numbers++] = get_be64(p.entries[i].data);
        raft_persisted_free(&p);
    }
    file_storage_close(fs);
}

static bool file_exists(struct node *t, const char *name)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", t->dir, name);
    struct stat st;
    return stat(path, &st) == 0;
}

static void print_errors(struct node *t)
{
    pthread_mutex_lock(&t->log.mu);
    for (char *line = t->log.text; line && *line;) {
        char *end = strchr(line, '\n');
        int len = (int)(end ? end - line : (long)strlen(line));
        if (line[0] == 'E')
            printf("    %.*s\n", len - 2, line + 2);
        line = end ? end + 1 : line + strlen(line);
    }
    pthread_mutex_unlock(&t->log.mu);
}

/* After the fault: the node no longer leads, refuses proposals and reads,
 * stays quiet (no campaigns, no retries) for several election timeouts,
 * and said so in one line. */
static void expect_stepped_down(struct world *w, unsigned i, const char *what)
{
    struct node *t = &w->nodes[i];
    uint64_t deadline = now_ms() + 3000;
    while (status_of(w, i).role == RAFT_LEADER && now_ms() < deadline)
        sleep_ms(5);
    struct raft_status st = status_of(w, i);
    assert_int_not_equal(st.role, RAFT_LEADER);
    uint8_t cmd[8] = {0};
    uint64_t index, term;
    int32_t hint;
    assert_int_equal(raft_propose(t->raft, cmd, sizeof(cmd), &index, &term, &hint), -EPERM);
    assert_int_equal(raft_read_barrier(t->raft, 500, &hint), -EPERM);
    sleep_ms(1000); /* more than three election timeouts */
    struct raft_status later = status_of(w, i);
    assert_int_not_equal(later.role, RAFT_LEADER);
    assert_int_equal(later.term, st.term);
    int lines = count_log(t, RAFT_LOG_ERROR, "raft", "");
    int saying = count_log(t, RAFT_LOG_ERROR, "raft", what);
    if (lines != 1 || saying != 1)
        print_log(t);
    assert_int_equal(lines, 1);
    assert_int_equal(saying, 1);
}

/* ---- single node: the log's disk fills up, or its fsync fails ---- */

static void log_fault_single_node(void **state, enum fault_op op, int err)
{
    struct world *w = world_new(1, 0);
    *state = w;
    struct node *t = &w->nodes[0];
    node_up(w, 0, true);
    assert_int_equal(wait_leader(w, 0, 3000), 0);
    for (uint64_t x = 1; x <= 20; x++)
        assert_int_equal(put_number(w, 0, x, 2000), 0);

    faulty_arm(&t->fio, op, err, "log-", 0);
    uint64_t t0 = now_ms();
    int rc = put_number(w, 0, 21, 1500);
    assert_true(faulty_struck(&t->fio));
    assert_int_not_equal(rc, 0); /* never acknowledged */
    printf("the put waiting on the failed write returned %s after %llu ms\n", strerror(-rc),
           (unsigned long long)(now_ms() - t0));
    expect_stepped_down(w, 0, "appending to the log failed on disk");
    print_errors(t);
    assert_int_equal(count_log(t, RAFT_LOG_ERROR, "raft", strerror(-err)), 1);
    /* The storage's own line names the file. */
    assert_true(count_log(t, RAFT_LOG_ERROR, "storage", "log-0000000000000001") >= 1);
    /* No write was retried, nor the failed fsync. */
    assert_int_equal(t->fio.writes_after, 0);
    if (op == FAULT_FDATASYNC)
        assert_true(t->fio.syncs_after <= 1); /* at most undoing the append */
    expect_numbers(w, 0, 20, 0);

    /* The files are clean: a fresh load finds no torn write, and the
     * twenty acknowledged numbers (21 only if its write had reached the
     * file whole). */
    node_down(w, 0);
    struct reloaded r;
    reload(t, &r);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.warnings, 0);
    assert_true(r.n_numbers == 20 || r.n_numbers == 21);
    for (size_t k = 0; k < r.n_numbers; k++)
        assert_int_equal(r.numbers[k], k + 1);

    /* Restarted on a working disk, it leads again with all of them. */
    node_up(w, 0, false);
    assert_int_equal(wait_leader(w, 0, 3000), 0);
    assert_int_equal(put_number(w, 0, r.n_numbers + 1, 2000), 0);
    expect_numbers(w, 0, r.n_numbers + 1, 0);
}

static void test_enospc_on_log_write(void **state)
{
    log_fault_single_node(state, FAULT_PWRITE, -ENOSPC);
}

static void test_eio_on_log_fsync(void **state)
{
    log_fault_single_node(state, FAULT_FDATASYNC, -EIO);
}

/* ---- single node: a put answered by a callback (raft_propose_async) ---- */

struct async_put {
    struct raft_async a; /* first */
    pthread_mutex_t mu;
    bool called;
    int calls;
    int rc;
};

static void async_put_done(struct raft_async *a, int rc)
{
    struct async_put *p = (struct async_put *)a;
    pthread_mutex_lock(&p->mu);
    p->calls++;
    p->rc = rc;
    p->called = true;
    pthread_mutex_unlock(&p->mu);
}

/* Proposes number x with a callback; returns the callback's rc, or 1 if
 * it was not called within timeout_ms (and -EPERM if refused). */
static int async_put_number(struct world *w, unsigned i, uint64_t x, unsigned timeout_ms)
{
    struct async_put p = {.a.done = async_put_done};
    pthread_mutex_init(&p.mu, NULL);
    uint8_t cmd[8];
    put_be64(cmd, x);
    int32_t hint;
    int rc = raft_propose_async(w->nodes[i].raft, cmd, sizeof(cmd), &p.a, &hint);
    if (rc == 0) {
        uint64_t deadline = now_ms() + timeout_ms;
        pthread_mutex_lock(&p.mu);
        while (!p.called && now_ms() < deadline) {
            pthread_mutex_unlock(&p.mu);
            sleep_ms(2);
            pthread_mutex_lock(&p.mu);
        }
        rc = p.called ? p.rc : 1;
        assert_true(p.calls <= 1);
        pthread_mutex_unlock(&p.mu);
        if (!p.called)
            fail_msg("no callback for number %llu within %u ms", (unsigned long long)x,
                     timeout_ms);
    }
    pthread_mutex_destroy(&p.mu);
    return rc;
}

/* The callback says 0 once the entry is applied, and -EIO when the write
 * of the entry fails (the node stops leading with it unacknowledged). */
static void test_async_put_called_back_once_applied_or_failed(void **state)
{
    struct world *w = world_new(1, 0);
    *state = w;
    struct node *t = &w->nodes[0];
    node_up(w, 0, true);
    assert_int_equal(wait_leader(w, 0, 3000), 0);
    for (uint64_t x = 1; x <= 5; x++)
        assert_int_equal(async_put_number(w, 0, x, 2000), 0);
    expect_numbers(w, 0, 5, 0);
    faulty_arm(&t->fio, FAULT_FDATASYNC, -EIO, "log-", 0);
    assert_int_equal(async_put_number(w, 0, 6, 2000), -EIO);
    assert_true(faulty_struck(&t->fio));
    assert_int_equal(async_put_number(w, 0, 7, 2000), -EPERM); /* no longer leads */
    expect_numbers(w, 0, 5, 0);
}

/* ---- single node: the disk is full before the first election ---- */

static void test_enospc_on_term_and_vote(void **state)
{
    struct world *w = world_new(1, 0);
    *state = w;
    struct node *t = &w->nodes[0];
    faulty_arm(&t->fio, FAULT_PWRITE, -ENOSPC, "meta", 0);
    node_up(w, 0, true);
    uint64_t deadline = now_ms() + 3000;
    while (!faulty_struck(&t->fio) && now_ms() < deadline)
        sleep_ms(5);
    assert_true(faulty_struck(&t->fio));
    /* It never became leader: its term could not be stored. */
    expect_stepped_down(w, 0, "saving term and vote failed on disk");
    print_errors(t);
    assert_int_equal(status_of(w, 0).term, 0);
    node_down(w, 0);
    assert_false(file_exists(t, "meta.tmp"));
    struct reloaded r;
    reload(t, &r);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.warnings, 0);
    assert_int_equal(r.term, 0);
    node_up(w, 0, false);
    assert_int_equal(wait_leader(w, 0, 3000), 0);
    assert_int_equal(put_number(w, 0, 1, 2000), 0);
}

/* ---- single node: a snapshot cannot be written ---- */

static void test_enospc_on_snapshot(void **state)
{
    struct world *w = world_new(1, 10);
    *state = w;
    struct node *t = &w->nodes[0];
    faulty_arm(&t->fio, FAULT_PWRITE, -ENOSPC, "snapshot", 0);
    node_up(w, 0, true);
    assert_int_equal(wait_leader(w, 0, 3000), 0);
    uint64_t acked = 0;
    for (uint64_t x = 1; x <= 30; x++) {
        if (put_number(w, 0, x, 1500) != 0)
            break;
        acked = x;
    }
    /* The snapshot is due once ten entries (the no-op and nine numbers)
     * are applied; every number up to then was acknowledged. */
    assert_true(acked >= 9 && acked < 30);
    assert_true(faulty_struck(&t->fio));
    /* The node says once that it stopped; which of its writes reported the
     * full disk first depends on timing (the snapshot, or an append that
     * found the storage already failed). */
    expect_stepped_down(w, 0, "failed on disk");
    print_errors(t);
    assert_true(count_log(t, RAFT_LOG_ERROR, "storage", "snapshot.tmp") >= 1);
    assert_true(count_log(t, RAFT_LOG_ERROR, "storage", strerror(ENOSPC)) >= 1);
    node_down(w, 0);
    assert_false(file_exists(t, "snapshot"));
    assert_false(file_exists(t, "snapshot.tmp"));
    struct reloaded r;
    reload(t, &r);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.warnings, 0);
    assert_int_equal(r.snapshot_index, 0);
    assert_true(r.n_numbers >= acked && r.n_numbers <= acked + 1);
    for (size_t k = 0; k < r.n_numbers; k++)
        assert_int_equal(r.numbers[k], k + 1);
    /* On a working disk it takes the snapshot it could not take before. */
    node_up(w, 0, false);
    assert_int_equal(wait_leader(w, 0, 3000), 0);
    expect_numbers(w, 0, r.n_numbers, 0);
    assert_int_equal(put_number(w, 0, r.n_numbers + 1, 2000), 0);
    uint64_t deadline = now_ms() + 3000;
    while (!file_exists(t, "snapshot") && now_ms() < deadline)
        sleep_ms(10);
    assert_true(file_exists(t, "snapshot"));
}

/* The snapshot fails while an entry committed during it waits to be
 * applied: the applier must not spin with the node's lock held (the node
 * would hang, and could not even be stopped). */
static void test_snapshot_fails_with_entries_waiting(void **state)
{
    struct world *w = world_new(1, 10);
    *state = w;
    struct node *t = &w->nodes[0];
    t->fsm.snapshot_delay_ms = 300;
    faulty_arm(&t->fio, FAULT_PWRITE, -ENOSPC, "snapshot", 0);
    node_up(w, 0, true);
    assert_int_equal(wait_leader(w, 0, 3000), 0);
    for (uint64_t x = 1; x <= 9; x++)
        assert_int_equal(put_number(w, 0, x, 2000), 0);
    /* Ten entries applied: the (slow) snapshot is under way. Number 10
     * commits meanwhile; then the snapshot's write fails. */
    int rc = put_number(w, 0, 10, 1500);
    assert_true(faulty_struck(&t->fio));
    assert_int_not_equal(rc, 0);
    expect_stepped_down(w, 0, "failed on disk");
    struct raft_status st = status_of(w, 0);
    assert_true(st.applied == 10 && st.commit <= 11); /* it stopped applying */
    node_down(w, 0); /* and it stops */
    struct reloaded r;
    reload(t, &r);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.warnings, 0);
    assert_true(r.n_numbers == 9 || r.n_numbers == 10);
    assert_true(r.n_numbers >= st.commit - 1); /* every committed number is there */
}

/* ---- three nodes: the leader's disk fills up ---- */

static void test_leader_disk_full_in_cluster(void **state)
{
    struct world *w = world_new(3, 0);
    *state = w;
    for (unsigned i = 0; i < 3; i++)
        node_up(w, i, true);
    int leader = wait_leader(w, 0, 5000);
    assert_true(leader >= 0);
    for (uint64_t x = 1; x <= 20; x++)
        assert_int_equal(put_number(w, (unsigned)leader, x, 2000), 0);

    struct node *t = &w->nodes[leader];
    faulty_arm(&t->fio, FAULT_PWRITE, -ENOSPC, "log-", 0);
    /* Its followers may store 21 before its own write fails: then it is
     * committed (thesis §10.2.1) and may be acknowledged; either way no
     * acknowledged number is lost. */
    uint64_t acked = put_number(w, (unsigned)leader, 21, 1500) == 0 ? 21 : 20;
    printf("number 21 was %s\n", acked == 21 ? "acknowledged (its followers stored it)"
                                             : "not acknowledged");
    uint64_t deadline = now_ms() + 3000; /* its own write may come later */
    while (!faulty_struck(&t->fio) && now_ms() < deadline)
        sleep_ms(5);
    assert_true(faulty_struck(&t->fio));
    expect_stepped_down(w, (unsigned)leader, "appending to the log failed on disk");
    print_errors(t);

    /* The other two carry on under a new leader, with every number. */
    int next = wait_leader(w, 1u << leader, 5000);
    assert_true(next >= 0 && next != leader);
    assert_int_equal(put_number(w, (unsigned)next, 22, 2000), 0);
    uint64_t got[64];
    size_t n = numbers_copy(&w->nodes[next].fsm, got, 64);
    for (size_t k = 0; k < 20; k++)
        assert_int_equal(got[k], k + 1);
    /* 1..20, then 21 if it was committed after all, then 22. */
    assert_true(n == 21 || (n == 22 && got[20] == 21));
    assert_true(acked == 20 || n == 22);
    assert_int_equal(got[n - 1], 22);

    /* Restarted on a working disk, the old leader catches up. */
    node_down(w, (unsigned)leader);
    struct reloaded r;
    reload(t, &r);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.warnings, 0);
    node_up(w, (unsigned)leader, false);
    size_t caught = wait_numbers(w, (unsigned)leader, n, 5000);
    assert_int_equal(caught, n);
    uint64_t again[64];
    assert_int_equal(numbers_copy(&w->nodes[leader].fsm, again, 64), n);
    assert_memory_equal(again, got, n * sizeof(uint64_t));
}

int main(void)
{
    /* A node that hangs must fail the suite, not stall it. */
    alarm(120);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_enospc_on_log_write, teardown),
        cmocka_unit_test_teardown(test_eio_on_log_fsync, teardown),
        cmocka_unit_test_teardown(test_async_put_called_back_once_applied_or_failed, teardown),
        cmocka_unit_test_teardown(test_enospc_on_term_and_vote, teardown),
        cmocka_unit_test_teardown(test_enospc_on_snapshot, teardown),
        cmocka_unit_test_teardown(test_snapshot_fails_with_entries_waiting, teardown),
        cmocka_unit_test_teardown(test_leader_disk_full_in_cluster, teardown),
    };
    return cmocka_run_group_tests_name("unit: a failing disk (ENOSPC, EIO) at node level",
                                       tests, NULL, NULL);
}
