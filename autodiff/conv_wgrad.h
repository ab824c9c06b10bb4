/* conv_wgrad.h - op_conv.c's oneDNN weight gradient in fixed pieces of the
 * batch (engine-internal).
 *
 * Why: oneDNN's backward-weights kernels split the sum over images and
 * pixels among however many threads run them, so the gradient's bits
 * would change with the thread count.  Here the batch is cut into pieces
 * that depend on the shapes only; each piece's gradient is made by a
 * primitive built for one thread, the pieces run in parallel (one per
 * OpenMP thread at a time), and their gradients are added in piece order.
 * The result is the same for any thread count (tests/test_threads.c).
 *
 * Scope: fp32, activations in a layout with the batch outermost (plain
 * abcd, acdb, or channel-blocked aBcd8b / aBcd16b), at least two images.
 * conv_wgrad_make declines (returns 0 with *out NULL) anything else, and
 * op_conv.c then runs one single-threaded primitive over the whole batch.
 */
#ifndef CC_CONV_WGRAD_H
#define CC_CONV_WGRAD_H

#include <oneapi/dnnl/dnnl.h>

#include "autodiff/op.h"

typedef struct conv_wgrad conv_wgrad;

/* Pieces for n images when the weight gradient (with its bias) takes
 * dw_bytes and the whole batch's gradient macs multiply-accumulates: at
 * most 16, at most n, at least 64 multiply-accumulates per float of the
 * partial gradients added up afterwards (below that, adding them costs
 * more than splitting gains: ResNet-18's 512-channel layers on 3x4 maps),
 * and the partial gradients together at most 32 MiB; at least 1.  Depends
 * on its arguments only, never on the thread count. */
int conv_wgrad_pieces(int64_t n, size_t dw_bytes, int64_t macs);

/* Build the pieces for a convolution whose weight gradient the full-batch
 * primitive would compute from src (src_md) and diff_dst (dst_md) into
 * diff_weights dw_md (and a plain diff_bias of cout floats if has_bias).
 * strides / pads as for dnnl_convolution_*_desc_init.  Returns 0 with *out
 * set, 0 with *out NULL when the shapes are out of scope (see above) or
 * oneDNN offers only a reference kernel for a piece, -1 with a message on
 * failure.  Call with OpenMP's nthreads ICV at 1 (op_conv.c holds it there
 * while it makes the weight gradient's primitives): oneDNN fixes a
 * primitive's split of the work when it makes it. */
int conv_wgrad_make(cc_tape *t, const dnnl_memory_desc_t *src_md, const dnnl_memory_desc_t *dst_md,
                    const dnnl_memory_desc_t *dw_md, int has_bias, const dnnl_dims_t strides,
                    const dnnl_dims_t pads, conv_wgrad **out, cc_status *st);

/* dw (dw_md of make, overwritten) and db (cout floats, or NULL when not
 * wanted; the bias gradient is computed anyway when has_bias) from src and
 * diff_dst in make's layouts.  Scratch comes from the tape's arena. */
int conv_wgrad_run(cc_tape *t, conv_wgrad *g, const float *src, const float *diff_dst, float *dw,
                   float *db, cc_status *st);

void conv_wgrad_free(conv_wgrad *g);

#endif
