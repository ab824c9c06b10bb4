/* test_train.c - training drivers end to end on a tiny simulated set:
 * learning happens, a run killed with SIGKILL mid-epoch and resumed ends
 * bit-identical to an uninterrupted one, evaluation writes its tables, and
 * bad configurations fail cleanly. */
#include <check.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hdf5.h>

#include "src/data/dataset.h"
#include "src/run/checkpoint.h"
#include "src/run/runlog.h"
#include "src/run/session.h"
#include "src/sim/sim_output.h"
#include "src/infer/evaluate.h"
#include "src/train/train.h"
#include "src/train/train_util.h"
#include "tests/testmain.h"
#include "tests/test_train.h"

char dir[64];
char data[128];

/* A simulated set at path: h x w stored, stains (bit 0 w1, bit 1 w2). */
void make_data_at(const char *path, int h, int w, int stains)
{
    make_data_seeded(path, h, w, stains, 5, 0);
}

void make_data_seeded(const char *path, int h, int w, int stains, int sites, uint64_t seed)
{
    static const int counts[] = {2, 10, 25, 40}, focus[] = {1, 8};
    sim_params p;
    sim_params_default(&p);
    p.width = 174;
    p.height = 130;
    if (seed) p.seed = seed;
    sim_job job = {counts, 4, focus, 2, sites, stains, 1};
    static const double frac[3] = {0.6, 0.2, 0.2};
    sim_h5_out o;
    cc_status st;
    status_clear(&st);
    ck_assert_msg(sim_h5_begin(&o, path, h, w, &job, 1, frac, DATASET_SPLIT_SCENE, &st) == 0, "%s", st.msg);
    int rc = sim_run(&p, &job, sim_h5_sink, &o, NULL, &st);
    ck_assert_msg(sim_h5_end(&o, rc == 0, &st) == 0 && rc == 0, "%s", st.msg);
}

void make_data(void)
{
    make_data_at(data, 64, 64, 1);
}

