/* simulate.c - scene placement, rendering, focus blur and parallel jobs
 * (see simulate.h; recipe in docs/DATA.md). */
#include "src/sim/simulate.h"

#include <assert.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* Shape noise of DATA.md, before the irregularity knob. */
#define CYTO_A 0.3
#define CYTO_B 0.05
#define NUCL_A 0.1
#define NUCL_B 0.1
/* Texture (p, n1, n2, base) of DATA.md. */
#define CYTO_TEX 0.9, 2, 8, 0.2
#define NUCL_TEX 0.5, 2, 5, 0.2
/* Autofluorescence: a coarse texture (grids 2..16) over the whole image. */
#define AUTOF_TEX 0.9, 1, 4, 0.0
/* Cluster spread: N(centre, (0.05 * image size)^2) per axis. */
#define CLUSTER_SPREAD 0.05
/* Defocus depth |N(0, 0.5)| mapped linearly to sigma 0.5..5 (at the
 * reference radius), saturating at 3 standard deviations. */
#define DEPTH_SD 0.5
#define DEPTH_SIGMA_LO 0.5
#define DEPTH_SIGMA_HI 5.0

/* rng purposes within one (C, s, stain) */
enum { PURPOSE_GEOMETRY = 0, PURPOSE_RENDER = 1 };

void sim_params_default(sim_params *p)
{
    memset(p, 0, sizeof *p);
    p->width = SIM_REF_WIDTH;
    p->height = SIM_REF_HEIGHT;
    p->cell_radius = 0.0;
    p->nucleus_ratio = SIM_NUCLEUS_RATIO;
    p->irregularity = 1.0;
    /* Calibrated against real BBBC005 files (docs/DATA.md, 'Real images'
     * and 'The simulator'; `cellcount stats` on the real subset): cells
     * overlap more than SIMCEP's limit 0.2 suggests and gather in two
     * clusters (w2 mask coverage 0.33 at C44 and 0.64 at C100, 17 blobs at
     * C44 but almost no touching cells at C5), there is no
     * visible illumination gradient or autofluorescence, the background is
     * level 1 with little noise, and objects are flat (mean ~150, max
     * ~190-230 at F1) with little cell-to-cell brightness spread.  The
     * second round (radius 32.1, overlap 0.7, gain 0.855) matched w2's mean
     * intensity at C70-C100 within 1% instead of 4% too bright, and its
     * mask coverage within 0.4% at every count: models trained on the
     * first round undercounted real C81+ images by 5 cells. */
    p->cluster_prob = 0.25;
    p->clusters = 2;
    p->overlap_limit = 0.7;
    p->nucleus_overlap = 1.0;
    p->max_tries = 50;
    p->autofluor = 0.0;
    p->illumination = 0.0;
    p->noise_var = 1e-5;
    p->background = 1.0;
    p->contrast = 0.7;
    p->brightness_sd = 0.03;
    p->gain = 0.855;
    p->nucleus_contrast = 0.6;
    p->nucleus_gain = 0.965;
    p->nucleus_brightness_sd = 0.12;
    p->seed = 1;
}

double sim_params_radius(const sim_params *p)
{
    return p->cell_radius > 0.0 ? p->cell_radius
                                : SIM_REF_CELL_RADIUS * p->width / SIM_REF_WIDTH;
}

