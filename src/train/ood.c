/* ood.c - see ood.h. */
#include "src/train/ood.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "src/data/dataset.h"
#include "src/data/loader.h"

const char *const ood_stat_names[OOD_NSTATS] = {"count", "intensity", "foreground", "area",
                                                "sigma"};

static const char *const cols[] = {"n", "min", "q01", "q50", "q99", "max"};
#define NCOLS 6

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank quantile of sorted v[0..n), n >= 1. */
static double quantile(const double *v, size_t n, double q)
{
    double k = ceil(q * (double)n);
    size_t i = k < 1 ? 0 : k > (double)n ? n - 1 : (size_t)k - 1;
    return v[i];
}

void ood_summarise(const double *x, size_t n, ood_summary *out)
{
    memset(out, 0, sizeof *out);
    double *v = malloc(sizeof(double) * (n ? n : 1));
    if (!v) return;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(x[i])) v[m++] = x[i];
    if (m) {
        qsort(v, m, sizeof *v, cmp_dbl);
        out->have = 1;
        out->n = (double)m;
        out->min = v[0];
        out->q01 = quantile(v, m, 0.01);
        out->q50 = quantile(v, m, 0.50);
        out->q99 = quantile(v, m, 0.99);
        out->max = v[m - 1];
    }
    free(v);
}

static int put_row(runlog_table *t, const char *label, const ood_summary *s, cc_status *st)
{
    if (!s->have) return 0;
    double row[NCOLS] = {s->n, s->min, s->q01, s->q50, s->q99, s->max};
    return runlog_append(t, label, row, st);
}

int ood_train_stats_write(cc_session *s, const mask_cache *mc, const char *path, cc_status *st)
{
    cc_dataset *ds = dataset_open(path, st);
    if (!ds) return -1;
    const int rc = ood_train_stats_write_ds(s, mc, ds, st);
    dataset_close(ds);
    return rc;
}

int ood_train_stats_write_ds(cc_session *s, const mask_cache *mc, cc_dataset *ds, cc_status *st)
{
    char norm[sizeof ds->normalize];
    snprintf(norm, sizeof norm, "%s", ds->normalize);
    cc_loader *L = loader_open_ds(ds, DATASET_TRAIN, 32, 0, LOADER_KEEP_LAST, st);
    if (!L) return -1;
    const int64_t n = loader_size(L);
    double *v[OOD_SIGMA];
    int rc = 0;
    for (int k = 0; k < OOD_SIGMA; k++) v[k] = malloc(sizeof(double) * (size_t)(n ? n : 1));
    for (int k = 0; k < OOD_SIGMA; k++)
        if (!v[k]) rc = status_set(st, "training statistics: out of memory");
    const int with_fg = mc && mc->masks && mc->n > 0;
    const size_t mplane = with_fg ? (size_t)mc->h * (size_t)mc->w : 0;
    int64_t k = 0;
    if (rc == 0) {
        loader_epoch_begin(L, 0);
        loader_batch b;
        while (loader_next(L, &b)) {
            const size_t plane = (size_t)b.h * (size_t)b.w;
            for (int i = 0; i < b.n && k < n; i++, k++) {
                double sum = 0;
                for (size_t p = 0; p < plane; p++) sum += b.images[plane * (size_t)i + p];
                v[OOD_COUNT][k] = b.counts[i];
                v[OOD_INTENSITY][k] = sum / (double)plane;
                v[OOD_FOREGROUND][k] = v[OOD_AREA][k] = NAN;
                int64_t r = with_fg && b.indices[i] < mc->n_index ? mc->slot[b.indices[i]] : -1;
                if (r < 0) continue;
                double fg = 0;
                const float *m = mc->masks + mplane * (size_t)r;
                for (size_t p = 0; p < mplane; p++) fg += m[p] < 0 ? 0 : m[p] > 1 ? 1 : m[p];
                fg /= (double)mplane;
                v[OOD_FOREGROUND][k] = fg;
                if (b.counts[i] >= 1) v[OOD_AREA][k] = fg * (double)plane / b.counts[i];
            }
        }
    }
    loader_close(L);
    runlog_table *t = NULL;
    if (rc == 0 && !(t = runlog_table_fresh(&s->rl, "ood/train", NCOLS, cols, st))) rc = -1;
    for (int j = 0; rc == 0 && j < OOD_SIGMA; j++) {
        ood_summary sm;
        ood_summarise(v[j], (size_t)k, &sm);
        rc = put_row(t, ood_stat_names[j], &sm, st);
    }
    for (int j = 0; j < OOD_SIGMA; j++) free(v[j]);
    if (rc == 0) rc = runlog_set_attr(&s->rl, "data.normalize", norm, st);
    if (rc == 0) rc = runlog_flush(&s->rl, st);
    return rc;
}

