/*
 * server.c - glue between the network and a Raft node running the
 * key-value state machine.
 *
 * Peer messages go straight to raft_receive(). Client requests:
 *   put     proposed as a log entry; answered once applied (§8: a client is
 *           answered only after its command is committed and applied). The
 *           session (client id, seq) makes a retry take effect once (§6.3).
 *           The answer is sent by the node's applier (raft_propose_async,
 *           tcp_reply), so no thread sleeps per put waiting for it.
 *   get     served by the leader from its store, without writing to the log:
 *           on its lease (§6.4.1), or after a ReadIndex round (§6.4).
 *   status  this node's view: role, term, leader, commit, applied, log end.
 */
#include "kv/server.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kv/kv.h"
#include "net/tcp_server.h"
#include "net/tcp_socket.h"
#include "net/tcp_transport.h"
#include "raft/storage/storage.h"

/* How long a read may wait on the cluster: less than a client waits for
 * one answer (kv/client.c ATTEMPT_MS), so that it hears "retry" first. A
 * put has no such limit: it is answered once applied, or "retry" once this
 * node stops leading (check-quorum steps a leader that cannot commit down
 * within an election timeout). */
#define CLIENT_WAIT_MS 1000

struct kv_server {
    struct kv_server_config cfg;
    struct kv *kv;
    struct file_storage *storage;
    struct tcp_transport *transport;
    struct raft_node *node;
    struct tcp_server *listener;
};

