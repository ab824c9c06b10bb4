/* counter.h - the regression network that counts cells from a mask.
 *
 * A counter = a backbone chosen by name from a registry (VGG family,
 * ResNet-18), which maps x (N,Cin,H,W) to features (N,F), followed by two
 * heads (SPEC "Counter"):
 *   count  = fc1(F->1024)+bn1+LeakyReLU -> fc2(1024->512)+bn2+LeakyReLU -> fc3(512->1) -> ReLU
 *   logvar = same shapes, own weights, no final activation.
 * Cin is 1 (the FPN's finest mean mask) or 2 (mask + area-downsampled
 * image, concatenated by the caller in that order).
 *
 * Parameter paths (prefix "counter" by default; docs/PARAMS.md):
 *   <prefix>/features/...                         backbone (see vgg.c, resnet.c)
 *   <prefix>/heads/{count,logvar}/{fc1,bn1,fc2,bn2,fc3}/...
 *
 * Adding an architecture: write models/<arch>.c defining a counter_arch
 * and add one line to the table in counter.c.
 */
#ifndef CC_COUNTER_H
#define CC_COUNTER_H

#include "models/layers.h"

#define COUNTER_ARCH_NAME 32

typedef struct counter_config {
    char arch[COUNTER_ARCH_NAME];   /* registry name, e.g. "vgg11" */
    int in_channels;                /* 1 or 2 */
    int height, width;              /* input size: fixes F for VGG */
    /* Divide every channel count and head width by this (>= 1, results
     * floored at 1).  1 is the SPEC model; tests use 8..16 for tiny nets. */
    int width_div;
    /* 1: the count's final relu is op_relu_unstick (same forward; a dead
     * output still learns); 0: plain relu, the paper's training. */
    int relu_unstick;
    /* 1: each head's first layer also reads the mean over positions of
     * every input channel (the mask's foreground fraction), beside the
     * backbone's F features; 0: the paper's heads. */
    int head_means;
} counter_config;

/* One backbone family member. */
typedef struct counter_arch {
    const char *name;
    const char *about;          /* one line for --help and summaries */
    /* Declare the backbone's tensors under "<prefix>/features" for cfg's input
     * size, allocate its private layer table in *bb (freed by free_fn), and
     * set *features = F.  Returns 0 or -1 with a message (e.g. an input too
     * small for the backbone's down-sampling). */
    int (*build)(cc_params *P, const counter_config *cfg, const char *prefix, void **bb,
                 int64_t *features, cc_status *st);
    void (*init)(cc_params *P, const void *bb, uint64_t seed);
    /* x (N,Cin,H,W) -> (N,F) (any layout); NULL on error (tape message). */
    cc_tensor *(*forward)(cc_tape *t, cc_params *P, const void *bb, cc_tensor *x);
    void (*free_fn)(void *bb);
    /* NULL for the archs above.  Set: forward returns the feature map
     * (N,F,h',w') instead, and this gives h'*w'; the counter then counts
     * with a density head (counter_density) and the logvar head reads the
     * map's average over positions. */
    int64_t (*positions)(const void *bb);
} counter_arch;

typedef struct counter_head {
    layer_linear fc1, fc2, fc3;
    layer_bn bn1, bn2;
} counter_head;

/* The count of a spatial arch: a density per position, summed,
 *   count = sum over positions of relu(conv2(LeakyReLU(bn1(conv1(f)))))
 * conv1 1x1 F -> F/2, conv2 1x1 F/2 -> 1.  A sum of local terms counts
 * every place of the image alike and adds up the cells of its parts, as a
 * count does, where the flatten heads learn each position's weights apart
 * (docs/SPEC.md "vgg11_density"). */
typedef struct counter_density {
    layer_conv conv1, conv2;
    layer_bn bn1;
} counter_density;

typedef struct counter_model {
    counter_config cfg;
    const counter_arch *arch;
    void *backbone;             /* owned; counter_free() releases it */
    int64_t features;           /* F */
    int64_t positions;          /* h'*w' of a spatial arch's map, else 0 */
    counter_head count, logvar; /* count: unused (not declared) for spatial archs */
    counter_density density;    /* spatial archs only */
} counter_model;

/* Registry lookup: the architecture named `name`, or NULL. */
const counter_arch *counter_arch_find(const char *name);
/* Number of registered architectures and the i-th (for --help listings). */
int counter_arch_count(void);
const counter_arch *counter_arch_at(int i);

/* The paper's counter: vgg11, 1 channel, 96x128 input, full width. */
counter_config counter_config_default(void);

/* Declare a counter's parameters under `prefix` in an unfinalized store.
 * Returns 0, or -1 with a message (unknown arch naming the known ones,
 * in_channels not 1 or 2, width_div < 1, input too small, duplicates).
 * On failure nothing needs freeing; on success call counter_free(). */
int counter_build(cc_params *P, const counter_config *cfg, const char *prefix, counter_model *m,
                  cc_status *st);

/* PyTorch default initialisation of every counter tensor (finalized store). */
void counter_init(cc_params *P, const counter_model *m, uint64_t seed);

/* Set the count head's last bias (fc3/bias; a density head's conv2/bias
 * to mean_count / positions) to mean_count, e.g. the mean
 * count of the training set.  Optional, and a deviation from PyTorch's
 * default init: the head ends in a ReLU, and with the default init a sample
 * whose pre-activation starts negative gets no gradient and can stay at 0
 * for good (observed for most seeds when a tiny counter memorises 8
 * images).  Starting the output at the data's mean keeps every sample on
 * the live side of the ReLU at the start. */
void counter_init_count_bias(cc_params *P, const counter_model *m, float mean_count);

/* Release the backbone table (the tensors belong to the store). */
void counter_free(counter_model *m);

/* Forward x (N,Cin,H,W), H and W as configured.  *count (N,1) >= 0 and
 * *logvar (N,1).  Returns 0, or -1 with the message in the tape.  BN1d in
 * the heads needs N >= 2 on a training tape. */
int counter_forward(cc_tape *t, cc_params *P, const counter_model *m, cc_tensor *x,
                    cc_tensor **count, cc_tensor **logvar);

/* counter_forward, and *map = the density head's map (N,1,h,w), h*w =
 * m->positions, whose sum over positions is *count: what
 * counter.density_weight supervises.  m must have positions (assert). */
int counter_forward_map(cc_tape *t, cc_params *P, const counter_model *m, cc_tensor *x,
                        cc_tensor **count, cc_tensor **logvar, cc_tensor **map);

/* Channel count c / width_div, at least 1 (for backbone builders). */
int counter_width(const counter_config *cfg, int c);

#endif
