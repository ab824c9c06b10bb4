/* cli_count.c - `cellcount count`, and the option parser it shares with
 * `cellcount saliency` (cli_infer.h). */
#include "src/cli/cli.h"
#include "src/cli/cli_infer.h"
#include "src/cli/cli_opts.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/infer/count_files.h"

#define INFER_MAX_SETS 256

static const char common_usage[] =
    "  -o, --run DIR         the run directory (required): its config.ini gives the\n"
    "                        models' configuration, its checkpoints the weights\n"
    "  -c, --config FILE     experiment file applied on top of DIR/config.ini\n"
    "  -s, --set SEC.KEY=V   override one key (repeatable), e.g. --set data.file=FILE.h5\n"
    "  -t, --threads N       OpenMP threads (same as --set run.threads=N)\n"
    "      --fpn FILE        FPN checkpoint (default DIR/fpn_best.h5, or\n"
    "                        DIR/counter_fpn_best.h5 with counter.finetune_fpn)\n"
    "      --counter FILE    counter checkpoint (default DIR/counter_best.h5)\n"
    "      --size WxH        the models' input size (default: the size of the data set\n"
    "                        named by the run's data.file, the size they were trained\n"
    "                        on); every image is area-resized to it (aspect ratio\n"
    "                        not kept)\n"
    "      --batch N         images per forward pass (default %d)\n"
    "      --normalize MODE  how samples become [0,1] intensities (default: as the\n"
    "                        run's training data, recorded in run.h5; range when it\n"
    "                        does not say): range (v/255, v/65535), bits:N (v/(2^N-1):\n"
    "                        N-bit camera data in a 16-bit file, e.g. bits:12), max\n"
    "                        (v/image max) or percentile:LO,HI (P_LO..P_HI to 0..1,\n"
    "                        clamped).  max and percentile are per image and erase\n"
    "                        the brightness-count cue; a choice that scales inputs\n"
    "                        unlike the training data's gets a warning.  16-bit\n"
    "                        files whose values never exceed 4095 read with range\n"
    "                        get a warning suggesting bits:12\n"
    "      --page N          page of a multi-page TIFF (0 = first; required for\n"
    "                        multi-page files, an error otherwise)\n"
    "      --channel N       sample of a multi-channel TIFF (0 = first; required for\n"
    "                        gray files with several samples per pixel; RGB is read\n"
    "                        as BT.601 luma unless a channel is chosen)\n";

static void usage(FILE *f, infer_cmd cmd)
{
    if (cmd == INFER_COUNT) {
        fprintf(f,
                "usage: cellcount count -o RUN_DIR [options] FILE_OR_DIR...\n\n"
                "Count cells in gray TIFF images (8- or 16-bit) with a trained run: each\n"
                "image is scaled to [0,1] (--normalize), area-resized to the models'\n"
                "input size, segmented by the FPN, and its finest mask counted. A directory\n"
                "stands for its *.tif/*.tiff files (any case, sorted by name, not recursive,\n"
                "hidden files skipped).\n\n");
        fprintf(f, common_usage, 16);
        fprintf(f,
                "      --format tsv|csv  table format (default tsv)\n"
                "      --output FILE     write the table to FILE (atomically; a link's target is\n"
                "                        replaced; a device or FIFO is written directly, not\n"
                "                        atomically) instead of stdout\n"
                "      --masks DIR       also write per image, at half the input size:\n"
                "                        STEM_mask.tif, STEM_sigma.tif (32-bit float: the FPN's\n"
                "                        finest mean mask and its sigma = exp(logvar/2)) and\n"
                "                        STEM_mask.png (255*mask, clamped to [0,1]) and\n"
                "                        STEM_sigma.png (255*sigma/max sigma of that image);\n"
                "                        with a density counter (vgg11_density) also\n"
                "                        STEM_density.tif (32-bit float: its map, cells per\n"
                "                        position, 1/16 of the input's side, summing to the\n"
                "                        count before calibration) and STEM_density.png\n"
                "                        (255*density/max of that image, at half the input size)\n"
                "  -h, --help            this text\n\n"
                "Output: a header line, then one line per image: file, count, sigma, lower95,\n"
                "upper95 (count -+ 1.96 sigma, lower clamped at 0; sigma and bounds are nan\n"
                "for a counter trained with the mse loss), ood.  STEM is the file name without\n"
                ".tif, made unique with -2, -3, ...\n"
                "ood: ok, or which of count, intensity, foreground, area, sigma lie outside\n"
                "what the run saw in training (comma-separated; the training split's\n"
                "extremes widened by 10%% of their range, 5%% and at least 1 cell for the\n"
                "count; sigma against the validation split's calibrated sigma, from\n"
                "`evaluate`): mean intensity, FPN foreground fraction, foreground pixels\n"
                "per counted cell.  n/a for runs trained before train-counter recorded\n"
                "these statistics in run.h5.\n"
                "Exit status: 0 all images counted; 1 an error (missing checkpoint, ...) or\n"
                "some inputs could not be read (each is reported on stderr and skipped, the\n"
                "others are counted); 2 usage or configuration error.\n");
    } else {
        fprintf(f,
                "usage: cellcount saliency -o RUN_DIR [options] FILE...\n\n"
                "Saliency maps of a run's predicted count: the gradient of the count with\n"
                "respect to the counter's input (the FPN's finest mean mask) and to the\n"
                "image (through the FPN), with every BN layer in eval mode (running\n"
                "statistics) as in `cellcount count`.  Images are read and resized as\n"
                "`cellcount count` does; directories stand for their *.tif files.\n\n");
        fprintf(f, common_usage, 4);
        fprintf(f,
                "      --out FILE.h5     write /saliency/STEM/{image,image_grad,mask,mask_grad}\n"
                "                        (float32, raw gradients) with attributes source,\n"
                "                        count, sigma (atomically)\n"
                "      --png DIR         write STEM_image_grad.png and STEM_mask_grad.png:\n"
                "                        |gradient| scaled by 255/max|gradient| of that map\n"
                "                        and image (relative within an image only)\n"
                "  -h, --help            this text\n\n"
                "At least one of --out and --png is required.  stdout gets file, count and\n"
                "sigma per image.  STEM is the file name without .tif, made unique with -2,\n"
                "-3, ...  With counter.input=image there is no mask: only image maps.\n"
                "Exit status as for `cellcount count`.\n");
    }
}