static void setup(void)
{
    strcpy(dir, "/tmp/cc_train_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(data, sizeof data, "%s/sim.h5", dir);
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

void tiny_config(cc_config *c, const char *run, int fpn_epochs)
{
    char buf[256];
    config_defaults(c);
    const char *keys[] = {"fpn.depth=2", "fpn.width=4", "fpn_train.batch=4", "fpn_train.lr=3e-3",
                          "counter.width_div=16", "counter_train.batch=4", "counter_train.epochs=2",
                          "counter_train.lr=1e-3", "counter.init_bias=data", "run.threads=1"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) ck_assert_int_eq(config_set(c, keys[i], NULL), 0);
    snprintf(buf, sizeof buf, "fpn_train.epochs=%d", fpn_epochs);
    config_set(c, buf, NULL);
    snprintf(buf, sizeof buf, "data.file=%s", data);
    config_set(c, buf, NULL);
    snprintf(buf, sizeof buf, "run.out_dir=%s/%s", dir, run);
    config_set(c, buf, NULL);
}

/* Load a checkpoint's parameters into a fresh store (same architecture). */
static void load_params(const cc_config *c, const char *path, cc_params *P, cc_ctx *ctx, fpn_model *m)
{
    params_init(P, ctx);
    fpn_config fc = {c->fpn_depth, c->fpn_width, c->fpn_channels};
    ck_assert_int_eq(fpn_build(P, &fc, "fpn", m, NULL), 0);
    ck_assert_int_eq(params_finalize(P, NULL), 0);
    cc_status st;
    status_clear(&st);
    ck_assert_msg(checkpoint_load(path, P, NULL, &st) == 0, "%s", st.msg);
}

START_TEST(test_fpn_learns_and_logs)
{
    make_data();
    cc_config c;
    tiny_config(&c, "a", 4);
    cc_status st;
    status_clear(&st);
    ck_assert_msg(train_fpn(&c, 0, &st) == 0, "%s", st.msg);
    char path[256];
    snprintf(path, sizeof path, "%s/a/run.h5", dir);
    runlog rl;
    ck_assert_msg(runlog_open(&rl, path, &st) == 0, "%s", st.msg);
    runlog_table *t = runlog_table_find(&rl, "metrics");
    ck_assert_ptr_nonnull(t);
    ck_assert_uint_eq(t->nrows, 8); /* 4 epochs x (train, val) */
    int cl = runlog_col(t, "loss");
    double first = t->values[0 * t->ncols + cl], last = t->values[6 * t->ncols + cl];
    ck_assert_msg(last < first - 0.5, "FPN training loss did not fall: %g -> %g", first, last);
    ck_assert_str_eq(runlog_attr_get(&rl, "config.fpn.width"), "4");
    runlog_free(&rl);
    snprintf(path, sizeof path, "%s/a/fpn_best.h5", dir);
    ck_assert_int_eq(access(path, R_OK), 0);
}
END_TEST

/* An uninterrupted run at `t_full` threads against one killed (SIGKILL)
 * during its second epoch at `t_killed` threads and resumed at
 * `t_resumed`: the same weights, buffers and metrics.  fpn_width > 0
 * overrides the tiny width (wider nodes run on all threads instead of
 * the tape's serial path). */
static void check_resume(int t_full, int t_killed, int t_resumed, int fpn_width)
{
    make_data();
    cc_config a, b;
    tiny_config(&a, "full", 5);
    tiny_config(&b, "killed", 5);
    a.threads = t_full;
    b.threads = t_killed;
    if (fpn_width > 0) a.fpn_width = b.fpn_width = fpn_width;
    cc_status st;
    status_clear(&st);
    ck_assert_msg(train_fpn(&a, 0, &st) == 0, "%s", st.msg);

    /* Kill the second run as soon as its first epoch's checkpoint exists,
     * i.e. while epoch 2 is running. */
    char last[256];
    snprintf(last, sizeof last, "%s/killed/fpn_last.h5", dir);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        cc_status cs;
        status_clear(&cs);
        _exit(train_fpn(&b, 0, &cs) ? 1 : 0);
    }
    while (access(last, F_OK) != 0) {
        int status;
        ck_assert_msg(waitpid(pid, &status, WNOHANG) == 0, "training ended before the kill");
        usleep(2000);
    }
    usleep(20000);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    ck_assert(WIFSIGNALED(status));
    double epoch;
    ck_assert_int_eq(checkpoint_read_attr_double(last, "epoch", &epoch, &st), 0);
    ck_assert_msg(epoch < 4, "the kill came too late (epoch %g)", epoch);

    b.threads = t_resumed;
    ck_assert_msg(train_fpn(&b, 1, &st) == 0, "%s", st.msg);

    cc_ctx ctx;
    ck_assert_int_eq(ctx_init(&ctx, 1, NULL), 0);
    cc_params Pa, Pb;
    fpn_model ma, mb;
    char pa[256];
    snprintf(pa, sizeof pa, "%s/full/fpn_last.h5", dir);
    load_params(&a, pa, &Pa, &ctx, &ma);
    load_params(&b, last, &Pb, &ctx, &mb);
    ck_assert_uint_eq(Pa.n_train, Pb.n_train);
    ck_assert_msg(memcmp(Pa.value, Pb.value, sizeof(float) * Pa.n_train) == 0,
                  "resumed weights differ from the uninterrupted run");
    ck_assert(memcmp(Pa.buf, Pb.buf, sizeof(float) * Pa.n_buf) == 0);
    params_free(&Pa);
    params_free(&Pb);
    ctx_free(&ctx);

    /* The metrics agree too (times aside), with no duplicated epochs. */
    runlog ra, rb;
    snprintf(pa, sizeof pa, "%s/full/run.h5", dir);
    ck_assert_int_eq(runlog_open(&ra, pa, &st), 0);
    snprintf(pa, sizeof pa, "%s/killed/run.h5", dir);
    ck_assert_int_eq(runlog_open(&rb, pa, &st), 0);
    runlog_table *ta = runlog_table_find(&ra, "metrics"), *tb = runlog_table_find(&rb, "metrics");
    ck_assert_uint_eq(ta->nrows, tb->nrows);
    int cl = runlog_col(ta, "loss"), ce = runlog_col(ta, "epoch");
    for (size_t r = 0; r < ta->nrows; r++) {
        ck_assert(ta->values[r * ta->ncols + ce] == tb->values[r * tb->ncols + ce]);
        ck_assert_msg(ta->values[r * ta->ncols + cl] == tb->values[r * tb->ncols + cl],
                      "row %zu loss %.9g vs %.9g", r, ta->values[r * ta->ncols + cl],
                      tb->values[r * tb->ncols + cl]);
    }
    runlog_free(&ra);
    runlog_free(&rb);
}

START_TEST(test_resume_after_sigkill_is_exact) { check_resume(1, 1, 1, 0); }
END_TEST

/* fp32 results do not depend on the thread count (tests/test_threads.c),
 * so a run may be resumed on another machine's core count.  (The child
 * that is killed is forked before this process runs OpenMP on more than
 * one thread: forked OpenMP teams hang.) */
START_TEST(test_resume_on_other_thread_count_is_exact) { check_resume(1, 2, 3, 16); }
END_TEST

START_TEST(test_bad_inputs_fail_cleanly)
{
    cc_config c;
    tiny_config(&c, "bad", 1);
    cc_status st;
    status_clear(&st);
    /* missing data file */
    ck_assert_int_eq(train_fpn(&c, 0, &st), -1);
    ck_assert_msg(strstr(st.msg, "sim.h5"), "%s", st.msg);
    /* counter without a trained FPN names the checkpoint */
    make_data();
    status_clear(&st);
    ck_assert_int_eq(train_counter(&c, NULL, 0, &st), -1);
    ck_assert_msg(strstr(st.msg, "fpn_best.h5"), "%s", st.msg);
    /* an unwritable run directory */
    cc_config d = c;
    config_set(&d, "run.out_dir=/proc/cellcount-cannot-write", NULL);
    status_clear(&st);
    ck_assert_int_eq(train_fpn(&d, 0, &st), -1);
    ck_assert_msg(strstr(st.msg, "/proc/cellcount-cannot-write"), "%s", st.msg);
}
END_TEST

/* Sum of every .../num_batches_tracked value in a checkpoint, and how many. */
typedef struct nbt_sum {
    double sum;
    int n;
} nbt_sum;

static herr_t nbt_visit(hid_t g, const char *name, const H5L_info_t *info, void *u)
{
    (void)info;
    nbt_sum *a = u;
    size_t l = strlen(name);
    if (l < 19 || strcmp(name + l - 19, "num_batches_tracked")) return 0;
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
    double v = 0;
    if (d >= 0 && H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, &v) >= 0) {
        a->sum += v;
        a->n++;
    }
    if (d >= 0) H5Dclose(d);
    return 0;
}

