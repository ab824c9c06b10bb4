/* cli_quickstart.c - `cellcount quickstart`: the whole method end to end on
 * a small simulated set, in minutes on a laptop-class CPU.
 *
 * Steps: simulate (BBBC005-like, half resolution, all 24 counts, four
 * focus levels) a training set and a calibration set of 240 other scenes,
 * train a small FPN, train a small VGG-11 counter on its masks, evaluate on
 * the held-out scenes next to the intensity baseline, with the intervals
 * calibrated on the calibration set.
 * The configuration is experiments/quickstart.ini's, built in so that the
 * command works from any directory; every key can be overridden with --set.
 */
#include "src/cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "src/data/dataset.h"
#include "src/sim/sim_output.h"
#include "src/infer/evaluate.h"
#include "src/train/train.h"

static const int quickstart_counts[] = {1,  5,  10, 14, 18, 23, 27, 31, 35, 40, 44, 48,
                                        53, 57, 61, 66, 70, 74, 78, 83, 87, 91, 96, 100};
/* BBBC005's range of focus levels (F1 to F48; the real subset has F1 and
 * F48): a model trained on F1-F14 only met F48 images it had never seen. */
static const int quickstart_focus[] = {1, 16, 32, 48};
enum { QS_NFOCUS = sizeof quickstart_focus / sizeof quickstart_focus[0] };
/* The calibration set's sites, whatever --sites: 24 x 10 = 240 scenes */
enum { QS_CAL_SITES = 10 };

static void usage(FILE *f)
{
    fprintf(f,
            "usage: cellcount quickstart [--out DIR] [--threads N] [--sites N] [--split-by count|scene]\n"
            "                            [--set SEC.KEY=V]...\n\n"
            "Simulate a small BBBC005-like set (24 counts x focus F1, F16, F32, F48 x N sites,\n"
            "simulated at 348x260, stored at 128x96), train an FPN and a VGG-11 counter on\n"
            "it, and evaluate on the held-out scenes.  The 95%% intervals are calibrated on\n"
            "240 other simulated scenes (DIR/cal.h5; --set counter.calibrate=val\n"
            "--set counter.calibrate_on= uses the validation split instead).  Prints where\n"
            "everything is.\n\n"
            "  -o, --out DIR        output directory (default: quickstart)\n"
            "  -t, --threads N      OpenMP threads (default: all cores)\n"
            "      --sites N        simulated sites per (count, focus) (default 10)\n"
            "      --stain 1|2      w2 = cell bodies (the paper's, default), w1 = nuclei\n"
            "      --split-by count|scene  train/validation/test split 80/10/10 within each\n"
            "                       count (default: every count in every split) or of all\n"
            "                       scenes at random (the earlier default)\n"
            "  -s, --set SEC.KEY=V  override a configuration key (see experiments/quickstart.ini)\n"
            "  -h, --help           this text\n");
}

/* The training set (seed 1, split 80/10/10 by `by`) or the calibration
 * set (seed 11: other scenes of the same recipe, all in the test split,
 * where `by` changes nothing and scene keeps the attribute simulate's;
 * evaluate fits the intervals on all of its images).  `cellcount simulate
 * --stain S --focus 1,16,32,48 --sites N --image-size 348x260 --size 128x96
 * --seed SEED [--split-by count | --split 0/0/1]` writes the same images.
 * Split by count, the 24 test scenes of the default 240 hold one scene of
 * each count; drawn at random they held 0 to 3 (docs/RESULTS.md, "The
 * quickstart's test split holds every count"). */
static int simulate_set(const char *path, int sites, int stain, int threads, int calibration,
                        dataset_split_by by, cc_status *st)
{
    sim_params p;
    sim_params_default(&p);
    p.width = 348;
    p.height = 260;
    p.seed = calibration ? 11 : 1;
    sim_job job = {quickstart_counts, 24, quickstart_focus, QS_NFOCUS, sites, stain == 1 ? 1 : 2,
                   threads};  /* bit 0 w1, bit 1 w2 */
    if (sim_params_check(&p, st) || sim_job_check(&job, st)) return -1;
    sim_h5_out o;
    static const double frac_train[3] = {0.8, 0.1, 0.1}, frac_cal[3] = {0, 0, 1};
    if (sim_h5_begin(&o, path, 128, 96, &job, 1, calibration ? frac_cal : frac_train,
                     by, st))
        return -1;
    int rc = sim_run(&p, &job, sim_h5_sink, &o, stderr, st);
    if (sim_h5_end(&o, rc == 0, st)) rc = -1;
    return rc;
}

/* 1 when path exists and holds images of `stain` split by `by` (reuse
 * it), 0 when it does not exist (simulate it), -1 with a message when it
 * holds the other stain or another split: a set left by an earlier
 * quickstart would silently train, or calibrate, the wrong task, or score
 * other test scenes than the command line says.  by < 0: any split. */
static int reusable_set(const char *path, int stain, int by, cc_status *st)
{
    if (access(path, R_OK) != 0) return 0;
    cc_dataset *ds = dataset_open(path, st);
    if (!ds) return -1;
    const int found = ds->n > 0 ? ds->stain[0] : stain;
    const dataset_split_by found_by = ds->split_by;
    dataset_close(ds);
    if (found != stain)
        return status_set(st, "%s holds w%d images, not w%d: choose another --out (or remove it)",
                          path, found, stain);
    if (by >= 0 && (int)found_by != by)
        return status_set(st, "%s is split by %s, not by %s: choose another --out (or remove it, "
                          "or pass --split-by %s)", path, dataset_split_by_name(found_by),
                          dataset_split_by_name((dataset_split_by)by),
                          dataset_split_by_name(found_by));
    fprintf(stderr, "quickstart: reusing the simulated set %s\n", path);
    return 1;
}

