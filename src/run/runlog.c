/* runlog.c - see runlog.h. */
#include "config.h"
#include "src/run/runlog.h"

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tiffio.h>
#include <time.h>
#include <unistd.h>

#include "autodiff/isa.h"
#include "src/data/fsutil.h"
#include "src/data/h5write.h"

static const char *isa_name(dnnl_cpu_isa_t isa)
{
    switch (isa) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "other";
    }
}

/* arr (n entries of elem bytes used, room for *cap) with room for one
 * more: arr itself, or a larger copy (*cap updated), or NULL (arr intact). */
static void *grow_array(void *arr, int n, int *cap, size_t elem)
{
    if (n < *cap) return arr;
    const int c = *cap ? 2 * *cap : 16;
    void *p = realloc(arr, elem * (size_t)c);
    if (p) *cap = c;
    return p;
}

int runlog_set_attr(runlog *rl, const char *key, const char *value, cc_status *st)
{
    for (int i = 0; i < rl->nattrs; i++)
        if (!strcmp(rl->attrs[i]->key, key)) {
            snprintf(rl->attrs[i]->value, sizeof rl->attrs[i]->value, "%s", value);
            return 0;
        }
    if (rl->nattrs == RUNLOG_MAX_ATTRS)
        return status_set(st, "%s: cannot add attribute '%s': the run file already holds %d, "
                              "the most it may", rl->path, key, RUNLOG_MAX_ATTRS);
    if (strlen(key) >= RUNLOG_NAME)
        return status_set(st, "%s: attribute name '%s' is longer than %d characters", rl->path,
                          key, RUNLOG_NAME - 1);
    runlog_attr *a = malloc(sizeof *a),
                **arr = grow_array(rl->attrs, rl->nattrs, &rl->attrs_cap, sizeof *rl->attrs);
    if (arr) rl->attrs = arr;
    if (!a || !arr) {
        free(a);
        return status_set(st, "%s: out of memory", rl->path);
    }
    strcpy(a->key, key);
    snprintf(a->value, sizeof a->value, "%s", value);
    rl->attrs[rl->nattrs++] = a;
    return 0;
}

const char *runlog_attr_get(const runlog *rl, const char *key)
{
    for (int i = 0; i < rl->nattrs; i++)
        if (!strcmp(rl->attrs[i]->key, key)) return rl->attrs[i]->value;
    return NULL;
}

int runlog_create(runlog *rl, const char *path, const cc_config *cfg, cc_status *st)
{
    memset(rl, 0, sizeof *rl);
    if (strlen(path) >= sizeof rl->path) return status_set(st, "%s: path too long", path);
    strcpy(rl->path, path);
    char buf[256], name[RUNLOG_NAME - 8], value[CFG_STR + 8];
    const dnnl_version_t *dv = dnnl_version();
    unsigned hmaj, hmin, hrel;
    H5get_libversion(&hmaj, &hmin, &hrel);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    int r = runlog_set_attr(rl, "format", "cellcount-run", st);
    r |= runlog_set_attr(rl, "format_version", "1", st);
    r |= runlog_set_attr(rl, "start_time", buf, st);
    r |= runlog_set_attr(rl, "cellcount_version", PACKAGE_VERSION, st);
    r |= runlog_set_attr(rl, "commit", CC_GIT_COMMIT, st);
    snprintf(buf, sizeof buf, "%d.%d.%d (%s)", dv->major, dv->minor, dv->patch, dv->hash);
    r |= runlog_set_attr(rl, "onednn_version", buf, st);
    snprintf(buf, sizeof buf, "%u.%u.%u", hmaj, hmin, hrel);
    r |= runlog_set_attr(rl, "hdf5_version", buf, st);
    snprintf(buf, sizeof buf, "%.200s", TIFFGetVersion());
    for (char *p = buf; *p; p++)
        if (*p == '\n') *p = ' ';
    r |= runlog_set_attr(rl, "libtiff_version", buf, st);
    snprintf(buf, sizeof buf, "%d", cfg->threads > 0 ? cfg->threads : omp_get_max_threads());
    r |= runlog_set_attr(rl, "threads", buf, st);
    r |= runlog_set_attr(rl, "cpu_isa", isa_name(dnnl_get_effective_cpu_isa()), st);
    cc_isa kisa;    /* variant of the engine's own kernels (autodiff/isa.h) */
    cc_status kst;
    r |= runlog_set_attr(rl, "kernel_isa",
                         isa_choose(&kisa, &kst) ? "invalid CELLCOUNT_MAX_ISA" : isa_variant_name(kisa), st);
    /* compute precision of conv / linear (session_open refuses what the CPU cannot run) */
    r |= runlog_set_attr(rl, "precision", cfg_precision_names[cfg->precision], st);
    if (gethostname(buf, sizeof buf) == 0) {
        buf[sizeof buf - 1] = '\0';
        r |= runlog_set_attr(rl, "host", buf, st);
    }
    for (int i = 0; config_key(cfg, i, name, sizeof name, value, sizeof value); i++) {
        char key[RUNLOG_NAME];
        snprintf(key, sizeof key, "config.%s", name);
        r |= runlog_set_attr(rl, key, value, st);
    }
    if (r) runlog_free(rl);
    return r ? -1 : 0;
}

