/*
 * raft.h - the public interface of one Raft node.
 *
 * A node is a monitor (one mutex, a few condition variables) plus the threads
 * that drive it: an election timer, replicators for each peer (one per
 * request in flight), an applier and a disk syncer. Everything the node
 * needs from the outside world comes in through three small tables of
 * functions, so that the same code runs over TCP and real files (the `raft`
 * program) or over a simulated network and in-memory storage (the lab
 * harness in tests/):
 *
 *   struct raft_transport  sends one RPC to a peer and waits for its reply
 *   struct raft_storage    keeps currentTerm, votedFor, the log and snapshots
 *   struct raft_fsm        the replicated state machine (the key-value store)
 *
 * Incoming RPCs are handed to raft_receive() by whoever owns the sockets.
 *
 * Log indices are 1-based, as in the paper: index 0 is the empty prefix
 * (term 0) that every log agrees on.
 */
#ifndef RAFT_RAFT_H
#define RAFT_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RAFT_MAX_NODES 9   /* members of one configuration, at most */
#define RAFT_MAX_ID 63     /* node ids are 0 .. RAFT_MAX_ID */
#define RAFT_ADDR_MAX 64   /* a member's "host:port", with its NUL */
#define RAFT_MAX_PIPELINE 8     /* AppendEntries in flight per follower, at most */
#define RAFT_DEFAULT_PIPELINE 2
#define RAFT_NO_NODE (-1) /* votedFor / leader when there is none */

enum raft_role {
    RAFT_FOLLOWER,
    RAFT_PRE_CANDIDATE, /* thesis §9.6: asking whether it could win */
    RAFT_CANDIDATE,
    RAFT_LEADER,
};

const char *raft_role_name(enum raft_role role);

enum raft_entry_type {
    RAFT_ENTRY_NOOP = 0,    /* appended by a new leader (§8) */
    RAFT_ENTRY_COMMAND = 1, /* opaque bytes for the state machine */
    RAFT_ENTRY_CONFIG = 2,  /* a configuration (thesis ch. 4): raft_membership_encode */
};

struct raft_entry {
    uint64_t term;
    uint8_t type; /* enum raft_entry_type */
    uint32_t len;
    uint8_t *data; /* len bytes; NULL when len is 0 */
};

/* ---- configurations (thesis ch. 4) ---- */

struct raft_member {
    uint32_t id;
    bool voter;               /* false: a learner, which receives the log but
                               * neither votes nor counts towards a majority */
    char addr[RAFT_ADDR_MAX]; /* where it listens ("" when the transport
                               * knows it otherwise) */
};

/* The servers of a cluster. A server uses the latest configuration in its
 * log, committed or not (thesis §4.1). */
struct raft_membership {
    uint32_t n;
    struct raft_member members[RAFT_MAX_NODES];
    /* bit i: id i was removed, and nothing from it is ever accepted again */
    uint64_t removed;
};

/* The bytes of a RAFT_ENTRY_CONFIG entry. encode writes at most
 * RAFT_MEMBERSHIP_MAX_BYTES and returns the length; decode returns 0 or
 * -EINVAL for bytes that are no configuration. */
#define RAFT_MEMBERSHIP_MAX_BYTES (10 + RAFT_MAX_NODES * (6 + RAFT_ADDR_MAX))
size_t raft_membership_encode(const struct raft_membership *m, uint8_t *buf);
int raft_membership_decode(struct raft_membership *m, const uint8_t *buf, size_t len);
/* The member with this id, or NULL. */
const struct raft_member *raft_membership_find(const struct raft_membership *m, uint32_t id);
/* ids 0 .. n-1, all voters, with the addresses given (NULL: none). */
void raft_membership_of_size(struct raft_membership *m, uint32_t n, const char *const *addrs);

/* ---- RPC messages (Figure 2, Figure 13) ---- */

