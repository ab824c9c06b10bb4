/* test_data_augment.c - the loader's augmentations beyond flips
 * (loader_augment_sample, data.aug_*): each has its intended effect on a
 * known input, draws are a pure function of (seed, epoch, index), masks
 * follow the image's geometry, counts never change. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autodiff/rng.h"
#include "src/data/dataset.h"
#include "src/data/loader.h"
#include "tests/datautil.h"

enum { AH = 64, AW = 64 };

static float scratch[2 * AH * AW];

static void fill_const(float *x, float v)
{
    for (int i = 0; i < AH * AW; i++) x[i] = v;
}

/* A disk of radius r (pixel centres inside) at the image centre. */
static void fill_disk(float *x, double r)
{
    for (int y = 0; y < AH; y++)
        for (int xx = 0; xx < AW; xx++) {
            const double dy = y + 0.5 - AH / 2.0, dx = xx + 0.5 - AW / 2.0;
            x[y * AW + xx] = dx * dx + dy * dy <= r * r ? 1.0f : 0.0f;
        }
}

static double sum_of(const float *x)
{
    double s = 0;
    for (int i = 0; i < AH * AW; i++) s += x[i];
    return s;
}

START_TEST(test_aug_draws_are_deterministic)
{
    const loader_aug all = {0.15, 2.0, 0.3, 0.2, 0.05};
    static float a[AH * AW], b[AH * AW], c[AH * AW];
    loader_aug_draw da, db, dc;
    fill_disk(a, 10);
    memcpy(b, a, sizeof a);
    memcpy(c, a, sizeof a);
    loader_augment_sample(&all, 7, 3, 11, a, NULL, AH, AW, scratch, &da);
    loader_augment_sample(&all, 7, 3, 11, b, NULL, AH, AW, scratch, &db);
    ck_assert(memcmp(&da, &db, sizeof da) == 0);
    ck_assert(memcmp(a, b, sizeof a) == 0);
    loader_augment_sample(&all, 7, 4, 11, c, NULL, AH, AW, scratch, &dc); /* next epoch */
    ck_assert(da.scale != dc.scale && da.gain != dc.gain && da.noise != dc.noise);
    ck_assert(memcmp(a, c, sizeof a) != 0);
    /* Ranges over many draws, and each draw independent of which others
     * are switched on. */
    double lo[5] = {9, 9, 9, 9, 9}, hi[5] = {-9, -9, -9, -9, -9};
    for (int i = 0; i < 400; i++) {
        loader_aug_draw d, g;
        fill_const(c, 0.5f);
        loader_augment_sample(&all, 1, 0, i, c, NULL, AH, AW, scratch, &d);
        const double v[5] = {d.scale, d.blur, log(d.gamma), d.gain, d.noise};
        for (int k = 0; k < 5; k++) {
            lo[k] = fmin(lo[k], v[k]);
            hi[k] = fmax(hi[k], v[k]);
        }
        const loader_aug gain_only = {0, 0, 0, 0.2, 0};
        loader_augment_sample(&gain_only, 1, 0, i, c, NULL, AH, AW, scratch, &g);
        ck_assert(g.gain == d.gain);
        ck_assert(g.scale == 1.0 && g.blur == 0.0 && g.gamma == 1.0 && g.noise == 0.0);
    }
    const double want_lo[5] = {0.85, 0, -0.3, 0.8, 0}, want_hi[5] = {1.15, 2.0, 0.3, 1.2, 0.05};
    for (int k = 0; k < 5; k++) {
        const double span = want_hi[k] - want_lo[k];
        ck_assert_msg(lo[k] >= want_lo[k] && hi[k] <= want_hi[k], "draw %d outside its range", k);
        ck_assert_msg(lo[k] < want_lo[k] + 0.05 * span && hi[k] > want_hi[k] - 0.05 * span,
                      "draw %d does not cover its range: [%g, %g]", k, lo[k], hi[k]);
    }
    /* Everything off: the image is untouched. */
    const loader_aug none = {0, 0, 0, 0, 0};
    fill_disk(a, 10);
    memcpy(b, a, sizeof a);
    loader_augment_sample(&none, 1, 0, 0, a, NULL, AH, AW, scratch, NULL);
    ck_assert(memcmp(a, b, sizeof a) == 0);
}
END_TEST

