/* main.c - the `cellcount` executable: dispatch to a subcommand. */
#include "config.h"
#include "src/cli/cli.h"
#include "autodiff/ctx.h"
#include "src/run/dist.h"

#include <stdio.h>
#include <string.h>

static const cli_command commands[] = {
    /* name, function, summary: one line per subcommand */
    {"simulate", cli_simulate, "make a BBBC005-like data set (TIFF tree or HDF5)"},
    {"stats", cli_stats, "image statistics of a TIFF tree or data set (real vs simulated)"},
    {"import", cli_import, "convert a BBBC005-style TIFF tree into an HDF5 data set"},
    {"summary", cli_summary, "print a model's layers, shapes, parameter count and MACs"},
    {"train-fpn", cli_train_fpn, "train the segmentation FPN (experiment file + overrides)"},
    {"train-counter", cli_train_counter, "train the counter on the FPN's masks"},
    {"quickstart", cli_quickstart, "simulate, train and evaluate a small model end to end"},
    {"evaluate", cli_evaluate, "metrics per focus and count range vs the intensity baseline"},
    {"sweep", cli_sweep, "run a grid of configuration overrides, one run directory per point"},
    {"report", cli_report, "compare runs: metrics table, differing keys, CSV, gnuplot plots"},
    {"count", cli_count, "count cells in TIFF images with a trained run (TSV/CSV, masks)"},
    {"saliency", cli_saliency, "gradient maps of the predicted count w.r.t. mask and image"},
    {"export", cli_export, "runs to TensorBoard event files and a long CSV table (pandas)"},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
    fprintf(f, "usage: cellcount [--help] [--version] COMMAND [ARGS]\n\n"
               "Segment and count cells in microscopy images (FPN + VGG counter).\n\n"
               "Commands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-14s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nRun `cellcount COMMAND --help` for a command's options.\n");
}

/* The command; under MPI with several ranks only the trainers run (every
 * other command would have each rank write the same files). */
static int dispatch(int argc, char **argv)
{
    ctx_omp_env_default(argv);  /* OpenMP wait policy for busy machines (issue 13) */
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("cellcount %s (commit %s, MPI %s)\n", PACKAGE_VERSION, CC_GIT_COMMIT,
               dist_compiled() ? "yes: data-parallel train-fpn/train-counter under mpirun"
                               : "no: ./configure --with-mpi to enable");
        return 0;
    }
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (!strcmp(argv[1], commands[i].name)) {
            if (dist_world_size() > 1 && strncmp(argv[1], "train-", 6)) {
                if (dist_world_rank() == 0)
                    fprintf(stderr, "cellcount %s: runs as one process; under MPI only "
                                    "train-fpn and train-counter use several ranks (this job "
                                    "has %d)\n", argv[1], dist_world_size());
                return 2;
            }
            return commands[i].run(argc - 1, argv + 1);
        }
    fprintf(stderr, "cellcount: unknown command '%s' (see cellcount --help)\n", argv[1]);
    return 2;
}

int main(int argc, char **argv)
{
    cc_status st;
    status_clear(&st);
    if (dist_init(&argc, &argv, &st)) {
        fprintf(stderr, "cellcount: %s\n", st.msg);
        return 1;
    }
    int rc = dispatch(argc, argv);
    /* One rank's failure (its message is printed) ends the whole job: the
     * others may be waiting in a collective and would hang. */
    if (rc != 0 && rc != 2) dist_abort(rc);
    dist_finalize();
    return rc;
}
