/* import.c - see import.h. */
#include "src/data/import.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <tiffio.h>
#include <unistd.h>

#include "src/data/bbbc_name.h"
#include "src/data/dataset.h"
#include "src/data/normalize.h"
#include "src/data/resize.h"
#include "src/data/tiff_io.h"

void import_opts_default(import_opts *o)
{
    memset(o, 0, sizeof *o);
    o->stain = 2;   /* w2, cell bodies: the paper's channel */
    o->width = 256;
    o->height = 192;
    o->seed = 1;
    o->frac[0] = 0.8;
    o->frac[1] = 0.1;
    o->frac[2] = 0.1;
}

/* ---- directory listing ----------------------------------------------- */

typedef struct name_list {
    char **v;
    int64_t n, cap;
} name_list;

static void names_free(name_list *l)
{
    for (int64_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Names of the non-hidden regular files (or links to them) in dir, sorted
 * bytewise so the import order never depends on the file system. */
static int list_dir(const char *dir, name_list *out, cc_status *st)
{
    memset(out, 0, sizeof *out);
    DIR *d = opendir(dir);
    if (!d) return status_set(st, "%s: cannot open directory: %s", dir, strerror(errno));
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        if (e->d_type != DT_REG) {
            if (e->d_type != DT_LNK && e->d_type != DT_UNKNOWN) continue;
            char full[4096];
            struct stat sb;
            snprintf(full, sizeof full, "%s/%s", dir, e->d_name);
            if (stat(full, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        }
        if (out->n == out->cap) {
            int64_t cap = out->cap ? 2 * out->cap : 1024;
            char **v = realloc(out->v, (size_t)cap * sizeof *v);
            if (!v) { rc = status_set(st, "%s: out of memory", dir); break; }
            out->v = v;
            out->cap = cap;
        }
        if (!(out->v[out->n] = strdup(e->d_name)))
            rc = status_set(st, "%s: out of memory", dir);
        else
            out->n++;
    }
    closedir(d);
    if (rc) { names_free(out); return rc; }
    if (out->n) qsort(out->v, (size_t)out->n, sizeof *out->v, cmp_str);
    return 0;
}

/* ---- scenes ---------------------------------------------------------- */

typedef struct item {
    const char *file;       /* name inside images_dir */
    bbbc_name nm;
    int32_t scene, group;
} item;

/* Sortable key of a (count, site, stain) scene or a (count, site) group. */
typedef struct key3 {
    int32_t c, s, w;
} key3;

static int cmp_key3(const void *a, const void *b)
{
    const key3 *x = a, *y = b;
    if (x->c != y->c) return (x->c > y->c) - (x->c < y->c);
    if (x->s != y->s) return (x->s > y->s) - (x->s < y->s);
    return (x->w > y->w) - (x->w < y->w);
}

/* Sort and deduplicate k[0..n); returns the number of distinct keys. */
static int64_t uniq_keys(key3 *k, int64_t n)
{
    qsort(k, (size_t)n, sizeof *k, cmp_key3);
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++)
        if (m == 0 || cmp_key3(&k[i], &k[m - 1]) != 0) k[m++] = k[i];
    return m;
}

static int32_t key_index(const key3 *k, int64_t n, key3 q)
{
    const key3 *p = bsearch(&q, k, (size_t)n, sizeof *k, cmp_key3);
    assert(p);
    return (int32_t)(p - k);
}

/* One scene's mask, read and resized. */
typedef struct scene_mask {
    char *file;             /* name inside masks_dir, NULL: no mask */
    int src_w, src_h;       /* size of the mask file */
    float *px;              /* height*width coverage fractions */
} scene_mask;

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* Decoded bytes in flight over the import's threads (issue 15: a 261 KB
 * deflate TIFF of 16384x16384 costs 1.6 GB, times the threads).  A thread
 * waits before decoding while the others hold the budget; a file larger
 * than the whole budget is decoded alone. */
typedef struct decode_budget {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t cap, used, peak;
} decode_budget;

static int quiet_handler(TIFF *t, void *ud, const char *mod, const char *fmt, va_list ap)
{
    (void)t; (void)ud; (void)mod; (void)fmt; (void)ap;
    return 1;
}

/* What decoding path will cost, from its header: 16-bit samples, the
 * 16-bit gray image and its float copy.  0 when the header is unreadable
 * (tiff_read_gray reports that). */
static uint64_t decode_cost(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat sb;
    if (fd < 0) return 0;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return 0;
    }
    TIFFOpenOptions *opts = TIFFOpenOptionsAlloc();
    if (!opts) {
        close(fd);
        return 0;
    }
    TIFFOpenOptionsSetErrorHandlerExtR(opts, quiet_handler, NULL);
    TIFFOpenOptionsSetWarningHandlerExtR(opts, quiet_handler, NULL);
    TIFF *t = TIFFFdOpenExt(fd, path, "rm", opts);   /* reads the first directory only */
    TIFFOpenOptionsFree(opts);
    if (!t) {
        close(fd);
        return 0;
    }
    uint32_t w = 0, h = 0;
    uint16_t spp = 1;
    TIFFGetField(t, TIFFTAG_IMAGEWIDTH, &w);
    TIFFGetField(t, TIFFTAG_IMAGELENGTH, &h);
    TIFFGetFieldDefaulted(t, TIFFTAG_SAMPLESPERPIXEL, &spp);
    TIFFClose(t);
    return (uint64_t)w * h * (2u * spp + 2u + 4u);
}

