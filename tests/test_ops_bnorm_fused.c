/* test_ops_bnorm_fused.c - BN + LeakyReLU fused in one node
 * (op_batch_norm_lrelu): equal to the two-node chain, gradient-checked;
 * part of test_ops_bnorm_eltwise. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "autodiff/op.h"
#include "autodiff/ops.h"
#include "tests/testutil.h"

#define BN_EPS 1e-5f
#define BN_MOM 0.1f

static void free_inputs(tu_input *in, int n)
{
    for (int i = 0; i < n; i++) free(in[i].data);
}

typedef struct fuse_cfg {
    int fused;      /* op_batch_norm_lrelu vs op_leaky_relu(op_batch_norm) */
    int eval;       /* running statistics */
    int conv;       /* behind a conv (blocked layout): inputs x, w, gamma, beta, rm, rv */
    float slope;
} fuse_cfg;

static cc_tensor *build_fuse(cc_tape *t, cc_tensor **x, void *u)
{
    const fuse_cfg *c = u;
    cc_tensor *h = x[0], **p = x + 1;
    if (c->conv) {
        h = op_conv2d(t, x[0], x[1], NULL, 1, 1);
        p = x + 2;
    }
    if (c->fused)
        return c->eval ? op_batch_norm_eval_lrelu(t, h, p[0], p[1], p[2], p[3], BN_EPS, c->slope)
                       : op_batch_norm_lrelu(t, h, p[0], p[1], p[2], p[3], NULL, BN_MOM, BN_EPS,
                                             c->slope);
    cc_tensor *b = c->eval ? op_batch_norm_eval(t, h, p[0], p[1], p[2], p[3], BN_EPS)
                           : op_batch_norm(t, h, p[0], p[1], p[2], p[3], NULL, BN_MOM, BN_EPS);
    return op_leaky_relu(t, b, c->slope);
}

/* Output and every input gradient (for one random seed) of a graph. */
static void run_fuse(fuse_cfg *c, tu_input *in, int nin, float **out, float **grads, int64_t *n)
{
    cc_ctx ctx;
    ck_assert_int_eq(ctx_init(&ctx, 0, NULL), 0);
    cc_tape t;
    tape_init(&t, &ctx, 1);
    cc_tensor *x[8];
    for (int i = 0; i < nin; i++)
        x[i] = tape_input(&t, in[i].ndim, in[i].dims, in[i].data, in[i].requires_grad);
    cc_tensor *y = build_fuse(&t, x, c);
    ck_assert_msg(y != NULL, "%s", tape_error(&t));
    *n = tensor_numel(y);
    *out = malloc(sizeof(float) * (size_t)*n);
    ck_assert_int_eq(tape_read(&t, y, *out), 0);
    float *seed = malloc(sizeof(float) * (size_t)*n);
    tu_fill_uniform(seed, *n, -1, 1, 77);
    ck_assert_int_eq(tape_backward_seed(&t, y, seed), 0);
    for (int i = 0; i < nin; i++) {
        grads[i] = NULL;
        if (!in[i].requires_grad) continue;
        grads[i] = malloc(sizeof(float) * (size_t)tu_numel(&in[i]));
        ck_assert_int_eq(tape_read_grad(&t, x[i], grads[i]), 0);
    }
    free(seed);
    tape_free(&t);
    ctx_free(&ctx);
}

/* The fused node equals the two-node chain (values and gradients) on plain
 * (N,C), plain (N,C,H,W) and blocked conv outputs (O = 12: padded
 * channels), with batch and running statistics. */
