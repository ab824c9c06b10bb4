/* test_tape_memory.c - the engine's memory and optimizer fast paths:
 * gradient recycling (tape free_grads), the arena's overflow policy, the
 * vectorised Adam update, and steady-state steps without heap allocations
 * on the FPN-like conv -> BN -> LeakyReLU -> upsample/add graph; and the
 * backward hook that reports finished parameter gradients (ctx.grad_event,
 * for the MPI overlap). */
#include <check.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autodiff/arena.h"
#include "autodiff/ops.h"
#include "autodiff/optim.h"
#include "autodiff/params.h"
#include "tests/testutil.h"
#include "tests/testmain.h"

typedef struct net {
    cc_ctx ctx;
    cc_params P;
    int w1, b1, g1, be1, m1, v1, w2, w3;
    cc_tape t;
} net;

static void net_init(net *n)
{
    ck_assert_int_eq(ctx_init(&n->ctx, 1, NULL), 0);
    params_init(&n->P, &n->ctx);
    cc_params *P = &n->P;
    n->w1 = params_add(P, "c1/weight", 4, (int64_t[]){16, 2, 3, 3}, PARAM_TRAINABLE, NULL);
    n->b1 = params_add(P, "c1/bias", 1, (int64_t[]){16}, PARAM_TRAINABLE, NULL);
    n->g1 = params_add(P, "bn/weight", 1, (int64_t[]){16}, PARAM_TRAINABLE, NULL);
    n->be1 = params_add(P, "bn/bias", 1, (int64_t[]){16}, PARAM_TRAINABLE, NULL);
    n->m1 = params_add(P, "bn/running_mean", 1, (int64_t[]){16}, PARAM_BUFFER, NULL);
    n->v1 = params_add(P, "bn/running_var", 1, (int64_t[]){16}, PARAM_BUFFER, NULL);
    n->w2 = params_add(P, "c2/weight", 4, (int64_t[]){16, 16, 3, 3}, PARAM_TRAINABLE, NULL);
    n->w3 = params_add(P, "c3/weight", 4, (int64_t[]){1, 16, 3, 3}, PARAM_TRAINABLE, NULL);
    ck_assert_int_eq(params_finalize(P, NULL), 0);
    params_init_uniform(P, n->w1, 0.3f, 1, 1);
    params_init_uniform(P, n->b1, 0.3f, 1, 2);
    params_fill(P, n->g1, 1.0f);
    params_fill(P, n->v1, 1.0f);
    params_init_uniform(P, n->w2, 0.1f, 1, 3);
    params_init_uniform(P, n->w3, 0.1f, 1, 4);
    tape_init(&n->t, &n->ctx, 1);
}

static void net_free(net *n)
{
    tape_free(&n->t);
    params_free(&n->P);
    ctx_free(&n->ctx);
}

/* conv -> BN -> LeakyReLU -> conv (+ its 2x-upsampled avg-pool: a tensor
 * with two consumers) -> one-channel conv -> sum; x gets a gradient too. */
static cc_tensor *net_forward(net *n, const float *xv, cc_tensor **x_out, cc_tensor **mid)
{
    cc_tape *t = &n->t;
    cc_params *P = &n->P;
    cc_tensor *x = tape_input(t, 4, (int64_t[]){2, 2, 12, 16}, xv, 1);
    cc_tensor *h = op_conv2d(t, x, params_tensor(P, n->w1), params_tensor(P, n->b1), 1, 1);
    h = op_batch_norm(t, h, params_tensor(P, n->g1), params_tensor(P, n->be1),
                      params_tensor(P, n->m1), params_tensor(P, n->v1), NULL, 0.1f, 1e-5f);
    h = op_leaky_relu(t, h, 0.01f);
    cc_tensor *u = op_conv2d(t, h, params_tensor(P, n->w2), NULL, 1, 1);
    u = op_add(t, u, op_upsample2x(t, op_avg_pool2d(t, u, 2)));
    cc_tensor *y = op_conv2d(t, u, params_tensor(P, n->w3), NULL, 1, 1);
    *x_out = x;
    if (mid) *mid = u;
    return op_sum(t, y);
}

/* Gradients with recycling are bit-identical to those without; reading a
 * recycled intermediate gradient fails; the arena high-water mark drops. */
