/* count_split.c - see count_split.h. */
#include "src/train/count_split.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "src/data/dataset.h"

void mask_cache_free(mask_cache *mc)
{
    free(mc->slot);
    free(mc->masks);
    memset(mc, 0, sizeof *mc);
}

int mask_cache_build(mask_cache *mc, cc_session *s, cc_models *m, cc_dataset *ds, int split,
                     cc_status *st)
{
    memset(mc, 0, sizeof *mc);
    mc->n_index = ds->n;
    cc_loader *L = loader_open_ds(ds, split, 8, 0, LOADER_KEEP_LAST, st);
    if (!L) return -1;
    mc->h = m->in_h / 2;
    mc->w = m->in_w / 2;
    const size_t plane = (size_t)mc->h * (size_t)mc->w;
    mc->slot = malloc(sizeof(int64_t) * (size_t)mc->n_index);
    mc->masks = malloc(sizeof(float) * plane * (size_t)loader_size(L));
    if (!mc->slot || !mc->masks) {
        loader_close(L);
        mask_cache_free(mc);
        return status_set(st, "mask cache: out of memory");
    }
    for (int64_t i = 0; i < mc->n_index; i++) mc->slot[i] = -1;
    cc_tape t;
    tape_init(&t, &s->ctx, 0);
    tape_fix_weights(&t, 1);     /* the FPN does not change while it fills the cache */
    loader_epoch_begin(L, 0);
    loader_batch b;
    int rc = 0;
    while (rc == 0 && loader_next(L, &b)) {
        tape_reset(&t);
        int64_t d[4] = {b.n, 1, b.h, b.w};
        cc_tensor *x = tape_input(&t, 4, d, b.images, 0);
        if (s->cfg.fpn_channels != 1) x = op_expand_channels(&t, x, s->cfg.fpn_channels);
        fpn_output out;
        if (fpn_forward(&t, &m->Pf, &m->fpn, x, &out) ||
            tape_read(&t, out.mean[out.levels - 1], mc->masks + plane * (size_t)mc->n)) {
            rc = status_set(st, "mask cache: %s", tape_error(&t));
            break;
        }
        for (int i = 0; i < b.n; i++) mc->slot[b.indices[i]] = mc->n + i;
        mc->n += b.n;
    }
    tape_free(&t);
    loader_close(L);
    if (rc) mask_cache_free(mc);
    return rc;
}

void counting_flip_plane(const float *src, float *dst, int h, int w, unsigned bits)
{
    for (int y = 0; y < h; y++) {
        int sy = (bits & 2) ? h - 1 - y : y;
        for (int x = 0; x < w; x++) dst[y * w + x] = src[sy * w + ((bits & 1) ? w - 1 - x : x)];
    }
}

cc_tensor *counting_input(cc_tape *t, cc_session *s, cc_models *m, const mask_cache *mc,
                          const loader_batch *b, int fpn_on_tape)
{
    const cfg_input in = s->cfg.counter_input;
    int64_t d[4] = {b->n, 1, b->h, b->w};
    cc_tensor *img = NULL, *mask = NULL;
    if (in != CFG_INPUT_MASK) img = op_avg_pool2d(t, tape_input(t, 4, d, b->images, 0), 2);
    if (in == CFG_INPUT_IMAGE) return img;
    if (fpn_on_tape) {
        cc_tensor *x = tape_input(t, 4, d, b->images, 0);
        if (s->cfg.fpn_channels != 1) x = op_expand_channels(t, x, s->cfg.fpn_channels);
        fpn_output out;
        if (fpn_forward(t, &m->Pf, &m->fpn, x, &out)) return NULL;
        mask = out.mean[out.levels - 1];
    } else {
        int64_t md[4] = {b->n, 1, mc->h, mc->w};
        mask = tape_input(t, 4, md, NULL, 0);
        if (!mask) return NULL;
        const size_t plane = (size_t)mc->h * (size_t)mc->w;
        for (int i = 0; i < b->n; i++) {
            int64_t r = b->indices[i] < mc->n_index ? mc->slot[b->indices[i]] : -1;
            if (r < 0) {
                status_set(&t->status, "counter input: image %lld is not in the mask cache",
                           (long long)b->indices[i]);
                return NULL;
            }
            float *dst = mask->data + plane * (size_t)i;
            counting_flip_plane(mc->masks + plane * (size_t)r, dst, mc->h, mc->w, b->flipped[i]);
            /* data.aug_scale: resize the cached mask like the image */
            if (b->scale && b->scale[i] != 1.0f) {
                float *tmp = malloc(plane * sizeof *tmp);
                if (!tmp) {
                    status_set(&t->status, "counter input: out of memory");
                    return NULL;
                }
                loader_scale_plane(dst, tmp, mc->h, mc->w, b->scale[i], 0.0f);
                memcpy(dst, tmp, plane * sizeof *tmp);
                free(tmp);
            }
        }
    }
    if (!img) return mask;
    cc_tensor *both[2] = {mask, img};
    return op_concat(t, both, 2);
}

