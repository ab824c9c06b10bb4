/* loader.c - see loader.h. */
#include "src/data/loader.h"

#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "autodiff/rng.h"
#include "src/data/dataset.h"

/* One of the two batch buffers. */
typedef struct slot {
    loader_batch b;
    int ready;              /* filled for the current epoch, not yet taken */
} slot;

struct cc_loader {
    /* immutable after open */
    int64_t n;              /* samples in the split */
    int h, w, batch;
    size_t hw;
    unsigned flags;
    uint64_t seed;
    int u8;                 /* images stored as uint8 (else float) */
    void *images;           /* n*hw uint8 or float */
    const float **mask;     /* n pointers into the mask pool, NULL = no mask */
    float **pool;           /* distinct masks, npool of them */
    int64_t npool;
    int64_t *index;         /* n dataset indices, ascending */
    int32_t *counts, *focus;
    uint8_t *has_mask;
    int shard, shards;      /* this loader's slice of every batch (dist.h) */
    float *scratch;         /* 2*hw, the prefetch thread's (augmentation) */

    /* shared with the prefetch thread, guarded by mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    int stop;
    int64_t gen;            /* bumped by every epoch_begin */
    int64_t epoch, nbatches, produce_next, consume_next;
    int filling;            /* the thread is assembling a batch outside the lock */
    int held;               /* slot the consumer holds, -1 none */
    int64_t *perm;          /* epoch order (positions 0..n-1) */
    slot slots[2];
    double wait_s;
    loader_aug aug;         /* read by the thread while filling: set between batches */
    int aug_on;
};

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int64_t loader_size(const cc_loader *L) { return L->n; }

static int64_t batches_for(const cc_loader *L)
{
    return (L->flags & LOADER_KEEP_LAST) ? (L->n + L->batch - 1) / L->batch
                                         : L->n / L->batch;
}

int64_t loader_batches_per_epoch(const cc_loader *L) { return batches_for(L); }

double loader_wait_seconds(const cc_loader *L)
{
    cc_loader *m = (cc_loader *)L;     /* the lock is not part of the value */
    pthread_mutex_lock(&m->mu);
    double w = L->wait_s;
    pthread_mutex_unlock(&m->mu);
    return w;
}

/* ---- augmentation -------------------------------------------------- */

void loader_scale_plane(const float *src, float *dst, int h, int w, double s, float fill)
{
    const double inv = 1.0 / s, cx = 0.5 * w, cy = 0.5 * h;
    for (int y = 0; y < h; y++) {
        const double fy = (y + 0.5 - cy) * inv + cy - 0.5;
        const int y0 = (int)floor(fy);
        const float ty = (float)(fy - y0);
        for (int x = 0; x < w; x++) {
            const double fx = (x + 0.5 - cx) * inv + cx - 0.5;
            const int x0 = (int)floor(fx);
            const float tx = (float)(fx - x0);
            float v[2][2];
            for (int a = 0; a < 2; a++)
                for (int b = 0; b < 2; b++) {
                    const int yy = y0 + a, xx = x0 + b;
                    v[a][b] = (yy >= 0 && yy < h && xx >= 0 && xx < w) ? src[(size_t)yy * w + xx]
                                                                       : fill;
                }
            const float top = v[0][0] + tx * (v[0][1] - v[0][0]);
            const float bot = v[1][0] + tx * (v[1][1] - v[1][0]);
            dst[(size_t)y * w + x] = top + ty * (bot - top);
        }
    }
}

/* Index i reflected into [0, n) (symmetric: -1 -> 0, n -> n-1). */
static int reflect_index(int i, int n)
{
    const int p = 2 * n;
    i %= p;
    if (i < 0) i += p;
    return i < n ? i : p - 1 - i;
}

/* Separable Gaussian blur of img (h x w) in place, radius ceil(3 sigma). */
static void blur_plane(float *img, int h, int w, double sigma, float *tmp)
{
    int r = (int)ceil(3.0 * sigma);
    if (r < 1) return;
    if (r > 64) r = 64;
    float k[129];
    double sum = 0;
    for (int i = -r; i <= r; i++) sum += k[i + r] = (float)exp(-0.5 * i * i / (sigma * sigma));
    for (int i = 0; i <= 2 * r; i++) k[i] = (float)(k[i] / sum);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            float acc = 0;
            const float *row = img + (size_t)y * w;
            for (int i = -r; i <= r; i++) acc += k[i + r] * row[reflect_index(x + i, w)];
            tmp[(size_t)y * w + x] = acc;
        }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            float acc = 0;
            for (int i = -r; i <= r; i++)
                acc += k[i + r] * tmp[(size_t)reflect_index(y + i, h) * w + x];
            img[(size_t)y * w + x] = acc;
        }
}

