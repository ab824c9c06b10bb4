/* counter.c - see counter.h.  The registry table is the only place that
 * knows the architectures. */
#include "models/counter.h"

#include <assert.h>

#include <stdio.h>
#include <string.h>

extern const counter_arch counter_arch_vgg11, counter_arch_vgg13, counter_arch_vgg16,
    counter_arch_vgg19, counter_arch_vgg11_gap, counter_arch_vgg11_density, counter_arch_resnet18;

static const counter_arch *const registry[] = {
    &counter_arch_vgg11,    /* vgg.c */
    &counter_arch_vgg13,    /* vgg.c */
    &counter_arch_vgg16,    /* vgg.c */
    &counter_arch_vgg19,    /* vgg.c */
    &counter_arch_vgg11_gap, /* vgg.c */
    &counter_arch_vgg11_density, /* vgg.c */
    &counter_arch_resnet18, /* resnet.c */
};
#define N_ARCH ((int)(sizeof registry / sizeof registry[0]))

const counter_arch *counter_arch_find(const char *name)
{
    for (int i = 0; i < N_ARCH; i++)
        if (!strcmp(registry[i]->name, name)) return registry[i];
    return NULL;
}

int counter_arch_count(void) { return N_ARCH; }

const counter_arch *counter_arch_at(int i) { return i >= 0 && i < N_ARCH ? registry[i] : NULL; }

counter_config counter_config_default(void)
{
    counter_config c;
    memset(&c, 0, sizeof c);
    strcpy(c.arch, "vgg11");
    c.in_channels = 1;
    c.height = 96;
    c.width = 128;
    c.width_div = 1;
    c.relu_unstick = 1;
    return c;
}

int counter_width(const counter_config *cfg, int c)
{
    int w = c / (cfg->width_div > 0 ? cfg->width_div : 1);
    return w < 1 ? 1 : w;
}

static int head_declare(cc_params *P, const char *base, int64_t F, int h1, int h2, counter_head *h,
                        cc_status *st)
{
    char p[CC_PARAM_NAME];
    if (layer_path(p, st, "%s/fc1", base)) return -1;
    if (layer_linear_declare(P, p, (int)F, h1, &h->fc1, st)) return -1;
    if (layer_path(p, st, "%s/bn1", base)) return -1;
    if (layer_bn_declare(P, p, h1, &h->bn1, st)) return -1;
    if (layer_path(p, st, "%s/fc2", base)) return -1;
    if (layer_linear_declare(P, p, h1, h2, &h->fc2, st)) return -1;
    if (layer_path(p, st, "%s/bn2", base)) return -1;
    if (layer_bn_declare(P, p, h2, &h->bn2, st)) return -1;
    if (layer_path(p, st, "%s/fc3", base)) return -1;
    return layer_linear_declare(P, p, h2, 1, &h->fc3, st);
}

static int density_declare(cc_params *P, const char *prefix, int F, counter_density *d,
                           cc_status *st)
{
    const int hid = F / 2 > 0 ? F / 2 : 1;
    char p[CC_PARAM_NAME];
    if (layer_path(p, st, "%s/heads/count/conv1", prefix) ||
        layer_conv_declare(P, p, F, hid, 1, 1, 0, 1, &d->conv1, st))
        return -1;
    if (layer_path(p, st, "%s/heads/count/bn1", prefix) ||
        layer_bn_declare(P, p, hid, &d->bn1, st))
        return -1;
    if (layer_path(p, st, "%s/heads/count/conv2", prefix)) return -1;
    return layer_conv_declare(P, p, hid, 1, 1, 1, 0, 1, &d->conv2, st);
}

int counter_build(cc_params *P, const counter_config *cfg, const char *prefix, counter_model *m,
                  cc_status *st)
{
    memset(m, 0, sizeof *m);
    const counter_arch *a = counter_arch_find(cfg->arch);
    if (!a) {
        char known[256] = "";
        for (int i = 0; i < N_ARCH; i++) {
            if (i) strncat(known, ", ", sizeof known - strlen(known) - 1);
            strncat(known, registry[i]->name, sizeof known - strlen(known) - 1);
        }
        return status_set(st, "counter: unknown architecture '%s' (known: %s)", cfg->arch, known);
    }
    if (cfg->in_channels != 1 && cfg->in_channels != 2)
        return status_set(st, "counter: %d input channels (1 = mask, 2 = mask + image)",
                          cfg->in_channels);
    if (cfg->width_div < 1) return status_set(st, "counter: width divisor %d < 1", cfg->width_div);
    if (cfg->height < 1 || cfg->width < 1)
        return status_set(st, "counter: bad input size %dx%d", cfg->height, cfg->width);
    m->cfg = *cfg;
    m->arch = a;
    if (a->build(P, cfg, prefix, &m->backbone, &m->features, st)) {
        counter_free(m);
        return -1;
    }
    if (m->features > INT32_MAX) {
        counter_free(m);
        return status_set(st, "counter: %lld features is too many", (long long)m->features);
    }
    const int h1 = counter_width(cfg, 1024), h2 = counter_width(cfg, 512);
    const int64_t fin = m->features + (cfg->head_means ? cfg->in_channels : 0);
    char p[CC_PARAM_NAME];
    int rc = 0;
    if (a->positions) {
        m->positions = a->positions(m->backbone);
        rc = density_declare(P, prefix, (int)m->features, &m->density, st);
    } else {
        rc = layer_path(p, st, "%s/heads/count", prefix);
        if (!rc) rc = head_declare(P, p, fin, h1, h2, &m->count, st);
    }
    if (!rc) rc = layer_path(p, st, "%s/heads/logvar", prefix);
    if (!rc) rc = head_declare(P, p, fin, h1, h2, &m->logvar, st);
    if (rc) counter_free(m);
    return rc;
}

