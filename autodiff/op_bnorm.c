/* op_bnorm.c - batch normalization on oneDNN.
 *
 * in: x (N,C,H,W) or (N,C), gamma (C), beta (C).
 * aux: [0] run_mean (C), [1] run_var (C), [2] num_batches (1) or NULL.
 * args: i[0] statistics (BN_BATCH / BN_RUNNING), f[0] momentum (< 0:
 *       cumulative average, needs num_batches), f[1] eps,
 *       i[1] 1 = LeakyReLU fused after the normalisation, f[2] its slope,
 *       i[2] 1 = synchronised statistics (BN_BATCH with ctx->allreduce_sum).
 *
 * BN_BATCH (op_batch_norm on a training tape): normalise with the batch
 * mean and biased variance (dnnl_forward_training), keep both in this step's
 * arena for the full backward through the statistics, then update the
 * running buffers as PyTorch does: r = (1-m) r + m b, with the UNBIASED
 * variance b = var * M/(M-1), M = N*H*W, and num_batches += 1.
 * BN_RUNNING (inference tape, or op_batch_norm_eval): dnnl_use_global_stats
 * with the running buffers; on a training tape the statistics used are
 * copied to the arena so the backward sees exactly what the forward used.
 *
 * x keeps its layout (plain or blocked) for src, dst and both diffs, so a
 * conv -> BN -> LeakyReLU chain never reorders.
 *
 * Fused LeakyReLU (op_batch_norm_lrelu): oneDNN 2.6's BN fuses only ReLU,
 * so the activation runs in place on BN's output, and backward scales the
 * incoming gradient in place by the slope where that output is <= 0 (the
 * sign of the output is the sign of the pre-activation), before BN's own
 * backward.  One activation tensor per conv block less, and one pass less
 * over it each way.  (N,C) is handed to oneDNN
 * as (N,C,1,1) through a reshaped descriptor of the same memory.  gamma and
 * beta are separate scale/shift memories (dnnl_use_scale | dnnl_use_shift).
 *
 * Synchronised BN (ctx->allreduce_sum set when the op is recorded in
 * training mode; ctx.h): the statistics are those of the batch of all
 * participants.  Forward: oneDNN's training forward gives this process's
 * mean and biased variance over its M values per channel; the hook sums
 * (M, M mean, M (var + mean^2)) in double over the participants, and a
 * second forward with dnnl_use_global_stats normalises with the global
 * mean and variance (double keeps E[x^2] - mean^2 exact to float precision
 * unless |mean| / std exceeds ~1e4).  Backward: oneDNN's use_global_stats
 * backward treats the statistics as constants and gives
 * dx0 = gamma / s * dy (s = sqrt(var + eps)) together with this process's
 * sums  B = sum dy  and  G = sum dy xhat  (its diff_shift and diff_scale);
 * the hook sums (w B, w G) with w = M / M_total (each participant's loss is
 * the mean over its own samples and the gradients are later combined with
 * that weight, dist.h), and the true gradient of the global-batch BN is
 *     dx = dx0 - gamma / (s M) (sum w B + xhat sum w G),
 * applied in x's own layout (plain, or blocked on channels).  Without the
 * hook the op is unchanged bit for bit.  Every participant must reach the
 * same BN nodes in the same order (same graph), or the hook deadlocks.
 */
#include "autodiff/op.h"
#include "autodiff/ops.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { BN_BATCH = 0, BN_RUNNING = 1 };

typedef struct bn_state {
    dnnl_primitive_desc_t fpd, bpd;
    dnnl_primitive_t fwd, bwd;
    dnnl_memory_t fscr, bscr;
    dnnl_memory_t m_src, m_dst, m_scale, m_shift, m_mean, m_var, m_ws;
    dnnl_memory_t m_dsrc, m_dscale, m_dshift;
    dnnl_memory_desc_t data_md;     /* x's layout seen as 4-D */
    unsigned flags;
    size_t ws_bytes;
    float *mean, *var, *ws;         /* this step's statistics (arena) */
    /* synchronised BN: use_global_stats primitives, the hook's buffer
     * (1 + 2C doubles), this process's and all participants' values per
     * channel */
    dnnl_primitive_desc_t gfpd, gbpd;
    dnnl_primitive_t gfwd, gbwd;
    dnnl_memory_t gfscr, gbscr;
    double *red;
    double m_local, m_total;
} bn_state;

