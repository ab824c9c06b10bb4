/* exp_config.c - see exp_config.h. */
#include "src/run/exp_config.h"
#include "src/run/ini_read.h"
#include "models/counter.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef enum { K_INT, K_I64, K_DOUBLE, K_BOOL, K_STR, K_ENUM } key_type;

const char *const cfg_optimizer_names[CFG_OPTIM_N] = {"adam", "sgd"};
const char *const cfg_lr_schedule_names[CFG_LR_N] = {"constant", "step", "cosine"};
const char *const cfg_precision_names[CFG_PRECISION_N] = {"fp32", "bf16"};
const char *const cfg_init_bias_names[CFG_INIT_BIAS_N] = {"pytorch", "data"};
const char *const cfg_input_names[CFG_INPUT_N] = {"mask", "mask+image", "image"};
const char *const cfg_calibrate_names[CFG_CALIBRATE_N] = {"val", "none", "coverage"};
const char *const cfg_tta_names[CFG_TTA_N] = {"none", "flips"};

/* K_ENUM fields are stored and read as int: every cfg_* enum and loss_kind
 * must be int-sized (their values are small and non-negative). */
_Static_assert(sizeof(cfg_optimizer) == sizeof(int) && sizeof(cfg_lr_schedule) == sizeof(int) &&
               sizeof(cfg_precision) == sizeof(int) && sizeof(cfg_init_bias) == sizeof(int) &&
               sizeof(cfg_input) == sizeof(int) && sizeof(cfg_calibrate) == sizeof(int) &&
               sizeof(cfg_tta) == sizeof(int) && sizeof(loss_kind) == sizeof(int), "enum settings must be int-sized");

typedef struct key_def {
    const char *section, *key;
    key_type type;
    size_t offset;
    double lo, hi;              /* numeric range (inclusive) */
    const char *const *names;   /* K_ENUM: the setting's name table, nnames entries */
    size_t size;                /* K_STR buffer size; K_ENUM: nnames */
} key_def;

#define OFF(f) offsetof(cc_config, f)
#define SZ(f) sizeof(((cc_config *)0)->f)
#define NAMES(t) t, sizeof t / sizeof t[0]
#define TRAIN_KEYS(sec, f)                                                                  \
    {sec, "epochs", K_INT, OFF(f.epochs), 0, 100000, NULL, 0},                              \
    {sec, "batch", K_INT, OFF(f.batch), 1, 4096, NULL, 0},                                  \
    {sec, "optimizer", K_ENUM, OFF(f.optimizer), 0, 0, NAMES(cfg_optimizer_names)},         \
    {sec, "lr", K_DOUBLE, OFF(f.lr), 1e-12, 10, NULL, 0},                                   \
    {sec, "lr_schedule", K_ENUM, OFF(f.lr_schedule), 0, 0, NAMES(cfg_lr_schedule_names)},   \
    {sec, "lr_step_epochs", K_INT, OFF(f.lr_step_epochs), 0, 100000, NULL, 0},              \
    {sec, "lr_gamma", K_DOUBLE, OFF(f.lr_gamma), 1e-6, 1, NULL, 0},                         \
    {sec, "lr_min", K_DOUBLE, OFF(f.lr_min), 0, 10, NULL, 0},                               \
    {sec, "weight_decay", K_DOUBLE, OFF(f.weight_decay), 0, 1, NULL, 0},                    \
    {sec, "momentum", K_DOUBLE, OFF(f.momentum), 0, 0.9999, NULL, 0},                       \
    {sec, "beta1", K_DOUBLE, OFF(f.beta1), 0, 0.9999999, NULL, 0},                          \
    {sec, "beta2", K_DOUBLE, OFF(f.beta2), 0, 0.9999999, NULL, 0},                          \
    {sec, "eps", K_DOUBLE, OFF(f.eps), 1e-20, 1, NULL, 0},                                  \
    {sec, "max_steps", K_INT, OFF(f.max_steps), 0, 100000000, NULL, 0}

