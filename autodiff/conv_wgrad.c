/* conv_wgrad.c - oneDNN's convolution weight gradient in fixed pieces of
 * the batch, added in order, or of the output channels, each written into
 * its own slice of the gradient: the same bits for any thread count (see
 * conv_wgrad.h). */
#include "autodiff/conv_wgrad.h"

#include <assert.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define WGRAD_MAX_PIECES 16
#define WGRAD_MAX_BYTES ((size_t)32 << 20)
#define WGRAD_MIN_MACS_PER_FLOAT 64
#define WGRAD_NMEM 6    /* per piece: src, diff_dst, diff_weights, diff_bias, scratchpad,
                           (channel pieces) the plain gradient slice */
#define WGRAD_MIN_PIECE_MACS ((int64_t)1 << 20)   /* channel pieces: each at least this */

struct conv_wgrad {
    int np;                     /* pieces */
    int by_channel;             /* 0: pieces of the batch; 1: of the output channels */
    int64_t m;                  /* images (channels) per piece; the last has n - (np - 1) m */
    dnnl_primitive_t prim[2];   /* a piece of m images, the last piece (NULL: same as [0]) */
    dnnl_memory_desc_t scr_md[2];   /* scratchpad of one run of prim[k] (zeroed: none) */
    size_t src_img, dst_img;    /* bytes per image of src and diff_dst */
    size_t dw_floats, db_floats;    /* db_floats 0: no bias */
    /* channel pieces: diff_dst's bytes per image and channel (its layout
     * keeps an image's channels of a piece together), the gradient's
     * floats per output channel, and per piece the reorder of its gradient
     * into its slice of the plain one */
    size_t dst_chan, w_chan;
    int64_t n, cout;
    dnnl_primitive_t rprim[2];
    size_t dwp;                 /* a piece's gradient in the primitive's layout, bytes */
    size_t scr;                 /* a piece's scratchpad, bytes (pieces_alloc) */
    dnnl_stream_t *streams;     /* one per piece: pieces run concurrently */
    dnnl_memory_t *mem;         /* np x WGRAD_NMEM, bound on every run */
};

static size_t round64(size_t b) { return (b + 63) / 64 * 64; }

int conv_wgrad_pieces(int64_t n, size_t dw_bytes, int64_t macs)
{
    int np = n < WGRAD_MAX_PIECES ? (int)n : WGRAD_MAX_PIECES;
    const int64_t by_work = dw_bytes ? macs / (WGRAD_MIN_MACS_PER_FLOAT * (int64_t)(dw_bytes / sizeof(float))) : np;
    if (by_work < np) np = (int)by_work;
    while (np > 1 && (size_t)np * dw_bytes > WGRAD_MAX_BYTES) np--;
    return np < 1 ? 1 : np;
}

int conv_wgrad_channel_pieces(int64_t cout, int blk, size_t dw_bytes, size_t src_bytes,
                              int64_t macs)
{
    if (dw_bytes < src_bytes || blk < 1 || cout % blk || cout < 2 * blk) return 1;
    int64_t np = cout / blk;
    if (np > WGRAD_MAX_PIECES) np = WGRAD_MAX_PIECES;
    if (macs / WGRAD_MIN_PIECE_MACS < np) np = macs / WGRAD_MIN_PIECE_MACS;
    return np < 1 ? 1 : (int)np;
}

/* The tag md was made with, among the batch-outermost ones we slice, or
 * dnnl_format_tag_undef. */
static dnnl_format_tag_t md_tag(const dnnl_memory_desc_t *md)
{
    static const dnnl_format_tag_t tags[] = {dnnl_abcd, dnnl_acdb, dnnl_aBcd8b, dnnl_aBcd16b};
    if (md->ndims != 4 || md->data_type != dnnl_f32 || md->offset0 != 0) return dnnl_format_tag_undef;
    for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++) {
        dnnl_memory_desc_t x;
        if (dnnl_memory_desc_init_by_tag(&x, 4, md->dims, dnnl_f32, tags[i]) == dnnl_success &&
            dnnl_memory_desc_equal(&x, md))
            return tags[i];
    }
    return dnnl_format_tag_undef;
}

