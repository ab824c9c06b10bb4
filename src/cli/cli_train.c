/* cli_train.c - `cellcount train-fpn`, `train-counter` and `evaluate`. */
#include "src/cli/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/infer/count_files.h"
#include "src/data/dataset.h"
#include "src/infer/evaluate.h"
#include "src/train/train.h"

/* Options every run command shares; fills cfg.  Returns 0, 1 (runtime error)
 * or 2 (usage), or -1 after --help. */
typedef struct run_opts {
    cc_config cfg;
    int resume;
    const char *fpn, *counter;
    int split;                  /* DATASET_*, or -1 for --split all (evaluate --on) */
    int split_given;            /* --split was on the command line */
    const char *on;             /* evaluate --on FILE.h5 */
    int stain;                  /* evaluate --stain (0: any) */
    const char *file;           /* the experiment file, if any */
    const char *tag;            /* evaluate --tag (NULL: none) */
    int calibrate_on;           /* evaluate --calibrate-on was given */
    char *user_sets[256];       /* the --set arguments, in order (argv's strings) */
    int n_user_sets;
} run_opts;

static void run_usage(FILE *f, const char *cmd, const char *extra)
{
    fprintf(f,
            "usage: cellcount %s [EXPERIMENT.ini] [options]\n\n"
            "  -c, --config FILE     experiment file (INI; see experiments/paper.ini)\n"
            "  -s, --set SEC.KEY=V   override one key (repeatable), e.g. --set fpn.width=32\n"
            "  -d, --data FILE       data set (same as --set data.file=FILE)\n"
            "  -o, --out DIR         run directory (same as --set run.out_dir=DIR)\n"
            "  -t, --threads N       OpenMP threads (same as --set run.threads=N)\n"
            "      --resume          continue from the run directory's last checkpoint\n"
            "                        (an error when there is none)\n"
            "%s"
            "  -h, --help            this text\n\n"
            "Keys beyond the paper (experiments/paper.ini documents them): augmentation\n"
            "data.aug_scale, aug_blur, aug_gamma, aug_gain, aug_noise (0 = off, the\n"
            "default); counter.ema (0.99) with counter.precise_bn (50), counter.freeze_bn\n"
            "(1) with counter.freeze_warmup (1 epoch); lr_schedule = cosine with lr_min.\n\n"
            "Keys with a fixed set of values:\n",
            cmd, extra);
    config_enums_print(f);
}

/* The options only some commands take (the others refuse them: a
 * `train-fpn --on FILE` that trains without a word about --on is worse than
 * an error). */
enum {
    RUN_OPT_FPN = 1,     /* --fpn */
    RUN_OPT_COUNTER = 2, /* --counter */
    RUN_OPT_EVAL = 4     /* --split, --on, --stain, --tag, --calibrate-on */
};

/* Parses a run command's line into *o; `allowed` is a mask of RUN_OPT_*,
 * `extra` the usage lines of those options. */
