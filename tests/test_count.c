/* test_count.c - `count` (src/infer/count_files.c) on a tiny randomly
 * initialised run: table format and intervals, agreement with the training
 * code's counting path, bad inputs, missing checkpoints, configuration and
 * input size, mask files; and the shared fixture (countutil.h).  The
 * saliency tests are in test_count_saliency.c, in the same binary. */
#include <check.h>
#include <ftw.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <tiffio.h>
#include <unistd.h>

#include "autodiff/rng.h"
#include "src/run/checkpoint.h"
#include "src/infer/count_files.h"
#include "src/run/runlog.h"
#include "src/train/count_split.h"
#include "src/data/dataset.h"
#include "src/data/resize.h"
#include "src/data/tiff_io.h"
#include "tests/countutil.h"
#include "tests/testmain.h"

static char g_dir[256];

static void tmp_setup(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/cc_test_count.XXXXXX");
    if (!mkdtemp(g_dir)) abort();
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
    (void)sb, (void)flag, (void)f;
    return remove(p);
}

static void tmp_teardown(void) { nftw(g_dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS); }

char *tpath(const char *sub, const char *name)
{
    static char buf[16][600];
    static int k;
    char *p = buf[k++ % 16];
    snprintf(p, 600, "%s/%s%s%s", g_dir, sub, name[0] ? "/" : "", name);
    return p;
}

int file_exists(const char *p) { return access(p, F_OK) == 0; }

static int g_tmp_found;
static int tmp_cb(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
    (void)sb, (void)flag, (void)f;
    if (strstr(p, ".tmp.")) g_tmp_found = 1;
    return 0;
}
int no_temporaries(const char *dir)
{
    g_tmp_found = 0;
    nftw(dir, tmp_cb, 16, FTW_PHYS);
    return !g_tmp_found;
}

/* ---- fixture: a run directory with random-init checkpoints ------------- */

/* A gray test image of w x h with bright blobs on a dark background,
 * values in [0,1]. */
static void blobs(float *img, int w, int h, uint64_t seed)
{
    cc_rng r;
    rng_seed(&r, seed, 0);
    for (int i = 0; i < w * h; i++) img[i] = 0.05f + 0.05f * (float)rng_uniform(&r);
    for (int k = 0; k < 6; k++) {
        double cx = rng_range(&r, 0, w), cy = rng_range(&r, 0, h);
        double rad = rng_range(&r, 0.05, 0.12) * w, v = rng_range(&r, 0.5, 0.9);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                double d2 = ((x - cx) * (x - cx) + (y - cy) * (y - cy)) / (rad * rad);
                if (d2 < 1) img[y * w + x] = fminf(1.0f, img[y * w + x] + (float)(v * (1 - d2)));
            }
    }
}

static void write_tiff(const char *path, int w, int h, int bits, uint64_t seed)
{
    float *f = malloc(sizeof(float) * (size_t)w * h);
    blobs(f, w, h, seed);
    void *px = malloc((size_t)w * h * 2);
    for (int i = 0; i < w * h; i++) {
        if (bits == 8)
            ((uint8_t *)px)[i] = (uint8_t)lrintf(f[i] * 255.0f);
        else
            ((uint16_t *)px)[i] = (uint16_t)lrintf(f[i] * 65535.0f);
    }
    cc_status st;
    status_clear(&st);
    ck_assert_msg(tiff_write_gray(path, w, h, bits, px, &st) == 0, "%s", st.msg);
    free(px);
    free(f);
}

/* FPN + counter on n images x on tape t (training or inference mode) the
 * way train-counter and evaluate do it (counting_input with the FPN on the
 * tape, then counter_forward); with c != NULL the counts and sigmas =
 * exp(logvar/2) are read into c[n], sig[n]. */
static void forward_counts(cc_tape *t, cc_session *s, cc_models *m, float *x, int n, float *c,
                           float *sig)
{
    tape_reset(t);
    int64_t idx[8] = {0};
    uint8_t flip[8] = {0};
    loader_batch b;
    memset(&b, 0, sizeof b);
    b.n = n, b.h = H, b.w = W, b.images = x, b.indices = idx, b.flipped = flip;
    cc_tensor *in = counting_input(t, s, m, NULL, &b, 1), *cnt = NULL, *lv = NULL;
    ck_assert_msg(in && counter_forward(t, &m->Pc, &m->counter, in, &cnt, &lv) == 0, "%s",
                  tape_error(t));
    if (!c) return;
    ck_assert_int_eq(tape_read(t, cnt, c), 0);
    ck_assert_int_eq(tape_read(t, lv, sig), 0);
    for (int i = 0; i < n; i++) sig[i] = expf(0.5f * sig[i]);
}

/* Give BN running statistics that fit the data, as training would: forward
 * batches of blob images on a training tape (batch statistics, running
 * buffers updated with momentum 0.1) until the initial 0/1 have mostly
 * decayed.  With the initial buffers a randomly initialised net shrinks its
 * signal layer by layer and the count barely depends on the image;
 * calibrated, it does, and eval-mode BN differs clearly from batch
 * statistics. */
