/* conv_wino_kern.h - the kernels of conv_wino.c, compiled once per ISA
 * variant (isa.h): conv_wino.c (baseline SSE2), conv_wino_avx2.c and
 * conv_wino_avx512.c include this file after `#pragma GCC target(...)`
 * with WK(name) defined to add the variant's suffix.  Only those files
 * include it; conv_wino.c dispatches on wino_geom.isa. */
/* 8-float vectors; the helpers taking and returning them are static and
 * inlined, so the psABI note about passing AVX-sized vectors without AVX
 * does not concern any interface. */
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float v8 __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

#ifndef NXI
#define NXI 36      /* 6 x 6 transform points */
#endif

static inline v8 v8_splat(float a) { return (v8){a, a, a, a, a, a, a, a}; }

static inline v8 ld8(const float *p, int64_t sc)
{
    v8 v;
    if (sc == 1) {
        memcpy(&v, p, sizeof v);
    } else {
        for (int l = 0; l < 8; l++) v[l] = p[l * sc];
    }
    return v;
}

static inline void st8(float *p, int64_t sc, v8 v)
{
    if (sc == 1) {
        memcpy(p, &v, sizeof v);
    } else {
        for (int l = 0; l < 8; l++) p[l * sc] = v[l];
    }
}

/* ---- 1-D transforms on 6 (or 4) vectors ---- */

/* B^T d: the input transform. */
static inline void tr_bt(const v8 d[6], v8 o[6])
{
    const v8 c4 = v8_splat(4.0f), c5 = v8_splat(5.0f), c2 = v8_splat(2.0f);
    o[0] = c4 * d[0] - c5 * d[2] + d[4];
    o[1] = -c4 * (d[1] + d[2]) + d[3] + d[4];
    o[2] = c4 * (d[1] - d[2]) - d[3] + d[4];
    o[3] = c2 * (d[3] - d[1]) - d[2] + d[4];
    o[4] = c2 * (d[1] - d[3]) - d[2] + d[4];
    o[5] = c4 * d[1] - c5 * d[3] + d[5];
}

/* A^T m: the output transform (6 -> 4). */
static inline void tr_at(const v8 m[6], v8 o[4])
{
    const v8 c2 = v8_splat(2.0f), c4 = v8_splat(4.0f), c8 = v8_splat(8.0f);
    const v8 s12 = m[1] + m[2], d12 = m[1] - m[2], s34 = m[3] + m[4], d34 = m[3] - m[4];
    o[0] = m[0] + s12 + s34;
    o[1] = d12 + c2 * d34;
    o[2] = s12 + c4 * s34;
    o[3] = d12 + c8 * d34 + m[5];
}

/* A y: the adjoint of the output transform (4 -> 6), for d loss / d M. */
static inline void tr_a(const v8 y[4], v8 o[6])
{
    const v8 c2 = v8_splat(2.0f), c4 = v8_splat(4.0f), c8 = v8_splat(8.0f);
    const v8 e = y[0] + y[2], f = y[1] + y[3], e4 = y[0] + c4 * y[2], f4 = c2 * y[1] + c8 * y[3];
    o[0] = y[0];
    o[1] = e + f;
    o[2] = e - f;
    o[3] = e4 + f4;
    o[4] = e4 - f4;
    o[5] = y[3];
}

/* G g (3 -> 6) and G^T u (6 -> 3) on the weights, 8 kernels at a time
 * (multiplications by the constants: divisions would dominate the cost). */
static inline void tr_g(const v8 g[3], v8 o[6])
{
    const v8 q = v8_splat(0.25f), s6 = v8_splat(1.0f / 6), s12 = v8_splat(1.0f / 12);
    const v8 s24 = v8_splat(1.0f / 24);
    const v8 e = g[0] + g[2], a = s24 * g[0] + s6 * g[2], b = s12 * g[1];
    o[0] = q * g[0];
    o[1] = -s6 * (e + g[1]);
    o[2] = -s6 * (e - g[1]);
    o[3] = a + b;
    o[4] = a - b;
    o[5] = g[2];
}

