/* session.c - see session.h. */
#include "src/run/session.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "src/data/fsutil.h"

double session_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

const char *session_path(const cc_session *s, const char *name, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", s->dir, name);
    return buf;
}

static int write_config_ini(cc_session *s, cc_status *st)
{
    char path[CFG_STR + 32];
    session_path(s, "config.ini", path, sizeof path);
    fs_atomic aw;
    if (fs_atomic_begin(&aw, path, st) != 0) return -1;
    const char *tmp = aw.tmp;
    FILE *f = fopen(tmp, "w");
    if (!f) {
        int e = errno;
        fs_atomic_abort(&aw);
        return status_set(st, "%s: cannot write (%s)", tmp, strerror(e));
    }
    fprintf(f, "; resolved configuration of this run (cellcount)\n");
    config_write(&s->cfg, f);
    int bad = ferror(f);
    if (fclose(f) || bad) {
        fs_atomic_abort(&aw);
        return status_set(st, "%s: write failed (disk full?)", path);
    }
    return fs_atomic_commit(&aw, st);
}

/* The engine context with run.precision applied (bf16: a note on s->log
 * when oneDNN only emulates it, an error where it has no bf16 kernels). */
static int session_ctx_init(cc_session *s, const cc_config *cfg, cc_status *st)
{
    if (ctx_init(&s->ctx, cfg->threads, st)) return -1;
    int emulated = 0;
    if (ctx_set_precision(&s->ctx, cfg_precision_names[cfg->precision], &emulated, st)) {
        char msg[sizeof st->msg];
        snprintf(msg, sizeof msg, "%s", st->msg);
        return status_set(st, "run.precision = %s: %s", cfg_precision_names[cfg->precision], msg);
    }
    if (emulated)
        fprintf(s->log, "note: run.precision = bf16 on a CPU without AVX512-BF16 (oneDNN reports "
                        "%s): bf16 is emulated, slower than fp32\n",
                ctx_dnnl_isa_name());
    return 0;
}

/* run.sync_bn under MPI: every training BN layer's statistics span all
 * ranks (op_bnorm.c).  At one rank there is nothing to synchronise, and the
 * run stays bit for bit the non-MPI one.  Also the MPI gradient overlap. */
static void session_dist_hooks(cc_session *s)
{
    /* run.overlap_allreduce: gradient buckets reduced while backward runs
     * (dist.h, dist_grad_begin); backward reports finished gradients. */
    s->dist.overlap = s->cfg.overlap_allreduce;
    double f = s->cfg.allreduce_bucket_mb * 1e6 / sizeof(float);
    s->dist.bucket_floats = f < 1 ? 1 : (size_t)f;
    if (s->dist.size > 1 && s->dist.overlap) {
        s->ctx.grad_event = dist_grad_event;
        s->ctx.grad_event_user = &s->dist;
    }
    if (!s->cfg.sync_bn || s->dist.size == 1) return;
    s->ctx.allreduce_sum = dist_bn_allreduce;
    s->ctx.allreduce_user = &s->dist;
}

int session_open(cc_session *s, const cc_config *cfg, int mode, cc_status *st)
{
    assert(mode == SESSION_TRAIN || mode == SESSION_EVAL);
    memset(s, 0, sizeof *s);
    s->cfg = *cfg;
    s->log = stderr;
    s->tty = isatty(fileno(stderr));
    if (config_validate(cfg, st)) return -1;
    snprintf(s->dir, sizeof s->dir, "%s", cfg->out_dir);
    dist_open(&s->dist);
    s->writer = s->dist.rank == 0;
    if (!s->writer) {   /* rank > 0: compute only, rank 0 writes and reports */
        if (!(s->log = fopen("/dev/null", "w"))) return status_set(st, "/dev/null: cannot open");
        s->tty = 0;
        if (session_ctx_init(s, cfg, st)) return -1;
        session_dist_hooks(s);
        char p[CFG_STR + 32];
        if (runlog_create(&s->rl, session_path(s, "run.h5", p, sizeof p), cfg, st)) return -1;
        s->rl_open = 1;
        return 0;
    }
    s->made_dir = access(s->dir, F_OK) != 0;
    if (fs_mkdirs(s->dir, st)) return -1;
    if (access(s->dir, W_OK))
        return status_set(st, "%s: run directory is not writable (%s)", s->dir, strerror(errno));
    if (session_ctx_init(s, cfg, st)) return -1;
    session_dist_hooks(s);
    char path[CFG_STR + 32];
    session_path(s, "run.h5", path, sizeof path);
    /* An existing run file is kept (the counter stage appends to the FPN's);
     * a training stage refreshes the configuration attributes to its own.
     * An evaluation leaves them and config.ini as training wrote them:
     * they say how the checkpoints were made (count rebuilds the models
     * from config.ini), and an evaluation under other settings, or one
     * that fails on a checkpoint that does not fit, must not rewrite that. */
    char cpath[CFG_STR + 32];
    const int keep = mode == SESSION_EVAL &&
                     access(session_path(s, "config.ini", cpath, sizeof cpath), F_OK) == 0;
    const int exists = access(path, F_OK) == 0;
    if (exists && mode == SESSION_EVAL) {
        if (runlog_open(&s->rl, path, st)) return -1;
    } else if (exists) {
        runlog fresh;
        if (runlog_open(&s->rl, path, st)) return -1;
        if (runlog_create(&fresh, path, cfg, st)) {
            runlog_free(&fresh);
            runlog_free(&s->rl);
            return -1;
        }
        int rc = 0;
        for (int i = 0; i < fresh.nattrs && !rc; i++)
            if (strcmp(fresh.attrs[i]->key, "start_time"))
                rc = runlog_set_attr(&s->rl, fresh.attrs[i]->key, fresh.attrs[i]->value, st);
        runlog_free(&fresh);
        if (rc) {
            runlog_free(&s->rl);
            return -1;
        }
    } else if (runlog_create(&s->rl, path, cfg, st)) {
        return -1;
    }
    s->rl_open = 1;
    char ranks[32];
    snprintf(ranks, sizeof ranks, "%d", s->dist.size);
    if (mode == SESSION_EVAL) return keep ? 0 : write_config_ini(s, st);
    if (runlog_set_attr(&s->rl, "mpi_ranks", ranks, st)) return -1;
    return write_config_ini(s, st);
}

