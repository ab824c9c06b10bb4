/* core_probe.c - how much FMA throughput the host delivers right now, for
 * the 1- vs 2-thread scaling check (bench/scaling.sh).
 *
 * shared/bench/fma_probe.c needs AVX-512, which the development machines
 * (AMD Zen 1) lack; this is an AVX2 + FMA version.  Each OpenMP thread runs
 * independent chains of ymm FMAs (enough of them to hide the FMA latency)
 * for a fixed time; the total GFLOP/s of T threads divided by that of one
 * thread says how many cores the host is really giving us.
 *
 *   gcc -O2 -mavx2 -mfma -fopenmp bench/core_probe.c -o /tmp/core_probe
 *   OMP_NUM_THREADS=2 /tmp/core_probe [seconds]
 * prints: threads=2 gflops=78.12
 */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#define CHAINS 10

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 1.0;
    if (!(seconds > 0)) seconds = 1.0;
    double flops = 0;
    int threads = 1;
#pragma omp parallel reduction(+ : flops)
    {
#pragma omp single
        threads = omp_get_num_threads();
        __m256 acc[CHAINS];
        const __m256 m = _mm256_set1_ps(0.999999f), a = _mm256_set1_ps(1e-7f);
        for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_set1_ps((float)c);
        long rounds = 0;
        double t0 = omp_get_wtime();
        while (omp_get_wtime() - t0 < seconds) {
            for (int k = 0; k < 1000; k++)
                for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_fmadd_ps(acc[c], m, a);
            rounds++;
        }
        double dt = omp_get_wtime() - t0;
        /* Keep the chains alive. */
        float sink[8];
        __m256 s = acc[0];
        for (int c = 1; c < CHAINS; c++) s = _mm256_add_ps(s, acc[c]);
        _mm256_storeu_ps(sink, s);
        if (sink[0] == 12345.0f) fprintf(stderr, "-");
        flops = (double)rounds * 1000.0 * CHAINS * 16.0 / dt;
    }
    printf("threads=%d gflops=%.2f\n", threads, flops / 1e9);
    return 0;
}
