/* test_ops_loss.c - the losses (loss_gauss nll/paper, loss_mse, tv):
 * hand-computed values, naive references, gradient checks, the cut at
 * s = -6, where the Gaussian losses put their optimum, blocked inputs, shape
 * errors, and thread-count independence of the reductions.  Part of the
 * test_ops_binary_loss binary. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/ops_binary_loss_util.h"

typedef enum { L_NLL, L_PAPER, L_MSE, L_TV } loss_kind;

typedef struct loss_cfg {
    loss_kind kind;
    int conv;       /* x = conv3x3(in[0], in[1]) (blocked); s, y follow */
} loss_cfg;

static cc_tensor *build_loss(cc_tape *t, cc_tensor **x, void *u)
{
    loss_cfg *c = u;
    int k = c->conv ? 2 : 1;
    cc_tensor *p = c->conv ? op_conv2d(t, x[0], x[1], NULL, 1, 1) : x[0];
    switch (c->kind) {
    case L_NLL: return op_loss_nll(t, p, x[k], x[k + 1]);
    case L_PAPER: return op_loss_paper(t, p, x[k], x[k + 1]);
    case L_MSE: return op_loss_mse(t, p, x[k]);
    default: return op_tv(t, p);
    }
}

static double gauss_ref(loss_kind kind, const float *x, const float *s, const float *y, int64_t n)
{
    double acc = 0;
    for (int64_t i = 0; i < n; i++) {
        double r = (double)y[i] - x[i];
        if (kind == L_NLL) {
            double sc = s[i] < -6 ? -6 : s[i];
            acc += 0.5 * exp(-sc) * r * r + 0.5 * sc;
        } else if (kind == L_PAPER) {
            double tt = s[i] > -6 ? s[i] : 0;
            acc += r * r / (2 * exp(tt)) + tt;
        } else {
            acc += r * r;
        }
    }
    return acc / (double)n;
}

static double tv_ref(const float *m, int64_t N, int64_t C, int64_t H, int64_t W)
{
    double acc = 0;
    for (int64_t p = 0; p < N * C; p++)
        for (int64_t i = 0; i + 1 < H; i++)
            for (int64_t j = 0; j + 1 < W; j++) {
                const float *q = m + p * H * W;
                double dh = (double)q[i * W + j] - q[i * W + j + 1];
                double dv = (double)q[i * W + j] - q[(i + 1) * W + j];
                acc += dh * dh + dv * dv;
            }
    return acc;
}

static float loss_value(loss_kind kind, tu_input *in, int n_in)
{
    loss_cfg cfg = {kind, 0};
    int64_t n;
    char msg[256];
    float *y = tu_forward(build_loss, &cfg, in, n_in, 1, &n, msg, sizeof msg);
    ck_assert_msg(y, "loss forward failed: %s", msg);
    ck_assert_int_eq(n, 1);
    float v = y[0];
    free(y);
    return v;
}

/* Three elements, worked by hand:
 *   x = (1, 2, 0), s = (0, ln 4, -7), y = (3, 2, 0.1); r = y - x = (2, 0, 0.1).
 *   nll:   (0.5*1*4 + 0) + (0 + 0.5*ln 4) + (0.5*e^6*0.01 - 3, s clamped to -6)
 *        = 2 + 0.6931472 - 0.9828560             -> mean 0.5700970
 *   paper: 4/2 + (0 + ln 4) + (0.01/2 + 0, t = 0 below -6)
 *        = 2 + 1.3862944 + 0.005                -> mean 1.1304315
 *   mse:   (4 + 0 + 0.01) / 3                     = 1.3366667 */
START_TEST(test_losses_hand_values)
{
    float xv[3] = {1, 2, 0}, sv[3] = {0, logf(4), -7}, yv[3] = {3, 2, 0.1f};
    tu_input in[3] = {{1, {3}, xv, 0}, {1, {3}, sv, 0}, {1, {3}, yv, 0}};
    ck_assert_double_eq_tol(loss_value(L_NLL, in, 3), 0.5700970, 2e-6);
    ck_assert_double_eq_tol(loss_value(L_PAPER, in, 3), 1.1304315, 2e-6);
    tu_input mse_in[2] = {in[0], in[2]};
    ck_assert_double_eq_tol(loss_value(L_MSE, mse_in, 2), 1.3366667, 2e-6);
}
END_TEST

