/* The paths `make trace` single-steps through: each operation sits between two calls of
 * `trace_mark(n)`, and the host's debugger counts every instruction (user and kernel) from one
 * mark to the next. Nothing here measures itself; see boot/src/trace.rs. */
#define _GNU_SOURCE
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <pthread.h>
#include <sched.h>
#include "pikku_user.h"

/* The debugger breaks here; `n` (in rdi) names the operation that follows (UNTRACED: run on,
 * untraced, to the next mark; 0: the end). */
#define UNTRACED 99
__attribute__((noinline)) void trace_mark(int n) { __asm__ volatile("" ::"r"(n)); }

static inline long sys(long n, long a, long b) {
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b) : "rcx", "r11", "memory");
    return r;
}

/* The other thread of the yield round trip: it only ever gives the CPU back. */
static void *yielder(void *arg) {
    (void)arg;
    for (;;) sched_yield();
    return 0;
}

/* The traced operations, each once cold (first use: lazily built state, a stack page, a
 * heap buffer) and then between marks, warm — the steady state, as `make bench` measures. */
static void traced(void) {
    catch_key_faults();
    volatile char *p = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    p[0] = 0;
    long k = sys(SYS_pkey_alloc, 0, PKEY_DISABLE_ACCESS);
    long other = sys(SYS_pkey_alloc, 0, 0);
    for (int warm = 1; warm >= 0; warm--) {
        pk_mprotect((void *)p, 4096, PROT_READ | PROT_WRITE, other); /* so that the traced call changes the key */
        if (!warm) trace_mark(1);
        sys(SYS_getpid, 0, 0);
        if (!warm) trace_mark(2);
        long k2 = sys(SYS_pkey_alloc, 0, 0);
        if (!warm) trace_mark(3);
        sys(SYS_pkey_free, k2, 0);
        if (!warm) trace_mark(4);
        pk_mprotect((void *)p, 4096, PROT_READ | PROT_WRITE, k); /* one present page, to another key */
        wrpkru(rdpkru() | (1u << (2 * k)));
        if (!warm) trace_mark(5);
        p[0] = 1; /* faults; the handler opens the key in the frame; the write completes */
        if (!warm) trace_mark(UNTRACED);
    }
    /* A second thread, with this thread's PKRU (a new thread starts with its creator's), that
     * yields in a loop: one sched_yield here switches to it and, at its own sched_yield, back —
     * two context switches with PKRU unchanged (one CPU). */
    pthread_t t;
    pthread_create(&t, 0, yielder, 0);
    sched_yield();
    sched_yield();
    trace_mark(6);
    sched_yield();
    trace_mark(0);
}

int main(void) {
    /* In a child: Linux reports every fault of init (pid 1) on the console, handled or not
     * (`unhandled_signal()` treats init as unhandled), and that report is not what we trace. */
    pid_t child = fork();
    if (child == 0) {
        traced();
        _exit(0);
    }
    int status;
    waitpid(child, &status, 0);
    /* On Linux: print the kernel's function symbols at their addresses in *this* boot, from
     * /proc/kallsyms (Debian ships its real System.map only in the huge -dbg package). On
     * pikku there is no procfs, and nothing is printed. */
    mkdir("/proc", 0555);
    if (mount("proc", "/proc", "proc", 0, 0) == 0) {
        FILE *f = fopen("/proc/kallsyms", "r");
        char line[512];
        while (f && fgets(line, sizeof line, f)) {
            char *type = strchr(line, ' ');
            if (type && (type[1] == 't' || type[1] == 'T')) fputs(line, stdout);
        }
    }
    return 0;
}
