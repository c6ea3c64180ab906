/*
 * lincheck_internal.h - what the parts of the linearizability checker
 * share: an operation as recorded (lincheck.c), the same operation as the
 * search sees it (values and keys turned into small integers), the model
 * that says whether an operation fits a state (lincheck_model.c), and the
 * search (lincheck_search.c).
 */
#ifndef TESTS_CHAOS_LINCHECK_INTERNAL_H
#define TESTS_CHAOS_LINCHECK_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tests/chaos/lincheck.h"

/* The return time of an operation that never returned: it may be placed
 * anywhere after its call, and placing it after everything else is the
 * same as "it never took effect". */
#define LINCHECK_NO_RETURN UINT64_MAX

/* An operation as recorded: lincheck_op with its strings copied. */
struct lincheck_rec {
    int client;
    enum lincheck_kind kind;
    enum lincheck_outcome outcome;
    char *key; /* list: the prefix */
    char *value, *expected, *held;
    char **listed;
    size_t n_listed;
    uint64_t call_ns, return_ns;
};

struct lincheck_history {
    pthread_mutex_t mu; /* guards everything below */
    struct lincheck_rec *ops;
    size_t n, cap;
    size_t budget;
};

/* The earliest call of the history (0 if empty): messages give times
 * from there. */
uint64_t lincheck_history_start(const struct lincheck_history *h);

/* One operation in words, for messages:
 * "get k -> 'v1' [client 2, 1.204 .. 1.209 s]". */
void lincheck_describe(const struct lincheck_rec *r, uint64_t t0, char *buf, size_t cap);

/* Whether key starts with prefix: the keys a list with that prefix reads. */
bool lincheck_has_prefix(const char *key, const char *prefix);

/* One operation of a group of keys, as the search sees it. A state gives
 * each key of the group a value id: 0 is "does not exist", 1.. the
 * group's distinct written values. */
struct lincheck_sop {
    const struct lincheck_rec *rec;
    int key;      /* index among the group's keys; unused for a list */
    int value;    /* put, cas: the value written; get OK: the value read */
    int expected; /* cas: what it expects; -1 when no write ever wrote it */
    int held;     /* cas MISMATCH: what the key held */
    /* list: the group's keys first .. first + n_cover - 1 start with its
     * prefix (keys are sorted, so they are consecutive); present[i] says
     * whether key first + i was in its result. */
    int first, n_cover;
    const bool *present;
    uint64_t call, ret;
};

/* The model (lincheck_model.c). Whether op can take effect on state st
 * (the value id of every key of the group); if so, *key is the key it
 * changes and *value that key's new value id, or *key is -1 when it
 * changes nothing. */
bool lincheck_fits(const struct lincheck_sop *op, const int *st, int *key, int *value);

struct lincheck_search_result {
    int rc;        /* 0 linearizable, -1 not, -E2BIG gave up, -ENOMEM */
    size_t placed; /* the most operations placed at once */
    int blocked;   /* the operation that could not be placed then, or -1 */
    int *state;    /* the keys' value ids in that best attempt (malloc'd, n_keys) */
};

/* Searches for an order of ops[0..n) (sorted by call time) over a group
 * of n_keys keys, all initially missing, exploring at most budget states.
 * The caller frees res.state. */
struct lincheck_search_result lincheck_search(const struct lincheck_sop *ops, int n, int n_keys,
                                              size_t budget);

#endif
