/* test_count_read.c - how count/saliency/import read images: the
 * --normalize modes against hand-computed values, 16-bit and 12-bit TIFFs
 * (and the 12-bit warning), multi-page and multi-sample TIFFs with
 * --page/--channel and their errors, the data set's normalize attribute,
 * the training-set statistics of the out-of-distribution flags
 * (ood_train_stats_write) and the flags themselves, and real BBBC005 files
 * from ../shared when it exists. */
#include <check.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <tiffio.h>
#include <unistd.h>

#include "src/infer/count_files.h"
#include "src/train/count_split.h"
#include "src/data/dataset.h"
#include "src/data/import.h"
#include "src/data/normalize.h"
#include "src/train/ood.h"
#include "src/run/runlog.h"
#include "src/data/tiff_io.h"
#include "tests/testmain.h"

static char g_dir[256];

static void tmp_setup(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/cc_test_count_read.XXXXXX");
    if (!mkdtemp(g_dir)) abort();
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
    (void)sb, (void)flag, (void)f;
    return remove(p);
}

static void tmp_teardown(void) { nftw(g_dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS); }

static char *tpath(const char *name)
{
    static char buf[8][600];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 600, "%s/%s", g_dir, name);
    return p;
}

/* Write a TIFF of npages pages, each w x h with spp samples of bps bits
 * (8 or 16), min-is-black unless photometric says otherwise; sample c of
 * pixel i on page p is val(p, i, c).  extra: the ExtraSamples type of the
 * samples beyond the first (gray) or the third (RGB); -1 writes no tag. */
typedef unsigned (*val_fn)(int page, int i, int c);
static void write_tiff(const char *path, int w, int h, int spp, int bps, int photometric,
                       int planar, int extra, int npages, val_fn val, int max_sample)
{
    TIFF *t = TIFFOpen(path, "w");
    ck_assert_ptr_nonnull(t);
    for (int p = 0; p < npages; p++) {
        TIFFSetField(t, TIFFTAG_IMAGEWIDTH, (uint32_t)w);
        TIFFSetField(t, TIFFTAG_IMAGELENGTH, (uint32_t)h);
        TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, (uint16_t)spp);
        TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, (uint16_t)bps);
        TIFFSetField(t, TIFFTAG_PHOTOMETRIC, (uint16_t)photometric);
        TIFFSetField(t, TIFFTAG_PLANARCONFIG, (uint16_t)planar);
        TIFFSetField(t, TIFFTAG_COMPRESSION, (uint16_t)COMPRESSION_NONE);
        TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, (uint32_t)2);
        if (max_sample > 0) TIFFSetField(t, TIFFTAG_MAXSAMPLEVALUE, (uint16_t)max_sample);
        const int color = photometric == PHOTOMETRIC_RGB ? 3 : 1;
        if (extra >= 0 && spp > color) {
            uint16_t types[8];
            for (int k = 0; k < spp - color; k++) types[k] = (uint16_t)extra;
            TIFFSetField(t, TIFFTAG_EXTRASAMPLES, (uint16_t)(spp - color), types);
        }
        const int contig = planar == PLANARCONFIG_CONTIG;
        const int per = contig ? spp : 1;
        unsigned char *row = malloc((size_t)w * per * (bps / 8));
        for (int s = 0; s < (contig ? 1 : spp); s++)
            for (int y = 0; y < h; y++) {
                for (int x = 0; x < w; x++)
                    for (int c = 0; c < per; c++) {
                        unsigned v = val(p, y * w + x, contig ? c : s);
                        size_t k = (size_t)x * per + c;
                        if (bps == 8) row[k] = (uint8_t)v;
                        else ((uint16_t *)row)[k] = (uint16_t)v;
                    }
                ck_assert(TIFFWriteScanline(t, row, (uint32_t)y, (uint16_t)s) == 1);
            }
        free(row);
        ck_assert(TIFFWriteDirectory(t));
    }
    TIFFClose(t);
}

/* The 4x2 image of the normalisation tests, 12-bit values. */
static const unsigned k_vals[8] = {0, 100, 200, 2000, 1000, 50, 3000, 4000};
static unsigned v_table(int p, int i, int c) { (void)p, (void)c; return k_vals[i]; }

