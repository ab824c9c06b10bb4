/* op_binary.c - elementwise add and mul on oneDNN, with channel broadcast.
 *
 * args: i[0] 0 add, 1 mul.  in: a, b.
 * b has a's logical shape, or a's shape with dims[1] == 1 (N,1,H,W), which
 * is then broadcast over a's channels.  The output takes a's layout (dst md
 * = a's md), so a blocked activation stays blocked.  b is used in its own
 * layout when oneDNN has an optimised kernel for the pair; when it offers
 * only its reference kernel (oneDNN 2.6 does for blocked a with plain b:
 * ~100x slower on FPN-sized tensors) or none, b is reordered once per step
 * to a's layout (same shape) or a's format tag (broadcast).
 *
 * Backward (g = out's gradient, in a's layout):
 *   add: da = g;      db = g, summed over C when broadcast;
 *   mul: da = g * b;  db = g * a, summed over C when broadcast.
 * The channel sum is a C kernel that reads a's layout directly (plain,
 * channels-last, or channel-blocked like nChw8c) and writes b's layout; any
 * other layout goes through plain copies.  (oneDNN 2.6's reduction has only
 * a reference kernel.)  Each output element sums its channels in order, so
 * the result is deterministic.  Backward primitives are built on first use.
 */
#include "autodiff/op.h"
#include "autodiff/ops.h"

#include <stdlib.h>
#include <string.h>

/* Where element (n,c,h,w) of a layout lives, for the layouts the channel
 * sum reads directly: off0 + n*s[0] + (c/blk)*s[1] + c%blk + h*s[2] + w*s[3]
 * (blk = 1 when channels are not blocked).  2-D and 3-D tensors use
 * trailing dims of size 1. */
typedef struct chan_layout {
    int64_t off0, s[4], blk;
} chan_layout;

typedef struct binary_state {
    dnnl_primitive_desc_t fpd, mpd;
    dnnl_primitive_t fwd, mul_a;            /* forward; g*a for db (same shape) */
    dnnl_memory_t fscr, mscr;
    dnnl_memory_t m_s0, m_s1, m_dst;        /* forward primitive's arguments */
    dnnl_memory_t m_g, m_a, m_tmp;          /* g*a */
    cc_reorder r_b;                         /* b -> b_md when b's own layout is slow */
    cc_reorder r_gb;                        /* a's layout -> b's layout (same shape) */
    cc_reorder r_ga_plain, r_gb_plain;      /* channel sum through plain copies */
    chan_layout la, lb;                     /* channel sum's input / output layouts */
    dnnl_memory_desc_t b_md;                /* src1 descriptor the primitive uses */
    int bcast, bwd_ready;
    float *b_buf;                           /* this step's b in b_md */
} binary_state;

static void binary_free(void *p)
{
    binary_state *s = p;
    if (!s) return;
    dnnl_primitive_desc_t pds[] = {s->fpd, s->mpd};
    dnnl_primitive_t prims[] = {s->fwd, s->mul_a};
    dnnl_memory_t mems[] = {s->fscr, s->mscr, s->m_s0, s->m_s1, s->m_dst, s->m_g, s->m_a, s->m_tmp};
    for (size_t i = 0; i < 2; i++) {
        if (prims[i]) dnnl_primitive_destroy(prims[i]);
        if (pds[i]) dnnl_primitive_desc_destroy(pds[i]);
    }
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        if (mems[i]) dnnl_memory_destroy(mems[i]);
    reorder_free(&s->r_b);
    reorder_free(&s->r_gb);
    reorder_free(&s->r_ga_plain);
    reorder_free(&s->r_gb_plain);
    free(s);
}

static const char *binary_name(const cc_node *n) { return n->args.i[0] ? "binary mul" : "binary add"; }

static int chan_layout_get(const dnnl_memory_desc_t *md, chan_layout *l)
{
    if (md->format_kind != dnnl_blocked || md->ndims < 2 || md->ndims > 4) return 0;
    const dnnl_blocking_desc_t *bd = &md->format_desc.blocking;
    if (bd->inner_nblks == 0)
        l->blk = 1;
    else if (bd->inner_nblks == 1 && bd->inner_idxs[0] == 1)
        l->blk = bd->inner_blks[0];
    else
        return 0;
    l->off0 = md->offset0;
    for (int i = 0; i < 4; i++) l->s[i] = i < md->ndims ? bd->strides[i] : 0;
    return 1;
}

/* gb[n,0,h,w] = sum over c of g[n,c,h,w] (times a[n,c,h,w] when a != NULL),
 * channels added in order.  Writes only logical elements of gb. */
