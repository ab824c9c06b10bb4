/* tiff_io.c - see tiff_io.h. */
#include "src/data/tiff_io.h"
#include "src/data/fsutil.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tiffio.h>
#include <unistd.h>

/* Largest image we accept, in pixels: far above any microscope frame, and
 * low enough that a corrupt header cannot make us allocate gigabytes. */
#define TIFF_MAX_PIXELS (1LL << 28)
/* Largest decoded sample buffer per file (all samples as 16 bits). */
#define TIFF_MAX_DECODED (1ull << 30)

/* Diagnostics captured from one TIFF handle.  Only the first error is kept:
 * later ones are usually consequences of it. */
typedef struct tiff_msgs {
    int nerr, nwarn;
    char err[512];
} tiff_msgs;

static int on_error(TIFF *tif, void *ud, const char *module, const char *fmt,
                    va_list ap)
{
    (void)tif;
    tiff_msgs *m = ud;
    if (m->nerr++ == 0) {
        char body[400];
        vsnprintf(body, sizeof body, fmt, ap);
        if (module && *module)
            snprintf(m->err, sizeof m->err, "%s: %s", module, body);
        else
            snprintf(m->err, sizeof m->err, "%s", body);
    }
    return 1;   /* handled: do not fall through to libtiff's stderr printer */
}

static int on_warning(TIFF *tif, void *ud, const char *module, const char *fmt,
                      va_list ap)
{
    /* Warnings (unknown private tags and the like) are not failures; they
     * are counted and dropped so that no library code prints. */
    (void)tif; (void)module; (void)fmt; (void)ap;
    ((tiff_msgs *)ud)->nwarn++;
    return 1;
}

static TIFFOpenOptions *make_opts(tiff_msgs *m)
{
    TIFFOpenOptions *o = TIFFOpenOptionsAlloc();
    if (!o) return NULL;
    TIFFOpenOptionsSetErrorHandlerExtR(o, on_error, m);
    TIFFOpenOptionsSetWarningHandlerExtR(o, on_warning, m);
    TIFFOpenOptionsSetMaxSingleMemAlloc(o, (tmsize_t)1 << 30);
    return o;
}

static const char *detail(const tiff_msgs *m)
{
    return m->nerr ? m->err : "no detail from libtiff";
}

void cc_image_free(cc_image *img)
{
    if (!img) return;
    free(img->px);
    memset(img, 0, sizeof *img);
}

void cc_image_to_float(const cc_image *img, float *out)
{
    assert(img && img->px && out);
    const float s = 1.0f / (float)((1u << img->bits) - 1u);
    const size_t n = (size_t)img->w * (size_t)img->h;
    for (size_t i = 0; i < n; i++) out[i] = (float)img->px[i] * s;
}

/* Geometry and layout of the current directory, as far as decoding needs. */
typedef struct layout {
    uint32_t w, h;
    uint16_t spp, bps, planar;
    int nplanes;            /* planes stored separately: spp or 1 */
    int per_plane;          /* samples per pixel inside one plane's data */
} layout;

static uint16_t sample_at(const unsigned char *buf, int bps, size_t i)
{
    if (bps == 8) return buf[i];
    uint16_t v;
    memcpy(&v, buf + 2 * i, 2);    /* libtiff already swapped to host order */
    return v;
}

