/* report_plot.c - `report --plot`: learning curves and calibration through
 * gnuplot (see report.h).
 *
 * The data go inline as gnuplot datablocks in one script piped to a single
 * gnuplot process, so nothing but the PNGs is written.  Each PNG is drawn
 * to a temporary name and renamed once gnuplot has succeeded. */
#include "src/sweep/report.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "src/data/fsutil.h"

/* learning curves and calibration, then two evaluation figures per run */
#define MAX_PLOTS(nruns) (4 + 2 * (nruns))

/* A gnuplot single-quoted string ('' stands for a quote inside). */
static void gp_str(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', f);
        if (*s != '\n') fputc(*s, f);
    }
    fputc('\'', f);
}

typedef struct xy {
    double x, y;
} xy;

static int xy_cmp(const void *a, const void *b)
{
    double d = ((const xy *)a)->x - ((const xy *)b)->x;
    return (d > 0) - (d < 0);
}

/* Datablock $<name> with the metrics column `col` of one stage and split
 * against the epoch (1-based).  Returns the number of points (0: nothing
 * written). */
static int block_metric(FILE *f, const char *name, runlog *rl, int stage, int split,
                        const char *col, double *max_x)
{
    runlog_table *t = runlog_table_find(rl, "metrics");
    if (!t) return 0;
    int cs = runlog_col(t, "stage"), ce = runlog_col(t, "epoch"), csp = runlog_col(t, "split"),
        cv = runlog_col(t, col);
    if (cs < 0 || ce < 0 || csp < 0 || cv < 0 || t->nrows == 0) return 0;
    xy *p = malloc(sizeof *p * t->nrows);
    if (!p) return 0;
    size_t n = 0;
    for (size_t i = 0; i < t->nrows; i++) {
        const double *x = t->values + i * (size_t)t->ncols;
        if (x[cs] == stage && x[csp] == split && isfinite(x[cv])) p[n++] = (xy){x[ce] + 1, x[cv]};
    }
    qsort(p, n, sizeof *p, xy_cmp);
    if (n) {
        fprintf(f, "$%s << EOD\n", name);
        for (size_t i = 0; i < n; i++) fprintf(f, "%.17g %.17g\n", p[i].x, p[i].y);
        fprintf(f, "EOD\n");
        if (p[n - 1].x > *max_x) *max_x = p[n - 1].x;
    }
    free(p);
    return (int)n;
}

/* The run's calibration table: test, else val, else train. */
static runlog_table *calibration(runlog *rl, const char **split)
{
    static const char *const splits[] = {"test", "val", "train"};
    for (int i = 0; i < 3; i++) {
        char name[64];
        snprintf(name, sizeof name, "calibration/%s", splits[i]);
        runlog_table *t = runlog_table_find(rl, name);
        if (t && t->nrows && runlog_col(t, "nominal") >= 0 && runlog_col(t, "observed") >= 0) {
            *split = splits[i];
            return t;
        }
    }
    return NULL;
}

static int block_calibration(FILE *f, const char *name, runlog *rl, const char **split)
{
    runlog_table *t = calibration(rl, split);
    if (!t) return 0;
    int cn = runlog_col(t, "nominal"), co = runlog_col(t, "observed");
    fprintf(f, "$%s << EOD\n", name);
    for (size_t i = 0; i < t->nrows; i++) {
        const double *x = t->values + i * (size_t)t->ncols;
        if (isfinite(x[cn]) && isfinite(x[co])) fprintf(f, "%.17g %.17g\n", x[cn], x[co]);
    }
    fprintf(f, "EOD\n");
    return 1;
}

typedef struct plot_file {
    char final[PATH_MAX - 64];
    fs_atomic aw;           /* aw.tmp: gnuplot's output until renamed */
    int bad;                /* fs_atomic_begin failed: final cannot be written */
} plot_file;

/* Start a figure: output to a temp name, recorded in files[]. */
static void figure(FILE *f, const char *dir, const char *name, const char *title,
                   const char *xlabel, const char *ylabel, plot_file *files, int *nfiles)
{
    plot_file *pf = &files[(*nfiles)++];
    snprintf(pf->final, sizeof pf->final, "%s/%s", dir, name);
    if ((pf->bad = fs_atomic_begin(&pf->aw, pf->final, NULL) != 0))
        snprintf(pf->aw.tmp, sizeof pf->aw.tmp, "/dev/null");
    fprintf(f, "reset\nset output ");
    gp_str(f, pf->aw.tmp);
    fprintf(f, "\nset title ");
    gp_str(f, title);
    fprintf(f, "\nset xlabel ");
    gp_str(f, xlabel);
    fprintf(f, "\nset ylabel ");
    gp_str(f, ylabel);
    fprintf(f, "\nset grid\nset key outside right top\nset xtics nomirror\n");
}

