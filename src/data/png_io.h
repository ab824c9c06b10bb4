/* png_io.h - 8-bit grayscale and RGB PNG output (libpng), for previews. */
#ifndef CC_PNG_IO_H
#define CC_PNG_IO_H

#include <stdint.h>

#include "autodiff/status.h"

/* Write px (w*h row-major 8-bit gray, w, h >= 1) as a PNG at `path`.
 * Atomic: written to `path.tmp.<pid>` and renamed over `path`; on failure
 * the temporary is removed and `path` is untouched.  libpng messages go
 * into st, never to stderr.  Returns 0, or -1 with st naming the file. */
int png_write_gray(const char *path, int w, int h, const uint8_t *px, cc_status *st);

/* Same for RGB: px holds w*h*3 bytes (r, g, b per pixel). */
int png_write_rgb(const char *path, int w, int h, const uint8_t *px, cc_status *st);

/* An overlay of a map on an image, as an RGB PNG: image (w*h floats in
 * [0,1]) in gray, |map| (mw*mh floats, any size: stretched over the image,
 * nearest neighbour) divided by its 99th percentile (its maximum when that
 * is 0), clipped at 1, and blended in with "hot" colours
 * (black-red-yellow-white), stronger where |map| is larger.  Images
 * narrower than 512 pixels are enlarged by a whole factor (nearest) so that
 * the overlay is readable at 100%.  Atomic like png_write_gray. */
int png_write_overlay(const char *path, int w, int h, const float *image, const float *map,
                      int mw, int mh, cc_status *st);

#endif
