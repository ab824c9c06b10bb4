/* count_files.c - see count_files.h.
 *
 * Mask images (--masks DIR), per input image, at the finest FPN level
 * (H/2 x W/2 of the models' input size):
 *   <stem>_mask.tif    the mean mask, 32-bit float, raw values
 *   <stem>_sigma.tif   its uncertainty exp(logvar/2), 32-bit float, raw
 *   <stem>_mask.png    8-bit preview on a FIXED scale: round(255 * m) with m
 *                      clamped to [0,1] (the mask is a foreground fraction),
 *                      so previews of different images compare directly
 *   <stem>_sigma.png   8-bit preview normalised PER IMAGE:
 *                      round(255 * sigma / max sigma of that image), since
 *                      its range depends on the training (all 0 if max = 0)
 * and with a density counter (counter.arch = vgg11_density):
 *   <stem>_density.tif the counter's density map, 32-bit float, raw, at its
 *                      own size (1/16 of the input's side for vgg11_density):
 *                      cells per position, summing to the count before
 *                      calibration
 *   <stem>_density.png 8-bit preview at the mask's size (each position a
 *                      block), normalised PER IMAGE like the sigma
 */
#include "src/infer/count_files.h"
#include "src/data/csv.h"
#include "src/data/fsutil.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "src/run/checkpoint.h"
#include "src/data/dataset.h"
#include "src/data/fsutil.h"
#include "src/data/png_io.h"
#include "src/data/resize.h"
#include "src/run/runlog.h"
#include "src/data/tiff_io.h"
#include "src/train/count_split.h"

/* ---- configuration ---------------------------------------------------- */

int count_config_load(cc_config *cfg, const char *run_dir, const char *file,
                      char *const *sets, int nsets, cc_status *st)
{
    config_defaults(cfg);
    char ini[CFG_STR + 32];
    snprintf(ini, sizeof ini, "%s/config.ini", run_dir);
    if (access(ini, F_OK) == 0) {
        if (config_load(cfg, ini, st)) return -1;
    } else if (!file) {
        return status_set(st, "%s: not found (is %s a run directory? pass --config FILE with "
                              "the run's experiment settings otherwise)", ini, run_dir);
    }
    if (file && config_load(cfg, file, st)) return -1;
    for (int i = 0; i < nsets; i++)
        if (config_set(cfg, sets[i], st)) return -1;
    if (strlen(run_dir) >= sizeof cfg->out_dir)
        return status_set(st, "%s: run directory path too long", run_dir);
    /* config.ini keeps data.file and run.out_dir as given to training,
     * relative to its working directory.  When the data set is not found
     * from here but run_dir ends with that out_dir, the training directory
     * is run_dir minus it: look for the data set there. */
    const char *df = cfg->data_file, *od = cfg->out_dir;
    size_t lr = strlen(run_dir), lo = strlen(od);
    while (lr > 1 && run_dir[lr - 1] == '/') lr--;
    while (lo > 1 && od[lo - 1] == '/') lo--;
    if (df[0] && df[0] != '/' && od[0] && od[0] != '/' && access(df, F_OK) && lr >= lo &&
        !strncmp(run_dir + lr - lo, od, lo) && (lr == lo || run_dir[lr - lo - 1] == '/')) {
        char alt[2 * CFG_STR];
        snprintf(alt, sizeof alt, "%.*s%s", (int)(lr - lo), run_dir, df);
        if (strlen(alt) < sizeof cfg->data_file && access(alt, F_OK) == 0)
            snprintf(cfg->data_file, sizeof cfg->data_file, "%s", alt);
    }
    snprintf(cfg->out_dir, sizeof cfg->out_dir, "%s", run_dir);
    return config_validate(cfg, st);
}

int count_input_size(const cc_config *cfg, int *h, int *w, cc_status *st)
{
    if (*h > 0 && *w > 0) return 0;
    if (!cfg->data_file[0])
        return status_set(st, "the run's configuration names no data set (data.file), so the "
                              "models' input size is unknown: pass --size WxH");
    if (dataset_image_size(cfg->data_file, h, w, st) == 0) return 0;
    status_prefix(st, "cannot tell the models' input size from the run's data set (pass --size "
                      "WxH, the image size it was trained on)");
    return -1;
}

