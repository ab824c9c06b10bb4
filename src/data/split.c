/* split.c - train/validation/test assignment by scene, optionally
 * stratified by count (see dataset.h). */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autodiff/rng.h"
#include "src/data/dataset.h"

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Sorted distinct values of v[0..n) into out (n entries of room); returns
 * how many. */
static int64_t distinct_i32(const int32_t *v, int64_t n, int32_t *out)
{
    memcpy(out, v, (size_t)n * sizeof *out);
    qsort(out, (size_t)n, sizeof *out, cmp_i32);
    int64_t g = 0;
    for (int64_t i = 0; i < n; i++)
        if (i == 0 || out[i] != out[g - 1]) out[g++] = out[i];
    return g;
}

static int64_t rank_i32(const int32_t *sorted, int64_t g, int32_t v)
{
    const int32_t *p = bsearch(&v, sorted, (size_t)g, sizeof *sorted, cmp_i32);
    assert(p);
    return p - sorted;
}

/* (stratum's position in the shuffled stratum order, position in the
 * shuffled group order): sorting by it keeps the group shuffle inside each
 * stratum. */
typedef struct { int64_t srank, pos; } split_key;

static int cmp_key(const void *a, const void *b)
{
    const split_key *x = a, *y = b;
    if (x->srank != y->srank) return (x->srank > y->srank) - (x->srank < y->srank);
    return (x->pos > y->pos) - (x->pos < y->pos);
}

/* One stratum's share of gs groups: every split k gets floor(f[k] gs) or,
 * where that is not whole, possibly one more; the extra groups
 * (gs - sum of floors, at most 2) go to the splits whose running totals
 * (given[k], over the strata before) lag furthest behind f[k] of all
 * groups so far.  take[2] gets the rest. */
static void split_share(const double f[3], int64_t gs, const int64_t given[3], int64_t take[3])
{
    const int64_t done = given[0] + given[1] + given[2];
    int64_t left = gs;
    double lag[3];
    for (int k = 0; k < 3; k++) {
        const double share = f[k] * (double)gs;
        take[k] = (int64_t)floor(share + 1e-9);
        left -= take[k];
        lag[k] = share - (double)take[k] > 1e-9
                     ? f[k] * (double)(done + gs) - (double)(given[k] + take[k])
                     : -INFINITY;   /* a whole share gets nothing extra */
    }
    while (left > 0) {
        int best = 0;
        for (int k = 1; k < 3; k++)
            if (lag[k] > lag[best]) best = k;
        assert(lag[best] > -INFINITY);
        take[best]++;
        lag[best] = -INFINITY;
        left--;
    }
    take[2] = gs - take[0] - take[1];
}

/* The shared body: stratum NULL is one stratum, cut as the plain split
 * always was (same shuffle, same cut points). */
