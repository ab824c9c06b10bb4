/* test_centres.c - cell centres in data sets (src/data/centres.h) and the
 * density targets built from them (src/train/density_target.h): part of
 * the test_sim binary (sim_centres_tcase). */
#include <check.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "src/data/centres.h"
#include "src/data/dataset.h"
#include "src/data/import.h"
#include "src/sim/sim_output.h"
#include "src/train/density_target.h"
#include "tests/testmain.h"

TCase *sim_centres_tcase(void);

static const int counts[] = {1, 7, 30};
static const int focus[] = {1, 12};

/* Simulate counts x focus x 2 sites (w2) at 174x130, stored at w x h. */
static void simulate_to(const char *path, int w, int h)
{
    sim_params p;
    sim_params_default(&p);
    p.width = 174;
    p.height = 130;
    sim_job job = {counts, 3, focus, 2, 2, 2, 1};
    sim_h5_out o;
    cc_status st;
    status_clear(&st);
    ck_assert_msg(sim_h5_begin(&o, path, w, h, &job, 1, NULL, DATASET_SPLIT_SCENE, &st) == 0, "%s", st.msg);
    const int rc = sim_run(&p, &job, sim_h5_sink, &o, NULL, &st);
    ck_assert_msg(sim_h5_end(&o, rc == 0, &st) == 0 && rc == 0, "%s", st.msg);
}

static int finite_slots(const cc_dataset *ds, int64_t i)
{
    int m = 0;
    for (int j = 0; j < ds->centres_k; j++)
        m += isfinite(ds->centres[((size_t)i * ds->centres_k + j) * 2]);
    return m;
}

/* Every image carries its scene's centres: as many as its count, inside
 * the image, the same at every focus level, and each on the foreground of
 * its mask stored at the simulator's own size (a cell's centre lies in its
 * body), which pins the coordinate convention; `import --from` keeps them
 * through a resize. */
START_TEST(test_simulated_centres)
{
    char dir[64], path[128], small[128];
    ck_assert_int_eq(tu_tmpdir_make(dir, sizeof dir, "cc_centres"), 0);
    snprintf(path, sizeof path, "%s/sim.h5", dir);
    snprintf(small, sizeof small, "%s/small.h5", dir);
    simulate_to(path, 174, 130);
    cc_status st;
    status_clear(&st);
    cc_dataset *ds = dataset_open(path, &st);
    ck_assert_msg(ds, "%s", st.msg);
    ck_assert_int_eq(ds->n, 3 * 2 * 2);
    ck_assert_int_eq(ds->centres_k, 30);
    float *mask = malloc(sizeof(float) * 174 * 130);
    for (int64_t i = 0; i < ds->n; i++) {
        ck_assert(centres_known(ds->centres, ds->centres_k, i));
        ck_assert_int_eq(finite_slots(ds, i), ds->counts[i]);
        ck_assert_int_eq(dataset_read_masks(ds, i, 1, mask, &st), 0);
        const float *xy = ds->centres + (size_t)i * ds->centres_k * 2;
        for (int c = 0; c < ds->counts[i]; c++) {
            ck_assert(xy[2 * c] >= 0 && xy[2 * c] <= 1 && xy[2 * c + 1] >= 0 && xy[2 * c + 1] <= 1);
            const int q = (int)(xy[2 * c] * 174), r = (int)(xy[2 * c + 1] * 130);
            ck_assert_msg(mask[r * 174 + q] > 0, "image %lld cell %d: centre (%d, %d) off the mask",
                          (long long)i, c, q, r);
        }
        for (int64_t j = 0; j < ds->n; j++)   /* focus levels of one scene agree */
            if (ds->scene[j] == ds->scene[i])
                ck_assert_int_eq(memcmp(xy, ds->centres + (size_t)j * ds->centres_k * 2,
                                        sizeof(float) * ds->centres_k * 2), 0);
    }
    import_opts o;
    import_opts_default(&o);
    o.out_path = small;
    o.width = 58;
    o.height = 43;
    int64_t written = 0;
    ck_assert_msg(import_from_dataset(&o, path, NULL, &written, &st) == 0, "%s", st.msg);
    cc_dataset *ss = dataset_open(small, &st);
    ck_assert_msg(ss, "%s", st.msg);
    ck_assert_int_eq(ss->centres_k, 30);
    ck_assert_int_eq(memcmp(ss->centres, ds->centres, sizeof(float) * ds->n * 30 * 2), 0);
    dataset_close(ss);
    dataset_close(ds);
    free(mask);
    tu_tmpdir_remove(dir);
}
END_TEST

