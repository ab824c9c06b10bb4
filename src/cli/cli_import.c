/* cli_import.c - `cellcount import`: BBBC005 TIFF tree -> HDF5 data set. */
#include "src/cli/cli.h"
#include "src/cli/cli_opts.h"

#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/data/import.h"
#include "src/data/normalize.h"

static void usage(FILE *f)
{
    fprintf(f,
        "usage: cellcount import --images DIR --out FILE.h5 [options]\n"
        "       cellcount import --from DATA.h5 --out FILE.h5 [--stain S] [--focus LIST]\n"
        "                        [--size WxH]\n\n"
        "Convert a BBBC005-style tree of TIFFs (SIMCEPImages_<well>_C<count>_F<focus>_\n"
        "s<site>_w<stain>.TIF) into a cellcount HDF5 data set.  Each image is paired\n"
        "with the F1 mask of its scene (same C, s, w), area-resized to --size and\n"
        "assigned a train/val/test split by scene (C, s), so no scene straddles splits.\n\n"
        "  --images DIR     directory of the images (required)\n"
        "  --masks DIR      directory of the ground-truth masks (same names as the F1\n"
        "                   images; pixels > 0 are foreground); without it no image\n"
        "                   has a mask\n"
        "  --out FILE       output .h5 file, written atomically (required)\n"
        "  --stain S        1, 2 or all (default 2, the paper's cell bodies)\n"
        "  --focus LIST     comma-separated focus levels, e.g. 1,4,7, or all (default)\n"
        "  --size WxH       target width x height (default 256x192)\n"
        "  --seed N         split seed (default 1)\n"
        "  --split A/B/C    train/val/test proportions, also A,B,C (default 80/10/10)\n"
        "  --split-by count stratify the split by cell count: each count gets its\n"
        "                   share of every split (within one scene), so the test\n"
        "                   split has the set's count distribution (default scene:\n"
        "                   scenes drawn at random; recorded as attribute split_by)\n"
        "  --threads N      OpenMP threads for reading and resizing (default: all)\n"
        "  --normalize MODE range (default: v/255, v/65535), bits:N (v/(2^N-1), e.g.\n"
        "                   bits:12 for 12-bit camera data in 16-bit files), max or\n"
        "                   percentile:LO,HI (per image: erase the brightness-count\n"
        "                   cue); recorded in the data set, and from there in runs\n"
        "                   trained on it, so that `count` reads images the same way\n"
        "  --help           show this text\n\n"
        "Files whose names do not parse are reported on stderr and skipped.\n\n"
        "--from DATA.h5: a data set made from another one (e.g. one stain of a set\n"
        "holding both, at a model's input size): images and masks area-resized, the\n"
        "source's splits, counts, masks and normalisation kept.\n");
}

static int parse_focus(const char *s, import_opts *o)
{
    if (!strcmp(s, "all")) {
        o->nfocus = 0;
        return 0;
    }
    return cli_parse_int_list(s, 1, 100000, o->focus, IMPORT_MAX_FOCUS, &o->nfocus);
}

