/* fpn.h - the segmentation network: a feature pyramid (SPEC "FPN").
 *
 *   stem     conv3x3(Cin->1)+BN+LeakyReLU                 p0 (N,1,H,W)
 *   down     p_k = avgpool2x2(p_{k-1}), k = 1..D
 *   top-down u_0 = p_D expanded to d channels
 *            u_i = upsample2x(u_{i-1}) + lateral_i(p_{D-i}), i = 1..D-1,
 *            lateral_i = conv3x3(1->d)+BN+LeakyReLU
 *   heads    per level i = 0..D-1 on u_i (N,d,H/2^(D-i),W/2^(D-i)):
 *            mean_i   = cba(d->2d) -> cba(2d->2d) -> conv3x3(2d->1) -> ReLU
 *            logvar_i = same shapes, own weights, last conv not activated
 *
 * Parameter paths (prefix "fpn" by default; docs/PARAMS.md lists them all):
 *   <prefix>/stem/conv/{weight,bias}
 *   <prefix>/stem/bn/{weight,bias,running_mean,running_var,num_batches_tracked}
 *   <prefix>/lateral/<i>/conv/...,  <prefix>/lateral/<i>/bn/...    i = 1..D-1
 *   <prefix>/heads/{mean,logvar}/<i>/{conv1,bn1,conv2,bn2,conv3}/...  i = 0..D-1
 * (level 0 is the coarsest, D-1 the finest, as in fpn_output).
 */
#ifndef CC_FPN_H
#define CC_FPN_H

#include "models/layers.h"

#define FPN_MAX_DEPTH 5

typedef struct fpn_config {
    int depth;              /* D, 2..5 (default 4) */
    int width;              /* d, >= 1 (default 128) */
    int in_channels;        /* Cin, 1 or 3 */
} fpn_config;

/* One head stack: conv1/bn1, conv2/bn2, conv3. */
typedef struct fpn_head {
    layer_conv conv1, conv2, conv3;
    layer_bn bn1, bn2;
} fpn_head;

typedef struct fpn_model {
    fpn_config cfg;
    layer_cba stem;
    layer_cba lateral[FPN_MAX_DEPTH];   /* [1..D-1] used */
    fpn_head mean[FPN_MAX_DEPTH], logvar[FPN_MAX_DEPTH];
} fpn_model;

typedef struct fpn_output {
    int levels;                             /* D */
    cc_tensor *mean[FPN_MAX_DEPTH];         /* (N,1,H/2^(D-i),W/2^(D-i)), >= 0 */
    cc_tensor *logvar[FPN_MAX_DEPTH];       /* same shape, unbounded */
} fpn_output;

/* The paper's configuration: D = 4, d = 128, Cin = 1. */
fpn_config fpn_config_default(void);

/* Declare the model's parameters under `prefix` (e.g. "fpn") in an
 * unfinalized store and fill m.  Returns 0, or -1 with a message (depth
 * outside 2..5, width < 1, in_channels not 1 or 3, duplicate names). */
int fpn_build(cc_params *P, const fpn_config *cfg, const char *prefix, fpn_model *m,
              cc_status *st);

/* PyTorch default initialisation of every FPN tensor (finalized store). */
void fpn_init(cc_params *P, const fpn_model *m, uint64_t seed);

/* Forward x (N,Cin,H,W) on tape t.  Fills out with D means and log-variances.
 * H and W must be divisible by 2^D.  Returns 0, or -1 with the message in
 * the tape (tape_error): wrong channel count, size not divisible (naming the
 * size and the depth), or an op failure. */
int fpn_forward(cc_tape *t, cc_params *P, const fpn_model *m, cc_tensor *x, fpn_output *out);

#endif