/* m = [[1 2 4]
 *      [0 3 5]]: only (0,0) and (0,1) start pairs (i < H-1, j < W-1):
 *   (1-2)^2 + (1-0)^2 = 2,  (2-4)^2 + (2-3)^2 = 5  -> 7.
 * (A TV over every neighbour pair would also count 0-3, 3-5, 4-5: 21.) */
START_TEST(test_tv_hand_value)
{
    float mv[6] = {1, 2, 4, 0, 3, 5};
    tu_input in = {4, {1, 1, 2, 3}, mv, 0};
    ck_assert_double_eq_tol(loss_value(L_TV, &in, 1), 7.0, 1e-6);
}
END_TEST

static void check_gauss(loss_kind kind)
{
    const int64_t d[4] = {2, 1, 5, 7};
    tu_input in[3];
    in[0] = tu_make(4, d, -1, 1, 101, 1);
    in[1] = tu_make(4, d, -2, 2, 102, 1);      /* away from the cut at -6 */
    in[2] = tu_make(4, d, 0, 1, 103, 1);
    /* forward, with a few s below -6 to exercise the clamp */
    float keep[3] = {in[1].data[0], in[1].data[5], in[1].data[9]};
    in[1].data[0] = -7.5f;
    in[1].data[5] = -6.5f;
    in[1].data[9] = -9.f;
    int n_in = kind == L_MSE ? 2 : 3;
    tu_input mse_in[2] = {in[0], in[2]};
    tu_input *use = kind == L_MSE ? mse_in : in;
    double ref = gauss_ref(kind, in[0].data, in[1].data, in[2].data, tu_numel(&in[0]));
    float v = loss_value(kind, use, n_in);
    ck_assert_msg(fabs(v - ref) <= 1e-6 * fabs(ref) + 1e-6, "loss %g vs reference %g", v, ref);
    in[1].data[0] = keep[0];
    in[1].data[5] = keep[1];
    in[1].data[9] = keep[2];
    loss_cfg cfg = {kind, 0};
    ck_assert(tu_gradcheck("gauss", build_loss, &cfg, use, n_in, 1e-2, 1e-4, 1e-2));
    opc_free_inputs(in, 3);
}

START_TEST(test_nll) { check_gauss(L_NLL); }
END_TEST

START_TEST(test_paper) { check_gauss(L_PAPER); }
END_TEST

START_TEST(test_mse) { check_gauss(L_MSE); }
END_TEST

/* Below the cut the gradient to s is exactly zero (x still gets one);
 * above it, it is not. */
static void check_cut(loss_kind kind)
{
    const int64_t n = 8;
    float xv[8], sv[8] = {-7, -6.5f, -20, -6.001f, -5.5f, -1, 0.5f, 2}, yv[8];
    tu_fill_uniform(xv, n, -1, 1, 111);
    tu_fill_uniform(yv, n, 2, 3, 112);       /* residual far from the optimum */
    opc_fixture f;
    opc_fx_init(&f, 0);
    cc_tensor *x = tape_input(&f.t, 1, &n, xv, 1);
    cc_tensor *s = tape_input(&f.t, 1, &n, sv, 1);
    cc_tensor *y = tape_input(&f.t, 1, &n, yv, 0);
    cc_tensor *l = kind == L_NLL ? op_loss_nll(&f.t, x, s, y) : op_loss_paper(&f.t, x, s, y);
    ck_assert_msg(l, "%s", tape_error(&f.t));
    ck_assert_int_eq(tape_backward(&f.t, l), 0);
    float gs[8], gx[8];
    ck_assert_int_eq(tape_read_grad(&f.t, s, gs), 0);
    ck_assert_int_eq(tape_read_grad(&f.t, x, gx), 0);
    for (int i = 0; i < n; i++) {
        if (sv[i] < -6)
            ck_assert_msg(gs[i] == 0.0f, "s=%g: gradient %g, expected exactly 0", sv[i], gs[i]);
        else
            ck_assert_msg(gs[i] != 0.0f, "s=%g: gradient is zero", sv[i]);
        ck_assert_msg(gx[i] != 0.0f && isfinite(gx[i]), "x gradient %g at s=%g", gx[i], sv[i]);
    }
    opc_fx_free(&f);
}

