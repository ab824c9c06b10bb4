/* test_export.c - `cellcount export`: TFRecord framing and CRC32C, event
 * files decoded by protoc (independently of our writer), the CSV read back
 * by Python, and export of a run file that is being rewritten. */
#include <check.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <png.h>
#include <tiffio.h>

#include "src/sweep/export.h"
#include "src/data/png_io.h"
#include "src/data/tiff_io.h"
#include "src/sweep/tfevents.h"
#include "tests/testmain.h"

static char dir[64];

static void setup(void)
{
    strcpy(dir, "/tmp/cc_export_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Is prog on PATH? */
static int have(const char *prog)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", prog);
    return system(cmd) == 0;
}

START_TEST(test_crc32c)
{
    ck_assert_uint_eq(tfevents_crc32c(0, "123456789", 9), 0xE3069283u);
    /* RFC 3720 B.4: 32 bytes of zeros, and in two pieces */
    unsigned char z[32] = {0};
    ck_assert_uint_eq(tfevents_crc32c(0, z, 32), 0x8A9136AAu);
    ck_assert_uint_eq(tfevents_crc32c(tfevents_crc32c(0, z, 10), z + 10, 22), 0x8A9136AAu);
    ck_assert_uint_eq(tfevents_crc32c(0, "", 0), 0);
    /* mask: rotate right by 15, add 0xa282ead8 (mod 2^32) */
    ck_assert_uint_eq(tfevents_mask_crc(0), 0xa282ead8u);
    ck_assert_uint_eq(tfevents_mask_crc(0x8000u), 0xa282ead9u);
    ck_assert_uint_eq(tfevents_mask_crc(0xE3069283u),
                      ((0xE3069283u >> 15) | (0xE3069283u << 17)) + 0xa282ead8u);
}
END_TEST

/* ---- a sweep of two small runs ---- */

static const char *mcols[] = {"stage", "epoch", "split", "loss", "mae", "lr", "seconds"};
static const char *ecols[] = {"n", "mae", "base_mae"};

/* dir/<name>/run.h5 with fpn.width=width: FPN 2 epochs, counter 3 epochs
 * (train + val rows), an eval/test table.  Returns the number of finite
 * numbers the export should carry (CSV rows). */
static int make_run(const char *name, int width)
{
    char path[256], set[64];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    mkdir(path, 0777);
    strcat(path, "/run.h5");
    cc_config cfg;
    config_defaults(&cfg);
    snprintf(set, sizeof set, "fpn.width=%d", width);
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(config_set(&cfg, set, &st), 0);
    runlog rl;
    ck_assert_int_eq(runlog_create(&rl, path, &cfg, &st), 0);
    runlog_set_attr(&rl, "start_time", "2026-01-02T03:04:05Z", &st);
    runlog_set_attr(&rl, "host", "node/7", &st);
    runlog_table *t = runlog_table_get(&rl, "metrics", 7, mcols, &st);
    int n = 0;
    for (int stage = 0; stage < 2; stage++)
        for (int e = 0; e < 2 + stage; e++)
            for (int split = 0; split < 2; split++) {
                double mae = stage == 1 ? 10.0 / (e + 1) + width / 16 + split * 0.25 : NAN;
                double row[7] = {stage, e, split, 1.0 / (e + 1) + split, mae,
                                 split ? NAN : 1e-3, 2.5};
                ck_assert_int_eq(runlog_append(t, "", row, &st), 0);
                for (int c = 3; c < 7; c++) n += isfinite(row[c]) != 0;
            }
    runlog_table *ev = runlog_table_get(&rl, "eval/test", 3, ecols, &st);
    double o[3] = {30, 1.5, 2.75}, f1[3] = {10, 1.25, NAN};
    runlog_append(ev, "overall", o, &st);
    runlog_append(ev, "focus F1", f1, &st);
    n += 5;
    ck_assert_msg(runlog_flush(&rl, &st) == 0, "%s", st.msg);
    runlog_free(&rl);
    return n;
}

static void open_report(cc_report *r, const char *arg)
{
    cc_status st;
    status_clear(&st);
    report_init(r);
    ck_assert_msg(report_add(r, arg, &st) == 0, "%s", st.msg);
    ck_assert_msg(report_finish(r, &st) == 0, "%s", st.msg);
}

/* Read one TFRecord: checks both CRCs; returns the payload (malloc) or
 * NULL at a clean end of file. */
static unsigned char *read_record(FILE *f, size_t *len)
{
    unsigned char head[12], crc[4];
    size_t got = fread(head, 1, 12, f);
    if (got == 0) return NULL;
    ck_assert_uint_eq(got, 12);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | head[i];
    uint32_t c1 = (uint32_t)head[8] | (uint32_t)head[9] << 8 | (uint32_t)head[10] << 16 |
                  (uint32_t)head[11] << 24;
    ck_assert_uint_eq(c1, tfevents_mask_crc(tfevents_crc32c(0, head, 8)));
    ck_assert(n > 0 && n < 1000000);
    unsigned char *b = malloc(n);
    ck_assert_uint_eq(fread(b, 1, n, f), n);
    ck_assert_uint_eq(fread(crc, 1, 4, f), 4);
    uint32_t c2 = (uint32_t)crc[0] | (uint32_t)crc[1] << 8 | (uint32_t)crc[2] << 16 |
                  (uint32_t)crc[3] << 24;
    ck_assert_uint_eq(c2, tfevents_mask_crc(tfevents_crc32c(0, b, n)));
    *len = n;
    return b;
}

/* The decoded text of every event of the file, via protoc: the test wraps
 * the payloads as `repeated Event events = 1` (EventList), one protoc call. */
static char *decode_events(const char *events, int *nrecords)
{
    char wrap[256], out[256], cmd[1024];
    snprintf(wrap, sizeof wrap, "%s/events.bin", dir);
    snprintf(out, sizeof out, "%s/events.txt", dir);
    FILE *in = fopen(events, "rb"), *w = fopen(wrap, "wb");
    ck_assert(in && w);
    size_t n;
    unsigned char *b;
    *nrecords = 0;
    while ((b = read_record(in, &n))) {
        fputc(0x0a, w);                 /* field 1, length-delimited */
        for (uint64_t v = n; ; v >>= 7) {
            fputc((int)((v & 0x7f) | (v > 0x7f ? 0x80 : 0)), w);
            if (v <= 0x7f) break;
        }
        fwrite(b, 1, n, w);
        free(b);
        (*nrecords)++;
    }
    fclose(in);
    fclose(w);
    /* event.proto plus the wrapper message, in the temp dir */
    const char *top = getenv("CC_TOP_SRCDIR");
    snprintf(cmd, sizeof cmd,
             "cp %s/tests/event.proto %s/ev.proto && "
             "printf 'message EventList { repeated Event events = 1; }\\n' >> %s/ev.proto && "
             "protoc -I%s --decode=tensorflow.EventList ev.proto < %s > %s",
             top ? top : ".", dir, dir, dir, wrap, out);
    ck_assert_msg(system(cmd) == 0, "protoc failed: %s", cmd);
    FILE *f = fopen(out, "r");
    ck_assert_ptr_nonnull(f);
    char *text = calloc(1, 1 << 20);
    size_t len = fread(text, 1, (1 << 20) - 1, f);
    fclose(f);
    text[len] = '\0';
    return text;
}

/* A scalar event as protoc prints it (2-space indents, event inside the list). */
static int has_scalar(const char *text, const char *tag, int step, const char *value)
{
    char want[512];
    snprintf(want, sizeof want,
             "%s  summary {\n    value {\n      tag: \"%s\"\n      simple_value: %s\n",
             step ? "" : "", tag, value);
    char stepline[64];
    snprintf(stepline, sizeof stepline, "  step: %d\n", step);
    for (const char *p = strstr(text, want); p; p = strstr(p + 1, want)) {
        /* the step line just before this summary */
        const char *q = p;
        while (q > text && strncmp(q, "  step:", 7)) q--;
        if (!strncmp(q, stepline, strlen(stepline))) return 1;
    }
    return 0;
}

START_TEST(test_tensorboard_protoc)
{
    make_run("w16", 16);
    const int n32 = make_run("w32", 32);
    cc_report r;
    open_report(&r, dir);
    char tb[128];
    snprintf(tb, sizeof tb, "%s/tb", dir);
    cc_status st;
    status_clear(&st);
    ck_assert_msg(export_tensorboard(&r, tb, NULL, &st) == 0, "%s", st.msg);
    /* named for TensorBoard: start time 2026-01-02T03:04:05Z = 1767323045, host with '/' */
    char ev[256];
    snprintf(ev, sizeof ev, "%s/w32/events.out.tfevents.1767323045.node_7", tb);
    ck_assert_msg(access(ev, R_OK) == 0, "%s missing", ev);
    /* again: the file is replaced, not duplicated; a stale one is removed */
    char stale[256];
    snprintf(stale, sizeof stale, "%s/w32/events.out.tfevents.1.old", tb);
    fclose(fopen(stale, "w"));
    ck_assert_int_eq(export_tensorboard(&r, tb, NULL, &st), 0);
    ck_assert_int_ne(access(stale, F_OK), 0);
    ck_assert_int_eq(access(ev, R_OK), 0);
    report_free(&r);

    if (!have("protoc")) {
        printf("SKIP: protoc not installed (Debian: protobuf-compiler); framing and CRCs "
               "checked, protobuf decoding not\n");
        FILE *f = fopen(ev, "rb");
        size_t n;
        unsigned char *b;
        int k = 0;
        while ((b = read_record(f, &n))) free(b), k++;
        fclose(f);
        ck_assert_int_gt(k, 10);
        return;
    }
    int nrec;
    char *text = decode_events(ev, &nrec);
    /* file_version, config, then one event per finite number */
    ck_assert_int_eq(nrec, 2 + n32);
    int nev = 0;
    for (const char *p = strstr(text, "events {"); p; p = strstr(p + 1, "events {")) nev++;
    ck_assert_int_eq(nev, nrec);
    ck_assert_msg(strstr(text, "file_version: \"brain.Event:2\""), "%s", text);
    ck_assert_ptr_nonnull(strstr(text, "wall_time: 1767323045\n"));
    /* counter val MAE of w32 at epoch 2 (1-based): 10/2 + 2 + 0.25 */
    ck_assert_msg(has_scalar(text, "counter/val/mae", 2, "7.25"), "%s", text);
    ck_assert(has_scalar(text, "counter/train/mae", 3, "5.33333349"));
    ck_assert(has_scalar(text, "fpn/train/lr", 1, "0.001"));
    ck_assert(has_scalar(text, "eval/test/overall/base_mae", 3, "2.75"));
    ck_assert(has_scalar(text, "eval/test/focus_F1/mae", 3, "1.25"));
    ck_assert_ptr_null(strstr(text, "focus_F1/base_mae"));     /* NaN: left out */
    /* wall time advances with the epochs' seconds: 10 rows of 2.5 s */
    ck_assert_ptr_nonnull(strstr(text, "wall_time: 1767323070\n"));
    /* the configuration as a text-plugin tensor */
    ck_assert_ptr_nonnull(strstr(text, "tag: \"config\""));
    ck_assert_ptr_nonnull(strstr(text, "plugin_name: \"text\""));
    ck_assert_ptr_nonnull(strstr(text, "dtype: 7"));
    ck_assert_ptr_nonnull(strstr(text, "| config.fpn.width | 32 |"));
    free(text);
}
END_TEST

START_TEST(test_csv_python)
{
    int n = make_run("w16", 16);
    n += make_run("w32", 32);
    cc_report r;
    open_report(&r, dir);
    char csv[128];
    snprintf(csv, sizeof csv, "%s/all.csv", dir);
    cc_status st;
    status_clear(&st);
    ck_assert_msg(export_csv(&r, csv, &st) == 0, "%s", st.msg);
    report_free(&r);
    /* C side: header and line count */
    FILE *f = fopen(csv, "r");
    char line[512];
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
    ck_assert_str_eq(line, "run,fpn.width,stage,split,group,epoch,metric,value\n");
    int lines = 0;
    while (fgets(line, sizeof line, f)) lines++;
    fclose(f);
    ck_assert_int_eq(lines, n);
    /* Debian's python3 (where python3-pandas installs) before any other */
    const char *py = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
    if (!have(py)) {
        printf("SKIP: python3 not installed; CSV read back in C only\n");
        return;
    }
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "%s - '%s' %d <<'EOF'\n"
             "import csv, sys\n"
             "rows = list(csv.DictReader(open(sys.argv[1], newline='')))\n"
             "assert len(rows) == int(sys.argv[2]), len(rows)\n"
             "m = [r for r in rows if r['run'] == 'w32' and r['stage'] == 'counter'\n"
             "     and r['split'] == 'val' and r['metric'] == 'mae' and r['epoch'] == '2']\n"
             "assert len(m) == 1 and float(m[0]['value']) == 7.25, m\n"
             "assert m[0]['fpn.width'] == '32'\n"
             "e = [r for r in rows if r['stage'] == 'evaluate' and r['group'] == 'focus F1']\n"
             "assert len(e) == 4 and all(r['epoch'] == '' for r in e), e\n"
             "try:\n"
             "    import pandas as pd\n"
             "except ImportError:\n"
             "    print('SKIP: pandas not installed (python3-pandas); csv module only')\n"
             "    sys.exit(0)\n"
             "d = pd.read_csv(sys.argv[1])\n"
             "assert len(d) == int(sys.argv[2]) and d['value'].dtype == float\n"
             "v = d[(d.stage == 'counter') & (d.split == 'val') & (d.metric == 'mae')]\n"
             "best = v.groupby('fpn.width')['value'].min()\n"
             "assert best[16] == 10/3 + 1 + 0.25 and best[32] == 10/3 + 2 + 0.25, best\n"
             "print('pandas read_csv: ok')\n"
             "EOF",
             py, csv, n);
    ck_assert_msg(system(cmd) == 0, "python3 could not read %s back", csv);
}
END_TEST

