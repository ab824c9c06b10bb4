/* checkpoint.c - see checkpoint.h. */
#include "src/run/checkpoint.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "src/data/fsutil.h"
#include "src/data/h5write.h"

/* Differences shown in a refusal message before "and N more"; the room
 * keeps the tail inside CC_STATUS_MSG even with a long path in front. */
#define DIFF_SHOW 10
#define DIFF_ROOM 640


static const char *kind_name(cc_optim_kind k) { return k == OPTIM_ADAM ? "adam" : "sgd"; }

/* ---- writing --------------------------------------------------------- */

/* A store name becomes an HDF5 path: empty components ("a//b", "/a") and
 * "." would alias other names or fail half-way through the write. */
static int name_ok(const char *name)
{
    const char *s = name;
    for (;;) {
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 0 || (n == 1 && s[0] == '.')) return 0;
        if (!e) return 1;
        s = e + 1;
    }
}


/* n == 0: scalar, else a 1-D array of n. */
static int attr_put_num(hid_t obj, const char *name, hid_t ftype, hid_t mtype, hsize_t n,
                        const void *v)
{
    hid_t s = n == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, NULL), a = -1;
    int rc = -1;
    if (s >= 0 && (a = H5Acreate2(obj, name, ftype, s, H5P_DEFAULT, H5P_DEFAULT)) >= 0 &&
        H5Awrite(a, mtype, v) >= 0)
        rc = 0;
    h5_close_id(&a, H5Aclose);
    h5_close_id(&s, H5Sclose);
    return rc;
}

static int tensor_put(hid_t grp, hid_t lcpl, const cc_param *p, const float *data)
{
    hsize_t dims[CC_MAX_DIMS];
    for (int i = 0; i < p->ndim; i++) dims[i] = (hsize_t)p->shape[i];
    hid_t s = H5Screate_simple(p->ndim, dims, NULL), d = -1;
    hid_t dcpl = h5write_plist_create(H5P_DATASET_CREATE);
    int rc = -1;
    if (s >= 0 && dcpl >= 0 &&
        (d = H5Dcreate2(grp, p->name, H5T_IEEE_F32LE, s, lcpl, dcpl, H5P_DEFAULT)) >= 0 &&
        H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0)
        rc = 0;
    h5_close_id(&d, H5Dclose);
    h5_close_id(&dcpl, H5Pclose);
    h5_close_id(&s, H5Sclose);
    return rc;
}

/* One trainable-slab group under /optim (exp_avg, exp_avg_sq, momentum_buffer).
 * The group is created even when empty so a load can tell "no state" apart
 * from "no trainable parameters". */
static int slab_put(const char *path, hid_t optim, hid_t lcpl, const char *gname,
                    const cc_params *P, const float *slab, cc_status *st)
{
    hid_t gcpl = h5write_plist_create(H5P_GROUP_CREATE), g = -1;
    if (gcpl >= 0) g = H5Gcreate2(optim, gname, H5P_DEFAULT, gcpl, H5P_DEFAULT);
    h5_close_id(&gcpl, H5Pclose);
    if (g < 0) return h5_fail(st, path, "cannot create group /optim/%s", gname);
    int rc = 0;
    for (int i = 0; i < P->n && rc == 0; i++) {
        const cc_param *p = &P->p[i];
        if (p->kind != PARAM_TRAINABLE) continue;
        if (tensor_put(g, lcpl, p, slab + p->offset) != 0)
            rc = h5_fail(st, path, "cannot write /optim/%s/%s", gname, p->name);
    }
    h5_close_id(&g, H5Gclose);
    return rc;
}

