/*
 * memstore.c - in-memory storage that survives a simulated crash (see
 * memstore.h). One mutex per store; each function does its whole effect
 * under it, so a crash (which takes the same mutex) sees a write either
 * completely done or not begun.
 */
#include "tests/support/memstore.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct stored_entry {
    uint64_t term;
    uint8_t type;
    uint32_t len;
    uint8_t *data;
    uint64_t hash;
};

struct handle {
    struct memstore *s;
    unsigned incarnation;
    struct handle *next;
};

struct memstore {
    unsigned id;
    memstore_violation_fn violation;
    void *violation_ctx;
    pthread_mutex_t mu;

    /* mu guards everything below */
    unsigned incarnation; /* handles of older incarnations are dead */
    struct handle *handles;
    uint64_t term;
    int32_t voted_for;
    uint64_t snapshot_index, snapshot_term;
    uint8_t *snapshot;
    size_t snapshot_len;
    struct stored_entry *entries; /* entries[0] has index snapshot_index + 1 */
    size_t n, cap;
    size_t log_bytes;
    unsigned write_delay_ms; /* a slow disk */
    struct memstore_counts counts;
    /* A truncate of the whole log deleted committed entries
     * discard_lo..discard_hi (0: none): allowed only if the next write is a
     * snapshot that covers them (Figure 13 rule 7). */
    uint64_t discard_from, discard_last, discard_lo, discard_lo_term, discard_hi;

    struct memstore_committed committed; /* set before the first handle */
};

