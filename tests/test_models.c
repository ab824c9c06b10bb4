/* test_models.c - FPN, counters, losses, summary: parameter counts, shapes,
 * errors, initialisation, hand-computed losses.  Gradients, learning and BN
 * modes are in test_models_train.c. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autodiff/ops.h"
#include "autodiff/optim.h"
#include "autodiff/params.h"
#include "autodiff/rng.h"
#include "models/counter.h"
#include "models/fpn.h"
#include "models/losses.h"
#include "models/summary.h"
#include "tests/test_models.h"
#include "tests/testutil.h"
#include "tests/testmain.h"

/* ---- parameter counts (independent formulas) ---- */

static int64_t fpn_count_formula(int D, int d, int cin)
{
    int64_t stem = 9 * cin + 1 + 2;
    int64_t lateral = (int64_t)(D - 1) * (9 * d + d + 2 * d);
    int64_t stack = (9LL * d * 2 * d + 2 * d + 4 * d) + (9LL * 2 * d * 2 * d + 2 * d + 4 * d) +
                    (9LL * 2 * d + 1);
    return stem + lateral + 2LL * D * stack;
}

START_TEST(test_fpn_param_counts)
{
    static const int cases[][3] = {{4, 128, 1}, {4, 128, 3}, {2, 4, 1}, {3, 8, 3}, {5, 16, 1}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        env e;
        env_open(&e, 0);
        fpn_config cfg = {cases[c][0], cases[c][1], cases[c][2]};
        fpn_model m;
        ck_assert_msg(fpn_build(&e.P, &cfg, "fpn", &m, &e.st) == 0, "%s", e.st.msg);
        ck_assert_int_eq((int64_t)params_count_trainable(&e.P),
                         fpn_count_formula(cfg.depth, cfg.width, cfg.in_channels));
        if (c == 0) {
            ck_assert_int_eq(params_count_trainable(&e.P), 7113236);
            /* SPEC's example path, with PyTorch's conv weight shape */
            int i = params_find(&e.P, "fpn/heads/mean/3/conv1/weight");
            ck_assert_int_ge(i, 0);
            ck_assert_int_eq(e.P.p[i].ndim, 4);
            ck_assert(e.P.p[i].shape[0] == 256 && e.P.p[i].shape[1] == 128 &&
                      e.P.p[i].shape[2] == 3 && e.P.p[i].shape[3] == 3);
            ck_assert_int_lt(params_find(&e.P, "fpn/lateral/0/conv/weight"), 0);
            ck_assert_int_ge(params_find(&e.P, "fpn/lateral/3/bn/num_batches_tracked"), 0);
        }
        if (c == 1) ck_assert_int_eq(params_count_trainable(&e.P), 7113254);
        env_close(&e);
    }
    /* bad configurations are refused with a message */
    env e;
    env_open(&e, 0);
    fpn_model m;
    fpn_config bad = {6, 8, 1};
    ck_assert_int_eq(fpn_build(&e.P, &bad, "fpn", &m, &e.st), -1);
    ck_assert_msg(strstr(e.st.msg, "depth 6"), "%s", e.st.msg);
    status_clear(&e.st);
    bad = (fpn_config){3, 8, 2};
    ck_assert_int_eq(fpn_build(&e.P, &bad, "fpn", &m, &e.st), -1);
    ck_assert_msg(strstr(e.st.msg, "2 input channels"), "%s", e.st.msg);
    env_close(&e);
}
END_TEST

/* VGG: convs 9*ci*co + co + 2co (BN); heads (F->h1->h2->1) twice; F =
 * C*H*W after flatten, C after global average pooling (gap). */
static int64_t vgg_count_formula_gap(const int *spec, int cin, int H, int W, int div, int gap)
{
    int64_t n = 0;
    int c = cin;
    for (const int *v = spec; *v >= 0; v++) {
        if (*v == 0) {
            H /= 2, W /= 2;
            continue;
        }
        int co = *v / div < 1 ? 1 : *v / div;
        n += 9LL * c * co + co + 2 * co;
        c = co;
    }
    int64_t F = gap ? (int64_t)c : (int64_t)c * H * W, h1 = 1024 / div, h2 = 512 / div;
    int64_t head = F * h1 + h1 + 2 * h1 + h1 * h2 + h2 + 2 * h2 + h2 + 1;
    return n + 2 * head;
}

static int64_t vgg_count_formula(const int *spec, int cin, int H, int W, int div)
{
    return vgg_count_formula_gap(spec, cin, H, W, div, 0);
}

