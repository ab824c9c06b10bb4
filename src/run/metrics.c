/* metrics.c - see metrics.h. */
#include "src/run/metrics.h"

#include <math.h>
#include <stdlib.h>

metrics_summary metrics_compute(const double *truth, const double *pred, const double *sigma,
                                const unsigned char *mask, size_t n)
{
    metrics_summary m = {0};
    double sum_t = 0;
    for (size_t i = 0; i < n; i++)
        if (!mask || mask[i]) {
            m.n++;
            sum_t += truth[i];
        }
    if (!m.n) {
        m.mae = m.rmse = m.r2 = m.max_err = m.coverage95 = m.width95 = m.bias = NAN;
        return m;
    }
    const double mean_t = sum_t / (double)m.n, z = 1.959963984540054;
    double sae = 0, sse = 0, sst = 0, bias = 0, width = 0;
    size_t covered = 0, with_sigma = 0;
    for (size_t i = 0; i < n; i++) {
        if (mask && !mask[i]) continue;
        double e = pred[i] - truth[i];
        sae += fabs(e);
        sse += e * e;
        bias += e;
        sst += (truth[i] - mean_t) * (truth[i] - mean_t);
        if (fabs(e) > m.max_err) m.max_err = fabs(e);
        if (sigma && isfinite(sigma[i])) {
            with_sigma++;
            covered += fabs(e) <= z * sigma[i];
            width += 2 * z * sigma[i];
        }
    }
    m.mae = sae / (double)m.n;
    m.rmse = sqrt(sse / (double)m.n);
    m.bias = bias / (double)m.n;
    m.r2 = sst > 0 ? 1 - sse / sst : NAN;
    m.coverage95 = with_sigma ? (double)covered / (double)with_sigma : NAN;
    m.width95 = with_sigma ? width / (double)with_sigma : NAN;
    return m;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int metrics_balance_weights(const double *truth, const unsigned char *mask, size_t n, double *w)
{
    double *uniq = malloc((n ? n : 1) * sizeof *uniq);
    size_t *per = calloc(n ? n : 1, sizeof *per), *idx = malloc((n ? n : 1) * sizeof *idx);
    if (!uniq || !per || !idx) {
        free(uniq);
        free(per);
        free(idx);
        return -1;
    }
    size_t m = 0, k = 0;
    for (size_t i = 0; i < n; i++)
        if (!mask || mask[i]) uniq[m++] = truth[i];
    qsort(uniq, m, sizeof *uniq, cmp_double);
    for (size_t i = 0; i < m; i++)
        if (k == 0 || uniq[i] != uniq[k - 1]) uniq[k++] = uniq[i];
    for (size_t i = 0; i < n; i++)
        if (!mask || mask[i]) {
            idx[i] = (size_t)((const double *)bsearch(&truth[i], uniq, k, sizeof *uniq,
                                                      cmp_double) - uniq);
            per[idx[i]]++;
        }
    for (size_t i = 0; i < n; i++)
        w[i] = mask && !mask[i] ? 0 : 1.0 / ((double)k * (double)per[idx[i]]);
    free(uniq);
    free(per);
    free(idx);
    return 0;
}

int metrics_compute_balanced(const double *truth, const double *pred, const double *sigma,
                             const unsigned char *mask, size_t n, metrics_summary *out)
{
    double *wt = malloc((n ? n : 1) * sizeof *wt);
    if (!wt || metrics_balance_weights(truth, mask, n, wt)) {
        free(wt);
        return -1;
    }
    metrics_summary s = metrics_compute(truth, pred, sigma, mask, n);   /* n, NaNs */
    if (s.n) {
        const double z = 1.959963984540054;
        double sae = 0, sse = 0, bias = 0, cov = 0, width = 0, wsig = 0, mean_t = 0, sst = 0;
        /* the counts' mean and variance, each count once: the weights of
         * one count's images add up to 1/K */
        for (size_t i = 0; i < n; i++)
            if (wt[i] > 0) mean_t += wt[i] * truth[i];
        for (size_t i = 0; i < n; i++)
            if (wt[i] > 0) sst += wt[i] * (truth[i] - mean_t) * (truth[i] - mean_t);
        for (size_t i = 0; i < n; i++) {
            if (mask && !mask[i]) continue;
            const double w = wt[i], e = pred[i] - truth[i];
            sae += w * fabs(e);
            sse += w * e * e;
            bias += w * e;
            if (sigma && isfinite(sigma[i])) {
                wsig += w;
                cov += w * (fabs(e) <= z * sigma[i]);
                width += w * 2 * z * sigma[i];
            }
        }
        s.mae = sae;
        s.rmse = sqrt(sse);
        s.bias = bias;
        s.r2 = sst > 0 ? 1 - sse / sst : NAN;
        s.coverage95 = wsig > 0 ? cov / wsig : NAN;
        s.width95 = wsig > 0 ? width / wsig : NAN;
    }
    free(wt);
    *out = s;
    return 0;
}

double metrics_normal_quantile_two_sided(double level)
{
    /* Solve erf(z/sqrt 2) = level by bisection: robust and plenty fast for
     * a handful of levels. */
    double lo = 0, hi = 40;
    for (int it = 0; it < 200; it++) {
        double mid = 0.5 * (lo + hi);
        if (erf(mid / sqrt(2.0)) < level)
            lo = mid;
        else
            hi = mid;
    }
    return 0.5 * (lo + hi);
}

void metrics_calibration(const double *truth, const double *pred, const double *sigma, size_t n,
                         const double *levels, size_t nl, double *observed)
{
    for (size_t k = 0; k < nl; k++) {
        double z = metrics_normal_quantile_two_sided(levels[k]);
        size_t in = 0, tot = 0;
        for (size_t i = 0; i < n; i++) {
            if (!isfinite(sigma[i])) continue;
            tot++;
            in += fabs(pred[i] - truth[i]) <= z * sigma[i];
        }
        observed[k] = tot ? (double)in / (double)tot : NAN;
    }
}

int metrics_fit_line(const double *x, const double *y, size_t n, double *a, double *b)
{
    double mx = 0, my = 0;
    for (size_t i = 0; i < n; i++) {
        mx += x[i];
        my += y[i];
    }
    if (!n) return -1;
    mx /= (double)n;
    my /= (double)n;
    double sxx = 0, sxy = 0;
    for (size_t i = 0; i < n; i++) {
        sxx += (x[i] - mx) * (x[i] - mx);
        sxy += (x[i] - mx) * (y[i] - my);
    }
    if (sxx <= 0) return -1;
    *b = sxy / sxx;
    *a = my - *b * mx;
    return 0;
}
