/* resize.h - area-averaging image resize.
 *
 * Every output pixel is the exact area average of the input it covers:
 * output pixel (x, y) of a dw x dh image is the box
 * [x*sw/dw, (x+1)*sw/dw) x [y*sh/dh, (y+1)*sh/dh) in input pixel units, and
 * its value is sum(overlap area * input value) / box area, with the
 * fractional overlaps at the box edges computed exactly (integer
 * arithmetic, no rounding of the box bounds).
 *
 * For shrinking this is OpenCV's INTER_AREA.  PyTorch's adaptive_avg_pool2d
 * gives the same result only when the ratio is an integer; for non-integer
 * ratios it averages whole pixels of floor/ceil-rounded bins (unweighted),
 * which this function deliberately does not.  When enlarging, each output
 * pixel still averages the (at most two) input pixels it overlaps, i.e. a
 * piecewise-constant upsampling with averaged seams (OpenCV switches to
 * bilinear there).  Identity when sizes match.  A 0/1 mask resized this way
 * gives the fraction of each output pixel covered by foreground.
 */
#ifndef CC_RESIZE_H
#define CC_RESIZE_H

#include "autodiff/status.h"

/* Resize src (sh rows x sw columns, row-major) into dst (dh x dw).  src and
 * dst must not overlap.  Separable (rows, then columns), parallel over rows
 * with OpenMP; the result does not depend on the thread count.  Returns 0,
 * or -1 with st set when the scratch buffer cannot be allocated.  Sizes
 * below 1 are programmer errors (assert). */
int resize_area(const float *src, int sw, int sh, float *dst, int dw, int dh,
                cc_status *st);

#endif
