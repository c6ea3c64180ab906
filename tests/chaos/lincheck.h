/*
 * lincheck.h - a linearizability checker for key-value histories.
 *
 * Clients of the store record what they did: each put(key, value) and
 * get(key) with the time it was called and the time it returned, and what
 * came back. The history is linearizable if every operation can be given a
 * single instant between its call and its return such that, in the order of
 * those instants, every get returns the value of the latest put on its key
 * (or "missing" when there was none) - as if one copy of the data answered
 * every request, one at a time (Herlihy and Wing, 1990). That is what a Raft
 * key-value store promises; a stale read, a lost acknowledged write or a
 * read of a value nobody wrote all break it.
 *
 * Operations whose outcome is unknown (the client timed out) are handled
 * as a client must assume: a put may take effect at any instant after its
 * call, or never; a get that did not return says nothing and is ignored.
 *
 * Each key is checked on its own (linearizability is compositional,
 * Herlihy and Wing's locality theorem), with the Wing-Gong search as
 * improved by Lowe ("Testing for linearizability", 2017) and used by
 * Porcupine: walk the calls and returns in time order, try to place each
 * pending call, backtrack when an operation returns before it could be
 * placed, and remember (set of placed operations, value) pairs already
 * explored so that no state is searched twice.
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
};

enum lincheck_outcome {
    LINCHECK_OK,      /* put: acknowledged; get: returned `value` */
    LINCHECK_MISSING, /* get: the key did not exist */
    LINCHECK_UNKNOWN, /* no answer: a put may have taken effect after its call, or not */
    LINCHECK_FAILED,  /* a definite refusal: the operation had no effect */
};

struct lincheck_op {
    int client; /* who did it, for messages */
    enum lincheck_kind kind;
    const char *key;   /* copied */
    const char *value; /* put: the value written; get OK: the value read (copied) */
    uint64_t call_ns;
    uint64_t return_ns; /* ignored for LINCHECK_UNKNOWN */
    enum lincheck_outcome outcome;
};

struct lincheck_history;

struct lincheck_history *lincheck_new(void);
void lincheck_free(struct lincheck_history *h);

/* Records one finished operation. Safe to call from several threads.
 * Returns 0 or -ENOMEM / -EINVAL (return before call, missing key). */
int lincheck_add(struct lincheck_history *h, const struct lincheck_op *op);

/* CLOCK_MONOTONIC in nanoseconds: the clock to take call_ns and return_ns
 * from (the same for every thread). */
uint64_t lincheck_now_ns(void);

size_t lincheck_size(struct lincheck_history *h);

struct lincheck_result {
    bool ok;
    bool gave_up;         /* the search hit its budget: neither proven nor refuted */
    size_t n_ops;         /* operations considered (unknown gets and failures dropped) */
    size_t n_keys;
    size_t n_unknown;     /* puts with an unknown outcome */
    char bad_key[128];    /* the first key that failed, "" when ok */
    char message[2048];   /* one paragraph explaining the failure, "" when ok */
};

/* Checks every key. Returns 0 when the history is linearizable, -1 when it
 * is not (r->message says why), -E2BIG when the search gave up on some key,
 * -ENOMEM. */
int lincheck_check(struct lincheck_history *h, struct lincheck_result *r);

/* Prints the operations on one key in call order, with times in seconds
 * since the first call of the history: what to read next to a failure. */
void lincheck_print_key(struct lincheck_history *h, const char *key, FILE *out);

/* Search budget per key (explored states); 0 restores the default. */
void lincheck_set_budget(struct lincheck_history *h, size_t max_states);

#endif