/* A learning-curve figure: per run, train (dashed) and/or val (solid). */
static void curves(FILE *f, const cc_report *r, const char *dir, const char *file,
                   const char *title, const char *ylabel, int stage, const char *col,
                   int with_train, plot_file *files, int *nfiles)
{
    int any = 0;
    double max_x = 0;
    char *has = calloc((size_t)r->nruns * 2, 1);
    if (!has) return;
    for (int i = 0; i < r->nruns; i++) {
        char name[64];
        if (with_train) {
            snprintf(name, sizeof name, "r%d_%s_%d_train", i, col, stage);
            any |= has[2 * i] = block_metric(f, name, r->runs[i].rl, stage, 0, col, &max_x) > 0;
        }
        snprintf(name, sizeof name, "r%d_%s_%d_val", i, col, stage);
        any |= has[2 * i + 1] = block_metric(f, name, r->runs[i].rl, stage, 1, col, &max_x) > 0;
    }
    if (any) {
        figure(f, dir, file, title, "epoch", ylabel, files, nfiles);
        /* Whole epochs on the axis while they fit. */
        if (max_x <= 20) fprintf(f, "set xtics 1\n");
        if (max_x <= 1) fprintf(f, "set xrange [0.5:1.5]\n");
        fprintf(f, "plot ");
        int first = 1;
        for (int i = 0; i < r->nruns; i++)
            for (int k = 0; k < 2; k++) {
                if (!has[2 * i + k]) continue;
                char label[300];
                snprintf(label, sizeof label, "%s%s", r->runs[i].name,
                         with_train ? (k ? " val" : " train") : "");
                fprintf(f, "%s$r%d_%s_%d_%s with linespoints lc %d dt %d pt 7 ps 0.6 title ",
                        first ? "" : ", ", i, col, stage, k ? "val" : "train", i + 1, k ? 1 : 2);
                gp_str(f, label);
                first = 0;
            }
        fprintf(f, "\nset output\n");
    }
    free(has);
}

static void calibration_plot(FILE *f, const cc_report *r, const char *dir, plot_file *files,
                             int *nfiles)
{
    int any = 0;
    char *has = calloc((size_t)r->nruns, 1);
    const char **split = calloc((size_t)r->nruns, sizeof *split);
    if (!has || !split) {
        free(has);
        free(split);
        return;
    }
    for (int i = 0; i < r->nruns; i++) {
        char name[32];
        snprintf(name, sizeof name, "r%d_calib", i);
        any |= has[i] = (char)block_calibration(f, name, r->runs[i].rl, &split[i]);
    }
    if (any) {
        figure(f, dir, "calibration.png", "calibration of the predicted count intervals",
               "nominal coverage", "observed coverage", files, nfiles);
        fprintf(f, "set size square\nset xrange [0:1]\nset yrange [0:1]\n"
                   "plot x with lines lc rgb 'black' dt 3 title 'ideal'");
        for (int i = 0; i < r->nruns; i++) {
            if (!has[i]) continue;
            char label[300];
            snprintf(label, sizeof label, "%s (%s)", r->runs[i].name, split[i]);
            fprintf(f, ", $r%d_calib with linespoints lc %d pt 7 ps 0.6 title ", i, i + 1);
            gp_str(f, label);
        }
        fprintf(f, "\nset output\n");
    }
    free(has);
    free(split);
}

/* ---- evaluation figures (per run) ---- */

/* The run's table "<prefix>/test", else "<prefix>/val"; split names it. */
static runlog_table *test_or_val(runlog *rl, const char *prefix, const char **split)
{
    static const char *const splits[] = {"test", "val"};
    for (int i = 0; i < 2; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s/%s", prefix, splits[i]);
        runlog_table *t = runlog_table_find(rl, name);
        if (t && t->nrows) {
            *split = splits[i];
            return t;
        }
    }
    return NULL;
}

/* File name of a per-run figure: base.png for a single run, else
 * base_<run>.png ('/' in the name as '_'). */
