/* layers.h - the building blocks the models are made of.
 *
 * Each layer declares its tensors in the parameter store under PyTorch's
 * leaf names and shapes, below a module path given by the caller:
 *   conv    <path>/weight (O,I,k,k), <path>/bias (O)            [nn.Conv2d]
 *   linear  <path>/weight (O,I),     <path>/bias (O)            [nn.Linear]
 *   bn      <path>/weight (C), <path>/bias (C)                  trainable
 *           <path>/running_mean (C), <path>/running_var (C),
 *           <path>/num_batches_tracked (1)                      buffers
 *                                                      [nn.BatchNorm2d/1d]
 * (num_batches_tracked is a 1-element float32 here; PyTorch keeps a 0-d
 * int64: h5py users cast it.)
 *
 * Life cycle: layer_xxx_declare() before params_finalize(), layer_xxx_init()
 * after it, layer_xxx_forward() on every step.  Layers store parameter
 * indices only, so a model struct is plain data.
 *
 * Initialisation is PyTorch's default: conv/linear weights Kaiming-uniform
 * with a = sqrt(5), i.e. U(-1/sqrt(fan_in), +1/sqrt(fan_in)), biases the same
 * bound; BN gamma 1, beta 0, running_mean 0, running_var 1, count 0.  Each
 * tensor draws from its own random stream, derived from (seed, FNV-1a hash of
 * its name), so adding or removing a layer never changes the initial values
 * of the others.
 */
#ifndef CC_LAYERS_H
#define CC_LAYERS_H

#include <stdint.h>

#include "autodiff/ops.h"
#include "autodiff/params.h"

#define LAYER_LRELU_SLOPE 0.01f
#define LAYER_BN_MOMENTUM 0.1f
#define LAYER_BN_EPS 1e-5f

typedef struct layer_conv {
    int w, b;               /* parameter indices; b = -1 without bias */
    int cin, cout, k, stride, pad;
} layer_conv;

typedef struct layer_linear {
    int w, b;
    int in, out;
} layer_linear;

typedef struct layer_bn {
    int gamma, beta, mean, var, count;  /* weight, bias, running_*, num_batches_tracked */
    int c;
} layer_bn;

/* conv3x3 (pad 1, bias) -> BN -> LeakyReLU(0.01), as
 * <path>/conv/... and <path>/bn/... */
typedef struct layer_cba {
    layer_conv conv;
    layer_bn bn;
} layer_cba;

/* printf a module path into buf (CC_PARAM_NAME bytes).  Returns 0, or -1
 * with a message when the path does not fit. */
int layer_path(char *buf, cc_status *st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Stable 64-bit FNV-1a hash of a string (the per-parameter stream). */
uint64_t layer_name_hash(const char *s);

/* Declare a conv of kernel k (square), given stride and padding, with or
 * without bias, under `path`.  Returns 0, or -1 with a message (bad name,
 * duplicate). */
int layer_conv_declare(cc_params *P, const char *path, int cin, int cout, int k, int stride,
                       int pad, int bias, layer_conv *l, cc_status *st);
int layer_linear_declare(cc_params *P, const char *path, int in, int out, layer_linear *l,
                         cc_status *st);
int layer_bn_declare(cc_params *P, const char *path, int c, layer_bn *l, cc_status *st);
/* conv3x3 pad 1 with bias at <path>/conv, BN at <path>/bn. */
int layer_cba_declare(cc_params *P, const char *path, int cin, int cout, layer_cba *l,
                      cc_status *st);

/* Default initialisation (finalized store). */
void layer_conv_init(cc_params *P, const layer_conv *l, uint64_t seed);
void layer_linear_init(cc_params *P, const layer_linear *l, uint64_t seed);
void layer_bn_init(cc_params *P, const layer_bn *l);
void layer_cba_init(cc_params *P, const layer_cba *l, uint64_t seed);

/* Forwards: x (N,cin,H,W) or (N,in); NULL on error (message in the tape,
 * sticky; NULL x gives NULL).  BN uses batch statistics on a training tape
 * and running statistics on an inference tape (momentum 0.1, eps 1e-5), or
 * running statistics on any tape when P->bn_eval is set (params.h). */
cc_tensor *layer_conv_forward(cc_tape *t, cc_params *P, const layer_conv *l, cc_tensor *x);
cc_tensor *layer_linear_forward(cc_tape *t, cc_params *P, const layer_linear *l, cc_tensor *x);
cc_tensor *layer_bn_forward(cc_tape *t, cc_params *P, const layer_bn *l, cc_tensor *x);
cc_tensor *layer_lrelu(cc_tape *t, cc_tensor *x);
/* layer_lrelu(layer_bn_forward(...)) as one fused node (op_batch_norm_lrelu):
 * same values and gradients, one activation tensor less. */
cc_tensor *layer_bn_lrelu_forward(cc_tape *t, cc_params *P, const layer_bn *l, cc_tensor *x);
/* layer_bn_lrelu_forward(layer_conv_forward(c, x)); on an inference tape
 * (fp32, t->no_fold unset) as one convolution with the batch norm folded
 * into its weights (op_conv2d_bn_lrelu_eval): the same values to float
 * rounding. */
cc_tensor *layer_conv_bn_lrelu_forward(cc_tape *t, cc_params *P, const layer_conv *c,
                                       const layer_bn *bn, cc_tensor *x);
/* layer_conv_bn_lrelu_forward of the block's conv and bn. */
cc_tensor *layer_cba_forward(cc_tape *t, cc_params *P, const layer_cba *l, cc_tensor *x);

#endif
