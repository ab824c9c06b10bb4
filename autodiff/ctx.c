/* ctx.c - see ctx.h. */
#include "autodiff/ctx.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Blocks from this size on come straight from mmap: zero pages the kernel
 * maps on first touch, so memory that is never written (the gradient and
 * Adam slabs of an inference-only process, the unused tail of a scratchpad)
 * never counts in the resident set, and no memset pass is needed. */
#define CTX_MMAP_MIN ((size_t)1 << 20)

int ctx_init(cc_ctx *c, int threads, cc_status *st)
{
    memset(c, 0, sizeof *c);
    if (isa_choose(&c->isa, st)) return -1;
    if (threads > 0) omp_set_num_threads(threads);
    c->threads = omp_get_max_threads();
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_avx512_core: case dnnl_cpu_isa_avx512_core_vnni:
    case dnnl_cpu_isa_avx512_core_bf16: case dnnl_cpu_isa_avx512_core_amx:
        c->dnnl_avx512 = 1;
        break;
    default:
        break;
    }
    dnnl_status_t s = dnnl_engine_create(&c->engine, dnnl_cpu, 0);
    if (s != dnnl_success)
        return status_set(st, "oneDNN: cannot create the CPU engine (%s)", ctx_dnnl_status_name(s));
    s = dnnl_stream_create(&c->stream, c->engine, dnnl_stream_default_flags);
    if (s != dnnl_success) {
        dnnl_engine_destroy(c->engine);
        c->engine = NULL;
        return status_set(st, "oneDNN: cannot create a stream (%s)", ctx_dnnl_status_name(s));
    }
    return 0;
}

const char *ctx_dnnl_isa_name(void)
{
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    default: return "other";
    }
}

int ctx_set_precision(cc_ctx *c, const char *name, int *emulated, cc_status *st)
{
    int emu = 0;
    if (!strcmp(name, "fp32")) {
        c->bf16 = 0;
    } else if (!strcmp(name, "bf16")) {
        /* oneDNN 2.6 has bf16 convolution / inner-product kernels from
         * avx512_core on (emulating the bf16 dot products there); below it
         * only its reference kernels, hundreds of times slower. */
        switch (dnnl_get_effective_cpu_isa()) {
        case dnnl_cpu_isa_avx512_core_bf16:
        case dnnl_cpu_isa_avx512_core_amx: break;
        case dnnl_cpu_isa_avx512_core:
        case dnnl_cpu_isa_avx512_core_vnni: emu = 1; break;
        default:
            return status_set(st,
                              "precision bf16 needs a CPU with AVX-512 (oneDNN reports %s%s); "
                              "use fp32",
                              ctx_dnnl_isa_name(),
                              getenv("ONEDNN_MAX_CPU_ISA") ? ", capped by ONEDNN_MAX_CPU_ISA" : "");
        }
        c->bf16 = 1;
    } else {
        return status_set(st, "unknown precision '%s' (fp32 or bf16)", name);
    }
    if (emulated) *emulated = emu;
    return 0;
}

const char *ctx_precision_name(const cc_ctx *c)
{
    return c->bf16 ? "bf16" : "fp32";
}

int ctx_omp_env_default(char **argv)
{
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT") || getenv("CELLCOUNT_OMP_DEFAULTS"))
        return 0;
    /* Under an MPI launcher a re-exec breaks the process's wire-up (Open
     * MPI 4.1: orte_init fails in every rank): keep libgomp's defaults
     * there; docs/CLUSTER.md says to set OMP_WAIT_POLICY in the job. */
    static const char *launched[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof launched / sizeof *launched; i++)
        if (getenv(launched[i])) return 0;
    if (setenv("CELLCOUNT_OMP_DEFAULTS", "1", 1) || setenv("OMP_WAIT_POLICY", "passive", 1))
        return -1;
    execv("/proc/self/exe", argv);
    return -1;  /* no /proc: go on with the defaults (the guard stays set) */
}

void ctx_free(cc_ctx *c)
{
    if (c->stream) dnnl_stream_destroy(c->stream);
    if (c->engine) dnnl_engine_destroy(c->engine);
    c->stream = NULL;
    c->engine = NULL;
}

void ctx_set_threads(cc_ctx *c, int threads)
{
    if (threads <= 0) return;
    omp_set_num_threads(threads);
    c->threads = threads;
}

void *ctx_alloc(cc_ctx *c, size_t bytes, cc_status *st)
{
    size_t n = (bytes + 63) & ~(size_t)63;
    if (n == 0) n = 64;
    void *p;
    if (n >= CTX_MMAP_MIN) {
        p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) p = NULL;
    } else {
        p = aligned_alloc(64, n);
        if (p) memset(p, 0, n);
    }
    if (!p) {
        status_set(st, "out of memory allocating %zu bytes", bytes);
        return NULL;
    }
    c->n_allocs++;
    c->bytes_live += n;
    return p;
}

void ctx_release(cc_ctx *c, void *p, size_t bytes)
{
    if (!p) return;
    size_t n = (bytes + 63) & ~(size_t)63;
    if (n == 0) n = 64;
    c->bytes_live -= n;
    if (n >= CTX_MMAP_MIN)
        munmap(p, n);
    else
        free(p);
}

const char *ctx_dnnl_status_name(dnnl_status_t s)
{
    switch (s) {
    case dnnl_success: return "dnnl_success";
    case dnnl_out_of_memory: return "dnnl_out_of_memory";
    case dnnl_invalid_arguments: return "dnnl_invalid_arguments";
    case dnnl_unimplemented: return "dnnl_unimplemented";
    case dnnl_iterator_ends: return "dnnl_iterator_ends";
    case dnnl_runtime_error: return "dnnl_runtime_error";
    case dnnl_not_required: return "dnnl_not_required";
    default: return "dnnl_unknown_status";
    }
}
