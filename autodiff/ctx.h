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

#include "autodiff/status.h"

typedef struct cc_ctx {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    int threads;            /* OpenMP threads used by ops and oneDNN */
    size_t n_allocs;        /* ctx_alloc() calls so far: a steady-state
                               training step must not change it */
    size_t bytes_live;      /* bytes currently held through ctx_alloc() */
} cc_ctx;

/* Create the CPU engine and stream.  threads <= 0 keeps OpenMP's default
 * (OMP_NUM_THREADS or the core count).  Returns 0, or -1 with a message. */
int ctx_init(cc_ctx *c, int threads, cc_status *st);

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

/* Name of a oneDNN status, e.g. "dnnl_unimplemented". */
const char *ctx_dnnl_status_name(dnnl_status_t s);

#endif
