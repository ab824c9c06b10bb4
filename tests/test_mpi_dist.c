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
    if (argc == 4 && !strcmp(argv[1], "--bench")) {
        /* --bench FLOATS REPS: seconds per gradient allreduce (docs/CLUSTER.md) */
        const size_t n = (size_t)atol(argv[2]);
        const int reps = atoi(argv[3]);
        float *g = calloc(n, sizeof *g);
        if (!g || reps < 1) return 1;
        dist_allreduce_grad(&d, g, n, 1, p, &st);    /* warm-up */
        d.comm_seconds = 0;
        for (int i = 0; i < reps; i++) dist_allreduce_grad(&d, g, n, 1, p, &st);
        if (d.rank == 0)
            printf("allreduce of %.1f MB over %d ranks: %.1f ms each (%.2f GB/s bus)\n",
                   4e-6 * (double)n, p, 1e3 * d.comm_seconds / reps,
                   2.0 * (p - 1) / p * 4.0 * (double)n / (d.comm_seconds / reps) / 1e9);
        free(g);
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
