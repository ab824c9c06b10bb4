/* op_shape.c - layout and shape ops: to-plain reorder, reshape/flatten,
 * channel expansion.
 *
 * reorder:          in x.            Out: x's shape, plain layout.
 * reshape:          in x; args.i[0] ndim, i[1..4] dims.  Plain copy.
 * expand_channels:  in x (N,1,H,W); args.i[0] C.  Out (N,C,H,W) plain.
 * flip:             in x (N,C,H,W) plain; args.i[0] bits (1: mirror W,
 *                   2: mirror H).  Out plain, x's shape.
 */
#include "autodiff/op.h"
#include "autodiff/ops.h"

#include <stdlib.h>
#include <string.h>

/* ---- reorder to plain ---- */

typedef struct reorder_state {
    cc_reorder fwd, bwd;
} reorder_state;

static void reorder_state_free(void *p)
{
    reorder_state *s = p;
    if (!s) return;
    reorder_free(&s->fwd);
    reorder_free(&s->bwd);
    free(s);
}

static int plain_infer(cc_tape *t, cc_node *n, cc_tensor *out, cc_status *st)
{
    const cc_tensor *x = n->in[0];
    tensor_set_shape(out, x->ndim, x->dims);
    reorder_state *s = calloc(1, sizeof *s);
    if (!s) return status_set(st, "reorder: out of memory");
    n->state = s;
    if (reorder_make(t, &s->fwd, &x->md, &out->md, "reorder", st)) return -1;
    return 0;
}

static int plain_forward(cc_tape *t, cc_node *n, cc_status *st)
{
    reorder_state *s = n->state;
    if (!s->fwd.needed) {
        memcpy(n->out->data, n->in[0]->data, tensor_bytes(n->out));
        return 0;
    }
    return reorder_run(t, &s->fwd, n->in[0]->data, n->out->data, "reorder", st);
}

static int plain_backward(cc_tape *t, cc_node *n, cc_status *st)
{
    reorder_state *s = n->state;
    cc_tensor *x = n->in[0];
    float *g = tape_grad_begin(t, x, st);
    if (!g) return x->requires_grad ? -1 : 0;
    if (!s->fwd.needed) {
        memcpy(g, n->out->grad, tensor_bytes(x));
    } else {
        if (!s->bwd.prim && reorder_make(t, &s->bwd, &n->out->md, &x->md, "reorder", st)) return -1;
        if (reorder_run(t, &s->bwd, n->out->grad, g, "reorder backward", st)) return -1;
    }
    tape_grad_end(t, x, g);
    return 0;
}

const cc_op_def op_def_reorder = {"reorder", OPK_REORDER, plain_infer, plain_forward,
                                  plain_backward, reorder_state_free, NULL};

cc_tensor *op_plain(cc_tape *t, cc_tensor *x)
{
    if (x && tensor_is_plain(x)) return x;
    cc_op_args a;
    memset(&a, 0, sizeof a);
    return tape_record(t, OP_reorder, &x, 1, &a);
}

/* ---- reshape (plain data in, plain data out) ---- */

static void no_state_free(void *p) { free(p); }

static int reshape_infer(cc_tape *t, cc_node *n, cc_tensor *out, cc_status *st)
{
    (void)t;
    const cc_tensor *x = n->in[0];
    int nd = n->args.i[0];
    int64_t d[CC_MAX_DIMS], numel = 1;
    char a[64];
    if (nd < 1 || nd > CC_MAX_DIMS) return status_set(st, "reshape: bad rank %d", nd);
    for (int i = 0; i < nd; i++) numel *= d[i] = n->args.i[1 + i];
    if (numel != tensor_numel(x)) {
        tensor_set_shape(out, nd, d);
        return op_shape_fail(st, "reshape", "element count differs", x, out);
    }
    if (!tensor_is_plain(x))
        return status_set(st, "reshape: input %s is not plain (apply op_plain first)",
                          tensor_shape_str(x, a, sizeof a));
    tensor_set_shape(out, nd, d);
    return 0;
}

static int reshape_forward(cc_tape *t, cc_node *n, cc_status *st)
{
    (void)t, (void)st;
    memcpy(n->out->data, n->in[0]->data, tensor_bytes(n->out));
    return 0;
}

static int reshape_backward(cc_tape *t, cc_node *n, cc_status *st)
{
    cc_tensor *x = n->in[0];
    float *g = tape_grad_begin(t, x, st);
    if (!g) return x->requires_grad ? -1 : 0;
    memcpy(g, n->out->grad, tensor_bytes(x));
    tape_grad_end(t, x, g);
    return 0;
}

const cc_op_def op_def_reshape = {"reshape", OPK_OTHER, reshape_infer, reshape_forward,
                                  reshape_backward, no_state_free, NULL};

cc_tensor *op_reshape(cc_tape *t, cc_tensor *x, int ndim, const int64_t *dims)
{
    cc_op_args a;
    memset(&a, 0, sizeof a);
    a.i[0] = ndim;
    for (int i = 0; i < ndim && i < CC_MAX_DIMS; i++) a.i[1 + i] = (int32_t)dims[i];
    return tape_record(t, OP_reshape, (cc_tensor *[]){op_plain(t, x)}, 1, &a);
}

cc_tensor *op_flatten(cc_tape *t, cc_tensor *x)
{
    if (!x) return op_reshape(t, x, 1, (int64_t[]){1});
    int64_t d[2] = {x->dims[0], tensor_numel(x) / x->dims[0]};
    return op_reshape(t, x, 2, d);
}

