/* sweep.h - a grid of configuration overrides, one run directory per point.
 *
 * A sweep is a base experiment file, fixed overrides, and axes
 * ("section.key" with a list of values); its points are the Cartesian
 * product of the axes.  Every point is an ordinary run directory
 * OUT_DIR/<name>, where <name> spells the point's overrides
 * ("fpn.width=32,fpn.loss=nll", made safe as a file name), and its stages
 * (train-fpn, train-counter, evaluate) run as child processes of the
 * cellcount executable, so a crash in one point cannot take the others down
 * and each point's log is its own RUN/log.txt.
 *
 * A point is finished when a DONE marker, written after its last stage
 * succeeded, lists the requested stages and the stages' outputs exist; a
 * rerun skips finished points and resumes the others (--resume), so an
 * interrupted sweep continues where it stopped.
 *
 * Sweep file (INI, one section):
 *   [sweep]
 *   base = experiment.ini        ; relative to the sweep file's directory
 *   out_dir = runs/sweep         ; relative to the working directory
 *   stages = fpn,counter,evaluate
 *   grid.fpn.width = 32,64       ; an axis (file order = nesting order)
 *   grid.fpn.loss+counter.loss = nll,mse   ; linked keys: one axis, each
 *                                ; value set for every key joined by '+'
 *   set.fpn_train.epochs = 10    ; a fixed override for every point
 *   mode = grid | ablation       ; product of the axes (default), or one
 *                                ; factor at a time from the base
 *
 * Ablation mode is how ablation studies are run: one point with no axis
 * overridden ("base"), then one point per axis value with only that axis
 * overridden; a point whose resolved configuration equals an earlier one
 * (the value is the base's own) is dropped, so the base runs once.
 */
#ifndef CC_SWEEP_H
#define CC_SWEEP_H

#include <stdio.h>

#include "autodiff/status.h"
#include "src/run/exp_config.h"

#define SWEEP_MAX_AXES 16
#define SWEEP_MAX_SETS 64
#define SWEEP_MAX_POINTS 10000
#define SWEEP_NAME 200          /* longest point (directory) name + 1 */

enum { SWEEP_FPN = 1, SWEEP_COUNTER = 2, SWEEP_EVALUATE = 4,
       SWEEP_ALL = SWEEP_FPN | SWEEP_COUNTER | SWEEP_EVALUATE };

typedef struct sweep_axis {
    char key[64];               /* "section.key" */
    int nvalues;
    char **values;              /* owned */
} sweep_axis;

typedef struct sweep_spec {
    char base[CFG_STR];         /* experiment file every point starts from; "" = defaults */
    char out_dir[CFG_STR];      /* "" = not given */
    unsigned stages;            /* SWEEP_* bits; 0 = not given (sweep_run: all) */
    int naxes;
    sweep_axis axes[SWEEP_MAX_AXES];
    int nsets;
    char *sets[SWEEP_MAX_SETS]; /* fixed "section.key=value" overrides, owned */
    int ablation;               /* 1: one factor at a time (see above), 0: grid */
} sweep_spec;

/* An empty spec (no axes, no base). */
void sweep_spec_init(sweep_spec *s);
void sweep_spec_free(sweep_spec *s);

/* 1 if path is a sweep file (has a [sweep] section), 0 otherwise (or unreadable). */
int sweep_file_is_sweep(const char *path);

/* Read a sweep file into s (on top of what s holds).  Errors name path:line:
 * unknown sections/keys, unknown configuration keys, values the key rejects,
 * repeated axes or values. */
int sweep_load(sweep_spec *s, const char *path, cc_status *st);

/* Add an axis "section.key=a,b,c" (replaces an axis with the same key).
 * where: "--grid" or "file:line", for messages. */
int sweep_add_grid(sweep_spec *s, const char *assignment, const char *where, cc_status *st);

/* Add a fixed override "section.key=value" (checked against the key table). */
int sweep_add_set(sweep_spec *s, const char *assignment, const char *where, cc_status *st);

