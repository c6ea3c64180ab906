/*
 * checks.c - the harness's state machine and the five Raft safety
 * properties (Figure 3 of the paper), checked while a test runs.
 *
 * The state machine applies nothing: it records what each node applied, so
 * that every apply can be compared with what the other nodes applied at the
 * same index. Its snapshot is the hash chain over the entries it covers
 * (plus optional filler bytes), which lets a restore be checked against
 * the committed entries and lets the in-order check continue from the
 * snapshot's index. With opts.kv it also applies each checked entry to
 * the node's key-value store (kv/kv.h), which a test reads through
 * cluster_kv.
 */
#include "tests/support/cluster_internal.h"
#include "tests/support/eager_snapshot.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kv/kv.h"
#include "raft/membership.h"
#include "raft/node.h" /* the monitor reads a leader's log under its lock */

#define SNAP_MAGIC 0x3150414e5342414cull /* "LABSNAP1" */
#define SNAP_HEADER 32                    /* magic, index, chain, id, pad */
#define MONITOR_PERIOD_MS 5
#define LOG_MATCHING_EVERY 50            /* samples: every 250 ms */
#define REHASH_PER_SAMPLE 16

static uint64_t mix(uint64_t a, uint64_t b)
{
    uint64_t z = a ^ (b + 0x9e3779b97f4a7c15ull + (a << 6) + (a >> 2));
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The fingerprint of an entry: what must agree across nodes at an index. */
static uint64_t entry_fp(uint64_t term, uint8_t type, uint32_t len, uint64_t data_hash)
{
    return mix(mix(mix(term, type), len), data_hash);
}

void checks_describe_cmd(uint8_t type, const uint8_t *data, uint32_t len, char *buf, size_t cap)
{
    struct raft_membership m;
    if (type == RAFT_ENTRY_NOOP) {
        snprintf(buf, cap, "no-op");
    } else if (type == RAFT_ENTRY_CONFIG && raft_membership_decode(&m, data, len) == 0) {
        char who[96];
        membership_describe(&m, who, sizeof(who));
        snprintf(buf, cap, "config %s", who);
    } else if (len == 8) {
        uint64_t x = 0;
        for (int i = 7; i >= 0; i--)
            x = x << 8 | data[i];
        snprintf(buf, cap, "cmd %llu", (unsigned long long)x);
    } else {
        char text[17];
        uint32_t k = len < 16 ? len : 16;
        for (uint32_t i = 0; i < k; i++)
            text[i] = data[i] >= 32 && data[i] < 127 ? (char)data[i] : '.';
        text[k] = '\0';
        snprintf(buf, cap, "cmd \"%s%s\" (%u bytes)", text, len > 16 ? "..." : "", len);
    }
}

static const char *entry_kind(uint8_t type)
{
    return type == RAFT_ENTRY_NOOP ? "no-op" : type == RAFT_ENTRY_CONFIG ? "config" : "cmd";
}

static void describe_applied(const struct applied_entry *a, char *buf, size_t cap)
{
    char cmd[64];
    checks_describe_cmd(a->type, a->data, a->len, cmd, sizeof(cmd));
    snprintf(buf, cap, "%s@T%llu", cmd, (unsigned long long)a->term);
}

static void describe_nodes(uint32_t mask, char *buf, size_t cap)
{
    size_t off = 0;
    buf[0] = '\0';
    for (unsigned i = 0; i < RAFT_MAX_NODES && off < cap; i++)
        if (mask & (1u << i))
            off += (size_t)snprintf(buf + off, cap - off, "%sn%u", off ? " " : "", i);
}

/* ---- the applied-entries table (c->ck held) ---- */

static struct applied_entry *applied_at_locked(struct cluster *c, uint64_t index)
{
    if (index >= c->applied_cap) {
        size_t cap = c->applied_cap ? c->applied_cap : 1024;
        while (cap <= index)
            cap *= 2;
        struct applied_entry *a = realloc(c->applied, cap * sizeof(*a));
        if (!a)
            abort();
        memset(a + c->applied_cap, 0, (cap - c->applied_cap) * sizeof(*a));
        c->applied = a;
        c->applied_cap = cap;
    }
    return &c->applied[index];
}

/* ---- the state machine ---- */

/* State Machine Safety, on every applied entry: the same entry at an index
 * on every node, and each node in order without gaps (the lab's checkLogs
 * and applierSnap). */
static int fsm_apply(void *ctx, uint64_t index, const struct raft_entry *e)
{
    struct lab_fsm *f = ctx;
    struct cluster *c = f->c;
    uint64_t fp = entry_fp(e->term, e->type, e->len, memstore_hash(e->data, e->len));
    char msg[512] = "";
    uint32_t involved = 1u << f->id;

    pthread_mutex_lock(&c->ck);
    if (index != f->applied + 1) {
        snprintf(msg, sizeof(msg), "n%u applied index %llu out of order: its last applied "
                 "index was %llu (expected %llu)", f->id, (unsigned long long)index,
                 (unsigned long long)f->applied, (unsigned long long)f->applied + 1);
    } else {
        struct applied_entry *a = applied_at_locked(c, index);
        if (a->set && a->fp != fp) {
            char mine[96], theirs[96], who[64];
            struct applied_entry tmp = {.type = e->type, .len = e->len, .term = e->term,
                                        .data = e->data};
            describe_applied(&tmp, mine, sizeof(mine));
            describe_applied(a, theirs, sizeof(theirs));
            describe_nodes(a->nodes, who, sizeof(who));
            snprintf(msg, sizeof(msg), "State Machine Safety: at index %llu n%u applied %s "
                     "but %s applied %s", (unsigned long long)index, f->id, mine, who, theirs);
            involved |= a->nodes;
        } else if (!a->set) {
            a->set = true;
            a->type = e->type;
            a->len = e->len;
            a->term = e->term;
            a->fp = fp;
            a->data = NULL;
            if (e->len) {
                a->data = malloc(e->len);
                if (!a->data)
                    abort();
                memcpy(a->data, e->data, e->len);
            }
            const struct applied_entry *prev = index > 1 ? &c->applied[index - 1] : NULL;
            a->prefix_known = index == 1 || (prev->set && prev->prefix_known);
            a->prefix = mix(index > 1 ? prev->prefix : 0, fp);
        }
        a->nodes |= 1u << f->id;
        f->applied = index;
        f->chain = mix(f->chain, fp);
        if (index > c->max_applied[f->id])
            c->max_applied[f->id] = index;
        if (index > c->max_index)
            c->max_index = index;
    }
    pthread_mutex_unlock(&c->ck);
    if (msg[0])
        cluster_violation(c, involved, "%s", msg);
    else if (f->kv)
        return kv_fsm(f->kv).apply(f->kv, index, e); /* in order: checked just above */
    return 0;
}

static void put64(uint8_t *p, uint64_t x)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(x >> (8 * i));
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t x = 0;
    for (int i = 7; i >= 0; i--)
        x = x << 8 | p[i];
    return x;
}