static inline void tr_gt(const v8 u[6], v8 o[3])
{
    const v8 q = v8_splat(0.25f), s6 = v8_splat(1.0f / 6), s12 = v8_splat(1.0f / 12);
    const v8 s24 = v8_splat(1.0f / 24);
    const v8 p12 = u[1] + u[2], p34 = u[3] + u[4];
    o[0] = q * u[0] - s6 * p12 + s24 * p34;
    o[1] = s6 * (u[2] - u[1]) + s12 * (u[3] - u[4]);
    o[2] = s6 * (p34 - p12) + u[5];
}

/* ---- weights ---- */

/* The GEMM's K = g->cin inputs and N = g->cout outputs.  Forward: U[xi] is
 * N x K, U[xi][j][k] = (G w[j][k] G^T)[xi]; transpose: U[xi] is K x N,
 * U[xi][k][j] = (G rot180(w[k][j]) G^T)[xi].  Either way the outer loop
 * runs over w's first index, so w and U are both read/written in order. */
/* u[r][c] = (G k G^T)[r][c] of 8 3x3 kernels k3 (row-major taps). */
static inline void kernel_transform(const v8 k3[9], v8 u[6][6])
{
    v8 t[6][3];
    for (int c = 0; c < 3; c++) {
        v8 col[3] = {k3[c], k3[3 + c], k3[6 + c]}, o[6];
        tr_g(col, o);
        for (int r = 0; r < 6; r++) t[r][c] = o[r];
    }
    for (int r = 0; r < 6; r++) tr_g(t[r], u[r]);
}

static void weights_transform(const wino_geom *g, const float *w, int transpose, float *U)
{
    const int64_t K = g->cin, N = g->cout;
#ifdef WINO_OWN_GEMM
    /* Packed for wino_gemm_chunk: U[xi] is N/32 panels of K x 32 (k-major),
     * so the kernel reads one panel sequentially.  Vectors run over 8
     * outputs n at one input k, so each lands whole in its panel row (for
     * the forward that reads 8 weight rows at once instead of scattering
     * each vector's lanes 32 floats apart).  The padding columns of the
     * last panel are zeroed (they only feed outputs that are never stored,
     * but must not be NaN or denormal garbage). */
    const int64_t ustride = (int64_t)(wino_u_floats(g) / NXI), npan = (N + 31) / 32;
    if (N % 32) {
#pragma omp for schedule(static) nowait
        for (int xi = 0; xi < NXI; xi++)
            for (int64_t k = 0; k < K; k++)
                memset(U + xi * ustride + ((npan - 1) * K + k) * 32 + N % 32, 0,
                       sizeof(float) * (size_t)(32 - N % 32));
    }
    /* Panel by panel, k inner: each of the 36 matrices is written as one
     * sequential stream of whole 128-byte panel rows.  (k outer, n inner
     * scattered 32-byte pieces over 36 x N/32 pages and lines: at 512 ->
     * 512 more lines than L1 holds, 5 GB/s.)
     * Transformed weights larger than a last-level cache go out with
     * non-temporal stores: they would not stay cached for the GEMMs anyway,
     * and the stores skip reading every line first (512 -> 512: 7.0 -> 4.1
     * ms per transform, 5.4 -> 9.3 GB/s; at 256 -> 256, 9.4 MB, cached
     * stores are faster: 0.81 vs 1.00 ms; Zen 5, docs/PERFORMANCE.md) */
    const int stream = wino_u_floats(g) * sizeof(float) > WINO_STREAM_MIN_BYTES &&
                       (uintptr_t)U % 32 == 0;  /* the stores need 32-byte alignment */
#pragma omp for collapse(2) schedule(dynamic, 8) nowait
    for (int64_t pn = 0; pn < npan; pn++)
        for (int64_t k = 0; k < K; k++) {
            float *p = U + (pn * K + k) * 32;
            const int64_t n1 = (pn + 1) * 32 < N ? (pn + 1) * 32 : N;
            for (int64_t n = pn * 32; n < n1; n += 8) {     /* N is a multiple of 8 */
                v8 k3[9], u[6][6];
                for (int i = 0; i < 9; i++)
                    for (int l = 0; l < 8; l++)
                        k3[i][l] = transpose ? w[(k * N + n + l) * 9 + 8 - i]
                                             : w[((n + l) * K + k) * 9 + i];
                kernel_transform(k3, u);
                if (stream)
                    for (int xi = 0; xi < NXI; xi++)
                        wino_stream8(p + xi * ustride + n % 32, (const float *)&u[xi / 6][xi % 6]);
                else
                    for (int xi = 0; xi < NXI; xi++)
                        memcpy(p + xi * ustride + n % 32, &u[xi / 6][xi % 6], sizeof(v8));
            }
        }
    /* non-temporal stores are weakly ordered: drain them before the
     * barrier after which other threads read U */
    if (stream) _mm_sfence();
#pragma omp barrier
#else
    const int64_t A = transpose ? K : N, B = transpose ? N : K;
    const int64_t ustride = (int64_t)(wino_u_floats(g) / NXI);
#pragma omp for schedule(dynamic, 4)
    for (int64_t a = 0; a < A; a++)
        for (int64_t b = 0; b < B; b += 8) {    /* B is a multiple of 8 */
            const float *s = w + (a * B + b) * 9;
            v8 k3[9], u[6][6];
            for (int i = 0; i < 9; i++)
                for (int l = 0; l < 8; l++) k3[i][l] = s[l * 9 + (transpose ? 8 - i : i)];
            kernel_transform(k3, u);
            for (int xi = 0; xi < NXI; xi++)
                memcpy(U + xi * ustride + a * B + b, &u[xi / 6][xi % 6], sizeof(v8));
        }
#endif
}

