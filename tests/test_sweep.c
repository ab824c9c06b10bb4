/* test_sweep.c - `cellcount sweep` and `cellcount report`: grid expansion,
 * sweep files, the report table on synthetic run files, plots, and a tiny
 * real sweep (fail, resume, skip) through the cellcount executable. */
#include <check.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "src/sweep/report.h"
#include "src/sweep/sweep.h"
#include "src/train/train.h"

#include "tests/sweeputil.h"
#include "tests/testmain.h"

static int file_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

/* ---- grid expansion ------------------------------------------------- */

START_TEST(test_grid_product_order_names)
{
    sweep_spec s;
    sweep_spec_init(&s);
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(sweep_add_grid(&s, "fpn.width=32,64", "--grid", &st), 0);
    ck_assert_int_eq(sweep_add_grid(&s, "fpn.loss = nll, paper ,mse", "--grid", &st), 0);
    snprintf(s.out_dir, sizeof s.out_dir, "%s/out", dir);
    sweep_point *p;
    int n;
    ck_assert_msg(sweep_expand(&s, &p, &n, &st) == 0, "%s", st.msg);
    ck_assert_int_eq(n, 6);
    /* First axis slowest, file/command-line order. */
    static const char *want[] = {"fpn.width=32,fpn.loss=nll", "fpn.width=32,fpn.loss=paper",
                                 "fpn.width=32,fpn.loss=mse", "fpn.width=64,fpn.loss=nll",
                                 "fpn.width=64,fpn.loss=paper", "fpn.width=64,fpn.loss=mse"};
    for (int i = 0; i < 6; i++) {
        ck_assert_str_eq(p[i].name, want[i]);
        char d[256], ov[128];
        snprintf(d, sizeof d, "%s/out/%s", dir, want[i]);
        ck_assert_str_eq(p[i].dir, d);
        ck_assert_str_eq(sweep_point_override(&s, &p[i], 1, ov, sizeof ov),
                         strchr(want[i], ',') + 1);
    }
    free(p);
    /* The command line replaces a key's values, keeping its place. */
    ck_assert_int_eq(sweep_add_grid(&s, "fpn.width=8", "--grid", &st), 0);
    ck_assert_int_eq(sweep_expand(&s, &p, &n, &st), 0);
    ck_assert_int_eq(n, 3);
    ck_assert_str_eq(p[2].name, "fpn.width=8,fpn.loss=mse");
    free(p);
    sweep_spec_free(&s);
}
END_TEST

START_TEST(test_grid_names_sanitised)
{
    sweep_spec s;
    sweep_spec_init(&s);
    cc_status st;
    status_clear(&st);
    strcpy(s.out_dir, dir);
    ck_assert_int_eq(sweep_add_grid(&s, "data.file=a/b c.h5,x.h5", "--grid", &st), 0);
    ck_assert_int_eq(sweep_add_grid(&s, "counter.input=mask+image", "--grid", &st), 0);
    sweep_point *p;
    int n;
    ck_assert_msg(sweep_expand(&s, &p, &n, &st) == 0, "%s", st.msg);
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(p[0].name, "data.file=a_b_c.h5,counter.input=mask+image");
    free(p);
    /* Two values that sanitise to one name are refused. */
    ck_assert_int_eq(sweep_add_grid(&s, "data.file=a/b,a_b", "--grid", &st), 0);
    ck_assert_int_eq(sweep_expand(&s, &p, &n, &st), -1);
    ck_assert_ptr_nonnull(strstr(st.msg, "same directory name"));
    sweep_spec_free(&s);

    /* Long names are cut, end in a hash, and stay distinct. */
    sweep_spec_init(&s);
    strcpy(s.out_dir, dir);
    char long1[400], long2[400];
    memset(long1, 'a', 300);
    long1[300] = '\0';
    strcpy(long2, long1);
    long2[299] = 'b';
    char g[900];
    snprintf(g, sizeof g, "data.file=%s,%s", long1, long2);
    status_clear(&st);
    ck_assert_int_eq(sweep_add_grid(&s, g, "--grid", &st), 0);
    ck_assert_msg(sweep_expand(&s, &p, &n, &st) == 0, "%s", st.msg);
    ck_assert_int_eq(n, 2);
    ck_assert_uint_lt(strlen(p[0].name), SWEEP_NAME);
    ck_assert_uint_gt(strlen(p[0].name), 150);
    ck_assert_str_ne(p[0].name, p[1].name);
    ck_assert_ptr_nonnull(strchr(p[0].name, '~'));
    free(p);
    sweep_spec_free(&s);
}
END_TEST

