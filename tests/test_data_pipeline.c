/* test_data_pipeline.c - import of a synthetic BBBC005 tree, and the loader. */
#include <check.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

/* ---- a synthetic tree ---- */

enum { SW = 40, SH = 30, TW = 20, TH = 15 };
static const int T_COUNTS[] = {5, 10}, T_SITES[] = {1, 2, 3}, T_FOCUS[] = {1, 4};

static uint8_t pix(int x, int y, int c, int s, int w, int f)
{
    return (uint8_t)((x * 3 + y * 5 + c + 11 * s + 17 * w + 29 * f) & 255);
}

static int in_mask(int x, int y, int c, int s, int w)
{
    int cx = 10 + 3 * s, cy = 12 + c % 5, r = 4 + w;
    return (x - cx) * (x - cx) + (y - cy) * (y - cy) <= r * r;
}

static void name_of(int c, int f, int s, int w, char *buf)
{
    bbbc_name n = {0, 0, c, f, s, w};
    ck_assert_int_eq(bbbc_well_for(c, f, &n.well_row, &n.well_col), 0);
    ck_assert_int_gt(bbbc_name_format(&n, buf, 128), 0);
}

/* images/ with 24 files + 2 malformed + 1 hidden; masks/ with the F1 masks
 * of every scene but (C10, s3, w1), plus a malformed name.  `bad_mask`
 * makes mask (C5, s2, w1) one row taller than its images. */
static void make_tree(const char *root, int bad_mask)
{
    char dir[600], mdir[600], p[800], nm[128];
    snprintf(dir, sizeof dir, "%s/images", root);
    snprintf(mdir, sizeof mdir, "%s/masks", root);
    ck_assert_int_eq(mkdir(root, 0755), 0);
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    ck_assert_int_eq(mkdir(mdir, 0755), 0);
    static uint8_t img[SW * (SH + 1)];
    cc_status st;
    status_clear(&st);
    for (int ci = 0; ci < 2; ci++)
        for (int si = 0; si < 3; si++)
            for (int w = 1; w <= 2; w++) {
                const int c = T_COUNTS[ci], s = T_SITES[si];
                for (int fi = 0; fi < 2; fi++) {
                    const int f = T_FOCUS[fi];
                    for (int y = 0; y < SH; y++)
                        for (int x = 0; x < SW; x++) img[y * SW + x] = pix(x, y, c, s, w, f);
                    name_of(c, f, s, w, nm);
                    snprintf(p, sizeof p, "%s/%s", dir, nm);
                    ck_assert_msg(tiff_write_gray(p, SW, SH, 8, img, &st) == 0, "%s", st.msg);
                }
                if (c == 10 && s == 3 && w == 1) continue;
                const int mh = (bad_mask && c == 5 && s == 2 && w == 1) ? SH + 1 : SH;
                for (int y = 0; y < mh; y++)
                    for (int x = 0; x < SW; x++) img[y * SW + x] = in_mask(x, y, c, s, w) ? 255 : 0;
                name_of(c, 1, s, w, nm);
                snprintf(p, sizeof p, "%s/%s", mdir, nm);
                ck_assert(tiff_write_gray(p, SW, mh, 8, img, &st) == 0);
            }
    static const char *junk[] = {"images/README.txt", "images/SIMCEPImages_A05_C18_F1_s01.TIF",
                                 "images/.DS_Store", "masks/notes.txt"};
    for (int k = 0; k < 4; k++) {
        snprintf(p, sizeof p, "%s/%s", root, junk[k]);
        FILE *f = fopen(p, "w");
        fputs("not an image\n", f);
        fclose(f);
    }
}

static void expected_mask(int c, int s, int w, float *out)
{
    static float m[SW * SH];
    for (int y = 0; y < SH; y++)
        for (int x = 0; x < SW; x++) m[y * SW + x] = (float)in_mask(x, y, c, s, w);
    ck_assert_int_eq(resize_area(m, SW, SH, out, TW, TH, NULL), 0);
}

