/* op_concat.c - concatenation along channels (dim 1) on oneDNN.
 *
 * Op `concat`.  args: none.  in: x_0..x_{n-1}, 2 <= n <= OP_MAX_IN, all
 * (N,C_i,H,W) with the same N, H, W, each in any layout.
 * Out (N, sum C_i, H, W).
 *
 * Layout choice.  Backward copies channel slice [off_i, off_i + C_i) of
 * out->grad into x_i's layout with a reorder whose source is a oneDNN
 * sub-memory view of out->md (offset encoded in the view).  oneDNN can only
 * describe such a view in a blocked layout (nChw8c/16c) when the slice
 * starts on a block boundary (and spans whole blocks or ends the tensor);
 * channel counts like 1, 3, 2 give offsets 1 and 4, which no blocked view
 * can express.  So:
 *   - all inputs plain                 -> output plain (abcd);
 *   - otherwise the concat primitive picks the output layout (`any`, which
 *     follows the first blocked input) and we keep it only if it is
 *     channel-blocked and every input's channel slice is a valid view of it;
 *   - else (or if oneDNN cannot build that concat) the output is plain,
 *     where every slice is a view.
 * Plain output costs the next conv one input reorder; a wrong or
 * unsupported blocked view would cost correctness, so this is the safe
 * trade.  The same views and reorders are used whatever the layout, so
 * there is a single backward path.  Backward reorders are built on first use.
 */
#include "autodiff/op.h"
#include "autodiff/ops.h"

#include <stdlib.h>
#include <string.h>

typedef struct concat_state {
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t fwd;
    dnnl_memory_t scr, m_dst, m_src[OP_MAX_IN];
    dnnl_memory_desc_t view_md[OP_MAX_IN];  /* slice i of the output layout */
    cc_reorder r_bwd[OP_MAX_IN];
    int bwd_ready[OP_MAX_IN];
} concat_state;

static void concat_free(void *p)
{
    concat_state *s = p;
    if (!s) return;
    if (s->fwd) dnnl_primitive_destroy(s->fwd);
    if (s->pd) dnnl_primitive_desc_destroy(s->pd);
    if (s->scr) dnnl_memory_destroy(s->scr);
    if (s->m_dst) dnnl_memory_destroy(s->m_dst);
    for (int i = 0; i < OP_MAX_IN; i++) {
        if (s->m_src[i]) dnnl_memory_destroy(s->m_src[i]);
        reorder_free(&s->r_bwd[i]);
    }
    free(s);
}

/* Create the concat pd for dst_md (may be `any`) and, when every input's
 * channel slice is a valid sub-memory view of the resulting dst layout,
 * fill view_md and return 0.  Returns 1 when this dst layout does not work
 * (pd destroyed); never sets an error. */
static int concat_try(cc_tape *t, const cc_node *n, concat_state *s, const dnnl_memory_desc_t *dst_md)
{
    dnnl_memory_desc_t srcs[OP_MAX_IN];
    for (int i = 0; i < n->n_in; i++) srcs[i] = n->in[i]->md;
    dnnl_primitive_attr_t attr = tape_attr_new();
    dnnl_status_t e = dnnl_concat_primitive_desc_create(&s->pd, dst_md, n->n_in, 1, srcs, attr,
                                                        t->ctx->engine);
    dnnl_primitive_attr_destroy(attr);
    if (e != dnnl_success) {
        s->pd = NULL;
        return 1;
    }
    const dnnl_memory_desc_t *q = dnnl_primitive_desc_query_md(s->pd, dnnl_query_dst_md, 0);
    /* From `any`, keep only a channel-blocked choice: oneDNN derives the
     * layout from a source's strides, and a 1-channel plain source has tied
     * N/C strides that it may read as channel-major (bacd). */
    if (dst_md->format_kind == dnnl_format_kind_any && q->format_desc.blocking.inner_nblks == 0) {
        dnnl_primitive_desc_destroy(s->pd);
        s->pd = NULL;
        return 1;
    }
    int64_t off = 0;
    for (int i = 0; i < n->n_in; i++) {
        const cc_tensor *x = n->in[i];
        dnnl_dims_t dims = {x->dims[0], x->dims[1], x->dims[2], x->dims[3]};
        dnnl_dims_t offs = {0, off, 0, 0};
        if (dnnl_memory_desc_init_submemory(&s->view_md[i], q, dims, offs) != dnnl_success) {
            dnnl_primitive_desc_destroy(s->pd);
            s->pd = NULL;
            return 1;
        }
        off += x->dims[1];
    }
    return 0;
}