static int md_with_batch(dnnl_memory_desc_t *out, const dnnl_memory_desc_t *md,
                         dnnl_format_tag_t tag, int64_t m)
{
    dnnl_dims_t d;
    memcpy(d, md->dims, sizeof d);
    d[0] = m;
    return dnnl_memory_desc_init_by_tag(out, 4, d, dnnl_f32, tag) == dnnl_success ? 0 : -1;
}

/* The primitive of one piece of m images, made for one thread (see
 * conv_wgrad_make).  Returns 0 with *prim set, 0 with *prim
 * NULL when oneDNN offers no fast kernel for it, -1 on failure. */
static int piece_make(cc_tape *t, conv_wgrad *g, int k, int64_t m, const dnnl_memory_desc_t *src_md,
                      dnnl_format_tag_t src_tag, const dnnl_memory_desc_t *dst_md,
                      dnnl_format_tag_t dst_tag, const dnnl_memory_desc_t *dw_md,
                      const dnnl_memory_desc_t *b_md, const dnnl_dims_t strides,
                      const dnnl_dims_t pads, dnnl_memory_desc_t pmd[2], cc_status *st)
{
    dnnl_memory_desc_t w_any;
    dnnl_convolution_desc_t fd, bd;
    dnnl_primitive_desc_t fpd = NULL, pd = NULL;
    g->prim[k] = NULL;
    if (md_with_batch(&pmd[0], src_md, src_tag, m) || md_with_batch(&pmd[1], dst_md, dst_tag, m) ||
        dnnl_memory_desc_init_by_tag(&w_any, 4, dw_md->dims, dnnl_f32, dnnl_format_tag_any) !=
            dnnl_success)
        return 0;
    /* the forward primitive descriptor is only the backward one's hint */
    if (dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct,
                                           &pmd[0], &w_any, b_md, &pmd[1], strides, pads,
                                           pads) != dnnl_success ||
        tape_pd_create(t, &fpd, &fd, NULL) != dnnl_success)
        return 0;
    int rc = 0;
    if (dnnl_convolution_backward_weights_desc_init(&bd, dnnl_convolution_direct, &pmd[0], dw_md,
                                                    b_md, &pmd[1], strides, pads,
                                                    pads) == dnnl_success &&
        tape_pd_create(t, &pd, &bd, fpd) == dnnl_success && !op_pd_is_ref(pd) &&
        dnnl_memory_desc_equal(dnnl_primitive_desc_query_md(pd, dnnl_query_diff_weights_md, 0),
                               dw_md)) {
        dnnl_status_t e = dnnl_primitive_create(&g->prim[k], pd);
        if (e != dnnl_success) {
            g->prim[k] = NULL;
            rc = op_dnnl_fail(st, "conv2d", "weight-gradient piece primitive creation", e);
        } else {
            const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
            if (smd) g->scr_md[k] = *smd;
        }
    }
    if (pd) dnnl_primitive_desc_destroy(pd);
    dnnl_primitive_desc_destroy(fpd);
    return rc;
}

/* g's per-piece stream and memory-object slots, for g->np pieces (the
 * callers make the objects), and the scratchpad size of a piece's run.
 * Returns 0, or -1 with a message and g freed. */
static int pieces_alloc(conv_wgrad *g, cc_status *st)
{
    const size_t s0 = dnnl_memory_desc_get_size(&g->scr_md[0]);
    const size_t s1 = dnnl_memory_desc_get_size(&g->scr_md[1]);
    g->scr = round64(s0 > s1 ? s0 : s1);
    g->streams = calloc((size_t)g->np, sizeof *g->streams);
    g->mem = calloc((size_t)g->np * WGRAD_NMEM, sizeof *g->mem);
    if (g->streams && g->mem) return 0;
    conv_wgrad_free(g);
    return status_set(st, "conv2d: out of memory for the weight-gradient pieces");
}