static const int spec11[] = {64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0, -1};
static const int spec13[] = {64, 64, 0, 128, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0, -1};
static const int spec16[] = {64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0,
                             512, 512, 512, 0, -1};
static const int spec19[] = {64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0,
                             512, 512, 512, 512, 0, -1};

static int64_t counter_count_with(const char *arch, int cin, int H, int W, int div,
                                  int head_means)
{
    env e;
    env_open(&e, 0);
    counter_config cfg = counter_config_default();
    strcpy(cfg.arch, arch);
    cfg.in_channels = cin, cfg.height = H, cfg.width = W, cfg.width_div = div;
    cfg.head_means = head_means;
    counter_model m;
    ck_assert_msg(counter_build(&e.P, &cfg, "counter", &m, &e.st) == 0, "%s", e.st.msg);
    int64_t n = (int64_t)params_count_trainable(&e.P);
    counter_free(&m);
    env_close(&e);
    return n;
}

static int64_t counter_count(const char *arch, int cin, int H, int W, int div)
{
    return counter_count_with(arch, cin, H, W, div, 0);
}

START_TEST(test_counter_param_counts)
{
    /* counter.head_means: each head's fc1 reads Cin more inputs (1024/div
     * outputs): 2 x Cin x 1024/div more weights, for every architecture */
    ck_assert_int_eq(counter_count_with("vgg11", 2, 96, 128, 4, 1) -
                         counter_count("vgg11", 2, 96, 128, 4), 2 * 2 * 256);
    ck_assert_int_eq(counter_count_with("resnet18", 1, 96, 128, 1, 1) -
                         counter_count("resnet18", 1, 96, 128, 1), 2 * 1 * 1024);
    ck_assert_int_eq(counter_count("vgg11", 1, 96, 128, 1), 22866562);
    ck_assert_int_eq(counter_count("vgg11", 1, 96, 128, 1), vgg_count_formula(spec11, 1, 96, 128, 1));
    ck_assert_int_eq(counter_count("vgg13", 2, 96, 128, 1), vgg_count_formula(spec13, 2, 96, 128, 1));
    ck_assert_int_eq(counter_count("vgg16", 1, 64, 64, 4), vgg_count_formula(spec16, 1, 64, 64, 4));
    ck_assert_int_eq(counter_count("vgg19", 1, 32, 96, 8), vgg_count_formula(spec19, 1, 32, 96, 8));
    /* vgg11_gap: the heads read 512 averaged features, whatever the size */
    ck_assert_int_eq(counter_count("vgg11_gap", 1, 96, 128, 4),
                     vgg_count_formula_gap(spec11, 1, 96, 128, 4, 1));
    ck_assert_int_eq(counter_count("vgg11_gap", 2, 192, 256, 1),
                     vgg_count_formula_gap(spec11, 2, 16, 16, 1, 1));
    /* vgg11_density: vgg11's first five slots (convs 64, 128, 256, 256),
     * the logvar head on their 256/div averaged features, and the density
     * head: 1x1 conv F -> F/2 (+ bias), BN (2 x F/2), 1x1 conv F/2 -> 1 */
    {
        static const int spec11_3[] = {64, 0, 128, 0, 256, 256, 0, -1};
        const int64_t F = 256 / 4, hid = F / 2;
        const int64_t head = F * 256 + 256 + 2 * 256 + 256 * 128 + 128 + 2 * 128 + 128 + 1;
        const int64_t dens = F * hid + hid + 2 * hid + hid + 1;
        ck_assert_int_eq(counter_count("vgg11_density", 1, 96, 128, 4),
                         vgg_count_formula_gap(spec11_3, 1, 96, 128, 4, 1) - head + dens);
    }
    /* torchvision resnet18 without fc (11,176,512) - its 7x7x3 stem (9,408)
     * + our 3x3x1 stem (576) + two heads on F = 512 (2 x 1,053,697) */
    ck_assert_int_eq(counter_count("resnet18", 1, 96, 128, 1), 11176512 - 9408 + 576 + 2 * 1053697);
    /* errors: unknown name lists the registry; too small an input */
    env e;
    env_open(&e, 0);
    counter_config cfg = counter_config_default();
    strcpy(cfg.arch, "vgg12");
    counter_model m;
    ck_assert_int_eq(counter_build(&e.P, &cfg, "counter", &m, &e.st), -1);
    ck_assert_msg(strstr(e.st.msg, "vgg12") && strstr(e.st.msg, "resnet18"), "%s", e.st.msg);
    status_clear(&e.st);
    cfg = counter_config_default();
    cfg.height = 16;
    ck_assert_int_eq(counter_build(&e.P, &cfg, "c2", &m, &e.st), -1);
    ck_assert_msg(strstr(e.st.msg, "16x128") && strstr(e.st.msg, "too small"), "%s", e.st.msg);
    env_close(&e);
}
END_TEST

