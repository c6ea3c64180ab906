/*
 * netns.h - a small private network of Linux network namespaces, so that a
 * system test can run each node on a "machine" of its own, with its own
 * address, and pull a machine's cable.
 *
 *     root namespace: the test and its clients, on PREFIXc = S.1/24
 *          |  veth pair
 *     PREFIX-sw: a bridge br0 (the switch) with one port per machine
 *          |  a veth pair per machine, port hI on the switch
 *     PREFIX-hI: eth0 = S.(10+I)/24, and lo
 *
 * S is a /24 of 198.18.0.0/15, the range RFC 2544 sets aside for network
 * tests, chosen so that no address or route of the root namespace is in
 * it. The bridge sits in a namespace of its own rather than in the root
 * one: there its packet filter is empty, so a host firewall that drops
 * bridged traffic (Docker's FORWARD policy with br_netfilter, say) cannot
 * drop the traffic between machines.
 *
 * PREFIX is "rt<pid>-<two hex digits>", new for every run, so that what a
 * killed run left behind never collides with a new one; netns_make first
 * removes the namespaces of runs whose process is gone. Deleting the
 * namespaces deletes every link with them.
 *
 * Making namespaces takes root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and the
 * `ip` command of iproute2.
 */
#ifndef TESTS_SUPPORT_NETNS_H
#define TESTS_SUPPORT_NETNS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define NETNS_MAX_HOSTS 5

struct netns_net {
    char prefix[24];
    unsigned n; /* machines made so far */
    char subnet[16]; /* "198.18.X": the first three bytes of every address */
    char switch_ns[40];
    char host_ns[NETNS_MAX_HOSTS][40];
    char host_ip[NETNS_MAX_HOSTS][20]; /* S.(10+I) */
    char root_ip[20];                  /* S.1, the test's own address */
    bool switch_made;
};

enum netns_result {
    NETNS_OK,
    NETNS_UNAVAILABLE, /* namespaces cannot be made here; why says why */
    NETNS_FAILED,      /* a later step failed; why names it */
};

/* Makes the switch and n machines (n <= NETNS_MAX_HOSTS). On anything but
 * NETNS_OK, what was made is still recorded in net for netns_destroy. */
enum netns_result netns_make(struct netns_net *net, unsigned n, char *why, size_t cap);

/* Deletes every namespace of net (and so every link); safe to call on a
 * net made in part, or twice. Processes still running in a namespace keep
 * it (and its links) alive until they exit: stop them first. */
void netns_destroy(struct netns_net *net);

/* Takes machine i's port on the switch down or up: its cable pulled or
 * plugged back. 0, or -1 if ip failed. */
int netns_set_link(struct netns_net *net, unsigned i, bool up);

/* Starts argv (argv[0] the program's path) inside machine i's namespace,
 * stdout and stderr appended to log; it is killed if the test process
 * dies. Its pid, or -1. */
pid_t netns_spawn(const struct netns_net *net, unsigned i, const char *log,
                  const char *const *argv);

/* Runs argv inside machine i's namespace to its end, at most timeout_ms,
 * stdout into out (NUL-terminated, cut at cap). Its exit status, or -1 if
 * it did not exit by itself. */
int netns_run(const struct netns_net *net, unsigned i, const char *const *argv, char *out,
              size_t cap, unsigned timeout_ms);

#endif
