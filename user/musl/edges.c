/* The edges of the user ABI, where a hostile program pokes: each line is a fact Linux defines.
 *
 *   edges bounds  — the top of user space (TASK_SIZE = 0x7ffffffff000) for mmap/munmap/
 *                   mprotect/madvise/brk; sigaltstack with ss_size = ~0; rt_sigreturn with
 *                   rsp in 0..7 and with fpstate near ~0; munmap/madvise/mprotect over a
 *                   64 TiB PROT_NONE | MAP_NORESERVE reservation with a few pages touched.
 *   edges init    — signals to init (pid 1) from user space: only those it has a handler for
 *                   arrive; SIGKILL and SIGSTOP do nothing.
 *   edges sigpipe — a write to a pipe with no reader raises SIGPIPE with its current
 *                   disposition and returns EPIPE.
 *
 * Runs unchanged on Linux and on pikku; `make conformance ONLY=edges` records Linux's lines. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include "pikku_proc.h"

#define TASK_SIZE 0x7ffffffff000UL

/* A raw call's result as "0", "-1 ENOMEM", …: the errno name, not the number's text. */
static const char *err_name(int e) {
    switch (e) {
    case EINVAL: return "EINVAL";
    case ENOMEM: return "ENOMEM";
    case EPERM: return "EPERM";
    case EEXIST: return "EEXIST";
    case EFAULT: return "EFAULT";
    case EPIPE: return "EPIPE";
    case ESRCH: return "ESRCH";
    case ECHILD: return "ECHILD";
    default: return "other";
    }
}

static void result(const char *what, long r) {
    if (r == -1) printf("%s = -1 %s\n", what, err_name(errno));
    else printf("%s = %ld\n", what, r);
}

/* Runs `body` in a child and reports how the child ended. */
static void in_child(const char *what, void (*body)(void)) {
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        body();
        _exit(0);
    }
    int st;
    while (waitpid(c, &st, 0) < 0 && errno == EINTR) {
    }
    status(what, st);
}

static void *mmap_at(unsigned long addr, unsigned long len, int flags) {
    return mmap((void *)addr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | flags, -1, 0);
}

static void map_result(const char *what, void *p) {
    result(what, p == MAP_FAILED ? -1 : 0);
}

/* ---- bounds ---- */

static void top_of_user_space(void) {
    map_result("mmap(MAP_FIXED, TASK_SIZE, 4096)", mmap_at(TASK_SIZE, 4096, MAP_FIXED));
    map_result("mmap(MAP_FIXED, TASK_SIZE - 4096, 8192)", mmap_at(TASK_SIZE - 4096, 8192, MAP_FIXED));
    map_result("mmap(MAP_FIXED_NOREPLACE, TASK_SIZE, 4096)", mmap_at(TASK_SIZE, 4096, MAP_FIXED_NOREPLACE));
    map_result("mmap(MAP_FIXED, 0xffff800000000000, 4096)", mmap_at(0xffff800000000000UL, 4096, MAP_FIXED));
    void *p = mmap_at(TASK_SIZE, 4096, 0);
    printf("mmap(hint TASK_SIZE): placed elsewhere below TASK_SIZE: %d\n",
           p != MAP_FAILED && (unsigned long)p != TASK_SIZE && (unsigned long)p + 4096 <= TASK_SIZE);
    p = mmap_at(TASK_SIZE - 4096, 4096, 0);
    printf("mmap(hint TASK_SIZE - 4096, 4096): below TASK_SIZE: %d\n", p != MAP_FAILED && (unsigned long)p + 4096 <= TASK_SIZE);
    result("munmap(TASK_SIZE, 4096)", munmap((void *)TASK_SIZE, 4096));
    result("munmap(TASK_SIZE - 4096, 8192)", munmap((void *)(TASK_SIZE - 4096), 8192));
    result("munmap(0x800000000000, 4096)", munmap((void *)0x800000000000UL, 4096));
    result("mprotect(TASK_SIZE, 4096, PROT_READ)", mprotect((void *)TASK_SIZE, 4096, PROT_READ));
    result("madvise(TASK_SIZE, 4096, MADV_DONTNEED)", madvise((void *)TASK_SIZE, 4096, MADV_DONTNEED));
    result("madvise(0x1000, ~0xfff, MADV_DONTNEED)", madvise((void *)0x1000, ~0xfffUL, MADV_DONTNEED));
    unsigned long brk0 = syscall(SYS_brk, 0);
    printf("brk(0x800000000000) keeps the break: %d\n", (unsigned long)syscall(SYS_brk, 0x800000000000UL) == brk0);
    printf("brk(~0) keeps the break: %d\n", (unsigned long)syscall(SYS_brk, ~0UL) == brk0);
    /* Process ids at the edge of an int: -INT_MIN does not exist. */
    result("wait4(INT_MIN)", syscall(SYS_wait4, 0x80000000UL, 0, 0, 0));
    result("wait4(-2)", syscall(SYS_wait4, -2L, 0, 0, 0));
    result("kill(INT_MIN, 0)", syscall(SYS_kill, 0x80000000UL, 0));
    result("kill(0x7fffffff, 0)", syscall(SYS_kill, 0x7fffffffUL, 0));
}