static void expect_norm(const cc_image *img, const char *spec, const double *want, int64_t clipped)
{
    cc_norm n;
    cc_status st;
    status_clear(&st);
    ck_assert_msg(norm_parse(spec, &n, &st) == 0, "%s", st.msg);
    float out[8];
    norm_info ni;
    ck_assert_int_eq(norm_apply(img, &n, out, &ni, &st), 0);
    for (int i = 0; i < 8; i++)
        ck_assert_msg(fabs(out[i] - want[i]) <= 1e-6, "%s: pixel %d: %.8f, want %.8f", spec, i,
                      out[i], want[i]);
    ck_assert_int_eq(ni.vmax, 4000);
    ck_assert_int_eq(ni.clipped, clipped);
    char back[NORM_SPEC_LEN];
    norm_format(&n, back, sizeof back);
    cc_norm n2;
    ck_assert_int_eq(norm_parse(back, &n2, &st), 0);
    ck_assert(!norm_mismatch(&n, &n2) && n.kind == n2.kind && n.bits == n2.bits);
}

/* Every mode against values worked out by hand for k_vals, read from a
 * 16-bit TIFF holding 12-bit data. */
START_TEST(normalize_modes)
{
    write_tiff(tpath("n.tif"), 4, 2, 1, 16, PHOTOMETRIC_MINISBLACK, PLANARCONFIG_CONTIG, -1, 1,
               v_table, 0);
    cc_status st;
    status_clear(&st);
    cc_image img;
    ck_assert_msg(tiff_read_gray(tpath("n.tif"), &img, &st) == 0, "%s", st.msg);
    ck_assert_int_eq(img.bits, 16);
    ck_assert_int_eq(img.declared_max, 0);
    double want[8];
    for (int i = 0; i < 8; i++) want[i] = k_vals[i] / 65535.0;
    expect_norm(&img, "range", want, 0);
    for (int i = 0; i < 8; i++) want[i] = k_vals[i] / 4095.0;
    expect_norm(&img, "bits:12", want, 0);
    /* bits:10: 2000, 3000 and 4000 exceed 1023 and clamp to 1 */
    for (int i = 0; i < 8; i++) want[i] = fmin(1.0, k_vals[i] / 1023.0);
    expect_norm(&img, "bits:10", want, 3);
    for (int i = 0; i < 8; i++) want[i] = k_vals[i] / 4000.0;
    expect_norm(&img, "max", want, 0);
    /* sorted: 0 50 100 200 1000 2000 3000 4000; nearest rank k = ceil(q n):
     * P25 = 2nd = 50, P75 = 6th = 2000 */
    for (int i = 0; i < 8; i++) want[i] = fmin(1.0, fmax(0.0, (k_vals[i] - 50.0) / 1950.0));
    expect_norm(&img, "percentile:25,75", want, 0);
    /* P0 = the smallest, P100 = the largest: the same as max here */
    for (int i = 0; i < 8; i++) want[i] = k_vals[i] / 4000.0;
    expect_norm(&img, "percentile:0,100", want, 0);
    cc_image_free(&img);

    /* a constant image: max and percentile give 0, not NaN */
    uint16_t z[4] = {7, 7, 7, 7};
    cc_image c = {2, 2, 16, z, 0};
    float out[4];
    cc_norm n;
    ck_assert_int_eq(norm_parse("percentile:1,99", &n, &st), 0);
    ck_assert_int_eq(norm_apply(&c, &n, out, NULL, &st), 0);
    for (int i = 0; i < 4; i++) ck_assert(out[i] == 0.0f);
    z[0] = z[1] = z[2] = z[3] = 0;
    ck_assert_int_eq(norm_parse("max", &n, &st), 0);
    ck_assert_int_eq(norm_apply(&c, &n, out, NULL, &st), 0);
    for (int i = 0; i < 4; i++) ck_assert(out[i] == 0.0f);

    /* bad specs: an error saying what is accepted */
    static const char *bad[] = {"", "bits", "bits:0", "bits:17", "bits:12x", "percentile:50,10",
                                "percentile:1", "percentile:-1,5", "percentile:1,101", "Range",
                                "max:2"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        status_clear(&st);
        ck_assert_msg(norm_parse(bad[i], &n, &st) == -1, "'%s' accepted", bad[i]);
        ck_assert_msg(strstr(st.msg, "normalize") && strstr(st.msg, bad[i]), "%s", st.msg);
    }
    ck_assert_int_eq(norm_parse("percentile", &n, &st), 0);
    ck_assert(n.kind == NORM_PERCENTILE && n.lo == 1 && n.hi == 99);
    char buf[NORM_SPEC_LEN];
    ck_assert_int_eq(norm_parse("percentile:0.5,99.8", &n, &st), 0);
    norm_format(&n, buf, sizeof buf);
    ck_assert_str_eq(buf, "percentile:0.5,99.8");

    /* what counts as a mismatch between the user's mode and the run's */
    cc_norm r, b12, mx, p1, p2;
    norm_parse("range", &r, &st), norm_parse("bits:12", &b12, &st), norm_parse("max", &mx, &st);
    norm_parse("percentile:1,99", &p1, &st), norm_parse("percentile:2,98", &p2, &st);
    ck_assert(!norm_mismatch(&b12, &r) && !norm_mismatch(&r, &b12));
    ck_assert(norm_mismatch(&mx, &r) && norm_mismatch(&r, &mx) && norm_mismatch(&p1, &b12));
    ck_assert(norm_mismatch(&p1, &p2) && norm_mismatch(&mx, &p1) && !norm_mismatch(&p1, &p1));
}
END_TEST

