/*
 * workload_internal.h - what the workload's threads (workload.c) and its
 * recorded operations (workload_ops.c) share.
 */
#ifndef TESTS_CHAOS_WORKLOAD_INTERNAL_H
#define TESTS_CHAOS_WORKLOAD_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kv/client.h"
#include "tests/chaos/cluster.h"
#include "tests/chaos/workload.h"

#define CHAOS_MAX_CLIENTS 64
#define CHAOS_VALUE_CAP 48 /* "c<client>-<n>" and the keys, with room */

/* A put to a write-once key, kept for the final read-back. */
struct chaos_once {
    char key[CHAOS_VALUE_CAP], value[CHAOS_VALUE_CAP];
    bool acked; /* false: its outcome is unknown */
};

struct chaos_worker {
    struct chaos_workload *w;
    int id;
    pthread_t thread;
    uint64_t rng;
    unsigned n;               /* values written so far */
    char (*seen)[CHAOS_VALUE_CAP]; /* per shared key: the value last seen there, "" none */
    struct chaos_once *once;  /* this thread's only */
    size_t n_once, cap_once;
};

struct chaos_workload {
    struct chaos_workload_options opt;
    char *addrs[CHAOS_MAX_NODES + 1];
    unsigned n_addrs;
    struct lincheck_history *h;
    struct chaos_worker workers[CHAOS_MAX_CLIENTS];
    unsigned started;
    pthread_mutex_t mu; /* guards everything below */
    bool stop;
    struct chaos_workload_stats st;
    unsigned malformed_lists; /* listings the client could not read */
};

/* Each runs one operation through the session kc as client `client`,
 * records it in w->h with its call and return times, counts its outcome
 * and returns what kv/client.h returned. */
int chaos_do_put(struct chaos_workload *w, int client, struct kv_client *kc, const char *key,
                 const char *value);
/* got (cap bytes): the value, when there is one. */
int chaos_do_get(struct chaos_workload *w, int client, struct kv_client *kc, const char *key,
                 char *got, size_t cap);
int chaos_do_delete(struct chaos_workload *w, int client, struct kv_client *kc,
                    const char *key);
/* held (cap bytes): what the key held instead, after -EEXIST. */
int chaos_do_cas(struct chaos_workload *w, int client, struct kv_client *kc, const char *key,
                 const char *expected, const char *value, char *held, size_t cap);
int chaos_do_list(struct chaos_workload *w, int client, struct kv_client *kc,
                  const char *prefix);

#endif
