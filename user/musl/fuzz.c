/* fuzz — pikku's system-call fuzzer (issue #21). Run as /init by `make fuzz SEED=… CALLS=…`
 * and, briefly, by `make test`:
 *
 *     /init SEED CALLS [v]          the supervisor (pid 1); `v` logs every call before issuing it
 *                                   and checks the canary pages after it
 *     /init worker SEED CALLS DEPTH [v]   a worker started by execve (see below), or by hand to
 *                                   replay one worker whose seed a campaign printed
 *
 * WHAT IT DOES. The supervisor forks workers one after another, each with its own seed derived
 * from SEED (splitmix64), until CALLS calls have been issued. A worker issues random system
 * calls from the list below — every call pikku's dispatch table (kernel/src/syscall/mod.rs)
 * implements, plus unknown numbers — with arguments drawn per kind (fd, pointer, length, flags,
 * key, signal, pid, address) from a mix of boundary values (0, -1, 2^63, 2^63-1, the top of
 * user space 0x7ffffffff000 and pages around it, 0x800000000000, kernel and non-canonical
 * addresses), pointers to its own mapped, unmapped, PROT_NONE and keyed pages (aligned,
 * unaligned, straddling into a guard page), wrapping lengths (-ptr, ~0), keys -1…20, random flag
 * bits and plain random numbers. Some calls run with a random PKRU written just before the
 * SYSCALL instruction (WRPKRU), key 0's rights restored right after it, before the stack is
 * touched again. Now and then a worker also
 *   - starts a thread (raw clone, its own stack) that fuzzes with its own seed;
 *   - forks a child that fuzzes with its own seed (depth ≤ 2), or execs /init as a new worker;
 *   - forks a child that calls rt_sigreturn on a forged frame (garbage registers, RSP 0…7 and
 *     other boundary values, fpstate pointers near ~0, random CS/SS/EFLAGS);
 *   - forks a child that takes a signal on a random alternate stack with a random PKRU, whose
 *     handler scribbles over its own signal frame before returning;
 *   - issues fork/clone with random flags whose child exits at once, in assembly.
 *
 * WHAT IT CHECKS (what user space can check): a key pkey_alloc returns is never one this process
 * already holds; a freed key can be allocated again at once; canary pages it owns (one plain,
 * one with a protection key) read back the pattern it wrote; its children end (killed by a signal
 * is allowed: a forged frame must kill). A failed check prints `fuzz: FAIL …` with the seed, and
 * the worker exits 99. A kernel panic or hang is seen by the host: the kernel prints a heartbeat
 * line (boot option heartbeat=1) and the runner calls a boot hung when it stops.
 *
 * POLICY for destructive and blocking calls — the fuzzer must not end or stall itself:
 *   - reboot: only with a wrong first magic number (EINVAL); never a real power-off or restart.
 *   - exit, exit_group: never fuzzed; workers, threads and children end with them deliberately.
 *   - kill, tkill, tgkill: only own children and threads, itself with a harmless signal (0,
 *     SIGUSR2 ignored, SIGURG, SIGWINCH), or pids that do not exist (incl. INT_MIN); never
 *     pid 1, 0 or -1. Children still alive when their parent finishes get SIGKILL. A stop
 *     signal sent to a child is followed by SIGCONT at once (an orphan left stopped would
 *     never end).
 *   - ptrace: any request at its own children, itself or pids that do not exist — but never
 *     PTRACE_TRACEME (its parent would have to answer every signal it gets), the requests that
 *     write a tracee (POKE*, SETREGS, SETREGSET) only at pids that do not exist, and CONT/DETACH
 *     only with harmless signals or invalid numbers. A child it attached stays stopped until
 *     the worker kills it — at the latest with the SIGKILL every child still in its table
 *     gets at the end. So a child leaves that table only once it is gone: wait4 also reports
 *     a tracee's stop (a tracer hears of every trace stop, WUNTRACED or not, as on Linux), and
 *     forgetting the child there left it stopped and unkilled, so the final, blocking wait4
 *     waited for it forever (the worker stalls seen on -cpu qemu64).
 *   - execve: fuzzed only with paths that are not programs ("/nonexistent", "/etc/passwd", "",
 *     "/", bad pointers — never into its stack, whose top holds argv[0], "/init"); a ramdisk
 *     program is executed only deliberately: /init (this fuzzer) in a forked child, as a new
 *     worker.
 *   - pause: never (its path is covered by the signals conformance case).
 *   - futex: waiting operations always with a timeout (≤ 1 ms, or an invalid one, never NULL).
 *   - nanosleep, clock_nanosleep: only prepared timespecs (≤ 1 ms, or invalid) or bad pointers.
 *   - wait4: always with WNOHANG, except a parent's final reaping.
 *   - read-side calls (read, readv, pread64, vmsplice on a read end) only on descriptors that
 *     cannot block (ramdisk files, its own pipe while it holds bytes, bad numbers); write-side
 *     calls on its own pipe only up to the room it knows is left; stdin is closed at start.
 *   - close, dup2, dup3 never target its own descriptors (kept at 900 and above), and are not
 *     issued while threads run: a thread's random close could take the fresh low descriptor of
 *     another thread's pipe() before it is moved up.
 *   - mmap(MAP_FIXED or MAP_FIXED_NOREPLACE; private or shared anonymous memory), munmap,
 *     mprotect, pkey_mprotect, madvise: never over its own code, data,
 *     stack, scratch, guard or canary pages (an "arena" is theirs to wreck), but anything else
 *     goes, including wrapping ranges and addresses at the top of user space.
 *   - rt_sigaction: a real new action only for signals it never receives; rt_sigprocmask: the
 *     mask is cleared again after each call; arch_prctl: FS is restored after each call.
 *   - pkey_free: never of key 0 (Linux lets it go; the next pkey_alloc could then return key 0
 *     with access disabled, and the process could not touch its own stack).
 *   - the supervisor kills a worker that has not finished after WORKER_SECS (and then, with
 *     kill(-1, SIGKILL), every process but itself): a stall is reported as a failure.
 *   - unknown system calls: about 1 in 2,000 calls (each one is a kernel log line).
 * A worker's seed is printed when it starts (`fuzz: worker N seed S …`): `make fuzz SEED=S` with
 * `v` reproduces it (scheduling aside). Built with -DAVOID_KNOWN (by hand, never by `make`), it
 * steers clear of the crash classes issue #21 already lists (RSP 0…7 and fpstate near ~0 in
 * rt_sigreturn, huge sigaltstack sizes, memory calls reaching the top of user space or spanning
 * more than 1 GiB, a huge brk), to look for new ones past them. Written for pikku; it makes no claim to run on Linux,
 * whose extra system calls it does not cover. Uses no libc after start-up (raw syscalls). */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>
#include "pikku_user.h"

typedef unsigned long u64;
typedef long i64;

#define PAGE 4096UL
#define TOP 0x7ffffffff000UL            /* Linux's TASK_SIZE on x86-64 (4-level paging) */
#define LOGFD 1010                      /* the console, for this program's own lines */
#define OWN_FD_MIN 900                  /* own descriptors live at 900 and above */
#define NEVER_FD 1024                   /* a number no descriptor can have (RLIMIT_NOFILE) */
#define PIPE_ROOM 4096                  /* bytes one context may leave in its pipe */
#define MAX_THREADS 2
#define MAX_CHILDREN 3
#define MAX_DEPTH 2
#define WORKER_SECS 30                  /* guest seconds (the TSC clock); a worker usually takes one to three */

/* ---- raw system calls (no errno: threads here have no TLS of their own) ---------------- */

static inline i64 sc(u64 n, u64 a, u64 b, u64 c, u64 d, u64 e, u64 f) {
    register u64 r10 __asm__("r10") = d, r8 __asm__("r8") = e, r9 __asm__("r9") = f;
    i64 ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9) : "rcx", "r11", "memory");
    return ret;
}
#define sc0(n) sc(n, 0, 0, 0, 0, 0, 0)
#define sc1(n, a) sc(n, (u64)(a), 0, 0, 0, 0, 0)
#define sc2(n, a, b) sc(n, (u64)(a), (u64)(b), 0, 0, 0, 0)
#define sc3(n, a, b, c) sc(n, (u64)(a), (u64)(b), (u64)(c), 0, 0, 0)
#define sc4(n, a, b, c, d) sc(n, (u64)(a), (u64)(b), (u64)(c), (u64)(d), 0, 0)

/* The same call with PKRU = `during` for exactly the SYSCALL: WRPKRU before it, and WRPKRU of
 * `after` (key 0 open) right after it, before anything touches memory. */
