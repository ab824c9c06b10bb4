/* test_ops_conv.c - conv2d's own kernels (autodiff/conv_wino.c): the
 * Winograd F(4x4,3x3) path and the one-output-channel path.  Forward and all
 * three gradients against a double-precision direct reference on shapes
 * that take them (3x3, stride 1, pad 1, input channels multiples of 8) with
 * odd sizes and partial tiles; plain and blocked inputs; agreement with
 * oneDNN's direct kernels (CC_CONV_WINOGRAD=0, CC_CONV_ONEDNN=1); and
 * bit-identical results across thread counts.  The shapes are small, so
 * CC_CONV_OWN=1 forces our kernels (Check forks each test: the setting
 * stays in that test's process).  Every ISA variant of the kernels
 * (isa.h) the CPU runs is checked against the reference and against the
 * baseline's bits (same IEEE operations in the same order; the AVX-512
 * Winograd, with its own GEMM, within tolerance); the others print SKIP. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autodiff/ops.h"
#include "autodiff/params.h"
#include <dnnl.h>
#include "tests/testutil.h"
#include "tests/testmain.h"

typedef struct conv_case {
    int n, c, o, h, w, bias;
    int o2;     /* > 0: a second conv o -> o2 (sees the first's blocked output) */
} conv_case;

typedef struct conv_result {
    float *y, *dx, *dw, *db;
    int64_t n;  /* elements of y */
} conv_result;

static void result_free(conv_result *r)
{
    free(r->y), free(r->dx), free(r->dw), free(r->db);
    memset(r, 0, sizeof *r);
}

/* y = conv3x3 pad 1 (x, w) + b, then backward with seed R; with k->o2 > 0,
 * y goes through a second conv (weights w2, o -> o2 channels, so it sees a
 * blocked input) whose output is reported instead. */
static void run_conv(const conv_case *k, const float *x, const float *w, const float *b,
                     const float *w2, const float *R, int threads, conv_result *r)
{
    cc_ctx ctx;
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(ctx_init(&ctx, threads, &st), 0);
    cc_tape t;
    tape_init(&t, &ctx, 1);
    const int64_t xd[4] = {k->n, k->c, k->h, k->w}, wd[4] = {k->o, k->c, 3, 3}, bd[1] = {k->o};
    const int64_t w2d[4] = {k->o2, k->o, 3, 3};
    memset(r, 0, sizeof *r);
    for (int step = 0; step < 2; step++) {  /* the second step reuses the cached state */
        tape_reset(&t);
        cc_tensor *X = tape_input(&t, 4, xd, x, 1), *W = tape_input(&t, 4, wd, w, 1);
        cc_tensor *B = k->bias ? tape_input(&t, 1, bd, b, 1) : NULL;
        cc_tensor *y = op_conv2d(&t, X, W, B, 1, 1), *W2 = NULL;
        if (k->o2) {
            W2 = tape_input(&t, 4, w2d, w2, 1);
            y = op_conv2d(&t, y, W2, NULL, 1, 1);
        }
        ck_assert_msg(y != NULL, "%s", tape_error(&t));
        const int64_t ny = tensor_numel(y);
        if (!r->y) {
            r->y = malloc(sizeof(float) * (size_t)ny);
            r->dx = malloc(sizeof(float) * (size_t)tensor_numel(X));
            r->dw = malloc(sizeof(float) * (size_t)tensor_numel(W));
            r->db = calloc((size_t)k->o, sizeof(float));
            r->n = ny;
        }
        ck_assert_int_eq(tape_read(&t, y, r->y), 0);
        ck_assert_msg(tape_backward_seed(&t, y, R) == 0, "%s", tape_error(&t));
        ck_assert_int_eq(tape_read_grad(&t, X, r->dx), 0);
        ck_assert_int_eq(tape_read_grad(&t, W, r->dw), 0);
        if (B) ck_assert_int_eq(tape_read_grad(&t, B, r->db), 0);
    }
    tape_free(&t);
    ctx_free(&ctx);
}

static double at(const float *x, const conv_case *k, int64_t n, int64_t c, int64_t y, int64_t xx)
{
    if (y < 0 || y >= k->h || xx < 0 || xx >= k->w) return 0;
    return x[((n * k->c + c) * k->h + y) * k->w + xx];
}

