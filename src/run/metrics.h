/* metrics.h - regression metrics for counts with uncertainty.
 *
 * Predictions carry a mean and a standard deviation sigma (from the
 * log-variance head: sigma = exp(s/2)); the reported interval is
 * mean +- z*sigma with z = 1.96 for 95% (SPEC).  Models without uncertainty
 * (mse loss) pass sigma = NaN: coverage and width are then NaN.
 */
#ifndef CC_METRICS_H
#define CC_METRICS_H

#include <stddef.h>

typedef struct metrics_summary {
    size_t n;
    double mae, rmse, r2, max_err;
    double coverage95;          /* fraction of truths inside mean +- 1.96 sigma */
    double width95;             /* mean interval width 2 * 1.96 * sigma */
    double bias;                /* mean(pred - truth) */
} metrics_summary;

/* Metrics over the n entries with mask[i] != 0 (mask NULL = all).  r2 is
 * 1 - SSE/SST (NaN when the truths are constant). */
metrics_summary metrics_compute(const double *truth, const double *pred, const double *sigma,
                                const unsigned char *mask, size_t n);

/* The same metrics with every distinct truth (count) weighted equally:
 * image i weighs 1 / (K n_c), K distinct truths among the selected
 * entries, n_c of them with i's truth.  mae, bias, rmse^2, coverage95 and
 * width95 are then the means over counts of each count's own figure, r2 is
 * 1 - that mean squared error / the variance of the K counts, max_err and
 * n are unweighted.  A split drawn by scene at random can hold few scenes
 * of the counts where the error is largest; this is the figure a set with
 * every count equally represented would give.  Returns 0, or -1 (out
 * untouched) when out of memory. */
int metrics_compute_balanced(const double *truth, const double *pred, const double *sigma,
                             const unsigned char *mask, size_t n, metrics_summary *out);

/* The weights behind metrics_compute_balanced: w[i] = 1 / (K n_c) for the
 * entries mask selects (all when mask is NULL), 0 for the others, so that
 * sum_i w[i] x[i] is the mean over the K distinct truths of each truth's
 * mean x.  w: n doubles, caller's.  Returns 0, or -1 when out of memory. */
int metrics_balance_weights(const double *truth, const unsigned char *mask, size_t n, double *w);

/* Observed coverage of central Gaussian intervals at nominal levels
 * levels[0..nl) (e.g. 0.1 .. 0.99) -> observed[0..nl). */
void metrics_calibration(const double *truth, const double *pred, const double *sigma, size_t n,
                         const double *levels, size_t nl, double *observed);

/* z such that P(|N(0,1)| <= z) = level (0 < level < 1). */
double metrics_normal_quantile_two_sided(double level);

/* Least-squares line y = a + b x over n points.  Returns 0, or -1 when x is
 * constant. */
int metrics_fit_line(const double *x, const double *y, size_t n, double *a, double *b);

#endif
