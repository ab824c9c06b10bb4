/* png_io.c - see png_io.h. */
#include "src/data/png_io.h"
#include "src/data/fsutil.h"

#include <assert.h>
#include <errno.h>
#include <png.h>
#include <math.h>
#include <setjmp.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* libpng reports through callbacks; keep the first message per handle. */
typedef struct png_err {
    jmp_buf jb;
    char msg[256];
} png_err;

static void on_error(png_structp png, png_const_charp msg)
{
    png_err *e = png_get_error_ptr(png);
    if (!e->msg[0]) snprintf(e->msg, sizeof e->msg, "%s", msg);
    longjmp(e->jb, 1);
}

static void on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;      /* warnings do not make the file wrong */
}

/* The libpng part, separated so that no local is modified between setjmp
 * and longjmp (which would make it indeterminate). */
static int write_stream(FILE *f, int w, int h, int rgb, const uint8_t *px, png_err *e)
{
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, e, on_error, on_warning);
    if (!png) {
        snprintf(e->msg, sizeof e->msg, "libpng: out of memory");
        return -1;
    }
    png_infop info = png_create_info_struct(png);
    if (!info || setjmp(e->jb)) {
        if (!e->msg[0]) snprintf(e->msg, sizeof e->msg, "libpng: out of memory");
        png_destroy_write_struct(&png, info ? &info : NULL);
        return -1;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8,
                 rgb ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    const size_t row = (size_t)w * (rgb ? 3 : 1);
    for (int y = 0; y < h; y++) png_write_row(png, px + (size_t)y * row);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return 0;
}

static int write_file(const char *path, int w, int h, int rgb, const uint8_t *px, cc_status *st)
{
    assert(w >= 1 && h >= 1 && px);
    fs_atomic aw;
    if (fs_atomic_begin(&aw, path, st) != 0) return -1;
    const char *tmp = aw.tmp;
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        int err = errno;
        fs_atomic_abort(&aw);
        return status_set(st, "%s: cannot create %s: %s", path, tmp, strerror(err));
    }
    png_err e;
    e.msg[0] = '\0';
    int rc = write_stream(f, w, h, rgb, px, &e);
    if (rc) {
        fclose(f);
        fs_atomic_abort(&aw);
        return status_set(st, "%s: %s", path, e.msg);
    }
    if (fflush(f) != 0 || ferror(f)) {
        int err = errno;
        fclose(f);
        fs_atomic_abort(&aw);
        return status_set(st, "%s: write error: %s", path, strerror(err));
    }
    if (fclose(f) != 0) {
        int err = errno;
        fs_atomic_abort(&aw);
        return status_set(st, "%s: write error: %s", path, strerror(err));
    }
    return fs_atomic_commit(&aw, st);
}

int png_write_gray(const char *path, int w, int h, const uint8_t *px, cc_status *st)
{
    return write_file(path, w, h, 0, px, st);
}

int png_write_rgb(const char *path, int w, int h, const uint8_t *px, cc_status *st)
{
    assert(w >= 1 && h >= 1 && px);
    return write_file(path, w, h, 1, px, st);
}

static uint8_t to_byte(float v)
{
    v = v < 0 ? 0 : v > 1 ? 1 : v;
    return (uint8_t)(255.0f * v + 0.5f);
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

int png_write_overlay(const char *path, int w, int h, const float *image, const float *map,
                      int mw, int mh, cc_status *st)
{
    assert(w >= 1 && h >= 1 && mw >= 1 && mh >= 1 && image && map);
    /* Gradient maps are sparse with a few extreme pixels: scale by the 99th
     * percentile of |map| (its maximum when that is 0), clipping above. */
    const size_t nm = (size_t)mw * (size_t)mh;
    float *mag = malloc(sizeof(float) * nm);
    if (!mag) return status_set(st, "%s: out of memory", path);
    float mx = 0;
    for (size_t i = 0; i < nm; i++) {
        mag[i] = fabsf(map[i]);
        mx = mag[i] > mx ? mag[i] : mx;
    }
    qsort(mag, nm, sizeof *mag, cmp_float);
    const float p99 = mag[(size_t)(0.99 * (double)(nm - 1))];
    free(mag);
    if (p99 > 0) mx = p99;
    /* Small inputs (128x96 in the quickstart) are hard to read at 100%:
     * enlarge by a whole factor to at least 512 pixels across. */
    const int k = w >= 512 ? 1 : (512 + w - 1) / w;
    const int W = w * k, H = h * k;
    uint8_t *px = malloc((size_t)W * (size_t)H * 3);
    if (!px) return status_set(st, "%s: out of memory", path);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            const float g = image[(size_t)(y / k) * (size_t)w + (size_t)(x / k)];
            const size_t mi = (size_t)((int64_t)y * mh / H) * (size_t)mw + (size_t)((int64_t)x * mw / W);
            const float t = mx > 0 ? fminf(1.0f, fabsf(map[mi]) / mx) : 0;
            /* "hot" colours (black-red-yellow-white) blended in by strength;
             * at most 0.75 so that the cells stay visible underneath */
            const float a = 0.75f * t, r = 3 * t, gr = 3 * t - 1, b = 3 * t - 2;
            uint8_t *o = px + ((size_t)y * (size_t)W + (size_t)x) * 3;
            o[0] = to_byte((1 - a) * g + a * (r > 1 ? 1 : r));
            o[1] = to_byte((1 - a) * g + a * (gr < 0 ? 0 : gr > 1 ? 1 : gr));
            o[2] = to_byte((1 - a) * g + a * (b < 0 ? 0 : b));
        }
    int rc = write_file(path, W, H, 1, px, st);
    free(px);
    return rc;
}