/* Decode every sample into samp (w*h*spp, interleaved) from strips. */
static int read_strips(TIFF *tif, const layout *L, uint16_t *samp, tiff_msgs *m,
                       const char *path, cc_status *st)
{
    uint32_t rps = 0;
    TIFFGetFieldDefaulted(tif, TIFFTAG_ROWSPERSTRIP, &rps);
    if (rps == 0 || rps > L->h) rps = L->h;
    const uint32_t per_plane = (L->h + rps - 1) / rps;
    if (TIFFNumberOfStrips(tif) < per_plane * (uint32_t)L->nplanes)
        return status_set(st, "%s: corrupt TIFF: %u strips for %u rows of %u",
                          path, (unsigned)TIFFNumberOfStrips(tif), (unsigned)L->h,
                          (unsigned)rps);
    const tmsize_t ssize = TIFFStripSize(tif);
    const size_t rowbytes = (size_t)L->w * (size_t)L->per_plane * (L->bps / 8);
    if (ssize <= 0 || (size_t)ssize < rowbytes)
        return status_set(st, "%s: corrupt TIFF: bad strip size (%s)", path, detail(m));
    unsigned char *buf = malloc((size_t)ssize);
    if (!buf) return status_set(st, "%s: out of memory for a strip", path);
    for (int p = 0; p < L->nplanes; p++) {
        for (uint32_t s = 0; s < per_plane; s++) {
            const uint32_t row0 = s * rps;
            const uint32_t nrows = (L->h - row0 < rps) ? L->h - row0 : rps;
            tmsize_t got = TIFFReadEncodedStrip(tif, (uint32_t)p * per_plane + s, buf, ssize);
            if (got < 0 || (size_t)got < (size_t)nrows * rowbytes) {
                free(buf);
                return status_set(st, "%s: truncated or corrupt TIFF data in strip %u (%s)",
                                  path, (unsigned)s, detail(m));
            }
            for (uint32_t r = 0; r < nrows; r++) {
                const size_t base = ((size_t)(row0 + r) * L->w) * L->spp;
                const size_t off = (size_t)r * L->w * L->per_plane;
                for (uint32_t x = 0; x < L->w; x++)
                    for (int c = 0; c < L->per_plane; c++)
                        samp[base + (size_t)x * L->spp + (L->nplanes > 1 ? p : c)] =
                            sample_at(buf, L->bps, off + (size_t)x * L->per_plane + c);
            }
        }
    }
    free(buf);
    return 0;
}

/* Same from tiles; edge tiles are padded in the file and cropped here. */
static int read_tiles(TIFF *tif, const layout *L, uint16_t *samp, tiff_msgs *m,
                      const char *path, cc_status *st)
{
    uint32_t tw = 0, th = 0;
    TIFFGetField(tif, TIFFTAG_TILEWIDTH, &tw);
    TIFFGetField(tif, TIFFTAG_TILELENGTH, &th);
    const tmsize_t tsize = TIFFTileSize(tif);
    if (tw == 0 || th == 0 || tsize <= 0 ||
        (uint64_t)tsize < (uint64_t)tw * th * (uint64_t)L->per_plane * (L->bps / 8))
        return status_set(st, "%s: corrupt TIFF: bad tile geometry %ux%u (%s)", path,
                          (unsigned)tw, (unsigned)th, detail(m));
    unsigned char *buf = malloc((size_t)tsize);
    if (!buf) return status_set(st, "%s: out of memory for a tile", path);
    for (int p = 0; p < L->nplanes; p++) {
        for (uint32_t ty = 0; ty < L->h; ty += th) {
            for (uint32_t tx = 0; tx < L->w; tx += tw) {
                uint32_t t = TIFFComputeTile(tif, tx, ty, 0, (uint16_t)p);
                tmsize_t got = TIFFReadEncodedTile(tif, t, buf, tsize);
                if (got < (tmsize_t)((size_t)tw * th * L->per_plane * (L->bps / 8))) {
                    free(buf);
                    return status_set(st, "%s: truncated or corrupt TIFF data in tile %u (%s)",
                                      path, (unsigned)t, detail(m));
                }
                const uint32_t nr = (L->h - ty < th) ? L->h - ty : th;
                const uint32_t nc = (L->w - tx < tw) ? L->w - tx : tw;
                for (uint32_t r = 0; r < nr; r++) {
                    const size_t off = (size_t)r * tw * L->per_plane;
                    const size_t base = ((size_t)(ty + r) * L->w + tx) * L->spp;
                    for (uint32_t x = 0; x < nc; x++)
                        for (int c = 0; c < L->per_plane; c++)
                            samp[base + (size_t)x * L->spp + (L->nplanes > 1 ? p : c)] =
                                sample_at(buf, L->bps, off + (size_t)x * L->per_plane + c);
                }
            }
        }
    }
    free(buf);
    return 0;
}

static uint16_t luma(double r, double g, double b, double maxv)
{
    double y = floor(0.299 * r + 0.587 * g + 0.114 * b + 0.5);
    return (uint16_t)(y > maxv ? maxv : y);
}

/* YCbCr (typically JPEG-in-TIFF) needs libtiff's colour conversion, which
 * only its RGBA interface offers; 8-bit only, as that interface is. */
