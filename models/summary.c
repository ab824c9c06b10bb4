/* summary.c - see summary.h. */
#include "models/summary.h"

#include <stdlib.h>
#include <string.h>

#include "autodiff/op.h"
#include "autodiff/ops.h"
#include "models/counter.h"
#include "models/fpn.h"

void summary_options_default(summary_options *o, summary_model model)
{
    memset(o, 0, sizeof *o);
    o->model = model;
    strcpy(o->arch, "vgg11");
    o->channels = 1;
    o->height = model == SUMMARY_FPN ? 192 : 96;
    o->width = model == SUMMARY_FPN ? 256 : 128;
    o->depth = 4;
    o->fpn_width = 128;
    o->width_div = 1;
}

const char *summary_commas(int64_t v, char *buf, size_t n)
{
    char raw[32];
    snprintf(raw, sizeof raw, "%lld", (long long)(v < 0 ? -v : v));
    size_t len = strlen(raw), o = 0;
    if (v < 0 && o + 1 < n) buf[o++] = '-';
    for (size_t i = 0; i < len && o + 1 < n; i++) {
        if (i && (len - i) % 3 == 0 && o + 1 < n) buf[o++] = ',';
        if (o + 1 < n) buf[o++] = raw[i];
    }
    buf[o] = '\0';
    return buf;
}

/* Index of the store tensor x is, or -1. */
static int param_of(const cc_params *P, const cc_tensor *x)
{
    if (!x || !x->is_param || !P->n) return -1;
    for (int i = 0; i < P->n; i++)
        if (x == &P->p[i].t) return i;
    return -1;
}

void summary_walk(const cc_tape *t, const cc_params *P, int64_t batch, FILE *f,
                  summary_totals *tot)
{
    memset(tot, 0, sizeof *tot);
    for (int i = 0; i < P->n; i++) {
        if (P->p[i].kind == PARAM_TRAINABLE)
            tot->params += (int64_t)P->p[i].numel;
        else
            tot->buffers += (int64_t)P->p[i].numel;
    }
    if (f)
        fprintf(f, "%-5s %-16s %-36s %-18s %12s %16s\n", "#", "op", "layer", "output shape",
                "params", "MACs/image");
    char sh[64], n1[32], n2[32];
    /* a tensor used by several nodes (a shared weight) counts once */
    unsigned char *seen = calloc((size_t)(P->n ? P->n : 1), 1);
    for (int k = 0; k < t->n_nodes; k++) {
        const cc_node *n = &t->nodes[k];
        const char *op = tape_op_def(n->op)->name;
        if (!strcmp(op, "reorder")) continue;   /* layout only */
        int64_t np = 0, macs = tape_node_macs(n);
        char layer[CC_PARAM_NAME] = "";
        for (int j = 0; j < n->n_in; j++) {
            int pi = param_of(P, n->in[j]);
            if (pi < 0) continue;
            if (!layer[0]) {
                snprintf(layer, sizeof layer, "%s", P->p[pi].name);
                char *slash = strrchr(layer, '/');
                if (slash) *slash = '\0';
            }
            if (P->p[pi].kind != PARAM_TRAINABLE) continue;
            np += (int64_t)P->p[pi].numel;
            if (seen && !seen[pi]) {
                seen[pi] = 1;
                tot->params_used += (int64_t)P->p[pi].numel;
            }
        }
        const cc_tensor *o = n->out;
        macs /= batch > 0 ? batch : 1;
        tot->macs += macs;
        tot->layers++;
        if (f)
            fprintf(f, "%-5d %-16s %-36s %-18s %12s %16s\n", tot->layers, op,
                    layer[0] ? layer : "-", tensor_shape_str(o, sh, sizeof sh),
                    np ? summary_commas(np, n1, sizeof n1) : "-",
                    macs ? summary_commas(macs, n2, sizeof n2) : "-");
    }
    free(seen);
}

