/*
 * node.h - the state of one Raft node, shared by its threads, and the
 * functions that change it.
 *
 * The node is a monitor: one mutex (mu) guards every field below it, and
 * threads sleep on condition variables until there is work. Functions whose
 * names end in _locked are called with mu held and keep holding it; debug
 * builds (RAFT_CHECK_INVARIANTS) assert it. A function that releases mu and
 * takes it again says so: its name ends in _drops_lock, and the caller must
 * look at the node afresh afterwards. Nobody holds mu across a network
 * call; disk writes of the term, the vote and a follower's new entries do
 * happen under it, because the reply that depends on them must wait for
 * them anyway (Figure 2).
 *
 * The shape, so that calls go one way:
 *   hub     node.c        state, lock, lifecycle, every role change, and
 *                         the entry points that dispatch to the rules
 *   rules   election.c    RequestVote both sides, the election timer's decision
 *           replication.c AppendEntries both sides
 *           snapshot.c    InstallSnapshot both sides, taking snapshots
 *           transfer.c    leadership transfer (TimeoutNow) both sides
 *           reconfigure.c membership changes: the log's configurations,
 *                         adding (with catch-up) and removing servers
 *   threads timer.c, peer.c, apply.c, syncer.c: schedule rules, move bytes
 *           clients.c     what client threads wait for
 *   leaves  log.c, commit.c, logging.c, quorum.c (who counts),
 *           membership.c (a configuration as data), and storage behind
 *           raft_storage
 * Rules take the node and the current time and return what to send; they
 * open no socket or file and never wait, so tests can drive them one step
 * at a time with no thread running (tests/unit_rules.c). Time reaches them
 * as an argument; the hub reads the node's clock (cfg.clock_ms) itself only
 * where a change takes effect after a disk write (role changes, the
 * election timer).
 */
#ifndef RAFT_NODE_H
#define RAFT_NODE_H

#include <pthread.h>
#include <stdarg.h>

#include "raft/log.h"
#include "raft/membership.h"
#include "raft/raft.h"

struct trace_writer;

/* One replicator thread of a peer, with at most one request in flight. A
 * peer has cfg.pipeline_depth of them when the transport pipelines, so that
 * several AppendEntries can be on their way to it at once. */
struct lane {
    struct peer *peer;
    pthread_t thread;
    bool started;
    /* Reused request buffer: the entries of one AppendEntries, copied out of
     * the log under the lock so the call can run without it. */
    struct raft_entry *batch;
    size_t batch_cap;
    uint8_t *bytes;
    size_t bytes_cap;
    bool batch_in_storage; /* the batch's data left memory: read it back */
};

/* What the leader (or a candidate) knows about one other node. */
struct peer {
    struct raft_node *node;
    uint32_t id;
    struct lane lanes[RAFT_MAX_PIPELINE];
    unsigned in_flight; /* lanes waiting for a reply from this peer */
    bool sending;       /* a lane is handing its request to the transport:
                         * the others wait, so requests leave in order */
    bool replicating;   /* its last AppendEntries reply was a success: more
                         * may be sent before the next reply (pipelining) */
    bool backlog;       /* the last batch sent left entries behind (it was
                         * full): the next may go before its reply */

    /* Figure 2, volatile state on leaders */
    uint64_t next_index;
    uint64_t match_index;

    bool vote_needed;          /* a (pre-)vote request for this election is unsent */
    uint64_t heartbeat_due_ms; /* send an AppendEntries by then, even if empty */
    uint64_t retry_at_ms;      /* after a failed call, wait until then */
    unsigned failures;         /* consecutive failed calls, for log throttling */
    uint64_t last_ack_ms;      /* last reply in the current term (check-quorum) */
    uint64_t lease_sent_ms;    /* when the latest request it answered in this
                                * term was sent (read leases, §6.4.1) */
    uint64_t acked_round;      /* highest read round it confirmed (ReadIndex) */
    uint64_t sent_round;       /* read round of the last request sent */
    uint64_t snapshot_offset;  /* InstallSnapshot progress */
    /* Said once per change, for the leader's log (logging.c) */
    bool silent_logged; /* "stopped answering" said, "answers again" not yet */
    bool behind_logged; /* "fell behind" said, "caught up" not yet */
};