/* The primitive of channel piece k (m output channels of the whole batch)
 * and the reorder of its gradient into plain [m, in, kh, kw], both made
 * for one thread.  Returns 0 with g->prim[k] and g->rprim[k] set, 0 with
 * g->prim[k] NULL when oneDNN offers no fast kernel (or the reorder wants
 * a scratchpad), -1 on failure.  pmd[0]: the piece's gradient layout (the
 * primitive's choice), pmd[1]: its diff_dst. */
static int channel_piece_make(cc_tape *t, conv_wgrad *g, int k, int64_t m,
                              const dnnl_memory_desc_t *src_md, const dnnl_memory_desc_t *dst_md,
                              dnnl_format_tag_t dst_tag, const dnnl_memory_desc_t *dw_md,
                              int has_bias, const dnnl_dims_t strides, const dnnl_dims_t pads,
                              dnnl_memory_desc_t pmd[2], cc_status *st)
{
    dnnl_memory_desc_t w_any, b_md, w_plain;
    dnnl_convolution_desc_t fd, bd;
    dnnl_primitive_desc_t fpd = NULL, pd = NULL, rpd = NULL;
    dnnl_dims_t dd, wd, bdims = {m};
    memcpy(dd, dst_md->dims, sizeof dd);
    memcpy(wd, dw_md->dims, sizeof wd);
    dd[1] = wd[0] = m;
    g->prim[k] = g->rprim[k] = NULL;
    if (dnnl_memory_desc_init_by_tag(&pmd[1], 4, dd, dnnl_f32, dst_tag) != dnnl_success ||
        dnnl_memory_desc_get_size(&pmd[1]) != (size_t)(g->n * m) * g->dst_chan ||
        dnnl_memory_desc_init_by_tag(&w_any, 4, wd, dnnl_f32, dnnl_format_tag_any) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&w_plain, 4, wd, dnnl_f32, dnnl_abcd) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&b_md, 1, bdims, dnnl_f32, dnnl_a) != dnnl_success)
        return 0;
    if (dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct,
                                           src_md, &w_any, has_bias ? &b_md : NULL, &pmd[1], strides,
                                           pads, pads) != dnnl_success ||
        tape_pd_create(t, &fpd, &fd, NULL) != dnnl_success)
        return 0;
    int rc = 0;
    if (dnnl_convolution_backward_weights_desc_init(&bd, dnnl_convolution_direct, src_md, &w_any,
                                                    has_bias ? &b_md : NULL, &pmd[1], strides, pads,
                                                    pads) == dnnl_success &&
        tape_pd_create(t, &pd, &bd, fpd) == dnnl_success && !op_pd_is_ref(pd) &&
        dnnl_memory_desc_equal(dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0), src_md) &&
        dnnl_memory_desc_equal(dnnl_primitive_desc_query_md(pd, dnnl_query_diff_dst_md, 0), &pmd[1])) {
        const dnnl_memory_desc_t *pw = dnnl_primitive_desc_query_md(pd, dnnl_query_diff_weights_md, 0);
        dnnl_primitive_attr_t attr = tape_attr_new();
        const dnnl_memory_desc_t *rs = NULL;
        if (attr && dnnl_reorder_primitive_desc_create(&rpd, pw, t->ctx->engine, &w_plain,
                                                       t->ctx->engine, attr) == dnnl_success &&
            (!(rs = dnnl_primitive_desc_query_md(rpd, dnnl_query_scratchpad_md, 0)) ||
             !dnnl_memory_desc_get_size(rs))) {
            const size_t dwp = round64(dnnl_memory_desc_get_size(pw));
            if (dwp > g->dwp) g->dwp = dwp;
            pmd[0] = *pw;
            dnnl_status_t e = dnnl_primitive_create(&g->prim[k], pd);
            if (e == dnnl_success) e = dnnl_primitive_create(&g->rprim[k], rpd);
            if (e != dnnl_success) {
                rc = op_dnnl_fail(st, "conv2d", "weight-gradient channel piece creation", e);
            } else {
                const dnnl_memory_desc_t *smd =
                    dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
                if (smd) g->scr_md[k] = *smd;
            }
        }
        if (attr) dnnl_primitive_attr_destroy(attr);
    }
    if (rpd) dnnl_primitive_desc_destroy(rpd);
    if (pd) dnnl_primitive_desc_destroy(pd);
    dnnl_primitive_desc_destroy(fpd);
    return rc;
}

