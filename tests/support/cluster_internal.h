/*
 * cluster_internal.h - what cluster.c (life cycle, faults), cluster_ops.c
 * (the test-facing operations, lab helpers), cluster_report.c (log rings,
 * failure reports, the fatal-signal handler) and checks.c (the state
 * machine, the safety checks, the monitor thread) share. Not for test
 * files: they use cluster.h.
 *
 * Locks, in the order they may nest (a thread holding one may take only
 * those below it):
 *   slot->lock (rwlock)   guards slot->node against a crash freeing it
 *   node->mu              the node's own lock (raft/node.h)
 *   c->leaders_mu         Election Safety table
 *   c->ck                 applied entries (the checker); memstore's
 *                         truncate, save_snapshot and load take it before
 *                         their own lock (checks_watch_store)
 *   memstore's lock       (its violation callback takes fail_mu)
 *   c->votes_mu           the vote ledger (checks_votes.c)
 *   c->fail_mu            the first failure and its report
 *   ring->mu              node log lines (a leaf)
 *   kv->mu                a node's key-value store (a leaf; opts.kv)
 * Violations found while holding node->mu are reported after unlocking it.
 */
#ifndef TESTS_SUPPORT_CLUSTER_INTERNAL_H
#define TESTS_SUPPORT_CLUSTER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "tests/support/cluster.h"

#define RING_LINES 40
#define RING_LINE_MAX 256

/* The last RING_LINES log lines of one node (or of the harness). */
struct ring {
    pthread_mutex_t mu;
    char lines[RING_LINES][RING_LINE_MAX];
    unsigned next, count;
};

/* One node's state machine, for one incarnation. */
struct lab_fsm {
    struct cluster *c;
    unsigned id;
    unsigned incarnation;
    /* c->ck guards the two below */
    uint64_t applied; /* last index applied or restored */
    uint64_t chain;   /* hash chain over entries 1..applied */
    struct kv *kv;    /* opts.kv: applied to after the checks; else NULL */
    struct lab_fsm *next; /* all of them, freed with the cluster */
};

/* What the monitor remembers of one entry of a leader's log. */
struct seen_entry {
    uint64_t term;
    uint8_t type;
    uint32_t len;
    uint64_t hash;
};

struct slot {
    unsigned id;
    struct cluster *c;
    pthread_rwlock_t lock;
    struct raft_node *node; /* under lock; NULL while crashed */
    struct kv *kv;          /* under lock: its latest incarnation's (opts.kv) */
    unsigned incarnation;   /* changed only by the test thread */
    struct memstore *store;
    struct ring ring;
    char trace_path[576];   /* its trace file (lab_traces.c) */

    /* Monitor thread only: Leader Append-Only and Leader Completeness. */
    uint64_t la_term;        /* term it leads, as last sampled; 0: not leader */
    unsigned la_incarnation;
    uint64_t la_last;        /* entries 1..la_last remembered (above the base) */
    struct seen_entry *la;   /* indexed by log index */
    size_t la_cap;
    unsigned la_rotor;       /* which entries get their data re-hashed */
    uint64_t lc_term;        /* Leader Completeness checked for this term */
    unsigned lc_incarnation;
    uint64_t busy_since_ms;  /* its lock was taken at every sample since */
    bool busy_reported;
};

/* The entry applied at one index, the same on every node that applied it. */
struct applied_entry {
    bool set;
    bool prefix_known;
    uint8_t type;
    uint32_t len;
    uint64_t term;
    uint8_t *data;
    uint64_t fp;     /* fingerprint of (term, type, data) */
    uint64_t prefix; /* hash chain over entries 1..index */
    uint32_t nodes;  /* bit i: node i applied it */
};

/* A node incarnation's storage, seen through the vote ledger: every vote
 * it stores is recorded before the node can answer with it. */
struct vote_tap {
    struct cluster *c;
    unsigned id;
    struct raft_storage inner; /* memstore's */
    struct vote_tap *next;     /* all of them, freed with the cluster */
};

/* What a new leader's configuration was when it won (checks_votes.c). */
struct election_config {
    bool in_log;           /* found in its log: m holds it */
    bool unknown;          /* its snapshot covers entries of its own term */
    uint64_t base;         /* else: the configuration as of this index */
    struct raft_membership m;
};

struct cluster {
    char part[16], desc[96];
    struct cluster_opts opts;
    /* Nodes 0..n-1 exist: n_boot from the start (the bootstrap
     * configuration), more as they join (cluster_start_joining). Written by
     * the test thread only; read anywhere. */
    atomic_uint n;
    unsigned n_boot;
    uint64_t seed;
    pthread_t test_thread; /* the one that may fail the cmocka test */
    pthread_mutex_t rng_mu;
    uint64_t rng; /* under rng_mu */
    double scale;
    int verbose;
    enum raft_log_level level;
    uint64_t t0_ms;
    uint64_t rpcs0, bytes0, max0;
    bool ended; /* cluster_end's final checks passed (test thread only) */

