/* ops.h - the differentiable ops, and the one table that registers them.
 *
 * Every op takes the tape first, returns a new tensor in the tape's arena, or
 * NULL on error (the message is kept in the tape; NULL inputs give NULL).
 * Shapes are logical (N,C,H,W).  Inputs may be in any layout; outputs are in
 * the layout the op's oneDNN primitive prefers (C kernels produce plain).
 *
 * Adding an op: write autodiff/op_<family>.c (builder + infer/forward/
 * backward) and add one X(...) line below plus its prototype.
 */
#ifndef CC_OPS_H
#define CC_OPS_H

#include "autodiff/tape.h"

#define CC_OPS(X)                                                              \
    X(conv2d)          /* op_conv.c */                                         \
    X(reorder)         /* op_shape.c: layout change only */                    \
    X(reshape)         /* op_shape.c */                                        \
    X(expand_channels) /* op_shape.c */                                        \
    X(flip)            /* op_shape.c: mirror W and/or H */                     \
    X(batch_norm)      /* op_bnorm.c */                                        \
    X(eltwise)         /* op_eltwise.c: relu, leaky_relu, exp, clamp, scale */ \
    X(pool)            /* op_pool.c: max, avg, global avg */                   \
    X(resample)        /* op_resample.c: bilinear x2 */                        \
    X(concat)          /* op_concat.c: along channels */                       \
    X(binary)          /* op_binary.c: add, mul (channel broadcast) */         \
    X(linear)          /* op_linear.c */                                       \
    X(reduce)          /* op_reduce.c: sum, mean */                            \
    X(loss_gauss)      /* op_loss.c: nll, paper */                             \
    X(loss_mse)        /* op_loss.c */                                         \
    X(tv)              /* op_loss.c */

#define CC_OP_ENUM(name) OP_##name,
enum { CC_OPS(CC_OP_ENUM) OP_COUNT };
#undef CC_OP_ENUM

/* conv2d: x (N,Cin,H,W), w (Cout,Cin,k,k), b (Cout) or NULL; square kernel,
 * symmetric padding.  Out (N,Cout,(H+2p-k)/s+1,(W+2p-k)/s+1). */
cc_tensor *op_conv2d(cc_tape *t, cc_tensor *x, cc_tensor *w, cc_tensor *b, int stride, int pad);
/* Inference tapes only: leaky_relu(batch_norm_eval(conv2d(x, w, b))) with
 * the running statistics (the same as op_conv2d, then
 * op_batch_norm_eval_lrelu, to float rounding) as ONE convolution whose
 * weights and bias have the batch norm folded in: no BN pass and no
 * activation pass.  Not differentiable: a training tape gets an error. */
cc_tensor *op_conv2d_bn_lrelu_eval(cc_tape *t, cc_tensor *x, cc_tensor *w, cc_tensor *b,
                                   int stride, int pad, cc_tensor *gamma, cc_tensor *beta,
                                   cc_tensor *run_mean, cc_tensor *run_var, float eps,
                                   float slope);

/* Layout change to plain row-major (identity when already plain). */
cc_tensor *op_plain(cc_tape *t, cc_tensor *x);
/* Reshape (plain copy) to ndim/dims with the same numel. */
cc_tensor *op_reshape(cc_tape *t, cc_tensor *x, int ndim, const int64_t *dims);
/* (N,C,H,W) -> (N, C*H*W). */
cc_tensor *op_flatten(cc_tape *t, cc_tensor *x);
/* (N,1,H,W) -> (N,C,H,W) by repetition; backward sums over C. */
cc_tensor *op_expand_channels(cc_tape *t, cc_tensor *x, int64_t c);
/* (N,C,H,W) mirrored: bits & 1 reverses W, bits & 2 reverses H (the flips
 * of counter.tta and the loader).  Out plain; bits 0 returns x itself. */
cc_tensor *op_flip(cc_tape *t, cc_tensor *x, unsigned bits);

/* Batch norm over C of (N,C,H,W) or (N,C).  gamma/beta (C) trainable;
 * run_mean/run_var (C) buffers; num_batches (1) buffer or NULL.  Training
 * tape: batch statistics (biased variance), running stats updated with
 * momentum (unbiased variance), num_batches += 1.  Inference tape: running
 * statistics. */
cc_tensor *op_batch_norm(cc_tape *t, cc_tensor *x, cc_tensor *gamma, cc_tensor *beta,
                         cc_tensor *run_mean, cc_tensor *run_var, cc_tensor *num_batches,
                         float momentum, float eps);
