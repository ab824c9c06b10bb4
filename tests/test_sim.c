/* test_sim.c - the SIMCEP-like simulator (src/sim/simulate.h) and the PNG
 * writer (src/data/png_io.h). */
#include <check.h>
#include <math.h>
#include <omp.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "src/cli/cli.h"
#include "src/data/dataset.h"
#include "src/data/import.h"
#include "src/data/png_io.h"
#include "src/sim/simulate.h"
#include "tests/testmain.h"

/* Quarter-size BBBC005 images keep every test fast. */
#define TW 174
#define TH 130

static sim_params small_params(uint64_t seed)
{
    sim_params p;
    sim_params_default(&p);
    p.width = TW;
    p.height = TH;
    p.seed = seed;
    return p;
}

/* Independent inside test (crossing number along +x from the point),
 * written from scratch so that a bug in the library's scanline fill
 * cannot hide itself. */
static int inside_ref(const sim_poly *p, double x, double y)
{
    int in = 0;
    for (int i = 0; i < SIM_POLY_N; i++) {
        int j = (i + 1) % SIM_POLY_N;
        double xi = p->x[i], yi = p->y[i], xj = p->x[j], yj = p->y[j];
        if ((yi > y) != (yj > y)) {
            double xc = xi + (y - yi) / (yj - yi) * (xj - xi);
            if (x < xc) in = !in;
        }
    }
    return in;
}

/* ---- determinism -------------------------------------------------------- */

typedef struct collect {
    long n;
    int w, h;
    uint8_t *px, *mask;
    long calls;
} collect;

static int collect_sink(void *ctx, const sim_image *im, cc_status *st)
{
    (void)st;
    collect *c = ctx;
    size_t a = (size_t)c->w * c->h;
    ck_assert_int_lt(im->index, c->n);
    memcpy(c->px + (size_t)im->index * a, im->pixels, a);
    memcpy(c->mask + (size_t)im->index * a, im->mask, a);
#pragma omp atomic
    c->calls++;
    return 0;
}

static collect run_job(const sim_params *p, const sim_job *job)
{
    collect c = {sim_job_images(job), p->width, p->height, NULL, NULL, 0};
    size_t a = (size_t)c.w * c.h * c.n;
    c.px = calloc(a, 1);
    c.mask = calloc(a, 1);
    cc_status st;
    status_clear(&st);
    ck_assert_msg(sim_run(p, job, collect_sink, &c, NULL, &st) == 0, "%s", st.msg);
    ck_assert_int_eq(c.calls, c.n);
    return c;
}

START_TEST(test_determinism_threads)
{
    const int counts[] = {5, 40}, focus[] = {1, 17, 48};
    sim_params p = small_params(7);
    sim_job job = {counts, 2, focus, 3, 3, 3, 0};
    omp_set_num_threads(1);
    collect a = run_job(&p, &job);
    omp_set_num_threads(2);
    collect b = run_job(&p, &job);
    job.threads = 3;            /* the explicit knob, more threads than units per count */
    collect c = run_job(&p, &job);
    size_t n = (size_t)TW * TH * a.n;
    ck_assert_int_eq(memcmp(a.px, b.px, n), 0);
    ck_assert_int_eq(memcmp(a.mask, b.mask, n), 0);
    ck_assert_int_eq(memcmp(a.px, c.px, n), 0);
    ck_assert_int_eq(memcmp(a.mask, c.mask, n), 0);
    /* Not trivially equal: images are non-empty and another seed differs. */
    long lit = 0;
    for (size_t i = 0; i < n; i++) lit += a.px[i] > 20;
    ck_assert_int_gt(lit, 1000);
    p.seed = 8;
    collect d = run_job(&p, &job);
    ck_assert_int_ne(memcmp(a.px, d.px, n), 0);
    /* The same scene in a different job (other lists) gives the same bytes:
     * streams are keyed by (C, s, stain), not by list positions. */
    p.seed = 7;
    const int counts2[] = {40}, focus2[] = {17};
    sim_job job2 = {counts2, 1, focus2, 1, 3, 2, 0};
    collect e = run_job(&p, &job2);
    size_t a1 = (size_t)TW * TH;
    /* job: index = ((ci*3 + site-1)*2 + si)*3 + fi; C40, s3, w2, F17 */
    long idx = ((1 * 3 + 2) * 2 + 1) * 3 + 1;
    ck_assert_int_eq(memcmp(a.px + idx * a1, e.px + 2 * a1, a1), 0);
    free(a.px); free(a.mask); free(b.px); free(b.mask); free(c.px); free(c.mask);
    free(d.px); free(d.mask); free(e.px); free(e.mask);
}
END_TEST