/* Overwrite /centres[i][slot] of the file at path with (x, y). */
static void poke_centre(const char *path, int64_t i, int slot, float x, float y)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    ck_assert(f >= 0);
    hid_t d = H5Dopen2(f, "centres", H5P_DEFAULT), s = H5Dget_space(d);
    hsize_t start[3] = {(hsize_t)i, (hsize_t)slot, 0}, cnt[3] = {1, 1, 2};
    H5Sselect_hyperslab(s, H5S_SELECT_SET, start, NULL, cnt, NULL);
    hid_t m = H5Screate_simple(3, cnt, NULL);
    const float v[2] = {x, y};
    ck_assert(H5Dwrite(d, H5T_NATIVE_FLOAT, m, s, H5P_DEFAULT, v) >= 0);
    H5Sclose(m);
    H5Sclose(s);
    H5Dclose(d);
    H5Fclose(f);
}

/* A /centres that disagrees with the counts is refused with the file, the
 * image and the problem named; a set without /centres opens with none. */
START_TEST(test_bad_centres_refused)
{
    char dir[64], path[128], cmd[300];
    ck_assert_int_eq(tu_tmpdir_make(dir, sizeof dir, "cc_centres"), 0);
    snprintf(path, sizeof path, "%s/sim.h5", dir);
    simulate_to(path, 58, 43);
    /* images 0-3 have 1 cell, 4-7 seven, 8-11 thirty (job order) */
    const struct { int64_t i; int slot; float x, y; const char *why; } bad[] = {
        {0, 1, 0.5f, 0.5f, "more centres than its count"},     /* count 1: slot 1 is NaN */
        {4, 3, NAN, NAN, "not a number"},                      /* count 7 */
        {8, 0, 7.0f, 0.5f, "not a number in [-1, 2]"},         /* count 30 */
    };
    cc_status st;
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        char copy[160];
        snprintf(copy, sizeof copy, "%s/bad%zu.h5", dir, k);
        snprintf(cmd, sizeof cmd, "cp %s %s", path, copy);
        ck_assert_int_eq(system(cmd), 0);
        poke_centre(copy, bad[k].i, bad[k].slot, bad[k].x, bad[k].y);
        status_clear(&st);
        ck_assert_ptr_null(dataset_open(copy, &st));
        char want[64];
        snprintf(want, sizeof want, "image %lld", (long long)bad[k].i);
        ck_assert_msg(strstr(st.msg, copy) && strstr(st.msg, want) && strstr(st.msg, bad[k].why),
                      "%s", st.msg);
    }
    /* a data set written without centres has none, and density targets
     * for it fail naming the file */
    char plain[128];
    snprintf(plain, sizeof plain, "%s/plain.h5", dir);
    status_clear(&st);
    dataset_writer *wr = dataset_writer_open(plain, 8, 8, &st);
    ck_assert_ptr_nonnull(wr);
    float img[64] = {0};
    dataset_record rec = {3, 1, 2, 1, 0, DATASET_TRAIN, "x", NULL};
    ck_assert_int_eq(dataset_writer_append(wr, img, NULL, &rec, &st), 0);
    ck_assert_int_eq(dataset_writer_close(wr, 1, &st), 0);
    cc_dataset *ds = dataset_open(plain, &st);
    ck_assert_msg(ds, "%s", st.msg);
    ck_assert_int_eq(ds->centres_k, 0);
    ck_assert_ptr_null(ds->centres);
    int64_t idx = 0;
    uint8_t fl = 0;
    loader_batch b;
    memset(&b, 0, sizeof b);
    b.n = 1;
    b.indices = &idx;
    b.flipped = &fl;
    float out[4];
    ck_assert_int_eq(density_target_fill(ds, &b, 2, 2, 0.6, out, &st), -1);
    ck_assert_msg(strstr(st.msg, plain) && strstr(st.msg, "no cell centres"), "%s", st.msg);
    dataset_close(ds);
    tu_tmpdir_remove(dir);
}
END_TEST