int sim_params_check(const sim_params *p, cc_status *st)
{
    if (p->width < 8 || p->height < 8 || p->width > 16384 || p->height > 16384)
        return status_set(st, "simulate: image size %dx%d out of range (8..16384)",
                          p->width, p->height);
    if (!(p->cell_radius >= 0.0 && p->cell_radius <= 1000.0))
        return status_set(st, "simulate: cell radius %g out of range (0 = auto, <= 1000)",
                          p->cell_radius);
    if (sim_params_radius(p) < 1.0)
        return status_set(st, "simulate: cell radius %g px is below 1 px",
                          sim_params_radius(p));
    if (!(p->irregularity >= 0.0 && p->irregularity <= 10.0))
        return status_set(st, "simulate: irregularity %g out of range (0..10)",
                          p->irregularity);
    if (!(p->cluster_prob >= 0.0 && p->cluster_prob <= 1.0))
        return status_set(st, "simulate: cluster probability %g out of range (0..1)",
                          p->cluster_prob);
    if (p->clusters < 1 || p->clusters > 10000)
        return status_set(st, "simulate: clusters %d out of range (1..10000)", p->clusters);
    if (!(p->overlap_limit >= 0.0 && p->overlap_limit <= 1.0))
        return status_set(st, "simulate: overlap limit %g out of range (0..1)",
                          p->overlap_limit);
    if (!(p->nucleus_overlap >= 0.0 && p->nucleus_overlap <= 1.0))
        return status_set(st, "simulate: nucleus overlap %g out of range (0..1)",
                          p->nucleus_overlap);
    if (p->max_tries < 1 || p->max_tries > 100000)
        return status_set(st, "simulate: max tries %d out of range (1..100000)",
                          p->max_tries);
    if (!(p->autofluor >= 0.0 && p->autofluor <= 10.0))
        return status_set(st, "simulate: autofluorescence %g out of range (0..10)",
                          p->autofluor);
    if (!(p->illumination >= 0.0 && p->illumination <= 1.0))
        return status_set(st, "simulate: illumination %g out of range (0..1)",
                          p->illumination);
    if (!(p->background >= 0.0 && p->background <= 255.0))
        return status_set(st, "simulate: background %g out of range (0..255)", p->background);
    if (!(p->nucleus_ratio > 0.0 && p->nucleus_ratio <= 1.0))
        return status_set(st, "simulate: nucleus ratio %g out of range (0..1]", p->nucleus_ratio);
    if (!(p->noise_var >= 0.0 && p->noise_var <= 1.0))
        return status_set(st, "simulate: noise variance %g out of range (0..1)",
                          p->noise_var);
    if (!(p->contrast >= 0.1 && p->contrast <= 10.0))
        return status_set(st, "simulate: contrast %g out of range (0.1..10)", p->contrast);
    if (!(p->brightness_sd >= 0.0 && p->brightness_sd <= 3.0))
        return status_set(st, "simulate: brightness spread %g out of range (0..3)",
                          p->brightness_sd);
    if (!(p->nucleus_contrast >= 0.1 && p->nucleus_contrast <= 10.0))
        return status_set(st, "simulate: nucleus contrast %g out of range (0.1..10)",
                          p->nucleus_contrast);
    if (!(p->nucleus_brightness_sd >= 0.0 && p->nucleus_brightness_sd <= 3.0))
        return status_set(st, "simulate: nucleus brightness spread %g out of range (0..3)",
                          p->nucleus_brightness_sd);
    if (!(p->nucleus_gain > 0.0 && p->nucleus_gain <= 100.0))
        return status_set(st, "simulate: nucleus gain %g out of range (0..100]", p->nucleus_gain);
    if (!(p->gain > 0.0 && p->gain <= 1000.0))
        return status_set(st, "simulate: gain %g out of range (0..1000]", p->gain);
    return 0;
}

uint64_t sim_stream(int count, int site, int stain, int purpose)
{
    /* Disjoint bit fields: count < 2^31, site < 2^20, stain < 2^8. */
    return ((uint64_t)(uint32_t)count << 32) | ((uint64_t)(site & 0xfffff) << 12) |
           ((uint64_t)(stain & 0xff) << 4) | (uint64_t)(purpose & 0xf);
}

/* ---- placement ---------------------------------------------------------- */

/* A cell centre: around a random cluster centre with probability
 * cluster_prob (re-drawn until inside the image, then uniform as a last
 * resort), else uniform over the image. */
