/*
 * kv.c - the key-value state machine with client sessions (thesis §6.3).
 *
 * Two open-addressing hash tables under one mutex: keys -> values, and
 * client id -> session. The applier thread writes; request handlers read.
 *
 * A snapshot does not stop them: the capture copies only the table of
 * pointers to keys and values (a few milliseconds for a million keys),
 * and the bytes are serialized from that copy outside the mutex while
 * writes go on. Writes never change a key's or value's bytes in place
 * (a put allocates the new value), and while a view is out they put off
 * freeing the old ones, so that the view stays as of its capture.
 *
 * Snapshot layout (big-endian):
 *   u32 magic "KVS2"  u64 applied_index  u64 clock_ms
 *   u64 n_keys     then per key:     u32 key_len key u32 value_len value
 *   u64 n_sessions then per session: u64 client_id u64 last_seq u64 last_active_ms
 *                                    u8 last_result u32 held_len held
 * ("KVS1", written before delete and cas existed, has no last_result and
 * held; it is still read.)
 */
#include "kv/kv.h"

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv/bytes.h"
#include "kv/store.h"
#include "kv/stream.h"

#define SNAPSHOT_MAGIC_V1 0x4b565331u /* "KVS1" */
#define SNAPSHOT_MAGIC 0x4b565332u    /* "KVS2" */

/* Every allocation of the apply path, so that tests can make one fail. */
static void *alloc_locked(struct kv *kv, size_t n, bool zero)
{
    if (kv->allocs_left == 0)
        return NULL;
    if (kv->allocs_left > 0)
        kv->allocs_left--;
    return zero ? calloc(1, n) : malloc(n);
}

/* Room for n more deferred frees, so that a write that has begun cannot
 * fail halfway. */
static int reserve_deferred_locked(struct kv *kv, size_t n)
{
    if (kv->views == 0 || kv->n_deferred + n <= kv->deferred_cap)
        return 0;
    size_t cap = kv->deferred_cap ? kv->deferred_cap : 1024;
    while (cap < kv->n_deferred + n)
        cap *= 2;
    void **d = kv->allocs_left == 0 ? NULL : realloc(kv->deferred, cap * sizeof(*d));
    if (!d)
        return -ENOMEM;
    kv->deferred = d;
    kv->deferred_cap = cap;
    return 0;
}

/* Frees a key's or value's bytes, or keeps them while a snapshot's view
 * may point to them. Writes reserve the room first; should there be none
 * after all (a restore of a snapshot with a key twice), the bytes are
 * leaked rather than freed under the view. */
static void release_locked(struct kv *kv, void *p)
{
    if (kv->views == 0 || p == NULL)
        free(p);
    else if (reserve_deferred_locked(kv, 1) == 0)
        kv->deferred[kv->n_deferred++] = p;
}

/* ---- the key table ---- */

/* FNV-1a, then a finalizer (MurmurHash3's fmix64). The table keeps the
 * low bits of the hash, and FNV-1a's low bits depend only on the low bits
 * of the key's bytes: keys that differ in digits ("key-1234") would crowd
 * a few runs of slots and be found by long probes. The finalizer folds the
 * high bits in. */
