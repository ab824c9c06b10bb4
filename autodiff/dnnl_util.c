/* dnnl_util.c - the helpers op.h declares for op authors: oneDNN
 * primitive set-up (attributes with a user scratchpad, descriptor ->
 * primitive descriptor -> primitive), execution with the tape's
 * scratchpad, memory objects, reorders, and the shared error messages.
 * Kept apart from the tape core (tape.c), which records and
 * differentiates. */
#include "autodiff/op.h"

#include <assert.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

dnnl_primitive_attr_t tape_attr_new(void)
{
    dnnl_primitive_attr_t a = NULL;
    if (dnnl_primitive_attr_create(&a) != dnnl_success) return NULL;
    dnnl_primitive_attr_set_scratchpad_mode(a, dnnl_scratchpad_mode_user);
    return a;
}

static const char *pd_impl(const_dnnl_primitive_desc_t pd)
{
    const char *impl = NULL;
    return dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success && impl
               ? impl
               : "";
}

int op_pd_is_ref(const_dnnl_primitive_desc_t pd)
{
    return strncmp(pd_impl(pd), "ref", 3) == 0;
}

int tape_prim_create(cc_tape *t, const_dnnl_primitive_desc_t pd, dnnl_primitive_t *prim,
                     dnnl_memory_t *scratch_mem, const char *what, cc_status *st)
{
    DNNL_TRY(st, what, "primitive creation", dnnl_primitive_create(prim, pd));
    if (op_pd_is_ref(pd)) {
        t->n_ref_prims++;
        snprintf(t->ref_what, sizeof t->ref_what, "%s (%s)", what, pd_impl(pd));
    }
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t need = smd ? dnnl_memory_desc_get_size(smd) : 0;
    *scratch_mem = NULL;
    if (need > t->scratch_size) {
        ctx_release(t->ctx, t->scratch, t->scratch_size);
        t->scratch = ctx_alloc(t->ctx, need, st);
        t->scratch_size = t->scratch ? need : 0;
        if (!t->scratch) return -1;
    }
    if (need) DNNL_TRY(st, what, "scratchpad memory",
                       dnnl_memory_create(scratch_mem, smd, t->ctx->engine, DNNL_MEMORY_NONE));
    return 0;
}

dnnl_status_t tape_pd_create(cc_tape *t, dnnl_primitive_desc_t *pd, const_dnnl_op_desc_t desc,
                             const_dnnl_primitive_desc_t hint)
{
    dnnl_primitive_attr_t attr = tape_attr_new();
    dnnl_status_t e = dnnl_primitive_desc_create(pd, desc, attr, t->ctx->engine, hint);
    dnnl_primitive_attr_destroy(attr);
    return e;
}

int tape_prim_make(cc_tape *t, const_dnnl_op_desc_t desc, const_dnnl_primitive_desc_t hint,
                   dnnl_primitive_desc_t *pd, dnnl_primitive_t *prim, dnnl_memory_t *scratch_mem,
                   const char *op, const char *pd_what, cc_status *st)
{
    dnnl_status_t e = tape_pd_create(t, pd, desc, hint);
    if (e != dnnl_success) return op_dnnl_fail(st, op, pd_what, e);
    return tape_prim_create(t, *pd, prim, scratch_mem, op, st);
}

int tape_exec(cc_tape *t, dnnl_primitive_t prim, dnnl_memory_t scratch_mem, int nargs,
              dnnl_exec_arg_t *args, const char *what, cc_status *st)
{
    dnnl_exec_arg_t a[16];
    assert(nargs < 16);
    memcpy(a, args, sizeof(dnnl_exec_arg_t) * (size_t)nargs);
    if (scratch_mem) {
        mem_bind(scratch_mem, t->scratch);
        a[nargs].arg = DNNL_ARG_SCRATCHPAD;
        a[nargs].memory = scratch_mem;
        nargs++;
    }
    DNNL_TRY(st, what, "execution", dnnl_primitive_execute(prim, t->ctx->stream, nargs, a));
    return 0;
}

int tape_mem_create(cc_tape *t, dnnl_memory_t *m, const dnnl_memory_desc_t *md, cc_status *st)
{
    DNNL_TRY(st, "memory", "memory object creation",
             dnnl_memory_create(m, md, t->ctx->engine, DNNL_MEMORY_NONE));
    return 0;
}

int op_dnnl_fail(cc_status *st, const char *op, const char *what, dnnl_status_t s)
{
    return status_set(st, "%s: oneDNN %s failed (%s)", op, what, ctx_dnnl_status_name(s));
}

