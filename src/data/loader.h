/* loader.h - training data loader over a cellcount data set (dataset.h).
 *
 * loader_open() reads the images of one split into memory in their storage
 * type (uint8 for BBBC005: 7,680 training images of 256x192 are 377 MB) and
 * the masks as floats, keeping one copy per scene when all images of a
 * scene carry bit-identical masks (as import writes them), so a 600-scene
 * split costs about 118 MB of masks.  After loader_open() returns, HDF5 is
 * never touched again: Debian's HDF5 is a serial (not thread-safe) build,
 * and this way the trainer may write checkpoints while the prefetch thread
 * runs.
 *
 * A prefetch thread (pthreads) assembles the next batch (float conversion,
 * flips) into the second of two buffers while the consumer works on the
 * first.  Every random choice is a pure function of (seed, epoch, dataset
 * index), so batches do not depend on timing and a run resumed at epoch e
 * sees exactly the batches of the uninterrupted run:
 *   - epoch order: the split's indices (ascending) shuffled with rng stream
 *     (seed ^ LOADER_SHUFFLE_TAG, epoch);
 *   - flips of sample i in epoch e: rng stream (seed ^ LOADER_FLIP_TAG,
 *     e * 2^32 + i): bit 0 of the first draw = horizontal, bit 1 =
 *     vertical; the image and its mask are flipped together;
 *   - the other augmentations (loader_set_augment) of sample i in epoch e:
 *     rng stream (seed ^ LOADER_AUG_TAG, e * 2^32 + i), see
 *     loader_augment_sample.  The prefetch thread is the only one that draws,
 *     so nothing depends on the number of OpenMP threads.
 */
#ifndef CC_LOADER_H
#define CC_LOADER_H

#include <stdint.h>

#include "autodiff/status.h"
#include "src/data/dataset.h"

/* Flags for loader_open. */
enum {
    LOADER_SHUFFLE = 1,     /* shuffle every epoch (else dataset order) */
    LOADER_FLIP = 2,        /* random horizontal / vertical flips */
    LOADER_KEEP_LAST = 4,   /* keep the last partial batch (else drop it) */
    LOADER_MASKED = 8,      /* only the samples that have a mask (FPN training) */
};

#define LOADER_SPLIT_ALL (-1)
#define LOADER_SHUFFLE_TAG 0x53687566666c6521ull
#define LOADER_FLIP_TAG 0x466c697073212121ull
#define LOADER_AUG_TAG 0x4175676d656e7421ull

/* Augmentations beyond flips, each off at 0 (config keys data.aug_*).
 * Per sample, in this order after the flip: */
typedef struct loader_aug {
    double scale;   /* objects resized by s ~ U(1-scale, 1+scale) about the image
                     * centre (bilinear; the image and its mask alike; uncovered
                     * borders get the image's minimum and mask 0); the count stays */
    double blur;    /* extra Gaussian blur, sigma ~ U(0, blur) pixels (reflecting
                     * borders; the mask is not blurred: it is the ground truth) */
    double gamma;   /* I := I^g with ln g ~ U(-gamma, gamma) */
    double gain;    /* I := I * k with k ~ U(1-gain, 1+gain) */
    double noise;   /* I := I + N(0, sd^2) per pixel, sd ~ U(0, noise) */
} loader_aug;       /* then I is clamped to [0, 1] (when any is on) */

/* What loader_augment_sample drew for one sample (neutral values when off). */
typedef struct loader_aug_draw {
    double scale, blur, gamma, gain, noise;
} loader_aug_draw;

/* A batch.  All arrays belong to the loader and stay valid until the next
 * loader_next(), loader_epoch_begin() or loader_close(). */
typedef struct loader_batch {
    int n;                  /* samples in this batch (<= batch size) */
    int h, w;
    float *images;          /* (n,1,h,w) intensities in [0,1] */
    float *masks;           /* (n,1,h,w) foreground fractions, 0 without mask */
    int32_t *counts;        /* n true cell counts */
    int32_t *focus;         /* n focus levels */
    uint8_t *has_mask;      /* n flags */
    int64_t *indices;       /* n dataset indices (rows of the file) */
    uint8_t *flipped;       /* n: bit 0 horizontal, bit 1 vertical flip applied */
    int global_n;           /* samples of the whole batch over all shards (= n unsharded) */
    float *scale;           /* n: scale factor applied (1 = none; loader_aug.scale) */
} loader_batch;

