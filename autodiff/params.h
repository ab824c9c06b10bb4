/* params.h - the parameter store.
 *
 * Trainable parameters live in four contiguous float slabs (value, grad,
 * Adam first and second moments) so an optimizer step, a gradient norm or a
 * checkpoint is one loop over one array.  Buffers (BatchNorm running_mean,
 * running_var, num_batches_tracked) live in a fifth slab: stored and
 * checkpointed, never trained.
 *
 * Names are module paths that double as HDF5 paths under /params, with
 * PyTorch's leaf names and shapes: "fpn/heads/mean/3/conv1/weight" is stored
 * at /params/fpn/heads/mean/3/conv1/weight with shape (O, I, kH, kW).
 *
 * Life cycle: params_add() every tensor (the model builders do this), then
 * params_finalize() allocates the slabs; tensors are usable after that.
 */
#ifndef CC_PARAMS_H
#define CC_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "autodiff/ctx.h"
#include "autodiff/rng.h"
#include "autodiff/tensor.h"

#define CC_PARAM_NAME 160

typedef enum cc_param_kind { PARAM_TRAINABLE = 0, PARAM_BUFFER = 1 } cc_param_kind;

typedef struct cc_param {
    char name[CC_PARAM_NAME];
    int ndim;
    int64_t shape[CC_MAX_DIMS];
    size_t numel;
    size_t offset;          /* into the trainable or the buffer slab */
    cc_param_kind kind;
    int frozen;             /* trainable but excluded from gradients/updates */
    cc_tensor t;            /* view into the slabs (valid after finalize) */
} cc_param;

typedef struct cc_params {
    cc_ctx *ctx;
    cc_param *p;
    int n, cap;
    size_t n_train, n_buf;          /* slab lengths in floats */
    float *value, *grad, *m, *v;    /* n_train each */
    float *buf;                     /* n_buf */
    int finalized;
    /* 1: the models' BN layers (layer_bn_forward) normalise with the running
     * statistics even on a training tape and never update them, i.e.
     * PyTorch's module.eval() for this store; gradients still flow (saliency,
     * frozen feature extractors).  0 (params_init's default): BN follows the
     * tape's mode. */
    int bn_eval;
    /* 1: on a training tape, BN running statistics become the cumulative
     * average over the batches since num_batches_tracked was 0 (PyTorch's
     * momentum=None), for re-estimating them with fixed weights. */
    int bn_cumulative;
} cc_params;

void params_init(cc_params *P, cc_ctx *ctx);
void params_free(cc_params *P);

/* Declare a tensor.  Returns its index, or -1 (duplicate name, bad shape,
 * already finalized, out of memory) with a message. */
int params_add(cc_params *P, const char *name, int ndim, const int64_t *shape,
               cc_param_kind kind, cc_status *st);

/* Allocate zeroed slabs and bind every tensor view.  Returns 0 or -1. */
int params_finalize(cc_params *P, cc_status *st);

/* Index of a name, or -1. */
int params_find(const cc_params *P, const char *name);

/* The tensor view of parameter i (finalized store). */
cc_tensor *params_tensor(cc_params *P, int i);

/* Freeze/unfreeze every trainable parameter whose name starts with prefix
 * ("" = all).  Frozen tensors get no gradient and no update.  Returns the
 * number of parameters changed. */
int params_set_frozen(cc_params *P, const char *prefix, int frozen);

/* Total trainable parameter count (frozen included), as torchsummary counts. */
size_t params_count_trainable(const cc_params *P);

void params_zero_grad(cc_params *P);

/* Initialisation as PyTorch's defaults: weights Kaiming-uniform with
 * a = sqrt(5), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)); same bound for
 * biases.  stream makes each parameter's numbers independent of the
 * others'. */
void params_init_uniform(cc_params *P, int i, float bound, uint64_t seed, uint64_t stream);
void params_fill(cc_params *P, int i, float value);

#endif
