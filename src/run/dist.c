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

static void overlap_free(cc_dist *d);

void dist_open(cc_dist *d)
{
    memset(d, 0, sizeof *d);
    d->rank = dist_world_rank();
    d->size = dist_world_size();
    d->bucket_floats = (size_t)1 << 19;     /* 2 MB; the session sets its own */
}

void dist_close(cc_dist *d)
{
    overlap_free(d);
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

#ifdef CC_HAVE_MPI
/* This rank's share of the scaling: n_local / n_global, rounded to float
 * once (the same factor in every path). */
static float grad_weight(int n_local, int n_global)
{
    return (float)((double)n_local / (double)n_global);
}

/* The fixed-order sum of g[0..n) over the ranks (dist.h), blocking; adds
 * the bytes sent to d->comm_bytes. */
static int reduce_blocking(cc_dist *d, float *g, size_t n, float w, cc_status *st)
{
    const int p = d->size, r = d->rank;
    if (n / (size_t)p >= (size_t)INT_MAX / (size_t)p)
        return status_set(st, "gradient slab of %zu floats too large for one MPI reduction", n);
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
    d->comm_bytes += 2.0 * (double)(n - mine) * sizeof(float);
    return 0;
}
#endif

int dist_allreduce_grad(cc_dist *d, float *g, size_t n, int n_local, int n_global,
                        cc_status *st)
{
    if (d->size == 1) return 0;
#ifdef CC_HAVE_MPI
    if (n_global <= 0) return status_set(st, "gradient reduction: empty global batch");
    const double t0 = now_s();
    if (reduce_blocking(d, g, n, grad_weight(n_local, n_global), st)) return -1;
    d->comm_seconds += now_s() - t0;
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

/* ---- Gradient reduction overlapped with backward (dist_grad_begin) ---- */

#define DIST_MAX_STORES 4

#ifdef CC_HAVE_MPI
/* One bucket: the floats g[0..n) of one slab, reduced in two nonblocking
 * stages as in reduce_blocking(): an alltoallv brings this rank's chunk
 * g[at..at+mine) from every rank into recv, the rank-order sum goes back
 * into g, and an allgatherv returns every chunk to every rank. */
typedef struct ov_bucket {
    float *g;
    size_t n;
    int pending;        /* announced parameters overlapping it, not final yet */
    int *cnt;           /* sc, sd, rc, rd (p ints each): MPI reads them until
                           the requests complete */
    float *recv;        /* p x mine floats */
    size_t mine, at;
} ov_bucket;

struct dist_overlap {
    /* The plan, kept while the slabs and the bucket length stay. */
    float *slab[DIST_MAX_STORES];
    size_t len[DIST_MAX_STORES];
    int first[DIST_MAX_STORES + 1];  /* store s has buckets first[s] .. first[s+1]-1 */
    int n_slabs;
    size_t bucket_floats;
    ov_bucket *b;
    int nb;
    int *ints;
    float *recv;
    MPI_Request *req_a, *req_b;
    /* Two communicators (duplicates of MPI_COMM_WORLD): a rank starts a
     * bucket's allgatherv when its alltoallv has completed, at a moment
     * that differs between ranks; on their own communicators the
     * alltoallvs and the allgathervs each start in bucket order on every
     * rank, as MPI requires, and neither mixes with the BN or stop-flag
     * collectives on MPI_COMM_WORLD. */
    MPI_Comm comm_a, comm_b;
    int comms;
    /* The step. */
    int active;         /* between dist_grad_begin and dist_grad_end */
    float w;            /* n_local / n_global */
    double t_first;     /* when the step's first bucket started (0: none yet) */
    int next;           /* next bucket to start (they start nb-1, nb-2, ..., 0) */
    int a_head;         /* buckets a_head .. next+1: alltoallv in flight */
    int b_head;         /* buckets b_head .. a_head+1: allgatherv in flight */
};

static void plan_free(struct dist_overlap *o)
{
    free(o->b);
    free(o->ints);
    free(o->recv);
    free(o->req_a);
    free(o->req_b);
    o->b = NULL, o->ints = NULL, o->recv = NULL, o->req_a = o->req_b = NULL;
    o->nb = 0;
    o->n_slabs = 0;
}

/* Cut the slabs into buckets of d->bucket_floats and lay out their count
 * arrays and receive buffers (about as many floats as the slabs). */
static int plan_make(cc_dist *d, cc_params *const *P, int k, cc_status *st)
{
    struct dist_overlap *o = d->ov;
    const size_t B = d->bucket_floats ? d->bucket_floats : 1;
    const int p = d->size, r = d->rank;
    plan_free(o);
    size_t nb = 0, nrecv = 0;
    for (int s = 0; s < k; s++) nb += (P[s]->n_train + B - 1) / B;
    /* MPI counts and displacements within a bucket are int */
    if (B > (size_t)INT_MAX) return status_set(st, "gradient bucket of %zu floats too large for MPI", B);
    if (nb > (size_t)INT_MAX / 8) return status_set(st, "gradient reduction: too many buckets");
    o->b = calloc(nb ? nb : 1, sizeof *o->b);
    o->ints = malloc(sizeof *o->ints * (nb ? nb : 1) * 4 * (size_t)p);
    o->req_a = malloc(sizeof *o->req_a * (nb ? nb : 1));
    o->req_b = malloc(sizeof *o->req_b * (nb ? nb : 1));
    if (!o->b || !o->ints || !o->req_a || !o->req_b) goto oom;
    o->nb = (int)nb;
    int i = 0;
    for (int s = 0; s < k; s++) {
        o->slab[s] = P[s]->grad;
        o->len[s] = P[s]->n_train;
        o->first[s] = i;
        for (size_t a = 0; a < P[s]->n_train; a += B, i++) {
            ov_bucket *b = &o->b[i];
            b->g = P[s]->grad + a;
            b->n = P[s]->n_train - a < B ? P[s]->n_train - a : B;
            b->at = b->n * (size_t)r / (size_t)p;
            b->mine = b->n * (size_t)(r + 1) / (size_t)p - b->at;
            b->cnt = o->ints + (size_t)i * 4 * (size_t)p;
            int *sc = b->cnt, *sd = sc + p, *rc = sd + p, *rd = rc + p;
            for (int q = 0; q < p; q++) {
                sd[q] = (int)(b->n * (size_t)q / (size_t)p);
                sc[q] = (int)(b->n * (size_t)(q + 1) / (size_t)p) - sd[q];
                rc[q] = (int)b->mine;
                rd[q] = (int)(b->mine * (size_t)q);
            }
            nrecv += b->mine * (size_t)p;
        }
    }
    o->first[k] = i;
    o->n_slabs = k;
    o->bucket_floats = B;
    if (!(o->recv = malloc(sizeof *o->recv * (nrecv ? nrecv : 1)))) goto oom;
    for (size_t at = 0, j = 0; j < nb; j++) {
        o->b[j].recv = o->recv + at;
        at += o->b[j].mine * (size_t)p;
    }
    return 0;
oom:
    plan_free(o);
    return status_set(st, "gradient reduction: out of memory (%zu buckets)", nb);
}

/* Scale bucket i and start its alltoallv. */
static int bucket_start(cc_dist *d, int i, cc_status *st)
{
    struct dist_overlap *o = d->ov;
    ov_bucket *b = &o->b[i];
    const int p = d->size;
    if (o->t_first == 0) o->t_first = now_s();
    for (size_t j = 0; j < b->n; j++) b->g[j] *= o->w;
    int *sc = b->cnt, *sd = sc + p, *rc = sd + p, *rd = rc + p;
    int err = MPI_Ialltoallv(b->g, sc, sd, MPI_FLOAT, b->recv, rc, rd, MPI_FLOAT, o->comm_a,
                             &o->req_a[i]);
    if (err != MPI_SUCCESS) return mpi_fail(st, "gradient ialltoallv", err);
    d->comm_bytes += 2.0 * (double)(b->n - b->mine) * sizeof(float);
    return 0;
}

/* Bucket i's alltoallv is complete: sum this rank's chunk in rank order
 * and start the allgatherv. */
static int bucket_sum(cc_dist *d, int i, cc_status *st)
{
    struct dist_overlap *o = d->ov;
    ov_bucket *b = &o->b[i];
    const int p = d->size;
    float *out = b->g + b->at;
    memcpy(out, b->recv, b->mine * sizeof *out);
    for (int k = 1; k < p; k++) {
        const float *src = b->recv + (size_t)k * b->mine;
        for (size_t j = 0; j < b->mine; j++) out[j] += src[j];
    }
    int *sc = b->cnt, *sd = sc + p;
    int err = MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, b->g, sc, sd, MPI_FLOAT, o->comm_b,
                              &o->req_b[i]);
    if (err != MPI_SUCCESS) return mpi_fail(st, "gradient iallgatherv", err);
    return 0;
}

/* Start the buckets whose gradients are final, in the fixed order; with
 * all = 1, every bucket left (backward is over). */
static int buckets_start(cc_dist *d, int all, cc_status *st)
{
    struct dist_overlap *o = d->ov;
    for (; o->next >= 0 && (all || o->b[o->next].pending <= 0); o->next--)
        if (bucket_start(d, o->next, st)) return -1;
    return 0;
}

/* Move finished stages on, oldest first; wait = 1 blocks until all are
 * done, else MPI_Test only (which is also what makes Open MPI progress). */
static int buckets_progress(cc_dist *d, int wait, cc_status *st)
{
    struct dist_overlap *o = d->ov;
    while (o->a_head > o->next) {
        int done = 1, err;
        err = wait ? MPI_Wait(&o->req_a[o->a_head], MPI_STATUS_IGNORE)
                   : MPI_Test(&o->req_a[o->a_head], &done, MPI_STATUS_IGNORE);
        if (err != MPI_SUCCESS) return mpi_fail(st, "gradient alltoallv", err);
        if (!done) break;
        if (bucket_sum(d, o->a_head, st)) return -1;
        o->a_head--;
    }
    while (o->b_head > o->a_head) {
        int done = 1, err;
        err = wait ? MPI_Wait(&o->req_b[o->b_head], MPI_STATUS_IGNORE)
                   : MPI_Test(&o->req_b[o->b_head], &done, MPI_STATUS_IGNORE);
        if (err != MPI_SUCCESS) return mpi_fail(st, "gradient allgatherv", err);
        if (!done) break;
        o->b_head--;
    }
    return 0;
}
#endif

static void overlap_free(cc_dist *d)
{
#ifdef CC_HAVE_MPI
    struct dist_overlap *o = d->ov;
    if (!o) return;
    plan_free(o);
    if (o->comms && initialized()) {
        MPI_Comm_free(&o->comm_a);
        MPI_Comm_free(&o->comm_b);
    }
    free(o);
#endif
    d->ov = NULL;
}

int dist_grad_begin(cc_dist *d, cc_params *const *stores, int k, int n_local, int n_global,
                    cc_status *st)
{
    if (d->size == 1) return 0;
    if (k < 1 || k > DIST_MAX_STORES)
        return status_set(st, "gradient reduction: %d parameter stores (1 to %d)", k,
                          DIST_MAX_STORES);
    if (n_global <= 0) return status_set(st, "gradient reduction: empty global batch");
#ifdef CC_HAVE_MPI
    if (!d->ov && !(d->ov = calloc(1, sizeof *d->ov)))
        return status_set(st, "gradient reduction: out of memory");
    struct dist_overlap *o = d->ov;
    if (o->active) return status_set(st, "gradient reduction: dist_grad_begin twice");
    int same = o->n_slabs == k && o->bucket_floats == d->bucket_floats && o->nb > 0;
    for (int s = 0; same && s < k; s++)
        same = o->slab[s] == stores[s]->grad && o->len[s] == stores[s]->n_train;
    if (d->overlap && !same) {
        /* collective on MPI_COMM_WORLD: every rank is here at the same step */
        if (!o->comms) {
            if (MPI_Comm_dup(MPI_COMM_WORLD, &o->comm_a) != MPI_SUCCESS ||
                MPI_Comm_dup(MPI_COMM_WORLD, &o->comm_b) != MPI_SUCCESS)
                return status_set(st, "gradient reduction: MPI_Comm_dup failed");
            MPI_Comm_set_errhandler(o->comm_a, MPI_ERRORS_RETURN);
            MPI_Comm_set_errhandler(o->comm_b, MPI_ERRORS_RETURN);
            o->comms = 1;
        }
        if (plan_make(d, stores, k, st)) return -1;
    }
    if (!d->overlap) {      /* dist_grad_end reduces each slab after backward */
        o->n_slabs = k;
        o->nb = 0;
        for (int s = 0; s < k; s++) o->slab[s] = stores[s]->grad, o->len[s] = stores[s]->n_train;
    }
    o->w = grad_weight(n_local, n_global);
    for (int i = 0; i < o->nb; i++) o->b[i].pending = 0;
    o->next = o->a_head = o->b_head = o->nb - 1;
    o->t_first = 0;
    o->active = 1;
#else
    (void)stores; (void)n_local;
#endif
    return 0;
}

int dist_grad_event(void *user, int ev, float *g, size_t n, cc_status *st)
{
#ifdef CC_HAVE_MPI
    cc_dist *d = user;
    struct dist_overlap *o = d->ov;
    if (!o || !o->active || !d->overlap) return 0;
    if (ev == CC_GRAD_PENDING || ev == CC_GRAD_FINAL) {
        /* the buckets that g[0..n) overlaps; other stores' gradients are
         * not this step's */
        const uintptr_t at = (uintptr_t)g;
        for (int s = 0; s < o->n_slabs; s++) {
            const uintptr_t lo_s = (uintptr_t)o->slab[s];
            if (at < lo_s || at >= lo_s + o->len[s] * sizeof(float)) continue;
            const size_t a = (at - lo_s) / sizeof(float);
            const size_t e = n ? a + n - 1 : a;
            if (e >= o->len[s]) return status_set(st, "gradient reduction: a parameter gradient "
                                                      "runs past its slab");
            const int lo = o->first[s] + (int)(a / o->bucket_floats);
            const int hi = o->first[s] + (int)(e / o->bucket_floats);
            for (int i = lo; i <= hi; i++) o->b[i].pending += ev == CC_GRAD_PENDING ? 1 : -1;
            break;
        }
        /* every PENDING comes before the walk: start nothing until then */
        if (ev == CC_GRAD_PENDING) return 0;
    }
    const double t0 = now_s();
    int rc = buckets_start(d, 0, st) || buckets_progress(d, 0, st) ? -1 : 0;
    d->comm_seconds += now_s() - t0;
    return rc;
#else
    (void)user; (void)ev; (void)g; (void)n; (void)st;
    return 0;
#endif
}

int dist_grad_end(cc_dist *d, cc_status *st)
{
    if (d->size == 1) return 0;
#ifdef CC_HAVE_MPI
    struct dist_overlap *o = d->ov;
    if (!o || !o->active) return status_set(st, "gradient reduction: dist_grad_end without begin");
    o->active = 0;
    const double t0 = now_s();
    if (d->overlap) {
        /* backward time with reductions in flight (0 when none started) */
        if (o->t_first > 0) d->window_seconds += t0 - o->t_first;
        if (buckets_start(d, 1, st) || buckets_progress(d, 1, st)) return -1;
    } else {
        for (int s = 0; s < o->n_slabs; s++)
            if (reduce_blocking(d, o->slab[s], o->len[s], o->w, st)) return -1;
    }
    const double dt = now_s() - t0;
    d->comm_seconds += dt;
    d->wait_seconds += dt;
    d->reductions++;
#else
    (void)st;
#endif
    return 0;
}
