/* checkpoint.h - save and restore a parameter store (and optimizer state)
 * as HDF5, in the layout of docs/SPEC.md "Checkpoint layout (HDF5)".
 *
 * File layout (everything h5py can read without cellcount):
 *   /                       attrs: format = "cellcount-checkpoint",
 *                                  format_version = 1 (int32),
 *                                  plus the caller's ckpt_attr list
 *                                  (strings: variable-length UTF-8,
 *                                  numbers: float64 scalars)
 *   /params/<name>          float32, the parameter's shape, for every
 *                           trainable and buffer (<name> is the store's
 *                           module path, e.g. fpn/heads/mean/3/conv1/weight)
 *   /optim                  attrs: kind ("adam"|"sgd"), lr, betas[2], eps,
 *                           momentum, weight_decay (float64), step (int64)
 *   /optim/exp_avg/<name>, /optim/exp_avg_sq/<name>     Adam (P->m, P->v)
 *   /optim/momentum_buffer/<name>                       SGD  (P->m)
 *                           float32, trainable parameters only (frozen
 *                           ones included)
 *
 * Every function silences HDF5's own stderr error printing for its
 * duration (restoring the caller's handler) and reports failures through
 * the cc_status, naming the file.
 */
#ifndef CC_CHECKPOINT_H
#define CC_CHECKPOINT_H

#include <stdio.h>

#include "autodiff/optim.h"
#include "autodiff/params.h"
#include "autodiff/status.h"

#define CKPT_FORMAT "cellcount-checkpoint"
#define CKPT_FORMAT_VERSION 1

typedef enum ckpt_attr_kind { CKPT_ATTR_STRING = 0, CKPT_ATTR_NUMBER = 1 } ckpt_attr_kind;

/* One root attribute (run configuration).  Borrowed strings. */
typedef struct ckpt_attr {
    const char *key;        /* non-empty, not "format"/"format_version" */
    ckpt_attr_kind kind;
    const char *s;          /* CKPT_ATTR_STRING */
    double d;               /* CKPT_ATTR_NUMBER */
} ckpt_attr;

/* Write P (finalized) and, when opt != NULL, its optimizer state to path.
 * The file is written to "<path>.tmp.<pid>", fsync'ed and renamed over
 * path, so readers see the old file or the complete new one; on any
 * failure the temporary file is removed and an existing file at path is
 * left untouched.  attrs may be NULL when n_attrs == 0; duplicate or
 * reserved keys are errors.  Parameter names must be '/'-separated
 * non-empty components other than "." (they become HDF5 paths).
 * Returns 0, or -1 with a message naming path and the problem (errno text
 * or HDF5's innermost error description). */
int checkpoint_save(const char *path, const cc_params *P, const cc_optim *opt,
                    const ckpt_attr *attrs, int n_attrs, cc_status *st);

/* Restore P (finalized) from path, and with opt != NULL the optimizer
 * state too.  Checks format and format_version, then that the file's
 * /params datasets are exactly P's tensors with the same shapes and
 * float32 type; any difference (another architecture, another Cin, ...)
 * refuses the whole load with a message listing the first ten ("missing
 * NAME" = in the model, not the file; "unexpected NAME" = in the file, not
 * the model; "NAME: file 1x1x3x3, model 1x3x3x3"; "NAME: file float64,
 * model float32"; then "and N more").  When /params matches, the
 * optimizer datasets of opt->kind are checked the same way (names
 * prefixed "optim/exp_avg/" etc.).  Everything is read into staging
 * buffers first (transient memory: one copy of the value, buffer and
 * state slabs), so on any failure P and opt are unchanged.  On success
 * P's value and buf slabs and, with opt, the m slab (Adam: m and v) and
 * opt's lr, betas, eps, momentum, weight_decay and step are overwritten
 * bit-exactly; alignment padding and P->grad are not touched.  opt->kind
 * must equal the file's optimizer kind (an error otherwise: SGD cannot
 * resume Adam state); opt == NULL ignores any optimizer state in the
 * file.  Returns 0 or -1 with a message naming path. */
int checkpoint_load(const char *path, cc_params *P, cc_optim *opt, cc_status *st);

/* Read root attribute key as a string into buf (len bytes, NUL-terminated;
 * variable- or fixed-length HDF5 strings).  Returns 0, 1 when the file has
 * no such attribute (st untouched, buf = ""), or -1 on error (unreadable
 * file, not a string, longer than len - 1). */
int checkpoint_read_attr_string(const char *path, const char *key, char *buf, size_t len,
                                cc_status *st);

/* Read root attribute key, a scalar (or one-element) integer or float,
 * as a double.  Returns 0, 1 when absent (st untouched, *out unchanged),
 * or -1 on error (unreadable file, not a number). */
int checkpoint_read_attr_double(const char *path, const char *key, double *out, cc_status *st);

/* Print one line per dataset in the file, in name order:
 * "<absolute path>\t<shape like 128x1x3x3>\t<dtype>\n" (dtype float32,
 * float64, int64, ... or "other").  Returns 0 or -1. */
int checkpoint_list(const char *path, FILE *out, cc_status *st);

#endif
