/* sweep_run.c - running a sweep's points as child processes (see sweep.h). */
#include "src/sweep/sweep.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "src/data/fsutil.h"
#include "src/run/runlog.h"
#include "src/run/session.h"

extern char **environ;

#define MAX_ARGS (8 + 2 * (SWEEP_MAX_SETS + SWEEP_MAX_AXES + 3))

static const struct {
    unsigned bit;
    const char *cmd;            /* cellcount subcommand */
    const char *output;         /* file that exists once the stage succeeded */
    const char *last;           /* its checkpoint to --resume from; NULL: none */
} stages[] = {
    {SWEEP_FPN, "train-fpn", "fpn_best.h5", "fpn_last.h5"},
    {SWEEP_COUNTER, "train-counter", "counter_best.h5", "counter_last.h5"},
    {SWEEP_EVALUATE, "evaluate", "run.h5", NULL},
};
#define NSTAGES 3

static void point_file(const sweep_point *p, const char *name, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", p->dir, name);
}

/* The stage left what it should: a checkpoint, or the evaluation table. */
static int stage_output_ok(const sweep_point *p, int k)
{
    char path[CFG_STR + 64];
    point_file(p, stages[k].output, path, sizeof path);
    if (access(path, R_OK)) return 0;
    if (stages[k].bit != SWEEP_EVALUATE) return 1;
    runlog *rl = malloc(sizeof *rl);
    if (!rl) return 0;
    int ok = runlog_open(rl, path, NULL) == 0;
    if (ok) {
        ok = runlog_table_find(rl, "eval/test") != NULL;
        runlog_free(rl);
    }
    free(rl);
    return ok;
}

int sweep_point_finished(const sweep_point *p, unsigned want)
{
    char path[CFG_STR + 64], line[256];
    point_file(p, "DONE", path, sizeof path);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    unsigned done = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!strncmp(line, "stages=", 7) && sweep_parse_stages(line + 7, &done, NULL)) done = 0;
    }
    fclose(f);
    if ((done & want) != want) return 0;
    for (int k = 0; k < NSTAGES; k++)
        if ((want & stages[k].bit) && !stage_output_ok(p, k)) return 0;
    return 1;
}

/* DONE marker, atomically: its presence must mean every stage succeeded. */
static int write_done(const sweep_point *p, unsigned want, cc_status *st)
{
    char path[CFG_STR + 64], list[64];
    point_file(p, "DONE", path, sizeof path);
    fs_atomic aw;
    if (fs_atomic_begin(&aw, path, st) != 0) return -1;
    const char *tmp = aw.tmp;
    sweep_stages_str(want, list, sizeof list);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        int e = errno;
        fs_atomic_abort(&aw);
        return status_set(st, "%s: cannot write (%s)", tmp, strerror(e));
    }
    time_t t = time(NULL);
    struct tm tm;
    char when[32];
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(f, "stages=%s\nfinished=%s\n", list, when);
    int bad = ferror(f);
    if (fclose(f) || bad) {
        fs_atomic_abort(&aw);
        return status_set(st, "%s: write failed (disk full?)", path);
    }
    return fs_atomic_commit(&aw, st);
}

typedef struct argvec {
    int n;
    char *v[MAX_ARGS + 1];
} argvec;

static void args_free(argvec *a)
{
    for (int i = 0; i < a->n; i++) free(a->v[i]);
    a->n = 0;
}

static int args_add(argvec *a, const char *s)
{
    if (a->n == MAX_ARGS || !(a->v[a->n] = strdup(s))) return -1;
    a->v[++a->n] = NULL;
    return 0;
}

static int add_set(void *argv, const char *assignment)
{
    return args_add(argv, "--set") | args_add(argv, assignment);
}

/* The command line of stage k for point p. */
static int stage_args(argvec *a, const sweep_spec *s, const sweep_point *p, int k, int threads,
                      int resume, const char *argv0)
{
    char buf[CFG_STR + 80];
    int r = args_add(a, argv0) | args_add(a, stages[k].cmd);
    if (s->base[0]) r |= args_add(a, s->base);
    for (int i = 0; i < s->nsets; i++) r |= args_add(a, "--set") | args_add(a, s->sets[i]);
    for (int i = 0; i < s->naxes; i++)
        if (sweep_point_override(s, p, i, buf, sizeof buf))
            r |= sweep_override_each(buf, add_set, a);
    snprintf(buf, sizeof buf, "run.out_dir=%s", p->dir);
    r |= args_add(a, "--set") | args_add(a, buf);
    snprintf(buf, sizeof buf, "run.threads=%d", threads);
    r |= args_add(a, "--set") | args_add(a, buf);
    snprintf(buf, sizeof buf, "run.name=%s", p->name);
    r |= args_add(a, "--set") | args_add(a, buf);
    /* --resume insists on a checkpoint: give it only when there is one */
    point_file(p, stages[k].last ? stages[k].last : "", buf, sizeof buf);
    if (resume && stages[k].last && access(buf, F_OK) == 0) r |= args_add(a, "--resume");
    return r ? -1 : 0;
}

