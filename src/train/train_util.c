/* train_util.c - see train_util.h. */
#include "src/train/train_util.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "src/run/checkpoint.h"
#include "src/data/dataset.h"

static const char *const metric_cols[] = {TRAIN_METRIC_COLS};

void train_loader_augment(cc_loader *L, const cc_config *c)
{
    const loader_aug a = {c->aug_scale, c->aug_blur, c->aug_gamma, c->aug_gain, c->aug_noise};
    loader_set_augment(L, &a);
}

cc_lr_schedule train_schedule(const cfg_train *t)
{
    cc_lr_schedule s;
    memset(&s, 0, sizeof s);
    s.kind = t->lr_schedule == CFG_LR_STEP     ? LR_STEP
             : t->lr_schedule == CFG_LR_COSINE ? LR_COSINE
                                               : LR_CONSTANT;
    s.base_lr = (float)t->lr;
    s.step_epochs = t->lr_step_epochs;
    s.gamma = (float)t->lr_gamma;
    s.epochs = t->epochs;
    s.min_lr = (float)t->lr_min;
    return s;
}

float train_warmup_lr(float lr, int64_t done, int64_t warm)
{
    if (warm <= 0 || done >= warm) return lr;
    return lr * (float)(done + 1) / (float)warm;
}

int train_shard_loaders(cc_session *s, cc_loader *tr, cc_loader *va, int batch,
                        int min_per_rank, const char *key, cc_status *st)
{
    const int n = s->dist.size;
    if (n == 1) return 0;
    if (batch / n < min_per_rank)
        return status_set(st, "%s = %d over %d MPI ranks leaves a rank %d image%s per step; it "
                              "needs at least %d (the batch is global: raise it to %d or use "
                              "fewer ranks%s)", key, batch, n, batch / n, batch / n == 1 ? "" : "s",
                          min_per_rank, min_per_rank * n,
                          min_per_rank > 1 ? ", or set run.sync_bn = true: BatchNorm statistics "
                                             "over all ranks" : "");
    loader_set_shard(tr, s->dist.rank, n);
    if (va) loader_set_shard(va, s->dist.rank, n);
    return 0;
}

int train_run_open(train_run *r, const cc_config *cfg, int resume, cc_status *st)
{
    memset(r, 0, sizeof *r);
    (void)resume;
    return session_open(&r->s, cfg, SESSION_TRAIN, st);
}

int train_run_models(train_run *r, int with_counter, cc_status *st)
{
    if (!(r->ds = dataset_open(r->s.cfg.data_file, st))) return -1;
    return models_build(&r->m, &r->s, with_counter, r->ds->h, r->ds->w, st);
}

int train_run_loaders(train_run *r, const cfg_train *tc, unsigned flags, int shard_val,
                      int min_per_rank, const char *key, cc_status *st)
{
    const cc_config *cfg = &r->s.cfg;
    const unsigned ftr = LOADER_SHUFFLE | flags | (cfg->augment ? LOADER_FLIP : 0);
    if (!(r->tr = loader_open_ds(r->ds, DATASET_TRAIN, tc->batch, (uint64_t)cfg->seed, ftr,
                                 st)) ||
        !(r->va = loader_open_ds(r->ds, DATASET_VAL, tc->batch, (uint64_t)cfg->seed,
                                 LOADER_KEEP_LAST | flags, st)) ||
        train_shard_loaders(&r->s, r->tr, shard_val ? r->va : NULL, tc->batch, min_per_rank,
                            key, st))
        return -1;
    train_loader_augment(r->tr, cfg);
    return 0;
}

void train_run_start(train_run *r, const cfg_train *tc)
{
    session_optim_init(&r->opt, tc);
    r->sched = train_schedule(tc);
    tape_init(&r->ttrain, &r->s.ctx, 1);
    r->ttrain.free_grads = 1;   /* the loops read no intermediate gradient */
    tape_init(&r->teval, &r->s.ctx, 0);
    r->tapes = 1;
}

void train_run_epoch_begin(train_run *r, const cfg_train *tc, const char *stage, int epoch,
                           progress *pg)
{
    r->opt.lr = lr_schedule_at(&r->sched, epoch);
    char label[64];
    snprintf(label, sizeof label, "%s epoch %d/%d", stage, epoch + 1, tc->epochs);
    int64_t steps = loader_batches_per_epoch(r->tr);
    if (tc->max_steps && tc->max_steps < steps) steps = tc->max_steps;
    progress_begin(pg, &r->s, label, steps);
}

void train_run_close(train_run *r)
{
    if (r->tapes) {
        tape_free(&r->ttrain);
        tape_free(&r->teval);
        r->tapes = 0;
    }
    loader_close(r->tr);
    loader_close(r->va);
    r->tr = r->va = NULL;
    models_free(&r->m);
    dataset_close(r->ds);
    r->ds = NULL;
    session_close(&r->s);
}

void train_row_epoch(double *row, int stage, int epoch, double lr, double seconds, int64_t n,
                     double wait)
{
    train_row_init(row, stage, epoch, DATASET_TRAIN);
    row[MC_LR] = lr;
    row[MC_SECONDS] = seconds;
    row[MC_IPS] = (double)n / seconds;
    row[MC_WAIT] = wait;
}

