/* test_ops_bnorm_eltwise.c - batch_norm (training, running statistics,
 * buffer updates, blocked inputs) and the eltwise family (relu, leaky_relu,
 * exp, clamp, scale). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autodiff/op.h"
#include "autodiff/ops.h"
#include "autodiff/params.h"
#include "tests/testutil.h"
#include "tests/testmain.h"

#define BN_EPS 1e-5f
#define BN_MOM 0.1f

/* test_ops_bnorm_fused.c */
void ops_add_fused_cases(TCase *tc);
/* test_ops_bnorm_sync.c */
void ops_add_sync_cases(TCase *tc);
void ops_add_bnorm_kern_cases(TCase *tc);

/* ---- naive references ---- */

/* Per-channel batch mean and biased variance of plain (N,C,S) data, S = H*W. */
static void stats_ref(const float *x, int64_t N, int64_t C, int64_t S, double *mean, double *var)
{
    for (int64_t c = 0; c < C; c++) {
        double sum = 0, sq = 0;
        for (int64_t n = 0; n < N; n++)
            for (int64_t i = 0; i < S; i++) sum += x[(n * C + c) * S + i];
        double m = sum / (double)(N * S);
        for (int64_t n = 0; n < N; n++)
            for (int64_t i = 0; i < S; i++) {
                double d = x[(n * C + c) * S + i] - m;
                sq += d * d;
            }
        mean[c] = m;
        var[c] = sq / (double)(N * S);
    }
}

/* y = gamma (x - mean) / sqrt(var + eps) + beta. */
static void bn_apply_ref(const float *x, int64_t N, int64_t C, int64_t S, const double *mean,
                         const double *var, const float *gamma, const float *beta, float *y)
{
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t i = 0; i < S; i++) {
                int64_t k = (n * C + c) * S + i;
                y[k] = (float)(gamma[c] * (x[k] - mean[c]) / sqrt(var[c] + BN_EPS) + beta[c]);
            }
}

/* Input layout of a BN test: x, gamma, beta, run_mean, run_var[, num_batches]. */
static void bn_inputs(tu_input *in, int ndim, const int64_t *dims, uint64_t seed)
{
    int64_t C = dims[1];
    in[0] = tu_make(ndim, dims, -2, 3, seed, 1);
    in[1] = tu_make(1, (int64_t[]){C}, 0.5, 1.5, seed + 1, 1);
    in[2] = tu_make(1, (int64_t[]){C}, -0.5, 0.5, seed + 2, 1);
    in[3] = tu_make(1, (int64_t[]){C}, -0.3, 0.3, seed + 3, 0);
    in[4] = tu_make(1, (int64_t[]){C}, 0.5, 2.0, seed + 4, 0);
    in[5] = tu_make(1, (int64_t[]){1}, 3, 3, seed + 5, 0);
}

static void free_inputs(tu_input *in, int n)
{
    for (int i = 0; i < n; i++) free(in[i].data);
}

static cc_tensor *build_bn(cc_tape *t, cc_tensor **x, void *u)
{
    (void)u;
    return op_batch_norm(t, x[0], x[1], x[2], x[3], x[4], x[5], BN_MOM, BN_EPS);
}

static cc_tensor *build_bn_eval(cc_tape *t, cc_tensor **x, void *u)
{
    (void)u;
    return op_batch_norm_eval(t, x[0], x[1], x[2], x[3], x[4], BN_EPS);
}

/* Training-tape forward against batch statistics, then the gradients of
 * x, gamma and beta through the full backward (statistics included). */
static void check_bn_train(int ndim, const int64_t *dims, uint64_t seed)
{
    tu_input in[6];
    bn_inputs(in, ndim, dims, seed);
    int64_t N = dims[0], C = dims[1], S = ndim == 4 ? dims[2] * dims[3] : 1, n;
    char msg[256];
    float *y = tu_forward(build_bn, NULL, in, 6, 1, &n, msg, sizeof msg);
    ck_assert_msg(y, "forward failed: %s", msg);
    ck_assert_int_eq(n, N * C * S);
    double mean[64], var[64];
    stats_ref(in[0].data, N, C, S, mean, var);
    float *ref = malloc(sizeof(float) * (size_t)n);
    bn_apply_ref(in[0].data, N, C, S, mean, var, in[1].data, in[2].data, ref);
    double d = tu_max_abs_diff(y, ref, n);
    ck_assert_msg(d < 1e-4, "batch_norm (train) forward differs from reference by %g", d);
    ck_assert(tu_gradcheck("batch_norm train", build_bn, NULL, in, 6, 1e-2, 2e-3, 2e-2));
    free(y);
    free(ref);
    free_inputs(in, 6);
}

START_TEST(test_bn_train_2d_odd) { check_bn_train(4, (int64_t[]){3, 5, 4, 3}, 10); }
END_TEST

START_TEST(test_bn_train_2d_single_image) { check_bn_train(4, (int64_t[]){1, 3, 5, 7}, 20); }
END_TEST

START_TEST(test_bn_train_1d_odd) { check_bn_train(2, (int64_t[]){7, 6}, 30); }
END_TEST

