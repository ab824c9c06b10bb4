/* op_eltwise.c - element-wise activations on oneDNN, one op for all.
 *
 * in: x (any shape, any layout).  args: i[0] algorithm (ELT_*), f[0] alpha,
 * f[1] beta (the oneDNN meaning for that algorithm, see elt_alg()).
 * The output keeps x's layout, so blocked activations stay blocked.
 *
 * Backward: relu / leaky relu / clamp / scale differentiate from src; exp
 * from dst (dnnl_eltwise_exp_use_dst_for_bwd: d exp(x) = exp(x), so the
 * forward's result is reused instead of recomputing exp).
 *
 * relu_unstick: relu forward; backward passes the gradient where x > 0 (as
 * relu) and also where x <= 0 but the gradient asks for a LARGER output
 * (dy < 0).  A regression output behind a relu whose targets are positive
 * (counts >= 1) otherwise dies for good once every input lands below zero:
 * seen once in 3 seeds of the reduced-scale reproduction, right after the
 * counter's BN statistics were frozen (docs/RESULTS.md).  Own loop, not
 * oneDNN: the rule is not one of its algorithms; x, y and the gradients
 * share one layout, so it runs over the raw buffers (padding is zero).
 *
 * Clamp is dnnl_eltwise_clip, whose backward passes the gradient where
 * lo < x <= hi: zero wherever the clamp is active (x < lo or x > hi) and at
 * x == lo, but one at x == hi (measured on oneDNN 2.6 and pinned by
 * tests/test_ops_bnorm_eltwise.c; PyTorch passes it at both bounds).  Only
 * the value at exactly a bound differs, where the derivative is undefined.
 */
#include "autodiff/op.h"
#include "autodiff/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { ELT_RELU = 0, ELT_LEAKY_RELU, ELT_EXP, ELT_CLAMP, ELT_SCALE, ELT_RELU_UNSTICK, ELT_COUNT };

static const char *const elt_names[ELT_COUNT] = {"relu",  "leaky_relu", "exp",
                                                 "clamp", "scale",      "relu_unstick"};

typedef struct elt_state {
    dnnl_primitive_desc_t fpd, bpd;
    dnnl_primitive_t fwd, bwd;
    dnnl_memory_t fscr, bscr;
    dnnl_memory_t m_src, m_dst, m_ddst, m_dsrc;
    dnnl_alg_kind_t alg;
    int use_dst;        /* backward reads dst instead of src */
} elt_state;

static void elt_free(void *p)
{
    elt_state *s = p;
    if (!s) return;
    if (s->fwd) dnnl_primitive_destroy(s->fwd);
    if (s->bwd) dnnl_primitive_destroy(s->bwd);
    if (s->fpd) dnnl_primitive_desc_destroy(s->fpd);
    if (s->bpd) dnnl_primitive_desc_destroy(s->bpd);
    dnnl_memory_t mems[] = {s->fscr, s->bscr, s->m_src, s->m_dst, s->m_ddst, s->m_dsrc};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        if (mems[i]) dnnl_memory_destroy(mems[i]);
    free(s);
}

static dnnl_alg_kind_t elt_alg(int which, int *use_dst)
{
    *use_dst = 0;
    switch (which) {
    case ELT_RELU:
    case ELT_RELU_UNSTICK:
    case ELT_LEAKY_RELU: return dnnl_eltwise_relu;     /* alpha = negative slope */
    case ELT_EXP: *use_dst = 1; return dnnl_eltwise_exp_use_dst_for_bwd;
    case ELT_CLAMP: return dnnl_eltwise_clip;          /* alpha = lo, beta = hi */
    default: return dnnl_eltwise_linear;               /* alpha * x + beta */
    }
}

static int elt_infer(cc_tape *t, cc_node *n, cc_tensor *out, cc_status *st)
{
    const cc_tensor *x = n->in[0];
    const int which = n->args.i[0];
    const float alpha = n->args.f[0], beta = n->args.f[1];
    char a[64];
    if (which < 0 || which >= ELT_COUNT)
        return status_set(st, "eltwise: unknown algorithm %d", which);
    if (isnan(alpha) || isnan(beta))
        return status_set(st, "eltwise(%s): NaN parameter", elt_names[which]);
    if (which == ELT_CLAMP && !(alpha <= beta))
        return status_set(st, "eltwise(clamp): lower bound %g above upper bound %g (input %s)",
                          (double)alpha, (double)beta, tensor_shape_str(x, a, sizeof a));
    if (which != ELT_CLAMP && (isinf(alpha) || isinf(beta)))
        return status_set(st, "eltwise(%s): infinite parameter", elt_names[which]);

    elt_state *s = calloc(1, sizeof *s);
    if (!s) return status_set(st, "eltwise: out of memory");
    n->state = s;
    s->alg = elt_alg(which, &s->use_dst);
    dnnl_eltwise_desc_t ed;
    DNNL_TRY(st, "eltwise", "forward descriptor",
             dnnl_eltwise_forward_desc_init(
                 &ed, t->training ? dnnl_forward_training : dnnl_forward_inference, s->alg, &x->md,
                 alpha, beta));
    if (tape_prim_make(t, &ed, NULL, &s->fpd, &s->fwd, &s->fscr, "eltwise",
                       "forward primitive descriptor", st))
        return -1;
    const dnnl_memory_desc_t *dst_md = dnnl_primitive_desc_query_md(s->fpd, dnnl_query_dst_md, 0);
    if (tape_mem_create(t, &s->m_src, &x->md, st) || tape_mem_create(t, &s->m_dst, dst_md, st))
        return -1;
    out->ndim = x->ndim;
    memcpy(out->dims, x->dims, sizeof out->dims);
    out->md = *dst_md;
    return 0;
}

