/* optim.c - see optim.h. */
#include "autodiff/optim.h"

#include <math.h>
#include <string.h>
#if defined(__SSE2__)
#include <immintrin.h>
#endif

void optim_adam_init(cc_optim *o, float lr, float beta1, float beta2, float eps, float weight_decay)
{
    memset(o, 0, sizeof *o);
    o->kind = OPTIM_ADAM;
    o->lr = lr;
    o->beta1 = beta1;
    o->beta2 = beta2;
    o->eps = eps;
    o->weight_decay = weight_decay;
    cc_status st;
    if (isa_choose(&o->isa, &st)) o->isa = CC_ISA_SSE2;    /* bad cap: ctx_init reports it */
}

void optim_sgd_init(cc_optim *o, float lr, float momentum, float weight_decay)
{
    memset(o, 0, sizeof *o);
    o->kind = OPTIM_SGD;
    o->lr = lr;
    o->momentum = momentum;
    o->weight_decay = weight_decay;
    o->isa = CC_ISA_SSE2;   /* SGD's loop is plain C */
}

/* The vector part of one Adam update: L lanes of vector type VT at a time
 * with the intrinsics of prefix P (_mm, _mm256, _mm512), from i on while L
 * elements are left.  One text for every width, so that the widths cannot
 * drift apart: the scalar formula's operations in its order, IEEE sqrt and
 * divide, no FMA, hence bit-identical to it. */
#define ADAM_VEC_LOOP(VT, P, L)                                                            \
    do {                                                                                   \
        const VT vb1 = P##_set1_ps(b1), vb2 = P##_set1_ps(b2), vc1 = P##_set1_ps(1 - b1);  \
        const VT vc2 = P##_set1_ps(1 - b2), veps = P##_set1_ps(eps), vwd = P##_set1_ps(wd); \
        const VT vss = P##_set1_ps(step_size), vib = P##_set1_ps(inv_sqrt_bc2);            \
        for (; i + (L) <= n; i += (L)) {                                                   \
            VT wi = P##_loadu_ps(w + i);                                                   \
            VT gi = P##_add_ps(P##_loadu_ps(g + i), P##_mul_ps(vwd, wi));                  \
            VT mi = P##_add_ps(P##_mul_ps(vb1, P##_loadu_ps(m + i)), P##_mul_ps(vc1, gi)); \
            VT vi = P##_add_ps(P##_mul_ps(vb2, P##_loadu_ps(v + i)),                       \
                               P##_mul_ps(P##_mul_ps(vc2, gi), gi));                       \
            VT den = P##_add_ps(P##_mul_ps(P##_sqrt_ps(vi), vib), veps);                   \
            P##_storeu_ps(m + i, mi);                                                      \
            P##_storeu_ps(v + i, vi);                                                      \
            P##_storeu_ps(w + i, P##_sub_ps(wi, P##_div_ps(P##_mul_ps(vss, mi), den)));    \
        }                                                                                  \
    } while (0)

/* One Adam update of n elements.  The vector path computes exactly the
 * scalar formula (same operations in the same order; IEEE sqrt and divide),
 * so results do not depend on which path ran.  Without it, GCC keeps the
 * loop scalar (sqrtf must be able to set errno), several times slower on
 * the tens of millions of weights of the counter's heads. */
static void adam_update(float *w, const float *g, float *m, float *v, size_t n, float b1,
                        float b2, float eps, float wd, float step_size, float inv_sqrt_bc2)
{
    size_t i = 0;
#if defined(__SSE2__)
    ADAM_VEC_LOOP(__m128, _mm, 4);
#endif
    for (; i < n; i++) {
        float gi = g[i] + wd * w[i];
        m[i] = b1 * m[i] + (1 - b1) * gi;
        v[i] = b2 * v[i] + (1 - b2) * gi * gi;
        w[i] -= step_size * m[i] / (sqrtf(v[i]) * inv_sqrt_bc2 + eps);
    }
}

#if defined(__x86_64__)
/* The same update, 8 and 16 lanes at a time, the rest as above. */
__attribute__((target("avx2,fma"))) static void adam_update_avx2(
    float *w, const float *g, float *m, float *v, size_t n, float b1, float b2, float eps,
    float wd, float step_size, float inv_sqrt_bc2)
{
    size_t i = 0;
    ADAM_VEC_LOOP(__m256, _mm256, 8);
    adam_update(w + i, g + i, m + i, v + i, n - i, b1, b2, eps, wd, step_size, inv_sqrt_bc2);
}

__attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma"))) static void
adam_update_avx512(float *w, const float *g, float *m, float *v, size_t n, float b1, float b2,
                   float eps, float wd, float step_size, float inv_sqrt_bc2)
{
    size_t i = 0;
    ADAM_VEC_LOOP(__m512, _mm512, 16);
    adam_update(w + i, g + i, m + i, v + i, n - i, b1, b2, eps, wd, step_size, inv_sqrt_bc2);
}
#endif

/* sum of g[i]^2 in double, in a fixed order: four interleaved partial sums
 * (a single running sum is bound by the add latency), then the tail. */
static double sum_squares(const float *g, size_t n)
{
    size_t i = 0;
    double s = 0;
#if defined(__SSE2__)
    __m128d a0 = _mm_setzero_pd(), a1 = _mm_setzero_pd();
    for (; i + 4 <= n; i += 4) {
        const __m128 x = _mm_loadu_ps(g + i);
        const __m128d lo = _mm_cvtps_pd(x), hi = _mm_cvtps_pd(_mm_movehl_ps(x, x));
        a0 = _mm_add_pd(a0, _mm_mul_pd(lo, lo));
        a1 = _mm_add_pd(a1, _mm_mul_pd(hi, hi));
    }
    double t0[2], t1[2];
    _mm_storeu_pd(t0, a0);
    _mm_storeu_pd(t1, a1);
    s = (t0[0] + t0[1]) + (t1[0] + t1[1]);
#endif
    for (; i < n; i++) s += (double)g[i] * g[i];
    return s;
}

/* Walk every unfrozen trainable tensor's slab range. */
#define FOR_TRAINABLE(P, p)                                                       \
    for (const cc_param *p = (P)->p; p < (P)->p + (P)->n; p++)                     \
        if (p->kind == PARAM_TRAINABLE && !p->frozen)

/* All unfrozen trainable parameters cut into chunks of at most `chunk`
 * elements, numbered in parameter order (a chunk never spans two
 * parameters, so the chunks and their order are those of a per-parameter
 * loop).  first[i] = number of chunks before parameter i; first[n] = total.
 *
 * Why one flat index: a parallel loop per parameter meant ~110 OpenMP
 * regions per counter step (grad norm + Adam, 52 parameters).  Each region
 * ends in a barrier that waits for every thread to be scheduled, which on a
 * busy machine costs a time slice each (issue 13: 2 threads beside one busy
 * process were slower than 1); one region over all chunks costs one. */
static size_t chunks_index(const cc_params *P, size_t chunk, size_t *first)
{
    size_t total = 0;
    for (int i = 0; i < P->n; i++) {
        const cc_param *p = &P->p[i];
        first[i] = total;
        if (p->kind == PARAM_TRAINABLE && !p->frozen) total += (p->numel + chunk - 1) / chunk;
    }
    first[P->n] = total;
    return total;
}

/* Parameter and element range [*lo, *lo + *len) of flat chunk c. */
static const cc_param *chunk_find(const cc_params *P, const size_t *first, size_t chunk, size_t c,
                                  size_t *lo, size_t *len)
{
    int a = 0, b = P->n - 1;    /* last i with first[i] <= c and a chunk at i */
    while (a < b) {
        const int mid = (a + b + 1) / 2;
        if (first[mid] <= c) a = mid;
        else b = mid - 1;
    }
    while (first[a + 1] == first[a]) a--;   /* skip chunk-less parameters */
    const cc_param *p = &P->p[a];
    *lo = (c - first[a]) * chunk;
    *len = p->numel - *lo < chunk ? p->numel - *lo : chunk;
    return p;
}

/* Parallel loops below only pay off over a few chunks of work. */
/* Chunks are fixed by the parameter sizes and each is one independent
 * pass (the norm's partial sums are added in order afterwards), so the
 * schedule does not change results; dynamic, so that a thread the OS
 * holds back (another process on its core) takes fewer chunks instead of
 * holding up the rest (docs/PERFORMANCE.md, busy machine). */
#define PAR_MIN_CHUNKS 4

