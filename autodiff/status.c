/* status.c - see status.h. */
#include "status.h"

#include <stdio.h>
#include <string.h>

void status_clear(cc_status *st)
{
    if (!st) return;
    st->failed = 0;
    st->msg[0] = '\0';
}

int status_vset(cc_status *st, const char *fmt, va_list ap)
{
    if (!st || st->failed) return -1;
    st->failed = 1;
    vsnprintf(st->msg, sizeof st->msg, fmt, ap);
    return -1;
}

int status_set(cc_status *st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    status_vset(st, fmt, ap);
    va_end(ap);
    return -1;
}

void status_prefix(cc_status *st, const char *fmt, ...)
{
    if (!st || !st->failed) return;
    char pre[CC_STATUS_MSG], old[CC_STATUS_MSG];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, st->msg, sizeof old);
    size_t lp = strlen(pre);
    if (lp > sizeof st->msg - 3) lp = sizeof st->msg - 3;
    memcpy(st->msg, pre, lp);
    memcpy(st->msg + lp, ": ", 2);
    size_t room = sizeof st->msg - lp - 3;
    size_t lo = strnlen(old, room);
    memcpy(st->msg + lp + 2, old, lo);
    st->msg[lp + 2 + lo] = '\0';
}