static volatile unsigned long handler_sp;
static void record_sp(int sig) {
    (void)sig;
    int here;
    handler_sp = (unsigned long)&here;
}

static void set_onstack_handler(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = record_sp;
    sa.sa_flags = SA_ONSTACK;
    sigaction(SIGUSR1, &sa, 0);
}

/* ss_size = ~0 below the current stack pointer: every sp above ss_sp counts as "on" it. */
static void huge_altstack_below(void) {
    static char buf[65536];
    stack_t ss = {.ss_sp = buf, .ss_flags = 0, .ss_size = ~0UL}, old;
    result("sigaltstack(buf, ss_size ~0)", sigaltstack(&ss, 0));
    sigaltstack(0, &old);
    printf("old: sp is buf %d, size ~0 %d, flags %d\n", old.ss_sp == buf, old.ss_size == ~0UL, old.ss_flags);
    set_onstack_handler();
    raise(SIGUSR1);
    printf("SA_ONSTACK handler ran on buf: %d, ran: %d\n", handler_sp - (unsigned long)buf < sizeof buf, handler_sp != 0);
    stack_t small = {.ss_sp = buf, .ss_flags = 0, .ss_size = sizeof buf};
    result("sigaltstack(buf, 65536) while 'on' the huge one", sigaltstack(&small, 0));
    stack_t off = {.ss_flags = SS_DISABLE};
    result("sigaltstack(SS_DISABLE) while 'on' it", sigaltstack(&off, 0));
    fflush(stdout);
}

/* ss_sp above the stack pointer, ss_size = ~0: ss_sp + ss_size wraps to ss_sp - 1. */
static void huge_altstack_above(void) {
    stack_t ss = {.ss_sp = (void *)TASK_SIZE, .ss_flags = 0, .ss_size = ~0UL};
    sigaltstack(&ss, 0);
    set_onstack_handler();
    raise(SIGUSR1);
}

/* An alternate stack in the kernel half. */
static void kernel_altstack(void) {
    stack_t ss = {.ss_sp = (void *)0xffff800000000000UL, .ss_flags = 0, .ss_size = 65536};
    sigaltstack(&ss, 0);
    set_onstack_handler();
    raise(SIGUSR1);
}

static unsigned long tiny_rsp;
static void sigreturn_tiny_rsp(void) {
    __asm__ volatile("mov %0, %%rsp\nmov $15, %%eax\nsyscall\nud2" ::"r"(tiny_rsp) : "memory");
}

static void landed(void) {
    _exit(42);
}