static void chan_sum(const float *g, const float *a, const chan_layout *la, float *gb,
                     const chan_layout *lb, const int64_t *dims, int ndim)
{
    const int64_t N = dims[0], C = dims[1], H = ndim > 2 ? dims[2] : 1, W = ndim > 3 ? dims[3] : 1;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < N; n++)
        for (int64_t h = 0; h < H; h++) {
            float *dst = gb + lb->off0 + n * lb->s[0] + h * lb->s[2];
            for (int64_t c = 0; c < C; c++) {
                const int64_t base =
                    la->off0 + n * la->s[0] + (c / la->blk) * la->s[1] + c % la->blk + h * la->s[2];
                for (int64_t w = 0; w < W; w++) {
                    const int64_t i = base + w * la->s[3];
                    const float v = a ? g[i] * a[i] : g[i];
                    if (c == 0)
                        dst[w * lb->s[3]] = v;
                    else
                        dst[w * lb->s[3]] += v;
                }
            }
        }
}

/* Binary primitive descriptor src0 (op) src1 -> dst; 0 or the oneDNN status. */
static dnnl_status_t binary_pd(cc_tape *t, dnnl_primitive_desc_t *pd, dnnl_alg_kind_t alg,
                               const dnnl_memory_desc_t *s0, const dnnl_memory_desc_t *s1,
                               const dnnl_memory_desc_t *dst)
{
    *pd = NULL;
    dnnl_binary_desc_t bd;
    dnnl_status_t e = dnnl_binary_desc_init(&bd, alg, s0, s1, dst);
    if (e != dnnl_success) return e;
    return tape_pd_create(t, pd, &bd, NULL);
}

/* b's shape in a's layout: a's md itself for the same shape, else the same
 * format tag as a with b's dims.  0 when a's layout has no known tag. */
static int b_md_like_a(const cc_tensor *a, const cc_tensor *b, dnnl_memory_desc_t *md)
{
    if (tensor_same_shape(a, b)) {
        *md = a->md;
        return 1;
    }
    static const dnnl_format_tag_t tags4[] = {dnnl_abcd, dnnl_acdb, dnnl_aBcd8b, dnnl_aBcd16b,
                                              dnnl_aBcd4b};
    static const dnnl_format_tag_t tags3[] = {dnnl_abc, dnnl_acb, dnnl_aBc8b, dnnl_aBc16b, dnnl_aBc4b};
    static const dnnl_format_tag_t tags2[] = {dnnl_ab, dnnl_ba};
    const dnnl_format_tag_t *tags = a->ndim == 4 ? tags4 : a->ndim == 3 ? tags3 : tags2;
    const int ntags = a->ndim == 2 ? 2 : 5;
    if (a->ndim < 2) return 0;
    dnnl_dims_t ad, bd;
    for (int i = 0; i < a->ndim; i++) ad[i] = a->dims[i], bd[i] = b->dims[i];
    for (int k = 0; k < ntags; k++) {
        dnnl_memory_desc_t probe;
        if (dnnl_memory_desc_init_by_tag(&probe, a->ndim, ad, dnnl_f32, tags[k]) != dnnl_success)
            continue;
        if (dnnl_memory_desc_equal(&probe, &a->md))
            return dnnl_memory_desc_init_by_tag(md, b->ndim, bd, dnnl_f32, tags[k]) == dnnl_success;
    }
    return 0;
}

