/*
 * kv.h - the replicated state machine: a key-value map with client sessions.
 *
 * Every put reaches it as a committed log entry and is applied in log order
 * on every node. Client sessions (Raft thesis §6.3) make a retried put take
 * effect once: each client numbers its requests, and the map remembers the
 * last number applied per client. Sessions idle for longer than the session
 * timeout are expired, judged by the leader's clock carried in each entry,
 * so that every replica expires the same sessions at the same index.
 */
#ifndef KV_KV_H
#define KV_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raft/raft.h"

#define KV_DEFAULT_SESSION_TIMEOUT_MS (60ull * 60 * 1000)

struct kv;

struct kv *kv_new(uint64_t session_timeout_ms);
void kv_free(struct kv *kv);

/* The table of functions a Raft node drives (apply, snapshot, restore).
 * Its apply aborts the process when an entry cannot be applied (out of
 * memory): the replica stops rather than diverge. */
struct raft_fsm kv_fsm(struct kv *kv);

/* Applies the committed entry at index. 0, or -ENOMEM with nothing of it
 * applied (the put's seq is not recorded, the applied index stays). */
int kv_apply_entry(struct kv *kv, uint64_t index, const struct raft_entry *e);

/* A put as a log entry's payload. Layout (big-endian):
 *   u8 op (1 = put)  u64 client_id  u64 seq  u64 leader_time_ms
 *   u32 key_len  key  u32 value_len  value */
size_t kv_put_size(uint32_t key_len, uint32_t value_len);
size_t kv_encode_put(uint8_t *buf, uint64_t client_id, uint64_t seq, uint64_t time_ms,
                     const uint8_t *key, uint32_t key_len,
                     const uint8_t *value, uint32_t value_len);

/* A put entry's payload decoded; key and value point into the payload. */
struct kv_put {
    uint64_t client_id, seq, time_ms;
    const uint8_t *key, *value;
    uint32_t key_len, value_len;
};

/* 0, or -EBADMSG when data is not a well-formed put. */
int kv_decode_put(const uint8_t *data, uint32_t len, struct kv_put *out);

/* A command entry in words, for people: "put KEY = VALUE  (client C, seq
 * S)", unprintable bytes escaped, long keys and values cut. Writes a
 * NUL-terminated string of at most cap bytes and returns its length, or
 * -EBADMSG when data is not a put. (`raft dump` prints entries with it.) */
int kv_describe_entry(char *buf, size_t cap, const uint8_t *data, uint32_t len);

/* Copies the value of key into a malloc'd buffer. 0 or -ENOENT/-ENOMEM. */
int kv_get(struct kv *kv, const uint8_t *key, uint32_t key_len,
           uint8_t **value, uint32_t *value_len);

/* Whether the session's request `seq` has been applied. */
bool kv_applied_request(struct kv *kv, uint64_t client_id, uint64_t seq);

struct kv_stats {
    uint64_t applied_index;
    uint64_t keys;
    uint64_t sessions;
    uint64_t duplicates; /* committed puts not applied: their request already was */
    uint64_t hash; /* of the whole state: replicas that agree have equal hashes */
};
void kv_get_stats(struct kv *kv, struct kv_stats *st);

/* For tests: after n more allocations by the state machine, every one
 * fails (n < 0: none fails). */
void kv_fail_allocations_after(struct kv *kv, long n);

#endif
