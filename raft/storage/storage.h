/*
 * storage.h - durable state of one node in a data directory.
 *
 * Implements `struct raft_storage` (raft/raft.h) over files: currentTerm and
 * votedFor in `meta`, the log in segment files `log-<first index>`, the
 * latest snapshot in `snapshot`. Every function returns only once its effect
 * is durable (Figure 2: "updated on stable storage before responding to
 * RPCs"). The on-disk format and the recovery rules are described at the top
 * of raft/storage/format.c.
 *
 *     struct file_storage *fs;
 *     int rc = file_storage_open(&fs, "data/node-0", log_fn, log_ctx);
 *     struct raft_storage st = file_storage_ops(fs);
 *     ... raft_start(&node, &cfg, &transport, &st, &fsm) ... raft_stop(node);
 *     file_storage_close(fs);
 *
 * After any failed write or sync the storage refuses every later change
 * (returns -EIO): a node whose fsync failed cannot trust what its file holds
 * and must restart, which reloads whatever really reached the disk.
 */
#ifndef RAFT_STORAGE_H
#define RAFT_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "raft/raft.h"
#include "raft/storage/io.h"

struct file_storage;

/* Log lines: a torn tail cut at recovery (warn), errors (error), what was
 * recovered (info). `log` may be NULL: warnings and errors then go to
 * stderr. */
typedef void (*file_storage_log_fn)(void *ctx, enum raft_log_level lvl, const char *msg);

/* Opens (and creates, with any missing parents, like mkdir -p) the data
 * directory `dir`, and holds its lock until file_storage_close: -EBUSY,
 * with a sentence naming the directory and the holder's pid given to `log`
 * at error level, when another open storage (in any process) holds it.
 * Reads nothing yet: load() recovers the contents. */
int file_storage_open(struct file_storage **out, const char *dir,
                      file_storage_log_fn log, void *log_ctx);

/* The same, with every file system call going through `io` (which must
 * outlive the storage), and no lock: the directory may not be a real one. */
int file_storage_open_with_io(struct file_storage **out, const char *dir,
                              file_storage_log_fn log, void *log_ctx,
                              const struct storage_io *io);

/* Checks that the directory is node `id`'s, before the first load: 0
 * when it is, or when it records no owner yet (a new directory, or one
 * written by an older release), which then records `id` durably; -EEXIST
 * when it belongs to another node, -EBADMSG when its record is damaged,
 * each with one sentence naming the directory (file_storage_error). */
int file_storage_claim_id(struct file_storage *s, uint32_t id);

/* The configuration to start from (raft_config.bootstrap), before the
 * first load: the one recorded in the directory (file `bootstrap`) if
 * any, whatever `given` says; else `given` (--peers; n 0 for none), which
 * is then recorded durably when it has members. A directory written by a
 * release that kept no such file thus takes `given`. Returns 0 with *used
 * set, or -EBADMSG (a damaged file) or an I/O error, each with one
 * sentence naming the file and offset (file_storage_error). */
int file_storage_bootstrap(struct file_storage *s, const struct raft_membership *given,
                           struct raft_membership *used);

/* The cluster the directory belongs to (raft/storage/identity.c), before
 * the first load. derived: the id this node bootstraps with (from its
 * --peers or --cluster-name), or NULL for a node not yet in a cluster.
 * 0 with *known and out set to the directory's id (a new directory takes
 * `derived`, recorded durably), or with *known false when neither has
 * one; -EEXIST when the directory belongs to another cluster than
 * derived, -EBADMSG when its record is damaged, each with one sentence
 * naming the directory (file_storage_error). */
#define FILE_STORAGE_CLUSTER_ID_SIZE 16
int file_storage_claim_cluster(struct file_storage *s, const uint8_t *derived,
                               uint8_t out[FILE_STORAGE_CLUSTER_ID_SIZE], bool *known);

/* Records the id of the cluster a node not yet in one has joined (the
 * first peer to contact it), durably: 0, -EEXIST if the directory already
 * belongs to another cluster, or -errno. */
int file_storage_record_cluster(struct file_storage *s,
                                const uint8_t id[FILE_STORAGE_CLUSTER_ID_SIZE]);

/* Closes files and frees the storage. Everything acknowledged is already
 * durable, so there is nothing to flush. */
void file_storage_close(struct file_storage *s);

/* The table the node uses; ctx is s. load() must be the first call (it
 * recovers the directory); a change made before it runs recovery first. */
struct raft_storage file_storage_ops(struct file_storage *s);

/* Log segments roll over to a new file once they pass this many bytes
 * (default 8 MiB), so that compaction deletes whole files. One append batch
 * is never split across files. For tests and tuning. */
void file_storage_set_segment_size(struct file_storage *s, size_t bytes);

/* From now on load leaves the data of the log's entries in the files
 * (entry.data NULL, len set), all but configuration entries', and the
 * node reads it back with read_entries when it applies or sends them: a
 * node restarting on a long log need not hold it in memory. */
void file_storage_leave_entries_on_disk(struct file_storage *s);

/* The last error as one plain sentence naming the file and byte offset, e.g.
 * "data/node-0/log-0000000000000001: a bad checksum in the record at offset
 * 4096, in a segment that later segments follow"; "" when nothing failed.
 * Valid until the next call on s. */
const char *file_storage_error(const struct file_storage *s);

/* Puts a command entry's data into words (the state machine knows what its
 * commands mean; storage does not): writes a NUL-terminated string of at
 * most cap bytes and returns its length, or a negative errno to have the
 * bytes shown instead. kv_describe_entry (kv/kv.h) is one. */
typedef int (*file_storage_describe_fn)(char *buf, size_t cap, const uint8_t *data,
                                        uint32_t len);

/* Prints the data directory as text (`raft dump DIR`): term, vote, snapshot,
 * then every log record with its index, term, type, length and its data:
 * described by `describe` when given (may be NULL), else a preview of its
 * bytes. Changes nothing on disk. Returns 0, -ENOENT when `dir` does not
 * exist, or -EBADMSG when something is corrupt (what could be read is still
 * printed, with the problem named in place). */
int file_storage_dump(const char *dir, FILE *out, file_storage_describe_fn describe);

#endif