void train_row_init(double *row, int stage, int epoch, int split)
{
    for (int i = 0; i < MC_NCOLS; i++) row[i] = NAN;
    row[MC_STAGE] = stage;
    row[MC_EPOCH] = epoch;
    row[MC_SPLIT] = split;
}

static runlog_table *metrics_table(cc_session *s, cc_status *st)
{
    return runlog_table_get(&s->rl, "metrics", MC_NCOLS, metric_cols, st);
}

int train_append_row(cc_session *s, const char *label, const double *row, cc_status *st)
{
    runlog_table *t = metrics_table(s, st);
    return t ? runlog_append(t, label, row, st) : -1;
}

/* Remove the stage's rows with epoch >= from. */
static void drop_rows(runlog_table *t, int stage, int from)
{
    size_t w = 0;
    for (size_t r = 0; r < t->nrows; r++) {
        const double *v = t->values + r * (size_t)t->ncols;
        if ((int)v[MC_STAGE] == stage && v[MC_EPOCH] >= from) continue;
        if (w != r) {
            memmove(t->values + w * (size_t)t->ncols, v, sizeof(double) * (size_t)t->ncols);
            memcpy(t->labels[w], t->labels[r], RUNLOG_NAME);
        }
        w++;
    }
    t->nrows = w;
}

static void ckpt_name(char *buf, size_t n, const cc_session *s, const char *stage, const char *which)
{
    char name[64];
    snprintf(name, sizeof name, "%s_%s.h5", stage, which);
    session_path(s, name, buf, n);
}

/* MPI: rank 0's weights, optimizer state, epoch and best value to every
 * rank (at start the initialisations agree anyway; at resume only rank 0
 * has read the checkpoint, written at any number of ranks). */
static int train_state_share(train_state *ts, cc_session *s, cc_status *st)
{
    cc_dist *d = &s->dist;
    if (d->size == 1) return 0;
    double v[4] = {ts->next_epoch, ts->best, (double)ts->opt->step,
                   ts->opt2 ? (double)ts->opt2->step : 0};
    if (dist_bcast_doubles(d, v, 4, st) || dist_bcast_params(d, ts->P, st) ||
        (ts->P2 && dist_bcast_params(d, ts->P2, st)))
        return -1;
    ts->next_epoch = (int)v[0];
    ts->best = v[1];
    ts->opt->step = (int64_t)v[2];
    if (ts->opt2) ts->opt2->step = (int64_t)v[3];
    if (ts->next_epoch > 0)
        fprintf(s->log, "%d ranks resume %s after epoch %d\n", d->size, ts->stage, ts->next_epoch);
    return 0;
}

int train_state_begin(train_state *ts, cc_session *s, const char *stage, cc_params *P,
                      cc_optim *opt, int resume, cc_status *st)
{
    cc_params *P2 = ts->P2, *E = ts->E;
    cc_optim *opt2 = ts->opt2;
    memset(ts, 0, sizeof *ts);
    ts->P2 = P2;
    ts->opt2 = opt2;
    ts->E = E;
    snprintf(ts->stage, sizeof ts->stage, "%s", stage);
    ts->stage_id = !strcmp(stage, "counter");
    ts->P = P;
    ts->opt = opt;
    ts->best = INFINITY;
    runlog_table *t = metrics_table(s, st);
    if (!t) return -1;
    char path[CFG_STR + 64];
    ckpt_name(path, sizeof path, s, stage, "last");
    if (s->writer && resume == TRAIN_RESUME && access(path, F_OK) != 0)
        return status_set(st, "%s: --resume: no checkpoint to resume from (%s); leave out "
                          "--resume to start afresh", path, strerror(errno));
    /* Under MPI rank 0 reads the checkpoint and broadcasts it (below). */
    if (s->writer && resume && access(path, F_OK) == 0) {
        double epoch, best;
        if (checkpoint_load(path, P, opt, st) ||
            checkpoint_read_attr_double(path, "epoch", &epoch, st) ||
            checkpoint_read_attr_double(path, "best_val", &best, st))
            return -1;
        ts->next_epoch = (int)epoch + 1;
        ts->best = best;
        if (ts->P2) {
            char p2[CFG_STR + 64];
            ckpt_name(p2, sizeof p2, s, stage, "fpn_last");
            if (checkpoint_load(p2, ts->P2, ts->opt2, st)) return -1;
        }
        if (ts->E) {
            char pe[CFG_STR + 64], which[16];
            double ee;
            snprintf(which, sizeof which, "ema_%d", (int)epoch % 2);
            ckpt_name(pe, sizeof pe, s, stage, which);
            if (checkpoint_load(pe, ts->E, NULL, st) ||
                checkpoint_read_attr_double(pe, "epoch", &ee, st))
                return -1;
            if (ee != epoch)
                return status_set(st, "%s: weight average of epoch %d, but %s is of epoch %d",
                                  pe, (int)ee + 1, path, (int)epoch + 1);
        }
        fprintf(s->log, "resuming %s from %s after epoch %d\n", stage, path, (int)epoch + 1);
    }
    if (train_state_share(ts, s, st)) return -1;
    drop_rows(t, ts->stage_id, ts->next_epoch);
    return 0;
}

