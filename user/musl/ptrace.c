/* ptrace: attach, stop, peek and poke (through the tracee's protection keys and page
 * protections, and into pages never touched), the register sets (NT_PRSTATUS, NT_X86_XSTATE
 * with PKRU merged in, PKRU set live), continue with and without a signal, detach, kill, and
 * the errno of each bad argument. Run as init (root); one child drops to uid 1000.
 * The parent prints; tracees speak through exit statuses. Raw system calls throughout: at that
 * level PEEKDATA stores the word at *data and returns 0 (libc wrappers hide this). */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "pikku_user.h"
#include "pikku_proc.h"

static long pt(long req, long pid, long addr, long data) { return syscall(SYS_ptrace, req, pid, addr, data); }

static void show(const char *what, long r) {
    int e = errno;
    if (r < 0) printf("%s = -1 %s\n", what, errname(e));
    else printf("%s = %ld\n", what, r);
}

static void wait_show(pid_t c, const char *what) {
    int st = 0;
    pid_t r = waitpid(c, &st, 0);
    if (r < 0) printf("%s: -1 %s\n", what, errname(errno));
    else status(what, st);
}

static void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

/* The entry point of an ELF file (e_entry, at byte 24 of the header). */
static uint64_t elf_entry(const char *path) {
    unsigned char h[64] = {0};
    FILE *f = fopen(path, "rb");
    if (f) {
        fread(h, 1, sizeof h, f);
        fclose(f);
    }
    uint64_t e;
    memcpy(&e, h + 24, 8);
    return e;
}

static volatile int usr1, usr2;
static void on_usr1(int s) { (void)s; usr1++; }
static void on_usr2(int s) { (void)s; usr2++; }

static pid_t start_pausing(void) {
    pid_t c = spawn();
    if (c == 0) for (;;) pause();
    return c;
}

/* Memory the tracee holds: a page under a key its PKRU denies, a page never touched, and a
 * read-only private page. */
static uint64_t *keyed, *untouched, *readonly;
static long key = -1;