static void import_tree(const char *root, const char *out, int stain, int focus, int threads,
                        import_summary *sum)
{
    char dir[600], mdir[600];
    snprintf(dir, sizeof dir, "%s/images", root);
    snprintf(mdir, sizeof mdir, "%s/masks", root);
    import_opts o;
    import_opts_default(&o);
    o.images_dir = dir;
    o.masks_dir = mdir;
    o.out_path = out;
    o.stain = stain;
    if (focus) { o.nfocus = 1; o.focus[0] = focus; }
    o.width = TW;
    o.height = TH;
    o.seed = 5;
    o.threads = threads;
    cc_status st;
    status_clear(&st);
    ck_assert_msg(import_run(&o, NULL, sum, &st) == 0, "%s", st.msg);
}

START_TEST(test_import_tree)
{
    make_tree(tpath("tree"), 0);
    import_summary sum;
    import_tree(tpath("tree"), tpath("w1.h5"), 1, 0, 2, &sum);
    ck_assert_int_eq(sum.files, 26);        /* the hidden file is not listed */
    ck_assert_int_eq(sum.malformed, 2);
    ck_assert_int_eq(sum.filtered, 12);
    ck_assert_int_eq(sum.images, 12);
    ck_assert_int_eq(sum.scenes, 6);
    ck_assert_int_eq(sum.scenes_with_mask, 5);
    ck_assert_int_eq(sum.mask_malformed, 1);
    ck_assert_int_eq(sum.bits, 8);
    ck_assert_int_eq(sum.split_images[0] + sum.split_images[1] + sum.split_images[2], 12);

    cc_status st;
    status_clear(&st);
    cc_dataset *ds = dataset_open(tpath("w1.h5"), &st);
    ck_assert_msg(ds != NULL, "%s", st.msg);
    ck_assert_int_eq(ds->n, 12);
    ck_assert_int_eq(ds->h, TH);
    ck_assert_int_eq(ds->w, TW);
    ck_assert_int_eq(ds->image_type, DATASET_U8);
    static float got[TW * TH], want[TW * TH], m0[TW * TH], src[SW * SH];
    for (int i = 0; i < 12; i++) {
        bbbc_name n;
        ck_assert_int_eq(bbbc_name_parse(ds->source[i], &n, &st), 0);
        if (i) ck_assert(strcmp(ds->source[i - 1], ds->source[i]) < 0);   /* sorted */
        ck_assert_int_eq(ds->counts[i], n.count);
        ck_assert_int_eq(ds->focus[i], n.focus);
        ck_assert_int_eq(ds->site[i], n.site);
        ck_assert_int_eq(ds->stain[i], 1);
        ck_assert(n.focus == 1 || n.focus == 4);
        const int has = !(n.count == 10 && n.site == 3);
        ck_assert_int_eq(ds->has_mask[i], has);
        /* image: area-resized and stored as the nearest v/255 */
        for (int y = 0; y < SH; y++)
            for (int x = 0; x < SW; x++)
                src[y * SW + x] = pix(x, y, n.count, n.site, 1, n.focus) / 255.0f;
        resize_area(src, SW, SH, want, TW, TH, NULL);
        ck_assert_int_eq(dataset_read_images(ds, i, 1, got, &st), 0);
        for (int k = 0; k < TW * TH; k++) ck_assert(fabsf(got[k] - want[k]) <= 0.5f / 255 + 1e-6f);
        /* mask: the scene's F1 mask whatever the focus, fractional after resizing */
        ck_assert_int_eq(dataset_read_masks(ds, i, 1, got, &st), 0);
        if (has) {
            expected_mask(n.count, n.site, 1, want);
            ck_assert(memcmp(got, want, sizeof got) == 0);
        } else {
            memset(want, 0, sizeof want);
            ck_assert(memcmp(got, want, sizeof got) == 0);
        }
        int frac = 0;
        for (int k = 0; k < TW * TH; k++) frac += got[k] > 0 && got[k] < 1;
        ck_assert(!has || frac > 0);
        /* scenes: equal ids exactly for equal (count, site); split follows */
        for (int j = 0; j < i; j++) {
            const int same = ds->counts[j] == ds->counts[i] && ds->site[j] == ds->site[i];
            ck_assert_int_eq(ds->scene[j] == ds->scene[i], same);
            if (same) {
                ck_assert_int_eq(ds->split[j], ds->split[i]);
                dataset_read_masks(ds, j, 1, m0, &st);
                ck_assert(memcmp(m0, got, sizeof got) == 0);
            }
        }
    }
    dataset_close(ds);

    /* both stains, one focus level: stains of a (count, site) share a split */
    import_tree(tpath("tree"), tpath("f4.h5"), 0, 4, 3, &sum);
    ck_assert_int_eq(sum.images, 12);
    ck_assert_int_eq(sum.scenes, 12);
    ck_assert_int_eq(sum.scenes_with_mask, 11);
    ds = dataset_open(tpath("f4.h5"), &st);
    ck_assert_msg(ds != NULL, "%s", st.msg);
    int stains[3] = {0};
    for (int i = 0; i < ds->n; i++) {
        ck_assert_int_eq(ds->focus[i], 4);
        stains[ds->stain[i]]++;
        for (int j = 0; j < i; j++)
            if (ds->counts[j] == ds->counts[i] && ds->site[j] == ds->site[i])
                ck_assert_int_eq(ds->split[j], ds->split[i]);
    }
    ck_assert_int_eq(stains[1], 6);
    ck_assert_int_eq(stains[2], 6);
    dataset_close(ds);

    /* the thread count changes nothing */
    import_tree(tpath("tree"), tpath("w1t1.h5"), 1, 0, 1, &sum);
    cc_dataset *a = dataset_open(tpath("w1.h5"), &st), *b = dataset_open(tpath("w1t1.h5"), &st);
    ck_assert(a && b);
    static float ga[12 * TW * TH], gb[12 * TW * TH];
    dataset_read_images(a, 0, 12, ga, &st);
    dataset_read_images(b, 0, 12, gb, &st);
    ck_assert(memcmp(ga, gb, sizeof ga) == 0);
    dataset_read_masks(a, 0, 12, ga, &st);
    dataset_read_masks(b, 0, 12, gb, &st);
    ck_assert(memcmp(ga, gb, sizeof ga) == 0);
    ck_assert(memcmp(a->split, b->split, 12) == 0);
    ck_assert_int_eq(st.failed, 0);
    dataset_close(a);
    dataset_close(b);
}
END_TEST

