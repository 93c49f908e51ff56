/* What glibc's start-up, its condition variables and Linux's pkey selftests ask of the kernel
 * beyond the basics, each answer printed so that pikku can be compared with Linux line by line:
 *   futex:  FUTEX_WAIT_BITSET / FUTEX_WAKE_BITSET, FUTEX_CLOCK_REALTIME, absolute timeouts, and
 *           the order of the argument checks;
 *   start-up calls: set_robust_list, prlimit64 / getrlimit, time;
 *   credentials: setgroups, getgroups, getresuid, getresgid, and the drop to uid 1000;
 *   /proc and /sys: nr_hugepages (both paths, who may write), /proc/cpuinfo's pku and ospke.
 * rseq and clone3 are left out: pikku answers them ENOSYS on purpose (see the README).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "pikku_user.h"

/* <linux/futex.h>'s numbers (musl ships no kernel headers). */
#define FUTEX_WAIT 0
#define FUTEX_WAKE 1
#define FUTEX_WAIT_BITSET 9
#define FUTEX_WAKE_BITSET 10
#define FUTEX_PRIVATE_FLAG 128
#define FUTEX_CLOCK_REALTIME 256

static const char *err(long r) {
    static char buf[64];
    if (r >= 0) {
        snprintf(buf, sizeof buf, "%ld", r);
        return buf;
    }
    return errname(errno);
}

static long futex(void *addr, long op, long val, const struct timespec *ts, void *addr2, long val3) {
    return syscall(SYS_futex, addr, op, val, ts, addr2, val3);
}

static uint32_t word = 7;

static void *bitset_waiter(void *arg) {
    long bits = (long)arg;
    long r = futex(&word, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, 7, NULL, NULL, bits);
    return (void *)r;
}

static void futexes(void) {
    struct timespec past = {0, 0}, bad = {0, 1000000000};
    uint32_t unaligned[2];
    /* The order of Linux's checks. */
    printf("bitset 0: %s\n", err(futex(&word, FUTEX_WAIT_BITSET, 7, NULL, NULL, 0)));
    printf("wake bitset 0: %s\n", err(futex(&word, FUTEX_WAKE_BITSET, 1, NULL, NULL, 0)));
    printf("wait_bitset bad timeout pointer: %s\n", err(futex(&word, FUTEX_WAIT_BITSET, 7, (void *)8, NULL, 0)));
    printf("wait_bitset bad nanoseconds, bitset 0: %s\n", err(futex(&word, FUTEX_WAIT_BITSET, 7, &bad, NULL, 0)));
    printf("wait + CLOCK_REALTIME: %s\n", err(futex(&word, FUTEX_WAIT | FUTEX_CLOCK_REALTIME, 7, NULL, NULL, 0)));
    printf("wait + CLOCK_REALTIME, bad timeout: %s\n", err(futex(&word, FUTEX_WAIT | FUTEX_CLOCK_REALTIME, 7, &bad, NULL, 0)));
    printf("wake + CLOCK_REALTIME: %s\n", err(futex(&word, FUTEX_WAKE | FUTEX_CLOCK_REALTIME, 1, NULL, NULL, 0)));
    printf("unknown op 99: %s\n", err(futex(&word, 99, 0, NULL, NULL, 0)));
    printf("unaligned, bitset 0: %s\n", err(futex((char *)unaligned + 1, FUTEX_WAIT_BITSET, 0, NULL, NULL, 0)));
    printf("unaligned: %s\n", err(futex((char *)unaligned + 1, FUTEX_WAIT_BITSET, 0, NULL, NULL, ~0L)));
    printf("wait_bitset value differs: %s\n", err(futex(&word, FUTEX_WAIT_BITSET, 8, NULL, NULL, ~0L)));
    printf("wake_bitset nobody: %s\n", err(futex(&word, FUTEX_WAKE_BITSET, 1, NULL, NULL, ~0L)));
    /* Absolute timeouts: in the past on each clock, then 50 ms ahead. */
    printf("wait_bitset monotonic deadline passed: %s\n", err(futex(&word, FUTEX_WAIT_BITSET, 7, &past, NULL, ~0L)));
    printf("wait_bitset realtime deadline passed: %s\n", err(futex(&word, FUTEX_WAIT_BITSET | FUTEX_CLOCK_REALTIME, 7, &past, NULL, ~0L)));
    for (int realtime = 0; realtime < 2; realtime++) {
        struct timespec start, end, deadline;
        clockid_t clock = realtime ? CLOCK_REALTIME : CLOCK_MONOTONIC;
        clock_gettime(clock, &start);
        deadline = start;
        deadline.tv_nsec += 50000000;
        if (deadline.tv_nsec >= 1000000000) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000;
        }
        long r = futex(&word, FUTEX_WAIT_BITSET | (realtime ? FUTEX_CLOCK_REALTIME : 0), 7, &deadline, NULL, ~0L);
        clock_gettime(clock, &end);
        long ms = (end.tv_sec - start.tv_sec) * 1000 + (end.tv_nsec - start.tv_nsec) / 1000000;
        printf("wait_bitset %s deadline 50 ms ahead: %s, slept %s\n", realtime ? "realtime" : "monotonic", err(r),
               ms >= 49 && ms < 1000 ? "about 50 ms" : "a wrong time");
    }
    /* Two waiters with different bits; a wake with one bit wakes only its waiter. */
    pthread_t a, b;
    pthread_create(&a, NULL, bitset_waiter, (void *)1L);
    pthread_create(&b, NULL, bitset_waiter, (void *)2L);
    struct timespec pause = {0, 100000000};
    nanosleep(&pause, NULL);
    printf("wake_bitset bit 2, both waiting: %s\n", err(futex(&word, FUTEX_WAKE_BITSET | FUTEX_PRIVATE_FLAG, 2, NULL, NULL, 2)));
    printf("wake_bitset bit 2 again: %s\n", err(futex(&word, FUTEX_WAKE_BITSET | FUTEX_PRIVATE_FLAG, 2, NULL, NULL, 2)));
    printf("plain wake: %s\n", err(futex(&word, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 2, NULL, NULL, 0)));
    void *ra, *rb;
    pthread_join(a, &ra);
    pthread_join(b, &rb);
    printf("waiters returned %ld and %ld\n", (long)ra, (long)rb);
}

