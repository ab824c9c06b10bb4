/* resize.c - see resize.h. */
#include "src/data/resize.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* One axis: for each output index o, the input indices first[o] ..
 * first[o]+count[o]-1 and their weights (which sum to 1). */
typedef struct axis {
    int *first, *count;
    double *w;          /* weights of output o start at w[off[o]] */
    int *off;
} axis;

static void axis_free(axis *a)
{
    free(a->first); free(a->count); free(a->w); free(a->off);
}

/* In units of 1/d input pixels, output o spans [o*s, (o+1)*s) and input i
 * spans [i*d, (i+1)*d): integer bounds, so overlaps are exact. */
static int axis_make(axis *a, int s, int d)
{
    memset(a, 0, sizeof *a);
    a->first = malloc((size_t)d * sizeof *a->first);
    a->count = malloc((size_t)d * sizeof *a->count);
    a->off = malloc((size_t)d * sizeof *a->off);
    /* Each output overlaps at most ceil(s/d) + 1 inputs. */
    size_t cap = (size_t)d * ((size_t)(s / d) + 2);
    a->w = malloc(cap * sizeof *a->w);
    if (!a->first || !a->count || !a->off || !a->w) {
        axis_free(a);
        return -1;
    }
    size_t k = 0;
    for (int o = 0; o < d; o++) {
        const int64_t lo = (int64_t)o * s, hi = (int64_t)(o + 1) * s;
        const int i0 = (int)(lo / d), i1 = (int)((hi - 1) / d);
        a->first[o] = i0;
        a->count[o] = i1 - i0 + 1;
        a->off[o] = (int)k;
        for (int i = i0; i <= i1; i++) {
            int64_t l = (int64_t)i * d, h = l + d;
            if (l < lo) l = lo;
            if (h > hi) h = hi;
            a->w[k++] = (double)(h - l) / (double)s;
        }
        assert(k <= cap);
    }
    return 0;
}

int resize_area(const float *src, int sw, int sh, float *dst, int dw, int dh,
                cc_status *st)
{
    assert(src && dst && sw > 0 && sh > 0 && dw > 0 && dh > 0);
    if (sw == dw && sh == dh) {
        memcpy(dst, src, (size_t)sw * sh * sizeof *dst);
        return 0;
    }
    axis ax, ay;
    if (axis_make(&ax, sw, dw) != 0)
        return status_set(st, "resize %dx%d -> %dx%d: out of memory", sw, sh, dw, dh);
    if (axis_make(&ay, sh, dh) != 0) {
        axis_free(&ax);
        return status_set(st, "resize %dx%d -> %dx%d: out of memory", sw, sh, dw, dh);
    }
    /* Horizontal pass into tmp (sh x dw), kept in double so the two passes
     * round once. */
    double *tmp = malloc((size_t)sh * dw * sizeof *tmp);
    if (!tmp) {
        axis_free(&ax); axis_free(&ay);
        return status_set(st, "resize %dx%d -> %dx%d: out of memory", sw, sh, dw, dh);
    }
    #pragma omp parallel for schedule(static)
    for (int y = 0; y < sh; y++) {
        const float *row = src + (size_t)y * sw;
        double *out = tmp + (size_t)y * dw;
        for (int o = 0; o < dw; o++) {
            const double *w = ax.w + ax.off[o];
            const float *in = row + ax.first[o];
            double acc = 0.0;
            for (int j = 0; j < ax.count[o]; j++) acc += w[j] * in[j];
            out[o] = acc;
        }
    }
    /* Vertical pass: accumulate whole rows so tmp is read with stride 1. */
    int oom = 0;
    #pragma omp parallel
    {
        double *acc = malloc((size_t)dw * sizeof *acc);
        if (!acc) {
            #pragma omp atomic write
            oom = 1;
        }
        #pragma omp for schedule(static)
        for (int o = 0; o < dh; o++) {
            if (!acc) continue;
            const double *w = ay.w + ay.off[o];
            memset(acc, 0, (size_t)dw * sizeof *acc);
            for (int j = 0; j < ay.count[o]; j++) {
                const double *in = tmp + (size_t)(ay.first[o] + j) * dw;
                for (int x = 0; x < dw; x++) acc[x] += w[j] * in[x];
            }
            float *out = dst + (size_t)o * dw;
            for (int x = 0; x < dw; x++) out[x] = (float)acc[x];
        }
        free(acc);
    }
    free(tmp);
    axis_free(&ax);
    axis_free(&ay);
    if (oom)
        return status_set(st, "resize %dx%d -> %dx%d: out of memory", sw, sh, dw, dh);
    return 0;
}
