/* testmain.h - what every Check suite binary shares: the runner, the
 * environment defaults, and a temporary directory per test case.
 *
 * A suite's main() is `return tu_run(my_suite());`.  Before main() runs,
 * CK_DEFAULT_TIMEOUT=600 and OMP_WAIT_POLICY=passive are set unless the
 * environment already sets them, so a suite run by hand on a busy machine
 * behaves as under `make check` (Check reads the timeout when a test case is
 * created, OpenMP its wait policy when it starts: both after this).
 */
#ifndef CC_TESTMAIN_H
#define CC_TESTMAIN_H

#include <check.h>
#include <stddef.h>

/* Run every test of s (Check forks each), freeing s; verbosity from
 * CK_VERBOSITY (default normal).  Returns EXIT_SUCCESS when all passed,
 * else EXIT_FAILURE: main's return value. */
int tu_run(Suite *s);

/* Make a fresh directory /tmp/<tag>_XXXXXX into dir (len >= 32 + tag).
 * Returns 0, or -1 (perror'ed) when it cannot. */
int tu_tmpdir_make(char *dir, size_t len, const char *tag);

/* Remove dir and everything below it (links are not followed; read-only
 * directories are made writable first).  Returns 0, or -1 when something
 * stayed. */
int tu_tmpdir_remove(const char *dir);

#endif
