/*
 * files.c - text files and commands for the process suites (see files.h).
 */
#include "tests/support/files.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/clock.h"

int test_file_count_lines(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof(line), f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

void test_file_print_lines(const char *path, const char *needle, int max)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[4096];
    while (max > 0 && fgets(line, sizeof(line), f))
        if (strstr(line, needle)) {
            printf("    %s", line);
            max--;
        }
    fclose(f);
}

int test_run_to_file(char *const *argv, const char *out_path, unsigned timeout_ms)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(127);
        execv(argv[0], argv);
        _exit(127);
    }
    uint64_t deadline = test_now_ms() + timeout_ms;
    int status;
    /* Polled rather than waited for, so that a command that hangs is
     * killed and the test goes on to report it. */
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (test_now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        test_sleep_ms(20);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
