/* train.h - the training drivers (evaluation: src/infer/evaluate.h).
 *
 * Every epoch appends rows to the run file's "metrics" table (one per
 * split), rewrites run.h5 atomically, and saves <stage>_last.h5 (and
 * <stage>_best.h5 when validation improved), so a run killed at any moment
 * resumes from the last finished epoch.  With counter.ema the counter's
 * weight average is saved too (counter_ema_<epoch % 2>.h5) and it is the
 * average that is validated and kept as counter_best.h5.  Because every
 * random choice is a function of (seed, epoch, sample) and all kernels are
 * deterministic at a fixed thread count, a resumed run ends with the same weights and metrics
 * as an uninterrupted one.  A NaN/Inf loss stops the run with a message; the
 * last good checkpoint is kept.
 */
#ifndef CC_TRAIN_H
#define CC_TRAIN_H

#include "src/run/exp_config.h"

/* `resume` of the trainers: TRAIN_FRESH starts afresh; TRAIN_RESUME
 * continues from <out_dir>/<stage>_last.h5 and fails when there is none
 * (`--resume` on the wrong directory must not silently start over);
 * TRAIN_RESUME_IF_ANY continues when there is one (quickstart reruns). */
enum { TRAIN_FRESH = 0, TRAIN_RESUME = 1, TRAIN_RESUME_IF_ANY = 2 };

/* Train the FPN on the training split's samples that have masks
 * (validation each epoch, on the validation samples with masks); fails if
 * a split has none.  resume: see TRAIN_RESUME. */
int train_fpn(const cc_config *cfg, int resume, cc_status *st);

/* Train the counter on FPN masks.  fpn_ckpt: the FPN checkpoint to read
 * (NULL: <out_dir>/fpn_best.h5). */
int train_counter(const cc_config *cfg, const char *fpn_ckpt, int resume, cc_status *st);

/* The metrics table's columns, in order. */
#define TRAIN_METRIC_COLS                                                                  \
    "stage", "epoch", "split", "loss", "loss_data", "loss_tv", "mae", "rmse", "r2",        \
        "coverage95", "width95", "lr", "seconds", "images_per_s", "loader_wait_s"
enum { MC_STAGE, MC_EPOCH, MC_SPLIT, MC_LOSS, MC_LOSS_DATA, MC_LOSS_TV, MC_MAE, MC_RMSE, MC_R2,
       MC_COVERAGE, MC_WIDTH, MC_LR, MC_SECONDS, MC_IPS, MC_WAIT, MC_NCOLS };

#endif