static int optim_put(const char *path, hid_t file, hid_t lcpl, const cc_params *P,
                     const cc_optim *o, cc_status *st)
{
    hid_t gcpl = h5write_plist_create(H5P_GROUP_CREATE), g = -1;
    if (gcpl >= 0) g = H5Gcreate2(file, "optim", H5P_DEFAULT, gcpl, H5P_DEFAULT);
    h5_close_id(&gcpl, H5Pclose);
    if (g < 0) return h5_fail(st, path, "cannot create group /optim");
    /* float -> double is exact, so the floats come back bit for bit, and
     * h5py users see Python-float hyperparameters as in torch param_groups. */
    double lr = o->lr, betas[2] = {o->beta1, o->beta2}, eps = o->eps, mom = o->momentum,
           wd = o->weight_decay;
    int rc = 0;
    if (h5_attr_put_str(g, "kind", kind_name(o->kind)) != 0 ||
        attr_put_num(g, "lr", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 0, &lr) != 0 ||
        attr_put_num(g, "betas", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, betas) != 0 ||
        attr_put_num(g, "eps", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 0, &eps) != 0 ||
        attr_put_num(g, "momentum", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 0, &mom) != 0 ||
        attr_put_num(g, "weight_decay", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 0, &wd) != 0 ||
        attr_put_num(g, "step", H5T_STD_I64LE, H5T_NATIVE_INT64, 0, &o->step) != 0)
        rc = h5_fail(st, path, "cannot write /optim attributes");
    if (rc == 0 && o->kind == OPTIM_ADAM) {
        rc = slab_put(path, g, lcpl, "exp_avg", P, P->m, st);
        if (rc == 0) rc = slab_put(path, g, lcpl, "exp_avg_sq", P, P->v, st);
    } else if (rc == 0) {
        rc = slab_put(path, g, lcpl, "momentum_buffer", P, P->m, st);
    }
    h5_close_id(&g, H5Gclose);
    return rc;
}

/* Everything HDF5 does for a save, into the (already created) file tmp. */
static int file_put(const char *path, const char *tmp, const cc_params *P, const cc_optim *opt,
                    const ckpt_attr *attrs, int n_attrs, cc_status *st)
{
    hid_t fapl = -1, file = -1, lcpl = -1, g = -1, fcpl = -1, gcpl = -1;
    int rc = -1, version = CKPT_FORMAT_VERSION;
    /* STRONG: H5Fclose really closes the file (and reports flush errors)
     * even if some object id were still open. */
    if ((fapl = H5Pcreate(H5P_FILE_ACCESS)) < 0 ||
        H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0 ||
        (lcpl = H5Pcreate(H5P_LINK_CREATE)) < 0 ||
        H5Pset_create_intermediate_group(lcpl, 1) < 0 ||
        (fcpl = h5write_plist_create(H5P_FILE_CREATE)) < 0 ||     /* the root group */
        (gcpl = h5write_plist_create(H5P_GROUP_CREATE)) < 0) {
        h5_fail(st, path, "cannot set up HDF5 property lists");
        goto done;
    }
    if ((file = H5Fcreate(tmp, H5F_ACC_TRUNC, fcpl, fapl)) < 0) {
        h5_fail(st, path, "cannot create HDF5 file %s", tmp);
        goto done;
    }
    if (h5_attr_put_str(file, "format", CKPT_FORMAT) != 0 ||
        attr_put_num(file, "format_version", H5T_STD_I32LE, H5T_NATIVE_INT, 0, &version) != 0) {
        h5_fail(st, path, "cannot write the format attributes");
        goto done;
    }
    for (int i = 0; i < n_attrs; i++) {
        const ckpt_attr *a = &attrs[i];
        int e = a->kind == CKPT_ATTR_STRING
                    ? h5_attr_put_str(file, a->key, a->s)
                    : attr_put_num(file, a->key, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 0, &a->d);
        if (e != 0) {
            h5_fail(st, path, "cannot write root attribute '%s'", a->key);
            goto done;
        }
    }
    if ((g = H5Gcreate2(file, "params", H5P_DEFAULT, gcpl, H5P_DEFAULT)) < 0) {
        h5_fail(st, path, "cannot create group /params");
        goto done;
    }
    for (int i = 0; i < P->n; i++) {
        const cc_param *p = &P->p[i];
        const float *data = (p->kind == PARAM_TRAINABLE ? P->value : P->buf) + p->offset;
        if (tensor_put(g, lcpl, p, data) != 0) {
            h5_fail(st, path, "cannot write /params/%s", p->name);
            goto done;
        }
    }
    h5_close_id(&g, H5Gclose);
    if (opt && optim_put(path, file, lcpl, P, opt, st) != 0) goto done;
    if (h5write_reserve(file, path, tmp, st) != 0) goto done;  /* see h5write.h */
    herr_t e = H5Fclose(file);
    file = -1;
    if (e < 0) {
        h5_fail(st, path, "cannot flush and close %s", tmp);
        goto done;
    }
    h5write_release(tmp);
    rc = 0;
done:
    if (file >= 0) h5write_discard(file);   /* failed: closing must not fail too */
    h5_close_id(&g, H5Gclose);
    h5_close_id(&file, H5Fclose);
    h5_close_id(&gcpl, H5Pclose);
    h5_close_id(&fcpl, H5Pclose);
    h5_close_id(&lcpl, H5Pclose);
    h5_close_id(&fapl, H5Pclose);
    return rc;
}