enum raft_msg_type {
    RAFT_MSG_REQUEST_VOTE = 1,
    RAFT_MSG_REQUEST_VOTE_REPLY = 2,
    RAFT_MSG_APPEND_ENTRIES = 3,
    RAFT_MSG_APPEND_ENTRIES_REPLY = 4,
    RAFT_MSG_INSTALL_SNAPSHOT = 5,
    RAFT_MSG_INSTALL_SNAPSHOT_REPLY = 6,
    RAFT_MSG_TIMEOUT_NOW = 7, /* thesis §3.10: leadership transfer */
    RAFT_MSG_TIMEOUT_NOW_REPLY = 8,
};

struct raft_request_vote {
    uint64_t term; /* for a pre-vote: the term it would campaign in */
    uint64_t last_log_index;
    uint64_t last_log_term;
    uint8_t pre_vote; /* 1: thesis §9.6 pre-vote, changes no state */
    /* 1: the candidate campaigns because the leader told it to (TimeoutNow,
     * thesis §3.10), so voters grant although they hear from that leader. */
    uint8_t transfer;
};

struct raft_request_vote_reply {
    uint64_t term;
    uint8_t vote_granted;
    uint8_t pre_vote; /* echoes the request */
};

struct raft_append_entries {
    uint64_t term;
    uint64_t prev_log_index;
    uint64_t prev_log_term;
    uint64_t leader_commit;
    uint32_t n_entries;
    struct raft_entry *entries; /* borrowed: valid only during the call */
};

struct raft_append_entries_reply {
    uint64_t term;
    uint8_t success;
    /* success: the index of the last entry known to match the leader's. */
    uint64_t match_index;
    /* failure: fast backup (§5.3, "the follower can include the term of the
     * conflicting entry and the first index it stores for that term").
     * conflict_term 0 means the follower's log is too short and
     * conflict_index is its last index + 1. */
    uint64_t conflict_term;
    uint64_t conflict_index;
};

struct raft_install_snapshot {
    uint64_t term;
    uint64_t last_index; /* lastIncludedIndex */
    uint64_t last_term;  /* lastIncludedTerm */
    uint64_t offset;     /* of this chunk in the snapshot */
    uint64_t total;      /* size of the whole snapshot */
    uint32_t len;
    uint8_t *data; /* borrowed: valid only during the call */
    uint8_t done;
};

struct raft_install_snapshot_reply {
    uint64_t term;
    uint64_t next_offset; /* where the follower wants the next chunk to start */
};

/* Thesis §3.10: the leader of `term` asks the target to campaign at once. */
struct raft_timeout_now {
    uint64_t term;
};

struct raft_timeout_now_reply {
    uint64_t term;
};

struct raft_msg {
    uint8_t type;  /* enum raft_msg_type */
    uint32_t from; /* the sender's node id */
    /* Numbers the sender's messages, requests and replies alike, so that a
     * trace (--trace) pairs each send with its receive: "<from>-<id>",
     * "<from>-<boot>.<id>" after a restart (raft/trace.h). */
    uint64_t id;
    union {
        struct raft_request_vote rv;
        struct raft_request_vote_reply rv_reply;
        struct raft_append_entries ae;
        struct raft_append_entries_reply ae_reply;
        struct raft_install_snapshot is;
        struct raft_install_snapshot_reply is_reply;
        struct raft_timeout_now tn;
        struct raft_timeout_now_reply tn_reply;
    } u;
};

/* ---- the three tables of functions ---- */

struct raft_transport {
    void *ctx;
    /* Sends req to node `peer` and waits at most timeout_ms for the reply.
     * Returns 0 with *reply filled in (replies carry no pointers), or a
     * negative errno (-ETIMEDOUT, -ECONNREFUSED, ...). Called without the
     * node's lock, from several threads at once (one per peer). */
    int (*call)(void *ctx, uint32_t peer, const struct raft_msg *req,
                struct raft_msg *reply, unsigned timeout_ms);
    /* Optional, for pipelining (both or neither; without them a peer has
     * one request in flight). send() hands req to the peer's connection and
     * returns at once with a ticket; requests sent to a peer reach it in the
     * order sent, as far as the network delivers them. await() waits for
     * the reply to that ticket as call() does. Every ticket of a successful
     * send must be awaited, once; a failed send has no ticket. */
    int (*send)(void *ctx, uint32_t peer, const struct raft_msg *req,
                uint64_t *ticket, unsigned timeout_ms);
    int (*await)(void *ctx, uint32_t peer, uint64_t ticket,
                 struct raft_msg *reply, unsigned timeout_ms);
    /* Optional: the configuration the node now uses (at start, and at
     * every change), so that the transport knows where each member
     * listens. Called with the node's lock held: it must not block. */
    void (*set_members)(void *ctx, const struct raft_membership *m);
};

