/* dataset.c - see dataset.h. */
#include "src/data/dataset.h"

#include <assert.h>
#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "autodiff/rng.h"
#include "src/data/centres.h"
#include "src/data/fsutil.h"
#include "src/data/h5write.h"

#define DEFLATE_LEVEL 4



static int set_num_attr(hid_t obj, const char *name, hid_t type, hsize_t n, const void *v)
{
    hid_t s = (n == 1) ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, NULL), a = -1;
    int rc = -1;
    if (s >= 0 && (a = H5Acreate2(obj, name, type, s, H5P_DEFAULT, H5P_DEFAULT)) >= 0 &&
        H5Awrite(a, type, v) >= 0)
        rc = 0;
    h5_close_id(&a, H5Aclose);
    h5_close_id(&s, H5Sclose);
    return rc;
}

/* ---- writer ---------------------------------------------------------- */

struct dataset_writer {
    char *path, *tmp;
    fs_atomic aw;           /* tmp's registration (fsutil.h) */
    int h, w;
    dataset_dtype type;
    hid_t file, images, masks;
    int64_t n, cap;
    int32_t *count, *focus, *stain, *site, *scene;
    uint8_t *split, *has_mask;
    char **source;
    uint64_t seed;
    double frac[3];
    dataset_split_by split_by;
    uint8_t *u8;            /* one image, for uint8 conversion */
    float *zeros;           /* one all-zero mask */
    char normalize[64];     /* root attribute "normalize"; "" writes none */
    int centres_k;          /* > 0: /centres with this many slots per image */
    float *centres;         /* cap * centres_k * 2 */
};

static const char *DESC_FILE =
    "cellcount training data: images with ground-truth foreground masks, cell "
    "counts and metadata; see docs of src/data/dataset.h";
static const char *DESC_IMAGES_U8 =
    "(N,1,H,W) images, area-resized; uint8 value v means intensity v/255 in [0,1]";
static const char *DESC_IMAGES_F32 = "(N,1,H,W) images, area-resized, intensity in [0,1]";
static const char *DESC_MASKS =
    "(N,1,H,W) foreground fraction in [0,1]: the scene's binary mask area-resized; "
    "zero where has_mask is 0";
static const struct { const char *name; const char *desc; } DESC_META[] = {
    {"has_mask", "(N) 1 if the image's scene has a ground-truth mask, else 0"},
    {"counts", "(N) true number of cells (C in the file name)"},
    {"focus", "(N) focus blur level (F in the file name)"},
    {"stain", "(N) stain (w in the file name): 1 nuclei, 2 cell bodies"},
    {"site", "(N) sample number (s in the file name)"},
    {"scene", "(N) scene id, unique per (count, site, stain); all focus levels of a "
              "scene share its mask"},
    {"split", "(N) 0 train, 1 validation, 2 test; no scene is in two splits"},
    {"source", "(N) source file name"},
};

static void writer_free(dataset_writer *wr)
{
    h5_close_id(&wr->images, H5Dclose);
    h5_close_id(&wr->masks, H5Dclose);
    h5_close_id(&wr->file, H5Fclose);
    for (int64_t i = 0; i < wr->n; i++) free(wr->source[i]);
    free(wr->count); free(wr->focus); free(wr->stain); free(wr->site); free(wr->scene);
    free(wr->split); free(wr->has_mask); free(wr->source);
    free(wr->u8); free(wr->zeros); free(wr->path); free(wr->tmp); free(wr->centres);
    fs_atomic_release(&wr->aw);
    free(wr);
}

