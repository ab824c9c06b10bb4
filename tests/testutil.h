/* testutil.h - shared helpers for the Check suites: random inputs, a forward
 * runner and a central finite-difference gradient checker for any graph.
 *
 * All helpers create their own cc_ctx, so call them inside a test (Check
 * forks each test; never touch OpenMP/oneDNN in a test binary's main()).
 */
#ifndef CC_TESTUTIL_H
#define CC_TESTUTIL_H

#include <stdint.h>

#include "autodiff/ops.h"

typedef struct tu_input {
    int ndim;
    int64_t dims[4];
    float *data;            /* plain values, owned by the caller */
    int requires_grad;      /* check this input's gradient */
} tu_input;

/* Build the graph under test from the inputs; return its output. */
typedef cc_tensor *(*tu_build_fn)(cc_tape *t, cc_tensor **x, void *user);

/* Uniform values in [lo, hi) (seeded). */
void tu_fill_uniform(float *x, int64_t n, float lo, float hi, uint64_t seed);
/* Uniform in +-[lo, hi): keeps inputs away from kinks at 0 (ReLU & co). */
void tu_fill_away_from_zero(float *x, int64_t n, float lo, float hi, uint64_t seed);
/* numel of a tu_input. */
int64_t tu_numel(const tu_input *in);
/* A malloc'ed tu_input (data allocated, filled uniform in [lo,hi)). */
tu_input tu_make(int ndim, const int64_t *dims, float lo, float hi, uint64_t seed, int requires_grad);

/* Run the graph once (training or inference tape) and return its output in
 * plain order (malloc'ed, *numel set), or NULL; errors go to msg. */
float *tu_forward(tu_build_fn fn, void *user, tu_input *in, int n_in, int training,
                  int64_t *numel, char *msg, size_t msg_len);

/* Compare analytic and central-difference gradients of sum(R * out), R a
 * fixed random tensor, for every input with requires_grad.  An element
 * passes when |analytic - numeric| <= atol + rtol * |numeric|.  Returns 1 on
 * success; on failure prints the worst element to stderr and returns 0. */
int tu_gradcheck(const char *name, tu_build_fn fn, void *user, tu_input *in, int n_in,
                 double eps, double atol, double rtol);

/* max |a - b| over n values, and the largest |b| (for messages). */
double tu_max_abs_diff(const float *a, const float *b, int64_t n);

#endif