void count_checkpoint_paths(const cc_config *cfg, const char *fpn_ckpt, const char *counter_ckpt,
                            char *fpn_path, char *counter_path, size_t len)
{
    if (fpn_ckpt)
        snprintf(fpn_path, len, "%s", fpn_ckpt);
    else
        snprintf(fpn_path, len, "%s/%s", cfg->out_dir,
                 cfg->finetune_fpn ? "counter_fpn_best.h5" : "fpn_best.h5");
    if (counter_ckpt)
        snprintf(counter_path, len, "%s", counter_ckpt);
    else
        snprintf(counter_path, len, "%s/counter_best.h5", cfg->out_dir);
}

/* ---- the models ------------------------------------------------------- */

enum { OPEN_CTX = 1, OPEN_MODELS = 2, OPEN_TAPE = 4 };

static int load_checkpoint(const char *path, cc_params *P, const char *what, int h, int w,
                           cc_status *st)
{
    if (access(path, F_OK))
        return status_set(st, "%s: %s checkpoint not found (%s)", path, what, strerror(errno));
    if (checkpoint_load(path, P, NULL, st) == 0) return 0;
    status_prefix(st, "%s checkpoint does not fit the run's %s for %dx%d images", what, what, w, h);
    return -1;
}

void count_sigma_attr_names(const char *tag, count_sigma_attrs *a)
{
    const char *dot = tag ? "." : "", *t = tag ? tag : "";
    snprintf(a->scale, sizeof a->scale, "counter.sigma_scale%s%s", dot, t);
    snprintf(a->per_count, sizeof a->per_count, "counter.sigma_per_count%s%s", dot, t);
    snprintf(a->tta, sizeof a->tta, "counter.sigma_scale_tta%s%s", dot, t);
    snprintf(a->fit_on, sizeof a->fit_on, "counter.sigma_fit_on%s%s", dot, t);
}

double count_calib_sigma(const count_calib *c, double count, double sigma)
{
    const double a = c->scale * sigma, b = c->per_count * (count > 0 ? count : 0);
    return b == 0 ? a : sqrt(a * a + b * b);
}

int count_model_open(count_model *cm, const cc_config *cfg, int h, int w, const char *fpn_ckpt,
                     const char *counter_ckpt, int want_fpn, const char *calib_tag, cc_status *st)
{
    memset(cm, 0, sizeof *cm);
    cm->s.cfg = *cfg;
    cm->s.log = stderr;
    snprintf(cm->s.dir, sizeof cm->s.dir, "%s", cfg->out_dir);
    cm->h = h;
    cm->w = w;
    cm->kind = cfg->counter_loss;
    const int f = 1 << cfg->fpn_depth;
    if (h < 1 || w < 1 || h % f || w % f)
        return status_set(st, "input size %dx%d is not divisible by 2^fpn.depth = %d", w, h, f);
    count_checkpoint_paths(cfg, fpn_ckpt, counter_ckpt, cm->fpn_path, cm->counter_path,
                           sizeof cm->fpn_path);
    if (ctx_init(&cm->s.ctx, cfg->threads, st)) return -1;
    cm->open_ |= OPEN_CTX;
    cm->open_ |= OPEN_MODELS;
    if (models_build(&cm->m, &cm->s, 1, h, w, st)) return -1;
    cm->has_fpn = want_fpn || cfg->counter_input != CFG_INPUT_IMAGE;
    if (cm->has_fpn && load_checkpoint(cm->fpn_path, &cm->m.Pf, "FPN", h, w, st)) return -1;
    if (load_checkpoint(cm->counter_path, &cm->m.Pc, "counter", h, w, st)) return -1;
    cm->calib = COUNT_CALIB_IDENTITY;
    char rp[CFG_STR + 16];
    snprintf(rp, sizeof rp, "%s/run.h5", cfg->out_dir);
    runlog rl;
    cc_status ignore;
    if (access(rp, R_OK) == 0 && runlog_open(&rl, rp, &ignore) == 0) {
        /* A run evaluated before calibration existed has no factor: 1.  A
         * tag's factor (evaluate --tag) where it was stored, else the run's. */
        count_sigma_attrs an;
        count_sigma_attr_names(calib_tag, &an);
        if (calib_tag && !runlog_attr_get(&rl, an.scale)) count_sigma_attr_names(NULL, &an);
        const char *v = runlog_attr_get(&rl, an.scale), *cv = runlog_attr_get(&rl, an.per_count);
        double k = v ? strtod(v, NULL) : NAN, pc = cv ? strtod(cv, NULL) : 0;
        const int applied =
            !counter_ckpt && cfg->counter_calibrate != CFG_CALIBRATE_NONE && isfinite(k) && k > 0;
        if (applied) {
            cm->calib.scale = k;
            /* a damaged per-count term is dropped rather than trusted */
            cm->calib.per_count = isfinite(pc) && pc > 0 ? pc : 0;
            snprintf(cm->sigma_from, sizeof cm->sigma_from, "%s", an.scale);
        }
        /* The factor was fitted with or without the flips of counter.tta
         * (runs evaluated before it existed: without). */
        const char *tv = runlog_attr_get(&rl, an.tta);
        const char *now = cfg_tta_names[cfg->counter_tta];
        if (applied && strcmp(tv ? tv : "none", now))
            fprintf(cm->s.log,
                    "cellcount: note: %s: sigma's calibration was fitted with counter.tta = %s, "
                    "this count uses %s (run evaluate again with the same setting)\n",
                    rp, tv ? tv : "none", now);
        const char *nv = runlog_attr_get(&rl, "data.normalize");
        if (nv && strlen(nv) < sizeof cm->train_norm) {
            snprintf(cm->train_norm, sizeof cm->train_norm, "%s", nv);
            cm->train_norm_from = "run.h5";
        }
        ood_stats_read(&rl, &cm->ood);
        /* The sigma range was seen through the calibration: without it
         * (explicit checkpoint, calibrate = none) it does not apply, unless
         * the stored calibration was the identity. */
        const int identity = k == 1 && !(pc > 0);
        if (!applied && !identity) cm->ood.s[OOD_SIGMA].have = 0;
        runlog_free(&rl);
    }
    if (!cm->train_norm_from && cfg->data_file[0] && access(cfg->data_file, R_OK) == 0) {
        /* Runs trained before data.normalize was recorded: the data set says. */
        cc_dataset *ds = dataset_open(cfg->data_file, &ignore);
        if (ds) {
            snprintf(cm->train_norm, sizeof cm->train_norm, "%s", ds->normalize);
            cm->train_norm_from = "data set";
            dataset_close(ds);
        }
    }
    tape_init(&cm->t, &cm->s.ctx, 0);
    tape_fix_weights(&cm->t, 1);     /* loaded checkpoints, never changed */
    cm->open_ |= OPEN_TAPE;
    return 0;
}

