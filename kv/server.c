/*
 * server.c - one node on TCP: its data directory, its Raft node, and the
 * listener that hands peer messages to raft_receive() and client requests,
 * decoded, to the key-value service (kv/service.h), whose replies it
 * encodes. A put's answer is sent by the node's applier (tcp_reply), so
 * that no thread waits per put.
 *
 * For the console of `raft cluster`, a node can also be cut off from its
 * peers (kv_server_isolate): a switch between the node and its outbound
 * transport, and at the door of the listener, drops Raft messages both ways
 * while client requests still get through, as a network partition that
 * leaves the node reachable from its clients would.
 */
#include "kv/server.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv/kv.h"
#include "kv/service.h"
#include "net/tcp_server.h"
#include "net/tcp_socket.h"
#include "net/tcp_transport.h"
#include "raft/storage/storage.h"

struct kv_server {
    struct kv_server_config cfg; /* raft.bootstrap: the one the node starts from */
    char listen[RAFT_ADDR_MAX];
    struct kv *kv;
    struct file_storage *storage;
    struct tcp_transport *transport;
    struct raft_transport net; /* the TCP table, behind the isolation switch */
    atomic_bool isolated;      /* drop every Raft message, in and out */
    struct raft_node *node;
    struct kv_service *service;
    struct tcp_server *listener;
    struct tls_ctx *tls; /* NULL: plain TCP */
    struct cluster_ident *cluster; /* the id its hellos carry and judge by */
};

