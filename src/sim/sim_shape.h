/* sim_shape.h - random cell contours and their rasterisation, for the
 * simulator (simulate.h); recipe in docs/DATA.md. */
#ifndef CC_SIM_SHAPE_H
#define CC_SIM_SHAPE_H

#include <stdint.h>

#include "autodiff/rng.h"

#define SIM_KNOTS 10             /* t_k = 2*pi*k/10, k = 0..10, point 10 closes */
#define SIM_SEG 8                /* polygon vertices per spline segment */
#define SIM_POLY_N (SIM_KNOTS * SIM_SEG)

/* A closed contour in image coordinates (pixel (i,j) covers [i,i+1) x
 * [j,j+1), its centre is (i+0.5, j+0.5)).  Inside = even-odd rule. */
typedef struct sim_poly {
    double x[SIM_POLY_N], y[SIM_POLY_N];
    double xmin, ymin, xmax, ymax;   /* bounding box of the vertices */
} sim_poly;

/* Draw a random contour: 10 knots x = a*U(-1,1) + cos(t + b*U(-1,1)),
 * y = a*U(-1,1) + sin(t + b*U(-1,1)) (4 uniforms per knot, drawn in knot
 * order), closed periodic cubic spline, scaled by radius, centred on
 * (cx, cy).  Never fails. */
void sim_shape_make(cc_rng *r, double a, double b, double radius,
                    double cx, double cy, sim_poly *out);

/* Even-odd inside test of the point (x, y) (half-open crossing rule). */
int sim_poly_contains(const sim_poly *p, double x, double y);

/* Set mask[j*w+i] = val for every pixel whose centre is inside p.
 * Returns the number of such pixels inside the w x h image. */
long sim_poly_mask(const sim_poly *p, uint8_t *mask, int w, int h, uint8_t val);

/* Count the pixels whose centre is inside p (clipped to w x h) and, of those,
 * the ones with occ[j*w+i] != 0 (occ may be NULL). */
void sim_poly_count(const sim_poly *p, const uint8_t *occ, int w, int h,
                    long *inside, long *occupied);

/* Fractional area coverage of p, accumulated into the bw x bh window cov
 * whose pixel (0,0) is image pixel (bx, by): 8 sub-scanlines per row, exact
 * horizontal span overlap.  Values of a simple contour end in [0, 1]. */
void sim_poly_cover(const sim_poly *p, float *cov, int bx, int by, int bw, int bh);

#endif
