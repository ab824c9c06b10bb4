/* fulldisk.h - a full disk without root, for the tests of file writers.
 *
 * Linking tests/fulldisk.c into a test binary replaces pwrite() and
 * fallocate() for the whole process, HDF5 and libcellcount included (the
 * executable's definitions take precedence over libc's).  While a limit is
 * set, a write or allocation that reaches past `limit` bytes of a file
 * under `dir` fails with ENOSPC, as on a full disk; everything else goes
 * straight to the kernel.  Only the default (sec2) HDF5 driver writes with
 * pwrite(). */
#ifndef CC_FULLDISK_H
#define CC_FULLDISK_H

/* Simulate a disk of `limit` bytes per file under `dir` (an existing
 * directory); limit < 0 turns the simulation off. */
void fulldisk_set(const char *dir, long long limit);

#endif
