/*
 * simdisk.h - a simulated disk behind `struct storage_io` that loses power.
 *
 * In the style of SQLite's crash VFS and ALICE: every write, truncation and
 * directory change is kept as pending until a sync makes it durable. The
 * disk counts persistence points (fdatasync, directory fsync); at point
 * crash_at the power goes: each pending file change is dropped, applied,
 * or torn (a prefix, or sectors of new, old and garbage bytes, per a seeded
 * random choice), and each pending directory change (create, rename,
 * unlink) survives or not. Every call after that fails with -EIO, as on a
 * dead machine; sim_reboot gives a new disk holding only what was durable.
 *
 * One directory, SIM_DIR, exists; paths are SIM_DIR "/" name.
 *
 *     struct sim *disk = sim_new(seed, crash_at);
 *     file_storage_open_with_io(&fs, SIM_DIR, log, ctx, &disk->io);
 *     ... run the workload; disk->crashed says whether the power went ...
 *     struct sim *after = sim_reboot(disk);
 */
#ifndef TESTS_SUPPORT_SIMDISK_H
#define TESTS_SUPPORT_SIMDISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "raft/storage/io.h"

#define SIM_DIR "simdisk"
#define SIM_MAX_FILES 64
#define SIM_MAX_FDS 16
#define SIM_NAME_MAX 32

struct file_change {
    bool is_truncate;
    off_t off;     /* write offset, or the new length */
    uint8_t *data; /* a copy of what was written */
    size_t len;
};

struct inode {
    uint8_t *durable; /* what survives a power cut */
    size_t durable_len;
    uint8_t *cur; /* what reads see: durable plus the pending changes */
    size_t cur_len;
    struct file_change *pending;
    size_t n_pending;
};

struct dentry {
    char name[SIM_NAME_MAX];
    int ino;
};

enum dir_change_kind { DIR_LINK, DIR_RENAME, DIR_UNLINK };

struct dir_change {
    enum dir_change_kind kind;
    char name[SIM_NAME_MAX]; /* created, unlinked, or renamed from */
    char to[SIM_NAME_MAX];
    int ino;
};

struct dir {
    struct dentry e[SIM_MAX_FILES];
    size_t n;
};

struct sim {
    struct storage_io io;
    struct inode *inodes;
    size_t n_inodes;
    struct dir cur;     /* the directory as the program sees it */
    struct dir durable; /* as of the last directory fsync */
    struct dir_change *dir_pending;
    size_t n_dir_pending;
    int fds[SIM_MAX_FDS]; /* inode of each open descriptor, -1 when free */
    int points;           /* persistence points so far */
    int crash_at;         /* the point where the power goes; 0: never */
    bool crashed;
    uint64_t rng;
};

/* A disk whose power goes at persistence point crash_at (0: never); seed
 * drives what a power cut leaves. */
struct sim *sim_new(uint64_t seed, int crash_at);
void sim_free(struct sim *s);
/* The machine comes back: a new disk holding only what was durable. */
struct sim *sim_reboot(const struct sim *old);
/* The entry of `name` in d, or -1. */
int sim_find(const struct dir *d, const char *name);

#endif
