/* bnorm_kern.h - op_bnorm.c's own kernels (engine-internal): per-channel
 * sums and per-channel affine passes over a 4-D activation in the layouts
 * oneDNN's convolutions hand us.
 *
 * Why not oneDNN's batch normalization: its JIT kernels synchronise their
 * threads with spinning barriers inside one parallel region.  On a machine
 * where another process holds one of the cores, a thread spins away its
 * time slice waiting for a partner that is not running: measured on the
 * quickstart's counter (2 threads beside one busy process, Zen 5), BN took
 * 194 ms of a 565 ms step against 16 ms on an idle machine
 * (docs/PERFORMANCE.md).  These kernels have no barrier inside a pass:
 * work is cut into fixed tasks, taken dynamically, so a thread the
 * scheduler holds back simply takes fewer.
 *
 * Determinism: the tasks depend on the geometry only and every sum runs in
 * a fixed order (within a task, then over tasks in order), so results are
 * the same for any thread count.  Sums are accumulated in double: a
 * channel of the counter's first layer at batch 32 has ~10^5 values.
 * Every ISA variant (isa.h) performs the same IEEE operations in the same
 * order (-std=c11: no contraction), so all give the same bits.
 */
#ifndef CC_BNORM_KERN_H
#define CC_BNORM_KERN_H

#include <stddef.h>
#include <stdint.h>
#include <oneapi/dnnl/dnnl.h>

#include "autodiff/isa.h"

/* Element (n,c,h,w) lives at o0 + n*sn + (c/blk)*scb + h*sh + w*sw + c%blk,
 * blk 1 (any plain layout), or 8 / 16 (channels blocked once, oneDNN's
 * nChw8c / nChw16c, or a plain layout whose channels are contiguous and a
 * multiple of 8, seen as blocks of 8). */
typedef struct bn_geom {
    int64_t n, c, h, w;
    int64_t blk, cb;                /* lanes per block, channel blocks */
    int64_t o0, sn, scb, sh, sw;
    int64_t nch;                    /* image chunks per block in the sums */
    cc_isa isa;
} bn_geom;

/* Fill g for md (4-D, f32); returns 0, or -1 when the layout is blocked on
 * anything but the channels (one level of 8 or 16). */
int bn_geom_init(bn_geom *g, const dnnl_memory_desc_t *md, cc_isa isa);

/* Floats of a per-channel vector in the kernels' padded form: cb * blk
 * (lanes past C are padding and must hold 0 in every vector passed in). */
int64_t bn_cpad(const bn_geom *g);

/* Doubles of scratch the sums need (partial sums per task). */
size_t bn_part_doubles(const bn_geom *g);

/* s1[c] = sum x, s2[c] = sum x^2 over n, h, w (double; C entries each).
 * part: bn_part_doubles(g) of scratch. */
void bn_sums(const bn_geom *g, const float *x, double *part, double *s1, double *s2);

/* Backward sums.  When y is not NULL, first dy *= (y > 0 ? 1 : slope) in
 * place (the fused LeakyReLU's gradient; y is the block's output).  Then
 * s1[c] = sum dy, s2[c] = sum dy * x. */
void bn_grad_sums(const bn_geom *g, const float *x, float *dy, const float *y, float slope,
                  double *part, double *s1, double *s2);

/* y = (x - m[c]) * k[c] + b[c], then LeakyReLU with slope when lrelu.
 * m, k, b padded (bn_cpad); y may equal x. */
void bn_norm_forward(const bn_geom *g, const float *x, const float *m, const float *k,
                     const float *b, int lrelu, float slope, float *y);

/* dx = p[c] * dy + q[c] * (x - m[c]) + r[c]; vectors padded (bn_cpad). */
void bn_norm_backward(const bn_geom *g, const float *dy, const float *x, const float *m,
                      const float *p, const float *q, const float *r, float *dx);

#endif