START_TEST(test_free_grads_same_gradients)
{
    float xv[2 * 2 * 12 * 16], gx[2][2 * 2 * 12 * 16];
    tu_fill_uniform(xv, 768, -1, 1, 7);
    float *gp[2];
    size_t hw[2];
    for (int mode = 0; mode < 2; mode++) {
        net n;
        net_init(&n);
        n.t.free_grads = mode;
        for (int step = 0; step < 2; step++) {
            tape_reset(&n.t);
            params_zero_grad(&n.P);
            cc_tensor *x, *mid, *L = net_forward(&n, xv, &x, &mid);
            ck_assert_msg(L != NULL, "%s", tape_error(&n.t));
            ck_assert_int_eq(tape_backward(&n.t, L), 0);
            ck_assert_int_eq(tape_read_grad(&n.t, x, gx[mode]), 0);
            float tmp[2 * 16 * 12 * 16];
            int rc = tape_read_grad(&n.t, mid, tmp);
            if (mode) {
                ck_assert_int_eq(rc, -1);
                ck_assert(strstr(tape_error(&n.t), "recycled"));
            } else {
                ck_assert_int_eq(rc, 0);
            }
        }
        gp[mode] = malloc(sizeof(float) * n.P.n_train);
        memcpy(gp[mode], n.P.grad, sizeof(float) * n.P.n_train);
        hw[mode] = n.t.arena.high_water;
        if (mode) ck_assert_int_eq(memcmp(gp[0], gp[1], sizeof(float) * n.P.n_train), 0);
        net_free(&n);
    }
    ck_assert_int_eq(memcmp(gx[0], gx[1], sizeof gx[0]), 0);
    ck_assert_msg(hw[1] < hw[0], "arena high-water %zu with recycling, %zu without", hw[1], hw[0]);
    free(gp[0]);
    free(gp[1]);
}
END_TEST

/* With recycling, identical steps allocate nothing after the first two. */
START_TEST(test_free_grads_steady_state)
{
    float xv[768];
    tu_fill_uniform(xv, 768, -1, 1, 8);
    net n;
    net_init(&n);
    n.t.free_grads = 1;
    cc_optim opt;
    optim_adam_init(&opt, 1e-3f, 0.9f, 0.999f, 1e-8f, 0);
    size_t allocs = 0, hw = 0;
    for (int step = 0; step < 6; step++) {
        tape_reset(&n.t);
        params_zero_grad(&n.P);
        cc_tensor *x, *L = net_forward(&n, xv, &x, NULL);
        ck_assert_msg(L != NULL, "%s", tape_error(&n.t));
        ck_assert_int_eq(tape_backward(&n.t, L), 0);
        ck_assert_int_eq(optim_step(&opt, &n.P, NULL), 0);
        if (step == 2) allocs = n.ctx.n_allocs, hw = n.t.arena.high_water;
    }
    ck_assert_uint_eq(n.ctx.n_allocs, allocs);
    ck_assert_uint_eq(n.t.arena.high_water, hw);
    net_free(&n);
}
END_TEST

static int arena_blocks(const cc_arena *a)
{
    int k = 0;
    for (const cc_arena_block *b = a->head; b; b = b->next) k++;
    return k;
}

/* A request larger than a block gets its own block behind the head, so the
 * head keeps serving small requests; reset coalesces to one block. */
START_TEST(test_arena_big_request_policy)
{
    cc_ctx ctx;
    ck_assert_int_eq(ctx_init(&ctx, 1, NULL), 0);
    cc_arena a;
    arena_init(&a, &ctx);
    ck_assert_ptr_nonnull(arena_alloc(&a, 1000, NULL));
    char *head_mem = a.head->mem;
    ck_assert_ptr_nonnull(arena_alloc(&a, (size_t)20 << 20, NULL));
    char *small = arena_alloc(&a, 1000, NULL);
    ck_assert_int_eq(arena_blocks(&a), 2);
    ck_assert_ptr_eq(small, head_mem + 1024);   /* from the first block */
    arena_reset(&a);
    ck_assert_int_eq(arena_blocks(&a), 1);
    ck_assert_uint_ge(a.head->cap, ((size_t)20 << 20) + 2048);
    arena_free(&a);
    ctx_free(&ctx);
}
END_TEST

/* The vectorised Adam computes exactly the scalar float formula, tails
 * included, in each ISA variant the CPU runs (isa.h); the others SKIP. */