int cli_import(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"images", required_argument, NULL, 'i'}, {"masks", required_argument, NULL, 'm'},
        {"out", required_argument, NULL, 'o'},    {"stain", required_argument, NULL, 'w'},
        {"focus", required_argument, NULL, 'f'},  {"size", required_argument, NULL, 'z'},
        {"seed", required_argument, NULL, 's'},   {"split", required_argument, NULL, 'p'},
        {"threads", required_argument, NULL, 't'}, {"help", no_argument, NULL, 'h'},
        {"normalize", required_argument, NULL, 'n'}, {"from", required_argument, NULL, 'F'},
        {"split-by", required_argument, NULL, 'B'},
        {NULL, 0, NULL, 0}};
    const char *from = NULL;
    import_opts o;
    import_opts_default(&o);
    optind = 0;     /* glibc: full re-initialisation, so the CLI can be run twice */
    int c;
    long v;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'i': o.images_dir = optarg; break;
        case 'F': from = optarg; break;
        case 'm': o.masks_dir = optarg; break;
        case 'o': o.out_path = optarg; break;
        case 'w':
            if (!strcmp(optarg, "all")) o.stain = 0;
            else if (cli_parse_long(optarg, 1, 2, &v) == 0) o.stain = (int)v;
            else {
                fprintf(stderr, "cellcount import: --stain must be 1, 2 or all, not '%s'\n",
                        optarg);
                return 2;
            }
            break;
        case 'f':
            if (parse_focus(optarg, &o) != 0) {
                fprintf(stderr, "cellcount import: --focus must be 'all' or a comma-separated "
                        "list of up to %d positive integers, not '%s'\n", IMPORT_MAX_FOCUS,
                        optarg);
                return 2;
            }
            break;
        case 'z':
            if (cli_parse_size(optarg, 1, 65536, &o.width, &o.height) != 0) {
                fprintf(stderr, "cellcount import: --size must be WIDTHxHEIGHT, e.g. 256x192, "
                        "not '%s'\n", optarg);
                return 2;
            }
            break;
        case 's': {
            char *end;
            unsigned long long s = strtoull(optarg, &end, 10);
            if (end == optarg || *end || optarg[0] == '-') {
                fprintf(stderr, "cellcount import: --seed must be a non-negative integer, "
                        "not '%s'\n", optarg);
                return 2;
            }
            o.seed = s;
            break;
        }
        case 'p':
            if (cli_parse_split(optarg, o.frac) != 0) {
                fprintf(stderr, "cellcount import: --split must be A/B/C or A,B,C with non-negative "
                        "numbers of positive sum, e.g. 80/10/10, not '%s'\n", optarg);
                return 2;
            }
            break;
        case 'B':
            if (dataset_split_by_parse(optarg, &o.split_by) != 0) {
                fprintf(stderr, "cellcount import: --split-by must be scene or count, not '%s'\n",
                        optarg);
                return 2;
            }
            break;
        case 't':
            if (cli_parse_long(optarg, 1, 4096, &v) != 0) {
                fprintf(stderr, "cellcount import: --threads must be a positive integer, "
                        "not '%s'\n", optarg);
                return 2;
            }
            o.threads = (int)v;
            break;
        case 'n': {
            cc_norm nm;
            cc_status nst;
            status_clear(&nst);
            if (norm_parse(optarg, &nm, &nst)) {
                fprintf(stderr, "cellcount import: --%s\n", nst.msg);
                return 2;
            }
            o.normalize = optarg;
            break;
        }
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "cellcount import: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (from) {
        if (o.images_dir || o.masks_dir || o.normalize) {
            fprintf(stderr, "cellcount import: --from takes no --images, --masks or "
                            "--normalize (the source's images, masks and normalisation)\n");
            return 2;
        }
        if (!o.out_path) {
            fprintf(stderr, "cellcount import: --out is required\n");
            return 2;
        }
        cc_status st;
        status_clear(&st);
        int64_t n = 0;
        if (import_from_dataset(&o, from, stdout, &n, &st)) {
            fprintf(stderr, "cellcount import: %s\n", st.msg);
            return 1;
        }
        return 0;
    }
    if (!o.images_dir || !o.out_path) {
        fprintf(stderr, "cellcount import: --images (or --from) and --out are required\n");
        usage(stderr);
        return 2;
    }
    if (!o.masks_dir)
        fprintf(stderr, "cellcount import: no --masks given: no image will have a mask\n");
    import_summary sum;
    cc_status st;
    status_clear(&st);
    if (import_run(&o, stderr, &sum, &st) != 0) {
        fprintf(stderr, "cellcount import: %s\n", st.msg);
        return 1;
    }
    import_summary_print(&sum, o.out_path, stdout);
    return 0;
}
