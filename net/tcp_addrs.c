/*
 * tcp_addrs.c - the address table of the outbound transport (see
 * tcp_addrs.h).
 */
#include "net/tcp_addrs.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "net/tcp_socket.h"

int tcp_addrs_init(struct tcp_addrs *t, uint32_t self_id, char *const *addrs, uint32_t n,
                   tcp_log_fn log, void *log_ctx)
{
    memset(t, 0, sizeof(*t));
    t->self_id = self_id;
    t->log = log;
    t->log_ctx = log_ctx;
    if (self_id > RAFT_MAX_ID || n > TCP_MAX_PEERS || (n > 0 && addrs == NULL))
        return -EINVAL;
    for (uint32_t i = 0; i < n; i++) {
        struct tcp_addr *a = &t->a[i];
        if (i == self_id)
            continue;
        if (!addrs[i] || tcp_parse_addr(addrs[i], a->host, sizeof a->host, &a->port) != 0) {
            tcp_log(log, log_ctx, RAFT_LOG_ERROR, "address of n%u \"%s\" is not host:port",
                    (unsigned)i, addrs[i] ? addrs[i] : "(null)");
            return -EINVAL;
        }
        a->known = true;
        a->pinned = true;
        a->gen = 1;
    }
    int rc = pthread_mutex_init(&t->mu, NULL);
    return -rc;
}

void tcp_addrs_destroy(struct tcp_addrs *t)
{
    pthread_mutex_destroy(&t->mu);
}

struct tcp_addr tcp_addrs_get(struct tcp_addrs *t, uint32_t id)
{
    pthread_mutex_lock(&t->mu);
    struct tcp_addr a = t->a[id];
    pthread_mutex_unlock(&t->mu);
    return a;
}

/* What one set_members changed, said after the mutex is released. */
struct tcp_addr_change {
    uint32_t id;
    bool known;
    char addr[RAFT_ADDR_MAX];
};

/* Takes a member's address into its entry; true when it changed. */
static bool take_address(struct tcp_addrs *t, const struct raft_member *x,
                         struct tcp_addr_change *c)
{
    struct tcp_addr *a = &t->a[x->id];
    char host[TCP_HOST_MAX];
    uint16_t port;
    if (x->addr[0] == '\0' || a->pinned)
        return false; /* this node knows its own way there: from --peers */
    if (tcp_parse_addr(x->addr, host, sizeof host, &port) != 0) {
        *c = (struct tcp_addr_change){.id = x->id, .known = false};
        snprintf(c->addr, sizeof c->addr, "%s", x->addr);
        return true; /* reported as unusable; the entry stays as it was */
    }
    if (a->known && a->port == port && strcmp(a->host, host) == 0)
        return false;
    memcpy(a->host, host, sizeof host);
    a->port = port;
    a->known = true;
    a->gen++;
    *c = (struct tcp_addr_change){.id = x->id, .known = true};
    snprintf(c->addr, sizeof c->addr, "%s", x->addr);
    return true;
}

void tcp_addrs_set_members(struct tcp_addrs *t, const struct raft_membership *m)
{
    struct tcp_addr_change changes[RAFT_MAX_NODES];
    uint32_t n_changes = 0;
    pthread_mutex_lock(&t->mu);
    for (uint32_t i = 0; i < m->n && i < RAFT_MAX_NODES; i++) {
        const struct raft_member *x = &m->members[i];
        if (x->id > RAFT_MAX_ID || x->id == t->self_id)
            continue;
        if (take_address(t, x, &changes[n_changes]))
            n_changes++;
    }
    /* A server that left keeps its address: the leader still sends it the
     * entry that removes it, so that it stops campaigning (§4.2.2); its id
     * is never given to another server. */
    pthread_mutex_unlock(&t->mu);
    for (uint32_t i = 0; i < n_changes; i++) {
        const struct tcp_addr_change *c = &changes[i];
        if (c->known)
            tcp_log(t->log, t->log_ctx, RAFT_LOG_DEBUG,
                    "n%u is at %s (from the configuration)", (unsigned)c->id, c->addr);
        else
            tcp_log(t->log, t->log_ctx, RAFT_LOG_WARN,
                    "the configuration gives n%u the address \"%s\", which is not host:port; "
                    "it is not dialed there", (unsigned)c->id, c->addr);
    }
}
