/*
 * tcp_socket.h - TCP for clients: addresses, dialing, and one request-reply
 * exchange of net/wire.h frames, for the command-line client and the
 * benchmark; tcp_parse_addr() is how every peer address is read.
 *
 * Everything returns 0 (or an fd) or a negative errno. Sockets are sent to
 * with MSG_NOSIGNAL, so a closed peer never raises SIGPIPE.
 */
#ifndef NET_TCP_SOCKET_H
#define NET_TCP_SOCKET_H

#include <stddef.h>
#include <stdint.h>

#include "net/wire.h"

/* Splits "host:port" or "[v6addr]:port". Returns 0, or -EINVAL when the host
 * is empty or does not fit in host_cap, or the port is not 1..65535. */
int tcp_parse_addr(const char *host_port, char *host, size_t host_cap,
                   uint16_t *port);

/* Connects within timeout_ms. Returns a non-blocking, close-on-exec fd with
 * TCP_NODELAY set (for tcp_roundtrip()), or -errno. */
int tcp_dial(const char *host_port, unsigned timeout_ms);

/* For event loops: starts connecting to the first address of host_port and
 * returns at once a non-blocking fd set up as tcp_dial()'s, or -errno. The
 * connect may still be in progress: once the fd is writable, SO_ERROR says
 * how it ended. (A host name is looked up before it returns; give numeric
 * addresses to never block.) */
int tcp_dial_start(const char *host_port);

/* Sends req and reads one reply frame into *buf (grown with realloc; the
 * caller frees it), all within timeout_ms. Pointers in *reply point into
 * *buf, so req must not; an AppendEntries reply must be released with
 * wire_msg_release(). Returns 0 or -errno; after a failure the stream is out
 * of step and the caller must close fd. */
int tcp_roundtrip(int fd, const struct wire_msg *req, struct wire_msg *reply,
                  uint8_t **buf, size_t *cap, unsigned timeout_ms);

/* A client's connection to a node: plain TCP, or TLS when given a context
 * (net/tls.h), in which case the node must show a node certificate of the
 * CA made for the host in host_port (one of its subject alternative
 * names). Returns 0 or -errno: -EPROTO for a failed handshake (a
 * certificate of another CA, or not for that host), -EACCES for a server
 * whose certificate is not a node's. */
struct tcp_link;
struct tls_ctx;
int tcp_link_dial(struct tcp_link **out, const char *host_port, struct tls_ctx *tls,
                  unsigned timeout_ms);

/* The same, saying in why (one phrase) why TLS refused the node: its
 * certificate is not a node's, or not for the host in host_port, or
 * another CA's. why is "" when the failure was not TLS's. */
int tcp_link_dial_why(struct tcp_link **out, const char *host_port, struct tls_ctx *tls,
                      unsigned timeout_ms, char *why, size_t why_cap);

/* tcp_roundtrip() over a link; after a failure the caller closes it. */
int tcp_link_roundtrip(struct tcp_link *l, const struct wire_msg *req,
                       struct wire_msg *reply, uint8_t **buf, size_t *cap,
                       unsigned timeout_ms);

void tcp_link_close(struct tcp_link *l);

#endif
