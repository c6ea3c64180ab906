/*
 * proxy.h - a fault-injecting TCP proxy for one directed link.
 *
 * It listens on an address and forwards every connection it accepts to a
 * target address, byte for byte, in both directions. Between the two it can
 * be told to misbehave, the way real networks do:
 *
 *   cut        every open connection is reset (RST to both ends), and new
 *              connections are accepted and blackholed: their bytes are read
 *              and thrown away, nothing reaches the target, nothing comes
 *              back. A sender sees what a partition looks like from inside:
 *              connect() succeeds, then silence until its timeout fires.
 *   heal       forward again; blackholed connections are reset, so that
 *              their senders reconnect instead of waiting for replies to
 *              requests that were thrown away.
 *   delay      hold every chunk of forwarded data for a random time between
 *              min and max ms before passing it on (order is kept, as TCP
 *              keeps it: a chunk never overtakes the one before it).
 *   reset      reset a random share of the open connections.
 *
 * The Raft nodes are pointed at proxies through their --peers lists: node
 * i's list names, at position j, the proxy for the link i -> j (a node
 * takes its peers' ids from their positions in its own list, and every
 * message carries its sender's id, so any address that reaches node j will
 * do at position j). Requests from i to j and their replies travel on
 * connections that i opens, so one proxy carries the link i -> j; cutting
 * both i -> j and j -> i separates the two nodes.
 *
 * Threads: one listener per proxy, two per forwarded connection (one per
 * direction), one per blackholed connection. Every function here may be
 * called from any thread. tests/chaos/proxy_main.c wraps it as a command,
 * `raft-proxy`, for experiments by hand.
 */
#ifndef TESTS_CHAOS_PROXY_H
#define TESTS_CHAOS_PROXY_H

#include <stdint.h>

struct chaos_proxy;

/* Listens on listen_addr ("host:port"; port 0 picks a free one) and
 * forwards to target ("host:port"). seed drives the random choices (delay,
 * which connections to reset). Returns 0 or a negative errno. */
int chaos_proxy_start(struct chaos_proxy **out, const char *listen_addr, const char *target,
                      uint64_t seed);

/* Resets every connection, joins every thread, frees p. */
void chaos_proxy_stop(struct chaos_proxy *p);

/* "127.0.0.1:port" as listened on: what to put in a --peers list. */
const char *chaos_proxy_addr(const struct chaos_proxy *p);
const char *chaos_proxy_target(const struct chaos_proxy *p);

void chaos_proxy_cut(struct chaos_proxy *p);
void chaos_proxy_heal(struct chaos_proxy *p);
int chaos_proxy_is_cut(struct chaos_proxy *p);

/* Every chunk forwarded from now on waits min_ms..max_ms (0, 0: none). */
void chaos_proxy_set_delay(struct chaos_proxy *p, unsigned min_ms, unsigned max_ms);

/* Resets about `percent` % of the open connections (each independently).
 * Returns how many were reset. */
unsigned chaos_proxy_reset_some(struct chaos_proxy *p, unsigned percent);

struct chaos_proxy_stats {
    uint64_t accepted;    /* connections accepted */
    uint64_t blackholed;  /* of which blackholed (accepted while cut) */
    uint64_t refused;     /* of which the target refused */
    uint64_t resets;      /* connections reset by cut, heal, reset_some or stop */
    uint64_t bytes_forwarded;
    uint64_t bytes_dropped; /* read from blackholed connections */
    unsigned open;        /* connections open now */
};

void chaos_proxy_get_stats(struct chaos_proxy *p, struct chaos_proxy_stats *st);

#endif