START_TEST(test_import_wrong_mask_size)
{
    make_tree(tpath("bad"), 1);
    ck_assert_int_eq(mkdir(tpath("out"), 0755), 0);
    char dir[600], mdir[600];
    snprintf(dir, sizeof dir, "%s/images", tpath("bad"));
    snprintf(mdir, sizeof mdir, "%s/masks", tpath("bad"));
    import_opts o;
    import_opts_default(&o);
    o.stain = 1;   /* the files below are w1 */
    o.images_dir = dir;
    o.masks_dir = mdir;
    o.out_path = tpath("out/x.h5");
    o.width = TW;
    o.height = TH;
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(import_run(&o, NULL, NULL, &st), -1);
    char nm[128];
    name_of(5, 1, 2, 1, nm);
    ck_assert_msg(strstr(st.msg, nm) != NULL, "mask not named: %s", st.msg);
    ck_assert_msg(strstr(st.msg, "40x31") != NULL, "%s", st.msg);
    ck_assert_int_eq(count_entries(tpath("out")), 0);   /* no output, no temporary */
    /* an unreadable image is an error naming it, and also leaves nothing */
    char p[800];
    name_of(10, 4, 2, 1, nm);
    snprintf(p, sizeof p, "%s/%s", dir, nm);
    FILE *f = fopen(p, "w");
    fputs("garbage", f);
    fclose(f);
    o.masks_dir = NULL;
    status_clear(&st);
    ck_assert_int_eq(import_run(&o, NULL, NULL, &st), -1);
    ck_assert_msg(strstr(st.msg, nm) != NULL, "%s", st.msg);
    ck_assert_int_eq(count_entries(tpath("out")), 0);
}
END_TEST

