/* testutil.c - see testutil.h. */
#include "tests/testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autodiff/rng.h"

void tu_fill_uniform(float *x, int64_t n, float lo, float hi, uint64_t seed)
{
    cc_rng r;
    rng_seed(&r, seed, 7);
    for (int64_t i = 0; i < n; i++) x[i] = (float)rng_range(&r, lo, hi);
}

void tu_fill_away_from_zero(float *x, int64_t n, float lo, float hi, uint64_t seed)
{
    cc_rng r;
    rng_seed(&r, seed, 11);
    for (int64_t i = 0; i < n; i++) {
        float v = (float)rng_range(&r, lo, hi);
        x[i] = rng_uniform(&r) < 0.5 ? -v : v;
    }
}

int64_t tu_numel(const tu_input *in)
{
    int64_t n = 1;
    for (int i = 0; i < in->ndim; i++) n *= in->dims[i];
    return n;
}

tu_input tu_make(int ndim, const int64_t *dims, float lo, float hi, uint64_t seed, int requires_grad)
{
    tu_input in;
    memset(&in, 0, sizeof in);
    in.ndim = ndim;
    for (int i = 0; i < ndim; i++) in.dims[i] = dims[i];
    in.requires_grad = requires_grad;
    in.data = malloc(sizeof(float) * (size_t)tu_numel(&in));
    tu_fill_uniform(in.data, tu_numel(&in), lo, hi, seed);
    return in;
}

double tu_max_abs_diff(const float *a, const float *b, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d;   /* NaN propagates as a failure */
    }
    return m;
}

/* Build on a reset tape; returns the output or NULL. */
static cc_tensor *build(cc_tape *t, tu_build_fn fn, void *user, tu_input *in, int n_in)
{
    cc_tensor *x[16];
    tape_reset(t);
    for (int i = 0; i < n_in; i++)
        x[i] = tape_input(t, in[i].ndim, in[i].dims, in[i].data, in[i].requires_grad);
    return fn(t, x, user);
}

float *tu_forward(tu_build_fn fn, void *user, tu_input *in, int n_in, int training,
                  int64_t *numel, char *msg, size_t msg_len)
{
    cc_ctx ctx;
    cc_status st;
    status_clear(&st);
    if (ctx_init(&ctx, 0, &st)) {
        snprintf(msg, msg_len, "%s", st.msg);
        return NULL;
    }
    cc_tape t;
    tape_init(&t, &ctx, training);
    float *res = NULL;
    cc_tensor *y = build(&t, fn, user, in, n_in);
    if (y) {
        *numel = tensor_numel(y);
        res = malloc(sizeof(float) * (size_t)*numel);
        if (tape_read(&t, y, res)) {
            free(res);
            res = NULL;
        }
    }
    if (!res) snprintf(msg, msg_len, "%s", tape_ok(&t) ? "no output" : tape_error(&t));
    tape_free(&t);
    ctx_free(&ctx);
    return res;
}

static double projected(cc_tape *t, cc_tensor *y, const float *R, float *buf)
{
    if (!y || tape_read(t, y, buf)) return NAN;
    double f = 0;
    for (int64_t i = 0; i < tensor_numel(y); i++) f += (double)R[i] * buf[i];
    return f;
}

int tu_gradcheck(const char *name, tu_build_fn fn, void *user, tu_input *in, int n_in,
                 double eps, double atol, double rtol)
{
    cc_ctx ctx;
    cc_status st;
    status_clear(&st);
    if (ctx_init(&ctx, 0, &st)) {
        fprintf(stderr, "%s: %s\n", name, st.msg);
        return 0;
    }
    cc_tape t;
    tape_init(&t, &ctx, 1);
    int ok = 1;
    cc_tensor *xs[16];
    tape_reset(&t);
    for (int i = 0; i < n_in; i++)
        xs[i] = tape_input(&t, in[i].ndim, in[i].dims, in[i].data, in[i].requires_grad);
    cc_tensor *y = fn(&t, xs, user);
    if (!y) {
        fprintf(stderr, "%s: build failed: %s\n", name, tape_error(&t));
        ok = 0;
        goto out;
    }
    int64_t ny = tensor_numel(y);
    float *R = malloc(sizeof(float) * (size_t)ny), *buf = malloc(sizeof(float) * (size_t)ny);
    tu_fill_uniform(R, ny, -1, 1, 1234);
    float *analytic[16] = {0};
    for (int i = 0; i < n_in; i++) analytic[i] = calloc((size_t)tu_numel(&in[i]), sizeof(float));
    if (tape_backward_seed(&t, y, R)) {
        fprintf(stderr, "%s: backward failed: %s\n", name, tape_error(&t));
        ok = 0;
    }
    for (int i = 0; ok && i < n_in; i++)
        if (in[i].requires_grad && tape_read_grad(&t, xs[i], analytic[i])) ok = 0;

    double worst = 0;
    for (int i = 0; ok && i < n_in; i++) {
        if (!in[i].requires_grad) continue;
        for (int64_t j = 0; j < tu_numel(&in[i]); j++) {
            float keep = in[i].data[j];
            in[i].data[j] = keep + (float)eps;
            double fp = projected(&t, build(&t, fn, user, in, n_in), R, buf);
            in[i].data[j] = keep - (float)eps;
            double fm = projected(&t, build(&t, fn, user, in, n_in), R, buf);
            in[i].data[j] = keep;
            double num = (fp - fm) / (2 * eps), ana = analytic[i][j];
            double excess = fabs(ana - num) - (atol + rtol * fabs(num));
            if (!(excess <= 0)) {
                fprintf(stderr, "%s: input %d element %lld: analytic %.6g numeric %.6g\n", name, i,
                        (long long)j, ana, num);
                ok = 0;
                if (!(excess <= worst)) worst = excess;
                break;
            }
        }
    }
    for (int i = 0; i < n_in; i++) free(analytic[i]);
    free(R);
    free(buf);
out:
    tape_free(&t);
    ctx_free(&ctx);
    return ok;
}
