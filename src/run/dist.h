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
 * 2 (p-1)/p * 4 n (a ring allreduce's volume).
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

/* A process's view of the job, plus communication counters. */
typedef struct cc_dist {
    int rank, size;
    double comm_seconds;        /* wall time spent in gradient reductions */
    double comm_bytes;          /* bytes this rank sent in gradient reductions */
    int64_t reductions;         /* gradient reductions done */
    float *scratch;             /* p chunk-sized receive buffer (allreduce) */
    size_t scratch_n;
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
