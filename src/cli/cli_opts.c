/* cli_opts.c - see cli_opts.h. */
#include "src/cli/cli_opts.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Copy the field of s that ends at any of delims (or at the end) into buf;
 * returns where the field ends, or NULL when it does not fit in buf (no
 * option value has a field that long, so it is an error, never a cut). */
static const char *field_copy(const char *s, const char *delims, char *buf, size_t len)
{
    size_t n = strcspn(s, delims);
    if (n >= len) return NULL;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return s + n;
}

int cli_parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int cli_parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

int cli_parse_dims(const char *s, int n, long lo, long hi, int *out)
{
    for (int k = 0; k < n; k++) {
        char buf[32];
        long v;
        const char *e = field_copy(s, "xX", buf, sizeof buf);
        if (!e || cli_parse_long(buf, lo, hi, &v)) return -1;
        out[k] = (int)v;
        if (k == n - 1) return *e ? -1 : 0;
        if (!*e) return -1;
        s = e + 1;
    }
    return -1;
}

int cli_parse_size(const char *s, long lo, long hi, int *w, int *h)
{
    int d[2];
    if (cli_parse_dims(s, 2, lo, hi, d)) return -1;
    *w = d[0];
    *h = d[1];
    return 0;
}

int cli_parse_split(const char *s, double frac[3])
{
    double sum = 0;
    for (int k = 0; k < 3; k++) {
        char buf[64];
        const char *e = field_copy(s, "/,", buf, sizeof buf);
        if (!e || cli_parse_double(buf, &frac[k]) || !(frac[k] >= 0)) return -1;
        sum += frac[k];
        if ((k < 2) != (*e != '\0')) return -1;   /* exactly three fields */
        s = e + 1;
    }
    if (!(sum > 0) || !isfinite(sum)) return -1;
    for (int k = 0; k < 3; k++) frac[k] /= sum;
    return 0;
}

int cli_parse_int_list(const char *s, long lo, long hi, int *out, int max, int *n)
{
    *n = 0;
    for (;;) {
        char buf[32];
        long v;
        const char *e = field_copy(s, ",", buf, sizeof buf);
        if (!e || *n >= max || cli_parse_long(buf, lo, hi, &v)) return -1;
        out[(*n)++] = (int)v;
        if (!*e) return 0;
        s = e + 1;
    }
}

int cli_parse_str_opts(int argc, char **argv, const cli_str_opt *opts, int n, const char *what,
                       void (*usage)(FILE *f), int *first)
{
    enum { MAX_OPTS = 8, VAL0 = 1000 };    /* option codes clear of any character */
    struct option longs[MAX_OPTS + 2];
    if (n > MAX_OPTS) n = MAX_OPTS;
    for (int i = 0; i < n; i++) {
        longs[i] = (struct option){opts[i].name, required_argument, 0, VAL0 + i};
        *opts[i].value = NULL;
    }
    longs[n] = (struct option){"help", no_argument, 0, 'h'};
    longs[n + 1] = (struct option){0, 0, 0, 0};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        if (c >= VAL0 && c < VAL0 + n) {
            *opts[c - VAL0].value = optarg;
        } else if (c == 'h') {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "cellcount %s: no %s given\n", argv[0], what);
        usage(stderr);
        return 2;
    }
    *first = optind;
    return -1;
}
