/* test_metrics.c - regression and calibration metrics. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autodiff/rng.h"
#include "src/infer/localise.h"
#include "src/run/metrics.h"
#include "tests/testmain.h"

START_TEST(test_hand_values)
{
    double t[4] = {1, 2, 3, 4}, p[4] = {1.5, 2, 2, 5}, s[4] = {1, 0.1, 0.4, 0.5};
    metrics_summary m = metrics_compute(t, p, s, NULL, 4);
    ck_assert_uint_eq(m.n, 4);
    ck_assert_double_eq_tol(m.mae, (0.5 + 0 + 1 + 1) / 4.0, 1e-12);
    ck_assert_double_eq_tol(m.rmse, sqrt((0.25 + 0 + 1 + 1) / 4.0), 1e-12);
    ck_assert_double_eq_tol(m.r2, 1 - 2.25 / 5.0, 1e-12);
    ck_assert_double_eq_tol(m.max_err, 1, 1e-12);
    /* |e| <= 1.96 sigma: 0.5<=1.96 yes, 0<=0.196 yes, 1<=0.784 no, 1<=0.98 no */
    ck_assert_double_eq_tol(m.coverage95, 0.5, 1e-12);
    ck_assert_double_eq_tol(m.width95, 2 * 1.959963984540054 * 2.0 / 4, 1e-9);
    unsigned char mask[4] = {1, 1, 0, 0};
    m = metrics_compute(t, p, NULL, mask, 4);
    ck_assert_uint_eq(m.n, 2);
    ck_assert_double_eq_tol(m.mae, 0.25, 1e-12);
    ck_assert(isnan(m.coverage95));
}
END_TEST

/* Count-balanced metrics by hand: three images of count 10 (errors 0, 0,
 * 3), one of count 20 (error -1).  Plain MAE 1, balanced (1 + 1) / 2. */
START_TEST(test_balanced_hand_values)
{
    double t[5] = {10, 20, 10, 10, 99}, p[5] = {10, 19, 13, 10, 0}, s[5] = {1, 1, 1, 1, 1};
    unsigned char mask[5] = {1, 1, 1, 1, 0};
    metrics_summary b;
    ck_assert_int_eq(metrics_compute_balanced(t, p, s, mask, 5, &b), 0);
    ck_assert_uint_eq(b.n, 4);
    ck_assert_double_eq_tol(b.mae, (3.0 / 3 + 1.0) / 2, 1e-12);
    ck_assert_double_eq_tol(b.bias, (3.0 / 3 - 1.0) / 2, 1e-12);
    ck_assert_double_eq_tol(b.rmse, sqrt((9.0 / 3 + 1.0) / 2), 1e-12);
    /* the two counts' variance: 25 */
    ck_assert_double_eq_tol(b.r2, 1 - ((9.0 / 3 + 1.0) / 2) / 25.0, 1e-12);
    ck_assert_double_eq_tol(b.max_err, 3, 1e-12);
    /* covered: count 10 two of three, count 20 one of one */
    ck_assert_double_eq_tol(b.coverage95, (2.0 / 3 + 1.0) / 2, 1e-12);
    metrics_summary m = metrics_compute(t, p, s, mask, 5);
    ck_assert_double_eq_tol(m.mae, 1.0, 1e-12);
    /* equal numbers per count: the plain metrics */
    double t2[4] = {1, 1, 5, 5}, p2[4] = {2, 1, 3, 5.5};
    ck_assert_int_eq(metrics_compute_balanced(t2, p2, NULL, NULL, 4, &b), 0);
    m = metrics_compute(t2, p2, NULL, NULL, 4);
    ck_assert_double_eq_tol(b.mae, m.mae, 1e-12);
    ck_assert_double_eq_tol(b.rmse, m.rmse, 1e-12);
    ck_assert_double_eq_tol(b.r2, m.r2, 1e-12);
    ck_assert(isnan(b.coverage95));
    /* nothing selected */
    unsigned char none[4] = {0, 0, 0, 0};
    ck_assert_int_eq(metrics_compute_balanced(t2, p2, NULL, none, 4, &b), 0);
    ck_assert_uint_eq(b.n, 0);
    ck_assert(isnan(b.mae));
}
END_TEST

