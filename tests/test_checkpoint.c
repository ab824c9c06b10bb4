/* test_checkpoint.c - HDF5 checkpoints: round trips and refusals (atomicity
 * in test_checkpoint_atomic.c), and the fixtures both files use. */
#include <check.h>
#include <dirent.h>
#include <ftw.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "autodiff/optim.h"
#include "autodiff/params.h"
#include "autodiff/rng.h"
#include "src/run/checkpoint.h"
#include "tests/checkpointutil.h"
#include "tests/testmain.h"

/* ---- fixtures (checkpointutil.h) ------------------------------------ */

/* A small model in the real naming scheme: conv (4-D), linear (2-D),
 * biases and BatchNorm affine (1-D), BatchNorm buffers. */
const spec BASE[N_BASE] = {
    {"fpn/stem/conv/weight", 4, {1, 3, 3, 3}, PARAM_TRAINABLE},
    {"fpn/stem/conv/bias", 1, {1}, PARAM_TRAINABLE},
    {"fpn/stem/bn/weight", 1, {1}, PARAM_TRAINABLE},
    {"fpn/stem/bn/bias", 1, {1}, PARAM_TRAINABLE},
    {"fpn/stem/bn/running_mean", 1, {1}, PARAM_BUFFER},
    {"fpn/stem/bn/running_var", 1, {1}, PARAM_BUFFER},
    {"fpn/stem/bn/num_batches_tracked", 1, {1}, PARAM_BUFFER},
    {"fpn/heads/mean/3/conv1/weight", 4, {4, 2, 3, 3}, PARAM_TRAINABLE},
    {"counter/count/0/weight", 2, {5, 7}, PARAM_TRAINABLE},
    {"counter/count/0/bias", 1, {5}, PARAM_TRAINABLE},
    {"counter/count/1/weight", 1, {5}, PARAM_TRAINABLE},
    {"counter/count/1/bias", 1, {5}, PARAM_TRAINABLE},
    {"counter/count/1/running_mean", 1, {5}, PARAM_BUFFER},
    {"counter/count/1/running_var", 1, {5}, PARAM_BUFFER},
    {"counter/count/1/num_batches_tracked", 1, {1}, PARAM_BUFFER},
};

void store_build(fixture *f, const spec *s, int n)
{
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(ctx_init(&f->ctx, 1, &st), 0);
    params_init(&f->P, &f->ctx);
    for (int i = 0; i < n; i++)
        ck_assert_msg(params_add(&f->P, s[i].name, s[i].ndim, s[i].shape, s[i].kind, &st) >= 0,
                      "%s", st.msg);
    ck_assert_int_eq(params_finalize(&f->P, &st), 0);
}

void store_free(fixture *f)
{
    params_free(&f->P);
    ctx_free(&f->ctx);
}

/* Random contents in every slab, only inside tensors (padding stays 0). */
void store_fill(cc_params *P, uint64_t seed)
{
    cc_rng r;
    rng_seed(&r, seed, 0);
    for (int i = 0; i < P->n; i++) {
        const cc_param *p = &P->p[i];
        for (size_t k = 0; k < p->numel; k++) {
            size_t o = p->offset + k;
            if (p->kind == PARAM_BUFFER) {
                P->buf[o] = (float)rng_range(&r, -3, 3);
                /* a variance is never negative: load refuses one */
                if (strstr(p->name, "running_var")) P->buf[o] = fabsf(P->buf[o]);
                continue;
            }
            P->value[o] = (float)rng_range(&r, -1, 1);
            P->grad[o] = (float)rng_range(&r, -1, 1);
            P->m[o] = (float)rng_range(&r, -0.1, 0.1);
            P->v[o] = (float)rng_range(&r, 0, 0.01);
        }
    }
}

float *dup_floats(const float *x, size_t n)
{
    float *y = malloc(sizeof(float) * (n ? n : 1));
    ck_assert_ptr_nonnull(y);
    memcpy(y, x, sizeof(float) * n);
    return y;
}

snap snap_take(const cc_params *P)
{
    snap s = {dup_floats(P->value, P->n_train), dup_floats(P->grad, P->n_train),
              dup_floats(P->m, P->n_train), dup_floats(P->v, P->n_train),
              dup_floats(P->buf, P->n_buf)};
    return s;
}