static int read_rgba(TIFF *tif, const layout *L, cc_image *img, tiff_msgs *m,
                     const char *path, cc_status *st)
{
    uint32_t *rgba = malloc((size_t)L->w * L->h * sizeof *rgba);
    if (!rgba) return status_set(st, "%s: out of memory", path);
    if (!TIFFReadRGBAImageOriented(tif, L->w, L->h, rgba, ORIENTATION_TOPLEFT, 0)) {
        free(rgba);
        return status_set(st, "%s: truncated or corrupt TIFF data (%s)", path, detail(m));
    }
    for (size_t i = 0; i < (size_t)L->w * L->h; i++)
        img->px[i] = luma(TIFFGetR(rgba[i]), TIFFGetG(rgba[i]), TIFFGetB(rgba[i]), 255.0);
    img->bits = 8;
    free(rgba);
    return 0;
}

/* Check the current directory and decode it into img (px preallocated),
 * sample `channel` of each pixel when >= 0 (see tiff_read_gray_at). */
static int decode(TIFF *tif, cc_image *img, tiff_msgs *m, const char *path, int channel,
                  cc_status *st)
{
    layout L;
    uint16_t photometric = 0, sfmt = SAMPLEFORMAT_UINT;
    L.w = (uint32_t)img->w;
    L.h = (uint32_t)img->h;
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLESPERPIXEL, &L.spp);
    TIFFGetFieldDefaulted(tif, TIFFTAG_BITSPERSAMPLE, &L.bps);
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLEFORMAT, &sfmt);
    TIFFGetFieldDefaulted(tif, TIFFTAG_PLANARCONFIG, &L.planar);
    if (!TIFFGetField(tif, TIFFTAG_PHOTOMETRIC, &photometric))
        photometric = L.spp >= 3 ? PHOTOMETRIC_RGB : PHOTOMETRIC_MINISBLACK;

    if (sfmt == SAMPLEFORMAT_IEEEFP || sfmt == SAMPLEFORMAT_COMPLEXIEEEFP)
        return status_set(st, "%s: floating-point TIFF samples are not supported "
                          "(convert to 8- or 16-bit unsigned integers)", path);
    if (sfmt != SAMPLEFORMAT_UINT && sfmt != SAMPLEFORMAT_VOID)
        return status_set(st, "%s: signed/complex TIFF samples (SampleFormat %u) are "
                          "not supported", path, (unsigned)sfmt);
    if (L.bps != 8 && L.bps != 16)
        return status_set(st, "%s: %u-bit TIFF samples are not supported (8 or 16 only)",
                          path, (unsigned)L.bps);
    /* A header may claim 65535 samples per pixel: bound what decoding
     * allocates (found by fuzz/fuzz_tiff). */
    if (L.spp > 8)
        return status_set(st, "%s: %u samples per pixel (at most 8)", path, (unsigned)L.spp);
    if ((uint64_t)L.w * L.h * L.spp * 2u > TIFF_MAX_DECODED)
        return status_set(st, "%s: %ux%u TIFF with %u samples per pixel is too large to decode "
                          "(over %d MiB)", path, (unsigned)L.w, (unsigned)L.h, (unsigned)L.spp,
                          (int)(TIFF_MAX_DECODED >> 20));

    int gray;
    switch (photometric) {
    case PHOTOMETRIC_MINISBLACK: case PHOTOMETRIC_MINISWHITE: gray = 1; break;
    case PHOTOMETRIC_RGB: gray = 0; break;
    case PHOTOMETRIC_YCBCR:
        if (channel >= 0)
            return status_set(st, "%s: YCbCr (JPEG-compressed colour) TIFF: a channel cannot "
                              "be chosen, only the luma is read (drop --channel)", path);
        if (L.bps != 8)
            return status_set(st, "%s: 16-bit YCbCr TIFF is not supported", path);
        return read_rgba(tif, &L, img, m, path, st);
    case PHOTOMETRIC_PALETTE:
        return status_set(st, "%s: palette (colour-mapped) TIFF is not supported", path);
    default:
        return status_set(st, "%s: TIFF photometric interpretation %u is not supported "
                          "(gray or RGB only)", path, (unsigned)photometric);
    }
    if (L.spp < (gray ? 1 : 3))
        return status_set(st, "%s: corrupt TIFF: %u samples per pixel for %s", path,
                          (unsigned)L.spp, gray ? "gray" : "RGB");
    if (channel >= L.spp)
        return status_set(st, "%s: channel %d out of range: the file has %u sample(s) per "
                          "pixel (channels 0..%u)", path, channel, (unsigned)L.spp,
                          (unsigned)L.spp - 1);
    if (channel < 0 && gray && L.spp > 1) {
        /* gray + alpha is still one image; anything else is several. */
        uint16_t nextra = 0, *extra = NULL;
        int alpha_only = TIFFGetField(tif, TIFFTAG_EXTRASAMPLES, &nextra, &extra) &&
                         nextra == L.spp - 1;
        for (int i = 0; alpha_only && i < nextra; i++)
            alpha_only = extra[i] == EXTRASAMPLE_ASSOCALPHA ||
                         extra[i] == EXTRASAMPLE_UNASSALPHA;
        if (!alpha_only)
            return status_set(st, "%s: multi-channel TIFF (%u samples per pixel): choose one "
                              "with --channel N (0..%u)", path, (unsigned)L.spp,
                              (unsigned)L.spp - 1);
    }
    L.nplanes = (L.planar == PLANARCONFIG_SEPARATE) ? L.spp : 1;
    L.per_plane = (L.planar == PLANARCONFIG_SEPARATE) ? 1 : L.spp;

    uint16_t *samp = img->px;
    if (L.spp > 1) {
        samp = malloc((size_t)L.w * L.h * L.spp * sizeof *samp);
        if (!samp) return status_set(st, "%s: out of memory", path);
    }
    int rc = TIFFIsTiled(tif) ? read_tiles(tif, &L, samp, m, path, st)
                              : read_strips(tif, &L, samp, m, path, st);
    const uint16_t maxv = (uint16_t)((1u << L.bps) - 1u);
    const size_t n = (size_t)L.w * L.h;
    if (rc == 0) {
        if (gray || channel >= 0) {
            const int c = channel >= 0 ? channel : 0;
            if (samp != img->px)
                for (size_t i = 0; i < n; i++) img->px[i] = samp[i * L.spp + c];
            if (photometric == PHOTOMETRIC_MINISWHITE)
                for (size_t i = 0; i < n; i++) img->px[i] = (uint16_t)(maxv - img->px[i]);
        } else {
            for (size_t i = 0; i < n; i++) {
                const uint16_t *s = samp + i * L.spp;
                img->px[i] = luma(s[0], s[1], s[2], maxv);
            }
        }
        img->bits = L.bps;
        uint16_t dmax = 0;
        if (TIFFGetField(tif, TIFFTAG_MAXSAMPLEVALUE, &dmax)) img->declared_max = dmax;
    }
    if (samp != img->px) free(samp);
    return rc;
}

