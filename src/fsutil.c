/* fsutil.c - see fsutil.h. */
#include "src/fsutil.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

int fs_mkdirs(const char *dir, cc_status *st)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf)
        return status_set(st, "%s: path too long", dir);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0777) && errno != EEXIST)
            return status_set(st, "%s: cannot create directory (%s)", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0777) && errno != EEXIST)
        return status_set(st, "%s: cannot create directory (%s)", buf, strerror(errno));
    struct stat sb;
    if (stat(buf, &sb) || !S_ISDIR(sb.st_mode))
        return status_set(st, "%s: not a directory", buf);
    return 0;
}
