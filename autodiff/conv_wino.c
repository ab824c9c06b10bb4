/* conv_wino.c - see conv_wino.h.
 *
 * Tiles: the output is cut into 4x4 tiles (the last row/column of tiles may
 * stick out: outputs there are not stored, inputs there read as zero, which
 * is also the convolution's zero padding).  Tile t = (n, ti, tj) reads input
 * rows 4ti-1 .. 4ti+4 and columns 4tj-1 .. 4tj+4.
 *
 * Buffers (scratch): U[36] transformed weights, then V[36][chunk][cin]
 * transformed input tiles and M[36][chunk][cout] products.  U's matrices are
 * stored so that both the weights and U are walked sequentially: forward
 * U[xi] is N x K (used transposed by the GEMM), backward data K x N, and
 * the weight gradient's dU[xi] is N x K, like the (O, I, 3, 3) weights.
 * Channel vectors of 8 are handled with GCC vector extensions (plain SSE on
 * a baseline x86-64 build; the GEMMs are oneDNN's JIT code anyway).
 */
#include "autodiff/conv_wino.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "autodiff/isa.h"

#define NXI 36      /* 6 x 6 transform points */

int wino_layout_get(const dnnl_memory_desc_t *md, wino_layout *l)
{
    if (md->ndims != 4 || md->data_type != dnnl_f32 || md->format_kind != dnnl_blocked ||
        md->offset0 != 0 || md->dims[1] % 8)
        return 0;
    for (int i = 0; i < 4; i++)
        if (md->padded_dims[i] != md->dims[i] || md->padded_offsets[i]) return 0;
    const dnnl_blocking_desc_t *b = &md->format_desc.blocking;
    if (b->inner_nblks == 0) {
        l->sc = b->strides[1];
        l->scb = 8 * b->strides[1];
    } else if (b->inner_nblks == 1 && b->inner_idxs[0] == 1 && b->inner_blks[0] == 8) {
        l->sc = 1;
        l->scb = b->strides[1];
    } else {
        return 0;
    }
    l->sn = b->strides[0];
    l->sh = b->strides[2];
    l->sw = b->strides[3];
    return 1;
}

/* The integer in environment variable `name` when it lies in 1..hi, else
 * dflt (the chunk-size overrides for measurements). */
static int64_t env_chunk(const char *name, int64_t hi, int64_t dflt)
{
    const char *e = getenv(name);
    const int64_t v = e ? atoi(e) : 0;
    return v > 0 && v <= hi ? v : dflt;
}

void wino_geom_init(wino_geom *g, int64_t n, int64_t cin, int64_t cout, int64_t h, int64_t w)
{
    g->n = n, g->cin = cin, g->cout = cout, g->h = h, g->w = w;
    g->isa = CC_ISA_SSE2;
    g->act = 0;
    g->slope = 0.0f;
    g->th = (h + 3) / 4;
    g->tw = (w + 3) / 4;
    g->tiles = n * g->th * g->tw;
    /* Weight gradient: a chunk's V and M together about 12 MiB (the chunk
     * is the K of its 36 GEMMs).  Every chunk costs two barriers (the
     * transforms before the GEMMs, the GEMMs before the next transforms),
     * and on a busy machine a barrier can wait a scheduler time slice for a
     * thread held back (issue 13).  Measured (Zen 5, docs/PERFORMANCE.md
     * session 15): the quickstart counter beside a busy process, 2 threads,
     * 6 -> 24 MiB: +6% images/s (geometric mean of 12 interleaved rounds),
     * 6 -> 12 MiB: +2%; the FPN's weight gradient, idle, 1 and 2 threads:
     * 6 and 12 MiB the same, 24 MiB 5-8% slower (V and M no longer stay in
     * the 32 MiB L3 beside the layer's data).  CC_WINO_WCHUNK_MIB overrides
     * the 12 (measurements). */
    const int64_t c = cin > cout ? cin : cout;
    const int64_t wmib = env_chunk("CC_WINO_WCHUNK_MIB", 1024, 12);
    int64_t chunk = (wmib << 20) / (2 * NXI * 4 * c);
    chunk = chunk / 8 * 8;
    if (chunk < 16) chunk = 16;
    if (chunk > 1024) chunk = 1024;
    g->chunk = chunk < g->tiles ? chunk : g->tiles;
    /* Forward / backward data: each thread takes whole chunks of about
     * 2 MiB (V and M), so a chunk needs no barrier (issue 13: on a busy
     * machine every barrier can cost a scheduler time slice; the counter
     * step had ~200 of them in these loops).  Fixed by the geometry only, so
     * results do not depend on the thread count. */
    int64_t cf = ((int64_t)2 << 20) / (2 * NXI * 4 * c);
    cf = cf / 8 * 8;
    if (cf < 16) cf = 16;
    if (cf > 256) cf = 256;
    g->chunk_fw = cf < g->tiles ? cf : g->tiles;
}

