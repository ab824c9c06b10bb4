/* evaluate.c - evaluation on a split with the intensity baseline (train.h). */
#include "src/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "src/checkpoint.h"
#include "src/counting.h"
#include "src/dataset.h"
#include "src/metrics.h"
#include "src/train_util.h"

static const char *const eval_cols[] = {"n", "mae", "rmse", "r2", "max_err", "coverage95",
                                        "width95", "base_mae", "base_rmse", "base_r2",
                                        "base_max_err"};
#define EVAL_NCOLS 11

#define MAX_FOCUS 64

/* The trivial baseline (DATA.md): count = a + b * mean intensity, one line
 * per focus level fitted on the training split (a global line for focus
 * levels the training split lacks). */
typedef struct baseline {
    double a[MAX_FOCUS], b[MAX_FOCUS];
    int has[MAX_FOCUS];
    double ga, gb;
} baseline;

static int baseline_fit(baseline *bl, const char *path, cc_status *st)
{
    memset(bl, 0, sizeof *bl);
    cc_loader *L = loader_open(path, DATASET_TRAIN, 32, 0, LOADER_KEEP_LAST, st);
    if (!L) return -1;
    int64_t n = loader_size(L), k = 0;
    double *x = malloc(sizeof(double) * (size_t)n), *y = malloc(sizeof(double) * (size_t)n);
    int32_t *f = malloc(sizeof(int32_t) * (size_t)n);
    if (!x || !y || !f) {
        free(x), free(y), free(f);
        loader_close(L);
        return status_set(st, "baseline: out of memory");
    }
    loader_epoch_begin(L, 0);
    loader_batch b;
    while (loader_next(L, &b)) {
        const size_t plane = (size_t)b.h * (size_t)b.w;
        for (int i = 0; i < b.n; i++, k++) {
            double sum = 0;
            for (size_t p = 0; p < plane; p++) sum += b.images[plane * (size_t)i + p];
            x[k] = sum / (double)plane;
            y[k] = b.counts[i];
            f[k] = b.focus[i];
        }
    }
    loader_close(L);
    int rc = 0;
    if (metrics_fit_line(x, y, (size_t)k, &bl->ga, &bl->gb))
        rc = status_set(st, "baseline: training images have constant intensity");
    double *fx = malloc(sizeof(double) * (size_t)k), *fy = malloc(sizeof(double) * (size_t)k);
    for (int focus = 0; rc == 0 && focus < MAX_FOCUS && fx && fy; focus++) {
        size_t m = 0;
        for (int64_t i = 0; i < k; i++)
            if (f[i] == focus) fx[m] = x[i], fy[m++] = y[i];
        if (m >= 3 && metrics_fit_line(fx, fy, m, &bl->a[focus], &bl->b[focus]) == 0)
            bl->has[focus] = 1;
    }
    free(fx), free(fy), free(x), free(y), free(f);
    return rc;
}

static double baseline_predict(const baseline *bl, double intensity, int focus)
{
    if (focus >= 0 && focus < MAX_FOCUS && bl->has[focus]) return bl->a[focus] + bl->b[focus] * intensity;
    return bl->ga + bl->gb * intensity;
}

static int add_row(runlog_table *t, FILE *out, const char *label, const count_preds *p,
                   const double *base, const unsigned char *mask, cc_status *st)
{
    metrics_summary m = metrics_compute(p->truth, p->pred, p->sigma, mask, (size_t)p->n);
    if (!m.n) return 0;
    metrics_summary bm = metrics_compute(p->truth, base, NULL, mask, (size_t)p->n);
    double row[EVAL_NCOLS] = {(double)m.n, m.mae, m.rmse, m.r2, m.max_err, m.coverage95,
                              m.width95, bm.mae, bm.rmse, bm.r2, bm.max_err};
    fprintf(out, "%-14s %6zu %7.3f %7.3f %8.4f %7.2f %7.3f %7.2f | %7.3f %7.3f %8.4f %7.2f\n",
            label, m.n, m.mae, m.rmse, m.r2, m.max_err, m.coverage95, m.width95, bm.mae,
            bm.rmse, bm.r2, bm.max_err);
    return runlog_append(t, label, row, st);
}