START_TEST(test_bn_train_1d_two_samples) { check_bn_train(2, (int64_t[]){2, 3}, 40); }
END_TEST

/* Running statistics: an inference tape (op_batch_norm) and op_batch_norm_eval
 * on a training tape both match the reference; the latter's gradient is the
 * affine map's (statistics are constants). */
static void check_bn_eval(int ndim, const int64_t *dims, uint64_t seed)
{
    tu_input in[6];
    bn_inputs(in, ndim, dims, seed);
    int64_t N = dims[0], C = dims[1], S = ndim == 4 ? dims[2] * dims[3] : 1, n;
    double mean[64], var[64];
    for (int64_t c = 0; c < C; c++) {
        mean[c] = in[3].data[c];
        var[c] = in[4].data[c];
    }
    float *ref = malloc(sizeof(float) * (size_t)(N * C * S));
    bn_apply_ref(in[0].data, N, C, S, mean, var, in[1].data, in[2].data, ref);
    char msg[256];
    float *y = tu_forward(build_bn, NULL, in, 6, 0, &n, msg, sizeof msg);
    ck_assert_msg(y, "inference forward failed: %s", msg);
    ck_assert_int_eq(n, N * C * S);
    double d = tu_max_abs_diff(y, ref, n);
    ck_assert_msg(d < 1e-5, "batch_norm (inference) differs from reference by %g", d);
    free(y);
    y = tu_forward(build_bn_eval, NULL, in, 5, 1, &n, msg, sizeof msg);
    ck_assert_msg(y, "eval forward on a training tape failed: %s", msg);
    d = tu_max_abs_diff(y, ref, n);
    ck_assert_msg(d < 1e-5, "batch_norm_eval differs from reference by %g", d);
    ck_assert(tu_gradcheck("batch_norm eval", build_bn_eval, NULL, in, 5, 1e-2, 2e-3, 2e-2));
    free(y);
    free(ref);
    free_inputs(in, 6);
}

START_TEST(test_bn_eval_2d) { check_bn_eval(4, (int64_t[]){2, 3, 5, 3}, 50); }
END_TEST

START_TEST(test_bn_eval_1d_single_sample) { check_bn_eval(2, (int64_t[]){1, 5}, 60); }
END_TEST

/* Buffer updates after one training step, by hand: running = 0.9 running +
 * 0.1 batch with the UNBIASED variance, num_batches + 1; an inference tape and
 * op_batch_norm_eval leave them alone. */
START_TEST(test_bn_running_update)
{
    cc_ctx ctx;
    ck_assert_int_eq(ctx_init(&ctx, 0, NULL), 0);
    cc_tape t;
    tape_init(&t, &ctx, 1);
    tu_input in[6];
    const int64_t dims[4] = {2, 3, 2, 3}, N = 2, C = 3, S = 6;
    bn_inputs(in, 4, dims, 70);
    cc_tensor *x[6];
    for (int i = 0; i < 6; i++)
        x[i] = tape_input(&t, in[i].ndim, in[i].dims, in[i].data, in[i].requires_grad);
    ck_assert_ptr_nonnull(op_batch_norm(&t, x[0], x[1], x[2], x[3], x[4], x[5], BN_MOM, BN_EPS));
    double mean[3], var[3];
    stats_ref(in[0].data, N, C, S, mean, var);
    for (int c = 0; c < C; c++) {
        double m = 0.9 * in[3].data[c] + 0.1 * mean[c];
        double v = 0.9 * in[4].data[c] + 0.1 * var[c] * (N * S) / (N * S - 1.0);
        ck_assert_msg(fabs(x[3]->data[c] - m) < 1e-6, "running_mean[%d] %g, expected %g", c,
                      (double)x[3]->data[c], m);
        ck_assert_msg(fabs(x[4]->data[c] - v) < 1e-6 * (1 + fabs(v)),
                      "running_var[%d] %g, expected %g (unbiased)", c, (double)x[4]->data[c], v);
    }
    ck_assert_float_eq(x[5]->data[0], 4.0f);
    /* without num_batches, and with another momentum */
    float rm1[3], rv1[3];
    memcpy(rm1, x[3]->data, sizeof rm1);
    memcpy(rv1, x[4]->data, sizeof rv1);
    ck_assert_ptr_nonnull(op_batch_norm(&t, x[0], x[1], x[2], x[3], x[4], NULL, 0.25f, BN_EPS));
    for (int c = 0; c < C; c++) {
        double m = 0.75 * rm1[c] + 0.25 * mean[c];
        double v = 0.75 * rv1[c] + 0.25 * var[c] * (N * S) / (N * S - 1.0);
        ck_assert(fabs(x[3]->data[c] - m) < 1e-6);
        ck_assert(fabs(x[4]->data[c] - v) < 1e-6 * (1 + fabs(v)));
    }
    ck_assert_float_eq(x[5]->data[0], 4.0f);
    /* running-statistics modes do not touch the buffers */
    memcpy(rm1, x[3]->data, sizeof rm1);
    memcpy(rv1, x[4]->data, sizeof rv1);
    ck_assert_ptr_nonnull(op_batch_norm_eval(&t, x[0], x[1], x[2], x[3], x[4], BN_EPS));
    tape_set_training(&t, 0);
    ck_assert_ptr_nonnull(op_batch_norm(&t, x[0], x[1], x[2], x[3], x[4], x[5], BN_MOM, BN_EPS));
    ck_assert(!memcmp(rm1, x[3]->data, sizeof rm1) && !memcmp(rv1, x[4]->data, sizeof rv1));
    ck_assert_float_eq(x[5]->data[0], 4.0f);
    ck_assert_msg(tape_ok(&t), "%s", tape_error(&t));
    tape_free(&t);
    ctx_free(&ctx);
    free_inputs(in, 6);
}
END_TEST