static unsigned v_12bit(int p, int i, int c) { (void)p, (void)c; return (unsigned)(i * 97) % 4096; }
static unsigned v_16bit(int p, int i, int c) { (void)p, (void)c; return (unsigned)(i * 997) % 65536; }
static unsigned v_8bit(int p, int i, int c) { (void)p, (void)c; return (unsigned)(i * 7) % 256; }

/* Read a whole file of `text` into buf. */
static void slurp(FILE *f, char *buf, size_t len)
{
    fflush(f);
    rewind(f);
    size_t n = fread(buf, 1, len - 1, f);
    buf[n] = '\0';
}

/* 12-bit camera data in 16-bit TIFFs: range reads it 16x too dark and
 * warns once (then sums up), bits:12 reads it right and does not warn;
 * neither 8-bit files nor 16-bit files using the full range warn. */
START_TEST(twelve_bit_warning)
{
    const int w = 40, h = 30;
    write_tiff(tpath("a12.tif"), w, h, 1, 16, PHOTOMETRIC_MINISBLACK, PLANARCONFIG_CONTIG, -1, 1,
               v_12bit, 0);
    write_tiff(tpath("b12.tif"), w, h, 1, 16, PHOTOMETRIC_MINISBLACK, PLANARCONFIG_CONTIG, -1, 1,
               v_12bit, 4095);
    write_tiff(tpath("c16.tif"), w, h, 1, 16, PHOTOMETRIC_MINISBLACK, PLANARCONFIG_CONTIG, -1, 1,
               v_16bit, 0);
    write_tiff(tpath("d8.tif"), w, h, 1, 8, PHOTOMETRIC_MINISBLACK, PLANARCONFIG_CONTIG, -1, 1,
               v_8bit, 0);
    cc_status st;
    status_clear(&st);
    cc_image img;
    ck_assert_int_eq(tiff_read_gray(tpath("b12.tif"), &img, &st), 0);
    ck_assert_int_eq(img.declared_max, 4095);
    cc_image_free(&img);

    char *args[] = {tpath("a12.tif"), tpath("b12.tif"), tpath("c16.tif"), tpath("d8.tif")};
    static const char *modes[] = {"range", "bits:12"};
    for (int m = 0; m < 2; m++) {
        count_inputs in;
        int bad = 0;
        ck_assert_int_eq(count_inputs_collect(args, 4, &in, stderr, &bad, &st), 0);
        count_reader rd;
        memset(&rd, 0, sizeof rd);
        rd.page = rd.channel = -1;
        ck_assert_int_eq(norm_parse(modes[m], &rd.norm, &st), 0);
        FILE *log = tmpfile();
        float *x = malloc(sizeof(float) * 4 * w * h);
        int slot[4], next = 0;
        ck_assert_int_eq(count_inputs_next_batch(&in, &next, 4, h, w, x, slot, &rd, log, &bad), 4);
        count_reader_finish(&rd, 4, log);
        ck_assert_int_eq(bad, 0);
        for (int i = 0; i < w * h; i++) {
            const double v12 = v_12bit(0, i, 0);
            /* the same size: the resize is the identity */
            ck_assert_double_eq_tol(x[i], m == 0 ? v12 / 65535.0 : v12 / 4095.0, 1e-6);
            ck_assert(x[w * h + i] == x[i]);
            /* bits:12 leaves 8-bit files at v/255 */
            ck_assert_double_eq_tol(x[3 * w * h + i], v_8bit(0, i, 0) / 255.0, 1e-6);
        }
        char text[4096];
        slurp(log, text, sizeof text);
        fclose(log);
        if (m == 0) {
            /* once, naming the first file, then a summary */
            ck_assert_msg(strstr(text, args[0]) && strstr(text, "bits:12") &&
                          strstr(text, "4095"), "%s", text);
            ck_assert_msg(!strstr(text, args[1]) && !strstr(text, args[2]) && !strstr(text, args[3]),
                          "%s", text);
            ck_assert_msg(strstr(text, "2 of 4 images"), "%s", text);
            ck_assert_int_eq(rd.n_low12, 2);
        } else {
            /* only the real 16-bit file, clamped */
            ck_assert_msg(!strstr(text, "never exceed") && strstr(text, args[2]) &&
                          strstr(text, "clamped") && !strstr(text, args[0]), "%s", text);
        }
        free(x);
        count_inputs_free(&in);
    }
    /* bits:12 on real 16-bit data: clamped, and said once */
    count_inputs in;
    int bad = 0;
    ck_assert_int_eq(count_inputs_collect(args + 2, 1, &in, NULL, &bad, &st), 0);
    count_reader rd;
    memset(&rd, 0, sizeof rd);
    rd.page = rd.channel = -1;
    ck_assert_int_eq(norm_parse("bits:12", &rd.norm, &st), 0);
    FILE *log = tmpfile();
    float *x = malloc(sizeof(float) * w * h);
    int slot[1], next = 0;
    ck_assert_int_eq(count_inputs_next_batch(&in, &next, 1, h, w, x, slot, &rd, log, &bad), 1);
    char text[4096];
    slurp(log, text, sizeof text);
    fclose(log);
    ck_assert_msg(strstr(text, args[2]) && strstr(text, "clamped"), "%s", text);
    ck_assert_int_eq(rd.n_clipped, 1);
    free(x);
    count_inputs_free(&in);
}
END_TEST

