/* ini_read.c - see ini_read.h. */
#include "src/run/ini_read.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n' || *s == '\f' || *s == '\v') s++;
    size_t n = strlen(s);
    while (n && strchr(" \t\r\n\f\v", s[n - 1])) s[--n] = '\0';
    return s;
}

/* Cut an inline comment: ';' preceded by whitespace. */
static void cut_comment(char *s)
{
    for (char *p = s; *p; p++)
        if (*p == ';' && p > s && (p[-1] == ' ' || p[-1] == '\t')) {
            *p = '\0';
            return;
        }
}

int ini_read(FILE *f, const char *path, ini_handler fn, void *user, cc_status *st)
{
    char *line = NULL, *section = NULL;
    size_t cap = 0;
    int rc = 0;
    char where[4096 + 32];
    for (long lineno = 1;; lineno++) {
        errno = 0;
        ssize_t n = getline(&line, &cap, f);
        snprintf(where, sizeof where, "%.4096s:%ld", path, lineno);
        if (n < 0) {
            if (ferror(f)) rc = status_set(st, "%s: cannot read the file (%s)", where,
                                           strerror(errno ? errno : EIO));
            break;
        }
        if (n > INI_LINE_MAX) {
            rc = status_set(st, "%s: line longer than %d bytes", where, INI_LINE_MAX);
            break;
        }
        if (memchr(line, '\0', (size_t)n)) {
            rc = status_set(st, "%s: NUL byte in the line (not a text file?)", where);
            break;
        }
        char *s = line;
        if (lineno == 1 && !strncmp(s, "\xEF\xBB\xBF", 3)) s += 3;
        s = trim(s);
        if (!*s || *s == ';' || *s == '#') continue;
        if (*s == '[') {
            char *end = strchr(s + 1, ']');
            if (!end) {
                rc = status_set(st, "%s: section header without ']'", where);
                break;
            }
            *end = '\0';
            free(section);
            if (!(section = strdup(trim(s + 1)))) {
                rc = status_set(st, "%s: out of memory", where);
                break;
            }
            if ((rc = fn(user, where, section, NULL, NULL, st)) != 0) break;
            continue;
        }
        char *eq = strpbrk(s, "=:");
        if (!eq) {
            rc = status_set(st, "%s: syntax error (expected [section], name = value or a "
                            "comment)", where);
            break;
        }
        *eq = '\0';
        char *name = trim(s), *value = eq + 1;
        cut_comment(value);
        value = trim(value);
        if (!*name) {
            rc = status_set(st, "%s: syntax error (no name before '=')", where);
            break;
        }
        if (!section) {
            rc = status_set(st, "%s: key '%s' before any [section]", where, name);
            break;
        }
        if ((rc = fn(user, where, section, name, value, st)) != 0) break;
    }
    free(line);
    free(section);
    return rc ? -1 : 0;
}
