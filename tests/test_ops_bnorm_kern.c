/* test_ops_bnorm_kern.c - batch_norm's own kernels (autodiff/bnorm_kern.c)
 * on inputs large enough for their parallel paths and non-temporal
 * stores: against a double-precision reference, and bit-identical for 1
 * and 2 threads and every ISA variant the CPU runs; part of
 * test_ops_bnorm_eltwise. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autodiff/op.h"
#include "autodiff/ops.h"
#include "tests/testutil.h"

#define KB_EPS 1e-5f
#define KB_SLOPE 0.1f

typedef struct kb_case {
    int ndim;
    int64_t dims[4];    /* x: (N, C, H, W) or (N, C) */
    int conv;           /* 4-D: through an identity 1x1 conv (oneDNN's blocked layout) */
    int eval;           /* running statistics on a training tape */
} kb_case;

typedef struct kb_result {
    float *y, *gx, *gg, *gb;    /* output, gradients of x, gamma, beta (plain) */
    int64_t n, c;
} kb_result;

static void kb_result_free(kb_result *r)
{
    free(r->y);
    free(r->gx);
    free(r->gg);
    free(r->gb);
}

/* Deterministic inputs of case k: x, gamma, beta, running mean / var, the
 * output gradient seed, and the identity 1x1 weights. */
typedef struct kb_inputs {
    float *x, *g, *b, *rm, *rv, *seed, *id;
} kb_inputs;

static int64_t kb_numel(const kb_case *k)
{
    int64_t n = 1;
    for (int i = 0; i < k->ndim; i++) n *= k->dims[i];
    return n;
}

static void kb_inputs_make(const kb_case *k, kb_inputs *in)
{
    const int64_t n = kb_numel(k), C = k->dims[1];
    in->x = malloc(sizeof(float) * (size_t)n);
    in->seed = malloc(sizeof(float) * (size_t)n);
    in->g = malloc(sizeof(float) * (size_t)C);
    in->b = malloc(sizeof(float) * (size_t)C);
    in->rm = malloc(sizeof(float) * (size_t)C);
    in->rv = malloc(sizeof(float) * (size_t)C);
    in->id = calloc((size_t)(C * C), sizeof(float));
    /* an offset per channel, so the statistics are not those of U(-1, 1) */
    tu_fill_uniform(in->x, n, -1, 1, 501);
    const int64_t hw = k->ndim == 4 ? k->dims[2] * k->dims[3] : 1;
    for (int64_t i = 0; i < n; i++) in->x[i] = in->x[i] * 2.0f + (float)((i / hw) % C) * 0.25f;
    tu_fill_uniform(in->seed, n, -1, 1, 502);
    tu_fill_uniform(in->g, C, 0.5, 1.5, 503);
    tu_fill_uniform(in->b, C, -0.5, 0.5, 504);
    tu_fill_uniform(in->rm, C, -0.3, 0.3, 505);
    tu_fill_uniform(in->rv, C, 0.5, 2.0, 506);
    for (int64_t c = 0; c < C; c++) in->id[c * C + c] = 1.0f;
}

static void kb_inputs_free(kb_inputs *in)
{
    free(in->x);
    free(in->seed);
    free(in->g);
    free(in->b);
    free(in->rm);
    free(in->rv);
    free(in->id);
}

/* One forward + backward of fused BN + LeakyReLU with `threads` threads
 * and our kernels capped at isa (NULL: the CPU's best). */