static void server_log(struct kv_server *s, enum raft_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void server_log(struct kv_server *s, enum raft_log_level level, const char *fmt, ...)
{
    if (level > s->cfg.raft.log_level)
        return;
    char msg[512], line[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(line, sizeof(line), "%7.3f  n%u  %-4s %-13s %s%s", raft_uptime(), s->cfg.raft.id,
             "", "server", level == RAFT_LOG_ERROR ? "ERROR: " :
             level == RAFT_LOG_WARN ? "warning: " : "", msg);
    raft_print_log_line(s->cfg.raft.id, line);
}

/* Storage and the network report through here. */
static void module_log(void *ctx, enum raft_log_level level, const char *msg)
{
    server_log(ctx, level, "%s", msg);
}

static uint64_t wall_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void reply_status(struct client_reply *r, uint8_t status, int32_t hint)
{
    r->status = status;
    r->leader_hint = hint;
}

/* Redirects the client: the leader's id and its address, which the client
 * may not have been given. */
static void reply_not_leader(struct kv_server *s, struct client_reply *r, int32_t hint)
{
    reply_status(r, CLIENT_NOT_LEADER, hint);
    if (hint >= 0 && (uint32_t)hint < s->cfg.raft.n_nodes) {
        r->leader_addr = (uint8_t *)s->cfg.peers[hint];
        r->leader_addr_len = (uint32_t)strlen(s->cfg.peers[hint]);
    }
}

/* A put waiting for its entry to be applied. */
struct pending_put {
    struct raft_async async; /* first: the callback gets its address */
    struct kv_server *s;
    struct tcp_conn *conn;
    uint64_t client_id, seq;
};

/* Called back by the node (its applier) once the entry is applied, or
 * cannot be. The session table says whether this request was applied: the
 * answer to a retry whose first copy was applied is OK too. */
static void put_done(struct raft_async *a, int rc)
{
    struct pending_put *p = (struct pending_put *)a;
    struct kv_server *s = p->s;
    struct wire_msg reply = {.type = WIRE_CLIENT_REPLY, .from = s->cfg.raft.id};
    if (rc == 0 && kv_applied_request(s->kv, p->client_id, p->seq))
        reply_status(&reply.u.reply, CLIENT_OK, (int32_t)s->cfg.raft.id);
    else
        reply_status(&reply.u.reply, CLIENT_RETRY, RAFT_NO_NODE);
    tcp_reply(p->conn, &reply);
    free(p);
}

/* Returns TCP_REPLY_LATER once the put is proposed (put_done answers), or
 * 0 with the answer in r. */
static int handle_put(struct kv_server *s, const struct client_request *q,
                      struct client_reply *r, struct tcp_conn *conn)
{
    if (q->client_id == 0 || q->seq == 0 || q->key_len == 0) {
        reply_status(r, CLIENT_BAD_REQUEST, RAFT_NO_NODE);
        return 0;
    }
    /* A retry of a request that was already applied gets the same answer. */
    if (kv_applied_request(s->kv, q->client_id, q->seq)) {
        reply_status(r, CLIENT_OK, (int32_t)s->cfg.raft.id);
        return 0;
    }
    size_t len = kv_put_size(q->key_len, q->value_len);
    uint8_t *cmd = malloc(len);
    struct pending_put *p = malloc(sizeof(*p));
    if (!cmd || !p) {
        free(cmd);
        free(p);
        reply_status(r, CLIENT_RETRY, RAFT_NO_NODE);
        return 0;
    }
    kv_encode_put(cmd, q->client_id, q->seq, wall_clock_ms(), q->key, q->key_len,
                  q->value, q->value_len);
    *p = (struct pending_put){.async.done = put_done, .s = s, .conn = conn,
                              .client_id = q->client_id, .seq = q->seq};
    int32_t hint;
    tcp_reply_later(conn); /* before the applier can answer */
    int rc = raft_propose_async(s->node, cmd, (uint32_t)len, &p->async, &hint);
    free(cmd);
    if (rc == 0)
        return TCP_REPLY_LATER;
    free(p);
    struct wire_msg reply = {.type = WIRE_CLIENT_REPLY, .from = s->cfg.raft.id};
    if (rc == -EPERM)
        reply_not_leader(s, &reply.u.reply, hint);
    else
        reply_status(&reply.u.reply, CLIENT_RETRY, RAFT_NO_NODE);
    tcp_reply(conn, &reply);
    return TCP_REPLY_LATER;
}

static void handle_get(struct kv_server *s, const struct client_request *q,
                       struct client_reply *r)
{
    int32_t hint;
    int rc = raft_read_barrier(s->node, CLIENT_WAIT_MS, &hint);
    if (rc == -EPERM) {
        reply_not_leader(s, r, hint);
        return;
    }
    if (rc != 0) {
        reply_status(r, CLIENT_RETRY, RAFT_NO_NODE);
        return;
    }
    rc = kv_get(s->kv, q->key, q->key_len, &r->value, &r->value_len);
    reply_status(r, rc == 0 ? CLIENT_OK : rc == -ENOENT ? CLIENT_NOT_FOUND : CLIENT_RETRY,
                 (int32_t)s->cfg.raft.id);
}

static void handle_status(struct kv_server *s, struct client_reply *r)
{
    struct raft_status st;
    raft_get_status(s->node, &st);
    reply_status(r, CLIENT_OK, st.leader);
    r->id = st.id;
    r->role = (uint8_t)st.role;
    r->term = st.term;
    r->leader = st.leader;
    r->commit = st.commit;
    r->applied = st.applied;
    r->last_index = st.last_index;
}

/* Called by the TCP listener for every request frame. */
static int handle_frame(void *ctx, const struct wire_msg *req, struct wire_msg *reply,
                        struct tcp_conn *conn)
{
    struct kv_server *s = ctx;
    memset(reply, 0, sizeof(*reply));
    reply->from = s->cfg.raft.id;
    if (req->type == WIRE_CLIENT_REQUEST) {
        const struct client_request *q = &req->u.request;
        struct client_reply *r = &reply->u.reply;
        reply->type = WIRE_CLIENT_REPLY;
        switch (q->op) {
        case CLIENT_PUT: return handle_put(s, q, r, conn);
        case CLIENT_GET: handle_get(s, q, r); break;
        case CLIENT_STATUS: handle_status(s, r); break;
        default: reply_status(r, CLIENT_BAD_REQUEST, RAFT_NO_NODE);
        }
        return 0;
    }
    if (req->type < RAFT_MSG_REQUEST_VOTE || req->type > RAFT_MSG_INSTALL_SNAPSHOT_REPLY ||
        req->from >= s->cfg.raft.n_nodes) {
        server_log(s, RAFT_LOG_WARN, "refused a message of type %u claiming to be from node %u "
                   "(this cluster has nodes 0..%u)", req->type, req->from,
                   s->cfg.raft.n_nodes - 1);
        return -EINVAL;
    }
    int rc = raft_receive(s->node, &req->u.raft, &reply->u.raft);
    reply->type = reply->u.raft.type;
    return rc;
}

static void cleanup(struct kv_server *s)
{
    if (s->node)
        raft_begin_stop(s->node); /* handlers blocked on it return at once */
    if (s->listener)
        tcp_server_stop(s->listener);
    if (s->node)
        raft_stop(s->node);
    if (s->transport)
        tcp_transport_destroy(s->transport);
    if (s->storage)
        file_storage_close(s->storage);
    kv_free(s->kv);
    free(s);
}

int kv_server_start(struct kv_server **out, const struct kv_server_config *cfg)
{
    struct kv_server *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->cfg = *cfg;
    uint32_t id = cfg->raft.id;
    char host[256];
    uint16_t port;
    int rc = tcp_parse_addr(cfg->peers[id], host, sizeof(host), &port);
    if (rc) {
        server_log(s, RAFT_LOG_ERROR, "bad address %s", cfg->peers[id]);
        goto fail;
    }
    s->kv = kv_new(cfg->session_timeout_ms ? cfg->session_timeout_ms
                                           : KV_DEFAULT_SESSION_TIMEOUT_MS);
    rc = s->kv ? file_storage_open(&s->storage, cfg->data_dir, module_log, s) : -ENOMEM;
    if (rc) {
        server_log(s, RAFT_LOG_ERROR, "cannot open data directory %s: %s", cfg->data_dir,
                   strerror(-rc));
        goto fail;
    }
    rc = tcp_transport_create(&s->transport, id, cfg->peers, cfg->raft.n_nodes, module_log, s);
    if (rc)
        goto fail;
    struct raft_transport transport = tcp_transport_ops(s->transport);
    struct raft_storage storage = file_storage_ops(s->storage);
    struct raft_fsm fsm = kv_fsm(s->kv);
    rc = raft_start(&s->node, &cfg->raft, &transport, &storage, &fsm);
    if (rc) {
        const char *why = file_storage_error(s->storage);
        server_log(s, RAFT_LOG_ERROR, "cannot start: %s", why && *why ? why : strerror(-rc));
        goto fail;
    }
    struct tcp_server_options opt = {
        .host = host, .port = port, .handler = handle_frame, .handler_ctx = s,
        .log = module_log, .log_ctx = s,
    };
    rc = tcp_server_start(&s->listener, &opt);
    if (rc) {
        server_log(s, RAFT_LOG_ERROR, "cannot listen on %s: %s", cfg->peers[id], strerror(-rc));
        goto fail;
    }
    server_log(s, RAFT_LOG_INFO, "listening on %s, data in %s", cfg->peers[id], cfg->data_dir);
    *out = s;
    return 0;
fail:
    cleanup(s);
    return rc;
}

void kv_server_stop(struct kv_server *s)
{
    server_log(s, RAFT_LOG_INFO, "stopping");
    cleanup(s);
}