static void draw_centre(cc_rng *r, const sim_params *p, const double *ccx,
                        const double *ccy, double *cx, double *cy, int *clustered)
{
    const double w = p->width, h = p->height;
    *clustered = 0;
    if (rng_uniform(r) < p->cluster_prob) {
        int k = (int)rng_below(r, (uint64_t)p->clusters);
        for (int t = 0; t < 64; t++) {
            double x = ccx[k] + CLUSTER_SPREAD * w * rng_normal(r);
            double y = ccy[k] + CLUSTER_SPREAD * h * rng_normal(r);
            if (x >= 0.0 && x < w && y >= 0.0 && y < h) {
                *cx = x;
                *cy = y;
                *clustered = 1;
                return;
            }
        }
    }
    *cx = rng_range(r, 0.0, w);
    *cy = rng_range(r, 0.0, h);
}

/* Fraction of the disc of radius r at (cx, cy), clipped to the image, on
 * which occ is non-zero (0 for a disc with no pixel inside). */
static double disc_covered(const uint8_t *occ, int w, int h, double cx, double cy, double r)
{
    long in = 0, oc = 0;
    const int y0 = (int)floor(cy - r), y1 = (int)ceil(cy + r);
    const int x0 = (int)floor(cx - r), x1 = (int)ceil(cx + r);
    for (int y = y0 < 0 ? 0 : y0; y <= y1 && y < h; y++)
        for (int x = x0 < 0 ? 0 : x0; x <= x1 && x < w; x++) {
            const double dx = x + 0.5 - cx, dy = y + 0.5 - cy;
            if (dx * dx + dy * dy > r * r) continue;
            in++;
            oc += occ[(size_t)y * w + x] != 0;
        }
    return in > 0 ? (double)oc / (double)in : 0.0;
}

int sim_scene_generate(const sim_params *p, int count, int site, sim_scene *sc,
                       cc_status *st)
{
    memset(sc, 0, sizeof *sc);
    if (sim_params_check(p, st)) return -1;
    if (count < 0 || site < 1)
        return status_set(st, "simulate: bad scene C%d s%d (count >= 0, site >= 1)",
                          count, site);
    const int w = p->width, h = p->height;
    const double radius = sim_params_radius(p), scale = radius / SIM_REF_CELL_RADIUS;
    const double irr = p->irregularity;
    sc->width = w;
    sc->height = h;
    sc->count = count;
    sc->site = site;
    sc->cells = calloc(count > 0 ? (size_t)count : 1, sizeof *sc->cells);
    uint8_t *occ = calloc((size_t)w * h, 1);
    /* the nuclei's union, for the nucleus overlap limit (when it is on) */
    const int nlimit = p->nucleus_overlap < 1.0;
    uint8_t *occn = nlimit ? calloc((size_t)w * h, 1) : NULL;
    double *ccx = malloc((size_t)p->clusters * sizeof *ccx);
    double *ccy = malloc((size_t)p->clusters * sizeof *ccy);
    sim_poly *cand = malloc(sizeof *cand);
    if (!sc->cells || !occ || !ccx || !ccy || !cand || (nlimit && !occn)) {
        free(occ);
        free(occn);
        free(ccx);
        free(ccy);
        free(cand);
        sim_scene_free(sc);
        return status_set(st, "simulate: out of memory for scene C%d s%d (%dx%d)",
                          count, site, w, h);
    }

    cc_rng r;
    rng_seed(&r, p->seed, sim_stream(count, site, 0, PURPOSE_GEOMETRY));
    for (int k = 0; k < p->clusters; k++) {
        ccx[k] = rng_range(&r, 0.0, w);
        ccy[k] = rng_range(&r, 0.0, h);
    }
    for (int i = 0; i < count; i++) {
        sim_cell *c = &sc->cells[i];
        double best = INFINITY, best_frac = 0.0;
        int t;
        for (t = 1; t <= p->max_tries; t++) {
            double cx, cy;
            int clustered;
            draw_centre(&r, p, ccx, ccy, &cx, &cy, &clustered);
            sim_shape_make(&r, CYTO_A * irr, CYTO_B * irr, radius, cx, cy, cand);
            long in, oc;
            sim_poly_count(cand, occ, w, h, &in, &oc);
            const double frac = in > 0 ? (double)oc / (double)in : 0.0;
            /* with a nucleus limit: the try that exceeds both limits least */
            const double nfrac =
                nlimit ? disc_covered(occn, w, h, cx, cy, radius * p->nucleus_ratio) : 0.0;
            const double score = nlimit ? fmax(frac - p->overlap_limit, 0.0) +
                                              fmax(nfrac - p->nucleus_overlap, 0.0)
                                        : frac;
            if (score < best) {
                best = score;
                best_frac = frac;
                c->cx = cx;
                c->cy = cy;
                c->clustered = clustered;
                c->cyto = *cand;
            }
            if (frac <= p->overlap_limit && nfrac <= p->nucleus_overlap) break;
        }
        c->tries = t > p->max_tries ? p->max_tries : t;
        c->forced = t > p->max_tries;
        c->overlap = best_frac;
        sim_shape_make(&r, NUCL_A * irr, NUCL_B * irr, radius * p->nucleus_ratio,
                       c->cx, c->cy, &c->nucl);
        c->depth = fabs(DEPTH_SD * rng_normal(&r));
        double u = c->depth / (3.0 * DEPTH_SD);
        if (u > 1.0) u = 1.0;
        c->sigma = scale * (DEPTH_SIGMA_LO + (DEPTH_SIGMA_HI - DEPTH_SIGMA_LO) * u);
        sim_poly_mask(&c->cyto, occ, w, h, 1);
        if (nlimit) sim_poly_mask(&c->nucl, occn, w, h, 1);
    }
    sc->ncells = count;
    free(occ);
    free(occn);
    free(ccx);
    free(ccy);
    free(cand);
    return 0;
}