static void calibrate_bn(cc_session *s, cc_models *m)
{
    enum { NB = 2 };
    static float x[NB * H * W];
    for (int i = 0; i < NB; i++) blobs(x + i * H * W, W, H, 100 + (uint64_t)i);
    cc_tape t;
    tape_init(&t, &s->ctx, 1);
    for (int it = 0; it < 25; it++) forward_counts(&t, s, m, x, NB, NULL, NULL);
    tape_free(&t);
}

/* See countutil.h. */
void make_run(run_fx *fx, const char *sub, const char *counter_input)
{
    make_run_arch(fx, sub, counter_input, "vgg11");
}

void make_run_arch(run_fx *fx, const char *sub, const char *counter_input, const char *arch)
{
    cc_status st;
    status_clear(&st);
    snprintf(fx->sub, sizeof fx->sub, "%s", sub);
    ck_assert_int_eq(mkdir(tpath(sub, ""), 0777), 0);
    ck_assert_int_eq(mkdir(tpath(sub, "run"), 0777), 0);
    ck_assert_int_eq(mkdir(tpath(sub, "img"), 0777), 0);
    cc_config *c = &fx->cfg;
    config_defaults(c);
    /* One thread: these nets are far too small to gain from more, and on a
     * loaded machine OpenMP barriers between tiny ops cost more than the
     * ops. */
    const char *sets[] = {"fpn.width=4", "fpn.depth=2", "counter.width_div=16", "run.threads=1"};
    for (int i = 0; i < 4; i++) ck_assert_msg(config_set(c, sets[i], &st) == 0, "%s", st.msg);
    char input_set[64];
    snprintf(input_set, sizeof input_set, "counter.input=%s", counter_input);
    ck_assert_msg(config_set(c, input_set, &st) == 0, "%s", st.msg);
    snprintf(input_set, sizeof input_set, "counter.arch=%s", arch);
    ck_assert_msg(config_set(c, input_set, &st) == 0, "%s", st.msg);
    snprintf(c->out_dir, sizeof c->out_dir, "%s", tpath(sub, "run"));
    snprintf(c->data_file, sizeof c->data_file, "%s", tpath(sub, "no-such-dataset.h5"));
    FILE *f = fopen(tpath(sub, "run/config.ini"), "w");
    ck_assert_ptr_nonnull(f);
    config_write(c, f);
    fclose(f);

    cc_session s;
    memset(&s, 0, sizeof s);
    s.cfg = *c;
    ck_assert_int_eq(ctx_init(&s.ctx, 1, &st), 0);
    cc_models m;
    ck_assert_msg(models_build(&m, &s, 1, H, W, &st) == 0, "%s", st.msg);
    calibrate_bn(&s, &m);
    write_tiff(tpath(sub, "img/a.tif"), 120, 80, 8, 11);
    write_tiff(tpath(sub, "img/b.tif"), 150, 100, 16, 12);
    write_tiff(tpath(sub, "img/c.tif"), W, H, 8, 13);
    /* Shift the count head's last bias so the test images count about 0.1
     * to 0.2: the final ReLU stays active (a dead one makes every gradient
     * 0 and the checks vacuous), and a small count keeps float rounding
     * small against the finite differences of the gradient check. */
    static float x[3 * H * W];
    const char *names[] = {"img/a.tif", "img/b.tif", "img/c.tif"};
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(count_image_load(tpath(sub, names[i]), H, W, x + i * H * W, &st), 0);
    /* (a density counter: a count of about 2 spread over its positions) */
    counter_init_count_bias(&m.Pc, &m.counter, m.counter.positions ? 2.0f : 5.0f);
    cc_tape t;
    tape_init(&t, &s.ctx, 0);
    float cnt[3], sig[3];
    forward_counts(&t, &s, &m, x, 3, cnt, sig);
    tape_free(&t);
    float lo = fminf(cnt[0], fminf(cnt[1], cnt[2]));
    ck_assert_msg(lo > 0, "count head dead even with its bias raised");
    if (!m.counter.positions) params_fill(&m.Pc, m.counter.count.fc3.b, 5.0f - lo + 0.1f);
    ck_assert_msg(checkpoint_save(tpath(sub, "run/fpn_best.h5"), &m.Pf, NULL, NULL, 0, &st) == 0,
                  "%s", st.msg);
    ck_assert_msg(
        checkpoint_save(tpath(sub, "run/counter_best.h5"), &m.Pc, NULL, NULL, 0, &st) == 0, "%s",
        st.msg);
    models_free(&m);
    ctx_free(&s.ctx);
}

static count_opts opts_default(void)
{
    count_opts o = {NULL, NULL, NULL, 0, NULL, 16, H, W, NULL};
    return o;
}

/* ---- reading the table ------------------------------------------------- */

