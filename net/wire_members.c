/*
 * wire_members.c - a node's view of its configuration (thesis ch. 4) as
 * the value of a client reply: what `raft client status` and `member list`
 * print.
 *
 * Layout, big-endian and fixed width like every frame (net/wire.c):
 *
 *   u64 index       the configuration entry's index; 0: from the snapshot
 *                   or the bootstrap configuration
 *   u8  committed   0 or 1
 *   u64 removed     bit i: id i was removed and is never accepted again
 *   u8  n           members, at most RAFT_MAX_NODES
 *   n times:  u32 id (0 .. RAFT_MAX_ID), u8 voter (0 or 1),
 *             u64 match (the leader's matchIndex for it; 0 elsewhere),
 *             u8 addr_len (below RAFT_ADDR_MAX), addr_len bytes "host:port"
 *
 * The decoder refuses what no encoder writes (a boolean other than 0 or 1,
 * an id twice, an address with a NUL, trailing bytes), so that a decoded
 * view re-encodes to the same bytes.
 */
#include "net/wire.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

static uint8_t *put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
    return p + 4;
}

static uint8_t *put_u64(uint8_t *p, uint64_t v)
{
    return put_u32(put_u32(p, (uint32_t)(v >> 32)), (uint32_t)v);
}

size_t wire_members_encode(const struct raft_membership_view *v, uint8_t *buf)
{
    const struct raft_membership *m = &v->config;
    uint32_t n = m->n < RAFT_MAX_NODES ? m->n : RAFT_MAX_NODES;
    uint8_t *p = put_u64(buf, v->index);
    *p++ = v->committed ? 1 : 0;
    p = put_u64(p, m->removed);
    *p++ = (uint8_t)n;
    for (uint32_t i = 0; i < n; i++) {
        const struct raft_member *x = &m->members[i];
        size_t len = strnlen(x->addr, RAFT_ADDR_MAX - 1);
        p = put_u32(p, x->id);
        *p++ = x->voter ? 1 : 0;
        p = put_u64(p, v->match[i]);
        *p++ = (uint8_t)len;
        memcpy(p, x->addr, len);
        p += len;
    }
    return (size_t)(p - buf);
}

/* A cursor over the value; the first shortfall sticks. */
struct members_reader {
    const uint8_t *p;
    size_t left;
    bool bad;
};

static const uint8_t *take(struct members_reader *r, size_t n)
{
    if (r->bad || r->left < n) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *at = r->p;
    r->p += n;
    r->left -= n;
    return at;
}

static uint64_t get_uint(struct members_reader *r, size_t width)
{
    const uint8_t *p = take(r, width);
    uint64_t v = 0;
    for (size_t i = 0; p && i < width; i++)
        v = v << 8 | p[i];
    return v;
}

static bool get_bool(struct members_reader *r)
{
    uint64_t v = get_uint(r, 1);
    if (v > 1)
        r->bad = true;
    return v == 1;
}

static void get_member(struct members_reader *r, struct raft_membership_view *v, uint32_t i)
{
    struct raft_member *x = &v->config.members[i];
    uint64_t id = get_uint(r, 4);
    x->voter = get_bool(r);
    v->match[i] = get_uint(r, 8);
    size_t len = (size_t)get_uint(r, 1);
    const uint8_t *addr = len < RAFT_ADDR_MAX ? take(r, len) : NULL;
    if (r->bad || id > RAFT_MAX_ID || !addr || memchr(addr, '\0', len)) {
        r->bad = true;
        return;
    }
    x->id = (uint32_t)id;
    memcpy(x->addr, addr, len);
    x->addr[len] = '\0';
    for (uint32_t j = 0; j < i; j++)
        if (v->config.members[j].id == x->id)
            r->bad = true;
}

int wire_members_decode(struct raft_membership_view *v, const uint8_t *buf, size_t len)
{
    memset(v, 0, sizeof(*v));
    struct members_reader r = {.p = buf, .left = len};
    v->index = get_uint(&r, 8);
    v->committed = get_bool(&r);
    v->config.removed = get_uint(&r, 8);
    uint64_t n = get_uint(&r, 1);
    if (n > RAFT_MAX_NODES)
        r.bad = true;
    for (uint32_t i = 0; !r.bad && i < n; i++)
        get_member(&r, v, i);
    if (r.bad || r.left != 0) {
        memset(v, 0, sizeof(*v));
        return -EBADMSG;
    }
    v->config.n = (uint32_t)n;
    return 0;
}
