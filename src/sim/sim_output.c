/* sim_output.c - where simulated images go (see sim_output.h): a BBBC005
 * TIFF tree, an HDF5 data set, a PNG preview montage. */
#include "src/sim/sim_output.h"

#include "src/data/bbbc_name.h"
#include "src/data/png_io.h"
#include "src/data/resize.h"
#include "src/data/tiff_io.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- TIFF tree output --------------------------------------------------- */


/* Position of an image in the job's lists, from its canonical index. */
static void job_pos(const sim_job *job, long index, int *ci, int *fi)
{
    int nst = (job->stains & 1) + ((job->stains >> 1) & 1);
    *fi = (int)(index % job->nfocus);
    *ci = (int)(index / job->nfocus / nst / job->nsites);
}

/* BBBC005 well of (count, focus); for other values, the positions in the
 * job's lists (wrapped into the name's ranges: the well is informational,
 * C, F, s and w make the name unique). */
static void well_of(int count, int focus, int ci, int fi, char *row, int *col)
{
    if (bbbc_well_for(count, focus, row, col) == 0) return;
    *row = (char)('A' + fi % 26);
    *col = ci % 99 + 1;
}

static int tree_path(char *buf, size_t len, const char *dir, const bbbc_name *nm,
                     cc_status *st)
{
    char name[256];
    if (bbbc_name_format(nm, name, sizeof name) < 0)
        return status_set(st, "simulate: C%d F%d s%d w%d has no BBBC005 name", nm->count,
                          nm->focus, nm->site, nm->stain);
    if (snprintf(buf, len, "%s/%s", dir, name) >= (int)len)
        return status_set(st, "%s: path too long", dir);
    return 0;
}

int sim_tree_sink(void *ctx, const sim_image *im, cc_status *st)
{
    sim_tree_out *t = ctx;
    int ci, fi;
    job_pos(t->job, im->index, &ci, &fi);
    bbbc_name nm = {0, 0, im->count, im->focus, im->site, im->stain};
    well_of(im->count, im->focus, ci, fi, &nm.well_row, &nm.well_col);
    char path[PATH_MAX];
    if (tree_path(path, sizeof path, t->img_dir, &nm, st) ||
        tiff_write_gray(path, im->width, im->height, 8, im->pixels, st))
        return -1;
    if (fi == 0) {
        /* one mask per scene, under its F1 image's name (BBBC005) */
        nm.focus = 1;
        int f1 = 0;
        for (int k = 0; k < t->job->nfocus; k++)
            if (t->job->focus[k] == 1) f1 = k;
        well_of(im->count, 1, ci, f1, &nm.well_row, &nm.well_col);
        if (tree_path(path, sizeof path, t->gt_dir, &nm, st) ||
            tiff_write_gray(path, im->width, im->height, 8, im->mask, st))
            return -1;
#pragma omp atomic
        t->masks++;
    }
    return 0;
}

/* Remove the regular files in dir, then dir itself (our staging dirs only
 * hold files we wrote). */
