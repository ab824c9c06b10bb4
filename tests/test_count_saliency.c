/* test_count_saliency.c - `saliency` (src/saliency.c): the gradients of
 * the count against central finite differences, agreement with `count`,
 * and the HDF5/PNG outputs.  Part of tests/test_count (fixture:
 * countutil.h). */
#include <check.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "src/count_images.h"
#include "src/saliency.h"
#include "tests/countutil.h"

/* Gradient checks of a count function f against central differences.
 *
 * The nets are piecewise linear (LeakyReLU, max-pool, ReLU); max-pool ties
 * in flat regions put kinks everywhere, and float rounding inside the nets
 * (the count, about 0.1, is a sum of terms of size about 5) limits the
 * resolution of a difference quotient to about 6e-8 * 5 / eps.  So:
 *  - the directional derivative along the gradient itself (every element
 *    moves a little, so kinks matter little and the signal, |g|, is large)
 *    must match |g| to 5%: a gradient that is wrong in scale, sign or
 *    pattern fails this (exact agreement is not expected: at max-pool ties
 *    the backward pass picks one element, while moving along g moves all
 *    tied ones; about 2% here);
 *  - single elements (the largest |g|) must match to 3% + 2% of max |g|
 *    wherever the one-sided differences agree (elsewhere a kink lies within
 *    eps and the element is skipped; at least 3 must be checked). */
typedef double (*count_fn)(void *u, const float *v);

static double central(count_fn f, void *u, const float *v, const float *d, int n, double eps,
                      float *tmp, double *fwd, double *bwd, double c0)
{
    for (int i = 0; i < n; i++) tmp[i] = v[i] + (float)eps * d[i];
    const double up = f(u, tmp);
    for (int i = 0; i < n; i++) tmp[i] = v[i] - (float)eps * d[i];
    const double dn = f(u, tmp);
    *fwd = (up - c0) / eps;
    *bwd = (c0 - dn) / eps;
    return (up - dn) / (2 * eps);
}

static void gradcheck(const char *what, count_fn f, void *u, const float *v, const float *g,
                      int n)
{
    float *d = calloc((size_t)n, sizeof(float)), *tmp = malloc(sizeof(float) * (size_t)n);
    double gmax = 0, gnorm = 0, fwd, bwd;
    for (int i = 0; i < n; i++) gmax = fmax(gmax, fabs(g[i])), gnorm += (double)g[i] * g[i];
    gnorm = sqrt(gnorm);
    ck_assert_msg(gmax > 0, "%s: gradient is all zero", what);
    const double c0 = f(u, v);
    /* The directional derivative along the unit gradient must be |g|. */
    for (int i = 0; i < n; i++) d[i] = (float)(g[i] / gnorm);
    double fd = central(f, u, v, d, n, 1e-3, tmp, &fwd, &bwd, c0);
    ck_assert_msg(fabs(fd - gnorm) <= 0.05 * gnorm,
                  "%s: along the gradient: analytic %.6g, numeric %.6g (one-sided %.6g %.6g)",
                  what, gnorm, fd, fwd, bwd);
    /* Single elements: the 8 largest |g|. */
    int used[8], checked = 0;
    memset(d, 0, sizeof(float) * (size_t)n);
    for (int k = 0; k < 8; k++) {
        int best = -1;
        for (int i = 0; i < n; i++) {
            int dup = 0;
            for (int j = 0; j < k; j++) dup |= used[j] == i;
            if (!dup && (best < 0 || fabsf(g[i]) > fabsf(g[best]))) best = i;
        }
        used[k] = best;
        d[best] = 1.0f;
        fd = central(f, u, v, d, n, 3e-4, tmp, &fwd, &bwd, c0);
        d[best] = 0.0f;
        if (fabs(fwd - bwd) > 0.05 * fmax(fabs(fwd), fabs(bwd)) + 0.04 * gmax) continue;
        ck_assert_msg(fabs(fd - g[best]) <= 0.03 * fabs(g[best]) + 0.02 * gmax,
                      "%s: element %d: analytic %.6g, numeric %.6g (one-sided %.6g %.6g)", what,
                      best, g[best], fd, fwd, bwd);
        checked++;
    }
    ck_assert_msg(checked >= 3, "%s: only %d of 8 elements away from kinks", what, checked);
    free(d);
    free(tmp);
}

/* The count of the counter alone on a mask (1,1,H/2,W/2), inference tape. */
typedef struct counter_fn_ctx {
    count_model *cm;
    cc_tape *t;
} counter_fn_ctx;

