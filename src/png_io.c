/* png_io.c - see png_io.h. */
#include "src/png_io.h"
#include "src/fsutil.h"

#include <assert.h>
#include <errno.h>
#include <png.h>
#include <setjmp.h>
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
static int write_stream(FILE *f, int w, int h, const uint8_t *px, png_err *e)
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
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_GRAY,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < h; y++) png_write_row(png, px + (size_t)y * w);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return 0;
}

int png_write_gray(const char *path, int w, int h, const uint8_t *px, cc_status *st)
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
    int rc = write_stream(f, w, h, px, &e);
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