void runlog_free(runlog *rl)
{
    for (int i = 0; i < rl->ntables; i++) {
        free(rl->tables[i]->values);
        free(rl->tables[i]->labels);
        free(rl->tables[i]);
    }
    for (int i = 0; i < rl->nattrs; i++) free(rl->attrs[i]);
    free(rl->tables);
    free(rl->attrs);
    memset(rl, 0, sizeof *rl);
}

runlog_table *runlog_table_find(runlog *rl, const char *name)
{
    for (int i = 0; i < rl->ntables; i++)
        if (!strcmp(rl->tables[i]->name, name)) return rl->tables[i];
    return NULL;
}

int runlog_col(const runlog_table *t, const char *col)
{
    for (int i = 0; i < t->ncols; i++)
        if (!strcmp(t->cols[i], col)) return i;
    return -1;
}

runlog_table *runlog_table_get(runlog *rl, const char *name, int ncols, const char *const *cols,
                               cc_status *st)
{
    runlog_table *t = runlog_table_find(rl, name);
    if (t) {
        int same = t->ncols == ncols;
        for (int i = 0; same && i < ncols; i++) same = !strcmp(t->cols[i], cols[i]);
        if (!same) {
            status_set(st, "%s: table '%s' exists with other columns", rl->path, name);
            return NULL;
        }
        return t;
    }
    if (rl->ntables == RUNLOG_MAX_TABLES) {
        status_set(st, "%s: cannot add table '%s': the run file already holds %d tables, the most "
                       "it may", rl->path, name, RUNLOG_MAX_TABLES);
        return NULL;
    }
    if (ncols > RUNLOG_MAX_COLS || strlen(name) >= RUNLOG_NAME) {
        status_set(st, "%s: cannot add table '%s': %s", rl->path, name,
                   ncols > RUNLOG_MAX_COLS ? "more than 32 columns" : "name of 64 characters or more");
        return NULL;
    }
    t = calloc(1, sizeof *t);
    runlog_table **arr =
        grow_array(rl->tables, rl->ntables, &rl->tables_cap, sizeof *rl->tables);
    if (arr) rl->tables = arr;
    if (!t || !arr) {
        free(t);
        status_set(st, "%s: out of memory", rl->path);
        return NULL;
    }
    rl->tables[rl->ntables++] = t;
    strcpy(t->name, name);
    t->ncols = ncols;
    for (int i = 0; i < ncols; i++) snprintf(t->cols[i], RUNLOG_NAME, "%s", cols[i]);
    return t;
}