/* ---- the fused LeakyReLU ----
 * gcc -O2 leaves a plain loop scalar and branchy (a misprediction per
 * random sign), so 8 lanes at a time with vector extensions, branch-free:
 * x * (x > 0 ? 1 : slope) via a bit select. */
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

/* d[i] *= (s[i] > 0 ? 1 : slope) for 8*b0 <= i < 8*b1; d may equal s.
 * One body, compiled for each ISA variant (isa.h): exact, so all variants
 * give the same bits. */
#define LRELU_BLOCKS_BODY                                                    \
    {                                                                        \
        const v8f zero = {0}, one = zero + 1.0f, sl = zero + slope;          \
        for (int64_t b = b0; b < b1; b++) {                                  \
            v8f sv, dv;                                                      \
            memcpy(&sv, s + 8 * b, sizeof sv);                               \
            memcpy(&dv, d + 8 * b, sizeof dv);                               \
            const v8i pos = sv > zero;                                       \
            dv *= (v8f)(((v8i)one & pos) | ((v8i)sl & ~pos));                \
            memcpy(d + 8 * b, &dv, sizeof dv);                               \
        }                                                                    \
    }
static void lrelu_blocks_sse2(float *d, const float *s, int64_t b0, int64_t b1, float slope)
    LRELU_BLOCKS_BODY
#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static void lrelu_blocks_avx2(float *d, const float *s,
                                                                   int64_t b0, int64_t b1,
                                                                   float slope)
    LRELU_BLOCKS_BODY
__attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma"))) static void
lrelu_blocks_avx512(float *d, const float *s, int64_t b0, int64_t b1, float slope)
    LRELU_BLOCKS_BODY
#endif

/* d[i] *= (s[i] > 0 ? 1 : slope) for i < m; d may equal s.  The parallel
 * loop stays in this (baseline) function; each thread's range runs in the
 * isa variant. */
static void lrelu_scale(float *d, const float *s, int64_t m, float slope, cc_isa isa)
{
    void (*blocks)(float *, const float *, int64_t, int64_t, float) = lrelu_blocks_sse2;
#if defined(__x86_64__)
    if (isa == CC_ISA_AVX512) blocks = lrelu_blocks_avx512;
    else if (isa == CC_ISA_AVX2) blocks = lrelu_blocks_avx2;
#endif
    enum { CHUNK = 4096 };  /* 8-float blocks per task */
    const int64_t nb = m / 8, nc = (nb + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) if (m > 32768)
    for (int64_t c = 0; c < nc; c++)
        blocks(d, s, c * CHUNK, (c + 1) * CHUNK < nb ? (c + 1) * CHUNK : nb, slope);
    for (int64_t i = 8 * nb; i < m; i++) d[i] *= s[i] > 0.0f ? 1.0f : slope;
}

static void bn_free(void *p)
{
    bn_state *s = p;
    if (!s) return;
    if (s->fwd) dnnl_primitive_destroy(s->fwd);
    if (s->bwd) dnnl_primitive_destroy(s->bwd);
    if (s->fpd) dnnl_primitive_desc_destroy(s->fpd);
    if (s->bpd) dnnl_primitive_desc_destroy(s->bpd);
    if (s->gfwd) dnnl_primitive_destroy(s->gfwd);
    if (s->gbwd) dnnl_primitive_destroy(s->gbwd);
    if (s->gfpd) dnnl_primitive_desc_destroy(s->gfpd);
    if (s->gbpd) dnnl_primitive_desc_destroy(s->gbpd);
    free(s->red);
    dnnl_memory_t mems[] = {s->gfscr, s->gbscr, s->fscr, s->bscr, s->m_src, s->m_dst, s->m_scale, s->m_shift,
                            s->m_mean, s->m_var, s->m_ws, s->m_dsrc, s->m_dscale, s->m_dshift};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        if (mems[i]) dnnl_memory_destroy(mems[i]);
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

static const dnnl_memory_desc_t *pd_arg_md(const_dnnl_primitive_desc_t pd, int arg)
{
    return dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, arg);
}

/* ---- synchronised statistics (see the top of the file) ---- */

/* The use_global_stats forward (training kind: the hint of its backward)
 * and the hook's buffer. */