dataset_writer *dataset_writer_open(const char *path, int h, int w, cc_status *st)
{
    assert(path && h > 0 && w > 0);
    dataset_writer *wr = calloc(1, sizeof *wr);
    if (!wr) { status_set(st, "%s: out of memory", path); return NULL; }
    wr->file = wr->images = wr->masks = -1;
    wr->aw.slot = -1;
    wr->h = h; wr->w = w;
    wr->type = DATASET_U8;
    wr->frac[0] = 0.8; wr->frac[1] = 0.1; wr->frac[2] = 0.1;
    size_t tl = sizeof wr->aw.tmp;
    wr->path = strdup(path);
    wr->tmp = malloc(tl);
    wr->u8 = malloc((size_t)h * w);
    wr->zeros = calloc((size_t)h * w, sizeof *wr->zeros);
    if (!wr->path || !wr->tmp || !wr->u8 || !wr->zeros) {
        status_set(st, "%s: out of memory", path);
        writer_free(wr);
        return NULL;
    }
    if (fs_atomic_begin(&wr->aw, path, st) != 0) {
        writer_free(wr);
        return NULL;
    }
    snprintf(wr->tmp, tl, "%s", wr->aw.tmp);
    h5_quiet q;
    h5_quiet_begin(&q);
    if (H5Zfilter_avail(H5Z_FILTER_DEFLATE) <= 0) {
        status_set(st, "%s: this HDF5 library has no deflate filter", path);
    } else {
        hid_t fcpl = h5write_plist_create(H5P_FILE_CREATE);    /* the root group */
        if (fcpl >= 0) wr->file = H5Fcreate(wr->tmp, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
        if (wr->file < 0) h5_fail(st, path, "cannot create temporary file %s", wr->tmp);
        h5_close_id(&fcpl, H5Pclose);
    }
    h5_quiet_end(&q);
    if (wr->file < 0) {
        writer_free(wr);
        return NULL;
    }
    return wr;
}

void dataset_writer_set_image_type(dataset_writer *wr, dataset_dtype type)
{
    assert(wr && wr->images < 0 && (type == DATASET_U8 || type == DATASET_F32));
    wr->type = type;
}

void dataset_writer_set_split_info(dataset_writer *wr, uint64_t seed, const double frac[3],
                                   dataset_split_by by)
{
    assert(wr && frac);
    wr->seed = seed;
    wr->split_by = by;
    memcpy(wr->frac, frac, sizeof wr->frac);
}

void dataset_writer_set_centres(dataset_writer *wr, int k)
{
    /* before any append, so the first grow() allocates the buffer */
    assert(wr && k > 0 && wr->cap == 0);
    wr->centres_k = k;
}

void dataset_writer_set_normalize(dataset_writer *wr, const char *spec)
{
    assert(wr && spec && strlen(spec) < sizeof wr->normalize);
    snprintf(wr->normalize, sizeof wr->normalize, "%s", spec);
}

int64_t dataset_writer_count(const dataset_writer *wr) { return wr->n; }

/* Create an extendible (0,1,H,W) data set chunked one image per chunk. */
static hid_t create_stack(dataset_writer *wr, const char *name, hid_t type)
{
    hsize_t dims[4] = {0, 1, (hsize_t)wr->h, (hsize_t)wr->w};
    hsize_t maxd[4] = {H5S_UNLIMITED, 1, (hsize_t)wr->h, (hsize_t)wr->w};
    hsize_t chunk[4] = {1, 1, (hsize_t)wr->h, (hsize_t)wr->w};
    hid_t s = H5Screate_simple(4, dims, maxd), d = -1;
    hid_t p = h5write_plist_create(H5P_DATASET_CREATE);
    /* No chunk cache: every append writes its chunks at once, so a full disk
     * fails the append that hit it, and the final flush (which must not
     * fail, see h5write.h) has no raw data left to write. */
    hid_t a = H5Pcreate(H5P_DATASET_ACCESS);
    if (s >= 0 && p >= 0 && a >= 0 && H5Pset_chunk(p, 4, chunk) >= 0 &&
        H5Pset_shuffle(p) >= 0 && H5Pset_deflate(p, DEFLATE_LEVEL) >= 0 &&
        H5Pset_chunk_cache(a, H5D_CHUNK_CACHE_NSLOTS_DEFAULT, 0, H5D_CHUNK_CACHE_W0_DEFAULT) >= 0)
        d = H5Dcreate2(wr->file, name, type, s, H5P_DEFAULT, p, a);
    h5_close_id(&a, H5Pclose);
    h5_close_id(&p, H5Pclose);
    h5_close_id(&s, H5Sclose);
    return d;
}

static int create_stacks(dataset_writer *wr, cc_status *st)
{
    wr->images = create_stack(wr, "images",
                              wr->type == DATASET_U8 ? H5T_STD_U8LE : H5T_IEEE_F32LE);
    if (wr->images < 0) return h5_fail(st, wr->path, "cannot create /images");
    wr->masks = create_stack(wr, "masks", H5T_IEEE_F32LE);
    if (wr->masks < 0) return h5_fail(st, wr->path, "cannot create /masks");
    return 0;
}

/* Write one (1,1,H,W) slab at row n of an extendible stack.  On failure
 * errno is that of the failing system call (ENOSPC...), or 0. */
static int write_slab(hid_t d, int64_t n, int h, int w, hid_t memtype, const void *buf)
{
    hsize_t dims[4] = {(hsize_t)n + 1, 1, (hsize_t)h, (hsize_t)w};
    hsize_t start[4] = {(hsize_t)n, 0, 0, 0}, count[4] = {1, 1, (hsize_t)h, (hsize_t)w};
    errno = 0;
    if (H5Dset_extent(d, dims) < 0) return -1;
    hid_t fs = H5Dget_space(d), ms = H5Screate_simple(4, count, NULL);
    int rc = -1;
    if (fs >= 0 && ms >= 0 &&
        H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) >= 0 &&
        H5Dwrite(d, memtype, ms, fs, H5P_DEFAULT, buf) >= 0)
        rc = 0;
    int e = errno;
    h5_close_id(&ms, H5Sclose);
    h5_close_id(&fs, H5Sclose);
    errno = rc ? e : 0;
    return rc;
}