/* ---- scene geometry ----------------------------------------------------- */

START_TEST(test_count_equals_cells)
{
    /* Includes crowded scenes where the overlap limit cannot always be met. */
    const int counts[] = {1, 5, 37, 100, 250};
    sim_params p = small_params(3);
    for (int k = 0; k < 5; k++) {
        sim_scene sc;
        cc_status st;
        status_clear(&st);
        ck_assert_msg(sim_scene_generate(&p, counts[k], 2, &sc, &st) == 0, "%s", st.msg);
        ck_assert_int_eq(sc.ncells, counts[k]);
        ck_assert_int_eq(sc.count, counts[k]);
        for (int i = 0; i < sc.ncells; i++) {
            ck_assert(sc.cells[i].cx >= 0 && sc.cells[i].cx < TW);
            ck_assert(sc.cells[i].cy >= 0 && sc.cells[i].cy < TH);
        }
        sim_scene_free(&sc);
    }
}
END_TEST

START_TEST(test_mask_covers_cells)
{
    sim_params p = small_params(11);
    for (int stain = 1; stain <= 2; stain++) {
        sim_scene sc;
        cc_status st;
        status_clear(&st);
        ck_assert_msg(sim_scene_generate(&p, 30, 1, &sc, &st) == 0, "%s", st.msg);
        uint8_t *m = malloc((size_t)TW * TH);
        sim_mask_render(&sc, stain, m);
        long mism = 0, fg = 0, area_sum = 0;
        for (int y = 0; y < TH; y++)
            for (int x = 0; x < TW; x++) {
                int in = 0;
                for (int i = 0; i < sc.ncells && !in; i++)
                    in = inside_ref(stain == 2 ? &sc.cells[i].cyto : &sc.cells[i].nucl,
                                    x + 0.5, y + 0.5);
                uint8_t v = m[(size_t)y * TW + x];
                ck_assert(v == 0 || v == 255);
                mism += (v == 255) != in;
                fg += in;
            }
        ck_assert_int_eq(mism, 0);
        /* union <= sum of the cells' own areas, and not empty */
        for (int i = 0; i < sc.ncells; i++) {
            long in;
            sim_poly_count(stain == 2 ? &sc.cells[i].cyto : &sc.cells[i].nucl, NULL, TW, TH,
                           &in, NULL);
            area_sum += in;
        }
        ck_assert_int_gt(fg, 0);
        ck_assert_int_le(fg, area_sum);
        /* every placed cell's centre pixel is foreground */
        for (int i = 0; i < sc.ncells; i++) {
            int x = (int)sc.cells[i].cx, y = (int)sc.cells[i].cy;
            ck_assert_msg(m[(size_t)y * TW + x] == 255, "cell %d centre (%g,%g) not in mask",
                          i, sc.cells[i].cx, sc.cells[i].cy);
        }
        /* the cytoplasm (w2) area at the scaled default radius is near pi r^2 */
        if (stain == 2) {
            double r = sim_params_radius(&p), mean = (double)area_sum / sc.ncells;
            ck_assert_msg(mean > 0.6 * M_PI * r * r && mean < 1.4 * M_PI * r * r,
                          "mean cell area %g px vs pi r^2 = %g", mean, M_PI * r * r);
        }
        free(m);
        sim_scene_free(&sc);
    }
}
END_TEST

START_TEST(test_overlap_limit)
{
    sim_params p = small_params(5);
    const double limits[] = {0.0, 0.2, 0.5};
    for (int l = 0; l < 3; l++) {
        p.overlap_limit = limits[l];
        sim_scene sc;
        cc_status st;
        status_clear(&st);
        ck_assert_msg(sim_scene_generate(&p, 40, 1, &sc, &st) == 0, "%s", st.msg);
        int forced = 0, overlapping = 0;
        for (int i = 0; i < sc.ncells; i++) {
            const sim_cell *c = &sc.cells[i];
            long in = 0, cov = 0;
            for (int y = 0; y < TH; y++)
                for (int x = 0; x < TW; x++) {
                    if (!inside_ref(&c->cyto, x + 0.5, y + 0.5)) continue;
                    in++;
                    for (int j = 0; j < i; j++)
                        if (inside_ref(&sc.cells[j].cyto, x + 0.5, y + 0.5)) {
                            cov++;
                            break;
                        }
                }
            double frac = in ? (double)cov / in : 0.0;
            ck_assert_msg(fabs(frac - c->overlap) < 1e-12, "cell %d overlap %g recorded %g",
                          i, frac, c->overlap);
            if (c->forced) {
                forced++;
                ck_assert_int_eq(c->tries, p.max_tries);
            } else {
                ck_assert_msg(frac <= limits[l] + 1e-12, "cell %d overlap %g > limit %g", i,
                              frac, limits[l]);
            }
            overlapping += frac > 0;
        }
        /* 40 cells of radius ~6 px fill ~35% of 174x130: the limit is
         * reachable for nearly all of them, and 0.5 lets some overlap */
        ck_assert_int_le(forced, 2);
        if (l == 2) ck_assert_int_gt(overlapping, 0);
        sim_scene_free(&sc);
    }
}
END_TEST