/* BN fed by parameters in slabs over several steps on one tape (node states
 * reused): gamma/beta gradients land in the grad slab, the buffers follow
 * the recurrence step after step, and no step after warm-up allocates. */
/* momentum < 0: the running statistics become the cumulative average of
 * the batches since num_batches was 0 (PyTorch's momentum=None); without
 * num_batches it is refused. */
START_TEST(test_bn_cumulative_average)
{
    cc_ctx ctx;
    ck_assert_int_eq(ctx_init(&ctx, 0, NULL), 0);
    cc_tape t;
    tape_init(&t, &ctx, 1);
    const int64_t dims[4] = {2, 3, 2, 3}, N = 2, C = 3, S = 6;
    tu_input in[6];
    bn_inputs(in, 4, dims, 71);
    in[5].data[0] = 0;
    tu_input x2 = tu_make(4, dims, -1, 4, 72, 0), x3 = tu_make(4, dims, -3, 1, 73, 0);
    const float *batches[3] = {in[0].data, x2.data, x3.data};
    cc_tensor *p[6];
    for (int i = 1; i < 6; i++)
        p[i] = tape_input(&t, in[i].ndim, in[i].dims, in[i].data, in[i].requires_grad);
    double want_m[3] = {0}, want_v[3] = {0};
    for (int k = 0; k < 3; k++) {
        cc_tensor *x = tape_input(&t, 4, dims, batches[k], 0);
        ck_assert_ptr_nonnull(op_batch_norm(&t, x, p[1], p[2], p[3], p[4], p[5], -1.0f, BN_EPS));
        double mean[3], var[3];
        stats_ref(batches[k], N, C, S, mean, var);
        for (int c = 0; c < C; c++) {
            want_m[c] += mean[c] / 3;
            want_v[c] += var[c] * (N * S) / (N * S - 1.0) / 3;
        }
    }
    for (int c = 0; c < C; c++) {
        ck_assert_msg(fabs(p[3]->data[c] - want_m[c]) < 1e-5, "mean[%d] %g vs %g", c,
                      (double)p[3]->data[c], want_m[c]);
        ck_assert_msg(fabs(p[4]->data[c] - want_v[c]) < 1e-5 * (1 + want_v[c]), "var[%d]", c);
    }
    ck_assert_float_eq(p[5]->data[0], 3.0f);
    cc_tensor *x = tape_input(&t, 4, dims, in[0].data, 0);
    ck_assert_ptr_null(op_batch_norm(&t, x, p[1], p[2], p[3], p[4], NULL, -1.0f, BN_EPS));
    ck_assert(strstr(tape_error(&t), "num_batches"));
    tape_free(&t);
    ctx_free(&ctx);
    free_inputs(in, 6);
    free(x2.data);
    free(x3.data);
}
END_TEST

