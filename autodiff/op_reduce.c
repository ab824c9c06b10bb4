/* op_reduce.c - sum / mean of all elements to a 1-element tensor.
 *
 * args: i[0] 0 sum, 1 mean.  in: x (plain; the builders apply op_plain).
 * Determinism: the elements are cut into fixed chunks of REDUCE_CHUNK; each
 * chunk is summed in double by whichever thread gets it, and the chunk sums
 * are added in chunk order, so the result does not depend on the thread
 * count or on scheduling.
 */
#include "autodiff/op.h"
#include "autodiff/ops.h"

#include <stdlib.h>
#include <string.h>

#define REDUCE_CHUNK 4096

static void reduce_state_free(void *p) { free(p); }

static int reduce_infer(cc_tape *t, cc_node *n, cc_tensor *out, cc_status *st)
{
    (void)t;
    const cc_tensor *x = n->in[0];
    char a[64];
    if (!tensor_is_plain(x))
        return status_set(st, "reduce: input %s is not plain (apply op_plain first)",
                          tensor_shape_str(x, a, sizeof a));
    tensor_set_shape(out, 1, (int64_t[]){1});
    return 0;
}

static int reduce_forward(cc_tape *t, cc_node *n, cc_status *st)
{
    const cc_tensor *x = n->in[0];
    const int64_t numel = tensor_numel(x);
    const int64_t nch = (numel + REDUCE_CHUNK - 1) / REDUCE_CHUNK;
    double *part = tape_alloc(t, sizeof(double) * (size_t)(nch ? nch : 1), st);
    if (!part) return -1;
    const float *v = x->data;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < nch; c++) {
        const int64_t end = c * REDUCE_CHUNK + REDUCE_CHUNK < numel ? c * REDUCE_CHUNK + REDUCE_CHUNK : numel;
        double acc = 0;
        for (int64_t i = c * REDUCE_CHUNK; i < end; i++) acc += v[i];
        part[c] = acc;
    }
    double total = 0;
    for (int64_t c = 0; c < nch; c++) total += part[c];
    if (n->args.i[0] && numel > 0) total /= (double)numel;
    n->out->data[0] = (float)total;
    return 0;
}

static int reduce_backward(cc_tape *t, cc_node *n, cc_status *st)
{
    cc_tensor *x = n->in[0];
    float *g = tape_grad_begin(t, x, st);
    if (!g) return x->requires_grad ? -1 : 0;
    const int64_t numel = tensor_numel(x);
    const float gv = n->args.i[0] ? (float)((double)n->out->grad[0] / (double)numel)
                                  : n->out->grad[0];
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < numel; i++) g[i] = gv;
    tape_grad_end(t, x, g);
    return 0;
}

const cc_op_def op_def_reduce = {"reduce", OPK_OTHER, reduce_infer, reduce_forward,
                                 reduce_backward, reduce_state_free, NULL};

static cc_tensor *reduce_record(cc_tape *t, cc_tensor *x, int mean)
{
    cc_op_args a;
    memset(&a, 0, sizeof a);
    a.i[0] = mean;
    return tape_record(t, OP_reduce, (cc_tensor *[]){op_plain(t, x)}, 1, &a);
}

cc_tensor *op_sum(cc_tape *t, cc_tensor *x) { return reduce_record(t, x, 0); }

cc_tensor *op_mean(cc_tape *t, cc_tensor *x) { return reduce_record(t, x, 1); }