void sim_scene_free(sim_scene *sc)
{
    if (!sc) return;
    free(sc->cells);
    sc->cells = NULL;
    sc->ncells = 0;
}

void sim_mask_render(const sim_scene *sc, int stain, uint8_t *mask)
{
    assert(stain == 1 || stain == 2);
    memset(mask, 0, (size_t)sc->width * sc->height);
    for (int i = 0; i < sc->ncells; i++)
        sim_poly_mask(stain == 2 ? &sc->cells[i].cyto : &sc->cells[i].nucl, mask,
                      sc->width, sc->height, 255);
}

/* ---- blur --------------------------------------------------------------- */

static int blur_radius(double sigma) { return (int)ceil(3.0 * sigma); }

size_t sim_blur_work(int w, int h, double sigma)
{
    if (!(sigma > 0.0)) return 1;
    size_t r = (size_t)blur_radius(sigma);
    size_t m = (size_t)(w > h ? w : h);
    return (size_t)w * h + m + 2 * r + r + 1;
}

void sim_gauss_blur(float *img, int w, int h, double sigma, float *tmp)
{
    if (!(sigma > 0.0)) return;
    const int r = blur_radius(sigma);
    float *mid = tmp;                              /* w*h after the row pass */
    float *pad = mid + (size_t)w * h;              /* one zero-padded row */
    float *k = pad + (w > h ? w : h) + 2 * r;      /* k[0..r], symmetric */
    double sum = 0.0;
    for (int i = 0; i <= r; i++) {
        double v = exp(-0.5 * (double)i * i / (sigma * sigma));
        k[i] = (float)v;
        sum += i ? 2.0 * v : v;
    }
    for (int i = 0; i <= r; i++) k[i] = (float)(k[i] / sum);

    /* rows: zero padding by copying each row into the middle of pad */
    memset(pad, 0, ((size_t)w + 2 * r) * sizeof *pad);
    for (int y = 0; y < h; y++) {
        memcpy(pad + r, img + (size_t)y * w, (size_t)w * sizeof *pad);
        float *o = mid + (size_t)y * w;
        const float *c = pad + r;
        const float k0 = k[0];
#pragma omp simd
        for (int x = 0; x < w; x++) o[x] = k0 * c[x];
        for (int i = 1; i <= r; i++) {
            const float ki = k[i];
            const float *a = c - i, *b = c + i;
#pragma omp simd
            for (int x = 0; x < w; x++) o[x] += ki * (a[x] + b[x]);
        }
    }
    /* columns: rows outside the image are zero, so they are skipped */
    for (int y = 0; y < h; y++) {
        float *o = img + (size_t)y * w;
        const float *c = mid + (size_t)y * w;
        const float k0 = k[0];
#pragma omp simd
        for (int x = 0; x < w; x++) o[x] = k0 * c[x];
        for (int i = 1; i <= r; i++) {
            const float ki = k[i];
            int up = y - i >= 0, dn = y + i < h;
            if (up && dn) {
                const float *a = c - (size_t)i * w, *b = c + (size_t)i * w;
#pragma omp simd
                for (int x = 0; x < w; x++) o[x] += ki * (a[x] + b[x]);
            } else if (up || dn) {
                const float *a = up ? c - (size_t)i * w : c + (size_t)i * w;
#pragma omp simd
                for (int x = 0; x < w; x++) o[x] += ki * a[x];
            }
        }
    }
}

