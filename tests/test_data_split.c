/* test_data_split.c - train/validation/test splits by scene and
 * stratified by count (src/data/split.c); part of the test_data binary
 * (data_add_split_cases). */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "autodiff/rng.h"
#include "src/data/dataset.h"
#include "tests/datautil.h"

START_TEST(test_split_by_scene)
{
    enum { N = 3000 };
    static int32_t group[N];
    static uint8_t s1[N], s2[N], s3[N], s4[N];
    cc_rng r;
    rng_seed(&r, 1, 0);
    for (int i = 0; i < N; i++) group[i] = (int32_t)rng_below(&r, 200) * 7 - 300;
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(dataset_split_by_scene(group, N, 42, NULL, s1, &st), 0);
    ck_assert_int_eq(dataset_split_by_scene(group, N, 42, NULL, s2, &st), 0);
    ck_assert(memcmp(s1, s2, N) == 0);
    ck_assert_int_eq(dataset_split_by_scene(group, N, 43, NULL, s3, &st), 0);
    ck_assert(memcmp(s1, s3, N) != 0);
    /* leak-free: one split per group; 80/10/10 of the groups */
    int gs[200], ng[3] = {0};
    for (int g = 0; g < 200; g++) gs[g] = -1;
    for (int i = 0; i < N; i++) {
        int g = (group[i] + 300) / 7;
        ck_assert(s1[i] <= 2);
        if (gs[g] < 0) { gs[g] = s1[i]; ng[s1[i]]++; }
        ck_assert_int_eq(gs[g], s1[i]);
    }
    int present = ng[0] + ng[1] + ng[2];
    ck_assert_int_eq(ng[0], (int)lround(0.8 * present));
    ck_assert_int_eq(ng[1], (int)lround(0.1 * present));
    /* independent of image order: reverse the input */
    static int32_t rev[N];
    for (int i = 0; i < N; i++) rev[i] = group[N - 1 - i];
    ck_assert_int_eq(dataset_split_by_scene(rev, N, 42, NULL, s4, &st), 0);
    for (int i = 0; i < N; i++) ck_assert_int_eq(s4[N - 1 - i], s1[i]);
    double bad[3] = {-1, 1, 1};
    ck_assert_int_eq(dataset_split_by_scene(group, N, 42, bad, s4, &st), -1);
}
END_TEST

/* Stratified by count: 24 counts x 10 scenes at 80/10/10 must give every
 * count exactly 8/1/1 scenes, 24 x 7 5/1/1 or 6/1/0 or 6/0/1 (within one
 * scene of each share), with totals near the fractions. */
START_TEST(test_split_stratified)
{
    enum { C = 24, S = 10, F = 3, N = C * S * F };
    static int32_t group[N], count[N], one[N];
    static uint8_t s1[N], s2[N], s3[N];
    cc_status st;
    status_clear(&st);
    for (int sites = 10; sites >= 7; sites -= 3) {
        const int n = C * sites * F;
        for (int i = 0; i < n; i++) {
            const int c = i / (sites * F), s = i / F % sites;
            count[i] = 1 + 4 * c;
            group[i] = 1000 * count[i] + s;   /* (count, site): the scene */
            one[i] = 5;
        }
        ck_assert_msg(dataset_split_stratified(group, count, n, 9, NULL, s1, &st) == 0, "%s",
                      st.msg);
        ck_assert_int_eq(dataset_split_stratified(group, count, n, 9, NULL, s2, &st), 0);
        ck_assert(memcmp(s1, s2, (size_t)n) == 0);
        int per[C][3], tot[3] = {0, 0, 0};
        memset(per, 0, sizeof per);
        for (int i = 0; i < n; i++) {
            ck_assert(s1[i] <= 2);
            ck_assert_int_eq(s1[i], s1[i - i % F]);     /* a scene in one split */
            if (i % F == 0) { per[i / (sites * F)][s1[i]]++; tot[s1[i]]++; }
        }
        const double f[3] = {0.8, 0.1, 0.1};
        for (int c = 0; c < C; c++)
            for (int k = 0; k < 3; k++) {
                if (sites == 10) ck_assert_int_eq(per[c][k], (int)lround(f[k] * sites));
                ck_assert_msg(fabs(per[c][k] - f[k] * sites) < 1.0, "count %d split %d: %d of %d",
                              c, k, per[c][k], sites);
            }
        for (int k = 0; k < 3; k++)
            ck_assert_msg(fabs(tot[k] - f[k] * C * sites) <= 2.0, "split %d: %d scenes of %d",
                          k, tot[k], C * sites);
        /* one stratum of whole shares: the unstratified split */
        ck_assert_int_eq(dataset_split_stratified(group, one, n, 9, NULL, s2, &st), 0);
        ck_assert_int_eq(dataset_split_by_scene(group, n, 9, NULL, s3, &st), 0);
        if (sites == 10) ck_assert(memcmp(s2, s3, (size_t)n) == 0);
        /* another seed, another split */
        ck_assert_int_eq(dataset_split_stratified(group, count, n, 10, NULL, s2, &st), 0);
        ck_assert(memcmp(s1, s2, (size_t)n) != 0);
    }
    /* a scene whose images carry two counts cannot be stratified */
    count[4] = 999;
    ck_assert_int_eq(dataset_split_stratified(group, count, C * 7 * F, 9, NULL, s1, &st), -1);
    ck_assert_msg(strstr(st.msg, "scene group") && strstr(st.msg, "999"), "%s", st.msg);
    ck_assert_int_eq(dataset_split_by_parse("count", &(dataset_split_by){0}), 0);
    ck_assert_int_eq(dataset_split_by_parse("Count", &(dataset_split_by){0}), -1);
}
END_TEST

void data_add_split_cases(Suite *s)
{
    TCase *tc = tcase_create("split");
    tcase_add_test(tc, test_split_by_scene);
    tcase_add_test(tc, test_split_stratified);
    suite_add_tcase(s, tc);
}