/* Layout (little-endian): magic, last index, hash chain over 1..index,
 * node id (4 bytes), filler length (4 bytes), filler. */
static int fsm_snapshot(void *ctx, uint8_t **data, size_t *len)
{
    struct lab_fsm *f = ctx;
    struct cluster *c = f->c;
    size_t pad = c->opts.snapshot_pad;
    uint8_t *b = malloc(SNAP_HEADER + pad);
    if (!b)
        return -ENOMEM;
    pthread_mutex_lock(&c->ck);
    uint64_t index = f->applied, chain = f->chain;
    pthread_mutex_unlock(&c->ck);
    put64(b, SNAP_MAGIC);
    put64(b + 8, index);
    put64(b + 16, chain);
    put64(b + 24, (uint64_t)f->id | (uint64_t)pad << 32);
    for (size_t i = 0; i < pad; i++)
        b[SNAP_HEADER + i] = (uint8_t)(index + i);
    *data = b;
    *len = SNAP_HEADER + pad;
    return 0;
}

static int fsm_capture(void *ctx, void **view)
{
    return eager_snapshot_capture(fsm_snapshot, ctx, view);
}

/* The lab's ingestSnap: the snapshot's own index must be the one Raft
 * says; its contents must be the committed entries up to it; and the
 * state machine never goes back. */
static int restore_bytes(struct lab_fsm *f, uint64_t index, const uint8_t *data, size_t len);

static int fsm_restore(void *ctx, uint64_t index, uint64_t len,
                       int (*read)(void *src, uint8_t *buf, size_t n), void *src)
{
    uint8_t *data;
    int rc = eager_restore_read_all(len, read, src, &data);
    if (rc == 0) {
        rc = restore_bytes(ctx, index, data, (size_t)len);
        free(data);
    }
    return rc;
}