    /* lab_traces.c: where the nodes' traces go ("" when off), as shown */
    char trace_dir[512];
    char raft_bin[512]; /* the raft binary whose timeline draws them */
    bool keep_traces;   /* RAFT_TRACE=keep */
    bool traces_off;    /* RAFT_TRACE=off */

    struct simnet *net;
    struct slot slots[RAFT_MAX_NODES];
    struct ring events; /* the harness's own steps */

    pthread_mutex_t ck; /* guards the fields up to fsms */
    struct applied_entry *applied;
    size_t applied_cap;
    uint64_t max_index;
    uint64_t max_applied[RAFT_MAX_NODES]; /* per node, across restarts */
    uint64_t restored[RAFT_MAX_NODES];    /* per node: snapshots loaded, across restarts */
    struct lab_fsm *fsms;

    pthread_mutex_t leaders_mu;
    int8_t *leader_of_term; /* -1: none seen; -2: two seen, reported */
    size_t leaders_cap;

    pthread_mutex_t votes_mu; /* guards the three below */
    int8_t (*votes)[RAFT_MAX_NODES]; /* votes[term][voter]: its candidate, -1: none */
    size_t votes_cap;
    struct vote_tap *taps;

    pthread_mutex_t fail_mu;
    atomic_bool failed;
    char fail_msg[1024];
    unsigned violations;

    uint64_t stuck_at_ms; /* monitor only: when a stuck node was reported */
    /* Set by the test thread around raft_stop, watched by the monitor. */
    atomic_int stopping_node; /* -1: none */
    atomic_ullong stopping_since_ms;
    pthread_t monitor;
    pthread_mutex_t mon_mu;
    pthread_cond_t mon_cond;
    bool mon_stop; /* under mon_mu */
};

uint64_t lab_now_ms(void);

/* cluster_report.c */
void ring_init(struct ring *r);
void ring_push(struct ring *r, const char *line);
void ring_print(struct ring *r, const char *title);
/* The nodes' raft_config.log_line: ctx is the node's struct slot. */
void lab_log_line(void *ctx, uint32_t node, enum raft_log_level level, const char *line);
/* cluster_note, also into node i's ring. */
void cluster_note_node(struct cluster *c, unsigned i, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The fatal-signal handler: what it prints for c's test, installing it
 * (again after cmocka's, see cluster_report.c), and "no test running". */
void fatal_banner_set(struct cluster *c);
void fatal_handler_install(void);
void fatal_banner_clear(void);

/* Records a failed check from any thread and prints its report at once
 * (seed, message, the log lines of the nodes in `nodes`, a bit mask). */
void cluster_violation(struct cluster *c, uint32_t nodes, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* lab_traces.c (the traces of a test's nodes, kept when it fails) */
/* Decides where they go (RAFT_TRACE, RAFT_TRACE_DIR), makes the test's
 * directory and empties it of a run with the same seed. */
void lab_traces_begin(struct cluster *c);
/* Node i's trace file for raft_config.trace_path; NULL when off. */
const char *lab_trace_path(struct cluster *c, unsigned i);
/* The "trace:" and "draw it:" lines of a report, note after the path;
 * LAB_TRACES_TEXT bytes hold them. */
#define LAB_TRACES_TEXT 2600
void lab_traces_describe(struct cluster *c, const char *note, char *buf, size_t cap);
/* Once every node has stopped: deletes a passed test's traces (unless
 * kept), or says where those of a test that did not pass are. */
void lab_traces_end(struct cluster *c);

/* checks.c */
struct raft_fsm lab_fsm_new(struct cluster *c, unsigned id, unsigned incarnation);
void checks_free(struct cluster *c);
void checks_record_leader(struct cluster *c, unsigned id, uint64_t term);

/* checks_votes.c: the vote ledger and Election Safety by votes */
/* node id's storage for its next incarnation, recording its votes. */
struct raft_storage votes_tap(struct cluster *c, unsigned id, struct raft_storage inner);
void votes_free(struct cluster *c);
/* With node n's lock held: the configuration it used to win `term`. */
void election_config_locked(struct raft_node *n, uint64_t term, struct election_config *out);
/* A leader of `term` must hold, in the vote ledger, votes of that term from
 * a majority of the voters of the configuration it won under, and be one. */
void votes_check_leader(struct cluster *c, unsigned id, uint64_t term,
                        const struct election_config *ec);
/* The bootstrap configuration every starting member shares. */
void lab_bootstrap(struct cluster *c, struct raft_membership *m);
void checks_log_matching(struct cluster *c);
void checks_describe_cmd(uint8_t type, const uint8_t *data, uint32_t len,
                         char *buf, size_t cap);
void monitor_start(struct cluster *c);
void monitor_stop(struct cluster *c);
void checks_storage_violation(void *ctx, unsigned id, const char *what);
/* Lets store check its truncates and snapshots against the entries applied
 * anywhere (memstore_set_committed). */
void checks_watch_store(struct cluster *c, struct memstore *store);

#endif
