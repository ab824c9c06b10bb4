/* sim_shape.c - random cell contours and their rasterisation (see simulate.h).
 *
 * Contour recipe from docs/DATA.md: 11 points at t_k = 2*pi*k/10; the 11th
 * (t = 2*pi) is the first one again, so the curve is a *periodic* cubic
 * spline through 10 random knots.  The spline is sampled into a polygon
 * once; every consumer (mask, coverage, overlap, tests) uses that polygon,
 * so the mask and the rendered object always describe the same shape.
 */
#include "src/sim/sim_shape.h"

#include <assert.h>
#include <math.h>
#include <string.h>

/* Solve the cyclic system M[i-1] + 4 M[i] + M[i+1] = rhs[i] (i mod n) for
 * the second derivatives of a uniform periodic cubic spline.  n is 10: a
 * dense elimination is simpler than Sherman-Morrison and just as fast.
 * The matrix is strictly diagonally dominant, so no pivoting is needed. */
static void cyclic_solve(int n, const double *rhs_x, const double *rhs_y,
                         double *mx, double *my)
{
    double a[SIM_KNOTS][SIM_KNOTS + 2];
    assert(n == SIM_KNOTS);
    memset(a, 0, sizeof a);
    for (int i = 0; i < n; i++) {
        a[i][i] = 4.0;
        a[i][(i + 1) % n] += 1.0;
        a[i][(i + n - 1) % n] += 1.0;
        a[i][n] = rhs_x[i];
        a[i][n + 1] = rhs_y[i];
    }
    for (int c = 0; c < n; c++) {
        for (int r = c + 1; r < n; r++) {
            double f = a[r][c] / a[c][c];
            if (f == 0.0) continue;
            for (int k = c; k < n + 2; k++) a[r][k] -= f * a[c][k];
        }
    }
    for (int r = n - 1; r >= 0; r--) {
        double sx = a[r][n], sy = a[r][n + 1];
        for (int k = r + 1; k < n; k++) {
            sx -= a[r][k] * mx[k];
            sy -= a[r][k] * my[k];
        }
        mx[r] = sx / a[r][r];
        my[r] = sy / a[r][r];
    }
}

void sim_shape_make(cc_rng *r, double a, double b, double radius,
                    double cx, double cy, sim_poly *out)
{
    const int n = SIM_KNOTS;
    double px[SIM_KNOTS], py[SIM_KNOTS], rx[SIM_KNOTS], ry[SIM_KNOTS];
    double mx[SIM_KNOTS], my[SIM_KNOTS];
    for (int k = 0; k < n; k++) {
        double t = 2.0 * M_PI * k / n;
        /* Fixed draw order (x shift, x angle, y shift, y angle) keeps the
         * stream position a pure function of the knot count. */
        double dx = a * rng_range(r, -1.0, 1.0);
        double tx = t + b * rng_range(r, -1.0, 1.0);
        double dy = a * rng_range(r, -1.0, 1.0);
        double ty = t + b * rng_range(r, -1.0, 1.0);
        px[k] = dx + cos(tx);
        py[k] = dy + sin(ty);
    }
    for (int k = 0; k < n; k++) {
        int km = (k + n - 1) % n, kp = (k + 1) % n;
        rx[k] = 6.0 * (px[kp] - 2.0 * px[k] + px[km]);
        ry[k] = 6.0 * (py[kp] - 2.0 * py[k] + py[km]);
    }
    cyclic_solve(n, rx, ry, mx, my);

    out->xmin = out->ymin = INFINITY;
    out->xmax = out->ymax = -INFINITY;
    int v = 0;
    for (int k = 0; k < n; k++) {
        int kp = (k + 1) % n;
        for (int s = 0; s < SIM_SEG; s++, v++) {
            double u = (double)s / SIM_SEG, w = 1.0 - u;
            double cu = (u * u * u - u) / 6.0, cw = (w * w * w - w) / 6.0;
            double x = w * px[k] + u * px[kp] + cw * mx[k] + cu * mx[kp];
            double y = w * py[k] + u * py[kp] + cw * my[k] + cu * my[kp];
            out->x[v] = cx + radius * x;
            out->y[v] = cy + radius * y;
            if (out->x[v] < out->xmin) out->xmin = out->x[v];
            if (out->x[v] > out->xmax) out->xmax = out->x[v];
            if (out->y[v] < out->ymin) out->ymin = out->y[v];
            if (out->y[v] > out->ymax) out->ymax = out->y[v];
        }
    }
}

/* Sorted x positions where the horizontal line y = ys crosses the polygon,
 * half-open rule (an edge counts when exactly one end is <= ys), so a
 * vertex on the line is counted once.  Returns the (even) number. */
