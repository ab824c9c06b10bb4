/* export.c - TensorBoard and CSV export of run files (see export.h). */
#include "src/sweep/export.h"
#include "src/data/csv.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "src/sweep/tfevents.h"

static const char *const stage_names[] = {"fpn", "counter"};
static const char *const split_names[] = {"train", "val", "test"};

/* Name of a stage or split code, or NULL for codes we do not know. */
static const char *code_name(const char *const *names, int n, double v)
{
    return v >= 0 && v < n && v == floor(v) ? names[(int)v] : NULL;
}

/* "focus F1" -> "focus_F1": TensorBoard tags and CSV cells without blanks. */
static void tag_part(const char *in, char *out, size_t len)
{
    snprintf(out, len, "%s", *in ? in : "row");
    for (char *p = out; *p; p++)
        if (*p == ' ' || *p == '/' || *p == ',') *p = '_';
}

/* The run's start time (attribute start_time, UTC) in seconds; 0 if none. */
static double run_start(const runlog *rl)
{
    const char *s = runlog_attr_get(rl, "start_time");
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (!s) return 0;
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return end && !*end ? (double)timegm(&tm) : 0;
}

/* The metrics table's key columns, or NULL when the run has none. */
typedef struct metric_cols {
    const runlog_table *t;
    int stage, epoch, split, seconds;
} metric_cols;

static int metrics_of(runlog *rl, metric_cols *mc)
{
    memset(mc, 0, sizeof *mc);
    runlog_table *t = runlog_table_find(rl, "metrics");
    if (!t) return 0;
    mc->t = t;
    mc->stage = runlog_col(t, "stage");
    mc->epoch = runlog_col(t, "epoch");
    mc->split = runlog_col(t, "split");
    mc->seconds = runlog_col(t, "seconds");
    return mc->stage >= 0 && mc->epoch >= 0 && mc->split >= 0;
}

static int is_key_col(const metric_cols *mc, int c)
{
    return c == mc->stage || c == mc->epoch || c == mc->split;
}

/* The last counter epoch (1-based), the step of the evaluation events. */
static long last_counter_epoch(const metric_cols *mc)
{
    long last = 0;
    for (size_t i = 0; mc->t && i < mc->t->nrows; i++) {
        const double *x = mc->t->values + i * (size_t)mc->t->ncols;
        if (x[mc->stage] == 1 && isfinite(x[mc->epoch]) && x[mc->epoch] + 1 > last)
            last = (long)x[mc->epoch] + 1;
    }
    return last;
}

/* Tables "eval/<split>" of a run, in split order. */
static const runlog_table *eval_table(runlog *rl, int split)
{
    char name[64];
    snprintf(name, sizeof name, "eval/%s", split_names[split]);
    return runlog_table_find(rl, name);
}

/* ---- TensorBoard ---- */

static char *config_markdown(const runlog *rl)
{
    char *s = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&s, &n);
    if (!f) return NULL;
    fprintf(f, "| key | value |\n|---|---|\n");
    for (int i = 0; i < rl->nattrs; i++) {
        fprintf(f, "| %s | ", rl->attrs[i]->key);
        for (const char *p = rl->attrs[i]->value; *p; p++) {
            if (*p == '|') fputc('\\', f);     /* keep the table's columns */
            fputc(*p == '\n' ? ' ' : *p, f);
        }
        fprintf(f, " |\n");
    }
    if (fclose(f)) {
        free(s);
        return NULL;
    }
    return s;
}

/* Remove event files other than keep from dir: an earlier export of a run
 * that has since been restarted (another start time). */
static void remove_stale(const char *dir, const char *keep)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "events.out.tfevents.", 20) || !strcmp(e->d_name, keep) ||
            strstr(e->d_name, ".tmp."))
            continue;
        char path[PATH_MAX];
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) < (int)sizeof path) unlink(path);
    }
    closedir(d);
}

