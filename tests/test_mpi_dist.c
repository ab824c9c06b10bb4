/* test_mpi_dist.c - src/run/dist.c's collectives, run by tests/test_mpi.sh
 * under `mpirun -np 2` and `-np 3` (and by make check as one process).
 *
 * A plain program, not a Check suite: Check forks every test, and a forked
 * child must not call MPI.  Every rank checks its own results against a
 * local re-computation in the documented order, prints a line per failure
 * and exits 1; rank 0 prints a summary.
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/run/dist.h"

static int failures;

#define CHECK(cond, ...)                                                  \
    do {                                                                  \
        if (!(cond)) {                                                    \
            fprintf(stderr, "rank %d: FAIL %s:%d: ", d.rank, __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                                 \
            fputc('\n', stderr);                                          \
            failures++;                                                   \
        }                                                                 \
    } while (0)

/* Rank k's gradient element i: values of many magnitudes, so that the
 * order of the additions shows in the last bits. */
static float grad_value(int k, size_t i)
{
    uint64_t x = (uint64_t)(k + 1) * 0x9e3779b97f4a7c15ull ^ (uint64_t)i * 0xbf58476d1ce4e5b9ull;
    x ^= x >> 31;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 29;
    const double u = (double)(x >> 11) / 9007199254740992.0;
    return (float)((u - 0.5) * pow(10.0, (double)(x % 7) - 3.0));
}

/* A store of trainable tensors of awkward sizes (one frozen, so backward
 * never announces it), finalized; NULL on failure. */
static int store_make(cc_params *P, cc_ctx *ctx, const int64_t *sizes, int n, cc_status *st)
{
    params_init(P, ctx);
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "t%d/weight", i);
        if (params_add(P, name, 1, &sizes[i], PARAM_TRAINABLE, st) < 0) return -1;
    }
    if (params_finalize(P, st)) return -1;
    params_set_frozen(P, "t1/", 1);
    return 0;
}

/* One overlapped reduction of the stores' gradients (dist_grad_begin, the
 * events a backward would send, dist_grad_end), as the trainers run it.
 * The fake backward writes each parameter's gradient (grad_value of its
 * slab position, of rank + s0 + s for the store S[s]) just before reporting it final, in
 * reverse order on even ranks and in forward order on odd ones (so
 * buckets become ready at different moments on different ranks), with
 * rank-dependent polls in between.  A bucket started before its
 * gradients were final would reduce zeros.  Frozen tensors keep zeros. */
static int overlap_once(cc_dist *d, cc_params **S, int k, int s0, int n_local, int n_global,
                        cc_status *st)
{
    for (int s = 0; s < k; s++) params_zero_grad(S[s]);
    if (dist_grad_begin(d, S, k, n_local, n_global, st)) return -1;
    for (int s = 0; s < k; s++)
        for (int i = 0; i < S[s]->n; i++)
            if (!S[s]->p[i].frozen &&
                dist_grad_event(d, CC_GRAD_PENDING, S[s]->grad + S[s]->p[i].offset,
                                S[s]->p[i].numel, st))
                return -1;
    int total = 0;
    for (int s = 0; s < k; s++) total += S[s]->n;
    for (int j = 0; j < total; j++) {
        int q = d->rank % 2 ? j : total - 1 - j, s = 0;
        while (q >= S[s]->n) q -= S[s]->n, s++;
        const cc_param *pp = &S[s]->p[q];
        if (!pp->frozen) {
            for (size_t e = 0; e < pp->numel; e++)
                S[s]->grad[pp->offset + e] = grad_value(d->rank + s0 + s, pp->offset + e);
            if (dist_grad_event(d, CC_GRAD_FINAL, S[s]->grad + pp->offset, pp->numel, st))
                return -1;
        }
        for (int r = 0; r <= d->rank; r++)
            if (dist_grad_event(d, CC_GRAD_POLL, NULL, 0, st)) return -1;
    }
    return dist_grad_end(d, st);
}