/* The rename is only atomic after a crash if the data reached the disk
 * first; fsync also surfaces write errors (ENOSPC, EIO) that a buffered
 * close can hide. */
static int file_sync(const char *path, const char *tmp, cc_status *st)
{
    int fd = open(tmp, O_RDWR | O_CLOEXEC);
    if (fd < 0) return status_set(st, "%s: cannot reopen %s: %s", path, tmp, strerror(errno));
    int rc = 0;
    if (fsync(fd) != 0) rc = status_set(st, "%s: cannot sync %s: %s", path, tmp, strerror(errno));
    if (close(fd) != 0 && rc == 0)
        rc = status_set(st, "%s: cannot close %s: %s", path, tmp, strerror(errno));
    return rc;
}

/* Best effort: make the rename itself durable. */
static void dir_sync(const char *path)
{
    char *copy = strdup(path);
    if (!copy) return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(copy);
}

int checkpoint_save(const char *path, const cc_params *P, const cc_optim *opt,
                    const ckpt_attr *attrs, int n_attrs, cc_status *st)
{
    assert(path && P && P->finalized && n_attrs >= 0 && (n_attrs == 0 || attrs));
    for (int i = 0; i < P->n; i++)
        if (!name_ok(P->p[i].name))
            return status_set(st, "%s: parameter name '%s' is not a valid HDF5 path "
                              "(empty or '.' component)", path, P->p[i].name);
    for (int i = 0; i < n_attrs; i++) {
        const char *k = attrs[i].key;
        if (!k || !k[0] || !strcmp(k, "format") || !strcmp(k, "format_version"))
            return status_set(st, "%s: attribute key '%s' is empty or reserved", path, k ? k : "");
        if (attrs[i].kind == CKPT_ATTR_STRING && !attrs[i].s)
            return status_set(st, "%s: attribute '%s' has no string value", path, k);
        for (int j = 0; j < i; j++)
            if (!strcmp(attrs[j].key, k))
                return status_set(st, "%s: attribute '%s' given twice", path, k);
    }
    fs_atomic aw;
    if (fs_atomic_begin(&aw, path, st) != 0) return -1;
    const char *tmp = aw.tmp;
    /* Create it ourselves first: open(2)'s errno ("Permission denied", "No
     * such file or directory") is a clearer message than HDF5's. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) {
        status_set(st, "%s: cannot create temporary file %s: %s", path, tmp, strerror(errno));
        fs_atomic_abort(&aw);
        return -1;
    }
    close(fd);
    h5_quiet q;
    h5_quiet_begin(&q);
    int rc = file_put(path, tmp, P, opt, attrs, n_attrs, st);
    h5_quiet_end(&q);
    if (rc == 0) rc = file_sync(path, tmp, st);
    if (rc == 0 && fs_atomic_commit(&aw, st) != 0) rc = -1;
    if (rc != 0)
        fs_atomic_abort(&aw);
    else
        dir_sync(aw.target);
    return rc;
}

/* ---- reading: files and attributes ---------------------------------- */

static hid_t file_open(const char *path, cc_status *st)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        status_set(st, "%s: cannot open checkpoint: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(sb.st_mode)) {
        status_set(st, "%s: not a regular file", path);
        return -1;
    }
    htri_t is = H5Fis_hdf5(path);
    if (is == 0) {
        status_set(st, "%s: not an HDF5 file (corrupt, or another format)", path);
        return -1;
    }
    if (is < 0) {
        h5_fail(st, path, "cannot read checkpoint");
        return -1;
    }
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), f = -1;
    if (fapl < 0 || H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0)
        h5_fail(st, path, "cannot set up HDF5 property lists");
    else if ((f = H5Fopen(path, H5F_ACC_RDONLY, fapl)) < 0)
        h5_fail(st, path, "cannot open checkpoint (truncated or corrupt HDF5 file)");
    h5_close_id(&fapl, H5Pclose);
    return f;
}

