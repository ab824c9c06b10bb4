/* op_bnorm.c - batch normalization, on the engine's own kernels
 * (bnorm_kern.h: why not oneDNN's).
 *
 * in: x (N,C,H,W) or (N,C), gamma (C), beta (C).
 * aux: [0] run_mean (C), [1] run_var (C), [2] num_batches (1) or NULL.
 * args: i[0] statistics (BN_BATCH / BN_RUNNING), f[0] momentum (< 0:
 *       cumulative average, needs num_batches), f[1] eps,
 *       i[1] 1 = LeakyReLU fused after the normalisation, f[2] its slope,
 *       i[2] 1 = synchronised statistics (BN_BATCH with ctx->allreduce_sum).
 *
 * BN_BATCH (op_batch_norm on a training tape): normalise with the batch
 * mean and biased variance, keep both in this step's arena for the full
 * backward through the statistics, then update the running buffers as
 * PyTorch does: r = (1-m) r + m b, with the UNBIASED variance
 * b = var * M/(M-1), M = N*H*W, and num_batches += 1.  The statistics come
 * from sums of x and x^2 in double (bn_sums), var = E[x^2] - mean^2 in
 * double: exact to float precision unless |mean| / std exceeds ~1e4.
 * BN_RUNNING (inference tape, or op_batch_norm_eval): the running buffers;
 * on a training tape they are copied to the arena so the backward sees
 * exactly what the forward used, and the backward treats them as constants.
 *
 * x keeps its layout (plain or blocked on the channels) for the output and
 * both gradients, so a conv -> BN -> LeakyReLU chain never reorders.
 *
 * Fused LeakyReLU (op_batch_norm_lrelu): applied in the normalising pass;
 * backward scales the incoming gradient in place by the slope where the
 * output is <= 0 (the sign of the output is the sign of the
 * pre-activation) in the pass that sums it.  One activation tensor per conv
 * block less, and no pass of its own either way.  (N,C) is handled as
 * (N,C,1,1) through a reshaped descriptor of the same memory.
 *
 * Backward: with B = sum dy and G = sum dy xhat per channel (this
 * process's values), s = sqrt(var + eps),
 *     dx = gamma / s * (dy - B' / M - xhat G' / M)
 * where B' = B, G' = G for batch statistics, B' = G' = 0 for running
 * ones; d gamma = G, d beta = B.
 *
 * Synchronised BN (ctx->allreduce_sum set when the op is recorded in
 * training mode; ctx.h): the statistics are those of the batch of all
 * participants.  Forward: the hook sums (M, sum x, sum x^2) in double over
 * the participants.  Backward: the hook sums (w B, w G) with
 * w = M / M_total (each participant's loss is the mean over its own samples
 * and the gradients are later combined with that weight, dist.h); those
 * sums are B', G' above, with M this process's count.  d gamma and d beta
 * stay this process's.  Every participant must reach the same BN nodes in
 * the same order (same graph), or the hook deadlocks.
 */
#include "autodiff/bnorm_kern.h"
#include "autodiff/op.h"
#include "autodiff/ops.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { BN_BATCH = 0, BN_RUNNING = 1 };

typedef struct bn_state {
    bn_geom g;                      /* x's layout seen as 4-D */
    float *mean, *var;              /* this step's statistics (arena or running) */
    double *red;                    /* synchronised: the hook's buffer (1 + 2C) */
    double m_local, m_total;        /* values per channel: here, and in all */
} bn_state;

static void bn_free(void *p)
{
    bn_state *s = p;
    if (!s) return;
    free(s->red);
    free(s);
}

/* A per-channel vector must be plain 1-D of length C. */
static int bn_check_vec(const cc_tensor *v, const char *what, const cc_tensor *x, cc_status *st)
{
    char a[64], b[64];
    if (v->ndim != 1 || v->dims[0] != x->dims[1])
        return status_set(st, "batch_norm: %s has shape %s, expected %lld (the channels of input %s)",
                          what, tensor_shape_str(v, a, sizeof a), (long long)x->dims[1],
                          tensor_shape_str(x, b, sizeof b));
    if (!tensor_is_plain(v))
        return status_set(st, "batch_norm: %s (%s) is not plain", what,
                          tensor_shape_str(v, a, sizeof a));
    return 0;
}