/* Direct double-precision forward and gradients of sum(R * y). */
static void reference(const conv_case *k, const float *x, const float *w, const float *b,
                      const float *R, conv_result *r)
{
    const int64_t N = k->n, C = k->c, O = k->o, H = k->h, W = k->w;
    r->y = malloc(sizeof(float) * (size_t)(N * O * H * W));
    r->dx = malloc(sizeof(float) * (size_t)(N * C * H * W));
    r->dw = malloc(sizeof(float) * (size_t)(O * C * 9));
    r->db = malloc(sizeof(float) * (size_t)O);
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < O; o++)
            for (int64_t y = 0; y < H; y++)
                for (int64_t xx = 0; xx < W; xx++) {
                    double acc = k->bias ? b[o] : 0;
                    for (int64_t c = 0; c < C; c++)
                        for (int ky = 0; ky < 3; ky++)
                            for (int kx = 0; kx < 3; kx++)
                                acc += w[((o * C + c) * 3 + ky) * 3 + kx] *
                                       at(x, k, n, c, y + ky - 1, xx + kx - 1);
                    r->y[((n * O + o) * H + y) * W + xx] = (float)acc;
                }
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t y = 0; y < H; y++)
                for (int64_t xx = 0; xx < W; xx++) {
                    double acc = 0;
                    for (int64_t o = 0; o < O; o++)
                        for (int ky = 0; ky < 3; ky++)
                            for (int kx = 0; kx < 3; kx++) {
                                int64_t oy = y - ky + 1, ox = xx - kx + 1;
                                if (oy < 0 || oy >= H || ox < 0 || ox >= W) continue;
                                acc += (double)R[((n * O + o) * H + oy) * W + ox] *
                                       w[((o * C + c) * 3 + ky) * 3 + kx];
                            }
                    r->dx[((n * C + c) * H + y) * W + xx] = (float)acc;
                }
    for (int64_t o = 0; o < O; o++) {
        double sb = 0;
        for (int64_t c = 0; c < C; c++)
            for (int ky = 0; ky < 3; ky++)
                for (int kx = 0; kx < 3; kx++) {
                    double acc = 0;
                    for (int64_t n = 0; n < N; n++)
                        for (int64_t y = 0; y < H; y++)
                            for (int64_t xx = 0; xx < W; xx++)
                                acc += (double)R[((n * O + o) * H + y) * W + xx] *
                                       at(x, k, n, c, y + ky - 1, xx + kx - 1);
                    r->dw[((o * C + c) * 3 + ky) * 3 + kx] = (float)acc;
                }
        for (int64_t i = 0; i < N * H * W; i++)
            sb += R[((i / (H * W)) * O + o) * H * W + i % (H * W)];
        r->db[o] = (float)sb;
    }
}

