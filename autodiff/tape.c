/* tape.c - recording, state reuse, gradient accumulation, backward.
 * See tape.h for the model and op.h for the op author's side (the op table
 * is in op_registry.c, the oneDNN helpers in dnnl_util.c). */
#include "autodiff/op.h"
#include "autodiff/ops.h"

#include <assert.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

#define TENSORS_PER_BLOCK 256

struct cc_tensor_block {
    cc_tensor_block *next;
    cc_tensor t[TENSORS_PER_BLOCK];
};

void tape_init(cc_tape *t, cc_ctx *ctx, int training)
{
    memset(t, 0, sizeof *t);
    t->ctx = ctx;
    t->training = training;
    arena_init(&t->arena, ctx);
}

void tape_free(cc_tape *t)
{
    for (int i = 0; i < t->cap_nodes; i++) {
        cc_node *n = &t->nodes[i];
        if (n->state) tape_op_def(n->op)->state_free(n->state);
    }
    ctx_release(t->ctx, t->nodes, sizeof(cc_node) * (size_t)t->cap_nodes);
    while (t->tensors) {
        cc_tensor_block *b = t->tensors->next;
        ctx_release(t->ctx, t->tensors, sizeof *t->tensors);
        t->tensors = b;
    }
    ctx_release(t->ctx, t->scratch, t->scratch_size);
    arena_free(&t->arena);
    memset(t, 0, sizeof *t);
}

void tape_reset(cc_tape *t)
{
    arena_reset(&t->arena);
    t->grad_free = NULL;
    t->n_nodes = 0;
    t->n_recorded = 0;
    t->tensor_used = 0;
    status_clear(&t->status);
}

void tape_set_training(cc_tape *t, int training) { t->training = training; }

void tape_fix_weights(cc_tape *t, int fixed)
{
    t->weights_fixed = fixed != 0;
    t->weights_gen++;
}

int tape_ok(const cc_tape *t) { return !t->status.failed; }

const char *tape_error(const cc_tape *t) { return t->status.failed ? t->status.msg : NULL; }

void *tape_alloc(cc_tape *t, size_t bytes, cc_status *st)
{
    return arena_alloc(&t->arena, bytes, st);
}

static cc_tensor *tensor_new(cc_tape *t)
{
    int idx = t->tensor_used;
    cc_tensor_block **pb = &t->tensors;
    for (int skip = idx / TENSORS_PER_BLOCK; skip > 0; skip--) {
        if (!*pb) break;
        pb = &(*pb)->next;
    }
    if (!*pb) {
        *pb = ctx_alloc(t->ctx, sizeof **pb, &t->status);
        if (!*pb) return NULL;
    }
    cc_tensor *x = &(*pb)->t[idx % TENSORS_PER_BLOCK];
    memset(x, 0, sizeof *x);
    t->tensor_used++;
    return x;
}

cc_tensor *tape_input(cc_tape *t, int ndim, const int64_t *dims, const float *data,
                      int requires_grad)
{
    if (t->status.failed) return NULL;
    cc_tensor *x = tensor_new(t);
    if (!x) return NULL;
    tensor_set_shape(x, ndim, dims);
    size_t bytes = tensor_bytes(x);
    x->data = arena_alloc(&t->arena, bytes, &t->status);
    if (!x->data) return NULL;
    if (data)
        memcpy(x->data, data, bytes);
    else
        memset(x->data, 0, bytes);
    x->requires_grad = requires_grad && t->training;
    return x;
}

cc_tensor *tape_detach(cc_tape *t, cc_tensor *x)
{
    if (t->status.failed || !x) return NULL;
    cc_tensor *y = tensor_new(t);
    if (!y) return NULL;
    *y = *x;
    y->grad = NULL;
    y->grad_ready = 0;
    y->requires_grad = 0;
    y->is_param = 0;
    y->creator = NULL;
    return y;
}

static int grow_nodes(cc_tape *t)
{
    int cap = t->cap_nodes ? 2 * t->cap_nodes : 64;
    cc_node *nn = ctx_alloc(t->ctx, sizeof(cc_node) * (size_t)cap, &t->status);
    if (!nn) return -1;
    if (t->nodes) memcpy(nn, t->nodes, sizeof(cc_node) * (size_t)t->cap_nodes);
    ctx_release(t->ctx, t->nodes, sizeof(cc_node) * (size_t)t->cap_nodes);
    t->nodes = nn;
    t->cap_nodes = cap;
    return 0;
}