static int grow(dataset_writer *wr)
{
    int64_t cap = wr->cap ? 2 * wr->cap : 256;
#define GROW(f)                                                   \
    do {                                                          \
        void *p_ = realloc(wr->f, (size_t)cap * sizeof *wr->f);   \
        if (!p_) return -1;                                       \
        wr->f = p_;                                               \
    } while (0)
    GROW(count); GROW(focus); GROW(stain); GROW(site); GROW(scene);
    GROW(split); GROW(has_mask); GROW(source);
#undef GROW
    if (wr->centres_k) {
        float *c = realloc(wr->centres, sizeof(float) * (size_t)cap * (size_t)wr->centres_k * 2);
        if (!c) return -1;
        wr->centres = c;
    }
    wr->cap = cap;
    return 0;
}

int dataset_writer_append(dataset_writer *wr, const float *image, const float *mask,
                          const dataset_record *rec, cc_status *st)
{
    assert(wr && image && rec);
    if (rec->split > DATASET_TEST)
        return status_set(st, "%s: split %u of image %lld is not 0, 1 or 2", wr->path,
                          (unsigned)rec->split, (long long)wr->n);
    if (wr->centres_k && rec->centres && rec->count > wr->centres_k)
        return status_set(st, "%s: image %lld has %d cells, more than the %d centre slots",
                          wr->path, (long long)wr->n, (int)rec->count, wr->centres_k);
    if (wr->n == wr->cap && grow(wr) != 0)
        return status_set(st, "%s: out of memory", wr->path);
    char *src = strdup(rec->source ? rec->source : "");
    if (!src) return status_set(st, "%s: out of memory", wr->path);

    h5_quiet q;
    h5_quiet_begin(&q);
    int rc = 0;
    if (wr->images < 0) rc = create_stacks(wr, st);
    if (rc == 0) {
        const void *buf = image;
        hid_t mt = H5T_NATIVE_FLOAT;
        if (wr->type == DATASET_U8) {
            const size_t hw = (size_t)wr->h * wr->w;
            for (size_t i = 0; i < hw; i++) {
                float v = image[i] * 255.0f + 0.5f;
                wr->u8[i] = (uint8_t)(v <= 0.0f ? 0.0f : v >= 255.0f ? 255.0f : v);
            }
            buf = wr->u8;
            mt = H5T_NATIVE_UINT8;
        }
        const char *what = "image";
        if (write_slab(wr->images, wr->n, wr->h, wr->w, mt, buf) == 0) {
            what = "mask";
            if (write_slab(wr->masks, wr->n, wr->h, wr->w, H5T_NATIVE_FLOAT,
                           mask ? mask : wr->zeros) == 0)
                what = NULL;
        }
        if (what)
            rc = h5_fail(st, wr->path, "cannot write %s %lld%s%s", what, (long long)wr->n,
                         errno ? ": " : "", errno ? strerror(errno) : "");
    }
    h5_quiet_end(&q);
    if (rc) { free(src); return rc; }
    int64_t i = wr->n++;
    wr->count[i] = rec->count; wr->focus[i] = rec->focus; wr->stain[i] = rec->stain;
    wr->site[i] = rec->site; wr->scene[i] = rec->scene; wr->split[i] = rec->split;
    wr->has_mask[i] = mask != NULL;
    wr->source[i] = src;
    if (wr->centres_k) {
        float *c = wr->centres + (size_t)i * (size_t)wr->centres_k * 2;
        for (int j = 0; j < 2 * wr->centres_k; j++)
            c[j] = rec->centres && j < 2 * rec->count ? rec->centres[j] : NAN;
    }
    return 0;
}

