/* cli_export.c - `cellcount export`: run files to TensorBoard and CSV
 * (src/sweep/export.h). */
#include "src/cli/cli.h"

#include <stdio.h>

#include "src/cli/cli_opts.h"
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

int cli_export(int argc, char **argv)
{
    const char *tb, *csv;
    const cli_str_opt opts[] = {{"tensorboard", &tb}, {"csv", &csv}};
    int first, rc = cli_parse_str_opts(argc, argv, opts, 2, "runs", usage, &first);
    if (rc >= 0) return rc;
    if (!tb && !csv) {
        fprintf(stderr, "cellcount export: nothing to do: give --tensorboard DIR and/or --csv FILE\n");
        return 2;
    }
    cc_report r;
    report_init(&r);
    cc_status st;
    status_clear(&st);
    rc = 1;
    for (int i = first; i < argc; i++)
        if (report_add(&r, argv[i], &st)) goto fail;
    if (report_finish(&r, &st)) goto fail;
    if (tb && export_tensorboard(&r, tb, stderr, &st)) goto fail;
    if (csv) {
        if (export_csv(&r, csv, &st)) goto fail;
        fprintf(stderr, "wrote %s\n", csv);
    }
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "cellcount export: %s\n", st.msg);
out:
    report_free(&r);
    return rc;
}
