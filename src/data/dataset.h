/* dataset.h - the cellcount HDF5 data set file: format, writer, reader.
 *
 * Format "cellcount-dataset", version 1 (HDF5 1.10 API; readable with h5py):
 *
 *   /images    (N,1,H,W) uint8 or float32.  uint8 when the sources are 8-bit
 *              (BBBC005): value v means intensity v/255.  The area-resized
 *              image is rounded to the nearest of these 256 levels, an error
 *              of at most 1/510, no larger than the source's own 8-bit
 *              quantisation, for a quarter of the space.  float32 (intensity
 *              in [0,1]) otherwise, e.g. for 16-bit sources.
 *   /masks     (N,1,H,W) float32 in [0,1]: the fraction of each pixel covered
 *              by foreground after area resizing.  float32 rather than uint8
 *              because these fractions are not multiples of 1/255 and are
 *              the FPN's regression targets; shuffle + deflate still shrink
 *              them about 8-fold (simulated BBBC005 masks at 256x192: 23 KB
 *              per image, as much as the uint8 image).  All zero where
 *              has_mask is 0.
 *   /has_mask  (N) uint8, 1 when the image's scene has a ground-truth mask.
 *   /counts /focus /stain /site /scene  (N) int32.  scene identifies a
 *              simulated scene (count, site, stain): its focus levels are
 *              the same cells blurred differently and share one mask.
 *   /split     (N) uint8: 0 train, 1 validation, 2 test.
 *   /source    (N) variable-length UTF-8 strings: source file names.
 *   /centres   optional (N,K,2) float32: each image's cell centres
 *              (centres.h); simulated sets have it, imported ones do not.
 * Images and masks are chunked one image per chunk, shuffle + deflate level
 * 4.  Root attributes: format, version, height, width, image_dtype
 * ("uint8"/"float32"), split_seed (uint64), split_fractions (3 doubles),
 * split_by ("scene" or "count"; absent in older sets = "scene"), description, and optionally normalize (how integer source samples became
 * [0,1] intensities, a normalize.h spec; absent = "range"); every data set
 * has a "description" attribute.
 */
#ifndef CC_DATASET_H
#define CC_DATASET_H

#include <stdint.h>

#include "autodiff/status.h"

#define DATASET_FORMAT "cellcount-dataset"

/* How the train/validation/test split was drawn (root attribute split_by). */
typedef enum { DATASET_SPLIT_SCENE = 0, DATASET_SPLIT_COUNT = 1 } dataset_split_by;
#define DATASET_VERSION 1

enum { DATASET_TRAIN = 0, DATASET_VAL = 1, DATASET_TEST = 2 };

typedef enum dataset_dtype { DATASET_U8 = 0, DATASET_F32 = 1 } dataset_dtype;

/* Metadata of one image. */
typedef struct dataset_record {
    int32_t count, focus, stain, site, scene;
    uint8_t split;          /* DATASET_TRAIN / _VAL / _TEST */
    const char *source;     /* source file name (copied); NULL stores "" */
    const float *centres;   /* 2 * count floats (x, y fractions, centres.h) or NULL
                             * (unknown); read only after dataset_writer_set_centres */
} dataset_record;

/* ---- writer ---------------------------------------------------------- */

typedef struct dataset_writer dataset_writer;

/* Start a data set of h x w images at `path`.  Everything goes to
 * `path.tmp.<pid>` until dataset_writer_close(commit = 1) renames it over
 * `path`.  Images are stored as uint8 unless dataset_writer_set_image_type()
 * says otherwise.  Returns NULL with st set on failure (HDF5 error, no
 * deflate filter). */
dataset_writer *dataset_writer_open(const char *path, int h, int w, cc_status *st);

/* Choose the image storage type; only before the first append (assert). */
void dataset_writer_set_image_type(dataset_writer *wr, dataset_dtype type);

/* Record how the split was made (stored as root attributes). */
void dataset_writer_set_split_info(dataset_writer *wr, uint64_t seed,
                                   const double frac[3], dataset_split_by by);

/* Record how the images were normalised (a normalize.h spec, < 64 bytes),
 * stored as the root attribute "normalize".  Not called: none stored,
 * which readers take as "range". */
void dataset_writer_set_normalize(dataset_writer *wr, const char *spec);

/* Store /centres with k slots per image (the largest count to come);
 * only before the first append (assert).  Not called: no /centres. */
void dataset_writer_set_centres(dataset_writer *wr, int k);

/* Append one image: `image` is h*w floats in [0,1] (values outside are
 * clamped for uint8 storage, which rounds to v/255), `mask` is h*w floats
 * in [0,1] or NULL for "no mask" (stores zeros and has_mask = 0).  Returns
 * 0 or -1 with st set; after a failure only close(commit = 0) is useful. */
int dataset_writer_append(dataset_writer *wr, const float *image, const float *mask,
                          const dataset_record *rec, cc_status *st);

