/* normalize.c - see normalize.h. */
#include "src/data/normalize.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_num(const char *s, char **end, double *v)
{
    errno = 0;
    *v = strtod(s, end);
    return *end == s || errno || !isfinite(*v) ? -1 : 0;
}

int norm_parse(const char *spec, cc_norm *n, cc_status *st)
{
    static const char accepted[] = "range, max, bits:N (N = 1..16) or percentile:LO,HI "
                                   "(0 <= LO < HI <= 100)";
    memset(n, 0, sizeof *n);
    if (!spec) spec = "";
    if (!strcmp(spec, "range")) {
        n->kind = NORM_RANGE;
        return 0;
    }
    if (!strcmp(spec, "max")) {
        n->kind = NORM_MAX;
        return 0;
    }
    if (!strncmp(spec, "bits:", 5)) {
        char *e;
        errno = 0;
        long b = strtol(spec + 5, &e, 10);
        if (e == spec + 5 || *e || errno || b < 1 || b > 16)
            return status_set(st, "normalize '%s': bits:N wants N in 1..16", spec);
        n->kind = NORM_BITS;
        n->bits = (int)b;
        return 0;
    }
    if (!strcmp(spec, "percentile")) {
        n->kind = NORM_PERCENTILE;
        n->lo = 1;
        n->hi = 99;
        return 0;
    }
    if (!strncmp(spec, "percentile:", 11)) {
        char *e;
        double lo, hi;
        if (parse_num(spec + 11, &e, &lo) || *e != ',' || parse_num(e + 1, &e, &hi) || *e ||
            lo < 0 || hi > 100 || !(lo < hi))
            return status_set(st, "normalize '%s': percentile:LO,HI wants 0 <= LO < HI <= 100, "
                                  "e.g. percentile:1,99.8", spec);
        n->kind = NORM_PERCENTILE;
        n->lo = lo;
        n->hi = hi;
        return 0;
    }
    return status_set(st, "normalize '%s': unknown mode (accepted: %s)", spec, accepted);
}

void norm_format(const cc_norm *n, char *buf, size_t len)
{
    switch (n->kind) {
    case NORM_RANGE: snprintf(buf, len, "range"); break;
    case NORM_BITS: snprintf(buf, len, "bits:%d", n->bits); break;
    case NORM_MAX: snprintf(buf, len, "max"); break;
    case NORM_PERCENTILE: snprintf(buf, len, "percentile:%.17g,%.17g", n->lo, n->hi); break;
    }
    /* %.17g round-trips; shorten when %g already does (1,99 not 1,99.000..). */
    if (n->kind == NORM_PERCENTILE) {
        char s[NORM_SPEC_LEN];
        snprintf(s, sizeof s, "percentile:%g,%g", n->lo, n->hi);
        double lo, hi;
        if (sscanf(s, "percentile:%lf,%lf", &lo, &hi) == 2 && lo == n->lo && hi == n->hi)
            snprintf(buf, len, "%s", s);
    }
}

int norm_is_per_image(const cc_norm *n)
{
    return n->kind == NORM_MAX || n->kind == NORM_PERCENTILE;
}

int norm_mismatch(const cc_norm *asked, const cc_norm *trained)
{
    if (norm_is_per_image(asked) != norm_is_per_image(trained)) return 1;
    if (!norm_is_per_image(asked)) return 0;
    return asked->kind != trained->kind || asked->lo != trained->lo || asked->hi != trained->hi;
}

/* Nearest-rank percentile from a histogram of n samples. */
static uint16_t hist_percentile(const uint32_t *hist, size_t n, double q)
{
    double kk = ceil(q / 100.0 * (double)n);
    size_t k = kk < 1 ? 1 : kk > (double)n ? n : (size_t)kk;
    size_t cum = 0;
    for (uint32_t v = 0; v < 65536; v++) {
        cum += hist[v];
        if (cum >= k) return (uint16_t)v;
    }
    return 65535;
}

int norm_apply(const cc_image *img, const cc_norm *n, float *out, norm_info *info,
               cc_status *st)
{
    assert(img && img->px && out && n);
    const size_t np = (size_t)img->w * (size_t)img->h;
    uint16_t vmax = 0;
    for (size_t i = 0; i < np; i++) vmax = img->px[i] > vmax ? img->px[i] : vmax;
    norm_info ni = {vmax, 0};
    double off = 0, scale = 0;
    switch (n->kind) {
    case NORM_RANGE: scale = 1.0f / (float)((1u << img->bits) - 1u); break;
    case NORM_BITS: {
        /* a file shallower than N bits cannot hold N-bit data: its own range */
        const int b = n->bits < img->bits ? n->bits : img->bits;
        const uint32_t top = (1u << b) - 1u;
        scale = 1.0f / (float)top;
        for (size_t i = 0; i < np; i++) ni.clipped += img->px[i] > top;
        break;
    }
    case NORM_MAX: scale = vmax ? 1.0 / (double)vmax : 0; break;
    case NORM_PERCENTILE: {
        uint32_t *hist = calloc(65536, sizeof *hist);
        if (!hist) return status_set(st, "normalize: out of memory");
        for (size_t i = 0; i < np; i++) hist[img->px[i]]++;
        const uint16_t plo = hist_percentile(hist, np, n->lo);
        const uint16_t phi = hist_percentile(hist, np, n->hi);
        free(hist);
        off = plo;
        scale = phi > plo ? 1.0 / (double)(phi - plo) : 0;
        break;
    }
    }
    if (n->kind == NORM_RANGE || n->kind == NORM_BITS) {
        /* In float, exactly as cc_image_to_float and the data set reader
         * (v * (1/255.0f)), so that `range` gives the very values training
         * saw for the same file. */
        const float s = (float)scale;
        for (size_t i = 0; i < np; i++) {
            const float v = (float)img->px[i] * s;
            out[i] = v > 1.0f ? 1.0f : v;
        }
    } else {
        for (size_t i = 0; i < np; i++) {
            double v = ((double)img->px[i] - off) * scale;
            out[i] = (float)(v < 0 ? 0 : v > 1 ? 1 : v);
        }
    }
    if (info) *info = ni;
    return 0;
}
