/* train_util.h - pieces shared by the training drivers: resumable epoch
 * state with checkpoints, metric rows, data set facts. */
#ifndef CC_TRAIN_UTIL_H
#define CC_TRAIN_UTIL_H

#include "autodiff/optim.h"
#include "src/data/loader.h"
#include "src/run/session.h"
#include "src/train/train.h"

/* Switch on the data.aug_* augmentations of c for a training loader. */
void train_loader_augment(cc_loader *L, const cc_config *c);

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
    cc_params *E;               /* optional weight average of P (counter.ema) */
    int next_epoch;
    double best;                /* lowest validation criterion so far */
} train_state;

/* Resume from <stage>_last.h5 when resume is set and it exists (weights,
 * optimizer, epoch, best; the run file forgets rows of later epochs), else
 * start at epoch 0 and drop the stage's old rows.  Set ts->P2/opt2 before
 * the call (or zero them) to checkpoint a second store as
 * <stage>_fpn_{last,best}.h5.  Set ts->E (or zero it) to a weight average
 * of P (train_ema_init): it is saved after every epoch e as
 * <stage>_ema_<e % 2>.h5 (alternating, so that the file matching
 * <stage>_last.h5 is never the one being overwritten; resume checks that
 * its epoch matches), and it, not P, becomes <stage>_best.h5 (without
 * optimizer state) when the criterion improves. */
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

/* E := a store with P's tensors (names, shapes, kinds, frozen flags) and a
 * copy of its values and buffers, for averaging P's weights.  The model
 * structs of P work on E too (they index tensors in declaration order).
 * Returns 0 or -1 (out of memory) with a message. */
int train_ema_init(cc_params *E, const cc_params *P, cc_status *st);

/* After optimizer step number `step` (1, 2, ...): with d = min(decay,
 * (1 + step) / (10 + step)) (the usual warm-up, so that the average soon
 * forgets the initial weights), E.value = d * E.value + (1 - d) * P.value
 * over every trainable tensor, in float, element by element.  Buffers (BN
 * statistics) are not averaged: the average's own statistics are
 * re-estimated (counter.precise_bn). */
void train_ema_update(cc_params *E, const cc_params *P, double decay, int64_t step);

/* A metrics row of NaNs with stage/epoch/split filled in. */
void train_row_init(double *row, int stage, int epoch, int split);

/* Append to the run file's metrics table (in memory until the next flush). */
int train_append_row(cc_session *s, const char *label, const double *row, cc_status *st);

#endif
