/* exp_config.h - the experiment configuration: every knob of a run, read from an
 * INI experiment file (libinih) and `--set section.key=value` overrides.
 *
 * The key table in config.c is the single source of truth: parsing,
 * validation, defaults, printing into run files and `report`'s "keys that
 * differ" all walk it.  Unknown sections/keys and bad values are errors that
 * name the file, the line and the key.
 */
#ifndef CC_CONFIG_H
#define CC_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "autodiff/status.h"

#define CFG_STR 512

typedef struct cfg_train {
    int epochs;
    int batch;
    char optimizer[16];         /* adam | sgd */
    double lr;
    char lr_schedule[16];       /* constant | step */
    int lr_step_epochs;
    double lr_gamma;
    double weight_decay;
    double momentum;            /* sgd */
    double beta1, beta2, eps;   /* adam */
    int max_steps;              /* 0 = all; cap per epoch (smoke tests) */
} cfg_train;

typedef struct cc_config {
    /* [run] */
    char name[CFG_STR];
    char out_dir[CFG_STR];
    int64_t seed;
    int threads;                /* 0 = OMP default */
    int sync_bn;                /* MPI: BatchNorm statistics over all ranks */
    char precision[8];          /* fp32 | bf16 */
    /* [data] */
    char data_file[CFG_STR];
    int augment;                /* random h/v flips */
    double aug_scale, aug_blur, aug_gamma, aug_gain, aug_noise;  /* 0 = off; loader.h loader_aug */
    /* [fpn] */
    int fpn_depth, fpn_width, fpn_channels;
    char fpn_loss[16];          /* nll | paper | mse | decoupled */
    double tv_weight;
    /* [counter] */
    char counter_arch[32];
    int counter_width_div;      /* divide counter widths (1 = the paper's) */
    char counter_init_bias[16]; /* pytorch | data (see train_counter) */
    char counter_input[16];     /* mask | mask+image | image */
    int counter_precise_bn;     /* > 0: re-estimate BN statistics on this many training batches after
                                 * each epoch (the average's with counter_ema, where 0 = all) */
    double counter_ema;         /* > 0: validate/keep an average of the weights, this decay per step */
    char counter_calibrate[8];  /* val | none: scale sigma to the validation split (evaluate) */
    char counter_loss[16];
    int finetune_fpn;
    /* [fpn_train], [counter_train] */
    cfg_train fpn_train, counter_train;
} cc_config;

/* Defaults: the paper's protocol (SPEC "Training defaults"). */
void config_defaults(cc_config *c);

/* Apply an INI file on top of c.  Errors name path:line and the key. */
int config_load(cc_config *c, const char *path, cc_status *st);

/* Apply one "section.key=value" override (errors name the override). */
int config_set(cc_config *c, const char *assignment, cc_status *st);

/* Cross-key checks (e.g. lr_schedule=step needs lr_step_epochs > 0). */
int config_validate(const cc_config *c, cc_status *st);

/* Write the resolved configuration as INI (reloadable with config_load). */
void config_write(const cc_config *c, FILE *f);

/* Iterate the keys: for i = 0.. while config_key(c, i, ...) returns 1, gives
 * "section.key" and the value rendered as text. */
int config_key(const cc_config *c, int i, char *name, size_t name_len, char *value,
               size_t value_len);

/* Apply `cellcount quickstart`'s built-in settings (the keys of
 * experiments/quickstart.ini but run.out_dir and data.file) on top of c. */
int config_quickstart(cc_config *c, cc_status *st);

#endif
