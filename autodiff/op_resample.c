/* op_resample.c - bilinear upsampling by exactly 2 on oneDNN.
 *
 * Op `resample`.  args: none.  in: x (N,C,H,W), any layout.
 * Out (N,C,2H,2W) in x's layout (plain stays plain; blocked -> the pd's
 * choice for `any`, the same blocking).
 *
 * oneDNN's resampling_linear uses half-pixel centres: along each axis the
 * output index o reads the input at s = (o + 0.5)/2 - 0.5, from the two
 * neighbours floor(s) and floor(s)+1 clamped to [0, H-1] with weights from
 * the fractional part.  For a factor of exactly 2 this equals PyTorch's
 * interpolate(mode='bilinear', align_corners=False) (s clamped at 0,
 * neighbour clamped at H-1); tests/test_ops_pool_resample.c checks it against
 * that formula.  Backward (the transpose) is a C kernel for plain and
 * channel-blocked layouts (oneDNN 2.6's backward is its generic `simple`
 * kernel: ~2% of an FPN step, 5x slower than this one); other layouts use
 * oneDNN's, built on first use.
 */
#include "autodiff/op.h"
#include "autodiff/ops.h"

#include <stdlib.h>
#include <string.h>

/* Element (n,c,h,w) at n*sn + (c/blk)*scb + (c%blk)*sc + h*sh + w*sw. */
typedef struct rs_layout {
    int64_t sn, scb, sc, sh, sw, blk, cpad;     /* cpad: channels incl. padding */
} rs_layout;

typedef struct resample_state {
    dnnl_primitive_desc_t fpd, bpd;
    dnnl_primitive_t fwd, bwd;
    dnnl_memory_t fscr, bscr;
    dnnl_memory_t m_src, m_dst;     /* double as diff_src / diff_dst */
    int c_bwd;                      /* backward by the C kernel, layouts below */
    rs_layout lx, ly;
} resample_state;

/* Plain-like (no inner blocks) or blocked over channels only. */
static int rs_layout_get(const dnnl_memory_desc_t *md, rs_layout *l)
{
    if (md->ndims != 4 || md->format_kind != dnnl_blocked || md->data_type != dnnl_f32 ||
        md->offset0)
        return 0;
    const dnnl_blocking_desc_t *b = &md->format_desc.blocking;
    if (b->inner_nblks == 0) {
        l->blk = 1;
        l->sc = b->strides[1];
    } else if (b->inner_nblks == 1 && b->inner_idxs[0] == 1) {
        l->blk = b->inner_blks[0];
        l->sc = 1;
    } else {
        return 0;
    }
    l->sn = b->strides[0];
    l->scb = b->strides[1];
    l->sh = b->strides[2];
    l->sw = b->strides[3];
    l->cpad = md->padded_dims[1];
    return 1;
}

/* Weights of the inputs i-1..i+2 around output 2i-1 .. 2i+2 in the adjoint
 * of the half-pixel x2 interpolation along an axis of n inputs:
 * dx[i] = .25 dy[2i-1] + .75 dy[2i] + .75 dy[2i+1] + .25 dy[2i+2], where the
 * clamped borders fold the missing neighbour's weight into the edge one. */
static inline void rs_weights(int64_t i, int64_t n, float w[4])
{
    w[0] = i > 0 ? 0.25f : 0.0f;
    w[1] = i > 0 ? 0.75f : 1.0f;
    w[2] = i < n - 1 ? 0.75f : 1.0f;
    w[3] = i < n - 1 ? 0.25f : 0.0f;
}

/* dx = the transpose of the upsampling applied to dy (all channels, the
 * padding ones included: zero in dy, so zero in dx). */
static void resample_bwd_c(const float *dy, const rs_layout *ly, float *dx, const rs_layout *lx,
                           int64_t N, int64_t H, int64_t W)
{
    const int64_t C = lx->cpad;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < N; n++)
        for (int64_t ih = 0; ih < H; ih++) {
            float wy[4];
            rs_weights(ih, H, wy);
            for (int64_t c = 0; c < C; c++) {
                const float *yb = dy + n * ly->sn + (c / ly->blk) * ly->scb + (c % ly->blk) * ly->sc;
                float *xb = dx + n * lx->sn + (c / lx->blk) * lx->scb + (c % lx->blk) * lx->sc +
                            ih * lx->sh;
                for (int64_t iw = 0; iw < W; iw++) {
                    float wx[4];
                    rs_weights(iw, W, wx);
                    float acc = 0;
                    for (int a = 0; a < 4; a++) {
                        const int64_t oh = 2 * ih - 1 + a;
                        if (wy[a] == 0.0f) continue;
                        float row = 0;
                        for (int b = 0; b < 4; b++) {
                            const int64_t ow = 2 * iw - 1 + b;
                            if (wx[b] != 0.0f) row += wx[b] * yb[oh * ly->sh + ow * ly->sw];
                        }
                        acc += wy[a] * row;
                    }
                    xb[iw * lx->sw] = acc;
                }
            }
        }
}

static const float resample_factors[2] = {2.0f, 2.0f};