static unsigned v_page(int p, int i, int c) { (void)c; return (unsigned)(10 * (p + 1) + i % 3); }
static unsigned v_chan(int p, int i, int c) { (void)p; return (unsigned)(100 * c + i % 50); }

/* Read path with page/channel and expect failure naming the file with
 * every one of the words. */
static void expect_error(const char *path, int page, int channel, const char *w1, const char *w2)
{
    cc_status st;
    status_clear(&st);
    cc_image img;
    ck_assert_msg(tiff_read_gray_at(path, page, channel, &img, &st) == -1, "%s accepted", path);
    ck_assert(img.px == NULL);
    ck_assert_msg(strstr(st.msg, path) && strstr(st.msg, w1) && (!w2 || strstr(st.msg, w2)),
                  "%s", st.msg);
}

START_TEST(pages_and_channels)
{
    const int w = 6, h = 5;
    cc_status st;
    status_clear(&st);
    cc_image img;
    /* three pages: --page needed, out of range named */
    write_tiff(tpath("p3.tif"), w, h, 1, 8, PHOTOMETRIC_MINISBLACK, PLANARCONFIG_CONTIG, -1, 3,
               v_page, 0);
    expect_error(tpath("p3.tif"), -1, -1, "multi-page TIFF (3 pages)", "--page");
    expect_error(tpath("p3.tif"), 3, -1, "page 3 out of range", "3 page(s)");
    for (int p = 0; p < 3; p++) {
        ck_assert_msg(tiff_read_gray_at(tpath("p3.tif"), p, -1, &img, &st) == 0, "%s", st.msg);
        for (int i = 0; i < w * h; i++) ck_assert_int_eq(img.px[i], v_page(p, i, 0));
        cc_image_free(&img);
    }
    /* single page: --page 0 is fine, 1 is not */
    write_tiff(tpath("p1.tif"), w, h, 1, 8, PHOTOMETRIC_MINISBLACK, PLANARCONFIG_CONTIG, -1, 1,
               v_page, 0);
    ck_assert_int_eq(tiff_read_gray_at(tpath("p1.tif"), 0, -1, &img, &st), 0);
    cc_image_free(&img);
    expect_error(tpath("p1.tif"), 1, -1, "page 1 out of range", "1 page(s)");

    /* three gray samples (unspecified extra samples), contiguous and planar */
    for (int planar = 0; planar < 2; planar++) {
        const char *f = tpath(planar ? "c3p.tif" : "c3.tif");
        write_tiff(f, w, h, 3, 16, PHOTOMETRIC_MINISBLACK,
                   planar ? PLANARCONFIG_SEPARATE : PLANARCONFIG_CONTIG, EXTRASAMPLE_UNSPECIFIED,
                   1, v_chan, 0);
        expect_error(f, -1, -1, "multi-channel TIFF (3 samples per pixel)", "--channel");
        expect_error(f, -1, 3, "channel 3 out of range", "3 sample(s)");
        for (int c = 0; c < 3; c++) {
            ck_assert_msg(tiff_read_gray_at(f, -1, c, &img, &st) == 0, "%s", st.msg);
            ck_assert_int_eq(img.bits, 16);
            for (int i = 0; i < w * h; i++) ck_assert_int_eq(img.px[i], v_chan(0, i, c));
            cc_image_free(&img);
        }
    }
    /* gray + alpha is one image: no channel needed */
    write_tiff(tpath("ga.tif"), w, h, 2, 8, PHOTOMETRIC_MINISBLACK, PLANARCONFIG_CONTIG,
               EXTRASAMPLE_UNASSALPHA, 1, v_chan, 0);
    ck_assert_msg(tiff_read_gray(tpath("ga.tif"), &img, &st) == 0, "%s", st.msg);
    for (int i = 0; i < w * h; i++) ck_assert_int_eq(img.px[i], v_chan(0, i, 0));
    cc_image_free(&img);
    /* RGB: luma by default, one sample as is with a channel */
    write_tiff(tpath("rgb.tif"), w, h, 3, 8, PHOTOMETRIC_RGB, PLANARCONFIG_CONTIG, -1, 1, v_chan,
               0);
    ck_assert_int_eq(tiff_read_gray_at(tpath("rgb.tif"), -1, 2, &img, &st), 0);
    for (int i = 0; i < w * h; i++) ck_assert_int_eq(img.px[i], v_chan(0, i, 2));
    cc_image_free(&img);
    ck_assert_int_eq(tiff_read_gray(tpath("rgb.tif"), &img, &st), 0);
    for (int i = 0; i < w * h; i++) {
        double y = floor(0.299 * v_chan(0, i, 0) + 0.587 * v_chan(0, i, 1) +
                         0.114 * v_chan(0, i, 2) + 0.5);
        ck_assert_int_eq(img.px[i], (int)y);
    }
    cc_image_free(&img);

    /* through count's loader: page 1 of p3 and channel 2 of c3, and a
     * multi-page file without --page is reported and skipped */
    char *args[] = {tpath("p3.tif"), tpath("c3.tif")};
    count_inputs in;
    int bad = 0;
    ck_assert_int_eq(count_inputs_collect(args, 2, &in, NULL, &bad, &st), 0);
    count_reader rd;
    memset(&rd, 0, sizeof rd);
    norm_parse("range", &rd.norm, &st);
    rd.page = 1;
    rd.channel = -1;
    float x[2 * 30];
    int slot[2], next = 0;
    FILE *log = tmpfile();
    ck_assert_int_eq(count_inputs_next_batch(&in, &next, 2, h, w, x, slot, &rd, log, &bad), 1);
    ck_assert_int_eq(bad, 1);   /* c3 has one page only */
    for (int i = 0; i < w * h; i++) ck_assert_double_eq_tol(x[i], v_page(1, i, 0) / 255.0, 1e-7);
    char text[2048];
    slurp(log, text, sizeof text);
    ck_assert_msg(strstr(text, args[1]) && strstr(text, "page 1 out of range") &&
                  strstr(text, "skipped"),
                  "%s", text);
    fclose(log);
    rd.page = 0;
    rd.channel = 2;
    next = bad = 0;
    /* channel 2: c3's third sample; p3 has one sample per pixel: skipped */
    ck_assert_int_eq(count_inputs_next_batch(&in, &next, 2, h, w, x, slot, &rd, NULL, &bad), 1);
    ck_assert_int_eq(slot[0], 1);
    ck_assert_int_eq(bad, 1);
    for (int i = 0; i < w * h; i++)
        ck_assert_double_eq_tol(x[i], v_chan(0, i, 2) / 65535.0, 1e-7);
    count_inputs_free(&in);
}
END_TEST