START_TEST(test_calibrated_gaussian_covers_nominal)
{
    enum { N = 20000 };
    static double t[N], p[N], s[N];
    cc_rng r;
    rng_seed(&r, 3, 0);
    for (int i = 0; i < N; i++) {
        s[i] = 0.5 + rng_uniform(&r);
        t[i] = 50;
        p[i] = 50 + s[i] * rng_normal(&r);
    }
    double levels[3] = {0.5, 0.8, 0.95}, obs[3];
    metrics_calibration(t, p, s, N, levels, 3, obs);
    for (int k = 0; k < 3; k++) ck_assert_double_eq_tol(obs[k], levels[k], 0.015);
    ck_assert_double_eq_tol(metrics_normal_quantile_two_sided(0.95), 1.959964, 1e-5);
    /* halving the variance (the `paper` loss's optimum) under-covers */
    for (int i = 0; i < N; i++) s[i] /= sqrt(2.0);
    metrics_summary m = metrics_compute(t, p, s, NULL, N);
    ck_assert_msg(m.coverage95 < 0.88 && m.coverage95 > 0.80, "coverage %g", m.coverage95);
}
END_TEST

START_TEST(test_fit_line)
{
    double x[5] = {0, 1, 2, 3, 4}, y[5] = {1, 3, 5, 7, 9}, a, b;
    ck_assert_int_eq(metrics_fit_line(x, y, 5, &a, &b), 0);
    ck_assert_double_eq_tol(a, 1, 1e-12);
    ck_assert_double_eq_tol(b, 2, 1e-12);
    double c[3] = {1, 1, 1};
    ck_assert_int_eq(metrics_fit_line(c, y, 3, &a, &b), -1);
}
END_TEST

/* GAME by hand.  An 8x8 map with all of each cell's mass on the position
 * that holds its centre: 0 at every level (each position lies inside one
 * cell of every grid up to 8x8).  The same mass one position to the right:
 * still 0 where the two positions share a cell, 2 per cell moved across a
 * grid line.  A position straddling a grid line shares its value by area. */
START_TEST(test_localise_game)
{
    enum { GH = 8, GW = 8 };
    float map[GH * GW] = {0};
    /* centres of positions (1, 2) and (6, 5): x = (q + 0.5) / 8, y = (r + 0.5) / 8 */
    const float xy[4] = {2.5f / 8, 1.5f / 8, 5.5f / 8, 6.5f / 8};
    map[1 * GW + 2] = 1, map[6 * GW + 5] = 1;
    double g[LOCALISE_LEVELS];
    localise_game(map, GH, GW, xy, 2, g);
    for (int L = 0; L < LOCALISE_LEVELS; L++) ck_assert_double_eq_tol(g[L], 0, 1e-12);
    /* shifted right: (1,2)->(1,3) stays in its 4x4 cell (columns [2,4));
     * (6,5)->(6,6) crosses the 4x4 grid's line at column 6 */
    memset(map, 0, sizeof map);
    map[1 * GW + 3] = 1, map[6 * GW + 6] = 1;
    localise_game(map, GH, GW, xy, 2, g);
    ck_assert_double_eq_tol(g[0], 0, 1e-12);
    ck_assert_double_eq_tol(g[1], 0, 1e-12);
    ck_assert_double_eq_tol(g[2], 2, 1e-12);
    ck_assert_double_eq_tol(g[3], 4, 1e-12);
    /* a miscount: 3 where 1 cell is, 2 at level 0 */
    map[1 * GW + 3] = 3, map[6 * GW + 6] = 0;
    localise_game(map, GH, GW, xy, 1, g);
    ck_assert_double_eq_tol(g[0], 2, 1e-12);
    /* a 2x3 map with 1 in the middle of its top row, one centre at (0.25,
     * 0.25): the 2x2 grid's vertical line halves that position, |0.5 - 1| +
     * |0.5 - 0| = 1 */
    const float line[6] = {0, 1, 0, 0, 0, 0}, c1[2] = {0.25f, 0.25f};
    localise_game(line, 2, 3, c1, 1, g);
    ck_assert_double_eq_tol(g[0], 0, 1e-12);
    ck_assert_double_eq_tol(g[1], 1, 1e-12);
    /* a centre outside the image counts in the nearest cell: the top right
     * one of the 2x2 grid, where this 2x2 map has its 1 */
    const float out[2] = {1.2f, -0.1f}, corner[4] = {0, 1, 0, 0};
    localise_game(corner, 2, 2, out, 1, g);
    ck_assert_double_eq_tol(g[1], 0, 1e-12);
    /* (the 4x4 grid spreads that position over 4 cells, one with the centre) */
    ck_assert_double_eq_tol(g[2], 0.75 + 3 * 0.25, 1e-12);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("metrics");
    tcase_add_test(tc, test_hand_values);
    tcase_add_test(tc, test_balanced_hand_values);
    tcase_add_test(tc, test_calibrated_gaussian_covers_nominal);
    tcase_add_test(tc, test_fit_line);
    tcase_add_test(tc, test_localise_game);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
