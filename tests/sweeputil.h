/* sweeputil.h - fixture shared by test_sweep.c and test_sweep_ablation.c:
 * a fresh temporary directory per test (each file has its own copy). */
#ifndef CC_TESTS_SWEEPUTIL_H
#define CC_TESTS_SWEEPUTIL_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char dir[64];

static void setup(void)
{
    strcpy(dir, "/tmp/cc_sweep_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
}

/* test_sweep_ablation.c */
void sweep_add_ablation_cases(Suite *s);

#endif