/* Import with --normalize bits:12: the data set stores float images scaled
 * by 1/4095 and records the mode; without it "range" is recorded. */
static unsigned v_import(int p, int i, int c) { (void)p, (void)c; return (unsigned)(i * 31) % 4096; }

START_TEST(import_records_normalize)
{
    ck_assert_int_eq(mkdir(tpath("img"), 0777), 0);
    char name[128];
    for (int k = 0; k < 4; k++) {
        snprintf(name, sizeof name, "img/SIMCEPImages_A0%d_C%d_F1_s01_w1.TIF", k + 1, 5 * k + 1);
        write_tiff(tpath(name), 16, 12, 1, 16, PHOTOMETRIC_MINISBLACK, PLANARCONFIG_CONTIG, -1, 1,
                   v_import, 0);
    }
    for (int m = 0; m < 2; m++) {
        import_opts o;
        import_opts_default(&o);
        o.stain = 1;   /* the files below are w1 */
        o.images_dir = tpath("img");
        o.out_path = tpath(m ? "b12.h5" : "range.h5");
        o.width = 16;
        o.height = 12;
        o.threads = 1;
        o.normalize = m ? "bits:12" : NULL;
        cc_status st;
        status_clear(&st);
        FILE *log = tmpfile();
        ck_assert_msg(import_run(&o, log, NULL, &st) == 0, "%s", st.msg);
        char text[2048];
        slurp(log, text, sizeof text);
        fclose(log);
        /* range on 12-bit data is warned about, bits:12 is not */
        ck_assert_msg(!strstr(text, "bits:12") == (m == 1), "%s", text);
        cc_dataset *ds = dataset_open(o.out_path, &st);
        ck_assert_msg(ds != NULL, "%s", st.msg);
        ck_assert_str_eq(ds->normalize, m ? "bits:12" : "range");
        float x[16 * 12];
        ck_assert_int_eq(dataset_read_images(ds, 0, 1, x, &st), 0);
        for (int i = 0; i < 16 * 12; i++)
            ck_assert_double_eq_tol(x[i], v_import(0, i, 0) / (m ? 4095.0 : 65535.0), 1e-6);
        dataset_close(ds);
    }
}
END_TEST