/* Does node n's cached state fit this recording? */
static int key_matches(const cc_tape *t, const cc_node *n, int op, cc_tensor *const *in, int n_in,
                       const cc_op_args *args)
{
    if (!n->key_valid || n->op != op || n->key_n_in != n_in || n->key_training != t->training ||
        n->key_threads != omp_get_max_threads() || n->key_bf16 != t->ctx->bf16)
        return 0;
    if (memcmp(&n->key_args, args, sizeof *args)) return 0;
    for (int i = 0; i < n_in; i++)
        if (!dnnl_memory_desc_equal(&n->key_md[i], &in[i]->md)) return 0;
    return 1;
}

/* A node below both bounds runs on the calling thread.  Why: each
 * parallel region costs a wake-up and a join; with OMP_WAIT_POLICY=passive
 * (cellcount's default) that is 0.1-0.4 ms, and beside a busy process a
 * join can wait a whole time slice for a thread the scheduler holds back.
 * The quickstart's FPN (width 16, batch 4, 96x128) has 30 conv nodes under
 * 0.15 ms at 1 thread that took 0.3-0.5 ms at 2, so its step was slower at
 * 2 threads than at 1 (docs/PERFORMANCE.md, session 16).  The bounds: ~50 us
 * of work at one thread, forward (a node's backward costs about twice). */
#define TAPE_SERIAL_MACS ((int64_t)1 << 22)       /* forward multiply-accumulates */
#define TAPE_SERIAL_BYTES ((size_t)512 << 10)     /* inputs + output */

static int node_is_small(const cc_node *n)
{
    if (tape_node_macs(n) >= TAPE_SERIAL_MACS) return 0;
    size_t bytes = tensor_bytes(n->out);
    for (int i = 0; i < n->n_in; i++) bytes += tensor_bytes(n->in[i]);
    return bytes < TAPE_SERIAL_BYTES;
}

/* Run fn for node n, with OpenMP capped at one thread when n is serial
 * (the team size nt is restored after). */
static int node_run(int (*fn)(cc_tape *, cc_node *, cc_status *), cc_tape *t, cc_node *n, int nt)
{
    if (!n->serial || nt <= 1) return fn(t, n, &t->status);
    omp_set_num_threads(1);
    const int rc = fn(t, n, &t->status);
    omp_set_num_threads(nt);
    return rc;
}

