/*
 * clerk.h - the lab's key-value clients ("clerks" in the lab's words),
 * talking to the nodes' real key-value service (kvlab.h) as kv/client.c
 * talks to servers: session id and sequence numbers, the same request on
 * every retry, leader hints. What they saw goes into a history for the
 * linearizability checker (tests/chaos/lincheck.h).
 */
#ifndef TESTS_SUPPORT_CLERK_H
#define TESTS_SUPPORT_CLERK_H

#include <stdint.h>

#include "tests/chaos/lincheck.h"
#include "tests/support/cluster.h"
#include "tests/support/kvlab.h"

struct clerk {
    struct cluster *c;
    struct kvlab *kl;
    struct lincheck_history *h; /* NULL: not recorded */
    int id;
    uint64_t client_id;
    uint64_t seq;
    unsigned leader;  /* where it sends next */
    uint32_t allowed; /* nodes it may reach (bit i); LAB_ALL_NODES: any */
    uint64_t rng;
    unsigned wait_min_ms, wait_max_ms; /* per put attempt, before RAFT_TIME_SCALE */
    unsigned lose_permille;            /* acknowledgements it pretends to lose */
    /* what happened */
    unsigned puts, gets, attempts, lost, redirects, unknown;
};

#define LAB_ALL_NODES 0xffffffffu

/* Session id 1000 + id; every node allowed, those that join later too (it
 * goes round the nodes cluster_n counts at each redirect, so it keeps
 * working while the configuration changes); 2 s per attempt. */
void clerk_init(struct clerk *k, struct cluster *c, struct kvlab *kl,
                struct lincheck_history *h, int id);
/* Seeded by the cluster's seed and the clerk's id: 0 .. bound-1. */
uint64_t clerk_rand(struct clerk *k, uint64_t bound);

/* Puts key=value under the next sequence number, retrying the same request
 * until a node acknowledges it, or giving up after deadline_lab_ms (the
 * outcome is then unknown). Returns 0 or -ETIMEDOUT. */
int clerk_put(struct clerk *k, const char *key, const char *value, unsigned deadline_lab_ms);
/* One read on the node it believes leads, following a redirect for next
 * time. Returns 0 with *value (malloc'd, NUL-terminated), -ENOENT, or as
 * lab_get. Records what it saw. */
int clerk_get(struct clerk *k, const char *key, char **value);
/* clerk_get, retried 10 ms apart for up to deadline_lab_ms, until it
 * returns a value or -ENOENT. */
int clerk_read(struct clerk *k, const char *key, unsigned deadline_lab_ms, char **value);

/* A get on node i through its service. Returns 0 with *value (malloc'd,
 * NUL-terminated), -ENOENT, -EPERM (not leader; *hint set), -EAGAIN (no
 * answer yet: retry) or -ESHUTDOWN (node down). */
int lab_get(struct kvlab *kl, unsigned i, const char *key, char **value, int32_t *hint);
/* Puts key=value through nodes in `allowed` only; fails the test if not
 * acknowledged within 10 s. */
void lab_put_via(struct cluster *c, struct kvlab *kl, uint32_t allowed, int id,
                 const char *key, const char *value);

/* The leader of the highest term among connected nodes (its term in *term,
 * if not NULL), or -1. */
int lab_current_leader(struct cluster *c, uint64_t *term);
/* Polls every millisecond (up to 10 s) for a connected leader of a term
 * above after_term; returns it, with its status as first seen. */
unsigned lab_await_new_leader(struct cluster *c, uint64_t after_term, struct raft_status *st);
/* Fails with the checker's explanation and the operations on the key. */
void lab_check_linearizable(struct cluster *c, struct lincheck_history *h);

uint64_t lab_now_ms(void); /* CLOCK_MONOTONIC, in ms (cluster.c) */
void lab_sleep_ms(unsigned ms);
const char *lab_err_name(int rc);

#endif