START_TEST(test_nll_cut) { check_cut(L_NLL); }
END_TEST

START_TEST(test_paper_cut) { check_cut(L_PAPER); }
END_TEST

/* Loss of one element and its gradient with respect to s. */
static double scalar_loss(opc_fixture *f, loss_kind kind, float x, float s, float y, double *ds)
{
    const int64_t one = 1;
    tape_reset(&f->t);
    cc_tensor *tx = tape_input(&f->t, 1, &one, &x, 0);
    cc_tensor *ts = tape_input(&f->t, 1, &one, &s, 1);
    cc_tensor *ty = tape_input(&f->t, 1, &one, &y, 0);
    cc_tensor *l = kind == L_NLL ? op_loss_nll(&f->t, tx, ts, ty) : op_loss_paper(&f->t, tx, ts, ty);
    ck_assert_msg(l, "%s", tape_error(&f->t));
    ck_assert_int_eq(tape_backward(&f->t, l), 0);
    float g;
    ck_assert_int_eq(tape_read_grad(&f->t, ts, &g), 0);
    *ds = g;
    return tensor_item(l);
}

/* Golden-section minimisation of the loss over s; returns exp(s*). */
static double optimum_variance(opc_fixture *f, loss_kind kind, float x, float y)
{
    const double phi = (sqrt(5.0) - 1) / 2;
    double lo = -5.5, hi = 4, g;
    double a = hi - phi * (hi - lo), b = lo + phi * (hi - lo);
    double fa = scalar_loss(f, kind, x, (float)a, y, &g), fb = scalar_loss(f, kind, x, (float)b, y, &g);
    for (int it = 0; it < 60; it++) {
        if (fa < fb) {
            hi = b, b = a, fb = fa;
            a = hi - phi * (hi - lo);
            fa = scalar_loss(f, kind, x, (float)a, y, &g);
        } else {
            lo = a, a = b, fa = fb;
            b = lo + phi * (hi - lo);
            fb = scalar_loss(f, kind, x, (float)b, y, &g);
        }
    }
    return exp((lo + hi) / 2);
}

START_TEST(test_gauss_optimum)
{
    opc_fixture f;
    opc_fx_init(&f, 0);
    const float x = 0.25f, y = 1.05f;            /* residual 0.8, squared 0.64 */
    const double r2 = ((double)y - x) * ((double)y - x);
    /* nll: optimum variance = r^2 */
    double v = optimum_variance(&f, L_NLL, x, y);
    ck_assert_msg(fabs(v - r2) < 2e-3 * r2, "nll optimum variance %g, expected %g", v, r2);
    /* paper: optimum variance = r^2 / 2 */
    double vp = optimum_variance(&f, L_PAPER, x, y);
    ck_assert_msg(fabs(vp - r2 / 2) < 2e-3 * r2, "paper optimum variance %g, expected %g", vp, r2 / 2);
    /* gradient sign on both sides of each optimum */
    double g;
    const double s_nll = log(r2), s_paper = log(r2 / 2);
    scalar_loss(&f, L_NLL, x, (float)(s_nll - 0.01), y, &g);
    ck_assert_msg(g < 0, "nll d/ds below optimum %g", g);
    scalar_loss(&f, L_NLL, x, (float)(s_nll + 0.01), y, &g);
    ck_assert_msg(g > 0, "nll d/ds above optimum %g", g);
    scalar_loss(&f, L_PAPER, x, (float)(s_paper - 0.01), y, &g);
    ck_assert_msg(g < 0, "paper d/ds below optimum %g", g);
    scalar_loss(&f, L_PAPER, x, (float)(s_paper + 0.01), y, &g);
    ck_assert_msg(g > 0, "paper d/ds above optimum %g", g);
    /* ... so the paper's loss still wants smaller variance at the nll optimum */
    scalar_loss(&f, L_PAPER, x, (float)s_nll, y, &g);
    ck_assert_msg(g > 0.4, "paper d/ds at ln r^2 should be 1/2, got %g", g);
    opc_fx_free(&f);
}
END_TEST