/* BBBC005's focus blur is sigma = F/4 pixels of a 696-pixel-wide image; a
 * scene simulated at another width gets the same blur relative to its
 * content (as the cell radius does).  Unscaled, a 348x260 scene at F48 was
 * twice as blurred as the real files (image max 56-78 against 108-143):
 * the quickstart trained on it and overcounted real blurred nuclei. */
static double focus_sigma(int w, int focus)
{
    return focus / 4.0 * w / SIM_REF_WIDTH;
}

size_t sim_focus_work(int w, int h, int focus)
{
    return (size_t)w * h + sim_blur_work(w, h, focus_sigma(w, focus));
}

void sim_focus_apply(const float *img, int w, int h, int focus, uint8_t *out, float *tmp)
{
    assert(focus >= 1);
    const size_t n = (size_t)w * h;
    float *b = tmp;
    memcpy(b, img, n * sizeof *b);
    sim_gauss_blur(b, w, h, focus_sigma(w, focus), b + n);
    for (size_t i = 0; i < n; i++) {
        float v = b[i] * 255.0f + 0.5f;
        out[i] = v <= 0.0f ? 0 : (v >= 255.0f ? 255 : (uint8_t)v);
    }
}

/* ---- rendering ---------------------------------------------------------- */

/* Geometry of one object's working window: the bounding box (tw x th,
 * origin x0, y0) that its texture is resized to, grown by pad on every side
 * so that its own defocus blur does not leak out of the window. */
typedef struct obj_win {
    int x0, y0, tw, th, pad, bx, by, bw, bh;
} obj_win;

static void object_window(const sim_poly *poly, double sigma, obj_win *o)
{
    o->x0 = (int)floor(poly->xmin);
    o->y0 = (int)floor(poly->ymin);
    o->tw = (int)ceil(poly->xmax) - o->x0;
    o->th = (int)ceil(poly->ymax) - o->y0;
    if (o->tw < 1) o->tw = 1;
    if (o->th < 1) o->th = 1;
    o->pad = blur_radius(sigma) + 1;
    o->bx = o->x0 - o->pad;
    o->by = o->y0 - o->pad;
    o->bw = o->tw + 2 * o->pad;
    o->bh = o->th + 2 * o->pad;
}

/* Accumulate a window into an image-sized buffer, clipped to the image. */
static void window_add(float *dst, int w, int h, const float *src, const obj_win *o)
{
    int i0 = o->bx < 0 ? -o->bx : 0, i1 = o->bx + o->bw > w ? w - o->bx : o->bw;
    int j0 = o->by < 0 ? -o->by : 0, j1 = o->by + o->bh > h ? h - o->by : o->bh;
    for (int j = j0; j < j1; j++) {
        float *d = dst + (size_t)(o->by + j) * w + o->bx;
        const float *s = src + (size_t)j * o->bw;
        for (int i = i0; i < i1; i++) d[i] += s[i];
    }
}

