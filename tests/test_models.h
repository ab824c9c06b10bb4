/* test_models.h - shared by the test_models sources: a context + store +
 * tape bundle for one test, and the second file's test cases. */
#ifndef CC_TEST_MODELS_H
#define CC_TEST_MODELS_H

#include <check.h>
#include <stdlib.h>

#include "autodiff/ops.h"
#include "autodiff/params.h"

typedef struct env {
    cc_ctx ctx;
    cc_params P;
    cc_tape t;
    cc_status st;
} env;

static inline void env_open(env *e, int training)
{
    status_clear(&e->st);
    ck_assert_int_eq(ctx_init(&e->ctx, 0, &e->st), 0);
    params_init(&e->P, &e->ctx);
    tape_init(&e->t, &e->ctx, training);
}

static inline void env_close(env *e)
{
    tape_free(&e->t);
    params_free(&e->P);
    ctx_free(&e->ctx);
}

static inline float *read_all(cc_tape *t, cc_tensor *x)
{
    float *v = malloc(sizeof(float) * (size_t)tensor_numel(x));
    ck_assert_int_eq(tape_read(t, x, v), 0);
    return v;
}

/* test_models_train.c: whole-model gradient checks, learning, BN modes. */
void models_add_train_cases(Suite *s);

#endif