/* ---- tiles ---- */

/* Floats between the matrices of consecutive transform points in V and M
 * (rows x ld each): one cache line more than they need.  Without it the
 * 36 vectors a tile transform writes or reads lie a multiple of 4 KiB
 * apart for the usual chunk and channel counts (e.g. 60 x 256 floats), all
 * in the same L1 set, and evict each other. */
static inline int64_t xi_stride(int64_t rows, int64_t ld) { return rows * ld + 16; }

typedef struct tile_pos {
    int64_t n, h0, w0;      /* image, first output row/column */
} tile_pos;

static inline tile_pos tile_at(const wino_geom *g, int64_t tid)
{
    const int64_t per = g->th * g->tw, r = tid % per;
    tile_pos p = {tid / per, 4 * (r / g->tw), 4 * (r % g->tw)};
    return p;
}

/* V[xi][t][cb*8..] = (B^T d B)[xi] of the 6x6 input patch of tile tid. */
static void input_tile(const wino_geom *g, const float *x, const wino_layout *l, int64_t cb,
                       int64_t tid, int64_t t, int64_t chunk, int64_t ldc, float *V)
{
    const tile_pos p = tile_at(g, tid);
    const float *base = x + p.n * l->sn + cb * l->scb;
    v8 d[6][6], tmp[6][6];
    const int interior = p.h0 >= 1 && p.h0 + 5 <= g->h && p.w0 >= 1 && p.w0 + 5 <= g->w;
    for (int i = 0; i < 6; i++) {
        const int64_t hh = p.h0 - 1 + i;
        for (int j = 0; j < 6; j++) {
            const int64_t ww = p.w0 - 1 + j;
            if (interior || (hh >= 0 && hh < g->h && ww >= 0 && ww < g->w))
                d[i][j] = ld8(base + hh * l->sh + ww * l->sw, l->sc);
            else
                d[i][j] = v8_splat(0.0f);
        }
    }
    for (int j = 0; j < 6; j++) {
        v8 col[6], o[6];
        for (int i = 0; i < 6; i++) col[i] = d[i][j];
        tr_bt(col, o);
        for (int i = 0; i < 6; i++) tmp[i][j] = o[i];
    }
    for (int i = 0; i < 6; i++) {
        v8 o[6];
        tr_bt(tmp[i], o);
        for (int j = 0; j < 6; j++)
            memcpy(V + (i * 6 + j) * xi_stride(chunk, ldc) + t * ldc + cb * 8, &o[j], sizeof(v8));
    }
}

