/* test_hostile.c - hostile and foreign input files (issue 15): every case
 * here crashed, corrupted memory or passed silently before its fix; each
 * must now be refused with a message naming the file and the problem. */
#include <check.h>
#include <fcntl.h>
#include <hdf5.h>
#include <tiffio.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autodiff/params.h"
#include "src/data/bbbc_name.h"
#include "src/run/checkpoint.h"
#include "src/data/import.h"
#include "src/data/loader.h"
#include "src/train/train.h"
#include "src/data/dataset.h"
#include "src/data/fsutil.h"
#include "src/data/png_io.h"
#include "src/run/ini_read.h"
#include "src/run/runlog.h"
#include "src/sweep/sweep.h"
#include "src/data/tiff_io.h"

static char dir[64];

static void setup(void)
{
    strcpy(dir, "/tmp/cc_hostile_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

static void teardown(void)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "chmod -R u+w %s; rm -rf %s", dir, dir);
    ck_assert_int_eq(system(cmd), 0);
}

#define ck_assert_msg_has(st, s) \
    ck_assert_msg(strstr((st)->msg, (s)) != NULL, "message '%s' lacks '%s'", (st)->msg, (s))


/* Item 11: no HDF5 object (file, group, data set, attribute, type, space)
 * may stay open after a reader returned, failed or not. */
#define ck_assert_h5_closed()                                                          \
    do {                                                                               \
        ssize_t open_ids = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);                 \
        ck_assert_msg(open_ids == 0, "%zd HDF5 objects left open", open_ids);          \
    } while (0)

/* A valid run file with table "metrics" (columns epoch, rmse; 2 rows). */
static void make_run(const char *path)
{
    cc_config cfg;
    config_defaults(&cfg);
    runlog rl;
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(runlog_create(&rl, path, &cfg, &st), 0);
    const char *cols[] = {"epoch", "rmse"};
    runlog_table *t = runlog_table_get(&rl, "metrics", 2, cols, &st);
    ck_assert_ptr_nonnull(t);
    double v[2] = {1, 0.5};
    ck_assert_int_eq(runlog_append(t, "train", v, &st), 0);
    ck_assert_int_eq(runlog_append(t, "val", v, &st), 0);
    ck_assert_int_eq(runlog_flush(&rl, &st), 0);
    runlog_free(&rl);
}

/* Attribute `name` of obj: n fixed-length strings of `width` bytes ('B'),
 * n == 0 for a scalar; vlen != 0 for variable-length strings. */
static void put_str_attr(hid_t obj, const char *name, int n, size_t width, int vlen)
{
    if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
    hsize_t dims = (hsize_t)n;
    hid_t s = n ? H5Screate_simple(1, &dims, NULL) : H5Screate(H5S_SCALAR);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, vlen ? H5T_VARIABLE : width);
    size_t cnt = n ? (size_t)n : 1;
    char *buf = malloc(cnt * width);
    memset(buf, 'B', cnt * width);
    char **ptrs = malloc(cnt * sizeof *ptrs);
    for (size_t i = 0; i < cnt; i++) {
        ptrs[i] = buf + i * width;
        if (vlen) ptrs[i][width - 1] = '\0';
    }
    hid_t a = H5Acreate2(obj, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_ge(a, 0);
    ck_assert_int_ge(H5Awrite(a, t, vlen ? (void *)ptrs : (void *)buf), 0);
    H5Aclose(a);
    H5Tclose(t);
    H5Sclose(s);
    free(ptrs);
    free(buf);
}

/* Item 1: a metrics column longer than `label` overflowed the read buffer. */
START_TEST(test_run_column_longer_than_label)
{
    char path[128];
    snprintf(path, sizeof path, "%s/run.h5", dir);
    make_run(path);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    ck_assert_int_ge(H5Ldelete(f, "metrics/rmse", H5P_DEFAULT), 0);
    hsize_t n = 100;
    hid_t s = H5Screate_simple(1, &n, NULL);
    hid_t d = H5Dcreate2(f, "metrics/rmse", H5T_IEEE_F64LE, s, H5P_DEFAULT, H5P_DEFAULT,
                         H5P_DEFAULT);
    double z[100] = {0};
    ck_assert_int_ge(H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, z), 0);
    H5Dclose(d);
    H5Sclose(s);
    H5Fclose(f);
    runlog rl;
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(runlog_open(&rl, path, &st), -1);
    ck_assert_h5_closed();
    ck_assert_msg_has(&st, path);
    ck_assert_msg_has(&st, "'rmse' has 100 rows, 'label' has 2");
}
END_TEST

