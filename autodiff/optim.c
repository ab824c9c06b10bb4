/* optim.c - see optim.h. */
#include "autodiff/optim.h"

#include <math.h>
#include <string.h>

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
                double s = 0;
                for (size_t i = lo; i < hi; i++) s += (double)g[i] * g[i];
                part[c] = s;
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
#pragma omp parallel for schedule(static)
            for (size_t i = 0; i < p->numel; i++) {
                float gi = g[i] + wd * w[i];
                m[i] = b1 * m[i] + (1 - b1) * gi;
                v[i] = b2 * v[i] + (1 - b2) * gi * gi;
                w[i] -= step_size * m[i] / (sqrtf(v[i]) * inv_sqrt_bc2 + eps);
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