static const key_def keys[] = {
    {"run", "name", K_STR, OFF(name), 0, 0, NULL, SZ(name)},
    {"run", "out_dir", K_STR, OFF(out_dir), 0, 0, NULL, SZ(out_dir)},
    {"run", "seed", K_I64, OFF(seed), 0, 9.0e15, NULL, 0},
    {"run", "threads", K_INT, OFF(threads), 0, 4096, NULL, 0},
    {"run", "sync_bn", K_BOOL, OFF(sync_bn), 0, 1, NULL, 0},
    {"run", "overlap_allreduce", K_BOOL, OFF(overlap_allreduce), 0, 1, NULL, 0},
    {"run", "allreduce_bucket_mb", K_DOUBLE, OFF(allreduce_bucket_mb), 0.001, 4096, NULL, 0},
    {"run", "precision", K_ENUM, OFF(precision), 0, 0, NAMES(cfg_precision_names)},
    {"data", "file", K_STR, OFF(data_file), 0, 0, NULL, SZ(data_file)},
    {"data", "augment", K_BOOL, OFF(augment), 0, 1, NULL, 0},
    {"data", "aug_scale", K_DOUBLE, OFF(aug_scale), 0, 0.5, NULL, 0},
    {"data", "aug_blur", K_DOUBLE, OFF(aug_blur), 0, 20, NULL, 0},
    {"data", "aug_gamma", K_DOUBLE, OFF(aug_gamma), 0, 1, NULL, 0},
    {"data", "aug_gain", K_DOUBLE, OFF(aug_gain), 0, 0.9, NULL, 0},
    {"data", "aug_noise", K_DOUBLE, OFF(aug_noise), 0, 0.5, NULL, 0},
    {"fpn", "depth", K_INT, OFF(fpn_depth), 2, 5, NULL, 0},
    {"fpn", "width", K_INT, OFF(fpn_width), 1, 4096, NULL, 0},
    {"fpn", "channels", K_INT, OFF(fpn_channels), 1, 3, NULL, 0},
    {"fpn", "loss", K_ENUM, OFF(fpn_loss), 0, 0, NAMES(loss_kind_names)},
    {"fpn", "tv_weight", K_DOUBLE, OFF(tv_weight), 0, 1e6, NULL, 0},
    {"counter", "arch", K_STR, OFF(counter_arch), 0, 0, NULL, SZ(counter_arch)},
    {"counter", "width_div", K_INT, OFF(counter_width_div), 1, 64, NULL, 0},
    {"counter", "init_bias", K_ENUM, OFF(counter_init_bias), 0, 0, NAMES(cfg_init_bias_names)},
    {"counter", "input", K_ENUM, OFF(counter_input), 0, 0, NAMES(cfg_input_names)},
    {"counter", "precise_bn", K_INT, OFF(counter_precise_bn), 0, 1000000, NULL, 0},
    {"counter", "ema", K_DOUBLE, OFF(counter_ema), 0, 0.999999, NULL, 0},
    {"counter", "freeze_bn", K_INT, OFF(counter_freeze_bn), 0, 1000000, NULL, 0},
    {"counter", "freeze_warmup", K_DOUBLE, OFF(counter_freeze_warmup), 0, 1000, NULL, 0},
    {"counter", "calibrate", K_ENUM, OFF(counter_calibrate), 0, 0, NAMES(cfg_calibrate_names)},
    {"counter", "calibrate_count", K_BOOL, OFF(counter_calibrate_count), 0, 1, NULL, 0},
    {"counter", "calibrate_on", K_STR, OFF(counter_calibrate_on), 0, 0, NULL,
     SZ(counter_calibrate_on)},
    {"counter", "relu_unstick", K_BOOL, OFF(counter_relu_unstick), 0, 1, NULL, 0},
    {"counter", "head_means", K_BOOL, OFF(counter_head_means), 0, 1, NULL, 0},
    {"counter", "density_weight", K_DOUBLE, OFF(counter_density_weight), 0, 1e6, NULL, 0},
    {"counter", "density_sigma", K_DOUBLE, OFF(counter_density_sigma), 0.05, 100, NULL, 0},
    {"counter", "tta", K_ENUM, OFF(counter_tta), 0, 0, NAMES(cfg_tta_names)},
    {"counter", "loss", K_ENUM, OFF(counter_loss), 0, 0, NAMES(loss_kind_names)},
    {"counter", "finetune_fpn", K_BOOL, OFF(finetune_fpn), 0, 1, NULL, 0},
    TRAIN_KEYS("fpn_train", fpn_train),
    TRAIN_KEYS("counter_train", counter_train),
};
#define NKEYS (sizeof keys / sizeof keys[0])

