/* cli_report.c - `cellcount report`: compare runs (src/sweep/report.h). */
#include "src/cli/cli.h"

#include <stdio.h>

#include "src/cli/cli_opts.h"
#include "src/sweep/report.h"

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
    const char *csv, *plot;
    const cli_str_opt opts[] = {{"csv", &csv}, {"plot", &plot}};
    int first, rc = cli_parse_str_opts(argc, argv, opts, 2, "runs", usage, &first);
    if (rc >= 0) return rc;
    cc_report r;
    report_init(&r);
    cc_status st;
    status_clear(&st);
    rc = 1;
    for (int i = first; i < argc; i++)
        if (report_add(&r, argv[i], &st)) goto fail;
    if (r.nruns == 0 && r.nmissing) {  /* a sweep none of whose points has a run yet */
        report_print_missing(&r, stdout);
        rc = 0;
        goto out;
    }
    if (report_finish(&r, &st)) goto fail;
    report_print(&r, stdout);
    report_print_missing(&r, stdout);
    fflush(stdout);
    if (csv) {
        if (report_write_csv(&r, csv, &st)) goto fail;
        fprintf(stderr, "wrote %s\n", csv);
    }
    if (plot && report_plot(&r, plot, NULL, stderr, &st)) goto fail;
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "cellcount report: %s\n", st.msg);
out:
    report_free(&r);
    return rc;
}