/* The channel split of conv_wgrad_make: returns 0 with *out set, 0 with
 * *out NULL when out of scope, -1 on failure. */
static int channel_make(cc_tape *t, const dnnl_memory_desc_t *src_md, const dnnl_memory_desc_t *dst_md,
                        const dnnl_memory_desc_t *dw_md, const dnnl_memory_desc_t *gw_md,
                        int has_bias, const dnnl_dims_t strides, const dnnl_dims_t pads,
                        conv_wgrad **out, cc_status *st)
{
    const dnnl_format_tag_t dst_tag = md_tag(dst_md);
    const int64_t n = dst_md->dims[0], cout = dw_md->dims[0];
    const int blk = dst_tag == dnnl_aBcd16b ? 16 : dst_tag == dnnl_aBcd8b ? 8 : 16;
    dnnl_memory_desc_t plain;
    if ((dst_tag != dnnl_abcd && dst_tag != dnnl_aBcd8b && dst_tag != dnnl_aBcd16b) ||
        dnnl_memory_desc_init_by_tag(&plain, 4, dw_md->dims, dnnl_f32, dnnl_abcd) != dnnl_success ||
        !dnnl_memory_desc_equal(&plain, gw_md))
        return 0;
    const int64_t macs = dst_md->dims[0] * dst_md->dims[1] * dst_md->dims[2] * dst_md->dims[3] *
                         dw_md->dims[1] * dw_md->dims[2] * dw_md->dims[3];
    int np = conv_wgrad_channel_pieces(cout, blk, dnnl_memory_desc_get_size(dw_md),
                                       dnnl_memory_desc_get_size(src_md), macs);
    if (np < 2) return 0;
    const int64_t m = (cout / blk + np - 1) / np * blk;
    np = (int)((cout + m - 1) / m);
    const int64_t last = cout - (int64_t)(np - 1) * m;
    conv_wgrad *g = calloc(1, sizeof *g);
    if (!g) return status_set(st, "conv2d: out of memory for the weight-gradient pieces");
    g->by_channel = 1;
    g->cout = cout;
    g->np = np;
    g->m = m;
    g->n = n;
    g->dst_img = dnnl_memory_desc_get_size(dst_md) / (size_t)n;
    g->dst_chan = g->dst_img / (size_t)cout;
    g->w_chan = (size_t)(dw_md->dims[1] * dw_md->dims[2] * dw_md->dims[3]);
    g->db_floats = has_bias ? (size_t)cout : 0;
    dnnl_memory_desc_t pmd[2][2];
    assert(omp_get_max_threads() == 1);     /* the pieces' kernels split work for one thread */
    int rc = g->dst_img == (size_t)cout * g->dst_chan
                 ? channel_piece_make(t, g, 0, m, src_md, dst_md, dst_tag, dw_md, has_bias,
                                      strides, pads, pmd[0], st)
                 : 0;
    if (!rc && g->prim[0] && last != m)
        rc = channel_piece_make(t, g, 1, last, src_md, dst_md, dst_tag, dw_md, has_bias, strides,
                                pads, pmd[1], st);
    if (rc || !g->prim[0] || (last != m && !g->prim[1])) {
        conv_wgrad_free(g);
        return rc;
    }
    if (pieces_alloc(g, st)) return -1;
    for (int p = 0; p < np; p++) {
        const int k = p == np - 1 && last != m;
        const int64_t mp = k ? last : m;
        dnnl_memory_t *mm = g->mem + (size_t)p * WGRAD_NMEM;
        dnnl_memory_desc_t b_md, wpl;
        const dnnl_dims_t bd = {mp};
        dnnl_dims_t wd;
        memcpy(wd, dw_md->dims, sizeof wd);
        wd[0] = mp;
        dnnl_memory_desc_init_by_tag(&b_md, 1, bd, dnnl_f32, dnnl_a);
        dnnl_memory_desc_init_by_tag(&wpl, 4, wd, dnnl_f32, dnnl_abcd);
        if (dnnl_stream_create(&g->streams[p], t->ctx->engine, dnnl_stream_default_flags) ||
            tape_mem_create(t, &mm[0], src_md, st) || tape_mem_create(t, &mm[1], &pmd[k][1], st) ||
            tape_mem_create(t, &mm[2], &pmd[k][0], st) ||
            (has_bias && tape_mem_create(t, &mm[3], &b_md, st)) ||
            (dnnl_memory_desc_get_size(&g->scr_md[k]) &&
             tape_mem_create(t, &mm[4], &g->scr_md[k], st)) ||
            tape_mem_create(t, &mm[5], &wpl, st)) {
            conv_wgrad_free(g);
            return st && st->failed ? -1
                                    : status_set(st, "conv2d: oneDNN stream creation failed");
        }
    }
    *out = g;
    return 0;
}