START_TEST(test_grid_errors)
{
    sweep_spec s;
    sweep_spec_init(&s);
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(sweep_add_grid(&s, "fpn.widht=32", "--grid", &st), -1);
    ck_assert_msg(strstr(st.msg, "--grid") && strstr(st.msg, "fpn.widht"), "%s", st.msg);
    status_clear(&st);
    ck_assert_int_eq(sweep_add_grid(&s, "fpn.width=32,abc", "--grid", &st), -1);
    ck_assert_msg(strstr(st.msg, "'abc' is not an integer"), "%s", st.msg);
    status_clear(&st);
    ck_assert_int_eq(sweep_add_grid(&s, "fpn.width=32,,64", "--grid", &st), -1);
    ck_assert_msg(strstr(st.msg, "empty value"), "%s", st.msg);
    status_clear(&st);
    ck_assert_int_eq(sweep_add_grid(&s, "fpn.width=32,32", "--grid", &st), -1);
    ck_assert_msg(strstr(st.msg, "twice"), "%s", st.msg);
    status_clear(&st);
    ck_assert_int_eq(sweep_add_grid(&s, "run.threads=1,2", "--grid", &st), -1);
    ck_assert_msg(strstr(st.msg, "set by the sweep"), "%s", st.msg);
    status_clear(&st);
    ck_assert_int_eq(sweep_add_grid(&s, "fpnwidth", "--grid", &st), -1);
    status_clear(&st);
    ck_assert_int_eq(sweep_add_set(&s, "fpn.loss=bogus", "--set", &st), -1);
    ck_assert_msg(strstr(st.msg, "not one of"), "%s", st.msg);
    ck_assert_int_eq(s.naxes, 0);
    ck_assert_int_eq(s.nsets, 0);
    sweep_point *p;
    int n;
    status_clear(&st);
    strcpy(s.out_dir, dir);
    ck_assert_int_eq(sweep_expand(&s, &p, &n, &st), -1);
    ck_assert_msg(strstr(st.msg, "no grid keys"), "%s", st.msg);
    /* Combinations are validated as whole configurations up front. */
    status_clear(&st);
    ck_assert_int_eq(sweep_add_set(&s, "counter.finetune_fpn=true", "--set", &st), 0);
    ck_assert_int_eq(sweep_add_set(&s, "counter.precise_bn=0", "--set", &st), 0);
    ck_assert_int_eq(sweep_add_set(&s, "counter.ema=0", "--set", &st), 0);
    ck_assert_int_eq(sweep_add_set(&s, "counter.freeze_bn=0", "--set", &st), 0);
    ck_assert_int_eq(sweep_add_grid(&s, "counter.input=mask,image", "--grid", &st), 0);
    ck_assert_int_eq(sweep_expand(&s, &p, &n, &st), -1);
    ck_assert_msg(strstr(st.msg, "point counter.input=image") && strstr(st.msg, "finetune_fpn"),
                  "%s", st.msg);
    unsigned stages;
    status_clear(&st);
    ck_assert_int_eq(sweep_parse_stages("evaluate, fpn", &stages, &st), 0);
    ck_assert_uint_eq(stages, SWEEP_FPN | SWEEP_EVALUATE);
    char buf[64];
    sweep_stages_str(stages, buf, sizeof buf);
    ck_assert_str_eq(buf, "fpn,evaluate");
    ck_assert_int_eq(sweep_parse_stages("fpn,train", &stages, &st), -1);
    sweep_spec_free(&s);
}
END_TEST

/* ---- sweep files ------------------------------------------------------ */