/* y tile = A^T M A (+ bias) for output channel block cb. */
static void output_tile(const wino_geom *g, const float *M, int64_t cb, int64_t tid, int64_t t,
                        int64_t chunk, const float *bias, float *y, const wino_layout *l)
{
    const tile_pos p = tile_at(g, tid);
    const int64_t ldc = g->cout;
    v8 m[6][6], tmp[4][6];
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 6; j++)
            memcpy(&m[i][j], M + (i * 6 + j) * xi_stride(chunk, ldc) + t * ldc + cb * 8,
                   sizeof(v8));
    for (int j = 0; j < 6; j++) {
        v8 col[6], o[4];
        for (int i = 0; i < 6; i++) col[i] = m[i][j];
        tr_at(col, o);
        for (int a = 0; a < 4; a++) tmp[a][j] = o[a];
    }
    v8 b = v8_splat(0.0f);
    if (bias) memcpy(&b, bias + cb * 8, sizeof b);
    float *base = y + p.n * l->sn + cb * l->scb;
    const v8 zero = v8_splat(0.0f), one = v8_splat(1.0f), sl = v8_splat(g->slope);
    for (int a = 0; a < 4; a++) {
        if (p.h0 + a >= g->h) break;
        v8 o[4];
        tr_at(tmp[a], o);
        for (int c = 0; c < 4 && p.w0 + c < g->w; c++) {
            v8 v = o[c] + b;
            if (g->act) {   /* LeakyReLU: v * (v > 0 ? 1 : slope), lane-wise */
                const v8i pos = v > zero;
                v *= (v8)(((v8i)one & pos) | ((v8i)sl & ~pos));
            }
            st8(base + (p.h0 + a) * l->sh + (p.w0 + c) * l->sw, l->sc, v);
        }
    }
}

/* M[xi][t][cb*8..] = (A dy A^T)[xi] of tile tid's 4x4 output gradient. */
static void grad_tile(const wino_geom *g, const float *dy, const wino_layout *l, int64_t cb,
                      int64_t tid, int64_t t, int64_t ldm, float *M)
{
    const tile_pos p = tile_at(g, tid);
    const float *base = dy + p.n * l->sn + cb * l->scb;
    v8 d[4][4], tmp[6][4];
    for (int a = 0; a < 4; a++)
        for (int c = 0; c < 4; c++)
            d[a][c] = p.h0 + a < g->h && p.w0 + c < g->w
                          ? ld8(base + (p.h0 + a) * l->sh + (p.w0 + c) * l->sw, l->sc)
                          : v8_splat(0.0f);
    for (int c = 0; c < 4; c++) {
        v8 col[4] = {d[0][c], d[1][c], d[2][c], d[3][c]}, o[6];
        tr_a(col, o);
        for (int i = 0; i < 6; i++) tmp[i][c] = o[i];
    }
    for (int i = 0; i < 6; i++) {
        v8 o[6];
        tr_a(tmp[i], o);
        for (int j = 0; j < 6; j++)
            memcpy(M + (i * 6 + j) * xi_stride(g->chunk, ldm) + t * ldm + cb * 8, &o[j],
                   sizeof(v8));
    }
}

/* ---- drivers ---- */

void WK(wino_transform_weights)(const wino_geom *g, const float *w, int transpose, float *U)
{
#pragma omp parallel
    weights_transform(g, w, transpose, U);
}