/* max |a-b| / max |b|. */
static double rel_err(const float *a, const float *b, int64_t n)
{
    double d = 0, m = 1e-30;
    for (int64_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return d / m;
}

static void check_case(const conv_case *k)
{
    const int64_t nx = (int64_t)k->n * k->c * k->h * k->w, nw = (int64_t)k->o * k->c * 9;
    const int64_t ny = (int64_t)k->n * k->o * k->h * k->w;
    float *x = malloc(sizeof(float) * (size_t)nx), *w = malloc(sizeof(float) * (size_t)nw);
    float *b = malloc(sizeof(float) * (size_t)k->o), *R = malloc(sizeof(float) * (size_t)ny);
    tu_fill_uniform(x, nx, -1, 1, 11);
    tu_fill_uniform(w, nw, -0.3f, 0.3f, 12);
    tu_fill_uniform(b, k->o, -0.5f, 0.5f, 13);
    tu_fill_uniform(R, ny, -1, 1, 14);
    conv_result got, ref;
    run_conv(k, x, w, b, NULL, R, 1, &got);
    reference(k, x, w, b, R, &ref);
    /* F(4x4,3x3) in fp32: errors of a few 1e-6 of the largest value */
    const double ey = rel_err(got.y, ref.y, ny), ex = rel_err(got.dx, ref.dx, nx);
    const double ew = rel_err(got.dw, ref.dw, nw), eb = rel_err(got.db, ref.db, k->o);
    ck_assert_msg(ey < 2e-5 && ex < 2e-5 && ew < 2e-5 && (!k->bias || eb < 2e-5),
                  "conv %dx%dx%dx%d -> %d: relative errors y %g dx %g dw %g db %g", k->n, k->c,
                  k->h, k->w, k->o, ey, ex, ew, eb);
    result_free(&got);
    result_free(&ref);
    free(x), free(w), free(b), free(R);
}

START_TEST(test_wino_odd_sizes)
{
    const conv_case k = {2, 24, 32, 13, 10, 1, 0};  /* partial tiles both ways */
    setenv("CC_CONV_OWN", "1", 1);                  /* small shapes: force our kernels */
    check_case(&k);
}
END_TEST

START_TEST(test_wino_small_and_wide)
{
    const conv_case a = {1, 16, 16, 3, 5, 0, 0};    /* one partial tile */
    const conv_case b = {3, 32, 16, 6, 9, 1, 0};    /* VGG's 6x8-like sizes */
    const conv_case c = {1, 64, 48, 17, 20, 1, 0};  /* several chunks of tiles */
    /* 182 tiles: with 6 MiB weight-gradient chunks (CC_WINO_WCHUNK_MIB)
     * more than one chunk (168 tiles at 128 channels), so its products
     * accumulate across chunks; then in one chunk (the default 12 MiB) */
    const conv_case d = {1, 128, 16, 56, 52, 1, 0};
    /* transformed weights of 18 MiB: the AVX-512 variant writes them with
     * non-temporal stores (WINO_STREAM_MIN_BYTES), both ways */
    const conv_case e = {1, 256, 512, 4, 5, 1, 0};
    setenv("CC_CONV_OWN", "1", 1);
    check_case(&a);
    check_case(&b);
    check_case(&c);
    setenv("CC_WINO_WCHUNK_MIB", "6", 1);
    check_case(&d);
    unsetenv("CC_WINO_WCHUNK_MIB");
    check_case(&d);
    check_case(&e);
}
END_TEST

/* One output channel: plain input (8 and 24 channels, odd sizes). */
START_TEST(test_single_output_channel)
{
    const conv_case a = {2, 24, 1, 13, 10, 1, 0}, b = {1, 8, 1, 5, 7, 0, 0};
    setenv("CC_CONV_OWN", "1", 1);
    check_case(&a);
    check_case(&b);
}
END_TEST

/* Two stacked convs, c -> o (Winograd) -> o2 (Winograd, or the one-channel
 * kernel, both fed a blocked input), agree with oneDNN's direct kernels, and
 * results are bit-identical with 1 and 2 threads. */
static void check_stacked(const conv_case *kc)
{
    const conv_case k = *kc;
    const int64_t nx = (int64_t)k.n * k.c * k.h * k.w, nw = (int64_t)k.o * k.c * 9;
    const int64_t ny = (int64_t)k.n * k.o2 * k.h * k.w, nw2 = (int64_t)k.o2 * k.o * 9;
    float *x = malloc(sizeof(float) * (size_t)nx), *w = malloc(sizeof(float) * (size_t)nw);
    float *b = malloc(sizeof(float) * (size_t)k.o), *R = malloc(sizeof(float) * (size_t)ny);
    float *w2 = malloc(sizeof(float) * (size_t)nw2);
    tu_fill_uniform(x, nx, -1, 1, 21);
    tu_fill_uniform(w, nw, -0.3f, 0.3f, 22);
    tu_fill_uniform(b, k.o, -0.5f, 0.5f, 23);
    tu_fill_uniform(R, ny, -1, 1, 24);
    tu_fill_uniform(w2, nw2, -0.3f, 0.3f, 25);
    conv_result w1t, w2t, direct;
    setenv("CC_CONV_OWN", "1", 1);
    run_conv(&k, x, w, b, w2, R, 1, &w1t);
    run_conv(&k, x, w, b, w2, R, 2, &w2t);
    ck_assert_msg(!memcmp(w1t.y, w2t.y, sizeof(float) * (size_t)ny) &&
                      !memcmp(w1t.dx, w2t.dx, sizeof(float) * (size_t)nx) &&
                      !memcmp(w1t.dw, w2t.dw, sizeof(float) * (size_t)nw) &&
                      !memcmp(w1t.db, w2t.db, sizeof(float) * (size_t)k.o),
                  "results differ between 1 and 2 threads (o2 = %d)", k.o2);
    setenv("CC_CONV_ONEDNN", "1", 1);
    run_conv(&k, x, w, b, w2, R, 1, &direct);
    unsetenv("CC_CONV_ONEDNN");
    /* not bit-identical: proof that the two runs took different paths */
    ck_assert_msg(memcmp(w1t.y, direct.y, sizeof(float) * (size_t)ny),
                  "CC_CONV_ONEDNN=1 gave the same bits: were our kernels used?");
    const double ey = rel_err(w1t.y, direct.y, ny), ex = rel_err(w1t.dx, direct.dx, nx);
    const double ew = rel_err(w1t.dw, direct.dw, nw), eb = rel_err(w1t.db, direct.db, k.o);
    ck_assert_msg(ey < 2e-5 && ex < 2e-5 && ew < 2e-5 && eb < 2e-5,
                  "ours vs oneDNN (o2 = %d): relative errors y %g dx %g dw %g db %g", k.o2, ey, ex,
                  ew, eb);
    result_free(&w1t), result_free(&w2t), result_free(&direct);
    free(x), free(w), free(b), free(R), free(w2);
}

START_TEST(test_stacked_match_onednn_and_threads)
{
    const conv_case a = {2, 16, 24, 11, 14, 1, 24}, b = {2, 16, 24, 11, 14, 1, 1};
    /* 18 MiB of transformed weights: non-temporal stores by both threads,
     * read by both after the barrier */
    const conv_case c = {2, 256, 512, 5, 6, 1, 24};
    check_stacked(&a);
    check_stacked(&b);
    check_stacked(&c);
}
END_TEST

/* Each ISA variant, chosen through CELLCOUNT_MAX_ISA: within the
 * reference's tolerance, and the same bits as the baseline variant, except
 * the AVX-512 Winograd (its own GEMM kernel rounds differently from
 * dnnl_sgemm): within the same tolerance of the baseline there. */
START_TEST(test_isa_variants)
{
    const conv_case cases[] = {{2, 24, 32, 13, 10, 1, 0}, {1, 64, 48, 17, 20, 1, 0},
                               {2, 24, 1, 13, 10, 1, 0}, {2, 16, 24, 11, 14, 1, 24},
                               {1, 128, 16, 56, 52, 1, 0}};
    setenv("CC_CONV_OWN", "1", 1);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const conv_case *k = &cases[c];
        const int64_t nx = (int64_t)k->n * k->c * k->h * k->w, nw = (int64_t)k->o * k->c * 9;
        const int o_last = k->o2 ? k->o2 : k->o;
        const int64_t ny = (int64_t)k->n * o_last * k->h * k->w;
        const int64_t nw2 = (int64_t)k->o2 * k->o * 9;
        float *x = malloc(sizeof(float) * (size_t)nx), *w = malloc(sizeof(float) * (size_t)nw);
        float *b = malloc(sizeof(float) * (size_t)k->o), *R = malloc(sizeof(float) * (size_t)ny);
        float *w2 = k->o2 ? malloc(sizeof(float) * (size_t)nw2) : NULL;
        tu_fill_uniform(x, nx, -1, 1, 31);
        tu_fill_uniform(w, nw, -0.3f, 0.3f, 32);
        tu_fill_uniform(b, k->o, -0.5f, 0.5f, 33);
        tu_fill_uniform(R, ny, -1, 1, 34);
        if (w2) tu_fill_uniform(w2, nw2, -0.3f, 0.3f, 35);
        conv_result base, got, ref;
        memset(&ref, 0, sizeof ref);
        if (!k->o2) reference(k, x, w, b, R, &ref);
        for (int isa = CC_ISA_SSE2; isa < CC_ISA_COUNT; isa++) {
            if (!isa_cpu_has((cc_isa)isa)) {
                if (c == 0) printf("SKIP: ISA variant %s: this CPU lacks it\n", isa_variant_name(isa));
                continue;
            }
            setenv("CELLCOUNT_MAX_ISA", isa_variant_name((cc_isa)isa), 1);
            cc_ctx probe;
            cc_status st;
            status_clear(&st);
            ck_assert_int_eq(ctx_init(&probe, 1, &st), 0);
            ck_assert_int_eq(probe.isa, isa);
            ctx_free(&probe);
            run_conv(k, x, w, b, w2, R, 2, isa == CC_ISA_SSE2 ? &base : &got);
            if (isa == CC_ISA_SSE2) continue;
            if (isa == CC_ISA_AVX512 && k->o > 1) {
                /* its own Winograd GEMM (FMA chains) instead of dnnl_sgemm:
                 * the same tolerance as against the reference, not bits */
                const double ey = rel_err(got.y, base.y, ny), ex = rel_err(got.dx, base.dx, nx);
                const double ew = rel_err(got.dw, base.dw, nw), eb = rel_err(got.db, base.db, k->o);
                ck_assert_msg(ey < 2e-5 && ex < 2e-5 && ew < 2e-5 && eb < 2e-5,
                              "case %zu: variant %s vs baseline: y %g dx %g dw %g db %g", c,
                              isa_variant_name((cc_isa)isa), ey, ex, ew, eb);
            } else {
                ck_assert_msg(!memcmp(base.y, got.y, sizeof(float) * (size_t)ny) &&
                                  !memcmp(base.dx, got.dx, sizeof(float) * (size_t)nx) &&
                                  !memcmp(base.dw, got.dw, sizeof(float) * (size_t)nw) &&
                                  !memcmp(base.db, got.db, sizeof(float) * (size_t)k->o),
                              "case %zu: variant %s differs from the baseline's bits", c,
                              isa_variant_name((cc_isa)isa));
            }
            if (!k->o2) {
                const double ey = rel_err(got.y, ref.y, ny), ex = rel_err(got.dx, ref.dx, nx);
                const double ew = rel_err(got.dw, ref.dw, nw);
                ck_assert_msg(ey < 2e-5 && ex < 2e-5 && ew < 2e-5,
                              "case %zu, %s: relative errors y %g dx %g dw %g", c,
                              isa_variant_name((cc_isa)isa), ey, ex, ew);
            }
            result_free(&got);
        }
        unsetenv("CELLCOUNT_MAX_ISA");
        if (!k->o2) {   /* the baseline against the reference too */
            const double ey = rel_err(base.y, ref.y, ny), ex = rel_err(base.dx, ref.dx, nx);
            ck_assert_msg(ey < 2e-5 && ex < 2e-5, "case %zu, sse2: y %g dx %g", c, ey, ex);
            result_free(&ref);
        }
        result_free(&base);
        free(x), free(w), free(b), free(R), free(w2);
    }
}
END_TEST

