/*
 * kv.c - the key-value state machine with client sessions (thesis §6.3).
 *
 * Two open-addressing hash tables under one mutex: keys -> values, and
 * client id -> session. The applier thread writes; request handlers read.
 *
 * Snapshot layout (big-endian):
 *   u32 magic "KVS1"  u64 applied_index  u64 clock_ms
 *   u64 n_keys     then per key:     u32 key_len key u32 value_len value
 *   u64 n_sessions then per session: u64 client_id u64 last_seq u64 last_active_ms
 */
#include "kv/kv.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KV_OP_PUT 1
#define SNAPSHOT_MAGIC 0x4b565331u /* "KVS1" */

struct kv_item {
    uint8_t *key; /* NULL: empty slot */
    uint32_t key_len;
    uint32_t value_len;
    uint8_t *value;
    uint64_t hash;
};

struct kv_session {
    uint64_t client_id; /* 0: empty slot */
    uint64_t last_seq;
    uint64_t last_active_ms;
};

struct kv {
    pthread_mutex_t mu;
    /* mu guards everything below */
    struct kv_item *items;
    size_t items_cap, n_items; /* cap is a power of two */
    struct kv_session *sessions;
    size_t sessions_cap, n_sessions;
    uint64_t applied_index;
    uint64_t clock_ms;      /* the leader's time of the last applied put */
    uint64_t last_expiry_ms;
    uint64_t session_timeout_ms;
    uint64_t duplicates; /* committed puts that the session table refused */
    long allocs_left;    /* allocations that may succeed; -1: no limit (tests) */
};

/* Every allocation of the apply path, so that tests can make one fail. */
static void *alloc_locked(struct kv *kv, size_t n, bool zero)
{
    if (kv->allocs_left == 0)
        return NULL;
    if (kv->allocs_left > 0)
        kv->allocs_left--;
    return zero ? calloc(1, n) : malloc(n);
}

/* ---- encoding helpers ---- */

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

