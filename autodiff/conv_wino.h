/* conv_wino.h - op_conv.c's own kernels (engine-internal): Winograd
 * F(4x4, 3x3), and a direct kernel for convolutions to one output channel.
 *
 * Why: on CPUs without AVX-512 oneDNN 2.6 has no Winograd convolution, and
 * its direct AVX2 kernels already run near the FMA peak, so the only way to
 * make the FPN's and VGG's 3x3 convolutions substantially faster is to do
 * fewer multiplications.  F(4x4,3x3) computes each 4x4 output tile from a
 * 6x6 input tile with 36 element-wise products instead of 144 (4x fewer
 * multiply-adds); the products over channels become 36 independent GEMMs
 * (dnnl_sgemm).  Backward data is the same algorithm on the output gradient
 * with flipped, transposed weights; backward weights is the exact adjoint
 * of the forward (36 GEMMs over tiles, then the transposed weight
 * transform).  Transforms: Lavin & Gray 2016, points 0, +-1, +-2, inf.
 *
 * Scope: 3x3 kernel, stride 1, pad 1, f32, channels multiples of 8, tensors
 * in plain NCHW (abcd) or 8-channel-blocked (aBcd8b, oneDNN's AVX2 layout).
 * GEMMs: dnnl_sgemm in the baseline and AVX2 variants; the AVX-512 variant
 * multiplies with its own register-blocked kernel (conv_wino_avx512.c) in
 * forward and backward data: U is packed once per call in 32-column
 * panels, so no GEMM call re-packs the weights for every chunk.
 * Work is split into fixed chunks of tiles.  Forward and backward data:
 * each thread transforms, multiplies (36 serial GEMMs) and transforms back
 * whole chunks, taken dynamically, with no barrier between chunks.  Weight
 * gradient: inside a chunk, transforms are parallel over tiles and GEMMs
 * over the 36 transform points.  Chunk sizes depend on the geometry only
 * and each output element is always computed by the same sequence of
 * operations, so results do not depend on the thread count.
 */
#ifndef CC_CONV_WINO_H
#define CC_CONV_WINO_H

#include <stddef.h>
#include <stdint.h>
#include <oneapi/dnnl/dnnl.h>

#include "autodiff/isa.h"

/* Element (n,c,h,w) of a supported layout lives at
 * n*sn + (c/8)*scb + (c%8)*sc + h*sh + w*sw. */
typedef struct wino_layout {
    int64_t sn, scb, sc, sh, sw;
} wino_layout;

typedef struct wino_geom {
    int64_t n, cin, cout, h, w;     /* input and output are n x c x h x w */
    int64_t th, tw, tiles;          /* 4x4 output tiles: th x tw per image */
    int64_t chunk;                  /* tiles per chunk (weight gradient) */
    int64_t chunk_fw;               /* tiles per chunk and thread (forward, data grad) */
    cc_isa isa;                     /* kernel variant (wino_geom_init: baseline) */
    int act;                        /* 1: forward output = LeakyReLU(conv + bias) */
    float slope;                    /* its negative slope */
} wino_geom;

/* Fill l for md when it is plain abcd or aBcd8b with channels a multiple of
 * 8 and no offset; returns 1, else 0. */
int wino_layout_get(const dnnl_memory_desc_t *md, wino_layout *l);

/* Geometry of a conv (n, cin, h, w) -> (n, cout, h, w), for the baseline
 * variant; wino_geom_set_isa then picks another variant (and its chunks). */
void wino_geom_init(wino_geom *g, int64_t n, int64_t cin, int64_t cout, int64_t h, int64_t w);
void wino_geom_set_isa(wino_geom *g, cc_isa isa);

/* Floats of the transformed weights at the head of the scratch: 36
 * matrices of cin x cout, each dimension rounded up to 32 (the AVX-512
 * variant packs U in column panels of 32; the same size both ways, so the
 * forward and backward-data geometries of one conv share the scratch),
 * each followed by 16 floats of padding (matrices 2^k floats apart would
 * put the 36 vectors of one kernel's transform in one L1 set).  Matrix xi
 * starts at xi * wino_u_floats(g) / 36; the same for the weight gradient's
 * dU. */
size_t wino_u_floats(const wino_geom *g);

/* Floats of scratch wino_forward / wino_backward_weights need for g with
 * up to `threads` OpenMP threads (the transformed weights plus one chunk of
 * transformed input and output per thread, or one weight-gradient chunk). */
size_t wino_scratch_floats(const wino_geom *g, int threads);

/* y (n, cout, h, w) in layout ly = conv3x3 pad 1 of x (n, cin, h, w) in lx,
 * with w (cout, cin, 3, 3) plain and bias (cout) or NULL.  transpose = 1
 * computes instead the backward-data convolution: x is then the output
 * gradient (cin = the conv's cout), w still the conv's (cin', cout', 3, 3)
 * weights with cout' = g->cin and cin' = g->cout, y the input gradient.
 * y is overwritten (padding channels of a blocked layout are untouched).
 * u_pre: w already transformed by wino_transform_weights (same g and
 * transpose; w is then not read), or NULL to transform w into the scratch. */
void wino_forward(const wino_geom *g, const float *x, const wino_layout *lx, const float *w,
                  const float *u_pre, int transpose, const float *bias, float *y,
                  const wino_layout *ly, float *scratch);
/* U (wino_u_floats(g) floats) = w transformed for wino_forward's u_pre:
 * for inference on fixed weights, which need transforming only once (the
 * transform of a 512 -> 512 layer costs as much as its products on the
 * counter's 12x16 images). */
void wino_transform_weights(const wino_geom *g, const float *w, int transpose, float *U);

/* dw (cout, cin, 3, 3) plain, overwritten = d loss / d w, and db (cout) or
 * NULL, from the conv's input x (layout lx) and output gradient dy (ly). */
void wino_backward_weights(const wino_geom *g, const float *x, const wino_layout *lx,
                           const float *dy, const wino_layout *ly, float *dw, float *db,
                           float *scratch);

/* ---- 3x3 / stride 1 / pad 1 convolutions with ONE output channel ----
 * (the FPN heads' last layers: oneDNN's AVX2 kernel pads the output to 8
 * channels, ~3 GFLOP/s; this one is ~1.5x faster).  x (n, cin, h, w) in layout lx (cin a multiple of 8), w (1, cin,
 * 3, 3) plain, y (n, 1, h, w) in ly: plain, or aBcd8b (what oneDNN picks,
 * so the ops downstream see the same layout), its 7 padding channels
 * written as zeros.  wt: scratch of conv1_scratch_floats() (the weights
 * regrouped by channel block, then a row of partial sums per thread).
 * Each output / gradient element is a fixed-order sum: deterministic for
 * any thread count. */
size_t conv1_scratch_floats(const wino_geom *g, int threads);
void conv1_forward(const wino_geom *g, const float *x, const wino_layout *lx, const float *w,
                   const float *bias, float *y, const wino_layout *ly, float *wt);
/* dx (layout lx) = d loss / d x, overwritten; dy in ly. */
void conv1_backward_data(const wino_geom *g, const float *dy, const wino_layout *ly,
                         const float *w, float *dx, const wino_layout *lx, float *wt);
/* dw (1, cin, 3, 3) and db (1) or NULL, overwritten. */
void conv1_backward_weights(const wino_geom *g, const float *x, const wino_layout *lx,
                            const float *dy, const wino_layout *ly, float *dw, float *db);

#endif