static void server_log(struct kv_server *s, enum raft_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void server_log(struct kv_server *s, enum raft_log_level level, const char *fmt, ...)
{
    if (level > s->cfg.raft.log_level)
        return;
    char msg[512], line[640], when[32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    raft_log_time(s->cfg.raft.log_wall_clock, when, sizeof(when));
    snprintf(line, sizeof(line), "%s  n%u  %-4s %-13s %s%s", when, s->cfg.raft.id,
             "", "server", level == RAFT_LOG_ERROR ? "ERROR: " :
             level == RAFT_LOG_WARN ? "warning: " : "", msg);
    raft_print_log_line(s->cfg.raft.id, line);
}

/* Storage and the network report through here. */
static void module_log(void *ctx, enum raft_log_level level, const char *msg)
{
    server_log(ctx, level, "%s", msg);
}

/* ---- the isolation switch ---- */

/* An isolated node's RPCs fail at once, as an unreachable network's would
 * (the replicator backs off and retries, as after any failure). */
static int cut_call(void *ctx, uint32_t peer, const struct raft_msg *req,
                    struct raft_msg *reply, unsigned timeout_ms)
{
    struct kv_server *s = ctx;
    if (atomic_load(&s->isolated))
        return -ENETUNREACH;
    return s->net.call(s->net.ctx, peer, req, reply, timeout_ms);
}

static int cut_send(void *ctx, uint32_t peer, const struct raft_msg *req, uint64_t *ticket,
                    unsigned timeout_ms)
{
    struct kv_server *s = ctx;
    if (atomic_load(&s->isolated))
        return -ENETUNREACH;
    return s->net.send(s->net.ctx, peer, req, ticket, timeout_ms);
}

/* A ticket sent before the cut is still awaited (every ticket must be),
 * but its reply, arriving after it, is dropped. */
static int cut_await(void *ctx, uint32_t peer, uint64_t ticket, struct raft_msg *reply,
                     unsigned timeout_ms)
{
    struct kv_server *s = ctx;
    int rc = s->net.await(s->net.ctx, peer, ticket, reply, timeout_ms);
    return rc == 0 && atomic_load(&s->isolated) ? -ENETUNREACH : rc;
}

/* Where the members are is no message: it passes the switch. */
static void cut_set_members(void *ctx, const struct raft_membership *m)
{
    struct kv_server *s = ctx;
    s->net.set_members(s->net.ctx, m);
}

static struct raft_transport cut_ops(struct kv_server *s)
{
    struct raft_transport t = {.ctx = s, .call = cut_call};
    if (s->net.send && s->net.await) {
        t.send = cut_send;
        t.await = cut_await;
    }
    if (s->net.set_members)
        t.set_members = cut_set_members;
    return t;
}

/* ---- client requests ---- */

static const uint8_t client_status_of[] = {
    [KV_ANSWER_OK] = CLIENT_OK,
    [KV_ANSWER_NOT_FOUND] = CLIENT_NOT_FOUND,
    [KV_ANSWER_NOT_LEADER] = CLIENT_NOT_LEADER,
    [KV_ANSWER_RETRY] = CLIENT_RETRY,
    [KV_ANSWER_BAD_REQUEST] = CLIENT_BAD_REQUEST,
    [KV_ANSWER_MISMATCH] = CLIENT_MISMATCH,
    [KV_ANSWER_TOO_LARGE] = CLIENT_TOO_LARGE,
    [KV_ANSWER_REFUSED] = CLIENT_REFUSED,
};

/* The service's reply as a wire frame; the value moves with it (the
 * transport frees it once encoded). */
static void encode_reply(struct kv_server *s, const struct kv_reply *r, struct wire_msg *m)
{
    m->type = WIRE_CLIENT_REPLY;
    m->from = s->cfg.raft.id;
    struct client_reply *w = &m->u.reply;
    w->status = client_status_of[r->answer];
    w->leader_hint = r->leader_hint;
    if (r->leader_addr) {
        w->leader_addr = (uint8_t *)r->leader_addr;
        w->leader_addr_len = (uint32_t)strlen(r->leader_addr);
    }
    w->value = r->value;
    w->value_len = r->value_len;
    if (r->has_members) { /* a status or member list: the value is the configuration */
        free(r->value);
        w->value = malloc(WIRE_MEMBERS_MAX);
        w->value_len = w->value ? (uint32_t)wire_members_encode(&r->members, w->value) : 0;
    }
    w->id = r->status.id;
    w->role = (uint8_t)r->status.role;
    w->term = r->status.term;
    w->leader = r->status.leader;
    w->commit = r->status.commit;
    w->applied = r->status.applied;
    w->last_index = r->status.last_index;
}

/* The service answers a put from the node's applier: over the connection
 * that asked, which tcp_reply_later kept waiting for it. */
static void defer_reply(void *ctx, void *token)
{
    (void)ctx;
    tcp_reply_later(token);
}

static void send_reply(void *ctx, void *token, const struct kv_reply *r)
{
    struct wire_msg m = {0};
    encode_reply(ctx, r, &m);
    tcp_reply(token, &m);
}

static int handle_client(struct kv_server *s, const struct client_request *q,
                         struct wire_msg *reply, struct tcp_conn *conn)
{
    static const enum kv_request_op op_of[] = {
        [CLIENT_PUT] = KV_REQUEST_PUT,       [CLIENT_GET] = KV_REQUEST_GET,
        [CLIENT_STATUS] = KV_REQUEST_STATUS, [CLIENT_DELETE] = KV_REQUEST_DELETE,
        [CLIENT_CAS] = KV_REQUEST_CAS,       [CLIENT_LIST] = KV_REQUEST_LIST,
        [CLIENT_LIST_VALUES] = KV_REQUEST_LIST_VALUES, [CLIENT_TRANSFER] = KV_REQUEST_TRANSFER,
        [CLIENT_MEMBER_LIST] = KV_REQUEST_MEMBER_LIST, [CLIENT_MEMBER_ADD] = KV_REQUEST_MEMBER_ADD,
        [CLIENT_MEMBER_REMOVE] = KV_REQUEST_MEMBER_REMOVE,
    };
    struct kv_request req = {.client_id = q->client_id, .seq = q->seq, .key = q->key,
                             .key_len = q->key_len, .value = q->value,
                             .value_len = q->value_len, .expected = q->expected,
                             .expected_len = q->expected_len, .member_id = q->member_id,
                             .learner = q->learner, .wait_ms = q->wait_ms};
    /* 0, which the service refuses, for an op it does not know. */
    req.op = q->op < sizeof(op_of) / sizeof(op_of[0]) ? op_of[q->op] : 0;
    struct kv_reply r;
    if (kv_service_handle(s->service, &req, &r, conn) == KV_SERVICE_LATER) {
        reply->type = WIRE_CLIENT_REPLY; /* with no value for the transport to free */
        return TCP_REPLY_LATER;
    }
    encode_reply(s, &r, reply);
    return 0;
}

/* Called by the TCP listener for every request frame. */
static int handle_frame(void *ctx, const struct wire_msg *req, struct wire_msg *reply,
                        struct tcp_conn *conn)
{
    struct kv_server *s = ctx;
    memset(reply, 0, sizeof(*reply));
    reply->from = s->cfg.raft.id;
    if (req->type == WIRE_CLIENT_REQUEST)
        return handle_client(s, &req->u.request, reply, conn);
    /* Any id may be a member: one added after this node started, or the
     * leader of a cluster this node waits to join. The node itself refuses
     * senders that are no member, or were removed (thesis §4.2.3). */
    if (req->type < RAFT_MSG_REQUEST_VOTE || req->type > RAFT_MSG_TIMEOUT_NOW_REPLY ||
        req->from > RAFT_MAX_ID) {
        server_log(s, RAFT_LOG_WARN, "refused a message of type %u claiming to be from node %u "
                   "(node ids run from 0 to %d)", req->type, req->from, RAFT_MAX_ID);
        return -EINVAL;
    }
    if (atomic_load(&s->isolated))
        return -ENETUNREACH; /* closes the connection: the sender hears nothing */
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
    kv_service_free(s->service); /* after raft_stop: no put is answered later */
    if (s->transport)
        tcp_transport_destroy(s->transport);
    if (s->storage)
        file_storage_close(s->storage);
    tls_ctx_free(s->tls); /* after the listener and transport that used it */
    cluster_ident_free(s->cluster); /* likewise */
    kv_free(s->kv);
    free(s);
}

/* The node's TLS context, if configured: its certificate must name this
 * node, or its peers would refuse it (and it would speak for another). */
static int open_tls(struct kv_server *s)
{
    const struct tls_files *f = &s->cfg.tls;
    if (!f->ca)
        return 0;
    char err[256], name[32];
    int rc = tls_ctx_new(&s->tls, f, err, sizeof(err));
    if (rc) {
        server_log(s, RAFT_LOG_ERROR, "TLS with CA %s, certificate %s and key %s: %s",
                   f->ca, f->cert, f->key, err);
        return rc;
    }
    struct tls_identity me = tls_ctx_identity(s->tls);
    if (me.role != TLS_ROLE_NODE || me.id != s->cfg.raft.id) {
        server_log(s, RAFT_LOG_ERROR, "the certificate %s names %s, not node-%u", f->cert,
                   tls_identity_str(me, name, sizeof(name)), s->cfg.raft.id);
        return -EINVAL;
    }
    server_log(s, RAFT_LOG_INFO, "mutual TLS 1.3 for peers and clients, CA %s", f->ca);
    return 0;
}

static bool same_config(const struct raft_membership *a, const struct raft_membership *b)
{
    if (a->n != b->n)
        return false;
    for (uint32_t i = 0; i < a->n; i++)
        if (a->members[i].id != b->members[i].id || a->members[i].voter != b->members[i].voter ||
            strcmp(a->members[i].addr, b->members[i].addr) != 0)
            return false;
    return true;
}

static void describe_config(const struct raft_membership *m, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (uint32_t i = 0; i < m->n && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%sn%u at %s%s", i ? ", " : "",
                                 m->members[i].id, m->members[i].addr,
                                 m->members[i].voter ? "" : " (learner)");
}

/* The configuration the node starts from: the one its data directory
 * recorded the first time, whatever --peers says now (raft/storage/
 * bootstrap.c); --peers only if none was recorded; none at all for a node
 * that waits to be added. */
static int choose_bootstrap(struct kv_server *s)
{
    struct raft_config *rc_cfg = &s->cfg.raft;
    struct raft_membership given = rc_cfg->bootstrap, used;
    if (given.n == 0 && rc_cfg->n_nodes > 0)
        raft_membership_of_size(&given, rc_cfg->n_nodes, (const char *const *)s->cfg.peers);
    int rc = file_storage_bootstrap(s->storage, &given, &used);
    if (rc)
        return rc; /* logged by the storage, with the file and offset */
    if (given.n > 0 && !same_config(&given, &used)) {
        char was[768], now[768];
        describe_config(&used, was, sizeof(was));
        describe_config(&given, now, sizeof(now));
        server_log(s, RAFT_LOG_WARN, "--peers (%s) differs from the configuration this data "
                   "directory's cluster started from (%s): --peers is ignored; the cluster "
                   "changes its members with `raft client member add` and `member remove`",
                   now, was);
        s->cfg.peers = NULL; /* every address comes from the configuration */
        rc_cfg->n_nodes = 0;
    }
    if (used.n == 0)
        rc_cfg->n_nodes = 0;
    rc_cfg->bootstrap = used;
    return 0;
}

/* Where to listen: as told, else this node's address in the bootstrap
 * configuration. */
static int choose_listen(struct kv_server *s, char *host, size_t cap, uint16_t *port)
{
    const struct raft_member *me = raft_membership_find(&s->cfg.raft.bootstrap, s->cfg.raft.id);
    const char *addr = s->cfg.listen ? s->cfg.listen : me && me->addr[0] ? me->addr : NULL;
    if (!addr) {
        server_log(s, RAFT_LOG_ERROR, "no address to listen on: the bootstrap configuration "
                   "has no n%u, and no --listen was given", s->cfg.raft.id);
        return -EINVAL;
    }
    snprintf(s->listen, sizeof(s->listen), "%s", addr);
    if (tcp_parse_addr(s->listen, host, cap, port) != 0) {
        server_log(s, RAFT_LOG_ERROR, "bad address %s", s->listen);
        return -EINVAL;
    }
    return 0;
}

/* An id adopted from the first peer to contact a node not yet in a
 * cluster: kept in the data directory before it is used. */
static int record_cluster(void *ctx, const struct cluster_id *id)
{
    struct kv_server *s = ctx;
    return file_storage_record_cluster(s->storage, id->bytes);
}

/* The cluster the data directory belongs to, checked against the one the
 * node was started for (a refusal is logged by the storage, one
 * sentence), and the identity its connections speak with. */
static int open_cluster(struct kv_server *s)
{
    struct cluster_id id = {.known = false};
    const struct cluster_id *derived = &s->cfg.cluster;
    /* An id made from --peers names a new directory's cluster only: once
     * the directory records one, its stored configuration wins over
     * --peers (choose_bootstrap), and so does its cluster. An explicit
     * --cluster-name is always checked. */
    int rc = file_storage_claim_cluster(s->storage, NULL, id.bytes, &id.known);
    if (rc == 0 && derived->known && (!id.known || s->cfg.cluster_named))
        rc = file_storage_claim_cluster(s->storage, derived->bytes, id.bytes, &id.known);
    if (rc)
        return rc;
    char hex[16];
    if (!id.known)
        server_log(s, RAFT_LOG_INFO, "not in a cluster yet: the first peer to contact this "
                   "node gives it its cluster id");
    else
        server_log(s, RAFT_LOG_INFO, "cluster %s: peers of other clusters are refused",
                   cluster_id_str(&id, hex, sizeof(hex)));
    return cluster_ident_new(&s->cluster, &id, record_cluster, s);
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
    int rc = open_tls(s);
    if (rc)
        goto fail;
    s->kv = kv_new(cfg->session_timeout_ms ? cfg->session_timeout_ms
                                           : KV_DEFAULT_SESSION_TIMEOUT_MS);
    rc = s->kv ? file_storage_open(&s->storage, cfg->data_dir, module_log, s) : -ENOMEM;
    if (rc) {
        server_log(s, RAFT_LOG_ERROR, "cannot open data directory %s: %s", cfg->data_dir,
                   strerror(-rc));
        goto fail;
    }
    rc = file_storage_claim_id(s->storage, id); /* its refusal is logged, one sentence */
    if (rc == 0)
        rc = choose_bootstrap(s);
    if (rc == 0)
        rc = open_cluster(s);
    if (rc == 0)
        rc = choose_listen(s, host, sizeof(host), &port);
    if (rc)
        goto fail;
    rc = tcp_transport_create(&s->transport, id, s->cfg.peers, s->cfg.raft.n_nodes, module_log,
                              s);
    if (rc)
        goto fail;
    tcp_transport_set_tls(s->transport, s->tls);
    tcp_transport_set_cluster(s->transport, s->cluster);
    s->net = tcp_transport_ops(s->transport);
    struct raft_transport transport = cut_ops(s);
    file_storage_leave_entries_on_disk(s->storage);
    struct raft_storage storage = file_storage_ops(s->storage);
    struct raft_fsm fsm = kv_fsm(s->kv);
    rc = raft_start(&s->node, &s->cfg.raft, &transport, &storage, &fsm);
    if (rc) {
        const char *why = file_storage_error(s->storage);
        server_log(s, RAFT_LOG_ERROR, "cannot start: %s", why && *why ? why : strerror(-rc));
        goto fail;
    }
    struct kv_service_config svc = {
        .node = s->node, .kv = s->kv, .id = id, .n_nodes = s->cfg.raft.n_nodes,
        .peers = s->cfg.peers, .defer = defer_reply, .answer = send_reply, .ctx = s,
    };
    rc = kv_service_new(&s->service, &svc);
    if (rc)
        goto fail;
    struct tcp_server_options opt = {
        .host = host, .port = port, .tls = s->tls, .cluster = s->cluster, .node_id = id,
        .handler = handle_frame, .handler_ctx = s, .log = module_log, .log_ctx = s,
    };
    rc = tcp_server_start(&s->listener, &opt);
    if (rc) {
        server_log(s, RAFT_LOG_ERROR, "cannot listen on %s: %s", s->listen, strerror(-rc));
        goto fail;
    }
    server_log(s, RAFT_LOG_INFO, "listening on %s, data in %s", s->listen, cfg->data_dir);
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

/* Stopping already writes nothing more: every write the node made was
 * synced before anything depended on it (Figure 2), and file_storage_close
 * flushes nothing. So a crash is a stop that says so; what the node held
 * only in memory (its volatile state, the key-value map, replies not yet
 * sent) is gone, as after kill -9. */
void kv_server_crash(struct kv_server *s)
{
    server_log(s, RAFT_LOG_WARN, "crashed: its threads stop without another write; it "
               "restarts from what its data directory holds");
    cleanup(s);
}

void kv_server_isolate(struct kv_server *s, bool isolated)
{
    if (atomic_exchange(&s->isolated, isolated) == isolated)
        return;
    server_log(s, RAFT_LOG_WARN, isolated
               ? "isolated: every message to or from its peers is dropped from now on "
                 "(clients still reach it)"
               : "healed: messages to and from its peers flow again");
}

bool kv_server_isolated(struct kv_server *s)
{
    return atomic_load(&s->isolated);
}

void kv_server_status(struct kv_server *s, struct raft_status *st)
{
    raft_get_status(s->node, st);
}