static double map_sum(const float *m, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++) s += m[i];
    return s;
}

/* Targets: each map sums to the count wherever the cells are (inside,
 * at the edge, far outside after a scale), peaks on the cell's position,
 * and follows the flips and the scale the way the pixels move. */
START_TEST(test_density_target_image)
{
    enum { GH = 6, GW = 8 };
    float m[GH * GW], f[GH * GW];
    /* one cell at the centre of position (row 2, column 5) */
    const float one[2] = {5.5f / GW, 2.5f / GH};
    density_target_image(one, 1, 0, 1.0, GH, GW, 0.6, m);
    ck_assert(fabs(map_sum(m, GH * GW) - 1.0) < 1e-5);
    int best = 0;
    for (int i = 1; i < GH * GW; i++) best = m[i] > m[best] ? i : best;
    ck_assert_int_eq(best, 2 * GW + 5);
    ck_assert(fabsf(m[2 * GW + 4] - m[2 * GW + 6]) < 1e-6);   /* symmetric about it */
    /* flips: horizontal moves it to column 2, vertical to row 3 */
    density_target_image(one, 1, 1, 1.0, GH, GW, 0.6, f);
    for (int r = 0; r < GH; r++)
        for (int q = 0; q < GW; q++) ck_assert(fabsf(f[r * GW + q] - m[r * GW + GW - 1 - q]) < 1e-6);
    density_target_image(one, 1, 2, 1.0, GH, GW, 0.6, f);
    for (int r = 0; r < GH; r++)
        for (int q = 0; q < GW; q++) ck_assert(fabsf(f[r * GW + q] - m[(GH - 1 - r) * GW + q]) < 1e-6);
    /* scale 2 about the image centre: x 0.6875 -> 0.875 (column 6.5),
     * y 0.4167 -> 0.3333 (row 1.5): shared by four positions alike */
    density_target_image(one, 1, 0, 2.0, GH, GW, 0.6, f);
    const float q4 = f[1 * GW + 6];
    ck_assert(fabsf(f[1 * GW + 7] - q4) < 1e-6 && fabsf(f[2 * GW + 6] - q4) < 1e-6 &&
              fabsf(f[2 * GW + 7] - q4) < 1e-6);
    for (int i = 0; i < GH * GW; i++) ck_assert(f[i] <= q4 + 1e-6f);
    ck_assert(fabs(map_sum(f, GH * GW) - 1.0) < 1e-5);
    /* many cells, some on the edge or outside: the sum is their number */
    float xy[2 * 5] = {0.0f, 0.0f, 1.0f, 1.0f, 0.3f, 0.9f, -0.9f, 1.8f, 0.5f, 0.5f};
    density_target_image(xy, 5, 3, 1.7, GH, GW, 0.6, m);
    ck_assert(fabs(map_sum(m, GH * GW) - 5.0) < 1e-4);
    density_target_image(xy, 5, 0, 1.0, GH, GW, 0.06, m);    /* tiny sigma: nearest position */
    ck_assert(fabs(map_sum(m, GH * GW) - 5.0) < 1e-4);
    ck_assert(m[0] >= 1.0f - 1e-5f);
}
END_TEST

TCase *sim_centres_tcase(void)
{
    TCase *tc = tcase_create("centres");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_simulated_centres);
    tcase_add_test(tc, test_bad_centres_refused);
    tcase_add_test(tc, test_density_target_image);
    return tc;
}
