/* op_conv.c - 2-D convolution on oneDNN.
 *
 * args: i[0] stride, i[1] pad, i[2] has_bias, i[3] frozen BN + LeakyReLU
 * folded in (f[0] BN eps, f[1] slope).  in: x, w[, b]; folded: x, w,
 * gamma, beta, run_mean, run_var[, b].
 * The primitive picks its preferred layouts (format `any`): the output stays
 * in that (usually blocked) layout for the next op; the input is reordered
 * only if it arrives in another layout; the plain PyTorch-shaped weights in
 * the parameter slab are reordered to the primitive's layout once per step,
 * and the weight gradient back to plain.  Backward primitives are built on
 * first use, so inference and frozen layers never pay for them.
 *
 * 3x3 / stride 1 / pad 1 convolutions with at least 16 input and output
 * channels (multiples of 8) run on our Winograd F(4x4,3x3) kernels instead
 * (conv_wino.h: 4x fewer multiply-adds; oneDNN 2.6 has Winograd only for
 * AVX-512).  Their output is nChw8c (aBcd8b), the layout oneDNN's AVX2
 * kernels pick, and they take plain or nChw8c inputs as they are.  3x3 /
 * stride 1 / pad 1 convolutions to ONE output channel (the FPN heads' last
 * layers) run on a direct C kernel (oneDNN's crawls there); its output
 * keeps oneDNN's nChw8c layout so the graph downstream is unchanged.
 * Environment, for comparisons and tests: CC_CONV_ONEDNN=1 runs every conv
 * on oneDNN, CC_CONV_WINOGRAD=0 turns Winograd off, CC_CONV_SINGLE=0 the
 * one-channel kernel, CC_CONV_OWN=1 uses our kernels for eligible shapes
 * however small (see conv_own_size_ok).
 *
 * Folded (op_conv2d_bn_lrelu_eval, inference tapes only): conv -> batch
 * norm on its running statistics -> LeakyReLU as one convolution, with
 * w' = w s and b' = (b - mean) s + beta per output channel,
 * s = gamma / sqrt(var + eps), and the LeakyReLU as oneDNN's eltwise post-op
 * (relu with alpha = slope) or in the Winograd output transform.  No BN
 * pass, no activation pass.  The folded weights are recomputed every step,
 * or once under tape_fix_weights().
 *
 * bf16 precision (ctx_set_precision): every convolution runs on oneDNN's
 * bf16 primitives (op_conv_bf16.c, conv_bf16.h for the numerics), except
 * shapes for which oneDNN has only a reference bf16 kernel (fp32 then).
 */
#include "autodiff/conv_bf16.h"
#include "autodiff/conv_wgrad.h"
#include "autodiff/conv_wino.h"
#include "autodiff/op.h"
#include "autodiff/ops.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

typedef struct conv_state {
    dnnl_primitive_desc_t fpd, bdpd, bwpd;
    dnnl_primitive_t fwd, bwd_data, bwd_w;
    dnnl_memory_t fscr, bdscr, bwscr;
    dnnl_memory_t m_src, m_w, m_b, m_dst, m_dsrc, m_dw, m_db, m_bwsrc;
    cc_reorder r_src, r_w, r_dsrc, r_dw, r_bwsrc, r_bdw;
    dnnl_memory_desc_t src_md, w_md, dw_md, dsrc_md, bwsrc_md, bdw_md;
    dnnl_memory_t m_bdw;
    dnnl_memory_t m_bwdst;      /* diff_dst in the backward-weights kernel's layout */
    cc_reorder r_bwdst;
    dnnl_memory_desc_t bwdst_md;
    float *src_buf, *w_buf;     /* this step's reordered input / weights */
    /* tape_fix_weights(): the weights of parameter w_kept_src under tape
     * generation w_kept_gen, ready for the kernel (conv_kept_weights:
     * reordered to w_md, or Winograd's U; allocated once, freed with the
     * state) */
    float *w_kept;
    const float *w_kept_src;
    uint64_t w_kept_gen;
    /* folded BN (i[3]): w' and b' (malloc'd once in infer), and the
     * parameters and tape generation they were folded from (fold_src[0]
     * NULL: fold again) */
    float *wf, *bfold;
    const float *fold_src[6];
    uint64_t fold_gen;
    int wino;                   /* Winograd path: no oneDNN convolution */
    int single;                 /* one-output-channel C kernel (same fields) */
    wino_geom wg, wgt;          /* forward and backward-data geometry */
    wino_layout lsrc, ldst, ldx;    /* src as used, dst, and x's own layout */
    conv_bf16 *bf;              /* bf16 precision: everything runs there */
    int bw_made;                /* the weight gradient's primitives exist */
    conv_wgrad *bw_pieces;      /* the weight gradient in pieces of the batch, or NULL */
} conv_state;

static void conv_free(void *p)
{
    conv_state *s = p;
    if (!s) return;
    dnnl_primitive_desc_t pds[] = {s->fpd, s->bdpd, s->bwpd};
    dnnl_primitive_t prims[] = {s->fwd, s->bwd_data, s->bwd_w};
    dnnl_memory_t mems[] = {s->fscr, s->bdscr, s->bwscr, s->m_src, s->m_w, s->m_b,
                            s->m_dst, s->m_dsrc, s->m_dw, s->m_db};
    for (size_t i = 0; i < 3; i++) {
        if (prims[i]) dnnl_primitive_destroy(prims[i]);
        if (pds[i]) dnnl_primitive_desc_destroy(pds[i]);
    }
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        if (mems[i]) dnnl_memory_destroy(mems[i]);
    reorder_free(&s->r_src);
    reorder_free(&s->r_w);
    reorder_free(&s->r_dsrc);
    reorder_free(&s->r_dw);
    reorder_free(&s->r_bwsrc);
    reorder_free(&s->r_bdw);
    if (s->m_bwsrc) dnnl_memory_destroy(s->m_bwsrc);
    if (s->m_bdw) dnnl_memory_destroy(s->m_bdw);
    reorder_free(&s->r_bwdst);
    if (s->m_bwdst) dnnl_memory_destroy(s->m_bwdst);
    conv_bf16_free(s->bf);
    conv_wgrad_free(s->bw_pieces);
    free(s->w_kept);
    free(s->wf);
    free(s->bfold);
    free(s);
}

