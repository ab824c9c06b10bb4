/* csv.h - one cell of a CSV or TSV table, quoted or escaped by one rule
 * (count's tables, report and export).
 *
 * CSV (RFC 4180): a cell with a comma, a double quote, CR or LF, or a
 * leading or trailing space is written in double quotes with each quote
 * doubled (the spaces so that readers which trim unquoted cells keep
 * them); any other cell is written as it is.
 * TSV: tab, LF and CR never appear raw: they are written as the two
 * characters \t, \n, \r, so a cell never splits a row.
 */
#ifndef CC_CSV_H
#define CC_CSV_H

#include <stdio.h>

/* Write s (NUL-terminated, may be empty) to f as one CSV cell. */
void csv_cell_put(FILE *f, const char *s);

/* Write s to f as one TSV cell. */
void tsv_cell_put(FILE *f, const char *s);

#endif
