/* sweep_emit.h - a sweep for other schedulers: a Slurm job array, or one
 * command line per point (GNU parallel, xargs, any batch system).
 *
 * Every emitted command is `cellcount sweep ARGS --point I --threads T`
 * run in the directory the sweep was emitted from: it runs point I only,
 * through the same resume logic as a whole sweep (a finished point is
 * skipped, an interrupted one resumed), so resubmitting is always safe.
 * Emitting also writes OUT/points.txt, the list of the point directory
 * names, so that `cellcount report OUT` lists the points that are still
 * missing or failed.
 */
#ifndef CC_SWEEP_EMIT_H
#define CC_SWEEP_EMIT_H

#include <stdio.h>

#include "src/sweep/sweep.h"

typedef struct sweep_emit {
    const char *exe;            /* absolute path of cellcount */
    char *const *args;          /* the sweep's own arguments (spec, --grid, --set, ...) */
    int nargs;
    const char *cwd;            /* where the commands run */
    int threads;                /* per point (Slurm: --cpus-per-task) */
    const char *partition;      /* NULL: the cluster's default */
    const char *time_limit;     /* Slurm time, e.g. 2-00:00:00; NULL: the partition's */
    int max_parallel;           /* array tasks at a time; 0: no limit */
    int signal_s;               /* USR1 this many seconds before the time limit */
} sweep_emit;

/* OUT/points.txt (atomic), creating OUT. */
int sweep_write_points(const sweep_spec *s, const sweep_point *points, int n, cc_status *st);

/* One line per point to f. */
int sweep_emit_commands(const sweep_spec *s, int n, const sweep_emit *e, FILE *f, cc_status *st);

/* The job-array script at path and, next to it, the report job
 * (path with ".sh" replaced by "_report.sh"), both atomically, executable;
 * creates OUT/slurm for the logs.  The name of the report script goes to
 * report_path. */
int sweep_emit_slurm(const sweep_spec *s, int n, const sweep_emit *e, const char *path,
                     char *report_path, size_t report_len, cc_status *st);

#endif
