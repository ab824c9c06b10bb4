/* report.h - compare run files: a table of the headline numbers and of the
 * configuration keys that differ, as text or CSV, and learning-curve and
 * calibration plots through gnuplot.
 *
 * Everything is read from the run files (runlog.h): table "metrics" for the
 * curves and the best/final validation numbers, "eval/test" (row
 * "overall") for the test numbers, "calibration/<split>" for the
 * calibration plot, and the "config.*" attributes for the configuration.
 */
#ifndef CC_REPORT_H
#define CC_REPORT_H

#include <stdio.h>

#include "autodiff/status.h"
#include "src/run/runlog.h"

typedef struct report_run {
    char name[256];             /* the run directory's name (unique in the report) */
    char path[CFG_STR + 64];    /* the run file */
    runlog *rl;                 /* owned */
} report_run;

typedef struct cc_report {
    int nruns, cap;
    report_run *runs;
    int ndiff;
    char (*diff)[RUNLOG_NAME];  /* "section.key" of the configuration keys that differ */
    int nmissing;               /* sweep points without a readable run, listed ... */
    char (*missing)[400];       /* ... as "NAME: why" by report_print_missing */
} cc_report;

/* The headline numbers of one run, in table order; NaN where the run has
 * none.  Counter numbers are from the validation rows of "metrics": "best"
 * is the first epoch with the lowest MAE (the one counter_best.h5 holds),
 * "final" the last epoch; "test" is eval/test's overall row; train_s sums
 * the metrics rows' seconds over both stages. */
enum {
    REPORT_BEST_EPOCH,          /* 1-based, as the logs count */
    REPORT_BEST_MAE, REPORT_BEST_RMSE, REPORT_BEST_R2, REPORT_BEST_COV,
    REPORT_FINAL_MAE, REPORT_FINAL_RMSE, REPORT_FINAL_R2, REPORT_FINAL_COV,
    REPORT_TEST_MAE, REPORT_TEST_RMSE, REPORT_TEST_R2, REPORT_TEST_COV,
    REPORT_TEST_MAXERR, REPORT_TEST_WIDTH,  /* max error, mean 95% interval width */
    REPORT_FPN_BEST_VAL,        /* lowest FPN validation loss */
    REPORT_TRAIN_S,
    REPORT_NCOLS
};

/* Column names of the numbers, as in the table and the CSV header. */
extern const char *const report_cols[REPORT_NCOLS];

typedef struct report_row {
    double v[REPORT_NCOLS];
} report_row;

void report_init(cc_report *r);
void report_free(cc_report *r);

/* Add runs from one argument: a run file; a run directory (DIR/run.h5); or a
 * sweep directory (every DIR/<sub>/run.h5, in natural name order).  Files
 * that are not cellcount run files are errors naming the file. */
int report_add(cc_report *r, const char *arg, cc_status *st);

/* After the last report_add: make names unique (a clash gets the parent
 * directory in front) and find the configuration keys that differ (missing
 * in some run counts as differing; numbers compare by value; run.name and
 * run.out_dir, which name the run anyway, are left out).  Needs >= 1 run. */
int report_finish(cc_report *r, cc_status *st);

/* The headline numbers of rl. */
void report_summarize(runlog *rl, report_row *row);

/* The comparison table: one line per run, fixed-width columns, "-" for
 * missing numbers, then the differing keys' values. */
void report_print(const cc_report *r, FILE *f);

/* The same table as CSV (header line, empty cells for missing numbers),
 * written atomically to path. */
int report_write_csv(const cc_report *r, const char *path, cc_status *st);

/* PNG plots into dir (created if needed): loss_fpn.png, loss_counter.png
 * (train dashed, val solid, per run), val_mae.png (counter val MAE per
 * epoch) and calibration.png (observed vs nominal coverage, with the
 * diagonal), each only when some run has its data; and per run with
 * evaluate's tables (test split, else val): pred_vs_true.png (table
 * predictions/<split>: count with its 95% interval against the truth,
 * coloured by focus level) and error_by_group.png (eval/<split> rows
 * "focus *" and "count *": MAE beside the baseline's), named
 * <figure>_<run>.png when there are several runs.  gnuplot: the program
 * to run (NULL = "gnuplot" from PATH), fed through a pipe; pngcairo
 * terminal when present, png otherwise.  Writes the names of the files made
 * to log (may be NULL).  Errors: gnuplot missing (the message names the
 * Debian package gnuplot-nox), gnuplot failing (its first error line), a
 * plot not written, no data at all. */
int report_plot(const cc_report *r, const char *dir, const char *gnuplot, FILE *log,
                cc_status *st);

/* After the table: the sweep points that have no run yet (listed in the
 * sweep's points.txt, see `cellcount sweep --emit-slurm`), whose run file
 * cannot be read, or that have not finished (no DONE marker). */
void report_print_missing(const cc_report *r, FILE *f);

#endif
