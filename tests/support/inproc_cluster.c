/*
 * inproc_cluster.c - Raft nodes in one process over failing disks (see
 * inproc_cluster.h).
 */
#include "tests/support/inproc_cluster.h"

#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "tests/support/clock.h"
#include "tests/support/eager_snapshot.h"

/* ---- the state machine: a list of 8-byte numbers ---- */


static void numbers_push_locked(struct inproc_numbers *s, uint64_t x)
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

static int numbers_apply(void *ctx, uint64_t index, const struct raft_entry *e)
{
    struct inproc_numbers *s = ctx;
    pthread_mutex_lock(&s->mu);
    bool fail = s->fail_apply_at != 0 && index >= s->fail_apply_at;
    if (!fail && e->type == RAFT_ENTRY_COMMAND && e->len == 8)
        numbers_push_locked(s, get_be64(e->data));
    if (!fail)
        s->applied = index;
    pthread_mutex_unlock(&s->mu);
    return fail ? -ENOMEM : 0;
}

static int numbers_snapshot(void *ctx, uint8_t **data, size_t *len)
{
    struct inproc_numbers *s = ctx;
    pthread_mutex_lock(&s->mu);
    unsigned delay = s->snapshot_delay_ms;
    pthread_mutex_unlock(&s->mu);
    test_sleep_ms(delay);
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

static int numbers_capture(void *ctx, void **view)
{
    return eager_snapshot_capture(numbers_snapshot, ctx, view);
}

static int numbers_restore(void *ctx, uint64_t index, uint64_t total,
                           int (*read)(void *src, uint8_t *buf, size_t n), void *src)
{
    struct inproc_numbers *s = ctx;
    uint8_t *data;
    size_t len = (size_t)total;
    int rc = eager_restore_read_all(total, read, src, &data);
    if (rc)
        return rc;
    if (len < 8 || len != 8 * (get_be64(data) + 1)) {
        free(data);
        return -EINVAL;
    }
    pthread_mutex_lock(&s->mu);
    s->n = 0;
    for (size_t i = 1; i < len / 8; i++)
        numbers_push_locked(s, get_be64(data + 8 * i));
    s->applied = index;
    pthread_mutex_unlock(&s->mu);
    free(data);
    return 0;
}

/* A copy of the numbers applied so far. */
size_t inproc_numbers_copy(struct inproc_numbers *s, uint64_t *out, size_t max)
{
    pthread_mutex_lock(&s->mu);
    size_t n = s->n < max ? s->n : max;
    memcpy(out, s->v, n * sizeof(*out));
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* ---- nodes and the cluster they live in ---- */




static void log_add(struct inproc_log *l, enum raft_log_level level, const char *who,
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
    struct inproc_node *t = ctx;
    log_add(&t->log, level, "raft", line);
}

static void storage_log_line(void *ctx, enum raft_log_level level, const char *msg)
{
    struct inproc_node *t = ctx;
    log_add(&t->log, level, "storage", msg);
}

/* Lines of the node's log at `level` from `who` ("raft" or "storage")
 * that contain `needle` ("" for all). */
int inproc_count_log(struct inproc_node *t, enum raft_log_level level, const char *who,
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

static void print_log(struct inproc_node *t)
{
    pthread_mutex_lock(&t->log.mu);
    fprintf(stderr, "--- n%u's log:\n%s", t->id, t->log.text ? t->log.text : "");
    pthread_mutex_unlock(&t->log.mu);
}

static int cluster_call(void *ctx, uint32_t peer, const struct raft_msg *req,
                      struct raft_msg *reply, unsigned timeout_ms)
{
    (void)timeout_ms;
    struct inproc_cluster *w = ctx;
    if (peer >= w->n)
        return -EINVAL;
    struct inproc_node *t = &w->nodes[peer];
    pthread_mutex_lock(&t->gate_mu);
    if (!t->up) {
        pthread_mutex_unlock(&t->gate_mu);
        test_sleep_ms(5); /* a refused connection is not instant either */
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

struct inproc_cluster *inproc_cluster_new(unsigned n, uint64_t snapshot_every)
{
    struct inproc_cluster *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    w->n = n;
    w->snapshot_every = snapshot_every;
    snprintf(w->root, sizeof(w->root), "/tmp/raft-diskfail-XXXXXX");
    assert_non_null(mkdtemp(w->root));
    for (unsigned i = 0; i < n; i++) {
        struct inproc_node *t = &w->nodes[i];
        t->world = w;
        t->id = i;
        snprintf(t->dir, sizeof(t->dir), "%s/node-%u", w->root, i);
        failing_disk_init(&t->disk, &t->io);
        pthread_mutex_init(&t->fsm.mu, NULL);
        pthread_mutex_init(&t->log.mu, NULL);
        pthread_mutex_init(&t->gate_mu, NULL);
        pthread_cond_init(&t->gate_cond, NULL);
    }
    return w;
}

/* Starts node i over its directory; faulty: through its failing disk,
 * else straight to POSIX (the disk has been fixed). */
void inproc_node_up(struct inproc_cluster *w, unsigned i, bool faulty)
{
    struct inproc_node *t = &w->nodes[i];
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
    if (cfg.snapshot_every == 0)
        cfg.snapshot_log_min_bytes = 0; /* never */
    cfg.log_level = RAFT_LOG_INFO;
    cfg.log_line = node_log_line;
    cfg.log_ctx = t;
    struct raft_transport transport = {.ctx = w, .call = cluster_call};
    struct raft_storage storage = file_storage_ops(t->fs);
    struct raft_fsm fsm = {.ctx = &t->fsm, .apply = numbers_apply,
                           .snapshot_capture = numbers_capture,
                           .snapshot_serialize = eager_snapshot_serialize,
                           .restore = numbers_restore};
    int rc = raft_start(&t->raft, &cfg, &transport, &storage, &fsm);
    if (rc)
        print_log(t);
    assert_int_equal(rc, 0);
    pthread_mutex_lock(&t->gate_mu);
    t->up = true;
    pthread_mutex_unlock(&t->gate_mu);
}

void inproc_node_down(struct inproc_cluster *w, unsigned i)
{
    struct inproc_node *t = &w->nodes[i];
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

void inproc_cluster_free(struct inproc_cluster *w)
{
    for (unsigned i = 0; i < w->n; i++)
        if (w->nodes[i].raft)
            raft_begin_stop(w->nodes[i].raft);
    for (unsigned i = 0; i < w->n; i++)
        inproc_node_down(w, i);
    for (unsigned i = 0; i < w->n; i++) {
        struct inproc_node *t = &w->nodes[i];
        failing_disk_free(&t->disk);
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

int inproc_cluster_teardown(void **state)
{
    if (*state)
        inproc_cluster_free(*state);
    *state = NULL;
    return 0;
}

struct raft_status inproc_status(struct inproc_cluster *w, unsigned i)
{
    struct raft_status st;
    raft_get_status(w->nodes[i].raft, &st);
    return st;
}

/* The one node that leads (in the highest term), or -1 after timeout_ms;
 * nodes that are down or listed in `skip` (a bit mask) are not asked. */
int inproc_wait_leader(struct inproc_cluster *w, unsigned skip, unsigned timeout_ms)
{
    uint64_t deadline = test_now_ms() + timeout_ms;
    do {
        int leader = -1;
        uint64_t top = 0;
        for (unsigned i = 0; i < w->n; i++) {
            if (!w->nodes[i].raft || (skip & (1u << i)))
                continue;
            struct raft_status st = inproc_status(w, i);
            if (st.role == RAFT_LEADER && st.term >= top) {
                top = st.term;
                leader = (int)i;
            }
        }
        if (leader >= 0)
            return leader;
        test_sleep_ms(10);
    } while (test_now_ms() < deadline);
    return -1;
}

/* Proposes the number x on node i and waits for it to be applied there:
 * 0 when it was (acknowledged), else why not. */
int inproc_put_number(struct inproc_cluster *w, unsigned i, uint64_t x, unsigned timeout_ms)
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
size_t inproc_wait_numbers(struct inproc_cluster *w, unsigned i, size_t n, unsigned timeout_ms)
{
    uint64_t deadline = test_now_ms() + timeout_ms;
    size_t have;
    for (;;) {
        pthread_mutex_lock(&w->nodes[i].fsm.mu);
        have = w->nodes[i].fsm.n;
        pthread_mutex_unlock(&w->nodes[i].fsm.mu);
        if (have >= n || test_now_ms() > deadline)
            return have;
        test_sleep_ms(10);
    }
}

/* Node i's state machine holds 1, 2, ..., at least `acked` of them, and
 * nothing else but perhaps up to `maybe` more in the same sequence. */
void inproc_expect_numbers(struct inproc_cluster *w, unsigned i, uint64_t acked, uint64_t maybe)
{
    size_t have = inproc_wait_numbers(w, i, acked, 5000);
    uint64_t got[256];
    size_t n = inproc_numbers_copy(&w->nodes[i].fsm, got, 256);
    if (have < acked || n > acked + maybe)
        fprintf(stderr, "n%u applied %zu numbers, want %" PRIu64 " (+ up to %" PRIu64 ")\n", i,
                n, acked, maybe);
    assert_true(n >= acked && n <= acked + maybe);
    for (size_t k = 0; k < n; k++)
        assert_int_equal(got[k], k + 1);
}


static void reload_log_line(void *ctx, enum raft_log_level level, const char *msg)
{
    struct inproc_reloaded *r = ctx;
    if (level <= RAFT_LOG_WARN) {
        r->warnings++;
        fprintf(stderr, "reload: %s\n", msg);
    }
}

void inproc_reload(struct inproc_node *t, struct inproc_reloaded *r)
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

bool inproc_file_exists(struct inproc_node *t, const char *name)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", t->dir, name);
    struct stat st;
    return stat(path, &st) == 0;
}

void inproc_print_errors(struct inproc_node *t)
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
void inproc_expect_stepped_down(struct inproc_cluster *w, unsigned i, const char *what)
{
    struct inproc_node *t = &w->nodes[i];
    uint64_t deadline = test_now_ms() + 3000;
    while (inproc_status(w, i).role == RAFT_LEADER && test_now_ms() < deadline)
        test_sleep_ms(5);
    struct raft_status st = inproc_status(w, i);
    assert_int_not_equal(st.role, RAFT_LEADER);
    uint8_t cmd[8] = {0};
    uint64_t index, term;
    int32_t hint;
    assert_int_equal(raft_propose(t->raft, cmd, sizeof(cmd), &index, &term, &hint), -EPERM);
    assert_int_equal(raft_read_barrier(t->raft, 500, &hint), -EPERM);
    test_sleep_ms(1000); /* more than three election timeouts */
    struct raft_status later = inproc_status(w, i);
    assert_int_not_equal(later.role, RAFT_LEADER);
    assert_int_equal(later.term, st.term);
    int lines = inproc_count_log(t, RAFT_LOG_ERROR, "raft", "");
    int saying = inproc_count_log(t, RAFT_LOG_ERROR, "raft", what);
    if (lines != 1 || saying != 1)
        print_log(t);
    assert_int_equal(lines, 1);
    assert_int_equal(saying, 1);
}


/* ---- a put answered by a callback (raft_propose_async) ---- */

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
int inproc_put_number_async(struct inproc_cluster *w, unsigned i, uint64_t x, unsigned timeout_ms)
{
    struct async_put p = {.a.done = async_put_done};
    pthread_mutex_init(&p.mu, NULL);
    uint8_t cmd[8];
    put_be64(cmd, x);
    int32_t hint;
    int rc = raft_propose_async(w->nodes[i].raft, cmd, sizeof(cmd), &p.a, &hint);
    if (rc == 0) {
        uint64_t deadline = test_now_ms() + timeout_ms;
        pthread_mutex_lock(&p.mu);
        while (!p.called && test_now_ms() < deadline) {
            pthread_mutex_unlock(&p.mu);
            test_sleep_ms(2);
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