static void run_file(const cc_report *r, int i, const char *base, char *out, size_t len)
{
    if (r->nruns == 1) {
        snprintf(out, len, "%s.png", base);
        return;
    }
    snprintf(out, len, "%s_%s.png", base, r->runs[i].name);
    for (char *p = out; *p; p++)
        if (*p == '/') *p = '_';
}

/* Predicted vs true count with 95% intervals, coloured by focus level. */
static void pred_plot(FILE *f, const cc_report *r, int i, const char *dir, plot_file *files,
                      int *nfiles)
{
    const char *split = NULL;
    runlog_table *t = test_or_val(r->runs[i].rl, "predictions", &split);
    if (!t) return;
    int ct = runlog_col(t, "truth"), cc = runlog_col(t, "count"), cs = runlog_col(t, "sigma"),
        cf = runlog_col(t, "focus");
    if (ct < 0 || cc < 0 || cs < 0 || cf < 0) return;
    /* Focus levels share true counts: spread them by up to +-0.3 cells so
     * that the error bars do not hide each other. */
    double fmin = INFINITY, fmax = -INFINITY, vmax = 0;
    for (size_t k = 0; k < t->nrows; k++) {
        const double *x = t->values + k * (size_t)t->ncols;
        if (isfinite(x[cf])) fmin = fmin < x[cf] ? fmin : x[cf], fmax = fmax > x[cf] ? fmax : x[cf];
    }
    fprintf(f, "$pred%d << EOD\n", i);
    size_t n = 0;
    for (size_t k = 0; k < t->nrows; k++) {
        const double *x = t->values + k * (size_t)t->ncols;
        if (!isfinite(x[ct]) || !isfinite(x[cc])) continue;
        double half = isfinite(x[cs]) ? 1.96 * x[cs] : 0;
        double off = fmax > fmin ? 0.6 * ((x[cf] - fmin) / (fmax - fmin) - 0.5) : 0;
        fprintf(f, "%.9g %.9g %.9g %.9g %.9g\n", x[ct] + off, x[cc], x[cc] - half, x[cc] + half,
                x[cf]);
        if (x[ct] > vmax) vmax = x[ct];
        if (x[cc] + half > vmax) vmax = x[cc] + half;
        n++;
    }
    fprintf(f, "EOD\n");
    if (!n) return;
    char name[300], title[600];
    run_file(r, i, "pred_vs_true", name, sizeof name);
    snprintf(title, sizeof title, "%s: predicted vs true count, %s split (%zu images, 95%% intervals)",
             r->runs[i].name, split, n);
    figure(f, dir, name, title, "true count (cells)", "predicted count (cells)", files, nfiles);
    fprintf(f, "set size ratio -1\nset xrange [0:%g]\nset yrange [0:%g]\n"
               "set key inside left top box opaque\n"
               "set palette defined (0 '#440154', 1 '#3b528b', 2 '#21918c', 3 '#5ec962', 4 '#fde725')\n"
               "set cblabel 'focus level (F)'\n",
            vmax * 1.05 + 1, vmax * 1.05 + 1);
    if (fmax > fmin) fprintf(f, "set cbrange [%g:%g]\n", fmin, fmax);
    fprintf(f, "plot x with lines lc rgb 'black' dt 3 title 'ideal: predicted = true', "
               "$pred%d using 1:2:3:4:5 with yerrorbars lc palette pt 7 ps 0.5 "
               "title 'image: count and 95%% interval'\nset output\n", i);
}

/* Rows of the eval table whose label starts with prefix, as a datablock
 * "label" mae base_mae.  Returns the number of rows. */
static int block_groups(FILE *f, const char *name, const runlog_table *t, const char *prefix,
                        int *has_base, double *ymax)
{
    int cm = runlog_col(t, "mae"), cb = runlog_col(t, "base_mae");
    if (cm < 0) return 0;
    int n = 0;
    for (size_t k = 0; k < t->nrows; k++) {
        if (strncmp(t->labels[k], prefix, strlen(prefix))) continue;
        const double *x = t->values + k * (size_t)t->ncols;
        if (!n) fprintf(f, "$%s << EOD\n", name);
        const double base = cb >= 0 && isfinite(x[cb]) ? x[cb] : NAN;
        fprintf(f, "\"%s\" %.9g %.9g\n", t->labels[k] + strlen(prefix), x[cm], base);
        if (isfinite(base)) *has_base = 1;
        if (isfinite(base) && base > *ymax) *ymax = base;
        if (isfinite(x[cm]) && x[cm] > *ymax) *ymax = x[cm];
        n++;
    }
    if (n) fprintf(f, "EOD\n");
    return n;
}

