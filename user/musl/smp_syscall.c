/* The system-call exit, watched from another CPU. A thread that does nothing but system calls
 * leaves the kernel, over and over, by the fast way out (SYSRET, after one look for work); what
 * another CPU asks of it meanwhile must still happen there:
 *   1. a signal sent from another CPU (tgkill) is delivered: its handler runs on that thread;
 *   2. a reschedule asked for by another CPU (sched_setaffinity moving the thread to another
 *      CPU) is honoured: the thread's getcpu soon reports the new CPU;
 *   3. a ptrace stop at a system call's exit shows the tracer every register as the thread set
 *      it — the callee-saved ones too, which the fast path never writes to memory.
 * Each part runs the thread on CPU 1 and acts (or watches) from CPU 0. Only verdicts are
 * printed. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>
#include "pikku_user.h"
#include "pikku_smp.h"

static inline long raw_syscall0(long n) {
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n) : "rcx", "r11", "memory");
    return r;
}

/* 1. A signal from another CPU. */
static volatile int busy_started, handled, handled_tid_ok;
static volatile long busy_tid;

static void on_usr1(int sig) {
    (void)sig;
    handled_tid_ok = raw_syscall0(SYS_gettid) == busy_tid;
    handled = 1;
}

static void *signal_target(void *unused) {
    (void)unused;
    pin_to(1);
    busy_tid = raw_syscall0(SYS_gettid);
    set_flag(&busy_started, 1);
    while (!handled) raw_syscall0(SYS_getpid); /* nothing but system calls */
    return 0;
}

static void signal_part(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, 0);
    pthread_t t;
    pthread_create(&t, 0, signal_target, 0);
    spin_until(&busy_started, 1);
    long r = syscall(SYS_tgkill, getpid(), busy_tid, SIGUSR1);
    pthread_join(t, 0);
    printf("signal from CPU 0 to a thread in a system-call loop on CPU 1: tgkill %ld, handled %s, on that thread %s\n",
           r, handled ? "yes" : "no", handled_tid_ok ? "yes" : "no");
}

/* 2. A reschedule from another CPU. */
static volatile int mover_started, mover_arrived;
static volatile long mover_tid;

static void *reschedule_target(void *unused) {
    (void)unused;
    pin_to(1);
    mover_tid = raw_syscall0(SYS_gettid);
    set_flag(&mover_started, 1);
    while (current_cpu() != 2) raw_syscall0(SYS_getpid); /* nothing but system calls */
    set_flag(&mover_arrived, 1);
    return 0;
}

static void reschedule_part(void) {
    pthread_t t;
    pthread_create(&t, 0, reschedule_target, 0);
    spin_until(&mover_started, 1);
    unsigned long cpu2 = 1ul << 2;
    long r = setaffinity(mover_tid, sizeof cpu2, &cpu2);
    pthread_join(t, 0);
    printf("sched_setaffinity from CPU 0 moving a thread in a system-call loop from CPU 1 to CPU 2: %ld, arrived %s\n",
           r, mover_arrived ? "yes" : "no");
}

/* 3. A ptrace stop at a system call's exit. The tracee (PTRACE_TRACEME) sets every register
 * it can to a known value and sends itself SIGSTOP with a raw kill(): the signal is pending
 * when that very call leaves the kernel, so the stop happens at its exit, and PTRACE_GETREGS
 * must show the registers as they were. (A stop at a call's exit is the only place where a
 * wrong register would show: a stop in user mode, after an interrupt, saves all of them.) */
#define V(n) (0x1010101010101010ull * (n))

static void __attribute__((noreturn)) stop_self_with_registers_set(long pid) {
    __asm__ volatile(
        "mov %1, %%rbx\n mov %2, %%rbp\n mov %3, %%r12\n mov %4, %%r13\n mov %5, %%r14\n"
        "mov %6, %%r15\n mov %7, %%rdx\n mov %8, %%r8\n mov %9, %%r9\n mov %10, %%r10\n"
        "mov %0, %%rdi\n mov $19, %%esi\n mov $62, %%eax\n syscall\n" /* kill(pid, SIGSTOP) */
        "1: pause\n jmp 1b\n"
        :
        : "m"(pid), "m"((uint64_t){V(1)}), "m"((uint64_t){V(2)}), "m"((uint64_t){V(3)}), "m"((uint64_t){V(4)}),
          "m"((uint64_t){V(5)}), "m"((uint64_t){V(6)}), "m"((uint64_t){V(9)}), "m"((uint64_t){V(10)}),
          "m"((uint64_t){V(11)}), "m"((uint64_t){V(12)}));
    __builtin_unreachable();
}

static void ptrace_part(void) {
    pid_t child = fork();
    if (child == 0) {
        pin_to(1);
        ptrace(PTRACE_TRACEME, 0, 0, 0);
        stop_self_with_registers_set(getpid());
    }
    int status = 0;
    pid_t waited = waitpid(child, &status, 0);
    struct user_regs_struct r;
    memset(&r, 0, sizeof r);
    long got = ptrace(PTRACE_GETREGS, child, 0, &r);
    struct { const char *name; unsigned long long seen, want; } regs[] = {
        {"rbx", r.rbx, V(1)}, {"rbp", r.rbp, V(2)}, {"r12", r.r12, V(3)}, {"r13", r.r13, V(4)},
        {"r14", r.r14, V(5)}, {"r15", r.r15, V(6)}, {"rdi", r.rdi, (unsigned long long)child}, {"rsi", r.rsi, 19},
        {"rdx", r.rdx, V(9)}, {"r8", r.r8, V(10)}, {"r9", r.r9, V(11)}, {"r10", r.r10, V(12)},
        {"rax (kill's result)", r.rax, 0}, {"orig_rax", r.orig_rax, 62},
    };
    int n = sizeof regs / sizeof regs[0], wrong = 0;
    for (int i = 0; i < n; i++) {
        if (regs[i].seen != regs[i].want) {
            printf("  %s: %#llx, set to %#llx\n", regs[i].name, regs[i].seen, regs[i].want);
            wrong++;
        }
    }
    /* RCX and R11: what SYSCALL put there, the return RIP (= RIP) and RFLAGS (= EFLAGS). */
    printf("tracee on CPU 1 stopped by its own kill(SIGSTOP): stopped %s (SIGSTOP %s), GETREGS %ld, %d of %d registers as set, "
           "rcx = rip %s, r11 = eflags %s\n",
           waited == child && WIFSTOPPED(status) ? "yes" : "no", WSTOPSIG(status) == SIGSTOP ? "yes" : "no", got, n - wrong, n,
           r.rcx == r.rip ? "yes" : "no", r.r11 == r.eflags ? "yes" : "no");
    kill(child, SIGKILL);
    waitpid(child, &status, 0);
    printf("tracee ended by SIGKILL: %s\n", WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL ? "yes" : "no");
}

int main(void) {
    smp_program_begin("smp_syscall", 30);
    if (allowed_cpus() < 3) {
        printf("needs three CPUs\n");
        return 0;
    }
    pin_to(0);
    signal_part();
    reschedule_part();
    ptrace_part();
    printf("smp_syscall done\n");
    return 0;
}
