/*
 * scenario.c - the fixture and checks shared by the multi-process suites
 * (see scenario.h).
 */
#include "tests/chaos/scenario.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "raft/raft.h"
#include "tests/support/clock.h"

int scenario_setup(void **state)
{
    struct scenario *t = calloc(1, sizeof(*t));
    if (!t)
        return -1;
    const char *s = getenv("CHAOS_SEED");
    t->seed = s ? strtoull(s, NULL, 10) : (uint64_t)time(NULL);
    t->rng = t->seed * 2654435761u + 1;
    t->scale = chaos_time_scale();
    *state = t;
    return 0;
}

int scenario_teardown(void **state)
{
    struct scenario *t = *state;
    chaos_workload_free(t->w);
    chaos_cluster_stop(t->c);
    lincheck_free(t->h);
    free(t);
    return 0;
}

uint64_t scenario_rand(struct scenario *t)
{
    t->rng ^= t->rng << 13;
    t->rng ^= t->rng >> 7;
    t->rng ^= t->rng << 17;
    return t->rng;
}

void scenario_expect(struct scenario *t, bool ok, const char *fmt, ...)
{
    if (ok)
        return;
    char msg[1400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (t->c)
        chaos_cluster_failed(t->c, msg);
    fail_msg("%s (seed %llu)", msg, (unsigned long long)t->seed);
}

unsigned scenario_disk_stalls(struct scenario *t)
{
    unsigned count = 0;
    for (unsigned i = 0; i < t->c->n; i++) {
        char path[96], line[1024];
        chaos_cluster_log_path(t->c, i, path, sizeof(path));
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        while (fgets(line, sizeof(line), f))
            count += strstr(line, "answered no one meanwhile") != NULL;
        fclose(f);
    }
    return count;
}

void scenario_start_cluster(struct scenario *t, unsigned nodes, unsigned et_min,
                            unsigned et_max, unsigned heartbeat)
{
    t->et_min = et_min * t->scale;
    t->et_max = et_max * t->scale;
    t->heartbeat = heartbeat * t->scale;
    struct chaos_cluster_options o = {.nodes = nodes, .election_min_ms = t->et_min,
                                      .election_max_ms = t->et_max,
                                      .heartbeat_ms = t->heartbeat, .seed = t->seed};
    int rc = chaos_cluster_start(&t->c, &o);
    scenario_expect(t, rc == 0, "could not start %u nodes and their proxies: %s", nodes,
                    strerror(-rc));
    printf("    %u nodes in %s (seed %llu, election timeout %u-%u ms, heartbeat %u ms)\n",
           nodes, t->c->dir, (unsigned long long)t->seed, t->et_min, t->et_max, t->heartbeat);
}

void scenario_start_clients(struct scenario *t, unsigned clients, unsigned op_timeout_ms)
{
    t->h = lincheck_new();
    struct chaos_workload_options o = {.clients = clients,
                                       .op_timeout_ms = op_timeout_ms * t->scale,
                                       .seed = t->seed};
    int rc = t->h ? chaos_workload_start(&t->w, t->c->addrs, t->c->n, &o, t->h) : -1;
    scenario_expect(t, rc == 0, "could not start the client threads");
}

int scenario_leader(struct scenario *t, uint32_t among, uint64_t min_term, uint64_t *term)
{
    unsigned wait = SCENARIO_WAIT_LEADER_MS * t->scale;
    int l = chaos_cluster_wait_leader(t->c, among, min_term, wait, term);
    scenario_expect(t, l >= 0,
                    "no leader with a majority among nodes 0x%x (term >= %llu) within %u ms",
                    among, (unsigned long long)min_term, wait);
    return l;
}

void scenario_progress(struct scenario *t, unsigned writes, const char *when)
{
    unsigned wait = SCENARIO_WAIT_PROGRESS_MS * t->scale;
    int rc = chaos_workload_wait_progress(t->w, writes, wait);
    char d[512];
    chaos_workload_describe(t->w, d, sizeof(d));
    scenario_expect(t, rc == 0, "%s: fewer than %u writes acknowledged within %u ms (%s)", when,
                    writes, wait, d);
}

bool scenario_follows(struct scenario *t, unsigned i, int leader, uint64_t term,
                      unsigned timeout_ms)
{
    uint64_t deadline = test_now_ms() + timeout_ms;
    do {
        struct client_reply r;
        if (chaos_cluster_status(t->c, i, 300, &r) == 0 && r.term == term &&
            r.leader == leader && (r.role == RAFT_FOLLOWER || (int)i == leader))
            return true;
        test_sleep_ms(20);
    } while (test_now_ms() < deadline);
    return false;
}

/* Writes the history of the key that failed next to the logs. */
static void save_key_history(struct scenario *t, const char *key)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/history-%s.txt", t->c->dir, key);
    FILE *f = fopen(path, "w");
    if (!f)
        return;
    lincheck_print_key(t->h, key, f);
    fclose(f);
    printf("    the history of key %s is in %s\n", key, path);
}

void scenario_finish(struct scenario *t)
{
    chaos_cluster_heal(t->c);
    chaos_cluster_set_delay(t->c, 0, 0);
    chaos_workload_halt(t->w);
    scenario_leader(t, chaos_cluster_all(t->c), 0, NULL);
    uint64_t t0 = test_now_ms();
    char msg[1200];
    int rc = chaos_workload_verify(t->w, msg, sizeof(msg));
    uint64_t took = test_now_ms() - t0;
    char d[512];
    chaos_workload_describe(t->w, d, sizeof(d));
    struct lincheck_result r;
    lincheck_check(t->h, &r);
    if (rc != 0 && r.bad_key[0])
        save_key_history(t, r.bad_key);
    scenario_expect(t, rc == 0, "history check failed: %s (%s)", msg, d);
    printf("    history: %zu operations on %zu keys (%zu groups checked apart), linearizable, "
           "every acknowledged put kept (%s; final reads and check took %llu ms)\n",
           r.n_ops, r.n_keys, r.n_groups, d, (unsigned long long)took);
    scenario_shutdown(t);
}

void scenario_shutdown(struct scenario *t)
{
    char msg[600];
    int rc = chaos_cluster_shutdown(t->c, msg, sizeof(msg));
    scenario_expect(t, rc == 0, "%s", msg);
}
