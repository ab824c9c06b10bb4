/* train_counter.c - the counter training driver (see train.h). */
#include "src/train/train.h"

#include <limits.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "src/run/checkpoint.h"
#include "src/train/count_split.h"
#include "src/train/density_target.h"
#include "src/data/dataset.h"
#include "src/run/metrics.h"
#include "src/train/ood.h"
#include "src/train/train_util.h"

/* counter.density_weight: loss += weight x positions x mean squared
 * difference between the density map and its target (density_target.h),
 * i.e. the weight times the squared error summed over each image's map,
 * averaged over the batch.  Returns the new loss (NULL: tape error) and
 * adds the term's value to lt->total. */
static cc_tensor *density_loss_add(cc_tape *t, const cc_session *s, const cc_dataset *ds,
                                   const loader_batch *b, cc_tensor *map, cc_tensor *loss,
                                   loss_terms *lt)
{
    if (!map || !loss) return NULL;
    const int gh = (int)map->dims[2], gw = (int)map->dims[3];
    cc_tensor *target = tape_input(t, 4, (int64_t[]){b->n, 1, gh, gw}, NULL, 0);
    if (!target) return NULL;
    if (density_target_fill(ds, b, gh, gw, s->cfg.counter_density_sigma, target->data,
                            &t->status))
        return NULL;
    const double w = s->cfg.counter_density_weight * (double)gh * (double)gw;
    cc_tensor *term = op_scale(t, op_loss_mse(t, map, target), (float)w, 0.0f);
    cc_tensor *sum = op_add(t, loss, term);
    if (!sum) return NULL;
    lt->total += term->data[0];
    return sum;
}

