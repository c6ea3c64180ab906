/*
 * command.c - the byte formats of the key-value store outside its
 * snapshot: a write as a log entry's payload (kv.h gives the layout), the
 * same entry in words for the logs and `raft dump`, and a listing's
 * entries.
 */
#include "kv/kv.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "kv/bytes.h"
size_t kv_command_size(const struct kv_command *c)
{
    size_t n = 1 + 8 + 8 + 8 + 4 + (size_t)c->key_len;
    if (c->op == KV_OP_CAS)
        n += 4 + (size_t)c->expected_len;
    if (c->op != KV_OP_DELETE)
        n += 4 + (size_t)c->value_len;
    return n;
}

size_t kv_encode_command(uint8_t *buf, const struct kv_command *c)
{
    uint8_t *p = buf;
    *p++ = c->op;
    put_u64(p, c->client_id);
    put_u64(p + 8, c->seq);
    put_u64(p + 16, c->time_ms);
    p = put_bytes(p + 24, c->key, c->key_len);
    if (c->op == KV_OP_CAS)
        p = put_bytes(p, c->expected, c->expected_len);
    if (c->op != KV_OP_DELETE)
        p = put_bytes(p, c->value, c->value_len);
    return (size_t)(p - buf);
}

size_t kv_put_size(uint32_t key_len, uint32_t value_len)
{
    return kv_command_size(&(struct kv_command){.op = KV_OP_PUT, .key_len = key_len,
                                                .value_len = value_len});
}

size_t kv_encode_put(uint8_t *buf, uint64_t client_id, uint64_t seq, uint64_t time_ms,
                     const uint8_t *key, uint32_t key_len,
                     const uint8_t *value, uint32_t value_len)
{
    struct kv_command c = {.op = KV_OP_PUT, .client_id = client_id, .seq = seq,
                           .time_ms = time_ms, .key = key, .key_len = key_len,
                           .value = value, .value_len = value_len};
    return kv_encode_command(buf, &c);
}

/* Decodes an entry's command; false if it is not one (never proposed:
 * every replica skips it alike). Pointers point into data. */
bool kv_decode_command(const uint8_t *data, uint32_t len, struct kv_command *c)
{
    struct reader r = {.p = data, .left = len};
    const uint8_t *op = take(&r, 1);
    *c = (struct kv_command){.op = op ? *op : 0};
    c->client_id = take_u64(&r);
    c->seq = take_u64(&r);
    c->time_ms = take_u64(&r);
    c->key_len = take_u32(&r);
    c->key = take(&r, c->key_len);
    if (c->op == KV_OP_CAS) {
        c->expected_len = take_u32(&r);
        c->expected = take(&r, c->expected_len);
    }
    if (c->op != KV_OP_DELETE) {
        c->value_len = take_u32(&r);
        c->value = take(&r, c->value_len);
    }
    return !r.bad && r.left == 0 &&
           (c->op == KV_OP_PUT || c->op == KV_OP_DELETE || c->op == KV_OP_CAS);
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
    static const char *const names[] = {[KV_OP_PUT] = "put", [KV_OP_DELETE] = "delete",
                                        [KV_OP_CAS] = "cas"};
    struct kv_command c;
    if (cap == 0 || !kv_decode_command(data, len, &c))
        return -EBADMSG;
    size_t used = (size_t)snprintf(buf, cap, "%s ", names[c.op]);
    describe_bytes(buf, cap, &used, c.key, c.key_len);
    if (c.op == KV_OP_CAS && used < cap) {
        used += (size_t)snprintf(buf + used, cap - used, " if ");
        describe_bytes(buf, cap, &used, c.expected, c.expected_len);
    }
    if (c.op != KV_OP_DELETE && used < cap) {
        used += (size_t)snprintf(buf + used, cap - used, " = ");
        describe_bytes(buf, cap, &used, c.value, c.value_len);
    }
    if (used < cap)
        used += (size_t)snprintf(buf + used, cap - used, "  (client %016" PRIx64 ", seq %"
                                 PRIu64 ")", c.client_id, c.seq);
    return (int)(used < cap ? used : cap - 1);
}

/* At most max bytes of s for a log line: printable ASCII as it is, the rest
 * as \xNN, and "..." when cut short. */
static void quote_for_log(char *buf, size_t cap, const uint8_t *s, uint32_t len, uint32_t max)
{
    size_t off = 0;
    for (uint32_t i = 0; i < len && i < max && off + 5 < cap; i++)
        off += (size_t)snprintf(buf + off, cap - off, s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\\'
                                ? "%c" : "\\x%02x", s[i]);
    if (len > max && off + 4 < cap)
        snprintf(buf + off, cap - off, "...");
}

/* The log's words for a write: "put greeting from client 7 seq 3". Reads
 * the entry only, never the map: the node calls it holding its own lock. */
void kv_describe_for_log(void *ctx, const uint8_t *data, uint32_t len, char *buf, size_t cap)
{
    (void)ctx;
    static const char *const names[] = {[KV_OP_PUT] = "put", [KV_OP_DELETE] = "delete",
                                        [KV_OP_CAS] = "cas"};
    struct kv_command c;
    if (!kv_decode_command(data, len, &c))
        return; /* the node says "command (N bytes)" */
    char quoted[160] = "";
    quote_for_log(quoted, sizeof(quoted), c.key, c.key_len, 32);
    snprintf(buf, cap, "%s %s from client %016llx seq %llu", names[c.op], quoted,
             (unsigned long long)c.client_id, (unsigned long long)c.seq);
}

int kv_listing_next(const uint8_t **p, size_t *left, bool values, const uint8_t **key,
                    uint32_t *key_len, const uint8_t **value, uint32_t *value_len)
{
    struct reader r = {.p = *p, .left = *left};
    *key_len = take_u32(&r);
    *key = take(&r, *key_len);
    if (values) {
        *value_len = take_u32(&r);
        *value = take(&r, *value_len);
    }
    if (r.bad)
        return -EBADMSG;
    *p = r.p;
    *left = r.left;
    return 0;
}