#define MAXROWS 16
typedef struct table {
    int nrows;
    char header[1024];
    char file[MAXROWS][1024];
    double v[MAXROWS][4];       /* count, sigma, lower95, upper95 */
    char ood[MAXROWS][128];     /* the ood column */
} table;

static void read_table(const char *path, char sep, table *t)
{
    memset(t, 0, sizeof *t);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "%s missing", path);
    char line[1024];
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
    snprintf(t->header, sizeof t->header, "%s", line);
    while (fgets(line, sizeof line, f)) {
        ck_assert_int_lt(t->nrows, MAXROWS);
        int fields = 1;
        for (char *p = line; *p; p++) fields += *p == sep;
        /* the ood column is quoted in CSV when it lists several reasons */
        char *q = strchr(line, '"');
        if (q && sep == ',')
            for (char *p = q + 1; *p && *p != '"'; p++) fields -= *p == ',';
        ck_assert_msg(fields == 6, "expected 6 columns, got %d in '%s'", fields, line);
        char *p = strchr(line, sep);
        *p = '\0';
        snprintf(t->file[t->nrows], 1024, "%s", line);
        char *e = p + 1;
        for (int k = 0; k < 4; k++) {
            char *end;
            t->v[t->nrows][k] = strtod(e, &end);
            ck_assert_msg(end != e, "bad number in column %d", k + 2);
            e = end + 1;
        }
        size_t l = strcspn(e, "\n");
        if (l >= 2 && e[0] == '"' && e[l - 1] == '"') e++, l -= 2;
        snprintf(t->ood[t->nrows], sizeof t->ood[0], "%.*s", (int)l, e);
        t->nrows++;
    }
    fclose(f);
}

/* See countutil.h. */
double reference_count(const run_fx *fx, const char *tif, double *sigma)
{
    cc_status st;
    status_clear(&st);
    cc_image img;
    ck_assert_msg(tiff_read_gray(tif, &img, &st) == 0, "%s", st.msg);
    float *f = malloc(sizeof(float) * (size_t)img.w * img.h), x[H * W];
    cc_image_to_float(&img, f);
    ck_assert_int_eq(resize_area(f, img.w, img.h, x, W, H, &st), 0);
    free(f);
    cc_image_free(&img);

    cc_session s;
    memset(&s, 0, sizeof s);
    s.cfg = fx->cfg;
    ck_assert_int_eq(ctx_init(&s.ctx, 1, &st), 0);
    cc_models m;
    ck_assert_int_eq(models_build(&m, &s, 1, H, W, &st), 0);
    ck_assert_int_eq(checkpoint_load(tpath(fx->sub, "run/fpn_best.h5"), &m.Pf, NULL, &st), 0);
    ck_assert_int_eq(checkpoint_load(tpath(fx->sub, "run/counter_best.h5"), &m.Pc, NULL, &st), 0);
    cc_tape t;
    tape_init(&t, &s.ctx, 0);
    float c, sg;
    forward_counts(&t, &s, &m, x, 1, &c, &sg);
    if (sigma) *sigma = sg;
    tape_free(&t);
    models_free(&m);
    ctx_free(&s.ctx);
    return c;
}

/* ---- count ------------------------------------------------------------- */