static void remove_flat_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char p[PATH_MAX];
        while ((e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            if (snprintf(p, sizeof p, "%s/%s", dir, e->d_name) < (int)sizeof p) unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

static int path_exists(const char *p)
{
    struct stat sb;
    return lstat(p, &sb) == 0;
}

/* Remove the directories tree_begin created: DIR and its new parents up
 * to the outermost one (rmdir only removes them if empty). */
static void tree_abandon(sim_tree_out *t)
{
    if (!t->made[0]) return;
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s", t->dir);
    const size_t stop = strlen(t->made);
    for (;;) {
        rmdir(p);
        char *slash = strrchr(p, '/');
        if (strlen(p) <= stop || !slash) break;
        *slash = '\0';
    }
    t->made[0] = '\0';
}

static int tree_fail(sim_tree_out *t, int rc)
{
    tree_abandon(t);
    return rc;
}

int sim_tree_begin(sim_tree_out *t, const char *dir, int force, const sim_job *job,
                   cc_status *st)
{
    memset(t, 0, sizeof *t);
    t->job = job;
    /* mkdir -p, remembering the outermost new directory so that a failed
     * run leaves the file system as it found it */
    char p[PATH_MAX];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p ||
        snprintf(t->dir, sizeof t->dir, "%s", dir) >= (int)sizeof t->dir)
        return status_set(st, "%s: path too long", dir);
    for (char *q = p + 1;; q++) {
        if (*q != '/' && *q != '\0') continue;
        char c = *q;
        *q = '\0';
        if (mkdir(p, 0777) == 0) {
            if (!t->made[0]) snprintf(t->made, sizeof t->made, "%s", p);
        } else if (errno != EEXIST) {
            status_set(st, "%s: cannot create directory %s: %s", dir, p, strerror(errno));
            *q = c;
            return tree_fail(t, -1);
        }
        *q = c;
        if (c == '\0') break;
    }
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return tree_fail(t, status_set(st, "%s: not a directory", dir));
    const char *subs[2] = {"images", "ground_truth"};
    for (int k = 0; k < 2 && !force; k++) {
        snprintf(p, sizeof p, "%s/%s", dir, subs[k]);
        if (path_exists(p))
            return tree_fail(t, status_set(st, "%s: already exists (use --force to replace it)", p));
    }
    t->stage[0].slot = t->stage[1].slot = -1;
    char base[2][PATH_MAX];
    snprintf(base[0], sizeof base[0], "%s/.images", dir);
    snprintf(base[1], sizeof base[1], "%s/.ground_truth", dir);
    if (fs_atomic_begin_dir(&t->stage[0], base[0], st) ||
        fs_atomic_begin_dir(&t->stage[1], base[1], st) ||
        snprintf(t->img_dir, sizeof t->img_dir, "%s", t->stage[0].tmp) >= (int)sizeof t->img_dir ||
        snprintf(t->gt_dir, sizeof t->gt_dir, "%s", t->stage[1].tmp) >= (int)sizeof t->gt_dir) {
        fs_atomic_release(&t->stage[0]);
        fs_atomic_release(&t->stage[1]);
        return tree_fail(t, status_set(st, "%s: path too long", dir));
    }
    if (mkdir(t->img_dir, 0777) != 0) {
        fs_atomic_release(&t->stage[0]);
        fs_atomic_release(&t->stage[1]);
        return tree_fail(t, status_set(st, "%s: cannot create directory: %s", t->img_dir,
                                       strerror(errno)));
    }
    if (mkdir(t->gt_dir, 0777) != 0) {
        status_set(st, "%s: cannot create directory: %s", t->gt_dir, strerror(errno));
        fs_atomic_abort(&t->stage[0]);
        fs_atomic_release(&t->stage[1]);
        return tree_fail(t, -1);
    }
    return 0;
}

int sim_tree_end(sim_tree_out *t, int ok, cc_status *st)
{
    const char *dir = t->dir;
    if (!ok) {
        fs_atomic_abort(&t->stage[0]);
        fs_atomic_abort(&t->stage[1]);
        tree_abandon(t);
        return -1;
    }
    const char *subs[2] = {"images", "ground_truth"};
    const char *stage[2] = {t->img_dir, t->gt_dir};
    int rc = 0;
    for (int k = 0; k < 2; k++) {
        char final[PATH_MAX], old[PATH_MAX];
        if (snprintf(final, sizeof final, "%s/%s", dir, subs[k]) >= (int)sizeof final ||
            snprintf(old, sizeof old, "%s/.%s.old.%ld", dir, subs[k], (long)getpid()) >=
                (int)sizeof old) {
            if (rc == 0) rc = status_set(st, "%s: path too long", dir);
            remove_flat_dir(stage[k]);
            continue;
        }
        int had = path_exists(final);
        if (rc == 0 && had && rename(final, old) != 0)
            rc = status_set(st, "%s: cannot move the old directory aside: %s", final,
                            strerror(errno));
        if (rc == 0 && rename(stage[k], final) != 0) {
            rc = status_set(st, "%s: cannot rename %s into place: %s", final, stage[k],
                            strerror(errno));
            if (had) rename(old, final);
        }
        if (rc != 0) {
            remove_flat_dir(stage[k]);
            continue;
        }
        if (had) remove_flat_dir(old);
    }
    fs_atomic_release(&t->stage[0]);
    fs_atomic_release(&t->stage[1]);
    return rc;
}

/* ---- HDF5 output -------------------------------------------------------- */

/* Images arrive from worker threads in any order; they are appended in the
 * job's canonical order (so the file does not depend on the thread count)
 * through a reorder buffer that holds only the images that finished early. */

typedef struct key3 {
    int c, s, w;
} key3;

static int cmp_key3(const void *a, const void *b)
{
    const key3 *x = a, *y = b;
    if (x->c != y->c) return (x->c > y->c) - (x->c < y->c);
    if (x->s != y->s) return (x->s > y->s) - (x->s < y->s);
    return (x->w > y->w) - (x->w < y->w);
}

static long key_rank(const key3 *k, long n, key3 q)
{
    const key3 *p = bsearch(&q, k, (size_t)n, sizeof *k, cmp_key3);
    return p ? (long)(p - k) : -1;
}

/* Decode a canonical index (see sim_run) into its record fields. */
static void index_fields(const sim_job *job, long i, int *c, int *f, int *s, int *w)
{
    int nst = (job->stains & 1) + ((job->stains >> 1) & 1);
    long unit = i / job->nfocus;
    *f = job->focus[i % job->nfocus];
    int si = (int)(unit % nst);
    *w = job->stains == 2 ? 2 : si + 1;
    *s = (int)(unit / nst % job->nsites) + 1;
    *c = job->counts[unit / nst / job->nsites];
}

/* Scene ids and split exactly as `cellcount import` numbers a tree: scene =
 * rank of (count, site, stain) in sorted order, split groups = (count,
 * site), so both stains of a field of cells share a split. */
static int h5_plan(sim_h5_out *o, uint64_t split_seed, const double frac[3],
                   dataset_split_by by, cc_status *st)
{
    const sim_job *job = o->job;
    long n = o->n;
    key3 *sc = malloc((size_t)n * sizeof *sc), *gr = malloc((size_t)n * sizeof *gr);
    int32_t *gid = malloc((size_t)n * sizeof *gid), *cnt = malloc((size_t)n * sizeof *cnt);
    int rc = 0;
    if (!sc || !gr || !gid || !cnt) {
        rc = status_set(st, "simulate: out of memory planning %ld images", n);
        goto out;
    }
    for (long i = 0; i < n; i++) {
        int c, f, s, w;
        index_fields(job, i, &c, &f, &s, &w);
        sc[i] = (key3){c, s, w};
        gr[i] = (key3){c, s, 0};
    }
    qsort(sc, (size_t)n, sizeof *sc, cmp_key3);
    qsort(gr, (size_t)n, sizeof *gr, cmp_key3);
    long ns = 0, ng = 0;
    for (long i = 0; i < n; i++) {
        if (ns == 0 || cmp_key3(&sc[i], &sc[ns - 1])) sc[ns++] = sc[i];
        if (ng == 0 || cmp_key3(&gr[i], &gr[ng - 1])) gr[ng++] = gr[i];
    }
    for (long i = 0; i < n; i++) {
        int c, f, s, w;
        index_fields(job, i, &c, &f, &s, &w);
        o->scene[i] = (int32_t)key_rank(sc, ns, (key3){c, s, w});
        gid[i] = (int32_t)key_rank(gr, ng, (key3){c, s, 0});
        cnt[i] = c;
    }
    rc = by == DATASET_SPLIT_COUNT
             ? dataset_split_stratified(gid, cnt, n, split_seed, frac, o->split, st)
             : dataset_split_by_scene(gid, n, split_seed, frac, o->split, st);
out:
    free(sc);
    free(gr);
    free(gid);
    free(cnt);
    return rc;
}

static int h5_append_ready(sim_h5_out *o, cc_status *st)
{
    while (o->next < o->n && o->pending[o->next]) {
        long i = o->next;
        int c, f, s, w;
        index_fields(o->job, i, &c, &f, &s, &w);
        int ci, fi;
        job_pos(o->job, i, &ci, &fi);
        bbbc_name nm = {0, 0, c, f, s, w};
        well_of(c, f, ci, fi, &nm.well_row, &nm.well_col);
        char name[256];
        if (bbbc_name_format(&nm, name, sizeof name) < 0) name[0] = '\0';
        long unit = i / o->job->nfocus;
        dataset_record rec = {c, f, w, s, o->scene[i], o->split[i], name, o->unit_centres[unit]};
        int rc = dataset_writer_append(o->wr, o->pending[i], o->unit_mask[unit], &rec, st);
        free(o->pending[i]);
        o->pending[i] = NULL;
        if (fi == o->job->nfocus - 1) {
            free(o->unit_mask[unit]);
            free(o->unit_centres[unit]);
            o->unit_mask[unit] = NULL;
            o->unit_centres[unit] = NULL;
        }
        o->next++;
        if (rc) return -1;
    }
    return 0;
}

int sim_h5_sink(void *ctx, const sim_image *im, cc_status *st)
{
    sim_h5_out *o = ctx;
    const size_t sn = (size_t)im->width * im->height, dn = (size_t)o->w * o->h;
    assert(sn > 0 && dn > 0);
    float *src = malloc(sn * sizeof *src), *img = malloc(dn * sizeof *img);
    float *mask = NULL, *xy = NULL;
    long unit = im->index / o->job->nfocus;
    int first = im->index % o->job->nfocus == 0;
    if (first) {
        mask = malloc(dn * sizeof *mask);
        xy = malloc(2 * (size_t)im->count * sizeof *xy);
        if (xy) memcpy(xy, im->centres, 2 * (size_t)im->count * sizeof *xy);
    }
    if (!src || !img || (first && (!mask || !xy))) {
        free(src);
        free(img);
        free(mask);
        free(xy);
        return status_set(st, "simulate: out of memory resizing images");
    }
    /* Same conversion as import: 8-bit v -> v/255, mask > 0 -> 1, area
     * resize; so --out equals --out-dir followed by `cellcount import`. */
    for (size_t i = 0; i < sn; i++) src[i] = im->pixels[i] * (1.0f / 255.0f);
    int rc = resize_area(src, im->width, im->height, img, o->w, o->h, st);
    if (rc == 0 && first) {
        for (size_t i = 0; i < sn; i++) src[i] = im->mask[i] ? 1.0f : 0.0f;
        rc = resize_area(src, im->width, im->height, mask, o->w, o->h, st);
    }
    free(src);
    if (rc) {
        free(img);
        free(mask);
        free(xy);
        return -1;
    }
#pragma omp critical(sim_h5)
    {
        /* a unit's images reach the sink in focus order, so its mask is
         * stored before any of its images can be appended */
        if (first) o->unit_mask[unit] = mask, o->unit_centres[unit] = xy;
        o->pending[im->index] = img;
        if (o->failed) {
            rc = status_set(st, "simulate: the data set writer failed earlier");
        } else if ((rc = h5_append_ready(o, st)) != 0) {
            o->failed = 1;
        }
    }
    return rc;
}

static void h5_free(sim_h5_out *o)
{
    if (o->pending && o->unit_mask)
        for (long i = 0; i < o->n; i++) free(o->pending[i]);
    if (o->unit_mask)
        for (long u = 0; u < o->n / o->job->nfocus; u++) free(o->unit_mask[u]);
    if (o->unit_centres)
        for (long u = 0; u < o->n / o->job->nfocus; u++) free(o->unit_centres[u]);
    free(o->pending);
    free(o->unit_mask);
    free(o->unit_centres);
    free(o->scene);
    free(o->split);
    o->pending = o->unit_mask = o->unit_centres = NULL;
    o->scene = NULL;
    o->split = NULL;
}

int sim_h5_begin(sim_h5_out *o, const char *path, int w, int h, const sim_job *job,
                 uint64_t split_seed, const double frac[3], dataset_split_by by,
                 cc_status *st)
{
    memset(o, 0, sizeof *o);
    o->job = job;
    o->n = sim_job_images(job);
    o->w = w;
    o->h = h;
    o->pending = calloc((size_t)o->n, sizeof *o->pending);
    o->unit_mask = calloc((size_t)(o->n / job->nfocus), sizeof *o->unit_mask);
    o->unit_centres = calloc((size_t)(o->n / job->nfocus), sizeof *o->unit_centres);
    o->scene = malloc((size_t)o->n * sizeof *o->scene);
    o->split = malloc((size_t)o->n);
    int rc = 0;
    if (!o->pending || !o->unit_mask || !o->unit_centres || !o->scene || !o->split)
        rc = status_set(st, "%s: out of memory for %ld images", path, o->n);
    if (rc == 0) rc = h5_plan(o, split_seed, frac, by, st);
    if (rc == 0 && !(o->wr = dataset_writer_open(path, h, w, st))) rc = -1;
    if (rc == 0) {
        static const double dflt[3] = {0.8, 0.1, 0.1};
        dataset_writer_set_split_info(o->wr, split_seed, frac ? frac : dflt, by);
        int kmax = 1;
        for (int i = 0; i < job->ncounts; i++) kmax = job->counts[i] > kmax ? job->counts[i] : kmax;
        dataset_writer_set_centres(o->wr, kmax);
    }
    if (rc) h5_free(o);
    return rc;
}

int sim_h5_end(sim_h5_out *o, int commit, cc_status *st)
{
    int rc = 0;
    if (commit && o->next != o->n)
        rc = status_set(st, "simulate: internal error: %ld of %ld images appended", o->next,
                        o->n);
    if (dataset_writer_close(o->wr, commit && rc == 0, st)) rc = -1;
    o->wr = NULL;
    h5_free(o);
    return rc;
}

/* ---- preview ------------------------------------------------------------ */

int sim_preview_write(const sim_params *p, const sim_job *job, const char *path, FILE *log,
                      cc_status *st)
{
    int cols[4], nc = 0;
    for (int k = 0; k < 4; k++) {
        int ci = job->ncounts == 1 ? 0 : k * (job->ncounts - 1) / 3;
        if (nc == 0 || cols[nc - 1] != ci) cols[nc++] = ci;
    }
    const int stain = job->stains & 1 ? 1 : 2;
    int fhi = 1;
    for (int k = 0; k < job->nfocus; k++)
        if (job->focus[k] > fhi) fhi = job->focus[k];
    const int w = p->width, h = p->height;
    const int tw = w / 2 > 0 ? w / 2 : 1, th = h / 2 > 0 ? h / 2 : 1, gap = 4;
    const int mw = nc * tw + (nc - 1) * gap, mh = 3 * th + 2 * gap;
    uint8_t *mont = malloc((size_t)mw * mh);
    if (!mont) return status_set(st, "%s: out of memory for the preview", path);
    memset(mont, 96, (size_t)mw * mh);
    int failed = 0;
    cc_status first;
    status_clear(&first);
    int nt = job->threads > 0 ? job->threads : omp_get_max_threads();
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
    for (int k = 0; k < nc; k++) {
        cc_status mine;
        status_clear(&mine);
        const size_t n = (size_t)w * h;
        float *img = malloc(n * sizeof *img), *src = malloc(n * sizeof *src);
        float *tmp = malloc(sim_focus_work(w, h, fhi) * sizeof *tmp);
        float *tile = malloc((size_t)tw * th * sizeof *tile);
        uint8_t *pix = malloc(n), *mask = malloc(n);
        sim_scene sc;
        memset(&sc, 0, sizeof sc);
        int rc = !img || !src || !tmp || !tile || !pix || !mask
                     ? status_set(&mine, "%s: out of memory for the preview", path)
                     : sim_scene_generate(p, job->counts[cols[k]], 1, &sc, &mine);
        if (rc == 0) rc = sim_render(p, &sc, stain, img, &mine);
        if (rc == 0) sim_mask_render(&sc, stain, mask);
        for (int row = 0; rc == 0 && row < 3; row++) {
            const uint8_t *u8 = mask;
            if (row < 2) {
                sim_focus_apply(img, w, h, row == 0 ? 1 : fhi, pix, tmp);
                u8 = pix;
            }
            for (size_t i = 0; i < n; i++) src[i] = (float)u8[i];
            rc = resize_area(src, w, h, tile, tw, th, &mine);
            for (int y = 0; rc == 0 && y < th; y++) {
                uint8_t *o = mont + (size_t)(row * (th + gap) + y) * mw + k * (tw + gap);
                for (int x = 0; x < tw; x++) {
                    float v = tile[(size_t)y * tw + x] + 0.5f;
                    o[x] = v >= 255.0f ? 255 : (uint8_t)v;
                }
            }
        }
        sim_scene_free(&sc);
        free(img); free(src); free(tmp); free(tile); free(pix); free(mask);
        if (rc) {
#pragma omp critical(sim_preview)
            if (!failed) {
                failed = 1;
                first = mine;
            }
        }
    }
    int rc = 0;
    if (failed) {
        status_set(st, "%s", first.msg);
        rc = -1;
    }
    if (rc == 0) rc = png_write_gray(path, mw, mh, mont, st);
    free(mont);
    if (rc == 0 && log) {
        fprintf(log, "simulate: preview %s (%dx%d): columns C =", path, mw, mh);
        for (int k = 0; k < nc; k++) fprintf(log, " %d", job->counts[cols[k]]);
        fprintf(log, " (site 1, w%d); rows F1, F%d, mask\n", stain, fhi);
    }
    return rc;
}