int tiff_read_gray(const char *path, cc_image *img, cc_status *st)
{
    return tiff_read_gray_at(path, -1, -1, img, st);
}

int tiff_read_gray_at(const char *path, int page, int channel, cc_image *img, cc_status *st)
{
    assert(path && img);
    memset(img, 0, sizeof *img);
    /* O_NONBLOCK: a FIFO must not block open() forever; only regular
     * files are images. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return status_set(st, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) ||
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0) {
        close(fd);
        return status_set(st, "%s: not a regular file (a FIFO, device or directory?)", path);
    }

    tiff_msgs m = {0};
    TIFFOpenOptions *opts = make_opts(&m);
    if (!opts) {
        close(fd);
        return status_set(st, "%s: out of memory", path);
    }
    /* "rm": no memory mapping, so a file truncated or rewritten under us
     * gives a read error rather than SIGBUS. */
    TIFF *tif = TIFFFdOpenExt(fd, path, "rm", opts);
    TIFFOpenOptionsFree(opts);
    if (!tif) {
        close(fd);
        return status_set(st, "%s: not a readable TIFF file (%s)", path, detail(&m));
    }
    int rc = 0;
    uint32_t w = 0, h = 0;
    const unsigned npages = TIFFNumberOfDirectories(tif);
    if (page < 0 && npages != 1) {
        rc = status_set(st, "%s: multi-page TIFF (%u pages): choose one with --page N "
                        "(0..%u)", path, npages, npages ? npages - 1 : 0);
    } else if (page >= 0 && (unsigned)page >= npages) {
        rc = status_set(st, "%s: page %d out of range: the file has %u page(s) (0..%u)", path,
                        page, npages, npages ? npages - 1 : 0);
    } else if (page > 0 && !TIFFSetDirectory(tif, (tdir_t)page)) {
        rc = status_set(st, "%s: cannot read page %d (%s)", path, page, detail(&m));
    } else if (!TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &w) ||
               !TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &h) || w == 0 || h == 0) {
        rc = status_set(st, "%s: corrupt TIFF: missing or zero image size (%s)", path,
                        detail(&m));
    } else if ((long long)w * h > TIFF_MAX_PIXELS) {
        rc = status_set(st, "%s: TIFF image %ux%u is too large", path, (unsigned)w,
                        (unsigned)h);
    } else {
        img->w = (int)w;
        img->h = (int)h;
        img->px = malloc((size_t)w * h * sizeof *img->px);
        if (!img->px)
            rc = status_set(st, "%s: out of memory for %ux%u image", path, (unsigned)w,
                            (unsigned)h);
        else
            rc = decode(tif, img, &m, path, channel, st);
    }
    TIFFClose(tif);     /* closes fd */
    if (rc) cc_image_free(img);
    return rc;
}

