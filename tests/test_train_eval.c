/* test_train_eval.c - evaluating trained runs (part of test_train):
 * evaluate on a split, evaluate --on another data set, --tag, the sigma
 * calibrations (val, coverage) and that evaluations leave the run's
 * configuration alone. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/data/dataset.h"
#include "src/infer/count_files.h"
#include "src/infer/evaluate.h"
#include "src/run/runlog.h"
#include "src/train/train.h"
#include "tests/test_train.h"

/* A tiny FPN + counter trained on `data` in dir/run (config in *c), then
 * evaluated on the test split (tables to out), which must succeed. */
static void train_tiny_evaluated(cc_config *c, const char *run, int fpn_epochs, FILE *out)
{
    make_data();
    tiny_config(c, run, fpn_epochs);
    cc_status st;
    status_clear(&st);
    ck_assert_msg(train_fpn(c, 0, &st) == 0, "%s", st.msg);
    ck_assert_msg(train_counter(c, NULL, 0, &st) == 0, "%s", st.msg);
    ck_assert_msg(evaluate_run(c, 2, NULL, NULL, NULL, out, &st) == 0, "%s", st.msg);
}

START_TEST(test_counter_and_evaluate)
{
    cc_config c;
    FILE *devnull = fopen("/dev/null", "w");
    train_tiny_evaluated(&c, "e", 2, devnull);
    fclose(devnull);
    cc_status st;
    status_clear(&st);
    char path[256];
    snprintf(path, sizeof path, "%s/e/run.h5", dir);
    runlog rl;
    ck_assert_int_eq(runlog_open(&rl, path, &st), 0);
    runlog_table *t = runlog_table_find(&rl, "eval/test");
    ck_assert_ptr_nonnull(t);
    ck_assert_str_eq(t->labels[0], "overall");
    ck_assert(t->values[runlog_col(t, "n")] > 0);
    ck_assert(isfinite(t->values[runlog_col(t, "base_mae")]));
    ck_assert_ptr_nonnull(runlog_table_find(&rl, "calibration/test"));
    /* Calibrated on the validation split: the calibration is stored, and
     * every image's calibrated sigma is the stored formula applied to its
     * raw sigma and count (to the attributes' 9 digits). */
    const char *k = runlog_attr_get(&rl, "counter.sigma_scale"),
               *kc = runlog_attr_get(&rl, "counter.sigma_per_count");
    ck_assert(k && kc);
    const count_calib cb = {strtod(k, NULL), strtod(kc, NULL)};
    ck_assert(isfinite(cb.scale) && cb.scale > 0 && isfinite(cb.per_count) && cb.per_count >= 0);
    runlog_table *pr = runlog_table_find(&rl, "predictions/test");
    ck_assert_ptr_nonnull(pr);
    const int pcc = runlog_col(pr, "count"), pcs = runlog_col(pr, "sigma"),
              pcr = runlog_col(pr, "sigma_raw");
    for (size_t r = 0; r < pr->nrows; r++) {
        const double *a = pr->values + r * pr->ncols, want = cb.scale * a[pcr];
        ck_assert_msg(fabs(a[pcs] - count_calib_sigma(&cb, a[pcc], a[pcr])) <= 1e-7 * a[pcs],
                      "row %zu: sigma %g, raw %g, count %g, calibration %g %g", r, a[pcs],
                      a[pcr], a[pcc], cb.scale, cb.per_count);
        ck_assert(a[pcs] >= want * (1 - 1e-7));   /* the count term only widens */
    }
    /* the last row weighs every count equally: the mean over the distinct
     * counts of each count's MAE, from the stored predictions */
    ck_assert_str_eq(t->labels[t->nrows - 1], "count-balanced");
    {
        const int pct = runlog_col(pr, "truth");
        double truths[64], sum[64] = {0}, per_count = 0;
        int nt = 0, cnt[64] = {0};
        for (size_t r = 0; r < pr->nrows; r++) {
            const double *a = pr->values + r * pr->ncols;
            int k = 0;
            while (k < nt && truths[k] != a[pct]) k++;
            if (k == nt) { ck_assert(nt < 64); truths[nt++] = a[pct]; }
            sum[k] += fabs(a[pcc] - a[pct]);
            cnt[k]++;
        }
        for (int k = 0; k < nt; k++) per_count += sum[k] / cnt[k] / nt;
        const double got = t->values[(t->nrows - 1) * t->ncols + runlog_col(t, "mae")];
        ck_assert_msg(nt > 1 && fabs(got - per_count) <= 1e-6 * (1 + per_count),
                      "count-balanced MAE %g, from the predictions %g (%d counts)", got,
                      per_count, nt);
    }
    /* FPN rows survived the counter stage: both stages are in one file */
    runlog_table *m = runlog_table_find(&rl, "metrics");
    int cs = runlog_col(m, "stage"), nf = 0, nc = 0;
    for (size_t r = 0; r < m->nrows; r++) {
        if (m->values[r * m->ncols + cs] == 0) nf++;
        else nc++;
    }
    ck_assert_int_eq(nf, 4);
    ck_assert_int_eq(nc, 4);
    runlog_free(&rl);
}
END_TEST

