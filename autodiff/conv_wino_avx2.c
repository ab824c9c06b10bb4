/* conv_wino_avx2.c - conv_wino.c's kernels compiled for AVX2 (see isa.h);
 * conv_wino.c calls them only when the CPU has it. */
#include "autodiff/conv_wino.h"

#include <omp.h>
#include <string.h>

#pragma GCC target("avx2,fma")
#define WK(name) name##_avx2
#include "autodiff/conv_wino_kern.h"