/* MAE by focus level and by count range, network beside the baseline. */
static void group_plot(FILE *f, const cc_report *r, int i, const char *dir, plot_file *files,
                       int *nfiles)
{
    const char *split = NULL;
    runlog_table *t = test_or_val(r->runs[i].rl, "eval", &split);
    if (!t) return;
    char bf[32], bc[32];
    snprintf(bf, sizeof bf, "focus%d", i);
    snprintf(bc, sizeof bc, "count%d", i);
    int hb[2] = {0, 0};
    double ymax = 0;
    int nf = block_groups(f, bf, t, "focus ", &hb[0], &ymax),
        nc = block_groups(f, bc, t, "count ", &hb[1], &ymax);
    if (!nf && !nc) return;
    char name[300], title[600];
    run_file(r, i, "error_by_group", name, sizeof name);
    snprintf(title, sizeof title, "%s: mean absolute error on the %s split, network vs "
                                  "mean-intensity baseline", r->runs[i].name, split);
    figure(f, dir, name, "", "", "", files, nfiles);
    fprintf(f, "set multiplot layout 1,%d title ", nf && nc ? 2 : 1);
    gp_str(f, title);
    fprintf(f, "\nset style data histograms\nset style histogram clustered gap 1\n"
               "set style fill solid 0.85 border -1\nset boxwidth 0.9\n"
               "set yrange [0:%g]\n"   /* the same scale on both panels, room for the key */
               "set key inside center top horizontal\nset ylabel 'MAE (cells)'\nset grid ytics\n",
            ymax > 0 ? 1.2 * ymax : 1);
    const char *sets[2][3] = {{bf, "focus level", "F"}, {bc, "true count range (cells)", ""}};
    const int counts[2] = {nf, nc};
    for (int k = 0; k < 2; k++) {
        if (!counts[k]) continue;
        fprintf(f, "set xlabel '%s'\n%s\n", sets[k][1],
                counts[k] > 8 ? "set xtics rotate by -45" : "set xtics norotate");
        fprintf(f, "plot $%s using 2:xtic(1) title 'network' lc rgb '#1f77b4'%s\n", sets[k][0],
                hb[k] ? ", '' using 3 title 'mean-intensity baseline' lc rgb '#ff7f0e'" : "");
    }
    fprintf(f, "unset multiplot\nset output\n");
}

/* gnuplot on PATH (or the given path), or NULL. */
static int find_program(const char *prog, char *out, size_t len)
{
    if (strchr(prog, '/')) {
        snprintf(out, len, "%s", prog);
        return access(out, X_OK) == 0;
    }
    const char *path = getenv("PATH");
    if (!path) path = "/usr/bin:/bin";
    while (*path) {
        const char *colon = strchr(path, ':');
        size_t l = colon ? (size_t)(colon - path) : strlen(path);
        snprintf(out, len, "%.*s/%s", (int)l, l ? path : ".", prog);
        if (access(out, X_OK) == 0) return 1;
        if (!colon) break;
        path = colon + 1;
    }
    return 0;
}

/* Feed script to gnuplot; its messages go to errpath.  Returns its exit
 * status (or -1 when it could not run). */
static int run_gnuplot(const char *prog, const char *script, size_t len, const char *errpath)
{
    int pfd[2];
    if (pipe(pfd)) return -1;
    int efd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (efd < 0) {
        close(pfd[0]);
        close(pfd[1]);
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pfd[0], 0);
        dup2(efd, 1);
        dup2(efd, 2);
        close(pfd[0]);
        close(pfd[1]);
        execl(prog, "gnuplot", (char *)NULL);
        dprintf(2, "cannot run %s (%s)\n", prog, strerror(errno));
        _exit(127);
    }
    close(pfd[0]);
    close(efd);
    if (pid < 0) {
        close(pfd[1]);
        return -1;
    }
    /* A gnuplot that stops early must not kill us with SIGPIPE: block it
     * while writing and drop the pending signal afterwards. */
    sigset_t pipeset, old;
    sigemptyset(&pipeset);
    sigaddset(&pipeset, SIGPIPE);
    sigprocmask(SIG_BLOCK, &pipeset, &old);
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(pfd[1], script + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        off += (size_t)w;
    }
    close(pfd[1]);
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {}
    sigset_t pending;
    sigpending(&pending);
    if (sigismember(&pending, SIGPIPE) && !sigismember(&old, SIGPIPE))
        sigtimedwait(&pipeset, NULL, &(struct timespec){0, 0});
    sigprocmask(SIG_SETMASK, &old, NULL);
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
}

