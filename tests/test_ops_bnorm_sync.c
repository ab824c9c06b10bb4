/* test_ops_bnorm_sync.c - synchronised BatchNorm (cc_ctx.allreduce_sum):
 * the identity hook (one participant) against the plain op, a finite-
 * difference check of the synchronised path, and a batch split over two
 * threads as two "ranks" whose hook sums their buffers, against the whole
 * batch.  Part of test_ops_bnorm_eltwise. */
#include <check.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "autodiff/op.h"
#include "autodiff/ops.h"
#include "tests/testutil.h"

#define EPS 1e-5f
#define MOM 0.1f

static int hook_identity(void *u, double *b, int n, cc_status *st)
{
    (void)u; (void)b; (void)n; (void)st;
    return 0;
}

/* Two participants: each deposits its buffer, the sum (slot 0 + slot 1, the
 * same order for both) comes back to both. */
typedef struct pair_sum {
    pthread_barrier_t bar;
    double *slot[2];
} pair_sum;
typedef struct pair_user { pair_sum *p; int rank; } pair_user;

static int hook_pair(void *u, double *b, int n, cc_status *st)
{
    (void)st;
    pair_user *pu = u;
    pu->p->slot[pu->rank] = b;
    pthread_barrier_wait(&pu->p->bar);
    double *o = pu->p->slot[1 - pu->rank], tmp[4096];
    ck_assert_int_le(n, 4096);
    for (int i = 0; i < n; i++) tmp[i] = pu->rank == 0 ? b[i] + o[i] : o[i] + b[i];
    pthread_barrier_wait(&pu->p->bar);
    memcpy(b, tmp, sizeof(double) * (size_t)n);
    return 0;
}

typedef struct sync_cfg { int conv, fused, sync; } sync_cfg;

/* x, [w], gamma, beta, rm, rv */
static cc_tensor *build(cc_tape *t, cc_tensor **x, void *u)
{
    const sync_cfg *c = u;
    if (c->sync && !t->ctx->allreduce_sum) t->ctx->allreduce_sum = hook_identity;
    cc_tensor *h = x[0], **p = x + 1;
    if (c->conv) {
        h = op_conv2d(t, x[0], x[1], NULL, 1, 1);
        p = x + 2;
    }
    return c->fused ? op_batch_norm_lrelu(t, h, p[0], p[1], p[2], p[3], NULL, MOM, EPS, 0.2f)
                    : op_batch_norm(t, h, p[0], p[1], p[2], p[3], NULL, MOM, EPS);
}

typedef struct run_out { float *y, *g[6], *rm, *rv; int64_t ny; } run_out;

/* One forward/backward with seed R (scaled by rscale), in[] as given. */
static void run(const sync_cfg *c, tu_input *in, int nin, const float *R, float rscale,
                int (*hook)(void *, double *, int, cc_status *), void *user, run_out *o)
{
    cc_ctx ctx;
    ck_assert_int_eq(ctx_init(&ctx, 1, NULL), 0);
    ctx.allreduce_sum = hook;
    ctx.allreduce_user = user;
    cc_tape t;
    tape_init(&t, &ctx, 1);
    cc_tensor *x[6];
    for (int i = 0; i < nin; i++)
        x[i] = tape_input(&t, in[i].ndim, in[i].dims, in[i].data, in[i].requires_grad);
    sync_cfg cc = *c;
    cc.sync = 0;    /* the hook is the caller's */
    cc_tensor *y = build(&t, x, &cc);
    ck_assert_msg(y != NULL, "%s", tape_error(&t));
    o->ny = tensor_numel(y);
    o->y = malloc(sizeof(float) * (size_t)o->ny);
    ck_assert_int_eq(tape_read(&t, y, o->y), 0);
    float *seed = malloc(sizeof(float) * (size_t)o->ny);
    for (int64_t i = 0; i < o->ny; i++) seed[i] = R[i] * rscale;
    ck_assert_msg(tape_backward_seed(&t, y, seed) == 0, "%s", tape_error(&t));
    for (int i = 0; i < nin; i++) {
        o->g[i] = NULL;
        if (!in[i].requires_grad) continue;
        o->g[i] = malloc(sizeof(float) * (size_t)tu_numel(&in[i]));
        ck_assert_int_eq(tape_read_grad(&t, x[i], o->g[i]), 0);
    }
    const int64_t C = in[nin - 1].dims[0];
    o->rm = malloc(sizeof(float) * (size_t)C);
    o->rv = malloc(sizeof(float) * (size_t)C);
    memcpy(o->rm, x[nin - 2]->data, sizeof(float) * (size_t)C);
    memcpy(o->rv, x[nin - 1]->data, sizeof(float) * (size_t)C);
    free(seed);
    tape_free(&t);
    ctx_free(&ctx);
}