double optim_grad_norm(const cc_params *P)
{
    /* Fixed chunks summed in order: an OpenMP reduction clause would
     * combine partial sums in thread-arrival order (not reproducible). */
    enum { CHUNK = 4096, BLOCK = 4096 };
    size_t first[P->n + 1];
    const size_t total = chunks_index(P, CHUNK, first);
    double ss = 0, part[BLOCK];
    for (size_t c0 = 0; c0 < total; c0 += BLOCK) {
        const size_t nc = total - c0 < BLOCK ? total - c0 : BLOCK;
#pragma omp parallel for schedule(dynamic, 16) if (nc >= PAR_MIN_CHUNKS)
        for (size_t c = 0; c < nc; c++) {
            size_t lo, len;
            const cc_param *p = chunk_find(P, first, CHUNK, c0 + c, &lo, &len);
            part[c] = sum_squares(P->grad + p->offset + lo, len);
        }
        for (size_t c = 0; c < nc; c++) ss += part[c];
    }
    return sqrt(ss);
}

double optim_clip_grad_norm(cc_params *P, double max_norm)
{
    double norm = optim_grad_norm(P);
    if (norm > max_norm && norm > 0) {
        float k = (float)(max_norm / (norm + 1e-6));
        FOR_TRAINABLE(P, p)
        {
            float *g = P->grad + p->offset;
            for (size_t i = 0; i < p->numel; i++) g[i] *= k;
        }
    }
    return norm;
}

int optim_step(cc_optim *o, cc_params *P, cc_status *st)
{
    double norm = optim_grad_norm(P);
    if (!isfinite(norm))
        return status_set(st, "optimizer: gradient is not finite (norm %g); step skipped", norm);
    o->step++;
    const float lr = o->lr, wd = o->weight_decay;
    enum { CHUNK = 16384 };
    size_t first[P->n + 1];
    const size_t total = chunks_index(P, CHUNK, first);
    if (o->kind == OPTIM_ADAM) {
        const float b1 = o->beta1, b2 = o->beta2, eps = o->eps;
        const double bc1 = 1.0 - pow(b1, (double)o->step), bc2 = 1.0 - pow(b2, (double)o->step);
        const float step_size = (float)(lr / bc1), inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
        void (*update)(float *, const float *, float *, float *, size_t, float, float, float,
                       float, float, float) = adam_update;
#if defined(__x86_64__)
        if (o->isa == CC_ISA_AVX512 && isa_cpu_has(CC_ISA_AVX512)) update = adam_update_avx512;
        else if (o->isa >= CC_ISA_AVX2 && isa_cpu_has(CC_ISA_AVX2)) update = adam_update_avx2;
#endif
#pragma omp parallel for schedule(dynamic, 8) if (total >= PAR_MIN_CHUNKS)
        for (size_t c = 0; c < total; c++) {
            size_t lo, len;
            const cc_param *p = chunk_find(P, first, CHUNK, c, &lo, &len);
            const size_t off = p->offset + lo;
            update(P->value + off, P->grad + off, P->m + off, P->v + off, len, b1, b2, eps, wd,
                   step_size, inv_sqrt_bc2);
        }
    } else {
        const float mu = o->momentum;
        const int first_step = o->step == 1;
#pragma omp parallel for schedule(dynamic, 8) if (total >= PAR_MIN_CHUNKS)
        for (size_t c = 0; c < total; c++) {
            size_t lo, len;
            const cc_param *p = chunk_find(P, first, CHUNK, c, &lo, &len);
            float *w = P->value + p->offset + lo, *g = P->grad + p->offset + lo;
            float *m = P->m + p->offset + lo;
            for (size_t i = 0; i < len; i++) {
                float gi = g[i] + wd * w[i];
                if (mu != 0) {
                    m[i] = first_step ? gi : mu * m[i] + gi;
                    gi = m[i];
                }
                w[i] -= lr * gi;
            }
        }
    }
    return 0;
}

float lr_schedule_at(const cc_lr_schedule *s, int epoch)
{
    if (s->kind == LR_STEP && s->step_epochs > 0)
        return s->base_lr * powf(s->gamma, (float)(epoch / s->step_epochs));
    if (s->kind == LR_COSINE && s->epochs > 0) {
        if (epoch >= s->epochs) return s->min_lr;
        const double c = 0.5 * (1.0 + cos(3.14159265358979323846 * epoch / s->epochs));
        return (float)(s->min_lr + (s->base_lr - s->min_lr) * c);
    }
    return s->base_lr;
}
