/* hostile — the known ways a few lines of C could hurt the kernel (issue #21), one numbered
 * step each. Run on pikku and on Linux (the conformance case `hostile.max`): the kernel must
 * survive every step with Linux's errno. The transcript prints only what Linux does
 * deterministically — errno values, whether a child survived or which signal ended it, counts
 * that do not depend on timing — never addresses or timings.
 *
 *  1. rt_sigreturn with RSP = 0…7 (the frame address wraps below 0): each child dies of SIGSEGV.
 *  2. rt_sigreturn on a forged frame whose fpstate pointer is near ~0: SIGSEGV.
 *  3. sigaltstack with ss_size = ~0 (accepted: above MINSIGSTKSZ), read back, then a signal
 *     delivered on that stack (its top wraps to just below ss_sp, inside a mapped area here).
 *  4. mmap(MAP_FIXED) of the page that ends at 0x800000000000 (above TASK_SIZE = 0x7ffffffff000):
 *     ENOMEM; mprotect and munmap of that page. (Four-level paging: the case runs with
 *     `-cpu max,la57=off`, because with LA57 Linux's user space reaches up to 2^56.)
 *  5. 10,000 fork/exit/wait cycles, every status checked.
 *  6. 1,000 threads alive at once, then joined.
 *  7. Full pipes (64 KiB each) until pipe() fails with EMFILE.
 *  8. 100,000 unknown system calls while an output line is open (pikku logs each one).
 *  9. A 64 TiB PROT_NONE | MAP_NORESERVE reservation with three pages made writable and touched,
 *     then madvise(MADV_DONTNEED) and munmap over the whole of it.
 * 10. A signal handler whose address is not in user space — the first non-canonical address
 *     (2^47), the first kernel-half address, the top user page (unmapped) — and a signal raised:
 *     the child dies of SIGSEGV (the return to a non-canonical RIP must not be tried: IRETQ would
 *     fault in ring 0). */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void ended(const char *what, int st) {
    if (WIFEXITED(st)) printf("%s: exited with %d\n", what, WEXITSTATUS(st));
    else printf("%s: killed by signal %d\n", what, WTERMSIG(st));
}

/* errno's name (musl has no strerrorname_np); "ok" for a result that is not an error. */
static const char *errname(int e) {
    switch (e) {
    case EPERM: return "EPERM"; case ESRCH: return "ESRCH"; case EBADF: return "EBADF";
    case EAGAIN: return "EAGAIN"; case ENOMEM: return "ENOMEM"; case EFAULT: return "EFAULT";
    case EINVAL: return "EINVAL"; case ENFILE: return "ENFILE"; case EMFILE: return "EMFILE";
    case ENOSYS: return "ENOSYS"; case EEXIST: return "EEXIST"; case EPIPE: return "EPIPE";
    default: return "another errno";
    }
}
static const char *err(long r) { return r >= 0 || r < -4095 ? "ok" : errname((int)-r); }

/* A raw system call returning -errno (no libc wrapper in the way). */
static long raw(long n, long a, long b, long c, long d, long e, long f) {
    register long r10 __asm__("r10") = d, r8 __asm__("r8") = e, r9 __asm__("r9") = f;
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9) : "rcx", "r11", "memory");
    return ret;
}

/* Where a forged frame sends RIP: exit_group(0) without touching memory. */
__asm__(".text\n.globl hostile_landing\nhostile_landing:\n\tmov $231, %eax\n\txor %edi, %edi\n\tsyscall\n\tud2\n");
extern char hostile_landing[];

static void step1(void) {
    for (unsigned long rsp = 0; rsp < 8; rsp++) {
        pid_t pid = fork();
        if (pid == 0) {
            __asm__ volatile("mov %0, %%rsp\n\tmov $15, %%eax\n\tsyscall\n\tjmp hostile_landing" : : "r"(rsp) : "memory");
            __builtin_unreachable();
        }
        int st;
        waitpid(pid, &st, 0);
        char what[64];
        snprintf(what, sizeof what, "step 1: rt_sigreturn with rsp=%lu", rsp);
        ended(what, st);
    }
}

static uint64_t frame2[512] __attribute__((aligned(64)));

