/* sim_output.h - destinations for simulated images (sim_run sinks).
 *
 * - TIFF tree: DIR/images/<BBBC005 name>.TIF for every image and the scene's
 *   F1 mask (0/255) under its F1 image name in DIR/ground_truth, exactly the
 *   layout `cellcount import --images DIR/images --masks DIR/ground_truth`
 *   reads.  Written into hidden staging directories that are renamed into
 *   place at the end, so a failed run leaves no partial tree.
 * - HDF5 data set (src/data/dataset.h): images and masks area-resized like
 *   import does (8-bit v -> v/255, mask > 0 -> 1), scene ids and the
 *   by-(count, site) split numbered as import numbers the same tree, so
 *   the file equals "tree + import" up to the order of the images.
 *   Appended in the job's canonical order whatever the thread count.
 * - PNG preview montage.
 * Wells: BBBC005's for its counts and focus levels, else the positions in
 * the job's lists (wrapped into A..Z / 01..99; C, F, s, w keep names unique).
 */
#ifndef CC_SIM_OUTPUT_H
#define CC_SIM_OUTPUT_H

#include <limits.h>
#include <stdint.h>
#include <stdio.h>

#include "autodiff/status.h"
#include "src/data/dataset.h"
#include "src/data/fsutil.h"
#include "src/sim/simulate.h"

typedef struct sim_tree_out {
    const sim_job *job;
    char dir[PATH_MAX];                              /* DIR */
    char img_dir[PATH_MAX], gt_dir[PATH_MAX];        /* staging directories */
    fs_atomic stage[2];         /* their signal-cleanup registrations (fsutil.h) */
    char made[PATH_MAX];        /* outermost directory we created, or "" */
    long masks;                 /* masks written */
} sim_tree_out;

/* Create DIR (and missing parents) and the staging directories.  Refuses
 * (-1) when DIR/images or DIR/ground_truth exists, unless force, in which
 * case sim_tree_end replaces them.  job must outlive t.  On failure nothing
 * is left behind. */
int sim_tree_begin(sim_tree_out *t, const char *dir, int force, const sim_job *job,
                   cc_status *st);

/* sim_sink_fn writing one image (and, for the job's first focus level, the
 * scene's mask) into the staging directories; ctx is a sim_tree_out. */
int sim_tree_sink(void *ctx, const sim_image *im, cc_status *st);

/* ok: move the staging directories into place (replacing old ones);
 * not ok or on failure: remove them and any directory sim_tree_begin
 * created.  Returns 0 only when the tree is in place. */
int sim_tree_end(sim_tree_out *t, int ok, cc_status *st);

typedef struct sim_h5_out {
    const sim_job *job;
    dataset_writer *wr;
    int w, h;                    /* stored size */
    long n, next;                /* images in the job, next to append */
    float **pending;             /* n: resized image waiting for its turn */
    float **unit_mask;           /* one resized mask per (count, site, stain) */
    float **unit_centres;        /* and its cells' centres (2 * count floats) */
    int32_t *scene;              /* n: scene id (import's numbering) */
    uint8_t *split;              /* n */
    int failed;                  /* an append failed: the writer takes no more */
} sim_h5_out;

/* Plan scene ids and the split (dataset_split_by_scene with split_seed and
 * frac, NULL = 80/10/10; by = DATASET_SPLIT_COUNT: dataset_split_stratified
 * by the scene's count) and open the writer for w x h images at path.
 * job must outlive o.  On failure nothing is left behind. */
int sim_h5_begin(sim_h5_out *o, const char *path, int w, int h, const sim_job *job,
                 uint64_t split_seed, const double frac[3], dataset_split_by by,
                 cc_status *st);

/* sim_sink_fn: resize and append (in canonical order); ctx is a sim_h5_out. */
int sim_h5_sink(void *ctx, const sim_image *im, cc_status *st);

/* commit: write the file into place (fails if not every image arrived);
 * else discard it.  Frees o's buffers either way.  0 or -1. */
int sim_h5_end(sim_h5_out *o, int commit, cc_status *st);

/* Montage PNG: columns = up to 4 counts spread over the job's list (site 1,
 * first stain), rows = F1, the largest listed focus level, the mask; tiles
 * area-resized to half size, separated by gray lines.  Renders with up to
 * job->threads threads.  log (may be NULL) gets one line saying what the
 * columns and rows are. */
int sim_preview_write(const sim_params *p, const sim_job *job, const char *path, FILE *log,
                      cc_status *st);

#endif
