/*
 * cli_tls.h - the TLS flags every serving and client subcommand takes
 * (--tls-dir DIR | --tls-ca FILE --tls-cert FILE --tls-key FILE), the
 * cluster's name of the serving ones (--cluster-name NAME, from which
 * with --peers its id is made), and `raft certs`, which makes a CA and
 * the certificates the TLS flags name.
 */
#ifndef CLI_TLS_H
#define CLI_TLS_H

#include "cli.h"
#include "net/cluster_id.h"
#include "net/tls.h"

/* The four option rows, for a table whose options struct holds f. */
#define CLI_TLS_OPTIONS(f)                                                                 \
    {.name = "tls-dir", .kind = CLI_STRING, .metavar = "DIR", .dest = &(f)->dir,          \
     .help = "mutual TLS with DIR/ca.crt and this end's DIR/node-I or DIR/client "         \
             ".crt and .key (from raft certs)", .shown_default = "plain TCP"},            \
    {.name = "tls-ca", .kind = CLI_STRING, .metavar = "FILE", .dest = &(f)->ca,           \
     .help = "mutual TLS: the CA certificate every peer's is signed by"},                 \
    {.name = "tls-cert", .kind = CLI_STRING, .metavar = "FILE", .dest = &(f)->cert,       \
     .help = "mutual TLS: this end's certificate (CN=node-I or CN=client)"},              \
    {.name = "tls-key", .kind = CLI_STRING, .metavar = "FILE", .dest = &(f)->key,         \
     .help = "mutual TLS: this end's private key"}

/* The option row of --cluster-name, into field (a const char *). */
#define CLI_CLUSTER_NAME_OPTION(field)                                                     \
    {.name = "cluster-name", .kind = CLI_STRING, .metavar = "NAME", .dest = (field),      \
     .help = "the cluster's name, the same on every node: its id is made from it (give "  \
             "one when the nodes' --peers differ, as through proxies)",                    \
     .shown_default = "the id is made from --peers"}

/* The id of the cluster that --cluster-name (may be NULL) and the n
 * --peers addresses bootstrap, into out; neither (a node to be added to a
 * running cluster): no id yet, which it takes from the first peer to
 * contact it. A usage error (one sentence) for a name over
 * CLI_CLUSTER_NAME_MAX bytes. */
#define CLI_CLUSTER_NAME_MAX 255
int cli_cluster_id(const char *sub, const char *name, char *const *peers, uint32_t n,
                   struct cluster_id *out);

/* The files for certificate `name` ("node-2", "client"); all NULL without
 * flags. Half-given flags: a usage error (one sentence), -EINVAL. */
int cli_tls_paths(const char *sub, const struct tls_flags *f, const char *name,
                  struct tls_paths *out);

/* A client's context (NULL without flags): 0 or -EINVAL, said in one
 * sentence naming the flag or file at fault. */
int cli_tls_client(const char *sub, const struct tls_flags *f, struct tls_ctx **out);

/* raft certs --out DIR --nodes N [--hosts H,...]; returns an exit code. */
int cli_cmd_certs(int argc, char **argv);

#endif