/* VGG's second convolution at the quickstart's size: 8 input channels
 * (oneDNN keeps them plain) to 16 (blocked).  oneDNN 2.6 has only its
 * reference backward-weights kernel for that pair of layouts (1.5 s per
 * call instead of 1 ms); the op must pick layouts a JIT kernel takes, and
 * the reordered gradient must still be right. */
START_TEST(test_onednn_backward_avoids_reference)
{
    setenv("CC_CONV_ONEDNN", "1", 1);
    cc_ctx ctx;
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(ctx_init(&ctx, 1, &st), 0);
    if (dnnl_get_effective_cpu_isa() < dnnl_cpu_isa_avx2) {
        printf("SKIP: oneDNN runs below AVX2 here: its convolution backward is reference-only\n");
        ctx_free(&ctx);
        return;
    }
    enum { N = 4, H = 24, W = 32, C = 8, O = 16 };
    const int64_t xd[4] = {N, 1, H, W}, w1d[4] = {C, 1, 3, 3}, w2d[4] = {O, C, 3, 3};
    float *x = malloc(sizeof(float) * N * H * W), *w1 = malloc(sizeof(float) * C * 9),
          *w2 = malloc(sizeof(float) * O * C * 9), *R = malloc(sizeof(float) * N * O * H * W),
          *y1 = malloc(sizeof(float) * N * C * H * W), *dw2 = malloc(sizeof(float) * O * C * 9);
    uint64_t s = 12345;
    for (int i = 0; i < N * H * W; i++) x[i] = (float)((s = s * 6364136223846793005ULL + 1) >> 40) / (float)(1 << 24) - 0.5f;
    for (int i = 0; i < C * 9; i++) w1[i] = (float)((s = s * 6364136223846793005ULL + 1) >> 40) / (float)(1 << 24) - 0.5f;
    for (int i = 0; i < O * C * 9; i++) w2[i] = (float)((s = s * 6364136223846793005ULL + 1) >> 40) / (float)(1 << 24) - 0.5f;
    for (int i = 0; i < N * O * H * W; i++) R[i] = (float)((s = s * 6364136223846793005ULL + 1) >> 40) / (float)(1 << 24) - 0.5f;
    cc_tape t;
    tape_init(&t, &ctx, 1);
    for (int step = 0; step < 2; step++) {
        tape_reset(&t);
        cc_tensor *X = tape_input(&t, 4, xd, x, 0), *W1 = tape_input(&t, 4, w1d, w1, 1);
        cc_tensor *W2 = tape_input(&t, 4, w2d, w2, 1);
        cc_tensor *a = op_conv2d(&t, X, W1, NULL, 1, 1), *y = a ? op_conv2d(&t, a, W2, NULL, 1, 1) : NULL;
        ck_assert_msg(y != NULL, "%s", tape_error(&t));
        ck_assert_int_eq(tape_read(&t, a, y1), 0);
        ck_assert_msg(tape_backward_seed(&t, y, R) == 0, "%s", tape_error(&t));
        ck_assert_int_eq(tape_read_grad(&t, W2, dw2), 0);
    }
    ck_assert_msg(t.n_ref_prims == 0, "%d reference primitive(s), the last: %s", t.n_ref_prims,
                  t.ref_what);
    double worst = 0;
    for (int o = 0; o < O; o++)
        for (int c = 0; c < C; c++)
            for (int ky = 0; ky < 3; ky++)
                for (int kx = 0; kx < 3; kx++) {
                    double acc = 0, mag = 0;
                    for (int n = 0; n < N; n++)
                        for (int yy = 0; yy < H; yy++)
                            for (int xx = 0; xx < W; xx++) {
                                const int iy = yy + ky - 1, ix = xx + kx - 1;
                                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                                const double v = (double)R[((n * O + o) * H + yy) * W + xx] *
                                                 y1[((n * C + c) * H + iy) * W + ix];
                                acc += v, mag += fabs(v);
                            }
                    const double e = fabs(dw2[(o * C + c) * 9 + ky * 3 + kx] - acc) / (mag + 1e-30);
                    if (e > worst) worst = e;
                }
    /* float32 accumulation of N*H*W terms: relative to the sum of |terms| */
    ck_assert_msg(worst < 1e-5, "weight gradient off by %g of its terms' magnitude", worst);
    tape_free(&t);
    ctx_free(&ctx);
    free(x), free(w1), free(w2), free(R), free(y1), free(dw2);
}
END_TEST