START_TEST(count_table)
{
    run_fx fx;
    make_run(&fx, "table", "mask");
    cc_status st;
    status_clear(&st);
    char *args[] = {tpath("table", "img/a.tif"), tpath("table", "img/b.tif"),
                    tpath("table", "img/a.tif"), tpath("table", "img/c.tif")};
    count_opts o = opts_default();
    o.output = tpath("table", "out.tsv");
    ck_assert_msg(count_run(&fx.cfg, &o, args, 4, stdout, stderr, &st) == 0, "%s", st.msg);
    table t;
    read_table(o.output, '\t', &t);
    ck_assert_str_eq(t.header, "file\tcount\tsigma\tlower95\tupper95\tood\n");
    ck_assert_int_eq(t.nrows, 4);
    for (int i = 0; i < 4; i++) {
        ck_assert_str_eq(t.file[i], args[i]);
        double c = t.v[i][0], s = t.v[i][1], lo = t.v[i][2], hi = t.v[i][3];
        ck_assert(c > 0);       /* ReLU kept active by the fixture */
        ck_assert(s > 0);
        ck_assert(lo >= 0 && lo <= c && c <= hi);
        ck_assert_double_eq_tol(hi, c + 1.96 * s, 2e-4);
        ck_assert_double_eq_tol(lo, fmax(0, c - 1.96 * s), 2e-4);
    }
    /* The same image twice: the same numbers; different images differ. */
    for (int k = 0; k < 4; k++) ck_assert(t.v[0][k] == t.v[2][k]);
    ck_assert(t.v[0][0] != t.v[1][0]);
    /* Equals the training code's counting path on the resized image. */
    for (int i = 0; i < 4; i++) {
        double rs, ref = reference_count(&fx, args[i], &rs);
        ck_assert_msg(fabs(ref - t.v[i][0]) <= 1e-4 + 1e-5 * fabs(ref), "%s: %.6f vs %.6f",
                      args[i], t.v[i][0], ref);
        ck_assert_msg(fabs(rs - t.v[i][1]) <= 1e-4 + 1e-5 * rs, "%s: sigma %.6f vs %.6f",
                      args[i], t.v[i][1], rs);
    }
    /* Batch size does not change a prediction; CSV has the same numbers. */
    o.batch = 1;
    o.csv = 1;
    o.output = tpath("table", "out.csv");
    ck_assert_msg(count_run(&fx.cfg, &o, args, 4, stdout, stderr, &st) == 0, "%s", st.msg);
    table t2;
    read_table(o.output, ',', &t2);
    ck_assert_str_eq(t2.header, "file,count,sigma,lower95,upper95,ood\n");
    ck_assert_int_eq(t2.nrows, 4);
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 4; k++)
            ck_assert_msg(fabs(t.v[i][k] - t2.v[i][k]) <= 1e-4, "row %d col %d", i, k);
    /* evaluate's calibration factor in the run file scales sigma; with
     * counter.calibrate = none it is ignored. */
    char rp[CFG_STR + 16];
    snprintf(rp, sizeof rp, "%s/run.h5", fx.cfg.out_dir);
    runlog rl;
    ck_assert_msg(runlog_create(&rl, rp, &fx.cfg, &st) == 0, "%s", st.msg);
    ck_assert_int_eq(runlog_set_attr(&rl, "counter.sigma_scale", "2", &st), 0);
    ck_assert_msg(runlog_flush(&rl, &st) == 0, "%s", st.msg);
    runlog_free(&rl);
    for (int calibrate = 1; calibrate >= 0; calibrate--) {
        cc_config c = fx.cfg;
        ck_assert_int_eq(config_set(&c, calibrate ? "counter.calibrate=val" : "counter.calibrate=none",
                                    NULL), 0);
        o.output = tpath("table", "scaled.csv");
        ck_assert_msg(count_run(&c, &o, args, 4, stdout, stderr, &st) == 0, "%s", st.msg);
        table t3;
        read_table(o.output, ',', &t3);
        for (int i = 0; i < 4; i++) {
            ck_assert_double_eq_tol(t3.v[i][0], t.v[i][0], 1e-4);
            ck_assert_double_eq_tol(t3.v[i][1], (calibrate ? 2 : 1) * t.v[i][1], 2e-4);
        }
    }
    ck_assert(no_temporaries(tpath("table", "")));
}
END_TEST

START_TEST(count_directory_and_bad_inputs)
{
    run_fx fx;
    make_run(&fx, "bad", "mask");
    cc_status st;
    status_clear(&st);
    /* A corrupt TIFF (valid header, garbage after) and a text file named .tif. */
    FILE *f = fopen(tpath("bad", "img/broken.tif"), "wb");
    fwrite("II*\0\x08\0\0\0\xff\xff\x01\x02garbage", 1, 20, f);
    fclose(f);
    f = fopen(tpath("bad", "img/notes.TIF"), "w");
    fputs("not an image\n", f);
    fclose(f);
    ck_assert_int_eq(mkdir(tpath("bad", "empty"), 0777), 0);
    char *args[] = {tpath("bad", "img"), tpath("bad", "missing.tif"), tpath("bad", "empty")};
    FILE *log = tmpfile();
    count_opts o = opts_default();
    o.output = tpath("bad", "out.tsv");
    ck_assert_int_eq(count_run(&fx.cfg, &o, args, 3, stdout, log, &st), 1);
    char msgs[8192] = "";
    rewind(log);
    size_t n = fread(msgs, 1, sizeof msgs - 1, log);
    msgs[n] = '\0';
    fclose(log);
    ck_assert_msg(strstr(msgs, "broken.tif"), "log: %s", msgs);
    ck_assert_msg(strstr(msgs, "notes.TIF"), "log: %s", msgs);
    ck_assert_msg(strstr(msgs, "missing.tif"), "log: %s", msgs);
    ck_assert_msg(strstr(msgs, "empty: directory has no *.tif files"), "log: %s", msgs);
    /* The readable images are still counted, in name order. */
    table t;
    read_table(o.output, '\t', &t);
    ck_assert_int_eq(t.nrows, 3);
    ck_assert_str_eq(t.file[0], tpath("bad", "img/a.tif"));
    ck_assert_str_eq(t.file[1], tpath("bad", "img/b.tif"));
    ck_assert_str_eq(t.file[2], tpath("bad", "img/c.tif"));
}
END_TEST

