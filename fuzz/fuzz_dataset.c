/* fuzz_dataset.c - the data set reader (and loader) on valid HDF5 files of
 * fuzzer-chosen layout. */
#include "fuzz/fuzz_h5.h"
#include "src/data/dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz f = {data, size};
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    const char *path = fz_path("dataset");
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0) return 0;
    const int h = 1 + (int)fz_u8(&f) % 9, w = 1 + (int)fz_u8(&f) % 9;
    hsize_t n = fz_u8(&f) % 12;
    fz_attr_str(&f, file, "format", DATASET_FORMAT);
    double v = DATASET_VERSION, hh = h, ww = w, seed = 1, frac[3] = {0.8, 0.1, 0.1};
    fz_attr_num(&f, file, "version", H5T_NATIVE_INT32, 1, &v);
    fz_attr_num(&f, file, "height", H5T_NATIVE_INT32, 1, &hh);
    fz_attr_num(&f, file, "width", H5T_NATIVE_INT32, 1, &ww);
    fz_attr_num(&f, file, "split_seed", H5T_NATIVE_UINT64, 1, &seed);
    fz_attr_num(&f, file, "split_fractions", H5T_NATIVE_DOUBLE, 3, frac);
    hsize_t dims[4] = {n, 1, (hsize_t)h, (hsize_t)w};
    fz_dataset(&f, file, "counts", 1, &n, H5T_NATIVE_INT32);
    fz_dataset(&f, file, "images", 4, dims, fz_u8(&f) % 2 ? H5T_NATIVE_UINT8 : H5T_NATIVE_FLOAT);
    fz_dataset(&f, file, "masks", 4, dims, H5T_NATIVE_FLOAT);
    static const char *meta[] = {"focus", "stain", "site", "scene"};
    for (int i = 0; i < 4; i++) fz_dataset(&f, file, meta[i], 1, &n, H5T_NATIVE_INT32);
    fz_dataset(&f, file, "split", 1, &n, H5T_NATIVE_UINT8);
    fz_dataset(&f, file, "has_mask", 1, &n, H5T_NATIVE_UINT8);
    hid_t st_t = H5Tcopy(H5T_C_S1);
    H5Tset_size(st_t, 1 + fz_u8(&f) % 40);
    fz_dataset(&f, file, "source", 1, &n, st_t);
    H5Tclose(st_t);
    H5Fclose(file);
    cc_status st;
    status_clear(&st);
    cc_dataset *ds = dataset_open(path, &st);
    if (ds) {
        size_t plane = (size_t)ds->h * ds->w;
        float *buf = malloc(plane * sizeof *buf);
        for (int64_t i = 0; buf && i < ds->n; i++) {
            dataset_read_images(ds, i, 1, buf, NULL);
            dataset_read_masks(ds, i, 1, buf, NULL);
            volatile size_t l = strlen(ds->source[i]);
            (void)l;
        }
        free(buf);
        dataset_close(ds);
    }
    unlink(path);
    return 0;
}
