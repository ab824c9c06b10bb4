/* bench.c - cellcount-bench: time one training step (zero-grad, forward,
 * loss, backward, Adam) or one inference forward of the FPN or the VGG-11
 * counter on synthetic data, the way shared/bench/torch_ref.py times the
 * PyTorch peer, so the two can be compared side by side (bench/side_by_side.sh).
 *
 *   cellcount-bench --model fpn --batch 2 --channels 1 --height 192 --width 256 \
 *       --threads 1 --steps 8 [--warmup 3] [--infer] [--json]
 *
 * Printed: median/min/max ms per step, images/s, GFLOP/step and GFLOP/s
 * (conv/linear MACs counted as torch_ref.py does: forward + weight gradient
 * + data gradient where the layer's input needs a gradient, 2 FLOP per MAC),
 * peak RSS, the engine's heap allocations during the timed steps
 * (ctx.n_allocs; 0 in a steady state) and the node states (primitives)
 * built in them (tape n_builds; 0 likewise), and where the time goes, per op kind
 * (tape->profile; reorders inside ops are booked as reorders), optimizer,
 * and framework overhead = step time minus everything attributed.
 *
 * Data: x ~ U(0,1) images, FPN target U(0,1) mask (N,1,H,W), counter target
 * integer counts in [0,100); fixed seeds.  Loss: the paper's Gaussian loss
 * (torch_ref.py's bloss) + TV 1e-6 for the FPN.  Adam lr 1e-3 (FPN) or
 * 1e-4 (counter), as torch_ref.py.
 */
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "autodiff/op.h"
#include "autodiff/ops.h"
#include "autodiff/optim.h"
#include "autodiff/rng.h"
#include "models/counter.h"
#include "models/fpn.h"
#include "models/losses.h"

typedef struct bench_opts {
    int fpn;                    /* 1 fpn, 0 counter */
    int batch, channels, height, width;
    int threads, steps, warmup, infer, json, bf16, keep_grads, per_node;
    int depth, fpn_width;
    char arch[COUNTER_ARCH_NAME];
    loss_kind loss;
} bench_opts;

typedef struct bench_model {
    cc_params P;
    fpn_model fm;
    counter_model cm;
    cc_tape tape;
    cc_optim opt;
    float *x, *y;               /* host copies of the synthetic batch */
    int64_t xd[4], yd[4];
    int yndim;
} bench_model;

/* Per-step phase times (seconds). */
typedef struct step_times {
    double total, zero, fwd, bwd, opt;
} step_times;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: cellcount-bench [--model fpn|counter] [--batch N] [--channels C]\n"
            "         [--height H] [--width W] [--threads T] [--steps S] [--warmup K]\n"
            "         [--infer] [--precision fp32|bf16] [--json]\n"
            "         [--depth D] [--fpn-width d] [--arch vgg11] [--loss paper|nll|mse]\n"
            "         [--keep-grads]   (keep every intermediate gradient: tape free_grads = 0)\n"
            "         [--per-node]     (also print each node's mean forward/backward ms)\n"
            "Defaults: fpn batch 2, 1x192x256, D 4, d 128; counter vgg11 batch 5, 1x96x128;\n"
            "threads 1, steps 8 (fpn) / 15 (counter), warmup 3.\n");
}

static int parse_int(const char *opt, const char *v, int lo, int *out)
{
    char *end;
    errno = 0;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || errno || *end || x < lo || x > 1 << 20) {
        fprintf(stderr, "cellcount-bench: %s needs an integer >= %d (got '%s')\n", opt, lo,
                v ? v : "");
        return -1;
    }
    *out = (int)x;
    return 0;
}

