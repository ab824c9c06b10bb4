/* ops_binary_loss_util.h - helpers shared by the two sources of the
 * test_ops_binary_loss binary (test_ops_binary_loss.c, test_ops_loss.c). */
#ifndef CC_OPS_BINARY_LOSS_UTIL_H
#define CC_OPS_BINARY_LOSS_UTIL_H

#include <check.h>

#include "autodiff/ops.h"
#include "tests/testutil.h"

/* A context + training tape for tests that drive the tape directly. */
typedef struct opc_fixture {
    cc_ctx ctx;
    cc_tape t;
} opc_fixture;

/* ctx with `threads` (0: default) and a training tape; asserts success. */
void opc_fx_init(opc_fixture *f, int threads);
void opc_fx_free(opc_fixture *f);

/* free() the data of n tu_inputs. */
void opc_free_inputs(tu_input *in, int n);

/* Assert that the tape failed with a message containing op, s1 and s2. */
void opc_assert_error_names(const cc_tape *t, const char *op, const char *s1, const char *s2);

/* Give the leaf x the layout `tag` in place (values reordered into a new
 * arena buffer), to feed ops layouts that no op here produces.  Gradients
 * then arrive in that layout; tape_read_grad() converts them back. */
void opc_relayout(cc_tape *t, cc_tensor *x, dnnl_format_tag_t tag);

/* Naive 3x3 convolution, pad 1, stride 1, no bias (the blocked producer):
 * x (N,C,H,W), w (O,C,3,3) -> out (N,O,H,W) plain. */
void opc_conv3_ref(const tu_input *x, const tu_input *w, float *out);

/* Add the loss test case (test_ops_loss.c) to s. */
void opc_add_loss_cases(Suite *s);

#endif
