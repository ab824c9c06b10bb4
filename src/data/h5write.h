/* h5write.h - helpers for the HDF5 writers (data sets, checkpoints, run
 * logs): reproducible bytes, and surviving a full disk.
 *
 * HDF5 1.10 cannot recover from a failed flush: after a failed H5Fflush
 * every later flush fails, and a failed H5Fclose frees the file but leaves
 * its id registered, so library shutdown at exit closes it again and the
 * process dies with SIGSEGV (HDF5 issue #2257, fixed in 1.14.1).  A writer
 * that creates `tmp` (to be renamed over `path`) therefore
 *   - calls h5write_reserve() right before the H5Fclose of a file it keeps,
 *     treats a failure like a failed write, and after a successful close
 *     calls h5write_release();
 *   - calls h5write_discard() before closing anything of a file it drops
 *     after a failure, then closes and unlinks it as usual.
 * Files must be opened with the default (sec2) driver; with another driver
 * these calls do nothing.
 */
#ifndef CC_H5WRITE_H
#define CC_H5WRITE_H

#include <hdf5.h>

#include "autodiff/status.h"

/* A creation property list of class `cls` (H5P_FILE_CREATE for the root
 * group, H5P_GROUP_CREATE, H5P_DATASET_CREATE) with object modification
 * times off, so that the same content gives the same bytes.  The caller
 * closes it with H5Pclose.  -1 on HDF5 failure. */
hid_t h5write_plist_create(hid_t cls);

/* Allocate the disk blocks of everything the final flush of `file` can
 * write (all of it lies inside the allocated size plus a small margin), so
 * that H5Fclose cannot fail for want of space.  The file size does not
 * change.  Returns 0, or -1 with st = "path: cannot write tmp: <errno>"
 * when the disk is full.  File systems without fallocate get no guarantee
 * (returns 0). */
int h5write_reserve(hid_t file, const char *path, const char *tmp, cc_status *st);

/* Give back the blocks h5write_reserve allocated past the end of the
 * closed file `tmp`.  Best effort. */
void h5write_release(const char *tmp);

/* Point the descriptor under `file` at an empty anonymous memory file, so
 * that closing it writes there and cannot fail.  For a file about to be
 * deleted; costs memory only for what is still unwritten (HDF5 reads
 * nothing back while closing).  Best effort. */
void h5write_discard(hid_t file);

/* HDF5 prints its error stack to stderr by default; every public entry
 * point of our HDF5 modules silences that for its duration and restores
 * the caller's handler (so other modules keep their setting). */
typedef struct h5_quiet {
    H5E_auto2_t func;
    void *data;
} h5_quiet;

void h5_quiet_begin(h5_quiet *q);
void h5_quiet_end(const h5_quiet *q);

/* Record a failure as "path: what (HDF5: innermost error description)".
 * Call right after the failing HDF5 call: the next call clears the stack.
 * Returns -1. */
int h5_fail(cc_status *st, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Write a scalar variable-length UTF-8 string attribute.  Returns 0 or -1
 * (the HDF5 error stack says why). */
int h5_attr_put_str(hid_t obj, const char *name, const char *value);

/* Read the string attribute `name` of obj into buf[len].  The one rule for
 * every string attribute read from a file (none of which is trusted): a
 * scalar dataspace, string class (fixed or variable length, any character
 * set), shorter than len bytes.  Anything else -- an array of strings, a
 * number, an over-long value -- is an error "path: where attribute 'name'
 * ...".  `where` names the object ("root", "/optim").  Returns 0 read, 1
 * absent (buf empty, st untouched), -1 error. */
int h5_attr_get_str(hid_t obj, const char *path, const char *where, const char *name, char *buf,
                    size_t len, cc_status *st);

/* Close *id with fn if open, and mark it closed (-1). */
void h5_close_id(hid_t *id, herr_t (*fn)(hid_t));

#endif