void wino_geom_set_isa(wino_geom *g, cc_isa isa)
{
    g->isa = isa;
    if (isa != CC_ISA_AVX512) return;
    /* Own GEMM kernel: chunks are whole blocks of WINO_GEMM_ROWS (12) tiles
     * (a last partial chunk is padded with zero tiles), with V and M of a
     * chunk together about 900 KiB, so that they stay in a 1 MiB L2 between
     * the transforms and the GEMMs (Zen 5, 256 -> 256 at 96x128: 12 tiles
     * measured 53-60 ms per forward, 36 tiles 58-66, 60 tiles 59-62, 120
     * tiles 56-61).  CC_WINO_CHUNK_KIB overrides the 900 (measurements).
     * Results do not depend on the chunk at all here: every product sums
     * over the input channels in order. */
    const int64_t c = g->cin > g->cout ? g->cin : g->cout;
    const int64_t kib = env_chunk("CC_WINO_CHUNK_KIB", INT32_MAX, 900);
    int64_t cf = (kib << 10) / (2 * NXI * 4 * c);
    if (cf > 384) cf = 384;
    if (cf > g->tiles) cf = g->tiles;
    g->chunk_fw = (cf + 11) / 12 * 12;
}

size_t wino_u_floats(const wino_geom *g)
{
    return (size_t)NXI * ((size_t)((g->cin + 31) / 32 * 32) * (size_t)((g->cout + 31) / 32 * 32) + 16);
}

size_t wino_scratch_floats(const wino_geom *g, int threads)
{
    const size_t fw = (size_t)(threads > 0 ? threads : 1) * (size_t)g->chunk_fw;
    const size_t tiles = fw > (size_t)g->chunk ? fw : (size_t)g->chunk;
    /* V and M of each chunk (per thread for the forward), 16 floats more
     * per transform point and matrix (xi_stride in conv_wino_kern.h) and,
     * in the weight gradient, per row */
    const size_t nbuf = (size_t)(threads > 0 ? threads : 1) + 1;
    return wino_u_floats(g) + (size_t)NXI * tiles * (size_t)(g->cin + g->cout + 32) +
           nbuf * NXI * 2 * 16;
}

size_t conv1_scratch_floats(const wino_geom *g, int threads)
{
    return (size_t)(9 * g->cin + (int64_t)threads * g->w * 8);
}

/* ---- the kernels, per ISA variant ---- */

/* baseline x86-64 (SSE2): this file's own flags */
#define WK(name) name##_sse2
#include "autodiff/conv_wino_kern.h"
#undef WK

#define WINO_VARIANT_DECLS(sfx)                                                                 \
    void wino_transform_weights_##sfx(const wino_geom *, const float *, int, float *);          \
    void wino_forward_##sfx(const wino_geom *, const float *, const wino_layout *, const float *, \
                            const float *, int, const float *, float *, const wino_layout *,   \
                            float *);                                                           \
    void wino_backward_weights_##sfx(const wino_geom *, const float *, const wino_layout *,     \
                                     const float *, const wino_layout *, float *, float *,      \
                                     float *);                                                  \
    void conv1_forward_##sfx(const wino_geom *, const float *, const wino_layout *,             \
                             const float *, const float *, float *, const wino_layout *,        \
                             float *);                                                          \
    void conv1_backward_data_##sfx(const wino_geom *, const float *, const wino_layout *,       \
                                   const float *, float *, const wino_layout *, float *);       \
    void conv1_backward_weights_##sfx(const wino_geom *, const float *, const wino_layout *,    \
                                      const float *, const wino_layout *, float *, float *);
WINO_VARIANT_DECLS(avx2)
WINO_VARIANT_DECLS(avx512)

/* Call the variant g->isa names (op_conv.c sets it from the context). */
#define WINO_DISPATCH(g, fn, ...)                                                               \
    do {                                                                                        \
        switch ((g)->isa) {                                                                     \
        case CC_ISA_AVX512: fn##_avx512(__VA_ARGS__); break;                                    \
        case CC_ISA_AVX2: fn##_avx2(__VA_ARGS__); break;                                        \
        default: fn##_sse2(__VA_ARGS__); break;                                                 \
        }                                                                                       \
    } while (0)

void wino_transform_weights(const wino_geom *g, const float *w, int transpose, float *U)
{
    WINO_DISPATCH(g, wino_transform_weights, g, w, transpose, U);
}

void wino_forward(const wino_geom *g, const float *x, const wino_layout *lx, const float *w,
                  const float *u_pre, int transpose, const float *bias, float *y,
                  const wino_layout *ly, float *scratch)
{
    WINO_DISPATCH(g, wino_forward, g, x, lx, w, u_pre, transpose, bias, y, ly, scratch);
}

void wino_backward_weights(const wino_geom *g, const float *x, const wino_layout *lx,
                           const float *dy, const wino_layout *ly, float *dw, float *db,
                           float *scratch)
{
    WINO_DISPATCH(g, wino_backward_weights, g, x, lx, dy, ly, dw, db, scratch);
}

void conv1_forward(const wino_geom *g, const float *x, const wino_layout *lx, const float *w,
                   const float *bias, float *y, const wino_layout *ly, float *wt)
{
    WINO_DISPATCH(g, conv1_forward, g, x, lx, w, bias, y, ly, wt);
}

void conv1_backward_data(const wino_geom *g, const float *dy, const wino_layout *ly,
                         const float *w, float *dx, const wino_layout *lx, float *wt)
{
    WINO_DISPATCH(g, conv1_backward_data, g, dy, ly, w, dx, lx, wt);
}

void conv1_backward_weights(const wino_geom *g, const float *x, const wino_layout *lx,
                            const float *dy, const wino_layout *ly, float *dw, float *db)
{
    WINO_DISPATCH(g, conv1_backward_weights, g, x, lx, dy, ly, dw, db);
}
