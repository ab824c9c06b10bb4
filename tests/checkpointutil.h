/* checkpointutil.h - fixtures shared by the two source files of
 * tests/test_checkpoint (defined in test_checkpoint.c). */
#ifndef CC_CHECKPOINTUTIL_H
#define CC_CHECKPOINTUTIL_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>

#include "autodiff/optim.h"
#include "autodiff/params.h"
#include "src/run/checkpoint.h"

typedef struct spec {
    const char *name;
    int ndim;
    int64_t shape[4];
    cc_param_kind kind;
} spec;

typedef struct fixture {
    cc_ctx ctx;
    cc_params P;
} fixture;

typedef struct snap {
    float *value, *grad, *m, *v, *buf;
} snap;

/* A small model in the real naming scheme (BASE, N_BASE entries; the first
 * N_TRAIN_BASE are trainable) and the attributes save_base writes. */
#define N_BASE 15
#define N_TRAIN_BASE 9
#define N_ATTRS 5
extern const spec BASE[N_BASE];
extern const ckpt_attr ATTRS[N_ATTRS];

/* The test case's directory (unchecked fixture dir_setup/dir_teardown). */
extern char g_dir[64];

void store_build(fixture *f, const spec *s, int n);
void store_free(fixture *f);
void store_fill(cc_params *P, uint64_t seed);
float *dup_floats(const float *x, size_t n);
snap snap_take(const cc_params *P);
void snap_free(snap *s);
int same(const float *a, const float *b, size_t n);
int optim_same(const cc_optim *a, const cc_optim *b);
void dir_setup(void);
void dir_teardown(void);
void path_in(char *out, size_t len, const char *name);
int count_tmp(const char *dir);
char *file_read(const char *path, size_t *len);
void file_write(const char *path, const char *b, size_t n);
void save_base(const char *path, cc_optim *o, fixture *a);

/* Add the "atomic" test case (tests/test_checkpoint_atomic.c). */
void checkpoint_add_atomic_case(Suite *s);

#endif
