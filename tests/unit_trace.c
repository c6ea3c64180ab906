/*
 * unit_trace.c - the trace writer (raft/trace.h) on a node that is only
 * the fields the hooks read: the exact shape of a line; a node restarted
 * onto its own trace file starts a new boot and numbers its messages in
 * it, after a clean stop and after a kill that lost its buffered lines; a
 * line cut short by a kill is left alone on its line; the boot is found
 * behind more than a read-back chunk of lines that carry none.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "raft/node.h"
#include "raft/trace.h"

struct fixture {
    char dir[64], path[96];
    struct raft_node *n;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/raft-unit-trace-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/node-0.jsonl", f->dir);
    f->n = calloc(1, sizeof(*f->n));
    assert_non_null(f->n);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    unlink(f->path);
    rmdir(f->dir);
    free(f->n);
    free(f);
    return 0;
}

/* Starts a boot of node 0 on the fixture's file, as node_create does. */
static void boot(struct fixture *f)
{
    struct raft_node *n = f->n;
    memset(n, 0, sizeof(*n));
    n->cfg.id = 0;
    n->current_term = 3;
    n->role = RAFT_FOLLOWER;
    assert_int_equal(trace_open(&n->trace, f->path), 0);
    n->msg_seq = trace_first_msg_seq(n->trace);
    trace_start_locked(n);
}

static void stop(struct fixture *f)
{
    trace_close(f->n->trace);
    f->n->trace = NULL;
}

/* An AppendEntries from node 0 to node 1, numbered as peer.c numbers it. */
static void send_append(struct raft_node *n)
{
    struct raft_msg m;
    memset(&m, 0, sizeof(m));
    m.type = RAFT_MSG_APPEND_ENTRIES;
    m.from = n->cfg.id;
    m.id = ++n->msg_seq;
    m.u.ae = (struct raft_append_entries){.term = 3, .prev_log_index = 4, .prev_log_term = 2,
                                          .leader_commit = 4, .n_entries = 1};
    trace_send_locked(n, &m, 1);
}

static char *slurp(const char *path)
{
    static char buf[1 << 20];
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    size_t len = fread(buf, 1, sizeof(buf) - 1, fp);
    buf[len] = '\0';
    fclose(fp);
    return buf;
}

static unsigned count(const char *text, const char *needle)
{
    unsigned k = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
        k++;
    return k;
}

static void test_a_line_has_the_documented_shape(void **state)
{
    struct fixture *f = *state;
    boot(f);
    f->n->role = RAFT_LEADER;
    send_append(f->n);
    struct raft_msg vote = {.type = RAFT_MSG_REQUEST_VOTE_REPLY, .from = 2, .id = 9};
    vote.u.rv_reply = (struct raft_request_vote_reply){.term = 3, .vote_granted = true};
    trace_recv_locked(f->n, &vote);
    stop(f);
    char *text = slurp(f->path);
    double t;
    int used = 0;
    assert_int_equal(sscanf(text, "{\"t\":%lf,%n", &t, &used), 1);
    assert_true(t > 1.6e12); /* wall-clock milliseconds */
    assert_true(strchr(text, '.') < text + used && strchr(text, '.')[4] == ',');
    assert_non_null(strstr(text, ",\"node\":0,\"term\":3,\"role\":\"follower\",\"ev\":\"role\","
                                 "\"commit\":0,\"applied\":0,\"boot\":1}\n"));
    assert_non_null(strstr(text, ",\"node\":0,\"term\":3,\"role\":\"leader\",\"ev\":\"role\","
                                 "\"was\":\"follower\",\"was_term\":3}\n"));
    assert_non_null(strstr(text, ",\"role\":\"leader\",\"ev\":\"send\",\"msg\":{\"id\":\"0-1\","
                                 "\"type\":\"AppendEntries\",\"from\":0,\"to\":1,\"term\":3,"
                                 "\"prev\":4,\"prev_term\":2,\"commit\":4,\"entries\":1}}\n"));
    assert_non_null(strstr(text, ",\"ev\":\"recv\",\"msg\":{\"id\":\"2-9\",\"type\":"
                                 "\"RequestVoteReply\",\"from\":2,\"to\":0,\"term\":3,"
                                 "\"granted\":true,\"pre_vote\":false}}\n"));
    assert_int_equal(count(text, "\n"), 4);
}