/* A frame that is valid but for its fpstate pointer. */
static unsigned long forged_fpstate;
static void sigreturn_forged_fpstate(void) {
    static unsigned long fake[64];
    static unsigned long stack[1024] __attribute__((aligned(16)));
    memset(fake, 0, sizeof fake);
    unsigned long *sc = fake + 1 + 5; /* after pretcode and uc_flags/link/stack */
    sc[15] = (unsigned long)&stack[1022]; /* rsp */
    sc[16] = (unsigned long)landed;       /* rip */
    sc[17] = 0x202;                       /* eflags */
    sc[18] = 0x002b000000000033UL;        /* cs 0x33, ss 0x2b */
    sc[23] = forged_fpstate;              /* fpstate */
    __asm__ volatile("mov %0, %%rsp\nmov $15, %%eax\nsyscall\nud2" ::"r"(fake + 1) : "memory");
}

static void huge_reservation(void) {
    const unsigned long big = 64UL << 40;
    char *r = mmap(0, big, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    printf("mmap(64 TiB, PROT_NONE, MAP_NORESERVE) ok: %d\n", r != MAP_FAILED);
    if (r == MAP_FAILED) return;
    const unsigned long at[] = {0, 4096, (1UL << 39) + 8192, (1UL << 30) * 3, big / 2, big - 4096};
    int ok = 1;
    for (unsigned i = 0; i < sizeof at / sizeof at[0]; i++) {
        ok &= mprotect(r + at[i], 4096, PROT_READ | PROT_WRITE) == 0;
        r[at[i]] = 'x';
    }
    printf("six pages made writable and touched: %d\n", ok);
    result("madvise(64 TiB, MADV_DONTNEED)", madvise(r, big, MADV_DONTNEED));
    int zero = 1;
    for (unsigned i = 0; i < sizeof at / sizeof at[0]; i++) zero &= r[at[i]] == 0;
    printf("the touched pages read back zero: %d\n", zero);
    result("madvise(64 TiB, MADV_NORMAL)", madvise(r, big, MADV_NORMAL));
    result("mprotect(64 TiB, PROT_READ)", mprotect(r, big, PROT_READ));
    printf("a page reads zero after: %d\n", r[big / 2] == 0);
    result("mprotect(64 TiB, PROT_NONE)", mprotect(r, big, PROT_NONE));
    result("munmap(64 TiB)", munmap(r, big));
    result("madvise(the unmapped 64 TiB, MADV_DONTNEED)", madvise(r, big, MADV_DONTNEED));
}

static void bounds(void) {
    top_of_user_space();
    in_child("sigaltstack with ss_size ~0 below the stack", huge_altstack_below);
    in_child("SA_ONSTACK signal, ss_sp = TASK_SIZE, ss_size ~0", huge_altstack_above);
    in_child("SA_ONSTACK signal, alternate stack in the kernel half", kernel_altstack);
    for (tiny_rsp = 0; tiny_rsp < 8; tiny_rsp += 3) {
        char what[64];
        snprintf(what, sizeof what, "rt_sigreturn with rsp = %lu", tiny_rsp);
        in_child(what, sigreturn_tiny_rsp);
    }
    const unsigned long fp[] = {0, ~0UL - 7, ~0UL - 511, TASK_SIZE - 64, 0x800000000000UL - 64};
    for (unsigned i = 0; i < sizeof fp / sizeof fp[0]; i++) {
        char what[80];
        forged_fpstate = fp[i];
        snprintf(what, sizeof what, "rt_sigreturn, forged frame with fpstate = %#lx", fp[i]);
        in_child(what, sigreturn_forged_fpstate);
    }
    huge_reservation();
}

/* ---- init ---- */

static volatile int terms, usr1s;
static void on_term(int sig) {
    if (sig == SIGTERM) terms++;
    else usr1s++;
}

static void kill_init_fatally(void) {
    result("child: kill(1, SIGKILL)", kill(1, SIGKILL));
    result("child: kill(1, SIGSTOP)", kill(1, SIGSTOP));
    result("child: kill(1, SIGTERM) (default action)", kill(1, SIGTERM));
    result("child: kill(1, SIGSEGV) (default action)", kill(1, SIGSEGV));
    result("child: kill(1, SIGCHLD)", kill(1, SIGCHLD));
    fflush(stdout);
}

static void kill_init_handled(void) {
    result("child: kill(1, SIGTERM) (handled)", kill(1, SIGTERM));
    result("child: kill(1, SIGUSR1) (ignored)", kill(1, SIGUSR1));
    result("child: kill(1, SIGKILL)", kill(1, SIGKILL));
    fflush(stdout);
}

static void init(void) {
    printf("I am pid %d\n", getpid());
    in_child("a child sends init fatal signals", kill_init_fatally);
    printf("init still runs\n");
    signal(SIGTERM, on_term);
    signal(SIGUSR1, SIG_IGN);
    in_child("a child sends init handled and ignored signals", kill_init_handled);
    printf("init still runs; SIGTERM handled %d times, SIGUSR1 %d\n", terms, usr1s);
    signal(SIGTERM, SIG_DFL);
    result("init: kill(1, SIGKILL)", kill(1, SIGKILL));
    result("init: kill(0, SIGTERM)", kill(0, SIGTERM));
    result("init: raise(SIGTERM)", raise(SIGTERM));
    int p[2];
    pipe(p);
    close(p[0]);
    result("init: write to a pipe with no reader (SIGPIPE default)", write(p[1], "x", 1));
    printf("init still runs\n");
}

/* ---- sigpipe ---- */

static volatile int pipes;
static void on_pipe(int sig) {
    (void)sig;
    pipes++;
}

static long write_broken_pipe(void) {
    int p[2];
    pipe(p);
    close(p[0]);
    return write(p[1], "x", 1);
}

static void pipe_default(void) {
    write_broken_pipe();
    printf("not reached\n");
}

static void pipe_ignored(void) {
    signal(SIGPIPE, SIG_IGN);
    result("SIG_IGN: write", write_broken_pipe());
    fflush(stdout);
}

static void pipe_handled(void) {
    signal(SIGPIPE, on_pipe);
    result("handled: write", write_broken_pipe());
    printf("handled: the handler ran %d times\n", pipes);
    int p[2];
    pipe(p);
    close(p[0]);
    char two[2] = "ab";
    struct iovec {
        void *base;
        size_t len;
    } v[2] = {{two, 1}, {two + 1, 1}};
    result("handled: writev", syscall(SYS_writev, p[1], v, 2));
    printf("handled: the handler ran %d times\n", pipes);
    fflush(stdout);
}

/* Blocked, SIGPIPE waits; unblocking it delivers it (default action: the end). */
static void pipe_blocked(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigprocmask(SIG_BLOCK, &set, 0);
    result("blocked: write", write_broken_pipe());
    printf("blocked: still running\n");
    fflush(stdout);
    sigprocmask(SIG_UNBLOCK, &set, 0);
    printf("blocked: not reached after unblocking\n");
}

static void sigpipe(void) {
    in_child("SIGPIPE default", pipe_default);
    in_child("SIGPIPE ignored", pipe_ignored);
    in_child("SIGPIPE handled", pipe_handled);
    in_child("SIGPIPE blocked", pipe_blocked);
}

int main(int argc, char **argv) {
    setvbuf(stdout, 0, _IOLBF, 0);
    const char *what = argc > 1 ? argv[1] : "";
    if (!strcmp(what, "bounds")) bounds();
    else if (!strcmp(what, "init")) init();
    else if (!strcmp(what, "sigpipe")) sigpipe();
    else {
        printf("usage: edges bounds|init|sigpipe\n");
        return 2;
    }
    return 0;
}
