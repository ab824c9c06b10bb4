/* conv_bf16.h - op_conv.c's bf16 path (engine-internal): the convolution
 * on oneDNN's bf16 primitives when the context's precision is bf16.
 *
 * Numerics contract (ctx_set_precision): the input activation and the
 * weights are rounded to bf16 (8-bit mantissa, round to nearest even)
 * where the convolution reads them; products accumulate in fp32 and the
 * output, the input gradient, the weight and bias gradients are fp32.  The
 * output gradient is rounded to bf16 where the backward convolutions read
 * it.  The fp32 master weights in the parameter slab are what the
 * optimizer updates; their bf16 copy is refreshed from them on each
 * forward (once per optimizer step).  The bf16 copy of the input is what
 * the weight gradient is computed from (the activation saved for backward
 * is bf16, half the bytes of the fp32 one).  Where oneDNN has only a
 * reference kernel in bf16 (the forward of some shapes: conv_bf16_infer
 * returns 1; the weight gradient of 1 -> 1 channel convs), that part runs
 * in fp32 instead.
 */
#ifndef CC_CONV_BF16_H
#define CC_CONV_BF16_H

#include "autodiff/op.h"

typedef struct conv_bf16 conv_bf16;

/* Build the forward bf16 primitive for node n (in: x, w[, b]; args as
 * op_conv2d) and set out's shape and (f32) layout.  Returns 0, 1 when
 * oneDNN has only its reference kernel for this shape in bf16 (the caller
 * then runs the fp32 path: nothing is kept), or -1 with a message.
 * *out_state is owned by the caller (conv_bf16_free). */
int conv_bf16_infer(cc_tape *t, cc_node *n, cc_tensor *out, conv_bf16 **out_state,
                    cc_status *st);
int conv_bf16_forward(cc_tape *t, cc_node *n, conv_bf16 *s, cc_status *st);
int conv_bf16_backward(cc_tape *t, cc_node *n, conv_bf16 *s, cc_status *st);
void conv_bf16_free(conv_bf16 *s);

/* The bf16 twin of an f32 descriptor: same dims and layout (strides are in
 * elements), element type bf16. */
dnnl_memory_desc_t conv_bf16_md(const dnnl_memory_desc_t *f32_md);

#endif