/* Shell-like rendering of a command line for logs. */
static void args_print(FILE *f, const argvec *a)
{
    for (int i = 0; i < a->n; i++) {
        const char *s = a->v[i];
        int plain = *s != '\0';
        for (const char *c = s; *c; c++)
            if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._=,+-/:@%",
                        *c))
                plain = 0;
        if (plain) {
            fprintf(f, "%s%s", i ? " " : "", s);
            continue;
        }
        fprintf(f, "%s'", i ? " " : "");
        for (const char *c = s; *c; c++)
            if (*c == '\'')
                fputs("'\\''", f);
            else
                fputc(*c, f);
        fputc('\'', f);
    }
}

/* The environment with OMP_NUM_THREADS replaced: OpenMP pools outside the
 * engine's context (and libraries reading it) then agree with run.threads. */
static char **child_env(int threads, char *omp)
{
    size_t n = 0;
    while (environ[n]) n++;
    char **env = malloc(sizeof(char *) * (n + 2));
    if (!env) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "OMP_NUM_THREADS=", 16)) env[o++] = environ[i];
    sprintf(omp, "OMP_NUM_THREADS=%d", threads);
    env[o++] = omp;
    env[o] = NULL;
    return env;
}

/* Start stage k of point p; output appended to p/log.txt.  Returns the pid
 * or -1 + message. */
static pid_t stage_start(const sweep_spec *s, const sweep_point *p, int k, int threads,
                         int resume, const sweep_opts *o, cc_status *st)
{
    char logpath[CFG_STR + 64], omp[48];
    if (fs_mkdirs(p->dir, st)) return -1;
    point_file(p, "log.txt", logpath, sizeof logpath);
    argvec a = {0, {NULL}};
    if (stage_args(&a, s, p, k, threads, resume, o->argv0 ? o->argv0 : o->exe)) {
        args_free(&a);
        return status_set(st, "%s: out of memory building the command line", p->name);
    }
    char **env = child_env(threads, omp);
    int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
    FILE *lf = fd >= 0 ? fdopen(dup(fd), "a") : NULL;
    if (!env || fd < 0 || !lf) {
        status_set(st, "%s: cannot open (%s)", logpath, strerror(errno));
        if (fd >= 0) close(fd);
        free(env);
        args_free(&a);
        return -1;
    }
    time_t t = time(NULL);
    struct tm tm;
    char when[32];
    localtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
    fprintf(lf, "==== %s sweep: ", when);
    args_print(lf, &a);
    fprintf(lf, "\n");
    fclose(lf);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* Die with the sweep, so that a killed sweep leaves no run writing
         * into a directory the next invocation will resume. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent) _exit(128 + SIGTERM);
        int nul = open("/dev/null", O_RDONLY);
        if (nul > 0) {
            dup2(nul, 0);
            close(nul);
        }
        dup2(fd, 1);
        dup2(fd, 2);
        execve(o->exe, a.v, env);
        dprintf(2, "sweep: cannot run %s (%s)\n", o->exe, strerror(errno));
        _exit(127);
    }
    int err = errno;
    close(fd);
    free(env);
    args_free(&a);
    if (pid < 0) return status_set(st, "%s: fork failed (%s)", p->name, strerror(err));
    return pid;
}

typedef struct slot {
    int point;                  /* -1 = free */
    int stage;                  /* index into stages[] */
    pid_t pid;
    double start;
} slot;

/* Next requested stage after k, or NSTAGES. */
static int next_stage(unsigned want, int k)
{
    for (k++; k < NSTAGES && !(want & stages[k].bit); k++) {}
    return k;
}

