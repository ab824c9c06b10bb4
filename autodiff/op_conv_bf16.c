/* op_conv_bf16.c - see conv_bf16.h.
 *
 * Layouts: every descriptor is `any`, so oneDNN picks its blocked bf16
 * layouts (nChw16c, OIhw16i16o-like weights); the output stays in the f32
 * layout the forward primitive chose, for the ops downstream.  Reorders
 * (f32 -> bf16 casts fused with layout changes) are built once per shape
 * and run per step into the tape's arena: no allocation in steady state.
 * Backward primitives are built on first use, as in op_conv.c.
 */
#include "autodiff/conv_bf16.h"

#include <stdlib.h>
#include <string.h>

struct conv_bf16 {
    dnnl_primitive_desc_t fpd, bdpd, bwpd;
    dnnl_primitive_t fwd, bwd_data, bwd_w;
    dnnl_memory_t fscr, bdscr, bwscr;
    dnnl_memory_t m_src, m_w, m_b, m_dst, m_dd, m_dsrc, m_bdw, m_bwsrc, m_dw, m_db, m_dd32;
    cc_reorder r_src, r_w, r_dd, r_dsrc, r_bdw, r_bwsrc, r_dw;
    dnnl_memory_desc_t src_md, w_md, dd_md, dsrc_md, bdw_md, bwsrc_md, dw_md;
    void *src_buf;              /* this step's bf16 input (kept for backward) */
    int bw_f32;                 /* weight gradient in fp32 (bf16 has only a reference kernel) */
};

void conv_bf16_free(conv_bf16 *s)
{
    if (!s) return;
    dnnl_primitive_desc_t pds[] = {s->fpd, s->bdpd, s->bwpd};
    dnnl_primitive_t prims[] = {s->fwd, s->bwd_data, s->bwd_w};
    dnnl_memory_t mems[] = {s->fscr, s->bdscr, s->bwscr, s->m_src, s->m_w, s->m_b, s->m_dst,
                            s->m_dd, s->m_dsrc, s->m_bdw, s->m_bwsrc, s->m_dw, s->m_db,
                            s->m_dd32};
    for (size_t i = 0; i < 3; i++) {
        if (prims[i]) dnnl_primitive_destroy(prims[i]);
        if (pds[i]) dnnl_primitive_desc_destroy(pds[i]);
    }
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        if (mems[i]) dnnl_memory_destroy(mems[i]);
    cc_reorder *rs[] = {&s->r_src, &s->r_w, &s->r_dd, &s->r_dsrc, &s->r_bdw, &s->r_bwsrc, &s->r_dw};
    for (size_t i = 0; i < sizeof rs / sizeof rs[0]; i++) reorder_free(rs[i]);
    free(s);
}

dnnl_memory_desc_t conv_bf16_md(const dnnl_memory_desc_t *f32_md)
{
    dnnl_memory_desc_t md = *f32_md;
    md.data_type = dnnl_bf16;
    return md;
}

static void geometry(const cc_node *n, dnnl_dims_t strides, dnnl_dims_t pads)
{
    strides[0] = strides[1] = n->args.i[0];
    pads[0] = pads[1] = n->args.i[1];
}

static int md_any(dnnl_memory_desc_t *md, const int64_t *d, dnnl_data_type_t dt, cc_status *st)
{
    dnnl_dims_t dd = {d[0], d[1], d[2], d[3]};
    DNNL_TRY(st, "conv2d", "md", dnnl_memory_desc_init_by_tag(md, 4, dd, dt, dnnl_format_tag_any));
    return 0;
}

/* A primitive descriptor for cd with the tape's attributes; NULL with
 * *ref = 1 when only a reference kernel exists. */
static int pd_make(cc_tape *t, const void *cd, const_dnnl_primitive_desc_t hint,
                   dnnl_primitive_desc_t *pd, int *ref, const char *what, cc_status *st)
{
    dnnl_status_t e = tape_pd_create(t, pd, cd, hint);
    if (e != dnnl_success) {
        *pd = NULL;
        if (e == dnnl_unimplemented && ref) return *ref = 1, 0;
        return op_dnnl_fail(st, "conv2d (bf16)", what, e);
    }
    if (ref && op_pd_is_ref(*pd)) {
        dnnl_primitive_desc_destroy(*pd);
        *pd = NULL;
        *ref = 1;
    }
    return 0;
}

