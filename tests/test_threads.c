/* test_threads.c - results do not depend on the thread count.
 *
 * oneDNN's convolution weight-gradient kernels split their sums among
 * threads; op_conv.c therefore runs them in pieces of the batch fixed by
 * the shapes (autodiff/conv_wgrad.h), or on one thread.  Checked here:
 * the pieces' gradients against a double-precision direct reference, on
 * shapes that take one piece per image, pieces of several images with a
 * shorter last one, and a single piece; the same bits at 1, 2 and 3
 * threads for those convolutions; and a few Adam steps of the FPN, the
 * VGG-11 and the ResNet-18 counters giving the same parameters, bit for
 * bit, at 1, 2 and 3 threads.  (2 and 3 threads run on any CPU: OpenMP
 * starts the threads whatever the core count.) */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autodiff/conv_wgrad.h"
#include "autodiff/ops.h"
#include "autodiff/optim.h"
#include "autodiff/params.h"
#include "models/counter.h"
#include "models/fpn.h"
#include "models/losses.h"
#include "tests/testmain.h"
#include "tests/testutil.h"

typedef struct wg_case {
    int n, c, o, h, w, k, stride, pad, bias;
    int pieces;     /* conv_wgrad_pieces' answer for this shape */
    int cpieces;    /* conv_wgrad_channel_pieces' (1: batch pieces are used) */
} wg_case;

static int64_t out_size(int in, const wg_case *k) { return (in + 2 * k->pad - k->k) / k->stride + 1; }

typedef struct wg_result {
    float *y, *dx, *dw, *db;
} wg_result;

static void wg_free(wg_result *r) { free(r->y), free(r->dx), free(r->dw), free(r->db); }

/* y = conv(x, w) + b on oneDNN (CC_CONV_ONEDNN=1 is set by the caller),
 * backward with seed R, at `threads`; twice, so the second step runs on
 * the cached primitives. */
static void wg_run(const wg_case *k, const float *x, const float *w, const float *b,
                   const float *R, int threads, wg_result *r)
{
    cc_ctx ctx;
    ck_assert_int_eq(ctx_init(&ctx, threads, NULL), 0);
    cc_tape t;
    tape_init(&t, &ctx, 1);
    const int64_t oh = out_size(k->h, k), ow = out_size(k->w, k);
    const int64_t xd[4] = {k->n, k->c, k->h, k->w}, wd[4] = {k->o, k->c, k->k, k->k},
                  bd[1] = {k->o};
    r->y = malloc(sizeof(float) * (size_t)(k->n * k->o * oh * ow));
    r->dx = malloc(sizeof(float) * (size_t)(k->n * k->c * k->h * k->w));
    r->dw = malloc(sizeof(float) * (size_t)(k->o * k->c * k->k * k->k));
    r->db = calloc((size_t)k->o, sizeof(float));
    for (int step = 0; step < 2; step++) {
        tape_reset(&t);
        cc_tensor *X = tape_input(&t, 4, xd, x, 1), *W = tape_input(&t, 4, wd, w, 1);
        cc_tensor *B = k->bias ? tape_input(&t, 1, bd, b, 1) : NULL;
        cc_tensor *y = op_conv2d(&t, X, W, B, k->stride, k->pad);
        ck_assert_msg(y != NULL, "%s", tape_error(&t));
        ck_assert_int_eq(tape_read(&t, y, r->y), 0);
        ck_assert_msg(tape_backward_seed(&t, y, R) == 0, "%s", tape_error(&t));
        ck_assert_int_eq(tape_read_grad(&t, X, r->dx), 0);
        ck_assert_int_eq(tape_read_grad(&t, W, r->dw), 0);
        if (B) ck_assert_int_eq(tape_read_grad(&t, B, r->db), 0);
    }
    tape_free(&t);
    ctx_free(&ctx);
}