/* A 2-D label column wrote two dimensions into one hsize_t. */
START_TEST(test_run_label_2d)
{
    char path[128];
    snprintf(path, sizeof path, "%s/run.h5", dir);
    make_run(path);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    ck_assert_int_ge(H5Ldelete(f, "metrics/label", H5P_DEFAULT), 0);
    hsize_t n[2] = {2, 3};
    hid_t s = H5Screate_simple(2, n, NULL), t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, 64);
    hid_t d = H5Dcreate2(f, "metrics/label", t, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_ge(d, 0);
    H5Dclose(d);
    H5Tclose(t);
    H5Sclose(s);
    H5Fclose(f);
    runlog rl;
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(runlog_open(&rl, path, &st), -1);
    ck_assert_h5_closed();
    ck_assert_msg_has(&st, "column 'label' is not a one-dimensional");
}
END_TEST

/* Item 2: string-array attributes at the root and as a table's columns. */
START_TEST(test_run_string_array_attrs)
{
    char path[128];
    snprintf(path, sizeof path, "%s/run.h5", dir);
    for (int k = 0; k < 4; k++) {
        make_run(path);
        hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
        hid_t g = H5Gopen2(f, "metrics", H5P_DEFAULT);
        const char *want = "root attribute 'zz' is not a single string (an array of 500)";
        if (k == 0) put_str_attr(f, "zz", 500, 120, 0);
        if (k == 1) put_str_attr(f, "zz", 500, 120, 1);
        if (k == 2) {
            put_str_attr(g, "columns", 500, 120, 0);
            want = "metrics attribute 'columns' is not a single string";
        }
        if (k == 3) {
            put_str_attr(f, "zz", 0, 5000, 0);     /* scalar, too long */
            want = "root attribute 'zz' is longer than";
        }
        H5Gclose(g);
        H5Fclose(f);
        runlog rl;
        cc_status st;
        status_clear(&st);
        ck_assert_int_eq(runlog_open(&rl, path, &st), -1);
        ck_assert_h5_closed();
    ck_assert_h5_closed();
        ck_assert_msg_has(&st, path);
        ck_assert_msg_has(&st, want);
    }
}
END_TEST

/* Old/foreign run files name the version. */
START_TEST(test_run_version)
{
    char path[128];
    snprintf(path, sizeof path, "%s/run.h5", dir);
    make_run(path);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    H5Adelete(f, "format_version");
    H5Aclose(H5Acreate2(f, "format_version", H5T_STD_I32LE, H5Screate(H5S_SCALAR),
                        H5P_DEFAULT, H5P_DEFAULT));
    H5Fclose(f);
    runlog rl;
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(runlog_open(&rl, path, &st), -1);
    ck_assert_h5_closed();
    ck_assert_msg_has(&st, "attribute 'format_version' is not a string");
    f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    H5Adelete(f, "format_version");
    hid_t t = H5Tcopy(H5T_C_S1), s = H5Screate(H5S_SCALAR);
    H5Tset_size(t, 2);
    hid_t a = H5Acreate2(f, "format_version", t, s, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, "7");
    H5Aclose(a);
    H5Tclose(t);
    H5Sclose(s);
    H5Fclose(f);
    status_clear(&st);
    ck_assert_int_eq(runlog_open(&rl, path, &st), -1);
    ck_assert_h5_closed();
    ck_assert_msg_has(&st, "run file format version '7' is not supported");
    /* and a good one still opens */
    make_run(path);
    status_clear(&st);
    ck_assert_int_eq(runlog_open(&rl, path, &st), 0);
    runlog_free(&rl);
}
END_TEST

/* Item 3: a data set whose `format` is an array of strings (variable
 * length: SIGSEGV; fixed length: heap overflow). */
START_TEST(test_dataset_format_array)
{
    char path[128];
    snprintf(path, sizeof path, "%s/ds.h5", dir);
    for (int vlen = 0; vlen < 2; vlen++) {
        hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
        put_str_attr(f, "format", 500, 120, vlen);
        H5Fclose(f);
        cc_status st;
        status_clear(&st);
        ck_assert_ptr_null(dataset_open(path, &st));
    ck_assert_h5_closed();
        ck_assert_h5_closed();
        ck_assert_msg_has(&st, path);
        ck_assert_msg_has(&st, "root attribute 'format' is not a single string");
    }
}
END_TEST

/* The checkpoint's string attributes follow the same rule. */
START_TEST(test_checkpoint_attr_array)
{
    char path[128];
    snprintf(path, sizeof path, "%s/ck.h5", dir);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    put_str_attr(f, "model", 500, 120, 1);
    H5Fclose(f);
    char buf[64];
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(checkpoint_read_attr_string(path, "model", buf, sizeof buf, &st), -1);
    ck_assert_h5_closed();
    ck_assert_msg_has(&st, "root attribute 'model' is not a single string");
}
END_TEST


