/* op_pool.c - max, average and global average pooling on oneDNN.
 *
 * One op, `pool`.  args: i[0] mode (POOL_MAX, POOL_AVG, POOL_GLOBAL),
 * i[1] kernel k, i[2] stride s (global: both ignored, the kernel is HxW).
 * in: x (N,C,H,W), any layout.
 *
 * No padding anywhere.  Max pool uses floor: Ho = (H-k)/s+1, trailing rows
 * and columns a window never reaches get zero gradient.  Average pool is an
 * area average with kernel = stride = k, so H and W must be divisible by k
 * (an error otherwise, never a silent crop).  The primitive runs on the
 * input's own layout (src md = x->md) and the output keeps it (plain stays
 * plain; blocked -> the pd's choice for `any`, which is the same blocking),
 * so conv -> BN -> LeakyReLU -> pool needs no reorder.
 *
 * Training max pool: forward_training writes a per-step workspace (arena)
 * that backward reads; inference uses forward_inference and no workspace.
 * The backward primitive is built on first use.
 */
#include "autodiff/op.h"
#include "autodiff/ops.h"

#include <stdlib.h>
#include <string.h>

enum { POOL_MAX = 0, POOL_AVG = 1, POOL_GLOBAL = 2 };

static const char *const pool_names[] = {"max_pool2d", "avg_pool2d", "global_avg_pool"};

typedef struct pool_state {
    dnnl_primitive_desc_t fpd, bpd;
    dnnl_primitive_t fwd, bwd;
    dnnl_memory_t fscr, bscr;
    dnnl_memory_t m_src, m_dst, m_ws;   /* m_src/m_dst double as diff_src/diff_dst */
    dnnl_alg_kind_t alg;
    dnnl_dims_t strides, kernel, dil, pad;
    size_t ws_bytes;                    /* 0: no workspace */
    void *ws_buf;                       /* this step's workspace (arena) */
} pool_state;

static void pool_free(void *p)
{
    pool_state *s = p;
    if (!s) return;
    if (s->fwd) dnnl_primitive_destroy(s->fwd);
    if (s->bwd) dnnl_primitive_destroy(s->bwd);
    if (s->fpd) dnnl_primitive_desc_destroy(s->fpd);
    if (s->bpd) dnnl_primitive_desc_destroy(s->bpd);
    dnnl_memory_t mems[] = {s->fscr, s->bscr, s->m_src, s->m_dst, s->m_ws};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        if (mems[i]) dnnl_memory_destroy(mems[i]);
    free(s);
}

static int pool_infer(cc_tape *t, cc_node *n, cc_tensor *out, cc_status *st)
{
    const cc_tensor *x = n->in[0];
    const int mode = n->args.i[0];
    const char *name = pool_names[mode];
    char a[64];
    if (x->ndim != 4)
        return status_set(st, "%s: input must be 4-D (N,C,H,W), got %s", name,
                          tensor_shape_str(x, a, sizeof a));
    const int64_t H = x->dims[2], W = x->dims[3];
    int64_t kh, kw, sh, sw;
    if (mode == POOL_GLOBAL) {
        kh = sh = H;
        kw = sw = W;
    } else {
        kh = kw = n->args.i[1];
        sh = sw = n->args.i[2];
        if (kh < 1 || sh < 1)
            return status_set(st, "%s: kernel %lld and stride %lld must be >= 1 (input %s)", name,
                              (long long)kh, (long long)sh, tensor_shape_str(x, a, sizeof a));
        if (H < kh || W < kw)
            return status_set(st, "%s: input %s is smaller than the %lldx%lld kernel", name,
                              tensor_shape_str(x, a, sizeof a), (long long)kh, (long long)kw);
        if (mode == POOL_AVG && (H % kh || W % kw))
            return status_set(st, "%s: input %s: H and W must be divisible by the kernel %lld "
                                  "(area average, no cropping)",
                              name, tensor_shape_str(x, a, sizeof a), (long long)kh);
    }
    const int64_t ho = (H - kh) / sh + 1, wo = (W - kw) / sw + 1;

    pool_state *s = calloc(1, sizeof *s);
    if (!s) return status_set(st, "%s: out of memory", name);
    n->state = s;
    s->alg = mode == POOL_MAX ? dnnl_pooling_max : dnnl_pooling_avg_exclude_padding;
    s->strides[0] = sh;
    s->strides[1] = sw;
    s->kernel[0] = kh;
    s->kernel[1] = kw;
    /* dil and pad stay zero (calloc). */

    int64_t od[4] = {x->dims[0], x->dims[1], ho, wo};
    dnnl_memory_desc_t dst_md;
    if (tensor_is_plain(x)) {
        tensor_md_plain(&dst_md, 4, od);
    } else {
        dnnl_dims_t dd = {od[0], od[1], od[2], od[3]};
        DNNL_TRY(st, name, "md",
                 dnnl_memory_desc_init_by_tag(&dst_md, 4, dd, dnnl_f32, dnnl_format_tag_any));
    }
    dnnl_pooling_v2_desc_t pd;
    DNNL_TRY(st, name, "forward descriptor",
             dnnl_pooling_v2_forward_desc_init(
                 &pd, t->training ? dnnl_forward_training : dnnl_forward_inference, s->alg, &x->md,
                 &dst_md, s->strides, s->kernel, s->dil, s->pad, s->pad));
    if (tape_prim_make(t, &pd, NULL, &s->fpd, &s->fwd, &s->fscr, name,
                       "forward primitive descriptor", st))
        return -1;

    const dnnl_memory_desc_t *qdst = dnnl_primitive_desc_query_md(s->fpd, dnnl_query_dst_md, 0);
    const dnnl_memory_desc_t *qws = dnnl_primitive_desc_query_md(s->fpd, dnnl_query_workspace_md, 0);
    s->ws_bytes = qws ? dnnl_memory_desc_get_size(qws) : 0;
    if (tape_mem_create(t, &s->m_src, &x->md, st) || tape_mem_create(t, &s->m_dst, qdst, st) ||
        (s->ws_bytes && tape_mem_create(t, &s->m_ws, qws, st)))
        return -1;
    out->ndim = 4;
    memcpy(out->dims, od, sizeof od);
    out->md = *qdst;
    return 0;
}