START_TEST(count_missing_checkpoint)
{
    run_fx fx;
    make_run(&fx, "ckpt", "mask");
    char *args[] = {tpath("ckpt", "img/a.tif")};
    count_opts o = opts_default();
    o.output = tpath("ckpt", "out.tsv");
    for (int k = 0; k < 2; k++) {
        const char *name = k ? "run/fpn_best.h5" : "run/counter_best.h5";
        char saved[600];
        snprintf(saved, sizeof saved, "%s.saved", tpath("ckpt", name));
        ck_assert_int_eq(rename(tpath("ckpt", name), saved), 0);
        cc_status st;
        status_clear(&st);
        ck_assert_int_eq(count_run(&fx.cfg, &o, args, 1, stdout, stderr, &st), -1);
        ck_assert_msg(strstr(st.msg, tpath("ckpt", name)) && strstr(st.msg, "not found"), "%s",
                      st.msg);
        ck_assert(!file_exists(o.output));
        ck_assert_int_eq(rename(saved, tpath("ckpt", name)), 0);
    }
    /* A checkpoint of another architecture is refused, naming the file. */
    cc_config other = fx.cfg;
    other.fpn_width = 8;
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(count_run(&other, &o, args, 1, stdout, stderr, &st), -1);
    ck_assert_msg(strstr(st.msg, "fpn_best.h5"), "%s", st.msg);
    ck_assert(no_temporaries(tpath("ckpt", "")));
}
END_TEST

START_TEST(count_config_and_size)
{
    run_fx fx;
    make_run(&fx, "cfg", "mask");
    cc_status st;
    status_clear(&st);
    /* config.ini of the run, then overrides; out_dir follows the argument. */
    cc_config c;
    char *sets[] = {"counter.loss=mse"};
    ck_assert_msg(count_config_load(&c, tpath("cfg", "run"), NULL, sets, 1, &st) == 0, "%s",
                  st.msg);
    ck_assert_int_eq(c.fpn_width, 4);
    ck_assert_int_eq(c.counter_width_div, 16);
    ck_assert_int_eq(c.counter_loss, LOSS_MSE);
    ck_assert_str_eq(c.out_dir, tpath("cfg", "run"));
    ck_assert_int_eq(count_config_load(&c, tpath("cfg", "img"), NULL, NULL, 0, &st), -1);
    ck_assert_msg(strstr(st.msg, "config.ini"), "%s", st.msg);
    /* Input size: the data set's, or a clear error suggesting --size. */
    int h = 0, w = 0;
    status_clear(&st);
    ck_assert_int_eq(count_input_size(&fx.cfg, &h, &w, &st), -1);
    ck_assert_msg(strstr(st.msg, "no-such-dataset.h5") && strstr(st.msg, "--size"), "%s", st.msg);
    dataset_writer *dw = dataset_writer_open(tpath("cfg", "ds.h5"), H, W, &st);
    ck_assert_ptr_nonnull(dw);
    float img[H * W];
    blobs(img, W, H, 3);
    dataset_record rec = {5, 1, 1, 1, 0, DATASET_TRAIN, "x", NULL};
    ck_assert_int_eq(dataset_writer_append(dw, img, NULL, &rec, &st), 0);
    ck_assert_msg(dataset_writer_close(dw, 1, &st) == 0, "%s", st.msg);
    snprintf(fx.cfg.data_file, sizeof fx.cfg.data_file, "%s", tpath("cfg", "ds.h5"));
    status_clear(&st);
    h = w = 0;
    ck_assert_msg(count_input_size(&fx.cfg, &h, &w, &st) == 0, "%s", st.msg);
    ck_assert_int_eq(h, H);
    ck_assert_int_eq(w, W);
    /* data.file and out_dir as training saw them, relative to its working
     * directory (<g_dir>/cfg, not ours): found through the run directory. */
    ck_assert_int_eq(mkdir(tpath("cfg", "run2"), 0777), 0);
    FILE *f = fopen(tpath("cfg", "run2/config.ini"), "w");
    fputs("[data]\nfile = ds.h5\n[run]\nout_dir = run2\n", f);
    fclose(f);
    ck_assert_int_ne(access("ds.h5", F_OK), 0);
    ck_assert_msg(count_config_load(&c, tpath("cfg", "run2/"), NULL, NULL, 0, &st) == 0, "%s",
                  st.msg);
    ck_assert_str_eq(c.data_file, tpath("cfg", "ds.h5"));
    h = w = 0;
    ck_assert_msg(count_input_size(&c, &h, &w, &st) == 0, "%s", st.msg);
    ck_assert_int_eq(h, H);
    /* With the mse loss there is no sigma: nan columns. */
    count_opts o = opts_default();
    o.h = o.w = 0;
    o.output = tpath("cfg", "out.tsv");
    fx.cfg.counter_loss = LOSS_MSE;
    char *args[] = {tpath("cfg", "img/a.tif")};
    ck_assert_msg(count_run(&fx.cfg, &o, args, 1, stdout, stderr, &st) == 0, "%s", st.msg);
    table t;
    read_table(o.output, '\t', &t);
    ck_assert_int_eq(t.nrows, 1);
    ck_assert(t.v[0][0] > 0 && isnan(t.v[0][1]) && isnan(t.v[0][2]) && isnan(t.v[0][3]));
}
END_TEST

