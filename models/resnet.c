/* resnet.c - a ResNet-18 style backbone for the counter (the paper's
 * suggested next architecture).
 *
 *   stem   conv3x3(Cin->64, stride 1, pad 1, no bias) + BN + LeakyReLU,
 *          maxpool 2x2 stride 2
 *   layer1..layer4: two basic blocks each, widths 64, 128, 256, 512; the
 *          first block of layer2..4 has stride 2 and a 1x1 stride-2 conv +
 *          BN shortcut ("downsample")
 *   basic block: y = act(bn1(conv1(x))); y = bn2(conv2(y)); act(y + shortcut)
 *   global average pooling -> F = 512 features
 *
 * Differences from torchvision's resnet18, for small single-channel masks
 * (96x128 by default): a 3x3 stride-1 stem and a 2x2 max pool instead of
 * 7x7/2 + 3x3/2 pad 1 (our pool has no padding), and LeakyReLU(0.01) as
 * everywhere in this project instead of ReLU.  Convs have no bias (each is
 * followed by BN), as in torchvision.  The input needs H, W >= 16.
 *
 * Parameter paths (torchvision's names):
 *   <prefix>/features/conv1/weight, <prefix>/features/bn1/...
 *   <prefix>/features/layer<s>/<b>/{conv1,bn1,conv2,bn2}/...
 *   <prefix>/features/layer<s>/0/downsample/{0 (conv), 1 (bn)}/...   s >= 2
 */
#include "models/counter.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct res_block {
    layer_conv conv1, conv2, down;
    layer_bn bn1, bn2, down_bn;
    int has_down;
} res_block;

typedef struct res_net {
    layer_conv conv1;
    layer_bn bn1;
    res_block blocks[4][2];
} res_net;

static int block_declare(cc_params *P, const char *base, int cin, int cout, int stride,
                         res_block *b, cc_status *st)
{
    char p[CC_PARAM_NAME];
    if (layer_path(p, st, "%s/conv1", base)) return -1;
    if (layer_conv_declare(P, p, cin, cout, 3, stride, 1, 0, &b->conv1, st)) return -1;
    if (layer_path(p, st, "%s/bn1", base)) return -1;
    if (layer_bn_declare(P, p, cout, &b->bn1, st)) return -1;
    if (layer_path(p, st, "%s/conv2", base)) return -1;
    if (layer_conv_declare(P, p, cout, cout, 3, 1, 1, 0, &b->conv2, st)) return -1;
    if (layer_path(p, st, "%s/bn2", base)) return -1;
    if (layer_bn_declare(P, p, cout, &b->bn2, st)) return -1;
    b->has_down = stride != 1 || cin != cout;
    if (!b->has_down) return 0;
    if (layer_path(p, st, "%s/downsample/0", base)) return -1;
    if (layer_conv_declare(P, p, cin, cout, 1, stride, 0, 0, &b->down, st)) return -1;
    if (layer_path(p, st, "%s/downsample/1", base)) return -1;
    return layer_bn_declare(P, p, cout, &b->down_bn, st);
}

static int resnet18_build(cc_params *P, const counter_config *cfg, const char *prefix, void **bb,
                          int64_t *features, cc_status *st)
{
    if (cfg->height < 16 || cfg->width < 16)
        return status_set(st, "resnet18: input %dx%d is too small (at least 16x16: the stem "
                              "pool and three stride-2 stages halve it four times)",
                          cfg->height, cfg->width);
    res_net *net = calloc(1, sizeof *net);
    if (!net) return status_set(st, "resnet18: out of memory");
    *bb = net;
    char p[CC_PARAM_NAME];
    int c = counter_width(cfg, 64);
    if (layer_path(p, st, "%s/features/conv1", prefix)) return -1;
    if (layer_conv_declare(P, p, cfg->in_channels, c, 3, 1, 1, 0, &net->conv1, st)) return -1;
    if (layer_path(p, st, "%s/features/bn1", prefix)) return -1;
    if (layer_bn_declare(P, p, c, &net->bn1, st)) return -1;
    for (int s = 0; s < 4; s++) {
        int co = counter_width(cfg, 64 << s);
        for (int b = 0; b < 2; b++) {
            if (layer_path(p, st, "%s/features/layer%d/%d", prefix, s + 1, b)) return -1;
            int stride = (s > 0 && b == 0) ? 2 : 1;
            if (block_declare(P, p, c, co, stride, &net->blocks[s][b], st)) return -1;
            c = co;
        }
    }
    *features = c;
    return 0;
}

static void resnet18_init(cc_params *P, const void *bb, uint64_t seed)
{
    const res_net *net = bb;
    layer_conv_init(P, &net->conv1, seed);
    layer_bn_init(P, &net->bn1);
    for (int s = 0; s < 4; s++)
        for (int b = 0; b < 2; b++) {
            const res_block *k = &net->blocks[s][b];
            layer_conv_init(P, &k->conv1, seed);
            layer_bn_init(P, &k->bn1);
            layer_conv_init(P, &k->conv2, seed);
            layer_bn_init(P, &k->bn2);
            if (k->has_down) {
                layer_conv_init(P, &k->down, seed);
                layer_bn_init(P, &k->down_bn);
            }
        }
}

static cc_tensor *block_forward(cc_tape *t, cc_params *P, const res_block *b, cc_tensor *x)
{
    cc_tensor *y = layer_conv_bn_lrelu_forward(t, P, &b->conv1, &b->bn1, x);
    y = layer_bn_forward(t, P, &b->bn2, layer_conv_forward(t, P, &b->conv2, y));
    cc_tensor *s = b->has_down
                       ? layer_bn_forward(t, P, &b->down_bn, layer_conv_forward(t, P, &b->down, x))
                       : x;
    return layer_lrelu(t, op_add(t, y, s));
}

static cc_tensor *resnet18_forward(cc_tape *t, cc_params *P, const void *bb, cc_tensor *x)
{
    const res_net *net = bb;
    x = layer_conv_bn_lrelu_forward(t, P, &net->conv1, &net->bn1, x);
    x = op_max_pool2d(t, x, 2, 2);
    for (int s = 0; s < 4; s++)
        for (int b = 0; b < 2; b++) x = block_forward(t, P, &net->blocks[s][b], x);
    return op_flatten(t, op_global_avg_pool(t, x));
}

const counter_arch counter_arch_resnet18 = {
    "resnet18", "ResNet-18 style basic blocks with BN + LeakyReLU, global average pooling",
    resnet18_build, resnet18_init, resnet18_forward, free, NULL};