int evaluate_run(const cc_config *cfg, int split, const char *fpn_ckpt, const char *counter_ckpt,
                 FILE *out, cc_status *st)
{
    cc_session s;
    cc_models m;
    memset(&m, 0, sizeof m);
    mask_cache mc;
    memset(&mc, 0, sizeof mc);
    cc_loader *L = NULL;
    count_preds p;
    memset(&p, 0, sizeof p);
    double *base = NULL;
    unsigned char *mask = NULL;
    int tape = 0, rc = -1;
    cc_tape t;
    if (session_open(&s, cfg, 1, st)) goto out;
    int h, w;
    if (train_dataset_size(cfg->data_file, &h, &w, st) || models_build(&m, &s, 1, h, w, st)) goto out;
    char path[CFG_STR + 64];
    const int needs_fpn = strcmp(cfg->counter_input, "image") != 0;
    if (needs_fpn) {
        if (fpn_ckpt)
            snprintf(path, sizeof path, "%s", fpn_ckpt);
        else
            session_path(&s, cfg->finetune_fpn ? "counter_fpn_best.h5" : "fpn_best.h5", path,
                         sizeof path);
        if (checkpoint_load(path, &m.Pf, NULL, st)) goto out;
    }
    if (counter_ckpt)
        snprintf(path, sizeof path, "%s", counter_ckpt);
    else
        session_path(&s, "counter_best.h5", path, sizeof path);
    if (checkpoint_load(path, &m.Pc, NULL, st)) goto out;
    if (needs_fpn && mask_cache_build(&mc, &s, &m, cfg->data_file, split, st)) goto out;
    if (!(L = loader_open(cfg->data_file, split, 16, 0, LOADER_KEEP_LAST, st))) goto out;
    tape_init(&t, &s.ctx, 0);
    tape = 1;
    if (counting_predict(&s, &m, &t, &mc, L, &p, st)) goto out;
    baseline bl;
    if (baseline_fit(&bl, cfg->data_file, st)) goto out;
    base = malloc(sizeof(double) * (size_t)p.n);
    mask = malloc((size_t)p.n);
    if (!base || !mask) {
        status_set(st, "evaluate: out of memory");
        goto out;
    }
    for (int64_t i = 0; i < p.n; i++) base[i] = baseline_predict(&bl, p.intensity[i], p.focus[i]);

    static const char *split_names[] = {"train", "val", "test"};
    char tname[64];
    snprintf(tname, sizeof tname, "eval/%s", split_names[split]);
    runlog_table *tab = runlog_table_get(&s.rl, tname, EVAL_NCOLS, eval_cols, st);
    if (!tab) goto out;
    runlog_clear(tab);
    fprintf(out, "evaluation on the %s split (%lld images): network | mean-intensity baseline "
                 "(a line per focus level, fitted on the training split)\n",
            split_names[split], (long long)p.n);
    fprintf(out, "%-14s %6s %7s %7s %8s %7s %7s %7s | %7s %7s %8s %7s\n", "group", "n", "MAE",
            "RMSE", "R2", "maxerr", "cov95", "width", "MAE", "RMSE", "R2", "maxerr");
    if (add_row(tab, out, "overall", &p, base, NULL, st)) goto out;
    for (int f = 0; f < MAX_FOCUS; f++) {
        int any = 0;
        for (int64_t i = 0; i < p.n; i++) any |= (mask[i] = p.focus[i] == f);
        if (!any) continue;
        char label[32];
        snprintf(label, sizeof label, "focus F%d", f);
        if (add_row(tab, out, label, &p, base, mask, st)) goto out;
    }
    static const int lo[] = {1, 21, 41, 61, 81}, hi[] = {20, 40, 60, 80, 100000};
    for (int r = 0; r < 5; r++) {
        for (int64_t i = 0; i < p.n; i++) mask[i] = p.truth[i] >= lo[r] && p.truth[i] <= hi[r];
        char label[32];
        if (hi[r] < 100000)
            snprintf(label, sizeof label, "count %d-%d", lo[r], hi[r]);
        else
            snprintf(label, sizeof label, "count %d+", lo[r]);
        if (add_row(tab, out, label, &p, base, mask, st)) goto out;
    }
    /* Calibration: observed coverage of central intervals, for report --plot. */
    static const double levels[] = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99};
    const char *ccols[] = {"nominal", "observed"};
    snprintf(tname, sizeof tname, "calibration/%s", split_names[split]);
    runlog_table *ct = runlog_table_get(&s.rl, tname, 2, ccols, st);
    if (!ct) goto out;
    runlog_clear(ct);
    double obs[11];
    metrics_calibration(p.truth, p.pred, p.sigma, (size_t)p.n, levels, 11, obs);
    for (int k = 0; k < 11; k++) {
        double row[2] = {levels[k], obs[k]};
        if (runlog_append(ct, "", row, st)) goto out;
    }
    rc = runlog_flush(&s.rl, st);
    if (!rc) fprintf(out, "stored as tables eval/%s and %s in %s/run.h5\n", split_names[split], tname, s.dir);
out:
    free(base);
    free(mask);
    count_preds_free(&p);
    if (tape) tape_free(&t);
    loader_close(L);
    mask_cache_free(&mc);
    models_free(&m);
    session_close(&s);
    return rc;
}
