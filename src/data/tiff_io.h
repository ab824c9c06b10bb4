/* tiff_io.h - grayscale TIFF reading and writing (libtiff).
 *
 * Reads the single-page grayscale TIFFs of BBBC005 and anything a user is
 * likely to bring instead: 8- or 16-bit unsigned samples, min-is-black or
 * min-is-white, strips or tiles, contiguous or separate planes, any
 * compression this libtiff decodes.  8/16-bit RGB(A) is converted to gray
 * with the ITU-R BT.601 luma Y = 0.299 R + 0.587 G + 0.114 B (rounded to the
 * nearest integer; alpha and other extra samples are ignored) unless one
 * sample (channel) is chosen.  Multi-page files need a page chosen, gray
 * files with several samples per pixel (other than gray + alpha) a channel
 * (tiff_read_gray_at).  Float or signed samples, palette images and
 * bilevel/4/12/32-bit samples are refused with a message naming the file.
 *
 * libtiff diagnostics never reach stderr: every TIFF handle is opened with a
 * per-handle error/warning handler (libtiff >= 4.5 TIFFOpenOptions), which
 * copies the first error into the caller's cc_status.  Being per-handle,
 * this is thread-safe and touches no global libtiff state, so images may be
 * read from several OpenMP threads at once.
 */
#ifndef CC_TIFF_IO_H
#define CC_TIFF_IO_H

#include <stdint.h>

#include "autodiff/status.h"

/* A decoded gray image.  Values are in 0..2^bits-1 with 0 = black (a
 * min-is-white file is inverted on read).  Rows top to bottom as stored
 * (the Orientation tag is ignored, as BBBC005 and most writers use the
 * default top-left). */
typedef struct cc_image {
    int w, h;
    int bits;           /* 8 or 16: the sample depth of the source */
    uint16_t *px;       /* w*h values, row-major; owned, free with cc_image_free */
    int declared_max;   /* the MaxSampleValue tag when the file has one, else 0
                         * (the TIFF spec says it is statistics only: it does
                         * not change the scaling, see normalize.h) */
} cc_image;

/* Read the TIFF at `path` into *img (which is overwritten; on failure it is
 * left empty: px == NULL).  Returns 0, or -1 with st naming the file and the
 * problem (missing, not a TIFF, truncated or corrupt data, unsupported
 * sample format, more than one page). */
int tiff_read_gray(const char *path, cc_image *img, cc_status *st);

/* tiff_read_gray with a page and a channel chosen, both counted from 0;
 * -1 = not chosen.  page: -1 accepts single-page files only; a multi-page
 * file is then an error that says how many pages it has.  channel: -1
 * reads gray (and gray + alpha) as gray and RGB as luma, and refuses a
 * gray file with other extra samples (a multi-channel image) with a
 * message that says how many; >= 0 takes that sample of each pixel as is
 * (no luma, min-is-white still inverted; not for YCbCr/JPEG files).  An
 * index past the file's pages or samples is an error naming the file and
 * the valid range. */
int tiff_read_gray_at(const char *path, int page, int channel, cc_image *img, cc_status *st);

/* Free img->px and zero the struct.  Safe on a zeroed or freed image. */
void cc_image_free(cc_image *img);

/* Convert to float in [0, 1]: out[i] = px[i] / (2^bits - 1).  `out` holds
 * img->w * img->h floats. */
void cc_image_to_float(const cc_image *img, float *out);

/* Write a single-page min-is-black gray TIFF.  `data` is w*h row-major
 * samples: uint8_t for bits == 8 (PackBits-compressed, as BBBC005), uint16_t
 * for bits == 16 (Deflate with horizontal predictor when this libtiff has
 * zlib, else uncompressed), float for bits == 32 (SampleFormat IEEE float,
 * Deflate without predictor, so that plain readers such as Python's
 * tifffile take it without extra codecs, for raw maps such as FPN masks; tiff_read_gray does not read these back).  Atomic:
 * written to `path.tmp.<pid>` and renamed over `path`; on failure the
 * temporary is removed and `path` is untouched.  Returns 0 or -1 with st
 * set.  w, h >= 1 and bits in {8, 16, 32} are programmer errors otherwise
 * (assert). */
int tiff_write_gray(const char *path, int w, int h, int bits, const void *data,
                    cc_status *st);

#endif
