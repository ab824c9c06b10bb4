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

#endif