static void test_a_restart_numbers_its_messages_in_a_new_boot(void **state)
{
    struct fixture *f = *state;
    boot(f);
    assert_int_equal(f->n->msg_seq, 0);
    for (int i = 0; i < 3; i++)
        send_append(f->n);
    stop(f);
    boot(f);
    assert_int_equal(f->n->msg_seq, 1ull << TRACE_BOOT_SHIFT);
    send_append(f->n);
    stop(f);
    boot(f);
    send_append(f->n);
    stop(f);
    char *text = slurp(f->path);
    assert_int_equal(count(text, "\"id\":\"0-3\""), 1);
    assert_int_equal(count(text, "\"boot\":2}"), 1);
    assert_int_equal(count(text, "\"id\":\"0-2.1\""), 1);
    assert_int_equal(count(text, "\"boot\":3}"), 1);
    assert_int_equal(count(text, "\"id\":\"0-3.1\""), 1);
    assert_int_equal(count(text, "\"id\":\"0-1\""), 1); /* not "0-1" twice */
}

/* The child's buffered sends die with it; its start line does not. */
static void test_a_killed_boot_is_counted_by_the_next(void **state)
{
    struct fixture *f = *state;
    boot(f);
    send_append(f->n);
    stop(f);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        boot(f);
        for (int i = 0; i < 50; i++)
            send_append(f->n);
        raise(SIGKILL);
        _exit(1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    char *text = slurp(f->path);
    assert_int_equal(count(text, "\"boot\":2}"), 1);
    boot(f);
    assert_int_equal(f->n->msg_seq, 2ull << TRACE_BOOT_SHIFT);
    send_append(f->n);
    stop(f);
    text = slurp(f->path);
    assert_int_equal(count(text, "\"boot\":3}"), 1);
    assert_int_equal(count(text, "\"id\":\"0-3.1\""), 1);
}

static void append_raw(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static void test_a_torn_last_line_stays_alone(void **state)
{
    struct fixture *f = *state;
    boot(f);
    send_append(f->n);
    stop(f);
    /* A send cut inside its id: its boot cannot be told, and is not guessed. */
    append_raw(f->path, "{\"t\":1.000,\"node\":0,\"term\":3,\"role\":\"leader\",\"ev\":\"send\","
                        "\"msg\":{\"id\":\"0-7.1");
    boot(f);
    stop(f);
    char *text = slurp(f->path);
    assert_non_null(strstr(text, "\"id\":\"0-7.1\n{\"t\":"));
    assert_int_equal(count(text, "\"boot\":2}"), 1);
}

static void test_the_boot_is_found_far_back(void **state)
{
    struct fixture *f = *state;
    append_raw(f->path, "{\"t\":1.000,\"node\":0,\"term\":1,\"role\":\"follower\",\"ev\":\"role\","
                        "\"commit\":0,\"applied\":0,\"boot\":7}\n");
    /* 100 KB of receives: no line of them names a boot of node 0. */
    for (int i = 0; i < 800; i++)
        append_raw(f->path, "{\"t\":2.000,\"node\":0,\"term\":1,\"role\":\"follower\","
                            "\"ev\":\"recv\",\"msg\":{\"id\":\"1-4.5\",\"type\":"
                            "\"AppendEntries\",\"from\":1,\"to\":0,\"term\":1,\"prev\":0}}\n");
    boot(f);
    assert_int_equal(f->n->msg_seq, 7ull << TRACE_BOOT_SHIFT);
    stop(f);
    assert_int_equal(count(slurp(f->path), "\"boot\":8}"), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_a_line_has_the_documented_shape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_restart_numbers_its_messages_in_a_new_boot,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_killed_boot_is_counted_by_the_next, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_torn_last_line_stays_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_the_boot_is_found_far_back, setup, teardown),
    };
    return cmocka_run_group_tests_name("unit_trace", tests, NULL, NULL);
}
