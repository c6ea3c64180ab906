/*
 * files.h - what the process suites do with text files: count and print
 * the lines of a node's log that say something, and run a command with
 * its output in a file.
 */
#ifndef TESTS_SUPPORT_FILES_H
#define TESTS_SUPPORT_FILES_H

/* How many lines of the file contain `needle` (0 if it cannot be read). */
int test_file_count_lines(const char *path, const char *needle);

/* Prints, indented, the lines of the file that contain `needle` (at most
 * max of them). */
void test_file_print_lines(const char *path, const char *needle, int max);

/* Runs argv (argv[0] is the program) with stdout and stderr into
 * out_path; returns its exit code, or -1 if it could not be started, died
 * of a signal, or had not exited after timeout_ms (it is then killed). */
int test_run_to_file(char *const *argv, const char *out_path, unsigned timeout_ms);

#endif
