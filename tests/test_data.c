/* test_data.c - data pipeline: BBBC names, TIFF I/O, area resize, HDF5 data
 * set, scene split, import, loader. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <hdf5.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <tiffio.h>
#include <time.h>
#include <unistd.h>

#include "autodiff/rng.h"
#include "src/data/bbbc_name.h"
#include "src/cli/cli.h"
#include "src/data/dataset.h"
#include "src/data/import.h"
#include "src/data/loader.h"
#include "src/data/resize.h"
#include "src/data/tiff_io.h"
#include "tests/datautil.h"
#include "tests/fulldisk.h"
#include "tests/testmain.h"

/* One temporary directory per test case, made and removed by the parent
 * (unchecked fixture), so it goes away even when a forked test fails. */
char g_dir[256];

void tmp_setup(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/cc_test_data.XXXXXX");
    if (!mkdtemp(g_dir)) abort();
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
    (void)sb; (void)flag; (void)f;
    return remove(p);
}

void tmp_teardown(void) { nftw(g_dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS); }

char *tpath(const char *name)
{
    static char buf[8][512];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 512, "%s/%s", g_dir, name);
    return p;
}

int count_entries(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | wc -l", dir);
    FILE *f = popen(cmd, "r");
    int n = -1;
    if (f) { if (fscanf(f, "%d", &n) != 1) n = -1; pclose(f); }
    return n;
}

/* ---- names ---- */

START_TEST(test_name_parse_valid)
{
    bbbc_name n;
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(bbbc_name_parse("SIMCEPImages_A05_C18_F1_s01_w1.TIF", &n, &st), 0);
    ck_assert_int_eq(n.well_row, 'A');
    ck_assert_int_eq(n.well_col, 5);
    ck_assert_int_eq(n.count, 18);
    ck_assert_int_eq(n.focus, 1);
    ck_assert_int_eq(n.site, 1);
    ck_assert_int_eq(n.stain, 1);
    ck_assert_int_eq(bbbc_name_parse("/x/y/SIMCEPImages_P24_C100_F48_s25_w2.tif", &n, &st), 0);
    ck_assert_int_eq(n.well_row, 'P');
    ck_assert_int_eq(n.well_col, 24);
    ck_assert_int_eq(n.count, 100);
    ck_assert_int_eq(n.focus, 48);
    ck_assert_int_eq(n.site, 25);
    ck_assert_int_eq(n.stain, 2);
    ck_assert_int_eq(bbbc_name_parse("SIMCEPImages_C03_C10_F7_s13_w1.Tif", &n, &st), 0);
    ck_assert_int_eq(st.failed, 0);

    /* format: canonical and round trip */
    char buf[128];
    bbbc_name m = {'B', 7, 27, 4, 3, 2};
    ck_assert_int_gt(bbbc_name_format(&m, buf, sizeof buf), 0);
    ck_assert_str_eq(buf, "SIMCEPImages_B07_C27_F4_s03_w2.TIF");
    ck_assert_int_eq(bbbc_name_parse(buf, &n, &st), 0);
    ck_assert(n.well_row == m.well_row && n.well_col == m.well_col && n.count == m.count &&
              n.focus == m.focus && n.site == m.site && n.stain == m.stain);
    ck_assert_int_eq(bbbc_name_format(&m, buf, 10), -1);
    char row;
    int col;
    ck_assert_int_eq(bbbc_well_for(18, 1, &row, &col), 0);
    ck_assert_int_eq(row, 'A');
    ck_assert_int_eq(col, 5);
    ck_assert_int_eq(bbbc_well_for(100, 48, &row, &col), 0);
    ck_assert_int_eq(row, 'P');
    ck_assert_int_eq(col, 24);
    ck_assert_int_eq(bbbc_well_for(19, 1, &row, &col), -1);
}
END_TEST

START_TEST(test_name_parse_malformed)
{
    static const char *bad[] = {
        "SIMCEPImages_A05_C18_F1_s01_w1.png",   "SIMCEPImages_A05_C18_F1_s01.TIF",
        "simcepimages_A05_C18_F1_s01_w1.TIF",   "SIMCEPImages_a05_C18_F1_s01_w1.TIF",
        "SIMCEPImages_A05_Cx_F1_s01_w1.TIF",    "SIMCEPImages_A05_C18_F0_s01_w1.TIF",
        "SIMCEPImages_A05_C18_F1_s01_w1.TIF.bak", "SIMCEPImages_A_C18_F1_s01_w1.TIF",
        "SIMCEPImages_A05_C18_F1_s01_w1",       "SIMCEPImages_A05_C1234567_F1_s01_w1.TIF",
        "", "README.txt"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bbbc_name n;
        cc_status st;
        status_clear(&st);
        ck_assert_msg(bbbc_name_parse(bad[i], &n, &st) == -1, "accepted '%s'", bad[i]);
        ck_assert(st.failed);
        ck_assert_msg(strstr(st.msg, "malformed") != NULL, "%s", st.msg);
    }
}
END_TEST

