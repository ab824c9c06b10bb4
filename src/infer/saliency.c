/* saliency.c - see saliency.h. */
#include "src/infer/saliency.h"
#include "src/data/fsutil.h"

#include <assert.h>
#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "src/data/fsutil.h"
#include "src/data/h5write.h"
#include "src/data/png_io.h"

void saliency_prepare(count_model *cm, cc_tape *t)
{
    /* Frozen parameters: only the inputs' gradients are wanted, and no
     * parameter slab is touched.  bn_eval: running statistics on the
     * training tape, as `count` uses them on its inference tape. */
    params_set_frozen(&cm->m.Pf, "", 1);
    params_set_frozen(&cm->m.Pc, "", 1);
    cm->m.Pf.bn_eval = 1;
    cm->m.Pc.bn_eval = 1;
    tape_init(t, &cm->s.ctx, 1);
}

int saliency_compute(count_model *cm, cc_tape *t, const float *images, int n,
                     const saliency_maps *out, cc_status *st)
{
    assert(n >= 1 && n <= 4096);
    assert(cm->has_fpn || (!out->mask && !out->mask_grad));
    tape_reset(t);
    int64_t d[4] = {n, 1, cm->h, cm->w};
    cc_tensor *x = tape_input(t, 4, d, images, 1);
    count_graph g;
    const int views = cm->s.cfg.counter_tta == CFG_TTA_FLIPS ? 4 : 1;
    float *c = malloc(sizeof(float) * 9 * (size_t)n);
    if (!c) return status_set(st, "saliency: out of memory");
    float *v = c + 4 * (size_t)n, *seed = c + 8 * (size_t)n;
    cc_tensor *cnt[4], *lv[4];
    /* Values are read before the backward pass (which leaves them alone
     * anyway); gradients after it.  The mask is an intermediate tensor: its
     * gradient is what reached the counter's input.  counter.tta = flips:
     * the counter also reads the flips k = 1..3 of its input on the same
     * tape (count's views), and the gradient is that of their mean count. */
    int bad = !x || count_graph_forward(cm, t, x, &g);
    if (!bad) cnt[0] = g.count, lv[0] = g.logvar;
    for (int k = 1; k < views && !bad; k++)
        bad = counter_forward(t, &cm->m.Pc, &cm->m.counter, op_flip(t, g.input, (unsigned)k),
                              &cnt[k], &lv[k]) != 0;
    for (int k = 0; k < views && !bad; k++)
        bad = tape_read(t, cnt[k], c + (size_t)k * (size_t)n) ||
              tape_read(t, lv[k], v + (size_t)k * (size_t)n);
    cc_tensor *sum = bad ? NULL : cnt[0];
    for (int k = 1; k < views && sum; k++) sum = op_add(t, sum, cnt[k]);
    for (int i = 0; i < n; i++) seed[i] = 1.0f / (float)views;
    if (bad || !sum || (out->mask && tape_read(t, g.mask, out->mask)) ||
        tape_backward_seed(t, sum, seed) || tape_read_grad(t, x, out->image_grad) ||
        (out->mask_grad && tape_read_grad(t, g.mask, out->mask_grad))) {
        free(c);
        return status_set(st, "saliency: %s", tape_error(t));
    }
    for (int i = 0; i < n; i++) {
        counting_views_combine(c, v, (size_t)n, views, i, cm->kind, &out->count[i],
                               &out->sigma[i]);
        out->sigma[i] = count_calib_sigma(&cm->calib, out->count[i], out->sigma[i]);
    }
    free(c);
    return 0;
}

/* ---- HDF5 output ------------------------------------------------------ */

typedef struct h5_out {
    const char *path;
    fs_atomic aw;           /* aw.tmp: where the file is written until commit */
    hid_t file, root;       /* root: the /saliency group */
    H5E_auto2_t efunc;
    void *edata;
} h5_out;

static int h5_num_attr(hid_t obj, const char *name, hid_t ftype, hid_t mtype, const void *v)
{
    hid_t s = H5Screate(H5S_SCALAR), a = -1;
    int rc = -1;
    if (s >= 0 && (a = H5Acreate2(obj, name, ftype, s, H5P_DEFAULT, H5P_DEFAULT)) >= 0 &&
        H5Awrite(a, mtype, v) >= 0)
        rc = 0;
    if (a >= 0) H5Aclose(a);
    if (s >= 0) H5Sclose(s);
    return rc;
}

