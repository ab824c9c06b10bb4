/* bnorm_kern.c - see bnorm_kern.h.
 *
 * Each pass is one parallel loop over fixed tasks with schedule(dynamic, 1)
 * and no barrier inside: sums over (channel block, image chunk), the
 * element-wise passes over (image, channel block) planes.  The loops live
 * in the baseline functions; each task runs in the ISA variant (isa.h),
 * whose bodies are the same source compiled three times.
 */
#include "autodiff/bnorm_kern.h"

#include <stdint.h>
#include <string.h>

#include <xmmintrin.h>

/* The vector helpers below are always inlined: no vector crosses a call
 * between variants, so the ABI note GCC gives for them does not apply. */
#pragma GCC diagnostic ignored "-Wpsabi"

typedef float v8f __attribute__((vector_size(32)));
typedef double v8d __attribute__((vector_size(64)));
typedef int32_t v8i __attribute__((vector_size(32)));

/* Passes over fewer elements run on one thread: a parallel region costs
 * more than they do.  (Tasks are the same either way: same results.) */
#define BN_SERIAL_BELOW 32768
/* Element-wise outputs larger than this go out with non-temporal stores:
 * they would not stay cached for the next op anyway, and the stores skip
 * reading every line before writing it (the same threshold as the Winograd
 * weights, conv_wino_avx512.c). */
#define BN_STREAM_MIN_BYTES ((size_t)16 << 20)
/* Units of work (planes, or a block's image chunk in the sums) smaller
 * than this many elements are grouped into one task: the (N,C) inputs of
 * the counter's head have planes of 8 values. */
#define BN_TASK_MIN 16384
/* The sums aim at this many tasks (channel blocks x image chunks), enough
 * for 16 threads to share with dynamic scheduling. */
#define BN_SUM_TASKS 32

int bn_geom_init(bn_geom *g, const dnnl_memory_desc_t *md, cc_isa isa)
{
    memset(g, 0, sizeof *g);
    if (md->ndims != 4 || md->data_type != dnnl_f32 || md->format_kind != dnnl_blocked) return -1;
    const dnnl_blocking_desc_t *bk = &md->format_desc.blocking;
    g->n = md->dims[0];
    g->c = md->dims[1];
    g->h = md->dims[2];
    g->w = md->dims[3];
    g->o0 = md->offset0;
    g->sn = bk->strides[0];
    g->sh = bk->strides[2];
    g->sw = bk->strides[3];
    if (bk->inner_nblks > 1) return -1;
    if (bk->inner_nblks == 1) {
        if (bk->inner_idxs[0] != 1 || (bk->inner_blks[0] != 8 && bk->inner_blks[0] != 16))
            return -1;
        g->blk = bk->inner_blks[0];
        g->scb = bk->strides[1];
    } else if (bk->strides[1] == 1 && g->c % 8 == 0) {
        g->blk = 8;     /* contiguous channels (N,C or nhwc): blocks of 8 */
        g->scb = 8;
    } else {
        g->blk = 1;
        g->scb = bk->strides[1];
    }
    g->cb = (g->c + g->blk - 1) / g->blk;
    g->nch = (BN_SUM_TASKS + g->cb - 1) / g->cb;
    if (g->nch > g->n) g->nch = g->n;
    if (g->nch < 1) g->nch = 1;
    g->isa = isa;
    return 0;
}

int64_t bn_cpad(const bn_geom *g) { return g->cb * g->blk; }

size_t bn_part_doubles(const bn_geom *g)
{
    return (size_t)(g->cb * g->nch * 2 * g->blk);
}

/* ---- task bodies (inlined into each ISA variant) ---- */