/* Returns 0, 1 (help printed), -1 (bad usage). */
static int parse_args(int argc, char **argv, bench_opts *o)
{
    memset(o, 0, sizeof *o);
    o->fpn = 1;
    o->batch = o->channels = o->height = o->width = o->steps = -1;
    o->threads = 1;
    o->warmup = 3;
    o->depth = 4;
    o->fpn_width = 128;
    o->loss = LOSS_PAPER;
    snprintf(o->arch, sizeof o->arch, "vgg11");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int *ip = NULL, lo = 1;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 1;
        } else if (!strcmp(a, "--infer")) {
            o->infer = 1;
        } else if (!strcmp(a, "--json")) {
            o->json = 1;
        } else if (!strcmp(a, "--keep-grads")) {
            o->keep_grads = 1;
        } else if (!strcmp(a, "--per-node")) {
            o->per_node = 1;
        } else if (!strcmp(a, "--model")) {
            if (!v || (strcmp(v, "fpn") && strcmp(v, "counter"))) {
                fprintf(stderr, "cellcount-bench: --model is fpn or counter\n");
                return -1;
            }
            o->fpn = !strcmp(v, "fpn");
            i++;
        } else if (!strcmp(a, "--precision")) {
            if (!v || (strcmp(v, "fp32") && strcmp(v, "bf16"))) {
                fprintf(stderr, "cellcount-bench: --precision is fp32 or bf16\n");
                return -1;
            }
            o->bf16 = !strcmp(v, "bf16");
            i++;
        } else if (!strcmp(a, "--arch")) {
            if (!v) return -1;
            snprintf(o->arch, sizeof o->arch, "%s", v);
            i++;
        } else if (!strcmp(a, "--loss")) {
            cc_status st;
            status_clear(&st);
            if (!v || loss_kind_parse(v, &o->loss, &st)) {
                fprintf(stderr, "cellcount-bench: %s\n", v ? st.msg : "--loss needs a value");
                return -1;
            }
            i++;
        } else {
            if (!strcmp(a, "--batch")) ip = &o->batch;
            else if (!strcmp(a, "--channels")) ip = &o->channels;
            else if (!strcmp(a, "--height")) ip = &o->height;
            else if (!strcmp(a, "--width")) ip = &o->width;
            else if (!strcmp(a, "--threads")) ip = &o->threads;
            else if (!strcmp(a, "--steps")) ip = &o->steps;
            else if (!strcmp(a, "--warmup")) ip = &o->warmup, lo = 0;
            else if (!strcmp(a, "--depth")) ip = &o->depth;
            else if (!strcmp(a, "--fpn-width")) ip = &o->fpn_width;
            if (!ip) {
                fprintf(stderr, "cellcount-bench: unknown option '%s'\n", a);
                usage(stderr);
                return -1;
            }
            if (parse_int(a, v, lo, ip)) return -1;
            i++;
        }
    }
    if (o->batch < 0) o->batch = o->fpn ? 2 : 5;
    if (o->channels < 0) o->channels = 1;
    if (o->height < 0) o->height = o->fpn ? 192 : 96;
    if (o->width < 0) o->width = o->fpn ? 256 : 128;
    if (o->steps < 0) o->steps = o->fpn ? 8 : 15;
    return 0;
}