/* 16-bit sources are stored as float32; mixing 8- and 16-bit is refused. */
START_TEST(test_import_16bit)
{
    ck_assert_int_eq(mkdir(tpath("t16"), 0755), 0);
    static uint16_t px[SW * SH];
    static uint8_t px8[SW * SH];
    for (int i = 0; i < SW * SH; i++) { px[i] = (uint16_t)(i * 211); px8[i] = (uint8_t)i; }
    char nm[128], p[800];
    cc_status st;
    status_clear(&st);
    for (int f = 1; f <= 4; f += 3) {
        name_of(5, f, 1, 1, nm);
        snprintf(p, sizeof p, "%s/%s", tpath("t16"), nm);
        ck_assert(tiff_write_gray(p, SW, SH, 16, px, &st) == 0);
    }
    import_opts o;
    import_opts_default(&o);
    o.stain = 1;   /* the files below are w1 */
    o.images_dir = tpath("t16");
    o.out_path = tpath("t16.h5");
    o.width = SW / 2;
    o.height = SH / 2;
    import_summary sum;
    ck_assert_msg(import_run(&o, NULL, &sum, &st) == 0, "%s", st.msg);
    ck_assert_int_eq(sum.bits, 16);
    cc_dataset *ds = dataset_open(tpath("t16.h5"), &st);
    ck_assert(ds != NULL);
    ck_assert_int_eq(ds->image_type, DATASET_F32);
    static float src[SW * SH], want[SW * SH / 4], got[SW * SH / 4];
    for (int i = 0; i < SW * SH; i++) src[i] = px[i] / 65535.0f;
    resize_area(src, SW, SH, want, SW / 2, SH / 2, NULL);
    ck_assert_int_eq(dataset_read_images(ds, 1, 1, got, &st), 0);
    for (int i = 0; i < SW * SH / 4; i++) ck_assert_float_eq_tol(got[i], want[i], 1e-6);
    ck_assert_int_eq(ds->has_mask[0], 0);
    dataset_close(ds);
    /* an 8-bit image after the 16-bit ones */
    name_of(10, 1, 1, 1, nm);
    snprintf(p, sizeof p, "%s/%s", tpath("t16"), nm);
    ck_assert(tiff_write_gray(p, SW, SH, 8, px8, &st) == 0);
    o.out_path = tpath("mixed.h5");
    ck_assert_int_eq(import_run(&o, NULL, NULL, &st), -1);
    ck_assert_msg(strstr(st.msg, nm) && strstr(st.msg, "mixed bit depths"), "%s", st.msg);
    ck_assert_int_eq(access(tpath("mixed.h5"), F_OK), -1);
}
END_TEST

static int run_cli(int n, ...)
{
    char *argv[32];
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) argv[i] = va_arg(ap, char *);
    va_end(ap);
    argv[n] = NULL;
    return cli_import(n, argv);
}

