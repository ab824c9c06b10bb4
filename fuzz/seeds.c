/* seeds.c - writes the seed corpora with the project's own writers
 * (TIFF, experiment and sweep INI, BBBC names) plus the crafted inputs of
 * issue 15.  Usage: fuzz-seeds OUTDIR (makes OUTDIR/<harness>/). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "src/data/bbbc_name.h"
#include "src/run/exp_config.h"
#include "src/data/tiff_io.h"

static void put(const char *dir, const char *name, const void *data, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f)) {
        fprintf(stderr, "fuzz-seeds: cannot write %s\n", path);
        exit(1);
    }
}

static void sub(char *out, size_t len, const char *root, const char *name)
{
    snprintf(out, len, "%s/%s", root, name);
    mkdir(out, 0777);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz-seeds OUTDIR\n");
        return 2;
    }
    mkdir(argv[1], 0777);
    char d[4096], path[4200];
    cc_status st;
    status_clear(&st);

    /* TIFF: our writer at 8, 16 and 32 bits */
    sub(d, sizeof d, argv[1], "tiff");
    static uint8_t px8[16 * 12];
    static uint16_t px16[16 * 12];
    static float px32[16 * 12];
    for (int i = 0; i < 16 * 12; i++) {
        px8[i] = (uint8_t)(i * 7);
        px16[i] = (uint16_t)(i * 331);
        px32[i] = (float)i / 192.0f;
    }
    const void *pxs[3] = {px8, px16, px32};
    const int bits[3] = {8, 16, 32};
    for (int k = 0; k < 3; k++) {
        snprintf(path, sizeof path, "%s/writer_%d.tif", d, bits[k]);
        if (tiff_write_gray(path, 16, 12, bits[k], pxs[k], &st)) {
            fprintf(stderr, "fuzz-seeds: %s\n", st.msg);
            return 1;
        }
    }

    /* INI: the resolved default configuration, a sweep, and issue 15's
     * long comment and key before any section */
    sub(d, sizeof d, argv[1], "ini");
    cc_config c;
    config_defaults(&c);
    snprintf(path, sizeof path, "%s/defaults.ini", d);
    FILE *f = fopen(path, "w");
    if (!f) return 1;
    config_write(&c, f);
    fclose(f);
    static const char sweep[] = "[sweep]\nbase = base.ini\nout_dir = runs/s\nstages = fpn,counter\n"
                                "mode = grid\ngrid.fpn.width = 8,16\nset.fpn_train.epochs = 2\n";
    put(d, "sweep.ini", sweep, sizeof sweep - 1);
    char longc[600] = "[fpn_train]\n; ";
    memset(longc + strlen(longc), 'x', 400);
    strcat(longc, " lr = 7\n");
    put(d, "long_comment.ini", longc, strlen(longc));
    static const char nosec[] = "lr = 1\n[fpn]\nwidth = 8 ; inline\n";
    put(d, "key_before_section.ini", nosec, sizeof nosec - 1);

    /* BBBC names: our formatter, and the over-long number */
    sub(d, sizeof d, argv[1], "bbbc");
    bbbc_name nm = {0};
    if (bbbc_name_parse("SIMCEPImages_A05_C18_F1_s01_w1.TIF", &nm, &st) == 0) {
        char name[256];
        bbbc_name_format(&nm, name, sizeof name);
        put(d, "formatted", name, strlen(name));
    }
    static const char big[] = "SIMCEPImages_A05_C99999999999_F1_s01_w1.TIF";
    put(d, "big_number", big, sizeof big - 1);

    /* HDF5 harnesses read a recipe, not a file: all-zero bytes mean "every
     * choice valid"; the crafted recipes select issue 15's cases. */
    static const char *h5[] = {"runlog", "dataset", "checkpoint"};
    for (int k = 0; k < 3; k++) {
        sub(d, sizeof d, argv[1], h5[k]);
        uint8_t valid[64];
        memset(valid, 1, sizeof valid);
        put(d, "valid", valid, sizeof valid);
        uint8_t arrays[64];
        memset(arrays, 10, sizeof arrays);     /* string attributes as arrays */
        put(d, "string_arrays", arrays, sizeof arrays);
        uint8_t lengths[64];
        memset(lengths, 7, sizeof lengths);    /* data sets of other lengths */
        put(d, "other_lengths", lengths, sizeof lengths);
    }
    return 0;
}