static void kb_run(const kb_case *k, const kb_inputs *in, int threads, const char *isa,
                   kb_result *r)
{
    if (isa) setenv("CELLCOUNT_MAX_ISA", isa, 1);
    else unsetenv("CELLCOUNT_MAX_ISA");
    cc_ctx ctx;
    cc_status st;
    ck_assert_int_eq(ctx_init(&ctx, threads, &st), 0);
    cc_tape t;
    tape_init(&t, &ctx, 1);
    const int64_t C = k->dims[1];
    cc_tensor *x = tape_input(&t, k->ndim, k->dims, in->x, 1);
    cc_tensor *g = tape_input(&t, 1, &k->dims[1], in->g, 1);
    cc_tensor *b = tape_input(&t, 1, &k->dims[1], in->b, 1);
    cc_tensor *rm = tape_input(&t, 1, &k->dims[1], in->rm, 0);
    cc_tensor *rv = tape_input(&t, 1, &k->dims[1], in->rv, 0);
    cc_tensor *h = x;
    if (k->conv) {
        cc_tensor *w = tape_input(&t, 4, (int64_t[]){C, C, 1, 1}, in->id, 0);
        h = op_conv2d(&t, x, w, NULL, 1, 0);
    }
    cc_tensor *y = k->eval ? op_batch_norm_eval_lrelu(&t, h, g, b, rm, rv, KB_EPS, KB_SLOPE)
                           : op_batch_norm_lrelu(&t, h, g, b, rm, rv, NULL, 0.1f, KB_EPS, KB_SLOPE);
    ck_assert_msg(y != NULL, "%s", tape_error(&t));
    if (k->conv && tensor_is_plain(h))
        printf("SKIP: conv2d gave a plain layout here: the blocked kernels are not exercised\n");
    r->n = kb_numel(k);
    r->c = C;
    r->y = malloc(sizeof(float) * (size_t)r->n);
    r->gx = malloc(sizeof(float) * (size_t)r->n);
    r->gg = malloc(sizeof(float) * (size_t)C);
    r->gb = malloc(sizeof(float) * (size_t)C);
    ck_assert_int_eq(tape_read(&t, y, r->y), 0);
    ck_assert_msg(tape_backward_seed(&t, y, in->seed) == 0, "%s", tape_error(&t));
    ck_assert_int_eq(tape_read_grad(&t, x, r->gx), 0);
    ck_assert_int_eq(tape_read_grad(&t, g, r->gg), 0);
    ck_assert_int_eq(tape_read_grad(&t, b, r->gb), 0);
    tape_free(&t);
    ctx_free(&ctx);
    unsetenv("CELLCOUNT_MAX_ISA");
}

/* The reference in double: y = lrelu((x - m) / s * g + b); with dy' = dy
 * where y > 0, slope dy elsewhere: d beta = sum dy', d gamma = sum dy' xhat,
 * dx = g / s (dy' - [batch] (sum dy' + xhat sum dy' xhat) / M). */
static void kb_check_reference(const kb_case *k, const kb_inputs *in, const kb_result *r)
{
    const int64_t N = k->dims[0], C = k->dims[1];
    const int64_t HW = k->ndim == 4 ? k->dims[2] * k->dims[3] : 1, M = N * HW;
    double ey = 0, egx = 0, egg = 0, egb = 0, sy = 0, sgx = 0, sgg = 0;
    for (int64_t c = 0; c < C; c++) {
        double m = 0, v = 0, s1 = 0, s2 = 0;
#define KB_AT(n, i) (((n) * C + c) * HW + (i))
        if (k->eval) {
            m = in->rm[c];
            v = in->rv[c];
        } else {
            for (int64_t n = 0; n < N; n++)
                for (int64_t i = 0; i < HW; i++) m += in->x[KB_AT(n, i)];
            m /= (double)M;
            for (int64_t n = 0; n < N; n++)
                for (int64_t i = 0; i < HW; i++) v += pow(in->x[KB_AT(n, i)] - m, 2);
            v /= (double)M;
        }
        const double s = sqrt(v + KB_EPS);
        for (int64_t n = 0; n < N; n++)
            for (int64_t i = 0; i < HW; i++) {
                const int64_t o = KB_AT(n, i);
                const double xh = (in->x[o] - m) / s, pre = xh * in->g[c] + in->b[c];
                const double y = pre > 0 ? pre : KB_SLOPE * pre;
                const double dy = in->seed[o] * (pre > 0 ? 1.0 : KB_SLOPE);
                ey = fmax(ey, fabs(y - r->y[o]));
                sy = fmax(sy, fabs(y));
                s1 += dy;
                s2 += dy * xh;
            }
        egb = fmax(egb, fabs(s1 - r->gb[c]));
        egg = fmax(egg, fabs(s2 - r->gg[c]));
        sgg = fmax(sgg, fabs(s2) + fabs(s1));
        for (int64_t n = 0; n < N; n++)
            for (int64_t i = 0; i < HW; i++) {
                const int64_t o = KB_AT(n, i);
                const double xh = (in->x[o] - m) / s, pre = xh * in->g[c] + in->b[c];
                double dx = in->seed[o] * (pre > 0 ? 1.0 : KB_SLOPE);
                if (!k->eval) dx -= (s1 + xh * s2) / (double)M;
                dx *= in->g[c] / s;
                egx = fmax(egx, fabs(dx - r->gx[o]));
                sgx = fmax(sgx, fabs(dx));
            }
#undef KB_AT
    }
    /* float rounding of values of this size; the sums (over up to 2.7e5
     * values, accumulated in double) are checked relative to their
     * magnitude, with room for the float rounding of each term */
    ck_assert_msg(ey <= 1e-5 * sy, "forward: max error %g (max |y| %g)", ey, sy);
    ck_assert_msg(egx <= 1e-5 * sgx + 1e-6, "d x: max error %g (max |dx| %g)", egx, sgx);
    ck_assert_msg(egg <= 1e-5 * sgg + 1e-4 && egb <= 1e-5 * sgg + 1e-4,
                  "d gamma / d beta: max error %g / %g (scale %g)", egg, egb, sgg);
}