uint8_t *read_png(const char *path, int *w, int *h)
{
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    ck_assert_msg(png_image_begin_read_from_file(&im, path), "%s: %s", path, im.message);
    im.format = PNG_FORMAT_GRAY;
    uint8_t *px = malloc(PNG_IMAGE_SIZE(im));
    ck_assert_msg(png_image_finish_read(&im, NULL, px, 0, NULL), "%s: %s", path, im.message);
    *w = (int)im.width;
    *h = (int)im.height;
    return px;
}

/* Read a 32-bit float TIFF (h x w) into dst. */
static void read_float_tiff(const char *path, int w, int h, float *dst)
{
    TIFF *tif = TIFFOpen(path, "r");
    ck_assert_msg(tif != NULL, "%s", path);
    uint32_t tw = 0, th = 0;
    uint16_t bits = 0, fmt = 0;
    TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &tw);
    TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &th);
    TIFFGetField(tif, TIFFTAG_BITSPERSAMPLE, &bits);
    TIFFGetField(tif, TIFFTAG_SAMPLEFORMAT, &fmt);
    ck_assert_int_eq((int)tw, w);
    ck_assert_int_eq((int)th, h);
    ck_assert_int_eq(bits, 32);
    ck_assert_int_eq(fmt, SAMPLEFORMAT_IEEEFP);
    for (int y = 0; y < h; y++) ck_assert_int_eq(TIFFReadScanline(tif, dst + y * w, y, 0), 1);
    TIFFClose(tif);
}

START_TEST(count_masks)
{
    run_fx fx;
    make_run(&fx, "masks", "mask");
    cc_status st;
    status_clear(&st);
    char *args[] = {tpath("masks", "img/a.tif"), tpath("masks", "img/a.tif")};
    count_opts o = opts_default();
    o.output = tpath("masks", "out.tsv");
    o.masks_dir = tpath("masks", "out/masks");
    ck_assert_msg(count_run(&fx.cfg, &o, args, 2, stdout, stderr, &st) == 0, "%s", st.msg);
    /* The library's own prediction of the same image. */
    count_model cm;
    ck_assert_msg(count_model_open(&cm, &fx.cfg, H, W, NULL, NULL, 1, NULL, &st) == 0, "%s", st.msg);
    float x[H * W], m[H * W / 4], sd[H * W / 4];
    double c, s;
    ck_assert_int_eq(count_image_load(args[0], H, W, x, &st), 0);
    ck_assert_msg(count_model_predict(&cm, x, 1, &c, &s, m, sd, &st) == 0, "%s", st.msg);
    count_model_close(&cm);
    const char *stems[] = {"a", "a-2"};
    float tm[H * W / 4], ts[H * W / 4];
    for (int k = 0; k < 2; k++) {
        char p[700];
        snprintf(p, sizeof p, "%s/%s_mask.tif", o.masks_dir, stems[k]);
        read_float_tiff(p, W / 2, H / 2, tm);
        snprintf(p, sizeof p, "%s/%s_sigma.tif", o.masks_dir, stems[k]);
        read_float_tiff(p, W / 2, H / 2, ts);
        float mx = 0, mmax = 0;
        for (int i = 0; i < H * W / 4; i++) {
            ck_assert(tm[i] == m[i] && ts[i] == sd[i]);
            ck_assert(ts[i] > 0);
            mx = fmaxf(mx, ts[i]);
            mmax = fmaxf(mmax, tm[i]);
        }
        ck_assert(mmax > 0);        /* not an all-dead mask */
        int pw, ph;
        snprintf(p, sizeof p, "%s/%s_mask.png", o.masks_dir, stems[k]);
        uint8_t *px = read_png(p, &pw, &ph);
        ck_assert_int_eq(pw, W / 2);
        ck_assert_int_eq(ph, H / 2);
        for (int i = 0; i < H * W / 4; i++)
            ck_assert_int_eq(px[i], (int)lrintf(255.0f * fminf(1.0f, fmaxf(0.0f, m[i]))));
        free(px);
        snprintf(p, sizeof p, "%s/%s_sigma.png", o.masks_dir, stems[k]);
        px = read_png(p, &pw, &ph);
        int maxpx = 0;
        for (int i = 0; i < H * W / 4; i++) {
            ck_assert(abs(px[i] - (int)lrintf(255.0f * sd[i] / mx)) <= 1);
            maxpx = px[i] > maxpx ? px[i] : maxpx;
        }
        ck_assert_int_eq(maxpx, 255);
        free(px);
    }
    /* a flatten counter has no density map */
    ck_assert(!file_exists(tpath("masks", "out/masks/a_density.tif")));
    ck_assert(!file_exists(tpath("masks", "out/masks/a_density.png")));
    ck_assert(no_temporaries(tpath("masks", "")));
}
END_TEST

/* A density counter's --masks also writes its map: at 1/8 of the
 * counter's input side, summing to the table's count, with a preview at
 * the mask's size, each position a block, normalised per image; asking a
 * flatten counter for a map is an error. */