static int write_1d(dataset_writer *wr, const char *name, hid_t ftype, hid_t mtype,
                    const void *buf, const char *desc)
{
    hsize_t n = (hsize_t)wr->n;
    hid_t s = H5Screate_simple(1, &n, NULL), d = -1;
    hid_t p = h5write_plist_create(H5P_DATASET_CREATE);
    int rc = -1;
    if (s >= 0 && p >= 0 &&
        (d = H5Dcreate2(wr->file, name, ftype, s, H5P_DEFAULT, p, H5P_DEFAULT)) >= 0 &&
        (n == 0 || H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0) &&
        h5_attr_put_str(d, "description", desc) == 0)
        rc = 0;
    h5_close_id(&d, H5Dclose);
    h5_close_id(&p, H5Pclose);
    h5_close_id(&s, H5Sclose);
    return rc;
}

static int writer_finish(dataset_writer *wr, cc_status *st)
{
    if (wr->images < 0 && create_stacks(wr, st) != 0) return -1;
    if (h5_attr_put_str(wr->images, "description",
                     wr->type == DATASET_U8 ? DESC_IMAGES_U8 : DESC_IMAGES_F32) != 0 ||
        h5_attr_put_str(wr->masks, "description", DESC_MASKS) != 0)
        return h5_fail(st, wr->path, "cannot write attributes");
    hid_t vs = H5Tcopy(H5T_C_S1);
    H5Tset_size(vs, H5T_VARIABLE);
    H5Tset_cset(vs, H5T_CSET_UTF8);
    const void *bufs[] = {wr->has_mask, wr->count, wr->focus, wr->stain,
                          wr->site, wr->scene, wr->split, wr->source};
    for (int k = 0; k < 8; k++) {
        hid_t ft = H5T_STD_I32LE, mt = H5T_NATIVE_INT32;
        if (k == 0 || k == 6) { ft = H5T_STD_U8LE; mt = H5T_NATIVE_UINT8; }
        if (k == 7) ft = mt = vs;
        if (write_1d(wr, DESC_META[k].name, ft, mt, bufs[k], DESC_META[k].desc) != 0) {
            int rc = h5_fail(st, wr->path, "cannot write /%s", DESC_META[k].name);
            H5Tclose(vs);
            return rc;
        }
    }
    H5Tclose(vs);
    if (wr->centres_k &&
        centres_h5_write(wr->file, wr->n, wr->centres_k, wr->centres, wr->path, st) != 0)
        return -1;
    const int32_t version = DATASET_VERSION, hh = wr->h, ww = wr->w;
    if (h5_attr_put_str(wr->file, "format", DATASET_FORMAT) != 0 ||
        set_num_attr(wr->file, "version", H5T_STD_I32LE, 1, &version) != 0 ||
        set_num_attr(wr->file, "height", H5T_STD_I32LE, 1, &hh) != 0 ||
        set_num_attr(wr->file, "width", H5T_STD_I32LE, 1, &ww) != 0 ||
        h5_attr_put_str(wr->file, "image_dtype", wr->type == DATASET_U8 ? "uint8" : "float32") ||
        set_num_attr(wr->file, "split_seed", H5T_STD_U64LE, 1, &wr->seed) != 0 ||
        set_num_attr(wr->file, "split_fractions", H5T_IEEE_F64LE, 3, wr->frac) != 0 ||
        h5_attr_put_str(wr->file, "split_by", dataset_split_by_name(wr->split_by)) != 0 ||
        h5_attr_put_str(wr->file, "description", DESC_FILE) != 0 ||
        (wr->normalize[0] && h5_attr_put_str(wr->file, "normalize", wr->normalize) != 0))
        return h5_fail(st, wr->path, "cannot write root attributes");
    /* the final flush must not fail: see h5write.h */
    if (h5write_reserve(wr->file, wr->path, wr->tmp, st) != 0) return -1;
    h5_close_id(&wr->images, H5Dclose);
    h5_close_id(&wr->masks, H5Dclose);
    herr_t e = H5Fclose(wr->file);
    wr->file = -1;
    if (e < 0) return h5_fail(st, wr->path, "cannot flush and close %s", wr->tmp);
    return 0;
}