int main(int argc, char **argv)
{
    cc_status st;
    status_clear(&st);
    if (dist_init(&argc, &argv, &st)) {
        fprintf(stderr, "test_mpi_dist: %s\n", st.msg);
        return 1;
    }
    cc_dist d;
    dist_open(&d);
    const int p = d.size;
    if ((argc == 4 || argc == 5) && !strcmp(argv[1], "--bench")) {
        /* --bench FLOATS REPS [BUCKET_FLOATS]: seconds per gradient
         * allreduce (docs/CLUSTER.md); with BUCKET_FLOATS, the bucketed
         * path of dist_grad_begin/end with every bucket started at the end
         * (its overhead, with nothing to overlap) */
        const size_t n = (size_t)atol(argv[2]);
        const int reps = atoi(argv[3]);
        cc_ctx bctx;
        cc_params P;
        const int64_t len = (int64_t)n;
        if (reps < 1 || ctx_init(&bctx, 1, &st)) return 1;
        params_init(&P, &bctx);
        if (params_add(&P, "g", 1, &len, PARAM_TRAINABLE, &st) < 0 || params_finalize(&P, &st))
            return 1;
        cc_params *S[1] = {&P};
        d.overlap = argc == 5;
        d.bucket_floats = argc == 5 ? (size_t)atol(argv[4]) : 0;
        for (int i = 0; i <= reps; i++) {
            if (i == 1) d.comm_seconds = 0;    /* after a warm-up */
            if (dist_grad_begin(&d, S, 1, 1, p, &st) || dist_grad_end(&d, &st)) {
                fprintf(stderr, "%s\n", st.msg);
                return 1;
            }
        }
        if (d.rank == 0)
            printf("allreduce of %.1f MB over %d ranks%s: %.1f ms each (%.2f GB/s bus)\n",
                   4e-6 * (double)n, p, argc == 5 ? " in buckets" : "", 1e3 * d.comm_seconds / reps,
                   2.0 * (p - 1) / p * 4.0 * (double)n / (d.comm_seconds / reps) / 1e9);
        if (argc == 5 && d.rank == 0)
            printf("  (buckets of %.2f MB)\n", 4e-6 * (double)d.bucket_floats);
        params_free(&P);
        ctx_free(&bctx);
        dist_close(&d);
        dist_finalize();
        return 0;
    }

    /* Gradient reduction: lengths that split evenly, unevenly, and into
     * fewer elements than ranks (empty chunks). */
    const size_t lens[] = {1, 2, 7, 1000, 100003};
    for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
        const size_t n = lens[li];
        float *g = malloc(n * sizeof *g), *want = malloc(n * sizeof *want);
        int n_global = 0;
        for (int k = 0; k < p; k++) n_global += k + 1;     /* rank k had k+1 samples */
        for (size_t i = 0; i < n; i++) g[i] = grad_value(d.rank, i);
        /* The documented result: each rank scales by n_k / N, then the
         * scaled gradients are added in rank order. */
        for (size_t i = 0; i < n; i++) {
            float s = 0;
            for (int k = 0; k < p; k++) {
                const float w = (float)((double)(k + 1) / (double)n_global);
                const float v = p == 1 ? grad_value(k, i) : grad_value(k, i) * w;
                s = k == 0 ? v : s + v;
            }
            want[i] = s;
        }
        CHECK(dist_allreduce_grad(&d, g, n, d.rank + 1, n_global, &st) == 0, "%s", st.msg);
        size_t bad = 0;
        for (size_t i = 0; i < n; i++) bad += memcmp(&g[i], &want[i], sizeof(float)) != 0;
        CHECK(bad == 0, "allreduce of %zu floats: %zu elements differ from the rank-order sum", n, bad);
        /* Bit-identical everywhere: rank 0's copy to all, compare. */
        memcpy(want, g, n * sizeof *g);
        CHECK(dist_bcast_floats(&d, want, n, &st) == 0, "%s", st.msg);
        CHECK(memcmp(want, g, n * sizeof *g) == 0, "allreduce of %zu floats differs from rank 0's", n);
        free(g);
        free(want);
    }

    /* Overlapped bucket reduction (dist_grad_begin/event/end): bit for bit
     * dist_allreduce_grad on each whole slab, for buckets of 1 float (fewer
     * than ranks), odd sizes, and one bucket larger than the slabs; two
     * stores; overlap off takes the blocking path with the same result. */
    {
        cc_ctx octx;
        CHECK(ctx_init(&octx, 1, &st) == 0, "%s", st.msg);
        cc_params A, B;
        const int64_t sa[] = {5, 40, 1000, 3, 2011}, sb[] = {7, 2, 333};
        CHECK(store_make(&A, &octx, sa, 5, &st) == 0 && store_make(&B, &octx, sb, 3, &st) == 0,
              "%s", st.msg);
        cc_params *S[2] = {&A, &B};
        int n_global = 0;
        for (int k = 0; k < p; k++) n_global += k + 1;
        /* the reference: the same gradients, reduced after "backward" */
        float *want[2];
        for (int s = 0; s < 2; s++) {
            want[s] = calloc(S[s]->n_train, sizeof(float));
            for (int i = 0; i < S[s]->n; i++)
                for (size_t e = 0; !S[s]->p[i].frozen && e < S[s]->p[i].numel; e++)
                    want[s][S[s]->p[i].offset + e] = grad_value(d.rank + s, S[s]->p[i].offset + e);
            CHECK(dist_allreduce_grad(&d, want[s], S[s]->n_train, d.rank + 1, n_global, &st) == 0,
                  "%s", st.msg);
        }
        /* (few buckets per case: oversubscribed ranks take a time slice per collective) */
        const size_t buckets[] = {1, 7, 256, 1u << 20};
        for (int ov = 1; ov >= 0; ov--)
            for (size_t bi = 0; bi < sizeof buckets / sizeof *buckets; bi++) {
                d.overlap = ov;
                d.bucket_floats = buckets[bi];
                if (bi == 0) {    /* buckets of one float: store B alone */
                    CHECK(overlap_once(&d, S + 1, 1, 1, d.rank + 1, n_global, &st) == 0, "%s", st.msg);
                    CHECK(!memcmp(B.grad, want[1], sizeof(float) * B.n_train),
                          "reduction of one store (buckets of 1 float, overlap %d) differs", ov);
                    continue;
                }
                if (bi == 2 && ov) {    /* backward reported nothing: all buckets at the end */
                    for (int q = 0; q < 2; q++) {
                        params_zero_grad(S[q]);
                        for (int i = 0; i < S[q]->n; i++)
                            for (size_t e = 0; !S[q]->p[i].frozen && e < S[q]->p[i].numel; e++)
                                S[q]->grad[S[q]->p[i].offset + e] =
                                    grad_value(d.rank + q, S[q]->p[i].offset + e);
                    }
                    CHECK(dist_grad_begin(&d, S, 2, d.rank + 1, n_global, &st) == 0 &&
                              dist_grad_end(&d, &st) == 0, "%s", st.msg);
                    for (int q = 0; q < 2; q++)
                        CHECK(!memcmp(S[q]->grad, want[q], sizeof(float) * S[q]->n_train),
                              "reduction without events, store %d, differs", q);
                }
                CHECK(overlap_once(&d, S, 2, 0, d.rank + 1, n_global, &st) == 0, "%s", st.msg);
                for (int s = 0; s < 2; s++)
                    CHECK(!memcmp(S[s]->grad, want[s], sizeof(float) * S[s]->n_train),
                          "%s reduction of store %d (buckets of %zu floats) differs from "
                          "dist_allreduce_grad", ov ? "overlapped" : "blocking", s, buckets[bi]);
            }
        /* events outside a step, and of gradients of no registered store, are ignored */
        float other[4] = {0};
        CHECK(dist_grad_event(&d, CC_GRAD_FINAL, other, 4, &st) == 0, "%s", st.msg);
        CHECK(dist_grad_end(&d, &st) == (p > 1 ? -1 : 0), "dist_grad_end without begin accepted");
        status_clear(&st);
        d.overlap = 0;
        for (int s = 0; s < 2; s++) free(want[s]);
        params_free(&A);
        params_free(&B);
        ctx_free(&octx);
    }

    /* Sums of doubles, in rank order. */
    double v[3] = {d.rank + 0.1, 1e16, -(double)d.rank}, want3[3] = {0, 0, 0};
    for (int k = 0; k < p; k++) {
        const double x[3] = {k + 0.1, 1e16, -(double)k};
        for (int j = 0; j < 3; j++) want3[j] = k == 0 ? x[j] : want3[j] + x[j];
    }
    CHECK(dist_sum_doubles(&d, v, 3, &st) == 0, "%s", st.msg);
    CHECK(memcmp(v, want3, sizeof v) == 0, "sum over ranks: %g %g %g, want %g %g %g", v[0], v[1],
          v[2], want3[0], want3[1], want3[2]);

    /* A stop flag raised on the last rank only reaches every rank. */
    CHECK(dist_any(&d, 0) == 0, "dist_any(0) is 1");
    CHECK(dist_any(&d, d.rank == p - 1) == 1, "a flag on rank %d is not seen", p - 1);

    /* Broadcast of doubles from rank 0. */
    double b[2] = {d.rank == 0 ? 3.25 : -1, d.rank == 0 ? 7 : -1};
    CHECK(dist_bcast_doubles(&d, b, 2, &st) == 0 && b[0] == 3.25 && b[1] == 7,
          "broadcast gave %g %g", b[0], b[1]);

    /* Parameter stores: broadcast makes them equal (the hash agrees),
     * buffers average except num_batches_tracked, and a divergence is
     * reported naming the rank. */
    cc_ctx ctx;
    CHECK(ctx_init(&ctx, 1, &st) == 0, "%s", st.msg);
    cc_params P;
    params_init(&P, &ctx);
    const int64_t w[1] = {5}, one[1] = {1};
    CHECK(params_add(&P, "bn/weight", 1, w, PARAM_TRAINABLE, &st) == 0, "%s", st.msg);
    CHECK(params_add(&P, "bn/running_mean", 1, w, PARAM_BUFFER, &st) == 1, "%s", st.msg);
    CHECK(params_add(&P, "bn/num_batches_tracked", 1, one, PARAM_BUFFER, &st) == 2, "%s", st.msg);
    CHECK(params_finalize(&P, &st) == 0, "%s", st.msg);
    for (size_t i = 0; i < P.n_train; i++) P.value[i] = P.m[i] = P.v[i] = (float)(d.rank * 10 + i);
    for (size_t i = 0; i < 5; i++) P.buf[i] = (float)(d.rank * 2);
    P.buf[5] = 42;
    CHECK(dist_check_same(&d, &P, "test", &st) == (p > 1 ? -1 : 0),
          "different weights on %d ranks not reported", p);
    if (p > 1) CHECK(strstr(st.msg, "rank 1") != NULL, "message does not name rank 1: %s", st.msg);
    status_clear(&st);
    CHECK(dist_bcast_params(&d, &P, &st) == 0, "%s", st.msg);
    CHECK(P.value[4] == 4 && P.m[4] == 4 && P.v[4] == 4, "broadcast of the store failed");
    CHECK(dist_check_same(&d, &P, "test", &st) == 0, "%s", st.msg);
    for (size_t i = 0; i < 5; i++) P.buf[i] = (float)(d.rank * 2);
    CHECK(dist_average_buffers(&d, &P, &st) == 0, "%s", st.msg);
    CHECK(P.buf[0] == (float)(p - 1) && P.buf[5] == 42, "buffers averaged to %g, count %g (want %d, 42)",
          P.buf[0], P.buf[5], p - 1);
    params_free(&P);
    ctx_free(&ctx);

    int all = dist_any(&d, failures != 0);
    if (d.rank == 0) printf("test_mpi_dist: %d rank(s), %s\n", p, all ? "FAILED" : "all checks passed");
    dist_close(&d);
    dist_finalize();
    return all ? 1 : 0;
}
