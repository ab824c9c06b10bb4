/* isa.c - see isa.h. */
#include "autodiff/isa.h"

#include <stdlib.h>
#include <string.h>

static const char *const names[CC_ISA_COUNT] = {"sse2", "avx2", "avx512"};

const char *isa_variant_name(cc_isa isa)
{
    return (unsigned)isa < CC_ISA_COUNT ? names[isa] : "unknown";
}

int isa_cpu_has(cc_isa isa)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    switch (isa) {
    case CC_ISA_SSE2: return 1;
    case CC_ISA_AVX2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case CC_ISA_AVX512:
        return isa_cpu_has(CC_ISA_AVX2) && __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512dq");
    }
    return 0;
#else
    return isa == CC_ISA_SSE2;
#endif
}

int isa_choose(cc_isa *out, cc_status *st)
{
    cc_isa cap = CC_ISA_AVX512;
    const char *e = getenv("CELLCOUNT_MAX_ISA");
    if (e && *e) {
        int i = 0;
        while (i < CC_ISA_COUNT && strcmp(e, names[i])) i++;
        if (i == CC_ISA_COUNT)
            return status_set(st, "CELLCOUNT_MAX_ISA='%s' is not one of sse2, avx2, avx512", e);
        cap = (cc_isa)i;
    }
    cc_isa best = CC_ISA_SSE2;
    for (int i = CC_ISA_SSE2; i <= (int)cap; i++)
        if (isa_cpu_has((cc_isa)i)) best = (cc_isa)i;
    *out = best;
    return 0;
}
