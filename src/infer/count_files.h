/* count_files.h - counting cells in TIFF files with a trained run: the
 * library part of `cellcount count`, shared with `cellcount saliency`.
 *
 * Pipeline per image: tiff_read_gray -> intensities in [0,1] (8-bit v/255,
 * 16-bit v/65535, as import does) -> area resize (resize.h) to the models'
 * input size -> FPN -> finest mean mask (H/2 x W/2) -> counter -> count and
 * sigma = exp(logvar/2).  The FPN and the counter run on one inference tape
 * (BN with running statistics), in batches; since nothing in inference mode
 * mixes the images of a batch, a prediction does not depend on the batch it
 * is in.
 *
 * Input size: the models only fit the image size of the data set they were
 * trained on, and neither the checkpoints nor run.h5 record it (a VGG
 * counter's fc1 width depends on it, but not one-to-one).  It comes from
 * --size WxH when given, else from the header of the data set named by the
 * run's data.file (config.ini; a relative name not found from the working
 * directory is also looked up relative to the directory training ran in,
 * see count_config_load).  A wrong size is caught when the counter
 * checkpoint is loaded (its fc1 shape differs) for VGG counters, not for
 * ResNet (global pooling): there it silently gives poor counts.
 *
 * Nothing here writes into the run directory: no run file is opened.
 */
#ifndef CC_COUNT_IMAGES_H
#define CC_COUNT_IMAGES_H

#include <stdio.h>

#include "models/losses.h"
#include "src/data/normalize.h"
#include "src/train/ood.h"
#include "src/run/session.h"

/* The configuration of a run for inference: defaults, then
 * <run_dir>/config.ini (the run's resolved configuration, so the model
 * architecture matches its checkpoints), then `file` (NULL: none), then the
 * "section.key=value" overrides in order; run.out_dir is set to run_dir.
 * A missing config.ini is an error unless `file` is given.  data.file:
 * when relative and not found from the working directory, but run_dir
 * ends with the configured run.out_dir (both as training saw them, e.g.
 * data.file = sim.h5, out_dir = RUN, run_dir = /data/exp/RUN), it becomes
 * /data/exp/sim.h5 if that exists.  Returns 0 or -1 with a message naming
 * the file or the override. */
int count_config_load(cc_config *cfg, const char *run_dir, const char *file,
                      char *const *sets, int nsets, cc_status *st);

/* The models' input size (H x W): *h, *w when both are > 0 on entry
 * (--size), else the size of the data set cfg->data_file.  Returns 0, or
 * -1 with a message that names the data set and suggests --size. */
int count_input_size(const cc_config *cfg, int *h, int *w, cc_status *st);

/* The checkpoints a run's inference uses: fpn_ckpt / counter_ckpt when
 * non-NULL, else <out_dir>/fpn_best.h5 (counter_fpn_best.h5 with
 * finetune_fpn) and <out_dir>/counter_best.h5.  Buffers of len bytes. */
void count_checkpoint_paths(const cc_config *cfg, const char *fpn_ckpt, const char *counter_ckpt,
                            char *fpn_path, char *counter_path, size_t len);

/* How evaluate's calibration turns the counter's raw sigma into the sigma
 * of the interval count +- 1.96 sigma:
 *     sigma_cal = sqrt((scale * sigma)^2 + (per_count * max(count, 0))^2)
 * scale alone (per_count = 0) is the one-factor calibration; per_count
 * adds an error that grows with the count (occlusion hides more cells in
 * denser images), which a counter's own sigma, trained on scenes it fits,
 * does not learn (counter.calibrate_count = true; 0 otherwise). */
typedef struct count_calib {
    double scale, per_count;
} count_calib;
#define COUNT_CALIB_IDENTITY ((count_calib){1, 0})

/* sigma_cal of one prediction (NaN sigma stays NaN). */
double count_calib_sigma(const count_calib *c, double count, double sigma);

/* The run.h5 attributes of a calibration (evaluate writes them, count_model_open
 * reads them): scale = "counter.sigma_scale[.TAG]", per_count =
 * "counter.sigma_per_count[.TAG]" (absent in runs evaluated before it
 * existed: 0), tta = "counter.sigma_scale_tta[.TAG]", the counter.tta it
 * was fitted with, and fit_on = "counter.sigma_fit_on[.TAG]", what it was
 * fitted on ("val", a counter.calibrate_on path, or "none"); tag NULL: the
 * run's own.  tag: at most 32 characters (evaluate_tag_check). */
#define COUNT_SIGMA_ATTR_LEN 64
typedef struct count_sigma_attrs {
    char scale[COUNT_SIGMA_ATTR_LEN], per_count[COUNT_SIGMA_ATTR_LEN];
    char tta[COUNT_SIGMA_ATTR_LEN], fit_on[COUNT_SIGMA_ATTR_LEN];
} count_sigma_attrs;
void count_sigma_attr_names(const char *tag, count_sigma_attrs *a);

