/* hostileutil.h - shared by the two source files of tests/test_hostile
 * (defined in test_hostile.c). */
#ifndef CC_HOSTILEUTIL_H
#define CC_HOSTILEUTIL_H

#include <check.h>
#include <string.h>

/* The test case's directory (checked fixture setup/teardown; setup also
 * silences HDF5's error stack printing). */
extern char dir[64];
void setup(void);
void teardown(void);

/* Write text to path (the test fails when it cannot). */
void write_text(const char *path, const char *text);

#define ck_assert_msg_has(st, s) \
    ck_assert_msg(strstr((st)->msg, (s)) != NULL, "message '%s' lacks '%s'", (st)->msg, (s))


/* Item 11: no HDF5 object (file, group, data set, attribute, type, space)
 * may stay open after a reader returned, failed or not. */
#define ck_assert_h5_closed()                                                          \
    do {                                                                               \
        ssize_t open_ids = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);                 \
        ck_assert_msg(open_ids == 0, "%zd HDF5 objects left open", open_ids);          \
    } while (0)

/* Add the "output" test case (tests/test_hostile_output.c). */
void hostile_add_output_case(Suite *s);

#endif
