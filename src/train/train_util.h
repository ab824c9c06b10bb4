/* train_util.h - pieces shared by the training drivers: resumable epoch
 * state with checkpoints, metric rows, data set facts. */
#ifndef CC_TRAIN_UTIL_H
#define CC_TRAIN_UTIL_H

#include "autodiff/optim.h"
#include "src/data/dataset.h"
#include "src/data/loader.h"
#include "src/run/session.h"
#include "src/train/train.h"

/* Switch on the data.aug_* augmentations of c for a training loader. */
void train_loader_augment(cc_loader *L, const cc_config *c);

/* lr schedule of a training section. */
cc_lr_schedule train_schedule(const cfg_train *t);

/* The rate of the step after `done` (>= 0) steps of a linear warm-up over
 * `warm` steps towards lr: lr (done + 1) / warm while done < warm, then lr
 * (lr itself for warm <= 0). */
float train_warmup_lr(float lr, int64_t done, int64_t warm);

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

/* What both trainers hold for one run.  Set up, in this order, by
 * train_run_open (session), train_run_models (models), train_run_loaders
 * (training and validation loaders) and train_run_start (optimizer, tapes,
 * lr schedule); train_run_close frees whatever was reached, so a trainer's
 * error path is one call whichever step failed. */
typedef struct train_run {
    cc_session s;
    cc_dataset *ds;         /* the run's data set (data.file), opened once */
    cc_models m;
    cc_loader *tr, *va;     /* shuffled (augmented) training / in-order validation */
    cc_optim opt;           /* the stage's optimizer */
    cc_lr_schedule sched;
    cc_tape ttrain, teval;  /* training tape (intermediate gradients freed) / inference */
    int tapes;              /* the tapes are initialised */
} train_run;

/* Zero r and open the session (out_dir, run file, context; resume as in
 * train.h).  Returns 0 or -1 (st); call train_run_close either way. */
int train_run_open(train_run *r, const cc_config *cfg, int resume, cc_status *st);

/* Open the data set (r->ds, the one open of data.file in a run: mask
 * caches, loaders and statistics read it through r->ds) and build the
 * models for its image size (with_counter: the counter as well as the FPN;
 * weights initialised from the seed).  Returns 0 or -1 (st). */
int train_run_models(train_run *r, int with_counter, cc_status *st);

/* Open the loaders of tc's batch size: r->tr over the training split
 * (shuffled; flips with data.augment; the data.aug_* augmentations), r->va
 * over the validation split (in order, last partial batch kept); `flags`
 * (LOADER_MASKED) is added to both.  Under MPI the training loader, and
 * the validation one when shard_val, are sharded (train_shard_loaders:
 * min_per_rank and key as there).  Returns 0 or -1 (st). */
int train_run_loaders(train_run *r, const cfg_train *tc, unsigned flags, int shard_val,
                      int min_per_rank, const char *key, cc_status *st);

/* The optimizer (tc's), the lr schedule and the two tapes. */
void train_run_start(train_run *r, const cfg_train *tc);

/* Start epoch `epoch` (0-based) of tc: r->opt.lr := the schedule's lr for
 * it, and a progress line "<stage> epoch e/E" over the epoch's steps
 * (tc->max_steps caps them). */
void train_run_epoch_begin(train_run *r, const cfg_train *tc, const char *stage, int epoch,
                           progress *pg);

/* Free the tapes, loaders, models, data set and session (each only if set
 * up). */
void train_run_close(train_run *r);

/* A metrics row of NaNs with stage/epoch/split filled in. */
void train_row_init(double *row, int stage, int epoch, int split);

/* The training split's row of an epoch: train_row_init, then lr, seconds,
 * images per second (n / seconds) and the loader's wait; the caller adds
 * the losses. */
void train_row_epoch(double *row, int stage, int epoch, double lr, double seconds, int64_t n,
                     double wait);

/* Append to the run file's metrics table (in memory until the next flush). */
int train_append_row(cc_session *s, const char *label, const double *row, cc_status *st);

#endif