/* "fpn,counter,evaluate" (any subset, any order) into SWEEP_* bits. */
int sweep_parse_stages(const char *list, unsigned *stages, cc_status *st);
/* The bits as "fpn,counter,evaluate" (canonical order). */
void sweep_stages_str(unsigned stages, char *buf, size_t len);

typedef struct sweep_point {
    int idx[SWEEP_MAX_AXES];    /* value index per axis; -1 = axis not overridden */
    char name[SWEEP_NAME];      /* directory name under out_dir */
    char dir[CFG_STR];          /* out_dir/name */
} sweep_point;

/* The points: the product of the axes, the first axis varying slowest (or,
 * in ablation mode, "base" then each axis value alone, duplicates of an
 * earlier point's resolved configuration dropped).  Each
 * point's configuration (base + sets + its overrides) is loaded and
 * validated here, so a bad combination fails before anything runs.  Names
 * are "key=value" joined by ',', with characters outside [A-Za-z0-9._=,+-]
 * replaced by '_' (long names are cut and end in a hash); two points with
 * the same name are an error.  *points is malloc'ed (caller frees). */
int sweep_expand(const sweep_spec *s, sweep_point **points, int *npoints, cc_status *st);

/* Call fn once per key of an override "k1+k2=value" (linked keys) with
 * "k1=value", "k2=value"; stops at and returns fn's first non-zero result. */
int sweep_override_each(const char *override, int (*fn)(void *arg, const char *assignment),
                        void *arg);

/* Axis a's override of point p as "section.key=value" into buf; NULL when
 * the point leaves axis a at the base value (ablation mode). */
const char *sweep_point_override(const sweep_spec *s, const sweep_point *p, int a, char *buf,
                                 size_t len);

/* 1 if p has a DONE marker covering `stages` and the stages' outputs exist. */
int sweep_point_finished(const sweep_point *p, unsigned stages);

typedef enum { SWEEP_PENDING, SWEEP_SKIPPED, SWEEP_DONE, SWEEP_FAILED } sweep_state;

typedef struct sweep_result {
    sweep_state state;
    int resumed;                /* the point had started before */
    unsigned failed_stage;      /* SWEEP_* bit of the stage that failed */
    int exit_code;              /* its exit status, or -signal */
    double seconds;             /* wall time of this invocation's stages */
    char msg[CC_STATUS_MSG];    /* why it failed, for the summary */
} sweep_result;

typedef struct sweep_opts {
    const char *exe;            /* cellcount executable (the CLI: /proc/self/exe) */
    const char *argv0;          /* the children's argv[0] and the name in logs; NULL = exe */
    int jobs;                   /* points at a time, >= 1 */
    int threads;                /* thread budget, >= 1: each run gets threads / jobs */
    int dry_run;                /* only print what would run */
    FILE *log;                  /* progress lines; NULL = quiet */
} sweep_opts;

/* Run the unfinished points, opts->jobs at a time, each with run.threads =
 * threads / jobs (at least 1; not divided by the number of points left, so
 * a resumed point gets the thread count it started with).  A point's stages run in
 * the order fpn, counter, evaluate as `exe <stage> [base] --set ... --set
 * run.out_dir=DIR --set run.threads=T --set run.name=NAME [--resume]`, output
 * appended to DIR/log.txt; after the last one DIR/DONE is written.  A failing
 * point stops at its failing stage; the others go on.  results[i] (n of
 * them) tells each point's fate.  Returns the number of failed points, or -1
 * (+ message) when the sweep itself cannot proceed (out_dir not creatable). */
int sweep_run(const sweep_spec *s, const sweep_point *points, int n, const sweep_opts *opts,
              sweep_result *results, cc_status *st);

/* The table of points and their status. */
void sweep_print_summary(const sweep_spec *s, const sweep_point *points, int n,
                         const sweep_result *results, FILE *f);

#endif