static void resample_free(void *p)
{
    resample_state *s = p;
    if (!s) return;
    if (s->fwd) dnnl_primitive_destroy(s->fwd);
    if (s->bwd) dnnl_primitive_destroy(s->bwd);
    if (s->fpd) dnnl_primitive_desc_destroy(s->fpd);
    if (s->bpd) dnnl_primitive_desc_destroy(s->bpd);
    dnnl_memory_t mems[] = {s->fscr, s->bscr, s->m_src, s->m_dst};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        if (mems[i]) dnnl_memory_destroy(mems[i]);
    free(s);
}

static int resample_infer(cc_tape *t, cc_node *n, cc_tensor *out, cc_status *st)
{
    const cc_tensor *x = n->in[0];
    char a[64];
    if (x->ndim != 4)
        return status_set(st, "upsample2x: input must be 4-D (N,C,H,W), got %s",
                          tensor_shape_str(x, a, sizeof a));
    int64_t od[4] = {x->dims[0], x->dims[1], 2 * x->dims[2], 2 * x->dims[3]};
    resample_state *s = calloc(1, sizeof *s);
    if (!s) return status_set(st, "upsample2x: out of memory");
    n->state = s;
    dnnl_memory_desc_t dst_md;
    if (tensor_is_plain(x)) {
        tensor_md_plain(&dst_md, 4, od);
    } else {
        dnnl_dims_t dd = {od[0], od[1], od[2], od[3]};
        DNNL_TRY(st, "upsample2x", "md",
                 dnnl_memory_desc_init_by_tag(&dst_md, 4, dd, dnnl_f32, dnnl_format_tag_any));
    }
    dnnl_resampling_desc_t rd;
    DNNL_TRY(st, "upsample2x", "forward descriptor",
             dnnl_resampling_forward_desc_init(
                 &rd, t->training ? dnnl_forward_training : dnnl_forward_inference,
                 dnnl_resampling_linear, resample_factors, &x->md, &dst_md));
    if (tape_prim_make(t, &rd, NULL, &s->fpd, &s->fwd, &s->fscr, "upsample2x",
                       "forward primitive descriptor", st))
        return -1;
    const dnnl_memory_desc_t *qdst = dnnl_primitive_desc_query_md(s->fpd, dnnl_query_dst_md, 0);
    if (tape_mem_create(t, &s->m_src, &x->md, st) || tape_mem_create(t, &s->m_dst, qdst, st))
        return -1;
    s->c_bwd = rs_layout_get(&x->md, &s->lx) && rs_layout_get(qdst, &s->ly) &&
               s->lx.cpad == s->ly.cpad;
    out->ndim = 4;
    memcpy(out->dims, od, sizeof od);
    out->md = *qdst;
    return 0;
}

static int resample_forward(cc_tape *t, cc_node *n, cc_status *st)
{
    resample_state *s = n->state;
    mem_bind(s->m_src, n->in[0]->data);
    mem_bind(s->m_dst, n->out->data);
    dnnl_exec_arg_t a[2] = {{DNNL_ARG_SRC, s->m_src}, {DNNL_ARG_DST, s->m_dst}};
    return tape_exec(t, s->fwd, s->fscr, 2, a, "upsample2x forward", st);
}

static int resample_make_bwd(cc_tape *t, cc_node *n, resample_state *s, cc_status *st)
{
    dnnl_resampling_desc_t rd;
    DNNL_TRY(st, "upsample2x", "backward descriptor",
             dnnl_resampling_backward_desc_init(&rd, dnnl_resampling_linear, resample_factors,
                                                &n->in[0]->md, &n->out->md));
    return tape_prim_make(t, &rd, s->fpd, &s->bpd, &s->bwd, &s->bscr, "upsample2x",
                          "backward primitive descriptor", st);
}

static int resample_backward(cc_tape *t, cc_node *n, cc_status *st)
{
    resample_state *s = n->state;
    cc_tensor *x = n->in[0];
    if (!x->requires_grad) return 0;
    if (!s->c_bwd && !s->bwd && resample_make_bwd(t, n, s, st)) return -1;
    float *g = tape_grad_begin(t, x, st);
    if (!g) return -1;
    if (s->c_bwd) {
        resample_bwd_c(n->out->grad, &s->ly, g, &s->lx, x->dims[0], x->dims[2], x->dims[3]);
        tape_grad_end(t, x, g);
        return 0;
    }
    mem_bind(s->m_src, g);
    mem_bind(s->m_dst, n->out->grad);
    dnnl_exec_arg_t a[2] = {{DNNL_ARG_DIFF_SRC, s->m_src}, {DNNL_ARG_DIFF_DST, s->m_dst}};
    if (tape_exec(t, s->bwd, s->bscr, 2, a, "upsample2x backward", st)) return -1;
    tape_grad_end(t, x, g);
    return 0;
}

const cc_op_def op_def_resample = {"resample", OPK_RESAMPLE, resample_infer, resample_forward,
                                   resample_backward, resample_free, NULL};

cc_tensor *op_upsample2x(cc_tape *t, cc_tensor *x)
{
    cc_op_args a;
    memset(&a, 0, sizeof a);
    return tape_record(t, OP_resample, &x, 1, &a);
}
