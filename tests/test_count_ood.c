/* test_count_ood.c - count_run end to end with the reading options and the
 * out-of-distribution column: n/a (and a note) for a run without
 * training-set statistics, ok for the images the statistics came from, the
 * names of the statistics for a crafted bright image and for a sigma range
 * that is too narrow; --normalize against the run's recorded mode (warning
 * on a mismatch) and --page picking a page of a multi-page file.  Part of
 * the test_count binary (fixture: countutil.h). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tiffio.h>

#include "src/infer/count_files.h"
#include "src/train/ood.h"
#include "src/run/runlog.h"
#include "src/data/tiff_io.h"
#include "tests/countutil.h"

/* Run count_run on args into a TSV and return the last column (ood) of
 * each row in ood[] and the counts in cnt[]; log text in logbuf. */
static void run_count(const run_fx *fx, char **args, int n, const count_read *rd, char ood[][64],
                      double *cnt, char *logbuf, size_t loglen)
{
    count_opts o = {NULL, NULL, tpath(fx->sub, "out.tsv"), 0, NULL, 16, H, W, rd};
    cc_status st;
    status_clear(&st);
    FILE *log = tmpfile();
    ck_assert_msg(count_run(&fx->cfg, &o, args, n, stdout, log, &st) == 0, "%s", st.msg);
    fflush(log);
    rewind(log);
    size_t got = fread(logbuf, 1, loglen - 1, log);
    logbuf[got] = '\0';
    fclose(log);
    FILE *f = fopen(o.output, "r");
    ck_assert_ptr_nonnull(f);
    char line[2048];
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
    ck_assert_str_eq(line, "file\tcount\tsigma\tlower95\tupper95\tood\n");
    for (int i = 0; i < n; i++) {
        ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
        line[strcspn(line, "\n")] = '\0';
        char *last = strrchr(line, '\t'), *c = strchr(line, '\t');
        ck_assert(last && c);
        snprintf(ood[i], 64, "%s", last + 1);
        cnt[i] = strtod(c + 1, NULL);
    }
    fclose(f);
}

static void write_stats(const run_fx *fx, const ood_summary *s, int nrows, const char *sigma_scale)
{
    static const char *cols[] = {"n", "min", "q01", "q50", "q99", "max"};
    char rp[CFG_STR + 16];
    snprintf(rp, sizeof rp, "%s/run.h5", fx->cfg.out_dir);
    cc_status st;
    status_clear(&st);
    runlog rl;
    ck_assert_int_eq(runlog_create(&rl, rp, &fx->cfg, &st), 0);
    runlog_table *t = runlog_table_fresh(&rl, "ood/train", 6, cols, &st);
    ck_assert_ptr_nonnull(t);
    for (int k = 0; k < nrows; k++) {
        double row[6] = {s[k].n, s[k].min, s[k].q01, s[k].q50, s[k].q99, s[k].max};
        if (s[k].have) ck_assert_int_eq(runlog_append(t, ood_stat_names[k], row, &st), 0);
    }
    if (sigma_scale) {
        ck_assert_int_eq(runlog_set_attr(&rl, "counter.sigma_scale", sigma_scale, &st), 0);
        t = runlog_table_fresh(&rl, "ood/sigma", 6, cols, &st);
        const ood_summary *g = &s[OOD_SIGMA];
        double row[6] = {g->n, g->min, g->q01, g->q50, g->q99, g->max};
        ck_assert_int_eq(runlog_append(t, "sigma", row, &st), 0);
    }
    ck_assert_int_eq(runlog_set_attr(&rl, "data.normalize", "range", &st), 0);
    ck_assert_msg(runlog_flush(&rl, &st) == 0, "%s", st.msg);
    runlog_free(&rl);
}

static unsigned char *constant_image(int w, int h, int v)
{
    unsigned char *px = malloc((size_t)w * h);
    memset(px, v, (size_t)w * h);
    return px;
}