cc_tensor *tape_record(cc_tape *t, int op, cc_tensor *const *in, int n_in, const cc_op_args *args)
{
    const cc_op_def *def = tape_op_def(op);
    if (t->status.failed) return NULL;
    assert(n_in <= OP_MAX_IN);
    for (int i = 0; i < n_in; i++)
        if (!in[i]) {
            status_set(&t->status, "%s: input %d is NULL", def->name, i);
            return NULL;
        }
    if (t->n_nodes == t->cap_nodes && grow_nodes(t)) return NULL;
    cc_node *n = &t->nodes[t->n_nodes];
    cc_tensor *out = tensor_new(t);
    if (!out) return NULL;

    /* The output's shape and layout are part of the cached state: on a key
     * hit, infer() is skipped and the previous output descriptor reused. */
    const int nt = omp_get_max_threads();
    int hit = key_matches(t, n, op, in, n_in, args);
    if (!hit && n->state) {
        tape_op_def(n->op)->state_free(n->state);
        n->state = NULL;
    }
    n->op = op;
    n->n_in = n_in;
    for (int i = 0; i < n_in; i++) n->in[i] = in[i];
    n->args = *args;
    n->out = out;
    if (hit) {
        out->ndim = n->out_ndim;
        memcpy(out->dims, n->out_dims, sizeof out->dims);
        out->md = n->out_md;
    } else {
        n->key_valid = 0;
        n->serial = 0;
        t->n_builds++;
        if (def->infer(t, n, out, &t->status)) return NULL;
        if (nt > 1 && node_is_small(n)) {
            /* build again for one thread: oneDNN fixes a primitive's split
             * of the work (and forks that many threads) when creating it */
            if (n->state) def->state_free(n->state);
            n->state = NULL;
            omp_set_num_threads(1);
            const int rc = def->infer(t, n, out, &t->status);
            omp_set_num_threads(nt);
            if (rc) return NULL;
            n->serial = 1;
        }
        n->key_valid = 1;
        n->out_ndim = out->ndim;
        memcpy(n->out_dims, out->dims, sizeof out->dims);
        n->out_md = out->md;
        n->key_n_in = n_in;
        n->key_training = t->training;
        n->key_threads = nt;
        n->key_bf16 = t->ctx->bf16;
        n->key_args = *args;
        for (int i = 0; i < n_in; i++) n->key_md[i] = in[i]->md;
    }
    out->dtype = CC_F32;
    out->data = arena_alloc(&t->arena, tensor_bytes(out), &t->status);
    if (!out->data) return NULL;
    out->creator = n;
    out->requires_grad = 0;
    if (t->training && def->backward)
        for (int i = 0; i < n_in; i++) out->requires_grad |= in[i]->requires_grad;

    /* reorder_run() books its own time under OPK_REORDER; subtract it from
     * the op's time so no second is counted twice. */
    double t0 = 0, r0 = 0;
    if (t->profile) r0 = t->prof_seconds[OPK_REORDER][0], t0 = omp_get_wtime();
    if (node_run(def->forward, t, n, nt)) {
        n->key_valid = 0;
        return NULL;
    }
    if (t->profile) {
        const double dt = omp_get_wtime() - t0;
        t->prof_seconds[def->kind][0] += dt - (t->prof_seconds[OPK_REORDER][0] - r0);
        if (t->prof_node && t->n_nodes < t->prof_node_cap) t->prof_node[t->n_nodes][0] += dt;
    }
    t->n_nodes++;
    if (t->training) t->n_recorded++;
    return out;
}

/* Gradient buffers with free_grads: each has a 64-byte header holding its
 * capacity, and released ones form a free list threaded through those
 * headers; a request takes the smallest free buffer that fits (best fit),
 * else new arena memory.  The same graph makes the same requests every
 * step, so the arena's high-water mark is stable and steps stay free of
 * heap allocations. */
typedef struct grad_hdr {
    struct grad_hdr *next;
    size_t cap;
} grad_hdr;
#define GRAD_HDR 64

static float *grad_alloc(cc_tape *t, size_t bytes, cc_status *st)
{
    if (!t->free_grads) return arena_alloc(&t->arena, bytes, st);
    grad_hdr **best = NULL;
    for (grad_hdr **p = (grad_hdr **)&t->grad_free; *p; p = &(*p)->next)
        if ((*p)->cap >= bytes && (!best || (*p)->cap < (*best)->cap)) best = p;
    if (best) {
        grad_hdr *h = *best;
        *best = h->next;
        return (float *)((char *)h + GRAD_HDR);
    }
    char *m = arena_alloc(&t->arena, bytes + GRAD_HDR, st);
    if (!m) return NULL;
    ((grad_hdr *)m)->cap = bytes;
    return (float *)(m + GRAD_HDR);
}

static void grad_release(cc_tape *t, float *p)
{
    grad_hdr *h = (grad_hdr *)((char *)p - GRAD_HDR);
    h->next = t->grad_free;
    t->grad_free = h;
}

float *tape_grad_begin(cc_tape *t, cc_tensor *x, cc_status *st)
{
    if (!x->requires_grad) return NULL;
    size_t bytes = tensor_bytes(x);
    if (x->grad_ready < 0) {    /* released by an earlier backward */
        x->grad = NULL;
        x->grad_ready = 0;
    }
    if (!x->grad) {
        x->grad = x->is_param || !x->creator ? arena_alloc(&t->arena, bytes, st)
                                             : grad_alloc(t, bytes, st);
        x->grad_ready = 0;
        if (!x->grad) return NULL;
    }
    if (!x->grad_ready) return x->grad;
    return grad_alloc(t, bytes, st);
}

void tape_grad_end(cc_tape *t, cc_tensor *x, float *buf)
{
    if (!buf) return;
    if (buf != x->grad) {
        op_accumulate(x->grad, buf, tensor_bytes(x) / sizeof(float));
        if (t->free_grads) grad_release(t, buf);
    }
    x->grad_ready = 1;
}

