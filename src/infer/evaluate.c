/* evaluate.c - evaluation on a split with the intensity baseline, and on
 * another data set (see evaluate.h). */
#include "src/infer/evaluate.h"

#include <assert.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "src/run/checkpoint.h"
#include "src/train/count_split.h"
#include "src/data/dataset.h"
#include "src/run/metrics.h"
#include "src/train/ood.h"
#include "src/infer/count_files.h"
#include "src/infer/localise.h"
#include "src/data/resize.h"

static const char *const eval_cols[] = {"n", "mae", "rmse", "r2", "max_err", "coverage95",
                                        "width95", "base_mae", "base_rmse", "base_r2",
                                        "base_max_err", "coverage95_raw", "width95_raw",
                                        "bias", "base_bias"};
#define EVAL_NCOLS 15

#define MAX_FOCUS 64

/* The trivial baseline (DATA.md): count = a + b * mean intensity, one line
 * per focus level fitted on the training split (a global line for focus
 * levels the training split lacks). */
typedef struct baseline {
    double a[MAX_FOCUS], b[MAX_FOCUS];
    int has[MAX_FOCUS];
    double ga, gb;
} baseline;

static int baseline_fit(baseline *bl, cc_dataset *ds, cc_status *st)
{
    memset(bl, 0, sizeof *bl);
    cc_loader *L = loader_open_ds(ds, DATASET_TRAIN, 32, 0, LOADER_KEEP_LAST, st);
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

static void eval_header(FILE *out)
{
    fprintf(out, "%-14s %6s %7s %7s %7s %8s %7s %7s %7s | %7s %7s %7s %8s %7s | %7s %7s\n",
            "group", "n", "MAE", "bias", "RMSE", "R2", "maxerr", "cov95", "width", "MAE", "bias",
            "RMSE", "R2", "maxerr", "rawcov", "rawwid");
}

/* One table row: the network (m), the baseline (bm), the network with its
 * raw sigma (rm). */
static int put_row(runlog_table *t, FILE *out, const char *label, metrics_summary m,
                   metrics_summary bm, metrics_summary rm, cc_status *st)
{
    double row[EVAL_NCOLS] = {(double)m.n, m.mae,   m.rmse,  m.r2,      m.max_err,
                              m.coverage95, m.width95, bm.mae, bm.rmse, bm.r2,
                              bm.max_err, rm.coverage95, rm.width95, m.bias, bm.bias};
    fprintf(out,
            "%-14s %6zu %7.3f %7.2f %7.3f %8.4f %7.2f %7.3f %7.2f | %7.3f %7.2f %7.3f %8.4f "
            "%7.2f | %7.3f %7.2f\n",
            label, m.n, m.mae, m.bias, m.rmse, m.r2, m.max_err, m.coverage95, m.width95, bm.mae,
            bm.bias, bm.rmse, bm.r2, bm.max_err, rm.coverage95, rm.width95);
    return runlog_append(t, label, row, st);
}

/* One table row; raw_sigma: the counter's own sigma (before calibration). */
static int add_row(runlog_table *t, FILE *out, const char *label, const count_preds *p,
                   const double *raw_sigma, const double *base, const unsigned char *mask,
                   cc_status *st)
{
    metrics_summary m = metrics_compute(p->truth, p->pred, p->sigma, mask, (size_t)p->n);
    if (!m.n) return 0;
    metrics_summary bm = metrics_compute(p->truth, base, NULL, mask, (size_t)p->n);
    metrics_summary rm = metrics_compute(p->truth, p->pred, raw_sigma, mask, (size_t)p->n);
    return put_row(t, out, label, m, bm, rm, st);
}

/* The rows of an evaluation table: overall, each focus level, count
 * ranges, and "count-balanced" (metrics_compute_balanced: every count
 * weighted equally).  mask: p->n bytes of scratch. */
static int add_groups(runlog_table *tab, FILE *out, const count_preds *p, const double *raw,
                      const double *base, unsigned char *mask, cc_status *st)
{
    if (add_row(tab, out, "overall", p, raw, base, NULL, st)) return -1;
    for (int f = 0; f < MAX_FOCUS; f++) {
        int any = 0;
        for (int64_t i = 0; i < p->n; i++) any |= (mask[i] = p->focus[i] == f);
        if (!any) continue;
        char label[32];
        snprintf(label, sizeof label, "focus F%d", f);
        if (add_row(tab, out, label, p, raw, base, mask, st)) return -1;
    }
    for (int r = 0; r < EVAL_COUNT_GROUPS; r++) {
        int lo, hi;
        char label[32];
        evaluate_count_group(r, &lo, &hi, label, sizeof label);
        for (int64_t i = 0; i < p->n; i++) mask[i] = p->truth[i] >= lo && p->truth[i] <= hi;
        if (add_row(tab, out, label, p, raw, base, mask, st)) return -1;
    }
    if (p->n == 0) return 0;
    metrics_summary m, bm, rm;
    const size_t n = (size_t)p->n;
    if (metrics_compute_balanced(p->truth, p->pred, p->sigma, NULL, n, &m) ||
        metrics_compute_balanced(p->truth, base, NULL, NULL, n, &bm) ||
        metrics_compute_balanced(p->truth, p->pred, raw, NULL, n, &rm))
        return status_set(st, "evaluate: out of memory");
    return put_row(tab, out, "count-balanced", m, bm, rm, st);
}

void evaluate_count_group(int g, int *lo, int *hi, char *label, size_t len)
{
    static const int los[EVAL_COUNT_GROUPS] = {1, 21, 41, 61, 81};
    assert(g >= 0 && g < EVAL_COUNT_GROUPS);
    *lo = los[g];
    *hi = g + 1 < EVAL_COUNT_GROUPS ? los[g + 1] - 1 : INT_MAX;
    if (g + 1 < EVAL_COUNT_GROUPS)
        snprintf(label, len, "count %d-%d", *lo, *hi);
    else
        snprintf(label, len, "count %d+", *lo);
}

/* Predictions of the counter on one split of ds (mask cache built and
 * freed here); with want_maps a density counter's maps too. */
static int predict_split(cc_session *s, cc_models *m, cc_tape *t, cc_dataset *ds, int split,
                         int needs_fpn, int want_maps, count_preds *p, cc_status *st)
{
    mask_cache mc;
    memset(&mc, 0, sizeof mc);
    cc_loader *L = NULL;
    int rc = -1;
    if ((!needs_fpn || mask_cache_build(&mc, s, m, ds, split, st) == 0) &&
        (L = loader_open_ds(ds, split, 16, 0, LOADER_KEEP_LAST, st)))
        rc = counting_predict(s, m, t, &mc, L, s->cfg.counter_tta == CFG_TTA_FLIPS, want_maps, p,
                              st);
    loader_close(L);
    mask_cache_free(&mc);
    return rc;
}

/* Table predictions/<split>: one row per image (label: its source file),
 * for the predicted-vs-true figure of report --plot and for h5py users. */
static int store_predictions(runlog *rl, const char *split, const char *sfx,
                             const cc_dataset *ds, const count_preds *p, const double *raw,
                             const double *base, cc_status *st)
{
    static const char *const cols[] = {"index", "truth", "count", "sigma", "sigma_raw", "focus",
                                       "baseline"};
    char tname[96];
    snprintf(tname, sizeof tname, "predictions/%s%s", split, sfx);
    runlog_table *t = runlog_table_fresh(rl, tname, 7, cols, st);
    if (!t) return -1;
    int rc = 0;
    for (int64_t i = 0; i < p->n && !rc; i++) {
        double row[7] = {(double)p->index[i], p->truth[i], p->pred[i], p->sigma[i], raw[i],
                         (double)p->focus[i], base[i]};
        const int64_t k = p->index[i];
        rc = runlog_append(t, k >= 0 && k < ds->n ? ds->source[k] : "", row, st);
    }
    return rc;
}

double evaluate_sigma_scale(const double *truth, const double *pred, const double *sigma,
                            int64_t n)
{
    double sum = 0;
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(sigma[i]) && sigma[i] > 0) {
            double z = (truth[i] - pred[i]) / sigma[i];
            sum += z * z;
            k++;
        }
    return k && sum > 0 ? sqrt(sum / (double)k) : NAN;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The two-sided standard normal quantile of `level` (bisection on erf:
 * exact enough for a factor, and no table to keep). */
static double normal_two_sided_z(double level)
{
    double lo = 0, hi = 10;
    for (int i = 0; i < 80; i++) {
        const double mid = 0.5 * (lo + hi);
        if (erf(mid / sqrt(2.0)) < level) lo = mid;
        else hi = mid;
    }
    return 0.5 * (lo + hi);
}

double evaluate_sigma_scale_coverage(const double *truth, const double *pred, const double *sigma,
                                     int64_t n, double level)
{
    assert(level > 0 && level < 1);
    double *r = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    if (!r) return NAN;
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(sigma[i]) && sigma[i] > 0) r[m++] = fabs(truth[i] - pred[i]) / sigma[i];
    double k = NAN;
    if (m) {
        qsort(r, (size_t)m, sizeof(double), cmp_double);
        int64_t rank = (int64_t)ceil((double)(m + 1) * level);
        if (rank > m) rank = m;
        if (r[rank - 1] > 0) k = r[rank - 1] / normal_two_sided_z(level);
    }
    free(r);
    return k;
}

