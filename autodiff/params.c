/* params.c - see params.h. */
#include "autodiff/params.h"

#include <assert.h>
#include <string.h>

void params_init(cc_params *P, cc_ctx *ctx)
{
    memset(P, 0, sizeof *P);
    P->ctx = ctx;
}

void params_free(cc_params *P)
{
    cc_ctx *c = P->ctx;
    size_t tb = sizeof(float) * P->n_train;
    ctx_release(c, P->value, tb);
    ctx_release(c, P->grad, tb);
    ctx_release(c, P->m, tb);
    ctx_release(c, P->v, tb);
    ctx_release(c, P->buf, sizeof(float) * P->n_buf);
    ctx_release(c, P->p, sizeof(cc_param) * (size_t)P->cap);
    memset(P, 0, sizeof *P);
}

int params_find(const cc_params *P, const char *name)
{
    for (int i = 0; i < P->n; i++)
        if (!strcmp(P->p[i].name, name)) return i;
    return -1;
}

int params_add(cc_params *P, const char *name, int ndim, const int64_t *shape,
               cc_param_kind kind, cc_status *st)
{
    if (P->finalized) return status_set(st, "params: cannot add '%s' after finalize", name);
    if (strlen(name) >= CC_PARAM_NAME || !name[0])
        return status_set(st, "params: bad name '%s'", name);
    if (ndim < 1 || ndim > CC_MAX_DIMS)
        return status_set(st, "params: '%s' has rank %d (1..4 allowed)", name, ndim);
    if (params_find(P, name) >= 0) return status_set(st, "params: duplicate name '%s'", name);
    if (P->n == P->cap) {
        int cap = P->cap ? 2 * P->cap : 64;
        cc_param *np = ctx_alloc(P->ctx, sizeof(cc_param) * (size_t)cap, st);
        if (!np) return -1;
        if (P->p) memcpy(np, P->p, sizeof(cc_param) * (size_t)P->n);
        ctx_release(P->ctx, P->p, sizeof(cc_param) * (size_t)P->cap);
        P->p = np;
        P->cap = cap;
    }
    cc_param *p = &P->p[P->n];
    memset(p, 0, sizeof *p);
    strcpy(p->name, name);
    p->ndim = ndim;
    p->numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 1) return status_set(st, "params: '%s' has a zero or negative dim", name);
        p->shape[i] = shape[i];
        p->numel *= (size_t)shape[i];
    }
    p->kind = kind;
    /* Each tensor starts on a 16-float boundary so vector loops stay aligned. */
    size_t *len = kind == PARAM_TRAINABLE ? &P->n_train : &P->n_buf;
    p->offset = *len;
    *len += (p->numel + 15) & ~(size_t)15;
    return P->n++;
}

static void bind_tensor(cc_params *P, cc_param *p)
{
    cc_tensor *t = &p->t;
    tensor_set_shape(t, p->ndim, p->shape);
    t->is_param = 1;
    t->creator = NULL;
    if (p->kind == PARAM_TRAINABLE) {
        t->data = P->value + p->offset;
        t->grad = P->grad + p->offset;
        t->requires_grad = !p->frozen;
        t->grad_ready = 1;  /* accumulate into the slab */
    } else {
        t->data = P->buf + p->offset;
        t->grad = NULL;
        t->requires_grad = 0;
        t->grad_ready = 0;
    }
}

int params_finalize(cc_params *P, cc_status *st)
{
    if (P->finalized) return 0;
    size_t tb = sizeof(float) * P->n_train;
    if (!(P->value = ctx_alloc(P->ctx, tb, st)) || !(P->grad = ctx_alloc(P->ctx, tb, st)) ||
        !(P->m = ctx_alloc(P->ctx, tb, st)) || !(P->v = ctx_alloc(P->ctx, tb, st)) ||
        !(P->buf = ctx_alloc(P->ctx, sizeof(float) * P->n_buf, st)))
        return -1;
    for (int i = 0; i < P->n; i++) bind_tensor(P, &P->p[i]);
    P->finalized = 1;
    return 0;
}

cc_tensor *params_tensor(cc_params *P, int i)
{
    assert(P->finalized && i >= 0 && i < P->n);
    return &P->p[i].t;
}

int params_set_frozen(cc_params *P, const char *prefix, int frozen)
{
    int changed = 0;
    size_t lp = strlen(prefix);
    for (int i = 0; i < P->n; i++) {
        cc_param *p = &P->p[i];
        if (p->kind != PARAM_TRAINABLE || strncmp(p->name, prefix, lp)) continue;
        if (p->frozen != frozen) changed++;
        p->frozen = frozen;
        if (P->finalized) p->t.requires_grad = !frozen;
    }
    return changed;
}

size_t params_count_trainable(const cc_params *P)
{
    size_t n = 0;
    for (int i = 0; i < P->n; i++)
        if (P->p[i].kind == PARAM_TRAINABLE) n += P->p[i].numel;
    return n;
}

void params_zero_grad(cc_params *P)
{
    memset(P->grad, 0, sizeof(float) * P->n_train);
    /* The next backward writes each trainable gradient straight into the
     * slab instead of into a temporary that is then added to the zeros:
     * saves a pass over every gradient and, more importantly, one OpenMP
     * region per parameter (issue 13: each region's barrier can cost a
     * scheduler time slice on a busy machine).  Later backwards without a
     * zero_grad accumulate as before. */
    for (int i = 0; i < P->n; i++)
        if (P->p[i].kind == PARAM_TRAINABLE && !P->p[i].frozen) P->p[i].t.grad_ready = 0;
}

void params_init_uniform(cc_params *P, int i, float bound, uint64_t seed, uint64_t stream)
{
    cc_param *p = &P->p[i];
    cc_rng r;
    rng_seed(&r, seed, stream);
    float *d = p->t.data;
    for (size_t k = 0; k < p->numel; k++) d[k] = (float)rng_range(&r, -bound, bound);
}

void params_fill(cc_params *P, int i, float value)
{
    cc_param *p = &P->p[i];
    for (size_t k = 0; k < p->numel; k++) p->t.data[k] = value;
}
