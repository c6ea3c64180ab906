/*
 * membership.c - a configuration as data (thesis ch. 4): its members, who
 * votes, and the bytes of a configuration entry. A leaf: no node here.
 *
 * The entry's bytes, little-endian:
 *   u8  version (1)   u8 n   u64 removed (bit i: id i was removed)
 *   n times: u32 id, u8 voter (0/1), u8 addr_len, addr_len bytes of address
 */
#include "raft/membership.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define MEMBERSHIP_VERSION 1

static size_t put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    return 8;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

size_t raft_membership_encode(const struct raft_membership *m, uint8_t *buf)
{
    size_t off = 0;
    buf[off++] = MEMBERSHIP_VERSION;
    buf[off++] = (uint8_t)m->n;
    off += put_u64(buf + off, m->removed);
    for (uint32_t i = 0; i < m->n; i++) {
        const struct raft_member *x = &m->members[i];
        size_t len = strnlen(x->addr, RAFT_ADDR_MAX - 1);
        for (int b = 0; b < 4; b++)
            buf[off++] = (uint8_t)(x->id >> (8 * b));
        buf[off++] = x->voter ? 1 : 0;
        buf[off++] = (uint8_t)len;
        memcpy(buf + off, x->addr, len);
        off += len;
    }
    return off;
}

int raft_membership_decode(struct raft_membership *m, const uint8_t *buf, size_t len)
{
    memset(m, 0, sizeof(*m));
    if (len < 10 || buf[0] != MEMBERSHIP_VERSION || buf[1] > RAFT_MAX_NODES)
        return -EINVAL;
    m->n = buf[1];
    m->removed = get_u64(buf + 2);
    size_t off = 10;
    for (uint32_t i = 0; i < m->n; i++) {
        struct raft_member *x = &m->members[i];
        if (len - off < 6)
            return -EINVAL;
        x->id = (uint32_t)buf[off] | (uint32_t)buf[off + 1] << 8 |
                (uint32_t)buf[off + 2] << 16 | (uint32_t)buf[off + 3] << 24;
        uint8_t voter = buf[off + 4], alen = buf[off + 5];
        off += 6;
        if (x->id > RAFT_MAX_ID || voter > 1 || alen >= RAFT_ADDR_MAX || len - off < alen ||
            raft_membership_find(m, x->id) != x || (m->removed >> x->id & 1))
            return -EINVAL;
        x->voter = voter;
        memcpy(x->addr, buf + off, alen);
        x->addr[alen] = '\0';
        off += alen;
    }
    return off == len ? 0 : -EINVAL;
}

const struct raft_member *raft_membership_find(const struct raft_membership *m, uint32_t id)
{
    for (uint32_t i = 0; i < m->n; i++)
        if (m->members[i].id == id)
            return &m->members[i];
    return NULL;
}

void raft_membership_of_size(struct raft_membership *m, uint32_t n, const char *const *addrs)
{
    memset(m, 0, sizeof(*m));
    m->n = n < RAFT_MAX_NODES ? n : RAFT_MAX_NODES;
    for (uint32_t i = 0; i < m->n; i++) {
        m->members[i].id = i;
        m->members[i].voter = true;
        if (addrs && addrs[i])
            snprintf(m->members[i].addr, sizeof(m->members[i].addr), "%s", addrs[i]);
    }
}

bool membership_is_voter(const struct raft_membership *m, uint32_t id)
{
    const struct raft_member *x = raft_membership_find(m, id);
    return x && x->voter;
}

uint32_t membership_voters(const struct raft_membership *m)
{
    uint32_t v = 0;
    for (uint32_t i = 0; i < m->n; i++)
        v += m->members[i].voter;
    return v;
}

bool membership_is_majority(const struct raft_membership *m, uint64_t ids)
{
    uint32_t granted = 0;
    for (uint32_t i = 0; i < m->n; i++)
        if (m->members[i].voter && (ids >> m->members[i].id & 1))
            granted++;
    return granted > membership_voters(m) / 2;
}

void membership_describe(const struct raft_membership *m, char *buf, size_t cap)
{
    size_t off = 0;
    buf[0] = '\0';
    for (uint32_t i = 0; i < m->n && off < cap; i++)
        off += (size_t)snprintf(buf + off, cap - off, "%sn%u%s", i ? " " : "",
                                m->members[i].id, m->members[i].voter ? "" : " (learner)");
    if (m->n == 0)
        snprintf(buf, cap, "no members");
}

/* ---- the configuration a snapshot covers ---- */

#define SNAPSHOT_MAGIC "RCF1"

size_t membership_snapshot_header(const struct raft_membership *m, uint8_t *buf)
{
    size_t len = raft_membership_encode(m, buf + 8);
    memcpy(buf, SNAPSHOT_MAGIC, 4);
    for (int b = 0; b < 4; b++)
        buf[4 + b] = (uint8_t)(len >> (8 * b));
    return 8 + len;
}

int membership_snapshot_split(const uint8_t *data, size_t len, struct raft_membership *m,
                              bool *found, size_t *state_offset)
{
    *found = false;
    *state_offset = 0;
    memset(m, 0, sizeof(*m));
    if (len < 8 || memcmp(data, SNAPSHOT_MAGIC, 4) != 0)
        return 0; /* written before snapshots carried their configuration */
    size_t clen = (size_t)data[4] | (size_t)data[5] << 8 | (size_t)data[6] << 16 |
                  (size_t)data[7] << 24;
    if (clen > len - 8 || raft_membership_decode(m, data + 8, clen) != 0)
        return -EINVAL;
    *found = true;
    *state_offset = 8 + clen;
    return 0;
}