void session_close(cc_session *s)
{
    char path[CFG_STR + 32];
    if (s->made_dir && access(session_path(s, "run.h5", path, sizeof path), F_OK) != 0) {
        unlink(session_path(s, "config.ini", path, sizeof path));
        rmdir(s->dir);      /* fails, as it should, if anything else is in it */
        s->made_dir = 0;
    }
    if (s->rl_open) runlog_free(&s->rl);
    ctx_free(&s->ctx);
    dist_close(&s->dist);
    if (s->log && s->log != stderr) fclose(s->log);
    s->log = NULL;
    s->rl_open = 0;
}

int models_counter_channels(const cc_config *cfg)
{
    return cfg->counter_input == CFG_INPUT_MASK_IMAGE ? 2 : 1;
}

int models_build(cc_models *m, cc_session *s, int with_counter, int in_h, int in_w, cc_status *st)
{
    memset(m, 0, sizeof *m);
    const cc_config *c = &s->cfg;
    params_init(&m->Pf, &s->ctx);
    params_init(&m->Pc, &s->ctx);
    m->in_h = in_h;
    m->in_w = in_w;
    fpn_config fc = {c->fpn_depth, c->fpn_width, c->fpn_channels};
    if (fpn_build(&m->Pf, &fc, "fpn", &m->fpn, st) || params_finalize(&m->Pf, st)) return -1;
    fpn_init(&m->Pf, &m->fpn, (uint64_t)c->seed);
    if (with_counter) {
        counter_config cc = counter_config_default();
        snprintf(cc.arch, sizeof cc.arch, "%s", c->counter_arch);
        cc.in_channels = models_counter_channels(c);
        cc.width_div = c->counter_width_div;
        cc.relu_unstick = c->counter_relu_unstick;
        cc.head_means = c->counter_head_means;
        cc.height = in_h / 2;
        cc.width = in_w / 2;
        if (counter_build(&m->Pc, &cc, "counter", &m->counter, st)) return -1;
        m->has_counter = 1;
        if (params_finalize(&m->Pc, st)) return -1;
        counter_init(&m->Pc, &m->counter, (uint64_t)c->seed + 1);
    }
    return 0;
}

void models_free(cc_models *m)
{
    if (m->has_counter) counter_free(&m->counter);
    params_free(&m->Pf);
    params_free(&m->Pc);
    memset(m, 0, sizeof *m);
}

void session_optim_init(cc_optim *o, const cfg_train *t)
{
    if (t->optimizer == CFG_OPTIM_SGD)
        optim_sgd_init(o, (float)t->lr, (float)t->momentum, (float)t->weight_decay);
    else
        optim_adam_init(o, (float)t->lr, (float)t->beta1, (float)t->beta2, (float)t->eps,
                        (float)t->weight_decay);
}

void progress_begin(progress *p, const cc_session *s, const char *label, int64_t total_steps)
{
    p->s = s;
    p->start = p->last_print = session_now();
    p->total_steps = total_steps;
    snprintf(p->label, sizeof p->label, "%s", label);
}

void progress_update(progress *p, int64_t step, double loss, double images_per_s)
{
    double now = session_now();
    int tty = p->s->tty;
    if (now - p->last_print < (tty ? 0.25 : 10.0) && step != p->total_steps) return;
    p->last_print = now;
    double el = now - p->start;
    double eta = step > 0 ? el / (double)step * (double)(p->total_steps - step) : 0;
    fprintf(p->s->log, "%s%s step %lld/%lld loss %.5g %.1f img/s ETA %.0fs%s", tty ? "\r" : "",
            p->label, (long long)step, (long long)p->total_steps, loss, images_per_s, eta,
            tty ? "   " : "\n");
    fflush(p->s->log);
}

void progress_end(progress *p)
{
    if (p->s->tty) fputc('\n', p->s->log);
}