START_TEST(test_import_cli)
{
    make_tree(tpath("cli"), 0);
    char dir[600], mdir[600], out[600];
    snprintf(dir, sizeof dir, "%s/images", tpath("cli"));
    snprintf(mdir, sizeof mdir, "%s/masks", tpath("cli"));
    snprintf(out, sizeof out, "%s", tpath("cli.h5"));
    ck_assert_int_eq(run_cli(2, "import", "--help"), 0);
    ck_assert_int_eq(run_cli(3, "import", "--images", dir), 2);
    ck_assert_int_eq(run_cli(7, "import", "--images", dir, "--out", out, "--size", "20y15"), 2);
    ck_assert_int_eq(run_cli(7, "import", "--images", dir, "--out", out, "--stain", "3"), 2);
    ck_assert_int_eq(run_cli(7, "import", "--images", dir, "--out", out, "--split", "80/20"), 2);
    ck_assert_int_eq(run_cli(5, "import", "--images", "/nonexistent/dir", "--out", out), 1);
    ck_assert_int_eq(access(out, F_OK), -1);
    ck_assert_int_eq(run_cli(19, "import", "--images", dir, "--masks", mdir, "--out", out,
                             "--size", "20x15", "--stain", "all", "--focus", "1,4", "--split",
                             "50/25/25", "--seed", "3", "--threads", "2"), 0);
    cc_status st;
    status_clear(&st);
    cc_dataset *ds = dataset_open(out, &st);
    ck_assert_msg(ds != NULL, "%s", st.msg);
    ck_assert_int_eq(ds->n, 24);
    ck_assert(ds->split_seed == 3);
    ck_assert(fabs(ds->split_frac[0] - 0.5) < 1e-12 && fabs(ds->split_frac[1] - 0.25) < 1e-12);
    dataset_close(ds);
}
END_TEST

/* import --from: one stain of a two-stain set at another size keeps each
 * image's metadata and split, and its mean (area resize). */
START_TEST(test_import_from_dataset)
{
    make_tree(tpath("fromtree"), 0);
    import_summary sum;
    import_tree(tpath("fromtree"), tpath("both.h5"), 0, 0, 1, &sum);
    char src[600], out[600];
    snprintf(src, sizeof src, "%s", tpath("both.h5"));
    snprintf(out, sizeof out, "%s", tpath("w2half.h5"));
    ck_assert_int_eq(run_cli(7, "import", "--from", src, "--out", out, "--images", src), 2);
    ck_assert_int_eq(run_cli(7, "import", "--from", src, "--out", src, "--stain", "2"), 1);
    ck_assert_int_eq(run_cli(9, "import", "--from", src, "--out", out, "--stain", "2", "--focus", "9"), 1);
    ck_assert_int_eq(access(out, F_OK), -1);
    char size[32];
    snprintf(size, sizeof size, "%dx%d", TW / 2, TH / 2);
    ck_assert_int_eq(run_cli(9, "import", "--from", src, "--out", out, "--stain", "2", "--size", size), 0);
    cc_status st;
    status_clear(&st);
    cc_dataset *a = dataset_open(src, &st), *b = dataset_open(out, &st);
    ck_assert_msg(a && b, "%s", st.msg);
    ck_assert_int_eq(b->w, TW / 2);
    ck_assert_int_eq(b->h, TH / 2);
    ck_assert(b->split_seed == a->split_seed);
    float *ia = malloc(sizeof(float) * (size_t)(a->h * a->w)), *ib = malloc(sizeof(float) * (size_t)(b->h * b->w));
    float *ma = malloc(sizeof(float) * (size_t)(a->h * a->w)), *mb = malloc(sizeof(float) * (size_t)(b->h * b->w));
    int64_t n2 = 0;
    for (int64_t i = 0; i < a->n; i++) n2 += a->stain[i] == 2;
    ck_assert_int_eq(b->n, n2);
    for (int64_t j = 0, i = 0; j < b->n; j++, i++) {
        while (a->stain[i] != 2) i++;
        ck_assert_int_eq(b->stain[j], 2);
        ck_assert_str_eq(b->source[j], a->source[i]);
        ck_assert(b->counts[j] == a->counts[i] && b->focus[j] == a->focus[i] &&
                  b->split[j] == a->split[i] && b->scene[j] == a->scene[i] &&
                  b->has_mask[j] == a->has_mask[i]);
        ck_assert_int_eq(dataset_read_images(a, i, 1, ia, &st), 0);
        ck_assert_int_eq(dataset_read_images(b, j, 1, ib, &st), 0);
        ck_assert_int_eq(dataset_read_masks(a, i, 1, ma, &st), 0);
        ck_assert_int_eq(dataset_read_masks(b, j, 1, mb, &st), 0);
        double sa = 0, sb = 0, qa = 0, qb = 0;
        for (int k = 0; k < a->h * a->w; k++) sa += ia[k], qa += ma[k];
        for (int k = 0; k < b->h * b->w; k++) sb += ib[k], qb += mb[k];
        sa /= a->h * a->w, sb /= b->h * b->w, qa /= a->h * a->w, qb /= b->h * b->w;
        ck_assert_msg(fabs(sa - sb) < 1.0 / 255, "%s: mean %g vs %g", b->source[j], sa, sb);
        ck_assert_msg(fabs(qa - qb) < 1e-5, "%s: mask mean %g vs %g", b->source[j], qa, qb);
    }
    free(ia), free(ib), free(ma), free(mb);
    dataset_close(a);
    dataset_close(b);
}
END_TEST

