/* layers.c - see layers.h. */
#include "models/layers.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>

uint64_t layer_name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

int layer_path(char *buf, cc_status *st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, CC_PARAM_NAME, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= CC_PARAM_NAME)
        return status_set(st, "layers: parameter path too long (%d bytes, at most %d): '%s...'",
                          n, CC_PARAM_NAME - 1, buf);
    return 0;
}

/* params_add() for "<path>/<leaf>". */
static int add(cc_params *P, const char *path, const char *leaf, int ndim, const int64_t *shape,
               cc_param_kind kind, cc_status *st)
{
    char name[CC_PARAM_NAME];
    if (layer_path(name, st, "%s/%s", path, leaf)) return -1;
    return params_add(P, name, ndim, shape, kind, st);
}

int layer_conv_declare(cc_params *P, const char *path, int cin, int cout, int k, int stride,
                       int pad, int bias, layer_conv *l, cc_status *st)
{
    l->cin = cin, l->cout = cout, l->k = k, l->stride = stride, l->pad = pad;
    l->b = -1;
    l->w = add(P, path, "weight", 4, (int64_t[]){cout, cin, k, k}, PARAM_TRAINABLE, st);
    if (l->w < 0) return -1;
    if (bias && (l->b = add(P, path, "bias", 1, (int64_t[]){cout}, PARAM_TRAINABLE, st)) < 0)
        return -1;
    return 0;
}

int layer_linear_declare(cc_params *P, const char *path, int in, int out, layer_linear *l,
                         cc_status *st)
{
    l->in = in, l->out = out;
    if ((l->w = add(P, path, "weight", 2, (int64_t[]){out, in}, PARAM_TRAINABLE, st)) < 0) return -1;
    if ((l->b = add(P, path, "bias", 1, (int64_t[]){out}, PARAM_TRAINABLE, st)) < 0) return -1;
    return 0;
}

int layer_bn_declare(cc_params *P, const char *path, int c, layer_bn *l, cc_status *st)
{
    const int64_t s[1] = {c}, one[1] = {1};
    l->c = c;
    if ((l->gamma = add(P, path, "weight", 1, s, PARAM_TRAINABLE, st)) < 0 ||
        (l->beta = add(P, path, "bias", 1, s, PARAM_TRAINABLE, st)) < 0 ||
        (l->mean = add(P, path, "running_mean", 1, s, PARAM_BUFFER, st)) < 0 ||
        (l->var = add(P, path, "running_var", 1, s, PARAM_BUFFER, st)) < 0 ||
        (l->count = add(P, path, "num_batches_tracked", 1, one, PARAM_BUFFER, st)) < 0)
        return -1;
    return 0;
}

int layer_cba_declare(cc_params *P, const char *path, int cin, int cout, layer_cba *l,
                      cc_status *st)
{
    char sub[CC_PARAM_NAME];
    if (layer_path(sub, st, "%s/conv", path)) return -1;
    if (layer_conv_declare(P, sub, cin, cout, 3, 1, 1, 1, &l->conv, st)) return -1;
    if (layer_path(sub, st, "%s/bn", path)) return -1;
    return layer_bn_declare(P, sub, cout, &l->bn, st);
}

/* U(+-1/sqrt(fan_in)) on parameter i, stream = hash of its name. */
static void init_uniform(cc_params *P, int i, int64_t fan_in, uint64_t seed)
{
    float bound = (float)(1.0 / sqrt((double)fan_in));
    params_init_uniform(P, i, bound, seed, layer_name_hash(P->p[i].name));
}

void layer_conv_init(cc_params *P, const layer_conv *l, uint64_t seed)
{
    int64_t fan_in = (int64_t)l->cin * l->k * l->k;
    init_uniform(P, l->w, fan_in, seed);
    if (l->b >= 0) init_uniform(P, l->b, fan_in, seed);
}

void layer_linear_init(cc_params *P, const layer_linear *l, uint64_t seed)
{
    init_uniform(P, l->w, l->in, seed);
    init_uniform(P, l->b, l->in, seed);
}

