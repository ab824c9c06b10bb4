/* cli_infer.h - command-line options shared by `cellcount count` and
 * `cellcount saliency` (parser in cli_count.c). */
#ifndef CC_CLI_INFER_H
#define CC_CLI_INFER_H

#include "src/run/exp_config.h"

typedef enum infer_cmd { INFER_COUNT = 0, INFER_SALIENCY = 1 } infer_cmd;

typedef struct infer_opts {
    cc_config cfg;              /* resolved (count_config_load) */
    const char *fpn, *counter;  /* --fpn, --counter; NULL: the run's best */
    int w, h;                   /* --size; 0: from the run's data set */
    int batch;
    const char *normalize;      /* --normalize; NULL: the run's */
    int page, channel;          /* --page, --channel; -1: not given */
    /* count */
    const char *output, *masks;
    int csv;
    /* saliency */
    const char *out_h5, *png_dir;
    char **inputs;              /* positional arguments (argv's) */
    int ninputs;
} infer_opts;

/* Parse argv (argv[0] = the subcommand) and resolve the configuration.
 * Returns 0, -1 after --help (printed to stdout), or 2 after a usage or
 * configuration error (printed to stderr). */
int infer_parse(int argc, char **argv, infer_cmd cmd, infer_opts *o);

#endif