/* ---- summary: the SPEC's reference totals ---- */

START_TEST(test_summary_reference_totals)
{
    summary_options o;
    summary_totals tot;
    cc_status st;
    status_clear(&st);
    summary_options_default(&o, SUMMARY_FPN);
    ck_assert_msg(summary_run(&o, NULL, &tot, &st) == 0, "%s", st.msg);
    ck_assert_int_eq(tot.params, 7113236);
    ck_assert_int_eq(tot.params_used, tot.params);
    /* conv MACs: heads at 12x16..96x128 + stem + laterals */
    ck_assert_int_eq(tot.macs, 28972007424LL);
    ck_assert_int_eq((int64_t)llround(tot.macs / 1e7), 2897);
    o.channels = 3;
    ck_assert_msg(summary_run(&o, NULL, &tot, &st) == 0, "%s", st.msg);
    ck_assert_int_eq(tot.params, 7113254);
    ck_assert_int_eq((int64_t)llround(tot.macs / 1e7), 2897);

    summary_options_default(&o, SUMMARY_COUNTER);
    ck_assert_msg(summary_run(&o, NULL, &tot, &st) == 0, "%s", st.msg);
    ck_assert_int_eq(tot.params, 22866562);
    ck_assert_int_eq(tot.params_used, tot.params);
    ck_assert_int_eq(tot.macs, 1832649728LL);
    ck_assert_int_eq((int64_t)llround(tot.macs / 1e6), 1833);
    /* one row per layer as defined: 8 conv + 8 BN + 5 pool, the reshape,
     * 2 heads x (3 linear + 2 BN), the count's ReLU; not BN folded into
     * its conv as inference tapes run it */
    ck_assert_int_eq(tot.layers, 8 + 8 + 5 + 1 + 2 * 5 + 1);
}
END_TEST

START_TEST(test_summary_every_param_used)
{
    /* every declared tensor is read by the forward, for every architecture */
    for (int i = 0; i < counter_arch_count(); i++) {
        summary_options o;
        summary_totals tot;
        cc_status st;
        status_clear(&st);
        summary_options_default(&o, SUMMARY_COUNTER);
        strcpy(o.arch, counter_arch_at(i)->name);
        o.channels = 2, o.height = 64, o.width = 96, o.width_div = 8;
        ck_assert_msg(summary_run(&o, NULL, &tot, &st) == 0, "%s: %s", o.arch, st.msg);
        ck_assert_msg(tot.params_used == tot.params && tot.params > 0, "%s: %lld of %lld used",
                      o.arch, (long long)tot.params_used, (long long)tot.params);
        ck_assert_int_gt(tot.macs, 0);
    }
    summary_options o;
    summary_totals tot;
    cc_status st;
    status_clear(&st);
    summary_options_default(&o, SUMMARY_FPN);
    o.depth = 5, o.fpn_width = 4, o.height = 64, o.width = 32;
    ck_assert_msg(summary_run(&o, NULL, &tot, &st) == 0, "%s", st.msg);
    ck_assert_int_eq(tot.params_used, tot.params);
    ck_assert_int_eq(tot.params, fpn_count_formula(5, 4, 1));
    /* a size the FPN cannot take is an error naming it */
    o.height = 48;
    ck_assert_int_eq(summary_run(&o, NULL, &tot, &st), -1);
    ck_assert_msg(strstr(st.msg, "48x32") && strstr(st.msg, "depth 5"), "%s", st.msg);
}
END_TEST

/* ---- FPN shapes and errors ---- */

