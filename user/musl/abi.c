/* The Linux ABI subset pikku provides, one observable fact per line (no addresses, no
 * times), so the transcript is the same on every run — and, the point, the same as Linux's. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include "pikku_user.h"

#define SHOW(expr) do { errno = 0; long r_ = (long)(expr); \
    if (r_ < 0) printf("%s = -1 %s\n", #expr, errname(errno)); else printf("%s = %ld\n", #expr, r_); } while (0)
#define FACT(text, cond) printf("%s: %s\n", text, (cond) ? "yes" : "no")

int main(void) {
    SHOW(getpid());
    SHOW(getuid()); SHOW(geteuid()); SHOW(getgid()); SHOW(getegid());

    struct utsname u;
    SHOW(uname(&u));
    printf("sysname = %s, machine = %s\n", u.sysname, u.machine);

    SHOW(isatty(1));
    struct winsize ws;
    SHOW(ioctl(1, TIOCGWINSZ, &ws));
    printf("winsize = %ux%u\n", ws.ws_row, ws.ws_col);
    SHOW(ioctl(1, 0x1234, 0));

    struct timespec a, b;
    SHOW(clock_gettime(CLOCK_MONOTONIC, &a));
    for (volatile int i = 0; i < 100000; i++) {}
    clock_gettime(CLOCK_MONOTONIC, &b);
    FACT("CLOCK_MONOTONIC moves forward", b.tv_sec > a.tv_sec || (b.tv_sec == a.tv_sec && b.tv_nsec > a.tv_nsec));
    clock_gettime(CLOCK_REALTIME, &a);
    FACT("CLOCK_REALTIME is after 2024", a.tv_sec > 1704067200);
    SHOW(syscall(SYS_clock_gettime, 99, &a));

    unsigned char rnd[16] = {0};
    SHOW(getrandom(rnd, sizeof rnd, 0));
    SHOW(syscall(SYS_getrandom, rnd, sizeof rnd, 8));

    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    SHOW(sigprocmask(SIG_BLOCK, &set, 0));
    sigprocmask(SIG_BLOCK, 0, &old);
    FACT("SIGUSR1 is blocked", sigismember(&old, SIGUSR1));
    SHOW(syscall(SYS_rt_sigprocmask, 7, &set, 0, 8));
    SHOW(syscall(SYS_rt_sigprocmask, SIG_BLOCK, &set, 0, 4));

    SHOW(open("/nonexistent", O_RDONLY));
    SHOW(open("/etc/passwd/x", O_RDONLY));
    SHOW(open("/etc", O_RDONLY | O_DIRECTORY) >= 0);
    SHOW(open("/etc/passwd", O_RDONLY | O_DIRECTORY));
    int fd = open("/etc/passwd", O_RDONLY);
    SHOW(fd);
    struct stat st;
    SHOW(fstat(fd, &st));
    FACT("/etc/passwd is a regular file", S_ISREG(st.st_mode));
    char buf[4096];
    long n = read(fd, buf, sizeof buf);
    FACT("read() returns st_size bytes", n == st.st_size);
    SHOW(read(fd, buf, sizeof buf));
    FACT("lseek(fd, 0, SEEK_END) is st_size", lseek(fd, 0, SEEK_END) == st.st_size);
    SHOW(lseek(fd, -1, SEEK_SET));
    SHOW(pread(fd, buf, 4, 0));
    printf("pread(fd, 4, 0) read \"%.4s\"\n", buf);
    SHOW(lseek(1, 0, SEEK_SET));
    SHOW(pread(1, buf, 4, 0));
    SHOW(write(fd, "x", 1));
    SHOW(readlink("/etc/passwd", buf, sizeof buf));
    SHOW(readlink("/nope", buf, sizeof buf));
    SHOW(stat("/etc/passwd", &st));
    SHOW(close(99));

    char *m = mmap(0, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
    FACT("mmap of /etc/passwd", m != MAP_FAILED);
    printf("its first 5 bytes: \"%.5s\"\n", m);
    SHOW(munmap(m, 4096));
    SHOW(close(fd));
    SHOW(close(fd));

    /* (musl's sbrk refuses non-zero increments, so ask the kernel directly.) */
    long brk0 = syscall(SYS_brk, 0);
    FACT("brk(brk(0) + 8192) grows the break", syscall(SYS_brk, brk0 + 8192) == brk0 + 8192);
    FACT("brk(0) below the start leaves it", syscall(SYS_brk, 4096) == brk0 + 8192);

    uint64_t fs = 0, self;
    SHOW(syscall(SYS_arch_prctl, 0x1003 /* ARCH_GET_FS */, &fs));
    __asm__("mov %%fs:0, %0" : "=r"(self));
    FACT("FS base is musl's thread pointer (fs:0 points at itself)", fs != 0 && fs == self);
    SHOW(syscall(SYS_arch_prctl, 0x9999, 0));

    /* readv: musl's fread() reads through it (a buffer and the FILE's own, in one call). */
    FILE *pf = fopen("/etc/passwd", "r");
    char big[64];
    size_t got = fread(big, 1, sizeof big, pf);
    printf("fread = %zu, starting \"%.4s\"\n", got, big);
    fclose(pf);
    int rf = open("/etc/passwd", O_RDONLY);
    char first[3], then[5];
    struct iovec v[2] = {{first, 3}, {then, 5}};
    SHOW(readv(rf, v, 2));
    printf("\"%.3s\" then \"%.5s\"\n", first, then);
    SHOW(readv(rf, (struct iovec *)8, 1));
    SHOW(readv(rf, v, -1));
    SHOW(readv(rf, v, 1025));
    SHOW(readv(99, v, 2));
    close(rf);
    int pp[2];
    pipe(pp);
    write(pp[1], "hello", 5);
    char c2[2], c10[10] = {0};
    struct iovec pv[2] = {{c2, 2}, {c10, 10}};
    SHOW(readv(pp[0], pv, 2));
    printf("\"%.2s\" then \"%s\"\n", c2, c10);
    SHOW(readv(pp[1], pv, 2));
    SHOW(writev(pp[0], pv, 2));
    SHOW(readv(pp[1], (struct iovec *)8, 1));
    SHOW(writev(pp[0], (struct iovec *)8, 1));
    close(pp[0]);
    close(pp[1]);

    SHOW(syscall(SYS_reboot, 0xfee1dead, 12345, 0x4321fedc, 0));
    SHOW(setuid(1000));
    SHOW(getuid());
    SHOW(syscall(SYS_reboot, 0xfee1dead, 672274793, 0x4321fedc, 0));
    SHOW(setuid(0));
    return 0;
}
