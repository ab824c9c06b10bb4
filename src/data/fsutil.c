/* fsutil.c - see fsutil.h. */
#include "src/data/fsutil.h"

#include <dirent.h>
#include <pthread.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

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

/* ---- atomic writes ---- */

/* The one piece of process-wide mutable state: a signal handler can only
 * find the temp files to remove through globals.  Slots are claimed with
 * an atomic flag (0 free, 1 being filled, 2 armed) so that OpenMP threads
 * writing at once need no lock and the handler never reads a half-written
 * path. */
#define FS_SLOTS 64
static struct {
    atomic_int state;
    int is_dir;
    char path[FS_PATH_MAX + 96];
} fs_slots[FS_SLOTS];
static atomic_int fs_handlers_installed;

/* Async-signal-safe removal of a flat directory: getdents64 + unlinkat. */
static void rm_flat_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        char buf[4096];
        long n;
        while ((n = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0) {
            for (long off = 0; off < n;) {
                /* struct linux_dirent64: ino (8), off (8), reclen (2), type (1), name */
                unsigned short reclen;
                memcpy(&reclen, buf + off + 16, sizeof reclen);
                const char *name = buf + off + 19;
                if (strcmp(name, ".") && strcmp(name, "..")) unlinkat(fd, name, 0);
                off += reclen;
            }
        }
        close(fd);
    }
    rmdir(path);
}

static void fs_on_signal(int sig)
{
    for (int i = 0; i < FS_SLOTS; i++)
        if (atomic_load(&fs_slots[i].state) == 2) {
            if (fs_slots[i].is_dir)
                rm_flat_dir(fs_slots[i].path);
            else
                unlink(fs_slots[i].path);
        }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void install_handlers(void)
{
    int expect = 0;
    if (!atomic_compare_exchange_strong(&fs_handlers_installed, &expect, 1)) return;
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        struct sigaction old, sa;
        /* Leave a caller's own handler (or SIG_IGN) alone. */
        if (sigaction(sigs[i], NULL, &old) != 0 || old.sa_handler != SIG_DFL ||
            (old.sa_flags & SA_SIGINFO))
            continue;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = fs_on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(sigs[i], &sa, NULL);
    }
}

static int slot_claim(const char *tmp, int is_dir)
{
    install_handlers();
    for (int i = 0; i < FS_SLOTS; i++) {
        int expect = 0;
        if (atomic_compare_exchange_strong(&fs_slots[i].state, &expect, 1)) {
            snprintf(fs_slots[i].path, sizeof fs_slots[i].path, "%s", tmp);
            fs_slots[i].is_dir = is_dir;
            atomic_store(&fs_slots[i].state, 2);
            return i;
        }
    }
    return -1;  /* all taken: the write still works, without signal cleanup */
}

static void slot_free(int *slot)
{
    if (*slot >= 0) atomic_store(&fs_slots[*slot].state, 0);
    *slot = -1;
}

static void host_name(char *buf, size_t len)
{
    if (gethostname(buf, len) != 0) snprintf(buf, len, "localhost");
    buf[len - 1] = '\0';
    for (char *p = buf; *p; p++)
        if (*p == '/') *p = '_';
}

/* Directories already scanned for stale temp files by this process: a
 * writer of thousands of files into one directory (simulate, count --masks)
 * must not list it thousands of times.  Per process, mutex-guarded; a
 * collision of the 64-bit hashes only skips a best-effort scan. */
#define FS_SCANNED 256
static struct {
    pthread_mutex_t mu;
    uint64_t hash[FS_SCANNED];
    unsigned next;
} fs_scanned = {PTHREAD_MUTEX_INITIALIZER, {0}, 0};

static int first_scan(const char *dir, const char *base)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = dir; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    h = (h ^ '/') * 1099511628211ull;
    /* staging directories are scanned per base name: they are few */
    if (base) for (const char *p = base; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    int first = 1;
    pthread_mutex_lock(&fs_scanned.mu);
    for (unsigned i = 0; i < FS_SCANNED && first; i++) first = fs_scanned.hash[i] != h;
    if (first) fs_scanned.hash[fs_scanned.next++ % FS_SCANNED] = h;
    pthread_mutex_unlock(&fs_scanned.mu);
    return first;
}

/* Remove "<base>.tmp.<host>.<pid>" entries of dir left by dead processes
 * of this host (kill(pid, 0) says ESRCH).  Best effort; files: once per
 * directory and process (the scan removes every base name's). */
static void remove_stale(const char *dir, const char *base, const char *host, int is_dir)
{
    if (!first_scan(dir, is_dir ? base : NULL)) return;
    char infix[NAME_MAX + 160];
    if (snprintf(infix, sizeof infix, ".tmp.%s.", host) >= (int)sizeof infix) return;
    size_t il = strlen(infix), bl = strlen(base);
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        /* directories: "<base><infix><pid>"; files: "<any name><infix><pid>" */
        const char *at = is_dir ? (strncmp(e->d_name, base, bl) ? NULL : e->d_name + bl)
                                : strstr(e->d_name, infix);
        if (!at || strncmp(at, infix, il)) continue;
        const char *digits = at + il;
        char *end;
        errno = 0;
        long pid = strtol(digits, &end, 10);
        if (!*digits || *end || errno || pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char full[FS_PATH_MAX + NAME_MAX + 2];
        snprintf(full, sizeof full, "%s/%s", dir, e->d_name);
        if (is_dir)
            rm_flat_dir(full);
        else
            unlink(full);
    }
    closedir(d);
}

