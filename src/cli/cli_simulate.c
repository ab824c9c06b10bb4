/* cli_simulate.c - `cellcount simulate`: a BBBC005-like data set from the
 * SIMCEP-like simulator (src/sim/simulate.h), as a TIFF tree that `cellcount
 * import` reads like the real download, straight into an HDF5 data set
 * (same layout, scene ids and split as importing that tree), and/or a PNG
 * preview montage. */
#include "src/data/bbbc_name.h"
#include "src/cli/cli.h"
#include "src/cli/cli_opts.h"
#include "src/sim/sim_output.h"
#include "src/sim/simulate.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_LIST 1024

static void usage(FILE *f)
{
    fprintf(f,
"usage: cellcount simulate [--out-dir DIR] [--out FILE.h5] [--preview FILE.png]\n"
"                          [OPTIONS]\n\n"
"Simulate BBBC005-like fluorescence images of cells (a clean-room SIMCEP-like\n"
"simulator; see docs/DATA.md).  Every (count, site) is one scene; its focus\n"
"levels are Gaussian blurs (sigma = F/4) of the same sharp image, and its F1\n"
"ground-truth mask serves them all.  At least one output is required.\n\n"
"Outputs:\n"
"  --out-dir DIR        BBBC005 tree: DIR/images/SIMCEPImages_<well>_C<c>_F<f>_s<ss>_w<w>.TIF\n"
"                       and F1 masks (0/255) under the same names in\n"
"                       DIR/ground_truth; read it with `cellcount import`\n"
"  --force              replace existing DIR/images and DIR/ground_truth\n"
"  --out FILE.h5        HDF5 data set (the layout `cellcount import` writes)\n"
"  --size WxH           image size stored in FILE.h5 (default 256x192)\n"
"  --split-seed N       seed of the by-scene train/val/test split (default 1;\n"
"                       `cellcount import --seed N` gives the same split)\n"
"  --split A/B/C        train/val/test proportions, also A,B,C (default 80/10/10)\n"
"  --split-by count     stratify the split by cell count: every count gets its\n"
"                       share of each split (within one scene; default scene:\n"
"                       scenes at random, whose test split can miss counts)\n"
"  --preview FILE.png   montage of 4 counts (site 1): F1 image, the blurriest\n"
"                       listed focus level, and the mask, at half size\n\n"
"What to simulate:\n"
"  --counts LIST        cell counts, e.g. 1,5,10 (default: BBBC005's 24)\n"
"  --focus LIST         focus levels F >= 1 (default: BBBC005's 16)\n"
"  --sites N            sites 1..N per (count, focus) (default 25)\n"
"  --stain 1|2|both     w1 = nuclei, w2 = cell bodies (the paper's; default both)\n"
"  --image-size WxH     simulated image size (default 696x520)\n"
"  --seed N             simulation seed (default 1)\n"
"  --threads N          OpenMP threads (default: OpenMP's); output bytes do\n"
"                       not depend on it\n\n"
"Simulator knobs (defaults calibrated on real BBBC005 files, docs/DATA.md;\n"
"compare with `cellcount stats`; the cell-body knobs act on w2):\n"
"  --cell-radius PX     cell-body radius (default 32.1 px scaled by width/696)\n"
"  --nucleus-ratio R    nucleus radius / cell-body radius (default 0.4956)\n"
"  --irregularity X     scale of the shape noise a, b (default 1)\n"
"  --cluster-prob P     probability a cell joins a cluster (default 0.25)\n"
"  --clusters N         cluster centres per scene (default 2)\n"
"  --overlap L          max fraction of a new cell already covered (default 0.7)\n"
"  --nucleus-overlap L  max fraction of a new nucleus already covered by nuclei\n"
"                       (default 1: no limit of its own)\n"
"  --noise-var V        Gaussian noise variance on [0,1] (default 1e-5)\n"
"  --background B       offset added to every pixel, 8-bit levels (default 1)\n"
"  --autofluor E        autofluorescence energy / cell energy (default 0)\n"
"  --illumination D     depth of the illumination fall-off (default 0)\n"
"  --contrast G         exponent on cell-body intensities (default 0.7)\n"
"  --brightness-sd S    log-sd of the per-cell brightness (default 0.03)\n"
"  --gain K             intensity scale (default 0.855)\n"
"  --nucleus-contrast G exponent on nucleus intensities (default 0.6)\n"
"  --nucleus-brightness-sd S  log-sd of the per-nucleus brightness (default 0.12)\n"
"  --nucleus-gain K     nucleus brightness relative to --gain (default 0.965)\n\n"
"  --quiet              no progress lines\n"
"  --help               this text\n\n"
"Exit status: 0 ok, 1 runtime error (nothing half-written is left), 2 usage.\n");
}