static int check_backward_ready(cc_tape *t, cc_tensor *y)
{
    if (t->status.failed) return -1;
    if (!y) return status_set(&t->status, "backward: output is NULL");
    if (!t->training || t->n_recorded == 0)
        return status_set(&t->status, "backward: the tape recorded nothing (inference mode)");
    if (!y->requires_grad)
        return status_set(&t->status, "backward: the output does not depend on anything "
                                      "that requires a gradient");
    return 0;
}

/* Run node n's backward, with the profile's bookkeeping and (free_grads)
 * the release of its output's gradient. */
static int backward_node(cc_tape *t, cc_node *n)
{
    const cc_op_def *def = tape_op_def(n->op);
    double t0 = 0, r0 = 0;
    if (t->profile) r0 = t->prof_seconds[OPK_REORDER][0], t0 = omp_get_wtime();
    if (node_run(def->backward, t, n, omp_get_max_threads())) return -1;
    if (t->profile) {
        /* reorder_run() booked its time as forward: move it to backward */
        const double r = t->prof_seconds[OPK_REORDER][0] - r0;
        t->prof_seconds[OPK_REORDER][0] = r0;
        t->prof_seconds[OPK_REORDER][1] += r;
        const double dt = omp_get_wtime() - t0;
        t->prof_seconds[def->kind][1] += dt - r;
        const int k = (int)(n - t->nodes);
        if (t->prof_node && k < t->prof_node_cap) t->prof_node[k][1] += dt;
    }
    /* n was the only reader of its output's gradient */
    if (t->free_grads && !n->out->is_param) {
        grad_release(t, n->out->grad);
        n->out->grad = NULL;
        n->out->grad_ready = -1;
    }
    return 0;
}

/* The parameter tensors that recorded nodes read and that want a gradient,
 * each once, in the order of the earliest node reading them: par[k] is
 * first read by node first[k] (non-decreasing in k).  A parameter's
 * gradient is final once backward has passed that node, since backward
 * runs the nodes in reverse.  Arrays in the step's arena. */
typedef struct param_uses {
    cc_tensor **par;
    int *first;
    int n;
} param_uses;

static int param_uses_find(cc_tape *t, param_uses *u)
{
    size_t cap = 1;
    for (int i = 0; i < t->n_nodes; i++) cap += (size_t)t->nodes[i].n_in;
    u->n = 0;
    u->par = arena_alloc(&t->arena, sizeof *u->par * cap, &t->status);
    u->first = arena_alloc(&t->arena, sizeof *u->first * cap, &t->status);
    if (!u->par || !u->first) return -1;
    for (int i = 0; i < t->n_nodes; i++) {
        const cc_node *nd = &t->nodes[i];
        for (int j = 0; j < nd->n_in; j++) {
            cc_tensor *x = nd->in[j];
            if (!x->is_param || !x->requires_grad || !x->grad) continue;
            /* linear search: a model has a few hundred parameter tensors */
            int seen = 0;
            for (int k = 0; k < u->n && !seen; k++) seen = u->par[k] == x;
            if (seen) continue;
            u->par[u->n] = x;
            u->first[u->n++] = i;
        }
    }
    return 0;
}

static int walk_backward(cc_tape *t)
{
    cc_ctx *c = t->ctx;
    param_uses u = {NULL, NULL, 0};
    int next = -1;      /* u.par[0..next] are not final yet */
    if (c->grad_event) {
        if (param_uses_find(t, &u)) return -1;
        for (int k = 0; k < u.n; k++)
            if (c->grad_event(c->grad_event_user, CC_GRAD_PENDING, u.par[k]->grad,
                              (size_t)tensor_numel(u.par[k]), &t->status))
                return -1;
        next = u.n - 1;
    }
    for (int i = t->n_nodes - 1; i >= 0; i--) {
        cc_node *n = &t->nodes[i];
        if (n->out->requires_grad && n->out->grad_ready > 0 && backward_node(t, n)) return -1;
        if (!c->grad_event) continue;
        for (; next >= 0 && u.first[next] >= i; next--)
            if (c->grad_event(c->grad_event_user, CC_GRAD_FINAL, u.par[next]->grad,
                              (size_t)tensor_numel(u.par[next]), &t->status))
                return -1;
        if (c->grad_event(c->grad_event_user, CC_GRAD_POLL, NULL, 0, &t->status)) return -1;
    }
    return 0;
}