int conv_bf16_infer(cc_tape *t, cc_node *n, cc_tensor *out, conv_bf16 **out_state, cc_status *st)
{
    const cc_tensor *x = n->in[0], *w = n->in[1];
    const int stride = n->args.i[0], pad = n->args.i[1], has_bias = n->args.i[2];
    const int64_t k = w->dims[2];
    const int64_t ho = (x->dims[2] + 2 * pad - k) / stride + 1;
    const int64_t wo = (x->dims[3] + 2 * pad - k) / stride + 1;
    const int64_t dd[4] = {x->dims[0], w->dims[0], ho, wo};
    dnnl_memory_desc_t src_any, w_any, dst_any, b_md;
    dnnl_dims_t bd = {w->dims[0]};
    if (md_any(&src_any, x->dims, dnnl_bf16, st) || md_any(&w_any, w->dims, dnnl_bf16, st) ||
        md_any(&dst_any, dd, dnnl_f32, st))
        return -1;
    DNNL_TRY(st, "conv2d", "md", dnnl_memory_desc_init_by_tag(&b_md, 1, bd, dnnl_f32, dnnl_a));
    dnnl_dims_t strides, pads;
    geometry(n, strides, pads);
    dnnl_convolution_desc_t cd;
    DNNL_TRY(st, "conv2d (bf16)", "forward descriptor",
             dnnl_convolution_forward_desc_init(
                 &cd, t->training ? dnnl_forward_training : dnnl_forward_inference,
                 dnnl_convolution_direct, &src_any, &w_any, has_bias ? &b_md : NULL, &dst_any,
                 strides, pads, pads));
    dnnl_primitive_desc_t fpd;
    int ref = 0;
    if (pd_make(t, &cd, NULL, &fpd, &ref, "forward primitive descriptor", st)) return -1;
    if (ref) return 1;
    conv_bf16 *s = calloc(1, sizeof *s);
    if (!s) {
        dnnl_primitive_desc_destroy(fpd);
        return status_set(st, "conv2d: out of memory");
    }
    *out_state = s;
    s->fpd = fpd;
    if (tape_prim_create(t, s->fpd, &s->fwd, &s->fscr, "conv2d (bf16)", st)) return -1;
    s->src_md = *dnnl_primitive_desc_query_md(s->fpd, dnnl_query_src_md, 0);
    s->w_md = *dnnl_primitive_desc_query_md(s->fpd, dnnl_query_weights_md, 0);
    const dnnl_memory_desc_t *dst_md = dnnl_primitive_desc_query_md(s->fpd, dnnl_query_dst_md, 0);
    if (reorder_make(t, &s->r_src, &x->md, &s->src_md, "conv2d input (bf16)", st) ||
        reorder_make(t, &s->r_w, &w->md, &s->w_md, "conv2d weights (bf16)", st) ||
        tape_mem_create(t, &s->m_src, &s->src_md, st) || tape_mem_create(t, &s->m_w, &s->w_md, st) ||
        tape_mem_create(t, &s->m_b, &b_md, st) || tape_mem_create(t, &s->m_dst, dst_md, st))
        return -1;
    out->ndim = 4;
    for (int i = 0; i < 4; i++) out->dims[i] = dd[i];
    out->md = *dst_md;
    return 0;
}

int conv_bf16_forward(cc_tape *t, cc_node *n, conv_bf16 *s, cc_status *st)
{
    cc_tensor *x = n->in[0], *w = n->in[1];
    void *wb = tape_alloc(t, dnnl_memory_desc_get_size(&s->w_md), st);
    s->src_buf = tape_alloc(t, dnnl_memory_desc_get_size(&s->src_md), st);
    if (!wb || !s->src_buf ||
        reorder_run(t, &s->r_src, x->data, s->src_buf, "conv2d input (bf16)", st) ||
        reorder_run(t, &s->r_w, w->data, wb, "conv2d weights (bf16)", st))
        return -1;
    const dnnl_memory_t m[4] = {s->m_src, s->m_w, s->m_dst, s->m_b};
    void *const buf[4] = {s->src_buf, wb, n->out->data, n->args.i[2] ? n->in[2]->data : NULL};
    return op_exec_weighted(t, s->fwd, s->fscr, m, buf, "conv2d forward (bf16)", st);
}