/* A run's models, loaded for counting. */
typedef struct count_model {
    cc_session s;           /* cfg, ctx and dir only: no run file is opened */
    cc_models m;
    cc_tape t;              /* inference tape of count_model_predict */
    int has_fpn;            /* FPN built and loaded */
    int h, w;               /* input size */
    loss_kind kind;         /* counter loss: sigma is NaN for mse */
    count_calib calib;      /* evaluate's calibration (run.h5 attributes
                             * counter.sigma_scale, counter.sigma_per_count)
                             * applied to sigma; the identity when the run has
                             * none, calibrate = none or the counter checkpoint
                             * was given explicitly */
    char sigma_from[COUNT_SIGMA_ATTR_LEN];  /* the run.h5 attribute the scale came
                             * from; "" when none applied */
    char fpn_path[CFG_STR + 64], counter_path[CFG_STR + 64];
    char train_norm[NORM_SPEC_LEN];  /* the training data's normalisation: run.h5
                             * attribute data.normalize, else the run's data
                             * set's; "" when neither can be read */
    const char *train_norm_from;    /* "run.h5", "data set" or NULL */
    ood_stats ood;          /* run.h5 tables ood/train, ood/sigma (ood.h) */
    int density_h, density_w;   /* a density counter's map (counter_forward_map):
                             * its size, h*w = m.counter.positions, set by the
                             * first count_model_predict_fg; 0 before, and for
                             * counters without a map */
    int open_;              /* internal: what count_model_close must free */
} count_model;

/* Build the models for h x w inputs (h, w divisible by 2^fpn.depth) and
 * load the checkpoints (count_checkpoint_paths).  The FPN is loaded when
 * the counter reads the mask or when want_fpn is set (mask outputs); with
 * counter.input=image and !want_fpn it is not needed.  calib: the
 * calibration `evaluate --tag calib_tag` stored when calib_tag is not NULL
 * and there is one, else the run's own.  Returns 0, or -1
 * with a message naming the checkpoint (missing, corrupt, or built for
 * another architecture or input size).  Call count_model_close() in both
 * cases. */
int count_model_open(count_model *cm, const cc_config *cfg, int h, int w, const char *fpn_ckpt,
                     const char *counter_ckpt, int want_fpn, const char *calib_tag,
                     cc_status *st);
void count_model_close(count_model *cm);

/* The tensors of one forward of FPN + counter. */
typedef struct count_graph {
    cc_tensor *mask, *mask_logvar;  /* (N,1,H/2,W/2) finest FPN level; NULL without FPN */
    cc_tensor *input;               /* the counter's input (N,Cin,H/2,W/2) */
    cc_tensor *count, *logvar;      /* (N,1) */
    cc_tensor *density;             /* (N,1,h',w') a density counter's map, whose sum
                                     * is count; NULL for the other counters */
} count_graph;

/* Record FPN + counter on tape t for images x (N,1,h,w), whatever the
 * tape's mode: the same graph as counting_input(fpn_on_tape = 1) followed
 * by counter_forward, plus access to the mask and its log-variance.
 * Returns 0, or -1 with the message in the tape. */
int count_graph_forward(count_model *cm, cc_tape *t, cc_tensor *x, count_graph *g);

/* Predict n images (n x h x w floats, in [0,1]).  Fills count[n] and
 * sigma[n] (NaN for a counter trained with the mse loss); with mask /
 * mask_sigma non-NULL also the finest FPN mean mask and exp(logvar/2),
 * n x (h/2) x (w/2) floats each (needs the FPN).  With counter.tta = flips
 * the count and sigma combine the counter on the four flips of the mask
 * (counting_predict); the masks are those of the unflipped image.
 * Returns 0 or -1. */
int count_model_predict(count_model *cm, const float *images, int n, double *count, double *sigma,
                        float *mask, float *mask_sigma, cc_status *st);

/* count_model_predict plus, with fg non-NULL, each image's foreground
 * fraction: the mean of its finest FPN mean mask clamped to [0,1] (NaN
 * without FPN); with density non-NULL, a density counter's map of each
 * image (n x m.counter.positions floats, row-major cm->density_h x
 * cm->density_w, which this sets): where the counter puts the cells, its
 * sum the count before calibration and, with counter.tta = flips, that of
 * the unflipped image.  density with a counter that has no map is an
 * error. */
int count_model_predict_fg(count_model *cm, const float *images, int n, double *count,
                           double *sigma, float *mask, float *mask_sigma, double *fg,
                           float *density, cc_status *st);

/* How input files are read (--normalize, --page, --channel). */
typedef struct count_read {
    const char *normalize;  /* normalize.h spec; NULL: the run's training data's */
    int page, channel;      /* tiff_read_gray_at; -1: not chosen */
} count_read;

/* The resolved reading of one count/saliency run, with the state of its
 * once-per-run warnings. */