/* Events that come by the hundred under load (logging.c): each kind gets
 * at most a few lines a second, and the rest one summary line. */
enum log_kind { LOG_PUT, LOG_REDIRECT, LOG_STORED, LOG_COMMIT, LOG_APPLIED, LOG_KINDS };

struct log_burst {
    uint64_t window_ms; /* start of the current one-second window */
    unsigned lines;     /* lines printed in it */
    uint64_t held;      /* events held back for the summary, and their range */
    uint64_t first, last;
};

/* Pre-votes asked for since a leader was last heard: a node cut off from
 * the others asks every election timeout, and says so only now and then. */
struct pre_vote_streak {
    uint64_t since_ms;  /* the last contact with a leader it counts from */
    uint64_t logged_ms; /* when an attempt was last logged */
    unsigned attempts;
    unsigned replies;   /* answers received during the streak */
};

/* The latest snapshot, to send to lagging followers: its bytes in memory,
 * or only in storage once nothing needs them here (storage.read_snapshot
 * then gives each chunk). */
struct snapshot_ref {
    uint64_t index;
    uint64_t term;
    uint8_t *data; /* NULL: in storage only */
    size_t len;
    unsigned refs; /* the node's own reference plus one per send in progress */
    /* The configuration it covers, when it carries one (membership.h), and
     * where the state machine's bytes begin in data. */
    bool has_members;
    struct raft_membership members;
    size_t state_offset;
};

/* A snapshot being received from the leader, chunk by chunk (incoming.c). */
struct incoming_snapshot {
    bool open;             /* chunks of the snapshot at (index, term) are coming */
    uint64_t index, term;
    uint64_t len;          /* bytes received so far */
    void *writer;          /* the storage's, when it writes piece by piece */
    uint8_t *buf;          /* else the bytes so far */
    size_t cap;
    uint8_t head[MEMBERSHIP_SNAPSHOT_HEADER_MAX]; /* the first bytes: the configuration */
};

/* One request as it was sent, kept until its reply is handled: a reply is
 * judged against what its request carried and the term and role it was
 * sent in, never against what the node holds by the time it arrives. */
struct rpc {
    struct raft_msg req;
    uint32_t to;
    uint64_t term;                 /* currentTerm when it was built */
    enum raft_role role;           /* and the role */
    uint64_t round;                /* the read round it carries (leaders) */
    uint64_t sent_ms;              /* when it was built (read leases) */
    unsigned timeout_ms;
    struct snapshot_ref *snapshot; /* InstallSnapshot: its data, held */
    uint64_t election;             /* RequestVote: the node's election it asks for */
};

struct raft_node {
    struct raft_config cfg;
    struct raft_transport transport;
    struct raft_storage storage;
    struct raft_fsm fsm;

    pthread_t timer_thread, applier_thread, syncer_thread, snapshotter_thread;
    bool timer_started, applier_started, syncer_started, snapshotter_started;
    bool threads_started; /* lanes start as members join (reconfigure.c) */

    pthread_mutex_t mu;
    pthread_cond_t timer_cond;   /* election timer: deadline moved */
    pthread_cond_t peers_cond;   /* replicators: entries, role change, reads */
    pthread_cond_t applier_cond; /* applier: commit advanced, snapshot arrived */
    pthread_cond_t syncer_cond;  /* syncer: leader has unsynced entries */
    pthread_cond_t changed_cond; /* internal waiters: disk write or snapshot done */
    pthread_cond_t snapshotter_cond; /* snapshotter: a captured state to write */
#ifdef RAFT_CHECK_INVARIANTS
    pthread_t owner; /* the thread holding mu, while owned */
    bool owned;
#endif

    /* mu guards everything below */
    bool stopping;
    bool disk_failed; /* a storage write (or an apply) failed: answer nothing */

    /* Figure 2, persistent state (mirrored on storage) */
    uint64_t current_term;
    int32_t voted_for;
    struct raft_log log;

    /* Figure 2, volatile state */
    uint64_t commit_index;
    uint64_t last_applied;

