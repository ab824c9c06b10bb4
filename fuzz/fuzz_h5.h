/* fuzz_h5.h - shared by the HDF5 harnesses: build a *valid* HDF5 file
 * through the HDF5 API whose shapes, types, attribute arrays and lengths
 * come from the fuzz input.  libhdf5's own parsing of raw bytes is not ours
 * to harden (docs/SECURITY.md); what our readers do with whatever a valid
 * file may hold is. */
#ifndef CC_FUZZ_H5_H
#define CC_FUZZ_H5_H

#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct fz {
    const uint8_t *p;
    size_t n;
} fz;

static inline unsigned fz_u8(fz *f)
{
    if (!f->n) return 0;
    f->n--;
    return *f->p++;
}

static inline unsigned fz_u16(fz *f) { return fz_u8(f) | fz_u8(f) << 8; }

static inline double fz_double(fz *f)
{
    unsigned c = fz_u8(f);
    static const double special[] = {0, 1, -1, 0.5, -5, 1e30, -1e-30, 255};
    if (c < 200) return (double)c / 100.0;
    if (c < 208) return special[c - 200];
    if (c == 208) return __builtin_nan("");
    if (c == 209) return __builtin_inf();
    return (double)(int16_t)fz_u16(f);
}

/* A short name from the input (1..n bytes, printable), or dflt. */
static inline void fz_name(fz *f, char *buf, size_t len, const char *dflt)
{
    unsigned k = fz_u8(f);
    if (k < 128 || len < 2) {
        snprintf(buf, len, "%s", dflt);
        return;
    }
    size_t n = 1 + (k - 128) % (len - 1);
    for (size_t i = 0; i < n; i++) {
        unsigned c = fz_u8(f);
        buf[i] = (char)(c >= 32 && c < 127 && c != '/' && c != '.' ? c : 'a' + c % 26);
    }
    buf[n] = '\0';
}

/* An attribute `name` on obj holding `value` as the fuzzer chooses: a
 * scalar fixed or variable-length string (the valid cases), an array of
 * strings, a number, a number array, or a very long string. */
static inline void fz_attr_str(fz *f, hid_t obj, const char *name, const char *value)
{
    unsigned kind = fz_u8(f) % 16;
    hsize_t n = 1;
    hid_t t = -1, s = -1;
    if (kind == 0) return;      /* absent */
    size_t vl = strlen(value);
    char *buf = NULL;
    char **ptrs = NULL;
    if (kind <= 9) {            /* valid: scalar, fixed or vlen */
        s = H5Screate(H5S_SCALAR);
        t = H5Tcopy(H5T_C_S1);
        if (kind <= 5) {
            H5Tset_size(t, vl + 1 + (kind == 5 ? fz_u8(f) : 0));
            buf = calloc(1, vl + 300);
            memcpy(buf, value, vl);
        } else {
            H5Tset_size(t, H5T_VARIABLE);
            if (kind == 7) H5Tset_cset(t, H5T_CSET_UTF8);
            ptrs = calloc(1, sizeof *ptrs);
            ptrs[0] = (char *)value;
        }
    } else if (kind <= 12) {    /* array of strings */
        n = 1 + fz_u16(f) % 700;
        size_t w = 1 + fz_u8(f) + (kind == 12 ? 0 : vl);
        s = H5Screate_simple(1, &n, NULL);
        t = H5Tcopy(H5T_C_S1);
        if (kind == 10) {
            H5Tset_size(t, w);
            buf = malloc(n * w);
            memset(buf, 'B', n * w);
        } else {
            H5Tset_size(t, H5T_VARIABLE);
            buf = malloc(w + 1);
            memset(buf, 'B', w);
            buf[w] = '\0';
            ptrs = malloc(n * sizeof *ptrs);
            for (hsize_t i = 0; i < n; i++) ptrs[i] = buf;
        }
    } else if (kind == 13) {    /* a very long scalar string */
        size_t w = 600 + fz_u16(f) % 70000;
        s = H5Screate(H5S_SCALAR);
        t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, w);
        buf = malloc(w);
        memset(buf, 'L', w);
    } else {                    /* numbers */
        n = kind == 14 ? 1 : 1 + fz_u8(f);
        s = kind == 14 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, NULL);
        t = H5Tcopy(H5T_NATIVE_DOUBLE);
        double *d = malloc(n * sizeof *d);
        for (hsize_t i = 0; i < n; i++) d[i] = fz_double(f);
        buf = (char *)d;
    }
    hid_t a = H5Acreate2(obj, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0) {
        H5Awrite(a, t, ptrs ? (void *)ptrs : (void *)buf);
        H5Aclose(a);
    }
    free(ptrs);
    free(buf);
    H5Tclose(t);
    H5Sclose(s);
}