void count_model_close(count_model *cm)
{
    if (cm->open_ & OPEN_TAPE) tape_free(&cm->t);
    if (cm->open_ & OPEN_MODELS) models_free(&cm->m);
    if (cm->open_ & OPEN_CTX) ctx_free(&cm->s.ctx);
    cm->open_ = 0;
}

int count_graph_forward(count_model *cm, cc_tape *t, cc_tensor *x, count_graph *g)
{
    memset(g, 0, sizeof *g);
    const cc_config *c = &cm->s.cfg;
    if (cm->has_fpn) {
        cc_tensor *xf = c->fpn_channels != 1 ? op_expand_channels(t, x, c->fpn_channels) : x;
        fpn_output out;
        if (fpn_forward(t, &cm->m.Pf, &cm->m.fpn, xf, &out)) return -1;
        g->mask = out.mean[out.levels - 1];
        g->mask_logvar = out.logvar[out.levels - 1];
    }
    /* The counter's input exactly as counting_input() builds it. */
    cc_tensor *in = g->mask;
    if (c->counter_input != CFG_INPUT_MASK) {
        cc_tensor *img = op_avg_pool2d(t, x, 2);
        if (c->counter_input == CFG_INPUT_IMAGE) {
            in = img;
        } else {
            cc_tensor *both[2] = {g->mask, img};
            in = op_concat(t, both, 2);
        }
    }
    if (!in) return -1;
    g->input = in;
    if (cm->m.counter.positions)
        return counter_forward_map(t, &cm->m.Pc, &cm->m.counter, in, &g->count, &g->logvar,
                                   &g->density);
    return counter_forward(t, &cm->m.Pc, &cm->m.counter, in, &g->count, &g->logvar);
}

int count_model_predict(count_model *cm, const float *images, int n, double *count, double *sigma,
                        float *mask, float *mask_sigma, cc_status *st)
{
    return count_model_predict_fg(cm, images, n, count, sigma, mask, mask_sigma, NULL, NULL, st);
}