static void budget_take(decode_budget *b, uint64_t n)
{
    pthread_mutex_lock(&b->mu);
    while (b->used > 0 && b->used + n > b->cap) pthread_cond_wait(&b->cv, &b->mu);
    b->used += n;
    if (b->used > b->peak) b->peak = b->used;
    pthread_mutex_unlock(&b->mu);
}

static void budget_give(decode_budget *b, uint64_t n)
{
    pthread_mutex_lock(&b->mu);
    b->used -= n;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

/* Read a TIFF (as gray float [0,1] or binarised) and area-resize it,
 * within the decode budget. */
static int load_resized_raw(const char *path, const cc_norm *norm, int w, int h, float *out,
                            cc_image *img, cc_status *st);

/* norm NULL: a mask (binarised). */
static int load_resized(decode_budget *b, const char *path, const cc_norm *norm, int w, int h,
                        float *out, cc_image *img, cc_status *st)
{
    uint64_t cost = decode_cost(path);
    budget_take(b, cost);
    int rc = load_resized_raw(path, norm, w, h, out, img, st);
    /* the float copy is gone; the 16-bit image goes with the caller's
     * cc_image_free right after */
    budget_give(b, cost);
    return rc;
}

static int load_resized_raw(const char *path, const cc_norm *norm, int w, int h, float *out,
                            cc_image *img, cc_status *st)
{
    if (tiff_read_gray(path, img, st) != 0) return -1;
    float *f = malloc((size_t)img->w * img->h * sizeof *f);
    if (!f) return status_set(st, "%s: out of memory", path);
    int rc = 0;
    if (!norm)  /* a mask: binary */
        for (size_t i = 0; i < (size_t)img->w * img->h; i++) f[i] = img->px[i] > 0;
    else
        rc = norm_apply(img, norm, f, NULL, st);
    if (rc == 0) rc = resize_area(f, img->w, img->h, out, w, h, st);
    if (rc) status_prefix(st, "%s", path);
    free(f);
    return rc;
}

/* Find, read and resize the mask of every scene (in parallel). */
static int load_masks(const import_opts *o, const key3 *scenes, int64_t ns, scene_mask *sm,
                      int nt, decode_budget *b, FILE *log, import_summary *sum, cc_status *st)
{
    name_list ml;
    if (list_dir(o->masks_dir, &ml, st) != 0) return -1;
    for (int64_t i = 0; i < ml.n; i++) {
        bbbc_name nm;
        cc_status why;
        status_clear(&why);
        if (bbbc_name_parse(ml.v[i], &nm, &why) != 0) {
            sum->mask_malformed++;
            if (log) fprintf(log, "cellcount import: skipping mask %s/%s: %s\n",
                             o->masks_dir, ml.v[i], why.msg);
            continue;
        }
        key3 q = {nm.count, nm.site, nm.stain};
        const key3 *p = bsearch(&q, scenes, (size_t)ns, sizeof *scenes, cmp_key3);
        if (!p) continue;   /* a scene we do not import */
        scene_mask *m = &sm[p - scenes];
        if (m->file) {
            if (log) fprintf(log, "cellcount import: %s/%s: scene already has mask %s; "
                             "ignored\n", o->masks_dir, ml.v[i], m->file);
            continue;
        }
        m->file = ml.v[i];
        ml.v[i] = NULL;     /* ownership moves to sm */
    }
    names_free(&ml);

    const size_t hw = (size_t)o->width * o->height;
    int64_t first_bad = -1;
    cc_status *sts = calloc((size_t)(ns ? ns : 1), sizeof *sts);
    if (!sts) return status_set(st, "%s: out of memory", o->masks_dir);
    #pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t k = 0; k < ns; k++) {
        if (!sm[k].file) continue;
        char *path = join(o->masks_dir, sm[k].file);
        cc_image img = {0};
        sm[k].px = malloc(hw * sizeof *sm[k].px);
        if (!path || !sm[k].px)
            status_set(&sts[k], "%s: out of memory", o->masks_dir);
        else if (load_resized(b, path, NULL, o->width, o->height, sm[k].px, &img, &sts[k]) == 0) {
            sm[k].src_w = img.w;
            sm[k].src_h = img.h;
        }
        cc_image_free(&img);
        free(path);
    }
    for (int64_t k = 0; k < ns && first_bad < 0; k++)
        if (sts[k].failed) first_bad = k;
    if (first_bad >= 0) status_set(st, "%s", sts[first_bad].msg);
    free(sts);
    return first_bad >= 0 ? -1 : 0;
}