/* A numeric attribute: usually `n` numbers of the right kind, else wrong
 * counts or types. */
static inline void fz_attr_num(fz *f, hid_t obj, const char *name, hid_t ftype, int n,
                               const double *good)
{
    unsigned kind = fz_u8(f) % 8;
    if (kind == 0) return;
    hsize_t cnt = kind == 6 ? (hsize_t)(fz_u8(f) % 5) + 1 : (hsize_t)n;
    hid_t s = cnt == 1 && kind != 7 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &cnt, NULL);
    hid_t t = kind == 5 ? H5Tcopy(H5T_NATIVE_FLOAT) : H5Tcopy(ftype);
    double *v = malloc(cnt * sizeof *v);
    for (hsize_t i = 0; i < cnt; i++) v[i] = kind <= 3 && (int)i < n ? good[i] : fz_double(f);
    hid_t a = H5Acreate2(obj, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0) {
        H5Awrite(a, H5T_NATIVE_DOUBLE, v);
        H5Aclose(a);
    }
    free(v);
    H5Tclose(t);
    H5Sclose(s);
}

/* A data set `name` in loc: usually rank `rank` with dims `want`, of type
 * `type`, filled from the input; else other ranks, lengths and types. */
static inline void fz_dataset(fz *f, hid_t loc, const char *name, int rank, const hsize_t *want,
                              hid_t type)
{
    unsigned kind = fz_u8(f) % 10;
    if (kind == 0) return;
    hsize_t dims[4] = {1, 1, 1, 1};
    int r = rank;
    for (int i = 0; i < 4; i++) dims[i] = i < rank ? want[i] : 1;
    hid_t t = H5Tcopy(type);
    if (kind == 6) r = 1 + fz_u8(f) % 4;                        /* other rank */
    if (kind == 7)
        for (int i = 0; i < r; i++) dims[i] = fz_u8(f) % 20;    /* other lengths */
    if (kind == 8) {                                            /* other type */
        H5Tclose(t);
        unsigned c = fz_u8(f) % 4;
        t = c == 0 ? H5Tcopy(H5T_NATIVE_INT32) : c == 1 ? H5Tcopy(H5T_NATIVE_FLOAT)
            : c == 2 ? H5Tcopy(H5T_NATIVE_UINT8) : H5Tcopy(H5T_C_S1);
        if (c == 3) H5Tset_size(t, 1 + fz_u8(f) % 100);
    }
    if (kind == 9 && H5Tget_class(t) == H5T_STRING) H5Tset_size(t, H5T_VARIABLE);
    hsize_t total = 1;
    for (int i = 0; i < r; i++) total *= dims[i];
    if (total > (1u << 22)) return;
    hid_t s = H5Screate_simple(r, dims, NULL);
    hid_t d = H5Dcreate2(loc, name, t, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (d >= 0 && total) {
        size_t es = H5Tis_variable_str(t) > 0 ? sizeof(char *) : H5Tget_size(t);
        uint8_t *buf = calloc(total, es);
        if (buf && H5Tis_variable_str(t) > 0) {
            for (hsize_t i = 0; i < total; i++) ((const char **)buf)[i] = "v";
        } else if (buf && H5Tget_class(t) == H5T_FLOAT) {
            for (hsize_t i = 0; i < total; i++) {
                double v = f->n ? fz_double(f) : 0.5;
                if (es == 4) ((float *)buf)[i] = (float)v;
                else ((double *)buf)[i] = v;
            }
        } else if (buf) {
            for (hsize_t i = 0; i < total * es; i++) buf[i] = f->n ? (uint8_t)fz_u8(f) % 3 : 1;
        }
        if (buf) H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
        free(buf);
    }
    if (d >= 0) H5Dclose(d);
    H5Sclose(s);
    H5Tclose(t);
}

/* A fresh temp path for this process. */
static inline const char *fz_path(const char *tag)
{
    static char path[256];
    snprintf(path, sizeof path, "/tmp/cc_fuzz_%s_%ld.h5", tag, (long)getpid());
    return path;
}

#endif
