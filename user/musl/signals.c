/* Signals that carry keys: a SEGV_PKUERR handler reads si_code, si_pkey, si_addr and the
 * interrupted PKRU from the frame's XSAVE area, writes 0 there, and returns; the access then
 * succeeds. Plus PKRU across a handled SIGUSR1, the handler's own PKRU, SA_RESETHAND, a signal
 * that interrupts pause(), an alternate stack, and hostile frames. Printed facts only. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <sched.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>
#include "pikku_user.h"
#include "pikku_proc.h"

static volatile int segv_count, usr1_count, term_flag;
static volatile int seen_code, seen_pkey, seen_addr_ok, seen_handler_pkru_ok;
static volatile uint32_t seen_frame_pkru;
static char *page;

static void on_segv(int sig, siginfo_t *si, void *ctx) {
    (void)sig;
    ucontext_t *uc = ctx;
    segv_count++;
    seen_code = si->si_code;
    seen_pkey = (int)si->si_pkey;
    seen_addr_ok = si->si_addr == page;
    seen_handler_pkru_ok = rdpkru() == 0x55555554;
    seen_frame_pkru = *frame_pkru(uc);
    *frame_pkru(uc) = 0; /* the interrupted code resumes with every key open */
}

static void on_usr1(int sig) { (void)sig; usr1_count++; }

/* pkey_sighandler_tests: the handler reports through its exit status, since the interrupted
 * code cannot continue: 10 * si_code + (handler saw the default PKRU) + 2 * (si_addr == 1). */
static void report_and_exit(int sig, siginfo_t *si, void *ctx) {
    (void)sig; (void)ctx;
    _exit(10 * si->si_code + (rdpkru() == 0x55555554) + 2 * (si->si_addr == (void *)1));
}

/* pkey_sighandler_tests with a thread whose stack has its own key. */
static char alt2[16384];
static long stack_key;

__attribute__((no_stack_protector)) static void altstack_report(int sig, siginfo_t *si, void *ctx) {
    (void)sig; (void)ctx;
    char local;
    int on_alt = &local >= alt2 && &local < alt2 + sizeof alt2;
    syscall(SYS_exit_group, 10 * si->si_code + on_alt);
}

__attribute__((no_stack_protector)) static int stack_thread_mapping(void *arg) {
    (void)arg;
    stack_t ss = {.ss_sp = alt2, .ss_size = sizeof alt2};
    sigaltstack(&ss, 0);
    wrpkru(0x55555551 & ~(3u << (2 * stack_key))); /* key 0 denied, the stack's key open */
    __asm__ volatile("movl $1, 1" ::: "memory"); /* *(int *)1 = 1 */
    return 0;
}

/* test_pkru_sigreturn: the thread on the keyed stack denies key 0 (only its stack's key
 * open), raises SIGUSR2 at itself, and the handler runs on the key-0 alternate stack with the
 * default PKRU, so it may call printf. sigreturn must put back the thread's PKRU (and leave the
 * alternate stack usable again), or the thread cannot resume. While key 0 is denied the thread
 * touches nothing of key 0 — no libc call (raw `syscall` instructions), no global, no .rodata,
 * no TLS, hence no stack protector (its canary is read from the main thread's TLS). */
__attribute__((no_stack_protector)) static void sigusr2_printf(int sig, siginfo_t *si, void *ctx) {
    (void)sig; (void)si; (void)ctx;
    char local;
    printf("SIGUSR2 handler: PKRU 0x%08x, on the alternate stack: %s\n", rdpkru(),
           &local >= alt2 && &local < alt2 + sizeof alt2 ? "yes" : "no");
    fflush(stdout);
}

static inline __attribute__((always_inline)) long raw_syscall3(long n, long a, long b, long c) {
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return ret;
}

