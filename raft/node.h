/*
 * node.h - the state of one Raft node, shared by its threads.
 *
 * The node is a monitor: one mutex (mu) guards every field below it, and
 * threads sleep on condition variables (CLOCK_MONOTONIC) until there is work.
 * Functions whose names end in _locked must be called with mu held. Nobody
 * holds mu across a network call; disk writes of the term, the vote and a
 * follower's new entries do happen under it, because the reply that depends
 * on them must wait for them anyway (Figure 2).
 */
#ifndef RAFT_NODE_H
#define RAFT_NODE_H

#include <pthread.h>
#include <stdarg.h>

#include "raft/log.h"
#include "raft/raft.h"

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
                                * term was sent (node_lease_clock_ms, §6.4.1) */
    uint64_t acked_round;      /* highest read round it confirmed (ReadIndex) */
    uint64_t sent_round;       /* read round of the last request sent */
    uint64_t snapshot_offset;  /* InstallSnapshot progress */
};

/* The latest snapshot, kept in memory to send to lagging followers. */
struct snapshot_ref {
    uint64_t index;
    uint64_t term;
    uint8_t *data;
    size_t len;
    unsigned refs; /* the node's own reference plus one per send in progress */
};

struct raft_node {
    struct raft_config cfg;
    struct raft_transport transport;
    struct raft_storage storage;
    struct raft_fsm fsm;
    uint32_t majority;

    pthread_t timer_thread, applier_thread, syncer_thread;

    pthread_mutex_t mu;
    pthread_cond_t timer_cond;   /* election timer: deadline moved */
    pthread_cond_t peers_cond;   /* replicators: entries, role change, reads */
    pthread_cond_t applier_cond; /* applier: commit advanced, snapshot arrived */
    pthread_cond_t syncer_cond;  /* syncer: leader has unsynced entries */
    pthread_cond_t changed_cond; /* internal waiters: disk write or snapshot done */

    /* mu guards everything below */
    bool stopping;
    bool disk_failed; /* a storage write failed: answer nothing durable */

    /* Figure 2, persistent state (mirrored on storage) */
    uint64_t current_term;
    int32_t voted_for;
    struct raft_log log;

    /* Figure 2, volatile state */
    uint64_t commit_index;
    uint64_t last_applied;

    enum raft_role role;
    int32_t leader_id;
    uint32_t votes; /* bit i: node i granted this (pre-)election */
    uint64_t election_deadline_ms;
    uint64_t last_leader_contact_ms; /* or start: pre-vote, §4.2.3, read leases */
    uint64_t rng;

    /* Leader: entries up to durable_index are on this node's disk; only they
     * count towards commitment (thesis §10.2.1). syncing: the syncer is
     * writing outside the lock, so nobody else may touch the stored log. */
    uint64_t durable_index;
    bool syncing;
    uint64_t leader_first_index; /* index of this term's no-op */

    /* ReadIndex (thesis §6.4): reads wait for a round of heartbeats */
    uint64_t read_round;      /* the latest round a read asked for */
    uint64_t confirmed_round; /* the latest round a majority acknowledged */
    struct client_waiter *waiters; /* client threads waiting (clients.c) */
    struct raft_async *async;      /* puts waiting to be applied (clients.c) */
    struct raft_async *async_done; /* and those over, for the applier to call back */

    /* Snapshots (§7) */
    struct snapshot_ref *snapshot;  /* latest, or NULL */
    bool snapshotting;              /* a snapshot is being written */
    struct snapshot_ref *to_restore; /* received, for the applier to load */
    uint8_t *incoming;              /* InstallSnapshot chunks so far */
    size_t incoming_len, incoming_cap;
    uint64_t incoming_index, incoming_term;

    struct peer peers[RAFT_MAX_NODES];
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

/* ---- clients.c ---- */
/* Wakes the client threads whose wait is over, or all of them (a role
 * change, a stop, a disk failure, a new leader's no-op committed). */
void node_wake_clients_locked(struct raft_node *n, bool all);

/* ---- node.c ---- */
uint64_t raft_now_ms(void);
void node_log(struct raft_node *n, enum raft_log_level level,
              const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void node_unlock(struct raft_node *n);
int node_wait_until_locked(struct raft_node *n, pthread_cond_t *cond,
                           uint64_t deadline_ms);
int node_persist_term_vote_locked(struct raft_node *n, uint64_t term,
                                  int32_t vote);
void node_become_follower_locked(struct raft_node *n, uint64_t term,
                                 int32_t leader, const char *why);
void node_wait_not_syncing_locked(struct raft_node *n);
void node_settle_log_locked(struct raft_node *n);
void node_disk_failed_locked(struct raft_node *n, const char *what, int rc);
bool node_is_stale_term_locked(struct raft_node *n, uint64_t term,
                               uint32_t from);
void node_wake_all_locked(struct raft_node *n);
/* Whether a broadcast on peers_cond is needed to get something new sent:
 * some peer has been sent every entry and has no request in flight (for a
 * new entry), or has been sent the latest read round (for a new round).
 * Otherwise the replicators already woken, or waiting for a reply, send it
 * with what they have pending. */
bool node_some_peer_idle_locked(const struct raft_node *n);
bool node_some_peer_sent_round_locked(const struct raft_node *n);
uint64_t node_lease_clock_ms(void);
/* Appends a command as leader; 0 or -EPERM. */
int node_propose_locked(struct raft_node *n, const uint8_t *data, uint32_t len);
/* Calls back the async puts that are over, without the lock (taken again
 * before it returns). */
void node_call_async_done_locked(struct raft_node *n);
void node_note_read_ack_locked(struct raft_node *n, struct peer *p, uint64_t round);

/* ---- election.c ---- */
void *election_timer_main(void *arg);
void election_reset_timer_locked(struct raft_node *n);
void election_send_vote_locked(struct raft_node *n, struct peer *p);
int election_recv_request_vote_locked(struct raft_node *n,
                                      const struct raft_msg *req,
                                      struct raft_msg *reply);
bool election_log_up_to_date(uint64_t my_last_term, uint64_t my_last_index,
                             uint64_t their_last_term,
                             uint64_t their_last_index);

/* ---- replication.c ---- */
void *peer_replicator_main(void *arg);
void replication_become_leader_locked(struct raft_node *n);
int replication_recv_append_entries_locked(struct raft_node *n,
                                           const struct raft_msg *req,
                                           struct raft_msg *reply);
void replication_advance_commit_locked(struct raft_node *n);
void *disk_syncer_main(void *arg);

/* ---- commit.c ---- */
uint64_t commit_quorum_index(const uint64_t *match, uint32_t n_nodes);
uint64_t commit_next_index(uint64_t commit, uint64_t quorum_index,
                           uint64_t term_at_quorum, uint64_t current_term);

/* ---- snapshot.c ---- */
void *applier_main(void *arg);
int snapshot_recv_install_locked(struct raft_node *n,
                                 const struct raft_msg *req,
                                 struct raft_msg *reply);
void snapshot_send_locked(struct raft_node *n, struct peer *p);
void snapshot_release(struct snapshot_ref *s);
struct snapshot_ref *snapshot_new(uint64_t index, uint64_t term,
                                  uint8_t *data, size_t len);

#endif