static int make_inputs(int conv, int64_t N, tu_input *in)
{
    int n = 0;
    int64_t C = 6;
    if (conv) {
        in[n++] = tu_make(4, (int64_t[]){N, 3, 4, 5}, -1, 1, 220, 1);
        in[n++] = tu_make(4, (int64_t[]){12, 3, 3, 3}, -0.4, 0.4, 221, 1);
        C = 12;
    } else {
        in[n++] = tu_make(4, (int64_t[]){N, 6, 3, 2}, -2, 3, 222, 1);
    }
    in[n++] = tu_make(1, (int64_t[]){C}, 0.5, 1.5, 223, 1);
    in[n++] = tu_make(1, (int64_t[]){C}, -0.5, 0.5, 224, 1);
    in[n++] = tu_make(1, (int64_t[]){C}, -0.3, 0.3, 225, 0);
    in[n++] = tu_make(1, (int64_t[]){C}, 0.5, 2.0, 226, 0);
    return n;
}

static void free_out(run_out *o, int nin)
{
    free(o->y); free(o->rm); free(o->rv);
    for (int i = 0; i < nin; i++) free(o->g[i]);
}

/* One participant with the identity hook = the plain op: forward and
 * running statistics bit for bit; gradients within float rounding (the
 * backward runs oneDNN's use_global_stats kernel plus our correction). */
START_TEST(test_bn_sync_identity)
{
    for (int conv = 0; conv < 2; conv++)
        for (int fused = 0; fused < 2; fused++) {
            tu_input in[6];
            const int nin = make_inputs(conv, 4, in);
            sync_cfg c = {conv, fused, 0};
            int64_t ny = conv ? 4 * 12 * 4 * 5 : tu_numel(&in[0]);
            float *R = malloc(sizeof(float) * (size_t)ny);
            tu_fill_uniform(R, ny, -1, 1, 77);
            run_out a, b;
            run(&c, in, nin, R, 1, NULL, NULL, &a);
            run(&c, in, nin, R, 1, hook_identity, NULL, &b);
            const int64_t C = in[nin - 1].dims[0];
            ck_assert_msg(tu_max_abs_diff(a.y, b.y, a.ny) <= 1e-6, "forward differs by %g",
                          tu_max_abs_diff(a.y, b.y, a.ny));
            ck_assert(tu_max_abs_diff(a.rm, b.rm, C) <= 1e-7);
            ck_assert(tu_max_abs_diff(a.rv, b.rv, C) <= 1e-6);
            for (int i = 0; i < nin; i++)
                if (in[i].requires_grad) {
                    double d = tu_max_abs_diff(a.g[i], b.g[i], tu_numel(&in[i]));
                    ck_assert_msg(d <= 2e-5, "conv %d fused %d input %d gradient differs by %g",
                                  conv, fused, i, d);
                }
            free_out(&a, nin); free_out(&b, nin); free(R);
            for (int i = 0; i < nin; i++) free(in[i].data);
        }
}
END_TEST

START_TEST(test_bn_sync_gradcheck)
{
    tu_input in[6];
    const int nin = make_inputs(0, 3, in);
    sync_cfg c = {0, 0, 1};
    ck_assert(tu_gradcheck("batch_norm_sync", build, &c, in, nin, 1e-2, 2e-3, 2e-2));
    for (int i = 0; i < nin; i++) free(in[i].data);
}
END_TEST