    enum raft_role role;
    int32_t leader_id;
    uint64_t votes; /* bit i: node i granted this (pre-)election */
    uint64_t election; /* numbers the (pre-)elections this node started */
    uint64_t election_deadline_ms;
    uint64_t last_leader_contact_ms; /* or start: pre-vote, §4.2.3, read leases */
    uint64_t rng;

    /* Leader: entries up to durable_index are on this node's disk; only they
     * count towards commitment (thesis §10.2.1). syncing: the syncer is
     * writing outside the lock, so nobody else may touch the stored log. */
    uint64_t durable_index;
    bool syncing;
    uint64_t leader_first_index; /* index of this term's no-op */

    /* Leadership transfer (thesis §3.10, transfer.c): under way while this
     * node leads transfer_term and transfer_target is not RAFT_NO_NODE. */
    int32_t transfer_target;
    uint64_t transfer_term;
    uint64_t transfer_deadline_ms;  /* abandoned then: an election timeout on */
    uint64_t transfer_next_send_ms; /* TimeoutNow due then (0: not sent yet) */
    uint64_t transfer_campaign_term; /* a term this node campaigns in on TimeoutNow */

    /* ReadIndex (thesis §6.4): reads wait for a round of heartbeats */
    uint64_t read_round;      /* the latest round a read asked for */
    uint64_t confirmed_round; /* the latest round a majority acknowledged */
    struct client_waiter *waiters; /* client threads waiting (clients.c) */
    struct raft_async *async;      /* puts waiting to be applied (clients.c) */
    struct raft_async *async_done; /* and those over, for the applier to call back */

    /* Snapshots (§7) */
    struct snapshot_ref *snapshot;  /* latest, or NULL */
    bool snapshotting;              /* a snapshot is captured or being written */
    struct snapshot_job {           /* captured by the applier, written by the snapshotter */
        void *view;                 /* the state machine's; NULL: no job */
        uint64_t index, term;
        struct raft_membership members; /* the configuration as of index */
        uint64_t capture_ms;        /* how long the capture stopped the applier */
    } job;
    struct snapshot_ref *to_restore; /* received, for the applier to load */
    struct incoming_snapshot incoming; /* InstallSnapshot chunks so far */

    /* The configuration (thesis ch. 4, reconfigure.c). `members` is the
     * latest in the log, in use as soon as it is appended, committed or not
     * (§4.1); members_index is its entry (0: it is base_members, which
     * holds as of log.base_index: the snapshot's or the bootstrap one).
     * `previous` is the one it replaced: servers it removed are still sent
     * the entry that removes them, so that they learn it and stop. */
    struct raft_membership members, base_members, previous;
    uint64_t members_index;
    uint64_t members_seen;       /* log.configs_changed when members was read */
    /* The ids the replicators serve: members and the servers just removed,
     * this node excluded. */
    uint32_t targets[2 * RAFT_MAX_NODES];
    uint32_t n_targets;
    int32_t adding;              /* the server being added (reconfigure.c), or none */
    bool removed_logged;         /* "no longer a member" said */

    struct peer peers[RAFT_MAX_ID + 1]; /* by id */

    /* What the log lines remember (logging.c) */
    struct log_burst bursts[LOG_KINDS];
    uint64_t stopped_leading_ms; /* when it last stepped down as leader */
    bool has_led;                /* ... if it ever did */
    struct pre_vote_streak pre_votes;

    /* Tracing (trace.h): the writer, NULL when off; what the trace last
     * said, so that a change is written once. msg_seq numbers the messages
     * this node sends (struct raft_msg id), traced or not. */
    struct trace_writer *trace;
    struct trace_seen {
        enum raft_role role;
        uint64_t term, commit, applied;
    } traced;
    uint64_t msg_seq;
};

/* A client thread waiting in raft_wait_applied or raft_read_barrier. */
struct client_waiter {
    pthread_mutex_t mu;  /* guards woken */
    pthread_cond_t cond;
    int woken;           /* -1 while asleep, then how it was woken (clients.c) */
    bool listed;         /* n->mu: on n->waiters */
    uint64_t applied;    /* done once last_applied reaches it (0: no condition) */
    uint64_t round;      /* ... and confirmed_round reaches it (0: no condition) */
    struct client_waiter *prev, *next;
};