/* Nucleus pixels of scene sc that lie in an earlier cell's nucleus: the
 * pairs of overlapping nuclei, counted per later nucleus. */
static int nuclei_overlapping(const sim_scene *sc, const sim_params *p, int only_unforced)
{
    int n = 0;
    const double r = sim_params_radius(p) * p->nucleus_ratio;
    for (int i = 0; i < sc->ncells; i++) {
        const sim_cell *c = &sc->cells[i];
        if (only_unforced && c->forced) continue;
        int hit = 0;
        for (int y = 0; y < TH && !hit; y++)
            for (int x = 0; x < TW && !hit; x++) {
                const double dx = x + 0.5 - c->cx, dy = y + 0.5 - c->cy;
                if (dx * dx + dy * dy > r * r) continue;   /* the disc the limit tests */
                for (int j = 0; j < i && !hit; j++)
                    hit = inside_ref(&sc->cells[j].nucl, x + 0.5, y + 0.5);
            }
        n += hit;
    }
    return n;
}

/* --nucleus-overlap: with 0, no nucleus (unless forced after max_tries)
 * lies on an earlier one, where the default lets some; the default leaves
 * scenes as they were (the limit draws nothing from the generator). */
START_TEST(test_nucleus_overlap_limit)
{
    sim_params p = small_params(5), q = small_params(5);
    q.nucleus_overlap = 0.0;
    sim_scene a, b;
    cc_status st;
    status_clear(&st);
    ck_assert_msg(sim_scene_generate(&p, 60, 1, &a, &st) == 0, "%s", st.msg);
    ck_assert_msg(sim_scene_generate(&q, 60, 1, &b, &st) == 0, "%s", st.msg);
    const int before = nuclei_overlapping(&a, &p, 0), after = nuclei_overlapping(&b, &q, 1);
    int forced = 0;
    for (int i = 0; i < b.ncells; i++) forced += b.cells[i].forced;
    ck_assert_msg(before >= 3, "the default let only %d of 60 nuclei overlap", before);
    ck_assert_msg(after == 0, "%d nuclei overlap an earlier one with --nucleus-overlap 0", after);
    ck_assert_int_le(forced, 6);
    /* the body limit still holds for unforced cells */
    for (int i = 0; i < b.ncells; i++)
        if (!b.cells[i].forced) ck_assert(b.cells[i].overlap <= q.overlap_limit + 1e-12);
    sim_scene_free(&b);
    q.nucleus_overlap = 1.0;    /* explicit "no limit": the default's scene */
    ck_assert_msg(sim_scene_generate(&q, 60, 1, &b, &st) == 0, "%s", st.msg);
    for (int i = 0; i < a.ncells; i++)
        ck_assert(a.cells[i].cx == b.cells[i].cx && a.cells[i].cy == b.cells[i].cy);
    q.nucleus_overlap = 1.5;
    ck_assert_int_eq(sim_params_check(&q, &st), -1);
    ck_assert_msg(strstr(st.msg, "nucleus overlap"), "%s", st.msg);
    sim_scene_free(&a);
    sim_scene_free(&b);
}
END_TEST

/* ---- intensities -------------------------------------------------------- */

