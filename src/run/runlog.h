/* runlog.h - the HDF5 run file of one experiment run.
 *
 * A run file holds the resolved configuration, provenance (versions, commit,
 * start time, threads, CPU ISA) as root attributes, and named tables of
 * numbers: "metrics" gets one row per epoch and split, "eval/test" the
 * evaluation, and so on.  Each table is a group /<table> with one float64
 * dataset per column and a string dataset "label" (one label per row), so
 * `pandas.DataFrame({k: f["metrics"][k][:] for k in f["metrics"]})` reads it.
 *
 * The whole file is rewritten atomically (temp + rename) on every
 * runlog_flush(): it is small, a reader never sees a half-written file, and
 * a crash leaves the previous epoch's version.  Tables live in memory.
 */
#ifndef CC_RUNLOG_H
#define CC_RUNLOG_H

#include <stddef.h>

#include "autodiff/status.h"
#include "src/run/exp_config.h"

/* Tables and attributes grow as needed (every tagged evaluation adds
 * some); the caps only stop a hostile file from exhausting memory. */
#define RUNLOG_MAX_TABLES 4096
#define RUNLOG_MAX_ATTRS 4096
#define RUNLOG_MAX_COLS 32
#define RUNLOG_NAME 64

typedef struct runlog_table {
    char name[RUNLOG_NAME];
    int ncols;
    char cols[RUNLOG_MAX_COLS][RUNLOG_NAME];
    size_t nrows, cap;
    double *values;             /* nrows x ncols, row-major */
    char (*labels)[RUNLOG_NAME];
} runlog_table;

typedef struct runlog_attr {
    char key[RUNLOG_NAME];
    char value[CFG_STR * 2];
} runlog_attr;

typedef struct runlog {
    char path[CFG_STR + 64];
    /* each table and attribute allocated on its own, so that the pointers
     * runlog_table_get and runlog_attr_get hand out stay valid while
     * others are added (until runlog_free) */
    int ntables, tables_cap;
    runlog_table **tables;
    int nattrs, attrs_cap;
    runlog_attr **attrs;
} runlog;

/* New in-memory run log for path, with provenance attributes and every
 * configuration key ("config.<section>.<key>").  Nothing is written yet. */
int runlog_create(runlog *rl, const char *path, const cc_config *cfg, cc_status *st);

/* Load an existing run file (for --resume and report). */
int runlog_open(runlog *rl, const char *path, cc_status *st);

void runlog_free(runlog *rl);

/* Set/replace a root attribute. */
int runlog_set_attr(runlog *rl, const char *key, const char *value, cc_status *st);
/* Value of an attribute or NULL. */
const char *runlog_attr_get(const runlog *rl, const char *key);

/* The table called name, created with these columns if missing.  Columns
 * must match an existing table's.  Returns NULL + message on mismatch. */
runlog_table *runlog_table_get(runlog *rl, const char *name, int ncols, const char *const *cols,
                               cc_status *st);
/* The table called name, empty, with these columns (an existing table is
 * emptied and takes the new columns: tables rewritten whole, such as an
 * evaluation's).  NULL + message when no table can be added. */
runlog_table *runlog_table_fresh(runlog *rl, const char *name, int ncols, const char *const *cols,
                                 cc_status *st);
/* Existing table or NULL. */
runlog_table *runlog_table_find(runlog *rl, const char *name);
/* Column index or -1. */
int runlog_col(const runlog_table *t, const char *col);

/* Append a row (ncols values, NaN = not applicable; values may be NULL
 * when ncols is 0). Returns 0, or -1 with st set (out of memory). */
int runlog_append(runlog_table *t, const char *label, const double *values, cc_status *st);

/* Drop rows whose column `col` is > limit (resume: forget epochs after the
 * checkpoint). */
void runlog_truncate(runlog_table *t, const char *col, double limit);


/* Write the file atomically. */
int runlog_flush(const runlog *rl, cc_status *st);

#endif