static double counter_on_mask(void *u, const float *m)
{
    counter_fn_ctx *c = u;
    tape_reset(c->t);
    int64_t d[4] = {1, 1, H / 2, W / 2};
    cc_tensor *x = tape_input(c->t, 4, d, m, 0), *cnt = NULL, *lv = NULL;
    ck_assert_msg(counter_forward(c->t, &c->cm->m.Pc, &c->cm->m.counter, x, &cnt, &lv) == 0,
                  "%s", tape_error(c->t));
    float v;
    ck_assert_int_eq(tape_read(c->t, cnt, &v), 0);
    return v;
}

/* The whole prediction (FPN + counter) of one image, as `count` runs it. */
static double predict_image(void *u, const float *x)
{
    double c, s;
    cc_status st;
    status_clear(&st);
    ck_assert_msg(count_model_predict(u, x, 1, &c, &s, NULL, NULL, &st) == 0, "%s", st.msg);
    return c;
}

START_TEST(saliency_gradcheck)
{
    run_fx fx;
    make_run(&fx, "grad", "mask");
    cc_status st;
    status_clear(&st);
    count_model cm, ref;
    ck_assert_msg(count_model_open(&cm, &fx.cfg, H, W, NULL, NULL, 0, &st) == 0, "%s", st.msg);
    ck_assert_msg(count_model_open(&ref, &fx.cfg, H, W, NULL, NULL, 1, &st) == 0, "%s", st.msg);
    cc_tape t;
    saliency_prepare(&cm, &t);
    /* Two different images in one batch. */
    static float x[2 * H * W], mask[2 * H * W / 4], mg[2 * H * W / 4], ig[2 * H * W];
    ck_assert_int_eq(count_image_load(tpath("grad", "img/a.tif"), H, W, x, &st), 0);
    ck_assert_int_eq(count_image_load(tpath("grad", "img/b.tif"), H, W, x + H * W, &st), 0);
    double cnt[2], sig[2];
    saliency_maps maps = {cnt, sig, mask, mg, ig};
    ck_assert_msg(saliency_compute(&cm, &t, x, 2, &maps, &st) == 0, "%s", st.msg);

    /* The training-mode tape with eval BN predicts what `count` predicts. */
    double rc[2], rs[2];
    static float rm[2 * H * W / 4];
    ck_assert_int_eq(count_model_predict(&ref, x, 2, rc, rs, rm, NULL, &st), 0);
    for (int i = 0; i < 2; i++) {
        ck_assert(cnt[i] > 0);
        ck_assert_double_eq_tol(cnt[i], rc[i], 1e-4 * fabs(rc[i]));
        ck_assert_double_eq_tol(sig[i], rs[i], 1e-4 * fabs(rs[i]));
    }
    for (int i = 0; i < 2 * H * W / 4; i++) ck_assert(fabsf(mask[i] - rm[i]) <= 1e-5f);

    /* d count / d mask against the counter alone; d count / d image
     * against the whole prediction.  Both images of the batch. */
    cc_tape ti;
    tape_init(&ti, &cm.s.ctx, 0);
    counter_fn_ctx cf = {&cm, &ti};
    for (int img = 0; img < 2; img++) {
        gradcheck("mask", counter_on_mask, &cf, mask + img * H * W / 4, mg + img * H * W / 4,
                  H * W / 4);
        gradcheck("image", predict_image, &ref, x + img * H * W, ig + img * H * W, H * W);
    }
    tape_free(&ti);
    tape_free(&t);
    count_model_close(&cm);
    count_model_close(&ref);
}
END_TEST

static void check_h5_dataset(hid_t f, const char *name, int h, int w)
{
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    ck_assert_msg(d >= 0, "%s missing", name);
    hid_t s = H5Dget_space(d);
    hsize_t dims[2] = {0, 0};
    ck_assert_int_eq(H5Sget_simple_extent_ndims(s), 2);
    H5Sget_simple_extent_dims(s, dims, NULL);
    ck_assert_int_eq((int)dims[0], h);
    ck_assert_int_eq((int)dims[1], w);
    H5Sclose(s);
    H5Dclose(d);
}