START_TEST(test_bn_params_steps)
{
    cc_ctx ctx;
    ck_assert_int_eq(ctx_init(&ctx, 0, NULL), 0);
    cc_params P;
    params_init(&P, &ctx);
    const int64_t C = 4, N = 3, S = 5;
    int ig = params_add(&P, "bn/weight", 1, &C, PARAM_TRAINABLE, NULL);
    int ib = params_add(&P, "bn/bias", 1, &C, PARAM_TRAINABLE, NULL);
    int im = params_add(&P, "bn/running_mean", 1, &C, PARAM_BUFFER, NULL);
    int iv = params_add(&P, "bn/running_var", 1, &C, PARAM_BUFFER, NULL);
    int inb = params_add(&P, "bn/num_batches_tracked", 1, (int64_t[]){1}, PARAM_BUFFER, NULL);
    ck_assert_int_eq(params_finalize(&P, NULL), 0);
    params_fill(&P, ig, 1);
    params_fill(&P, iv, 1);
    float xv[3 * 4 * 5], seed[3 * 4 * 5];
    tu_fill_uniform(xv, N * C * S, -1, 2, 80);
    tu_fill_uniform(seed, N * C * S, -1, 1, 81);
    double mean[4], var[4], rm[4] = {0}, rv[4] = {1, 1, 1, 1};
    stats_ref(xv, N, C, S, mean, var);
    cc_tape t;
    tape_init(&t, &ctx, 1);
    size_t allocs = 0;
    for (int step = 0; step < 6; step++) {
        tape_reset(&t);
        params_zero_grad(&P);
        cc_tensor *xi = tape_input(&t, 4, (int64_t[]){N, C, 1, S}, xv, 1);
        cc_tensor *y = op_batch_norm(&t, xi, params_tensor(&P, ig), params_tensor(&P, ib),
                                     params_tensor(&P, im), params_tensor(&P, iv),
                                     params_tensor(&P, inb), BN_MOM, BN_EPS);
        y = op_leaky_relu(&t, y, 0.01f);
        ck_assert_msg(y != NULL, "%s", tape_error(&t));
        ck_assert_int_eq(tape_backward_seed(&t, y, seed), 0);
        for (int c = 0; c < C; c++) {
            rm[c] = 0.9 * rm[c] + 0.1 * mean[c];
            rv[c] = 0.9 * rv[c] + 0.1 * var[c] * (N * S) / (N * S - 1.0);
        }
        if (step == 1) allocs = ctx.n_allocs;
    }
    ck_assert_uint_eq(ctx.n_allocs, allocs);
    ck_assert_float_eq(params_tensor(&P, inb)->data[0], 6.0f);
    for (int c = 0; c < C; c++) {
        ck_assert(fabs(params_tensor(&P, im)->data[c] - rm[c]) < 1e-5);
        ck_assert(fabs(params_tensor(&P, iv)->data[c] - rv[c]) < 1e-5);
    }
    /* d/d beta of sum(seed * leaky(bn)) = sum over the channel of seed * leaky' */
    float yv[3 * 4 * 5];
    double xm[4], xvv[4];
    stats_ref(xv, N, C, S, xm, xvv);
    float gam[4] = {1, 1, 1, 1}, bet[4] = {0};
    bn_apply_ref(xv, N, C, S, xm, xvv, gam, bet, yv);
    for (int c = 0; c < C; c++) {
        double gb = 0, gg = 0;
        for (int64_t n = 0; n < N; n++)
            for (int64_t i = 0; i < S; i++) {
                int64_t k = (n * C + c) * S + i;
                double dl = seed[k] * (yv[k] > 0 ? 1 : 0.01);
                gb += dl;
                gg += dl * yv[k];
            }
        ck_assert_msg(fabs(P.grad[P.p[ib].offset + c] - gb) < 1e-4, "beta grad %g vs %g",
                      (double)P.grad[P.p[ib].offset + c], gb);
        ck_assert_msg(fabs(P.grad[P.p[ig].offset + c] - gg) < 1e-4, "gamma grad %g vs %g",
                      (double)P.grad[P.p[ig].offset + c], gg);
    }
    tape_free(&t);
    params_free(&P);
    ctx_free(&ctx);
}
END_TEST

/* ---- blocked inputs (conv2d output) ---- */

/* The block size b when md is nChw{b}c, else 0. */
static int nchw_block(const dnnl_memory_desc_t *md)
{
    static const struct { dnnl_format_tag_t tag; int b; } tags[] = {
        {dnnl_nChw8c, 8}, {dnnl_nChw16c, 16}, {dnnl_nChw4c, 4}};
    for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++) {
        dnnl_memory_desc_t m;
        dnnl_memory_desc_init_by_tag(&m, 4, md->dims, dnnl_f32, tags[i].tag);
        if (dnnl_memory_desc_equal(&m, md)) return tags[i].b;
    }
    return 0;
}

/* Padded channels of an nChw{b}c tensor must hold zeros. */
static void assert_padding_zero(const cc_tensor *y, const float *buf, const char *what)
{
    int b = nchw_block(&y->md);
    if (!b) return;
    int64_t N = y->dims[0], C = y->dims[1], HW = y->dims[2] * y->dims[3], CB = (C + b - 1) / b;
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = C; c < CB * b; c++)
            for (int64_t i = 0; i < HW; i++) {
                float v = buf[((n * CB + c / b) * HW + i) * b + c % b];
                ck_assert_msg(v == 0.0f, "%s: padded channel %lld holds %g", what, (long long)c,
                              (double)v);
            }
}

static cc_tensor *apply_elt(cc_tape *t, cc_tensor *h, int which)
{
    switch (which) {
    case 1: return op_relu(t, h);
    case 2: return op_leaky_relu(t, h, 0.01f);
    case 3: return op_exp(t, h);
    case 4: return op_clamp(t, h, -0.3f, 0.4f);
    case 5: return op_scale(t, h, -1.5f, 0.25f);
    case 7: return op_relu_unstick(t, h);
    default: return op_clamp(t, h, -6.0f, INFINITY);
    }
}

static float elt_ref(int which, float v)
{
    switch (which) {
    case 1:
    case 7: return v > 0 ? v : 0;
    case 2: return v > 0 ? v : 0.01f * v;
    case 3: return expf(v);
    case 4: return v < -0.3f ? -0.3f : v > 0.4f ? 0.4f : v;
    case 5: return -1.5f * v + 0.25f;
    default: return v < -6 ? -6 : v;
    }
}

/* Values kept at least 0.05 away from kinks (0) and clamp bounds. */
static void fill_away_from_kinks(float *v, int64_t n, int which, uint64_t seed)
{
    if (which == 3) {
        tu_fill_uniform(v, n, -2, 2, seed);
        return;
    }
    if (which == 6) {
        tu_fill_uniform(v, n, -9, -3, seed);
        for (int64_t i = 0; i < n; i++)
            if (fabsf(v[i] + 6) < 0.1f) v[i] += 0.3f;
        return;
    }
    tu_fill_away_from_zero(v, n, 0.05f, 1.0f, seed);
    if (which == 4)
        for (int64_t i = 0; i < n; i++)
            if (fabsf(v[i] + 0.3f) < 0.05f || fabsf(v[i] - 0.4f) < 0.05f) v[i] += 0.12f;
}

