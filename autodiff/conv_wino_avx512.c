/* conv_wino_avx512.c - conv_wino.c's kernels compiled for AVX-512 (F, VL, BW, DQ) (see isa.h);
 * conv_wino.c calls them only when the CPU has it. */
#include "autodiff/conv_wino.h"

#include <omp.h>
#include <string.h>

#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")
#define WK(name) name##_avx512
#include "autodiff/conv_wino_kern.h"