/* ---- loader ---- */

enum { LN = 40, LH = 6, LW = 9 };

/* LN images; split: i % 5 == 0 -> val, else train.  mask_mode 0: mask =
 * image (to follow flips); 1: one mask per scene (i / 4), none for scenes
 * divisible by 3. */
static void make_loader_set(const char *path, int mask_mode)
{
    cc_status st;
    status_clear(&st);
    dataset_writer *wr = dataset_writer_open(path, LH, LW, &st);
    ck_assert(wr != NULL);
    cc_rng r;
    rng_seed(&r, 11, 0);
    static float img[LH * LW], mask[LH * LW];
    for (int i = 0; i < LN; i++) {
        for (int k = 0; k < LH * LW; k++) img[k] = (float)rng_below(&r, 256) / 255.0f;
        const int scene = i / 4;
        const float *m = img;
        if (mask_mode) {
            for (int k = 0; k < LH * LW; k++) mask[k] = (float)((k * 7 + scene * 13) % 17) / 16.0f;
            m = scene % 3 == 0 ? NULL : mask;
        }
        dataset_record rec = {100 + i, 1 + i % 4, 1, i, scene, (uint8_t)(i % 5 == 0), "x", NULL};
        ck_assert(dataset_writer_append(wr, img, m, &rec, &st) == 0);
    }
    ck_assert(dataset_writer_close(wr, 1, &st) == 0);
}

/* Concatenate one epoch's indices (and flips) into idx/flip; returns count. */
static int run_epoch(cc_loader *L, int64_t epoch, int64_t *idx, uint8_t *flip, int *nb,
                     int *last_n)
{
    loader_batch b;
    int k = 0;
    *nb = 0;
    loader_epoch_begin(L, epoch);
    while (loader_next(L, &b)) {
        for (int j = 0; j < b.n; j++) {
            idx[k] = b.indices[j];
            flip[k++] = b.flipped[j];
        }
        *last_n = b.n;
        (*nb)++;
    }
    ck_assert_int_eq(loader_next(L, &b), 0);
    return k;
}

