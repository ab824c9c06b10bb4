/* fuzz_bbbc.c - the BBBC005 file-name parser (and its formatter on
 * whatever it accepts). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "src/data/bbbc_name.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *name = malloc(size + 1);
    if (!name) return 0;
    memcpy(name, data, size);
    name[size] = '\0';
    bbbc_name nm;
    cc_status st;
    status_clear(&st);
    if (bbbc_name_parse(name, &nm, &st) == 0) {
        char out[256];
        if (bbbc_name_format(&nm, out, sizeof out) >= 0) {
            bbbc_name again;
            if (bbbc_name_parse(out, &again, NULL) != 0) abort();   /* round trip */
        }
    }
    free(name);
    return 0;
}
