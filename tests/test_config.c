/* test_config.c - experiment files and overrides. */
#include <check.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "src/run/exp_config.h"
#include "tests/testmain.h"

static char tmpdir[64];

static const char *write_file(const char *name, const char *text)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void setup(void)
{
    strcpy(tmpdir, "/tmp/cc_cfg_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

START_TEST(test_defaults_are_the_papers)
{
    cc_config c;
    config_defaults(&c);
    ck_assert_int_eq(c.fpn_train.batch, 2);
    ck_assert_double_eq(c.fpn_train.lr, 1e-3);
    ck_assert_int_eq(c.counter_train.batch, 5);
    ck_assert_double_eq(c.counter_train.lr, 1e-4);
    ck_assert_int_eq(c.counter_train.lr_schedule, CFG_LR_STEP);
    ck_assert_int_eq(c.counter_train.lr_step_epochs, 20);
    ck_assert_double_eq(c.tv_weight, 1e-6);
    ck_assert_int_eq(config_validate(&c, NULL), 0);
}
END_TEST

START_TEST(test_load_and_override)
{
    cc_config c;
    config_defaults(&c);
    const char *p = write_file("a.ini", "; comment\n[run]\nseed = 42\n\n[fpn]\ndepth = 3\n"
                                        "loss = paper\n[counter]\narch = resnet18\n"
                                        "finetune_fpn = yes\n");
    cc_status st;
    status_clear(&st);
    ck_assert_msg(config_load(&c, p, &st) == 0, "%s", st.msg);
    ck_assert_int_eq(c.seed, 42);
    ck_assert_int_eq(c.fpn_depth, 3);
    ck_assert_int_eq(c.fpn_loss, LOSS_PAPER);
    ck_assert_str_eq(c.counter_arch, "resnet18");
    ck_assert_int_eq(c.finetune_fpn, 1);
    ck_assert_int_eq(config_set(&c, "fpn.width=32", &st), 0);
    ck_assert_int_eq(c.fpn_width, 32);
    ck_assert_int_eq(config_set(&c, "counter_train.lr=3e-5", &st), 0);
    ck_assert_double_eq(c.counter_train.lr, 3e-5);
}
END_TEST

START_TEST(test_errors_name_file_line_key)
{
    cc_config c;
    config_defaults(&c);
    cc_status st;
    status_clear(&st);
    const char *p = write_file("b.ini", "[run]\nseed = 1\n\n[fpn]\ndepht = 3\n");
    ck_assert_int_eq(config_load(&c, p, &st), -1);
    ck_assert_msg(strstr(st.msg, "b.ini:5") && strstr(st.msg, "depht"), "%s", st.msg);

    status_clear(&st);
    p = write_file("c.ini", "[fpn]\ndepth = 9\n");
    ck_assert_int_eq(config_load(&c, p, &st), -1);
    ck_assert_msg(strstr(st.msg, "c.ini:2") && strstr(st.msg, "fpn.depth") && strstr(st.msg, "range"),
                  "%s", st.msg);

    status_clear(&st);
    p = write_file("d.ini", "[fpn]\nloss = l1\n");
    ck_assert_int_eq(config_load(&c, p, &st), -1);
    ck_assert_msg(strstr(st.msg, "nll|paper|mse"), "%s", st.msg);

    status_clear(&st);
    p = write_file("e.ini", "[bogus]\nx = 1\n");
    ck_assert_int_eq(config_load(&c, p, &st), -1);
    ck_assert_msg(strstr(st.msg, "e.ini:1") && strstr(st.msg, "[bogus]"), "%s", st.msg);

    status_clear(&st);
    p = write_file("f.ini", "[fpn_train]\nlr = fast\n");
    ck_assert_int_eq(config_load(&c, p, &st), -1);
    ck_assert_msg(strstr(st.msg, "not a number"), "%s", st.msg);

    status_clear(&st);
    ck_assert_int_eq(config_load(&c, "/nonexistent/x.ini", &st), -1);
    ck_assert_msg(strstr(st.msg, "/nonexistent/x.ini"), "%s", st.msg);

    status_clear(&st);
    ck_assert_int_eq(config_set(&c, "fpn.widht=3", &st), -1);
    ck_assert_msg(strstr(st.msg, "fpn.widht"), "%s", st.msg);
    status_clear(&st);
    ck_assert_int_eq(config_set(&c, "nodot=3", &st), -1);
    status_clear(&st);
    ck_assert_int_eq(config_set(&c, "run.threads=-1", &st), -1);
}
END_TEST

START_TEST(test_write_roundtrip)
{
    cc_config a, b;
    config_defaults(&a);
    config_set(&a, "fpn.tv_weight=1e-4", NULL);
    config_set(&a, "run.name=abl x", NULL);
    config_set(&a, "counter.input=mask+image", NULL);
    const char *p = write_file("w.ini", "");
    FILE *f = fopen(p, "w");
    config_write(&a, f);
    fclose(f);
    config_defaults(&b);
    cc_status st;
    status_clear(&st);
    ck_assert_msg(config_load(&b, p, &st) == 0, "%s", st.msg);
    char n1[64], v1[600], n2[64], v2[600];
    for (int i = 0; config_key(&a, i, n1, sizeof n1, v1, sizeof v1); i++) {
        ck_assert(config_key(&b, i, n2, sizeof n2, v2, sizeof v2));
        ck_assert_str_eq(n1, n2);
        ck_assert_msg(!strcmp(v1, v2), "%s: %s vs %s", n1, v1, v2);
    }
}
END_TEST

START_TEST(test_validate_cross_keys)
{
    cc_config c;
    config_defaults(&c);
    config_set(&c, "fpn_train.lr_schedule=step", NULL);
    config_set(&c, "fpn_train.lr_step_epochs=0", NULL);
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(config_validate(&c, &st), -1);
    ck_assert(strstr(st.msg, "lr_step_epochs"));
    config_defaults(&c);
    config_set(&c, "counter_train.lr_schedule=cosine", NULL);
    status_clear(&st);
    ck_assert_int_eq(config_validate(&c, &st), 0);
    config_set(&c, "counter_train.lr_min=1", NULL);
    ck_assert_int_eq(config_validate(&c, &st), -1);
    ck_assert(strstr(st.msg, "lr_min"));
    config_defaults(&c);
    config_set(&c, "counter.precise_bn=10", NULL);
    status_clear(&st);
    ck_assert_int_eq(config_validate(&c, &st), 0);
    config_set(&c, "counter.finetune_fpn=true", NULL);
    ck_assert_int_eq(config_validate(&c, &st), -1);
    ck_assert(strstr(st.msg, "precise_bn"));
}
END_TEST

/* data.aug_* and counter.ema: ranges checked with file:line and key named,
 * and the cross-key rule of counter.ema. */
START_TEST(test_augment_and_ema_keys)
{
    cc_config c;
    config_defaults(&c);
    ck_assert(c.aug_scale == 0 && c.aug_blur == 0 && c.aug_gamma == 0 && c.aug_gain == 0 &&
              c.aug_noise == 0);
    cc_status st;
    status_clear(&st);
    const char *p = write_file("g.ini", "[data]\naugment = true\naug_gain = 0.2\naug_gamma = 0.3\n"
                                        "aug_noise = 0.02\naug_blur = 1.5\naug_scale = 0.15\n"
                                        "[counter]\nema = 0.95\nprecise_bn = 4\n");
    ck_assert_msg(config_load(&c, p, &st) == 0, "%s", st.msg);
    ck_assert(c.aug_gain == 0.2 && c.aug_gamma == 0.3 && c.aug_noise == 0.02 &&
              c.aug_blur == 1.5 && c.aug_scale == 0.15 && c.counter_ema == 0.95);
    ck_assert_int_eq(config_validate(&c, &st), 0);
    static const struct {
        const char *text, *want[3];
    } bad[] = {
        {"[data]\naug_scale = 0.15\naug_gain = 2\n", {"h.ini:3", "data.aug_gain", "range"}},
        {"[data]\naug_blur = -1\n", {"h.ini:2", "data.aug_blur", "range"}},
        {"[data]\naug_noise = lots\n", {"h.ini:2", "data.aug_noise", "not a number"}},
        {"[data]\n\naug_gamma = 1.5\n", {"h.ini:3", "data.aug_gamma", "range"}},
        {"[data]\naug_scale = 0.6\n", {"h.ini:2", "data.aug_scale", "range"}},
        {"[counter]\nema = 1\n", {"h.ini:2", "counter.ema", "range"}},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        config_defaults(&c);
        status_clear(&st);
        p = write_file("h.ini", bad[i].text);
        ck_assert_int_eq(config_load(&c, p, &st), -1);
        for (int k = 0; k < 3; k++)
            ck_assert_msg(strstr(st.msg, bad[i].want[k]), "case %zu: %s", i, st.msg);
    }
    status_clear(&st);
    ck_assert_int_eq(config_set(&c, "data.aug_noise=0.9", &st), -1);
    ck_assert_msg(strstr(st.msg, "--set") && strstr(st.msg, "data.aug_noise"), "%s", st.msg);
    /* a fine-tuned FPN rules out the average (its statistics would move) */
    config_defaults(&c);
    config_set(&c, "counter.precise_bn=0", NULL);
    ck_assert_int_eq(config_validate(&c, &st), 0);
    config_set(&c, "counter.finetune_fpn=true", NULL);
    status_clear(&st);
    ck_assert_int_eq(config_validate(&c, &st), -1);
    ck_assert_msg(strstr(st.msg, "counter.ema") && strstr(st.msg, "finetune_fpn"), "%s", st.msg);
}
END_TEST

/* Every shipped experiment file loads and validates (sweep files, with a
 * [sweep] section, are test_sweep's). */
START_TEST(test_shipped_experiment_files)
{
    const char *top = getenv("CC_TOP_SRCDIR");
    char cmd[512], path[512];
    snprintf(cmd, sizeof cmd,
             "grep -L '^\\[sweep\\]' %s/experiments/*.ini %s/experiments/ablations/*.ini",
             top ? top : ".", top ? top : ".");
    FILE *ls = popen(cmd, "r");
    ck_assert_ptr_nonnull(ls);
    int n = 0;
    while (fgets(path, sizeof path, ls)) {
        path[strcspn(path, "\n")] = '\0';
        cc_config c;
        config_defaults(&c);
        cc_status st;
        status_clear(&st);
        ck_assert_msg(config_load(&c, path, &st) == 0, "%s", st.msg);
        ck_assert_msg(config_validate(&c, &st) == 0, "%s: %s", path, st.msg);
        n++;
    }
    pclose(ls);
    ck_assert_int_ge(n, 24); /* paper, quickstart and 22 ablations */
}
END_TEST
/* The quickstart's built-in settings are experiments/quickstart.ini's
 * (but for the directories, which the command takes from --out). */
START_TEST(test_quickstart_matches_ini)
{
    const char *top = getenv("CC_TOP_SRCDIR");
    char path[512];
    snprintf(path, sizeof path, "%s/experiments/quickstart.ini", top ? top : ".");
    cc_config a, b;
    config_defaults(&a);
    config_defaults(&b);
    cc_status st;
    status_clear(&st);
    ck_assert_msg(config_load(&a, path, &st) == 0, "%s", st.msg);
    ck_assert_msg(config_quickstart(&b, &st) == 0, "%s", st.msg);
    strcpy(b.out_dir, a.out_dir);
    strcpy(b.data_file, a.data_file);
    char *ta = NULL, *tb = NULL;
    size_t la, lb;
    FILE *fa = open_memstream(&ta, &la), *fb = open_memstream(&tb, &lb);
    config_write(&a, fa);
    config_write(&b, fb);
    fclose(fa);
    fclose(fb);
    ck_assert_msg(!strcmp(ta, tb), "experiments/quickstart.ini:\n%s\nbuilt in:\n%s", ta, tb);
    free(ta);
    free(tb);
}
END_TEST


/* The typed settings (issue 12): every name of every table parses to its
 * enum value and renders back as the same text; the defaults' text is what
 * the string settings wrote (run files stay comparable); a bad value's
 * message lists the whole table. */
START_TEST(test_enum_settings_roundtrip)
{
    static const struct {
        const char *key;
        const char *const *names;
        int n;
        size_t off;
    } tab[] = {
        {"run.precision", cfg_precision_names, CFG_PRECISION_N, offsetof(cc_config, precision)},
        {"fpn.loss", loss_kind_names, LOSS_N, offsetof(cc_config, fpn_loss)},
        {"counter.init_bias", cfg_init_bias_names, CFG_INIT_BIAS_N,
         offsetof(cc_config, counter_init_bias)},
        {"counter.input", cfg_input_names, CFG_INPUT_N, offsetof(cc_config, counter_input)},
        {"counter.calibrate", cfg_calibrate_names, CFG_CALIBRATE_N,
         offsetof(cc_config, counter_calibrate)},
        {"counter.tta", cfg_tta_names, CFG_TTA_N, offsetof(cc_config, counter_tta)},
        {"counter.loss", loss_kind_names, LOSS_N, offsetof(cc_config, counter_loss)},
        {"fpn_train.optimizer", cfg_optimizer_names, CFG_OPTIM_N,
         offsetof(cc_config, fpn_train.optimizer)},
        {"counter_train.lr_schedule", cfg_lr_schedule_names, CFG_LR_N,
         offsetof(cc_config, counter_train.lr_schedule)},
    };
    cc_status st;
    for (size_t t = 0; t < sizeof tab / sizeof tab[0]; t++) {
        for (int i = 0; i < tab[t].n; i++) {
            cc_config c;
            config_defaults(&c);
            char set[128], name[64], value[64];
            snprintf(set, sizeof set, "%s=%s", tab[t].key, tab[t].names[i]);
            status_clear(&st);
            ck_assert_msg(config_set(&c, set, &st) == 0, "%s: %s", set, st.msg);
            ck_assert_int_eq(*(const int *)((const char *)&c + tab[t].off), i);
            int found = 0;
            for (int k = 0; config_key(&c, k, name, sizeof name, value, sizeof value); k++)
                if (!strcmp(name, tab[t].key)) {
                    found = 1;
                    ck_assert_str_eq(value, tab[t].names[i]);
                }
            ck_assert_msg(found, "%s not listed by config_key", tab[t].key);
        }
        cc_config c;
        config_defaults(&c);
        char set[128], all[256];
        snprintf(set, sizeof set, "%s=bogus", tab[t].key);
        status_clear(&st);
        ck_assert_int_eq(config_set(&c, set, &st), -1);
        config_names_join(tab[t].names, tab[t].n, "|", all, sizeof all);
        ck_assert_msg(strstr(st.msg, "is not one of") && strstr(st.msg, all), "%s", st.msg);
    }
    /* The defaults' enum lines, as the string settings wrote them. */
    cc_config c;
    config_defaults(&c);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ck_assert_ptr_nonnull(f);
    config_write(&c, f);
    fclose(f);
    const char *want[] = {"[run]\n", "precision = fp32\n", "[fpn]\n", "loss = nll\n",
                          "init_bias = pytorch\n", "input = mask\n", "calibrate = val\n",
                          "[fpn_train]\n", "optimizer = adam\n", "lr_schedule = constant\n",
                          "[counter_train]\n", "lr_schedule = step\n"};
    const char *at = text;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const char *p = strstr(at, want[i]);
        ck_assert_msg(p, "config_write lacks '%s' (in order) in:\n%s", want[i], text);
        at = p + strlen(want[i]);
    }
    free(text);
    char buf[8];
    ck_assert_str_eq(config_names_join(cfg_input_names, CFG_INPUT_N, ",", buf, sizeof buf),
                     "mask,ma");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_defaults_are_the_papers);
    tcase_add_test(tc, test_load_and_override);
    tcase_add_test(tc, test_errors_name_file_line_key);
    tcase_add_test(tc, test_write_roundtrip);
    tcase_add_test(tc, test_validate_cross_keys);
    tcase_add_test(tc, test_augment_and_ema_keys);
    tcase_add_test(tc, test_shipped_experiment_files);
    tcase_add_test(tc, test_quickstart_matches_ini);
    tcase_add_test(tc, test_enum_settings_roundtrip);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