int dataset_writer_close(dataset_writer *wr, int commit, cc_status *st)
{
    if (!wr) return 0;
    int rc = 0;
    h5_quiet q;
    h5_quiet_begin(&q);
    if (commit) rc = writer_finish(wr, st);
    if (wr->file >= 0) h5write_discard(wr->file);  /* only a dropped file is still open */
    else if (commit && rc == 0) h5write_release(wr->tmp);
    h5_close_id(&wr->images, H5Dclose);
    h5_close_id(&wr->masks, H5Dclose);
    h5_close_id(&wr->file, H5Fclose);
    h5_quiet_end(&q);
    if (commit && rc == 0 && fs_atomic_commit(&wr->aw, st) != 0) rc = -1;
    if (!commit || rc != 0) fs_atomic_abort(&wr->aw);
    writer_free(wr);
    return rc;
}

/* ---- reader ---------------------------------------------------------- */

struct dataset_h5 {
    hid_t file, images, masks;
};

void dataset_close(cc_dataset *ds)
{
    if (!ds) return;
    if (ds->h5) {
        h5_quiet q;
        h5_quiet_begin(&q);
        h5_close_id(&ds->h5->images, H5Dclose);
        h5_close_id(&ds->h5->masks, H5Dclose);
        h5_close_id(&ds->h5->file, H5Fclose);
        h5_quiet_end(&q);
        free(ds->h5);
    }
    if (ds->source)
        for (int64_t i = 0; i < ds->n; i++) free(ds->source[i]);
    free(ds->source);
    free(ds->counts); free(ds->focus); free(ds->stain); free(ds->site); free(ds->scene);
    free(ds->split); free(ds->has_mask); free(ds->path); free(ds->centres);
    free(ds);
}

int dataset_image_size(const char *path, int *h, int *w, cc_status *st)
{
    cc_dataset *ds = dataset_open(path, st);
    if (!ds) return -1;
    *h = ds->h;
    *w = ds->w;
    dataset_close(ds);
    return 0;
}

/* Read a numeric root attribute of exactly `nelem` elements (integers,
 * unless read as double). */
static int get_num_attr(hid_t f, const char *name, hid_t mt, hssize_t nelem, void *v,
                        const char *path, cc_status *st)
{
    if (H5Aexists(f, name) <= 0)
        return status_set(st, "%s: not a %s file: missing root attribute '%s'", path,
                          DATASET_FORMAT, name);
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    if (a < 0) return h5_fail(st, path, "cannot open attribute '%s'", name);
    hid_t t = H5Aget_type(a), s = H5Aget_space(a);
    H5T_class_t c = H5Tget_class(t);
    int rc = 0;
    if (H5Sget_simple_extent_npoints(s) != nelem)
        rc = status_set(st, "%s: root attribute '%s' should have %lld element(s)", path, name,
                        (long long)nelem);
    else if (c != H5T_INTEGER && !(mt == H5T_NATIVE_DOUBLE && c == H5T_FLOAT))
        rc = status_set(st, "%s: root attribute '%s' is not a number of the right kind",
                        path, name);
    else if (H5Aread(a, mt, v) < 0)
        rc = h5_fail(st, path, "cannot read attribute '%s'", name);
    H5Sclose(s);
    H5Tclose(t);
    H5Aclose(a);
    return rc;
}

/* Read a string root attribute into buf (h5_attr_get_str's rule). */
static int get_str_attr(hid_t f, const char *name, char *buf, size_t len, const char *path,
                        cc_status *st)
{
    int rc = h5_attr_get_str(f, path, "root", name, buf, len, st);
    if (rc == 1)
        return status_set(st, "%s: not a %s file: missing root attribute '%s'", path,
                          DATASET_FORMAT, name);
    return rc;
}

