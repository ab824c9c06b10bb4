/* ood.h - out-of-distribution flags for `cellcount count`: is an image
 * like the ones the run was trained on, so that its count can be trusted?
 *
 * Training-set statistics, stored in the run file (run.h5) as tables with
 * the columns n, min, q01, q50, q99, max (q01: the 1st percentile, ...):
 *   ood/train  written by train-counter at the end of training, over the
 *              training split:
 *     count       the true counts;
 *     intensity   the mean intensity of each image as the models see it
 *                 ([0,1], after the data set's normalisation);
 *     foreground  the mean of the FPN's finest mean mask (the foreground
 *                 fraction) of each image; absent with counter.input =
 *                 image or counter.finetune_fpn (no frozen FPN masks);
 *     area        foreground fraction x input pixels / true count: the
 *                 mean object area in input pixels (images with count >= 1;
 *                 absent with foreground).
 *   ood/sigma  written by evaluate after calibration: row sigma, the
 *              calibrated sigma of the validation split's predictions.
 * The run file's root attribute data.normalize records the training data
 * set's normalisation (normalize.h; written by train-counter too).
 *
 * Flags (count's `ood` column), each named when it fires:
 *   count       predicted count outside [min - m, max + m] of the training
 *               counts, m = max(1, 5% of max - min);
 *   sigma       calibrated sigma above max + m of what calibration saw,
 *               m = 10% of max - min or of max, whichever is larger;
 *   intensity, foreground, area   the image's value outside [min - m,
 *               max + m] of the training images', m = 10% of max - min
 *               (area only for a predicted count >= 1).
 * Extremes rather than quantiles, so that an image like the training ones
 * is flagged about as rarely as a training image would be (1 in n), and
 * the margins keep a single outlying training image from mattering.
 */
#ifndef CC_OOD_H
#define CC_OOD_H

#include <stdio.h>

#include "autodiff/status.h"
#include "src/train/count_split.h"
#include "src/run/runlog.h"
#include "src/run/session.h"

enum { OOD_COUNT = 0, OOD_INTENSITY, OOD_FOREGROUND, OOD_AREA, OOD_SIGMA, OOD_NSTATS };

/* Names as in the tables and the ood column, indexed by OOD_*. */
extern const char *const ood_stat_names[OOD_NSTATS];

/* One statistic's summary (columns of the tables). */
typedef struct ood_summary {
    int have;
    double n, min, q01, q50, q99, max;
} ood_summary;

typedef struct ood_stats {
    ood_summary s[OOD_NSTATS];
    int have_train;     /* table ood/train found */
} ood_stats;

/* Summarise x[0..n) (NaNs skipped) into *out (have = 0 when none left). */
void ood_summarise(const double *x, size_t n, ood_summary *out);

/* Compute the training split's statistics (count, intensity and, with mc
 * non-NULL, foreground and area from mc's masks, which must cover the
 * training split) of data set `path` and store them as table ood/train
 * in the session's run file, with the root attribute data.normalize
 * (the data set's).  Flushes the run file.  Returns 0 or -1 (st). */
int ood_train_stats_write(cc_session *s, const mask_cache *mc, const char *path, cc_status *st);

/* The same from the open data set ds (read here, not kept). */
int ood_train_stats_write_ds(cc_session *s, const mask_cache *mc, cc_dataset *ds, cc_status *st);

/* Store table ood/sigma: the calibrated sigmas sigma[i] * scale of the
 * validation split (NaNs skipped; nothing stored when none are finite).
 * Does not flush.  Returns 0 or -1 (st). */
int ood_sigma_stats_write(runlog *rl, const double *sigma, int64_t n, double scale,
                          cc_status *st);

/* Read the tables of a loaded run file into *o (missing tables or rows:
 * have = 0). */
void ood_stats_read(const runlog *rl, ood_stats *o);

/* The value of each statistic of one image, NaN when unknown. */
typedef struct ood_image {
    double v[OOD_NSTATS];
} ood_image;

/* The flags of one image: buf gets "ok" or the names of the statistics out
 * of range, comma-separated in OOD_* order, or "n/a" when the run has no
 * ood/train table.  Statistics the run or the image lacks are not
 * checked. */
void ood_flags(const ood_stats *o, const ood_image *im, char *buf, size_t len);

#endif
