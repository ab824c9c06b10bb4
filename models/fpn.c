/* fpn.c - see fpn.h. */
#include "models/fpn.h"

#include <stdio.h>
#include <string.h>

fpn_config fpn_config_default(void)
{
    fpn_config c = {4, 128, 1};
    return c;
}

static int head_declare(cc_params *P, const char *base, int d, fpn_head *h, cc_status *st)
{
    char p[CC_PARAM_NAME];
    if (layer_path(p, st, "%s/conv1", base)) return -1;
    if (layer_conv_declare(P, p, d, 2 * d, 3, 1, 1, 1, &h->conv1, st)) return -1;
    if (layer_path(p, st, "%s/bn1", base)) return -1;
    if (layer_bn_declare(P, p, 2 * d, &h->bn1, st)) return -1;
    if (layer_path(p, st, "%s/conv2", base)) return -1;
    if (layer_conv_declare(P, p, 2 * d, 2 * d, 3, 1, 1, 1, &h->conv2, st)) return -1;
    if (layer_path(p, st, "%s/bn2", base)) return -1;
    if (layer_bn_declare(P, p, 2 * d, &h->bn2, st)) return -1;
    if (layer_path(p, st, "%s/conv3", base)) return -1;
    return layer_conv_declare(P, p, 2 * d, 1, 3, 1, 1, 1, &h->conv3, st);
}

int fpn_build(cc_params *P, const fpn_config *cfg, const char *prefix, fpn_model *m,
              cc_status *st)
{
    memset(m, 0, sizeof *m);
    if (cfg->depth < 2 || cfg->depth > FPN_MAX_DEPTH)
        return status_set(st, "fpn: depth %d is outside 2..%d", cfg->depth, FPN_MAX_DEPTH);
    if (cfg->width < 1) return status_set(st, "fpn: width %d must be >= 1", cfg->width);
    if (cfg->in_channels != 1 && cfg->in_channels != 3)
        return status_set(st, "fpn: %d input channels (1 or 3 supported)", cfg->in_channels);
    m->cfg = *cfg;
    const int D = cfg->depth, d = cfg->width;
    char p[CC_PARAM_NAME];
    if (layer_path(p, st, "%s/stem", prefix)) return -1;
    if (layer_cba_declare(P, p, cfg->in_channels, 1, &m->stem, st)) return -1;
    for (int i = 1; i < D; i++) {
        if (layer_path(p, st, "%s/lateral/%d", prefix, i)) return -1;
        if (layer_cba_declare(P, p, 1, d, &m->lateral[i], st)) return -1;
    }
    for (int i = 0; i < D; i++) {
        if (layer_path(p, st, "%s/heads/mean/%d", prefix, i)) return -1;
        if (head_declare(P, p, d, &m->mean[i], st)) return -1;
        if (layer_path(p, st, "%s/heads/logvar/%d", prefix, i)) return -1;
        if (head_declare(P, p, d, &m->logvar[i], st)) return -1;
    }
    return 0;
}

static void head_init(cc_params *P, const fpn_head *h, uint64_t seed)
{
    layer_conv_init(P, &h->conv1, seed);
    layer_bn_init(P, &h->bn1);
    layer_conv_init(P, &h->conv2, seed);
    layer_bn_init(P, &h->bn2);
    layer_conv_init(P, &h->conv3, seed);
}

void fpn_init(cc_params *P, const fpn_model *m, uint64_t seed)
{
    layer_cba_init(P, &m->stem, seed);
    for (int i = 1; i < m->cfg.depth; i++) layer_cba_init(P, &m->lateral[i], seed);
    for (int i = 0; i < m->cfg.depth; i++) {
        head_init(P, &m->mean[i], seed);
        head_init(P, &m->logvar[i], seed);
    }
}

/* conv1/bn1/lrelu -> conv2/bn2/lrelu -> conv3. */
static cc_tensor *head_forward(cc_tape *t, cc_params *P, const fpn_head *h, cc_tensor *u)
{
    cc_tensor *y = layer_conv_bn_lrelu_forward(t, P, &h->conv1, &h->bn1, u);
    y = layer_conv_bn_lrelu_forward(t, P, &h->conv2, &h->bn2, y);
    return layer_conv_forward(t, P, &h->conv3, y);
}

int fpn_forward(cc_tape *t, cc_params *P, const fpn_model *m, cc_tensor *x, fpn_output *out)
{
    memset(out, 0, sizeof *out);
    if (!tape_ok(t) || !x) {
        if (tape_ok(t)) status_set(&t->status, "fpn: input is NULL");
        return -1;
    }
    const int D = m->cfg.depth;
    const int64_t f = (int64_t)1 << D;
    char b[64];
    if (x->ndim != 4 || x->dims[1] != m->cfg.in_channels)
        return status_set(&t->status, "fpn: input %s must be (N,%d,H,W)",
                          tensor_shape_str(x, b, sizeof b), m->cfg.in_channels);
    if (x->dims[2] % f || x->dims[3] % f)
        return status_set(&t->status,
                          "fpn: input size %lldx%lld (HxW) is not divisible by 2^depth = %lld "
                          "(depth %d); use a multiple of %lld, e.g. %lldx%lld",
                          (long long)x->dims[2], (long long)x->dims[3], (long long)f, D,
                          (long long)f, (long long)((x->dims[2] + f - 1) / f * f),
                          (long long)((x->dims[3] + f - 1) / f * f));
    cc_tensor *p[FPN_MAX_DEPTH + 1];
    p[0] = layer_cba_forward(t, P, &m->stem, x);
    for (int k = 1; k <= D; k++) p[k] = op_avg_pool2d(t, p[k - 1], 2);
    cc_tensor *u = op_expand_channels(t, p[D], m->cfg.width);
    out->levels = D;
    for (int i = 0; i < D; i++) {
        if (i > 0)
            u = op_add(t, op_upsample2x(t, u), layer_cba_forward(t, P, &m->lateral[i], p[D - i]));
        out->mean[i] = op_relu(t, head_forward(t, P, &m->mean[i], u));
        out->logvar[i] = head_forward(t, P, &m->logvar[i], u);
    }
    return tape_ok(t) ? 0 : -1;
}
