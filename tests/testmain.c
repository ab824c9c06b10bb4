/* testmain.c - see testmain.h. */
#include "tests/testmain.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

/* Before main(): defaults for a suite run by hand (see testmain.h). */
__attribute__((constructor)) static void tu_env_defaults(void)
{
    setenv("CK_DEFAULT_TIMEOUT", "600", 0);
    setenv("OMP_WAIT_POLICY", "passive", 0);
}

int tu_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

int tu_tmpdir_make(char *dir, size_t len, const char *tag)
{
    if (snprintf(dir, len, "/tmp/%s_XXXXXX", tag) >= (int)len || !mkdtemp(dir)) {
        perror("tu_tmpdir_make");
        return -1;
    }
    return 0;
}

static int make_writable(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)ftw;
    if (flag == FTW_D || flag == FTW_DNR) chmod(p, (sb->st_mode & 07777) | 0700);
    return 0;
}

static int remove_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    remove(p);
    return 0;
}

int tu_tmpdir_remove(const char *dir)
{
    nftw(dir, make_writable, 16, FTW_PHYS);
    nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
    struct stat sb;
    return lstat(dir, &sb) == 0 ? -1 : 0;
}