static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
}

/* Item 4: the tail of a long comment became a key (lr = 7 was set). */
START_TEST(test_ini_long_comment)
{
    char path[128], text[2048] = "[fpn_train]\n; ";
    snprintf(path, sizeof path, "%s/x.ini", dir);
    memset(text + strlen(text), 'x', 400);
    text[414] = '\0';
    strcat(text, " lr = 7\nepochs = 3\n");
    write_text(path, text);
    cc_config c, d;
    config_defaults(&c);
    config_defaults(&d);
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(config_load(&c, path, &st), 0);
    ck_assert(c.fpn_train.lr == d.fpn_train.lr);
    ck_assert_int_eq(c.fpn_train.epochs, 3);
    /* the same in a sweep file: the tail is no key (it would be unknown) */
    strcpy(text, "[sweep]\n# ");
    memset(text + strlen(text), 'y', 400);
    text[410] = '\0';
    strcat(text, " grid.fpn_train.lr = 7,8\n");
    write_text(path, text);
    sweep_spec sp;
    sweep_spec_init(&sp);
    ck_assert_msg(sweep_load(&sp, path, &st) == 0, "%s", st.msg);
    ck_assert_int_eq(sp.naxes, 0);
    sweep_spec_free(&sp);
    ck_assert_int_eq(sweep_file_is_sweep(path), 1);
}
END_TEST

/* Item 4: a long legitimate value works, and line numbers stay right. */
START_TEST(test_ini_long_value_and_line)
{
    char path[128], text[2048], file[400], want[300];
    snprintf(path, sizeof path, "%s/x.ini", dir);
    memset(file, 'd', 300);
    file[0] = '/';
    file[300] = '\0';
    snprintf(text, sizeof text, "[data]\nfile = %s\n\n[fpn_train]\nlr = fast\n", file);
    write_text(path, text);
    cc_config c;
    config_defaults(&c);
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(config_load(&c, path, &st), -1);
    ck_assert_str_eq(c.data_file, file);
    snprintf(want, sizeof want, "%s:5: fpn_train.lr: 'fast' is not a number", path);
    ck_assert_msg_has(&st, want);
}
END_TEST

/* Item 4: a line over the limit is refused with its number; item 13: a
 * key before any section names that line and the problem. */
START_TEST(test_ini_refusals)
{
    char path[128], want[300];
    snprintf(path, sizeof path, "%s/x.ini", dir);
    size_t big = INI_LINE_MAX + 10;
    char *text = malloc(big + 64);
    strcpy(text, "[data]\n\nfile = ");
    memset(text + strlen(text), 'z', big);
    strcpy(text + big, "\n");
    write_text(path, text);
    free(text);
    cc_config c;
    config_defaults(&c);
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(config_load(&c, path, &st), -1);
    snprintf(want, sizeof want, "%s:3: line longer than", path);
    ck_assert_msg_has(&st, want);

    write_text(path, "; header\n\nlr = 1\n[fpn_train]\n");
    status_clear(&st);
    ck_assert_int_eq(config_load(&c, path, &st), -1);
    snprintf(want, sizeof want, "%s:3: key 'lr' before any [section]", path);
    ck_assert_msg_has(&st, want);

    write_text(path, "[sweep]\nbase = a\nnonsense\n");
    sweep_spec sp;
    sweep_spec_init(&sp);
    status_clear(&st);
    ck_assert_int_eq(sweep_load(&sp, path, &st), -1);
    snprintf(want, sizeof want, "%s:3: syntax error", path);
    ck_assert_msg_has(&st, want);
    sweep_spec_free(&sp);
}
END_TEST

/* A data set of n 8x8 images (all train, scene = index), masks on those
 * with mask_every > 0 && i % mask_every == 0; mask value mval, count cnt. */
static void make_ds(const char *path, int n, int mask_every, float mval, int cnt)
{
    cc_status st;
    status_clear(&st);
    dataset_writer *wr = dataset_writer_open(path, 8, 8, &st);
    ck_assert_msg(wr != NULL, "%s", st.msg);
    float img[64], mask[64];
    for (int k = 0; k < 64; k++) {
        img[k] = (float)k / 64;
        mask[k] = mval;
    }
    for (int i = 0; i < n; i++) {
        dataset_record r = {cnt, 1, 1, 1, i, i % 2 ? DATASET_VAL : DATASET_TRAIN, NULL};
        int m = mask_every > 0 && i % mask_every < 2;
        ck_assert_msg(dataset_writer_append(wr, img, m ? mask : NULL, &r, &st) == 0, "%s", st.msg);
    }
    ck_assert_msg(dataset_writer_close(wr, 1, &st) == 0, "%s", st.msg);
}