static double mean_at(const sim_params *p, int count, int focus, int stain, int sites,
                      double *max_out, double *hf_out)
{
    size_t n = (size_t)p->width * p->height;
    float *img = malloc(n * sizeof *img), *tmp = malloc(sim_focus_work(p->width, p->height, 48) * 4);
    uint8_t *px = malloc(n);
    double sum = 0, mx = 0, hf = 0;
    for (int s = 1; s <= sites; s++) {
        sim_scene sc;
        cc_status st;
        status_clear(&st);
        ck_assert_msg(sim_scene_generate(p, count, s, &sc, &st) == 0, "%s", st.msg);
        ck_assert_msg(sim_render(p, &sc, stain, img, &st) == 0, "%s", st.msg);
        sim_focus_apply(img, p->width, p->height, focus, px, tmp);
        int m = 0;
        for (size_t i = 0; i < n; i++) {
            sum += px[i];
            if (px[i] > m) m = px[i];
        }
        for (int y = 0; y < p->height; y++)
            for (int x = 0; x + 1 < p->width; x++) {
                double d = (double)px[(size_t)y * p->width + x + 1] - px[(size_t)y * p->width + x];
                hf += d * d;
            }
        mx += m;
        sim_scene_free(&sc);
    }
    free(img); free(tmp); free(px);
    if (max_out) *max_out = mx / sites;
    if (hf_out) *hf_out = hf / sites;
    return sum / n / sites;
}

START_TEST(test_mean_rises_with_count)
{
    sim_params p = small_params(21);
    for (int stain = 1; stain <= 2; stain++) {
        double m5 = mean_at(&p, 5, 1, stain, 4, NULL, NULL);
        double m50 = mean_at(&p, 50, 1, stain, 4, NULL, NULL);
        double m100 = mean_at(&p, 100, 1, stain, 4, NULL, NULL);
        ck_assert_msg(m5 < m50 && m50 < m100, "w%d means %g %g %g", stain, m5, m50, m100);
        ck_assert_msg(m100 > 4.0 * m5, "w%d means %g (C5) %g (C100)", stain, m5, m100);
    }
}
END_TEST

START_TEST(test_blur_reduces_detail)
{
    sim_params p = small_params(4);
    double mx1, mx20, mx48, hf1, hf20, hf48;
    double m1 = mean_at(&p, 30, 1, 1, 3, &mx1, &hf1);
    double m20 = mean_at(&p, 30, 20, 1, 3, &mx20, &hf20);
    double m48 = mean_at(&p, 30, 48, 1, 3, &mx48, &hf48);
    ck_assert_msg(mx1 > mx20 && mx20 > mx48, "max %g %g %g", mx1, mx20, mx48);
    /* (TW = 696/4: the blur's sigma is F/16 pixels here, 1.25 px at F20) */
    ck_assert_msg(hf1 > 2 * hf20 && hf20 > 2 * hf48, "hf energy %g %g %g", hf1, hf20, hf48);
    /* blur moves intensity, it does not make it (zero padding only loses) */
    ck_assert_msg(m48 <= m1 + 0.5 && m48 > 0.5 * m1, "means %g %g %g", m1, m20, m48);
}
END_TEST

/* The focus blur is F/4 pixels at 696x520 and scales with the width, as the
 * cell radius does: a scene simulated at half the size looks like the
 * full-size one area-resized.  Unscaled, F48 at 348x260 had an image max
 * about half the full-size one (and the real files'). */
START_TEST(test_blur_scales_with_width)
{
    sim_params full, half;
    sim_params_default(&full);
    full.seed = half.seed = 5;
    half = full;
    half.width = SIM_REF_WIDTH / 2;
    half.height = full.height / 2;
    for (int stain = 1; stain <= 2; stain++) {
        double mxf, mxh;
        double mf = mean_at(&full, 48, 48, stain, 2, &mxf, NULL);
        double mh = mean_at(&half, 48, 48, stain, 2, &mxh, NULL);
        ck_assert_msg(fabs(mxh - mxf) < 0.15 * mxf, "w%d F48 image max: %g at %dx%d, %g at %dx%d",
                      stain, mxf, full.width, full.height, mxh, half.width, half.height);
        ck_assert_msg(fabs(mh - mf) < 0.1 * mf, "w%d F48 mean: %g vs %g", stain, mf, mh);
    }
}
END_TEST

START_TEST(test_realistic_levels)
{
    /* DATA.md's real w1 (nuclei) figures at full size: mean ~1.3 (C1) ..
     * ~33 (C100), maxima 110..255.  A quick band check at full size with
     * one site; test_sim_stats holds both stains against the full table. */
    sim_params p;
    sim_params_default(&p);
    double mx1, mx100, mx100b;
    double m1 = mean_at(&p, 1, 1, 1, 1, &mx1, NULL);
    double m100 = mean_at(&p, 100, 1, 1, 1, &mx100, NULL);
    mean_at(&p, 100, 48, 1, 1, &mx100b, NULL);
    ck_assert_msg(m1 >= 0.3 && m1 <= 5, "C1 mean %g", m1);
    ck_assert_msg(m100 >= 20 && m100 <= 50, "C100 mean %g", m100);
    ck_assert_msg(mx100 >= 150 && mx100 <= 255, "C100 F1 max %g", mx100);
    ck_assert_msg(mx100b >= 70 && mx100b < mx100, "C100 F48 max %g", mx100b);
}
END_TEST