/* Attribute readers: 0 read, 1 absent (st untouched), -1 error.  where
 * names the object in messages ("root", "/optim"). */
static int attr_get_str(hid_t obj, const char *where, const char *key, char *buf, size_t len,
                        const char *path, cc_status *st)
{
    assert(len > 0);
    return h5_attr_get_str(obj, path, where, key, buf, len, st);
}

/* n numbers converted to mtype (H5T_NATIVE_DOUBLE or H5T_NATIVE_INT64; the
 * latter only from an integer attribute, so a step count is never a
 * rounded float). */
static int attr_get_num(hid_t obj, const char *where, const char *key, hid_t mtype, int n,
                        void *out, const char *path, cc_status *st)
{
    htri_t ex = H5Aexists(obj, key);
    if (ex < 0) return h5_fail(st, path, "cannot look up %s attribute '%s'", where, key);
    if (ex == 0) return 1;
    hid_t a = H5Aopen(obj, key, H5P_DEFAULT), t = -1, s = -1;
    int rc = -1;
    if (a < 0 || (t = H5Aget_type(a)) < 0 || (s = H5Aget_space(a)) < 0) {
        h5_fail(st, path, "cannot open %s attribute '%s'", where, key);
        goto done;
    }
    H5T_class_t c = H5Tget_class(t);
    int want_int = H5Tequal(mtype, H5T_NATIVE_INT64) > 0;
    if (!(c == H5T_INTEGER || (c == H5T_FLOAT && !want_int)) ||
        H5Sget_simple_extent_npoints(s) != n) {
        status_set(st, "%s: %s attribute '%s' is not %s%s", path, where, key,
                   n == 1 ? "a" : "an array of", want_int ? " integer" : " number");
        goto done;
    }
    if (H5Aread(a, mtype, out) < 0) {
        h5_fail(st, path, "cannot read %s attribute '%s'", where, key);
        goto done;
    }
    rc = 0;
done:
    h5_close_id(&s, H5Sclose);
    h5_close_id(&t, H5Tclose);
    h5_close_id(&a, H5Aclose);
    return rc;
}

/* One root attribute as a string (buf != NULL) or a double. */
static int root_attr_get(const char *path, const char *key, char *buf, size_t len, double *out,
                         cc_status *st)
{
    h5_quiet q;
    h5_quiet_begin(&q);
    hid_t f = file_open(path, st);
    double v = 0;
    int rc = f < 0 ? -1
             : buf ? attr_get_str(f, "root", key, buf, len, path, st)
                   : attr_get_num(f, "root", key, H5T_NATIVE_DOUBLE, 1, &v, path, st);
    if (rc == 0 && !buf) *out = v;
    h5_close_id(&f, H5Fclose);
    h5_quiet_end(&q);
    return rc;
}

int checkpoint_read_attr_string(const char *path, const char *key, char *buf, size_t len,
                                cc_status *st)
{
    assert(path && key && buf && len > 0);
    buf[0] = '\0';
    return root_attr_get(path, key, buf, len, NULL, st);
}

int checkpoint_read_attr_double(const char *path, const char *key, double *out, cc_status *st)
{
    assert(path && key && out);
    return root_attr_get(path, key, NULL, 0, out, st);
}

/* ---- reading: dataset inventory ------------------------------------- */

typedef struct ck_entry {
    char *name;             /* relative to the visited group */
    int ndim;               /* -1: not a simple dataspace */
    hsize_t dims[H5S_MAX_RANK];
    int is_f32;
    char dtype[16];
    int used;
} ck_entry;

typedef struct ck_list {
    ck_entry *e;
    int n, cap;
    int failed;             /* an HDF5 call failed during the visit */
} ck_list;

static void list_free(ck_list *L)
{
    for (int i = 0; i < L->n; i++) free(L->e[i].name);
    free(L->e);
    memset(L, 0, sizeof *L);
}

static void dtype_describe(hid_t t, char *out, size_t len, int *is_f32)
{
    H5T_class_t c = H5Tget_class(t);
    size_t bits = H5Tget_size(t) * 8;
    *is_f32 = c == H5T_FLOAT && bits == 32;
    if (c == H5T_FLOAT)
        snprintf(out, len, "float%zu", bits);
    else if (c == H5T_INTEGER)
        snprintf(out, len, "%sint%zu", H5Tget_sign(t) == H5T_SGN_NONE ? "u" : "", bits);
    else if (c == H5T_STRING)
        snprintf(out, len, "string");
    else
        snprintf(out, len, "other");
}