/* Item 5: the FPN trains on the samples with masks, and fails clearly
 * when none has one. */
START_TEST(test_fpn_masked_only)
{
    char path[128];
    snprintf(path, sizeof path, "%s/ds.h5", dir);
    make_ds(path, 12, 4, 0.5f, 3);     /* masks on 0,1,4,5,8,9 */
    cc_status st;
    status_clear(&st);
    cc_loader *L = loader_open(path, DATASET_TRAIN, 2, 1, LOADER_MASKED | LOADER_KEEP_LAST, &st);
    ck_assert_msg(L != NULL, "%s", st.msg);
    ck_assert_int_eq(loader_size(L), 3);
    loader_epoch_begin(L, 0);
    loader_batch b;
    int seen = 0;
    while (loader_next(L, &b))
        for (int i = 0; i < b.n; i++, seen++) ck_assert_int_eq(b.has_mask[i], 1);
    ck_assert_int_eq(seen, 3);
    loader_close(L);
    make_ds(path, 6, 0, 0.5f, 3);
    status_clear(&st);
    ck_assert_ptr_null(loader_open(path, DATASET_TRAIN, 2, 1, LOADER_MASKED, &st));
    ck_assert_msg_has(&st, "none of the 3 images of the train split has a mask");
    cc_config c;
    config_defaults(&c);
    char buf[300];
    snprintf(buf, sizeof buf, "data.file=%s", path);
    config_set(&c, buf, NULL);
    snprintf(buf, sizeof buf, "run.out_dir=%s/run", dir);
    config_set(&c, buf, NULL);
    config_set(&c, "run.threads=1", NULL);
    status_clear(&st);
    ck_assert_int_eq(train_fpn(&c, TRAIN_FRESH, &st), -1);
    ck_assert_msg_has(&st, "has a mask");
    /* item 10: the failed run leaves no directory with only config.ini */
    snprintf(buf, sizeof buf, "%s/run", dir);
    ck_assert_int_ne(access(buf, F_OK), 0);
}
END_TEST

/* Item 7: --resume with no checkpoint is an error, not a fresh start. */
START_TEST(test_resume_needs_checkpoint)
{
    char path[128], buf[300];
    snprintf(path, sizeof path, "%s/ds.h5", dir);
    make_ds(path, 8, 1, 0.5f, 3);
    cc_config c;
    config_defaults(&c);
    snprintf(buf, sizeof buf, "data.file=%s", path);
    config_set(&c, buf, NULL);
    snprintf(buf, sizeof buf, "run.out_dir=%s/run", dir);
    config_set(&c, buf, NULL);
    config_set(&c, "run.threads=1", NULL);
    config_set(&c, "fpn.depth=2", NULL);
    config_set(&c, "fpn.width=4", NULL);
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(train_fpn(&c, TRAIN_RESUME, &st), -1);
    ck_assert_msg_has(&st, "fpn_last.h5: --resume: no checkpoint to resume from");
}
END_TEST

/* Item 7: bad values in a data set are refused when read. */
START_TEST(test_dataset_bad_values)
{
    char path[128];
    snprintf(path, sizeof path, "%s/ds.h5", dir);
    make_ds(path, 4, 1, 0.5f, -2);
    cc_status st;
    status_clear(&st);
    ck_assert_ptr_null(dataset_open(path, &st));
    ck_assert_h5_closed();
    ck_assert_msg_has(&st, "/counts[0] = -2 is negative");
    make_ds(path, 4, 1, -5.0f, 3);
    status_clear(&st);
    cc_dataset *ds = dataset_open(path, &st);
    ck_assert_msg(ds != NULL, "%s", st.msg);
    float m[64];
    ck_assert_int_eq(dataset_read_masks(ds, 1, 1, m, &st), -1);
    ck_assert_msg_has(&st, "/masks[1] has the value -5");
    dataset_close(ds);
    status_clear(&st);
    ck_assert_ptr_null(loader_open(path, DATASET_TRAIN, 2, 1, 0, &st));
    ck_assert_msg_has(&st, "masks must lie in [0, 1]");
}
END_TEST

/* Item 13: a /counts shorter than /images names both; a 2-D /images is
 * shown with its real shape. */
