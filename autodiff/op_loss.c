/* op_loss.c - the training losses (docs SPEC.md, "Losses") as C kernels.
 *
 * loss_gauss: in x (prediction), s (log-variance), y (target), same shape;
 *             args i[0] 0 nll, 1 paper.  Out (1).
 *   nll:   mean( 0.5*exp(-s')*(y-x)^2 + 0.5*s' ), s' = max(s, -6); the
 *          clamp passes no gradient to s where s < -6.
 *   paper: mean( (y-x)^2/(2*exp(t)) + t ), t = s if s > -6 else 0.
 * loss_mse:   in x, y, same shape.  Out (1) = mean((y-x)^2).
 * tv:         in m (N,C,H,W).  Out (1) = sum over n, c, i < H-1, j < W-1 of
 *             (m[i,j]-m[i,j+1])^2 + (m[i,j]-m[i+1,j])^2 (the reference's
 *             f = img[:, :, :-1, :-1]: the last row and column only appear
 *             as neighbours).
 * All inputs plain (the builders apply op_plain).  Gradients go to every
 * input that requires one, y included.
 *
 * Determinism: sums use fixed chunks (LOSS_CHUNK elements, or one image row
 * for tv) summed in double, then combined in chunk order, so results do not
 * depend on the thread count.
 */
#include "autodiff/op.h"
#include "autodiff/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LOSS_CHUNK 4096
#define LOGVAR_MIN (-6.0)

enum { GAUSS_NLL = 0, GAUSS_PAPER = 1 };

static void loss_state_free(void *p) { free(p); }

static const char *gauss_name(const cc_node *n)
{
    return n->args.i[0] == GAUSS_PAPER ? "loss_gauss/paper" : "loss_gauss/nll";
}

static int check_plain(const cc_tensor *x, const char *op, cc_status *st)
{
    char a[64];
    if (tensor_is_plain(x)) return 0;
    return status_set(st, "%s: input %s is not plain (apply op_plain first)", op,
                      tensor_shape_str(x, a, sizeof a));
}

/* ---- per-element terms of the Gaussian losses ---- */

static inline double gauss_term(int variant, double x, double s, double y)
{
    const double r = y - x;
    if (variant == GAUSS_PAPER) {
        const double tt = s > LOGVAR_MIN ? s : 0.0;
        return r * r / (2.0 * exp(tt)) + tt;
    }
    const double sc = s < LOGVAR_MIN ? LOGVAR_MIN : s;
    return 0.5 * exp(-sc) * r * r + 0.5 * sc;
}

/* exp(-t) where t is the log-variance actually used for element s. */
static inline double gauss_inv_var(int variant, double s)
{
    if (variant == GAUSS_PAPER) return s > LOGVAR_MIN ? exp(-s) : 1.0;
    return exp(-(s < LOGVAR_MIN ? LOGVAR_MIN : s));
}

/* d term / d s (0 where the clamp or the paper's branch cuts s off). */
static inline double gauss_ds(int variant, double x, double s, double y)
{
    const double r = y - x;
    if (variant == GAUSS_PAPER) return s > LOGVAR_MIN ? 1.0 - 0.5 * exp(-s) * r * r : 0.0;
    return s < LOGVAR_MIN ? 0.0 : 0.5 - 0.5 * exp(-s) * r * r;
}

/* Sum of term(i) for i < n over fixed chunks, combined in order.  `part`
 * holds one double per chunk.  The body is a macro so each loss keeps its
 * term inline. */
#define CHUNKED_SUM(total, n, part, TERM)                                          \
    do {                                                                           \
        const int64_t nch_ = ((n) + LOSS_CHUNK - 1) / LOSS_CHUNK;                  \
        _Pragma("omp parallel for schedule(static)")                               \
        for (int64_t c_ = 0; c_ < nch_; c_++) {                                    \
            const int64_t lo_ = c_ * LOSS_CHUNK;                                   \
            const int64_t hi_ = lo_ + LOSS_CHUNK < (n) ? lo_ + LOSS_CHUNK : (n);   \
            double acc_ = 0;                                                       \
            for (int64_t i = lo_; i < hi_; i++) acc_ += (TERM);                    \
            (part)[c_] = acc_;                                                     \
        }                                                                          \
        (total) = 0;                                                               \
        for (int64_t c_ = 0; c_ < nch_; c_++) (total) += (part)[c_];               \
    } while (0)

static double *chunk_parts(cc_tape *t, int64_t n, cc_status *st)
{
    const int64_t nch = (n + LOSS_CHUNK - 1) / LOSS_CHUNK;
    return tape_alloc(t, sizeof(double) * (size_t)(nch ? nch : 1), st);
}

/* ---- loss_gauss ---- */

