/*
 * tcp_helpers.h - what the TCP suites (unit_tcp_transport, unit_tcp_server)
 * share: a server on 127.0.0.1 whose handler echoes every request in a way
 * that tells which request a reply answers, a log that counts warnings, and
 * small socket helpers. Failures are cmocka assertions.
 */
#ifndef TESTS_SUPPORT_TCP_HELPERS_H
#define TESTS_SUPPORT_TCP_HELPERS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "net/tcp_server.h"
#include "net/tcp_socket.h"
#include "net/tcp_transport.h"

struct tcp_test_log {
    pthread_mutex_t mu;
    int warns; /* lines at warn level or worse */
    char last_warn[512];
    char warned[4096]; /* every warning so far, one a line, while they fit */
    int verbose; /* TCP_TEST_LOG set: echo every line to stderr */
};

/* The handler answers every Raft request with the matching reply, computed
 * from the request so that a test can tell which request a reply answers:
 * RequestVote term + 1, granted; AppendEntries match_index = prev_log_index
 * + n_entries and conflict_index = the bytes of data carried;
 * InstallSnapshot next_offset = offset + len. A client request is answered
 * with its key as the value. */
struct tcp_test_echo {
    uint32_t id;              /* the node id the replies carry */
    unsigned sleep_first_ms;  /* the first request is answered this late */
    atomic_int calls;
    /* Client requests are answered from a thread of their own (a deferred
     * reply), the first this late, the others a quarter of it, when not 0. */
    unsigned defer_ms;
    pthread_t repliers[8];
    atomic_int n_repliers;
};

struct tcp_test_fixture {
    struct tcp_test_log log;
    struct tcp_test_echo echo;
    struct tcp_server *server;
    uint16_t port;
    char addr[32];
};

/* cmocka setup and teardown: a fixture with no server yet; teardown stops
 * the server if one is running. */
int tcp_test_setup(void **state);
int tcp_test_teardown(void **state);

/* Starts the echo server on a free port (0s: the server's defaults). */
void tcp_test_start_server(struct tcp_test_fixture *f, unsigned max_conns,
                           unsigned idle_ms);

/* The options tcp_test_start_server() uses, for port. */
struct tcp_server_options tcp_test_server_options(struct tcp_test_fixture *f,
                                                  uint16_t port);

/* For the fixture's log (a tcp_test_log as ctx). */
void tcp_test_capture_log(void *ctx, enum raft_log_level lvl, const char *msg);
int tcp_test_warn_count(struct tcp_test_log *log);

/* A transport of node 0 whose peer 1 is addr. */
struct tcp_transport *tcp_test_transport_to(struct tcp_test_fixture *f,
                                            const char *addr);

struct raft_msg tcp_test_request_vote(uint64_t term);

/* Waits for the peer to close fd; returns the wait in ms, or -1 on timeout. */
int64_t tcp_test_wait_closed(int fd, unsigned timeout_ms);

/* Sends all n bytes in one send(). */
void tcp_test_send_raw(int fd, const void *p, size_t n);

/* A client get of key through tcp_roundtrip(), checked to echo key when it
 * succeeds. Returns tcp_roundtrip()'s result. */
int tcp_test_client_get(int fd, const char *key, unsigned timeout_ms);

void tcp_test_sleep_ms(unsigned ms);
int64_t tcp_test_now_ms(void);

#endif