static int bn_check(const cc_node *n, cc_status *st)
{
    const cc_tensor *x = n->in[0];
    const cc_op_args *g = &n->args;
    char a[64];
    if (x->ndim != 2 && x->ndim != 4)
        return status_set(st, "batch_norm: input must be (N,C,H,W) or (N,C), got %s",
                          tensor_shape_str(x, a, sizeof a));
    if (bn_check_vec(n->in[1], "gamma", x, st) || bn_check_vec(n->in[2], "beta", x, st)) return -1;
    if (g->f[0] < 0 && !g->aux[2])
        return status_set(st, "batch_norm: a cumulative average (momentum < 0) needs num_batches");
    if (!(g->f[1] > 0) || !(g->f[0] <= 1))
        return status_set(st, "batch_norm: need eps > 0 and momentum <= 1 (got %g, %g)",
                          (double)g->f[1], (double)g->f[0]);
    if (!g->aux[0] || !g->aux[1])
        return status_set(st, "batch_norm: running_mean and running_var are required");
    if (bn_check_vec(g->aux[0], "running_mean", x, st) ||
        bn_check_vec(g->aux[1], "running_var", x, st))
        return -1;
    if (g->aux[2] && tensor_numel(g->aux[2]) != 1)
        return status_set(st, "batch_norm: num_batches has shape %s, expected 1",
                          tensor_shape_str(g->aux[2], a, sizeof a));
    /* As PyTorch: the batch variance of a single value is meaningless and
     * the unbiased running estimate would divide by zero. */
    if (g->i[0] == BN_BATCH && !g->i[2] && tensor_numel(x) / x->dims[1] == 1)
        return status_set(st, "batch_norm: expected more than 1 value per channel when "
                              "training, got input %s", tensor_shape_str(x, a, sizeof a));
    return 0;
}

static int bn_infer(cc_tape *t, cc_node *n, cc_tensor *out, cc_status *st)
{
    const cc_tensor *x = n->in[0];
    char a[64];
    if (bn_check(n, st)) return -1;
    bn_state *s = calloc(1, sizeof *s);
    if (!s) return status_set(st, "batch_norm: out of memory");
    n->state = s;
    dnnl_memory_desc_t md4 = x->md;
    if (x->ndim == 2) {
        dnnl_dims_t d4 = {x->dims[0], x->dims[1], 1, 1};
        DNNL_TRY(st, "batch_norm", "(N,C) -> (N,C,1,1) descriptor",
                 dnnl_memory_desc_reshape(&md4, &x->md, 4, d4));
    }
    if (bn_geom_init(&s->g, &md4, t->ctx->isa))
        return status_set(st, "batch_norm: input %s has a layout blocked on more than the "
                              "channels, which this op does not take",
                          tensor_shape_str(x, a, sizeof a));
    if (n->args.i[2] && !(s->red = malloc(sizeof *s->red * (size_t)(1 + 2 * x->dims[1]))))
        return status_set(st, "batch_norm: out of memory");
    out->ndim = x->ndim;
    memcpy(out->dims, x->dims, sizeof out->dims);
    out->md = x->md;
    return 0;
}

/* PyTorch's update: r = m * b + (1 - m) * r with the unbiased variance;
 * momentum < 0 (with num_batches): m = 1 / (num_batches + 1), the
 * cumulative average (PyTorch's momentum=None). */
static void bn_update_running(const cc_node *n, const float *mean, const float *var)
{
    const cc_tensor *x = n->in[0];
    const bn_state *s = n->state;
    const int64_t C = x->dims[1];
    /* synchronised: the variance is that of all participants' values */
    const double M = n->args.i[2] ? s->m_total : (double)(tensor_numel(x) / C);
    float m = n->args.f[0];
    if (m < 0) {
        assert(n->args.aux[2] && "cumulative BN needs num_batches");
        m = (float)(1.0 / ((double)n->args.aux[2]->data[0] + 1.0));
    }
    const float unbias = (float)(M / (M - 1));
    float *rm = n->args.aux[0]->data, *rv = n->args.aux[1]->data;
    for (int64_t c = 0; c < C; c++) {
        rm[c] = m * mean[c] + (1 - m) * rm[c];
        rv[c] = m * (var[c] * unbias) + (1 - m) * rv[c];
    }
    if (n->args.aux[2]) n->args.aux[2]->data[0] += 1;
}

/* Batch statistics into s->mean / s->var: this process's, or (synchronised)
 * those of all participants through the hook. */