START_TEST(test_overlaps_averaged)
{
    /* Object intensities are <= 1; averaging keeps overlaps <= 1 where a
     * sum would exceed it.  Everything else that adds light is off. */
    sim_params p = small_params(13);
    p.overlap_limit = 1.0;
    p.noise_var = 0;
    p.autofluor = 0;
    p.illumination = 0;
    p.contrast = 1;
    p.brightness_sd = 0;
    p.gain = 1;
    p.background = 0;
    sim_scene sc;
    cc_status st;
    status_clear(&st);
    ck_assert_msg(sim_scene_generate(&p, 120, 1, &sc, &st) == 0, "%s", st.msg);
    size_t n = (size_t)TW * TH;
    float *img = malloc(n * sizeof *img);
    /* w2: the cell bodies, which overlap */
    ck_assert_msg(sim_render(&p, &sc, 2, img, &st) == 0, "%s", st.msg);
    float mx = 0;
    long bright = 0;
    for (size_t i = 0; i < n; i++) {
        if (img[i] > mx) mx = img[i];
        bright += img[i] > 0.5f;
    }
    ck_assert_msg(mx <= 1.0f + 1e-5f, "max %g > 1: overlaps are summed", mx);
    ck_assert_int_gt(bright, (long)n / 10);
    free(img);
    sim_scene_free(&sc);
}
END_TEST

/* ---- building blocks ---------------------------------------------------- */

START_TEST(test_gauss_blur)
{
    /* a point in the middle: symmetric, sums to 1, peak = k0^2 */
    int w = 41, h = 31;
    float *img = calloc((size_t)w * h, sizeof *img);
    float *tmp = malloc(sim_blur_work(w, h, 2.0) * sizeof *tmp);
    img[15 * w + 20] = 1.0f;
    sim_gauss_blur(img, w, h, 2.0, tmp);
    double sum = 0;
    for (int i = 0; i < w * h; i++) sum += img[i];
    ck_assert_msg(fabs(sum - 1.0) < 1e-5, "sum %g", sum);
    ck_assert(fabsf(img[15 * w + 17] - img[15 * w + 23]) < 1e-7);
    ck_assert(fabsf(img[12 * w + 20] - img[18 * w + 20]) < 1e-7);
    ck_assert(fabsf(img[15 * w + 17] - img[12 * w + 20]) < 1e-7);
    double g = exp(-9.0 / 8.0) / exp(0.0);
    ck_assert_msg(fabs(img[15 * w + 17] / img[15 * w + 20] - g) < 1e-4, "ratio");
    /* zero padding: a corner point loses mass */
    memset(img, 0, (size_t)w * h * sizeof *img);
    img[0] = 1.0f;
    sim_gauss_blur(img, w, h, 2.0, tmp);
    sum = 0;
    for (int i = 0; i < w * h; i++) sum += img[i];
    ck_assert_msg(sum < 0.42 && sum > 0.3, "corner sum %g", sum);
    free(img);
    free(tmp);
}
END_TEST

START_TEST(test_texture_range)
{
    cc_rng r;
    rng_seed(&r, 1, 2);
    int w = 57, h = 43;
    float *wt = malloc((size_t)w * h * sizeof *wt), *out = malloc((size_t)w * h * sizeof *out);
    float *work = malloc(sim_texture_work(w, h, 2, 8) * sizeof *work);
    for (int i = 0; i < w * h; i++) wt[i] = (i % w) < w / 2 ? 1.0f : 0.0f;
    sim_texture_make(&r, w, h, 0.9, 2, 8, 0.2, wt, out, work);
    float lo = 2, hi = -1, alo = 2, ahi = -1;
    double var = 0, mean = 0;
    for (int i = 0; i < w * h; i++) {
        if (out[i] < alo) alo = out[i];
        if (out[i] > ahi) ahi = out[i];
        if (!(wt[i] > 0)) continue;
        if (out[i] < lo) lo = out[i];
        if (out[i] > hi) hi = out[i];
        mean += out[i];
    }
    ck_assert(fabsf(lo - 0.2f) < 1e-6 && fabsf(hi - 1.0f) < 1e-6);
    ck_assert(alo >= 0.2f - 1e-6f && ahi <= 1.0f + 1e-6f);
    mean /= (w / 2) * h;
    for (int i = 0; i < w * h; i++)
        if (wt[i] > 0) var += (out[i] - mean) * (out[i] - mean);
    ck_assert_msg(var / ((w / 2) * h) > 1e-3, "texture is flat");
    free(wt); free(out); free(work);
}
END_TEST

