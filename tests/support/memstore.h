/*
 * memstore.h - in-memory struct raft_storage for the lab harness: the lab's
 * Persister.
 *
 * What a storage function has returned success for survives a crash; the
 * node's later writes do not (memstore_crash makes every handle given out
 * so far fail with -EIO, as if the power had gone). A restarted node gets a
 * fresh handle (memstore_storage) over the same saved state.
 *
 * It also checks the storage contract as it goes and reports a violation
 * through the callback given to memstore_new:
 *   - append must start at the stored last index + 1 (no holes, no overlap);
 *   - truncate must not reach into the snapshot;
 *   - the term never goes back, and within one term the vote never changes
 *     from one candidate to another (a second vote in a term);
 *   - a snapshot never replaces a newer one.
 * and, given what the harness knows to be committed (memstore_set_committed):
 *   - truncate never deletes a committed entry (a stored entry with the
 *     index and term of an entry the cluster applied). Figure 2,
 *     AppendEntries rule 3: a follower deletes only an entry that conflicts
 *     with the leader's, and a committed entry conflicts with no leader's.
 *     One exception, Figure 13 rule 7: an InstallSnapshot whose last entry
 *     the log lacks discards the whole log; the store then reports a
 *     committed entry among those discarded only if its next write is not a
 *     snapshot that covers it (a crash in between is allowed: the entries
 *     are on the majority that committed the snapshot);
 *   - a snapshot's last included term, when it is saved or loaded, is the
 *     term of the committed entry at its index.
 */
#ifndef TESTS_SUPPORT_MEMSTORE_H
#define TESTS_SUPPORT_MEMSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raft/raft.h"

struct memstore;

typedef void (*memstore_violation_fn)(void *ctx, unsigned id, const char *what);

struct memstore *memstore_new(unsigned id, memstore_violation_fn violation, void *ctx);
void memstore_free(struct memstore *s);

/* What the harness knows to be committed. truncate, save_snapshot and load
 * call lock() before taking the store's own lock (so the two checks see the
 * committed entries and the stored log at one instant), term_at() with
 * both held, and unlock() after releasing the store's lock. */
struct memstore_committed {
    void *ctx;
    void (*lock)(void *ctx);
    void (*unlock)(void *ctx);
    /* The term of the entry committed at index; 0 if none is known. */
    uint64_t (*term_at)(void *ctx, uint64_t index);
};

/* Set once, before the store's first storage table is handed out. */
void memstore_set_committed(struct memstore *s, const struct memstore_committed *committed);

/* A storage table for the next incarnation of the node. */
struct raft_storage memstore_storage(struct memstore *s);

/* The power goes: writes through the handles given out so far fail. */
void memstore_crash(struct memstore *s);

/* Every write waits ms first (a slow disk; 0: none). Reads do not. */
void memstore_set_write_delay(struct memstore *s, unsigned ms);

/* The state as a checker sees it, copied under the store's lock. */
struct memstore_entry {
    uint64_t term;
    uint8_t type;
    uint32_t len;
    uint64_t hash; /* of the data, see memstore_hash */
};

struct memstore_view {
    uint64_t term;
    int32_t voted_for;
    uint64_t snapshot_index, snapshot_term;
    size_t snapshot_len;
    uint64_t first_index;          /* snapshot_index + 1 */
    size_t n_entries;
    struct memstore_entry *entries; /* malloc'd; entries[0] is first_index */
};

void memstore_view(struct memstore *s, struct memstore_view *v);
void memstore_view_free(struct memstore_view *v);

void memstore_term_vote(struct memstore *s, uint64_t *term, int32_t *voted_for);

/* The lab's RaftStateSize: bytes of term, vote and log (not the snapshot). */
size_t memstore_raft_state_size(struct memstore *s);
size_t memstore_snapshot_size(struct memstore *s);

struct memstore_counts {
    uint64_t term_votes, appends, entries_appended, truncates, snapshots;
};
void memstore_counts(struct memstore *s, struct memstore_counts *out);

/* FNV-1a over bytes: the harness's fingerprint of entry data. */
uint64_t memstore_hash(const void *data, size_t len);

#endif