static void check_fpn_shapes(int D, int d, int cin, int N, int H, int W, int training)
{
    env e;
    env_open(&e, training);
    fpn_config cfg = {D, d, cin};
    fpn_model m;
    ck_assert_int_eq(fpn_build(&e.P, &cfg, "fpn", &m, &e.st), 0);
    ck_assert_int_eq(params_finalize(&e.P, &e.st), 0);
    fpn_init(&e.P, &m, 3);
    int64_t n = (int64_t)N * cin * H * W;
    float *x = malloc(sizeof(float) * (size_t)n);
    tu_fill_uniform(x, n, 0, 1, 5);
    cc_tensor *xt = tape_input(&e.t, 4, (int64_t[]){N, cin, H, W}, x, 0);
    fpn_output out;
    ck_assert_msg(fpn_forward(&e.t, &e.P, &m, xt, &out) == 0, "%s", tape_error(&e.t));
    ck_assert_int_eq(out.levels, D);
    for (int i = 0; i < D; i++) {
        int64_t f = (int64_t)1 << (D - i);
        const cc_tensor *ts[2] = {out.mean[i], out.logvar[i]};
        for (int k = 0; k < 2; k++) {
            ck_assert_int_eq(ts[k]->ndim, 4);
            ck_assert_int_eq(ts[k]->dims[0], N);
            ck_assert_int_eq(ts[k]->dims[1], 1);
            ck_assert_int_eq(ts[k]->dims[2], H / f);
            ck_assert_int_eq(ts[k]->dims[3], W / f);
        }
        float *v = read_all(&e.t, out.mean[i]);
        for (int64_t j = 0; j < tensor_numel(out.mean[i]); j++) ck_assert(v[j] >= 0 && isfinite(v[j]));
        free(v);
    }
    free(x);
    env_close(&e);
}

START_TEST(test_fpn_shapes)
{
    check_fpn_shapes(2, 4, 1, 2, 16, 16, 1);
    check_fpn_shapes(3, 4, 1, 1, 32, 48, 0);
    check_fpn_shapes(3, 8, 3, 2, 8, 24, 1);
    check_fpn_shapes(4, 4, 1, 2, 32, 16, 0);
    check_fpn_shapes(5, 2, 1, 1, 64, 32, 1);
}
END_TEST

START_TEST(test_fpn_size_errors)
{
    env e;
    env_open(&e, 1);
    fpn_config cfg = {3, 4, 1};
    fpn_model m;
    ck_assert_int_eq(fpn_build(&e.P, &cfg, "fpn", &m, &e.st), 0);
    ck_assert_int_eq(params_finalize(&e.P, &e.st), 0);
    fpn_init(&e.P, &m, 1);
    fpn_output out;
    cc_tensor *x = tape_input(&e.t, 4, (int64_t[]){1, 1, 20, 16}, NULL, 0);
    ck_assert_int_eq(fpn_forward(&e.t, &e.P, &m, x, &out), -1);
    const char *msg = tape_error(&e.t);
    ck_assert_msg(msg && strstr(msg, "20x16") && strstr(msg, "depth 3") && strstr(msg, "8"),
                  "message was: %s", msg);
    ck_assert_ptr_null(out.mean[0]);
    tape_reset(&e.t);
    x = tape_input(&e.t, 4, (int64_t[]){1, 3, 16, 16}, NULL, 0);
    ck_assert_int_eq(fpn_forward(&e.t, &e.P, &m, x, &out), -1);
    ck_assert_msg(strstr(tape_error(&e.t), "1x3x16x16"), "%s", tape_error(&e.t));
    env_close(&e);
}
END_TEST

/* ---- counter shapes and errors ---- */

START_TEST(test_counter_shapes)
{
    for (int a = 0; a < counter_arch_count(); a++)
        for (int cin = 1; cin <= 2; cin++) {
            env e;
            env_open(&e, 1);
            counter_config cfg = counter_config_default();
            strcpy(cfg.arch, counter_arch_at(a)->name);
            cfg.in_channels = cin, cfg.height = 32, cfg.width = 48, cfg.width_div = 16;
            cfg.head_means = cin == 2;  /* the heads' extra inputs, once per architecture */
            counter_model m;
            ck_assert_msg(counter_build(&e.P, &cfg, "counter", &m, &e.st) == 0, "%s", e.st.msg);
            ck_assert_int_eq(params_finalize(&e.P, &e.st), 0);
            counter_init(&e.P, &m, 2);
            const int N = 3;
            float *x = malloc(sizeof(float) * N * cin * 32 * 48);
            tu_fill_uniform(x, N * cin * 32 * 48, 0, 1, 9);
            cc_tensor *xt = tape_input(&e.t, 4, (int64_t[]){N, cin, 32, 48}, x, 0), *c, *lv;
            ck_assert_msg(counter_forward(&e.t, &e.P, &m, xt, &c, &lv) == 0, "%s: %s", cfg.arch,
                          tape_error(&e.t));
            ck_assert_int_eq(c->ndim, 2);
            ck_assert_int_eq(c->dims[0], N);
            ck_assert_int_eq(c->dims[1], 1);
            ck_assert(tensor_same_shape(c, lv));
            float *v = read_all(&e.t, c);
            for (int i = 0; i < N; i++) ck_assert(v[i] >= 0 && isfinite(v[i]));
            free(v);
            /* a size other than the configured one is refused, naming both */
            tape_reset(&e.t);
            xt = tape_input(&e.t, 4, (int64_t[]){N, cin, 32, 32}, x, 0);
            ck_assert_int_eq(counter_forward(&e.t, &e.P, &m, xt, &c, &lv), -1);
            ck_assert_msg(strstr(tape_error(&e.t), "32x32") && strstr(tape_error(&e.t), "48"),
                          "%s", tape_error(&e.t));
            free(x);
            counter_free(&m);
            env_close(&e);
        }
}
END_TEST