/* ---- argument parsing --------------------------------------------------- */

/* ---- fan-out to several outputs ----------------------------------------- */

typedef struct multi_out {
    sim_tree_out *tree;
    sim_h5_out *h5;
} multi_out;

static int multi_sink(void *ctx, const sim_image *im, cc_status *st)
{
    multi_out *m = ctx;
    if (m->tree && sim_tree_sink(m->tree, im, st)) return -1;
    if (m->h5 && sim_h5_sink(m->h5, im, st)) return -1;
    return 0;
}

/* ---- the command -------------------------------------------------------- */

enum {
    OPT_OUT_DIR = 256, OPT_OUT, OPT_PREVIEW, OPT_FORCE, OPT_SIZE, OPT_SPLIT_SEED, OPT_SPLIT, OPT_SPLIT_BY,
    OPT_COUNTS, OPT_FOCUS, OPT_SITES, OPT_STAIN, OPT_IMAGE_SIZE, OPT_SEED, OPT_THREADS,
    OPT_RADIUS, OPT_IRREG, OPT_CLUSTER_PROB, OPT_CLUSTERS, OPT_OVERLAP, OPT_NOVERLAP, OPT_NOISE,
    OPT_AUTOF, OPT_ILLUM, OPT_CONTRAST, OPT_BRIGHT, OPT_GAIN, OPT_BG, OPT_NRATIO, OPT_NCONTRAST, OPT_NGAIN, OPT_NBRIGHT, OPT_QUIET, OPT_HELP,
};

static int bad(const char *opt, const char *val, const char *want)
{
    fprintf(stderr, "cellcount simulate: bad value '%s' for %s: expected %s\n", val, opt, want);
    return 2;
}