__attribute__((no_stack_protector)) static int stack_thread_sigusr2(void *arg) {
    (void)arg;
    /* The message is built on this stack now: the compiler copies such initialisers from
     * .rodata, which is key-0 memory and out of reach once key 0 is denied. */
    volatile char msg[] = {'t', 'h', 'r', 'e', 'a', 'd', ' ', 'r', 'e', 's', 'u', 'm', 'e', 'd', ';', ' ',
                           'P', 'K', 'R', 'U', ' ', 'a', 's', ' ', 'b', 'e', 'f', 'o', 'r', 'e', ':', ' ',
                           'n', 'o', '\n', '\n'};
    stack_t ss = {.ss_sp = alt2, .ss_size = sizeof alt2};
    sigaltstack(&ss, 0);
    uint32_t mine = 0x55555555u & ~(3u << (2 * stack_key)); /* key 0 denied, the stack's key open */
    wrpkru(mine);
    /* From here on: registers and this (keyed) stack only. */
    raw_syscall3(SYS_tkill, raw_syscall3(SYS_gettid, 0, 0, 0), SIGUSR2, 0);
    uint32_t now = rdpkru();
    long len = sizeof msg - 1; /* "no\n" */
    if (now == mine) { msg[32] = 'y'; msg[33] = 'e'; msg[34] = 's'; len = sizeof msg; }
    raw_syscall3(SYS_write, 1, (long)msg, len);
    raw_syscall3(SYS_exit, 0, 0, 0);
    return 0;
}

static void run_on_keyed_stack(int (*fn)(void *), const char *what) {
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        stack_key = pk_alloc(0, 0);
        char *stack = mmap(0, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        pk_mprotect(stack, 65536, PROT_READ | PROT_WRITE, stack_key);
        int tid = clone(fn, stack + 65536 - 64, CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM, 0);
        /* As the selftest waits: until the thread is gone (or the process ends under us). */
        while (syscall(SYS_tkill, tid, 0) == 0) sched_yield();
        _exit(0);
    }
    int st;
    waitpid(c, &st, 0);
    status(what, st);
}

static int corrupt_kind;
static void corrupt_fpstate(int sig, siginfo_t *si, void *ctx) {
    (void)sig; (void)si;
    unsigned char *fx = (unsigned char *)((ucontext_t *)ctx)->uc_mcontext.fpregs;
    if (corrupt_kind == 0) *(uint32_t *)(fx + 24) |= 1u << 31;   /* MXCSR bit 31: reserved */
    else if (corrupt_kind == 1) fx[530] = 1;                     /* XSAVE header bytes 520..575 */
    else *(uint64_t *)(fx + 512) |= 1ull << 62;                  /* XSTATE_BV bit 62 */
}

static void __attribute__((noinline)) deny_everything_and_return(void) {
    wrpkru(0x55555555); /* key 0 too: the stack becomes inaccessible */
}
static void on_term(int sig) { (void)sig; term_flag = 1; }

static volatile int on_alt;
static char altstack[16384];
static void on_usr2(int sig) {
    (void)sig;
    char local;
    on_alt = &local >= altstack && &local < altstack + sizeof altstack;
}

static void disable_altstack_on_return(int sig, siginfo_t *si, void *ctx) {
    (void)sig, (void)si;
    ((ucontext_t *)ctx)->uc_stack.ss_flags = SS_DISABLE;
}

/* The interrupted code's FPU state survives a handler, and the handler starts from a clean
 * one: xmm2 and MXCSR (rounding mode "down") are set, SIGUSR1 is raised by a `syscall` inside
 * the same asm block (so the compiler cannot spill or reload them), and read back after
 * sigreturn; the handler records what it found and then clobbers both. */
static volatile uint64_t handler_xmm2;
static volatile uint32_t handler_mxcsr;
static void look_at_fpu(int sig) {
    (void)sig;
    uint64_t x;
    uint32_t m, down = 0x3f80 ^ 0x6000; /* round up: not the caller's, not the default */
    __asm__ volatile("movq %%xmm2, %0\n stmxcsr %1" : "=r"(x), "=m"(m));
    handler_xmm2 = x;
    handler_mxcsr = m;
    __asm__ volatile("pcmpeqd %%xmm2, %%xmm2\n ldmxcsr %0" : : "m"(down) : "xmm2");
}

/* Who sent it: si_code SI_USER (0) for kill(), SI_TKILL (-6) for tgkill()/tkill() (musl's
 * raise()), and si_pid/si_uid of the sender. */
static volatile int sender_code, sender_pid_ok, sender_uid;
static void who_sent(int sig, siginfo_t *si, void *ctx) {
    (void)sig; (void)ctx;
    sender_code = si->si_code;
    sender_pid_ok = si->si_pid == getpid();
    sender_uid = (int)si->si_uid;
}