/* A byte string: u32 length, then the bytes. Returns the end. */
static uint8_t *put_bytes(uint8_t *p, const uint8_t *b, uint32_t n)
{
    put_u32(p, n);
    if (n)
        memcpy(p + 4, b, n);
    return p + 4 + n;
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get_u64(const uint8_t *p)
{
    return (uint64_t)get_u32(p) << 32 | get_u32(p + 4);
}

/* A bounds-checked reader over a byte buffer. */
struct reader {
    const uint8_t *p;
    size_t left;
    bool bad;
};

static const uint8_t *take(struct reader *r, size_t n)
{
    if (r->bad || n > r->left) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *p = r->p;
    r->p += n;
    r->left -= n;
    return p;
}

static uint64_t take_u64(struct reader *r)
{
    const uint8_t *p = take(r, 8);
    return p ? get_u64(p) : 0;
}

static uint32_t take_u32(struct reader *r)
{
    const uint8_t *p = take(r, 4);
    return p ? get_u32(p) : 0;
}

size_t kv_put_size(uint32_t key_len, uint32_t value_len)
{
    return 1 + 8 + 8 + 8 + 4 + (size_t)key_len + 4 + value_len;
}

size_t kv_encode_put(uint8_t *buf, uint64_t client_id, uint64_t seq, uint64_t time_ms,
                     const uint8_t *key, uint32_t key_len,
                     const uint8_t *value, uint32_t value_len)
{
    uint8_t *p = buf;
    *p++ = KV_OP_PUT;
    put_u64(p, client_id);
    put_u64(p + 8, seq);
    put_u64(p + 16, time_ms);
    p = put_bytes(p + 24, key, key_len);
    p = put_bytes(p, value, value_len);
    return (size_t)(p - buf);
}

/* ---- the key table ---- */

static uint64_t hash_bytes(const uint8_t *b, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static struct kv_item *find_slot(struct kv_item *items, size_t cap, const uint8_t *key,
                                 uint32_t key_len, uint64_t h)
{
    for (size_t i = h & (cap - 1);; i = (i + 1) & (cap - 1)) {
        struct kv_item *it = &items[i];
        if (!it->key || (it->hash == h && it->key_len == key_len &&
                         memcmp(it->key, key, key_len) == 0))
            return it;
    }
}

static int grow_items(struct kv *kv)
{
    size_t cap = kv->items_cap ? kv->items_cap * 2 : 64;
    struct kv_item *items = alloc_locked(kv, cap * sizeof(*items), true);
    if (!items)
        return -ENOMEM;
    for (size_t i = 0; i < kv->items_cap; i++) {
        struct kv_item *it = &kv->items[i];
        if (it->key)
            *find_slot(items, cap, it->key, it->key_len, it->hash) = *it;
    }
    free(kv->items);
    kv->items = items;
    kv->items_cap = cap;
    return 0;
}

static int set_locked(struct kv *kv, const uint8_t *key, uint32_t key_len,
                      const uint8_t *value, uint32_t value_len)
{
    if ((kv->n_items + 1) * 4 > kv->items_cap * 3 && grow_items(kv))
        return -ENOMEM;
    uint64_t h = hash_bytes(key, key_len);
    struct kv_item *it = find_slot(kv->items, kv->items_cap, key, key_len, h);
    uint8_t *v = alloc_locked(kv, value_len ? value_len : 1, false);
    if (!v)
        return -ENOMEM;
    memcpy(v, value, value_len);
    if (!it->key) {
        it->key = alloc_locked(kv, key_len ? key_len : 1, false);
        if (!it->key) {
            free(v);
            return -ENOMEM;
        }
        memcpy(it->key, key, key_len);
        it->key_len = key_len;
        it->hash = h;
        kv->n_items++;
    }
    free(it->value);
    it->value = v;
    it->value_len = value_len;
    return 0;
}

/* ---- sessions ---- */

static struct kv_session *find_session(struct kv_session *s, size_t cap, uint64_t id)
{
    for (size_t i = (id * 0x9e3779b97f4a7c15ull) & (cap - 1);; i = (i + 1) & (cap - 1))
        if (s[i].client_id == id || s[i].client_id == 0)
            return &s[i];
}

/* Rebuilds the session table into `cap` slots, dropping sessions idle since
 * before `cutoff_ms` (0 keeps all). */
static int rebuild_sessions(struct kv *kv, size_t cap, uint64_t cutoff_ms)
{
    struct kv_session *s = alloc_locked(kv, cap * sizeof(*s), true);
    if (!s)
        return -ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < kv->sessions_cap; i++) {
        struct kv_session *old = &kv->sessions[i];
        if (old->client_id && old->last_active_ms >= cutoff_ms) {
            *find_session(s, cap, old->client_id) = *old;
            n++;
        }
    }
    free(kv->sessions);
    kv->sessions = s;
    kv->sessions_cap = cap;
    kv->n_sessions = n;
    return 0;
}

/* §6.3: expiry is decided by the leader's timestamps in the log, never by
 * the local clock, so every replica drops the same sessions at the same
 * point of the log. Checked at most once a second of log time. */
static int expire_sessions_locked(struct kv *kv)
{
    if (kv->clock_ms < kv->last_expiry_ms + 1000 || kv->clock_ms < kv->session_timeout_ms)
        return 0;
    int rc = rebuild_sessions(kv, kv->sessions_cap, kv->clock_ms - kv->session_timeout_ms);
    if (rc == 0)
        kv->last_expiry_ms = kv->clock_ms;
    return rc;
}

/* Makes room for one more session, so that session_locked cannot fail. */
static int reserve_session_locked(struct kv *kv)
{
    if ((kv->n_sessions + 1) * 4 <= kv->sessions_cap * 3)
        return 0;
    return rebuild_sessions(kv, kv->sessions_cap ? kv->sessions_cap * 2 : 64, 0);
}

/* The session of client id, added if new; reserve_session_locked first. */
static struct kv_session *session_locked(struct kv *kv, uint64_t id)
{
    struct kv_session *s = find_session(kv->sessions, kv->sessions_cap, id);
    if (s->client_id == 0) {
        s->client_id = id;
        kv->n_sessions++;
    }
    return s;
}

int kv_decode_put(const uint8_t *data, uint32_t len, struct kv_put *out)
{
    struct reader r = {.p = data, .left = len};
    const uint8_t *op = take(&r, 1);
    out->client_id = take_u64(&r);
    out->seq = take_u64(&r);
    out->time_ms = take_u64(&r);
    out->key_len = take_u32(&r);
    out->key = take(&r, out->key_len);
    out->value_len = take_u32(&r);
    out->value = take(&r, out->value_len);
    return r.bad || *op != KV_OP_PUT ? -EBADMSG : 0;
}

/* Appends up to KV_DESCRIBE_BYTES of b to buf at *used: printable ASCII as
 * is, backslash and the rest escaped. */
#define KV_DESCRIBE_BYTES 64
static void describe_bytes(char *buf, size_t cap, size_t *used, const uint8_t *b, uint32_t n)
{
    for (uint32_t i = 0; i < n && i < KV_DESCRIBE_BYTES && *used < cap; i++) {
        int w = b[i] >= 0x20 && b[i] < 0x7f && b[i] != '\\'
                    ? snprintf(buf + *used, cap - *used, "%c", b[i])
                    : snprintf(buf + *used, cap - *used, "\\x%02x", b[i]);
        *used += (size_t)w;
    }
    if (n > KV_DESCRIBE_BYTES && *used < cap)
        *used += (size_t)snprintf(buf + *used, cap - *used, "...(%" PRIu32 " bytes)", n);
}

int kv_describe_entry(char *buf, size_t cap, const uint8_t *data, uint32_t len)
{
    struct kv_put put;
    if (cap == 0 || kv_decode_put(data, len, &put) != 0)
        return -EBADMSG;
    size_t used = (size_t)snprintf(buf, cap, "put ");
    describe_bytes(buf, cap, &used, put.key, put.key_len);
    if (used < cap)
        used += (size_t)snprintf(buf + used, cap - used, " = ");
    describe_bytes(buf, cap, &used, put.value, put.value_len);
    if (used < cap)
        used += (size_t)snprintf(buf + used, cap - used, "  (client %016" PRIx64 ", seq %"
                                 PRIu64 ")", put.client_id, put.seq);
    return (int)(used < cap ? used : cap - 1);
}

/* ---- the state machine ---- */

/* 0, or -ENOMEM with the put not applied and its seq not recorded (its
 * clock and session expiry may have been: applying it again is the same). */
static int apply_put_locked(struct kv *kv, const uint8_t *data, uint32_t len)
{
    struct kv_put put;
    if (kv_decode_put(data, len, &put) != 0)
        return 0; /* never proposed: every replica skips it alike */
    uint64_t client = put.client_id, seq = put.seq, time_ms = put.time_ms;
    if (time_ms > kv->clock_ms)
        kv->clock_ms = time_ms;
    int rc = expire_sessions_locked(kv);
    if (rc == 0)
        rc = reserve_session_locked(kv);
    if (rc)
        return rc;
    struct kv_session *s = find_session(kv->sessions, kv->sessions_cap, client);
    /* §6.3: a request already applied for this session is not applied again. */
    if (s->client_id == client && seq <= s->last_seq) {
        s->last_active_ms = kv->clock_ms;
        kv->duplicates++;
        return 0;
    }
    rc = set_locked(kv, put.key, put.key_len, put.value, put.value_len);
    if (rc)
        return rc;
    /* Recorded only once applied: a session never claims a put it lost. */
    s = session_locked(kv, client);
    s->last_active_ms = kv->clock_ms;
    s->last_seq = seq;
    return 0;
}

int kv_apply_entry(struct kv *kv, uint64_t index, const struct raft_entry *e)
{
    pthread_mutex_lock(&kv->mu);
    int rc = e->type == RAFT_ENTRY_COMMAND ? apply_put_locked(kv, e->data, e->len) : 0;
    if (rc == 0)
        kv->applied_index = index;
    pthread_mutex_unlock(&kv->mu);
    return rc;
}

/* An entry that cannot be applied is reported to the node, which stops
 * rather than diverge from the replicas that applied it. */
static int kv_apply(void *ctx, uint64_t index, const struct raft_entry *e)
{
    return kv_apply_entry(ctx, index, e);
}

static int kv_snapshot(void *ctx, uint8_t **data, size_t *len)
{
    struct kv *kv = ctx;
    pthread_mutex_lock(&kv->mu);
    size_t size = 4 + 8 + 8 + 8 + 8 + kv->n_sessions * 24;
    for (size_t i = 0; i < kv->items_cap; i++)
        if (kv->items[i].key)
            size += 8 + kv->items[i].key_len + kv->items[i].value_len;
    uint8_t *buf = malloc(size), *p = buf;
    if (!buf) {
        pthread_mutex_unlock(&kv->mu);
        return -ENOMEM;
    }
    put_u32(p, SNAPSHOT_MAGIC);
    put_u64(p + 4, kv->applied_index);
    put_u64(p + 12, kv->clock_ms);
    put_u64(p + 20, kv->n_items);
    p += 28;
    for (size_t i = 0; i < kv->items_cap; i++) {
        const struct kv_item *it = &kv->items[i];
        if (it->key)
            p = put_bytes(put_bytes(p, it->key, it->key_len), it->value, it->value_len);
    }
    put_u64(p, kv->n_sessions);
    p += 8;
    for (size_t i = 0; i < kv->sessions_cap; i++) {
        const struct kv_session *s = &kv->sessions[i];
        if (!s->client_id)
            continue;
        put_u64(p, s->client_id);
        put_u64(p + 8, s->last_seq);
        put_u64(p + 16, s->last_active_ms);
        p += 24;
    }
    pthread_mutex_unlock(&kv->mu);
    *data = buf;
    *len = (size_t)(p - buf);
    return 0;
}

static void clear_locked(struct kv *kv)
{
    for (size_t i = 0; i < kv->items_cap; i++) {
        free(kv->items[i].key);
        free(kv->items[i].value);
    }
    free(kv->items);
    free(kv->sessions);
    kv->items = NULL;
    kv->sessions = NULL;
    kv->items_cap = kv->n_items = kv->sessions_cap = kv->n_sessions = 0;
}

static int restore_locked(struct kv *kv, const uint8_t *data, size_t len)
{
    struct reader r = {.p = data, .left = len};
    if (take_u32(&r) != SNAPSHOT_MAGIC)
        return -EBADMSG;
    take_u64(&r); /* applied index: the caller's index is authoritative */
    kv->clock_ms = take_u64(&r);
    uint64_t n = take_u64(&r);
    for (uint64_t i = 0; i < n && !r.bad; i++) {
        uint32_t kl = take_u32(&r);
        const uint8_t *k = take(&r, kl);
        uint32_t vl = take_u32(&r);
        const uint8_t *v = take(&r, vl);
        if (!r.bad && set_locked(kv, k, kl, v, vl))
            return -ENOMEM;
    }
    n = take_u64(&r);
    for (uint64_t i = 0; i < n && !r.bad; i++) {
        uint64_t id = take_u64(&r), seq = take_u64(&r), active = take_u64(&r);
        if (r.bad)
            break;
        if (reserve_session_locked(kv))
            return -ENOMEM;
        struct kv_session *s = session_locked(kv, id);
        s->last_seq = seq;
        s->last_active_ms = active;
    }
    return r.bad || r.left ? -EBADMSG : 0;
}

static int kv_restore(void *ctx, uint64_t index, const uint8_t *data, size_t len)
{
    struct kv *kv = ctx;
    pthread_mutex_lock(&kv->mu);
    clear_locked(kv);
    int rc = restore_locked(kv, data, len);
    kv->applied_index = index;
    pthread_mutex_unlock(&kv->mu);
    return rc;
}

struct raft_fsm kv_fsm(struct kv *kv)
{
    return (struct raft_fsm){.ctx = kv, .apply = kv_apply, .snapshot = kv_snapshot,
                             .restore = kv_restore};
}

/* ---- queries ---- */

struct kv *kv_new(uint64_t session_timeout_ms)
{
    struct kv *kv = calloc(1, sizeof(*kv));
    if (!kv)
        return NULL;
    pthread_mutex_init(&kv->mu, NULL);
    kv->session_timeout_ms = session_timeout_ms;
    kv->allocs_left = -1;
    return kv;
}

void kv_free(struct kv *kv)
{
    if (!kv)
        return;
    clear_locked(kv);
    pthread_mutex_destroy(&kv->mu);
    free(kv);
}

int kv_get(struct kv *kv, const uint8_t *key, uint32_t key_len,
           uint8_t **value, uint32_t *value_len)
{
    int rc = -ENOENT;
    pthread_mutex_lock(&kv->mu);
    if (kv->items_cap) {
        const struct kv_item *it = find_slot(kv->items, kv->items_cap, key, key_len,
                                             hash_bytes(key, key_len));
        if (it->key) {
            *value = malloc(it->value_len ? it->value_len : 1);
            rc = *value ? 0 : -ENOMEM;
            if (*value) {
                memcpy(*value, it->value, it->value_len);
                *value_len = it->value_len;
            }
        }
    }
    pthread_mutex_unlock(&kv->mu);
    return rc;
}

bool kv_applied_request(struct kv *kv, uint64_t client_id, uint64_t seq)
{
    bool done = false;
    pthread_mutex_lock(&kv->mu);
    if (kv->sessions_cap) {
        const struct kv_session *s = find_session(kv->sessions, kv->sessions_cap, client_id);
        done = s->client_id == client_id && s->last_seq >= seq;
    }
    pthread_mutex_unlock(&kv->mu);
    return done;
}

void kv_fail_allocations_after(struct kv *kv, long n)
{
    pthread_mutex_lock(&kv->mu);
    kv->allocs_left = n;
    pthread_mutex_unlock(&kv->mu);
}

void kv_get_stats(struct kv *kv, struct kv_stats *st)
{
    pthread_mutex_lock(&kv->mu);
    st->applied_index = kv->applied_index;
    st->keys = kv->n_items;
    st->sessions = kv->n_sessions;
    st->duplicates = kv->duplicates;
    /* Order-independent: the sum of per-item hashes. */
    uint64_t h = 0;
    for (size_t i = 0; i < kv->items_cap; i++)
        if (kv->items[i].key)
            h += kv->items[i].hash * 31 + hash_bytes(kv->items[i].value, kv->items[i].value_len);
    st->hash = h;
    pthread_mutex_unlock(&kv->mu);
}
