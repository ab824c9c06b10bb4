/* dist.c - see dist.h. */
#include "config.h"
#include "src/run/dist.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef CC_HAVE_MPI
#include <mpi.h>
#endif

#ifdef CC_HAVE_MPI
static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
#endif

int dist_compiled(void)
{
#ifdef CC_HAVE_MPI
    return 1;
#else
    return 0;
#endif
}

#ifdef CC_HAVE_MPI
/* An MPI error as a status message (the default error handler aborts, so
 * this is reached only with MPI_ERRORS_RETURN). */
static int mpi_fail(cc_status *st, const char *what, int err)
{
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(err, s, &len);
    return status_set(st, "MPI %s failed: %s", what, s);
}

static int initialized(void)
{
    int flag = 0, fin = 0;
    MPI_Initialized(&flag);
    MPI_Finalized(&fin);
    return flag && !fin;
}
#endif

int dist_init(int *argc, char ***argv, cc_status *st)
{
#ifdef CC_HAVE_MPI
    /* Started by a launcher (mpirun, mpiexec, srun)?  Otherwise stay a
     * plain single process: an MPI singleton start costs ~1.5 s. */
    static const char *const launched[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK",
                                           "PMIX_RANK", "MPI_LOCALNRANKS"};
    int any = 0;
    for (size_t i = 0; i < sizeof launched / sizeof *launched; i++) any |= getenv(launched[i]) != NULL;
    if (!any) return 0;
    /* FUNNELED: only the main thread calls MPI (OpenMP workers and the
     * loader's prefetch thread never do). */
    int provided = 0, err = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    if (err != MPI_SUCCESS) return status_set(st, "MPI_Init_thread failed (error %d)", err);
    /* Errors come back as codes so that a message names the call. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
#else
    (void)argc;
    (void)argv;
    (void)st;
#endif
    return 0;
}

void dist_finalize(void)
{
#ifdef CC_HAVE_MPI
    if (initialized()) MPI_Finalize();
#endif
}

int dist_world_rank(void)
{
    int r = 0;
#ifdef CC_HAVE_MPI
    if (initialized()) MPI_Comm_rank(MPI_COMM_WORLD, &r);
#endif
    return r;
}

int dist_world_size(void)
{
    int n = 1;
#ifdef CC_HAVE_MPI
    if (initialized()) MPI_Comm_size(MPI_COMM_WORLD, &n);
#endif
    return n;
}

void dist_abort(int code)
{
#ifdef CC_HAVE_MPI
    if (initialized() && dist_world_size() > 1) {
        fflush(stdout);
        fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, code ? code : 1);
    }
#else
    (void)code;
#endif
}

void dist_open(cc_dist *d)
{
    memset(d, 0, sizeof *d);
    d->rank = dist_world_rank();
    d->size = dist_world_size();
}

void dist_close(cc_dist *d)
{
    free(d->scratch);
    d->scratch = NULL;
    d->scratch_n = 0;
}

/* MPI counts are int: broadcasts go in pieces of at most 2^30 elements. */
#define PIECE ((size_t)1 << 30)

int dist_bcast_floats(cc_dist *d, float *x, size_t n, cc_status *st)
{
    if (d->size == 1) return 0;
#ifdef CC_HAVE_MPI
    for (size_t o = 0; o < n; o += PIECE) {
        const int k = (int)(n - o < PIECE ? n - o : PIECE);
        int err = MPI_Bcast(x + o, k, MPI_FLOAT, 0, MPI_COMM_WORLD);
        if (err != MPI_SUCCESS) return mpi_fail(st, "broadcast", err);
    }
#else
    (void)x; (void)n; (void)st;
#endif
    return 0;
}

int dist_bcast_doubles(cc_dist *d, double *x, size_t n, cc_status *st)
{
    if (d->size == 1) return 0;
#ifdef CC_HAVE_MPI
    for (size_t o = 0; o < n; o += PIECE) {
        const int k = (int)(n - o < PIECE ? n - o : PIECE);
        int err = MPI_Bcast(x + o, k, MPI_DOUBLE, 0, MPI_COMM_WORLD);
        if (err != MPI_SUCCESS) return mpi_fail(st, "broadcast", err);
    }
#else
    (void)x; (void)n; (void)st;
#endif
    return 0;
}

int dist_allreduce_grad(cc_dist *d, float *g, size_t n, int n_local, int n_global,
                        cc_status *st)
{
    if (d->size == 1) return 0;
#ifdef CC_HAVE_MPI
    const int p = d->size, r = d->rank;
    if (n / (size_t)p >= (size_t)INT_MAX / (size_t)p)
        return status_set(st, "gradient slab of %zu floats too large for one MPI reduction", n);
    if (n_global <= 0) return status_set(st, "gradient reduction: empty global batch");
    const double t0 = now_s();
    /* Chunk k = [n k / p, n (k+1) / p) is summed by rank k. */
    int sc[p], sd[p], rc[p], rd[p];
    const size_t mine = n * (size_t)(r + 1) / (size_t)p - n * (size_t)r / (size_t)p;
    for (int k = 0; k < p; k++) {
        sd[k] = (int)(n * (size_t)k / (size_t)p);
        sc[k] = (int)(n * (size_t)(k + 1) / (size_t)p) - sd[k];
        rc[k] = (int)mine;
        rd[k] = (int)(mine * (size_t)k);
    }
    if (d->scratch_n < mine * (size_t)p) {
        float *s = realloc(d->scratch, mine * (size_t)p * sizeof *s);
        if (!s) return status_set(st, "gradient reduction: out of memory (%zu floats)", mine * p);
        d->scratch = s;
        d->scratch_n = mine * (size_t)p;
    }
    const float w = (float)((double)n_local / (double)n_global);
    for (size_t i = 0; i < n; i++) g[i] *= w;
    int err = MPI_Alltoallv(g, sc, sd, MPI_FLOAT, d->scratch, rc, rd, MPI_FLOAT, MPI_COMM_WORLD);
    if (err != MPI_SUCCESS) return mpi_fail(st, "gradient alltoallv", err);
    float *out = g + sd[r];
    memcpy(out, d->scratch, mine * sizeof *out);
    for (int k = 1; k < p; k++) {
        const float *src = d->scratch + (size_t)k * mine;
        for (size_t i = 0; i < mine; i++) out[i] += src[i];
    }
    err = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, g, sc, sd, MPI_FLOAT, MPI_COMM_WORLD);
    if (err != MPI_SUCCESS) return mpi_fail(st, "gradient allgatherv", err);
    d->comm_seconds += now_s() - t0;
    d->comm_bytes += 2.0 * (double)(n - mine) * sizeof(float);
    d->reductions++;
#else
    (void)g; (void)n; (void)n_local; (void)n_global; (void)st;
#endif
    return 0;
}