static int binary_infer(cc_tape *t, cc_node *n, cc_tensor *out, cc_status *st)
{
    const cc_tensor *a = n->in[0], *b = n->in[1];
    const char *name = binary_name(n);
    int bcast = 0;
    if (!tensor_same_shape(a, b)) {
        int ok = a->ndim == b->ndim && a->ndim >= 2 && b->dims[1] == 1;
        for (int i = 0; ok && i < a->ndim; i++)
            if (i != 1 && a->dims[i] != b->dims[i]) ok = 0;
        if (!ok)
            return op_shape_fail(st, name, "b must have a's shape or a's with one channel", b, a);
        bcast = 1;
    }
    binary_state *s = calloc(1, sizeof *s);
    if (!s) return status_set(st, "%s: out of memory", name);
    n->state = s;
    s->bcast = bcast;
    const dnnl_alg_kind_t alg = n->args.i[0] ? dnnl_binary_mul : dnnl_binary_add;

    /* b as it is, unless only the reference kernel (or nothing) takes that
     * layout and an optimised one takes b in a's layout. */
    s->b_md = b->md;
    dnnl_status_t e = binary_pd(t, &s->fpd, alg, &a->md, &b->md, &a->md);
    dnnl_memory_desc_t like;
    if ((e != dnnl_success || op_pd_is_ref(s->fpd)) && b_md_like_a(a, b, &like) &&
        !dnnl_memory_desc_equal(&like, &b->md)) {
        dnnl_primitive_desc_t pd2;
        dnnl_status_t e2 = binary_pd(t, &pd2, alg, &a->md, &like, &a->md);
        if (e2 == dnnl_success && (e != dnnl_success || !op_pd_is_ref(pd2))) {
            if (s->fpd) dnnl_primitive_desc_destroy(s->fpd);
            s->fpd = pd2;
            s->b_md = like;
            e = e2;
        } else if (pd2) {
            dnnl_primitive_desc_destroy(pd2);
        }
    }
    if (e != dnnl_success) return op_dnnl_fail(st, name, "forward primitive descriptor", e);
    if (tape_prim_create(t, s->fpd, &s->fwd, &s->fscr, name, st)) return -1;
    const dnnl_memory_desc_t *dst_md = dnnl_primitive_desc_query_md(s->fpd, dnnl_query_dst_md, 0);
    /* The gradient to a is g itself for add: dst must be exactly a's layout. */
    if (!dnnl_memory_desc_equal(dst_md, &a->md))
        return status_set(st, "%s: oneDNN changed the output layout", name);
    if (reorder_make(t, &s->r_b, &b->md, &s->b_md, name, st) ||
        tape_mem_create(t, &s->m_s0, &a->md, st) || tape_mem_create(t, &s->m_s1, &s->b_md, st) ||
        tape_mem_create(t, &s->m_dst, dst_md, st))
        return -1;
    out->ndim = a->ndim;
    memcpy(out->dims, a->dims, sizeof out->dims);
    out->md = *dst_md;
    return 0;
}

static int binary_forward(cc_tape *t, cc_node *n, cc_status *st)
{
    binary_state *s = n->state;
    const char *name = binary_name(n);
    cc_tensor *a = n->in[0], *b = n->in[1];
    s->b_buf = b->data;
    if (s->r_b.needed) {
        s->b_buf = tape_alloc(t, dnnl_memory_desc_get_size(&s->b_md), st);
        if (!s->b_buf || reorder_run(t, &s->r_b, b->data, s->b_buf, name, st)) return -1;
    }
    mem_bind(s->m_s0, a->data);
    mem_bind(s->m_s1, s->b_buf);
    mem_bind(s->m_dst, n->out->data);
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC_0, s->m_s0}, {DNNL_ARG_SRC_1, s->m_s1},
                               {DNNL_ARG_DST, s->m_dst}};
    return tape_exec(t, s->fwd, s->fscr, 3, args, name, st);
}

/* What b's gradient needs: g*a as a primitive (mul, same shape) and a
 * layout change to b's layout, or the channel sum's layouts (broadcast). */
static int binary_make_bwd(cc_tape *t, cc_node *n, binary_state *s, cc_status *st)
{
    const cc_tensor *a = n->in[0], *b = n->in[1];
    const char *name = binary_name(n);
    if (s->bcast) {
        dnnl_memory_desc_t pa, pb;
        tensor_md_plain(&pa, a->ndim, a->dims);
        tensor_md_plain(&pb, b->ndim, b->dims);
        if (!chan_layout_get(&a->md, &s->la)) {
            if (reorder_make(t, &s->r_ga_plain, &a->md, &pa, name, st)) return -1;
            chan_layout_get(&pa, &s->la);
        }
        if (!chan_layout_get(&b->md, &s->lb)) {
            if (reorder_make(t, &s->r_gb_plain, &pb, &b->md, name, st)) return -1;
            chan_layout_get(&pb, &s->lb);
        }
    } else {
        if (n->args.i[0]) {
            dnnl_status_t e = binary_pd(t, &s->mpd, dnnl_binary_mul, &a->md, &a->md, &a->md);
            if (e != dnnl_success) return op_dnnl_fail(st, name, "backward primitive descriptor", e);
            if (tape_prim_create(t, s->mpd, &s->mul_a, &s->mscr, name, st) ||
                tape_mem_create(t, &s->m_g, &a->md, st) || tape_mem_create(t, &s->m_a, &a->md, st) ||
                tape_mem_create(t, &s->m_tmp, &a->md, st))
                return -1;
        }
        if (reorder_make(t, &s->r_gb, &a->md, &b->md, name, st)) return -1;
    }
    s->bwd_ready = 1;
    return 0;
}