int sim_render(const sim_params *p, const sim_scene *sc, int stain, float *img,
               cc_status *st)
{
    if (stain != 1 && stain != 2)
        return status_set(st, "simulate: stain %d is not 1 (nuclei) or 2 (cell bodies)", stain);
    const int w = sc->width, h = sc->height;
    const size_t n = (size_t)w * h;
    assert(w == p->width && h == p->height);

    /* One scratch block sized for the largest object. */
    size_t win = 1, tex = 1, texw = 1, blur = 1;
    for (int i = 0; i < sc->ncells; i++) {
        const sim_cell *c = &sc->cells[i];
        obj_win o;
        object_window(stain == 2 ? &c->cyto : &c->nucl, c->sigma, &o);
        size_t a = (size_t)o.bw * o.bh, t = (size_t)o.tw * o.th;
        size_t tw = stain == 2 ? sim_texture_work(o.tw, o.th, 2, 8)
                               : sim_texture_work(o.tw, o.th, 2, 5);
        size_t b = sim_blur_work(o.bw, o.bh, c->sigma);
        if (a > win) win = a;
        if (t > tex) tex = t;
        if (tw > texw) texw = tw;
        if (b > blur) blur = b;
    }
    size_t afw = sim_texture_work(w, h, 1, 4);
    size_t obj = 2 * win + 2 * tex + texw + blur;
    float *den = calloc(n, sizeof *den);
    float *scratch = malloc((obj > afw + n ? obj : afw + n) * sizeof *scratch);
    if (!den || !scratch) {
        free(den);
        free(scratch);
        return status_set(st, "simulate: out of memory rendering C%d s%d w%d (%dx%d)",
                          sc->count, sc->site, stain, w, h);
    }
    float *cov = scratch, *val = cov + win, *wgt = val + win, *tx = wgt + tex;
    float *txw = tx + tex, *btmp = txw + texw;

    cc_rng r;
    rng_seed(&r, p->seed, sim_stream(sc->count, sc->site, stain, PURPOSE_RENDER));
    memset(img, 0, n * sizeof *img);
    for (int i = 0; i < sc->ncells; i++) {
        const sim_cell *c = &sc->cells[i];
        const sim_poly *poly = stain == 2 ? &c->cyto : &c->nucl;
        obj_win o;
        object_window(poly, c->sigma, &o);
        size_t a = (size_t)o.bw * o.bh;
        memset(cov, 0, a * sizeof *cov);
        sim_poly_cover(poly, cov, o.bx, o.by, o.bw, o.bh);
        for (int j = 0; j < o.th; j++)
            memcpy(wgt + (size_t)j * o.tw, cov + (size_t)(j + o.pad) * o.bw + o.pad,
                   (size_t)o.tw * sizeof *wgt);
        if (stain == 2)
            sim_texture_make(&r, o.tw, o.th, CYTO_TEX, wgt, tx, txw);
        else
            sim_texture_make(&r, o.tw, o.th, NUCL_TEX, wgt, tx, txw);
        /* Cells take up stain unequally: a per-object brightness factor
         * (log-normal, median 1).  Without it blurred images (F >= 30) stay
         * far below the real maxima at the real mean. */
        const double z = rng_normal(&r);
        float bright = (float)exp(p->brightness_sd * z);
        float g = (float)p->contrast;
        if (stain == 1) {  /* nuclei: their own spread, exponent and gain */
            bright = (float)(p->nucleus_gain * exp(p->nucleus_brightness_sd * z));
            g = (float)p->nucleus_contrast;
        }
        for (size_t k = 0; k < (size_t)o.tw * o.th; k++)
            tx[k] = bright * (g != 1.0f ? powf(tx[k], g) : tx[k]);
        memset(val, 0, a * sizeof *val);
        for (int j = 0; j < o.th; j++) {
            float *v = val + (size_t)(j + o.pad) * o.bw + o.pad;
            const float *cv = cov + (size_t)(j + o.pad) * o.bw + o.pad;
            const float *t = tx + (size_t)j * o.tw;
            for (int x = 0; x < o.tw; x++) v[x] = cv[x] * t[x];
        }
        /* Per-object defocus before compositing (DATA.md). */
        sim_gauss_blur(cov, o.bw, o.bh, c->sigma, btmp);
        sim_gauss_blur(val, o.bw, o.bh, c->sigma, btmp);
        window_add(img, w, h, val, &o);
        window_add(den, w, h, cov, &o);
    }
    /* Overlaps are averaged: divide by the summed coverage where > 1, so a
     * lone object keeps its soft (blurred) edge. */
    double ecell = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (den[i] > 1.0f) img[i] /= den[i];
        ecell += (double)img[i] * img[i];
    }

    /* Autofluorescence: coarse texture carrying `autofluor` of the cells'
     * energy (sum of squares). */
    float *af = scratch, *afwork = scratch + n;
    sim_texture_make(&r, w, h, AUTOF_TEX, NULL, af, afwork);
    double eaf = 0.0;
    for (size_t i = 0; i < n; i++) eaf += (double)af[i] * af[i];
    float ka = eaf > 0.0 ? (float)sqrt(p->autofluor * ecell / eaf) : 0.0f;

    /* Uneven illumination: a quadratic fall-off from a random brightest
     * point, reaching 1 - illumination at the farthest corner distance. */
    double lx = rng_range(&r, 0.0, w), ly = rng_range(&r, 0.0, h);
    const float gain = (float)p->gain, sd = (float)sqrt(p->noise_var);
    const float bg = (float)(p->background / 255.0);
    const double s = p->illumination / 2.0;
    for (int y = 0; y < h; y++) {
        double dy = (y + 0.5 - ly) / h;
        for (int x = 0; x < w; x++) {
            double dx = (x + 0.5 - lx) / w;
            float light = (float)(1.0 - s * (dx * dx + dy * dy));
            size_t i = (size_t)y * w + x;
            img[i] = gain * light * (img[i] + ka * af[i]) + bg + sd * (float)rng_normal(&r);
        }
    }
    free(den);
    free(scratch);
    return 0;
}