int conv_wgrad_make(cc_tape *t, const dnnl_memory_desc_t *src_md, const dnnl_memory_desc_t *dst_md,
                    const dnnl_memory_desc_t *dw_md, const dnnl_memory_desc_t *gw_md, int has_bias,
                    const dnnl_dims_t strides, const dnnl_dims_t pads, conv_wgrad **out,
                    cc_status *st)
{
    *out = NULL;
    if (channel_make(t, src_md, dst_md, dw_md, gw_md, has_bias, strides, pads, out, st)) return -1;
    if (*out) return 0;
    const int64_t n = src_md->dims[0];
    const dnnl_format_tag_t src_tag = md_tag(src_md), dst_tag = md_tag(dst_md);
    const size_t dw_bytes = dnnl_memory_desc_get_size(dw_md);
    const size_t db_floats = has_bias ? (size_t)dw_md->dims[0] : 0;
    if (n < 2 || src_tag == dnnl_format_tag_undef || dst_tag == dnnl_format_tag_undef ||
        dw_bytes % sizeof(float))
        return 0;
    const int64_t macs = dst_md->dims[0] * dst_md->dims[1] * dst_md->dims[2] * dst_md->dims[3] *
                         dw_md->dims[1] * dw_md->dims[2] * dw_md->dims[3];
    int np = conv_wgrad_pieces(n, dw_bytes + db_floats * sizeof(float), macs);
    if (np < 2) return 0;
    const int64_t m = (n + np - 1) / np;
    np = (int)((n + m - 1) / m);
    const int64_t last = n - (int64_t)(np - 1) * m;

    conv_wgrad *g = calloc(1, sizeof *g);
    if (!g) return status_set(st, "conv2d: out of memory for the weight-gradient pieces");
    g->np = np;
    g->m = m;
    g->src_img = dnnl_memory_desc_get_size(src_md) / (size_t)n;
    g->dst_img = dnnl_memory_desc_get_size(dst_md) / (size_t)n;
    g->dw_floats = dw_bytes / sizeof(float);
    g->db_floats = db_floats;
    dnnl_memory_desc_t b_md, pmd[2][2];
    const dnnl_dims_t bd = {dw_md->dims[0]};
    if (has_bias) dnnl_memory_desc_init_by_tag(&b_md, 1, bd, dnnl_f32, dnnl_a);

    assert(omp_get_max_threads() == 1);     /* the pieces' kernels split work for one thread */
    int rc = piece_make(t, g, 0, m, src_md, src_tag, dst_md, dst_tag, dw_md,
                        has_bias ? &b_md : NULL, strides, pads, pmd[0], st);
    if (!rc && g->prim[0] && last != m)
        rc = piece_make(t, g, 1, last, src_md, src_tag, dst_md, dst_tag, dw_md,
                        has_bias ? &b_md : NULL, strides, pads, pmd[1], st);
    if (rc || !g->prim[0] || (last != m && !g->prim[1])) {
        conv_wgrad_free(g);
        return rc;
    }
    /* the pieces' slices must tile the full tensors exactly */
    if (dnnl_memory_desc_get_size(&pmd[0][0]) != (size_t)m * g->src_img ||
        dnnl_memory_desc_get_size(&pmd[0][1]) != (size_t)m * g->dst_img) {
        conv_wgrad_free(g);
        return 0;
    }
    if (pieces_alloc(g, st)) return -1;
    for (int p = 0; p < np; p++) {
        const int k = p == np - 1 && last != m;
        dnnl_memory_t *mm = g->mem + (size_t)p * WGRAD_NMEM;
        if (dnnl_stream_create(&g->streams[p], t->ctx->engine, dnnl_stream_default_flags) ||
            tape_mem_create(t, &mm[0], &pmd[k][0], st) || tape_mem_create(t, &mm[1], &pmd[k][1], st) ||
            tape_mem_create(t, &mm[2], dw_md, st) ||
            (has_bias && tape_mem_create(t, &mm[3], &b_md, st)) ||
            (dnnl_memory_desc_get_size(&g->scr_md[k]) &&
             tape_mem_create(t, &mm[4], &g->scr_md[k], st))) {
            conv_wgrad_free(g);
            return st && st->failed ? -1
                                    : status_set(st, "conv2d: oneDNN stream creation failed");
        }
    }
    *out = g;
    return 0;
}