/* counter.precise_bn = 3: after every epoch the counter's BN statistics are
 * averaged over 3 training batches with the epoch's final weights, so every
 * num_batches_tracked of the checkpoint reads 3; the run evaluates. */
START_TEST(test_counter_precise_bn)
{
    make_data();
    cc_config c;
    tiny_config(&c, "pbn", 1);
    config_set(&c, "counter.precise_bn=3", NULL);
    config_set(&c, "counter.ema=0", NULL);   /* the live weights' statistics */
    cc_status st;
    status_clear(&st);
    ck_assert_msg(train_fpn(&c, 0, &st) == 0, "%s", st.msg);
    ck_assert_msg(train_counter(&c, NULL, 0, &st) == 0, "%s", st.msg);
    char path[256];
    snprintf(path, sizeof path, "%s/pbn/counter_last.h5", dir);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert_int_ge(f, 0);
    nbt_sum a = {0, 0};
    H5Lvisit(f, H5_INDEX_NAME, H5_ITER_INC, nbt_visit, &a);
    H5Fclose(f);
    ck_assert_int_gt(a.n, 5);
    ck_assert_msg(a.sum == 3.0 * a.n, "num_batches_tracked sum %g over %d layers", a.sum, a.n);
    FILE *devnull = fopen("/dev/null", "w");
    ck_assert_msg(evaluate_run(&c, 2, NULL, NULL, NULL, devnull, &st) == 0, "%s", st.msg);
    fclose(devnull);
}
END_TEST

/* Open run `run`'s run.h5 (under the test directory) into rl. */
static void run_log_open(const char *run, runlog *rl)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s/run.h5", dir, run);
    cc_status st;
    status_clear(&st);
    ck_assert_msg(runlog_open(rl, path, &st) == 0, "%s", st.msg);
}

/* The counter's mean training loss of its last epoch (run.h5 "metrics"). */
static double last_counter_train_loss(const char *run)
{
    runlog rl;
    run_log_open(run, &rl);
    runlog_table *m = runlog_table_find(&rl, "metrics");
    ck_assert_ptr_nonnull(m);
    double loss = NAN;
    for (size_t r = 0; r < m->nrows; r++) {
        const double *v = m->values + r * (size_t)m->ncols;
        if (v[MC_STAGE] == 1 && v[MC_SPLIT] == DATASET_TRAIN) loss = v[MC_LOSS];
    }
    runlog_free(&rl);
    return loss;
}

/* Run `run`'s table `loc` (evaluate's GAME, src/infer/localise.h) against
 * its evaluation table `ev`: the same images overall, GAME(0) the count's
 * MAE (a density counter's count is its map's sum), no finer grid below a
 * coarser one; returns the number of rows of loc (0: emptied). */