/* H5Lvisit callback: record every dataset reached through a hard link
 * (soft and external links are not followed: a checkpoint is self-contained). */
static herr_t visit_cb(hid_t grp, const char *name, const H5L_info_t *info, void *ud)
{
    ck_list *L = ud;
    if (info->type != H5L_TYPE_HARD) return 0;
    hid_t o = H5Oopen(grp, name, H5P_DEFAULT);
    if (o < 0) {
        L->failed = 1;
        return -1;
    }
    herr_t rc = 0;
    if (H5Iget_type(o) == H5I_DATASET) {
        if (L->n == L->cap) {
            int cap = L->cap ? 2 * L->cap : 64;
            ck_entry *ne = realloc(L->e, sizeof *ne * (size_t)cap);
            if (!ne) {
                H5Oclose(o);
                return -1;
            }
            L->e = ne;
            L->cap = cap;
        }
        ck_entry *e = &L->e[L->n];
        memset(e, 0, sizeof *e);
        hid_t s = H5Dget_space(o), t = H5Dget_type(o);
        if (s < 0 || t < 0 || !(e->name = strdup(name))) {
            free(e->name);
            L->failed = s < 0 || t < 0;
            rc = -1;
        } else {
            e->ndim = H5Sget_simple_extent_type(s) == H5S_SIMPLE
                          ? H5Sget_simple_extent_dims(s, e->dims, NULL)
                          : (H5Sget_simple_extent_type(s) == H5S_SCALAR ? 0 : -1);
            dtype_describe(t, e->dtype, sizeof e->dtype, &e->is_f32);
            L->n++;
        }
        if (t >= 0) H5Tclose(t);
        if (s >= 0) H5Sclose(s);
    }
    H5Oclose(o);
    return rc;
}

/* Every dataset under group g (names relative to g), in visit order. */
static int list_collect(hid_t g, ck_list *L, const char *path, cc_status *st)
{
    if (H5Lvisit(g, H5_INDEX_NAME, H5_ITER_INC, visit_cb, L) >= 0) return 0;
    return L->failed ? h5_fail(st, path, "cannot read the list of datasets")
                     : status_set(st, "%s: out of memory", path);
}

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const ck_entry *)a)->name, ((const ck_entry *)b)->name);
}

static ck_entry *list_find(ck_list *L, const char *name)
{
    ck_entry key = {.name = (char *)name};
    return L->n ? bsearch(&key, L->e, (size_t)L->n, sizeof *L->e, entry_cmp) : NULL;
}

static void shape_str(char *out, size_t len, int ndim, const hsize_t *dims)
{
    if (ndim <= 0) {
        snprintf(out, len, "%s", ndim ? "null" : "scalar");
        return;
    }
    size_t k = 0;
    out[0] = '\0';
    for (int i = 0; i < ndim && k < len; i++)
        k += (size_t)snprintf(out + k, len - k, i ? "x%llu" : "%llu", (unsigned long long)dims[i]);
}

/* ---- reading: comparison against the model --------------------------- */

typedef struct ck_diffs {
    int n, shown, full;
    size_t len;
    char text[DIFF_ROOM];
} ck_diffs;

