/* test_count_saliency.c - `saliency` (src/infer/saliency.c): the gradients of
 * the count against central finite differences, agreement with `count`,
 * and the HDF5/PNG outputs.  Part of tests/test_count (fixture:
 * countutil.h). */
#include <check.h>
#include <float.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "src/infer/count_files.h"
#include "src/infer/saliency.h"
#include "tests/countutil.h"

/* Gradient checks of a count function f against finite differences.
 *
 * f is a float32 network: its value carries a rounding noise that is
 * deterministic but changes erratically with the input (sums of terms of
 * size ~5 give a count of ~0.1).  A fixed step therefore fails on some
 * kernel set (issue 10: at eps 3e-4 the AVX-512 kernels put 8% of noise on
 * an element whose gradient was right; the difference quotient converged to
 * the analytic value at eps 1e-3..1e-2 on every ISA).  So the noise is
 * measured, not assumed: sigma = the largest |f(v+r) - f(v) - g.r| over a few
 * random one-ulp perturbations r (g.r, the true change, is subtracted; it is
 * ~30x smaller anyway).  Then:
 *  - along the unit gradient: the directional derivative must match |g| to
 *    5% (plus the noise bound); a gradient wrong in scale, sign or pattern
 *    fails this (max-pool ties make exact agreement impossible: ~2% here);
 *  - single elements (the 16 largest |g|): f is piecewise smooth with kinks
 *    everywhere (LeakyReLU, max-pool ties), often closer than the step the
 *    noise allows, and a kink on each side can fool a comparison of the two
 *    one-sided quotients.  So each element gets f at v + eps*{-2,-1,1,2}:
 *    the four one-step slopes must agree (within 4 noise bounds and 3%),
 *    or no kink lies within 2 eps; eps starts where the noise is 1% of the
 *    element's numeric slope (clamped to [1e-4, 1e-2]) and is halved twice
 *    while the noise stays under 5%.  An element whose slopes never agree is skipped; one that is
 *    checked must match its central difference to 3% + 2 noise bounds.  At
 *    least 3 must be checked.
 * The tolerance thus comes from the function at hand, not from one CPU.
 * fd_check returns 0 or -1 with the reason in msg, so that the test can
 * also assert that a wrong gradient is caught. */
typedef double (*count_fn)(void *u, const float *v);

typedef struct fd_check_ctx {
    count_fn f;
    void *u;
    const float *v;         /* point (n) */
    int n;
    double c0, noise;       /* f(v) and its rounding-noise bound */
    float *d, *tmp;         /* scratch (n) */
} fd_check_ctx;

/* f(v + t*d). */
static double fd_at(fd_check_ctx *c, double t)
{
    for (int i = 0; i < c->n; i++) c->tmp[i] = c->v[i] + (float)t * c->d[i];
    return c->f(c->u, c->tmp);
}

static double central(fd_check_ctx *c, double eps, double *fwd, double *bwd)
{
    const double up = fd_at(c, eps), dn = fd_at(c, -eps);
    *fwd = (up - c->c0) / eps;
    *bwd = (c->c0 - dn) / eps;
    return (up - dn) / (2 * eps);
}

/* Element check along c->d = e_i (see above): 1 checked and right, 0
 * skipped (a kink within every step tried), -1 wrong (msg set). */
static int fd_element(fd_check_ctx *c, const char *what, int i, double gi, char *msg,
                      size_t len)
{
    /* The step comes from the numeric slope, not from gi: a wrong gi must
     * meet the very comparison a right one passes (see gradcheck). */
    double fwd, bwd;
    const double a = fabs(central(c, 1e-3, &fwd, &bwd));
    double eps = fmin(1e-2, fmax(1e-4, 100 * c->noise / a));
    for (int k = 0; k < 3 && c->noise / eps <= 0.05 * a; k++, eps *= 0.5) {
        const double nb = c->noise / eps;
        const double m2 = fd_at(c, -2 * eps), m1 = fd_at(c, -eps);
        const double p1 = fd_at(c, eps), p2 = fd_at(c, 2 * eps);
        const double sl[4] = {(m1 - m2) / eps, (c->c0 - m1) / eps, (p1 - c->c0) / eps,
                              (p2 - p1) / eps};
        double lo = sl[0], hi = sl[0];
        for (int j = 1; j < 4; j++) lo = fmin(lo, sl[j]), hi = fmax(hi, sl[j]);
        const double cd = (p1 - m1) / (2 * eps);
        if (hi - lo > 0.03 * fabs(cd) + 4 * nb) continue;
        if (fabs(cd - gi) > 0.03 * fabs(cd) + 2 * nb)
            return snprintf(msg, len,
                            "%s: element %d: analytic %.6g, numeric %.6g at eps %.3g (slopes "
                            "%.6g %.6g %.6g %.6g, noise bound %.3g)",
                            what, i, gi, cd, eps, sl[0], sl[1], sl[2], sl[3], nb),
                   -1;
        return 1;
    }
    return 0;
}