START_TEST(count_ood_column)
{
    run_fx fx;
    make_run(&fx, "ood", "mask");
    cc_status st;
    status_clear(&st);
    unsigned char *px = constant_image(120, 80, 250);
    ck_assert_int_eq(tiff_write_gray(tpath("ood", "img/bright.tif"), 120, 80, 8, px, &st), 0);
    free(px);
    char *args[] = {tpath("ood", "img/a.tif"), tpath("ood", "img/b.tif"), tpath("ood", "img/c.tif"),
                    tpath("ood", "img/bright.tif")};
    char ood[4][64], logbuf[4096];
    double cnt[4];
    /* no run.h5: n/a, said once */
    run_count(&fx, args, 4, NULL, ood, cnt, logbuf, sizeof logbuf);
    for (int i = 0; i < 4; i++) ck_assert_str_eq(ood[i], "n/a");
    ck_assert_msg(strstr(logbuf, "no training-set statistics"), "%s", logbuf);

    /* statistics spanning exactly a, b and c, as training would record them */
    count_model cm;
    ck_assert_msg(count_model_open(&cm, &fx.cfg, H, W, NULL, NULL, 0, NULL, &st) == 0, "%s", st.msg);
    static float x[3 * H * W];
    double c[3], sg[3], fg[3], mean[3];
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(count_image_load(args[i], H, W, x + i * H * W, &st), 0);
        mean[i] = 0;
        for (int p = 0; p < H * W; p++) mean[i] += x[i * H * W + p];
        mean[i] /= H * W;
    }
    ck_assert_msg(count_model_predict_fg(&cm, x, 3, c, sg, NULL, NULL, fg, NULL, &st) == 0, "%s",
                  st.msg);
    count_model_close(&cm);
    ood_summary s[OOD_NSTATS];
    memset(s, 0, sizeof s);
    s[OOD_COUNT] = (ood_summary){1, 100, 0, 0, 1, 2, 3};
    const double *v[3] = {mean, fg, sg};
    const int which[3] = {OOD_INTENSITY, OOD_FOREGROUND, OOD_SIGMA};
    for (int k = 0; k < 3; k++) {
        double lo = fmin(v[k][0], fmin(v[k][1], v[k][2])), hi = fmax(v[k][0], fmax(v[k][1], v[k][2]));
        ck_assert(isfinite(lo) && lo >= 0 && hi <= 1.5 * 1e6);
        s[which[k]] = (ood_summary){1, 100, lo, lo, (lo + hi) / 2, hi, hi};
    }
    write_stats(&fx, s, OOD_AREA, "1");
    run_count(&fx, args, 4, NULL, ood, cnt, logbuf, sizeof logbuf);
    for (int i = 0; i < 3; i++) ck_assert_msg(!strcmp(ood[i], "ok"), "%s: %s", args[i], ood[i]);
    ck_assert_msg(strstr(ood[3], "intensity") != NULL, "bright image: %s", ood[3]);
    ck_assert_msg(!strstr(logbuf, "note:"), "%s", logbuf);

    /* a sigma range far below what these images give: sigma flagged */
    s[OOD_SIGMA] = (ood_summary){1, 100, 1e-4, 1e-4, 1e-4, 2e-4, 2e-4};
    write_stats(&fx, s, OOD_AREA, "1");
    run_count(&fx, args, 3, NULL, ood, cnt, logbuf, sizeof logbuf);
    for (int i = 0; i < 3; i++) ck_assert_msg(!strcmp(ood[i], "sigma"), "%s", ood[i]);
    /* without evaluate's sigma table: not checked, and said */
    write_stats(&fx, s, OOD_AREA, NULL);
    run_count(&fx, args, 3, NULL, ood, cnt, logbuf, sizeof logbuf);
    for (int i = 0; i < 3; i++) ck_assert_str_eq(ood[i], "ok");
    ck_assert_msg(strstr(logbuf, "no calibrated sigma range"), "%s", logbuf);
}
END_TEST

/* --normalize: the run's mode by default, a warning when a per-image mode
 * is asked of a range run; --page: page 1 of a 3-page file counts as the
 * single-page file holding that page. */
