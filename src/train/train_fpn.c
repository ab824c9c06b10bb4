/* train_fpn.c - the FPN training driver (see train.h). */
#include "src/train/train.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

#include "src/data/dataset.h"
#include "src/train/train_util.h"

/* One pass over a loader: training (tape in training mode + optimizer) or
 * validation (inference tape).  Sums of loss terms weighted by batch size
 * go to *sum; returns images seen, or -1. */
static int64_t fpn_pass(cc_session *s, cc_models *m, cc_tape *t, cc_loader *L, int epoch,
                        cc_optim *opt, loss_terms *sum, progress *pg, cc_status *st)
{
    const cc_config *c = &s->cfg;
    const loss_kind kind = c->fpn_loss;
    memset(sum, 0, sizeof *sum);
    loader_epoch_begin(L, epoch);
    loader_batch b;
    int64_t seen = 0, step = 0;
    const int max_steps = c->fpn_train.max_steps;
    double t0 = session_now();
    while (loader_next(L, &b)) {
        if (max_steps && step >= max_steps) break;
        if (!b.n) continue;     /* MPI: an empty slice of the last validation batch */
        tape_reset(t);
        int64_t xd[4] = {b.n, 1, b.h, b.w};
        cc_tensor *x = tape_input(t, 4, xd, b.images, 0);
        cc_tensor *y = tape_input(t, 4, xd, b.masks, 0);
        if (c->fpn_channels != 1) x = op_expand_channels(t, x, c->fpn_channels);
        fpn_output out;
        loss_terms lt;
        cc_tensor *loss = NULL;
        if (fpn_forward(t, &m->Pf, &m->fpn, x, &out) == 0)
            loss = fpn_loss(t, &out, y, kind, (float)c->tv_weight, &lt);
        if (!loss) return status_set(st, "FPN forward: %s", tape_error(t));
        if (opt ? dist_any(&s->dist, !isfinite(lt.total)) : !isfinite(lt.total))
            return status_set(st, "FPN loss is %g at epoch %d step %lld: stopping (the last "
                                  "good checkpoint is kept)", lt.total, epoch + 1, (long long)step + 1);
        if (opt) {
            params_zero_grad(&m->Pf);
            /* MPI: the gradient is reduced over the ranks, in buckets while
             * backward runs (run.overlap_allreduce), complete after end */
            cc_params *red[1] = {&m->Pf};
            if (dist_grad_begin(&s->dist, red, 1, b.n, b.global_n, st)) return -1;
            if (tape_backward(t, loss)) return status_set(st, "FPN backward: %s", tape_error(t));
            if (dist_grad_end(&s->dist, st)) return -1;
            if (optim_step(opt, &m->Pf, st)) return -1;
        }
        sum->total += lt.total * b.n;
        sum->data += lt.data * b.n;
        sum->tv += lt.tv * b.n;
        seen += b.n;
        step++;
        if (pg) progress_update(pg, step, lt.total, (double)seen / (session_now() - t0));
    }
    double all[4] = {sum->total, sum->data, sum->tv, (double)seen};
    if (dist_sum_doubles(&s->dist, all, 4, st)) return -1;   /* MPI: over all ranks */
    sum->total = all[0], sum->data = all[1], sum->tv = all[2], seen = (int64_t)all[3];
    if (seen) {
        sum->total /= (double)seen;
        sum->data /= (double)seen;
        sum->tv /= (double)seen;
    }
    return seen;
}

int train_fpn(const cc_config *cfg, int resume, cc_status *st)
{
    train_run r;
    int rc = -1;
    const cfg_train *tc = &cfg->fpn_train;
    if (train_run_open(&r, cfg, resume, st) || train_run_models(&r, 0, st) ||
        train_run_loaders(&r, tc, LOADER_MASKED, 1, 1, "fpn_train.batch", st))
        goto out;
    train_run_start(&r, tc);
    cc_session *s = &r.s;
    train_state ts;
    memset(&ts, 0, sizeof ts);
    if (train_state_begin(&ts, s, "fpn", &r.m.Pf, &r.opt, resume, st)) goto out;
    for (int epoch = ts.next_epoch; epoch < tc->epochs; epoch++) {
        progress pg;
        train_run_epoch_begin(&r, tc, "fpn", epoch, &pg);
        double t0 = session_now(), w0 = loader_wait_seconds(r.tr);
        loss_terms trs, vas;
        int64_t ntr = fpn_pass(s, &r.m, &r.ttrain, r.tr, epoch, &r.opt, &trs, &pg, st);
        progress_end(&pg);
        if (ntr < 0 || dist_average_buffers(&s->dist, &r.m.Pf, st)) goto out;
        double secs = session_now() - t0, wait = loader_wait_seconds(r.tr) - w0;
        double row[MC_NCOLS];
        train_row_epoch(row, 0, epoch, r.opt.lr, secs, ntr, wait);
        row[MC_LOSS] = trs.total;
        row[MC_LOSS_DATA] = trs.data;
        row[MC_LOSS_TV] = trs.tv;
        if (train_append_row(s, "train", row, st)) goto out;
        t0 = session_now();
        int64_t nva = fpn_pass(s, &r.m, &r.teval, r.va, 0, NULL, &vas, NULL, st);
        if (nva < 0) goto out;
        train_row_init(row, 0, epoch, DATASET_VAL);
        row[MC_LOSS] = vas.total;
        row[MC_LOSS_DATA] = vas.data;
        row[MC_LOSS_TV] = vas.tv;
        row[MC_SECONDS] = session_now() - t0;
        row[MC_IPS] = (double)nva / row[MC_SECONDS];
        if (train_append_row(s, "val", row, st)) goto out;
        fprintf(s->log, "fpn epoch %d/%d: train loss %.5g (data %.5g, tv %.3g), val loss %.5g, "
                        "%.1f img/s, loader wait %.3fs\n",
                epoch + 1, tc->epochs, trs.total, trs.data, trs.tv, vas.total,
                (double)ntr / secs, wait);
        if (train_state_epoch_end(&ts, s, epoch, vas.total, st)) goto out;
    }
    rc = 0;
out:
    train_run_close(&r);
    return rc;
}