START_TEST(test_aug_gain_gamma)
{
    static float x[AH * AW];
    loader_aug_draw d;
    const loader_aug gain = {0, 0, 0, 0.3, 0};
    for (int i = 0; i < 20; i++) {
        fill_const(x, 0.4f);
        loader_augment_sample(&gain, 5, 1, i, x, NULL, AH, AW, scratch, &d);
        ck_assert(d.gain >= 0.7 && d.gain <= 1.3);
        for (int k = 0; k < AH * AW; k++) ck_assert(x[k] == 0.4f * (float)d.gain);
    }
    /* a gain above 1 saturates at 1 */
    for (int i = 0;; i++) {
        fill_const(x, 0.95f);
        loader_augment_sample(&gain, 5, 1, i, x, NULL, AH, AW, scratch, &d);
        if (d.gain < 1.1) continue;
        for (int k = 0; k < AH * AW; k++) ck_assert(x[k] == 1.0f);
        break;
    }
    const loader_aug gamma = {0, 0, 0.5, 0, 0};
    for (int i = 0; i < 20; i++) {
        for (int k = 0; k < AH * AW; k++) x[k] = (float)(k % 101) / 100.0f;
        loader_augment_sample(&gamma, 5, 1, i, x, NULL, AH, AW, scratch, &d);
        ck_assert(d.gamma >= exp(-0.5) && d.gamma <= exp(0.5));
        for (int k = 0; k < AH * AW; k++) {
            const double v = (double)(float)((float)(k % 101) / 100.0f);
            ck_assert_msg(fabs(x[k] - pow(v, d.gamma)) <= 1e-6, "%g^%g = %g", v, d.gamma, x[k]);
        }
    }
}
END_TEST

START_TEST(test_aug_noise)
{
    static float x[AH * AW];
    const loader_aug noise = {0, 0, 0, 0, 0.1};
    int tried = 0;
    for (int i = 0; i < 10; i++) {
        loader_aug_draw d;
        fill_const(x, 0.5f);
        loader_augment_sample(&noise, 3, 2, i, x, NULL, AH, AW, scratch, &d);
        ck_assert(d.noise >= 0 && d.noise <= 0.1);
        if (d.noise < 0.02) continue;   /* too little to measure well */
        tried++;
        double s = 0, s2 = 0;
        for (int k = 0; k < AH * AW; k++) {
            s += x[k] - 0.5;
            s2 += (x[k] - 0.5) * (x[k] - 0.5);
        }
        const double n = AH * AW, mean = s / n, sd = sqrt(s2 / n);
        /* 4096 pixels: the mean's s.e. is sd/64, the s.d.'s about sd/90. */
        ck_assert_msg(fabs(mean) < 5 * d.noise / 64, "noise mean %g (sd %g)", mean, d.noise);
        ck_assert_msg(fabs(sd / d.noise - 1) < 0.06, "noise sd %g, drawn %g", sd, d.noise);
    }
    ck_assert_int_ge(tried, 5);
}
END_TEST

START_TEST(test_aug_blur)
{
    static float x[AH * AW];
    const loader_aug blur = {0, 0, 0, 0, 0};
    loader_aug b = blur;
    b.blur = 3.0;
    int tried = 0;
    for (int i = 0; i < 10; i++) {
        loader_aug_draw d;
        fill_const(x, 0);
        x[32 * AW + 32] = 1.0f;
        loader_augment_sample(&b, 3, 2, i, x, NULL, AH, AW, scratch, &d);
        ck_assert(d.blur >= 0 && d.blur <= 3.0);
        if (d.blur < 1.0) continue;
        tried++;
        /* A delta far from the borders becomes a normalised, symmetric
         * blob whose variance per axis is the drawn sigma^2 (the kernel is
         * cut at 3 sigma: within 3%). */
        double s = 0, vx = 0, vy = 0;
        for (int y = 0; y < AH; y++)
            for (int xx = 0; xx < AW; xx++) {
                const double v = x[y * AW + xx];
                s += v;
                vx += v * (xx - 32) * (xx - 32);
                vy += v * (y - 32) * (y - 32);
            }
        ck_assert_msg(fabs(s - 1) < 1e-4, "blur sum %g", s);
        ck_assert_msg(fabs(vx / (d.blur * d.blur) - 1) < 0.03, "var %g, sigma %g", vx, d.blur);
        ck_assert(fabs(vx - vy) < 1e-4);
        ck_assert(fabs(x[32 * AW + 30] - x[32 * AW + 34]) < 1e-6);
        ck_assert(x[32 * AW + 32] < 0.2f);
    }
    ck_assert_int_ge(tried, 3);
    /* A constant image stays constant (reflecting borders). */
    fill_const(x, 0.3f);
    loader_augment_sample(&b, 3, 2, 0, x, NULL, AH, AW, scratch, NULL);
    for (int k = 0; k < AH * AW; k++) ck_assert(fabsf(x[k] - 0.3f) < 1e-5f);
}
END_TEST

