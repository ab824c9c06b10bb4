/* report.c - comparison table of run files (see report.h); plots are in
 * report_plot.c. */
#include "src/sweep/report.h"
#include "src/data/csv.h"
#include "src/data/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "src/train/train.h"

void report_init(cc_report *r)
{
    memset(r, 0, sizeof *r);
}

void report_free(cc_report *r)
{
    for (int i = 0; i < r->nruns; i++) {
        if (r->runs[i].rl) runlog_free(r->runs[i].rl);
        free(r->runs[i].rl);
    }
    free(r->runs);
    free(r->diff);
    free(r->missing);
    memset(r, 0, sizeof *r);
}

/* Name of a run: its directory's, or the file's stem when it is not run.h5. */
static void run_name(const char *path, char *name, size_t len)
{
    char real[PATH_MAX];
    const char *p = realpath(path, real) ? real : path;
    const char *slash = strrchr(p, '/');
    const char *base = slash ? slash + 1 : p;
    if (strcmp(base, "run.h5")) {
        size_t l = strlen(base);
        if (l > 3 && !strcmp(base + l - 3, ".h5")) l -= 3;
        snprintf(name, len, "%.*s", (int)l, base);
        return;
    }
    if (!slash || slash == p) {
        snprintf(name, len, "run");
        return;
    }
    const char *prev = slash;
    while (prev > p && prev[-1] != '/') prev--;
    snprintf(name, len, "%.*s", (int)(slash - prev), prev);
}

static int add_file(cc_report *r, const char *path, cc_status *st)
{
    if (r->nruns == r->cap) {
        int cap = r->cap ? 2 * r->cap : 8;
        report_run *nr = realloc(r->runs, sizeof *nr * (size_t)cap);
        if (!nr) return status_set(st, "report: out of memory");
        r->runs = nr;
        r->cap = cap;
    }
    report_run *run = &r->runs[r->nruns];
    memset(run, 0, sizeof *run);
    if (snprintf(run->path, sizeof run->path, "%s", path) >= (int)sizeof run->path)
        return status_set(st, "%s: path too long", path);
    if (!(run->rl = malloc(sizeof *run->rl))) return status_set(st, "report: out of memory");
    if (runlog_open(run->rl, path, st)) {
        free(run->rl);
        return -1;
    }
    run_name(path, run->name, sizeof run->name);
    r->nruns++;
    return 0;
}

/* Note a sweep point that the table cannot show (and why). */
static int note_missing(cc_report *r, const char *name, const char *why, cc_status *st)
{
    void *m = realloc(r->missing, sizeof *r->missing * (size_t)(r->nmissing + 1));
    if (!m) return status_set(st, "report: out of memory");
    r->missing = m;
    snprintf(r->missing[r->nmissing++], sizeof *r->missing, "%.180s: %.200s", name, why);
    return 0;
}

/* One point directory of a sweep: its run when readable, else a note. */
static int add_point(cc_report *r, const char *dir, const char *name, cc_status *st)
{
    char path[CFG_STR + 300];
    struct stat sb;
    snprintf(path, sizeof path, "%s/%s/run.h5", dir, name);
    if (stat(path, &sb) || !S_ISREG(sb.st_mode)) return note_missing(r, name, "missing (no run.h5)", st);
    cc_status e;
    status_clear(&e);
    if (add_file(r, path, &e)) return note_missing(r, name, e.msg, st);
    snprintf(path, sizeof path, "%s/%s/DONE", dir, name);
    if (access(path, F_OK))
        return note_missing(r, name, "unfinished or failed (no DONE marker; see its log.txt)", st);
    return 0;
}

/* A sweep directory with points.txt: exactly the listed points. */
static int add_listed(cc_report *r, const char *dir, FILE *f, cc_status *st)
{
    char line[512];
    int rc = 0;
    while (!rc && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] && line[0] != '#') rc = add_point(r, dir, line, st);
    }
    return rc;
}

void report_print_missing(const cc_report *r, FILE *f)
{
    if (!r->nmissing) return;
    fprintf(f, "\n%d point%s not in the table:\n", r->nmissing, r->nmissing == 1 ? "" : "s");
    for (int i = 0; i < r->nmissing; i++) fprintf(f, "  %s\n", r->missing[i]);
}