#ifdef RAFT_CHECK_INVARIANTS
#define NODE_ASSERT_LOCKED(n) node_assert_locked(n)
void node_assert_locked(const struct raft_node *n);
#else
#define NODE_ASSERT_LOCKED(n) ((void)(n))
#endif

/* ---- node.c: the hub ---- */

/* Builds a node from its storage without starting any thread (tests drive
 * it by hand); node_start_threads then makes it run. */
int node_create(struct raft_node **out, const struct raft_config *cfg,
                const struct raft_transport *transport,
                const struct raft_storage *storage, const struct raft_fsm *fsm);
int node_start_threads(struct raft_node *n);
/* Frees a node whose threads have all been joined (or never started). */
void node_destroy(struct raft_node *n);

uint64_t node_now(const struct raft_node *n);
uint64_t node_random(struct raft_node *n);
void node_lock(struct raft_node *n);
void node_unlock(struct raft_node *n);
/* Sleeps on cond until woken or until deadline_ms on the node's clock (0:
 * no deadline). Called with mu held; it is released while asleep. */
void node_wait_until(struct raft_node *n, pthread_cond_t *cond, uint64_t deadline_ms);
/* The absolute CLOCK_MONOTONIC time (for a condition variable) at which the
 * node's clock will read deadline_ms. */
struct timespec node_deadline_timespec(const struct raft_node *n, uint64_t deadline_ms);

/* The three entry points of the rules: what the timer, the peer lanes and
 * raft_receive call. */
void node_tick_locked(struct raft_node *n, uint64_t now);
bool node_prepare_request_locked(struct raft_node *n, struct lane *l, uint64_t now,
                                 struct rpc *out);
void node_handle_reply_locked(struct raft_node *n, struct lane *l, struct rpc *sent,
                              int rc, const struct raft_msg *reply, uint64_t now);
int node_receive_locked(struct raft_node *n, const struct raft_msg *req, uint64_t now,
                        struct raft_msg *reply);

/* Role changes */
void node_become_follower_locked(struct raft_node *n, uint64_t term, int32_t leader,
                                 const char *why);
void node_become_pre_candidate_locked(struct raft_node *n);
int node_become_candidate_locked(struct raft_node *n);
void node_become_leader_locked(struct raft_node *n);
/* A message from the leader of `term` (AppendEntries, InstallSnapshot):
 * follow it, reset the election timer, settle the log. */
void node_follow_leader_locked(struct raft_node *n, uint32_t leader, uint64_t term,
                               uint64_t now);
/* A reply or request from an older term is stale; a newer term makes this
 * node a follower first. Returns true if the message must be ignored. */
bool node_is_stale_term_locked(struct raft_node *n, uint64_t term, uint32_t from);

/* §5.2: "election timeouts are chosen randomly from a fixed interval". */
void node_reset_election_timer_locked(struct raft_node *n);
int node_persist_term_vote_locked(struct raft_node *n, uint64_t term, int32_t vote);
void node_disk_failed_locked(struct raft_node *n, const char *what, int rc);
void node_apply_failed_locked(struct raft_node *n, uint64_t index, int rc);
void node_settle_log_locked(struct raft_node *n);
void node_advance_commit_locked(struct raft_node *n);
void node_note_ack_locked(struct raft_node *n, struct peer *p, const struct rpc *sent,
                          uint64_t now);
void node_note_read_ack_locked(struct raft_node *n, struct peer *p, uint64_t round);
/* Appends a command as leader; 0 or -EPERM. */
int node_propose_locked(struct raft_node *n, const uint8_t *data, uint32_t len);

void node_wake_all_locked(struct raft_node *n);
void node_wake_peers_locked(struct raft_node *n);
void node_wake_applier_locked(struct raft_node *n);
/* Whether a broadcast on peers_cond is needed to get something new sent:
 * some peer has been sent every entry and has no request in flight (for a
 * new entry), or has been sent the latest read round (for a new round).
 * Otherwise the replicators already woken, or waiting for a reply, send it
 * with what they have pending. */