/* One training epoch; returns images seen or -1.  *loss_out: mean loss. */
static int64_t counter_epoch(cc_session *s, cc_models *m, cc_tape *t, cc_loader *L,
                             const cc_dataset *ds,
                             const mask_cache *mc, int epoch, cc_optim *opt, cc_optim *fpn_opt,
                             cc_params *ema, double *loss_out, progress *pg, cc_status *st)
{
    const cc_config *c = &s->cfg;
    const loss_kind kind = c->counter_loss;
    loader_epoch_begin(L, epoch);
    loader_batch b;
    int64_t seen = 0, step = 0;
    double sum = 0, t0 = session_now();
    /* counter.freeze_warmup = E epochs, N = ceil(E x steps per epoch)
     * steps: the freeze changes what a step of the pre-BN weights does (no
     * batch statistics absorb their scale any more), and at the schedule's
     * lr the first steps after it blew the loss up (VGG-11 at paper scale:
     * 338 -> 3294; vgg11_gap died), so the lr starts again from lr/N and
     * ramps up linearly over the N steps after it */
    const float lr0 = opt->lr;
    int64_t per_epoch = loader_batches_per_epoch(L);
    if (c->counter_train.max_steps && per_epoch > c->counter_train.max_steps)
        per_epoch = c->counter_train.max_steps;
    const double fw = c->counter_freeze_bn > 0 ? c->counter_freeze_warmup : 0;
    const int64_t warm = (int64_t)ceil(fw * (double)per_epoch),
                  since = (int64_t)(epoch - c->counter_freeze_bn) * per_epoch;
    while (loader_next(L, &b)) {
        if (c->counter_train.max_steps && step >= c->counter_train.max_steps) break;
        opt->lr = epoch >= c->counter_freeze_bn ? train_warmup_lr(lr0, since + step, warm) : lr0;
        tape_reset(t);
        float truth[4096];
        if (b.n > 4096) return status_set(st, "counter: batch larger than 4096");
        for (int i = 0; i < b.n; i++) truth[i] = (float)b.counts[i];
        cc_tensor *x = counting_input(t, s, m, mc, &b, fpn_opt != NULL), *cnt, *lv;
        cc_tensor *y = tape_input(t, 2, (int64_t[]){b.n, 1}, truth, 0);
        loss_terms lt;
        cc_tensor *loss = NULL;
        if (c->counter_density_weight > 0) {
            cc_tensor *map = NULL;
            if (x && counter_forward_map(t, &m->Pc, &m->counter, x, &cnt, &lv, &map) == 0)
                loss = density_loss_add(t, s, ds, &b, map, counter_loss(t, cnt, lv, y, kind, &lt),
                                        &lt);
        } else if (x && counter_forward(t, &m->Pc, &m->counter, x, &cnt, &lv) == 0) {
            loss = counter_loss(t, cnt, lv, y, kind, &lt);
        }
        if (!loss) return status_set(st, "counter forward: %s", tape_error(t));
        if (dist_any(&s->dist, !isfinite(lt.total)))   /* MPI: all ranks stop together */
            return status_set(st, "counter loss is %g at epoch %d step %lld: stopping (the last "
                                  "good checkpoint is kept)", lt.total, epoch + 1, (long long)step + 1);
        params_zero_grad(&m->Pc);
        if (fpn_opt) params_zero_grad(&m->Pf);
        /* MPI: both trained stores' gradients reduced over the ranks (in
         * forward order: the FPN's first), in buckets while backward runs */
        cc_params *red[2] = {fpn_opt ? &m->Pf : &m->Pc, &m->Pc};
        if (dist_grad_begin(&s->dist, red, fpn_opt ? 2 : 1, b.n, b.global_n, st)) return -1;
        if (tape_backward(t, loss)) return status_set(st, "counter backward: %s", tape_error(t));
        if (dist_grad_end(&s->dist, st)) return -1;
        if (optim_step(opt, &m->Pc, st)) return -1;
        if (fpn_opt && optim_step(fpn_opt, &m->Pf, st)) return -1;
        if (ema) train_ema_update(ema, &m->Pc, c->counter_ema, opt->step);
        sum += lt.total * b.n;
        seen += b.n;
        step++;
        progress_update(pg, step, lt.total, (double)seen / (session_now() - t0));
    }
    opt->lr = lr0;
    double all[2] = {sum, (double)seen};
    if (dist_sum_doubles(&s->dist, all, 2, st)) return -1;   /* MPI: over all ranks */
    sum = all[0], seen = (int64_t)all[1];
    *loss_out = seen ? sum / (double)seen : NAN;
    return seen;
}

/* counter.precise_bn = N: with the weights of the epoch's end (with
 * counter.ema: the average's), replace the counter's BN running statistics
 * by their average over N training batches (fixed order per epoch,
 * augmentations as in training).  The momentum-0.1
 * statistics lag weights that move fast, which made the validation error
 * of consecutive epochs differ by up to 2x. */
static int precise_bn(cc_session *s, cc_models *m, cc_tape *t, cc_loader *L,
                      const mask_cache *mc, int epoch, int nbatches, cc_status *st)
{
    cc_params *P = &m->Pc;
    for (int i = 0; i < P->n; i++) {
        const char *nm = P->p[i].name, *end = nm + strlen(nm);
        if (strlen(nm) >= 19 && !strcmp(end - 19, "num_batches_tracked"))
            params_tensor(P, i)->data[0] = 0;
    }
    P->bn_cumulative = 1;
    /* an epoch number training never uses: its own deterministic order */
    loader_epoch_begin(L, 1000000 + epoch);
    loader_batch b;
    int rc = 0;
    for (int k = 0; k < nbatches && loader_next(L, &b); k++) {
        tape_reset(t);
        cc_tensor *x = counting_input(t, s, m, mc, &b, 0), *cnt, *lv;
        if (!x || counter_forward(t, P, &m->counter, x, &cnt, &lv)) {
            rc = status_set(st, "counter precise BN: %s", tape_error(t));
            break;
        }
    }
    while (loader_next(L, &b)) {}  /* drain: the next epoch starts clean */
    P->bn_cumulative = 0;
    return rc;
}

