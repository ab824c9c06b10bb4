/* evaluate.h - evaluating a trained run: on a split of its own data set,
 * and on another data set (transfer).  Inference over data sets, beside
 * count and saliency over image files. */
#ifndef CC_EVALUATE_H
#define CC_EVALUATE_H

#include <stdint.h>
#include <stdio.h>

#include "src/infer/count_files.h"
#include "src/run/exp_config.h"

/* Evaluate on a split (DATASET_TEST by default): metrics overall, per focus
 * level, per count range and with every count weighted equally (row
 * "count-balanced", metrics_compute_balanced), next to the mean-intensity linear baseline
 * fitted on the training split; printed as a table and stored in run.h5 as
 * table "eval/<split>".  Checkpoints: <out_dir>/fpn_best.h5 and
 * counter_best.h5 unless given.  With counter.calibrate = val or coverage
 * (and a sigma), sigma is calibrated by evaluate_calib_fit() on the
 * validation split's predictions, or with counter.calibrate_on = FILE on
 * the predictions of every image of that data set (same image size and
 * normalisation as the run's, only stains the run's set has, not the run's
 * set itself: else an error naming the file); the table has the calibrated
 * and the raw coverage and width, and the calibration is stored as run.h5
 * attributes counter.sigma_scale and counter.sigma_per_count (count_calib;
 * 1 and 0 when not calibrated), which `cellcount count` applies too, with
 * counter.sigma_fit_on ("val", FILE or "none"). */
/* The count ranges the evaluation tables have a row for (after "overall"
 * and the focus levels): 1-20, 21-40, 41-60, 61-80, 81+.  Range g (0 ..
 * EVAL_COUNT_GROUPS - 1) holds counts *lo..*hi; label gets its row's
 * label ("count 1-20", "count 81+"). */
#define EVAL_COUNT_GROUPS 5
void evaluate_count_group(int g, int *lo, int *hi, char *label, size_t len);

/* The factor k that maximises the Gaussian likelihood of the truths under
 * N(pred, (k sigma)^2): sqrt(mean(((truth - pred) / sigma)^2)) over the
 * entries with a finite positive sigma; NaN when there are none (or all
 * residuals are 0). */
double evaluate_sigma_scale(const double *truth, const double *pred, const double *sigma,
                            int64_t n);

/* The factor k that puts a share `level` of the truths inside pred +-
 * z_level k sigma (z_0.95 = 1.96): over the m entries with a finite
 * positive sigma, |truth - pred| / (z sigma) at rank ceil((m + 1) level)
 * (the split-conformal quantile; the largest when that rank exceeds m).
 * level in (0,1): 0.95 with counter.calibrate = coverage.  NaN when no
 * entry has a sigma or every residual is 0. */
double evaluate_sigma_scale_coverage(const double *truth, const double *pred, const double *sigma,
                                     int64_t n, double level);

/* Fit a calibration (count_files.h: sigma_cal = sqrt((scale sigma)^2 +
 * (per_count max(pred,0))^2)) on predictions with a finite positive sigma.
 * with_count = 0: per_count = 0 and scale = evaluate_sigma_scale (coverage
 * = 0) or evaluate_sigma_scale_coverage(.., 0.95) (coverage = 1).
 * with_count = 1: the ratio per_count / scale minimises the Gaussian NLL
 * (its scale in closed form for each ratio; ratios 0 and 1e-4..1e4, a log
 * grid refined by golden section; a tie keeps 0, so data with no count
 * trend gets the one-factor fit), then coverage = 1 rescales both so that
 * 95% of the truths lie inside pred +- 1.96 sigma_cal.  Returns 0, or -1
 * (c untouched) when no entry has a sigma or every residual is 0. */
int evaluate_calib_fit(count_calib *c, int coverage, int with_count, const double *truth,
                       const double *pred, const double *sigma, int64_t n);

/* tag: NULL, or a name (evaluate_tag_check) appended to every table name
 * as ".<tag>" ("eval/test.flips"), so evaluations of one run under other
 * settings (counter.tta, checkpoints) stay side by side; a tagged
 * evaluation stores its calibration as counter.sigma_scale.<tag> and
 * counter.sigma_per_count.<tag> and the counter.tta it was fitted with as
 * counter.sigma_scale_tta.<tag> (which evaluate_on_run with the same tag
 * applies) and leaves the run's own calibration (counter.sigma_scale, its
 * tta, the out-of-distribution sigma statistics, which count and saliency
 * use) as it is. */
int evaluate_run(const cc_config *cfg, int split, const char *fpn_ckpt, const char *counter_ckpt,
                 const char *tag, FILE *out, cc_status *st);

/* 0 when tag is a usable table-name suffix: 1..32 of [A-Za-z0-9_-];
 * else -1 with a message. */
int evaluate_tag_check(const char *tag, cc_status *st);

/* Evaluate a trained run on another data set (transfer, e.g. a model
 * trained on simulated images counting real ones): the images of
 * data_path in `split` (-1: every split) and of `stain` (0: any) are
 * area-resized to the run's input size (count_input_size) and counted as
 * `cellcount count` counts them (FPN -> mask -> counter, sigma through the
 * run's calibration counter.sigma_scale / sigma_per_count from run.h5, which
 * evaluate_run fitted on the run's own validation split: nothing is
 * refitted on data_path).  The table (overall, per focus level, per count
 * range; MAE, bias, coverage, next to the mean-intensity baseline fitted on
 * the run's training split) is printed and stored in run.h5 as tables
 * "eval_on/<label>" and "predictions_on/<label>", label = data_path's base
 * name without .h5, plus "-w<stain>" and "-<split>" when chosen, plus
 * ".<tag>" with a tag (as evaluate_run; NULL: none), whose calibration is
 * then counter.sigma_scale.<tag> (and .._per_count) when evaluate_run
 * stored one.  cfg: the
 * run's configuration (count_config_load).  Returns 0, or -1 naming the
 * file (unreadable, no image selected, a normalisation other than the
 * run's). */
int evaluate_on_run(const cc_config *cfg, const char *data_path, int split, int stain,
                    const char *fpn_ckpt, const char *counter_ckpt, const char *tag, FILE *out,
                    cc_status *st);

#endif