/* The bias input, or NULL: the last input when there is one. */
static cc_tensor *conv_bias(const cc_node *n)
{
    return n->args.i[2] ? n->in[n->n_in - 1] : NULL;
}

static void conv_geometry(const cc_node *n, dnnl_dims_t strides, dnnl_dims_t pads)
{
    strides[0] = strides[1] = n->args.i[0];
    pads[0] = pads[1] = n->args.i[1];
}

/* Grow the tape's shared scratchpad (also oneDNN's user scratchpad: both
 * are only used inside one op's execution) to at least `need` bytes. */
static int scratch_reserve(cc_tape *t, size_t need, cc_status *st)
{
    if (need <= t->scratch_size) return 0;
    ctx_release(t->ctx, t->scratch, t->scratch_size);
    t->scratch = ctx_alloc(t->ctx, need, st);
    t->scratch_size = t->scratch ? need : 0;
    return t->scratch ? 0 : -1;
}

static int env_is(const char *name, const char *value)
{
    const char *e = getenv(name);
    return e && !strcmp(e, value);
}

/* Our kernels take eligible shapes from a size on: Winograd from 2e7
 * multiply-adds (below, its fixed costs - weight transform, 36 small GEMM
 * calls - do not pay), the one-channel kernel from 2e6 (small models, as in
 * the tests, keep oneDNN's exact numerics).  Environment: CC_CONV_ONEDNN=1
 * never, CC_CONV_OWN=1 at any size (tests), CC_CONV_WINOGRAD=0 no Winograd. */
static int conv_own_size_ok(const cc_tensor *x, const cc_tensor *w, double min_macs)
{
    const double macs = (double)tensor_numel(x) * (double)w->dims[0] * 9.0;
    return env_is("CC_CONV_OWN", "1") || macs >= min_macs;
}

static int conv_single_wanted(const cc_node *n, const cc_tensor *x, const cc_tensor *w,
                              int stride, int pad)
{
    if (n->args.i[3]) return 0;     /* folded BN: oneDNN's post-op does the activation */
    /* On by default again (CC_CONV_SINGLE=0 turns it off): it was opt-in
     * after its input gradient disagreed with a fixed-step finite difference
     * by ~7% in the saliency test, which later turned out to be the float
     * noise of that test's step (issue 10: the AVX-512 oneDNN kernels showed
     * 8% there too); the saliency test now measures its noise and passes with
     * this kernel, and test_ops_conv checks all three of its gradients
     * against a double reference.  FPN inference -5% (Zen 5). */
    return !env_is("CC_CONV_SINGLE", "0") && !env_is("CC_CONV_ONEDNN", "1") &&
           w->dims[0] == 1 && w->dims[2] == 3 &&
           stride == 1 && pad == 1 && x->dims[1] % 8 == 0 && x->dtype == CC_F32 &&
           tensor_is_plain(w) && conv_own_size_ok(x, w, 2e6);
}

/* Measured on Zen 5 (docs/PERFORMANCE.md, "Winograd or oneDNN"): where
 * oneDNN runs AVX-512, its direct forward beats our Winograd on small
 * images (the counter's 12x16 and smaller layers: counter inference -20%),
 * while in training the Winograd gradients still win at those sizes, and on
 * AVX2 Winograd wins everywhere.  So inference tapes leave images under
 * 16x16 to oneDNN there (CC_CONV_OWN=1, the tests' switch, overrides).
 * Except on fixed weights (tape_fix_weights before the first step): the
 * Winograd weights are then transformed once, not every step, and that
 * transform was most of Winograd's cost at those sizes (counter inference
 * 70 -> 55 ms, Zen 5, 1 thread; docs/PERFORMANCE.md). */
#define CONV_WINO_INFER_MIN_HW 256
/* Training, same CPUs: the weight transform (twice a step: forward and
 * backward data) costs in proportion to cin x cout, and so do the products
 * each 4x4 tile saves, so whether Winograd pays is a question of the tile
 * count, whatever the channels.  Measured (Zen 5, 1 thread): the counter's
 * 512-channel 6x8 layers at batch 5 (20 tiles) are faster on oneDNN
 * (training step -5%); at the quickstart's batch 32 (3x4: 32 tiles, 6x8:
 * 128) Winograd still wins. */
#define CONV_WINO_MIN_TILES 24