static void startup_calls(void) {
    char head[24];
    printf("set_robust_list len 0: %s\n", err(syscall(SYS_set_robust_list, head, 0)));
    printf("set_robust_list len 24: %s\n", err(syscall(SYS_set_robust_list, head, 24)));
    struct rlimit rl;
    static const char *names[] = {"CPU", "FSIZE", "DATA", "STACK", "CORE", "RSS", "NPROC", "NOFILE",
                                  "MEMLOCK", "AS", "LOCKS", "SIGPENDING", "MSGQUEUE", "NICE", "RTPRIO", "RTTIME"};
    for (int r = 0; r < 16; r++) {
        long ret = syscall(SYS_prlimit64, 0, r, NULL, &rl);
        if (ret)
            printf("prlimit64 %s: %s\n", names[r], err(ret));
        else if (r == 6 || r == 11)  /* threads-max / 2: compared by the limits case */
            printf("prlimit64 %s: soft %s hard\n", names[r], rl.rlim_cur == rl.rlim_max ? "=" : "!=");
        else
            printf("prlimit64 %s: %lld %lld\n", names[r], (long long)rl.rlim_cur, (long long)rl.rlim_max);
    }
    printf("prlimit64 resource 16: %s\n", err(syscall(SYS_prlimit64, 0, 16, NULL, &rl)));
    printf("prlimit64 bad old: %s\n", err(syscall(SYS_prlimit64, 0, 7, NULL, (void *)8)));
    printf("prlimit64 bad new: %s\n", err(syscall(SYS_prlimit64, 0, 7, (void *)8, NULL)));
    printf("prlimit64 pid 99999: %s\n", err(syscall(SYS_prlimit64, 99999, 7, NULL, &rl)));
    printf("prlimit64 pid 99999, resource 16: %s\n", err(syscall(SYS_prlimit64, 99999, 16, NULL, &rl)));
    printf("prlimit64 resource 16, bad new: %s\n", err(syscall(SYS_prlimit64, 0, 16, (void *)8, NULL)));
    struct rlimit same;
    syscall(SYS_prlimit64, 0, 7, NULL, &same);
    printf("prlimit64 NOFILE to what it is: %s\n", err(syscall(SYS_prlimit64, 0, 7, &same, NULL)));
    printf("setrlimit NOFILE to what it is: %s\n", err(syscall(SYS_setrlimit, 7, &same)));
    printf("setrlimit bad pointer: %s\n", err(syscall(SYS_setrlimit, 7, (void *)8)));
    printf("setrlimit resource 16: %s\n", err(syscall(SYS_setrlimit, 16, &same)));
    struct rlimit inverted = {10, 5};
    printf("prlimit64 soft above hard: %s\n", err(syscall(SYS_prlimit64, 0, 7, &inverted, NULL)));
    printf("getrlimit NOFILE: %s", err(syscall(SYS_getrlimit, 7, &rl)));
    printf(" = %lld %lld\n", (long long)rl.rlim_cur, (long long)rl.rlim_max);
    time_t t = 0;
    long now = syscall(SYS_time, &t);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    printf("time: returned and stored the same: %s; within a second of CLOCK_REALTIME: %s\n",
           now == t ? "yes" : "no", ts.tv_sec - now <= 1 && ts.tv_sec - now >= 0 ? "yes" : "no");
    printf("time bad pointer: %s\n", err(syscall(SYS_time, (void *)8)));
}

