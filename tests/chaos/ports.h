/*
 * ports.h - loopback ports reserved for node processes the tests start.
 *
 * A test picks a port for each node before it starts the node. Closing the
 * socket it picked the port with would free the port for anyone: the kernel
 * hands the same number to the next bind(port 0) - a proxy of the same
 * cluster, say - and the node, started a moment later, cannot listen
 * ("Address already in use"). So the port stays reserved for as long as the
 * test lives: a socket bound to it with SO_REUSEADDR and never listening.
 * The kernel then gives the port to no other bind(0) and to no outgoing
 * connection, while a node (which also binds with SO_REUSEADDR) can still
 * listen on it, and listen again after a restart.
 */
#ifndef TESTS_CHAOS_PORTS_H
#define TESTS_CHAOS_PORTS_H

struct port_reservation {
    int fd;   /* the reserving socket; -1 if none */
    int port; /* the reserved port */
};

/* Reserves a free port on 127.0.0.1; 0 or -errno. */
int port_reserve(struct port_reservation *r);

/* Reserves n consecutive ports (`raft cluster` listens on base, base+1,
 * ...) into p[0..n-1]; 0 or -errno (-EADDRINUSE when no run was found). */
int port_reserve_run(struct port_reservation *p, int n);

/* Frees the port (the reservation, not a node listening on it). */
void port_release(struct port_reservation *r);

#endif