static void check_tv(int N, int C, int H, int W)
{
    tu_input in = tu_make(4, (int64_t[]){N, C, H, W}, -1, 1, 121, 1);
    double ref = tv_ref(in.data, N, C, H, W);
    float v = loss_value(L_TV, &in, 1);
    ck_assert_msg(fabs(v - ref) <= 1e-6 * fabs(ref) + 1e-6, "tv %g vs reference %g", v, ref);
    loss_cfg cfg = {L_TV, 0};
    ck_assert(tu_gradcheck("tv", build_loss, &cfg, &in, 1, 1e-2, 1e-3, 1e-2));
    free(in.data);
}

START_TEST(test_tv_odd) { check_tv(2, 3, 5, 7); }
END_TEST

START_TEST(test_tv_small)
{
    check_tv(1, 2, 4, 3);
    check_tv(1, 1, 2, 2);
    check_tv(2, 1, 1, 5);       /* no pairs: 0, zero gradient */
    check_tv(1, 1, 6, 1);
}
END_TEST

/* Losses on a blocked prediction (conv output), all gradients. */
START_TEST(test_losses_blocked)
{
    const int64_t d[4] = {1, 8, 3, 4};
    tu_input in[4];
    in[0] = tu_make(4, (int64_t[]){1, 2, 3, 4}, -1, 1, 131, 1);
    in[1] = tu_make(4, (int64_t[]){8, 2, 3, 3}, -0.4, 0.4, 132, 1);
    in[2] = tu_make(4, d, -1.5, 1.5, 133, 1);
    in[3] = tu_make(4, d, 0, 1, 134, 1);
    float *conv = malloc(sizeof(float) * 96);
    opc_conv3_ref(&in[0], &in[1], conv);
    const loss_kind kinds[4] = {L_NLL, L_PAPER, L_MSE, L_TV};
    const int n_in[4] = {4, 4, 3, 2};
    for (int k = 0; k < 4; k++) {
        loss_cfg cfg = {kinds[k], 1};
        int64_t n;
        char msg[256];
        float *y = tu_forward(build_loss, &cfg, in, n_in[k], 1, &n, msg, sizeof msg);
        ck_assert_msg(y, "forward failed: %s", msg);
        double ref = kinds[k] == L_TV ? tv_ref(conv, 1, 8, 3, 4)
                     : kinds[k] == L_MSE ? gauss_ref(L_MSE, conv, NULL, in[2].data, 96)
                                         : gauss_ref(kinds[k], conv, in[2].data, in[3].data, 96);
        ck_assert_msg(fabs(y[0] - ref) < 1e-4 * (1 + fabs(ref)), "loss %d: %g vs %g", k, y[0], ref);
        ck_assert(tu_gradcheck("blocked loss", build_loss, &cfg, in, n_in[k], 1e-2, 2e-3, 2e-2));
        free(y);
    }
    free(conv);
    opc_free_inputs(in, 4);
}
END_TEST

START_TEST(test_loss_shape_errors)
{
    opc_fixture f;
    opc_fx_init(&f, 0);
    cc_tensor *x = tape_input(&f.t, 4, (int64_t[]){2, 1, 4, 4}, NULL, 1);
    cc_tensor *s = tape_input(&f.t, 4, (int64_t[]){2, 1, 4, 5}, NULL, 1);
    cc_tensor *y = tape_input(&f.t, 4, (int64_t[]){2, 1, 4, 4}, NULL, 0);
    ck_assert_ptr_null(op_loss_nll(&f.t, x, s, y));
    opc_assert_error_names(&f.t, "loss_gauss", "2x1x4x5", "2x1x4x4");
    ck_assert(strstr(tape_error(&f.t), "nll"));

    tape_reset(&f.t);
    x = tape_input(&f.t, 4, (int64_t[]){2, 1, 4, 4}, NULL, 1);
    s = tape_input(&f.t, 4, (int64_t[]){2, 1, 4, 4}, NULL, 1);
    y = tape_input(&f.t, 4, (int64_t[]){1, 1, 4, 4}, NULL, 0);
    ck_assert_ptr_null(op_loss_paper(&f.t, x, s, y));
    opc_assert_error_names(&f.t, "loss_gauss", "1x1x4x4", "2x1x4x4");
    ck_assert(strstr(tape_error(&f.t), "paper"));

    tape_reset(&f.t);
    x = tape_input(&f.t, 2, (int64_t[]){3, 2}, NULL, 1);
    y = tape_input(&f.t, 1, (int64_t[]){6}, NULL, 0);
    ck_assert_ptr_null(op_loss_mse(&f.t, x, y));
    opc_assert_error_names(&f.t, "loss_mse", "6", "3x2");

    tape_reset(&f.t);
    x = tape_input(&f.t, 2, (int64_t[]){3, 2}, NULL, 1);
    ck_assert_ptr_null(op_tv(&f.t, x));
    opc_assert_error_names(&f.t, "tv", "3x2", "4-D");
    opc_fx_free(&f);
}
END_TEST