START_TEST(test_loader_order_and_coverage)
{
    make_loader_set(tpath("l.h5"), 0);
    cc_status st;
    status_clear(&st);
    const unsigned fl = LOADER_SHUFFLE | LOADER_FLIP | LOADER_KEEP_LAST;
    cc_loader *a = loader_open(tpath("l.h5"), DATASET_TRAIN, 5, 9, fl, &st);
    cc_loader *b = loader_open(tpath("l.h5"), DATASET_TRAIN, 5, 9, fl, &st);
    ck_assert_msg(a && b, "%s", st.msg);
    ck_assert_int_eq(loader_size(a), 32);
    ck_assert_int_eq(loader_batches_per_epoch(a), 7);
    int64_t ia[LN], ib[LN], i1[LN];
    uint8_t fa[LN], fb[LN], f1[LN];
    int nb, last;
    ck_assert_int_eq(run_epoch(a, 0, ia, fa, &nb, &last), 32);
    ck_assert_int_eq(nb, 7);
    ck_assert_int_eq(last, 2);
    int seen[LN] = {0};
    for (int k = 0; k < 32; k++) {
        ck_assert(ia[k] % 5 != 0);          /* train only */
        ck_assert_int_eq(seen[ia[k]]++, 0); /* once each */
    }
    ck_assert_int_eq(run_epoch(b, 0, ib, fb, &nb, &last), 32);
    ck_assert(memcmp(ia, ib, sizeof ia[0] * 32) == 0);
    ck_assert(memcmp(fa, fb, 32) == 0);
    ck_assert_int_eq(run_epoch(a, 1, i1, f1, &nb, &last), 32);
    ck_assert(memcmp(ia, i1, sizeof ia[0] * 32) != 0);     /* reshuffled */
    /* a resumed run (fresh loader at epoch 1) sees the same epoch 1, also
     * after an interrupted epoch */
    loader_batch bt;
    loader_epoch_begin(b, 3);
    ck_assert(loader_next(b, &bt));
    ck_assert(loader_next(b, &bt));
    ck_assert_int_eq(run_epoch(b, 1, ib, fb, &nb, &last), 32);
    ck_assert(memcmp(i1, ib, sizeof ia[0] * 32) == 0);
    ck_assert(memcmp(f1, fb, 32) == 0);
    ck_assert(loader_wait_seconds(a) >= 0 && loader_wait_seconds(a) < 60);
    loader_close(a);
    loader_close(b);
    /* another seed, another order */
    a = loader_open(tpath("l.h5"), DATASET_TRAIN, 5, 10, fl, &st);
    ck_assert_int_eq(run_epoch(a, 0, ib, fb, &nb, &last), 32);
    ck_assert(memcmp(ia, ib, sizeof ia[0] * 32) != 0);
    loader_close(a);
    /* drop the last partial batch; no shuffle = file order */
    a = loader_open(tpath("l.h5"), DATASET_VAL, 3, 9, 0, &st);
    ck_assert(a != NULL);
    ck_assert_int_eq(loader_size(a), 8);
    ck_assert_int_eq(run_epoch(a, 0, ia, fa, &nb, &last), 6);
    ck_assert_int_eq(nb, 2);
    for (int k = 0; k < 6; k++) ck_assert_int_eq(ia[k], 5 * k);
    loader_close(a);
    /* empty split */
    status_clear(&st);
    ck_assert(loader_open(tpath("l.h5"), DATASET_TEST, 3, 9, 0, &st) == NULL);
    ck_assert_msg(strstr(st.msg, "test split has no images") != NULL, "%s", st.msg);
}
END_TEST