void loader_augment_sample(const loader_aug *a, uint64_t seed, int64_t epoch, int64_t index,
                           float *img, float *mask, int h, int w, float *scratch,
                           loader_aug_draw *out)
{
    cc_rng r;
    rng_seed(&r, seed ^ LOADER_AUG_TAG, ((uint64_t)epoch << 32) + (uint64_t)index);
    double u[5];
    for (int i = 0; i < 5; i++) u[i] = rng_uniform(&r);
    loader_aug_draw d;
    d.scale = 1.0 + a->scale * (2.0 * u[0] - 1.0);
    d.blur = a->blur * u[1];
    d.gamma = exp(a->gamma * (2.0 * u[2] - 1.0));
    d.gain = 1.0 + a->gain * (2.0 * u[3] - 1.0);
    d.noise = a->noise * u[4];
    if (out) *out = d;
    const size_t hw = (size_t)h * w;
    const int on = a->scale > 0 || a->blur > 0 || a->gamma > 0 || a->gain > 0 || a->noise > 0;
    if (a->scale > 0 && d.scale != 1.0) {
        float lo = img[0];
        for (size_t i = 1; i < hw; i++) lo = img[i] < lo ? img[i] : lo;
        loader_scale_plane(img, scratch, h, w, d.scale, lo);
        memcpy(img, scratch, hw * sizeof *img);
        if (mask) {
            loader_scale_plane(mask, scratch, h, w, d.scale, 0.0f);
            memcpy(mask, scratch, hw * sizeof *mask);
        }
    }
    if (a->blur > 0) blur_plane(img, h, w, d.blur, scratch);
    if (a->gamma > 0) {
        const double g = d.gamma;
        for (size_t i = 0; i < hw; i++) img[i] = img[i] > 0 ? (float)pow(img[i], g) : 0.0f;
    }
    if (a->gain > 0) {
        const float k = (float)d.gain;
        for (size_t i = 0; i < hw; i++) img[i] *= k;
    }
    if (a->noise > 0) {
        const double sd = d.noise;
        for (size_t i = 0; i < hw; i++) img[i] += (float)(sd * rng_normal(&r));
    }
    if (on)
        for (size_t i = 0; i < hw; i++) img[i] = img[i] < 0 ? 0.0f : img[i] > 1 ? 1.0f : img[i];
}

/* Copy one sample into a batch row, flipping as drawn for (epoch, index). */
static void fill_sample(const cc_loader *L, int64_t epoch, int64_t pos, loader_batch *b, int j)
{
    const int h = L->h, w = L->w;
    const size_t hw = L->hw;
    int flip = 0;
    if (L->flags & LOADER_FLIP) {
        cc_rng r;
        rng_seed(&r, L->seed ^ LOADER_FLIP_TAG,
                 ((uint64_t)epoch << 32) + (uint64_t)L->index[pos]);
        flip = (int)(rng_next(&r) & 3u);
    }
    float *img = b->images + (size_t)j * hw, *msk = b->masks + (size_t)j * hw;
    const uint8_t *src8 = L->u8 ? (const uint8_t *)L->images + (size_t)pos * hw : NULL;
    const float *srcf = L->u8 ? NULL : (const float *)L->images + (size_t)pos * hw;
    const float *m = L->mask[pos];
    for (int y = 0; y < h; y++) {
        const int sy = (flip & 2) ? h - 1 - y : y;
        for (int x = 0; x < w; x++) {
            const int sx = (flip & 1) ? w - 1 - x : x;
            const size_t s = (size_t)sy * w + sx, d = (size_t)y * w + x;
            img[d] = src8 ? (float)src8[s] * (1.0f / 255.0f) : srcf[s];
            msk[d] = m ? m[s] : 0.0f;
        }
    }
    b->scale[j] = 1.0f;
    if (L->aug_on) {
        loader_aug_draw d;
        loader_augment_sample(&L->aug, L->seed, epoch, L->index[pos], img, m ? msk : NULL, h, w,
                              L->scratch, &d);
        b->scale[j] = (float)d.scale;
    }
    b->counts[j] = L->counts[pos];
    b->focus[j] = L->focus[pos];
    b->has_mask[j] = L->has_mask[pos];
    b->indices[j] = L->index[pos];
    b->flipped[j] = (uint8_t)flip;
}