runlog_table *runlog_table_fresh(runlog *rl, const char *name, int ncols, const char *const *cols,
                                 cc_status *st)
{
    runlog_table *t = runlog_table_find(rl, name);
    if (t && ncols <= RUNLOG_MAX_COLS) {
        free(t->values);
        free(t->labels);
        memset(t, 0, sizeof *t);
        strcpy(t->name, name);
        t->ncols = ncols;
        for (int i = 0; i < ncols; i++) snprintf(t->cols[i], RUNLOG_NAME, "%s", cols[i]);
        return t;
    }
    return runlog_table_get(rl, name, ncols, cols, st);
}

int runlog_append(runlog_table *t, const char *label, const double *values, cc_status *st)
{
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 64;
        /* At least one slot per row: a table of labels only (0 columns)
         * would otherwise call realloc(p, 0), which frees p and returns
         * NULL, leaving t->values dangling (a fuzzer finding). */
        size_t width = t->ncols > 0 ? (size_t)t->ncols : 1;
        double *v = realloc(t->values, sizeof(double) * cap * width);
        if (!v) return status_set(st, "run log: out of memory");
        t->values = v;
        char(*l)[RUNLOG_NAME] = realloc(t->labels, sizeof *l * cap);
        if (!l) return status_set(st, "run log: out of memory");
        t->labels = l;
        t->cap = cap;
    }
    if (t->ncols)
        memcpy(t->values + t->nrows * (size_t)t->ncols, values,
               sizeof(double) * (size_t)t->ncols);
    snprintf(t->labels[t->nrows], RUNLOG_NAME, "%s", label ? label : "");
    t->nrows++;
    return 0;
}

void runlog_truncate(runlog_table *t, const char *col, double limit)
{
    int c = runlog_col(t, col);
    if (c < 0) return;
    size_t w = 0;
    for (size_t r = 0; r < t->nrows; r++) {
        if (t->values[r * (size_t)t->ncols + (size_t)c] > limit) continue;
        if (w != r) {
            memmove(t->values + w * (size_t)t->ncols, t->values + r * (size_t)t->ncols,
                    sizeof(double) * (size_t)t->ncols);
            memcpy(t->labels[w], t->labels[r], RUNLOG_NAME);
        }
        w++;
    }
    t->nrows = w;
}


/* ---- HDF5 ---- */

static int write_string_attr(hid_t obj, const char *key, const char *value)
{
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, strlen(value) + 1);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, key, type, space, H5P_DEFAULT, H5P_DEFAULT);
    herr_t e = a < 0 ? -1 : H5Awrite(a, type, value);
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    H5Tclose(type);
    return e < 0 ? -1 : 0;
}

static int write_table(hid_t file, const runlog_table *t)
{
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE), g = -1;
    hid_t gcpl = h5write_plist_create(H5P_GROUP_CREATE);    /* reproducible bytes */
    hid_t dcpl = h5write_plist_create(H5P_DATASET_CREATE);
    if (lcpl >= 0 && gcpl >= 0 && dcpl >= 0 && H5Pset_create_intermediate_group(lcpl, 1) >= 0)
        g = H5Gcreate2(file, t->name, lcpl, gcpl, H5P_DEFAULT);
    if (lcpl >= 0) H5Pclose(lcpl);
    if (gcpl >= 0) H5Pclose(gcpl);
    if (g < 0) {
        if (dcpl >= 0) H5Pclose(dcpl);
        return -1;
    }
    int err = 0;
    hsize_t n = t->nrows;
    hid_t space = H5Screate_simple(1, &n, NULL);
    double *col = malloc(sizeof(double) * (t->nrows ? t->nrows : 1));
    for (int c = 0; c < t->ncols && col; c++) {
        for (size_t r = 0; r < t->nrows; r++) col[r] = t->values[r * (size_t)t->ncols + (size_t)c];
        hid_t d = H5Dcreate2(g, t->cols[c], H5T_IEEE_F64LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        if (d < 0 || (n && H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, col) < 0))
            err = -1;
        if (d >= 0) H5Dclose(d);
    }
    if (!col) err = -1;
    free(col);
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, RUNLOG_NAME);
    hid_t d = H5Dcreate2(g, "label", st, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (d < 0 || (n && H5Dwrite(d, st, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->labels) < 0)) err = -1;
    if (d >= 0) H5Dclose(d);
    /* Column order is part of the table: keep it as an attribute. */
    char order[RUNLOG_MAX_COLS * RUNLOG_NAME] = "";
    for (int c = 0; c < t->ncols; c++) {
        if (c) strcat(order, ",");
        strcat(order, t->cols[c]);
    }
    if (write_string_attr(g, "columns", order)) err = -1;
    H5Tclose(st);
    H5Sclose(space);
    H5Pclose(dcpl);
    H5Gclose(g);
    return err;
}