/* ---- TIFF ---- */

/* Write a TIFF with libtiff directly (layouts tiff_write_gray never makes). */
static void write_custom(const char *path, int w, int h, int spp, int bps, int photometric,
                         int comp, int tile, int planar, int sfmt, const void *data)
{
    TIFF *t = TIFFOpen(path, "w");
    ck_assert(t != NULL);
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, (uint32_t)w);
    TIFFSetField(t, TIFFTAG_IMAGELENGTH, (uint32_t)h);
    TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, (uint16_t)spp);
    TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, (uint16_t)bps);
    TIFFSetField(t, TIFFTAG_PHOTOMETRIC, (uint16_t)photometric);
    TIFFSetField(t, TIFFTAG_COMPRESSION, (uint16_t)comp);
    TIFFSetField(t, TIFFTAG_PLANARCONFIG, (uint16_t)planar);
    TIFFSetField(t, TIFFTAG_SAMPLEFORMAT, (uint16_t)sfmt);
    const int bpsamp = bps / 8;
    if (tile) {
        TIFFSetField(t, TIFFTAG_TILEWIDTH, (uint32_t)tile);
        TIFFSetField(t, TIFFTAG_TILELENGTH, (uint32_t)tile);
        const int np = planar == PLANARCONFIG_SEPARATE ? spp : 1;
        const int pp = planar == PLANARCONFIG_SEPARATE ? 1 : spp;
        unsigned char *buf = malloc((size_t)TIFFTileSize(t));
        for (int p = 0; p < np; p++)
            for (int ty = 0; ty < h; ty += tile)
                for (int tx = 0; tx < w; tx += tile) {
                    memset(buf, 0, (size_t)TIFFTileSize(t));
                    for (int y = ty; y < ty + tile && y < h; y++)
                        for (int x = tx; x < tx + tile && x < w; x++)
                            for (int c = 0; c < pp; c++)
                                memcpy(buf + (((size_t)(y - ty) * tile + (x - tx)) * pp + c) * bpsamp,
                                       (const unsigned char *)data +
                                           (((size_t)y * w + x) * spp + (np > 1 ? p : c)) * bpsamp,
                                       (size_t)bpsamp);
                    ck_assert(TIFFWriteTile(t, buf, (uint32_t)tx, (uint32_t)ty, 0, (uint16_t)p) > 0);
                }
        free(buf);
    } else {
        ck_assert_int_eq(planar, PLANARCONFIG_CONTIG);
        TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, (uint32_t)3);
        for (int y = 0; y < h; y++)
            ck_assert(TIFFWriteScanline(t, (unsigned char *)data + (size_t)y * w * spp * bpsamp,
                                        (uint32_t)y, 0) == 1);
    }
    TIFFClose(t);
}

START_TEST(test_tiff_roundtrip_8_16)
{
    const int w = 37, h = 23;
    uint8_t *a8 = malloc((size_t)w * h);
    uint16_t *a16 = malloc((size_t)w * h * 2);
    cc_rng r;
    rng_seed(&r, 5, 0);
    for (int i = 0; i < w * h; i++) {
        a8[i] = (uint8_t)rng_below(&r, 256);
        a16[i] = (uint16_t)rng_below(&r, 65536);
    }
    a8[0] = 0; a8[1] = 255; a16[0] = 0; a16[1] = 65535;
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(tiff_write_gray(tpath("r8.tif"), w, h, 8, a8, &st), 0);
    ck_assert_int_eq(tiff_write_gray(tpath("r16.tif"), w, h, 16, a16, &st), 0);
    cc_image im;
    ck_assert_int_eq(tiff_read_gray(tpath("r8.tif"), &im, &st), 0);
    ck_assert_int_eq(im.w, w);
    ck_assert_int_eq(im.h, h);
    ck_assert_int_eq(im.bits, 8);
    for (int i = 0; i < w * h; i++) ck_assert_int_eq(im.px[i], a8[i]);
    float *f = malloc((size_t)w * h * sizeof *f);
    cc_image_to_float(&im, f);
    ck_assert_float_eq(f[0], 0.0f);
    ck_assert_float_eq(f[1], 1.0f);
    cc_image_free(&im);
    ck_assert_int_eq(tiff_read_gray(tpath("r16.tif"), &im, &st), 0);
    ck_assert_int_eq(im.bits, 16);
    for (int i = 0; i < w * h; i++) ck_assert_int_eq(im.px[i], a16[i]);
    cc_image_to_float(&im, f);
    ck_assert_float_eq(f[1], 1.0f);
    cc_image_free(&im);
    /* PackBits for 8 bit, as BBBC005 */
    TIFF *t = TIFFOpen(tpath("r8.tif"), "r");
    uint16_t comp = 0;
    TIFFGetField(t, TIFFTAG_COMPRESSION, &comp);
    TIFFClose(t);
    ck_assert_int_eq(comp, COMPRESSION_PACKBITS);
    ck_assert_int_eq(st.failed, 0);
    ck_assert_int_eq(count_entries(g_dir), 2);  /* no temporaries left */
    free(a8); free(a16); free(f);
}
END_TEST