/* Export while another process keeps rewriting the run file: every export
 * sees one whole version (rows = the attribute written with them). */
START_TEST(test_export_while_writing)
{
    char path[128];
    snprintf(path, sizeof path, "%s/live", dir);
    mkdir(path, 0777);
    strcat(path, "/run.h5");
    cc_config cfg;
    config_defaults(&cfg);
    cc_status st;
    status_clear(&st);
    runlog rl;
    ck_assert_int_eq(runlog_create(&rl, path, &cfg, &st), 0);
    runlog_table *t = runlog_table_get(&rl, "metrics", 7, mcols, &st);
    ck_assert_int_eq(runlog_flush(&rl, &st), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        for (int e = 0; e < 300; e++) {
            double row[7] = {1, e, 1, 1, 2, 3, 0.5};
            char rows[32];
            snprintf(rows, sizeof rows, "%d", e + 1);
            if (runlog_append(t, "", row, &st) || runlog_set_attr(&rl, "test.rows", rows, &st) ||
                runlog_flush(&rl, &st))
                _exit(1);
        }
        _exit(0);
    }
    char csv[128], run_dir[128];
    snprintf(csv, sizeof csv, "%s/live.csv", dir);
    snprintf(run_dir, sizeof run_dir, "%s/live", dir);
    int seen = 0, last = 0, done = 0;
    while (!done) {
        int ws;
        done = waitpid(pid, &ws, WNOHANG) == pid;
        if (done) ck_assert(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
        cc_report r;
        open_report(&r, run_dir);
        const char *rows = runlog_attr_get(r.runs[0].rl, "test.rows");
        runlog_table *m = runlog_table_find(r.runs[0].rl, "metrics");
        ck_assert_ptr_nonnull(m);
        ck_assert_int_eq((int)m->nrows, rows ? atoi(rows) : 0);
        ck_assert_int_ge((int)m->nrows, last);
        last = (int)m->nrows;
        ck_assert_msg(export_csv(&r, csv, &st) == 0, "%s", st.msg);
        report_free(&r);
        seen++;
    }
    ck_assert_int_eq(last, 300);
    ck_assert_int_gt(seen, 1);
    runlog_free(&rl);
}
END_TEST

START_TEST(test_export_errors)
{
    cc_report r;
    report_init(&r);
    cc_status st;
    status_clear(&st);
    char bad[128];
    snprintf(bad, sizeof bad, "%s/run.h5", dir);
    FILE *f = fopen(bad, "w");
    fputs("not hdf5", f);
    fclose(f);
    ck_assert_int_ne(report_add(&r, bad, &st), 0);
    ck_assert_ptr_nonnull(strstr(st.msg, bad));
    report_free(&r);
    status_clear(&st);
    make_run("ok", 16);
    char ok[128];
    snprintf(ok, sizeof ok, "%s/ok", dir);
    open_report(&r, ok);
    /* an unwritable destination: a file where the directory should be */
    char tb[128];
    snprintf(tb, sizeof tb, "%s/run.h5/tb", dir);
    ck_assert_int_ne(export_tensorboard(&r, tb, NULL, &st), 0);
    ck_assert_ptr_nonnull(strstr(st.msg, "run.h5"));
    char csv[128];
    status_clear(&st);
    snprintf(csv, sizeof csv, "%s/nodir/x.csv", dir);
    ck_assert_int_ne(export_csv(&r, csv, &st), 0);
    ck_assert_ptr_nonnull(strstr(st.msg, "nodir"));
    report_free(&r);
}
END_TEST

/* ---- float TIFFs (count --masks, saliency) for plain readers ---- */

START_TEST(test_float_tiff_plain)
{
    enum { W = 37, H = 23 };
    float px[W * H];
    for (int i = 0; i < W * H; i++) px[i] = (float)i / 7.0f - 3.0f;
    char path[128];
    snprintf(path, sizeof path, "%s/map.tif", dir);
    cc_status st;
    status_clear(&st);
    ck_assert_msg(tiff_write_gray(path, W, H, 32, px, &st) == 0, "%s", st.msg);
    /* no floating-point predictor (3): readers without extra codecs take it */
    TIFF *t = TIFFOpen(path, "r");
    ck_assert_ptr_nonnull(t);
    uint16_t pred = 1, fmt = 0;
    TIFFGetFieldDefaulted(t, TIFFTAG_PREDICTOR, &pred);
    TIFFGetField(t, TIFFTAG_SAMPLEFORMAT, &fmt);
    ck_assert_int_eq(pred, PREDICTOR_NONE);
    ck_assert_int_eq(fmt, SAMPLEFORMAT_IEEEFP);
    TIFFClose(t);
    const char *py = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "%s -c 'import tifffile' 2>/dev/null || { echo 'SKIP: no tifffile (python3-tifffile)'; "
             "exit 0; }; %s -c 'import sys, tifffile\n"
             "a = tifffile.imread(sys.argv[1])\n"
             "assert a.shape == (%d, %d) and str(a.dtype) == \"float32\", (a.shape, a.dtype)\n"
             "assert a[0, 0] == -3.0 and abs(a[%d, %d] - (%d / 7.0 - 3.0)) < 1e-5, a\n' %s",
             py, py, H, W, H - 1, W - 1, W * H - 1, path);
    ck_assert_msg(system(cmd) == 0, "tifffile cannot read %s", path);
}
END_TEST