static cc_tensor *build_conv_bias(cc_tape *t, cc_tensor **x, void *u)
{
    (void)u;
    return op_conv2d(t, x[0], x[1], x[2], 1, 1);
}

/* Each ISA variant: central finite differences of sum(R * y) against the
 * analytic input, weight and bias gradients (our kernels forced; 40 output
 * channels = a full and a partial 32-column panel of the AVX-512 GEMM; 16
 * -> 40 and, in backward data, 40 -> 16).  The tolerances are
 * test_engine's conv2d ones, the same for every variant; the step is large
 * (0.25) because the loss is linear in each input (no truncation error)
 * while Winograd's fp32 rounding, a few 1e-6 of each output and not smooth
 * in the inputs, would dominate a difference quotient over a small step. */
START_TEST(test_isa_variants_gradcheck)
{
    setenv("CC_CONV_OWN", "1", 1);
    for (int isa = CC_ISA_SSE2; isa < CC_ISA_COUNT; isa++) {
        if (!isa_cpu_has((cc_isa)isa)) {
            printf("SKIP: gradient check of ISA variant %s: this CPU lacks it\n",
                   isa_variant_name((cc_isa)isa));
            continue;
        }
        setenv("CELLCOUNT_MAX_ISA", isa_variant_name((cc_isa)isa), 1);
        tu_input in[3];
        in[0] = tu_make(4, (int64_t[]){1, 16, 7, 6}, -1, 1, 41, 1);
        in[1] = tu_make(4, (int64_t[]){40, 16, 3, 3}, -0.5, 0.5, 42, 1);
        in[2] = tu_make(1, (int64_t[]){40}, -0.5, 0.5, 43, 1);
        ck_assert_msg(tu_gradcheck(isa_variant_name((cc_isa)isa), build_conv_bias, NULL, in, 3,
                                   0.25, 2e-3, 2e-2),
                      "finite differences, variant %s", isa_variant_name((cc_isa)isa));
        for (int i = 0; i < 3; i++) free(in[i].data);
    }
    unsetenv("CELLCOUNT_MAX_ISA");
}
END_TEST

