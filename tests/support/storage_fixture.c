/*
 * storage_fixture.c - a fresh data directory per test for the unit_storage
 * suites, and the helpers they share (see storage_fixture.h).
 */
#include "tests/support/storage_fixture.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "raft/storage/format.h"

void sfx_capture_log(void *ctx, enum raft_log_level lvl, const char *msg)
{
    struct sfx *f = ctx;
    size_t used = strlen(f->log);
    snprintf(f->log + used, sizeof(f->log) - used, "%d %s\n", (int)lvl, msg);
}

void sfx_remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char child[512];
            snprintf(child, sizeof(child), "%s/%s", path, e->d_name);
            sfx_remove_tree(child);
        }
        if (d)
            closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

void sfx_open(struct sfx *f)
{
    assert_int_equal(file_storage_open(&f->fs, f->dir, sfx_capture_log, f), 0);
    f->st = file_storage_ops(f->fs);
}

void sfx_close(struct sfx *f)
{
    file_storage_close(f->fs);
    f->fs = NULL;
}

int sfx_setup(void **state)
{
    struct sfx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    strcpy(f->root, "/tmp/raft-storage-XXXXXX");
    assert_non_null(mkdtemp(f->root));
    snprintf(f->dir, sizeof(f->dir), "%s/data/node-0", f->root);
    sfx_open(f);
    *state = f;
    return 0;
}

int sfx_teardown(void **state)
{
    struct sfx *f = *state;
    if (f->fs)
        sfx_close(f);
    sfx_remove_tree(f->root);
    free(f);
    return 0;
}

/* A restart: the storage is closed and opened again, its log emptied. */
int sfx_reload(struct sfx *f, struct raft_persisted *p)
{
    sfx_close(f);
    f->log[0] = '\0';
    sfx_open(f);
    return f->st.load(f->st.ctx, p);
}

void sfx_path(const struct sfx *f, const char *name, char *out, size_t size)
{
    snprintf(out, size, "%s/%s", f->dir, name);
}

void sfx_segment_path(const struct sfx *f, uint64_t first, char *out, size_t size)
{
    char name[FMT_SEGMENT_NAME_LEN + 1];
    fmt_segment_name(name, first);
    sfx_path(f, name, out, size);
}

int sfx_count_segments(const struct sfx *f)
{
    DIR *d = opendir(f->dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    uint64_t first;
    while ((e = readdir(d)) != NULL)
        if (fmt_parse_segment_name(e->d_name, &first))
            n++;
    closedir(d);
    return n;
}

off_t sfx_file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

void sfx_flip_byte(const char *path, off_t off)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, off), 1);
    b ^= 0x5a;
    assert_int_equal(pwrite(fd, &b, 1, off), 1);
    close(fd);
}

void sfx_append_bytes(const char *path, const void *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, buf, len), (ssize_t)len);
    close(fd);
}

/* ---- entries with checkable contents ---- */

/* The data of entry `index` in `term`: its length varies with the index, and
 * index 7 of every 7 is empty. */
uint32_t sfx_entry_data(uint64_t index, uint64_t term, uint8_t *buf)
{
    if (index % 7 == 0)
        return 0;
    int n = snprintf((char *)buf, 64, "k%" PRIu64 "=v%" PRIu64 "-t%" PRIu64, index, index, term);
    uint32_t len = (uint32_t)n + (uint32_t)(index % 13);
    for (uint32_t i = (uint32_t)n; i < len; i++)
        buf[i] = (uint8_t)(index * 31 + i); /* some binary bytes too */
    return len;
}

uint32_t sfx_entry_size(uint64_t index)
{
    uint8_t buf[128];
    return (uint32_t)fmt_record_size(sfx_entry_data(index, 1, buf));
}

void sfx_append_range(struct sfx *f, uint64_t first, uint64_t last, uint64_t term,
                      size_t batch)
{
    static uint8_t bufs[16][128];
    struct raft_entry e[16];
    assert_true(batch >= 1 && batch <= 16);
    for (uint64_t i = first; i <= last;) {
        size_t n = 0;
        for (; n < batch && i + n <= last; n++) {
            e[n].term = term;
            e[n].type = (i + n) % 5 == 0 ? RAFT_ENTRY_NOOP : RAFT_ENTRY_COMMAND;
            e[n].len = sfx_entry_data(i + n, term, bufs[n]);
            e[n].data = e[n].len ? bufs[n] : NULL;
        }
        assert_int_equal(f->st.append(f->st.ctx, i, e, n), 0);
        i += n;
    }
}

void sfx_check_range(const struct raft_persisted *p, uint64_t first, uint64_t last,
                     uint64_t term)
{
    for (uint64_t i = first; i <= last; i++) {
        size_t k = (size_t)(i - p->snapshot_index - 1);
        assert_true(k < p->n_entries);
        const struct raft_entry *e = &p->entries[k];
        uint8_t buf[128];
        uint32_t len = sfx_entry_data(i, term, buf);
        assert_int_equal(e->term, term);
        assert_int_equal(e->type, i % 5 == 0 ? RAFT_ENTRY_NOOP : RAFT_ENTRY_COMMAND);
        assert_int_equal(e->len, len);
        if (len)
            assert_memory_equal(e->data, buf, len);
        else
            assert_null(e->data);
    }
}
