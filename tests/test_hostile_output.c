/* test_hostile_output.c - hostile output paths (issue 15): symlinks,
 * FIFOs and devices as targets, stale and interrupted temporary files,
 * odd TIFFs, an empty parameter store; each refused or handled with a
 * message naming the file. */
#include <check.h>
#include <fcntl.h>
#include <hdf5.h>
#include <tiffio.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autodiff/params.h"
#include "src/run/checkpoint.h"
#include "src/data/fsutil.h"
#include "src/data/png_io.h"
#include "src/data/tiff_io.h"
#include "tests/hostileutil.h"

static int is_png_file(const char *path)
{
    unsigned char sig[8] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t n = fread(sig, 1, 8, f);
    fclose(f);
    return n == 8 && !memcmp(sig, "\x89PNG\r\n\x1a\n", 8);
}

/* Item 8: a symlink is written through (the link stays a link). */
START_TEST(test_atomic_symlink)
{
    char target[128], link[128];
    snprintf(target, sizeof target, "%s/real.png", dir);
    snprintf(link, sizeof link, "%s/link.png", dir);
    write_text(target, "old");
    ck_assert_int_eq(symlink("real.png", link), 0);
    uint8_t px[4] = {0, 64, 128, 255};
    cc_status st;
    status_clear(&st);
    ck_assert_msg(png_write_gray(link, 2, 2, px, &st) == 0, "%s", st.msg);
    struct stat sb;
    ck_assert_int_eq(lstat(link, &sb), 0);
    ck_assert(S_ISLNK(sb.st_mode));
    ck_assert(is_png_file(target));
    /* a dangling link: its target is created */
    unlink(target);
    ck_assert_msg(png_write_gray(link, 2, 2, px, &st) == 0, "%s", st.msg);
    ck_assert_int_eq(lstat(link, &sb), 0);
    ck_assert(S_ISLNK(sb.st_mode));
    ck_assert(is_png_file(target));
}
END_TEST

/* Item 8: a FIFO (like a device or /dev/stdout) is written directly and
 * stays a FIFO; a directory is refused; /dev paths are direct. */
START_TEST(test_atomic_fifo_device)
{
    char fifo[128];
    snprintf(fifo, sizeof fifo, "%s/pipe", dir);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {   /* reader: exit 0 iff it got a PNG */
        unsigned char sig[8] = {0};
        FILE *f = fopen(fifo, "rb");
        size_t n = f ? fread(sig, 1, 8, f) : 0;
        char sink[256];
        while (f && fread(sink, 1, sizeof sink, f) > 0) {}
        _exit(n == 8 && !memcmp(sig, "\x89PNG", 4) ? 0 : 1);
    }
    uint8_t px[4] = {0, 64, 128, 255};
    cc_status st;
    status_clear(&st);
    ck_assert_msg(png_write_gray(fifo, 2, 2, px, &st) == 0, "%s", st.msg);
    int status;
    waitpid(pid, &status, 0);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    struct stat sb;
    ck_assert_int_eq(lstat(fifo, &sb), 0);
    ck_assert(S_ISFIFO(sb.st_mode));
    fs_atomic a;
    ck_assert_int_eq(fs_atomic_begin(&a, "/dev/stdout", &st), 0);
    ck_assert_int_eq(a.direct, 1);
    ck_assert_str_eq(a.tmp, "/dev/stdout");
    fs_atomic_abort(&a);
    ck_assert_int_eq(fs_atomic_begin(&a, "/dev/full", &st), 0);
    ck_assert_int_eq(a.direct, 1);
    fs_atomic_abort(&a);
    /* a redirection target (a regular file behind /dev/fd/N) is written
     * through, not replaced */
    char reg[128], alias[64];
    snprintf(reg, sizeof reg, "%s/redirected", dir);
    int fd = open(reg, O_WRONLY | O_CREAT | O_APPEND, 0600);
    ck_assert_int_ge(fd, 0);
    snprintf(alias, sizeof alias, "/dev/fd/%d", fd);
    ck_assert_int_eq(fs_atomic_begin(&a, alias, &st), 0);
    ck_assert_int_eq(a.direct, 1);
    fs_atomic_abort(&a);
    close(fd);
    unlink(reg);
    /* an ordinary file under /dev/shm is still written atomically */
    char shm[64];
    snprintf(shm, sizeof shm, "/dev/shm/cc_hostile_%ld", (long)getpid());
    if (access("/dev/shm", W_OK) == 0) {
        ck_assert_int_eq(fs_atomic_begin(&a, shm, &st), 0);
        ck_assert_int_eq(a.direct, 0);
        fs_atomic_abort(&a);
    }
    ck_assert_int_eq(stat("/dev/full", &sb), 0);
    ck_assert(S_ISCHR(sb.st_mode));
    status_clear(&st);
    ck_assert_int_eq(fs_atomic_begin(&a, dir, &st), -1);
    ck_assert_msg_has(&st, "is a directory");
}
END_TEST

/* Item 9: temp names carry host and PID; a later write removes only this
 * host's temp files of dead processes. */
START_TEST(test_atomic_stale_temps)
{
    char host[128], path[128], dead[300], other[300], alive[300];
    gethostname(host, sizeof host);
    host[sizeof host - 1] = '\0';
    snprintf(path, sizeof path, "%s/out.png", dir);
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    waitpid(pid, NULL, 0);      /* pid is now dead */
    snprintf(dead, sizeof dead, "%s.tmp.%s.%ld", path, host, (long)pid);
    snprintf(other, sizeof other, "%s.tmp.%s-elsewhere.%ld", path, host, (long)pid);
    snprintf(alive, sizeof alive, "%s.tmp.%s.%ld", path, host, (long)getppid());
    write_text(dead, "x");
    write_text(other, "x");
    write_text(alive, "x");
    fs_atomic a;
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(fs_atomic_begin(&a, path, &st), 0);
    char want[300];
    snprintf(want, sizeof want, "%s.tmp.%s.%ld", path, host, (long)getpid());
    ck_assert_str_eq(a.tmp, want);
    fs_atomic_abort(&a);
    ck_assert_int_ne(access(dead, F_OK), 0);
    ck_assert_int_eq(access(other, F_OK), 0);
    ck_assert_int_eq(access(alive, F_OK), 0);
}
END_TEST