START_TEST(saliency_files)
{
    run_fx fx;
    make_run(&fx, "sal", "mask+image");
    cc_status st;
    status_clear(&st);
    char *args[] = {tpath("sal", "img/a.tif"), tpath("sal", "img/c.tif"),
                    tpath("sal", "img/broken.tif")};
    FILE *f = fopen(args[2], "w");
    fputs("junk", f);
    fclose(f);
    saliency_opts o = {NULL, NULL, tpath("sal", "out/sal.h5"), tpath("sal", "png"), 4, H, W};
    ck_assert_int_eq(mkdir(tpath("sal", "out"), 0777), 0);
    FILE *out = tmpfile(), *log = tmpfile();
    ck_assert_int_eq(saliency_run(&fx.cfg, &o, args, 3, out, log, &st), 1);
    char msg[2048] = "";
    rewind(log);
    msg[fread(msg, 1, sizeof msg - 1, log)] = '\0';
    fclose(log);
    ck_assert_msg(strstr(msg, "broken.tif") && strstr(msg, "skipped"), "log: %s", msg);
    /* stdout table: header and the two readable images, whose counts are
     * the counting path's (here with counter.input = mask+image). */
    rewind(out);
    char line[1024], file[1024];
    double c, sg;
    ck_assert_ptr_nonnull(fgets(line, sizeof line, out));
    ck_assert_str_eq(line, "file\tcount\tsigma\n");
    for (int k = 0; k < 2; k++) {
        ck_assert_ptr_nonnull(fgets(line, sizeof line, out));
        ck_assert_int_eq(sscanf(line, "%1023[^\t]\t%lf\t%lf", file, &c, &sg), 3);
        ck_assert_str_eq(file, args[k]);
        double ref = reference_count(&fx, args[k], NULL);
        ck_assert_msg(fabs(c - ref) <= 1e-4 + 1e-5 * fabs(ref), "%s: %.6f vs %.6f", file, c, ref);
    }
    ck_assert_ptr_null(fgets(line, sizeof line, out));
    fclose(out);
    hid_t h5 = H5Fopen(o.out_h5, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert(h5 >= 0);
    const char *stems[] = {"a", "c"};
    for (int k = 0; k < 2; k++) {
        char p[256];
        snprintf(p, sizeof p, "/saliency/%s/image", stems[k]);
        check_h5_dataset(h5, p, H, W);
        snprintf(p, sizeof p, "/saliency/%s/image_grad", stems[k]);
        check_h5_dataset(h5, p, H, W);
        snprintf(p, sizeof p, "/saliency/%s/mask", stems[k]);
        check_h5_dataset(h5, p, H / 2, W / 2);
        snprintf(p, sizeof p, "/saliency/%s/mask_grad", stems[k]);
        check_h5_dataset(h5, p, H / 2, W / 2);
        snprintf(p, sizeof p, "/saliency/%s", stems[k]);
        hid_t a = H5Aopen_by_name(h5, p, "count", H5P_DEFAULT, H5P_DEFAULT);
        c = -1;
        ck_assert(a >= 0 && H5Aread(a, H5T_NATIVE_DOUBLE, &c) >= 0);
        H5Aclose(a);
        ck_assert(c > 0);
        for (int j = 0; j < 2; j++) {
            const char *what = j ? "mask_grad" : "image_grad";
            int pw, ph;
            char pp[700];
            snprintf(pp, sizeof pp, "%s/%s_%s.png", o.png_dir, stems[k], what);
            uint8_t *px = read_png(pp, &pw, &ph);
            ck_assert_int_eq(pw, j ? W / 2 : W);
            ck_assert_int_eq(ph, j ? H / 2 : H);
            int mx = 0;
            for (int i = 0; i < pw * ph; i++) mx = px[i] > mx ? px[i] : mx;
            ck_assert_int_eq(mx, 255);      /* normalised per image */
            free(px);
        }
    }
    ck_assert(H5Lexists(h5, "/saliency/broken", H5P_DEFAULT) <= 0);
    H5Fclose(h5);
    ck_assert(no_temporaries(tpath("sal", "")));
    /* Every input bad: no (empty) HDF5 file either (issue 15 item 10). */
    unlink(o.out_h5);
    status_clear(&st);
    FILE *sink = tmpfile();
    ck_assert_int_eq(saliency_run(&fx.cfg, &o, &args[2], 1, sink, sink, &st), 1);
    fclose(sink);
    ck_assert(!file_exists(o.out_h5));
    ck_assert(no_temporaries(tpath("sal", "")));
    /* A fatal error leaves no HDF5 file. */
    unlink(o.out_h5);
    unlink(tpath("sal", "run/counter_best.h5"));
    status_clear(&st);
    ck_assert_int_eq(saliency_run(&fx.cfg, &o, args, 1, stdout, stderr, &st), -1);
    ck_assert_msg(strstr(st.msg, "counter_best.h5"), "%s", st.msg);
    ck_assert(!file_exists(o.out_h5));
}
END_TEST

void saliency_add_tests(Suite *s)
{
    count_add_case(s, "saliency_gradcheck", saliency_gradcheck);
    count_add_case(s, "saliency_files", saliency_files);
}