/* Images appended so far. */
int64_t dataset_writer_count(const dataset_writer *wr);

/* Finish.  commit = 1: write metadata and attributes, close, rename into
 * place; on any failure the temporary file is removed and -1 returned.
 * commit = 0: discard everything (returns 0).  Frees wr in all cases;
 * wr == NULL is a no-op returning 0. */
int dataset_writer_close(dataset_writer *wr, int commit, cc_status *st);

/* ---- reader ---------------------------------------------------------- */

struct dataset_h5;

/* An open data set: metadata in memory, pixels read on demand.  Not
 * thread-safe (Debian's HDF5 is the serial build): use from one thread. */
typedef struct cc_dataset {
    char *path;
    int64_t n;                  /* number of images */
    int h, w;
    dataset_dtype image_type;   /* storage type of /images */
    int32_t *counts, *focus, *stain, *site, *scene;     /* n each */
    uint8_t *split, *has_mask;                          /* n each */
    char **source;                                      /* n strings */
    uint64_t split_seed;
    double split_frac[3];
    dataset_split_by split_by;  /* attribute split_by, "scene" when absent */
    char normalize[64];         /* attribute normalize, "range" when absent */
    float *centres;             /* /centres (n * centres_k * 2; centres.h) or NULL */
    int centres_k;              /* its slots per image; 0 when the file has none */
    struct dataset_h5 *h5;      /* private */
} cc_dataset;

/* Open and validate `path`: format name and version, positive H and W,
 * every data set present with the right rank, shape, type class and
 * length, split and has_mask values in range.  Returns NULL with st naming
 * the file and the problem for missing, truncated, corrupt or mismatched
 * files.  HDF5's own error printing is silenced for the duration of every
 * call in this module (and restored afterwards). */
cc_dataset *dataset_open(const char *path, cc_status *st);

/* Read images idx .. idx+n-1 as floats in [0,1] into out (n*h*w floats,
 * (n,1,h,w) order).  0 <= idx, idx + n <= ds->n (assert).  Returns 0 or -1
 * with st set (e.g. corrupt chunk). */
int dataset_read_images(cc_dataset *ds, int64_t idx, int64_t n, float *out, cc_status *st);

/* Same in the storage type: uint8_t (v/255) for DATASET_U8, float for
 * DATASET_F32, n*h*w elements. */
int dataset_read_images_raw(cc_dataset *ds, int64_t idx, int64_t n, void *out,
                            cc_status *st);

/* Read masks idx .. idx+n-1 (floats in [0,1]) into out, like the images. */
int dataset_read_masks(cc_dataset *ds, int64_t idx, int64_t n, float *out, cc_status *st);

/* Close and free everything; NULL is a no-op. */
void dataset_close(cc_dataset *ds);

/* The image size (h, w) of the data set file at path: the models' input
 * size for the trainers and inference.  Returns 0, or -1 with st set as
 * dataset_open() does. */
int dataset_image_size(const char *path, int *h, int *w, cc_status *st);

/* ---- split (split.c) ------------------------------------------------- */

/* Assign every image a split so that images with equal group[i] always
 * land in the same split (no scene leaks between train/val/test).  The
 * distinct groups are sorted, shuffled with rng stream (seed, 0x53504c4954)
 * and cut into round(f0*G) train, round(f1*G) validation and the rest test
 * groups, where f = frac / sum(frac) and G = number of groups.  The result
 * depends only on the set of groups and the seed, not on image order or
 * thread count.  frac = NULL means 80/10/10.  split_out holds n entries.
 * Returns 0, or -1 with st set (negative or all-zero fractions, no memory). */
int dataset_split_by_scene(const int32_t *group, int64_t n, uint64_t seed,
                           const double frac[3], uint8_t *split_out, cc_status *st);

/* The same, stratified: every stratum (stratum[i], e.g. the image's count)
 * gets its own share of each split, so a test split of a simulated set has
 * the set's count distribution (a plain split of 120 of 2,400 scenes held
 * 17 scenes at 81+ cells where 20 were due).  A stratum of gs groups gives
 * split k floor(f_k gs) groups, or one more where f_k gs is not whole:
 * within one group of its share.  The extra groups go to the splits whose
 * running totals lag furthest behind f_k of the groups so far, visiting
 * the strata in an order shuffled after the groups (same stream), so the
 * totals stay within a group or two of f_k G.  Within a stratum the
 * shuffled groups are cut train, validation, test.  A group's images must
 * share one stratum, else -1 with st naming the group.  Other errors as
 * dataset_split_by_scene. */
int dataset_split_stratified(const int32_t *group, const int32_t *stratum, int64_t n,
                             uint64_t seed, const double frac[3], uint8_t *split_out,
                             cc_status *st);

/* "scene" / "count" <-> dataset_split_by; parse returns -1 for anything
 * else (out untouched). */
int dataset_split_by_parse(const char *s, dataset_split_by *out);
const char *dataset_split_by_name(dataset_split_by by);

#endif
