/* test_sim_stats.c - the statistics of src/data/stats.h, and the simulator's
 * defaults held against the real BBBC005 figures of docs/DATA.md ('Real
 * images'; measured with `cellcount stats` on the real subset).
 *
 * Sample: SITES sites of each count in SIM_COUNTS, F1 and F48, both stains,
 * at BBBC005's 696x520.  Every bound below names its real figure and its
 * tolerance: relative (about 10%) where the figure is large, absolute
 * where a relative bound would mean nothing (a background of 1, a
 * coverage of 0.002), wider where the sample is small (blob counts of a
 * few cells). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "src/data/dataset.h"
#include "src/sim/simulate.h"
#include "src/data/stats.h"
#include "src/data/tiff_io.h"
#include "tests/testmain.h"

/* ---- the statistics themselves ----------------------------------------- */

START_TEST(test_stats_blobs)
{
    /* 100 x 80 image, background 1: a 10x10 square (200), a 5x4 one (100)
     * touching a 3x3 one (100) at a corner only (one 8-connected blob), a
     * dim 6x6 square (50, below 30% of 200 = 60: background). */
    enum { W = 100, H = 80 };
    float *px = malloc(W * H * sizeof *px), *mask = calloc(W * H, sizeof *mask);
    for (int i = 0; i < W * H; i++) px[i] = 1.0f;
    for (int y = 10; y < 20; y++)
        for (int x = 10; x < 20; x++) px[y * W + x] = 200.0f, mask[y * W + x] = 1.0f;
    for (int y = 40; y < 44; y++)
        for (int x = 40; x < 45; x++) px[y * W + x] = 100.0f;
    for (int y = 44; y < 47; y++)
        for (int x = 45; x < 48; x++) px[y * W + x] = 100.0f;
    for (int y = 60; y < 66; y++)
        for (int x = 70; x < 76; x++) px[y * W + x] = 50.0f;
    stats_table t;
    stats_table_init(&t);
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(stats_table_add(&t, 2, 3, 1, px, mask, W, H, &st), 0);
    ck_assert_int_eq(stats_table_add(&t, 2, 3, 1, px, NULL, W, H, &st), 0);
    ck_assert_int_eq(t.n, 1);
    stats_row r;
    stats_table_row(&t, 0, &r);
    ck_assert_int_eq(r.images, 2);
    ck_assert(fabs(r.max - 200.0) < 1e-9);
    ck_assert(fabs(r.background - 1.0) < 1e-9);
    ck_assert(fabs(r.blobs - 2.0) < 1e-9);
    const double k = STATS_REF_AREA / (W * H);   /* px at 696x520 per pixel */
    ck_assert(fabs(r.area_max - 100.0 * k) < 1e-6);
    ck_assert(fabs(r.area_p10 - 29.0 * k) < 1e-6);
    double over = (100.0 + 20.0 + 9.0 + 36.0) / (W * H);
    ck_assert(fabs(r.over30 - over) < 1e-12);
    /* coverage over the one image that had a mask */
    ck_assert(fabs(r.coverage - 100.0 / (W * H)) < 1e-12);
    double mean = (W * H + 100 * 199.0 + 29 * 99.0 + 36 * 49.0) / (W * H);
    ck_assert(fabs(r.mean - mean) < 1e-6);
    ck_assert(fabs(r.mean_per_cell - mean / 3) < 1e-6);
    /* groups are sorted by stain, focus, count */
    ck_assert_int_eq(stats_table_add(&t, 1, 9, 1, px, NULL, W, H, &st), 0);
    ck_assert_int_eq(stats_table_add(&t, 2, 1, 1, px, NULL, W, H, &st), 0);
    ck_assert_int_eq(t.g[0].stain, 1);
    ck_assert_int_eq(t.g[1].count, 1);
    ck_assert_int_eq(stats_table_find(&t, 2, 3, 1), 2);
    ck_assert_int_eq(stats_table_find(&t, 2, 3, 48), -1);
    stats_table_free(&t);
    free(px);
    free(mask);
}
END_TEST