uint64_t memstore_hash(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static size_t entry_bytes(uint32_t len)
{
    return 8 + 1 + 4 + len; /* term, type, length, data */
}

static void report_locked(struct memstore *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void report_locked(struct memstore *s, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (s->violation)
        s->violation(s->violation_ctx, s->id, msg);
}

static uint64_t last_index_locked(const struct memstore *s)
{
    return s->snapshot_index + s->n;
}

/* The harness's committed entries: its lock is taken before the store's. */
static void committed_lock(struct memstore *s)
{
    if (s->committed.lock)
        s->committed.lock(s->committed.ctx);
}

static void committed_unlock(struct memstore *s)
{
    if (s->committed.unlock)
        s->committed.unlock(s->committed.ctx);
}

/* With both locks held: the term of the entry committed at index, 0 if
 * none is known. */
static uint64_t committed_term_locked(struct memstore *s, uint64_t index)
{
    return s->committed.term_at ? s->committed.term_at(s->committed.ctx, index) : 0;
}

/* Locks the store for handle h (after the committed entries' lock when
 * `committed`); false, with nothing locked, if h is dead. */
static bool lock_live(struct handle *h, bool committed)
{
    if (committed)
        committed_lock(h->s);
    pthread_mutex_lock(&h->s->mu);
    if (h->incarnation == h->s->incarnation)
        return true;
    pthread_mutex_unlock(&h->s->mu);
    if (committed)
        committed_unlock(h->s);
    return false;
}

static void unlock_live(struct memstore *s, bool committed)
{
    pthread_mutex_unlock(&s->mu);
    if (committed)
        committed_unlock(s);
}

/* lock_live for a write. A slow disk makes the caller wait first: the write
 * lands at the end of the wait, or not at all if the power goes meanwhile. */
static bool begin_write(struct handle *h, bool committed)
{
    pthread_mutex_lock(&h->s->mu);
    unsigned delay = h->s->write_delay_ms;
    pthread_mutex_unlock(&h->s->mu);
    if (delay) {
        struct timespec ts = {.tv_sec = delay / 1000, .tv_nsec = (long)(delay % 1000) * 1000000};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
    }
    return lock_live(h, committed);
}

/* Before every write: a whole-log truncate that deleted committed entries
 * must be followed by a snapshot covering them (snapshot_index; 0 when this
 * write is not a snapshot). `what` names this write. */
static void settle_discard_locked(struct memstore *s, const char *what, uint64_t snapshot_index)
{
    if (!s->discard_hi)
        return;
    if (snapshot_index < s->discard_hi)
        report_locked(s, "storage: truncate from %llu (the whole log, up to %llu) deleted the "
                      "committed entry %llu@T%llu, and the next write was %s, not a snapshot "
                      "covering up to %llu: a follower deletes only entries that conflict with "
                      "the leader's, and a committed entry conflicts with none (Figure 2, "
                      "AppendEntries rule 3)", (unsigned long long)s->discard_from,
                      (unsigned long long)s->discard_last, (unsigned long long)s->discard_lo,
                      (unsigned long long)s->discard_lo_term, what,
                      (unsigned long long)s->discard_hi);
    s->discard_hi = 0;
}

/* truncate(from) is about to drop from..last: no committed entry may be
 * among them, except when the whole log goes (see settle_discard_locked). */
static void check_truncate_locked(struct memstore *s, uint64_t from, uint64_t last)
{
    uint64_t lo = 0, lo_term = 0, hi = 0, count = 0;
    for (uint64_t i = from; i <= last; i++) {
        uint64_t term = s->entries[i - s->snapshot_index - 1].term;
        if (committed_term_locked(s, i) != term)
            continue;
        if (!lo) {
            lo = i;
            lo_term = term;
        }
        hi = i;
        count++;
    }
    if (!count)
        return;
    if (from == s->snapshot_index + 1) {
        s->discard_from = from;
        s->discard_last = last;
        s->discard_lo = lo;
        s->discard_lo_term = lo_term;
        s->discard_hi = hi;
        return;
    }
    report_locked(s, "storage: truncate from %llu deletes the committed entry %llu@T%llu "
                  "(%llu committed entries among %llu..%llu): a follower deletes only entries "
                  "that conflict with the leader's, and a committed entry conflicts with none "
                  "(Figure 2, AppendEntries rule 3)", (unsigned long long)from,
                  (unsigned long long)lo, (unsigned long long)lo_term,
                  (unsigned long long)count, (unsigned long long)from,
                  (unsigned long long)last);
}

/* A snapshot's last included term is the term of the committed entry at
 * its index. `how`: "saves" or "loads". */
static void check_snapshot_term_locked(struct memstore *s, const char *how, uint64_t index,
                                       uint64_t term)
{
    uint64_t want = index ? committed_term_locked(s, index) : 0;
    if (want && want != term)
        report_locked(s, "storage: %s a snapshot at %llu with last included term T%llu, but the "
                      "committed entry at %llu is of T%llu", how, (unsigned long long)index,
                      (unsigned long long)term, (unsigned long long)index,
                      (unsigned long long)want);
}

static void drop_entries_locked(struct memstore *s, size_t from_pos)
{
    for (size_t i = from_pos; i < s->n; i++) {
        s->log_bytes -= entry_bytes(s->entries[i].len);
        free(s->entries[i].data);
    }
    s->n = from_pos;
}

/* ---- the storage table ---- */

static int ms_load(void *ctx, struct raft_persisted *out)
{
    struct handle *h = ctx;
    struct memstore *s = h->s;
    memset(out, 0, sizeof(*out));
    if (!lock_live(h, true))
        return -EIO;
    check_snapshot_term_locked(s, "loads", s->snapshot_index, s->snapshot_term);
    out->term = s->term;
    out->voted_for = s->voted_for;
    out->snapshot_index = s->snapshot_index;
    out->snapshot_term = s->snapshot_term;
    if (s->snapshot_len) {
        out->snapshot = malloc(s->snapshot_len);
        if (!out->snapshot)
            abort();
        memcpy(out->snapshot, s->snapshot, s->snapshot_len);
        out->snapshot_len = s->snapshot_len;
    }
    if (s->n) {
        out->entries = calloc(s->n, sizeof(*out->entries));
        if (!out->entries)
            abort();
        for (size_t i = 0; i < s->n; i++) {
            const struct stored_entry *e = &s->entries[i];
            out->entries[i].term = e->term;
            out->entries[i].type = e->type;
            out->entries[i].len = e->len;
            if (e->len) {
                out->entries[i].data = malloc(e->len);
                if (!out->entries[i].data)
                    abort();
                memcpy(out->entries[i].data, e->data, e->len);
            }
        }
        out->n_entries = s->n;
    }
    unlock_live(s, true);
    return 0;
}

static int ms_save_term_vote(void *ctx, uint64_t term, int32_t voted_for)
{
    struct handle *h = ctx;
    struct memstore *s = h->s;
    if (!begin_write(h, false))
        return -EIO;
    settle_discard_locked(s, "a term and vote", 0);
    char now[16];
    if (voted_for == RAFT_NO_NODE)
        snprintf(now, sizeof(now), "nobody");
    else
        snprintf(now, sizeof(now), "n%d", voted_for);
    if (term < s->term)
        report_locked(s, "storage: term goes back from T%llu to T%llu",
                      (unsigned long long)s->term, (unsigned long long)term);
    else if (term == s->term && s->voted_for != RAFT_NO_NODE && voted_for != s->voted_for)
        report_locked(s, "storage: second vote in T%llu: voted for n%d, now for %s",
                      (unsigned long long)term, s->voted_for, now);
    s->term = term;
    s->voted_for = voted_for;
    s->counts.term_votes++;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

static int ms_append(void *ctx, uint64_t first_index, const struct raft_entry *entries, size_t n)
{
    struct handle *h = ctx;
    struct memstore *s = h->s;
    if (!begin_write(h, false))
        return -EIO;
    char what[48];
    snprintf(what, sizeof(what), "an append at %llu", (unsigned long long)first_index);
    settle_discard_locked(s, what, 0);
    if (first_index != last_index_locked(s) + 1) {
        report_locked(s, "storage: append at %llu but the stored log ends at %llu "
                      "(contract: first_index = stored last index + 1)",
                      (unsigned long long)first_index,
                      (unsigned long long)last_index_locked(s));
        pthread_mutex_unlock(&s->mu);
        return -EIO;
    }
    if (s->n + n > s->cap) {
        size_t cap = s->cap ? s->cap : 64;
        while (cap < s->n + n)
            cap *= 2;
        struct stored_entry *e = realloc(s->entries, cap * sizeof(*e));
        if (!e)
            abort();
        s->entries = e;
        s->cap = cap;
    }
    for (size_t i = 0; i < n; i++) {
        struct stored_entry *e = &s->entries[s->n + i];
        e->term = entries[i].term;
        e->type = entries[i].type;
        e->len = entries[i].len;
        e->data = NULL;
        if (e->len) {
            e->data = malloc(e->len);
            if (!e->data)
                abort();
            memcpy(e->data, entries[i].data, e->len);
        }
        e->hash = memstore_hash(e->data, e->len);
        s->log_bytes += entry_bytes(e->len);
    }
    s->n += n;
    s->counts.appends++;
    s->counts.entries_appended += n;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

static int ms_truncate(void *ctx, uint64_t from_index)
{
    struct handle *h = ctx;
    struct memstore *s = h->s;
    if (!begin_write(h, true))
        return -EIO;
    char what[48];
    snprintf(what, sizeof(what), "a truncate from %llu", (unsigned long long)from_index);
    settle_discard_locked(s, what, 0);
    if (from_index <= s->snapshot_index) {
        report_locked(s, "storage: truncate from %llu reaches into the snapshot (up to %llu)",
                      (unsigned long long)from_index, (unsigned long long)s->snapshot_index);
        unlock_live(s, true);
        return -EIO;
    }
    if (from_index <= last_index_locked(s)) {
        check_truncate_locked(s, from_index, last_index_locked(s));
        drop_entries_locked(s, (size_t)(from_index - s->snapshot_index - 1));
    }
    s->counts.truncates++;
    unlock_live(s, true);
    return 0;
}

static int ms_save_snapshot(void *ctx, uint64_t index, uint64_t term,
                            const uint8_t *data, size_t len)
{
    struct handle *h = ctx;
    struct memstore *s = h->s;
    if (!begin_write(h, true))
        return -EIO;
    char what[48];
    snprintf(what, sizeof(what), "a snapshot at %llu", (unsigned long long)index);
    settle_discard_locked(s, what, index);
    if (index < s->snapshot_index) {
        report_locked(s, "storage: snapshot at %llu replaces a newer one at %llu",
                      (unsigned long long)index, (unsigned long long)s->snapshot_index);
        unlock_live(s, true);
        return -EIO;
    }
    check_snapshot_term_locked(s, "saves", index, term);
    uint8_t *copy = NULL;
    if (len) {
        copy = malloc(len);
        if (!copy)
            abort();
        memcpy(copy, data, len);
    }
    free(s->snapshot);
    s->snapshot = copy;
    s->snapshot_len = len;
    /* Drop the entries the snapshot covers; keep the ones after it. */
    size_t drop = index - s->snapshot_index;
    if (drop >= s->n) {
        drop_entries_locked(s, 0);
    } else {
        for (size_t i = 0; i < drop; i++) {
            s->log_bytes -= entry_bytes(s->entries[i].len);
            free(s->entries[i].data);
        }
        memmove(s->entries, s->entries + drop, (s->n - drop) * sizeof(*s->entries));
        s->n -= drop;
    }
    s->snapshot_index = index;
    s->snapshot_term = term;
    s->counts.snapshots++;
    unlock_live(s, true);
    return 0;
}

/* ---- the harness's side ---- */

struct memstore *memstore_new(unsigned id, memstore_violation_fn violation, void *ctx)
{
    struct memstore *s = calloc(1, sizeof(*s));
    if (!s)
        abort();
    s->id = id;
    s->violation = violation;
    s->violation_ctx = ctx;
    s->voted_for = RAFT_NO_NODE;
    pthread_mutex_init(&s->mu, NULL);
    return s;
}

void memstore_free(struct memstore *s)
{
    if (!s)
        return;
    drop_entries_locked(s, 0);
    free(s->entries);
    free(s->snapshot);
    while (s->handles) {
        struct handle *h = s->handles;
        s->handles = h->next;
        free(h);
    }
    pthread_mutex_destroy(&s->mu);
    free(s);
}

struct raft_storage memstore_storage(struct memstore *s)
{
    struct handle *h = calloc(1, sizeof(*h));
    if (!h)
        abort();
    pthread_mutex_lock(&s->mu);
    h->s = s;
    h->incarnation = s->incarnation;
    h->next = s->handles;
    s->handles = h;
    pthread_mutex_unlock(&s->mu);
    struct raft_storage st = {
        .ctx = h,
        .load = ms_load,
        .save_term_vote = ms_save_term_vote,
        .append = ms_append,
        .truncate = ms_truncate,
        .save_snapshot = ms_save_snapshot,
    };
    return st;
}

void memstore_crash(struct memstore *s)
{
    pthread_mutex_lock(&s->mu);
    s->incarnation++;
    /* A crash between a whole-log discard and the snapshot that follows it
     * leaves a shorter log, which is allowed (memstore.h). */
    s->discard_hi = 0;
    pthread_mutex_unlock(&s->mu);
}

void memstore_set_committed(struct memstore *s, const struct memstore_committed *committed)
{
    pthread_mutex_lock(&s->mu);
    s->committed = *committed;
    pthread_mutex_unlock(&s->mu);
}

void memstore_view(struct memstore *s, struct memstore_view *v)
{
    memset(v, 0, sizeof(*v));
    pthread_mutex_lock(&s->mu);
    v->term = s->term;
    v->voted_for = s->voted_for;
    v->snapshot_index = s->snapshot_index;
    v->snapshot_term = s->snapshot_term;
    v->snapshot_len = s->snapshot_len;
    v->first_index = s->snapshot_index + 1;
    v->n_entries = s->n;
    if (s->n) {
        v->entries = malloc(s->n * sizeof(*v->entries));
        if (!v->entries)
            abort();
        for (size_t i = 0; i < s->n; i++) {
            v->entries[i].term = s->entries[i].term;
            v->entries[i].type = s->entries[i].type;
            v->entries[i].len = s->entries[i].len;
            v->entries[i].hash = s->entries[i].hash;
        }
    }
    pthread_mutex_unlock(&s->mu);
}

void memstore_view_free(struct memstore_view *v)
{
    free(v->entries);
    memset(v, 0, sizeof(*v));
}

void memstore_set_write_delay(struct memstore *s, unsigned ms)
{
    pthread_mutex_lock(&s->mu);
    s->write_delay_ms = ms;
    pthread_mutex_unlock(&s->mu);
}

void memstore_term_vote(struct memstore *s, uint64_t *term, int32_t *voted_for)
{
    pthread_mutex_lock(&s->mu);
    *term = s->term;
    *voted_for = s->voted_for;
    pthread_mutex_unlock(&s->mu);
}

size_t memstore_raft_state_size(struct memstore *s)
{
    pthread_mutex_lock(&s->mu);
    size_t bytes = 8 + 4 + s->log_bytes; /* term, vote, log */
    pthread_mutex_unlock(&s->mu);
    return bytes;
}

size_t memstore_snapshot_size(struct memstore *s)
{
    pthread_mutex_lock(&s->mu);
    size_t bytes = s->snapshot_len;
    pthread_mutex_unlock(&s->mu);
    return bytes;
}

void memstore_counts(struct memstore *s, struct memstore_counts *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->counts;
    pthread_mutex_unlock(&s->mu);
}