int cli_simulate(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"out-dir", required_argument, 0, OPT_OUT_DIR},
        {"out", required_argument, 0, OPT_OUT},
        {"preview", required_argument, 0, OPT_PREVIEW},
        {"force", no_argument, 0, OPT_FORCE},
        {"size", required_argument, 0, OPT_SIZE},
        {"split-seed", required_argument, 0, OPT_SPLIT_SEED},
        {"split", required_argument, 0, OPT_SPLIT},
        {"split-by", required_argument, 0, OPT_SPLIT_BY},
        {"counts", required_argument, 0, OPT_COUNTS},
        {"focus", required_argument, 0, OPT_FOCUS},
        {"sites", required_argument, 0, OPT_SITES},
        {"stain", required_argument, 0, OPT_STAIN},
        {"image-size", required_argument, 0, OPT_IMAGE_SIZE},
        {"seed", required_argument, 0, OPT_SEED},
        {"threads", required_argument, 0, OPT_THREADS},
        {"cell-radius", required_argument, 0, OPT_RADIUS},
        {"irregularity", required_argument, 0, OPT_IRREG},
        {"cluster-prob", required_argument, 0, OPT_CLUSTER_PROB},
        {"clusters", required_argument, 0, OPT_CLUSTERS},
        {"overlap", required_argument, 0, OPT_OVERLAP},
        {"nucleus-overlap", required_argument, 0, OPT_NOVERLAP},
        {"noise-var", required_argument, 0, OPT_NOISE},
        {"autofluor", required_argument, 0, OPT_AUTOF},
        {"illumination", required_argument, 0, OPT_ILLUM},
        {"contrast", required_argument, 0, OPT_CONTRAST},
        {"brightness-sd", required_argument, 0, OPT_BRIGHT},
        {"gain", required_argument, 0, OPT_GAIN},
        {"background", required_argument, 0, OPT_BG},
        {"nucleus-ratio", required_argument, 0, OPT_NRATIO},
        {"nucleus-contrast", required_argument, 0, OPT_NCONTRAST},
        {"nucleus-gain", required_argument, 0, OPT_NGAIN},
        {"nucleus-brightness-sd", required_argument, 0, OPT_NBRIGHT},
        {"quiet", no_argument, 0, OPT_QUIET},
        {"help", no_argument, 0, OPT_HELP},
        {0, 0, 0, 0},
    };
    sim_params p;
    sim_params_default(&p);
    int counts[MAX_LIST], focus[MAX_LIST];
    sim_job job = {counts, BBBC_NCOUNTS, focus, BBBC_NFOCUS, 25, 3, 0};
    memcpy(counts, bbbc_counts, sizeof bbbc_counts);
    memcpy(focus, bbbc_focus_levels, sizeof bbbc_focus_levels);
    const char *out_dir = NULL, *out_h5 = NULL, *preview = NULL;
    int force = 0, quiet = 0, ow = 256, oh = 192;
    uint64_t split_seed = 1;
    double frac[3] = {0.8, 0.1, 0.1};
    dataset_split_by split_by = DATASET_SPLIT_SCENE;
    long v;
    double d;

    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_OUT_DIR: out_dir = optarg; break;
        case OPT_OUT: out_h5 = optarg; break;
        case OPT_PREVIEW: preview = optarg; break;
        case OPT_FORCE: force = 1; break;
        case OPT_QUIET: quiet = 1; break;
        case OPT_HELP: usage(stdout); return 0;
        case OPT_SIZE:
            if (cli_parse_size(optarg, 1, 16384, &ow, &oh)) return bad("--size", optarg, "WxH with W, H in 1..16384, e.g. 256x192");
            break;
        case OPT_IMAGE_SIZE:
            if (cli_parse_size(optarg, 8, 16384, &p.width, &p.height))
                return bad("--image-size", optarg, "WxH with W, H in 8..16384");
            break;
        case OPT_SPLIT_SEED:
            if (cli_parse_long(optarg, 0, LONG_MAX, &v))
                return bad("--split-seed", optarg, "a non-negative integer");
            split_seed = (uint64_t)v;
            break;
        case OPT_SEED:
            if (cli_parse_long(optarg, 0, LONG_MAX, &v))
                return bad("--seed", optarg, "a non-negative integer");
            p.seed = (uint64_t)v;
            break;
        case OPT_SPLIT:
            if (cli_parse_split(optarg, frac))
                return bad("--split", optarg, "A/B/C: three non-negative proportions, not all 0");
            break;
        case OPT_SPLIT_BY:
            if (dataset_split_by_parse(optarg, &split_by))
                return bad("--split-by", optarg, "scene or count");
            break;
        case OPT_COUNTS:
            if (cli_parse_int_list(optarg, 1, 100000, counts, MAX_LIST, &job.ncounts))
                return bad("--counts", optarg, "a comma-separated list of integers 1..100000");
            break;
        case OPT_FOCUS:
            if (cli_parse_int_list(optarg, 1, 1000, focus, MAX_LIST, &job.nfocus))
                return bad("--focus", optarg, "a comma-separated list of integers 1..1000");
            break;
        case OPT_SITES:
            if (cli_parse_long(optarg, 1, 99999, &v)) return bad("--sites", optarg, "an integer 1..99999");
            job.nsites = (int)v;
            break;
        case OPT_STAIN:
            if (!strcmp(optarg, "1") || !strcmp(optarg, "w1")) job.stains = 1;
            else if (!strcmp(optarg, "2") || !strcmp(optarg, "w2")) job.stains = 2;
            else if (!strcmp(optarg, "both") || !strcmp(optarg, "1,2")) job.stains = 3;
            else return bad("--stain", optarg, "1, 2 or both");
            break;
        case OPT_THREADS:
            if (cli_parse_long(optarg, 1, 4096, &v)) return bad("--threads", optarg, "an integer 1..4096");
            job.threads = (int)v;
            break;
        case OPT_CLUSTERS:
            if (cli_parse_long(optarg, 1, 10000, &v)) return bad("--clusters", optarg, "an integer 1..10000");
            p.clusters = (int)v;
            break;