/* The output gradient's bf16 twin, shared by both backward primitives. */
static int make_dd(cc_tape *t, cc_node *n, conv_bf16 *s, cc_status *st)
{
    s->dd_md = conv_bf16_md(&n->out->md);
    return reorder_make(t, &s->r_dd, &n->out->md, &s->dd_md, "conv2d output gradient (bf16)", st) ||
           tape_mem_create(t, &s->m_dd, &s->dd_md, st);
}

static int make_bwd_data(cc_tape *t, cc_node *n, conv_bf16 *s, cc_status *st)
{
    const cc_tensor *x = n->in[0], *w = n->in[1];
    dnnl_memory_desc_t dsrc_any, w_any;
    if (md_any(&dsrc_any, x->dims, dnnl_f32, st) || md_any(&w_any, w->dims, dnnl_bf16, st))
        return -1;
    dnnl_dims_t strides, pads;
    geometry(n, strides, pads);
    dnnl_convolution_desc_t cd;
    DNNL_TRY(st, "conv2d (bf16)", "backward-data descriptor",
             dnnl_convolution_backward_data_desc_init(&cd, dnnl_convolution_direct, &dsrc_any,
                                                      &w_any, &s->dd_md, strides, pads, pads));
    if (pd_make(t, &cd, s->fpd, &s->bdpd, NULL, "backward-data descriptor", st) ||
        tape_prim_create(t, s->bdpd, &s->bwd_data, &s->bdscr, "conv2d (bf16)", st))
        return -1;
    s->dsrc_md = *dnnl_primitive_desc_query_md(s->bdpd, dnnl_query_diff_src_md, 0);
    s->bdw_md = *dnnl_primitive_desc_query_md(s->bdpd, dnnl_query_weights_md, 0);
    return reorder_make(t, &s->r_dsrc, &s->dsrc_md, &x->md, "conv2d input gradient", st) ||
           reorder_make(t, &s->r_bdw, &w->md, &s->bdw_md, "conv2d weights (bf16, backward)", st) ||
           tape_mem_create(t, &s->m_bdw, &s->bdw_md, st) ||
           tape_mem_create(t, &s->m_dsrc, &s->dsrc_md, st);
}

/* The weight-gradient primitive: bf16 src and output gradient, fp32
 * weight gradient; where bf16 has only oneDNN's reference kernel (e.g. a
 * 1 -> 1 channel conv), all fp32 from the fp32 input and output gradient
 * (both still on the tape), ~100x faster than the reference. */
static int make_bwd_weights(cc_tape *t, cc_node *n, conv_bf16 *s, cc_status *st)
{
    const cc_tensor *x = n->in[0], *w = n->in[1];
    dnnl_memory_desc_t src_any, w_any, b_md;
    dnnl_dims_t bd = {w->dims[0]};
    DNNL_TRY(st, "conv2d", "md", dnnl_memory_desc_init_by_tag(&b_md, 1, bd, dnnl_f32, dnnl_a));
    dnnl_dims_t strides, pads;
    geometry(n, strides, pads);
    for (int f32 = 0; f32 < 2 && !s->bwpd; f32++) {
        if (md_any(&src_any, x->dims, dnnl_bf16, st) || md_any(&w_any, w->dims, dnnl_f32, st))
            return -1;
        if (f32) src_any = x->md;   /* `any` here can land on the reference kernel */
        dnnl_convolution_desc_t cd;
        DNNL_TRY(st, "conv2d (bf16)", "backward-weights descriptor",
                 dnnl_convolution_backward_weights_desc_init(
                     &cd, dnnl_convolution_direct, &src_any, &w_any, n->args.i[2] ? &b_md : NULL,
                     f32 ? &n->out->md : &s->dd_md, strides, pads, pads));
        int ref = 0;
        if (pd_make(t, &cd, f32 ? NULL : s->fpd, &s->bwpd, f32 ? NULL : &ref,
                    "backward-weights descriptor", st))
            return -1;
        s->bw_f32 = f32;
    }
    if (tape_prim_create(t, s->bwpd, &s->bwd_w, &s->bwscr, "conv2d (bf16)", st)) return -1;
    s->dw_md = *dnnl_primitive_desc_query_md(s->bwpd, dnnl_query_diff_weights_md, 0);
    s->bwsrc_md = *dnnl_primitive_desc_query_md(s->bwpd, dnnl_query_src_md, 0);
    return reorder_make(t, &s->r_dw, &s->dw_md, &w->md, "conv2d weight gradient", st) ||
           reorder_make(t, &s->r_bwsrc, s->bw_f32 ? &x->md : &s->src_md, &s->bwsrc_md,
                        "conv2d input (weights)", st) ||
           tape_mem_create(t, &s->m_bwsrc, &s->bwsrc_md, st) ||
           tape_mem_create(t, &s->m_dd32, &n->out->md, st) ||
           tape_mem_create(t, &s->m_dw, &s->dw_md, st) || tape_mem_create(t, &s->m_db, &b_md, st);
}