/* dst[i] = part[0][i] + part[1][i] + ... in piece order, whatever the
 * split of i among threads. */
static void sum_pieces(float *dst, const float *part, int np, size_t n, size_t stride)
{
#pragma omp parallel for schedule(static) if (n >= 65536)
    for (size_t i = 0; i < n; i++) {
        float a = part[i];
        for (int p = 1; p < np; p++) a += part[(size_t)p * stride + i];
        dst[i] = a;
    }
}

/* Bind piece p's memory objects (src, diff_dst, its gradient dw, its bias
 * gradient db and scratchpad scr where it has them) and run its primitive
 * (k: 1 for the shorter last piece) on its stream.  Inside the callers'
 * parallel loop oneDNN runs the kernel on the calling thread, which is
 * what the primitive was made for.  Returns 0, or -1 when oneDNN fails;
 * the caller waits on the stream. */
static int piece_exec(conv_wgrad *g, int p, int k, const void *src, const void *diff_dst,
                      void *dw, float *db, void *scr)
{
    dnnl_memory_t *mm = g->mem + (size_t)p * WGRAD_NMEM;
    mem_bind(mm[0], (void *)src);
    mem_bind(mm[1], (void *)diff_dst);
    mem_bind(mm[2], dw);
    dnnl_exec_arg_t a[5] = {{DNNL_ARG_SRC, mm[0]},
                            {DNNL_ARG_DIFF_DST, mm[1]},
                            {DNNL_ARG_DIFF_WEIGHTS, mm[2]}};
    int na = 3;
    if (mm[3]) {
        mem_bind(mm[3], db);
        a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_BIAS, mm[3]};
    }
    if (mm[4]) {
        mem_bind(mm[4], scr);
        a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, mm[4]};
    }
    return dnnl_primitive_execute(g->prim[k], g->streams[p], na, a) == dnnl_success ? 0 : -1;
}