/* The tracee of part 2. Its exit status: one bit per check it made itself. */
static int tracee(uint32_t pkru_first, uint32_t pkru_second) {
    signal(SIGUSR1, on_usr1);
    if (ospke() && key > 0) wrpkru(rdpkru() | (1u << (2 * key))); /* its PKRU denies the key */
    pt(PTRACE_TRACEME, 0, 0, 0);
    int bits = 0;
    long r = raise(SIGSTOP); /* stop 1: the tracer peeks, pokes, sets PKRU and rax = 42 */
    bits |= (r == 42) << 0;
    bits |= (!ospke() || rdpkru() == pkru_first) << 1;
    raise(SIGSTOP); /* stop 2: the tracer clears XSTATE_BV bit 9 */
    bits |= (!ospke() || rdpkru() == pkru_second) << 2;
    bits |= (untouched[0] == 0x1234567890abcdefull) << 3;
    bits |= (readonly[0] == 0x5151515151515151ull) << 4;
    pause(); /* the tracer continues it with SIGUSR1 */
    bits |= (usr1 == 1) << 5;
    return bits;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "pause")) for (;;) pause();
    if (argc > 1 && !strcmp(argv[1], "exit5")) return 5;
    uint32_t c0[4], c9[4];
    cpuid(0xd, 0, c0);
    cpuid(0xd, 9, c9);
    uint32_t xsize = c0[2], pkru_off = c9[1];
    int pk = ospke();
    printf("ospke = %d\n", pk);

    /* 1. Errors, in Linux's order. */
    show("PTRACE_PEEKDATA of pid 99999", pt(PTRACE_PEEKDATA, 99999, 0, 0));
    show("PTRACE_ATTACH to itself", pt(PTRACE_ATTACH, getpid(), 0, 0));
    pid_t c = start_pausing();
    uint64_t word = 0;
    show("PTRACE_PEEKDATA of a child not traced", pt(PTRACE_PEEKDATA, c, (long)&word, (long)&word));
    show("unknown request 0x4242 to a child not traced", pt(0x4242, c, 0, 0));
    show("PTRACE_ATTACH", pt(PTRACE_ATTACH, c, 0, 0));
    wait_show(c, "waitpid after PTRACE_ATTACH");
    show("PTRACE_ATTACH again", pt(PTRACE_ATTACH, c, 0, 0));
    show("unknown request 0x4242", pt(0x4242, c, 0, 0));
    show("PTRACE_PEEKDATA into a bad data pointer", pt(PTRACE_PEEKDATA, c, (long)&word, 8));
    show("PTRACE_PEEKDATA of an unmapped address", pt(PTRACE_PEEKDATA, c, 0x1000, (long)&word));
    show("PTRACE_POKEDATA of an unmapped address", pt(PTRACE_POKEDATA, c, 0x1000, 1));
    show("PTRACE_PEEKDATA of a kernel address", pt(PTRACE_PEEKDATA, c, (long)0xffffffff81000000ul, (long)&word));
    static unsigned char big[65536];
    struct iovec iov = {big, sizeof big};
    show("PTRACE_GETREGSET of regset 0x999", pt(PTRACE_GETREGSET, c, 0x999, (long)&iov));
    show("PTRACE_GETREGSET with a bad iovec pointer", pt(PTRACE_GETREGSET, c, NT_X86_XSTATE, 8));
    iov.iov_len = 7;
    show("PTRACE_GETREGSET(NT_X86_XSTATE) with iov_len 7", pt(PTRACE_GETREGSET, c, NT_X86_XSTATE, (long)&iov));
    iov.iov_len = 100;
    show("PTRACE_GETREGSET(NT_PRSTATUS) with iov_len 100", pt(PTRACE_GETREGSET, c, NT_PRSTATUS, (long)&iov));
    printf("  iov_len after = %zu\n", iov.iov_len);
    iov.iov_base = (void *)8;
    iov.iov_len = sizeof big;
    show("PTRACE_GETREGSET(NT_X86_XSTATE) into a bad buffer", pt(PTRACE_GETREGSET, c, NT_X86_XSTATE, (long)&iov));
    iov.iov_base = big;
    iov.iov_len = 512;
    show("PTRACE_GETREGSET(NT_X86_XSTATE) with iov_len 512", pt(PTRACE_GETREGSET, c, NT_X86_XSTATE, (long)&iov));
    printf("  iov_len after = %zu\n", iov.iov_len);
    show("PTRACE_SETREGSET(NT_X86_XSTATE) with iov_len 512", pt(PTRACE_SETREGSET, c, NT_X86_XSTATE, (long)&iov));
    show("PTRACE_GETREGS into a bad pointer", pt(PTRACE_GETREGS, c, 0, 8));
    show("PTRACE_SETREGS from a bad pointer", pt(PTRACE_SETREGS, c, 0, 8));
    show("PTRACE_CONT with signal 65", pt(PTRACE_CONT, c, 0, 65));
    show("PTRACE_CONT", pt(PTRACE_CONT, c, 0, 0));
    sleep_ms(100);
    show("PTRACE_PEEKDATA of a running tracee", pt(PTRACE_PEEKDATA, c, (long)&word, (long)&word));
    show("PTRACE_DETACH of a running tracee", pt(PTRACE_DETACH, c, 0, 0));
    kill(c, SIGSTOP);
    wait_show(c, "waitpid after SIGSTOP to the tracee");
    show("PTRACE_DETACH", pt(PTRACE_DETACH, c, 0, 0));
    show("PTRACE_PEEKDATA after detach", pt(PTRACE_PEEKDATA, c, (long)&word, (long)&word));
    kill(c, SIGKILL);
    wait_show(c, "waitpid after SIGKILL");

    /* 2. Memory and register sets. */
    keyed = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    untouched = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    readonly = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    keyed[0] = 0x4b4b4b4b4b4b4b4bull;
    readonly[0] = 0x5252525252525252ull;
    mprotect(readonly, 4096, PROT_READ);
    if (pk) {
        key = pk_alloc(0, 0);
        pk_mprotect(keyed, 4096, PROT_READ | PROT_WRITE, key);
    }
    uint32_t child_pkru = pk ? rdpkru() | (1u << (2 * key)) : 0;
    uint32_t pkru_first = pk ? (child_pkru & ~0xcu) | 0x30 : 0; /* key 1 open, key 2 write-disabled */
    c = spawn();
    if (c == 0) _exit(tracee(pkru_first, 0));
    wait_show(c, "waitpid after the tracee's raise(SIGSTOP)");
    if (pk) wrpkru(rdpkru() | (3u << (2 * key))); /* the tracer's own PKRU denies the key too */
    word = 0;
    show("PTRACE_PEEKDATA of the page its PKRU denies", pt(PTRACE_PEEKDATA, c, (long)keyed, (long)&word));
    printf("  word = 0x%llx\n", (unsigned long long)word);
    show("PTRACE_PEEKDATA of a page never touched", pt(PTRACE_PEEKDATA, c, (long)untouched, (long)&word));
    printf("  word = 0x%llx\n", (unsigned long long)word);
    show("PTRACE_POKEDATA of a page never touched", pt(PTRACE_POKEDATA, c, (long)untouched, 0x1234567890abcdefll));
    show("PTRACE_POKEDATA of a read-only page", pt(PTRACE_POKEDATA, c, (long)readonly, 0x5151515151515151ll));
    show("PTRACE_PEEKTEXT of it", pt(PTRACE_PEEKTEXT, c, (long)readonly, (long)&word));
    printf("  word = 0x%llx; the tracer's own copy = 0x%llx\n", (unsigned long long)word, (unsigned long long)readonly[0]);
    show("PTRACE_POKEDATA of the keyed page", pt(PTRACE_POKEDATA, c, (long)keyed + 8, 0x77));
    show("PTRACE_PEEKDATA of an unaligned address across two words", pt(PTRACE_PEEKDATA, c, (long)keyed + 4, (long)&word));
    printf("  word = 0x%llx\n", (unsigned long long)word);
    if (pk) wrpkru(rdpkru() & ~(3u << (2 * key)));

    struct user_regs_struct regs;
    memset(&regs, 0, sizeof regs);
    show("PTRACE_GETREGS", pt(PTRACE_GETREGS, c, 0, (long)&regs));
    printf("  orig_rax = %ld, rax = %ld, cs = 0x%lx, ss = 0x%lx\n", (long)regs.orig_rax, (long)regs.rax, (unsigned long)regs.cs, (unsigned long)regs.ss);
    struct user_regs_struct prs;
    iov.iov_base = &prs;
    iov.iov_len = sizeof prs + 64;
    show("PTRACE_GETREGSET(NT_PRSTATUS)", pt(PTRACE_GETREGSET, c, NT_PRSTATUS, (long)&iov));
    printf("  iov_len = %zu, same registers as GETREGS: %s\n", iov.iov_len, memcmp(&prs, &regs, sizeof regs) ? "no" : "yes");
    regs.rax = 42;
    show("PTRACE_SETREGS with rax = 42", pt(PTRACE_SETREGS, c, 0, (long)&regs));

    iov.iov_base = big;
    iov.iov_len = sizeof big;
    memset(big, 0xee, sizeof big);
    show("PTRACE_GETREGSET(NT_X86_XSTATE)", pt(PTRACE_GETREGSET, c, NT_X86_XSTATE, (long)&iov));
    printf("  iov_len = CPUID.(0Dh,0).ECX: %s\n", iov.iov_len == xsize ? "yes" : "no");
    printf("  bytes past it untouched: %s\n", big[xsize] == 0xee ? "yes" : "no");
    /* Bytes 464..511 (the legacy area's software-reserved bytes): XCR0, then zeros. */
    uint64_t sw_xcr0, bv;
    memcpy(&sw_xcr0, big + 464, 8);
    int rest_zero = 1;
    for (int i = 472; i < 512; i++) rest_zero &= big[i] == 0;
    uint32_t xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    printf("  bytes 464..471 hold XCR0: %s; 472..511 zero: %s\n",
           sw_xcr0 == ((uint64_t)xcr0_hi << 32 | xcr0_lo) ? "yes" : "no", rest_zero ? "yes" : "no");
    memcpy(&bv, big + 512, 8);
    printf("  XSTATE_BV bit 9 (PKRU): %d\n", (int)(bv >> 9 & 1));
    uint32_t img_pkru = 0;
    if (pk) memcpy(&img_pkru, big + pkru_off, 4);
    printf("  PKRU in the image is the tracee's: %s\n", !pk || img_pkru == child_pkru ? "yes" : "no");
    if (pk) memcpy(big + pkru_off, &pkru_first, 4);
    show("PTRACE_SETREGSET(NT_X86_XSTATE) with a new PKRU", pt(PTRACE_SETREGSET, c, NT_X86_XSTATE, (long)&iov));
    memset(big, 0, sizeof big);
    pt(PTRACE_GETREGSET, c, NT_X86_XSTATE, (long)&iov);
    if (pk) memcpy(&img_pkru, big + pkru_off, 4);
    printf("  read back: %s\n", !pk || img_pkru == pkru_first ? "the new PKRU" : "something else");
    show("PTRACE_CONT", pt(PTRACE_CONT, c, 0, 0));
    wait_show(c, "waitpid after the tracee's second raise(SIGSTOP)");
    iov.iov_len = sizeof big;
    pt(PTRACE_GETREGSET, c, NT_X86_XSTATE, (long)&iov);
    memcpy(&bv, big + 512, 8);
    bv &= ~(1ull << 9);
    memcpy(big + 512, &bv, 8);
    show("PTRACE_SETREGSET(NT_X86_XSTATE) with XSTATE_BV bit 9 clear", pt(PTRACE_SETREGSET, c, NT_X86_XSTATE, (long)&iov));
    memset(big, 0xee, sizeof big);
    pt(PTRACE_GETREGSET, c, NT_X86_XSTATE, (long)&iov);
    if (pk) memcpy(&img_pkru, big + pkru_off, 4);
    memcpy(&bv, big + 512, 8);
    printf("  read back: PKRU = 0x%x, XSTATE_BV bit 9 = %d\n", img_pkru, (int)(bv >> 9 & 1));
    show("PTRACE_CONT", pt(PTRACE_CONT, c, 0, 0));
    sleep_ms(100);
    kill(c, SIGUSR1);
    wait_show(c, "waitpid after SIGUSR1 to the tracee (the tracer sees it first)");
    show("PTRACE_CONT with SIGUSR1", pt(PTRACE_CONT, c, 0, SIGUSR1));
    wait_show(c, "waitpid (63 = every check in the tracee passed)");

    /* 3. A signal the tracer suppresses; PTRACE_KILL. */
    c = spawn();
    if (c == 0) {
        signal(SIGUSR2, on_usr2);
        pt(PTRACE_TRACEME, 0, 0, 0);
        show("PTRACE_TRACEME again", pt(PTRACE_TRACEME, 0, 0, 0));
        fflush(stdout);
        raise(SIGSTOP);
        pause();
        _exit(usr2);
    }
    wait_show(c, "waitpid after raise(SIGSTOP)");
    show("PTRACE_CONT", pt(PTRACE_CONT, c, 0, 0));
    sleep_ms(100);
    kill(c, SIGUSR2);
    wait_show(c, "waitpid after SIGUSR2");
    show("PTRACE_CONT without it", pt(PTRACE_CONT, c, 0, 0));
    sleep_ms(100);
    kill(c, SIGUSR2);
    wait_show(c, "waitpid after a second SIGUSR2");
    show("PTRACE_KILL", pt(PTRACE_KILL, c, 0, 0));
    wait_show(c, "waitpid after PTRACE_KILL");

    /* 3b. A tracee that execs stops with SIGTRAP before the new program's first instruction,
     *     its registers those of execve's return at the program's entry point. */
    c = spawn();
    if (c == 0) {
        pt(PTRACE_TRACEME, 0, 0, 0);
        char *args[] = {"/init", "exit5", 0};
        execve("/init", args, 0);
        _exit(99);
    }
    wait_show(c, "waitpid after the tracee's execve");
    memset(&regs, 0, sizeof regs);
    show("PTRACE_GETREGS", pt(PTRACE_GETREGS, c, 0, (long)&regs));
    printf("  orig_rax = %ld, rax = %ld, rip is /init's entry point: %s\n", (long)regs.orig_rax, (long)regs.rax,
           regs.rip == elf_entry("/init") ? "yes" : "no");
    show("PTRACE_CONT", pt(PTRACE_CONT, c, 0, 0));
    wait_show(c, "waitpid");

    /* 4. Permissions, as uid 1000: not init (root); not its own child forked after setuid
     *    (a process that changed its ids is not dumpable, and fork inherits that); its child
     *    once it has exec'd; a sibling's child, if Yama allows it. */
    c = spawn();
    if (c == 0) {
        setuid(1000);
        show("uid 1000: PTRACE_ATTACH to init", pt(PTRACE_ATTACH, 1, 0, 0));
        pid_t b = start_pausing();
        show("uid 1000: PTRACE_ATTACH to its child forked after setuid", pt(PTRACE_ATTACH, b, 0, 0));
        kill(b, SIGKILL);
        wait_show(b, "uid 1000: waitpid after SIGKILL");
        b = spawn();
        if (b == 0) {
            char *args[] = {"/init", "pause", 0};
            execve("/init", args, 0);
            _exit(99);
        }
        sleep_ms(200);
        pid_t s = spawn();
        if (s == 0) {
            if (pt(PTRACE_ATTACH, b, 0, 0) < 0) _exit(errno);
            int bst = 0;
            waitpid(b, &bst, __WALL);
            pt(PTRACE_DETACH, b, 0, 0);
            _exit(bst == 0x137f ? 100 : 101);
        }
        int sst;
        waitpid(s, &sst, 0);
        printf("uid 1000: PTRACE_ATTACH to its sibling (exec'd) = %s\n",
               WEXITSTATUS(sst) == 100 ? "0, stopped it, detached" : WEXITSTATUS(sst) == 101 ? "0, but no stop" : errname(WEXITSTATUS(sst)));
        long r = pt(PTRACE_ATTACH, b, 0, 0);
        show("uid 1000: PTRACE_ATTACH to its child (exec'd)", r);
        if (r == 0) wait_show(b, "uid 1000: waitpid");
        kill(b, SIGKILL);
        wait_show(b, "uid 1000: waitpid after SIGKILL");
        fflush(stdout);
        _exit(0);
    }
    wait_show(c, "the uid 1000 child");
    return 0;
}