/* sum, mean and the losses give bit-identical results with 1 and 3 threads
 * (several chunks, so the combination order matters). */
START_TEST(test_reductions_thread_independent)
{
    const int64_t d[4] = {2, 1, 150, 170};   /* 51000 elements: 13 chunks */
    tu_input in[3];
    in[0] = tu_make(4, d, -1, 1, 141, 1);
    in[1] = tu_make(4, d, -3, 3, 142, 1);
    in[2] = tu_make(4, d, 0, 1, 143, 1);
    float out[2][5], grad[2][3];
    for (int k = 0; k < 2; k++) {
        opc_fixture f;
        opc_fx_init(&f, k ? 3 : 1);
        cc_tensor *x = tape_input(&f.t, 4, d, in[0].data, 1);
        cc_tensor *s = tape_input(&f.t, 4, d, in[1].data, 1);
        cc_tensor *y = tape_input(&f.t, 4, d, in[2].data, 0);
        cc_tensor *r[5] = {op_sum(&f.t, x), op_mean(&f.t, s), op_loss_nll(&f.t, x, s, y),
                           op_loss_paper(&f.t, x, s, y), op_tv(&f.t, x)};
        for (int i = 0; i < 5; i++) {
            ck_assert_msg(r[i], "%s", tape_error(&f.t));
            out[k][i] = tensor_item(r[i]);
        }
        cc_tensor *l = op_sum(&f.t, op_add(&f.t, r[2], r[4]));
        ck_assert_int_eq(tape_backward(&f.t, l), 0);
        float *g = malloc(sizeof(float) * 51000);
        tape_read_grad(&f.t, x, g);
        grad[k][0] = g[777];
        grad[k][1] = g[50999];
        tape_read_grad(&f.t, s, g);
        grad[k][2] = g[4242];
        free(g);
        opc_fx_free(&f);
    }
    ck_assert(memcmp(out[0], out[1], sizeof out[0]) == 0);
    ck_assert(memcmp(grad[0], grad[1], sizeof grad[0]) == 0);
    double ref = 0;
    for (int64_t i = 0; i < 51000; i++) ref += in[0].data[i];
    ck_assert_msg(fabs(out[0][0] - ref) < 1e-3, "sum %g vs %g", out[0][0], ref);
    opc_free_inputs(in, 3);
}
END_TEST
void opc_add_loss_cases(Suite *s)
{
    TCase *tc = tcase_create("losses");
    tcase_add_test(tc, test_losses_hand_values);
    tcase_add_test(tc, test_tv_hand_value);
    tcase_add_test(tc, test_nll);
    tcase_add_test(tc, test_paper);
    tcase_add_test(tc, test_mse);
    tcase_add_test(tc, test_nll_cut);
    tcase_add_test(tc, test_paper_cut);
    tcase_add_test(tc, test_gauss_optimum);
    tcase_add_test(tc, test_tv_odd);
    tcase_add_test(tc, test_tv_small);
    tcase_add_test(tc, test_losses_blocked);
    tcase_add_test(tc, test_loss_shape_errors);
    tcase_add_test(tc, test_reductions_thread_independent);
    suite_add_tcase(s, tc);
}