typedef struct count_reader {
    cc_norm norm;
    int page, channel;
    int n_low12;            /* 16-bit images read with range whose values stay <= 4095 */
    int n_clipped;          /* images with samples above bits:N's 2^N - 1 */
} count_reader;

/* Resolve rq (NULL: every default) against the run cm: the normalisation
 * is rq->normalize when given, else the run's training data's (range when
 * the run does not say, as for every run made before it was recorded).
 * When the user's choice and the run's differ in a way that scales the
 * inputs differently (norm_mismatch: absolute against per-image, or other
 * per-image parameters) a warning naming both goes to log: a deliberate
 * choice stays possible.  Returns 0, or -1 for a bad spec (st). */
int count_reader_init(count_reader *rd, const count_read *rq, const count_model *cm, FILE *log,
                      cc_status *st);

/* The end-of-run summary of the warnings (when more than one image was
 * concerned); nread: images read. */
void count_reader_finish(const count_reader *rd, int nread, FILE *log);

/* Read a gray TIFF, convert to [0,1] and area-resize to h x w into dst
 * (h*w floats).  Returns 0, or -1 with a message naming the file. */
int count_image_load(const char *path, int h, int w, float *dst, cc_status *st);

/* count_image_load with the page, channel and normalisation of rd (NULL:
 * range, no page or channel chosen); img_out (may be NULL) gets the
 * decoded image's size, depth and declared maximum (px NULL), info what
 * normalisation saw. */
int count_image_load_with(const char *path, const count_reader *rd, int h, int w, float *dst,
                          cc_image *img_out, norm_info *info, cc_status *st);

/* The images named on a command line: files as given, directories
 * expanded to their regular files named *.tif / *.tiff (any case; names
 * starting with '.' skipped), sorted by name (byte order), not recursive. */
typedef struct count_inputs {
    int n;
    char **paths;           /* owned */
    char **stems;           /* file name without directory and .tif/.tiff,
                               made unique by "-2", "-3", ... (output names) */
} count_inputs;

/* Collect the inputs of args[0..nargs).  An argument that does not exist,
 * is neither a file nor a directory, or is a directory without TIFFs is
 * reported on log ("cellcount: ARG: problem") and counted in *bad.
 * Returns 0, or -1 when out of memory. */
int count_inputs_collect(char *const *args, int nargs, count_inputs *in, FILE *log, int *bad,
                         cc_status *st);

/* Load the next up to B readable images of `in`, from *next on, into
 * images (B x h x w floats), read as rd says (NULL: defaults); slot[k] =
 * index into `in` of image k.  An unreadable file is reported on log
 * ("cellcount: FILE: problem (skipped)"), counted in *bad and passed over.
 * The first 16-bit image whose values never exceed 4095 read with
 * `range` (12-bit camera data, 16x too dark), and the first with samples
 * above bits:N's maximum, get a warning on log; later ones are counted in
 * rd (count_reader_finish).  Advances *next; returns the number loaded (0
 * only when `in` is exhausted). */
int count_inputs_next_batch(const count_inputs *in, int *next, int B, int h, int w, float *images,
                            int *slot, count_reader *rd, FILE *log, int *bad);
void count_inputs_free(count_inputs *in);

/* Options of count_run. */
typedef struct count_opts {
    const char *fpn_ckpt, *counter_ckpt;    /* NULL: the run's best */
    const char *output;     /* NULL: write to `out` */
    int csv;                /* 0: TSV */
    const char *masks_dir;  /* NULL: no mask images */
    int batch;              /* images per forward, >= 1 */
    int h, w;               /* input size; 0: count_input_size */
    const count_read *read; /* NULL: the run's normalisation, no page/channel */
} count_opts;

/* Count every image of args (count_inputs_collect) and write a table:
 * a header line "file count sigma lower95 upper95 ood", then one line per
 * image that could be read, in input order: the path as given/expanded,
 * the predicted count, sigma and count -+ 1.96 sigma (lower bound clamped
 * at 0; sigma and both bounds "nan" for a counter trained with mse), "%.4f",
 * and the out-of-distribution flags (ood_flags: "ok", "n/a" for a run
 * without training statistics, said once on log, or the names of the
 * statistics out of the training range, e.g. "count,intensity"),
 * tab- or comma-separated (CSV quotes fields with ',', '"' or newlines;
 * TSV writes tab, newline and CR in names as \t, \n, \r).  o->output is
 * written atomically after the last image.  With masks_dir (created if
 * missing): per image <stem>_mask.png / _mask.tif and <stem>_sigma.png /
 * _sigma.tif at H/2 x W/2, and with a density counter <stem>_density.tif
 * (its map) and _density.png (see count_files.c for the scaling).
 * Unreadable images are reported on log and skipped.  Returns 0 when every
 * input was counted, 1 when some were reported and skipped, -1 on a fatal
 * error (st: bad configuration, missing checkpoint, write failure; no
 * output file is left). */
int count_run(const cc_config *cfg, const count_opts *o, char *const *args, int nargs, FILE *out,
              FILE *log, cc_status *st);

#endif