static void check_adam_bit_exact(cc_isa isa)
{
    cc_ctx ctx;
    ck_assert_int_eq(ctx_init(&ctx, 2, NULL), 0);
    cc_params P;
    params_init(&P, &ctx);
    const int n = 40007;    /* several chunks and an odd tail */
    params_add(&P, "a", 1, (int64_t[]){n}, PARAM_TRAINABLE, NULL);
    params_add(&P, "b", 1, (int64_t[]){3}, PARAM_TRAINABLE, NULL);
    ck_assert_int_eq(params_finalize(&P, NULL), 0);
    const size_t tot = P.n_train;
    float *w = malloc(sizeof(float) * tot), *m = calloc(tot, sizeof(float));
    float *v = calloc(tot, sizeof(float)), *g = malloc(sizeof(float) * tot);
    tu_fill_uniform(P.value, (int64_t)tot, -1, 1, 9);
    memcpy(w, P.value, sizeof(float) * tot);
    cc_optim o;
    optim_adam_init(&o, 1e-2f, 0.9f, 0.999f, 1e-8f, 1e-3f);
    o.isa = isa;
    for (int step = 1; step <= 3; step++) {
        tu_fill_uniform(P.grad, (int64_t)tot, -1, 1, 10 + step);
        memcpy(g, P.grad, sizeof(float) * tot);
        ck_assert_int_eq(optim_step(&o, &P, NULL), 0);
        const double bc1 = 1.0 - pow(0.9f, step), bc2 = 1.0 - pow(0.999f, step);
        const float ss = (float)(1e-2f / bc1), ib = (float)(1.0 / sqrt(bc2));
        for (int p = 0; p < P.n; p++)   /* the slabs may pad between tensors */
            for (size_t i = P.p[p].offset; i < P.p[p].offset + P.p[p].numel; i++) {
                float gi = g[i] + 1e-3f * w[i];
                m[i] = 0.9f * m[i] + (1 - 0.9f) * gi;
                v[i] = 0.999f * v[i] + (1 - 0.999f) * gi * gi;
                w[i] -= ss * m[i] / (sqrtf(v[i]) * ib + 1e-8f);
            }
    }
    ck_assert_msg(!memcmp(w, P.value, sizeof(float) * tot) && !memcmp(m, P.m, sizeof(float) * tot) &&
                      !memcmp(v, P.v, sizeof(float) * tot),
                  "Adam variant %s differs from the scalar formula", isa_variant_name(isa));
    free(w), free(m), free(v), free(g);
    params_free(&P);
    ctx_free(&ctx);
}

START_TEST(test_adam_bit_exact)
{
    for (int isa = CC_ISA_SSE2; isa < CC_ISA_COUNT; isa++) {
        if (isa_cpu_has((cc_isa)isa)) check_adam_bit_exact((cc_isa)isa);
        else printf("SKIP: Adam variant %s: this CPU lacks it\n", isa_variant_name((cc_isa)isa));
    }
}
END_TEST

/* ctx.grad_event's record: every event in order, and a copy of each
 * gradient at the moment it was reported final. */
typedef struct grad_log {
    cc_params *P;
    float *snap;            /* n_train floats */
    int ev[512];
    ptrdiff_t at[512];      /* offset in the grad slab (-1: POLL) */
    int n;
    int fail_at;            /* return -1 at this event (-1: never) */
} grad_log;

static int log_event(void *user, int ev, float *g, size_t n, cc_status *st)
{
    grad_log *L = user;
    ck_assert_int_lt(L->n, 512);
    L->ev[L->n] = ev;
    L->at[L->n] = g ? g - L->P->grad : -1;
    if (ev == CC_GRAD_FINAL) memcpy(L->snap + (g - L->P->grad), g, n * sizeof *g);
    if (L->n++ == L->fail_at) return status_set(st, "hook refused event %d", L->n - 1);
    return 0;
}

/* The net's forward with w2 read by two nodes (conv, then conv again) and
 * b1 frozen: w2's gradient is final only after the first of them. */
