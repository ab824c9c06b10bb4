/* tape.h - the reverse-mode tape.
 *
 * Ops run eagerly as a model is built (define-by-run) and, in training mode,
 * are recorded as nodes of an append-only list; tape_backward() walks that
 * list in reverse and accumulates (+=) gradients, so a tensor used twice gets
 * both contributions.
 *
 * Memory: every tensor an op makes lives in the tape's arena until
 * tape_reset().  Node slots persist across resets, and each keeps the oneDNN
 * primitives and memory objects it built, keyed on the op, its arguments,
 * the input layouts and the thread count: when the next step records the same
 * graph, nothing is created or allocated again.  Keep one tape per graph
 * shape (e.g. one for training, one for evaluation) so each stays warm.
 *
 * Errors are sticky: the first failing op stores its message in the tape and
 * returns NULL; every later op given a NULL input returns NULL too.  Check
 * tape_ok()/tape_error() once after building the graph.
 */
#ifndef CC_TAPE_H
#define CC_TAPE_H

#include <stdint.h>

#include "autodiff/arena.h"
#include "autodiff/ctx.h"
#include "autodiff/tensor.h"

typedef struct cc_node cc_node;
typedef struct cc_tensor_block cc_tensor_block;

/* Time categories for the profile (bench/ prints the breakdown). */
typedef enum cc_op_kind {
    OPK_CONV, OPK_BNORM, OPK_ELTWISE, OPK_POOL, OPK_RESAMPLE, OPK_BINARY,
    OPK_LINEAR, OPK_LOSS, OPK_REORDER, OPK_OTHER, OPK_COUNT
} cc_op_kind;

typedef struct cc_tape {
    cc_ctx *ctx;
    int training;           /* 1: batch-stat BN, nodes recorded for backward */
    cc_arena arena;
    cc_node *nodes;         /* persistent slots; first n_nodes used this step */
    int n_nodes, cap_nodes;
    int n_recorded;         /* nodes usable by backward this step */
    cc_tensor_block *tensors;   /* stable-address tensor pool */
    int tensor_used;
    void *scratch;          /* oneDNN user scratchpad shared by all nodes */
    size_t scratch_size;
    cc_status status;       /* sticky first error */
    int profile;            /* accumulate per-kind seconds below */
    double prof_seconds[OPK_COUNT][2];  /* [kind][0 forward, 1 backward] */
    /* Optional, caller-owned: with profile set, node k's seconds are also
     * added to prof_node[k][0 forward, 1 backward] for k < prof_node_cap
     * (bench --per-node).  NULL: off. */
    double (*prof_node)[2];
    int prof_node_cap;
    /* 1: backward recycles each intermediate tensor's gradient as soon as
     * the op that produced the tensor has used it, so a step's peak memory
     * holds a few layers' gradients instead of all of them (set it in
     * training loops).  Gradients of leaves (tape_input tensors, parameters)
     * are kept; tape_read_grad() of an intermediate then fails.  0 (the
     * default): every gradient stays readable until tape_reset(). */
    int free_grads;
    void *grad_free;        /* recycled gradient buffers (free list) */
    /* oneDNN primitives created with a reference ("ref:") implementation,
     * often 100-1000x slower than a reorder to a layout a JIT kernel takes;
     * the last one's description.  Tests assert the models avoid them. */
    int n_ref_prims;
    char ref_what[64];
    /* tape_fix_weights(): while weights_fixed is set, ops may keep their
     * weights in the primitive's layout from one step to the next
     * (tagged with weights_gen) instead of reordering them every step. */
    int weights_fixed;
    uint64_t weights_gen;
    /* 1: model code keeps conv, batch norm and activation as separate
     * nodes on this inference tape instead of folding them into one
     * convolution (layers.h), e.g. for a per-layer summary.  0 (default). */
    int no_fold;
    /* Node states built so far (infer() calls, where primitives are
     * created): a steady-state step leaves it unchanged. */
    int64_t n_builds;
} cc_tape;

/* training = 1 records nodes and uses batch statistics; 0 is inference
 * mode: nothing is recorded for backward, BN uses running statistics, and
 * outputs never require gradients. */
void tape_init(cc_tape *t, cc_ctx *ctx, int training);

/* Free nodes (with their primitives), tensors and the arena. */
void tape_free(cc_tape *t);

/* Start a new step: forget tensors and gradients, keep node states, the
 * arena's memory and the error-free status. */
void tape_reset(cc_tape *t);

/* Switch mode; takes effect for ops recorded after the call. */
void tape_set_training(cc_tape *t, int training);

/* fixed = 1: the caller promises that no parameter this tape's ops read
 * changes value (or is freed) until the next call, as in inference on a
 * loaded model; the conv ops then reorder their parameter weights
 * (params_tensor views; other tensors as before) to the primitive's layout
 * once and reuse that copy every step (a copy is also dropped when the op is
 * given another parameter).  fixed = 0 withdraws the promise.
 * Either call discards the copies, so call it again after changing
 * weights.  Off by default: training and validation between optimizer
 * steps never set it. */
void tape_fix_weights(cc_tape *t, int fixed);

int tape_ok(const cc_tape *t);
const char *tape_error(const cc_tape *t);

/* A new plain tensor in the arena, filled from data (copied) or zeroed when
 * data is NULL.  requires_grad makes it a differentiable leaf. */
cc_tensor *tape_input(cc_tape *t, int ndim, const int64_t *dims, const float *data,
                      int requires_grad);

/* A leaf view of x that shares its data but stops gradients. */
cc_tensor *tape_detach(cc_tape *t, cc_tensor *x);

/* Copy x's values into dst in plain (row-major, logical) order, whatever
 * x's layout.  dst holds tensor_numel(x) floats.  Returns 0 or -1. */
int tape_read(cc_tape *t, cc_tensor *x, float *dst);

/* Same for x's gradient (zeros if none reached it). */
int tape_read_grad(cc_tape *t, cc_tensor *x, float *dst);

/* Backpropagate from a 1-element loss: d loss/d loss = 1.  Parameter grads
 * accumulate into their slabs (zero them with params_zero_grad()).  With
 * ctx->grad_event set, reports each parameter's gradient as final as soon
 * as the walk has passed the earliest node reading it (ctx.h).
 * Returns 0, or -1 (message in the tape) in inference mode or on failure. */
int tape_backward(cc_tape *t, cc_tensor *loss);

/* Backpropagate from any tensor y with d out/d y = seed (plain order,
 * tensor_numel(y) floats), e.g. ones to get the gradient of a sum of
 * predictions (saliency), or random weights in a gradient check. */
int tape_backward_seed(cc_tape *t, cc_tensor *y, const float *seed);

#endif
