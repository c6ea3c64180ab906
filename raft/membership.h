/*
 * membership.h - a configuration as data (thesis ch. 4); see raft.h for
 * struct raft_membership and its entry's bytes.
 */
#ifndef RAFT_MEMBERSHIP_H
#define RAFT_MEMBERSHIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raft/raft.h"

bool membership_is_voter(const struct raft_membership *m, uint32_t id);
uint32_t membership_voters(const struct raft_membership *m);
/* Whether the ids in the set (bit i: id i) hold a majority of the voters. */
bool membership_is_majority(const struct raft_membership *m, uint64_t ids);
/* "n0 n1 n3 (learner)", or "no members". */
void membership_describe(const struct raft_membership *m, char *buf, size_t cap);

/* A snapshot as a node stores and sends it: "RCF1", a u32 length, the
 * configuration it covers (§7: a snapshot "includes the latest
 * configuration as of last included index"), then the state machine's bytes. A snapshot
 * written before snapshots carried a configuration holds the state
 * machine's bytes alone (found is then false, state_offset 0). */
#define MEMBERSHIP_SNAPSHOT_HEADER_MAX (8 + RAFT_MEMBERSHIP_MAX_BYTES)
size_t membership_snapshot_header(const struct raft_membership *m, uint8_t *buf);
int membership_snapshot_split(const uint8_t *data, size_t len, struct raft_membership *m,
                              bool *found, size_t *state_offset);

#endif
