/* evaluate.h - evaluating a trained run: on a split of its own data set,
 * and on another data set (transfer).  Inference over data sets, beside
 * count and saliency over image files. */
#ifndef CC_EVALUATE_H
#define CC_EVALUATE_H

#include <stdint.h>
#include <stdio.h>

#include "src/run/exp_config.h"

/* Evaluate on a split (DATASET_TEST by default): metrics overall, per focus
 * level and per count range, next to the mean-intensity linear baseline
 * fitted on the training split; printed as a table and stored in run.h5 as
 * table "eval/<split>".  Checkpoints: <out_dir>/fpn_best.h5 and
 * counter_best.h5 unless given.  With counter.calibrate = val (and a sigma),
 * sigma is multiplied by evaluate_sigma_scale() of the validation split's
 * predictions; the table has the calibrated and the raw coverage and width,
 * and the factor is stored as run.h5 attribute counter.sigma_scale (1 when
 * not calibrated), which `cellcount count` applies too. */
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

/* tag: NULL, or a name (evaluate_tag_check) appended to every table name
 * as ".<tag>" ("eval/test.flips"), so evaluations of one run under other
 * settings (counter.tta, checkpoints) stay side by side; a tagged
 * evaluation stores its factor as counter.sigma_scale.<tag> and the
 * counter.tta it was fitted with as counter.sigma_scale_tta.<tag> (which
 * evaluate_on_run with the same tag applies) and leaves the run's own
 * calibration (counter.sigma_scale, its tta, the out-of-distribution sigma
 * statistics, which count and saliency use) as it is. */
int evaluate_run(const cc_config *cfg, int split, const char *fpn_ckpt, const char *counter_ckpt,
                 const char *tag, FILE *out, cc_status *st);

/* 0 when tag is a usable table-name suffix: 1..32 of [A-Za-z0-9_-];
 * else -1 with a message. */
int evaluate_tag_check(const char *tag, cc_status *st);

/* Evaluate a trained run on another data set (transfer, e.g. a model
 * trained on simulated images counting real ones): the images of
 * data_path in `split` (-1: every split) and of `stain` (0: any) are
 * area-resized to the run's input size (count_input_size) and counted as
 * `cellcount count` counts them (FPN -> mask -> counter, sigma times the
 * run's calibration factor counter.sigma_scale from run.h5, which
 * evaluate_run fitted on the run's own validation split: nothing is
 * refitted on data_path).  The table (overall, per focus level, per count
 * range; MAE, bias, coverage, next to the mean-intensity baseline fitted on
 * the run's training split) is printed and stored in run.h5 as tables
 * "eval_on/<label>" and "predictions_on/<label>", label = data_path's base
 * name without .h5, plus "-w<stain>" and "-<split>" when chosen, plus
 * ".<tag>" with a tag (as evaluate_run; NULL: none), whose sigma factor is
 * then counter.sigma_scale.<tag> when evaluate_run stored one.  cfg: the
 * run's configuration (count_config_load).  Returns 0, or -1 naming the
 * file (unreadable, no image selected, a normalisation other than the
 * run's). */
int evaluate_on_run(const cc_config *cfg, const char *data_path, int split, int stain,
                    const char *fpn_ckpt, const char *counter_ckpt, const char *tag, FILE *out,
                    cc_status *st);

#endif
