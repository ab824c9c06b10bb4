/* isa.h - run-time choice of the instruction set for the engine's own C
 * kernels (Winograd transforms, one-channel conv, fused LeakyReLU, Adam).
 *
 * The portable build targets baseline x86-64 (SSE2).  Those kernels are
 * also compiled for AVX2 (+FMA) and AVX-512 (F, VL, BW, DQ) and the best
 * one the CPU runs is chosen once per context.  CELLCOUNT_MAX_ISA caps the
 * choice the way ONEDNN_MAX_CPU_ISA caps oneDNN's, so tests can run every
 * variant the CPU supports.  The kernels are built with -std=c11 (no FMA
 * contraction, no reassociation), so every variant performs the same IEEE
 * operations in the same order as the baseline; the one exception is the
 * AVX-512 Winograd's own GEMM kernel (conv_wino_avx512.c: explicit FMA
 * chains), whose results are checked against the reference instead.
 */
#ifndef CC_ISA_H
#define CC_ISA_H

#include "autodiff/status.h"

typedef enum cc_isa { CC_ISA_SSE2 = 0, CC_ISA_AVX2 = 1, CC_ISA_AVX512 = 2 } cc_isa;
#define CC_ISA_COUNT 3

/* "sse2", "avx2", "avx512" (also the values CELLCOUNT_MAX_ISA accepts). */
const char *isa_variant_name(cc_isa isa);

/* 1 when this CPU (and OS) can run variant isa. */
int isa_cpu_has(cc_isa isa);

/* The best variant this CPU runs, capped by CELLCOUNT_MAX_ISA when set.
 * Returns 0, or -1 with a message naming the variable when its value is
 * not one of the names above. */
int isa_choose(cc_isa *out, cc_status *st);

#endif