static int restore_bytes(struct lab_fsm *f, uint64_t index, const uint8_t *data, size_t len)
{
    struct cluster *c = f->c;
    char msg[384] = "";
    if (len < SNAP_HEADER || get64(data) != SNAP_MAGIC ||
        len != SNAP_HEADER + (get64(data + 24) >> 32)) {
        cluster_violation(c, 1u << f->id, "n%u asked to restore %zu bytes at index %llu that "
                          "are not a snapshot this harness made", f->id, len,
                          (unsigned long long)index);
        return -EINVAL;
    }
    uint64_t enc_index = get64(data + 8), chain = get64(data + 16);
    for (size_t i = SNAP_HEADER; i < len && !msg[0]; i++)
        if (data[i] != (uint8_t)(enc_index + i - SNAP_HEADER))
            snprintf(msg, sizeof(msg), "n%u restored a snapshot at %llu whose filler is "
                     "corrupt at byte %zu", f->id, (unsigned long long)index, i);
    pthread_mutex_lock(&c->ck);
    if (msg[0]) {
        /* reported below */
    } else if (enc_index != index) {
        snprintf(msg, sizeof(msg), "n%u restored a snapshot for index %llu, but the snapshot "
                 "was taken at index %llu", f->id, (unsigned long long)index,
                 (unsigned long long)enc_index);
    } else if (index < f->applied) {
        snprintf(msg, sizeof(msg), "n%u restored a snapshot at %llu after applying up to %llu: "
                 "its state machine went back", f->id, (unsigned long long)index,
                 (unsigned long long)f->applied);
    } else {
        const struct applied_entry *a = applied_at_locked(c, index);
        if (a->set && a->prefix_known && a->prefix != chain)
            snprintf(msg, sizeof(msg), "n%u restored a snapshot at %llu whose contents differ "
                     "from the committed entries 1..%llu", f->id, (unsigned long long)index,
                     (unsigned long long)index);
        f->applied = index;
        f->chain = chain;
        c->restored[f->id]++;
        if (index > c->max_applied[f->id])
            c->max_applied[f->id] = index;
        if (index > c->max_index)
            c->max_index = index;
    }
    pthread_mutex_unlock(&c->ck);
    if (msg[0]) {
        cluster_violation(c, 1u << f->id, "%s", msg);
        return -EINVAL;
    }
    return 0;
}

uint64_t cluster_snapshots_restored(struct cluster *c, unsigned i)
{
    pthread_mutex_lock(&c->ck);
    uint64_t n = c->restored[i];
    pthread_mutex_unlock(&c->ck);
    return n;
}

struct raft_fsm lab_fsm_new(struct cluster *c, unsigned id, unsigned incarnation)
{
    struct lab_fsm *f = calloc(1, sizeof(*f));
    if (!f)
        abort();
    f->c = c;
    f->id = id;
    f->incarnation = incarnation;
    if (c->opts.kv && !(f->kv = kv_new(KV_DEFAULT_SESSION_TIMEOUT_MS)))
        abort();
    pthread_mutex_lock(&c->ck);
    f->next = c->fsms;
    c->fsms = f;
    pthread_mutex_unlock(&c->ck);
    struct raft_fsm fsm = {.ctx = f, .apply = fsm_apply, .snapshot_capture = fsm_capture,
                           .snapshot_serialize = eager_snapshot_serialize,
                           .restore = fsm_restore};
    return fsm;
}

void checks_free(struct cluster *c)
{
    while (c->fsms) {
        struct lab_fsm *f = c->fsms;
        c->fsms = f->next;
        kv_free(f->kv);
        free(f);
    }
    for (size_t i = 0; i < c->applied_cap; i++)
        free(c->applied[i].data);
    free(c->applied);
    free(c->leader_of_term);
    votes_free(c);
    for (unsigned i = 0; i < RAFT_MAX_NODES; i++)
        free(c->slots[i].la);
}

/* ---- Election Safety ---- */

