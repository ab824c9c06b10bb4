/* cli_export.c - `cellcount export`: run files to TensorBoard and CSV
 * (src/sweep/export.h). */
#include "src/cli/cli.h"

#include <stdio.h>

#include "src/cli/cli_runs.h"
#include "src/sweep/export.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: cellcount export RUN... [--tensorboard DIR] [--csv FILE]\n\n"
            "Export runs for the tools researchers already use.  Works on runs that are\n"
            "still training (each run file is read as one consistent snapshot).\n\n"
            "  RUN                 a run file (run.h5), a run directory (DIR/run.h5), or a\n"
            "                      sweep directory (every DIR/*/run.h5)\n"
            "  --tensorboard DIR   one TensorBoard event file per run, in DIR/<run name>/\n"
            "                      (events.out.tfevents.<start time>.<host>; exporting again\n"
            "                      replaces it): every per-epoch number under the tag\n"
            "                      <stage>/<split>/<metric> (e.g. counter/val/mae,\n"
            "                      fpn/train/loss, counter/train/lr), step = epoch (1-based),\n"
            "                      evaluation tables as eval/<split>/<group>/<metric>, and\n"
            "                      the configuration as the text 'config'.\n"
            "                      View: tensorboard --logdir DIR\n"
            "  --csv FILE          one long table for pandas.read_csv(FILE):\n"
            "                      run,<keys that differ between the runs>,stage,split,group,\n"
            "                      epoch,metric,value (stage fpn|counter|evaluate)\n"
            "  -h, --help          this text\n");
}

typedef struct export_opts {
    const char *tb, *csv;
} export_opts;

/* The TensorBoard event files and the CSV table asked for. */
static int export_work(cc_report *r, void *user, cc_status *st)
{
    const export_opts *o = user;
    if (report_finish(r, st) || (o->tb && export_tensorboard(r, o->tb, stderr, st)))
        return -1;
    if (o->csv) {
        if (export_csv(r, o->csv, st)) return -1;
        fprintf(stderr, "wrote %s\n", o->csv);
    }
    return 0;
}

int cli_export(int argc, char **argv)
{
    export_opts o;
    const cli_str_opt opts[] = {{"tensorboard", &o.tb}, {"csv", &o.csv}};
    const cli_runs_cmd c = {"export", usage, opts, 2, "give --tensorboard DIR and/or --csv FILE",
                            export_work};
    return cli_runs_main(&c, argc, argv, &o);
}
