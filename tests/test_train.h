/* test_train.h - what test_train.c shares with test_train_eval.c: the
 * fixture's temporary directory and data set, and a tiny configuration. */
#ifndef CC_TEST_TRAIN_H
#define CC_TEST_TRAIN_H

#include <check.h>
#include <stdint.h>

#include "src/run/exp_config.h"

extern char dir[64];    /* the test's temporary directory (fixture) */
extern char data[128];  /* dir/sim.h5 */

/* A simulated set at path: h x w stored, stains (bit 0 w1, bit 1 w2). */
void make_data_at(const char *path, int h, int w, int stains);
/* The same with `sites` sites per (count, focus) and simulation seed `seed`
 * (0: the simulator's default, as make_data_at). */
void make_data_seeded(const char *path, int h, int w, int stains, int sites, uint64_t seed);
/* make_data_at(data, 64, 64, w1). */
void make_data(void);
/* Tiny FPN + counter on `data`, run directory dir/run. */
void tiny_config(cc_config *c, const char *run, int fpn_epochs);

/* test_train_eval.c: evaluate, evaluate --on/--tag, sigma calibration. */
void train_add_eval_tests(TCase *tc);

#endif