/* A whole text file, NUL-terminated (malloc'ed). */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f, "%s: cannot open", path);
    char *buf = calloc(1, 1 << 16);
    ck_assert_ptr_nonnull(buf);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    ck_assert(n > 0 && !ferror(f));
    fclose(f);
    return buf;
}

/* evaluate --on: on the run's own data set and test split it must give
 * exactly what evaluate gives (same images, same calibrated model); on a
 * set stored at another size with both stains it resizes and selects. */
START_TEST(test_evaluate_on_other_data)
{
    cc_config c;
    FILE *devnull = fopen("/dev/null", "w");
    train_tiny_evaluated(&c, "on", 1, devnull);
    cc_status st;
    status_clear(&st);
    ck_assert_msg(evaluate_on_run(&c, data, 2, 0, NULL, NULL, NULL, devnull, &st) == 0, "%s", st.msg);
    char other[160];
    snprintf(other, sizeof other, "%s/other.h5", dir);
    make_data_at(other, 128, 128, 3);
    ck_assert_msg(evaluate_on_run(&c, other, -1, 2, NULL, NULL, NULL, devnull, &st) == 0, "%s", st.msg);
    /* the run's data set has no w2 image: a clear error naming the file */
    ck_assert_int_ne(evaluate_on_run(&c, data, -1, 2, NULL, NULL, NULL, devnull, &st), 0);
    ck_assert_msg(strstr(st.msg, data) && strstr(st.msg, "no image"), "%s", st.msg);
    fclose(devnull);
    char path[256];
    snprintf(path, sizeof path, "%s/on/run.h5", dir);
    runlog rl;
    ck_assert_int_eq(runlog_open(&rl, path, &st), 0);
    runlog_table *e = runlog_table_find(&rl, "eval/test"), *o = runlog_table_find(&rl, "eval_on/sim-test");
    runlog_table *pe = runlog_table_find(&rl, "predictions/test");
    runlog_table *po = runlog_table_find(&rl, "predictions_on/sim-test");
    ck_assert(e && o && pe && po);
    ck_assert_int_eq(pe->nrows, po->nrows);
    ck_assert_int_eq(e->nrows, o->nrows);
    const int cc = runlog_col(pe, "count"), cs = runlog_col(pe, "sigma"), ci = runlog_col(pe, "index");
    for (size_t r = 0; r < pe->nrows; r++) {
        const double *a = pe->values + r * pe->ncols, *b = po->values + r * po->ncols;
        ck_assert(a[ci] == b[ci]);
        ck_assert_str_eq(pe->labels[r], po->labels[r]);
        ck_assert_msg(fabs(a[cc] - b[cc]) <= 1e-4 * (1 + fabs(a[cc])), "%g vs %g", a[cc], b[cc]);
        ck_assert_msg(fabs(a[cs] - b[cs]) <= 1e-4 * (1 + fabs(a[cs])), "%g vs %g", a[cs], b[cs]);
    }
    for (size_t r = 0; r < e->nrows; r++) {
        ck_assert_str_eq(e->labels[r], o->labels[r]);
        for (const char *const *k = (const char *const[]){"n", "mae", "base_mae", "coverage95", "bias", NULL}; *k; k++) {
            const double a = e->values[r * e->ncols + runlog_col(e, *k)],
                         b = o->values[r * o->ncols + runlog_col(o, *k)];
            ck_assert_msg(fabs(a - b) <= 1e-3 * (1 + fabs(a)), "%s %s: %g vs %g", e->labels[r], *k, a, b);
        }
    }
    /* the other set: w2 only (40 of its 80 images), every split */
    runlog_table *w2 = runlog_table_find(&rl, "eval_on/other-w2");
    ck_assert_ptr_nonnull(w2);
    ck_assert_str_eq(w2->labels[0], "overall");
    ck_assert(w2->values[runlog_col(w2, "n")] == 40);
    ck_assert(isfinite(w2->values[runlog_col(w2, "mae")]) && isfinite(w2->values[runlog_col(w2, "bias")]));
    const size_t n = pe->nrows;
    double *plain = malloc(sizeof(double) * n);
    for (size_t r = 0; r < n; r++) plain[r] = pe->values[r * pe->ncols + cc];
    runlog_free(&rl);

    /* evaluations never rewrite the run's config.ini: not one under other
     * settings, not one that fails on a checkpoint that does not fit */
    char ini[256];
    snprintf(ini, sizeof ini, "%s/on/config.ini", dir);
    char *ini0 = slurp(ini);
    cc_config cw = c;
    cw.fpn_width *= 2;
    devnull = fopen("/dev/null", "w");
    status_clear(&st);
    ck_assert_int_ne(evaluate_run(&cw, 2, NULL, NULL, NULL, devnull, &st), 0);
    ck_assert_msg(strstr(st.msg, "fpn_best.h5"), "%s", st.msg);
    fclose(devnull);
    char *ini1 = slurp(ini);
    ck_assert_str_eq(ini1, ini0);
    free(ini1);

    /* --tag: a flips evaluation kept beside the plain one; the plain tables
     * and the run's calibration attributes stay as they were */
    ck_assert_int_eq(runlog_open(&rl, path, &st), 0);
    char scale0[64];
    snprintf(scale0, sizeof scale0, "%s", runlog_attr_get(&rl, "counter.sigma_scale"));
    runlog_free(&rl);
    cc_config ct = c;
    ct.counter_tta = CFG_TTA_FLIPS;
    ct.counter_calibrate_count = 1;     /* --on must apply the count term too */
    devnull = fopen("/dev/null", "w");
    ck_assert_msg(evaluate_run(&ct, 2, NULL, NULL, "flips", devnull, &st) == 0, "%s", st.msg);
    ck_assert_msg(evaluate_on_run(&ct, data, 2, 0, NULL, NULL, "flips", devnull, &st) == 0, "%s",
                  st.msg);
    status_clear(&st);
    ck_assert_int_ne(evaluate_run(&ct, 2, NULL, NULL, "a/b", devnull, &st), 0);
    ck_assert_msg(strstr(st.msg, "--tag") && strstr(st.msg, "a/b"), "%s", st.msg);
    fclose(devnull);
    ck_assert_int_eq(runlog_open(&rl, path, &st), 0);
    ck_assert_str_eq(runlog_attr_get(&rl, "counter.sigma_scale"), scale0);
    ck_assert_str_eq(runlog_attr_get(&rl, "counter.sigma_scale_tta"), "none");
    ck_assert_ptr_nonnull(runlog_attr_get(&rl, "counter.sigma_scale.flips"));
    ck_assert_str_eq(runlog_attr_get(&rl, "counter.sigma_scale_tta.flips"), "flips");
    const double kflips = strtod(runlog_attr_get(&rl, "counter.sigma_scale.flips"), NULL),
                 kplain = strtod(scale0, NULL),
                 kcflips = strtod(runlog_attr_get(&rl, "counter.sigma_per_count.flips"), NULL),
                 kcplain = strtod(runlog_attr_get(&rl, "counter.sigma_per_count"), NULL);
    pe = runlog_table_find(&rl, "predictions/test");
    runlog_table *pt = runlog_table_find(&rl, "predictions/test.flips"),
                 *pot = runlog_table_find(&rl, "predictions_on/sim-test.flips");
    ck_assert(pe && pt && pot && runlog_table_find(&rl, "eval/test.flips") &&
              runlog_table_find(&rl, "calibration/test.flips") &&
              runlog_table_find(&rl, "eval_on/sim-test.flips"));
    ck_assert(pe->nrows == n && pt->nrows == n && pot->nrows == n);
    double moved_tag = 0;
    for (size_t r = 0; r < n; r++) {
        ck_assert(pe->values[r * pe->ncols + cc] == plain[r]);
        const double a = pt->values[r * pt->ncols + cc], b = pot->values[r * pot->ncols + cc];
        ck_assert_msg(fabs(a - b) <= 1e-4 * (1 + fabs(a)), "%g vs %g", a, b);
        /* --on with the tag applies the tagged evaluation's factor */
        const double sa = pt->values[r * pt->ncols + cs], sb = pot->values[r * pot->ncols + cs];
        ck_assert_msg(fabs(sa - sb) <= 1e-4 * (1 + fabs(sa)), "sigma %g vs %g", sa, sb);
        moved_tag = fmax(moved_tag, fabs(a - plain[r]));
    }
    ck_assert_msg(moved_tag > 1e-4, "tagged flips changed no count (largest change %g)", moved_tag);
    runlog_free(&rl);
    /* the models opened for a tag carry its factor; an unknown tag falls
     * back to the run's own */
    int h, w;
    ck_assert_int_eq(count_input_size(&ct, &h, &w, &st), 0);
    const char *tags[] = {"flips", "nosuch"};
    for (int i = 0; i < 2; i++) {
        count_model cm;
        ck_assert_msg(count_model_open(&cm, &ct, h, w, NULL, NULL, 0, tags[i], &st) == 0, "%s",
                      st.msg);
        ck_assert_str_eq(cm.sigma_from, i ? "counter.sigma_scale" : "counter.sigma_scale.flips");
        ck_assert(cm.calib.scale == (i ? kplain : kflips));
        ck_assert(cm.calib.per_count == (i ? kcplain : kcflips));
        count_model_close(&cm);
    }

    /* counter.tta = flips: evaluate (mask cache flipped) and evaluate --on
     * (count's path: FPN mask flipped) agree again, and the counts moved */
    c.counter_tta = CFG_TTA_FLIPS;
    devnull = fopen("/dev/null", "w");
    ck_assert_msg(evaluate_run(&c, 2, NULL, NULL, NULL, devnull, &st) == 0, "%s", st.msg);
    ck_assert_msg(evaluate_on_run(&c, data, 2, 0, NULL, NULL, NULL, devnull, &st) == 0, "%s", st.msg);
    fclose(devnull);
    ck_assert_int_eq(runlog_open(&rl, path, &st), 0);
    pe = runlog_table_find(&rl, "predictions/test");
    po = runlog_table_find(&rl, "predictions_on/sim-test");
    ck_assert(pe && po && pe->nrows == n && po->nrows == n);
    double moved = 0;
    for (size_t r = 0; r < n; r++) {
        const double *a = pe->values + r * pe->ncols, *b = po->values + r * po->ncols;
        ck_assert_msg(fabs(a[cc] - b[cc]) <= 1e-4 * (1 + fabs(a[cc])), "%g vs %g", a[cc], b[cc]);
        ck_assert_msg(fabs(a[cs] - b[cs]) <= 1e-4 * (1 + fabs(a[cs])), "%g vs %g", a[cs], b[cs]);
        moved = fmax(moved, fabs(a[cc] - plain[r]));
    }
    ck_assert_msg(moved > 1e-4, "flips changed no count (largest change %g)", moved);
    free(plain);
    runlog_free(&rl);

    ini1 = slurp(ini);
    ck_assert_msg(!strcmp(ini1, ini0), "evaluate (counter.tta = flips) rewrote %s", ini);
    free(ini1);
    free(ini0);

    /* counter.calibrate = coverage: the validation split itself is covered
     * to at least 95% (its own quantile), whatever the NLL factor gives */
    cc_config cq = c;
    cq.counter_calibrate = CFG_CALIBRATE_COVERAGE;
    devnull = fopen("/dev/null", "w");
    ck_assert_msg(evaluate_run(&cq, DATASET_VAL, NULL, NULL, "cov", devnull, &st) == 0, "%s",
                  st.msg);
    fclose(devnull);
    ck_assert_int_eq(runlog_open(&rl, path, &st), 0);
    runlog_table *ev = runlog_table_find(&rl, "eval/val.cov");
    ck_assert_ptr_nonnull(ev);
    ck_assert_str_eq(ev->labels[0], "overall");
    const double cov = ev->values[runlog_col(ev, "coverage95")];
    ck_assert_msg(cov >= 0.95, "validation coverage %g with calibrate = coverage", cov);
    /* ... and by the smallest such factor: one validation truth lies on
     * its interval's edge (the quantile's rank), which the NLL factor
     * would meet only by chance */
    runlog_table *pv = runlog_table_find(&rl, "predictions/val.cov");
    ck_assert_ptr_nonnull(pv);
    double edge = INFINITY;
    for (size_t r = 0; r < pv->nrows; r++) {
        const double *a = pv->values + r * pv->ncols;
        const double z = fabs(a[runlog_col(pv, "truth")] - a[cc]) / (1.959964 * a[cs]);
        edge = fmin(edge, fabs(z - 1));
    }
    ck_assert_msg(edge < 1e-4, "no validation truth on its interval's edge (closest %g)", edge);
    runlog_free(&rl);
}
END_TEST