/* vgg11_density counts by summing its density map: with conv2's weights at
 * zero every position's density is relu(bias), so the count is exactly
 * positions x relu(bias), whatever the input; counter_init_count_bias
 * makes it the mean count asked for. */
START_TEST(test_counter_density_sum)
{
    env e;
    env_open(&e, 0);
    counter_config cfg = counter_config_default();
    strcpy(cfg.arch, "vgg11_density");
    cfg.height = 48, cfg.width = 64, cfg.width_div = 16;
    counter_model m;
    ck_assert_msg(counter_build(&e.P, &cfg, "counter", &m, &e.st) == 0, "%s", e.st.msg);
    ck_assert_int_eq(m.positions, 6 * 8);
    ck_assert_int_eq(params_finalize(&e.P, &e.st), 0);
    counter_init(&e.P, &m, 4);
    params_fill(&e.P, m.density.conv2.w, 0.0f);
    const float mean = 37.5f;
    counter_init_count_bias(&e.P, &m, mean);
    float x[2 * 48 * 64];
    tu_fill_uniform(x, 2 * 48 * 64, 0, 1, 3);
    for (int pass = 0; pass < 2; pass++) {
        tape_reset(&e.t);
        cc_tensor *xt = tape_input(&e.t, 4, (int64_t[]){2, 1, 48, 64}, x, 0), *c, *lv;
        ck_assert_msg(counter_forward(&e.t, &e.P, &m, xt, &c, &lv) == 0, "%s", tape_error(&e.t));
        float *v = read_all(&e.t, c);
        for (int i = 0; i < 2; i++)
            ck_assert_msg(fabsf(v[i] - (pass ? 0.0f : mean)) < 1e-4f * mean, "count %g", v[i]);
        free(v);
        params_fill(&e.P, m.density.conv2.b, -1.0f);  /* a negative density counts 0 */
    }
    counter_free(&m);
    env_close(&e);
}
END_TEST

/* ---- initialisation ---- */

START_TEST(test_init_defaults_and_streams)
{
    env e1, e2;
    env_open(&e1, 0);
    env_open(&e2, 0);
    fpn_config c1 = {2, 8, 1}, c2 = {3, 8, 1};
    fpn_model m1, m2;
    ck_assert_int_eq(fpn_build(&e1.P, &c1, "fpn", &m1, &e1.st), 0);
    ck_assert_int_eq(fpn_build(&e2.P, &c2, "fpn", &m2, &e2.st), 0);
    params_finalize(&e1.P, NULL);
    params_finalize(&e2.P, NULL);
    fpn_init(&e1.P, &m1, 42);
    fpn_init(&e2.P, &m2, 42);
    /* a tensor's initial values depend on its name and the seed only */
    const char *shared[] = {"fpn/stem/conv/weight", "fpn/heads/mean/1/conv2/weight",
                            "fpn/lateral/1/conv/bias"};
    for (int k = 0; k < 3; k++) {
        int a = params_find(&e1.P, shared[k]), b = params_find(&e2.P, shared[k]);
        ck_assert_msg(a >= 0 && b >= 0, "%s", shared[k]);
        ck_assert(!memcmp(e1.P.p[a].t.data, e2.P.p[b].t.data, sizeof(float) * e1.P.p[a].numel));
    }
    /* Kaiming-uniform(a=sqrt 5) bound 1/sqrt(fan_in), filling the range */
    int w = params_find(&e1.P, "fpn/heads/mean/1/conv2/weight");
    const cc_param *p = &e1.P.p[w];
    double bound = 1.0 / sqrt(16.0 * 9), mx = 0, mean = 0;
    for (size_t i = 0; i < p->numel; i++) {
        mx = fmax(mx, fabs(p->t.data[i]));
        mean += p->t.data[i];
    }
    ck_assert(mx <= bound && mx > 0.95 * bound);
    ck_assert(fabs(mean / (double)p->numel) < 0.1 * bound);
    /* biases and conv weights of two layers differ (own streams) */
    int w2 = params_find(&e1.P, "fpn/heads/logvar/1/conv2/weight");
    ck_assert(memcmp(p->t.data, e1.P.p[w2].t.data, 64));
    /* BN defaults */
    ck_assert_float_eq(e1.P.p[params_find(&e1.P, "fpn/heads/mean/0/bn1/weight")].t.data[3], 1.0f);
    ck_assert_float_eq(e1.P.p[params_find(&e1.P, "fpn/heads/mean/0/bn1/bias")].t.data[3], 0.0f);
    ck_assert_float_eq(e1.P.p[params_find(&e1.P, "fpn/stem/bn/running_var")].t.data[0], 1.0f);
    ck_assert_float_eq(e1.P.p[params_find(&e1.P, "fpn/stem/bn/running_mean")].t.data[0], 0.0f);
    ck_assert_int_eq(e1.P.p[params_find(&e1.P, "fpn/stem/bn/num_batches_tracked")].kind,
                     PARAM_BUFFER);
    /* another seed gives other numbers */
    fpn_init(&e2.P, &m2, 43);
    int b = params_find(&e2.P, "fpn/stem/conv/weight"), a = params_find(&e1.P, "fpn/stem/conv/weight");
    ck_assert(memcmp(e1.P.p[a].t.data, e2.P.p[b].t.data, sizeof(float) * 9));
    env_close(&e1);
    env_close(&e2);
}
END_TEST