static int bn_batch_stats(cc_tape *t, cc_node *n, cc_status *st)
{
    bn_state *s = n->state;
    const cc_tensor *x = n->in[0];
    const int64_t C = x->dims[1];
    const double M = (double)(tensor_numel(x) / C);
    double *part = tape_alloc(t, sizeof(double) * bn_part_doubles(&s->g), st);
    double *sum = tape_alloc(t, sizeof(double) * 2 * (size_t)C, st);
    if (!part || !sum) return -1;
    bn_sums(&s->g, x->data, part, sum, sum + C);
    double Mt = M;
    if (n->args.i[2]) {
        double *r = s->red;
        r[0] = M;
        memcpy(r + 1, sum, sizeof(double) * 2 * (size_t)C);
        if (t->ctx->allreduce_sum(t->ctx->allreduce_user, r, (int)(1 + 2 * C), st)) return -1;
        Mt = r[0];
        if (!(Mt > 1))
            return status_set(st, "batch_norm: expected more than 1 value per channel when "
                                  "training, got %g over all synchronised processes", Mt);
        memcpy(sum, r + 1, sizeof(double) * 2 * (size_t)C);
    }
    s->m_local = M;
    s->m_total = Mt;
    for (int64_t c = 0; c < C; c++) {
        const double m = sum[c] / Mt, v = sum[C + c] / Mt - m * m;
        s->mean[c] = (float)m;
        s->var[c] = (float)(v > 0 ? v : 0);
    }
    return 0;
}

static int bn_forward(cc_tape *t, cc_node *n, cc_status *st)
{
    bn_state *s = n->state;
    const cc_tensor *x = n->in[0];
    const int64_t C = x->dims[1], cp = bn_cpad(&s->g);
    const size_t cbytes = sizeof(float) * (size_t)C;
    const int batch = n->args.i[0] == BN_BATCH;
    s->mean = n->args.aux[0]->data;
    s->var = n->args.aux[1]->data;
    if (batch || t->training) {
        /* batch: computed here; running on a training tape: a snapshot,
         * since a later op may update the same buffers before backward. */
        s->mean = tape_alloc(t, cbytes, st);
        s->var = tape_alloc(t, cbytes, st);
        if (!s->mean || !s->var) return -1;
        if (!batch) {
            memcpy(s->mean, n->args.aux[0]->data, cbytes);
            memcpy(s->var, n->args.aux[1]->data, cbytes);
        }
    }
    if (batch && bn_batch_stats(t, n, st)) return -1;
    /* m, k, b padded to whole channel blocks with zeros: padding lanes of
     * a blocked layout come out 0 */
    float *v = tape_alloc(t, sizeof(float) * 3 * (size_t)cp, st);
    if (!v) return -1;
    memset(v, 0, sizeof(float) * 3 * (size_t)cp);
    const float *gamma = n->in[1]->data, *beta = n->in[2]->data;
    for (int64_t c = 0; c < C; c++) {
        v[c] = s->mean[c];
        v[cp + c] = (float)(gamma[c] / sqrt((double)s->var[c] + n->args.f[1]));
        v[2 * cp + c] = beta[c];
    }
    bn_norm_forward(&s->g, x->data, v, v + cp, v + 2 * cp, n->args.i[1], n->args.f[2],
                    n->out->data);
    if (batch) bn_update_running(n, s->mean, s->var);
    return 0;
}

