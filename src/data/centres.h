/* centres.h - the optional /centres data set of a cellcount data set file
 * (dataset.h): where each image's cells are.
 *
 *   /centres  (N, K, 2) float32: (x, y) of the centre of each of image i's
 *             cells as fractions of the image width and height (a pixel
 *             (c, r) has its centre at ((c + 0.5) / W, (r + 0.5) / H)),
 *             counts[i] of them first, NaN in the K - counts[i] slots
 *             after; all NaN for an image whose centres are unknown.
 *             K = the largest count of the file.
 *
 * Why: the simulator knows where it put every cell, and a density counter
 * supervised by where the cells are counts them better than one told only
 * their number (docs/RESULTS.md, "Where the cells are").  Imported real
 * images have no centres; the file then has no /centres.
 * Both functions run inside dataset.c's HDF5 calls (errors silenced). */
#ifndef CC_CENTRES_H
#define CC_CENTRES_H

#include <hdf5.h>
#include <stdint.h>

#include "autodiff/status.h"

/* Write xy (n * k * 2 floats) as /centres of the open file; path names the
 * file in messages.  0 or -1 with st set. */
int centres_h5_write(hid_t file, int64_t n, int k, const float *xy, const char *path,
                     cc_status *st);

/* Read /centres, when the file has it, into *xy (malloc'd n * k * 2
 * floats, or NULL) and *k (0 when absent), checking its shape against n
 * and every image's slots against counts (finite values in [-1, 2] for
 * the first counts[i], NaN after; or all NaN).  0 or -1 with st naming the
 * file, the image and the problem. */
int centres_h5_read(hid_t file, int64_t n, const int32_t *counts, float **xy, int *k,
                    const char *path, cc_status *st);

/* Image i's centres known: its first slot is a number. */
static inline int centres_known(const float *xy, int k, int64_t i)
{
    return xy && k > 0 && xy[(size_t)i * (size_t)k * 2] == xy[(size_t)i * (size_t)k * 2];
}

#endif