/* ---- the import ------------------------------------------------------ */

/* Read, check and resize images items[i0..i0+n) into buf (n slots). */
static void load_block(const import_opts *o, const cc_norm *norm, const item *items, int64_t i0,
                       int64_t n, const scene_mask *sm, float *buf, int *bits, uint16_t *vmax,
                       cc_status *sts, int nt, decode_budget *b)
{
    const size_t hw = (size_t)o->width * o->height;
    #pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t j = 0; j < n; j++) {
        const item *it = &items[i0 + j];
        char *path = join(o->images_dir, it->file);
        cc_image img = {0};
        if (!path) {
            status_set(&sts[j], "%s: out of memory", o->images_dir);
        } else if (load_resized(b, path, norm, o->width, o->height, buf + (size_t)j * hw, &img,
                                &sts[j]) == 0) {
            bits[j] = img.bits;
            vmax[j] = 0;
            for (size_t i = 0; i < (size_t)img.w * img.h; i++)
                vmax[j] = img.px[i] > vmax[j] ? img.px[i] : vmax[j];
            const scene_mask *m = &sm[it->scene];
            if (m->file && (img.w != m->src_w || img.h != m->src_h))
                status_set(&sts[j], "%s/%s: mask is %dx%d but its image %s is %dx%d",
                           o->masks_dir, m->file, m->src_w, m->src_h, path, img.w, img.h);
        }
        cc_image_free(&img);
        free(path);
    }
}

static int write_all(decode_budget *b, const import_opts *o, const item *items, int64_t n,
                     const scene_mask *sm, const uint8_t *split, int nt, import_summary *sum,
                     FILE *log, cc_status *st)
{
    const size_t hw = (size_t)o->width * o->height;
    const int64_t block = 8 * (int64_t)nt;
    float *buf = malloc((size_t)block * hw * sizeof *buf);
    int *bits = calloc((size_t)block, sizeof *bits);
    uint16_t *vmax = calloc((size_t)block, sizeof *vmax);
    uint16_t all_max = 0;
    cc_status *sts = malloc((size_t)block * sizeof *sts);
    if (!buf || !bits || !vmax || !sts) {
        free(buf); free(bits); free(vmax); free(sts);
        return status_set(st, "%s: out of memory", o->out_path);
    }
    cc_norm norm;
    char spec[NORM_SPEC_LEN];
    if (norm_parse(o->normalize ? o->normalize : "range", &norm, st)) {
        free(buf); free(bits); free(vmax); free(sts);
        return -1;
    }
    norm_format(&norm, spec, sizeof spec);
    dataset_writer *wr = dataset_writer_open(o->out_path, o->height, o->width, st);
    int rc = wr ? 0 : -1;
    if (wr) {
        dataset_writer_set_split_info(wr, o->seed, o->frac, o->split_by);
        dataset_writer_set_normalize(wr, spec);
    }
    for (int64_t i0 = 0; rc == 0 && i0 < n; i0 += block) {
        const int64_t m = n - i0 < block ? n - i0 : block;
        for (int64_t j = 0; j < m; j++) status_clear(&sts[j]);
        load_block(o, &norm, items, i0, m, sm, buf, bits, vmax, sts, nt, b);
        for (int64_t j = 0; rc == 0 && j < m; j++) {
            const item *it = &items[i0 + j];
            if (sts[j].failed) {
                rc = status_set(st, "%s", sts[j].msg);
                break;
            }
            if (i0 + j == 0) {
                sum->bits = bits[j];
                /* uint8 keeps 8-bit sources exactly only when scaled by 1/255 */
                dataset_writer_set_image_type(wr, bits[j] == 8 && norm.kind == NORM_RANGE
                                                      ? DATASET_U8 : DATASET_F32);
            } else if (bits[j] != sum->bits) {
                rc = status_set(st, "%s/%s: %d-bit image, but the images before it are "
                                "%d-bit; mixed bit depths are not supported",
                                o->images_dir, it->file, bits[j], sum->bits);
                break;
            }
            all_max = vmax[j] > all_max ? vmax[j] : all_max;
            dataset_record rec = {it->nm.count, it->nm.focus, it->nm.stain, it->nm.site,
                                  it->scene, split[i0 + j], it->file, NULL};
            rc = dataset_writer_append(wr, buf + (size_t)j * hw, sm[it->scene].px, &rec, st);
            if (rc == 0) sum->split_images[split[i0 + j]]++;
        }
    }
    free(buf); free(bits); free(vmax); free(sts);
    if (dataset_writer_close(wr, rc == 0, st) != 0) rc = -1;
    if (rc == 0) sum->images = n;
    if (rc == 0 && log && sum->bits == 16 && norm.kind == NORM_RANGE && all_max <= 4095)
        fprintf(log, "cellcount import: warning: no 16-bit image exceeds 4095 (max %u): if this "
                     "is 12-bit camera data, --normalize range made it 16x darker than 8-bit or "
                     "simulated data of the same scene: import with --normalize bits:12\n",
                (unsigned)all_max);
    return rc;
}

