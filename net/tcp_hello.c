/*
 * tcp_hello.c - the hello at the start of a peer connection, both sides:
 * the dialer (tcp_transport.c) says which node it is and which cluster it
 * belongs to; the server (tcp_conn.c) answers with its own and a verdict
 * (net/cluster_id.h), and serves peer messages only once it has welcomed
 * the dialer.
 *
 * Why at the door, before Raft: Figure 2's rule for all servers, "If RPC
 * request or response contains term T > currentTerm: set currentTerm = T,
 * convert to follower", holds for any message that reaches Raft. One
 * message from another cluster's leader, in a higher term, would depose
 * this cluster's leader; its AppendEntries would overwrite this log. So a
 * refusal comes before any Raft message is read, costs the connection
 * only, and changes nothing on either side: no term adopted, no entry
 * appended. Each side says why in one sentence (the server at most once a
 * second, through its refusal log).
 */
#include "net/tcp_internal.h"
#include "net/tcp_server_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/hello.h"

/* ---- the server's side ---- */

#define TCP_WHY_MAX 400

static int tcp_greet_refuse(struct tcp_conn *c, const char *why)
{
    tcp_server_log_refusal(c->srv, c->peer, why);
    return -EACCES;
}

/* Which node a hello may come from: with TLS, only the one the
 * certificate names (a hello is a peer message like any other). */
static int tcp_greet_authorize(struct tcp_conn *c, const struct hello *h)
{
    if (c->tls == NULL)
        return 0;
    char who[32], why[TCP_WHY_MAX];
    tls_identity_str(c->who, who, sizeof who);
    if (c->who.role != TLS_ROLE_NODE)
        snprintf(why, sizeof why, "a %s certificate may not say hello as a node (n%u)", who,
                 (unsigned)h->from);
    else if (c->who.id != h->from)
        snprintf(why, sizeof why, "the certificate of %s said hello as n%u", who,
                 (unsigned)h->from);
    else
        return 0;
    return tcp_greet_refuse(c, why);
}

static int tcp_greet_answer(struct tcp_conn *c, enum cluster_verdict v,
                            const struct cluster_id *mine)
{
    struct tcp_server *s = c->srv;
    struct hello reply = {.type = WIRE_HELLO_REPLY, .from = s->opt.node_id,
                          .verdict = (uint8_t)v, .cluster = *mine};
    uint8_t buf[HELLO_REPLY_SIZE];
    long n = hello_encode(&reply, buf, sizeof buf);
    struct tcp_stream io = {.fd = c->fd, .tls = c->tls};
    return n < 0 ? (int)n
                 : tcp_send_all(&io, buf, (size_t)n, tcp_now_ms() + s->opt.idle_timeout_ms);
}

int tcp_conn_greet(struct tcp_conn *c, const uint8_t *frame, size_t len)
{
    struct tcp_server *s = c->srv;
    struct hello h;
    char why[TCP_WHY_MAX] = "";
    int rc = hello_decode(frame, len, &h);
    if (rc < 0 || h.type != WIRE_HELLO) {
        snprintf(why, sizeof why, "%s (%zu bytes)", rc < 0 ? "a malformed hello"
                 : "a hello's answer sent as a hello", len);
        return tcp_greet_refuse(c, why);
    }
    if (c->greeted)
        return tcp_greet_refuse(c, "a second hello on one connection");
    rc = tcp_greet_authorize(c, &h);
    if (rc < 0)
        return rc;
    struct cluster_id mine = {.known = false};
    enum cluster_verdict v = CLUSTER_WELCOME;
    bool adopted = false;
    char verdict[TCP_WHY_MAX - 64] = "";
    if (s->opt.cluster != NULL)
        v = cluster_ident_judge(s->opt.cluster, &h.cluster, &mine, &adopted, verdict,
                                sizeof verdict);
    rc = tcp_greet_answer(c, v, &mine);
    if (v != CLUSTER_WELCOME) {
        snprintf(why, sizeof why, "refused a peer saying it is n%u: %s", (unsigned)h.from,
                 verdict);
        return tcp_greet_refuse(c, why);
    }
    if (adopted) {
        char id[16];
        tcp_log(s->opt.log, s->opt.log_ctx, RAFT_LOG_INFO,
                "joined cluster %s: n%u (from %s) is the first peer to contact this node; "
                "the id is kept in the data directory, and peers of other clusters are "
                "refused from now on", cluster_id_str(&mine, id, sizeof id),
                (unsigned)h.from, c->peer);
    }
    if (rc < 0)
        return rc;
    c->greeted = true;
    c->greeted_as = h.from;
    return 0;
}

int tcp_conn_check_greeted(struct tcp_conn *c, const struct wire_msg *req)
{
    if (c->srv->opt.cluster == NULL || req->type == WIRE_CLIENT_REQUEST)
        return 0;
    char why[TCP_WHY_MAX];
    if (!c->greeted)
        snprintf(why, sizeof why, "a peer message (type %u, from n%u) before its hello: a "
                 "node of an older version, or not a node", (unsigned)req->type,
                 (unsigned)req->from);
    else if (req->from != c->greeted_as)
        snprintf(why, sizeof why, "said hello as n%u, then sent a message from n%u",
                 (unsigned)c->greeted_as, (unsigned)req->from);
    else
        return 0;
    return tcp_greet_refuse(c, why);
}

/* ---- the dialer's side ---- */

/* Reads the one answer to our hello. */
static int tcp_hello_read(const struct tcp_stream *s, struct hello *h, int64_t deadline)
{
    uint8_t *buf = NULL;
    size_t cap = 0, have = 0;
    int rc = tcp_wait_input(s, deadline);
    long size = rc < 0 ? rc : tcp_recv_frame(s, &buf, &cap, &have, deadline);
    if (size > 0 && have > (size_t)size)
        size = -EPROTO; /* nothing may follow the answer before our first request */
    rc = size < 0 ? (int)size : hello_decode(buf, (size_t)size, h);
    if (rc == 0 && h->type != WIRE_HELLO_REPLY)
        rc = -EPROTO;
    free(buf);
    return rc;
}

int tcp_hello_dial(const struct tcp_stream *s, uint32_t self, uint32_t expect,
                   struct cluster_ident *ci, int64_t deadline, char *why, size_t cap)
{
    struct hello hi = {.type = WIRE_HELLO, .from = self, .cluster = cluster_ident_get(ci)};
    uint8_t buf[HELLO_SIZE];
    long n = hello_encode(&hi, buf, sizeof buf);
    int rc = n < 0 ? (int)n : tcp_send_all(s, buf, (size_t)n, deadline);
    struct hello reply;
    if (rc == 0)
        rc = tcp_hello_read(s, &reply, deadline);
    if (rc < 0) {
        char e[96];
        snprintf(why, cap, "no answer to this node's hello (%s)", tcp_errstr(rc, e, sizeof e));
        return rc == -EBADMSG ? -EPROTO : rc;
    }
    if (reply.verdict != CLUSTER_WELCOME) {
        cluster_verdict_str(reply.verdict, &reply.cluster, &hi.cluster, why, cap);
        return -EACCES;
    }
    if (reply.from != expect) {
        snprintf(why, cap, "it answers as n%u, not n%u: --peers lists another node at this "
                 "address", (unsigned)reply.from, (unsigned)expect);
        return -EACCES;
    }
    return 0;
}