static int export_run_tb(const report_run *run, const char *dir, FILE *log, cc_status *st)
{
    runlog *rl = run->rl;
    char rundir[PATH_MAX];
    if (snprintf(rundir, sizeof rundir, "%s/%s", dir, run->name) >= (int)sizeof rundir)
        return status_set(st, "%s: path too long", dir);
    const double start = run_start(rl);
    tfevents_writer w;
    if (tfevents_open(&w, rundir, start, runlog_attr_get(rl, "host"), st)) return -1;
    char *md = config_markdown(rl);
    if (!md) {
        tfevents_close(&w, 0, st);
        return status_set(st, "export: out of memory");
    }
    tfevents_text(&w, "config", 0, start, md);
    free(md);
    metric_cols mc;
    double now = start;
    if (metrics_of(rl, &mc)) {
        const runlog_table *t = mc.t;
        for (size_t i = 0; i < t->nrows; i++) {
            const double *x = t->values + i * (size_t)t->ncols;
            const char *stage = code_name(stage_names, 2, x[mc.stage]);
            const char *split = code_name(split_names, 3, x[mc.split]);
            if (!stage || !split || !isfinite(x[mc.epoch])) continue;
            if (mc.seconds >= 0 && isfinite(x[mc.seconds])) now += x[mc.seconds];
            for (int c = 0; c < t->ncols; c++) {
                if (is_key_col(&mc, c) || !isfinite(x[c])) continue;
                char tag[3 * RUNLOG_NAME];
                snprintf(tag, sizeof tag, "%s/%s/%s", stage, split, t->cols[c]);
                tfevents_scalar(&w, tag, (int64_t)x[mc.epoch] + 1, now, (float)x[c]);
            }
        }
    }
    const long step = last_counter_epoch(&mc);
    for (int s = 0; s < 3; s++) {
        const runlog_table *e = eval_table(rl, s);
        for (size_t i = 0; e && i < e->nrows; i++) {
            const double *x = e->values + i * (size_t)e->ncols;
            char group[RUNLOG_NAME];
            tag_part(e->labels[i], group, sizeof group);
            for (int c = 0; c < e->ncols; c++) {
                if (!isfinite(x[c])) continue;
                char tag[4 * RUNLOG_NAME];
                snprintf(tag, sizeof tag, "eval/%s/%s/%s", split_names[s], group, e->cols[c]);
                tfevents_scalar(&w, tag, step, now, (float)x[c]);
            }
        }
    }
    if (tfevents_close(&w, 1, st)) return -1;
    const char *slash = strrchr(w.path, '/');
    remove_stale(rundir, slash ? slash + 1 : w.path);
    if (log) fprintf(log, "wrote %s\n", w.path);
    return 0;
}

int export_tensorboard(const cc_report *r, const char *dir, FILE *log, cc_status *st)
{
    for (int i = 0; i < r->nruns; i++)
        if (export_run_tb(&r->runs[i], dir, log, st)) return -1;
    return 0;
}

/* ---- CSV ---- */

/* run and sweep-key cells of one row, then the rest. */
static void csv_row(FILE *f, const cc_report *r, int run, const char *stage, const char *split,
                    const char *group, const char *epoch, const char *metric, double value)
{
    csv_cell_put(f, r->runs[run].name);
    for (int k = 0; k < r->ndiff; k++) {
        char key[RUNLOG_NAME + 8];
        snprintf(key, sizeof key, "config.%s", r->diff[k]);
        const char *v = runlog_attr_get(r->runs[run].rl, key);
        fputc(',', f);
        csv_cell_put(f, v ? v : "");
    }
    const char *cells[] = {stage, split, group, epoch, metric};
    for (int k = 0; k < 5; k++) {
        fputc(',', f);
        csv_cell_put(f, cells[k]);
    }
    fprintf(f, ",%.17g\n", value);
}

static void csv_run(FILE *f, const cc_report *r, int run)
{
    runlog *rl = r->runs[run].rl;
    metric_cols mc;
    if (metrics_of(rl, &mc)) {
        const runlog_table *t = mc.t;
        for (size_t i = 0; i < t->nrows; i++) {
            const double *x = t->values + i * (size_t)t->ncols;
            const char *stage = code_name(stage_names, 2, x[mc.stage]);
            const char *split = code_name(split_names, 3, x[mc.split]);
            if (!stage || !split || !isfinite(x[mc.epoch])) continue;
            char epoch[32];
            snprintf(epoch, sizeof epoch, "%.0f", x[mc.epoch] + 1);
            for (int c = 0; c < t->ncols; c++)
                if (!is_key_col(&mc, c) && isfinite(x[c]))
                    csv_row(f, r, run, stage, split, "", epoch, t->cols[c], x[c]);
        }
    }
    for (int s = 0; s < 3; s++) {
        const runlog_table *e = eval_table(rl, s);
        for (size_t i = 0; e && i < e->nrows; i++) {
            const double *x = e->values + i * (size_t)e->ncols;
            for (int c = 0; c < e->ncols; c++)
                if (isfinite(x[c]))
                    csv_row(f, r, run, "evaluate", split_names[s], e->labels[i], "", e->cols[c],
                            x[c]);
        }
    }
}

int export_csv(const cc_report *r, const char *path, cc_status *st)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return status_set(st, "%s: path too long", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return status_set(st, "%s: cannot write (%s)", tmp, strerror(errno));
    fputs("run", f);
    for (int k = 0; k < r->ndiff; k++) {
        fputc(',', f);
        csv_cell_put(f, r->diff[k]);
    }
    fputs(",stage,split,group,epoch,metric,value\n", f);
    for (int i = 0; i < r->nruns; i++) csv_run(f, r, i);
    int bad = ferror(f);
    if (fclose(f) || bad) {
        unlink(tmp);
        return status_set(st, "%s: write failed (disk full?)", path);
    }
    if (rename(tmp, path)) {
        int e = errno;
        unlink(tmp);
        return status_set(st, "%s: cannot replace (%s)", path, strerror(e));
    }
    return 0;
}