/* The predictions a calibration is fitted on: the m entries idx[] of
 * truth, pred, sigma that have a finite positive sigma. */
typedef struct calib_data {
    const double *truth, *pred, *sigma;
    const int64_t *idx;
    int64_t m;
} calib_data;

/* The Gaussian NLL (up to constants) of the truths under N(pred, (a s_r)^2)
 * with s_r = count_calib_sigma({1, r}, pred, sigma) and a at its closed-form
 * optimum a^2 = mean(res^2 / s_r^2): mean(log s_r^2) + log a^2.  *a2 gets
 * a^2. */
static double calib_nll(const calib_data *d, double r, double *a2)
{
    const count_calib shape = {1, r};
    double sl = 0, sq = 0;
    for (int64_t j = 0; j < d->m; j++) {
        const int64_t i = d->idx[j];
        const double s = count_calib_sigma(&shape, d->pred[i], d->sigma[i]), v = s * s,
                     e = d->truth[i] - d->pred[i];
        sl += log(v);
        sq += e * e / v;
    }
    *a2 = sq / (double)d->m;
    return sl / (double)d->m + log(*a2);
}

/* The ratio r = per_count / scale of least NLL: 0 unless a ratio on a log
 * grid (1e-4 .. 1e4, 20 per decade) beats nll0 (the NLL at r = 0), then
 * golden section on log10 r between the best grid point's neighbours (the
 * NLL in r is smooth but not convex). */