static int concat_infer(cc_tape *t, cc_node *n, cc_tensor *out, cc_status *st)
{
    const cc_tensor *x0 = n->in[0];
    char a[64], b[64];
    int all_plain = 1;
    int64_t ctot = 0;
    for (int i = 0; i < n->n_in; i++) {
        const cc_tensor *x = n->in[i];
        if (x->ndim != 4)
            return status_set(st, "concat: input %d must be 4-D (N,C,H,W), got %s", i,
                              tensor_shape_str(x, a, sizeof a));
        if (x->dims[0] != x0->dims[0] || x->dims[2] != x0->dims[2] || x->dims[3] != x0->dims[3])
            return status_set(st, "concat: inputs must share N, H, W (input 0 is %s, input %d is %s)",
                              tensor_shape_str(x0, a, sizeof a), i, tensor_shape_str(x, b, sizeof b));
        all_plain &= tensor_is_plain(x);
        ctot += x->dims[1];
    }
    concat_state *s = calloc(1, sizeof *s);
    if (!s) return status_set(st, "concat: out of memory");
    n->state = s;
    int64_t od[4] = {x0->dims[0], ctot, x0->dims[2], x0->dims[3]};
    dnnl_memory_desc_t plain, any;
    tensor_md_plain(&plain, 4, od);
    dnnl_dims_t dd = {od[0], od[1], od[2], od[3]};
    DNNL_TRY(st, "concat", "md", dnnl_memory_desc_init_by_tag(&any, 4, dd, dnnl_f32, dnnl_format_tag_any));
    if ((all_plain || concat_try(t, n, s, &any)) && concat_try(t, n, s, &plain)) {
        /* Only reached if oneDNN rejects a plain concat or a plain view. */
        return status_set(st, "concat: oneDNN cannot concatenate these inputs (input 0 %s)",
                          tensor_shape_str(x0, a, sizeof a));
    }
    if (tape_prim_create(t, s->pd, &s->fwd, &s->scr, "concat", st)) return -1;
    const dnnl_memory_desc_t *q = dnnl_primitive_desc_query_md(s->pd, dnnl_query_dst_md, 0);
    if (tape_mem_create(t, &s->m_dst, q, st)) return -1;
    for (int i = 0; i < n->n_in; i++)
        if (tape_mem_create(t, &s->m_src[i], &n->in[i]->md, st)) return -1;
    out->ndim = 4;
    memcpy(out->dims, od, sizeof od);
    out->md = *q;
    return 0;
}

static int concat_forward(cc_tape *t, cc_node *n, cc_status *st)
{
    concat_state *s = n->state;
    dnnl_exec_arg_t a[OP_MAX_IN + 1];
    for (int i = 0; i < n->n_in; i++) {
        mem_bind(s->m_src[i], n->in[i]->data);
        a[i].arg = DNNL_ARG_MULTIPLE_SRC + i;
        a[i].memory = s->m_src[i];
    }
    mem_bind(s->m_dst, n->out->data);
    a[n->n_in].arg = DNNL_ARG_DST;
    a[n->n_in].memory = s->m_dst;
    return tape_exec(t, s->fwd, s->scr, n->n_in + 1, a, "concat forward", st);
}

static int concat_backward(cc_tape *t, cc_node *n, cc_status *st)
{
    concat_state *s = n->state;
    for (int i = 0; i < n->n_in; i++) {
        cc_tensor *x = n->in[i];
        if (!x->requires_grad) continue;
        if (!s->bwd_ready[i]) {
            if (reorder_make(t, &s->r_bwd[i], &s->view_md[i], &x->md, "concat backward", st))
                return -1;
            s->bwd_ready[i] = 1;
        }
        float *g = tape_grad_begin(t, x, st);
        if (!g) return -1;
        /* The view's offset lives in its md, so the source is the base pointer;
         * equal descriptors (offset 0, same strides) mean a straight copy. */
        if (!s->r_bwd[i].needed)
            memcpy(g, n->out->grad, tensor_bytes(x));
        else if (reorder_run(t, &s->r_bwd[i], n->out->grad, g, "concat backward", st))
            return -1;
        tape_grad_end(t, x, g);
    }
    return 0;
}

const cc_op_def op_def_concat = {"concat", OPK_OTHER, concat_infer, concat_forward,
                                 concat_backward, concat_free, NULL};

cc_tensor *op_concat(cc_tape *t, cc_tensor *const *xs, int n)
{
    if (!tape_ok(t)) return NULL;
    if (n < 2 || n > OP_MAX_IN) {
        status_set(&t->status, "concat: needs 2 to %d inputs, got %d", OP_MAX_IN, n);
        return NULL;
    }
    cc_op_args a;
    memset(&a, 0, sizeof a);
    return tape_record(t, OP_concat, xs, n, &a);
}