/* Batch norm with the running statistics on any tape (PyTorch's eval()
 * mode): differentiable on a training tape (saliency, frozen backbones),
 * never updates the buffers. */
cc_tensor *op_batch_norm_eval(cc_tape *t, cc_tensor *x, cc_tensor *gamma, cc_tensor *beta,
                              cc_tensor *run_mean, cc_tensor *run_var, float eps);
/* The same followed by LeakyReLU(slope > 0) in one node: equal to
 * op_leaky_relu(op_batch_norm(...)) in value and gradients, without the
 * intermediate tensor.  The output has x's layout. */
cc_tensor *op_batch_norm_lrelu(cc_tape *t, cc_tensor *x, cc_tensor *gamma, cc_tensor *beta,
                               cc_tensor *run_mean, cc_tensor *run_var, cc_tensor *num_batches,
                               float momentum, float eps, float slope);
cc_tensor *op_batch_norm_eval_lrelu(cc_tape *t, cc_tensor *x, cc_tensor *gamma, cc_tensor *beta,
                                    cc_tensor *run_mean, cc_tensor *run_var, float eps, float slope);

cc_tensor *op_relu(cc_tape *t, cc_tensor *x);
/* relu forward; backward also passes dy where x <= 0 and dy < 0 (the loss
 * wants a larger output), so a positive regression target cannot leave the
 * output stuck at 0 (op_eltwise.c). */
cc_tensor *op_relu_unstick(cc_tape *t, cc_tensor *x);
cc_tensor *op_leaky_relu(cc_tape *t, cc_tensor *x, float slope);
cc_tensor *op_exp(cc_tape *t, cc_tensor *x);
/* Clamp to [lo, hi]; no gradient where the clamp is active. */
cc_tensor *op_clamp(cc_tape *t, cc_tensor *x, float lo, float hi);
/* alpha * x + beta. */
cc_tensor *op_scale(cc_tape *t, cc_tensor *x, float alpha, float beta);

/* Max pool, kernel k, stride s, no padding, floor. */
cc_tensor *op_max_pool2d(cc_tape *t, cc_tensor *x, int k, int s);
/* Average pool, kernel = stride = k (area average; H, W divisible by k). */
cc_tensor *op_avg_pool2d(cc_tape *t, cc_tensor *x, int k);
/* (N,C,H,W) -> (N,C,1,1) mean over H, W. */
cc_tensor *op_global_avg_pool(cc_tape *t, cc_tensor *x);

/* Bilinear upsampling by 2, half-pixel centres (align_corners=False). */
cc_tensor *op_upsample2x(cc_tape *t, cc_tensor *x);

/* a + b, a * b.  b has a's shape, or (N,1,H,W) broadcast over a's C. */
cc_tensor *op_add(cc_tape *t, cc_tensor *a, cc_tensor *b);
cc_tensor *op_mul(cc_tape *t, cc_tensor *a, cc_tensor *b);

/* Concatenate n tensors along C (dim 1). */
cc_tensor *op_concat(cc_tape *t, cc_tensor *const *xs, int n);

/* x (N,F), w (O,F), b (O) or NULL -> (N,O). */
cc_tensor *op_linear(cc_tape *t, cc_tensor *x, cc_tensor *w, cc_tensor *b);

/* Sum / mean of all elements -> shape (1). */
cc_tensor *op_sum(cc_tape *t, cc_tensor *x);
cc_tensor *op_mean(cc_tape *t, cc_tensor *x);

/* Losses -> shape (1).  x prediction, s log-variance, y target, same shape.
 * nll:   mean(0.5*exp(-s')*(y-x)^2 + 0.5*s'), s' = max(s, -6) (no gradient
 *        to s where the clamp is active).
 * paper: mean((y-x)^2/(2*exp(t)) + t), t = s if s > -6 else 0.
 * mse:   mean((y-x)^2).
 * tv:    sum over n,c, i<H-1, j<W-1 of (m[i,j]-m[i,j+1])^2 + (m[i,j]-m[i+1,j])^2. */
cc_tensor *op_loss_nll(cc_tape *t, cc_tensor *x, cc_tensor *s, cc_tensor *y);
cc_tensor *op_loss_paper(cc_tape *t, cc_tensor *x, cc_tensor *s, cc_tensor *y);
cc_tensor *op_loss_mse(cc_tape *t, cc_tensor *x, cc_tensor *y);
cc_tensor *op_tv(cc_tape *t, cc_tensor *m);

#endif