static double calib_best_ratio(const calib_data *d, double nll0)
{
    enum { G = 161 };
    const double lg0 = -4, step = 8.0 / (G - 1);
    double best = nll0, t;
    int bj = -1;
    for (int j = 0; j < G; j++) {
        const double v = calib_nll(d, pow(10, lg0 + step * j), &t);
        if (v < best) best = v, bj = j;
    }
    if (bj < 0) return 0;
    double lo = lg0 + step * (bj > 0 ? bj - 1 : 0), hi = lg0 + step * (bj < G - 1 ? bj + 1 : bj);
    const double g = (sqrt(5.0) - 1) / 2;
    double x1 = hi - g * (hi - lo), x2 = lo + g * (hi - lo);
    double f1 = calib_nll(d, pow(10, x1), &t), f2 = calib_nll(d, pow(10, x2), &t);
    for (int it = 0; it < 60; it++) {
        if (f1 < f2) {
            hi = x2, x2 = x1, f2 = f1;
            x1 = hi - g * (hi - lo);
            f1 = calib_nll(d, pow(10, x1), &t);
        } else {
            lo = x1, x1 = x2, f1 = f2;
            x2 = lo + g * (hi - lo);
            f2 = calib_nll(d, pow(10, x2), &t);
        }
    }
    const double xr = pow(10, 0.5 * (lo + hi));
    return calib_nll(d, xr, &t) < best ? xr : pow(10, lg0 + step * bj);
}

