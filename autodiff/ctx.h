/* ctx.h - the engine context: oneDNN engine + stream, thread count, and the
 * accounting of the engine's own heap allocations.
 *
 * One cc_ctx per process is typical; nothing in the library is global, so
 * several contexts (e.g. concurrent sweep points in threads) are allowed.
 */
#ifndef CC_CTX_H
#define CC_CTX_H

#include <stddef.h>
#include <oneapi/dnnl/dnnl.h>

#include "autodiff/isa.h"
#include "autodiff/status.h"

typedef struct cc_ctx {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    int threads;            /* OpenMP threads used by ops and oneDNN */
    cc_isa isa;             /* variant of the engine's own C kernels (isa.h) */
    int dnnl_avx512;        /* 1: oneDNN's effective ISA is avx512_core or
                               better (its kernels differ in speed from the
                               AVX2 ones that our conv choices were tuned on) */
    int bf16;               /* 1: convolutions and inner products compute in
                               bf16 (ctx_set_precision); 0: fp32 */
    size_t n_allocs;        /* ctx_alloc() calls so far: a steady-state
                               training step must not change it */
    size_t bytes_live;      /* bytes currently held through ctx_alloc() */
    /* Synchronised BatchNorm (NULL: off, the default).  When set, every
     * batch-statistics BN on a training tape sums its per-channel
     * statistics, and in backward its per-channel gradient sums, over all
     * the processes that train together: the hook replaces buf[0..n) on
     * every participant by the element-wise sum over participants (the
     * same bits everywhere) and returns 0, or -1 with a message in st.
     * Every participant must record the same BN ops in the same order.
     * The engine itself knows no MPI: src/dist.c installs an MPI hook. */
    int (*allreduce_sum)(void *user, double *buf, int n, cc_status *st);
    void *allreduce_user;
    /* Gradients as backward finishes them (NULL: off, the default), so
     * that a data-parallel trainer can reduce parameter gradients while
     * backward is still running.  tape_backward() calls
     * grad_event(grad_event_user, ev, g, n, st):
     *   CC_GRAD_PENDING, before the walk, once per parameter tensor that a
     *     recorded node reads and that wants a gradient (g: its gradient,
     *     n floats, in the parameter slab): this backward adds to g;
     *   CC_GRAD_FINAL, once per such tensor, as soon as the walk has passed
     *     the earliest node that reads it: g will not change again in this
     *     backward (the hook may modify it from then on);
     *   CC_GRAD_POLL (g NULL, n 0) after every node, to drive progress.
     * A non-zero return stops backward with the hook's message in st.  The
     * engine itself knows no MPI: src/run/dist.c installs the MPI hook. */
    int (*grad_event)(void *user, int ev, float *g, size_t n, cc_status *st);
    void *grad_event_user;
} cc_ctx;

/* cc_ctx.grad_event's events. */
enum { CC_GRAD_PENDING = 0, CC_GRAD_FINAL = 1, CC_GRAD_POLL = 2 };

/* Create the CPU engine and stream, and choose the kernels' ISA variant
 * (isa_choose: the CPU's best, capped by CELLCOUNT_MAX_ISA).  threads <= 0
 * keeps OpenMP's default (OMP_NUM_THREADS or the core count).  Returns 0,
 * or -1 with a message (also for a bad CELLCOUNT_MAX_ISA). */
int ctx_init(cc_ctx *c, int threads, cc_status *st);

/* Compute precision of the convolutions and inner products run through
 * this context: "fp32" (the default) or "bf16" (mixed precision: bf16
 * activations into and weights of conv / linear, with fp32 master weights,
 * optimizer state, BN statistics, losses and reductions; see op_conv_bf16.c).
 * bf16 needs oneDNN's avx512_core_bf16 or avx512_core_amx (native), or
 * avx512_core / avx512_core_vnni (emulated, slower: *emulated is set to 1
 * so the caller can say so).  Set it before recording anything: nodes keep
 * their primitives across steps (a change rebuilds them).  Returns 0, or -1
 * with a message naming the ISA oneDNN reports when this CPU (or
 * ONEDNN_MAX_CPU_ISA) has no bf16 support, or for an unknown name. */
int ctx_set_precision(cc_ctx *c, const char *name, int *emulated, cc_status *st);

/* "fp32" or "bf16": the name of c's precision (for run.h5 and the bench). */
const char *ctx_precision_name(const cc_ctx *c);

/* oneDNN's effective CPU ISA by name ("avx512_core_bf16", "avx2", ...). */
const char *ctx_dnnl_isa_name(void);

/* Release the engine and stream.  Safe on a zeroed or failed ctx. */
void ctx_free(cc_ctx *c);

/* Set the OpenMP thread count for everything run through this context.
 * Primitives are keyed on the thread count, so changing it is safe. */
void ctx_set_threads(cc_ctx *c, int threads);

/* 64-byte aligned, zero-filled allocation, counted in n_allocs/bytes_live.
 * Returns NULL (and sets st) when out of memory. */
void *ctx_alloc(cc_ctx *c, size_t bytes, cc_status *st);

/* Free memory from ctx_alloc(); bytes must be the size asked for. */
void ctx_release(cc_ctx *c, void *p, size_t bytes);

/* Give OpenMP a wait policy that degrades gracefully on a busy machine,
 * unless the user chose one: when none of OMP_WAIT_POLICY, GOMP_SPINCOUNT
 * and CELLCOUNT_OMP_DEFAULTS is set, set OMP_WAIT_POLICY=passive (plus
 * CELLCOUNT_OMP_DEFAULTS=1, so it happens once) and re-execute the program
 * (/proc/self/exe) with the same argv.  libgomp reads these variables only
 * when it is loaded, before main, so setting them later has no effect.
 * Call first thing in main(), before any OpenMP or oneDNN use.  Returns
 * only when nothing needed doing (0) or the exec failed (-1: the program
 * can go on with libgomp's defaults).  Not under an MPI launcher
 * (OMPI_COMM_WORLD_SIZE, PMIX_RANK, PMI_RANK or PMI_SIZE set): a re-exec
 * breaks its wire-up.
 * Why (issue 13): libgomp's default spins at every barrier; with another
 * process on one of two vCPUs, a spinning thread burns the time slices its
 * partner needs, and 2 threads ran at half the speed of 1. */
int ctx_omp_env_default(char **argv);

/* Name of a oneDNN status, e.g. "dnnl_unimplemented". */
const char *ctx_dnnl_status_name(dnnl_status_t s);

#endif