#define KNOB(OPT, NAME, FIELD, OK, WANT) \
        case OPT: \
            if (cli_parse_double(optarg, &d) || !(OK)) return bad(NAME, optarg, WANT); \
            p.FIELD = d; \
            break;
        KNOB(OPT_RADIUS, "--cell-radius", cell_radius, d >= 1 && d <= 1000, "a radius 1..1000 px")
        KNOB(OPT_IRREG, "--irregularity", irregularity, d >= 0 && d <= 10, "a number 0..10")
        KNOB(OPT_CLUSTER_PROB, "--cluster-prob", cluster_prob, d >= 0 && d <= 1, "a probability 0..1")
        KNOB(OPT_OVERLAP, "--overlap", overlap_limit, d >= 0 && d <= 1, "a fraction 0..1")
        KNOB(OPT_NOVERLAP, "--nucleus-overlap", nucleus_overlap, d >= 0 && d <= 1, "a fraction 0..1")
        KNOB(OPT_NOISE, "--noise-var", noise_var, d >= 0 && d <= 1, "a variance 0..1")
        KNOB(OPT_AUTOF, "--autofluor", autofluor, d >= 0 && d <= 10, "a ratio 0..10")
        KNOB(OPT_ILLUM, "--illumination", illumination, d >= 0 && d <= 1, "a depth 0..1")
        KNOB(OPT_CONTRAST, "--contrast", contrast, d >= 0.1 && d <= 10, "an exponent 0.1..10")
        KNOB(OPT_BRIGHT, "--brightness-sd", brightness_sd, d >= 0 && d <= 3, "a log-sd 0..3")
        KNOB(OPT_GAIN, "--gain", gain, d > 0 && d <= 1000, "a positive gain <= 1000")
        KNOB(OPT_BG, "--background", background, d >= 0 && d <= 255, "a level 0..255")
        KNOB(OPT_NRATIO, "--nucleus-ratio", nucleus_ratio, d > 0 && d <= 1, "a ratio in (0, 1]")
        KNOB(OPT_NCONTRAST, "--nucleus-contrast", nucleus_contrast, d >= 0.1 && d <= 10, "an exponent 0.1..10")
        KNOB(OPT_NGAIN, "--nucleus-gain", nucleus_gain, d > 0 && d <= 100, "a positive ratio <= 100")
        KNOB(OPT_NBRIGHT, "--nucleus-brightness-sd", nucleus_brightness_sd, d >= 0 && d <= 3, "a log-sd 0..3")
#undef KNOB
        case ':':
            fprintf(stderr, "cellcount simulate: %s needs a value\n", argv[optind - 1]);
            return 2;
        default:
            fprintf(stderr, "cellcount simulate: unknown option '%s' (see --help)\n",
                    argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "cellcount simulate: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!out_dir && !out_h5 && !preview) {
        fprintf(stderr, "cellcount simulate: nothing to do: give --out-dir, --out and/or "
                        "--preview (see --help)\n");
        return 2;
    }
    cc_status st;
    status_clear(&st);
    if (sim_params_check(&p, &st) || sim_job_check(&job, &st)) {
        fprintf(stderr, "cellcount %s\n", st.msg);
        return 2;
    }
    FILE *log = quiet ? NULL : stderr;
    const double t0 = omp_get_wtime();

    /* Preview first: cheap, and a wrong look is better seen before a long run. */
    if (preview && sim_preview_write(&p, &job, preview, log, &st)) {
        fprintf(stderr, "cellcount simulate: %s\n", st.msg);
        return 1;
    }
    if (!out_dir && !out_h5) return 0;

    sim_tree_out tree;
    sim_h5_out h5;
    multi_out m = {out_dir ? &tree : NULL, out_h5 ? &h5 : NULL};
    if (out_dir && sim_tree_begin(&tree, out_dir, force, &job, &st)) {
        fprintf(stderr, "cellcount simulate: %s\n", st.msg);
        return 1;
    }
    int rc = out_h5 ? sim_h5_begin(&h5, out_h5, ow, oh, &job, split_seed, frac, split_by, &st) : 0;
    if (rc) m.h5 = NULL;
    if (rc == 0) {
        if (log)
            fprintf(log, "simulate: %ld images (%d counts x %d focus x %d sites x %s) at %dx%d, "
                         "seed %llu\n", sim_job_images(&job), job.ncounts, job.nfocus,
                    job.nsites, job.stains == 3 ? "2 stains" : (job.stains == 1 ? "w1" : "w2"),
                    p.width, p.height, (unsigned long long)p.seed);
        rc = sim_run(&p, &job, multi_sink, &m, log, &st);
    }
    int h5_done = 0;
    if (m.h5) {
        if (sim_h5_end(&h5, rc == 0, &st)) rc = -1;
        h5_done = rc == 0;
    }
    if (out_dir && sim_tree_end(&tree, rc == 0, &st)) {
        rc = -1;
        /* both outputs or neither: the data set made with the tree goes too */
        if (h5_done) unlink(out_h5);
    }
    if (rc) {
        fprintf(stderr, "cellcount simulate: %s\n", st.msg);
        return 1;
    }
    if (log) {
        if (out_dir)
            fprintf(log, "simulate: wrote %ld images to %s/images and %ld masks to "
                         "%s/ground_truth\n", sim_job_images(&job), out_dir, tree.masks, out_dir);
        if (out_h5)
            fprintf(log, "simulate: wrote %ld images (%dx%d) to %s\n", sim_job_images(&job),
                    ow, oh, out_h5);
        fprintf(log, "simulate: done in %.1f s\n", omp_get_wtime() - t0);
    }
    return 0;
}