static inline __attribute__((always_inline)) v8f ldv(const float *p)
{
    v8f v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline __attribute__((always_inline)) void stv(float *p, v8f v) { memcpy(p, &v, sizeof v); }

/* p 16-byte aligned; SSE's streaming store, so that every variant
 * (baseline included) can inline it */
static inline __attribute__((always_inline)) void stv_nt(float *p, v8f v)
{
    __m128 lo, hi;
    memcpy(&lo, &v, sizeof lo);
    memcpy(&hi, (const char *)&v + sizeof lo, sizeof hi);
    _mm_stream_ps(p, lo);
    _mm_stream_ps(p + 4, hi);
}

/* 1 where s > 0, else slope (bit select: no branch per element) */
static inline __attribute__((always_inline)) v8f lrelu_factor(v8f s, float slope)
{
    const v8f zero = {0}, one = zero + 1.0f, sl = zero + slope;
    const v8i pos = s > zero;
    return (v8f)(((v8i)one & pos) | ((v8i)sl & ~pos));
}

/* Sums over images [n0, n1) of channel block cb: out[0..blk) = sum a,
 * out[blk..2 blk) = sum a * bv, where a = x (bv = x) for the forward and
 * a = dy scaled in place by the LeakyReLU factor of y (bv = x) for the
 * backward (grad = 1).  G8: 8-lane groups per block (blk / 8). */
static inline __attribute__((always_inline)) void
sums_vec(const bn_geom *g, int G8, int grad, const float *x, float *dy, const float *y, float slope,
         int64_t cb, int64_t n0, int64_t n1, double *out)
{
    v8d a1[2] = {{0}, {0}}, a2[2] = {{0}, {0}};
    for (int64_t n = n0; n < n1; n++)
        for (int64_t h = 0; h < g->h; h++) {
            const int64_t row = g->o0 + n * g->sn + cb * g->scb + h * g->sh;
            for (int64_t w = 0; w < g->w; w++) {
                const int64_t o = row + w * g->sw;
                for (int q = 0; q < G8; q++) {
                    const v8d xd = __builtin_convertvector(ldv(x + o + 8 * q), v8d);
                    if (grad) {
                        v8f d = ldv(dy + o + 8 * q);
                        if (y) {
                            d *= lrelu_factor(ldv(y + o + 8 * q), slope);
                            stv(dy + o + 8 * q, d);
                        }
                        const v8d dd = __builtin_convertvector(d, v8d);
                        a1[q] += dd;
                        a2[q] += dd * xd;
                    } else {
                        a1[q] += xd;
                        a2[q] += xd * xd;
                    }
                }
            }
        }
    for (int q = 0; q < G8; q++) {
        memcpy(out + 8 * q, &a1[q], sizeof a1[q]);
        memcpy(out + g->blk + 8 * q, &a2[q], sizeof a2[q]);
    }
}

static inline __attribute__((always_inline)) void
sums_scalar(const bn_geom *g, int grad, const float *x, float *dy, const float *y, float slope,
            int64_t c, int64_t n0, int64_t n1, double *out)
{
    double a1 = 0, a2 = 0;
    for (int64_t n = n0; n < n1; n++)
        for (int64_t h = 0; h < g->h; h++)
            for (int64_t w = 0; w < g->w; w++) {
                const int64_t o = g->o0 + n * g->sn + c * g->scb + h * g->sh + w * g->sw;
                const double xd = x[o];
                if (grad) {
                    float d = dy[o];
                    if (y) {
                        d *= y[o] > 0.0f ? 1.0f : slope;
                        dy[o] = d;
                    }
                    a1 += (double)d;
                    a2 += (double)d * xd;
                } else {
                    a1 += xd;
                    a2 += xd * xd;
                }
            }
    out[0] = a1;
    out[1] = a2;
}

#define SUMS_TASK_BODY                                                                   \
    {                                                                                    \
        if (g->blk == 16) sums_vec(g, 2, grad, x, dy, y, slope, cb, n0, n1, out);        \
        else if (g->blk == 8) sums_vec(g, 1, grad, x, dy, y, slope, cb, n0, n1, out);    \
        else if (grad) sums_scalar(g, 1, x, dy, y, slope, cb, n0, n1, out);              \
        else sums_scalar(g, 0, x, dy, y, slope, cb, n0, n1, out);                        \
    }

/* y (or dx) over one (image, block) plane: forward y = (x - m) k + b
 * (then LeakyReLU), backward dx = p dy + q (x - m) + r; v0..v2 are k, b,
 * unused or p, q, r at the block's lanes. */
static inline __attribute__((always_inline)) void
plane_vec(const bn_geom *g, int G8, int bwd, const float *x, const float *dy, const float *m,
          const float *v0, const float *v1, const float *v2, int lrelu, float slope, float *out,
          int64_t n, int64_t cb, int stream)
{
    v8f mv[2], a[2], b[2], c[2];
    for (int q = 0; q < G8; q++) {
        mv[q] = ldv(m + cb * g->blk + 8 * q);
        a[q] = ldv(v0 + cb * g->blk + 8 * q);
        b[q] = ldv(v1 + cb * g->blk + 8 * q);
        c[q] = bwd ? ldv(v2 + cb * g->blk + 8 * q) : a[q];
    }
    for (int64_t h = 0; h < g->h; h++) {
        const int64_t row = g->o0 + n * g->sn + cb * g->scb + h * g->sh;
        for (int64_t w = 0; w < g->w; w++) {
            const int64_t o = row + w * g->sw;
            for (int q = 0; q < G8; q++) {
                const v8f xc = ldv(x + o + 8 * q) - mv[q];
                v8f r;
                if (bwd) {
                    r = a[q] * ldv(dy + o + 8 * q) + b[q] * xc + c[q];
                } else {
                    r = xc * a[q] + b[q];
                    if (lrelu) r *= lrelu_factor(r, slope);
                }
                if (stream) stv_nt(out + o + 8 * q, r);
                else stv(out + o + 8 * q, r);
            }
        }
    }
    if (stream) _mm_sfence();  /* weakly ordered: drain before others read */
}

static inline __attribute__((always_inline)) void
plane_scalar(const bn_geom *g, int bwd, const float *x, const float *dy, const float *m,
             const float *v0, const float *v1, const float *v2, int lrelu, float slope, float *out,
             int64_t n, int64_t c)
{
    for (int64_t h = 0; h < g->h; h++)
        for (int64_t w = 0; w < g->w; w++) {
            const int64_t o = g->o0 + n * g->sn + c * g->scb + h * g->sh + w * g->sw;
            const float xc = x[o] - m[c];
            float r;
            if (bwd) {
                r = v0[c] * dy[o] + v1[c] * xc + v2[c];
            } else {
                r = xc * v0[c] + v1[c];
                if (lrelu) r *= r > 0.0f ? 1.0f : slope;
            }
            out[o] = r;
        }
}

#define PLANE_TASK_BODY                                                                        \
    {                                                                                          \
        if (g->blk == 16 && stream)                                                            \
            plane_vec(g, 2, bwd, x, dy, m, v0, v1, v2, lrelu, slope, out, n, cb, 1);           \
        else if (g->blk == 16)                                                                 \
            plane_vec(g, 2, bwd, x, dy, m, v0, v1, v2, lrelu, slope, out, n, cb, 0);           \
        else if (g->blk == 8 && stream)                                                        \
            plane_vec(g, 1, bwd, x, dy, m, v0, v1, v2, lrelu, slope, out, n, cb, 1);           \
        else if (g->blk == 8)                                                                  \
            plane_vec(g, 1, bwd, x, dy, m, v0, v1, v2, lrelu, slope, out, n, cb, 0);           \
        else plane_scalar(g, bwd, x, dy, m, v0, v1, v2, lrelu, slope, out, n, cb);              \
    }

#define SUMS_ARGS                                                                            \
    (const bn_geom *g, int grad, const float *x, float *dy, const float *y, float slope,     \
     int64_t cb, int64_t n0, int64_t n1, double *out)
#define PLANE_ARGS                                                                           \
    (const bn_geom *g, int bwd, const float *x, const float *dy, const float *m,             \
     const float *v0, const float *v1, const float *v2, int lrelu, float slope, float *out,  \
     int64_t n, int64_t cb, int stream)

static void sums_task_sse2 SUMS_ARGS SUMS_TASK_BODY
static void plane_task_sse2 PLANE_ARGS PLANE_TASK_BODY
#if defined(__x86_64__)
#define BN_AVX2 __attribute__((target("avx2,fma")))
#define BN_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")))
BN_AVX2 static void sums_task_avx2 SUMS_ARGS SUMS_TASK_BODY
BN_AVX2 static void plane_task_avx2 PLANE_ARGS PLANE_TASK_BODY
BN_AVX512 static void sums_task_avx512 SUMS_ARGS SUMS_TASK_BODY
BN_AVX512 static void plane_task_avx512 PLANE_ARGS PLANE_TASK_BODY
#endif

typedef void (*sums_fn) SUMS_ARGS;
typedef void (*plane_fn) PLANE_ARGS;

static sums_fn sums_variant(cc_isa isa)
{
#if defined(__x86_64__)
    if (isa == CC_ISA_AVX512) return sums_task_avx512;
    if (isa == CC_ISA_AVX2) return sums_task_avx2;
#endif
    (void)isa;
    return sums_task_sse2;
}

static plane_fn plane_variant(cc_isa isa)
{
#if defined(__x86_64__)
    if (isa == CC_ISA_AVX512) return plane_task_avx512;
    if (isa == CC_ISA_AVX2) return plane_task_avx2;
#endif
    (void)isa;
    return plane_task_sse2;
}

/* ---- drivers ---- */

static int64_t bn_numel(const bn_geom *g) { return g->n * g->c * g->h * g->w; }

static int64_t units_per_task(int64_t unit_elems)
{
    return unit_elems >= BN_TASK_MIN ? 1 : (BN_TASK_MIN + unit_elems - 1) / (unit_elems > 0 ? unit_elems : 1);
}

static void sums_run(const bn_geom *g, int grad, const float *x, float *dy, const float *y,
                     float slope, double *part, double *s1, double *s2)
{
    const sums_fn task = sums_variant(g->isa);
    const int64_t nunit = g->cb * g->nch, pb = 2 * g->blk;
    const int64_t upt = units_per_task(g->n / g->nch * g->h * g->w * g->blk);
#pragma omp parallel for schedule(dynamic, 1) if (bn_numel(g) > BN_SERIAL_BELOW)
    for (int64_t t = 0; t < (nunit + upt - 1) / upt; t++)
        for (int64_t u = t * upt; u < nunit && u < (t + 1) * upt; u++) {
            const int64_t cb = u / g->nch, k = u % g->nch;
            task(g, grad, x, dy, y, slope, cb, k * g->n / g->nch, (k + 1) * g->n / g->nch,
                 part + u * pb);
        }
    /* over the image chunks in order: the same sum for any thread count */
    for (int64_t c = 0; c < g->c; c++) {
        const int64_t cb = c / g->blk, l = c % g->blk;
        double a1 = 0, a2 = 0;
        for (int64_t k = 0; k < g->nch; k++) {
            const double *p = part + (cb * g->nch + k) * pb;
            a1 += p[l];
            a2 += p[g->blk + l];
        }
        s1[c] = a1;
        s2[c] = a2;
    }
}

void bn_sums(const bn_geom *g, const float *x, double *part, double *s1, double *s2)
{
    sums_run(g, 0, x, NULL, NULL, 0.0f, part, s1, s2);
}

void bn_grad_sums(const bn_geom *g, const float *x, float *dy, const float *y, float slope,
                  double *part, double *s1, double *s2)
{
    sums_run(g, 1, x, dy, y, slope, part, s1, s2);
}

static void plane_run(const bn_geom *g, int bwd, const float *x, const float *dy, const float *m,
                      const float *v0, const float *v1, const float *v2, int lrelu, float slope,
                      float *out)
{
    const plane_fn task = plane_variant(g->isa);
    const int64_t nunit = g->n * g->cb, upt = units_per_task(g->h * g->w * g->blk);
    /* blocked lanes only, every vector 16-byte aligned */
    const int stream = g->blk > 1 && (size_t)bn_numel(g) * sizeof(float) > BN_STREAM_MIN_BYTES &&
                       (uintptr_t)(out + g->o0) % 16 == 0 && g->sn % 4 == 0 && g->scb % 4 == 0 &&
                       g->sh % 4 == 0 && g->sw % 4 == 0;
#pragma omp parallel for schedule(dynamic, 1) if (bn_numel(g) > BN_SERIAL_BELOW)
    for (int64_t t = 0; t < (nunit + upt - 1) / upt; t++)
        for (int64_t u = t * upt; u < nunit && u < (t + 1) * upt; u++)
            task(g, bwd, x, dy, m, v0, v1, v2, lrelu, slope, out, u / g->cb, u % g->cb, stream);
}

void bn_norm_forward(const bn_geom *g, const float *x, const float *m, const float *k,
                     const float *b, int lrelu, float slope, float *y)
{
    plane_run(g, 0, x, NULL, m, k, b, NULL, lrelu, slope, y);
}

void bn_norm_backward(const bn_geom *g, const float *dy, const float *x, const float *m,
                      const float *p, const float *q, const float *r, float *dx)
{
    plane_run(g, 1, x, dy, m, p, q, r, 0, 0.0f, dx);
}