static void fill_batch(const cc_loader *L, int64_t epoch, const int64_t *perm, int64_t bi,
                       loader_batch *b)
{
    const int64_t start = bi * L->batch;
    const int64_t n = L->n - start < L->batch ? L->n - start : L->batch;
    const int64_t lo = n * L->shard / L->shards, hi = n * (L->shard + 1) / L->shards;
    for (int64_t j = lo; j < hi; j++) fill_sample(L, epoch, perm[start + j], b, (int)(j - lo));
    b->n = (int)(hi - lo);
    b->global_n = (int)n;
}

void loader_set_shard(cc_loader *L, int shard, int shards)
{
    assert(L && shards >= 1 && shard >= 0 && shard < shards);
    pthread_mutex_lock(&L->mu);
    L->shard = shard;
    L->shards = shards;
    pthread_mutex_unlock(&L->mu);
}

static void *prefetch_main(void *arg)
{
    cc_loader *L = arg;
    pthread_mutex_lock(&L->mu);
    while (!L->stop) {
        if (L->produce_next < L->nbatches) {
            const int s = (int)(L->produce_next % 2);
            if (!L->slots[s].ready && L->held != s) {
                const int64_t bi = L->produce_next++, g = L->gen, epoch = L->epoch;
                L->filling = 1;
                pthread_mutex_unlock(&L->mu);
                /* perm and slot s are not touched by anyone else while
                 * filling is set: epoch_begin waits for it. */
                fill_batch(L, epoch, L->perm, bi, &L->slots[s].b);
                pthread_mutex_lock(&L->mu);
                L->filling = 0;
                if (g == L->gen) L->slots[s].ready = 1;
                pthread_cond_broadcast(&L->cv);
                continue;
            }
        }
        pthread_cond_wait(&L->cv, &L->mu);
    }
    pthread_mutex_unlock(&L->mu);
    return NULL;
}

void loader_set_augment(cc_loader *L, const loader_aug *a)
{
    assert(L && a);
    pthread_mutex_lock(&L->mu);
    while (L->filling) pthread_cond_wait(&L->cv, &L->mu);
    L->aug = *a;
    L->aug_on = a->scale > 0 || a->blur > 0 || a->gamma > 0 || a->gain > 0 || a->noise > 0;
    pthread_mutex_unlock(&L->mu);
}

void loader_epoch_begin(cc_loader *L, int64_t epoch)
{
    assert(L && epoch >= 0);
    pthread_mutex_lock(&L->mu);
    L->gen++;
    while (L->filling) pthread_cond_wait(&L->cv, &L->mu);
    L->slots[0].ready = L->slots[1].ready = 0;
    L->held = -1;
    L->epoch = epoch;
    for (int64_t i = 0; i < L->n; i++) L->perm[i] = i;
    if (L->flags & LOADER_SHUFFLE) {
        cc_rng r;
        rng_seed(&r, L->seed ^ LOADER_SHUFFLE_TAG, (uint64_t)epoch);
        rng_shuffle(&r, L->perm, L->n);
    }
    L->nbatches = batches_for(L);
    L->produce_next = L->consume_next = 0;
    pthread_cond_broadcast(&L->cv);
    pthread_mutex_unlock(&L->mu);
}

int loader_next(cc_loader *L, loader_batch *b)
{
    assert(L && b);
    pthread_mutex_lock(&L->mu);
    if (L->held >= 0) {         /* the previous batch is given back */
        L->held = -1;
        pthread_cond_broadcast(&L->cv);
    }
    if (L->consume_next >= L->nbatches) {
        pthread_mutex_unlock(&L->mu);
        return 0;
    }
    const int s = (int)(L->consume_next % 2);
    if (!L->slots[s].ready) {
        const double t0 = now_s();
        while (!L->slots[s].ready) pthread_cond_wait(&L->cv, &L->mu);
        L->wait_s += now_s() - t0;
    }
    L->slots[s].ready = 0;
    L->held = s;
    L->consume_next++;
    *b = L->slots[s].b;
    pthread_cond_broadcast(&L->cv);
    pthread_mutex_unlock(&L->mu);
    return 1;
}