/* saliency's overlay: an RGB PNG enlarged to >= 512 wide, gray where the
 * map is 0, coloured where it peaks (decoded with libpng's simplified API). */
START_TEST(test_overlay_png)
{
    enum { W = 100, H = 60 };
    float img[W * H], map[W / 2 * (H / 2)];
    for (int i = 0; i < W * H; i++) img[i] = 0.5f;
    for (int i = 0; i < W / 2 * (H / 2); i++) map[i] = 0;
    map[0] = -2.0f;     /* the strongest, negative: |map| counts */
    char path[128];
    snprintf(path, sizeof path, "%s/ov.png", dir);
    cc_status st;
    status_clear(&st);
    ck_assert_msg(png_write_overlay(path, W, H, img, map, W / 2, H / 2, &st) == 0, "%s", st.msg);
    png_image pi;
    memset(&pi, 0, sizeof pi);
    pi.version = PNG_IMAGE_VERSION;
    ck_assert(png_image_begin_read_from_file(&pi, path));
    ck_assert_uint_eq(pi.width, 6 * W);     /* ceil(512 / 100) = 6 */
    ck_assert_uint_eq(pi.height, 6 * H);
    pi.format = PNG_FORMAT_RGB;
    unsigned char *px = malloc(PNG_IMAGE_SIZE(pi));
    ck_assert(png_image_finish_read(&pi, NULL, px, 0, NULL));
    /* top-left: full strength -> 0.25 x gray 0.5 + 0.75 x white = 0.875 -> 223 */
    ck_assert_int_eq(px[0], 223);
    ck_assert_int_eq(px[2], 223);
    /* far corner: the image's gray, 0.5 -> 128 */
    const size_t last = ((size_t)pi.width * pi.height - 1) * 3;
    ck_assert_int_eq(px[last], 128);
    ck_assert_int_eq(px[last + 1], 128);
    free(px);
    /* a bad path: message names it, nothing left behind */
    snprintf(path, sizeof path, "%s/no/such/dir/ov.png", dir);
    ck_assert_int_ne(png_write_overlay(path, W, H, img, map, W / 2, H / 2, &st), 0);
    ck_assert_ptr_nonnull(strstr(st.msg, "no/such/dir"));
}
END_TEST