static int row_crossings(const sim_poly *p, double ys, double *xs)
{
    int n = 0;
    for (int i = 0, j = SIM_POLY_N - 1; i < SIM_POLY_N; j = i++) {
        double y0 = p->y[j], y1 = p->y[i];
        if ((y0 <= ys) == (y1 <= ys)) continue;
        double x = p->x[j] + (ys - y0) * (p->x[i] - p->x[j]) / (y1 - y0);
        int k = n++;
        while (k > 0 && xs[k - 1] > x) {
            xs[k] = xs[k - 1];
            k--;
        }
        xs[k] = x;
    }
    return n;
}

int sim_poly_contains(const sim_poly *p, double x, double y)
{
    double xs[SIM_POLY_N];
    int n = row_crossings(p, y, xs), in = 0;
    for (int k = 0; k < n; k++)
        if (xs[k] > x) in ^= 1;
    return in;
}

/* Pixel rows whose centres can fall inside p, clipped to [0, h). */
static void row_range(const sim_poly *p, int h, int *j0, int *j1)
{
    double lo = floor(p->ymin - 0.5), hi = ceil(p->ymax);
    *j0 = lo < 0 ? 0 : (lo > h ? h : (int)lo);
    *j1 = hi < 0 ? 0 : (hi > h ? h : (int)hi);
}

/* Pixel columns [i0, i1) whose centres lie in [c0, c1), clipped to w. */
static void span_cols(double c0, double c1, int w, int *i0, int *i1)
{
    double a = ceil(c0 - 0.5), b = ceil(c1 - 0.5);
    *i0 = a < 0 ? 0 : (a > w ? w : (int)a);
    *i1 = b < 0 ? 0 : (b > w ? w : (int)b);
}

long sim_poly_mask(const sim_poly *p, uint8_t *mask, int w, int h, uint8_t val)
{
    double xs[SIM_POLY_N];
    long total = 0;
    int j0, j1;
    row_range(p, h, &j0, &j1);
    for (int j = j0; j < j1; j++) {
        int n = row_crossings(p, j + 0.5, xs);
        for (int k = 0; k + 1 < n; k += 2) {
            int i0, i1;
            span_cols(xs[k], xs[k + 1], w, &i0, &i1);
            if (i1 > i0) {
                memset(mask + (size_t)j * w + i0, val, (size_t)(i1 - i0));
                total += i1 - i0;
            }
        }
    }
    return total;
}

void sim_poly_count(const sim_poly *p, const uint8_t *occ, int w, int h,
                    long *inside, long *occupied)
{
    double xs[SIM_POLY_N];
    long in = 0, oc = 0;
    int j0, j1;
    row_range(p, h, &j0, &j1);
    for (int j = j0; j < j1; j++) {
        int n = row_crossings(p, j + 0.5, xs);
        for (int k = 0; k + 1 < n; k += 2) {
            int i0, i1;
            span_cols(xs[k], xs[k + 1], w, &i0, &i1);
            if (i1 <= i0) continue;
            in += i1 - i0;
            if (occ) {
                const uint8_t *row = occ + (size_t)j * w;
                for (int i = i0; i < i1; i++) oc += row[i] != 0;
            }
        }
    }
    *inside = in;
    if (occupied) *occupied = oc;
}

#define SIM_SUBROWS 8

void sim_poly_cover(const sim_poly *p, float *cov, int bx, int by, int bw, int bh)
{
    double xs[SIM_POLY_N];
    const double wsub = 1.0 / SIM_SUBROWS;
    /* The window may reach outside the image (defocus spills in from cells
     * cut by the border), so rows are clipped to the window only. */
    double lo = floor(p->ymin), hi = ceil(p->ymax);
    int j0 = lo < by ? by : (lo > by + bh ? by + bh : (int)lo);
    int j1 = hi < by ? by : (hi > by + bh ? by + bh : (int)hi);
    for (int j = j0; j < j1; j++) {
        float *row = cov + (size_t)(j - by) * bw;
        for (int q = 0; q < SIM_SUBROWS; q++) {
            int n = row_crossings(p, j + (q + 0.5) * wsub, xs);
            for (int k = 0; k + 1 < n; k += 2) {
                /* span in window coordinates, clipped */
                double c0 = xs[k] - bx, c1 = xs[k + 1] - bx;
                if (c0 < 0) c0 = 0;
                if (c1 > bw) c1 = bw;
                if (c1 <= c0) continue;
                int i0 = (int)floor(c0), i1 = (int)floor(c1);
                if (i1 >= bw) i1 = bw - 1;
                if (i0 == i1) {
                    row[i0] += (float)((c1 - c0) * wsub);
                    continue;
                }
                row[i0] += (float)((i0 + 1 - c0) * wsub);
                for (int i = i0 + 1; i < i1; i++) row[i] += (float)wsub;
                row[i1] += (float)((c1 - i1) * wsub);
            }
        }
    }
}