/* Graph for the blocked tests.  which 0: conv3x3(x, w, b) -> BN(gamma, beta,
 * running stats x[3..6]).  which >= 1: h = conv1x1(x, I) is x itself in
 * conv's blocked layout (first O of 16 channels), so the eltwise input
 * values stay where fill_away_from_kinks put them. */
static cc_tensor *build_blocked(cc_tape *t, cc_tensor **x, void *u)
{
    int which = *(int *)u;
    cc_tensor *h = which == 0 ? op_conv2d(t, x[0], x[1], x[2], 1, 1)
                              : op_conv2d(t, x[0], x[1], NULL, 1, 0);
    cc_tensor *y = which == 0 ? op_batch_norm(t, h, x[3], x[4], x[5], x[6], NULL, BN_MOM, BN_EPS)
                              : apply_elt(t, h, which);
    /* the layout must survive: no reorder between conv and the op */
    if (h && y && !dnnl_memory_desc_equal(&h->md, &y->md)) return NULL;
    return y;
}

/* conv (O = 16, or 12 for a padded nChw8c/16c) -> op: the op keeps the
 * blocked layout, matches the reference applied to the conv's own output,
 * keeps the padded channels zero in its output and in the input gradient,
 * and passes the gradient check of every input through both ops. */
static void check_blocked(int which, int O)
{
    cc_ctx ctx;
    ck_assert_int_eq(ctx_init(&ctx, 0, NULL), 0);
    cc_tape t;
    tape_init(&t, &ctx, 1);
    tu_input in[7];
    int nin;
    if (which == 0) {
        /* conv's own gradients are test_engine's business: only x (through
         * conv's backward from BN's blocked diff_src), gamma and beta here */
        in[0] = tu_make(4, (int64_t[]){2, 3, 3, 5}, -1, 1, 90, 1);
        in[1] = tu_make(4, (int64_t[]){O, 3, 3, 3}, -0.4, 0.4, 91, 0);
        in[2] = tu_make(1, (int64_t[]){O}, -0.2, 0.2, 92, 0);
        in[3] = tu_make(1, (int64_t[]){O}, 0.5, 1.5, 93, 1);
        in[4] = tu_make(1, (int64_t[]){O}, -0.5, 0.5, 94, 1);
        in[5] = tu_make(1, (int64_t[]){O}, -0.1, 0.1, 95, 0);
        in[6] = tu_make(1, (int64_t[]){O}, 0.5, 1.5, 96, 0);
        nin = 7;
    } else {
        in[0] = tu_make(4, (int64_t[]){2, 16, 2, 3}, 0, 1, 98, 1);
        fill_away_from_kinks(in[0].data, tu_numel(&in[0]), which, 98 + which);
        in[1] = tu_make(4, (int64_t[]){O, 16, 1, 1}, 0, 0, 99, 0);
        for (int o = 0; o < O; o++) in[1].data[o * 16 + o] = 1;
        nin = 2;
    }
    cc_tensor *x[7];
    for (int i = 0; i < nin; i++)
        x[i] = tape_input(&t, in[i].ndim, in[i].dims, in[i].data, in[i].requires_grad);
    cc_tensor *y = build_blocked(&t, x, &which);
    ck_assert_msg(y != NULL, "%s", tape_ok(&t) ? "op changed the blocked layout" : tape_error(&t));
    cc_tensor *h = y->creator->in[0];
    /* AVX2 and AVX-512 convs pick nChw8c / nChw16c; on older ISAs the padded
     * (O = 12) case may come out plain and then checks only the values. */
    if (O % 8 && !nchw_block(&h->md))
        printf("SKIP: conv2d gave a %s layout for %d channels: padding not exercised\n",
                tensor_is_plain(h) ? "plain" : "non-nChw{8,16}c", O);
    else
        ck_assert_msg(!tensor_is_plain(h), "conv2d output is plain: the test needs a blocked layout");
    assert_padding_zero(y, y->data, "forward output");
    int64_t n = tensor_numel(h);
    float *hv = malloc(sizeof(float) * (size_t)n), *yv = malloc(sizeof(float) * (size_t)n);
    float *ref = malloc(sizeof(float) * (size_t)n);
    ck_assert_int_eq(tape_read(&t, h, hv), 0);
    ck_assert_int_eq(tape_read(&t, y, yv), 0);
    if (which == 0) {
        double mean[16], var[16];
        stats_ref(hv, 2, O, 15, mean, var);
        bn_apply_ref(hv, 2, O, 15, mean, var, in[3].data, in[4].data, ref);
    } else {
        for (int64_t i = 0; i < n; i++) ref[i] = elt_ref(which, hv[i]);
    }
    double d = tu_max_abs_diff(yv, ref, n);
    ck_assert_msg(d < 1e-4, "blocked forward differs from reference by %g", d);
    float *seed = malloc(sizeof(float) * (size_t)n);
    tu_fill_uniform(seed, n, -1, 1, 97);
    ck_assert_int_eq(tape_backward_seed(&t, y, seed), 0);
    assert_padding_zero(h, h->grad, "input gradient");
    tape_free(&t);
    ctx_free(&ctx);
    ck_assert(tu_gradcheck("blocked", build_blocked, &which, in, nin, 1e-2, 2e-3, 2e-2));
    free(hv);
    free(yv);
    free(ref);
    free(seed);
    free_inputs(in, nin);
}

