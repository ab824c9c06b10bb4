/* conv_wino_avx512.c - conv_wino.c's kernels compiled for AVX-512 (F, VL, BW, DQ) (see isa.h);
 * conv_wino.c calls them only when the CPU has it.
 *
 * Unlike the other variants, forward and backward data multiply with their
 * own GEMM kernel instead of 36 dnnl_sgemm calls per chunk: dnnl_sgemm
 * re-packs its B operand (U, up to 256 KiB per transform point) on every
 * call, and a chunk's GEMMs are short (tens of rows), so the packing and
 * call overhead were a large part of the Winograd time on Zen 5.  Here U
 * is packed once per call (weights_transform, WINO_OWN_GEMM) and the
 * kernel below keeps a 12 x 32 block of the product in 24 registers.  The
 * weight gradient keeps dnnl_sgemm (M^T V over the tiles): an 8 x 32
 * kernel of ours for it, with both operands walked down the tiles, made
 * that pass slower (256 -> 256 at 96x128: 87-94 ms per call against 59-62
 * ms; docs/PERFORMANCE.md).
 *
 * Numerics: each product element is one chain of fused multiply-adds over
 * the input channels in order (k = 0, 1, ..., K-1), from zero.  That order
 * depends on nothing but K, so results are the same for any chunking and
 * thread count; they differ from the dnnl_sgemm variants in the last bits
 * (FMA rounding), which the tests check against the reference instead.
 */
#include "autodiff/conv_wino.h"

#include <omp.h>
#include <string.h>

#include <immintrin.h>

/* GCC takes the ISA from the pragma; clang (the fuzz build, fuzz/build.sh)
 * ignores `#pragma GCC target` for intrinsics and needs the attribute on
 * the functions that use them, which its attribute pragma applies up to
 * the pop below. */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma"))), \
                             apply_to = function)
#else
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")
#endif

#define WINO_OWN_GEMM 1
#define WINO_GEMM_ROWS 12   /* tiles per register block */
#define WINO_STREAM_MIN_BYTES ((size_t)16 << 20)   /* weights_transform: stores bypass the cache */

/* C (12 x ncol, row stride ldc; ncol in 1..32) = A (12 x K, row stride lda)
 * * P (one packed panel of U: K x 32, row stride 32).  12 rows x 2 vectors
 * of 16 = 24 accumulators: with the two panel vectors and a broadcast that
 * fills 27 of the 32 zmm registers, and each step's 24 FMAs hide the FMA
 * latency (4 cycles x 2 ports needs at least 8 independent chains). */
static inline __attribute__((always_inline)) void
gemm_12x32(int64_t K, const float *A, int64_t lda, const float *P, float *C, int64_t ldc,
           int64_t ncol)
{
    __m512 c0[WINO_GEMM_ROWS], c1[WINO_GEMM_ROWS];
#pragma GCC unroll 12
    for (int r = 0; r < WINO_GEMM_ROWS; r++) c0[r] = c1[r] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k++) {
        const __m512 b0 = _mm512_loadu_ps(P + k * 32), b1 = _mm512_loadu_ps(P + k * 32 + 16);
#pragma GCC unroll 12
        for (int r = 0; r < WINO_GEMM_ROWS; r++) {
            const __m512 a = _mm512_set1_ps(A[r * lda + k]);
            c0[r] = _mm512_fmadd_ps(a, b0, c0[r]);
            c1[r] = _mm512_fmadd_ps(a, b1, c1[r]);
        }
    }
    if (ncol == 32) {
#pragma GCC unroll 12
        for (int r = 0; r < WINO_GEMM_ROWS; r++) {
            _mm512_storeu_ps(C + r * ldc, c0[r]);
            _mm512_storeu_ps(C + r * ldc + 16, c1[r]);
        }
    } else {    /* the last panel of a cout that is not a multiple of 32 */
        const __mmask16 m0 = ncol >= 16 ? 0xffff : (__mmask16)((1u << ncol) - 1);
        const __mmask16 m1 = ncol <= 16 ? 0 : (__mmask16)((1u << (ncol - 16)) - 1);
        for (int r = 0; r < WINO_GEMM_ROWS; r++) {
            _mm512_mask_storeu_ps(C + r * ldc, m0, c0[r]);
            _mm512_mask_storeu_ps(C + r * ldc + 16, m1, c1[r]);
        }
    }
}

/* One transform point of a chunk: M (rows x N, row stride N) = V (rows x
 * K, row stride K) * U (packed: N/32 panels of K x 32), rows a multiple of
 * WINO_GEMM_ROWS.  Panel-outer: one panel (K x 32 floats, 32 KiB at K =
 * 256) stays in L1 while the chunk's rows of V stream past it from L2. */
static void wino_gemm_chunk(int64_t rows, int64_t N, int64_t K, const float *V, const float *U,
                            float *M)
{
    for (int64_t p = 0; p * 32 < N; p++) {
        const int64_t ncol = N - p * 32 < 32 ? N - p * 32 : 32;
        for (int64_t r = 0; r < rows; r += WINO_GEMM_ROWS)
            gemm_12x32(K, V + r * K, K, U + p * K * 32, M + r * N + p * 32, N, ncol);
    }
}

/* dst[0..8) = src[0..8) with a non-temporal store (dst 32-byte aligned);
 * pointers, not vectors, so that clang's callers at its default ISA can
 * call it (see below). */
static inline void wino_stream8(float *dst, const float *src)
{
    _mm256_stream_ps(dst, _mm256_loadu_ps(src));
}

/* clang: the shared kernels below stay at its default ISA, as in the
 * other variants (its attribute on them would not reach the OpenMP
 * regions it outlines, and calls between the two would change the ABI of
 * the vector arguments); GCC compiles everything for AVX-512. */
#if defined(__clang__)
#pragma clang attribute pop
#endif

#define WK(name) name##_avx512
#include "autodiff/conv_wino_kern.h"