void checks_record_leader(struct cluster *c, unsigned id, uint64_t term)
{
    int other = -1;
    pthread_mutex_lock(&c->leaders_mu);
    if (term >= c->leaders_cap) {
        size_t cap = c->leaders_cap ? c->leaders_cap : 256;
        while (cap <= term)
            cap *= 2;
        int8_t *t = realloc(c->leader_of_term, cap);
        if (!t)
            abort();
        memset(t + c->leaders_cap, -1, cap - c->leaders_cap);
        c->leader_of_term = t;
        c->leaders_cap = cap;
    }
    if (c->leader_of_term[term] == -1) {
        c->leader_of_term[term] = (int8_t)id;
    } else if (c->leader_of_term[term] >= 0 && c->leader_of_term[term] != (int8_t)id) {
        other = c->leader_of_term[term];
        c->leader_of_term[term] = -2; /* reported */
    }
    pthread_mutex_unlock(&c->leaders_mu);
    if (other >= 0)
        cluster_violation(c, 1u << id | 1u << other, "Election Safety: term %llu has two "
                          "leaders: n%d and n%u", (unsigned long long)term, other, id);
}

/* ---- Log Matching, over the durable logs ---- */

static const struct memstore_entry *view_at(const struct memstore_view *v, uint64_t index)
{
    if (index < v->first_index || index >= v->first_index + v->n_entries)
        return NULL;
    return &v->entries[index - v->first_index];
}

static bool same_entry(const struct memstore_entry *a, const struct memstore_entry *b)
{
    return a->term == b->term && a->type == b->type && a->len == b->len && a->hash == b->hash;
}

static void describe_stored(const struct memstore_entry *e, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s@T%llu (%u bytes, hash %016llx)",
             entry_kind(e->type), (unsigned long long)e->term,
             e->len, (unsigned long long)e->hash);
}

/* "If two logs contain an entry with the same index and term, then the logs
 * are identical in all entries up through the given index." The highest
 * index where the terms agree decides: every entry up to it must match. */
static bool check_pair(struct cluster *c, unsigned a, const struct memstore_view *va,
                       unsigned b, const struct memstore_view *vb)
{
    uint64_t lo = va->first_index > vb->first_index ? va->first_index : vb->first_index;
    uint64_t end_a = va->first_index + va->n_entries, end_b = vb->first_index + vb->n_entries;
    uint64_t hi = end_a < end_b ? end_a : end_b; /* exclusive */
    uint64_t k = 0;
    for (uint64_t i = hi; i-- > lo;)
        if (view_at(va, i)->term == view_at(vb, i)->term) {
            k = i;
            break;
        }
    if (k == 0)
        return true;
    for (uint64_t i = lo; i <= k; i++) {
        const struct memstore_entry *ea = view_at(va, i), *eb = view_at(vb, i);
        if (same_entry(ea, eb))
            continue;
        char da[96], db[96];
        describe_stored(ea, da, sizeof(da));
        describe_stored(eb, db, sizeof(db));
        cluster_violation(c, 1u << a | 1u << b, "Log Matching: n%u and n%u both store entry "
                          "%llu of T%llu, but at index %llu n%u stores %s and n%u stores %s", a, b,
                          (unsigned long long)k, (unsigned long long)view_at(va, k)->term,
                          (unsigned long long)i, a, da, b, db);
        return false;
    }
    return true;
}

/* A stored entry with a committed entry's index and term is that entry. */
static bool check_against_applied(struct cluster *c, unsigned id, const struct memstore_view *v)
{
    char msg[384] = "";
    pthread_mutex_lock(&c->ck);
    for (size_t k = 0; k < v->n_entries && !msg[0]; k++) {
        uint64_t index = v->first_index + k;
        if (index > c->max_index)
            break;
        const struct applied_entry *a = &c->applied[index];
        const struct memstore_entry *e = &v->entries[k];
        if (!a->set || a->term != e->term)
            continue;
        if (a->fp != entry_fp(e->term, e->type, e->len, e->hash)) {
            char committed[96], stored[96];
            describe_applied(a, committed, sizeof(committed));
            describe_stored(e, stored, sizeof(stored));
            snprintf(msg, sizeof(msg), "Log Matching: n%u stores %s at index %llu, but the "
                     "entry of that term applied there is %s", id, stored,
                     (unsigned long long)index, committed);
        }
    }
    pthread_mutex_unlock(&c->ck);
    if (msg[0])
        cluster_violation(c, 1u << id, "%s", msg);
    return !msg[0];
}

