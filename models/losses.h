/* losses.h - the training objectives (SPEC "Losses").
 *
 * FPN loss = sum over levels i of [ L(mean_i, logvar_i, t_i) + tv_weight * TV(mean_i) ],
 * t_i = the ground-truth mask (values in [0,1]) area-averaged to level i's
 * size, compared per sample.  Counter loss = L(count, logvar, true count).
 * L is one of:
 *   nll   mean(0.5*exp(-s')*(y-x)^2 + 0.5*s'), s' = max(s, -6)  (default)
 *   paper mean((y-x)^2/(2*exp(t)) + t), t = s if s > -6 else 0
 *   mse   mean((y-x)^2)  (log-variances unused)
 *   decoupled  mse(x, y) + nll(detach(x), s, y): not in the paper.  With
 *         nll the mean's gradient is scaled by exp(-s), so samples the
 *         model finds hard are learnt least (Seitzer et al. 2022, "On the
 *         pitfalls of heteroscedastic uncertainty estimation"); here the
 *         mean trains as with mse and the variance keeps nll's calibrated
 *         optimum exp(s) = (y-x)^2.
 */
#ifndef CC_LOSSES_H
#define CC_LOSSES_H

#include "models/fpn.h"

typedef enum loss_kind { LOSS_NLL = 0, LOSS_PAPER = 1, LOSS_MSE = 2, LOSS_DECOUPLED = 3, LOSS_N } loss_kind;

/* The losses' names, in enum order (the configuration's fpn.loss and
 * counter.loss, bench --loss). */
extern const char *const loss_kind_names[LOSS_N];

#define LOSS_TV_WEIGHT_DEFAULT 1e-6f

/* "nll", "paper", "mse", "decoupled" -> kind; returns 0, or -1 with a message. */
int loss_kind_parse(const char *s, loss_kind *k, cc_status *st);
const char *loss_kind_name(loss_kind k);

/* Values of the last fpn_loss()/counter_loss() call, for logging. */
typedef struct loss_terms {
    double total;                       /* = data + tv */
    double data;                        /* sum over levels of L */
    double tv;                          /* sum over levels of tv_weight * TV */
    int levels;
    double level_data[FPN_MAX_DEPTH];   /* L per level (0 = coarsest) */
    double level_tv[FPN_MAX_DEPTH];     /* unweighted TV per level */
} loss_terms;

/* L(x, s, y) for one prediction (any equal shapes; s ignored for mse and may
 * be NULL then).  Returns a (1) tensor or NULL (tape message). */
cc_tensor *loss_data(cc_tape *t, cc_tensor *x, cc_tensor *s, cc_tensor *y, loss_kind kind);

/* The FPN loss of `out` against target (N,1,H,W) (no gradient is taken
 * through it), where H, W are the FPN input's size: 2x the finest level.
 * tv_weight >= 0 (SPEC: 1e-6; 0 skips the TV ops, level_tv stays 0).  Returns the (1) total loss, or NULL with a
 * message in the tape (e.g. a target whose size does not match the levels,
 * naming both shapes).  terms (may be NULL) receives the parts. */
cc_tensor *fpn_loss(cc_tape *t, const fpn_output *out, cc_tensor *target, loss_kind kind,
                    float tv_weight, loss_terms *terms);

/* Counter loss: count, logvar, true_count all (N,1); per sample, averaged
 * over the batch.  Returns (1) or NULL.  terms (may be NULL): total = data. */
cc_tensor *counter_loss(cc_tape *t, cc_tensor *count, cc_tensor *logvar, cc_tensor *true_count,
                        loss_kind kind, loss_terms *terms);

#endif