/* ---- losses against hand computation ---- */

START_TEST(test_loss_values)
{
    env e;
    env_open(&e, 1);
    const float xv[4] = {1, 2, 0.5f, -1}, sv[4] = {0, -7, 1.5f, -6.5f}, yv[4] = {0, 2.5f, 0.25f, 1};
    cc_tensor *x = tape_input(&e.t, 2, (int64_t[]){4, 1}, xv, 1);
    cc_tensor *s = tape_input(&e.t, 2, (int64_t[]){4, 1}, sv, 1);
    cc_tensor *y = tape_input(&e.t, 2, (int64_t[]){4, 1}, yv, 0);
    double nll = 0, paper = 0, mse = 0;
    for (int i = 0; i < 4; i++) {
        double r = yv[i] - xv[i], sc = sv[i] < -6 ? -6 : sv[i], tt = sv[i] > -6 ? sv[i] : 0;
        nll += 0.5 * exp(-sc) * r * r + 0.5 * sc;
        paper += r * r / (2 * exp(tt)) + tt;
        mse += r * r;
    }
    /* e.g. element 1: s clamped to -6: 0.5*e^6*0.25 - 3 = 47.4286; element 3 in
     * the paper's loss: t = 0, so (y-x)^2/2 = 2 */
    loss_terms lt;
    cc_tensor *l = counter_loss(&e.t, x, s, y, LOSS_NLL, &lt);
    ck_assert_ptr_nonnull(l);
    ck_assert_double_eq_tol(tensor_item(l), nll / 4, 1e-4);
    ck_assert_double_eq_tol(lt.total, nll / 4, 1e-4);
    ck_assert_double_eq_tol(tensor_item(counter_loss(&e.t, x, s, y, LOSS_PAPER, NULL)), paper / 4, 1e-5);
    ck_assert_double_eq_tol(tensor_item(counter_loss(&e.t, x, NULL, y, LOSS_MSE, NULL)), mse / 4, 1e-6);
    ck_assert_double_eq_tol(nll / 4, (0.5 + (0.125 * exp(6) - 3) + (0.5 * exp(-1.5) * 0.0625 + 0.75) +
                                      (0.5 * exp(6) * 4 - 3)) / 4, 1e-5);
    loss_kind k;
    ck_assert_int_eq(loss_kind_parse("paper", &k, NULL), 0);
    ck_assert_int_eq(k, LOSS_PAPER);
    ck_assert_int_eq(loss_kind_parse("l1", &k, &e.st), -1);
    ck_assert(strstr(e.st.msg, "l1"));
    env_close(&e);
}
END_TEST

/* decoupled = mse + nll around the detached mean: the value is the sum, the
 * mean's gradient is mse's alone, the log-variance's is nll's. */