static void check_fuse_equal(int conv, int ndim, int eval)
{
    tu_input in[7];
    int nin;
    if (conv) {
        in[0] = tu_make(4, (int64_t[]){2, 3, 4, 5}, -1, 1, 120, 1);
        in[1] = tu_make(4, (int64_t[]){12, 3, 3, 3}, -0.4, 0.4, 121, 1);
        nin = 2;
    } else {
        in[0] = ndim == 4 ? tu_make(4, (int64_t[]){3, 5, 4, 3}, -2, 3, 122, 1)
                          : tu_make(2, (int64_t[]){7, 6}, -2, 3, 122, 1);
        nin = 1;
    }
    const int64_t C = conv ? 12 : in[0].dims[1];
    in[nin++] = tu_make(1, (int64_t[]){C}, 0.5, 1.5, 123, 1);
    in[nin++] = tu_make(1, (int64_t[]){C}, -0.5, 0.5, 124, 1);
    in[nin++] = tu_make(1, (int64_t[]){C}, -0.3, 0.3, 125, 0);
    in[nin++] = tu_make(1, (int64_t[]){C}, 0.5, 2.0, 126, 0);
    fuse_cfg a = {1, eval, conv, 0.2f}, b = {0, eval, conv, 0.2f};
    float *ya, *yb, *ga[7], *gb[7];
    int64_t na, nb;
    run_fuse(&a, in, nin, &ya, ga, &na);
    run_fuse(&b, in, nin, &yb, gb, &nb);
    ck_assert_int_eq(na, nb);
    ck_assert_msg(tu_max_abs_diff(ya, yb, na) == 0, "fused forward differs by %g",
                  tu_max_abs_diff(ya, yb, na));
    for (int i = 0; i < nin; i++) {
        if (!in[i].requires_grad) continue;
        double d = tu_max_abs_diff(ga[i], gb[i], tu_numel(&in[i]));
        ck_assert_msg(d <= 1e-6, "input %d gradient differs by %g (conv %d, eval %d)", i, d, conv,
                      eval);
        free(ga[i]);
        free(gb[i]);
    }
    free(ya);
    free(yb);
    free_inputs(in, nin);
}

START_TEST(test_bn_lrelu_fused_equals_chain)
{
    for (int eval = 0; eval < 2; eval++) {
        check_fuse_equal(0, 2, eval);
        check_fuse_equal(0, 4, eval);
        check_fuse_equal(1, 4, eval);
    }
}
END_TEST

/* The fused LeakyReLU pass in every ISA variant the CPU runs (isa.h,
 * chosen through CELLCOUNT_MAX_ISA) equals the chain; the others SKIP. */
START_TEST(test_bn_lrelu_fused_isa_variants)
{
    for (int isa = CC_ISA_SSE2; isa < CC_ISA_COUNT; isa++) {
        if (!isa_cpu_has((cc_isa)isa)) {
            printf("SKIP: fused LeakyReLU variant %s: this CPU lacks it\n", isa_variant_name(isa));
            continue;
        }
        setenv("CELLCOUNT_MAX_ISA", isa_variant_name((cc_isa)isa), 1);
        for (int eval = 0; eval < 2; eval++) {
            check_fuse_equal(0, 2, eval);
            check_fuse_equal(0, 4, eval);
            check_fuse_equal(1, 4, eval);
        }
    }
    unsetenv("CELLCOUNT_MAX_ISA");
}
END_TEST

/* Finite differences through the fused node, batch statistics: x values
 * chosen so that no normalised value is near LeakyReLU's kink at 0. */
START_TEST(test_bn_lrelu_fused_gradcheck)
{
    tu_input in[5];
    in[0] = tu_make(2, (int64_t[]){6, 4}, 0, 0, 130, 1);
    for (int n = 0; n < 6; n++)
        for (int c = 0; c < 4; c++)
            in[0].data[n * 4 + c] = (float)((n % 2 ? 1 : -1) * (1.0 + 0.5 * n) * (1 + 0.3 * c));
    in[1] = tu_make(1, (int64_t[]){4}, 0.5, 1.5, 131, 1);
    in[2] = tu_make(1, (int64_t[]){4}, 0, 0, 132, 1);
    in[3] = tu_make(1, (int64_t[]){4}, 0, 0, 133, 0);
    in[4] = tu_make(1, (int64_t[]){4}, 1, 1, 134, 0);
    fuse_cfg c = {1, 0, 0, 0.3f};
    ck_assert(tu_gradcheck("batch_norm_lrelu", build_fuse, &c, in, 5, 1e-2, 2e-3, 2e-2));
    free_inputs(in, 5);
}
END_TEST

void ops_add_fused_cases(TCase *tc)
{
    tcase_add_test(tc, test_bn_lrelu_fused_equals_chain);
    tcase_add_test(tc, test_bn_lrelu_fused_isa_variants);
    tcase_add_test(tc, test_bn_lrelu_fused_gradcheck);
}
