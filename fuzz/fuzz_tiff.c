/* fuzz_tiff.c - the TIFF reader on raw bytes (libtiff's own parsing is
 * libtiff's; what tiff_read_gray does with what libtiff returns is ours). */
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include "src/data/tiff_io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/cc_fuzz_tiff_%ld.tif", (long)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    cc_image img;
    cc_status st;
    status_clear(&st);
    if (tiff_read_gray(path, &img, &st) == 0) {
        volatile uint32_t sum = 0;
        for (size_t i = 0; i < (size_t)img.w * img.h; i++) sum += img.px[i];
        cc_image_free(&img);
    }
    unlink(path);
    return 0;
}