START_TEST(test_tiff_layouts)
{
    const int w = 45, h = 29;     /* not multiples of the tile size */
    uint8_t *g8 = malloc((size_t)w * h);
    uint16_t *g16 = malloc((size_t)w * h * 2);
    uint8_t *rgb = malloc((size_t)w * h * 4);
    for (int i = 0; i < w * h; i++) {
        g8[i] = (uint8_t)(i * 7 + 3);
        g16[i] = (uint16_t)(i * 1031 + 17);
        rgb[4 * i] = (uint8_t)(i * 3); rgb[4 * i + 1] = (uint8_t)(i * 5 + 1);
        rgb[4 * i + 2] = (uint8_t)(i * 11 + 2); rgb[4 * i + 3] = 200;
    }
    cc_status st;
    status_clear(&st);
    cc_image im;
    /* min-is-white: stored v means gray max - v */
    write_custom(tpath("miw.tif"), w, h, 1, 8, PHOTOMETRIC_MINISWHITE, COMPRESSION_NONE, 0,
                 PLANARCONFIG_CONTIG, SAMPLEFORMAT_UINT, g8);
    ck_assert_int_eq(tiff_read_gray(tpath("miw.tif"), &im, &st), 0);
    for (int i = 0; i < w * h; i++) ck_assert_int_eq(im.px[i], 255 - g8[i]);
    cc_image_free(&im);
    /* tiled + LZW, tiled + Deflate 16-bit, strips + LZW */
    write_custom(tpath("tl.tif"), w, h, 1, 8, PHOTOMETRIC_MINISBLACK, COMPRESSION_LZW, 16,
                 PLANARCONFIG_CONTIG, SAMPLEFORMAT_UINT, g8);
    ck_assert_int_eq(tiff_read_gray(tpath("tl.tif"), &im, &st), 0);
    for (int i = 0; i < w * h; i++) ck_assert_int_eq(im.px[i], g8[i]);
    cc_image_free(&im);
    write_custom(tpath("td.tif"), w, h, 1, 16, PHOTOMETRIC_MINISBLACK,
                 COMPRESSION_ADOBE_DEFLATE, 32, PLANARCONFIG_CONTIG, SAMPLEFORMAT_UINT, g16);
    ck_assert_int_eq(tiff_read_gray(tpath("td.tif"), &im, &st), 0);
    ck_assert_int_eq(im.bits, 16);
    for (int i = 0; i < w * h; i++) ck_assert_int_eq(im.px[i], g16[i]);
    cc_image_free(&im);
    write_custom(tpath("sl.tif"), w, h, 1, 16, PHOTOMETRIC_MINISBLACK, COMPRESSION_LZW, 0,
                 PLANARCONFIG_CONTIG, SAMPLEFORMAT_UINT, g16);
    ck_assert_int_eq(tiff_read_gray(tpath("sl.tif"), &im, &st), 0);
    for (int i = 0; i < w * h; i++) ck_assert_int_eq(im.px[i], g16[i]);
    cc_image_free(&im);
    /* RGBA contiguous strips and RGB separate-plane tiles -> BT.601 luma */
    write_custom(tpath("rgba.tif"), w, h, 4, 8, PHOTOMETRIC_RGB, COMPRESSION_NONE, 0,
                 PLANARCONFIG_CONTIG, SAMPLEFORMAT_UINT, rgb);
    ck_assert_int_eq(tiff_read_gray(tpath("rgba.tif"), &im, &st), 0);
    for (int i = 0; i < w * h; i++) {
        int y = (int)floor(0.299 * rgb[4 * i] + 0.587 * rgb[4 * i + 1] + 0.114 * rgb[4 * i + 2] + 0.5);
        ck_assert_int_eq(im.px[i], y);
    }
    cc_image_free(&im);
    write_custom(tpath("rgbp.tif"), w, h, 4, 8, PHOTOMETRIC_RGB, COMPRESSION_ADOBE_DEFLATE,
                 16, PLANARCONFIG_SEPARATE, SAMPLEFORMAT_UINT, rgb);
    ck_assert_int_eq(tiff_read_gray(tpath("rgbp.tif"), &im, &st), 0);
    for (int i = 0; i < w * h; i++) {
        int y = (int)floor(0.299 * rgb[4 * i] + 0.587 * rgb[4 * i + 1] + 0.114 * rgb[4 * i + 2] + 0.5);
        ck_assert_int_eq(im.px[i], y);
    }
    cc_image_free(&im);
    ck_assert_int_eq(st.failed, 0);
    free(g8); free(g16); free(rgb);
}
END_TEST