START_TEST(test_dataset_shape_messages)
{
    char path[128];
    snprintf(path, sizeof path, "%s/ds.h5", dir);
    make_ds(path, 4, 1, 0.5f, 3);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    const char *one[] = {"counts", "focus", "stain", "site", "scene"};
    for (int k = 0; k < 5; k++) {
        H5Ldelete(f, one[k], H5P_DEFAULT);
        hsize_t n = 2;
        hid_t s = H5Screate_simple(1, &n, NULL);
        H5Dclose(H5Dcreate2(f, one[k], H5T_STD_I32LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
        H5Sclose(s);
    }
    H5Fclose(f);
    cc_status st;
    status_clear(&st);
    ck_assert_ptr_null(dataset_open(path, &st));
    ck_assert_h5_closed();
    ck_assert_msg_has(&st, "/images has 4 entries but /counts has 2");
    make_ds(path, 4, 1, 0.5f, 3);
    f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    H5Ldelete(f, "images", H5P_DEFAULT);
    hsize_t d2[2] = {8, 8};
    hid_t s = H5Screate_simple(2, d2, NULL);
    H5Dclose(H5Dcreate2(f, "images", H5T_NATIVE_UINT8, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5Sclose(s);
    H5Fclose(f);
    status_clear(&st);
    ck_assert_ptr_null(dataset_open(path, &st));
    ck_assert_h5_closed();
    ck_assert_msg_has(&st, "/images has shape (8,8), expected (4,1,8,8)");
}
END_TEST

/* Item 6: NaN weights and negative running variances are refused. */
START_TEST(test_checkpoint_values)
{
    char path[128];
    snprintf(path, sizeof path, "%s/ck.h5", dir);
    cc_ctx ctx;
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(ctx_init(&ctx, 1, &st), 0);
    cc_params P;
    params_init(&P, &ctx);
    int64_t shape[1] = {4};
    int w = params_add(&P, "m/bn/weight", 1, shape, PARAM_TRAINABLE, &st);
    int v = params_add(&P, "m/bn/running_var", 1, shape, PARAM_BUFFER, &st);
    ck_assert_int_ge(w, 0);
    ck_assert_int_ge(v, 0);
    ck_assert_int_eq(params_finalize(&P, &st), 0);
    float *wv = P.value + P.p[w].offset, *vv = P.buf + P.p[v].offset;
    for (int i = 0; i < 4; i++) wv[i] = vv[i] = 1;
    for (int k = 0; k < 3; k++) {
        if (k == 1) wv[2] = NAN;
        if (k == 2) {
            wv[2] = 1;
            vv[3] = -0.5f;
        }
        ck_assert_msg(checkpoint_save(path, &P, NULL, NULL, 0, &st) == 0, "%s", st.msg);
        status_clear(&st);
        int r = checkpoint_load(path, &P, NULL, &st);
        if (k == 0) {
            ck_assert_msg(r == 0, "%s", st.msg);
            continue;
        }
        ck_assert_int_eq(r, -1);
        ck_assert_h5_closed();
        ck_assert_msg_has(&st, k == 1 ? "/params/m/bn/weight[2] is nan (not finite)"
                                      : "/params/m/bn/running_var[3] is -0.5 (a negative variance)");
    }
    params_free(&P);
    ctx_free(&ctx);
}
END_TEST

/* Item 7: -c DIRECTORY is an error, not an empty configuration. */
START_TEST(test_config_directory)
{
    cc_config c;
    config_defaults(&c);
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(config_load(&c, dir, &st), -1);
    ck_assert_msg_has(&st, "Is a directory");
}
END_TEST

/* Item 7: import --out naming one of its own inputs is refused. */
START_TEST(test_import_out_is_input)
{
    char img[128], in[300];
    snprintf(img, sizeof img, "%s/img", dir);
    ck_assert_int_eq(mkdir(img, 0700), 0);
    snprintf(in, sizeof in, "%s/SIMCEPImages_A05_C18_F1_s01_w1.TIF", img);
    write_text(in, "not really a tiff");
    import_opts o = {0};
    o.images_dir = img;
    o.out_path = in;
    o.width = 8;
    o.height = 8;
    o.frac[0] = 1;
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(import_run(&o, NULL, NULL, &st), -1);
    ck_assert_msg_has(&st, "the output is the input");
    struct stat sb;
    ck_assert_int_eq(stat(in, &sb), 0);
    ck_assert_int_eq((int)sb.st_size, 17);
}
END_TEST

/* Item 13: an over-long number in a BBBC name is out of range, not "not a
 * number". */
START_TEST(test_bbbc_big_number)
{
    bbbc_name nm;
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(bbbc_name_parse("SIMCEPImages_A05_C99999999999_F1_s01_w1.TIF", &nm, &st), -1);
    ck_assert_msg_has(&st, "out of range");
}
END_TEST

static int is_png_file(const char *path)
{
    unsigned char sig[8] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t n = fread(sig, 1, 8, f);
    fclose(f);
    return n == 8 && !memcmp(sig, "\x89PNG\r\n\x1a\n", 8);
}

/* Item 8: a symlink is written through (the link stays a link). */
START_TEST(test_atomic_symlink)
{
    char target[128], link[128];
    snprintf(target, sizeof target, "%s/real.png", dir);
    snprintf(link, sizeof link, "%s/link.png", dir);
    write_text(target, "old");
    ck_assert_int_eq(symlink("real.png", link), 0);
    uint8_t px[4] = {0, 64, 128, 255};
    cc_status st;
    status_clear(&st);
    ck_assert_msg(png_write_gray(link, 2, 2, px, &st) == 0, "%s", st.msg);
    struct stat sb;
    ck_assert_int_eq(lstat(link, &sb), 0);
    ck_assert(S_ISLNK(sb.st_mode));
    ck_assert(is_png_file(target));
    /* a dangling link: its target is created */
    unlink(target);
    ck_assert_msg(png_write_gray(link, 2, 2, px, &st) == 0, "%s", st.msg);
    ck_assert_int_eq(lstat(link, &sb), 0);
    ck_assert(S_ISLNK(sb.st_mode));
    ck_assert(is_png_file(target));
}
END_TEST

/* Item 8: a FIFO (like a device or /dev/stdout) is written directly and
 * stays a FIFO; a directory is refused; /dev paths are direct. */
START_TEST(test_atomic_fifo_device)
{
    char fifo[128];
    snprintf(fifo, sizeof fifo, "%s/pipe", dir);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {   /* reader: exit 0 iff it got a PNG */
        unsigned char sig[8] = {0};
        FILE *f = fopen(fifo, "rb");
        size_t n = f ? fread(sig, 1, 8, f) : 0;
        char sink[256];
        while (f && fread(sink, 1, sizeof sink, f) > 0) {}
        _exit(n == 8 && !memcmp(sig, "\x89PNG", 4) ? 0 : 1);
    }
    uint8_t px[4] = {0, 64, 128, 255};
    cc_status st;
    status_clear(&st);
    ck_assert_msg(png_write_gray(fifo, 2, 2, px, &st) == 0, "%s", st.msg);
    int status;
    waitpid(pid, &status, 0);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    struct stat sb;
    ck_assert_int_eq(lstat(fifo, &sb), 0);
    ck_assert(S_ISFIFO(sb.st_mode));
    fs_atomic a;
    ck_assert_int_eq(fs_atomic_begin(&a, "/dev/stdout", &st), 0);
    ck_assert_int_eq(a.direct, 1);
    ck_assert_str_eq(a.tmp, "/dev/stdout");
    fs_atomic_abort(&a);
    ck_assert_int_eq(fs_atomic_begin(&a, "/dev/full", &st), 0);
    ck_assert_int_eq(a.direct, 1);
    fs_atomic_abort(&a);
    /* a redirection target (a regular file behind /dev/fd/N) is written
     * through, not replaced */
    char reg[128], alias[64];
    snprintf(reg, sizeof reg, "%s/redirected", dir);
    int fd = open(reg, O_WRONLY | O_CREAT | O_APPEND, 0600);
    ck_assert_int_ge(fd, 0);
    snprintf(alias, sizeof alias, "/dev/fd/%d", fd);
    ck_assert_int_eq(fs_atomic_begin(&a, alias, &st), 0);
    ck_assert_int_eq(a.direct, 1);
    fs_atomic_abort(&a);
    close(fd);
    unlink(reg);
    /* an ordinary file under /dev/shm is still written atomically */
    char shm[64];
    snprintf(shm, sizeof shm, "/dev/shm/cc_hostile_%ld", (long)getpid());
    if (access("/dev/shm", W_OK) == 0) {
        ck_assert_int_eq(fs_atomic_begin(&a, shm, &st), 0);
        ck_assert_int_eq(a.direct, 0);
        fs_atomic_abort(&a);
    }
    ck_assert_int_eq(stat("/dev/full", &sb), 0);
    ck_assert(S_ISCHR(sb.st_mode));
    status_clear(&st);
    ck_assert_int_eq(fs_atomic_begin(&a, dir, &st), -1);
    ck_assert_msg_has(&st, "is a directory");
}
END_TEST

/* Item 9: temp names carry host and PID; a later write removes only this
 * host's temp files of dead processes. */
START_TEST(test_atomic_stale_temps)
{
    char host[128], path[128], dead[300], other[300], alive[300];
    gethostname(host, sizeof host);
    host[sizeof host - 1] = '\0';
    snprintf(path, sizeof path, "%s/out.png", dir);
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    waitpid(pid, NULL, 0);      /* pid is now dead */
    snprintf(dead, sizeof dead, "%s.tmp.%s.%ld", path, host, (long)pid);
    snprintf(other, sizeof other, "%s.tmp.%s-elsewhere.%ld", path, host, (long)pid);
    snprintf(alive, sizeof alive, "%s.tmp.%s.%ld", path, host, (long)getppid());
    write_text(dead, "x");
    write_text(other, "x");
    write_text(alive, "x");
    fs_atomic a;
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(fs_atomic_begin(&a, path, &st), 0);
    char want[300];
    snprintf(want, sizeof want, "%s.tmp.%s.%ld", path, host, (long)getpid());
    ck_assert_str_eq(a.tmp, want);
    fs_atomic_abort(&a);
    ck_assert_int_ne(access(dead, F_OK), 0);
    ck_assert_int_eq(access(other, F_OK), 0);
    ck_assert_int_eq(access(alive, F_OK), 0);
}
END_TEST

/* Item 9: SIGTERM / SIGINT during a write remove the temp file and the
 * staging directory, and the signal still ends the process. */
START_TEST(test_atomic_signal_cleanup)
{
    char path[128], stage[128];
    snprintf(path, sizeof path, "%s/out.h5", dir);
    snprintf(stage, sizeof stage, "%s/.images", dir);
    static const int sigs[2] = {SIGTERM, SIGINT};
    for (int k = 0; k < 2; k++) {
        int fd[2];
        ck_assert_int_eq(pipe(fd), 0);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            signal(sigs[k], SIG_DFL);
            fs_atomic a, d;
            if (fs_atomic_begin(&a, path, NULL) || fs_atomic_begin_dir(&d, stage, NULL)) _exit(3);
            FILE *f = fopen(a.tmp, "w");
            if (!f || mkdir(d.tmp, 0700)) _exit(4);
            fputs("partial", f);
            fflush(f);
            char inner[sizeof d.tmp + 16];
            snprintf(inner, sizeof inner, "%s/img.tif", d.tmp);
            FILE *g = fopen(inner, "w");
            if (!g) _exit(5);
            fclose(g);
            if (write(fd[1], "r", 1) != 1) _exit(6);
            pause();
            _exit(7);
        }
        close(fd[1]);
        char c;
        ck_assert_int_eq(read(fd[0], &c, 1), 1);
        close(fd[0]);
        kill(pid, sigs[k]);
        int status;
        waitpid(pid, &status, 0);
        ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == sigs[k], "status %d", status);
        char cmd[300];
        snprintf(cmd, sizeof cmd, "test -z \"$(ls -A %s)\"", dir);
        ck_assert_msg(system(cmd) == 0, "temp files left after signal %d", sigs[k]);
    }
}
END_TEST

/* Item 10: a FIFO given as an input image is refused, not waited on. */
START_TEST(test_tiff_fifo)
{
    char fifo[128];
    snprintf(fifo, sizeof fifo, "%s/img.tif", dir);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    cc_image img;
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(tiff_read_gray(fifo, &img, &st), -1);
    ck_assert_msg_has(&st, "not a regular file");
}
END_TEST

/* Found by fuzz/fuzz_tiff: a header claiming many samples per pixel made
 * the decoder allocate gigabytes. */
START_TEST(test_tiff_many_samples)
{
    char path[128];
    snprintf(path, sizeof path, "%s/wide.tif", dir);
    TIFF *t = TIFFOpen(path, "w");
    ck_assert_ptr_nonnull(t);
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, 4);
    TIFFSetField(t, TIFFTAG_IMAGELENGTH, 2);
    TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 8);
    TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, 100);
    TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK);
    TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
    uint8_t row[400] = {0};
    for (int y = 0; y < 2; y++) ck_assert_int_eq(TIFFWriteScanline(t, row, (uint32_t)y, 0), 1);
    TIFFClose(t);
    cc_image img;
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(tiff_read_gray(path, &img, &st), -1);
    ck_assert_msg_has(&st, "100 samples per pixel (at most 8)");
}
END_TEST