typedef struct cc_loader cc_loader;

/* Open `path`, load the images with split == `split` (DATASET_TRAIN/VAL/
 * TEST, or LOADER_SPLIT_ALL) and start the prefetch thread.  batch >= 1.
 * With LOADER_MASKED, samples without a mask are left out (an FPN would
 * otherwise learn empty masks for them).
 * Returns NULL with st set when the file is invalid, the split is empty
 * (with LOADER_MASKED: has no masked sample),
 * memory runs out or the thread cannot start. */
cc_loader *loader_open(const char *path, int split, int batch, uint64_t seed,
                       unsigned flags, cc_status *st);

/* The same from a data set the caller has open (and keeps: the loader
 * reads what it needs here and holds no reference to ds afterwards), for a
 * run that opens its data set once. */
cc_loader *loader_open_ds(cc_dataset *ds, int split, int batch, uint64_t seed, unsigned flags,
                          cc_status *st);

/* Apply augmentations a (copied; scale in [0, 0.5], blur in [0, 20],
 * gamma in [0, 1], gain in [0, 0.9], noise in [0, 0.5]: config.c's ranges)
 * to the batches of the following loader_epoch_begin() calls.  Call
 * between epochs (it waits for a batch being assembled). */
void loader_set_augment(cc_loader *L, const loader_aug *a);

/* Augment one sample in place as the loader does for (seed, epoch, index):
 * draws five uniforms from rng stream (seed ^ LOADER_AUG_TAG,
 * epoch * 2^32 + index) in the order scale, blur, gamma, gain, noise sd
 * (always all five, so switching one off leaves the others' draws as they
 * were), then the noise's normals pixel by pixel.  img and mask (mask may
 * be NULL) are h x w; scratch holds 2*h*w floats.  *out (may be NULL)
 * receives the values drawn. */
void loader_augment_sample(const loader_aug *a, uint64_t seed, int64_t epoch, int64_t index,
                           float *img, float *mask, int h, int w, float *scratch,
                           loader_aug_draw *out);

/* dst = src resized by factor s about the centre (bilinear): dst pixel
 * (x, y) samples src at ((x + 0.5 - w/2) / s + w/2 - 0.5, likewise y);
 * samples outside src read `fill`.  Used for masks cached at another
 * resolution (counting_input).  src != dst. */
void loader_scale_plane(const float *src, float *dst, int h, int w, double s, float fill);

/* Start epoch `epoch` (>= 0): any batch of the previous epoch still
 * prefetched is discarded, the order for this epoch is fixed and
 * prefetching starts.  Calling it again for the same epoch restarts that
 * epoch with the same batches. */
void loader_epoch_begin(cc_loader *L, int64_t epoch);

/* Next batch of the current epoch into *b: returns 1, or 0 when the epoch
 * is over (or no epoch was begun).  Blocks while the prefetch thread is
 * still assembling the batch; that time is added to loader_wait_seconds. */
int loader_next(cc_loader *L, loader_batch *b);

/* Data-parallel training (dist.h): from the next loader_epoch_begin on,
 * every batch of the epoch order (same permutation, same batch boundaries
 * at any shard count) is cut into `shards` contiguous slices and this
 * loader yields slice `shard` only: rows [n k / S, n (k+1) / S) of an
 * n-sample batch.  The samples a step sees over all shards therefore do not
 * depend on the number of ranks, and a kept last batch is split without
 * duplicates (a slice may be empty: b.n == 0).  Default: 0 of 1. */
void loader_set_shard(cc_loader *L, int shard, int shards);

/* Samples in the split, and batches per epoch (after drop/keep last). */
int64_t loader_size(const cc_loader *L);
int64_t loader_batches_per_epoch(const cc_loader *L);

/* Total seconds loader_next() spent waiting for the prefetch thread. */
double loader_wait_seconds(const cc_loader *L);

/* Stop the thread and free everything; NULL is a no-op. */
void loader_close(cc_loader *L);

#endif