int dist_sum_doubles(cc_dist *d, double *x, int n, cc_status *st)
{
    if (d->size == 1 || n <= 0) return 0;
#ifdef CC_HAVE_MPI
    /* Small vectors: gather everything everywhere and add in rank order. */
    double *all = malloc(sizeof *all * (size_t)n * (size_t)d->size);
    if (!all) return status_set(st, "sum over ranks: out of memory");
    int err = MPI_Allgather(x, n, MPI_DOUBLE, all, n, MPI_DOUBLE, MPI_COMM_WORLD);
    if (err != MPI_SUCCESS) {
        free(all);
        return mpi_fail(st, "allgather", err);
    }
    for (int i = 0; i < n; i++) {
        double s = all[i];
        for (int k = 1; k < d->size; k++) s += all[(size_t)k * n + i];
        x[i] = s;
    }
    free(all);
#else
    (void)x; (void)st;
#endif
    return 0;
}

int dist_bn_allreduce(void *user, double *buf, int n, cc_status *st)
{
    return dist_sum_doubles(user, buf, n, st);
}

int dist_any(cc_dist *d, int flag)
{
    int v = flag != 0;
    if (d->size == 1) return v;
#ifdef CC_HAVE_MPI
    int out = 1;  /* a failed reduction counts as "stop" */
    if (MPI_Allreduce(&v, &out, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS) return 1;
    return out;
#else
    return v;
#endif
}

static int is_counter_buffer(const cc_param *p)
{
    const size_t n = strlen(p->name), k = strlen("num_batches_tracked");
    return n >= k && !strcmp(p->name + n - k, "num_batches_tracked");
}

int dist_average_buffers(cc_dist *d, cc_params *P, cc_status *st)
{
    if (d->size == 1 || P->n_buf == 0) return 0;
    double *v = malloc(sizeof *v * P->n_buf);
    if (!v) return status_set(st, "averaging BN statistics: out of memory");
    for (size_t i = 0; i < P->n_buf; i++) v[i] = P->buf[i];
    int rc = dist_sum_doubles(d, v, (int)P->n_buf, st);
    if (rc == 0)
        for (int i = 0; i < P->n; i++) {
            const cc_param *p = &P->p[i];
            if (p->kind != PARAM_BUFFER || is_counter_buffer(p)) continue;
            for (size_t j = 0; j < p->numel; j++)
                P->buf[p->offset + j] = (float)(v[p->offset + j] / d->size);
        }
    free(v);
    return rc;
}

int dist_bcast_params(cc_dist *d, cc_params *P, cc_status *st)
{
    if (d->size == 1) return 0;
    if (dist_bcast_floats(d, P->value, P->n_train, st) ||
        dist_bcast_floats(d, P->m, P->n_train, st) ||
        dist_bcast_floats(d, P->v, P->n_train, st) ||
        dist_bcast_floats(d, P->buf, P->n_buf, st))
        return -1;
    return 0;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) {
        h ^= c[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

uint64_t dist_params_hash(const cc_params *P)
{
    uint64_t h = 0xcbf29ce484222325ull;
    h = fnv(h, P->value, P->n_train * sizeof *P->value);
    return fnv(h, P->buf, P->n_buf * sizeof *P->buf);
}

int dist_check_same(cc_dist *d, const cc_params *P, const char *what, cc_status *st)
{
    if (d->size == 1) return 0;
#ifdef CC_HAVE_MPI
    uint64_t h = dist_params_hash(P), all[d->size];
    /* Test hook (tests/test_mpi.sh): this rank pretends its weights differ. */
    const char *t = getenv("CC_DIST_TEST_DIVERGE");
    if (t && atoi(t) == d->rank) h ^= 1;
    int err = MPI_Allgather(&h, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, MPI_COMM_WORLD);
    if (err != MPI_SUCCESS) return mpi_fail(st, "allgather", err);
    for (int k = 1; k < d->size; k++)
        if (all[k] != all[0])
            return status_set(st, "%s: the weights of rank %d differ from rank 0's (hash %016llx "
                                  "vs %016llx): the ranks diverged, stopping", what, k,
                              (unsigned long long)all[k], (unsigned long long)all[0]);
#else
    (void)P; (void)what; (void)st;
#endif
    return 0;
}