void snap_free(snap *s)
{
    free(s->value); free(s->grad); free(s->m); free(s->v); free(s->buf);
}

int same(const float *a, const float *b, size_t n) { return !memcmp(a, b, sizeof(float) * n); }

int optim_same(const cc_optim *a, const cc_optim *b)
{
    return a->kind == b->kind && !memcmp(&a->lr, &b->lr, sizeof(float)) &&
           !memcmp(&a->beta1, &b->beta1, sizeof(float)) &&
           !memcmp(&a->beta2, &b->beta2, sizeof(float)) &&
           !memcmp(&a->eps, &b->eps, sizeof(float)) &&
           !memcmp(&a->momentum, &b->momentum, sizeof(float)) &&
           !memcmp(&a->weight_decay, &b->weight_decay, sizeof(float)) && a->step == b->step;
}

/* One directory per test case, made and removed in the parent process
 * (unchecked fixture) so a failing test still leaves nothing behind;
 * tests use distinct file names inside it. */
char g_dir[64];

void dir_setup(void)
{
    strcpy(g_dir, "/tmp/test_checkpoint_XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("test_checkpoint: mkdtemp");
        exit(EXIT_FAILURE);
    }
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

void dir_teardown(void)
{
    chmod(g_dir, 0700);
    nftw(g_dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

void path_in(char *out, size_t len, const char *name)
{
    snprintf(out, len, "%s/%s", g_dir, name);
}

/* Entries in dir whose name contains ".tmp." */
int count_tmp(const char *dir)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

char *file_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

void file_write(const char *path, const char *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fwrite(b, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

const ckpt_attr ATTRS[N_ATTRS] = {
    {"model", CKPT_ATTR_STRING, "fpn", 0},
    {"data", CKPT_ATTR_STRING, "/data/bbbc005 train.h5", 0},
    {"lr", CKPT_ATTR_NUMBER, NULL, 1e-3},
    {"batch", CKPT_ATTR_NUMBER, NULL, 2},
    {"tv_weight", CKPT_ATTR_NUMBER, NULL, 1e-6},
};

/* Save BASE (seed 1) with optimizer o to path. */
void save_base(const char *path, cc_optim *o, fixture *a)
{
    cc_status st;
    status_clear(&st);
    store_build(a, BASE, N_BASE);
    store_fill(&a->P, 1);
    ck_assert_msg(checkpoint_save(path, &a->P, o, ATTRS, N_ATTRS, &st) == 0, "%s", st.msg);
}

/* ---- round trips ----------------------------------------------------- */

START_TEST(test_adam_roundtrip)
{
    char path[256];
    path_in(path, sizeof path, "adam.h5");
    fixture a, b;
    cc_optim oa, ob;
    optim_adam_init(&oa, 1e-3f, 0.9f, 0.999f, 1e-8f, 1e-4f);
    oa.step = 17;
    save_base(path, &oa, &a);
    ck_assert_int_eq(count_tmp(g_dir), 0);

    store_build(&b, BASE, N_BASE);
    store_fill(&b.P, 2);
    snap before = snap_take(&b.P);
    ck_assert(!same(b.P.value, a.P.value, b.P.n_train));
    optim_adam_init(&ob, 0.5f, 0.1f, 0.2f, 0.3f, 0.4f);
    cc_status st;
    status_clear(&st);
    ck_assert_msg(checkpoint_load(path, &b.P, &ob, &st) == 0, "%s", st.msg);
    ck_assert(same(b.P.value, a.P.value, a.P.n_train));
    ck_assert(same(b.P.m, a.P.m, a.P.n_train));
    ck_assert(same(b.P.v, a.P.v, a.P.n_train));
    ck_assert(same(b.P.buf, a.P.buf, a.P.n_buf));
    ck_assert(same(b.P.grad, before.grad, b.P.n_train));   /* gradients are not state */
    ck_assert(optim_same(&ob, &oa));
    ck_assert_int_eq(ob.step, 17);

    /* Loading without an optimizer restores parameters and ignores /optim. */
    store_fill(&b.P, 3);
    snap b3 = snap_take(&b.P);
    ck_assert_msg(checkpoint_load(path, &b.P, NULL, &st) == 0, "%s", st.msg);
    ck_assert(same(b.P.value, a.P.value, a.P.n_train));
    ck_assert(same(b.P.buf, a.P.buf, a.P.n_buf));
    ck_assert(same(b.P.m, b3.m, b.P.n_train));

    /* An SGD optimizer cannot resume Adam state. */
    cc_optim os;
    optim_sgd_init(&os, 0.1f, 0.9f, 0);
    cc_optim os0 = os;
    ck_assert_int_eq(checkpoint_load(path, &b.P, &os, &st), -1);
    ck_assert_msg(strstr(st.msg, "adam") && strstr(st.msg, "sgd") && strstr(st.msg, path), "%s",
                  st.msg);
    ck_assert(optim_same(&os, &os0));
    snap_free(&before);
    snap_free(&b3);
    store_free(&a);
    store_free(&b);
}
END_TEST

START_TEST(test_sgd_roundtrip)
{
    char path[256];
    path_in(path, sizeof path, "sgd.h5");
    fixture a, b;
    cc_optim oa, ob;
    optim_sgd_init(&oa, 0.05f, 0.9f, 5e-4f);
    oa.step = 17;
    save_base(path, &oa, &a);
    store_build(&b, BASE, N_BASE);
    store_fill(&b.P, 2);
    snap before = snap_take(&b.P);
    optim_sgd_init(&ob, 1, 0, 0);
    cc_status st;
    status_clear(&st);
    ck_assert_msg(checkpoint_load(path, &b.P, &ob, &st) == 0, "%s", st.msg);
    ck_assert(same(b.P.value, a.P.value, a.P.n_train));
    ck_assert(same(b.P.m, a.P.m, a.P.n_train));
    ck_assert(same(b.P.buf, a.P.buf, a.P.n_buf));
    ck_assert(same(b.P.v, before.v, b.P.n_train));  /* SGD has no second moment */
    ck_assert(optim_same(&ob, &oa));
    ck_assert_int_eq(ob.step, 17);

    cc_optim oadam;
    optim_adam_init(&oadam, 1e-3f, 0.9f, 0.999f, 1e-8f, 0);
    status_clear(&st);
    ck_assert_int_eq(checkpoint_load(path, &b.P, &oadam, &st), -1);
    ck_assert_msg(strstr(st.msg, "'sgd'"), "%s", st.msg);
    snap_free(&before);
    store_free(&a);
    store_free(&b);
}
END_TEST

START_TEST(test_no_optimizer_state)
{
    char path[256];
    path_in(path, sizeof path, "noopt.h5");
    fixture a, b;
    save_base(path, NULL, &a);
    store_build(&b, BASE, N_BASE);
    cc_status st;
    status_clear(&st);
    ck_assert_msg(checkpoint_load(path, &b.P, NULL, &st) == 0, "%s", st.msg);
    ck_assert(same(b.P.value, a.P.value, a.P.n_train));
    store_fill(&b.P, 5);
    snap before = snap_take(&b.P);
    cc_optim o;
    optim_adam_init(&o, 1e-3f, 0.9f, 0.999f, 1e-8f, 0);
    ck_assert_int_eq(checkpoint_load(path, &b.P, &o, &st), -1);
    ck_assert_msg(strstr(st.msg, path) && strstr(st.msg, "optimizer state"), "%s", st.msg);
    ck_assert(same(b.P.value, before.value, b.P.n_train));  /* nothing loaded */
    snap_free(&before);
    store_free(&a);
    store_free(&b);
}
END_TEST

START_TEST(test_attributes)
{
    char path[256], buf[64];
    path_in(path, sizeof path, "attrs.h5");
    fixture a;
    save_base(path, NULL, &a);
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(checkpoint_read_attr_string(path, "model", buf, sizeof buf, &st), 0);
    ck_assert_str_eq(buf, "fpn");
    ck_assert_int_eq(checkpoint_read_attr_string(path, "data", buf, sizeof buf, &st), 0);
    ck_assert_str_eq(buf, "/data/bbbc005 train.h5");
    ck_assert_int_eq(checkpoint_read_attr_string(path, "format", buf, sizeof buf, &st), 0);
    ck_assert_str_eq(buf, "cellcount-checkpoint");
    double d = -1;
    ck_assert_int_eq(checkpoint_read_attr_double(path, "lr", &d, &st), 0);
    ck_assert(d == 1e-3);
    ck_assert_int_eq(checkpoint_read_attr_double(path, "tv_weight", &d, &st), 0);
    ck_assert(d == 1e-6);
    ck_assert_int_eq(checkpoint_read_attr_double(path, "batch", &d, &st), 0);
    ck_assert(d == 2);
    ck_assert_int_eq(checkpoint_read_attr_double(path, "format_version", &d, &st), 0);
    ck_assert(d == 1);
    ck_assert_msg(!st.failed, "%s", st.msg);
    /* Absent: 1, no error.  Wrong type, too long: errors. */
    ck_assert_int_eq(checkpoint_read_attr_double(path, "nope", &d, &st), 1);
    ck_assert_int_eq(checkpoint_read_attr_string(path, "nope", buf, sizeof buf, &st), 1);
    ck_assert(!st.failed);
    ck_assert_int_eq(checkpoint_read_attr_double(path, "model", &d, &st), -1);
    ck_assert_msg(strstr(st.msg, "'model'"), "%s", st.msg);
    status_clear(&st);
    ck_assert_int_eq(checkpoint_read_attr_string(path, "lr", buf, sizeof buf, &st), -1);
    status_clear(&st);
    ck_assert_int_eq(checkpoint_read_attr_string(path, "data", buf, 5, &st), -1);
    ck_assert_msg(strstr(st.msg, "longer"), "%s", st.msg);

    /* Reserved and duplicate keys are refused before anything is written. */
    char p2[256];
    path_in(p2, sizeof p2, "bad_attrs.h5");
    ckpt_attr bad[2] = {{"format", CKPT_ATTR_STRING, "x", 0}, {"a", CKPT_ATTR_NUMBER, NULL, 1}};
    status_clear(&st);
    ck_assert_int_eq(checkpoint_save(p2, &a.P, NULL, bad, 1, &st), -1);
    ck_assert_msg(strstr(st.msg, "reserved"), "%s", st.msg);
    bad[0] = bad[1];
    status_clear(&st);
    ck_assert_int_eq(checkpoint_save(p2, &a.P, NULL, bad, 2, &st), -1);
    ck_assert_msg(strstr(st.msg, "twice"), "%s", st.msg);
    ck_assert_int_ne(access(p2, F_OK), 0);
    ck_assert_int_eq(count_tmp(g_dir), 0);
    store_free(&a);
}
END_TEST

/* ---- refusals -------------------------------------------------------- */

/* Load the Adam checkpoint of BASE into a store built from s; expect a
 * refusal whose message contains every string in want; P unchanged. */
static void expect_refused(const spec *s, int n, int with_opt, const char *const *want)
{
    char path[256];
    path_in(path, sizeof path, "base.h5");
    fixture a, b;
    cc_optim oa, ob;
    optim_adam_init(&oa, 1e-3f, 0.9f, 0.999f, 1e-8f, 0);
    oa.step = 17;
    save_base(path, &oa, &a);
    store_build(&b, s, n);
    store_fill(&b.P, 9);
    snap before = snap_take(&b.P);
    optim_adam_init(&ob, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f);
    cc_optim ob0 = ob;
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(checkpoint_load(path, &b.P, with_opt ? &ob : NULL, &st), -1);
    ck_assert_msg(strstr(st.msg, path), "message does not name the file: %s", st.msg);
    for (; *want; want++) ck_assert_msg(strstr(st.msg, *want), "no '%s' in: %s", *want, st.msg);
    ck_assert(same(b.P.value, before.value, b.P.n_train));
    ck_assert(same(b.P.m, before.m, b.P.n_train));
    ck_assert(same(b.P.v, before.v, b.P.n_train));
    ck_assert(same(b.P.buf, before.buf, b.P.n_buf));
    ck_assert(optim_same(&ob, &ob0));
    snap_free(&before);
    store_free(&a);
    store_free(&b);
}

START_TEST(test_refuse_wrong_shape)
{
    spec s[N_BASE];
    memcpy(s, BASE, sizeof s);
    s[0].shape[1] = 1;  /* stem conv on 1 channel instead of 3 */
    /* Only /params is listed: the optimizer's copies would repeat it. */
    const char *want[] = {"fpn/stem/conv/weight: file 1x3x3x3, model 1x1x3x3", "1 difference)",
                          NULL};
    expect_refused(s, N_BASE, 1, want);
    s[0].shape[1] = 3;
    s[8].ndim = 1;      /* rank differs */
    s[8].shape[0] = 35;
    const char *want2[] = {"counter/count/0/weight: file 5x7, model 35", "1 difference", NULL};
    expect_refused(s, N_BASE, 0, want2);
}
END_TEST

START_TEST(test_refuse_missing_and_extra)
{
    spec s[N_BASE + 1];
    memcpy(s, BASE, sizeof BASE);
    s[N_BASE] = (spec){"fpn/stem/conv2/weight", 4, {1, 1, 3, 3}, PARAM_TRAINABLE};
    const char *want[] = {"missing fpn/stem/conv2/weight", "1 difference)", NULL};
    expect_refused(s, N_BASE + 1, 1, want);
    /* The model lacks a buffer and a weight that the file has. */
    spec t[N_BASE];
    int n = 0;
    for (int i = 0; i < N_BASE; i++)
        if (strcmp(BASE[i].name, "fpn/stem/bn/running_var") &&
            strcmp(BASE[i].name, "counter/count/0/weight"))
            t[n++] = BASE[i];
    const char *want2[] = {"unexpected fpn/stem/bn/running_var",
                           "unexpected counter/count/0/weight", "2 differences", NULL};
    expect_refused(t, n, 1, want2);
}
END_TEST

START_TEST(test_refuse_other_architecture)
{
    /* Nothing in common: 30 missing + 15 unexpected; the message
     * shows the first ones and counts the rest. */
    spec s[30];
    char names[30][32];
    for (int i = 0; i < 30; i++) {
        snprintf(names[i], sizeof names[i], "resnet/layer%d/conv/weight", i);
        s[i] = (spec){names[i], 4, {8, 8, 3, 3}, PARAM_TRAINABLE};
    }
    const char *want[] = {"45 differences", "missing resnet/layer0/conv/weight",
                          "and 35 more", NULL};
    expect_refused(s, 30, 1, want);
}
END_TEST

START_TEST(test_refuse_optimizer_mismatch)
{
    char path[256];
    path_in(path, sizeof path, "optim.h5");
    fixture a;
    cc_optim o;
    optim_adam_init(&o, 1e-3f, 0.9f, 0.999f, 1e-8f, 0);
    o.step = 17;
    save_base(path, &o, &a);
    /* Damage the optimizer state only: drop one moment, add a stray one,
     * replace one by another shape. */
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    ck_assert_int_ge(f, 0);
    ck_assert_int_ge(H5Ldelete(f, "/optim/exp_avg_sq/counter/count/0/weight", H5P_DEFAULT), 0);
    ck_assert_int_ge(H5Ldelete(f, "/optim/exp_avg/fpn/stem/conv/bias", H5P_DEFAULT), 0);
    hsize_t dims[2] = {2, 2};
    hid_t sp = H5Screate_simple(2, dims, NULL);
    hid_t d1 = H5Dcreate2(f, "/optim/exp_avg/fpn/stem/extra", H5T_IEEE_F32LE, sp, H5P_DEFAULT,
                          H5P_DEFAULT, H5P_DEFAULT);
    hid_t d2 = H5Dcreate2(f, "/optim/exp_avg/fpn/stem/conv/bias", H5T_IEEE_F32LE, sp,
                          H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(d1 >= 0 && d2 >= 0);
    H5Dclose(d1);
    H5Dclose(d2);
    H5Sclose(sp);
    H5Fclose(f);

    store_fill(&a.P, 4);
    snap before = snap_take(&a.P);
    cc_optim ob;
    optim_adam_init(&ob, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f);
    cc_optim ob0 = ob;
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(checkpoint_load(path, &a.P, &ob, &st), -1);
    const char *want[] = {path, "3 differences",
                          "missing optim/exp_avg_sq/counter/count/0/weight",
                          "unexpected optim/exp_avg/fpn/stem/extra",
                          "optim/exp_avg/fpn/stem/conv/bias: file 2x2, model 1", NULL};
    for (const char *const *w = want; *w; w++)
        ck_assert_msg(strstr(st.msg, *w), "no '%s' in: %s", *w, st.msg);
    ck_assert(same(a.P.value, before.value, a.P.n_train));
    ck_assert(same(a.P.m, before.m, a.P.n_train));
    ck_assert(optim_same(&ob, &ob0));
    /* The parameters themselves are intact: loading without state works. */
    status_clear(&st);
    ck_assert_msg(checkpoint_load(path, &a.P, NULL, &st) == 0, "%s", st.msg);

    /* A whole state group missing. */
    f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    ck_assert_int_ge(H5Ldelete(f, "/optim/exp_avg", H5P_DEFAULT), 0);
    H5Fclose(f);
    status_clear(&st);
    ck_assert_int_eq(checkpoint_load(path, &a.P, &ob, &st), -1);
    ck_assert_msg(strstr(st.msg, "missing group /optim/exp_avg;"), "%s", st.msg);
    snap_free(&before);
    store_free(&a);
}
END_TEST

START_TEST(test_refuse_bad_files)
{
    char path[256], cut[256], junk[256], errs[256], none[256];
    path_in(path, sizeof path, "good.h5");
    path_in(cut, sizeof cut, "truncated.h5");
    path_in(junk, sizeof junk, "garbage.h5");
    path_in(errs, sizeof errs, "stderr.txt");
    path_in(none, sizeof none, "does_not_exist.h5");
    fixture a;
    cc_optim o;
    optim_adam_init(&o, 1e-3f, 0.9f, 0.999f, 1e-8f, 0);
    save_base(path, &o, &a);
    size_t n;
    char *bytes = file_read(path, &n);
    file_write(cut, bytes, n / 2);
    char g[4096];
    cc_rng r;
    rng_seed(&r, 7, 0);
    for (size_t i = 0; i < sizeof g; i++) g[i] = (char)rng_below(&r, 256);
    file_write(junk, g, sizeof g);

    /* HDF5 must not print its error stack: capture stderr meanwhile. */
    fflush(stderr);
    int saved = dup(2);
    ck_assert_ptr_nonnull(freopen(errs, "w", stderr));
    store_fill(&a.P, 4);
    snap before = snap_take(&a.P);
    const char *bad[] = {cut, junk, none};
    cc_status st[3];
    int rc[3], rl[3];
    for (int i = 0; i < 3; i++) {
        status_clear(&st[i]);
        rc[i] = checkpoint_load(bad[i], &a.P, &o, &st[i]);
        cc_status s2;
        status_clear(&s2);
        FILE *devnull = fopen("/dev/null", "w");
        rl[i] = checkpoint_list(bad[i], devnull, &s2);
        fclose(devnull);
    }
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    size_t ne;
    char *e = file_read(errs, &ne);
    ck_assert_msg(ne == 0, "HDF5 printed to stderr: %.300s", e);
    free(e);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(rc[i], -1);
        ck_assert_int_eq(rl[i], -1);
        ck_assert_msg(strstr(st[i].msg, bad[i]), "message does not name the file: %s",
                      st[i].msg);
    }
    ck_assert_msg(strstr(st[1].msg, "not an HDF5 file"), "%s", st[1].msg);
    ck_assert_msg(strstr(st[2].msg, "No such file"), "%s", st[2].msg);
    ck_assert(same(a.P.value, before.value, a.P.n_train));

    /* An HDF5 file that is not a checkpoint, and a future format version. */
    hid_t f = H5Fcreate(junk, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_ge(f, 0);
    H5Fclose(f);
    cc_status s4;
    status_clear(&s4);
    ck_assert_int_eq(checkpoint_load(junk, &a.P, NULL, &s4), -1);
    ck_assert_msg(strstr(s4.msg, "not a cellcount checkpoint") && strstr(s4.msg, junk), "%s",
                  s4.msg);
    f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    ck_assert_int_ge(f, 0);
    hid_t at = H5Aopen(f, "format_version", H5P_DEFAULT);
    int v2 = 2;
    ck_assert_int_ge(H5Awrite(at, H5T_NATIVE_INT, &v2), 0);
    H5Aclose(at);
    H5Fclose(f);
    status_clear(&s4);
    ck_assert_int_eq(checkpoint_load(path, &a.P, NULL, &s4), -1);
    ck_assert_msg(strstr(s4.msg, "format_version 2"), "%s", s4.msg);
    ck_assert(same(a.P.value, before.value, a.P.n_train));
    free(bytes);
    snap_free(&before);
    store_free(&a);
}
END_TEST

START_TEST(test_corrupt_data_loads_nothing)
{
    /* The last tensor read (an Adam moment) gets a checksum (fletcher32)
     * and then a flipped byte: every earlier tensor reads fine, this one
     * fails, and the model must still be exactly as before. */
    char path[256];
    path_in(path, sizeof path, "bitrot.h5");
    fixture a;
    cc_optim o;
    optim_adam_init(&o, 1e-3f, 0.9f, 0.999f, 1e-8f, 0);
    save_base(path, &o, &a);
    const char *victim = "/optim/exp_avg_sq/counter/count/1/bias";
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    ck_assert_int_ge(f, 0);
    ck_assert_int_ge(H5Ldelete(f, victim, H5P_DEFAULT), 0);
    hsize_t dims[1] = {5};
    hid_t sp = H5Screate_simple(1, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    ck_assert_int_ge(H5Pset_chunk(dcpl, 1, dims), 0);
    ck_assert_int_ge(H5Pset_fletcher32(dcpl), 0);
    hid_t d = H5Dcreate2(f, victim, H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    ck_assert_int_ge(d, 0);
    const float pattern[5] = {1234.5678f, 2345.6789f, 3456.7891f, 4567.8912f, 5678.9123f};
    ck_assert_int_ge(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, pattern), 0);
    H5Dclose(d);
    H5Pclose(dcpl);
    H5Sclose(sp);
    H5Fclose(f);

    /* Intact, it loads (and the checksum is really there). */
    fixture b;
    store_build(&b, BASE, N_BASE);
    cc_status st;
    status_clear(&st);
    cc_optim ob = o;
    ck_assert_msg(checkpoint_load(path, &b.P, &ob, &st) == 0, "%s", st.msg);
    store_free(&b);

    size_t n;
    char *bytes = file_read(path, &n);
    char *hit = memmem(bytes, n, pattern, sizeof pattern);
    ck_assert_ptr_nonnull(hit);
    hit[9] ^= 0x10;
    file_write(path, bytes, n);
    free(bytes);

    store_fill(&a.P, 4);
    snap before = snap_take(&a.P);
    optim_adam_init(&ob, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f);
    cc_optim ob0 = ob;
    status_clear(&st);
    ck_assert_int_eq(checkpoint_load(path, &a.P, &ob, &st), -1);
    ck_assert_msg(strstr(st.msg, path) && strstr(st.msg, "counter/count/1/bias"), "%s", st.msg);
    ck_assert(same(a.P.value, before.value, a.P.n_train));
    ck_assert(same(a.P.m, before.m, a.P.n_train));
    ck_assert(same(a.P.v, before.v, a.P.n_train));
    ck_assert(same(a.P.buf, before.buf, a.P.n_buf));
    ck_assert(optim_same(&ob, &ob0));
    snap_free(&before);
    store_free(&a);
}
END_TEST

/* ---- atomic writes --------------------------------------------------- */

static Suite *checkpoint_suite(void)
{
    Suite *s = suite_create("checkpoint");
    TCase *tc = tcase_create("roundtrip");
    tcase_add_unchecked_fixture(tc, dir_setup, dir_teardown);
    tcase_add_test(tc, test_adam_roundtrip);
    tcase_add_test(tc, test_sgd_roundtrip);
    tcase_add_test(tc, test_no_optimizer_state);
    tcase_add_test(tc, test_attributes);
    suite_add_tcase(s, tc);
    tc = tcase_create("refuse");
    tcase_add_unchecked_fixture(tc, dir_setup, dir_teardown);
    tcase_add_test(tc, test_refuse_wrong_shape);
    tcase_add_test(tc, test_refuse_missing_and_extra);
    tcase_add_test(tc, test_refuse_other_architecture);
    tcase_add_test(tc, test_refuse_optimizer_mismatch);
    tcase_add_test(tc, test_refuse_bad_files);
    tcase_add_test(tc, test_corrupt_data_loads_nothing);
    suite_add_tcase(s, tc);
    checkpoint_add_atomic_case(s);
    return s;
}

int main(void)
{
    return tu_run(checkpoint_suite());
}