static size_t check_localisation(const char *run, const char *ev, const char *loc)
{
    runlog rl;
    run_log_open(run, &rl);
    runlog_table *l = runlog_table_find(&rl, loc), *e = runlog_table_find(&rl, ev);
    ck_assert_msg(l && e, "%s: tables %s and %s", run, loc, ev);
    const size_t rows = l->nrows;
    if (rows) {
        ck_assert_str_eq(l->labels[0], "overall");
        ck_assert_str_eq(e->labels[0], "overall");
        const double n = l->values[runlog_col(l, "n")], mae = e->values[runlog_col(e, "mae")];
        ck_assert_double_eq(n, e->values[runlog_col(e, "n")]);
        double g[4];
        for (int L = 0; L < 4; L++) {
            char col[8];
            snprintf(col, sizeof col, "game%d", L);
            ck_assert_int_ge(runlog_col(l, col), 0);
            g[L] = l->values[runlog_col(l, col)];
        }
        ck_assert_msg(fabs(g[0] - mae) <= 1e-4 * (1 + mae), "GAME(0) %g, MAE %g", g[0], mae);
        for (int L = 1; L < 4; L++) ck_assert_msg(g[L] >= g[L - 1] - 1e-9, "GAME %d: %g < %g", L, g[L], g[L - 1]);
        /* the last row weights every count equally, as evaluate's */
        ck_assert_str_eq(l->labels[rows - 1], "count-balanced");
        ck_assert_str_eq(e->labels[e->nrows - 1], "count-balanced");
        const double *lb = l->values + (rows - 1) * l->ncols, *eb = e->values + (e->nrows - 1) * e->ncols;
        const double g0 = lb[runlog_col(l, "game0")], bmae = eb[runlog_col(e, "mae")];
        ck_assert_msg(fabs(g0 - bmae) <= 1e-4 * (1 + bmae), "balanced GAME(0) %g, MAE %g", g0, bmae);
        ck_assert_double_eq(lb[runlog_col(l, "n")], eb[runlog_col(e, "n")]);
    }
    runlog_free(&rl);
    return rows;
}

/* counter.density_weight: a vgg11_density counter supervised by the
 * simulated cells' centres trains and evaluates; the term is in its loss
 * (a large weight makes the logged loss much larger than the same run
 * without it); and the setting is refused, naming why, for a counter
 * without a density map and for a data set without centres. */
START_TEST(test_counter_density_supervised)
{
    make_data();
    cc_config c;
    tiny_config(&c, "dens0", 1);
    config_set(&c, "counter.arch=vgg11_density", NULL);
    config_set(&c, "counter_train.epochs=1", NULL);
    cc_status st;
    status_clear(&st);
    ck_assert_msg(train_fpn(&c, 0, &st) == 0, "%s", st.msg);
    char fpn[256];
    snprintf(fpn, sizeof fpn, "%s/dens0/fpn_best.h5", dir);
    ck_assert_msg(train_counter(&c, NULL, 0, &st) == 0, "%s", st.msg);
    const double plain = last_counter_train_loss("dens0");
    tiny_config(&c, "dens1", 1);
    config_set(&c, "counter.arch=vgg11_density", NULL);
    config_set(&c, "counter_train.epochs=1", NULL);
    config_set(&c, "counter.density_weight=1000", NULL);
    ck_assert_msg(train_counter(&c, fpn, 0, &st) == 0, "%s", st.msg);
    const double sup = last_counter_train_loss("dens1");
    ck_assert_msg(isfinite(plain) && isfinite(sup) && sup > plain + 100,
                  "train loss %g with the density term, %g without", sup, plain);
    FILE *devnull = fopen("/dev/null", "w");
    ck_assert_msg(evaluate_run(&c, 2, fpn, NULL, NULL, devnull, &st) == 0, "%s", st.msg);
    /* and where its map puts the count, on a set with centres: GAME */
    ck_assert_msg(evaluate_on_run(&c, data, 2, 0, fpn, NULL, NULL, devnull, &st) == 0, "%s",
                  st.msg);
    char on[160];
    const char *base = strrchr(data, '/') ? strrchr(data, '/') + 1 : data;
    snprintf(on, sizeof on, "%.*s-test", (int)(strlen(base) - 3), base);   /* "<name>.h5" */
    char ev_on[200], loc_on[200];
    snprintf(ev_on, sizeof ev_on, "eval_on/%s", on);
    snprintf(loc_on, sizeof loc_on, "game_on/%s", on);
    ck_assert_uint_ge(check_localisation("dens1", "eval/test", "game/test"), 2);
    ck_assert_uint_ge(check_localisation("dens1", ev_on, loc_on), 2);
    const cc_config dens1 = c;

    tiny_config(&c, "dens2", 1);
    config_set(&c, "counter.density_weight=1", NULL);    /* vgg11: no map */
    ck_assert_int_eq(train_counter(&c, fpn, 0, &st), -1);
    ck_assert_msg(strstr(st.msg, "vgg11_density") && strstr(st.msg, "density_weight"), "%s", st.msg);

    hid_t f = H5Fopen(data, H5F_ACC_RDWR, H5P_DEFAULT);
    ck_assert(f >= 0 && H5Ldelete(f, "centres", H5P_DEFAULT) >= 0);
    H5Fclose(f);
    tiny_config(&c, "dens3", 1);
    config_set(&c, "counter.arch=vgg11_density", NULL);
    config_set(&c, "counter.density_weight=1", NULL);
    status_clear(&st);
    ck_assert_int_eq(train_counter(&c, fpn, 0, &st), -1);
    ck_assert_msg(strstr(st.msg, data) && strstr(st.msg, "no cell centres"), "%s", st.msg);
    /* evaluated again without centres: no GAME, and the old tables emptied */
    ck_assert_msg(evaluate_run(&dens1, 2, fpn, NULL, NULL, devnull, &st) == 0, "%s", st.msg);
    ck_assert_msg(evaluate_on_run(&dens1, data, 2, 0, fpn, NULL, NULL, devnull, &st) == 0, "%s",
                  st.msg);
    ck_assert_uint_eq(check_localisation("dens1", "eval/test", "game/test"), 0);
    ck_assert_uint_eq(check_localisation("dens1", ev_on, loc_on), 0);
    fclose(devnull);
}
END_TEST

