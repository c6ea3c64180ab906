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
 * Its apply returns -ENOMEM when an entry cannot be applied: the node then
 * stops rather than diverge from the replicas that applied it. */
struct raft_fsm kv_fsm(struct kv *kv);

/* Applies the committed entry at index. 0, or -ENOMEM with nothing of it
 * applied (the put's seq is not recorded, the applied index stays). */
int kv_apply_entry(struct kv *kv, uint64_t index, const struct raft_entry *e);

/* A write as a log entry's payload. Layout (big-endian):
 *   u8 op  u64 client_id  u64 seq  u64 leader_time_ms  u32 key_len key
 *   then for a put:    u32 value_len value
 *        for a delete: nothing
 *        for a cas:    u32 expected_len expected  u32 value_len value */
enum kv_op { KV_OP_PUT = 1, KV_OP_DELETE = 2, KV_OP_CAS = 3 };

struct kv_command {
    uint8_t op; /* enum kv_op */
    uint64_t client_id, seq, time_ms;
    const uint8_t *key, *expected, *value; /* borrowed */
    uint32_t key_len, expected_len, value_len;
};
size_t kv_command_size(const struct kv_command *c);
size_t kv_encode_command(uint8_t *buf, const struct kv_command *c);
/* Decodes an entry's command; false if it is not one. Pointers point into
 * data. */
bool kv_decode_command(const uint8_t *data, uint32_t len, struct kv_command *c);
/* The log's words for a write, "put greeting from client C seq 3": the
 * state machine's describe callback (struct raft_fsm). */
void kv_describe_for_log(void *ctx, const uint8_t *data, uint32_t len, char *buf, size_t cap);

/* What an applied write did, kept with its session (thesis §6.3) so that
 * a retry of it is answered alike: done; the key did not exist (delete,
 * cas); it held another value than the cas expected. */
enum kv_result { KV_RESULT_DONE, KV_RESULT_ABSENT, KV_RESULT_MISMATCH };

/* The result of the session's request seq, if it is the last one the
 * session applied: 0 with *result, and for a mismatch *held, a malloc'd
 * copy of what the key held (NULL otherwise). -ENOENT if not applied (or
 * no longer the last), -ENOMEM. */
int kv_request_result(struct kv *kv, uint64_t client_id, uint64_t seq, enum kv_result *result,
                      uint8_t **held, uint32_t *held_len);

/* The keys that start with prefix, sorted bytewise, with their values if
 * asked, as a malloc'd listing of at most max bytes (-EMSGSIZE if larger):
 *   u32 count, then per key: u32 key_len key [u32 value_len value] */
int kv_list(struct kv *kv, const uint8_t *prefix, uint32_t prefix_len, bool values,
            size_t max, uint8_t **out, uint32_t *out_len);
/* Reads the next key (and value) of a listing after its count; advances
 * *p and *left. 0 or -EBADMSG. */
int kv_listing_next(const uint8_t **p, size_t *left, bool values, const uint8_t **key,
                    uint32_t *key_len, const uint8_t **value, uint32_t *value_len);

/* A put, encoded as above. */
size_t kv_put_size(uint32_t key_len, uint32_t value_len);
size_t kv_encode_put(uint8_t *buf, uint64_t client_id, uint64_t seq, uint64_t time_ms,
                     const uint8_t *key, uint32_t key_len,
                     const uint8_t *value, uint32_t value_len);

/* A command entry in words, for people: "put KEY = VALUE  (client C, seq
 * S)", "delete KEY ...", "cas KEY if EXPECTED = NEW ...", unprintable bytes
 * escaped, long keys and values cut. Writes a NUL-terminated string of at
 * most cap bytes and returns its length, or -EBADMSG when data is not a
 * command. (`raft dump` prints entries with it.) */
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
