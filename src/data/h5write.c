/* h5write.c - see h5write.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include "src/data/h5write.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Room for what the final flush may allocate past the file's current
 * allocated end.  Measured on data sets, checkpoints and run logs of all
 * sizes: nothing (metadata gets its file space long before it is first
 * written), so one block of slack. */
#define RESERVE_MARGIN 4096

hid_t h5write_plist_create(hid_t cls)
{
    hid_t p = H5Pcreate(cls);
    if (p >= 0 && H5Pset_obj_track_times(p, 0) < 0) {
        H5Pclose(p);
        p = -1;
    }
    return p;
}

/* The descriptor under a sec2 file, or -1. */
static int file_fd(hid_t file)
{
    hid_t fapl = H5Fget_access_plist(file);
    int sec2 = fapl >= 0 && H5Pget_driver(fapl) == H5FD_SEC2;   /* handle is an int * */
    if (fapl >= 0) H5Pclose(fapl);
    void *handle = NULL;
    if (!sec2 || H5Fget_vfd_handle(file, H5P_DEFAULT, &handle) < 0 || !handle) return -1;
    return *(int *)handle;
}

int h5write_reserve(hid_t file, const char *path, const char *tmp, cc_status *st)
{
    hsize_t size = 0;
    int fd = file_fd(file);
    if (fd < 0 || H5Fget_filesize(file, &size) < 0) return 0;
    if (fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)size + RESERVE_MARGIN) == 0 ||
        errno == EOPNOTSUPP || errno == ENOSYS)
        return 0;
    return status_set(st, "%s: cannot write %s: %s", path, tmp, strerror(errno));
}

void h5write_release(const char *tmp)
{
    int fd = open(tmp, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return;
    struct stat sb;
    if (fstat(fd, &sb) == 0)
        (void)fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, sb.st_size,
                        RESERVE_MARGIN);
    close(fd);
}

void h5write_discard(hid_t file)
{
    int fd = file_fd(file);
    int mfd = fd >= 0 ? memfd_create("cellcount-discard", MFD_CLOEXEC) : -1;
    if (mfd < 0) return;
    (void)dup2(mfd, fd);
    close(mfd);
}

void h5_quiet_begin(h5_quiet *q)
{
    H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void h5_quiet_end(const h5_quiet *q) { H5Eset_auto2(H5E_DEFAULT, q->func, q->data); }

static herr_t h5_walk_cb(unsigned n, const H5E_error2_t *e, void *ud)
{
    (void)n;
    char *buf = ud;
    if (!buf[0] && e->desc && e->desc[0]) snprintf(buf, 256, "%s", e->desc);
    return 0;
}

int h5_fail(cc_status *st, const char *path, const char *fmt, ...)
{
    char what[512], why[256] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5_walk_cb, why);
    if (why[0]) return status_set(st, "%s: %s (HDF5: %s)", path, what, why);
    return status_set(st, "%s: %s", path, what);
}

void h5_close_id(hid_t *id, herr_t (*fn)(hid_t))
{
    if (*id >= 0) fn(*id);
    *id = -1;
}

int h5_attr_put_str(hid_t obj, const char *name, const char *value)
{
    hid_t t = H5Tcopy(H5T_C_S1), s = H5Screate(H5S_SCALAR), a = -1;
    int rc = -1;
    if (t >= 0 && s >= 0 && H5Tset_size(t, H5T_VARIABLE) >= 0 &&
        H5Tset_cset(t, H5T_CSET_UTF8) >= 0 &&
        (a = H5Acreate2(obj, name, t, s, H5P_DEFAULT, H5P_DEFAULT)) >= 0 &&
        H5Awrite(a, t, &value) >= 0)
        rc = 0;
    h5_close_id(&a, H5Aclose);
    h5_close_id(&s, H5Sclose);
    h5_close_id(&t, H5Tclose);
    return rc;
}

/* Longest fixed-length string type we are willing to allocate for: a
 * hostile file may declare a 4 GB string; no attribute of ours is near. */
#define H5_ATTR_STR_MAX (1u << 20)

int h5_attr_get_str(hid_t obj, const char *path, const char *where, const char *name, char *buf,
                    size_t len, cc_status *st)
{
    buf[0] = '\0';
    htri_t ex = H5Aexists(obj, name);
    if (ex < 0) return h5_fail(st, path, "cannot look up %s attribute '%s'", where, name);
    if (ex == 0) return 1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT), t = -1, s = -1, mt = -1;
    int rc = -1, var = 0;
    char *v = NULL;
    if (a < 0 || (t = H5Aget_type(a)) < 0 || (s = H5Aget_space(a)) < 0) {
        h5_fail(st, path, "cannot open %s attribute '%s'", where, name);
        goto done;
    }
    if (H5Tget_class(t) != H5T_STRING) {
        status_set(st, "%s: %s attribute '%s' is not a string", path, where, name);
        goto done;
    }
    if (H5Sget_simple_extent_type(s) != H5S_SCALAR) {
        status_set(st, "%s: %s attribute '%s' is not a single string (an array of %lld)", path,
                   where, name, (long long)H5Sget_simple_extent_npoints(s));
        goto done;
    }
    /* h5py writes str as variable-length, numpy bytes as fixed-length. */
    var = H5Tis_variable_str(t) > 0;
    size_t sz = var ? 0 : H5Tget_size(t);
    if (!var && (sz == 0 || sz > H5_ATTR_STR_MAX)) {
        status_set(st, "%s: %s attribute '%s' is longer than %zu bytes", path, where, name,
                   len - 1);
        goto done;
    }
    if (!var && !(v = calloc(1, sz + 1))) {
        status_set(st, "%s: out of memory", path);
        goto done;
    }
    /* Same character set as the file: HDF5 converts no ASCII <-> UTF-8. */
    if ((mt = H5Tcopy(H5T_C_S1)) < 0 || H5Tset_size(mt, var ? H5T_VARIABLE : sz + 1) < 0 ||
        H5Tset_strpad(mt, H5T_STR_NULLTERM) < 0 || H5Tset_cset(mt, H5Tget_cset(t)) < 0 ||
        H5Aread(a, mt, var ? (void *)&v : v) < 0) {
        h5_fail(st, path, "cannot read %s attribute '%s'", where, name);
    } else if (v && strlen(v) >= len) {
        status_set(st, "%s: %s attribute '%s' is longer than %zu bytes", path, where, name,
                   len - 1);
    } else {
        snprintf(buf, len, "%s", v ? v : "");
        rc = 0;
    }
done:
    if (var)
        H5free_memory(v);
    else
        free(v);
    h5_close_id(&mt, H5Tclose);
    h5_close_id(&s, H5Sclose);
    h5_close_id(&t, H5Tclose);
    h5_close_id(&a, H5Aclose);
    return rc;
}