/* train_ema_update is the hand-computed exponential average, with the
 * warm-up min(decay, (1 + step) / (10 + step)); buffers are not averaged;
 * train_ema_init copies values, buffers and frozen flags. */
START_TEST(test_ema_update_is_the_average)
{
    cc_ctx ctx;
    ck_assert_int_eq(ctx_init(&ctx, 1, NULL), 0);
    cc_params P, E;
    params_init(&P, &ctx);
    cc_status st;
    status_clear(&st);
    ck_assert(params_add(&P, "a/weight", 1, (int64_t[]){5}, PARAM_TRAINABLE, &st) >= 0);
    ck_assert(params_add(&P, "a/running_mean", 1, (int64_t[]){3}, PARAM_BUFFER, &st) >= 0);
    ck_assert(params_add(&P, "b/weight", 2, (int64_t[]){2, 2}, PARAM_TRAINABLE, &st) >= 0);
    ck_assert_int_eq(params_finalize(&P, &st), 0);
    P.p[2].frozen = 1;
    float *w = params_tensor(&P, 0)->data, *rm = params_tensor(&P, 1)->data;
    for (int k = 0; k < 5; k++) w[k] = (float)k;
    for (int k = 0; k < 3; k++) rm[k] = 7.0f;
    ck_assert_msg(train_ema_init(&E, &P, &st) == 0, "%s", st.msg);
    ck_assert_int_eq(E.n, 3);
    ck_assert_int_eq(E.p[2].frozen, 1);
    ck_assert(memcmp(E.value, P.value, sizeof(float) * P.n_train) == 0);
    ck_assert(memcmp(E.buf, P.buf, sizeof(float) * P.n_buf) == 0);
    /* step 1: warm-up decay 2/11; step 1000: the decay itself */
    double want[5];
    for (int k = 0; k < 5; k++) {
        want[k] = k;
        w[k] = (float)(10 * k + 1);
    }
    for (int k = 0; k < 3; k++) rm[k] = -1.0f;
    train_ema_update(&E, &P, 0.9, 1);
    const float *e = params_tensor(&E, 0)->data;
    for (int k = 0; k < 5; k++) {
        want[k] = (2.0 / 11) * want[k] + (9.0 / 11) * (10 * k + 1);
        ck_assert_msg(fabs(e[k] - want[k]) <= 1e-5 * (1 + fabs(want[k])), "%d: %g vs %g", k,
                      e[k], want[k]);
    }
    for (int k = 0; k < 5; k++) w[k] = (float)(-3 * k);
    train_ema_update(&E, &P, 0.9, 1000);
    for (int k = 0; k < 5; k++) {
        want[k] = 0.9 * want[k] + 0.1 * (-3 * k);
        ck_assert_msg(fabs(e[k] - want[k]) <= 1e-5 * (1 + fabs(want[k])), "%d: %g vs %g", k,
                      e[k], want[k]);
    }
    for (int k = 0; k < 3; k++) ck_assert(params_tensor(&E, 1)->data[k] == 7.0f);
    params_free(&E);
    params_free(&P);
    ctx_free(&ctx);
}
END_TEST

/* A counter parameter store for tiny_config's counter (64x64 images). */
static void counter_params(const cc_config *c, const char *path, cc_params *P, cc_ctx *ctx,
                           counter_model *m)
{
    params_init(P, ctx);
    counter_config cc = counter_config_default();
    snprintf(cc.arch, sizeof cc.arch, "%s", c->counter_arch);
    cc.in_channels = 1;
    cc.width_div = c->counter_width_div;
    cc.height = 32;
    cc.width = 32;
    ck_assert_int_eq(counter_build(P, &cc, "counter", m, NULL), 0);
    ck_assert_int_eq(params_finalize(P, NULL), 0);
    cc_status st;
    status_clear(&st);
    ck_assert_msg(checkpoint_load(path, P, NULL, &st) == 0, "%s", st.msg);
}

/* Two checkpoints of the counter hold bit-identical weights and buffers. */
static int same_counter(const cc_config *c, const char *pa, const char *pb)
{
    cc_ctx ctx;
    ck_assert_int_eq(ctx_init(&ctx, 1, NULL), 0);
    cc_params A, B;
    counter_model ma, mb;
    counter_params(c, pa, &A, &ctx, &ma);
    counter_params(c, pb, &B, &ctx, &mb);
    int same = A.n_train == B.n_train && A.n_buf == B.n_buf &&
               !memcmp(A.value, B.value, sizeof(float) * A.n_train) &&
               !memcmp(A.buf, B.buf, sizeof(float) * A.n_buf);
    counter_free(&ma);
    counter_free(&mb);
    params_free(&A);
    params_free(&B);
    ctx_free(&ctx);
    return same;
}