static void step2(void) {
    static const uint64_t fpstates[] = {~0UL, ~0UL - 7, ~0UL - 4095, ~0UL - 0xfffff};
    for (unsigned i = 0; i < sizeof fpstates / sizeof fpstates[0]; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            /* ucontext at RSP: flags, link, stack (3 words), then the 23 general registers
             * (r8 … r15, rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip, eflags, cs/gs/fs/ss, …),
             * then the fpstate pointer (word 28). */
            memset(frame2, 0, sizeof frame2);
            frame2[20] = (uint64_t)(frame2 + 256);          /* rsp */
            frame2[21] = (uint64_t)hostile_landing;        /* rip */
            frame2[22] = 0x202;                            /* eflags */
            frame2[23] = 0x2b000000000033UL;               /* cs = 0x33, ss = 0x2b */
            frame2[28] = fpstates[i];
            __asm__ volatile("mov %0, %%rsp\n\tmov $15, %%eax\n\tsyscall\n\tjmp hostile_landing" : : "r"(frame2) : "memory");
            __builtin_unreachable();
        }
        int st;
        waitpid(pid, &st, 0);
        char what[64];
        snprintf(what, sizeof what, "step 2: forged frame, fpstate=~0-%lu", ~0UL - fpstates[i]);
        ended(what, st);
    }
}

static volatile int handled;
static void on_usr1(int sig) { (void)sig; handled = 1; }