START_TEST(count_density_map)
{
    run_fx fx;
    make_run_arch(&fx, "dens", "mask", "vgg11_density");
    cc_status st;
    status_clear(&st);
    char *args[] = {tpath("dens", "img/a.tif"), tpath("dens", "img/b.tif")};
    count_opts o = opts_default();
    o.output = tpath("dens", "out.tsv");
    o.masks_dir = tpath("dens", "maps");
    ck_assert_msg(count_run(&fx.cfg, &o, args, 2, stdout, stderr, &st) == 0, "%s", st.msg);
    table tb;
    read_table(o.output, '\t', &tb);
    ck_assert_int_eq(tb.nrows, 2);
    enum { DH = H / 16, DW = W / 16 };
    const char *stems[] = {"a", "b"};
    for (int k = 0; k < 2; k++) {
        char p[700];
        float d[DH * DW];
        snprintf(p, sizeof p, "%s/%s_density.tif", o.masks_dir, stems[k]);
        read_float_tiff(p, DW, DH, d);
        double sum = 0;
        float mx = 0;
        for (int i = 0; i < DH * DW; i++) {
            ck_assert(d[i] >= 0);
            sum += d[i];
            mx = fmaxf(mx, d[i]);
        }
        ck_assert_msg(fabs(sum - tb.v[k][0]) <= 1e-4 + 1e-5 * sum, "%s: map sums to %g, count %g",
                      stems[k], sum, tb.v[k][0]);
        ck_assert(mx > 0);
        int pw, ph;
        snprintf(p, sizeof p, "%s/%s_density.png", o.masks_dir, stems[k]);
        uint8_t *px = read_png(p, &pw, &ph);
        ck_assert_int_eq(pw, W / 2);
        ck_assert_int_eq(ph, H / 2);
        for (int y = 0; y < H / 2; y++)
            for (int x = 0; x < W / 2; x++)
                ck_assert(abs(px[y * (W / 2) + x] -
                              (int)lrintf(255.0f * d[(y / 8) * DW + x / 8] / mx)) <= 1);
        free(px);
    }
    ck_assert(no_temporaries(tpath("dens", "")));

    run_fx flat;
    make_run(&flat, "flat", "mask");
    count_model cm;
    ck_assert_msg(count_model_open(&cm, &flat.cfg, H, W, NULL, NULL, 0, NULL, &st) == 0, "%s",
                  st.msg);
    float x[H * W], map[64];
    double c, s, fg;
    ck_assert_int_eq(count_image_load(args[0], H, W, x, &st), 0);
    ck_assert_int_eq(count_model_predict_fg(&cm, x, 1, &c, &s, NULL, NULL, &fg, map, &st), -1);
    ck_assert_msg(strstr(st.msg, "a density map asked for but counter.arch = vgg11 has none"), "%s",
                  st.msg);
    count_model_close(&cm);
}
END_TEST

/* Flipping a row-major h x w plane per bits, written independently of the
 * library's helpers. */
static void flip_ref(const float *src, float *dst, int h, int w, unsigned bits)
{
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            const int sy = bits & 2 ? h - 1 - y : y, sx = bits & 1 ? w - 1 - x : x;
            dst[(size_t)y * w + x] = src[(size_t)sy * w + sx];
        }
}

START_TEST(count_tta_combine_is_a_mixture)
{
    double mu_c, var_c;
    counting_tta_combine((const double[]){1, 3}, (const double[]){1, 1}, 2, &mu_c, &var_c);
    ck_assert_double_eq_tol(mu_c, 2, 1e-12);
    ck_assert_double_eq_tol(var_c, 2, 1e-12);     /* mean variance 1 + spread 1 */
    counting_tta_combine((const double[]){5}, (const double[]){0.25}, 1, &mu_c, &var_c);
    ck_assert(mu_c == 5 && var_c == 0.25);
    counting_tta_combine((const double[]){2, 2, 2, 6}, (const double[]){1, 2, 3, 4}, 4, &mu_c,
                         &var_c);
    ck_assert_double_eq_tol(mu_c, 3, 1e-12);
    ck_assert_double_eq_tol(var_c, 2.5 + 3, 1e-12);
}
END_TEST

/* counter.tta = flips in count's path: the count is the mixture of the
 * counter on the four flips of the unflipped image's FPN mask and of the
 * image (mask+image input), built here through the training code's
 * counting_input over a one-image mask cache. */