int evaluate_calib_fit(count_calib *c, int coverage, int with_count, const double *truth,
                       const double *pred, const double *sigma, int64_t n)
{
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)(n > 0 ? n : 1)), m = 0;
    double *s = NULL;
    if (!idx) return -1;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(sigma[i]) && sigma[i] > 0 && isfinite(pred[i]) && isfinite(truth[i]))
            idx[m++] = i;
    const calib_data d = {truth, pred, sigma, idx, m};
    double a2 = 0, r = 0;
    const double nll0 = m ? calib_nll(&d, 0, &a2) : NAN;
    int rc = -1;
    if (!m || !(a2 > 0)) goto out;
    if (with_count && (r = calib_best_ratio(&d, nll0)) > 0) calib_nll(&d, r, &a2);
    /* r = 0: exactly the one-factor fit, whatever the rounding above */
    double scale = r > 0 ? sqrt(a2) : evaluate_sigma_scale(truth, pred, sigma, n);
    if (coverage) {
        /* the conformal factor of the shape the NLL chose */
        const count_calib shape = {1, r};
        if (!(s = malloc(sizeof(double) * (size_t)n))) goto out;
        for (int64_t i = 0; i < n; i++)
            s[i] = isfinite(sigma[i]) && sigma[i] > 0 ? count_calib_sigma(&shape, pred[i], sigma[i])
                                                      : NAN;
        scale = evaluate_sigma_scale_coverage(truth, pred, s, n, 0.95);
        if (!isfinite(scale)) goto out;
    }
    c->scale = scale;
    c->per_count = scale * r;
    rc = 0;
out:
    free(idx);
    free(s);
    return rc;
}

/* A character that table names (eval_on labels, tags) keep as it is. */
static int label_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_';
}

int evaluate_tag_check(const char *tag, cc_status *st)
{
    size_t n = strlen(tag);
    int ok = n >= 1 && n <= 32;
    for (size_t i = 0; i < n && ok; i++) ok = label_char_ok(tag[i]);
    return ok ? 0
              : status_set(st, "--tag '%s': use 1 to 32 letters, digits, '-' or '_' (it becomes "
                               "part of table names)", tag);
}

/* ".<tag>" or "" (buf: at least 34 bytes). */
static const char *tag_suffix(char *buf, size_t len, const char *tag)
{
    snprintf(buf, len, "%s%s", tag ? "." : "", tag ? tag : "");
    return buf;
}

/* Open counter.calibrate_on's data set and check that the run's models
 * read it as they read ds: same image size and normalisation, no stain ds
 * lacks, and not ds itself (its test split would calibrate itself).
 * NULL with st set otherwise. */
static cc_dataset *calib_set_open(const char *path, const cc_dataset *ds, cc_status *st)
{
    char a[PATH_MAX], b[PATH_MAX];
    if (realpath(path, a) && realpath(ds->path, b) && !strcmp(a, b)) {
        status_set(st, "counter.calibrate_on = %s: that is the run's own data set (its "
                       "validation split is the default calibration set; name another file)",
                   path);
        return NULL;
    }
    cc_dataset *c = dataset_open(path, st);
    if (!c) return NULL;
    if (c->h != ds->h || c->w != ds->w) {
        status_set(st, "counter.calibrate_on = %s: images of %dx%d, the run's data set %s has "
                       "%dx%d (make it with the same --size)",
                   path, c->w, c->h, ds->path, ds->w, ds->h);
    } else if (strcmp(c->normalize, ds->normalize)) {
        status_set(st, "counter.calibrate_on = %s: images normalised with '%s', the run's data "
                       "set with '%s'", path, c->normalize, ds->normalize);
    } else if (c->n == 0) {
        status_set(st, "counter.calibrate_on = %s: no images", path);
    } else {
        /* the stains ds holds (BBBC005: 1 and 2), then the first image of another */
        uint64_t have = 0;
        for (int64_t k = 0; k < ds->n; k++)
            if (ds->stain[k] >= 0 && ds->stain[k] < 64) have |= (uint64_t)1 << ds->stain[k];
        int64_t bad = -1;
        for (int64_t i = 0; i < c->n && bad < 0; i++)
            if (c->stain[i] < 0 || c->stain[i] >= 64 || !(have >> c->stain[i] & 1)) bad = i;
        if (bad < 0) return c;
        status_set(st, "counter.calibrate_on = %s: image %lld is of stain w%d, which the run's "
                       "data set %s does not have (simulate it with the run's --stain)",
                   path, (long long)bad, (int)c->stain[bad], ds->path);
    }
    dataset_close(c);
    return NULL;
}