int train_state_epoch_end(train_state *ts, cc_session *s, int epoch, double criterion,
                          cc_status *st)
{
    /* Once per epoch the ranks compare their weights: a divergence (a
     * non-deterministic kernel, a bit flip) stops the job. */
    if (dist_check_same(&s->dist, ts->P, ts->stage, st) ||
        (ts->P2 && dist_check_same(&s->dist, ts->P2, ts->stage, st)))
        return -1;
    cc_dist *d = &s->dist;
    if (d->size > 1 && d->reductions) {   /* what the gradient reductions cost */
        /* overlapped: the time in the polls between backward's nodes plus
         * the wait after backward; either way the main thread's time */
        char how[96] = "after backward";
        if (d->overlap)
            snprintf(how, sizeof how, "overlapped, %.3g MB buckets, in flight during %.1f ms of backward",
                     4e-6 * (double)d->bucket_floats, 1e3 * d->window_seconds / (double)d->reductions);
        fprintf(s->log, "%s epoch %d: %d ranks, %lld gradient allreduces (%s), %.2f s in them "
                        "(%.1f ms each, %.1f ms after backward), %.1f MB sent per step per rank\n",
                ts->stage, epoch + 1, d->size, (long long)d->reductions, how, d->comm_seconds,
                1e3 * d->comm_seconds / (double)d->reductions,
                1e3 * d->wait_seconds / (double)d->reductions,
                d->comm_bytes / (double)d->reductions / 1e6);
        d->reductions = 0;
        d->comm_seconds = d->wait_seconds = d->window_seconds = d->comm_bytes = 0;
    }
    int improved = criterion < ts->best;
    if (improved) ts->best = criterion;
    if (!s->writer) return 0;   /* rank 0 alone writes */
    if (runlog_flush(&s->rl, st)) return -1;
    ckpt_attr attrs[4] = {
        {"stage", CKPT_ATTR_STRING, ts->stage, 0},
        {"epoch", CKPT_ATTR_NUMBER, NULL, epoch},
        {"best_val", CKPT_ATTR_NUMBER, NULL, ts->best},
        {"seed", CKPT_ATTR_NUMBER, NULL, (double)s->cfg.seed},
    };
    char path[CFG_STR + 64];
    if (ts->E) {
        /* Written first and to the slot the previous epoch did not use, so
         * <stage>_last.h5 (written last) always has its average on disk. */
        char which[16];
        snprintf(which, sizeof which, "ema_%d", epoch % 2);
        ckpt_name(path, sizeof path, s, ts->stage, which);
        if (checkpoint_save(path, ts->E, NULL, attrs, 4, st)) return -1;
    }
    /* The second store (a fine-tuned FPN) is written before the first so
     * that a complete <stage>_last.h5 implies a matching <stage>_fpn_last.h5. */
    for (int pass = 0; pass < 2; pass++) {
        const char *which[2][2] = {{"fpn_best", "fpn_last"}, {"best", "last"}};
        cc_params *P = pass ? ts->P : ts->P2;
        cc_optim *o = pass ? ts->opt : ts->opt2;
        if (!P) continue;
        if (improved) {
            ckpt_name(path, sizeof path, s, ts->stage, which[pass][0]);
            const int avg = pass && ts->E;  /* the average is what was validated */
            if (checkpoint_save(path, avg ? ts->E : P, avg ? NULL : o, attrs, 4, st)) return -1;
        }
        ckpt_name(path, sizeof path, s, ts->stage, which[pass][1]);
        if (checkpoint_save(path, P, o, attrs, 4, st)) return -1;
    }
    return 0;
}

int train_ema_init(cc_params *E, const cc_params *P, cc_status *st)
{
    params_init(E, P->ctx);
    for (int i = 0; i < P->n; i++) {
        const cc_param *p = &P->p[i];
        if (params_add(E, p->name, p->ndim, p->shape, p->kind, st) < 0) goto fail;
    }
    if (params_finalize(E, st)) goto fail;
    for (int i = 0; i < P->n; i++) E->p[i].frozen = P->p[i].frozen;
    if (E->n_train != P->n_train || E->n_buf != P->n_buf) {
        status_set(st, "weight average: the copy's layout differs from the model's");
        goto fail;
    }
    memcpy(E->value, P->value, sizeof(float) * P->n_train);
    memcpy(E->buf, P->buf, sizeof(float) * P->n_buf);
    E->bn_eval = P->bn_eval;
    return 0;
fail:
    params_free(E);
    return -1;
}

void train_ema_update(cc_params *E, const cc_params *P, double decay, int64_t step)
{
    const double warm = (1.0 + (double)step) / (10.0 + (double)step);
    if (warm < decay) decay = warm;
    const float d = (float)decay, od = (float)(1.0 - decay);
    float *e = E->value;
    const float *p = P->value;
    for (size_t k = 0; k < P->n_train; k++) e[k] = d * e[k] + od * p[k];
}