void checks_log_matching(struct cluster *c)
{
    struct memstore_view v[RAFT_MAX_NODES];
    for (unsigned i = 0; i < c->n; i++)
        memstore_view(c->slots[i].store, &v[i]);
    bool ok = true;
    for (unsigned a = 0; a < c->n && ok; a++) {
        ok = check_against_applied(c, a, &v[a]);
        for (unsigned b = a + 1; b < c->n && ok; b++)
            ok = check_pair(c, a, &v[a], b, &v[b]);
    }
    for (unsigned i = 0; i < c->n; i++)
        memstore_view_free(&v[i]);
}

void checks_storage_violation(void *ctx, unsigned id, const char *what)
{
    struct slot *s = ctx;
    cluster_violation(s->c, 1u << id, "n%u %s", id, what);
}

/* ---- what memstore checks truncates and snapshots against ---- */

static void committed_lock(void *ctx)
{
    struct cluster *c = ctx;
    pthread_mutex_lock(&c->ck);
}

static void committed_unlock(void *ctx)
{
    struct cluster *c = ctx;
    pthread_mutex_unlock(&c->ck);
}

/* c->ck held. Every entry applied anywhere is committed. */
static uint64_t committed_term_at(void *ctx, uint64_t index)
{
    struct cluster *c = ctx;
    if (index >= c->applied_cap || !c->applied[index].set)
        return 0;
    return c->applied[index].term;
}

void checks_watch_store(struct cluster *c, struct memstore *store)
{
    struct memstore_committed committed = {.ctx = c, .lock = committed_lock,
                                           .unlock = committed_unlock,
                                           .term_at = committed_term_at};
    memstore_set_committed(store, &committed);
}

/* ---- the monitor: Election Safety, Leader Append-Only, Leader Completeness ---- */

static void la_reserve(struct slot *s, uint64_t index)
{
    if (index < s->la_cap)
        return;
    size_t cap = s->la_cap ? s->la_cap : 256;
    while (cap <= index)
        cap *= 2;
    struct seen_entry *la = realloc(s->la, cap * sizeof(*la));
    if (!la)
        abort();
    s->la = la;
    s->la_cap = cap;
}

static struct seen_entry seen(const struct raft_entry *e)
{
    struct seen_entry x = {.term = e->term, .type = e->type, .len = e->len,
                           .hash = memstore_hash(e->data, e->len)};
    return x;
}

/* Leader Append-Only, with the node's lock held: "a leader never overwrites
 * or deletes entries in its log; it only appends new entries". Compares the
 * log with what the last sample saw while the node led the same term (a
 * node leads a term at most once, so two samples as leader of T bracket one
 * stretch of leadership). Entries compacted into a snapshot are skipped.
 * Writes a message into msg on a violation. */
static void leader_append_only_locked(struct slot *s, struct raft_node *n, char *msg, size_t cap)
{
    const struct raft_log *l = &n->log;
    uint64_t base = l->base_index, last = log_last_index(l);
    if (s->la_term != n->current_term || s->la_incarnation != s->incarnation) {
        s->la_term = n->current_term;
        s->la_incarnation = s->incarnation;
        s->la_last = base;
    } else if (last < s->la_last) {
        snprintf(msg, cap, "Leader Append-Only: n%u, leader of T%llu, held entries up to %llu "
                 "and now only up to %llu", s->id, (unsigned long long)n->current_term,
                 (unsigned long long)s->la_last, (unsigned long long)last);
        s->la_term = 0;
        return;
    } else {
        /* Terms, types and lengths every sample; data for a few entries a
         * sample, round-robin, so that a long log stays cheap. */
        for (uint64_t i = base + 1; i <= s->la_last; i++) {
            const struct raft_entry *e = log_get(l, i);
            const struct seen_entry *was = &s->la[i];
            uint64_t span = s->la_last - base, offset = i - base - 1;
            bool rehash = (offset + span - s->la_rotor % span) % span < REHASH_PER_SAMPLE;
            if (e->term == was->term && e->type == was->type && e->len == was->len &&
                (!rehash || memstore_hash(e->data, e->len) == was->hash))
                continue;
            snprintf(msg, cap, "Leader Append-Only: n%u, leader of T%llu, held %s@T%llu "
                     "(%u bytes, hash %016llx) at index %llu and now holds %s@T%llu "
                     "(%u bytes, hash %016llx) there", s->id,
                     (unsigned long long)n->current_term,
                     entry_kind(was->type),
                     (unsigned long long)was->term, was->len, (unsigned long long)was->hash,
                     (unsigned long long)i, entry_kind(e->type),
                     (unsigned long long)e->term, e->len,
                     (unsigned long long)memstore_hash(e->data, e->len));
            s->la_term = 0; /* start over: report each change once */
            return;
        }
        s->la_rotor += REHASH_PER_SAMPLE;
    }
    la_reserve(s, last);
    for (uint64_t i = (s->la_last > base ? s->la_last : base) + 1; i <= last; i++)
        s->la[i] = seen(log_get(l, i));
    s->la_last = last;
}

