/* summary.h - torchsummary-like model descriptions: every layer with its
 * output shape, parameter count and multiply-accumulates, and the totals;
 * plus the parameter path table (docs/PARAMS.md is generated from it).
 *
 * The layer list is read off the tape after one inference forward: each
 * node gives its op, output shape and inputs, and an input that is one of
 * the store's tensors is a parameter, whose path (minus the leaf name) names
 * the layer.  MACs follow torch_ref.py: conv n*ho*wo*cout*cin*k*k, linear
 * n*in*out; everything else counts 0.
 */
#ifndef CC_SUMMARY_H
#define CC_SUMMARY_H

#include <stdint.h>
#include <stdio.h>

#include "autodiff/params.h"
#include "autodiff/tape.h"

typedef enum summary_model { SUMMARY_FPN = 0, SUMMARY_COUNTER = 1 } summary_model;

typedef struct summary_options {
    summary_model model;
    char arch[32];          /* counter architecture (registry name) */
    int channels, height, width;    /* input C x H x W */
    int depth, fpn_width;   /* FPN D and d */
    int width_div;          /* counter width divisor (1 = SPEC) */
    int list_params;        /* also print the parameter path table */
    int threads;            /* <= 0: OpenMP default */
} summary_options;

typedef struct summary_totals {
    int64_t params;         /* trainable elements in the store */
    int64_t params_used;    /* trainable elements read by the forward */
    int64_t buffers;        /* buffer elements (BN running stats, counts) */
    int64_t macs;           /* forward multiply-accumulates per image */
    int layers;             /* rows printed (layout-only reorders skipped) */
} summary_totals;

/* Defaults for a model: FPN 1x192x256, D 4, d 128; counter vgg11 1x96x128. */
void summary_options_default(summary_options *o, summary_model model);

/* Walk the nodes recorded on t (one forward of a batch of `batch` images
 * whose parameters live in P) and accumulate totals; print the table to f
 * unless f is NULL.  Never fails. */
void summary_walk(const cc_tape *t, const cc_params *P, int64_t batch, FILE *f,
                  summary_totals *tot);

/* Print the totals block ("Trainable parameters: 7,113,236", ...). */
void summary_print_totals(FILE *f, const summary_totals *tot);

/* One line per tensor: path, shape, kind, elements. */
void summary_print_params(FILE *f, const cc_params *P);

/* Build the model o describes, run one inference forward on a batch of 1,
 * print the table, the totals and (list_params) the path table to f (may
 * be NULL: totals only).  Returns 0, or -1 with a message (bad options, an
 * input size the model cannot take). */
int summary_run(const summary_options *o, FILE *f, summary_totals *tot, cc_status *st);

/* "7,113,236" into buf.  Returns buf. */
const char *summary_commas(int64_t v, char *buf, size_t n);

#endif