static int run_parse(int argc, char **argv, run_opts *o, const char *extra, unsigned allowed)
{
    static const struct option longs[] = {
        {"config", required_argument, 0, 'c'}, {"set", required_argument, 0, 's'},
        {"data", required_argument, 0, 'd'},   {"out", required_argument, 0, 'o'},
        {"threads", required_argument, 0, 't'}, {"resume", no_argument, 0, 'r'},
        {"fpn", required_argument, 0, 'F'},    {"counter", required_argument, 0, 'C'},
        {"split", required_argument, 0, 'S'},  {"help", no_argument, 0, 'h'},
        {"on", required_argument, 0, 'O'},     {"stain", required_argument, 0, 'W'},
        {"tag", required_argument, 0, 'T'},    {"calibrate-on", required_argument, 0, 'K'},
        {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    config_defaults(&o->cfg);
    o->split = DATASET_TEST;
    /* Experiment file first (positional or -c), overrides after, whatever
     * their order on the command line. */
    const char *file = NULL;
    /* sets[i] is optarg or, for owned[i] != 0, a string of ours (freed at
     * the end: the sanitizer build's leak check runs every command). */
    char *sets[256];
    int nsets = 0, rc = 0;
    char owned[256] = {0};
    optind = 1;
    int c, li = -1;
    cc_status st0;
    while ((c = getopt_long(argc, argv, "c:s:d:o:t:h", longs, &li)) != -1) {
        char buf[CFG_STR + 32];
        const unsigned need = c == 'F'   ? RUN_OPT_FPN
                              : c == 'C' ? RUN_OPT_COUNTER
                              : (c == 'S' || c == 'O' || c == 'W' || c == 'T' || c == 'K')
                                  ? RUN_OPT_EVAL
                                                                                : 0;
        if (need && !(need & allowed)) {
            fprintf(stderr, "cellcount %s: --%s is not an option of this command (see --help)\n",
                    argv[0], li >= 0 ? longs[li].name : "?");
            rc = 2;
            goto done;
        }
        li = -1;
        switch (c) {
        case 'c': file = optarg; break;
        case 's':
        case 'd':
        case 'o':
        case 't':
        case 'K':
            if (nsets == 256) {
                fprintf(stderr, "cellcount %s: too many overrides\n", argv[0]);
                rc = 2;
                goto done;
            }
            if (c == 's') {
                o->user_sets[o->n_user_sets++] = optarg;
                sets[nsets++] = optarg;
                break;
            }
            if (c == 'K') o->calibrate_on = 1;
            snprintf(buf, sizeof buf, "%s=%s",
                     c == 'd'   ? "data.file"
                     : c == 'o' ? "run.out_dir"
                     : c == 'K' ? "counter.calibrate_on"
                                : "run.threads",
                     optarg);
            owned[nsets] = 1;
            if (!(sets[nsets++] = strdup(buf))) {
                fprintf(stderr, "cellcount %s: out of memory\n", argv[0]);
                rc = 2;
                goto done;
            }
            break;
        case 'r': o->resume = 1; break;
        case 'O': o->on = optarg; break;
        case 'T':
            if (evaluate_tag_check(optarg, &st0)) {
                fprintf(stderr, "cellcount %s: %s\n", argv[0], st0.msg);
                rc = 2;
                goto done;
            }
            o->tag = optarg;
            break;
        case 'W':
            if (strcmp(optarg, "1") && strcmp(optarg, "2")) {
                fprintf(stderr, "cellcount %s: --stain must be 1 or 2\n", argv[0]);
                rc = 2;
                goto done;
            }
            o->stain = atoi(optarg);
            break;
        case 'F': o->fpn = optarg; break;
        case 'C': o->counter = optarg; break;
        case 'S':
            o->split_given = 1;
            if (!strcmp(optarg, "train")) o->split = DATASET_TRAIN;
            else if (!strcmp(optarg, "val")) o->split = DATASET_VAL;
            else if (!strcmp(optarg, "test")) o->split = DATASET_TEST;
            else if (!strcmp(optarg, "all")) o->split = -1;
            else {
                fprintf(stderr, "cellcount %s: --split must be train, val, test or all\n",
                        argv[0]);
                rc = 2;
                goto done;
            }
            break;
        case 'h': run_usage(stdout, argv[0], extra); rc = -1; goto done;
        default: run_usage(stderr, argv[0], extra); rc = 2; goto done;
        }
    }
    if (optind < argc) {
        if (file || optind + 1 < argc) {
            fprintf(stderr, "cellcount %s: more than one experiment file given\n", argv[0]);
            rc = 2;
            goto done;
        }
        file = argv[optind];
    }
    o->file = file;
    cc_status st;
    status_clear(&st);
    int failed = file && config_load(&o->cfg, file, &st);
    for (int i = 0; !failed && i < nsets; i++) failed = config_set(&o->cfg, sets[i], &st) != 0;
    if (failed || config_validate(&o->cfg, &st)) {
        fprintf(stderr, "cellcount %s: %s\n", argv[0], st.msg);
        rc = 2;
    }
done:
    for (int i = 0; i < nsets; i++)
        if (owned[i]) free(sets[i]);
    return rc;
}

static int finish(const char *cmd, int rc, const cc_status *st)
{
    if (rc) fprintf(stderr, "cellcount %s: %s\n", cmd, st->msg);
    return rc ? 1 : 0;
}

int cli_train_fpn(int argc, char **argv)
{
    run_opts o;
    int r = run_parse(argc, argv, &o, "", 0);
    if (r) return r < 0 ? 0 : r;
    cc_status st;
    status_clear(&st);
    return finish(argv[0], train_fpn(&o.cfg, o.resume, &st), &st);
}

int cli_train_counter(int argc, char **argv)
{
    run_opts o;
    int r = run_parse(argc, argv, &o,
                      "      --fpn FILE        FPN checkpoint (default: RUN_DIR/fpn_best.h5)\n",
                      RUN_OPT_FPN);
    if (r) return r < 0 ? 0 : r;
    cc_status st;
    status_clear(&st);
    return finish(argv[0], train_counter(&o.cfg, o.fpn, o.resume, &st), &st);
}

int cli_evaluate(int argc, char **argv)
{
    run_opts o;
    int r = run_parse(argc, argv, &o,
                      "      --split NAME      train, val or test (default test); with --on\n"
                      "                        also all (the default there)\n"
                      "      --fpn FILE        FPN checkpoint (default: RUN_DIR/fpn_best.h5)\n"
                      "      --counter FILE    counter checkpoint (default: RUN_DIR/counter_best.h5)\n"
                      "                        (intervals: with counter.calibrate = val, the\n"
                      "                        default, sigma = sqrt((a sigma)^2 + (b count)^2),\n"
                      "                        a and b fitted on the validation split (b = 0\n"
                      "                        unless counter.calibrate_count = true); the table\n"
                      "                        shows calibrated and raw coverage and width;\n"
                      "                        run.h5 keeps a and b for count and saliency)\n"
                      "      --calibrate-on FILE.h5  fit that calibration on every image of\n"
                      "                        FILE.h5 instead of the validation split (same\n"
                      "                        image size and stain, other scenes: e.g.\n"
                      "                        `simulate --seed 12 --sites 10 --split 0/0/1`);\n"
                      "                        = --set counter.calibrate_on=FILE.h5.  The\n"
                      "                        validation split holds a tenth of the scenes,\n"
                      "                        and its 95% quantile moves with them\n"
                      "                        (docs/RESULTS.md); run.h5 attribute\n"
                      "                        counter.sigma_fit_on says which was used\n"
                      "      --on FILE.h5      evaluate the run (-o RUN_DIR, its config.ini) on\n"
                      "                        another data set, e.g. real images for a model\n"
                      "                        trained on simulated ones: images area-resized\n"
                      "                        to the run's input size, the run's calibration\n"
                      "                        (evaluate the run itself first), tables\n"
                      "                        eval_on/NAME and predictions_on/NAME in run.h5\n"
                      "      --stain 1|2       with --on: only images of this stain\n"
                      "      --tag NAME        keep this evaluation beside the others: tables\n"
                      "                        eval/SPLIT.NAME, calibration/SPLIT.NAME,\n"
                      "                        predictions/SPLIT.NAME (with --on eval_on/\n"
                      "                        LABEL.NAME, predictions_on/LABEL.NAME); its\n"
                      "                        calibration is kept as counter.sigma_scale.NAME\n"
                      "                        and counter.sigma_per_count.NAME (used\n"
                      "                        by --on with the same tag), the run's own for\n"
                      "                        count/saliency is left as it is (NAME: letters,\n"
                      "                        digits, - and _)\n"
                      "  The last row, count-balanced, weighs every count equally (each count's\n"
                      "  own MAE, bias, coverage, averaged): a split drawn at random can hold few\n"
                      "  scenes of the counts where the error is largest (simulate/import\n"
                      "  --split-by count draws one that cannot).\n"
                      "  A density counter (counter.arch = vgg11_density) scored on a set that\n"
                      "  knows its cells' centres (simulated sets do) also gets where its map puts\n"
                      "  the count: GAME(L) = the sum over a 2^L x 2^L grid's cells of |the map's\n"
                      "  mass - the cells in it|, L = 0..3 (tables game/SPLIT and\n"
                      "  game_on/NAME).\n",
                      RUN_OPT_FPN | RUN_OPT_COUNTER | RUN_OPT_EVAL);
    if (r) return r < 0 ? 0 : r;
    cc_status st;
    status_clear(&st);
    if (!o.on) {
        if (o.stain || o.split < 0) {
            fprintf(stderr, "cellcount %s: --stain and --split all need --on FILE.h5\n", argv[0]);
            return 2;
        }
        return finish(argv[0],
                      evaluate_run(&o.cfg, o.split, o.fpn, o.counter, o.tag, stdout, &st), &st);
    }
    if (o.calibrate_on) {
        fprintf(stderr, "cellcount %s: --calibrate-on calibrates the run itself (evaluate it "
                        "without --on); --on applies the run's calibration\n", argv[0]);
        return 2;
    }
    /* The run's own resolved configuration, so the models match the
     * checkpoints whatever the command line's defaults (as `count` does),
     * then the experiment file and the --set overrides (e.g. counter.tta). */
    const int split = o.split_given ? o.split : -1;  /* --on scores every split by default */
    const int threads = o.cfg.threads;
    char run_dir[CFG_STR];
    snprintf(run_dir, sizeof run_dir, "%s", o.cfg.out_dir);  /* count_config_load resets cfg */
    if (count_config_load(&o.cfg, run_dir, o.file, o.user_sets, o.n_user_sets, &st)) {
        fprintf(stderr, "cellcount %s: %s\n", argv[0], st.msg);
        return 2;
    }
    if (threads) o.cfg.threads = threads;
    return finish(argv[0],
                  evaluate_on_run(&o.cfg, o.on, split, o.stain, o.fpn, o.counter, o.tag, stdout,
                                  &st),
                  &st);
}