int ood_sigma_stats_write(runlog *rl, const double *sigma, int64_t n, double scale,
                          cc_status *st)
{
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    if (!v) return status_set(st, "sigma statistics: out of memory");
    for (int64_t i = 0; i < n; i++) v[i] = sigma[i] * scale;
    ood_summary sm;
    ood_summarise(v, (size_t)n, &sm);
    free(v);
    if (!sm.have) return 0;
    runlog_table *t = runlog_table_fresh(rl, "ood/sigma", NCOLS, cols, st);
    return t ? put_row(t, ood_stat_names[OOD_SIGMA], &sm, st) : -1;
}

static void read_table(const runlog *rl, const char *name, ood_stats *o)
{
    runlog_table *t = runlog_table_find((runlog *)rl, name);
    if (!t) return;
    int c[NCOLS];
    for (int j = 0; j < NCOLS; j++)
        if ((c[j] = runlog_col(t, cols[j])) < 0) return;
    if (!strcmp(name, "ood/train")) o->have_train = 1;
    for (size_t r = 0; r < t->nrows; r++)
        for (int k = 0; k < OOD_NSTATS; k++) {
            if (strcmp(t->labels[r], ood_stat_names[k])) continue;
            const double *row = t->values + r * (size_t)t->ncols;
            ood_summary *s = &o->s[k];
            s->n = row[c[0]], s->min = row[c[1]], s->q01 = row[c[2]];
            s->q50 = row[c[3]], s->q99 = row[c[4]], s->max = row[c[5]];
            s->have = isfinite(s->min) && isfinite(s->max) && s->min <= s->max;
        }
}

void ood_stats_read(const runlog *rl, ood_stats *o)
{
    memset(o, 0, sizeof *o);
    read_table(rl, "ood/train", o);
    read_table(rl, "ood/sigma", o);
}

void ood_flags(const ood_stats *o, const ood_image *im, char *buf, size_t len)
{
    if (!o->have_train) {
        snprintf(buf, len, "n/a");
        return;
    }
    size_t used = 0;
    buf[0] = '\0';
    for (int k = 0; k < OOD_NSTATS; k++) {
        const ood_summary *s = &o->s[k];
        const double x = im->v[k];
        if (!s->have || !isfinite(x)) continue;
        const double span = s->max - s->min;
        double m = 0.1 * span;
        if (k == OOD_COUNT) m = fmax(1.0, 0.05 * span);
        /* sigma is a scale: a nearly constant one must not flag every image */
        if (k == OOD_SIGMA) m = fmax(m, 0.1 * fabs(s->max));
        int out = x > s->max + m || (k != OOD_SIGMA && x < s->min - m);
        if (!out) continue;
        int w = snprintf(buf + used, len - used, "%s%s", used ? "," : "", ood_stat_names[k]);
        if (w < 0 || (size_t)w >= len - used) break;
        used += (size_t)w;
    }
    if (!used) snprintf(buf, len, "ok");
}