/* Open a data set and check its rank and dims against want[0..rank). */
static hid_t open_checked(hid_t f, const char *name, int rank, const hsize_t *want,
                          H5T_class_t cls, const char *path, cc_status *st)
{
    if (H5Lexists(f, name, H5P_DEFAULT) <= 0) {
        status_set(st, "%s: missing data set /%s", path, name);
        return -1;
    }
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) {
        h5_fail(st, path, "cannot open /%s", name);
        return -1;
    }
    hid_t s = H5Dget_space(d), t = H5Dget_type(d);
    hsize_t dims[8] = {0};
    int r = s >= 0 ? H5Sget_simple_extent_ndims(s) : -1;
    /* dims of any rank up to 8, so that a wrong shape is shown as it is */
    if (r > 8 || (r >= 0 && H5Sget_simple_extent_dims(s, dims, NULL) != r)) r = -1;
    int ok = r == rank;
    char got[128] = "", exp[128] = "";
    for (int i = 0; i < rank && ok; i++) ok = dims[i] == want[i];
    if (!ok) {
        for (int i = 0; i < r && i < 8; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%llu", i ? "," : "",
                     (unsigned long long)dims[i]);
        for (int i = 0; i < rank; i++)
            snprintf(exp + strlen(exp), sizeof exp - strlen(exp), "%s%llu", i ? "," : "",
                     (unsigned long long)want[i]);
        if (r == rank && rank >= 1 && dims[0] != want[0] && !memcmp(dims + 1, want + 1,
                                                                    (size_t)(rank - 1) * sizeof *dims))
            status_set(st, "%s: /%s has %llu entries but /counts has %llu (one per image)", path,
                       name, (unsigned long long)dims[0], (unsigned long long)want[0]);
        else
            status_set(st, "%s: /%s has shape (%s), expected (%s)", path, name, r < 0 ? "?" : got,
                       exp);
    } else if (t < 0 || H5Tget_class(t) != cls) {
        ok = 0;
        status_set(st, "%s: /%s has the wrong element type (expected %s)", path, name,
                   cls == H5T_INTEGER ? "integers" : cls == H5T_FLOAT ? "floats" : "strings");
    }
    if (t >= 0) H5Tclose(t);
    if (s >= 0) H5Sclose(s);
    if (!ok) {
        H5Dclose(d);
        return -1;
    }
    return d;
}

static int read_1d(hid_t f, const char *name, int64_t n, hid_t mt, void **out,
                   size_t esize, const char *path, cc_status *st)
{
    hsize_t want = (hsize_t)n;
    hid_t d = open_checked(f, name, 1, &want, H5T_INTEGER, path, st);
    if (d < 0) return -1;
    *out = malloc((size_t)(n ? n : 1) * esize);
    int rc = 0;
    if (!*out) rc = status_set(st, "%s: out of memory", path);
    else if (n > 0 && H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, *out) < 0)
        rc = h5_fail(st, path, "cannot read /%s (truncated or corrupt?)", name);
    H5Dclose(d);
    return rc;
}

static int read_sources(cc_dataset *ds, hid_t f, cc_status *st)
{
    hsize_t want = (hsize_t)ds->n;
    hid_t d = open_checked(f, "source", 1, &want, H5T_STRING, ds->path, st);
    if (d < 0) return -1;
    int rc = 0;
    ds->source = calloc((size_t)(ds->n ? ds->n : 1), sizeof *ds->source);
    hid_t t = H5Dget_type(d);
    if (!ds->source) {
        rc = status_set(st, "%s: out of memory", ds->path);
    } else if (ds->n == 0) {
        /* nothing to read */
    } else if (H5Tis_variable_str(t) > 0) {
        char **tmp = calloc((size_t)ds->n, sizeof *tmp);
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(t));
        if (!tmp) rc = status_set(st, "%s: out of memory", ds->path);
        else if (H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, tmp) < 0)
            rc = h5_fail(st, ds->path, "cannot read /source (truncated or corrupt?)");
        else {
            for (int64_t i = 0; i < ds->n && rc == 0; i++)
                if (!(ds->source[i] = strdup(tmp[i] ? tmp[i] : "")))
                    rc = status_set(st, "%s: out of memory", ds->path);
            hid_t sp = H5Dget_space(d);
            H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, tmp);
            H5Sclose(sp);
        }
        H5Tclose(mt);
        free(tmp);
    } else {
        size_t sz = H5Tget_size(t);
        char *buf = calloc((size_t)ds->n, sz);
        if (!buf) rc = status_set(st, "%s: out of memory", ds->path);
        else if (H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
            rc = h5_fail(st, ds->path, "cannot read /source (truncated or corrupt?)");
        for (int64_t i = 0; i < ds->n && rc == 0; i++)
            if (!(ds->source[i] = strndup(buf + (size_t)i * sz, sz)))
                rc = status_set(st, "%s: out of memory", ds->path);
        free(buf);
    }
    H5Tclose(t);
    H5Dclose(d);
    return rc;
}