int count_model_predict_fg(count_model *cm, const float *images, int n, double *count,
                           double *sigma, float *mask, float *mask_sigma, double *fg,
                           float *density, cc_status *st)
{
    assert(n >= 1);
    if ((mask || mask_sigma) && !cm->has_fpn)
        return status_set(st, "predict: masks asked for but no FPN loaded");
    if (density && !cm->m.counter.positions)
        return status_set(st, "predict: a density map asked for but counter.arch = %s has none",
                          cm->m.counter.arch->name);
    cc_tape *t = &cm->t;
    tape_reset(t);
    if (n > COUNT_MAX_BATCH)
        return status_set(st, "predict: batch larger than %d", COUNT_MAX_BATCH);
    const int views = cm->s.cfg.counter_tta == CFG_TTA_FLIPS ? 4 : 1;
    const size_t mp = (size_t)(cm->h / 2) * (size_t)(cm->w / 2);
    /* counts and log-variances of each view; the masks when asked for or
     * for fg */
    const int need_mask = cm->has_fpn && (mask || fg);
    float *cv = malloc(sizeof(float) * 8 * (size_t)n);
    float *m = mask ? mask : need_mask ? malloc(sizeof(float) * mp * (size_t)n) : NULL;
    if (!cv || (need_mask && !m)) {
        free(cv);
        if (m != mask) free(m);
        return status_set(st, "predict: out of memory");
    }
    float *c = cv, *v = cv + 4 * (size_t)n;
    int64_t d[4] = {n, 1, cm->h, cm->w};
    cc_tensor *x = tape_input(t, 4, d, images, 0);
    count_graph g;
    int rc = 0;
    if (!x || count_graph_forward(cm, t, x, &g) || tape_read(t, g.count, c) ||
        tape_read(t, g.logvar, v) || (need_mask && tape_read(t, g.mask, m)) ||
        (mask_sigma && tape_read(t, g.mask_logvar, mask_sigma)) ||
        (density && tape_read(t, g.density, density)))
        rc = status_set(st, "predict: %s", tape_error(t));
    if (density && !rc) {
        cm->density_h = (int)g.density->dims[2];
        cm->density_w = (int)g.density->dims[3];
    }
    /* counter.tta = flips: the counter again on the flips k = 1..3 of its
     * input (mask and image alike), on the same tape, as saliency does */
    for (int k = 1; k < views && !rc; k++) {
        cc_tensor *cnt, *lv;
        if (counter_forward(t, &cm->m.Pc, &cm->m.counter, op_flip(t, g.input, (unsigned)k), &cnt,
                            &lv) ||
            tape_read(t, cnt, c + (size_t)k * (size_t)n) ||
            tape_read(t, lv, v + (size_t)k * (size_t)n))
            rc = status_set(st, "predict: %s", tape_error(t));
    }
    for (int i = 0; i < n && !rc; i++) {
        counting_views_combine(c, v, (size_t)n, views, i, cm->kind, &count[i], &sigma[i]);
        sigma[i] = count_calib_sigma(&cm->calib, count[i], sigma[i]);
    }
    if (fg) {
        for (int i = 0; i < n; i++) fg[i] = NAN;
        for (int i = 0; i < n && !rc && cm->has_fpn; i++) {
            double sum = 0;
            for (size_t p = 0; p < mp; p++) {
                const float q = m[mp * (size_t)i + p];
                sum += q < 0 ? 0 : q > 1 ? 1 : q;
            }
            fg[i] = sum / (double)mp;
        }
    }
    if (mask_sigma && !rc) {
        const size_t all = (size_t)n * mp;
        for (size_t i = 0; i < all; i++) mask_sigma[i] = expf(0.5f * mask_sigma[i]);
    }
    free(cv);
    if (m != mask) free(m);
    return rc;
}

int count_image_load(const char *path, int h, int w, float *dst, cc_status *st)
{
    return count_image_load_with(path, NULL, h, w, dst, NULL, NULL, st);
}

int count_image_load_with(const char *path, const count_reader *rd, int h, int w, float *dst,
                          cc_image *img_out, norm_info *info, cc_status *st)
{
    static const cc_norm range = {NORM_RANGE, 0, 0, 0};
    cc_image img;
    if (tiff_read_gray_at(path, rd ? rd->page : -1, rd ? rd->channel : -1, &img, st)) return -1;
    float *f = malloc(sizeof(float) * (size_t)img.w * (size_t)img.h);
    if (!f) {
        cc_image_free(&img);
        return status_set(st, "%s: out of memory", path);
    }
    int rc = norm_apply(&img, rd ? &rd->norm : &range, f, info, st);
    if (rc == 0) rc = resize_area(f, img.w, img.h, dst, w, h, st);
    if (rc) status_prefix(st, "%s", path);
    free(f);
    if (img_out) {
        *img_out = img;
        img_out->px = NULL;
    }
    cc_image_free(&img);
    return rc;
}

