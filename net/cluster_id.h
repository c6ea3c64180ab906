/*
 * cluster_id.h - which cluster a node belongs to, and the rule by which a
 * node accepts a peer connection (etcd refuses a member whose cluster id
 * differs in the same way).
 *
 * A cluster id is 16 bytes made at bootstrap from what every node of the
 * cluster is started with, so that they agree without talking: the
 * SHA-256 of the --cluster-name when one is given, else of the --peers
 * list, character for character. (Give a name when the nodes' --peers
 * differ, as they do through proxies, or when they will change.) A node
 * keeps the id in its data directory from its first start on
 * (raft/storage/identity.c). A node that is not yet a member (started
 * without --peers, to be added to a running cluster; thesis §4.2.1: it
 * catches up from the leader before it counts) has none: it takes the id
 * of the first peer that contacts it, the leader that adds it, and keeps
 * it.
 *
 * Every peer connection starts with a hello (net/hello.h) carrying the
 * dialer's id; the server answers with its own and its verdict. Two nodes
 * of different clusters - a --peers entry pointing at another cluster's
 * node, a node started with another cluster's addresses - so never pass a
 * single Raft message either way: no term is adopted, no entry appended.
 */
#ifndef NET_CLUSTER_ID_H
#define NET_CLUSTER_ID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CLUSTER_ID_SIZE 16

struct cluster_id {
    bool known; /* false: a node not yet in any cluster */
    uint8_t bytes[CLUSTER_ID_SIZE];
};

/* The id a cluster bootstraps with: from name when it is not NULL, else
 * from the n peer addresses. 0, or -ENOMEM / -EINVAL (no name, no peer). */
int cluster_id_derive(struct cluster_id *out, const char *name, char *const *peers,
                      uint32_t n);

/* The first 12 hex digits, for log lines ("3f9a1c2e5b7d"), or "none yet". */
const char *cluster_id_str(const struct cluster_id *id, char *buf, size_t cap);

bool cluster_id_equal(const struct cluster_id *a, const struct cluster_id *b);

/* What a node answers a hello with. */
enum cluster_verdict {
    CLUSTER_WELCOME = 0,       /* the same cluster (or neither has an id yet) */
    CLUSTER_OTHER = 1,         /* another cluster's id */
    CLUSTER_NONE_YET = 2,      /* the dialer has no id, and this node has one */
    CLUSTER_NOT_RECORDED = 3,  /* this node could not keep the id it was given */
};
#define CLUSTER_VERDICT_MAX CLUSTER_NOT_RECORDED

/* The id a node speaks with, shared by its server (which judges hellos,
 * and may adopt an id) and its transport (which sends hellos). Thread-safe. */
struct cluster_ident;

/* record(ctx, id) keeps an adopted id durably before it is used (0 or
 * -errno); it is called at most once, and may be NULL (nothing kept). */
typedef int (*cluster_record_fn)(void *ctx, const struct cluster_id *id);

int cluster_ident_new(struct cluster_ident **out, const struct cluster_id *start,
                      cluster_record_fn record, void *record_ctx);
void cluster_ident_free(struct cluster_ident *ci);

struct cluster_id cluster_ident_get(struct cluster_ident *ci);

/* The server's rule for a hello with the dialer's id theirs: same id,
 * welcome; different, refused; a dialer without one, refused (only a
 * cluster's members dial, and they have one); this node without one, it
 * adopts theirs (recorded first) and welcomes, setting *adopted. *mine is
 * this node's id afterwards. On a refusal why holds the end of one
 * sentence, naming both ids. */
enum cluster_verdict cluster_ident_judge(struct cluster_ident *ci,
                                         const struct cluster_id *theirs,
                                         struct cluster_id *mine, bool *adopted, char *why,
                                         size_t cap);

/* The dialer's reading of a verdict (theirs: the server's id, mine: ours),
 * as the end of a sentence: "it belongs to another cluster (...)". */
void cluster_verdict_str(enum cluster_verdict v, const struct cluster_id *theirs,
                         const struct cluster_id *mine, char *buf, size_t cap);

#endif
