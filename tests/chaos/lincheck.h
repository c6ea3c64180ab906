/*
 * lincheck.h - a linearizability checker for key-value histories.
 *
 * Clients of the store record what they did: each put, get, delete,
 * compare-and-swap and list with the time it was called and the time it
 * returned, and what came back. The history is linearizable if every
 * operation can be given a single instant between its call and its return
 * such that, in the order of those instants, every operation's answer is
 * what one copy of the map, changed by one operation at a time, would have
 * given (Herlihy and Wing, 1990). That is what a Raft key-value store
 * promises; a stale read, a lost acknowledged write or a read of a value
 * nobody wrote all break it.
 *
 * The model, operation by operation, at its instant:
 *   put K V          K holds V.
 *   get K            returns what K holds, or "missing".
 *   delete K         "deleted" if K existed (then it does not), "missing"
 *                    if it did not.
 *   cas K E N        "swapped" if K held E (then it holds N); "mismatch"
 *                    with what K held if that was something else; "missing"
 *                    if K did not exist.
 *   list P           exactly the keys starting with P that exist then.
 *
 * Operations whose outcome is unknown (the client timed out) are handled
 * as a client must assume: a write may take effect at any instant after
 * its call, or never (a cas that takes effect swaps if the key holds what
 * it expects, else changes nothing); a read (get, list) that did not
 * return says nothing and is ignored.
 *
 * Each key is checked on its own (linearizability is compositional,
 * Herlihy and Wing's locality theorem), except that the keys one list
 * reads are checked together: a list sees all of them at one instant.
 * The search is Wing and Gong's as improved by Lowe ("Testing for
 * linearizability", 2017) and used by Porcupine: walk the calls and
 * returns in time order, try to place each pending call, backtrack when
 * an operation returns before it could be placed, and remember (set of
 * placed operations, state of the keys) pairs already explored so that no
 * state is searched twice.
 *
 *     struct lincheck_history *h = lincheck_new();
 *     uint64_t t0 = lincheck_now_ns();
 *     int rc = kv_client_put(c, "k", 1, "v1", 2);
 *     lincheck_add(h, &(struct lincheck_op){.client = 3, .kind = LINCHECK_PUT,
 *         .key = "k", .value = "v1", .call_ns = t0, .return_ns = lincheck_now_ns(),
 *         .outcome = rc == 0 ? LINCHECK_OK : LINCHECK_UNKNOWN});
 *     ...
 *     struct lincheck_result r;
 *     if (lincheck_check(h, &r) != 0)
 *         puts(r.message);   // which key, and the operation that could not be placed
 */
#ifndef TESTS_CHAOS_LINCHECK_H
#define TESTS_CHAOS_LINCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum lincheck_kind {
    LINCHECK_PUT,
    LINCHECK_GET,
    LINCHECK_DELETE,
    LINCHECK_CAS,
    LINCHECK_LIST,
};

enum lincheck_outcome {
    LINCHECK_OK,       /* put: acknowledged; get: returned `value`; delete: deleted;
                        * cas: swapped; list: returned `listed` */
    LINCHECK_MISSING,  /* get, delete, cas: the key did not exist */
    LINCHECK_MISMATCH, /* cas: the key held `held`, not `expected` */
    LINCHECK_UNKNOWN,  /* no answer: a write may have taken effect after its call, or not */
    LINCHECK_FAILED,   /* a definite refusal: the operation had no effect */
};

/* Every string is copied. */
struct lincheck_op {
    int client; /* who did it, for messages */
    enum lincheck_kind kind;
    const char *key;      /* list: the prefix ("" for every key) */
    const char *value;    /* put: the value written; get OK: the value read; cas: the new value */
    const char *expected; /* cas: the value it expects */
    const char *held;     /* cas MISMATCH: what the key held instead */
    const char *const *listed; /* list OK: the keys returned, n_listed of them */
    size_t n_listed;
    uint64_t call_ns;
    uint64_t return_ns; /* ignored for LINCHECK_UNKNOWN */
    enum lincheck_outcome outcome;
};

struct lincheck_history;

struct lincheck_history *lincheck_new(void);
void lincheck_free(struct lincheck_history *h);

/* Records one finished operation. Safe to call from several threads.
 * Returns 0 or -ENOMEM / -EINVAL (return before call, no key, a string the
 * kind and outcome need left NULL, an outcome the kind cannot have). */
int lincheck_add(struct lincheck_history *h, const struct lincheck_op *op);

/* CLOCK_MONOTONIC in nanoseconds: the clock to take call_ns and return_ns
 * from (the same for every thread). */
uint64_t lincheck_now_ns(void);

size_t lincheck_size(struct lincheck_history *h);

struct lincheck_result {
    bool ok;
    bool gave_up;         /* the search hit its budget: neither proven nor refuted */
    size_t n_ops;         /* operations considered (unknown reads, failures and
                           * writes that cannot matter dropped) */
    size_t n_keys;
    size_t n_groups;      /* sets of keys checked together (lists join the keys they read) */
    size_t n_unknown;     /* writes with an unknown outcome */
    char bad_key[128];    /* a key of the first group that failed, "" when ok */
    char message[2048];   /* one paragraph explaining the failure, "" when ok */
};

/* Checks every key. Returns 0 when the history is linearizable, -1 when it
 * is not (r->message says why), -E2BIG when the search gave up on some group,
 * -ENOMEM. */
int lincheck_check(struct lincheck_history *h, struct lincheck_result *r);

/* Prints the operations on one key, and the lists that read it, in call
 * order, with times in seconds since the first call of the history: what
 * to read next to a failure. */
void lincheck_print_key(struct lincheck_history *h, const char *key, FILE *out);

/* Search budget per group of keys (explored states); 0 restores the
 * default. */
void lincheck_set_budget(struct lincheck_history *h, size_t max_states);

#endif
