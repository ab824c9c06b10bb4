/* op.h - what an op author needs: the node record, the op definition, and
 * helpers for recording, gradients and oneDNN execution.  Users include
 * autodiff/ops.h instead.  Recording and gradients live in tape.c, the op
 * table in op_registry.c, the oneDNN helpers in dnnl_util.c.
 *
 * Recipe for an op (see op_conv.c):
 *   - a public builder `op_xxx(tape, inputs..., args...)` that fills a
 *     cc_op_args and calls tape_record();
 *   - infer(): check inputs (error naming the op and both shapes), set the
 *     output's shape and layout, (re)build primitives into node->state;
 *   - forward(): compute node->out->data from the inputs;
 *   - backward(): for each input that requires a gradient, get a buffer with
 *     tape_grad_begin(), OVERWRITE it, then call tape_grad_end(), which adds
 *     into an existing gradient when there is one;
 *   - state_free(): destroy what infer() built;
 *   - one line in ops.h's CC_OPS list.
 */
#ifndef CC_OP_H
#define CC_OP_H

#include <oneapi/dnnl/dnnl.h>

#include "autodiff/tape.h"

#define OP_MAX_IN 8

/* Op arguments: small, POD, compared bytewise to decide state reuse.  Each
 * op documents which slots it uses.  Zero-fill before use. */
typedef struct cc_op_args {
    int32_t i[8];
    float f[4];
    cc_tensor *aux[3];      /* non-differentiable side tensors (BN running stats) */
} cc_op_args;

typedef struct cc_op_def {
    const char *name;
    cc_op_kind kind;
    /* Check node->in[] and node->args, set out's ndim/dims/md.  May build
     * node->state (called only when the node's key changed). */
    int (*infer)(cc_tape *t, cc_node *n, cc_tensor *out, cc_status *st);
    /* Compute node->out->data; called on every recording. */
    int (*forward)(cc_tape *t, cc_node *n, cc_status *st);
    /* Accumulate input gradients from node->out->grad.  NULL: not differentiable. */
    int (*backward)(cc_tape *t, cc_node *n, cc_status *st);
    void (*state_free)(void *state);
    /* Forward multiply-accumulates of a recorded node, counted as
     * torch_ref.py's count_macs() does (conv n*ho*wo*cout*cin*k*k, linear
     * n*in*out) for the model summary and the benchmark's FLOP rate.  NULL:
     * the op is not counted (no weights multiplied). */
    int64_t (*macs)(const cc_node *n);
} cc_op_def;

struct cc_node {
    int op;                         /* index into the op table */
    int n_in;
    cc_tensor *in[OP_MAX_IN];
    cc_tensor *out;
    cc_op_args args;
    void *state;                    /* op-private, persists across resets */
    /* key the state was built for */
    int key_valid, key_training, key_threads, key_n_in, key_bf16;
    /* 1: too little work to wake a second thread for (tape.c,
     * node_is_small): infer, forward and backward run with OpenMP capped
     * at one thread.  Decided with the key, from shapes only. */
    int serial;
    cc_op_args key_args;
    dnnl_memory_desc_t key_md[OP_MAX_IN];
    int out_ndim;                   /* output shape/layout infer() chose */
    int64_t out_dims[CC_MAX_DIMS];
    dnnl_memory_desc_t out_md;
};

const cc_op_def *tape_op_def(int op);

/* Node n's forward multiply-accumulates (cc_op_def.macs), 0 for ops that
 * are not counted. */
int64_t tape_node_macs(const cc_node *n);

/* Record (training) or just run (inference) an op; returns its output or
 * NULL on error (sticky).  NULL inputs propagate silently. */
cc_tensor *tape_record(cc_tape *t, int op, cc_tensor *const *in, int n_in,
                       const cc_op_args *args);

/* Gradient protocol for backward(): returns a buffer of tensor_bytes(x) to be
 * OVERWRITTEN with this node's contribution (x->grad itself when x has no
 * gradient yet, else a temporary), or NULL when x needs no gradient. */
float *tape_grad_begin(cc_tape *t, cc_tensor *x, cc_status *st);
/* Commit the contribution written into buf (adds it when it was a temporary). */
void tape_grad_end(cc_tape *t, cc_tensor *x, float *buf);

/* Arena memory for the current step (not zeroed). */
void *tape_alloc(cc_tape *t, size_t bytes, cc_status *st);

/* Create a primitive descriptor's primitive with user scratchpad and grow the
 * tape's scratchpad if needed.  *scratch_mem is a memory object for the
 * scratchpad (bound at execution).  Returns 0 or -1 naming `what`. */
int tape_prim_create(cc_tape *t, const_dnnl_primitive_desc_t pd, dnnl_primitive_t *prim,
                     dnnl_memory_t *scratch_mem, const char *what, cc_status *st);

/* A primitive descriptor for the op descriptor `desc` (a dnnl_*_desc_t)
 * with tape_attr_new()'s attributes; hint: the forward primitive
 * descriptor for a backward one, else NULL.  Returns oneDNN's status (for
 * callers that retry with other layouts or types); the caller owns *pd. */