static int model_build(const bench_opts *o, cc_ctx *ctx, bench_model *m, cc_status *st)
{
    params_init(&m->P, ctx);
    if (o->fpn) {
        fpn_config cfg = {o->depth, o->fpn_width, o->channels};
        if (fpn_build(&m->P, &cfg, "fpn", &m->fm, st) || params_finalize(&m->P, st)) return -1;
        fpn_init(&m->P, &m->fm, 1);
    } else {
        counter_config cfg = counter_config_default();
        snprintf(cfg.arch, sizeof cfg.arch, "%s", o->arch);
        cfg.in_channels = o->channels;
        cfg.height = o->height;
        cfg.width = o->width;
        if (counter_build(&m->P, &cfg, "counter", &m->cm, st) || params_finalize(&m->P, st))
            return -1;
        counter_init(&m->P, &m->cm, 1);
    }
    optim_adam_init(&m->opt, o->fpn ? 1e-3f : 1e-4f, 0.9f, 0.999f, 1e-8f, 0.0f);
    tape_init(&m->tape, ctx, !o->infer);
    /* inference on fixed weights, as count and evaluate run it */
    if (o->infer) tape_fix_weights(&m->tape, 1);
    /* as the training loops do: intermediate gradients recycled in backward */
    m->tape.free_grads = !o->keep_grads;

    /* The synthetic batch, made once (no data loading is timed). */
    const int64_t n = o->batch;
    m->xd[0] = n, m->xd[1] = o->channels, m->xd[2] = o->height, m->xd[3] = o->width;
    const size_t nx = (size_t)(n * o->channels * o->height * o->width);
    size_t ny;
    if (o->fpn) {
        m->yndim = 4;
        m->yd[0] = n, m->yd[1] = 1, m->yd[2] = o->height, m->yd[3] = o->width;
        ny = (size_t)(n * o->height * o->width);
    } else {
        m->yndim = 2;
        m->yd[0] = n, m->yd[1] = 1;
        ny = (size_t)n;
    }
    m->x = malloc(nx * sizeof(float));
    m->y = malloc(ny * sizeof(float));
    if (!m->x || !m->y) return status_set(st, "bench: out of memory");
    cc_rng r;
    rng_seed(&r, 0, 1);
    for (size_t i = 0; i < nx; i++) m->x[i] = rng_uniform(&r);
    rng_seed(&r, 0, 2);
    for (size_t i = 0; i < ny; i++)
        m->y[i] = o->fpn ? rng_uniform(&r) : floorf(100.0f * rng_uniform(&r));
    return 0;
}

static void model_free(bench_model *m)
{
    tape_free(&m->tape);
    counter_free(&m->cm);
    params_free(&m->P);
    free(m->x);
    free(m->y);
}

/* Forward (+ loss on a training tape) on a reset tape; returns the loss
 * (training) or a non-NULL output (inference), NULL on error. */
static cc_tensor *model_forward(const bench_opts *o, bench_model *m)
{
    cc_tape *t = &m->tape;
    cc_tensor *x = tape_input(t, 4, m->xd, m->x, 0);
    if (o->fpn) {
        fpn_output out;
        if (fpn_forward(t, &m->P, &m->fm, x, &out)) return NULL;
        if (o->infer) return out.mean[out.levels - 1];
        cc_tensor *y = tape_input(t, 4, m->yd, m->y, 0);
        return fpn_loss(t, &out, y, o->loss, LOSS_TV_WEIGHT_DEFAULT, NULL);
    }
    cc_tensor *c, *lv;
    if (counter_forward(t, &m->P, &m->cm, x, &c, &lv)) return NULL;
    if (o->infer) return c;
    cc_tensor *y = tape_input(t, m->yndim, m->yd, m->y, 0);
    return counter_loss(t, c, lv, y, o->loss, NULL);
}

static int run_step(const bench_opts *o, bench_model *m, step_times *tm, cc_status *st)
{
    cc_tape *t = &m->tape;
    double t0 = omp_get_wtime();
    tape_reset(t);
    double t1 = t0;
    if (!o->infer) {
        params_zero_grad(&m->P);
        t1 = omp_get_wtime();
    }
    cc_tensor *out = model_forward(o, m);
    if (!out) return status_set(st, "forward: %s", tape_error(t) ? tape_error(t) : "failed");
    double t2 = omp_get_wtime(), t3 = t2, t4 = t2;
    if (!o->infer) {
        if (tape_backward(t, out)) return status_set(st, "backward: %s", tape_error(t));
        t3 = omp_get_wtime();
        if (optim_step(&m->opt, &m->P, st)) return -1;
        t4 = omp_get_wtime();
    }
    tm->total = t4 - t0;
    tm->zero = t1 - t0;
    tm->fwd = t2 - t1;
    tm->bwd = t3 - t2;
    tm->opt = t4 - t3;
    return 0;
}