static int elt_forward(cc_tape *t, cc_node *n, cc_status *st)
{
    elt_state *s = n->state;
    mem_bind(s->m_src, n->in[0]->data);
    mem_bind(s->m_dst, n->out->data);
    dnnl_exec_arg_t a[2] = {{DNNL_ARG_SRC, s->m_src}, {DNNL_ARG_DST, s->m_dst}};
    return tape_exec(t, s->fwd, s->fscr, 2, a, "eltwise forward", st);
}

static int elt_make_bwd(cc_tape *t, cc_node *n, elt_state *s, cc_status *st)
{
    const cc_tensor *x = n->in[0], *y = n->out;
    dnnl_eltwise_desc_t ed;
    DNNL_TRY(st, "eltwise", "backward descriptor",
             dnnl_eltwise_backward_desc_init(&ed, s->alg, &y->md, s->use_dst ? &y->md : &x->md,
                                             n->args.f[0], n->args.f[1]));
    if (tape_prim_make(t, &ed, s->fpd, &s->bpd, &s->bwd, &s->bscr, "eltwise",
                       "backward primitive descriptor", st))
        return -1;
    const dnnl_memory_desc_t *dsrc_md =
        dnnl_primitive_desc_query_md(s->bpd, dnnl_query_diff_src_md, 0);
    if (!dnnl_memory_desc_equal(dsrc_md, &x->md))
        return status_set(st, "eltwise: oneDNN changed the layout of the input gradient");
    return tape_mem_create(t, &s->m_ddst, &y->md, st) || tape_mem_create(t, &s->m_dsrc, dsrc_md, st);
}

static int elt_backward(cc_tape *t, cc_node *n, cc_status *st)
{
    elt_state *s = n->state;
    cc_tensor *x = n->in[0];
    if (!x->requires_grad) return 0;
    if (n->args.i[0] == ELT_RELU_UNSTICK) {
        if (!dnnl_memory_desc_equal(&x->md, &n->out->md))
            return status_set(st, "eltwise(relu_unstick): output layout differs from the input's");
        float *g = tape_grad_begin(t, x, st);
        if (!g) return -1;
        const float *xv = x->data, *dy = n->out->grad;
        const size_t len = dnnl_memory_desc_get_size(&x->md) / sizeof(float);
        for (size_t i = 0; i < len; i++) g[i] = xv[i] > 0 || dy[i] < 0 ? dy[i] : 0.0f;
        tape_grad_end(t, x, g);
        return 0;
    }
    if (!s->bwd && elt_make_bwd(t, n, s, st)) return -1;
    float *gx = tape_grad_begin(t, x, st);
    if (!gx) return -1;
    dnnl_exec_arg_t a[3] = {{DNNL_ARG_DIFF_DST, s->m_ddst}, {DNNL_ARG_DIFF_SRC, s->m_dsrc},
                            {DNNL_ARG_SRC, s->m_src}};
    if (s->use_dst) {
        mem_bind(s->m_dst, n->out->data);
        a[2].arg = DNNL_ARG_DST;
        a[2].memory = s->m_dst;
    } else {
        mem_bind(s->m_src, x->data);
    }
    mem_bind(s->m_ddst, n->out->grad);
    mem_bind(s->m_dsrc, gx);
    if (tape_exec(t, s->bwd, s->bscr, 3, a, "eltwise backward", st)) return -1;
    tape_grad_end(t, x, gx);
    return 0;
}

const cc_op_def op_def_eltwise = {"eltwise", OPK_ELTWISE, elt_infer, elt_forward, elt_backward,
                                  elt_free, NULL};

static cc_tensor *elt_record(cc_tape *t, cc_tensor *x, int which, float alpha, float beta)
{
    cc_op_args a;
    memset(&a, 0, sizeof a);
    a.i[0] = which;
    a.f[0] = alpha;
    a.f[1] = beta;
    return tape_record(t, OP_eltwise, &x, 1, &a);
}

cc_tensor *op_relu(cc_tape *t, cc_tensor *x) { return elt_record(t, x, ELT_RELU, 0, 0); }

cc_tensor *op_relu_unstick(cc_tape *t, cc_tensor *x)
{
    return elt_record(t, x, ELT_RELU_UNSTICK, 0, 0);
}

cc_tensor *op_leaky_relu(cc_tape *t, cc_tensor *x, float slope)
{
    return elt_record(t, x, ELT_LEAKY_RELU, slope, 0);
}

cc_tensor *op_exp(cc_tape *t, cc_tensor *x) { return elt_record(t, x, ELT_EXP, 0, 0); }

cc_tensor *op_clamp(cc_tape *t, cc_tensor *x, float lo, float hi)
{
    return elt_record(t, x, ELT_CLAMP, lo, hi);
}

cc_tensor *op_scale(cc_tape *t, cc_tensor *x, float alpha, float beta)
{
    return elt_record(t, x, ELT_SCALE, alpha, beta);
}
