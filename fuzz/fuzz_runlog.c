/* fuzz_runlog.c - the run-log reader (run.h5, read by report and count)
 * on valid HDF5 files of fuzzer-chosen layout. */
#include "fuzz/fuzz_h5.h"
#include "src/run/runlog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz f = {data, size};
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    const char *path = fz_path("runlog");
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0) return 0;
    fz_attr_str(&f, file, "format", "cellcount-run");
    fz_attr_str(&f, file, "format_version", fz_u8(&f) % 4 ? "1" : "2");
    unsigned nattr = fz_u8(&f) % 6;
    for (unsigned i = 0; i < nattr; i++) {
        char name[80];
        fz_name(&f, name, sizeof name, "config.fpn.width");
        if (H5Aexists(file, name) <= 0) fz_attr_str(&f, file, name, "32");
    }
    unsigned ntab = fz_u8(&f) % 4;
    for (unsigned k = 0; k < ntab; k++) {
        char gname[160];
        snprintf(gname, sizeof gname, fz_u8(&f) % 4 ? "t%u" : "eval/t%u", k);
        hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
        H5Pset_create_intermediate_group(lcpl, 1);
        hid_t g = H5Gcreate2(file, gname, lcpl, H5P_DEFAULT, H5P_DEFAULT);
        H5Pclose(lcpl);
        if (g < 0) continue;
        unsigned ncols = fz_u8(&f) % 40;
        char cols[40][80], order[40 * 81] = "";
        for (unsigned c = 0; c < ncols; c++) {
            char dflt[16];
            snprintf(dflt, sizeof dflt, "c%u", c);
            fz_name(&f, cols[c], sizeof cols[c], dflt);
            if (c) strcat(order, ",");
            strcat(order, cols[c]);
        }
        fz_attr_str(&f, g, "columns", order);
        hsize_t rows = fz_u8(&f) % 80;
        hid_t lt = H5Tcopy(H5T_C_S1);
        H5Tset_size(lt, 64);
        fz_dataset(&f, g, "label", 1, &rows, lt);
        H5Tclose(lt);
        for (unsigned c = 0; c < ncols; c++)
            if (H5Lexists(g, cols[c], H5P_DEFAULT) <= 0)
                fz_dataset(&f, g, cols[c], 1, &rows, H5T_NATIVE_DOUBLE);
        H5Gclose(g);
    }
    H5Fclose(file);
    runlog rl;
    cc_status st;
    status_clear(&st);
    if (runlog_open(&rl, path, &st) == 0) {
        /* what was read must be self-consistent */
        for (int i = 0; i < rl.ntables; i++) {
            runlog_table *t = rl.tables[i];
            volatile double sum = 0;
            for (size_t r = 0; r < t->nrows * (size_t)t->ncols; r++) sum += t->values[r];
            for (size_t r = 0; r < t->nrows; r++) sum += (double)strlen(t->labels[r]);
        }
        runlog_free(&rl);
    }
    unlink(path);
    return 0;
}