static void senders(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = who_sent;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGUSR1, &sa, 0);
    kill(getpid(), SIGUSR1);
    printf("kill(): si_code %d, si_pid is mine: %s, si_uid %d\n", sender_code, sender_pid_ok ? "yes" : "no", sender_uid);
    raise(SIGUSR1);
    printf("raise(): si_code %d, si_pid is mine: %s, si_uid %d\n", sender_code, sender_pid_ok ? "yes" : "no", sender_uid);
    signal(SIGUSR1, SIG_DFL);
}

/* Nested handlers, each level with its own PKRU: main runs with A; H1 (SIGUSR1) starts with
 * the default, switches to B and raises SIGUSR2; H2 sees B in its frame, writes C there and
 * returns, so H1 resumes with C; H1 returns and main has A again. With SIGUSR2 in H1's sa_mask
 * instead, SIGUSR2 waits until H1's sigreturn and then interrupts main: H2's frame holds A, H2
 * writes D, and main resumes with D. */
static volatile uint32_t h1_start, h1_after, h2_start, h2_frame;
static void h2(int sig, siginfo_t *si, void *ctx) {
    (void)sig; (void)si;
    h2_start = rdpkru();
    h2_frame = *frame_pkru(ctx);
    *frame_pkru(ctx) = h2_frame == 0x55555544 ? 0x55555514 /* C */ : 0x55555410 /* D */;
}
static void h1(int sig) {
    (void)sig;
    h1_start = rdpkru();
    wrpkru(0x55555544); /* B */
    raise(SIGUSR2);
    h1_after = rdpkru();
}

static void nested(int mask_usr2) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = h2;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGUSR2, &sa, 0);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = h1;
    if (mask_usr2) sigaddset(&sa.sa_mask, SIGUSR2);
    sigaction(SIGUSR1, &sa, 0);
    h1_start = h1_after = h2_start = h2_frame = 0;
    wrpkru(0x55555550); /* A */
    raise(SIGUSR1);
    uint32_t main_after = rdpkru();
    wrpkru(0x55555554);
    printf("nested%s: H1 started with 0x%08x, resumed with 0x%08x; H2 started with 0x%08x, its frame held 0x%08x; main resumed with 0x%08x\n",
           mask_usr2 ? " (SIGUSR2 in H1's sa_mask)" : "", h1_start, h1_after, h2_start, h2_frame, main_after);
    signal(SIGUSR1, SIG_DFL);
    signal(SIGUSR2, SIG_DFL);
}

static void fpu_across_a_handler(void) {
    signal(SIGUSR1, look_at_fpu);
    uint64_t in = 0x1122334455667788ull, out;
    uint32_t mx = 0x3f80, mx_after, dflt = 0x1f80;
    long nr = SYS_kill;
    __asm__ volatile("ldmxcsr %[mx]\n movq %[in], %%xmm2\n syscall\n movq %%xmm2, %[out]\n stmxcsr %[mxa]\n ldmxcsr %[dflt]"
                     : [out] "=r"(out), [mxa] "=m"(mx_after), "+a"(nr)
                     : [in] "r"(in), [mx] "m"(mx), [dflt] "m"(dflt), "D"((long)getpid()), "S"((long)SIGUSR1)
                     : "rcx", "r11", "xmm2", "memory");
    printf("FPU state across a handler: xmm2 %s, MXCSR 0x%04x; the handler started with xmm2 = %llu and MXCSR 0x%04x\n",
           out == in ? "kept" : "LOST", mx_after, (unsigned long long)handler_xmm2, handler_mxcsr);
    signal(SIGUSR1, SIG_DFL);
}

/* CPUID.1:ECX[27] — the OS has enabled XSAVE (so signal frames carry an XSAVE image). */
static int osxsave(void) {
    uint32_t a = 1, b, c = 0, d;
    __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
    return (c >> 27) & 1;
}