static inline i64 sc_pkru(u64 n, u64 a, u64 b, u64 c, u64 d, u64 e, u64 f, uint32_t during, uint32_t after) {
    register u64 r10 __asm__("r10") = d, r8 __asm__("r8") = e, r9 __asm__("r9") = f;
    register u64 r13 __asm__("r13") = c, r14 __asm__("r14") = n;
    register u64 r15 __asm__("r15") = during;
    i64 ret;
    __asm__ volatile(
        "mov %%r15d, %%eax\n\txor %%ecx, %%ecx\n\txor %%edx, %%edx\n\t.byte 0x0f,0x01,0xef\n\t"
        "mov %%r13, %%rdx\n\tmov %%r14, %%rax\n\tsyscall\n\tmov %%rax, %%r12\n\t"
        "mov %%ebx, %%eax\n\txor %%ecx, %%ecx\n\txor %%edx, %%edx\n\t.byte 0x0f,0x01,0xef\n\t"
        "mov %%r12, %%rax"
        : "=a"(ret)
        : "D"(a), "S"(b), "r"(r10), "r"(r8), "r"(r9), "r"(r13), "r"(r14), "r"(r15), "b"((u64)after)
        : "rcx", "rdx", "r11", "r12", "memory");
    return ret;
}

/* fork or clone with the given registers whose child exits at once (status 0), without
 * touching memory: its stack may be anything. Returns the parent's result. */
static inline i64 sc_fork_exit(u64 n, u64 a, u64 b, u64 c, u64 d, u64 e) {
    register u64 r10 __asm__("r10") = d, r8 __asm__("r8") = e;
    i64 ret;
    __asm__ volatile("syscall\n\ttest %%rax, %%rax\n\tjnz 1f\n\tmov $60, %%eax\n\txor %%edi, %%edi\n\tsyscall\n\tud2\n1:"
                     : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8) : "rcx", "r11", "memory");
    return ret;
}

/* Where a forged frame's RIP points: exit_group(78), no memory touched. */
__asm__(".text\n.globl fuzz_landing\nfuzz_landing:\n\tmov $231, %eax\n\tmov $78, %edi\n\tsyscall\n\tud2\n");
extern char fuzz_landing[];
extern char __executable_start[], etext[], _end[];

/* ---- output ------------------------------------------------------------------------------ */

static char *fmt_u(char *p, u64 v, int hex) {
    char tmp[24];
    int n = 0;
    do { tmp[n++] = "0123456789abcdef"[v % (hex ? 16 : 10)]; v /= hex ? 16 : 10; } while (v);
    if (hex) { *p++ = '0'; *p++ = 'x'; }
    while (n) *p++ = tmp[--n];
    return p;
}

/* A tiny printf: %d (i64), %u (u64), %x (u64 hex), %s. One write per line. */
static void say(const char *f, ...) {
    char buf[512], *p = buf;
    __builtin_va_list ap;
    __builtin_va_start(ap, f);
    for (; *f && p < buf + 440; f++) {
        if (*f != '%') { *p++ = *f; continue; }
        switch (*++f) {
        case 'd': { i64 v = __builtin_va_arg(ap, i64); if (v < 0) { *p++ = '-'; v = -(u64)v; } p = fmt_u(p, v, 0); break; }
        case 'u': p = fmt_u(p, __builtin_va_arg(ap, u64), 0); break;
        case 'x': p = fmt_u(p, __builtin_va_arg(ap, u64), 1); break;
        case 's': for (const char *s = __builtin_va_arg(ap, const char *); *s && p < buf + 480; ) *p++ = *s++; break;
        default: *p++ = *f;
        }
    }
    __builtin_va_end(ap);
    *p++ = '\n';
    sc3(SYS_write, LOGFD, buf, p - buf);
}

static u64 parse_u(const char *s) { u64 v = 0; while (*s >= '0' && *s <= '9') v = v * 10 + (u64)(*s++ - '0'); return v; }

/* ---- randomness -------------------------------------------------------------------------- */