static void diff_add(ck_diffs *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void diff_add(ck_diffs *d, const char *fmt, ...)
{
    d->n++;
    if (d->full || d->shown >= DIFF_SHOW) return;
    char item[CC_PARAM_NAME + 160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(item, sizeof item, fmt, ap);
    va_end(ap);
    size_t li = strlen(item), sep = d->len ? 2 : 0;
    if (d->len + sep + li + 1 > sizeof d->text) {
        d->full = 1;    /* keep the shown items in order: no later short one */
        return;
    }
    memcpy(d->text + d->len, "; ", sep);
    memcpy(d->text + d->len + sep, item, li + 1);
    d->len += sep + li;
    d->shown++;
}

static int diffs_fail(const ck_diffs *d, const char *path, cc_status *st)
{
    char more[48] = "";
    if (d->n > d->shown) snprintf(more, sizeof more, "%sand %d more", d->shown ? "; " : "",
                                  d->n - d->shown);
    return status_set(st, "%s: checkpoint does not match the model (%d difference%s): %s%s",
                      path, d->n, d->n == 1 ? "" : "s", d->text, more);
}

/* Match the datasets of L (names relative to the group `prefix`) one to
 * one with P's tensors (trainables only if trainable_only), recording
 * every difference. */
static void list_match(ck_list *L, const cc_params *P, int trainable_only, const char *prefix,
                       ck_diffs *d)
{
    if (L->n > 1) qsort(L->e, (size_t)L->n, sizeof *L->e, entry_cmp);   /* e may be NULL */
    for (int i = 0; i < P->n; i++) {
        const cc_param *p = &P->p[i];
        if (trainable_only && p->kind != PARAM_TRAINABLE) continue;
        ck_entry *e = list_find(L, p->name);
        if (!e) {
            diff_add(d, "missing %s%s", prefix, p->name);
            continue;
        }
        e->used = 1;
        int same = e->ndim == p->ndim;
        for (int k = 0; same && k < p->ndim; k++) same = e->dims[k] == (hsize_t)p->shape[k];
        if (!same) {
            hsize_t md[CC_MAX_DIMS];
            for (int k = 0; k < p->ndim; k++) md[k] = (hsize_t)p->shape[k];
            char fs[96], ms[96];
            shape_str(fs, sizeof fs, e->ndim, e->dims);
            shape_str(ms, sizeof ms, p->ndim, md);
            diff_add(d, "%s%s: file %s, model %s", prefix, p->name, fs, ms);
        } else if (!e->is_f32) {
            diff_add(d, "%s%s: file %s, model float32", prefix, p->name, e->dtype);
        }
    }
    for (int i = 0; i < L->n; i++)
        if (!L->e[i].used) diff_add(d, "unexpected %s%s", prefix, L->e[i].name);
}

/* ---- checkpoint_load ------------------------------------------------- */

/* Optimizer state groups of a kind: Adam's moments go to m and v. */
static const char *const ADAM_GROUPS[] = {"exp_avg", "exp_avg_sq"};
static const char *const SGD_GROUPS[] = {"momentum_buffer"};

typedef struct ck_load {
    const char *path;
    hid_t file, params, optim, og[2];   /* og: the optimizer's state groups */
    ck_list lp, lo[2];
    float *val, *buf, *mom[2];
    cc_optim o;
} ck_load;

static int check_format(ck_load *c, cc_status *st)
{
    char fmt[64];
    int r = attr_get_str(c->file, "root", "format", fmt, sizeof fmt, c->path, st);
    if (r < 0) return -1;
    if (r == 1 || strcmp(fmt, CKPT_FORMAT))
        return status_set(st, "%s: not a cellcount checkpoint (format attribute %s%s%s)", c->path,
                          r == 1 ? "missing" : "'", r == 1 ? "" : fmt, r == 1 ? "" : "'");
    int64_t v = 0;
    r = attr_get_num(c->file, "root", "format_version", H5T_NATIVE_INT64, 1, &v, c->path, st);
    if (r < 0) return -1;
    if (r == 1) return status_set(st, "%s: checkpoint has no format_version attribute", c->path);
    if (v != CKPT_FORMAT_VERSION)
        return status_set(st, "%s: checkpoint format_version %lld, this build reads version %d%s",
                          c->path, (long long)v, CKPT_FORMAT_VERSION,
                          v > CKPT_FORMAT_VERSION ? " (written by a newer cellcount)" : "");
    return 0;
}

/* /optim attributes into c->o (kind already checked). */
static int optim_attrs_get(ck_load *c, cc_optim_kind kind, cc_status *st)
{
    /* v: lr, eps, momentum, weight_decay, beta1, beta2 */
    static const char *const names[] = {"lr", "eps", "momentum", "weight_decay", "betas", "step"};
    double v[6];
    int64_t step;
    for (int i = 0; i < 6; i++) {
        int r = i == 5 ? attr_get_num(c->optim, "/optim", names[i], H5T_NATIVE_INT64, 1, &step,
                                      c->path, st)
                       : attr_get_num(c->optim, "/optim", names[i], H5T_NATIVE_DOUBLE,
                                      i == 4 ? 2 : 1, &v[i], c->path, st);
        if (r < 0) return -1;
        if (r == 1) return status_set(st, "%s: /optim has no '%s' attribute", c->path, names[i]);
    }
    memset(&c->o, 0, sizeof c->o);
    c->o.kind = kind;
    c->o.lr = (float)v[0];
    c->o.eps = (float)v[1];
    c->o.momentum = (float)v[2];
    c->o.weight_decay = (float)v[3];
    c->o.beta1 = (float)v[4];
    c->o.beta2 = (float)v[5];
    c->o.step = step;
    return 0;
}

static int tensor_get(ck_load *c, hid_t grp, const char *gname, const cc_param *p, float *dst,
                      cc_status *st)
{
    hid_t d = H5Dopen2(grp, p->name, H5P_DEFAULT);
    if (d < 0 || H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0) {
        h5_fail(st, c->path, "cannot read %s/%s", gname, p->name);
        h5_close_id(&d, H5Dclose);
        return -1;
    }
    H5Dclose(d);
    return 0;
}

/* A model read from a file is checked before anyone counts with it: a NaN
 * weight or a negative BN running variance gave a plausible count with
 * exit status 0.  nonneg: the tensor is a variance (or Adam's second
 * moment). */
static int tensor_check(const char *path, const char *gname, const char *name, const float *v,
                        size_t n, int nonneg, cc_status *st)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]) || (nonneg && v[i] < 0))
            return status_set(st, "%s: %s/%s[%zu] is %g (%s): the checkpoint is damaged", path,
                              gname, name, i, (double)v[i],
                              isfinite(v[i]) ? "a negative variance" : "not finite");
    return 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static float *stage_alloc(size_t n) { return malloc(sizeof(float) * (n ? n : 1)); }