START_TEST(test_sweep_file)
{
    char sub[128], path[256], base[256];
    snprintf(sub, sizeof sub, "%s/exp", dir);
    ck_assert_int_eq(mkdir(sub, 0777), 0);
    snprintf(base, sizeof base, "%s/base.ini", sub);
    write_file(base, "[fpn]\ndepth = 3\n");
    snprintf(path, sizeof path, "%s/sweep.ini", sub);
    write_file(path, "; a sweep\n"
                     "[sweep]\n"
                     "base = base.ini\n"
                     "out_dir = runs/s1\n"
                     "stages = counter, fpn\n"
                     "grid.fpn.width = 16, 32\n"
                     "grid.fpn_train.lr = 1e-3,2e-3\n"
                     "set.fpn_train.epochs = 3\n");
    ck_assert_int_eq(sweep_file_is_sweep(path), 1);
    ck_assert_int_eq(sweep_file_is_sweep(base), 0);
    sweep_spec s;
    sweep_spec_init(&s);
    cc_status st;
    status_clear(&st);
    ck_assert_msg(sweep_load(&s, path, &st) == 0, "%s", st.msg);
    ck_assert_str_eq(s.base, base); /* relative to the sweep file */
    ck_assert_str_eq(s.out_dir, "runs/s1");
    ck_assert_uint_eq(s.stages, SWEEP_FPN | SWEEP_COUNTER);
    ck_assert_int_eq(s.naxes, 2);
    ck_assert_str_eq(s.axes[1].key, "fpn_train.lr");
    ck_assert_str_eq(s.axes[1].values[1], "2e-3");
    ck_assert_int_eq(s.nsets, 1);
    ck_assert_str_eq(s.sets[0], "fpn_train.epochs=3");
    sweep_point *p;
    int n;
    ck_assert_msg(sweep_expand(&s, &p, &n, &st) == 0, "%s", st.msg);
    ck_assert_int_eq(n, 4);
    ck_assert_str_eq(p[1].name, "fpn.width=16,fpn_train.lr=2e-3");
    ck_assert_str_eq(p[1].dir, "runs/s1/fpn.width=16,fpn_train.lr=2e-3");
    free(p);
    sweep_spec_free(&s);

    /* Errors name the file and the line. */
    static const struct {
        const char *text, *line, *what;
    } bad[] = {
        {"[sweep]\nout_dir = x\n\ngrid.fpn.width = 8,abc\n", ":4:", "'abc' is not an integer"},
        {"[sweep]\nbase = b.ini\nbogus = 1\n", ":3:", "unknown key 'bogus'"},
        {"[sweep]\nout_dir = x\n[fpn]\nwidth = 3\n", ":3:", "unknown section [fpn]"},
        {"[sweep]\nstages = fpn,eval\n", ":2:", "'eval' is not a stage"},
        {"[sweep]\ngrid.fpn.widht = 1,2\n", ":2:", "fpn.widht"},
        {"[sweep]\ngrid.fpn.width = 1,2\ngrid.fpn.width = 3\n", NULL, NULL},
        {"[sweep]\nset.run.out_dir = x\n", ":2:", "set by the sweep"},
        {"[sweep]\nout_dir = x\nthis line is not ini\n", ":3:", "syntax error"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file(path, bad[i].text);
        sweep_spec_init(&s);
        status_clear(&st);
        int r = sweep_load(&s, path, &st);
        if (!bad[i].line) {
            /* A repeated key in a file: the later line wins, like --grid. */
            ck_assert_int_eq(r, 0);
            ck_assert_int_eq(s.naxes, 1);
            ck_assert_int_eq(s.axes[0].nvalues, 1);
        } else {
            ck_assert_msg(r == -1, "case %zu accepted", i);
            ck_assert_msg(strncmp(st.msg, path, strlen(path)) == 0 &&
                              strstr(st.msg, bad[i].line) && strstr(st.msg, bad[i].what),
                          "case %zu: %s", i, st.msg);
        }
        sweep_spec_free(&s);
    }
    status_clear(&st);
    sweep_spec_init(&s);
    snprintf(path, sizeof path, "%s/missing.ini", dir);
    ck_assert_int_eq(sweep_load(&s, path, &st), -1);
    ck_assert_ptr_nonnull(strstr(st.msg, "missing.ini"));
    /* A base file that does not load stops the expansion. */
    status_clear(&st);
    strcpy(s.base, path);
    strcpy(s.out_dir, dir);
    ck_assert_int_eq(sweep_add_grid(&s, "fpn.width=2", "--grid", &st), 0);
    ck_assert_int_eq(sweep_expand(&s, &p, &n, &st), -1);
    ck_assert_ptr_nonnull(strstr(st.msg, "missing.ini"));
    sweep_spec_free(&s);
}
END_TEST

/* ---- report on synthetic run files ------------------------------------ */

static const char *const metric_cols[] = {TRAIN_METRIC_COLS};

/* A run file in dir/name/run.h5: FPN val losses, counter val MAEs (one per
 * epoch), optional test evaluation and calibration. */
static void make_run(const char *name, const char *const *sets, int nsets, const double *fpn_val,
                     int nfpn, const double *mae, int nmae, int with_eval)
{
    cc_config cfg;
    config_defaults(&cfg);
    cc_status st;
    status_clear(&st);
    char d[256], path[300];
    snprintf(d, sizeof d, "%s/%s", dir, name);
    for (char *p = d + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(d, 0777);
            *p = '/';
        }
    mkdir(d, 0777);
    snprintf(cfg.out_dir, sizeof cfg.out_dir, "%s", d);
    snprintf(cfg.name, sizeof cfg.name, "%s", name);
    for (int i = 0; i < nsets; i++) ck_assert_msg(config_set(&cfg, sets[i], &st) == 0, "%s", st.msg);
    snprintf(path, sizeof path, "%s/run.h5", d);
    runlog rl;
    ck_assert_int_eq(runlog_create(&rl, path, &cfg, &st), 0);
    runlog_table *t = runlog_table_get(&rl, "metrics", MC_NCOLS, metric_cols, &st);
    ck_assert_ptr_nonnull(t);
    double row[MC_NCOLS];
    for (int stage = 0; stage < 2; stage++)
        for (int e = 0; e < (stage ? nmae : nfpn); e++)
            for (int split = 0; split < 2; split++) {
                for (int c = 0; c < MC_NCOLS; c++) row[c] = NAN;
                row[MC_STAGE] = stage;
                row[MC_EPOCH] = e;
                row[MC_SPLIT] = split;
                row[MC_SECONDS] = 1.5;
                if (stage == 0) {
                    row[MC_LOSS] = split ? fpn_val[e] : 2 * fpn_val[e];
                } else {
                    row[MC_LOSS] = 10.0 - e;
                    if (split) {
                        row[MC_MAE] = mae[e];
                        row[MC_RMSE] = mae[e] + 1;
                        row[MC_R2] = 0.5 + 0.01 * e;
                        row[MC_COVERAGE] = 0.9;
                    }
                }
                ck_assert_int_eq(runlog_append(t, split ? "val" : "train", row, &st), 0);
            }
    if (with_eval) {
        const char *ec[] = {"n", "mae", "rmse", "r2", "max_err", "coverage95", "width95"};
        runlog_table *ev = runlog_table_get(&rl, "eval/test", 7, ec, &st);
        double a[7] = {10, 7.25, 8.5, 0.75, 20, 0.95, 3}, b[7] = {5, 1, 1, 1, 1, 1, 1};
        ck_assert_int_eq(runlog_append(ev, "focus F1", b, &st), 0);
        ck_assert_int_eq(runlog_append(ev, "overall", a, &st), 0);
        const char *cc[] = {"nominal", "observed"};
        runlog_table *ca = runlog_table_get(&rl, "calibration/test", 2, cc, &st);
        for (int k = 1; k <= 9; k++) {
            double r2[2] = {k / 10.0, k / 10.0 * 0.8};
            ck_assert_int_eq(runlog_append(ca, "", r2, &st), 0);
        }
    }
    ck_assert_msg(runlog_flush(&rl, &st) == 0, "%s", st.msg);
    runlog_free(&rl);
}

static const double fpn_a[] = {0.5, 0.2, 0.3}, mae_a[] = {5, 3, 4, 3}, mae_b[] = {6, 5};

START_TEST(test_report_keys_that_differ)
{
    const char *sa[] = {"fpn.width=32", "fpn_train.lr=0.002"};
    const char *sb[] = {"fpn.width=64", "fpn_train.lr=0.002"};
    make_run("sw/fpn.width=32", sa, 2, fpn_a, 3, mae_a, 4, 1);
    make_run("sw/fpn.width=64", sb, 2, fpn_a, 2, mae_b, 2, 0);
    cc_report r;
    report_init(&r);
    cc_status st;
    status_clear(&st);
    char arg[256];
    snprintf(arg, sizeof arg, "%s/sw/", dir);
    ck_assert_msg(report_add(&r, arg, &st) == 0, "%s", st.msg);
    ck_assert_int_eq(r.nruns, 2);
    ck_assert_int_eq(report_finish(&r, &st), 0);
    /* run.name and run.out_dir differ too, but name the run anyway. */
    ck_assert_int_eq(r.ndiff, 1);
    ck_assert_str_eq(r.diff[0], "fpn.width");
    ck_assert_str_eq(r.runs[0].name, "fpn.width=32");
    report_free(&r);

    /* Same number written differently is the same value; a key missing
     * from one run differs. */
    const char *sc[] = {"fpn.width=32"};
    make_run("c", sc, 1, fpn_a, 1, mae_b, 1, 0);
    char path[300];
    snprintf(path, sizeof path, "%s/c/run.h5", dir);
    runlog rl;
    ck_assert_int_eq(runlog_open(&rl, path, &st), 0);
    ck_assert_int_eq(runlog_set_attr(&rl, "config.fpn_train.lr", "2e-3", &st), 0);
    for (int i = 0; i < rl.nattrs; i++)
        if (!strcmp(rl.attrs[i]->key, "config.counter.loss")) {
            free(rl.attrs[i]);
            rl.attrs[i] = rl.attrs[--rl.nattrs];
            break;
        }
    ck_assert_int_eq(runlog_flush(&rl, &st), 0);
    runlog_free(&rl);
    report_init(&r);
    snprintf(arg, sizeof arg, "%s/sw/fpn.width=32/run.h5", dir);
    ck_assert_int_eq(report_add(&r, arg, &st), 0);
    snprintf(arg, sizeof arg, "%s/c", dir);
    ck_assert_int_eq(report_add(&r, arg, &st), 0);
    ck_assert_int_eq(report_finish(&r, &st), 0);
    ck_assert_int_eq(r.ndiff, 1);
    ck_assert_str_eq(r.diff[0], "counter.loss");
    report_free(&r);

    /* The same point name in two sweeps: both get their sweep's name. */
    make_run("other/fpn.width=32", sa, 2, fpn_a, 1, mae_b, 1, 0);
    report_init(&r);
    snprintf(arg, sizeof arg, "%s/sw", dir);
    ck_assert_int_eq(report_add(&r, arg, &st), 0);
    snprintf(arg, sizeof arg, "%s/other/fpn.width=32/", dir);
    ck_assert_int_eq(report_add(&r, arg, &st), 0);
    ck_assert_int_eq(report_finish(&r, &st), 0);
    ck_assert_int_eq(r.nruns, 3);
    ck_assert_str_eq(r.runs[0].name, "sw/fpn.width=32");
    ck_assert_str_eq(r.runs[1].name, "fpn.width=64");
    ck_assert_str_eq(r.runs[2].name, "other/fpn.width=32");
    report_free(&r);

    /* Errors name the file. */
    report_init(&r);
    snprintf(arg, sizeof arg, "%s/c/nothing.h5", dir);
    write_file(arg, "not hdf5");
    ck_assert_int_eq(report_add(&r, arg, &st), -1);
    ck_assert_ptr_nonnull(strstr(st.msg, "nothing.h5"));
    status_clear(&st);
    snprintf(arg, sizeof arg, "%s/empty", dir);
    mkdir(arg, 0777);
    ck_assert_int_eq(report_add(&r, arg, &st), -1);
    ck_assert_ptr_nonnull(strstr(st.msg, "no run.h5"));
    status_clear(&st);
    ck_assert_int_eq(report_finish(&r, &st), -1);
    report_free(&r);
}
END_TEST

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

START_TEST(test_report_table)
{
    const char *sa[] = {"fpn.width=8"};
    const char *sb[] = {"fpn.width=16"};
    make_run("sw/fpn.width=16", sb, 1, fpn_a, 2, mae_b, 2, 0);
    make_run("sw/fpn.width=8", sa, 1, fpn_a, 3, mae_a, 4, 1);
    cc_report r;
    report_init(&r);
    cc_status st;
    status_clear(&st);
    char arg[256];
    snprintf(arg, sizeof arg, "%s/sw", dir);
    ck_assert_int_eq(report_add(&r, arg, &st), 0);
    ck_assert_int_eq(report_finish(&r, &st), 0);
    /* Natural order: 8 before 16. */
    ck_assert_str_eq(r.runs[0].name, "fpn.width=8");
    ck_assert_str_eq(r.runs[1].name, "fpn.width=16");
    report_row row;
    report_summarize(r.runs[0].rl, &row);
    ck_assert_double_eq(row.v[REPORT_BEST_EPOCH], 2); /* first of the two 3s */
    ck_assert_double_eq(row.v[REPORT_BEST_MAE], 3);
    ck_assert_double_eq(row.v[REPORT_BEST_RMSE], 4);
    ck_assert_double_eq_tol(row.v[REPORT_BEST_R2], 0.51, 1e-12);
    ck_assert_double_eq(row.v[REPORT_FINAL_MAE], 3);
    ck_assert_double_eq_tol(row.v[REPORT_FINAL_R2], 0.53, 1e-12);
    ck_assert_double_eq(row.v[REPORT_TEST_MAE], 7.25);
    ck_assert_double_eq(row.v[REPORT_TEST_COV], 0.95);
    ck_assert_double_eq(row.v[REPORT_TEST_MAXERR], 20);
    ck_assert_double_eq(row.v[REPORT_TEST_WIDTH], 3);
    ck_assert_double_eq(row.v[REPORT_FPN_BEST_VAL], 0.2);
    ck_assert_double_eq(row.v[REPORT_TRAIN_S], 1.5 * 2 * (3 + 4));
    report_summarize(r.runs[1].rl, &row);
    ck_assert_double_eq(row.v[REPORT_BEST_MAE], 5);
    ck_assert_double_eq(row.v[REPORT_FINAL_MAE], 5);
    ck_assert(isnan(row.v[REPORT_TEST_MAE]));

    char *text;
    size_t len;
    FILE *f = open_memstream(&text, &len);
    report_print(&r, f);
    fclose(f);
    char *l1 = strchr(text, '\n') + 1, *l2 = strchr(l1, '\n') + 1;
    ck_assert_msg(!strncmp(text, "run ", 4) && strstr(text, "best_mae") && strstr(text, "fpn.width"),
                  "%s", text);
    ck_assert_msg(!strncmp(l1, "fpn.width=8 ", 12) && strstr(l1, "7.25") && strstr(l1, "21.0"),
                  "%s", text);
    ck_assert_msg(!strncmp(l2, "fpn.width=16", 12) && strstr(l2, " - "), "%s", text);
    /* Columns line up: numbers end under their header; no trailing blanks. */
    ck_assert_int_eq(strstr(text, "train_s") + 7 - text, strstr(l1, "21.0") + 4 - l1);
    ck_assert_int_eq(strstr(text, "test_mae") + 8 - text, strstr(l1, "7.25") + 4 - l1);
    ck_assert_msg(!strstr(text, " \n"), "%s", text);
    free(text);

    char csv[300];
    snprintf(csv, sizeof csv, "%s/t.csv", dir);
    ck_assert_int_eq(report_write_csv(&r, csv, &st), 0);
    char *c = slurp(csv);
    ck_assert_msg(!strncmp(c, "run,best_ep,best_mae,best_rmse,best_r2,best_cov95,final_mae,", 60), "%s", c);
    ck_assert_msg(strstr(c, "\nfpn.width=8,2,3,4,0.51,0.9,3,4,0.53,0.9,7.25,8.5,0.75,0.95,20,3,0.2,21,8\n"),
                  "%s", c);
    ck_assert_msg(strstr(c, "\nfpn.width=16,2,5,6,0.51,0.9,5,6,0.51,0.9,,,,,,,0.2,12,16\n"), "%s", c);
    report_free(&r);
}
END_TEST

static int have_gnuplot(void)
{
    return system("gnuplot --version > /dev/null 2>&1") == 0;
}

static void check_png(const char *path)
{
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    unsigned char b[8];
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s missing", path);
    ck_assert_int_eq(fread(b, 1, 8, f), 8);
    ck_assert_msg(!memcmp(b, sig, 8), "%s is not a PNG", path);
    fseek(f, 0, SEEK_END);
    ck_assert_int_gt(ftell(f), 1000);
    fclose(f);
}

START_TEST(test_report_plot)
{
    const char *sa[] = {"fpn.width=8"};
    const char *sb[] = {"fpn.width=16"};
    make_run("sw/it's", sb, 1, fpn_a, 3, mae_b, 2, 0); /* a quote in a legend */
    make_run("sw/fpn.width=8", sa, 1, fpn_a, 3, mae_a, 4, 1);
    cc_report r;
    report_init(&r);
    cc_status st;
    status_clear(&st);
    char arg[256], out[256], path[300];
    snprintf(arg, sizeof arg, "%s/sw", dir);
    ck_assert_int_eq(report_add(&r, arg, &st), 0);
    ck_assert_int_eq(report_finish(&r, &st), 0);
    snprintf(out, sizeof out, "%s/plots/sub", dir);
    /* Without gnuplot: a clear message naming the package. */
    ck_assert_int_eq(report_plot(&r, out, "gnuplot-not-installed-here", NULL, &st), -1);
    ck_assert_msg(strstr(st.msg, "gnuplot-nox"), "%s", st.msg);
    if (!have_gnuplot()) {
        fprintf(stderr, "test_report_plot: gnuplot not installed, PNG part skipped\n");
        report_free(&r);
        return;
    }
    status_clear(&st);
    ck_assert_msg(report_plot(&r, out, NULL, NULL, &st) == 0, "%s", st.msg);
    /* the evaluated run's "focus F1" row also gives its error_by_group */
    static const char *pngs[] = {"loss_fpn.png", "loss_counter.png", "val_mae.png",
                                 "calibration.png", "error_by_group_fpn.width=8.png"};
    for (int i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "%s/%s", out, pngs[i]);
        check_png(path);
    }
    /* Nothing else is left behind (temp files, gnuplot's log). */
    char cmd[400];
    snprintf(cmd, sizeof cmd, "test $(ls -A %s | wc -l) -eq 5", out);
    ck_assert_int_eq(system(cmd), 0);
    report_free(&r);
}
END_TEST