static int pool_forward(cc_tape *t, cc_node *n, cc_status *st)
{
    pool_state *s = n->state;
    const char *name = pool_names[n->args.i[0]];
    mem_bind(s->m_src, n->in[0]->data);
    mem_bind(s->m_dst, n->out->data);
    dnnl_exec_arg_t a[3] = {{DNNL_ARG_SRC, s->m_src}, {DNNL_ARG_DST, s->m_dst},
                            {DNNL_ARG_WORKSPACE, s->m_ws}};
    int na = 2;
    s->ws_buf = NULL;
    if (s->ws_bytes) {
        if (!(s->ws_buf = tape_alloc(t, s->ws_bytes, st))) return -1;
        mem_bind(s->m_ws, s->ws_buf);
        na = 3;
    }
    return tape_exec(t, s->fwd, s->fscr, na, a, name, st);
}

static int pool_make_bwd(cc_tape *t, cc_node *n, pool_state *s, const char *name, cc_status *st)
{
    dnnl_pooling_v2_desc_t pd;
    DNNL_TRY(st, name, "backward descriptor",
             dnnl_pooling_v2_backward_desc_init(&pd, s->alg, &n->in[0]->md, &n->out->md,
                                                s->strides, s->kernel, s->dil, s->pad, s->pad));
    return tape_prim_make(t, &pd, s->fpd, &s->bpd, &s->bwd, &s->bscr, name,
                          "backward primitive descriptor", st);
}

static int pool_backward(cc_tape *t, cc_node *n, cc_status *st)
{
    pool_state *s = n->state;
    const char *name = pool_names[n->args.i[0]];
    cc_tensor *x = n->in[0];
    if (!x->requires_grad) return 0;
    if (!s->bwd && pool_make_bwd(t, n, s, name, st)) return -1;
    float *g = tape_grad_begin(t, x, st);
    if (!g) return -1;
    /* diff_src/diff_dst have src/dst's layouts, so the forward memory objects serve. */
    mem_bind(s->m_src, g);
    mem_bind(s->m_dst, n->out->grad);
    dnnl_exec_arg_t a[3] = {{DNNL_ARG_DIFF_SRC, s->m_src}, {DNNL_ARG_DIFF_DST, s->m_dst},
                            {DNNL_ARG_WORKSPACE, s->m_ws}};
    int na = 2;
    if (s->ws_bytes) {
        mem_bind(s->m_ws, s->ws_buf);
        na = 3;
    }
    if (tape_exec(t, s->bwd, s->bscr, na, a, name, st)) return -1;
    tape_grad_end(t, x, g);
    return 0;
}

const cc_op_def op_def_pool = {"pool", OPK_POOL, pool_infer, pool_forward, pool_backward,
                               pool_free, NULL};

static cc_tensor *pool_record(cc_tape *t, cc_tensor *x, int mode, int k, int s)
{
    cc_op_args a;
    memset(&a, 0, sizeof a);
    a.i[0] = mode;
    a.i[1] = k;
    a.i[2] = s;
    return tape_record(t, OP_pool, &x, 1, &a);
}

cc_tensor *op_max_pool2d(cc_tape *t, cc_tensor *x, int k, int s)
{
    return pool_record(t, x, POOL_MAX, k, s);
}

cc_tensor *op_avg_pool2d(cc_tape *t, cc_tensor *x, int k) { return pool_record(t, x, POOL_AVG, k, k); }

cc_tensor *op_global_avg_pool(cc_tape *t, cc_tensor *x) { return pool_record(t, x, POOL_GLOBAL, 0, 0); }