static void print_plan(const sweep_spec *s, const sweep_point *points, int n, unsigned want,
                       int threads, const char *argv0, FILE *f)
{
    for (int i = 0; i < n; i++) {
        char rh[CFG_STR + 64];
        point_file(&points[i], "run.h5", rh, sizeof rh);
        int fin = sweep_point_finished(&points[i], want), resume = access(rh, F_OK) == 0;
        fprintf(f, "point %d/%d %s: %s\n", i + 1, n, points[i].name,
                fin ? "finished, skipped" : resume ? "would resume" : "would run");
        if (fin) continue;
        for (int k = next_stage(want, -1); k < NSTAGES; k = next_stage(want, k)) {
            argvec a = {0, {NULL}};
            if (stage_args(&a, s, &points[i], k, threads, resume, argv0) == 0) {
                fprintf(f, "  ");
                args_print(f, &a);
                fprintf(f, "\n");
            }
            args_free(&a);
        }
    }
}

/* A point's stage ended with wait status ws: go on, finish or fail it. */
static void stage_ended(const sweep_spec *s, const sweep_point *points, int n, unsigned want,
                        int threads, const sweep_opts *o, sweep_result *res, slot *sl, int ws,
                        int *finished)
{
    const sweep_point *p = &points[sl->point];
    sweep_result *r = &res[sl->point];
    int code = WIFEXITED(ws) ? WEXITSTATUS(ws) : WIFSIGNALED(ws) ? -WTERMSIG(ws) : -1;
    FILE *log = o->log;
    if (code == 0) {
        int k = next_stage(want, sl->stage);
        if (k < NSTAGES) {
            cc_status st;
            status_clear(&st);
            pid_t pid = stage_start(s, p, k, threads, r->resumed, o, &st);
            if (pid > 0) {
                sl->stage = k;
                sl->pid = pid;
                if (log) fprintf(log, "sweep: %s: %s\n", p->name, stages[k].cmd);
                return;
            }
            r->state = SWEEP_FAILED;
            r->failed_stage = stages[k].bit;
            snprintf(r->msg, sizeof r->msg, "%s", st.msg);
        } else {
            cc_status st;
            status_clear(&st);
            if (write_done(p, want, &st)) {
                r->state = SWEEP_FAILED;
                snprintf(r->msg, sizeof r->msg, "%s", st.msg);
            } else {
                r->state = SWEEP_DONE;
            }
        }
    } else {
        r->state = SWEEP_FAILED;
        r->failed_stage = stages[sl->stage].bit;
        r->exit_code = code;
        if (code < 0)
            snprintf(r->msg, sizeof r->msg, "%s killed by signal %d, see %s/log.txt",
                     stages[sl->stage].cmd, -code, p->dir);
        else
            snprintf(r->msg, sizeof r->msg, "%s exited with status %d, see %s/log.txt",
                     stages[sl->stage].cmd, code, p->dir);
    }
    r->seconds = session_now() - sl->start;
    (*finished)++;
    if (log) {
        if (r->state == SWEEP_DONE)
            fprintf(log, "sweep: %s: done in %.1f s (%d/%d)\n", p->name, r->seconds, *finished, n);
        else
            fprintf(log, "sweep: %s: FAILED: %s (%d/%d)\n", p->name, r->msg, *finished, n);
        fflush(log);
    }
    sl->point = -1;
}