/* What storage hands back on start. Everything is malloc'd; free it with
 * raft_persisted_free(). */
struct raft_persisted {
    uint64_t term;
    int32_t voted_for;
    uint64_t snapshot_index; /* 0 when there is no snapshot */
    uint64_t snapshot_term;
    /* The snapshot's snapshot_len bytes; or NULL, with snapshot_len set,
     * when a storage with read_snapshot leaves them there (checked), so
     * that the node reads them from it as it restores them. */
    uint8_t *snapshot;
    size_t snapshot_len;
    /* Indices snapshot_index+1 ...; a storage with read_entries may leave
     * the data of all but configuration entries out (NULL, len set). */
    struct raft_entry *entries;
    size_t n_entries;
};

void raft_persisted_free(struct raft_persisted *p);

struct raft_storage {
    void *ctx;
    /* All functions return 0 or a negative errno; each returns only once its
     * effect is durable (Figure 2: "updated on stable storage before
     * responding to RPCs"). They may be called without the node's lock, but
     * never two at once for one node. */
    int (*load)(void *ctx, struct raft_persisted *out);
    int (*save_term_vote)(void *ctx, uint64_t term, int32_t voted_for);
    /* Appends entries at first_index, which is the stored last index + 1. */
    int (*append)(void *ctx, uint64_t first_index,
                  const struct raft_entry *entries, size_t n);
    /* Deletes every entry with index >= from_index. */
    int (*truncate)(void *ctx, uint64_t from_index);
    /* Atomically replaces the snapshot, then drops entries <= index. */
    int (*save_snapshot)(void *ctx, uint64_t index, uint64_t term,
                         const uint8_t *data, size_t len);
    /* Optional: copies len bytes at offset of the stored snapshot into buf,
     * or -ESTALE when the stored one is no longer the snapshot at index.
     * With it the node does not keep its snapshot in memory: it reads the
     * chunks it sends from storage. May be called while other functions
     * run (it changes nothing). */
    int (*read_snapshot)(void *ctx, uint64_t index, uint64_t offset, uint8_t *buf, size_t len);
    /* Optional: reads back the stored entries first_index .. first_index +
     * n - 1 into out[], their data into *buf (grown with realloc as
     * needed, *cap its size), or -ESTALE when a snapshot covers
     * first_index by now. With it the node keeps in memory only entries
     * it has yet to store or apply, and reads older ones from here when
     * a follower needs them. May be called while other functions run. */
    int (*read_entries)(void *ctx, uint64_t first_index, size_t n, struct raft_entry *out,
                        uint8_t **buf, size_t *cap);
    /* Optional, with read_snapshot: a snapshot written piece by piece, so
     * that it is never whole in memory. begin_snapshot starts one at
     * index; write_snapshot appends bytes to it; end_snapshot with commit
     * makes it durable and replaces the stored one as save_snapshot does,
     * without commit it discards it. The calls of one writer may come
     * from different threads, one at a time; two writers may be open at
     * once (the node's own snapshot and one received from its leader), and
     * appends and reads may run meanwhile. begin, end and save_snapshot
     * return -ESTALE, changing nothing, for a snapshot older than the
     * stored one (a newer one overtook it). */
    int (*begin_snapshot)(void *ctx, uint64_t index, uint64_t term, void **writer);
    int (*write_snapshot)(void *writer, const uint8_t *data, size_t len);
    int (*end_snapshot)(void *ctx, void *writer, bool commit);
};

