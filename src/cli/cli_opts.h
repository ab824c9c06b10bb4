/* cli_opts.h - the value forms every command's options accept, parsed in
 * one place so that `--size 64X48` or `--split 8,1,1` mean the same to
 * every command.
 *
 * Forms:
 * - integer: decimal, the whole string, within [lo, hi];
 * - size: "WxH" (x or X), each an integer within [lo, hi];
 * - dims: "AxBxC..." (x or X), n integers within [lo, hi], in written order;
 * - split: "A/B/C" or "A,B,C", three finite non-negative proportions of
 *   positive sum, returned normalised to sum 1;
 * - list: "a,b,c" of integers within [lo, hi]; no empty entries.
 * Every parser returns 0, or -1 (outputs then unspecified) when the string
 * is not of its form; the caller prints the message naming the option.
 */
#ifndef CC_CLI_OPTS_H
#define CC_CLI_OPTS_H

#include <stdio.h>

/* A decimal integer in [lo, hi] into *out. */
int cli_parse_long(const char *s, long lo, long hi, long *out);

/* A finite decimal number (strtod's forms, not NaN or infinite) into *out. */
int cli_parse_double(const char *s, double *out);

/* n (>= 1) integers in [lo, hi] joined by 'x' or 'X' into out[0..n-1]. */
int cli_parse_dims(const char *s, int n, long lo, long hi, int *out);

/* "WxH" (or "WXH") with W and H in [lo, hi]: *w = W, *h = H. */
int cli_parse_size(const char *s, long lo, long hi, int *w, int *h);

/* "A/B/C" or "A,B,C" train/val/test proportions: frac[] = A, B, C / (A+B+C). */
int cli_parse_split(const char *s, double frac[3]);

/* "a,b,c": at most max integers in [lo, hi] into out[0..*n-1] (*n >= 1). */
int cli_parse_int_list(const char *s, long lo, long hi, int *out, int max, int *n);

/* A long option with a string value: `--name VALUE` sets *value = VALUE
 * (a pointer into argv; the last one given wins). */
typedef struct cli_str_opt {
    const char *name;
    const char **value;
} cli_str_opt;

/* The whole command line of a command whose options are opts[0..n) (n <= 8)
 * and -h/--help, followed by one or more positional arguments, `what`
 * naming them in the error ("runs").  argv[0] is the command's name.
 * Returns -1 when the command goes on with argv[*first..argc), else its
 * exit status: 0 after --help (usage(stdout)), 2 for an unknown option or
 * no positional argument (a message and usage(stderr)). */
int cli_parse_str_opts(int argc, char **argv, const cli_str_opt *opts, int n, const char *what,
                       void (*usage)(FILE *f), int *first);

#endif