static int open_body(cc_dataset *ds, cc_status *st)
{
    const char *path = ds->path;
    hid_t f = ds->h5->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return h5_fail(st, path, "not a readable HDF5 file (truncated or corrupt?)");
    char fmt[128];
    int32_t version = 0, h = 0, w = 0;
    if (get_str_attr(f, "format", fmt, sizeof fmt, path, st)) return -1;
    if (strcmp(fmt, DATASET_FORMAT) != 0)
        return status_set(st, "%s: format is '%s', expected '%s'", path, fmt, DATASET_FORMAT);
    if (get_num_attr(f, "version", H5T_NATIVE_INT32, 1, &version, path, st)) return -1;
    if (version != DATASET_VERSION)
        return status_set(st, "%s: %s version %d is not supported (this build reads %d)",
                          path, DATASET_FORMAT, (int)version, DATASET_VERSION);
    if (get_num_attr(f, "height", H5T_NATIVE_INT32, 1, &h, path, st) ||
        get_num_attr(f, "width", H5T_NATIVE_INT32, 1, &w, path, st))
        return -1;
    if (h <= 0 || w <= 0 || (int64_t)h * w > (1 << 28))
        return status_set(st, "%s: invalid image size %dx%d in attributes", path, (int)w,
                          (int)h);
    ds->h = h;
    ds->w = w;
    if (get_num_attr(f, "split_seed", H5T_NATIVE_UINT64, 1, &ds->split_seed, path, st) ||
        get_num_attr(f, "split_fractions", H5T_NATIVE_DOUBLE, 3, ds->split_frac, path, st))
        return -1;
    /* Optional: data sets written before it existed were split by scene. */
    char by[16] = "scene";
    if (H5Aexists(f, "split_by") > 0 && get_str_attr(f, "split_by", by, sizeof by, path, st))
        return -1;
    if (dataset_split_by_parse(by, &ds->split_by) != 0)
        return status_set(st, "%s: attribute split_by is '%s', expected 'scene' or 'count'",
                          path, by);
    /* Optional: data sets written before it existed were all "range". */
    snprintf(ds->normalize, sizeof ds->normalize, "range");
    if (H5Aexists(f, "normalize") > 0 &&
        get_str_attr(f, "normalize", ds->normalize, sizeof ds->normalize, path, st))
        return -1;

    /* N comes from /counts; every other data set must agree with it. */
    if (H5Lexists(f, "counts", H5P_DEFAULT) <= 0)
        return status_set(st, "%s: missing data set /counts", path);
    hid_t d = H5Dopen2(f, "counts", H5P_DEFAULT);
    if (d < 0) return h5_fail(st, path, "cannot open /counts");
    hid_t s = H5Dget_space(d);
    hsize_t n = 0;
    int r = H5Sget_simple_extent_ndims(s);
    if (r == 1) H5Sget_simple_extent_dims(s, &n, NULL);
    H5Sclose(s);
    H5Dclose(d);
    if (r != 1) return status_set(st, "%s: /counts is not one-dimensional", path);
    ds->n = (int64_t)n;

    hsize_t dims[4] = {n, 1, (hsize_t)h, (hsize_t)w};
    ds->h5->images = open_checked(f, "images", 4, dims, H5T_INTEGER, path, NULL);
    if (ds->h5->images >= 0) {
        hid_t t = H5Dget_type(ds->h5->images);
        int ok = H5Tget_size(t) == 1 && H5Tget_sign(t) == H5T_SGN_NONE;
        H5Tclose(t);
        if (!ok) return status_set(st, "%s: /images integers must be uint8", path);
        ds->image_type = DATASET_U8;
    } else {
        ds->h5->images = open_checked(f, "images", 4, dims, H5T_FLOAT, path, st);
        if (ds->h5->images < 0) return -1;
        ds->image_type = DATASET_F32;
    }
    ds->h5->masks = open_checked(f, "masks", 4, dims, H5T_FLOAT, path, st);
    if (ds->h5->masks < 0) return -1;
    if (read_1d(f, "counts", ds->n, H5T_NATIVE_INT32, (void **)&ds->counts, 4, path, st) ||
        read_1d(f, "focus", ds->n, H5T_NATIVE_INT32, (void **)&ds->focus, 4, path, st) ||
        read_1d(f, "stain", ds->n, H5T_NATIVE_INT32, (void **)&ds->stain, 4, path, st) ||
        read_1d(f, "site", ds->n, H5T_NATIVE_INT32, (void **)&ds->site, 4, path, st) ||
        read_1d(f, "scene", ds->n, H5T_NATIVE_INT32, (void **)&ds->scene, 4, path, st) ||
        read_1d(f, "split", ds->n, H5T_NATIVE_UINT8, (void **)&ds->split, 1, path, st) ||
        read_1d(f, "has_mask", ds->n, H5T_NATIVE_UINT8, (void **)&ds->has_mask, 1, path, st) ||
        read_sources(ds, f, st))
        return -1;
    if (centres_h5_read(f, ds->n, ds->counts, &ds->centres, &ds->centres_k, path, st))
        return -1;
    for (int64_t i = 0; i < ds->n; i++) {
        if (ds->split[i] > DATASET_TEST)
            return status_set(st, "%s: /split[%lld] = %u is not 0, 1 or 2", path,
                              (long long)i, (unsigned)ds->split[i]);
        if (ds->counts[i] < 0)
            return status_set(st, "%s: /counts[%lld] = %d is negative", path, (long long)i,
                              (int)ds->counts[i]);
        if (ds->has_mask[i] > 1)
            return status_set(st, "%s: /has_mask[%lld] = %u is not 0 or 1", path,
                              (long long)i, (unsigned)ds->has_mask[i]);
    }
    return 0;
}