/* Read `path`, expect a failure whose message names the file and holds
 * `what`; the image must come back empty. */
static void expect_refused(const char *path, const char *what)
{
    cc_status st;
    status_clear(&st);
    cc_image im = {.w = 99, .px = NULL};
    ck_assert_msg(tiff_read_gray(path, &im, &st) == -1, "%s was accepted", path);
    ck_assert(im.px == NULL);
    ck_assert_msg(strstr(st.msg, path) != NULL, "message does not name the file: %s", st.msg);
    ck_assert_msg(strstr(st.msg, what) != NULL, "expected '%s' in: %s", what, st.msg);
}

START_TEST(test_tiff_refused)
{
    /* libtiff must not print: send stderr to a file and check it stays empty */
    int fd = open(tpath("stderr.txt"), O_CREAT | O_WRONLY | O_TRUNC, 0644);
    ck_assert(fd >= 0);
    int saved = dup(2);
    dup2(fd, 2);

    const int w = 20, h = 10;
    float fdata[200];
    uint8_t g8[200 * 2];
    for (int i = 0; i < 200; i++) { fdata[i] = (float)i; g8[i] = (uint8_t)i; g8[200 + i] = 1; }
    write_custom(tpath("float.tif"), w, h, 1, 32, PHOTOMETRIC_MINISBLACK, COMPRESSION_NONE, 0,
                 PLANARCONFIG_CONTIG, SAMPLEFORMAT_IEEEFP, fdata);
    expect_refused(tpath("float.tif"), "floating-point");
    write_custom(tpath("int.tif"), w, h, 1, 8, PHOTOMETRIC_MINISBLACK, COMPRESSION_NONE, 0,
                 PLANARCONFIG_CONTIG, SAMPLEFORMAT_INT, g8);
    expect_refused(tpath("int.tif"), "signed");
    /* palette */
    TIFF *t = TIFFOpen(tpath("pal.tif"), "w");
    uint16_t cmap[3][256] = {{0}};
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, (uint32_t)w);
    TIFFSetField(t, TIFFTAG_IMAGELENGTH, (uint32_t)h);
    TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, (uint16_t)8);
    TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, (uint16_t)1);
    TIFFSetField(t, TIFFTAG_PHOTOMETRIC, (uint16_t)PHOTOMETRIC_PALETTE);
    TIFFSetField(t, TIFFTAG_COLORMAP, cmap[0], cmap[1], cmap[2]);
    for (int y = 0; y < h; y++) TIFFWriteScanline(t, g8 + y * w, (uint32_t)y, 0);
    TIFFClose(t);
    expect_refused(tpath("pal.tif"), "palette");
    /* two pages */
    t = TIFFOpen(tpath("multi.tif"), "w");
    for (int page = 0; page < 2; page++) {
        TIFFSetField(t, TIFFTAG_IMAGEWIDTH, (uint32_t)w);
        TIFFSetField(t, TIFFTAG_IMAGELENGTH, (uint32_t)h);
        TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, (uint16_t)8);
        TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, (uint16_t)1);
        TIFFSetField(t, TIFFTAG_PHOTOMETRIC, (uint16_t)PHOTOMETRIC_MINISBLACK);
        for (int y = 0; y < h; y++) TIFFWriteScanline(t, g8 + y * w, (uint32_t)y, 0);
        TIFFWriteDirectory(t);
    }
    TIFFClose(t);
    expect_refused(tpath("multi.tif"), "multi-page");
    /* strip data shorter than the image needs (valid directory) */
    t = TIFFOpen(tpath("short.tif"), "w");
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, (uint32_t)w);
    TIFFSetField(t, TIFFTAG_IMAGELENGTH, (uint32_t)h);
    TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, (uint16_t)8);
    TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, (uint16_t)1);
    TIFFSetField(t, TIFFTAG_PHOTOMETRIC, (uint16_t)PHOTOMETRIC_MINISBLACK);
    TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, (uint32_t)h);
    TIFFWriteRawStrip(t, 0, g8, 50);
    TIFFClose(t);
    expect_refused(tpath("short.tif"), "truncated");
    /* garbage, empty, missing */
    FILE *f = fopen(tpath("garbage.tif"), "wb");
    for (int i = 0; i < 1000; i++) fputc((i * 37 + 11) & 255, f);
    fclose(f);
    expect_refused(tpath("garbage.tif"), "not a readable TIFF");
    f = fopen(tpath("empty.tif"), "wb");
    fclose(f);
    expect_refused(tpath("empty.tif"), "TIFF");
    expect_refused(tpath("missing.tif"), "No such file");
    /* truncated at many points: always a clean error */
    uint8_t big[64 * 48];
    for (int i = 0; i < 64 * 48; i++) big[i] = (uint8_t)((i * 13) ^ (i >> 5));
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(tiff_write_gray(tpath("full.tif"), 64, 48, 8, big, &st), 0);
    struct stat sb;
    stat(tpath("full.tif"), &sb);
    for (off_t cut = 0; cut < sb.st_size; cut += 53) {
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "head -c %lld '%s' > '%s'", (long long)cut, tpath("full.tif"),
                 tpath("cut.tif"));
        ck_assert_int_eq(system(cmd), 0);
        expect_refused(tpath("cut.tif"), "TIFF");
    }
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(fd);
    stat(tpath("stderr.txt"), &sb);
    ck_assert_msg(sb.st_size == 0, "libtiff printed %lld bytes to stderr", (long long)sb.st_size);
}
END_TEST

