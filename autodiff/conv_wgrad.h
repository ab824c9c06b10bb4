/* conv_wgrad.h - op_conv.c's oneDNN weight gradient in fixed pieces of the
 * batch or of the output channels (engine-internal).
 *
 * Why: oneDNN's backward-weights kernels split the sum over images and
 * pixels among however many threads run them, so the gradient's bits
 * would change with the thread count.  Here the work is cut into pieces
 * that depend on the shapes only; each piece's gradient is made by a
 * primitive built for one thread, and the pieces run in parallel (one per
 * OpenMP thread at a time).  The result is the same for any thread count
 * (tests/test_threads.c).  Two ways to cut:
 *   - channel pieces, where the gradient outweighs the layer's input
 *     (deep layers on small maps: VGG's and ResNet's 512-channel layers):
 *     each piece computes the gradient of a slice of the output channels
 *     over the whole batch and writes it straight into its rows of the
 *     plain parameter gradient.  Nothing is added up afterwards, so up to
 *     16 pieces cost no extra memory traffic but the input read per piece.
 *   - batch pieces, elsewhere: each piece's gradient covers some images,
 *     and the pieces' gradients are added in piece order.
 *
 * Scope: fp32, activations in a layout with the batch outermost (plain
 * abcd, acdb, or channel-blocked aBcd8b / aBcd16b; channel pieces: not
 * acdb, a plain abcd parameter gradient, whole channel blocks), at least
 * two images (batch pieces).  conv_wgrad_make declines (returns 0 with
 * *out NULL) anything else, and op_conv.c then runs one single-threaded
 * primitive over the whole batch.
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

/* Channel pieces for cout output channels in diff_dst blocks of blk
 * channels, a weight gradient of dw_bytes, an input (the whole batch's) of
 * src_bytes and the gradient's macs multiply-accumulates: 1 (do not split
 * by channel) unless the gradient is at least as large as the input (each
 * piece reads all of it) and cout is a multiple of blk with two blocks or
 * more; then at most 16, at most cout / blk, each with at least 2^20
 * multiply-accumulates.  Depends on its arguments only. */
int conv_wgrad_channel_pieces(int64_t cout, int blk, size_t dw_bytes, size_t src_bytes,
                              int64_t macs);

/* Build the pieces for a convolution whose weight gradient the full-batch
 * primitive would compute from src (src_md) and diff_dst (dst_md) into
 * diff_weights dw_md (and a plain diff_bias of cout floats if has_bias),
 * to be reordered into the parameter's gradient layout gw_md (channel
 * pieces need it plain abcd: they write it themselves).
 * strides / pads as for dnnl_convolution_*_desc_init.  Returns 0 with *out
 * set, 0 with *out NULL when the shapes are out of scope (see above) or
 * oneDNN offers only a reference kernel for a piece, -1 with a message on
 * failure.  Call with OpenMP's nthreads ICV at 1 (op_conv.c holds it there
 * while it makes the weight gradient's primitives): oneDNN fixes a
 * primitive's split of the work when it makes it. */
int conv_wgrad_make(cc_tape *t, const dnnl_memory_desc_t *src_md, const dnnl_memory_desc_t *dst_md,
                    const dnnl_memory_desc_t *dw_md, const dnnl_memory_desc_t *gw_md, int has_bias,
                    const dnnl_dims_t strides, const dnnl_dims_t pads, conv_wgrad **out,
                    cc_status *st);

/* 1 when g's run writes the parameter gradient gw itself (channel
 * pieces), 0 when it writes dw for the caller to reorder (batch pieces). */
int conv_wgrad_writes_plain(const conv_wgrad *g);

/* The weight gradient from src and diff_dst in make's layouts: batch
 * pieces overwrite dw (dw_md of make; gw unused), channel pieces overwrite
 * gw (gw_md of make; NULL: not wanted; dw unused).  db: cout floats,
 * overwritten, or NULL when not wanted (the bias gradient is computed
 * anyway when has_bias).  Scratch comes from the tape's arena. */
int conv_wgrad_run(cc_tape *t, conv_wgrad *g, const float *src, const float *diff_dst, float *dw,
                   float *gw, float *db, cc_status *st);

void conv_wgrad_free(conv_wgrad *g);

#endif