static cc_tensor *net_forward_shared(net *n, const float *xv)
{
    cc_tape *t = &n->t;
    cc_params *P = &n->P;
    cc_tensor *x = tape_input(t, 4, (int64_t[]){2, 2, 12, 16}, xv, 0);
    cc_tensor *h = op_conv2d(t, x, params_tensor(P, n->w1), params_tensor(P, n->b1), 1, 1);
    h = op_batch_norm(t, h, params_tensor(P, n->g1), params_tensor(P, n->be1),
                      params_tensor(P, n->m1), params_tensor(P, n->v1), NULL, 0.1f, 1e-5f);
    h = op_leaky_relu(t, h, 0.01f);
    cc_tensor *u = op_conv2d(t, h, params_tensor(P, n->w2), NULL, 1, 1);
    u = op_leaky_relu(t, u, 0.01f);
    u = op_conv2d(t, u, params_tensor(P, n->w2), NULL, 1, 1);
    return op_sum(t, op_conv2d(t, u, params_tensor(P, n->w3), NULL, 1, 1));
}

/* ctx.grad_event: every trainable, unfrozen parameter that a node reads is
 * announced once before the walk and reported final once, after the walk
 * passed its first reader, holding then its final gradient (a parameter
 * read twice too); a poll follows every node; the hook changes no
 * gradient; its error stops backward with its message. */
START_TEST(test_grad_event_hook)
{
    float xv[768];
    tu_fill_uniform(xv, 768, -1, 1, 9);
    float *plain = NULL;
    for (int mode = 0; mode < 3; mode++) {  /* no hook, hook, failing hook */
        net n;
        net_init(&n);
        n.t.free_grads = 1;
        params_set_frozen(&n.P, "c1/bias", 1);
        grad_log L = {.P = &n.P, .n = 0, .fail_at = mode == 2 ? 3 : -1};
        L.snap = calloc(n.P.n_train, sizeof(float));
        if (mode) {
            n.ctx.grad_event = log_event;
            n.ctx.grad_event_user = &L;
        }
        tape_reset(&n.t);
        params_zero_grad(&n.P);
        cc_tensor *loss = net_forward_shared(&n, xv);
        ck_assert_msg(loss != NULL, "%s", tape_error(&n.t));
        const int rc = tape_backward(&n.t, loss);
        if (mode == 2) {
            ck_assert_int_eq(rc, -1);
            ck_assert_msg(strstr(tape_error(&n.t), "hook refused event 3"), "%s", tape_error(&n.t));
        } else {
            ck_assert_msg(rc == 0, "%s", tape_error(&n.t));
        }
        if (mode == 0) {
            plain = malloc(sizeof(float) * n.P.n_train);
            memcpy(plain, n.P.grad, sizeof(float) * n.P.n_train);
        } else if (mode == 1) {
            ck_assert_msg(!memcmp(plain, n.P.grad, sizeof(float) * n.P.n_train),
                          "the hook changed the gradients");
            const int want[5] = {n.w1, n.g1, n.be1, n.w2, n.w3};   /* forward order */
            int k = 0, polls = 0, finals = 0;
            for (; k < L.n && L.ev[k] == CC_GRAD_PENDING; k++)
                ck_assert_int_eq(L.at[k], (ptrdiff_t)n.P.p[want[k]].offset);
            ck_assert_int_eq(k, 5);
            for (; k < L.n; k++) {
                ck_assert_int_ne(L.ev[k], CC_GRAD_PENDING);
                if (L.ev[k] == CC_GRAD_POLL) {
                    polls++;
                    continue;
                }
                /* final in reverse forward order */
                ck_assert_int_lt(finals, 5);
                ck_assert_int_eq(L.at[k], (ptrdiff_t)n.P.p[want[4 - finals]].offset);
                finals++;
            }
            ck_assert_int_eq(finals, 5);
            ck_assert_int_eq(polls, n.t.n_nodes);
            for (int i = 0; i < 5; i++) {
                const cc_param *pp = &n.P.p[want[i]];
                ck_assert_msg(!memcmp(L.snap + pp->offset, n.P.grad + pp->offset,
                                      pp->numel * sizeof(float)),
                              "%s: gradient reported final before it was", pp->name);
            }
            /* the frozen bias got no gradient and no event */
            ck_assert_float_eq(n.P.grad[n.P.p[n.b1].offset], 0.0f);
        }
        free(L.snap);
        net_free(&n);
    }
    free(plain);
}
END_TEST

static Suite *memory_suite(void)
{
    Suite *s = suite_create("tape_memory");
    TCase *tc = tcase_create("memory");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_free_grads_same_gradients);
    tcase_add_test(tc, test_free_grads_steady_state);
    tcase_add_test(tc, test_arena_big_request_policy);
    tcase_add_test(tc, test_adam_bit_exact);
    tcase_add_test(tc, test_grad_event_hook);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(memory_suite());
}