static int skip_dot(const struct dirent *d)
{
    return d->d_name[0] != '.';
}

int report_add(cc_report *r, const char *arg, cc_status *st)
{
    char dir[CFG_STR], path[CFG_STR + 300];
    struct stat sb;
    if (stat(arg, &sb)) return status_set(st, "%s: %s", arg, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return add_file(r, arg, st);
    snprintf(dir, sizeof dir, "%s", arg);
    for (size_t l = strlen(dir); l > 1 && dir[l - 1] == '/'; l--) dir[l - 1] = '\0';
    snprintf(path, sizeof path, "%s/run.h5", dir);
    if (access(path, F_OK) == 0) return add_file(r, path, st);
    /* A sweep directory with the list of its points (written by sweep
     * --emit-slurm / --emit-commands): missing and failed points are
     * listed, not fatal. */
    snprintf(path, sizeof path, "%s/points.txt", dir);
    FILE *pf = fopen(path, "r");
    if (pf) {
        int rc = add_listed(r, dir, pf, st);
        fclose(pf);
        return rc;
    }
    /* A sweep directory: its points, one level down, in natural order
     * (fpn.width=8 before fpn.width=16). */
    struct dirent **list;
    int n = scandir(dir, &list, skip_dot, versionsort);
    if (n < 0) return status_set(st, "%s: cannot list the directory (%s)", dir, strerror(errno));
    int found = 0, rc = 0;
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s/run.h5", dir, list[i]->d_name);
        if (!rc && stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
            found++;
            cc_status e;
            status_clear(&e);
            if (add_file(r, path, &e)) rc = note_missing(r, list[i]->d_name, e.msg, st);
        }
        free(list[i]);
    }
    free(list);
    if (rc) return -1;
    if (!found)
        return status_set(st, "%s: no run.h5 in the directory or in its subdirectories", dir);
    return 0;
}

/* Equal as text, or as numbers ("0.001" vs "1e-3" from other versions). */
static int values_equal(const char *a, const char *b)
{
    if (!strcmp(a, b)) return 1;
    char *ea, *eb;
    double x = strtod(a, &ea), y = strtod(b, &eb);
    return ea != a && eb != b && !*ea && !*eb && x == y;
}

static int diff_add(cc_report *r, const char *key, cc_status *st)
{
    for (int i = 0; i < r->ndiff; i++)
        if (!strcmp(r->diff[i], key)) return 0;
    char (*nd)[RUNLOG_NAME] = realloc(r->diff, sizeof *nd * (size_t)(r->ndiff + 1));
    if (!nd) return status_set(st, "report: out of memory");
    r->diff = nd;
    snprintf(r->diff[r->ndiff++], RUNLOG_NAME, "%s", key);
    return 0;
}

int report_finish(cc_report *r, cc_status *st)
{
    if (r->nruns == 0) return status_set(st, "report: no runs");
    /* Clashing names (the same point name in two sweeps): prefix the parent,
     * on every run of the clash. */
    char *clash = calloc((size_t)r->nruns, 1);
    if (!clash) return status_set(st, "report: out of memory");
    for (int i = 0; i < r->nruns; i++)
        for (int j = 0; j < r->nruns; j++)
            if (j != i && !strcmp(r->runs[i].name, r->runs[j].name)) clash[i] = 1;
    for (int i = 0; i < r->nruns; i++) {
        if (!clash[i]) continue;
        char real[PATH_MAX], name[256];
        if (!realpath(r->runs[i].path, real)) continue;
        char *slash = strrchr(real, '/');
        if (slash && !strcmp(slash + 1, "run.h5")) *slash = '\0';
        int parts = 0;
        char *p = real + strlen(real);
        while (p > real && parts < 2)
            if (*--p == '/') parts++;
        snprintf(name, sizeof name, "%s", *p == '/' ? p + 1 : p);
        memcpy(r->runs[i].name, name, sizeof name);
    }
    free(clash);
    r->ndiff = 0;
    for (int i = 0; i < r->nruns; i++) {
        const runlog *rl = r->runs[i].rl;
        for (int a = 0; a < rl->nattrs; a++) {
            const char *k = rl->attrs[a]->key;
            if (strncmp(k, "config.", 7) || !strcmp(k, "config.run.name") ||
                !strcmp(k, "config.run.out_dir"))
                continue;
            int differs = 0;
            for (int j = 0; j < r->nruns && !differs; j++) {
                const char *v = runlog_attr_get(r->runs[j].rl, k);
                differs = !v || !values_equal(v, rl->attrs[a]->value);
            }
            if (differs && diff_add(r, k + 7, st)) return -1;
        }
    }
    return 0;
}