static int h5_put(hid_t g, const char *name, int h, int w, const float *v)
{
    hsize_t dims[2] = {(hsize_t)h, (hsize_t)w};
    hid_t s = H5Screate_simple(2, dims, NULL), d = -1;
    int rc = -1;
    if (s >= 0 &&
        (d = H5Dcreate2(g, name, H5T_IEEE_F32LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) >= 0 &&
        H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0)
        rc = 0;
    if (d >= 0) H5Dclose(d);
    if (s >= 0) H5Sclose(s);
    return rc;
}

static void h5_close(h5_out *o, int commit, cc_status *st)
{
    if (o->root >= 0) H5Gclose(o->root);
    int ok = o->file < 0 || H5Fclose(o->file) >= 0;
    o->root = o->file = -1;
    H5Eset_auto2(H5E_DEFAULT, o->efunc, o->edata);
    if (commit && !ok) status_set(st, "%s: cannot finish the HDF5 file", o->path);
    if (commit && ok && fs_atomic_commit(&o->aw, st)) ok = 0;
    if (!commit || !ok) fs_atomic_abort(&o->aw);
}

static int h5_open(h5_out *o, const char *path, const count_model *cm, cc_status *st)
{
    o->path = path;
    o->file = o->root = -1;
    if (fs_atomic_begin(&o->aw, path, st)) return -1;
    /* HDF5 would print its error stack; failures are reported via st. */
    H5Eget_auto2(H5E_DEFAULT, &o->efunc, &o->edata);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    int32_t version = 1;
    o->file = H5Fcreate(o->aw.tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (o->file < 0 || h5_attr_put_str(o->file, "format", "cellcount-saliency") ||
        h5_num_attr(o->file, "format_version", H5T_STD_I32LE, H5T_NATIVE_INT32, &version) ||
        h5_attr_put_str(o->file, "run_dir", cm->s.cfg.out_dir) ||
        h5_attr_put_str(o->file, "fpn_checkpoint", cm->has_fpn ? cm->fpn_path : "") ||
        h5_attr_put_str(o->file, "counter_checkpoint", cm->counter_path) ||
        h5_attr_put_str(o->file, "counter_input", cfg_input_names[cm->s.cfg.counter_input]) ||
        (o->root = H5Gcreate2(o->file, "saliency", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0) {
        h5_close(o, 0, st);
        return status_set(st, "%s: cannot create HDF5 file %s", path, o->aw.tmp);
    }
    return 0;
}

static int h5_add(h5_out *o, const char *stem, const char *source, double count, double sigma,
                  const count_model *cm, const float *image, const float *image_grad,
                  const float *mask, const float *mask_grad, cc_status *st)
{
    const int h = cm->h, w = cm->w;
    hid_t g = H5Gcreate2(o->root, stem, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = g < 0 || h5_attr_put_str(g, "source", source) ||
             h5_num_attr(g, "count", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &count) ||
             h5_num_attr(g, "sigma", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &sigma) ||
             h5_put(g, "image", h, w, image) || h5_put(g, "image_grad", h, w, image_grad) ||
             (mask && h5_put(g, "mask", h / 2, w / 2, mask)) ||
             (mask_grad && h5_put(g, "mask_grad", h / 2, w / 2, mask_grad));
    if (g >= 0) H5Gclose(g);
    if (rc) return status_set(st, "%s: cannot write /saliency/%s", o->path, stem);
    return 0;
}

/* ---- PNG output ------------------------------------------------------- */

static int png_abs(const char *dir, const char *stem, const char *what, const float *g, int h,
                   int w, uint8_t *px, cc_status *st)
{
    const size_t n = (size_t)h * (size_t)w;
    float mx = 0;
    for (size_t i = 0; i < n; i++) mx = fabsf(g[i]) > mx ? fabsf(g[i]) : mx;
    const float scale = mx > 0 ? 255.0f / mx : 0.0f;
    for (size_t i = 0; i < n; i++) {
        float q = fabsf(g[i]) * scale + 0.5f;
        px[i] = (uint8_t)(q >= 255.0f ? 255 : (int)q);
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/%s_%s.png", dir, stem, what);
    return png_write_gray(path, w, h, px, st);
}

/* ---- the saliency command --------------------------------------------- */

int saliency_run(const cc_config *cfg, const saliency_opts *o, char *const *args, int nargs,
                 FILE *out, FILE *log, cc_status *st)
{
    assert(o->batch >= 1);
    int bad = 0, rc = -1, h = o->h, w = o->w, model_open = 0, tape = 0, h5 = 0;
    count_model cm;
    cc_tape t;
    h5_out ho;
    count_inputs in;
    memset(&in, 0, sizeof in);
    float *images = NULL, *mask = NULL, *mgrad = NULL, *igrad = NULL;
    double *count = NULL, *sigma = NULL;
    uint8_t *px = NULL;
    int *slot = NULL, nread = 0;

    if (count_input_size(cfg, &h, &w, st)) goto done;
    model_open = 1;
    if (count_model_open(&cm, cfg, h, w, o->fpn_ckpt, o->counter_ckpt, 0, NULL, st)) goto done;
    saliency_prepare(&cm, &t);
    tape = 1;
    count_reader rd;
    if (count_reader_init(&rd, o->read, &cm, log, st)) goto done;
    if (o->png_dir && fs_mkdirs(o->png_dir, st)) goto done;
    if (count_inputs_collect(args, nargs, &in, log, &bad, st)) goto done;

    const int B = o->batch > 4096 ? 4096 : o->batch;
    const size_t plane = (size_t)h * (size_t)w, mplane = plane / 4;
    images = malloc(sizeof(float) * plane * (size_t)B);
    igrad = malloc(sizeof(float) * plane * (size_t)B);
    count = malloc(sizeof(double) * (size_t)B);
    sigma = malloc(sizeof(double) * (size_t)B);
    slot = malloc(sizeof(int) * (size_t)B);
    px = malloc(plane);
    if (cm.has_fpn) {
        mask = malloc(sizeof(float) * mplane * (size_t)B);
        mgrad = malloc(sizeof(float) * mplane * (size_t)B);
    }
    if (!images || !igrad || !count || !sigma || !slot || !px || (cm.has_fpn && (!mask || !mgrad))) {
        status_set(st, "saliency: out of memory");
        goto done;
    }
    if (o->out_h5) {
        if (h5_open(&ho, o->out_h5, &cm, st)) goto done;
        h5 = 1;
    }
    fprintf(out, "file\tcount\tsigma\n");
    saliency_maps maps = {count, sigma, mask, mgrad, igrad};
    int64_t written = 0;    /* with every input bad, no (empty) .h5 is left */
    for (int next = 0; next < in.n;) {
        int n = count_inputs_next_batch(&in, &next, B, h, w, images, slot, &rd, log, &bad);
        if (n == 0) continue;
        nread += n;
        if (saliency_compute(&cm, &t, images, n, &maps, st)) goto done;
        for (int i = 0; i < n; i++) {
            const char *stem = in.stems[slot[i]];
            const float *mi = mask ? mask + mplane * (size_t)i : NULL;
            const float *mg = mgrad ? mgrad + mplane * (size_t)i : NULL;
            const float *ig = igrad + plane * (size_t)i;
            fprintf(out, "%s\t%.4f\t%.4f\n", in.paths[slot[i]], count[i], sigma[i]);
            if (h5 && h5_add(&ho, stem, in.paths[slot[i]], count[i], sigma[i], &cm,
                             images + plane * (size_t)i, ig, mi, mg, st))
                goto done;
            written++;
            char ov[4096];
            snprintf(ov, sizeof ov, "%s/%s_overlay.png", o->png_dir ? o->png_dir : ".", stem);
            if (o->png_dir &&
                (png_abs(o->png_dir, stem, "image_grad", ig, h, w, px, st) ||
                 png_write_overlay(ov, w, h, images + plane * (size_t)i, ig, w, h, st) ||
                 (mg && png_abs(o->png_dir, stem, "mask_grad", mg, h / 2, w / 2, px, st))))
                goto done;
        }
        fflush(out);
    }
    count_reader_finish(&rd, nread, log);
    if (h5) {
        h5 = 0;
        cc_status cst;
        status_clear(&cst);
        h5_close(&ho, written > 0, &cst);
        if (cst.failed) {
            status_set(st, "%s", cst.msg);
            goto done;
        }
    }
    rc = bad ? 1 : 0;
done:
    if (h5) h5_close(&ho, 0, st);
    if (tape) tape_free(&t);
    if (model_open) count_model_close(&cm);
    count_inputs_free(&in);
    free(images), free(mask), free(mgrad), free(igrad), free(count), free(sigma), free(px),
        free(slot);
    return rc;
}
