/* cli_sweep.c - `cellcount sweep`: run a grid of configuration overrides,
 * one run directory per point (src/sweep/sweep.h). */
#include "src/cli/cli.h"

#include <getopt.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "src/sweep/sweep.h"
#include "src/sweep/sweep_emit.h"

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
            "      --point I           run point I only (0-based, in --dry-run's order),\n"
            "                          skipped when finished, else resumed: one array task\n"
            "      --emit-commands     print one `cellcount sweep ... --point I` command per\n"
            "                          point (for GNU parallel, xargs, any scheduler)\n"
            "      --emit-slurm FILE   write a Slurm job-array script FILE (one task per\n"
            "                          point, --cpus-per-task = --threads, requeued with a\n"
            "                          resume when the time limit nears) and FILE_report.sh\n"
            "                          (`cellcount report`, run after the array); both also\n"
            "                          write OUT/points.txt so report lists missing points\n"
            "      --partition P       Slurm partition (default: the cluster's)\n"
            "      --time T            Slurm time limit per point, e.g. 12:00:00\n"
            "      --max-parallel K    at most K array tasks at a time\n"
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
        {"point", required_argument, 0, 'P'}, {"emit-commands", no_argument, 0, 'C'},
        {"emit-slurm", required_argument, 0, 'E'}, {"partition", required_argument, 0, 'Q'},
        {"time", required_argument, 0, 'T'},  {"max-parallel", required_argument, 0, 'K'},
        {0, 0, 0, 0}};
    /* The arguments that define the sweep, repeated in emitted commands. */
    char *spec_args[2 * (SWEEP_MAX_AXES + SWEEP_MAX_SETS) + 8];
    int nspec = 0, point = -1, emit_cmds = 0, max_par = 0, threads_given = 0;
    const char *emit_slurm = NULL, *partition = NULL, *time_limit = NULL;
    const char *grids[SWEEP_MAX_AXES], *sets[SWEEP_MAX_SETS], *out = NULL, *stage_list = NULL;
    int ngrids = 0, nsets = 0, jobs = 1, threads = cores(), dry = 0, ablation = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "g:s:o:j:t:nah", longs, NULL)) != -1) {
        switch (c) {
        case 'P': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (end == optarg || *end || v < 0 || v >= SWEEP_MAX_POINTS) {
                fprintf(stderr, "cellcount sweep: --point must be an integer in [0, %d)\n",
                        SWEEP_MAX_POINTS);
                return 2;
            }
            point = (int)v;
            break;
        }
        case 'C': emit_cmds = 1; break;
        case 'E': emit_slurm = optarg; break;
        case 'Q': partition = optarg; break;
        case 'T': time_limit = optarg; break;
        case 'K':
            if (parse_pos(optarg, "--max-parallel", &max_par)) return 2;
            break;
        case 'g':
            if (ngrids == SWEEP_MAX_AXES) {
                fprintf(stderr, "cellcount sweep: more than %d --grid keys\n", SWEEP_MAX_AXES);
                return 2;
            }
            grids[ngrids++] = optarg;
            spec_args[nspec++] = "--grid";
            spec_args[nspec++] = optarg;
            break;
        case 's':
            if (nsets == SWEEP_MAX_SETS) {
                fprintf(stderr, "cellcount sweep: more than %d --set overrides\n", SWEEP_MAX_SETS);
                return 2;
            }
            sets[nsets++] = optarg;
            spec_args[nspec++] = "--set";
            spec_args[nspec++] = optarg;
            break;
        case 'o':
            out = optarg;
            spec_args[nspec++] = "--out";
            spec_args[nspec++] = optarg;
            break;
        case 'S':
            stage_list = optarg;
            spec_args[nspec++] = "--stages";
            spec_args[nspec++] = optarg;
            break;
        case 'j':
            if (parse_pos(optarg, "--jobs", &jobs)) return 2;
            break;
        case 't':
            if (parse_pos(optarg, "--threads", &threads)) return 2;
            threads_given = 1;
            break;
        case 'n': dry = 1; break;
        case 'a':
            ablation = 1;
            spec_args[nspec++] = "--ablation";
            break;
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
        spec_args[nspec++] = argv[optind];
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
    if (point >= n) {
        fprintf(stderr, "cellcount sweep: --point %d: the sweep has %d points (0-%d)\n", point, n,
                n - 1);
        goto out;
    }
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
    if (emit_cmds || emit_slurm) {
        char cwd[PATH_MAX], rep_path[PATH_MAX + 16];
        if (!getcwd(cwd, sizeof cwd)) {
            fprintf(stderr, "cellcount sweep: cannot get the working directory\n");
            rc = 1;
            goto out;
        }
        /* Under Slurm a task gets --cpus-per-task cores: --threads (default
         * 1 per point there, not this machine's core count). */
        sweep_emit e = {exe, spec_args, nspec, cwd, threads_given ? threads : 1, partition,
                        time_limit, max_par, 300};
        rc = 1;
        if (sweep_write_points(&spec, points, n, &st)) goto fail;
        if (emit_cmds && sweep_emit_commands(&spec, n, &e, stdout, &st)) goto fail;
        if (emit_slurm) {
            if (sweep_emit_slurm(&spec, n, &e, emit_slurm, rep_path, sizeof rep_path, &st))
                goto fail;
            fprintf(stderr, "wrote %s (%d array tasks) and %s; submit with\n"
                            "  jid=$(sbatch --parsable %s) && sbatch --dependency=afterany:$jid %s\n",
                    emit_slurm, n, rep_path, emit_slurm, rep_path);
        }
        rc = 0;
        goto out;
    }
    /* --point I: that point alone (an array task); the resume logic of
     * sweep_run skips it when finished. */
    const sweep_point *run_points = point >= 0 ? points + point : points;
    const int run_n = point >= 0 ? 1 : n;
    sweep_opts o = {"/proc/self/exe", exe, jobs, threads, dry, dry ? stdout : stderr};
    int failed = sweep_run(&spec, run_points, run_n, &o, res, &st);
    if (failed < 0) {
        fprintf(stderr, "cellcount sweep: %s\n", st.msg);
        rc = 1;
        goto out;
    }
    if (!dry) sweep_print_summary(&spec, run_points, run_n, res, stdout);
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
