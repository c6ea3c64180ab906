/*
 * bytes.h - big-endian fields and a bounds-checked reader, for the byte
 * formats of kv/ (log entries, listings, snapshots).
 */
#ifndef KV_BYTES_H
#define KV_BYTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>


static inline void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static inline void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

/* A byte string: u32 length, then the bytes. Returns the end. */
static inline uint8_t *put_bytes(uint8_t *p, const uint8_t *b, uint32_t n)
{
    put_u32(p, n);
    if (n)
        memcpy(p + 4, b, n);
    return p + 4 + n;
}

static inline uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t get_u64(const uint8_t *p)
{
    return (uint64_t)get_u32(p) << 32 | get_u32(p + 4);
}

/* A bounds-checked reader over a byte buffer. */
struct reader {
    const uint8_t *p;
    size_t left;
    bool bad;
};

static inline const uint8_t *take(struct reader *r, size_t n)
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

static inline uint64_t take_u64(struct reader *r)
{
    const uint8_t *p = take(r, 8);
    return p ? get_u64(p) : 0;
}

static inline uint32_t take_u32(struct reader *r)
{
    const uint8_t *p = take(r, 4);
    return p ? get_u32(p) : 0;
}


#endif