int conv_bf16_backward(cc_tape *t, cc_node *n, conv_bf16 *s, cc_status *st)
{
    cc_tensor *x = n->in[0], *w = n->in[1], *b = n->args.i[2] ? n->in[2] : NULL;
    const int want_w = w->requires_grad || (b && b->requires_grad);
    if (!x->requires_grad && !want_w) return 0;
    if (!s->m_dd && make_dd(t, n, s, st)) return -1;
    void *ddb = tape_alloc(t, dnnl_memory_desc_get_size(&s->dd_md), st);
    if (!ddb || reorder_run(t, &s->r_dd, n->out->grad, ddb, "conv2d output gradient (bf16)", st))
        return -1;
    mem_bind(s->m_dd, ddb);

    if (x->requires_grad) {
        if (!s->bwd_data && make_bwd_data(t, n, s, st)) return -1;
        float *gx = tape_grad_begin(t, x, st);
        if (!gx) return -1;
        float *dsrc = gx;
        if (s->r_dsrc.needed && !(dsrc = tape_alloc(t, dnnl_memory_desc_get_size(&s->dsrc_md), st)))
            return -1;
        void *bdw = tape_alloc(t, dnnl_memory_desc_get_size(&s->bdw_md), st);
        if (!bdw || reorder_run(t, &s->r_bdw, w->data, bdw, "conv2d weights (bf16, backward)", st))
            return -1;
        mem_bind(s->m_bdw, bdw);
        mem_bind(s->m_dsrc, dsrc);
        dnnl_exec_arg_t a[3] = {{DNNL_ARG_DIFF_DST, s->m_dd}, {DNNL_ARG_WEIGHTS, s->m_bdw},
                                {DNNL_ARG_DIFF_SRC, s->m_dsrc}};
        if (tape_exec(t, s->bwd_data, s->bdscr, 3, a, "conv2d backward-data (bf16)", st) ||
            reorder_run(t, &s->r_dsrc, dsrc, gx, "conv2d input gradient", st))
            return -1;
        tape_grad_end(t, x, gx);
    }
    if (want_w) {
        if (!s->bwd_w && make_bwd_weights(t, n, s, st)) return -1;
        /* oneDNN computes both; gradients that are not wanted go to scratch. */
        float *gw = w->requires_grad ? tape_grad_begin(t, w, st) : NULL;
        float *dw = gw && !s->r_dw.needed ? gw
                                          : tape_alloc(t, dnnl_memory_desc_get_size(&s->dw_md), st);
        if (!dw || (w->requires_grad && !gw)) return -1;
        const void *src = s->bw_f32 ? (const void *)x->data : s->src_buf;
        void *bwsrc = (void *)src;
        if (s->r_bwsrc.needed &&
            (!(bwsrc = tape_alloc(t, dnnl_memory_desc_get_size(&s->bwsrc_md), st)) ||
             reorder_run(t, &s->r_bwsrc, src, bwsrc, "conv2d input (weights)", st)))
            return -1;
        mem_bind(s->m_bwsrc, bwsrc);
        mem_bind(s->m_dw, dw);
        mem_bind(s->m_dd32, n->out->grad);
        dnnl_exec_arg_t a[4] = {{DNNL_ARG_SRC, s->m_bwsrc},
                                {DNNL_ARG_DIFF_DST, s->bw_f32 ? s->m_dd32 : s->m_dd},
                                {DNNL_ARG_DIFF_WEIGHTS, s->m_dw}, {DNNL_ARG_DIFF_BIAS, s->m_db}};
        if (op_exec_weights_grad(t, s->bwd_w, s->bwscr, a, s->m_db, w, b, gw, dw, &s->r_dw,
                                 "conv2d backward-weights (bf16)", "conv2d weight gradient", st))
            return -1;
    }
    return 0;
}
