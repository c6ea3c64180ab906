/*
 * bench_loop.h - the event loops under a closed-loop load: C client
 * sessions, each with one request in flight, driven by up to
 * BENCH_SESSIONS_PER_LOOP sessions a thread on one epoll set, for T
 * seconds.
 *
 * A thread per session, blocked until its reply, would cost a thread
 * wake-up per operation; on a small machine that time is taken from the
 * system being measured. The protocol belongs to the caller (kv/bench.c
 * speaks the store's, bench/etcd_load.c HTTP to etcd), through the
 * callbacks of a struct bench_driver; this file owns the threads, the
 * sockets' epoll registration, the timers and the latency samples. Like
 * bench/bench_stats.c it uses nothing else in the tree, so that both load
 * generators link it.
 *
 * Everything about one session happens on its loop's thread.
 */
#ifndef BENCH_BENCH_LOOP_H
#define BENCH_BENCH_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bench/bench_stats.h"

#define BENCH_SESSIONS_PER_LOOP 64
/* Operations may be of up to this many classes (put, get, ...), each
 * summarised on its own as well as with the others. */
#define BENCH_MAX_CLASSES 8

struct bench_loop;

/* Where a session's connection stands. */
enum bench_io {
    BENCH_IDLE,       /* no connection, or no request on it */
    BENCH_CONNECTING, /* the connect is in progress */
    BENCH_SENDING,    /* part of the request is still to be written */
    BENCH_AWAITING,   /* the request is out; its reply is awaited */
};

/* The start of each caller's session struct. */
struct bench_session {
    struct bench_loop *loop;
    unsigned index;    /* 0 .. clients-1 */
    int fd;            /* its connection, or -1 */
    uint32_t watching; /* the epoll events asked for on fd */
    enum bench_io io;
    const void *out;   /* the request being sent (the driver's buffer) */
    size_t out_len, out_sent;
    uint64_t op_start_ns;
    unsigned op_class; /* the operation's class, < the run's n_classes: set by start() */
    uint64_t wake_ns;  /* the driver's timer() runs once this has passed */
    bool finished;     /* the run is over for it */
};

struct bench_driver {
    size_t session_size; /* of the caller's struct, which begins with a bench_session */
    const void *ctx;     /* handed back by bench_ctx() */
    /* Once per session before its first operation; 0 or -errno (ends the run). */
    int (*init)(struct bench_session *s);
    /* At the end, for every session, even one init() never saw (zeroed
     * past the bench_session). */
    void (*free)(struct bench_session *s);
    /* Starts the next operation: sets op_start_ns, wake_ns and (if the
     * run has classes) op_class. */
    void (*start)(struct bench_session *s, uint64_t now);
    /* The request is out and reply bytes can be read from fd. */
    void (*readable)(struct bench_session *s, uint64_t now);
    /* The connection failed before the request was out (the connect or a
     * send); it is closed. */
    void (*broken)(struct bench_session *s, uint64_t now);
    /* now >= wake_ns. */
    void (*timer)(struct bench_session *s, uint64_t now);
    /* Optional: writes up to n bytes of the request on s's connection
     * (a TLS session, say) and returns the count, -EAGAIN when it would
     * block, or -errno. NULL: send() on fd. */
    long (*write)(struct bench_session *s, const void *p, size_t n);
};

/* Runs `clients` sessions for `seconds`, then summarises every timed
 * operation into *out. 0, or the first -errno that ended a loop early
 * (the summary is still filled in). */
int bench_loops_run(const struct bench_driver *d, unsigned clients, double seconds,
                    struct bench_result *out);

/* The same, with operations of n_classes classes (1..BENCH_MAX_CLASSES):
 * *out summarises them all, by_class[c] those of class c. */
int bench_loops_run_classes(const struct bench_driver *d, unsigned clients, double seconds,
                            unsigned n_classes, struct bench_result *out,
                            struct bench_result *by_class);

const void *bench_ctx(const struct bench_session *s);

/* The operation is over: timed if ok, else counted as an error. The next
 * one starts at once unless the time is up (or the run failed). */
void bench_op_done(struct bench_session *s, bool ok, uint64_t now);

/* Ends the whole run with rc (no memory, say); the session's operation
 * counts as an error. */
void bench_abort(struct bench_session *s, int rc, uint64_t now);

/* Takes fd, a socket still connecting, as the session's connection and
 * watches it for input and output. 0 or -errno (fd is then closed). */
int bench_adopt(struct bench_session *s, int fd);

/* Closes the session's connection, if any. */
void bench_close(struct bench_session *s);

/* Sends the request buf[0 .. len) on the session's connection (fd >= 0),
 * once its connect completes if it is still connecting; buf must last
 * until the reply. Then readable() runs when the reply arrives, or
 * broken() if the connection fails first. */
void bench_request(struct bench_session *s, const void *buf, size_t len, uint64_t now);

#endif
