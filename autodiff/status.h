/* status.h - error reporting shared by every cellcount module.
 *
 * Library code never exits: a function that can fail takes a `cc_status *`
 * (may be NULL when the caller does not care about the message) and returns
 * 0 on success or -1 on failure, after filling the status with a message
 * that names the file/op and the problem.  The first error wins: later
 * status_set() calls on an already-failed status are ignored, so a message
 * always describes the root cause rather than a consequence.
 */
#ifndef CC_STATUS_H
#define CC_STATUS_H

#include <stdarg.h>

#define CC_STATUS_MSG 1024

typedef struct cc_status {
    int failed;                 /* 0 = ok */
    char msg[CC_STATUS_MSG];    /* human-readable, NUL-terminated */
} cc_status;

/* Clear a status to "ok". */
void status_clear(cc_status *st);

/* Record an error (printf-style).  Returns -1 so callers can write
 * `return status_set(st, "...")`.  Safe with st == NULL. */
int status_set(cc_status *st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Same as status_set() with a va_list. */
int status_vset(cc_status *st, const char *fmt, va_list ap);

/* Prefix an existing error message with more context ("file.h5: ..."). */
void status_prefix(cc_status *st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
