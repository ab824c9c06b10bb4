/* fulldisk.c - see fulldisk.h. */
#include "tests/fulldisk.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static long long g_limit = -1;
static char g_dir[PATH_MAX];

void fulldisk_set(const char *dir, long long limit)
{
    g_limit = -1;
    if (limit >= 0 && realpath(dir, g_dir)) g_limit = limit;
}

static int on_full_disk(int fd, long long end)
{
    if (g_limit < 0 || end <= g_limit) return 0;
    char link[64], target[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n < 0) return 0;
    target[n] = '\0';
    size_t k = strlen(g_dir);
    return strncmp(target, g_dir, k) == 0 && target[k] == '/';
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    if (on_full_disk(fd, (long long)off + (long long)n)) {
        errno = ENOSPC;
        return -1;
    }
    return syscall(SYS_pwrite64, fd, buf, n, off);
}

int fallocate(int fd, int mode, off_t off, off_t len)
{
    if (!(mode & FALLOC_FL_PUNCH_HOLE) && on_full_disk(fd, (long long)off + (long long)len)) {
        errno = ENOSPC;
        return -1;
    }
    return (int)syscall(SYS_fallocate, fd, mode, off, len);
}