START_TEST(test_bn_blocked_16) { check_blocked(0, 16); }
END_TEST

START_TEST(test_bn_blocked_12_padded) { check_blocked(0, 12); }
END_TEST

START_TEST(test_eltwise_blocked)
{
    for (int which = 1; which <= 6; which++) check_blocked(which, 16);
}
END_TEST

START_TEST(test_eltwise_blocked_padded)
{
    /* exp(0) = 1 and 0.25 - 1.5 * 0 must not leak into the padding */
    check_blocked(3, 12);
    check_blocked(5, 12);
}
END_TEST

/* ---- eltwise on plain inputs ---- */

static cc_tensor *build_elt(cc_tape *t, cc_tensor **x, void *u)
{
    return apply_elt(t, x[0], *(int *)u);
}

static void check_elt(int which, int ndim, const int64_t *dims, uint64_t seed)
{
    tu_input in = tu_make(ndim, dims, 0, 1, seed, 1);
    int64_t n = tu_numel(&in), m;
    fill_away_from_kinks(in.data, n, which, seed);
    char msg[256];
    for (int training = 0; training <= 1; training++) {
        float *y = tu_forward(build_elt, &which, &in, 1, training, &m, msg, sizeof msg);
        ck_assert_msg(y, "forward failed: %s", msg);
        ck_assert_int_eq(m, n);
        for (int64_t i = 0; i < n; i++) {
            float r = elt_ref(which, in.data[i]);
            ck_assert_msg(fabsf(y[i] - r) <= 1e-6f * (1 + fabsf(r)),
                          "alg %d: f(%g) = %g, expected %g", which, (double)in.data[i],
                          (double)y[i], (double)r);
        }
        free(y);
    }
    ck_assert(tu_gradcheck("eltwise", build_elt, &which, &in, 1, 1e-2, 2e-3, 2e-2));
    free(in.data);
}

START_TEST(test_relu) { check_elt(1, 4, (int64_t[]){2, 3, 5, 7}, 100); }
END_TEST

START_TEST(test_leaky_relu) { check_elt(2, 4, (int64_t[]){3, 1, 4, 5}, 101); }
END_TEST

START_TEST(test_exp) { check_elt(3, 2, (int64_t[]){5, 7}, 102); }
END_TEST

START_TEST(test_clamp) { check_elt(4, 4, (int64_t[]){2, 3, 5, 7}, 103); }
END_TEST

START_TEST(test_clamp_one_sided) { check_elt(6, 1, (int64_t[]){37}, 104); }
END_TEST

START_TEST(test_scale) { check_elt(5, 3, (int64_t[]){3, 5, 7}, 105); }
END_TEST

/* relu_unstick is relu forward (any sign) and in its gradient where x > 0
 * (finite differences on positive inputs); its own backward rule (dy
 * passed where x <= 0 only when dy < 0) on a plain input and on conv's
 * blocked layout with padded channels (O = 12), against the rule applied to
 * the input values here. */
static void check_unstick_rule(int O)
{
    cc_ctx ctx;
    ck_assert_int_eq(ctx_init(&ctx, 0, NULL), 0);
    cc_tape t;
    tape_init(&t, &ctx, 1);
    tu_input in = tu_make(4, (int64_t[]){2, 16, 2, 3}, -1, 1, 120 + (uint64_t)O, 1);
    tu_input w = tu_make(4, (int64_t[]){O, 16, 1, 1}, 0, 0, 121, 0);
    for (int o = 0; o < O; o++) w.data[o * 16 + o] = 1;
    cc_tensor *x = tape_input(&t, 4, in.dims, in.data, 1);
    cc_tensor *wt = tape_input(&t, 4, w.dims, w.data, 0);
    cc_tensor *h = O ? op_conv2d(&t, x, wt, NULL, 1, 0) : x;
    cc_tensor *y = op_relu_unstick(&t, h);
    ck_assert_msg(y, "%s", tape_error(&t));
    const int C = O ? O : 16;
    const int64_t n = 2 * C * 6;
    float *seed = malloc(sizeof(float) * (size_t)n), *g = malloc(sizeof(float) * 2 * 16 * 6);
    tu_fill_uniform(seed, n, -1, 1, 122);
    ck_assert_int_eq(tape_backward_seed(&t, y, seed), 0);
    if (O) assert_padding_zero(h, h->grad, "relu_unstick input gradient");
    ck_assert_int_eq(tape_read_grad(&t, x, g), 0);
    int passed_dead = 0;
    for (int b = 0; b < 2; b++)
        for (int c = 0; c < 16; c++)
            for (int p = 0; p < 6; p++) {
                const int64_t i = (b * 16 + c) * 6 + p;
                const float xv = in.data[i], dy = c < C ? seed[(b * C + c) * 6 + p] : 0;
                const float want = xv > 0 || dy < 0 ? dy : 0;
                passed_dead += xv <= 0 && dy < 0;
                ck_assert_msg(g[i] == want, "x %g dy %g: gradient %g, expected %g", (double)xv,
                              (double)dy, (double)g[i], (double)want);
            }
    ck_assert(passed_dead > 5);     /* the case that differs from relu was hit */
    free(seed);
    free(g);
    free(in.data);
    free(w.data);
    tape_free(&t);
    ctx_free(&ctx);
}

