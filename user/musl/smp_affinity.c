/* CPU affinity and getcpu as Linux defines them: sched_getaffinity(204), sched_setaffinity(203)
 * and getcpu(309) through raw syscall(), with every size, pointer and pid edge that answers
 * differently, in the order Linux checks them; the CPU count as musl computes it (from the
 * affinity mask); getcpu after pinning to each CPU; a pin inherited across fork, thread
 * creation and exec. Run with one CPU and with four: every line is a count, a verdict or a
 * fixed CPU number, never whatever the scheduler happened to choose. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <sys/wait.h>
#include "pikku_user.h"
#include "pikku_smp.h"

/* "call = 8" / "call = -1 EINVAL": the result and the errno it left. */
#define SHOW(expr) do { long r_ = (long)(expr); int e_ = errno; \
    if (r_ < 0) printf("%s = -1 %s\n", #expr, errname(e_)); else printf("%s = %ld\n", #expr, r_); } while (0)

#define KERNEL_ADDR ((void *)0xffff800000000000ul)
#define NONCANONICAL ((void *)0x0000800000000000ul)

static int ncpus;
static unsigned char buf[4096];

/* The mask's low bits as one number (enough for up to 64 CPUs). */
static unsigned long low_mask(long pid) {
    unsigned long m = 0;
    return getaffinity(pid, sizeof m, &m) == sizeof m ? m : 0;
}

/* Tests that the bytes from `from` on still hold the 0xAA they were filled with. */
static int untouched(const unsigned char *p, long from, long to) {
    for (long i = from; i < to; i++)
        if (p[i] != 0xAA) return 0;
    return 1;
}

/* sched_getaffinity with a buffer of `len` bytes filled with 0xAA: the result, the first byte,
 * and whether the kernel wrote past the count it returned. */
static void get_len(unsigned long len) {
    memset(buf, 0xAA, sizeof buf);
    long r = getaffinity(0, len, buf);
    int e = errno;
    if (r < 0) printf("sched_getaffinity(0, %lu, buf) = -1 %s, buffer untouched: %s\n", len, errname(e), untouched(buf, 0, sizeof buf) ? "yes" : "no");
    else printf("sched_getaffinity(0, %lu, buf) = %ld, first byte 0x%02x, nothing written past it: %s\n", len, r, buf[0], untouched(buf, r, sizeof buf) ? "yes" : "no");
}

/* sched_setaffinity(0, len, mask) for a mask whose first bytes are `first` (rest 0); then
 * where the thread may run. */
static void set_len(unsigned long len, unsigned long first) {
    memset(buf, 0, sizeof buf);
    memcpy(buf, &first, sizeof first);
    long r = setaffinity(0, len, buf);
    int e = errno;
    if (r < 0) printf("sched_setaffinity(0, %lu, 0x%lx) = -1 %s\n", len, first, errname(e));
    else printf("sched_setaffinity(0, %lu, 0x%lx) = %ld, now allowed 0x%lx\n", len, first, r, low_mask(0));
}

static unsigned long all_cpus(void) { return ncpus >= 64 ? ~0ul : (1ul << ncpus) - 1; }

/* A second thread whose tid the main thread uses; it waits until told to check its CPU. */
static volatile int other_tid, other_go, other_cpu = -2, other_done;
static void *other_thread(void *unused) {
    (void)unused;
    set_flag(&other_tid, (int)syscall(SYS_gettid));
    spin_until(&other_go, 1);
    other_cpu = current_cpu();
    set_flag(&other_done, 1);
    return 0;
}

static volatile int clone_cpu = -2;
static volatile unsigned long clone_mask;
static void *report_cpu(void *unused) {
    (void)unused;
    clone_mask = low_mask(0);
    clone_cpu = current_cpu();
    return 0;
}

/* After execve("/init", "after-exec", K): the exec'd program still has the pin to CPU K. */
static int after_exec(int k) {
    int ok = low_mask(0) == 1ul << k && current_cpu() == k;
    return ok ? 40 : 41;
}

int main(int argc, char **argv) {
    if (argc > 2 && !strcmp(argv[1], "after-exec")) return after_exec(atoi(argv[2]));
    smp_program_begin("smp_affinity", 120);

    /* 1. How many CPUs: the mask, and musl's views of it (both sysconf names and get_nprocs
     *    count the bits of sched_getaffinity's mask). */
    ncpus = allowed_cpus();
    printf("CPUs in this thread's affinity mask: %d\n", ncpus);
    printf("sysconf(_SC_NPROCESSORS_ONLN) = %ld, sysconf(_SC_NPROCESSORS_CONF) = %ld\n", sysconf(_SC_NPROCESSORS_ONLN), sysconf(_SC_NPROCESSORS_CONF));
    printf("get_nprocs() = %d, get_nprocs_conf() = %d\n", get_nprocs(), get_nprocs_conf());
    cpu_set_t set;
    CPU_ZERO(&set);
    SHOW(sched_getaffinity(0, sizeof set, &set));
    printf("CPU_COUNT of libc's sched_getaffinity mask: %d\n", CPU_COUNT(&set));

    /* 2. sched_getaffinity sizes: too small for the CPUs, not a multiple of 8, large. */
    unsigned long lens[] = {0, 1, 4, 7, 8, 9, 12, 16, 17, 128, 4096};
    for (unsigned i = 0; i < sizeof lens / sizeof lens[0]; i++) get_len(lens[i]);

    /* 3. sched_getaffinity pointers. */
    unsigned long m = 0;
    char *page = mmap(0, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(page + 2 * 4096, 4096);
    mprotect(page + 4096, 4096, PROT_READ);
    SHOW(getaffinity(0, 8, 0));
    SHOW(getaffinity(0, 0, 0));
    SHOW(getaffinity(0, 8, page + 4096));
    SHOW(getaffinity(0, 8, page + 2 * 4096));
    SHOW(getaffinity(0, 8, KERNEL_ADDR));
    SHOW(getaffinity(0, 8, NONCANONICAL));
    /* The last 8 bytes of a writable page before a read-only one: the kernel copies only the
     * bytes it returns, so a longer len still succeeds. */
    SHOW(getaffinity(0, 16, page + 4096 - 8));
    SHOW(getaffinity(0, 16, page + 4096 - 4));

    /* 4. sched_getaffinity pids: own pid and tid, truncation to pid_t, unknown, negative, and
     *    which comes first, the pid or the size, the pid or the pointer. */
    pid_t me = getpid();
    printf("sched_getaffinity(getpid()) mask == own mask: %s\n", low_mask(me) == low_mask(0) ? "yes" : "no");
    printf("sched_getaffinity(gettid()) mask == own mask: %s\n", low_mask(syscall(SYS_gettid)) == low_mask(0) ? "yes" : "no");
    SHOW(getaffinity((1l << 32) | me, 8, &m));
    SHOW(getaffinity(99999, 8, &m));
    SHOW(getaffinity(-1, 8, &m));
    SHOW(getaffinity(INT_MIN, 8, &m));
    SHOW(getaffinity(99999, 1, &m));
    SHOW(getaffinity(99999, 8, 0));

    /* 5. sched_setaffinity: sizes, masks, pointers, pids. */
    set_len(8, all_cpus());
    set_len(0, all_cpus());
    set_len(1, 1);
    set_len(1, 0);
    set_len(7, all_cpus());
    set_len(9, all_cpus());
    set_len(4096, all_cpus());
    set_len(8, ~0ul);
    set_len(8, ~all_cpus());                /* only CPUs that are not there */
    set_len(8, 1ul << 63);
    set_len(8, 0);
    memset(buf, 0, sizeof buf);
    buf[8] = 1;                             /* CPU 64 alone, in a 16-byte mask */
    SHOW(setaffinity(0, 16, buf));
    SHOW(setaffinity(0, 0, 0));
    SHOW(setaffinity(0, 8, 0));
    SHOW(setaffinity(0, 8, page + 2 * 4096));
    SHOW(setaffinity(0, 8, KERNEL_ADDR));
    m = all_cpus();
    SHOW(setaffinity(99999, 8, &m));
    SHOW(setaffinity(-1, 8, &m));
    SHOW(setaffinity(99999, 8, 0));
    m = 0;
    SHOW(setaffinity(99999, 8, &m));
    m = all_cpus();
    SHOW(setaffinity((1l << 32) | me, 8, &m));
    /* A mask read from a read-only page is fine: it is only read. */
    memcpy(page, &m, sizeof m);
    mprotect(page, 4096, PROT_READ);
    SHOW(setaffinity(0, 8, page));
    printf("allowed after all that: 0x%lx (all %d CPUs: %s)\n", low_mask(0), ncpus, low_mask(0) == all_cpus() ? "yes" : "no");

    /* 6. getcpu: what it writes, NULL and bad pointers, the ignored third argument. */
    unsigned cpu = ~0u, node = ~0u;
    SHOW(raw_getcpu(&cpu, &node));
    /* Unpinned, the CPU (and on a NUMA machine its node) is wherever the thread runs: print
     * only what holds everywhere (every topology the cases boot has no more nodes than CPUs). */
    printf("getcpu: cpu < %d: %s, node < %d: %s\n", ncpus, cpu < (unsigned)ncpus ? "yes" : "no", ncpus, node < (unsigned)ncpus ? "yes" : "no");
    SHOW(raw_getcpu(0, 0));
    SHOW(raw_getcpu(&cpu, 0));
    SHOW(raw_getcpu(0, &node));
    SHOW(raw_getcpu((unsigned *)(page + 4096), 0));
    SHOW(raw_getcpu(0, (unsigned *)(page + 2 * 4096)));
    SHOW(raw_getcpu((unsigned *)KERNEL_ADDR, &node));
    SHOW(syscall(SYS_getcpu, &cpu, &node, (void *)1));
    SHOW(syscall(SYS_getcpu, &cpu, &node, KERNEL_ADDR));

    /* 7. Pinned to each CPU in turn: sched_setaffinity returns with the thread there, and
     * getcpu's node is that CPU's NUMA node (0 without NUMA; with `-numa`, the SRAT's). */
    for (int k = 0; k < ncpus; k++) {
        long r = pin_to(k);
        int e = errno;
        unsigned here = ~0u, its_node = ~0u;
        raw_getcpu(&here, &its_node);
        if (r < 0) printf("pin to CPU %d: -1 %s\n", k, errname(e));
        else printf("pin to CPU %d: 0, getcpu = %u node %u, sysconf(_SC_NPROCESSORS_ONLN) = %ld, get_nprocs() = %d\n", k, here, its_node, sysconf(_SC_NPROCESSORS_ONLN), get_nprocs());
    }
    int last = ncpus - 1;
    m = all_cpus();
    setaffinity(0, 8, &m);

    /* 8. Another thread, by its tid: read its mask, pin it, and it runs there. */
    pthread_t t;
    pthread_create(&t, 0, other_thread, 0);
    while (!other_tid) sched_yield();
    printf("sched_getaffinity(other thread) == all CPUs: %s\n", low_mask(other_tid) == all_cpus() ? "yes" : "no");
    m = 1ul << last;
    SHOW(setaffinity(other_tid, 8, &m));
    printf("other thread's mask is now CPU %d alone: %s; the caller's is unchanged: %s\n", last, low_mask(other_tid) == m ? "yes" : "no", low_mask(0) == all_cpus() ? "yes" : "no");
    set_flag(&other_go, 1);
    spin_until(&other_done, 1);
    pthread_join(t, 0);
    printf("the other thread then ran on CPU %d: %s\n", last, other_cpu == last ? "yes" : "no");

    /* 9. A pin is inherited: by a new thread (clone), by a forked child, across exec. */
    pin_to(last);
    pthread_create(&t, 0, report_cpu, 0);
    pthread_join(t, 0);
    printf("thread created while pinned to CPU %d: mask CPU %d alone: %s, runs there: %s\n", last, last, clone_mask == 1ul << last ? "yes" : "no", clone_cpu == last ? "yes" : "no");
    /* The child checks its own mask and CPU, says so through `checked`, and waits on `go`
     * while the parent reads and then widens its mask. */
    int checked[2], go[2], st;
    char c;
    pipe(checked);
    pipe(go);
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        int ok = low_mask(0) == 1ul << last && current_cpu() == last;
        write(checked[1], "x", 1);
        read(go[0], &c, 1);
        _exit(ok ? 30 : 31);
    }
    read(checked[0], &c, 1);
    printf("sched_getaffinity(child) == CPU %d alone: %s\n", last, low_mask(child) == 1ul << last ? "yes" : "no");
    m = all_cpus();
    SHOW(setaffinity(child, 8, &m));
    printf("the child's mask after the parent widened it: all CPUs: %s\n", low_mask(child) == all_cpus() ? "yes" : "no");
    write(go[1], "x", 1);
    waitpid(child, &st, 0);
    printf("forked child (30 = pinned like its parent): exit %d\n", WEXITSTATUS(st));
    fflush(stdout);
    if ((child = fork()) == 0) {
        char arg[16];
        snprintf(arg, sizeof arg, "%d", last);
        char *args[] = {"/init", "after-exec", arg, 0};
        execve("/init", args, environ);
        _exit(98);
    }
    waitpid(child, &st, 0);
    printf("after execve (40 = still pinned): exit %d\n", WEXITSTATUS(st));
    /* A child that has exited (given 50 ms) but is not reaped yet, a zombie, still has an
     * affinity mask on Linux; once reaped, its pid is unknown. */
    fflush(stdout);
    if ((child = fork()) == 0) _exit(0);
    struct timespec pause_ms = {0, 50 * 1000000};
    nanosleep(&pause_ms, 0);
    SHOW(getaffinity(child, 8, &m));
    waitpid(child, &st, 0);
    SHOW(getaffinity(child, 8, &m));
    return 0;
}
