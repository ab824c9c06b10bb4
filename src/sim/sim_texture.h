/* sim_texture.h - Perlin-like object textures and bicubic resampling, for
 * the simulator (simulate.h); recipe in docs/DATA.md. */
#ifndef CC_SIM_TEXTURE_H
#define CC_SIM_TEXTURE_H

#include <stddef.h>

#include "autodiff/rng.h"

/* Perlin-like texture on a w x h window: sum over octaves k = n1..n1+n2-1
 * of a 2^k x 2^k grid of U(0,1), 3x3 box-smoothed, bicubically resized to
 * w x h, weighted p^k.  Octaves finer than the window are drawn at window
 * size with their deviation scaled by size/2^k, which is what an
 * antialiased resize of the fine grid does on average.  Normalised to
 * [0, 1] over the pixels with weight[i] > 0 (all pixels if weight is NULL),
 * then mapped to base + (1 - base) * T.  out: w*h floats; work:
 * sim_texture_work(w, h, n1, n2) floats.  Never fails. */
void sim_texture_make(cc_rng *r, int w, int h, double p, int n1, int n2, double base,
                      const float *weight, float *out, float *work);

/* Floats of scratch that sim_texture_make needs for a w x h window. */
size_t sim_texture_work(int w, int h, int n1, int n2);

/* Bicubic (Keys, a = -0.5, half-pixel centres, clamped edges) resize of
 * src (sw x sh) to dst (dw x dh); tmp holds dw*sh floats. */
void sim_bicubic_resize(const float *src, int sw, int sh, float *dst, int dw, int dh,
                        float *tmp);

/* 3x3 box smoothing with replicated edges, src -> dst (distinct). */
void sim_box3(const float *src, float *dst, int w, int h);

#endif