/* ---- reading options ---------------------------------------------------- */

int count_reader_init(count_reader *rd, const count_read *rq, const count_model *cm, FILE *log,
                      cc_status *st)
{
    memset(rd, 0, sizeof *rd);
    rd->page = rq ? rq->page : -1;
    rd->channel = rq ? rq->channel : -1;
    cc_norm trained;
    cc_status ignore;
    /* A run file or data set with an unreadable spec: "range", as before. */
    if (!cm->train_norm[0] || norm_parse(cm->train_norm, &trained, &ignore))
        norm_parse("range", &trained, &ignore);
    if (!rq || !rq->normalize) {
        rd->norm = trained;
        return 0;
    }
    if (norm_parse(rq->normalize, &rd->norm, st)) return -1;
    if (norm_mismatch(&rd->norm, &trained) && log) {
        char a[NORM_SPEC_LEN], b[NORM_SPEC_LEN];
        norm_format(&rd->norm, a, sizeof a);
        norm_format(&trained, b, sizeof b);
        fprintf(log, "cellcount: warning: --normalize %s, but the run was trained on images "
                     "normalised with %s%s%s%s: the counter gets inputs scaled differently "
                     "from its training data and its counts may be biased\n",
                a, b, cm->train_norm_from ? " (" : " (assumed: the run does not say",
                cm->train_norm_from ? cm->train_norm_from : "",
                cm->train_norm_from ? ")" : ")");
    }
    return 0;
}

void count_reader_finish(const count_reader *rd, int nread, FILE *log)
{
    if (!log) return;
    if (rd->n_low12 > 1)
        fprintf(log, "cellcount: warning: %d of %d images were 16-bit with values never above "
                     "4095 (see the first one above)\n", rd->n_low12, nread);
    if (rd->n_clipped > 1)
        fprintf(log, "cellcount: warning: %d of %d images had samples above bits:%d's maximum "
                     "(clamped; see the first one above)\n", rd->n_clipped, nread,
                rd->norm.bits);
}

/* The once-per-run warnings about how one image was scaled. */
static void warn_scaling(count_reader *rd, const char *path, const cc_image *img,
                         const norm_info *ni, FILE *log)
{
    if (rd->norm.kind == NORM_RANGE && img->bits == 16 &&
        (ni->vmax <= 4095 || (img->declared_max > 0 && img->declared_max <= 4095))) {
        if (rd->n_low12++ == 0 && log) {
            char decl[64] = "";
            if (img->declared_max > 0)
                snprintf(decl, sizeof decl, ", MaxSampleValue tag %d", img->declared_max);
            fprintf(log, "cellcount: warning: %s: 16-bit image whose values never exceed 4095 "
                         "(max %u%s): if it is 12-bit camera data, --normalize range divides "
                         "by 65535 and makes it 16x too dark: use --normalize bits:12 (later "
                         "such files are only counted)\n", path, (unsigned)ni->vmax, decl);
        }
    }
    if (rd->norm.kind == NORM_BITS && ni->clipped > 0 && rd->n_clipped++ == 0 && log)
        fprintf(log, "cellcount: warning: %s: %lld samples above %u, the maximum of bits:%d "
                     "(max %u), clamped to 1: is it really %d-bit data? (later such files are "
                     "only counted)\n", path, (long long)ni->clipped,
                (1u << rd->norm.bits) - 1u, rd->norm.bits, (unsigned)ni->vmax, rd->norm.bits);
}

/* ---- inputs ----------------------------------------------------------- */