START_TEST(test_loader_flips)
{
    make_loader_set(tpath("f.h5"), 0);
    cc_status st;
    status_clear(&st);
    cc_dataset *ds = dataset_open(tpath("f.h5"), &st);
    static float src[LN * LH * LW];
    ck_assert(dataset_read_images(ds, 0, LN, src, &st) == 0);
    dataset_close(ds);
    cc_loader *L = loader_open(tpath("f.h5"), LOADER_SPLIT_ALL, 4, 1, LOADER_FLIP, &st);
    ck_assert(L != NULL);
    int combos[4] = {0}, changed = 0;
    uint8_t prev[LN];
    for (int e = 0; e < 4; e++) {
        loader_batch b;
        loader_epoch_begin(L, e);
        while (loader_next(L, &b)) {
            for (int j = 0; j < b.n; j++) {
                const int64_t i = b.indices[j];
                const int f = b.flipped[j];
                combos[f]++;
                if (e) changed += prev[i] != f;
                prev[i] = (uint8_t)f;
                const float *im = b.images + (size_t)j * LH * LW, *mk = b.masks + (size_t)j * LH * LW;
                for (int y = 0; y < LH; y++)
                    for (int x = 0; x < LW; x++) {
                        const int sy = (f & 2) ? LH - 1 - y : y, sx = (f & 1) ? LW - 1 - x : x;
                        const float want = src[(size_t)i * LH * LW + sy * LW + sx];
                        ck_assert(fabsf(im[y * LW + x] - want) < 1e-6f);
                        ck_assert(fabsf(mk[y * LW + x] - want) < 1e-6f);   /* same flip */
                    }
            }
        }
    }
    for (int k = 0; k < 4; k++) ck_assert_msg(combos[k] > 10, "flip %d used %d times", k, combos[k]);
    ck_assert(changed > 30);
    loader_close(L);
    /* without LOADER_FLIP nothing is flipped */
    L = loader_open(tpath("f.h5"), LOADER_SPLIT_ALL, 7, 1, LOADER_KEEP_LAST, &st);
    loader_batch b;
    loader_epoch_begin(L, 0);
    int k = 0;
    while (loader_next(L, &b))
        for (int j = 0; j < b.n; j++, k++) {
            ck_assert_int_eq(b.flipped[j], 0);
            ck_assert(memcmp(b.images + (size_t)j * LH * LW, src + (size_t)b.indices[j] * LH * LW,
                             sizeof(float) * LH * LW) == 0);
        }
    ck_assert_int_eq(k, LN);
    loader_close(L);
}
END_TEST

START_TEST(test_loader_shared_masks)
{
    make_loader_set(tpath("m.h5"), 1);
    cc_status st;
    status_clear(&st);
    cc_dataset *ds = dataset_open(tpath("m.h5"), &st);
    static float want[LN * LH * LW];
    ck_assert(dataset_read_masks(ds, 0, LN, want, &st) == 0);
    dataset_close(ds);
    cc_loader *L = loader_open(tpath("m.h5"), DATASET_TRAIN, 6, 2, LOADER_SHUFFLE | LOADER_KEEP_LAST,
                               &st);
    ck_assert(L != NULL);
    loader_batch b;
    loader_epoch_begin(L, 0);
    int k = 0;
    while (loader_next(L, &b))
        for (int j = 0; j < b.n; j++, k++) {
            const int64_t i = b.indices[j];
            ck_assert_int_eq(b.has_mask[j], (i / 4) % 3 != 0);
            ck_assert_int_eq(b.counts[j], 100 + i);
            ck_assert_int_eq(b.focus[j], 1 + i % 4);
            ck_assert(memcmp(b.masks + (size_t)j * LH * LW, want + (size_t)i * LH * LW,
                             sizeof(float) * LH * LW) == 0);
        }
    ck_assert_int_eq(k, 32);
    loader_close(L);
}
END_TEST

void data_add_pipeline_cases(Suite *s)
{
    TCase *tc = tcase_create("import");
    tcase_add_unchecked_fixture(tc, tmp_setup, tmp_teardown);
    tcase_add_test(tc, test_import_tree);
    tcase_add_test(tc, test_import_wrong_mask_size);
    tcase_add_test(tc, test_import_16bit);
    tcase_add_test(tc, test_import_cli);
    tcase_add_test(tc, test_import_from_dataset);
    suite_add_tcase(s, tc);
    tc = tcase_create("loader");
    tcase_add_unchecked_fixture(tc, tmp_setup, tmp_teardown);
    tcase_add_test(tc, test_loader_order_and_coverage);
    tcase_add_test(tc, test_loader_flips);
    tcase_add_test(tc, test_loader_shared_masks);
    suite_add_tcase(s, tc);
}