dnnl_status_t tape_pd_create(cc_tape *t, dnnl_primitive_desc_t *pd, const_dnnl_op_desc_t desc,
                             const_dnnl_primitive_desc_t hint);

/* The usual sequence: tape_pd_create, then tape_prim_create.  Returns 0, or
 * -1 with "<op>: oneDNN <pd_what> failed (...)" when there is no primitive
 * descriptor (else tape_prim_create's message naming op).  *pd, *prim and
 * *scratch_mem belong to the caller (its state_free destroys them). */
int tape_prim_make(cc_tape *t, const_dnnl_op_desc_t desc, const_dnnl_primitive_desc_t hint,
                   dnnl_primitive_desc_t *pd, dnnl_primitive_t *prim, dnnl_memory_t *scratch_mem,
                   const char *op, const char *pd_what, cc_status *st);

/* Whether oneDNN gave pd its reference implementation ("ref:..."), often
 * 100-1000x slower than a reorder to a layout a JIT kernel takes. */
int op_pd_is_ref(const_dnnl_primitive_desc_t pd);

/* A primitive attribute with user scratchpad mode (caller destroys it). */
dnnl_primitive_attr_t tape_attr_new(void);

/* Execute prim with args[0..nargs) plus the scratchpad. */
int tape_exec(cc_tape *t, dnnl_primitive_t prim, dnnl_memory_t scratch_mem, int nargs,
              dnnl_exec_arg_t *args, const char *what, cc_status *st);

/* Create a memory object for md with no buffer yet; bind with mem_bind(). */
int tape_mem_create(cc_tape *t, dnnl_memory_t *m, const dnnl_memory_desc_t *md, cc_status *st);
static inline void mem_bind(dnnl_memory_t m, void *p) { dnnl_memory_set_data_handle(m, p); }

/* A layout change between two descriptors, built once, run per step.
 * `needed` is 0 when the layouts are equal (run then does nothing: callers
 * use the source buffer directly). */
typedef struct cc_reorder {
    int needed;
    dnnl_primitive_t prim;
    dnnl_memory_t from, to;
} cc_reorder;

int reorder_make(cc_tape *t, cc_reorder *r, const dnnl_memory_desc_t *from,
                 const dnnl_memory_desc_t *to, const char *what, cc_status *st);
int reorder_run(cc_tape *t, cc_reorder *r, const void *from, void *to, const char *what,
                cc_status *st);
void reorder_free(cc_reorder *r);

/* Execute the forward primitive of an op with weights (conv2d, linear; fp32
 * or bf16): buf[0..3) (input, weights, output) bound to m[0..3) as SRC,
 * WEIGHTS and DST, and, when buf[3] (the bias) is not NULL, it to m[3] as
 * BIAS. */
int op_exec_weighted(cc_tape *t, dnnl_primitive_t prim, dnnl_memory_t scratch_mem,
                     const dnnl_memory_t m[4], void *const buf[4], const char *what,
                     cc_status *st);

/* Execute the weight-gradient primitive of such an op: a[0..3) (SRC,
 * DIFF_DST, DIFF_WEIGHTS into dw) bound by the caller, and, with a bias b,
 * a[3] (DIFF_BIAS, memory m_db) bound here to b's own gradient when b wants
 * one, else to scratch.  Then r_dw reorders dw into gw (w's gradient from
 * tape_grad_begin; NULL: not wanted; what_dw names that reorder) and the
 * gradients are committed (tape_grad_end). */
int op_exec_weights_grad(cc_tape *t, dnnl_primitive_t prim, dnnl_memory_t scratch_mem,
                         dnnl_exec_arg_t a[4], dnnl_memory_t m_db, cc_tensor *w, cc_tensor *b,
                         float *gw, float *dw, cc_reorder *r_dw, const char *what,
                         const char *what_dw, cc_status *st);

/* The end of a weight gradient computed into dw (the kernel's layout):
 * r_dw reorders it into gw (w's gradient from tape_grad_begin; NULL: not
 * wanted; what_dw names that reorder; r_dw NULL: the kernel wrote gw
 * itself), then w's and b's gradients (gb from tape_grad_begin, or NULL)
 * are committed.  op_exec_weights_grad ends so. */
int op_weights_grad_end(cc_tape *t, cc_reorder *r_dw, const float *dw, cc_tensor *w, float *gw,
                        cc_tensor *b, float *gb, const char *what_dw, cc_status *st);

/* Add n floats of src into dst (OpenMP). */
void op_accumulate(float *dst, const float *src, size_t n);

/* Report a oneDNN failure as "op: what (dnnl_status)". */
int op_dnnl_fail(cc_status *st, const char *op, const char *what, dnnl_status_t s);

/* Shape-mismatch message helper: "op: <what> (got AxB, expected CxD)". */
int op_shape_fail(cc_status *st, const char *op, const char *what, const cc_tensor *got,
                  const cc_tensor *expected);

#define DNNL_TRY(st, op, what, call)                                      \
    do {                                                                  \
        dnnl_status_t s_ = (call);                                        \
        if (s_ != dnnl_success) return op_dnnl_fail((st), (op), (what), s_); \
    } while (0)

#endif