START_TEST(test_aug_scale_image_and_mask)
{
    static float x[AH * AW], m[AH * AW];
    const loader_aug sc = {0.15, 0, 0, 0, 0};
    int big = 0, small = 0;
    for (int i = 0; i < 30; i++) {
        loader_aug_draw d;
        fill_disk(x, 12);
        fill_disk(m, 12);
        const double a0 = sum_of(x);
        loader_augment_sample(&sc, 9, 0, i, x, m, AH, AW, scratch, &d);
        ck_assert(d.scale >= 0.85 && d.scale <= 1.15);
        big += d.scale > 1.08;
        small += d.scale < 0.92;
        /* mask and image moved alike (both fill with 0 here) */
        ck_assert(memcmp(x, m, sizeof x) == 0);
        /* the disk's area scales with s^2, its centre stays */
        const double a1 = sum_of(x);
        ck_assert_msg(fabs(a1 / (a0 * d.scale * d.scale) - 1) < 0.04, "area %g -> %g at s %g", a0,
                      a1, d.scale);
        double cx = 0, cy = 0;
        for (int y = 0; y < AH; y++)
            for (int xx = 0; xx < AW; xx++) {
                cx += x[y * AW + xx] * (xx + 0.5);
                cy += x[y * AW + xx] * (y + 0.5);
            }
        ck_assert(fabs(cx / a1 - AW / 2.0) < 1e-3 && fabs(cy / a1 - AH / 2.0) < 1e-3);
    }
    ck_assert(big > 0 && small > 0);
    /* s = 1 is the identity, uncovered borders read the fill */
    static float y[AH * AW];
    fill_disk(x, 12);
    loader_scale_plane(x, y, AH, AW, 1.0, 0.0f);
    ck_assert(memcmp(x, y, sizeof x) == 0);
    fill_const(x, 0.5f);
    loader_scale_plane(x, y, AH, AW, 0.8, 0.25f);
    ck_assert(y[0] == 0.25f && y[AH * AW - 1] == 0.25f && y[32 * AW + 32] == 0.5f);
}
END_TEST

/* Through the loader: every augmentation on, batches are the flipped
 * source passed through loader_augment_sample for (seed, epoch, index), the
 * same from two loaders, different in the next epoch; counts unchanged. */
enum { LN = 24, LH = 20, LW = 28 };