START_TEST(test_sigma_scale)
{
    /* Residuals of exactly 2 sigma everywhere: the factor is 2; entries
     * without a sigma are skipped; none at all gives NaN. */
    const double truth[4] = {10, 20, 30, 40}, pred[4] = {12, 16, 30, 40};
    const double sigma[4] = {1, 2, NAN, 0};
    ck_assert_double_eq_tol(evaluate_sigma_scale(truth, pred, sigma, 4), 2.0, 1e-12);
    ck_assert(isnan(evaluate_sigma_scale(truth, pred, sigma + 2, 2)));
}
END_TEST

/* counter.calibrate = coverage: |z| = 1..19 (sigma 1): rank ceil(20 x 0.95)
 * = 19 of the 19 usable entries, so k = 19 / 1.959964; at level 0.5 the
 * rank is 10 (k = 10 / 0.674490).  The factor covers the share asked for
 * on its own data, entries without a sigma are skipped, none gives NaN. */
START_TEST(test_sigma_scale_coverage)
{
    double truth[21], pred[21], sigma[21];
    for (int i = 0; i < 19; i++) {
        truth[i] = 50;
        pred[i] = 50 + ((i & 1) ? -(i + 1) : (i + 1));
        sigma[i] = 1;
    }
    truth[19] = pred[19] = 3, sigma[19] = NAN;
    truth[20] = pred[20] = 3, sigma[20] = 0;
    ck_assert_double_eq_tol(evaluate_sigma_scale_coverage(truth, pred, sigma, 21, 0.95),
                            19 / 1.959964, 1e-5);
    ck_assert_double_eq_tol(evaluate_sigma_scale_coverage(truth, pred, sigma, 21, 0.5),
                            10 / 0.674490, 1e-4);
    ck_assert(isnan(evaluate_sigma_scale_coverage(truth, pred, sigma + 19, 2, 0.95)));
    /* 200 heavy-tailed residuals: the ML factor leaves fewer than 95% of
     * them covered, this one at least 95% */
    double t2[200], p2[200], s2[200];
    for (int i = 0; i < 200; i++) {
        const double u = (i + 0.5) / 200;
        t2[i] = 0, s2[i] = 1;
        p2[i] = (u < 0.5 ? -1 : 1) * pow(fabs(2 * u - 1), 3) * 10;
    }
    int cov_ml = 0, cov_q = 0;
    const double kml = evaluate_sigma_scale(t2, p2, s2, 200),
                 kq = evaluate_sigma_scale_coverage(t2, p2, s2, 200, 0.95);
    for (int i = 0; i < 200; i++) {
        cov_ml += fabs(p2[i]) <= 1.959964 * kml;
        cov_q += fabs(p2[i]) <= 1.959964 * kq;
    }
    ck_assert_msg(cov_ml < 190 && cov_q >= 190, "covered: ML %d, coverage %d of 200", cov_ml,
                  cov_q);
}
END_TEST