static int is_tiff_name(const char *name)
{
    if (name[0] == '.') return 0;
    const char *dot = strrchr(name, '.');
    return dot && (!strcasecmp(dot, ".tif") || !strcasecmp(dot, ".tiff"));
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int push(count_inputs *in, int *cap, char *path, cc_status *st)
{
    if (!path) return status_set(st, "inputs: out of memory");
    if (in->n == *cap) {
        int nc = *cap ? 2 * *cap : 16;
        char **p = realloc(in->paths, sizeof(char *) * (size_t)nc);
        if (!p) {
            free(path);
            return status_set(st, "inputs: out of memory");
        }
        in->paths = p;
        *cap = nc;
    }
    in->paths[in->n++] = path;
    return 0;
}

/* Add the TIFFs of directory dir, sorted; returns how many, or -1. */
static int add_dir(count_inputs *in, int *cap, const char *dir, FILE *log, cc_status *st)
{
    DIR *d = opendir(dir);
    if (!d) {
        if (log) fprintf(log, "cellcount: %s: cannot open directory (%s)\n", dir, strerror(errno));
        return 0;
    }
    int first = in->n;
    struct dirent *e;
    size_t dl = strlen(dir);
    while ((e = readdir(d))) {
        if (!is_tiff_name(e->d_name)) continue;
        size_t len = dl + strlen(e->d_name) + 2;
        char *p = malloc(len);
        if (p) snprintf(p, len, "%s%s%s", dir, dl && dir[dl - 1] == '/' ? "" : "/", e->d_name);
        struct stat sb;
        if (p && (stat(p, &sb) || !S_ISREG(sb.st_mode))) {
            free(p);
            continue;
        }
        if (push(in, cap, p, st)) {
            closedir(d);
            return -1;
        }
    }
    closedir(d);
    qsort(in->paths + first, (size_t)(in->n - first), sizeof(char *), cmp_str);
    return in->n - first;
}

/* "dir/name.tif" -> "name", made unique among stems[0..n). */
static char *make_stem(const char *path, char *const *stems, int n)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t len = strlen(base);
    const char *dot = strrchr(base, '.');
    if (dot && dot != base && (!strcasecmp(dot, ".tif") || !strcasecmp(dot, ".tiff")))
        len = (size_t)(dot - base);
    if (len == 0) base = "image", len = 5;
    char *s = malloc(len + 16);
    if (!s) return NULL;
    for (int k = 1;; k++) {
        if (k == 1)
            snprintf(s, len + 16, "%.*s", (int)len, base);
        else
            snprintf(s, len + 16, "%.*s-%d", (int)len, base, k);
        int dup = 0;
        for (int i = 0; i < n && !dup; i++) dup = !strcmp(stems[i], s);
        if (!dup) return s;
    }
}

int count_inputs_next_batch(const count_inputs *in, int *next, int B, int h, int w, float *images,
                            int *slot, count_reader *rd, FILE *log, int *bad)
{
    const size_t plane = (size_t)h * (size_t)w;
    int n = 0;
    for (; *next < in->n && n < B; (*next)++) {
        cc_status ist;
        status_clear(&ist);
        cc_image img;
        norm_info ni;
        if (count_image_load_with(in->paths[*next], rd, h, w, images + plane * (size_t)n, &img,
                                  &ni, &ist)) {
            if (log) fprintf(log, "cellcount: %s (skipped)\n", ist.msg);
            (*bad)++;
            continue;
        }
        if (rd) warn_scaling(rd, in->paths[*next], &img, &ni, log);
        slot[n++] = *next;
    }
    return n;
}

void count_inputs_free(count_inputs *in)
{
    for (int i = 0; i < in->n; i++) {
        free(in->paths[i]);
        if (in->stems) free(in->stems[i]);
    }
    free(in->paths);
    free(in->stems);
    memset(in, 0, sizeof *in);
}

int count_inputs_collect(char *const *args, int nargs, count_inputs *in, FILE *log, int *bad,
                         cc_status *st)
{
    memset(in, 0, sizeof *in);
    int cap = 0;
    for (int a = 0; a < nargs; a++) {
        struct stat sb;
        if (stat(args[a], &sb)) {
            if (log) fprintf(log, "cellcount: %s: %s\n", args[a], strerror(errno));
            (*bad)++;
        } else if (S_ISDIR(sb.st_mode)) {
            int k = add_dir(in, &cap, args[a], log, st);
            if (k < 0) goto oom;
            if (k == 0) {
                if (log) fprintf(log, "cellcount: %s: directory has no *.tif files\n", args[a]);
                (*bad)++;
            }
        } else if (push(in, &cap, strdup(args[a]), st)) {
            goto oom;
        }
    }
    in->stems = calloc((size_t)(in->n ? in->n : 1), sizeof(char *));
    if (!in->stems) goto oom;
    for (int i = 0; i < in->n; i++)
        if (!(in->stems[i] = make_stem(in->paths[i], in->stems, i))) goto oom;
    return 0;
oom:
    count_inputs_free(in);
    return status_set(st, "inputs: out of memory");
}

/* ---- the count command ------------------------------------------------ */

static void put_field(FILE *f, const char *s, int csv)
{
    if (csv) csv_cell_put(f, s);
    else tsv_cell_put(f, s);
}