void count_preds_free(count_preds *p)
{
    free(p->truth);
    free(p->pred);
    free(p->sigma);
    free(p->intensity);
    free(p->focus);
    free(p->index);
    free(p->maps);
    memset(p, 0, sizeof *p);
}

/* The counter on input x (built on tape t for batch b): count and
 * log-variance per image into c, v, and the batch's mean loss; with map
 * non-NULL a density counter's maps too (*mh x *mw each). */
static int predict_batch(cc_tape *t, cc_session *s, cc_models *m, cc_tensor *x,
                         const loader_batch *b, float *c, float *v, double *loss, float *map,
                         int *mh, int *mw)
{
    float truth[COUNT_MAX_BATCH];
    for (int i = 0; i < b->n; i++) truth[i] = (float)b->counts[i];
    cc_tensor *y = tape_input(t, 2, (int64_t[]){b->n, 1}, truth, 0), *cnt = NULL, *lv = NULL,
              *mp = NULL;
    loss_terms lt;
    cc_tensor *l = NULL;
    if ((map ? counter_forward_map(t, &m->Pc, &m->counter, x, &cnt, &lv, &mp)
             : counter_forward(t, &m->Pc, &m->counter, x, &cnt, &lv)) == 0)
        l = counter_loss(t, cnt, lv, y, s->cfg.counter_loss, &lt);
    if (!l || tape_read(t, cnt, c) || tape_read(t, lv, v) || (map && tape_read(t, mp, map)))
        return -1;
    if (map) *mh = (int)mp->dims[2], *mw = (int)mp->dims[3];
    *loss = lt.total;
    return 0;
}

void counting_tta_combine(const double *mu, const double *var, int k, double *mu_out,
                          double *var_out)
{
    double m = 0, vv = 0, s2 = 0;
    for (int j = 0; j < k; j++) m += mu[j], vv += var[j];
    m /= k;
    for (int j = 0; j < k; j++) s2 += (mu[j] - m) * (mu[j] - m);
    *mu_out = m;
    *var_out = vv / k + s2 / k;
}

cc_tensor *counting_view_input(cc_tape *t, cc_session *s, cc_models *m, const mask_cache *mc,
                               const loader_batch *b, unsigned k, float **scratch, size_t *cap)
{
    if (!k) return counting_input(t, s, m, mc, b, 0);
    assert(b->n <= COUNT_MAX_BATCH);
    loader_batch bk = *b;
    uint8_t bits[COUNT_MAX_BATCH];
    for (int i = 0; i < b->n; i++) bits[i] = (uint8_t)((b->flipped ? b->flipped[i] : 0) ^ k);
    bk.flipped = bits;
    if (s->cfg.counter_input != CFG_INPUT_MASK) {   /* the mask alone needs no image */
        const size_t plane = (size_t)b->h * (size_t)b->w, need = plane * (size_t)b->n;
        if (need > *cap) {
            float *p = realloc(*scratch, sizeof(float) * need);
            if (!p) {
                status_set(&t->status, "counter input: out of memory");
                return NULL;
            }
            *scratch = p;
            *cap = need;
        }
        for (int i = 0; i < b->n; i++)
            counting_flip_plane(b->images + plane * (size_t)i, *scratch + plane * (size_t)i, b->h,
                                b->w, k);
        bk.images = *scratch;
    }
    return counting_input(t, s, m, mc, &bk, 0);
}

