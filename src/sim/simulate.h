/* simulate.h - clean-room SIMCEP-like simulator of BBBC005-style images.
 *
 * Written from the description in docs/DATA.md (never from SIMCEP's code).
 * A *scene* is one (count C, site s): C cells, each a cytoplasm contour and
 * a nucleus contour around the same centre, plus a defocus depth.  A scene
 * is rendered once per stain (w1 = nuclei, w2 = cytoplasm/cell body, as in
 * the real BBBC005 files) into a
 * sharp float image with every measurement effect except the global focus
 * blur; the 16 focus levels are then Gaussian blurs (sigma = F/4) of that
 * one image, so all focus levels share the cells and the mask.
 *
 * Determinism: every random number comes from autodiff/rng.h streams keyed
 * by (C, s) for the geometry and by (C, s, stain) for textures, autofluor-
 * escence, illumination and noise, so output bytes depend only on the seed
 * and the parameters, never on thread count, schedule or the job's lists.
 *
 * Split: sim_shape.[ch] (contours, polygon fill), sim_texture.[ch]
 * (Perlin-like textures, bicubic resize), simulate.c (placement, rendering,
 * blur, jobs).
 */
#ifndef CC_SIMULATE_H
#define CC_SIMULATE_H

#include "autodiff/rng.h"
#include "autodiff/status.h"
#include "src/sim/sim_shape.h"
#include "src/sim/sim_texture.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- knobs -------------------------------------------------------------- */

/* Reference geometry of BBBC005 (DATA.md). */
#define SIM_REF_WIDTH 696
#define SIM_REF_HEIGHT 520
#define SIM_REF_CELL_RADIUS 32.1  /* cytoplasm radius at SIM_REF_WIDTH (docs/DATA.md) */
#define SIM_NUCLEUS_RATIO 0.4956  /* nucleus radius / cytoplasm radius (15.9/32.1) */

typedef struct sim_params {
    int width, height;       /* image size in px (696 x 520) */
    double cell_radius;      /* cytoplasm radius in px; <= 0: 32.1 * width/696 */
    double nucleus_ratio;    /* nucleus radius / cytoplasm radius */
    double irregularity;     /* multiplies the shape noise a and b (1) */
    double cluster_prob;     /* probability a cell joins a cluster (0.25) */
    int clusters;            /* cluster centres per scene (2), >= 1 */
    double overlap_limit;    /* max fraction of a new cell already covered (0.7) */
    double nucleus_overlap;  /* max fraction of a new nucleus's disc already covered by
                                nuclei (1: no limit, the default; the bodies' limit alone) */
    int max_tries;           /* re-draws before the least-overlapping try is kept (50) */
    double autofluor;        /* autofluorescence energy / cell energy (0) */
    double illumination;     /* depth of the quadratic illumination fall-off (0) */
    double noise_var;        /* additive Gaussian noise variance on [0,1] (1e-5) */
    double background;       /* offset added to every pixel, 8-bit levels (1) */
    double contrast;         /* exponent on cell-body (w2) intensities (0.7) */
    double brightness_sd;    /* log-sd of the per-cell (w2) brightness (0.03) */
    double gain;             /* intensity scale before quantisation (0.855) */
    double nucleus_contrast; /* exponent on nucleus (w1) intensities, instead of contrast */
    double nucleus_gain;     /* nucleus (w1) brightness relative to cell bodies */
    double nucleus_brightness_sd; /* log-sd of the per-nucleus brightness (w1) */
    uint64_t seed;           /* generator family (rng_seed) */
} sim_params;

/* Fill p with the defaults above (BBBC005-like, 696 x 520). */
void sim_params_default(sim_params *p);

/* Check ranges; returns 0 or -1 with a message naming the bad knob. */
int sim_params_check(const sim_params *p, cc_status *st);

/* Cytoplasm radius in px after resolving the "auto" value. */
double sim_params_radius(const sim_params *p);

/* ---- blur -------------------------------------------------------------- */

/* In-place separable Gaussian blur of img (w x h) with zero-padded borders
 * (mass leaves the image, as DATA.md says of BBBC005), kernel radius
 * ceil(3 sigma), normalised to sum 1.  sigma <= 0 leaves img unchanged.
 * tmp: sim_blur_work(w, h, sigma) floats. */
void sim_gauss_blur(float *img, int w, int h, double sigma, float *tmp);
size_t sim_blur_work(int w, int h, double sigma);

/* ---- scenes ------------------------------------------------------------ */

