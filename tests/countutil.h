/* countutil.h - shared fixture of the count/saliency tests (test_count.c,
 * test_count_saliency.c): a temporary run directory with a tiny randomly
 * initialised FPN + counter and a few TIFFs. */
#ifndef CC_TEST_COUNTUTIL_H
#define CC_TEST_COUNTUTIL_H

#include <check.h>
#include <stdint.h>

#include "src/run/exp_config.h"

/* Models' input size: H, W divisible by 2^depth (4) and the mask (H/2 x
 * W/2) at least 32 x 32 for vgg11's five max-pools. */
#define H 64
#define W 96

typedef struct run_fx {
    cc_config cfg;
    char sub[64];
} run_fx;

/* "<tmp dir>/<sub>/<name>" (name "" gives the sub directory) in one of 16
 * rotating buffers. */
char *tpath(const char *sub, const char *name);
int file_exists(const char *p);
/* 1 when no "*.tmp.*" file is left anywhere under dir. */
int no_temporaries(const char *dir);

/* Make <tmp>/<sub>/run with config.ini and fpn_best.h5 / counter_best.h5
 * of a tiny FPN (width 4, depth 2) + vgg11 counter (width_div 16) reading
 * counter_input, and images a.tif (8-bit 120x80), b.tif (16-bit 150x100),
 * c.tif (8-bit, exactly W x H) in <sub>/img.  The test images count about
 * 0.1 to 0.2 (final ReLU active). */
void make_run(run_fx *fx, const char *sub, const char *counter_input);
/* make_run with counter.arch = arch (a density counter's count is about 2,
 * its bias raised, not tuned to 0.1-0.2). */
void make_run_arch(run_fx *fx, const char *sub, const char *counter_input, const char *arch);

/* The count (and sigma, if non-NULL) of one TIFF by the training code's
 * counting path (counting_input + counter_forward, inference tape). */
double reference_count(const run_fx *fx, const char *tif, double *sigma);

/* Read an 8-bit gray PNG; returns malloc'ed pixels. */
uint8_t *read_png(const char *path, int *w, int *h);

/* Add a test case with its own temporary directory. */
void count_add_case(Suite *s, const char *name, const TTest *test);

/* test_count_saliency.c */
void saliency_add_tests(Suite *s);
/* test_count_ood.c */
void count_ood_add_tests(Suite *s);

#endif