void counting_views_combine(const float *c, const float *lv, size_t stride, int views, int i,
                            loss_kind kind, double *count, double *sigma)
{
    double mu[4], var[4], var_c;
    assert(views >= 1 && views <= 4);
    for (int j = 0; j < views; j++) {
        const size_t at = (size_t)j * stride + (size_t)i;
        mu[j] = c[at], var[j] = exp((double)lv[at]);
    }
    counting_tta_combine(mu, var, views, count, &var_c);
    *sigma = kind == LOSS_MSE ? NAN : sqrt(var_c);
}

int counting_predict(cc_session *s, cc_models *m, cc_tape *t, const mask_cache *mc,
                     cc_loader *L, int tta, int want_maps, count_preds *out, cc_status *st)
{
    memset(out, 0, sizeof *out);
    assert(!want_maps || m->counter.positions);
    int64_t cap = loader_size(L);
    const size_t mplane = want_maps ? (size_t)m->counter.positions : 0;
    if (want_maps && !(out->maps = malloc(sizeof(float) * mplane * (size_t)(cap ? cap : 1))))
        return status_set(st, "predict: out of memory");
    out->truth = malloc(sizeof(double) * (size_t)cap);
    out->pred = malloc(sizeof(double) * (size_t)cap);
    out->sigma = malloc(sizeof(double) * (size_t)cap);
    out->intensity = malloc(sizeof(double) * (size_t)cap);
    out->focus = malloc(sizeof(int32_t) * (size_t)cap);
    out->index = malloc(sizeof(int64_t) * (size_t)cap);
    if (!out->truth || !out->pred || !out->sigma || !out->intensity || !out->focus || !out->index) {
        count_preds_free(out);
        return status_set(st, "predict: out of memory");
    }
    const int views = tta ? 4 : 1;
    loader_epoch_begin(L, 0);
    loader_batch b;
    double loss_sum = 0;
    float *scratch = NULL;          /* flipped images of views 1..3 */
    size_t scratch_cap = 0;
    float *cv = malloc(sizeof(float) * 8 * COUNT_MAX_BATCH);  /* counts, log-variances per view */
    int rc = cv ? 0 : status_set(st, "predict: out of memory");
    while (rc == 0 && loader_next(L, &b)) {
        if (b.n > COUNT_MAX_BATCH) {
            rc = status_set(st, "predict: batch larger than %d", COUNT_MAX_BATCH);
            break;
        }
        double loss = 0;
        for (int k = 0; k < views && rc == 0; k++) {
            tape_reset(t);
            cc_tensor *x =
                counting_view_input(t, s, m, mc, &b, (unsigned)k, &scratch, &scratch_cap);
            double l;
            float *map = want_maps && k == 0 ? out->maps + mplane * (size_t)out->n : NULL;
            if (!x || predict_batch(t, s, m, x, &b, cv + (size_t)k * COUNT_MAX_BATCH,
                                    cv + (size_t)(4 + k) * COUNT_MAX_BATCH, &l, map,
                                    &out->map_h, &out->map_w))
                rc = status_set(st, "predict: %s", tape_error(t));
            else
                loss += l / views;
        }
        if (rc) break;
        loss_sum += loss * b.n;
        const size_t plane = (size_t)b.h * (size_t)b.w;
        for (int i = 0; i < b.n; i++) {
            int64_t k = out->n++;
            counting_views_combine(cv, cv + 4 * COUNT_MAX_BATCH, COUNT_MAX_BATCH, views, i,
                                   s->cfg.counter_loss, &out->pred[k], &out->sigma[k]);
            out->truth[k] = b.counts[i];
            out->focus[k] = b.focus[i];
            out->index[k] = b.indices[i];
            double sum = 0;
            for (size_t p = 0; p < plane; p++) sum += b.images[plane * (size_t)i + p];
            out->intensity[k] = sum / (double)plane;
        }
    }
    free(scratch);
    free(cv);
    if (rc) {
        count_preds_free(out);
        return rc;
    }
    out->loss = out->n ? loss_sum / (double)out->n : NAN;
    return 0;
}