cc_dataset *dataset_open(const char *path, cc_status *st)
{
    assert(path);
    struct stat sb;
    if (stat(path, &sb) != 0) {
        status_set(st, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    cc_dataset *ds = calloc(1, sizeof *ds);
    if (ds) ds->h5 = malloc(sizeof *ds->h5);
    if (ds) ds->path = strdup(path);
    if (!ds || !ds->h5 || !ds->path) {
        status_set(st, "%s: out of memory", path);
        dataset_close(ds);
        return NULL;
    }
    ds->h5->file = ds->h5->images = ds->h5->masks = -1;
    h5_quiet q;
    h5_quiet_begin(&q);
    int rc = open_body(ds, st);
    h5_quiet_end(&q);
    if (rc != 0) {
        dataset_close(ds);
        return NULL;
    }
    return ds;
}

static int read_stack(cc_dataset *ds, hid_t d, const char *name, int64_t idx, int64_t n,
                      hid_t mt, void *out, cc_status *st)
{
    assert(ds && out && idx >= 0 && n >= 0 && idx + n <= ds->n);
    if (n == 0) return 0;
    hsize_t start[4] = {(hsize_t)idx, 0, 0, 0};
    hsize_t count[4] = {(hsize_t)n, 1, (hsize_t)ds->h, (hsize_t)ds->w};
    h5_quiet q;
    h5_quiet_begin(&q);
    hid_t fs = H5Dget_space(d), ms = H5Screate_simple(4, count, NULL);
    int rc = 0;
    if (fs < 0 || ms < 0 ||
        H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
        H5Dread(d, mt, ms, fs, H5P_DEFAULT, out) < 0)
        rc = h5_fail(st, ds->path, "cannot read /%s %lld..%lld (truncated or corrupt?)",
                     name, (long long)idx, (long long)(idx + n - 1));
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    h5_quiet_end(&q);
    return rc;
}

int dataset_read_images_raw(cc_dataset *ds, int64_t idx, int64_t n, void *out,
                            cc_status *st)
{
    return read_stack(ds, ds->h5->images, "images", idx, n,
                      ds->image_type == DATASET_U8 ? H5T_NATIVE_UINT8 : H5T_NATIVE_FLOAT,
                      out, st);
}

int dataset_read_images(cc_dataset *ds, int64_t idx, int64_t n, float *out, cc_status *st)
{
    /* HDF5 converts uint8 to float (0..255) in place; scale afterwards. */
    if (read_stack(ds, ds->h5->images, "images", idx, n, H5T_NATIVE_FLOAT, out, st) != 0)
        return -1;
    if (ds->image_type == DATASET_U8) {
        const size_t m = (size_t)n * ds->h * ds->w;
        for (size_t i = 0; i < m; i++) out[i] *= 1.0f / 255.0f;
    }
    return 0;
}

int dataset_read_masks(cc_dataset *ds, int64_t idx, int64_t n, float *out, cc_status *st)
{
    if (read_stack(ds, ds->h5->masks, "masks", idx, n, H5T_NATIVE_FLOAT, out, st) != 0)
        return -1;
    /* A mask is a foreground fraction: anything else would train silently
     * toward nonsense (a mask of -5 was accepted). */
    const size_t hw = (size_t)ds->h * ds->w;
    for (size_t i = 0; i < (size_t)n * hw; i++)
        if (!(out[i] >= 0.0f && out[i] <= 1.0f))
            return status_set(st, "%s: /masks[%lld] has the value %g at pixel %zu (masks must "
                              "lie in [0, 1])", ds->path, (long long)(idx + (int64_t)(i / hw)),
                              (double)out[i], i % hw);
    return 0;
}