/* The noise bound of f near v (see above); g: the analytic gradient. */
static double fd_noise(fd_check_ctx *c, const float *g)
{
    uint64_t s = 0x9e3779b97f4a7c15ull;
    double worst = 0;
    for (int k = 0; k < 8; k++) {
        double lin = 0;
        for (int i = 0; i < c->n; i++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            const float to = (s >> 63) ? INFINITY : -INFINITY;
            c->tmp[i] = nextafterf(c->v[i], to);
            lin += (double)g[i] * ((double)c->tmp[i] - c->v[i]);
        }
        worst = fmax(worst, fabs(c->f(c->u, c->tmp) - c->c0 - lin));
    }
    /* f may be exactly flat to a one-ulp move: then a few ulps of f. */
    return fmax(worst, 4 * FLT_EPSILON * fabs(c->c0));
}

/* 0 when g passes, else -1 and msg; *first: the first element checked. */
static int fd_check(const char *what, fd_check_ctx *c, const float *g, int *first, char *msg,
                    size_t len)
{
    const int n = c->n;
    double gmax = 0, gnorm = 0, fwd, bwd;
    for (int i = 0; i < n; i++) gmax = fmax(gmax, fabs(g[i])), gnorm += (double)g[i] * g[i];
    gnorm = sqrt(gnorm);
    if (!(gmax > 0)) return snprintf(msg, len, "%s: gradient is all zero", what), -1;
    for (int i = 0; i < n; i++) c->d[i] = (float)(g[i] / gnorm);
    double eps = 1e-3, fd = central(c, eps, &fwd, &bwd);
    if (fabs(fd - gnorm) > 0.05 * gnorm + 4 * c->noise / eps)
        return snprintf(msg, len,
                        "%s: along the gradient: analytic %.6g, numeric %.6g (one-sided %.6g "
                        "%.6g, noise bound %.3g)",
                        what, gnorm, fd, fwd, bwd, c->noise / eps),
               -1;
    int used[16], checked = 0;
    *first = -1;
    memset(c->d, 0, sizeof(float) * (size_t)n);
    for (int k = 0; k < 16 && k < n; k++) {
        int best = -1;
        for (int i = 0; i < n; i++) {
            int dup = 0;
            for (int j = 0; j < k; j++) dup |= used[j] == i;
            if (!dup && (best < 0 || fabsf(g[i]) > fabsf(g[best]))) best = i;
        }
        used[k] = best;
        c->d[best] = 1.0f;
        const int r = fd_element(c, what, best, g[best], msg, len);
        c->d[best] = 0.0f;
        if (r < 0) return -1;
        if (r > 0 && checked++ == 0) *first = best;
    }
    if (checked < 3)
        return snprintf(msg, len, "%s: only %d of 16 elements away from kinks", what, checked),
               -1;
    return 0;
}

/* Check g against f at v; then check that the same check rejects three
 * plausible bugs: a checked element 20% off, the map shifted by one
 * element (an indexing bug), and the whole gradient 12% too small. */
