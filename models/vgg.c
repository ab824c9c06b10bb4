/* vgg.c - VGG backbones for the counter (SPEC "Counter, VGG family"):
 * conv3x3 pad 1 (bias) + BN + LeakyReLU(0.01) per number, M = maxpool 2x2
 * stride 2 (floor), then flatten to F = C_last * h' * w'.
 *
 * Parameter paths follow torchvision's vgg*_bn Sequential numbering, so a
 * backbone moves to and from torchvision by name: each conv takes three
 * slots (conv, bn, activation) and each pool one:
 *   <prefix>/features/<j>/{weight,bias}        conv at slot j
 *   <prefix>/features/<j+1>/{weight,bias,running_mean,running_var,num_batches_tracked}
 * e.g. vgg11: convs at 0, 4, 8, 11, 15, 18, 22, 25.
 *
 * vgg11_gap: the same features, then global average pooling instead of
 * flatten (F = C_last).  Flatten gives every position of the last feature
 * map its own head weights, so the count must be learnt separately at each
 * place a cell can be (6144 x 1024 weights for 480 training scenes); after
 * the average every position counts alike, as a count should.
 * vgg11_density: vgg11's layers up to the third pool, the map handed on
 * whole (counter.h, counter_density).
 */
#include "models/counter.h"

#include <stdio.h>
#include <stdlib.h>

#define VGG_MAX_ITEMS 24
#define M 0

typedef struct vgg_item {
    int pool;               /* 1: maxpool 2x2; 0: conv + bn + act */
    layer_conv conv;
    layer_bn bn;
} vgg_item;

enum { VGG_FLATTEN, VGG_GAP, VGG_MAP };

typedef struct vgg_net {
    int n;
    int out;                /* VGG_FLATTEN, VGG_GAP (global average pooling), VGG_MAP (no pooling) */
    int64_t h, w;           /* the last feature map's size */
    vgg_item it[VGG_MAX_ITEMS];
} vgg_net;

static const int cfg_a[] = {64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M, -1};
/* vgg11 up to its third pool: the density counter's map at 1/8 of the
 * input (12x16 at 96x128), where a position's receptive field spans a few
 * cells rather than the whole image */
static const int cfg_a3[] = {64, M, 128, M, 256, 256, M, -1};
static const int cfg_b[] = {64, 64, M, 128, 128, M, 256, 256, M, 512, 512, M, 512, 512, M, -1};
static const int cfg_d[] = {64,  64,  M,   128, 128, M,   256, 256, 256, M,
                            512, 512, 512, M,   512, 512, 512, M,   -1};
static const int cfg_e[] = {64,  64,  M,   128, 128, M,   256, 256, 256, 256, M,   512,
                            512, 512, 512, M,   512, 512, 512, 512, M,   -1};

static int vgg_build(const int *spec, int out, const char *name, cc_params *P,
                     const counter_config *cfg, const char *prefix, void **bb, int64_t *features,
                     cc_status *st)
{
    vgg_net *net = calloc(1, sizeof *net);
    if (!net) return status_set(st, "%s: out of memory", name);
    *bb = net;
    net->out = out;
    int64_t h = cfg->height, w = cfg->width;
    int c = cfg->in_channels, slot = 0, pools = 0;
    char p[CC_PARAM_NAME];
    for (const int *v = spec; *v >= 0; v++) {
        vgg_item *it = &net->it[net->n++];
        if (*v == M) {
            it->pool = 1;
            h /= 2, w /= 2;
            pools++;
            slot += 1;
            continue;
        }
        int co = counter_width(cfg, *v);
        if (layer_path(p, st, "%s/features/%d", prefix, slot)) return -1;
        if (layer_conv_declare(P, p, c, co, 3, 1, 1, 1, &it->conv, st)) return -1;
        if (layer_path(p, st, "%s/features/%d", prefix, slot + 1)) return -1;
        if (layer_bn_declare(P, p, co, &it->bn, st)) return -1;
        c = co;
        slot += 3;
    }
    if (h < 1 || w < 1)
        return status_set(st, "%s: input %dx%d is too small: %d max-pools need at least %dx%d",
                          name, cfg->height, cfg->width, pools, 1 << pools, 1 << pools);
    net->h = h, net->w = w;
    *features = out == VGG_FLATTEN ? (int64_t)c * h * w : (int64_t)c;
    return 0;
}

static void vgg_init(cc_params *P, const void *bb, uint64_t seed)
{
    const vgg_net *net = bb;
    for (int i = 0; i < net->n; i++)
        if (!net->it[i].pool) {
            layer_conv_init(P, &net->it[i].conv, seed);
            layer_bn_init(P, &net->it[i].bn);
        }
}

static cc_tensor *vgg_forward(cc_tape *t, cc_params *P, const void *bb, cc_tensor *x)
{
    const vgg_net *net = bb;
    for (int i = 0; i < net->n; i++) {
        const vgg_item *it = &net->it[i];
        if (it->pool)
            x = op_max_pool2d(t, x, 2, 2);
        else
            x = layer_conv_bn_lrelu_forward(t, P, &it->conv, &it->bn, x);
    }
    if (net->out == VGG_MAP) return x;
    return op_flatten(t, net->out == VGG_GAP ? op_global_avg_pool(t, x) : x);
}

static int64_t vgg_positions(const void *bb)
{
    const vgg_net *net = bb;
    return net->h * net->w;
}

#define VGG_ARCH(id, spec, out, positions, text)                                               \
    static int build_##id(cc_params *P, const counter_config *cfg, const char *prefix,        \
                          void **bb, int64_t *features, cc_status *st)                         \
    {                                                                                          \
        return vgg_build(spec, out, #id, P, cfg, prefix, bb, features, st);                    \
    }                                                                                          \
    const counter_arch counter_arch_##id = {#id,        text, build_##id, vgg_init,           \
                                            vgg_forward, free, positions};

VGG_ARCH(vgg11, cfg_a, VGG_FLATTEN, NULL, "VGG-11 (config A) with BN + LeakyReLU, flatten")
VGG_ARCH(vgg13, cfg_b, VGG_FLATTEN, NULL, "VGG-13 (config B) with BN + LeakyReLU, flatten")
VGG_ARCH(vgg16, cfg_d, VGG_FLATTEN, NULL, "VGG-16 (config D) with BN + LeakyReLU, flatten")
VGG_ARCH(vgg19, cfg_e, VGG_FLATTEN, NULL, "VGG-19 (config E) with BN + LeakyReLU, flatten")
VGG_ARCH(vgg11_gap, cfg_a, VGG_GAP, NULL,
         "VGG-11 features, global average pooling instead of flatten")
VGG_ARCH(vgg11_density, cfg_a3, VGG_MAP, vgg_positions,
         "VGG-11 to its third pool, a count density per position summed (not in the paper)")