struct raft_fsm {
    void *ctx;
    /* Applies one committed entry. Called in index order, from the applier
     * thread, without the node's lock. No-op and configuration entries are
     * passed too.
     * Returns 0, or a negative errno if the entry could not be applied:
     * the node then stops (it applies, answers and acknowledges nothing
     * more) rather than go on without an entry the others applied. */
    int (*apply)(void *ctx, uint64_t index, const struct raft_entry *entry);
    /* A snapshot is taken in two steps, so that a large state does not stop
     * the node while it is written (§7; thesis §5.1 on copy-on-write).
     * snapshot_capture is called from the applier thread, between two
     * applies, and should be quick: it returns in *view the state as of the
     * last applied entry, which later applies must not change (a
     * copy-on-write view, or a copy when the state is small).
     * snapshot_serialize is then called once for the view, on another
     * thread and while apply goes on: it hands the view's bytes to write,
     * in pieces of any size, in order (stopping at write's first error,
     * which it returns), and releases the view; with write NULL it only
     * releases it. */
    int (*snapshot_capture)(void *ctx, void **view);
    int (*snapshot_serialize)(void *ctx, void *view,
                              int (*write)(void *sink, const uint8_t *data, size_t len),
                              void *sink);
    /* Replaces the state with a snapshot taken at `index`: its len bytes,
     * which read(src, buf, n) copies into buf in order, n bytes per call
     * (any n the state machine likes; read returns 0 or a negative errno),
     * so that a large snapshot is never whole in memory. Returns 0, or a
     * negative errno: read's own error as read returned it (-ESTALE: the
     * snapshot was replaced meanwhile, and the node restores the newer
     * one), else the node stops, as for apply. */
    int (*restore)(void *ctx, uint64_t index, uint64_t len,
                   int (*read)(void *src, uint8_t *buf, size_t n), void *src);
    /* Optional: a few words for the log saying what a command does, in the
     * state machine's terms ("put greeting from client 7 seq 3"), written
     * NUL-terminated into buf. Called with the node's lock held and only
     * for a line that will be printed, so it must be quick and must not
     * call into the node. NULL: lines say "command (23 bytes)". */
    void (*describe)(void *ctx, const uint8_t *data, uint32_t len, char *buf, size_t cap);
};

enum raft_log_level { RAFT_LOG_ERROR, RAFT_LOG_WARN, RAFT_LOG_INFO,
                      RAFT_LOG_DEBUG, RAFT_LOG_TRACE };

struct raft_config {
    uint32_t id;      /* this node, 0 .. RAFT_MAX_ID */
    /* The bootstrap configuration, used only while neither the log nor the
     * snapshot holds one: `bootstrap` when it has members, otherwise ids
     * 0 .. n_nodes-1, all voters. With neither, the node is in no
     * configuration: it never campaigns, and waits for a leader to add it. */
    uint32_t n_nodes;
    struct raft_membership bootstrap;
    unsigned election_timeout_min_ms; /* default 150 */
    unsigned election_timeout_max_ms; /* default 300 */
    unsigned heartbeat_ms;            /* default 50 */
    /* When to snapshot (§7; snapshot.c says what each choice costs). By
     * default, once the log has outgrown the last snapshot: the bytes of
     * its entries reach snapshot_log_ratio times the snapshot's size, and
     * at least snapshot_log_min_bytes (16 MiB; 0: never). snapshot_every
     * > 0 instead snapshots whenever that many applied entries are in the
     * log. */
    uint64_t snapshot_every;         /* default 0: by size */
    uint64_t snapshot_log_min_bytes; /* default 16 MiB */
    double snapshot_log_ratio;       /* default 1 */
    uint64_t seed;           /* for the election timer; logged at start */
    bool pre_vote;           /* thesis §9.6 */
    bool check_quorum;       /* thesis §6.2 */
    /* Thesis §6.4.1: a leader answers reads without a heartbeat round while
     * a majority acknowledged it within the last 0.9 x the minimum election
     * timeout. Safe only if clocks run at rates within 10% of each other and
     * every node has the same minimum election timeout (a follower refuses
     * votes for its own); needs check_quorum. */
    bool lease_reads;
    uint32_t max_batch_bytes;    /* per AppendEntries; default 1 MiB */
    /* AppendEntries in flight per follower when the transport pipelines
     * (1..RAFT_MAX_PIPELINE); default RAFT_DEFAULT_PIPELINE. */
    uint32_t pipeline_depth;
    uint32_t snapshot_chunk_bytes; /* per InstallSnapshot; default 512 KiB */
    /* Logging: lines at or below log_level go to log_line (stderr when NULL). */
    enum raft_log_level log_level;
    void (*log_line)(void *ctx, uint32_t node, enum raft_log_level level,
                     const char *line);
    void *log_ctx;
    /* The first column of a log line: false, seconds since the process
     * started (one process, one story); true, the wall-clock time of day
     * with milliseconds, so that lines of several processes sort together. */
    bool log_wall_clock;
    /* The node's clock in milliseconds: monotonic, read by the threads only
     * (the rules are handed the time). NULL: raft_now_ms(). Tests pass a
     * clock they move by hand. */
    uint64_t (*clock_ms)(void *ctx);
    void *clock_ctx;
    /* Where to append the node's trace, one JSON object a line (raft/trace.h);
     * NULL: no trace. Read only by raft_start. */
    const char *trace_path;
};