/* The cases that need protection keys (skipped on a CPU without PKU). */
static void key_cases(void) {
    struct sigaction sa;
    pid_t c;
    int st;
    /* 1. A protection-key fault caught and repaired by its handler. */
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    printf("sigaction(SIGSEGV) = %d\n", sigaction(SIGSEGV, &sa, 0));
    page = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    long k = pk_alloc(0, PKEY_DISABLE_ACCESS);
    pk_mprotect(page, 4096, PROT_READ | PROT_WRITE, k);
    wrpkru(0x55555544); /* key 1 access-disabled, key 2 open: not the default */
    uint32_t before = rdpkru();
    page[0] = 42; /* faults once; the handler opens every key in the frame */
    __asm__ volatile("" ::: "memory");
    printf("handler ran %d time(s); si_code = %d (SEGV_PKUERR = 4), si_pkey = %d (key %ld), si_addr is the page: %s\n",
           segv_count, seen_code, seen_pkey, k, seen_addr_ok ? "yes" : "no");
    printf("PKRU in the frame = 0x%08x (the interrupted value was 0x%08x); handler ran with 0x55555554: %s\n",
           seen_frame_pkru, before, seen_handler_pkru_ok ? "yes" : "no");
    printf("after sigreturn: rdpkru = 0x%08x, the write went through: %d\n", rdpkru(), page[0]);
    wrpkru(0x55555554);

    /* 2. PKRU is preserved across a handled signal (test_pkru_preserved_after_sigusr1). */
    signal(SIGUSR1, on_usr1);
    wrpkru(0x45454544);
    raise(SIGUSR1);
    printf("SIGUSR1 handled %d time(s); PKRU after it = 0x%08x\n", usr1_count, rdpkru());
    wrpkru(0x55555554);

    /* 5b. test_sigsegv_handler_with_pkey0_disabled: PKRU = 0x55555555, *(int *)1 = 1 -> the
     *     handler still runs (the frame is written with every key open), on the default PKRU,
     *     with SEGV_MAPERR and si_addr 1. */
    if ((c = fork()) == 0) {
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = report_and_exit;
        sa.sa_flags = SA_SIGINFO;
        sigaction(SIGSEGV, &sa, 0);
        wrpkru(0x55555555);
        __asm__ volatile("movl $1, 1" ::: "memory"); /* *(int *)1 = 1, without the compiler's complaint */
        _exit(99);
    }
    waitpid(c, &st, 0);
    status("key 0 denied, write to address 1 (13 = SEGV_MAPERR, default PKRU, si_addr 1)", st);
    /* 5c. test_sigsegv_handler_cannot_access_stack: PKRU = 0x55555555, then return: the stack
     *     access faults with SEGV_PKUERR, and the handler still gets its frame. */
    if ((c = fork()) == 0) {
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = report_and_exit;
        sa.sa_flags = SA_SIGINFO;
        sigaction(SIGSEGV, &sa, 0);
        deny_everything_and_return();
        _exit(99);
    }
    waitpid(c, &st, 0);
    status("key 0 denied, then a stack access (41 = SEGV_PKUERR, default PKRU)", st);

    /* 5d. test_sigsegv_handler_with_different_pkey_for_stack: a thread on a key-1 stack with
     *     PKRU 0x55555551, a key-0 alternate stack; *(int *)1 = 1 -> SEGV_MAPERR on the altstack. */
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = altstack_report;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigaction(SIGSEGV, &sa, 0);
    run_on_keyed_stack(stack_thread_mapping, "thread on a keyed stack, key 0 denied, fault (11 = SEGV_MAPERR on the altstack)");
    /* 5e. test_pkru_sigreturn: SIGSEGV back to its default (a fault must kill); SIGUSR2 on the
     *     alternate stack; the thread resumes after sigreturn with its own PKRU and writes. */
    signal(SIGSEGV, SIG_DFL);
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = sigusr2_printf;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigaction(SIGUSR2, &sa, 0);
    run_on_keyed_stack(stack_thread_sigusr2, "thread on a keyed stack, key 0 denied, SIGUSR2 on the altstack, sigreturn");
}

