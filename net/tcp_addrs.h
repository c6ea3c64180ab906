/*
 * tcp_addrs.h - where each node listens, as far as one node knows: the
 * address table of the outbound transport (net/tcp_transport.c); not for
 * use outside net/.
 *
 * It starts from the addresses given on the command line (--peers, by
 * id) and follows every configuration the node uses (thesis ch. 4): a
 * member brings its address, or a new one when it moved. An address
 * given on the command line stays: it says how this node reaches that
 * id, which may differ from how the leader that wrote the configuration
 * reaches it (address translation, one proxy per link), and a
 * configuration copies the leader's view of its members. A member that
 * left keeps its last address, as the leader still tells it that it was
 * removed (§4.2.2); ids are never reused, so it names nobody else.
 * Readers copy an entry; each entry counts its changes (gen), so that a
 * connection made to an older address can tell it is stale.
 */
#ifndef NET_TCP_ADDRS_H
#define NET_TCP_ADDRS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "net/tcp_internal.h"
#include "raft/raft.h"

/* An entry for every id a node can have. */
#define TCP_MAX_PEERS (RAFT_MAX_ID + 1)

struct tcp_addr {
    bool known;
    char host[TCP_HOST_MAX];
    uint16_t port;
    uint32_t gen; /* counts the changes of this entry; 0 before the first */
    bool pinned;  /* given on the command line: configurations do not change it */
};

struct tcp_addrs {
    uint32_t self_id; /* its own entry stays unknown: nobody dials itself */
    tcp_log_fn log;
    void *log_ctx;
    /* Guards a[]. Held only to copy or write entries, never across I/O
     * (nor while logging), so that it may be taken with the node's lock
     * held, or a lane's. */
    pthread_mutex_t mu;
    struct tcp_addr a[TCP_MAX_PEERS];
};

/* Entries 0 .. n-1 from addrs ("host:port"; addrs may be NULL when n is 0;
 * self_id's is not used). Returns 0, or -EINVAL (logged) for an address
 * that is not host:port, an id above RAFT_MAX_ID, or n over TCP_MAX_PEERS. */
int tcp_addrs_init(struct tcp_addrs *t, uint32_t self_id, char *const *addrs, uint32_t n,
                   tcp_log_fn log, void *log_ctx);
void tcp_addrs_destroy(struct tcp_addrs *t);

/* A copy of node id's entry (id <= RAFT_MAX_ID). */
struct tcp_addr tcp_addrs_get(struct tcp_addrs *t, uint32_t id);

/* Follows a configuration: its members' addresses are taken (a member
 * whose address is "" keeps the one known, as does one given on the
 * command line; ids not in it keep theirs).
 * Never blocks on I/O. */
void tcp_addrs_set_members(struct tcp_addrs *t, const struct raft_membership *m);

#endif
