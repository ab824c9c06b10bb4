/* test_sweep_ablation.c - sweep ablation mode (one factor at a time),
 * linked keys, and the shipped ablation sweep files; part of test_sweep. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "src/sweep/sweep.h"

#include "tests/sweeputil.h"

static int collect_set(void *cfg, const char *assignment)
{
    return config_set(cfg, assignment, NULL);
}

/* Ablation mode: base, then each value alone; the base's own values
 * (defaults here: fpn.loss=nll, fpn.depth=4) are not run twice; a sweep
 * file selects the mode and a bad mode is an error naming file:line. */
START_TEST(test_ablation_points)
{
    sweep_spec s;
    sweep_spec_init(&s);
    cc_status st;
    status_clear(&st);
    char path[256], text[512];
    snprintf(path, sizeof path, "%s/abl.ini", dir);
    snprintf(text, sizeof text,
             "[sweep]\nout_dir = %s/out\nmode = ablation\ngrid.fpn.loss = nll,paper,mse\n"
             "grid.fpn.depth = 2,4\nset.fpn.width = 8\n", dir);
    write_file(path, text);
    ck_assert_msg(sweep_load(&s, path, &st) == 0, "%s", st.msg);
    ck_assert_int_eq(s.ablation, 1);
    sweep_point *p;
    int n;
    ck_assert_msg(sweep_expand(&s, &p, &n, &st) == 0, "%s", st.msg);
    static const char *want[] = {"base", "fpn.loss=paper", "fpn.loss=mse", "fpn.depth=2"};
    ck_assert_int_eq(n, 4);
    char ov[128];
    for (int i = 0; i < 4; i++) ck_assert_str_eq(p[i].name, want[i]);
    ck_assert_ptr_null(sweep_point_override(&s, &p[0], 0, ov, sizeof ov));
    ck_assert_ptr_null(sweep_point_override(&s, &p[0], 1, ov, sizeof ov));
    ck_assert_ptr_null(sweep_point_override(&s, &p[3], 0, ov, sizeof ov));
    ck_assert_str_eq(sweep_point_override(&s, &p[3], 1, ov, sizeof ov), "fpn.depth=2");
    free(p);
    /* The same axes as a grid: the product, base values included. */
    s.ablation = 0;
    ck_assert_int_eq(sweep_expand(&s, &p, &n, &st), 0);
    ck_assert_int_eq(n, 6);
    free(p);
    sweep_spec_free(&s);

    /* Linked keys: one axis sets both. */
    sweep_spec_init(&s);
    snprintf(s.out_dir, sizeof s.out_dir, "%s/out", dir);
    ck_assert_int_eq(sweep_add_grid(&s, "fpn.loss+counter.loss=nll,mse", "--grid", &st), 0);
    ck_assert_int_eq(sweep_expand(&s, &p, &n, &st), 0);
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(p[1].name, "fpn.loss+counter.loss=mse");
    cc_config c;
    config_defaults(&c);
    ck_assert_int_eq(sweep_override_each(sweep_point_override(&s, &p[1], 0, ov, sizeof ov),
                                         collect_set, &c), 0);
    ck_assert_int_eq(c.fpn_loss, LOSS_MSE);
    ck_assert_int_eq(c.counter_loss, LOSS_MSE);
    free(p);
    ck_assert_int_eq(sweep_add_grid(&s, "fpn.loss+run.name=a", "--grid", &st), -1);
    ck_assert_int_eq(sweep_add_grid(&s, "fpn.loss+counter.nope=a", "--grid", &st), -1);
    sweep_spec_free(&s);
    status_clear(&st);

    sweep_spec_init(&s);
    snprintf(text, sizeof text, "[sweep]\nout_dir = x\nmode = factorial\n");
    write_file(path, text);
    ck_assert_int_eq(sweep_load(&s, path, &st), -1);
    ck_assert_msg(strstr(st.msg, "abl.ini:3") && strstr(st.msg, "factorial"), "%s", st.msg);
    sweep_spec_free(&s);
}
END_TEST

/* The shipped ablation sweeps: every ablation of experiments/ablations/
 * once, around the paper's protocol (18 one-key changes + base). */
START_TEST(test_shipped_ablation_sweeps)
{
    const char *top = getenv("CC_TOP_SRCDIR");
    static const char *files[] = {"sweep.ini", "small.ini"};
    for (int f = 0; f < 2; f++) {
        char path[512];
        snprintf(path, sizeof path, "%s/experiments/ablations/%s", top ? top : ".", files[f]);
        sweep_spec s;
        sweep_spec_init(&s);
        cc_status st;
        status_clear(&st);
        ck_assert_int_eq(sweep_file_is_sweep(path), 1);
        ck_assert_msg(sweep_load(&s, path, &st) == 0, "%s", st.msg);
        sweep_point *p;
        int n;
        ck_assert_msg(sweep_expand(&s, &p, &n, &st) == 0, "%s: %s", path, st.msg);
        ck_assert_int_eq(n, 19);
        ck_assert_str_eq(p[0].name, "base");
        free(p);
        sweep_spec_free(&s);
    }
}
END_TEST

void sweep_add_ablation_cases(Suite *s)
{
    TCase *tc = tcase_create("ablation");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_ablation_points);
    tcase_add_test(tc, test_shipped_ablation_sweeps);
    suite_add_tcase(s, tc);
}
