/* localise.h - whether a density counter puts its count where the cells
 * are: the Grid Average Mean absolute Error (GAME, Guerrero-Gomez-Olmedo et
 * al. 2015, the crowd-counting score of density maps) against a data set's
 * cell centres (src/data/centres.h).
 *
 * GAME(L) of one image cuts the image into a 2^L x 2^L grid and adds, over
 * the grid's cells, |the map's mass in the cell - the centres in it|.
 * GAME(0) is the absolute count error; a map that counts right with its
 * mass in the wrong places scores 0 there and more at every finer level.
 * Why: the count alone cannot tell a counter that has learnt where the cells
 * are from one that has learnt how much mask a number is worth. */
#ifndef CC_LOCALISE_H
#define CC_LOCALISE_H

#include <stdint.h>
#include <stdio.h>

#include "autodiff/status.h"
#include "src/data/dataset.h"
#include "src/run/runlog.h"

#define LOCALISE_LEVELS 4   /* L = 0..3: grids of 1, 2x2, 4x4 and 8x8 cells */

/* GAME(L) of one image for L = 0..LOCALISE_LEVELS-1 into game[].  map: gh x
 * gw row-major, position (r, q) covering the image's [q/gw, (q+1)/gw) x
 * [r/gh, (r+1)/gh); a position that straddles grid lines shares its value
 * among the cells by overlapping area.  xy: 2 * count (x, y) fractions of
 * the image's width and height (centres.h); a centre outside [0, 1) counts
 * in the nearest cell. */
void localise_game(const float *map, int gh, int gw, const float *xy, int count,
                   double game[LOCALISE_LEVELS]);

/* Table `tname` of rl (replaced when present): the mean GAME(0..3) of the
 * images with known centres, overall, by count range and count-balanced
 * (every count weighted equally) as evaluate's tables (columns n,
 * game0..game3), printed to out as well.  Image i is
 * data set row index[i] of ds, with truth[i] cells and map maps + i * gh *
 * gw.  Returns 1 when it wrote the table; 0 with nothing to score (maps
 * NULL, ds without /centres), when it adds no table and empties one of
 * that name left by an earlier evaluation; -1 with st set on a runlog
 * failure. */
int localise_report(runlog *rl, const char *tname, FILE *out, const cc_dataset *ds,
                    const int64_t *index, const double *truth, int64_t n, const float *maps,
                    int gh, int gw, cc_status *st);

#endif