START_TEST(test_cover_area)
{
    /* fractional coverage sums to the polygon's area (shoelace) */
    cc_rng r;
    rng_seed(&r, 9, 9);
    sim_poly poly;
    sim_shape_make(&r, 0.3, 0.05, 12.3, 30.2, 25.7, &poly);
    double area = 0;
    for (int i = 0; i < SIM_POLY_N; i++) {
        int j = (i + 1) % SIM_POLY_N;
        area += poly.x[i] * poly.y[j] - poly.x[j] * poly.y[i];
    }
    area = fabs(area) / 2;
    float *cov = calloc(64 * 64, sizeof *cov);
    sim_poly_cover(&poly, cov, 0, 0, 64, 64);
    double s = 0;
    for (int i = 0; i < 64 * 64; i++) {
        ck_assert(cov[i] >= 0 && cov[i] <= 1.0f + 1e-5f);
        s += cov[i];
    }
    ck_assert_msg(fabs(s - area) < 0.01 * area, "coverage %g vs area %g", s, area);
    free(cov);
}
END_TEST

START_TEST(test_job_check)
{
    const int good[] = {1, 5}, neg[] = {5, -1}, dup[] = {5, 5}, f[] = {1}, f0[] = {0};
    cc_status st;
    sim_job job = {good, 2, f, 1, 1, 1, 0};
    status_clear(&st);
    ck_assert_int_eq(sim_job_check(&job, &st), 0);
    job.counts = neg;
    status_clear(&st);
    ck_assert_int_eq(sim_job_check(&job, &st), -1);
    ck_assert_ptr_nonnull(strstr(st.msg, "-1"));
    job.counts = dup;
    status_clear(&st);
    ck_assert_int_eq(sim_job_check(&job, &st), -1);
    job.counts = good;
    job.focus = f0;
    status_clear(&st);
    ck_assert_int_eq(sim_job_check(&job, &st), -1);
    ck_assert_ptr_nonnull(strstr(st.msg, "focus"));
    sim_params p = small_params(1);
    p.overlap_limit = 1.5;
    status_clear(&st);
    ck_assert_int_eq(sim_params_check(&p, &st), -1);
    ck_assert_ptr_nonnull(strstr(st.msg, "overlap"));
}
END_TEST

/* ---- PNG ---------------------------------------------------------------- */

START_TEST(test_png_roundtrip)
{
    char dir[] = "/tmp/test_sim.XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[256], bad[256];
    snprintf(path, sizeof path, "%s/a.png", dir);
    snprintf(bad, sizeof bad, "%s/missing/a.png", dir);
    const int w = 37, h = 23;
    uint8_t *px = malloc((size_t)w * h);
    cc_rng r;
    rng_seed(&r, 3, 4);
    for (int i = 0; i < w * h; i++) px[i] = (uint8_t)rng_below(&r, 256);
    cc_status st;
    status_clear(&st);
    ck_assert_msg(png_write_gray(path, w, h, px, &st) == 0, "%s", st.msg);

    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    ck_assert(png_image_begin_read_from_file(&im, path));
    ck_assert_int_eq(im.width, w);
    ck_assert_int_eq(im.height, h);
    ck_assert_int_eq(im.format, PNG_FORMAT_GRAY);
    uint8_t *back = malloc((size_t)w * h);
    ck_assert(png_image_finish_read(&im, NULL, back, w, NULL));
    ck_assert_int_eq(memcmp(px, back, (size_t)w * h), 0);

    /* failure: clear message, no file, no temporary */
    status_clear(&st);
    ck_assert_int_eq(png_write_gray(bad, w, h, px, &st), -1);
    ck_assert_ptr_nonnull(strstr(st.msg, bad));
    ck_assert_int_ne(access(bad, F_OK), 0);

    /* only a.png in the directory (no temporary left behind) */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "test $(ls -A %s | wc -l) -eq 1", dir);
    ck_assert_int_eq(system(cmd), 0);
    unlink(path);
    ck_assert_int_eq(rmdir(dir), 0);
    free(px);
    free(back);
}
END_TEST