typedef struct half_job {
    const sync_cfg *c; tu_input *in; int nin; const float *R; pair_user pu; run_out o;
} half_job;

static void *half_main(void *u)
{
    half_job *j = u;
    run(j->c, j->in, j->nin, j->R, 2.0f, hook_pair, &j->pu, &j->o);
    return NULL;
}

/* A batch of 4 split in two halves on two threads ("ranks"), each loss the
 * mean over its half (seed x 2, weights 1/2): outputs, running statistics
 * and 1/2 (sum of the halves' parameter gradients) equal the whole batch's;
 * input gradients x 1/2 equal the whole batch's rows. */
START_TEST(test_bn_sync_two_halves)
{
    for (int conv = 0; conv < 2; conv++) {
        tu_input in[6], h[2][6];
        const int nin = make_inputs(conv, 4, in);
        const int64_t nx = tu_numel(&in[0]), ny = conv ? 4 * 12 * 4 * 5 : nx;
        float *R = malloc(sizeof(float) * (size_t)ny);
        tu_fill_uniform(R, ny, -1, 1, 78);
        sync_cfg c = {conv, 1, 0};
        run_out whole;
        run(&c, in, nin, R, 1, NULL, NULL, &whole);
        pair_sum ps;
        pthread_barrier_init(&ps.bar, NULL, 2);
        half_job j[2];
        pthread_t th[2];
        for (int k = 0; k < 2; k++) {
            memcpy(h[k], in, sizeof in);
            h[k][0].dims[0] = 2;
            h[k][0].data = in[0].data + k * nx / 2;
            j[k] = (half_job){&c, h[k], nin, R + k * ny / 2, {&ps, k}, {0}};
            ck_assert_int_eq(pthread_create(&th[k], NULL, half_main, &j[k]), 0);
        }
        for (int k = 0; k < 2; k++) pthread_join(th[k], NULL);
        pthread_barrier_destroy(&ps.bar);
        for (int k = 0; k < 2; k++) {
            double d = tu_max_abs_diff(j[k].o.y, whole.y + k * ny / 2, ny / 2);
            ck_assert_msg(d <= 2e-6, "conv %d half %d output differs by %g", conv, k, d);
            float *gx = j[k].o.g[0];
            for (int64_t i = 0; i < nx / 2; i++) gx[i] *= 0.5f;
            d = tu_max_abs_diff(gx, whole.g[0] + k * nx / 2, nx / 2);
            ck_assert_msg(d <= 2e-5, "conv %d half %d input gradient differs by %g", conv, k, d);
        }
        const int64_t C = in[nin - 1].dims[0];
        ck_assert(tu_max_abs_diff(j[0].o.rm, whole.rm, C) <= 1e-6);
        ck_assert(tu_max_abs_diff(j[1].o.rv, whole.rv, C) <= 1e-5);
        for (int i = 1; i < nin; i++) {
            if (!in[i].requires_grad) continue;
            const int64_t n = tu_numel(&in[i]);
            for (int64_t e = 0; e < n; e++) j[0].o.g[i][e] = 0.5f * (j[0].o.g[i][e] + j[1].o.g[i][e]);
            double d = tu_max_abs_diff(j[0].o.g[i], whole.g[i], n);
            ck_assert_msg(d <= 5e-5, "conv %d parameter %d gradient differs by %g", conv, i, d);
        }
        free_out(&whole, nin); free_out(&j[0].o, nin); free_out(&j[1].o, nin); free(R);
        for (int i = 0; i < nin; i++) free(in[i].data);
    }
}
END_TEST

void ops_add_sync_cases(TCase *tc)
{
    tcase_add_test(tc, test_bn_sync_identity);
    tcase_add_test(tc, test_bn_sync_gradcheck);
    tcase_add_test(tc, test_bn_sync_two_halves);
}
