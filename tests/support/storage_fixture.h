/*
 * storage_fixture.h - what the unit_storage suites share: a fresh data
 * directory under /tmp per test (removed afterwards), opened as a
 * file_storage whose log lines are kept, files to damage by hand, and log
 * entries whose bytes are a function of index and term, so that a load can
 * be checked byte for byte.
 *
 *     cmocka_unit_test_setup_teardown(test_x, sfx_setup, sfx_teardown)
 *     static void test_x(void **state) { struct sfx *f = *state; ... }
 */
#ifndef TESTS_SUPPORT_STORAGE_FIXTURE_H
#define TESTS_SUPPORT_STORAGE_FIXTURE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "raft/raft.h"
#include "raft/storage/storage.h"

struct sfx {
    char root[64];      /* mkdtemp'd */
    char dir[128];      /* root/data/node-0: created by the storage */
    struct file_storage *fs;
    struct raft_storage st;
    char log[16384];    /* every log line, one per line */
};

/* Every test of a unit_storage suite runs in its own fresh directory. */
#define IN_FRESH_DIR(test) cmocka_unit_test_setup_teardown(test, sfx_setup, sfx_teardown)

int sfx_setup(void **state);
int sfx_teardown(void **state);
/* Appends one "level message" line to f->log (ctx is f). */
void sfx_capture_log(void *ctx, enum raft_log_level lvl, const char *msg);
void sfx_remove_tree(const char *path);
void sfx_open(struct sfx *f);
void sfx_close(struct sfx *f);
/* Closes and reopens the storage (a restart), then loads. */
int sfx_reload(struct sfx *f, struct raft_persisted *p);

/* ---- files of the data directory ---- */

void sfx_path(const struct sfx *f, const char *name, char *out, size_t size);
void sfx_segment_path(const struct sfx *f, uint64_t first, char *out, size_t size);
int sfx_count_segments(const struct sfx *f);
off_t sfx_file_size(const char *path);
void sfx_flip_byte(const char *path, off_t off);
void sfx_append_bytes(const char *path, const void *buf, size_t len);

/* ---- entries with checkable contents ---- */

/* Writes the data of entry `index` in `term` into buf (128 bytes is
 * enough) and returns its length. */
uint32_t sfx_entry_data(uint64_t index, uint64_t term, uint8_t *buf);
/* The size on disk of entry `index`'s record. */
uint32_t sfx_entry_size(uint64_t index);
/* Appends first..last in `term`, `batch` entries per call. */
void sfx_append_range(struct sfx *f, uint64_t first, uint64_t last, uint64_t term,
                      size_t batch);
/* Checks that p holds entries first..last in `term`. */
void sfx_check_range(const struct raft_persisted *p, uint64_t first, uint64_t last,
                     uint64_t term);

#endif
