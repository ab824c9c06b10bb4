/* bbbc_name.c - see bbbc_name.h. */
#include "src/data/bbbc_name.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

const int bbbc_counts[BBBC_NCOUNTS] = {1,  5,  10, 14, 18, 23, 27, 31, 35, 40, 44, 48,
                                       53, 57, 61, 66, 70, 74, 78, 83, 87, 91, 96, 100};
const int bbbc_focus_levels[BBBC_NFOCUS] = {1,  4,  7,  10, 14, 17, 20, 23,
                                            26, 29, 32, 35, 39, 42, 45, 48};

static const char PREFIX[] = "SIMCEPImages_";

/* Upper bounds on the numeric fields: generous, but small enough that a
 * value always fits an int and a name cannot smuggle in absurd numbers. */
#define MAX_COUNT 100000
#define MAX_FOCUS 10000
#define MAX_SITE 100000
#define MAX_STAIN 99
#define MAX_COL 99

/* Read 1..6 decimal digits at *p into *v, advancing *p past all digits.
 * -1: no digit; -2: more than 6 (a number, but too large for any field). */
static int digits(const char **p, int *v)
{
    int n = 0, x = 0;
    for (; **p >= '0' && **p <= '9'; (*p)++)
        if (++n <= 6) x = x * 10 + (**p - '0');
    if (n == 0) return -1;
    if (n > 6) return -2;
    *v = x;
    return 0;
}

/* Expect the literal `tag` then a number in [lo, hi]. */
static int field(const char **p, const char *tag, int lo, int hi, int *v,
                 const char *name, const char *what, cc_status *st)
{
    size_t n = strlen(tag);
    if (strncmp(*p, tag, n) != 0)
        return status_set(st, "%s: malformed BBBC005 name: expected '%s<%s>' at '%s'",
                          name, tag, what, *p);
    *p += n;
    int r = digits(p, v);
    if (r == -2)
        return status_set(st, "%s: malformed BBBC005 name: %s after '%s' is out of range %d..%d",
                          name, what, tag, lo, hi);
    if (r != 0)
        return status_set(st, "%s: malformed BBBC005 name: %s after '%s' is not a number",
                          name, what, tag);
    if (*v < lo || *v > hi)
        return status_set(st, "%s: malformed BBBC005 name: %s %d out of range %d..%d",
                          name, what, *v, lo, hi);
    return 0;
}

int bbbc_name_parse(const char *name, bbbc_name *out, cc_status *st)
{
    assert(name && out);
    const char *slash = strrchr(name, '/');
    const char *base = slash ? slash + 1 : name;
    const char *p = base;
    if (strncmp(p, PREFIX, sizeof PREFIX - 1) != 0)
        return status_set(st, "%s: malformed BBBC005 name: does not start with '%s'",
                          base, PREFIX);
    p += sizeof PREFIX - 1;
    if (*p < 'A' || *p > 'Z')
        return status_set(st, "%s: malformed BBBC005 name: well must start with a row "
                          "letter A..Z", base);
    out->well_row = *p++;
    if (digits(&p, &out->well_col) != 0 || out->well_col < 1 || out->well_col > MAX_COL)
        return status_set(st, "%s: malformed BBBC005 name: well column must be 1..%d",
                          base, MAX_COL);
    if (field(&p, "_C", 0, MAX_COUNT, &out->count, base, "count", st) ||
        field(&p, "_F", 1, MAX_FOCUS, &out->focus, base, "focus", st) ||
        field(&p, "_s", 1, MAX_SITE, &out->site, base, "site", st) ||
        field(&p, "_w", 1, MAX_STAIN, &out->stain, base, "stain", st))
        return -1;
    if (strcasecmp(p, ".tif") != 0)
        return status_set(st, "%s: malformed BBBC005 name: expected '.tif' at '%s'", base, p);
    return 0;
}

int bbbc_name_format(const bbbc_name *n, char *buf, size_t len)
{
    assert(n && buf);
    if (n->well_row < 'A' || n->well_row > 'Z' || n->well_col < 1 || n->well_col > MAX_COL ||
        n->count < 0 || n->count > MAX_COUNT || n->focus < 1 || n->focus > MAX_FOCUS ||
        n->site < 1 || n->site > MAX_SITE || n->stain < 1 || n->stain > MAX_STAIN)
        return -1;
    int k = snprintf(buf, len, "%s%c%02d_C%d_F%d_s%02d_w%d.TIF", PREFIX, n->well_row,
                     n->well_col, n->count, n->focus, n->site, n->stain);
    return (k < 0 || (size_t)k >= len) ? -1 : k;
}

int bbbc_well_for(int count, int focus, char *row, int *col)
{
    int ci = -1, fi = -1;
    for (int i = 0; i < BBBC_NCOUNTS; i++)
        if (bbbc_counts[i] == count) ci = i;
    for (int i = 0; i < BBBC_NFOCUS; i++)
        if (bbbc_focus_levels[i] == focus) fi = i;
    if (ci < 0 || fi < 0) return -1;
    *row = (char)('A' + fi);
    *col = ci + 1;
    return 0;
}
