/* cli_sweep.c - `cellcount sweep`: run a grid of configuration overrides,
 * one run directory per point (src/sweep.h). */
#include "src/cli.h"

#include <getopt.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "src/sweep.h"

static int cores(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: cellcount sweep [SWEEP.ini | BASE.ini] [--grid SEC.KEY=A,B,...]... [options]\n\n"
            "Train and evaluate one run per point of a grid of configuration overrides.  Several\n"
            "keys give the Cartesian product (the first key varies slowest).  Each point is a run\n"
            "directory OUT/<overrides>, e.g. OUT/fpn.width=32,fpn.loss=nll (characters other than\n"
            "A-Z a-z 0-9 . _ = , + - become _), with its own config.ini, run.h5 and log.txt.\n"
            "Stages run as child processes: cellcount train-fpn, train-counter, evaluate.\n"
            "A point whose stages all succeeded gets a DONE marker and is skipped when the sweep\n"
            "is run again; unfinished points are resumed (--resume), so an interrupted sweep\n"
            "continues where it stopped.  A failing point is reported and the others go on.\n\n"
            "  SWEEP.ini               a sweep file, a [sweep] section with:\n"
            "                            base = EXPERIMENT.ini   (relative to the sweep file)\n"
            "                            out_dir = DIR\n"
            "                            stages = fpn,counter,evaluate\n"
            "                            grid.SEC.KEY = A,B,C    (one line per key)\n"
            "                            set.SEC.KEY = V         (same value for every point)\n"
            "                            mode = grid | ablation\n"
            "  BASE.ini                or an experiment file all points start from\n"
            "  -g, --grid SEC.KEY=A,B  values of one key (repeatable; replaces the sweep\n"
            "                          file's values for that key); SEC.K1+SEC.K2=A,B\n"
            "                          links keys: each value is set for all of them\n"
            "  -s, --set SEC.KEY=V     fixed override for every point (repeatable)\n"
            "  -a, --ablation          one factor at a time instead of the product: a point\n"
            "                          'base' with no key overridden, then one point per\n"
            "                          value of each key alone (a point equal to an earlier\n"
            "                          one, e.g. the base's own value, is not run twice)\n"
            "  -o, --out DIR           sweep directory (overrides out_dir)\n"
            "      --stages LIST       stages per point: any of fpn,counter,evaluate\n"
            "                          (default: the sweep file's, else all three)\n"
            "  -j, --jobs N            points run at a time (default 1)\n"
            "  -t, --threads T         thread budget (default: the cores available, here %d);\n"
            "                          each run gets run.threads = T / N (at least 1)\n"
            "  -n, --dry-run           print the points and their commands, run nothing\n"
            "  -h, --help              this text\n\n"
            "run.out_dir, run.name and run.threads are set by the sweep for each point.\n"
            "Exit status: 0 all points done or skipped, 1 a point failed or runtime error,\n"
            "2 usage.  Compare the points with `cellcount report OUT`.\n",
            cores());
}

static int parse_pos(const char *s, const char *opt, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < 1 || v > 4096) {
        fprintf(stderr, "cellcount sweep: %s must be an integer in [1, 4096]\n", opt);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int cli_sweep(int argc, char **argv)
{
    static const struct option longs[] = {
        {"grid", required_argument, 0, 'g'},  {"set", required_argument, 0, 's'},
        {"out", required_argument, 0, 'o'},   {"stages", required_argument, 0, 'S'},
        {"jobs", required_argument, 0, 'j'},  {"threads", required_argument, 0, 't'},
        {"dry-run", no_argument, 0, 'n'},     {"help", no_argument, 0, 'h'},
        {"ablation", no_argument, 0, 'a'},
        {0, 0, 0, 0}};
    const char *grids[SWEEP_MAX_AXES], *sets[SWEEP_MAX_SETS], *out = NULL, *stage_list = NULL;
    int ngrids = 0, nsets = 0, jobs = 1, threads = cores(), dry = 0, ablation = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "g:s:o:j:t:nah", longs, NULL)) != -1) {
        switch (c) {
        case 'g':
            if (ngrids == SWEEP_MAX_AXES) {
                fprintf(stderr, "cellcount sweep: more than %d --grid keys\n", SWEEP_MAX_AXES);
                return 2;
            }
            grids[ngrids++] = optarg;
            break;
        case 's':
            if (nsets == SWEEP_MAX_SETS) {
                fprintf(stderr, "cellcount sweep: more than %d --set overrides\n", SWEEP_MAX_SETS);
                return 2;
            }
            sets[nsets++] = optarg;
            break;
        case 'o': out = optarg; break;
        case 'S': stage_list = optarg; break;
        case 'j':
            if (parse_pos(optarg, "--jobs", &jobs)) return 2;
            break;
        case 't':
            if (parse_pos(optarg, "--threads", &threads)) return 2;
            break;
        case 'n': dry = 1; break;
        case 'a': ablation = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind + 1 < argc) {
        fprintf(stderr, "cellcount sweep: more than one sweep/experiment file given\n");
        return 2;
    }
    sweep_spec spec;
    sweep_spec_init(&spec);
    cc_status st;
    status_clear(&st);
    int rc = 2;
    sweep_point *points = NULL;
    sweep_result *res = NULL;
    int n = 0;
    if (optind < argc) {
        const char *file = argv[optind];
        if (access(file, R_OK)) {
            fprintf(stderr, "cellcount sweep: %s: cannot read the file\n", file);
            goto out;
        }
        if (sweep_file_is_sweep(file)) {
            if (sweep_load(&spec, file, &st)) goto fail;
        } else {
            snprintf(spec.base, sizeof spec.base, "%s", file);
        }
    }
    for (int i = 0; i < ngrids; i++)
        if (sweep_add_grid(&spec, grids[i], "--grid", &st)) goto fail;
    for (int i = 0; i < nsets; i++)
        if (sweep_add_set(&spec, sets[i], "--set", &st)) goto fail;
    if (ablation) spec.ablation = 1;
    if (out) snprintf(spec.out_dir, sizeof spec.out_dir, "%s", out);
    if (stage_list && sweep_parse_stages(stage_list, &spec.stages, &st)) goto fail;
    if (sweep_expand(&spec, &points, &n, &st)) goto fail;
    if (!(res = calloc((size_t)n, sizeof *res))) {
        fprintf(stderr, "cellcount sweep: out of memory\n");
        rc = 1;
        goto out;
    }
    /* The stages run this very executable (even if it is rebuilt or removed
     * meanwhile); logs name it by its path. */
    char exe[PATH_MAX];
    ssize_t l = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (l <= 0) snprintf(exe, sizeof exe, "cellcount");
    else exe[l] = '\0';
    sweep_opts o = {"/proc/self/exe", exe, jobs, threads, dry, dry ? stdout : stderr};
    int failed = sweep_run(&spec, points, n, &o, res, &st);
    if (failed < 0) {
        fprintf(stderr, "cellcount sweep: %s\n", st.msg);
        rc = 1;
        goto out;
    }
    if (!dry) sweep_print_summary(&spec, points, n, res, stdout);
    rc = failed ? 1 : 0;
    goto out;
fail:
    fprintf(stderr, "cellcount sweep: %s\n", st.msg);
out:
    free(points);
    free(res);
    sweep_spec_free(&spec);
    return rc;
}
