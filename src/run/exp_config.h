/* exp_config.h - the experiment configuration: every knob of a run, read from an
 * INI experiment file (src/run/ini_read.h) and `--set section.key=value` overrides.
 *
 * The key table in exp_config.c is the single source of truth: parsing,
 * validation, defaults, printing into run files and `report`'s "keys that
 * differ" all walk it.  Unknown sections/keys and bad values are errors that
 * name the file, the line and the key.
 */
#ifndef CC_CONFIG_H
#define CC_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "autodiff/status.h"
#include "models/losses.h"

#define CFG_STR 512

/* Enum-like settings are parsed once, into these enums; users switch on
 * them.  Each has one name table (cfg_<setting>_names, in enum order): the
 * text in experiment files, --set, run files, --help and error messages. */
typedef enum cfg_optimizer { CFG_OPTIM_ADAM, CFG_OPTIM_SGD, CFG_OPTIM_N } cfg_optimizer;
typedef enum cfg_lr_schedule { CFG_LR_CONSTANT, CFG_LR_STEP, CFG_LR_COSINE, CFG_LR_N } cfg_lr_schedule;
typedef enum cfg_precision { CFG_PRECISION_FP32, CFG_PRECISION_BF16, CFG_PRECISION_N } cfg_precision;
typedef enum cfg_init_bias { CFG_INIT_BIAS_PYTORCH, CFG_INIT_BIAS_DATA, CFG_INIT_BIAS_N } cfg_init_bias;
typedef enum cfg_input { CFG_INPUT_MASK, CFG_INPUT_MASK_IMAGE, CFG_INPUT_IMAGE, CFG_INPUT_N } cfg_input;
/* val: sigma's factor is the Gaussian NLL's optimum on the validation split;
 * coverage: the factor that puts 95% of the validation truths inside count
 * +- 1.96 sigma (a split-conformal quantile); none: raw sigma. */
typedef enum cfg_calibrate {
    CFG_CALIBRATE_VAL,
    CFG_CALIBRATE_NONE,
    CFG_CALIBRATE_COVERAGE,
    CFG_CALIBRATE_N
} cfg_calibrate;
typedef enum cfg_tta { CFG_TTA_NONE, CFG_TTA_FLIPS, CFG_TTA_N } cfg_tta;

extern const char *const cfg_optimizer_names[CFG_OPTIM_N];         /* adam sgd */
extern const char *const cfg_lr_schedule_names[CFG_LR_N];          /* constant step */
extern const char *const cfg_precision_names[CFG_PRECISION_N];     /* fp32 bf16 */
extern const char *const cfg_init_bias_names[CFG_INIT_BIAS_N];     /* pytorch data */
extern const char *const cfg_input_names[CFG_INPUT_N];             /* mask mask+image image */
extern const char *const cfg_calibrate_names[CFG_CALIBRATE_N];     /* val none coverage */
extern const char *const cfg_tta_names[CFG_TTA_N];                 /* none flips */
/* Losses (fpn.loss, counter.loss) are models/losses.h's loss_kind, named by
 * loss_kind_names. */

typedef struct cfg_train {
    int epochs;
    int batch;
    cfg_optimizer optimizer;
    double lr;
    cfg_lr_schedule lr_schedule;
    int lr_step_epochs;
    double lr_gamma;
    double lr_min;              /* cosine: the rate reached at the last epoch's end */
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
    int overlap_allreduce;      /* MPI: reduce gradient buckets during backward */
    double allreduce_bucket_mb; /* MPI: bucket size of that reduction (MB of floats) */
    cfg_precision precision;
    /* [data] */
    char data_file[CFG_STR];
    int augment;                /* random h/v flips */
    double aug_scale, aug_blur, aug_gamma, aug_gain, aug_noise;  /* 0 = off; loader.h loader_aug */
    /* [fpn] */
    int fpn_depth, fpn_width, fpn_channels;
    loss_kind fpn_loss;
    double tv_weight;
    /* [counter] */
    char counter_arch[32];
    int counter_width_div;      /* divide counter widths (1 = the paper's) */
    cfg_init_bias counter_init_bias;   /* see train_counter */
    cfg_input counter_input;
    int counter_precise_bn;     /* > 0: re-estimate BN statistics on this many training batches after
                                 * each epoch (the average's with counter_ema, where 0 = all) */
    double counter_ema;         /* > 0: validate/keep an average of the weights, this decay per step */
    int counter_freeze_bn;      /* > 0: from this epoch on (0-based), train with fixed BN statistics */
    double counter_freeze_warmup; /* > 0: the lr ramps up over this many epochs after the freeze */
    cfg_calibrate counter_calibrate;   /* val: scale sigma to the validation split (evaluate) */
    int counter_calibrate_count;  /* the calibration adds a term that grows with the count
                                   * (count_calib; off by default) */
    /* counter.calibrate_on: a data set to fit the calibration on instead of
     * the run's validation split (all its images), e.g. a simulated set of
     * other scenes; "" = the validation split */
    char counter_calibrate_on[CFG_STR];
    int counter_relu_unstick;   /* the count's relu passes "increase" gradients when dead */
    int counter_head_means;     /* the heads also read the input channels' means (counter.h) */
    double counter_density_weight;  /* > 0: supervise the density map by the cells' centres
                                     * (density_target.h), this weight */
    double counter_density_sigma;   /* the target's Gaussian per cell, in map positions */
    cfg_tta counter_tta;        /* flips: evaluate and count average the four flips */
    loss_kind counter_loss;
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

/* Print every enum-like key with its allowed values ("  section.key  a|b|c"
 * per line, from the name tables; counter.arch from the model registry) to
 * f, for --help. */
void config_enums_print(FILE *f);

/* The names of a name table joined by sep ("a|b|c" with sep "|") into buf
 * (cut to len, always terminated); returns buf. */
const char *config_names_join(const char *const *names, int n, const char *sep, char *buf,
                              size_t len);

/* Apply `cellcount quickstart`'s built-in settings (the keys of
 * experiments/quickstart.ini but run.out_dir and data.file) on top of c. */
int config_quickstart(cc_config *c, cc_status *st);

#endif
