/* optim.h - optimizers over the parameter slabs, and learning-rate
 * schedules.
 *
 * Adam follows torch.optim.Adam (bias-corrected moments; weight_decay is the
 * classic L2 term added to the gradient, not AdamW).  SGD follows
 * torch.optim.SGD with momentum (buffer = momentum*buffer + grad; the first
 * step initialises the buffer with the gradient), stored in the m slab.
 * Frozen parameters are skipped.  The step counter is part of the state so
 * checkpoints can resume exactly.
 */
#ifndef CC_OPTIM_H
#define CC_OPTIM_H

#include <stdint.h>

#include "autodiff/isa.h"
#include "autodiff/params.h"

typedef enum cc_optim_kind { OPTIM_ADAM = 0, OPTIM_SGD = 1 } cc_optim_kind;

typedef struct cc_optim {
    cc_optim_kind kind;
    float lr;
    float beta1, beta2, eps;    /* Adam */
    float momentum;             /* SGD */
    float weight_decay;
    int64_t step;               /* updates done so far */
    cc_isa isa;                 /* Adam kernel variant: isa_choose() at init
                                   (all variants give the same bits) */
} cc_optim;

void optim_adam_init(cc_optim *o, float lr, float beta1, float beta2, float eps, float weight_decay);
void optim_sgd_init(cc_optim *o, float lr, float momentum, float weight_decay);

/* One update of every unfrozen trainable parameter from P->grad.  Returns 0,
 * or -1 with a message when a gradient is NaN/Inf (nothing is updated then). */
int optim_step(cc_optim *o, cc_params *P, cc_status *st);

/* sqrt(sum of squared gradients) over unfrozen trainable parameters. */
double optim_grad_norm(const cc_params *P);

/* Scale gradients so their global norm is at most max_norm; returns the norm
 * before clipping. */
double optim_clip_grad_norm(cc_params *P, double max_norm);

typedef enum cc_lr_kind { LR_CONSTANT = 0, LR_STEP = 1, LR_COSINE = 2 } cc_lr_kind;

typedef struct cc_lr_schedule {
    cc_lr_kind kind;
    float base_lr;
    int step_epochs;        /* LR_STEP: multiply by gamma every step_epochs */
    float gamma;            /* 0.5 = halving */
    int epochs;             /* LR_COSINE: the half period (the run's epochs) */
    float min_lr;           /* LR_COSINE: the rate it falls towards */
} cc_lr_schedule;

/* Learning rate for a 0-based epoch.  LR_COSINE: min_lr + (base_lr -
 * min_lr) (1 + cos(pi epoch / epochs)) / 2, PyTorch's CosineAnnealingLR with
 * T_max = epochs stepped once per epoch (base_lr at epoch 0, min_lr from
 * epoch `epochs` on). */
float lr_schedule_at(const cc_lr_schedule *s, int epoch);

#endif