int tiff_write_gray(const char *path, int w, int h, int bits, const void *data,
                    cc_status *st)
{
    assert(path && data && w > 0 && h > 0 && (bits == 8 || bits == 16 || bits == 32));
    fs_atomic aw;
    if (fs_atomic_begin(&aw, path, st) != 0) return -1;
    const char *tmp = aw.tmp;

    tiff_msgs m = {0};
    TIFFOpenOptions *opts = make_opts(&m);
    if (!opts) {
        fs_atomic_abort(&aw);
        return status_set(st, "%s: out of memory", path);
    }
    TIFF *tif = TIFFOpenExt(tmp, "w", opts);
    TIFFOpenOptionsFree(opts);
    if (!tif) {
        fs_atomic_abort(&aw);
        return status_set(st, "%s: cannot create %s (%s)", path, tmp, detail(&m));
    }
    uint16_t comp = COMPRESSION_PACKBITS;
    if (bits >= 16)
        comp = TIFFIsCODECConfigured(COMPRESSION_ADOBE_DEFLATE) ? COMPRESSION_ADOBE_DEFLATE
                                                                : COMPRESSION_NONE;
    int ok = TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, (uint32_t)w) &&
             TIFFSetField(tif, TIFFTAG_IMAGELENGTH, (uint32_t)h) &&
             TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, (uint16_t)bits) &&
             TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, (uint16_t)1) &&
             TIFFSetField(tif, TIFFTAG_SAMPLEFORMAT,
                          (uint16_t)(bits == 32 ? SAMPLEFORMAT_IEEEFP : SAMPLEFORMAT_UINT)) &&
             TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, (uint16_t)PHOTOMETRIC_MINISBLACK) &&
             TIFFSetField(tif, TIFFTAG_PLANARCONFIG, (uint16_t)PLANARCONFIG_CONTIG) &&
             TIFFSetField(tif, TIFFTAG_COMPRESSION, comp);
    /* Deflate alone for floats: the floating-point predictor (3) needs extra
     * codecs in common readers (Python's tifffile without imagecodecs), and
     * a horizontal predictor on floats is not portable either. */
    if (ok && comp == COMPRESSION_ADOBE_DEFLATE && bits != 32)
        ok = TIFFSetField(tif, TIFFTAG_PREDICTOR, (uint16_t)PREDICTOR_HORIZONTAL);
    if (ok) ok = TIFFSetField(tif, TIFFTAG_ROWSPERSTRIP, TIFFDefaultStripSize(tif, 0));

    const size_t rowbytes = (size_t)w * (size_t)(bits / 8);
    unsigned char *row = ok ? malloc(rowbytes) : NULL;
    if (ok && !row) ok = 0;
    for (int y = 0; ok && y < h; y++) {
        /* TIFFWriteScanline may modify its buffer (predictor, byte swap):
         * copy each row so the caller's data stays const. */
        memcpy(row, (const unsigned char *)data + (size_t)y * rowbytes, rowbytes);
        ok = TIFFWriteScanline(tif, row, (uint32_t)y, 0) == 1;
    }
    free(row);
    if (ok) ok = TIFFFlush(tif) == 1;
    TIFFClose(tif);
    if (ok && m.nerr) ok = 0;
    if (!ok) {
        fs_atomic_abort(&aw);
        return status_set(st, "%s: cannot write TIFF (%s)", path, detail(&m));
    }
    return fs_atomic_commit(&aw, st);
}
