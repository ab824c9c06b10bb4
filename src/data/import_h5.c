/* import_h5.c - `cellcount import --from FILE.h5`: a data set made from
 * another one (import.h). */
#include "src/data/import.h"

#include <stdlib.h>
#include <string.h>

#include "src/data/centres.h"
#include "src/data/dataset.h"
#include "src/data/resize.h"

/* Whether row i of ds is selected by o's stain and focus lists. */
static int row_selected(const import_opts *o, const cc_dataset *ds, int64_t i)
{
    if (o->stain && ds->stain[i] != o->stain) return 0;
    if (!o->nfocus) return 1;
    for (int k = 0; k < o->nfocus; k++)
        if (o->focus[k] == ds->focus[i]) return 1;
    return 0;
}

int import_from_dataset(const import_opts *o, const char *src, FILE *log, int64_t *written,
                        cc_status *st)
{
    *written = 0;
    if (!strcmp(src, o->out_path))
        return status_set(st, "%s: --out names the input data set", src);
    cc_dataset *ds = dataset_open(src, st);
    if (!ds) return -1;
    const int w = o->width, h = o->height;
    const size_t sp = (size_t)ds->h * (size_t)ds->w, dp = (size_t)h * (size_t)w;
    float *img = malloc(sizeof(float) * sp), *msk = malloc(sizeof(float) * sp);
    float *rimg = malloc(sizeof(float) * dp), *rmsk = malloc(sizeof(float) * dp);
    dataset_writer *wr = NULL;
    int rc = -1;
    if (!img || !msk || !rimg || !rmsk) {
        status_set(st, "import: out of memory");
        goto out;
    }
    if (!(wr = dataset_writer_open(o->out_path, h, w, st))) goto out;
    /* the source's split stays: a model trained on its training split is
     * scored on the same test scenes whatever the size */
    dataset_writer_set_split_info(wr, ds->split_seed, ds->split_frac, ds->split_by);
    dataset_writer_set_normalize(wr, ds->normalize);
    if (ds->image_type == DATASET_F32) dataset_writer_set_image_type(wr, DATASET_F32);
    /* centres are fractions of the image: a resize keeps them */
    if (ds->centres_k) dataset_writer_set_centres(wr, ds->centres_k);
    for (int64_t i = 0; i < ds->n; i++) {
        if (!row_selected(o, ds, i)) continue;
        if (dataset_read_images(ds, i, 1, img, st) || dataset_read_masks(ds, i, 1, msk, st) ||
            resize_area(img, ds->w, ds->h, rimg, w, h, st) ||
            resize_area(msk, ds->w, ds->h, rmsk, w, h, st))
            goto out;
        const float *xy = centres_known(ds->centres, ds->centres_k, i)
                              ? ds->centres + (size_t)i * (size_t)ds->centres_k * 2 : NULL;
        dataset_record rec = {ds->counts[i], ds->focus[i], ds->stain[i], ds->site[i],
                              ds->scene[i],  ds->split[i], ds->source[i], xy};
        if (dataset_writer_append(wr, rimg, ds->has_mask[i] ? rmsk : NULL, &rec, st)) goto out;
    }
    *written = dataset_writer_count(wr);
    if (!*written) {
        status_set(st, "%s: no image matches the chosen stain and focus levels", src);
        goto out;
    }
    rc = dataset_writer_close(wr, 1, st);
    wr = NULL;
    if (!rc && log)
        fprintf(log, "import: %lld of %lld images of %s (%dx%d) written to %s at %dx%d\n",
                (long long)*written, (long long)ds->n, src, ds->w, ds->h, o->out_path, w, h);
out:
    if (wr) dataset_writer_close(wr, 0, NULL);
    dataset_close(ds);
    free(img), free(msk), free(rimg), free(rmsk);
    return rc;
}
