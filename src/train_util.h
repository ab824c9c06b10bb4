/* train_util.h - pieces shared by the training drivers: resumable epoch
 * state with checkpoints, metric rows, data set facts. */
#ifndef CC_TRAIN_UTIL_H
#define CC_TRAIN_UTIL_H

#include "autodiff/optim.h"
#include "src/loader.h"
#include "src/session.h"
#include "src/train.h"

/* Image size of a data set file. */
int train_dataset_size(const char *path, int *h, int *w, cc_status *st);

/* lr schedule of a training section. */
cc_lr_schedule train_schedule(const cfg_train *t);

/* Epoch bookkeeping of one stage ("fpn" or "counter"). */
typedef struct train_state {
    char stage[16];
    int stage_id;               /* metrics column "stage": 0 fpn, 1 counter */
    cc_params *P;               /* the stage's store ... */
    cc_optim *opt;              /* ... and optimizer (checkpointed) */
    cc_params *P2;              /* optional second store (fine-tuned FPN) */
    cc_optim *opt2;
    int next_epoch;
    double best;                /* lowest validation criterion so far */
} train_state;

/* Resume from <stage>_last.h5 when resume is set and it exists (weights,
 * optimizer, epoch, best; the run file forgets rows of later epochs), else
 * start at epoch 0 and drop the stage's old rows.  Set ts->P2/opt2 before
 * the call (or zero them) to checkpoint a second store as
 * <stage>_fpn_{last,best}.h5. */
int train_state_begin(train_state *ts, cc_session *s, const char *stage, cc_params *P,
                      cc_optim *opt, int resume, cc_status *st);

/* After an epoch: flush the run file, save <stage>_best.h5 when criterion
 * improved, then <stage>_last.h5 (in this order, so a crash in between
 * redoes the epoch instead of losing it). */
int train_state_epoch_end(train_state *ts, cc_session *s, int epoch, double criterion,
                          cc_status *st);

/* MPI (dist.h): give every rank its slice of each batch of tr (and of va
 * unless NULL); a clear error when `batch` (the setting named key) leaves
 * a rank fewer than min_per_rank samples. */
int train_shard_loaders(cc_session *s, cc_loader *tr, cc_loader *va, int batch,
                        int min_per_rank, const char *key, cc_status *st);

/* A metrics row of NaNs with stage/epoch/split filled in. */
void train_row_init(double *row, int stage, int epoch, int split);

/* Append to the run file's metrics table (in memory until the next flush). */
int train_append_row(cc_session *s, const char *label, const double *row, cc_status *st);

#endif