static void put_row(FILE *f, const char *path, double count, double sigma, const char *ood,
                    int csv)
{
    const char sep = csv ? ',' : '\t';
    put_field(f, path, csv);
    double lo = count - 1.96 * sigma, hi = count + 1.96 * sigma;
    if (lo < 0) lo = 0;
    /* %.4f prints NaN as "nan" (no uncertainty with the mse loss). */
    fprintf(f, "%c%.4f%c%.4f%c%.4f%c%.4f%c", sep, count, sep, sigma, sep, lo, sep, hi, sep);
    put_field(f, ood, csv);
    fputc('\n', f);
}

/* The largest of n values, 0 when none is positive (previews scale by it). */
static float plane_max(const float *v, size_t n)
{
    float mx = 0;
    for (size_t i = 0; i < n; i++) mx = v[i] > mx ? v[i] : mx;
    return mx;
}

/* A preview pixel: q rounded and clamped to 0..255. */
static uint8_t preview_byte(float q)
{
    return (uint8_t)(q <= 0.0f ? 0 : q >= 255.0f ? 255 : (int)(q + 0.5f));
}

/* The four mask files of one image. */
static int write_masks(const char *dir, const char *stem, const float *mask, const float *sd,
                       int h, int w, uint8_t *px, cc_status *st)
{
    char path[4096];
    const size_t n = (size_t)h * (size_t)w;
    const float mx = plane_max(sd, n);
    for (int k = 0; k < 2; k++) {
        const float *v = k ? sd : mask;
        const char *what = k ? "sigma" : "mask";
        const float scale = k ? (mx > 0 ? 255.0f / mx : 0.0f) : 255.0f;
        for (size_t i = 0; i < n; i++) px[i] = preview_byte(v[i] * scale);
        snprintf(path, sizeof path, "%s/%s_%s.png", dir, stem, what);
        if (png_write_gray(path, w, h, px, st)) return -1;
        snprintf(path, sizeof path, "%s/%s_%s.tif", dir, stem, what);
        if (tiff_write_gray(path, w, h, 32, v, st)) return -1;
    }
    return 0;
}

/* The two density files of one image: the map (dh x dw) as it is, and a
 * preview at the mask's size (mh x mw), each position a block.  px holds
 * mh*mw bytes. */
static int write_density(const char *dir, const char *stem, const float *map, int dh, int dw,
                         int mh, int mw, uint8_t *px, cc_status *st)
{
    char path[4096];
    const float mx = plane_max(map, (size_t)dh * (size_t)dw);
    const float scale = mx > 0 ? 255.0f / mx : 0.0f;
    for (int y = 0; y < mh; y++) {
        const float *row = map + (size_t)(y * dh / mh) * (size_t)dw;
        for (int x = 0; x < mw; x++)
            px[(size_t)y * (size_t)mw + (size_t)x] = preview_byte(row[x * dw / mw] * scale);
    }
    snprintf(path, sizeof path, "%s/%s_density.png", dir, stem);
    if (png_write_gray(path, mw, mh, px, st)) return -1;
    snprintf(path, sizeof path, "%s/%s_density.tif", dir, stem);
    return tiff_write_gray(path, dw, dh, 32, map, st);
}

