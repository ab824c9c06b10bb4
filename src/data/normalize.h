/* normalize.h - turning a decoded TIFF's integer samples into the [0,1]
 * intensities the models see (`--normalize` of count, saliency, import).
 *
 * Modes (the spec string in brackets, as parsed and printed):
 *   range             [range]  v / (2^bits - 1), bits = the file's sample
 *                     depth (8 or 16).  The default, and what simulated and
 *                     imported data sets use: the absolute intensity is kept,
 *                     and with it the intensity-count cue the counter learns.
 *   bits:N            [bits:N] v / (2^N - 1), 1 <= N <= 16: camera data of N
 *                     bits stored in a wider type (a 12-bit camera's 16-bit
 *                     TIFF: bits:12; with `range` it would be 16x too dark).
 *                     Values above 2^N - 1 are clamped to 1 and counted.
 *                     Files of fewer than N bits (8-bit files with bits:12)
 *                     keep their own range: they cannot hold N-bit data.
 *   max               [max]    v / (max of the image); all 0 when the max is 0.
 *   percentile:LO,HI  [percentile:LO,HI] (v - P_LO) / (P_HI - P_LO) clamped
 *                     to [0,1], 0 <= LO < HI <= 100; P_q is the nearest-rank
 *                     percentile: the k-th smallest sample, k = ceil(q/100 n)
 *                     (k >= 1).  All 0 when P_HI == P_LO.  `percentile` alone
 *                     means percentile:1,99.
 * range and bits:N are absolute scales (they only say what the file's
 * maximum means); max and percentile are per-image and erase the cue that
 * brighter images hold more cells, so they are options, never defaults.
 */
#ifndef CC_NORMALIZE_H
#define CC_NORMALIZE_H

#include <stddef.h>
#include <stdint.h>

#include "autodiff/status.h"
#include "src/data/tiff_io.h"

typedef enum norm_kind { NORM_RANGE = 0, NORM_BITS, NORM_MAX, NORM_PERCENTILE } norm_kind;

typedef struct cc_norm {
    norm_kind kind;
    int bits;           /* NORM_BITS */
    double lo, hi;      /* NORM_PERCENTILE, in percent */
} cc_norm;

/* The longest norm_format() string, with its terminator. */
#define NORM_SPEC_LEN 64

/* Parse a spec (see above) into *n.  Returns 0, or -1 with st saying what
 * is wrong and what is accepted. */
int norm_parse(const char *spec, cc_norm *n, cc_status *st);

/* The canonical spec of n ("range", "bits:12", "max", "percentile:1,99.5"),
 * which norm_parse reads back to the same value. */
void norm_format(const cc_norm *n, char *buf, size_t len);

/* 1 for the per-image modes (max, percentile), 0 for range and bits:N. */
int norm_is_per_image(const cc_norm *n);

/* What norm_apply saw. */
typedef struct norm_info {
    uint16_t vmax;      /* largest sample of the image */
    int64_t clipped;    /* bits:N: samples above 2^N - 1 (clamped to 1) */
} norm_info;

/* out[i] = img->px[i] normalised by n (img->w * img->h floats).  info may
 * be NULL.  Returns 0, or -1 with st set when out of memory (percentile
 * needs a 64 Ki-entry histogram). */
int norm_apply(const cc_image *img, const cc_norm *n, float *out, norm_info *info,
               cc_status *st);

/* 1 when a mode the user asked for (`asked`) and the one a run's training
 * data used (`trained`) give differently scaled inputs: an absolute mode
 * against a per-image one, or two per-image modes that differ.  range
 * against bits:N is not a mismatch: both keep absolute intensities, and
 * which one fits depends on the file's real depth, not on the training. */
int norm_mismatch(const cc_norm *asked, const cc_norm *trained);

#endif
