/* sweep_emit.c - see sweep_emit.h. */
#include "src/sweep/sweep_emit.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "src/data/fsutil.h"

/* s as one single-quoted shell word. */
static void put_quoted(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputs("'\\''", f);
        else fputc(*s, f);
    }
    fputc('\'', f);
}

/* "cd CWD && EXE sweep ARGS --point <point> --threads <threads>" */
static void put_command(FILE *f, const sweep_emit *e, const char *point, const char *threads)
{
    fputs("cd ", f);
    put_quoted(f, e->cwd);
    fputs(" && ", f);
    put_quoted(f, e->exe);
    fputs(" sweep", f);
    for (int i = 0; i < e->nargs; i++) {
        fputc(' ', f);
        put_quoted(f, e->args[i]);
    }
    fprintf(f, " --point %s --threads %s", point, threads);
}

/* Write path through a temp file + rename; fill(f, arg) writes the body. */
static int write_atomic(const char *path, int mode, void (*fill)(FILE *, const void *),
                        const void *arg, cc_status *st)
{
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return status_set(st, "%s: path too long", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return status_set(st, "%s: cannot write (%s)", tmp, strerror(errno));
    fill(f, arg);
    int bad = ferror(f);
    if (fclose(f) || bad) {
        unlink(tmp);
        return status_set(st, "%s: write failed (disk full?)", path);
    }
    if (chmod(tmp, (mode_t)mode) || rename(tmp, path)) {
        int err = errno;
        unlink(tmp);
        return status_set(st, "%s: cannot replace (%s)", path, strerror(err));
    }
    return 0;
}

typedef struct points_arg {
    const sweep_point *points;
    int n;
} points_arg;

static void fill_points(FILE *f, const void *arg)
{
    const points_arg *a = arg;
    fprintf(f, "# the points of this sweep, one directory name per line (cellcount report)\n");
    for (int i = 0; i < a->n; i++) fprintf(f, "%s\n", a->points[i].name);
}

int sweep_write_points(const sweep_spec *s, const sweep_point *points, int n, cc_status *st)
{
    char path[CFG_STR + 32];
    if (fs_mkdirs(s->out_dir, st)) return -1;
    snprintf(path, sizeof path, "%s/points.txt", s->out_dir);
    points_arg a = {points, n};
    return write_atomic(path, 0644, fill_points, &a, st);
}

int sweep_emit_commands(const sweep_spec *s, int n, const sweep_emit *e, FILE *f, cc_status *st)
{
    (void)s;
    char point[16], threads[16];
    snprintf(threads, sizeof threads, "%d", e->threads);
    for (int i = 0; i < n; i++) {
        snprintf(point, sizeof point, "%d", i);
        put_command(f, e, point, threads);
        fputc('\n', f);
    }
    if (fflush(f) || ferror(f)) return status_set(st, "writing the commands failed");
    return 0;
}

typedef struct slurm_arg {
    const sweep_spec *s;
    const sweep_emit *e;
    int n;
    const char *report, *self;
} slurm_arg;

static void put_common(FILE *f, const sweep_emit *e)
{
    fputs("#SBATCH --chdir=", f);
    fputs(e->cwd, f);
    fputc('\n', f);
    if (e->partition) fprintf(f, "#SBATCH --partition=%s\n", e->partition);
}

static void fill_array(FILE *f, const void *arg)
{
    const slurm_arg *a = arg;
    const sweep_emit *e = a->e;
    fprintf(f, "#!/bin/bash\n"
               "# cellcount sweep as a Slurm job array: %d point%s", a->n, a->n == 1 ? "" : "s");
    if (e->max_parallel) fprintf(f, ", at most %d at a time", e->max_parallel);
    fprintf(f, ".\n# Submit, with the report as a job that runs when every point has ended:\n"
               "#   jid=$(sbatch --parsable %s) && sbatch --dependency=afterany:$jid %s\n"
               "# Resubmitting is safe: finished points are skipped, others resumed.\n",
            a->self, a->report);
    fprintf(f, "#SBATCH --job-name=cellcount-sweep\n#SBATCH --array=0-%d", a->n - 1);
    if (e->max_parallel) fprintf(f, "%%%d", e->max_parallel);
    fprintf(f, "\n#SBATCH --ntasks=1\n#SBATCH --cpus-per-task=%d\n", e->threads);
    put_common(f, e);
    fprintf(f, "#SBATCH --output=%s/slurm/%%A_%%a.log\n", a->s->out_dir);
    if (e->time_limit) fprintf(f, "#SBATCH --time=%s\n", e->time_limit);
    fprintf(f, "#SBATCH --requeue\n#SBATCH --signal=B:USR1@%d\n", e->signal_s);
    fputs("set -u\n"
          "export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}\n"
          "# HDF5's file locks fail or hang on many shared file systems (NFS, Lustre).\n"
          "export HDF5_USE_FILE_LOCKING=FALSE\n"
          "# --signal: USR1 arrives before the time limit.  Stop the point (every\n"
          "# finished epoch is checkpointed) and requeue this task: the requeued\n"
          "# task resumes the point from its last checkpoint.\n"
          "requeue() {\n"
          "    echo \"cellcount: time limit near, requeueing task $SLURM_ARRAY_TASK_ID\"\n"
          "    kill -TERM -- -\"$pid\" 2>/dev/null; wait \"$pid\"\n"
          "    scontrol requeue \"${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}\"\n"
          "    exit 0\n"
          "}\n"
          "trap requeue USR1\n"
          "setsid bash -c ", f);
    /* The command as one word for bash -c (its own process group, so that
     * the trap can stop the point's stage processes too). */
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    if (m) {
        put_command(m, e, "$SLURM_ARRAY_TASK_ID", "$OMP_NUM_THREADS");
        fclose(m);
        put_quoted(f, buf);
        free(buf);
    }
    fputs(" &\npid=$!\nwait \"$pid\"\nexit $?\n", f);
}

static void fill_report(FILE *f, const void *arg)
{
    const slurm_arg *a = arg;
    fprintf(f, "#!/bin/bash\n"
               "# The report of the sweep (submit with --dependency=afterany:<array job id>);\n"
               "# it lists points that are missing or failed.\n"
               "#SBATCH --job-name=cellcount-report\n#SBATCH --ntasks=1\n#SBATCH --cpus-per-task=1\n");
    put_common(f, a->e);
    fprintf(f, "#SBATCH --output=%s/slurm/report_%%j.log\n", a->s->out_dir);
    fputs("set -o pipefail\nexport HDF5_USE_FILE_LOCKING=FALSE\n", f);
    put_quoted(f, a->e->exe);
    fputs(" report ", f);
    put_quoted(f, a->s->out_dir);
    fputs(" | tee ", f);
    char out[CFG_STR + 32];
    snprintf(out, sizeof out, "%s/report.txt", a->s->out_dir);
    put_quoted(f, out);
    fputc('\n', f);
}

int sweep_emit_slurm(const sweep_spec *s, int n, const sweep_emit *e, const char *path,
                     char *report_path, size_t report_len, cc_status *st)
{
    size_t l = strlen(path);
    const int sh = l > 3 && !strcmp(path + l - 3, ".sh");
    if (snprintf(report_path, report_len, "%.*s_report.sh", (int)(sh ? l - 3 : l), path) >=
        (int)report_len)
        return status_set(st, "%s: path too long", path);
    char logs[CFG_STR + 16];
    snprintf(logs, sizeof logs, "%s/slurm", s->out_dir);
    if (fs_mkdirs(logs, st)) return -1;
    slurm_arg a = {s, e, n, report_path, path};
    if (write_atomic(report_path, 0755, fill_report, &a, st)) return -1;
    return write_atomic(path, 0755, fill_array, &a, st);
}