int count_run(const cc_config *cfg, const count_opts *o, char *const *args, int nargs, FILE *out,
              FILE *log, cc_status *st)
{
    assert(o->batch >= 1);
    int bad = 0, rc = -1, h = o->h, w = o->w, model_open = 0;
    count_model cm;
    count_inputs in;
    memset(&in, 0, sizeof in);
    float *images = NULL, *masks = NULL, *sds = NULL, *dens = NULL;
    uint8_t *px = NULL;
    double *count = NULL, *sigma = NULL, *fg = NULL;
    int *slot = NULL, nread = 0;
    fs_atomic aw = {.slot = -1};   /* aw.tmp[0] != 0 while a temp file may exist */
    char *tmp = aw.tmp;
    FILE *f = out;

    if (count_input_size(cfg, &h, &w, st)) goto done;
    model_open = 1;
    if (count_model_open(&cm, cfg, h, w, o->fpn_ckpt, o->counter_ckpt, o->masks_dir != NULL, NULL, st))
        goto done;
    count_reader rd;
    if (count_reader_init(&rd, o->read, &cm, log, st)) goto done;
    if (log && !cm.ood.have_train)
        fprintf(log, "cellcount: note: %s/run.h5 has no training-set statistics (runs trained "
                     "before they were recorded by train-counter): no out-of-distribution "
                     "check, the ood column says n/a\n", cfg->out_dir);
    else if (log && cm.kind != LOSS_MSE && !cm.ood.s[OOD_SIGMA].have)
        fprintf(log, "cellcount: note: no calibrated sigma range for this counter in %s/run.h5 "
                     "(`cellcount evaluate` with counter.calibrate = val records it; unused with "
                     "--counter FILE): sigma is not checked for out-of-distribution\n",
                cfg->out_dir);
    if (o->masks_dir && fs_mkdirs(o->masks_dir, st)) goto done;
    if (count_inputs_collect(args, nargs, &in, log, &bad, st)) goto done;

    const size_t plane = (size_t)h * (size_t)w, mplane = plane / 4;
    const int B = o->batch;
    images = malloc(sizeof(float) * plane * (size_t)B);
    count = malloc(sizeof(double) * (size_t)B);
    sigma = malloc(sizeof(double) * (size_t)B);
    fg = malloc(sizeof(double) * (size_t)B);
    slot = malloc(sizeof(int) * (size_t)B);
    if (o->masks_dir) {
        masks = malloc(sizeof(float) * mplane * (size_t)B);
        sds = malloc(sizeof(float) * mplane * (size_t)B);
        px = malloc(mplane);
        if (cm.m.counter.positions)
            dens = malloc(sizeof(float) * (size_t)cm.m.counter.positions * (size_t)B);
    }
    if (!images || !count || !sigma || !fg || !slot ||
        (o->masks_dir && (!masks || !sds || !px || (cm.m.counter.positions && !dens)))) {
        status_set(st, "count: out of memory");
        goto done;
    }
    if (o->output) {
        if (fs_atomic_begin(&aw, o->output, st)) {
            tmp[0] = '\0';
            goto done;
        }
        if (!(f = fopen(tmp, "w"))) {
            status_set(st, "%s: cannot write (%s)", tmp, strerror(errno));
            fs_atomic_abort(&aw);
            tmp[0] = '\0';
            goto done;
        }
    }
    const char sep = o->csv ? ',' : '\t';
    fprintf(f, "file%ccount%csigma%clower95%cupper95%cood\n", sep, sep, sep, sep, sep);

    for (int next = 0; next < in.n;) {
        int n = count_inputs_next_batch(&in, &next, B, h, w, images, slot, &rd, log, &bad);
        if (n == 0) continue;
        nread += n;
        if (count_model_predict_fg(&cm, images, n, count, sigma, masks, sds, fg, dens, st))
            goto done;
        for (int i = 0; i < n; i++) {
            ood_image oi;
            double mean = 0;
            for (size_t p = 0; p < plane; p++) mean += images[plane * (size_t)i + p];
            oi.v[OOD_COUNT] = count[i];
            oi.v[OOD_INTENSITY] = mean / (double)plane;
            oi.v[OOD_FOREGROUND] = fg[i];
            oi.v[OOD_AREA] = count[i] >= 1 ? fg[i] * (double)plane / count[i] : NAN;
            oi.v[OOD_SIGMA] = sigma[i];
            char flags[128];
            ood_flags(&cm.ood, &oi, flags, sizeof flags);
            put_row(f, in.paths[slot[i]], count[i], sigma[i], flags, o->csv);
            if (o->masks_dir &&
                write_masks(o->masks_dir, in.stems[slot[i]], masks + mplane * (size_t)i,
                            sds + mplane * (size_t)i, h / 2, w / 2, px, st))
                goto done;
            if (dens && write_density(o->masks_dir, in.stems[slot[i]],
                                      dens + (size_t)cm.m.counter.positions * (size_t)i,
                                      cm.density_h, cm.density_w, h / 2, w / 2, px, st))
                goto done;
        }
        fflush(f);
    }
    count_reader_finish(&rd, nread, log);
    if (o->output) {
        int werr = ferror(f);
        FILE *ff = f;
        f = out;
        if (fclose(ff) || werr) {
            status_set(st, "%s: write failed (disk full?)", o->output);
            goto done;
        }
        if (fs_atomic_commit(&aw, st)) {
            tmp[0] = '\0';
            goto done;
        }
        tmp[0] = '\0';
    } else if (ferror(f)) {
        status_set(st, "count: writing the table failed");
        goto done;
    }
    rc = bad ? 1 : 0;
done:
    if (f && f != out) fclose(f);
    if (tmp[0]) fs_atomic_abort(&aw);
    if (model_open) count_model_close(&cm);
    count_inputs_free(&in);
    free(images), free(masks), free(sds), free(dens), free(px);
    free(count), free(sigma), free(fg), free(slot);
    return rc;
}