/* ---- expand (N,1,H,W) over C channels ---- */

static int expand_infer(cc_tape *t, cc_node *n, cc_tensor *out, cc_status *st)
{
    (void)t;
    const cc_tensor *x = n->in[0];
    char a[64];
    if (x->ndim != 4 || x->dims[1] != 1 || n->args.i[0] < 1)
        return status_set(st, "expand_channels: need a (N,1,H,W) input and C >= 1, got %s and C=%d",
                          tensor_shape_str(x, a, sizeof a), n->args.i[0]);
    if (!tensor_is_plain(x))
        return status_set(st, "expand_channels: input is not plain (apply op_plain first)");
    int64_t d[4] = {x->dims[0], n->args.i[0], x->dims[2], x->dims[3]};
    tensor_set_shape(out, 4, d);
    return 0;
}

static int expand_forward(cc_tape *t, cc_node *n, cc_status *st)
{
    (void)t, (void)st;
    const cc_tensor *x = n->in[0];
    const int64_t N = x->dims[0], C = n->args.i[0], hw = x->dims[2] * x->dims[3];
    float *y = n->out->data;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < N; b++)
        for (int64_t c = 0; c < C; c++) memcpy(y + (b * C + c) * hw, x->data + b * hw, hw * sizeof(float));
    return 0;
}

static int expand_backward(cc_tape *t, cc_node *n, cc_status *st)
{
    cc_tensor *x = n->in[0];
    float *g = tape_grad_begin(t, x, st);
    if (!g) return x->requires_grad ? -1 : 0;
    const int64_t N = x->dims[0], C = n->args.i[0], hw = x->dims[2] * x->dims[3];
    const float *gy = n->out->grad;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < N; b++)
        for (int64_t i = 0; i < hw; i++) {
            float acc = 0;
            for (int64_t c = 0; c < C; c++) acc += gy[(b * C + c) * hw + i];
            g[b * hw + i] = acc;
        }
    tape_grad_end(t, x, g);
    return 0;
}

const cc_op_def op_def_expand_channels = {"expand_channels", OPK_OTHER, expand_infer,
                                          expand_forward, expand_backward, no_state_free, NULL};

cc_tensor *op_expand_channels(cc_tape *t, cc_tensor *x, int64_t c)
{
    cc_op_args a;
    memset(&a, 0, sizeof a);
    a.i[0] = (int32_t)c;
    return tape_record(t, OP_expand_channels, (cc_tensor *[]){op_plain(t, x)}, 1, &a);
}

/* ---- flip (mirror W and/or H; test-time flips on a tape) ---- */

static int flip_infer(cc_tape *t, cc_node *n, cc_tensor *out, cc_status *st)
{
    (void)t;
    const cc_tensor *x = n->in[0];
    char a[64];
    if (x->ndim != 4 || n->args.i[0] < 0 || n->args.i[0] > 3)
        return status_set(st, "flip: need an (N,C,H,W) input and bits 0..3, got %s and %d",
                          tensor_shape_str(x, a, sizeof a), n->args.i[0]);
    if (!tensor_is_plain(x))
        return status_set(st, "flip: input is not plain (apply op_plain first)");
    tensor_set_shape(out, 4, x->dims);
    return 0;
}

/* dst = src mirrored as bits say, for every (n,c) plane.  A mirror is its
 * own inverse, so the backward pass is the same map on the gradient. */
static void flip_planes(const float *src, float *dst, int64_t planes, int64_t h, int64_t w,
                        unsigned bits)
{
#pragma omp parallel for schedule(static) if (planes * h * w >= 65536)
    for (int64_t p = 0; p < planes; p++) {
        const float *s = src + p * h * w;
        float *d = dst + p * h * w;
        for (int64_t y = 0; y < h; y++) {
            const float *row = s + ((bits & 2) ? h - 1 - y : y) * w;
            float *o = d + y * w;
            if (bits & 1)
                for (int64_t x = 0; x < w; x++) o[x] = row[w - 1 - x];
            else
                memcpy(o, row, (size_t)w * sizeof(float));
        }
    }
}

static int flip_forward(cc_tape *t, cc_node *n, cc_status *st)
{
    (void)t, (void)st;
    const cc_tensor *x = n->in[0];
    flip_planes(x->data, n->out->data, x->dims[0] * x->dims[1], x->dims[2], x->dims[3],
                (unsigned)n->args.i[0]);
    return 0;
}

static int flip_backward(cc_tape *t, cc_node *n, cc_status *st)
{
    cc_tensor *x = n->in[0];
    float *g = tape_grad_begin(t, x, st);
    if (!g) return x->requires_grad ? -1 : 0;
    flip_planes(n->out->grad, g, x->dims[0] * x->dims[1], x->dims[2], x->dims[3],
                (unsigned)n->args.i[0]);
    tape_grad_end(t, x, g);
    return 0;
}

const cc_op_def op_def_flip = {"flip", OPK_OTHER, flip_infer, flip_forward, flip_backward,
                               no_state_free, NULL};

cc_tensor *op_flip(cc_tape *t, cc_tensor *x, unsigned bits)
{
    if (bits == 0) return x;
    cc_op_args a;
    memset(&a, 0, sizeof a);
    a.i[0] = (int32_t)bits;
    return tape_record(t, OP_flip, (cc_tensor *[]){op_plain(t, x)}, 1, &a);
}