static int bn_sync_infer(cc_tape *t, bn_state *s, float eps, int64_t C, cc_status *st)
{
    dnnl_batch_normalization_desc_t bd;
    DNNL_TRY(st, "batch_norm", "synchronised forward descriptor",
             dnnl_batch_normalization_forward_desc_init(&bd, dnnl_forward_training, &s->data_md,
                                                        eps, s->flags | dnnl_use_global_stats));
    if (tape_prim_make(t, &bd, NULL, &s->gfpd, &s->gfwd, &s->gfscr, "batch_norm",
                       "synchronised forward primitive descriptor", st))
        return -1;
    if (!dnnl_memory_desc_equal(dnnl_primitive_desc_query_md(s->gfpd, dnnl_query_dst_md, 0),
                                &s->data_md))
        return status_set(st, "batch_norm: oneDNN changed the layout of the output");
    if (!(s->red = malloc(sizeof *s->red * (size_t)(1 + 2 * C))))
        return status_set(st, "batch_norm: out of memory");
    return 0;
}

/* After the local training forward (s->mean, s->var: this process's
 * statistics): sum them over the participants, overwrite s->mean/s->var
 * with the global ones and normalise again with them.  a: the forward's
 * arguments (SRC, DST, SCALE, SHIFT, MEAN, VARIANCE first). */
static int bn_sync_forward(cc_tape *t, cc_node *n, dnnl_exec_arg_t *a, cc_status *st)
{
    bn_state *s = n->state;
    const int64_t C = n->in[0]->dims[1];
    const double M = (double)(tensor_numel(n->in[0]) / C);
    double *r = s->red;
    r[0] = M;
    for (int64_t c = 0; c < C; c++) {
        const double m = s->mean[c], v = s->var[c];
        r[1 + c] = M * m;
        r[1 + C + c] = M * (v + m * m);
    }
    if (t->ctx->allreduce_sum(t->ctx->allreduce_user, r, (int)(1 + 2 * C), st)) return -1;
    const double Mt = r[0];
    if (!(Mt > 1))
        return status_set(st, "batch_norm: expected more than 1 value per channel when "
                              "training, got %g over all synchronised processes", Mt);
    for (int64_t c = 0; c < C; c++) {
        const double m = r[1 + c] / Mt, v = r[1 + C + c] / Mt - m * m;
        s->mean[c] = (float)m;
        s->var[c] = (float)(v > 0 ? v : 0);
    }
    s->m_local = M;
    s->m_total = Mt;
    return tape_exec(t, s->gfwd, s->gfscr, 6, a, "batch_norm synchronised forward", st);
}

static int bn_sync_make_bwd(cc_tape *t, bn_state *s, float eps, cc_status *st)
{
    dnnl_batch_normalization_desc_t bd;
    DNNL_TRY(st, "batch_norm", "synchronised backward descriptor",
             dnnl_batch_normalization_backward_desc_init(&bd, dnnl_backward, &s->data_md,
                                                         &s->data_md, eps,
                                                         s->flags | dnnl_use_global_stats));
    if (tape_prim_make(t, &bd, s->gfpd, &s->gbpd, &s->gbwd, &s->gbscr, "batch_norm",
                       "synchronised backward primitive descriptor", st))
        return -1;
    if (!dnnl_memory_desc_equal(pd_arg_md(s->gbpd, DNNL_ARG_DIFF_SRC), &s->data_md) ||
        !dnnl_memory_desc_equal(pd_arg_md(s->gbpd, DNNL_ARG_DIFF_DST), &s->data_md))
        return status_set(st, "batch_norm: oneDNN changed the layout of the gradients");
    return tape_mem_create(t, &s->m_dsrc, &s->data_md, st) ||
           tape_mem_create(t, &s->m_dscale, pd_arg_md(s->gbpd, DNNL_ARG_DIFF_SCALE), st) ||
           tape_mem_create(t, &s->m_dshift, pd_arg_md(s->gbpd, DNNL_ARG_DIFF_SHIFT), st);
}

/* d[i] -= a[c] + b[c] x[i] over the real (not padding) elements of a 4-D
 * memory md, c the channel of element i.  Plain layouts with any strides,
 * and layouts blocked once on the channels (nChw8c, nChw16c), which is what
 * oneDNN's convolutions hand BN. */