static uint64_t hash_bytes(const uint8_t *b, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
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

/* Rebuilds the key table into cap slots (a power of two). */
static int resize_items(struct kv *kv, size_t cap)
{
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

/* The table stays at most three quarters full. */
static bool needs_growth(size_t n_items, size_t cap)
{
    return n_items * 4 > cap * 3;
}

static int grow_items(struct kv *kv)
{
    return resize_items(kv, kv->items_cap ? kv->items_cap * 2 : 64);
}

/* Room for n keys at once, rather than doubling the table some fifteen
 * times while a million keys are restored. */
static int reserve_items_locked(struct kv *kv, uint64_t n)
{
    size_t cap = kv->items_cap ? kv->items_cap : 64;
    while (needs_growth(n, cap))
        cap *= 2;
    return cap == kv->items_cap ? 0 : resize_items(kv, cap);
}

static int set_locked(struct kv *kv, const uint8_t *key, uint32_t key_len,
                      const uint8_t *value, uint32_t value_len)
{
    if (needs_growth(kv->n_items + 1, kv->items_cap) && grow_items(kv))
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
    release_locked(kv, it->value);
    it->value = v;
    it->value_len = value_len;
    return 0;
}

/* The item of key, or NULL. */
static struct kv_item *lookup_locked(struct kv *kv, const uint8_t *key, uint32_t key_len)
{
    if (!kv->items_cap)
        return NULL;
    struct kv_item *it = find_slot(kv->items, kv->items_cap, key, key_len,
                                   hash_bytes(key, key_len));
    return it->key ? it : NULL;
}

/* Removes an item. Linear probing finds a key by walking from its home
 * slot to the first empty one, so the items after the hole that could not
 * sit in their home slot are moved back into it, one by one (no
 * tombstones to clean up later). */
static void remove_locked(struct kv *kv, struct kv_item *it)
{
    size_t mask = kv->items_cap - 1, hole = (size_t)(it - kv->items);
    release_locked(kv, it->key);
    release_locked(kv, it->value);
    kv->n_items--;
    for (size_t j = (hole + 1) & mask; kv->items[j].key; j = (j + 1) & mask) {
        size_t home = kv->items[j].hash & mask;
        /* It stays if its home lies cyclically in (hole, j]. */
        bool stays = hole < j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (stays)
            continue;
        kv->items[hole] = kv->items[j];
        hole = j;
    }
    kv->items[hole] = (struct kv_item){0};
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
        } else {
            free(old->held);
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

/* ---- the state machine ---- */

/* A copy of n bytes (at least one byte allocated), or NULL. */
static uint8_t *copy_locked(struct kv *kv, const uint8_t *b, uint32_t n)
{
    uint8_t *c = alloc_locked(kv, n ? n : 1, false);
    if (c && n)
        memcpy(c, b, n);
    return c;
}

/* Carries out a write; *held gets a copy of the value a cas found instead
 * of the one it expected. 0 or -ENOMEM with nothing changed. */
static int write_locked(struct kv *kv, const struct kv_command *c, enum kv_result *result,
                        uint8_t **held, uint32_t *held_len)
{
    struct kv_item *it = lookup_locked(kv, c->key, c->key_len);
    *result = KV_RESULT_DONE;
    switch (c->op) {
    case KV_OP_DELETE:
        if (it)
            remove_locked(kv, it);
        else
            *result = KV_RESULT_ABSENT;
        return 0;
    case KV_OP_CAS:
        if (!it) {
            *result = KV_RESULT_ABSENT;
            return 0;
        }
        if (it->value_len != c->expected_len ||
            memcmp(it->value, c->expected, c->expected_len) != 0) {
            *result = KV_RESULT_MISMATCH;
            *held = copy_locked(kv, it->value, it->value_len);
            *held_len = it->value_len;
            return *held ? 0 : -ENOMEM;
        }
        break;
    }
    return set_locked(kv, c->key, c->key_len, c->value, c->value_len);
}

/* 0, or -ENOMEM with the command not applied and its seq not recorded (its
 * clock and session expiry may have been: applying it again is the same). */
static int apply_command_locked(struct kv *kv, const uint8_t *data, uint32_t len)
{
    struct kv_command c;
    if (!kv_decode_command(data, len, &c))
        return 0;
    if (c.time_ms > kv->clock_ms)
        kv->clock_ms = c.time_ms;
    int rc = expire_sessions_locked(kv);
    if (rc == 0)
        rc = reserve_session_locked(kv);
    if (rc == 0)
        rc = reserve_deferred_locked(kv, 2); /* a delete frees a key and a value */
    if (rc)
        return rc;
    struct kv_session *s = find_session(kv->sessions, kv->sessions_cap, c.client_id);
    /* §6.3: a request already applied for this session is not applied again. */
    if (s->client_id == c.client_id && c.seq <= s->last_seq) {
        s->last_active_ms = kv->clock_ms;
        kv->duplicates++;
        return 0;
    }
    enum kv_result result;
    uint8_t *held = NULL;
    uint32_t held_len = 0;
    rc = write_locked(kv, &c, &result, &held, &held_len);
    if (rc)
        return rc;
    /* Recorded only once applied: a session never claims a write it lost. */
    s = session_locked(kv, c.client_id);
    s->last_active_ms = kv->clock_ms;
    s->last_seq = c.seq;
    s->last_result = (uint8_t)result;
    free(s->held);
    s->held = held;
    s->held_len = held_len;
    return 0;
}

int kv_apply_entry(struct kv *kv, uint64_t index, const struct raft_entry *e)
{
    pthread_mutex_lock(&kv->mu);
    int rc = e->type == RAFT_ENTRY_COMMAND ? apply_command_locked(kv, e->data, e->len) : 0;
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

/* A snapshot's view (kv_snapshot_capture): the items as of the capture,
 * pointing to bytes no write frees while the view is out, and the
 * sessions already serialized (they are few, and their answers change in
 * place). */
struct kv_view {
    uint64_t applied_index, clock_ms;
    struct kv_item *items;
    size_t n_items;
    uint8_t *sessions;
    size_t sessions_len;
};

static size_t sessions_size_locked(const struct kv *kv)
{
    size_t size = 8 + kv->n_sessions * (24 + 1 + 4);
    for (size_t i = 0; i < kv->sessions_cap; i++)
        size += kv->sessions[i].held_len;
    return size;
}

static uint8_t *put_sessions_locked(const struct kv *kv, uint8_t *p)
{
    put_u64(p, kv->n_sessions);
    p += 8;
    for (size_t i = 0; i < kv->sessions_cap; i++) {
        const struct kv_session *s = &kv->sessions[i];
        if (!s->client_id)
            continue;
        put_u64(p, s->client_id);
        put_u64(p + 8, s->last_seq);
        put_u64(p + 16, s->last_active_ms);
        p[24] = s->last_result;
        p = put_bytes(p + 25, s->held, s->held_len);
    }
    return p;
}

static void free_view(struct kv_view *v)
{
    free(v->items);
    free(v->sessions);
    free(v);
}

static int kv_snapshot_capture(void *ctx, void **out)
{
    struct kv *kv = ctx;
    struct kv_view *v = calloc(1, sizeof(*v));
    if (!v)
        return -ENOMEM;
    pthread_mutex_lock(&kv->mu);
    v->applied_index = kv->applied_index;
    v->clock_ms = kv->clock_ms;
    v->sessions_len = sessions_size_locked(kv);
    v->items = malloc(kv->n_items ? kv->n_items * sizeof(*v->items) : 1);
    v->sessions = malloc(v->sessions_len);
    if (!v->items || !v->sessions) {
        pthread_mutex_unlock(&kv->mu);
        free_view(v);
        return -ENOMEM;
    }
    for (size_t i = 0; i < kv->items_cap; i++) {
        const struct kv_item *it = &kv->items[i];
        if (!it->key)
            continue;
        v->items[v->n_items++] = *it;
    }
    put_sessions_locked(kv, v->sessions);
    kv->views++;
    pthread_mutex_unlock(&kv->mu);
    *out = v;
    return 0;
}

/* The view is done with: what writes put off freeing for it goes. */
static void release_view(struct kv *kv, struct kv_view *v)
{
    void **deferred = NULL;
    size_t n = 0;
    pthread_mutex_lock(&kv->mu);
    if (--kv->views == 0) {
        deferred = kv->deferred;
        n = kv->n_deferred;
        kv->deferred = NULL;
        kv->n_deferred = kv->deferred_cap = 0;
    }
    pthread_mutex_unlock(&kv->mu);
    for (size_t i = 0; i < n; i++)
        free(deferred[i]);
    free(deferred);
    free_view(v);
}

/* The serialized bytes go out a buffer at a time, so that a snapshot is
 * never whole in memory. */
#define SERIALIZE_BUFFER (1u << 20)

struct serializer {
    int (*write)(void *sink, const uint8_t *data, size_t len);
    void *sink;
    uint8_t *buf;
    size_t used;
    int rc;
};

static void flush(struct serializer *z)
{
    if (z->rc == 0 && z->used)
        z->rc = z->write(z->sink, z->buf, z->used);
    z->used = 0;
}

/* Room for n more bytes at z->buf + z->used, flushing first if need be;
 * NULL after a failed write, or for n larger than the buffer (then the
 * caller writes the bytes itself). */
static uint8_t *room(struct serializer *z, size_t n)
{
    if (z->used + n > SERIALIZE_BUFFER)
        flush(z);
    return z->rc || n > SERIALIZE_BUFFER ? NULL : z->buf + z->used;
}

static void emit(struct serializer *z, const uint8_t *data, size_t n)
{
    uint8_t *p = room(z, n);
    if (p) {
        memcpy(p, data, n);
        z->used += n;
    } else if (z->rc == 0) {
        z->rc = z->write(z->sink, data, n); /* larger than the buffer: as it is */
    }
}

static void emit_bytes(struct serializer *z, const uint8_t *data, uint32_t n)
{
    uint8_t len[4];
    put_u32(len, n);
    emit(z, len, 4);
    emit(z, data, n);
}

static int kv_snapshot_serialize(void *ctx, void *view,
                                 int (*write)(void *sink, const uint8_t *data, size_t len),
                                 void *sink)
{
    struct kv_view *v = view;
    struct serializer z = {.write = write, .sink = sink};
    if (write) {
        z.buf = malloc(SERIALIZE_BUFFER);
        z.rc = z.buf ? 0 : -ENOMEM;
        uint8_t head[28];
        put_u32(head, SNAPSHOT_MAGIC);
        put_u64(head + 4, v->applied_index);
        put_u64(head + 12, v->clock_ms);
        put_u64(head + 20, v->n_items);
        emit(&z, head, sizeof(head));
        for (size_t i = 0; i < v->n_items && z.rc == 0; i++) {
            emit_bytes(&z, v->items[i].key, v->items[i].key_len);
            emit_bytes(&z, v->items[i].value, v->items[i].value_len);
        }
        emit(&z, v->sessions, v->sessions_len);
        flush(&z);
        free(z.buf);
    }
    release_view(ctx, v);
    return z.rc;
}

static void clear_locked(struct kv *kv)
{
    for (size_t i = 0; i < kv->items_cap; i++) {
        release_locked(kv, kv->items[i].key);
        release_locked(kv, kv->items[i].value);
    }
    free(kv->items);
    for (size_t i = 0; i < kv->sessions_cap; i++)
        free(kv->sessions[i].held);
    free(kv->sessions);
    kv->items = NULL;
    kv->sessions = NULL;
    kv->items_cap = kv->n_items = kv->sessions_cap = kv->n_sessions = 0;
}

/* The snapshot comes from a stream (kv/stream.h): a large one is read
 * from storage a megabyte at a time, never whole in memory. */
static int restore_locked(struct kv *kv, struct stream *r)
{
    uint32_t magic = stream_u32(r);
    if (magic != SNAPSHOT_MAGIC && magic != SNAPSHOT_MAGIC_V1)
        return r->rc ? r->rc : -EBADMSG;
    stream_u64(r); /* applied index: the caller's index is authoritative */
    kv->clock_ms = stream_u64(r);
    uint64_t n = stream_u64(r);
    /* Every key takes at least 8 bytes: a larger count is corrupt, and
     * fails as the stream ends, before the table is sized for it. */
    if (n <= stream_left(r) / 8 && reserve_items_locked(kv, n))
        return -ENOMEM;
    /* The key is copied aside: the value's bytes may take its place. */
    uint8_t *key = NULL;
    size_t key_cap = 0;
    int rc = 0;
    for (uint64_t i = 0; i < n && !r->rc && !rc; i++) {
        uint32_t kl = stream_u32(r);
        const uint8_t *k = stream_take(r, kl);
        if (k && kl > key_cap) {
            uint8_t *b = realloc(key, kl);
            if (!b) {
                rc = -ENOMEM;
                break;
            }
            key = b;
            key_cap = kl;
        }
        if (k && kl)
            memcpy(key, k, kl);
        uint32_t vl = stream_u32(r);
        const uint8_t *v = stream_take(r, vl);
        if (!r->rc)
            rc = set_locked(kv, kl ? key : (const uint8_t *)"", kl, v, vl);
    }
    free(key);
    if (rc)
        return rc;
    n = stream_u64(r);
    for (uint64_t i = 0; i < n && !r->rc; i++) {
        uint64_t id = stream_u64(r), seq = stream_u64(r), active = stream_u64(r);
        uint8_t result = KV_RESULT_DONE;
        const uint8_t *held = NULL;
        uint32_t held_len = 0;
        if (magic == SNAPSHOT_MAGIC) {
            const uint8_t *p = stream_take(r, 1);
            result = p ? *p : KV_RESULT_DONE;
            held_len = stream_u32(r);
            held = stream_take(r, held_len);
        }
        if (r->rc)
            break;
        if (reserve_session_locked(kv))
            return -ENOMEM;
        struct kv_session *s = session_locked(kv, id);
        s->last_seq = seq;
        s->last_active_ms = active;
        s->last_result = result;
        if (held_len && !(s->held = copy_locked(kv, held, held_len)))
            return -ENOMEM;
        s->held_len = held_len;
    }
    return 0;
}

/* glibc grows a thread's arena heap only as far as each allocation needs,
 * with one mprotect per page: restoring a million 1 KB values made some
 * 260,000 of them, a quarter of the restore's time. While a restore
 * allocates, a top pad as large as an arena heap (64 MiB) maps each new
 * heap whole (address space only: pages are committed as they are first
 * touched). The documented default then returns, because the pad is also
 * what every arena keeps of the memory freed at its top. */
static void pad_heaps_for_restore(bool on)
{
#ifdef M_TOP_PAD
    mallopt(M_TOP_PAD, on ? 64 << 20 : 128 << 10);
#else
    (void)on;
#endif
}

static int kv_restore(void *ctx, uint64_t index, uint64_t len,
                      int (*read)(void *src, uint8_t *buf, size_t n), void *src)
{
    struct kv *kv = ctx;
    pthread_mutex_lock(&kv->mu);
    int rc = reserve_deferred_locked(kv, 2 * kv->n_items);
    if (rc) {
        pthread_mutex_unlock(&kv->mu);
        return rc;
    }
    clear_locked(kv);
    struct stream r;
    stream_init(&r, len, read, src);
    pad_heaps_for_restore(true);
    rc = restore_locked(kv, &r);
    pad_heaps_for_restore(false);
    int end = stream_finish(&r);
    kv->applied_index = index;
    pthread_mutex_unlock(&kv->mu);
    return rc ? rc : end;
}

struct raft_fsm kv_fsm(struct kv *kv)
{
    return (struct raft_fsm){.ctx = kv, .apply = kv_apply,
                             .snapshot_capture = kv_snapshot_capture,
                             .snapshot_serialize = kv_snapshot_serialize,
                             .restore = kv_restore, .describe = kv_describe_for_log};
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
    for (size_t i = 0; i < kv->n_deferred; i++)
        free(kv->deferred[i]);
    free(kv->deferred);
    kv->views = 0; /* none is out: the node that captured them has stopped */
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

int kv_request_result(struct kv *kv, uint64_t client_id, uint64_t seq, enum kv_result *result,
                      uint8_t **held, uint32_t *held_len)
{
    int rc = -ENOENT;
    pthread_mutex_lock(&kv->mu);
    const struct kv_session *s = kv->sessions_cap
        ? find_session(kv->sessions, kv->sessions_cap, client_id) : NULL;
    if (s && s->client_id == client_id && s->last_seq == seq) {
        *result = (enum kv_result)s->last_result;
        *held = NULL;
        *held_len = s->held_len;
        rc = 0;
        if (s->last_result == KV_RESULT_MISMATCH && !(*held = malloc(s->held_len + 1)))
            rc = -ENOMEM;
        else if (*held)
            memcpy(*held, s->held, s->held_len);
    }
    pthread_mutex_unlock(&kv->mu);
    return rc;
}