int runlog_flush(const runlog *rl, cc_status *st)
{
    fs_atomic aw;
    if (fs_atomic_begin(&aw, rl->path, st) != 0) return -1;
    const char *tmp = aw.tmp;
    H5E_auto2_t old_fn;
    void *old_data;
    H5Eget_auto2(H5E_DEFAULT, &old_fn, &old_data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    int err = 0;
    hid_t fcpl = h5write_plist_create(H5P_FILE_CREATE);     /* the root group */
    hid_t f = fcpl < 0 ? -1 : H5Fcreate(tmp, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
    if (fcpl >= 0) H5Pclose(fcpl);
    if (f < 0) {
        H5Eset_auto2(H5E_DEFAULT, old_fn, old_data);
        fs_atomic_abort(&aw);
        return status_set(st, "%s: cannot create the run file (%s)", tmp,
                          errno ? strerror(errno) : "HDF5 error");
    }
    for (int i = 0; i < rl->nattrs && !err; i++)
        err = write_string_attr(f, rl->attrs[i]->key, rl->attrs[i]->value);
    for (int i = 0; i < rl->ntables && !err; i++) err = write_table(f, rl->tables[i]);
    /* the final flush must not fail, nor the close of a failed file: see h5write.h */
    if (!err && h5write_reserve(f, rl->path, tmp, st) != 0) err = -1;
    if (err) h5write_discard(f);
    if (H5Fclose(f) < 0) err = -1;
    if (!err) h5write_release(tmp);
    H5Eset_auto2(H5E_DEFAULT, old_fn, old_data);
    if (err) {
        fs_atomic_abort(&aw);
        return status_set(st, "%s: writing the run file failed (disk full?)", rl->path);
    }
    return fs_atomic_commit(&aw, st);
}

/* ---- reading ----
 *
 * A run file may come from anyone (run directories are shared): every
 * attribute goes through h5_attr_get_str's rule, and every column of a
 * table must be a one-dimensional float data set exactly as long as its
 * label column, or the file is refused with a message naming it. */

typedef struct open_ctx {
    runlog *rl;
    cc_status *st;
    int err;
} open_ctx;

static herr_t attr_cb(hid_t obj, const char *name, const H5A_info_t *info, void *data)
{
    (void)info;
    open_ctx *c = data;
    char buf[CFG_STR * 2];
    if (h5_attr_get_str(obj, c->rl->path, "root", name, buf, sizeof buf, c->st) != 0 ||
        runlog_set_attr(c->rl, name, buf, c->st))
        c->err = 1;
    return c->err ? -1 : 0;
}

/* Length of the 1-D data set d, or -1 + message if it is not 1-D or not of
 * class cls. */
static hssize_t column_len(hid_t d, H5T_class_t cls, const char *path, const char *table,
                           const char *col, cc_status *st)
{
    hid_t sp = H5Dget_space(d), t = H5Dget_type(d);
    hsize_t n = 0;
    int ok = sp >= 0 && t >= 0 && H5Sget_simple_extent_ndims(sp) == 1 &&
             H5Sget_simple_extent_dims(sp, &n, NULL) == 1 && H5Tget_class(t) == cls;
    if (ok && cls == H5T_STRING && H5Tis_variable_str(t) > 0) ok = 0;
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    if (!ok)
        return status_set(st, "%s: table '%s' column '%s' is not a one-dimensional %s", path,
                          table, col, cls == H5T_STRING ? "fixed-length string column" : "number column");
    return (hssize_t)n;
}

static int read_table(open_ctx *c, hid_t g, const char *name)
{
    runlog *rl = c->rl;
    const char *path = rl->path;
    char order[RUNLOG_MAX_COLS * RUNLOG_NAME];
    if (h5_attr_get_str(g, path, name, "columns", order, sizeof order, c->st)) return -1;
    const char *cols[RUNLOG_MAX_COLS];
    char names[RUNLOG_MAX_COLS][RUNLOG_NAME];
    int ncols = 0;
    char *save = NULL;
    for (char *tok = strtok_r(order, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (ncols == RUNLOG_MAX_COLS || strlen(tok) >= RUNLOG_NAME || !strcmp(tok, "label"))
            return status_set(c->st, "%s: table '%s': bad 'columns' attribute (more than %d "
                              "columns, a name of %d bytes or more, or 'label')",
                              path, name, RUNLOG_MAX_COLS, RUNLOG_NAME);
        strcpy(names[ncols], tok);
        cols[ncols] = names[ncols];
        ncols++;
    }
    if (runlog_table_find(rl, name))
        return status_set(c->st, "%s: table '%s' appears twice", path, name);
    runlog_table *t = runlog_table_get(rl, name, ncols, cols, c->st);
    if (!t) return -1;
    hid_t d = H5Lexists(g, "label", H5P_DEFAULT) > 0 ? H5Dopen2(g, "label", H5P_DEFAULT) : -1;
    if (d < 0) return status_set(c->st, "%s: table '%s' has no 'label' column", path, name);
    hssize_t n = column_len(d, H5T_STRING, path, name, "label", c->st);
    int err = n < 0;
    /* Labels are stored RUNLOG_NAME wide; a wider or longer column is
     * not ours (and must not be read into RUNLOG_NAME-wide rows). */
    if (!err && n > (hssize_t)1 << 24)
        err = status_set(c->st, "%s: table '%s' has %lld rows (at most %d)", path, name,
                         (long long)n, 1 << 24) != 0;
    double *row = err ? NULL : calloc((size_t)ncols + 1, sizeof(double));
    if (!err && !row) err = status_set(c->st, "%s: out of memory", path) != 0;
    for (hssize_t r = 0; r < n && !err; r++) err = runlog_append(t, "", row, c->st) != 0;
    free(row);
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, RUNLOG_NAME);
    if (!err && n && H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->labels) < 0)
        err = h5_fail(c->st, path, "cannot read table '%s' column 'label'", name) != 0;
    for (hssize_t r = 0; r < n && !err; r++) t->labels[r][RUNLOG_NAME - 1] = '\0';
    H5Tclose(mt);
    H5Dclose(d);
    double *col = err ? NULL : malloc(sizeof(double) * (size_t)(n ? n : 1));
    if (!err && !col) err = status_set(c->st, "%s: out of memory", path) != 0;
    for (int k = 0; k < ncols && !err; k++) {
        hid_t dc = H5Lexists(g, cols[k], H5P_DEFAULT) > 0 ? H5Dopen2(g, cols[k], H5P_DEFAULT) : -1;
        if (dc < 0) {
            err = status_set(c->st, "%s: table '%s' has no column '%s'", path, name, cols[k]) != 0;
            break;
        }
        hssize_t m = column_len(dc, H5T_FLOAT, path, name, cols[k], c->st);
        if (m >= 0 && m != n)
            status_set(c->st, "%s: table '%s' column '%s' has %lld rows, 'label' has %lld",
                       path, name, cols[k], (long long)m, (long long)n);
        if (m != n)
            err = 1;
        else if (n && H5Dread(dc, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, col) < 0)
            err = h5_fail(c->st, path, "cannot read table '%s' column '%s'", name, cols[k]) != 0;
        H5Dclose(dc);
        for (hssize_t r = 0; r < n && !err; r++) t->values[r * (size_t)ncols + (size_t)k] = col[r];
    }
    free(col);
    return err ? -1 : 0;
}

static herr_t group_cb(hid_t g, const char *name, const H5L_info_t *info, void *data)
{
    (void)info;
    open_ctx *c = data;
    H5O_info_t oi;
    if (H5Oget_info_by_name(g, name, &oi, H5P_DEFAULT) < 0) {
        c->err = 1;
        h5_fail(c->st, c->rl->path, "cannot open object '%s'", name);
        return -1;
    }
    if (oi.type != H5O_TYPE_GROUP) return 0;
    hid_t sub = H5Gopen2(g, name, H5P_DEFAULT);
    if (sub < 0) {
        c->err = 1;
        h5_fail(c->st, c->rl->path, "cannot open group '%s'", name);
        return -1;
    }
    /* A table group has a "columns" attribute; other groups nest tables. */
    int is_table = H5Aexists(sub, "columns") > 0;
    char full[RUNLOG_NAME * 2];
    ssize_t pl = H5Iget_name(sub, full, sizeof full);
    if (pl <= 0 || (size_t)pl >= sizeof full) {
        H5Gclose(sub);
        c->err = 1;
        status_set(c->st, "%s: a group name is too long (or nests too deep)", c->rl->path);
        return -1;
    }
    const char *path = full[0] == '/' ? full + 1 : full;
    herr_t r = 0;
    if (is_table) {
        if (strlen(path) >= RUNLOG_NAME) {
            status_set(c->st, "%s: table name '%s' is too long", c->rl->path, path);
            c->err = 1;
        } else if (read_table(c, sub, path))
            c->err = 1;
    } else {
        r = H5Literate(sub, H5_INDEX_NAME, H5_ITER_INC, NULL, group_cb, c);
    }
    H5Gclose(sub);
    return c->err ? -1 : r;
}

int runlog_open(runlog *rl, const char *path, cc_status *st)
{
    memset(rl, 0, sizeof *rl);
    if (strlen(path) >= sizeof rl->path) return status_set(st, "%s: path too long", path);
    strcpy(rl->path, path);
    if (access(path, R_OK)) return status_set(st, "%s: cannot read the run file (%s)", path, strerror(errno));
    h5_quiet q;
    h5_quiet_begin(&q);
    open_ctx c = {rl, st, 0};
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0) H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);    /* no handle outlives us */
    hid_t f = fapl < 0 ? -1 : H5Fopen(path, H5F_ACC_RDONLY, fapl);
    if (fapl >= 0) H5Pclose(fapl);
    if (f < 0) {
        h5_quiet_end(&q);
        return status_set(st, "%s: not a readable HDF5 run file (truncated or corrupt?)", path);
    }
    /* Format first, so that a foreign or newer file is named as such
     * rather than failing on some table of another layout. */
    char fmt[64], ver[32];
    int r = h5_attr_get_str(f, path, "root", "format", fmt, sizeof fmt, st);
    if (r == 1 || (r == 0 && strcmp(fmt, "cellcount-run")))
        r = status_set(st, "%s: not a cellcount run file (format '%s')", path, fmt);
    if (r == 0) {
        r = h5_attr_get_str(f, path, "root", "format_version", ver, sizeof ver, st);
        if (r == 1 || (r == 0 && strcmp(ver, "1")))
            r = status_set(st, "%s: run file format version '%s' is not supported (this build "
                           "reads version 1)", path, ver);
    }
    if (r) c.err = 1;
    hsize_t idx = 0;
    if (!c.err && H5Aiterate2(f, H5_INDEX_NAME, H5_ITER_INC, &idx, attr_cb, &c) < 0 && !c.err) {
        h5_fail(st, path, "cannot list the root attributes");
        c.err = 1;
    }
    if (!c.err && H5Literate(f, H5_INDEX_NAME, H5_ITER_INC, NULL, group_cb, &c) < 0 && !c.err) {
        h5_fail(st, path, "cannot list the tables");
        c.err = 1;
    }
    H5Fclose(f);
    h5_quiet_end(&q);
    if (c.err) {
        runlog_free(rl);
        return -1;
    }
    return 0;
}