/* Leader Completeness: every entry applied anywhere (all of them committed)
 * must be in the log of the new leader, or covered by its snapshot. The
 * applied index M is read before the leader's log, so every entry up to M
 * was committed before the log was read: entries of earlier terms must be
 * in it (the property), and entries of its own term are in it because it
 * appended them and still leads. */
static void leader_completeness(struct cluster *c, struct slot *s, uint64_t term,
                                uint64_t base, uint64_t last, const struct seen_entry *log,
                                uint64_t max_index)
{
    char msg[512] = "";
    uint32_t involved = 1u << s->id;
    pthread_mutex_lock(&c->ck);
    for (uint64_t i = base + 1; i <= max_index && !msg[0]; i++) {
        const struct applied_entry *a = &c->applied[i];
        if (!a->set)
            continue;
        char committed[96], who[64];
        describe_applied(a, committed, sizeof(committed));
        describe_nodes(a->nodes, who, sizeof(who));
        if (i > last) {
            snprintf(msg, sizeof(msg), "Leader Completeness: n%u leads T%llu but its log ends at "
                     "%llu, without the committed entry %llu (%s, applied by %s)", s->id,
                     (unsigned long long)term, (unsigned long long)last, (unsigned long long)i,
                     committed, who);
            involved |= a->nodes;
            break;
        }
        const struct seen_entry *e = &log[i - base - 1];
        if (entry_fp(e->term, e->type, e->len, e->hash) != a->fp) {
            snprintf(msg, sizeof(msg), "Leader Completeness: n%u leads T%llu but holds %s@T%llu "
                     "at index %llu where %s applied the committed %s", s->id,
                     (unsigned long long)term, entry_kind(e->type),
                     (unsigned long long)e->term, (unsigned long long)i, who, committed);
            involved |= a->nodes;
        }
    }
    pthread_mutex_unlock(&c->ck);
    if (msg[0])
        cluster_violation(c, involved, "%s", msg);
}

/* The monitor never blocks on a node: if its lock stays taken for this
 * long, the node is reported as stuck (a deadlock, or a call that blocks
 * under the lock), and the process aborts a while later if the test thread
 * is stuck with it. */
#define STUCK_MS 10000
#define STUCK_ABORT_MS 30000

/* Notes whether node s's lock was free at this sample; returns true when it
 * has just been found stuck. */
static bool note_busy(struct cluster *c, struct slot *s, bool busy)
{
    uint64_t now = lab_now_ms();
    if (!busy) {
        s->busy_since_ms = 0;
        return false;
    }
    if (s->busy_since_ms == 0)
        s->busy_since_ms = now;
    if (s->busy_reported || now - s->busy_since_ms < (uint64_t)(STUCK_MS * c->scale))
        return false;
    s->busy_reported = true;
    return true;
}

