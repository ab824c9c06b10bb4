/* stats.c - image statistics of BBBC005-style sets (see stats.h). */
#include "src/data/stats.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "src/data/bbbc_name.h"
#include "src/data/dataset.h"
#include "src/data/tiff_io.h"

void stats_table_init(stats_table *t) { memset(t, 0, sizeof *t); }

void stats_table_free(stats_table *t)
{
    for (int i = 0; i < t->n; i++) free(t->g[i].areas);
    free(t->g);
    memset(t, 0, sizeof *t);
}

static int group_cmp(int s1, int f1, int c1, const stats_group *g)
{
    if (s1 != g->stain) return s1 < g->stain ? -1 : 1;
    if (f1 != g->focus) return f1 < g->focus ? -1 : 1;
    if (c1 != g->count) return c1 < g->count ? -1 : 1;
    return 0;
}

int stats_table_find(const stats_table *t, int stain, int count, int focus)
{
    for (int i = 0; i < t->n; i++)
        if (!group_cmp(stain, focus, count, &t->g[i])) return i;
    return -1;
}

/* The group (stain, count, focus), inserted in sorted place if new. */
static stats_group *group_get(stats_table *t, int stain, int count, int focus)
{
    int i = 0;
    while (i < t->n && group_cmp(stain, focus, count, &t->g[i]) > 0) i++;
    if (i < t->n && !group_cmp(stain, focus, count, &t->g[i])) return &t->g[i];
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 16;
        stats_group *g = realloc(t->g, (size_t)cap * sizeof *g);
        if (!g) return NULL;
        t->g = g;
        t->cap = cap;
    }
    memmove(&t->g[i + 1], &t->g[i], (size_t)(t->n - i) * sizeof *t->g);
    memset(&t->g[i], 0, sizeof *t->g);
    t->g[i].stain = stain;
    t->g[i].count = count;
    t->g[i].focus = focus;
    t->n++;
    return &t->g[i];
}

/* Label the 8-connected components of fg (w*h, 0/1) and append their areas
 * (scaled by px_area) to g.  lab and stack: w*h ints of scratch. */
static long blobs_measure(const uint8_t *fg, int w, int h, double px_area, int *stack,
                          stats_group *g, int *oom)
{
    const size_t n = (size_t)w * h;
    uint8_t *seen = calloc(n, 1);
    if (!seen) {
        *oom = 1;
        return 0;
    }
    long nblobs = 0;
    for (size_t s = 0; s < n; s++) {
        if (!fg[s] || seen[s]) continue;
        long area = 0, top = 0;
        stack[top++] = (int)s;
        seen[s] = 1;
        while (top > 0) {
            int p = stack[--top];
            area++;
            int x = p % w, y = p / w;
            for (int dy = -1; dy <= 1; dy++)
                for (int dx = -1; dx <= 1; dx++) {
                    int xx = x + dx, yy = y + dy;
                    if (xx < 0 || yy < 0 || xx >= w || yy >= h) continue;
                    size_t q = (size_t)yy * w + xx;
                    if (fg[q] && !seen[q]) {
                        seen[q] = 1;
                        stack[top++] = (int)q;
                    }
                }
        }
        nblobs++;
        if (g->nareas == g->cap) {
            long cap = g->cap ? 2 * g->cap : 256;
            double *a = realloc(g->areas, (size_t)cap * sizeof *a);
            if (!a) {
                *oom = 1;
                break;
            }
            g->areas = a;
            g->cap = cap;
        }
        g->areas[g->nareas++] = area * px_area;
    }
    free(seen);
    return nblobs;
}

int stats_table_add(stats_table *t, int stain, int count, int focus, const float *px,
                    const float *mask, int w, int h, cc_status *st)
{
    const size_t n = (size_t)w * h;
    stats_group *g = group_get(t, stain, count, focus);
    uint8_t *fg = malloc(n);
    int *stack = malloc(n * sizeof *stack);
    if (!g || !fg || !stack) {
        free(fg);
        free(stack);
        return status_set(st, "stats: out of memory for a %dx%d image", w, h);
    }
    double sum = 0.0, mx = 0.0;
    long over = 0;
    for (size_t i = 0; i < n; i++) {
        sum += px[i];
        if (px[i] > mx) mx = px[i];
        if (px[i] > STATS_BRIGHT) over++;
    }
    const double thr = STATS_THRESH_FRAC * mx;
    long hist[257] = {0}, nbg = 0;
    for (size_t i = 0; i < n; i++) {
        fg[i] = mx > 0.0 && px[i] > thr;
        if (!fg[i]) {
            long b = lround(px[i]);
            hist[b < 0 ? 0 : (b > 256 ? 256 : b)]++;
            nbg++;
        }
    }
    double bg = 0.0;
    for (long b = 0, acc = 0; b <= 256; b++) {
        acc += hist[b];
        if (2 * acc >= nbg && nbg > 0) {
            bg = (double)b;
            break;
        }
    }
    int oom = 0;
    long nb = blobs_measure(fg, w, h, STATS_REF_AREA / (double)n, stack, g, &oom);
    free(fg);
    free(stack);
    if (oom) return status_set(st, "stats: out of memory labelling blobs");
    g->images++;
    g->sum_mean += sum / (double)n;
    g->sum_max += mx;
    g->sum_bg += bg;
    g->sum_over30 += (double)over / (double)n;
    g->sum_blobs += (double)nb;
    if (mask) {
        long on = 0;
        for (size_t i = 0; i < n; i++) on += mask[i] > 0.5f;
        g->masked++;
        g->sum_cov += (double)on / (double)n;
    }
    return 0;
}