START_TEST(test_relu_unstick)
{
    int which = 7;
    tu_input in = tu_make(3, (int64_t[]){3, 4, 5}, -1, 1, 123, 1);
    char msg[256];
    int64_t m, n = tu_numel(&in);
    for (int training = 0; training <= 1; training++) {
        float *y = tu_forward(build_elt, &which, &in, 1, training, &m, msg, sizeof msg);
        ck_assert_msg(y && m == n, "forward failed: %s", msg);
        for (int64_t i = 0; i < n; i++) ck_assert(y[i] == elt_ref(1, in.data[i]));
        free(y);
    }
    tu_fill_uniform(in.data, n, 0.05, 1, 124);    /* there the rule is the true gradient */
    ck_assert(tu_gradcheck("relu_unstick", build_elt, &which, &in, 1, 1e-2, 2e-3, 2e-2));
    free(in.data);
    check_unstick_rule(0);
    check_unstick_rule(16);
    check_unstick_rule(12);
}
END_TEST

/* Clamp's gradient at and beyond its bounds (dnnl_eltwise_clip): zero
 * outside, zero at lo, one at hi, one inside.  See op_eltwise.c. */
START_TEST(test_clamp_gradient_at_bounds)
{
    cc_ctx ctx;
    ck_assert_int_eq(ctx_init(&ctx, 0, NULL), 0);
    cc_tape t;
    tape_init(&t, &ctx, 1);
    float xv[6] = {-1.0f, -0.5f, 0.0f, 0.5f, 1.0f, -0.49f};
    float ones[6] = {1, 1, 1, 1, 1, 1}, g[6];
    const float expect[6] = {0, 0, 1, 1, 0, 1};
    cc_tensor *x = tape_input(&t, 1, (int64_t[]){6}, xv, 1);
    cc_tensor *y = op_clamp(&t, x, -0.5f, 0.5f);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(tape_backward_seed(&t, y, ones), 0);
    ck_assert_int_eq(tape_read_grad(&t, x, g), 0);
    for (int i = 0; i < 6; i++)
        ck_assert_msg(g[i] == expect[i], "d clamp(%g)/dx = %g, expected %g", (double)xv[i],
                      (double)g[i], (double)expect[i]);
    tape_free(&t);
    ctx_free(&ctx);
}
END_TEST

/* g used by two eltwise ops whose outputs are BN's gamma and beta: g gets
 * both contributions, and BN takes gradients to non-leaf gamma/beta. */
static cc_tensor *build_two_elt(cc_tape *t, cc_tensor **x, void *u)
{
    (void)u;
    cc_tensor *gamma = op_exp(t, x[1]);
    cc_tensor *beta = op_scale(t, x[1], 2.0f, -1.0f);
    cc_tensor *y = op_batch_norm(t, x[0], gamma, beta, x[2], x[3], NULL, BN_MOM, BN_EPS);
    return op_exp(t, op_scale(t, y, 0.5f, 0.0f));
}

START_TEST(test_elt_chain_gradcheck)
{
    tu_input in[4];
    in[0] = tu_make(4, (int64_t[]){2, 3, 3, 3}, -1, 1, 106, 1);
    in[1] = tu_make(1, (int64_t[]){3}, -0.5, 0.5, 107, 1);
    in[2] = tu_make(1, (int64_t[]){3}, 0, 0, 108, 0);
    in[3] = tu_make(1, (int64_t[]){3}, 1, 1, 109, 0);
    ck_assert(tu_gradcheck("eltwise chain", build_two_elt, NULL, in, 4, 1e-2, 2e-3, 2e-2));
    free_inputs(in, 4);
}
END_TEST

/* ---- errors ---- */

static const char *bn_error(int ndim, const int64_t *xd, int64_t cg, int64_t cb, int64_t cv,
                            int training, char *buf, size_t len)
{
    cc_ctx ctx;
    ck_assert_int_eq(ctx_init(&ctx, 0, NULL), 0);
    cc_tape t;
    tape_init(&t, &ctx, training);
    cc_tensor *x = tape_input(&t, ndim, xd, NULL, 1);
    cc_tensor *g = tape_input(&t, 1, &cg, NULL, 1);
    cc_tensor *b = tape_input(&t, 1, &cb, NULL, 1);
    cc_tensor *m = tape_input(&t, 1, &cv, NULL, 0);
    cc_tensor *v = tape_input(&t, 1, &cv, NULL, 0);
    cc_tensor *y = op_batch_norm(&t, x, g, b, m, v, NULL, BN_MOM, BN_EPS);
    snprintf(buf, len, "%s", y ? "(no error)" : tape_error(&t));
    if (!y) {   /* sticky: the next op sees NULL and keeps the first message */
        ck_assert_ptr_null(op_relu(&t, y));
        ck_assert_str_eq(tape_error(&t), buf);
    }
    tape_free(&t);
    ctx_free(&ctx);
    return buf;
}