START_TEST(count_normalize_and_page)
{
    run_fx fx;
    make_run(&fx, "norm", "mask");
    cc_status st;
    status_clear(&st);
    /* b.tif's pixels as page 1 of 3 (pages 0 and 2 constant) */
    cc_image img;
    ck_assert_int_eq(tiff_read_gray(tpath("norm", "img/b.tif"), &img, &st), 0);
    TIFF *t = TIFFOpen(tpath("norm", "img/multi.tif"), "w");
    for (int p = 0; p < 3; p++) {
        TIFFSetField(t, TIFFTAG_IMAGEWIDTH, (uint32_t)img.w);
        TIFFSetField(t, TIFFTAG_IMAGELENGTH, (uint32_t)img.h);
        TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, (uint16_t)16);
        TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, (uint16_t)1);
        TIFFSetField(t, TIFFTAG_PHOTOMETRIC, (uint16_t)PHOTOMETRIC_MINISBLACK);
        uint16_t *row = malloc(sizeof(uint16_t) * (size_t)img.w);
        for (int y = 0; y < img.h; y++) {
            for (int x = 0; x < img.w; x++) row[x] = p == 1 ? img.px[y * img.w + x] : 1000;
            ck_assert(TIFFWriteScanline(t, row, (uint32_t)y, 0) == 1);
        }
        free(row);
        TIFFWriteDirectory(t);
    }
    TIFFClose(t);
    cc_image_free(&img);
    char *b[] = {tpath("norm", "img/b.tif")}, *multi[] = {tpath("norm", "img/multi.tif")};
    char *both[] = {b[0], multi[0]};
    char ood[1][64], logbuf[4096];
    double ref, cnt, pcnt;
    run_count(&fx, b, 1, NULL, ood, &ref, logbuf, sizeof logbuf);
    count_read rd = {NULL, 1, -1};
    run_count(&fx, multi, 1, &rd, ood, &cnt, logbuf, sizeof logbuf);
    ck_assert_msg(cnt == ref, "page 1: %.6f vs %.6f", cnt, ref);
    ck_assert_msg(!strstr(logbuf, "warning"), "%s", logbuf);
    /* without --page the multi-page file is skipped, naming the pages */
    count_opts o = {NULL, NULL, tpath("norm", "x.tsv"), 0, NULL, 16, H, W, NULL};
    FILE *log = tmpfile();
    ck_assert_int_eq(count_run(&fx.cfg, &o, both, 2, stdout, log, &st), 1);
    rewind(log);
    size_t got = fread(logbuf, 1, sizeof logbuf - 1, log);
    logbuf[got] = '\0';
    fclose(log);
    ck_assert_msg(strstr(logbuf, multi[0]) && strstr(logbuf, "3 pages") &&
                  strstr(logbuf, "--page"), "%s", logbuf);
    /* a per-image mode on a range run: warned, and the count changes */
    rd = (count_read){"percentile:5,95", -1, -1};
    run_count(&fx, b, 1, &rd, ood, &pcnt, logbuf, sizeof logbuf);
    ck_assert_msg(strstr(logbuf, "--normalize percentile:5,95") && strstr(logbuf, "range"), "%s",
                  logbuf);
    ck_assert(pcnt != ref);
    /* a run trained on such data: its mode by default, no warning */
    char rp[CFG_STR + 16];
    snprintf(rp, sizeof rp, "%s/run.h5", fx.cfg.out_dir);
    runlog rl;
    ck_assert_int_eq(runlog_create(&rl, rp, &fx.cfg, &st), 0);
    ck_assert_int_eq(runlog_set_attr(&rl, "data.normalize", "percentile:5,95", &st), 0);
    ck_assert_int_eq(runlog_flush(&rl, &st), 0);
    runlog_free(&rl);
    run_count(&fx, b, 1, NULL, ood, &cnt, logbuf, sizeof logbuf);
    ck_assert(cnt == pcnt);
    ck_assert_msg(!strstr(logbuf, "warning"), "%s", logbuf);
    rd.normalize = "bits:16";   /* absolute on a per-image run: warned */
    run_count(&fx, b, 1, &rd, ood, &cnt, logbuf, sizeof logbuf);
    ck_assert_msg(strstr(logbuf, "trained on images normalised with percentile:5,95 (run.h5)"),
                  "%s", logbuf);
    ck_assert(cnt == ref);      /* bits:16 on 16-bit data is range */
}
END_TEST

void count_ood_add_tests(Suite *s)
{
    count_add_case(s, "count_ood_column", count_ood_column);
    count_add_case(s, "count_normalize_and_page", count_normalize_and_page);
}