void WK(wino_forward)(const wino_geom *g, const float *x, const wino_layout *lx, const float *w,
                  const float *u_pre, int transpose, const float *bias, float *y,
                  const wino_layout *ly, float *scratch)
{
    const int64_t K = g->cin, N = g->cout, cbi = K / 8, cbo = N / 8, ch = g->chunk_fw;
    const int64_t nchunk = (g->tiles + ch - 1) / ch;
    float *U = scratch, *per_thread = U + wino_u_floats(g);
    const float *Uw = u_pre ? u_pre : U;
    const int64_t ustride = (int64_t)(wino_u_floats(g) / NXI);
#pragma omp parallel
    {
        if (!u_pre) weights_transform(g, w, transpose, U);
        float *V = per_thread + (int64_t)omp_get_thread_num() * NXI * (xi_stride(ch, K) + xi_stride(ch, N));
        float *M = V + NXI * xi_stride(ch, K);
        /* dynamic: a thread the scheduler holds back takes fewer chunks */
#pragma omp for schedule(dynamic, 1) nowait
        for (int64_t ci = 0; ci < nchunk; ci++) {
            const int64_t c0 = ci * ch, nt = g->tiles - c0 < ch ? g->tiles - c0 : ch;
            /* channel blocks outer: the tiles of a chunk then read a few
             * rows of one channel plane (a handful of streams the hardware
             * prefetcher follows) instead of hopping across all planes for
             * every tile (measured: the loads missed on every plane) */
            for (int64_t cb = 0; cb < cbi; cb++)
                for (int64_t t = 0; t < nt; t++) input_tile(g, x, lx, cb, c0 + t, t, ch, K, V);
#ifdef WINO_OWN_GEMM
            /* whole blocks of rows: the padding tiles are zero (their M
             * rows are computed and never read) */
            const int64_t ntp = (nt + WINO_GEMM_ROWS - 1) / WINO_GEMM_ROWS * WINO_GEMM_ROWS;
            if (ntp > nt)
                for (int xi = 0; xi < NXI; xi++)
                    memset(V + xi * xi_stride(ch, K) + nt * K, 0, sizeof(float) * (size_t)((ntp - nt) * K));
            for (int xi = 0; xi < NXI; xi++)
                wino_gemm_chunk(ntp, N, K, V + xi * xi_stride(ch, K), Uw + xi * ustride,
                                M + xi * xi_stride(ch, N));
#else
            for (int xi = 0; xi < NXI; xi++)
                dnnl_sgemm('N', transpose ? 'N' : 'T', nt, N, K, 1.0f, V + xi * xi_stride(ch, K), K,
                           Uw + xi * ustride, transpose ? N : K, 0.0f, M + xi * xi_stride(ch, N),
                           N);
#endif
            for (int64_t cb = 0; cb < cbo; cb++)
                for (int64_t t = 0; t < nt; t++) output_tile(g, M, cb, c0 + t, t, ch, bias, y, ly);
        }
    }
}

void WK(wino_backward_weights)(const wino_geom *g, const float *x, const wino_layout *lx,
                           const float *dy, const wino_layout *ly, float *dw, float *db,
                           float *scratch)
{
    const int64_t K = g->cin, N = g->cout, cbi = K / 8, cbo = N / 8;
    /* rows of V and M one cache line longer than needed: the GEMMs walk
     * down the tiles, and rows of 2^k floats would all share a few L1 sets */
    const int64_t ldv = K + 16, ldm = N + 16;
    const int64_t ustride = (int64_t)(wino_u_floats(g) / NXI);
    float *dU = scratch, *V = dU + wino_u_floats(g), *M = V + NXI * xi_stride(g->chunk, ldv);
#pragma omp parallel
    {
        for (int64_t c0 = 0; c0 < g->tiles; c0 += g->chunk) {
            const int64_t nt = g->tiles - c0 < g->chunk ? g->tiles - c0 : g->chunk;
#pragma omp for collapse(2) schedule(dynamic, 16) nowait
            for (int64_t t = 0; t < nt; t++)
                for (int64_t cb = 0; cb < cbi; cb++)
                    input_tile(g, x, lx, cb, c0 + t, t, g->chunk, ldv, V);
#pragma omp for collapse(2) schedule(dynamic, 16)
            for (int64_t t = 0; t < nt; t++)
                for (int64_t cb = 0; cb < cbo; cb++) grad_tile(g, dy, ly, cb, c0 + t, t, ldm, M);
            /* dU[xi] (N x K) (+)= M[xi]^T (N x nt) * V[xi] (nt x K) */
#pragma omp for schedule(dynamic, 1)
            for (int xi = 0; xi < NXI; xi++)
                dnnl_sgemm('T', 'N', N, K, nt, 1.0f, M + xi * xi_stride(g->chunk, ldm), ldm,
                           V + xi * xi_stride(g->chunk, ldv), ldv, c0 ? 1.0f : 0.0f,
                           dU + xi * ustride, K);
        }
        /* dw[j][k] = G^T dU[.][j][k] G; no barrier after it: db reads dy
         * only, and the region's end joins the threads */
#pragma omp for schedule(dynamic, 4) nowait
        for (int64_t j = 0; j < N; j++)
            for (int64_t k = 0; k < K; k += 8) {    /* K is a multiple of 8 */
                v8 u[6][6], t[3][6];
                for (int xi = 0; xi < NXI; xi++)
                    memcpy(&u[xi / 6][xi % 6], dU + xi * ustride + j * K + k, sizeof(v8));
                for (int c = 0; c < 6; c++) {
                    v8 col[6] = {u[0][c], u[1][c], u[2][c], u[3][c], u[4][c], u[5][c]}, o[3];
                    tr_gt(col, o);
                    for (int r = 0; r < 3; r++) t[r][c] = o[r];
                }
                float *d = dw + (j * K + k) * 9;
                for (int r = 0; r < 3; r++) {
                    v8 o[3];
                    tr_gt(t[r], o);
                    for (int c = 0; c < 3; c++)
                        for (int l = 0; l < 8; l++) d[l * 9 + 3 * r + c] = o[c][l];
                }
            }
        if (db) {
            /* Per channel block, images and rows in order: deterministic. */
#pragma omp for schedule(dynamic, 1) nowait
            for (int64_t cb = 0; cb < cbo; cb++) {
                v8 acc = v8_splat(0.0f);
                for (int64_t n = 0; n < g->n; n++)
                    for (int64_t h = 0; h < g->h; h++) {
                        const float *row = dy + n * ly->sn + cb * ly->scb + h * ly->sh;
                        for (int64_t c = 0; c < g->w; c++) acc += ld8(row + c * ly->sw, ly->sc);
                    }
                memcpy(db + cb * 8, &acc, sizeof acc);
            }
        }
    }
}