/* ood_train_stats_write against statistics computed by hand from a data
 * set of known images and a mask cache of known masks. */
START_TEST(ood_train_statistics)
{
    enum { N = 10, HH = 8, WW = 8 };
    cc_status st;
    status_clear(&st);
    dataset_writer *wr = dataset_writer_open(tpath("d.h5"), HH, WW, &st);
    ck_assert_ptr_nonnull(wr);
    dataset_writer_set_image_type(wr, DATASET_F32);
    dataset_writer_set_normalize(wr, "bits:12");
    float img[HH * WW];
    double want_int[N];
    for (int k = 0; k < N; k++) {
        /* image k: constant 0.05 * (k + 1), except in the validation rows */
        for (int i = 0; i < HH * WW; i++) img[i] = 0.05f * (float)(k + 1);
        want_int[k] = (double)(0.05f * (float)(k + 1));
        dataset_record r = {3 * k + 2, 1, 1, 1, k, (uint8_t)(k >= 8 ? DATASET_VAL : DATASET_TRAIN),
                            "x", NULL};
        ck_assert_int_eq(dataset_writer_append(wr, img, NULL, &r, &st), 0);
    }
    ck_assert_msg(dataset_writer_close(wr, 1, &st) == 0, "%s", st.msg);
    /* masks of the 8 training images: image k has k+1 of 16 mask pixels at
     * 1 (fraction (k+1)/16), one at -0.5 and one at 2 (clamped to 0 and 1) */
    mask_cache mc;
    memset(&mc, 0, sizeof mc);
    mc.n_index = N;
    mc.h = HH / 2, mc.w = WW / 2;
    mc.n = 8;
    mc.slot = malloc(sizeof(int64_t) * N);
    mc.masks = calloc(8 * 16, sizeof(float));
    for (int k = 0; k < N; k++) mc.slot[k] = k < 8 ? 7 - k : -1;   /* reversed rows */
    for (int k = 0; k < 8; k++) {
        float *m = mc.masks + 16 * (7 - k);
        for (int i = 0; i < k; i++) m[i] = 1;
        m[14] = -0.5f;
        m[15] = 2;
    }
    cc_session s;
    memset(&s, 0, sizeof s);
    config_defaults(&s.cfg);
    ck_assert_int_eq(runlog_create(&s.rl, tpath("run.h5"), &s.cfg, &st), 0);
    ck_assert_msg(ood_train_stats_write(&s, &mc, tpath("d.h5"), &st) == 0, "%s", st.msg);
    runlog_free(&s.rl);
    mask_cache_free(&mc);

    runlog rl;
    ck_assert_msg(runlog_open(&rl, tpath("run.h5"), &st) == 0, "%s", st.msg);
    ck_assert_str_eq(runlog_attr_get(&rl, "data.normalize"), "bits:12");
    ood_stats o;
    ood_stats_read(&rl, &o);
    runlog_free(&rl);
    ck_assert(o.have_train);
    ck_assert(!o.s[OOD_SIGMA].have);
    /* counts 2, 5, ..., 23 (training rows 0..7) */
    ck_assert(o.s[OOD_COUNT].have && o.s[OOD_COUNT].n == 8);
    ck_assert(o.s[OOD_COUNT].min == 2 && o.s[OOD_COUNT].max == 23);
    ck_assert(o.s[OOD_COUNT].q50 == 11);    /* 4th of 8 */
    ck_assert_double_eq_tol(o.s[OOD_INTENSITY].min, want_int[0], 1e-6);
    ck_assert_double_eq_tol(o.s[OOD_INTENSITY].max, want_int[7], 1e-6);
    ck_assert_double_eq_tol(o.s[OOD_FOREGROUND].min, 1 / 16.0, 1e-9);
    ck_assert_double_eq_tol(o.s[OOD_FOREGROUND].max, 8 / 16.0, 1e-9);
    /* area = fraction * 64 input pixels / count: (k+1)*4 / (3k+2) */
    double amin = 1e9, amax = 0;
    for (int k = 0; k < 8; k++) {
        double a = (k + 1) * 4.0 / (3 * k + 2);
        amin = fmin(amin, a), amax = fmax(amax, a);
    }
    ck_assert_double_eq_tol(o.s[OOD_AREA].min, amin, 1e-9);
    ck_assert_double_eq_tol(o.s[OOD_AREA].max, amax, 1e-9);

    /* the flags against these statistics */
    char buf[128];
    ood_image im = {{12, 0.2, 0.25, 2.0, NAN}};
    ood_flags(&o, &im, buf, sizeof buf);
    ck_assert_str_eq(buf, "ok");
    im.v[OOD_COUNT] = 23 + 1.05 + 0.01;     /* margin max(1, 5% of 21) = 1.05 */
    im.v[OOD_INTENSITY] = 0.05 - 0.035 - 0.001;    /* margin 10% of 0.35 */
    ood_flags(&o, &im, buf, sizeof buf);
    ck_assert_str_eq(buf, "count,intensity");
    im.v[OOD_COUNT] = 23 + 1.04;
    im.v[OOD_INTENSITY] = 0.015 + 0.001;
    im.v[OOD_FOREGROUND] = 0.9;
    im.v[OOD_AREA] = 0.1;
    ood_flags(&o, &im, buf, sizeof buf);
    ck_assert_str_eq(buf, "foreground,area");
    /* sigma: checked only with a range, upper side only */
    o.s[OOD_SIGMA] = (ood_summary){1, 10, 1.0, 1.0, 1.5, 2.0, 2.0};
    im = (ood_image){{12, 0.2, 0.25, 2.0, 0.01}};
    ood_flags(&o, &im, buf, sizeof buf);
    ck_assert_str_eq(buf, "ok");
    im.v[OOD_SIGMA] = 2.21;                 /* margin max(10% of 1, 10% of 2) = 0.2 */
    ood_flags(&o, &im, buf, sizeof buf);
    ck_assert_str_eq(buf, "sigma");
    o.have_train = 0;
    ood_flags(&o, &im, buf, sizeof buf);
    ck_assert_str_eq(buf, "n/a");
}
END_TEST