const char *const report_cols[REPORT_NCOLS] = {
    "best_ep",  "best_mae",    "best_rmse", "best_r2",   "best_cov95", "final_mae", "final_rmse",
    "final_r2", "final_cov95", "test_mae",  "test_rmse", "test_r2",    "test_cov95", "test_maxerr",
    "test_width", "fpn_best_val", "train_s"};

/* The four numbers mae, rmse, r2, coverage95 of row x into out. */
static void four(const runlog_table *t, const double *x, double *out)
{
    static const char *const names[4] = {"mae", "rmse", "r2", "coverage95"};
    for (int k = 0; k < 4; k++) {
        int c = runlog_col(t, names[k]);
        out[k] = c >= 0 ? x[c] : NAN;
    }
}

void report_summarize(runlog *rl, report_row *row)
{
    double *v = row->v;
    for (int i = 0; i < REPORT_NCOLS; i++) v[i] = NAN;
    runlog_table *t = runlog_table_find(rl, "metrics");
    int cs = t ? runlog_col(t, "stage") : -1, ce = t ? runlog_col(t, "epoch") : -1,
        csp = t ? runlog_col(t, "split") : -1;
    if (cs >= 0 && ce >= 0 && csp >= 0) {
        int cl = runlog_col(t, "loss"), cm = runlog_col(t, "mae"), csec = runlog_col(t, "seconds");
        double last_epoch = -1;
        for (size_t i = 0; i < t->nrows; i++) {
            const double *x = t->values + i * (size_t)t->ncols;
            if (csec >= 0 && isfinite(x[csec]))
                v[REPORT_TRAIN_S] = (isnan(v[REPORT_TRAIN_S]) ? 0 : v[REPORT_TRAIN_S]) + x[csec];
            if (x[csp] != 1) continue; /* validation rows only */
            if (x[cs] == 0 && cl >= 0 && !isnan(x[cl]) &&
                (isnan(v[REPORT_FPN_BEST_VAL]) || x[cl] < v[REPORT_FPN_BEST_VAL]))
                v[REPORT_FPN_BEST_VAL] = x[cl];
            if (x[cs] != 1 || cm < 0) continue;
            /* The first lowest MAE, as the trainer picks counter_best.h5. */
            if (!isnan(x[cm]) && (isnan(v[REPORT_BEST_MAE]) || x[cm] < v[REPORT_BEST_MAE])) {
                v[REPORT_BEST_EPOCH] = x[ce] + 1;
                four(t, x, v + REPORT_BEST_MAE);
            }
            if (x[ce] >= last_epoch) {
                last_epoch = x[ce];
                four(t, x, v + REPORT_FINAL_MAE);
            }
        }
    }
    runlog_table *e = runlog_table_find(rl, "eval/test");
    for (size_t i = 0; e && i < e->nrows; i++)
        if (!strcmp(e->labels[i], "overall")) {
            const double *x = e->values + i * (size_t)e->ncols;
            four(e, x, v + REPORT_TEST_MAE);
            int cm = runlog_col(e, "max_err"), cw = runlog_col(e, "width95");
            if (cm >= 0) v[REPORT_TEST_MAXERR] = x[cm];
            if (cw >= 0) v[REPORT_TEST_WIDTH] = x[cw];
        }
}

/* The table as cells: row 0 the header, then one row per run. */
#define NNUM REPORT_NCOLS

typedef struct cells {
    int rows, cols;
    char **c;
} cells;

static void cells_free(cells *t)
{
    if (t->c)
        for (int i = 0; i < t->rows * t->cols; i++) free(t->c[i]);
    free(t->c);
}

