/*
 * log.h - the in-memory Raft log.
 *
 * Entries base_index+1 .. base_index+n; everything up to base_index has been
 * compacted into a snapshot whose last entry had term base_term (§7). The
 * log owns the data of its entries. Entries applied and on disk may leave
 * memory (log_evict_through): their data is then NULL while their len
 * stays, and whoever needs it reads it back from storage.
 */
#ifndef RAFT_LOG_H
#define RAFT_LOG_H

#include "raft/raft.h"

struct raft_log {
    struct raft_entry *entries; /* entries[0] has index base_index + 1 */
    size_t n;
    size_t cap;
    uint64_t bytes;      /* of the entries' data, in memory or not */
    uint64_t resident;   /* of the data held in memory */
    /* Entries base_index+1 .. evicted_index have their data in storage
     * only, except configuration entries, which stay (reconfigure.c reads
     * them). At most base_index when none has left. */
    uint64_t evicted_index;
    uint64_t base_index; /* last index covered by the snapshot, 0 if none */
    uint64_t base_term;
    /* The indices of the configuration entries in the log, ascending (a
     * server uses the latest, thesis §4.1), and a count of the changes to
     * that list, so that the node sees at a glance whether it changed. */
    uint64_t *configs;
    size_t n_configs, configs_cap;
    uint64_t configs_changed;
};

void log_init(struct raft_log *l);
void log_free(struct raft_log *l);

uint64_t log_last_index(const struct raft_log *l);
uint64_t log_last_term(const struct raft_log *l);

/* The term of the entry at index: base_term at base_index, 0 at index 0,
 * and 0 when the log has no such entry (compacted or beyond the end). */
uint64_t log_term_at(const struct raft_log *l, uint64_t index);

/* The bytes of the entries' data after index (all of them when index is
 * at or below the base). */
uint64_t log_bytes_after(const struct raft_log *l, uint64_t index);

/* The entry at index, or NULL when compacted or beyond the end. */
const struct raft_entry *log_get(const struct raft_log *l, uint64_t index);

/* Appends a copy of data as a new last entry. Returns 0 or -ENOMEM. */
int log_append(struct raft_log *l, uint64_t term, uint8_t type,
               const uint8_t *data, uint32_t len);

/* Appends taking ownership of entry->data. */
int log_append_owned(struct raft_log *l, const struct raft_entry *entry);

/* Copies entries from .. from+count-1 (all in the log) into out[], and
 * their data into *bytes, grown as needed, so that they can be used without
 * the log: outside the node's lock, while it changes. Returns 0 or -ENOMEM. */
int log_copy(const struct raft_log *l, uint64_t from, size_t count, struct raft_entry *out,
             uint8_t **bytes, size_t *bytes_cap);

/* Drops from memory the data of the entries up to index (all but
 * configuration entries'), which are stored and which storage can give
 * back: once applied, they are read only to be sent to a follower, and
 * they never change (committed, State Machine Safety, §5.4.3). */
void log_evict_through(struct raft_log *l, uint64_t index);

/* Whether the entry at index has its data only in storage. */
bool log_evicted(const struct raft_log *l, uint64_t index);

/* Deletes every entry with index >= from (conflict truncation, §5.3). */
void log_truncate(struct raft_log *l, uint64_t from);

/* Discards entries <= index, which a snapshot now covers (§7). If the log
 * does not reach index, it becomes empty with base index/term given. */
void log_compact(struct raft_log *l, uint64_t index, uint64_t term);

/* The index of the latest configuration entry at or before index, or 0
 * when the log holds none there. */
uint64_t log_last_config_at(const struct raft_log *l, uint64_t index);

/* The first index of the run of entries with the same term as `index`
 * (fast backup, §5.3). */
uint64_t log_first_index_of_term(const struct raft_log *l, uint64_t index);

/* The last index holding an entry of `term`, or 0 if the log has none. */
uint64_t log_last_index_of_term(const struct raft_log *l, uint64_t term);

#endif