/* MACs as torch_ref.py's count_macs(): each op's own count (conv
 * n*ho*wo*cout*cin*k*k, linear n*in*out: cc_op_def.macs); wgrad = fwd;
 * dgrad only where the layer's input needs a gradient (so the first conv
 * has none).  Read off the tape's nodes. */
static void count_macs(const cc_tape *t, int64_t *fwd, int64_t *dgrad)
{
    *fwd = *dgrad = 0;
    for (int k = 0; k < t->n_nodes; k++) {
        const cc_node *n = &t->nodes[k];
        const int64_t macs = tape_node_macs(n);
        if (!macs) continue;
        *fwd += macs;
        if (n->in[0]->requires_grad) *dgrad += macs;
    }
}

/* Current resident set size in MiB (VmRSS), or -1. */
static double rss_now_mib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    double kib = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) {
            kib = atof(line + 6);
            break;
        }
    fclose(f);
    return kib < 0 ? -1 : kib / 1024.0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static const char *const kind_names[OPK_COUNT] = {"conv",   "bnorm",  "eltwise", "pool",
                                                  "resample", "binary", "linear", "loss",
                                                  "reorder", "other_ops"};

/* One line per node of the last step (its tensors are still on the tape)
 * with its mean ms per step (per = 1 / steps): index, op, output shape,
 * forward and backward (backward includes its reorders). */
static void print_per_node(const cc_tape *t, const double (*pn)[2], double per)
{
    printf("  per node (mean ms per step; nodes under 0.05 ms left out):\n");
    for (int k = 0; k < t->n_nodes && k < t->prof_node_cap; k++) {
        const double f = 1e3 * pn[k][0] * per, b = 1e3 * pn[k][1] * per;
        if (f + b < 0.05) continue;
        const cc_node *n = &t->nodes[k];
        char shape[64];
        printf("    %4d %-12s %-18s fwd %7.2f  bwd %7.2f\n", k, tape_op_def(n->op)->name,
               tensor_shape_str(n->out, shape, sizeof shape), f, b);
    }
}

/* OMP_WAIT_POLICY / GOMP_SPINCOUNT as libgomp saw them at start-up
 * (ctx_omp_env_default sets passive when the user set neither). */
static const char *wait_policy(void)
{
    const char *w = getenv("OMP_WAIT_POLICY"), *s = getenv("GOMP_SPINCOUNT");
    if (s) return s;    /* the spin count overrides the policy's */
    return w ? w : "libgomp default";
}