static int cells_build(const cc_report *r, int csv, cells *t)
{
    t->rows = r->nruns + 1;
    t->cols = 1 + NNUM + r->ndiff;
    t->c = calloc((size_t)(t->rows * t->cols), sizeof(char *));
    if (!t->c) return -1;
    char buf[CFG_STR * 2];
    t->c[0] = strdup("run");
    for (int j = 0; j < NNUM; j++) t->c[1 + j] = strdup(report_cols[j]);
    for (int k = 0; k < r->ndiff; k++) t->c[1 + NNUM + k] = strdup(r->diff[k]);
    for (int i = 0; i < r->nruns; i++) {
        char **row = t->c + (size_t)(i + 1) * (size_t)t->cols;
        report_row s;
        report_summarize(r->runs[i].rl, &s);
        const double *v = s.v;
        row[0] = strdup(r->runs[i].name);
        for (int j = 0; j < NNUM; j++) {
            if (isnan(v[j]))
                snprintf(buf, sizeof buf, "%s", csv ? "" : "-");
            else if (j == REPORT_BEST_EPOCH)
                snprintf(buf, sizeof buf, "%.0f", v[j]);
            else if (j == REPORT_TRAIN_S && !csv)
                snprintf(buf, sizeof buf, "%.1f", v[j]);
            else
                snprintf(buf, sizeof buf, csv ? "%.10g" : "%.4g", v[j]);
            row[1 + j] = strdup(buf);
        }
        for (int k = 0; k < r->ndiff; k++) {
            char key[RUNLOG_NAME + 8];
            snprintf(key, sizeof key, "config.%s", r->diff[k]);
            const char *val = runlog_attr_get(r->runs[i].rl, key);
            row[1 + NNUM + k] = strdup(val ? val : csv ? "" : "-");
        }
    }
    for (int i = 0; i < t->rows * t->cols; i++)
        if (!t->c[i]) return -1;
    return 0;
}

void report_print(const cc_report *r, FILE *f)
{
    cells t = {0, 0, NULL};
    if (cells_build(r, 0, &t)) {
        cells_free(&t);
        fprintf(f, "report: out of memory\n");
        return;
    }
    int *w = calloc((size_t)t.cols, sizeof *w);
    if (!w) {
        cells_free(&t);
        fprintf(f, "report: out of memory\n");
        return;
    }
    for (int i = 0; i < t.rows; i++)
        for (int j = 0; j < t.cols; j++) {
            int l = (int)strlen(t.c[i * t.cols + j]);
            if (l > w[j]) w[j] = l;
        }
    for (int i = 0; i < t.rows; i++) {
        for (int j = 0; j < t.cols; j++) {
            /* Names and configuration values left, numbers right. */
            int left = j == 0 || j > NNUM;
            int width = left && j == t.cols - 1 ? 0 : w[j]; /* no trailing blanks */
            fprintf(f, "%s%*s", j ? "  " : "", left ? -width : width, t.c[i * t.cols + j]);
        }
        fputc('\n', f);
    }
    if (r->nruns > 1 && r->ndiff == 0) fprintf(f, "(the runs have the same configuration)\n");
    free(w);
    cells_free(&t);
}

int report_write_csv(const cc_report *r, const char *path, cc_status *st)
{
    cells t = {0, 0, NULL};
    if (cells_build(r, 1, &t)) {
        cells_free(&t);
        return status_set(st, "report: out of memory");
    }
    fs_atomic aw;
    if (fs_atomic_begin(&aw, path, st) != 0) {
        cells_free(&t);
        return -1;
    }
    const char *tmp = aw.tmp;
    FILE *f = fopen(tmp, "w");
    if (!f) {
        cells_free(&t);
        fs_atomic_abort(&aw);
        return status_set(st, "%s: cannot write (%s)", tmp, strerror(errno));
    }
    for (int i = 0; i < t.rows; i++) {
        for (int j = 0; j < t.cols; j++) {
            if (j) fputc(',', f);
            csv_cell_put(f, t.c[i * t.cols + j]);
        }
        fputc('\n', f);
    }
    cells_free(&t);
    int bad = ferror(f);
    if (fclose(f) || bad) {
        fs_atomic_abort(&aw);
        return status_set(st, "%s: write failed (disk full?)", path);
    }
    return fs_atomic_commit(&aw, st);
}