int sweep_run(const sweep_spec *s, const sweep_point *points, int n, const sweep_opts *o,
              sweep_result *res, cc_status *st)
{
    if (!o->exe || o->jobs < 1 || o->threads < 1) return status_set(st, "sweep: bad options");
    unsigned want = s->stages ? s->stages : SWEEP_ALL;
    int torun = 0;
    for (int i = 0; i < n; i++) {
        memset(&res[i], 0, sizeof res[i]);
        if (sweep_point_finished(&points[i], want))
            res[i].state = SWEEP_SKIPPED;
        else
            torun++;
    }
    /* threads / jobs whatever is left to run (fp32 results do not depend
     * on the thread count; bf16 ones do, so a bf16 sweep is best rerun
     * with the same options). */
    int threads = o->threads / o->jobs > 0 ? o->threads / o->jobs : 1;
    int jobs = o->jobs < torun ? o->jobs : torun > 0 ? torun : 1;
    if (o->dry_run) {
        if (o->log) print_plan(s, points, n, want, threads, o->argv0 ? o->argv0 : o->exe, o->log);
        return 0;
    }
    if (fs_mkdirs(s->out_dir, st)) return -1;
    if (o->log) {
        fprintf(o->log, "sweep: %d points in %s, %d finished earlier, %d to run, %d at a time, "
                        "%d thread%s each\n", n, s->out_dir, n - torun, torun, jobs, threads,
                threads == 1 ? "" : "s");
        fflush(o->log);
    }
    slot *sl = malloc(sizeof *sl * (size_t)jobs);
    if (!sl) return status_set(st, "sweep: out of memory");
    for (int j = 0; j < jobs; j++) sl[j].point = -1;
    int next = 0, active = 0, finished = 0;
    for (;;) {
        /* Fill free slots with the next unfinished points. */
        for (int j = 0; j < jobs; j++) {
            while (sl[j].point < 0 && next < n) {
                int i = next++;
                if (res[i].state == SWEEP_SKIPPED) continue;
                char path[CFG_STR + 64];
                point_file(&points[i], "run.h5", path, sizeof path);
                res[i].resumed = access(path, F_OK) == 0;
                /* A stale marker (fewer stages, missing outputs) must not
                 * survive a rerun that then fails. */
                point_file(&points[i], "DONE", path, sizeof path);
                unlink(path);
                int k = next_stage(want, -1);
                cc_status pst;
                status_clear(&pst);
                double t0 = session_now();
                pid_t pid = stage_start(s, &points[i], k, threads, res[i].resumed, o, &pst);
                if (pid < 0) {
                    res[i].state = SWEEP_FAILED;
                    res[i].failed_stage = stages[k].bit;
                    snprintf(res[i].msg, sizeof res[i].msg, "%s", pst.msg);
                    finished++;
                    if (o->log) fprintf(o->log, "sweep: %s: FAILED: %s\n", points[i].name, pst.msg);
                    continue;
                }
                sl[j] = (slot){i, k, pid, t0};
                active++;
                if (o->log) {
                    fprintf(o->log, "sweep: %s: %s%s (log %s/log.txt)\n", points[i].name,
                            stages[k].cmd, res[i].resumed ? " --resume" : "", points[i].dir);
                    fflush(o->log);
                }
            }
        }
        if (!active) break;
        /* Poll our own children only: waitpid(-1) could reap a process that
         * belongs to someone else in the caller. */
        int progressed = 0;
        for (int j = 0; j < jobs; j++) {
            if (sl[j].point < 0) continue;
            int ws;
            pid_t r = waitpid(sl[j].pid, &ws, WNOHANG);
            if (r == 0 || (r < 0 && errno == EINTR)) continue;
            if (r < 0) ws = 0x7f00; /* lost child: report it as failed */
            progressed = 1;
            stage_ended(s, points, n, want, threads, o, res, &sl[j], ws, &finished);
            if (sl[j].point < 0) active--;
        }
        if (!progressed) nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
    }
    free(sl);
    int failed = 0;
    for (int i = 0; i < n; i++) failed += res[i].state == SWEEP_FAILED;
    return failed;
}

void sweep_print_summary(const sweep_spec *s, const sweep_point *points, int n,
                         const sweep_result *res, FILE *f)
{
    int counts[4] = {0, 0, 0, 0};
    size_t w = 5;
    for (int i = 0; i < n; i++) {
        counts[res[i].state]++;
        if (strlen(points[i].name) > w) w = strlen(points[i].name);
    }
    fprintf(f, "\nsweep %s: %d points: %d done, %d skipped (finished earlier), %d failed",
            s->out_dir, n, counts[SWEEP_DONE], counts[SWEEP_SKIPPED], counts[SWEEP_FAILED]);
    if (counts[SWEEP_PENDING]) fprintf(f, ", %d not run", counts[SWEEP_PENDING]);
    fprintf(f, "\n%-*s  %-8s %9s  %s\n", (int)w, "point", "status", "time", "note");
    static const char *names[] = {"not run", "skipped", "done", "FAILED"};
    for (int i = 0; i < n; i++) {
        const sweep_result *r = &res[i];
        char t[32] = "-";
        if (r->state == SWEEP_DONE || r->state == SWEEP_FAILED) snprintf(t, sizeof t, "%.1f s", r->seconds);
        const char *note = r->state == SWEEP_FAILED ? r->msg
                           : r->state == SWEEP_DONE && r->resumed ? "resumed"
                           : "";
        fprintf(f, "%-*s  %-8s %9s%s%s\n", (int)w, points[i].name, names[r->state], t,
                *note ? "  " : "", note);
    }
}
