/*
 * cluster.h - the lab harness: N Raft nodes in one process over the
 * simulated network (simnet.h) and in-memory storage (memstore.h), with the
 * lab's helpers (check_one_leader, one, wait, ...) and checks that run all
 * the time.
 *
 * Checks active in every test (a violation prints the seed, what was
 * expected and what was seen, and the last log lines of the nodes involved;
 * the test then fails at its next helper call):
 *
 *   State Machine Safety  on every applied entry: no two nodes apply
 *                         different entries (term, type, bytes) at one
 *                         index; each node applies in order without gaps,
 *                         a restored snapshot setting its applied index;
 *                         a snapshot must match the committed entries it
 *                         covers (their hash chain) and never roll back.
 *   Election Safety       at most one leader per term: a monitor thread
 *                         samples every node every 5 ms, and every status
 *                         that a helper reads counts too. And by votes:
 *                         when a node is first seen leading a term, the
 *                         votes of that term stored for it must come from a
 *                         majority of the voters of the configuration it
 *                         campaigned with (learners and non-members count
 *                         for nothing), itself one of them.
 *   Leader Append-Only    the monitor remembers each leader's log while it
 *                         leads a term; an entry that changes or disappears
 *                         (other than by compaction into a snapshot) fails.
 *   Log Matching          every 250 ms and at the end, over the durable logs
 *                         in memstore: two logs holding an entry with the same
 *                         index and term hold the same entries up to it, and
 *                         a stored entry with a committed entry's index and
 *                         term is that entry.
 *   Leader Completeness   when the monitor first sees node L lead term T,
 *                         every entry applied anywhere must be in L's log
 *                         (or covered by its snapshot).
 *   Storage contract      see memstore.h (a second vote in one term, an
 *                         append that leaves a hole, ...).
 *   No deleted commits    memstore, on every truncate: no follower deletes
 *                         a stored entry with the index and term of an
 *                         entry applied anywhere (Figure 2, AppendEntries
 *                         rule 3), except a whole-log discard followed by a
 *                         snapshot that covers it (Figure 13 rule 7).
 *   Snapshot term         memstore, on every save_snapshot and load: the
 *                         last included term is the term of the entry
 *                         applied at the snapshot's index.
 *
 * A fatal signal in any thread (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT)
 * prints the running test's banner and seed (write(2) only), then kills the
 * process with the same signal.
 *
 * Time: nodes run with heartbeat 50 ms and election timeout 300-600 ms;
 * every harness duration is in "lab milliseconds" (LAB_ET is the lab's
 * RaftElectionTimeout, 1000) and is multiplied by RAFT_TIME_SCALE (default 1)
 * together with the node timings.
 *
 * Environment:
 *   RAFT_SEED=N        replay: use seed N for every test (else one per test)
 *   RAFT_TIME_SCALE=x  stretch every timing by x (slow machines, valgrind)
 *   RAFT_VERBOSE=1|2|3 print node logs live at info | debug | trace
 *   RAFT_TRACE=keep|off   keep the nodes' traces of passing tests too |
 *                      write none (default: kept only when the test fails,
 *                      in <build>/lab-traces/<suite>-<test>-<seed>/,
 *                      lab_traces.c); RAFT_TRACE_DIR=D puts them in D
 *
 * Threads: the thread running the cmocka test creates, crashes, restarts,
 * connects and frees. Observation, Start and the lab helpers (one, wait,
 * n_committed, ...) may also run on threads the test starts, as the lab's
 * goroutines do: a helper that fails there ends its thread (pthread_exit),
 * and the test thread fails at its next check, after joining it.
 */
#ifndef TESTS_SUPPORT_CLUSTER_H
#define TESTS_SUPPORT_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raft/raft.h"
#include "tests/support/memstore.h"
#include "tests/support/simnet.h"

#define LAB_ET 1000 /* the lab's RaftElectionTimeout, in lab milliseconds */
#define LAB_WALL_LIMIT_S 120

/* Node timings, in milliseconds before RAFT_TIME_SCALE. */
#define LAB_HEARTBEAT_MS 50
#define LAB_ELECTION_MIN_MS 300
#define LAB_ELECTION_MAX_MS 600

struct cluster_opts {
    unsigned n;               /* 1 .. RAFT_MAX_NODES */
    bool unreliable;          /* the lab's make_config(..., unreliable, ...) */
    uint64_t snapshot_every;  /* raft_config.snapshot_every; 0: never */
    size_t snapshot_pad;      /* filler bytes in each state-machine snapshot */
    uint32_t snapshot_chunk_bytes; /* 0: the node's default */
    uint32_t max_batch_bytes;      /* per AppendEntries; 0: the node's default */
    bool no_pre_vote;
    bool no_check_quorum;
    bool no_lease_reads;      /* every read takes a ReadIndex round */
    /* Each node's state machine also applies every committed entry to its
     * own key-value store (kv/kv.h; see cluster_kv). Commands must then be
     * kv puts (kv_encode_put); the checks run on every entry as always.
     * Snapshots carry only the checker's state, so snapshot_every must be 0. */
    bool kv;
};

