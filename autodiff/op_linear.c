/* op_linear.c - fully connected layer on oneDNN's inner product.
 *
 * args: i[0] has_bias.  in: x (N,F), w (O,F) (PyTorch layout)[, b (O)].
 * x is used in its own layout.  The weights stay in the parameter's plain
 * (O,F) layout when oneDNN has an optimised kernel for it (its GEMM takes
 * either orientation): reordering the counter's 6144x1024 weights to the
 * `any` choice (ba) and the gradient back cost more than the layer itself.
 * Otherwise the layout is the primitive's choice, the plain parameter is
 * reordered to it once per step and the weight gradient back to plain, as
 * in op_conv.c.  Backward primitives are built on first use.
 *
 * bf16 precision (ctx_set_precision): the input, the weights and the output
 * gradient are rounded to bf16 where the inner products read them (bf16
 * copies in the arena, refreshed each step from the fp32 values); output,
 * input gradient and weight / bias gradients stay fp32.  Where oneDNN has
 * only its reference kernel for bf16, the layer runs in fp32.
 */
#include "autodiff/conv_bf16.h"
#include "autodiff/op.h"
#include "autodiff/ops.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* A layer with fewer weights than this (and fewer multiply-accumulates
 * n*in*out than that) runs on the calling thread alone.  oneDNN's GEMM
 * splits even the counter heads' small products over the whole team:
 * the quickstart's counter (batch 32, 1024x1024 and 1024x512 heads) spent
 * 5.7-5.9 ms per step in these layers at 2 threads on an idle 2-vCPU
 * machine against 5.2 serial, and 9.4-9.7 against 5.2-5.4 beside a busy
 * process (issue 13's contention benchmark), each parallel region a sleep
 * and a wake-up for the workers.  Large weight matrices stay parallel:
 * the paper counter's 6144x1024 layer at batch 5 streams 25 MB of weights,
 * and two threads read them faster (6.2-6.7 ms against 10.1-10.5 serial).
 * The forward and both backward passes of a layer make the same choice. */
#define LINEAR_SERIAL_WEIGHTS (2LL << 20)
#define LINEAR_SERIAL_MACS (64LL << 20)

typedef struct linear_state {
    dnnl_primitive_desc_t fpd, bdpd, bwpd;
    dnnl_primitive_t fwd, bwd_data, bwd_w;
    dnnl_memory_t fscr, bdscr, bwscr;
    dnnl_memory_t m_src, m_w, m_b, m_dst, m_dsrc, m_dw, m_db, m_dd;
    cc_reorder r_w, r_dw, r_src, r_dd;
    dnnl_memory_desc_t w_md, dw_md, src_md, dd_md;   /* src_md, dd_md: as used */
    float *w_buf;               /* this step's weights in w_md */
    void *src_buf;              /* this step's input as used (bf16 copy or x->data) */
    int bf16;                   /* bf16 primitives (see file comment) */
    int serial;                 /* run on the calling thread (LINEAR_SERIAL_*) */
} linear_state;

static void linear_free(void *p)
{
    linear_state *s = p;
    if (!s) return;
    dnnl_primitive_desc_t pds[] = {s->fpd, s->bdpd, s->bwpd};
    dnnl_primitive_t prims[] = {s->fwd, s->bwd_data, s->bwd_w};
    dnnl_memory_t mems[] = {s->fscr, s->bdscr, s->bwscr, s->m_src, s->m_w, s->m_b,
                            s->m_dst, s->m_dsrc, s->m_dw, s->m_db, s->m_dd};
    for (size_t i = 0; i < 3; i++) {
        if (prims[i]) dnnl_primitive_destroy(prims[i]);
        if (pds[i]) dnnl_primitive_desc_destroy(pds[i]);
    }
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        if (mems[i]) dnnl_memory_destroy(mems[i]);
    reorder_free(&s->r_w);
    reorder_free(&s->r_dw);
    reorder_free(&s->r_src);
    reorder_free(&s->r_dd);
    free(s);
}

static int linear_infer(cc_tape *t, cc_node *n, cc_tensor *out, cc_status *st)
{
    const cc_tensor *x = n->in[0], *w = n->in[1];
    const int has_bias = n->args.i[0];
    char a[64], b[64];
    if (x->ndim != 2 || w->ndim != 2)
        return status_set(st, "linear: input and weight must be 2-D (got %s and %s)",
                          tensor_shape_str(x, a, sizeof a), tensor_shape_str(w, b, sizeof b));
    if (w->dims[1] != x->dims[1])
        return status_set(st, "linear: weight %s expects %lld features, input is %s",
                          tensor_shape_str(w, a, sizeof a), (long long)w->dims[1],
                          tensor_shape_str(x, b, sizeof b));
    if (has_bias && (n->in[2]->ndim != 1 || n->in[2]->dims[0] != w->dims[0]))
        return status_set(st, "linear: bias %s does not match weight %s",
                          tensor_shape_str(n->in[2], a, sizeof a), tensor_shape_str(w, b, sizeof b));

    linear_state *s = calloc(1, sizeof *s);
    if (!s) return status_set(st, "linear: out of memory");
    n->state = s;
    s->serial = w->dims[0] * w->dims[1] < LINEAR_SERIAL_WEIGHTS &&
                x->dims[0] * w->dims[0] * w->dims[1] < LINEAR_SERIAL_MACS;
    dnnl_dims_t wd = {w->dims[0], w->dims[1]};
    dnnl_dims_t dd = {x->dims[0], w->dims[0]};
    dnnl_dims_t bd = {w->dims[0]};
    dnnl_memory_desc_t w_any, dst_any, b_md;
    DNNL_TRY(st, "linear", "md", dnnl_memory_desc_init_by_tag(&dst_any, 2, dd, dnnl_f32, dnnl_format_tag_any));
    DNNL_TRY(st, "linear", "md", dnnl_memory_desc_init_by_tag(&b_md, 1, bd, dnnl_f32, dnnl_a));
    dnnl_inner_product_desc_t ipd;
    dnnl_status_t e = dnnl_unimplemented;
    const dnnl_prop_kind_t pk = t->training ? dnnl_forward_training : dnnl_forward_inference;
    /* bf16 first when asked for; fp32 when bf16 has only the reference kernel */
    for (int bf = t->ctx->bf16; bf >= 0 && !s->fpd; bf--) {
        const dnnl_data_type_t dt = bf ? dnnl_bf16 : dnnl_f32;
        const dnnl_memory_desc_t w_plain = bf ? conv_bf16_md(&w->md) : w->md;
        s->src_md = bf ? conv_bf16_md(&x->md) : x->md;
        DNNL_TRY(st, "linear", "md", dnnl_memory_desc_init_by_tag(&w_any, 2, wd, dt, dnnl_format_tag_any));
        for (int try_plain = tensor_is_plain(w); try_plain >= 0 && !s->fpd; try_plain--) {
            DNNL_TRY(st, "linear", "forward descriptor",
                     dnnl_inner_product_forward_desc_init(&ipd, pk, &s->src_md,
                                                          try_plain ? &w_plain : &w_any,
                                                          has_bias ? &b_md : NULL, &dst_any));
            e = tape_pd_create(t, &s->fpd, &ipd, NULL);
            /* plain only on the reference kernel: try `any`; bf16 only there: fp32 */
            if (e == dnnl_success && (try_plain || bf) && op_pd_is_ref(s->fpd)) {
                dnnl_primitive_desc_destroy(s->fpd);
                s->fpd = NULL;
            }
        }
        s->bf16 = bf;
    }
    if (e != dnnl_success || !s->fpd)
        return op_dnnl_fail(st, "linear", "forward primitive descriptor", e);
    if (tape_prim_create(t, s->fpd, &s->fwd, &s->fscr, "linear", st)) return -1;

    s->w_md = *dnnl_primitive_desc_query_md(s->fpd, dnnl_query_weights_md, 0);
    const dnnl_memory_desc_t *dst_md = dnnl_primitive_desc_query_md(s->fpd, dnnl_query_dst_md, 0);
    if (reorder_make(t, &s->r_w, &w->md, &s->w_md, "linear weights", st) ||
        reorder_make(t, &s->r_src, &x->md, &s->src_md, "linear input (bf16)", st) ||
        tape_mem_create(t, &s->m_src, &s->src_md, st) || tape_mem_create(t, &s->m_w, &s->w_md, st) ||
        tape_mem_create(t, &s->m_b, &b_md, st) || tape_mem_create(t, &s->m_dst, dst_md, st))
        return -1;
    s->dd_md = s->bf16 ? conv_bf16_md(dst_md) : *dst_md;
    if (reorder_make(t, &s->r_dd, dst_md, &s->dd_md, "linear output gradient (bf16)", st) ||
        tape_mem_create(t, &s->m_dd, &s->dd_md, st))
        return -1;
    out->ndim = 2;
    out->dims[0] = dd[0];
    out->dims[1] = dd[1];
    out->dims[2] = out->dims[3] = 1;
    out->md = *dst_md;
    return 0;
}

static int linear_forward_run(cc_tape *t, cc_node *n, cc_status *st)
{
    linear_state *s = n->state;
    cc_tensor *x = n->in[0], *w = n->in[1];
    s->w_buf = w->data;
    if (s->r_w.needed) {
        s->w_buf = tape_alloc(t, dnnl_memory_desc_get_size(&s->w_md), st);
        if (!s->w_buf || reorder_run(t, &s->r_w, w->data, s->w_buf, "linear weights", st))
            return -1;
    }
    s->src_buf = x->data;
    if (s->r_src.needed &&
        (!(s->src_buf = tape_alloc(t, dnnl_memory_desc_get_size(&s->src_md), st)) ||
         reorder_run(t, &s->r_src, x->data, s->src_buf, "linear input (bf16)", st)))
        return -1;
    const dnnl_memory_t m[4] = {s->m_src, s->m_w, s->m_dst, s->m_b};
    void *const buf[4] = {s->src_buf, s->w_buf, n->out->data,
                          n->args.i[0] ? n->in[2]->data : NULL};
    return op_exec_weighted(t, s->fwd, s->fscr, m, buf, "linear forward", st);
}

static int linear_make_bwd_data(cc_tape *t, cc_node *n, linear_state *s, cc_status *st)
{
    const cc_tensor *x = n->in[0];
    dnnl_inner_product_desc_t ipd;
    DNNL_TRY(st, "linear", "backward-data descriptor",
             dnnl_inner_product_backward_data_desc_init(&ipd, &x->md, &s->w_md, &s->dd_md));
    if (tape_prim_make(t, &ipd, s->fpd, &s->bdpd, &s->bwd_data, &s->bdscr, "linear",
                       "backward-data descriptor", st))
        return -1;
    return tape_mem_create(t, &s->m_dsrc, &x->md, st);
}

static int linear_make_bwd_weights(cc_tape *t, cc_node *n, linear_state *s, cc_status *st)
{
    const cc_tensor *w = n->in[1];
    dnnl_dims_t wd = {w->dims[0], w->dims[1]};
    dnnl_dims_t bd = {w->dims[0]};
    dnnl_memory_desc_t w_any, b_md;
    DNNL_TRY(st, "linear", "md", dnnl_memory_desc_init_by_tag(&w_any, 2, wd, dnnl_f32, dnnl_format_tag_any));
    DNNL_TRY(st, "linear", "md", dnnl_memory_desc_init_by_tag(&b_md, 1, bd, dnnl_f32, dnnl_a));
    dnnl_inner_product_desc_t ipd;
    /* the gradient in the forward's weight layout (plain when it is); in
     * bf16 the gradient is fp32 */
    const dnnl_memory_desc_t w_plain = s->bf16 ? conv_bf16_md(&w->md) : w->md;
    const int plain = dnnl_memory_desc_equal(&s->w_md, &w_plain);
    DNNL_TRY(st, "linear", "backward-weights descriptor",
             dnnl_inner_product_backward_weights_desc_init(
                 &ipd, &s->src_md, plain ? &w->md : &w_any,
                 n->args.i[0] ? &b_md : NULL, &s->dd_md));
    if (tape_prim_make(t, &ipd, s->fpd, &s->bwpd, &s->bwd_w, &s->bwscr, "linear",
                       "backward-weights descriptor", st))
        return -1;
    s->dw_md = *dnnl_primitive_desc_query_md(s->bwpd, dnnl_query_diff_weights_md, 0);
    return reorder_make(t, &s->r_dw, &s->dw_md, &w->md, "linear weight gradient", st) ||
           tape_mem_create(t, &s->m_dw, &s->dw_md, st) || tape_mem_create(t, &s->m_db, &b_md, st);
}

static int linear_backward_run(cc_tape *t, cc_node *n, cc_status *st)
{
    linear_state *s = n->state;
    cc_tensor *x = n->in[0], *w = n->in[1], *b = n->args.i[0] ? n->in[2] : NULL;
    void *dd = n->out->grad;       /* diff_dst shares dst's layout (bf16 in bf16) */
    if (s->r_dd.needed &&
        (!(dd = tape_alloc(t, dnnl_memory_desc_get_size(&s->dd_md), st)) ||
         reorder_run(t, &s->r_dd, n->out->grad, dd, "linear output gradient (bf16)", st)))
        return -1;
    mem_bind(s->m_dd, dd);

    if (x->requires_grad) {
        if (!s->bwd_data && linear_make_bwd_data(t, n, s, st)) return -1;
        float *gx = tape_grad_begin(t, x, st);
        if (!gx) return -1;
        mem_bind(s->m_w, s->w_buf);
        mem_bind(s->m_dsrc, gx);
        dnnl_exec_arg_t a[3] = {{DNNL_ARG_DIFF_DST, s->m_dd}, {DNNL_ARG_WEIGHTS, s->m_w},
                                {DNNL_ARG_DIFF_SRC, s->m_dsrc}};
        if (tape_exec(t, s->bwd_data, s->bdscr, 3, a, "linear backward-data", st)) return -1;
        tape_grad_end(t, x, gx);
    }
    if (w->requires_grad || (b && b->requires_grad)) {
        if (!s->bwd_w && linear_make_bwd_weights(t, n, s, st)) return -1;
        /* oneDNN computes both; gradients that are not wanted go to scratch. */
        float *gw = w->requires_grad ? tape_grad_begin(t, w, st) : NULL;
        if (w->requires_grad && !gw) return -1;
        float *dw = gw && !s->r_dw.needed ? gw : tape_alloc(t, dnnl_memory_desc_get_size(&s->dw_md), st);
        if (!dw) return -1;
        mem_bind(s->m_src, s->src_buf);
        mem_bind(s->m_dw, dw);
        dnnl_exec_arg_t a[4] = {{DNNL_ARG_SRC, s->m_src}, {DNNL_ARG_DIFF_DST, s->m_dd},
                                {DNNL_ARG_DIFF_WEIGHTS, s->m_dw}, {DNNL_ARG_DIFF_BIAS, s->m_db}};
        if (op_exec_weights_grad(t, s->bwd_w, s->bwscr, a, s->m_db, w, b, gw, dw, &s->r_dw,
                                 "linear backward-weights", "linear weight gradient", st))
            return -1;
    }
    return 0;
}

/* A small layer (s->serial) runs with OpenMP capped at one thread; the
 * team size is restored after.  Ops run outside any parallel region. */
static int linear_run(int (*run)(cc_tape *, cc_node *, cc_status *), cc_tape *t, cc_node *n,
                      cc_status *st)
{
    const linear_state *s = n->state;
    const int nt = omp_get_max_threads();
    if (!s->serial || nt <= 1) return run(t, n, st);
    omp_set_num_threads(1);
    const int rc = run(t, n, st);
    omp_set_num_threads(nt);
    return rc;
}

static int linear_forward(cc_tape *t, cc_node *n, cc_status *st)
{
    return linear_run(linear_forward_run, t, n, st);
}

static int linear_backward(cc_tape *t, cc_node *n, cc_status *st)
{
    return linear_run(linear_backward_run, t, n, st);
}

/* n*in*out. */
static int64_t linear_macs(const cc_node *n)
{
    const cc_tensor *w = n->in[1];
    return n->out->dims[0] * w->dims[0] * w->dims[1];
}

const cc_op_def op_def_linear = {"linear", OPK_LINEAR, linear_infer, linear_forward,
                                 linear_backward, linear_free, linear_macs};

cc_tensor *op_linear(cc_tape *t, cc_tensor *x, cc_tensor *w, cc_tensor *b)
{
    cc_op_args a;
    memset(&a, 0, sizeof a);
    a.i[0] = b != NULL;
    cc_tensor *in[3] = {x, w, b};
    return tape_record(t, OP_linear, in, b ? 3 : 2, &a);
}
