/* import.h - turn a BBBC005-style TIFF tree into a cellcount data set.
 *
 * The image directory holds `SIMCEPImages_*_C*_F*_s*_w*.TIF` files; the
 * optional mask directory holds the binary foreground masks under the names
 * of the F1 images (BBBC005 has masks for F1 only).  Every image is paired
 * with the mask of its scene (same count, site and stain): the focus levels
 * of a scene are the same cells blurred differently.  A mask pixel > 0 is
 * foreground (1.0); images and masks are area-averaged to the target size,
 * so resized masks hold coverage fractions.  Output: see dataset.h.
 */
#ifndef CC_IMPORT_H
#define CC_IMPORT_H

#include <stdint.h>
#include <stdio.h>

#include "autodiff/status.h"
#include "src/data/dataset.h"

#define IMPORT_MAX_FOCUS 64

typedef struct import_opts {
    const char *images_dir;     /* required */
    const char *masks_dir;      /* NULL: no masks (has_mask = 0 everywhere) */
    const char *out_path;       /* required, .h5 */
    int stain;                  /* 1 or 2, 0 = all stains */
    int nfocus;                 /* 0 = all focus levels, else focus[0..nfocus) */
    int focus[IMPORT_MAX_FOCUS];
    int width, height;          /* target size, default 256 x 192 */
    uint64_t seed;              /* split seed, default 1 */
    double frac[3];             /* split fractions, default 0.8/0.1/0.1 */
    dataset_split_by split_by;  /* DATASET_SPLIT_COUNT: stratified by count
                                 * (dataset_split_stratified); default by scene */
    int threads;                /* OpenMP threads, 0 = OpenMP's default */
    const char *normalize;      /* normalize.h spec for the images; NULL = range.
                                 * Recorded as the data set's normalize attribute */
    uint64_t decode_budget;     /* decoded bytes in flight over all threads, 0 = 2 GiB;
                                   a file larger than this is decoded alone */
} import_opts;

typedef struct import_summary {
    int64_t files;              /* file names seen in the image directory */
    int64_t malformed;          /* names that are not BBBC005 names (skipped) */
    int64_t filtered;           /* valid names excluded by stain/focus */
    int64_t images;             /* images written */
    int64_t scenes;             /* distinct (count, site, stain) written */
    int64_t scenes_with_mask;   /* of which a mask file was found */
    int64_t mask_malformed;     /* unusable names in the mask directory */
    int64_t split_images[3];    /* images per split (train, val, test) */
    int64_t split_scenes[3];    /* scenes per split */
    int bits;                   /* source sample depth (8 or 16) */
    uint64_t peak_decode;       /* most decoded bytes in flight at once (estimate) */
} import_summary;

/* Fill o with the defaults (every pointer NULL). */
void import_opts_default(import_opts *o);

/* Run the import described by o.  Skipped file names and other warnings are
 * written to `log` (may be NULL); nothing else is printed.  Fills *sum
 * (may be NULL).  The output file is written atomically: on failure no
 * output (and no temporary) is left.  Returns 0, or -1 with st naming the
 * file and the problem (unreadable image, a mask whose size differs from
 * its image's, mixed 8/16-bit sources, nothing selected, HDF5 errors). */
int import_run(const import_opts *o, FILE *log, import_summary *sum, cc_status *st);

/* Print a human-readable summary of *sum to f. */
void import_summary_print(const import_summary *sum, const char *out_path, FILE *f);

/* A data set made from the data set `src` (`import --from`): the images
 * of o->stain (0: all) and o->focus (nfocus 0: all), images and masks
 * area-resized to o->width x o->height, every other field (counts, focus,
 * stain, site, scene, split, has_mask, source, normalisation, split seed)
 * copied, so the new set has the source's splits.  Written atomically to
 * o->out_path; *written: images written.  Other options are ignored.
 * Returns 0, or -1 naming the file (unreadable source, out == src, nothing
 * selected, write failure: no output is left). */
int import_from_dataset(const import_opts *o, const char *src, FILE *log, int64_t *written,
                        cc_status *st);

#endif