START_TEST(test_isa_cap_rejects_unknown)
{
    setenv("CELLCOUNT_MAX_ISA", "avx1024", 1);
    cc_ctx ctx;
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(ctx_init(&ctx, 1, &st), -1);
    ck_assert_msg(strstr(st.msg, "CELLCOUNT_MAX_ISA") && strstr(st.msg, "avx1024"), "%s", st.msg);
}
END_TEST

/* One inference step of conv3x3(x, W) + b (16 -> 32 channels, 2x16x12x10) on t;
 * W is a parameter (params_tensor). */
static void infer_once(cc_tape *t, const float *x, cc_tensor *W, const float *b, float *y)
{
    const int64_t xd[4] = {2, 16, 12, 10}, bd[1] = {32};
    tape_reset(t);
    cc_tensor *X = tape_input(t, 4, xd, x, 0);
    cc_tensor *y_ = op_conv2d(t, X, W, tape_input(t, 1, bd, b, 0), 1, 1);
    ck_assert_msg(y_ != NULL, "%s", tape_error(t));
    ck_assert_int_eq(tape_read(t, y_, y), 0);
}

/* tape_fix_weights(): oneDNN's weights are reordered once and kept, and
 * the Winograd path's weights transformed once (a weight changed behind
 * the promise is not seen: the copy is in use); calling it again, handing
 * the op another parameter, or withdrawing the promise brings the current
 * weights back, bit-identical to a tape without it.  env: the path. */
static void check_fixed_weights(const char *env)
{
    setenv(env, "1", 1);
    enum { NX = 2 * 16 * 12 * 10, NW = 32 * 16 * 9, NY = 2 * 32 * 12 * 10 };
    float *x = malloc(sizeof(float) * NX), b[32];
    float *y = malloc(sizeof(float) * NY), *ref = malloc(sizeof(float) * NY);
    tu_fill_uniform(x, NX, -1, 1, 1), tu_fill_uniform(b, 32, -1, 1, 4);
    cc_ctx ctx;
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(ctx_init(&ctx, 1, &st), 0);
    cc_params P;
    params_init(&P, &ctx);
    const int64_t wd[4] = {32, 16, 3, 3};
    ck_assert_int_eq(params_add(&P, "a.weight", 4, wd, PARAM_TRAINABLE, &st), 0);
    ck_assert_int_eq(params_add(&P, "b.weight", 4, wd, PARAM_TRAINABLE, &st), 1);
    ck_assert_msg(params_finalize(&P, &st) == 0, "%s", st.msg);
    cc_tensor *W = params_tensor(&P, 0), *W2 = params_tensor(&P, 1);
    float *w = W->data, *w2 = W2->data;
    tu_fill_uniform(w, NW, -1, 1, 2), tu_fill_uniform(w2, NW, -1, 1, 3);
    cc_tape plain, kept;
    tape_init(&plain, &ctx, 0);
    tape_init(&kept, &ctx, 0);
    tape_fix_weights(&kept, 1);
    for (int step = 0; step < 2; step++) {
        infer_once(&plain, x, W, b, ref);
        infer_once(&kept, x, W, b, y);
        ck_assert_msg(memcmp(y, ref, sizeof(float) * NY) == 0, "step %d: kept != plain", step);
    }
    for (int i = 0; i < NW; i++) w[i] *= -0.5f;     /* behind the promise */
    infer_once(&kept, x, W, b, y);
    infer_once(&plain, x, W, b, ref);
    ck_assert_msg(memcmp(y, ref, sizeof(float) * NY) != 0,
                  "the kept tape saw a changed weight: it reorders every step");
    tape_fix_weights(&kept, 1);                     /* declared: re-read */
    infer_once(&kept, x, W, b, y);
    ck_assert_msg(memcmp(y, ref, sizeof(float) * NY) == 0, "not re-read after tape_fix_weights");
    infer_once(&kept, x, W2, b, y);                 /* another parameter */
    infer_once(&plain, x, W2, b, ref);
    ck_assert_msg(memcmp(y, ref, sizeof(float) * NY) == 0, "another parameter not read");
    tape_fix_weights(&kept, 0);                     /* withdrawn: every step */
    for (int i = 0; i < NW; i++) w2[i] += 0.25f;
    infer_once(&kept, x, W2, b, y);
    infer_once(&plain, x, W2, b, ref);
    ck_assert_msg(memcmp(y, ref, sizeof(float) * NY) == 0, "withdrawn promise still kept");
    tape_free(&plain);
    tape_free(&kept);
    params_free(&P);
    ctx_free(&ctx);
    free(x), free(y), free(ref);
    unsetenv(env);
}