/* counter.freeze_bn = K, at the start of epoch K: re-estimate the trained
 * weights' BN statistics (precise BN, counter.precise_bn batches, 0 = all)
 * and give the average the same ones; from then on both use them as fixed
 * statistics, in training as in evaluation.  Why: with batch statistics a
 * batch of 32 scenes is normalised by its own mean, so the features carry
 * each image's count relative to its batch's; the network learns to work
 * with that, and the same weights under population statistics (evaluation)
 * got steadily worse after a few epochs while the training loss kept
 * falling (docs/RESULTS.md, "Frozen BN").  A resumed run past epoch K
 * finds the frozen statistics in its checkpoints. */
static int freeze_bn(cc_session *s, cc_models *m, cc_tape *t, cc_loader *L, const mask_cache *mc,
                     cc_params *ema, int epoch, cc_status *st)
{
    const int nb = s->cfg.counter_precise_bn > 0 ? s->cfg.counter_precise_bn : INT_MAX;
    if (precise_bn(s, m, t, L, mc, epoch, nb, st) || dist_average_buffers(&s->dist, &m->Pc, st))
        return -1;
    if (ema) memcpy(ema->buf, m->Pc.buf, sizeof(float) * m->Pc.n_buf);
    fprintf(s->log, "counter: BN statistics frozen from epoch %d on\n", epoch + 1);
    return 0;
}

/* Exchange the counter's weights with the average's (the model struct
 * indexes both stores alike), so that precise BN, validation and the
 * checkpoints see the average. */
static void swap_stores(cc_params *a, cc_params *b)
{
    cc_params t = *a;
    *a = *b;
    *b = t;
}

/* counter.init_bias = data: start both heads at the best constant
 * predictor of the training counts (count bias = their mean, log-variance
 * bias = log of their variance).  With PyTorch's default init the count
 * starts near 0 and the NLL first inflates the variance: the count head's
 * gradients then shrink by e^-s within a few steps while Adam's second
 * moment still remembers the early large ones, and the mean barely moves
 * for thousands of steps.  (A resumed run overwrites these values.) */
static int init_bias_from_data(cc_models *m, const cc_dataset *ds, cc_status *st)
{
    double sum = 0, sum2 = 0;
    int64_t n = 0;
    for (int64_t i = 0; i < ds->n; i++)
        if (ds->split[i] == DATASET_TRAIN) {
            sum += ds->counts[i];
            sum2 += (double)ds->counts[i] * ds->counts[i];
            n++;
        }
    if (n < 2)
        return status_set(st, "%s: too few training images to initialise the counter", ds->path);
    double mean = sum / (double)n, var = sum2 / (double)n - mean * mean;
    if (var < 1e-6) var = 1e-6;
    counter_init_count_bias(&m->Pc, &m->counter, (float)mean);
    params_tensor(&m->Pc, m->counter.logvar.fc3.b)->data[0] = (float)log(var);
    return 0;
}