/* ---- resize ---- */

/* Naive exact reference: 2-D overlap of every (output, input) pixel pair. */
static void resize_ref(const float *src, int sw, int sh, double *dst, int dw, int dh)
{
    const double fx = (double)sw / dw, fy = (double)sh / dh;
    for (int oy = 0; oy < dh; oy++)
        for (int ox = 0; ox < dw; ox++) {
            double acc = 0, area = 0;
            for (int y = 0; y < sh; y++)
                for (int x = 0; x < sw; x++) {
                    double ox0 = fmax(ox * fx, x), ox1 = fmin((ox + 1) * fx, x + 1.0);
                    double oy0 = fmax(oy * fy, y), oy1 = fmin((oy + 1) * fy, y + 1.0);
                    if (ox1 <= ox0 || oy1 <= oy0) continue;
                    acc += (ox1 - ox0) * (oy1 - oy0) * src[y * sw + x];
                    area += (ox1 - ox0) * (oy1 - oy0);
                }
            dst[oy * dw + ox] = acc / area;
        }
}

START_TEST(test_resize_reference)
{
    static const int sizes[][4] = {{13, 7, 5, 4}, {29, 17, 10, 6}, {7, 5, 11, 9},
                                   {696 / 8, 520 / 8, 256 / 8, 192 / 8}, {9, 9, 3, 3},
                                   {10, 3, 4, 7}, {1, 1, 3, 2}, {5, 6, 1, 1}};
    cc_status st;
    status_clear(&st);
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        const int sw = sizes[k][0], sh = sizes[k][1], dw = sizes[k][2], dh = sizes[k][3];
        float *src = malloc((size_t)sw * sh * sizeof *src), *dst = malloc((size_t)dw * dh * 4);
        double *ref = malloc((size_t)dw * dh * sizeof *ref);
        cc_rng r;
        rng_seed(&r, 9, k);
        double sum = 0;
        for (int i = 0; i < sw * sh; i++) sum += (src[i] = (float)rng_uniform(&r));
        ck_assert_int_eq(resize_area(src, sw, sh, dst, dw, dh, &st), 0);
        resize_ref(src, sw, sh, ref, dw, dh);
        double dsum = 0;
        for (int i = 0; i < dw * dh; i++) {
            ck_assert_msg(fabs(dst[i] - ref[i]) < 2e-6, "%dx%d->%dx%d at %d: %g vs %g", sw, sh,
                          dw, dh, i, dst[i], ref[i]);
            dsum += dst[i];
        }
        /* area averaging preserves the mean */
        ck_assert(fabs(dsum / (dw * dh) - sum / (sw * sh)) < 1e-5);
        free(src); free(dst); free(ref);
    }
    /* identity */
    float a[35], b[35];
    for (int i = 0; i < 35; i++) a[i] = (float)i / 7.0f;
    ck_assert_int_eq(resize_area(a, 7, 5, b, 7, 5, &st), 0);
    ck_assert(memcmp(a, b, sizeof a) == 0);
    /* a 2:1 shrink is the 2x2 mean */
    float c[16], d[4];
    for (int i = 0; i < 16; i++) c[i] = (float)i;
    ck_assert_int_eq(resize_area(c, 4, 4, d, 2, 2, &st), 0);
    ck_assert_float_eq_tol(d[0], (0 + 1 + 4 + 5) / 4.0f, 1e-6);
    ck_assert_float_eq_tol(d[3], (10 + 11 + 14 + 15) / 4.0f, 1e-6);
}
END_TEST

/* ---- data set ---- */