bool node_some_peer_idle_locked(const struct raft_node *n);
bool node_some_peer_sent_round_locked(const struct raft_node *n);
/* Thesis §3.10: this leader is handing its leadership over (transfer.c). */
bool node_transfer_in_progress_locked(const struct raft_node *n);

/* ---- reconfigure.c: membership changes (thesis ch. 4) ---- */
/* Rereads the configuration when the log's configuration entries changed
 * (appended, truncated, compacted), and acts on a change: the transport,
 * the replicators, the log line. Cheap when nothing changed. */
void reconfigure_sync_locked(struct raft_node *n);
/* At start, once the log is loaded: the configuration in use, announced. */
void reconfigure_start_locked(struct raft_node *n);
/* The configuration as of log.base_index changed (a snapshot installed). */
void reconfigure_set_base_locked(struct raft_node *n, const struct raft_membership *base);
/* The configuration as of `index` (the snapshot taken there covers it). */
void reconfigure_as_of_locked(const struct raft_node *n, uint64_t index,
                              struct raft_membership *out);
/* Starts p's lanes if they have not started (and the node's threads
 * have): a member that joined needs replicators (node.c). */
void node_start_lanes_locked(struct raft_node *n, struct peer *p);

/* ---- quorum.c: who counts (a leaf above membership.c) ---- */
bool node_is_voter(const struct raft_node *n);
/* Whether the ids in the set (bit i: node i) are a majority of the voters. */
bool node_is_majority(const struct raft_node *n, uint64_t ids);
/* The highest value a majority of the voters has reached, given each
 * node's value by id (the commit rule's matchIndex, read rounds). */
uint64_t node_quorum_value(const struct raft_node *n, const uint64_t *by_id);
/* Whether p is served by the replicators: a member, or just removed and
 * not yet holding the entry that removed it. */
bool node_serves_peer_locked(const struct raft_node *n, const struct peer *p);

/* ---- config.c (a leaf) ---- */
bool config_is_valid(const struct raft_config *cfg);
/* *out = *cfg, with batch sizes and pipeline depth brought within limits. */
void config_apply(struct raft_config *out, const struct raft_config *cfg,
                  const struct raft_transport *transport);