int evaluate_run(const cc_config *cfg, int split, const char *fpn_ckpt, const char *counter_ckpt,
                 const char *tag, FILE *out, cc_status *st)
{
    if (tag && evaluate_tag_check(tag, st)) return -1;
    if (cfg->counter_calibrate_on[0] && cfg->counter_calibrate == CFG_CALIBRATE_NONE)
        return status_set(st, "counter.calibrate_on = %s: counter.calibrate = none fits no "
                              "calibration (use val or coverage)",
                          cfg->counter_calibrate_on);
    char sfx[40];
    tag_suffix(sfx, sizeof sfx, tag);
    cc_session s;
    cc_models m;
    memset(&m, 0, sizeof m);
    count_preds p, pv;
    memset(&p, 0, sizeof p);
    memset(&pv, 0, sizeof pv);
    double *base = NULL, *raw = NULL;
    unsigned char *mask = NULL;
    int tape = 0, rc = -1;
    cc_tape t;
    cc_dataset *ds = NULL;     /* the run's data set, opened once */
    cc_dataset *cds = NULL;    /* counter.calibrate_on's data set */
    if (session_open(&s, cfg, SESSION_EVAL, st)) goto out;
    if (!(ds = dataset_open(cfg->data_file, st)) || models_build(&m, &s, 1, ds->h, ds->w, st))
        goto out;
    char path[CFG_STR + 64];
    const int needs_fpn = cfg->counter_input != CFG_INPUT_IMAGE;
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
    tape_init(&t, &s.ctx, 0);
    tape_fix_weights(&t, 1);     /* loaded checkpoints, never changed */
    tape = 1;
    /* a density counter on a set that knows where its cells are: GAME too */
    const int want_maps = m.counter.positions && ds->centres;
    if (predict_split(&s, &m, &t, ds, split, needs_fpn, want_maps, &p, st)) goto out;
    baseline bl;
    if (baseline_fit(&bl, ds, st)) goto out;
    base = malloc(sizeof(double) * (size_t)p.n);
    raw = malloc(sizeof(double) * (size_t)p.n);
    mask = malloc((size_t)p.n);
    if (!base || !raw || !mask) {
        status_set(st, "evaluate: out of memory");
        goto out;
    }
    for (int64_t i = 0; i < p.n; i++) base[i] = baseline_predict(&bl, p.intensity[i], p.focus[i]);
    memcpy(raw, p.sigma, sizeof(double) * (size_t)p.n);
    /* Calibration (count_calib), fitted on the validation split so that
     * the test split stays untouched: the Gaussian NLL's optimum, or the
     * NLL's shape scaled to give the validation split 95% coverage. */
    count_calib cb = COUNT_CALIB_IDENTITY;
    const int cal = cfg->counter_calibrate;
    /* fit_on: what the calibration was fitted on (run.h5 counter.sigma_fit_on):
     * "val", the calibration set's path, or "none" (calibrate = none, or no
     * sigma to calibrate) */
    const char *con = cfg->counter_calibrate_on, *fit_on = "none";
    if (cal != CFG_CALIBRATE_NONE && p.n && isfinite(p.sigma[0])) {
        fit_on = con[0] ? con : "val";
        /* evaluating the validation split itself: its predictions are p */
        count_preds *v = &p;
        if (con[0]) {
            if (!(cds = calib_set_open(con, ds, st)) ||
                predict_split(&s, &m, &t, cds, LOADER_SPLIT_ALL, needs_fpn, 0, &pv, st))
                goto out;
            v = &pv;
        } else if (split != DATASET_VAL) {
            if (predict_split(&s, &m, &t, ds, DATASET_VAL, needs_fpn, 0, &pv, st)) goto out;
            v = &pv;
        }
        evaluate_calib_fit(&cb, cal == CFG_CALIBRATE_COVERAGE, cfg->counter_calibrate_count,
                           v->truth, v->pred, v->sigma, v->n);
        for (int64_t i = 0; i < p.n; i++)
            p.sigma[i] = count_calib_sigma(&cb, p.pred[i], p.sigma[i]);
        if (v != &p)
            for (int64_t i = 0; i < v->n; i++)
                v->sigma[i] = count_calib_sigma(&cb, v->pred[i], v->sigma[i]);
        /* the calibrated sigmas count's out-of-distribution flag compares against */
        if (!tag && ood_sigma_stats_write(&s.rl, v->sigma, v->n, 1, st)) goto out;
        fprintf(out, "sigma = sqrt((%.4f sigma_raw)^2 + (%.4f count)^2), fitted on %s "
                     "(%lld images, %s%s; counter.calibrate = none reports raw intervals "
                     "only)\n",
                cb.scale, cb.per_count, con[0] ? con : "the validation split", (long long)v->n,
                cal == CFG_CALIBRATE_COVERAGE ? "95% of its truths inside count +- 1.96 sigma"
                                              : "the Gaussian NLL's optimum",
                cfg->counter_calibrate_count ? "" : "; counter.calibrate_count = false");
    }
    char sbuf[32], cbuf[32];
    snprintf(sbuf, sizeof sbuf, "%.9g", cb.scale);
    snprintf(cbuf, sizeof cbuf, "%.9g", cb.per_count);
    count_sigma_attrs an;
    count_sigma_attr_names(tag, &an);
    if (runlog_set_attr(&s.rl, an.scale, sbuf, st) ||
        runlog_set_attr(&s.rl, an.per_count, cbuf, st) ||
        runlog_set_attr(&s.rl, an.tta, cfg_tta_names[cfg->counter_tta], st) ||
        runlog_set_attr(&s.rl, an.fit_on, fit_on, st))
        goto out;

    static const char *split_names[] = {"train", "val", "test"};
    char tname[96];
    snprintf(tname, sizeof tname, "eval/%s%s", split_names[split], sfx);
    runlog_table *tab = runlog_table_fresh(&s.rl, tname, EVAL_NCOLS, eval_cols, st);
    if (!tab) goto out;
    fprintf(out, "evaluation on the %s split (%lld images%s): network | mean-intensity baseline "
                 "(a line per focus level, fitted on the training split)\n",
            split_names[split], (long long)p.n,
            cfg->counter_tta == CFG_TTA_FLIPS ? ", counts averaged over 4 flips" : "");
    eval_header(out);
    if (add_groups(tab, out, &p, raw, base, mask, st)) goto out;
    /* Calibration: observed coverage of central intervals, for report --plot. */
    static const double levels[] = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99};
    const char *ccols[] = {"nominal", "observed"};
    snprintf(tname, sizeof tname, "calibration/%s%s", split_names[split], sfx);
    runlog_table *ct = runlog_table_fresh(&s.rl, tname, 2, ccols, st);
    if (!ct) goto out;
    double obs[11];
    metrics_calibration(p.truth, p.pred, p.sigma, (size_t)p.n, levels, 11, obs);
    for (int k = 0; k < 11; k++) {
        double row[2] = {levels[k], obs[k]};
        if (runlog_append(ct, "", row, st)) goto out;
    }
    if (store_predictions(&s.rl, split_names[split], sfx, ds, &p, raw, base, st)) goto out;
    char lname[96];
    snprintf(lname, sizeof lname, "game/%s%s", split_names[split], sfx);
    const int game = localise_report(&s.rl, lname, out, ds, p.index, p.truth, p.n, p.maps,
                                     p.map_h, p.map_w, st);
    if (game < 0) goto out;
    rc = runlog_flush(&s.rl, st);
    if (!rc)
        fprintf(out, "stored as tables eval/%s%s, %s%s%s and predictions/%s%s in %s/run.h5\n",
                split_names[split], sfx, tname, game ? ", " : "", game ? lname : "",
                split_names[split], sfx, s.dir);