static void make_dataset(const char *path, int n, int h, int w, dataset_dtype type,
                         float *imgs, float *masks)
{
    cc_status st;
    status_clear(&st);
    dataset_writer *wr = dataset_writer_open(path, h, w, &st);
    ck_assert_msg(wr != NULL, "%s", st.msg);
    dataset_writer_set_image_type(wr, type);
    const double frac[3] = {0.5, 0.25, 0.25};
    dataset_writer_set_split_info(wr, 77, frac, DATASET_SPLIT_COUNT);
    cc_rng r;
    rng_seed(&r, 3, 0);
    for (int i = 0; i < n; i++) {
        float *im = imgs + (size_t)i * h * w, *mk = masks + (size_t)i * h * w;
        for (int j = 0; j < h * w; j++) {
            im[j] = (float)rng_below(&r, 256) / 255.0f;
            mk[j] = (float)rng_uniform(&r);
        }
        char src[64];
        snprintf(src, sizeof src, "img_%d.tif", i);
        dataset_record rec = {10 + i, 1 + i % 3, 1 + i % 2, i / 2, i / 3, (uint8_t)(i % 3), src, NULL};
        ck_assert_int_eq(dataset_writer_append(wr, im, i % 4 == 3 ? NULL : mk, &rec, &st), 0);
        if (i % 4 == 3) memset(mk, 0, (size_t)h * w * sizeof *mk);
    }
    ck_assert_int_eq(dataset_writer_count(wr), n);
    ck_assert_int_eq(dataset_writer_close(wr, 1, &st), 0);
}

START_TEST(test_dataset_roundtrip)
{
    const int n = 9, h = 6, w = 11;
    float *imgs = malloc((size_t)n * h * w * 4), *masks = malloc((size_t)n * h * w * 4);
    float *got = malloc((size_t)n * h * w * 4);
    for (int type = 0; type < 2; type++) {
        const char *p = tpath(type ? "f32.h5" : "u8.h5");
        make_dataset(p, n, h, w, (dataset_dtype)type, imgs, masks);
        cc_status st;
        status_clear(&st);
        cc_dataset *ds = dataset_open(p, &st);
        ck_assert_msg(ds != NULL, "%s", st.msg);
        ck_assert_int_eq(ds->n, n);
        ck_assert_int_eq(ds->h, h);
        ck_assert_int_eq(ds->w, w);
        ck_assert_int_eq(ds->image_type, type);
        ck_assert(ds->split_seed == 77);
        ck_assert_int_eq(ds->split_by, DATASET_SPLIT_COUNT);
        ck_assert(ds->split_frac[0] == 0.5 && ds->split_frac[2] == 0.25);
        for (int i = 0; i < n; i++) {
            char src[64];
            snprintf(src, sizeof src, "img_%d.tif", i);
            ck_assert_str_eq(ds->source[i], src);
            ck_assert_int_eq(ds->counts[i], 10 + i);
            ck_assert_int_eq(ds->focus[i], 1 + i % 3);
            ck_assert_int_eq(ds->stain[i], 1 + i % 2);
            ck_assert_int_eq(ds->site[i], i / 2);
            ck_assert_int_eq(ds->scene[i], i / 3);
            ck_assert_int_eq(ds->split[i], i % 3);
            ck_assert_int_eq(ds->has_mask[i], i % 4 != 3);
        }
        ck_assert_int_eq(dataset_read_images(ds, 0, n, got, &st), 0);
        for (int i = 0; i < n * h * w; i++) ck_assert_float_eq_tol(got[i], imgs[i], 1e-6);
        ck_assert_int_eq(dataset_read_masks(ds, 2, 5, got, &st), 0);
        ck_assert(memcmp(got, masks + 2 * h * w, (size_t)5 * h * w * 4) == 0);
        if (type == 0) {
            uint8_t raw[6 * 11];
            ck_assert_int_eq(dataset_read_images_raw(ds, 4, 1, raw, &st), 0);
            for (int j = 0; j < h * w; j++)
                ck_assert_int_eq(raw[j], (int)lrintf(imgs[4 * h * w + j] * 255.0f));
        }
        dataset_close(ds);
    }
    /* abort leaves nothing behind */
    cc_status st;
    status_clear(&st);
    dataset_writer *wr = dataset_writer_open(tpath("aborted.h5"), 4, 4, &st);
    dataset_record rec = {1, 1, 1, 1, 0, 0, "x", NULL};
    ck_assert_int_eq(dataset_writer_append(wr, imgs, NULL, &rec, &st), 0);
    ck_assert_int_eq(dataset_writer_close(wr, 0, &st), 0);
    ck_assert_int_eq(access(tpath("aborted.h5"), F_OK), -1);
    ck_assert_int_eq(count_entries(g_dir), 2);
    free(imgs); free(masks); free(got);
}
END_TEST

static void expect_ds_refused(const char *path, const char *what)
{
    cc_status st;
    status_clear(&st);
    cc_dataset *ds = dataset_open(path, &st);
    ck_assert_msg(ds == NULL, "%s was accepted", path);
    ck_assert_msg(strstr(st.msg, path) != NULL, "message does not name the file: %s", st.msg);
    ck_assert_msg(strstr(st.msg, what) != NULL, "expected '%s' in: %s", what, st.msg);
}