/* ---- report --plot: the evaluation figures ---- */

/* Does path hold a PNG of at least min_w x min_h pixels? */
static int png_size_ok(const char *path, unsigned min_w, unsigned min_h)
{
    unsigned char b[24];
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    int ok = fread(b, 1, 24, f) == 24 && !memcmp(b + 1, "PNG", 3) && !memcmp(b + 12, "IHDR", 4);
    fclose(f);
    unsigned w = (unsigned)b[16] << 24 | (unsigned)b[17] << 16 | (unsigned)b[18] << 8 | b[19];
    unsigned h = (unsigned)b[20] << 24 | (unsigned)b[21] << 16 | (unsigned)b[22] << 8 | b[23];
    return ok && w >= min_w && h >= min_h;
}

/* A run with evaluate's tables: predictions/test (90 images, 3 focus
 * levels) and eval/test (overall, per focus, per count range). */
static void make_eval_run(const char *name)
{
    make_run(name, 16);
    char path[256];
    snprintf(path, sizeof path, "%s/%s/run.h5", dir, name);
    runlog rl;
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(runlog_open(&rl, path, &st), 0);
    static const char *pc[] = {"index", "truth", "count", "sigma", "sigma_raw", "focus",
                               "baseline"};
    runlog_table *p = runlog_table_fresh(&rl, "predictions/test", 7, pc, &st);
    for (int i = 0; i < 90; i++) {
        double truth = 1 + (i * 37) % 100, focus = 1 + 8 * (i % 3);
        double err = ((i * 7919) % 13 - 6) * 0.3 * (1 + focus / 8);
        double row[7] = {i, truth, truth + err, 1 + focus / 8, 2, focus, truth - err};
        char label[64];
        snprintf(label, sizeof label, "SIM_A%02d_C%d_F%d_s01_w1.TIF", i, (int)truth, (int)focus);
        ck_assert_int_eq(runlog_append(p, label, row, &st), 0);
    }
    static const char *ec[] = {"n", "mae", "base_mae"};
    runlog_table *e = runlog_table_fresh(&rl, "eval/test", 3, ec, &st);
    const char *labels[] = {"overall", "focus F1", "focus F9", "focus F17", "count 1-20",
                            "count 21-40", "count 41-60", "count 61-80", "count 81+"};
    for (int k = 0; k < 9; k++) {
        double row[3] = {10, 1 + 0.3 * k, 2 + 0.25 * k};
        runlog_append(e, labels[k], row, &st);
    }
    ck_assert_int_eq(runlog_flush(&rl, &st), 0);
    runlog_free(&rl);
}

