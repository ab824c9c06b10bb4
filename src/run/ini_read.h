/* ini_read.h - the one INI line reader (experiment and sweep files).
 *
 * Replaces libinih, whose Debian build cut lines at 199 bytes and parsed
 * the tail of a long comment as a key.  Syntax (a subset of inih's):
 *   [section]            a section header (text after ']' is ignored)
 *   name = value         or name: value; both sides trimmed
 *   ; comment / # comment  whole-line comments
 *   value ; comment      an inline comment needs whitespace before ';'
 * Blank lines are skipped; a UTF-8 byte-order mark on line 1 is ignored.
 * Lines may be any length up to INI_LINE_MAX bytes; a longer line, a NUL
 * byte, a line that is neither of the above, or a key before any section
 * is an error naming path:line.  A comment never becomes a key.
 */
#ifndef CC_INI_READ_H
#define CC_INI_READ_H

#include <stdio.h>

#include "autodiff/status.h"

#define INI_LINE_MAX (1 << 20)

/* Called once per section header (name == NULL, value == NULL) and once
 * per key (section is the current one).  `where` is "path:line" for
 * messages.  Return 0 to go on, -1 (having filled st) to stop. */
typedef int (*ini_handler)(void *user, const char *where, const char *section,
                           const char *name, const char *value, cc_status *st);

/* Read the INI text of stream f (named path in messages) line by line,
 * calling fn for each section and key.  Returns 0, or -1 with st set:
 * by fn, or "path:line: <problem>" for a syntax error or a read error. */
int ini_read(FILE *f, const char *path, ini_handler fn, void *user, cc_status *st);

#endif