START_TEST(test_loss_decoupled)
{
    env e;
    env_open(&e, 1);
    const float xv[4] = {1, 2, 0.5f, -1}, sv[4] = {0, -7, 1.5f, 0.3f}, yv[4] = {0, 2.5f, 0.25f, 1};
    cc_tensor *x = tape_input(&e.t, 2, (int64_t[]){4, 1}, xv, 1);
    cc_tensor *s = tape_input(&e.t, 2, (int64_t[]){4, 1}, sv, 1);
    cc_tensor *y = tape_input(&e.t, 2, (int64_t[]){4, 1}, yv, 0);
    double nll = 0, mse = 0, gx[4], gs[4];
    for (int i = 0; i < 4; i++) {
        double r = yv[i] - xv[i], sc = sv[i] < -6 ? -6 : sv[i];
        nll += 0.5 * exp(-sc) * r * r + 0.5 * sc;
        mse += r * r;
        gx[i] = -2 * r / 4;
        gs[i] = sv[i] < -6 ? 0 : (0.5 - 0.5 * exp(-sv[i]) * r * r) / 4;
    }
    cc_tensor *l = counter_loss(&e.t, x, s, y, LOSS_DECOUPLED, NULL);
    ck_assert_msg(l != NULL, "%s", tape_error(&e.t));
    ck_assert_double_eq_tol(tensor_item(l), (nll + mse) / 4, 1e-4);
    ck_assert_int_eq(tape_backward(&e.t, l), 0);
    float dx[4], ds[4];
    ck_assert_int_eq(tape_read_grad(&e.t, x, dx), 0);
    ck_assert_int_eq(tape_read_grad(&e.t, s, ds), 0);
    for (int i = 0; i < 4; i++) {
        ck_assert_double_eq_tol(dx[i], gx[i], 1e-5);
        ck_assert_double_eq_tol(ds[i], gs[i], 1e-5);
    }
    loss_kind k;
    ck_assert_int_eq(loss_kind_parse("decoupled", &k, NULL), 0);
    ck_assert_int_eq(k, LOSS_DECOUPLED);
    ck_assert_str_eq(loss_kind_name(k), "decoupled");
    env_close(&e);
}
END_TEST

/* fpn_loss on a hand-made 2-level output: batch 2, input 4x4, levels 1x1 and
 * 2x2.  Expected value computed here from the definitions. */