static int bn_backward(cc_tape *t, cc_node *n, cc_status *st)
{
    bn_state *s = n->state;
    cc_tensor *x = n->in[0], *gamma = n->in[1], *beta = n->in[2];
    if (!x->requires_grad && !gamma->requires_grad && !beta->requires_grad) return 0;
    const int64_t C = x->dims[1], cp = bn_cpad(&s->g);
    const double eps = n->args.f[1], M = (double)(tensor_numel(x) / C);
    double *part = tape_alloc(t, sizeof(double) * bn_part_doubles(&s->g), st);
    double *sum = tape_alloc(t, sizeof(double) * 2 * (size_t)C, st);
    if (!part || !sum) return -1;
    /* Only this node reads its output's gradient: the fused LeakyReLU
     * scales it in place.  sum: [B | sum dy x], then [B | G]. */
    bn_grad_sums(&s->g, x->data, n->out->grad, n->args.i[1] ? n->out->data : NULL, n->args.f[2],
                 part, sum, sum + C);
    for (int64_t c = 0; c < C; c++)
        sum[C + c] = (sum[C + c] - (double)s->mean[c] * sum[c]) / sqrt((double)s->var[c] + eps);
    if (gamma->requires_grad || beta->requires_grad) {
        for (int k = 0; k < 2; k++) {
            cc_tensor *p = k ? beta : gamma;
            if (!p->requires_grad) continue;
            float *g = tape_grad_begin(t, p, st);
            if (!g) return -1;
            for (int64_t c = 0; c < C; c++) g[c] = (float)sum[(k ? 0 : C) + c];
            tape_grad_end(t, p, g);
        }
    }
    if (n->args.i[2]) {     /* every participant calls the hook */
        const double w = s->m_local / s->m_total;
        double *r = s->red;
        for (int64_t c = 0; c < 2 * C; c++) r[c] = w * sum[c];
        if (t->ctx->allreduce_sum(t->ctx->allreduce_user, r, (int)(2 * C), st)) return -1;
        memcpy(sum, r, sizeof(double) * 2 * (size_t)C);
    }
    if (!x->requires_grad) return 0;
    /* dx = p dy + q (x - mean) + r, vectors padded with zeros */
    float *v = tape_alloc(t, sizeof(float) * 4 * (size_t)cp, st);
    if (!v) return -1;
    memset(v, 0, sizeof(float) * 4 * (size_t)cp);
    const int batch = n->args.i[0] == BN_BATCH;
    for (int64_t c = 0; c < C; c++) {
        const double is = 1.0 / sqrt((double)s->var[c] + eps), p = gamma->data[c] * is;
        v[c] = s->mean[c];
        v[cp + c] = (float)p;
        if (batch) {
            v[2 * cp + c] = (float)(-p * is * sum[C + c] / M);
            v[3 * cp + c] = (float)(-p * sum[c] / M);
        }
    }
    float *gx = tape_grad_begin(t, x, st);
    if (!gx) return -1;
    bn_norm_backward(&s->g, n->out->grad, x->data, v, v + cp, v + 2 * cp, v + 3 * cp, gx);
    tape_grad_end(t, x, gx);
    return 0;
}

const cc_op_def op_def_batch_norm = {"batch_norm", OPK_BNORM, bn_infer, bn_forward, bn_backward,
                                     bn_free, NULL};

static cc_tensor *bn_record(cc_tape *t, cc_tensor *x, cc_tensor *gamma, cc_tensor *beta,
                            cc_tensor *run_mean, cc_tensor *run_var, cc_tensor *num_batches,
                            int stats, float momentum, float eps, int lrelu, float slope)
{
    cc_op_args a;
    memset(&a, 0, sizeof a);
    a.i[0] = stats;
    a.i[1] = lrelu;
    a.f[0] = momentum;
    a.f[1] = eps;
    a.f[2] = lrelu ? slope : 0.0f;
    a.aux[0] = run_mean;
    a.aux[1] = run_var;
    a.aux[2] = num_batches;
    a.i[2] = stats == BN_BATCH && t->ctx->allreduce_sum != NULL;
    cc_tensor *in[3] = {x, gamma, beta};
    return tape_record(t, OP_batch_norm, in, 3, &a);
}

cc_tensor *op_batch_norm(cc_tape *t, cc_tensor *x, cc_tensor *gamma, cc_tensor *beta,
                         cc_tensor *run_mean, cc_tensor *run_var, cc_tensor *num_batches,
                         float momentum, float eps)
{
    return bn_record(t, x, gamma, beta, run_mean, run_var, num_batches,
                     t->training ? BN_BATCH : BN_RUNNING, momentum, eps, 0, 0.0f);
}

cc_tensor *op_batch_norm_lrelu(cc_tape *t, cc_tensor *x, cc_tensor *gamma, cc_tensor *beta,
                               cc_tensor *run_mean, cc_tensor *run_var, cc_tensor *num_batches,
                               float momentum, float eps, float slope)
{
    return bn_record(t, x, gamma, beta, run_mean, run_var, num_batches,
                     t->training ? BN_BATCH : BN_RUNNING, momentum, eps, 1, slope);
}

cc_tensor *op_batch_norm_eval_lrelu(cc_tape *t, cc_tensor *x, cc_tensor *gamma, cc_tensor *beta,
                                    cc_tensor *run_mean, cc_tensor *run_var, float eps, float slope)
{
    return bn_record(t, x, gamma, beta, run_mean, run_var, NULL, BN_RUNNING, 0.0f, eps, 1, slope);
}

cc_tensor *op_batch_norm_eval(cc_tape *t, cc_tensor *x, cc_tensor *gamma, cc_tensor *beta,
                              cc_tensor *run_mean, cc_tensor *run_var, float eps)
{
    return bn_record(t, x, gamma, beta, run_mean, run_var, NULL, BN_RUNNING, 0.0f, eps, 0, 0.0f);
}
