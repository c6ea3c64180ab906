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

#endif
