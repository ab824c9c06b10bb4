/* test_runlog.c - HDF5 run files: round trip, truncation, atomicity. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "src/run/runlog.h"
#include "tests/testmain.h"

static char dir[64];

static void setup(void)
{
    strcpy(dir, "/tmp/cc_runlog_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "chmod -R u+w %s; rm -rf %s", dir, dir);
    ck_assert_int_eq(system(cmd), 0);
}

static const char *cols[] = {"epoch", "loss", "mae"};

/* A new in-memory run log for dir/run.h5 (path: its name) with the
 * default configuration; st cleared. */
static void run_new(runlog *rl, char *path, size_t len, cc_status *st)
{
    cc_config cfg;
    config_defaults(&cfg);
    snprintf(path, len, "%s/run.h5", dir);
    status_clear(st);
    ck_assert_int_eq(runlog_create(rl, path, &cfg, st), 0);
}

START_TEST(test_roundtrip)
{
    cc_config cfg;
    config_defaults(&cfg);
    config_set(&cfg, "fpn.width=32", NULL);
    char path[128];
    snprintf(path, sizeof path, "%s/run.h5", dir);
    runlog rl;
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(runlog_create(&rl, path, &cfg, &st), 0);
    runlog_table *t = runlog_table_get(&rl, "metrics", 3, cols, &st);
    ck_assert_ptr_nonnull(t);
    for (int e = 0; e < 5; e++) {
        double row[3] = {e, 1.0 / (e + 1), e == 2 ? NAN : 0.5 * e};
        ck_assert_int_eq(runlog_append(t, e % 2 ? "val" : "train", row, &st), 0);
        ck_assert_msg(runlog_flush(&rl, &st) == 0, "%s", st.msg);
    }
    runlog_table *ev = runlog_table_get(&rl, "eval/test", 3, cols, &st);
    double row[3] = {9, 8, 7};
    runlog_append(ev, "overall", row, &st);
    ck_assert_int_eq(runlog_flush(&rl, &st), 0);

    runlog back;
    ck_assert_msg(runlog_open(&back, path, &st) == 0, "%s", st.msg);
    ck_assert_str_eq(runlog_attr_get(&back, "config.fpn.width"), "32");
    ck_assert_str_eq(runlog_attr_get(&back, "format"), "cellcount-run");
    ck_assert_ptr_nonnull(runlog_attr_get(&back, "onednn_version"));
    runlog_table *bt = runlog_table_find(&back, "metrics");
    ck_assert_ptr_nonnull(bt);
    ck_assert_uint_eq(bt->nrows, 5);
    ck_assert_int_eq(runlog_col(bt, "mae"), 2);
    ck_assert_double_eq(bt->values[4 * 3 + 1], 0.2);
    ck_assert(isnan(bt->values[2 * 3 + 2]));
    ck_assert_str_eq(bt->labels[3], "val");
    runlog_table *be = runlog_table_find(&back, "eval/test");
    ck_assert_ptr_nonnull(be);
    ck_assert_str_eq(be->labels[0], "overall");
    runlog_truncate(bt, "epoch", 2);
    ck_assert_uint_eq(bt->nrows, 3);
    runlog_free(&back);
    runlog_free(&rl);
    if (access("/usr/bin/h5dump", X_OK) == 0) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "h5dump -H %s > /dev/null", path);
        ck_assert_int_eq(system(cmd), 0);
    }
}
END_TEST

START_TEST(test_errors)
{
    cc_config cfg;
    config_defaults(&cfg);
    char path[128], sub[96];
    snprintf(sub, sizeof sub, "%s/ro", dir);
    ck_assert_int_eq(mkdir(sub, 0555), 0);
    snprintf(path, sizeof path, "%s/run.h5", sub);
    runlog rl;
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(runlog_create(&rl, path, &cfg, &st), 0);
    if (geteuid() != 0) { /* root ignores directory permissions */
        ck_assert_int_eq(runlog_flush(&rl, &st), -1);
        ck_assert_msg(strstr(st.msg, "ro/run.h5"), "%s", st.msg);
    }
    runlog_free(&rl);
    /* a garbage file and a truncated run file are refused, naming the file */
    snprintf(path, sizeof path, "%s/junk.h5", dir);
    FILE *f = fopen(path, "w");
    fputs("not hdf5 at all", f);
    fclose(f);
    status_clear(&st);
    ck_assert_int_eq(runlog_open(&rl, path, &st), -1);
    ck_assert_msg(strstr(st.msg, "junk.h5"), "%s", st.msg);

    snprintf(path, sizeof path, "%s/good.h5", dir);
    ck_assert_int_eq(runlog_create(&rl, path, &cfg, &st), 0);
    runlog_table *t = runlog_table_get(&rl, "metrics", 3, cols, &st);
    double row[3] = {1, 2, 3};
    runlog_append(t, "x", row, &st);
    ck_assert_int_eq(runlog_flush(&rl, &st), 0);
    runlog_free(&rl);
    struct stat sb;
    stat(path, &sb);
    ck_assert_int_eq(truncate(path, sb.st_size / 2), 0);
    status_clear(&st);
    ck_assert_int_eq(runlog_open(&rl, path, &st), -1);
    ck_assert_msg(strstr(st.msg, "good.h5"), "%s", st.msg);
    status_clear(&st);
    ck_assert_int_eq(runlog_open(&rl, "/nonexistent/run.h5", &st), -1);
}
END_TEST

