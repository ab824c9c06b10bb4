/* session.h - what every training/evaluation command shares: the resolved
 * configuration, the engine context, the run directory with its run file,
 * the model stores, and progress reporting.
 *
 * Run directory (cfg.out_dir):
 *   run.h5            run file (runlog.h): config, provenance, metrics, eval
 *   config.ini        the resolved configuration, reloadable
 *   fpn_last.h5       FPN checkpoint after the last finished epoch
 *   fpn_best.h5       FPN checkpoint with the lowest validation loss
 *   counter_last.h5, counter_best.h5   the same for the counter (best = the
 *                     lowest validation MAE)
 *   counter_fpn_last.h5, counter_fpn_best.h5   with finetune_fpn: the FPN as
 *                     fine-tuned together with the counter
 */
#ifndef CC_SESSION_H
#define CC_SESSION_H

#include <stdio.h>

#include "autodiff/ctx.h"
#include "autodiff/optim.h"
#include "autodiff/params.h"
#include "models/counter.h"
#include "models/fpn.h"
#include "models/losses.h"
#include "src/run/dist.h"
#include "src/run/exp_config.h"
#include "src/run/runlog.h"

typedef struct cc_session {
    cc_config cfg;
    cc_ctx ctx;
    runlog rl;
    int rl_open;
    char dir[CFG_STR];
    FILE *log;              /* progress and messages (stderr) */
    int tty;                /* log is a terminal: live progress line */
    cc_dist dist;           /* MPI ranks (dist.h); size 1 without MPI */
    int writer;             /* this process writes the run directory (rank 0) */
    int made_dir;           /* session_open created dir (see session_close) */
} cc_session;

enum { SESSION_TRAIN, SESSION_EVAL };

/* Create the context and the run directory (mkdir -p), and open (resume) or
 * create run.h5.  SESSION_TRAIN: write config.ini and refresh run.h5's
 * configuration attributes to cfg.  SESSION_EVAL (evaluate): leave an
 * existing run's config.ini and attributes as training wrote them (write
 * config.ini only where there is none).  Under MPI only rank 0 touches the
 * run directory (writer = 1; run.h5 gets attribute mpi_ranks); the other
 * ranks keep an in-memory run log that is never written and log to
 * /dev/null.  Returns 0 or -1. */
int session_open(cc_session *s, const cc_config *cfg, int mode, cc_status *st);
/* Free the session.  A run directory that session_open created and that
 * never got a run.h5 (the command failed before its first result) is
 * removed again, so a failed command leaves no directory with only
 * config.ini in it. */
void session_close(cc_session *s);

/* "<dir>/<name>" into buf. */
const char *session_path(const cc_session *s, const char *name, char *buf, size_t len);

/* Models: the FPN and the counter, each in its own store so each has its
 * own checkpoint.  in_h/in_w: the data set's image size. */
typedef struct cc_models {
    cc_params Pf, Pc;
    fpn_model fpn;
    counter_model counter;
    int has_counter;
    int in_h, in_w;
} cc_models;

/* Build (and initialise from cfg.seed) the FPN and, if with_counter, the
 * counter for images of in_h x in_w. */
int models_build(cc_models *m, cc_session *s, int with_counter, int in_h, int in_w, cc_status *st);
void models_free(cc_models *m);

/* Counter input channels for cfg.counter.input. */
int models_counter_channels(const cc_config *cfg);

/* Adam or SGD from a cfg_train section. */
void session_optim_init(cc_optim *o, const cfg_train *t);

/* Progress: a live line on a terminal, a plain line every ~10 s otherwise. */
typedef struct progress {
    const cc_session *s;
    double start, last_print;
    int64_t total_steps;
    char label[64];
} progress;

void progress_begin(progress *p, const cc_session *s, const char *label, int64_t total_steps);
void progress_update(progress *p, int64_t step, double loss, double images_per_s);
void progress_end(progress *p);

/* Wall clock seconds. */
double session_now(void);

#endif