/* The channel split of conv_wgrad_run. */
static int channel_run(cc_tape *t, conv_wgrad *g, const float *src, const float *diff_dst,
                       float *gw, float *db, cc_status *st)
{
    const int np = g->np;
    const size_t dwp = g->dwp, scr = g->scr;
    const size_t dstp = round64((size_t)(g->n * g->m) * g->dst_chan);
    const size_t bias = db || !g->db_floats ? 0 : round64(g->db_floats * sizeof(float));
    char *buf = tape_alloc(t, (size_t)np * (dwp + dstp + scr) + bias, st);
    if (!buf) return -1;
    float *pb = db ? db : (float *)(buf + (size_t)np * (dwp + dstp + scr));
    int failed = 0;
#pragma omp parallel for schedule(dynamic, 1) reduction(| : failed)
    for (int p = 0; p < np; p++) {
        const int k = p == np - 1 && g->prim[1];
        const int64_t c0 = (int64_t)p * g->m;
        char *pw = buf + (size_t)p * dwp, *pd = buf + (size_t)np * dwp + (size_t)p * dstp,
             *ps = buf + (size_t)np * (dwp + dstp) + (size_t)p * scr;
        /* this piece's channels of every image: one run of bytes per image */
        const size_t run = (k ? (size_t)(g->cout - c0) : (size_t)g->m) * g->dst_chan;
        const char *from = (const char *)diff_dst + (size_t)c0 * g->dst_chan;
        for (int64_t i = 0; i < g->n; i++)
            memcpy(pd + (size_t)i * run, from + (size_t)i * g->dst_img, run);
        int bad = piece_exec(g, p, k, src, pd, pw, g->db_floats ? pb + c0 : NULL, ps);
        if (!bad && gw) {   /* into this piece's rows of the plain gradient */
            dnnl_memory_t *mm = g->mem + (size_t)p * WGRAD_NMEM;
            mem_bind(mm[5], gw + (size_t)c0 * g->w_chan);
            dnnl_exec_arg_t r[2] = {{DNNL_ARG_FROM, mm[2]}, {DNNL_ARG_TO, mm[5]}};
            bad = dnnl_primitive_execute(g->rprim[k], g->streams[p], 2, r) != dnnl_success;
        }
        if (bad || dnnl_stream_wait(g->streams[p]) != dnnl_success) failed |= 1;
    }
    if (failed) return status_set(st, "conv2d: oneDNN weight-gradient piece execution failed");
    return 0;
}

int conv_wgrad_writes_plain(const conv_wgrad *g) { return g->by_channel; }

int conv_wgrad_run(cc_tape *t, conv_wgrad *g, const float *src, const float *diff_dst, float *dw,
                   float *gw, float *db, cc_status *st)
{
    if (g->by_channel) return channel_run(t, g, src, diff_dst, gw, db, st);
    const int np = g->np;
    const size_t wstride = round64(g->dw_floats * sizeof(float)) / sizeof(float);
    const size_t bstride = round64(g->db_floats * sizeof(float)) / sizeof(float);
    const size_t scr = g->scr;
    float *pw = tape_alloc(t, (size_t)np * (wstride + bstride) * sizeof(float) + (size_t)np * scr, st);
    if (!pw) return -1;
    float *pb = pw + (size_t)np * wstride;
    char *ps = (char *)(pb + (size_t)np * bstride);
    int failed = 0;
#pragma omp parallel for schedule(dynamic, 1) reduction(| : failed)
    for (int p = 0; p < np; p++) {
        const int k = p == np - 1 && g->prim[1];
        if (piece_exec(g, p, k, (const char *)src + (size_t)p * (size_t)g->m * g->src_img,
                       (const char *)diff_dst + (size_t)p * (size_t)g->m * g->dst_img,
                       pw + (size_t)p * wstride, pb + (size_t)p * bstride, ps + (size_t)p * scr) ||
            dnnl_stream_wait(g->streams[p]) != dnnl_success)
            failed |= 1;
    }
    if (failed) return status_set(st, "conv2d: oneDNN weight-gradient piece execution failed");
    sum_pieces(dw, pw, np, g->dw_floats, wstride);
    if (db && g->db_floats) sum_pieces(db, pb, np, g->db_floats, bstride);
    return 0;
}

void conv_wgrad_free(conv_wgrad *g)
{
    if (!g) return;
    for (int k = 0; k < 2; k++) {
        if (g->prim[k]) dnnl_primitive_destroy(g->prim[k]);
        if (g->rprim[k]) dnnl_primitive_destroy(g->rprim[k]);
    }
    if (g->mem)
        for (size_t i = 0; i < (size_t)g->np * WGRAD_NMEM; i++)
            if (g->mem[i]) dnnl_memory_destroy(g->mem[i]);
    if (g->streams)
        for (int p = 0; p < g->np; p++)
            if (g->streams[p]) dnnl_stream_destroy(g->streams[p]);
    free(g->mem);
    free(g->streams);
    free(g);
}
