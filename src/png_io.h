/* png_io.h - 8-bit grayscale PNG output (libpng), for previews. */
#ifndef CC_PNG_IO_H
#define CC_PNG_IO_H

#include <stdint.h>

#include "autodiff/status.h"

/* Write px (w*h row-major 8-bit gray, w, h >= 1) as a PNG at `path`.
 * Atomic: written to `path.tmp.<pid>` and renamed over `path`; on failure
 * the temporary is removed and `path` is untouched.  libpng messages go
 * into st, never to stderr.  Returns 0, or -1 with st naming the file. */
int png_write_gray(const char *path, int w, int h, const uint8_t *px, cc_status *st);

#endif