static void head_init(cc_params *P, const counter_head *h, uint64_t seed)
{
    layer_linear_init(P, &h->fc1, seed);
    layer_bn_init(P, &h->bn1);
    layer_linear_init(P, &h->fc2, seed);
    layer_bn_init(P, &h->bn2);
    layer_linear_init(P, &h->fc3, seed);
}

void counter_init(cc_params *P, const counter_model *m, uint64_t seed)
{
    m->arch->init(P, m->backbone, seed);
    if (m->positions) {
        layer_conv_init(P, &m->density.conv1, seed);
        layer_bn_init(P, &m->density.bn1);
        layer_conv_init(P, &m->density.conv2, seed);
    } else {
        head_init(P, &m->count, seed);
    }
    head_init(P, &m->logvar, seed);
}

void counter_init_count_bias(cc_params *P, const counter_model *m, float mean_count)
{
    if (m->positions)
        params_fill(P, m->density.conv2.b, mean_count / (float)m->positions);
    else
        params_fill(P, m->count.fc3.b, mean_count);
}

void counter_free(counter_model *m)
{
    if (m->arch && m->backbone) m->arch->free_fn(m->backbone);
    m->backbone = NULL;
}

/* The count's final ReLU (counter_config.relu_unstick). */
static cc_tensor *count_relu(cc_tape *t, const counter_model *m, cc_tensor *z)
{
    return m->cfg.relu_unstick ? op_relu_unstick(t, z) : op_relu(t, z);
}

static cc_tensor *head_forward(cc_tape *t, cc_params *P, const counter_head *h, cc_tensor *f)
{
    cc_tensor *y = layer_linear_forward(t, P, &h->fc1, f);
    y = layer_bn_lrelu_forward(t, P, &h->bn1, y);
    y = layer_linear_forward(t, P, &h->fc2, y);
    y = layer_bn_lrelu_forward(t, P, &h->bn2, y);
    return layer_linear_forward(t, P, &h->fc3, y);
}

/* counter_forward; map: NULL, or where the density map goes. */
static int forward(cc_tape *t, cc_params *P, const counter_model *m, cc_tensor *x,
                   cc_tensor **count, cc_tensor **logvar, cc_tensor **map)
{
    *count = *logvar = NULL;
    if (!tape_ok(t) || !x) {
        if (tape_ok(t)) status_set(&t->status, "counter: input is NULL");
        return -1;
    }
    char b[64];
    if (x->ndim != 4 || x->dims[1] != m->cfg.in_channels || x->dims[2] != m->cfg.height ||
        x->dims[3] != m->cfg.width)
        return status_set(&t->status, "counter (%s): input %s, the model was built for (N,%d,%d,%d)",
                          m->arch->name, tensor_shape_str(x, b, sizeof b), m->cfg.in_channels,
                          m->cfg.height, m->cfg.width);
    cc_tensor *f = m->arch->forward(t, P, m->backbone, x);
    if (!f) return -1;
    cc_tensor *dcount = NULL;
    if (m->positions) {
        if (f->ndim != 4 || f->dims[1] != m->features || f->dims[2] * f->dims[3] != m->positions)
            return status_set(&t->status, "counter (%s): backbone gave a %s map, expected "
                              "(N,%lld,h,w) with h*w = %lld", m->arch->name,
                              tensor_shape_str(f, b, sizeof b), (long long)m->features,
                              (long long)m->positions);
        const counter_density *d = &m->density;
        cc_tensor *y = layer_conv_bn_lrelu_forward(t, P, &d->conv1, &d->bn1, f);
        y = layer_conv_forward(t, P, &d->conv2, y);
        y = count_relu(t, m, y);
        if (map) *map = y;
        /* the sum over positions, as their mean times their number */
        dcount = op_flatten(t, op_scale(t, op_global_avg_pool(t, y), (float)m->positions, 0.0f));
        f = op_flatten(t, op_global_avg_pool(t, f));
        if (!dcount || !f) return -1;
    }
    if (f->ndim != 2 || f->dims[1] != m->features)
        return status_set(&t->status, "counter (%s): backbone gave %s features, expected (N,%lld)",
                          m->arch->name, tensor_shape_str(f, b, sizeof b),
                          (long long)m->features);
    if (m->cfg.head_means) {
        /* (N,F) and the channel means (N,Cin,1,1) side by side: (N,F+Cin).
         * The sum over positions is what a max-pooling backbone reads
         * least precisely, and the mask's area is the count's main cue
         * (docs/RESULTS.md, session 15). */
        const int64_t d4[4] = {f->dims[0], f->dims[1], 1, 1};
        cc_tensor *parts[2] = {op_reshape(t, f, 4, d4), op_global_avg_pool(t, x)};
        f = op_flatten(t, op_concat(t, parts, 2));
        if (!f) return -1;
    }
    *count = dcount ? dcount : count_relu(t, m, head_forward(t, P, &m->count, f));
    *logvar = head_forward(t, P, &m->logvar, f);
    return tape_ok(t) ? 0 : -1;
}

int counter_forward(cc_tape *t, cc_params *P, const counter_model *m, cc_tensor *x,
                    cc_tensor **count, cc_tensor **logvar)
{
    return forward(t, P, m, x, count, logvar, NULL);
}

int counter_forward_map(cc_tape *t, cc_params *P, const counter_model *m, cc_tensor *x,
                        cc_tensor **count, cc_tensor **logvar, cc_tensor **map)
{
    assert(m->positions && map);
    *map = NULL;
    return forward(t, P, m, x, count, logvar, map);
}