void summary_print_totals(FILE *f, const summary_totals *tot)
{
    char a[32], b[32], c[32];
    fprintf(f, "Trainable parameters: %s\n", summary_commas(tot->params, a, sizeof a));
    if (tot->params_used != tot->params)
        fprintf(f, "  (of which read by the forward: %s)\n",
                summary_commas(tot->params_used, b, sizeof b));
    fprintf(f, "Buffers (BN running statistics, counts): %s\n",
            summary_commas(tot->buffers, b, sizeof b));
    const int giga = tot->macs >= 1000000000;
    fprintf(f, "Forward multiply-accumulates per image: %.4g %s (%s)\n",
            (double)tot->macs / (giga ? 1e9 : 1e6), giga ? "G" : "M",
            summary_commas(tot->macs, c, sizeof c));
}

void summary_print_params(FILE *f, const cc_params *P)
{
    char sh[64], num[32];
    fprintf(f, "%-56s %-18s %-9s %12s\n", "path", "shape", "kind", "elements");
    for (int i = 0; i < P->n; i++) {
        const cc_param *p = &P->p[i];
        size_t o = 0;
        sh[0] = '\0';
        for (int d = 0; d < p->ndim && o < sizeof sh; d++)
            o += (size_t)snprintf(sh + o, sizeof sh - o, d ? "x%lld" : "%lld",
                                  (long long)p->shape[d]);
        fprintf(f, "%-56s %-18s %-9s %12s\n", p->name, sh,
                p->kind == PARAM_TRAINABLE ? "trainable" : "buffer",
                summary_commas((int64_t)p->numel, num, sizeof num));
    }
}

int summary_run(const summary_options *o, FILE *f, summary_totals *tot, cc_status *st)
{
    memset(tot, 0, sizeof *tot);
    cc_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    if (ctx_init(&ctx, o->threads, st)) return -1;
    cc_params P;
    params_init(&P, &ctx);
    cc_tape t;
    tape_init(&t, &ctx, 0);
    t.no_fold = 1;      /* one row per layer as defined, as PyTorch lists them */
    fpn_model fm;
    counter_model cm;
    memset(&cm, 0, sizeof cm);
    int rc = -1;
    const int64_t dims[4] = {1, o->channels, o->height, o->width};
    if (o->height < 1 || o->width < 1 || o->channels < 1) {
        status_set(st, "summary: bad input size %dx%dx%d", o->channels, o->height, o->width);
        goto out;
    }
    if (o->model == SUMMARY_FPN) {
        fpn_config cfg = {o->depth, o->fpn_width, o->channels};
        if (fpn_build(&P, &cfg, "fpn", &fm, st) || params_finalize(&P, st)) goto out;
        fpn_init(&P, &fm, 1);
        fpn_output out;
        cc_tensor *x = tape_input(&t, 4, dims, NULL, 0);
        if (fpn_forward(&t, &P, &fm, x, &out)) {
            status_set(st, "%s", tape_error(&t));
            goto out;
        }
    } else {
        counter_config cfg = counter_config_default();
        snprintf(cfg.arch, sizeof cfg.arch, "%s", o->arch);
        cfg.in_channels = o->channels;
        cfg.height = o->height;
        cfg.width = o->width;
        cfg.width_div = o->width_div;
        if (counter_build(&P, &cfg, "counter", &cm, st) || params_finalize(&P, st)) goto out;
        counter_init(&P, &cm, 1);
        cc_tensor *x = tape_input(&t, 4, dims, NULL, 0), *c, *lv;
        if (counter_forward(&t, &P, &cm, x, &c, &lv)) {
            status_set(st, "%s", tape_error(&t));
            goto out;
        }
    }
    if (f) {
        if (o->model == SUMMARY_FPN)
            fprintf(f, "Model: FPN, depth %d, width %d, input %dx%dx%d (CxHxW)\n\n", o->depth,
                    o->fpn_width, o->channels, o->height, o->width);
        else
            fprintf(f, "Model: counter %s, width divisor %d, input %dx%dx%d (CxHxW)\n\n",
                    o->arch, o->width_div, o->channels, o->height, o->width);
    }
    summary_walk(&t, &P, 1, f, tot);
    if (f) {
        fprintf(f, "\n");
        summary_print_totals(f, tot);
        if (o->list_params) {
            fprintf(f, "\nParameters (HDF5 path /params/<path>):\n");
            summary_print_params(f, &P);
        }
    }
    rc = 0;
out:
    counter_free(&cm);
    tape_free(&t);
    params_free(&P);
    ctx_free(&ctx);
    return rc;
}
