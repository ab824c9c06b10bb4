/* localise.c - see localise.h. */
#include "src/infer/localise.h"

#include <assert.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "src/data/centres.h"
#include "src/infer/evaluate.h"
#include "src/run/metrics.h"

enum { GRID_MAX = 1 << (LOCALISE_LEVELS - 1) };

/* The part of position p (of n along one axis) inside grid cell j (of g),
 * by overlapping length: 1 when the cell holds the whole position. */
static double overlap(int p, int n, int j, int g)
{
    const double lo = fmax((double)p / n, (double)j / g);
    const double hi = fmin((double)(p + 1) / n, (double)(j + 1) / g);
    return hi > lo ? (hi - lo) * n : 0.0;
}

static int grid_cell(double f, int g)
{
    const int j = (int)floor(f * g);
    return j < 0 ? 0 : j >= g ? g - 1 : j;
}

void localise_game(const float *map, int gh, int gw, const float *xy, int count,
                   double game[LOCALISE_LEVELS])
{
    assert(gh >= 1 && gw >= 1 && count >= 0);
    for (int L = 0; L < LOCALISE_LEVELS; L++) {
        const int g = 1 << L;
        double mass[GRID_MAX * GRID_MAX], truth[GRID_MAX * GRID_MAX];
        memset(mass, 0, sizeof mass);
        memset(truth, 0, sizeof truth);
        /* position r spans [r/gh, (r+1)/gh): the cells r*g/gh .. ((r+1)*g-1)/gh */
        for (int r = 0; r < gh; r++)
            for (int i = r * g / gh; i <= ((r + 1) * g - 1) / gh; i++) {
                const double wy = overlap(r, gh, i, g);
                for (int q = 0; q < gw; q++) {
                    const double v = wy * map[(size_t)r * (size_t)gw + (size_t)q];
                    for (int j = q * g / gw; j <= ((q + 1) * g - 1) / gw; j++)
                        mass[i * g + j] += v * overlap(q, gw, j, g);
                }
            }
        for (int c = 0; c < count; c++)
            truth[grid_cell(xy[2 * c + 1], g) * g + grid_cell(xy[2 * c], g)] += 1.0;
        double e = 0;
        for (int k = 0; k < g * g; k++) e += fabs(mass[k] - truth[k]);
        game[L] = e;
    }
}

int localise_report(runlog *rl, const char *tname, FILE *out, const cc_dataset *ds,
                    const int64_t *index, const double *truth, int64_t n, const float *maps,
                    int gh, int gw, cc_status *st)
{
    /* nothing to score: an earlier evaluation's table of this name is
     * emptied rather than left to describe other predictions */
    runlog_table *old = runlog_table_find(rl, tname);
    if (old) old->nrows = 0;
    if (!ds->centres || !maps) return 0;
    /* the rows of evaluate's tables: every image, then the count ranges */
    enum { G = 1 + EVAL_COUNT_GROUPS };
    int lo[G] = {INT_MIN}, hi[G] = {INT_MAX};
    char labels[G][32] = {"overall"};
    for (int g = 1; g < G; g++)
        evaluate_count_group(g - 1, &lo[g], &hi[g], labels[g], sizeof labels[g]);
    /* rows[G]: every count weighted equally, as evaluate's last row, with
     * the weights of metrics_balance_weights over the scored images */
    double rows[G + 1][1 + LOCALISE_LEVELS];
    memset(rows, 0, sizeof rows);
    double *w = malloc((size_t)(n ? n : 1) * sizeof *w);
    unsigned char *known = calloc((size_t)(n ? n : 1), 1);
    int rc = 0;
    if (!w || !known) {
        rc = status_set(st, "%s: out of memory for the GAME table", tname);
        goto done;
    }
    for (int64_t i = 0; i < n; i++)
        known[i] = index[i] >= 0 && index[i] < ds->n &&
                   centres_known(ds->centres, ds->centres_k, index[i]);
    if (metrics_balance_weights(truth, known, (size_t)n, w)) {
        rc = status_set(st, "%s: out of memory for the GAME table", tname);
        goto done;
    }
    const size_t plane = (size_t)gh * (size_t)gw;
    for (int64_t i = 0; i < n; i++) {
        if (!known[i]) continue;
        const int64_t row = index[i];
        double game[LOCALISE_LEVELS];
        localise_game(maps + plane * (size_t)i, gh, gw,
                      ds->centres + (size_t)row * (size_t)ds->centres_k * 2, ds->counts[row],
                      game);
        for (int g = 0; g < G; g++) {
            if (truth[i] < lo[g] || truth[i] > hi[g]) continue;
            rows[g][0]++;
            for (int L = 0; L < LOCALISE_LEVELS; L++) rows[g][1 + L] += game[L];
        }
        for (int L = 0; L < LOCALISE_LEVELS; L++) rows[G][1 + L] += w[i] * game[L];
    }
    if (rows[0][0] == 0) goto done;
    rows[G][0] = rows[0][0];
    for (int g = 0; g < G; g++)
        for (int L = 0; L < LOCALISE_LEVELS && rows[g][0] > 0; L++) rows[g][1 + L] /= rows[g][0];
    static const char *const cols[] = {"n", "game0", "game1", "game2", "game3"};
    runlog_table *t = runlog_table_fresh(rl, tname, 1 + LOCALISE_LEVELS, cols, st);
    if (!t) {
        rc = -1;
        goto done;
    }
    fprintf(out, "where the density map puts the count (GAME: a 2^L x 2^L grid, the sum over its "
                 "cells of |map - cells|, mean over images; centres of %s, map %dx%d)\n",
            ds->path, gh, gw);
    fprintf(out, "%-14s %6s %8s %8s %8s %8s\n", "group", "n", "GAME(0)", "GAME(1)", "GAME(2)",
            "GAME(3)");
    for (int g = 0; g <= G; g++) {
        if (rows[g][0] == 0) continue;
        const char *label = g < G ? labels[g] : "count-balanced";
        fprintf(out, "%-14s %6lld %8.3f %8.3f %8.3f %8.3f\n", label, (long long)rows[g][0],
                rows[g][1], rows[g][2], rows[g][3], rows[g][4]);
        if (runlog_append(t, label, rows[g], st)) {
            rc = -1;
            goto done;
        }
    }
    rc = 1;
done:
    free(w);
    free(known);
    return rc;
}