/* ---- one output channel ---- */

static inline float hsum8(v8 a)
{
    return ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
}

/* wt[(cb*9 + k)*8 + l] = w[(cb*8 + l)*9 + k] */
static void conv1_regroup(const wino_geom *g, const float *w, float *wt)
{
    for (int64_t c = 0; c < g->cin; c++)
        for (int k = 0; k < 9; k++) wt[((c / 8) * 9 + k) * 8 + c % 8] = w[c * 9 + k];
}

/* Offset of output (n, 0, h, w) in ly; a blocked ly holds 7 padding
 * channels next to it, kept zero. */
static inline int64_t conv1_at(const wino_layout *ly, int64_t n, int64_t h, int64_t w)
{
    return n * ly->sn + h * ly->sh + w * ly->sw;
}

void WK(conv1_forward)(const wino_geom *g, const float *x, const wino_layout *lx, const float *w,
                   const float *bias, float *y, const wino_layout *ly, float *wt)
{
    const int64_t H = g->h, W = g->w, ncb = g->cin / 8;
    conv1_regroup(g, w, wt);
    const float b = bias ? bias[0] : 0.0f;
#pragma omp parallel
    {
        /* one output row of 8-lane partial sums per thread; the input rows
         * are then streamed in order instead of hopping between channel
         * planes for every output */
        v8 *acc = (v8 *)(wt + 9 * g->cin) + omp_get_thread_num() * W;
#pragma omp for collapse(2) schedule(static)
        for (int64_t n = 0; n < g->n; n++)
            for (int64_t h = 0; h < H; h++) {
                for (int64_t c = 0; c < W; c++) acc[c] = v8_splat(0.0f);
                for (int64_t cb = 0; cb < ncb; cb++)
                    for (int kh = 0; kh < 3; kh++) {
                        const int64_t hh = h + kh - 1;
                        if (hh < 0 || hh >= H) continue;
                        const float *row = x + n * lx->sn + cb * lx->scb + hh * lx->sh;
                        for (int kw = 0; kw < 3; kw++) {
                            v8 wv;
                            memcpy(&wv, wt + (cb * 9 + kh * 3 + kw) * 8, sizeof wv);
                            const int64_t lo = kw == 0 ? 1 : 0, hi = kw == 2 ? W - 1 : W;
                            for (int64_t c = lo; c < hi; c++)
                                acc[c] += ld8(row + (c + kw - 1) * lx->sw, lx->sc) * wv;
                        }
                    }
                for (int64_t c = 0; c < W; c++) {
                    float *o = y + conv1_at(ly, n, h, c);
                    o[0] = hsum8(acc[c]) + b;
                    if (ly->sc == 1)
                        for (int l = 1; l < 8; l++) o[l] = 0.0f;
                }
            }
    }
}