/* ---- a real tiny sweep ------------------------------------------------ */

/* The cellcount executable next to tests/ in the build tree. */
static void cellcount_exe(char *out, size_t len)
{
    char self[PATH_MAX - 16];
    ssize_t l = readlink("/proc/self/exe", self, sizeof self - 1);
    ck_assert_int_gt(l, 0);
    self[l] = '\0';
    *strrchr(self, '/') = '\0'; /* tests */
    *strrchr(self, '/') = '\0'; /* build dir */
    snprintf(out, len, "%s/cellcount", self);
    ck_assert_msg(access(out, X_OK) == 0, "%s not built (make cellcount first)", out);
}

static int count_rows(const char *path, int stage)
{
    runlog rl;
    cc_status st;
    status_clear(&st);
    ck_assert_msg(runlog_open(&rl, path, &st) == 0, "%s", st.msg);
    runlog_table *t = runlog_table_find(&rl, "metrics");
    int n = 0;
    for (size_t i = 0; t && i < t->nrows; i++) n += t->values[i * (size_t)t->ncols + MC_STAGE] == stage;
    runlog_free(&rl);
    return n;
}

static long file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) ? -1 : (long)sb.st_size;
}

START_TEST(test_sweep_end_to_end)
{
    char exe[PATH_MAX], cmd[PATH_MAX * 3], data[256], path[700];
    cellcount_exe(exe, sizeof exe);
    snprintf(data, sizeof data, "%s/sim.h5", dir);
    snprintf(cmd, sizeof cmd,
             "%s simulate --out %s --counts 1,10,30 --focus 1,10 --sites 4 --stain 1 "
             "--image-size 174x130 --size 64x64 --threads 1 --quiet",
             exe, data);
    ck_assert_int_eq(system(cmd), 0);

    sweep_spec s;
    sweep_spec_init(&s);
    cc_status st;
    status_clear(&st);
    char set[300];
    snprintf(set, sizeof set, "data.file=%s", data);
    const char *sets[] = {set, "fpn.depth=2", "fpn_train.epochs=1", "fpn_train.max_steps=2",
                          "counter.width_div=16", "counter_train.epochs=2",
                          "counter_train.max_steps=2"};
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
        ck_assert_msg(sweep_add_set(&s, sets[i], "--set", &st) == 0, "%s", st.msg);
    ck_assert_int_eq(sweep_add_grid(&s, "fpn.width=4,6", "--grid", &st), 0);
    snprintf(s.out_dir, sizeof s.out_dir, "%s/sweep", dir);
    s.stages = SWEEP_FPN;
    sweep_point *p;
    int n;
    ck_assert_msg(sweep_expand(&s, &p, &n, &st) == 0, "%s", st.msg);
    ck_assert_int_eq(n, 2);
    sweep_result res[4];
    FILE *log = tmpfile();
    sweep_opts o = {exe, NULL, 2, 2, 0, log};

    /* 1. FPN only, both points at once. */
    ck_assert_msg(sweep_run(&s, p, n, &o, res, &st) == 0, "%s", st.msg);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(res[i].state, SWEEP_DONE);
        ck_assert_int_eq(res[i].resumed, 0);
        snprintf(path, sizeof path, "%s/DONE", p[i].dir);
        ck_assert_str_eq(strtok(slurp(path), "\n"), "stages=fpn");
        snprintf(path, sizeof path, "%s/fpn_best.h5", p[i].dir);
        ck_assert(file_exists(path));
        snprintf(path, sizeof path, "%s/log.txt", p[i].dir);
        ck_assert_ptr_nonnull(strstr(slurp(path), "train-fpn"));
        snprintf(path, sizeof path, "%s/config.ini", p[i].dir);
        ck_assert_ptr_nonnull(strstr(slurp(path), i ? "width = 6" : "width = 4"));
        ck_assert_ptr_nonnull(strstr(slurp(path), "threads = 1"));
    }
    snprintf(path, sizeof path, "%s/run.h5", p[0].dir);
    ck_assert_int_eq(count_rows(path, 0), 2);

    /* 2. All stages: the FPN-only marker does not cover them, so both points
     * resume; the finished FPN stage adds no rows. */
    s.stages = SWEEP_ALL;
    ck_assert_int_eq(sweep_point_finished(&p[0], SWEEP_FPN), 1);
    ck_assert_int_eq(sweep_point_finished(&p[0], SWEEP_ALL), 0);
    ck_assert_msg(sweep_run(&s, p, n, &o, res, &st) == 0, "%s", st.msg);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(res[i].state, SWEEP_DONE);
        ck_assert_int_eq(res[i].resumed, 1);
        ck_assert_int_eq(sweep_point_finished(&p[i], SWEEP_ALL), 1);
    }
    ck_assert_int_eq(count_rows(path, 0), 2);
    ck_assert_int_eq(count_rows(path, 1), 4);

    /* 3. Rerun: everything is skipped, nothing is started. */
    char logp[700];
    snprintf(logp, sizeof logp, "%s/log.txt", p[1].dir);
    long before = file_size(logp);
    ck_assert_int_eq(sweep_run(&s, p, n, &o, res, &st), 0);
    ck_assert_int_eq(res[0].state, SWEEP_SKIPPED);
    ck_assert_int_eq(res[1].state, SWEEP_SKIPPED);
    ck_assert_int_eq(file_size(logp), before);

    /* 4. A point killed after its stages but before the marker: rerun,
     * resumed, no duplicated rows. */
    snprintf(path, sizeof path, "%s/DONE", p[1].dir);
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_int_eq(sweep_run(&s, p, n, &o, res, &st), 0);
    ck_assert_int_eq(res[0].state, SWEEP_SKIPPED);
    ck_assert_int_eq(res[1].state, SWEEP_DONE);
    ck_assert_int_eq(res[1].resumed, 1);
    ck_assert_int_gt(file_size(logp), before);
    snprintf(path, sizeof path, "%s/run.h5", p[1].dir);
    ck_assert_int_eq(count_rows(path, 1), 4);

    /* 5. The report over the sweep directory. */
    cc_report r;
    report_init(&r);
    ck_assert_int_eq(report_add(&r, s.out_dir, &st), 0);
    ck_assert_int_eq(report_finish(&r, &st), 0);
    ck_assert_int_eq(r.nruns, 2);
    ck_assert_int_eq(r.ndiff, 1);
    ck_assert_str_eq(r.diff[0], "fpn.width");
    report_row row;
    report_summarize(r.runs[0].rl, &row);
    ck_assert(isfinite(row.v[REPORT_TEST_MAE]) && isfinite(row.v[REPORT_FPN_BEST_VAL]));
    ck_assert(row.v[REPORT_TRAIN_S] > 0);
    report_free(&r);
    free(p);

    /* 6. A failing point is reported and the others go on. */
    ck_assert_int_eq(sweep_add_grid(&s, "fpn.width=4", "--grid", &st), 0);
    ck_assert_int_eq(sweep_add_grid(&s, "counter.arch=vgg11,nosuch", "--grid", &st), 0);
    snprintf(s.out_dir, sizeof s.out_dir, "%s/sweep2", dir);
    ck_assert_int_eq(sweep_expand(&s, &p, &n, &st), 0);
    ck_assert_int_eq(n, 2);
    o.jobs = 1;
    ck_assert_int_eq(sweep_run(&s, p, n, &o, res, &st), 1);
    ck_assert_int_eq(res[0].state, SWEEP_DONE);
    ck_assert_int_eq(res[1].state, SWEEP_FAILED);
    ck_assert_uint_eq(res[1].failed_stage, SWEEP_COUNTER);
    ck_assert_int_ne(res[1].exit_code, 0);
    ck_assert_ptr_nonnull(strstr(res[1].msg, "train-counter"));
    snprintf(path, sizeof path, "%s/DONE", p[1].dir);
    ck_assert(!file_exists(path));
    snprintf(path, sizeof path, "%s/log.txt", p[1].dir);
    ck_assert_ptr_nonnull(strstr(slurp(path), "nosuch"));
    char *sum;
    size_t len;
    FILE *f = open_memstream(&sum, &len);
    sweep_print_summary(&s, p, n, res, f);
    fclose(f);
    ck_assert_msg(strstr(sum, "1 done, 0 skipped (finished earlier), 1 failed") &&
                      strstr(sum, "counter.arch=nosuch") && strstr(sum, "FAILED"),
                  "%s", sum);
    free(sum);
    free(p);
    fclose(log);
    sweep_spec_free(&s);

    /* 7. The commands: --help is there, a dry run parses a sweep file, and
     * the exit status says a point failed. */
    snprintf(cmd, sizeof cmd, "%s sweep --help | grep -q -- --jobs && %s report --help | grep -q -- --plot",
             exe, exe);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(path, sizeof path, "%s/s.ini", dir);
    char text[1024];
    snprintf(text, sizeof text,
             "[sweep]\nout_dir = %s/sweep2\nstages = fpn,counter,evaluate\n"
             "grid.fpn.width = 4\ngrid.counter.arch = vgg11,nosuch\nset.data.file = %s\n"
             "set.fpn.depth = 2\nset.fpn_train.epochs = 1\nset.fpn_train.max_steps = 2\n"
             "set.counter.width_div = 16\nset.counter_train.epochs = 2\n"
             "set.counter_train.max_steps = 2\n",
             dir, data);
    write_file(path, text);
    snprintf(cmd, sizeof cmd, "%s sweep %s --dry-run 2>&1 | grep -q 'finished, skipped'", exe, path);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s sweep %s -j 2 -t 2 > %s/out.txt 2>&1", exe, path, dir);
    int ws = system(cmd);
    ck_assert(WIFEXITED(ws) && WEXITSTATUS(ws) == 1);
    snprintf(path, sizeof path, "%s/out.txt", dir);
    ck_assert_msg(strstr(slurp(path), "1 skipped (finished earlier), 1 failed"), "%s", slurp(path));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sweep");
    TCase *tc = tcase_create("spec");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_grid_product_order_names);
    tcase_add_test(tc, test_grid_names_sanitised);
    tcase_add_test(tc, test_grid_errors);
    tcase_add_test(tc, test_sweep_file);
    suite_add_tcase(s, tc);
    sweep_add_ablation_cases(s);
    TCase *tr = tcase_create("report");
    tcase_add_checked_fixture(tr, setup, teardown);
    tcase_set_timeout(tr, 60);
    tcase_add_test(tr, test_report_keys_that_differ);
    tcase_add_test(tr, test_report_table);
    tcase_add_test(tr, test_report_plot);
    suite_add_tcase(s, tr);
    TCase *te = tcase_create("end-to-end");
    tcase_add_checked_fixture(te, setup, teardown);
    tcase_set_timeout(te, 300);
    tcase_add_test(te, test_sweep_end_to_end);
    suite_add_tcase(s, te);
    return tu_run(s);
}
