/* test_cli_opts.c - the option-value forms every command accepts
 * (src/cli/cli_opts.h): sizes with x or X, splits with / or , and lists;
 * and that simulate and import take the same forms (issue 12). */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "src/cli/cli.h"
#include "src/cli/cli_opts.h"
#include "tests/testmain.h"

START_TEST(test_long)
{
    long v = 0;
    ck_assert_int_eq(cli_parse_long("42", 1, 100, &v), 0);
    ck_assert_int_eq(v, 42);
    ck_assert_int_eq(cli_parse_long("-3", -5, 5, &v), 0);
    ck_assert_int_eq(v, -3);
    const char *bad[] = {"", "x", "4x", "101", "0", "1.5", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(cli_parse_long(bad[i], 1, 100, &v) != 0, "accepted '%s'", bad[i]);
}
END_TEST

START_TEST(test_double)
{
    double d = 0;
    ck_assert_int_eq(cli_parse_double("0.25", &d), 0);
    ck_assert(d == 0.25);
    ck_assert_int_eq(cli_parse_double("1e-3", &d), 0);
    ck_assert(d == 1e-3);
    const char *bad[] = {"", "nan", "inf", "-inf", "1,5", "2x", "1e999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(cli_parse_double(bad[i], &d) != 0, "accepted '%s'", bad[i]);
}
END_TEST

START_TEST(test_size_either_case)
{
    int w = 0, h = 0;
    ck_assert_int_eq(cli_parse_size("64x48", 1, 16384, &w, &h), 0);
    ck_assert_int_eq(w, 64);
    ck_assert_int_eq(h, 48);
    w = h = 0;
    ck_assert_int_eq(cli_parse_size("64X48", 1, 16384, &w, &h), 0);
    ck_assert_int_eq(w, 64);
    ck_assert_int_eq(h, 48);
    const char *bad[] = {"", "64", "64x", "x48", "64x48x2", "64*48", "0x48", "64x16385",
                         "64xx48", "64x48 ", "a64x48"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        w = h = -7;
        ck_assert_msg(cli_parse_size(bad[i], 1, 16384, &w, &h) != 0, "accepted '%s'", bad[i]);
        ck_assert_msg(w == -7 && h == -7, "'%s' changed the outputs on failure", bad[i]);
    }
    ck_assert_int_ne(cli_parse_size("7x100", 8, 16384, &w, &h), 0);
}
END_TEST

START_TEST(test_dims)
{
    int d[3] = {0};
    ck_assert_int_eq(cli_parse_dims("1x192X256", 3, 1, 65536, d), 0);
    ck_assert_int_eq(d[0], 1);
    ck_assert_int_eq(d[1], 192);
    ck_assert_int_eq(d[2], 256);
    ck_assert_int_ne(cli_parse_dims("1x192", 3, 1, 65536, d), 0);
    ck_assert_int_ne(cli_parse_dims("1x2x3x4", 3, 1, 65536, d), 0);
}
END_TEST

START_TEST(test_split_slash_or_comma)
{
    double f[3];
    const char *good[] = {"8/1/1", "8,1,1", "80/10/10", "0.8,0.1,0.1"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        ck_assert_msg(cli_parse_split(good[i], f) == 0, "refused '%s'", good[i]);
        ck_assert_msg(fabs(f[0] - 0.8) < 1e-12 && fabs(f[1] - 0.1) < 1e-12 &&
                      fabs(f[2] - 0.1) < 1e-12, "'%s' -> %g %g %g", good[i], f[0], f[1], f[2]);
    }
    ck_assert_int_eq(cli_parse_split("0/0/1", f), 0);
    ck_assert(f[2] == 1 && f[0] == 0);
    const char *bad[] = {"", "8/1", "8/1/1/1", "0/0/0", "-1/1/1", "8//1", "a/b/c", "8/1/1/",
                         "nan/1/1", "inf/1/1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(cli_parse_split(bad[i], f) != 0, "accepted '%s'", bad[i]);
}
END_TEST

START_TEST(test_int_list)
{
    int v[4], n = 0;
    ck_assert_int_eq(cli_parse_int_list("1,8,23", 1, 100, v, 4, &n), 0);
    ck_assert_int_eq(n, 3);
    ck_assert_int_eq(v[0], 1);
    ck_assert_int_eq(v[2], 23);
    ck_assert_int_eq(cli_parse_int_list("5", 1, 100, v, 4, &n), 0);
    ck_assert_int_eq(n, 1);
    const char *bad[] = {"", ",", "1,,2", ",1", "1,", "1,2,3,4,5", "0", "1,x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(cli_parse_int_list(bad[i], 1, 100, v, 4, &n) != 0, "accepted '%s'", bad[i]);
}
END_TEST

/* The commands themselves: a value form refused by one and accepted by
 * another was the bug; usage errors exit 2, a missing input tree exits 1
 * only after the options parsed. */
static int run_cmd(int (*fn)(int, char **), const char *const *args, int n)
{
    char *argv[16];
    for (int i = 0; i < n; i++) argv[i] = strdup(args[i]);
    int rc = fn(n, argv);
    for (int i = 0; i < n; i++) free(argv[i]);
    return rc;
}

START_TEST(test_commands_share_forms)
{
    /* import: options parse, then the missing directory fails with 1 */
    const char *imp[] = {"import", "--images", "/nonexistent/cc_opts", "--out",
                         "/nonexistent/cc_opts/x.h5", "--size", "64X48", "--split", "8,1,1"};
    ck_assert_int_eq(run_cmd(cli_import, imp, 9), 1);
    const char *imp_bad[] = {"import", "--images", "/nonexistent/cc_opts", "--out",
                             "/nonexistent/cc_opts/x.h5", "--split", "8;1;1"};
    ck_assert_int_eq(run_cmd(cli_import, imp_bad, 7), 2);
    /* simulate: a bad form is a usage error, a good one is not */
    const char *sim_bad[] = {"simulate", "--out", "/nonexistent/cc_opts/x.h5", "--size", "64*48"};
    ck_assert_int_eq(run_cmd(cli_simulate, sim_bad, 5), 2);
    const char *sim[] = {"simulate", "--out", "/nonexistent/cc_opts/x.h5", "--size", "64X48",
                         "--split", "8/1/1", "--counts", "1", "--focus", "1", "--sites", "1",
                         "--stain", "1", "--quiet"};
    ck_assert_int_eq(run_cmd(cli_simulate, sim, 16), 1);
}
END_TEST

/* The run commands share one option table; an option only evaluate (or
 * train-counter) uses is refused by the others instead of ignored.  The
 * refusal comes while parsing, before any file is opened. */
START_TEST(test_run_commands_refuse_foreign_options)
{
    const char *fpn_on[] = {"train-fpn", "--on", "/nonexistent/x.h5"};
    ck_assert_int_eq(run_cmd(cli_train_fpn, fpn_on, 3), 2);
    const char *fpn_fpn[] = {"train-fpn", "--fpn", "/nonexistent/f.h5"};
    ck_assert_int_eq(run_cmd(cli_train_fpn, fpn_fpn, 3), 2);
    const char *cnt_tag[] = {"train-counter", "--tag", "x"};
    ck_assert_int_eq(run_cmd(cli_train_counter, cnt_tag, 3), 2);
    const char *cnt_stain[] = {"train-counter", "--stain", "2"};
    ck_assert_int_eq(run_cmd(cli_train_counter, cnt_stain, 3), 2);
    const char *cnt_split[] = {"train-counter", "--split", "val"};
    ck_assert_int_eq(run_cmd(cli_train_counter, cnt_split, 3), 2);
    const char *cnt_counter[] = {"train-counter", "--counter", "/nonexistent/c.h5"};
    ck_assert_int_eq(run_cmd(cli_train_counter, cnt_counter, 3), 2);
    const char *cnt_cal[] = {"train-counter", "--calibrate-on", "/nonexistent/c.h5"};
    ck_assert_int_eq(run_cmd(cli_train_counter, cnt_cal, 3), 2);
    /* what each takes still parses: --help exits 0 after the options */
    const char *cnt_ok[] = {"train-counter", "--fpn", "/nonexistent/f.h5", "--help"};
    ck_assert_int_eq(run_cmd(cli_train_counter, cnt_ok, 4), 0);
    const char *ev_ok[] = {"evaluate", "--on", "/nonexistent/x.h5", "--stain", "2", "--tag",
                           "t", "--split", "all", "--counter", "/nonexistent/c.h5", "--help"};
    ck_assert_int_eq(run_cmd(cli_evaluate, ev_ok, 12), 0);
    const char *ev_cal[] = {"evaluate", "--calibrate-on", "/nonexistent/c.h5", "--help"};
    ck_assert_int_eq(run_cmd(cli_evaluate, ev_cal, 4), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cli_opts");
    TCase *tc = tcase_create("cli_opts");
    tcase_add_test(tc, test_long);
    tcase_add_test(tc, test_double);
    tcase_add_test(tc, test_size_either_case);
    tcase_add_test(tc, test_dims);
    tcase_add_test(tc, test_split_slash_or_comma);
    tcase_add_test(tc, test_int_list);
    tcase_add_test(tc, test_commands_share_forms);
    tcase_add_test(tc, test_run_commands_refuse_foreign_options);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
