/* dist.h - data-parallel training over MPI (MPI-3.1 C API only, so Open MPI
 * and MPICH both work).
 *
 * Built with ./configure --with-mpi, every function below talks to
 * MPI_COMM_WORLD; without it (the default) they are single-process no-ops
 * with the same results, so the trainers call them unconditionally.  At one
 * rank every function returns without touching its data: a 1-rank MPI run
 * is bit for bit the non-MPI build.
 *
 * Determinism: dist_allreduce_grad() reduces with a fixed order (each rank
 * owns a contiguous chunk, receives everyone's copy of it with one
 * alltoallv, adds them in rank order 0, 1, ..., p-1, and an allgatherv
 * hands the chunks back), independent of the MPI library's algorithm
 * choices: every rank holds bit-identical gradients, and two runs at the
 * same rank count are bit-identical.  Bytes moved per rank per call:
 * 2 (p-1)/p * 4 n (a ring allreduce's volume).  The overlapped path
 * (dist_grad_begin/end, run.overlap_allreduce) reduces buckets of the slab
 * the same way, element by element in rank order, so its bits are those
 * of the blocking path.
 *
 * Errors: a rank that fails returns its message up to main(), which prints
 * it and calls dist_abort(): MPI_Abort ends every rank within seconds.
 * Decisions that all ranks must take together (a NaN loss) go through
 * dist_any().
 */
#ifndef CC_DIST_H
#define CC_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "autodiff/params.h"
#include "autodiff/status.h"

struct dist_overlap;

/* A process's view of the job, plus communication counters. */
typedef struct cc_dist {
    int rank, size;
    double comm_seconds;        /* wall time spent in gradient reductions (overlapped:
                                   in the polls during backward and after it) */
    double wait_seconds;        /* of comm_seconds: in dist_grad_end, after backward */
    double window_seconds;      /* overlapped: backward time from the first bucket's
                                   start to the end of backward */
    double comm_bytes;          /* bytes this rank sent in gradient reductions */
    int64_t reductions;         /* gradient reductions done (steps) */
    float *scratch;             /* p chunk-sized receive buffer (allreduce) */
    size_t scratch_n;
    /* Overlap of the reduction with backward (run.overlap_allreduce): set
     * by the caller after dist_open; used by dist_grad_begin/end. */
    int overlap;
    size_t bucket_floats;       /* bucket length (run.allreduce_bucket_mb) */
    struct dist_overlap *ov;    /* buckets, requests, scratch (dist.c) */
} cc_dist;

/* 1 when built with MPI. */
int dist_compiled(void);

/* main(): initialise MPI when started by a launcher (mpirun/mpiexec/srun
 * environment; else, and without MPI, a no-op: one rank).  Returns 0 or -1 with a
 * message; call dist_finalize() before returning from main. */
int dist_init(int *argc, char ***argv, cc_status *st);
void dist_finalize(void);

/* Rank and size of the whole job (0 and 1 without MPI or before init). */
int dist_world_rank(void);
int dist_world_size(void);

/* End every rank of the job with exit status code (without MPI: nothing;
 * the caller returns code itself). */
void dist_abort(int code);

/* Fill *d for the whole job (no allocation yet); dist_close frees. */
void dist_open(cc_dist *d);
void dist_close(cc_dist *d);

/* Rank 0's n floats (or bytes, or doubles) to every rank, in place. */
int dist_bcast_floats(cc_dist *d, float *x, size_t n, cc_status *st);
int dist_bcast_doubles(cc_dist *d, double *x, size_t n, cc_status *st);

/* Gradient reduction of a batch split over the ranks: this rank's loss was
 * the mean over n_local samples of a global batch of n_global, so its
 * gradient g is scaled by n_local / n_global and the scaled gradients are
 * summed in rank order; g then holds the global-batch mean gradient,
 * bit-identical on every rank.  Call on every rank with the same n. */
int dist_allreduce_grad(cc_dist *d, float *g, size_t n, int n_local, int n_global,
                        cc_status *st);

/* One training step's gradient reduction, overlapped with backward when
 * d->overlap is set (and more than one rank runs):
 *
 *     dist_grad_begin(d, stores, k, n_local, n_global, st);
 *     tape_backward(...);       with ctx.grad_event = dist_grad_event
 *     dist_grad_end(d, st);     before clipping and the optimizer
 *
 * stores[0..k) (k <= 4) are the parameter stores whose gradient slabs the
 * step reduces, in forward order (the FPN's before the counter's).  Each
 * slab is cut into buckets of d->bucket_floats floats; a bucket's
 * reduction starts once every parameter overlapping it has its final
 * gradient (CC_GRAD_FINAL; parameters that backward does not announce
 * keep their zeroed gradient), and buckets start in a fixed order, from
 * the last bucket of the last store backwards (the order backward
 * finishes them), so that every rank starts the same collectives in the
 * same order.  Each bucket is reduced like dist_allreduce_grad (scaled by
 * n_local / n_global, summed in rank order by the rank owning each chunk:
 * a nonblocking alltoallv, then a nonblocking allgatherv), so the result
 * is bit for bit the one of dist_allreduce_grad on each whole slab.  Open
 * MPI progresses requests only inside MPI calls: CC_GRAD_POLL tests them
 * after every node.  dist_grad_end starts what is left, waits for all and
 * leaves the global-batch mean gradient in every slab, bit-identical on
 * every rank.  Without overlap (or when backward reported nothing)
 * dist_grad_end reduces each slab with dist_allreduce_grad's algorithm.
 * At one rank both do nothing.  Call on every rank, with the same stores.
 * Returns 0, or -1 with a message (out of memory, an MPI error). */
int dist_grad_begin(cc_dist *d, cc_params *const *stores, int k, int n_local, int n_global,
                    cc_status *st);
int dist_grad_end(cc_dist *d, cc_status *st);

/* cc_ctx.grad_event (ctx.h): user is the cc_dist.  Ignores events outside
 * dist_grad_begin/end and gradients outside the step's slabs. */
int dist_grad_event(void *user, int ev, float *g, size_t n, cc_status *st);

/* Element-wise sum over ranks of n doubles in place, added in rank order
 * (identical on every rank). */
int dist_sum_doubles(cc_dist *d, double *x, int n, cc_status *st);

/* cc_ctx.allreduce_sum for synchronised BatchNorm (ctx.h): user is the
 * cc_dist; dist_sum_doubles over all ranks. */
int dist_bn_allreduce(void *user, double *buf, int n, cc_status *st);

/* 1 on every rank when flag is non-zero on any rank. */
int dist_any(cc_dist *d, int flag);

/* Average the BatchNorm running statistics (the buffer slab, except
 * num_batches_tracked, equal everywhere) over the ranks, so evaluation and
 * checkpoints see statistics of all ranks' batches. */
int dist_average_buffers(cc_dist *d, cc_params *P, cc_status *st);

/* Broadcast rank 0's parameter values, Adam/SGD moments and buffers. */
int dist_bcast_params(cc_dist *d, cc_params *P, cc_status *st);

/* FNV-1a hash of the store's values and buffers. */
uint64_t dist_params_hash(const cc_params *P);

/* Compare the hash of P over ranks; -1 with a message naming the first
 * rank whose weights differ from rank 0's. */
int dist_check_same(cc_dist *d, const cc_params *P, const char *what, cc_status *st);

#endif
