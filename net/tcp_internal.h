/*
 * tcp_internal.h - helpers shared by the TCP modules of net/ (tcp_socket.c,
 * tcp_transport.c, tcp_server.c); not for use outside net/.
 *
 * Every socket is non-blocking with TCP_NODELAY, and every wait is a poll()
 * bounded by a deadline in milliseconds on CLOCK_MONOTONIC (tcp_now_ms()),
 * so that no call can hang past its timeout and a stopping server can wake
 * its threads by shutting their sockets down.
 */
#ifndef NET_TCP_INTERNAL_H
#define NET_TCP_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "net/wire.h"
#include "raft/raft.h"

/* Longest host name or address kept for a peer. */
#define TCP_HOST_MAX 256

#ifdef SOCK_CLOEXEC
#define TCP_SOCK_FLAGS SOCK_CLOEXEC
#else
#define TCP_SOCK_FLAGS 0
#endif

typedef void (*tcp_log_fn)(void *ctx, enum raft_log_level lvl,
                           const char *msg);

/* Formats one log line and hands it to log, unless log is NULL. */
void tcp_log(tcp_log_fn log, void *ctx, enum raft_log_level lvl,
             const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* strerror() may share a static buffer between threads; this does not. */
const char *tcp_errstr(int err, char *buf, size_t cap);

/* Milliseconds on CLOCK_MONOTONIC: the clock of every deadline. */
int64_t tcp_now_ms(void);

/* Grows *buf (doubling, from 4 KiB) to hold at least need bytes. */
int tcp_reserve(uint8_t **buf, size_t *cap, size_t need);

int tcp_set_nonblock(int fd);

/* Non-blocking, close-on-exec, TCP_NODELAY. */
int tcp_socket_setup(int fd);

/* A getaddrinfo() error as a negative errno. */
int tcp_gai_errno(int rc);

/* A connected socket and, when the connection is secured, its TLS session
 * (net/tls.h), through which every byte then goes. */
struct tls_conn;
struct tcp_stream {
    int fd;
    struct tls_conn *tls; /* NULL: plain TCP */
};

/* Waits until fd is ready for `events` (or in error) or the deadline passes:
 * 0 or -ETIMEDOUT / -errno. */
int tcp_wait(int fd, short events, int64_t deadline);

/* Waits for input on the stream, as tcp_wait(POLLIN) does, but returns at
 * once when TLS holds decrypted bytes that poll() cannot see. */
int tcp_wait_input(const struct tcp_stream *s, int64_t deadline);

/* Sends all n bytes (MSG_NOSIGNAL) before the deadline. */
int tcp_send_all(const struct tcp_stream *s, const uint8_t *p, size_t n,
                 int64_t deadline);

/* Reads until at least `want` bytes are in *buf (*have so far), taking
 * whatever else has arrived too. */
int tcp_recv_at_least(const struct tcp_stream *s, uint8_t **buf, size_t *cap,
                      size_t *have, size_t want, int64_t deadline);

/* Reads until *buf starts with one whole frame (bytes past it may follow).
 * Returns the frame's size, or -errno (-EBADMSG / -EMSGSIZE: a length
 * field no frame can have). */
long tcp_recv_frame(const struct tcp_stream *s, uint8_t **buf, size_t *cap,
                    size_t *have, int64_t deadline);

/* Encodes msg into *buf, grown to fit. Returns the frame's size, or -EPROTO
 * (unknown type), -EMSGSIZE (over WIRE_MAX_FRAME or a field limit),
 * -ENOMEM. */
long tcp_encode(const struct wire_msg *msg, uint8_t **buf, size_t *cap);

/* The dialer's side of the hello (net/hello.h) on a fresh connection to
 * node `expect` (tcp_hello.c): sends self's hello with ci's cluster id and
 * reads the answer. 0 when welcomed by node `expect`; else -EACCES (a
 * refusal, or the answer came from another node) or -errno, with the end
 * of a sentence in why. */
struct cluster_ident;
int tcp_hello_dial(const struct tcp_stream *s, uint32_t self, uint32_t expect,
                   struct cluster_ident *ci, int64_t deadline, char *why, size_t cap);

/* Connects to each address of host in turn until one answers or the
 * deadline passes. Returns a socket set up by tcp_socket_setup(), or -errno.
 * (Name lookup itself is not bounded by the deadline.) */
int tcp_connect(const char *host, uint16_t port, int64_t deadline);

#endif
