/* saliency.h - gradient (saliency) maps of a run's predicted count
 * (Simonyan et al. 2014; the paper's section 5.3), the library part of
 * `cellcount saliency`.
 *
 * For each image x the predicted count c(x) = counter(mask(x)[, x]) is
 * differentiated with respect to
 *   mask_grad  dc/dm: the counter's mask input m (the FPN's finest mean
 *              mask, H/2 x W/2), i.e. where the counter looks;
 *   image_grad dc/dx: the (resized) image, H x W, through the FPN (and the
 *              area-downsampled image channel with counter.input =
 *              mask+image), i.e. which pixels move the count.
 * FPN and counter are recorded on ONE training-mode tape with every
 * parameter frozen and every BN layer in eval behaviour (running
 * statistics, cc_params.bn_eval), so the graph computes exactly what
 * `count` predicts and images in a batch stay independent; the backward
 * pass is seeded with ones on the (N,1) count.  With counter.input = image
 * there is no mask: the FPN is not used and mask/mask_grad are absent.
 * The count ends in a ReLU: where it is 0 every gradient is 0.
 * With counter.tta = flips the counter also reads the three flips of its
 * input on the same tape (op_flip), count and sigma combine the four views
 * as `count` does, and the gradients are those of the views' mean count.
 */
#ifndef CC_SALIENCY_H
#define CC_SALIENCY_H

#include <stdio.h>

#include "src/infer/count_files.h"

/* Maps of a batch of n images, plain row-major, owned by the caller. */
typedef struct saliency_maps {
    double *count, *sigma;      /* n */
    float *mask, *mask_grad;    /* n x (h/2) x (w/2); unused without FPN */
    float *image_grad;          /* n x h x w */
} saliency_maps;

/* Switch a loaded count_model to saliency use: every parameter frozen and
 * BN in eval behaviour (both stores), and a training tape initialised in
 * *t (free with tape_free). */
void saliency_prepare(count_model *cm, cc_tape *t);

/* Compute the maps of n images (n x h x w floats in [0,1]) on tape t
 * (from saliency_prepare).  out->mask and out->mask_grad may be NULL (and
 * must be without FPN).  Returns 0 or -1. */
int saliency_compute(count_model *cm, cc_tape *t, const float *images, int n,
                     const saliency_maps *out, cc_status *st);

/* Options of saliency_run. */
typedef struct saliency_opts {
    const char *fpn_ckpt, *counter_ckpt;    /* NULL: the run's best */
    const char *out_h5;     /* NULL: no HDF5 file */
    const char *png_dir;    /* NULL: no PNGs */
    int batch;              /* >= 1 */
    int h, w;               /* input size; 0: count_input_size */
    const count_read *read; /* NULL: the run's normalisation, no page/channel */
} saliency_opts;

/* Saliency maps of every image of args (count_inputs_collect).
 *
 * HDF5 (out_h5, written atomically after the last image):
 *   /                  attrs format = "cellcount-saliency", format_version
 *                      = 1 (int32), run_dir, fpn_checkpoint,
 *                      counter_checkpoint, counter_input (strings)
 *   /saliency/<stem>/  attrs source (string: the path), count, sigma (float64)
 *     image            (H,W) float32: the resized input in [0,1]
 *     image_grad       (H,W) float32: d count / d image
 *     mask             (H/2,W/2) float32: the FPN's finest mean mask
 *     mask_grad        (H/2,W/2) float32: d count / d mask
 *   (<stem>: the file name without .tif, unique, see count_inputs).
 * PNG (png_dir, created if missing): <stem>_image_grad.png and
 * <stem>_mask_grad.png, round(255 * |g| / max |g|) with the maximum taken
 * over that map of that image (all 0 when the gradient is 0), so each map
 * shows relative importance within its image only; and <stem>_overlay.png,
 * |image_grad| over the image in colour (png_write_overlay).
 * `out` gets a table "file count sigma" (TSV) as the images are done.
 * Unreadable images are reported on log and skipped.  Returns 0, 1 when
 * some inputs were skipped, or -1 (st) on a fatal error (no HDF5 file is
 * left then). */
int saliency_run(const cc_config *cfg, const saliency_opts *o, char *const *args, int nargs,
                 FILE *out, FILE *log, cc_status *st);

#endif
