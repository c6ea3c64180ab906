/*
 * store.h - the key-value state machine's tables (kv.c), shared with the
 * code that reads them whole (list.c). Not for use outside kv/.
 */
#ifndef KV_STORE_H
#define KV_STORE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kv_item {
    uint8_t *key; /* NULL: empty slot */
    uint32_t key_len;
    uint32_t value_len;
    uint8_t *value;
    uint64_t hash;
};

/* The answer to a session's last request is kept with it, so that a retry
 * of a delete or cas that was applied gets the same answer without being
 * executed again (thesis §6.3). */
struct kv_session {
    uint64_t client_id; /* 0: empty slot */
    uint64_t last_seq;
    uint64_t last_active_ms;
    uint8_t last_result; /* enum kv_result of last_seq */
    uint32_t held_len;
    uint8_t *held; /* KV_RESULT_MISMATCH: the value the key held (malloc'd) */
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
    /* Copy-on-write for snapshots (kv.c): while a captured view is out,
     * the keys and values it points to are not freed but put here, and
     * freed once the last view is released. Bytes of a key or value are
     * never changed in place, so nothing else needs copying. */
    unsigned views;
    void **deferred;
    size_t n_deferred, deferred_cap;
};

#endif