static int conv_wino_wanted(const cc_tape *t, const cc_tensor *x, const cc_tensor *w,
                            int stride, int pad)
{
    if (env_is("CC_CONV_WINOGRAD", "0") || env_is("CC_CONV_ONEDNN", "1")) return 0;
    const int64_t tiles = x->dims[0] * ((x->dims[2] + 3) / 4) * ((x->dims[3] + 3) / 4);
    if (t->ctx->dnnl_avx512 && !t->weights_fixed && !env_is("CC_CONV_OWN", "1") &&
        ((!t->training && x->dims[2] * x->dims[3] < CONV_WINO_INFER_MIN_HW) ||
         tiles < CONV_WINO_MIN_TILES))
        return 0;
    return w->dims[2] == 3 && stride == 1 && pad == 1 && x->dims[1] % 8 == 0 &&
           w->dims[0] % 8 == 0 && x->dims[1] >= 16 && w->dims[0] >= 16 && x->dtype == CC_F32 &&
           tensor_is_plain(w) && conv_own_size_ok(x, w, 2e7);
}

/* The C kernels' state (Winograd, or one output channel): layouts,
 * geometry, scratch, input reorder. */
static int conv_wino_infer(cc_tape *t, cc_node *n, conv_state *s, const dnnl_dims_t dd,
                           int single, cc_tensor *out, cc_status *st)
{
    const cc_tensor *x = n->in[0];
    dnnl_memory_desc_t dst_md;
    DNNL_TRY(st, "conv2d", "md",
             dnnl_memory_desc_init_by_tag(&dst_md, 4, dd, dnnl_f32, dnnl_aBcd8b));
    s->src_md = x->md;
    if (!wino_layout_get(&x->md, &s->ldx)) {
        dnnl_dims_t sd = {x->dims[0], x->dims[1], x->dims[2], x->dims[3]};
        DNNL_TRY(st, "conv2d", "md",
                 dnnl_memory_desc_init_by_tag(&s->src_md, 4, sd, dnnl_f32, dnnl_aBcd8b));
        wino_layout_get(&s->src_md, &s->ldx);
        /* the input gradient is computed in src_md and reordered to x's layout */
        if (reorder_make(t, &s->r_dsrc, &s->src_md, &x->md, "conv2d input gradient", st))
            return -1;
    }
    s->lsrc = s->ldx;
    if (single) {   /* aBcd8b with one channel: wino_layout_get wants 8k channels */
        const dnnl_blocking_desc_t *bk = &dst_md.format_desc.blocking;
        s->ldst.sn = bk->strides[0], s->ldst.scb = bk->strides[1], s->ldst.sc = 1;
        s->ldst.sh = bk->strides[2], s->ldst.sw = bk->strides[3];
    } else if (!wino_layout_get(&dst_md, &s->ldst)) {
        return status_set(st, "conv2d: internal error: unsupported Winograd output layout");
    }
    if (reorder_make(t, &s->r_src, &x->md, &s->src_md, "conv2d input", st)) return -1;
    wino_geom_init(&s->wg, x->dims[0], x->dims[1], dd[1], dd[2], dd[3]);
    wino_geom_init(&s->wgt, x->dims[0], dd[1], x->dims[1], dd[2], dd[3]);
    /* our kernels' variant for this CPU (and its chunk sizes) */
    wino_geom_set_isa(&s->wg, t->ctx->isa);
    wino_geom_set_isa(&s->wgt, t->ctx->isa);
    s->wgt.chunk = s->wg.chunk;     /* same scratch split both ways */
    s->wgt.chunk_fw = s->wg.chunk_fw;
    const size_t need = single ? conv1_scratch_floats(&s->wg, omp_get_max_threads())
                               : wino_scratch_floats(&s->wg, omp_get_max_threads());
    if (scratch_reserve(t, sizeof(float) * need, st)) return -1;
    s->wino = !single;
    s->single = single;
    out->ndim = 4;
    for (int i = 0; i < 4; i++) out->dims[i] = dd[i];
    out->md = dst_md;
    return 0;
}

/* The folded forward: LeakyReLU as an eltwise post-op (oneDNN's relu with
 * a negative slope alpha). */
static int conv_make_folded_pd(cc_tape *t, const cc_node *n, const dnnl_convolution_desc_t *cd,
                               conv_state *s, cc_status *st)
{
    dnnl_primitive_attr_t attr = tape_attr_new();
    dnnl_post_ops_t po = NULL;
    dnnl_status_t e = attr ? dnnl_post_ops_create(&po) : dnnl_out_of_memory;
    if (e == dnnl_success) e = dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu,
                                                             n->args.f[1], 0.0f);
    if (e == dnnl_success) e = dnnl_primitive_attr_set_post_ops(attr, po);
    if (e == dnnl_success) e = dnnl_primitive_desc_create(&s->fpd, cd, attr, t->ctx->engine, NULL);
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (e != dnnl_success)
        return op_dnnl_fail(st, "conv2d_bn_lrelu_eval", "forward primitive descriptor", e);
    return tape_prim_create(t, s->fpd, &s->fwd, &s->fscr, "conv2d_bn_lrelu_eval", st);
}

/* w' = w s, b' = (b - mean) s + beta, s = gamma / sqrt(var + eps), into
 * s->wf / s->bfold; skipped when the same parameters were folded under the
 * current tape_fix_weights() generation.  Returns 1 when it folded. */
static int conv_fold(cc_tape *t, const cc_node *n, conv_state *s)
{
    const cc_tensor *w = n->in[1], *b = conv_bias(n);
    const float *src[6] = {w->data, n->in[2]->data, n->in[3]->data, n->in[4]->data,
                           n->in[5]->data, b ? b->data : NULL};
    int params = 1;
    for (int i = 1; i < n->n_in; i++) params &= n->in[i]->is_param;
    if (t->weights_fixed && params && s->fold_gen == t->weights_gen &&
        !memcmp(src, s->fold_src, sizeof src))
        return 0;
    const int64_t co = w->dims[0], per = tensor_numel(w) / co;
    const float eps = n->args.f[0];
    for (int64_t o = 0; o < co; o++) {
        const double sc = (double)src[1][o] / sqrt((double)src[4][o] + (double)eps);
        for (int64_t i = 0; i < per; i++) s->wf[o * per + i] = (float)(src[0][o * per + i] * sc);
        s->bfold[o] = (float)(((b ? (double)src[5][o] : 0.0) - src[3][o]) * sc + src[2][o]);
    }
    memset(s->fold_src, 0, sizeof s->fold_src);
    if (t->weights_fixed && params) {
        memcpy(s->fold_src, src, sizeof src);
        s->fold_gen = t->weights_gen;
    }
    return 1;
}

