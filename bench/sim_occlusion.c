/* sim_occlusion.c - how many cells of a simulated scene the images can
 * show at all.  The simulator lets a new cell body be up to
 * overlap_limit (0.7) covered when it is placed, and later cells cover it
 * further; a cell whose whole body lies under others leaves no trace in
 * the foreground mask the counter reads.  This prints, per scene (count,
 * site) of a default `cellcount simulate` set, the cells with less than
 * 5% / 25% of their body uncovered by any other cell, and those with less
 * than half their body inside the image.
 *
 *   bench/sim-occlusion [SITES [SEED [WIDTHxHEIGHT]]]    (25, 1, 696x520)
 *
 * Output: TSV with a header; one row per scene in BBBC005's count order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/data/bbbc_name.h"
#include "src/sim/sim_shape.h"
#include "src/sim/simulate.h"

/* p's bounding box clipped to the w x h image: [*x0, *x1) x [*y0, *y1). */
static void poly_box(const sim_poly *p, int w, int h, int *x0, int *y0, int *x1, int *y1)
{
    *x0 = p->xmin < 0 ? 0 : (int)p->xmin, *y0 = p->ymin < 0 ? 0 : (int)p->ymin;
    *x1 = p->xmax + 1 > w ? w : (int)p->xmax + 1, *y1 = p->ymax + 1 > h ? h : (int)p->ymax + 1;
}

/* Raise the cover count of p's pixels (saturating at 2: only "one" vs
 * "more" matters).  one: a zeroed w x h scratch, left zeroed. */
static void cover_add(const sim_poly *p, uint8_t *cover, uint8_t *one, int w, int h)
{
    int x0, y0, x1, y1;
    poly_box(p, w, h, &x0, &y0, &x1, &y1);
    sim_poly_mask(p, one, w, h, 1);
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) {
            const size_t k = (size_t)y * w + x;
            if (one[k] && cover[k] < 2) cover[k]++;
            one[k] = 0;
        }
}

/* p's pixels inside the image, and those only p covers. */
static void exclusive_pixels(const sim_poly *p, const uint8_t *cover, int w, int h, long *own,
                             long *inside)
{
    sim_poly_count(p, NULL, w, h, inside, own);
    int x0, y0, x1, y1;
    poly_box(p, w, h, &x0, &y0, &x1, &y1);
    *own = 0;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++)
            if (cover[(size_t)y * w + x] == 1 && sim_poly_contains(p, x + 0.5, y + 0.5)) (*own)++;
}

/* Area of p (shoelace), in and outside the image. */
static double poly_area(const sim_poly *p)
{
    double a = 0;
    for (int i = 0; i < SIM_POLY_N; i++) {
        const int j = (i + 1) % SIM_POLY_N;
        a += p->x[i] * p->y[j] - p->x[j] * p->y[i];
    }
    return a < 0 ? -a / 2 : a / 2;
}

int main(int argc, char **argv)
{
    int sites = argc > 1 ? atoi(argv[1]) : 25;
    sim_params p;
    sim_params_default(&p);
    if (argc > 2) p.seed = strtoull(argv[2], NULL, 10);
    if (argc > 3 && sscanf(argv[3], "%dx%d", &p.width, &p.height) != 2) {
        fprintf(stderr, "sim-occlusion: size must be WIDTHxHEIGHT\n");
        return 2;
    }
    const int w = p.width, h = p.height;
    uint8_t *cover = malloc((size_t)w * h), *one = calloc((size_t)w * h, 1);
    if (!cover || !one || sites < 1) return 2;
    printf("count\tsite\thidden5\thidden25\thalf_outside\tmean_own_frac\n");
    for (int ci = 0; ci < BBBC_NCOUNTS; ci++)
        for (int site = 1; site <= sites; site++) {
            sim_scene sc;
            cc_status st;
            status_clear(&st);
            if (sim_scene_generate(&p, bbbc_counts[ci], site, &sc, &st)) {
                fprintf(stderr, "sim-occlusion: %s\n", st.msg);
                return 1;
            }
            memset(cover, 0, (size_t)w * h);
            for (int i = 0; i < sc.ncells; i++) cover_add(&sc.cells[i].cyto, cover, one, w, h);
            int h5 = 0, h25 = 0, out = 0;
            double own_sum = 0;
            for (int i = 0; i < sc.ncells; i++) {
                long own, inside;
                exclusive_pixels(&sc.cells[i].cyto, cover, w, h, &own, &inside);
                const double area = poly_area(&sc.cells[i].cyto);
                const double f = area > 0 ? own / area : 0;
                h5 += f < 0.05;
                h25 += f < 0.25;
                out += area > 0 && inside < 0.5 * area;
                own_sum += f;
            }
            printf("%d\t%d\t%d\t%d\t%d\t%.4f\n", bbbc_counts[ci], site, h5, h25, out,
                   sc.ncells ? own_sum / sc.ncells : 0);
            sim_scene_free(&sc);
        }
    free(cover);
    free(one);
    return 0;
}
