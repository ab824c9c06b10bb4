/* losses.c - see losses.h. */
#include "models/losses.h"

#include <string.h>

const char *const loss_kind_names[LOSS_N] = {"nll", "paper", "mse", "decoupled"};

int loss_kind_parse(const char *s, loss_kind *k, cc_status *st)
{
    for (int i = 0; i < LOSS_N; i++)
        if (!strcmp(s, loss_kind_names[i])) {
            *k = (loss_kind)i;
            return 0;
        }
    return status_set(st, "unknown loss '%s' (nll, paper, mse or decoupled)", s);
}

const char *loss_kind_name(loss_kind k) { return k >= 0 && k < LOSS_N ? loss_kind_names[k] : "?"; }

cc_tensor *loss_data(cc_tape *t, cc_tensor *x, cc_tensor *s, cc_tensor *y, loss_kind kind)
{
    switch (kind) {
    case LOSS_NLL: return op_loss_nll(t, x, s, y);
    case LOSS_PAPER: return op_loss_paper(t, x, s, y);
    case LOSS_MSE: return op_loss_mse(t, x, y);
    case LOSS_DECOUPLED: {
        /* The mean learns from the squared error alone; the log-variance
         * from the NLL around the detached mean, whose optimum is still
         * exp(s) = (y-x)^2. */
        cc_tensor *xd = x ? tape_detach(t, x) : NULL;
        cc_tensor *a = op_loss_mse(t, x, y), *b = xd ? op_loss_nll(t, xd, s, y) : NULL;
        return a && b ? op_add(t, a, b) : NULL;
    }
    case LOSS_N: break;
    }
    if (tape_ok(t)) status_set(&t->status, "loss: bad kind %d", (int)kind);
    return NULL;
}

static cc_tensor *acc_add(cc_tape *t, cc_tensor *acc, cc_tensor *x)
{
    return acc ? op_add(t, acc, x) : x;
}

cc_tensor *fpn_loss(cc_tape *t, const fpn_output *out, cc_tensor *target, loss_kind kind,
                    float tv_weight, loss_terms *terms)
{
    if (terms) memset(terms, 0, sizeof *terms);
    if (!tape_ok(t)) return NULL;
    if (!target || out->levels < 1) {
        status_set(&t->status, "fpn_loss: no target or no levels");
        return NULL;
    }
    char a[64], b[64];
    const cc_tensor *fine = out->mean[out->levels - 1];
    if (target->ndim != 4 || target->dims[1] != 1 || target->dims[0] != fine->dims[0] ||
        target->dims[2] != 2 * fine->dims[2] || target->dims[3] != 2 * fine->dims[3]) {
        status_set(&t->status,
                   "fpn_loss: target %s does not fit the finest prediction %s (expected "
                   "(N,1,2h,2w))",
                   tensor_shape_str(target, a, sizeof a), tensor_shape_str(fine, b, sizeof b));
        return NULL;
    }
    /* The target is data: make sure no gradient flows into it. */
    cc_tensor *y = target->requires_grad ? tape_detach(t, target) : target;
    cc_tensor *total = NULL, *lv[FPN_MAX_DEPTH] = {0}, *tv[FPN_MAX_DEPTH] = {0};
    for (int i = 0; i < out->levels; i++) {
        const int k = (int)(target->dims[2] / out->mean[i]->dims[2]);
        cc_tensor *ti = op_avg_pool2d(t, y, k);
        lv[i] = loss_data(t, out->mean[i], out->logvar[i], ti, kind);
        total = acc_add(t, total, lv[i]);
        if (tv_weight > 0) {
            tv[i] = op_tv(t, out->mean[i]);
            total = acc_add(t, total, op_scale(t, tv[i], tv_weight, 0.0f));
        }
    }
    if (!total || !tape_ok(t)) return NULL;
    if (terms) {
        terms->levels = out->levels;
        for (int i = 0; i < out->levels; i++) {
            terms->level_data[i] = tensor_item(lv[i]);
            terms->data += terms->level_data[i];
            if (tv[i]) {
                terms->level_tv[i] = tensor_item(tv[i]);
                terms->tv += (double)tv_weight * terms->level_tv[i];
            }
        }
        terms->total = tensor_item(total);
    }
    return total;
}

cc_tensor *counter_loss(cc_tape *t, cc_tensor *count, cc_tensor *logvar, cc_tensor *true_count,
                        loss_kind kind, loss_terms *terms)
{
    if (terms) memset(terms, 0, sizeof *terms);
    cc_tensor *y = true_count && true_count->requires_grad ? tape_detach(t, true_count) : true_count;
    cc_tensor *l = loss_data(t, count, logvar, y, kind);
    if (!l) return NULL;
    if (terms) terms->total = terms->data = tensor_item(l);
    return l;
}