typedef struct sim_cell {
    double cx, cy;       /* centre, px */
    double depth;        /* defocus depth |N(0, 0.5)| */
    double sigma;        /* its own blur sigma, px (0.5..5 at 696 wide) */
    double overlap;      /* fraction of its cytoplasm pixels already covered
                            by earlier cells when it was placed */
    int tries;           /* draws used, 1..max_tries */
    int forced;          /* 1 when no try met the overlap limit and the
                            least-overlapping one was kept */
    int clustered;       /* 1 if drawn around a cluster centre */
    sim_poly cyto, nucl;
} sim_cell;

typedef struct sim_scene {
    int width, height;
    int count, site;     /* the scene's (C, s) */
    int ncells;          /* == count */
    sim_cell *cells;     /* owned, placement order */
} sim_scene;

/* Place `count` cells for site `site` (>= 1).  Exactly `count` cells are
 * placed: a cell that fails the overlap limit max_tries times keeps its
 * least-overlapping try (forced = 1).  Returns 0, or -1 on bad arguments
 * or out of memory; free with sim_scene_free (also safe after failure). */
int sim_scene_generate(const sim_params *p, int count, int site, sim_scene *sc,
                       cc_status *st);
void sim_scene_free(sim_scene *sc);

/* Ground-truth mask of one stain: 255 where a pixel centre is inside any
 * nucleus (stain 1) or any cytoplasm (stain 2), else 0; mask is w*h. */
void sim_mask_render(const sim_scene *sc, int stain, uint8_t *mask);

/* Render the sharp image of stain 1 or 2 (w*h floats, [0,1] scale before
 * clipping): per-object textures and defocus, averaged overlaps,
 * autofluorescence, illumination, gain and noise.  Returns 0 or -1 (out of
 * memory, bad stain). */
int sim_render(const sim_params *p, const sim_scene *sc, int stain, float *img,
               cc_status *st);

/* Focus level F as a blur of the sharp image: out = blur(img, F/4 *
 * w/SIM_REF_WIDTH) quantised to 8 bits (round, clip to 0..255).  tmp:
 * sim_focus_work(). */
void sim_focus_apply(const float *img, int w, int h, int focus, uint8_t *out, float *tmp);
size_t sim_focus_work(int w, int h, int focus);

/* ---- jobs -------------------------------------------------------------- */

/* One produced image, handed to a sink.  Pixels are w*h 8-bit row-major;
 * mask is the scene's F1 ground truth for this stain (0/255), the same for
 * every focus level.  Valid only during the call. */
typedef struct sim_image {
    int count, focus, site, stain;
    int width, height;
    long index;            /* rank in the job's canonical order (see sim_run) */
    const uint8_t *pixels;
    const uint8_t *mask;
    const float *centres;  /* 2 * count: each cell's centre (x, y) as fractions of
                              the width and height (dataset centres.h) */
} sim_image;

/* Called once per image from worker threads, concurrently and in any
 * order: it must be thread-safe.  Returns 0, or -1 with st set to stop
 * the job. */
typedef int (*sim_sink_fn)(void *ctx, const sim_image *im, cc_status *st);

typedef struct sim_job {
    const int *counts;  int ncounts;   /* each >= 1 */
    const int *focus;   int nfocus;    /* each >= 1 */
    int nsites;                        /* sites 1..nsites */
    int stains;                        /* bit 0: w1, bit 1: w2 */
    int threads;                       /* <= 0: OpenMP default */
} sim_job;

/* Number of images the job makes. */
long sim_job_images(const sim_job *job);

/* Check the job's lists; 0 or -1 with a message. */
int sim_job_check(const sim_job *job, cc_status *st);

/* Run a job: for every (count, site, stain) unit in parallel (OpenMP),
 * generate the scene, render it, and hand every focus level to sink.
 * Canonical index of an image = ((ci * nsites + (site-1)) * nstains + si)
 * * nfocus + fi, with ci, si, fi positions in the job's lists (stain 1
 * before 2).  log (may be NULL) gets a plain progress line about every
 * 5% of the units.  Returns 0, or -1 with the first error (the sink's or
 * our own); remaining units are skipped after an error. */
int sim_run(const sim_params *p, const sim_job *job, sim_sink_fn sink, void *ctx,
            FILE *log, cc_status *st);

/* rng stream ids: geometry of (C, s) and the per-stain textures/noise. */
uint64_t sim_stream(int count, int site, int stain, int purpose);

#endif