int train_counter(const cc_config *cfg, const char *fpn_ckpt, int resume, cc_status *st)
{
    train_run r;
    mask_cache mtr, mva;
    memset(&mtr, 0, sizeof mtr);
    memset(&mva, 0, sizeof mva);
    cc_params ema;          /* counter.ema's average of r.m.Pc */
    int has_ema = 0, rc = -1;
    if (train_run_open(&r, cfg, resume, st)) goto out;
    cc_session *s = &r.s;
    cc_models *m = &r.m;
    const cfg_train *tc = &cfg->counter_train;
    if (tc->batch < 2) {
        status_set(st, "counter_train.batch must be >= 2 (BatchNorm in training mode)");
        goto out;
    }
    if (train_run_models(&r, 1, st)) goto out;
    if (cfg->counter_density_weight > 0 && !r.m.counter.positions) {
        status_set(st, "counter.density_weight = %g needs a counter with a density map "
                       "(counter.arch = vgg11_density), not %s", cfg->counter_density_weight,
                   cfg->counter_arch);
        goto out;
    }
    if (cfg->counter_density_weight > 0 && !r.ds->centres_k) {
        status_set(st, "%s has no cell centres (/centres), which counter.density_weight needs: "
                       "simulated sets have them (cellcount simulate), imported ones do not; "
                       "set counter.density_weight = 0", r.ds->path);
        goto out;
    }
    const int needs_fpn = cfg->counter_input != CFG_INPUT_IMAGE;
    char fpn_path[CFG_STR + 64];
    if (needs_fpn) {
        if (fpn_ckpt)
            snprintf(fpn_path, sizeof fpn_path, "%s", fpn_ckpt);
        else
            session_path(s, "fpn_best.h5", fpn_path, sizeof fpn_path);
        if (checkpoint_load(fpn_path, &m->Pf, NULL, st)) {
            status_prefix(st, "counter needs a trained FPN (run train-fpn first, or pass --fpn)");
            goto out;
        }
    }
    const int finetune = needs_fpn && cfg->finetune_fpn;
    params_set_frozen(&m->Pf, "", !finetune);
    if (needs_fpn && !finetune) {
        fprintf(s->log, "computing FPN masks for the training and validation splits\n");
        if (mask_cache_build(&mtr, s, m, r.ds, DATASET_TRAIN, st) ||
            mask_cache_build(&mva, s, m, r.ds, DATASET_VAL, st))
            goto out;
    }
    if (train_run_loaders(&r, tc, 0, 0, cfg->sync_bn ? 1 : 2, "counter_train.batch", st))
        goto out;
    train_run_start(&r, tc);
    cc_optim fopt;          /* the fine-tuned FPN's */
    session_optim_init(&fopt, tc);
    if (cfg->counter_init_bias == CFG_INIT_BIAS_DATA && init_bias_from_data(m, r.ds, st))
        goto out;
    train_state ts;
    memset(&ts, 0, sizeof ts);
    /* counter.ema: the weights validated and kept as counter_best.h5 are an
     * exponential moving average of the trained ones, with BN statistics
     * re-estimated for them after every epoch (docs/RESULTS_HISTORY.md: the
     * validation error of the raw weights jumps by up to 10x from one epoch
     * to the next at lr 1e-3). */
    if (cfg->counter_ema > 0) {
        if (train_ema_init(&ema, &m->Pc, st)) goto out;
        has_ema = 1;
        ts.E = &ema;
    }
    if (finetune) {
        ts.P2 = &m->Pf;
        ts.opt2 = &fopt;
    }
    if (train_state_begin(&ts, s, "counter", &m->Pc, &r.opt, resume, st)) goto out;
    for (int epoch = ts.next_epoch; epoch < tc->epochs; epoch++) {
        const int frozen = cfg->counter_freeze_bn > 0 && epoch >= cfg->counter_freeze_bn;
        if (frozen && !m->Pc.bn_eval) {
            if (epoch == cfg->counter_freeze_bn &&
                freeze_bn(s, m, &r.ttrain, r.tr, &mtr, has_ema ? &ema : NULL, epoch, st))
                goto out;
            m->Pc.bn_eval = 1;
            if (has_ema) ema.bn_eval = 1;
        }
        progress pg;
        train_run_epoch_begin(&r, tc, "counter", epoch, &pg);
        fopt.lr = r.opt.lr;
        double t0 = session_now(), w0 = loader_wait_seconds(r.tr), trloss = NAN;
        int64_t ntr = counter_epoch(s, m, &r.ttrain, r.tr, r.ds, &mtr, epoch, &r.opt,
                                    finetune ? &fopt : NULL, has_ema ? &ema : NULL, &trloss,
                                    &pg, st);
        progress_end(&pg);
        if (ntr < 0) goto out;
        /* MPI: the raw weights' running statistics are per rank; the weight
         * hash of train_state_epoch_end covers them, so they are averaged
         * before the average's store takes m->Pc's place (and the average's
         * own statistics below). */
        if (has_ema && dist_average_buffers(&s->dist, &m->Pc, st)) goto out;
        /* From here to the checkpoints m->Pc holds the average, if any. */
        if (has_ema) swap_stores(&m->Pc, &ema);
        /* the average always needs its own statistics: precise_bn = 0 then
         * means every training batch of an epoch */
        const int pbn =
            has_ema && cfg->counter_precise_bn <= 0 ? INT_MAX : cfg->counter_precise_bn;
        if (pbn > 0 && !frozen && precise_bn(s, m, &r.ttrain, r.tr, &mtr, epoch, pbn, st))
            goto out;
        if (dist_average_buffers(&s->dist, &m->Pc, st) ||
            (finetune && dist_average_buffers(&s->dist, &m->Pf, st)))
            goto out;
        double secs = session_now() - t0, row[MC_NCOLS];
        train_row_epoch(row, 1, epoch, r.opt.lr, secs, ntr, loader_wait_seconds(r.tr) - w0);
        row[MC_LOSS] = row[MC_LOSS_DATA] = trloss;
        if (train_append_row(s, "train", row, st)) goto out;

        t0 = session_now();
        count_preds p;
        /* The fine-tuned FPN changes every epoch: predict through it. */
        mask_cache fresh;
        memset(&fresh, 0, sizeof fresh);
        if (finetune && mask_cache_build(&fresh, s, m, r.ds, DATASET_VAL, st)) goto out;
        int pr = counting_predict(s, m, &r.teval, finetune ? &fresh : &mva, r.va, 0, 0, &p, st);
        mask_cache_free(&fresh);
        if (has_ema) swap_stores(&m->Pc, &ema);
        if (pr) goto out;
        metrics_summary ms = metrics_compute(p.truth, p.pred, p.sigma, NULL, (size_t)p.n);
        train_row_init(row, 1, epoch, DATASET_VAL);
        row[MC_LOSS] = row[MC_LOSS_DATA] = p.loss;
        row[MC_MAE] = ms.mae;
        row[MC_RMSE] = ms.rmse;
        row[MC_R2] = ms.r2;
        row[MC_COVERAGE] = ms.coverage95;
        row[MC_WIDTH] = ms.width95;
        row[MC_SECONDS] = session_now() - t0;
        row[MC_IPS] = (double)p.n / row[MC_SECONDS];
        count_preds_free(&p);
        if (train_append_row(s, "val", row, st)) goto out;
        /* With an average, the trained weights themselves (with their
         * momentum BN statistics) are validated too, for the log only: they
         * are what the run would have kept without counter.ema. */
        char raw[64] = "";
        if (has_ema) {
            if (counting_predict(s, m, &r.teval, &mva, r.va, 0, 0, &p, st)) goto out;
            metrics_summary mr = metrics_compute(p.truth, p.pred, p.sigma, NULL, (size_t)p.n);
            count_preds_free(&p);
            snprintf(raw, sizeof raw, " | raw weights MAE %.3f", mr.mae);
        }
        fprintf(s->log, "counter epoch %d/%d: train loss %.4g | val loss %.4g MAE %.3f RMSE %.3f "
                        "R2 %.4f cover95 %.3f width %.2f%s | %.1f img/s\n",
                epoch + 1, tc->epochs, trloss, row[MC_LOSS], ms.mae, ms.rmse, ms.r2,
                ms.coverage95, ms.width95, raw, (double)ntr / secs);
        if (train_state_epoch_end(&ts, s, epoch, ms.mae, st)) goto out;
    }
    /* What count's out-of-distribution flags compare against (ood.h). */
    if (ood_train_stats_write_ds(s, needs_fpn && !finetune ? &mtr : NULL, r.ds, st))
        goto out;
    rc = 0;
out:
    if (has_ema) params_free(&ema);
    mask_cache_free(&mtr);
    mask_cache_free(&mva);
    train_run_close(&r);
    return rc;
}
