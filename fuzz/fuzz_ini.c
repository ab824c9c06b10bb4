/* fuzz_ini.c - the INI reader through the experiment-file and sweep-file
 * parsers, and --set overrides. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "src/run/exp_config.h"
#include "src/sweep/sweep.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/cc_fuzz_ini_%ld.ini", (long)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    cc_config c;
    config_defaults(&c);
    cc_status st;
    status_clear(&st);
    if (config_load(&c, path, &st) == 0) {
        config_validate(&c, NULL);
        FILE *out = fopen("/dev/null", "w");
        if (out) {
            config_write(&c, out);
            fclose(out);
        }
    }
    sweep_spec s;
    sweep_spec_init(&s);
    status_clear(&st);
    sweep_load(&s, path, &st);
    sweep_spec_free(&s);
    (void)sweep_file_is_sweep(path);
    /* the same bytes as one --set override */
    char *set = malloc(size + 1);
    if (set) {
        memcpy(set, data, size);
        set[size] = '\0';
        config_defaults(&c);
        config_set(&c, set, NULL);
        free(set);
    }
    unlink(path);
    return 0;
}