/* d sum(R * y) / dw and / db, direct, in double. */
static void wg_reference(const wg_case *k, const float *x, const float *R, double *dw, double *db)
{
    const int64_t oh = out_size(k->h, k), ow = out_size(k->w, k), K = k->k;
    for (int64_t o = 0; o < k->o; o++) {
        db[o] = 0;
        for (int64_t n = 0; n < k->n; n++)
            for (int64_t i = 0; i < oh * ow; i++) db[o] += R[((n * k->o + o) * oh * ow) + i];
        for (int64_t c = 0; c < k->c; c++)
            for (int64_t ky = 0; ky < K; ky++)
                for (int64_t kx = 0; kx < K; kx++) {
                    double acc = 0;
                    for (int64_t n = 0; n < k->n; n++)
                        for (int64_t yy = 0; yy < oh; yy++)
                            for (int64_t xx = 0; xx < ow; xx++) {
                                const int64_t iy = yy * k->stride + ky - k->pad;
                                const int64_t ix = xx * k->stride + kx - k->pad;
                                if (iy < 0 || iy >= k->h || ix < 0 || ix >= k->w) continue;
                                acc += (double)R[((n * k->o + o) * oh + yy) * ow + xx] *
                                       x[((n * k->c + c) * k->h + iy) * k->w + ix];
                            }
                    dw[((o * k->c + c) * K + ky) * K + kx] = acc;
                }
    }
}

static void wg_check(const wg_case *k)
{
    const int64_t oh = out_size(k->h, k), ow = out_size(k->w, k);
    const int64_t nx = (int64_t)k->n * k->c * k->h * k->w, nw = (int64_t)k->o * k->c * k->k * k->k;
    const int64_t ny = (int64_t)k->n * k->o * oh * ow;
    /* the shape takes the pieces the case is about */
    const size_t dw_bytes = sizeof(float) * (size_t)(nw + (k->bias ? k->o : 0));
    ck_assert_int_eq(conv_wgrad_pieces(k->n, dw_bytes, ny * k->c * k->k * k->k), k->pieces);
    /* with diff_dst in blocks of 16 channels (AVX-512) or 8 (AVX2, SSE4.1) */
    for (int blk = 8; blk <= 16; blk += 8)
        ck_assert_int_eq(conv_wgrad_channel_pieces(k->o, blk, sizeof(float) * (size_t)nw,
                                                   sizeof(float) * (size_t)nx,
                                                   ny * k->c * k->k * k->k),
                         k->cpieces);
    float *x = malloc(sizeof(float) * (size_t)nx), *w = malloc(sizeof(float) * (size_t)nw);
    float *b = malloc(sizeof(float) * (size_t)k->o), *R = malloc(sizeof(float) * (size_t)ny);
    tu_fill_uniform(x, nx, -1, 1, 51);
    tu_fill_uniform(w, nw, -0.3f, 0.3f, 52);
    tu_fill_uniform(b, k->o, -0.5f, 0.5f, 53);
    tu_fill_uniform(R, ny, -1, 1, 54);
    wg_result r[3];
    for (int i = 0; i < 3; i++) wg_run(k, x, w, b, R, i + 1, &r[i]);
    double *dw = malloc(sizeof(double) * (size_t)nw), *db = malloc(sizeof(double) * (size_t)k->o);
    wg_reference(k, x, R, dw, db);
    /* fp32 sums of n*oh*ow products of |x|, |R| <= 1: relative to the
     * largest gradient, a few 1e-6 */
    double ew = 0, mw = 1e-30, eb = 0, mb = 1e-30;
    for (int64_t i = 0; i < nw; i++) ew = fmax(ew, fabs(r[0].dw[i] - dw[i])), mw = fmax(mw, fabs(dw[i]));
    for (int64_t i = 0; i < k->o; i++) eb = fmax(eb, fabs(r[0].db[i] - db[i])), mb = fmax(mb, fabs(db[i]));
    ck_assert_msg(ew / mw < 2e-5 && (!k->bias || eb / mb < 2e-5),
                  "conv %dx%dx%dx%d -> %d (k%d s%d): weight gradient off the reference by %g, "
                  "bias by %g", k->n, k->c, k->h, k->w, k->o, k->k, k->stride, ew / mw, eb / mb);
    for (int i = 1; i < 3; i++) {
        ck_assert_msg(memcmp(r[0].y, r[i].y, sizeof(float) * (size_t)ny) == 0, "y differs at %d threads", i + 1);
        ck_assert_msg(memcmp(r[0].dx, r[i].dx, sizeof(float) * (size_t)nx) == 0, "dx differs at %d threads", i + 1);
        ck_assert_msg(memcmp(r[0].dw, r[i].dw, sizeof(float) * (size_t)nw) == 0,
                      "conv %dx%dx%dx%d -> %d (k%d s%d, %d pieces): weight gradient differs at "
                      "%d threads", k->n, k->c, k->h, k->w, k->o, k->k, k->stride, k->pieces, i + 1);
        ck_assert_msg(memcmp(r[0].db, r[i].db, sizeof(float) * (size_t)k->o) == 0, "db differs at %d threads", i + 1);
    }
    for (int i = 0; i < 3; i++) wg_free(&r[i]);
    free(x), free(w), free(b), free(R), free(dw), free(db);
}