static void train_defaults(cfg_train *t, int batch, double lr)
{
    memset(t, 0, sizeof *t);
    t->epochs = 50;
    t->batch = batch;
    t->optimizer = CFG_OPTIM_ADAM;
    t->lr = lr;
    t->lr_schedule = CFG_LR_CONSTANT;
    t->lr_gamma = 0.5;
    t->momentum = 0.9;
    t->beta1 = 0.9;
    t->beta2 = 0.999;
    t->eps = 1e-8;
}

void config_defaults(cc_config *c)
{
    memset(c, 0, sizeof *c);
    strcpy(c->name, "run");
    strcpy(c->out_dir, "runs/run");
    c->seed = 1;
    c->precision = CFG_PRECISION_FP32;
    c->overlap_allreduce = 1;
    c->allreduce_bucket_mb = 2;
    strcpy(c->data_file, "data/bbbc005_w2.h5");
    c->augment = 1;
    c->fpn_depth = 4;
    c->fpn_width = 128;
    c->fpn_channels = 1;
    c->fpn_loss = LOSS_NLL;
    c->tv_weight = 1e-6;
    strcpy(c->counter_arch, "vgg11");
    c->counter_width_div = 1;
    c->counter_init_bias = CFG_INIT_BIAS_PYTORCH;
    c->counter_input = CFG_INPUT_MASK;
    c->counter_calibrate = CFG_CALIBRATE_VAL;
    c->counter_calibrate_count = 0;
    c->counter_density_sigma = 0.6;
    /* Not the paper's: a weight average validated with its own BN
     * statistics (docs/RESULTS_HISTORY.md "Counter training stability"). */
    c->counter_precise_bn = 50;
    c->counter_ema = 0.99;
    /* Not the paper's either: from the second epoch on the counter trains
     * with fixed BN statistics, as it is evaluated (docs/RESULTS.md, "Frozen
     * BN": batch statistics let it count relative to its batch). */
    c->counter_freeze_bn = 1;
    c->counter_freeze_warmup = 1;
    /* Not the paper's: a dead count output (every input below the final
     * relu) still learns (op_relu_unstick; docs/RESULTS.md). */
    c->counter_relu_unstick = 1;
    c->counter_loss = LOSS_NLL;
    train_defaults(&c->fpn_train, 2, 1e-3);
    train_defaults(&c->counter_train, 5, 1e-4);
    c->counter_train.lr_schedule = CFG_LR_STEP;
    c->counter_train.lr_step_epochs = 20;
}

static const key_def *find_key(const char *section, const char *key)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (!strcmp(keys[i].section, section) && !strcmp(keys[i].key, key)) return &keys[i];
    return NULL;
}

static int section_known(const char *section)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (!strcmp(keys[i].section, section)) return 1;
    return 0;
}

/* The index of v in a name table, or -1. */
static int names_find(const char *const *names, int n, const char *v)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], v)) return i;
    return -1;
}

const char *config_names_join(const char *const *names, int n, const char *sep, char *buf,
                              size_t len)
{
    size_t at = 0;
    if (len) buf[0] = '\0';
    for (int i = 0; i < n && at < len; i++) {
        int w = snprintf(buf + at, len - at, "%s%s", i ? sep : "", names[i]);
        if (w < 0) break;
        at += (size_t)w;
    }
    return buf;
}

