/* test_hostile.c - hostile and foreign input files (issue 15; the output
 * side is in test_hostile_output.c): every case
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
#include "tests/testmain.h"
#include "tests/hostileutil.h"

char dir[64];

void setup(void)
{
    ck_assert_int_eq(tu_tmpdir_make(dir, sizeof dir, "cc_hostile"), 0);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void teardown(void)
{
    ck_assert_int_eq(tu_tmpdir_remove(dir), 0);
}

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


void write_text(const char *path, const char *text)
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
        dataset_record r = {cnt, 1, 1, 1, i, i % 2 ? DATASET_VAL : DATASET_TRAIN, NULL, NULL};
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
        o.stain = 1;   /* the files below are w1 */
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
    hostile_add_output_case(s);
    return tu_run(s);
}