out:
    free(base);
    free(raw);
    free(mask);
    count_preds_free(&p);
    count_preds_free(&pv);
    if (tape) tape_free(&t);
    models_free(&m);
    dataset_close(cds);
    dataset_close(ds);
    session_close(&s);
    return rc;
}

/* "eval_on/<label>": see evaluate_on_run. */
static void eval_on_label(char *buf, size_t len, const char *data_path, int split, int stain)
{
    static const char *split_names[] = {"train", "val", "test"};
    const char *b = strrchr(data_path, '/');
    b = b ? b + 1 : data_path;
    size_t k = 0;
    for (; *b && k + 1 < len && k < 48; b++) {
        if (!strcmp(b, ".h5") || !strcmp(b, ".hdf5")) break;
        buf[k++] = label_char_ok(*b) ? *b : '_';
    }
    buf[k] = 0;
    if (stain > 0) snprintf(buf + k, len - k, "-w%d", stain);
    k = strlen(buf);
    if (split >= 0) snprintf(buf + k, len - k, "-%s", split_names[split]);
}

/* Predict the selected rows of ds with cm: images area-resized to cm's
 * input size, 16 at a time.  Fills p (allocated here) and raw sigmas; with
 * want_maps a density counter's maps (p->maps) too. */
static int predict_rows(count_model *cm, cc_dataset *ds, const int64_t *rows, int64_t n,
                        int want_maps, count_preds *p, double **raw_out, cc_status *st)
{
    const size_t mplane = want_maps ? (size_t)cm->m.counter.positions : 0;
    if (want_maps && !(p->maps = malloc(sizeof(float) * mplane * (size_t)n)))
        return status_set(st, "evaluate: out of memory");
    enum { B = 16 };
    const size_t src_plane = (size_t)ds->h * (size_t)ds->w, plane = (size_t)cm->h * (size_t)cm->w;
    float *src = malloc(sizeof(float) * src_plane), *batch = malloc(sizeof(float) * plane * B);
    p->n = n;
    p->truth = malloc(sizeof(double) * (size_t)n);
    p->pred = malloc(sizeof(double) * (size_t)n);
    p->sigma = malloc(sizeof(double) * (size_t)n);
    p->intensity = malloc(sizeof(double) * (size_t)n);
    p->focus = malloc(sizeof(int32_t) * (size_t)n);
    p->index = malloc(sizeof(int64_t) * (size_t)n);
    double *raw = *raw_out = malloc(sizeof(double) * (size_t)n);
    if (!src || !batch || !p->truth || !p->pred || !p->sigma || !p->intensity || !p->focus ||
        !p->index || !raw) {
        free(src), free(batch);
        return status_set(st, "evaluate: out of memory");
    }
    /* predict raw sigmas (the table keeps both), calibrate them after */
    const count_calib cal = cm->calib;
    cm->calib = COUNT_CALIB_IDENTITY;
    int rc = 0;
    for (int64_t i0 = 0; i0 < n && !rc; i0 += B) {
        const int nb = (int)(n - i0 < B ? n - i0 : B);
        for (int j = 0; j < nb && !rc; j++) {
            const int64_t r = rows[i0 + j];
            float *dst = batch + plane * (size_t)j;
            if (dataset_read_images(ds, r, 1, src, st)) {
                rc = -1;
                break;
            }
            if (ds->h == cm->h && ds->w == cm->w)
                memcpy(dst, src, sizeof(float) * plane);
            else if (resize_area(src, ds->w, ds->h, dst, cm->w, cm->h, st))
                rc = -1;
            double sum = 0;
            for (size_t q = 0; q < plane; q++) sum += dst[q];
            p->intensity[i0 + j] = sum / (double)plane;
            p->truth[i0 + j] = ds->counts[r];
            p->focus[i0 + j] = ds->focus[r];
            p->index[i0 + j] = r;
        }
        if (!rc)
            rc = count_model_predict_fg(cm, batch, nb, p->pred + i0, p->sigma + i0, NULL, NULL,
                                        NULL, want_maps ? p->maps + mplane * (size_t)i0 : NULL,
                                        st);
    }
    cm->calib = cal;
    p->map_h = cm->density_h, p->map_w = cm->density_w;
    for (int64_t i = 0; i < n; i++) {
        raw[i] = p->sigma[i];
        p->sigma[i] = count_calib_sigma(&cal, p->pred[i], raw[i]);
    }
    free(src), free(batch);
    return rc;
}