static void show_file(const char *path) {
    char buf[64] = {0};
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        printf("open %s: %s\n", path, err(-1));
        return;
    }
    long n = read(fd, buf, sizeof buf - 1);
    close(fd);
    printf("%s: %s", path, n > 0 ? buf : "(empty)\n");
}

#define NR_HUGEPAGES "/proc/sys/vm/nr_hugepages"
#define SYS_NR "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"
#define SYS_FREE "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages"

static void proc_files(int root) {
    show_file(NR_HUGEPAGES);
    show_file(SYS_NR);
    show_file(SYS_FREE);
    int fd = open(NR_HUGEPAGES, O_WRONLY);
    printf("open %s O_WRONLY: %s\n", NR_HUGEPAGES, fd >= 0 ? "ok" : err(-1));
    if (fd >= 0) {
        printf("write \"0\": %s\n", err(write(fd, "0", 1)));
        printf("write \"x\": %s\n", err(write(fd, "x", 1)));
        close(fd);
    }
    fd = open(SYS_FREE, O_WRONLY);
    printf("open free_hugepages O_WRONLY: %s\n", fd >= 0 ? "ok" : err(-1));
    if (fd >= 0) close(fd);
    if (!root) return;
    /* cpuinfo: is there a flags line with pku and ospke? */
    static char text[65536];
    fd = open("/proc/cpuinfo", O_RDONLY);
    long n = 0, r;
    while (fd >= 0 && (r = read(fd, text + n, sizeof text - 1 - n)) > 0) n += r;
    if (fd >= 0) close(fd);
    text[n] = 0;
    char *flags = strstr(text, "\nflags\t\t: ");
    char *end = flags ? strchr(flags + 1, '\n') : NULL;
    if (end) *end = 0;
    printf("/proc/cpuinfo: processor 0 %s; flags has pku: %s, ospke: %s\n", strncmp(text, "processor\t: 0\n", 14) ? "missing" : "first",
           flags && strstr(flags, " pku") ? "yes" : "no", flags && strstr(flags, " ospke") ? "yes" : "no");
}

static void credentials(void) {
    gid_t groups[4] = {5, 3, 9};
    printf("getgroups(0): %s\n", err(getgroups(0, NULL)));
    printf("setgroups 3: %s\n", err(setgroups(3, groups)));
    gid_t got[4] = {0};
    printf("getgroups(0) after: %s\n", err(getgroups(0, NULL)));
    printf("getgroups(1): %s\n", err(getgroups(1, got)));
    long n = getgroups(4, got);
    printf("getgroups(4): %s = %u %u %u\n", err(n), got[0], got[1], got[2]);
    printf("setgroups bad pointer: %s\n", err(setgroups(1, (gid_t *)8)));
    printf("setgroups 65537: %s\n", err(syscall(SYS_setgroups, 65537, groups)));
    printf("setgroups(0, NULL): %s\n", err(setgroups(0, NULL)));
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        printf("drop: setgid %s", err(setgid(1000)));
        printf(", setuid %s\n", err(setuid(1000)));
        unsigned r = 9, e = 9, s = 9;
        printf("getresuid: %s", err(syscall(SYS_getresuid, &r, &e, &s)));
        printf(" = %u %u %u\n", r, e, s);
        printf("getresgid: %s", err(syscall(SYS_getresgid, &r, &e, &s)));
        printf(" = %u %u %u\n", r, e, s);
        printf("getresuid bad pointer: %s\n", err(syscall(SYS_getresuid, &r, (void *)8, &s)));
        printf("as uid 1000: setgroups: %s\n", err(setgroups(0, NULL)));
        printf("as uid 1000: setuid(0): %s\n", err(setuid(0)));
        printf("as uid 1000: getgroups(0): %s\n", err(getgroups(0, NULL)));
        proc_files(0);
        fflush(stdout);
        _exit(0);
    }
    int status;
    waitpid(child, &status, 0);
    printf("child: status %d\n", status);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* Linux's initramfs leaves /proc and /sys unmounted; pikku always has them. */
    int probe = open(NR_HUGEPAGES, O_RDONLY);
    if (probe >= 0) {
        close(probe);
    } else {
        mkdir("/proc", 0555);
        mkdir("/sys", 0555);
        mount("proc", "/proc", "proc", 0, NULL);
        mount("sysfs", "/sys", "sysfs", 0, NULL);
    }
    futexes();
    startup_calls();
    proc_files(1);
    credentials();
    return 0;
}