/* check("CC_CONV_OWN") under each of our kernel variants the CPU runs. */
static void each_own_variant(void (*check)(const char *env))
{
    for (int isa = CC_ISA_SSE2; isa < CC_ISA_COUNT; isa++) {
        if (!isa_cpu_has((cc_isa)isa)) continue;
        setenv("CELLCOUNT_MAX_ISA", isa_variant_name((cc_isa)isa), 1);
        check("CC_CONV_OWN");
    }
    unsetenv("CELLCOUNT_MAX_ISA");
}

START_TEST(test_fixed_weights_kept)
{
    check_fixed_weights("CC_CONV_ONEDNN");      /* oneDNN: weights reordered once */
    each_own_variant(check_fixed_weights);      /* Winograd: transformed once */
}
END_TEST

/* ---- conv -> frozen BN -> LeakyReLU folded into one conv ---- */

enum { FB_O = 32, FB_C = 16 };

typedef struct fold_params {
    cc_params P;
    cc_tensor *w, *b, *g, *be, *m, *v;
} fold_params;

static void fold_params_make(fold_params *f, cc_ctx *ctx, uint64_t seed)
{
    cc_status st;
    status_clear(&st);
    params_init(&f->P, ctx);
    const int64_t wd[4] = {FB_O, FB_C, 3, 3}, cd[1] = {FB_O};
    const char *names[5] = {"c.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"};
    ck_assert_int_eq(params_add(&f->P, "c.weight", 4, wd, PARAM_TRAINABLE, &st), 0);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(params_add(&f->P, names[i], 1, cd, PARAM_TRAINABLE, &st), i + 1);
    ck_assert_msg(params_finalize(&f->P, &st) == 0, "%s", st.msg);
    cc_tensor **ts[6] = {&f->w, &f->b, &f->g, &f->be, &f->m, &f->v};
    for (int i = 0; i < 6; i++) *ts[i] = params_tensor(&f->P, i);
    tu_fill_uniform(f->w->data, FB_O * FB_C * 9, -0.3f, 0.3f, seed);
    tu_fill_uniform(f->b->data, FB_O, -0.5f, 0.5f, seed + 1);
    tu_fill_uniform(f->g->data, FB_O, 0.5f, 2.0f, seed + 2);
    tu_fill_uniform(f->be->data, FB_O, -0.5f, 0.5f, seed + 3);
    tu_fill_uniform(f->m->data, FB_O, -0.5f, 0.5f, seed + 4);
    tu_fill_uniform(f->v->data, FB_O, 0.2f, 3.0f, seed + 5);
}

/* leaky_relu(bn_eval(conv(x) [+ b])) in double, plain (2, FB_O, 12, 10). */
static void fold_reference(const fold_params *f, const float *x, int bias, float *y)
{
    const conv_case k = {2, FB_C, FB_O, 12, 10, bias, 0};
    conv_result r;
    float *R = calloc((size_t)(2 * FB_O * 120), sizeof(float));
    reference(&k, x, f->w->data, f->b->data, R, &r);
    for (int64_t i = 0; i < 2 * FB_O * 120; i++) {
        const int64_t o = (i / 120) % FB_O;
        const double s = f->g->data[o] / sqrt((double)f->v->data[o] + 1e-5);
        const double z = (r.y[i] - f->m->data[o]) * s + f->be->data[o];
        y[i] = (float)(z > 0 ? z : 0.01 * z);
    }
    result_free(&r);
    free(R);
}

static cc_tensor *fold_once(cc_tape *t, const fold_params *f, const float *x, int bias,
                            int folded)
{
    const int64_t xd[4] = {2, FB_C, 12, 10};
    tape_reset(t);
    cc_tensor *X = tape_input(t, 4, xd, x, 0), *b = bias ? f->b : NULL;
    if (folded)
        return op_conv2d_bn_lrelu_eval(t, X, f->w, b, 1, 1, f->g, f->be, f->m, f->v, 1e-5f,
                                       0.01f);
    return op_batch_norm_eval_lrelu(t, op_conv2d(t, X, f->w, b, 1, 1), f->g, f->be, f->m, f->v,
                                    1e-5f, 0.01f);
}