int infer_parse(int argc, char **argv, infer_cmd cmd, infer_opts *o)
{
    enum { O_FPN = 256, O_COUNTER, O_SIZE, O_BATCH, O_FORMAT, O_OUTPUT, O_MASKS, O_OUT, O_PNG,
           O_NORMALIZE, O_PAGE, O_CHANNEL };
    static const struct option count_longs[] = {
        {"run", required_argument, 0, 'o'},      {"config", required_argument, 0, 'c'},
        {"set", required_argument, 0, 's'},      {"threads", required_argument, 0, 't'},
        {"fpn", required_argument, 0, O_FPN},    {"counter", required_argument, 0, O_COUNTER},
        {"size", required_argument, 0, O_SIZE},  {"batch", required_argument, 0, O_BATCH},
        {"format", required_argument, 0, O_FORMAT}, {"output", required_argument, 0, O_OUTPUT},
        {"masks", required_argument, 0, O_MASKS}, {"help", no_argument, 0, 'h'},
        {"normalize", required_argument, 0, O_NORMALIZE}, {"page", required_argument, 0, O_PAGE},
        {"channel", required_argument, 0, O_CHANNEL}, {0, 0, 0, 0}};
    static const struct option saliency_longs[] = {
        {"run", required_argument, 0, 'o'},      {"config", required_argument, 0, 'c'},
        {"set", required_argument, 0, 's'},      {"threads", required_argument, 0, 't'},
        {"fpn", required_argument, 0, O_FPN},    {"counter", required_argument, 0, O_COUNTER},
        {"size", required_argument, 0, O_SIZE},  {"batch", required_argument, 0, O_BATCH},
        {"out", required_argument, 0, O_OUT},    {"png", required_argument, 0, O_PNG},
        {"help", no_argument, 0, 'h'},
        {"normalize", required_argument, 0, O_NORMALIZE}, {"page", required_argument, 0, O_PAGE},
        {"channel", required_argument, 0, O_CHANNEL}, {0, 0, 0, 0}};
    const char *cmdname = argv[0];
    memset(o, 0, sizeof *o);
    o->batch = cmd == INFER_COUNT ? 16 : 4;
    o->page = o->channel = -1;
    const char *run_dir = NULL, *file = NULL;
    char *sets[INFER_MAX_SETS];
    char threads_set[64];
    int nsets = 0, threads_at = -1;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "o:c:s:t:h",
                            cmd == INFER_COUNT ? count_longs : saliency_longs, NULL)) != -1) {
        switch (c) {
        case 'o': run_dir = optarg; break;
        case 'c': file = optarg; break;
        case 's':
        case 't':
            if (nsets == INFER_MAX_SETS) {
                fprintf(stderr, "cellcount %s: too many overrides\n", cmdname);
                return 2;
            }
            if (c == 's') {
                sets[nsets++] = optarg;
            } else {
                /* Only the last -t counts; kept in the override order. */
                snprintf(threads_set, sizeof threads_set, "run.threads=%s", optarg);
                if (threads_at < 0) threads_at = nsets++;
                sets[threads_at] = threads_set;
            }
            break;
        case O_FPN: o->fpn = optarg; break;
        case O_COUNTER: o->counter = optarg; break;
        case O_SIZE:
            if (cli_parse_size(optarg, 1, 65536, &o->w, &o->h)) {
                fprintf(stderr, "cellcount %s: --size wants WxH, e.g. 256x192 (got '%s')\n",
                        cmdname, optarg);
                return 2;
            }
            break;
        case O_BATCH: {
            char *e;
            long b = strtol(optarg, &e, 10);
            if (e == optarg || *e || b < 1 || b > 4096) {
                fprintf(stderr, "cellcount %s: --batch wants 1..4096 (got '%s')\n", cmdname,
                        optarg);
                return 2;
            }
            o->batch = (int)b;
            break;
        }
        case O_FORMAT:
            if (!strcmp(optarg, "csv")) o->csv = 1;
            else if (!strcmp(optarg, "tsv")) o->csv = 0;
            else {
                fprintf(stderr, "cellcount %s: --format must be tsv or csv\n", cmdname);
                return 2;
            }
            break;
        case O_NORMALIZE: {
            cc_norm nm;
            cc_status nst;
            status_clear(&nst);
            if (norm_parse(optarg, &nm, &nst)) {
                fprintf(stderr, "cellcount %s: --%s\n", cmdname, nst.msg);
                return 2;
            }
            o->normalize = optarg;
            break;
        }
        case O_PAGE:
        case O_CHANNEL: {
            char *e;
            long v = strtol(optarg, &e, 10);
            if (e == optarg || *e || v < 0 || v > 65535) {
                fprintf(stderr, "cellcount %s: --%s wants a number 0..65535 (0 = the first; got "
                                "'%s')\n", cmdname, c == O_PAGE ? "page" : "channel", optarg);
                return 2;
            }
            *(c == O_PAGE ? &o->page : &o->channel) = (int)v;
            break;
        }
        case O_OUTPUT: o->output = optarg; break;
        case O_MASKS: o->masks = optarg; break;
        case O_OUT: o->out_h5 = optarg; break;
        case O_PNG: o->png_dir = optarg; break;
        case 'h': usage(stdout, cmd); return -1;
        default: usage(stderr, cmd); return 2;
        }
    }
    o->inputs = argv + optind;
    o->ninputs = argc - optind;
    if (!run_dir) {
        fprintf(stderr, "cellcount %s: the run directory is required (-o/--run DIR)\n", cmdname);
        return 2;
    }
    if (o->ninputs == 0) {
        fprintf(stderr, "cellcount %s: no images given (see cellcount %s --help)\n", cmdname,
                cmdname);
        return 2;
    }
    if (cmd == INFER_SALIENCY && !o->out_h5 && !o->png_dir) {
        fprintf(stderr, "cellcount %s: nothing to write: give --out FILE.h5 and/or --png DIR\n",
                cmdname);
        return 2;
    }
    cc_status st;
    status_clear(&st);
    if (count_config_load(&o->cfg, run_dir, file, sets, nsets, &st)) {
        fprintf(stderr, "cellcount %s: %s\n", cmdname, st.msg);
        return 2;
    }
    return 0;
}

int cli_count(int argc, char **argv)
{
    infer_opts o;
    int r = infer_parse(argc, argv, INFER_COUNT, &o);
    if (r) return r < 0 ? 0 : r;
    count_read rd = {o.normalize, o.page, o.channel};
    count_opts co = {o.fpn, o.counter, o.output, o.csv, o.masks, o.batch, o.h, o.w, &rd};
    cc_status st;
    status_clear(&st);
    int rc = count_run(&o.cfg, &co, o.inputs, o.ninputs, stdout, stderr, &st);
    if (rc < 0) fprintf(stderr, "cellcount %s: %s\n", argv[0], st.msg);
    if (rc > 0) fprintf(stderr, "cellcount %s: some inputs were skipped (see above)\n", argv[0]);
    return rc ? 1 : 0;
}