START_TEST(test_stats_sources)
{
    char dir[] = "/tmp/test_sim_stats.XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char p[512];
    cc_status st;
    status_clear(&st);
    stats_table t;
    stats_table_init(&t);
    long skipped = -1;
    /* a missing folder and an empty one are errors naming the folder */
    snprintf(p, sizeof p, "%s/none", dir);
    ck_assert_int_eq(stats_add_tiff_dir(&t, p, NULL, 0, 0, &skipped, &st), -1);
    ck_assert_ptr_nonnull(strstr(st.msg, p));
    status_clear(&st);
    ck_assert_int_eq(stats_add_tiff_dir(&t, dir, NULL, 0, 0, &skipped, &st), -1);
    ck_assert_msg(strstr(st.msg, "no BBBC005-named") != NULL, "%s", st.msg);
    /* an image with its F1 mask under ground_truth/, and one stray file */
    enum { W = 40, H = 30 };
    uint8_t img[W * H], msk[W * H];
    memset(img, 2, sizeof img);
    memset(msk, 0, sizeof msk);
    for (int i = 0; i < 60; i++) img[i] = 250, msk[i] = 255;
    snprintf(p, sizeof p, "%s/images", dir);
    ck_assert_int_eq(mkdir(p, 0777), 0);
    snprintf(p, sizeof p, "%s/ground_truth", dir);
    ck_assert_int_eq(mkdir(p, 0777), 0);
    snprintf(p, sizeof p, "%s/images/SIMCEPImages_P02_C5_F48_s03_w2.TIF", dir);
    ck_assert_int_eq(tiff_write_gray(p, W, H, 8, img, &st), 0);
    snprintf(p, sizeof p, "%s/ground_truth/SIMCEPImages_A02_C5_F1_s03_w2.TIF", dir);
    ck_assert_int_eq(tiff_write_gray(p, W, H, 8, msk, &st), 0);
    snprintf(p, sizeof p, "%s/images/notes.txt", dir);
    FILE *f = fopen(p, "w");
    fputs("x", f);
    fclose(f);
    ck_assert_int_eq(stats_add_tiff_dir(&t, dir, NULL, 0, 0, &skipped, &st), 0);
    ck_assert_int_eq(skipped, 1);
    ck_assert_int_eq(t.n, 1);
    stats_row r;
    stats_table_row(&t, 0, &r);
    ck_assert_int_eq(r.stain, 2);
    ck_assert_int_eq(r.focus, 48);
    ck_assert_int_eq(r.count, 5);
    ck_assert(fabs(r.coverage - 60.0 / (W * H)) < 1e-12);
    ck_assert(fabs(r.blobs - 1.0) < 1e-12);
    /* the stain filter leaves nothing: an error, not an empty table */
    status_clear(&st);
    ck_assert_int_eq(stats_add_tiff_dir(&t, dir, NULL, 1, 0, &skipped, &st), -1);
    ck_assert_ptr_nonnull(strstr(st.msg, "match the filter"));
    /* a mask of another size is refused, naming the mask */
    status_clear(&st);
    uint8_t small[4] = {0};
    snprintf(p, sizeof p, "%s/ground_truth/SIMCEPImages_A02_C5_F1_s03_w2.TIF", dir);
    ck_assert_int_eq(tiff_write_gray(p, 2, 2, 8, small, &st), 0);
    ck_assert_int_eq(stats_add_tiff_dir(&t, dir, NULL, 0, 0, &skipped, &st), -1);
    ck_assert_ptr_nonnull(strstr(st.msg, "A02_C5_F1_s03_w2"));
    /* a file that is not a data set */
    ck_assert_int_eq(stats_add_dataset(&t, p, 0, 0, &st), -1);
    stats_table_free(&t);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* ---- the simulator against the real figures ----------------------------- */

#define SITES 6
static const int SIM_COUNTS[] = {1, 5, 14, 31, 44, 61, 100};
#define NSIM (int)(sizeof SIM_COUNTS / sizeof *SIM_COUNTS)
static const int SIM_FOCUS[] = {1, 48};

static int table_sink(void *ctx, const sim_image *im, cc_status *st)
{
    const size_t n = (size_t)im->width * im->height;
    float *px = malloc(n * sizeof *px), *mask = malloc(n * sizeof *mask);
    int rc = px && mask ? 0 : status_set(st, "out of memory");
    for (size_t i = 0; !rc && i < n; i++) {
        px[i] = im->pixels[i];
        mask[i] = im->mask[i] ? 1.0f : 0.0f;
    }
    if (!rc) {
#pragma omp critical(test_table_sink)
        rc = stats_table_add(ctx, im->stain, im->count, im->focus, px, mask, im->width,
                             im->height, st);
    }
    free(px);
    free(mask);
    return rc;
}

/* Simulate one stain at 696x520 with the default knobs. */
static void simulate_stats(int stain, stats_table *t)
{
    sim_params p;
    sim_params_default(&p);
    ck_assert_int_eq(p.width, 696);
    sim_job job = {SIM_COUNTS, NSIM, SIM_FOCUS, 2, SITES, stain, 2};
    cc_status st;
    status_clear(&st);
    stats_table_init(t);
    ck_assert_msg(sim_run(&p, &job, table_sink, t, NULL, &st) == 0, "%s", st.msg);
    ck_assert_int_eq(t->n, NSIM * 2);
}

static stats_row row_of(stats_table *t, int stain, int count, int focus)
{
    int i = stats_table_find(t, stain, count, focus);
    ck_assert_msg(i >= 0, "no group w%d C%d F%d", stain, count, focus);
    stats_row r;
    stats_table_row(t, i, &r);
    ck_assert_int_eq(r.images, SITES);
    return r;
}

/* |got - want| <= tol * want (rel) or <= tol (abs), with a message. */
#define NEAR_REL(what, got, want, tol)                                                   \
    ck_assert_msg(fabs((got) - (want)) <= (tol) * (want),                                \
                  "%s: simulated %.4g, real %.4g (tolerance %.0f%%)", what, (double)(got), \
                  (double)(want), 100.0 * (tol))
#define NEAR_ABS(what, got, want, tol)                                                   \
    ck_assert_msg(fabs((got) - (want)) <= (tol),                                         \
                  "%s: simulated %.4g, real %.4g (tolerance +-%g)", what, (double)(got),   \
                  (double)(want), (double)(tol))
#define IN_RANGE(what, got, lo, hi)                                                      \
    ck_assert_msg((got) >= (lo) && (got) <= (hi), "%s: simulated %.4g, expected %g..%g", \
                  what, (double)(got), (double)(lo), (double)(hi))

/* Checks shared by both stains at every simulated count. */
static void check_common(stats_table *t, int stain)
{
    char what[128];
    for (int k = 0; k < NSIM; k++) {
        const int c = SIM_COUNTS[k];
        stats_row f1 = row_of(t, stain, c, 1), f48 = row_of(t, stain, c, 48);
        /* background: median 1 (w2: 1-2) at F1, absolute +-0.5 */
        snprintf(what, sizeof what, "w%d C%d F1 background", stain, c);
        NEAR_ABS(what, f1.background, 1.0, 0.5);
        /* at F48 blurred light raises it at high counts (real subset: 1.0
         * up to C31; 1.0 (w1) and 1.9 (w2) at C44; 7.2 (w1) and 17.8 (w2)
         * at C100): absolute +-2 up to C44, +-6 at C100 */
        snprintf(what, sizeof what, "w%d C%d F48 background", stain, c);
        if (c <= 31) NEAR_ABS(what, f48.background, 1.0, 2.0);
        if (c == 44) NEAR_ABS(what, f48.background, stain == 1 ? 1.0 : 1.9, 2.0);
        if (c == 100) NEAR_ABS(what, f48.background, stain == 1 ? 7.2 : 17.8, 6.0);
        /* the mean is the same scene blurred: F48 within 5% of F1 */
        snprintf(what, sizeof what, "w%d C%d F48 mean vs F1", stain, c);
        NEAR_REL(what, f48.mean, f1.mean, 0.05);
    }
}

START_TEST(test_sim_w1_matches_real)
{
    stats_table t;
    simulate_stats(1, &t);
    check_common(&t, 1);
    char what[128];
    /* mean image intensity by count (table: C1 1.3, C14 5.5, C31 11.0,
     * C61 20.5, C100 32.9): 10%, C1 absolute +-0.25 (one nucleus) */
    static const int mc[] = {14, 31, 61, 100};
    static const double mv[] = {5.5, 11.0, 20.5, 32.9};
    NEAR_ABS("w1 C1 F1 mean", row_of(&t, 1, 1, 1).mean, 1.3, 0.25);
    for (int k = 0; k < 4; k++) {
        snprintf(what, sizeof what, "w1 C%d F1 mean", mc[k]);
        NEAR_REL(what, row_of(&t, 1, mc[k], 1).mean, mv[k], 0.10);
    }
    /* mask coverage (table: C5 0.011, C14 0.030, C31 0.066, C44 0.094,
     * C61 0.129, C100 0.211): 10%; C1 0.002 absolute +-0.0005 */
    static const int cc[] = {5, 14, 31, 44, 61, 100};
    static const double cv[] = {0.011, 0.030, 0.066, 0.094, 0.129, 0.211};
    NEAR_ABS("w1 C1 coverage", row_of(&t, 1, 1, 1).coverage, 0.002, 0.0005);
    for (int k = 0; k < 6; k++) {
        snprintf(what, sizeof what, "w1 C%d coverage", cc[k]);
        NEAR_REL(what, row_of(&t, 1, cc[k], 1).coverage, cv[k], 0.10);
    }
    /* nucleus area at 30% of the max, F1 (table: median ~760, p10-p90
     * ~670-860; real subset medians 766-817): median within 10% of 780 at
     * every count; where few touch (C <= 5) p90 <= 860 + 10% and p10 >=
     * 670 - 20% (the p10 of ~30 nuclei moves with one cut by the border;
     * touching at C14 and above is the blob counts' business) */
    for (int k = 0; k < NSIM; k++) {
        stats_row r = row_of(&t, 1, SIM_COUNTS[k], 1);
        snprintf(what, sizeof what, "w1 C%d blob area median", SIM_COUNTS[k]);
        NEAR_REL(what, r.area_median, 780.0, 0.10);
        if (SIM_COUNTS[k] <= 5) {
            snprintf(what, sizeof what, "w1 C%d blob area p10..p90", SIM_COUNTS[k]);
            IN_RANGE(what, r.area_p10, 0.8 * 670, 860.0);
            IN_RANGE(what, r.area_p90, 670.0, 1.1 * 860);
        }
    }
    /* separate blobs at F1 (table: C14 14, C31 29, C61 49): 10% */
    NEAR_REL("w1 C14 blobs", row_of(&t, 1, 14, 1).blobs, 14.0, 0.10);
    NEAR_REL("w1 C31 blobs", row_of(&t, 1, 31, 1).blobs, 29.0, 0.10);
    NEAR_REL("w1 C61 blobs", row_of(&t, 1, 61, 1).blobs, 49.0, 0.10);
    /* image max (table: 235-255 at F1, 115-135 at F39-F48; real subset
     * C1: 181 and 89, a lone nucleus): C >= 14 within 235..255 and
     * 115..135 widened by 10%; C1 within 10% of the subset's */
    for (int k = 0; k < NSIM; k++) {
        const int c = SIM_COUNTS[k];
        if (c < 14) continue;
        snprintf(what, sizeof what, "w1 C%d F1 max", c);
        IN_RANGE(what, row_of(&t, 1, c, 1).max, 0.9 * 235, 255.0);
        snprintf(what, sizeof what, "w1 C%d F48 max", c);
        IN_RANGE(what, row_of(&t, 1, c, 48).max, 0.9 * 115, 1.1 * 135);
    }
    NEAR_REL("w1 C1 F1 max", row_of(&t, 1, 1, 1).max, 181.0, 0.15);
    NEAR_REL("w1 C1 F48 max", row_of(&t, 1, 1, 48).max, 89.0, 0.10);
    /* pixels > 30 at F1 (real subset: 0.0026 x count, 0.259 at C100; the
     * table's 0.0028 x count is at F1-F7): 12% of 0.0027 x count, C >= 14 */
    for (int k = 0; k < NSIM; k++) {
        const int c = SIM_COUNTS[k];
        if (c < 14) continue;
        snprintf(what, sizeof what, "w1 C%d F1 pixels > 30", c);
        NEAR_REL(what, row_of(&t, 1, c, 1).over30, 0.0027 * c, 0.12);
    }
    stats_table_free(&t);
}
END_TEST

START_TEST(test_sim_w2_matches_real)
{
    stats_table t;
    simulate_stats(2, &t);
    check_common(&t, 2);
    char what[128];
    /* mean image intensity by count (table: C1 1.9, C5 7.0, C44 49,
     * C61 67, C100 96-100): 10%; C1 absolute +-0.4 (one cell) */
    NEAR_ABS("w2 C1 F1 mean", row_of(&t, 2, 1, 1).mean, 1.9, 0.4);
    static const int mc[] = {5, 44, 61, 100};
    static const double mv[] = {7.0, 49.0, 67.0, 98.0};
    for (int k = 0; k < 4; k++) {
        snprintf(what, sizeof what, "w2 C%d F1 mean", mc[k]);
        NEAR_REL(what, row_of(&t, 2, mc[k], 1).mean, mv[k], 0.10);
    }
    /* mask coverage: the overlap curve (table: C1 0.008, C5 0.041,
     * C14 0.113, C31 0.238, C44 0.324, C61 0.429, C100 0.639): 10%, C1
     * absolute +-0.002 */
    NEAR_ABS("w2 C1 coverage", row_of(&t, 2, 1, 1).coverage, 0.008, 0.002);
    static const int cc[] = {5, 14, 31, 44, 61, 100};
    static const double cv[] = {0.041, 0.113, 0.238, 0.324, 0.429, 0.639};
    for (int k = 0; k < 6; k++) {
        snprintf(what, sizeof what, "w2 C%d coverage", cc[k]);
        NEAR_REL(what, row_of(&t, 2, cc[k], 1).coverage, cv[k], 0.10);
    }
    /* cell-body area at 30% of the max, F1, before merging (table:
     * median ~3,000-3,800): C1..C14 within 3,000..3,800 widened by 10% */
    for (int k = 0; k < NSIM && SIM_COUNTS[k] <= 14; k++) {
        snprintf(what, sizeof what, "w2 C%d blob area median", SIM_COUNTS[k]);
        IN_RANGE(what, row_of(&t, 2, SIM_COUNTS[k], 1).area_median, 0.9 * 3000, 1.1 * 3800);
    }
    /* merged clumps at C100 (table: up to ~10,000 px and far more at
     * C100; real subset largest blob 228,000 px): the largest > 50,000 */
    IN_RANGE("w2 C100 largest blob", row_of(&t, 2, 100, 1).area_max, 50000.0, 361920.0);
    /* separate blobs at F1 (table: C5 5; C44: real subset 16.6, site 1
     * 16; the table's 23 is not what the subset shows): C5 within 15%
     * (one merge among SITES * 5 cells is 3%), C44 and C100 (subset 6.4)
     * within 20% (clumps of 10-40 cells) */
    NEAR_REL("w2 C5 blobs", row_of(&t, 2, 5, 1).blobs, 5.0, 0.15);
    NEAR_REL("w2 C44 blobs", row_of(&t, 2, 44, 1).blobs, 16.6, 0.20);
    NEAR_REL("w2 C100 blobs", row_of(&t, 2, 100, 1).blobs, 6.4, 0.25);
    /* image max (table: 215-230 at F1, ~180-200 at F35-F48; real subset
     * C1: 195 and 159): C >= 5 within those widened by 10%, C1 10% */
    for (int k = 0; k < NSIM; k++) {
        const int c = SIM_COUNTS[k];
        if (c < 5) continue;
        snprintf(what, sizeof what, "w2 C%d F1 max", c);
        IN_RANGE(what, row_of(&t, 2, c, 1).max, 0.9 * 215, 1.1 * 230);
        if (c >= 14) {
            snprintf(what, sizeof what, "w2 C%d F48 max", c);
            IN_RANGE(what, row_of(&t, 2, c, 48).max, 0.9 * 180, 1.1 * 200);
        }
    }
    NEAR_REL("w2 C1 F1 max", row_of(&t, 2, 1, 1).max, 195.0, 0.10);
    NEAR_REL("w2 C1 F48 max", row_of(&t, 2, 1, 48).max, 159.0, 0.12);
    /* pixels > 30 at F1 (table: 0.35 at C44, 0.7-0.8 at C83-C100; real
     * subset 0.358 and 0.683 at C100): 10% of 0.35, 0.63..0.88 at C100 */
    NEAR_REL("w2 C44 F1 pixels > 30", row_of(&t, 2, 44, 1).over30, 0.35, 0.10);
    IN_RANGE("w2 C100 F1 pixels > 30", row_of(&t, 2, 100, 1).over30, 0.63, 0.88);
    stats_table_free(&t);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("sim_stats");
    TCase *tc = tcase_create("stats");
    tcase_add_test(tc, test_stats_blobs);
    tcase_add_test(tc, test_stats_sources);
    suite_add_tcase(s, tc);
    tc = tcase_create("real");
    /* about 2-4 s of CPU per stain at 696x520; slack for a loaded machine */
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_sim_w1_matches_real);
    tcase_add_test(tc, test_sim_w2_matches_real);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(suite());
}