/* Normal deviates from a fixed LCG (Box-Muller): the fits below see the
 * same sample on every machine. */
static double lcg_normal(unsigned long long *st)
{
    double u[2];
    for (int j = 0; j < 2; j++) {
        *st = *st * 6364136223846793005ULL + 1442695040888963407ULL;
        u[j] = ((double)(*st >> 11) + 0.5) / 9007199254740992.0;
    }
    return sqrt(-2 * log(u[0])) * cos(6.283185307179586 * u[1]);
}

/* counter.calibrate_count: on residuals drawn with sd sqrt((2 s)^2 + (0.03
 * count)^2), the NLL fit finds scale 2 and per_count 0.03 (4000 draws:
 * the maximum-likelihood estimates' sampling error is ~2%, the
 * tolerances 6% and 12%); the one-factor fit it replaces is worse there
 * (higher NLL, coverage off at one end of the counts); without a count
 * trend the count term moves the mean sigma by under 2%; coverage mode covers 95% of its
 * own data; no usable entry leaves c alone. */
START_TEST(test_calib_fit_count)
{
    enum { N = 4000 };
    static double truth[N], pred[N], sig[N], t0[N];
    unsigned long long rs = 12345;
    for (int i = 0; i < N; i++) {
        pred[i] = 1 + (i * 37) % 100;
        sig[i] = 0.2 + 0.8 * ((i * 53) % 97) / 96.0;
        const double sd = hypot(2 * sig[i], 0.03 * pred[i]), z = lcg_normal(&rs);
        truth[i] = pred[i] + sd * z;
        t0[i] = pred[i] + 1.5 * sig[i] * z;
    }
    count_calib c = {-1, -1};
    ck_assert_int_eq(evaluate_calib_fit(&c, 0, 1, truth, pred, sig, N), 0);
    ck_assert_msg(fabs(c.scale - 2) < 0.12 && fabs(c.per_count - 0.03) < 0.0036,
                  "scale %g per_count %g", c.scale, c.per_count);
    /* the NLL of the fit beats the one-factor fit's; at counts 81-100 the
     * one factor covers too little and the fit about 95% */
    count_calib one;
    ck_assert_int_eq(evaluate_calib_fit(&one, 0, 0, truth, pred, sig, N), 0);
    ck_assert(one.per_count == 0 &&
              one.scale == evaluate_sigma_scale(truth, pred, sig, N));
    double nll_c = 0, nll_1 = 0;
    int hi = 0, cov_c = 0, cov_1 = 0;
    for (int i = 0; i < N; i++) {
        const double sc = count_calib_sigma(&c, pred[i], sig[i]),
                     s1 = count_calib_sigma(&one, pred[i], sig[i]), e = truth[i] - pred[i];
        nll_c += log(sc * sc) + e * e / (sc * sc);
        nll_1 += log(s1 * s1) + e * e / (s1 * s1);
        if (pred[i] > 80) {
            hi++;
            cov_c += fabs(e) <= 1.959964 * sc;
            cov_1 += fabs(e) <= 1.959964 * s1;
        }
    }
    ck_assert_msg(nll_c < nll_1 - 0.05 * N, "NLL %g vs one factor %g", nll_c / N, nll_1 / N);
    ck_assert_msg(cov_1 < 0.92 * hi && fabs(cov_c - 0.95 * hi) < 0.03 * hi,
                  "coverage at 81-100: fit %d, one factor %d of %d", cov_c, cov_1, hi);
    /* no count trend: the count term adds under 5% to the mean sigma */
    ck_assert_int_eq(evaluate_calib_fit(&c, 0, 1, t0, pred, sig, N), 0);
    double with = 0, without = 0;
    for (int i = 0; i < N; i++) {
        with += count_calib_sigma(&c, pred[i], sig[i]);
        without += c.scale * sig[i];
    }
    ck_assert_msg(fabs(c.scale - 1.5) < 0.09 && with < 1.02 * without,
                  "scale %g per_count %g: mean sigma %g, without the count term %g", c.scale,
                  c.per_count, with / N, without / N);
    /* coverage = 1: the shape of the NLL fit, scaled to 95% of its data */
    ck_assert_int_eq(evaluate_calib_fit(&c, 1, 1, truth, pred, sig, N), 0);
    int cov = 0;
    for (int i = 0; i < N; i++)
        cov += fabs(truth[i] - pred[i]) <=
               1.959964 * count_calib_sigma(&c, pred[i], sig[i]) * (1 + 1e-12);
    ck_assert_msg(cov >= 0.95 * N && cov <= 0.95 * N + 2, "covered %d of %d", cov, N);
    ck_assert_msg(fabs(c.per_count / c.scale - 0.015) < 0.002, "ratio %g", c.per_count / c.scale);
    /* nothing usable */
    const double nan3[3] = {NAN, 0, -1};
    c = (count_calib){7, 8};
    ck_assert_int_eq(evaluate_calib_fit(&c, 0, 1, truth, pred, nan3, 3), -1);
    ck_assert(c.scale == 7 && c.per_count == 8);
    /* count_calib_sigma: the identity, and NaN stays NaN */
    const count_calib id = COUNT_CALIB_IDENTITY;
    ck_assert(count_calib_sigma(&id, 50, 0.7) == 0.7);
    ck_assert(isnan(count_calib_sigma(&c, 50, NAN)));
}
END_TEST

