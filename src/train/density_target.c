/* density_target.c - see density_target.h. */
#include "src/train/density_target.h"

#include <math.h>
#include <string.h>

#include "src/data/centres.h"

void density_target_image(const float *xy, int count, unsigned flip, double scale, int gh,
                          int gw, double sigma, float *out)
{
    memset(out, 0, sizeof(float) * (size_t)gh * (size_t)gw);
    const double k = -0.5 / (sigma * sigma);
    for (int c = 0; c < count; c++) {
        double x = xy[2 * c], y = xy[2 * c + 1];
        if (flip & 1) x = 1.0 - x;
        if (flip & 2) y = 1.0 - y;
        x = 0.5 + scale * (x - 0.5);
        y = 0.5 + scale * (y - 0.5);
        /* position (r, q) of the map covers [q, q+1) / gw: centre (q + 0.5) / gw */
        const double u = x * gw - 0.5, v = y * gh - 0.5;
        /* the Gaussian is separable: its sum over the map is the product
         * of the row and column sums */
        double sr = 0, sq = 0;
        for (int r = 0; r < gh; r++) sr += exp(k * (r - v) * (r - v));
        for (int q = 0; q < gw; q++) sq += exp(k * (q - u) * (q - u));
        if (!(sr * sq > 1e-300)) {
            /* far outside the map (or a tiny sigma): all of it on the
             * nearest position */
            const int r = v < 0 ? 0 : v > gh - 1 ? gh - 1 : (int)lround(v);
            const int q = u < 0 ? 0 : u > gw - 1 ? gw - 1 : (int)lround(u);
            out[r * gw + q] += 1.0f;
            continue;
        }
        const double norm = 1.0 / (sr * sq);
        for (int r = 0; r < gh; r++) {
            const double er = exp(k * (r - v) * (r - v)) * norm;
            for (int q = 0; q < gw; q++) out[r * gw + q] += (float)(er * exp(k * (q - u) * (q - u)));
        }
    }
}

int density_target_fill(const cc_dataset *ds, const loader_batch *b, int gh, int gw,
                        double sigma, float *out, cc_status *st)
{
    const size_t plane = (size_t)gh * (size_t)gw;
    for (int i = 0; i < b->n; i++) {
        const int64_t idx = b->indices[i];
        if (!centres_known(ds->centres, ds->centres_k, idx))
            return status_set(st, "%s: image %lld has no cell centres (/centres), which "
                                  "counter.density_weight needs", ds->path, (long long)idx);
        density_target_image(ds->centres + (size_t)idx * (size_t)ds->centres_k * 2,
                             ds->counts[idx], b->flipped ? b->flipped[i] : 0,
                             b->scale ? b->scale[i] : 1.0, gh, gw, sigma, out + plane * i);
    }
    return 0;
}