static void kb_assert_same(const kb_result *a, const kb_result *b, const char *what)
{
    ck_assert_msg(memcmp(a->y, b->y, sizeof(float) * (size_t)a->n) == 0, "%s: outputs differ", what);
    ck_assert_msg(memcmp(a->gx, b->gx, sizeof(float) * (size_t)a->n) == 0, "%s: d x differs", what);
    ck_assert_msg(memcmp(a->gg, b->gg, sizeof(float) * (size_t)a->c) == 0 &&
                      memcmp(a->gb, b->gb, sizeof(float) * (size_t)a->c) == 0,
                  "%s: d gamma / d beta differ", what);
}

/* Reference at 1 thread on the baseline variant; then every (threads,
 * variant) pair gives the same bits. */
static void kb_check(const kb_case *k)
{
    kb_inputs in;
    kb_inputs_make(k, &in);
    kb_result base;
    kb_run(k, &in, 1, "sse2", &base);
    kb_check_reference(k, &in, &base);
    for (int isa = CC_ISA_SSE2; isa < CC_ISA_COUNT; isa++) {
        if (!isa_cpu_has((cc_isa)isa)) {
            printf("SKIP: batch_norm kernels, variant %s: this CPU lacks it\n",
                   isa_variant_name((cc_isa)isa));
            continue;
        }
        for (int th = 1; th <= 2; th++) {
            if (isa == CC_ISA_SSE2 && th == 1) continue;
            kb_result r;
            char what[64];
            snprintf(what, sizeof what, "%s, %d thread(s)", isa_variant_name((cc_isa)isa), th);
            kb_run(k, &in, th, isa_variant_name((cc_isa)isa), &r);
            kb_assert_same(&base, &r, what);
            kb_result_free(&r);
        }
    }
    kb_result_free(&base);
    kb_inputs_free(&in);
}

/* 4 x 16 x 256 x 264 floats: 17.3 MB, over the kernels' streaming
 * threshold (16 MiB), in the conv's blocked layout. */
START_TEST(test_bn_kern_large_blocked)
{
    kb_case k = {4, {4, 16, 256, 264}, 1, 0};
    kb_check(&k);
}
END_TEST

/* 12 channels: a padded channel block; smaller than the streaming
 * threshold, larger than the serial one. */
START_TEST(test_bn_kern_padded_blocked)
{
    kb_case k = {4, {3, 12, 40, 36}, 1, 0};
    kb_check(&k);
}
END_TEST

/* Running statistics on a training tape (the counter's frozen BN). */
START_TEST(test_bn_kern_running_stats)
{
    kb_case k = {4, {2, 16, 48, 64}, 1, 1};
    kb_check(&k);
}
END_TEST

/* (N, C): contiguous channels seen as blocks of 8 (C = 1024), and a count
 * that is not a multiple of 8 (plain, one channel per unit). */
START_TEST(test_bn_kern_2d)
{
    kb_case a = {2, {64, 1024, 1, 1}, 0, 0}, b = {2, {50, 700 + 3, 1, 1}, 0, 0};
    kb_check(&a);
    kb_check(&b);
}
END_TEST

/* Plain NCHW with many channels: one unit per (image, channel) plane. */
START_TEST(test_bn_kern_plain_4d)
{
    kb_case k = {4, {3, 20, 30, 30}, 0, 0};
    kb_check(&k);
}
END_TEST

void ops_add_bnorm_kern_cases(TCase *tc)
{
    tcase_add_test(tc, test_bn_kern_large_blocked);
    tcase_add_test(tc, test_bn_kern_padded_blocked);
    tcase_add_test(tc, test_bn_kern_running_stats);
    tcase_add_test(tc, test_bn_kern_2d);
    tcase_add_test(tc, test_bn_kern_plain_4d);
}