/* ---- logging.c (a leaf) ---- */
void node_log(struct raft_node *n, enum raft_log_level level,
              const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Warns that a disk write took elapsed_ms, when that is half the minimum
 * election timeout or more: long enough for the rest of the cluster to
 * notice. answered: whether the node went on answering meanwhile (the
 * write ran without its lock). what: the write, e.g. "storing 7..9". */
void node_warn_slow_disk_locked(struct raft_node *n, uint64_t elapsed_ms, bool answered,
                                const char *what, ...) __attribute__((format(printf, 4, 5)));
/* One sentence for a caller who asked why (a refused transfer or
 * membership change) into why (cap bytes; nothing when why is NULL). */
void node_say_why(char *why, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Whether a line at this level is printed: callers ask before building
 * what only the line needs, so that a quiet node pays nothing for it. */
static inline bool node_logs(const struct raft_node *n, enum raft_log_level level)
{
    return level <= n->cfg.log_level;
}
/* Whether an info line of this kind (about entries first..last) is printed
 * now; if not, the event is counted into the summary of its second. */
bool node_log_admit_locked(struct raft_node *n, enum log_kind kind, uint64_t now,
                           uint64_t first, uint64_t last);
/* Prints the summaries of seconds that are over; cheap when there are none. */
void node_log_flush_locked(struct raft_node *n, uint64_t now);
/* "put greeting from client 7 seq 3", "no-op", or "command (23 bytes)". */
void node_describe_entry(const struct raft_node *n, uint8_t type, const uint8_t *data,
                         uint32_t len, char *buf, size_t cap);
/* A client's command appended as leader (appended) or refused because
 * this node does not lead: "put k from client 7 seq 3 -> append at 12@T2". */
void node_log_proposal_locked(struct raft_node *n, const uint8_t *data, uint32_t len,
                              bool appended);
/* The leader's notes on its followers, each said once per change: one
 * stopped answering (at the election timer's tick), answers again (at its
 * reply), fell behind or caught up (at a successful AppendEntries reply). */
void node_log_silent_peers_locked(struct raft_node *n, uint64_t now);
void node_log_peer_answered_locked(struct raft_node *n, struct peer *p, uint64_t now);
void node_log_peer_progress_locked(struct raft_node *n, struct peer *p);
/* Counts one more pre-vote asked for since a leader was last heard (or
 * since this node stopped leading). True if this one is logged: the first,
 * then at most one every few seconds, with note set to "(12th attempt, ...)". */
bool node_log_pre_vote_attempt_locked(struct raft_node *n, uint64_t now, char *note,
                                      size_t cap);

/* ---- election.c ---- */
void election_tick_locked(struct raft_node *n, uint64_t now);
void election_prepare_vote_locked(struct raft_node *n, struct peer *p, struct rpc *out);
void election_handle_vote_reply_locked(struct raft_node *n, struct peer *p,
                                       const struct rpc *sent, int rc,
                                       const struct raft_msg *reply, uint64_t now);
int election_recv_request_vote_locked(struct raft_node *n, const struct raft_msg *req,
                                      uint64_t now, struct raft_msg *reply);
bool election_log_up_to_date(uint64_t my_last_term, uint64_t my_last_index,
                             uint64_t their_last_term, uint64_t their_last_index);
/* Thesis §3.10: a real election at once, skipping pre-vote, whose vote
 * requests carry the transfer flag. */
void election_campaign_now_locked(struct raft_node *n, uint64_t now);

/* ---- replication.c ---- */
void replication_prepare_append_locked(struct raft_node *n, struct lane *l, uint64_t now,
                                       struct rpc *out);
void replication_handle_append_reply_locked(struct raft_node *n, struct peer *p,
                                            const struct rpc *sent, int rc,
                                            const struct raft_msg *reply, uint64_t now);
int replication_recv_append_entries_locked(struct raft_node *n, const struct raft_msg *req,
                                           uint64_t now, struct raft_msg *reply);

/* ---- snapshot.c ---- */
/* Whether the storage writes and reads snapshots piece by piece
 * (begin_snapshot, read_snapshot): then no snapshot is ever whole in memory,
 * neither one taken here nor one received. */
static inline bool node_storage_streams(const struct raft_storage *st)
{
    return st->begin_snapshot && st->read_snapshot;
}
void snapshot_prepare_install_locked(struct raft_node *n, struct peer *p, uint64_t now,
                                     struct rpc *out);
void snapshot_handle_install_reply_locked(struct raft_node *n, struct peer *p,
                                         const struct rpc *sent, int rc,
                                         const struct raft_msg *reply, uint64_t now);
int snapshot_recv_install_locked(struct raft_node *n, const struct raft_msg *req,
                                 uint64_t now, struct raft_msg *reply);
/* §7: when enough applied entries sit in the log, the applier captures
 * the state machine, and the snapshotter thread writes it without the lock
 * and compacts the log, while the applier goes on. */
void snapshot_take_if_due_drops_lock(struct raft_node *n);
/* A snapshot whose bytes are in memory (taken over: freed with it, or at
 * once on failure), or in storage only (with the configuration it covers,
 * NULL for none, and where the state machine's bytes begin). */
struct snapshot_ref *snapshot_new(uint64_t index, uint64_t term, uint8_t *data, size_t len);
struct snapshot_ref *snapshot_new_stored(uint64_t index, uint64_t term, size_t len,
                                         const struct raft_membership *members,
                                         size_t state_offset);
/* The snapshot a restart found (p->snapshot is taken over), into *out:
 * 0, or -errno when its head cannot be read or holds no configuration. */
int snapshot_of_persisted(struct raft_node *n, struct raft_persisted *p,
                          struct snapshot_ref **out);
void snapshot_release(struct snapshot_ref *s);
/* Loads s into the state machine, from memory or from storage (called
 * without the lock, holding a reference to s). 0 or a negative errno:
 * -ESTALE when storage holds a newer snapshot by now. */
int snapshot_restore(struct raft_node *n, const struct snapshot_ref *s);
/* Frees the latest snapshot's bytes once only storage needs to hold them:
 * it can read them back, and no restore or send uses them. */
void snapshot_leave_in_storage_locked(struct raft_node *n);
/* An InstallSnapshot chunk whose bytes are in storage is read into the
 * lane's buffer, without the lock. Returns 0 or the storage's error. */
int snapshot_read_chunk_drops_lock(struct raft_node *n, struct lane *l, struct rpc *rpc);
/* An AppendEntries whose entries' data left memory (log_evict_through)
 * gets it back from storage, without the lock. Returns 0 or an error:
 * -ESTALE when a snapshot covers the entries by now. */
int replication_read_batch_drops_lock(struct raft_node *n, struct lane *l, struct rpc *rpc);

/* ---- incoming.c: a snapshot being received (Figure 13) ---- */
/* Starts receiving the snapshot at (index, term), dropping any other one
 * being received: 0 or the storage's error. */
int incoming_begin_locked(struct raft_node *n, uint64_t index, uint64_t term);
/* The next len bytes of the snapshot (of total in all): 0 or an error. */
int incoming_append_locked(struct raft_node *n, const uint8_t *data, size_t len,
                           uint64_t total);
/* The configuration at the head of what was received (membership.h). */
int incoming_configuration(const struct raft_node *n, struct raft_membership *m,
                           bool *found, size_t *state_offset);
/* Stores the whole snapshot received (storage replaces its snapshot and
 * drops what it covers): 0 or an error. *data gets its bytes (the caller's
 * now) when they were gathered in memory, else NULL: storage alone has
 * them. n->incoming still describes it until incoming_abort_locked. */
int incoming_store_locked(struct raft_node *n, uint8_t **data);
void incoming_abort_locked(struct raft_node *n);

/* ---- transfer.c: leadership transfer (thesis §3.10) ---- */
/* Starts a transfer to target (RAFT_NO_NODE: the most up-to-date voter);
 * 0, or -EINVAL / -EBUSY with one sentence in why. */
int transfer_start_locked(struct raft_node *n, int32_t target, uint64_t now,
                          char *why, size_t why_cap);
/* Abandons a transfer whose election timeout has passed. */
void transfer_tick_locked(struct raft_node *n, uint64_t now);
/* Whether p is the target, caught up, and a TimeoutNow is due by now; when
 * one is pending, the time it is due (0: none). */
bool transfer_timeout_now_due_locked(const struct raft_node *n, const struct peer *p,
                                     uint64_t now);
uint64_t transfer_next_send_locked(const struct raft_node *n, const struct peer *p);
void transfer_prepare_timeout_now_locked(struct raft_node *n, struct peer *p, uint64_t now,
                                         struct rpc *out);
void transfer_handle_timeout_now_reply_locked(struct raft_node *n, struct peer *p, int rc);
int transfer_recv_timeout_now_locked(struct raft_node *n, const struct raft_msg *req,
                                     uint64_t now, struct raft_msg *reply);

/* ---- commit.c (a leaf) ---- */
/* The highest of the values that a majority of the n holds. */
uint64_t commit_quorum_index(const uint64_t *match, uint32_t n);
uint64_t commit_next_index(uint64_t commit, uint64_t quorum_index,
                           uint64_t term_at_quorum, uint64_t current_term);

/* ---- the threads ---- */
void *election_timer_main(void *arg); /* timer.c */
void *peer_lane_main(void *arg);      /* peer.c */
void *applier_main(void *arg);        /* apply.c */
void *disk_syncer_main(void *arg);    /* syncer.c */
void *snapshotter_main(void *arg);    /* snapshot.c */

/* ---- clients.c ---- */
/* Wakes the client threads whose wait is over, or all of them (a role
 * change, a stop, a disk failure, a new leader's no-op committed). */
void clients_wake_locked(struct raft_node *n, bool all);
/* Thesis §6.4.1: whether this leader may answer a read at `now` without a
 * round of heartbeats (its read lease). */
bool clients_holds_lease_locked(const struct raft_node *n, uint64_t now);
/* Calls back the async puts that are over, without the lock. */
void clients_call_async_done_drops_lock(struct raft_node *n);

#endif
