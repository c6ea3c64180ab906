/*
 * log.c - the in-memory Raft log: an array of entries after a snapshot base.
 */
#include "raft/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void log_init(struct raft_log *l)
{
    memset(l, 0, sizeof(*l));
}

/* Frees the data of n of l's entries from e on, which leave the log. */
static void free_entries(struct raft_log *l, struct raft_entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        l->bytes -= e[i].len;
        if (e[i].data)
            l->resident -= e[i].len;
        free(e[i].data);
    }
}

void log_free(struct raft_log *l)
{
    free_entries(l, l->entries, l->n);
    free(l->entries);
    free(l->configs);
    log_init(l);
}

uint64_t log_last_index(const struct raft_log *l)
{
    return l->base_index + l->n;
}

uint64_t log_last_term(const struct raft_log *l)
{
    return l->n ? l->entries[l->n - 1].term : l->base_term;
}

const struct raft_entry *log_get(const struct raft_log *l, uint64_t index)
{
    if (index <= l->base_index || index > log_last_index(l))
        return NULL;
    return &l->entries[index - l->base_index - 1];
}

uint64_t log_bytes_after(const struct raft_log *l, uint64_t index)
{
    if (index <= l->base_index)
        return l->bytes;
    uint64_t bytes = 0;
    for (uint64_t i = index + 1; i <= log_last_index(l); i++)
        bytes += l->entries[i - l->base_index - 1].len;
    return bytes;
}

uint64_t log_term_at(const struct raft_log *l, uint64_t index)
{
    if (index == l->base_index)
        return l->base_term;
    const struct raft_entry *e = log_get(l, index);
    return e ? e->term : 0;
}

static int reserve(struct raft_log *l, size_t want)
{
    if (want <= l->cap)
        return 0;
    size_t cap = l->cap ? l->cap * 2 : 64;
    while (cap < want)
        cap *= 2;
    struct raft_entry *e = realloc(l->entries, cap * sizeof(*e));
    if (!e)
        return -ENOMEM;
    l->entries = e;
    l->cap = cap;
    return 0;
}

static int note_config(struct raft_log *l, uint64_t index)
{
    if (l->n_configs == l->configs_cap) {
        size_t cap = l->configs_cap ? l->configs_cap * 2 : 4;
        uint64_t *c = realloc(l->configs, cap * sizeof(*c));
        if (!c)
            return -ENOMEM;
        l->configs = c;
        l->configs_cap = cap;
    }
    l->configs[l->n_configs++] = index;
    l->configs_changed++;
    return 0;
}

/* Forgets the configuration entries outside base_index+1 .. last index. */
static void forget_configs_outside(struct raft_log *l)
{
    size_t drop = 0, keep = l->n_configs;
    while (drop < keep && l->configs[drop] <= l->base_index)
        drop++;
    while (keep > drop && l->configs[keep - 1] > log_last_index(l))
        keep--;
    if (drop == 0 && keep == l->n_configs)
        return;
    memmove(l->configs, l->configs + drop, (keep - drop) * sizeof(*l->configs));
    l->n_configs = keep - drop;
    l->configs_changed++;
}

int log_append_owned(struct raft_log *l, const struct raft_entry *entry)
{
    int rc = reserve(l, l->n + 1);
    if (rc == 0 && entry->type == RAFT_ENTRY_CONFIG)
        rc = note_config(l, log_last_index(l) + 1);
    if (rc)
        return rc;
    l->entries[l->n++] = *entry;
    l->bytes += entry->len;
    if (entry->data)
        l->resident += entry->len;
    return 0;
}

int log_append(struct raft_log *l, uint64_t term, uint8_t type,
               const uint8_t *data, uint32_t len)
{
    struct raft_entry e = {.term = term, .type = type, .len = len};
    if (len) {
        e.data = malloc(len);
        if (!e.data)
            return -ENOMEM;
        memcpy(e.data, data, len);
    }
    int rc = log_append_owned(l, &e);
    if (rc)
        free(e.data);
    return rc;
}

int log_copy(const struct raft_log *l, uint64_t from, size_t count, struct raft_entry *out,
             uint8_t **bytes, size_t *bytes_cap)
{
    size_t total = 0;
    for (size_t i = 0; i < count; i++)
        total += log_get(l, from + i)->len;
    if (total > *bytes_cap) {
        uint8_t *b = realloc(*bytes, total);
        if (!b)
            return -ENOMEM;
        *bytes = b;
        *bytes_cap = total;
    }
    size_t off = 0;
    for (size_t i = 0; i < count; i++) {
        const struct raft_entry *e = log_get(l, from + i);
        out[i] = *e;
        out[i].data = e->len ? *bytes + off : NULL;
        if (e->len)
            memcpy(*bytes + off, e->data, e->len);
        off += e->len;
    }
    return 0;
}

void log_evict_through(struct raft_log *l, uint64_t index)
{
    if (index > log_last_index(l))
        index = log_last_index(l);
    uint64_t from = (l->evicted_index > l->base_index ? l->evicted_index : l->base_index) + 1;
    for (uint64_t i = from; i <= index; i++) {
        struct raft_entry *e = &l->entries[i - l->base_index - 1];
        if (e->type == RAFT_ENTRY_CONFIG || !e->data)
            continue;
        l->resident -= e->len;
        free(e->data);
        e->data = NULL;
    }
    if (index > l->evicted_index)
        l->evicted_index = index;
}

bool log_evicted(const struct raft_log *l, uint64_t index)
{
    return index > l->base_index && index <= l->evicted_index;
}

void log_truncate(struct raft_log *l, uint64_t from)
{
    if (from <= l->base_index)
        from = l->base_index + 1;
    if (from > log_last_index(l))
        return;
    size_t keep = from - l->base_index - 1;
    free_entries(l, l->entries + keep, l->n - keep);
    l->n = keep;
    if (l->evicted_index >= from)
        l->evicted_index = from - 1;
    forget_configs_outside(l);
}

void log_compact(struct raft_log *l, uint64_t index, uint64_t term)
{
    /* LAB(snapshots): drop the entries up to index, which become the base (§7) */
    if (index <= l->base_index)
        return;
    if (index >= log_last_index(l)) {
        free_entries(l, l->entries, l->n);
        l->n = 0;
    } else {
        size_t drop = index - l->base_index;
        free_entries(l, l->entries, drop);
        memmove(l->entries, l->entries + drop,
                (l->n - drop) * sizeof(*l->entries));
        l->n -= drop;
    }
    l->base_index = index;
    l->base_term = term;
    /* END LAB: (void)l; (void)index; (void)term; */
    if (l->evicted_index < index)
        l->evicted_index = index;
    forget_configs_outside(l);
}

uint64_t log_last_config_at(const struct raft_log *l, uint64_t index)
{
    for (size_t i = l->n_configs; i > 0; i--)
        if (l->configs[i - 1] <= index)
            return l->configs[i - 1];
    return 0;
}

uint64_t log_first_index_of_term(const struct raft_log *l, uint64_t index)
{
    uint64_t term = log_term_at(l, index);
    while (index > l->base_index + 1 && log_term_at(l, index - 1) == term)
        index--;
    return index;
}

uint64_t log_last_index_of_term(const struct raft_log *l, uint64_t term)
{
    /* Terms never decrease along the log, so scan back until below term. */
    for (uint64_t i = log_last_index(l); i > l->base_index; i--) {
        uint64_t t = log_term_at(l, i);
        if (t == term)
            return i;
        if (t < term)
            return 0;
    }
    return 0;
}