/* Validate everything, then read into staging buffers; P is not touched. */
static int load_stage(ck_load *c, const cc_params *P, const cc_optim *opt, cc_status *st)
{
    const char *path = c->path;
    if ((c->file = file_open(path, st)) < 0 || check_format(c, st) != 0) return -1;
    htri_t ex = H5Lexists(c->file, "params", H5P_DEFAULT);
    if (ex <= 0) return ex < 0 ? h5_fail(st, path, "cannot look up /params")
                               : status_set(st, "%s: checkpoint has no /params group", path);
    if ((c->params = H5Gopen2(c->file, "params", H5P_DEFAULT)) < 0)
        return h5_fail(st, path, "cannot open /params");
    if (list_collect(c->params, &c->lp, path, st) != 0) return -1;
    int ng = 0;
    const char *const *groups = NULL;
    ck_diffs d = {0};
    list_match(&c->lp, P, 0, "", &d);
    /* The optimizer's datasets mirror /params: listing their differences
     * too would only triple the message of an architecture mismatch. */
    if (d.n) return diffs_fail(&d, path, st);
    if (opt) {
        ex = H5Lexists(c->file, "optim", H5P_DEFAULT);
        if (ex < 0) return h5_fail(st, path, "cannot look up /optim");
        if (ex == 0)
            return status_set(st, "%s: checkpoint has no optimizer state (/optim); it was saved "
                              "without one, load it without an optimizer", path);
        if ((c->optim = H5Gopen2(c->file, "optim", H5P_DEFAULT)) < 0)
            return h5_fail(st, path, "cannot open /optim");
        char kind[16];
        int r = attr_get_str(c->optim, "/optim", "kind", kind, sizeof kind, path, st);
        if (r < 0) return -1;
        if (r == 1) return status_set(st, "%s: /optim has no 'kind' attribute", path);
        if (strcmp(kind, kind_name(opt->kind)))
            return status_set(st, "%s: checkpoint holds '%s' optimizer state, the optimizer to "
                              "restore is %s", path, kind, kind_name(opt->kind));
        groups = opt->kind == OPTIM_ADAM ? ADAM_GROUPS : SGD_GROUPS;
        ng = opt->kind == OPTIM_ADAM ? 2 : 1;
        for (int k = 0; k < ng; k++) {
            char prefix[64];
            snprintf(prefix, sizeof prefix, "optim/%s/", groups[k]);
            ex = H5Lexists(c->optim, groups[k], H5P_DEFAULT);
            if (ex < 0) return h5_fail(st, path, "cannot look up /optim/%s", groups[k]);
            if (ex == 0) {
                diff_add(&d, "missing group /optim/%s", groups[k]);
                continue;
            }
            if ((c->og[k] = H5Gopen2(c->optim, groups[k], H5P_DEFAULT)) < 0)
                return h5_fail(st, path, "cannot open /optim/%s", groups[k]);
            if (list_collect(c->og[k], &c->lo[k], path, st) != 0) return -1;
            list_match(&c->lo[k], P, 1, prefix, &d);
        }
        if (d.n) return diffs_fail(&d, path, st);
        if (optim_attrs_get(c, opt->kind, st) != 0) return -1;
    }
    /* Staging copies: a read error half-way (a corrupt chunk) must leave
     * the model as it was. */
    if (!(c->val = stage_alloc(P->n_train)) || !(c->buf = stage_alloc(P->n_buf)))
        return status_set(st, "%s: out of memory", path);
    for (int k = 0; k < ng; k++)
        if (!(c->mom[k] = stage_alloc(P->n_train)))
            return status_set(st, "%s: out of memory", path);
    for (int i = 0; i < P->n; i++) {
        const cc_param *p = &P->p[i];
        float *dst = (p->kind == PARAM_TRAINABLE ? c->val : c->buf) + p->offset;
        if (tensor_get(c, c->params, "/params", p, dst, st) != 0 ||
            tensor_check(path, "/params", p->name, dst, p->numel,
                         ends_with(p->name, "running_var"), st) != 0)
            return -1;
        if (p->kind != PARAM_TRAINABLE) continue;
        for (int k = 0; k < ng; k++) {
            char gname[64];
            snprintf(gname, sizeof gname, "/optim/%s", groups[k]);
            if (tensor_get(c, c->og[k], gname, p, c->mom[k] + p->offset, st) != 0 ||
                tensor_check(path, gname, p->name, c->mom[k] + p->offset, p->numel,
                             !strcmp(groups[k], "exp_avg_sq"), st) != 0)
                return -1;
        }
    }
    return 0;
}