/* db = sum over C of g (add) or g*a (mul), into gb in b's layout. */
static int binary_bwd_bcast(cc_tape *t, cc_node *n, binary_state *s, float *gb, cc_status *st)
{
    const cc_tensor *a = n->in[0], *b = n->in[1];
    const char *name = binary_name(n);
    const float *g = n->out->grad, *av = n->args.i[0] ? a->data : NULL;
    if (s->r_ga_plain.needed) {
        const size_t bytes = sizeof(float) * (size_t)tensor_numel(a);
        float *gp = tape_alloc(t, bytes, st), *ap = av ? tape_alloc(t, bytes, st) : NULL;
        if (!gp || (av && !ap) || reorder_run(t, &s->r_ga_plain, g, gp, name, st) ||
            (av && reorder_run(t, &s->r_ga_plain, av, ap, name, st)))
            return -1;
        g = gp;
        av = ap;
    }
    float *dst = gb;
    if (s->r_gb_plain.needed) {
        if (!(dst = tape_alloc(t, sizeof(float) * (size_t)tensor_numel(b), st))) return -1;
    } else if (tensor_bytes(b) != sizeof(float) * (size_t)tensor_numel(b)) {
        memset(gb, 0, tensor_bytes(b));     /* the kernel writes logical elements only */
    }
    chan_sum(g, av, &s->la, dst, &s->lb, a->dims, a->ndim);
    return reorder_run(t, &s->r_gb_plain, dst, gb, name, st);
}

static int binary_backward(cc_tape *t, cc_node *n, cc_status *st)
{
    binary_state *s = n->state;
    const char *name = binary_name(n);
    cc_tensor *a = n->in[0], *b = n->in[1];
    const int mul = n->args.i[0];
    float *g = n->out->grad;

    if (a->requires_grad) {
        float *ga = tape_grad_begin(t, a, st);
        if (!ga) return -1;
        if (!mul) {
            memcpy(ga, g, tensor_bytes(a));
        } else {
            /* The forward primitive computes src0 * b: feed g as src0. */
            mem_bind(s->m_s0, g);
            mem_bind(s->m_s1, s->b_buf);
            mem_bind(s->m_dst, ga);
            dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC_0, s->m_s0}, {DNNL_ARG_SRC_1, s->m_s1},
                                       {DNNL_ARG_DST, s->m_dst}};
            if (tape_exec(t, s->fwd, s->fscr, 3, args, name, st)) return -1;
        }
        tape_grad_end(t, a, ga);
    }
    if (!b->requires_grad) return 0;
    if (!s->bwd_ready && binary_make_bwd(t, n, s, st)) return -1;
    float *gb = tape_grad_begin(t, b, st);
    if (!gb) return -1;
    if (s->bcast) {
        if (binary_bwd_bcast(t, n, s, gb, st)) return -1;
        tape_grad_end(t, b, gb);
        return 0;
    }
    const float *src = g;          /* db in a's layout */
    if (mul) {
        float *tmp = !s->r_gb.needed ? gb : tape_alloc(t, tensor_bytes(a), st);
        if (!tmp) return -1;
        mem_bind(s->m_g, g);
        mem_bind(s->m_a, a->data);
        mem_bind(s->m_tmp, tmp);
        dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC_0, s->m_g}, {DNNL_ARG_SRC_1, s->m_a},
                                   {DNNL_ARG_DST, s->m_tmp}};
        if (tape_exec(t, s->mul_a, s->mscr, 3, args, name, st)) return -1;
        src = tmp;
    }
    if (s->r_gb.needed) {
        if (reorder_run(t, &s->r_gb, src, gb, name, st)) return -1;
    } else if (src != gb) {
        memcpy(gb, src, tensor_bytes(b));
    }
    tape_grad_end(t, b, gb);
    return 0;
}
const cc_op_def op_def_binary = {"binary", OPK_BINARY, binary_infer, binary_forward,
                                 binary_backward, binary_free, NULL};

static cc_tensor *binary_record(cc_tape *t, cc_tensor *a, cc_tensor *b, int mul)
{
    cc_op_args args;
    memset(&args, 0, sizeof args);
    args.i[0] = mul;
    cc_tensor *in[2] = {a, b};
    return tape_record(t, OP_binary, in, 2, &args);
}

cc_tensor *op_add(cc_tape *t, cc_tensor *a, cc_tensor *b) { return binary_record(t, a, b, 0); }

cc_tensor *op_mul(cc_tape *t, cc_tensor *a, cc_tensor *b) { return binary_record(t, a, b, 1); }