static int focus_selected(const import_opts *o, int f)
{
    if (o->nfocus == 0) return 1;
    for (int i = 0; i < o->nfocus; i++)
        if (o->focus[i] == f) return 1;
    return 0;
}

/* -1 + message if `out` (when it exists) is one of the files of `dir`:
 * the import would replace an input it is reading. */
static int out_not_input(const char *out, const char *dir, const name_list *files,
                         cc_status *st)
{
    struct stat so, si;
    if (!dir || stat(out, &so) != 0) return 0;
    char full[4096];
    for (int64_t i = 0; i < files->n; i++) {
        snprintf(full, sizeof full, "%s/%s", dir, files->v[i]);
        if (stat(full, &si) == 0 && si.st_dev == so.st_dev && si.st_ino == so.st_ino)
            return status_set(st, "%s: the output is the input %s: refusing to overwrite it",
                              out, full);
    }
    return 0;
}

int import_run(const import_opts *o, FILE *log, import_summary *sum_out, cc_status *st)
{
    assert(o && o->images_dir && o->out_path && o->width > 0 && o->height > 0);
    import_summary sum;
    memset(&sum, 0, sizeof sum);
    const int nt = o->threads > 0 ? o->threads : omp_get_max_threads();

    name_list files;
    if (list_dir(o->images_dir, &files, st) != 0) return -1;
    name_list mfiles = {0};
    if (o->masks_dir) (void)list_dir(o->masks_dir, &mfiles, NULL);   /* its errors come later */
    int clash = out_not_input(o->out_path, o->images_dir, &files, st) != 0 ||
                out_not_input(o->out_path, o->masks_dir, &mfiles, st) != 0;
    names_free(&mfiles);
    if (clash) {
        names_free(&files);
        return -1;
    }
    sum.files = files.n;
    item *items = calloc((size_t)(files.n ? files.n : 1), sizeof *items);
    key3 *scenes = NULL, *groups = NULL;
    int32_t *gid = NULL, *cnt = NULL;
    uint8_t *split = NULL;
    scene_mask *sm = NULL;
    int64_t n = 0, ns = 0, ng = 0;
    int rc = 0;
    if (!items) { rc = status_set(st, "%s: out of memory", o->images_dir); goto out; }
    for (int64_t i = 0; i < files.n; i++) {
        cc_status why;
        status_clear(&why);
        item *it = &items[n];
        if (bbbc_name_parse(files.v[i], &it->nm, &why) != 0) {
            sum.malformed++;
            if (log) fprintf(log, "cellcount import: skipping %s/%s: %s\n", o->images_dir,
                             files.v[i], why.msg);
            continue;
        }
        if ((o->stain && it->nm.stain != o->stain) || !focus_selected(o, it->nm.focus)) {
            sum.filtered++;
            continue;
        }
        it->file = files.v[i];
        n++;
    }
    if (n == 0) {
        rc = status_set(st, "%s: no images selected (%lld files, %lld malformed names, "
                        "%lld excluded by --stain/--focus)", o->images_dir,
                        (long long)sum.files, (long long)sum.malformed, (long long)sum.filtered);
        goto out;
    }

    /* Scene ids: index of (count, site, stain) in sorted order; split
     * groups: (count, site), so both stains of one simulated field of
     * cells always share a split. */
    scenes = malloc((size_t)n * sizeof *scenes);
    groups = malloc((size_t)n * sizeof *groups);
    gid = malloc((size_t)n * sizeof *gid);
    cnt = malloc((size_t)n * sizeof *cnt);
    split = malloc((size_t)n);
    if (!scenes || !groups || !gid || !cnt || !split) {
        rc = status_set(st, "%s: out of memory", o->images_dir);
        goto out;
    }
    for (int64_t i = 0; i < n; i++) {
        scenes[i] = (key3){items[i].nm.count, items[i].nm.site, items[i].nm.stain};
        groups[i] = (key3){items[i].nm.count, items[i].nm.site, 0};
    }
    ns = uniq_keys(scenes, n);
    ng = uniq_keys(groups, n);
    for (int64_t i = 0; i < n; i++) {
        items[i].scene = key_index(scenes, ns, (key3){items[i].nm.count, items[i].nm.site,
                                                      items[i].nm.stain});
        items[i].group = gid[i] =
            key_index(groups, ng, (key3){items[i].nm.count, items[i].nm.site, 0});
        cnt[i] = items[i].nm.count;
    }
    sum.scenes = ns;
    if ((o->split_by == DATASET_SPLIT_COUNT
             ? dataset_split_stratified(gid, cnt, n, o->seed, o->frac, split, st)
             : dataset_split_by_scene(gid, n, o->seed, o->frac, split, st)) != 0) {
        status_prefix(st, "%s", o->out_path);
        rc = -1;
        goto out;
    }
    {
        uint8_t *seen = calloc((size_t)ns, 1);
        if (!seen) { rc = status_set(st, "out of memory"); goto out; }
        for (int64_t i = 0; i < n; i++)
            if (!seen[items[i].scene]++) sum.split_scenes[split[i]]++;
        free(seen);
    }

    sm = calloc((size_t)ns, sizeof *sm);
    if (!sm) { rc = status_set(st, "out of memory"); goto out; }
    decode_budget db = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
                        o->decode_budget ? o->decode_budget : 2ull << 30, 0, 0};
    if (o->masks_dir && load_masks(o, scenes, ns, sm, nt, &db, log, &sum, st) != 0) {
        rc = -1;
        goto out;
    }
    for (int64_t k = 0; k < ns; k++) sum.scenes_with_mask += sm[k].file != NULL;
    if (log && o->masks_dir && sum.scenes_with_mask < ns)
        fprintf(log, "cellcount import: %lld of %lld scenes have no mask in %s\n",
                (long long)(ns - sum.scenes_with_mask), (long long)ns, o->masks_dir);

    rc = write_all(&db, o, items, n, sm, split, nt, &sum, log, st);
    sum.peak_decode = db.peak;

out:
    if (sm)
        for (int64_t k = 0; k < ns; k++) { free(sm[k].file); free(sm[k].px); }
    free(sm); free(split); free(gid); free(cnt); free(groups); free(scenes); free(items);
    names_free(&files);
    if (sum_out) *sum_out = sum;
    return rc;
}

void import_summary_print(const import_summary *s, const char *out_path, FILE *f)
{
    static const char *names[3] = {"train", "val", "test"};
    fprintf(f, "wrote %s\n", out_path);
    fprintf(f, "  images:  %lld (%d-bit sources)\n", (long long)s->images, s->bits);
    fprintf(f, "  scenes:  %lld, %lld with a mask\n", (long long)s->scenes,
            (long long)s->scenes_with_mask);
    for (int k = 0; k < 3; k++)
        fprintf(f, "  %-6s %lld images, %lld scenes\n", names[k],
                (long long)s->split_images[k], (long long)s->split_scenes[k]);
    fprintf(f, "  skipped: %lld malformed names, %lld excluded by stain/focus",
            (long long)s->malformed, (long long)s->filtered);
    if (s->mask_malformed)
        fprintf(f, ", %lld malformed mask names", (long long)s->mask_malformed);
    fprintf(f, "\n");
}