static int split_assign(const int32_t *group, const int32_t *stratum, int64_t n,
                        uint64_t seed, const double frac[3], uint8_t *split_out,
                        cc_status *st)
{
    assert(n >= 0 && (n == 0 || (group && split_out)));
    static const double deflt[3] = {0.8, 0.1, 0.1};
    if (!frac) frac = deflt;
    if (!(frac[0] >= 0 && frac[1] >= 0 && frac[2] >= 0) || frac[0] + frac[1] + frac[2] <= 0)
        return status_set(st, "split fractions %g/%g/%g must be >= 0 with a positive sum",
                          frac[0], frac[1], frac[2]);
    if (n == 0) return 0;
    int32_t *uniq = malloc((size_t)n * sizeof *uniq);
    int32_t *strata = malloc((size_t)n * sizeof *strata);
    int64_t *gstr = malloc((size_t)n * sizeof *gstr);     /* group -> stratum rank */
    int64_t *order = malloc((size_t)n * sizeof *order);
    int64_t *sorder = malloc((size_t)n * sizeof *sorder);
    int64_t *srank = malloc((size_t)n * sizeof *srank);
    split_key *key = malloc((size_t)n * sizeof *key);
    uint8_t *gsplit = malloc((size_t)n);
    int rc = 0;
    if (!uniq || !strata || !gstr || !order || !sorder || !srank || !key || !gsplit) {
        rc = status_set(st, "split: out of memory");
        goto out;
    }
    const int64_t g = distinct_i32(group, n, uniq);
    int64_t ns = 1;
    if (stratum) ns = distinct_i32(stratum, n, strata);
    else strata[0] = 0;
    for (int64_t k = 0; k < g; k++) gstr[k] = -1;
    for (int64_t i = 0; i < n; i++) {
        const int64_t k = rank_i32(uniq, g, group[i]);
        const int64_t s = stratum ? rank_i32(strata, ns, stratum[i]) : 0;
        if (gstr[k] >= 0 && gstr[k] != s) {
            rc = status_set(st, "split: scene group %d holds images of counts %d and %d "
                            "(a stratified split needs one count per scene)", (int)group[i],
                            (int)strata[gstr[k]], (int)strata[s]);
            goto out;
        }
        gstr[k] = s;
    }
    cc_rng r;
    rng_seed(&r, seed, 0x53504c4954ull);    /* "SPLIT" */
    for (int64_t k = 0; k < g; k++) order[k] = k;
    rng_shuffle(&r, order, g);
    /* The strata in random order too, so the rounding below does not favour
     * low counts. */
    for (int64_t s = 0; s < ns; s++) sorder[s] = s;
    rng_shuffle(&r, sorder, ns);
    for (int64_t s = 0; s < ns; s++) srank[sorder[s]] = s;
    for (int64_t k = 0; k < g; k++) key[k] = (split_key){srank[gstr[order[k]]], k};
    qsort(key, (size_t)g, sizeof *key, cmp_key);
    const double sum = frac[0] + frac[1] + frac[2];
    const double f[3] = {frac[0] / sum, frac[1] / sum, frac[2] / sum};
    int64_t given[3] = {0, 0, 0};
    for (int64_t a = 0; a < g;) {
        int64_t b = a;
        while (b < g && key[b].srank == key[a].srank) b++;
        const int64_t gs = b - a;
        int64_t take[3];
        if (!stratum) {
            /* the plain split's cut, kept exactly: data sets made before
             * stratification existed keep their splits */
            take[0] = llround(f[0] * (double)gs);
            take[1] = llround(f[1] * (double)gs);
            if (take[0] > gs) take[0] = gs;
            if (take[1] > gs - take[0]) take[1] = gs - take[0];
        } else {
            split_share(f, gs, given, take);
        }
        const int64_t ntrain = take[0], nval = take[1];
        for (int64_t k = 0; k < 3; k++) given[k] += take[k];
        for (int64_t k = a; k < b; k++) {
            const int64_t j = k - a;
            gsplit[order[key[k].pos]] = j < ntrain ? DATASET_TRAIN
                                        : j < ntrain + nval ? DATASET_VAL : DATASET_TEST;
        }
        a = b;
    }
    for (int64_t i = 0; i < n; i++) split_out[i] = gsplit[rank_i32(uniq, g, group[i])];
out:
    free(uniq); free(strata); free(gstr); free(order); free(sorder); free(srank);
    free(key); free(gsplit);
    return rc;
}

int dataset_split_by_scene(const int32_t *group, int64_t n, uint64_t seed,
                           const double frac[3], uint8_t *split_out, cc_status *st)
{
    return split_assign(group, NULL, n, seed, frac, split_out, st);
}

int dataset_split_stratified(const int32_t *group, const int32_t *stratum, int64_t n,
                             uint64_t seed, const double frac[3], uint8_t *split_out,
                             cc_status *st)
{
    assert(n == 0 || stratum);
    return split_assign(group, stratum, n, seed, frac, split_out, st);
}

int dataset_split_by_parse(const char *s, dataset_split_by *out)
{
    if (s && strcmp(s, "scene") == 0) *out = DATASET_SPLIT_SCENE;
    else if (s && strcmp(s, "count") == 0) *out = DATASET_SPLIT_COUNT;
    else return -1;
    return 0;
}

const char *dataset_split_by_name(dataset_split_by by)
{
    return by == DATASET_SPLIT_COUNT ? "count" : "scene";
}