static void gradcheck(const char *what, count_fn f, void *u, const float *v, const float *g,
                      int n)
{
    fd_check_ctx c = {f, u, v, n, 0, 0, calloc((size_t)n, sizeof(float)),
                      malloc(sizeof(float) * (size_t)n)};
    float *bad = malloc(sizeof(float) * (size_t)n);
    char msg[512];
    c.c0 = f(u, v);
    c.noise = fd_noise(&c, g);
    int top, ign;
    ck_assert_msg(fd_check(what, &c, g, &top, msg, sizeof msg) == 0, "%s", msg);
    memcpy(bad, g, sizeof(float) * (size_t)n);
    bad[top] *= 1.2f;
    ck_assert_msg(fd_check(what, &c, bad, &ign, msg, sizeof msg) != 0,
                  "%s: a 20%% error in element %d passed the check", what, top);
    for (int i = 0; i < n; i++) bad[i] = g[(i + 1) % n];
    ck_assert_msg(fd_check(what, &c, bad, &ign, msg, sizeof msg) != 0,
                  "%s: a gradient shifted by one element passed the check", what);
    for (int i = 0; i < n; i++) bad[i] = 0.88f * g[i];
    ck_assert_msg(fd_check(what, &c, bad, &ign, msg, sizeof msg) != 0,
                  "%s: a gradient 12%% too small passed the check", what);
    free(bad);
    free(c.d);
    free(c.tmp);
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

/* A trained run in sub/run: cm prepared for saliency on *t, ref the
 * same checkpoints as `count` opens them (inference tape). */
static void open_pair(run_fx *fx, const char *sub, cfg_tta tta, count_model *cm,
                      count_model *ref, cc_tape *t)
{
    make_run(fx, sub, "mask");
    cc_status st;
    status_clear(&st);
    ck_assert_msg(count_model_open(cm, &fx->cfg, H, W, NULL, NULL, 0, NULL, &st) == 0, "%s", st.msg);
    ck_assert_msg(count_model_open(ref, &fx->cfg, H, W, NULL, NULL, 1, NULL, &st) == 0, "%s", st.msg);
    cm->s.cfg.counter_tta = ref->s.cfg.counter_tta = tta;
    saliency_prepare(cm, t);
}

START_TEST(saliency_gradcheck)
{
    run_fx fx;
    count_model cm, ref;
    cc_tape t;
    open_pair(&fx, "grad", CFG_TTA_NONE, &cm, &ref, &t);
    cc_status st;
    status_clear(&st);
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

    /* The gradient is taken at batch 2, the differences at batch 1: oneDNN
     * may pick other kernels per batch, so the batch-1 gradient must be the
     * same (to float rounding) before the differences can judge it. */
    for (int img = 0; img < 2; img++) {
        static float ig1[H * W], mg1[H * W / 4], m1[H * W / 4];
        double c1, s1, dmax = 0, gmax = 0;
        saliency_maps one = {&c1, &s1, m1, mg1, ig1};
        ck_assert_msg(saliency_compute(&cm, &t, x + img * H * W, 1, &one, &st) == 0, "%s",
                      st.msg);
        for (int i = 0; i < H * W; i++) {
            dmax = fmax(dmax, fabs(ig1[i] - ig[img * H * W + i]));
            gmax = fmax(gmax, fabs(ig[img * H * W + i]));
        }
        ck_assert_msg(dmax <= 1e-4 * gmax, "image %d: batch-1 and batch-2 gradients differ by %g "
                      "(max %g)", img, dmax, gmax);
    }

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

/* counter.tta = flips: saliency's count and sigma are count's (the four
 * views combined) and its image gradient is that of the views' mean count,
 * checked by differences of the whole flipped-views prediction. */
START_TEST(saliency_tta_flips)
{
    run_fx fx;
    count_model cm, ref;
    cc_tape t;
    open_pair(&fx, "gtta", CFG_TTA_FLIPS, &cm, &ref, &t);
    cc_status st;
    status_clear(&st);
    static float x[H * W], mask[H * W / 4], mg[H * W / 4], ig[H * W];
    ck_assert_int_eq(count_image_load(tpath("gtta", "img/a.tif"), H, W, x, &st), 0);
    double cnt, sig, rc, rs, c1, s1;
    saliency_maps maps = {&cnt, &sig, mask, mg, ig};
    ck_assert_msg(saliency_compute(&cm, &t, x, 1, &maps, &st) == 0, "%s", st.msg);
    ck_assert_int_eq(count_model_predict(&ref, x, 1, &rc, &rs, NULL, NULL, &st), 0);
    ck_assert(cnt > 0);
    ck_assert_double_eq_tol(cnt, rc, 1e-4 * fabs(rc));
    ck_assert_double_eq_tol(sig, rs, 1e-4 * fabs(rs));
    /* the views must matter here, or this test could not tell them apart */
    ref.s.cfg.counter_tta = CFG_TTA_NONE;
    ck_assert_int_eq(count_model_predict(&ref, x, 1, &c1, &s1, NULL, NULL, &st), 0);
    ref.s.cfg.counter_tta = CFG_TTA_FLIPS;
    ck_assert_msg(fabs(c1 - rc) > 1e-3 * fabs(rc) || fabs(s1 - rs) > 1e-3 * fabs(rs),
                  "one view and four views agree (%g, %g): the flips are not tested", c1, rc);
    gradcheck("image (flips)", predict_image, &ref, x, ig, H * W);
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
    saliency_opts o = {NULL, NULL, tpath("sal", "out/sal.h5"), tpath("sal", "png"), 4, H, W, NULL};
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
    count_add_case(s, "saliency_tta_flips", saliency_tta_flips);
    count_add_case(s, "saliency_files", saliency_files);
}
