/* cli_report.c - `cellcount report`: compare runs (src/sweep/report.h). */
#include "src/cli/cli.h"

#include <stdio.h>

#include "src/cli/cli_runs.h"

typedef struct report_opts {
    const char *csv, *plot;
} report_opts;

/* The table on stdout, then the CSV file and the plots asked for. */
static int report_work(cc_report *r, void *user, cc_status *st)
{
    const report_opts *o = user;
    if (r->nruns == 0 && r->nmissing) {  /* a sweep none of whose points has a run yet */
        report_print_missing(r, stdout);
        return 0;
    }
    if (report_finish(r, st)) return -1;
    report_print(r, stdout);
    report_print_missing(r, stdout);
    fflush(stdout);
    if (o->csv) {
        if (report_write_csv(r, o->csv, st)) return -1;
        fprintf(stderr, "wrote %s\n", o->csv);
    }
    return o->plot && report_plot(r, o->plot, NULL, stderr, st) ? -1 : 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: cellcount report RUN... [--csv FILE] [--plot DIR]\n\n"
            "Compare runs: one line per run with the counter's validation numbers at its best\n"
            "epoch (lowest MAE) and at its final epoch, the test evaluation (overall row, if\n"
            "`cellcount evaluate` ran), the best FPN validation loss, the total training time,\n"
            "and the configuration keys whose values differ between the runs.\n\n"
            "  RUN                   a run file (run.h5), a run directory (DIR/run.h5), or a\n"
            "                        sweep directory (every DIR/*/run.h5)\n"
            "  --csv FILE            also write the table as CSV (empty cells: no value)\n"
            "  --plot DIR            write PNG plots with gnuplot (Debian package gnuplot-nox):\n"
            "                        loss_fpn.png, loss_counter.png (train and val loss per\n"
            "                        epoch), val_mae.png (counter val MAE per epoch) and\n"
            "                        calibration.png (observed vs nominal coverage), all runs\n"
            "                        in each figure; per run with `evaluate` tables (test split,\n"
            "                        else val): pred_vs_true.png (every image's count and 95%%\n"
            "                        interval vs the truth, coloured by focus level) and\n"
            "                        error_by_group.png (MAE by focus level and by count range,\n"
            "                        network beside the mean-intensity baseline), named\n"
            "                        *_<run>.png for several runs; figures without data are\n"
            "                        left out\n"
            "  -h, --help            this text\n\n"
            "Columns: best_ep best_mae best_rmse best_r2 best_cov95 (counter val, best epoch),\n"
            "final_* (counter val, last epoch), test_* (eval/test overall), fpn_best_val,\n"
            "train_s (seconds in training and validation passes), then SECTION.KEY values.\n"
            "'-' marks a number the run does not have.  The numbers stay in the run files\n"
            "(HDF5) for h5py/pandas.\n");
}

int cli_report(int argc, char **argv)
{
    report_opts o;
    const cli_str_opt opts[] = {{"csv", &o.csv}, {"plot", &o.plot}};
    const cli_runs_cmd c = {"report", usage, opts, 2, NULL, report_work};
    return cli_runs_main(&c, argc, argv, &o);
}