/* Parse value into the field; where = "file:line" or "--set" for messages. */
static int set_value(cc_config *c, const key_def *k, const char *v, const char *where,
                     cc_status *st)
{
    char *field = (char *)c + k->offset;
    char *end;
    errno = 0;
    switch (k->type) {
    case K_INT:
    case K_I64: {
        long long x = strtoll(v, &end, 10);
        if (errno || end == v || *end)
            return status_set(st, "%s: %s.%s: '%s' is not an integer", where, k->section, k->key, v);
        if (x < k->lo || x > k->hi)
            return status_set(st, "%s: %s.%s: %lld is out of range [%g, %g]", where, k->section,
                              k->key, x, k->lo, k->hi);
        if (k->type == K_INT)
            *(int *)field = (int)x;
        else
            *(int64_t *)field = x;
        return 0;
    }
    case K_DOUBLE: {
        double x = strtod(v, &end);
        if (errno || end == v || *end || !isfinite(x))
            return status_set(st, "%s: %s.%s: '%s' is not a number", where, k->section, k->key, v);
        if (x < k->lo || x > k->hi)
            return status_set(st, "%s: %s.%s: %g is out of range [%g, %g]", where, k->section,
                              k->key, x, k->lo, k->hi);
        *(double *)field = x;
        return 0;
    }
    case K_BOOL:
        if (!strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcmp(v, "1") || !strcasecmp(v, "on"))
            *(int *)field = 1;
        else if (!strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcmp(v, "0") ||
                 !strcasecmp(v, "off"))
            *(int *)field = 0;
        else
            return status_set(st, "%s: %s.%s: '%s' is not a boolean (true/false)", where,
                              k->section, k->key, v);
        return 0;
    case K_ENUM: {
        int i = names_find(k->names, (int)k->size, v);
        if (i < 0) {
            char choices[256];
            return status_set(st, "%s: %s.%s: '%s' is not one of %s", where, k->section, k->key,
                              v, config_names_join(k->names, (int)k->size, "|", choices,
                                                   sizeof choices));
        }
        *(int *)field = i;
        return 0;
    }
    case K_STR:
        if (strlen(v) >= k->size)
            return status_set(st, "%s: %s.%s: value longer than %zu characters", where,
                              k->section, k->key, k->size - 1);
        strcpy(field, v);
        return 0;
    }
    return -1;
}

static int config_ini_handler(void *user, const char *where, const char *section,
                              const char *name, const char *value, cc_status *st)
{
    if (!section_known(section))
        return status_set(st, "%s: unknown section [%s]", where, section);
    if (!name) return 0;
    const key_def *k = find_key(section, name);
    if (!k) return status_set(st, "%s: unknown key '%s' in section [%s]", where, name, section);
    return set_value(user, k, value, where, st);
}

int config_load(cc_config *c, const char *path, cc_status *st)
{
    FILE *f = fopen(path, "r");
    if (!f) return status_set(st, "%s: cannot open experiment file (%s)", path, strerror(errno));
    int r = ini_read(f, path, config_ini_handler, c, st);
    fclose(f);
    return r;
}

int config_set(cc_config *c, const char *assignment, cc_status *st)
{
    char buf[CFG_STR * 2];
    if (strlen(assignment) >= sizeof buf) return status_set(st, "--set: override too long");
    strcpy(buf, assignment);
    char *eq = strchr(buf, '='), *dot = strchr(buf, '.');
    if (!eq || !dot || dot > eq)
        return status_set(st, "--set %s: expected section.key=value", assignment);
    *eq = *dot = '\0';
    const key_def *k = find_key(buf, dot + 1);
    if (!k) return status_set(st, "--set %s: unknown key '%s.%s'", assignment, buf, dot + 1);
    return set_value(c, k, eq + 1, "--set", st);
}

static int train_validate(const cfg_train *t, const char *sec, cc_status *st)
{
    if (t->lr_schedule == CFG_LR_STEP && t->lr_step_epochs <= 0)
        return status_set(st, "%s.lr_schedule = step needs %s.lr_step_epochs > 0", sec, sec);
    if (t->lr_schedule == CFG_LR_COSINE && t->lr_min >= t->lr)
        return status_set(st, "%s.lr_schedule = cosine needs %s.lr_min (%g) below %s.lr (%g)",
                          sec, sec, t->lr_min, sec, t->lr);
    return 0;
}