/* ---- open / close ---------------------------------------------------- */

static void free_slot(slot *s)
{
    loader_batch *b = &s->b;
    free(b->images); free(b->masks); free(b->counts); free(b->focus);
    free(b->has_mask); free(b->indices); free(b->flipped); free(b->scale);
}

static void loader_free(cc_loader *L)
{
    for (int64_t i = 0; i < L->npool; i++) free(L->pool[i]);
    free(L->pool);
    free(L->mask);
    free(L->images);
    free(L->scratch);
    free(L->index); free(L->counts); free(L->focus); free(L->has_mask); free(L->perm);
    free_slot(&L->slots[0]);
    free_slot(&L->slots[1]);
    free(L);
}

typedef struct scene_pos {
    int32_t scene;
    int64_t pos;
} scene_pos;

static int cmp_sp(const void *a, const void *b)
{
    const scene_pos *x = a, *y = b;
    if (x->scene != y->scene) return (x->scene > y->scene) - (x->scene < y->scene);
    return (x->pos > y->pos) - (x->pos < y->pos);
}

/* Read the split's images (runs of consecutive rows at once) and masks,
 * sharing one mask buffer among the images of a scene whose masks are
 * bit-identical. */
static int load_split(cc_loader *L, cc_dataset *ds, cc_status *st)
{
    const size_t esz = L->u8 ? 1 : sizeof(float);
    for (int64_t i = 0; i < L->n;) {
        int64_t j = i + 1;
        while (j < L->n && L->index[j] == L->index[j - 1] + 1 && j - i < 64) j++;
        if (dataset_read_images_raw(ds, L->index[i], j - i,
                                    (char *)L->images + (size_t)i * L->hw * esz, st) != 0)
            return -1;
        i = j;
    }
    /* Visit the masked samples in (scene, position) order so that a scene's
     * samples are adjacent: each mask is compared with the last one pooled
     * for its scene. */
    scene_pos *order = malloc((size_t)L->n * sizeof *order);
    float *scratch = malloc(L->hw * sizeof *scratch);
    L->pool = malloc((size_t)L->n * sizeof *L->pool);
    if (!order || !scratch || !L->pool) {
        free(order); free(scratch);
        return status_set(st, "%s: out of memory for masks", ds->path);
    }
    int64_t nm = 0;
    for (int64_t p = 0; p < L->n; p++)
        if (L->has_mask[p]) order[nm++] = (scene_pos){ds->scene[L->index[p]], p};
    qsort(order, (size_t)nm, sizeof *order, cmp_sp);
    int rc = 0;
    const float *rep = NULL;
    for (int64_t k = 0; k < nm && rc == 0; k++) {
        const int64_t p = order[k].pos;
        if (k > 0 && order[k].scene != order[k - 1].scene) rep = NULL;
        if (dataset_read_masks(ds, L->index[p], 1, scratch, st) != 0) { rc = -1; break; }
        if (rep && memcmp(rep, scratch, L->hw * sizeof *scratch) == 0) {
            L->mask[p] = rep;
            continue;
        }
        float *m = malloc(L->hw * sizeof *m);
        if (!m) { rc = status_set(st, "%s: out of memory for masks", ds->path); break; }
        memcpy(m, scratch, L->hw * sizeof *m);
        L->pool[L->npool++] = m;
        L->mask[p] = rep = m;
    }
    free(order);
    free(scratch);
    return rc;
}