/* Item 9: SIGTERM / SIGINT during a write remove the temp file and the
 * staging directory, and the signal still ends the process. */
START_TEST(test_atomic_signal_cleanup)
{
    char path[128], stage[128];
    snprintf(path, sizeof path, "%s/out.h5", dir);
    snprintf(stage, sizeof stage, "%s/.images", dir);
    static const int sigs[2] = {SIGTERM, SIGINT};
    for (int k = 0; k < 2; k++) {
        int fd[2];
        ck_assert_int_eq(pipe(fd), 0);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            signal(sigs[k], SIG_DFL);
            fs_atomic a, d;
            if (fs_atomic_begin(&a, path, NULL) || fs_atomic_begin_dir(&d, stage, NULL)) _exit(3);
            FILE *f = fopen(a.tmp, "w");
            if (!f || mkdir(d.tmp, 0700)) _exit(4);
            fputs("partial", f);
            fflush(f);
            char inner[sizeof d.tmp + 16];
            snprintf(inner, sizeof inner, "%s/img.tif", d.tmp);
            FILE *g = fopen(inner, "w");
            if (!g) _exit(5);
            fclose(g);
            if (write(fd[1], "r", 1) != 1) _exit(6);
            pause();
            _exit(7);
        }
        close(fd[1]);
        char c;
        ck_assert_int_eq(read(fd[0], &c, 1), 1);
        close(fd[0]);
        kill(pid, sigs[k]);
        int status;
        waitpid(pid, &status, 0);
        ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == sigs[k], "status %d", status);
        char cmd[300];
        snprintf(cmd, sizeof cmd, "test -z \"$(ls -A %s)\"", dir);
        ck_assert_msg(system(cmd) == 0, "temp files left after signal %d", sigs[k]);
    }
}
END_TEST

/* Item 10: a FIFO given as an input image is refused, not waited on. */
START_TEST(test_tiff_fifo)
{
    char fifo[128];
    snprintf(fifo, sizeof fifo, "%s/img.tif", dir);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    cc_image img;
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(tiff_read_gray(fifo, &img, &st), -1);
    ck_assert_msg_has(&st, "not a regular file");
}
END_TEST

/* Found by fuzz/fuzz_tiff: a header claiming many samples per pixel made
 * the decoder allocate gigabytes. */
START_TEST(test_tiff_many_samples)
{
    char path[128];
    snprintf(path, sizeof path, "%s/wide.tif", dir);
    TIFF *t = TIFFOpen(path, "w");
    ck_assert_ptr_nonnull(t);
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, 4);
    TIFFSetField(t, TIFFTAG_IMAGELENGTH, 2);
    TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 8);
    TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, 100);
    TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK);
    TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
    uint8_t row[400] = {0};
    for (int y = 0; y < 2; y++) ck_assert_int_eq(TIFFWriteScanline(t, row, (uint32_t)y, 0), 1);
    TIFFClose(t);
    cc_image img;
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(tiff_read_gray(path, &img, &st), -1);
    ck_assert_msg_has(&st, "100 samples per pixel (at most 8)");
}
END_TEST

/* Found by fuzz/fuzz_checkpoint (UBSan: qsort of NULL): an empty /params. */
START_TEST(test_checkpoint_empty_params)
{
    char path[128];
    snprintf(path, sizeof path, "%s/ck.h5", dir);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t t = H5Tcopy(H5T_C_S1), s = H5Screate(H5S_SCALAR);
    H5Tset_size(t, strlen(CKPT_FORMAT) + 1);
    hid_t a = H5Acreate2(f, "format", t, s, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, CKPT_FORMAT);
    H5Aclose(a);
    int64_t one = CKPT_FORMAT_VERSION;
    a = H5Acreate2(f, "format_version", H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &one);
    H5Aclose(a);
    H5Tclose(t);
    H5Sclose(s);
    H5Gclose(H5Gcreate2(f, "params", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5Fclose(f);
    cc_ctx ctx;
    cc_status st;
    status_clear(&st);
    ck_assert_int_eq(ctx_init(&ctx, 1, &st), 0);
    cc_params P;
    params_init(&P, &ctx);
    int64_t shape[1] = {4};
    ck_assert_int_ge(params_add(&P, "m/w", 1, shape, PARAM_TRAINABLE, &st), 0);
    ck_assert_int_eq(params_finalize(&P, &st), 0);
    ck_assert_int_eq(checkpoint_load(path, &P, NULL, &st), -1);
    ck_assert_h5_closed();
    ck_assert_msg_has(&st, "missing m/w");
    params_free(&P);
    ctx_free(&ctx);
}
END_TEST

void hostile_add_output_case(Suite *s)
{
    TCase *tc = tcase_create("output");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_atomic_symlink);
    tcase_add_test(tc, test_atomic_fifo_device);
    tcase_add_test(tc, test_atomic_stale_temps);
    tcase_add_test(tc, test_atomic_signal_cleanup);
    tcase_add_test(tc, test_tiff_fifo);
    tcase_add_test(tc, test_tiff_many_samples);
    tcase_add_test(tc, test_checkpoint_empty_params);
    suite_add_tcase(s, tc);
}