int main(int argc, char **argv)
{
    ctx_omp_env_default(argv);  /* as the CLI does: passive waits unless set */
    bench_opts o;
    int pr = parse_args(argc, argv, &o);
    if (pr) return pr > 0 ? 0 : 2;
    cc_status st;
    status_clear(&st);
    cc_ctx ctx;
    if (ctx_init(&ctx, o.threads, &st)) {
        fprintf(stderr, "cellcount-bench: %s\n", st.msg);
        return 1;
    }
    int emulated = 0;
    if (ctx_set_precision(&ctx, o.bf16 ? "bf16" : "fp32", &emulated, &st)) {
        fprintf(stderr, "cellcount-bench: --precision bf16: %s\n", st.msg);
        ctx_free(&ctx);
        return 2;
    }
    if (emulated)
        fprintf(stderr, "cellcount-bench: note: this CPU has no AVX512-BF16 (oneDNN reports %s): "
                        "bf16 is emulated, slower than fp32\n", ctx_dnnl_isa_name());
    bench_model m;
    memset(&m, 0, sizeof m);
    int rc = 1;
    double *times = NULL, (*prof_node)[2] = NULL;
    if (model_build(&o, &ctx, &m, &st)) goto fail;

    step_times tm, sum = {0};
    const double rss_built = rss_now_mib();
    for (int i = 0; i < o.warmup; i++)
        if (run_step(&o, &m, &tm, &st)) goto fail;

    int64_t mac_fwd, mac_dgrad;
    count_macs(&m.tape, &mac_fwd, &mac_dgrad);
    const double gflop = o.infer ? 2e-9 * (double)mac_fwd
                                 : 2e-9 * (double)(2 * mac_fwd + mac_dgrad);

    times = calloc((size_t)o.steps, sizeof *times);
    if (!times) {
        status_set(&st, "out of memory");
        goto fail;
    }
    memset(m.tape.prof_seconds, 0, sizeof m.tape.prof_seconds);
    if (o.per_node) {
        /* the warm-up steps built every node: the node list is final */
        prof_node = calloc((size_t)m.tape.cap_nodes, sizeof *prof_node);
        if (!prof_node) {
            status_set(&st, "out of memory");
            goto fail;
        }
        m.tape.prof_node = prof_node;
        m.tape.prof_node_cap = m.tape.cap_nodes;
    }
    m.tape.profile = 1;
    const size_t allocs0 = ctx.n_allocs;
    const int64_t builds0 = m.tape.n_builds;
    for (int i = 0; i < o.steps; i++) {
        if (run_step(&o, &m, &tm, &st)) goto fail;
        times[i] = tm.total;
        sum.total += tm.total;
        sum.zero += tm.zero;
        sum.fwd += tm.fwd;
        sum.bwd += tm.bwd;
        sum.opt += tm.opt;
    }
    const size_t allocs = ctx.n_allocs - allocs0;
    const long long builds = (long long)(m.tape.n_builds - builds0);
    m.tape.profile = 0;

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    const double rss_mib = (double)ru.ru_maxrss / 1024.0;
    qsort(times, (size_t)o.steps, sizeof *times, cmp_double);
    const double med = o.steps % 2 ? times[o.steps / 2]
                                   : 0.5 * (times[o.steps / 2 - 1] + times[o.steps / 2]);
    const double mn = times[0], mx = times[o.steps - 1];
    const double per = 1.0 / o.steps, mean = sum.total * per;

    /* Breakdown: mean ms per step by kind. */
    double kind_ms[OPK_COUNT][2], attributed = 0;
    for (int k = 0; k < OPK_COUNT; k++)
        for (int d = 0; d < 2; d++) {
            kind_ms[k][d] = 1e3 * m.tape.prof_seconds[k][d] * per;
            attributed += kind_ms[k][d];
        }
    const double opt_ms = 1e3 * (sum.opt + sum.zero) * per;
    attributed += opt_ms;
    const double mean_ms = 1e3 * mean, overhead_ms = mean_ms - attributed;

    char cfg[160];
    snprintf(cfg, sizeof cfg, "%s %s %s batch=%d input=%dx%dx%d threads=%d",
             o.fpn ? "fpn" : "counter", o.infer ? "infer" : "train", ctx_precision_name(&ctx),
             o.batch, o.channels, o.height, o.width, omp_get_max_threads());
    printf("%s: median %.1f ms/step (min %.1f, max %.1f, n=%d, warmup %d), %.2f images/s, "
           "%.1f GFLOP/step -> %.1f GFLOP/s, peak RSS %.0f MiB, engine heap allocations in "
           "timed steps: %zu, node states (primitives) built in them: %lld\n",
           cfg, 1e3 * med, 1e3 * mn, 1e3 * mx, o.steps, o.warmup, o.batch / med, gflop,
           gflop / med, rss_mib, allocs, builds);
    printf("  phases (mean ms): zero-grad %.2f, forward+loss %.1f, backward %.1f, optimizer "
           "%.1f; oneDNN ISA %s; own kernels %s; OpenMP wait policy %s\n",
           1e3 * sum.zero * per, 1e3 * sum.fwd * per, 1e3 * sum.bwd * per, 1e3 * sum.opt * per,
           ctx_dnnl_isa_name(), isa_variant_name(ctx.isa), wait_policy());
    const double arena_mib = (double)m.tape.arena.high_water / 1048576.0;
    const double params_mib = (double)(m.P.n_train * 4 + m.P.n_buf) * 4 / 1048576.0;
    const double scratch_mib = (double)m.tape.scratch_size / 1048576.0;
    printf("  memory: RSS %.0f MiB before the first step (program, libraries, parameters),\n"
           "          step arena high-water %.0f MiB (gradient recycling %s),\n"
           "          parameter slabs (value, grad, Adam m, v) %.0f MiB, shared scratchpad %.0f MiB\n",
           rss_built, arena_mib, o.infer ? "n/a: inference" : m.tape.free_grads ? "on" : "off",
           params_mib, scratch_mib);
    printf("  time by kind (mean ms per step, share of the mean step %.1f ms):\n", mean_ms);
    for (int k = 0; k < OPK_COUNT; k++) {
        const double tot = kind_ms[k][0] + kind_ms[k][1];
        if (tot < 0.005) continue;
        printf("    %-10s fwd %8.1f  bwd %8.1f  total %8.1f  %5.1f%%\n", kind_names[k],
               kind_ms[k][0], kind_ms[k][1], tot, 100.0 * tot / mean_ms);
    }
    if (!o.infer)
        printf("    %-10s %37.1f  %5.1f%%\n", "optimizer", opt_ms, 100.0 * opt_ms / mean_ms);
    printf("    %-10s %37.1f  %5.1f%%  (step time minus the above)\n", "framework", overhead_ms,
           100.0 * overhead_ms / mean_ms);
    if (prof_node) print_per_node(&m.tape, prof_node, per);

    if (o.json) {
        printf("{\"program\":\"cellcount\",\"model\":\"%s\",\"mode\":\"%s\",\"dtype\":\"%s\","
               "\"batch\":%d,\"input\":[%d,%d,%d],\"threads\":%d,\"steps\":%d,\"warmup\":%d,"
               "\"median_ms\":%.3f,\"min_ms\":%.3f,\"max_ms\":%.3f,\"mean_ms\":%.3f,"
               "\"images_per_s\":%.4f,\"gflop_per_step\":%.4f,\"gflops_achieved\":%.3f,"
               "\"fwd_macs\":%lld,\"dgrad_macs\":%lld,\"peak_rss_mib\":%.1f,"
               "\"heap_allocs\":%zu,\"node_builds\":%lld,\"isa\":\"%s\",\"own_isa\":\"%s\",\"wait_policy\":\"%s\",\"arena_mib\":%.1f,\"params_mib\":%.1f,"
               "\"scratch_mib\":%.1f,\"free_grads\":%d,\"breakdown_ms\":{",
               o.fpn ? "fpn" : "counter", o.infer ? "infer" : "train", ctx_precision_name(&ctx),
               o.batch, o.channels, o.height, o.width, omp_get_max_threads(), o.steps, o.warmup, 1e3 * med, 1e3 * mn,
               1e3 * mx, mean_ms, o.batch / med, gflop, gflop / med, (long long)mac_fwd,
               (long long)mac_dgrad, rss_mib, allocs, builds, ctx_dnnl_isa_name(), isa_variant_name(ctx.isa),
               wait_policy(), arena_mib, params_mib,
               scratch_mib, m.tape.free_grads);
        for (int k = 0; k < OPK_COUNT; k++)
            printf("\"%s_fwd\":%.3f,\"%s_bwd\":%.3f,", kind_names[k], kind_ms[k][0], kind_names[k],
                   kind_ms[k][1]);
        printf("\"optimizer\":%.3f,\"framework\":%.3f},\"times_ms\":[", opt_ms, overhead_ms);
        for (int i = 0; i < o.steps; i++) printf("%s%.2f", i ? "," : "", 1e3 * times[i]);
        printf("]}\n");
    }
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "cellcount-bench: %s\n", st.msg);
out:
    free(times);
    free(prof_node);
    model_free(&m);
    ctx_free(&ctx);
    return rc;
}