static int conv_infer(cc_tape *t, cc_node *n, cc_tensor *out, cc_status *st)
{
    const cc_tensor *x = n->in[0], *w = n->in[1];
    const int stride = n->args.i[0], pad = n->args.i[1], has_bias = n->args.i[2];
    const int folded = n->args.i[3];
    const cc_tensor *bias = conv_bias(n);
    char a[64], b[64];
    if (folded && t->training)
        return status_set(st, "conv2d_bn_lrelu_eval: inference tapes only (the folded batch "
                              "norm has no gradient)");
    if (x->ndim != 4 || w->ndim != 4)
        return status_set(st, "conv2d: input and weight must be 4-D (got %s and %s)",
                          tensor_shape_str(x, a, sizeof a), tensor_shape_str(w, b, sizeof b));
    if (w->dims[1] != x->dims[1])
        return status_set(st, "conv2d: weight %s expects %lld input channels, input is %s",
                          tensor_shape_str(w, a, sizeof a), (long long)w->dims[1],
                          tensor_shape_str(x, b, sizeof b));
    if (has_bias && (bias->ndim != 1 || bias->dims[0] != w->dims[0]))
        return status_set(st, "conv2d: bias %s does not match weight %s",
                          tensor_shape_str(bias, a, sizeof a), tensor_shape_str(w, b, sizeof b));
    for (int i = 2; folded && i < 6; i++)
        if (n->in[i]->ndim != 1 || n->in[i]->dims[0] != w->dims[0] || !tensor_is_plain(n->in[i]))
            return status_set(st, "conv2d_bn_lrelu_eval: batch-norm %s %s does not match weight %s",
                              i == 2 ? "gamma" : i == 3 ? "beta" : i == 4 ? "mean" : "variance",
                              tensor_shape_str(n->in[i], a, sizeof a),
                              tensor_shape_str(w, b, sizeof b));
    const int64_t k = w->dims[2];
    if (w->dims[3] != k || stride < 1 || pad < 0)
        return status_set(st, "conv2d: only square kernels, stride >= 1, pad >= 0 (weight %s)",
                          tensor_shape_str(w, a, sizeof a));
    const int64_t ho = (x->dims[2] + 2 * pad - k) / stride + 1;
    const int64_t wo = (x->dims[3] + 2 * pad - k) / stride + 1;
    if (ho < 1 || wo < 1)
        return status_set(st, "conv2d: input %s too small for a %lldx%lld kernel",
                          tensor_shape_str(x, a, sizeof a), (long long)k, (long long)k);

    conv_state *s = calloc(1, sizeof *s);
    if (!s) return status_set(st, "conv2d: out of memory");
    n->state = s;
    if (folded && (!(s->wf = malloc(tensor_bytes(w))) ||
                   !(s->bfold = malloc(sizeof(float) * (size_t)w->dims[0]))))
        return status_set(st, "conv2d_bn_lrelu_eval: out of memory for the folded weights");
    dnnl_dims_t sd = {x->dims[0], x->dims[1], x->dims[2], x->dims[3]};
    dnnl_dims_t wd = {w->dims[0], w->dims[1], k, k};
    dnnl_dims_t dd = {x->dims[0], w->dims[0], ho, wo};
    dnnl_dims_t bd = {w->dims[0]};
    /* bf16: fp32 below only where bf16 has just oneDNN's reference kernel
     * (and, as a measurement knob, CC_BF16_WINO=1 keeps the fp32 Winograd
     * path for the shapes it takes: docs/PERFORMANCE.md, bf16) */
    if (t->ctx->bf16 && !folded && !(env_is("CC_BF16_WINO", "1") && conv_wino_wanted(t, x, w, stride, pad))) {
        const int r = conv_bf16_infer(t, n, out, &s->bf, st);
        if (r <= 0) return r;
    }
    if (conv_single_wanted(n, x, w, stride, pad)) return conv_wino_infer(t, n, s, dd, 1, out, st);
    if (conv_wino_wanted(t, x, w, stride, pad)) {
        if (conv_wino_infer(t, n, s, dd, 0, out, st)) return -1;
        s->wg.act = folded;
        s->wg.slope = n->args.f[1];
        return 0;
    }
    dnnl_memory_desc_t src_any, w_any, dst_any, b_md;
    DNNL_TRY(st, "conv2d", "md", dnnl_memory_desc_init_by_tag(&src_any, 4, sd, dnnl_f32, dnnl_format_tag_any));
    DNNL_TRY(st, "conv2d", "md", dnnl_memory_desc_init_by_tag(&w_any, 4, wd, dnnl_f32, dnnl_format_tag_any));
    DNNL_TRY(st, "conv2d", "md", dnnl_memory_desc_init_by_tag(&dst_any, 4, dd, dnnl_f32, dnnl_format_tag_any));
    DNNL_TRY(st, "conv2d", "md", dnnl_memory_desc_init_by_tag(&b_md, 1, bd, dnnl_f32, dnnl_a));
    dnnl_dims_t strides, pads;
    conv_geometry(n, strides, pads);
    dnnl_convolution_desc_t cd;
    DNNL_TRY(st, "conv2d", "forward descriptor",
             dnnl_convolution_forward_desc_init(
                 &cd, t->training ? dnnl_forward_training : dnnl_forward_inference,
                 dnnl_convolution_direct, &src_any, &w_any, has_bias || folded ? &b_md : NULL,
                 &dst_any, strides, pads, pads));
    if (folded) {
        if (conv_make_folded_pd(t, n, &cd, s, st)) return -1;
    } else if (tape_prim_make(t, &cd, NULL, &s->fpd, &s->fwd, &s->fscr, "conv2d",
                              "forward primitive descriptor", st)) {
        return -1;
    }

    s->src_md = *dnnl_primitive_desc_query_md(s->fpd, dnnl_query_src_md, 0);
    s->w_md = *dnnl_primitive_desc_query_md(s->fpd, dnnl_query_weights_md, 0);
    const dnnl_memory_desc_t *dst_md = dnnl_primitive_desc_query_md(s->fpd, dnnl_query_dst_md, 0);
    if (reorder_make(t, &s->r_src, &x->md, &s->src_md, "conv2d input", st) ||
        reorder_make(t, &s->r_w, &w->md, &s->w_md, "conv2d weights", st) ||
        tape_mem_create(t, &s->m_src, &s->src_md, st) || tape_mem_create(t, &s->m_w, &s->w_md, st) ||
        tape_mem_create(t, &s->m_b, &b_md, st) || tape_mem_create(t, &s->m_dst, dst_md, st))
        return -1;
    out->ndim = 4;
    out->dims[0] = dd[0];
    out->dims[1] = dd[1];
    out->dims[2] = dd[2];
    out->dims[3] = dd[3];
    out->md = *dst_md;
    return 0;
}

