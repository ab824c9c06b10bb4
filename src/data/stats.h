/* stats.h - image statistics of BBBC005-style sets, real or simulated.
 *
 * The figures of docs/DATA.md's 'Real images' table, per (stain, count,
 * focus) group, so that a simulated set can be held against real files:
 *   mean       mean image intensity (0-255 scale)
 *   max        image maximum
 *   background median of the pixels at or below 30% of the image max
 *   over30     fraction of pixels > 30
 *   blobs      connected components (8-neighbour) of pixels > 30% of the
 *              image max, per image
 *   area       their areas, pooled over the group's images, in px at
 *              696x520: an image of w x h counts each pixel as
 *              (696*520)/(w*h) px, so a 256x192 data set and the original
 *              TIFFs give comparable figures (radii scale with the width)
 *   coverage   ground-truth mask foreground fraction (mask > 0.5), over
 *              the images that have a mask
 * Pixel values are on the 0-255 scale whatever the source depth.
 */
#ifndef CC_STATS_H
#define CC_STATS_H

#include <stdio.h>

#include "autodiff/status.h"

#define STATS_REF_AREA (696.0 * 520.0)
#define STATS_THRESH_FRAC 0.3
#define STATS_BRIGHT 30.0

/* Accumulated statistics of one (stain, count, focus) group. */
typedef struct stats_group {
    int stain, count, focus;
    long images, masked;
    double sum_mean, sum_max, sum_bg, sum_over30, sum_blobs, sum_cov;
    double *areas;          /* blob areas (px at 696x520), owned */
    long nareas, cap;
} stats_group;

typedef struct stats_table {
    stats_group *g;         /* owned */
    int n, cap;
} stats_table;

/* Derived figures of one group (means over its images, quantiles over its
 * pooled blobs; coverage is -1 when no image had a mask). */
typedef struct stats_row {
    int stain, count, focus;
    long images;
    double mean, mean_per_cell, max, background, over30, blobs, blobs_per_cell;
    double area_p10, area_median, area_p90, area_max, coverage;
} stats_row;

void stats_table_init(stats_table *t);
void stats_table_free(stats_table *t);

/* Measure one w x h image (px: 0-255 scale; mask: w*h values in [0,1], or
 * NULL for none) and add it to the group (stain, count, focus) of t.
 * Returns 0, or -1 with st set when out of memory. */
int stats_table_add(stats_table *t, int stain, int count, int focus, const float *px,
                    const float *mask, int w, int h, cc_status *st);

/* Group i's derived figures; groups are kept sorted by (stain, focus, count). */
void stats_table_row(const stats_table *t, int i, stats_row *r);

/* Find the group (stain, count, focus); -1 if absent. */
int stats_table_find(const stats_table *t, int stain, int count, int focus);

/* Print the table for a person (csv = 0) or as CSV with a header line. */
void stats_table_print(const stats_table *t, FILE *f, int csv);

/* Add every BBBC-named TIFF of dir (its images/ subfolder when there is
 * one; masks from its ground_truth/ subfolder, or masks_dir when given,
 * matched by the F1 name of the same count, site and stain).  stain and
 * focus filter (0 = all).  Files whose names are not BBBC005 names are
 * skipped and counted in *skipped.  Returns 0, or -1 with st naming the
 * file and the problem (unreadable TIFF, mask size differs, no images). */
int stats_add_tiff_dir(stats_table *t, const char *dir, const char *masks_dir, int stain,
                       int focus, long *skipped, cc_status *st);

/* Add every image of a cellcount data set (dataset.h), filtered the same
 * way.  Returns 0, or -1 with st set (bad file, read error, no images). */
int stats_add_dataset(stats_table *t, const char *path, int stain, int focus,
                      cc_status *st);

#endif
