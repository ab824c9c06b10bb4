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

#endif
