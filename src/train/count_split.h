/* count_split.h - turning images into counts with a trained FPN + counter:
 * the frozen-FPN mask cache and batched prediction over a data split.
 * Shared by train-counter, evaluate, count and saliency. */
#ifndef CC_COUNTING_H
#define CC_COUNTING_H

#include "src/data/dataset.h"
#include "src/data/loader.h"
#include "src/run/session.h"

/* Finest FPN masks (H/2 x W/2) of every image of a split, computed once with
 * the frozen FPN in inference mode.  Flips are applied to the cached mask,
 * which equals flipping the input up to the FPN's (small) lack of flip
 * equivariance; this saves one FPN forward per image and epoch.
 * Memory: 4*H*W/4 bytes per image (48 KiB at 256x192). */
typedef struct mask_cache {
    int64_t n_index;        /* size of slot[] = data set rows */
    int64_t *slot;          /* data set row -> cache row, or -1 */
    float *masks;           /* cache rows of h*w */
    int64_t n;
    int h, w;
} mask_cache;

/* Fill the cache for the rows of `split` of the open data set ds (read
 * here, not kept). */
int mask_cache_build(mask_cache *mc, cc_session *s, cc_models *m, cc_dataset *ds, int split,
                     cc_status *st);
void mask_cache_free(mask_cache *mc);

/* The counter's input for a loader batch as a tape tensor (N,C,H/2,W/2):
 * mask (from the cache, flipped like the batch; or from an FPN forward on
 * the same tape when fpn_on_tape), and/or the image area-averaged by 2.
 * Returns NULL with the tape's message. */
cc_tensor *counting_input(cc_tape *t, cc_session *s, cc_models *m, const mask_cache *mc,
                          const loader_batch *b, int fpn_on_tape);

/* Per-image predictions of a split. */
typedef struct count_preds {
    int64_t n;
    double *truth, *pred, *sigma;   /* sigma NaN for the mse loss */
    double *intensity;              /* mean image intensity (baseline) */
    int32_t *focus;
    int64_t *index;                 /* data set rows */
    double loss;                    /* mean counter loss */
    float *maps;                    /* with want_maps: each image's density map (map_h x
                                     * map_w, row-major), that of its unflipped view */
    int map_h, map_w;
} count_preds;

/* dst = src (h x w, row-major) flipped per bits: bit 0 horizontal, bit 1
 * vertical.  src and dst must not overlap. */
void counting_flip_plane(const float *src, float *dst, int h, int w, unsigned bits);

#define COUNT_MAX_BATCH 4096   /* images per loader batch that prediction accepts */

/* Predict every image the loader yields (one epoch of it, as configured)
 * with the counter on an inference tape.  tta (counter.tta = flips): each
 * image is counted in its four flips (the counter's input flipped, which
 * the training flips taught it to count alike) and the views combined by
 * counting_tta_combine; 4x the counter's cost, the FPN's unchanged.
 * want_maps (a density counter only, assert): out->maps gets each image's
 * map, whose sum is the count without tta. */
int counting_predict(cc_session *s, cc_models *m, cc_tape *t, const mask_cache *mc,
                     cc_loader *L, int tta, int want_maps, count_preds *out, cc_status *st);

/* Combine k >= 1 predictions (means mu, variances var) of one quantity as
 * an equal mixture: mean of the means, variance = mean variance plus the
 * spread of the means (law of total variance). */
void counting_tta_combine(const double *mu, const double *var, int k, double *mu_out,
                          double *var_out);

/* The counter's input for view k (0..3: flips per bits k, as
 * counting_flip_plane) of batch b, which counting_input builds: the cached
 * masks flipped by k on top of b->flipped and, when the counter reads the
 * image, b's images flipped into *scratch (grown to *cap floats as needed;
 * free it when done).  View 0 is counting_input(..., 0) itself.  Returns
 * NULL with the tape's message. */
cc_tensor *counting_view_input(cc_tape *t, cc_session *s, cc_models *m, const mask_cache *mc,
                               const loader_batch *b, unsigned k, float **scratch, size_t *cap);

/* Image i's combined count and sigma over `views` views: counts c[j *
 * stride + i] and log-variances lv[j * stride + i] of view j, mixed by
 * counting_tta_combine.  sigma is NaN for the mse loss. */
void counting_views_combine(const float *c, const float *lv, size_t stride, int views, int i,
                            loss_kind kind, double *count, double *sigma);
void count_preds_free(count_preds *p);

#endif