/* Under tape_fix_weights(): w (a parameter; wsrc its values, or the
 * folded ones) ready for this node's kernel - reordered to w_md for
 * oneDNN, transformed (U) for Winograd - computed once per weights
 * generation and parameter and kept in s->w_kept (only a parameter's
 * address says which weights these are: a tape_input or computed tensor
 * may reuse an arena address).  NULL + status on failure. */
static const float *conv_kept_weights(cc_tape *t, conv_state *s, const cc_tensor *w,
                                      const float *wsrc, cc_status *st)
{
    if (s->w_kept && s->w_kept_gen == t->weights_gen && s->w_kept_src == w->data)
        return s->w_kept;
    const size_t bytes = s->wino ? sizeof(float) * wino_u_floats(&s->wg)
                                 : dnnl_memory_desc_get_size(&s->w_md);
    /* 64-byte aligned: the transform's non-temporal stores need 32 */
    if (!s->w_kept && !(s->w_kept = aligned_alloc(64, (bytes + 63) / 64 * 64))) {
        status_set(st, "conv2d: out of memory for the kept weights");
        return NULL;
    }
    s->w_kept_src = NULL;
    if (s->wino)
        wino_transform_weights(&s->wg, wsrc, 0, s->w_kept);
    else if (reorder_run(t, &s->r_w, wsrc, s->w_kept, "conv2d weights", st))
        return NULL;
    s->w_kept_src = w->data;
    s->w_kept_gen = t->weights_gen;
    return s->w_kept;
}

static int conv_forward(cc_tape *t, cc_node *n, cc_status *st)
{
    conv_state *s = n->state;
    if (s->bf) return conv_bf16_forward(t, n, s->bf, st);
    cc_tensor *x = n->in[0], *w = n->in[1], *bt = conv_bias(n);
    const float *wsrc = w->data, *bias = bt ? bt->data : NULL;
    if (n->args.i[3]) {
        if (conv_fold(t, n, s)) s->w_kept_src = NULL;   /* new values: reorder again */
        wsrc = s->wf;
        bias = s->bfold;
    }
    s->src_buf = x->data;
    if (s->r_src.needed) {
        s->src_buf = tape_alloc(t, dnnl_memory_desc_get_size(&s->src_md), st);
        if (!s->src_buf || reorder_run(t, &s->r_src, x->data, s->src_buf, "conv2d input", st))
            return -1;
    }
    /* inference on fixed weights: weights ready for the kernel, kept */
    const float *kept = NULL;
    if (t->weights_fixed && w->is_param && (s->wino || s->r_w.needed) &&
        !(kept = conv_kept_weights(t, s, w, wsrc, st)))
        return -1;
    if (s->wino) {
        wino_forward(&s->wg, s->src_buf, &s->lsrc, wsrc, kept, 0, bias, n->out->data,
                     &s->ldst, t->scratch);
        return 0;
    }
    if (s->single) {
        conv1_forward(&s->wg, s->src_buf, &s->lsrc, wsrc, bias, n->out->data, &s->ldst,
                      t->scratch);
        return 0;
    }
    s->w_buf = kept ? (float *)kept : (float *)wsrc;
    if (!kept && s->r_w.needed) {
        s->w_buf = tape_alloc(t, dnnl_memory_desc_get_size(&s->w_md), st);
        if (!s->w_buf || reorder_run(t, &s->r_w, wsrc, s->w_buf, "conv2d weights", st))
            return -1;
    }
    const dnnl_memory_t m[4] = {s->m_src, s->m_w, s->m_dst, s->m_b};
    void *const buf[4] = {s->src_buf, s->w_buf, n->out->data, (float *)bias};
    return op_exec_weighted(t, s->fwd, s->fscr, m, buf, "conv2d forward", st);
}