void WK(conv1_backward_data)(const wino_geom *g, const float *dy, const wino_layout *ly,
                         const float *w, float *dx, const wino_layout *lx, float *wt)
{
    const int64_t H = g->h, W = g->w, ncb = g->cin / 8;
    conv1_regroup(g, w, wt);
#pragma omp parallel
    {
        v8 *acc = (v8 *)(wt + 9 * g->cin) + omp_get_thread_num() * W;
#pragma omp for collapse(2) schedule(static)
        for (int64_t n = 0; n < g->n; n++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t cb = 0; cb < ncb; cb++) {
                    for (int64_t c = 0; c < W; c++) acc[c] = v8_splat(0.0f);
                    for (int kh = 0; kh < 3; kh++) {
                        const int64_t oh = h - kh + 1;
                        if (oh < 0 || oh >= H) continue;
                        const float *drow = dy + conv1_at(ly, n, oh, 0);
                        for (int kw = 0; kw < 3; kw++) {
                            v8 wv;
                            memcpy(&wv, wt + (cb * 9 + kh * 3 + kw) * 8, sizeof wv);
                            /* input column c reads output column c - kw + 1 */
                            const int64_t lo = kw == 2 ? 1 : 0, hi = kw == 0 ? W - 1 : W;
                            for (int64_t c = lo; c < hi; c++)
                                acc[c] += v8_splat(drow[(c - kw + 1) * ly->sw]) * wv;
                        }
                    }
                    float *xb = dx + n * lx->sn + cb * lx->scb + h * lx->sh;
                    for (int64_t c = 0; c < W; c++) st8(xb + c * lx->sw, lx->sc, acc[c]);
                }
    }
}

void WK(conv1_backward_weights)(const wino_geom *g, const float *x, const wino_layout *lx,
                            const float *dy, const wino_layout *ly, float *dw, float *db)
{
    const int64_t H = g->h, W = g->w, ncb = g->cin / 8;
    /* per channel block: images and rows in order, each row summed apart
     * first (shorter float sums) */
#pragma omp parallel for schedule(static)
    for (int64_t cb = 0; cb < ncb; cb++) {
        v8 tot[9];
        for (int k = 0; k < 9; k++) tot[k] = v8_splat(0.0f);
        for (int64_t n = 0; n < g->n; n++)
            for (int64_t h = 0; h < H; h++) {
                v8 acc[9];
                for (int k = 0; k < 9; k++) acc[k] = v8_splat(0.0f);
                const float *xb = x + n * lx->sn + cb * lx->scb;
                const float *dr = dy + conv1_at(ly, n, h, 0);
                for (int kh = 0; kh < 3; kh++) {
                    const int64_t hh = h + kh - 1;
                    if (hh < 0 || hh >= H) continue;
                    for (int64_t c = 0; c < W; c++) {
                        const v8 d = v8_splat(dr[c * ly->sw]);
                        for (int kw = 0; kw < 3; kw++) {
                            const int64_t ww = c + kw - 1;
                            if (ww < 0 || ww >= W) continue;
                            acc[kh * 3 + kw] += d * ld8(xb + hh * lx->sh + ww * lx->sw, lx->sc);
                        }
                    }
                }
                for (int k = 0; k < 9; k++) tot[k] += acc[k];
            }
        for (int k = 0; k < 9; k++)
            for (int l = 0; l < 8; l++) dw[(cb * 8 + l) * 9 + k] = tot[k][l];
    }
    if (db) {
        double s = 0;
        for (int64_t n = 0; n < g->n; n++)
            for (int64_t h = 0; h < H; h++) {
                float r = 0;
                for (int64_t c = 0; c < W; c++) r += dy[conv1_at(ly, n, h, c)];
                s += r;
            }
        db[0] = (float)s;
    }
}