/* counter.ema: a run killed with SIGKILL after its first epoch and resumed
 * ends with the same live weights, average and best checkpoint, bit for
 * bit, as an uninterrupted one; the best checkpoint is the average (with
 * BN statistics of precise_bn batches), not the live weights. */
START_TEST(test_counter_ema_resume_is_exact)
{
    make_data();
    cc_config a, b;
    tiny_config(&a, "emafull", 1);
    tiny_config(&b, "emakill", 1);
    const char *keys[] = {"counter.ema=0.9", "counter.precise_bn=2", "counter_train.epochs=4"};
    for (int k = 0; k < 3; k++) {
        ck_assert_int_eq(config_set(&a, keys[k], NULL), 0);
        ck_assert_int_eq(config_set(&b, keys[k], NULL), 0);
    }
    cc_status st;
    status_clear(&st);
    ck_assert_msg(train_fpn(&a, 0, &st) == 0, "%s", st.msg);
    char fpn[256], last[256], pa[256], pb[256];
    snprintf(fpn, sizeof fpn, "%s/emafull/fpn_best.h5", dir);
    ck_assert_msg(train_counter(&a, fpn, 0, &st) == 0, "%s", st.msg);

    snprintf(last, sizeof last, "%s/emakill/counter_last.h5", dir);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        cc_status cs;
        status_clear(&cs);
        _exit(train_counter(&b, fpn, 0, &cs) ? 1 : 0);
    }
    while (access(last, F_OK) != 0) {
        int status;
        ck_assert_msg(waitpid(pid, &status, WNOHANG) == 0, "training ended before the kill");
        usleep(2000);
    }
    usleep(20000);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    ck_assert(WIFSIGNALED(status));
    double epoch;
    ck_assert_int_eq(checkpoint_read_attr_double(last, "epoch", &epoch, &st), 0);
    ck_assert_msg(epoch < 3, "the kill came too late (epoch %g)", epoch);
    ck_assert_msg(train_counter(&b, fpn, 1, &st) == 0, "%s", st.msg);

    static const char *const files[] = {"counter_last.h5", "counter_ema_1.h5",
                                        "counter_ema_0.h5", "counter_best.h5"};
    for (int k = 0; k < 4; k++) {
        snprintf(pa, sizeof pa, "%s/emafull/%s", dir, files[k]);
        snprintf(pb, sizeof pb, "%s/emakill/%s", dir, files[k]);
        ck_assert_msg(same_counter(&a, pa, pb), "%s differs after the resume", files[k]);
    }
    /* the average is not the live weights; its statistics are precise BN's */
    snprintf(pa, sizeof pa, "%s/emafull/counter_last.h5", dir);
    snprintf(pb, sizeof pb, "%s/emafull/counter_ema_1.h5", dir);
    ck_assert(!same_counter(&a, pa, pb));
    snprintf(pb, sizeof pb, "%s/emafull/counter_best.h5", dir);
    hid_t f = H5Fopen(pb, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert_int_ge(f, 0);
    nbt_sum s = {0, 0};
    H5Lvisit(f, H5_INDEX_NAME, H5_ITER_INC, nbt_visit, &s);
    H5Fclose(f);
    ck_assert_int_gt(s.n, 5);
    ck_assert_msg(s.sum == 2.0 * s.n, "num_batches_tracked sum %g over %d layers", s.sum, s.n);
    /* evaluate reads the averaged best checkpoint */
    FILE *devnull = fopen("/dev/null", "w");
    ck_assert_msg(evaluate_run(&a, 2, NULL, NULL, NULL, devnull, &st) == 0, "%s", st.msg);
    fclose(devnull);
}
END_TEST

/* Weights equal (w), buffers equal (b): which parts of two counter
 * checkpoints are bit-identical. */
static void counter_parts_same(const cc_config *c, const char *pa, const char *pb, int *w, int *b)
{
    cc_ctx ctx;
    ck_assert_int_eq(ctx_init(&ctx, 1, NULL), 0);
    cc_params A, B;
    counter_model ma, mb;
    counter_params(c, pa, &A, &ctx, &ma);
    counter_params(c, pb, &B, &ctx, &mb);
    *w = !memcmp(A.value, B.value, sizeof(float) * A.n_train);
    *b = !memcmp(A.buf, B.buf, sizeof(float) * A.n_buf);
    counter_free(&ma);
    counter_free(&mb);
    params_free(&A);
    params_free(&B);
    ctx_free(&ctx);
}