START_TEST(test_conv_wgrad_pieces)
{
    setenv("CC_CONV_ONEDNN", "1", 1);   /* every conv on oneDNN (the shapes are small) */
    const wg_case cases[] = {
        /* each above the tape's serial bounds (4 Mi multiply-adds), so
         * that 2 and 3 threads run the pieces concurrently */
        {5, 1, 16, 96, 128, 3, 1, 1, 1, 5, 1},    /* a first layer: one image per piece */
        {7, 32, 64, 12, 14, 3, 2, 1, 1, 4, 1},    /* strided: pieces of 2 images, the last of 1 */
        {16, 8, 24, 12, 16, 3, 1, 1, 1, 16, 1},   /* 16 pieces */
        /* the gradient outweighs the input: pieces of the output channels */
        {6, 384, 384, 5, 6, 1, 2, 0, 0, 1, 7},    /* 1x1 on 9 pixels */
        {5, 128, 256, 6, 8, 3, 1, 1, 1, 3, 16},   /* a VGG-like deep layer */
        /* 2 pieces: of 32 and 16 channels where diff_dst has blocks of 16 */
        {2, 64, 48, 6, 8, 3, 1, 1, 1, 1, 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) wg_check(&cases[i]);
}
END_TEST

/* The piece counts follow the shapes and nothing else. */
START_TEST(test_conv_wgrad_piece_rule)
{
    ck_assert_int_eq(conv_wgrad_pieces(1, 4096, (int64_t)1 << 30), 1);
    ck_assert_int_eq(conv_wgrad_pieces(40, 4096, (int64_t)1 << 30), 16);
    /* 9.4 MB of gradient: 3 pieces fit the 32 MiB of partial sums */
    ck_assert_int_eq(conv_wgrad_pieces(32, 512 * 512 * 9 * 4, (int64_t)1 << 40), 3);
    /* 60 pixels x 5 images of a 512 -> 512 conv: adding up costs more */
    ck_assert_int_eq(conv_wgrad_pieces(5, 512 * 512 * 9 * 4, (int64_t)5 * 12 * 512 * 512 * 9), 1);
    /* ...but 16 pieces of 32 output channels each take the whole batch */
    ck_assert_int_eq(conv_wgrad_channel_pieces(512, 16, 512 * 512 * 9 * 4, 5 * 512 * 12 * 4,
                                               (int64_t)5 * 12 * 512 * 512 * 9), 16);
    /* the input outweighs the gradient (an FPN layer at 96x128): no */
    ck_assert_int_eq(conv_wgrad_channel_pieces(128, 16, 128 * 128 * 9 * 4, 4 * 128 * 96 * 128 * 4,
                                               (int64_t)1 << 34), 1);
    /* not whole blocks, or one block: no */
    ck_assert_int_eq(conv_wgrad_channel_pieces(40, 16, 1 << 24, 1 << 10, (int64_t)1 << 34), 1);
    ck_assert_int_eq(conv_wgrad_channel_pieces(16, 16, 1 << 24, 1 << 10, (int64_t)1 << 34), 1);
    /* at least 2^20 multiply-adds per piece */
    ck_assert_int_eq(conv_wgrad_channel_pieces(512, 16, 1 << 24, 1 << 10, (int64_t)5 << 20), 5);
}
END_TEST

/* ---- whole models ---- */

typedef enum { M_FPN, M_VGG, M_RESNET } model_kind;

/* The trainable parameters after `steps` Adam steps on a fixed batch, at
 * `threads`; malloc'd, *n floats. */
static float *train_params(model_kind kind, int threads, int steps, size_t *n)
{
    cc_ctx ctx;
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(ctx_init(&ctx, threads, &st), 0);
    cc_params P;
    params_init(&P, &ctx);
    fpn_model fm;
    counter_model cm;
    memset(&fm, 0, sizeof fm);
    memset(&cm, 0, sizeof cm);
    int64_t xd[4] = {4, 1, 48, 64};
    if (kind == M_FPN) {
        fpn_config cfg = {3, 16, 1};
        ck_assert_msg(fpn_build(&P, &cfg, "fpn", &fm, &st) == 0 && params_finalize(&P, &st) == 0,
                      "%s", st.msg);
        fpn_init(&P, &fm, 7);
    } else {
        counter_config cfg = counter_config_default();
        snprintf(cfg.arch, sizeof cfg.arch, "%s", kind == M_VGG ? "vgg11" : "resnet18");
        cfg.width_div = 8;
        cfg.height = 48;
        cfg.width = 64;
        xd[0] = 6;
        ck_assert_msg(counter_build(&P, &cfg, "counter", &cm, &st) == 0 &&
                          params_finalize(&P, &st) == 0, "%s", st.msg);
        counter_init(&P, &cm, 7);
    }
    const size_t nx = (size_t)(xd[0] * xd[1] * xd[2] * xd[3]);
    float *x = malloc(sizeof(float) * nx), *y = malloc(sizeof(float) * nx);
    tu_fill_uniform(x, (int64_t)nx, 0, 1, 61);
    for (size_t i = 0; i < nx; i++) y[i] = x[i] > 0.5f;
    float counts[6] = {3, 17, 40, 61, 88, 100};
    cc_optim opt;
    optim_adam_init(&opt, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f);
    cc_tape t;
    tape_init(&t, &ctx, 1);
    t.free_grads = 1;
    for (int s = 0; s < steps; s++) {
        tape_reset(&t);
        params_zero_grad(&P);
        cc_tensor *X = tape_input(&t, 4, xd, x, 0), *loss;
        if (kind == M_FPN) {
            fpn_output out;
            ck_assert_msg(fpn_forward(&t, &P, &fm, X, &out) == 0, "%s", tape_error(&t));
            const int64_t yd[4] = {xd[0], 1, xd[2], xd[3]};
            loss = fpn_loss(&t, &out, tape_input(&t, 4, yd, y, 0), LOSS_PAPER,
                            LOSS_TV_WEIGHT_DEFAULT, NULL);
        } else {
            cc_tensor *c, *lv;
            ck_assert_msg(counter_forward(&t, &P, &cm, X, &c, &lv) == 0, "%s", tape_error(&t));
            const int64_t cd[2] = {xd[0], 1};
            loss = counter_loss(&t, c, lv, tape_input(&t, 2, cd, counts, 0), LOSS_PAPER, NULL);
        }
        ck_assert_msg(loss != NULL, "%s", tape_error(&t));
        ck_assert_msg(tape_backward(&t, loss) == 0, "%s", tape_error(&t));
        ck_assert_int_eq(optim_step(&opt, &P, NULL), 0);
    }
    *n = P.n_train;
    float *v = malloc(sizeof(float) * P.n_train);
    memcpy(v, P.value, sizeof(float) * P.n_train);
    tape_free(&t);
    counter_free(&cm);
    params_free(&P);
    ctx_free(&ctx);
    free(x), free(y);
    return v;
}

static void check_model(model_kind kind, const char *name)
{
    size_t n1, n;
    float *p1 = train_params(kind, 1, 3, &n1);
    for (int threads = 2; threads <= 3; threads++) {
        float *p = train_params(kind, threads, 3, &n);
        ck_assert_uint_eq(n, n1);
        size_t diff = 0;
        for (size_t i = 0; i < n; i++) diff += memcmp(&p[i], &p1[i], sizeof(float)) != 0;
        ck_assert_msg(diff == 0, "%s: %zu of %zu parameters differ between 1 and %d threads",
                      name, diff, n, threads);
        free(p);
    }
    free(p1);
}

START_TEST(test_fpn_same_at_any_thread_count) { check_model(M_FPN, "FPN"); }
END_TEST

START_TEST(test_vgg11_same_at_any_thread_count) { check_model(M_VGG, "VGG-11 counter"); }
END_TEST

START_TEST(test_resnet18_same_at_any_thread_count) { check_model(M_RESNET, "ResNet-18 counter"); }
END_TEST

static Suite *threads_suite(void)
{
    Suite *s = suite_create("threads");
    TCase *tc = tcase_create("threads");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_conv_wgrad_pieces);
    tcase_add_test(tc, test_conv_wgrad_piece_rule);
    tcase_add_test(tc, test_fpn_same_at_any_thread_count);
    tcase_add_test(tc, test_vgg11_same_at_any_thread_count);
    tcase_add_test(tc, test_resnet18_same_at_any_thread_count);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(threads_suite());
}
