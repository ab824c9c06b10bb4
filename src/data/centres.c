/* centres.c - see centres.h. */
#include "src/data/centres.h"

#include <math.h>
#include <stdlib.h>

#include "src/data/h5write.h"

static const char *DESC_CENTRES =
    "(N,K,2) cell centres (x, y) as fractions of the image width and height; the first "
    "counts[i] slots of image i, NaN after (all NaN: unknown)";

int centres_h5_write(hid_t file, int64_t n, int k, const float *xy, const char *path,
                     cc_status *st)
{
    hsize_t dims[3] = {(hsize_t)n, (hsize_t)k, 2};
    hsize_t chunk[3] = {(hsize_t)(n < 256 ? (n > 0 ? n : 1) : 256), (hsize_t)k, 2};
    hid_t s = H5Screate_simple(3, dims, NULL), p = h5write_plist_create(H5P_DATASET_CREATE);
    hid_t d = -1;
    int rc = -1;
    if (s >= 0 && p >= 0 && H5Pset_chunk(p, 3, chunk) >= 0 && H5Pset_shuffle(p) >= 0 &&
        H5Pset_deflate(p, 4) >= 0 &&
        (d = H5Dcreate2(file, "centres", H5T_IEEE_F32LE, s, H5P_DEFAULT, p, H5P_DEFAULT)) >= 0 &&
        (n == 0 || H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, xy) >= 0) &&
        h5_attr_put_str(d, "description", DESC_CENTRES) == 0)
        rc = 0;
    h5_close_id(&d, H5Dclose);
    h5_close_id(&p, H5Pclose);
    h5_close_id(&s, H5Sclose);
    return rc ? h5_fail(st, path, "cannot write /centres") : 0;
}

/* The slots of image i against its count: "" when fine, else the problem. */
static const char *slots_problem(const float *v, int k, int32_t count)
{
    if (v[0] != v[0]) {     /* unknown: every slot NaN */
        for (int j = 0; j < 2 * k; j++)
            if (v[j] == v[j]) return "has numbers after a NaN first slot";
        return "";
    }
    if (count > k) return "has fewer slots than cells";
    for (int j = 0; j < 2 * k; j++) {
        const int cell = j < 2 * count;
        if (cell && !(isfinite(v[j]) && v[j] >= -1.0f && v[j] <= 2.0f))
            return "has a centre that is not a number in [-1, 2]";
        if (!cell && v[j] == v[j]) return "has more centres than its count";
    }
    return "";
}

int centres_h5_read(hid_t file, int64_t n, const int32_t *counts, float **xy, int *k,
                    const char *path, cc_status *st)
{
    *xy = NULL;
    *k = 0;
    if (H5Lexists(file, "centres", H5P_DEFAULT) <= 0) return 0;
    hid_t d = H5Dopen2(file, "centres", H5P_DEFAULT), s = d >= 0 ? H5Dget_space(d) : -1;
    hid_t t = d >= 0 ? H5Dget_type(d) : -1;
    hsize_t dims[3] = {0, 0, 0};
    int rc = 0;
    if (d < 0 || s < 0 || t < 0) {
        rc = h5_fail(st, path, "cannot open /centres");
    } else if (H5Sget_simple_extent_ndims(s) != 3 || H5Tget_class(t) != H5T_FLOAT) {
        rc = status_set(st, "%s: /centres is not a 3-D float data set", path);
    } else {
        H5Sget_simple_extent_dims(s, dims, NULL);
        if (dims[0] != (hsize_t)n || dims[2] != 2 || dims[1] < 1 || dims[1] > 1000000)
            rc = status_set(st, "%s: /centres is %llux%llux%llu, expected %lldxKx2", path,
                            (unsigned long long)dims[0], (unsigned long long)dims[1],
                            (unsigned long long)dims[2], (long long)n);
    }
    float *v = NULL;
    if (rc == 0) {
        v = malloc(sizeof(float) * (size_t)n * dims[1] * 2 + 1);
        if (!v)
            rc = status_set(st, "%s: out of memory reading /centres", path);
        else if (n && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0)
            rc = h5_fail(st, path, "cannot read /centres (truncated or corrupt?)");
    }
    for (int64_t i = 0; rc == 0 && i < n; i++) {
        const char *why = slots_problem(v + (size_t)i * dims[1] * 2, (int)dims[1], counts[i]);
        if (*why)
            rc = status_set(st, "%s: /centres of image %lld (count %d) %s", path, (long long)i,
                            (int)counts[i], why);
    }
    h5_close_id(&t, H5Tclose);
    h5_close_id(&s, H5Sclose);
    h5_close_id(&d, H5Dclose);
    if (rc) {
        free(v);
        return -1;
    }
    *xy = v;
    *k = (int)dims[1];
    return 0;
}