int config_validate(const cc_config *c, cc_status *st)
{
    if (!c->data_file[0]) return status_set(st, "data.file is empty");
    if (!c->out_dir[0]) return status_set(st, "run.out_dir is empty");
    if ((c->counter_precise_bn || c->counter_ema > 0 || c->counter_freeze_bn > 0) &&
        c->finetune_fpn)
        return status_set(st, "counter.finetune_fpn = true needs counter.precise_bn = 0, "
                              "counter.ema = 0 and counter.freeze_bn = 0 (the FPN's statistics "
                              "would move too; the statistics are re-estimated through the "
                              "cached FPN masks)");
    if (c->counter_input == CFG_INPUT_IMAGE && c->finetune_fpn)
        return status_set(st, "counter.finetune_fpn needs counter.input = mask or mask+image");
    if (train_validate(&c->fpn_train, "fpn_train", st) ||
        train_validate(&c->counter_train, "counter_train", st))
        return -1;
    return 0;
}

static void render(const cc_config *c, const key_def *k, char *out, size_t n)
{
    const char *field = (const char *)c + k->offset;
    switch (k->type) {
    case K_INT: snprintf(out, n, "%d", *(const int *)field); break;
    case K_I64: snprintf(out, n, "%lld", (long long)*(const int64_t *)field); break;
    case K_DOUBLE: {
        /* Shortest text that reads back to the same double. */
        double x = *(const double *)field;
        for (int prec = 6; prec <= 17; prec++) {
            snprintf(out, n, "%.*g", prec, x);
            if (strtod(out, NULL) == x) break;
        }
        break;
    }
    case K_BOOL: snprintf(out, n, "%s", *(const int *)field ? "true" : "false"); break;
    case K_STR: snprintf(out, n, "%s", field); break;
    case K_ENUM: {
        int i = *(const int *)field;
        snprintf(out, n, "%s", i >= 0 && (size_t)i < k->size ? k->names[i] : "?");
        break;
    }
    }
}

int config_key(const cc_config *c, int i, char *name, size_t name_len, char *value,
               size_t value_len)
{
    if (i < 0 || (size_t)i >= NKEYS) return 0;
    snprintf(name, name_len, "%s.%s", keys[i].section, keys[i].key);
    render(c, &keys[i], value, value_len);
    return 1;
}

void config_write(const cc_config *c, FILE *f)
{
    const char *sec = "";
    char v[CFG_STR + 8];
    for (size_t i = 0; i < NKEYS; i++) {
        if (strcmp(sec, keys[i].section)) {
            sec = keys[i].section;
            fprintf(f, "%s[%s]\n", i ? "\n" : "", sec);
        }
        render(c, &keys[i], v, sizeof v);
        fprintf(f, "%s = %s\n", keys[i].key, v);
    }
}

void config_enums_print(FILE *f)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (keys[i].type == K_ENUM) {
            char name[64], choices[256];
            snprintf(name, sizeof name, "%s.%s", keys[i].section, keys[i].key);
            fprintf(f, "  %-27s %s\n", name,
                    config_names_join(keys[i].names, (int)keys[i].size, "|", choices,
                                      sizeof choices));
        }
    /* counter.arch is a name of models/counter.c's registry, which lists them */
    fprintf(f, "  %-27s", "counter.arch");
    for (int i = 0; i < counter_arch_count(); i++)
        fprintf(f, "%s%s", i ? "|" : " ", counter_arch_at(i)->name);
    fprintf(f, "\n");
}

/* `cellcount quickstart`'s settings, built in so that it runs from any
 * directory; tests/test_config checks them against experiments/quickstart.ini. */
static const char *const quickstart_keys[] = {
    "run.name=quickstart",
    "run.seed=1",
    "fpn.depth=4",
    "fpn.width=16",
    "fpn_train.epochs=4",
    "fpn_train.batch=4",
    "fpn_train.lr=2e-3",
    "counter.arch=vgg11",
    "counter.width_div=8",
    "counter.init_bias=data",
    "counter.loss=decoupled",
    "counter.calibrate=coverage",
    "counter.calibrate_on=quickstart/cal.h5",
    "counter_train.epochs=120",
    "counter_train.batch=32",
    "counter_train.lr=1e-3",
    "counter_train.lr_schedule=step",
    "counter_train.lr_step_epochs=40",
};

int config_quickstart(cc_config *c, cc_status *st)
{
    for (size_t i = 0; i < sizeof quickstart_keys / sizeof *quickstart_keys; i++)
        if (config_set(c, quickstart_keys[i], st)) return -1;
    return 0;
}