int tape_backward(cc_tape *t, cc_tensor *loss)
{
    if (check_backward_ready(t, loss)) return -1;
    if (tensor_numel(loss) != 1) {
        char b[64];
        return status_set(&t->status, "backward: loss must have one element, got shape %s",
                          tensor_shape_str(loss, b, sizeof b));
    }
    float *g = tape_grad_begin(t, loss, &t->status);
    if (!g) return -1;
    memset(g, 0, tensor_bytes(loss));
    g[0] = 1.0f;
    tape_grad_end(t, loss, g);
    return walk_backward(t);
}

static int write_buffer(cc_tape *t, const cc_tensor *x, const float *src, float *dst);

int tape_backward_seed(cc_tape *t, cc_tensor *y, const float *seed)
{
    if (check_backward_ready(t, y)) return -1;
    float *g = tape_grad_begin(t, y, &t->status);
    if (!g || write_buffer(t, y, seed, g)) return -1;
    tape_grad_end(t, y, g);
    return walk_backward(t);
}

/* Moving values between a tensor's layout and plain order: plain tensors
 * are copied directly; others go through a one-off reorder (allocates: for
 * results and tests, not for a training step's hot path). */
static int reorder_once(cc_tape *t, const dnnl_memory_desc_t *from_md, const void *src,
                        const dnnl_memory_desc_t *to_md, void *dst)
{
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    dnnl_memory_t ms = NULL, md = NULL;
    dnnl_status_t s = dnnl_reorder_primitive_desc_create(&pd, from_md, t->ctx->engine, to_md,
                                                         t->ctx->engine, NULL);
    if (s == dnnl_success) s = dnnl_primitive_create(&prim, pd);
    if (s == dnnl_success) s = dnnl_memory_create(&ms, from_md, t->ctx->engine, (void *)src);
    if (s == dnnl_success) s = dnnl_memory_create(&md, to_md, t->ctx->engine, dst);
    if (s == dnnl_success) {
        dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, ms}, {DNNL_ARG_TO, md}};
        s = dnnl_primitive_execute(prim, t->ctx->stream, 2, a);
    }
    if (ms) dnnl_memory_destroy(ms);
    if (md) dnnl_memory_destroy(md);
    if (prim) dnnl_primitive_destroy(prim);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (s != dnnl_success) return op_dnnl_fail(&t->status, "tape", "reorder", s);
    return 0;
}

static int read_buffer(cc_tape *t, const cc_tensor *x, const float *src, float *dst)
{
    if (tensor_is_plain(x)) {
        memcpy(dst, src, (size_t)tensor_numel(x) * sizeof(float));
        return 0;
    }
    dnnl_memory_desc_t plain;
    tensor_md_plain(&plain, x->ndim, x->dims);
    return reorder_once(t, &x->md, src, &plain, dst);
}

static int write_buffer(cc_tape *t, const cc_tensor *x, const float *src, float *dst)
{
    if (tensor_is_plain(x)) {
        memcpy(dst, src, (size_t)tensor_numel(x) * sizeof(float));
        return 0;
    }
    dnnl_memory_desc_t plain;
    tensor_md_plain(&plain, x->ndim, x->dims);
    return reorder_once(t, &plain, src, &x->md, dst);
}

int tape_read(cc_tape *t, cc_tensor *x, float *dst)
{
    if (t->status.failed || !x) return -1;
    return read_buffer(t, x, x->data, dst);
}

int tape_read_grad(cc_tape *t, cc_tensor *x, float *dst)
{
    if (t->status.failed || !x) return -1;
    if (x->grad_ready < 0)
        return status_set(&t->status, "tape_read_grad: the gradient of this intermediate "
                                      "tensor was recycled during backward (free_grads)");
    if (!x->grad || !x->grad_ready) {
        memset(dst, 0, sizeof(float) * (size_t)tensor_numel(x));
        return 0;
    }
    return read_buffer(t, x, x->grad, dst);
}
