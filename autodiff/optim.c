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
}

void optim_sgd_init(cc_optim *o, float lr, float momentum, float weight_decay)
{
    memset(o, 0, sizeof *o);
    o->kind = OPTIM_SGD;
    o->lr = lr;
    o->momentum = momentum;
    o->weight_decay = weight_decay;
}

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
    const __m128 vb1 = _mm_set1_ps(b1), vb2 = _mm_set1_ps(b2), vc1 = _mm_set1_ps(1 - b1);
    const __m128 vc2 = _mm_set1_ps(1 - b2), veps = _mm_set1_ps(eps), vwd = _mm_set1_ps(wd);
    const __m128 vss = _mm_set1_ps(step_size), vib = _mm_set1_ps(inv_sqrt_bc2);
    for (; i + 4 <= n; i += 4) {
        __m128 wi = _mm_loadu_ps(w + i);
        __m128 gi = _mm_add_ps(_mm_loadu_ps(g + i), _mm_mul_ps(vwd, wi));
        __m128 mi = _mm_add_ps(_mm_mul_ps(vb1, _mm_loadu_ps(m + i)), _mm_mul_ps(vc1, gi));
        __m128 vi = _mm_add_ps(_mm_mul_ps(vb2, _mm_loadu_ps(v + i)),
                               _mm_mul_ps(_mm_mul_ps(vc2, gi), gi));
        __m128 den = _mm_add_ps(_mm_mul_ps(_mm_sqrt_ps(vi), vib), veps);
        _mm_storeu_ps(m + i, mi);
        _mm_storeu_ps(v + i, vi);
        _mm_storeu_ps(w + i, _mm_sub_ps(wi, _mm_div_ps(_mm_mul_ps(vss, mi), den)));
    }
#endif
    for (; i < n; i++) {
        float gi = g[i] + wd * w[i];
        m[i] = b1 * m[i] + (1 - b1) * gi;
        v[i] = b2 * v[i] + (1 - b2) * gi * gi;
        w[i] -= step_size * m[i] / (sqrtf(v[i]) * inv_sqrt_bc2 + eps);
    }
}

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

double optim_grad_norm(const cc_params *P)
{
    double ss = 0;
    FOR_TRAINABLE(P, p)
    {
        /* Fixed chunks summed in order: an OpenMP reduction clause would
         * combine partial sums in thread-arrival order (not reproducible). */
        const float *g = P->grad + p->offset;
        enum { CHUNK = 4096 };
        size_t nchunk = (p->numel + CHUNK - 1) / CHUNK;
        double part[256];
        for (size_t c0 = 0; c0 < nchunk; c0 += 256) {
            size_t nc = nchunk - c0 < 256 ? nchunk - c0 : 256;
#pragma omp parallel for schedule(static)
            for (size_t c = 0; c < nc; c++) {
                size_t lo = (c0 + c) * CHUNK, hi = lo + CHUNK < p->numel ? lo + CHUNK : p->numel;
                part[c] = sum_squares(g + lo, hi - lo);
            }
            for (size_t c = 0; c < nc; c++) ss += part[c];
        }
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
    if (o->kind == OPTIM_ADAM) {
        const float b1 = o->beta1, b2 = o->beta2, eps = o->eps;
        const double bc1 = 1.0 - pow(b1, (double)o->step), bc2 = 1.0 - pow(b2, (double)o->step);
        const float step_size = (float)(lr / bc1), inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
        FOR_TRAINABLE(P, p)
        {
            float *w = P->value + p->offset, *g = P->grad + p->offset;
            float *m = P->m + p->offset, *v = P->v + p->offset;
            enum { CHUNK = 16384 };
            const size_t nchunk = (p->numel + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) if (nchunk > 1)
            for (size_t c = 0; c < nchunk; c++) {
                const size_t lo = c * CHUNK, len = lo + CHUNK < p->numel ? CHUNK : p->numel - lo;
                adam_update(w + lo, g + lo, m + lo, v + lo, len, b1, b2, eps, wd, step_size,
                            inv_sqrt_bc2);
            }
        }
    } else {
        const float mu = o->momentum;
        const int first = o->step == 1;
        FOR_TRAINABLE(P, p)
        {
            float *w = P->value + p->offset, *g = P->grad + p->offset, *m = P->m + p->offset;
#pragma omp parallel for schedule(static)
            for (size_t i = 0; i < p->numel; i++) {
                float gi = g[i] + wd * w[i];
                if (mu != 0) {
                    m[i] = first ? gi : mu * m[i] + gi;
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
    return s->base_lr;
}
