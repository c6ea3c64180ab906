/*
 * eager_snapshot.h - the two-step snapshot of struct raft_fsm for the test
 * suites' small state machines: the capture serializes the state at once
 * (it is a few bytes), and the serialization hands those bytes over; a
 * restore reads the snapshot whole.
 */
#ifndef TESTS_SUPPORT_EAGER_SNAPSHOT_H
#define TESTS_SUPPORT_EAGER_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

/* *view gets the bytes serialize(ctx) makes now. */
int eager_snapshot_capture(int (*serialize)(void *ctx, uint8_t **data, size_t *len), void *ctx,
                           void **view);

/* A raft_fsm.snapshot_serialize for views made by eager_snapshot_capture. */
int eager_snapshot_serialize(void *ctx, void *view,
                             int (*write)(void *sink, const uint8_t *data, size_t len),
                             void *sink);

/* A whole snapshot of f's state as of now, in one malloc'd buffer:
 * capture, then serialize into it. */
struct raft_fsm;
int fsm_snapshot_bytes(const struct raft_fsm *f, uint8_t **data, size_t *len);
/* The same for a view captured earlier (released). */
int fsm_view_bytes(const struct raft_fsm *f, void *view, uint8_t **data, size_t *len);

/* Restores f from a snapshot held in memory (raft_fsm.restore reads it
 * in order). */
int fsm_restore_bytes(const struct raft_fsm *f, uint64_t index, const uint8_t *data,
                      size_t len);

/* For a small state machine's raft_fsm.restore: the whole snapshot of len
 * bytes in one malloc'd buffer (*data, the caller frees it), or an error. */
int eager_restore_read_all(uint64_t len, int (*read)(void *src, uint8_t *buf, size_t n),
                           void *src, uint8_t **data);

#endif