int checkpoint_load(const char *path, cc_params *P, cc_optim *opt, cc_status *st)
{
    assert(path && P && P->finalized);
    ck_load c = {.path = path, .file = -1, .params = -1, .optim = -1, .og = {-1, -1}};
    h5_quiet q;
    h5_quiet_begin(&q);
    int rc = load_stage(&c, P, opt, st);
    h5_close_id(&c.og[0], H5Gclose);
    h5_close_id(&c.og[1], H5Gclose);
    h5_close_id(&c.params, H5Gclose);
    h5_close_id(&c.optim, H5Gclose);
    h5_close_id(&c.file, H5Fclose);
    h5_quiet_end(&q);
    if (rc == 0) {
        /* Per tensor, so the slabs' alignment padding keeps its zeros. */
        for (int i = 0; i < P->n; i++) {
            const cc_param *p = &P->p[i];
            size_t o = p->offset, nb = sizeof(float) * p->numel;
            if (p->kind != PARAM_TRAINABLE) {
                memcpy(P->buf + o, c.buf + o, nb);
                continue;
            }
            memcpy(P->value + o, c.val + o, nb);
            if (opt) memcpy(P->m + o, c.mom[0] + o, nb);
            if (opt && opt->kind == OPTIM_ADAM) memcpy(P->v + o, c.mom[1] + o, nb);
        }
        if (opt) *opt = c.o;
    }
    list_free(&c.lp);
    for (int k = 0; k < 2; k++) {
        list_free(&c.lo[k]);
        free(c.mom[k]);
    }
    free(c.val);
    free(c.buf);
    return rc;
}

/* ---- checkpoint_list ------------------------------------------------- */

int checkpoint_list(const char *path, FILE *out, cc_status *st)
{
    assert(path && out);
    h5_quiet q;
    h5_quiet_begin(&q);
    ck_list L = {0};
    hid_t f = file_open(path, st);
    int rc = f < 0 ? -1 : list_collect(f, &L, path, st);
    h5_close_id(&f, H5Fclose);
    h5_quiet_end(&q);
    for (int i = 0; rc == 0 && i < L.n; i++) {
        char shape[H5S_MAX_RANK * 21 + 8];
        shape_str(shape, sizeof shape, L.e[i].ndim, L.e[i].dims);
        fprintf(out, "/%s\t%s\t%s\n", L.e[i].name, shape, L.e[i].dtype);
    }
    if (rc == 0 && ferror(out)) rc = status_set(st, "%s: cannot write the listing", path);
    list_free(&L);
    return rc;
}