void raft_config_defaults(struct raft_config *cfg, uint32_t id, uint32_t n_nodes);

/* The default clock: milliseconds of CLOCK_BOOTTIME (CLOCK_MONOTONIC where
 * there is none), which also counts time the machine spent suspended. */
uint64_t raft_now_ms(void);

/* Seconds since the process started. */
double raft_uptime(void);

/* The first column of a log line (see raft_config.log_wall_clock):
 * "  1.204" or "14:03:27.391". */
void raft_log_time(bool wall_clock, char *buf, size_t cap);

/* Writes one finished log line to stderr, coloured per node on a terminal. */
void raft_print_log_line(uint32_t node, const char *line);

struct raft_node;

/* Loads durable state and starts the node's threads. Returns 0 or -errno. */
int raft_start(struct raft_node **out, const struct raft_config *cfg,
               const struct raft_transport *transport,
               const struct raft_storage *storage, const struct raft_fsm *fsm);

/* Makes every call into the node fail fast and wakes every waiter, so that
 * threads blocked in it (request handlers) return; raft_stop still follows. */
void raft_begin_stop(struct raft_node *n);

/* Stops every thread, waits for them, frees the node. */
void raft_stop(struct raft_node *n);

/* Handles one incoming RPC and fills in the reply. Blocks while the node
 * persists what the reply depends on. Returns 0, or -EINVAL for a message
 * this node must refuse (unknown sender, bad type). */
int raft_receive(struct raft_node *n, const struct raft_msg *req,
                 struct raft_msg *reply);

/* Appends a command to the leader's log. On success sets *index and *term
 * of the new entry; returns -EPERM (with *leader_hint set) when this node is
 * not the leader, and -EBUSY (with *leader_hint set to the target) while it
 * hands leadership over (raft_transfer): retry, at the target. The data is
 * copied. */
int raft_propose(struct raft_node *n, const uint8_t *data, uint32_t len,
                 uint64_t *index, uint64_t *term, int32_t *leader_hint);

/* A put answered by a callback instead of a waiting thread. */
struct raft_async {
    /* Called once, from a node thread, without the node's lock: with 0 when
     * the entry is applied, -ECANCELED when this node stops leading (or
     * stops) first, -EIO after a disk failure. */
    void (*done)(struct raft_async *a, int rc);
    /* the node's own */
    uint64_t index, term;
    int rc;
    struct raft_async *next;
};

/* raft_propose, then a->done() once the entry is applied or cannot be: the
 * asynchronous form of raft_propose + raft_wait_applied, for a server that
 * answers clients from the node's threads instead of one waiting thread per
 * request. Returns 0 (done will be called), or -EPERM or -EBUSY with
 * *leader_hint set, as raft_propose (it will not). There is no timeout:
 * with check_quorum, a leader that cannot commit steps down within an
 * election timeout, which calls back every pending put. */