START_TEST(count_tta_flips)
{
    run_fx fx;
    make_run(&fx, "tta", "mask+image");
    cc_status st;
    status_clear(&st);
    float x[H * W], m0[H * W / 4];
    ck_assert_int_eq(count_image_load(tpath("tta", "img/a.tif"), H, W, x, &st), 0);
    count_model cm;
    double c_plain, s_plain, c_tta, s_tta;
    ck_assert_msg(count_model_open(&cm, &fx.cfg, H, W, NULL, NULL, 1, NULL, &st) == 0, "%s", st.msg);
    ck_assert_msg(count_model_predict(&cm, x, 1, &c_plain, &s_plain, m0, NULL, &st) == 0, "%s",
                  st.msg);
    count_model_close(&cm);
    cc_config ct = fx.cfg;
    ct.counter_tta = CFG_TTA_FLIPS;
    float m_tta[H * W / 4];
    ck_assert_msg(count_model_open(&cm, &ct, H, W, NULL, NULL, 1, NULL, &st) == 0, "%s", st.msg);
    ck_assert_msg(count_model_predict(&cm, x, 1, &c_tta, &s_tta, m_tta, NULL, &st) == 0, "%s",
                  st.msg);
    count_model_close(&cm);
    ck_assert(memcmp(m0, m_tta, sizeof m0) == 0);   /* the masks are the unflipped image's */

    cc_session s;
    memset(&s, 0, sizeof s);
    s.cfg = fx.cfg;
    ck_assert_int_eq(ctx_init(&s.ctx, 1, &st), 0);
    cc_models m;
    ck_assert_int_eq(models_build(&m, &s, 1, H, W, &st), 0);
    ck_assert_int_eq(checkpoint_load(tpath("tta", "run/fpn_best.h5"), &m.Pf, NULL, &st), 0);
    ck_assert_int_eq(checkpoint_load(tpath("tta", "run/counter_best.h5"), &m.Pc, NULL, &st), 0);
    int64_t slot = 0, idx = 0;
    mask_cache mc = {.n_index = 1, .slot = &slot, .masks = m0, .n = 1, .h = H / 2, .w = W / 2};
    cc_tape t;
    tape_init(&t, &s.ctx, 0);
    double mu[4], var[4];
    float xf[H * W];
    for (unsigned k = 0; k < 4; k++) {
        tape_reset(&t);
        flip_ref(x, xf, H, W, k);
        uint8_t bits = (uint8_t)k;
        loader_batch b;
        memset(&b, 0, sizeof b);
        b.n = 1, b.h = H, b.w = W, b.images = xf, b.indices = &idx, b.flipped = &bits;
        cc_tensor *in = counting_input(&t, &s, &m, &mc, &b, 0), *cnt = NULL, *lv = NULL;
        ck_assert_msg(in && counter_forward(&t, &m.Pc, &m.counter, in, &cnt, &lv) == 0, "%s",
                      tape_error(&t));
        float c, v;
        ck_assert_int_eq(tape_read(&t, cnt, &c), 0);
        ck_assert_int_eq(tape_read(&t, lv, &v), 0);
        mu[k] = c, var[k] = exp((double)v);
    }
    tape_free(&t);
    models_free(&m);
    ctx_free(&s.ctx);
    ck_assert_msg(fabs(mu[0] - c_plain) <= 1e-4 * (1 + fabs(c_plain)), "%g vs %g", mu[0], c_plain);
    double mean = (mu[0] + mu[1] + mu[2] + mu[3]) / 4, v2 = 0;
    for (int k = 0; k < 4; k++) v2 += (var[k] + (mu[k] - mean) * (mu[k] - mean)) / 4;
    ck_assert_msg(fabs(c_tta - mean) <= 1e-4 * (1 + fabs(mean)), "%g vs %g", c_tta, mean);
    ck_assert_msg(fabs(s_tta - sqrt(v2)) <= 1e-4 * sqrt(v2), "sigma %g vs %g", s_tta, sqrt(v2));
    /* the test can tell: the flips give different counts here */
    ck_assert_msg(fabs(mu[1] - mu[0]) + fabs(mu[2] - mu[0]) + fabs(mu[3] - mu[0]) > 1e-4,
                  "flipped views count alike (%g %g %g %g)", mu[0], mu[1], mu[2], mu[3]);
}
END_TEST

void count_add_case(Suite *s, const char *name, const TTest *test)
{
    /* One case per test, each with its own temporary directory, so that a
     * single one can be run with CK_RUN_CASE=<name>. */
    TCase *tc = tcase_create(name);
    tcase_add_unchecked_fixture(tc, tmp_setup, tmp_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test);
    suite_add_tcase(s, tc);
}

static Suite *count_suite(void)
{
    Suite *s = suite_create("count");
    count_add_case(s, "count_table", count_table);
    count_add_case(s, "count_bad_inputs", count_directory_and_bad_inputs);
    count_add_case(s, "count_missing_checkpoint", count_missing_checkpoint);
    count_add_case(s, "count_config_and_size", count_config_and_size);
    count_add_case(s, "count_masks", count_masks);
    count_add_case(s, "count_density_map", count_density_map);
    count_add_case(s, "count_tta_combine", count_tta_combine_is_a_mixture);
    count_add_case(s, "count_tta_flips", count_tta_flips);
    saliency_add_tests(s);
    count_ood_add_tests(s);
    return s;
}

int main(void)
{
    return tu_run(count_suite());
}