static void sample(struct cluster *c, struct slot *s)
{
    pthread_mutex_lock(&c->ck);
    uint64_t max_index = c->max_index;
    pthread_mutex_unlock(&c->ck);

    char msg[512] = "";
    struct seen_entry *copy = NULL;
    uint64_t term = 0, base = 0, last = 0;
    bool leader = false, check_completeness = false;
    struct election_config ec;
    if (pthread_rwlock_tryrdlock(&s->lock) != 0)
        return; /* the test thread is swapping the node */
    struct raft_node *n = s->node;
    bool busy = n && pthread_mutex_trylock(&n->mu) != 0;
    if (note_busy(c, s, busy)) {
        pthread_rwlock_unlock(&s->lock);
        cluster_violation(c, 1u << s->id, "n%u has held its lock for %u ms: a deadlock, or a "
                          "call that blocks under the lock", s->id,
                          (unsigned)(STUCK_MS * c->scale));
        c->stuck_at_ms = lab_now_ms();
        return;
    }
    if (n && !busy) {
        leader = n->role == RAFT_LEADER;
        term = n->current_term;
        if (leader) {
            leader_append_only_locked(s, n, msg, sizeof(msg));
            base = n->log.base_index;
            last = log_last_index(&n->log);
            if (s->lc_term != term || s->lc_incarnation != s->incarnation) {
                s->lc_term = term;
                s->lc_incarnation = s->incarnation;
                check_completeness = true;
                election_config_locked(n, term, &ec);
                uint64_t upto = max_index < last ? max_index : last;
                if (upto > base) {
                    copy = malloc((upto - base) * sizeof(*copy));
                    if (!copy)
                        abort();
                    for (uint64_t i = base + 1; i <= upto; i++)
                        copy[i - base - 1] = seen(log_get(&n->log, i));
                }
            }
        } else {
            s->la_term = 0;
        }
        pthread_mutex_unlock(&n->mu);
    }
    pthread_rwlock_unlock(&s->lock);

    if (leader)
        checks_record_leader(c, s->id, term);
    if (msg[0])
        cluster_violation(c, 1u << s->id, "%s", msg);
    if (check_completeness) {
        votes_check_leader(c, s->id, term, &ec);
        leader_completeness(c, s, term, base, last, copy, max_index);
    }
    free(copy);
}

/* One iteration: sample every node, every 50th time check Log Matching,
 * and enforce the lab's 120-second limit per test. */
static void *monitor_main(void *arg)
{
    struct cluster *c = arg;
    uint64_t limit_ms = (uint64_t)(LAB_WALL_LIMIT_S * 1000 * c->scale);
    bool over = false;
    unsigned tick = 0;
    pthread_mutex_lock(&c->mon_mu);
    while (!c->mon_stop) {
        pthread_mutex_unlock(&c->mon_mu);
        for (unsigned i = 0; i < c->n; i++)
            sample(c, &c->slots[i]);
        if (++tick % LOG_MATCHING_EVERY == 0)
            checks_log_matching(c);
        uint64_t elapsed = lab_now_ms() - c->t0_ms;
        if (elapsed > limit_ms && !over) {
            over = true;
            cluster_violation(c, (1u << c->n) - 1, "test took longer than %.0f seconds",
                              limit_ms / 1000.0);
        }
        int stopping = atomic_load(&c->stopping_node);
        if (stopping >= 0 && !c->stuck_at_ms &&
            lab_now_ms() - atomic_load(&c->stopping_since_ms) > STUCK_MS * c->scale) {
            cluster_violation(c, 1u << stopping, "raft_stop(n%d) has not returned after %u ms: "
                              "a thread of the node does not stop", stopping,
                              (unsigned)(STUCK_MS * c->scale));
            c->stuck_at_ms = lab_now_ms();
        }
        if (c->stuck_at_ms && lab_now_ms() - c->stuck_at_ms > STUCK_ABORT_MS) {
            fprintf(stderr, "a node has been stuck for %u s more and the test did not end: "
                    "aborting\n", STUCK_ABORT_MS / 1000);
            abort();
        }
        if (elapsed > limit_ms + 60000) {
            fprintf(stderr, "the test thread did not notice the failure for 60 s: "
                    "probably stuck in a node; aborting\n");
            abort();
        }
        pthread_mutex_lock(&c->mon_mu);
        uint64_t until = lab_now_ms() + MONITOR_PERIOD_MS;
        struct timespec ts = {.tv_sec = (time_t)(until / 1000),
                              .tv_nsec = (long)(until % 1000) * 1000000};
        if (!c->mon_stop)
            pthread_cond_timedwait(&c->mon_cond, &c->mon_mu, &ts);
    }
    pthread_mutex_unlock(&c->mon_mu);
    return NULL;
}

void monitor_start(struct cluster *c)
{
    c->mon_stop = false;
    if (pthread_create(&c->monitor, NULL, monitor_main, c))
        abort();
}

void monitor_stop(struct cluster *c)
{
    pthread_mutex_lock(&c->mon_mu);
    c->mon_stop = true;
    pthread_cond_signal(&c->mon_cond);
    pthread_mutex_unlock(&c->mon_mu);
    pthread_join(c->monitor, NULL);
}