static int dbl_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Quantile q of sorted v (nearest rank). */
static double quantile(const double *v, long n, double q)
{
    if (n <= 0) return 0.0;
    long k = (long)floor(q * (double)(n - 1) + 0.5);
    return v[k < 0 ? 0 : (k >= n ? n - 1 : k)];
}

void stats_table_row(const stats_table *t, int i, stats_row *r)
{
    stats_group *g = &t->g[i];
    const double ni = g->images > 0 ? (double)g->images : 1.0;
    memset(r, 0, sizeof *r);
    r->stain = g->stain;
    r->count = g->count;
    r->focus = g->focus;
    r->images = g->images;
    r->mean = g->sum_mean / ni;
    r->mean_per_cell = g->count > 0 ? r->mean / g->count : 0.0;
    r->max = g->sum_max / ni;
    r->background = g->sum_bg / ni;
    r->over30 = g->sum_over30 / ni;
    r->blobs = g->sum_blobs / ni;
    r->blobs_per_cell = g->count > 0 ? r->blobs / g->count : 0.0;
    qsort(g->areas, (size_t)g->nareas, sizeof *g->areas, dbl_cmp);
    r->area_p10 = quantile(g->areas, g->nareas, 0.1);
    r->area_median = quantile(g->areas, g->nareas, 0.5);
    r->area_p90 = quantile(g->areas, g->nareas, 0.9);
    r->area_max = g->nareas ? g->areas[g->nareas - 1] : 0.0;
    r->coverage = g->masked ? g->sum_cov / (double)g->masked : -1.0;
}

void stats_table_print(const stats_table *t, FILE *f, int csv)
{
    if (csv)
        fprintf(f, "stain,focus,count,images,mean,mean_per_cell,max,background,over30,"
                   "blobs,blobs_per_cell,area_p10,area_median,area_p90,area_max,coverage\n");
    else
        fprintf(f, "areas in px at 696x520 (radius = sqrt(area/pi)); blobs and areas at "
                   "30%% of each image's max; coverage: mask > 0.5\n"
                   "%-2s %4s %4s %5s %7s %6s %6s %5s %6s %6s %5s %7s %7s %7s %8s %6s\n",
                "w", "F", "C", "imgs", "mean", "mean/C", "max", "bg", ">30", "blobs",
                "bl/C", "a_p10", "a_med", "a_p90", "a_max", "cover");
    for (int i = 0; i < t->n; i++) {
        stats_row r;
        stats_table_row(t, i, &r);
        if (csv)
            fprintf(f, "%d,%d,%d,%ld,%.3f,%.4f,%.2f,%.2f,%.4f,%.2f,%.3f,%.1f,%.1f,%.1f,%.1f,%.4f\n",
                    r.stain, r.focus, r.count, r.images, r.mean, r.mean_per_cell, r.max,
                    r.background, r.over30, r.blobs, r.blobs_per_cell, r.area_p10,
                    r.area_median, r.area_p90, r.area_max, r.coverage);
        else {
            char cov[16];
            if (r.coverage < 0) snprintf(cov, sizeof cov, "-");
            else snprintf(cov, sizeof cov, "%.3f", r.coverage);
            fprintf(f, "w%d %4d %4d %5ld %7.2f %6.3f %6.1f %5.1f %6.3f %6.1f %5.2f %7.0f "
                       "%7.0f %7.0f %8.0f %6s\n",
                    r.stain, r.focus, r.count, r.images, r.mean, r.mean_per_cell, r.max,
                    r.background, r.over30, r.blobs, r.blobs_per_cell, r.area_p10,
                    r.area_median, r.area_p90, r.area_max, cov);
        }
    }
}

/* ---- sources -------------------------------------------------------------- */

