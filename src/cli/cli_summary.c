/* cli_summary.c - `cellcount summary`: describe a model like torchsummary
 * (layers, output shapes, parameter counts, MACs) and list its parameter
 * paths (the HDF5 checkpoint layout). */
#include "src/cli/cli.h"
#include "src/cli/cli_opts.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/counter.h"
#include "models/summary.h"

static void usage(FILE *f)
{
    fprintf(f,
"usage: cellcount summary [--model fpn|counter] [--arch NAME] [--input CxHxW]\n"
"                         [--depth D] [--width d] [--width-div K] [--params]\n\n"
"Build a freshly initialised model, run one inference forward on a batch of 1\n"
"and print every layer (op, module path, output shape, parameters, MACs per\n"
"image), then the totals: trainable parameters, BN buffers and forward\n"
"multiply-accumulates per image (conv n*ho*wo*cout*cin*k*k, linear in*out).\n\n"
"  --model M        fpn (default) or counter\n"
"  --input CxHxW    input size (default 1x192x256 for fpn, 1x96x128 for the\n"
"                   counter).  FPN: C is 1 or 3 and H, W must be divisible by\n"
"                   2^D.  Counter: C is 1 (mask) or 2 (mask + image)\n"
"  --depth D        FPN depth, 2..5 (default 4)\n"
"  --width d        FPN width (default 128)\n"
"  --arch NAME      counter architecture (default vgg11):");
    for (int i = 0; i < counter_arch_count(); i++) fprintf(f, " %s", counter_arch_at(i)->name);
    fprintf(f,
"\n"
"  --width-div K    divide the counter's channel counts and head widths by K\n"
"                   (default 1 = the paper's sizes)\n"
"  --params         also list every parameter path (/params/<path> in\n"
"                   checkpoints) with its shape\n"
"  --threads N      OpenMP threads (default: OpenMP's)\n"
"  --help           this text\n\n"
"Exit status: 0 ok, 1 the model cannot take this input, 2 usage error.\n");
}

static int parse_int(const char *s, long lo, long hi, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

int cli_summary(int argc, char **argv)
{
    enum { O_MODEL = 256, O_ARCH, O_INPUT, O_DEPTH, O_WIDTH, O_WDIV, O_PARAMS, O_THREADS, O_HELP };
    static const struct option longopts[] = {
        {"model", required_argument, 0, O_MODEL}, {"arch", required_argument, 0, O_ARCH},
        {"input", required_argument, 0, O_INPUT}, {"depth", required_argument, 0, O_DEPTH},
        {"width", required_argument, 0, O_WIDTH}, {"width-div", required_argument, 0, O_WDIV},
        {"params", no_argument, 0, O_PARAMS},     {"threads", required_argument, 0, O_THREADS},
        {"help", no_argument, 0, O_HELP},         {0, 0, 0, 0}};
    summary_model model = SUMMARY_FPN;
    const char *arch = NULL, *input = NULL;
    int depth = 4, width = 128, wdiv = 1, list = 0, threads = 0;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case O_MODEL:
            if (!strcmp(optarg, "fpn"))
                model = SUMMARY_FPN;
            else if (!strcmp(optarg, "counter"))
                model = SUMMARY_COUNTER;
            else {
                fprintf(stderr, "cellcount summary: --model must be fpn or counter, not '%s'\n",
                        optarg);
                return 2;
            }
            break;
        case O_ARCH: arch = optarg; break;
        case O_INPUT: input = optarg; break;
        case O_DEPTH:
            if (parse_int(optarg, 2, 5, &depth)) {
                fprintf(stderr, "cellcount summary: --depth must be 2..5, not '%s'\n", optarg);
                return 2;
            }
            break;
        case O_WIDTH:
            if (parse_int(optarg, 1, 4096, &width)) {
                fprintf(stderr, "cellcount summary: --width must be 1..4096, not '%s'\n", optarg);
                return 2;
            }
            break;
        case O_WDIV:
            if (parse_int(optarg, 1, 512, &wdiv)) {
                fprintf(stderr, "cellcount summary: --width-div must be 1..512, not '%s'\n",
                        optarg);
                return 2;
            }
            break;
        case O_PARAMS: list = 1; break;
        case O_THREADS:
            if (parse_int(optarg, 1, 1024, &threads)) {
                fprintf(stderr, "cellcount summary: --threads must be 1..1024, not '%s'\n",
                        optarg);
                return 2;
            }
            break;
        case O_HELP: usage(stdout); return 0;
        default:
            fprintf(stderr, "cellcount summary: unknown or incomplete option '%s' (see --help)\n",
                    argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "cellcount summary: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    summary_options o;
    summary_options_default(&o, model);
    if (arch) {
        if (model != SUMMARY_COUNTER) {
            fprintf(stderr, "cellcount summary: --arch applies to --model counter\n");
            return 2;
        }
        if (!counter_arch_find(arch)) {
            fprintf(stderr, "cellcount summary: unknown architecture '%s' (see --help)\n", arch);
            return 2;
        }
        snprintf(o.arch, sizeof o.arch, "%s", arch);
    }
    int chw[3];
    if (input && (cli_parse_dims(input, 3, 1, 65536, chw) || chw[0] > 64)) {
        fprintf(stderr, "cellcount summary: --input must be CxHxW, e.g. 1x192x256, not '%s'\n",
                input);
        return 2;
    }
    if (input) {
        o.channels = chw[0];
        o.height = chw[1];
        o.width = chw[2];
    }
    o.depth = depth;
    o.fpn_width = width;
    o.width_div = wdiv;
    o.list_params = list;
    o.threads = threads;
    cc_status st;
    status_clear(&st);
    summary_totals tot;
    if (summary_run(&o, stdout, &tot, &st)) {
        fprintf(stderr, "cellcount summary: %s\n", st.msg);
        return 1;
    }
    return 0;
}