static u64 splitmix(u64 *s) {
    u64 z = (*s += 0x9e3779b97f4a7c15UL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9UL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebUL;
    return z ^ (z >> 31);
}

/* One fuzzing context: a worker's main thread, one of its threads, or a child. */
struct ctx {
    u64 rng, seed, calls, done, depth;
    int verbose, is_main;
    int rd_fd;                          /* pipe A's read end: A holds bytes, its write end is closed */
    int wr_fd, wr_rd;                   /* pipe B's write end and read end (kept open, never read) */
    int file_fd;                        /* /etc/passwd */
    int fd_base;                        /* its own descriptors: fd_base … fd_base + 19 */
    u64 wr_fill;                        /* bytes written to B */
    u64 prep[64];                       /* an iovec array the kernel reads; never a target of writes */
    u64 timespec[2], act[4], ss[3];
#ifdef CHECK_GLOBALS
    u64 seen_text_lo, seen_block;
#endif
};

static u64 rnd(struct ctx *c) { return splitmix(&c->rng); }
static u64 below(struct ctx *c, u64 n) { return n ? rnd(c) % n : 0; }
static int chance(struct ctx *c, u64 n) { return below(c, n) == 0; }

/* ---- the process's memory map ------------------------------------------------------------ */

/* One block, mapped at start: guard pages between the parts keep the kernel's writes (a read
 * of ~0 bytes into scratch) from running into anything else. */
enum { G0, SCRATCH = 1, G1 = 5, ARENA = 6, G2 = 70, KEYED = 71, G3 = 73, NONE = 74, HOLE = 75, G4 = 76, CANARY = 77, CANARY_KEYED = 78, G5 = 79, BLOCK_PAGES = 80 };
/* (A fuzzed mmap may fill the one-page hole; G4 still stops a write that runs past it.) */
static char *block;
#define PG(i) (block + (u64)(i) * PAGE)
static u64 stack_low, text_lo, text_end, text_hi;
static int have_pkeys;
static long canary_key = -1, keyed_key = -1;
static volatile u64 held_keys;          /* bit k: this process holds key k */
static volatile int live_threads;
static u64 my_tid_cache;

static const u64 boundary[] = {
    0, 1, 2, 7, 8, 0xfff, 0x1000, 0x1001, 0x7fffffff, 0x80000000UL, 0xffffffffUL, 0x100000000UL,
    0x7fffffffffffffffUL, 0x8000000000000000UL, 0xffffffffffffffffUL, 0xfffffffffffffffeUL,
    0xfffffffffffff000UL, TOP, TOP - 1, TOP + 1, TOP - PAGE, TOP - 8, TOP + PAGE, 0x7fffffffffffUL,
    0x800000000000UL, 0x800000000000UL - PAGE, 0x7ffffffffff8UL, 0xffff800000000000UL,
    0xffffffff80000000UL, 0xffffffffff600000UL, 0x0000900000000000UL, 0xdead000000000000UL,
    0x00007fff00000000UL, 0x400000, 0x10000,
};
#define NB (sizeof boundary / sizeof boundary[0])

static u64 any_boundary(struct ctx *c) { u64 v = boundary[below(c, NB)]; return chance(c, 8) ? v + below(c, 16) - 8 : v; }
/* `v`, or a non-canonical address instead of one in the stack. The top of user space is the
 * stack (pikku's ends at TASK_SIZE), and boundary values reach into it: a write there would
 * wreck the fuzzer, and its last bytes are argv[0], "/init" (at TOP - 6), which an execve would
 * run. */
static u64 off_stack(struct ctx *c, u64 v) { return v >= stack_low && v < TOP ? TOP + below(c, PAGE) : v; }

/* A pointer the kernel may write through: scratch (aligned or not, up to straddling the guard
 * page), the arena, the keyed, PROT_NONE, unmapped and guard pages, text, boundary values. */
static u64 wptr(struct ctx *c) {
    switch (below(c, 12)) {
    case 0: case 1: case 2: case 3: return (u64)PG(SCRATCH) + below(c, 4 * PAGE);
    case 4: return (u64)PG(SCRATCH) + ((below(c, 4 * PAGE)) & ~7UL);
    case 5: return (u64)PG(G1) - below(c, 64);
    case 6: return (u64)PG(ARENA) + below(c, 64 * PAGE);
    case 7: return (u64)PG(KEYED) + below(c, 2 * PAGE);
    case 8: return (u64)PG(NONE + below(c, 2)) + below(c, PAGE);
    case 9: return text_lo + below(c, text_end - text_lo);
    default: return off_stack(c, any_boundary(c));
    }
}
/* A pointer the kernel reads from: the same, plus its canary pages and its stack. */
static u64 rptr(struct ctx *c) {
    switch (below(c, 10)) {
    case 0: return (u64)PG(CANARY + below(c, 2)) + below(c, PAGE);
    case 1: return stack_low + 8 * 1024 * 1024 + below(c, 512 * 1024);
    default: return wptr(c);
    }
}
static u64 length(struct ctx *c, u64 ptr) {
    switch (below(c, 10)) {
    case 0: case 1: case 2: return below(c, 64);
    case 3: return below(c, 2 * PAGE);
    case 4: return -ptr + below(c, 8);                  /* ptr + len wraps (or ends at 0) */
    case 5: return PAGE * below(c, 80);
    case 6: return rnd(c);
    default: return any_boundary(c);
    }
}
static u64 flags(struct ctx *c) {
    switch (below(c, 4)) {
    case 0: return 0;
    case 1: return 1UL << below(c, 64);
    case 2: return rnd(c) & 0xffffffff;
    default: return rnd(c) & rnd(c) & 0x1ffffff;
    }
}
static u64 pkey(struct ctx *c) { return chance(c, 8) ? any_boundary(c) : (u64)((i64)below(c, 22) - 1); }

/* ---- own descriptors ----------------------------------------------------------------------- */

/* Each context has its own 20 numbers (threads share one table: no two may pick the same). */
static int free_own_fd(struct ctx *c) {
    for (int fd = c->fd_base; fd < c->fd_base + 20; fd++)
        if (sc2(SYS_fstat, fd, PG(SCRATCH)) == -EBADF) return fd;
    return -1;
}
static int move_high(struct ctx *c, int fd) {
    if (fd < 0) return fd;
    int to = free_own_fd(c);
    if (to < 0 || sc2(SYS_dup2, fd, to) < 0) { sc1(SYS_close, fd); return -1; }
    sc1(SYS_close, fd);
    return to;
}
/* Pipe A: 4 KiB of bytes and no writer, so reading it never blocks (bytes, then end of file). */
static void new_pipe_a(struct ctx *c) {
    int p[2] = {-1, -1};
    sc1(SYS_close, c->rd_fd);
    c->rd_fd = -1;
    if (sc1(SYS_pipe, p) != 0) return;
    sc3(SYS_write, p[1], text_lo, PIPE_ROOM);
    sc1(SYS_close, p[1]);
    c->rd_fd = move_high(c, p[0]);
}
/* Pipe B: written up to PIPE_ROOM bytes (far below any pipe's capacity), so writing never
 * blocks; replaced when full. Its read end stays open, so no write raises SIGPIPE. */
static void new_pipe_b(struct ctx *c) {
    int p[2] = {-1, -1};
    sc1(SYS_close, c->wr_fd);
    sc1(SYS_close, c->wr_rd);
    c->wr_fd = c->wr_rd = -1;
    c->wr_fill = 0;
    if (sc1(SYS_pipe, p) != 0) return;
    c->wr_rd = move_high(c, p[0]);
    c->wr_fd = move_high(c, p[1]);
}
static void ctx_open_fds(struct ctx *c) {
    c->rd_fd = c->wr_fd = c->wr_rd = -1;
    new_pipe_a(c);
    new_pipe_b(c);
    c->file_fd = move_high(c, (int)sc3(SYS_open, "/etc/passwd", 0, 0));
}
static void ctx_close_fds(struct ctx *c) { sc1(SYS_close, c->rd_fd); sc1(SYS_close, c->wr_fd); sc1(SYS_close, c->wr_rd); sc1(SYS_close, c->file_fd); }

static int is_own_fd(u64 fd) { return (int)fd >= OWN_FD_MIN && (int)fd <= 1023; }   /* the kernel reads an int */

/* Any descriptor number (for calls that never block). */
static u64 any_fd(struct ctx *c) {
    switch (below(c, 6)) {
    case 0: return below(c, 24);
    case 1: return (u64)c->rd_fd;
    case 2: return (u64)c->file_fd;
    case 3: return (u64)c->wr_fd;
    case 4: return any_boundary(c);
    default: return below(c, 1100);
    }
}
/* A descriptor a read cannot block on. */
static u64 read_fd(struct ctx *c) {
    switch (below(c, 4)) {
    case 0: return (u64)c->file_fd;
    case 1: return (u64)c->rd_fd;
    case 2: return NEVER_FD + below(c, 30);              /* never open: at or above RLIMIT_NOFILE */
    default: return any_boundary(c) | 0x400;             /* never a small number */
    }
}
static u64 write_fd(struct ctx *c) {
    switch (below(c, 4)) {
    case 0: return (u64)c->file_fd;
    case 1: return (u64)c->wr_fd;
    case 2: return NEVER_FD + below(c, 10);
    default: return any_boundary(c) | 0x400;
    }
}
static u64 pipe_room(struct ctx *c) { return c->wr_fill < PIPE_ROOM ? PIPE_ROOM - c->wr_fill : 0; }
/* Counts what went into B; a write that failed may still have moved bytes, so B is replaced
 * after a failure too, and when it is nearly full. */
static void pipe_write_done(struct ctx *c, i64 r) {
    if (r > 0) c->wr_fill += (u64)r;
    if (r < 0 || pipe_room(c) < 64) new_pipe_b(c);
}

/* ---- ranges the memory calls must leave alone ------------------------------------------- */

static int overlaps(u64 a, u64 len, u64 lo, u64 hi) {
    if (len == 0) len = 1;
    u64 end = a + len;
    if (end < a) return 0;                  /* wraps: every kernel must refuse it outright */
    return a < hi && end > lo;
}
static int touches_own(u64 a, u64 len) {
    u64 b = (u64)block;
    return overlaps(a, len, text_lo, text_hi + 64 * PAGE)                  /* code, data, bss, some heap */
        || overlaps(a, len, b, (u64)PG(ARENA))                              /* guard, scratch, guard */
        || overlaps(a, len, (u64)PG(G2), b + BLOCK_PAGES * PAGE)            /* guard, keyed, …, canaries */
        || overlaps(a, len, stack_low, 0x800000000000UL);                   /* the stack and above */
}
static u64 mm_addr(struct ctx *c) {
    switch (below(c, 6)) {
    case 0: case 1: case 2: return (u64)PG(ARENA) + PAGE * below(c, 64);
    case 3: return (u64)PG(ARENA) + below(c, 64 * PAGE);
    default: return any_boundary(c) & (chance(c, 2) ? ~0xfffUL : ~0UL);
    }
}

/* ---- checks ------------------------------------------------------------------------------ */

static struct ctx *main_ctx;
static void fail(struct ctx *c, const char *what, u64 v) {
    say("fuzz: FAIL pid %d seed %u call %u: %s (%x)", sc0(SYS_getpid), c->seed, c->done, what, v);
    sc1(SYS_exit_group, 99);
}

static void fill_canaries(struct ctx *c) {
    u64 s = c->seed;
    uint32_t saved = have_pkeys ? rdpkru() : 0;
    if (have_pkeys) wrpkru(0);
    for (int i = 0; i < 2; i++)
        for (u64 *w = (u64 *)PG(CANARY + i); w < (u64 *)PG(CANARY + i + 1); w++) *w = splitmix(&s);
    if (have_pkeys) wrpkru(saved);
}
static void check_canaries(struct ctx *c) {
    u64 s = c->seed;
    uint32_t saved = have_pkeys ? rdpkru() : 0;
    if (have_pkeys) wrpkru(0);
    for (int i = 0; i < 2; i++)
        for (u64 *w = (u64 *)PG(CANARY + i); w < (u64 *)PG(CANARY + i + 1); w++)
            if (*w != splitmix(&s)) { if (have_pkeys) wrpkru(saved); fail(c, "own memory does not read back what was written", (u64)w); }
    if (have_pkeys) wrpkru(saved);
}
static void key_allocated(struct ctx *c, i64 k, int check) {
    if (k <= 0 || k > 15) return;
    u64 before = __atomic_fetch_or(&held_keys, 1UL << k, __ATOMIC_SEQ_CST);
    if (check && (before & (1UL << k))) fail(c, "pkey_alloc handed out a key this process holds", (u64)k);
}
static void key_freed(i64 k) { if (k > 0 && k <= 15) __atomic_fetch_and(&held_keys, ~(1UL << k), __ATOMIC_SEQ_CST); }

/* A freed key can be allocated again (only with no threads running, which could take it). */
static void check_key_reuse(struct ctx *c) {
    if (!have_pkeys || live_threads) return;
    u64 held = held_keys & ~(1UL << 0);
    if (!held) return;
    i64 k = __builtin_ctzl(held);
    if (sc1(SYS_pkey_free, k) != 0) fail(c, "pkey_free of a held key failed", (u64)k);
    key_freed(k);
    i64 again = sc2(SYS_pkey_alloc, 0, 0);
    if (again < 0) fail(c, "pkey_alloc failed right after a key was freed", (u64)-again);
    key_allocated(c, again, 1);
}

/* ---- children ---------------------------------------------------------------------------- */

static i64 children[16];
static int nchildren;
/* Takes `pid` out of the table once it is gone (reaped), and only then: wait4 also reports a
 * child that stopped (see the ptrace policy above). */
static void forget_child_if_gone(i64 pid) {
    if (sc2(SYS_kill, pid, 0) != -ESRCH) return;
    for (int i = 0; i < nchildren; i++) if (children[i] == pid) { children[i] = children[--nchildren]; return; }
}
static void reap(int block_) {
    int st;
    for (;;) {
        i64 pid = sc4(SYS_wait4, -1, &st, block_ ? 0 : 1 /* WNOHANG */, 0);
        if (pid <= 0) return;
        forget_child_if_gone(pid);
        if ((st & 0x7f) == 0 && ((st >> 8) & 0xff) == 99) say("fuzz: child %d reported a failed check", pid);
    }
}
/* Remembers a child (for kill and the final clean-up). A full table is reaped first; a child
 * that still finds no room is reaped by wait4(-1, …) all the same, just never signalled. */
static void add_child(i64 pid) {
    if (pid <= 0) return;
    if (nchildren == (int)(sizeof children / sizeof children[0])) reap(0);
    if (nchildren < (int)(sizeof children / sizeof children[0])) children[nchildren++] = pid;
}
static u64 a_pid(struct ctx *c) {
    switch (below(c, 6)) {
    case 0: case 1: return nchildren ? (u64)children[below(c, nchildren)] : 0x3fffffff;
    case 2: return (u64)sc0(SYS_getpid);
    case 3: return 0x3ffffff0 + below(c, 8);
    case 4: return chance(c, 2) ? 0x80000000UL : 0xffffffff80000000UL;  /* INT_MIN */
    default: return nchildren ? (u64)-children[below(c, nchildren)] : 99999;
    }
}
static u64 a_signal_for(struct ctx *c, u64 pid) {
    static const u64 harmless[] = {0, SIGUSR2, SIGURG, SIGWINCH};
    if (pid == (u64)sc0(SYS_getpid) || pid == my_tid_cache) return harmless[below(c, 4)];
    u64 s = chance(c, 6) ? any_boundary(c) : below(c, 70);
    return s;
}

static int is_stop(u64 s) { return s == SIGSTOP || s == SIGTSTP || s == SIGTTIN || s == SIGTTOU; }

static void worker(struct ctx *c);
static struct thread_slot { volatile int tid; struct ctx c; char stack[64 * 1024] __attribute__((aligned(16))); } slots[MAX_THREADS];

static void start_child(struct ctx *c) {
    if (c->depth >= MAX_DEPTH || nchildren >= MAX_CHILDREN) return;
    u64 seed = rnd(c), calls = c->calls / 8 + 1;
    int exec = chance(c, 4);
    i64 pid = sc0(SYS_fork);
    if (pid == 0) {
        nchildren = 0;
        for (int i = 0; i < MAX_THREADS; i++) slots[i].tid = 0;
        live_threads = 0;
        if (exec) {
            char s[24], n[24], d[24];
            *fmt_u(s, seed, 0) = 0; *fmt_u(n, calls, 0) = 0; *fmt_u(d, c->depth + 1, 0) = 0;
            char *argv[] = {"/init", "worker", s, n, d, 0};
            sc3(SYS_execve, "/init", argv, 0);
            sc1(SYS_exit_group, 98);
        }
        struct ctx child = {.rng = seed, .seed = seed, .calls = calls, .depth = c->depth + 1, .verbose = c->verbose, .is_main = 1, .fd_base = OWN_FD_MIN};
        ctx_close_fds(c);
        worker(&child);
    }
    add_child(pid);
}

/* rt_sigreturn on a forged frame, in a child (it is expected to die or land in fuzz_landing). */
static void forged_sigreturn(struct ctx *c) {
    i64 pid = sc0(SYS_fork);
    if (pid != 0) { add_child(pid); return; }
    u64 *frame = (u64 *)PG(SCRATCH + 1);
    for (int i = 0; i < 128; i++) frame[i] = chance(c, 3) ? rnd(c) : chance(c, 2) ? 0 : any_boundary(c);
    /* ucontext: flags, link, stack (3), then gregs r8…r15, rdi, rsi, rbp, rbx, rdx, rax, rcx,
     * rsp (20), rip (21), eflags (22), cs/gs/fs/ss (23), err, trapno, oldmask, cr2, fpstate (28). */
    if (!chance(c, 4)) frame[21] = (u64)fuzz_landing;
    if (!chance(c, 4)) frame[20] = (u64)PG(SCRATCH + 3);
    if (chance(c, 2)) frame[23] = 0x2b000000000033UL;
    switch (below(c, 4)) {
    case 0: frame[28] = 0; break;
    case 1: frame[28] = ~0UL - below(c, 4096); break;
    case 2: frame[28] = (u64)PG(SCRATCH + 2) + (below(c, 8) << 6); break;
    default: break;
    }
    u64 rsp;
    switch (below(c, 5)) {
    case 0: rsp = below(c, 8); break;                                   /* rsp 0…7 */
    case 1: rsp = any_boundary(c); break;
    default: rsp = (u64)frame + (chance(c, 3) ? below(c, 16) : 0);
    }
#ifdef AVOID_KNOWN
    if (rsp < 8 || rsp > ~0UL - 4096) rsp = (u64)frame;
    if (frame[28] > ~0UL - 8192) frame[28] = 0;
#endif
    __asm__ volatile("mov %0, %%rsp\n\tmov $15, %%eax\n\tsyscall\n\tjmp fuzz_landing" : : "r"(rsp) : "memory");
    __builtin_unreachable();
}

/* A signal on a random alternate stack, with a random PKRU, whose handler scribbles over its
 * frame — then rt_sigreturn — in a child. */
static u64 scribble_rng;
static void scribbler(int sig, siginfo_t *si, void *uc) {
    (void)sig; (void)si;
    u64 *w = uc;
    int n = (int)(splitmix(&scribble_rng) % 6);
    for (int i = 0; i < n; i++) {
        u64 r = splitmix(&scribble_rng);
        u64 idx = r % 40;
        if (idx == 21) continue;                   /* keep RIP: a random one could land in code */
        w[idx] = (r >> 8) & 1 ? boundary[(r >> 16) % NB] : splitmix(&scribble_rng);
    }
}
static void signal_child(struct ctx *c) {
    i64 pid = sc0(SYS_fork);
    if (pid != 0) { add_child(pid); return; }
    scribble_rng = rnd(c);
    struct { u64 sp; u64 flags; u64 size; } ss = { chance(c, 2) ? (u64)PG(ARENA) : wptr(c), chance(c, 3) ? flags(c) : 0, chance(c, 2) ? 16 * PAGE : length(c, 0) };
#ifdef AVOID_KNOWN
    if (ss.size > (1UL << 40) || ss.sp > (1UL << 46)) { ss.sp = (u64)PG(ARENA); ss.size = 8192; }
#endif
    sc2(SYS_sigaltstack, &ss, 0);
    struct { u64 handler, flags, restorer, mask; } sa = { (u64)scribbler, 0x04000000 /*RESTORER*/ | 4 /*SIGINFO*/ | (chance(c, 2) ? 0x08000000 : 0), 0, 0 };
    extern void __restore_rt(void);
    sa.restorer = (u64)__restore_rt;
    sc4(SYS_rt_sigaction, SIGUSR1, &sa, 0, 8);
    if (have_pkeys) sc_pkru(SYS_tkill, sc0(SYS_gettid), SIGUSR1, 0, 0, 0, 0, (uint32_t)rnd(c) & ~3u, 0x55555554);
    else sc2(SYS_tkill, sc0(SYS_gettid), SIGUSR1);
    sc1(SYS_exit_group, 0);
}

/* ---- threads ----------------------------------------------------------------------------- */


static void thread_main(struct thread_slot *s) {
    ctx_open_fds(&s->c);
    worker(&s->c);
}
static void start_thread(struct ctx *c) {
    for (int i = 0; i < MAX_THREADS; i++) {
        struct thread_slot *s = &slots[i];
        if (s->tid) continue;
        u64 seed = rnd(c);
        s->c = (struct ctx){.rng = seed, .seed = seed, .calls = c->calls / 8 + 1, .depth = c->depth, .verbose = c->verbose, .fd_base = OWN_FD_MIN + 20 * (i + 1)};
        u64 *top = (u64 *)(s->stack + sizeof s->stack) - 2;
        top[0] = (u64)s;
        u64 fl = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID;
        __atomic_fetch_add(&live_threads, 1, __ATOMIC_SEQ_CST);
        register u64 r10 __asm__("r10") = (u64)&s->tid;
        register u64 r8 __asm__("r8") = 0;
        i64 ret;
        __asm__ volatile("syscall\n\ttest %%rax, %%rax\n\tjnz 1f\n\tmov (%%rsp), %%rdi\n\txor %%ebp, %%ebp\n\tcall thread_entry\n\tud2\n1:"
                         : "=a"(ret) : "a"(SYS_clone), "D"(fl), "S"(top), "d"(&s->tid), "r"(r10), "r"(r8) : "rcx", "r11", "memory");
        if (ret < 0) { __atomic_fetch_sub(&live_threads, 1, __ATOMIC_SEQ_CST); s->tid = 0; }
        return;
    }
}
__attribute__((used)) void thread_entry(struct thread_slot *s) {
    thread_main(s);
}
static void join_threads(void) {
    struct { i64 s, ns; } ts = {0, 1000000};
    for (int i = 0; i < MAX_THREADS; i++) {
        int t;
        /* A thread may have moved its clear-on-exit word (set_tid_address): tgkill(…, 0)
         * tells when it is gone. */
        while ((t = slots[i].tid) != 0 && sc3(SYS_tgkill, sc0(SYS_getpid), t, 0) == 0) sc4(SYS_futex, &slots[i].tid, 0, t, &ts);
        slots[i].tid = 0;
    }
}

/* ---- the fuzzed call --------------------------------------------------------------------- */

static const char *paths[] = {"/etc/passwd", "/", "/etc", "/nonexistent", "", "/etc/passwd/x", "/pikku/argv", "//etc//passwd", "/proc/cpuinfo", "/init"};

/* A path: one of the strings above, or any pointer — for execve only ones that cannot name a
 * program (a pointer into its own memory could find "/init" in .rodata or at the top of the
 * stack and start a stray copy: one became a second supervisor, whose worker then stalled). */
static u64 a_path(struct ctx *c, int exec) {
    if (chance(c, 3)) return !exec ? rptr(c) : chance(c, 2) ? (u64)PG(NONE + below(c, 2)) + below(c, PAGE) : off_stack(c, any_boundary(c));
    return (u64)paths[below(c, sizeof paths / sizeof paths[0] - (exec ? 1 : 0))];
}
static u64 a_timespec(struct ctx *c) {
    i64 *t = (i64 *)c->timespec;
    switch (below(c, 6)) {
    case 0: t[0] = 0; t[1] = (i64)below(c, 1000000); return (u64)t;
    case 1: t[0] = 0; t[1] = 1000000000 + (i64)below(c, 3); return (u64)t;
    case 2: t[0] = -(i64)below(c, 3) - 1; t[1] = 0; return (u64)t;
    case 3: t[0] = 0; t[1] = -1; return (u64)t;
    case 4: {   /* a pointer that cannot be read: a boundary value could have been mapped by a
                 * fuzzed mmap hint, and a timeout read from it could be years */
        /* (not 8 or TOP: root may map page 0, and a fuzzed MAP_FIXED the top page) */
        static const u64 unreadable[] = {0x800000000000UL, 0xffff800000000000UL, 0xdead000000000000UL, ~0UL - 7};
        return chance(c, 2) ? (u64)PG(NONE) + below(c, PAGE) : unreadable[below(c, 4)];
    }
    default: t[0] = 0; t[1] = 0; return (u64)t;
    }
}
/* An iovec array; `kernel_writes`: its buffers are written to (readv), so no canary pages.
 * The entries past the n it fills are emptied ({0, 0}): the count the call passes is chosen on
 * its own, and a stale entry left by an earlier writev may point at a canary page. */
#define PREP_IOVECS (sizeof ((struct ctx *)0)->prep / 16)
static u64 a_iovec(struct ctx *c, u64 budget, int use_budget, int kernel_writes) {
    u64 *v = c->prep;
    int n = (int)below(c, 5);
    for (int i = 0; i < n; i++) {
        v[2 * i] = kernel_writes ? wptr(c) : rptr(c);
        v[2 * i + 1] = use_budget ? below(c, budget / 4 + 1) : length(c, v[2 * i]);
    }
    for (unsigned i = n; i < PREP_IOVECS; i++) v[2 * i] = v[2 * i + 1] = 0;
    return chance(c, 5) ? rptr(c) : (u64)v;
}

struct call { int nr; const char *name; };
static const struct call calls_table[] = {
    {0, "read"}, {1, "write"}, {2, "open"}, {3, "close"}, {4, "stat"}, {5, "fstat"}, {8, "lseek"}, {9, "mmap"},
    {10, "mprotect"}, {11, "munmap"}, {12, "brk"}, {13, "rt_sigaction"}, {14, "rt_sigprocmask"}, {15, "rt_sigreturn"},
    {16, "ioctl"}, {17, "pread64"}, {19, "readv"}, {20, "writev"}, {22, "pipe"}, {24, "sched_yield"}, {27, "mincore"}, {28, "madvise"},
    {32, "dup"}, {33, "dup2"}, {35, "nanosleep"}, {39, "getpid"}, {56, "clone"}, {57, "fork"}, {59, "execve"},
    {61, "wait4"}, {62, "kill"}, {63, "uname"}, {89, "readlink"}, {102, "getuid"}, {104, "getgid"}, {105, "setuid"},
    {106, "setgid"}, {107, "geteuid"}, {108, "getegid"}, {110, "getppid"}, {131, "sigaltstack"}, {158, "arch_prctl"},
    {169, "reboot"}, {186, "gettid"}, {200, "tkill"}, {202, "futex"}, {218, "set_tid_address"}, {228, "clock_gettime"},
    {101, "ptrace"}, {230, "clock_nanosleep"}, {234, "tgkill"}, {257, "openat"}, {262, "newfstatat"}, {278, "vmsplice"}, {292, "dup3"},
    {293, "pipe2"}, {318, "getrandom"}, {329, "pkey_mprotect"}, {330, "pkey_alloc"}, {331, "pkey_free"},
    {97, "getrlimit"}, {115, "getgroups"}, {116, "setgroups"}, {118, "getresuid"}, {120, "getresgid"}, {201, "time"},
    {273, "set_robust_list"}, {302, "prlimit64"}, {160, "setrlimit"}, {334, "rseq"}, {435, "clone3"},
    {237, "mbind"}, {238, "set_mempolicy"}, {239, "get_mempolicy"}, {256, "migrate_pages"}, {279, "move_pages"},
    {450, "set_mempolicy_home_node"},
    {-1, "unknown"},
};
#define NCALLS (sizeof calls_table / sizeof calls_table[0])

static void one_call(struct ctx *c) {
    const struct call *k = &calls_table[below(c, NCALLS)];
    u64 a[6] = {rnd(c), rnd(c), rnd(c), rnd(c), rnd(c), rnd(c)};
    u64 nr = (u64)k->nr;
    int pipe_read = 0, pipe_write = 0, fork_like = 0, restore_mask = 0, restore_fs = 0, stop_sent = 0;
    u64 fs_base = 0;
    switch (k->nr) {
    case 0: case 17: /* read, pread64 */
        a[0] = read_fd(c); a[1] = wptr(c); a[2] = length(c, a[1]); a[3] = chance(c, 2) ? below(c, 5000) : any_boundary(c);
        pipe_read = a[0] == (u64)c->rd_fd;
        break;
    case 19: /* readv */
        a[0] = read_fd(c); a[1] = a_iovec(c, 0, 0, 1); a[2] = chance(c, 2) ? below(c, 5) : any_boundary(c);
        /* A count the kernel accepts (up to UIO_MAXIOV, 1024) must not reach past `prep` into
         * the rest of the context, whose words may point at canary pages. */
        if (a[2] > PREP_IOVECS && a[2] <= 1024) a[2] = PREP_IOVECS;
        pipe_read = a[0] == (u64)c->rd_fd;
        break;
    case 1: /* write */
        a[0] = write_fd(c); a[1] = rptr(c); a[2] = length(c, a[1]);
        if (a[0] == (u64)c->wr_fd) { pipe_write = 1; if (a[2] > pipe_room(c)) a[2] = below(c, pipe_room(c) + 1); }
        break;
    case 20: case 278: /* writev, vmsplice */
        a[0] = write_fd(c);
        if (k->nr == 278 && chance(c, 3)) a[0] = read_fd(c);
        pipe_write = a[0] == (u64)c->wr_fd;
        a[1] = a_iovec(c, pipe_room(c), pipe_write, a[0] != (u64)c->wr_fd);   /* vmsplice on a read end writes */
        a[2] = pipe_write ? below(c, 5) : chance(c, 2) ? below(c, 5) : any_boundary(c);
        if (a[0] != (u64)c->wr_fd && a[2] > PREP_IOVECS && a[2] <= 1024) a[2] = PREP_IOVECS; /* as readv */
        a[3] = flags(c);
        if (pipe_write && a[1] != (u64)c->prep) a[1] = 0xffff800000000000UL; /* a bad iovec: EFAULT (not 0: a fuzzed MAP_FIXED may map page 0) */
        break;
    case 2: a[0] = a_path(c, 0); a[1] = flags(c); a[2] = flags(c); break;
    case 257: a[0] = chance(c, 2) ? (u64)-100 : any_fd(c); a[1] = a_path(c, 0); a[2] = flags(c); a[3] = flags(c); break;
    case 4: a[0] = a_path(c, 0); a[1] = wptr(c); break;
    case 262: a[0] = chance(c, 2) ? (u64)-100 : any_fd(c); a[1] = a_path(c, 0); a[2] = wptr(c); a[3] = flags(c); break;
    case 89: a[0] = a_path(c, 0); a[1] = wptr(c); a[2] = length(c, a[1]); break;
    case 3: if (live_threads) return;   /* see the policy on close, dup2, dup3 */
        a[0] = any_fd(c); if (is_own_fd(a[0])) a[0] = NEVER_FD; break;
    case 5: a[0] = any_fd(c); a[1] = wptr(c); break;
    case 8: a[0] = any_fd(c); a[1] = chance(c, 2) ? below(c, 5000) : any_boundary(c); a[2] = chance(c, 2) ? below(c, 5) : flags(c); break;
    case 16: a[0] = any_fd(c); a[1] = chance(c, 2) ? 0x5401 + below(c, 0x30) : flags(c); a[2] = wptr(c); break;
    case 32: a[0] = any_fd(c); break;
    case 33: case 292: if (live_threads) return;
        a[0] = any_fd(c); a[1] = any_fd(c); if (is_own_fd(a[1])) a[1] = NEVER_FD + below(c, 2) * 1000; a[2] = flags(c); break;
    case 22: a[0] = wptr(c); break;
    case 293: a[0] = wptr(c); a[1] = chance(c, 2) ? (flags(c) & 0x2004800) : flags(c); break;
    case 9: /* mmap */
        a[0] = mm_addr(c); a[1] = length(c, a[0]); a[2] = chance(c, 2) ? below(c, 8) : flags(c);
        /* private or shared anonymous memory; placed, MAP_FIXED or MAP_FIXED_NOREPLACE */
        a[3] = chance(c, 2) ? (chance(c, 3) ? 0x21 : 0x22) | (below(c, 3) == 0 ? 0x10 : chance(c, 2) ? 0x100000 : 0) | (chance(c, 3) ? 0x4000 : 0) : flags(c);
        a[4] = chance(c, 2) ? (u64)-1 : any_fd(c); a[5] = chance(c, 2) ? 0 : any_boundary(c);
        if ((a[3] & 0x100010) && touches_own(a[0], a[1])) return;   /* MAP_FIXED(_NOREPLACE) over its own pages */
#ifdef AVOID_KNOWN
        if ((a[3] & 0x100010) && (a[0] + a[1] >= TOP - PAGE || a[1] > (1UL << 30))) return;
#endif
        break;
    case 10: case 11: case 28: case 329: /* mprotect, munmap, madvise, pkey_mprotect */
        a[0] = mm_addr(c); a[1] = length(c, a[0]); a[2] = chance(c, 2) ? below(c, 8) : flags(c);
        if (k->nr == 28) a[2] = chance(c, 2) ? below(c, 30) : flags(c);
        a[3] = pkey(c);
        if (touches_own(a[0], a[1])) return;
#ifdef AVOID_KNOWN
        if (a[0] + a[1] >= TOP - PAGE || a[1] > (1UL << 30)) return;
#endif
        break;
    case 27: /* mincore: any range (it only looks), its vector where the fuzzer may write */
        a[0] = mm_addr(c); a[1] = length(c, a[0]); a[2] = wptr(c); break;
    case 12: a[0] = chance(c, 2) ? (u64)_end + PAGE * below(c, 1000) : any_boundary(c);
#ifdef AVOID_KNOWN
        if (a[0] > (u64)_end + (1UL << 30)) return;
#endif
        break;
    case 13: { /* rt_sigaction */
        static const int kept[] = {SIGUSR1, SIGUSR2, SIGCHLD, SIGURG, SIGWINCH, SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS, SIGPIPE};
        a[0] = chance(c, 8) ? any_boundary(c) : below(c, 70);
        u64 *act = c->act;
        act[0] = chance(c, 3) ? below(c, 2) : chance(c, 2) ? (u64)fuzz_landing : any_boundary(c);
        act[1] = flags(c); act[2] = chance(c, 2) ? 0 : any_boundary(c); act[3] = rnd(c);
        a[1] = chance(c, 3) ? (u64)act : chance(c, 2) ? 0 : wptr(c);
        for (unsigned i = 0; i < sizeof kept / sizeof kept[0]; i++)
            if ((a[0] & 0xffffffff) == (u64)kept[i] && a[1] == (u64)act) a[1] = 0;
        a[2] = chance(c, 2) ? 0 : wptr(c); a[3] = chance(c, 2) ? 8 : any_boundary(c);
        if (a[1] != 0 && a[1] != (u64)act) { /* the kernel reads garbage: keep it away from kept signals */
            for (unsigned i = 0; i < sizeof kept / sizeof kept[0]; i++) if ((a[0] & 0xffffffff) == (u64)kept[i]) a[1] = any_boundary(c) | 0x8000000000000000UL;
        }
        break;
    }
    case 14: a[0] = chance(c, 2) ? below(c, 4) : flags(c); a[1] = chance(c, 3) ? 0 : rptr(c); a[2] = chance(c, 3) ? 0 : wptr(c); a[3] = chance(c, 2) ? 8 : any_boundary(c); restore_mask = 1; break;
    case 15: if (c->is_main) forged_sigreturn(c); return;
    case 35: a[0] = a_timespec(c); a[1] = chance(c, 2) ? 0 : wptr(c); break;
    case 230: a[0] = chance(c, 2) ? below(c, 12) : flags(c); a[1] = chance(c, 2) ? 1 : flags(c); a[2] = a_timespec(c); a[3] = chance(c, 2) ? 0 : wptr(c); break;
    case 202: { /* futex */
        static const u64 ops[] = {0, 1, 9, 10};   /* WAIT, WAKE, WAIT_BITSET, WAKE_BITSET */
        a[0] = chance(c, 4) ? rptr(c) : wptr(c);
        a[1] = chance(c, 2) ? ops[below(c, 4)] | (below(c, 2) << 7) | (chance(c, 4) ? 256 : 0) : flags(c);
        u64 cmd = a[1] & 0x7f;
        a[3] = (cmd == 0 || cmd == 6 || cmd == 9 || cmd == 11 || cmd == 13) ? a_timespec(c) : (chance(c, 2) ? a_timespec(c) : rnd(c));
        if (cmd == 11 || cmd == 12) return;                /* requeue-PI waits: not modelled */
        a[2] = rnd(c) & 0xffffffff; a[4] = wptr(c); a[5] = flags(c);
        if (a[0] >= (u64)PG(SCRATCH) && a[0] < (u64)PG(G1) - 4 && !(a[0] & 3) && chance(c, 2)) a[2] = *(uint32_t *)a[0];
        break;
    }
    case 56: /* clone with random flags: the child exits at once */
        a[0] = flags(c) | (chance(c, 2) ? CLONE_VM : 0); a[1] = chance(c, 2) ? 0 : wptr(c); a[2] = wptr(c); a[3] = wptr(c); a[4] = rnd(c);
        {   /* the exit signal goes to this process: only harmless ones (or invalid numbers) */
            static const u64 exit_sig[] = {0, SIGCHLD, SIGUSR2, SIGURG, SIGWINCH, 65, 0xff};
            a[0] = (a[0] & ~0xffUL) | exit_sig[below(c, 7)];
        }
        fork_like = 1;
        break;
    case 57: fork_like = 1; break;
    case 59: a[0] = a_path(c, 1); a[1] = chance(c, 2) ? 0 : rptr(c); a[2] = chance(c, 2) ? 0 : rptr(c); break;
    case 61: a[0] = chance(c, 2) ? (u64)-1 : a_pid(c); a[1] = chance(c, 2) ? 0 : wptr(c); a[2] = flags(c) | 1; a[3] = chance(c, 2) ? 0 : wptr(c); break;
    case 62: a[0] = a_pid(c); a[1] = a_signal_for(c, a[0]); stop_sent = is_stop(a[1]); break;
    case 101: { /* ptrace */
        static const u64 reqs[] = {1, 2, 3, 4, 5, 6, 7, 8, 12, 13, 16, 17, 0x4204, 0x4205, 0x4206, 0x4242};
        static const u64 resume_sig[] = {0, SIGUSR2, SIGURG, SIGWINCH, 65, 0xffffffff};
        a[0] = chance(c, 8) ? any_boundary(c) : reqs[below(c, 16)];
        if (a[0] == 0) a[0] = 16;                                          /* never PTRACE_TRACEME */
        a[1] = chance(c, 2) ? a_pid(c) : (u64)(nchildren ? children[below(c, nchildren)] : 0x3fffffff);
        a[2] = chance(c, 2) ? (u64)PG(SCRATCH) + below(c, 4 * PAGE) : chance(c, 2) ? below(c, 0x300) : any_boundary(c);
        a[3] = a[0] == 0x4204 ? a_iovec(c, 0, 0, 1) : chance(c, 4) ? rptr(c) : wptr(c);
        if (a[0] == 4 || a[0] == 5 || a[0] == 6 || a[0] == 13 || a[0] == 0x4205) a[1] = 0x3ffffff0 + below(c, 8);
        if (a[0] == 7 || a[0] == 17) a[3] = resume_sig[below(c, 6)];
        break;
    }
    case 200: a[0] = chance(c, 2) ? my_tid_cache : a_pid(c); a[1] = a_signal_for(c, a[0]); stop_sent = is_stop(a[1]); break;
    case 234: a[0] = chance(c, 2) ? (u64)sc0(SYS_getpid) : a_pid(c); a[1] = chance(c, 2) ? my_tid_cache : a_pid(c); a[2] = a_signal_for(c, a[1]); if (a[1] != my_tid_cache && a[0] == (u64)sc0(SYS_getpid)) a[2] = 0; stop_sent = is_stop(a[2]); break;
    case 63: a[0] = wptr(c); break;
    case 97: a[0] = chance(c, 2) ? below(c, 17) : flags(c); a[1] = wptr(c); break;
    case 160: a[0] = chance(c, 2) ? below(c, 17) : flags(c); a[1] = rptr(c); break;
    case 115: case 116: a[0] = chance(c, 2) ? below(c, 8) : flags(c); a[1] = chance(c, 2) ? rptr(c) : wptr(c); if (k->nr == 115) a[1] = wptr(c); break;
    case 118: case 120: a[0] = wptr(c); a[1] = wptr(c); a[2] = wptr(c); break;
    case 201: a[0] = chance(c, 3) ? 0 : wptr(c); break;
    case 273: a[0] = chance(c, 2) ? rptr(c) : any_boundary(c); a[1] = chance(c, 2) ? 24 : flags(c); break;
    case 302: a[0] = chance(c, 2) ? 0 : a_pid(c); a[1] = chance(c, 2) ? below(c, 17) : flags(c); a[2] = chance(c, 2) ? 0 : rptr(c); a[3] = chance(c, 3) ? 0 : wptr(c); break;
    case 334: case 435: a[0] = rptr(c); break;   /* ENOSYS on pikku; on Linux only with a valid area */
    case 105: case 106: a[0] = chance(c, 2) ? 0 : flags(c); break;
    case 131: { /* sigaltstack */
        u64 *ss = c->ss;
        ss[0] = chance(c, 2) ? (u64)PG(ARENA) : wptr(c); ss[1] = chance(c, 2) ? below(c, 3) : flags(c); ss[2] = length(c, ss[0]);
        a[0] = chance(c, 3) ? (u64)ss : chance(c, 2) ? 0 : rptr(c); a[1] = chance(c, 2) ? 0 : wptr(c);
#ifdef AVOID_KNOWN
        if (ss[2] > (1UL << 40) || ss[0] > (1UL << 46)) { ss[0] = (u64)PG(ARENA); ss[2] = 8192; }
        if (a[0] != (u64)ss) a[0] = 0;
#endif
        break;
    }
    case 158: a[0] = chance(c, 2) ? 0x1001 + below(c, 4) : flags(c); a[1] = chance(c, 2) ? wptr(c) : any_boundary(c);
        restore_fs = 1; sc2(SYS_arch_prctl, 0x1003 /* ARCH_GET_FS */, &fs_base); break;
    case 169: a[0] = rnd(c) | 1; if ((uint32_t)a[0] == 0xfee1dead) a[0] = 0; a[1] = rnd(c); a[2] = rnd(c); break;
    case 218: a[0] = wptr(c); break;
    case 228: a[0] = chance(c, 2) ? below(c, 12) : flags(c); a[1] = wptr(c); break;
    case 318: a[0] = wptr(c); a[1] = length(c, a[0]); a[2] = flags(c); break;
    case 330: a[0] = chance(c, 2) ? 0 : flags(c); a[1] = chance(c, 2) ? below(c, 4) : flags(c); break;
    case 331: a[0] = pkey(c); if ((int)a[0] == 0) a[0] = 16; break;   /* freeing key 0 would let pkey_alloc hand it out with AD set */
    /* NUMA memory policy: modes 0-7 with the mode flags (bits 13-15) now and then; node masks
     * read from anywhere readable, maxnode small or any boundary. Moving the program's own pages
     * (mbind with MPOL_MF_MOVE, migrate_pages, move_pages) must keep their contents. */
    case 237: /* mbind */
        a[0] = mm_addr(c); a[1] = length(c, a[0]); a[2] = chance(c, 2) ? below(c, 8) | (below(c, 8) << 13) : flags(c);
        a[3] = chance(c, 4) ? 0 : rptr(c); a[4] = chance(c, 2) ? below(c, 130) : any_boundary(c); a[5] = chance(c, 2) ? below(c, 8) : flags(c);
#ifdef AVOID_KNOWN
        if (a[0] + a[1] >= TOP - PAGE || a[1] > (1UL << 30)) return;
#endif
        break;
    case 238: a[0] = chance(c, 2) ? below(c, 8) | (below(c, 8) << 13) : flags(c); a[1] = chance(c, 4) ? 0 : rptr(c); a[2] = chance(c, 2) ? below(c, 130) : any_boundary(c); break;
    case 239: a[0] = chance(c, 4) ? 0 : wptr(c); a[1] = chance(c, 4) ? 0 : wptr(c); a[2] = chance(c, 2) ? below(c, 130) : any_boundary(c);
        a[3] = chance(c, 2) ? 0 : chance(c, 2) ? mm_addr(c) : rptr(c); a[4] = chance(c, 2) ? below(c, 8) : flags(c); break;
    case 256: a[0] = chance(c, 2) ? 0 : a_pid(c); a[1] = chance(c, 2) ? below(c, 130) : any_boundary(c); a[2] = rptr(c); a[3] = rptr(c); break;
    case 279: a[0] = chance(c, 2) ? 0 : a_pid(c); a[1] = chance(c, 2) ? below(c, 20) : any_boundary(c); a[2] = rptr(c);
        a[3] = chance(c, 2) ? 0 : rptr(c); a[4] = wptr(c); a[5] = chance(c, 2) ? below(c, 8) : flags(c);
        if (a[1] > 20) a[1] = below(c, 20);   /* status is written: 4 bytes a page, within SCRATCH */
        break;
    case 450: a[0] = mm_addr(c); a[1] = length(c, a[0]); a[2] = chance(c, 2) ? below(c, 4) : any_boundary(c); a[3] = chance(c, 2) ? 0 : flags(c); break;
    case -1: /* an unknown number, rarely: each is a kernel log line */
        if (!chance(c, 32)) return;
        nr = chance(c, 2) ? 335 + below(c, 2000) : any_boundary(c);
        break;
    default: break;  /* no arguments that matter: sched_yield, getpid, … */
    }
    if (c->verbose) say("fuzz: pid %d call %u %s(%x, %x, %x, %x, %x, %x)", sc0(SYS_getpid), c->done, k->name, a[0], a[1], a[2], a[3], a[4], a[5]);
    if (c->verbose && a[1] == (u64)c->prep)
        for (u64 i = 0; i < a[2] && i < 4; i++) say("fuzz:   iov[%u] = {%x, %x}", i, c->prep[2 * i], c->prep[2 * i + 1]);
    c->done++;
    i64 r;
    if (fork_like) {
        r = sc_fork_exit(nr, a[0], a[1], a[2], a[3], a[4]);
        if (c->is_main && r > 0 && (k->nr == 57 || !(a[0] & CLONE_THREAD))) add_child(r);
        return;
    }
    /* With threads running, another thread's pkey_free may be done in the kernel but not yet in
     * held_keys: the "handed out twice" check is made only when no thread ran during the call. */
    int alone = live_threads == 0;
    if (have_pkeys && chance(c, 8)) {
        uint32_t during = (uint32_t)(chance(c, 2) ? rnd(c) : any_boundary(c));
        r = sc_pkru(nr, a[0], a[1], a[2], a[3], a[4], a[5], during, during & ~3u);
    } else {
        r = sc(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
    }
    if (c->verbose) say("fuzz: pid %d call %u = %d", sc0(SYS_getpid), c->done - 1, r);
    if (c->verbose && c->is_main) check_canaries(c);          /* replaying: find the very call */
#ifdef CHECK_GLOBALS
    if (c->verbose && c->is_main && (text_lo != c->seen_text_lo || (u64)block != c->seen_block)) fail(c, "globals changed", text_lo);
#endif
    if (pipe_read && r == 0) new_pipe_a(c);                 /* drained */
    if (pipe_write) pipe_write_done(c, r);
    if (k->nr == 330 && r >= 0) key_allocated(c, r, alone && live_threads == 0);
    if (k->nr == 61 && r > 0 && c->is_main) forget_child_if_gone(r);   /* not after a stop report */
    if (stop_sent && r == 0) {                                 /* never leave a child stopped */
        if (k->nr == 62) sc2(SYS_kill, a[0], SIGCONT);
        else if (k->nr == 200) sc2(SYS_tkill, a[0], SIGCONT);
        else sc3(SYS_tgkill, a[0], a[1], SIGCONT);
    }
    if (k->nr == 331 && r == 0) key_freed((int)a[0]);          /* the kernel reads an int */
    if (restore_mask) { u64 none = 0; sc4(SYS_rt_sigprocmask, SIG_SETMASK, &none, 0, 8); }
    if (restore_fs) sc2(SYS_arch_prctl, 0x1002 /* ARCH_SET_FS */, fs_base);
    if ((k->nr == 2 || k->nr == 257 || k->nr == 32) && r >= 200 && r < OWN_FD_MIN && !live_threads) {
        for (int fd = 3; fd < OWN_FD_MIN; fd++) sc1(SYS_close, fd);      /* keep room in the table */
    }
}

/* ---- worker ------------------------------------------------------------------------------ */

static void worker(struct ctx *c) {
    int thread = !c->is_main;
    if (!thread) {
        my_tid_cache = (u64)sc0(SYS_gettid);
        main_ctx = c;
        nchildren = 0;
        ctx_open_fds(c);
        fill_canaries(c);
        say("fuzz: pid %d depth %u seed %u calls %u", sc0(SYS_getpid), c->depth, c->seed, c->calls);
    }
    while (c->done < c->calls) {
        one_call(c);
        if (thread) continue;
        if (chance(c, 4000)) start_child(c);
        if (chance(c, 600)) forged_sigreturn(c);
        if (chance(c, 600)) signal_child(c);
        if (chance(c, 3000) && c->depth < MAX_DEPTH) start_thread(c);
        if (chance(c, 500)) check_key_reuse(c);
        if (chance(c, 1000)) check_canaries(c);
        if ((c->done & 63) == 0) reap(0);
    }
    if (thread) {
        ctx_close_fds(c);
        __atomic_fetch_sub(&live_threads, 1, __ATOMIC_SEQ_CST);
        sc1(SYS_exit, 0);
    }
    join_threads();
    check_canaries(c);
    for (int i = 0; i < nchildren; i++) sc2(SYS_kill, children[i], SIGKILL);
    for (int fd = 0; fd < LOGFD; fd++) sc1(SYS_close, fd);
    reap(1);
    sc1(SYS_exit_group, 0);
}

/* The process-wide set-up every worker (forked or exec'd) starts with. */
static void setup(void) {
    int x;
    stack_low = ((u64)&x & ~(PAGE - 1)) - 9 * 1024 * 1024;
    text_lo = (u64)__executable_start & ~(PAGE - 1);
    text_end = (u64)etext;
    text_hi = ((u64)_end + PAGE - 1) & ~(PAGE - 1);
    have_pkeys = ospke();
    struct { u64 h, f, r, m; } ign = {1 /* SIG_IGN */, 0, 0, 0};
    sc4(SYS_rt_sigaction, SIGUSR2, &ign, 0, 8);
    sc4(SYS_rt_sigaction, SIGPIPE, &ign, 0, 8);       /* a write to a pipe without reader: EPIPE */
    if (!block) {
        block = (char *)sc(SYS_mmap, 0, BLOCK_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, (u64)-1, 0);
        sc3(SYS_mprotect, PG(G0), PAGE, PROT_NONE);
        sc3(SYS_mprotect, PG(G1), PAGE, PROT_NONE);
        sc3(SYS_mprotect, PG(G2), PAGE, PROT_NONE);
        sc3(SYS_mprotect, PG(G3), PAGE, PROT_NONE);
        sc3(SYS_mprotect, PG(G4), PAGE, PROT_NONE);
        sc3(SYS_mprotect, PG(G5), PAGE, PROT_NONE);
        sc3(SYS_mprotect, PG(NONE), PAGE, PROT_NONE);
        sc2(SYS_munmap, PG(HOLE), PAGE);
    }
    held_keys = 0;
    if (have_pkeys) {
        keyed_key = sc2(SYS_pkey_alloc, 0, 0);
        canary_key = sc2(SYS_pkey_alloc, 0, PKEY_DISABLE_WRITE);
        if (keyed_key > 0) { held_keys |= 1UL << keyed_key; sc4(SYS_pkey_mprotect, PG(KEYED), 2 * PAGE, PROT_READ | PROT_WRITE, keyed_key); }
        if (canary_key > 0) { held_keys |= 1UL << canary_key; sc4(SYS_pkey_mprotect, PG(CANARY_KEYED), PAGE, PROT_READ | PROT_WRITE, canary_key); }
    }
}

static u64 now_ms(void) {
    struct { i64 s, ns; } t = {0, 0};
    sc2(SYS_clock_gettime, 1 /* CLOCK_MONOTONIC */, &t);
    return (u64)t.s * 1000 + (u64)t.ns / 1000000;
}

int main(int argc, char **argv) {
    /* The console moves to LOGFD; 0, 1 and 2 are closed so that no fuzzed call reads the
     * console (it would wait for input forever) or scribbles on it. */
    if (sc2(SYS_dup2, 1, LOGFD) < 0) return 2;
    for (int fd = 0; fd < 3; fd++) sc1(SYS_close, fd);
    setup();
    if (argc >= 5 && argv[1][0] == 'w') {
        struct ctx c = {.rng = parse_u(argv[2]), .seed = parse_u(argv[2]), .calls = parse_u(argv[3]), .depth = parse_u(argv[4]),
                        .verbose = argc > 5 && argv[5][0] == 'v', .is_main = 1, .fd_base = OWN_FD_MIN};
#ifdef CHECK_GLOBALS
        c.seen_text_lo = text_lo; c.seen_block = (u64)block;
#endif
        worker(&c);
    }
    u64 seed = argc > 1 ? parse_u(argv[1]) : 1, total = argc > 2 ? parse_u(argv[2]) : 20000;
    int verbose = argc > 3 && argv[3][0] == 'v';
    const u64 per_worker = 20000;
    u64 s = seed, issued = 0, workers = 0, failed = 0, killed = 0;
    say("fuzz: seed %u, %u calls, %u per worker, pkeys %s", seed, total, per_worker, have_pkeys ? "yes" : "no");
    while (issued < total) {
        u64 n = total - issued < per_worker ? total - issued : per_worker, wseed = splitmix(&s);
        i64 pid = sc0(SYS_fork);
        if (pid == 0) {
            struct ctx c = {.rng = wseed, .seed = wseed, .calls = n, .verbose = verbose, .is_main = 1, .fd_base = OWN_FD_MIN};
            worker(&c);
        }
        if (pid < 0) { say("fuzz: FAIL fork of a worker: %d", pid); failed++; break; }
        /* Wait for it (orphans of its children come here too), at most WORKER_SECS: a worker
         * that stalls — the kernel's heartbeat going on — is a lost wake-up or a hole in the
         * policy above, reported as a failure; it and every other process are then killed. */
        int st = 0;
        i64 w;
        u64 start = now_ms();
        while ((w = sc4(SYS_wait4, -1, &st, 1 /* WNOHANG */, 0)) != pid) {
            if (w > 0) continue;
            if (w < 0) break;
            if (now_ms() - start > WORKER_SECS * 1000) {
                say("fuzz: STALL worker seed %u (pid %d) not finished after %u s; killing every process", wseed, pid, (u64)WORKER_SECS);
                failed++;
                sc2(SYS_kill, -1, SIGKILL);                   /* the supervisor's own clean-up */
                while (sc4(SYS_wait4, -1, &st, 0, 0) > 0) { }
                st = 0;
                break;
            }
            struct { i64 s, ns; } ts = {0, 10 * 1000 * 1000};
            sc2(SYS_nanosleep, &ts, 0);
        }
        workers++;
        issued += n;
        if ((st & 0x7f) != 0) { killed++; say("fuzz: worker seed %u killed by signal %d", wseed, (i64)(st & 0x7f)); }
        else if (((st >> 8) & 0xff) != 0) { failed++; say("fuzz: worker seed %u exited with %d", wseed, (i64)((st >> 8) & 0xff)); }
    }
    int st;
    while (sc4(SYS_wait4, -1, &st, 0, 0) > 0) { }
    say("fuzz: done: seed %u, %u calls in %u workers, %u failed checks, %u workers killed by a signal", seed, issued, workers, failed, killed);
    return failed ? 1 : 0;
}