START_TEST(test_bn_shape_errors)
{
    char e[256];
    bn_error(4, (int64_t[]){2, 3, 4, 5}, 4, 3, 3, 1, e, sizeof e);
    ck_assert_msg(strstr(e, "batch_norm") && strstr(e, "gamma") && strstr(e, "shape 4") &&
                      strstr(e, "2x3x4x5"), "message was: %s", e);
    bn_error(2, (int64_t[]){6, 5}, 5, 2, 5, 1, e, sizeof e);
    ck_assert_msg(strstr(e, "batch_norm") && strstr(e, "beta") && strstr(e, "shape 2") &&
                      strstr(e, "6x5"), "message was: %s", e);
    bn_error(4, (int64_t[]){2, 3, 4, 5}, 3, 3, 7, 0, e, sizeof e);
    ck_assert_msg(strstr(e, "batch_norm") && strstr(e, "running_mean") && strstr(e, "shape 7"),
                  "message was: %s", e);
    bn_error(3, (int64_t[]){2, 3, 4}, 3, 3, 3, 1, e, sizeof e);
    ck_assert_msg(strstr(e, "batch_norm") && strstr(e, "2x3x4"), "message was: %s", e);
    /* one value per channel: refused in training, fine on running stats */
    bn_error(2, (int64_t[]){1, 3}, 3, 3, 3, 1, e, sizeof e);
    ck_assert_msg(strstr(e, "batch_norm") && strstr(e, "more than 1 value per channel") &&
                      strstr(e, "1x3"), "message was: %s", e);
    bn_error(4, (int64_t[]){1, 3, 1, 1}, 3, 3, 3, 1, e, sizeof e);
    ck_assert_msg(strstr(e, "more than 1 value per channel"), "message was: %s", e);
    bn_error(4, (int64_t[]){1, 3, 1, 1}, 3, 3, 3, 0, e, sizeof e);
    ck_assert_str_eq(e, "(no error)");
}
END_TEST

START_TEST(test_eltwise_errors)
{
    cc_ctx ctx;
    ck_assert_int_eq(ctx_init(&ctx, 0, NULL), 0);
    cc_tape t;
    tape_init(&t, &ctx, 1);
    cc_tensor *x = tape_input(&t, 4, (int64_t[]){2, 3, 4, 5}, NULL, 1);
    ck_assert_ptr_null(op_clamp(&t, x, 1.0f, -1.0f));
    ck_assert_msg(strstr(tape_error(&t), "clamp") && strstr(tape_error(&t), "2x3x4x5"),
                  "message was: %s", tape_error(&t));
    tape_reset(&t);
    x = tape_input(&t, 4, (int64_t[]){2, 3, 4, 5}, NULL, 1);
    ck_assert_ptr_null(op_scale(&t, x, NAN, 0));
    ck_assert_msg(strstr(tape_error(&t), "scale"), "message was: %s", tape_error(&t));
    tape_free(&t);
    ctx_free(&ctx);
}
END_TEST

static Suite *ops_suite(void)
{
    Suite *s = suite_create("ops_bnorm_eltwise");
    TCase *tc = tcase_create("batch_norm");
    tcase_add_test(tc, test_bn_train_2d_odd);
    ops_add_fused_cases(tc);
    ops_add_sync_cases(tc);
    ops_add_bnorm_kern_cases(tc);
    tcase_add_test(tc, test_bn_train_2d_single_image);
    tcase_add_test(tc, test_bn_train_1d_odd);
    tcase_add_test(tc, test_bn_train_1d_two_samples);
    tcase_add_test(tc, test_bn_eval_2d);
    tcase_add_test(tc, test_bn_eval_1d_single_sample);
    tcase_add_test(tc, test_bn_running_update);
    tcase_add_test(tc, test_bn_cumulative_average);
    tcase_add_test(tc, test_bn_params_steps);
    tcase_add_test(tc, test_bn_blocked_16);
    tcase_add_test(tc, test_bn_blocked_12_padded);
    tcase_add_test(tc, test_bn_shape_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("eltwise");
    tcase_add_test(tc, test_relu);
    tcase_add_test(tc, test_leaky_relu);
    tcase_add_test(tc, test_exp);
    tcase_add_test(tc, test_clamp);
    tcase_add_test(tc, test_clamp_one_sided);
    tcase_add_test(tc, test_scale);
    tcase_add_test(tc, test_clamp_gradient_at_bounds);
    tcase_add_test(tc, test_relu_unstick);
    tcase_add_test(tc, test_elt_chain_gradcheck);
    tcase_add_test(tc, test_eltwise_blocked);
    tcase_add_test(tc, test_eltwise_blocked_padded);
    tcase_add_test(tc, test_eltwise_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(ops_suite());
}
