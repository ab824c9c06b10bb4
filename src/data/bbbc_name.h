/* bbbc_name.h - BBBC005 file names.
 *
 * `SIMCEPImages_<well>_C<count>_F<focus>_s<site>_w<stain>.TIF`, e.g.
 * `SIMCEPImages_A05_C18_F1_s01_w1.TIF`: the well is a row letter (A..P =
 * focus level index) and a column number (01..24 = count index).  The
 * parser checks syntax and plausible ranges only; it does not insist that
 * the well agrees with C and F or that C and F are among BBBC005's values,
 * so simulated sets with other counts or blur levels parse too.
 */
#ifndef CC_BBBC_NAME_H
#define CC_BBBC_NAME_H

#include <stddef.h>

#include "autodiff/status.h"

/* BBBC005's 24 cell counts and 16 focus (blur) levels, in well order. */
#define BBBC_NCOUNTS 24
#define BBBC_NFOCUS 16
extern const int bbbc_counts[BBBC_NCOUNTS];
extern const int bbbc_focus_levels[BBBC_NFOCUS];

typedef struct bbbc_name {
    char well_row;      /* 'A'..'Z' (BBBC005: 'A'..'P') */
    int well_col;       /* 1..99 (BBBC005: 1..24) */
    int count;          /* C: true number of cells, >= 0 */
    int focus;          /* F: blur diameter, >= 1 */
    int site;           /* s: sample number, >= 1 */
    int stain;          /* w: 1 = nuclei, 2 = cell bodies, >= 1 */
} bbbc_name;

/* Parse a file name.  Leading directories are ignored (everything up to the
 * last '/'); the prefix and field letters are case-sensitive, the `.tif`
 * extension is not.  Returns 0 and fills *out, or -1 with st saying what is
 * wrong ("<name>: expected _C<count> after the well", ...); *out is
 * undefined on failure. */
int bbbc_name_parse(const char *name, bbbc_name *out, cc_status *st);

/* Write the canonical name of n into buf (size len): well column and site
 * with two digits, `.TIF` extension, no directory.  Returns the length, or
 * -1 if it does not fit or n holds an out-of-range field (the same ranges
 * the parser accepts), so parse(format(n)) == n for every valid n. */
int bbbc_name_format(const bbbc_name *n, char *buf, size_t len);

/* BBBC005's well for a (count, focus) pair: row 'A' + index of focus in
 * bbbc_focus_levels, column 1 + index of count in bbbc_counts.  Returns 0,
 * or -1 (row/col untouched) when count or focus is not a BBBC005 value. */
int bbbc_well_for(int count, int focus, char *row, int *col);

#endif