/* Where a write of `path` must land: symlinks followed (also dangling
 * ones, whose target the write creates). */
static int resolve(const char *path, char *out, size_t len, cc_status *st)
{
    char cur[FS_PATH_MAX];
    if (snprintf(cur, sizeof cur, "%s", path) >= (int)sizeof cur)
        return status_set(st, "%s: path too long", path);
    for (int hops = 0; hops < 40; hops++) {
        struct stat sb;
        if (lstat(cur, &sb) != 0 || !S_ISLNK(sb.st_mode)) {
            snprintf(out, len, "%s", cur);
            return 0;
        }
        char link[FS_PATH_MAX];
        ssize_t n = readlink(cur, link, sizeof link - 1);
        if (n < 0) return status_set(st, "%s: cannot read the link (%s)", path, strerror(errno));
        link[n] = '\0';
        char next[FS_PATH_MAX];
        const char *slash = strrchr(cur, '/');
        int w = link[0] == '/' || !slash
                    ? snprintf(next, sizeof next, "%s", link)
                    : snprintf(next, sizeof next, "%.*s/%s", (int)(slash - cur), cur, link);
        if (w < 0 || w >= (int)sizeof next) return status_set(st, "%s: path too long", path);
        memcpy(cur, next, sizeof cur);
    }
    return status_set(st, "%s: too many levels of symbolic links", path);
}

/* /dev/stdout, /dev/fd/N, /proc/self/fd/N...: a descriptor the caller
 * (the shell) opened -- a pipe, a terminal, or a file opened for append --
 * is written through, never replaced (devices are found by stat). */
static int fd_alias(const char *path)
{
    if (!strcmp(path, "/dev/stdout") || !strcmp(path, "/dev/stderr") ||
        !strncmp(path, "/dev/fd/", 8) || !strncmp(path, "/proc/self/fd/", 14))
        return 1;
    if (strncmp(path, "/proc/", 6)) return 0;
    const char *p = path + 6;
    while (*p >= '0' && *p <= '9') p++;
    return p > path + 6 && !strncmp(p, "/fd/", 4);
}

static int begin(fs_atomic *a, const char *path, int is_dir, cc_status *st)
{
    memset(a, 0, sizeof *a);
    a->slot = -1;
    a->is_dir = is_dir;
    if (!is_dir && fd_alias(path)) {
        a->direct = 1;
    } else if (resolve(path, a->target, sizeof a->target, st) != 0) {
        return -1;
    } else {
        struct stat sb;
        if (stat(a->target, &sb) == 0) {
            if (S_ISDIR(sb.st_mode) && !is_dir)
                return status_set(st, "%s: is a directory", path);
            if (!S_ISDIR(sb.st_mode) && !S_ISREG(sb.st_mode)) {
                if (is_dir) return status_set(st, "%s: exists and is not a directory", path);
                a->direct = 1;
            }
        }
    }
    if (a->direct) {
        if (snprintf(a->target, sizeof a->target, "%s", path) >= (int)sizeof a->target)
            return status_set(st, "%s: path too long", path);
        memcpy(a->tmp, a->target, sizeof a->target);
        return 0;
    }
    char host[128];
    host_name(host, sizeof host);
    if (snprintf(a->tmp, sizeof a->tmp, "%s.tmp.%s.%ld", a->target, host, (long)getpid()) >=
        (int)sizeof a->tmp)
        return status_set(st, "%s: path too long", path);
    /* the directory part and the base name, for the stale scan */
    char dir[FS_PATH_MAX];
    const char *slash = strrchr(a->target, '/');
    if (slash)
        snprintf(dir, sizeof dir, "%.*s", slash == a->target ? 1 : (int)(slash - a->target),
                 a->target);
    else
        strcpy(dir, ".");
    remove_stale(dir, slash ? slash + 1 : a->target, host, is_dir);
    a->slot = slot_claim(a->tmp, is_dir);
    return 0;
}

int fs_atomic_begin(fs_atomic *a, const char *path, cc_status *st)
{
    return begin(a, path, 0, st);
}

int fs_atomic_begin_dir(fs_atomic *a, const char *path, cc_status *st)
{
    return begin(a, path, 1, st);
}

int fs_atomic_commit(fs_atomic *a, cc_status *st)
{
    if (a->direct) {
        slot_free(&a->slot);
        return 0;
    }
    if (rename(a->tmp, a->target) != 0) {
        int e = errno;
        fs_atomic_abort(a);
        return status_set(st, "%s: cannot replace it with %s (%s)", a->target, a->tmp,
                          strerror(e));
    }
    slot_free(&a->slot);
    return 0;
}

void fs_atomic_abort(fs_atomic *a)
{
    if (!a->direct && a->tmp[0]) {
        if (a->is_dir)
            rm_flat_dir(a->tmp);
        else
            unlink(a->tmp);
    }
    slot_free(&a->slot);
}

void fs_atomic_release(fs_atomic *a) { slot_free(&a->slot); }
