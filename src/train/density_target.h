/* density_target.h - what counter.density_weight supervises: for a batch,
 * the map a density counter should output (models/counter.h
 * counter_forward_map), built from the data set's cell centres
 * (src/data/centres.h).
 *
 * Each cell adds a Gaussian of sd `sigma` map positions at its centre,
 * normalised to sum 1 over the map, so every image's map sums to its
 * count exactly whatever the cell's place (a cell near the edge keeps
 * its weight).  The centres follow the batch's augmentation: the flips
 * (loader_batch.flipped) and the scale about the image centre
 * (loader_batch.scale), as loader_scale_plane moves the pixels.
 * Why: a counter told only each image's number has to find out by itself
 * how much each blob of the mask is worth; told where the cells are, it
 * learns that per place (docs/RESULTS.md, "Where the cells are"). */
#ifndef CC_DENSITY_TARGET_H
#define CC_DENSITY_TARGET_H

#include "autodiff/status.h"
#include "src/data/dataset.h"
#include "src/data/loader.h"

/* out (b->n, 1, gh, gw), overwritten.  Fails (-1, st naming the data set
 * and the image) when an image of the batch has no known centres. */
int density_target_fill(const cc_dataset *ds, const loader_batch *b, int gh, int gw,
                        double sigma, float *out, cc_status *st);

/* One image's map from its centres xy (2 * count fractions), flips
 * (bit 0 horizontal, bit 1 vertical) and scale: out gh * gw, overwritten. */
void density_target_image(const float *xy, int count, unsigned flip, double scale, int gh,
                          int gw, double sigma, float *out);

#endif
