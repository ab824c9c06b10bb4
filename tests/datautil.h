/* datautil.h - helpers shared by the two source files of tests/test_data. */
#ifndef CC_DATAUTIL_H
#define CC_DATAUTIL_H

#include <check.h>

/* Temporary directory of the running test case (made by tmp_setup, removed
 * with everything in it by tmp_teardown; use as an unchecked fixture so the
 * parent process cleans up even when a forked test fails). */
extern char g_dir[256];
void tmp_setup(void);
void tmp_teardown(void);

/* g_dir + "/" + name, in one of 8 rotating static buffers. */
char *tpath(const char *name);

/* Number of entries in a directory (hidden ones included), or -1. */
int count_entries(const char *dir);

/* Add the import and loader test cases (tests/test_data_pipeline.c). */
void data_add_pipeline_cases(Suite *s);

/* Add the augmentation test case (tests/test_data_augment.c). */
void data_add_augment_cases(Suite *s);

/* Add the split test case (tests/test_data_split.c). */
void data_add_split_cases(Suite *s);

#endif