START_TEST(test_loader_augments)
{
    cc_status st;
    status_clear(&st);
    const char *path = tpath("aug.h5");
    dataset_writer *wr = dataset_writer_open(path, LH, LW, &st);
    ck_assert_msg(wr != NULL, "%s", st.msg);
    cc_rng r;
    rng_seed(&r, 5, 0);
    static float img[LN][LH * LW], msk[LN][LH * LW];
    for (int i = 0; i < LN; i++) {
        for (int k = 0; k < LH * LW; k++) {
            img[i][k] = (float)rng_below(&r, 256) / 255.0f;
            msk[i][k] = (float)((k * 7 + i * 13) % 17) / 16.0f;
        }
        dataset_record rec = {10 + i, 1 + i % 3, 1, i, i, 0, "x", NULL};
        ck_assert(dataset_writer_append(wr, img[i], msk[i], &rec, &st) == 0);
    }
    ck_assert(dataset_writer_close(wr, 1, &st) == 0);
    /* the stored (uint8) image as the loader reads it */
    cc_dataset *ds = dataset_open(path, &st);
    ck_assert(ds != NULL);
    static float src[LN * LH * LW], srcm[LN * LH * LW];
    ck_assert(dataset_read_images(ds, 0, LN, src, &st) == 0);
    ck_assert(dataset_read_masks(ds, 0, LN, srcm, &st) == 0);
    dataset_close(ds);

    const loader_aug all = {0.15, 1.5, 0.3, 0.2, 0.05};
    const unsigned fl = LOADER_SHUFFLE | LOADER_FLIP | LOADER_KEEP_LAST;
    cc_loader *a = loader_open(path, LOADER_SPLIT_ALL, 5, 3, fl, &st);
    cc_loader *b = loader_open(path, LOADER_SPLIT_ALL, 5, 3, fl, &st);
    ck_assert(a && b);
    loader_set_augment(a, &all);
    loader_set_augment(b, &all);
    static float first[LN][LH * LW];
    int scaled = 0;
    for (int e = 0; e < 2; e++) {
        loader_batch ba, bb;
        loader_epoch_begin(a, e);
        loader_epoch_begin(b, e);
        while (loader_next(a, &ba)) {
            ck_assert(loader_next(b, &bb));
            ck_assert(ba.n == bb.n);
            ck_assert(memcmp(ba.images, bb.images, sizeof(float) * ba.n * LH * LW) == 0);
            ck_assert(memcmp(ba.masks, bb.masks, sizeof(float) * ba.n * LH * LW) == 0);
            for (int j = 0; j < ba.n; j++) {
                const int64_t i = ba.indices[j];
                const int f = ba.flipped[j];
                static float wi[LH * LW], wm[LH * LW], sc[2 * LH * LW];
                for (int y = 0; y < LH; y++)
                    for (int x = 0; x < LW; x++) {
                        const int sy = (f & 2) ? LH - 1 - y : y, sx = (f & 1) ? LW - 1 - x : x;
                        wi[y * LW + x] = src[(size_t)i * LH * LW + sy * LW + sx];
                        wm[y * LW + x] = srcm[(size_t)i * LH * LW + sy * LW + sx];
                    }
                loader_aug_draw d;
                loader_augment_sample(&all, 3, e, i, wi, wm, LH, LW, sc, &d);
                const float *gi = ba.images + (size_t)j * LH * LW;
                const float *gm = ba.masks + (size_t)j * LH * LW;
                ck_assert(memcmp(gi, wi, sizeof wi) == 0);
                ck_assert(memcmp(gm, wm, sizeof wm) == 0);
                ck_assert(ba.scale[j] == (float)d.scale);
                scaled += d.scale != 1.0;
                ck_assert_int_eq(ba.counts[j], 10 + i);     /* the count stays */
                if (e == 0)
                    memcpy(first[i], gi, sizeof wi);
                else
                    ck_assert(memcmp(first[i], gi, sizeof wi) != 0);   /* new draws */
                for (int k = 0; k < LH * LW; k++) ck_assert(gi[k] >= 0 && gi[k] <= 1);
            }
        }
        ck_assert_int_eq(loader_next(b, &bb), 0);
    }
    ck_assert_int_eq(scaled, 2 * LN);
    ck_assert(loader_wait_seconds(a) >= 0);
    loader_close(a);
    loader_close(b);
}
END_TEST

void data_add_augment_cases(Suite *s)
{
    TCase *tc = tcase_create("augment");
    tcase_set_timeout(tc, 120);
    tcase_add_unchecked_fixture(tc, tmp_setup, tmp_teardown);
    tcase_add_test(tc, test_aug_draws_are_deterministic);
    tcase_add_test(tc, test_aug_gain_gamma);
    tcase_add_test(tc, test_aug_noise);
    tcase_add_test(tc, test_aug_blur);
    tcase_add_test(tc, test_aug_scale_image_and_mask);
    tcase_add_test(tc, test_loader_augments);
    suite_add_tcase(s, tc);
}
