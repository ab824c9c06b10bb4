/* test_hostile.c - hostile and foreign input files (issue 15): every case
 * here crashed, corrupted memory or passed silently before its fix; each
 * must now be refused with a message naming the file and the problem. */
#include <check.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "src/checkpoint.h"
#include "src/dataset.h"
#include "src/ini_read.h"
#include "src/runlog.h"
#include "src/sweep.h"

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
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