cc_loader *loader_open_ds(cc_dataset *ds, int split, int batch, uint64_t seed, unsigned flags,
                          cc_status *st)
{
    assert(ds && batch >= 1 && split >= LOADER_SPLIT_ALL && split <= DATASET_TEST);
    const char *path = ds->path;
    cc_loader *L = calloc(1, sizeof *L);
    if (!L) {
        status_set(st, "%s: out of memory", path);
        return NULL;
    }
    L->h = ds->h; L->w = ds->w; L->hw = (size_t)ds->h * ds->w;
    L->batch = batch; L->flags = flags; L->seed = seed;
    L->u8 = ds->image_type == DATASET_U8;
    L->held = -1;
    L->shards = 1;
    const int masked = (flags & LOADER_MASKED) != 0;
    int64_t in_split = 0;
    for (int64_t i = 0; i < ds->n; i++)
        if (split == LOADER_SPLIT_ALL || ds->split[i] == split) {
            in_split++;
            if (!masked || ds->has_mask[i]) L->n++;
        }
    int rc = 0;
    if (L->n == 0) {
        static const char *names[] = {"train", "val", "test"};
        const char *sn = split == LOADER_SPLIT_ALL ? "whole" : names[split];
        rc = in_split ? status_set(st, "%s: none of the %lld images of the %s split has a "
                                   "mask (the FPN trains on masks)", path, (long long)in_split, sn)
                      : status_set(st, "%s: the %s split has no images", path, sn);
        goto out;
    }
    const size_t nn = (size_t)L->n;
    L->index = malloc(nn * sizeof *L->index);
    L->counts = malloc(nn * sizeof *L->counts);
    L->focus = malloc(nn * sizeof *L->focus);
    L->has_mask = malloc(nn);
    L->perm = malloc(nn * sizeof *L->perm);
    L->mask = calloc(nn, sizeof *L->mask);
    L->images = malloc(nn * L->hw * (L->u8 ? 1 : sizeof(float)));
    L->scratch = malloc(2 * L->hw * sizeof *L->scratch);
    for (int k = 0; k < 2; k++) {
        loader_batch *b = &L->slots[k].b;
        b->h = L->h; b->w = L->w;
        b->images = malloc((size_t)batch * L->hw * sizeof *b->images);
        b->masks = malloc((size_t)batch * L->hw * sizeof *b->masks);
        b->counts = malloc((size_t)batch * sizeof *b->counts);
        b->focus = malloc((size_t)batch * sizeof *b->focus);
        b->has_mask = malloc((size_t)batch);
        b->indices = malloc((size_t)batch * sizeof *b->indices);
        b->flipped = malloc((size_t)batch);
        b->scale = malloc((size_t)batch * sizeof *b->scale);
        if (!b->images || !b->masks || !b->counts || !b->focus || !b->has_mask ||
            !b->indices || !b->flipped || !b->scale)
            rc = -1;
    }
    if (rc || !L->index || !L->counts || !L->focus || !L->has_mask || !L->perm || !L->mask ||
        !L->images || !L->scratch) {
        rc = status_set(st, "%s: out of memory for %lld images of %dx%d", path,
                        (long long)L->n, L->w, L->h);
        goto out;
    }
    for (int64_t i = 0, k = 0; i < ds->n; i++) {
        if (split != LOADER_SPLIT_ALL && ds->split[i] != split) continue;
        if (masked && !ds->has_mask[i]) continue;
        L->index[k] = i;
        L->counts[k] = ds->counts[i];
        L->focus[k] = ds->focus[i];
        L->has_mask[k] = ds->has_mask[i];
        k++;
    }
    rc = load_split(L, ds, st);
    if (rc == 0) {
        pthread_mutex_init(&L->mu, NULL);
        pthread_cond_init(&L->cv, NULL);
        if (pthread_create(&L->thread, NULL, prefetch_main, L) != 0) {
            pthread_cond_destroy(&L->cv);
            pthread_mutex_destroy(&L->mu);
            rc = status_set(st, "%s: cannot start the prefetch thread", path);
        }
    }
out:
    if (rc) {
        loader_free(L);
        return NULL;
    }
    return L;
}

cc_loader *loader_open(const char *path, int split, int batch, uint64_t seed,
                       unsigned flags, cc_status *st)
{
    assert(path);
    cc_dataset *ds = dataset_open(path, st);
    if (!ds) return NULL;
    cc_loader *L = loader_open_ds(ds, split, batch, seed, flags, st);
    dataset_close(ds);
    return L;
}

void loader_close(cc_loader *L)
{
    if (!L) return;
    pthread_mutex_lock(&L->mu);
    L->stop = 1;
    pthread_cond_broadcast(&L->cv);
    pthread_mutex_unlock(&L->mu);
    pthread_join(L->thread, NULL);
    pthread_cond_destroy(&L->cv);
    pthread_mutex_destroy(&L->mu);
    loader_free(L);
}
