/* cli_stats.c - `cellcount stats`: the statistics of docs/DATA.md's 'Real
 * images' table for a TIFF tree or a data set (src/data/stats.h), so that a
 * simulated set can be held against real files. */
#include "src/cli/cli.h"
#include "src/data/stats.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
"usage: cellcount stats [--csv] [--stain 1|2] [--focus F] [--masks DIR] DIR|FILE.h5...\n\n"
"Print image statistics per stain, focus level and cell count, the figures of\n"
"the 'Real images' table of docs/DATA.md, for BBBC005-style TIFFs or a\n"
"cellcount data set, real or simulated:\n"
"  mean (0-255), mean/C, max, bg (median of the pixels at or below 30%% of the\n"
"  image max), >30 (fraction of pixels above 30), blobs and bl/C (8-connected\n"
"  components above 30%% of the image max), their area quantiles a_p10, a_med,\n"
"  a_p90, a_max in px at 696x520 (each pixel of a w x h image counts as\n"
"  696*520/(w*h) px), cover (ground-truth mask fraction, where masks exist).\n"
"Rows average over the images of a group.\n\n"
"  DIR              BBBC005 tree: DIR/images/*.TIF (or DIR/*.TIF) named\n"
"                   SIMCEPImages_<well>_C<c>_F<f>_s<s>_w<w>.TIF; masks from\n"
"                   DIR/ground_truth under the F1 names, when present\n"
"  FILE.h5          data set written by `cellcount import` or `simulate --out`\n"
"  --masks DIR      mask folder for a TIFF source (default DIR/ground_truth)\n"
"  --stain N        only stain N (1 = nuclei, 2 = cell bodies)\n"
"  --focus F        only focus level F\n"
"  --csv            CSV with a header line instead of the table\n"
"  --help           this text\n\n"
"Several sources are pooled into one table.\n"
"Exit status: 0 ok, 1 runtime error, 2 usage.\n");
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcasecmp(s + a - b, suf) == 0;
}

int cli_stats(int argc, char **argv)
{
    static const struct option longs[] = {{"csv", no_argument, 0, 'c'},
                                          {"stain", required_argument, 0, 'w'},
                                          {"focus", required_argument, 0, 'f'},
                                          {"masks", required_argument, 0, 'm'},
                                          {"help", no_argument, 0, 'h'},
                                          {0, 0, 0, 0}};
    int csv = 0, stain = 0, focus = 0, c;
    const char *masks = NULL;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        char *end;
        long v;
        switch (c) {
        case 'c': csv = 1; break;
        case 'w':
        case 'f':
            errno = 0;
            v = strtol(optarg, &end, 10);
            if (errno || *end || end == optarg || v < 1 || v > (c == 'w' ? 2 : 1000)) {
                fprintf(stderr, "cellcount stats: --%s '%s' is not %s\n",
                        c == 'w' ? "stain" : "focus", optarg,
                        c == 'w' ? "1 or 2" : "a focus level 1..1000");
                return 2;
            }
            if (c == 'w') stain = (int)v;
            else focus = (int)v;
            break;
        case 'm': masks = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "cellcount stats: give a TIFF folder or a data set (.h5)\n");
        usage(stderr);
        return 2;
    }
    stats_table t;
    stats_table_init(&t);
    cc_status st;
    status_clear(&st);
    int rc = 0;
    for (int i = optind; i < argc && !rc; i++) {
        if (ends_with(argv[i], ".h5") || ends_with(argv[i], ".hdf5")) {
            rc = stats_add_dataset(&t, argv[i], stain, focus, &st);
        } else {
            long skipped = 0;
            rc = stats_add_tiff_dir(&t, argv[i], masks, stain, focus, &skipped, &st);
            if (!rc && skipped)
                fprintf(stderr, "cellcount stats: %s: skipped %ld files without a BBBC005 name\n",
                        argv[i], skipped);
        }
    }
    if (!rc) stats_table_print(&t, stdout, csv);
    else fprintf(stderr, "cellcount stats: %s\n", st.msg);
    stats_table_free(&t);
    return rc ? 1 : 0;
}
