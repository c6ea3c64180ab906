/*
 * etcd_http.h - what etcd_load.c (the load generator, see its comment) uses
 * to talk to etcd's v3 HTTP/JSON gateway: the members' addresses, one
 * HTTP/1.1 keep-alive connection and its reply, base64 (etcd_http.c).
 */
#ifndef BENCH_ETCD_HTTP_H
#define BENCH_ETCD_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define TIMEOUT_MS 5000      /* per request, as `raft bench` */
#define MAX_REPLY (1u << 20) /* a larger reply is malformed here */

struct endpoint {
    char host_port[128]; /* for the Host header */
    struct sockaddr_storage addr;
    socklen_t addr_len;
};

/* One keep-alive connection and its reply buffer. */
struct conn {
    const struct endpoint *ep;
    int fd;       /* -1 when not connected */
    char *buf;    /* bytes read and not yet consumed */
    size_t len, cap;
    char *body;   /* the last reply's body, decoded if it came chunked */
    size_t body_len, body_cap;
    char *req;    /* the request being sent */
    size_t req_len, req_cap;
};

/* base64 of in[0..n) into out (4 * ((n + 2) / 3) + 1 bytes); its length. */
size_t base64_encode(const uint8_t *in, size_t n, char *out);
/* Grows *p (of *cap bytes) to hold need bytes; 0 or -ENOMEM. */
int grow(char **p, size_t *cap, size_t need);
/* "host:port" (the last colon splits) to a socket address; 0 or -1. */
int resolve(const char *s, struct endpoint *ep);

void conn_close(struct conn *c);
/* A blocking connect to c->ep (TCP_NODELAY; a TIMEOUT_MS send timeout). */
int conn_dial(struct conn *c);
/* The request POST path with a JSON body, into c->req. */
int http_build(struct conn *c, const char *path, const char *json, size_t json_len);
/* The reply in c->buf: its status once complete (body in c->body), 0 while
 * incomplete, <0 if malformed or cut off (eof). */
int http_parse(struct conn *c, bool eof, bool *close_after);
/* One request and its reply, blocking: the HTTP status, or <0 with the
 * connection closed. */
int http_post(struct conn *c, const char *path, const char *json, size_t json_len);
/* A reply etcd's gateway gives on success: a JSON object with a header. */
bool reply_ok(int status, const struct conn *c);

#endif