/* Backward primitives are created on first use (see file comment). */
/* The backward primitives choose their own diff_src / src layouts (format
 * `any`): with the forward's layouts a 1-channel plain input would only get
 * oneDNN's reference kernels, hundreds of times slower than a reorder. */
static int conv_make_bwd_data(cc_tape *t, cc_node *n, conv_state *s, cc_status *st)
{
    const cc_tensor *x = n->in[0];
    dnnl_dims_t strides, pads;
    conv_geometry(n, strides, pads);
    const cc_tensor *w = n->in[1];
    dnnl_dims_t sd = {x->dims[0], x->dims[1], x->dims[2], x->dims[3]};
    dnnl_dims_t wd = {w->dims[0], w->dims[1], w->dims[2], w->dims[3]};
    dnnl_memory_desc_t dsrc_any, w_any;
    DNNL_TRY(st, "conv2d", "md", dnnl_memory_desc_init_by_tag(&dsrc_any, 4, sd, dnnl_f32, dnnl_format_tag_any));
    DNNL_TRY(st, "conv2d", "md", dnnl_memory_desc_init_by_tag(&w_any, 4, wd, dnnl_f32, dnnl_format_tag_any));
    dnnl_convolution_desc_t cd;
    DNNL_TRY(st, "conv2d", "backward-data descriptor",
             dnnl_convolution_backward_data_desc_init(&cd, dnnl_convolution_direct, &dsrc_any,
                                                      &w_any, &n->out->md, strides, pads, pads));
    if (tape_prim_make(t, &cd, s->fpd, &s->bdpd, &s->bwd_data, &s->bdscr, "conv2d",
                       "backward-data descriptor", st))
        return -1;
    s->dsrc_md = *dnnl_primitive_desc_query_md(s->bdpd, dnnl_query_diff_src_md, 0);
    s->bdw_md = *dnnl_primitive_desc_query_md(s->bdpd, dnnl_query_weights_md, 0);
    return reorder_make(t, &s->r_dsrc, &s->dsrc_md, &x->md, "conv2d input gradient", st) ||
           reorder_make(t, &s->r_bdw, &w->md, &s->bdw_md, "conv2d weights (backward)", st) ||
           tape_mem_create(t, &s->m_bdw, &s->bdw_md, st) ||
           tape_mem_create(t, &s->m_dsrc, &s->dsrc_md, st);
}

static int conv_make_bwd_weights(cc_tape *t, cc_node *n, conv_state *s, cc_status *st)
{
    const cc_tensor *w = n->in[1];
    dnnl_dims_t strides, pads;
    conv_geometry(n, strides, pads);
    dnnl_dims_t wd = {w->dims[0], w->dims[1], w->dims[2], w->dims[3]};
    dnnl_dims_t bd = {w->dims[0]};
    const cc_tensor *x = n->in[0];
    dnnl_dims_t sd = {x->dims[0], x->dims[1], x->dims[2], x->dims[3]};
    dnnl_dims_t dd = {n->out->dims[0], n->out->dims[1], n->out->dims[2], n->out->dims[3]};
    dnnl_memory_desc_t w_any, b_md, src_any, dst_any;
    DNNL_TRY(st, "conv2d", "md", dnnl_memory_desc_init_by_tag(&w_any, 4, wd, dnnl_f32, dnnl_format_tag_any));
    DNNL_TRY(st, "conv2d", "md", dnnl_memory_desc_init_by_tag(&b_md, 1, bd, dnnl_f32, dnnl_a));
    DNNL_TRY(st, "conv2d", "md", dnnl_memory_desc_init_by_tag(&src_any, 4, sd, dnnl_f32, dnnl_format_tag_any));
    DNNL_TRY(st, "conv2d", "md", dnnl_memory_desc_init_by_tag(&dst_any, 4, dd, dnnl_f32, dnnl_format_tag_any));
    /* First with diff_dst in the output's own layout (no reorder); when
     * that only finds the reference kernel (e.g. an 8-channel plain input
     * with a blocked 16-channel output: 1.5 s per call instead of 1 ms),
     * again with diff_dst `any` and a reorder of the output gradient.
     * Made for one thread: see conv_exec_weights_grad. */
    const int nthr = omp_get_max_threads();
    omp_set_num_threads(1);
    int rc = -1;
    for (int attempt = 0; attempt < 2; attempt++) {
        dnnl_convolution_desc_t cd;
        dnnl_status_t e = dnnl_convolution_backward_weights_desc_init(
            &cd, dnnl_convolution_direct, &src_any, &w_any, n->args.i[2] ? &b_md : NULL,
            attempt ? &dst_any : &n->out->md, strides, pads, pads);
        if (e == dnnl_success) e = tape_pd_create(t, &s->bwpd, &cd, s->fpd);
        if (e != dnnl_success) {
            op_dnnl_fail(st, "conv2d", "backward-weights descriptor", e);
            goto done;
        }
        if (attempt || !op_pd_is_ref(s->bwpd)) break;
        dnnl_primitive_desc_destroy(s->bwpd);
        s->bwpd = NULL;
    }
    s->dw_md = *dnnl_primitive_desc_query_md(s->bwpd, dnnl_query_diff_weights_md, 0);
    s->bwsrc_md = *dnnl_primitive_desc_query_md(s->bwpd, dnnl_query_src_md, 0);
    s->bwdst_md = *dnnl_primitive_desc_query_md(s->bwpd, dnnl_query_diff_dst_md, 0);
    /* pieces of the output channels or of the batch where they can be;
     * else one primitive for it all */
    rc = conv_wgrad_make(t, &s->bwsrc_md, &s->bwdst_md, &s->dw_md, &w->md, n->args.i[2], strides,
                         pads, &s->bw_pieces, st);
    if (!rc && !s->bw_pieces) rc = tape_prim_create(t, s->bwpd, &s->bwd_w, &s->bwscr, "conv2d", st);
done:
    omp_set_num_threads(nthr);
    if (rc || reorder_make(t, &s->r_dw, &s->dw_md, &w->md, "conv2d weight gradient", st) ||
        reorder_make(t, &s->r_bwsrc, &s->src_md, &s->bwsrc_md, "conv2d input (weights)", st) ||
        reorder_make(t, &s->r_bwdst, &n->out->md, &s->bwdst_md,
                     "conv2d output gradient (weights)", st) ||
        tape_mem_create(t, &s->m_bwsrc, &s->bwsrc_md, st) ||
        tape_mem_create(t, &s->m_bwdst, &s->bwdst_md, st) ||
        tape_mem_create(t, &s->m_dw, &s->dw_md, st) || tape_mem_create(t, &s->m_db, &b_md, st))
        return -1;
    s->bw_made = 1;
    return 0;
}