/* ---- jobs --------------------------------------------------------------- */

static int job_nstains(const sim_job *job) { return (job->stains & 1) + ((job->stains >> 1) & 1); }

long sim_job_images(const sim_job *job)
{
    return (long)job->ncounts * job->nsites * job_nstains(job) * job->nfocus;
}

int sim_job_check(const sim_job *job, cc_status *st)
{
    if (job->ncounts < 1 || !job->counts)
        return status_set(st, "simulate: no cell counts given");
    if (job->nfocus < 1 || !job->focus)
        return status_set(st, "simulate: no focus levels given");
    for (int i = 0; i < job->ncounts; i++)
        if (job->counts[i] < 1 || job->counts[i] > 100000)
            return status_set(st, "simulate: cell count %d out of range (1..100000)",
                              job->counts[i]);
    for (int i = 0; i < job->nfocus; i++)
        if (job->focus[i] < 1 || job->focus[i] > 1000)
            return status_set(st, "simulate: focus level %d out of range (1..1000)",
                              job->focus[i]);
    for (int i = 0; i < job->ncounts; i++)
        for (int k = 0; k < i; k++)
            if (job->counts[i] == job->counts[k])
                return status_set(st, "simulate: cell count %d listed twice", job->counts[i]);
    for (int i = 0; i < job->nfocus; i++)
        for (int k = 0; k < i; k++)
            if (job->focus[i] == job->focus[k])
                return status_set(st, "simulate: focus level %d listed twice", job->focus[i]);
    if (job->nsites < 1 || job->nsites > 99999)
        return status_set(st, "simulate: sites %d out of range (1..99999)", job->nsites);
    if (job->stains < 1 || job->stains > 3)
        return status_set(st, "simulate: stains must be w1, w2 or both");
    return 0;
}

/* Everything one worker thread needs, allocated once per thread. */
typedef struct worker {
    float *img, *tmp;
    uint8_t *pix, *mask;
} worker;

static int worker_alloc(worker *wk, int w, int h, int maxfocus)
{
    size_t n = (size_t)w * h;
    wk->img = malloc(n * sizeof *wk->img);
    wk->tmp = malloc(sim_focus_work(w, h, maxfocus) * sizeof *wk->tmp);
    wk->pix = malloc(n);
    wk->mask = malloc(n);
    return wk->img && wk->tmp && wk->pix && wk->mask ? 0 : -1;
}