/* The folded op against the double reference and the separate ops, on
 * oneDNN (post-op) and on Winograd (activation in the output transform),
 * with and without bias, with and without fixed weights; a BN parameter
 * changed behind tape_fix_weights() is not seen until it is called again,
 * and a training tape is refused. */
static void check_folded(const char *env)
{
    setenv(env, "1", 1);
    enum { NX = 2 * FB_C * 120, NY = 2 * FB_O * 120 };
    float *x = malloc(sizeof(float) * NX), *ref = malloc(sizeof(float) * NY);
    float *y = malloc(sizeof(float) * NY), *sep = malloc(sizeof(float) * NY);
    float *yk = malloc(sizeof(float) * NY);
    tu_fill_uniform(x, NX, -1, 1, 41);
    cc_ctx ctx;
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(ctx_init(&ctx, 1, &st), 0);
    fold_params f;
    fold_params_make(&f, &ctx, 42);
    cc_tape t, kept;
    tape_init(&t, &ctx, 0);
    tape_init(&kept, &ctx, 0);
    tape_fix_weights(&kept, 1);
    for (int bias = 0; bias < 2; bias++) {
        fold_reference(&f, x, bias, ref);
        ck_assert_int_eq(tape_read(&t, fold_once(&t, &f, x, bias, 0), sep), 0);
        ck_assert_int_eq(tape_read(&t, fold_once(&t, &f, x, bias, 1), y), 0);
        ck_assert_int_eq(tape_read(&kept, fold_once(&kept, &f, x, bias, 1), yk), 0);
        double scale = 0;
        for (int i = 0; i < NY; i++) scale = fmax(scale, fabs(ref[i]));
        const double e_ref = tu_max_abs_diff(y, ref, NY) / scale;
        const double e_sep = tu_max_abs_diff(y, sep, NY) / scale;
        ck_assert_msg(e_ref < 2e-5 && e_sep < 2e-5, "%s, bias %d: folded vs reference %g, vs "
                      "conv + batch_norm_eval_lrelu %g", env, bias, e_ref, e_sep);
        int negative = 0;
        for (int i = 0; i < NY; i++) negative += ref[i] < 0;
        ck_assert_msg(negative > NY / 10 && negative < NY * 9 / 10, "%d of %d negative: the "
                      "activation's two sides are not both exercised", negative, NY);
        ck_assert_msg(!memcmp(y, yk, sizeof(float) * NY), "%s: fixed weights change the bits", env);
    }
    f.g->data[3] *= 2.0f;                               /* behind the promise */
    ck_assert_int_eq(tape_read(&kept, fold_once(&kept, &f, x, 1, 1), yk), 0);
    ck_assert_int_eq(tape_read(&t, fold_once(&t, &f, x, 1, 1), y), 0);
    ck_assert_msg(memcmp(y, yk, sizeof(float) * NY), "%s: a changed gamma reached the kept "
                  "tape: it folds every step", env);
    tape_fix_weights(&kept, 1);                         /* declared: folded again */
    ck_assert_int_eq(tape_read(&kept, fold_once(&kept, &f, x, 1, 1), yk), 0);
    ck_assert_msg(!memcmp(y, yk, sizeof(float) * NY), "%s: gamma not re-read", env);
    cc_tape tr;
    tape_init(&tr, &ctx, 1);
    ck_assert_ptr_null(fold_once(&tr, &f, x, 1, 1));
    ck_assert_msg(strstr(tape_error(&tr), "inference tapes only"), "%s", tape_error(&tr));
    tape_free(&tr);
    tape_free(&t);
    tape_free(&kept);
    params_free(&f.P);
    ctx_free(&ctx);
    free(x), free(ref), free(y), free(sep), free(yk);
    unsetenv(env);
}

START_TEST(test_folded_bn_lrelu)
{
    check_folded("CC_CONV_ONEDNN");
    each_own_variant(check_folded);
}
END_TEST

static Suite *conv_suite(void)
{
    Suite *s = suite_create("ops_conv");
    TCase *tc = tcase_create("winograd");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_wino_odd_sizes);
    tcase_add_test(tc, test_wino_small_and_wide);
    tcase_add_test(tc, test_single_output_channel);
    tcase_add_test(tc, test_stacked_match_onednn_and_threads);
    tcase_add_test(tc, test_isa_variants);
    tcase_add_test(tc, test_isa_variants_gradcheck);
    tcase_add_test(tc, test_isa_cap_rejects_unknown);
    tcase_add_test(tc, test_onednn_backward_avoids_reference);
    tcase_add_test(tc, test_fixed_weights_kept);
    tcase_add_test(tc, test_folded_bn_lrelu);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(conv_suite());
}