int evaluate_on_run(const cc_config *cfg, const char *data_path, int split, int stain,
                    const char *fpn_ckpt, const char *counter_ckpt, const char *tag, FILE *out,
                    cc_status *st)
{
    if (tag && evaluate_tag_check(tag, st)) return -1;
    static const char *split_names[] = {"train", "val", "test"};
    count_model cm;
    cc_session s;
    int sess = 0, rc = -1, h = 0, w = 0;
    count_preds p;
    memset(&p, 0, sizeof p);
    double *raw = NULL, *base = NULL;
    unsigned char *mask = NULL;
    int64_t *rows = NULL, n = 0;
    cc_dataset *ds = NULL;
    memset(&cm, 0, sizeof cm);
    if (count_input_size(cfg, &h, &w, st) ||
        count_model_open(&cm, cfg, h, w, fpn_ckpt, counter_ckpt, 0, tag, st))
        goto out;
    if (!(ds = dataset_open(data_path, st))) goto out;
    /* The data set's pixels were normalised when it was written; a model
     * trained on another normalisation would read a different scale. */
    if (cm.train_norm[0] && strcmp(cm.train_norm, ds->normalize)) {
        status_set(st, "%s: images normalised with '%s', the run was trained on '%s' (import the "
                       "files again with --normalize %s)",
                   data_path, ds->normalize, cm.train_norm, cm.train_norm);
        goto out;
    }
    if (!(rows = malloc(sizeof(int64_t) * (size_t)(ds->n ? ds->n : 1)))) {
        status_set(st, "evaluate: out of memory");
        goto out;
    }
    for (int64_t i = 0; i < ds->n; i++)
        if ((split < 0 || ds->split[i] == split) && (stain <= 0 || ds->stain[i] == stain))
            rows[n++] = i;
    if (!n) {
        status_set(st, "%s: no image of stain %s in split %s", data_path,
                   stain > 0 ? (stain == 1 ? "w1" : "w2") : "any",
                   split < 0 ? "all" : split_names[split]);
        goto out;
    }
    if (predict_rows(&cm, ds, rows, n, cm.m.counter.positions && ds->centres, &p, &raw, st))
        goto out;
    baseline bl;
    cc_dataset *tds = dataset_open(cfg->data_file, st);    /* the run's training data */
    const int bf = tds ? baseline_fit(&bl, tds, st) : -1;
    dataset_close(tds);
    if (bf) goto out;
    if (!(base = malloc(sizeof(double) * (size_t)n)) || !(mask = malloc((size_t)n))) {
        status_set(st, "evaluate: out of memory");
        goto out;
    }
    for (int64_t i = 0; i < n; i++) base[i] = baseline_predict(&bl, p.intensity[i], p.focus[i]);
    if (session_open(&s, cfg, SESSION_EVAL, st)) goto out;
    sess = 1;
    char label[136], tname[160], sfx[40];
    eval_on_label(label, sizeof label, data_path, split, stain);
    strcat(label, tag_suffix(sfx, sizeof sfx, tag));
    snprintf(tname, sizeof tname, "eval_on/%s", label);
    runlog_table *tab = runlog_table_fresh(&s.rl, tname, EVAL_NCOLS, eval_cols, st);
    if (!tab) goto out;
    fprintf(out, "evaluation of %s on %s (%lld images: stain %s, split %s; %dx%d resized to %dx%d)"
                 ", sigma = sqrt((%.4f sigma_raw)^2 + (%.4f count)^2) (%s%s)\n",
            s.dir, data_path, (long long)n,
            stain > 0 ? (stain == 1 ? "w1" : "w2") : "any",
            split < 0 ? "all" : split_names[split], ds->w, ds->h, w, h, cm.calib.scale,
            cm.calib.per_count,
            cm.sigma_from[0] ? "the run's calibration, run.h5 attribute "
                             : "none: the run was not evaluated or calibrate = none",
            cm.sigma_from);
    fprintf(out, "network%s | mean-intensity baseline fitted on the run's training split\n",
            cfg->counter_tta == CFG_TTA_FLIPS ? " (counts averaged over 4 flips)" : "");
    eval_header(out);
    if (add_groups(tab, out, &p, raw, base, mask, st)) goto out;
    static const char *const pcols[] = {"index", "truth", "count", "sigma", "sigma_raw", "focus",
                                        "baseline"};
    snprintf(tname, sizeof tname, "predictions_on/%s", label);
    runlog_table *pt = runlog_table_fresh(&s.rl, tname, 7, pcols, st);
    if (!pt) goto out;
    for (int64_t i = 0; i < n; i++) {
        double row[7] = {(double)p.index[i], p.truth[i], p.pred[i], p.sigma[i], raw[i],
                         (double)p.focus[i], base[i]};
        if (runlog_append(pt, ds->source[p.index[i]], row, st)) goto out;
    }
    snprintf(tname, sizeof tname, "game_on/%s", label);
    const int game = localise_report(&s.rl, tname, out, ds, p.index, p.truth, p.n, p.maps,
                                     p.map_h, p.map_w, st);
    if (game < 0 || runlog_flush(&s.rl, st)) goto out;
    fprintf(out, "stored as tables eval_on/%s%s%s and predictions_on/%s in %s/run.h5\n", label,
            game ? ", " : "", game ? tname : "", label, s.dir);
    rc = 0;
out:
    free(rows), free(raw), free(base), free(mask);
    count_preds_free(&p);
    dataset_close(ds);
    if (sess) session_close(&s);
    count_model_close(&cm);
    return rc;
}