/* Real BBBC005 files (../shared/data/bbbc005-real, beside the source tree;
 * CC_SHARED_DIR overrides): every original TIFF reads as 696x520 8-bit;
 * turned into 12-bit data in a 16-bit TIFF (x16), bits:12 reads it back
 * as the 8-bit original within the 4095/4080 scale difference, while
 * range reads it 16x darker. */
START_TEST(real_files)
{
    const char *top = getenv("CC_TOP_SRCDIR"), *shared = getenv("CC_SHARED_DIR");
    char dir[1024];
    if (shared) snprintf(dir, sizeof dir, "%s/data/bbbc005-real/tiff/images", shared);
    else snprintf(dir, sizeof dir, "%s/../shared/data/bbbc005-real/tiff/images", top ? top : ".");
    struct stat sb;
    if (stat(dir, &sb) || !S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "SKIP real_files: %s not found (set CC_SHARED_DIR)\n", dir);
        return;
    }
    char *args[] = {dir};
    count_inputs in;
    int bad = 0;
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(count_inputs_collect(args, 1, &in, stderr, &bad, &st), 0);
    ck_assert_int_eq(bad, 0);
    ck_assert_int_ge(in.n, 48);
    cc_image img;
    for (int i = 0; i < in.n; i++) {
        ck_assert_msg(tiff_read_gray(in.paths[i], &img, &st) == 0, "%s", st.msg);
        ck_assert_int_eq(img.w, 696);
        ck_assert_int_eq(img.h, 520);
        ck_assert_int_eq(img.bits, 8);
        cc_image_free(&img);
    }
    /* the densest w2 image, as 12-bit data */
    const char *src = in.paths[in.n - 1];
    ck_assert_int_eq(tiff_read_gray(src, &img, &st), 0);
    const int w = img.w, h = img.h;
    uint16_t *px16 = malloc(sizeof(uint16_t) * (size_t)w * h);
    double mean8 = 0;
    for (int i = 0; i < w * h; i++) px16[i] = (uint16_t)(img.px[i] * 16), mean8 += img.px[i] / 255.0;
    mean8 /= (double)w * h;
    cc_image_free(&img);
    ck_assert_int_eq(tiff_write_gray(tpath("real12.tif"), w, h, 16, px16, &st), 0);
    free(px16);
    count_inputs_free(&in);
    char *one[] = {tpath("real12.tif")};
    ck_assert_int_eq(count_inputs_collect(one, 1, &in, stderr, &bad, &st), 0);
    float *x = malloc(sizeof(float) * 256 * 192);
    double mean[2];
    for (int m = 0; m < 2; m++) {
        count_reader rd;
        memset(&rd, 0, sizeof rd);
        rd.page = rd.channel = -1;
        norm_parse(m ? "bits:12" : "range", &rd.norm, &st);
        int slot, next = 0;
        ck_assert_int_eq(count_inputs_next_batch(&in, &next, 1, 192, 256, x, &slot, &rd, NULL, &bad),
                         1);
        ck_assert_int_eq(rd.n_low12, m ? 0 : 1);
        mean[m] = 0;
        for (int i = 0; i < 256 * 192; i++) mean[m] += x[i];
        mean[m] /= 256.0 * 192;
    }
    ck_assert_msg(mean8 > 0.02, "%s: mean %.4f", src, mean8);
    ck_assert_double_eq_tol(mean[1], mean8 * 4080.0 / 4095.0, 1e-4);
    ck_assert_double_eq_tol(mean[0] * 65535.0 / 4095.0, mean[1], 1e-4);
    free(x);
    count_inputs_free(&in);
}
END_TEST

static void add_case(Suite *s, const char *name, const TTest *test)
{
    TCase *tc = tcase_create(name);
    tcase_add_unchecked_fixture(tc, tmp_setup, tmp_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test);
    suite_add_tcase(s, tc);
}

int main(void)
{
    Suite *s = suite_create("count_read");
    add_case(s, "normalize", normalize_modes);
    add_case(s, "twelve_bit", twelve_bit_warning);
    add_case(s, "pages_channels", pages_and_channels);
    add_case(s, "import", import_records_normalize);
    add_case(s, "ood_stats", ood_train_statistics);
    add_case(s, "real_files", real_files);
    return tu_run(s);
}
