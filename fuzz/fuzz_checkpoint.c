/* fuzz_checkpoint.c - checkpoint_load on valid HDF5 files of fuzzer-chosen
 * layout (shapes, types, values, attributes) for a small fixed model. */
#include "autodiff/optim.h"
#include "autodiff/params.h"
#include "fuzz/fuzz_h5.h"
#include "src/run/checkpoint.h"

static const struct {
    const char *name;
    int ndim;
    int64_t shape[4];
    cc_param_kind kind;
} SPEC[] = {
    {"m/conv/weight", 4, {3, 2, 3, 3}, PARAM_TRAINABLE},
    {"m/bn/weight", 1, {3}, PARAM_TRAINABLE},
    {"m/bn/running_var", 1, {3}, PARAM_BUFFER},
    {"m/bn/num_batches_tracked", 1, {1}, PARAM_BUFFER},
};
#define NSPEC 4

static void put_tensors(fz *f, hid_t file, const char *group)
{
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    for (int i = 0; i < NSPEC; i++) {
        if (strcmp(group, "params") && SPEC[i].kind != PARAM_TRAINABLE) continue;
        char path[128], parent[128];
        snprintf(path, sizeof path, "%s/%s", group, SPEC[i].name);
        snprintf(parent, sizeof parent, "%s", path);
        *strrchr(parent, '/') = '\0';
        if (H5Lexists(file, group, H5P_DEFAULT) <= 0 || H5Lexists(file, parent, H5P_DEFAULT) <= 0) {
            hid_t g = H5Gcreate2(file, parent, lcpl, H5P_DEFAULT, H5P_DEFAULT);
            if (g >= 0) H5Gclose(g);
        }
        hid_t g = H5Gopen2(file, parent, H5P_DEFAULT);
        if (g < 0) continue;
        hsize_t dims[4];
        for (int k = 0; k < SPEC[i].ndim; k++) dims[k] = (hsize_t)SPEC[i].shape[k];
        fz_dataset(f, g, strrchr(path, '/') + 1, SPEC[i].ndim, dims, H5T_NATIVE_FLOAT);
        H5Gclose(g);
    }
    H5Pclose(lcpl);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static cc_ctx ctx;
    static cc_params P;
    static int ready;
    if (!ready) {
        if (ctx_init(&ctx, 1, NULL)) abort();
        params_init(&P, &ctx);
        for (int i = 0; i < NSPEC; i++)
            if (params_add(&P, SPEC[i].name, SPEC[i].ndim, SPEC[i].shape, SPEC[i].kind, NULL) < 0)
                abort();
        if (params_finalize(&P, NULL)) abort();
        ready = 1;
    }
    fz f = {data, size};
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    const char *path = fz_path("checkpoint");
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0) return 0;
    fz_attr_str(&f, file, "format", CKPT_FORMAT);
    double one = CKPT_FORMAT_VERSION;
    fz_attr_num(&f, file, "format_version", H5T_NATIVE_INT64, 1, &one);
    fz_attr_str(&f, file, "model", "fpn");
    put_tensors(&f, file, "params");
    int with_opt = fz_u8(&f) % 2;
    if (with_opt) {
        hid_t g = H5Gcreate2(file, "optim", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        fz_attr_str(&f, g, "kind", fz_u8(&f) % 4 ? "adam" : "sgd");
        static const char *names[] = {"lr", "eps", "momentum", "weight_decay", "betas", "step"};
        double good[2] = {1e-3, 0.999};
        for (int i = 0; i < 6; i++)
            fz_attr_num(&f, g, names[i], i == 5 ? H5T_NATIVE_INT64 : H5T_NATIVE_DOUBLE,
                        i == 4 ? 2 : 1, good);
        H5Gclose(g);
        put_tensors(&f, file, "optim/exp_avg");
        put_tensors(&f, file, "optim/exp_avg_sq");
    }
    H5Fclose(file);
    cc_optim opt;
    optim_adam_init(&opt, 1e-3f, 0.9f, 0.999f, 1e-8f, 0);
    cc_status st;
    status_clear(&st);
    char buf[64];
    checkpoint_load(path, &P, fz_u8(&f) % 2 ? &opt : NULL, &st);
    checkpoint_read_attr_string(path, "model", buf, sizeof buf, NULL);
    double d;
    checkpoint_read_attr_double(path, "format_version", &d, NULL);
    unlink(path);
    return 0;
}