static void step3(void) {
    pid_t pid = fork();
    if (pid == 0) {
        /* ss_sp in the middle of 1 MiB of our own memory, so that sp + size (wrapping to
         * ss_sp - 1) is a place a frame can be written to. */
        char *area = mmap(0, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        stack_t ss = {.ss_sp = area + (1 << 19), .ss_flags = 0, .ss_size = ~(size_t)0};
        printf("step 3: sigaltstack(size ~0) = %s\n", err(raw(SYS_sigaltstack, (long)&ss, 0, 0, 0, 0, 0)));
        stack_t old;
        memset(&old, 0, sizeof old);
        long r = raw(SYS_sigaltstack, 0, (long)&old, 0, 0, 0, 0);
        /* With a size of ~0 every stack pointer counts as on the alternate stack (Linux:
         * on_sig_stack(), sp - ss_sp < ss_size): SS_ONSTACK, and no change allowed. */
        printf("step 3: sigaltstack(read) = %s, size is ~0: %d, flags %d\n", err(r), old.ss_size == ~(size_t)0, old.ss_flags);
        stack_t again = {.ss_sp = area, .ss_flags = 0, .ss_size = 65536};
        printf("step 3: sigaltstack(set again) = %s\n", err(raw(SYS_sigaltstack, (long)&again, 0, 0, 0, 0, 0)));
        ss.ss_size = ~(size_t)0;
        raw(SYS_sigaltstack, (long)&ss, 0, 0, 0, 0, 0);
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_usr1;
        sa.sa_flags = SA_ONSTACK;
        sigaction(SIGUSR1, &sa, 0);
        fflush(stdout);
        raise(SIGUSR1);
        printf("step 3: signal on that stack: handler ran %d\n", handled);
        fflush(stdout);
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    ended("step 3: child", st);
}

static void step4(void) {
    const unsigned long last = 0x800000000000UL - 4096;
    long r = raw(SYS_mmap, last, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    printf("step 4: mmap(MAP_FIXED) of the page ending at 0x800000000000 = %s\n", err(r));
    r = raw(SYS_mmap, last - 4096, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    printf("step 4: mmap(MAP_FIXED) of the two pages ending there = %s\n", err(r));
    printf("step 4: mprotect of that last page = %s\n", err(raw(SYS_mprotect, last, 4096, PROT_READ, 0, 0, 0)));
    printf("step 4: munmap of that last page = %s\n", err(raw(SYS_munmap, last, 4096, 0, 0, 0, 0)));
}

static void step5(void) {
    int bad = 0, done = 0;
    for (int i = 0; i < 10000; i++) {
        pid_t pid = fork();
        if (pid == 0) _exit(i & 0xff);
        if (pid < 0) { bad++; continue; }
        int st;
        if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != (i & 0xff)) bad++;
        else done++;
    }
    printf("step 5: %d fork/exit/wait cycles with the right status, %d wrong\n", done, bad);
}

#define THREADS 1000
static volatile int arrived, go;
static void *thread_body(void *arg) {
    __atomic_fetch_add(&arrived, 1, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&go, __ATOMIC_SEQ_CST)) syscall(SYS_futex, &go, 128 /* WAIT_PRIVATE */, 0, 0, 0, 0);
    return arg;
}

static void step6(void) {
    static pthread_t t[THREADS];
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    int made = 0, first_error = 0;
    for (; made < THREADS; made++) {
        int e = pthread_create(&t[made], &attr, thread_body, (void *)(long)made);
        if (e) { first_error = e; break; }
    }
    while (__atomic_load_n(&arrived, __ATOMIC_SEQ_CST) < made) sched_yield();
    printf("step 6: %d threads alive at once (%s)\n", made, first_error ? errname(first_error) : "no error");
    __atomic_store_n(&go, 1, __ATOMIC_SEQ_CST);
    syscall(SYS_futex, &go, 129 /* WAKE_PRIVATE */, 0x7fffffff, 0, 0, 0);
    int joined = 0;
    for (int i = 0; i < made; i++) {
        void *ret;
        if (pthread_join(t[i], &ret) == 0 && ret == (void *)(long)i) joined++;
    }
    printf("step 6: %d joined\n", joined);
}

static void step7(void) {
    static char chunk[65536];
    static int fds[1024][2];
    memset(chunk, 'p', sizeof chunk);
    int n = 0, full = 0;
    long r;
    for (;;) {
        r = raw(SYS_pipe, (long)fds[n], 0, 0, 0, 0, 0);
        if (r < 0) break;
        if (write(fds[n][1], chunk, sizeof chunk) == (ssize_t)sizeof chunk) full++;
        n++;
    }
    printf("step 7: %d pipes, %d of them full (64 KiB), then pipe() = %s\n", n, full, err(r));
    for (int i = 0; i < n; i++) { close(fds[i][0]); close(fds[i][1]); }
    int p[2];
    r = raw(SYS_pipe, (long)p, 0, 0, 0, 0, 0);
    printf("step 7: after closing them, pipe() = %s\n", err(r));
    if (r == 0) { close(p[0]); close(p[1]); }
}

static void step8(void) {
    printf("step 8: 100000 unknown system calls with this line open: ");
    fflush(stdout);
    int enosys = 0;
    for (int i = 0; i < 100000; i++)
        if (raw(1000 + (i % 16), 0, 0, 0, 0, 0, 0) == -ENOSYS) enosys++;
    printf("%d ENOSYS\n", enosys);
}

static void step9(void) {
    const unsigned long size = 64UL << 40;
    char *p = (char *)raw(SYS_mmap, 0, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    printf("step 9: mmap 64 TiB PROT_NONE|MAP_NORESERVE = %s\n", err((long)p));
    if ((long)p < 0 && (long)p > -4096L) return;
    char *touch[3] = {p, p + size / 2, p + size - 4096};
    int ok = 0;
    for (int i = 0; i < 3; i++) {
        if (raw(SYS_mprotect, (long)touch[i], 4096, PROT_READ | PROT_WRITE, 0, 0, 0) == 0) { touch[i][0] = 'x'; touch[i][4095] = 'y'; ok++; }
    }
    printf("step 9: %d pages made writable and touched\n", ok);
    printf("step 9: madvise(MADV_DONTNEED) over all 64 TiB = %s\n", err(raw(SYS_madvise, (long)p, size, MADV_DONTNEED, 0, 0, 0)));
    int zero = 0;
    for (int i = 0; i < 3; i++) zero += touch[i][0] == 0 && touch[i][4095] == 0;
    printf("step 9: %d touched pages read back zero\n", zero);
    printf("step 9: munmap of all 64 TiB = %s\n", err(raw(SYS_munmap, (long)p, size, 0, 0, 0, 0)));
}

static void step10(void) {
    static const uint64_t handlers[] = {0x800000000000ull, 0xffff800000000000ull, 0x7ffffffff000ull};
    static const char *const names[] = {"2^47 (non-canonical)", "the kernel half", "the top user page"};
    for (int i = 0; i < 3; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            struct sigaction sa;
            memset(&sa, 0, sizeof sa);
            sa.sa_handler = (void (*)(int))(uintptr_t)handlers[i];
            int r = sigaction(SIGUSR1, &sa, 0);
            printf("step 10: sigaction with a handler at %s = %s\n", names[i], r ? errname(errno) : "0");
            fflush(stdout);
            raise(SIGUSR1);
            printf("step 10: the handler at %s returned\n", names[i]);
            fflush(stdout);
            _exit(0);
        }
        int st;
        waitpid(pid, &st, 0);
        char what[80];
        snprintf(what, sizeof what, "step 10: child with a handler at %s", names[i]);
        ended(what, st);
    }
}

/* `hostile` runs every step; `hostile N` only step N (to look at one on its own). */
int main(int argc, char **argv) {
    static void (*const steps[])(void) = {step1, step2, step3, step4, step5, step6, step7, step8, step9, step10};
    setvbuf(stdout, 0, _IOLBF, 0);
    int only = argc > 1 ? atoi(argv[1]) : 0;
    for (int i = 0; i < 10; i++)
        if (!only || only == i + 1) steps[i]();
    printf("hostile: survived every step\n");
    return 0;
}