static int gauss_infer(cc_tape *t, cc_node *n, cc_tensor *out, cc_status *st)
{
    (void)t;
    const cc_tensor *x = n->in[0], *s = n->in[1], *y = n->in[2];
    const char *name = gauss_name(n);
    if (!tensor_same_shape(s, x))
        return op_shape_fail(st, name, "log-variance s must have the prediction's shape", s, x);
    if (!tensor_same_shape(y, x))
        return op_shape_fail(st, name, "target y must have the prediction's shape", y, x);
    if (check_plain(x, name, st) || check_plain(s, name, st) || check_plain(y, name, st)) return -1;
    tensor_set_shape(out, 1, (int64_t[]){1});
    return 0;
}

static int gauss_forward(cc_tape *t, cc_node *n, cc_status *st)
{
    const float *x = n->in[0]->data, *s = n->in[1]->data, *y = n->in[2]->data;
    const int64_t numel = tensor_numel(n->in[0]);
    const int variant = n->args.i[0];
    double *part = chunk_parts(t, numel, st), total;
    if (!part) return -1;
    CHUNKED_SUM(total, numel, part, gauss_term(variant, x[i], s[i], y[i]));
    n->out->data[0] = (float)(numel ? total / (double)numel : 0.0);
    return 0;
}

static int gauss_backward(cc_tape *t, cc_node *n, cc_status *st)
{
    cc_tensor *tx = n->in[0], *ts = n->in[1], *ty = n->in[2];
    const float *x = tx->data, *s = ts->data, *y = ty->data;
    const int64_t numel = tensor_numel(tx);
    const int variant = n->args.i[0];
    const double k = (double)n->out->grad[0] / (double)numel;
    float *g;
    /* One input at a time: begin/end must not interleave when inputs alias. */
    if (tx->requires_grad) {
        if (!(g = tape_grad_begin(t, tx, st))) return -1;
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < numel; i++)
            g[i] = (float)(-k * gauss_inv_var(variant, s[i]) * ((double)y[i] - x[i]));
        tape_grad_end(t, tx, g);
    }
    if (ts->requires_grad) {
        if (!(g = tape_grad_begin(t, ts, st))) return -1;
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < numel; i++) g[i] = (float)(k * gauss_ds(variant, x[i], s[i], y[i]));
        tape_grad_end(t, ts, g);
    }
    if (ty->requires_grad) {
        if (!(g = tape_grad_begin(t, ty, st))) return -1;
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < numel; i++)
            g[i] = (float)(k * gauss_inv_var(variant, s[i]) * ((double)y[i] - x[i]));
        tape_grad_end(t, ty, g);
    }
    return 0;
}

const cc_op_def op_def_loss_gauss = {"loss_gauss", OPK_LOSS, gauss_infer, gauss_forward,
                                     gauss_backward, loss_state_free, NULL};

static cc_tensor *gauss_record(cc_tape *t, cc_tensor *x, cc_tensor *s, cc_tensor *y, int variant)
{
    cc_op_args a;
    memset(&a, 0, sizeof a);
    a.i[0] = variant;
    cc_tensor *in[3];
    in[0] = op_plain(t, x);
    in[1] = op_plain(t, s);
    in[2] = op_plain(t, y);
    return tape_record(t, OP_loss_gauss, in, 3, &a);
}

cc_tensor *op_loss_nll(cc_tape *t, cc_tensor *x, cc_tensor *s, cc_tensor *y)
{
    return gauss_record(t, x, s, y, GAUSS_NLL);
}

cc_tensor *op_loss_paper(cc_tape *t, cc_tensor *x, cc_tensor *s, cc_tensor *y)
{
    return gauss_record(t, x, s, y, GAUSS_PAPER);
}

/* ---- loss_mse ---- */

static int mse_infer(cc_tape *t, cc_node *n, cc_tensor *out, cc_status *st)
{
    (void)t;
    const cc_tensor *x = n->in[0], *y = n->in[1];
    if (!tensor_same_shape(y, x))
        return op_shape_fail(st, "loss_mse", "target y must have the prediction's shape", y, x);
    if (check_plain(x, "loss_mse", st) || check_plain(y, "loss_mse", st)) return -1;
    tensor_set_shape(out, 1, (int64_t[]){1});
    return 0;
}

static int mse_forward(cc_tape *t, cc_node *n, cc_status *st)
{
    const float *x = n->in[0]->data, *y = n->in[1]->data;
    const int64_t numel = tensor_numel(n->in[0]);
    double *part = chunk_parts(t, numel, st), total;
    if (!part) return -1;
    CHUNKED_SUM(total, numel, part, ((double)y[i] - x[i]) * ((double)y[i] - x[i]));
    n->out->data[0] = (float)(numel ? total / (double)numel : 0.0);
    return 0;
}