START_TEST(test_fpn_loss_value)
{
    env e;
    env_open(&e, 1);
    float tgt[2 * 16];
    for (int i = 0; i < 32; i++) tgt[i] = (float)((i * 7) % 5) / 4.0f;   /* in [0,1] */
    const float m1[8] = {0.2f, 0.9f, 0.1f, 0.6f, 0.5f, 0.4f, 0.3f, 0.0f};
    const float s1[8] = {0.1f, -0.2f, 0.3f, -8.0f, 0.0f, 1.0f, -1.0f, 0.5f};
    const float m0[2] = {0.7f, 0.1f}, s0[2] = {-0.5f, 0.25f};
    fpn_output out;
    memset(&out, 0, sizeof out);
    out.levels = 2;
    out.mean[0] = tape_input(&e.t, 4, (int64_t[]){2, 1, 1, 1}, m0, 1);
    out.logvar[0] = tape_input(&e.t, 4, (int64_t[]){2, 1, 1, 1}, s0, 1);
    out.mean[1] = tape_input(&e.t, 4, (int64_t[]){2, 1, 2, 2}, m1, 1);
    out.logvar[1] = tape_input(&e.t, 4, (int64_t[]){2, 1, 2, 2}, s1, 1);
    cc_tensor *target = tape_input(&e.t, 4, (int64_t[]){2, 1, 4, 4}, tgt, 0);
    /* reference: per-sample area averages */
    double t1[8], t0[2], data = 0, tv = 0;
    for (int n = 0; n < 2; n++) {
        t0[n] = 0;
        for (int by = 0; by < 2; by++)
            for (int bx = 0; bx < 2; bx++) {
                double a = 0;
                for (int y = 0; y < 2; y++)
                    for (int x = 0; x < 2; x++) a += tgt[n * 16 + (2 * by + y) * 4 + 2 * bx + x];
                t1[n * 4 + by * 2 + bx] = a / 4;
                t0[n] += a / 16;
            }
    }
    double l0 = 0, l1 = 0;
    for (int n = 0; n < 2; n++) {
        double r = t0[n] - m0[n], sc = fmax(s0[n], -6);
        l0 += 0.5 * exp(-sc) * r * r + 0.5 * sc;
        for (int j = 0; j < 4; j++) {
            double r1 = t1[n * 4 + j] - m1[n * 4 + j], sc1 = fmax(s1[n * 4 + j], -6);
            l1 += 0.5 * exp(-sc1) * r1 * r1 + 0.5 * sc1;
        }
        const float *m = m1 + n * 4;   /* TV of a 2x2: only (0,0) has both neighbours */
        tv += (m[0] - m[1]) * (m[0] - m[1]) + (m[0] - m[2]) * (m[0] - m[2]);
    }
    data = l0 / 2 + l1 / 8;
    const float w = 0.5f;
    loss_terms lt;
    cc_tensor *L = fpn_loss(&e.t, &out, target, LOSS_NLL, w, &lt);
    ck_assert_msg(L != NULL, "%s", tape_error(&e.t));
    ck_assert_double_eq_tol(tensor_item(L), data + w * tv, 1e-5);
    ck_assert_double_eq_tol(lt.data, data, 1e-5);
    ck_assert_double_eq_tol(lt.tv, w * tv, 1e-6);
    ck_assert_double_eq_tol(lt.level_data[0], l0 / 2, 1e-5);
    ck_assert_double_eq_tol(lt.level_tv[1], tv, 1e-6);
    ck_assert_int_eq(lt.levels, 2);
    /* gradient of the total reaches every prediction; none reaches the target */
    ck_assert_int_eq(tape_backward(&e.t, L), 0);
    float g[8];
    tape_read_grad(&e.t, out.mean[1], g);
    double r = t1[0] - m1[0];
    double expect = -exp(-s1[0]) * r / 8 + w * (2 * (m1[0] - m1[1]) + 2 * (m1[0] - m1[2]));
    ck_assert_double_eq_tol(g[0], expect, 1e-5);
    tape_read_grad(&e.t, out.logvar[1], g);
    ck_assert_float_eq(g[3], 0.0f);     /* clamped at -6 */
    ck_assert_ptr_null(target->grad);
    /* mse ignores the log-variances */
    tape_reset(&e.t);
    fpn_output o2 = out;
    for (int i = 0; i < 2; i++) o2.logvar[i] = NULL;
    o2.mean[0] = tape_input(&e.t, 4, (int64_t[]){2, 1, 1, 1}, m0, 1);
    o2.mean[1] = tape_input(&e.t, 4, (int64_t[]){2, 1, 2, 2}, m1, 1);
    target = tape_input(&e.t, 4, (int64_t[]){2, 1, 4, 4}, tgt, 0);
    double mse = 0, mse1 = 0;
    for (int n = 0; n < 2; n++) {
        mse += (t0[n] - m0[n]) * (t0[n] - m0[n]);
        for (int j = 0; j < 4; j++) mse1 += (t1[n * 4 + j] - m1[n * 4 + j]) * (t1[n * 4 + j] - m1[n * 4 + j]);
    }
    L = fpn_loss(&e.t, &o2, target, LOSS_MSE, 0, &lt);
    ck_assert_msg(L != NULL, "%s", tape_error(&e.t));
    ck_assert_double_eq_tol(tensor_item(L), mse / 2 + mse1 / 8, 1e-6);
    ck_assert(lt.tv == 0);
    /* a target of the wrong size names both shapes */
    tape_reset(&e.t);
    o2.mean[0] = tape_input(&e.t, 4, (int64_t[]){2, 1, 1, 1}, m0, 1);
    o2.mean[1] = tape_input(&e.t, 4, (int64_t[]){2, 1, 2, 2}, m1, 1);
    target = tape_input(&e.t, 4, (int64_t[]){2, 1, 8, 8}, NULL, 0);
    ck_assert_ptr_null(fpn_loss(&e.t, &o2, target, LOSS_MSE, 0, NULL));
    ck_assert_msg(strstr(tape_error(&e.t), "2x1x8x8") && strstr(tape_error(&e.t), "2x1x2x2"),
                  "%s", tape_error(&e.t));
    env_close(&e);
}
END_TEST

static Suite *models_suite(void)
{
    Suite *s = suite_create("models");
    TCase *tc = tcase_create("sizes");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_fpn_param_counts);
    tcase_add_test(tc, test_counter_param_counts);
    tcase_add_test(tc, test_summary_reference_totals);
    tcase_add_test(tc, test_summary_every_param_used);
    tcase_add_test(tc, test_fpn_shapes);
    tcase_add_test(tc, test_fpn_size_errors);
    tcase_add_test(tc, test_counter_shapes);
    tcase_add_test(tc, test_counter_density_sum);
    tcase_add_test(tc, test_init_defaults_and_streams);
    suite_add_tcase(s, tc);
    tc = tcase_create("losses");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_loss_values);
    tcase_add_test(tc, test_loss_decoupled);
    tcase_add_test(tc, test_fpn_loss_value);
    suite_add_tcase(s, tc);
    models_add_train_cases(s);
    return s;
}

int main(void)
{
    return tu_run(models_suite());
}