int main(void) {
    int pk = ospke();
    printf("protection keys: %s\n", pk ? "yes" : "no");
    struct sigaction sa;
    pid_t c;
    int st;
    fpu_across_a_handler();
    senders();

    /* 3. An alternate stack. */
    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
    printf("sigaltstack = %d\n", sigaltstack(&ss, 0));
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr2;
    sa.sa_flags = SA_ONSTACK;
    sigaction(SIGUSR2, &sa, 0);
    raise(SIGUSR2);
    printf("SIGUSR2 handler ran on the alternate stack: %s\n", on_alt ? "yes" : "no");
    /* 3b. rt_sigreturn sets the alternate stack from uc_stack as sigaltstack would — which
     * refuses while running on it. A handler on the alternate stack (entered from the main
     * stack) writes SS_DISABLE there: Linux 6.12 leaves the alternate stack on (flags 0), so
     * the "running on it" test sees the handler's stack, not the restored one. */
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = disable_altstack_on_return;
    sa.sa_flags = SA_ONSTACK | SA_SIGINFO;
    sigaction(SIGUSR2, &sa, 0);
    raise(SIGUSR2);
    stack_t now;
    memset(&now, 0, sizeof now);
    sigaltstack(0, &now);
    printf("handler on the alternate stack wrote SS_DISABLE into uc_stack: after sigreturn, flags %d\n", now.ss_flags);
    printf("sigaltstack again = %d\n", sigaltstack(&ss, 0));

    /* 4. A signal from the parent interrupts pause() in the child, whose handler runs. */
    fflush(stdout);
    c = fork();
    if (c == 0) {
        signal(SIGTERM, on_term);
        while (!term_flag) pause();
        _exit(3);
    }
    struct timespec t = {0, 20000000};
    nanosleep(&t, 0);
    kill(c, SIGTERM);
    waitpid(c, &st, 0);
    status("child with a SIGTERM handler", st);

    /* 5. SA_RESETHAND: the second signal takes the default action. */
    if ((c = fork()) == 0) {
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_usr1;
        sa.sa_flags = SA_RESETHAND;
        sigaction(SIGUSR1, &sa, 0);
        raise(SIGUSR1);
        raise(SIGUSR1);
        _exit(0);
    }
    waitpid(c, &st, 0);
    status("SA_RESETHAND, raised twice", st);

    if (pk) {
        key_cases();
        nested(0);
        nested(1);
    }
    /* From here on SIGSEGV has its default action. */
    signal(SIGSEGV, SIG_DFL);

    /* 6. Hostile frames and handlers: each kills the process with SIGSEGV. */
    if ((c = fork()) == 0) {
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = (void (*)(int))0xffff800000001000UL; /* a kernel address */
        sigaction(SIGUSR1, &sa, 0);
        raise(SIGUSR1);
        _exit(0);
    }
    waitpid(c, &st, 0);
    status("handler at a kernel address", st);
    for (int v = 0; v < 2; v++) {
        if ((c = fork()) == 0) {
            /* A forged frame: rt_sigreturn with kernel selectors / a non-canonical RIP. */
            static unsigned long fake[64];
            memset(fake, 0, sizeof fake);
            unsigned long *sc = fake + 1 + 5; /* after pretcode and uc_flags/link/stack */
            sc[16] = v ? 0x0000800000000000UL : (unsigned long)main; /* rip */
            sc[18] = v ? 0x2b000000000033UL : 0x0018000000000010UL; /* cs, gs, fs, ss */
            __asm__ volatile("mov %0, %%rsp\nmov $15, %%eax\nsyscall" ::"r"(fake + 1) : "memory");
            _exit(0);
        }
        waitpid(c, &st, 0);
        status(v ? "rt_sigreturn to a non-canonical RIP" : "rt_sigreturn with a kernel CS", st);
    }
    /* A handler that corrupts the FPU image in its frame: a reserved MXCSR bit, a reserved
     * byte of the XSAVE header, an XSTATE_BV bit XCR0 does not have. XRSTOR would #GP on each;
     * rt_sigreturn must turn that into SIGSEGV for the program, not a kernel fault. */
    for (int v = 0; v < (osxsave() ? 3 : 1); v++) { /* the header cases need an XSAVE image */
        if ((c = fork()) == 0) {
            corrupt_kind = v;
            memset(&sa, 0, sizeof sa);
            sa.sa_sigaction = corrupt_fpstate;
            sa.sa_flags = SA_SIGINFO;
            sigaction(SIGUSR1, &sa, 0);
            raise(SIGUSR1);
            _exit(0);
        }
        waitpid(c, &st, 0);
        static const char *what[] = {"frame with a reserved MXCSR bit", "frame with a reserved XSAVE header byte",
                                     "frame with an XSTATE_BV bit outside XCR0"};
        status(what[v], st);
    }
    if ((c = fork()) == 0) {
        /* No stack to write a frame on. */
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_usr1;
        sigaction(SIGUSR1, &sa, 0);
        __asm__ volatile("mov $0x10, %%rsp\nmov $62, %%eax\nmov $10, %%esi\nsyscall\nud2" ::"D"(getpid()) : "memory");
        _exit(0);
    }
    waitpid(c, &st, 0);
    status("a signal with no stack to deliver it on", st);
    return 0;
}
