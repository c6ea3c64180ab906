/*
 * scenario.h - what the multi-process suites (system_chaos.c,
 * system_hostile.c) share: a cmocka fixture holding a cluster, a client
 * load and its history, and the waits and checks every scenario uses.
 *
 *     static void test_x(void **state)
 *     {
 *         struct scenario *t = *state;
 *         scenario_start_cluster(t, 3, 200, 400, 50);
 *         scenario_start_clients(t, 4, 2000);
 *         ... faults, scenario_expect(t, cond, "what went wrong", ...) ...
 *         scenario_finish(t);   // heal, stop clients, final reads, lincheck
 *     }
 *     cmocka_unit_test_setup_teardown(test_x, scenario_setup, scenario_teardown)
 *
 * A failed expectation prints the nodes' last log lines and keeps their
 * directory; teardown always stops the clients, the nodes and the proxies.
 */
#ifndef TESTS_CHAOS_SCENARIO_H
#define TESTS_CHAOS_SCENARIO_H

#include <stdbool.h>
#include <stdint.h>

#include "tests/chaos/cluster.h"
#include "tests/chaos/lincheck.h"
#include "tests/chaos/workload.h"

/* Waits for a leader or for progress, times chaos_time_scale(). */
#define SCENARIO_WAIT_LEADER_MS 15000
#define SCENARIO_WAIT_PROGRESS_MS 15000

struct scenario {
    struct chaos_cluster *c;
    struct lincheck_history *h;
    struct chaos_workload *w;
    uint64_t seed; /* $CHAOS_SEED, else the time */
    uint64_t rng;
    unsigned scale; /* chaos_time_scale() */
    /* The nodes' timing, as asked for times scale (set by
     * scenario_start_cluster): what timing bounds should be built from. */
    unsigned et_min, et_max, heartbeat;
};

int scenario_setup(void **state);
int scenario_teardown(void **state);

uint64_t scenario_rand(struct scenario *t);

/* Fails the test (cmocka) with the sentence, after printing the nodes'
 * logs, unless ok. */
void scenario_expect(struct scenario *t, bool ok, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* How many times so far the nodes warned that a disk write kept one of them
 * from answering for half an election timeout or more: what lets a
 * timing-sensitive scenario tell a stalled machine from a bug. */
unsigned scenario_disk_stalls(struct scenario *t);

/* Starts the nodes with election timeouts et_min..et_max and heartbeat
 * (ms, each times t->scale). */
void scenario_start_cluster(struct scenario *t, unsigned nodes, unsigned et_min,
                            unsigned et_max, unsigned heartbeat);
/* Starts the recorded client load; op_timeout_ms (times t->scale) bounds
 * each operation, retries included. */
void scenario_start_clients(struct scenario *t, unsigned clients, unsigned op_timeout_ms);

/* A leader with a majority among `among` in a term >= min_term, or the
 * test fails. */
int scenario_leader(struct scenario *t, uint32_t among, uint64_t min_term, uint64_t *term);

/* `writes` more acknowledged writes (puts, deletes, cas), or the test
 * fails saying `when`. */
void scenario_progress(struct scenario *t, unsigned writes, const char *when);

/* Waits until node i follows `leader` in `term` (or is it). */
bool scenario_follows(struct scenario *t, unsigned i, int leader, uint64_t term,
                      unsigned timeout_ms);

/* Heals the network, stops the clients, waits for a leader, then the
 * final reads and the history check; then scenario_shutdown(). */
void scenario_finish(struct scenario *t);

/* Stops the nodes with SIGTERM: each must exit with status 0 and no
 * sanitizer may have reported anything in its log. */
void scenario_shutdown(struct scenario *t);

#endif
