/*
 * workload.h - concurrent key-value clients that record a checkable history.
 *
 * Each client thread has its own session (kv/client.h) and loops: pick an
 * operation and a key, and record the operation with its call and return
 * times in a lincheck history. The operations: put a value nobody else
 * ever writes ("c<client>-<n>"), get, delete, compare-and-swap (expecting
 * the value this client last saw there, so that some swaps succeed and
 * some find another client's value), and list the shared keys ("k", all
 * of them, or "k<i>"), which the checker verifies at one instant. Most
 * operations go to a few shared keys, so that clients race on them; some
 * puts go to keys written exactly once ("once-<client>-<n>"), so that a
 * lost acknowledged write cannot hide behind a later one.
 *
 * At the end, chaos_workload_verify() reads every shared key again and
 * lists them, lists each client's write-once keys (all recorded in the
 * history too), reads back every write-once key that was acknowledged (it
 * must hold its value) or whose put timed out (it must hold its value or
 * be missing), and runs the linearizability checker.
 */
#ifndef TESTS_CHAOS_WORKLOAD_H
#define TESTS_CHAOS_WORKLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "tests/chaos/lincheck.h"

struct tls_ctx;

struct chaos_workload_options {
    unsigned clients;       /* threads; default 4 */
    unsigned keys;          /* shared keys; default 5 */
    unsigned op_timeout_ms; /* per operation, retries included; default 2000 */
    unsigned think_ms;      /* pause between operations; default 5 */
    unsigned once_percent;  /* share of puts to write-once keys; default 20 */
    /* Shares of the operations, in percent; puts are the rest. */
    unsigned get_percent;    /* default 30 */
    unsigned list_percent;   /* default 10 */
    unsigned delete_percent; /* default 10 */
    unsigned cas_percent;    /* default 15 */
    uint64_t seed;
    struct tls_ctx *tls;    /* mutual TLS for every client (net/tls.h); NULL: plain TCP.
                             * Not owned: it must outlive the workload. */
};

/* How the operations of one kind came back. */
struct chaos_op_counts {
    uint64_t ok;       /* put: acknowledged; get: a value; delete: deleted; cas: swapped;
                        * list: its keys */
    uint64_t missing;  /* get, delete, cas: the key did not exist */
    uint64_t mismatch; /* cas: the key held another value */
    uint64_t unknown;  /* no answer in time */
    uint64_t failed;   /* refused */
};

struct chaos_workload_stats {
    struct chaos_op_counts puts, gets, deletes, cas, lists;
    /* Puts, deletes and cas with a definite answer: each one committed. */
    uint64_t writes_acked;
    uint64_t last_ack_ms; /* test_now_ms() of the latest of them */
};

struct chaos_workload;

/* addrs: node addresses by id (copied by each client). Records into h,
 * which must outlive the workload. */
int chaos_workload_start(struct chaos_workload **out, char *const *addrs, unsigned n_addrs,
                         const struct chaos_workload_options *opt, struct lincheck_history *h);

/* Stops the clients (each finishes its current operation) and joins them. */
void chaos_workload_halt(struct chaos_workload *w);

void chaos_workload_free(struct chaos_workload *w);

void chaos_workload_get_stats(struct chaos_workload *w, struct chaos_workload_stats *st);

/* Waits until `more` writes beyond those acknowledged now are
 * acknowledged. Returns 0, or -ETIMEDOUT after timeout_ms. */
int chaos_workload_wait_progress(struct chaos_workload *w, unsigned more, unsigned timeout_ms);

/* After chaos_workload_halt() and with the cluster healed: the final reads
 * and the checks described above. Returns 0, or -1 with a description of
 * the first problem in msg. */
int chaos_workload_verify(struct chaos_workload *w, char *msg, size_t cap);

/* One line: "puts 120 ok / 3 unknown, gets 80 ok / 12 missing / 2 unknown,
 * deletes ..., cas ..., lists ...; 0 refused". */
void chaos_workload_describe(struct chaos_workload *w, char *buf, size_t cap);

#endif