/* counter.freeze_bn = 1: at the start of the second epoch the live
 * weights' BN statistics are re-estimated (precise BN: num_batches_tracked
 * reads precise_bn's 2) and given to the average; after that they never
 * move, while the weights do.  A 2-epoch run continued to 3 epochs ends
 * bit-identical to a 3-epoch run (the frozen statistics come back from the
 * checkpoints). */
START_TEST(test_counter_freeze_bn)
{
    /* the warm-up's rates: lr/4, 2lr/4, 3lr/4, lr, then lr */
    const float want[] = {0.25e-3f, 0.5e-3f, 0.75e-3f, 1e-3f, 1e-3f, 1e-3f};
    for (int i = 0; i < 6; i++)
        ck_assert_float_eq_tol(train_warmup_lr(1e-3f, i, 4), want[i], 1e-10);
    ck_assert_float_eq(train_warmup_lr(1e-3f, 0, 0), 1e-3f);
    make_data();
    cc_config a, b;
    tiny_config(&a, "frz3", 1);
    tiny_config(&b, "frz2", 1);
    /* with a warm-up over 1.5 epochs after the freeze (epochs 2 and half
     * of 3), so that the continuation below starts inside it */
    const char *keys[] = {"counter.ema=0.9", "counter.precise_bn=2", "counter.freeze_bn=1",
                          "counter_train.epochs=3", "counter.freeze_warmup=1.5"};
    for (int k = 0; k < 5; k++) {
        ck_assert_int_eq(config_set(&a, keys[k], NULL), 0);
        ck_assert_int_eq(config_set(&b, keys[k], NULL), 0);
    }
    ck_assert_int_eq(config_set(&b, "counter_train.epochs=2", NULL), 0);
    cc_status st;
    status_clear(&st);
    ck_assert_msg(train_fpn(&a, 0, &st) == 0, "%s", st.msg);
    char fpn[256], pa[256], pb[256];
    snprintf(fpn, sizeof fpn, "%s/frz3/fpn_best.h5", dir);
    ck_assert_msg(train_counter(&a, fpn, 0, &st) == 0, "%s", st.msg);
    ck_assert_msg(train_counter(&b, fpn, 0, &st) == 0, "%s", st.msg);
    int w, bf;
    snprintf(pa, sizeof pa, "%s/frz3/counter_last.h5", dir);
    snprintf(pb, sizeof pb, "%s/frz2/counter_last.h5", dir);
    counter_parts_same(&a, pa, pb, &w, &bf);
    ck_assert_msg(!w && bf, "epoch 2 -> 3: weights %s, BN statistics %s", w ? "same" : "moved",
                  bf ? "same" : "moved");
    hid_t f = H5Fopen(pa, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert_int_ge(f, 0);
    nbt_sum n = {0, 0};
    H5Lvisit(f, H5_INDEX_NAME, H5_ITER_INC, nbt_visit, &n);
    H5Fclose(f);
    ck_assert_int_gt(n.n, 5);
    ck_assert_msg(n.sum == 2.0 * n.n, "num_batches_tracked sum %g over %d layers", n.sum, n.n);
    /* the average (kept as best) uses the live weights' frozen statistics */
    snprintf(pb, sizeof pb, "%s/frz3/counter_ema_0.h5", dir);
    counter_parts_same(&a, pa, pb, &w, &bf);
    ck_assert_msg(!w && bf, "average vs live: weights %s, BN statistics %s",
                  w ? "same" : "differ", bf ? "same" : "differ");
    /* the warm-up moved the weights differently from no warm-up */
    cc_config nw = b;
    snprintf(nw.out_dir, sizeof nw.out_dir, "%s/frz2nw", dir);
    ck_assert_int_eq(config_set(&nw, "counter.freeze_warmup=0", NULL), 0);
    ck_assert_msg(train_counter(&nw, fpn, 0, &st) == 0, "%s", st.msg);
    snprintf(pa, sizeof pa, "%s/frz2nw/counter_last.h5", dir);
    snprintf(pb, sizeof pb, "%s/frz2/counter_last.h5", dir);
    counter_parts_same(&a, pa, pb, &w, &bf);
    ck_assert_msg(!w && bf, "warm-up vs none after 2 epochs: weights %s, BN statistics %s",
                  w ? "same" : "differ", bf ? "same" : "differ");
    /* continue the 2-epoch run to 3 */
    ck_assert_int_eq(config_set(&b, "counter_train.epochs=3", NULL), 0);
    ck_assert_msg(train_counter(&b, fpn, 1, &st) == 0, "%s", st.msg);
    static const char *const files[] = {"counter_last.h5", "counter_ema_1.h5",
                                        "counter_ema_0.h5", "counter_best.h5"};
    for (int k = 0; k < 4; k++) {
        snprintf(pa, sizeof pa, "%s/frz3/%s", dir, files[k]);
        snprintf(pb, sizeof pb, "%s/frz2/%s", dir, files[k]);
        ck_assert_msg(same_counter(&a, pa, pb), "%s differs after the continuation", files[k]);
    }
    /* refused beside finetune_fpn, which re-runs the FPN */
    ck_assert_int_eq(config_set(&a, "counter.ema=0", NULL), 0);
    ck_assert_int_eq(config_set(&a, "counter.precise_bn=0", NULL), 0);
    ck_assert_int_eq(config_set(&a, "counter.finetune_fpn=true", NULL), 0);
    ck_assert_int_eq(config_validate(&a, &st), -1);
    ck_assert_msg(strstr(st.msg, "freeze_bn"), "%s", st.msg);
}
END_TEST


/* Overwrite every mask of the data file with NaN (a corrupt float data set). */
/* Replace /images by float32 NaNs (a data set may store float images;
 * masks would be refused on load, images are not range-checked). */
static void poison_images(void)
{
    hid_t f = H5Fopen(data, H5F_ACC_RDWR, H5P_DEFAULT);
    ck_assert_int_ge(f, 0);
    hid_t d = H5Dopen2(f, "images", H5P_DEFAULT);
    ck_assert_int_ge(d, 0);
    hid_t fsp = H5Dget_space(d);
    hsize_t dims[4];
    ck_assert_int_eq(H5Sget_simple_extent_dims(fsp, dims, NULL), 4);
    H5Sclose(fsp);
    hid_t sp = H5Screate_simple(4, dims, NULL);    /* fixed size: no chunking needed */
    H5Dclose(d);
    ck_assert_int_ge(H5Ldelete(f, "images", H5P_DEFAULT), 0);
    d = H5Dcreate2(f, "images", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_ge(d, 0);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    ck_assert_int_gt(n, 0);
    float *v = malloc((size_t)n * sizeof *v);
    ck_assert_ptr_nonnull(v);
    for (hssize_t i = 0; i < n; i++) v[i] = NAN;
    ck_assert_int_ge(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v), 0);
    free(v);
    H5Sclose(sp);
    H5Dclose(d);
    H5Fclose(f);
}

/* A loss that turns non-finite stops the run with a message naming the
 * epoch and step, and the checkpoint of the last completed epoch stays as it
 * was: one good epoch, then the data file's images become NaN and the run is
 * resumed. */
START_TEST(test_nonfinite_loss_stops_and_keeps_checkpoint)
{
    make_data();
    cc_config c;
    tiny_config(&c, "nan", 1);
    cc_status st;
    status_clear(&st);
    ck_assert_msg(train_fpn(&c, 0, &st) == 0, "%s", st.msg);
    char last[256], cmd[600];
    snprintf(last, sizeof last, "%s/nan/fpn_last.h5", dir);
    snprintf(cmd, sizeof cmd, "cp %s %s.good", last, last);
    ck_assert_int_eq(system(cmd), 0);
    config_set(&c, "fpn_train.epochs=3", NULL);
    poison_images();
    status_clear(&st);
    ck_assert_int_eq(train_fpn(&c, 1, &st), -1);
    ck_assert_msg(strstr(st.msg, "FPN loss is") && strstr(st.msg, "last good checkpoint"), "%s",
                  st.msg);
    /* Every checkpoint left is finite and the run file still opens. */
    cc_ctx ctx;
    ck_assert_int_eq(ctx_init(&ctx, 1, NULL), 0);
    cc_params P;
    fpn_model m;
    load_params(&c, last, &P, &ctx, &m);
    for (size_t i = 0; i < P.n_train; i++) ck_assert_msg(isfinite(P.value[i]), "weight %zu", i);
    params_free(&P);
    ctx_free(&ctx);
    /* The failure struck during the first resumed epoch (the loss is -inf or
     * NaN from its first large steps), so the last checkpoint is the good one. */
    ck_assert_msg(strstr(st.msg, "epoch 2 step 1"), "%s", st.msg);
    snprintf(cmd, sizeof cmd, "cmp -s %s %s.good", last, last);
    ck_assert_int_eq(system(cmd), 0);
    char path[256];
    snprintf(path, sizeof path, "%s/nan/run.h5", dir);
    runlog rl;
    ck_assert_msg(runlog_open(&rl, path, &st) == 0, "%s", st.msg);
    runlog_free(&rl);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("train");
    TCase *tc = tcase_create("train");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_fpn_learns_and_logs);
    tcase_add_test(tc, test_resume_after_sigkill_is_exact);
    tcase_add_test(tc, test_resume_on_other_thread_count_is_exact);
    train_add_eval_tests(tc);
    tcase_add_test(tc, test_bad_inputs_fail_cleanly);
    tcase_add_test(tc, test_counter_precise_bn);
    tcase_add_test(tc, test_counter_density_supervised);
    tcase_add_test(tc, test_ema_update_is_the_average);
    tcase_add_test(tc, test_counter_ema_resume_is_exact);
    tcase_add_test(tc, test_counter_freeze_bn);
    tcase_add_test(tc, test_nonfinite_loss_stops_and_keeps_checkpoint);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