/* Found by fuzz/fuzz_checkpoint (UBSan: qsort of NULL): an empty /params. */
START_TEST(test_checkpoint_empty_params)
{
    char path[128];
    snprintf(path, sizeof path, "%s/ck.h5", dir);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t t = H5Tcopy(H5T_C_S1), s = H5Screate(H5S_SCALAR);
    H5Tset_size(t, strlen(CKPT_FORMAT) + 1);
    hid_t a = H5Acreate2(f, "format", t, s, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, CKPT_FORMAT);
    H5Aclose(a);
    int64_t one = CKPT_FORMAT_VERSION;
    a = H5Acreate2(f, "format_version", H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &one);
    H5Aclose(a);
    H5Tclose(t);
    H5Sclose(s);
    H5Gclose(H5Gcreate2(f, "params", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5Fclose(f);
    cc_ctx ctx;
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(ctx_init(&ctx, 1, &st), 0);
    cc_params P;
    params_init(&P, &ctx);
    int64_t shape[1] = {4};
    ck_assert_int_ge(params_add(&P, "m/w", 1, shape, PARAM_TRAINABLE, &st), 0);
    ck_assert_int_eq(params_finalize(&P, &st), 0);
    ck_assert_int_eq(checkpoint_load(path, &P, NULL, &st), -1);
    ck_assert_h5_closed();
    ck_assert_msg_has(&st, "missing m/w");
    params_free(&P);
    ctx_free(&ctx);
}
END_TEST

/* Item 12: decoded bytes in flight are bounded over import's threads: with
 * a budget of one image, images are decoded one at a time (and a budget
 * below one image still imports). */
START_TEST(test_import_decode_budget)
{
    char img[128], path[300], out[160];
    snprintf(img, sizeof img, "%s/img", dir);
    ck_assert_int_eq(mkdir(img, 0700), 0);
    static uint8_t px[64 * 64];
    for (int i = 0; i < 64 * 64; i++) px[i] = (uint8_t)i;
    cc_status st;
    status_clear(&st);
    for (int k = 0; k < 8; k++) {
        snprintf(path, sizeof path, "%s/SIMCEPImages_A05_C%d_F1_s%02d_w1.TIF", img, 1 + k % 4,
                 1 + k / 4);
        ck_assert_msg(tiff_write_gray(path, 64, 64, 8, px, &st) == 0, "%s", st.msg);
    }
    const uint64_t one = 64 * 64 * 8;      /* 16-bit samples, 16-bit gray, float */
    for (int k = 0; k < 2; k++) {
        snprintf(out, sizeof out, "%s/ds%d.h5", dir, k);
        import_opts o;
        import_opts_default(&o);
        o.images_dir = img;
        o.out_path = out;
        o.width = 32;
        o.height = 32;
        o.threads = 4;
        o.decode_budget = k ? one / 2 : one;
        import_summary sum;
        status_clear(&st);
        ck_assert_msg(import_run(&o, NULL, &sum, &st) == 0, "%s", st.msg);
        ck_assert_int_eq(sum.images, 8);
        ck_assert_msg(sum.peak_decode == one, "peak %llu, one image %llu",
                      (unsigned long long)sum.peak_decode, (unsigned long long)one);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("hostile");
    TCase *tc = tcase_create("hdf5");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_run_column_longer_than_label);
    tcase_add_test(tc, test_run_label_2d);
    tcase_add_test(tc, test_run_string_array_attrs);
    tcase_add_test(tc, test_run_version);
    tcase_add_test(tc, test_dataset_format_array);
    tcase_add_test(tc, test_checkpoint_attr_array);
    suite_add_tcase(s, tc);
    tc = tcase_create("ini");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_ini_long_comment);
    tcase_add_test(tc, test_ini_long_value_and_line);
    tcase_add_test(tc, test_ini_refusals);
    suite_add_tcase(s, tc);
    tc = tcase_create("input");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_fpn_masked_only);
    tcase_add_test(tc, test_resume_needs_checkpoint);
    tcase_add_test(tc, test_dataset_bad_values);
    tcase_add_test(tc, test_dataset_shape_messages);
    tcase_add_test(tc, test_checkpoint_values);
    tcase_add_test(tc, test_config_directory);
    tcase_add_test(tc, test_import_out_is_input);
    tcase_add_test(tc, test_bbbc_big_number);
    tcase_add_test(tc, test_import_decode_budget);
    suite_add_tcase(s, tc);
    tc = tcase_create("output");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_atomic_symlink);
    tcase_add_test(tc, test_atomic_fifo_device);
    tcase_add_test(tc, test_atomic_stale_temps);
    tcase_add_test(tc, test_atomic_signal_cleanup);
    tcase_add_test(tc, test_tiff_fifo);
    tcase_add_test(tc, test_tiff_many_samples);
    tcase_add_test(tc, test_checkpoint_empty_params);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