struct cluster;

/* Starts opts->n nodes, connected, and prints the test's banner and seed.
 * Stores the cluster in *state so that cluster_teardown frees it even when
 * the test fails. */
struct cluster *cluster_new(void **state, const char *part, const char *desc,
                            const struct cluster_opts *opts);
/* cmocka teardown: stops and frees the cluster in *state, if any. */
int cluster_teardown(void **state);
/* Final checks, then the lab's "Passed -- time peers RPCs bytes agreements".
 * A test passes only through here: without it, its traces are kept and
 * reported as those of a test that did not pass. */
void cluster_end(struct cluster *c);

unsigned cluster_n(struct cluster *c);
uint64_t cluster_seed(struct cluster *c);
/* Seeded randomness for a test's own choices. */
unsigned cluster_rand(struct cluster *c, unsigned bound);
/* Lab milliseconds -> real milliseconds. */
unsigned cluster_ms(struct cluster *c, unsigned lab_ms);
/* Sleeps lab_ms (scaled); fails the test at once if a check failed. */
void cluster_sleep(struct cluster *c, unsigned lab_ms);
/* Fails the test if any check has failed, on any thread. */
void cluster_check(struct cluster *c);
/* Fails the test with the message, a status table and every node's log. */
void cluster_fatal(struct cluster *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));
/* Notes a step in the harness's own event log (printed on failure). */
void cluster_note(struct cluster *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- faults ---- */

void cluster_crash(struct cluster *c, unsigned i);  /* the lab's crash1 */
void cluster_start1(struct cluster *c, unsigned i); /* restart; not connected */
void cluster_connect(struct cluster *c, unsigned i);
void cluster_disconnect(struct cluster *c, unsigned i);
bool cluster_connected(struct cluster *c, unsigned i); /* connected and running */
bool cluster_alive(struct cluster *c, unsigned i);
void cluster_partition(struct cluster *c, const unsigned *group_of);
void cluster_set_reliable(struct cluster *c, bool reliable);
void cluster_set_long_reordering(struct cluster *c, bool on);
void cluster_set_duplicate(struct cluster *c, unsigned permille);
struct simnet *cluster_net(struct cluster *c);
struct memstore *cluster_store(struct cluster *c, unsigned i);

/* ---- observation ---- */

struct kv;
/* Node i's key-value store (opts.kv): that of its current incarnation, or
 * of its last one while it is crashed. A restarted node starts an empty one
 * and replays its log into it. Valid until the cluster is freed. */
struct kv *cluster_kv(struct cluster *c, unsigned i);
/* raft_read_barrier and raft_wait_applied on node i (-ESHUTDOWN when it is
 * crashed). They block; a crash of node i makes them return at once. */
int cluster_read_barrier(struct cluster *c, unsigned i, unsigned timeout_ms,
                         int32_t *leader_hint);
int cluster_wait_applied(struct cluster *c, unsigned i, uint64_t index, uint64_t term,
                         unsigned timeout_ms);
/* raft_transfer on node i (-ESHUTDOWN when it is crashed). */
int cluster_transfer(struct cluster *c, unsigned i, int32_t target, unsigned timeout_ms,
                     int32_t *leader_hint, char *why, size_t why_cap);

/* Node i's status; false when it is crashed. Records leaders it sees. */
bool cluster_status(struct cluster *c, unsigned i, struct raft_status *st);
/* The lab's GetState. */
bool cluster_get_state(struct cluster *c, unsigned i, uint64_t *term, bool *is_leader);
/* Hands a request to node i's raft_receive directly (hand-made RPCs).
 * Returns raft_receive's result, or -ESHUTDOWN when i is crashed. */
int cluster_deliver(struct cluster *c, unsigned i, const struct raft_msg *req,
                    struct raft_msg *reply);

/* The lab's checkOneLeader: up to 10 tries, each after 450-550 ms; fails
 * on two leaders in one term or none at all; returns the leader of the
 * highest term among connected nodes. */
unsigned cluster_check_one_leader(struct cluster *c);
/* All connected nodes report the same term; returns it. */
uint64_t cluster_check_terms(struct cluster *c);
/* No connected node claims to lead. */
void cluster_check_no_leader(struct cluster *c);

/* ---- membership (thesis ch. 4) ----
 *
 * Nodes 0 .. opts.n-1 start in the bootstrap configuration (all voters).
 * More may join: cluster_start_joining starts the next id as a server in
 * no configuration, which never campaigns and waits to be added by the
 * leader. Ids are never reused. In the simulated network a node's address
 * is its id (lab_addr). cluster_n counts every node ever started, members
 * or not; crash, restart, connect and the checks work on all of them.
 * Id sets are bit masks (bit i: node i). */

/* Starts the next id, connected, in no configuration; returns the id. */
unsigned cluster_start_joining(struct cluster *c);
/* The address node id is added with: its id in decimal. */
void lab_addr(unsigned id, char out[RAFT_ADDR_MAX]);

/* Node i's view of its configuration; false when it is crashed. */
bool cluster_membership(struct cluster *c, unsigned i, struct raft_membership_view *v);
/* raft_add_member / raft_remove_member on node i (-ESHUTDOWN when it is
 * crashed); they block, and a crash of node i makes them return. */
int cluster_add_member(struct cluster *c, unsigned i, unsigned id, bool voter,
                       unsigned timeout_ms, int32_t *hint, char *why, size_t why_cap);
int cluster_remove_member(struct cluster *c, unsigned i, unsigned id, unsigned timeout_ms,
                          int32_t *hint, char *why, size_t why_cap);

/* Adds (as a voter, or a learner) or removes id on whichever node leads,
 * as a client would: following leaders, and after an interrupted call
 * (the leader changed, the call timed out) looking at whether the change
 * committed before asking again. Fails the test on a refusal, or when the
 * change has not committed within 20 s. Returns the milliseconds it took. */
uint64_t cluster_add_ok(struct cluster *c, unsigned id, bool voter);
uint64_t cluster_remove_ok(struct cluster *c, unsigned id);

uint64_t lab_voters(const struct raft_membership *m);
uint64_t lab_learners(const struct raft_membership *m);
/* "n0 n1 n3", or "nobody". */
void lab_describe_ids(uint64_t ids, char *buf, size_t cap);
/* Waits up to 10 s until every running member (voters | learners) reports
 * a committed configuration of exactly these voters and learners; fails
 * with every node's view otherwise. */
void cluster_await_config(struct cluster *c, uint64_t voters, uint64_t learners);
/* Whether the entry applied at index is a configuration (decoded into *m). */
bool cluster_applied_config(struct cluster *c, uint64_t index, struct raft_membership *m);

/* ---- commands ---- */

/* Commands are opaque bytes; lab-style integers are 8 bytes, little-endian. */
void lab_cmd_int(uint8_t out[8], uint64_t x);

/* How many nodes have applied index (the lab's nCommitted; values are
 * checked on every apply). */
unsigned cluster_n_committed(struct cluster *c, uint64_t index);
/* Whether the entry applied at index is the command cmd. */
bool cluster_committed_is(struct cluster *c, uint64_t index, const void *cmd, size_t len);
/* The highest index any node has applied (the lab's maxIndex). */
uint64_t cluster_max_applied(struct cluster *c);

/* The lab's Start on node i: propose; false when i is not leader or down. */
bool cluster_start_cmd(struct cluster *c, unsigned i, const void *cmd, size_t len,
                       uint64_t *index, uint64_t *term);
bool cluster_start_int(struct cluster *c, unsigned i, uint64_t x, uint64_t *index,
                       uint64_t *term);

/* The lab's one(): propose on connected nodes round-robin until one accepts,
 * then wait up to 2 s for >= n nodes to apply that command at that index;
 * 10 s in all (retry) or fail after the first 2 s window (!retry). Returns
 * the index. */
uint64_t cluster_one(struct cluster *c, const void *cmd, size_t len, unsigned n, bool retry);
uint64_t cluster_one_int(struct cluster *c, uint64_t x, unsigned n, bool retry);

#define LAB_WAIT_TERM_CHANGED (-1)
#define LAB_WAIT_NOT_INT (-2)
/* The lab's wait(): polls with backoff (10 ms doubling to 1 s, 30 polls)
 * until >= n nodes applied index. Returns the integer command there,
 * LAB_WAIT_NOT_INT for a no-op or other bytes, or LAB_WAIT_TERM_CHANGED as
 * soon as some node's term passes start_term (when start_term >= 0). */
int64_t cluster_wait(struct cluster *c, uint64_t index, unsigned n, int64_t start_term);

/* ---- counters ---- */

uint64_t cluster_rpc_count(struct cluster *c, unsigned i); /* delivered to i */
uint64_t cluster_rpc_total(struct cluster *c);
uint64_t cluster_bytes_total(struct cluster *c);
/* The lab's LogSize: the largest durable Raft state (no snapshot). */
size_t cluster_log_size(struct cluster *c);
/* How many times node i's state machine was loaded from a snapshot, over
 * all its incarnations: from its own storage when it starts, or one it
 * received by InstallSnapshot (§7). */
uint64_t cluster_snapshots_restored(struct cluster *c, unsigned i);

#endif