int cli_quickstart(int argc, char **argv)
{
    static const struct option longs[] = {{"out", required_argument, 0, 'o'},
                                          {"threads", required_argument, 0, 't'},
                                          {"sites", required_argument, 0, 'S'},
                                          {"stain", required_argument, 0, 'W'},
                                          {"split-by", required_argument, 0, 'B'},
                                          {"set", required_argument, 0, 's'},
                                          {"help", no_argument, 0, 'h'},
                                          {0, 0, 0, 0}};
    const char *out = "quickstart";
    int threads = 0, sites = 10, stain = 2, c, nsets = 0;
    dataset_split_by split_by = DATASET_SPLIT_COUNT;
    char *sets[64];
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:t:s:h", longs, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'o': out = optarg; break;
        case 't':
        case 'S': {
            long v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > 4096) {
                fprintf(stderr, "cellcount quickstart: --%s must be a positive integer\n",
                        c == 't' ? "threads" : "sites");
                return 2;
            }
            if (c == 't') threads = (int)v;
            else sites = (int)v;
            break;
        }
        case 'W':
            if (strcmp(optarg, "1") && strcmp(optarg, "2")) {
                fprintf(stderr, "cellcount quickstart: --stain must be 1 or 2\n");
                return 2;
            }
            stain = optarg[0] - '0';
            break;
        case 'B':
            if (dataset_split_by_parse(optarg, &split_by)) {
                fprintf(stderr, "cellcount quickstart: --split-by must be count or scene\n");
                return 2;
            }
            break;
        case 's':
            if (nsets == 64) return 2;
            sets[nsets++] = optarg;
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    cc_config cfg;
    config_defaults(&cfg);
    cc_status st;
    status_clear(&st);
    char buf[CFG_STR + 32];
    if (config_quickstart(&cfg, &st)) goto fail;
    snprintf(buf, sizeof buf, "run.out_dir=%s/run", out);
    if (config_set(&cfg, buf, &st)) goto fail;
    snprintf(buf, sizeof buf, "data.file=%s/sim.h5", out);
    if (config_set(&cfg, buf, &st)) goto fail;
    snprintf(buf, sizeof buf, "run.threads=%d", threads);
    if (config_set(&cfg, buf, &st)) goto fail;
    char cal_path[CFG_STR];
    snprintf(cal_path, sizeof cal_path, "%s/cal.h5", out);
    snprintf(buf, sizeof buf, "counter.calibrate_on=%s", cal_path);
    if (config_set(&cfg, buf, &st)) goto fail;
    for (int i = 0; i < nsets; i++)
        if (config_set(&cfg, sets[i], &st)) goto fail;
    int own_cal = !strcmp(cfg.counter_calibrate_on, cal_path);
    /* raw intervals asked for: nothing to fit, so no calibration set (a
     * calibrate_on of the user's own stays, for config_validate to judge) */
    if (own_cal && cfg.counter_calibrate == CFG_CALIBRATE_NONE) {
        cfg.counter_calibrate_on[0] = 0;
        own_cal = 0;
    }
    if (config_validate(&cfg, &st)) goto fail;
    if (mkdir(out, 0777) && errno != EEXIST) {
        status_set(&st, "%s: cannot create directory (%s)", out, strerror(errno));
        goto fail;
    }
    int have = reusable_set(cfg.data_file, stain, (int)split_by, &st);
    if (have < 0) goto fail;
    if (!have) {
        fprintf(stderr, "quickstart: 1/4 simulating %d images into %s\n", 24 * QS_NFOCUS * sites,
                cfg.data_file);
        if (simulate_set(cfg.data_file, sites, stain, threads, 0, split_by, &st)) goto fail;
    }
    /* the validation split's 24 scenes gave intervals that held 0.75-0.87
     * of real images, 240 other scenes 0.93-0.95 (docs/RESULTS.md, "A
     * density counter transfers better") */
    if (own_cal && (have = reusable_set(cal_path, stain, -1, &st)) < 0) goto fail;
    if (own_cal && !have) {
        fprintf(stderr, "quickstart: 1/4 simulating %d images of other scenes into %s (to calibrate "
                "the intervals)\n", 24 * QS_NFOCUS * QS_CAL_SITES, cal_path);
        if (simulate_set(cal_path, QS_CAL_SITES, stain, threads, 1, DATASET_SPLIT_SCENE, &st))
            goto fail;
    }
    fprintf(stderr, "quickstart: 2/4 training the FPN\n");
    if (train_fpn(&cfg, TRAIN_RESUME_IF_ANY, &st)) goto fail;
    fprintf(stderr, "quickstart: 3/4 training the counter\n");
    if (train_counter(&cfg, NULL, TRAIN_RESUME_IF_ANY, &st)) goto fail;
    fprintf(stderr, "quickstart: 4/4 evaluating on the held-out scenes\n");
    if (evaluate_run(&cfg, 2, NULL, NULL, NULL, stdout, &st)) goto fail;
    printf("\nquickstart done.\n"
           "  data set:        %s\n"
           "%s%s%s"
           "  run directory:   %s (run.h5: metrics per epoch and the evaluation;\n"
           "                   fpn_best.h5, counter_best.h5: checkpoints; config.ini)\n"
           "  next:            cellcount count --run %s image.tif\n"
           "                   cellcount report %s\n",
           cfg.data_file, cfg.counter_calibrate_on[0] ? "  intervals fitted on: " : "",
           cfg.counter_calibrate_on, cfg.counter_calibrate_on[0] ? "\n" : "", cfg.out_dir,
           cfg.out_dir, cfg.out_dir);
    return 0;
fail:
    fprintf(stderr, "cellcount quickstart: %s\n", st.msg);
    return 1;
}