static int is_dir(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of the regular entries of dir (not starting with '.'). */
static char **list_dir(const char *dir, long *n, cc_status *st)
{
    DIR *d = opendir(dir);
    *n = 0;
    if (!d) {
        status_set(st, "%s: cannot open directory (%s)", dir, strerror(errno));
        return NULL;
    }
    long cap = 64;
    char **v = malloc((size_t)cap * sizeof *v);
    struct dirent *e;
    while (v && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (*n == cap) {
            char **nv = realloc(v, (size_t)(cap *= 2) * sizeof *v);
            if (!nv) break;
            v = nv;
        }
        if (!(v[*n] = strdup(e->d_name))) break;
        (*n)++;
    }
    closedir(d);
    if (!v || e) {
        for (long i = 0; v && i < *n; i++) free(v[i]);
        free(v);
        status_set(st, "%s: out of memory listing the directory", dir);
        return NULL;
    }
    qsort(v, (size_t)*n, sizeof *v, str_cmp);
    return v;
}

static void free_list(char **v, long n)
{
    for (long i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* Read a TIFF into floats on the 0-255 scale. */
static int read_scaled(const char *path, float **out, int *w, int *h, cc_status *st)
{
    cc_image im = {0};
    if (tiff_read_gray(path, &im, st)) return -1;
    size_t n = (size_t)im.w * im.h;
    float *v = malloc(n * sizeof *v);
    if (!v) {
        cc_image_free(&im);
        return status_set(st, "%s: out of memory", path);
    }
    const float k = 255.0f / (float)((1u << im.bits) - 1u);
    for (size_t i = 0; i < n; i++) v[i] = im.px[i] * k;
    *w = im.w;
    *h = im.h;
    cc_image_free(&im);
    *out = v;
    return 0;
}

int stats_add_tiff_dir(stats_table *t, const char *dir, const char *masks_dir, int stain,
                       int focus, long *skipped, cc_status *st)
{
    char img_dir[4096], gt_dir[4096], path[4096 + 256];
    snprintf(img_dir, sizeof img_dir, "%s/images", dir);
    if (!is_dir(img_dir)) snprintf(img_dir, sizeof img_dir, "%s", dir);
    if (masks_dir) snprintf(gt_dir, sizeof gt_dir, "%s", masks_dir);
    else snprintf(gt_dir, sizeof gt_dir, "%s/ground_truth", dir);
    const int have_gt = is_dir(gt_dir);
    if (masks_dir && !have_gt)
        return status_set(st, "%s: not a directory", masks_dir);
    long n = 0, added = 0;
    char **names = list_dir(img_dir, &n, st);
    if (!names) return -1;
    *skipped = 0;
    int rc = 0;
    for (long i = 0; i < n && !rc; i++) {
        bbbc_name nm;
        cc_status ignore;
        status_clear(&ignore);
        if (bbbc_name_parse(names[i], &nm, &ignore)) {
            (*skipped)++;
            continue;
        }
        if ((stain && nm.stain != stain) || (focus && nm.focus != focus)) continue;
        float *px = NULL, *mask = NULL;
        int w, h, mw, mh;
        snprintf(path, sizeof path, "%s/%s", img_dir, names[i]);
        if (read_scaled(path, &px, &w, &h, st)) {
            rc = -1;
            break;
        }
        if (have_gt) {
            bbbc_name m = nm;
            char mname[256];
            m.focus = 1;
            if (bbbc_well_for(m.count, 1, &m.well_row, &m.well_col)) m.well_row = 'A';
            if (bbbc_name_format(&m, mname, sizeof mname) > 0) {
                snprintf(path, sizeof path, "%s/%s", gt_dir, mname);
                if (access(path, R_OK) == 0) {
                    if (read_scaled(path, &mask, &mw, &mh, st)) rc = -1;
                    else if (mw != w || mh != h)
                        rc = status_set(st, "%s: mask is %dx%d, its image %dx%d", path, mw,
                                        mh, w, h);
                    else
                        for (size_t k = 0; k < (size_t)w * h; k++) mask[k] = mask[k] > 0.0f;
                }
            }
        }
        if (!rc) rc = stats_table_add(t, nm.stain, nm.count, nm.focus, px, mask, w, h, st);
        if (!rc) added++;
        free(px);
        free(mask);
    }
    free_list(names, n);
    if (!rc && added == 0)
        rc = status_set(st, "%s: no BBBC005-named TIFF images%s", img_dir,
                        stain || focus ? " match the filter" : "");
    return rc;
}

int stats_add_dataset(stats_table *t, const char *path, int stain, int focus,
                      cc_status *st)
{
    cc_dataset *ds = dataset_open(path, st);
    if (!ds) return -1;
    const size_t n = (size_t)ds->w * ds->h;
    float *px = malloc(n * sizeof *px), *mask = malloc(n * sizeof *mask);
    int rc = px && mask ? 0 : status_set(st, "%s: out of memory", path);
    long added = 0;
    for (int64_t i = 0; i < ds->n && !rc; i++) {
        if ((stain && ds->stain[i] != stain) || (focus && ds->focus[i] != focus)) continue;
        if (dataset_read_images(ds, i, 1, px, st)) {
            rc = -1;
            break;
        }
        for (size_t k = 0; k < n; k++) px[k] *= 255.0f;
        if (ds->has_mask[i] && dataset_read_masks(ds, i, 1, mask, st)) {
            rc = -1;
            break;
        }
        rc = stats_table_add(t, ds->stain[i], ds->counts[i], ds->focus[i], px,
                             ds->has_mask[i] ? mask : NULL, ds->w, ds->h, st);
        added++;
    }
    if (!rc && added == 0)
        rc = status_set(st, "%s: no images%s", path, stain || focus ? " match the filter" : "");
    free(px);
    free(mask);
    dataset_close(ds);
    return rc;
}