static int bn_channel_affine_sub(float *d, const float *x, const dnnl_memory_desc_t *md,
                                 const float *a, const float *b, cc_status *st)
{
    const dnnl_blocking_desc_t *bk = &md->format_desc.blocking;
    if (md->format_kind != dnnl_blocked || md->ndims != 4 || bk->inner_nblks > 1 ||
        (bk->inner_nblks == 1 && bk->inner_idxs[0] != 1))
        return status_set(st, "batch_norm: synchronised statistics do not support the layout "
                              "of this input (blocked on more than the channels)");
    const int64_t B = bk->inner_nblks ? bk->inner_blks[0] : 1;
    const int64_t N = md->dims[0], C = md->dims[1], H = md->dims[2], W = md->dims[3];
    const int64_t CB = (C + B - 1) / B, o0 = md->offset0;
    const int64_t s0 = bk->strides[0], s1 = bk->strides[1], s2 = bk->strides[2],
                  s3 = bk->strides[3];
#pragma omp parallel for collapse(2) schedule(static) if (N * C * H * W > 32768)
    for (int64_t n = 0; n < N; n++)
        for (int64_t cb = 0; cb < CB; cb++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t w = 0; w < W; w++) {
                    const int64_t o = o0 + n * s0 + cb * s1 + h * s2 + w * s3;
                    for (int64_t j = 0; j < B && cb * B + j < C; j++) {
                        const int64_t c = cb * B + j;
                        d[o + j] -= a[c] + b[c] * x[o + j];
                    }
                }
    return 0;
}

/* After the use_global_stats backward: gx = gamma / s * dy, gg = sum dy
 * xhat and gb = sum dy over this process's values.  Sums the weighted
 * gg/gb over the participants (every participant calls the hook, whatever
 * needs a gradient here) and turns gx into the global-batch gradient. */
static int bn_sync_backward(cc_tape *t, cc_node *n, float *gx, const float *gg, const float *gb,
                            cc_status *st)
{
    bn_state *s = n->state;
    const cc_tensor *x = n->in[0], *gamma = n->in[1];
    const int64_t C = x->dims[1];
    const double w = s->m_local / s->m_total;
    double *r = s->red;
    for (int64_t c = 0; c < C; c++) {
        r[c] = w * gb[c];
        r[C + c] = w * gg[c];
    }
    if (t->ctx->allreduce_sum(t->ctx->allreduce_user, r, (int)(2 * C), st)) return -1;
    if (!x->requires_grad) return 0;
    float *ab = tape_alloc(t, sizeof(float) * 2 * (size_t)C, st);
    if (!ab) return -1;
    for (int64_t c = 0; c < C; c++) {
        const double sd = sqrt((double)s->var[c] + (double)n->args.f[1]);
        const double k = (double)gamma->data[c] / (sd * s->m_local), b = k * r[C + c] / sd;
        ab[C + c] = (float)b;
        ab[c] = (float)(k * r[c] - b * (double)s->mean[c]);
    }
    return bn_channel_affine_sub(gx, x->data, &s->data_md, ab, ab + C, st);
}

