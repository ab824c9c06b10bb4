/* sim_texture.c - Perlin-like object textures and bicubic resampling
 * (see simulate.h).  Recipe from docs/DATA.md. */
#include "src/sim/sim_texture.h"

#include <assert.h>
#include <math.h>
#include <string.h>

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

void sim_box3(const float *src, float *dst, int w, int h)
{
    for (int j = 0; j < h; j++) {
        const float *r0 = src + (size_t)clampi(j - 1, 0, h - 1) * w;
        const float *r1 = src + (size_t)j * w;
        const float *r2 = src + (size_t)clampi(j + 1, 0, h - 1) * w;
        float *o = dst + (size_t)j * w;
        for (int i = 0; i < w; i++) {
            int il = i > 0 ? i - 1 : 0, ir = i + 1 < w ? i + 1 : w - 1;
            o[i] = (r0[il] + r0[i] + r0[ir] + r1[il] + r1[i] + r1[ir] +
                    r2[il] + r2[i] + r2[ir]) * (1.0f / 9.0f);
        }
    }
}

/* Keys cubic convolution weights (a = -0.5) for the 4 taps around a
 * sample at fractional offset t in [0, 1). */
static void keys_weights(double t, float wt[4])
{
    const double a = -0.5;
    double d[4] = {1.0 + t, t, 1.0 - t, 2.0 - t};
    for (int k = 0; k < 4; k++) {
        double x = d[k];
        if (x <= 1.0)
            wt[k] = (float)(((a + 2.0) * x - (a + 3.0)) * x * x + 1.0);
        else
            wt[k] = (float)(((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a);
    }
}

void sim_bicubic_resize(const float *src, int sw, int sh, float *dst, int dw, int dh,
                        float *tmp)
{
    assert(sw > 0 && sh > 0 && dw > 0 && dh > 0);
    /* rows: src (sw x sh) -> tmp (dw x sh) */
    for (int x = 0; x < dw; x++) {
        double s = (x + 0.5) * sw / dw - 0.5, f = floor(s);
        int i0 = (int)f;
        float wt[4];
        keys_weights(s - f, wt);
        int ix[4];
        for (int k = 0; k < 4; k++) ix[k] = clampi(i0 - 1 + k, 0, sw - 1);
        for (int y = 0; y < sh; y++) {
            const float *r = src + (size_t)y * sw;
            tmp[(size_t)y * dw + x] = wt[0] * r[ix[0]] + wt[1] * r[ix[1]] +
                                      wt[2] * r[ix[2]] + wt[3] * r[ix[3]];
        }
    }
    /* columns: tmp (dw x sh) -> dst (dw x dh) */
    for (int y = 0; y < dh; y++) {
        double s = (y + 0.5) * sh / dh - 0.5, f = floor(s);
        int j0 = (int)f;
        float wt[4];
        keys_weights(s - f, wt);
        const float *r[4];
        for (int k = 0; k < 4; k++) r[k] = tmp + (size_t)clampi(j0 - 1 + k, 0, sh - 1) * dw;
        float *o = dst + (size_t)y * dw;
        for (int x = 0; x < dw; x++)
            o[x] = wt[0] * r[0][x] + wt[1] * r[1][x] + wt[2] * r[2][x] + wt[3] * r[3][x];
    }
}

/* Layout of the scratch: grid, smoothed grid, resize tmp, resized. */
static void texture_sizes(int w, int h, int n1, int n2, size_t *grid, size_t *tmp)
{
    size_t m = (size_t)(w > h ? w : h), wh = (size_t)w * h;
    size_t g = (size_t)1 << (n1 + n2 - 1);
    if (g > m) g = m;           /* coarser grids are resized, finer drawn at w x h */
    *grid = g * g > wh ? g * g : wh;
    *tmp = (size_t)w * g;
}

size_t sim_texture_work(int w, int h, int n1, int n2)
{
    size_t grid, tmp;
    texture_sizes(w, h, n1, n2, &grid, &tmp);
    return 2 * grid + tmp + (size_t)w * h;
}

void sim_texture_make(cc_rng *r, int w, int h, double p, int n1, int n2, double base,
                      const float *weight, float *out, float *work)
{
    assert(w > 0 && h > 0 && n1 >= 0 && n2 >= 1 && n1 + n2 < 31);
    const size_t n = (size_t)w * h;
    const int m = w > h ? w : h;
    size_t gsz, tsz;
    texture_sizes(w, h, n1, n2, &gsz, &tsz);
    float *grid = work;
    float *smooth = grid + gsz;
    float *tmp = smooth + gsz;
    float *res = tmp + tsz;

    memset(out, 0, n * sizeof *out);
    for (int k = n1; k < n1 + n2; k++) {
        int g = 1 << k;
        float wk = (float)pow(p, k);
        if (g <= m) {
            for (size_t i = 0; i < (size_t)g * g; i++) grid[i] = (float)rng_uniform(r);
            sim_box3(grid, smooth, g, g);
            sim_bicubic_resize(smooth, g, g, res, w, h, tmp);
            for (size_t i = 0; i < n; i++) out[i] += wk * res[i];
        } else {
            /* A grid finer than the window: an antialiased shrink averages
             * (g/m)^2 smoothed values per pixel, which leaves the mean and
             * divides the deviation by g/m; draw at window size instead of
             * g x g (up to 512^2 numbers per object) and scale. */
            for (size_t i = 0; i < n; i++) grid[i] = (float)rng_uniform(r);
            sim_box3(grid, smooth, w, h);
            float sc = wk * (float)m / (float)g;
            for (size_t i = 0; i < n; i++) out[i] += sc * smooth[i];
        }
    }

    float lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        if (weight && !(weight[i] > 0.0f)) continue;
        if (out[i] < lo) lo = out[i];
        if (out[i] > hi) hi = out[i];
    }
    float span = hi - lo, b = (float)base;
    for (size_t i = 0; i < n; i++) {
        float t = span > 0.0f ? (out[i] - lo) / span : 0.5f;
        t = t < 0.0f ? 0.0f : (t > 1.0f ? 1.0f : t);
        out[i] = b + (1.0f - b) * t;
    }
}
