/* fsutil.h - small file-system helpers shared by the run, sweep, report and
 * count code. */
#ifndef CC_FSUTIL_H
#define CC_FSUTIL_H

#include "autodiff/status.h"

/* mkdir -p: create dir and its missing parents (mode 0777 & ~umask).
 * Returns 0 when dir exists as a directory afterwards, else -1 with a
 * message naming the path that failed (too long, cannot be created, or
 * exists but is not a directory). */
int fs_mkdirs(const char *dir, cc_status *st);

/* ---- atomic writes ----------------------------------------------------
 *
 * Every writer of an output file goes through this: write `a.tmp`, then
 * fs_atomic_commit() renames it over `a.target`, so a reader sees the old
 * file or the whole new one and a failure leaves nothing half-written.
 *  - A symbolic link is followed: its target is replaced, the link stays.
 *  - Devices, FIFOs, sockets and descriptor aliases (/dev/stdout,
 *    /dev/fd/N, /proc/self/fd/N) are written directly (a.direct = 1,
 *    a.tmp == the path): not atomic, but a device node is never replaced by
 *    a regular file, nor a shell's redirection target.  Only regular files
 *    (or new names) are renamed over.
 *  - Temp names are "<target>.tmp.<host>.<pid>": on a shared file system
 *    a run removes only its own host's temp files, and only those of dead
 *    processes (fs_atomic_begin does that for the target's name, so what a
 *    SIGKILL left behind goes away with the next write).
 *  - Until commit or abort, the temp path is registered for removal when
 *    the process gets SIGINT, SIGTERM or SIGHUP (the handler is installed
 *    only over the default disposition and re-raises the signal).
 * Not for use on one fs_atomic from several threads; distinct ones are fine.
 */
#define FS_PATH_MAX 4096

typedef struct fs_atomic {
    char target[FS_PATH_MAX];   /* the file that will be replaced */
    char tmp[FS_PATH_MAX + 96]; /* where to write (== target when direct) */
    int direct;                 /* 1: written in place (device, FIFO, /dev/...) */
    int is_dir;                 /* 1: tmp is a staging directory */
    int slot;                   /* signal-cleanup registration, -1 none */
} fs_atomic;

/* Prepare an atomic write of `path`: resolve it (symlinks), refuse a
 * directory, pick tmp and register it for cleanup; tmp is not created.
 * Returns 0 or -1 with "path: ..." in st. */
int fs_atomic_begin(fs_atomic *a, const char *path, cc_status *st);

/* Same for a staging directory that the caller creates at a->tmp (mkdir)
 * and renames into place itself; signal cleanup removes its files (one
 * level) and the directory.  Never direct. */
int fs_atomic_begin_dir(fs_atomic *a, const char *path, cc_status *st);

/* Rename tmp over target (nothing for a direct write) and unregister.  On
 * failure tmp is removed; returns -1 with "target: cannot replace ..." */
int fs_atomic_commit(fs_atomic *a, cc_status *st);

/* Remove tmp (a file; for a directory, its files and itself) unless the
 * write is direct, and unregister.  Safe to call twice. */
void fs_atomic_abort(fs_atomic *a);

/* Unregister without touching tmp (the caller renamed or removed it). */
void fs_atomic_release(fs_atomic *a);

#endif