/* ---- the command ------------------------------------------------------- */

static int run_cli(const char *const *args)
{
    char *argv[64];
    int argc = 0;
    for (; args[argc]; argc++) argv[argc] = (char *)args[argc];
    argv[argc] = NULL;
    return cli_simulate(argc, argv);
}

static void rm_rf(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

START_TEST(test_cli_h5_equals_imported_tree)
{
    /* --out must hold exactly what --out-dir + `cellcount import` gives:
     * pixels, masks, scene ids, splits and source names (order aside);
     * loop 1 with --split-by count on both, which must also give every
     * count its own 2/1/1 of the 4 scenes. */
    const int by_count = _i == 1;
    char dir[] = "/tmp/test_sim.XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char tree[300], h5[300], imp[300], img[400], gt[400];
    snprintf(tree, sizeof tree, "%s/tree", dir);
    snprintf(h5, sizeof h5, "%s/sim.h5", dir);
    snprintf(imp, sizeof imp, "%s/imp.h5", dir);
    snprintf(img, sizeof img, "%s/images", tree);
    snprintf(gt, sizeof gt, "%s/ground_truth", tree);
    const char *args[] = {"simulate", "--out-dir", tree, "--out", h5, "--counts", "5,40",
                          "--focus", "9,1", "--sites", "4", "--image-size", "174x130",
                          "--size", "58x43", "--split", "50/25/25", "--split-seed", "3",
                          "--quiet", by_count ? "--split-by" : NULL, "count", NULL};
    ck_assert_int_eq(run_cli(args), 0);
    import_opts o;
    import_opts_default(&o);
    o.images_dir = img;
    o.masks_dir = gt;
    o.out_path = imp;
    o.stain = 0;
    o.width = 58;
    o.height = 43;
    o.seed = 3;
    o.frac[0] = 0.5;
    o.frac[1] = o.frac[2] = 0.25;
    o.split_by = by_count ? DATASET_SPLIT_COUNT : DATASET_SPLIT_SCENE;
    cc_status st;
    status_clear(&st);
    ck_assert_msg(import_run(&o, NULL, NULL, &st) == 0, "%s", st.msg);
    cc_dataset *a = dataset_open(h5, &st), *b = a ? dataset_open(imp, &st) : NULL;
    ck_assert_msg(a && b, "%s", st.msg);
    ck_assert_int_eq(a->n, 2 * 2 * 4 * 2);
    ck_assert_int_eq(a->split_by, o.split_by);
    ck_assert_int_eq(b->split_by, o.split_by);
    ck_assert_int_eq(a->n, b->n);
    ck_assert_int_eq(a->w, 58);
    ck_assert_int_eq(a->h, 43);
    size_t hw = 58 * 43;
    float *ia = malloc(hw * 4), *ib = malloc(hw * 4), *ma = malloc(hw * 4), *mb = malloc(hw * 4);
    int splits[3] = {0, 0, 0}, by5[3] = {0, 0, 0};
    for (int64_t i = 0; i < a->n; i++) {
        int64_t j = 0;
        while (j < b->n && strcmp(a->source[i], b->source[j])) j++;
        ck_assert_msg(j < b->n, "%s not imported", a->source[i]);
        ck_assert_int_eq(a->counts[i], b->counts[j]);
        ck_assert_int_eq(a->focus[i], b->focus[j]);
        ck_assert_int_eq(a->site[i], b->site[j]);
        ck_assert_int_eq(a->stain[i], b->stain[j]);
        ck_assert_int_eq(a->scene[i], b->scene[j]);
        ck_assert_int_eq(a->split[i], b->split[j]);
        ck_assert_int_eq(a->has_mask[i], 1);
        ck_assert_int_eq(b->has_mask[j], 1);
        splits[a->split[i]]++;
        if (a->counts[i] == 5) by5[a->split[i]]++;
        ck_assert(dataset_read_images(a, i, 1, ia, &st) == 0 &&
                  dataset_read_images(b, j, 1, ib, &st) == 0 &&
                  dataset_read_masks(a, i, 1, ma, &st) == 0 &&
                  dataset_read_masks(b, j, 1, mb, &st) == 0);
        ck_assert_int_eq(memcmp(ia, ib, hw * 4), 0);
        ck_assert_int_eq(memcmp(ma, mb, hw * 4), 0);
    }
    ck_assert(splits[0] > 0 && splits[1] + splits[2] > 0);
    if (by_count) {     /* 4 images per scene (2 focus x 2 stains) */
        ck_assert_int_eq(by5[0], 2 * 4);
        ck_assert_int_eq(by5[1], 4);
        ck_assert_int_eq(by5[2], 4);
    }
    dataset_close(a);
    dataset_close(b);
    free(ia); free(ib); free(ma); free(mb);
    rm_rf(dir);
}
END_TEST

START_TEST(test_cli_errors)
{
    char dir[] = "/tmp/test_sim.XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char out[300], file[300], sub[300], h5[300];
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(file, sizeof file, "%s/file", dir);
    snprintf(sub, sizeof sub, "%s/file/sub", dir);
    snprintf(h5, sizeof h5, "%s/no/such/x.h5", dir);
    const char *small[] = {"--image-size", "64x48", "--sites", "1", "--focus", "1", "--quiet"};
#define CLI(...) run_cli((const char *[]){"simulate", __VA_ARGS__, small[0], small[1], \
                                          small[2], small[3], small[4], small[5], small[6], NULL})
    ck_assert_int_eq(CLI("--out-dir", out, "--counts", "5,-1"), 2);
    ck_assert_int_eq(CLI("--out-dir", out, "--counts", "5,,6"), 2);
    ck_assert_int_eq(CLI("--out-dir", out, "--focus", "1.5"), 2);
    ck_assert_int_eq(CLI("--out-dir", out, "--stain", "3"), 2);
    ck_assert_int_eq(CLI("--out-dir", out, "--overlap", "-0.1"), 2);
    ck_assert_int_eq(CLI("--out", h5, "--split-by", "site"), 2);
    ck_assert_int_eq(CLI("--counts", "5"), 2);                      /* no output */
    ck_assert_int_eq(access(out, F_OK), -1);                        /* nothing made */
    FILE *f = fopen(file, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    ck_assert_int_eq(CLI("--out-dir", sub, "--counts", "5"), 1);
    ck_assert_int_eq(CLI("--out", h5, "--counts", "5"), 1);
    /* a good run, then a second one refuses to clobber it without --force */
    ck_assert_int_eq(CLI("--out-dir", out, "--counts", "5"), 0);
    char p[400];
    snprintf(p, sizeof p, "%s/images/SIMCEPImages_A02_C5_F1_s01_w1.TIF", out);
    ck_assert_int_eq(access(p, F_OK), 0);
    ck_assert_int_eq(CLI("--out-dir", out, "--counts", "5"), 1);
    ck_assert_int_eq(access(p, F_OK), 0);
    ck_assert_int_eq(CLI("--out-dir", out, "--counts", "10", "--force"), 0);
    ck_assert_int_eq(access(p, F_OK), -1);                          /* replaced */
    snprintf(p, sizeof p, "%s/ground_truth/SIMCEPImages_A03_C10_F1_s01_w2.TIF", out);
    ck_assert_int_eq(access(p, F_OK), 0);
    /* only images/ and ground_truth/ are left: no staging directories */
    char cmd[400];
    snprintf(cmd, sizeof cmd, "test \"$(ls -A %s | tr '\\n' ' ')\" = 'ground_truth images '", out);
    ck_assert_int_eq(system(cmd), 0);
#undef CLI
    rm_rf(dir);
}
END_TEST