/* oneDNN's weight-gradient kernels split the sum over images and pixels
 * among their threads, so their bits would change with the thread count.
 * So the work is cut into pieces fixed by the shapes, each piece's
 * gradient made by a primitive built for one thread: pieces of the output
 * channels, each writing its rows of the gradient, where the gradient
 * outweighs the input, else pieces of the batch added in order
 * (conv_wgrad.h); where neither can be, one primitive built and
 * run for one thread does the whole batch (OpenMP's nthreads ICV at 1
 * around both: the partition is fixed when the primitive is made, and the
 * run must agree with it).  Every other fp32 op already gives the same
 * bits for any thread count (our kernels sum in a fixed order; oneDNN's
 * forward and data-gradient kernels split outputs, not sums), so a run's
 * results do not depend on the thread count (tests/test_threads.c).
 * These are the convolutions our own kernels do not take: first layers on
 * 1-3 channels, the FPN's smallest maps, 1x1 and strided convs. */
static int conv_exec_weights_grad(cc_tape *t, conv_state *s, cc_tensor *w, cc_tensor *b,
                                  float *gw, float *dw, float *bwsrc, float *bwdst, cc_status *st)
{
    if (!s->bw_pieces) {
        mem_bind(s->m_bwsrc, bwsrc);
        mem_bind(s->m_bwdst, bwdst);
        mem_bind(s->m_dw, dw);
        dnnl_exec_arg_t a[4] = {{DNNL_ARG_SRC, s->m_bwsrc}, {DNNL_ARG_DIFF_DST, s->m_bwdst},
                                {DNNL_ARG_DIFF_WEIGHTS, s->m_dw}, {DNNL_ARG_DIFF_BIAS, s->m_db}};
        const int nthr = omp_get_max_threads();
        omp_set_num_threads(1);
        const int rc = op_exec_weights_grad(t, s->bwd_w, s->bwscr, a, s->m_db, w, b, gw, dw,
                                            &s->r_dw, "conv2d backward-weights",
                                            "conv2d weight gradient", st);
        omp_set_num_threads(nthr);
        return rc;
    }
    float *gb = b && b->requires_grad ? tape_grad_begin(t, b, st) : NULL;
    if (b && b->requires_grad && !gb) return -1;
    if (conv_wgrad_run(t, s->bw_pieces, bwsrc, bwdst, dw, gw, gb, st)) return -1;
    /* channel pieces wrote gw themselves: no reorder */
    cc_reorder *r_dw = conv_wgrad_writes_plain(s->bw_pieces) ? NULL : &s->r_dw;
    return op_weights_grad_end(t, r_dw, dw, w, gw, b, gb, "conv2d weight gradient", st);
}

static int conv_wino_backward(cc_tape *t, cc_node *n, conv_state *s, cc_status *st)
{
    cc_tensor *x = n->in[0], *w = n->in[1], *b = conv_bias(n);
    if (x->requires_grad) {
        float *gx = tape_grad_begin(t, x, st), *dsrc = gx;
        if (!gx) return -1;
        if (s->r_dsrc.needed && !(dsrc = tape_alloc(t, dnnl_memory_desc_get_size(&s->src_md), st)))
            return -1;
        if (s->single)
            conv1_backward_data(&s->wg, n->out->grad, &s->ldst, w->data, dsrc, &s->lsrc,
                                t->scratch);
        else
            wino_forward(&s->wgt, n->out->grad, &s->ldst, w->data, NULL, 1, NULL, dsrc, &s->lsrc,
                         t->scratch);
        if (reorder_run(t, &s->r_dsrc, dsrc, gx, "conv2d input gradient", st)) return -1;
        tape_grad_end(t, x, gx);
    }
    if (w->requires_grad || (b && b->requires_grad)) {
        float *gw = w->requires_grad ? tape_grad_begin(t, w, st) : NULL;
        if (!gw && !(gw = tape_alloc(t, tensor_bytes(w), st))) return -1;
        float *gb = b && b->requires_grad ? tape_grad_begin(t, b, st) : NULL;
        if (b && b->requires_grad && !gb) return -1;
        if (s->single)
            conv1_backward_weights(&s->wg, s->src_buf, &s->lsrc, n->out->grad, &s->ldst, gw,
                                   gb);
        else
            wino_backward_weights(&s->wg, s->src_buf, &s->lsrc, n->out->grad, &s->ldst, gw, gb,
                                  t->scratch);
        if (w->requires_grad) tape_grad_end(t, w, gw);
        if (gb) tape_grad_end(t, b, gb);
    }
    return 0;
}