int op_shape_fail(cc_status *st, const char *op, const char *what, const cc_tensor *got,
                  const cc_tensor *expected)
{
    char a[64], b[64];
    return status_set(st, "%s: %s (got %s, expected %s)", op, what,
                      tensor_shape_str(got, a, sizeof a), tensor_shape_str(expected, b, sizeof b));
}

void op_accumulate(float *dst, const float *src, size_t n)
{
    /* Small sums stay serial: a parallel region costs a barrier, which on a
     * busy machine can cost a scheduler time slice (issue 13). */
#pragma omp parallel for schedule(static) if (n >= 65536)
    for (size_t i = 0; i < n; i++) dst[i] += src[i];
}

int reorder_make(cc_tape *t, cc_reorder *r, const dnnl_memory_desc_t *from,
                 const dnnl_memory_desc_t *to, const char *what, cc_status *st)
{
    memset(r, 0, sizeof *r);
    if (dnnl_memory_desc_equal(from, to)) return 0;
    r->needed = 1;
    dnnl_primitive_desc_t pd = NULL;
    DNNL_TRY(st, what, "reorder descriptor",
             dnnl_reorder_primitive_desc_create(&pd, from, t->ctx->engine, to, t->ctx->engine, NULL));
    dnnl_status_t s = dnnl_primitive_create(&r->prim, pd);
    dnnl_primitive_desc_destroy(pd);
    if (s != dnnl_success) return op_dnnl_fail(st, what, "reorder creation", s);
    if (tape_mem_create(t, &r->from, from, st) || tape_mem_create(t, &r->to, to, st)) return -1;
    return 0;
}

int reorder_run(cc_tape *t, cc_reorder *r, const void *from, void *to, const char *what,
                cc_status *st)
{
    if (!r->needed) return 0;
    mem_bind(r->from, (void *)from);
    mem_bind(r->to, to);
    dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, r->from}, {DNNL_ARG_TO, r->to}};
    double t0 = t->profile ? omp_get_wtime() : 0;
    DNNL_TRY(st, what, "reorder", dnnl_primitive_execute(r->prim, t->ctx->stream, 2, a));
    if (t->profile) t->prof_seconds[OPK_REORDER][0] += omp_get_wtime() - t0;
    return 0;
}

void reorder_free(cc_reorder *r)
{
    if (r->prim) dnnl_primitive_destroy(r->prim);
    if (r->from) dnnl_memory_destroy(r->from);
    if (r->to) dnnl_memory_destroy(r->to);
    memset(r, 0, sizeof *r);
}

int op_exec_weighted(cc_tape *t, dnnl_primitive_t prim, dnnl_memory_t scratch_mem,
                     const dnnl_memory_t m[4], void *const buf[4], const char *what,
                     cc_status *st)
{
    static const int args[4] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST, DNNL_ARG_BIAS};
    dnnl_exec_arg_t a[4];
    const int na = buf[3] ? 4 : 3;
    for (int i = 0; i < na; i++) {
        mem_bind(m[i], buf[i]);
        a[i] = (dnnl_exec_arg_t){args[i], m[i]};
    }
    return tape_exec(t, prim, scratch_mem, na, a, what, st);
}

int op_exec_weights_grad(cc_tape *t, dnnl_primitive_t prim, dnnl_memory_t scratch_mem,
                         dnnl_exec_arg_t a[4], dnnl_memory_t m_db, cc_tensor *w, cc_tensor *b,
                         float *gw, float *dw, cc_reorder *r_dw, const char *what,
                         const char *what_dw, cc_status *st)
{
    float *gb = NULL;
    int na = 3;
    if (b) {
        gb = b->requires_grad ? tape_grad_begin(t, b, st) : NULL;
        float *db = gb ? gb : tape_alloc(t, sizeof(float) * (size_t)b->dims[0], st);
        if (!db) return -1;
        mem_bind(m_db, db);
        na = 4;
    }
    if (tape_exec(t, prim, scratch_mem, na, a, what, st)) return -1;
    return op_weights_grad_end(t, r_dw, dw, w, gw, b, gb, what_dw, st);
}

int op_weights_grad_end(cc_tape *t, cc_reorder *r_dw, const float *dw, cc_tensor *w, float *gw,
                        cc_tensor *b, float *gb, const char *what_dw, cc_status *st)
{
    if (gw) {
        if (r_dw && reorder_run(t, r_dw, dw, gw, what_dw, st)) return -1;
        tape_grad_end(t, w, gw);
    }
    if (gb) tape_grad_end(t, b, gb);
    return 0;
}