void layer_bn_init(cc_params *P, const layer_bn *l)
{
    params_fill(P, l->gamma, 1.0f);
    params_fill(P, l->beta, 0.0f);
    params_fill(P, l->mean, 0.0f);
    params_fill(P, l->var, 1.0f);
    params_fill(P, l->count, 0.0f);
}

void layer_cba_init(cc_params *P, const layer_cba *l, uint64_t seed)
{
    layer_conv_init(P, &l->conv, seed);
    layer_bn_init(P, &l->bn);
}

cc_tensor *layer_conv_forward(cc_tape *t, cc_params *P, const layer_conv *l, cc_tensor *x)
{
    return op_conv2d(t, x, params_tensor(P, l->w), l->b >= 0 ? params_tensor(P, l->b) : NULL,
                     l->stride, l->pad);
}

cc_tensor *layer_linear_forward(cc_tape *t, cc_params *P, const layer_linear *l, cc_tensor *x)
{
    return op_linear(t, x, params_tensor(P, l->w), params_tensor(P, l->b));
}

cc_tensor *layer_bn_forward(cc_tape *t, cc_params *P, const layer_bn *l, cc_tensor *x)
{
    if (P->bn_eval)
        return op_batch_norm_eval(t, x, params_tensor(P, l->gamma), params_tensor(P, l->beta),
                                  params_tensor(P, l->mean), params_tensor(P, l->var),
                                  LAYER_BN_EPS);
    return op_batch_norm(t, x, params_tensor(P, l->gamma), params_tensor(P, l->beta),
                         params_tensor(P, l->mean), params_tensor(P, l->var),
                         params_tensor(P, l->count), P->bn_cumulative ? -1.0f : LAYER_BN_MOMENTUM, LAYER_BN_EPS);
}

cc_tensor *layer_lrelu(cc_tape *t, cc_tensor *x) { return op_leaky_relu(t, x, LAYER_LRELU_SLOPE); }

cc_tensor *layer_bn_lrelu_forward(cc_tape *t, cc_params *P, const layer_bn *l, cc_tensor *x)
{
    if (P->bn_eval)
        return op_batch_norm_eval_lrelu(t, x, params_tensor(P, l->gamma),
                                        params_tensor(P, l->beta), params_tensor(P, l->mean),
                                        params_tensor(P, l->var), LAYER_BN_EPS, LAYER_LRELU_SLOPE);
    return op_batch_norm_lrelu(t, x, params_tensor(P, l->gamma), params_tensor(P, l->beta),
                               params_tensor(P, l->mean), params_tensor(P, l->var),
                               params_tensor(P, l->count),
                               P->bn_cumulative ? -1.0f : LAYER_BN_MOMENTUM, LAYER_BN_EPS,
                               LAYER_LRELU_SLOPE);
}

cc_tensor *layer_conv_bn_lrelu_forward(cc_tape *t, cc_params *P, const layer_conv *c,
                                       const layer_bn *bn, cc_tensor *x)
{
    /* bf16 keeps the separate ops: its convolutions are oneDNN's bf16
     * primitives, which take no folded fp32 weights */
    if (!t->training && !t->ctx->bf16 && !t->no_fold)
        return op_conv2d_bn_lrelu_eval(
            t, x, params_tensor(P, c->w), c->b >= 0 ? params_tensor(P, c->b) : NULL, c->stride,
            c->pad, params_tensor(P, bn->gamma), params_tensor(P, bn->beta),
            params_tensor(P, bn->mean), params_tensor(P, bn->var), LAYER_BN_EPS,
            LAYER_LRELU_SLOPE);
    return layer_bn_lrelu_forward(t, P, bn, layer_conv_forward(t, P, c, x));
}

cc_tensor *layer_cba_forward(cc_tape *t, cc_params *P, const layer_cba *l, cc_tensor *x)
{
    return layer_conv_bn_lrelu_forward(t, P, &l->conv, &l->bn, x);
}