/* counter.calibrate_on: the calibration is fitted on every image of that
 * set (exactly the fit of evaluate --on's raw sigmas there), recorded as
 * counter.sigma_fit_on, and sets the run cannot read that way are refused
 * by name. */
START_TEST(test_calibrate_on)
{
    cc_config c;
    FILE *devnull = fopen("/dev/null", "w");
    train_tiny_evaluated(&c, "cal", 1, devnull);
    cc_status st;
    status_clear(&st);
    char cal[160], path[256], set[200];
    snprintf(cal, sizeof cal, "%s/calset.h5", dir);
    make_data_seeded(cal, 64, 64, 1, 4, 77);   /* other scenes than the run's */
    snprintf(path, sizeof path, "%s/cal/run.h5", dir);
    runlog rl;
    ck_assert_int_eq(runlog_open(&rl, path, &st), 0);
    ck_assert_str_eq(runlog_attr_get(&rl, "counter.sigma_fit_on"), "val");
    runlog_free(&rl);
    /* the raw predictions on the calibration set, then the fit on them */
    ck_assert_msg(evaluate_on_run(&c, cal, -1, 0, NULL, NULL, NULL, devnull, &st) == 0, "%s",
                  st.msg);
    snprintf(set, sizeof set, "counter.calibrate_on=%s", cal);
    ck_assert_int_eq(config_set(&c, set, &st), 0);
    ck_assert_msg(evaluate_run(&c, 2, NULL, NULL, NULL, devnull, &st) == 0, "%s", st.msg);
    ck_assert_int_eq(runlog_open(&rl, path, &st), 0);
    ck_assert_str_eq(runlog_attr_get(&rl, "counter.sigma_fit_on"), cal);
    runlog_table *po = runlog_table_find(&rl, "predictions_on/calset");
    ck_assert_ptr_nonnull(po);
    const int64_t n = (int64_t)po->nrows;
    ck_assert_int_eq(n, 4 * 2 * 4);
    double *tr = malloc(sizeof(double) * (size_t)n * 3), *pr = tr + n, *sr = tr + 2 * n;
    ck_assert_ptr_nonnull(tr);
    for (int64_t i = 0; i < n; i++) {
        const double *row = po->values + i * po->ncols;
        tr[i] = row[runlog_col(po, "truth")];
        pr[i] = row[runlog_col(po, "count")];
        sr[i] = row[runlog_col(po, "sigma_raw")];
    }
    count_calib want;
    ck_assert_int_eq(evaluate_calib_fit(&want, 0, 0, tr, pr, sr, n), 0);
    const double got = strtod(runlog_attr_get(&rl, "counter.sigma_scale"), NULL);
    ck_assert_msg(fabs(got - want.scale) <= 1e-7 * want.scale, "scale %.9g, want %.9g", got,
                  want.scale);
    free(tr);
    runlog_free(&rl);
    /* with calibrate = none there is nothing to fit: an error, not silence */
    ck_assert_int_eq(config_set(&c, "counter.calibrate=none", &st), 0);
    ck_assert_int_ne(evaluate_run(&c, 2, NULL, NULL, NULL, devnull, &st), 0);
    ck_assert_msg(strstr(st.msg, "calibrate = none") && strstr(st.msg, cal), "%s", st.msg);
    status_clear(&st);
    ck_assert_int_eq(config_set(&c, "counter.calibrate=val", &st), 0);
    /* refused: the run's own data set, another size, another stain, no file */
    const struct { const char *file; int h, stains; const char *says; } bad[] = {
        {data, 0, 0, "own data set"}, {"big.h5", 96, 1, "96x96"},
        {"w2.h5", 64, 2, "stain w2"},  {"none.h5", 0, 0, "none.h5"}};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        char f[200];
        if (bad[k].file == data) {
            snprintf(f, sizeof f, "%s", data);
        } else {
            snprintf(f, sizeof f, "%s/%s", dir, bad[k].file);
            if (bad[k].h) make_data_at(f, bad[k].h, bad[k].h, bad[k].stains);
        }
        snprintf(set, sizeof set, "counter.calibrate_on=%s", f);
        status_clear(&st);
        ck_assert_int_eq(config_set(&c, set, &st), 0);
        ck_assert_int_ne(evaluate_run(&c, 2, NULL, NULL, NULL, devnull, &st), 0);
        ck_assert_msg(strstr(st.msg, bad[k].says) && strstr(st.msg, bad[k].file == data ? data : f),
                      "%s", st.msg);
    }
    fclose(devnull);
}
END_TEST

void train_add_eval_tests(TCase *tc)
{
    tcase_add_test(tc, test_counter_and_evaluate);
    tcase_add_test(tc, test_evaluate_on_other_data);
    tcase_add_test(tc, test_sigma_scale);
    tcase_add_test(tc, test_sigma_scale_coverage);
    tcase_add_test(tc, test_calib_fit_count);
    tcase_add_test(tc, test_calibrate_on);
}