static int bn_infer(cc_tape *t, cc_node *n, cc_tensor *out, cc_status *st)
{
    const cc_tensor *x = n->in[0];
    if (bn_check(n, st)) return -1;
    bn_state *s = calloc(1, sizeof *s);
    if (!s) return status_set(st, "batch_norm: out of memory");
    n->state = s;
    if (x->ndim == 4) {
        s->data_md = x->md;
    } else {
        dnnl_dims_t d4 = {x->dims[0], x->dims[1], 1, 1};
        DNNL_TRY(st, "batch_norm", "(N,C) -> (N,C,1,1) descriptor",
                 dnnl_memory_desc_reshape(&s->data_md, &x->md, 4, d4));
    }
    s->flags = dnnl_use_scale | dnnl_use_shift;
    if (n->args.i[0] == BN_RUNNING) s->flags |= dnnl_use_global_stats;
    /* forward_training whenever the tape records: the backward needs it as
     * its hint, global statistics included. */
    dnnl_batch_normalization_desc_t bd;
    DNNL_TRY(st, "batch_norm", "forward descriptor",
             dnnl_batch_normalization_forward_desc_init(
                 &bd, t->training ? dnnl_forward_training : dnnl_forward_inference, &s->data_md,
                 n->args.f[1], s->flags));
    if (tape_prim_make(t, &bd, NULL, &s->fpd, &s->fwd, &s->fscr, "batch_norm",
                       "forward primitive descriptor", st))
        return -1;
    if (n->args.i[2] && bn_sync_infer(t, s, n->args.f[1], x->dims[1], st)) return -1;

    const dnnl_memory_desc_t *dst_md = dnnl_primitive_desc_query_md(s->fpd, dnnl_query_dst_md, 0);
    if (!dnnl_memory_desc_equal(dst_md, &s->data_md))
        return status_set(st, "batch_norm: oneDNN changed the layout of the output");
    const dnnl_memory_desc_t *ws_md = pd_arg_md(s->fpd, DNNL_ARG_WORKSPACE);
    s->ws_bytes = ws_md ? dnnl_memory_desc_get_size(ws_md) : 0;
    if (tape_mem_create(t, &s->m_src, &s->data_md, st) ||
        tape_mem_create(t, &s->m_dst, &s->data_md, st) ||
        tape_mem_create(t, &s->m_scale, pd_arg_md(s->fpd, DNNL_ARG_SCALE), st) ||
        tape_mem_create(t, &s->m_shift, pd_arg_md(s->fpd, DNNL_ARG_SHIFT), st) ||
        tape_mem_create(t, &s->m_mean, pd_arg_md(s->fpd, DNNL_ARG_MEAN), st) ||
        tape_mem_create(t, &s->m_var, pd_arg_md(s->fpd, DNNL_ARG_VARIANCE), st) ||
        (s->ws_bytes && tape_mem_create(t, &s->m_ws, ws_md, st)))
        return -1;
    out->ndim = x->ndim;
    memcpy(out->dims, x->dims, sizeof out->dims);
    out->md = x->md;    /* same memory as data_md, in x's own rank */
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

static int bn_forward(cc_tape *t, cc_node *n, cc_status *st)
{
    bn_state *s = n->state;
    const cc_tensor *x = n->in[0];
    const size_t cbytes = sizeof(float) * (size_t)x->dims[1];
    const int batch = n->args.i[0] == BN_BATCH;
    s->mean = n->args.aux[0]->data;
    s->var = n->args.aux[1]->data;
    if (batch || t->training) {
        /* batch: oneDNN's outputs; running on a training tape: a snapshot,
         * since a later op may update the same buffers before backward. */
        s->mean = tape_alloc(t, cbytes, st);
        s->var = tape_alloc(t, cbytes, st);
        if (!s->mean || !s->var) return -1;
        if (!batch) {
            memcpy(s->mean, n->args.aux[0]->data, cbytes);
            memcpy(s->var, n->args.aux[1]->data, cbytes);
        }
    }
    s->ws = NULL;
    if (s->ws_bytes && !(s->ws = tape_alloc(t, s->ws_bytes, st))) return -1;
    mem_bind(s->m_src, x->data);
    mem_bind(s->m_dst, n->out->data);
    mem_bind(s->m_scale, n->in[1]->data);
    mem_bind(s->m_shift, n->in[2]->data);
    mem_bind(s->m_mean, s->mean);
    mem_bind(s->m_var, s->var);
    dnnl_exec_arg_t a[7] = {{DNNL_ARG_SRC, s->m_src},     {DNNL_ARG_DST, s->m_dst},
                            {DNNL_ARG_SCALE, s->m_scale}, {DNNL_ARG_SHIFT, s->m_shift},
                            {DNNL_ARG_MEAN, s->m_mean},   {DNNL_ARG_VARIANCE, s->m_var},
                            {DNNL_ARG_WORKSPACE, s->m_ws}};
    if (s->ws) mem_bind(s->m_ws, s->ws);
    if (tape_exec(t, s->fwd, s->fscr, s->ws ? 7 : 6, a, "batch_norm forward", st)) return -1;
    if (n->args.i[2] && bn_sync_forward(t, n, a, st)) return -1;
    if (batch) bn_update_running(n, s->mean, s->var);
    if (n->args.i[1]) {
        /* padding lanes of a blocked layout are 0 and stay 0 */
        float *y = n->out->data;
        lrelu_scale(y, y, (int64_t)(tensor_bytes(n->out) / sizeof(float)), n->args.f[2],
                    t->ctx->isa);
    }
    return 0;
}

static int bn_make_bwd(cc_tape *t, bn_state *s, float eps, cc_status *st)
{
    dnnl_batch_normalization_desc_t bd;
    DNNL_TRY(st, "batch_norm", "backward descriptor",
             dnnl_batch_normalization_backward_desc_init(&bd, dnnl_backward, &s->data_md,
                                                         &s->data_md, eps, s->flags));
    if (tape_prim_make(t, &bd, s->fpd, &s->bpd, &s->bwd, &s->bscr, "batch_norm",
                       "backward primitive descriptor", st))
        return -1;
    if (!dnnl_memory_desc_equal(pd_arg_md(s->bpd, DNNL_ARG_DIFF_SRC), &s->data_md) ||
        !dnnl_memory_desc_equal(pd_arg_md(s->bpd, DNNL_ARG_DIFF_DST), &s->data_md))
        return status_set(st, "batch_norm: oneDNN changed the layout of the gradients");
    return tape_mem_create(t, &s->m_dsrc, &s->data_md, st) ||
           tape_mem_create(t, &s->m_dscale, pd_arg_md(s->bpd, DNNL_ARG_DIFF_SCALE), st) ||
           tape_mem_create(t, &s->m_dshift, pd_arg_md(s->bpd, DNNL_ARG_DIFF_SHIFT), st);
}

/* The gradient buffer for v: v's own when it wants one, else scratch that
 * oneDNN may fill (it always computes all three diffs). */
static float *bn_grad_buf(cc_tape *t, cc_tensor *v, cc_status *st)
{
    if (v->requires_grad) return tape_grad_begin(t, v, st);
    return tape_alloc(t, tensor_bytes(v), st);
}

static int bn_backward(cc_tape *t, cc_node *n, cc_status *st)
{
    bn_state *s = n->state;
    cc_tensor *x = n->in[0], *gamma = n->in[1], *beta = n->in[2];
    if (!x->requires_grad && !gamma->requires_grad && !beta->requires_grad) return 0;
    if (!n->args.i[2] && !s->bwd && bn_make_bwd(t, s, n->args.f[1], st)) return -1;
    if (n->args.i[2] && !s->gbwd && bn_sync_make_bwd(t, s, n->args.f[1], st)) return -1;
    if (n->args.i[1]) {
        /* Only this node reads its output's gradient: scale it in place. */
        lrelu_scale(n->out->grad, n->out->data, (int64_t)(tensor_bytes(n->out) / sizeof(float)),
                    n->args.f[2], t->ctx->isa);
    }
    float *gx = bn_grad_buf(t, x, st), *gg = bn_grad_buf(t, gamma, st);
    float *gb = bn_grad_buf(t, beta, st);
    if (!gx || !gg || !gb) return -1;
    mem_bind(s->m_src, x->data);
    mem_bind(s->m_dst, n->out->grad);   /* diff_dst: same layout as dst */
    mem_bind(s->m_scale, gamma->data);
    mem_bind(s->m_shift, beta->data);
    mem_bind(s->m_mean, s->mean);
    mem_bind(s->m_var, s->var);
    mem_bind(s->m_dsrc, gx);
    mem_bind(s->m_dscale, gg);
    mem_bind(s->m_dshift, gb);
    /* oneDNN 2.6 declares SHIFT an input of the backward with use_shift and
     * refuses to run without it (dnnl_invalid_arguments), unused as it is. */
    dnnl_exec_arg_t a[10] = {
        {DNNL_ARG_SRC, s->m_src},           {DNNL_ARG_DIFF_DST, s->m_dst},
        {DNNL_ARG_SCALE, s->m_scale},       {DNNL_ARG_SHIFT, s->m_shift},
        {DNNL_ARG_MEAN, s->m_mean},         {DNNL_ARG_VARIANCE, s->m_var},
        {DNNL_ARG_DIFF_SRC, s->m_dsrc},     {DNNL_ARG_DIFF_SCALE, s->m_dscale},
        {DNNL_ARG_DIFF_SHIFT, s->m_dshift}, {DNNL_ARG_WORKSPACE, s->m_ws}};
    if (s->ws) mem_bind(s->m_ws, s->ws);
    if (n->args.i[2]) {
        if (tape_exec(t, s->gbwd, s->gbscr, 9, a, "batch_norm backward", st) ||
            bn_sync_backward(t, n, gx, gg, gb, st))
            return -1;
    } else if (tape_exec(t, s->bwd, s->bscr, s->ws ? 10 : 9, a, "batch_norm backward", st)) {
        return -1;
    }
    if (x->requires_grad) tape_grad_end(t, x, gx);
    if (gamma->requires_grad) tape_grad_end(t, gamma, gg);
    if (beta->requires_grad) tape_grad_end(t, beta, gb);
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