static void worker_free(worker *wk)
{
    free(wk->img);
    free(wk->tmp);
    free(wk->pix);
    free(wk->mask);
}

/* One (count, site, stain) unit: scene, render, mask, all focus levels. */
static int run_unit(const sim_params *p, const sim_job *job, long unit, worker *wk,
                    sim_sink_fn sink, void *ctx, cc_status *st)
{
    const int nst = job_nstains(job);
    const int si = (int)(unit % nst), site = (int)(unit / nst % job->nsites) + 1;
    const int ci = (int)(unit / nst / job->nsites);
    const int stain = job->stains == 2 ? 2 : si + 1;
    sim_scene sc;
    if (sim_scene_generate(p, job->counts[ci], site, &sc, st)) return -1;
    int rc = sim_render(p, &sc, stain, wk->img, st);
    if (!rc) sim_mask_render(&sc, stain, wk->mask);
    float *xy = rc ? NULL : malloc(sizeof(float) * 2 * (size_t)sc.ncells);
    if (!rc && !xy) rc = status_set(st, "simulate: out of memory");
    for (int i = 0; !rc && i < sc.ncells; i++) {
        xy[2 * i] = (float)(sc.cells[i].cx / p->width);
        xy[2 * i + 1] = (float)(sc.cells[i].cy / p->height);
    }
    sim_scene_free(&sc);
    for (int fi = 0; !rc && fi < job->nfocus; fi++) {
        sim_focus_apply(wk->img, p->width, p->height, job->focus[fi], wk->pix, wk->tmp);
        sim_image im = {
            .count = job->counts[ci], .focus = job->focus[fi], .site = site,
            .stain = stain, .width = p->width, .height = p->height,
            .index = unit * job->nfocus + fi, .pixels = wk->pix, .mask = wk->mask,
            .centres = xy,
        };
        rc = sink(ctx, &im, st);
    }
    free(xy);
    return rc;
}

int sim_run(const sim_params *p, const sim_job *job, sim_sink_fn sink, void *ctx,
            FILE *log, cc_status *st)
{
    if (sim_params_check(p, st) || sim_job_check(job, st)) return -1;
    const long units = (long)job->ncounts * job->nsites * job_nstains(job);
    int maxfocus = 1;
    for (int i = 0; i < job->nfocus; i++)
        if (job->focus[i] > maxfocus) maxfocus = job->focus[i];
    int failed = 0;
    long done = 0;
    int reported = 0;
    const double t0 = omp_get_wtime();
    int nt = job->threads > 0 ? job->threads : omp_get_max_threads();

#pragma omp parallel num_threads(nt)
    {
        worker wk;
        cc_status mine;
        status_clear(&mine);
        int ok = worker_alloc(&wk, p->width, p->height, maxfocus) == 0;
        if (!ok) {
            status_set(&mine, "simulate: out of memory for %dx%d work buffers",
                       p->width, p->height);
        }
        /* Units differ in cost (C = 1 vs 100), so hand them out one at a
         * time; each unit's bytes depend only on its own streams. */
#pragma omp for schedule(dynamic, 1)
        for (long u = 0; u < units; u++) {
            int stop;
#pragma omp atomic read
            stop = failed;
            if (stop) continue;
            if (!ok || run_unit(p, job, u, &wk, sink, ctx, &mine)) {
                ok = 0;
#pragma omp critical(sim_run_error)
                {
                    if (!failed && st) *st = mine;
                    failed = 1;
                }
                continue;
            }
            long d;
#pragma omp atomic capture
            d = ++done;
            if (log) {
#pragma omp critical(sim_run_log)
                {
                    int pct = (int)(100 * d / units);
                    if (pct / 5 > reported / 5 || d == units) {
                        reported = pct;
                        fprintf(log, "simulate: %ld/%ld scenes (%d%%), %.1f s\n", d, units,
                                pct, omp_get_wtime() - t0);
                        fflush(log);
                    }
                }
            }
        }
        worker_free(&wk);
    }
    return failed ? -1 : 0;
}