/* First line of gnuplot's output that says what went wrong. */
static void first_error(const char *errpath, char *out, size_t len)
{
    snprintf(out, len, "no message");
    FILE *f = fopen(errpath, "r");
    if (!f) return;
    char line[512], first[512] = "";
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        const char *p = line;
        while (*p == ' ' || *p == '^') p++;
        if (!*p) continue;
        if (!first[0]) snprintf(first, sizeof first, "%s", p);
        if (strstr(p, "error") || strstr(p, "cannot")) {
            snprintf(out, len, "%s", p);
            fclose(f);
            return;
        }
    }
    if (first[0]) snprintf(out, len, "%s", first);
    fclose(f);
}

static int is_png(const char *path)
{
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    unsigned char b[8];
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    int ok = fread(b, 1, 8, f) == 8 && !memcmp(b, sig, 8);
    fclose(f);
    return ok;
}

int report_plot(const cc_report *r, const char *dir, const char *gnuplot, FILE *log,
                cc_status *st)
{
    char prog[PATH_MAX];
    if (!gnuplot) gnuplot = "gnuplot";
    if (!find_program(gnuplot, prog, sizeof prog))
        return status_set(st, "--plot needs gnuplot, and %s was not found: install the Debian "
                              "package gnuplot-nox (apt-get install gnuplot-nox)", gnuplot);
    if (fs_mkdirs(dir, st)) return -1;
    char *script = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&script, &len);
    if (!f) return status_set(st, "report: out of memory");
    /* pngcairo draws anti-aliased lines; plain png (libgd) is the fallback
     * for gnuplot builds without cairo. */
    fprintf(f, "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
               "  set terminal pngcairo size 1100,650 noenhanced font ',10'\n"
               "} else {\n"
               "  set terminal png size 1100,650 noenhanced\n"
               "}\n");
    plot_file *files = malloc(sizeof *files * (size_t)MAX_PLOTS(r->nruns));
    if (!files) {
        fclose(f);
        free(script);
        return status_set(st, "report: out of memory");
    }
    int nfiles = 0;
    curves(f, r, dir, "loss_fpn.png", "FPN loss (train dashed, val solid)", "loss", 0, "loss",
           1, files, &nfiles);
    curves(f, r, dir, "loss_counter.png", "counter loss (train dashed, val solid)", "loss", 1,
           "loss", 1, files, &nfiles);
    curves(f, r, dir, "val_mae.png", "counter validation MAE", "MAE (cells)", 1, "mae", 0, files,
           &nfiles);
    calibration_plot(f, r, dir, files, &nfiles);
    for (int i = 0; i < r->nruns; i++) {
        pred_plot(f, r, i, dir, files, &nfiles);
        group_plot(f, r, i, dir, files, &nfiles);
    }
    if (fclose(f)) {
        free(script);
        free(files);
        return status_set(st, "report: out of memory");
    }
    if (nfiles == 0) {
        free(script);
        free(files);
        return status_set(st, "--plot: the runs have no metrics or calibration tables to plot");
    }
    char errpath[PATH_MAX];
    snprintf(errpath, sizeof errpath, "%s/.gnuplot.%ld.log", dir, (long)getpid());
    int rc = run_gnuplot(prog, script, len, errpath);
    free(script);
    int ret = 0;
    if (rc != 0) {
        char msg[512];
        first_error(errpath, msg, sizeof msg);
        ret = status_set(st, "%s failed (%s): %s", prog, rc < 0 ? "could not run" : "exit status",
                         msg);
    }
    unlink(errpath);
    for (int i = 0; i < nfiles; i++) {
        if (!ret && files[i].bad)
            ret = status_set(st, "%s: cannot be written (a directory or a bad link?)",
                             files[i].final);
        if (!ret && !is_png(files[i].aw.tmp))
            ret = status_set(st, "%s: gnuplot wrote no PNG", files[i].final);
        if (!ret && fs_atomic_commit(&files[i].aw, st))
            ret = -1;
        else if (!ret && log)
            fprintf(log, "wrote %s\n", files[i].final);
    }
    for (int i = 0; i < nfiles; i++)
        if (!files[i].bad) fs_atomic_abort(&files[i].aw);   /* no-op once committed */
    free(files);
    return ret;
}
