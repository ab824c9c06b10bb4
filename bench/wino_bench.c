/* wino_bench.c - per-call times of our Winograd kernels (autodiff/conv_wino.h),
 * without the tape around them: the forward convolution with weights
 * transformed in the call (training, or inference without fixed weights),
 * the same with weights transformed once beforehand (inference on fixed
 * weights), and the weight transform alone.
 *
 * usage: wino-bench N CIN COUT H W [REPS]
 * Prints, per mode, the fastest and the mean of REPS timed calls (default 8)
 * after one untimed call, at the kernel variant ctx_init picks
 * (CELLCOUNT_MAX_ISA caps it) and OMP_NUM_THREADS threads.  Input and
 * output are plain NCHW.  Exit status 2 on bad arguments, 1 on failure.
 */
#include "autodiff/conv_wino.h"
#include "autodiff/ctx.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* 64-byte aligned floats filled with a fixed pattern, or NULL. */
static float *floats(size_t n, int pattern)
{
    float *p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    for (size_t i = 0; p && i < n; i++) p[i] = pattern ? (float)(i % 7) * 0.1f - 0.3f : 0.0f;
    return p;
}

/* mode 0: forward transforming w; 1: forward on U; 2: the transform alone. */
static void run(const char *what, int mode, const wino_geom *g, const float *x,
                const wino_layout *lx, const float *w, float *U, float *y,
                const wino_layout *ly, float *scratch, int reps)
{
    double best = 1e30, sum = 0;
    for (int r = 0; r <= reps; r++) {
        const double t0 = seconds();
        if (mode == 2)
            wino_transform_weights(g, w, 0, U);
        else
            wino_forward(g, x, lx, w, mode ? U : NULL, 0, NULL, y, ly, scratch);
        const double dt = seconds() - t0;
        if (r == 0) continue;   /* untimed: first touch of the buffers */
        sum += dt;
        if (dt < best) best = dt;
    }
    printf("  %-34s min %8.3f ms  mean %8.3f ms\n", what, 1e3 * best, 1e3 * sum / reps);
}

int main(int argc, char **argv)
{
    if (argc < 6 || argc > 7) {
        fprintf(stderr, "usage: wino-bench N CIN COUT H W [REPS]\n");
        return 2;
    }
    long v[6] = {0, 0, 0, 0, 0, 8};
    for (int i = 1; i < argc; i++) v[i - 1] = strtol(argv[i], NULL, 10);
    if (v[0] < 1 || v[1] < 16 || v[1] % 8 || v[2] < 16 || v[2] % 8 || v[3] < 1 || v[4] < 1 ||
        v[5] < 1) {
        fprintf(stderr, "wino-bench: need N >= 1, CIN and COUT multiples of 8 from 16, H, W, "
                        "REPS >= 1\n");
        return 2;
    }
    cc_ctx ctx;
    cc_status st;
    status_clear(&st);
    if (ctx_init(&ctx, omp_get_max_threads(), &st)) {
        fprintf(stderr, "wino-bench: %s\n", st.msg);
        return 1;
    }
    const int64_t n = v[0], ci = v[1], co = v[2], h = v[3], wd = v[4];
    wino_geom g;
    wino_geom_init(&g, n, ci, co, h, wd);
    wino_geom_set_isa(&g, ctx.isa);
    const wino_layout lx = {ci * h * wd, 8 * h * wd, h * wd, wd, 1};
    const wino_layout ly = {co * h * wd, 8 * h * wd, h * wd, wd, 1};
    float *x = floats((size_t)(n * ci * h * wd), 1), *w = floats((size_t)(co * ci * 9), 1);
    float *y = floats((size_t)(n * co * h * wd), 0), *U = floats(wino_u_floats(&g), 0);
    float *scratch = floats(wino_scratch_floats(&g, omp_get_max_threads()), 0);
    if (!x || !w || !y || !U || !scratch) {
        fprintf(stderr, "wino-bench: out of memory\n");
        return 1;
    }
    printf("wino %ldx%ldx%ldx%ld -> %ld, variant %s, %d thread(s), %lld tiles, U %.1f MiB\n",
           v[0], v[1], v[3], v[4], v[2], isa_variant_name(ctx.isa), omp_get_max_threads(),
           (long long)g.tiles, (double)wino_u_floats(&g) * 4.0 / (1 << 20));
    run("forward, weights transformed", 0, &g, x, &lx, w, U, y, &ly, scratch, (int)v[5]);
    wino_transform_weights(&g, w, 0, U);
    run("forward on transformed weights", 1, &g, x, &lx, w, U, y, &ly, scratch, (int)v[5]);
    run("weight transform alone", 2, &g, x, &lx, w, U, y, &ly, scratch, (int)v[5]);
    free(x), free(w), free(y), free(U), free(scratch);
    ctx_free(&ctx);
    return 0;
}