static int conv_backward(cc_tape *t, cc_node *n, cc_status *st)
{
    conv_state *s = n->state;
    if (s->bf) return conv_bf16_backward(t, n, s->bf, st);
    if (s->wino || s->single) return conv_wino_backward(t, n, s, st);
    cc_tensor *x = n->in[0], *w = n->in[1], *b = conv_bias(n);
    mem_bind(s->m_dst, n->out->grad);     /* diff_dst shares dst's layout */

    if (x->requires_grad) {
        if (!s->bwd_data && conv_make_bwd_data(t, n, s, st)) return -1;
        float *gx = tape_grad_begin(t, x, st);
        if (!gx) return -1;
        float *dsrc = gx;
        if (s->r_dsrc.needed && !(dsrc = tape_alloc(t, dnnl_memory_desc_get_size(&s->dsrc_md), st)))
            return -1;
        /* The backward-data kernel may want the weights in yet another
         * blocking (transposed blocks); reorder from the plain master copy. */
        float *bdw = w->data;
        if (s->r_bdw.needed &&
            (!(bdw = tape_alloc(t, dnnl_memory_desc_get_size(&s->bdw_md), st)) ||
             reorder_run(t, &s->r_bdw, w->data, bdw, "conv2d weights (backward)", st)))
            return -1;
        mem_bind(s->m_bdw, bdw);
        mem_bind(s->m_dsrc, dsrc);
        dnnl_exec_arg_t a[3] = {{DNNL_ARG_DIFF_DST, s->m_dst}, {DNNL_ARG_WEIGHTS, s->m_bdw},
                                {DNNL_ARG_DIFF_SRC, s->m_dsrc}};
        if (tape_exec(t, s->bwd_data, s->bdscr, 3, a, "conv2d backward-data", st) ||
            reorder_run(t, &s->r_dsrc, dsrc, gx, "conv2d input gradient", st))
            return -1;
        tape_grad_end(t, x, gx);
    }
    if (w->requires_grad || (b && b->requires_grad)) {
        if (!s->bw_made && conv_make_bwd_weights(t, n, s, st)) return -1;
        /* oneDNN computes both; gradients that are not wanted go to scratch. */
        float *gw = w->requires_grad ? tape_grad_begin(t, w, st) : NULL;
        if (w->requires_grad && !gw) return -1;
        /* channel pieces write gw themselves: no gradient in dw_md */
        const int plain = s->bw_pieces && conv_wgrad_writes_plain(s->bw_pieces);
        float *dw = gw && (plain || !s->r_dw.needed)
                        ? gw
                        : tape_alloc(t, dnnl_memory_desc_get_size(&s->dw_md), st);
        if (!dw) return -1;
        float *bwsrc = s->src_buf;
        if (s->r_bwsrc.needed &&
            (!(bwsrc = tape_alloc(t, dnnl_memory_desc_get_size(&s->bwsrc_md), st)) ||
             reorder_run(t, &s->r_bwsrc, s->src_buf, bwsrc, "conv2d input (weights)", st)))
            return -1;
        float *bwdst = n->out->grad;
        if (s->r_bwdst.needed &&
            (!(bwdst = tape_alloc(t, dnnl_memory_desc_get_size(&s->bwdst_md), st)) ||
             reorder_run(t, &s->r_bwdst, n->out->grad, bwdst, "conv2d output gradient (weights)",
                         st)))
            return -1;
        if (conv_exec_weights_grad(t, s, w, b, gw, dw, bwsrc, bwdst, st)) return -1;
    }
    return 0;
}

/* n*ho*wo*cout*cin*k*k, from the output and weight shapes. */
static int64_t conv_macs(const cc_node *n)
{
    const cc_tensor *w = n->in[1], *y = n->out;
    return y->dims[0] * y->dims[2] * y->dims[3] * w->dims[0] * w->dims[1] * w->dims[2] * w->dims[3];
}

const cc_op_def op_def_conv2d = {"conv2d", OPK_CONV, conv_infer, conv_forward, conv_backward,
                                 conv_free, conv_macs};

cc_tensor *op_conv2d(cc_tape *t, cc_tensor *x, cc_tensor *w, cc_tensor *b, int stride, int pad)
{
    cc_op_args a;
    memset(&a, 0, sizeof a);
    a.i[0] = stride;
    a.i[1] = pad;
    a.i[2] = b != NULL;
    cc_tensor *in[3] = {x, w, b};
    return tape_record(t, OP_conv2d, in, b ? 3 : 2, &a);
}

cc_tensor *op_conv2d_bn_lrelu_eval(cc_tape *t, cc_tensor *x, cc_tensor *w, cc_tensor *b,
                                   int stride, int pad, cc_tensor *gamma, cc_tensor *beta,
                                   cc_tensor *run_mean, cc_tensor *run_var, float eps,
                                   float slope)
{
    cc_op_args a;
    memset(&a, 0, sizeof a);
    a.i[0] = stride;
    a.i[1] = pad;
    a.i[2] = b != NULL;
    a.i[3] = 1;
    a.f[0] = eps;
    a.f[1] = slope;
    cc_tensor *in[7] = {x, w, gamma, beta, run_mean, run_var, b};
    return tape_record(t, OP_conv2d, in, b ? 7 : 6, &a);
}