TCase *sim_centres_tcase(void);     /* test_centres.c */

static Suite *sim_suite(void)
{
    Suite *s = suite_create("sim");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_determinism_threads);
    tcase_add_test(tc, test_count_equals_cells);
    tcase_add_test(tc, test_mask_covers_cells);
    tcase_add_test(tc, test_overlap_limit);
    tcase_add_test(tc, test_nucleus_overlap_limit);
    tcase_add_test(tc, test_mean_rises_with_count);
    tcase_add_test(tc, test_blur_reduces_detail);
    tcase_add_test(tc, test_blur_scales_with_width);
    tcase_add_test(tc, test_realistic_levels);
    tcase_add_test(tc, test_overlaps_averaged);
    tcase_add_test(tc, test_gauss_blur);
    tcase_add_test(tc, test_texture_range);
    tcase_add_test(tc, test_cover_area);
    tcase_add_test(tc, test_job_check);
    tcase_add_test(tc, test_png_roundtrip);
    tcase_add_loop_test(tc, test_cli_h5_equals_imported_tree, 0, 2);
    tcase_add_test(tc, test_cli_errors);
    suite_add_tcase(s, tc);
    suite_add_tcase(s, sim_centres_tcase());
    return s;
}

int main(void)
{
    return tu_run(sim_suite());
}