START_TEST(test_dataset_refused)
{
    int fd = open(tpath("stderr.txt"), O_CREAT | O_WRONLY | O_TRUNC, 0644);
    int saved = dup(2);
    dup2(fd, 2);
    const int n = 6, h = 16, w = 16;
    float *imgs = malloc((size_t)n * h * w * 4), *masks = malloc((size_t)n * h * w * 4);
    make_dataset(tpath("good.h5"), n, h, w, DATASET_U8, imgs, masks);
    struct stat sb;
    stat(tpath("good.h5"), &sb);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "head -c %lld '%s' > '%s'", (long long)sb.st_size / 2,
             tpath("good.h5"), tpath("trunc.h5"));
    ck_assert_int_eq(system(cmd), 0);
    expect_ds_refused(tpath("trunc.h5"), "HDF5");
    FILE *f = fopen(tpath("garbage.h5"), "wb");
    for (int i = 0; i < 5000; i++) fputc(i * 31 & 255, f);
    fclose(f);
    expect_ds_refused(tpath("garbage.h5"), "not a readable HDF5 file");
    expect_ds_refused(tpath("missing.h5"), "No such file");

    /* valid HDF5, wrong content: written with HDF5 directly */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t fid = H5Fcreate(tpath("other.h5"), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Fclose(fid);
    expect_ds_refused(tpath("other.h5"), "missing root attribute 'format'");
    /* wrong version */
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", tpath("good.h5"), tpath("v2.h5"));
    ck_assert_int_eq(system(cmd), 0);
    fid = H5Fopen(tpath("v2.h5"), H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t a = H5Aopen(fid, "version", H5P_DEFAULT);
    int32_t v2 = 2;
    H5Awrite(a, H5T_NATIVE_INT32, &v2);
    H5Aclose(a);
    H5Fclose(fid);
    expect_ds_refused(tpath("v2.h5"), "version 2");
    /* masks of the wrong shape */
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", tpath("good.h5"), tpath("shape.h5"));
    ck_assert_int_eq(system(cmd), 0);
    fid = H5Fopen(tpath("shape.h5"), H5F_ACC_RDWR, H5P_DEFAULT);
    H5Ldelete(fid, "masks", H5P_DEFAULT);
    hsize_t dims[4] = {(hsize_t)n, 1, (hsize_t)h, (hsize_t)w + 1};
    hid_t sp = H5Screate_simple(4, dims, NULL);
    hid_t d = H5Dcreate2(fid, "masks", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dclose(d);
    H5Sclose(sp);
    /* and a split value out of range would be next; shape comes first */
    H5Fclose(fid);
    expect_ds_refused(tpath("shape.h5"), "/masks has shape (6,1,16,17), expected (6,1,16,16)");
    /* a corrupt chunk: flip bytes in the middle of the file, then read all */
    snprintf(cmd, sizeof cmd, "cp '%s' '%s' && printf '\\377\\377\\377\\377\\377\\377\\377\\377' | "
             "dd of='%s' bs=1 seek=%lld conv=notrunc 2>/dev/null", tpath("good.h5"),
             tpath("flip.h5"), tpath("flip.h5"), (long long)sb.st_size / 2);
    ck_assert_int_eq(system(cmd), 0);
    cc_status st;
    status_clear(&st);
    cc_dataset *ds = dataset_open(tpath("flip.h5"), &st);
    if (ds) {   /* the damage may hit a chunk rather than metadata */
        float *buf = malloc((size_t)h * w * 4);
        int bad = 0;
        for (int i = 0; i < n; i++)
            bad |= dataset_read_images(ds, i, 1, buf, &st) | dataset_read_masks(ds, i, 1, buf, &st);
        if (bad) ck_assert_msg(strstr(st.msg, tpath("flip.h5")) != NULL, "%s", st.msg);
        free(buf);
        dataset_close(ds);
    } else {
        ck_assert_msg(strstr(st.msg, tpath("flip.h5")) != NULL, "%s", st.msg);
    }
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(fd);
    stat(tpath("stderr.txt"), &sb);
    ck_assert_msg(sb.st_size == 0, "HDF5 printed %lld bytes to stderr", (long long)sb.st_size);
    free(imgs); free(masks);
}
END_TEST

/* Writing the same data set twice, in different seconds, gives the same
 * bytes (HDF5's object timestamps are off). */
START_TEST(test_dataset_identical_bytes)
{
    const int n = 5, h = 7, w = 9;
    float *imgs = malloc((size_t)n * h * w * 4), *masks = malloc((size_t)n * h * w * 4);
    for (int type = 0; type < 2; type++) {
        make_dataset(tpath("same1.h5"), n, h, w, (dataset_dtype)type, imgs, masks);
        for (time_t t0 = time(NULL); time(NULL) == t0;) usleep(10000);
        make_dataset(tpath("same2.h5"), n, h, w, (dataset_dtype)type, imgs, masks);
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "cmp '%s' '%s'", tpath("same1.h5"), tpath("same2.h5"));
        ck_assert_msg(system(cmd) == 0, "%s: the files differ", cmd);
    }
    free(imgs);
    free(masks);
}
END_TEST

/* Every disk size (tests/fulldisk.h) from "the first image does not fit"
 * to "everything fits": the writer fails with a message naming the file, leaves no
 * temporary file, and leaves HDF5 clean.  HDF5 1.10 used to keep a freed
 * file registered after a failed close, and crashed at exit. */
START_TEST(test_dataset_disk_full)
{
    enum { N = 10, H = 24, W = 40 };
    float *imgs = malloc(sizeof(float) * N * H * W), *masks = malloc(sizeof(float) * N * H * W);
    cc_rng r;
    rng_seed(&r, 9, 0);
    for (int i = 0; i < N * H * W; i++) {   /* noise: deflate cannot shrink it much */
        imgs[i] = (float)rng_uniform(&r);
        masks[i] = (float)rng_uniform(&r);
    }
    char dir[PATH_MAX], path[PATH_MAX + 16];   /* the test case's other tests use g_dir */
    snprintf(dir, sizeof dir, "%s", tpath("small_disk"));
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    snprintf(path, sizeof path, "%s/full.h5", dir);
    long long full_size = -1;   /* the first pass, on an unlimited disk, measures it */
    int fail_append = 0, fail_close = 0, ok = 0;
    for (long long limit = 4096; full_size < 0 || limit < full_size + (128 << 10); limit += 4096) {
        cc_status st;
        status_clear(&st);
        fulldisk_set(dir, full_size < 0 ? -1 : limit);
        dataset_writer *wr = dataset_writer_open(path, H, W, &st);
        ck_assert_msg(wr != NULL, "%s", st.msg);
        int rc = 0;
        for (int i = 0; i < N && rc == 0; i++) {
            dataset_record rec = {i, 1, 1, i, i, 0, "noise.tif", NULL};
            rc = dataset_writer_append(wr, imgs + i * H * W, masks + i * H * W, &rec, &st);
        }
        if (rc != 0) {
            fail_append++;
            ck_assert_msg(strstr(st.msg, path) && strstr(st.msg, strerror(ENOSPC)), "%s", st.msg);
            ck_assert_int_eq(dataset_writer_close(wr, 0, &st), 0);
        } else if ((rc = dataset_writer_close(wr, 1, &st)) != 0) {
            fail_close++;
            ck_assert_msg(strstr(st.msg, path) && strstr(st.msg, strerror(ENOSPC)), "%s", st.msg);
        }
        fulldisk_set(dir, -1);
        ssize_t ids = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
        ck_assert_msg(ids == 0, "limit %lld: %zd HDF5 file ids left open", limit, ids);
        if (rc == 0) {
            cc_dataset *ds = dataset_open(path, &st);
            ck_assert_msg(ds && ds->n == N, "limit %lld: %s", limit, st.msg);
            dataset_close(ds);
            struct stat sb;
            ck_assert_int_eq(stat(path, &sb), 0);
            if (full_size < 0) full_size = sb.st_size;
            else ok++;
            ck_assert_int_eq(unlink(path), 0);
        }
        ck_assert_msg(full_size > 0, "cannot write %s without a limit: %s", path, st.msg);
        DIR *d = opendir(dir);   /* no temporary file left */
        ck_assert_ptr_nonnull(d);
        for (struct dirent *e; (e = readdir(d));)
            ck_assert_msg(e->d_name[0] == '.', "left behind: %s", e->d_name);
        closedir(d);
    }
    ck_assert_msg(fail_append > 0 && fail_close > 0 && ok > 0,
                  "append failures %d, close failures %d, successes %d", fail_append,
                  fail_close, ok);
    ck_assert_int_ge(H5close(), 0);   /* what exit() does */
    free(imgs);
    free(masks);
}
END_TEST

static Suite *data_suite(void)
{
    Suite *s = suite_create("data");
    TCase *tc = tcase_create("names");
    tcase_add_test(tc, test_name_parse_valid);
    tcase_add_test(tc, test_name_parse_malformed);
    suite_add_tcase(s, tc);
    tc = tcase_create("tiff");
    tcase_add_unchecked_fixture(tc, tmp_setup, tmp_teardown);
    tcase_add_test(tc, test_tiff_roundtrip_8_16);
    tcase_add_test(tc, test_tiff_layouts);
    tcase_add_test(tc, test_tiff_refused);
    suite_add_tcase(s, tc);
    tc = tcase_create("resize");
    tcase_add_test(tc, test_resize_reference);
    suite_add_tcase(s, tc);
    tc = tcase_create("dataset");
    tcase_add_unchecked_fixture(tc, tmp_setup, tmp_teardown);
    tcase_add_test(tc, test_dataset_roundtrip);
    tcase_add_test(tc, test_dataset_refused);
    tcase_add_test(tc, test_dataset_identical_bytes);
    tcase_add_test(tc, test_dataset_disk_full);
    suite_add_tcase(s, tc);
    data_add_pipeline_cases(s);
    data_add_augment_cases(s);
    data_add_split_cases(s);
    return s;
}

int main(void)
{
    return tu_run(data_suite());
}