static char *slurp(const char *path, long *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    *n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)*n + 1);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(fread(b, 1, (size_t)*n, f), (size_t)*n);
    fclose(f);
    return b;
}

/* The same run log written in two different seconds is the same bytes:
 * HDF5's object timestamps are off. */
/* A table of labels only (no number columns) that grows past its first
 * 64-row allocation: realloc(p, 0) used to free the values and leave the
 * pointer behind, so reading such a file freed it twice (fuzz_runlog). */
START_TEST(test_labels_only_table)
{
    char path[128];
    runlog rl;
    cc_status st;
    run_new(&rl, path, sizeof path, &st);
    runlog_table *t = runlog_table_get(&rl, "names", 0, NULL, &st);
    ck_assert_ptr_nonnull(t);
    for (int r = 0; r < 200; r++) {
        char label[16];
        snprintf(label, sizeof label, "row%d", r);
        ck_assert_msg(runlog_append(t, label, NULL, &st) == 0, "%s", st.msg);
    }
    ck_assert_msg(runlog_flush(&rl, &st) == 0, "%s", st.msg);
    runlog back;
    ck_assert_msg(runlog_open(&back, path, &st) == 0, "%s", st.msg);
    runlog_table *bt = runlog_table_find(&back, "names");
    ck_assert_ptr_nonnull(bt);
    ck_assert_uint_eq(bt->nrows, 200);
    ck_assert_int_eq(bt->ncols, 0);
    ck_assert_str_eq(bt->labels[199], "row199");
    runlog_free(&back);
    runlog_free(&rl);
}
END_TEST

/* Many tables and attributes (each tagged evaluation adds some; 32 tables
 * and 128 attributes were once the limit): all written and read back, and
 * a table pointer taken early stays valid while others are added.  The cap
 * against hostile files is named when reached. */
START_TEST(test_many_tables)
{
    char path[128], name[64], value[32];
    runlog rl;
    cc_status st;
    run_new(&rl, path, sizeof path, &st);
    runlog_table *first = runlog_table_get(&rl, "eval/test", 3, cols, &st);
    ck_assert_ptr_nonnull(first);
    const double row[3] = {1, 2, 3};
    ck_assert_int_eq(runlog_append(first, "overall", row, &st), 0);
    const char *v0 = runlog_attr_get(&rl, "format");
    for (int i = 0; i < 150; i++) {
        snprintf(name, sizeof name, "eval/test.tag%d", i);
        runlog_table *t = runlog_table_fresh(&rl, name, 3, cols, &st);
        ck_assert_msg(t != NULL, "%s", st.msg);
        const double r[3] = {i, i + 0.5, -i};
        ck_assert_int_eq(runlog_append(t, name, r, &st), 0);
        snprintf(name, sizeof name, "counter.sigma_scale.tag%d", i);
        snprintf(value, sizeof value, "%d", i);
        ck_assert_int_eq(runlog_set_attr(&rl, name, value, &st), 0);
    }
    ck_assert_ptr_eq(runlog_table_find(&rl, "eval/test"), first);
    ck_assert_ptr_eq(runlog_attr_get(&rl, "format"), v0);
    ck_assert_str_eq(v0, "cellcount-run");
    ck_assert_int_eq(runlog_flush(&rl, &st), 0);
    runlog_free(&rl);
    ck_assert_int_eq(runlog_open(&rl, path, &st), 0);
    ck_assert_int_eq(rl.ntables, 151);
    runlog_table *t = runlog_table_find(&rl, "eval/test.tag149");
    ck_assert(t && t->nrows == 1 && t->values[1] == 149.5);
    ck_assert_str_eq(runlog_attr_get(&rl, "counter.sigma_scale.tag77"), "77");
    t = runlog_table_find(&rl, "eval/test");
    ck_assert(t && t->nrows == 1 && t->values[2] == 3);
    for (int i = rl.ntables; i < RUNLOG_MAX_TABLES; i++) {
        snprintf(name, sizeof name, "x/%d", i);
        ck_assert_ptr_nonnull(runlog_table_get(&rl, name, 3, cols, &st));
    }
    status_clear(&st);
    ck_assert_ptr_null(runlog_table_get(&rl, "one/too/many", 3, cols, &st));
    ck_assert_msg(strstr(st.msg, "one/too/many") && strstr(st.msg, "4096"), "%s", st.msg);
    runlog_free(&rl);
}
END_TEST

START_TEST(test_identical_bytes)
{
    char path[128];
    runlog rl;
    cc_status st;
    run_new(&rl, path, sizeof path, &st);
    runlog_table *t = runlog_table_get(&rl, "eval/test", 3, cols, &st);
    double row[3] = {1, 2, 3};
    ck_assert_int_eq(runlog_append(t, "x", row, &st), 0);
    ck_assert_msg(runlog_flush(&rl, &st) == 0, "%s", st.msg);
    long n1, n2;
    char *b1 = slurp(path, &n1);
    for (time_t t0 = time(NULL); time(NULL) == t0;) usleep(10000);
    ck_assert_msg(runlog_flush(&rl, &st) == 0, "%s", st.msg);
    char *b2 = slurp(path, &n2);
    ck_assert_msg(n1 == n2 && !memcmp(b1, b2, (size_t)n1), "%s changed between two flushes", path);
    free(b1);
    free(b2);
    runlog_free(&rl);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("runlog");
    TCase *tc = tcase_create("runlog");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_roundtrip);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_identical_bytes);
    tcase_add_test(tc, test_labels_only_table);
    tcase_add_test(tc, test_many_tables);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