int raft_propose_async(struct raft_node *n, const uint8_t *data, uint32_t len,
                       struct raft_async *a, int32_t *leader_hint);

struct raft_status {
    uint32_t id;
    enum raft_role role;
    uint64_t term;
    int32_t leader;    /* RAFT_NO_NODE when unknown */
    int32_t voted_for; /* RAFT_NO_NODE when none */
    uint64_t commit;
    uint64_t applied;
    uint64_t last_index;
    uint64_t snapshot_index;
};

void raft_get_status(struct raft_node *n, struct raft_status *st);

/* Linearizable read barrier (thesis §6.4, ReadIndex): waits until this node
 * has confirmed with a majority that it is still leader and has applied
 * everything committed before the call. Returns 0, -EPERM (not leader,
 * *leader_hint set) or -ETIMEDOUT. */
int raft_read_barrier(struct raft_node *n, unsigned timeout_ms,
                      int32_t *leader_hint);

/* Waits until the entry at `index` is applied (0), or this node stops
 * leading `term` (-ECANCELED: the entry may be replaced; the client should
 * retry with the same session and sequence number), or its disk failed
 * (-EIO), or timeout_ms passes (-ETIMEDOUT). */
int raft_wait_applied(struct raft_node *n, uint64_t index, uint64_t term,
                      unsigned timeout_ms);

/* Leadership transfer (thesis §3.10), on the leader: stops taking proposals,
 * brings `target` up to date (RAFT_NO_NODE: the most up-to-date other
 * voter), sends it TimeoutNow so that it campaigns at once, and waits until
 * this node sees the target lead a newer term. The transfer is abandoned
 * after election_timeout_max_ms; proposals are then taken again. Returns
 * 0 (*leader_hint the new leader), -EPERM (not the leader, *leader_hint
 * set), -EINVAL (a target that is this node or no member), -EBUSY (a
 * transfer to another node is under way), -ETIMEDOUT (abandoned, or
 * timeout_ms passed) or -ECANCELED (the node stops). On any error but
 * -EPERM, why (why_cap bytes, may be NULL) holds one sentence saying why. */
int raft_transfer(struct raft_node *n, int32_t target, unsigned timeout_ms,
                  int32_t *leader_hint, char *why, size_t why_cap);

/* What a node knows of its configuration. */
struct raft_membership_view {
    struct raft_membership config; /* the one it uses: its log's latest */
    uint64_t index;                /* that entry's index; 0: from the snapshot
                                    * or the bootstrap */
    bool committed;
    /* on the leader, each member's matchIndex (its own: what its disk
     * holds), in the order of config.members; otherwise 0 */
    uint64_t match[RAFT_MAX_NODES];
};

void raft_get_membership(struct raft_node *n, struct raft_membership_view *out);

/* Membership changes (thesis ch. 4), one server at a time, on the leader.
 *
 * raft_add_member adds server `id` listening at addr. As a voter, it joins
 * as a learner first and is promoted once it has caught up (§4.2.1); an
 * existing learner is promoted. raft_remove_member removes a voter or a
 * learner, this leader included (it steps down once the change commits).
 * Both return once the configuration is committed: 0; -EPERM when this
 * node does not lead (*leader_hint set); -EINVAL or -EBUSY when the change
 * is refused (an id already a member, or removed before, an unknown id,
 * another change under way, the last voter, a server that could not catch
 * up); -ETIMEDOUT after timeout_ms; -ECANCELED when this node stopped
 * leading first (the change may or may not commit). On any error but
 * -EPERM, why (why_cap bytes, may be NULL) holds one sentence saying why. */
int raft_add_member(struct raft_node *n, uint32_t id, const char *addr, bool voter,
                    unsigned timeout_ms, int32_t *leader_hint, char *why, size_t why_cap);
int raft_remove_member(struct raft_node *n, uint32_t id, unsigned timeout_ms,
                       int32_t *leader_hint, char *why, size_t why_cap);

#endif