static int mse_backward(cc_tape *t, cc_node *n, cc_status *st)
{
    cc_tensor *tx = n->in[0], *ty = n->in[1];
    const float *x = tx->data, *y = ty->data;
    const int64_t numel = tensor_numel(tx);
    const double k = 2.0 * (double)n->out->grad[0] / (double)numel;
    float *g;
    if (tx->requires_grad) {
        if (!(g = tape_grad_begin(t, tx, st))) return -1;
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < numel; i++) g[i] = (float)(-k * ((double)y[i] - x[i]));
        tape_grad_end(t, tx, g);
    }
    if (ty->requires_grad) {
        if (!(g = tape_grad_begin(t, ty, st))) return -1;
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < numel; i++) g[i] = (float)(k * ((double)y[i] - x[i]));
        tape_grad_end(t, ty, g);
    }
    return 0;
}

const cc_op_def op_def_loss_mse = {"loss_mse", OPK_LOSS, mse_infer, mse_forward, mse_backward,
                                   loss_state_free, NULL};

cc_tensor *op_loss_mse(cc_tape *t, cc_tensor *x, cc_tensor *y)
{
    cc_op_args a;
    memset(&a, 0, sizeof a);
    cc_tensor *in[2];
    in[0] = op_plain(t, x);
    in[1] = op_plain(t, y);
    return tape_record(t, OP_loss_mse, in, 2, &a);
}

/* ---- tv ---- */

static int tv_infer(cc_tape *t, cc_node *n, cc_tensor *out, cc_status *st)
{
    (void)t;
    const cc_tensor *m = n->in[0];
    char a[64];
    if (m->ndim != 4)
        return status_set(st, "tv: mask must be 4-D (N,C,H,W), got %s",
                          tensor_shape_str(m, a, sizeof a));
    if (check_plain(m, "tv", st)) return -1;
    tensor_set_shape(out, 1, (int64_t[]){1});
    return 0;
}

static int tv_forward(cc_tape *t, cc_node *n, cc_status *st)
{
    const cc_tensor *tm = n->in[0];
    const int64_t P = tm->dims[0] * tm->dims[1], H = tm->dims[2], W = tm->dims[3];
    const int64_t rows = H > 1 && W > 1 ? P * (H - 1) : 0;     /* one chunk per image row */
    double *part = tape_alloc(t, sizeof(double) * (size_t)(rows ? rows : 1), st);
    if (!part) return -1;
    const float *m = tm->data;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *row = m + (r / (H - 1)) * H * W + (r % (H - 1)) * W;
        double acc = 0;
        for (int64_t j = 0; j < W - 1; j++) {
            const double dh = (double)row[j] - row[j + 1], dv = (double)row[j] - row[j + W];
            acc += dh * dh + dv * dv;
        }
        part[r] = acc;
    }
    double total = 0;
    for (int64_t r = 0; r < rows; r++) total += part[r];
    n->out->data[0] = (float)total;
    return 0;
}

static int tv_backward(cc_tape *t, cc_node *n, cc_status *st)
{
    cc_tensor *tm = n->in[0];
    float *g = tape_grad_begin(t, tm, st);
    if (!g) return tm->requires_grad ? -1 : 0;
    const int64_t P = tm->dims[0] * tm->dims[1], H = tm->dims[2], W = tm->dims[3];
    const double k = 2.0 * (double)n->out->grad[0];
    const float *m = tm->data;
    /* Gather form: each element collects the terms it appears in, as the
     * left/top member of a pair at (i,j), the right member of the pair at
     * (i,j-1), or the lower member of the pair at (i-1,j). */
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < P * H; r++) {
        const int64_t i = r % H;
        const float *p = m + r * W;
        for (int64_t j = 0; j < W; j++) {
            double acc = 0;
            if (i < H - 1 && j < W - 1) acc += ((double)p[j] - p[j + 1]) + ((double)p[j] - p[j + W]);
            if (i < H - 1 && j >= 1) acc -= (double)p[j - 1] - p[j];
            if (i >= 1 && j < W - 1) acc -= (double)p[j - W] - p[j];
            g[r * W + j] = (float)(k * acc);
        }
    }
    tape_grad_end(t, tm, g);
    return 0;
}

const cc_op_def op_def_tv = {"tv", OPK_LOSS, tv_infer, tv_forward,
                             tv_backward, loss_state_free, NULL};

cc_tensor *op_tv(cc_tape *t, cc_tensor *m)
{
    cc_op_args a;
    memset(&a, 0, sizeof a);
    return tape_record(t, OP_tv, (cc_tensor *[]){op_plain(t, m)}, 1, &a);
}