START_TEST(test_plot_evaluation)
{
    if (!have("gnuplot")) {
        printf("SKIP: gnuplot not installed (gnuplot-nox)\n");
        return;
    }
    make_eval_run("one");
    char one[128], out[128], png[256];
    snprintf(one, sizeof one, "%s/one", dir);
    snprintf(out, sizeof out, "%s/plots", dir);
    cc_report r;
    open_report(&r, one);
    cc_status st;
    status_clear(&st);
    ck_assert_msg(report_plot(&r, out, NULL, NULL, &st) == 0, "%s", st.msg);
    report_free(&r);
    const char *names[] = {"pred_vs_true.png", "error_by_group.png", "val_mae.png"};
    for (int k = 0; k < 3; k++) {
        snprintf(png, sizeof png, "%s/%s", out, names[k]);
        ck_assert_msg(png_size_ok(png, 600, 400), "%s missing or too small", png);
    }
    /* two runs: one figure of each kind per run, named after the run; a
     * run without evaluation gets none */
    make_eval_run("two");
    make_run("three", 32);
    open_report(&r, dir);
    ck_assert_msg(report_plot(&r, out, NULL, NULL, &st) == 0, "%s", st.msg);
    report_free(&r);
    snprintf(png, sizeof png, "%s/pred_vs_true_two.png", out);
    ck_assert(png_size_ok(png, 600, 400));
    snprintf(png, sizeof png, "%s/error_by_group_one.png", out);
    ck_assert(png_size_ok(png, 600, 400));
    snprintf(png, sizeof png, "%s/pred_vs_true_three.png", out);
    ck_assert_int_ne(access(png, F_OK), 0);
    const char *keep = getenv("CC_KEEP_PLOTS");     /* for looking at them */
    if (keep) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "mkdir -p %s && cp %s/*.png %s/", keep, out, keep);
        ck_assert_int_eq(system(cmd), 0);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("export");
    TCase *tc = tcase_create("export");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_crc32c);
    tcase_add_test(tc, test_tensorboard_protoc);
    tcase_add_test(tc, test_csv_python);
    tcase_add_test(tc, test_export_while_writing);
    tcase_add_test(tc, test_export_errors);
    tcase_add_test(tc, test_plot_evaluation);
    tcase_add_test(tc, test_float_tiff_plain);
    tcase_add_test(tc, test_overlay_png);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
